//! `StoredRequest`: a request parked on a stored topic.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::binary;
use super::codec::{AvroRecord, RecordError, RecordSchemas, HEADER_LEN, MAGIC};
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

    /// Written by hand (see `records::binary`): one is written per request
    /// stored.
    fn encode(&self) -> Result<Vec<u8>, RecordError> {
        Ok(self.encode_by_hand())
    }
}

impl StoredRequest {
    /// The single-object encoding of the current schema, field by field.
    pub(super) fn encode_by_hand(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + 128
                + self.key.as_ref().map_or(0, Vec::len)
                + self.value.as_ref().map_or(0, Vec::len),
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SCHEMAS.fingerprint().to_le_bytes());
        binary::string(&mut out, &self.request_id);
        binary::string(&mut out, &self.control_point);
        binary::string(&mut out, &self.service);
        binary::string(&mut out, &self.interface);
        binary::string(&mut out, &self.operation);
        binary::string(&mut out, &self.source.topic);
        binary::long(&mut out, self.source.partition.into());
        binary::long(&mut out, self.source.offset);
        binary::bytes_opt(&mut out, self.key.as_deref());
        binary::bytes_opt(&mut out, self.value.as_deref());
        binary::array(&mut out, &self.headers, |out, h| {
            binary::string(out, &h.key);
            binary::bytes_opt(out, h.value.as_deref());
        });
        binary::long(&mut out, self.stored_at);
        binary::long(&mut out, self.epoch);
        match &self.trigger {
            None => binary::long(&mut out, 0),
            Some(t) => {
                binary::long(&mut out, 1);
                binary::string(&mut out, &t.request_id);
                binary::string(&mut out, &t.service);
                binary::string(&mut out, &t.interface);
                binary::string(&mut out, &t.operation);
                binary::array(&mut out, t.chain.elements(), |out, e| {
                    binary::string(out, &e.type_name);
                    binary::string(out, &e.message);
                });
                binary::string(&mut out, &t.rule);
                binary::string(&mut out, &t.instance);
            }
        }
        binary::string(&mut out, &self.instance);
        out
    }

    /// The same, by the generic writer.
    #[cfg(test)]
    pub(super) fn encode_generic(&self) -> Result<Vec<u8>, RecordError> {
        SCHEMAS.encode(self)
    }
}
