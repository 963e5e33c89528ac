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
//! requests or 100 ms, so a partition's next owner resumes where the last
//! one stopped. A stored copy whose source offset is not above the highest
//! one delivered is a duplicate written by a crash, and is skipped: nothing
//! is delivered twice from the store. After a crash, the next replay flags
//! the first [`redelivery_bound`] requests as possible redeliveries.

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;

use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::decide::{self, Called, Origin, Settle, Step as DecideStep};
use super::pacer::Pacer;
use super::worker::Worker;
use super::PipelineError;
use crate::bindings::failure::{chain_for, Failure};
use crate::bindings::{
    invoke, retry_after, Delivery, Invocation, Request, Sent as SendError, Target,
};
use crate::control::{replay_key, ControlPoint, Mode, ReplayProgress};
use crate::records::{AvroRecord, FailureReason, StoredRequest};
use crate::telemetry;

/// Progress writes in flight during a replay, at most, for a target that
/// takes one call at a time (see [`progress_window`]).
pub const PROGRESS_WINDOW: usize = 4;
/// Requests settled between two progress writes, at most (fewer when
/// [`PROGRESS_INTERVAL`] passes first).
pub const PROGRESS_EVERY: usize = 128;
/// Time after which settled requests get a progress write, however few.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// How many requests a replay interrupted by a crash may re-deliver, with
/// a target keeping `in_flight` calls out at once: those covered by
/// progress writes not yet acknowledged, those settled since the last
/// write, and those in flight. The next replay flags as many with
/// `sfwd-redelivery: possible`.
pub fn redelivery_bound(in_flight: usize) -> usize {
    (progress_window(in_flight) + 1) * PROGRESS_EVERY + in_flight
}

/// Progress writes in flight during a replay to a target that keeps
/// `in_flight` calls out: enough to cover them, so that waiting for a
/// progress write (which is acknowledged after the outputs sent before it)
/// never holds the replay to fewer calls in flight than the target takes.
pub fn progress_window(in_flight: usize) -> usize {
    PROGRESS_WINDOW.max(in_flight.div_ceil(PROGRESS_EVERY))
}

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

/// The bookkeeping of one replay: progress, and its writes in flight.
struct Progress {
    key: String,
    now: ReplayProgress,
    /// Requests settled since the last progress write.
    unwritten: usize,
    written_at: std::time::Instant,
    writes: VecDeque<DeliveryFuture>,
    /// Writes in flight, at most ([`progress_window`]).
    window: usize,
}

impl Progress {
    /// A request at stored offset `offset` (source offset `source_offset`)
    /// is settled: delivered or in the failed events.
    fn settled(&mut self, offset: i64, source_offset: i64) {
        self.now.max_source_offset = self.now.max_source_offset.max(source_offset);
        self.now.next_offset = self.now.next_offset.max(offset + 1);
        self.unwritten += 1;
    }

