//! flowc: a compiler and resumable executor for declarative workflows.
//!
//! Data flows one way: text → [`syntax`] (AST) → [`check`] (IR) → executor.

pub mod analytics;
pub mod approvals;
pub mod cache;
pub mod check;
pub mod cli;
pub mod diag;
pub mod exec;
pub mod fmt;
pub mod ir;
pub mod journal;
pub mod llm;
pub mod lsp;
pub mod sandbox;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod shell;
pub mod snapshot;
pub mod source;
pub mod span;
pub mod syntax;
