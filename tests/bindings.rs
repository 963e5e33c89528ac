//! The HTTP and Kafka bindings against a real HTTP server on a loopback
//! port and a real broker (`SFWD_TEST_BOOTSTRAP`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use rdkafka::message::{Headers, Message};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use sfwd::bindings::failure::{chain_for, Failure};
use sfwd::bindings::{
    invoke, HttpTarget, KafkaTarget, Request, Response, Target, KEY_HEADER, OPERATION_HEADER,
    REQUEST_ID_HEADER,
};
use sfwd::rules::{SERVICE_BUSINESS, SERVICE_RUNTIME, SERVICE_TIMEOUT, SERVICE_UNAVAILABLE};
use sfwd::topology::{HttpBinding, KafkaBinding, RetryPolicy};

/// What a handler saw of one request.
#[derive(Debug)]
struct Seen {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A server whose `/` answers `status` with `body` of `content_type`, and
/// reports every request it gets.
async fn answering(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/",
        any(move |headers: HeaderMap, body_in: Bytes| async move {
            let _ = tx.send(Seen {
                headers,
                body: body_in.to_vec(),
            });
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                body,
            )
        }),
    );
    (serve(app).await, rx)
}

fn binding(url: &str, timeout: Duration) -> HttpBinding {
    HttpBinding {
        url: url.to_string(),
        method: "POST".into(),
        timeout,
        headers: BTreeMap::new(),
        in_flight: 1,
        ordering: Default::default(),
        rate: None,
    }
}

fn http(url: &str) -> HttpTarget {
    HttpTarget::new(&binding(url, Duration::from_secs(10))).unwrap()
}

fn request() -> Request {
    Request {
        request_id: "orders/3/1017".into(),
        service: "orders".into(),
        interface: "Orders".into(),
        operation: "create".into(),
        key: Some(b"order-17".to_vec()),
        value: Some(vec![0, 1, 2, 0xff, b'{', b'}']),
        headers: vec![
            ("traceparent".into(), Some(b"00-abc-def-01".to_vec())),
            ("tenant".into(), Some(b"acme".to_vec())),
        ],
    }
}

