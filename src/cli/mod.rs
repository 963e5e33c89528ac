//! Subcommands of the `sfwd` binary.

pub mod control;
pub mod demo;
pub mod failed;
pub mod logging;
pub mod operator;
pub mod run;
pub mod stored;
pub mod target_sim;
pub mod validate;
