//! Control points: the state machine that decides, and (later) the writer
//! and the store that share its decisions across the consumer group.
