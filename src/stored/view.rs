//! One control point's stored backlog as read: each stored request with
//! whether the replay has passed it and whether an operator skipped it.
//! Pure: built from records already read.

use std::collections::HashMap;
use std::fmt;

use serde_json::{json, Value};

use crate::control::{replay_key, ReplayProgress};
use crate::failed::time::format_utc;
use crate::failed::{base64, bytes_json};
use crate::records::{skip_key, SourcePosition, StoredRequest, StoredSkip};

/// Where a stored request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredStatus {
    /// Waiting in the backlog: the next replay delivers it.
    Stored,
    /// An operator skipped it: it went to the failed events and is never
    /// replayed.
    Skipped,
    /// A replay has passed it: delivered, or in the failed events.
    Replayed,
}

impl StoredStatus {
    /// The lowercase name used by the CLI and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredStatus::Stored => "stored",
            StoredStatus::Skipped => "skipped",
            StoredStatus::Replayed => "replayed",
        }
    }
}

impl fmt::Display for StoredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record sits in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordAt {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// One stored request: copies written twice by a crash (same request id and
/// source position) count once, the first kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The request as stored.
    pub request: StoredRequest,
    /// Where its first copy is in the stored topic.
    pub record: RecordAt,
    /// How many copies the stored topic holds.
    pub copies: usize,
    /// A replay has passed its source offset.
    pub replayed: bool,
    /// The first skip mark written for it, if an operator skipped it.
    pub skip: Option<StoredSkip>,
}

impl StoredEntry {
    /// Stored, skipped, or replayed (a skipped request the replay has
    /// passed reads as skipped: it was not delivered).
    pub fn status(&self) -> StoredStatus {
        match (&self.skip, self.replayed) {
            (Some(_), _) => StoredStatus::Skipped,
            (None, true) => StoredStatus::Replayed,
            (None, false) => StoredStatus::Stored,
        }
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request.request_id
    }

    /// Bytes of the stored value.
    pub fn size(&self) -> usize {
        self.request.value.as_ref().map_or(0, Vec::len)
    }

    /// `Interface.operation`.
    pub fn operation(&self) -> String {
        format!("{}.{}", self.request.interface, self.request.operation)
    }

    /// The key as text when it is UTF-8, else `base64:…`; `-` for none.
    pub fn key_text(&self) -> String {
        match self.request.key.as_deref() {
            None => "-".to_string(),
            Some(k) => match std::str::from_utf8(k) {
                Ok(s) => s.to_string(),
                Err(_) => format!("base64:{}", base64(k)),
            },
        }
    }

    /// The stable JSON shape of the CLI and the admin API (see the module
    /// docs of [`crate::stored`]); `full` adds the key, value and headers
    /// as bytes.
    pub fn to_json(&self, stored_topic: &str, full: bool) -> Value {
        let r = &self.request;
        let mut v = json!({
            "request_id": r.request_id,
            "status": self.status().as_str(),
            "control_point": r.control_point,
            "service": r.service,
            "interface": r.interface,
            "operation": r.operation,
            "key": self.key_text(),
            "source": position_json(&r.source),
            "stored_record": {
                "topic": stored_topic,
                "partition": self.record.partition,
                "offset": self.record.offset,
            },
            "stored_at": format_utc(r.stored_at),
            "stored_at_ms": r.stored_at,
            "size": self.size(),
            "epoch": r.epoch,
            "trigger": r.trigger.as_ref().map(|t| t.request_id.clone()),
            "instance": r.instance,
            "copies": self.copies,
            "skipped": self.skip.as_ref().map(|s| json!({
                "by": s.skipped_by,
                "at": format_utc(s.skipped_at),
                "at_ms": s.skipped_at,
            })),
        });
        if full {
            v["key_bytes"] = bytes_json(r.key.as_deref());
            v["value_bytes"] = bytes_json(r.value.as_deref());
            v["headers"] = r
                .headers
                .iter()
                .map(|h| json!({ "key": h.key, "value": bytes_json(h.value.as_deref()) }))
                .collect();
        }
        v
    }
}

fn position_json(p: &SourcePosition) -> Value {
    json!({ "topic": p.topic, "partition": p.partition, "offset": p.offset })
}

