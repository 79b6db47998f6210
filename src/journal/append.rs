//! The journal's write path: an append in one transaction (the lease's
//! fence, sequence numbers, the hash chain, the projection, the rows), and
//! the head mark that tells a damaged log from a complete one.

use super::db::{Db, Lock, params};
use super::{Journal, JournalError, NewEvent, apply, chain, lease, now_ms};
use std::path::PathBuf;

impl Journal {
    /// Appends `events` and applies each to the projection, all in one transaction.
    pub fn append(&mut self, events: &[NewEvent]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction(Lock::Write)?;
        if let Some((run, epoch)) = &self.fence
            && events.iter().any(|e| e.run_id == *run)
        {
            lease::check_fence(&tx, run, *epoch)?;
        }
        let last_rowid = append_in(&tx, events)?;
        tx.commit()?;
        self.committed(last_rowid);
        Ok(())
    }

    /// After a commit that appended events up to `rowid`.
    pub(super) fn committed(&mut self, rowid: i64) {
        if !self.conn.is_postgres() {
            self.write_mark(rowid);
        }
        self.commits += 1;
        if self.crash_after.is_some_and(|n| self.commits >= n) {
            // Debug-only crash hook for the crash tests: die like SIGKILL would.
            std::process::abort();
        }
    }

    /// The head mark: a small file beside the journal holding the highest
    /// event row committed, written after each commit (no fsync: it costs one
    /// `pwrite`). A damaged write-ahead log makes SQLite drop every commit
    /// after the damage without a word; the mark outlives that.
    fn mark_path(&self) -> PathBuf {
        PathBuf::from(format!("{}-head", self.path.display()))
    }

    fn write_mark(&mut self, rowid: i64) {
        use std::os::unix::fs::FileExt;
        if self.mark.is_none() {
            self.mark = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(self.mark_path())
                .ok();
        }
        if let Some(f) = &self.mark {
            // Fixed width, so a shorter number never leaves digits behind.
            let _ = f.write_at(format!("{rowid:020}\n").as_bytes(), 0);
        }
    }

    /// Refuses a journal that holds fewer events than its head mark
    /// recorded (an older copy put back in its place, a damaged log).
    pub(super) fn refuse_lost(&self) -> Result<(), JournalError> {
        match self.lost_events() {
            Some(lost) => Err(JournalError::Lost {
                path: self.path.clone(),
                lost,
            }),
            None => Ok(()),
        }
    }

    /// How many committed events the journal no longer holds, when its head
    /// mark says more were committed than it has (a damaged write-ahead log,
    /// or the last commits lost to a power cut); `None` when nothing is missing.
    pub fn lost_events(&self) -> Option<i64> {
        if self.conn.is_postgres() {
            return None;
        }
        let mark: i64 = std::fs::read_to_string(self.mark_path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let have: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(max(rowid), 0) FROM events",
                params![],
                |r| r.get(0),
            )
            .ok()?;
        (mark > have).then_some(mark - have)
    }
}

/// Appends `events` inside `tx` (sequence numbers, hash chain, projection);
/// returns the last event's row id.
pub(super) fn append_in(tx: &Db, events: &[NewEvent]) -> Result<i64, JournalError> {
    let at = now_ms();
    // Per run in this commit: the last sequence number and hash.
    let mut heads: Vec<(String, i64, String)> = Vec::new();
    // The rows to insert: seq, data, hash per event.
    let mut rows: Vec<(i64, String, String)> = Vec::with_capacity(events.len());
    for event in events {
        let i = match heads.iter().position(|(r, _, _)| *r == event.run_id) {
            Some(i) => i,
            None => {
                // Read under the write lock, never from a cache: another
                // process (`flowc approve`, …) may have appended to this run.
                let last: Option<(i64, Option<String>)> = tx.query_opt(
                    "SELECT seq, hash FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1",
                    params![event.run_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let (seq, hash) = last.unwrap_or((0, None));
                heads.push((event.run_id.clone(), seq, hash.unwrap_or_default()));
                heads.len() - 1
            }
        };
        let seq = heads[i].1 + 1;
        let data = event.data.to_string();
        let hash = chain::event_hash(
            &heads[i].2,
            &event.run_id,
            seq,
            at,
            event.kind,
            event.node.as_deref(),
            event.attempt,
            &data,
        );
        heads[i].1 = seq;
        heads[i].2.clone_from(&hash);
        // The projection first: it reads only its own tables, never `events`.
        apply::apply(
            tx,
            &event.run_id,
            at,
            event.kind,
            event.node.as_deref(),
            event.attempt,
            &event.data,
        )?;
        rows.push((seq, data, hash));
    }
    insert_events(tx, events, &rows, at)
}

/// Most events one `INSERT` carries (each distinct count is one prepared statement).
const INSERT_CHUNK: usize = 8;

/// The `INSERT` of 1 to [`INSERT_CHUNK`] events, built once.
fn insert_sql() -> &'static [String] {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        (1..=INSERT_CHUNK)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|k| {
                        let p: Vec<String> = (1..=8).map(|c| format!("?{}", k * 8 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO events (run_id, seq, at, kind, node, attempt, data, hash) VALUES {} RETURNING rowid",
                    rows.join(", ")
                )
            })
            .collect()
    })
}

/// Inserts the events, several rows a statement: on Postgres each statement
/// is a round trip, and a step's events travel together. Returns the last row id.
fn insert_events(
    tx: &Db,
    events: &[NewEvent],
    rows: &[(i64, String, String)],
    at: i64,
) -> Result<i64, JournalError> {
    let mut last_rowid = 0;
    for (chunk, row_chunk) in events.chunks(INSERT_CHUNK).zip(rows.chunks(INSERT_CHUNK)) {
        let sql = &insert_sql()[chunk.len() - 1];
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 8);
        for (event, (seq, data, hash)) in chunk.iter().zip(row_chunk) {
            values.extend_from_slice(&[
                &event.run_id as &dyn rusqlite::ToSql,
                seq,
                &at,
                &event.kind,
                &event.node,
                &event.attempt,
                data,
                hash,
            ]);
        }
        for id in tx.query_map(sql, &values, |r| r.get::<i64>(0))? {
            last_rowid = last_rowid.max(id);
        }
    }
    Ok(last_rowid)
}
