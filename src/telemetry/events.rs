//! Internal events: one struct each, whose `emit()` logs and counts.
//!
//! Per-request events log at `trace` (the data path already logs what an
//! operator needs at `info`); the counters are the aggregate view.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Histogram};

use super::handles::Handles;
use super::names;
use crate::bindings::{Invocation, Request};
use crate::control::{Command, ControlPoint, Mode, Outcome};
use crate::records::FailedEvent;

/// The `outcome` label of [`names::REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// An async request the target accepted.
    Delivered,
    /// Written to the stored topic.
    Stored,
    /// Written to the failed-events topic after an invocation (or replay).
    Failed,
    /// A stored request the target accepted during a replay.
    Replayed,
    /// A sync request answered (with the target's answer or an error).
    AnsweredSync,
    /// Bad input, written to the failed-events topic before any invocation.
    /// (Last: `RequestOutcome::COUNT` counts up to it.)
    Rejected,
}

impl RequestOutcome {
    /// How many outcomes there are: each indexes an array of this length.
    const COUNT: usize = RequestOutcome::Rejected as usize + 1;

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Delivered => "delivered",
            RequestOutcome::Stored => "stored",
            RequestOutcome::Failed => "failed",
            RequestOutcome::Replayed => "replayed",
            RequestOutcome::AnsweredSync => "answered_sync",
            RequestOutcome::Rejected => "rejected",
        }
    }
}

/// [`names::REQUESTS_TOTAL`] by instance, service and operation, each
/// outcome's registered when first counted.
static REQUESTS: Handles<Arc<[OnceLock<Counter>; RequestOutcome::COUNT]>> = Handles::new();
/// [`names::TARGET_CALL_SECONDS`] by instance, service and outcome.
static TARGET_CALLS: Handles<Histogram> = Handles::new();
/// [`names::STORED_TOTAL`] and [`names::REPLAYED_TOTAL`] by instance and
/// control point.
static STORED: Handles<Counter> = Handles::new();
static REPLAYED: Handles<Counter> = Handles::new();

fn count_request(instance: &str, service: &str, operation: &str, outcome: RequestOutcome) {
    let by_outcome = REQUESTS.get(instance, service, operation, Arc::default);
    by_outcome[outcome as usize]
        .get_or_init(|| {
            counter!(
                names::REQUESTS_TOTAL,
                "instance_id" => instance.to_string(),
                "service" => service.to_string(),
                "operation" => operation.to_string(),
                "outcome" => outcome.as_str(),
            )
        })
        .increment(1);
}

/// The counter of `handles` for `instance` and `control_point`.
fn control_point_counter(
    handles: &Handles<Counter>,
    name: &'static str,
    instance: &str,
    control_point: &str,
) -> Counter {
    handles.get(instance, control_point, "", || {
        counter!(
            name,
            "instance_id" => instance.to_string(),
            "control_point" => control_point.to_string(),
        )
    })
}

/// A target invocation under way, from just before it starts: [`end`]
/// (or [`end_replay`]) emits how it went.
///
/// [`end`]: TargetCall::end
/// [`end_replay`]: TargetCall::end_replay
#[derive(Debug)]
pub struct TargetCall<'a> {
    instance: &'a str,
    request: &'a Request,
    started: Instant,
}

impl<'a> TargetCall<'a> {
    /// Starts timing an invocation of `request`.
    pub fn start(instance: &'a str, request: &'a Request) -> Self {
        TargetCall {
            instance,
            request,
            started: Instant::now(),
        }
    }

    /// Times an invocation of `request` that started at `started` (a
    /// request sent without waiting for its outcome).
    pub fn since(instance: &'a str, request: &'a Request, started: Instant) -> Self {
        TargetCall {
            instance,
            request,
            started,
        }
    }

    /// The invocation of a live request ended.
    pub fn end(self, invocation: &Invocation, sync: bool) {
        let outcome = if invocation.result.is_ok() {
            "ok"
        } else {
            "error"
        };
        tracing::Span::current().record("outcome", outcome);
        RequestInvoked {
            instance: self.instance,
            request: self.request,
            ok: invocation.result.is_ok(),
            sync,
            elapsed: self.started.elapsed(),
        }
        .emit();
    }

