-- flowc journal, schema version 3 (from 2): what `flowc serve` needs.
-- None of these tables is part of the projection: replay ignores them.

-- Lease epochs (fencing): bumped on every takeover; a driver appends only
-- while the epoch it took is still the lease's, checked in the append's
-- transaction. A released lease keeps its row (pid 0), so epochs never go back.
ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- A row exists while a run wants a driver. `owner` is the supervisor that
-- claimed it (NULL while it waits); `lease_until` is that claim's deadline,
-- renewed while the run process lives. `waiting = 'approval'`: paused for a
-- person, requeued when a decision is recorded after `paused_at`.
CREATE TABLE run_queue (
  run_id      TEXT PRIMARY KEY,
  ready_at    INTEGER,
  priority    INTEGER NOT NULL DEFAULT 0,
  owner       TEXT,
  lease_until INTEGER,
  restarts    INTEGER NOT NULL DEFAULT 0,
  waiting     TEXT,
  paused_at   INTEGER,
  reason      TEXT NOT NULL
);
CREATE INDEX run_queue_ready ON run_queue (ready_at) WHERE owner IS NULL AND ready_at IS NOT NULL;

-- Every fire of a trigger, keyed by what identifies it: the slot time (cron),
-- the delivery id (webhook), a hash of the changed paths (watch). A run starts
-- only by inserting this row, so a double fire starts one run.
CREATE TABLE trigger_events (
  trigger TEXT    NOT NULL,
  key     TEXT    NOT NULL,
  at      INTEGER NOT NULL,
  run_id  TEXT,
  outcome TEXT    NOT NULL,          -- queued | skipped | rejected | capped | cancelled_previous
  data    TEXT    NOT NULL DEFAULT '{}',
  PRIMARY KEY (trigger, key)
);
CREATE INDEX trigger_events_run ON trigger_events (run_id);

-- Per cron trigger: the last slot time considered, so a restart neither
-- re-fires a slot nor forgets the ones missed while nothing ran.
CREATE TABLE trigger_cursors (
  trigger TEXT PRIMARY KEY,
  slot    INTEGER NOT NULL
);

-- Requests to cancel a run that a live process drives: it polls this table.
CREATE TABLE cancel_requests (
  run_id TEXT PRIMARY KEY,
  at     INTEGER NOT NULL,
  by     TEXT    NOT NULL
);
