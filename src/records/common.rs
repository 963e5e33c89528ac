//! Named types shared by several records.

use serde::{Deserialize, Serialize};

use crate::rules::ExceptionChain;

/// Where a request was consumed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The request topic.
    pub topic: String,
    /// The partition of the request topic.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// One Kafka header; Kafka allows a header without a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value, if any.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// The request whose failure activated a store, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerInfo {
    /// The id of the failed request.
    pub request_id: String,
    /// The service it was sent to.
    pub service: String,
    /// Its interface.
    pub interface: String,
    /// Its operation.
    pub operation: String,
    /// The exception chain, top-level exception first.
    pub chain: ExceptionChain,
    /// Human description of the rule matched.
    pub rule: String,
    /// The sfwd instance that saw the failure.
    pub instance: String,
}
