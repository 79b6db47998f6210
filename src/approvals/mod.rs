//! Who may decide an item in the human queue: the people file, the one authorization rule, and recording a decision.

mod authorize;
pub mod decide;
pub mod form;
pub mod links;
mod people;

pub use authorize::{ApprovalSpec, Link, Refusal, Request, authorize};
pub use decide::{DecideError, Decided, Decision, Verb, decide};
pub use people::{People, PeopleFile, Person, eq_constant_time, new_token, token_hash};