    /// The invocation of a stored request, replayed for `control_point`,
    /// ended.
    pub fn end_replay(self, invocation: &Invocation, control_point: &str) {
        let ok = invocation.result.is_ok();
        TargetCalled {
            instance: self.instance,
            service: &self.request.service,
            ok,
            elapsed: self.started.elapsed(),
        }
        .emit();
        if ok {
            RequestReplayed {
                instance: self.instance,
                request: self.request,
                control_point,
            }
            .emit();
        }
    }
}

/// The target was invoked for a live request. The target accepting it is
/// its outcome (`delivered`, or `answered_sync` for a sync request), and
/// so is a sync request's failure (answered with an error); an async
/// failure's outcome comes after (failed, stored, or a trigger).
#[derive(Debug)]
pub struct RequestInvoked<'a> {
    /// The instance that invoked the target.
    pub instance: &'a str,
    /// The request.
    pub request: &'a Request,
    /// The target accepted it.
    pub ok: bool,
    /// A sync request, answered on its reply topic.
    pub sync: bool,
    /// How long the invocation took, retries included.
    pub elapsed: Duration,
}

impl RequestInvoked<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let r = self.request;
        TargetCalled {
            instance: self.instance,
            service: &r.service,
            ok: self.ok,
            elapsed: self.elapsed,
        }
        .emit();
        let outcome = match (self.ok, self.sync) {
            (true, false) => RequestOutcome::Delivered,
            (_, true) => RequestOutcome::AnsweredSync,
            (false, false) => return,
        };
        tracing::trace!(request_id = %r.request_id, service = %r.service, operation = %r.operation, outcome = outcome.as_str(), "request answered by the target");
        count_request(self.instance, &r.service, &r.operation, outcome);
    }
}

/// A sync request was answered with an error without invoking the target:
/// its control point is storing.
#[derive(Debug)]
pub struct SyncRequestRefused<'a> {
    /// The instance that answered.
    pub instance: &'a str,
    /// The request.
    pub request: &'a Request,
}

impl<'a> SyncRequestRefused<'a> {
    /// The event for `request`.
    pub fn new(instance: &'a str, request: &'a Request) -> Self {
        SyncRequestRefused { instance, request }
    }

    /// Logs and counts it.
    pub fn emit(self) {
        let r = self.request;
        tracing::trace!(request_id = %r.request_id, service = %r.service, operation = %r.operation, "sync request answered with an error");
        count_request(
            self.instance,
            &r.service,
            &r.operation,
            RequestOutcome::AnsweredSync,
        );
    }
}

/// A request was written to its control point's stored topic.
#[derive(Debug)]
pub struct RequestStored<'a> {
    /// The instance that stored it.
    pub instance: &'a str,
    /// The request.
    pub request: &'a Request,
    /// Its control point.
    pub control_point: &'a str,
}

impl<'a> RequestStored<'a> {
    /// The event for `request`.
    pub fn new(instance: &'a str, request: &'a Request, control_point: &'a str) -> Self {
        RequestStored {
            instance,
            request,
            control_point,
        }
    }

    /// Logs and counts it.
    pub fn emit(self) {
        let r = self.request;
        tracing::trace!(request_id = %r.request_id, control_point = %self.control_point, "request stored");
        count_request(
            self.instance,
            &r.service,
            &r.operation,
            RequestOutcome::Stored,
        );
        control_point_counter(
            &STORED,
            names::STORED_TOTAL,
            self.instance,
            self.control_point,
        )
        .increment(1);
    }
}

/// A stored request was delivered by a replay.
#[derive(Debug)]
pub struct RequestReplayed<'a> {
    /// The instance that replayed it.
    pub instance: &'a str,
    /// The request.
    pub request: &'a Request,
    /// Its control point.
    pub control_point: &'a str,
}

