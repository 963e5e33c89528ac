//! The admin router without a socket: each endpoint through `oneshot`, with
//! an in-memory table, a command sink that plays the control writer, and
//! fixed stored-topic offsets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::control::{state_to_record, Command, ControlPoint, Outcome, ReplayProgress};
use crate::records::{FailedEvent, FailureReason, SourcePosition};
use crate::store::MemoryStore;

const TOPOLOGY: &str = r#"
application: app
kafka: { bootstrap: "unused:9092", partitions: 2 }
services:
  eis:
    binding: { kafka: { topic: eis.requests } }
    store_and_forward: { control_point: EmployeeData }
    interfaces:
      Query: { operations: { get: { topic: hr.get } } }
  billing:
    binding: { kafka: { topic: billing.requests } }
    store_and_forward: { control_point: Billing }
    interfaces:
      Billing: { operations: { charge: { topic: billing.charge } } }
"#;

/// Plays the control writer: applies each command to the table at once,
/// unless told to leave them unapplied or to fail.
#[derive(Default)]
struct Writer {
    table: Mutex<Option<ControlTable>>,
    sent: Mutex<Vec<(String, Command)>>,
    generation: Mutex<i64>,
    silent: bool,
    broken: bool,
}

impl CommandSink for Writer {
    fn send<'a>(
        &'a self,
        control_point: &'a str,
        command: &'a Command,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.broken {
                return Err("Message production error: MessageTimedOut".to_string());
            }
            self.sent
                .lock()
                .unwrap()
                .push((control_point.to_string(), command.clone()));
            if !self.silent {
                let table = self.table.lock().unwrap().clone().unwrap();
                let mut state = table.get(control_point);
                if let Outcome::Applied { .. } = state.apply(command) {
                    let mut g = self.generation.lock().unwrap();
                    *g += 1;
                    table.apply_state(state_to_record(&state, *g)).unwrap();
                }
            }
            Ok(())
        })
    }
}

/// Failed events read from memory, or a read that fails.
struct Failed(Result<Vec<FailedEvent>, String>);

impl FailedSource for Failed {
    fn load(&self) -> BoxFuture<'_, Result<crate::failed::FailedView, String>> {
        let view = self.0.clone().map(|events| {
            let records = events.into_iter().enumerate().map(|(i, e)| {
                let at = SourcePosition {
                    topic: "app.failed".into(),
                    partition: 0,
                    offset: i as i64,
                };
                (at, e)
            });
            crate::failed::FailedView::from_records(records, [])
        });
        Box::pin(async move { view })
    }
}

fn failed_event(id: &str, cp: Option<&str>, reason: FailureReason) -> FailedEvent {
    let n: i64 = id.rsplit('/').next().unwrap().parse().unwrap();
    FailedEvent {
        request_id: id.into(),
        reason,
        detail: "why".into(),
        control_point: cp.map(str::to_string),
        service: cp.map(|_| "eis".to_string()),
        interface: cp.map(|_| "Query".to_string()),
        operation: cp.map(|_| "get".to_string()),
        source: SourcePosition {
            topic: "hr.get".into(),
            partition: 0,
            offset: n,
        },
        key: None,
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
        chain: Default::default(),
        rule: None,
        instance: "i-1".into(),
        failed_at: 1_740_821_400_000 + n,
        attempts: 1,
        epoch: None,
    }
}

/// Three failed events: two of `EmployeeData`, one bad input.
fn three_failed() -> Failed {
    Failed(Ok(vec![
        failed_event(
            "hr.get/0/1",
            Some("EmployeeData"),
            FailureReason::StoreTrigger,
        ),
        failed_event(
            "hr.get/0/2",
            Some("EmployeeData"),
            FailureReason::InvocationFailed,
        ),
        failed_event("hr.get/0/3", None, FailureReason::Malformed),
    ]))
}

/// Stored topics whose partitions all have the same watermarks.
struct Offsets(Result<(i64, i64), String>);

impl StoredOffsets for Offsets {
    fn watermarks(&self, _topic: &str, _partition: i32) -> Result<(i64, i64), String> {
        self.0.clone()
    }
}

struct Fixture {
    table: ControlTable,
    writer: Arc<Writer>,
    audit: Arc<Recorder>,
    router: Router,
}

