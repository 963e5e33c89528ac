//! The failed events and the actions on them, collapsed into one entry per
//! request id. Pure: built from records already read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

use super::filter::Filter;
use super::time::format_utc;
use crate::records::{FailedAction, FailedActionKind, FailedEvent, SourcePosition};

/// Where an operator stands with a failed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Nobody acted on it yet (the default list shows only these).
    Open,
    /// Hidden from the default list; the event stays in the failed-events topic.
    Discarded,
    /// A resubmission was claimed and has not been confirmed written, or
    /// was interrupted.
    Resubmitting,
    /// The original request was written back to its request topic.
    Resubmitted,
}

impl Status {
    /// Every status, in the order above.
    pub const ALL: [Status; 4] = [
        Status::Open,
        Status::Discarded,
        Status::Resubmitting,
        Status::Resubmitted,
    ];

    /// The lowercase name used by the CLI and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Discarded => "discarded",
            Status::Resubmitting => "resubmitting",
            Status::Resubmitted => "resubmitted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}`, expected one of: open, discarded, resubmitting, resubmitted")]
pub struct ParseStatusError(String);

impl FromStr for Status {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.to_string()))
    }
}

/// One record of the failed-actions topic with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAt {
    /// Partition of the failed-actions topic.
    pub partition: i32,
    /// Offset within it.
    pub offset: i64,
    /// The record.
    pub action: FailedAction,
}

/// One resubmission attempt: a claim and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt's id.
    pub claim: String,
    /// Offset of its claim in the failed-actions topic: orders the attempts.
    pub claim_offset: i64,
    /// Which failure of the request it resubmits.
    pub failure: SourcePosition,
    /// Made with `--again`.
    pub forced: bool,
    /// Who made it.
    pub by: String,
    /// When it was last updated (ms since the Unix epoch).
    pub at: i64,
    /// How far it got.
    pub state: AttemptState,
}

/// How far a resubmission attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptState {
    /// Claimed; not (yet) confirmed written. An attempt whose process died
    /// stays here.
    Claimed,
    /// Written back to the request topic at this position.
    Resubmitted {
        /// Where the request was written.
        to: SourcePosition,
    },
    /// Writing the request back failed; it may or may not have been written.
    Interrupted {
        /// The error.
        detail: String,
    },
}

/// A discard of one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    /// Which failure of the request it hides.
    pub failure: SourcePosition,
    /// Who discarded it.
    pub by: String,
    /// When (ms since the Unix epoch).
    pub at: i64,
}

/// Every failed-event record of one request id, collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// The request id.
    pub request_id: String,
    /// The latest failure of the request, as its first copy was written.
    pub event: FailedEvent,
    /// Where that first copy is in the failed-events topic.
    pub failed_record: SourcePosition,
    /// Records of the latest failure: more than 1 when a crash repeated the write.
    pub copies: usize,
    /// Distinct failures of the request id: more than 1 when a resubmitted
    /// request failed again (or a producer reused the id).
    pub failures: usize,
    /// Where the operator stands with the latest failure.
    pub status: Status,
    /// The resubmission attempt that counts for the latest failure, if any.
    pub resubmission: Option<Attempt>,
    /// The discard of the latest failure, if any.
    pub discard: Option<Discard>,
}

impl FailedEntry {
    /// `Interface.operation`, or `-` for bad input that has none.
    pub fn operation_name(&self) -> String {
        match (&self.event.interface, &self.event.operation) {
            (Some(i), Some(o)) => format!("{i}.{o}"),
            (None, Some(o)) => o.clone(),
            _ => "-".to_string(),
        }
    }

    /// The top-level exception in one line, or the detail for bad input.
    pub fn summary_line(&self) -> String {
        match self.event.chain.top_level() {
            Some(e) => e.to_string(),
            None => self.event.detail.clone(),
        }
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
    }

