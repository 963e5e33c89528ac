//! One source partition, processed in order (SPEC §6): decode and check,
//! then store, answer, or invoke; on a matching failure, trigger and wait
//! for the single decision.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::mpsc;

use super::decide::{self, Before, Called, Decision, Origin, Settle, Step};
use super::in_flight::Calls;
use super::outputs::{Output, OutputWindow};
use super::route::{header_value, request_id};
use super::uncommitted::Uncommitted;
use super::{Context, PipelineContext, PipelineError};
use crate::bindings::failure::chain_for;
use crate::bindings::{invoke, Invocation, Request, Response, Target};
use crate::control::{replay_key, Cause, CommandKind, ControlPoint, Mode, Trigger};
use crate::records::{
    AvroRecord, FailedEvent, FailureReason, Header, SourcePosition, StoredRequest,
};
use crate::rules::{ExceptionChain, MatchReport};
use crate::shutdown::Shutdown;
use crate::telemetry;
use crate::topology::{REPLY_TO_HEADER, REQUEST_ID_HEADER};
use tracing::Instrument as _;

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
pub(super) fn request_span(
    topic: &str,
    partition: i32,
    offset: i64,
    request: Option<&Request>,
) -> tracing::Span {
    let span = tracing::info_span!(
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
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<OwnedMessage>,
    ) -> Result<(), PipelineError> {
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
            for cp in self.control_points.clone() {
                if self.stop.is_fired() {
                    break;
                }
                if self.replay_due(&cp) {
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
                        self.uncommitted.take(m.offset());
                        let span = request_span(&self.topic, self.partition, m.offset(), None);
                        self.process(m).instrument(span).await?
                    }
                    None => break,
                },
            }
        }
        self.settle_calls().await?;
        self.window.drain().await?;
        Ok(())
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

    async fn process(&mut self, m: OwnedMessage) -> Result<(), PipelineError> {
        let offset = m.offset();
        let headers = owned_headers(&m);
        let request_id = request_id(&headers, &self.topic, self.partition, offset);
        tracing::Span::current().record("request_id", request_id.as_str());
        let key = m.key().map(<[u8]>::to_vec);
        let value = m.payload().map(<[u8]>::to_vec);
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
                let service = rejection.service.map(|i| &ctx.topology.services[i]);
                let (interface, operation) = rejection.operation.clone().unwrap_or_default();
                let cp = service
                    .and_then(|s| s.store_and_forward.as_ref())
                    .map(|sf| sf.control_point.as_str());
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
        let service = &ctx.topology.services[route.service];
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
        let Some(sf) = &service.store_and_forward else {
            return self.forward_plain(job).await;
        };
        let cp = sf.control_point.clone();
        let progress = ctx
            .table
            .replay_progress(&replay_key(&cp, &self.topic, self.partition));
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
            let service = &ctx.topology.services[job.service];
            let invocation = invoke(&ctx.targets[job.service], service.retry, request).await;
            call.end(&invocation, job.sync);
            match self.outcome(job, &cp, &state, invocation).await? {
                Flow::Done => return Ok(()),
                Flow::Retry(again) => job = *again,
            }
        }
    }

    /// A request while its control point stores: a sync one is answered
    /// with an error, the activation's trigger goes to the failed events,
    /// every other one is stored.
    async fn storing(
        &mut self,
        job: Job,
        cp: &str,
        state: &ControlPoint,
    ) -> Result<(), PipelineError> {
        let Job {
            offset,
            sync,
            request,
            source,
            ..
        } = job;
        let recorded = state
            .trigger
            .as_ref()
            .filter(|t| state.cause == Cause::Trigger && t.request_id == request.request_id);
        match decide::before_call(sync, state.is_storing(), recorded.is_some()) {
            Before::Invoke => unreachable!("`storing` is for a control point that stores"),
            Before::RefuseSync => {
                let reply = self.reply(
                    &request,
                    Err(format!(
                        "control point `{cp}` is storing: the service is unavailable"
                    )),
                );
                telemetry::SyncRequestRefused::new(&self.ctx.instance, &request).emit();
                return Ok(self.window.push(offset, reply).await?);
            }
            Before::Store => return self.store(offset, cp, state, request, source).await,
            Before::FailAsTrigger => {}
        }
        // This is the activation's trigger, read again after the instance
        // that sent it stopped before writing it: it goes to the failed
        // events, never to the stored topic.
        let t = recorded.expect("a recorded trigger");
        let event = self.failed_event(
            &request,
            Some(cp),
            FailureReason::StoreTrigger,
            format!(
                "this request's failure activated the store of `{cp}`: rule {}",
                t.rule
            ),
            source,
            t.chain.clone(),
            Some(t.rule.clone()),
            0,
        );
        let out = self.failed_output(&event);
        Ok(self.window.push(offset, Some(out)).await?)
    }

    /// What follows an invocation of a request whose control point was in
    /// `state` when it was invoked: the reply or nothing on success; on
    /// failure, the failed events, or a trigger and the writer's decision.
    pub(super) async fn outcome(
        &mut self,
        job: Job,
        cp: &str,
        state: &ControlPoint,
        invocation: Invocation,
    ) -> Result<Flow, PipelineError> {
        let ctx = self.ctx.clone();
        let origin = Origin::Live {
            sync: job.sync,
            control_point: true,
        };
        let (response, chain, report) = match invocation.result {
            Ok(response) => (Some(response), None, None),
            Err(f) => {
                let chain = chain_for(&f);
                let report = (!job.sync)
                    .then(|| ctx.rule_match(job.service, &job.request, &chain))
                    .flatten();
                (None, Some(chain), report)
            }
        };
        let called = match &response {
            Some(_) => Called::Answered,
            None => Called::Failed {
                matched: report.is_some(),
                overloaded: None,
            },
        };
        match decide::after_call(origin, called) {
            Step::Done => {
                let reply = match (job.sync, response) {
                    (true, Some(response)) => self.reply(&job.request, Ok(response)),
                    _ => None,
                };
                self.window.push(job.offset, reply).await?;
                Ok(Flow::Done)
            }
            Step::AnswerError => {
                let error = chain.unwrap_or_default().to_string();
                let reply = self.reply(&job.request, Err(error));
                self.window.push(job.offset, reply).await?;
                Ok(Flow::Done)
            }
            Step::Fail(reason) => {
                let event = self.failed_event(
                    &job.request,
                    Some(cp),
                    reason,
                    format!(
                        "invocation of {} failed and no rule matched",
                        ctx.targets[job.service].describe()
                    ),
                    job.source,
                    chain.unwrap_or_default(),
                    None,
                    invocation.attempts,
                );
                let out = self.failed_output(&event);
                self.window.push(job.offset, Some(out)).await?;
                Ok(Flow::Done)
            }
            Step::Trigger => {
                let (chain, report) = (chain.unwrap_or_default(), report.expect("matched"));
                let decision = self
                    .trigger(cp, state, &job.request, &chain, &report)
                    .await?;
                match decide::after_trigger(decision) {
                    Settle::FailAsTrigger => {
                        let event = self.failed_event(
                            &job.request,
                            Some(cp),
                            FailureReason::StoreTrigger,
                            format!(
                                "this request's failure activated the store of `{cp}`: {report}"
                            ),
                            job.source,
                            chain,
                            Some(report.rule.clone()),
                            invocation.attempts,
                        );
                        let out = self.failed_output(&event);
                        self.window.push(job.offset, Some(out)).await?;
                        Ok(Flow::Done)
                    }
                    Settle::Store => {
                        let now = ctx.table.get(cp);
                        self.store(job.offset, cp, &now, job.request, job.source)
                            .await?;
                        Ok(Flow::Done)
                    }
                    Settle::CallAgain => Ok(Flow::Retry(Box::new(job))),
                }
            }
            Step::BackOff(_) => unreachable!("live calls never back off"),
        }
    }

    /// Waits for the rate cap of `job`'s HTTP binding, if it has one.
    pub(super) async fn throttle(&mut self, job: &Job) {
        if let Target::Http(http) = &self.ctx.targets[job.service] {
            if let Some(rate) = http.rate() {
                let partitions = self.ctx.source_partitions[job.service];
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
        let service = &ctx.topology.services[job.service];
        let invocation = invoke(&ctx.targets[job.service], service.retry, &job.request).await;
        call.end(&invocation, job.sync);
        self.plain_outcome(job, invocation).await
    }

    /// What follows an invocation of a service without store and forward.
    pub(super) async fn plain_outcome(
        &mut self,
        job: Job,
        invocation: Invocation,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let request = &job.request;
        let origin = Origin::Live {
            sync: job.sync,
            control_point: false,
        };
        let called = match &invocation.result {
            Ok(_) => Called::Answered,
            Err(_) => Called::Failed {
                matched: false,
                overloaded: None,
            },
        };
        let step = decide::after_call(origin, called);
        let output = match (step, invocation.result) {
            (Step::Done, Ok(response)) if job.sync => self.reply(request, Ok(response)),
            (Step::AnswerError, Err(f)) => self.reply(request, Err(chain_for(&f).to_string())),
            (Step::Fail(reason), Err(f)) => {
                let event = self.failed_event(
                    request,
                    None,
                    reason,
                    format!(
                        "invocation of {} failed",
                        ctx.targets[job.service].describe()
                    ),
                    job.source.clone(),
                    chain_for(&f),
                    None,
                    invocation.attempts,
                );
                Some(self.failed_output(&event))
            }
            _ => None,
        };
        Ok(self.window.push(job.offset, output).await?)
    }

    /// Publishes a trigger and waits for the writer's decision.
    pub(super) async fn trigger(
        &mut self,
        cp: &str,
        observed: &ControlPoint,
        request: &Request,
        chain: &ExceptionChain,
        report: &MatchReport,
    ) -> Result<Decision, PipelineError> {
        let ctx = self.ctx.clone();
        if ctx.table.get(cp).epoch > observed.epoch {
            // The state changed while the call was out (another request's
            // trigger won, or an operator acted): a trigger from the older
            // state would be refused as stale.
            return Ok(decision(&ctx, cp, request));
        }
        let command = ctx.publisher.command(
            CommandKind::Trigger(Trigger {
                request_id: request.request_id.clone(),
                service: request.service.clone(),
                interface: request.interface.clone(),
                operation: request.operation.clone(),
                chain: chain.clone(),
                rule: report.rule.clone(),
                instance: ctx.instance.clone(),
            }),
            observed.epoch,
        );
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = ctx.publisher.publish(cp, &command).await {
            tracing::warn!(control_point = cp, error = %e, "cannot publish a trigger; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait() => return Err(PipelineError::Stopped),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::info!(control_point = cp, request_id = %request.request_id, epoch = observed.epoch, %report, "trigger sent");
        let mut changes = ctx.table.subscribe();
        let started = std::time::Instant::now();
        loop {
            if ctx.table.get(cp).epoch > observed.epoch {
                return Ok(decision(&ctx, cp, request));
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = self.stop.wait() => return Err(PipelineError::Stopped),
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    tracing::warn!(control_point = cp, waited_s = started.elapsed().as_secs(), "still waiting for the control writer's decision on a trigger");
                }
            }
        }
    }

    async fn store(
        &mut self,
        offset: i64,
        cp: &str,
        state: &ControlPoint,
        request: Request,
        source: SourcePosition,
    ) -> Result<(), PipelineError> {
        telemetry::RequestStored::new(&self.ctx.instance, &request, cp).emit();
        let output = self.stored_output(cp, state, request, source);
        self.needs_replay.insert(cp.to_string());
        Ok(self.window.push(offset, Some(output)).await?)
    }

    fn stored_output(
        &self,
        cp: &str,
        state: &ControlPoint,
        request: Request,
        source: SourcePosition,
    ) -> Output {
        let ctx = &self.ctx;
        let record = StoredRequest {
            request_id: request.request_id.clone(),
            control_point: cp.to_string(),
            service: request.service,
            interface: request.interface,
            operation: request.operation,
            source,
            key: request.key.clone(),
            value: request.value,
            headers: request
                .headers
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect(),
            stored_at: crate::clock::now_ms(),
            epoch: state.epoch as i64,
            trigger: state
                .trigger
                .as_ref()
                .map(crate::control::trigger_to_record),
            instance: ctx.instance.clone(),
        };
        let partitions = ctx.stored_partitions.get(cp).copied().unwrap_or(1).max(1);
        Output {
            topic: ctx.topology.stored_topic(cp),
            partition: Some(self.partition % partitions),
            key: request.key,
            payload: record.encode().expect("a stored request always encodes"),
            headers: vec![(
                REQUEST_ID_HEADER.to_string(),
                Some(request.request_id.into_bytes()),
            )],
        }
    }

    /// The failed-events record of `request`. `cp` is its control point, if
    /// it got as far as having one; a request refused as bad input has an
    /// empty service.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn failed_event(
        &self,
        request: &Request,
        cp: Option<&str>,
        reason: FailureReason,
        detail: String,
        source: SourcePosition,
        chain: ExceptionChain,
        rule: Option<String>,
        attempts: u32,
    ) -> FailedEvent {
        // Bad input may come with a service but no operation, or neither.
        let known = |s: &String| (!s.is_empty()).then(|| s.clone());
        FailedEvent {
            request_id: request.request_id.clone(),
            reason,
            detail,
            control_point: cp.map(str::to_string),
            service: known(&request.service),
            interface: known(&request.interface),
            operation: known(&request.operation),
            source,
            key: request.key.clone(),
            value: request.value.clone(),
            headers: request
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            chain,
            rule,
            instance: self.ctx.instance.clone(),
            failed_at: crate::clock::now_ms(),
            attempts: attempts as i32,
            epoch: cp.map(|cp| self.ctx.table.get(cp).epoch as i64),
        }
    }

    /// The failed-events record, keyed by request id so that copies written
    /// twice collapse.
    pub(super) fn failed_output(&self, event: &FailedEvent) -> Output {
        telemetry::RequestFailed::new(&self.ctx.instance, event).emit();
        self.failed_record(event)
    }

    /// The failed-events record of `event`, without counting it.
    fn failed_record(&self, event: &FailedEvent) -> Output {
        Output {
            topic: self.ctx.topology.failed_topic(),
            partition: None,
            key: Some(event.request_id.clone().into_bytes()),
            payload: event.encode().expect("a failed event always encodes"),
            headers: vec![
                (
                    REQUEST_ID_HEADER.to_string(),
                    Some(event.request_id.clone().into_bytes()),
                ),
                (
                    "sfwd-reason".to_string(),
                    Some(event.reason.as_str().as_bytes().to_vec()),
                ),
            ],
        }
    }

    /// The answer to a sync request, on the topic its header names.
    fn reply(&self, request: &Request, result: Result<Response, String>) -> Option<Output> {
        let topic = header_value(&request.headers, REPLY_TO_HEADER)
            .and_then(|t| std::str::from_utf8(t).ok())?
            .to_string();
        let (status, payload) = match result {
            Ok(r) => ("ok", r.body),
            Err(message) => (
                "error",
                serde_json::to_vec(
                    &serde_json::json!({ "request_id": request.request_id, "error": message }),
                )
                .expect("json"),
            ),
        };
        Some(Output {
            topic,
            partition: None,
            key: request.key.clone(),
            payload,
            headers: vec![
                (
                    REQUEST_ID_HEADER.to_string(),
                    Some(request.request_id.clone().into_bytes()),
                ),
                ("sfwd-status".to_string(), Some(status.as_bytes().to_vec())),
            ],
        })
    }
}

impl Context {
    /// The first rule of service `service`'s control point that matches a
    /// failure of `request` with `chain`.
    pub(super) fn rule_match(
        &self,
        service: usize,
        request: &Request,
        chain: &ExceptionChain,
    ) -> Option<MatchReport> {
        let sf = self.topology.services[service]
            .store_and_forward
            .as_ref()
            .expect("a service with a control point");
        sf.rules.first_match(
            &self.topology.types,
            &request.interface,
            &request.operation,
            chain,
        )
    }
}

/// What the current state of `cp` means for `request`, whose trigger (if
/// it sent one) was published from an older state.
fn decision(ctx: &Context, cp: &str, request: &Request) -> Decision {
    let now = ctx.table.get(cp);
    let designated = now
        .trigger
        .as_ref()
        .is_some_and(|t| t.request_id == request.request_id && t.instance == ctx.instance);
    if designated {
        Decision::Designated
    } else if now.mode == Mode::Store {
        Decision::Store
    } else {
        Decision::Retry
    }
}

/// The record's headers as owned pairs, in order, duplicates kept.
pub(super) fn owned_headers(m: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}
