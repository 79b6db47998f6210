-- flowc journal on PostgreSQL: the whole of SQLite schema version 5 (schema.sql … schema_v5.sql) in one script, plus the SQLite functions the journal's queries use.
--
-- The queries are the SQLite ones, with `$N` for `?N`; so this schema keeps
-- SQLite's meaning: `rowid` is an explicit identity column on the tables
-- queried by it (`events`, `nodes`), the triggers refuse with SQLite's exact
-- messages, and `json_extract`, `json_type`, `json_valid` and `total` behave
-- as SQLite's do. Types: INTEGER → BIGINT, TEXT → TEXT.

-- SQLite functions ---------------------------------------------------------

-- An SQLite JSON path (`$`, `$.a.b`, `$.a[0]`, `$[1].b`, `$."a.b"`) as a
-- Postgres path array; NULL for a path SQLite would refuse.
CREATE FUNCTION flowc_json_path(path text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  out text[] := '{}';
  m text[];
  rest text;
BEGIN
  IF left(path, 1) <> '$' THEN
    RETURN NULL;
  END IF;
  rest := substr(path, 2);
  WHILE rest <> '' LOOP
    m := regexp_match(rest, '^(?:\.([A-Za-z0-9_$-]+)|\."([^"]*)"|\[([0-9]+)\])(.*)$');
    IF m IS NULL THEN
      RETURN NULL;
    END IF;
    out := out || COALESCE(m[1], m[2], m[3]);
    rest := m[4];
  END LOOP;
  RETURN out;
END $$;

-- `doc` parsed as JSON, or NULL when it is NULL or not JSON (never an error).
-- `json`, not `jsonb`: a value keeps its text as written (key order, no
-- added spaces), as SQLite returns it.
CREATE FUNCTION flowc_json(doc text) RETURNS json
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
  RETURN doc::json;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- SQLite's json_extract(doc, path) for one path, as text: strings unquoted,
-- numbers, true and false as written, objects and arrays as JSON text, JSON
-- null (or nothing at the path) as NULL. An invalid document gives NULL.
CREATE FUNCTION json_extract(doc text, path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  j json;
BEGIN
  IF doc IS NULL OR path IS NULL THEN
    RETURN NULL;
  END IF;
  j := flowc_json(doc);
  IF j IS NULL THEN
    RETURN NULL;
  END IF;
  -- The common shape, `$.key`, without the path parser.
  IF path ~ '^\$\.[A-Za-z0-9_]+$' THEN
    RETURN j ->> substr(path, 3);
  END IF;
  RETURN j #>> flowc_json_path(path);
END $$;

-- SQLite's json_type(doc, path): 'null', 'true', 'false', 'integer', 'real',
-- 'text', 'array', 'object'; NULL when nothing is at the path (or the
-- document is not JSON).
CREATE FUNCTION json_type(doc text, path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v json;
  t text;
BEGIN
  v := flowc_json(doc) #> flowc_json_path(path);
  IF v IS NULL THEN
    RETURN NULL;
  END IF;
  t := json_typeof(v);
  RETURN CASE t
    WHEN 'string' THEN 'text'
    WHEN 'boolean' THEN v::text
    WHEN 'number' THEN CASE WHEN v::text ~ '[.eE]' THEN 'real' ELSE 'integer' END
    ELSE t
  END;
END $$;

CREATE FUNCTION json_type(doc text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT json_type(doc, '$') $$;

-- SQLite's json_valid(doc), as a boolean (usable directly in WHERE); NULL for NULL.
CREATE FUNCTION json_valid(doc text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT flowc_json(doc) IS NOT NULL $$;

-- SQLite's total(x): the sum as a double, NULLs skipped, 0.0 over no rows.
-- Text counts as the number it begins with, like SQLite's (0 for none).
CREATE FUNCTION flowc_total_step(s double precision, v double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT s + v $$;
CREATE FUNCTION flowc_total_step(s double precision, v bigint) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT s + v $$;
CREATE FUNCTION flowc_total_step(s double precision, v integer) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT s + v $$;
CREATE FUNCTION flowc_total_step(s double precision, v boolean) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT s + CASE WHEN v THEN 1 ELSE 0 END $$;
CREATE FUNCTION flowc_total_step(s double precision, v text) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT s + COALESCE(CAST(substring(v FROM '^\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)') AS double precision), 0)
$$;

CREATE AGGREGATE total(double precision) (
  SFUNC = flowc_total_step, STYPE = double precision, INITCOND = '0',
  COMBINEFUNC = float8pl, PARALLEL = SAFE
);
CREATE AGGREGATE total(bigint) (
  SFUNC = flowc_total_step, STYPE = double precision, INITCOND = '0',
  COMBINEFUNC = float8pl, PARALLEL = SAFE
);
CREATE AGGREGATE total(integer) (
  SFUNC = flowc_total_step, STYPE = double precision, INITCOND = '0',
  COMBINEFUNC = float8pl, PARALLEL = SAFE
);
CREATE AGGREGATE total(boolean) (
  SFUNC = flowc_total_step, STYPE = double precision, INITCOND = '0',
  COMBINEFUNC = float8pl, PARALLEL = SAFE
);
CREATE AGGREGATE total(text) (
  SFUNC = flowc_total_step, STYPE = double precision, INITCOND = '0',
  COMBINEFUNC = float8pl, PARALLEL = SAFE
);

-- Version 1 (schema.sql) ---------------------------------------------------

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE events (
  run_id  TEXT   NOT NULL,
  seq     BIGINT NOT NULL,
  at      BIGINT NOT NULL,           -- unix time in milliseconds
  kind    TEXT   NOT NULL,
  node    TEXT,                      -- node instance key, e.g. `repair#2/verify`
  attempt BIGINT,
  data    TEXT   NOT NULL DEFAULT '{}',
  hash    TEXT,                      -- version 2
  rowid   BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,  -- SQLite's rowid: order of appending
  PRIMARY KEY (run_id, seq)
);

CREATE FUNCTION flowc_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    RAISE EXCEPTION 'journal events are append-only: UPDATE refused';
  END IF;
  -- `flowc gc` deletes whole runs in a transaction that says so (SET LOCAL flowc.gc = 'on').
  IF current_setting('flowc.gc', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'journal events are append-only: DELETE refused';
END $$;

CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
FOR EACH ROW EXECUTE FUNCTION flowc_events_append_only();
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
FOR EACH ROW EXECUTE FUNCTION flowc_events_append_only();

-- TRUNCATE skips row triggers: refused whole (gc deletes rows, never truncates).
CREATE FUNCTION flowc_events_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'journal events are append-only: TRUNCATE refused';
END $$;
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION flowc_events_no_truncate();

CREATE TABLE runs (
  id          TEXT PRIMARY KEY,
  skill       TEXT NOT NULL,
  file        TEXT NOT NULL,
  inputs      TEXT NOT NULL,
  status      TEXT NOT NULL,
  started_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  finished_at BIGINT,
  output      TEXT,
  error       TEXT
);

CREATE TABLE nodes (
  run_id      TEXT NOT NULL,
  key         TEXT NOT NULL,
  name        TEXT NOT NULL,
  kind        TEXT NOT NULL,
  status      TEXT NOT NULL,
  attempt     BIGINT NOT NULL DEFAULT 0,
  input_hash  TEXT,
  started_at  BIGINT,
  finished_at BIGINT,
  result      TEXT,                  -- JSON result of the last attempt
  error       TEXT,
  feedback    TEXT,
  data        TEXT,                  -- block state: loop iteration, for elements, wait deadline
  rowid       BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE,  -- SQLite's rowid: order of creation
  PRIMARY KEY (run_id, key)
);

-- The node state machine: every change of `nodes.status` must be a row here.
CREATE TABLE transitions (
  from_status TEXT NOT NULL,
  to_status   TEXT NOT NULL,
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO transitions VALUES
  ('pending','ready'), ('pending','skipped'), ('pending','cancelled'), ('pending','interrupted'),
  ('ready','running'), ('ready','skipped'), ('ready','waiting'), ('ready','failed'),
  ('ready','cancelled'), ('ready','interrupted'),
  ('running','succeeded'), ('running','rejected'), ('running','failed'), ('running','waiting'),
  ('running','cancelled'), ('running','interrupted'),
  ('rejected','retrying'), ('rejected','failed'), ('rejected','waiting'), ('rejected','interrupted'),
  ('failed','retrying'), ('failed','waiting'), ('failed','stale'),
  ('retrying','running'), ('retrying','cancelled'), ('retrying','interrupted'),
  ('waiting','running'), ('waiting','succeeded'), ('waiting','failed'), ('waiting','skipped'),
  ('waiting','retrying'), ('waiting','cancelled'), ('waiting','interrupted'),
  ('interrupted','ready'),
  ('succeeded','stale'), ('skipped','stale'), ('cancelled','stale'),
  ('stale','ready');

CREATE FUNCTION flowc_nodes_insert_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'a node instance must start as pending';
END $$;

CREATE TRIGGER nodes_insert_pending BEFORE INSERT ON nodes
FOR EACH ROW WHEN (NEW.status <> 'pending')
EXECUTE FUNCTION flowc_nodes_insert_pending();

-- Postgres allows no subquery in a trigger's WHEN: the lookup is in the function.
CREATE FUNCTION flowc_nodes_legal_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
    RAISE EXCEPTION 'illegal node status transition';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER nodes_legal_transition BEFORE UPDATE OF status ON nodes
FOR EACH ROW WHEN (OLD.status <> NEW.status)
EXECUTE FUNCTION flowc_nodes_legal_transition();

CREATE TABLE approvals (
  run_id       TEXT NOT NULL,
  node         TEXT NOT NULL,
  kind         TEXT NOT NULL,        -- approval | policy | escalation
  prompt       TEXT NOT NULL,
  input_hash   TEXT NOT NULL,
  status       TEXT NOT NULL,        -- pending | approved | rejected | retry | skip
  requested_at BIGINT NOT NULL,
  decided_at   BIGINT,
  decided_by   TEXT,
  comment      TEXT,
  output       TEXT,
  PRIMARY KEY (run_id, node)
);

-- Who drives a run. Not part of the projection: replay ignores it.
CREATE TABLE leases (
  run_id    TEXT PRIMARY KEY,
  owner     TEXT NOT NULL,
  pid       BIGINT NOT NULL,
  host      TEXT NOT NULL,
  heartbeat BIGINT NOT NULL,
  epoch     BIGINT NOT NULL DEFAULT 0  -- version 3
);

-- Version 2 (schema_v2_*.sql) ----------------------------------------------

-- Each run's events are numbered 1, 2, 3, … with no gap: an insert at a taken
-- or far sequence number is refused.
CREATE FUNCTION flowc_events_in_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq <> COALESCE((SELECT max(seq) FROM events WHERE run_id = NEW.run_id), 0) + 1 THEN
    RAISE EXCEPTION 'journal events are appended in order: this sequence number is taken or out of order';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER events_in_order BEFORE INSERT ON events
FOR EACH ROW EXECUTE FUNCTION flowc_events_in_order();

-- Every event carries its link in the chain.
CREATE FUNCTION flowc_events_hashed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'journal events carry their hash';
END $$;

CREATE TRIGGER events_hashed BEFORE INSERT ON events
FOR EACH ROW WHEN (NEW.hash IS NULL)
EXECUTE FUNCTION flowc_events_hashed();

-- Version 3 (schema_v3.sql): what `flowc serve` needs ----------------------

CREATE TABLE run_queue (
  run_id      TEXT PRIMARY KEY,
  ready_at    BIGINT,
  priority    BIGINT NOT NULL DEFAULT 0,
  owner       TEXT,
  lease_until BIGINT,
  restarts    BIGINT NOT NULL DEFAULT 0,
  waiting     TEXT,
  paused_at   BIGINT,
  reason      TEXT NOT NULL
);
CREATE INDEX run_queue_ready ON run_queue (ready_at) WHERE owner IS NULL AND ready_at IS NOT NULL;

CREATE TABLE trigger_events (
  trigger TEXT   NOT NULL,
  key     TEXT   NOT NULL,
  at      BIGINT NOT NULL,
  run_id  TEXT,
  outcome TEXT   NOT NULL,           -- queued | skipped | rejected | capped | cancelled_previous
  data    TEXT   NOT NULL DEFAULT '{}',
  PRIMARY KEY (trigger, key)
);
CREATE INDEX trigger_events_run ON trigger_events (run_id);

CREATE TABLE trigger_cursors (
  trigger TEXT PRIMARY KEY,
  slot    BIGINT NOT NULL
);

CREATE TABLE cancel_requests (
  run_id TEXT PRIMARY KEY,
  at     BIGINT NOT NULL,
  by     TEXT   NOT NULL
);

-- Version 4 (schema_v4.sql): approvals from anywhere -----------------------

CREATE TABLE approval_links (
  token_hash TEXT PRIMARY KEY,
  run_id     TEXT   NOT NULL,
  node       TEXT   NOT NULL,
  asked_seq  BIGINT NOT NULL,
  input_hash TEXT   NOT NULL,
  approver   TEXT   NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at    BIGINT
);
CREATE INDEX approval_links_item ON approval_links (run_id, node, asked_seq);

CREATE TABLE notifications (
  id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  run_id       TEXT   NOT NULL,
  node         TEXT,
  event        TEXT   NOT NULL,      -- approval | failure | escalation
  source_seq   BIGINT NOT NULL,      -- the event that caused it
  target       TEXT   NOT NULL,      -- JSON: {"kind": "webhook"|"slack", "url": {...}}
  message      TEXT   NOT NULL,
  status       TEXT   NOT NULL,      -- pending | delivered | failed
  attempts     BIGINT NOT NULL DEFAULT 0,
  next_at      BIGINT NOT NULL,
  last_error   TEXT,
  created_at   BIGINT NOT NULL,
  delivered_at BIGINT,
  UNIQUE (run_id, source_seq, target)
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE status = 'pending';

-- How far the service has looked through the events (an `events.rowid`).
-- `rowid` is an ordinary column here, as it is in SQLite (declared, it
-- shadows the hidden one), so `SET rowid = …` is legal on both.
CREATE TABLE notify_cursor (
  id    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY CHECK (id = 1),
  rowid BIGINT NOT NULL
);

CREATE TABLE memory (
  key        TEXT   PRIMARY KEY,
  namespace  TEXT   NOT NULL,
  value      TEXT   NOT NULL,
  version    BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  updated_by TEXT   NOT NULL,
  run_id     TEXT
);
CREATE INDEX memory_namespace ON memory (namespace);
CREATE TABLE memory_log (
  id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  key    TEXT   NOT NULL,
  value  TEXT,                       -- NULL: removed
  at     BIGINT NOT NULL,
  by     TEXT   NOT NULL,
  run_id TEXT
);
CREATE INDEX memory_log_key ON memory_log (key, id);

-- Analytics: partial indexes, each holding only the events one query counts.
CREATE INDEX events_failed_attempts ON events (at)
  WHERE kind = 'node_status' AND attempt IS NOT NULL
    AND json_extract(data, '$.status') IN ('rejected', 'failed');
CREATE INDEX events_attempt_output ON events (run_id, node, attempt) WHERE kind = 'output';
CREATE INDEX events_attempt_llm ON events (run_id, node, attempt) WHERE kind = 'llm_call';
CREATE INDEX events_violations ON events (at) WHERE kind = 'policy_violation';
CREATE INDEX events_decisions ON events (at) WHERE kind = 'approval_decided';

-- Version 5 (schema_v5.sql): the sources of runs, content-addressed --------

CREATE TABLE sources (
  hash TEXT PRIMARY KEY,   -- blake3 of the text
  text TEXT NOT NULL
);

-- What the SQLite migrations leave in `meta` (mod.rs `migrate`, after each step).
INSERT INTO meta (key, value) VALUES ('schema_version', '5');
