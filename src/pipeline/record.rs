//! A request record as the dispatcher hands it to its partition's worker:
//! copied once out of librdkafka's buffer, then moved, never copied again,
//! into the request the worker builds from it; and the inbox that carries
//! records to a worker, counting the bytes it holds so that the dispatcher
//! can pause a partition whose worker is behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdkafka::message::{Headers, Message};
use tokio::sync::mpsc;

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

/// A worker's inbox: the records the dispatcher handed over and the
/// worker has not taken yet.
pub(super) fn inbox() -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        InboxSender {
            tx,
            bytes: bytes.clone(),
        },
        Inbox { rx, bytes },
    )
}

/// The dispatcher's end of an inbox.
pub(super) struct InboxSender {
    tx: mpsc::UnboundedSender<Record>,
    bytes: Arc<AtomicUsize>,
}

impl InboxSender {
    /// Hands `record` over. `false` if the worker has stopped (its
    /// partition's next owner reads the record again).
    pub(super) fn send(&self, record: Record) -> bool {
        let bytes = record.held_bytes();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send(record).is_err() {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Bytes of the records waiting in the inbox ([`Record::held_bytes`]).
    pub(super) fn held(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// The worker's end of an inbox.
pub(super) struct Inbox {
    rx: mpsc::UnboundedReceiver<Record>,
    bytes: Arc<AtomicUsize>,
}

impl Inbox {
    /// The next record, once there is one; `None` once the dispatcher has
    /// dropped its end and every record was taken.
    pub(super) async fn recv(&mut self) -> Option<Record> {
        let r = self.rx.recv().await?;
        Some(self.taken(r))
    }

    /// The next record if one is waiting.
    pub(super) fn try_recv(&mut self) -> Option<Record> {
        let r = self.rx.try_recv().ok()?;
        Some(self.taken(r))
    }

    fn taken(&self, r: Record) -> Record {
        self.bytes.fetch_sub(r.held_bytes(), Ordering::Relaxed);
        r
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

    #[tokio::test]
    async fn an_inbox_counts_the_bytes_it_holds_until_they_are_taken() {
        let record = |offset, len| Record {
            offset,
            key: None,
            value: Some(vec![0; len]),
            headers: Vec::new(),
        };
        let (tx, mut rx) = inbox();
        assert!(tx.send(record(0, 100)));
        assert!(tx.send(record(1, 1000)));
        assert_eq!(tx.held(), 64 + 100 + 64 + 1000);
        assert_eq!(rx.recv().await.map(|r| r.offset), Some(0));
        assert_eq!(tx.held(), 64 + 1000);
        assert_eq!(rx.try_recv().map(|r| r.offset), Some(1));
        assert_eq!((tx.held(), rx.try_recv().is_none()), (0, true));
        drop(rx);
        assert!(!tx.send(record(2, 10)), "the worker has stopped");
        assert_eq!(tx.held(), 0, "a record not handed over is not held");
    }

    #[test]
    fn a_record_without_key_value_or_headers_has_none() {
        let m = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 7, None);
        let r = Record::of(&m);
        assert_eq!((r.key, r.value, r.headers.len()), (None, None, 0));
    }
}