/// Keeps the audit events.
#[derive(Default)]
struct Recorder(Mutex<Vec<crate::records::AuditEvent>>);

impl crate::audit::AuditSink for Recorder {
    fn record(&self, event: crate::records::AuditEvent) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(event);
        Box::pin(async {})
    }

    fn history<'a>(
        &'a self,
        control_point: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::audit::Trail, String>> {
        let events = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok((crate::audit::select(events, control_point, limit), 0)) })
    }
}

fn fixture(writer: Writer, offsets: Offsets) -> Fixture {
    fixture_with(writer, offsets, None)
}

fn fixture_with(writer: Writer, offsets: Offsets, failed: Option<Failed>) -> Fixture {
    let topology = crate::topology::check_str(TOPOLOGY, std::path::Path::new("t.yaml"))
        .topology
        .expect("valid topology");
    let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
    *writer.table.lock().unwrap() = Some(table.clone());
    let writer = Arc::new(writer);
    let partitions = |topics: &[&str]| -> HashMap<String, i32> {
        topics.iter().map(|t| (t.to_string(), 2)).collect()
    };
    let audit = Arc::new(Recorder::default());
    let state = AdminState::new(AdminSettings {
        layouts: layouts(
            &topology,
            &partitions(&["hr.get", "billing.charge"]),
            &partitions(&["EmployeeData", "Billing"]),
        ),
        topology: Arc::new(topology),
        instance: "i-1".into(),
        table: table.clone(),
        commands: writer.clone(),
        offsets: Arc::new(offsets),
        metrics: crate::telemetry::install(),
        decision_timeout: Duration::from_millis(200),
        access: Default::default(),
        audit: Some(audit.clone()),
        failed: failed.map(|f| Arc::new(f) as Arc<dyn FailedSource>),
        stored: None,
    });
    Fixture {
        table,
        writer,
        audit,
        router: local_router(state),
    }
}

fn ready(writer: Writer) -> Fixture {
    let f = fixture(writer, Offsets(Ok((0, 5))));
    f.table.mark_ready();
    f
}

