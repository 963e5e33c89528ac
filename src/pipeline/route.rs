//! Which operation a record is for, and whether it is acceptable input
//! (SPEC §6.1). Pure: no Kafka types, only bytes and names.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;

use crate::records::FailureReason;
use crate::topology::{Interaction, Topology, REPLY_TO_HEADER, REQUEST_ID_HEADER};

/// A record's headers, in order, duplicates kept.
pub type Headers = [(String, Option<Vec<u8>>)];

/// The operation a record is for.
#[derive(Debug, Clone)]
pub struct OpRoute {
    /// Index of the service in the topology.
    pub service: usize,
    pub interface: String,
    pub operation: String,
    /// Sync requests are answered on their reply topic and never stored.
    pub sync: bool,
    pub schema: Option<Arc<InputCheck>>,
}

/// An operation's input schema, ready to check values with.
#[derive(Debug)]
pub struct InputCheck {
    pub schema: Schema,
    /// The fingerprints a value in single-object encoding may carry.
    pub fingerprints: Vec<u64>,
}

#[derive(Debug, Clone)]
enum TopicRoute {
    Single(OpRoute),
    Shared {
        header: String,
        /// By `Interface.operation` and, when unique on the topic, by `operation`.
        by_name: HashMap<String, OpRoute>,
        names: Vec<String>,
    },
}

/// Why a record is refused before any invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: FailureReason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Routes of every request topic of a topology.
#[derive(Debug, Clone)]
pub struct Routes {
    topics: HashMap<String, TopicRoute>,
    max_request_bytes: u64,
}

impl Routes {
    pub fn new(topology: &Topology) -> Self {
        let mut per_topic: HashMap<String, Vec<(OpRoute, Option<String>)>> = HashMap::new();
        for (index, service) in topology.services.iter().enumerate() {
            for (interface, op) in service.operations() {
                let schema = op.input_schema.as_ref().and_then(|s| {
                    let schema = Schema::parse_str(&s.canonical).ok()?;
                    Some(Arc::new(InputCheck {
                        schema,
                        fingerprints: s.fingerprints.clone(),
                    }))
                });
                per_topic.entry(op.topic.clone()).or_default().push((
                    OpRoute {
                        service: index,
                        interface: interface.name.clone(),
                        operation: op.name.clone(),
                        sync: op.interaction == Interaction::Sync,
                        schema,
                    },
                    op.operation_header.clone(),
                ));
            }
        }
        let topics = per_topic
            .into_iter()
            .map(|(topic, ops)| {
                let route = match ops.iter().find_map(|(_, h)| h.clone()) {
                    None if ops.len() == 1 => TopicRoute::Single(ops[0].0.clone()),
                    header => {
                        let mut by_name = HashMap::new();
                        let mut short_count: HashMap<&str, usize> = HashMap::new();
                        for (op, _) in &ops {
                            *short_count.entry(op.operation.as_str()).or_default() += 1;
                        }
                        for (op, _) in &ops {
                            by_name
                                .insert(format!("{}.{}", op.interface, op.operation), op.clone());
                            if short_count[op.operation.as_str()] == 1 {
                                by_name.insert(op.operation.clone(), op.clone());
                            }
                        }
                        let mut names: Vec<String> = ops
                            .iter()
                            .map(|(op, _)| format!("{}.{}", op.interface, op.operation))
                            .collect();
                        names.sort();
                        TopicRoute::Shared {
                            header: header.unwrap_or_else(|| {
                                crate::topology::DEFAULT_OPERATION_HEADER.to_string()
                            }),
                            by_name,
                            names,
                        }
                    }
                };
                (topic, route)
            })
            .collect();
        Routes {
            topics,
            max_request_bytes: topology.limits.max_request_bytes,
        }
    }

