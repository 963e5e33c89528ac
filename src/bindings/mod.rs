//! Invoking targets.
