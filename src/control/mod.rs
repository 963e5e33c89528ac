//! Control points: the state machine that decides, and (later) the writer
//! and the store that share its decisions across the consumer group.

mod machine;

pub use machine::{
    Cause, Command, CommandKind, ControlPoint, Mode, NoOp, Outcome, Refusal, Trigger,
};
