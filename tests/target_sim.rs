//! The simulated target, driven in-process over real sockets on port 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sfwd::bindings::failure::chain_from_body;
use sfwd::target_sim::{Mode, Options, Schedule, TargetSim};

const LONG: Duration = Duration::from_secs(10);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

async fn start() -> TargetSim {
    TargetSim::start(any_port()).await.unwrap()
}

/// Sends `POST /employee` with the sfwd headers.
async fn send(client: &Client, sim: &TargetSim, id: &str) -> reqwest::Response {
    client
        .post(sim.url("/employee"))
        .header("sfwd-request-id", id)
        .header("sfwd-operation", "EmployeeQuery.getEmployee")
        .header("sfwd-key", "emp-7")
        .body(format!("{{\"id\":\"{id}\"}}"))
        .send()
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn ids(list: &[&str]) -> Vec<Option<String>> {
    list.iter().map(|s| Some(s.to_string())).collect()
}

#[tokio::test]
async fn up_answers_ok_and_records_the_request() {
    let sim = start().await;
    let client = client();
    let response = send(&client, &sim, "r-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(
        json_of(response).await,
        json!({ "ok": true, "request_id": "r-1" })
    );

    let received = sim.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r.request_id.as_deref(), Some("r-1"));
    assert_eq!(r.operation.as_deref(), Some("EmployeeQuery.getEmployee"));
    assert_eq!(r.key.as_deref(), Some("emp-7"));
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/employee");
    assert_eq!(r.body, br#"{"id":"r-1"}"#);
    assert_eq!(sim.attempts(), 1);

    // Any path and method is a request; one without headers is kept too.
    let response = client.get(sim.url("a/b?x=1")).send().await.unwrap();
    assert_eq!(
        json_of(response).await,
        json!({ "ok": true, "request_id": null })
    );
    let last = sim.received().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/a/b?x=1")
    );
    assert_eq!(last.request_id, None);
    sim.shutdown().await;
}

