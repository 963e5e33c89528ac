//! Reading the failed events and acting on them through Kafka.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::read::{read_to_end, FailedError, RawRecord, METADATA_TIMEOUT};
use super::report::{ActionReport, ActionResult, Progress, ResubmitOptions};
use super::resubmit::resubmission_headers;
use super::view::{ActionAt, ActionBook, FailedEntry, FailedView, Status};
use crate::control::command_partition;
use crate::kafka::{self, TopicSpec};
use crate::records::{AvroRecord, FailedAction, FailedActionKind, FailedEvent, SourcePosition};
use crate::topology::Topology;

/// How many events one round of a bulk action handles before it reports
/// progress.
const CHUNK: usize = 100;

/// One application's failed events: read them, resubmit, discard.
///
/// Reads assign every partition and read it from the beginning to the end
/// it had when the read started, without a consumer group: nothing is
/// committed, and any number of readers may run at once.
pub struct FailedEvents {
    base: ClientConfig,
    bootstrap: String,
    application: String,
    failed_topic: String,
    actions_topic: String,
    replication_factor: i32,
    producer: FutureProducer,
}

static READERS: AtomicU64 = AtomicU64::new(0);

impl FailedEvents {
    /// A handle on the failed events of `topology`'s application, on the
    /// cluster its `kafka` settings name.
    pub fn new(topology: &Topology) -> Result<FailedEvents, FailedError> {
        let base = kafka::client_config(&topology.kafka);
        let bootstrap = topology.kafka.bootstrap.clone();
        let mut producer_config = kafka::producer_config(&base);
        producer_config.set("enable.idempotence", "true");
        let producer = producer_config
            .create()
            .map_err(|source| FailedError::Kafka {
                what: "creating a producer".into(),
                bootstrap: bootstrap.clone(),
                source: Box::new(source),
            })?;
        Ok(FailedEvents {
            base,
            bootstrap,
            application: topology.application.clone(),
            failed_topic: topology.failed_topic(),
            actions_topic: topology.failed_actions_topic(),
            replication_factor: i32::from(topology.kafka.replication_factor),
            producer,
        })
    }

