//! The stored-backlog endpoints without a socket: the router through
//! `oneshot`, over a backlog held in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::control::{replay_key, Command, ReplayProgress};
use crate::records::{SourcePosition, StoredRequest};
use crate::store::MemoryStore;
use crate::stored::{Backlog, RecordAt, SkipReport, SkipResult, StoredView};

const TOPOLOGY: &str = r#"
application: app
kafka: { bootstrap: "unused:9092", partitions: 2 }
services:
  eis:
    binding: { kafka: { topic: eis.requests } }
    store_and_forward: { control_point: EmployeeData }
    interfaces:
      Query: { operations: { get: { topic: hr.get } } }
"#;

/// Commands go nowhere: these tests publish none.
struct NoCommands;

impl CommandSink for NoCommands {
    fn send<'a>(&'a self, _: &'a str, _: &'a Command) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("no commands in these tests".to_string()) })
    }
}

struct NoOffsets;

impl StoredOffsets for NoOffsets {
    fn watermarks(&self, _topic: &str, _partition: i32) -> Result<(i64, i64), String> {
        Err("no offsets in these tests".to_string())
    }
}

fn request(offset: i64) -> StoredRequest {
    StoredRequest {
        request_id: format!("hr.get/0/{offset}"),
        control_point: "EmployeeData".into(),
        service: "eis".into(),
        interface: "Query".into(),
        operation: "get".into(),
        source: SourcePosition {
            topic: "hr.get".into(),
            partition: 0,
            offset,
        },
        key: Some(format!("emp-{offset}").into_bytes()),
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
        stored_at: 1_740_821_400_000 + offset,
        epoch: 1,
        trigger: None,
        instance: "i-1".into(),
    }
}

/// Six stored requests at source offsets 10..=15, the first replayed; a
/// skip acts on them as the Kafka one would.
struct Memory {
    backlog: Backlog,
    skipped: Mutex<HashMap<String, String>>,
}

impl Memory {
    fn new() -> Memory {
        let progress = HashMap::from([(
            replay_key("EmployeeData", "hr.get", 0),
            ReplayProgress {
                max_source_offset: 10,
                ..ReplayProgress::default()
            },
        )]);
        let records = (0..6).map(|i| {
            (
                RecordAt {
                    partition: 0,
                    offset: i,
                },
                request(10 + i),
            )
        });
        let view = StoredView::from_records(
            "EmployeeData",
            "app.stored.EmployeeData",
            records,
            &progress,
            &[],
        );
        Memory {
            backlog: Backlog {
                views: vec![view],
                marks: Vec::new(),
            },
            skipped: Mutex::default(),
        }
    }
}

impl StoredSource for Memory {
    fn load(&self, _control_points: Vec<String>) -> BoxFuture<'_, Result<Backlog, String>> {
        let backlog = self.backlog.clone();
        Box::pin(async move { Ok(backlog) })
    }

    fn skip(&self, request_id: String, by: String) -> BoxFuture<'_, Result<SkipReport, String>> {
        let found = self.backlog.find(&request_id).map(|(e, _, _)| e.clone());
        let mut skipped = self.skipped.lock().unwrap();
        let result = match found {
            None => SkipResult::NotFound,
            Some(e) if e.replayed => SkipResult::AlreadyReplayed {
                control_point: e.request.control_point.clone(),
            },
            Some(_) => match skipped.get(&request_id) {
                Some(first) => SkipResult::AlreadySkipped {
                    by: first.clone(),
                    at: 0,
                },
                None => {
                    skipped.insert(request_id.clone(), by);
                    SkipResult::Skipped {
                        failed_record: SourcePosition {
                            topic: "app.failed".into(),
                            partition: 0,
                            offset: 0,
                        },
                    }
                }
            },
        };
        let report = SkipReport {
            request_id,
            control_point: Some("EmployeeData".into()),
            source: None,
            result,
        };
        Box::pin(async move { Ok(report) })
    }
}

/// A cluster that cannot be reached.
struct Unreachable;

impl StoredSource for Unreachable {
    fn load(&self, _: Vec<String>) -> BoxFuture<'_, Result<Backlog, String>> {
        Box::pin(async { Err("Meta data fetch error: BrokerTransportFailure".to_string()) })
    }

    fn skip(&self, _: String, _: String) -> BoxFuture<'_, Result<SkipReport, String>> {
        Box::pin(async { Err("Message production error: MessageTimedOut".to_string()) })
    }
}

fn router_over(stored: Option<Arc<dyn StoredSource>>) -> Router {
    let topology = crate::topology::check_str(TOPOLOGY, std::path::Path::new("t.yaml"))
        .topology
        .expect("valid topology");
    let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
    table.mark_ready();
    let partitions = |names: &[&str]| -> HashMap<String, i32> {
        names.iter().map(|t| (t.to_string(), 2)).collect()
    };
    local_router(AdminState::new(AdminSettings {
        layouts: layouts(
            &topology,
            &partitions(&["hr.get"]),
            &partitions(&["EmployeeData"]),
        ),
        topology: Arc::new(topology),
        instance: "i-1".into(),
        table,
        commands: Arc::new(NoCommands),
        offsets: Arc::new(NoOffsets),
        metrics: crate::telemetry::install(),
        decision_timeout: Duration::from_millis(200),
        access: Default::default(),
        audit: None,
        failed: None,
        stored,
    }))
}