/// Which stored requests to show; every condition set must hold. The
/// default passes every request the replay has not passed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFilter {
    /// The Kafka key, as text (or `base64:…`, as the list shows it).
    pub key: Option<String>,
    /// Stored at or after this instant (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Stored before this instant (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// The partition of the request topic it was consumed from.
    pub partition: Option<i32>,
    /// Requests the replay has passed too.
    pub all: bool,
    /// Only entries after this one in the list's order (paging).
    pub after: Option<RecordAt>,
}

impl StoredFilter {
    /// Does the entry pass every condition?
    pub fn matches(&self, e: &StoredEntry) -> bool {
        let r = &e.request;
        self.key.as_ref().is_none_or(|k| *k == e.key_text())
            && self.since_ms.is_none_or(|t| r.stored_at >= t)
            && self.until_ms.is_none_or(|t| r.stored_at < t)
            && self.partition.is_none_or(|p| r.source.partition == p)
            && (self.all || !e.replayed)
            && self.after.is_none_or(|a| e.record > a)
    }
}

/// The stored backlog of one control point, in stored-topic order:
/// partition by partition, oldest first (the order a replay delivers them
/// in, per source partition).
#[derive(Debug, Clone, Default)]
pub struct StoredView {
    control_point: String,
    topic: String,
    entries: Vec<StoredEntry>,
    undecodable: usize,
}

impl StoredView {
    /// Builds the view of `control_point`'s stored topic `topic` from its
    /// records, the replay progress records (by key), and the skip marks
    /// in the order they were written.
    pub fn from_records(
        control_point: &str,
        topic: &str,
        records: impl IntoIterator<Item = (RecordAt, StoredRequest)>,
        progress: &HashMap<String, ReplayProgress>,
        marks: &[StoredSkip],
    ) -> StoredView {
        let mut first_marks: HashMap<String, &StoredSkip> = HashMap::new();
        for m in marks {
            first_marks.entry(m.key()).or_insert(m);
        }
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut entries: Vec<StoredEntry> = Vec::new();
        let mut records: Vec<_> = records.into_iter().collect();
        records.sort_by_key(|(at, _)| *at);
        for (at, request) in records {
            let key = skip_key(&request.request_id, &request.source);
            if let Some(&i) = index.get(&key) {
                entries[i].copies += 1;
                continue;
            }
            let passed = progress
                .get(&replay_key(
                    control_point,
                    &request.source.topic,
                    request.source.partition,
                ))
                .is_some_and(|p| request.source.offset <= p.max_source_offset);
            index.insert(key.clone(), entries.len());
            entries.push(StoredEntry {
                skip: first_marks.get(&key).map(|m| (*m).clone()),
                request,
                record: at,
                copies: 1,
                replayed: passed,
            });
        }
        StoredView {
            control_point: control_point.to_string(),
            topic: topic.to_string(),
            entries,
            undecodable: 0,
        }
    }

    /// The control point.
    pub fn control_point(&self) -> &str {
        &self.control_point
    }

    /// Its stored topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every entry.
    pub fn entries(&self) -> &[StoredEntry] {
        &self.entries
    }

    /// The entries that pass `filter`, in order.
    pub fn list(&self, filter: &StoredFilter) -> Vec<&StoredEntry> {
        self.entries.iter().filter(|e| filter.matches(e)).collect()
    }

