//! `StoredRequest`: a request parked on a stored topic.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};
use super::common::{Header, SourcePosition, TriggerInfo};

static SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "StoredRequest",
        include_str!("../../schemas/stored_request.avsc"),
        &[],
    )
});

/// A request parked on the stored topic of a control point, with its
/// original key, value and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// Stable request id.
    pub request_id: String,
    /// The control point that stored it.
    pub control_point: String,
    /// The target service.
    pub service: String,
    /// The interface of the operation.
    pub interface: String,
    /// The operation.
    pub operation: String,
    /// Where it was consumed.
    pub source: SourcePosition,
    /// The original Kafka key.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub key: Option<Vec<u8>>,
    /// The original Kafka value.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
    /// The original Kafka headers, in order, duplicates kept.
    pub headers: Vec<Header>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at: i64,
    /// The control point epoch under which it was stored.
    pub epoch: i64,
    /// The trigger of the activation, if known.
    pub trigger: Option<TriggerInfo>,
    /// The sfwd instance that stored it.
    pub instance: String,
}

impl AvroRecord for StoredRequest {
    fn schemas() -> &'static RecordSchemas {
        &SCHEMAS
    }
}
