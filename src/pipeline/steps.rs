//! Carrying out what [`super::decide`] says of a live request once its
//! call is over, or while its control point stores: answer it, store it,
//! send it to the failed events, or publish its trigger and wait for the
//! control writer.

use std::time::Duration;

use super::decide::{self, Before, Called, Decision, Origin, Settle, Step};
use super::worker::{Flow, Job, Worker};
use super::{Context, PipelineError};
use crate::bindings::failure::chain_for;
use crate::bindings::{Invocation, Request};
use crate::control::{Cause, CommandKind, ControlPoint, Trigger};
use crate::records::{FailureReason, SourcePosition};
use crate::rules::{ExceptionChain, MatchReport};
use crate::telemetry;

impl Worker {
    /// A request while its control point stores: a sync one is answered
    /// with an error, the activation's trigger goes to the failed events,
    /// every other one is stored.
    pub(super) async fn storing(
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

    pub(super) async fn store(
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
    decide::answer(&ctx.table.get(cp), &request.request_id, &ctx.instance)
}