    /// The entry as JSON (field names documented in the module docs).
    /// `full` adds the key, the value and the headers.
    pub fn to_json(&self, full: bool) -> Value {
        let e = &self.event;
        let mut v = json!({
            "request_id": self.request_id,
            "status": self.status.as_str(),
            "reason": e.reason.as_str(),
            "detail": e.detail,
            "control_point": e.control_point,
            "service": e.service,
            "interface": e.interface,
            "operation": e.operation,
            "source": position_json(&e.source),
            "failed_at": format_utc(e.failed_at),
            "failed_at_ms": e.failed_at,
            "attempts": e.attempts,
            "instance": e.instance,
            "epoch": e.epoch,
            "rule": e.rule,
            "chain": e.chain,
            "copies": self.copies,
            "failures": self.failures,
            "failed_record": position_json(&self.failed_record),
            "resubmission": self.resubmission.as_ref().map(|a| json!({
                "state": match a.state {
                    AttemptState::Claimed => "claimed",
                    AttemptState::Resubmitted { .. } => "resubmitted",
                    AttemptState::Interrupted { .. } => "interrupted",
                },
                "by": a.by,
                "at": format_utc(a.at),
                "at_ms": a.at,
                "forced": a.forced,
                "claim": a.claim,
                "resubmitted_to": match &a.state {
                    AttemptState::Resubmitted { to } => position_json(to),
                    _ => Value::Null,
                },
                "detail": match &a.state {
                    AttemptState::Interrupted { detail } => Value::from(detail.as_str()),
                    _ => Value::Null,
                },
            })),
            "discarded": self.discard.as_ref().map(|d| json!({
                "by": d.by,
                "at": format_utc(d.at),
                "at_ms": d.at,
            })),
        });
        if full {
            v["key"] = bytes_json(e.key.as_deref());
            v["value"] = bytes_json(e.value.as_deref());
            v["headers"] = e
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

/// `null`, `{"utf8": "…"}` when the bytes are UTF-8, else `{"base64": "…"}`.
pub(crate) fn bytes_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json!({ "utf8": s }),
            Err(_) => json!({ "base64": base64(b) }),
        },
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Counts of entries by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Not acted on.
    pub open: usize,
    /// Discarded.
    pub discarded: usize,
    /// Resubmission claimed, not confirmed.
    pub resubmitting: usize,
    /// Resubmitted.
    pub resubmitted: usize,
}

impl StatusCounts {
    fn add(&mut self, status: Status) {
        match status {
            Status::Open => self.open += 1,
            Status::Discarded => self.discarded += 1,
            Status::Resubmitting => self.resubmitting += 1,
            Status::Resubmitted => self.resubmitted += 1,
        }
    }

    /// Every entry counted.
    pub fn total(&self) -> usize {
        self.open + self.discarded + self.resubmitting + self.resubmitted
    }
}

/// The failed events of an application as of one read, one entry per
/// request id, oldest failure first.
#[derive(Debug, Clone, Default)]
pub struct FailedView {
    entries: Vec<FailedEntry>,
    index: HashMap<String, usize>,
    undecodable: usize,
}

impl FailedView {
    /// Builds the view from the failed-events records (each with its own
    /// position in the failed-events topic) and the failed-actions records.
    pub fn from_records(
        events: impl IntoIterator<Item = (SourcePosition, FailedEvent)>,
        actions: impl IntoIterator<Item = ActionAt>,
    ) -> FailedView {
        // Per request id, per failure (source position): the copies.
        let mut by_id: HashMap<String, Vec<Failure>> = HashMap::new();
        for (at, event) in events {
            let failures = by_id.entry(event.request_id.clone()).or_default();
            match failures.iter_mut().find(|f| f.event.source == event.source) {
                Some(f) => {
                    f.copies += 1;
                    if (at.partition, at.offset) < (f.at.partition, f.at.offset) {
                        f.at = at;
                        f.event = event;
                    }
                }
                None => failures.push(Failure {
                    event,
                    at,
                    copies: 1,
                }),
            }
        }
        let book = ActionBook::new(actions);
        let mut entries: Vec<FailedEntry> = by_id
            .into_iter()
            .map(|(id, failures)| {
                let count = failures.len();
                let latest = failures
                    .into_iter()
                    .max_by_key(|f| (f.event.failed_at, f.at.partition, f.at.offset))
                    .expect("at least one failure per id");
                let resubmission = book.effective(&id, &latest.event.source).cloned();
                let discard = book
                    .discards
                    .get(&id)
                    .filter(|d| d.failure == latest.event.source)
                    .cloned();
                let status = match (&resubmission, &discard) {
                    (Some(a), _) => match a.state {
                        AttemptState::Resubmitted { .. } => Status::Resubmitted,
                        _ => Status::Resubmitting,
                    },
                    (None, Some(_)) => Status::Discarded,
                    (None, None) => Status::Open,
                };
                FailedEntry {
                    request_id: id,
                    event: latest.event,
                    failed_record: latest.at,
                    copies: latest.copies,
                    failures: count,
                    status,
                    resubmission,
                    discard,
                }
            })
            .collect();
        entries.sort_by(|a, b| {
            let key = |e: &FailedEntry| {
                let s = &e.event.source;
                (e.event.failed_at, s.topic.clone(), s.partition, s.offset)
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.request_id.cmp(&b.request_id))
        });
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.request_id.clone(), i))
            .collect();
        FailedView {
            entries,
            index,
            undecodable: 0,
        }
    }

    pub(super) fn set_undecodable(&mut self, n: usize) {
        self.undecodable = n;
    }

    /// Records of either topic that could not be decoded and were left out.
    pub fn undecodable(&self) -> usize {
        self.undecodable
    }

    /// Every entry, oldest failure first.
    pub fn entries(&self) -> &[FailedEntry] {
        &self.entries
    }

    /// The entries that pass `filter`, oldest failure first.
    pub fn list(&self, filter: &Filter) -> Vec<&FailedEntry> {
        self.entries.iter().filter(|e| filter.matches(e)).collect()
    }

    /// The entry of a request id.
    pub fn get(&self, request_id: &str) -> Option<&FailedEntry> {
        self.index.get(request_id).map(|i| &self.entries[*i])
    }

    /// Entries by control point (those without one, such as bad input for
    /// no known service, under `""`).
    pub fn counts_by_control_point(&self) -> BTreeMap<String, StatusCounts> {
        let mut out: BTreeMap<String, StatusCounts> = BTreeMap::new();
        for e in &self.entries {
            out.entry(e.event.control_point.clone().unwrap_or_default())
                .or_default()
                .add(e.status);
        }
        out
    }

    /// Number of request ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No failed events at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct Failure {
    event: FailedEvent,
    at: SourcePosition,
    copies: usize,
}

