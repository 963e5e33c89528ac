//! The admin HTTP server of a running `sfwd run`, against a real broker:
//! health and readiness, the control-point API with operator store and
//! forward, and Prometheus metrics that move as requests flow.

mod common;

use std::time::{Duration, Instant};

use common::admin::{call, get, get_json, metric, post_json, wait_eis};
use common::app::{produce_queries, query_app, start_target};
use common::process::{message, Sfwd};
use sfwd::target_sim::Mode;

/// Scrapes `/metrics` until `check` holds, or panics with the last scrape.
async fn scrape_until(base: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        if check(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!("metrics never showed {what}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_control_points_and_takes_operator_commands() {
    let sim = start_target().await;
    let app = query_app("admin-api", &sim).await;
    let (mut a, base) = app.start_with_admin("a");

    let (status, v) = get_json(&format!("{base}/healthz")).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")));
    let (status, v) = get_json(&format!("{base}/readyz")).await;
    assert_eq!((status, v["instance"].as_str()), (200, Some("a")));
    let (status, html) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<dialog"));

    let (status, v) = get_json(&format!("{base}/api/control-points")).await;
    assert_eq!(status, 200);
    assert_eq!(v["instance"], "a");
    assert_eq!(v["ready"], true);
    let eis = &v["control_points"][0];
    assert_eq!(eis["name"], "Eis");
    assert_eq!(eis["service"], "eis");
    assert_eq!(eis["state"], "FORWARD");
    assert_eq!(eis["epoch"], 0);
    assert_eq!(eis["stored_backlog"], 0, "{v}");

    // Store: published, applied by the control writer, seen in the table.
    let (status, v) = post_json(
        &format!("{base}/api/control-points/Eis/store"),
        r#"{"operator":"alice"}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "applied", "{v}");
    assert_eq!(v["control_point"]["state"], "STORE");
    assert_eq!(v["control_point"]["epoch"], 1);
    assert_eq!(v["control_point"]["by"], "operator:alice");
    a.wait_for("the writer applied it", Duration::from_secs(30), |l| {
        common::process::message(l) == "control point changed"
            && common::process::field(l, "by") == "operator:alice"
    });

    // Requests are stored now; the backlog shows them.
    produce_queries(&app, 0, 6).await;
    wait_eis(&base, "a backlog of 6", |v| v["stored_backlog"] == 6).await;

    // Store again: the state machine's no-op, nothing published.
    let (status, v) = post_json(&format!("{base}/api/control-points/Eis/store"), "").await;
    assert_eq!(status, 200);
    assert_eq!(v["result"], "no-op");
    assert_eq!(v["message"], "already storing (epoch 1); nothing changed");

    // Unknown names: 404 with a did-you-mean.
    let (status, v) = post_json(&format!("{base}/api/control-points/Eiss/forward"), "").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "unknown control point `Eiss`");
    assert_eq!(v["hint"], "did you mean `Eis`?");

    // Forward: the backlog is replayed and drains.
    let (status, v) = post_json(&format!("{base}/api/control-points/Eis/forward"), "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "applied");
    assert_eq!(v["control_point"]["by"], "operator:admin-http");
    sim.wait_for(6, Duration::from_secs(60)).await.unwrap();
    let v = wait_eis(&base, "the replay caught up", |v| {
        v["stored_backlog"] == 0 && v["replaying"] == false
    })
    .await;
    assert_eq!(v["state"], "FORWARD");
    assert_eq!(v["cause"], "replay-caught-up");

    let (status, v) = get_json(&format!("{base}/api/nope")).await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().is_some() && v.get("hint").is_some());

    // Oversized requests get the same JSON error, through the real socket.
    let long = format!("{base}/api/control-points?{}", "x".repeat(9000));
    let (status, _, v) = call("GET", &long, &[], "").await;
    assert_eq!(status, 414, "{v}");
    assert!(
        v["error"].as_str().is_some() && v.get("hint").is_some(),
        "{v}"
    );
    let filler = "y".repeat(1000);
    let names: Vec<String> = (0..40).map(|i| format!("x-filler-{i}")).collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), filler.as_str()))
        .collect();
    let (status, _, v) = call("GET", &format!("{base}/api/control-points"), &headers, "").await;
    assert_eq!(status, 431, "{v}");
    assert!(v["error"].as_str().is_some(), "{v}");
    let big = format!(r#"{{"operator": "{}"}}"#, "a".repeat(70 * 1024));
    let (status, v) = post_json(&format!("{base}/api/control-points/Eis/store"), &big).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["hint"].as_str().is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_as_requests_flow() {
    let sim = start_target().await;
    let app = query_app("admin-metrics", &sim).await;
    let (_a, base) = app.start_with_admin("m");
    let me = ("instance_id", "m");

    let text = scrape_until(&base, "the instance ready", |t| {
        metric(t, "sfwd_instance_ready", &[me]) == 1.0
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "sfwd_control_point_state",
            &[me, ("control_point", "Eis")]
        ),
        0.0
    );

    // Up: every request delivered, each call timed.
    produce_queries(&app, 0, 20).await;
    sim.wait_for(20, Duration::from_secs(60)).await.unwrap();
    let delivered = [
        me,
        ("service", "eis"),
        ("operation", "get"),
        ("outcome", "delivered"),
    ];
    let text = scrape_until(&base, "20 deliveries", |t| {
        metric(t, "sfwd_requests_total", &delivered) == 20.0
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "sfwd_target_call_seconds_count",
            &[me, ("service", "eis"), ("outcome", "ok")]
        ),
        20.0
    );
    assert!(
        text.contains("sfwd_target_call_seconds_bucket{"),
        "a real histogram"
    );

    // Down: one trigger to the failed events, the rest stored, state STORE.
    sim.set_mode(Mode::Unavailable);
    produce_queries(&app, 20, 10).await;
    let text = scrape_until(&base, "9 stored and the trigger", |t| {
        metric(t, "sfwd_stored_total", &[me, ("control_point", "Eis")]) == 9.0
            && metric(t, "sfwd_failed_total", &[me, ("reason", "store-trigger")]) == 1.0
    })
    .await;
    assert_eq!(
        metric(&text, "sfwd_requests_total", &[me, ("outcome", "stored")]),
        9.0
    );
    assert_eq!(
        metric(&text, "sfwd_requests_total", &[me, ("outcome", "failed")]),
        1.0
    );
    // The trigger is the control point's one failed event.
    let (status, v) = get_json(&format!("{base}/api/failed?control_point=Eis")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["failed_events"][0]["reason"], "store-trigger");
    let (_, v) = get_json(&format!("{base}/api/control-points/Eis")).await;
    assert_eq!(v["failed"], 1, "{v}");
    let text = scrape_until(&base, "the state gauge at 1 (store)", |t| {
        metric(
            t,
            "sfwd_control_point_state",
            &[me, ("control_point", "Eis")],
        ) == 1.0
    })
    .await;
    assert!(
        metric(
            &text,
            "sfwd_state_change_to_act_seconds_count",
            &[me, ("control_point", "Eis"), ("state", "store")]
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &text,
            "sfwd_control_commands_total",
            &[me, ("command", "trigger"), ("outcome", "applied")]
        ),
        1.0
    );

    // Forward: the 9 are replayed, then the state is back to 0.
    sim.set_mode(Mode::Up);
    let (status, _) = post_json(&format!("{base}/api/control-points/Eis/forward"), "").await;
    assert_eq!(status, 200);
    scrape_until(&base, "9 replayed and forwarding", |t| {
        metric(t, "sfwd_replayed_total", &[me, ("control_point", "Eis")]) == 9.0
            && metric(
                t,
                "sfwd_control_point_state",
                &[me, ("control_point", "Eis")],
            ) == 0.0
    })
    .await;

    // New requests flow again; librdkafka's statistics then show the lag
    // of each owned partition, drained.
    produce_queries(&app, 30, 3).await;
    sim.wait_for(20 + 9 + 3, Duration::from_secs(60))
        .await
        .unwrap();
    let topic = app.topic("get");
    scrape_until(&base, "the consumer lag of every partition at 0", |t| {
        (0..3).all(|p| {
            let labels = [me, ("topic", topic.as_str()), ("partition", &p.to_string())];
            t.lines().any(|l| {
                l.starts_with("sfwd_kafka_consumer_lag{")
                    && labels
                        .iter()
                        .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            }) && metric(t, "sfwd_kafka_consumer_lag", &labels) == 0.0
        }) && metric(t, "sfwd_kafka_brokers_up", &[me]) >= 1.0
    })
    .await;
}

const ALICE: &str = "alice-0123456789abcdef0123456789";
const VIKTOR: &str = "viktor-0123456789abcdef012345678";

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_viewers_read_operators_act_and_the_principal_is_recorded() {
    let sim = start_target().await;
    let app = query_app("admin-auth", &sim).await;
    let tokens = app.dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# who may use the admin server\nalice:operator:{ALICE}\nviktor:viewer:{VIKTOR}\n"),
    )
    .unwrap();
    let source = format!("file:{}", tokens.display());
    let mut a = Sfwd::start_with(
        &app.topology,
        "a",
        app.dir.path(),
        &["--admin-listen", "127.0.0.1:0", "--admin-tokens", &source],
    );
    a.wait_ready();
    let base = format!("http://{}", a.admin_addr());
    a.wait_for(
        "the access mode said at start",
        Duration::from_secs(10),
        |l| {
            message(l) == "admin server with tokens: viewers read, operators act"
                && l["tokens"] == 2
        },
    );
    let list = format!("{base}/api/control-points");
    let store = format!("{base}/api/control-points/Eis/store");
    let alice = format!("Bearer {ALICE}");
    let viktor = format!("Bearer {VIKTOR}");

    // Probes, scrapes and the static page need no token.
    for open in ["/healthz", "/readyz", "/metrics", "/"] {
        let (status, _) = get(&format!("{base}{open}")).await;
        assert_eq!(status, 200, "{open}");
    }
    // No token, a wrong one, another scheme: 401 with a challenge.
    for headers in [
        vec![],
        vec![("authorization", "Bearer not-a-token-of-this-server")],
        vec![("authorization", "Basic YWxpY2U6eA==")],
    ] {
        let (status, challenge, v) = call("GET", &list, &headers, "").await;
        assert_eq!(status, 401, "{headers:?}: {v}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"sfwd\""));
        assert!(v["hint"].as_str().unwrap().contains("Bearer"), "{v}");
    }
    // A viewer reads, and may not act.
    let (status, _, v) = call("GET", &list, &[("authorization", &viktor)], "").await;
    assert_eq!(
        (status, v["control_points"][0]["name"].as_str()),
        (200, Some("Eis"))
    );
    let (status, _, v) = call(
        "GET",
        &format!("{base}/api/session"),
        &[("authorization", &viktor)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            v["principal"].as_str(),
            v["role"].as_str(),
            v["can_act"].as_bool()
        ),
        (Some("viktor"), Some("viewer"), Some(false))
    );
    let (status, _, v) = call("POST", &store, &[("authorization", &viktor)], "").await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"], "`viktor` is a viewer: only an operator may act");
    // A foreign Host (DNS rebinding) is refused even with a good token.
    let (status, _, v) = call(
        "GET",
        &list,
        &[("authorization", &alice), ("host", "rebound.example:9464")],
        "",
    )
    .await;
    assert_eq!(status, 421, "{v}");
    assert!(
        v["hint"]
            .as_str()
            .unwrap()
            .contains("--admin-allowed-hosts"),
        "{v}"
    );
    // A cross-site action is refused even with a good token.
    let (status, _, v) = call(
        "POST",
        &store,
        &[("authorization", &alice), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("cross-site action refused"),
        "{v}"
    );
    let (_, _, v) = call(
        "GET",
        &format!("{base}/api/control-points/Eis"),
        &[("authorization", &alice)],
        "",
    )
    .await;
    assert_eq!(
        (v["state"].as_str(), v["epoch"].as_u64()),
        (Some("FORWARD"), Some(0)),
        "nothing refused changed anything"
    );

    // An operator acts; the command records the token's principal, not the
    // name the client sends.
    let (status, _, v) = call(
        "POST",
        &store,
        &[
            ("authorization", &alice),
            ("content-type", "application/json"),
        ],
        r#"{"operator":"mallory"}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "applied");
    assert_eq!(v["control_point"]["by"], "operator:alice");
    a.wait_for(
        "the writer applied alice's command",
        Duration::from_secs(30),
        |l| {
            message(l) == "control point changed"
                && common::process::field(l, "by") == "operator:alice"
        },
    );
    a.terminate();
}

/// The first address of this machine that is not loopback, as seen by a
/// socket routed outwards (no packet is sent).
fn outward_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("this test needs a network interface besides loopback (any route will do)");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tokens_actions_come_only_from_loopback_and_only_marked() {
    let sim = start_target().await;
    let app = query_app("admin-open", &sim).await;
    let mut a = Sfwd::start_with(
        &app.topology,
        "a",
        app.dir.path(),
        &["--admin-listen", "0.0.0.0:0"],
    );
    a.wait_ready();
    let port = a.admin_addr().port();
    let line = a.wait_for(
        "the access mode said at start",
        Duration::from_secs(10),
        |l| message(l).starts_with("admin server without tokens"),
    );
    assert!(
        message(&line).contains("refused except from loopback"),
        "{line}"
    );
    let outward = outward_address();
    // The outward address is not an allowed host name by default.
    let (status, _, v) = call(
        "GET",
        &format!("http://{outward}:{port}/api/control-points"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 421, "{v}");
    a.terminate();

    let host = outward.to_string();
    let mut b = Sfwd::start_with(
        &app.topology,
        "b",
        app.dir.path(),
        &[
            "--admin-listen",
            "0.0.0.0:0",
            "--admin-allowed-hosts",
            &host,
        ],
    );
    b.wait_ready();
    let port = b.admin_addr().port();
    let allowed = format!("http://{outward}:{port}/api/control-points");
    let remote = format!("http://{outward}:{port}/api/control-points/Eis/store");
    let local = format!("http://127.0.0.1:{port}/api/control-points/Eis/store");
    // From another address: reads yes, actions no.
    let (status, _, _) = call("GET", &allowed, &[], "").await;
    assert_eq!(status, 200);
    let (status, _, v) = call("POST", &remote, &[("x-sfwd-request", "1")], "").await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("came from {outward}")),
        "{v}"
    );

    // From loopback: only with the header a cross-site page cannot send.
    let (status, _, v) = call("POST", &local, &[], "").await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("x-sfwd-request"),
        "{v}"
    );
    let (status, _, v) = call("POST", &local, &[("x-sfwd-request", "1")], "").await;
    assert!(
        status == 200 || status == 202 && v["result"] == "pending",
        "{status} {v}"
    );
    wait_eis(
        &format!("http://127.0.0.1:{port}"),
        "the store applied",
        |v| v["state"] == "STORE",
    )
    .await;
    b.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_server_speaks_https_with_the_given_certificate() {
    let sim = start_target().await;
    let app = query_app("admin-tls", &sim).await;
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_file = app.dir.path().join("admin.crt");
    let key_file = app.dir.path().join("admin.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key_pair.serialize_pem()).unwrap();

    // A key that is not one: sfwd refuses to start and names the file.
    let wrong = app.dir.path().join("wrong.key");
    std::fs::write(&wrong, "not a key\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args(["run", "--topology"])
        .arg(&app.topology)
        .args(["--admin-listen", "127.0.0.1:0", "--admin-tls-cert"])
        .arg(&cert_file)
        .arg("--admin-tls-key")
        .arg(&wrong)
        .args(["--data-dir"])
        .arg(app.dir.path().join("wrong"))
        .env("SFWD_BOOTSTRAP", common::bootstrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--admin-tls-key") && stderr.contains("wrong.key: no usable private key"),
        "{stderr}"
    );

    let mut a = Sfwd::start_with(
        &app.topology,
        "a",
        app.dir.path(),
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-tls-cert",
            cert_file.to_str().unwrap(),
            "--admin-tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    a.wait_ready();
    let port = a.admin_addr().port();
    let line = a.wait_for("admin listening", Duration::from_secs(10), |l| {
        message(l) == "admin listening"
    });
    assert_eq!(line["scheme"], "https");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/api/control-points"))
        .send()
        .await
        .expect("HTTPS with the server's certificate");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["control_points"][0]["name"], "Eis");
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(format!("http://localhost:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    a.terminate();
}
