//! The schema files, their fingerprints and their evolution, through the
//! public records API.

mod canonical_form;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::json;
use sfwd::records::{
    AuditEvent, AvroRecord, Cause, CommandKind, ControlCommand, ControlStateRecord, FailedAction,
    FailedActionKind, FailedEvent, FailureReason, Header, Mode, SourcePosition, StoredRequest,
    StoredSkip, TriggerInfo, HEADER_LEN, MAGIC,
};
use sfwd::rules::{ChainElement, ExceptionChain};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// Every `.avsc` under `schemas/`, recursively.
fn schema_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "avsc") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&schema_dir(), &mut files);
    files.sort();
    files
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file of each record type and the schema compiled into the crate.
fn records() -> Vec<(&'static str, &'static Schema)> {
    vec![
        ("stored_request.avsc", StoredRequest::schema()),
        ("failed_event.avsc", FailedEvent::schema()),
        ("control_command.avsc", ControlCommand::schema()),
        ("control_state.avsc", ControlStateRecord::schema()),
        ("failed_action.avsc", FailedAction::schema()),
        ("stored_skip.avsc", StoredSkip::schema()),
        ("audit_event.avsc", AuditEvent::schema()),
    ]
}

#[test]
fn every_schema_file_parses() {
    let files = schema_files();
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = schema.name().expect("a named schema");
        assert_eq!(name.namespace(), Some("io.sfwd"), "{}", path.display());
    }
}

#[test]
fn every_top_level_schema_file_belongs_to_a_record_type() {
    let known: Vec<_> = records().into_iter().map(|(file, _)| file).collect();
    for entry in std::fs::read_dir(schema_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "avsc") {
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(known.contains(&file), "{file} has no record type");
        }
    }
}

#[test]
fn embedded_schemas_are_the_files() {
    for (file, embedded) in records() {
        let text = std::fs::read_to_string(schema_dir().join(file)).unwrap();
        let parsed = Schema::parse_str(&text).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(embedded).unwrap(),
            "{file}"
        );
    }
}

/// Collects every named type definition, docs removed, by full name.
fn named_types(
    v: &serde_json::Value,
    namespace: &str,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(o) => {
            let is_named = matches!(
                o.get("type").and_then(|t| t.as_str()),
                Some("record" | "enum" | "fixed")
            );
            let namespace = o
                .get("namespace")
                .and_then(|n| n.as_str())
                .unwrap_or(namespace);
            if let (true, Some(name)) = (is_named, o.get("name").and_then(|n| n.as_str())) {
                let mut def = v.clone();
                strip_docs(&mut def);
                out.insert(format!("{namespace}.{name}"), def);
            }
            for v in o.values() {
                named_types(v, namespace, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| named_types(v, namespace, out)),
        _ => {}
    }
}

fn strip_docs(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            o.remove("doc");
            o.values_mut().for_each(strip_docs);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_docs),
        _ => {}
    }
}

#[test]
fn shared_named_types_are_identical_in_every_file() {
    let mut seen: BTreeMap<String, (PathBuf, serde_json::Value)> = BTreeMap::new();
    for (file, _) in records() {
        let path = schema_dir().join(file);
        let mut types = BTreeMap::new();
        named_types(&read_json(&path), "", &mut types);
        for (name, def) in types {
            match seen.get(&name) {
                Some((first, earlier)) => assert_eq!(
                    &def,
                    earlier,
                    "{name} differs between {} and {}",
                    first.display(),
                    path.display()
                ),
                None => {
                    seen.insert(name, (path.clone(), def));
                }
            }
        }
    }
    for shared in ["SourcePosition", "Header", "ChainElement", "TriggerInfo"] {
        assert!(seen.contains_key(&format!("io.sfwd.{shared}")), "{shared}");
    }
}

