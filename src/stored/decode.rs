//! A stored request's value for a person: decoded with its operation's
//! input schema when the operation declares one.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use serde_json::Value;

use super::view::StoredEntry;
use crate::records::{fingerprint_hex, split_single_object, EofTracking, StoredRequest};
use crate::topology::Topology;

/// What a stored value decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedValue {
    /// Decoded with the operation's input schema, as JSON.
    Avro(Value),
    /// The operation declares no input schema (or the topology no longer
    /// has the operation): the raw bytes.
    Raw,
    /// The operation declares a schema and the value does not decode with
    /// it: why.
    Undecodable(String),
}

/// Decodes `request`'s value with the input schema its operation declares
/// in `topology`.
pub fn decode_value(topology: &Topology, request: &StoredRequest) -> DecodedValue {
    let schema = topology
        .service(&request.service)
        .and_then(|s| {
            s.operations()
                .find(|(i, o)| i.name == request.interface && o.name == request.operation)
        })
        .and_then(|(_, op)| op.input_schema.as_ref());
    let Some(schema) = schema else {
        return DecodedValue::Raw;
    };
    let input = schema;
    let schema = match Schema::parse_str(&input.canonical) {
        Ok(s) => s,
        Err(e) => {
            return DecodedValue::Undecodable(format!(
                "the input schema {} does not parse: {e}",
                input.path.display()
            ))
        }
    };
    match decode_with(&schema, &input.fingerprints, request.value.as_deref()) {
        Ok(v) => DecodedValue::Avro(v),
        Err(e) => DecodedValue::Undecodable(e),
    }
}

/// The entry's JSON with `full` (see [`crate::stored`]) plus
/// `decoded_value` (the value decoded with the operation's input schema,
/// or null) and `decode_error` (why it did not decode, or null).
pub fn detail_json(topology: &Topology, entry: &StoredEntry, stored_topic: &str) -> Value {
    let mut v = entry.to_json(stored_topic, true);
    let (value, error) = match decode_value(topology, &entry.request) {
        DecodedValue::Avro(v) => (v, Value::Null),
        DecodedValue::Raw => (Value::Null, Value::Null),
        DecodedValue::Undecodable(e) => (Value::Null, Value::String(e)),
    };
    v["decoded_value"] = value;
    v["decode_error"] = error;
    v
}

/// An Avro binary datum of `schema`, optionally in single-object encoding,
/// as JSON.
fn decode_with(
    schema: &Schema,
    fingerprints: &[u64],
    value: Option<&[u8]>,
) -> Result<Value, String> {
    let Some(mut bytes) = value else {
        return Err("the request has no value".to_string());
    };
    if let Some((found, datum)) = split_single_object(bytes) {
        if !fingerprints.contains(&found) {
            return Err(format!(
                "the value is in Avro single-object encoding with fingerprint {}, not the input schema's ({})",
                fingerprint_hex(found),
                fingerprints.first().map_or_else(String::new, |fp| fingerprint_hex(*fp)),
            ));
        }
        bytes = datum;
    }
    let mut input = EofTracking::new(bytes);
    let decoded = GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut input));
    if input.hit_eof() {
        return Err("the value ends in the middle of the input schema's datum".to_string());
    }
    let decoded =
        decoded.map_err(|e| format!("the value does not decode with the input schema: {e}"))?;
    if input.remaining() > 0 {
        return Err(format!(
            "the value has {} bytes after the end of the input schema's datum",
            input.remaining()
        ));
    }
    Value::try_from(decoded).map_err(|e| format!("the decoded value has no JSON form: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{fingerprint, MAGIC};
    use apache_avro::types::Value as Avro;
    use apache_avro::writer::datum::GenericDatumWriter;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"Get","fields":[{"name":"id","type":"string"},{"name":"n","type":"int"}]}"#;

    fn topology(dir: &std::path::Path) -> Topology {
        std::fs::write(dir.join("get.avsc"), SCHEMA).unwrap();
        let yaml = "application: hr\nkafka: { bootstrap: k:9092 }\nservices:\n  eis:\n    binding: { kafka: { topic: out } }\n    store_and_forward: { control_point: Eis }\n    interfaces: { Query: { operations: { get: { topic: hr.get, input_schema: get.avsc }, list: { topic: hr.list } } } }\n";
        crate::topology::check_str(yaml, &dir.join("t.yaml"))
            .topology
            .expect("valid")
    }

    fn request(operation: &str, value: Option<Vec<u8>>) -> StoredRequest {
        StoredRequest {
            request_id: "hr.get/0/1".into(),
            control_point: "Eis".into(),
            service: "eis".into(),
            interface: "Query".into(),
            operation: operation.into(),
            source: crate::records::SourcePosition {
                topic: "hr.get".into(),
                partition: 0,
                offset: 1,
            },
            key: None,
            value,
            headers: Vec::new(),
            stored_at: 0,
            epoch: 1,
            trigger: None,
            instance: "a".into(),
        }
    }

    fn datum() -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(Avro::Record(vec![
                ("id".into(), Avro::String("e-7".into())),
                ("n".into(), Avro::Int(3)),
            ]))
            .unwrap()
    }

    #[test]
    fn a_value_decodes_with_its_operations_input_schema() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(dir.path());
        let want = DecodedValue::Avro(json!({"id": "e-7", "n": 3}));
        assert_eq!(decode_value(&t, &request("get", Some(datum()))), want);
        let mut single = MAGIC.to_vec();
        single.extend_from_slice(&fingerprint(&Schema::parse_str(SCHEMA).unwrap()).to_le_bytes());
        single.extend_from_slice(&datum());
        assert_eq!(decode_value(&t, &request("get", Some(single))), want);
    }

    #[test]
    fn without_a_schema_the_value_stays_raw() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(dir.path());
        assert_eq!(
            decode_value(&t, &request("list", Some(b"{}".to_vec()))),
            DecodedValue::Raw
        );
        assert_eq!(
            decode_value(&t, &request("gone", Some(datum()))),
            DecodedValue::Raw
        );
    }

    #[test]
    fn a_value_the_schema_does_not_fit_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let t = topology(dir.path());
        let mut long = datum();
        long.push(0);
        for (value, why) in [
            (Some(long), "1 bytes after the end"),
            (Some(datum()[..3].to_vec()), "ends in the middle"),
            (None, "no value"),
        ] {
            match decode_value(&t, &request("get", value)) {
                DecodedValue::Undecodable(e) => assert!(e.contains(why), "{e}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
