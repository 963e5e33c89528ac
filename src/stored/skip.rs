//! Skipping stored requests: a mark on `<app>.skips` first, then the
//! request goes to the failed events with reason `skipped`.

use std::collections::HashSet;
use std::fmt;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::backlog::{StoredBacklog, StoredError};
use super::view::StoredEntry;
use crate::failed::time::format_utc;
use crate::records::{AvroRecord, FailedEvent, FailureReason, SourcePosition, StoredSkip};
use crate::rules::ExceptionChain;
use crate::topology::REQUEST_ID_HEADER;

/// What a skip of one stored request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipResult {
    /// Marked skipped, and written to the failed events at `failed_record`.
    Skipped {
        /// Where the failed event is.
        failed_record: SourcePosition,
    },
    /// It was marked skipped before, by `by`, but that skip stopped before
    /// its failed event was written: written now, at `failed_record`.
    Completed {
        /// Who skipped it first.
        by: String,
        /// Where the failed event is.
        failed_record: SourcePosition,
    },
    /// Skipped before (or by another skip that came first): nothing done.
    AlreadySkipped {
        /// Who skipped it.
        by: String,
        /// When (ms since the Unix epoch).
        at: i64,
    },
    /// No stored request has this id.
    NotFound,
    /// A replay has passed it already: delivered, or in the failed events.
    AlreadyReplayed {
        /// The control point that stored it.
        control_point: String,
    },
    /// Kafka refused a write; the request may be marked skipped without
    /// its failed event (a skip run again writes it).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// The outcome of a skip for one stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipReport {
    /// The request id asked for.
    pub request_id: String,
    /// Its control point, once found.
    pub control_point: Option<String>,
    /// Where it was consumed, once found.
    pub source: Option<SourcePosition>,
    /// What happened.
    pub result: SkipResult,
}

impl SkipReport {
    /// `skipped`, `already-skipped`, `not-found`, `already-replayed`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self.result {
            SkipResult::Skipped { .. } | SkipResult::Completed { .. } => "skipped",
            SkipResult::AlreadySkipped { .. } => "already-skipped",
            SkipResult::NotFound => "not-found",
            SkipResult::AlreadyReplayed { .. } => "already-replayed",
            SkipResult::Failed { .. } => "failed",
        }
    }

    /// Did the request end up skipped, now or before?
    pub fn is_ok(&self) -> bool {
        matches!(
            self.result,
            SkipResult::Skipped { .. }
                | SkipResult::Completed { .. }
                | SkipResult::AlreadySkipped { .. }
        )
    }
}

impl SkipReport {
    /// `{request_id, result, message, control_point, source}`, as the CLI
    /// and the admin API print it; `result` is [`SkipReport::kind`].
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "request_id": self.request_id,
            "result": self.kind(),
            "message": self.to_string(),
            "control_point": self.control_point,
            "source": self.source.as_ref().map(|s| serde_json::json!({
                "topic": s.topic,
                "partition": s.partition,
                "offset": s.offset,
            })),
        })
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.request_id;
        let pos = |p: &SourcePosition| format!("{}/{}/{}", p.topic, p.partition, p.offset);
        match &self.result {
            SkipResult::Skipped { failed_record } => write!(
                f,
                "{id}: skipped: it will not be replayed; failed event at {}",
                pos(failed_record)
            ),
            SkipResult::Completed { by, failed_record } => write!(
                f,
                "{id}: skipped by {by} earlier, whose failed event was missing: written at {}",
                pos(failed_record)
            ),
            SkipResult::AlreadySkipped { by, at } => write!(
                f,
                "{id}: already skipped by {by} at {}: nothing done",
                format_utc(*at)
            ),
            SkipResult::NotFound => write!(f, "{id}: no stored request has this id"),
            SkipResult::AlreadyReplayed { control_point } => write!(
                f,
                "{id}: already replayed from the stored topic of {control_point}: nothing to skip"
            ),
            SkipResult::Failed { error } => write!(f, "{id}: not skipped: {error}"),
        }
    }
}