fn types(failure: &Failure) -> Vec<String> {
    chain_for(failure)
        .elements()
        .iter()
        .map(|e| e.type_name.clone())
        .collect()
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_2xx_answer_is_a_response_and_the_target_sees_the_request() {
    let (url, mut seen) = answering(200, "text/plain; charset=utf-8", "accepted").await;
    let mut b = binding(&format!("{url}/"), Duration::from_secs(10));
    b.headers.insert("X-Tenant".into(), "acme".into());
    b.headers
        .insert("Authorization".into(), "Bearer t0k3n".into());
    let target = HttpTarget::new(&b).unwrap();

    let response = target.call(&request()).await.unwrap();
    assert_eq!(
        response,
        Response {
            status: Some(200),
            body: b"accepted".to_vec(),
            content_type: Some("text/plain; charset=utf-8".into()),
        }
    );

    let got = seen.recv().await.unwrap();
    assert_eq!(got.body, request().value.unwrap());
    let h = &got.headers;
    assert_eq!(text(h, REQUEST_ID_HEADER).as_deref(), Some("orders/3/1017"));
    assert_eq!(text(h, OPERATION_HEADER).as_deref(), Some("Orders.create"));
    assert_eq!(text(h, KEY_HEADER).as_deref(), Some("order-17"));
    assert_eq!(
        text(h, "content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(text(h, "x-tenant").as_deref(), Some("acme"));
    assert_eq!(text(h, "authorization").as_deref(), Some("Bearer t0k3n"));
    // Kafka headers are not forwarded.
    assert_eq!(text(h, "traceparent"), None);
    assert_eq!(text(h, "tenant"), None);
}

#[tokio::test]
async fn binary_keys_and_missing_values_are_sent_as_such() {
    let (url, mut seen) = answering(204, "text/plain", "").await;
    let mut b = binding(&url, Duration::from_secs(10));
    b.headers
        .insert("content-type".into(), "application/json".into());
    let target = HttpTarget::new(&b).unwrap();
    let mut r = request();
    r.key = Some(vec![0xff, 0xfe]);
    r.value = None;
    let response = target.call(&r).await.unwrap();
    assert_eq!(response.status, Some(204));
    let got = seen.recv().await.unwrap();
    assert!(got.body.is_empty());
    assert_eq!(text(&got.headers, KEY_HEADER), None);
    assert_eq!(
        text(&got.headers, "content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test]
async fn a_503_is_an_unavailable_service() {
    let (url, _seen) = answering(503, "text/plain", "down for maintenance").await;
    let failure = http(&url).call(&request()).await.unwrap_err();
    match &failure {
        Failure::HttpStatus {
            method,
            status,
            reason,
            body,
            content_type,
            ..
        } => {
            assert_eq!(method, "POST");
            assert_eq!(*status, 503);
            assert_eq!(reason, "Service Unavailable");
            assert_eq!(body, b"down for maintenance");
            assert_eq!(content_type.as_deref(), Some("text/plain"));
        }
        other => panic!("expected an HTTP status failure, got {other:?}"),
    }
    let chain = chain_for(&failure);
    assert_eq!(chain.top_level().unwrap().type_name, SERVICE_UNAVAILABLE);
    assert_eq!(
        chain.top_level().unwrap().message,
        format!("POST {url}: HTTP 503 Service Unavailable")
    );
}

#[tokio::test]
async fn a_500_with_a_chain_body_carries_the_targets_exceptions() {
    const BODY: &str = r#"{"exception": {"type": "EisConnectionLost", "message": "pool exhausted",
        "cause": {"type": "SQLException", "message": "connection refused by db-1"}}}"#;
    let (url, _seen) = answering(500, "application/json", BODY).await;
    let failure = http(&url).call(&request()).await.unwrap_err();
    assert_eq!(
        types(&failure),
        [
            SERVICE_RUNTIME,
            "HttpStatusException",
            "EisConnectionLost",
            "SQLException"
        ]
    );
}

#[tokio::test]
async fn a_404_is_a_business_answer() {
    let (url, _seen) = answering(404, "text/plain", "no such order").await;
    let failure = http(&url).call(&request()).await.unwrap_err();
    assert_eq!(types(&failure), [SERVICE_BUSINESS, "HttpStatusException"]);
}

#[tokio::test]
async fn error_bodies_are_kept_up_to_64_kib() {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let big: &'static str = BIG.get_or_init(|| "x".repeat(200 * 1024));
    let (url, _seen) = answering(502, "text/plain", big).await;
    match http(&url).call(&request()).await.unwrap_err() {
        Failure::HttpStatus { status, body, .. } => {
            assert_eq!(status, 502);
            assert_eq!(body.len(), 64 * 1024);
        }
        other => panic!("expected an HTTP status failure, got {other:?}"),
    }
}

#[tokio::test]
async fn redirects_are_failures_and_not_followed() {
    let (tx, mut followed) = mpsc::unbounded_channel::<()>();
    let app = Router::new()
        .route(
            "/old",
            post(|| async { (StatusCode::FOUND, [("location", "/new")], "moved") }),
        )
        .route(
            "/new",
            any(move || async move {
                let _ = tx.send(());
                "here"
            }),
        );
    let url = format!("{}/old", serve(app).await);
    let failure = http(&url).call(&request()).await.unwrap_err();
    assert!(
        matches!(failure, Failure::HttpStatus { status: 302, .. }),
        "{failure:?}"
    );
    assert_eq!(types(&failure), [SERVICE_RUNTIME, "HttpStatusException"]);
    assert!(followed.try_recv().is_err(), "the redirect was followed");
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_a_timeout() {
    let (tx, mut entered) = mpsc::unbounded_channel::<()>();
    let app = Router::new().route(
        "/",
        post(move || async move {
            let _ = tx.send(());
            std::future::pending::<()>().await
        }),
    );
    let url = serve(app).await;
    let target = HttpTarget::new(&binding(&url, Duration::from_millis(200))).unwrap();
    let failure = target.call(&request()).await.unwrap_err();
    assert_eq!(
        failure,
        Failure::Timeout {
            method: "POST".into(),
            url: url.clone(),
            after: Duration::from_millis(200),
        }
    );
    entered.recv().await.expect("the handler was reached");
    let chain = chain_for(&failure);
    assert_eq!(chain.top_level().unwrap().type_name, SERVICE_TIMEOUT);
    assert_eq!(
        chain.top_level().unwrap().message,
        format!("POST {url}: no answer within 200ms")
    );
}

#[tokio::test]
async fn a_closed_port_is_a_refused_connection() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/orders");
    let failure = http(&url).call(&request()).await.unwrap_err();
    match &failure {
        Failure::ConnectRefused { url: u, detail } => {
            assert_eq!(u, &url);
            assert!(detail.to_lowercase().contains("refused"), "{detail}");
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    assert_eq!(types(&failure), [SERVICE_UNAVAILABLE, "ConnectException"]);
}

#[tokio::test]
async fn an_unknown_host_is_a_dns_failure() {
    let url = "http://sfwd-no-such-host.invalid/orders";
    let failure = http(url).call(&request()).await.unwrap_err();
    match &failure {
        Failure::Dns { url: u, host, .. } => {
            assert_eq!(u, url);
            assert_eq!(host, "sfwd-no-such-host.invalid");
        }
        other => panic!("expected a DNS failure, got {other:?}"),
    }
    assert_eq!(
        types(&failure),
        [SERVICE_UNAVAILABLE, "UnknownHostException"]
    );
}

/// A TLS client talking to a plain HTTP server fails in the handshake,
/// which the binding reports as a TLS failure.
#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_failure() {
    let (url, _seen) = answering(200, "text/plain", "plain").await;
    let url = url.replace("http://", "https://");
    let failure = http(&url).call(&request()).await.unwrap_err();
    assert!(matches!(failure, Failure::Tls { .. }), "{failure:?}");
    assert_eq!(types(&failure), [SERVICE_RUNTIME, "TlsException"]);
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_broken() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the request head, then hang up without answering.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let failure = http(&url).call(&request()).await.unwrap_err();
    assert!(matches!(failure, Failure::Io { .. }), "{failure:?}");
    assert_eq!(types(&failure), [SERVICE_RUNTIME, "IoException"]);
}

/// `/` answers 503 `failures` times, then 200; returns the URL and the
/// count of calls.
async fn flaky(failures: u32, then: u16) -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/",
        post(move || async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = if n < failures { 503 } else { then };
            StatusCode::from_u16(status).unwrap()
        }),
    );
    (serve(app).await, calls)
}

fn retry(attempts: u32) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        attempts,
        backoff: Duration::from_millis(10),
    })
}

