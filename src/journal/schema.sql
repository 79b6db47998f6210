-- flowc journal, schema version 1.
-- `events` is the source of truth; `runs`, `nodes` and `approvals` are its projection,
-- written only by `journal::apply` in the transaction that appends the event.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE events (
  run_id  TEXT    NOT NULL,
  seq     INTEGER NOT NULL,
  at      INTEGER NOT NULL,          -- unix time in milliseconds
  kind    TEXT    NOT NULL,
  node    TEXT,                      -- node instance key, e.g. `repair#2/verify`
  attempt INTEGER,
  data    TEXT    NOT NULL DEFAULT '{}',
  PRIMARY KEY (run_id, seq)
);

CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'journal events are append-only: UPDATE refused'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'journal events are append-only: DELETE refused'); END;

CREATE TABLE runs (
  id          TEXT PRIMARY KEY,
  skill       TEXT NOT NULL,
  file        TEXT NOT NULL,
  inputs      TEXT NOT NULL,
  status      TEXT NOT NULL,
  started_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  finished_at INTEGER,
  output      TEXT,
  error       TEXT
);

CREATE TABLE nodes (
  run_id      TEXT NOT NULL,
  key         TEXT NOT NULL,
  name        TEXT NOT NULL,
  kind        TEXT NOT NULL,
  status      TEXT NOT NULL,
  attempt     INTEGER NOT NULL DEFAULT 0,
  input_hash  TEXT,
  started_at  INTEGER,
  finished_at INTEGER,
  result      TEXT,                  -- JSON result of the last attempt
  error       TEXT,
  feedback    TEXT,
  data        TEXT,                  -- block state: loop iteration, for elements, wait deadline
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

CREATE TRIGGER nodes_insert_pending BEFORE INSERT ON nodes
WHEN NEW.status <> 'pending'
BEGIN SELECT RAISE(ABORT, 'a node instance must start as pending'); END;

CREATE TRIGGER nodes_legal_transition BEFORE UPDATE OF status ON nodes
WHEN OLD.status <> NEW.status AND NOT EXISTS
  (SELECT 1 FROM transitions WHERE from_status = OLD.status AND to_status = NEW.status)
BEGIN SELECT RAISE(ABORT, 'illegal node status transition'); END;

CREATE TABLE approvals (
  run_id       TEXT NOT NULL,
  node         TEXT NOT NULL,
  kind         TEXT NOT NULL,        -- approval | policy | escalation
  prompt       TEXT NOT NULL,
  input_hash   TEXT NOT NULL,
  status       TEXT NOT NULL,        -- pending | approved | rejected | retry | skip
  requested_at INTEGER NOT NULL,
  decided_at   INTEGER,
  decided_by   TEXT,
  comment      TEXT,
  output       TEXT,
  PRIMARY KEY (run_id, node)
);

-- Who drives a run. Not part of the projection: replay ignores it.
CREATE TABLE leases (
  run_id    TEXT PRIMARY KEY,
  owner     TEXT NOT NULL,
  pid       INTEGER NOT NULL,
  host      TEXT NOT NULL,
  heartbeat INTEGER NOT NULL
);
