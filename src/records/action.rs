//! `FailedAction`: an operator's action on a failed event.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};
use super::common::SourcePosition;
use super::enums::FailedActionKind;

static SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "FailedAction",
        include_str!("../../schemas/failed_action.avsc"),
        &[],
    )
});

/// One action on one failure of a request, as written to the compacted
/// `<app>.failed-actions` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAction {
    /// The request the failed event is about.
    pub request_id: String,
    /// What was done.
    pub action: FailedActionKind,
    /// Where the failed request was consumed: which failure of the request
    /// this acts on.
    pub failure: SourcePosition,
    /// The resubmission attempt this record belongs to; `None` for a discard.
    pub claim: Option<String>,
    /// For a settled attempt: the offset of its `RESUBMITTING` record.
    pub claim_offset: Option<i64>,
    /// Resubmit even if it was resubmitted before.
    pub forced: bool,
    /// `operator:<name>`, or whoever acted through the admin API.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// Where the request was written back, once it was.
    pub resubmitted_to: Option<SourcePosition>,
    /// Why an attempt was interrupted.
    pub detail: Option<String>,
}

impl AvroRecord for FailedAction {
    fn schemas() -> &'static RecordSchemas {
        &SCHEMAS
    }
}
