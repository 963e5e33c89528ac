//! What sfwd puts on the wire besides its Avro records: the header names
//! it reads and writes, the names of its own topics, the positional
//! request id, and the partitioner of the commands topic. Every other
//! module takes these from here.

/// Header carrying a request's stable id: set by its producer, or derived
/// from its source position ([`positional_id`]); passed to the target.
pub const REQUEST_ID_HEADER: &str = "sfwd-request-id";
/// Header naming the topic a synchronous request wants its reply on.
pub const REPLY_TO_HEADER: &str = "sfwd-reply-to";
/// Header selecting the operation on a shared topic (the default name;
/// an operation may name another), and carrying `Interface.operation` to
/// the target.
pub const OPERATION_HEADER: &str = "sfwd-operation";
/// Header carrying the record key to an HTTP target, when it is text.
pub const KEY_HEADER: &str = "sfwd-key";
/// Header on a replayed request that may have reached the target before
/// (value `possible`).
pub const REDELIVERY_HEADER: &str = "sfwd-redelivery";
/// Header on a resubmitted request: the failed event it comes from.
pub const RESUBMITTED_FROM_HEADER: &str = "sfwd-resubmitted-from";
/// The W3C trace context header passed on to HTTP targets.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The W3C trace state, passed on with [`TRACEPARENT_HEADER`].
pub const TRACESTATE_HEADER: &str = "tracestate";

/// sfwd's own topics: `<application>.<suffix>`.
pub mod topics {
    /// Failed events.
    pub const FAILED: &str = "failed";
    /// Operators' resubmit and discard actions on failed events.
    pub const FAILED_ACTIONS: &str = "failed-actions";
    /// The control points' states (compacted).
    pub const CONTROL: &str = "control";
    /// Commands to the control writers.
    pub const COMMANDS: &str = "control-commands";
    /// Replay progress (compacted).
    pub const REPLAY: &str = "replay";
    /// The stored requests operators skipped (compacted).
    pub const SKIPS: &str = "skips";
    /// The audit trail.
    pub const AUDIT: &str = "audit";
    /// The prefix of a control point's stored topic: `stored.<cp>`.
    pub const STORED: &str = "stored";
}

/// The name of sfwd's topic `suffix` ([`topics`]) of `application`.
pub fn topic(application: &str, suffix: &str) -> String {
    format!("{application}.{suffix}")
}

/// The id of a request that carries none: its source position,
/// `topic/partition/offset`.
pub fn positional_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}/{offset}")
}

/// The commands-topic partition of a control point: FNV-1a of its name, so
/// that every client, whatever its partitioner, sends a control point's
/// commands to the same partition, in order.
pub fn command_partition(control_point: &str, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in control_point.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(topic("hr", topics::COMMANDS), "hr.control-commands");
        assert_eq!(positional_id("hr.get", 3, 41), "hr.get/3/41");
        // FNV-1a 32 of "Eis" is 0xda86bba8.
        assert_eq!(command_partition("Eis", 12), (0xda86_bba8_u32 % 12) as i32);
        assert_eq!(command_partition("Eis", 0), 0, "no partitions: 0");
    }
}
