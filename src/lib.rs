//! sfwd: a store-and-forward stream processor for Kafka.
//!
//! # How it fits together
//!
//! A topology file ([`topology`]) declares services, the Kafka topics their
//! operations read requests from, and for each service an optional
//! store-and-forward block: a *control point* and the *rules* that say which
//! exception chains mean "the service is down".
//!
//! - [`rules`] is the exception type tree, the exception chain, and the rule
//!   matcher (four chain modes, `*` wildcards, subtypes, scope). Pure.
//! - [`bindings::failure`] turns a failed invocation (HTTP status, refused
//!   connection, timeout, TLS, Kafka error) into an exception chain. Pure.
//! - [`control`] holds the control-point state machine: the single decision
//!   (first trigger wins, stale commands refused) that every instance of the
//!   consumer group must agree on, and the replay's pace (a cluster-wide
//!   rate and how it is split over partitions). Pure.
//! - [`failed`] is the failed-event manager: failed events collapsed per
//!   request id, and operators' resubmit and discard actions, kept on
//!   `<app>.failed-actions`.
//! - [`stored`] shows the stored backlog of each control point, and skips
//!   one stored request (it goes to the failed events instead), with the
//!   skips kept on `<app>.skips`.
//! - [`audit`] is the audit trail on `<app>.audit`: operators' actions and
//!   every state change, written where they happen, read back per control
//!   point.
//! - [`records`] encodes the Avro records that travel through Kafka (stored
//!   requests, failed events, control commands and states), from the
//!   schemas in `schemas/`.
//!
//! - [`wire`] names what sfwd puts on the wire besides its records: header
//!   names, its own topics, positional request ids, the commands topic's
//!   partitioner.
//!
//! Kafka, HTTP and RocksDB sit at the edges and use these modules; nothing
//! in `rules` or `control::machine` performs I/O.

pub mod admin;
pub mod audit;
pub mod bindings;
pub mod clock;
pub mod control;
pub mod demo;
pub mod failed;
pub mod instance;
pub mod kafka;
pub mod pipeline;
pub mod records;
pub mod rules;
pub mod shutdown;
pub mod store;
pub mod stored;
pub mod target_sim;
pub mod telemetry;
pub mod topology;
pub mod wire;