#[tokio::test]
async fn retries_until_the_target_answers() {
    let (url, calls) = flaky(2, 200).await;
    let target = Target::Http(http(&url));
    let invocation = invoke(&target, retry(5), &request()).await;
    assert_eq!(invocation.result.unwrap().status, Some(200));
    assert_eq!(invocation.attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let (url, calls) = flaky(10, 200).await;
    let target = Target::Http(http(&url));
    let invocation = invoke(&target, retry(3), &request()).await;
    assert!(matches!(
        invocation.result,
        Err(Failure::HttpStatus { status: 503, .. })
    ));
    assert_eq!(invocation.attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn business_answers_are_not_retried() {
    let (url, calls) = flaky(0, 404).await;
    let target = Target::Http(http(&url));
    let invocation = invoke(&target, retry(5), &request()).await;
    assert!(matches!(
        invocation.result,
        Err(Failure::HttpStatus { status: 404, .. })
    ));
    assert_eq!(invocation.attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_policy_the_target_is_called_once() {
    let (url, calls) = flaky(1, 200).await;
    let target = Target::Http(http(&url));
    let invocation = invoke(&target, None, &request()).await;
    assert!(invocation.result.is_err());
    assert_eq!(invocation.attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// --- Kafka -------------------------------------------------------------

fn kafka_target(
    topic: &str,
    timeout: Duration,
    producer: rdkafka::producer::FutureProducer,
) -> Target {
    Target::Kafka(KafkaTarget::new(
        &KafkaBinding {
            topic: topic.to_string(),
            timeout,
            in_flight: 1,
        },
        producer,
    ))
}

#[tokio::test]
async fn kafka_keeps_key_value_and_headers_in_order() {
    let topic = common::unique("bindings-out");
    common::create_topics(&[(&topic, 1)]).await;
    let target = kafka_target(&topic, Duration::from_secs(20), common::producer());
    assert_eq!(target.describe(), format!("kafka {topic}"));
    let mut r = request();
    r.headers = vec![
        ("trace".into(), Some(b"t-1".to_vec())),
        ("dup".into(), Some(b"first".to_vec())),
        ("binary".into(), Some(vec![0, 0x9f, 0xff])),
        ("dup".into(), Some(b"second".to_vec())),
    ];
    let response = target.call(&r).await.unwrap();
    assert_eq!(response, Response::default());

    let read =
        tokio::task::spawn_blocking(move || common::read_topic(&topic, 1, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(read.len(), 1);
    let m = &read[0];
    assert_eq!(m.key(), Some(&b"order-17"[..]));
    assert_eq!(m.payload(), r.value.as_deref());
    let headers: Vec<(String, Option<Vec<u8>>)> = m
        .headers()
        .unwrap()
        .iter()
        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
        .collect();
    let mut want = r.headers.clone();
    want.push((REQUEST_ID_HEADER.into(), Some(b"orders/3/1017".to_vec())));
    want.push((OPERATION_HEADER.into(), Some(b"Orders.create".to_vec())));
    assert_eq!(headers, want);
}

#[tokio::test]
async fn kafka_refuses_a_message_over_the_size_limit() {
    let topic = common::unique("bindings-big");
    common::create_topics(&[(&topic, 1)]).await;
    let mut config = common::client_config();
    config.set("acks", "all").set("message.max.bytes", "1000");
    let target = kafka_target(&topic, Duration::from_secs(10), config.create().unwrap());
    let mut r = request();
    r.value = Some(vec![7; 4000]);
    let failure = target.call(&r).await.unwrap_err();
    match &failure {
        Failure::Kafka {
            topic: t,
            code,
            retriable,
            ..
        } => {
            assert_eq!(t, &topic);
            assert_eq!(code, "MessageSizeTooLarge");
            assert!(!retriable);
        }
        other => panic!("expected a Kafka failure, got {other:?}"),
    }
    assert_eq!(types(&failure), [SERVICE_RUNTIME, "KafkaException"]);
    let invocation = invoke(&target, retry(3), &r).await;
    assert_eq!(invocation.attempts, 1, "a size error is not retried");
}

/// The test broker creates missing topics on first produce, so a topic
/// name it refuses stands in for a topic that cannot be written.
#[tokio::test]
async fn kafka_reports_the_brokers_error_code() {
    let target = kafka_target(
        "not a topic/name",
        Duration::from_secs(10),
        common::producer(),
    );
    let failure = target.call(&request()).await.unwrap_err();
    assert_eq!(
        failure,
        Failure::Kafka {
            topic: "not a topic/name".into(),
            code: "InvalidTopic".into(),
            detail: "Broker: Invalid topic".into(),
            retriable: false,
        }
    );
    assert_eq!(types(&failure), [SERVICE_RUNTIME, "KafkaException"]);
    let chain = chain_for(&failure);
    assert_eq!(
        chain.top_level().unwrap().message,
        "produce to topic not a topic/name failed: InvalidTopic"
    );
}

/// librdkafka keeps messages queued while no broker is up; the binding
/// tells that outage from a slow cluster when its timeout passes.
#[tokio::test]
async fn kafka_unreachable_cluster_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = sfwd::kafka::client_config_from(&format!("127.0.0.1:{port}"), &BTreeMap::new());
    let producer = config.clone().set("acks", "all").create().unwrap();
    let target = kafka_target("nowhere", Duration::from_millis(500), producer);
    let failure = target.call(&request()).await.unwrap_err();
    match &failure {
        Failure::Kafka {
            code, retriable, ..
        } => {
            assert_eq!(code, "AllBrokersDown");
            assert!(retriable);
        }
        other => panic!("expected a Kafka failure, got {other:?}"),
    }
    assert_eq!(types(&failure), [SERVICE_UNAVAILABLE, "KafkaException"]);
}
