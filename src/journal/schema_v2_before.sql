-- flowc journal, schema version 2 (from 1): a hash chain over each run's events,
-- and events appended in order only.
ALTER TABLE events ADD COLUMN hash TEXT;
-- Dropped while the chain of existing events is filled in, then recreated.
DROP TRIGGER events_append_only_update;
