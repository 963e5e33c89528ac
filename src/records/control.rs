//! `ControlCommand` and `ControlState`: the control stream and the control topic.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};
use super::common::TriggerInfo;
use super::enums::{Cause, CommandKind, Mode};

static COMMAND_SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "ControlCommand",
        include_str!("../../schemas/control_command.avsc"),
        &[include_str!(
            "../../schemas/previous/control_command.1.avsc"
        )],
    )
});

static STATE_SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "ControlState",
        include_str!("../../schemas/control_state.avsc"),
        &[include_str!("../../schemas/previous/control_state.1.avsc")],
    )
});

/// A request to change the state of a control point, applied in order by
/// the owner of its key against the current epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlCommand {
    /// Unique per command.
    pub command_id: String,
    /// The control point to change.
    pub control_point: String,
    /// What is asked.
    pub kind: CommandKind,
    /// The epoch the sender saw when it decided.
    pub observed_epoch: i64,
    /// An instance id, or `operator:<user>`.
    pub issued_by: String,
    /// When it was issued, in milliseconds since the Unix epoch.
    pub issued_at: i64,
    /// For [`CommandKind::Trigger`]: the failed request and the rule it matched.
    pub trigger: Option<TriggerInfo>,
    /// For [`CommandKind::Pace`]: requests per second, 0 for no cap, `None`
    /// for the topology's.
    #[serde(default)]
    pub replay_rate: Option<f64>,
}

impl AvroRecord for ControlCommand {
    fn schemas() -> &'static RecordSchemas {
        &COMMAND_SCHEMAS
    }
}

/// The state of a control point, as written to the compacted control topic
/// (Avro record `ControlState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlStateRecord {
    /// The control point.
    pub control_point: String,
    /// FORWARD or STORE.
    pub mode: Mode,
    /// FORWARD with stored requests still to replay.
    pub replaying: bool,
    /// Incremented by every state change.
    pub epoch: i64,
    /// When this state began, in milliseconds since the Unix epoch.
    pub since: i64,
    /// What caused it.
    pub cause: Cause,
    /// An instance id, or `operator:<user>`.
    pub changed_by: String,
    /// The designated trigger of the current or last activation.
    pub trigger: Option<TriggerInfo>,
    /// The command that produced this state.
    pub command_id: Option<String>,
    /// Fencing token of the single writer; readers ignore a record with a
    /// lower generation than one already seen for the key.
    pub writer_generation: i64,
    /// An operator's override of the replay cap: requests per second, 0 for
    /// no cap, `None` for the topology's.
    #[serde(default)]
    pub replay_rate: Option<f64>,
}

impl AvroRecord for ControlStateRecord {
    fn schemas() -> &'static RecordSchemas {
        &STATE_SCHEMAS
    }
}
