CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'journal events are append-only: UPDATE refused'); END;

-- Each run's events are numbered 1, 2, 3, … with no gap: an insert at a taken
-- or far sequence number (`INSERT OR REPLACE`, seq 0, seq 999) is refused.
CREATE TRIGGER events_in_order BEFORE INSERT ON events
WHEN NEW.seq <> COALESCE((SELECT max(seq) FROM events WHERE run_id = NEW.run_id), 0) + 1
BEGIN SELECT RAISE(ABORT, 'journal events are appended in order: this sequence number is taken or out of order'); END;

-- Every event carries its link in the chain.
CREATE TRIGGER events_hashed BEFORE INSERT ON events
WHEN NEW.hash IS NULL
BEGIN SELECT RAISE(ABORT, 'journal events carry their hash'); END;
