//! Single-object encoding: the header, the known writer schemas, the errors.

use std::io::{self, Read};
use std::sync::OnceLock;

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::canonical::{crc64_avro, parsing_canonical_form};

/// The two bytes that open every single-object encoded Avro record.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];

/// Magic plus the 8-byte little-endian CRC-64-AVRO fingerprint.
pub const HEADER_LEN: usize = MAGIC.len() + 8;

/// Why a record could not be encoded or decoded.
///
/// Retrying never helps. Every variant but [`RecordError::Encode`] and
/// [`RecordError::Convert`] means the bytes are at fault; those two mean a
/// Rust value and its schema disagree, a bug in sfwd.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the single-object header.
    #[error("{record}: {len} bytes is too short for a single-object Avro record (header is {HEADER_LEN} bytes)")]
    Truncated {
        /// The record type expected.
        record: &'static str,
        /// How many bytes there were.
        len: usize,
    },
    /// The bytes do not start with the single-object magic `C3 01`.
    #[error(
        "{record}: not a single-object Avro record: starts with {found:02x?}, expected [c3, 01]"
    )]
    BadMagic {
        /// The record type expected.
        record: &'static str,
        /// The first two bytes.
        found: [u8; 2],
    },
    /// The writer schema's fingerprint is not one this build knows.
    #[error("{record}: written with an unknown schema (fingerprint {}): another record type, or a newer sfwd", fingerprint_hex(*fingerprint))]
    UnknownSchema {
        /// The record type expected.
        record: &'static str,
        /// The CRC-64-AVRO fingerprint found in the header.
        fingerprint: u64,
    },
    /// The datum does not decode with its writer schema, or does not resolve to the current one.
    #[error("{record}: corrupt Avro datum: {source}")]
    Corrupt {
        /// The record type expected.
        record: &'static str,
        /// What Avro reported.
        #[source]
        source: apache_avro::Error,
    },
    /// The datum ends before the record does.
    #[error("{record}: Avro datum ends early")]
    TruncatedDatum {
        /// The record type expected.
        record: &'static str,
    },
    /// Bytes left over after a complete datum.
    #[error("{record}: {count} unexpected bytes after the Avro datum")]
    TrailingBytes {
        /// The record type expected.
        record: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A decoded datum does not fit the Rust type.
    #[error("{record}: decoded datum does not fit the Rust type: {source}")]
    Convert {
        /// The record type.
        record: &'static str,
        /// What Avro reported.
        #[source]
        source: apache_avro::Error,
    },
    /// A Rust value does not fit the schema.
    #[error("{record}: cannot encode: {source}")]
    Encode {
        /// The record type.
        record: &'static str,
        /// What Avro reported.
        #[source]
        source: apache_avro::Error,
    },
}

impl RecordError {
    /// True when sfwd itself is at fault rather than the bytes it was given.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            RecordError::Encode { .. } | RecordError::Convert { .. }
        )
    }
}

/// One schema with its fingerprints.
struct Versioned {
    schema: Schema,
    /// The specification's fingerprint: what `encode` writes.
    fingerprint: u64,
    /// The fingerprint earlier releases wrote, still accepted by `decode`.
    legacy_fingerprint: u64,
    /// The reader of data written with this schema (resolving it to the
    /// current one for another version), built on the first decode: its
    /// named types are resolved once, not for every record.
    reader: OnceLock<GenericDatumReader<'static>>,
}

impl Versioned {
    fn parse(record: &str, json: &str) -> Self {
        let schema = Schema::parse_str(json)
            .unwrap_or_else(|e| panic!("embedded schema of {record} is invalid: {e}"));
        Versioned {
            fingerprint: fingerprint(&schema),
            legacy_fingerprint: legacy_fingerprint(&schema),
            schema,
            reader: OnceLock::new(),
        }
    }

    fn has_fingerprint(&self, fingerprint: u64) -> bool {
        fingerprint == self.fingerprint || fingerprint == self.legacy_fingerprint
    }
}

/// The CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, both
/// as the Avro specification defines them, as the `u64` whose little-endian
/// bytes go in the single-object header. Any Avro implementation computes
/// the same value from the same schema.
pub fn fingerprint(schema: &Schema) -> u64 {
    crc64_avro(parsing_canonical_form(schema).as_bytes())
}

