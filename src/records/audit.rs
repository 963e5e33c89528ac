//! `AuditEvent`: one entry of the audit trail.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};

static SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "AuditEvent",
        include_str!("../../schemas/audit_event.avsc"),
        &[],
    )
});

/// One operator action, or one change of a control point's state, as
/// written to `<app>.audit` (see `schemas/audit_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// `store`, `forward`, `pace`, `skip`, `resubmit`, `discard`, or
    /// `state-change`.
    pub action: String,
    /// The control point acted on.
    pub control_point: Option<String>,
    /// The request acted on.
    pub subject: Option<String>,
    /// The control command published or applied.
    pub command_id: Option<String>,
    /// `operator:<name>`, or an instance id.
    pub actor: String,
    /// `admin-api`, `cli` or `control-writer`.
    pub via: String,
    /// The client's address, or `user@host`.
    pub origin: Option<String>,
    /// The sfwd process that wrote it.
    pub instance: String,
    /// What else was asked or done.
    pub detail: Option<String>,
    /// `applied`, `no-op`, `pending`, `refused`, `failed`, …
    pub result: String,
    /// Why, for a refusal or a failure.
    pub message: Option<String>,
}

impl AvroRecord for AuditEvent {
    fn schemas() -> &'static RecordSchemas {
        &SCHEMAS
    }
}