    /// The operation `topic`'s record is for, after the input checks of
    /// SPEC §6.1: size, operation header, reply topic of a sync operation,
    /// input schema.
    pub fn route(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &Headers,
    ) -> Result<&OpRoute, Rejection> {
        let size = key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        if size as u64 > self.max_request_bytes {
            return Err(Rejection::new(
                FailureReason::Oversized,
                format!(
                    "request is {size} bytes (key, value and headers); the limit is {} (limits.max_request_bytes)",
                    self.max_request_bytes
                ),
            ));
        }
        let route = match self.topics.get(topic) {
            None => {
                return Err(Rejection::new(
                    FailureReason::UnknownOperation,
                    format!("no operation reads topic `{topic}`"),
                ))
            }
            Some(TopicRoute::Single(r)) => r,
            Some(TopicRoute::Shared {
                header,
                by_name,
                names,
            }) => {
                let Some(value) = header_value(headers, header) else {
                    return Err(Rejection::new(
                        FailureReason::MissingHeader,
                        format!(
                            "topic `{topic}` is shared by several operations and the record has no `{header}` header naming one of: {}",
                            names.join(", ")
                        ),
                    ));
                };
                let name = String::from_utf8_lossy(value);
                match by_name.get(name.as_ref()) {
                    Some(r) => r,
                    None => {
                        return Err(Rejection::new(
                            FailureReason::UnknownOperation,
                            format!(
                                "header `{header}` names `{name}`, which is no operation of topic `{topic}` (operations: {})",
                                names.join(", ")
                            ),
                        ))
                    }
                }
            }
        };
        if route.sync && header_value(headers, REPLY_TO_HEADER).is_none() {
            return Err(Rejection::new(
                FailureReason::MissingHeader,
                format!(
                    "operation `{}.{}` is synchronous and the record has no `{REPLY_TO_HEADER}` header naming its reply topic",
                    route.interface, route.operation
                ),
            ));
        }
        if let Some(schema) = &route.schema {
            check_schema(schema, value)?;
        }
        Ok(route)
    }
}

/// The value of the last header named `name`.
pub fn header_value<'h>(headers: &'h Headers, name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

/// The request's stable id: its `sfwd-request-id` header when it has a
/// usable one, otherwise its source position.
pub fn request_id(headers: &Headers, topic: &str, partition: i32, offset: i64) -> String {
    header_value(headers, REQUEST_ID_HEADER)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{topic}/{partition}/{offset}"))
}