fn trigger() -> TriggerInfo {
    TriggerInfo {
        request_id: "orders-0-41".into(),
        service: "billing".into(),
        interface: "Billing".into(),
        operation: "charge".into(),
        chain: ExceptionChain::new(vec![
            ChainElement::new("ServiceUnavailableException", "503"),
            ChainElement::new("ConnectException", "refused"),
        ]),
        rule: "ServiceUnavailableException".into(),
        instance: "sfwd-1".into(),
    }
}

fn source() -> SourcePosition {
    SourcePosition {
        topic: "orders".into(),
        partition: 0,
        offset: 42,
    }
}

fn stored() -> StoredRequest {
    StoredRequest {
        request_id: "orders-0-42".into(),
        control_point: "billing".into(),
        service: "billing".into(),
        interface: "Billing".into(),
        operation: "charge".into(),
        source: source(),
        key: None,
        value: Some(vec![0xff, 0xfe]),
        headers: vec![
            Header::new("h", "1"),
            Header {
                key: "h".into(),
                value: None,
            },
        ],
        stored_at: 1_700_000_000_000,
        epoch: 3,
        trigger: Some(trigger()),
        instance: "sfwd-2".into(),
    }
}

fn failed() -> FailedEvent {
    FailedEvent {
        request_id: "orders-0-41".into(),
        reason: FailureReason::StoreTrigger,
        detail: "503 from billing".into(),
        control_point: Some("billing".into()),
        service: Some("billing".into()),
        interface: None,
        operation: None,
        source: source(),
        key: Some(b"k".to_vec()),
        value: None,
        headers: Vec::new(),
        chain: trigger().chain,
        rule: None,
        instance: "sfwd-1".into(),
        failed_at: 1_700_000_000_000,
        attempts: 1,
        epoch: Some(2),
    }
}

fn command() -> ControlCommand {
    ControlCommand {
        command_id: "c-1".into(),
        control_point: "billing".into(),
        kind: CommandKind::Forward,
        observed_epoch: 3,
        issued_by: "operator:ana".into(),
        issued_at: 1_700_000_000_000,
        trigger: None,
        replay_rate: None,
    }
}

fn state() -> ControlStateRecord {
    ControlStateRecord {
        control_point: "billing".into(),
        mode: Mode::Store,
        replaying: false,
        epoch: 3,
        since: 1_700_000_000_000,
        cause: Cause::Trigger,
        changed_by: "sfwd-1".into(),
        trigger: Some(trigger()),
        command_id: Some("c-1".into()),
        writer_generation: 1,
        replay_rate: None,
    }
}

/// The Avro datum after the single-object header, checking the header.
fn datum<T: AvroRecord>(bytes: &[u8]) -> &[u8] {
    assert!(bytes.len() > HEADER_LEN, "{} bytes", bytes.len());
    assert_eq!(bytes[..2], MAGIC);
    assert_eq!(
        bytes[2..HEADER_LEN],
        T::schemas().fingerprint().to_le_bytes()
    );
    &bytes[HEADER_LEN..]
}

/// The schema in `file` with two optional fields added: one after the first
/// field, one at the end.
///
/// Built from the file rather than the canonical form, which drops logical
/// types: apache-avro does not resolve a `timestamp-millis` to a plain `long`.
fn with_optional_fields(file: &str) -> Schema {
    let mut json = read_json(&schema_dir().join(file));
    let fields = json["fields"].as_array_mut().unwrap();
    fields.insert(
        1,
        json!({"name": "added_in_middle", "type": ["null", "string"], "default": null}),
    );
    fields.push(json!({"name": "added_at_end", "type": ["null", "long"], "default": null}));
    Schema::parse(&json).unwrap()
}

fn read(writer: &Schema, reader: Option<&Schema>, mut datum: &[u8]) -> Value {
    let value = GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()
        .unwrap()
        .read_value(&mut datum)
        .unwrap();
    assert!(datum.is_empty(), "{} bytes left", datum.len());
    value
}

