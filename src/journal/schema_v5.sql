-- flowc journal, schema version 5: the sources of runs, content-addressed.
-- A run's `run_started` event lists `{path, hash}` for every file compiled;
-- the texts are kept once here, so a run can be resumed where its files are
-- not (another machine, a deleted checkout).
CREATE TABLE sources (
  hash TEXT PRIMARY KEY,   -- blake3 of the text
  text TEXT NOT NULL
);