/// The fingerprint sfwd wrote before it followed the specification: the
/// CRC-64-AVRO of apache-avro's canonical form, which keeps
/// `{"type":"long"}` for a field with a logical type where the
/// specification's form has `"long"`. Records already on sfwd's topics
/// carry it, so `decode` accepts it beside [`fingerprint`]; for a schema
/// without logical types the two are equal.
pub fn legacy_fingerprint(schema: &Schema) -> u64 {
    let le_bytes = schema.fingerprint::<Rabin>().bytes;
    le_bytes
        .iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// A fingerprint as the hex of its 8 bytes in header order, the form Avro
/// tools print (fastavro's `fingerprint`, for one).
pub fn fingerprint_hex(fingerprint: u64) -> String {
    fingerprint
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint and the datum of bytes in single-object encoding; `None`
/// when they do not start with the magic or are shorter than the header.
pub fn split_single_object(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (magic, rest) = bytes.split_first_chunk::<2>()?;
    let (fingerprint, datum) = rest.split_first_chunk::<8>()?;
    (*magic == MAGIC).then(|| (u64::from_le_bytes(*fingerprint), datum))
}

/// The schemas of one record type: the current one, which `encode` writes
/// and `decode` resolves to, and the other writer versions `decode` accepts
/// (older ones, and the next one during a rolling upgrade).
pub struct RecordSchemas {
    record: &'static str,
    current: Versioned,
    others: Vec<Versioned>,
    /// The writer of the current schema, built (its named types resolved)
    /// on the first encode and reused for every record after it.
    writer: OnceLock<GenericDatumWriter<'static>>,
}

impl RecordSchemas {
    /// Parses the embedded schemas.
    ///
    /// # Panics
    /// If one does not parse; they are compiled in and covered by tests.
    pub(crate) fn load(record: &'static str, current: &str, other_writers: &[&str]) -> Self {
        RecordSchemas {
            record,
            current: Versioned::parse(record, current),
            others: other_writers
                .iter()
                .map(|j| Versioned::parse(record, j))
                .collect(),
            writer: OnceLock::new(),
        }
    }

    /// The record's Avro name, without namespace.
    pub fn record(&self) -> &'static str {
        self.record
    }

    /// The current schema.
    pub fn current(&self) -> &Schema {
        &self.current.schema
    }

    /// The fingerprint `encode` writes: the specification's, of the
    /// current schema.
    pub fn fingerprint(&self) -> u64 {
        self.current.fingerprint
    }

    /// The fingerprints `decode` accepts, for each writer schema, current
    /// first: the specification's and the one earlier releases wrote (the
    /// same for a schema without logical types).
    pub fn writer_fingerprints(&self) -> impl Iterator<Item = [u64; 2]> + '_ {
        std::iter::once(&self.current)
            .chain(&self.others)
            .map(|v| [v.fingerprint, v.legacy_fingerprint])
    }

    /// Every schema `decode` accepts as a writer schema, current first.
    pub fn writers(&self) -> impl Iterator<Item = &Schema> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .map(|v| &v.schema)
    }

    fn writer(&self, fingerprint: u64) -> Option<&Versioned> {
        std::iter::once(&self.current)
            .chain(&self.others)
            .find(|v| v.has_fingerprint(fingerprint))
    }

    pub(crate) fn encode<T: Serialize>(&'static self, value: &T) -> Result<Vec<u8>, RecordError> {
        let encode_err = |source| RecordError::Encode {
            record: self.record,
            source,
        };
        let writer = match self.writer.get() {
            Some(writer) => writer,
            None => {
                let writer = GenericDatumWriter::builder(&self.current.schema)
                    .build()
                    .map_err(encode_err)?;
                self.writer.get_or_init(|| writer)
            }
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.current.fingerprint.to_le_bytes());
        writer.write_ser(&mut out, value).map_err(encode_err)?;
        Ok(out)
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &'static self,
        bytes: &[u8],
    ) -> Result<T, RecordError> {
        let record = self.record;
        let truncated = || RecordError::Truncated {
            record,
            len: bytes.len(),
        };
        let (magic, rest) = bytes.split_first_chunk::<2>().ok_or_else(truncated)?;
        let (fingerprint, datum) = rest.split_first_chunk::<8>().ok_or_else(truncated)?;
        if *magic != MAGIC {
            return Err(RecordError::BadMagic {
                record,
                found: *magic,
            });
        }
        let fingerprint = u64::from_le_bytes(*fingerprint);
        let writer = self.writer(fingerprint).ok_or(RecordError::UnknownSchema {
            record,
            fingerprint,
        })?;
        let corrupt = |source| RecordError::Corrupt { record, source };
        let reader = match writer.reader.get() {
            Some(reader) => reader,
            None => {
                let resolve_to = (!std::ptr::eq(writer, &self.current)).then(|| self.current());
                let reader = GenericDatumReader::builder(&writer.schema)
                    .maybe_reader_schema(resolve_to)
                    .build()
                    .map_err(corrupt)?;
                writer.reader.get_or_init(|| reader)
            }
        };
        let mut input = EofTracking::new(datum);
        let decoded = reader.read_value(&mut input);
        if input.hit_eof {
            return Err(RecordError::TruncatedDatum { record });
        }
        let value = decoded.map_err(corrupt)?;
        if !input.rest.is_empty() {
            return Err(RecordError::TrailingBytes {
                record,
                count: input.rest.len(),
            });
        }
        apache_avro::from_value(&value).map_err(|source| RecordError::Convert { record, source })
    }
}

/// A reader over a byte slice that remembers whether anyone asked for more
/// bytes than were left.
///
/// The Avro decoder turns an end of input inside a string, a boolean or a
/// union index into a null value instead of an error; this catches it.
pub(crate) struct EofTracking<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl<'a> EofTracking<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        EofTracking {
            rest: bytes,
            hit_eof: false,
        }
    }

    /// Did a read ask for more bytes than were left?
    pub(crate) fn hit_eof(&self) -> bool {
        self.hit_eof
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl Read for EofTracking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.hit_eof = true;
        }
        self.rest.read(buf)
    }
}

/// A record type that travels through Kafka as a single-object encoded Avro datum.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// The schemas of this record type.
    fn schemas() -> &'static RecordSchemas;

    /// The current schema.
    fn schema() -> &'static Schema {
        Self::schemas().current()
    }

    /// Encodes with the current schema: magic, fingerprint, datum.
    fn encode(&self) -> Result<Vec<u8>, RecordError> {
        Self::schemas().encode(self)
    }

    /// Decodes bytes written with any known version of the schema.
    fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        Self::schemas().decode(bytes)
    }
}
