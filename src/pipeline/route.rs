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
        /// The service every operation of the topic belongs to, if one.
        service: Option<usize>,
    },
}

/// Why a record is refused before any invocation, and what is known of
/// where it was going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: FailureReason,
    pub detail: String,
    /// The service the record is for, when the topic or its operation
    /// header tells (index in the topology).
    pub service: Option<usize>,
    /// The interface and operation, when the topic or its operation header
    /// tells.
    pub operation: Option<(String, String)>,
}

impl Rejection {
    fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            service: None,
            operation: None,
        }
    }

    /// The rejection of a record known to be for `route`.
    fn of(route: &OpRoute, reason: FailureReason, detail: impl Into<String>) -> Self {
        Rejection {
            service: Some(route.service),
            operation: Some((route.interface.clone(), route.operation.clone())),
            ..Rejection::new(reason, detail)
        }
    }

    /// The rejection of a record known to be for `service`, if known.
    fn for_service(
        service: Option<usize>,
        reason: FailureReason,
        detail: impl Into<String>,
    ) -> Self {
        Rejection {
            service,
            ..Rejection::new(reason, detail)
        }
    }

    /// This rejection with what `destination` knows of the record.
    fn about(self, destination: &Result<&OpRoute, Rejection>) -> Self {
        match destination {
            Ok(route) => Rejection::of(route, self.reason, self.detail),
            Err(why) => Rejection {
                service: why.service,
                operation: why.operation.clone(),
                ..self
            },
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
                        let service = ops
                            .first()
                            .map(|(op, _)| op.service)
                            .filter(|s| ops.iter().all(|(op, _)| op.service == *s));
                        TopicRoute::Shared {
                            header: header.unwrap_or_else(|| {
                                crate::topology::DEFAULT_OPERATION_HEADER.to_string()
                            }),
                            by_name,
                            names,
                            service,
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
    /// input schema. A rejection carries the service and operation when
    /// the topic or the operation header tells them, whatever else is
    /// wrong with the record.
    pub fn route(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &Headers,
    ) -> Result<&OpRoute, Rejection> {
        let destination = self.destination(topic, headers);
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
            )
            .about(&destination));
        }
        let route = destination?;
        if route.sync && header_value(headers, REPLY_TO_HEADER).is_none() {
            return Err(Rejection::of(
                route,
                FailureReason::MissingHeader,
                format!(
                    "operation `{}.{}` is synchronous and the record has no `{REPLY_TO_HEADER}` header naming its reply topic",
                    route.interface, route.operation
                ),
            ));
        }
        if let Some(schema) = &route.schema {
            check_schema(schema, value)
                .map_err(|why| Rejection::of(route, why.reason, why.detail))?;
        }
        Ok(route)
    }

    /// The operation a record of `topic` is for, by the topic or by its
    /// operation header.
    fn destination(&self, topic: &str, headers: &Headers) -> Result<&OpRoute, Rejection> {
        let (header, by_name, names, service) = match self.topics.get(topic) {
            None => {
                return Err(Rejection::new(
                    FailureReason::UnknownOperation,
                    format!("no operation reads topic `{topic}`"),
                ))
            }
            Some(TopicRoute::Single(r)) => return Ok(r),
            Some(TopicRoute::Shared {
                header,
                by_name,
                names,
                service,
            }) => (header, by_name, names, *service),
        };
        let values: Vec<Option<&[u8]>> = headers
            .iter()
            .filter(|(k, _)| k == header)
            .map(|(_, v)| v.as_deref())
            .collect();
        match values.as_slice() {
            [] | [None] => Err(Rejection::for_service(
                service,
                FailureReason::MissingHeader,
                format!(
                    "topic `{topic}` is shared by several operations and the record has no `{header}` header naming one of: {}",
                    names.join(", ")
                ),
            )),
            [Some(value)] => {
                let name = String::from_utf8_lossy(value);
                by_name.get(name.as_ref()).ok_or_else(|| {
                    Rejection::for_service(
                        service,
                        FailureReason::UnknownOperation,
                        format!(
                            "header `{header}` names `{name}`, which is no operation of topic `{topic}` (operations: {})",
                            names.join(", ")
                        ),
                    )
                })
            }
            several => {
                let shown: Vec<String> = several
                    .iter()
                    .map(|v| match v {
                        Some(v) => format!("`{}`", String::from_utf8_lossy(v)),
                        None => "one with no value".to_string(),
                    })
                    .collect();
                let detail = format!(
                    "the record has {} `{header}` headers ({}); exactly one must name its operation",
                    several.len(),
                    shown.join(", ")
                );
                // What every header agrees on is still known.
                let named: Option<Vec<&OpRoute>> = several
                    .iter()
                    .map(|v| v.and_then(|v| by_name.get(String::from_utf8_lossy(v).as_ref())))
                    .collect();
                let same_operation = |a: &OpRoute, b: &OpRoute| {
                    a.service == b.service
                        && a.interface == b.interface
                        && a.operation == b.operation
                };
                let rejection = match named.as_deref() {
                    Some([first, rest @ ..]) if rest.iter().all(|r| same_operation(first, r)) => {
                        Rejection::of(first, FailureReason::Malformed, detail)
                    }
                    Some([first, rest @ ..]) if rest.iter().all(|r| r.service == first.service) => {
                        Rejection::for_service(Some(first.service), FailureReason::Malformed, detail)
                    }
                    _ => Rejection::for_service(service, FailureReason::Malformed, detail),
                };
                Err(rejection)
            }
        }
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
        .unwrap_or_else(|| crate::wire::positional_id(topic, partition, offset))
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
mod tests;