async fn call(router: &Router, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(access::REQUEST_HEADER, "test")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json(router: &Router, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = call(router, method, uri, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// An error body: `error` text and a `hint` key (null or text).
fn assert_error(v: &Value) {
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v.get("hint").is_some(), "{v}");
}

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let f = fixture(Writer::default(), Offsets(Ok((0, 0))));
    let (status, v) = json(&f.router, Method::GET, "/healthz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["instance"], "i-1");
}

#[tokio::test]
async fn readyz_waits_for_the_control_state() {
    let f = fixture(Writer::default(), Offsets(Ok((0, 0))));
    let (status, v) = json(&f.router, Method::GET, "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v);
    assert!(v["error"].as_str().unwrap().contains("loading"), "{v}");
    f.table.mark_ready();
    let (status, v) = json(&f.router, Method::GET, "/readyz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let f = fixture(Writer::default(), Offsets(Ok((0, 0))));
    crate::telemetry::InstanceReady {
        instance: "admin-test",
        ready: true,
    }
    .emit();
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = f.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let (_, text) = call(&f.router, Method::GET, "/metrics", "").await;
    assert!(text.contains("# TYPE sfwd_instance_ready gauge"), "{text}");
    assert!(text.contains(r#"sfwd_instance_ready{instance_id="admin-test"} 1"#));
}

#[tokio::test]
async fn the_page_is_self_contained_html() {
    let f = fixture(Writer::default(), Offsets(Ok((0, 0))));
    let request = Request::get("/").body(Body::empty()).unwrap();
    let response = f.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let (_, html) = call(&f.router, Method::GET, "/", "").await;
    assert!(html.contains("<dialog") && html.contains("api/control-points"));
    for external in ["http://", "https://", "//cdn", "@import"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from outside: {external}"
        );
    }
}

#[tokio::test]
async fn lists_every_control_point_with_its_state_and_backlog() {
    let f = ready(Writer::default());
    let (status, v) = json(&f.router, Method::GET, "/api/control-points", "").await;
    assert_eq!(status, StatusCode::OK);
    let view: ControlPointsView = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(view.instance, "i-1");
    assert!(view.ready);
    let names: Vec<&str> = view
        .control_points
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["EmployeeData", "Billing"]);
    let cp = &view.control_points[0];
    assert_eq!(cp.service, "eis");
    assert_eq!(cp.state, "FORWARD");
    assert_eq!(cp.epoch, 0);
    assert_eq!(cp.cause, "initial");
    assert_eq!(
        (cp.since_ms, cp.by.as_deref(), cp.trigger.as_ref()),
        (None, None, None)
    );
    // Two stored partitions of 5 records each, nothing replayed yet.
    assert_eq!(cp.stored_backlog, Some(10));
    assert_eq!(cp.replay, None);
    // Every field is there, null when unknown.
    for key in ["since", "trigger", "replay", "failed"] {
        assert!(v["control_points"][0].get(key).is_some(), "{key}");
    }
}

#[tokio::test]
async fn the_backlog_follows_the_replay_progress() {
    let f = ready(Writer::default());
    for (topic, p) in [("hr.get", 0), ("hr.get", 1)] {
        f.table
            .apply_replay(
                &crate::control::replay_key("EmployeeData", topic, p),
                ReplayProgress {
                    next_offset: if p == 0 { 5 } else { 2 },
                    ..ReplayProgress::default()
                },
            )
            .unwrap();
    }
    let (_, v) = json(
        &f.router,
        Method::GET,
        "/api/control-points/EmployeeData",
        "",
    )
    .await;
    assert_eq!(v["stored_backlog"], 3);
}

#[tokio::test]
async fn an_unreadable_stored_topic_leaves_the_backlog_unknown() {
    let f = fixture(Writer::default(), Offsets(Err("timed out".into())));
    let (status, v) = json(&f.router, Method::GET, "/api/control-points", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["control_points"][0]["stored_backlog"], Value::Null);
}

#[tokio::test]
async fn every_action_is_audited_with_who_from_where_and_its_result() {
    let f = ready(Writer::default());
    let store = "/api/control-points/EmployeeData/store";
    json(&f.router, Method::POST, store, r#"{"operator":"alice"}"#).await;
    json(&f.router, Method::POST, store, "").await;
    json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/forward",
        r#"{"operator":"bob","rate":"200/s"}"#,
    )
    .await;
    json(
        &f.router,
        Method::POST,
        "/api/control-points/Nope/store",
        "",
    )
    .await;
    json(
        &f.router,
        Method::POST,
        "/api/control-points/Billing/pace",
        r#"{"rate":"5/s"}"#,
    )
    .await;
    let events = f.audit.0.lock().unwrap().clone();
    let summary: Vec<(&str, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.control_point.as_deref().unwrap_or(""),
                e.actor.as_str(),
                e.result.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("store", "EmployeeData", "operator:alice", "applied"),
            ("store", "EmployeeData", "operator:admin-http", "no-op"),
            ("forward", "EmployeeData", "operator:bob", "applied"),
            ("store", "Nope", "operator:admin-http", "refused"),
            ("pace", "Billing", "operator:admin-http", "refused"),
        ]
    );
    for e in &events {
        assert_eq!((e.via.as_str(), e.instance.as_str()), ("admin-api", "i-1"));
        assert_eq!(e.origin.as_deref(), Some("127.0.0.1:40000"), "from where");
        assert!(e.at > 0 && e.message.is_some(), "{e:?}");
    }
    assert!(events[0].command_id.is_some() && events[1].command_id.is_none());
    assert_eq!(events[2].detail.as_deref(), Some("rate 200/s"));
    assert_eq!(
        events[3].message.as_deref(),
        Some("unknown control point `Nope`")
    );
}

#[tokio::test]
async fn store_then_store_again_then_forward() {
    let f = ready(Writer::default());
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/store",
        r#"{"operator":"alice"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let outcome: CommandOutcome = serde_json::from_value(v).unwrap();
    assert_eq!(outcome.result, "applied");
    assert!(
        outcome.message.contains("is storing (epoch 1)"),
        "{}",
        outcome.message
    );
    let cp = &outcome.control_point;
    assert_eq!(
        (cp.state.as_str(), cp.epoch, cp.cause.as_str()),
        ("STORE", 1, "operator")
    );
    assert_eq!(cp.by.as_deref(), Some("operator:alice"));
    assert!(cp.since.as_deref().is_some_and(|s| s.ends_with('Z')));
    {
        let sent = f.writer.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "EmployeeData");
        assert_eq!(sent[0].1.by, "operator:alice");
        assert_eq!(Some(&sent[0].1.id), outcome.command_id.as_ref());
    }

    // Already storing: nothing published, and the state machine's words.
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/store",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"], "no-op");
    assert_eq!(v["message"], "already storing (epoch 1); nothing changed");
    assert_eq!(v["command_id"], Value::Null);
    assert_eq!(f.writer.sent.lock().unwrap().len(), 1);

    let request = Request::post("/api/control-points/EmployeeData/forward")
        .header(OPERATOR_HEADER, "bob")
        .header(access::REQUEST_HEADER, "test")
        .body(Body::empty())
        .unwrap();
    let response = f.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let outcome: CommandOutcome = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(outcome.result, "applied");
    let cp = outcome.control_point;
    assert_eq!(
        (cp.state.as_str(), cp.replaying, cp.epoch),
        ("FORWARD", true, 2)
    );
    assert_eq!(cp.by.as_deref(), Some("operator:bob"));
    let replay = cp.replay.expect("replaying");
    assert_eq!((replay.partitions, replay.caught_up), (2, 0));
    assert_eq!(replay.by_partition.len(), 2);
    assert_eq!(replay.pace, None, "no cap in the topology");

    let (_, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/forward",
        "",
    )
    .await;
    assert_eq!(v["result"], "no-op");
    assert_eq!(
        v["message"],
        "already forwarding (epoch 2, replaying); nothing changed"
    );
}

