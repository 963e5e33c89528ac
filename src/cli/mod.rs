//! Subcommands of the `sfwd` binary.

pub mod validate;
