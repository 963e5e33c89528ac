use apache_avro::Schema;
use proptest::prelude::*;

use super::*;
use crate::rules::{ChainElement, ExceptionChain};

fn chain() -> ExceptionChain {
    ExceptionChain::new(vec![
        ChainElement::new(
            "ServiceUnavailableException",
            "POST http://billing/charge: 503",
        ),
        ChainElement::new("HttpStatusException", ""),
    ])
}

fn trigger() -> TriggerInfo {
    TriggerInfo {
        request_id: "orders-0-41".into(),
        service: "billing".into(),
        interface: "Billing".into(),
        operation: "charge".into(),
        chain: chain(),
        rule: "ServiceUnavailableException anywhere in the chain".into(),
        instance: "sfwd-1".into(),
    }
}

fn source() -> SourcePosition {
    SourcePosition {
        topic: "orders".into(),
        partition: 3,
        offset: i64::MAX,
    }
}

fn stored() -> StoredRequest {
    StoredRequest {
        request_id: "orders-3-42".into(),
        control_point: "billing-cp".into(),
        service: "billing".into(),
        interface: "Billing".into(),
        operation: "charge".into(),
        source: source(),
        key: Some(b"customer-7".to_vec()),
        value: Some(vec![0xff, 0x00, 0xfe, 0xc3, 0x01]),
        headers: vec![
            Header::new("trace", "a"),
            Header::new("trace", "a"),
            Header {
                key: "empty".into(),
                value: None,
            },
            Header::new("bin", vec![0x80, 0x81]),
        ],
        stored_at: 1_700_000_000_123,
        epoch: 7,
        trigger: Some(trigger()),
        instance: "sfwd-2".into(),
    }
}

fn failed() -> FailedEvent {
    FailedEvent {
        request_id: "orders-3-43".into(),
        reason: FailureReason::StoreTrigger,
        detail: "billing answered 503".into(),
        control_point: Some("billing-cp".into()),
        service: Some("billing".into()),
        interface: Some("Billing".into()),
        operation: Some("charge".into()),
        source: source(),
        key: None,
        value: Some(Vec::new()),
        headers: vec![Header::new("id", "x")],
        chain: chain(),
        rule: Some("ServiceUnavailableException".into()),
        instance: "sfwd-1".into(),
        failed_at: 1_700_000_000_000,
        attempts: 3,
        epoch: Some(6),
    }
}

fn bad_input() -> FailedEvent {
    FailedEvent {
        reason: FailureReason::Malformed,
        detail: "not JSON: expected value at line 1 column 1".into(),
        control_point: None,
        service: None,
        interface: None,
        operation: None,
        key: None,
        value: None,
        headers: Vec::new(),
        chain: ExceptionChain::default(),
        rule: None,
        attempts: 0,
        epoch: None,
        ..failed()
    }
}

fn skip() -> StoredSkip {
    StoredSkip {
        request_id: "orders-3-42".into(),
        control_point: "billing-cp".into(),
        source: source(),
        skip_id: "operator:ana-1-2a-0".into(),
        skipped_by: "operator:ana".into(),
        skipped_at: 1_700_000_000_456,
    }
}

fn command() -> ControlCommand {
    ControlCommand {
        command_id: "cmd-1".into(),
        control_point: "billing-cp".into(),
        kind: CommandKind::Trigger,
        observed_epoch: 6,
        issued_by: "sfwd-1".into(),
        issued_at: 1_700_000_000_001,
        trigger: Some(trigger()),
        replay_rate: None,
    }
}

fn state() -> ControlStateRecord {
    ControlStateRecord {
        control_point: "billing-cp".into(),
        mode: Mode::Store,
        replaying: false,
        epoch: 7,
        since: 1_700_000_000_002,
        cause: Cause::Trigger,
        changed_by: "sfwd-1".into(),
        trigger: Some(trigger()),
        command_id: Some("cmd-1".into()),
        writer_generation: 3,
        replay_rate: Some(12.5),
    }
}

fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = value.encode().expect("encode");
    assert_eq!(bytes.first_chunk::<2>(), Some(&MAGIC));
    let fp = T::schemas().fingerprint().to_le_bytes();
    assert_eq!(bytes.get(2..HEADER_LEN), Some(&fp[..]));
    let back = T::decode(&bytes).expect("decode");
    assert_eq!(&back, value);
}