#[tokio::test]
async fn the_trigger_is_shown_with_its_chain_and_rule() {
    let f = ready(Writer::default());
    let state = ControlPoint {
        mode: crate::control::Mode::Store,
        epoch: 1,
        since_ms: 1_740_821_400_000,
        cause: crate::control::Cause::Trigger,
        by: "i-2".into(),
        trigger: Some(crate::control::Trigger {
            request_id: "hr.get/1/42".into(),
            service: "eis".into(),
            interface: "Query".into(),
            operation: "get".into(),
            chain: crate::rules::ExceptionChain::new(vec![
                crate::rules::ChainElement::new("ServiceUnavailableException", "HTTP 503"),
                crate::rules::ChainElement::new("HttpStatusException", "503 Service Unavailable"),
            ]),
            rule: "ServiceUnavailableException chain=original-first".into(),
            instance: "i-2".into(),
        }),
        ..ControlPoint::initial("EmployeeData")
    };
    f.table.apply_state(state_to_record(&state, 7)).unwrap();
    let (_, v) = json(
        &f.router,
        Method::GET,
        "/api/control-points/EmployeeData",
        "",
    )
    .await;
    assert_eq!(v["state"], "STORE");
    assert_eq!(v["cause"], "trigger");
    assert_eq!(v["since"], "2025-03-01T09:30:00Z");
    assert_eq!(v["trigger"]["request_id"], "hr.get/1/42");
    assert_eq!(v["trigger"]["operation"], "Query.get");
    assert_eq!(v["trigger"]["instance"], "i-2");
    assert_eq!(
        v["trigger"]["rule"],
        "ServiceUnavailableException chain=original-first"
    );
    assert_eq!(
        v["trigger"]["chain"][0]["type"],
        "ServiceUnavailableException"
    );
    assert_eq!(
        v["trigger"]["chain"][1]["message"],
        "503 Service Unavailable"
    );
}