    fn kafka_err(&self, what: impl Into<String>) -> impl FnOnce(KafkaError) -> FailedError + '_ {
        let what = what.into();
        move |source| FailedError::Kafka {
            what,
            bootstrap: self.bootstrap.clone(),
            source: Box::new(source),
        }
    }

    /// Reads both topics to their current end.
    pub async fn load(&self) -> Result<FailedView, FailedError> {
        let events =
            self.read(&self.failed_topic)
                .await?
                .ok_or_else(|| FailedError::NoFailedTopic {
                    topic: self.failed_topic.clone(),
                    application: self.application.clone(),
                    bootstrap: self.bootstrap.clone(),
                })?;
        let (actions, bad_actions) = self.read_actions().await?;
        let mut bad = bad_actions;
        let mut decoded = Vec::with_capacity(events.len());
        for r in events {
            match r.payload.as_deref().map(FailedEvent::decode) {
                Some(Ok(e)) => decoded.push((
                    SourcePosition {
                        topic: self.failed_topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                    },
                    e,
                )),
                other => {
                    bad += 1;
                    tracing::warn!(topic = %self.failed_topic, partition = r.partition, offset = r.offset, error = ?other.map(|r| r.err()), "skipped an undecodable failed event");
                }
            }
        }
        let mut view = FailedView::from_records(decoded, actions);
        view.set_undecodable(bad);
        Ok(view)
    }

    async fn read_actions(&self) -> Result<(Vec<ActionAt>, usize), FailedError> {
        let Some(records) = self.read(&self.actions_topic).await? else {
            return Ok((Vec::new(), 0));
        };
        let mut bad = 0;
        let mut actions = Vec::with_capacity(records.len());
        for r in records {
            match r.payload.as_deref().map(FailedAction::decode) {
                Some(Ok(action)) => actions.push(ActionAt {
                    partition: r.partition,
                    offset: r.offset,
                    action,
                }),
                // A tombstone: nothing to fold.
                None => {}
                Some(Err(e)) => {
                    bad += 1;
                    tracing::warn!(topic = %self.actions_topic, partition = r.partition, offset = r.offset, error = %e, "skipped an undecodable failed action");
                }
            }
        }
        Ok((actions, bad))
    }

    /// Every record of `topic` up to the end it had at the start, or `None`
    /// if the topic does not exist.
    async fn read(&self, topic: &str) -> Result<Option<Vec<RawRecord>>, FailedError> {
        let n = READERS.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.operator.{}.{}.{n}",
            self.application,
            std::process::id(),
            crate::clock::now_ms()
        );
        let config = kafka::reader_config(&self.base, &name, "failed");
        let topic = topic.to_string();
        let bootstrap = self.bootstrap.clone();
        let t = topic.clone();
        tokio::task::spawn_blocking(move || read_to_end(config, &t, &bootstrap))
            .await
            .map_err(|e| FailedError::Internal {
                topic,
                message: e.to_string(),
            })?
    }

    /// Creates the failed-actions topic if it does not exist yet; returns
    /// its partition count.
    async fn actions_partitions(&self) -> Result<i32, FailedError> {
        let spec = TopicSpec {
            name: self.actions_topic.clone(),
            partitions: 1,
            replication_factor: self.replication_factor,
            compacted: true,
        };
        kafka::ensure_topics(&self.base, &[spec])
            .await
            .map_err(self.kafka_err(format!("creating {}", self.actions_topic)))?;
        let consumer: BaseConsumer = kafka::reader_config(&self.base, "sfwd-operator", "probe")
            .create()
            .map_err(self.kafka_err("creating a consumer"))?;
        for _ in 0..50 {
            if let Some(n) =
                kafka::partition_count(&consumer, &self.actions_topic, METADATA_TIMEOUT).map_err(
                    self.kafka_err(format!("reading the metadata of {}", self.actions_topic)),
                )?
            {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(FailedError::Kafka {
            what: format!("creating {}", self.actions_topic),
            bootstrap: self.bootstrap.clone(),
            source: Box::new(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopic,
            )),
        })
    }

    /// The partition count of a request topic, if it exists.
    fn topic_partitions(&self, topic: &str) -> Result<Option<i32>, FailedError> {
        let consumer: BaseConsumer = kafka::reader_config(&self.base, "sfwd-operator", "probe")
            .create()
            .map_err(self.kafka_err("creating a consumer"))?;
        kafka::partition_count(&consumer, topic, METADATA_TIMEOUT)
            .map_err(self.kafka_err(format!("reading the metadata of {topic}")))
    }

    fn send_action(
        &self,
        key: &str,
        partition: i32,
        action: &FailedAction,
    ) -> Result<DeliveryFuture, KafkaError> {
        let payload = action.encode().expect("a failed action always encodes");
        let record = FutureRecord::to(&self.actions_topic)
            .key(key)
            .partition(partition)
            .payload(&payload);
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    /// Writes the original request of each event back to its request
    /// topic, at most once per failure unless `options.again` is set (see
    /// the module docs for exactly what holds). Events are handled in the
    /// order given; `progress` is called after each round.
    pub async fn resubmit(
        &self,
        request_ids: &[String],
        options: &ResubmitOptions,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<ActionReport>, FailedError> {
        let view = self.load().await?;
        let mut reports = Vec::new();
        let mut todo: Vec<&FailedEntry> = Vec::new();
        let mut seen = HashSet::new();
        for id in request_ids.iter().filter(|id| seen.insert(id.as_str())) {
            let report = |result| ActionReport {
                request_id: id.clone(),
                result,
            };
            match view.get(id) {
                None => reports.push(report(ActionResult::NotFound)),
                Some(e) => match (&e.resubmission, options.again) {
                    (Some(a), false) => {
                        reports.push(report(ActionResult::AlreadyResubmitted(a.clone())))
                    }
                    _ => todo.push(e),
                },
            }
        }
        let total = todo.len();
        if total == 0 {
            return Ok(reports);
        }
        let partitions = self.actions_partitions().await?;
        let mut done = 0;
        for chunk in todo.chunks(CHUNK) {
            reports.extend(self.resubmit_chunk(chunk, options, partitions).await?);
            done += chunk.len();
            progress(Progress { done, total });
        }
        Ok(reports)
    }

    async fn resubmit_chunk(
        &self,
        chunk: &[&FailedEntry],
        options: &ResubmitOptions,
        partitions: i32,
    ) -> Result<Vec<ActionReport>, FailedError> {
        // 1. Claim every event of the chunk.
        let mut claims = Vec::new();
        let mut reports = Vec::new();
        for entry in chunk {
            let id = &entry.request_id;
            let claim = crate::clock::attempt_id(&options.by);
            let action = FailedAction {
                request_id: id.clone(),
                action: FailedActionKind::Resubmitting,
                failure: entry.event.source.clone(),
                claim: Some(claim.clone()),
                claim_offset: None,
                forced: options.again,
                by: options.by.clone(),
                at: crate::clock::now_ms(),
                resubmitted_to: None,
                detail: None,
            };
            let partition = command_partition(id, partitions);
            let key = format!("resubmit:{id}:{claim}");
            claims.push((entry, action, partition, key));
        }
        let mut pending = Vec::new();
        for (entry, action, partition, key) in claims {
            match self.send_action(&key, partition, &action) {
                Ok(d) => pending.push((entry, action, partition, key, d)),
                Err(e) => reports.push(ActionReport {
                    request_id: entry.request_id.clone(),
                    result: ActionResult::Failed {
                        error: format!("writing the claim to {}: {e}", self.actions_topic),
                    },
                }),
            }
        }
        let mut claimed = Vec::new();
        for (entry, action, partition, key, d) in pending {
            match wait(d).await {
                Ok(offset) => claimed.push((entry, action, partition, key, offset)),
                Err(e) => reports.push(ActionReport {
                    request_id: entry.request_id.clone(),
                    result: ActionResult::Failed {
                        error: format!("writing the claim to {}: {e}", self.actions_topic),
                    },
                }),
            }
        }
        if claimed.is_empty() {
            return Ok(reports);
        }

        // 2. Read the actions back: a claim counts only if it is the first
        //    for its failure, or forced.
        let (actions, _) = self.read_actions().await?;
        let book = ActionBook::new(actions);
        let mut winners = Vec::new();
        for (entry, action, partition, key, offset) in claimed {
            let claim = action.claim.as_deref().unwrap_or_default();
            let mine = book
                .winners(&entry.request_id, &entry.event.source)
                .any(|a| a.claim == claim);
            if mine {
                winners.push((entry, action, partition, key, offset));
            } else {
                let first = book
                    .effective(&entry.request_id, &entry.event.source)
                    .cloned();
                reports.push(ActionReport {
                    request_id: entry.request_id.clone(),
                    result: match first {
                        Some(a) => ActionResult::LostRace(a),
                        None => ActionResult::Failed {
                            error: format!(
                                "the claim written at offset {offset} of {} was not read back",
                                self.actions_topic
                            ),
                        },
                    },
                });
            }
        }

        // 3. Write the original requests back, in order.
        let mut sent = Vec::new();
        let mut topic_partitions = HashMap::new();
        for (entry, action, partition, key, offset) in winners {
            let e = &entry.event;
            let count = match topic_partitions.get(&e.source.topic) {
                Some(n) => Ok(*n),
                None => self.topic_partitions(&e.source.topic).inspect(|n| {
                    topic_partitions.insert(e.source.topic.clone(), *n);
                }),
            };
            let target_partition = match count {
                Ok(Some(n)) if e.source.partition < n => Some(e.source.partition),
                Ok(Some(_)) => None,
                Ok(None) => {
                    let error = format!("request topic {} does not exist", e.source.topic);
                    sent.push((entry, action, partition, key, offset, Err(error)));
                    continue;
                }
                Err(err) => {
                    sent.push((entry, action, partition, key, offset, Err(err.to_string())));
                    continue;
                }
            };
            let mut headers = OwnedHeaders::new();
            let owned = resubmission_headers(e);
            for (k, v) in &owned {
                headers = headers.insert(KafkaHeader {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&e.source.topic).headers(headers);
            if let Some(p) = target_partition {
                record = record.partition(p);
            }
            if let Some(k) = &e.key {
                record = record.key(k);
            }
            if let Some(v) = &e.value {
                record = record.payload(v);
            }
            let result = self
                .producer
                .send_result(record)
                .map_err(|(err, _)| err.to_string());
            sent.push((entry, action, partition, key, offset, result.map(Some)));
        }
        let mut settled = Vec::new();
        for (entry, mut action, partition, key, offset, result) in sent {
            let written = match result {
                Ok(Some(d)) => wait_position(d).await.map_err(|e| e.to_string()),
                Ok(None) => unreachable!("a send result is always a delivery"),
                Err(e) => Err(e),
            };
            action.claim_offset = Some(offset);
            action.at = crate::clock::now_ms();
            let result = match written {
                Ok((p, o)) => {
                    let to = SourcePosition {
                        topic: entry.event.source.topic.clone(),
                        partition: p,
                        offset: o,
                    };
                    action.action = FailedActionKind::Resubmitted;
                    action.resubmitted_to = Some(to.clone());
                    ActionResult::Resubmitted { to, recorded: true }
                }
                Err(error) => {
                    action.action = FailedActionKind::Interrupted;
                    action.detail = Some(error.clone());
                    ActionResult::Interrupted { error }
                }
            };
            tracing::info!(request_id = %entry.request_id, by = %action.by, forced = action.forced, result = ?result, "resubmission");
            settled.push((entry, action, partition, key, result));
        }

        // 4. Settle every claim.
        let mut recording = Vec::new();
        for (entry, action, partition, key, result) in settled {
            let d = self.send_action(&key, partition, &action);
            recording.push((entry, result, d));
        }
        for (entry, mut result, d) in recording {
            let recorded = match d {
                Ok(d) => wait(d).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                tracing::warn!(request_id = %entry.request_id, error = %e, topic = %self.actions_topic, "cannot record the end of a resubmission");
                if let ActionResult::Resubmitted { recorded, .. } = &mut result {
                    *recorded = false;
                }
            }
            reports.push(ActionReport {
                request_id: entry.request_id.clone(),
                result,
            });
        }
        Ok(reports)
    }

    /// Marks open events discarded: hidden from the default list, kept in
    /// the failed-events topic. `progress` is called after each round.
    pub async fn discard(
        &self,
        request_ids: &[String],
        by: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<ActionReport>, FailedError> {
        let view = self.load().await?;
        let mut reports = Vec::new();
        let mut todo = Vec::new();
        let mut seen = HashSet::new();
        for id in request_ids.iter().filter(|id| seen.insert(id.as_str())) {
            let report = |result| ActionReport {
                request_id: id.clone(),
                result,
            };
            match view.get(id) {
                None => reports.push(report(ActionResult::NotFound)),
                Some(e) => match (e.status, &e.discard) {
                    (Status::Open, _) => todo.push(e),
                    (Status::Discarded, Some(d)) => {
                        reports.push(report(ActionResult::AlreadyDiscarded {
                            by: d.by.clone(),
                            at: d.at,
                        }))
                    }
                    (status, _) => reports.push(report(ActionResult::NotDiscardable(status))),
                },
            }
        }
        let total = todo.len();
        if total == 0 {
            return Ok(reports);
        }
        let partitions = self.actions_partitions().await?;
        let mut done = 0;
        for chunk in todo.chunks(CHUNK) {
            let mut pending = Vec::new();
            for entry in chunk {
                let id = &entry.request_id;
                let action = FailedAction {
                    request_id: id.clone(),
                    action: FailedActionKind::Discarded,
                    failure: entry.event.source.clone(),
                    claim: None,
                    claim_offset: None,
                    forced: false,
                    by: by.to_string(),
                    at: crate::clock::now_ms(),
                    resubmitted_to: None,
                    detail: None,
                };
                let d = self.send_action(
                    &format!("discard:{id}"),
                    command_partition(id, partitions),
                    &action,
                );
                pending.push((id, d));
            }
            for (id, d) in pending {
                let written = match d {
                    Ok(d) => wait(d).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                reports.push(ActionReport {
                    request_id: id.clone(),
                    result: match written {
                        Ok(()) => ActionResult::Discarded,
                        Err(e) => ActionResult::Failed {
                            error: format!("writing to {}: {e}", self.actions_topic),
                        },
                    },
                });
            }
            done += chunk.len();
            progress(Progress { done, total });
        }
        Ok(reports)
    }
}

async fn wait(d: DeliveryFuture) -> Result<i64, KafkaError> {
    wait_position(d).await.map(|(_, offset)| offset)
}

async fn wait_position(d: DeliveryFuture) -> Result<(i32, i64), KafkaError> {
    match d.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}
