//! One source partition, processed in order (SPEC §6): take its records,
//! decode and check each, then store it or call its target; `steps`
//! carries out what follows a call, `writes` makes the stored copies,
//! failed events and replies, `in_flight` keeps calls out, `replay` drains
//! the backlog.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::consumer::PipelineContext;
use super::in_flight::Calls;
use super::outputs::OutputWindow;
use super::record::{Inbox, Record};
use super::route::request_id;
use super::uncommitted::Uncommitted;
use super::{Context, PipelineError};
use crate::bindings::{invoke, Request, Target};
use crate::control::{replay_key, Mode};
use crate::records::SourcePosition;
use crate::rules::ExceptionChain;
use crate::shutdown::Shutdown;
use crate::telemetry;
use tracing::Instrument as _;

/// Records a worker takes from its queue in one turn of its loop.
const BATCH: usize = 64;

/// A live request on its way through a partition.
pub(super) struct Job {
    /// Its source offset.
    pub(super) offset: i64,
    /// Index of its service in the topology.
    pub(super) service: usize,
    /// Whether its operation is sync (answered on a reply topic).
    pub(super) sync: bool,
    pub(super) request: Request,
    pub(super) source: SourcePosition,
}

impl Job {
    /// Whether its target takes it without waiting for the outcome: an
    /// async request to a binding with `in_flight` above 1 (a Kafka
    /// binding, or an HTTP binding with `ordering: key`).
    pub(super) fn sends_without_waiting(&self, ctx: &Context) -> bool {
        !self.sync && ctx.targets[self.service].in_flight() > 1
    }
}

/// The span of one live request: its source position, and, once known,
/// its id, service and the outcome of its call (`ok`, `error`).
///
/// At DEBUG level under the target `sfwd::request`, so that it costs
/// nothing unless asked for (`RUST_LOG=info,sfwd::request=debug`): a span
/// the JSON log format keeps costs its fields' formatting with every
/// request: as much as the rest of a Kafka pass-through's own work.
pub(super) fn request_span(
    topic: &str,
    partition: i32,
    offset: i64,
    request: Option<&Request>,
) -> tracing::Span {
    let span = tracing::debug_span!(
        target: "sfwd::request",
        parent: None,
        "request",
        topic = %topic,
        partition,
        offset,
        request_id = tracing::field::Empty,
        service = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(r) = request {
        span.record("request_id", r.request_id.as_str());
        span.record("service", r.service.as_str());
    }
    span
}

/// Where a request stands after its outcome was handled.
pub(super) enum Flow {
    Done,
    /// The control point is forwarding again: invoke once more.
    Retry(Box<Job>),
}

pub(super) struct Worker {
    pub(super) ctx: Arc<Context>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) window: OutputWindow<PipelineContext>,
    /// Control points of the services that read this topic.
    pub(super) control_points: Vec<String>,
    /// The key of this partition's replay progress, per control point.
    pub(super) replay_keys: HashMap<String, String>,
    /// Control points for which this partition may have stored requests
    /// not yet replayed.
    pub(super) needs_replay: HashSet<String>,
    /// Per control point, source offsets of stored requests that reached
    /// the target during a replay that stopped at an earlier one: the next
    /// replay skips them.
    pub(super) delivered_ahead: HashMap<String, BTreeSet<i64>>,
    /// Kafka target calls sent and not yet settled, oldest first.
    pub(super) calls: Calls,
    /// Records taken past the last successful offset commit, held to the
    /// redelivery bound.
    pub(super) uncommitted: Uncommitted,
    /// The rate caps of the HTTP bindings this partition calls.
    pub(super) throttles: super::throttle::Throttles,
    pub(super) stop: Shutdown,
}

