//! One-time links: minted for each eligible approver when an approval is asked, opened by their token.

use super::decide::Asked;
use super::{Link, new_token, token_hash};
use crate::journal::{Journal, JournalError, LinkRow};

/// How long a link lasts when the approval has no `timeout`.
pub const DEFAULT_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// A freshly minted link: the token is known only here and in the message that carries it.
#[derive(Debug, Clone)]
pub struct Minted {
    /// Whose link it is.
    pub approver: String,
    /// The token (256 bits, base64url).
    pub token: String,
}

/// When a link for this ask stops working: with the approval's timeout, else after a week.
pub fn expires_at(asked: &Asked) -> i64 {
    let lifetime = asked
        .data
        .get("timeout_ms")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(DEFAULT_LIFETIME_MS);
    asked.at.saturating_add(lifetime)
}

/// Mints one link for `approver` for the item's current ask (the token is returned once, stored as its hash).
pub fn mint(
    journal: &mut Journal,
    run: &str,
    node: &str,
    asked: &Asked,
    input_hash: &str,
    approver: &str,
    now: i64,
) -> Result<Minted, String> {
    let token = new_token()?;
    let row = LinkRow {
        token_hash: token_hash(&token),
        link: Link {
            run: run.to_string(),
            node: node.to_string(),
            asked_seq: asked.seq,
            input_hash: input_hash.to_string(),
            approver: approver.to_string(),
            expires_at: expires_at(asked),
            used_at: None,
        },
    };
    journal.add_link(&row, now).map_err(|e| e.to_string())?;
    Ok(Minted {
        approver: approver.to_string(),
        token,
    })
}

/// The link a token opens, if it is one.
pub fn open(journal: &Journal, token: &str) -> Result<Option<LinkRow>, JournalError> {
    if token.len() > 128 {
        return Ok(None);
    }
    journal.link(&token_hash(token))
}
