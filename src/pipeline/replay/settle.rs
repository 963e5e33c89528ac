//! Settling replayed requests: their outcomes, in stored order, through
//! the same decisions as live ones ([`super::super::decide`]).

use super::super::decide::{self, Called, Origin, Settle, Step as DecideStep};
use super::super::worker::Worker;
use super::super::PipelineError;
use super::{Progress, Sent, Step};
use crate::bindings::failure::chain_for;
use crate::bindings::{invoke, retry_after, Invocation, Request};
use crate::control::{ControlPoint, Mode};
use crate::records::{FailureReason, StoredRequest};
use crate::telemetry;

impl Worker {
    /// Waits for a sent request's outcome and acts on it as on a request
    /// invoked alone. Returns where the replay resumes if it must stop.
    pub(super) async fn settle_replayed(
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
                let retry = ctx.plan.service(service).retry;
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
    pub(super) async fn settle_ahead(&mut self, cp: &str, call: Sent) {
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
    pub(super) async fn replay_one(
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
        let retry = ctx.plan.service(service).retry;
        let invocation = invoke(&ctx.targets[service], retry, &request).await;
        call.end_replay(&invocation, cp);
        self.replay_outcome(cp, service, record, request, state, offset, invocation)
            .await
    }

    /// What follows the invocation of a stored request to service
    /// `service_index`, made while its control point was in `state`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn replay_outcome(
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
        let retry = ctx.plan.service(service_index).retry;
        let (mut state, mut invocation) = (state, invocation);
        loop {
            let failure = match invocation.result {
                Ok(_) => return Ok(Step::Next),
                Err(f) => f,
            };
            let on_overload = ctx
                .plan
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
                    invocation = invoke(&ctx.targets[service_index], retry, &request).await;
                    call.end_replay(&invocation, cp);
                }
                Settle::FailAsTrigger => unreachable!("handled above"),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fail_replayed(
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
}