impl Worker {
    pub(super) async fn run(mut self, mut rx: Inbox) -> Result<(), PipelineError> {
        // Start from the latest replay progress any previous owner wrote.
        self.ctx.wait_replay_table().await?;
        if let Some(config) = &self.ctx.exactly_once {
            let mut config = config.clone();
            config.set(
                "transactional.id",
                format!(
                    "{}.{}.{}",
                    self.ctx.topology.application, self.topic, self.partition
                ),
            );
            let window = &mut self.window;
            config
                .create()
                .and_then(|producer| window.make_transactional(producer))
                .map_err(|source| PipelineError::Transactions {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    source,
                })?;
        }
        let mut changes = self.ctx.table.subscribe();
        loop {
            for i in 0..self.control_points.len() {
                if self.stop.is_fired() {
                    break;
                }
                if self.replay_due(&self.control_points[i]) {
                    let cp = self.control_points[i].clone();
                    // Live requests sent before the replay are settled
                    // first, and every stored copy is acknowledged, so that
                    // the replay sees the whole backlog.
                    self.settle_calls().await?;
                    self.window.drain().await?;
                    self.replay(&cp).await?;
                }
            }
            // Past the redelivery bound, no record is taken until a commit
            // covers the work: what is in hand still settles meanwhile.
            let held = self.uncommitted.holds();
            let uncommitted = held || self.uncommitted.has_work();
            tokio::select! {
                biased;
                _ = self.stop.wait() => break,
                _ = changes.changed() => {}
                _ = self.calls.oldest_ready(), if !self.calls.is_empty() => self.settle_oldest().await?,
                settled = self.window.settle(), if self.window.has_pending() => settled?,
                _ = self.uncommitted.changed(held), if uncommitted => {}
                message = rx.recv(), if !held => match message {
                    Some(m) => {
                        self.take(m).await?;
                        // Records already queued are taken in the same turn,
                        // up to a batch, for as long as nothing the select
                        // looks at first has happened: a stop, a control
                        // change (a replay may be due), the bound.
                        for _ in 1..BATCH {
                            if self.stop.is_fired()
                                || changes.has_changed().unwrap_or(true)
                                || (!self.uncommitted.well_under() && self.uncommitted.holds())
                            {
                                break;
                            }
                            let Some(m) = rx.try_recv() else { break };
                            self.take(m).await?;
                        }
                    }
                    None => break,
                },
            }
        }
        self.settle_calls().await?;
        self.window.drain().await?;
        Ok(())
    }

    /// Takes the next record of the partition and carries it through.
    async fn take(&mut self, m: Record) -> Result<(), PipelineError> {
        self.uncommitted.take(m.offset);
        let span = request_span(&self.topic, self.partition, m.offset, None);
        self.process(m).instrument(span).await
    }

    fn replay_due(&self, cp: &str) -> bool {
        let state = self.ctx.table.get(cp);
        if state.mode != Mode::Forward {
            return false;
        }
        if self.needs_replay.contains(cp) {
            return true;
        }
        state.replaying
            && !self
                .ctx
                .table
                .replay_finished(&state, &self.topic, self.partition)
    }

