//! The stored backlog of the control points: the requests parked on each
//! `<app>.stored.<control point>` topic, and the operators' skips of them.
//!
//! # Skips
//!
//! Kafka cannot delete one record, so a skip is a mark on the compacted
//! topic `<app>.skips` ([`StoredSkip`](crate::records::StoredSkip), keyed by
//! request id and source position). Every instance follows that topic
//! ([`Skips`]); a replay settles a skipped stored request without
//! delivering it.

mod skips;

pub use skips::{run_reader as run_skips_reader, Skips, SkipsError};
