//! `flowc replay`: rebuild a run's projection from its events and compare.

use super::db::{Db, DbError, params};
use super::{Journal, JournalError, apply::apply, create_schema};

/// One way the stored state differs from the state rebuilt from events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `runs`, `nodes` or `approvals`, and the row key.
    pub row: String,
    /// The column, or `(row)` when the row exists on one side only.
    pub column: String,
    /// The stored value.
    pub stored: String,
    /// The value rebuilt from events.
    pub replayed: String,
}

const TABLES: &[(&str, &str, &str)] = &[
    ("runs", "id", "id"),
    ("nodes", "run_id", "key"),
    ("approvals", "run_id", "node"),
];

/// Column names, and each row as its key and its values rendered as text.
type Rows = (Vec<String>, Vec<(String, Vec<String>)>);

fn rows(conn: &Db, table: &str, run_col: &str, key_col: &str, run: &str) -> Result<Rows, DbError> {
    let (cols, rows) = conn.text_rows(
        &format!("SELECT * FROM {table} WHERE {run_col} = ?1 ORDER BY {key_col}"),
        params![run],
    )?;
    // Postgres spells SQLite's hidden `rowid` as a column: not state to compare.
    let keep: Vec<usize> = (0..cols.len()).filter(|i| cols[*i] != "rowid").collect();
    let cols: Vec<String> = keep.iter().map(|i| cols[*i].clone()).collect();
    let key_ix = cols.iter().position(|c| c == key_col).unwrap_or(0);
    let rows = rows
        .into_iter()
        .map(|values| {
            let values: Vec<String> = keep.iter().map(|i| values[*i].clone()).collect();
            (values[key_ix].clone(), values)
        })
        .collect();
    Ok((cols, rows))
}

impl Journal {
    /// Rebuilds `run`'s state from its events in memory and lists every difference
    /// from the stored state (empty: the journal verifies).
    pub fn replay(&self, run: &str) -> Result<Vec<Difference>, JournalError> {
        self.run(run)?;
        let events = self.events(run)?;
        let mem = Db::Sqlite(rusqlite::Connection::open_in_memory()?);
        create_schema(&mem)?;
        for e in &events {
            apply(
                &mem,
                run,
                e.at,
                &e.kind,
                e.node.as_deref(),
                e.attempt,
                &e.data,
            )
            .map_err(|err| {
                JournalError::Sql(format!(
                    "event {} ({}) does not apply: {err}",
                    e.seq, e.kind
                ))
            })?;
        }
        let mut diffs = Vec::new();
        for (table, run_col, key_col) in TABLES {
            let (cols, stored) = rows(&self.conn, table, run_col, key_col, run)?;
            let (_, replayed) = rows(&mem, table, run_col, key_col, run)?;
            let mut s = stored.iter().peekable();
            let mut r = replayed.iter().peekable();
            loop {
                match (s.peek(), r.peek()) {
                    (None, None) => break,
                    (Some(a), Some(b)) if a.0 == b.0 => {
                        for (i, col) in cols.iter().enumerate() {
                            if a.1[i] != b.1[i] {
                                diffs.push(Difference {
                                    row: format!("{table} {}", a.0),
                                    column: col.clone(),
                                    stored: a.1[i].clone(),
                                    replayed: b.1[i].clone(),
                                });
                            }
                        }
                        s.next();
                        r.next();
                    }
                    (Some(a), b) if b.is_none_or(|b| a.0 < b.0) => {
                        diffs.push(Difference {
                            row: format!("{table} {}", a.0),
                            column: "(row)".into(),
                            stored: "present".into(),
                            replayed: "missing".into(),
                        });
                        s.next();
                    }
                    (_, b) => {
                        if let Some(b) = b {
                            diffs.push(Difference {
                                row: format!("{table} {}", b.0),
                                column: "(row)".into(),
                                stored: "missing".into(),
                                replayed: "present".into(),
                            });
                        }
                        r.next();
                    }
                }
            }
        }
        Ok(diffs)
    }
}
