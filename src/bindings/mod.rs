//! Invoking targets.

pub mod failure;