#[test]
fn stored_request_round_trips() {
    round_trip(&stored());
    round_trip(&StoredRequest {
        key: None,
        value: None,
        headers: Vec::new(),
        trigger: None,
        ..stored()
    });
    round_trip(&StoredRequest {
        request_id: "注文-🚀".into(),
        service: "Zahlungsdienst-ü".into(),
        value: Some("ünïcödé 🚀".as_bytes().to_vec()),
        source: SourcePosition {
            topic: String::new(),
            partition: i32::MIN,
            offset: -1,
        },
        epoch: i64::MIN,
        ..stored()
    });
}

#[test]
fn failed_event_round_trips() {
    round_trip(&failed());
    round_trip(&bad_input());
    for reason in FailureReason::ALL {
        round_trip(&FailedEvent {
            reason: *reason,
            ..failed()
        });
    }
}

#[test]
fn audit_event_round_trips() {
    let full = AuditEvent {
        at: 1_795_358_616_508,
        action: "store".into(),
        control_point: Some("Eis".into()),
        subject: Some("hr.get/0/12".into()),
        command_id: Some("operator:alice@a-1-0".into()),
        actor: "operator:alice".into(),
        via: "admin-api".into(),
        origin: Some("10.0.0.5:51234".into()),
        instance: "a".into(),
        detail: Some("rate 200/s".into()),
        result: "applied".into(),
        message: Some("`Eis` is storing".into()),
    };
    round_trip(&full);
    round_trip(&AuditEvent {
        control_point: None,
        subject: None,
        command_id: None,
        origin: None,
        detail: None,
        message: None,
        ..full
    });
}

#[test]
fn stored_skip_round_trips() {
    round_trip(&skip());
    round_trip(&StoredSkip {
        request_id: "注文-🚀".into(),
        source: SourcePosition {
            topic: String::new(),
            partition: i32::MIN,
            offset: -1,
        },
        ..skip()
    });
    assert_eq!(skip().key(), format!("orders-3-42@orders/3/{}", i64::MAX));
}

/// Writes `event` as an earlier sfwd did: with `schemas/previous/failed_event.1.avsc`.
fn written_with_the_first_failed_event_schema(event: &FailedEvent) -> Vec<u8> {
    let old =
        Schema::parse_str(include_str!("../../schemas/previous/failed_event.1.avsc")).unwrap();
    let bytes = event.encode().unwrap();
    let mut datum = &bytes[HEADER_LEN..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(FailedEvent::schema())
        .build()
        .unwrap()
        .read_value(&mut datum)
        .unwrap();
    let mut written = MAGIC.to_vec();
    written.extend_from_slice(&fingerprint(&old).to_le_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&old)
        .build()
        .unwrap()
        .write_value(&mut written, value)
        .unwrap();
    written
}

#[test]
fn a_failed_event_written_before_skipped_existed_still_decodes() {
    let old =
        Schema::parse_str(include_str!("../../schemas/previous/failed_event.1.avsc")).unwrap();
    assert_ne!(fingerprint(&old), FailedEvent::schemas().fingerprint());
    assert!(!symbols(&old, "io.sfwd.FailureReason").contains(&"SKIPPED".to_string()));
    for event in [failed(), bad_input()] {
        let bytes = written_with_the_first_failed_event_schema(&event);
        assert_eq!(FailedEvent::decode(&bytes).unwrap(), event);
    }
    let replay_failed = FailedEvent {
        reason: FailureReason::ReplayFailed,
        ..failed()
    };
    let bytes = written_with_the_first_failed_event_schema(&replay_failed);
    assert_eq!(FailedEvent::decode(&bytes).unwrap(), replay_failed);
}

#[test]
fn control_command_round_trips() {
    round_trip(&command());
    for kind in CommandKind::ALL {
        round_trip(&ControlCommand {
            kind: *kind,
            trigger: None,
            issued_by: "operator:zoë".into(),
            ..command()
        });
    }
}

#[test]
fn control_state_round_trips() {
    round_trip(&state());
    for (mode, cause) in Mode::ALL.iter().zip(Cause::ALL.iter().cycle()) {
        round_trip(&ControlStateRecord {
            mode: *mode,
            cause: *cause,
            ..state()
        });
    }
    for cause in Cause::ALL {
        round_trip(&ControlStateRecord {
            mode: Mode::Forward,
            replaying: true,
            cause: *cause,
            trigger: None,
            command_id: None,
            ..state()
        });
    }
}

fn symbols(schema: &Schema, enum_name: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&schema.canonical_form()).unwrap();
    fn find(v: &serde_json::Value, name: &str) -> Option<Vec<String>> {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("type").and_then(|t| t.as_str()) == Some("enum")
                    && o.get("name").and_then(|n| n.as_str()) == Some(name)
                {
                    let s = o["symbols"].as_array()?;
                    return Some(
                        s.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect(),
                    );
                }
                o.values().find_map(|v| find(v, name))
            }
            serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, name)),
            _ => None,
        }
    }
    find(&json, enum_name).unwrap_or_else(|| panic!("no enum {enum_name}"))
}

