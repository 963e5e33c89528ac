//! Target calls in flight. A request to a Kafka binding is handed to the
//! producer without waiting for its delivery report, up to the binding's
//! `in_flight` per source partition; a request to an HTTP binding with
//! `ordering: key` is called in a task of its own, up to its `in_flight`,
//! once no call of the same key is out. Outcomes are settled in source
//! order, so a request's outputs, and its source offset, still come after
//! those of every request before it.
//!
//! A call that failed is settled as if it had been made alone: retried per
//! the service's policy, then matched against the rules, triggering the
//! store. Calls sent after it and still in flight are settled after it;
//! in an outage they fail too, and are stored behind it. Only when a later
//! call succeeds while an earlier one failed (some of the target cluster's
//! partitions unreachable, the others not) does a request reach the target
//! before one consumed ahead of it; `in_flight: 1` rules that out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::limit::{Limit, Sample};
use super::worker::{Flow, Job, Worker};
use super::PipelineError;
use crate::bindings::failure::Failure;
use crate::bindings::{
    retry_after, Delivery, Invocation, KafkaTarget, Request, Response, Sent, Target,
};
use crate::control::ControlPoint;
use crate::telemetry;
use futures::future::BoxFuture;
use tracing::Instrument as _;

/// How long a send waits when the producer's queue is full and this
/// partition has nothing of its own in flight to settle first.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// One request sent to a Kafka target, not yet settled.
pub(super) struct Call {
    job: Job,
    /// Its control point and the state that was current when it was sent.
    control: Option<(String, ControlPoint)>,
    sent_at: Instant,
    state: CallState,
}

enum CallState {
    /// A produce, waiting for its delivery report.
    Sent(Delivery),
    /// An HTTP call running in its own task.
    Running(tokio::task::JoinHandle<Result<Response, Failure>>),
    Done(Result<Response, Failure>),
    Settled,
}

impl Call {
    /// Waits for the call's outcome. Cancel-safe: dropped before the
    /// outcome is in, it leaves the call as it was.
    async fn ready(&mut self) {
        let outcome = match &mut self.state {
            CallState::Sent(delivery) => delivery.outcome().await,
            CallState::Running(task) => match task.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => unreachable!("an HTTP call's task is never cancelled: {e}"),
            },
            CallState::Done(_) | CallState::Settled => return,
        };
        self.state = CallState::Done(outcome);
    }

    /// The outcome, once [`Call::ready`] has returned.
    fn outcome(&mut self) -> Result<Response, Failure> {
        match std::mem::replace(&mut self.state, CallState::Settled) {
            CallState::Done(result) => result,
            _ => unreachable!("settled before its outcome was in"),
        }
    }
}

/// Calls of one partition, oldest first.
#[derive(Default)]
pub(super) struct Calls {
    out: VecDeque<Call>,
    /// The adaptive limit of an HTTP target's calls ([`Limit`]), from its
    /// first call on.
    adaptive: Option<Adaptive>,
}

/// An adaptive limit and the gauge that shows it.
struct Adaptive {
    limit: Limit,
    gauge: telemetry::PartitionGauge,
}

impl Calls {
    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Whether a call of `key` is out: with `ordering: key`, the next call
    /// of a key waits for it.
    fn has_key(&self, key: &Option<Vec<u8>>) -> bool {
        self.out.iter().any(|c| c.job.request.key == *key)
    }

    /// Waits until the oldest call's outcome is in (forever when there is
    /// none). Cancel-safe.
    pub(super) async fn oldest_ready(&mut self) {
        match self.out.front_mut() {
            Some(call) => call.ready().await,
            None => std::future::pending().await,
        }
    }
}

/// The calls a [`produce`] settles, oldest first, while the producer's
/// queue is full.
pub(super) trait Oldest {
    /// Settles the oldest call out; `false` when none is out. Boxed: settling
    /// a call can send another (a retry after the control point forwards
    /// again), which comes back here.
    fn settle_oldest(&mut self) -> BoxFuture<'_, Result<bool, PipelineError>>;
}

