//! A request record as the dispatcher hands it to its partition's worker:
//! copied once out of librdkafka's buffer, then moved, never copied again,
//! into the request the worker builds from it.

use rdkafka::message::{Headers, Message};

/// One record of a source partition.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    /// Its headers in order, duplicates kept.
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies what the worker needs out of `m`.
    pub(super) fn of<M: Message>(m: &M) -> Record {
        Record {
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// What the record counts for while the dispatcher holds it: its key,
    /// value and headers, plus a little for the rest.
    pub(super) fn held_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        64 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    #[test]
    fn keeps_key_value_and_every_header_in_order() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some(b"1".as_slice()),
            })
            .insert(Header {
                key: "a",
                value: None::<&[u8]>,
            })
            .insert(Header {
                key: "b",
                value: Some(b"22".as_slice()),
            });
        let m = OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"k".to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(headers),
        );
        let r = Record::of(&m);
        assert_eq!(r.offset, 42);
        assert_eq!(r.key.as_deref(), Some(b"k".as_slice()));
        assert_eq!(r.value.as_deref(), Some(b"value".as_slice()));
        assert_eq!(
            r.headers,
            vec![
                ("a".to_string(), Some(b"1".to_vec())),
                ("a".to_string(), None),
                ("b".to_string(), Some(b"22".to_vec())),
            ]
        );
        assert_eq!(r.held_bytes(), 64 + 1 + 5 + (1 + 1) + 1 + (1 + 2));
    }

    #[test]
    fn a_record_without_key_value_or_headers_has_none() {
        let m = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 7, None);
        let r = Record::of(&m);
        assert_eq!((r.key, r.value, r.headers.len()), (None, None, 0));
    }
}
