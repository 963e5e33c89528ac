//! The Avro specification's Parsing Canonical Form and CRC-64-AVRO
//! fingerprint, written from the specification's text over a schema's JSON
//! alone, so that the records tests can check sfwd's fingerprints against
//! an implementation that shares nothing with apache-avro or with sfwd's.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The fingerprint of no bytes, and the polynomial.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// CRC-64-AVRO, one bit at a time.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for byte in bytes {
        fp ^= u64::from(*byte);
        for _ in 0..8 {
            let low_bit_set = fp & 1 == 1;
            fp >>= 1;
            if low_bit_set {
                fp ^= EMPTY;
            }
        }
    }
    fp
}

/// The fingerprint of a schema's JSON, as the 8 header bytes in hex.
pub fn fingerprint_hex(schema: &Value) -> String {
    crc64_avro(canonical_form(schema).as_bytes())
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Parsing Canonical Form of a schema's JSON.
pub fn canonical_form(schema: &Value) -> String {
    let mut defined = HashSet::new();
    form(schema, "", &mut defined)
}

/// `name` made full in `namespace` (FULLNAMES).
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// One schema in the enclosing `namespace`; `defined` holds the full names
/// already written, which later uses only name.
fn form(schema: &Value, namespace: &str, defined: &mut HashSet<String>) -> String {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => quoted(name),
        Value::String(name) => quoted(&full_name(name, namespace)),
        Value::Array(branches) => {
            let branches: Vec<String> = branches
                .iter()
                .map(|b| form(b, namespace, defined))
                .collect();
            format!("[{}]", branches.join(","))
        }
        Value::Object(object) => complex(object, namespace, defined),
        other => panic!("not a schema: {other}"),
    }
}

fn complex(object: &Map<String, Value>, namespace: &str, defined: &mut HashSet<String>) -> String {
    let kind = match &object["type"] {
        Value::String(kind) => kind.as_str(),
        // `{"type": {...}}` or `{"type": [...]}`: the inner schema.
        nested => return form(nested, namespace, defined),
    };
    match kind {
        // A primitive, with or without a logical type and other attributes,
        // is its bare name (PRIMITIVES, STRIP).
        k if PRIMITIVES.contains(&k) => quoted(k),
        "array" => format!(
            r#"{{"type":"array","items":{}}}"#,
            form(&object["items"], namespace, defined)
        ),
        "map" => format!(
            r#"{{"type":"map","values":{}}}"#,
            form(&object["values"], namespace, defined)
        ),
        "record" | "error" | "enum" | "fixed" => {
            let own_namespace = object
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let name = object["name"].as_str().expect("a named type has a name");
            let full = full_name(name, own_namespace);
            if !defined.insert(full.clone()) {
                return quoted(&full);
            }
            let inner_namespace = full.rsplit_once('.').map_or("", |(ns, _)| ns);
            let kind = if kind == "error" { "record" } else { kind };
            let body = match kind {
                "record" => {
                    let fields: Vec<String> = object["fields"]
                        .as_array()
                        .expect("a record has fields")
                        .iter()
                        .map(|f| {
                            format!(
                                r#"{{"name":{},"type":{}}}"#,
                                quoted(f["name"].as_str().expect("a field has a name")),
                                form(&f["type"], inner_namespace, defined)
                            )
                        })
                        .collect();
                    format!(r#","fields":[{}]"#, fields.join(","))
                }
                "enum" => {
                    let symbols: Vec<String> = object["symbols"]
                        .as_array()
                        .expect("an enum has symbols")
                        .iter()
                        .map(|s| quoted(s.as_str().expect("a symbol is a string")))
                        .collect();
                    format!(r#","symbols":[{}]"#, symbols.join(","))
                }
                _ => {
                    let size = &object["size"];
                    let size = size
                        .as_u64()
                        .or_else(|| size.as_str().and_then(|s| s.parse().ok()))
                        .expect("a fixed has a size");
                    format!(r#","size":{size}"#)
                }
            };
            format!(
                r#"{{"name":{},"type":{}{body}}}"#,
                quoted(&full),
                quoted(kind)
            )
        }
        // A reference to a named type written as `{"type": "Name"}`.
        name => quoted(&full_name(name, namespace)),
    }
}

#[test]
fn the_avro_test_data_gives_the_same_forms_and_fingerprints() {
    // Known answers from the Avro project's canonical-form test data
    // (`share/test/data/schema-tests.txt`), where fingerprints are signed.
    for (schema, canonical, fingerprint) in [
        (r#""null""#, r#""null""#, 7_195_948_357_588_979_594_i64),
        (r#"{"type":"int"}"#, r#""int""#, 8_247_732_601_305_521_295),
        (
            r#"{"type":"fixed","name":"foo","size":15}"#,
            r#"{"name":"foo","type":"fixed","size":15}"#,
            1_756_455_273_707_447_556,
        ),
    ] {
        let json: Value = serde_json::from_str(schema).unwrap();
        assert_eq!(canonical_form(&json), canonical);
        assert_eq!(crc64_avro(canonical.as_bytes()) as i64, fingerprint);
    }
}
