-- flowc journal on PostgreSQL, version 5 → 6 (schema_v6.sql): a step's first
-- event may add it already `ready` or `running`.
CREATE OR REPLACE FUNCTION flowc_nodes_insert_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'a node instance must start as pending (or be added ready or running by its first status)';
END $$;

DROP TRIGGER nodes_insert_pending ON nodes;
CREATE TRIGGER nodes_insert_pending BEFORE INSERT ON nodes
FOR EACH ROW WHEN (NEW.status NOT IN ('pending', 'ready', 'running'))
EXECUTE FUNCTION flowc_nodes_insert_pending();

UPDATE meta SET value = '6' WHERE key = 'schema_version';
