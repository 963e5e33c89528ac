//! What a request's outcome writes: its stored copy, its failed event, or
//! its reply, as outputs of the partition's window.

use super::outputs::Output;
use super::route::header_value;
use super::worker::Worker;
use crate::bindings::{Request, Response};
use crate::control::ControlPoint;
use crate::records::{
    AvroRecord, FailedEvent, FailureReason, Header, SourcePosition, StoredRequest,
};
use crate::rules::ExceptionChain;
use crate::telemetry;
use crate::topology::{REPLY_TO_HEADER, REQUEST_ID_HEADER};

impl Worker {
    pub(super) fn stored_output(
        &self,
        cp: &str,
        state: &ControlPoint,
        request: Request,
        source: SourcePosition,
    ) -> Output {
        let ctx = &self.ctx;
        let record = StoredRequest {
            request_id: request.request_id,
            control_point: cp.to_string(),
            service: request.service,
            interface: request.interface,
            operation: request.operation,
            source,
            key: request.key,
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
        let stored = ctx.plan.control_point(cp);
        // Encoded first, so that the key and the id move into the output.
        let payload = record.encode().expect("a stored request always encodes");
        Output {
            topic: stored.stored_topic.clone(),
            partition: Some(self.partition % stored.stored_partitions),
            key: record.key,
            payload,
            headers: vec![(
                REQUEST_ID_HEADER.to_string(),
                Some(record.request_id.into_bytes()),
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
    pub(super) fn failed_record(&self, event: &FailedEvent) -> Output {
        Output {
            topic: self.ctx.plan.failed_topic().to_string(),
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
    pub(super) fn reply(
        &self,
        request: &Request,
        result: Result<Response, String>,
    ) -> Option<Output> {
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