/// Hands `request` to the Kafka `target` without waiting for its delivery.
/// While the producer's queue is full, settles the oldest call of `out`
/// first or, with none out, waits [`QUEUE_FULL_WAIT`]. Live calls and
/// replays send this way. `Err(failure)` inside: the producer refused the
/// record.
pub(super) async fn produce(
    target: &KafkaTarget,
    request: &Request,
    out: &mut impl Oldest,
) -> Result<Result<Delivery, Failure>, PipelineError> {
    loop {
        match target.send(request) {
            Ok(delivery) => return Ok(Ok(delivery)),
            Err(Sent::Failed(failure)) => return Ok(Err(*failure)),
            Err(Sent::QueueFull) => {
                if !out.settle_oldest().await? {
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
            }
        }
    }
}

/// A partition's live calls.
struct LiveCalls<'w>(&'w mut Worker);

impl Oldest for LiveCalls<'_> {
    fn settle_oldest(&mut self) -> BoxFuture<'_, Result<bool, PipelineError>> {
        Box::pin(async move {
            if self.0.calls.is_empty() {
                return Ok(false);
            }
            self.0.settle_oldest().await?;
            Ok(true)
        })
    }
}

impl Worker {
    /// Sends `job` to its target and keeps it in flight, settling the
    /// oldest call first when the binding's `in_flight` is reached (and,
    /// for HTTP, while a call of the same key is out).
    pub(super) async fn send(
        &mut self,
        job: Job,
        control: Option<(String, ControlPoint)>,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let target = &ctx.targets[job.service];
        let state = match target {
            Target::Kafka(target) => {
                match produce(target, &job.request, &mut LiveCalls(self)).await? {
                    Ok(delivery) => CallState::Sent(delivery),
                    Err(failure) => CallState::Done(Err(failure)),
                }
            }
            Target::Http(target) => {
                while self.calls.has_key(&job.request.key) {
                    self.settle_oldest().await?;
                }
                self.throttle(&job).await;
                let (target, request) = (target.clone(), job.request.clone());
                CallState::Running(tokio::spawn(async move { target.call(&request).await }))
            }
        };
        let sent_at = Instant::now();
        self.calls.out.push_back(Call {
            job,
            control,
            sent_at,
            state,
        });
        let limit = match (target, &mut self.calls.adaptive) {
            (Target::Kafka(k), _) => k.in_flight(),
            (Target::Http(h), adaptive) => adaptive
                .get_or_insert_with(|| Adaptive {
                    limit: Limit::new(h.in_flight()),
                    gauge: telemetry::PartitionGauge::in_flight_limit(
                        &ctx.instance,
                        &self.topic,
                        self.partition,
                    ),
                })
                .limit
                .current(),
        };
        while self.calls.out.len() >= limit {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Settles every call in flight, oldest first. Returns whether there
    /// were any.
    pub(super) async fn settle_calls(&mut self) -> Result<bool, PipelineError> {
        let any = !self.calls.is_empty();
        while !self.calls.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(any)
    }

    /// Waits for the oldest call's outcome and acts on it as on the outcome
    /// of a call made alone.
    pub(super) async fn settle_oldest(&mut self) -> Result<(), PipelineError> {
        let Some(call) = self.calls.out.pop_front() else {
            return Ok(());
        };
        // Settled while another request is in hand: under its own span.
        let span = super::worker::request_span(
            &call.job.source.topic,
            call.job.source.partition,
            call.job.offset,
            Some(&call.job.request),
        );
        self.settle(call).instrument(span).await
    }

    async fn settle(&mut self, mut call: Call) -> Result<(), PipelineError> {
        call.ready().await;
        let result = call.outcome();
        if let Some(a) = &mut self.calls.adaptive {
            a.limit.observe(match &result {
                Ok(_) => Sample::Success(call.sent_at.elapsed()),
                Err(_) => Sample::Failure,
            });
            a.gauge.set(a.limit.current());
        }
        let Call {
            job,
            control,
            sent_at,
            ..
        } = call;
        let ctx = self.ctx.clone();
        let invocation = match result {
            Ok(response) => Invocation {
                result: Ok(response),
                attempts: 1,
            },
            Err(failure) => {
                let retry = ctx.plan.service(job.service).retry;
                retry_after(&ctx.targets[job.service], retry, &job.request, failure).await
            }
        };
        telemetry::TargetCall::since(&ctx.instance, &job.request, sent_at).end(&invocation, false);
        let Some((cp, state)) = control else {
            return self.plain_outcome(job, invocation).await;
        };
        match self.outcome(job, &cp, &state, invocation).await? {
            Flow::Done => Ok(()),
            // Forwarding again: invoked once more, alone.
            Flow::Retry(job) => Box::pin(self.forward(*job, cp, false)).await,
        }
    }
}