impl RequestReplayed<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let r = self.request;
        tracing::trace!(request_id = %r.request_id, control_point = %self.control_point, "stored request replayed");
        count_request(
            self.instance,
            &r.service,
            &r.operation,
            RequestOutcome::Replayed,
        );
        control_point_counter(
            &REPLAYED,
            names::REPLAYED_TOTAL,
            self.instance,
            self.control_point,
        )
        .increment(1);
    }
}

/// A replayed request met an overloaded target (a 429, or a 503 with
/// `Retry-After`): the replay waits as told, then sends it again.
#[derive(Debug)]
pub struct ReplayBackOff<'a> {
    pub instance: &'a str,
    pub control_point: &'a str,
    pub request_id: &'a str,
    /// How long the replay waits.
    pub wait: Duration,
    /// The answer that asked for it.
    pub failure: &'a crate::bindings::failure::Failure,
}

impl ReplayBackOff<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let status = match self.failure {
            crate::bindings::failure::Failure::HttpStatus { status, .. } => *status,
            _ => 0,
        };
        tracing::info!(
            control_point = %self.control_point,
            request_id = %self.request_id,
            status,
            wait_ms = self.wait.as_millis() as u64,
            "target overloaded during the replay: waiting as it asks, then sending again"
        );
        counter!(
            names::REPLAY_BACK_OFFS_TOTAL,
            "instance_id" => self.instance.to_string(),
            "control_point" => self.control_point.to_string(),
        )
        .increment(1);
    }
}

/// A request is on its way to the failed-events topic: bad input, refused
/// before any invocation, counts as `rejected`, everything else as
/// `failed`.
#[derive(Debug)]
pub struct RequestFailed<'a> {
    /// The instance that wrote it.
    pub instance: &'a str,
    /// The failed event.
    pub event: &'a FailedEvent,
    /// `Failed` or `Rejected`.
    pub outcome: RequestOutcome,
}

impl<'a> RequestFailed<'a> {
    /// The event for `event`, a request that failed after it was taken.
    pub fn new(instance: &'a str, event: &'a FailedEvent) -> Self {
        RequestFailed {
            instance,
            event,
            outcome: RequestOutcome::Failed,
        }
    }

    /// The event for `event`, bad input refused before any invocation.
    pub fn rejected(instance: &'a str, event: &'a FailedEvent) -> Self {
        RequestFailed {
            instance,
            event,
            outcome: RequestOutcome::Rejected,
        }
    }

    /// Logs and counts it.
    pub fn emit(self) {
        let e = self.event;
        let service = e.service.as_deref().unwrap_or("");
        let operation = e.operation.as_deref().unwrap_or("");
        tracing::debug!(request_id = %e.request_id, service, operation, reason = e.reason.as_str(), "request sent to the failed events");
        count_request(self.instance, service, operation, self.outcome);
        counter!(
            names::FAILED_TOTAL,
            "instance_id" => self.instance.to_string(),
            "service" => service.to_string(),
            "reason" => e.reason.as_str(),
        )
        .increment(1);
    }
}

/// A target invocation ended (after its retries).
#[derive(Debug)]
pub struct TargetCalled<'a> {
    /// The instance that called.
    pub instance: &'a str,
    /// The service called.
    pub service: &'a str,
    /// The last attempt succeeded.
    pub ok: bool,
    /// How long the invocation took, retries and backoff included.
    pub elapsed: Duration,
}

impl TargetCalled<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        let outcome = if self.ok { "ok" } else { "error" };
        tracing::trace!(service = %self.service, outcome, elapsed_ms = self.elapsed.as_millis() as u64, "target called");
        TARGET_CALLS
            .get(self.instance, self.service, outcome, || {
                histogram!(
                    names::TARGET_CALL_SECONDS,
                    "instance_id" => self.instance.to_string(),
                    "service" => self.service.to_string(),
                    "outcome" => outcome,
                )
            })
            .record(self.elapsed.as_secs_f64());
    }
}

/// This instance's control writer decided on a command.
#[derive(Debug)]
pub struct CommandDecided<'a> {
    /// The instance whose writer decided.
    pub instance: &'a str,
    /// The control point.
    pub control_point: &'a str,
    /// The command.
    pub command: &'a Command,
    /// What applying it did.
    pub outcome: &'a Outcome,
}