#[tokio::test]
async fn unknown_control_points_get_a_did_you_mean() {
    let f = ready(Writer::default());
    for (method, uri) in [
        (Method::GET, "/api/control-points/EmployeData"),
        (Method::POST, "/api/control-points/EmployeData/store"),
        (Method::POST, "/api/control-points/EmployeData/forward"),
    ] {
        let (status, v) = json(&f.router, method, uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["error"], "unknown control point `EmployeData`");
        assert_eq!(v["hint"], "did you mean `EmployeeData`?");
    }
    let (_, v) = json(&f.router, Method::POST, "/api/control-points/Zzz/store", "").await;
    assert_eq!(v["hint"], "control points: EmployeeData, Billing");
    assert!(f.writer.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn commands_wait_for_the_control_state() {
    let f = fixture(Writer::default(), Offsets(Ok((0, 0))));
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/Billing/store",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&v);
    assert!(f.writer.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_command_the_writer_has_not_applied_yet_is_pending() {
    let f = ready(Writer {
        silent: true,
        ..Writer::default()
    });
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/Billing/store",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v["result"], "pending");
    assert!(v["command_id"].as_str().is_some());
    assert_eq!(v["control_point"]["state"], "FORWARD");
    assert_eq!(f.writer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_command_that_cannot_be_published_is_a_bad_gateway() {
    let f = ready(Writer {
        broken: true,
        ..Writer::default()
    });
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/Billing/forward",
        "",
    )
    .await;
    // Forward on a forwarding control point is a no-op: nothing to publish.
    assert_eq!(
        (status, v["result"].as_str()),
        (StatusCode::OK, Some("no-op"))
    );
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/Billing/store",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_error(&v);
    assert!(
        v["error"].as_str().unwrap().contains("MessageTimedOut"),
        "{v}"
    );
}

#[tokio::test]
async fn bad_bodies_and_operator_names_are_refused() {
    let f = ready(Writer::default());
    for body in [
        "{",
        r#"{"operator": 3}"#,
        r#"{"user":"x"}"#,
        r#"{"operator":"a b"}"#,
    ] {
        let (status, v) = json(
            &f.router,
            Method::POST,
            "/api/control-points/Billing/store",
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_error(&v);
    }
    assert!(f.writer.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let f = ready(Writer::default());
    let (status, v) = json(&f.router, Method::GET, "/api/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&v);
    let (status, v) = json(
        &f.router,
        Method::GET,
        "/api/control-points/Billing/store",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["hint"], "store and forward are POST requests");
    let (status, v) = json(&f.router, Method::DELETE, "/metrics", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v);
}

#[tokio::test]
async fn oversized_requests_get_the_json_error() {
    let f = ready(Writer::default());
    let long = format!("/api/control-points?{}", "x".repeat(9000));
    let (status, v) = json(&f.router, Method::GET, &long, "").await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_error(&v);
    assert!(v["error"].as_str().unwrap().contains("at most 8192"), "{v}");

    let mut request = Request::get("/api/control-points");
    for i in 0..40 {
        request = request.header(format!("x-filler-{i}"), "y".repeat(1000));
    }
    let response = f
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_error(&serde_json::from_slice(&bytes).unwrap());

    let body = format!(r#"{{"operator": "{}"}}"#, "a".repeat(70 * 1024));
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/store",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v);
    assert!(v["error"].as_str().unwrap().contains("65536"), "{v}");
    assert!(
        f.writer.sent.lock().unwrap().is_empty(),
        "nothing published"
    );
}

#[tokio::test]
async fn without_a_failed_source_the_list_is_not_served() {
    let f = ready(Writer::default());
    let (status, v) = json(&f.router, Method::GET, "/api/failed", "").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_error(&v);
    let (_, v) = json(&f.router, Method::GET, "/api/control-points", "").await;
    assert_eq!(v["control_points"][0]["failed"], Value::Null);
}

#[tokio::test]
async fn failed_events_are_listed_filtered_and_counted() {
    let f = fixture_with(Writer::default(), Offsets(Ok((0, 0))), Some(three_failed()));
    let (_, v) = json(&f.router, Method::GET, "/api/control-points", "").await;
    assert_eq!(v["control_points"][0]["failed"], 2);
    assert_eq!(v["control_points"][1]["failed"], 0);

    let (status, v) = json(&f.router, Method::GET, "/api/failed", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["shown"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(v["failed_events"][0]["request_id"], "hr.get/0/1");
    assert_eq!(v["failed_events"][0]["status"], "open");
    assert!(v["failed_events"][0].get("value").is_none(), "not full");

    let count = |v: &Value| v["total"].as_u64().unwrap();
    let (_, v) = json(
        &f.router,
        Method::GET,
        "/api/failed?control_point=EmployeeData",
        "",
    )
    .await;
    assert_eq!(count(&v), 2);
    let (_, v) = json(
        &f.router,
        Method::GET,
        "/api/failed?reason=store-trigger",
        "",
    )
    .await;
    assert_eq!(count(&v), 1);
    let (_, v) = json(
        &f.router,
        Method::GET,
        "/api/failed?operation=Query.get&since=2025-03-01",
        "",
    )
    .await;
    assert_eq!(count(&v), 2);
    let (_, v) = json(&f.router, Method::GET, "/api/failed?status=discarded", "").await;
    assert_eq!(count(&v), 0);
    let (_, v) = json(&f.router, Method::GET, "/api/failed?limit=1&full=true", "").await;
    assert_eq!((count(&v), v["shown"].as_u64()), (3, Some(1)));
    assert!(v["failed_events"][0].get("value").is_some(), "full");
}

#[tokio::test]
async fn failed_event_queries_are_checked() {
    let f = fixture_with(Writer::default(), Offsets(Ok((0, 0))), Some(three_failed()));
    for (uri, status, hint) in [
        (
            "/api/failed?control_point=EmployeData",
            StatusCode::NOT_FOUND,
            Some("did you mean `EmployeeData`?"),
        ),
        (
            "/api/failed?servce=eis",
            StatusCode::BAD_REQUEST,
            Some("did you mean `service`?"),
        ),
        ("/api/failed?reason=down", StatusCode::BAD_REQUEST, None),
        (
            "/api/failed?status=gone",
            StatusCode::BAD_REQUEST,
            Some("or `all` for every status"),
        ),
        ("/api/failed?since=yesterday", StatusCode::BAD_REQUEST, None),
        ("/api/failed?limit=many", StatusCode::BAD_REQUEST, None),
        ("/api/failed?full=maybe", StatusCode::BAD_REQUEST, None),
    ] {
        let (got, v) = json(&f.router, Method::GET, uri, "").await;
        assert_eq!(got, status, "{uri}: {v}");
        assert_error(&v);
        if let Some(hint) = hint {
            assert_eq!(v["hint"], hint, "{uri}");
        }
    }
}

#[tokio::test]
async fn an_unreadable_failed_topic_is_a_bad_gateway() {
    let f = fixture_with(
        Writer::default(),
        Offsets(Ok((0, 0))),
        Some(Failed(Err("all brokers down".into()))),
    );
    let (status, v) = json(&f.router, Method::GET, "/api/failed", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(v["error"].as_str().unwrap().contains("all brokers down"));
    let (status, v) = json(&f.router, Method::GET, "/api/control-points", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["control_points"][0]["failed"], Value::Null);
}

#[tokio::test]
async fn forward_with_a_rate_paces_the_replay_and_pace_changes_it() {
    let f = ready(Writer::default());
    json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/store",
        "",
    )
    .await;
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/forward",
        r#"{"operator": "ana", "rate": "250/s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"], "applied");
    assert_eq!(v["control_point"]["replay"]["pace"], "250/s");
    assert_eq!(v["control_point"]["replay"]["pace_overridden"], true);
    let kinds: Vec<&str> = f
        .writer
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.kind.name())
        .collect();
    assert_eq!(kinds, ["store", "pace", "forward"], "the pace goes first");

    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/pace",
        r#"{"rate": "50/s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "`EmployeeData` replays at 50/s");
    assert_eq!(
        f.table.get("EmployeeData").pace.unwrap().to_string(),
        "50/s"
    );

    // Forward again while replaying: change the pace with /pace instead.
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/forward",
        r#"{"rate": "10/s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("/pace"), "{v}");
}

#[tokio::test]
async fn a_pace_is_refused_when_there_is_nothing_to_replay_or_it_does_not_read() {
    let f = ready(Writer::default());
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/pace",
        r#"{"rate": "50/s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/pace",
        r#"{"rate": "fast"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("`fast` is not a rate"),
        "{v}"
    );
    let (status, _) = json(
        &f.router,
        Method::POST,
        "/api/control-points/EmployeeData/store",
        r#"{"rate": "5/s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        f.writer.sent.lock().unwrap().is_empty(),
        "nothing published"
    );
}
