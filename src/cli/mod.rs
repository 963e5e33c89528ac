//! Subcommands of the `sfwd` binary.

pub mod logging;
pub mod run;
pub mod target_sim;
pub mod validate;
