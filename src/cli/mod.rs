//! Subcommands of the `sfwd` binary.

pub mod target_sim;
pub mod validate;