    /// The entries of request `id` (more than one when a resubmitted copy
    /// of it was stored again).
    pub fn with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a StoredEntry> + 'a {
        self.entries.iter().filter(move |e| e.request_id() == id)
    }

    /// Stored requests not yet passed by the replay, skipped ones included.
    pub fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| !e.replayed).count()
    }

    pub(super) fn set_undecodable(&mut self, n: usize) {
        self.undecodable = n;
    }

    /// Records of the stored topic that could not be decoded and were left out.
    pub fn undecodable(&self) -> usize {
        self.undecodable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn request(offset: i64, key: &str, stored_at: i64) -> StoredRequest {
        StoredRequest {
            request_id: format!("hr.get/1/{offset}"),
            control_point: "Eis".into(),
            service: "eis".into(),
            interface: "Query".into(),
            operation: "get".into(),
            source: SourcePosition {
                topic: "hr.get".into(),
                partition: 1,
                offset,
            },
            key: Some(key.as_bytes().to_vec()),
            value: Some(vec![0xff, 0x00, 0xfe]),
            headers: Vec::new(),
            stored_at,
            epoch: 1,
            trigger: None,
            instance: "a".into(),
        }
    }

    fn at(partition: i32, offset: i64) -> RecordAt {
        RecordAt { partition, offset }
    }

    fn view() -> StoredView {
        let progress = HashMap::from([(
            replay_key("Eis", "hr.get", 1),
            ReplayProgress {
                max_source_offset: 10,
                ..ReplayProgress::default()
            },
        )]);
        let mark = StoredSkip {
            request_id: "hr.get/1/12".into(),
            control_point: "Eis".into(),
            source: request(12, "", 0).source,
            skip_id: "first".into(),
            skipped_by: "operator:ana".into(),
            skipped_at: 5,
        };
        let later = StoredSkip {
            skip_id: "second".into(),
            skipped_by: "operator:bob".into(),
            ..mark.clone()
        };
        StoredView::from_records(
            "Eis",
            "app.stored.Eis",
            vec![
                (at(1, 0), request(10, "k-10", 100)),
                (at(1, 2), request(12, "k-12", 300)),
                (at(1, 1), request(11, "k-11", 200)),
                (at(1, 3), request(11, "k-11", 200)),
            ],
            &progress,
            &[mark, later],
        )
    }

    #[test]
    fn entries_are_in_stored_order_with_copies_collapsed() {
        let v = view();
        let ids: Vec<&str> = v.entries().iter().map(StoredEntry::request_id).collect();
        assert_eq!(ids, ["hr.get/1/10", "hr.get/1/11", "hr.get/1/12"]);
        assert_eq!(v.entries()[1].copies, 2);
        assert_eq!(v.entries()[1].record, at(1, 1));
        assert_eq!(v.waiting(), 2);
    }

    #[test]
    fn status_follows_the_replay_progress_and_the_first_skip() {
        let v = view();
        let status: Vec<StoredStatus> = v.entries().iter().map(StoredEntry::status).collect();
        assert_eq!(
            status,
            [
                StoredStatus::Replayed,
                StoredStatus::Stored,
                StoredStatus::Skipped
            ]
        );
        let skip = v.entries()[2].skip.as_ref().unwrap();
        assert_eq!(skip.skip_id, "first");
        assert_eq!(skip.skipped_by, "operator:ana");
    }

    #[test]
    fn filters_narrow_and_page() {
        let v = view();
        let ids = |f: StoredFilter| -> Vec<String> {
            v.list(&f)
                .iter()
                .map(|e| e.request_id().to_string())
                .collect()
        };
        assert_eq!(ids(StoredFilter::default()), ["hr.get/1/11", "hr.get/1/12"]);
        assert_eq!(
            ids(StoredFilter {
                all: true,
                ..Default::default()
            })
            .len(),
            3
        );
        assert_eq!(
            ids(StoredFilter {
                key: Some("k-12".into()),
                ..Default::default()
            }),
            ["hr.get/1/12"]
        );
        assert_eq!(
            ids(StoredFilter {
                since_ms: Some(200),
                until_ms: Some(300),
                all: true,
                ..Default::default()
            }),
            ["hr.get/1/11"]
        );
        assert!(ids(StoredFilter {
            partition: Some(0),
            ..Default::default()
        })
        .is_empty());
        assert_eq!(
            ids(StoredFilter {
                after: Some(at(1, 1)),
                ..Default::default()
            }),
            ["hr.get/1/12"]
        );
    }

    #[test]
    fn the_json_shape() {
        let v = view();
        let j = v.entries()[2].to_json(v.topic(), false);
        assert_eq!(j["request_id"], "hr.get/1/12");
        assert_eq!(j["status"], "skipped");
        assert_eq!(j["key"], "k-12");
        assert_eq!(j["size"], 3);
        assert_eq!(j["epoch"], 1);
        assert_eq!(j["source"]["offset"], 12);
        assert_eq!(j["stored_record"]["topic"], "app.stored.Eis");
        assert_eq!(j["stored_record"]["offset"], 2);
        assert_eq!(j["stored_at"], "1970-01-01T00:00:00Z");
        assert_eq!(j["skipped"]["by"], "operator:ana");
        assert!(j.get("value_bytes").is_none());
        let full = v.entries()[2].to_json(v.topic(), true);
        assert_eq!(full["value_bytes"]["base64"], "/wD+");
        assert_eq!(full["headers"], json!([]));
    }
}
