//! Avro's binary encoding written by hand, for the one record written per
//! request on a hot path (the stored request): the generic writer looks
//! each field up by name in the schema, which was a tenth of what storing
//! a request cost. What it writes must be what the generic writer writes
//! for the current schema: `records::tests` checks the two byte for byte
//! over generated records.

/// Appends `n` as a zig-zag variable-length integer (Avro `int`/`long`).
pub(super) fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends an Avro `bytes`: its length, then the bytes.
pub(super) fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Appends an Avro `string`.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    bytes(out, s.as_bytes());
}

/// Appends a `["null", "bytes"]` union.
pub(super) fn bytes_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => long(out, 0),
        Some(b) => {
            long(out, 1);
            bytes(out, b);
        }
    }
}

/// Appends an Avro array of `items`, each written by `item`: one block
/// with their count, then the end marker (only the marker when empty).
pub(super) fn array<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        long(out, items.len() as i64);
        for i in items {
            item(out, i);
        }
    }
    long(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        for (n, want) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            long(&mut out, n);
            assert_eq!(out, want, "{n}");
        }
    }
}
