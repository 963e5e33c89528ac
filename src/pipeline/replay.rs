//! Replaying the stored requests of one source partition, in order, before
//! the partition's next live record (SPEC §7 G4).
//!
//! A source partition's requests are stored, in source order, in partition
//! `source partition mod n` of the stored topic, and only the task that owns
//! the source partition stores or replays them. So while it replays, nothing
//! is added behind the backlog for this partition, and when the replay
//! reaches the end the backlog is empty: new requests, which waited in the
//! source topic meanwhile, then flow directly.
//!
//! Progress (next stored offset, highest source offset delivered, finished
//! FORWARD epoch) is written to the compacted `<app>.replay` topic, keyed by
//! `control point/topic/partition`, so a partition's next owner resumes where
//! the last one stopped. A stored copy whose source offset is not above the
//! highest one delivered is a duplicate written by a crash, and is skipped:
//! nothing is delivered twice from the store.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use super::worker::{Decision, Worker};
use super::PipelineError;
use crate::bindings::failure::chain_for;
use crate::bindings::{invoke, Request};
use crate::control::{replay_key, Mode, ReplayProgress};
use crate::records::{AvroRecord, FailureReason, StoredRequest};
use crate::telemetry;

/// Progress writes in flight during a replay. A replay interrupted by a
/// crash re-delivers at most this many requests, plus the one in flight,
/// that may have reached the target already; they carry the header
/// `sfwd-redelivery: possible`.
pub const PROGRESS_WINDOW: usize = 8;

use crate::bindings::REDELIVERY_HEADER;

enum Step {
    /// Delivered, or failed without a match: go on.
    Next,
    /// The store was activated again: stop, resuming at `resume`.
    Stop { resume: i64 },
}

impl Worker {
    pub(super) async fn replay(&mut self, cp: &str) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let start_state = ctx.table.get(cp);
        if start_state.mode != Mode::Forward {
            return Ok(());
        }
        let key = replay_key(cp, &self.topic, self.partition);
        let mut progress = ctx.table.replay_progress(&key);
        let before = progress;
        let stored_topic = ctx.topology.stored_topic(cp);
        let stored_partition =
            self.partition % ctx.stored_partitions.get(cp).copied().unwrap_or(1).max(1);

