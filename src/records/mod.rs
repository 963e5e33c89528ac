//! The Avro records that travel through Kafka: stored requests and the
//! operators' skips of them, failed events and operators' actions on them,
//! control commands and control states, and the audit trail.
//!
//! # Schemas
//!
//! `schemas/*.avsc` are the source of truth, compiled in with
//! `include_str!`. Each file is self-contained: the shared named types
//! (`SourcePosition`, `Header`, `ChainElement`, `TriggerInfo`) are defined
//! inline at their first use in every file that uses them. So each file
//! parses alone, in any Avro tool or schema registry, and its fingerprint is
//! the standard one. A test checks that the copies of a shared type are
//! identical across files.
//!
//! # Wire format
//!
//! Avro single-object encoding: `C3 01`, the 8-byte little-endian
//! CRC-64-AVRO fingerprint of the writer schema, then the binary datum.
//! The fingerprint is the specification's, over its Parsing Canonical Form
//! ([`fingerprint`]), so a reader that resolves schemas by fingerprint finds
//! the `.avsc` files. [`AvroRecord::decode`] looks the fingerprint up among
//! the writer schemas it knows for that record, under both that fingerprint
//! and the one earlier releases wrote ([`legacy_fingerprint`]), and
//! resolves the datum to the current schema.
//!
//! # Changing a schema
//!
//! Add fields only with a default (an optional field is `["null", T]` with
//! `"default": null`); add enum symbols only to an enum with a `default`.
//! Keep the previous file as `schemas/previous/<name>.<N>.avsc` (`N` counts
//! the versions replaced) and pass it to `RecordSchemas::load` as another
//! writer schema. A reader only decodes fingerprints it knows, so a
//! rolling upgrade takes two releases: the first accepts the new schema as
//! a writer schema, the second writes it.

mod action;
mod audit;
mod binary;
mod canonical;
mod codec;
mod common;
mod control;
mod enums;
mod failed;
mod skip;
mod stored;

#[cfg(test)]
mod tests;

pub use action::FailedAction;
pub use audit::AuditEvent;
pub use canonical::{crc64_avro, parsing_canonical_form};
pub(crate) use codec::EofTracking;
pub use codec::{
    fingerprint, fingerprint_hex, legacy_fingerprint, split_single_object, AvroRecord, RecordError,
    RecordSchemas, HEADER_LEN, MAGIC,
};
pub use common::{Header, SourcePosition, TriggerInfo};
pub use control::{ControlCommand, ControlStateRecord};
pub use enums::{Cause, CommandKind, FailedActionKind, FailureReason, Mode, ParseEnumError};
pub use failed::FailedEvent;
pub use skip::{skip_key, StoredSkip};
pub use stored::StoredRequest;