fn memory() -> Router {
    router_over(Some(Arc::new(Memory::new())))
}

async fn json(
    router: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(access::REQUEST_HEADER, "test");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

fn ids(page: &Value) -> Vec<&str> {
    page["stored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect()
}

const LIST: &str = "/api/control-points/EmployeeData/stored";

#[tokio::test]
async fn the_backlog_is_listed_a_page_at_a_time() {
    let r = memory();
    let (status, page) = json(&r, Method::GET, &format!("{LIST}?limit=2"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["control_point"], "EmployeeData");
    assert_eq!(page["topic"], "app.stored.EmployeeData");
    assert_eq!(page["total"], 5, "the replayed one is left out");
    assert_eq!(page["shown"], 2);
    assert_eq!(ids(&page), ["hr.get/0/11", "hr.get/0/12"]);
    assert_eq!(page["stored"][0]["status"], "stored");
    assert_eq!(page["stored"][0]["key"], "emp-11");
    assert_eq!(page["next_after"], "0:2");

    let mut seen = ids(&page).iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut after = page["next_after"].as_str().unwrap().to_string();
    loop {
        let uri = format!("{LIST}?limit=2&after={after}");
        let (status, page) = json(&r, Method::GET, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 5);
        seen.extend(ids(&page).iter().map(|s| s.to_string()));
        match page["next_after"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "hr.get/0/11",
            "hr.get/0/12",
            "hr.get/0/13",
            "hr.get/0/14",
            "hr.get/0/15"
        ]
    );

    let (_, all) = json(&r, Method::GET, &format!("{LIST}?all=true"), &[]).await;
    assert_eq!(all["total"], 6);
    assert_eq!(all["stored"][0]["status"], "replayed");
    assert_eq!(all["next_after"], Value::Null);
    let (_, by_key) = json(&r, Method::GET, &format!("{LIST}?key=emp-13"), &[]).await;
    assert_eq!(ids(&by_key), ["hr.get/0/13"]);
    let (_, by_partition) = json(&r, Method::GET, &format!("{LIST}?partition=1"), &[]).await;
    assert_eq!(by_partition["total"], 0);
    let (_, old) = json(&r, Method::GET, &format!("{LIST}?until=2020-01-01"), &[]).await;
    assert_eq!(old["total"], 0);
}

#[tokio::test]
async fn list_queries_are_checked() {
    let r = memory();
    for (query, status, says) in [
        (
            "?limt=2",
            StatusCode::BAD_REQUEST,
            "unknown parameter `limt`",
        ),
        ("?limit=0", StatusCode::BAD_REQUEST, "limit `0`"),
        ("?after=x", StatusCode::BAD_REQUEST, "after `x`"),
        (
            "?since=soon",
            StatusCode::BAD_REQUEST,
            "`soon` is not a time",
        ),
        (
            "?all=maybe",
            StatusCode::BAD_REQUEST,
            "all must be true or false",
        ),
    ] {
        let (s, v) = json(&r, Method::GET, &format!("{LIST}{query}"), &[]).await;
        assert_eq!(s, status, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{query}: {v}");
    }
    let (s, v) = json(&r, Method::GET, "/api/control-points/Employee/stored", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["hint"], "did you mean `EmployeeData`?");
}

#[tokio::test]
async fn one_stored_request_by_its_percent_encoded_id() {
    let r = memory();
    let (status, v) = json(&r, Method::GET, "/api/stored/hr.get%2F0%2F13", &[]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["request_id"], "hr.get/0/13");
    assert_eq!(v["value_bytes"]["utf8"], "{}");
    assert_eq!(v["decoded_value"], Value::Null, "no input schema declared");
    assert_eq!(v["with_this_id"], 1);
    let (status, v) = json(&r, Method::GET, "/api/stored/hr.get%2F0%2F1x3", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["hint"], "did you mean `hr.get/0/13`?");
}

#[tokio::test]
async fn a_skip_happens_once_and_names_the_operator() {
    let r = memory();
    let uri = "/api/stored/hr.get%2F0%2F12/skip";
    let (status, v) = json(&r, Method::POST, uri, &[(OPERATOR_HEADER, "ana")]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["result"], "skipped");
    assert_eq!(v["request_id"], "hr.get/0/12");
    let (status, v) = json(&r, Method::POST, uri, &[(OPERATOR_HEADER, "bob")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["result"], "already-skipped");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("already skipped by operator:ana"),
        "{v}"
    );

    let (status, v) = json(&r, Method::POST, "/api/stored/hr.get%2F0%2F10/skip", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already replayed"));
    let (status, _) = json(&r, Method::POST, "/api/stored/nope/skip", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = json(&r, Method::POST, uri, &[(OPERATOR_HEADER, "a b")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = json(&r, Method::GET, uri, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["hint"], "skip is a POST request");
}

#[tokio::test]
async fn without_a_reachable_backlog_the_endpoints_say_so() {
    let none = router_over(None);
    let (status, v) = json(&none, Method::GET, LIST, &[]).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{v}");
    let down = router_over(Some(Arc::new(Unreachable)));
    let (status, v) = json(&down, Method::GET, LIST, &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("BrokerTransportFailure"));
    let (status, v) = json(&down, Method::POST, "/api/stored/x/skip", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{v}");
}
