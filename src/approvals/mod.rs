//! Who may decide an item in the human queue: the people file and the one authorization rule.

mod authorize;
mod people;

pub use authorize::{ApprovalSpec, Refusal, Request, authorize};
pub use people::{People, Person, new_token, token_hash};
