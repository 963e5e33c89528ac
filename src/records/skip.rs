//! `StoredSkip`: an operator's mark that a stored request is never replayed.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};
use super::common::SourcePosition;

static SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "StoredSkip",
        include_str!("../../schemas/stored_skip.avsc"),
        &[],
    )
});

/// One skip of one stored request, as written to the compacted
/// `<app>.skips` topic under [`StoredSkip::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSkip {
    /// The stored request's id.
    pub request_id: String,
    /// The control point whose stored topic holds it.
    pub control_point: String,
    /// Where it was consumed.
    pub source: SourcePosition,
    /// Unique per skip attempt.
    pub skip_id: String,
    /// `operator:<name>`, or whoever acted through the admin API.
    pub skipped_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub skipped_at: i64,
}

impl StoredSkip {
    /// The record key: `<request id>@<topic>/<partition>/<offset>`.
    pub fn key(&self) -> String {
        skip_key(&self.request_id, &self.source)
    }
}

/// The key of the skip marks of the stored request `request_id` consumed at
/// `source`.
pub fn skip_key(request_id: &str, source: &SourcePosition) -> String {
    format!(
        "{request_id}@{}/{}/{}",
        source.topic, source.partition, source.offset
    )
}

impl AvroRecord for StoredSkip {
    fn schemas() -> &'static RecordSchemas {
        &SCHEMAS
    }
}
