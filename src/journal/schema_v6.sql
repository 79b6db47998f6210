-- flowc journal, schema version 6: fewer events per step. A step's first
-- event may add it already `ready` (pending → ready) or `running`
-- (pending → ready → running), both legal in `transitions`; every other
-- status is still refused at insert. No data changes: older runs keep their
-- `node_added` and `output` events, which mean the same.
DROP TRIGGER nodes_insert_pending;
CREATE TRIGGER nodes_insert_pending BEFORE INSERT ON nodes
WHEN NEW.status <> 'pending' AND NEW.status <> 'ready' AND NEW.status <> 'running'
BEGIN SELECT RAISE(ABORT, 'a node instance must start as pending (or be added ready or running by its first status)'); END;
