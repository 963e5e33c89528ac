//! The Avro specification's Parsing Canonical Form of a schema and its
//! CRC-64-AVRO fingerprint, the pair that single-object encoding puts in
//! every record's header.
//!
//! The form follows the specification's rules: primitives as bare names
//! (PRIMITIVES); named types by full name (FULLNAMES); only `type`, `name`,
//! `fields`, `symbols`, `items`, `values` and `size` kept (STRIP), in that
//! order (ORDER); strings without escapes (STRINGS); sizes as plain
//! integers (INTEGERS); no whitespace (WHITESPACE). A logical type is
//! written as the type it annotates, and a named type already written is
//! referred to by its full name.

use std::collections::HashSet;

use apache_avro::schema::{FixedSchema, InnerDecimalSchema, Name, UuidSchema};
use apache_avro::Schema;

/// The CRC-64-AVRO of no bytes, and the polynomial of the Rabin fingerprint.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

/// The fingerprint of each byte value.
const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The CRC-64-AVRO (Rabin) fingerprint of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, byte| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(*byte)) & 0xff) as usize]
    })
}

/// The specification's Parsing Canonical Form of `schema`.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    let mut form = Form {
        out: String::with_capacity(512),
        written: HashSet::new(),
    };
    form.schema(schema);
    form.out
}

/// The form being written, and the full names of the named types in it.
struct Form {
    out: String,
    written: HashSet<String>,
}

