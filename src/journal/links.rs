//! One-time approval links: stored by their token's hash, claimed once.

use super::db::params;
use super::{Journal, JournalError};

/// A row of `approval_links`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The blake3 hex hash of the token.
    pub token_hash: String,
    /// The grant it carries.
    pub link: crate::approvals::Link,
}

impl Journal {
    /// Stores a link (its token only as a hash).
    pub fn add_link(&mut self, row: &LinkRow, now: i64) -> Result<(), JournalError> {
        let l = &row.link;
        self.conn.execute(
            "INSERT INTO approval_links (token_hash, run_id, node, asked_seq, input_hash, approver, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![row.token_hash, l.run, l.node, l.asked_seq, l.input_hash, l.approver, now, l.expires_at],
        )?;
        Ok(())
    }

    /// The link whose token hashes to `token_hash`, if any.
    pub fn link(&self, token_hash: &str) -> Result<Option<LinkRow>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT token_hash, run_id, node, asked_seq, input_hash, approver, expires_at, used_at
                   FROM approval_links WHERE token_hash = ?1",
            params![token_hash],
            |r| {
                Ok(LinkRow {
                    token_hash: r.get(0)?,
                    link: crate::approvals::Link {
                        run: r.get(1)?,
                        node: r.get(2)?,
                        asked_seq: r.get(3)?,
                        input_hash: r.get(4)?,
                        approver: r.get(5)?,
                        expires_at: r.get(6)?,
                        used_at: r.get(7)?,
                    },
                })
            },
        )?)
    }

    /// Marks a link used; false when it was used already (someone else won).
    pub fn claim_link(&mut self, token_hash: &str, now: i64) -> Result<bool, JournalError> {
        let changed = self.conn.execute(
            "UPDATE approval_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
            params![token_hash, now],
        )?;
        Ok(changed == 1)
    }
}