/// The failed-actions topic folded: the latest record of every key.
pub(super) struct ActionBook {
    /// Attempts by request id, in claim order.
    attempts: HashMap<String, Vec<Attempt>>,
    /// The latest discard record of each request id.
    discards: HashMap<String, Discard>,
}

impl ActionBook {
    pub(super) fn new(actions: impl IntoIterator<Item = ActionAt>) -> ActionBook {
        let mut actions: Vec<ActionAt> = actions.into_iter().collect();
        actions.sort_by_key(|a| (a.partition, a.offset));
        let mut latest: HashMap<(String, String), Attempt> = HashMap::new();
        let mut discards: HashMap<String, Discard> = HashMap::new();
        for ActionAt { offset, action, .. } in actions {
            let FailedAction {
                request_id,
                action: kind,
                failure,
                claim,
                claim_offset,
                forced,
                by,
                at,
                resubmitted_to,
                detail,
            } = action;
            let state = match kind {
                FailedActionKind::Discarded => {
                    discards.insert(request_id, Discard { failure, by, at });
                    continue;
                }
                FailedActionKind::Unknown => continue,
                FailedActionKind::Resubmitting => AttemptState::Claimed,
                FailedActionKind::Resubmitted => match resubmitted_to {
                    Some(to) => AttemptState::Resubmitted { to },
                    None => continue,
                },
                FailedActionKind::Interrupted => AttemptState::Interrupted {
                    detail: detail.unwrap_or_default(),
                },
            };
            let Some(claim) = claim else { continue };
            let claim_offset = match (kind, claim_offset) {
                (_, Some(o)) => o,
                (FailedActionKind::Resubmitting, None) => offset,
                _ => continue,
            };
            latest.insert(
                (request_id, claim.clone()),
                Attempt {
                    claim,
                    claim_offset,
                    failure,
                    forced,
                    by,
                    at,
                    state,
                },
            );
        }
        let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
        for ((id, _), a) in latest {
            attempts.entry(id).or_default().push(a);
        }
        for list in attempts.values_mut() {
            list.sort_by(|a, b| (a.claim_offset, &a.claim).cmp(&(b.claim_offset, &b.claim)));
        }
        ActionBook { attempts, discards }
    }

    /// The attempts for one failure that count, in claim order: the first
    /// claim, and every forced claim after it.
    pub(super) fn winners<'a>(
        &'a self,
        request_id: &str,
        failure: &'a SourcePosition,
    ) -> impl Iterator<Item = &'a Attempt> + 'a {
        let mut any = false;
        self.attempts
            .get(request_id)
            .into_iter()
            .flatten()
            .filter(move |a| &a.failure == failure)
            .filter(move |a| {
                let wins = !any || a.forced;
                any = true;
                wins
            })
    }

    /// The attempt that decides the status of a failure: the latest winner.
    pub(super) fn effective<'a>(
        &'a self,
        request_id: &str,
        failure: &'a SourcePosition,
    ) -> Option<&'a Attempt> {
        self.winners(request_id, failure).last()
    }
}

#[cfg(test)]
mod tests;