fn avro_symbol<T: serde::Serialize>(value: T) -> String {
    match apache_avro::to_value(value).unwrap() {
        apache_avro::types::Value::Enum(_, s) | apache_avro::types::Value::String(s) => s,
        other => panic!("not an enum symbol: {other:?}"),
    }
}

#[test]
fn rust_enums_list_the_schema_symbols_in_order() {
    let check = |schema: &Schema, name: &str, rust: Vec<String>| {
        assert_eq!(symbols(schema, name), rust, "{name}");
    };
    check(
        FailedEvent::schema(),
        "io.sfwd.FailureReason",
        FailureReason::ALL.iter().map(avro_symbol).collect(),
    );
    check(
        ControlCommand::schema(),
        "io.sfwd.CommandKind",
        CommandKind::ALL.iter().map(avro_symbol).collect(),
    );
    check(
        ControlStateRecord::schema(),
        "io.sfwd.Mode",
        Mode::ALL.iter().map(avro_symbol).collect(),
    );
    check(
        ControlStateRecord::schema(),
        "io.sfwd.Cause",
        Cause::ALL.iter().map(avro_symbol).collect(),
    );
    check(
        FailedAction::schema(),
        "io.sfwd.FailedActionKind",
        FailedActionKind::ALL.iter().map(avro_symbol).collect(),
    );
}

#[test]
fn enums_parse_their_kebab_case_names() {
    assert_eq!(FailureReason::StoreTrigger.as_str(), "store-trigger");
    assert_eq!(FailureReason::MissingHeader.to_string(), "missing-header");
    assert_eq!(CommandKind::ReplayCaughtUp.as_str(), "replay-caught-up");
    for r in FailureReason::ALL {
        assert_eq!(r.as_str().parse::<FailureReason>(), Ok(*r));
    }
    for k in CommandKind::ALL {
        assert_eq!(k.as_str().parse::<CommandKind>(), Ok(*k));
    }
    for m in Mode::ALL {
        assert_eq!(m.as_str().parse::<Mode>(), Ok(*m));
    }
    for c in Cause::ALL {
        assert_eq!(c.as_str().parse::<Cause>(), Ok(*c));
    }
    let err = "STORE_TRIGGER".parse::<FailureReason>().unwrap_err();
    assert!(
        err.to_string().contains("store-trigger, invocation-failed"),
        "{err}"
    );
}

#[test]
fn schema_names_match_the_record_names() {
    for (schemas, full) in [
        (StoredRequest::schemas(), "io.sfwd.StoredRequest"),
        (FailedEvent::schemas(), "io.sfwd.FailedEvent"),
        (ControlCommand::schemas(), "io.sfwd.ControlCommand"),
        (ControlStateRecord::schemas(), "io.sfwd.ControlState"),
        (FailedAction::schemas(), "io.sfwd.FailedAction"),
        (StoredSkip::schemas(), "io.sfwd.StoredSkip"),
        (AuditEvent::schemas(), "io.sfwd.AuditEvent"),
    ] {
        let name = schemas.current().name().expect("named").fullname(None);
        assert_eq!(name, full);
        assert_eq!(format!("io.sfwd.{}", schemas.record()), full);
    }
}

#[test]
fn short_input_is_truncated() {
    let bytes = stored().encode().unwrap();
    for len in 0..HEADER_LEN {
        let err = StoredRequest::decode(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, RecordError::Truncated { record: "StoredRequest", len: l } if l == len),
            "{len}: {err}"
        );
    }
}

