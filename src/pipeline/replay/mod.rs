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
//! A Kafka target gets up to its binding's `in_flight` stored requests at
//! once; their delivery reports are settled in order (see `in_flight.rs`
//! for what a failure among them means). Other targets get one at a time.
//!
//! Progress (next stored offset, highest source offset delivered, finished
//! FORWARD epoch) is written to the compacted `<app>.replay` topic, keyed by
//! `control point/topic/partition`, every [`PROGRESS_EVERY`] settled
//! requests or 500 ms, so a partition's next owner resumes where the last
//! one stopped. A stored copy whose source offset is not above the highest
//! one delivered is a duplicate written by a crash, and is skipped: nothing
//! is delivered twice from the store. After a crash, the next replay flags
//! the first [`redelivery_bound`] requests as possible redeliveries.

use std::collections::VecDeque;

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use super::in_flight::{produce, Oldest};
use super::pacer::Pacer;
use super::worker::Worker;
use super::PipelineError;
use crate::bindings::failure::Failure;
use crate::bindings::{Delivery, Request, Target};
use crate::control::{replay_key, ControlPoint, Mode};
use crate::records::{AvroRecord, StoredRequest};

use crate::bindings::REDELIVERY_HEADER;

enum Step {
    /// Delivered, or failed without a match: go on.
    Next,
    /// The store was activated again: stop, resuming at `resume`.
    Stop { resume: i64 },
}

/// A stored request sent to a Kafka target, not yet settled.
struct Sent {
    offset: i64,
    /// Index of its service in the topology.
    service: usize,
    record: StoredRequest,
    request: Request,
    state: ControlPoint,
    sent_at: std::time::Instant,
    delivery: Result<Delivery, Failure>,
}

impl Worker {
    pub(super) async fn replay(&mut self, cp: &str) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let start_state = ctx.table.get(cp);
        if start_state.mode != Mode::Forward {
            return Ok(());
        }
        let key = replay_key(cp, &self.topic, self.partition);
        let before = ctx.table.replay_progress(&key);
        let mut progress = Progress {
            key,
            now: before,
            unwritten: 0,
            written_at: std::time::Instant::now(),
            writes: VecDeque::new(),
            window: PROGRESS_WINDOW,
        };
        let stored = ctx.plan.control_point(cp);
        let stored_topic = &stored.stored_topic;
        let stored_partition = self.partition % stored.stored_partitions;