impl Form {
    fn schema(&mut self, schema: &Schema) {
        match schema {
            Schema::Null => self.string("null"),
            Schema::Boolean => self.string("boolean"),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.string("int"),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.string("long"),
            Schema::Float => self.string("float"),
            Schema::Double => self.string("double"),
            Schema::Bytes | Schema::BigDecimal => self.string("bytes"),
            Schema::String => self.string("string"),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => self.string("bytes"),
                InnerDecimalSchema::Fixed(fixed) => self.fixed(fixed),
            },
            Schema::Uuid(uuid) => match uuid {
                UuidSchema::String => self.string("string"),
                UuidSchema::Bytes => self.string("bytes"),
                UuidSchema::Fixed(fixed) => self.fixed(fixed),
            },
            Schema::Duration(fixed) | Schema::Fixed(fixed) => self.fixed(fixed),
            Schema::Array(array) => {
                self.out.push_str(r#"{"type":"array","items":"#);
                self.schema(&array.items);
                self.out.push('}');
            }
            Schema::Map(map) => {
                self.out.push_str(r#"{"type":"map","values":"#);
                self.schema(&map.types);
                self.out.push('}');
            }
            Schema::Union(union) => {
                self.out.push('[');
                for (i, variant) in union.variants().iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.schema(variant);
                }
                self.out.push(']');
            }
            Schema::Record(record) => {
                if self.named(&record.name, "record") {
                    self.out.push_str(r#","fields":["#);
                    for (i, field) in record.fields.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.out.push_str(r#"{"name":"#);
                        self.string(&field.name);
                        self.out.push_str(r#","type":"#);
                        self.schema(&field.schema);
                        self.out.push('}');
                    }
                    self.out.push_str("]}");
                }
            }
            Schema::Enum(e) => {
                if self.named(&e.name, "enum") {
                    self.out.push_str(r#","symbols":["#);
                    for (i, symbol) in e.symbols.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.string(symbol);
                    }
                    self.out.push_str("]}");
                }
            }
            Schema::Ref { name } => self.string(&name.fullname(None)),
        }
    }

    fn fixed(&mut self, fixed: &FixedSchema) {
        if self.named(&fixed.name, "fixed") {
            self.out.push_str(&format!(r#","size":{}}}"#, fixed.size));
        }
    }

    /// Writes the full name alone for a type already written and returns
    /// false; otherwise opens the definition, `{"name":…,"type":…`, and
    /// returns true.
    fn named(&mut self, name: &Name, kind: &str) -> bool {
        let full = name.fullname(None);
        if self.written.contains(&full) {
            self.string(&full);
            return false;
        }
        self.out.push_str(r#"{"name":"#);
        self.string(&full);
        self.out.push_str(r#","type":"#);
        self.string(kind);
        self.written.insert(full);
        true
    }

    /// A JSON string. Avro names and symbols never need an escape, so the
    /// text is written as is (STRINGS); anything else is escaped to keep
    /// the form valid JSON.
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => self.out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(json: &str) -> String {
        parsing_canonical_form(&Schema::parse_str(json).unwrap())
    }

    #[test]
    fn the_fingerprint_of_no_bytes_is_the_polynomial() {
        assert_eq!(crc64_avro(b""), EMPTY);
    }

    #[test]
    fn forms_have_the_fingerprints_of_the_avro_test_data() {
        // Known answers from the Avro project's test data for the canonical
        // form (`share/test/data/schema-tests.txt`), signed there.
        for (schema, canonical, fingerprint) in [
            (r#""null""#, r#""null""#, 7_195_948_357_588_979_594_i64),
            (r#"{"type":"null"}"#, r#""null""#, 7_195_948_357_588_979_594),
            (r#""boolean""#, r#""boolean""#, -6_970_731_678_124_411_036),
            (r#""int""#, r#""int""#, 8_247_732_601_305_521_295),
            (
                r#"{"type":"fixed","name":"foo","size":15}"#,
                r#"{"name":"foo","type":"fixed","size":15}"#,
                1_756_455_273_707_447_556,
            ),
        ] {
            assert_eq!(form(schema), canonical);
            assert_eq!(
                crc64_avro(canonical.as_bytes()) as i64,
                fingerprint,
                "{schema}"
            );
        }
    }

    #[test]
    fn logical_types_collapse_to_their_underlying_type() {
        for (logical, underlying) in [
            (
                r#"{"type":"long","logicalType":"timestamp-millis"}"#,
                "long",
            ),
            (
                r#"{"type":"long","logicalType":"local-timestamp-micros"}"#,
                "long",
            ),
            (r#"{"type":"int","logicalType":"date"}"#, "int"),
            (r#"{"type":"int","logicalType":"time-millis"}"#, "int"),
            (r#"{"type":"string","logicalType":"uuid"}"#, "string"),
            (
                r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#,
                "bytes",
            ),
            (r#"{"type":"long","logicalType":"no-such-type"}"#, "long"),
        ] {
            assert_eq!(form(logical), format!(r#""{underlying}""#), "{logical}");
        }
        assert_eq!(
            form(
                r#"{"type":"fixed","name":"Money","namespace":"x","size":8,"logicalType":"decimal","precision":10}"#
            ),
            r#"{"name":"x.Money","type":"fixed","size":8}"#
        );
        assert_eq!(
            form(r#"{"type":"fixed","name":"D","size":12,"logicalType":"duration"}"#),
            r#"{"name":"D","type":"fixed","size":12}"#
        );
    }

    #[test]
    fn names_are_full_attributes_stripped_and_ordered_and_repeats_are_references() {
        let schema = r#"{
            "doc": "d", "fields": [
                {"type": {"symbols": ["A", "B"], "name": "E", "type": "enum", "default": "A"},
                 "name": "e", "default": "A", "doc": "x", "aliases": ["f"]},
                {"name": "again", "type": ["null", "E", "ns.R", {"type": "map", "values": "E"}]},
                {"name": "list", "type": {"items": {"type": "int"}, "type": "array"}}
            ],
            "name": "R", "namespace": "ns", "type": "record", "aliases": ["Q"]
        }"#;
        assert_eq!(
            form(schema),
            concat!(
                r#"{"name":"ns.R","type":"record","fields":["#,
                r#"{"name":"e","type":{"name":"ns.E","type":"enum","symbols":["A","B"]}},"#,
                r#"{"name":"again","type":["null","ns.E","ns.R",{"type":"map","values":"ns.E"}]},"#,
                r#"{"name":"list","type":{"type":"array","items":"int"}}]}"#
            )
        );
    }
}