#[test]
fn wrong_magic_is_reported() {
    let mut bytes = stored().encode().unwrap();
    bytes[0] = 0x00;
    let err = StoredRequest::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::BadMagic {
                found: [0x00, 0x01],
                ..
            }
        ),
        "{err}"
    );
    let err = StoredRequest::decode(b"{\"request_id\": 1}").unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::BadMagic {
                found: [b'{', b'"'],
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_fingerprint_is_reported() {
    let mut bytes = stored().encode().unwrap();
    bytes[5] ^= 0xff;
    let err = StoredRequest::decode(&bytes).unwrap_err();
    assert!(matches!(err, RecordError::UnknownSchema { .. }), "{err}");

    let err = FailedEvent::decode(&stored().encode().unwrap()).unwrap_err();
    assert!(
        matches!(err, RecordError::UnknownSchema { record: "FailedEvent", fingerprint }
            if fingerprint == StoredRequest::schemas().fingerprint()),
        "{err}"
    );
    assert!(err.to_string().contains("FailedEvent"), "{err}");
}

fn assert_every_truncation_fails<T: AvroRecord>(value: &T) {
    let bytes = value.encode().unwrap();
    for len in HEADER_LEN..bytes.len() {
        let err = T::decode(&bytes[..len]).err();
        assert!(
            matches!(err, Some(RecordError::TruncatedDatum { .. })),
            "{} of {} bytes: {err:?}",
            len,
            bytes.len()
        );
    }
}

#[test]
fn every_truncation_of_the_datum_is_an_error() {
    assert_every_truncation_fails(&stored());
    assert_every_truncation_fails(&failed());
    assert_every_truncation_fails(&bad_input());
    assert_every_truncation_fails(&command());
    assert_every_truncation_fails(&state());
    assert_every_truncation_fails(&skip());
}

#[test]
fn trailing_bytes_are_reported() {
    let mut bytes = command().encode().unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    let err = ControlCommand::decode(&bytes).unwrap_err();
    assert!(
        matches!(err, RecordError::TrailingBytes { count: 3, .. }),
        "{err}"
    );
}

#[test]
fn garbage_after_a_valid_header_is_corrupt() {
    let header = {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&FailedEvent::schemas().fingerprint().to_le_bytes());
        h
    };
    // A string length of -1, a huge length, an enum index out of range.
    for datum in [
        &[0x01][..],
        &[0xfe, 0xff, 0xff, 0xff, 0x0f],
        &[0x02, b'a', 0x7e],
    ] {
        let mut bytes = header.clone();
        bytes.extend_from_slice(datum);
        let err = FailedEvent::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, RecordError::Corrupt { .. }),
            "{datum:?}: {err}"
        );
        assert!(!err.is_internal());
    }
}

fn bytes_opt() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
}

fn headers() -> impl Strategy<Value = Vec<Header>> {
    proptest::collection::vec(
        (any::<String>(), bytes_opt()).prop_map(|(key, value)| Header { key, value }),
        0..5,
    )
}

fn chains() -> impl Strategy<Value = ExceptionChain> {
    proptest::collection::vec(
        (any::<String>(), any::<String>()).prop_map(|(t, m)| ChainElement::new(t, m)),
        0..4,
    )
    .prop_map(ExceptionChain::new)
}

fn positions() -> impl Strategy<Value = SourcePosition> {
    (any::<String>(), any::<i32>(), any::<i64>()).prop_map(|(topic, partition, offset)| {
        SourcePosition {
            topic,
            partition,
            offset,
        }
    })
}

fn triggers() -> impl Strategy<Value = TriggerInfo> {
    (
        any::<[String; 4]>(),
        chains(),
        any::<String>(),
        any::<String>(),
    )
        .prop_map(
            |([request_id, service, interface, operation], chain, rule, instance)| TriggerInfo {
                request_id,
                service,
                interface,
                operation,
                chain,
                rule,
                instance,
            },
        )
}

fn stored_requests() -> impl Strategy<Value = StoredRequest> {
    (
        any::<[String; 6]>(),
        positions(),
        bytes_opt(),
        bytes_opt(),
        headers(),
        any::<[i64; 2]>(),
        proptest::option::of(triggers()),
    )
        .prop_map(
            |(
                [request_id, control_point, service, interface, operation, instance],
                source,
                key,
                value,
                headers,
                [stored_at, epoch],
                trigger,
            )| StoredRequest {
                request_id,
                control_point,
                service,
                interface,
                operation,
                source,
                key,
                value,
                headers,
                stored_at,
                epoch,
                trigger,
                instance,
            },
        )
}

fn failed_events() -> impl Strategy<Value = FailedEvent> {
    (
        any::<[String; 3]>(),
        proptest::sample::select(FailureReason::ALL),
        any::<[Option<String>; 5]>(),
        positions(),
        (bytes_opt(), bytes_opt(), headers()),
        chains(),
        (any::<i64>(), any::<i32>(), any::<Option<i64>>()),
    )
        .prop_map(
            |(
                [request_id, detail, instance],
                reason,
                [control_point, service, interface, operation, rule],
                source,
                (key, value, headers),
                chain,
                (failed_at, attempts, epoch),
            )| FailedEvent {
                request_id,
                reason,
                detail,
                control_point,
                service,
                interface,
                operation,
                source,
                key,
                value,
                headers,
                chain,
                rule,
                instance,
                failed_at,
                attempts,
                epoch,
            },
        )
}