#[tokio::test]
async fn recorded_bodies_are_cut_to_1_kib() {
    let sim = start().await;
    let body = vec![b'x'; 100_000];
    let response = client()
        .put(sim.url("/big"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.received()[0].body, vec![b'x'; 1024]);
    sim.shutdown().await;
}

#[tokio::test]
async fn failure_modes_answer_their_status_and_record_nothing() {
    let sim = start().await;
    let client = client();

    sim.set_mode(Mode::Unavailable);
    assert_eq!(
        send(&client, &sim, "u").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    sim.set_mode(Mode::BadRequest);
    assert_eq!(
        send(&client, &sim, "b").await.status(),
        StatusCode::BAD_REQUEST
    );

    sim.set_mode(Mode::Error500);
    let response = send(&client, &sim, "e").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/json");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"exception": {"type": "EisConnectionLost", "message": "pool exhausted",
            "cause": {"type": "SQLException", "message": "connection refused by db-1:5432"}}})
    );
    // The HTTP binding reads it as the target's own chain.
    let chain = chain_from_body(&body, Some(&content_type)).expect("a chain body");
    let elements: Vec<(&str, &str)> = chain
        .elements()
        .iter()
        .map(|e| (e.type_name.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        elements,
        [
            ("EisConnectionLost", "pool exhausted"),
            ("SQLException", "connection refused by db-1:5432"),
        ]
    );

    assert!(sim.received().is_empty());
    assert_eq!(sim.attempts(), 3);

    sim.set_mode(Mode::Up);
    assert_eq!(send(&client, &sim, "ok").await.status(), StatusCode::OK);
    assert_eq!(sim.received_ids(), ids(&["ok"]));
    assert_eq!(sim.attempts(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn sequential_requests_are_recorded_in_order() {
    let sim = start().await;
    let client = client();
    let sent: Vec<String> = (0..100).map(|i| format!("seq-{i:03}")).collect();
    for id in &sent {
        assert_eq!(send(&client, &sim, id).await.status(), StatusCode::OK);
    }
    let expected: Vec<Option<String>> = sent.iter().cloned().map(Some).collect();
    assert_eq!(sim.received_ids(), expected);
    assert!(sim.duplicates().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_are_all_recorded_once() {
    let sim = start().await;
    let client = client();
    let sends = (0..50).map(|i| {
        let (client, sim) = (client.clone(), sim.clone());
        async move { send(&client, &sim, &format!("c-{i}")).await.status() }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    let mut got: Vec<String> = sim.received_ids().into_iter().map(Option::unwrap).collect();
    got.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(sim.attempts(), 50);
    assert!(sim.duplicates().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_for_wakes_at_the_nth_request() {
    let sim = start().await;
    let client = client();
    let waiter = tokio::spawn({
        let sim = sim.clone();
        async move { sim.wait_for(3, LONG).await }
    });
    for id in ["w-1", "w-2"] {
        send(&client, &sim, id).await;
        assert!(!waiter.is_finished(), "woke before the 3rd request");
    }
    // Failed requests do not count.
    sim.set_mode(Mode::Unavailable);
    send(&client, &sim, "w-x").await;
    assert!(!waiter.is_finished(), "woke on a 503");
    sim.set_mode(Mode::Up);
    send(&client, &sim, "w-3").await;
    waiter.await.unwrap().expect("woken by the 3rd request");

    // Already reached: returns at once.
    sim.wait_for(3, LONG).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_for_times_out_with_what_arrived() {
    let sim = start().await;
    send(&client(), &sim, "only").await;
    let got = sim
        .wait_for(2, Duration::from_millis(50))
        .await
        .unwrap_err();
    let got: Vec<_> = got.into_iter().map(|r| r.request_id).collect();
    assert_eq!(got, ids(&["only"]));
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_the_port_and_up_binds_it_again() {
    let sim = start().await;
    let addr = sim.addr();
    let client = client();
    assert_eq!(send(&client, &sim, "before").await.status(), StatusCode::OK);

    sim.apply(Mode::Refuse).await.unwrap();
    assert!(!sim.is_listening());
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // A new connection; one left open by `client` may still be closing.
    let err = self::client()
        .post(sim.url("/employee"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(sim.attempts(), 1, "a refused connection is no attempt");

    sim.apply(Mode::Up).await.unwrap();
    assert!(sim.is_listening());
    assert_eq!(sim.addr(), addr);
    assert_eq!(send(&client, &sim, "after").await.status(), StatusCode::OK);
    assert_eq!(sim.received_ids(), ids(&["before", "after"]));

    // Back and forth again, through a failure mode.
    sim.apply(Mode::Refuse).await.unwrap();
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    sim.apply(Mode::Unavailable).await.unwrap();
    assert_eq!(
        send(&client, &sim, "x").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn start_in_refuse_mode() {
    let options = Options {
        mode: Mode::Refuse,
        ..Options::new(any_port())
    };
    let sim = TargetSim::start_with(options).await.unwrap();
    sim.settled().await.unwrap();
    let err = tokio::net::TcpStream::connect(sim.addr())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    sim.apply(Mode::Up).await.unwrap();
    assert_eq!(send(&client(), &sim, "r").await.status(), StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_answers_after_the_delay() {
    let sim = start().await;
    let delay = Duration::from_millis(300);
    sim.set_mode(Mode::Slow { delay });
    let started = Instant::now();
    let response = send(&client(), &sim, "slow-1").await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(took >= delay, "answered after {took:?}");
    assert_eq!(sim.received_ids(), ids(&["slow-1"]));
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_unavailable_answers_503_after_the_delay_and_records_nothing() {
    let sim = start().await;
    let delay = Duration::from_millis(300);
    sim.set_mode(Mode::SlowUnavailable { delay });
    let started = Instant::now();
    let response = send(&client(), &sim, "down-1").await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took >= delay, "answered after {took:?}");
    assert_eq!(sim.attempts(), 1);
    assert!(sim.received_ids().is_empty(), "{:?}", sim.received_ids());
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_times_out_a_client_with_a_shorter_deadline() {
    let sim = start().await;
    sim.set_mode(Mode::Slow {
        delay: Duration::from_secs(30),
    });
    let err = client()
        .post(sim.url("/employee"))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(sim.attempts(), 1);
    // The request still waiting is answered at shutdown, not after 30s.
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicates_lists_ids_received_more_than_once() {
    let sim = start().await;
    let client = client();
    for id in ["a", "b", "a", "c", "a", "b"] {
        send(&client, &sim, id).await;
    }
    client.post(sim.url("/no-id")).send().await.unwrap();
    client.post(sim.url("/no-id")).send().await.unwrap();
    assert_eq!(
        sim.duplicates(),
        vec![("a".to_string(), 3), ("b".to_string(), 2)]
    );

    let response = client
        .get(sim.url("/_sim/duplicates"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(response).await,
        json!([{ "request_id": "a", "count": 3 }, { "request_id": "b", "count": 2 }])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn control_endpoints_switch_modes_and_report() {
    let sim = start().await;
    let client = client();
    let post = |path: &str| client.post(sim.url(path)).send();

    let response = post("/_sim/mode/unavailable").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await,
        json!({ "mode": "unavailable", "previous": "up", "listening": "open" })
    );
    assert_eq!(sim.mode(), Mode::Unavailable);
    assert_eq!(
        send(&client, &sim, "u").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    for (path, mode) in [
        ("/_sim/mode/error500", Mode::Error500),
        ("/_sim/mode/bad-request", Mode::BadRequest),
        (
            "/_sim/mode/slow?delay=300ms",
            Mode::Slow {
                delay: Duration::from_millis(300),
            },
        ),
        (
            "/_sim/mode/slow:2s",
            Mode::Slow {
                delay: Duration::from_secs(2),
            },
        ),
        ("/_sim/mode/up", Mode::Up),
    ] {
        assert_eq!(post(path).await.unwrap().status(), StatusCode::OK, "{path}");
        assert_eq!(sim.mode(), mode, "{path}");
    }

    for bad in [
        "/_sim/mode/down",
        "/_sim/mode/slow",
        "/_sim/mode/up?delay=1s",
    ] {
        let response = post(bad).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let error = json_of(response).await["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!error.is_empty(), "{bad}");
        assert_eq!(sim.mode(), Mode::Up, "{bad}");
    }
    let response = client.get(sim.url("/_sim/nothing")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    send(&client, &sim, "r-1").await;
    send(&client, &sim, "r-2").await;
    let response = client.get(sim.url("/_sim/received")).send().await.unwrap();
    assert_eq!(json_of(response).await, json!(["r-1", "r-2"]));
    let response = client.get(sim.url("/_sim/state")).send().await.unwrap();
    assert_eq!(
        json_of(response).await,
        json!({
            "mode": "up", "listening": true, "received": 2, "attempts": 3, "most_concurrent": 1,
            // One client, one kept-alive connection, for every request.
            "connections": 1
        })
    );

    assert_eq!(post("/_sim/reset").await.unwrap().status(), StatusCode::OK);
    assert!(sim.received().is_empty());
    assert_eq!(sim.attempts(), 0);
    assert_eq!(sim.most_concurrent(), 0, "reset too");
    let response = client.get(sim.url("/_sim/state")).send().await.unwrap();
    assert_eq!(json_of(response).await["received"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_through_the_control_listener_and_back() {
    let options = Options {
        control_listen: Some(any_port()),
        ..Options::new(any_port())
    };
    let sim = TargetSim::start_with(options).await.unwrap();
    let control = sim.control_addr().unwrap();
    let client = client();
    let control_url = |path: &str| format!("http://{control}{path}");

    // The main port answers once the listener is closed.
    let response = client
        .post(sim.url("/_sim/mode/refuse"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await["listening"], "closed");
    let err = tokio::net::TcpStream::connect(sim.addr())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    // The control listener is still up.
    let response = client.get(control_url("/_sim/state")).send().await.unwrap();
    let state = json_of(response).await;
    assert_eq!(
        (&state["mode"], &state["listening"]),
        (&json!("refuse"), &json!(false))
    );

    let response = client
        .post(control_url("/_sim/mode/up"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await["listening"], "open");
    assert_eq!(send(&client, &sim, "back").await.status(), StatusCode::OK);

    // The control listener serves no requests to the target.
    let response = client.post(control_url("/employee")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.attempts(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = start().await;
    let addr = sim.addr();
    send(&client(), &sim, "x").await;
    sim.clone().shutdown().await;
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(sim.settled().await.is_err());
}

/// The modes `sim` goes through until `until` says stop, as they change.
async fn follow_modes(sim: &TargetSim, until: impl Fn(&[Mode]) -> bool) -> Vec<Mode> {
    let mut modes = sim.subscribe_mode();
    let mut seen = Vec::new();
    while !until(&seen) {
        tokio::time::timeout(LONG, modes.changed())
            .await
            .expect("the mode changes")
            .unwrap();
        seen.push(*modes.borrow_and_update());
    }
    seen
}

#[tokio::test]
async fn a_schedule_runs_once_and_stays_in_its_last_mode() {
    let sim = start().await;
    let schedule: Schedule = "unavailable:200ms,bad-request:100ms,up".parse().unwrap();
    let started = Instant::now();
    let run = tokio::spawn({
        let sim = sim.clone();
        async move { sim.run_schedule(&schedule).await }
    });
    let seen = follow_modes(&sim, |seen| seen.last() == Some(&Mode::Up)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(seen, [Mode::Unavailable, Mode::BadRequest, Mode::Up]);
    tokio::time::timeout(LONG, run).await.unwrap().unwrap();
    assert_eq!(sim.mode(), Mode::Up);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_schedule_with_every_duration_repeats() {
    let sim = start().await;
    let schedule: Schedule = "error500:100ms,unavailable:100ms".parse().unwrap();
    let run = tokio::spawn({
        let sim = sim.clone();
        async move { sim.run_schedule(&schedule).await }
    });
    let seen = follow_modes(&sim, |seen| seen.len() == 6).await;
    assert_eq!(seen, [Mode::Error500, Mode::Unavailable].repeat(3));
    assert!(!run.is_finished());
    // Shutdown ends the schedule too.
    sim.shutdown().await;
    tokio::time::timeout(LONG, run).await.unwrap().unwrap();
}

#[test]
fn bad_schedules_are_refused_with_every_problem() {
    let err = "up:10s,sideways:5s,unavailable,slow"
        .parse::<Schedule>()
        .unwrap_err();
    let steps: Vec<usize> = err.problems.iter().map(|p| p.step).collect();
    assert_eq!(steps, [2, 3, 4]);
    let text = err.to_string();
    assert!(text.contains("unknown mode `sideways`"), "{text}");
    assert!(
        text.contains("only the last step may leave out its duration"),
        "{text}"
    );
    assert!(text.contains("`slow` needs a delay"), "{text}");
}

/// The binary: starts, serves, follows its schedule, stops on SIGTERM.
#[test]
fn the_command_serves_until_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args(["target-sim", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--schedule", "bad-request"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    // Wait for the ready line and the schedule's only step.
    while !(log.contains("target-sim ready") && log.contains("schedule step")) {
        let line = lines.next().expect("the log ended early").unwrap();
        log.push_str(&line);
        log.push('\n');
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        client()
            .post(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{log}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("target-sim stopped")),
        "{rest:?}"
    );
}

#[test]
fn the_command_refuses_a_bad_schedule() {
    let output = Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args([
            "target-sim",
            "--listen",
            "127.0.0.1:0",
            "--schedule",
            "up:10s,down",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("step 2 `down`: unknown mode `down`"),
        "{stderr}"
    );
}
