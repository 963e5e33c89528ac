//! `FailedEvent`: a request on the failed-events topic.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::codec::{AvroRecord, RecordSchemas};
use super::common::{Header, SourcePosition};
use super::enums::FailureReason;
use crate::rules::ExceptionChain;

static SCHEMAS: LazyLock<RecordSchemas> = LazyLock::new(|| {
    RecordSchemas::load(
        "FailedEvent",
        include_str!("../../schemas/failed_event.avsc"),
        // Before `SKIPPED`: records written by earlier releases.
        &[include_str!("../../schemas/previous/failed_event.1.avsc")],
    )
});

/// A request that failed, with the reason and everything needed to resubmit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedEvent {
    /// Stable request id.
    pub request_id: String,
    /// Why it failed.
    pub reason: FailureReason,
    /// What exactly was wrong, for humans.
    pub detail: String,
    /// The control point of the service, unknown for bad input.
    pub control_point: Option<String>,
    /// The target service, unknown for bad input.
    pub service: Option<String>,
    /// The interface, unknown for bad input.
    pub interface: Option<String>,
    /// The operation, unknown for bad input.
    pub operation: Option<String>,
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
    /// The exception chain; empty for bad input.
    pub chain: ExceptionChain,
    /// Human description of the rule matched, if one did.
    pub rule: Option<String>,
    /// The sfwd instance that wrote it.
    pub instance: String,
    /// When it failed, in milliseconds since the Unix epoch.
    pub failed_at: i64,
    /// Invocation attempts made; 0 for bad input.
    pub attempts: i32,
    /// The control point epoch when it failed, if it has a control point.
    pub epoch: Option<i64>,
}

impl AvroRecord for FailedEvent {
    fn schemas() -> &'static RecordSchemas {
        &SCHEMAS
    }
}
