//! Text to syntax tree: the prescanner, the pest grammar and the lowering.

pub mod ast;
mod literal;
mod parse;
pub(crate) mod prescan;
mod rule_names;

pub use literal::{Decoded, decode_string, parse_duration};
pub(crate) use parse::{FlowParser, Rule};
pub use parse::{KEYWORDS, MAX_EXPR_DEPTH, parse_file};
pub use prescan::MAX_DEPTH;