    async fn process(&mut self, m: Record) -> Result<(), PipelineError> {
        let Record {
            offset,
            key,
            value,
            headers,
        } = m;
        let request_id = request_id(&headers, &self.topic, self.partition, offset);
        tracing::Span::current().record("request_id", request_id.as_str());
        let source = SourcePosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
        };
        let ctx = self.ctx.clone();
        let route = match ctx
            .routes
            .route(&self.topic, key.as_deref(), value.as_deref(), &headers)
        {
            Ok(r) => r,
            Err(rejection) => {
                // Whatever the topic or the operation header tells of where
                // the record was going, so that the failed event can be
                // found by service, operation and control point.
                let service = rejection.service.map(|i| ctx.plan.service(i));
                let (interface, operation) = rejection.operation.clone().unwrap_or_default();
                let cp = service.and_then(|s| s.control_point.as_deref());
                tracing::info!(topic = %self.topic, partition = self.partition, offset, reason = rejection.reason.as_str(), detail = %rejection.detail, service = service.map_or("", |s| s.name.as_str()), operation = %operation, "bad input sent to the failed events");
                let request = Request {
                    request_id,
                    service: service.map(|s| s.name.clone()).unwrap_or_default(),
                    interface,
                    operation,
                    key,
                    value,
                    headers,
                };
                let event = self.failed_event(
                    &request,
                    cp,
                    rejection.reason,
                    rejection.detail,
                    source,
                    ExceptionChain::default(),
                    None,
                    0,
                );
                telemetry::RequestFailed::rejected(&self.ctx.instance, &event).emit();
                let out = self.failed_record(&event);
                self.settle_calls().await?;
                return Ok(self.window.push(offset, Some(out)).await?);
            }
        };
        let service = ctx.plan.service(route.service);
        tracing::Span::current().record("service", service.name.as_str());
        let job = Job {
            offset,
            service: route.service,
            sync: route.sync,
            request: Request {
                request_id,
                service: service.name.clone(),
                interface: route.interface.clone(),
                operation: route.operation.clone(),
                key,
                value,
                headers,
            },
            source,
        };
        let Some(cp) = service.control_point.clone() else {
            return self.forward_plain(job).await;
        };
        if !self.replay_keys.contains_key(&cp) {
            let key = replay_key(&cp, &self.topic, self.partition);
            self.replay_keys.insert(cp.clone(), key);
        }
        let progress = ctx.table.replay_progress(&self.replay_keys[&cp]);
        if offset <= progress.max_source_offset {
            // Already delivered (or failed) from the stored topic.
            self.settle_calls().await?;
            return Ok(self.window.push(offset, None).await?);
        }
        self.forward(job, cp, true).await
    }

    /// A request of a service with store and forward: stored while its
    /// control point stores, otherwise invoked. With `may_send`, a request
    /// the binding takes without waiting (a Kafka produce) is only sent,
    /// and settled later in source order; without it (settling a call
    /// already sent), nothing else in flight is touched.
    pub(super) async fn forward(
        &mut self,
        job: Job,
        cp: String,
        may_send: bool,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let mut job = job;
        loop {
            let state = ctx.table.get(&cp);
            if may_send && !job.sends_without_waiting(&ctx) {
                // Whatever was sent before goes first; it may change the state.
                if self.settle_calls().await? {
                    continue;
                }
            }
            if state.is_storing() {
                if may_send && self.settle_calls().await? {
                    continue;
                }
                return self.storing(job, &cp, &state).await;
            }
            if may_send && job.sends_without_waiting(&ctx) {
                return self.send(job, Some((cp, state))).await;
            }
            self.throttle(&job).await;
            let request = &job.request;
            let call = telemetry::TargetCall::start(&ctx.instance, request);
            let retry = ctx.plan.service(job.service).retry;
            let invocation = invoke(&ctx.targets[job.service], retry, request).await;
            call.end(&invocation, job.sync);
            match self.outcome(job, &cp, &state, invocation).await? {
                Flow::Done => return Ok(()),
                Flow::Retry(again) => job = *again,
            }
        }
    }

    /// Waits for the rate cap of `job`'s HTTP binding, if it has one.
    pub(super) async fn throttle(&mut self, job: &Job) {
        if let Target::Http(http) = &self.ctx.targets[job.service] {
            if let Some(rate) = http.rate() {
                let partitions = self.ctx.plan.service(job.service).source_partitions;
                self.throttles.wait(job.service, rate, partitions).await;
            }
        }
    }

    /// A service without store and forward: invoke; failures go to the
    /// failed events.
    async fn forward_plain(&mut self, job: Job) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        if job.sends_without_waiting(&ctx) {
            return self.send(job, None).await;
        }
        self.settle_calls().await?;
        self.throttle(&job).await;
        let call = telemetry::TargetCall::start(&ctx.instance, &job.request);
        let retry = ctx.plan.service(job.service).retry;
        let invocation = invoke(&ctx.targets[job.service], retry, &job.request).await;
        call.end(&invocation, job.sync);
        self.plain_outcome(job, invocation).await
    }
}