/// The failed event of a skipped stored request.
fn failed_event(entry: &StoredEntry, mark: &StoredSkip, stored_topic: &str) -> FailedEvent {
    let r = &entry.request;
    FailedEvent {
        request_id: r.request_id.clone(),
        reason: FailureReason::Skipped,
        detail: format!(
            "skipped by {} at {}: taken out of the stored backlog of {} ({stored_topic} partition {} offset {}), never replayed",
            mark.skipped_by,
            format_utc(mark.skipped_at),
            r.control_point,
            entry.record.partition,
            entry.record.offset
        ),
        control_point: Some(r.control_point.clone()),
        service: Some(r.service.clone()),
        interface: Some(r.interface.clone()),
        operation: Some(r.operation.clone()),
        source: r.source.clone(),
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
        chain: ExceptionChain::default(),
        rule: None,
        instance: mark.skipped_by.clone(),
        failed_at: crate::clock::now_ms(),
        attempts: 0,
        epoch: Some(r.epoch),
    }
}

async fn delivered(d: DeliveryFuture) -> Result<(i32, i64), KafkaError> {
    match d.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

impl StoredBacklog {
    /// Skips stored requests: each is never replayed and goes to the failed
    /// events with reason `skipped`, at most once however many skips of it
    /// run (see the module docs of [`crate::stored`]). Ids not stored, or
    /// already replayed, are refused. `by` is `operator:<name>`.
    pub async fn skip(
        &self,
        request_ids: &[String],
        by: &str,
    ) -> Result<Vec<SkipReport>, StoredError> {
        let backlog = self.load(&[]).await?;
        let mut reports = Vec::new();
        let mut todo: Vec<&StoredEntry> = Vec::new();
        let mut marked: Vec<(&StoredEntry, &StoredSkip)> = Vec::new();
        let mut seen = HashSet::new();
        for id in request_ids.iter().filter(|id| seen.insert(id.as_str())) {
            let entries: Vec<&StoredEntry> =
                backlog.views.iter().flat_map(|v| v.with_id(id)).collect();
            let report = |result| SkipReport {
                request_id: id.clone(),
                control_point: entries.first().map(|e| e.request.control_point.clone()),
                source: entries.first().map(|e| e.request.source.clone()),
                result,
            };
            let waiting: Vec<&StoredEntry> =
                entries.iter().copied().filter(|e| !e.replayed).collect();
            match (entries.first(), waiting.is_empty()) {
                (None, _) => reports.push(report(SkipResult::NotFound)),
                (Some(e), true) => match &e.skip {
                    Some(m) => reports.push(report(SkipResult::AlreadySkipped {
                        by: m.skipped_by.clone(),
                        at: m.skipped_at,
                    })),
                    None => reports.push(report(SkipResult::AlreadyReplayed {
                        control_point: e.request.control_point.clone(),
                    })),
                },
                (Some(_), false) => {
                    for e in waiting {
                        match &e.skip {
                            Some(m) => marked.push((e, m)),
                            None => todo.push(e),
                        }
                    }
                }
            }
        }
        if todo.is_empty() && marked.is_empty() {
            return Ok(reports);
        }
        self.ensure_topics().await?;
        let stored_topic = |e: &StoredEntry| self.topology.stored_topic(&e.request.control_point);

        // Marked before: done, unless that skip stopped before its failed event.
        if !marked.is_empty() {
            let written = self.skipped_failures().await?;
            for (e, m) in marked {
                let key = (e.request.request_id.clone(), e.request.source.clone());
                let result = if written.contains(&key) {
                    SkipResult::AlreadySkipped {
                        by: m.skipped_by.clone(),
                        at: m.skipped_at,
                    }
                } else {
                    match self
                        .write_failed(&failed_event(e, m, &stored_topic(e)))
                        .await
                    {
                        Ok(failed_record) => SkipResult::Completed {
                            by: m.skipped_by.clone(),
                            failed_record,
                        },
                        Err(error) => SkipResult::Failed { error },
                    }
                };
                reports.push(entry_report(e, result));
            }
        }
        if todo.is_empty() {
            return Ok(reports);
        }

        // 1. Mark each one, and wait until the marks are acknowledged.
        let mut pending = Vec::new();
        for e in todo {
            let mark = StoredSkip {
                request_id: e.request.request_id.clone(),
                control_point: e.request.control_point.clone(),
                source: e.request.source.clone(),
                skip_id: crate::clock::attempt_id(by),
                skipped_by: by.to_string(),
                skipped_at: crate::clock::now_ms(),
            };
            let sent = self.send_mark(&mark);
            pending.push((e, mark, sent));
        }
        let mut marks_written = Vec::new();
        for (e, mark, sent) in pending {
            let written = match sent {
                Ok(d) => delivered(d).await,
                Err(err) => Err(err),
            };
            match written {
                Ok(_) => marks_written.push((e, mark)),
                Err(err) => reports.push(entry_report(
                    e,
                    SkipResult::Failed {
                        error: format!(
                            "writing the skip mark to {}: {err}",
                            self.topology.skips_topic()
                        ),
                    },
                )),
            }
        }
        if marks_written.is_empty() {
            return Ok(reports);
        }

        // 2. Read the marks back: the first mark of a stored request wins.
        let marks = self.read_marks().await?;
        for (e, mark) in marks_written {
            let first = marks.iter().map(|(_, m)| m).find(|m| m.key() == mark.key());
            let result = match first {
                Some(first) if first.skip_id == mark.skip_id => {
                    // 3. Only the winner writes the failed event.
                    match self.write_failed(&failed_event(e, &mark, &stored_topic(e))).await {
                        Ok(failed_record) => SkipResult::Skipped { failed_record },
                        Err(error) => SkipResult::Failed {
                            error: format!("marked skipped, but {error}; run the skip again to write the failed event"),
                        },
                    }
                }
                Some(first) => {
                    // The winner's mark goes last again, so that compaction
                    // keeps who skipped it first.
                    if let Err(err) = match self.send_mark(first) {
                        Ok(d) => delivered(d).await.map(|_| ()),
                        Err(err) => Err(err),
                    } {
                        tracing::warn!(request_id = %first.request_id, error = %err, "cannot write the first skip mark again");
                    }
                    SkipResult::AlreadySkipped {
                        by: first.skipped_by.clone(),
                        at: first.skipped_at,
                    }
                }
                None => SkipResult::Failed {
                    error: format!(
                        "the skip mark written to {} was not read back",
                        self.topology.skips_topic()
                    ),
                },
            };
            tracing::info!(request_id = %e.request.request_id, control_point = %e.request.control_point, by, result = ?result, "skip");
            reports.push(entry_report(e, result));
        }
        Ok(reports)
    }

    fn send_mark(&self, mark: &StoredSkip) -> Result<DeliveryFuture, KafkaError> {
        let payload = mark.encode().expect("a skip mark always encodes");
        let key = mark.key();
        let topic = self.topology.skips_topic();
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    /// Writes a failed event, keyed by request id as the pipeline writes
    /// them; returns where it is.
    async fn write_failed(&self, event: &FailedEvent) -> Result<SourcePosition, String> {
        let topic = self.topology.failed_topic();
        let payload = event.encode().expect("a failed event always encodes");
        let headers = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: REQUEST_ID_HEADER,
                value: Some(event.request_id.as_bytes()),
            })
            .insert(KafkaHeader {
                key: "sfwd-reason",
                value: Some(event.reason.as_str().as_bytes()),
            });
        let record = FutureRecord::to(&topic)
            .key(&event.request_id)
            .payload(&payload)
            .headers(headers);
        let sent = self.producer.send_result(record).map_err(|(e, _)| e);
        let written = match sent {
            Ok(d) => delivered(d).await,
            Err(e) => Err(e),
        };
        written
            .map(|(partition, offset)| SourcePosition {
                topic: topic.clone(),
                partition,
                offset,
            })
            .map_err(|e| format!("writing the failed event to {topic}: {e}"))
    }

    /// The stored requests (request id, source) that have a failed event
    /// with reason `skipped`.
    async fn skipped_failures(&self) -> Result<HashSet<(String, SourcePosition)>, StoredError> {
        let topic = self.topology.failed_topic();
        let mut out = HashSet::new();
        for r in self.read(&topic).await?.unwrap_or_default() {
            if let Some(Ok(e)) = r.payload.as_deref().map(FailedEvent::decode) {
                if e.reason == FailureReason::Skipped {
                    out.insert((e.request_id, e.source));
                }
            }
        }
        Ok(out)
    }
}

fn entry_report(e: &StoredEntry, result: SkipResult) -> SkipReport {
    SkipReport {
        request_id: e.request.request_id.clone(),
        control_point: Some(e.request.control_point.clone()),
        source: Some(e.request.source.clone()),
        result,
    }
}