        let reader: StreamConsumer = ctx.reader_config.create()?;
        let (low, high) = tokio::task::block_in_place(|| {
            reader.fetch_watermarks(&stored_topic, stored_partition, Duration::from_secs(10))
        })?;
        let mut next = progress.next_offset.max(low);
        let mut stopped = false;
        let mut delivered = 0usize;
        let mut in_flight = std::collections::VecDeque::new();
        if next < high {
            tracing::info!(
                control_point = cp,
                topic = %self.topic,
                partition = self.partition,
                from = next,
                to = high,
                max_source_offset = progress.max_source_offset,
                interrupted = progress.open,
                "replaying stored requests"
            );
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&stored_topic, stored_partition, Offset::Offset(next))?;
            reader.assign(&tpl)?;
            // The last replay stopped without finishing: the first records
            // may have been delivered before its progress was written.
            // The window of unacknowledged progress, plus the request that was
            // being delivered.
            let window = if self.window.is_transactional() {
                // Progress is committed with each transaction.
                super::outputs::TXN_OUTPUTS
            } else {
                PROGRESS_WINDOW + 1
            };
            let mut possible_redeliveries = if progress.open { window } else { 0 };
            progress.open = true;
            while next < high {
                let m = tokio::select! {
                    m = reader.recv() => m,
                    _ = self.stop.wait() => break,
                };
                let m = match m {
                    Ok(m) => m,
                    Err(KafkaError::PartitionEOF(_)) => continue,
                    Err(e) => {
                        tracing::warn!(topic = %stored_topic, error = %e, "reading the stored topic");
                        continue;
                    }
                };
                let offset = m.offset();
                next = offset + 1;
                let record = match m.payload().map(StoredRequest::decode) {
                    Some(Ok(r)) => r,
                    other => {
                        tracing::error!(topic = %stored_topic, offset, error = ?other.map(|r| r.err()), "skipped an undecodable stored record");
                        continue;
                    }
                };
                if record.source.topic != self.topic || record.source.partition != self.partition {
                    continue;
                }
                if record.source.offset <= progress.max_source_offset {
                    tracing::debug!(request_id = %record.request_id, "skipped a duplicate stored copy");
                    continue;
                }
                if ctx.table.get(cp).mode == Mode::Store {
                    next = offset;
                    stopped = true;
                    break;
                }
                let source_offset = record.source.offset;
                let redelivery = possible_redeliveries > 0;
                possible_redeliveries = possible_redeliveries.saturating_sub(1);
                match self.replay_one(cp, record, offset, redelivery).await? {
                    Step::Next => {
                        progress.max_source_offset = source_offset;
                        delivered += 1;
                    }
                    Step::Stop { resume } => {
                        if resume > offset {
                            progress.max_source_offset = source_offset;
                        }
                        next = resume;
                        stopped = true;
                        break;
                    }
                }
                progress.next_offset = next;
                self.send_progress(&key, progress, &mut in_flight).await?;
            }
        }
        if self.stop.is_fired() && next < high {
            stopped = true;
        }
        progress.next_offset = next;
        if !stopped {
            progress.done_epoch = start_state.epoch as i64;
            progress.open = false;
            self.needs_replay.remove(cp);
        }
        if progress != before {
            self.send_progress(&key, progress, &mut in_flight).await?;
        }
        while let Some(d) = in_flight.pop_front() {
            wait_progress(d).await?;
        }
        if delivered > 0 || stopped {
            tracing::info!(control_point = cp, topic = %self.topic, partition = self.partition, delivered, stopped, "replay ended");
        }
        Ok(())
    }

    /// Delivers one stored request; a matching failure triggers the store
    /// again (the request then goes to the failed events if it is the
    /// designated trigger, or stays stored).
    async fn replay_one(
        &mut self,
        cp: &str,
        record: StoredRequest,
        offset: i64,
        redelivery: bool,
    ) -> Result<Step, PipelineError> {
        let ctx = self.ctx.clone();
        let Some(service_index) = ctx
            .topology
            .services
            .iter()
            .position(|s| s.name == record.service)
        else {
            tracing::error!(service = %record.service, request_id = %record.request_id, "stored request for a service the topology no longer has; sent to the failed events");
            return self
                .fail_replayed(
                    cp,
                    record,
                    FailureReason::UnknownOperation,
                    "its service is not in the topology".into(),
                    Default::default(),
                    None,
                    0,
                )
                .await;
        };
        let service = &ctx.topology.services[service_index];
        let sf = service
            .store_and_forward
            .as_ref()
            .expect("a service with a control point");
        let request = Request {
            request_id: record.request_id.clone(),
            service: record.service.clone(),
            interface: record.interface.clone(),
            operation: record.operation.clone(),
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .chain(
                    redelivery.then(|| (REDELIVERY_HEADER.to_string(), Some(b"possible".to_vec()))),
                )
                .collect(),
        };
        loop {
            let state = ctx.table.get(cp);
            let call = telemetry::TargetCall::start(&ctx.instance, &request);
            let invocation = invoke(&ctx.targets[service_index], service.retry, &request).await;
            call.end_replay(&invocation, cp);
            let failure = match invocation.result {
                Ok(_) => return Ok(Step::Next),
                Err(f) => f,
            };
            let chain = chain_for(&failure);
            let Some(report) = sf.rules.first_match(
                &ctx.topology.types,
                &request.interface,
                &request.operation,
                &chain,
            ) else {
                return self
                    .fail_replayed(
                        cp,
                        record,
                        FailureReason::ReplayFailed,
                        format!(
                            "replayed invocation of {} failed and no rule matched",
                            ctx.targets[service_index].describe()
                        ),
                        chain,
                        None,
                        invocation.attempts,
                    )
                    .await;
            };
            match self.trigger(cp, &state, &request, &chain, &report).await? {
                Decision::Designated => {
                    let detail = format!("this replayed request's failure activated the store of `{cp}` again: {report}");
                    self.fail_replayed(
                        cp,
                        record,
                        FailureReason::StoreTrigger,
                        detail,
                        chain,
                        Some(report.rule.clone()),
                        invocation.attempts,
                    )
                    .await?;
                    // Past this record: it is in the failed events now.
                    return Ok(Step::Stop { resume: offset + 1 });
                }
                Decision::Store => return Ok(Step::Stop { resume: offset }),
                Decision::Retry => continue,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn fail_replayed(
        &mut self,
        cp: &str,
        record: StoredRequest,
        reason: FailureReason,
        detail: String,
        chain: crate::rules::ExceptionChain,
        rule: Option<String>,
        attempts: u32,
    ) -> Result<Step, PipelineError> {
        let request = Request {
            request_id: record.request_id,
            service: record.service,
            interface: record.interface,
            operation: record.operation,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|h| (h.key, h.value))
                .collect(),
        };
        let event = self.failed_event(
            &request,
            Some(cp),
            reason,
            detail,
            record.source,
            chain,
            rule,
            attempts,
        );
        let out = self.failed_output(&event);
        self.window.write_now(out).await?;
        Ok(Step::Next)
    }

    /// Sends a progress record, keeping at most [`PROGRESS_WINDOW`] in flight.
    async fn send_progress(
        &mut self,
        key: &str,
        progress: ReplayProgress,
        in_flight: &mut std::collections::VecDeque<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let payload = serde_json::to_vec(&progress).expect("plain struct");
        let topic = ctx.topology.replay_topic();
        if self.window.is_transactional() {
            // In the partition's transaction, with the outputs it covers.
            self.window
                .write_in_transaction(super::outputs::Output {
                    topic,
                    partition: Some(0),
                    key: Some(key.as_bytes().to_vec()),
                    payload,
                    headers: Vec::new(),
                })
                .await?;
            ctx.table.apply_replay(key, progress)?;
            return Ok(());
        }
        loop {
            let record = FutureRecord::to(&topic)
                .key(key)
                .partition(0)
                .payload(&payload);
            match ctx.producer.send_result(record) {
                Ok(d) => {
                    in_flight.push_back(d);
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => match in_flight.pop_front() {
                    Some(d) => wait_progress(d).await?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Err((e, _)) => return Err(PipelineError::Kafka(e)),
            }
        }
        while in_flight.len() > PROGRESS_WINDOW {
            let d = in_flight.pop_front().expect("non-empty");
            wait_progress(d).await?;
        }
        ctx.table.apply_replay(key, progress)?;
        Ok(())
    }
}

async fn wait_progress(d: rdkafka::producer::DeliveryFuture) -> Result<(), PipelineError> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(PipelineError::Kafka(e)),
        Err(_) => Err(PipelineError::Kafka(KafkaError::Canceled)),
    }
}