impl<'a> CommandDecided<'a> {
    /// The event for `command` on `control_point`.
    pub fn new(
        instance: &'a str,
        control_point: &'a str,
        command: &'a Command,
        outcome: &'a Outcome,
    ) -> Self {
        CommandDecided {
            instance,
            control_point,
            command,
            outcome,
        }
    }

    /// Logs and counts it.
    pub fn emit(self) {
        let outcome = match self.outcome {
            Outcome::Applied { .. } => "applied",
            Outcome::NoOp(_) => "no-op",
            Outcome::Refused(_) => "refused",
        };
        tracing::trace!(control_point = %self.control_point, command = self.command.kind.name(), by = %self.command.by, outcome, "control command decided");
        counter!(
            names::CONTROL_COMMANDS_TOTAL,
            "instance_id" => self.instance.to_string(),
            "control_point" => self.control_point.to_string(),
            "command" => self.command.kind.name(),
            "outcome" => outcome,
        )
        .increment(1);
    }
}

/// The value of [`names::CONTROL_POINT_STATE`] for a state.
pub fn state_value(state: &ControlPoint) -> f64 {
    match (state.mode, state.replaying) {
        (Mode::Forward, false) => 0.0,
        (Mode::Store, _) => 1.0,
        (Mode::Forward, true) => 2.0,
    }
}

/// The `state` label for a state: `forward`, `store` or `replaying`.
pub fn state_label(state: &ControlPoint) -> &'static str {
    match (state.mode, state.replaying) {
        (Mode::Forward, false) => "forward",
        (Mode::Store, _) => "store",
        (Mode::Forward, true) => "replaying",
    }
}

/// This instance's control table holds a control point's state (set again
/// periodically, so the gauges stay while nothing changes).
#[derive(Debug)]
pub struct ControlStateHeld<'a> {
    /// The instance.
    pub instance: &'a str,
    /// The state held.
    pub state: &'a ControlPoint,
}

impl ControlStateHeld<'_> {
    /// Sets the state and epoch gauges.
    pub fn emit(self) {
        let labels = [
            ("instance_id", self.instance.to_string()),
            ("control_point", self.state.name.clone()),
        ];
        gauge!(names::CONTROL_POINT_STATE, &labels).set(state_value(self.state));
        gauge!(names::CONTROL_POINT_EPOCH, &labels).set(self.state.epoch as f64);
    }
}

/// This instance's control table applied a new state of a control point
/// while running; from now on its partitions act on it.
#[derive(Debug)]
pub struct ControlStateChanged<'a> {
    /// The instance.
    pub instance: &'a str,
    /// The new state.
    pub state: &'a ControlPoint,
    /// Milliseconds since the Unix epoch, now.
    pub now_ms: i64,
}

impl ControlStateChanged<'_> {
    /// How long after the change this instance applied it (0 when the
    /// clocks disagree the other way).
    pub fn delay(&self) -> Duration {
        Duration::from_millis((self.now_ms - self.state.since_ms).max(0) as u64)
    }

    /// Logs it, sets the gauges and records the delay.
    pub fn emit(self) {
        let delay = self.delay();
        let s = self.state;
        tracing::debug!(control_point = %s.name, mode = %s.mode, replaying = s.replaying, epoch = s.epoch, cause = %s.cause, by = %s.by, delay_ms = delay.as_millis() as u64, "control state change applied");
        histogram!(
            names::STATE_CHANGE_TO_ACT_SECONDS,
            "instance_id" => self.instance.to_string(),
            "control_point" => s.name.clone(),
            "state" => state_label(s),
        )
        .record(delay.as_secs_f64());
        ControlStateHeld {
            instance: self.instance,
            state: s,
        }
        .emit();
    }
}

/// Whether the instance has loaded the control state.
#[derive(Debug)]
pub struct InstanceReady<'a> {
    /// The instance.
    pub instance: &'a str,
    /// Loaded.
    pub ready: bool,
}

impl InstanceReady<'_> {
    /// Sets the ready gauge.
    pub fn emit(self) {
        gauge!(names::INSTANCE_READY, "instance_id" => self.instance.to_string())
            .set(if self.ready { 1.0 } else { 0.0 });
    }
}

