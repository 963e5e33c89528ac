//! Control points: the state machine that decides, the single writer that
//! runs it for each control point, and the table through which every
//! instance sees its decisions.
//!
//! Flow: an instance publishes a [`Command`] (a trigger, an operator's store
//! or forward) to `<app>.control-commands`, keyed and partitioned by control
//! point. The instance that owns that partition in the consumer group
//! `<app>.control-writer` is the control point's only writer: it applies
//! commands in order with [`ControlPoint::apply`] and writes each new state
//! to the compacted `<app>.control` topic. Every instance reads that topic
//! in full into its [`ControlTable`] and acts on each change.

#[cfg(test)]
mod compaction_tests;
mod convert;
mod machine;
pub mod pace;
mod probe;
mod publisher;
mod table;
mod writer;

pub use convert::{
    command_from_record, command_to_record, state_from_record, state_to_record, trigger_to_record,
};
pub use machine::{
    Cause, Command, CommandKind, ControlPoint, Mode, NoOp, Outcome, Refusal, Trigger,
};
pub use pace::{Pace, Rate};
pub use probe::{AutoResume, Probe};
pub use publisher::{command_partition, CommandPublisher};
pub use table::{replay_key, run_reader, ControlTable, ReplayProgress, TableError};
pub use writer::{run_writer, ReplayDone, WriterError, WriterSettings};