    /// Whether a progress write is due: after [`PROGRESS_EVERY`] settled
    /// requests, or after [`PROGRESS_INTERVAL`] if a write can go out
    /// without waiting for an earlier one (so that a slow broker gets
    /// fewer, fuller writes rather than holding the replay up).
    /// A write that failed stops the partition, as any output does.
    fn write_due(&mut self) -> Result<bool, PipelineError> {
        while let Some(Some(result)) = self.writes.front_mut().map(|d| d.now_or_never()) {
            self.writes.pop_front();
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(PipelineError::Kafka(e)),
                Err(_) => return Err(PipelineError::Kafka(KafkaError::Canceled)),
            }
        }
        Ok(self.unwritten >= PROGRESS_EVERY
            || (self.unwritten > 0
                && self.written_at.elapsed() >= PROGRESS_INTERVAL
                && self.writes.len() < self.window))
    }
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
        let stored_topic = ctx.topology.stored_topic(cp);
        let stored_partition =
            self.partition % ctx.stored_partitions.get(cp).copied().unwrap_or(1).max(1);

        let (low, high) = ctx
            .replay_readers
            .watermarks(&stored_topic, stored_partition)?;
        let mut next = before.next_offset.max(low);
        progress.now.next_offset = next;
        let mut stopped = None;
        let mut delivered = 0usize;
        let plan = ctx.replays.get(cp).cloned();
        let mut pacer = plan.map(|p| Pacer::new(p.policy, p.partitions));
        // Calls to a Kafka target out at once (1 for other targets).
        let in_flight = ctx
            .topology
            .services
            .iter()
            .zip(&ctx.targets)
            .filter(|(s, _)| {
                s.store_and_forward
                    .as_ref()
                    .is_some_and(|sf| sf.control_point == cp)
            })
            .map(|(_, t)| match t {
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
                .open(&stored_topic, stored_partition, next)?;
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
                let service = ctx.topology.service_index(&record.service);
                let kafka = match service.map(|i| (i, &ctx.targets[i])) {
                    Some((i, Target::Kafka(k))) if in_flight > 1 => Some((i, k)),
                    _ => None,
                };
                if let Some((service, k)) = kafka {
                    let delivery = loop {
                        match k.send(&request) {
                            Ok(d) => break Ok(d),
                            Err(SendError::Failed(f)) => break Err(*f),
                            Err(SendError::QueueFull) => match sent.pop_front() {
                                Some(call) => {
                                    if let Some(resume) = self
                                        .settle_replayed(cp, call, &mut progress, &mut delivered)
                                        .await?
                                    {
                                        stopped = Some(resume);
                                    }
                                }
                                None => tokio::time::sleep(Duration::from_millis(5)).await,
                            },
                        }
                    };
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

    /// Waits for a sent request's outcome and acts on it as on a request
    /// invoked alone. Returns where the replay resumes if it must stop.
    async fn settle_replayed(
        &mut self,
        cp: &str,
        call: Sent,
        progress: &mut Progress,
        delivered: &mut usize,
    ) -> Result<Option<i64>, PipelineError> {
        let ctx = self.ctx.clone();
        let Sent {
            offset,
            service,
            record,
            request,
            state,
            sent_at,
            delivery,
        } = call;
        let result = match delivery {
            Ok(mut d) => d.outcome().await,
            Err(f) => Err(f),
        };
        let invocation = match result {
            Ok(response) => Invocation {
                result: Ok(response),
                attempts: 1,
            },
            Err(f) => {
                let retry = ctx.topology.services[service].retry;
                retry_after(&ctx.targets[service], retry, &request, f).await
            }
        };
        telemetry::TargetCall::since(&ctx.instance, &request, sent_at).end_replay(&invocation, cp);
        let source_offset = record.source.offset;
        let step = match invocation.result {
            Ok(_) => Step::Next,
            Err(_) => {
                // Settled as a request invoked alone would be.
                self.replay_outcome(cp, service, record, request, state, offset, invocation)
                    .await?
            }
        };
        Ok(match step {
            Step::Next => {
                progress.settled(offset, source_offset);
                *delivered += 1;
                None
            }
            Step::Stop { resume } => {
                if resume > offset {
                    progress.settled(offset, source_offset);
                }
                Some(resume)
            }
        })
    }

    /// A request sent after the one the replay stopped at: if it reached
    /// the target, its source offset is remembered so that the next replay
    /// skips it; if not, it stays stored.
    async fn settle_ahead(&mut self, cp: &str, call: Sent) {
        let result = match call.delivery {
            Ok(mut d) => d.outcome().await,
            Err(f) => Err(f),
        };
        if result.is_ok() {
            self.delivered_ahead
                .entry(cp.to_string())
                .or_default()
                .insert(call.record.source.offset);
        }
    }

    /// Delivers one stored request, alone; a matching failure triggers the
    /// store again (the request then goes to the failed events if it is the
    /// designated trigger, or stays stored).
    /// `service` is the index of the record's service, `None` when the
    /// topology no longer has it.
    async fn replay_one(
        &mut self,
        cp: &str,
        service: Option<usize>,
        record: StoredRequest,
        request: Request,
        state: ControlPoint,
        offset: i64,
    ) -> Result<Step, PipelineError> {
        let ctx = self.ctx.clone();
        let Some(service) = service else {
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
        let call = telemetry::TargetCall::start(&ctx.instance, &request);
        let retry = ctx.topology.services[service].retry;
        let invocation = invoke(&ctx.targets[service], retry, &request).await;
        call.end_replay(&invocation, cp);
        self.replay_outcome(cp, service, record, request, state, offset, invocation)
            .await
    }

    /// What follows the invocation of a stored request to service
    /// `service_index`, made while its control point was in `state`.
    #[allow(clippy::too_many_arguments)]
    async fn replay_outcome(
        &mut self,
        cp: &str,
        service_index: usize,
        record: StoredRequest,
        request: Request,
        state: ControlPoint,
        offset: i64,
        invocation: Invocation,
    ) -> Result<Step, PipelineError> {
        let ctx = self.ctx.clone();
        let service = &ctx.topology.services[service_index];
        let (mut state, mut invocation) = (state, invocation);
        loop {
            let failure = match invocation.result {
                Ok(_) => return Ok(Step::Next),
                Err(f) => f,
            };
            let on_overload = ctx
                .replays
                .get(cp)
                .map(|plan| plan.policy.on_overload)
                .unwrap_or_default();
            let chain = chain_for(&failure);
            let report = ctx.rule_match(service_index, &request, &chain);
            let called = Called::Failed {
                matched: report.is_some(),
                overloaded: on_overload.wait_after(&failure),
            };
            let settle = match decide::after_call(Origin::Replayed, called) {
                DecideStep::BackOff(wait) => {
                    telemetry::ReplayBackOff {
                        instance: &ctx.instance,
                        control_point: cp,
                        request_id: &request.request_id,
                        wait,
                        failure: &failure,
                    }
                    .emit();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.wait() => return Ok(Step::Stop { resume: offset }),
                    }
                    state = ctx.table.get(cp);
                    if state.mode == Mode::Store {
                        return Ok(Step::Stop { resume: offset });
                    }
                    Settle::CallAgain
                }
                DecideStep::Fail(reason) => {
                    return self
                        .fail_replayed(
                            cp,
                            record,
                            reason,
                            format!(
                                "replayed invocation of {} failed and no rule matched",
                                ctx.targets[service_index].describe()
                            ),
                            chain,
                            None,
                            invocation.attempts,
                        )
                        .await;
                }
                DecideStep::Trigger => {
                    let report = report.expect("matched");
                    let decision = self.trigger(cp, &state, &request, &chain, &report).await?;
                    let settle = decide::after_trigger(decision);
                    if settle == Settle::FailAsTrigger {
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
                    settle
                }
                step => unreachable!("{step:?} for a replayed request that failed"),
            };
            match settle {
                Settle::Store => return Ok(Step::Stop { resume: offset }),
                Settle::CallAgain => {
                    state = ctx.table.get(cp);
                    let call = telemetry::TargetCall::start(&ctx.instance, &request);
                    invocation = invoke(&ctx.targets[service_index], service.retry, &request).await;
                    call.end_replay(&invocation, cp);
                }
                Settle::FailAsTrigger => unreachable!("handled above"),
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

    /// Writes the replay's progress, keeping at most its window of
    /// writes in flight.
    async fn send_progress(&mut self, progress: &mut Progress) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let payload = serde_json::to_vec(&progress.now).expect("plain struct");
        let topic = ctx.topology.replay_topic();
        progress.unwritten = 0;
        progress.written_at = std::time::Instant::now();
        if self.window.is_transactional() {
            // In the partition's transaction, with the outputs it covers.
            self.window
                .write_in_transaction(super::outputs::Output {
                    topic,
                    partition: Some(0),
                    key: Some(progress.key.as_bytes().to_vec()),
                    payload,
                    headers: Vec::new(),
                })
                .await?;
            ctx.table.apply_replay(&progress.key, progress.now)?;
            return Ok(());
        }
        loop {
            let record = FutureRecord::to(&topic)
                .key(&progress.key)
                .partition(0)
                .payload(&payload);
            match ctx.producer.send_result(record) {
                Ok(d) => {
                    progress.writes.push_back(d);
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => match progress.writes.pop_front() {
                    Some(d) => wait_progress(d).await?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Err((e, _)) => return Err(PipelineError::Kafka(e)),
            }
        }
        while progress.writes.len() > progress.window {
            let d = progress.writes.pop_front().expect("non-empty");
            wait_progress(d).await?;
        }
        ctx.table.apply_replay(&progress.key, progress.now)?;
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

async fn wait_progress(d: rdkafka::producer::DeliveryFuture) -> Result<(), PipelineError> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(PipelineError::Kafka(e)),
        Err(_) => Err(PipelineError::Kafka(KafkaError::Canceled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_writes_in_flight_cover_the_calls_in_flight() {
        for in_flight in [1, 2, 64, 128, 129, 1024, 10_000] {
            let window = progress_window(in_flight);
            assert!(window >= PROGRESS_WINDOW);
            assert!(window * PROGRESS_EVERY >= in_flight, "{in_flight}");
            assert!(
                (window - 1) * PROGRESS_EVERY < in_flight.max(PROGRESS_WINDOW * PROGRESS_EVERY)
            );
            assert_eq!(
                redelivery_bound(in_flight),
                (window + 1) * PROGRESS_EVERY + in_flight
            );
        }
    }
}