fn fields(value: Value) -> Vec<(String, Value)> {
    match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

fn check_fingerprint_and_evolution<T: AvroRecord + PartialEq + Debug>(file: &str, record: &T) {
    let bytes = record.encode().unwrap();
    let datum = datum::<T>(&bytes);
    let current = T::schema();
    let evolved = with_optional_fields(file);
    let as_written = read(current, None, datum);

    // A newer reader reads what the current writer wrote: the added fields
    // take their default, the others are unchanged.
    let resolved = fields(read(current, Some(&evolved), datum));
    let added: Vec<_> = resolved
        .iter()
        .filter(|(name, _)| name.starts_with("added_"))
        .collect();
    assert_eq!(added.len(), 2);
    for (_, value) in &added {
        assert_eq!(value, &Value::Union(0, Box::new(Value::Null)));
    }
    let others: Vec<_> = resolved
        .iter()
        .filter(|(name, _)| !name.starts_with("added_"))
        .cloned()
        .collect();
    assert_eq!(others, fields(as_written.clone()));
    let back: T = apache_avro::from_value(&Value::Record(resolved)).unwrap();
    assert_eq!(&back, record);

    // The current reader reads what a newer writer wrote: the writer's
    // extra fields are skipped.
    let mut newer = fields(as_written);
    newer.insert(
        1,
        (
            "added_in_middle".into(),
            Value::Union(1, Box::new(Value::String("new".into()))),
        ),
    );
    newer.push((
        "added_at_end".into(),
        Value::Union(1, Box::new(Value::Long(-5))),
    ));
    let newer_datum = GenericDatumWriter::builder(&evolved)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(newer))
        .unwrap();
    let old_view = read(&evolved, Some(current), &newer_datum);
    let back: T = apache_avro::from_value(&old_view).unwrap();
    assert_eq!(&back, record);
}

#[test]
fn stored_request_fingerprint_and_evolution() {
    check_fingerprint_and_evolution("stored_request.avsc", &stored());
    check_fingerprint_and_evolution(
        "stored_request.avsc",
        &StoredRequest {
            trigger: None,
            ..stored()
        },
    );
}

#[test]
fn failed_event_fingerprint_and_evolution() {
    check_fingerprint_and_evolution("failed_event.avsc", &failed());
}

#[test]
fn control_command_fingerprint_and_evolution() {
    check_fingerprint_and_evolution("control_command.avsc", &command());
    check_fingerprint_and_evolution(
        "control_command.avsc",
        &ControlCommand {
            kind: CommandKind::Trigger,
            trigger: Some(trigger()),
            ..command()
        },
    );
}

fn action() -> FailedAction {
    FailedAction {
        request_id: "orders-0-41".into(),
        action: FailedActionKind::Resubmitted,
        failure: source(),
        claim: Some("operator:ana-1".into()),
        claim_offset: Some(7),
        forced: false,
        by: "operator:ana".into(),
        at: 1_700_000_000_000,
        resubmitted_to: Some(SourcePosition {
            topic: "orders".into(),
            partition: 0,
            offset: 99,
        }),
        detail: None,
    }
}

#[test]
fn failed_action_fingerprint_and_evolution() {
    check_fingerprint_and_evolution("failed_action.avsc", &action());
    check_fingerprint_and_evolution(
        "failed_action.avsc",
        &FailedAction {
            action: FailedActionKind::Discarded,
            claim: None,
            claim_offset: None,
            resubmitted_to: None,
            ..action()
        },
    );
}

#[test]
fn stored_skip_fingerprint_and_evolution() {
    check_fingerprint_and_evolution(
        "stored_skip.avsc",
        &StoredSkip {
            request_id: "orders/3/42".into(),
            control_point: "billing-cp".into(),
            source: source(),
            skip_id: "operator:ana-1-2a-0".into(),
            skipped_by: "operator:ana".into(),
            skipped_at: 1_700_000_000_456,
        },
    );
}

#[test]
fn control_state_fingerprint_and_evolution() {
    check_fingerprint_and_evolution("control_state.avsc", &state());
}