/// Values are Avro binary datums of the schema, optionally in single-object
/// encoding (`C3 01` + the schema's fingerprint).
fn check_schema(input: &InputCheck, value: Option<&[u8]>) -> Result<(), Rejection> {
    let schema = &input.schema;
    let Some(mut bytes) = value else {
        return Err(Rejection::new(
            FailureReason::Malformed,
            "the record has no value, and the operation declares an input schema",
        ));
    };
    if let Some((found, datum)) = crate::records::split_single_object(bytes) {
        if !input.fingerprints.contains(&found) {
            return Err(Rejection::new(
                FailureReason::Malformed,
                format!(
                    "the value is in Avro single-object encoding with fingerprint {}, not the input schema's ({})",
                    crate::records::fingerprint_hex(found),
                    input
                        .fingerprints
                        .first()
                        .map_or_else(String::new, |fp| crate::records::fingerprint_hex(*fp)),
                ),
            ));
        }
        bytes = datum;
    }
    let mut reader = crate::records::EofTracking::new(bytes);
    let decoded = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut reader));
    match decoded {
        Ok(_) if reader.hit_eof() => Err(Rejection::new(
            FailureReason::Malformed,
            "the value ends in the middle of the input schema's datum",
        )),
        Ok(_) if reader.remaining() == 0 => Ok(()),
        Ok(_) => Err(Rejection::new(
            FailureReason::Malformed,
            format!(
                "the value has {} bytes after the end of the input schema's datum",
                reader.remaining()
            ),
        )),
        Err(e) => Err(Rejection::new(
            FailureReason::Malformed,
            format!("the value does not decode with the input schema: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A schema with a logical type, where the specification's fingerprint
    /// and apache-avro's differ.
    const STAMPED: &str = r#"{"type":"record","name":"Stamped","namespace":"x","fields":[{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

    fn topology() -> Topology {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.avsc"),
            r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("ts.avsc"), STAMPED).unwrap();
        let yaml = r#"
application: app
kafka: { bootstrap: "localhost:9092" }
limits: { max_request_bytes: 100 }
services:
  svc:
    binding: { kafka: { topic: out } }
    interfaces:
      I:
        operations:
          a: { topic: shared, operation_header: op }
          b: { topic: shared, operation_header: op }
          typed: { topic: typed, input_schema: s.avsc }
          stamped: { topic: stamped, input_schema: ts.avsc }
          ask: { topic: ask, interaction: sync }
"#;
        let path = dir.path().join("t.yaml");
        let checked = crate::topology::check_str(yaml, &path);
        checked
            .topology
            .unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Option<Vec<u8>>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn shared_topics_route_by_header() {
        let routes = Routes::new(&topology());
        let r = routes
            .route("shared", None, Some(b"x"), &h(&[("op", "b")]))
            .unwrap();
        assert_eq!((r.interface.as_str(), r.operation.as_str()), ("I", "b"));
        let r = routes
            .route("shared", None, Some(b"x"), &h(&[("op", "I.a")]))
            .unwrap();
        assert_eq!(r.operation, "a");
        let e = routes.route("shared", None, Some(b"x"), &[]).unwrap_err();
        assert_eq!(e.reason, FailureReason::MissingHeader);
        assert!(
            e.detail.contains("no `op` header naming one of: I.a, I.b"),
            "{}",
            e.detail
        );
        let e = routes
            .route("shared", None, Some(b"x"), &h(&[("op", "c")]))
            .unwrap_err();
        assert_eq!(e.reason, FailureReason::UnknownOperation);
    }

    #[test]
    fn oversized_records_are_refused_with_their_size() {
        let routes = Routes::new(&topology());
        let big = vec![0u8; 101];
        let e = routes
            .route("shared", None, Some(&big), &h(&[("op", "a")]))
            .unwrap_err();
        assert_eq!(e.reason, FailureReason::Oversized);
        assert!(e.detail.starts_with("request is 104 bytes"), "{}", e.detail);
    }

    #[test]
    fn input_schema_is_checked() {
        let routes = Routes::new(&topology());
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}"#,
        )
        .unwrap();
        let good = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(apache_avro::types::Value::Record(vec![(
                "id".into(),
                apache_avro::types::Value::String("e-1".into()),
            )]))
            .unwrap();
        assert!(routes.route("typed", None, Some(&good), &[]).is_ok());
        let mut single = vec![0xC3, 0x01];
        single.extend_from_slice(&crate::records::fingerprint(&schema).to_le_bytes());
        single.extend_from_slice(&good);
        assert!(routes.route("typed", None, Some(&single), &[]).is_ok());
        for bad in [&b"\x08ab"[..], &b"\xff\xff\xff\xff\xff\xff"[..], &[]] {
            let e = routes.route("typed", None, Some(bad), &[]).unwrap_err();
            assert_eq!(e.reason, FailureReason::Malformed, "{bad:?}");
        }
        let e = routes.route("typed", None, None, &[]).unwrap_err();
        assert_eq!(e.reason, FailureReason::Malformed);
    }

    #[test]
    fn single_object_values_may_carry_the_standard_or_the_legacy_fingerprint() {
        let routes = Routes::new(&topology());
        let schema = Schema::parse_str(STAMPED).unwrap();
        let standard = crate::records::fingerprint(&schema);
        let legacy = crate::records::legacy_fingerprint(&schema);
        assert_ne!(standard, legacy);
        let datum = [0x02]; // the long 1
        let single = |fp: u64| [&[0xC3, 0x01][..], &fp.to_le_bytes(), &datum].concat();
        for fp in [standard, legacy] {
            assert!(routes
                .route("stamped", None, Some(&single(fp)), &[])
                .is_ok());
        }
        let e = routes
            .route("stamped", None, Some(&single(7)), &[])
            .unwrap_err();
        assert_eq!(e.reason, FailureReason::Malformed);
        assert!(
            e.detail.contains(&format!(
                "fingerprint 0700000000000000, not the input schema's ({})",
                crate::records::fingerprint_hex(standard)
            )),
            "{}",
            e.detail
        );
    }

    #[test]
    fn sync_operations_need_a_reply_topic() {
        let routes = Routes::new(&topology());
        let e = routes.route("ask", None, Some(b"x"), &[]).unwrap_err();
        assert_eq!(e.reason, FailureReason::MissingHeader);
        let r = routes
            .route("ask", None, Some(b"x"), &h(&[(REPLY_TO_HEADER, "replies")]))
            .unwrap();
        assert!(r.sync);
    }

    #[test]
    fn request_ids_come_from_the_header_or_the_position() {
        assert_eq!(request_id(&[], "t", 3, 42), "t/3/42");
        assert_eq!(
            request_id(&h(&[(REQUEST_ID_HEADER, " abc ")]), "t", 3, 42),
            "abc"
        );
        assert_eq!(
            request_id(&h(&[(REQUEST_ID_HEADER, "")]), "t", 3, 42),
            "t/3/42"
        );
        let _ = Path::new(".");
    }
}
