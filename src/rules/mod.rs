//! Exception types, exception chains, and the store-and-forward rule matcher.
//!
//! Everything here is plain data and functions: no Kafka, no I/O, no async.

mod chain;
mod glob;
mod matcher;
mod types;

pub use chain::{ChainElement, ExceptionChain};
pub use glob::Glob;
pub use matcher::{ChainMode, MatchReport, Rule, RuleSet, Scope};
pub use types::{
    TypeError, TypeTree, SERVICE_BUSINESS, SERVICE_RUNTIME, SERVICE_TIMEOUT, SERVICE_UNAVAILABLE,
};