        let (low, high) = ctx
            .replay_readers
            .watermarks(stored_topic, stored_partition)?;
        let mut next = before.next_offset.max(low);
        progress.now.next_offset = next;
        let mut stopped = None;
        let mut delivered = 0usize;
        let plan = ctx.plan.replays.get(cp).cloned();
        let mut pacer = plan.map(|p| Pacer::new(p.policy, p.partitions));
        // Calls to a Kafka target out at once (1 for other targets).
        let in_flight = stored
            .services
            .iter()
            .map(|&i| match &ctx.targets[i] {
                Target::Kafka(k) => k.in_flight(),
                Target::Http(_) => 1,
            })
            .max()
            .unwrap_or(1);
        progress.window = progress_window(in_flight);
        let mut sent: VecDeque<Sent> = VecDeque::new();
        // The highest source offset sent: a stored copy at or below it is
        // a duplicate, even before its original is settled.
        let mut sent_max = before.max_source_offset;
        if next < high {
            ctx.skips.wait_caught_up().await?;
            tracing::info!(
                control_point = cp,
                topic = %self.topic,
                partition = self.partition,
                from = next,
                to = high,
                max_source_offset = before.max_source_offset,
                interrupted = before.open,
                "replaying stored requests"
            );
            let reader = ctx
                .replay_readers
                .open(stored_topic, stored_partition, next)?;
            // The last replay stopped without finishing: the first records
            // may have been delivered before its progress was written.
            let window = if self.window.is_transactional() {
                // Progress is committed with each transaction.
                super::outputs::TXN_OUTPUTS + in_flight
            } else {
                redelivery_bound(in_flight)
            };
            let mut possible_redeliveries = if before.open { window } else { 0 };
            progress.now.open = true;
            if before.started_epoch != start_state.epoch as i64 {
                // Progress and rates of this FORWARD count from here.
                progress.now.started_epoch = start_state.epoch as i64;
                progress.now.started_offset = next;
                progress.now.started_ms = crate::clock::now_ms();
            }
            if !before.open {
                // The replay is marked open, and the mark acknowledged,
                // before its first request goes out: if it is interrupted
                // before its first progress write, the next one still
                // knows to flag what may have been delivered.
                self.send_progress(&mut progress).await?;
                while let Some(d) = progress.writes.pop_front() {
                    wait_progress(d).await?;
                }
            }
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
                if record.source.offset <= sent_max {
                    tracing::debug!(request_id = %record.request_id, "skipped a duplicate stored copy");
                    continue;
                }
                if ctx.skips.is_skipped(&record.request_id, &record.source) {
                    tracing::info!(request_id = %record.request_id, control_point = cp, "an operator skipped this stored request: settled without delivery");
                    sent_max = record.source.offset;
                    progress.settled(offset, record.source.offset);
                    continue;
                }
                if self
                    .delivered_ahead
                    .get_mut(cp)
                    .is_some_and(|ahead| ahead.remove(&record.source.offset))
                {
                    // Reached the target while an earlier request failed.
                    sent_max = record.source.offset;
                    progress.settled(offset, record.source.offset);
                    continue;
                }
                let state = ctx.table.get(cp);
                if state.mode == Mode::Store {
                    stopped = Some(offset);
                    break;
                }
                if let Some(pacer) = pacer.as_mut().filter(|p| p.cap(&state).is_some()) {
                    if !pacer.wait(&state, &ctx.table, &mut self.stop).await {
                        // Stopping: this record was not sent.
                        next = offset;
                        break;
                    }
                }
                sent_max = record.source.offset;
                let redelivery = possible_redeliveries > 0;
                possible_redeliveries = possible_redeliveries.saturating_sub(1);
                let request = replayed_request(&record, redelivery);
                let service = ctx.plan.service_index(&record.service);
                let kafka = match service.map(|i| (i, &ctx.targets[i])) {
                    Some((i, Target::Kafka(k))) if in_flight > 1 => Some((i, k)),
                    _ => None,
                };
                if let Some((service, k)) = kafka {
                    let mut out = ReplayCalls {
                        worker: self,
                        cp,
                        sent: &mut sent,
                        progress: &mut progress,
                        delivered: &mut delivered,
                        stopped: &mut stopped,
                    };
                    let delivery = produce(k, &request, &mut out).await?;
                    sent.push_back(Sent {
                        offset,
                        service,
                        record,
                        request,
                        state,
                        sent_at: std::time::Instant::now(),
                        delivery,
                    });
                    while stopped.is_none() && sent.len() >= in_flight {
                        let call = sent.pop_front().expect("non-empty");
                        if let Some(resume) = self
                            .settle_replayed(cp, call, &mut progress, &mut delivered)
                            .await?
                        {
                            stopped = Some(resume);
                        }
                    }
                } else {
                    let source_offset = record.source.offset;
                    match self
                        .replay_one(cp, service, record, request, state, offset)
                        .await?
                    {
                        Step::Next => {
                            progress.settled(offset, source_offset);
                            delivered += 1;
                        }
                        Step::Stop { resume } => {
                            if resume > offset {
                                progress.settled(offset, source_offset);
                            }
                            stopped = Some(resume);
                        }
                    }
                }
                if stopped.is_some() {
                    break;
                }
                if progress.write_due()? {
                    self.send_progress(&mut progress).await?;
                }
            }
        }
        // Settle what is still out; after a stop, what is delivered beyond
        // the resume point is remembered, so that it is not delivered again.
        while let Some(call) = sent.pop_front() {
            match stopped {
                None => {
                    if let Some(resume) = self
                        .settle_replayed(cp, call, &mut progress, &mut delivered)
                        .await?
                    {
                        stopped = Some(resume);
                    }
                }
                Some(_) => self.settle_ahead(cp, call).await,
            }
        }
        if stopped.is_none() && self.stop.is_fired() && next < high {
            stopped = Some(progress.now.next_offset);
        }
        match stopped {
            Some(resume) => progress.now.next_offset = resume,
            None => {
                progress.now.next_offset = next;
                progress.now.done_epoch = start_state.epoch as i64;
                progress.now.open = false;
                self.needs_replay.remove(cp);
            }
        }
        if progress.now != before {
            self.send_progress(&mut progress).await?;
        }
        while let Some(d) = progress.writes.pop_front() {
            wait_progress(d).await?;
        }
        if delivered > 0 || stopped.is_some() {
            tracing::info!(control_point = cp, topic = %self.topic, partition = self.partition, delivered, stopped = stopped.is_some(), "replay ended");
        }
        Ok(())
    }
}

/// The request a stored record replays, flagged as a possible redelivery
/// when asked.
fn replayed_request(record: &StoredRequest, redelivery: bool) -> Request {
    Request {
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
            .chain(redelivery.then(|| (REDELIVERY_HEADER.to_string(), Some(b"possible".to_vec()))))
            .collect(),
    }
}

mod progress;
mod settle;

/// A replay's produces out, as [`produce`] settles them while the
/// producer's queue is full.
struct ReplayCalls<'r> {
    worker: &'r mut Worker,
    cp: &'r str,
    sent: &'r mut VecDeque<Sent>,
    progress: &'r mut Progress,
    delivered: &'r mut usize,
    /// Where the replay stops, once a settled call says so.
    stopped: &'r mut Option<i64>,
}

impl Oldest for ReplayCalls<'_> {
    fn settle_oldest(&mut self) -> BoxFuture<'_, Result<bool, PipelineError>> {
        Box::pin(async move {
            let Some(call) = self.sent.pop_front() else {
                return Ok(false);
            };
            if let Some(resume) = self
                .worker
                .settle_replayed(self.cp, call, self.progress, self.delivered)
                .await?
            {
                *self.stopped = Some(resume);
            }
            Ok(true)
        })
    }
}

pub use progress::{progress_window, redelivery_bound, PROGRESS_WINDOW};
use progress::{wait_progress, Progress};
