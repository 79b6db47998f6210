-- flowc journal, schema version 4 (from 3): approvals from anywhere.
-- None of these tables is part of the projection: replay ignores them.

-- One-time approval links. Only the token's blake3 hash is kept; the row binds
-- it to one ask (the seq of its `approval_requested`) of one node instance of
-- one run, the input hash it was asked with, and one approver. `used_at` is
-- set once, in the transaction that claims the link.
CREATE TABLE approval_links (
  token_hash TEXT PRIMARY KEY,
  run_id     TEXT    NOT NULL,
  node       TEXT    NOT NULL,
  asked_seq  INTEGER NOT NULL,
  input_hash TEXT    NOT NULL,
  approver   TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at    INTEGER
);
CREATE INDEX approval_links_item ON approval_links (run_id, node, asked_seq);

-- Notifications to send (approval asked, run failed, step escalated), an
-- outbox the service delivers with retries. `target` names where the URL
-- comes from (an env variable, a secret, or the URL itself): a secret URL is
-- never written here. `message` is already redacted.
CREATE TABLE notifications (
  id           INTEGER PRIMARY KEY,
  run_id       TEXT    NOT NULL,
  node         TEXT,
  event        TEXT    NOT NULL,     -- approval | failure | escalation
  source_seq   INTEGER NOT NULL,     -- the event that caused it
  target       TEXT    NOT NULL,     -- JSON: {"kind": "webhook"|"slack", "url": {...}}
  message      TEXT    NOT NULL,
  status       TEXT    NOT NULL,     -- pending | delivered | failed
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_at      INTEGER NOT NULL,
  last_error   TEXT,
  created_at   INTEGER NOT NULL,
  delivered_at INTEGER,
  UNIQUE (run_id, source_seq, target)
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE status = 'pending';

-- How far the service has looked through the events for things to notify
-- about (a rowid of `events`), so a restart neither repeats nor forgets one.
CREATE TABLE notify_cursor (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  rowid INTEGER NOT NULL
);

-- Memory that outlives runs: a key's current value (JSON), and every change
-- of it, in order. A run writes by a `memory_set` event (so replay and audit
-- see it, and `journal::apply` keeps these two tables); `flowc memory set|rm`
-- writes here directly, with who did it. `namespace` is the key's part before
-- its first `/` ("" for a key without one).
CREATE TABLE memory (
  key        TEXT    PRIMARY KEY,
  namespace  TEXT    NOT NULL,
  value      TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT    NOT NULL,
  run_id     TEXT
);
CREATE INDEX memory_namespace ON memory (namespace);
CREATE TABLE memory_log (
  id     INTEGER PRIMARY KEY,
  key    TEXT    NOT NULL,
  value  TEXT,                       -- NULL: removed
  at     INTEGER NOT NULL,
  by     TEXT    NOT NULL,
  run_id TEXT
);
CREATE INDEX memory_log_key ON memory_log (key, id);

-- Analytics (`flowc failures`, `flowc stats`): partial indexes, so each query
-- reads only the events it counts, and an attempt's `output` and model calls
-- are found directly instead of by scanning the run's events. An index costs
-- an append only when the event is one it holds (a failed attempt, an
-- output, a model call, a violation, a decision).
CREATE INDEX events_failed_attempts ON events (at)
  WHERE kind = 'node_status' AND attempt IS NOT NULL
    AND json_extract(data, '$.status') IN ('rejected', 'failed');
CREATE INDEX events_attempt_output ON events (run_id, node, attempt) WHERE kind = 'output';
CREATE INDEX events_attempt_llm ON events (run_id, node, attempt) WHERE kind = 'llm_call';
CREATE INDEX events_violations ON events (at) WHERE kind = 'policy_violation';
CREATE INDEX events_decisions ON events (at) WHERE kind = 'approval_decided';