#[test]
fn an_unknown_failure_reason_reads_as_unknown() {
    let mut json = read_json(&schema_dir().join("failed_event.avsc"));
    let reason = json["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "reason")
        .unwrap();
    reason["type"]["symbols"]
        .as_array_mut()
        .unwrap()
        .push(json!("RATE_LIMITED"));
    let newer = Schema::parse(&json).unwrap();

    let bytes = failed().encode().unwrap();
    let mut value = fields(read(
        FailedEvent::schema(),
        None,
        datum::<FailedEvent>(&bytes),
    ));
    let symbols = match &newer {
        Schema::Record(r) => match &r.fields[1].schema {
            Schema::Enum(e) => e.symbols.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let index = symbols.iter().position(|s| s == "RATE_LIMITED").unwrap();
    value[1].1 = Value::Enum(index as u32, "RATE_LIMITED".into());
    let newer_datum = GenericDatumWriter::builder(&newer)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(value))
        .unwrap();

    let old_view = read(&newer, Some(FailedEvent::schema()), &newer_datum);
    let back: FailedEvent = apache_avro::from_value(&old_view).unwrap();
    assert_eq!(back.reason, FailureReason::Unknown);
    assert_eq!(
        back,
        FailedEvent {
            reason: FailureReason::Unknown,
            ..failed()
        }
    );
}

/// Every schema file with the fingerprint of its Parsing Canonical Form as
/// the Avro specification defines both (the value fastavro computes, with
/// `fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")`), and the
/// fingerprint earlier releases of sfwd wrote, which records already on
/// their topics carry. Both as the 8 header bytes in hex.
const FINGERPRINTS: &[(&str, &str, &str)] = &[
    (
        "control_command.avsc",
        "ead6937fe7caeb39",
        "3df21e8986be90ae",
    ),
    ("control_state.avsc", "233e37a781907045", "23b2cb2d62439c6e"),
    ("failed_action.avsc", "6175efd075889556", "1b1160f993b2eddc"),
    ("failed_event.avsc", "300354f893225ad5", "ae65b45822ae1022"),
    (
        "stored_request.avsc",
        "6a1f2eb32a050d41",
        "e6c89eacfe652fd8",
    ),
    ("stored_skip.avsc", "172a0525bfabb831", "9c34aa6e954f902b"),
    ("audit_event.avsc", "ce95dc9f41f4a355", "3fd0e75037e3d84e"),
    (
        "previous/control_command.1.avsc",
        "44e4ebad122ff6a5",
        "3b5b7aab26396d08",
    ),
    (
        "previous/control_state.1.avsc",
        "dff453cc152fff1b",
        "e9ac390d4439d9db",
    ),
    (
        "previous/failed_event.1.avsc",
        "897413c4b5b29b11",
        "14b2c7849ce9d8ee",
    ),
];

fn hex(fingerprint: u64) -> String {
    fingerprint
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn from_hex(hex: &str) -> [u8; 8] {
    let mut out = [0; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// `record` as a writer with the schema `file` writes it, with `fingerprint`
/// in the header: the fields the schema lacks left out.
fn written_with<T: serde::Serialize>(file: &str, fingerprint: [u8; 8], record: &T) -> Vec<u8> {
    let schema = Schema::parse(&read_json(&schema_dir().join(file))).unwrap();
    let Value::Record(fields) = apache_avro::to_value(record).unwrap() else {
        panic!("not a record");
    };
    let Schema::Record(r) = &schema else {
        panic!("{file} is not a record schema");
    };
    let fields = fields
        .into_iter()
        .filter(|(name, _)| r.fields.iter().any(|f| &f.name == name))
        .collect();
    let value = Value::Record(fields).resolve(&schema).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&fingerprint);
    GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value(&mut out, value)
        .unwrap();
    out
}

/// Checks the fingerprints of `file` for the record type of `record`: the
/// independent form and fingerprint, sfwd's form, the header `encode`
/// writes (for the current schema), and that data written with the schema
/// under either fingerprint decodes.
fn check_fingerprints<T: AvroRecord + PartialEq + Debug>(file: &str, record: &T) {
    let (_, standard, legacy) = FINGERPRINTS
        .iter()
        .find(|(f, _, _)| *f == file)
        .unwrap_or_else(|| panic!("{file} has no known fingerprints"));
    let json = read_json(&schema_dir().join(file));
    assert_eq!(
        &canonical_form::fingerprint_hex(&json),
        standard,
        "{file}: the independent fingerprint is the known one"
    );
    let schema = Schema::parse(&json).unwrap();
    assert_eq!(
        sfwd::records::parsing_canonical_form(&schema),
        canonical_form::canonical_form(&json),
        "{file}: sfwd's canonical form"
    );
    assert_eq!(
        &hex(sfwd::records::fingerprint(&schema)),
        standard,
        "{file}"
    );
    assert_eq!(
        &hex(sfwd::records::legacy_fingerprint(&schema)),
        legacy,
        "{file}: the fingerprint earlier releases wrote"
    );
    if !file.contains('/') {
        let bytes = record.encode().unwrap();
        assert_eq!(&hex_of_header(&bytes), standard, "{file}: header written");
    }
    for fingerprint in [standard, legacy] {
        let bytes = written_with(file, from_hex(fingerprint), record);
        assert_eq!(
            &T::decode(&bytes).unwrap(),
            record,
            "{file} with {fingerprint}"
        );
    }
}

fn hex_of_header(bytes: &[u8]) -> String {
    assert_eq!(bytes[..2], MAGIC);
    bytes[2..HEADER_LEN]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_schema_file_has_the_specifications_fingerprint_and_the_legacy_one_still_reads() {
    let skip = StoredSkip {
        request_id: "orders/3/42".into(),
        control_point: "billing-cp".into(),
        source: source(),
        skip_id: "operator:ana-1-2a-0".into(),
        skipped_by: "operator:ana".into(),
        skipped_at: 1_700_000_000_456,
    };
    let paced = ControlCommand {
        kind: CommandKind::Pace,
        replay_rate: Some(2.5),
        ..command()
    };
    check_fingerprints("control_command.avsc", &paced);
    check_fingerprints("control_state.avsc", &state());
    check_fingerprints("failed_action.avsc", &action());
    check_fingerprints("failed_event.avsc", &failed());
    check_fingerprints("stored_request.avsc", &stored());
    check_fingerprints("stored_skip.avsc", &skip);
    let audit = AuditEvent {
        control_point: Some("billing-cp".into()),
        detail: Some("rate 200/s".into()),
        ..sfwd::audit::event("a", "forward", "admin-api", "operator:ana", "applied")
    };
    check_fingerprints("audit_event.avsc", &audit);
    check_fingerprints("previous/control_command.1.avsc", &command());
    check_fingerprints("previous/control_state.1.avsc", &state());
    check_fingerprints("previous/failed_event.1.avsc", &failed());

    let root = schema_dir();
    for path in schema_files() {
        let file = path.strip_prefix(&root).unwrap().to_str().unwrap();
        assert!(
            FINGERPRINTS.iter().any(|(f, _, _)| *f == file),
            "{file} has no known fingerprints: add it to FINGERPRINTS and check it above"
        );
    }
}

#[test]
fn the_fingerprints_of_a_record_type_tell_its_schemas_apart() {
    for schemas in [
        StoredRequest::schemas(),
        FailedEvent::schemas(),
        ControlCommand::schemas(),
        ControlStateRecord::schemas(),
        FailedAction::schemas(),
        StoredSkip::schemas(),
    ] {
        let mut seen = Vec::new();
        for [standard, legacy] in schemas.writer_fingerprints() {
            for fingerprint in [standard, legacy] {
                assert!(
                    !seen.contains(&fingerprint),
                    "{}: two writer schemas share {fingerprint:x}",
                    schemas.record()
                );
            }
            seen.extend([standard, legacy]);
        }
    }
}
