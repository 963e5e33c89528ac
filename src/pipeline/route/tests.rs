//! Routing and the input checks over a topology with shared, typed and
//! synchronous operations.

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
          m: { topic: mixed, operation_header: op }
  other:
    binding: { kafka: { topic: out2 } }
    interfaces:
      J: { operations: { x: { topic: mixed, operation_header: op } } }
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

/// The service (by name) and the `Interface.operation` a rejection names.
fn known(routes: &Routes, topic: &str, value: &[u8], headers: &[(&str, &str)]) -> Rejection {
    routes
        .route(topic, None, Some(value), &h(headers))
        .unwrap_err()
}

#[test]
fn rejections_name_the_service_and_operation_when_the_topic_or_header_tells() {
    let t = topology();
    let routes = Routes::new(&t);
    let svc = t.services.iter().position(|s| s.name == "svc");
    let other = t.services.iter().position(|s| s.name == "other");
    let op = |i: &str, o: &str| Some((i.to_string(), o.to_string()));
    let big = [b'x'; 101];
    for (topic, value, headers, reason, service, operation) in [
        (
            "typed",
            &b"\xff"[..],
            vec![],
            FailureReason::Malformed,
            svc,
            op("I", "typed"),
        ),
        (
            "ask",
            b"x",
            vec![],
            FailureReason::MissingHeader,
            svc,
            op("I", "ask"),
        ),
        (
            "typed",
            &big,
            vec![],
            FailureReason::Oversized,
            svc,
            op("I", "typed"),
        ),
        (
            "shared",
            &big,
            vec![("op", "a")],
            FailureReason::Oversized,
            svc,
            op("I", "a"),
        ),
        // Every operation of the topic is of one service.
        ("shared", &big, vec![], FailureReason::Oversized, svc, None),
        (
            "shared",
            b"x",
            vec![],
            FailureReason::MissingHeader,
            svc,
            None,
        ),
        (
            "shared",
            b"x",
            vec![("op", "c")],
            FailureReason::UnknownOperation,
            svc,
            None,
        ),
        // Two services share the topic: only the header tells.
        (
            "mixed",
            b"x",
            vec![],
            FailureReason::MissingHeader,
            None,
            None,
        ),
        (
            "mixed",
            &big,
            vec![("op", "x")],
            FailureReason::Oversized,
            other,
            op("J", "x"),
        ),
        (
            "nobody",
            b"x",
            vec![],
            FailureReason::UnknownOperation,
            None,
            None,
        ),
    ] {
        let e = known(&routes, topic, value, &headers);
        assert_eq!(
            (e.reason, e.service, e.operation),
            (reason, service, operation),
            "{topic} {headers:?}: {}",
            e.detail
        );
    }
}

#[test]
fn two_operation_headers_are_malformed_and_name_both_values() {
    let t = topology();
    let routes = Routes::new(&t);
    let svc = t.services.iter().position(|s| s.name == "svc");
    let other = t.services.iter().position(|s| s.name == "other");
    let e = known(
        &routes,
        "shared",
        b"x",
        &[("op", "a"), ("k", "v"), ("op", "b")],
    );
    assert_eq!(e.reason, FailureReason::Malformed);
    assert_eq!(
        e.detail,
        "the record has 2 `op` headers (`a`, `b`); exactly one must name its operation"
    );
    assert_eq!((e.service, e.operation), (svc, None));
    // Two names of one operation: it is known, the record still refused.
    let e = known(&routes, "shared", b"x", &[("op", "a"), ("op", "I.a")]);
    assert_eq!(e.reason, FailureReason::Malformed);
    assert_eq!(e.operation, Some(("I".to_string(), "a".to_string())));
    let e = known(&routes, "mixed", b"x", &[("op", "x"), ("op", "m")]);
    assert_eq!((e.reason, e.service), (FailureReason::Malformed, None));
    let e = known(&routes, "mixed", b"x", &[("op", "x"), ("op", "J.x")]);
    assert_eq!((e.service, e.operation.is_some()), (other, true));
    // A header with no value counts too.
    let mut headers = h(&[("op", "a")]);
    headers.push(("op".to_string(), None));
    let e = routes
        .route("shared", None, Some(b"x"), &headers)
        .unwrap_err();
    assert!(
        e.detail.contains("(`a`, one with no value)"),
        "{}",
        e.detail
    );
    // An oversized record with two headers is oversized, and what the
    // headers agree on is kept.
    let big = [b'x'; 101];
    let e = known(&routes, "shared", &big, &[("op", "b"), ("op", "b")]);
    assert_eq!(e.reason, FailureReason::Oversized);
    assert_eq!(e.operation, Some(("I".to_string(), "b".to_string())));
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