proptest! {
    #[test]
    fn stored_requests_encoded_by_hand_are_what_the_generic_writer_writes(request in stored_requests()) {
        prop_assert_eq!(request.encode_by_hand(), request.encode_generic().unwrap());
    }

    #[test]
    fn arbitrary_stored_requests_round_trip(request in stored_requests()) {
        let bytes = request.encode().unwrap();
        prop_assert_eq!(StoredRequest::decode(&bytes).unwrap(), request);
    }

    #[test]
    fn arbitrary_failed_events_round_trip(event in failed_events()) {
        let bytes = event.encode().unwrap();
        prop_assert_eq!(FailedEvent::decode(&bytes).unwrap(), event);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = StoredRequest::decode(&bytes);
        let _ = ControlStateRecord::decode(&bytes);
    }

    #[test]
    fn corrupted_records_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = failed().encode().unwrap();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        let _ = FailedEvent::decode(&bytes);
    }
}

/// `stored_request.avsc` with an optional field added after `request_id`.
fn stored_request_with_extra_field() -> String {
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/stored_request.avsc")).unwrap();
    json["fields"].as_array_mut().unwrap().insert(
        1,
        serde_json::json!({"name": "priority", "type": ["null", "int"], "default": null}),
    );
    json.to_string()
}

#[test]
fn another_known_writer_schema_is_resolved_to_the_current_one() {
    let current = include_str!("../../schemas/stored_request.avsc");
    let other = stored_request_with_extra_field();
    let schemas: &'static _ = Box::leak(Box::new(codec::RecordSchemas::load(
        "StoredRequest",
        current,
        &[&other],
    )));
    let other_schema = Schema::parse_str(&other).unwrap();
    assert_eq!(schemas.writers().count(), 2);

    let bytes = stored().encode().unwrap();
    let mut datum = &bytes[HEADER_LEN..];
    let apache_avro::types::Value::Record(mut fields) =
        apache_avro::reader::datum::GenericDatumReader::builder(StoredRequest::schema())
            .build()
            .unwrap()
            .read_value(&mut datum)
            .unwrap()
    else {
        panic!("not a record");
    };
    fields.insert(
        1,
        (
            "priority".into(),
            apache_avro::types::Value::Union(1, Box::new(apache_avro::types::Value::Int(9))),
        ),
    );
    let mut written = MAGIC.to_vec();
    written.extend_from_slice(&fingerprint(&other_schema).to_le_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&other_schema)
        .build()
        .unwrap()
        .write_value(&mut written, apache_avro::types::Value::Record(fields))
        .unwrap();

    assert_eq!(schemas.decode::<StoredRequest>(&written).unwrap(), stored());
    let err = StoredRequest::decode(&written).unwrap_err();
    assert!(matches!(err, RecordError::UnknownSchema { .. }), "{err}");
}

/// Writes `value` as a writer with `schema_json` would: header and datum,
/// the fields the schema does not have left out.
fn written_with<T: serde::Serialize>(schema_json: &str, value: &T) -> Vec<u8> {
    let schema = Schema::parse_str(schema_json).unwrap();
    let apache_avro::types::Value::Record(fields) = apache_avro::to_value(value).unwrap() else {
        panic!("not a record");
    };
    let names: Vec<String> = match &schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        _ => panic!("not a record schema"),
    };
    let fields = fields
        .into_iter()
        .filter(|(name, _)| names.contains(name))
        .collect();
    let value = apache_avro::types::Value::Record(fields)
        .resolve(&schema)
        .unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&fingerprint(&schema).to_le_bytes());
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value(&mut out, value)
        .unwrap();
    out
}

#[test]
fn control_records_of_the_previous_schema_are_still_read() {
    let old_command = include_str!("../../schemas/previous/control_command.1.avsc");
    let old_state = include_str!("../../schemas/previous/control_state.1.avsc");
    let old = ControlCommand {
        replay_rate: None,
        ..command()
    };
    assert_eq!(
        ControlCommand::decode(&written_with(old_command, &old)).unwrap(),
        old
    );
    let old = ControlStateRecord {
        replay_rate: None,
        ..state()
    };
    assert_eq!(
        ControlStateRecord::decode(&written_with(old_state, &old)).unwrap(),
        old
    );
    // And the current ones carry the pace.
    let paced = ControlCommand {
        kind: CommandKind::Pace,
        trigger: None,
        replay_rate: Some(50.0),
        ..command()
    };
    assert_eq!(
        ControlCommand::decode(&paced.encode().unwrap()).unwrap(),
        paced
    );
}
