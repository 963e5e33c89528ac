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

/// Write progress at least this often during a long replay.
const PROGRESS_EVERY: usize = 200;

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
        let stored_topic = ctx.topology.stored_topic(cp);
        let stored_partition =
            self.partition % ctx.stored_partitions.get(cp).copied().unwrap_or(1).max(1);

        let reader: StreamConsumer = ctx.reader_config.create()?;
        let (low, high) =
            reader.fetch_watermarks(&stored_topic, stored_partition, Duration::from_secs(10))?;
        let mut next = progress.next_offset.max(low);
        let mut stopped = false;
        let mut delivered = 0usize;
        if next < high {
            tracing::info!(control_point = cp, topic = %self.topic, partition = self.partition, from = next, to = high, "replaying stored requests");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&stored_topic, stored_partition, Offset::Offset(next))?;
            reader.assign(&tpl)?;
            let mut since_write = 0usize;
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
                match self.replay_one(cp, record, offset).await? {
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
                since_write += 1;
                if since_write >= PROGRESS_EVERY {
                    progress.next_offset = next;
                    self.write_progress(&key, progress).await?;
                    since_write = 0;
                }
            }
        }
        if self.stop.is_fired() && next < high {
            stopped = true;
        }
        progress.next_offset = next;
        if !stopped {
            progress.done_epoch = start_state.epoch as i64;
            self.needs_replay.remove(cp);
        }
        self.write_progress(&key, progress).await?;
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
                .collect(),
        };
        loop {
            let state = ctx.table.get(cp);
            let invocation = invoke(&ctx.targets[service_index], service.retry, &request).await;
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

    async fn write_progress(
        &mut self,
        key: &str,
        progress: ReplayProgress,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let payload = serde_json::to_vec(&progress).expect("plain struct");
        let topic = ctx.topology.replay_topic();
        let record = FutureRecord::to(&topic)
            .key(key)
            .partition(0)
            .payload(&payload);
        ctx.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| PipelineError::Kafka(e))?;
        ctx.table.apply_replay(key, progress)?;
        Ok(())
    }
}