/// librdkafka's periodic statistics of the request consumer. The client id
/// of sfwd's consumers is the instance id.
#[derive(Debug)]
pub struct ConsumerStatistics<'a> {
    /// The statistics.
    pub statistics: &'a rdkafka::Statistics,
}

impl<'a> ConsumerStatistics<'a> {
    /// The event for `statistics`.
    pub fn new(statistics: &'a rdkafka::Statistics) -> Self {
        ConsumerStatistics { statistics }
    }

    /// Sets the lag of every partition the consumer fetches, and the number
    /// of brokers it is connected to.
    pub fn emit(self) {
        let s = self.statistics;
        let instance = s.client_id.clone();
        // Bootstrap entries have no node id; count each broker once.
        let up = s
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count();
        gauge!(names::KAFKA_BROKERS_UP, "instance_id" => instance.clone()).set(up as f64);
        for (topic, t) in &s.topics {
            for (id, p) in &t.partitions {
                // -1 is librdkafka's internal partition, and a lag of -1 a
                // partition this consumer does not fetch.
                if *id < 0 || p.consumer_lag < 0 {
                    continue;
                }
                gauge!(
                    names::KAFKA_CONSUMER_LAG,
                    "instance_id" => instance.clone(),
                    "topic" => topic.clone(),
                    "partition" => id.to_string(),
                )
                .set(p.consumer_lag as f64);
            }
        }
        tracing::trace!(instance = %instance, brokers_up = up, "consumer statistics");
    }
}

/// Cheap health numbers of the local store.
#[derive(Debug)]
pub struct StoreHealth<'a> {
    /// The instance.
    pub instance: &'a str,
    /// Background errors since the store was opened.
    pub background_errors: Option<u64>,
    /// Background errors at the last look.
    pub errors_before: u64,
    /// Estimated live data, bytes.
    pub live_bytes: Option<u64>,
}

impl StoreHealth<'_> {
    /// Sets the store gauges; new background errors are logged as an
    /// error, since someone must look at the disk.
    pub fn emit(self) {
        let instance = self.instance.to_string();
        if let Some(n) = self.background_errors {
            if n > self.errors_before {
                tracing::error!(background_errors = n, "the local store reports background errors: check the disk of the data directory");
            }
            gauge!(names::STORE_BACKGROUND_ERRORS, "instance_id" => instance.clone()).set(n as f64);
        }
        if let Some(n) = self.live_bytes {
            gauge!(names::STORE_LIVE_BYTES, "instance_id" => instance).set(n as f64);
        }
    }
}

/// A gauge of one source partition: a handle, set as its value changes.
#[derive(Debug, Clone)]
pub struct PartitionGauge(metrics::Gauge);

impl PartitionGauge {
    /// The uncommitted records of `topic`/`partition` (the redelivery
    /// bound), set for every record taken.
    pub fn uncommitted_records(instance: &str, topic: &str, partition: i32) -> Self {
        Self::new(names::UNCOMMITTED_RECORDS, instance, topic, partition)
    }

    /// The adaptive limit on an HTTP target's calls in flight from
    /// `topic`/`partition`.
    pub fn in_flight_limit(instance: &str, topic: &str, partition: i32) -> Self {
        Self::new(names::IN_FLIGHT_LIMIT, instance, topic, partition)
    }

    fn new(name: &'static str, instance: &str, topic: &str, partition: i32) -> Self {
        PartitionGauge(gauge!(
            name,
            "instance_id" => instance.to_string(),
            "topic" => topic.to_string(),
            "partition" => partition.to_string(),
        ))
    }

    /// The partition's value now.
    pub fn set(&self, value: usize) {
        self.0.set(value as f64);
    }
}

/// Where a partition stands when it holds or resumes at the redelivery
/// bound.
#[derive(Debug)]
pub struct UncommittedWork<'a> {
    /// The instance.
    pub instance: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    /// Records taken and not yet covered by a successful offset commit.
    pub records: usize,
    /// How long ago the oldest of them was taken.
    pub oldest: Duration,
    /// The partition's last successfully committed offset (the next record
    /// a new owner would read); `None` before this owner saw a commit.
    pub committed: Option<i64>,
    /// The bound, in records (including the target's calls in flight).
    pub max_records: usize,
    /// The bound, in time.
    pub max_age: Duration,
}

/// A source partition stopped taking records: its uncommitted work reached
/// the redelivery bound. Counted at once; logged at `debug`, since a
/// commit usually follows within milliseconds (see [`PartitionStillHeld`]).
#[derive(Debug)]
pub struct PartitionHeld<'a>(pub UncommittedWork<'a>);

impl PartitionHeld<'_> {
    /// Counts the hold and logs it at `debug`.
    pub fn emit(self) {
        let w = &self.0;
        counter!(
            names::UNCOMMITTED_HOLDS_TOTAL,
            "instance_id" => w.instance.to_string(),
            "topic" => w.topic.to_string(),
            "partition" => w.partition.to_string(),
        )
        .increment(1);
        tracing::debug!(topic = %w.topic, partition = w.partition, uncommitted_records = w.records, oldest_ms = w.oldest.as_millis() as u64, committed_offset = w.committed, max_uncommitted_records = w.max_records, max_uncommitted_age_ms = w.max_age.as_millis() as u64, "partition holds at the redelivery bound");
    }
}

/// The request consumer paused a partition whose worker is behind, or
/// resumed it once the worker caught up. Counted (pauses) and logged at
/// `debug`.
#[derive(Debug)]
pub struct PartitionPaused<'a> {
    pub instance: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    /// Bytes of records waiting for the partition's worker.
    pub waiting_bytes: usize,
    /// `false`: resumed.
    pub paused: bool,
}

impl PartitionPaused<'_> {
    pub fn emit(self) {
        if self.paused {
            counter!(
                names::PARTITION_PAUSES_TOTAL,
                "instance_id" => self.instance.to_string(),
                "topic" => self.topic.to_string(),
                "partition" => self.partition.to_string(),
            )
            .increment(1);
            tracing::debug!(topic = %self.topic, partition = self.partition, waiting_bytes = self.waiting_bytes, "partition paused: its worker is behind");
        } else {
            tracing::debug!(topic = %self.topic, partition = self.partition, waiting_bytes = self.waiting_bytes, "partition resumed");
        }
    }
}

/// A partition has held for a while: offset commits are failing or far
/// behind (the broker or the group coordinator is unreachable). Logged once
/// per hold.
#[derive(Debug)]
pub struct PartitionStillHeld<'a>(pub UncommittedWork<'a>);

impl PartitionStillHeld<'_> {
    /// Logs it at `warn`.
    pub fn emit(self) {
        let w = &self.0;
        tracing::warn!(topic = %w.topic, partition = w.partition, uncommitted_records = w.records, oldest_ms = w.oldest.as_millis() as u64, committed_offset = w.committed, max_uncommitted_records = w.max_records, max_uncommitted_age_ms = w.max_age.as_millis() as u64, "partition holds: offset commits are failing or behind, and its uncommitted records reached the redelivery bound; it takes no new record until a commit succeeds");
    }
}

/// A partition that held takes records again: a commit covered its work.
#[derive(Debug)]
pub struct PartitionResumed<'a> {
    pub work: UncommittedWork<'a>,
    /// How long it held.
    pub held: Duration,
    /// Whether [`PartitionStillHeld`] was logged for this hold (then the
    /// resumption is logged at `info`, otherwise at `debug`).
    pub reported: bool,
}

impl PartitionResumed<'_> {
    /// Logs it.
    pub fn emit(self) {
        let w = &self.work;
        let held_ms = self.held.as_millis() as u64;
        if self.reported {
            tracing::info!(topic = %w.topic, partition = w.partition, held_ms, uncommitted_records = w.records, committed_offset = w.committed, "partition resumes: an offset commit succeeded");
        } else {
            tracing::debug!(topic = %w.topic, partition = w.partition, held_ms, uncommitted_records = w.records, committed_offset = w.committed, "partition resumes");
        }
    }
}
