//! The operator's command line against a real broker: `sfwd control …`
//! and `sfwd failed …` driven as processes, next to `sfwd run` instances
//! and a simulated target.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::process::Sfwd;
use rdkafka::message::OwnedMessage;
use serde_json::Value;
use sfwd::failed::{FailedEvents, ResubmitOptions};
use sfwd::records::{AvroRecord, FailedEvent, FailureReason, Header, SourcePosition};
use sfwd::rules::{ChainElement, ExceptionChain};
use sfwd::target_sim::{Mode, TargetSim};

/// A test's own application: topology file, topic names, data directory.
struct App {
    name: String,
    dir: tempfile::TempDir,
    topology: PathBuf,
}

impl App {
    /// One HTTP service `eis` with control point `Eis`, two operations on
    /// two topics of 3 partitions.
    fn http(prefix: &str, sim: &TargetSim) -> App {
        let name = common::unique(prefix);
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.yaml");
        let url = sim.url("/eis");
        std::fs::write(
            &topology,
            format!(
                r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 3 }}
services:
  eis:
    binding:
      http: {{ url: "{url}", timeout: 2s }}
      interaction: async
    store_and_forward:
      control_point: Eis
    interfaces:
      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
      Update: {{ operations: {{ put: {{ topic: {name}.put }} }} }}
"#
            ),
        )
        .unwrap();
        App {
            name,
            dir,
            topology,
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    async fn create_request_topics(&self) {
        common::create_topics(&[(&self.topic("get"), 3), (&self.topic("put"), 3)]).await;
    }

    fn start(&self, instance: &str) -> Sfwd {
        let mut s = Sfwd::start(&self.topology, instance, self.dir.path());
        s.wait_ready();
        s
    }

    /// Runs `sfwd <args> --topology <file>` to completion.
    async fn cli(&self, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sfwd"))
            .args(args)
            .arg("--topology")
            .arg(&self.topology)
            .env("SFWD_BOOTSTRAP", common::bootstrap())
            .env("SFWD_OPERATOR", "tester")
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run sfwd");
        let run = Run::from(args, output);
        if std::env::var_os("SFWD_TEST_LOGS").is_some() {
            eprintln!(
                "$ sfwd {} (exit {})\n{}{}",
                run.args, run.code, run.stdout, run.stderr
            );
        }
        run
    }

    async fn status(&self) -> Value {
        let run = self.cli(&["control", "status", "--output", "json"]).await;
        run.ok();
        let v: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", run.stdout));
        v["control_points"][0].clone()
    }

    /// Polls `control status` until `pred` holds for the control point.
    async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let cp = self.status().await;
            if pred(&cp) {
                return cp;
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {cp:#}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// What one CLI run printed.
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(args: &[&str], o: Output) -> Run {
        Run {
            args: args.join(" "),
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "`sfwd {}` failed:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`sfwd {}` JSON: {e}\n{}", self.args, self.stdout))
    }
}

async fn read(topic: String, min: usize, secs: u64) -> Vec<OwnedMessage> {
    tokio::task::spawn_blocking(move || common::read_topic(&topic, min, Duration::from_secs(secs)))
        .await
        .unwrap()
}

fn decode_failed(messages: &[OwnedMessage]) -> Vec<FailedEvent> {
    use rdkafka::Message;
    messages
        .iter()
        .map(|m| FailedEvent::decode(m.payload().unwrap()).expect("failed event"))
        .collect()
}

/// Produces `n` requests alternating between the two topics.
async fn produce(app: &App, from: usize, n: usize) -> Vec<String> {
    let producer = common::producer();
    let mut ids = Vec::new();
    for i in from..from + n {
        let topic = app.topic(if i % 2 == 0 { "get" } else { "put" });
        let key = format!("emp-{i}");
        let value = format!("{{\"n\":{i}}}");
        let (p, o) = common::produce(
            &producer,
            &topic,
            Some((i / 2 % 3) as i32),
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[("trace", b"t-1"), ("trace", b"t-2")],
        )
        .await;
        ids.push(format!("{topic}/{p}/{o}"));
    }
    ids
}

/// The records of `topic` that are resubmissions of `id`.
fn resubmissions<'m>(messages: &'m [OwnedMessage], id: &str) -> Vec<&'m OwnedMessage> {
    messages
        .iter()
        .filter(|m| common::header(m, "sfwd-resubmitted-from").as_deref() == Some(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_seen_and_handled_from_the_command_line() {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app = App::http("opcli", &sim);
    app.create_request_topics().await;
    let mut a = app.start("a");
    a.wait_assigned();

    // Never changed: FORWARD at epoch 0.
    let cp = app.status().await;
    assert_eq!(cp["name"], "Eis");
    assert_eq!(cp["service"], "eis");
    assert_eq!(cp["state"], "FORWARD");
    assert_eq!(cp["epoch"], 0);
    assert_eq!(cp["cause"], "initial");
    assert!(cp["trigger"].is_null() && cp["since"].is_null());
    assert_eq!(cp["stored_backlog"], 0);
    assert_eq!(cp["failed"], 0);

    // Outage: one trigger, the rest stored.
    sim.set_mode(Mode::Unavailable);
    let ids = produce(&app, 0, 10).await;
    let failed = decode_failed(&read(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1);
    let trigger = failed[0].request_id.clone();
    assert!(ids.contains(&trigger));
    read(app.topic("stored.Eis"), 9, 60).await;

    let cp = app
        .wait_status("the backlog", |cp| cp["stored_backlog"] == 9)
        .await;
    assert_eq!(cp["state"], "STORE");
    assert_eq!(cp["epoch"], 1);
    assert_eq!(cp["cause"], "trigger");
    assert_eq!(cp["by"], "a");
    assert_eq!(cp["trigger"]["request_id"], trigger.as_str());
    assert_eq!(cp["trigger"]["instance"], "a");
    assert!(cp["trigger"]["rule"]
        .as_str()
        .unwrap()
        .starts_with("ServiceUnavailableException"));
    assert_eq!(
        cp["trigger"]["chain"][0]["type"],
        "ServiceUnavailableException"
    );
    assert_eq!(cp["failed"], 1);
    assert_eq!(cp["failed_by_status"]["open"], 1);
    assert!(cp["since"].as_str().unwrap().ends_with('Z'));
    assert!(cp["age_seconds"].as_i64().unwrap() >= 0);
    let table = app.cli(&["control", "status"]).await;
    table.ok();
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("Eis "))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    for want in ["STORE", "trigger", " 9 "] {
        assert!(line.contains(want), "{want} in {line}");
    }
    assert!(
        table.stdout.contains(&format!("Eis: trigger {trigger} ")),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("rule: ServiceUnavailableException"));

    // `store` on a storing control point: a no-op that publishes nothing.
    let commands_before = read(app.topic("control-commands"), 0, 5).await.len();
    let run = app.cli(&["control", "store", "Eis"]).await;
    run.ok();
    assert!(run.stdout.contains("already storing"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing published"), "{}", run.stdout);
    let run = app
        .cli(&["control", "store", "Eis", "--output", "json"])
        .await;
    assert_eq!(run.ok().json()["result"], "no-op");
    assert_eq!(
        read(app.topic("control-commands"), 0, 5).await.len(),
        commands_before,
        "no command published"
    );

    // An unknown name: a usage error with a suggestion.
    let run = app.cli(&["control", "forward", "Eiss"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("unknown control point `Eiss`: did you mean `Eis`?"),
        "{}",
        run.stderr
    );

    // The failed-event manager shows the trigger.
    let run = app.cli(&["failed", "list"]).await;
    run.ok();
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&trigger))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    for want in [
        "open",
        "store-trigger",
        "Eis",
        "eis.",
        "ServiceUnavailableException",
    ] {
        assert!(row.contains(want), "{want} in {row}");
    }
    let list = app
        .cli(&["failed", "list", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["request_id"], trigger.as_str());
    assert_eq!(list[0]["status"], "open");
    assert_eq!(list[0]["reason"], "store-trigger");
    let run = app.cli(&["failed", "show", &trigger]).await;
    run.ok();
    for want in [
        format!("request id     {trigger}\n"),
        "exception chain (top-level first, original cause last):\n  1. ServiceUnavailableException"
            .to_string(),
        "headers (2):\n  trace: t-1\n  trace: t-2\n".to_string(),
    ] {
        assert!(run.stdout.contains(&want), "{want:?} in:\n{}", run.stdout);
    }
    let shown = app
        .cli(&["failed", "show", &trigger, "--output", "json"])
        .await
        .ok()
        .json();
    assert!(shown["value"]["utf8"]
        .as_str()
        .unwrap()
        .starts_with("{\"n\":"));
    let run = app.cli(&["failed", "show", "nope/0/0"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    // Forward: the backlog is replayed and the control point settles.
    sim.set_mode(Mode::Up);
    let run = app.cli(&["control", "forward", "Eis"]).await;
    run.ok();
    // The replay may have finished (epoch 3) by the time the command looks.
    assert!(
        run.stdout.contains("`Eis` is now FORWARD"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("(was STORE at epoch 1)"),
        "{}",
        run.stdout
    );
    sim.wait_for(9, Duration::from_secs(60))
        .await
        .expect("the backlog reaches the target");
    let cp = app
        .wait_status("the end of the replay", |cp| {
            cp["state"] == "FORWARD" && cp["replaying"] == false
        })
        .await;
    assert_eq!(cp["cause"], "replay-caught-up");
    assert_eq!(cp["stored_backlog"], 0);
    assert_eq!(cp["trigger"]["request_id"], trigger.as_str());

    // Resubmit: the original request goes back to its topic, once.
    let run = app.cli(&["failed", "resubmit", &trigger]).await;
    run.ok();
    assert!(run.stdout.contains("resubmitted to"), "{}", run.stdout);
    sim.wait_for(10, Duration::from_secs(60))
        .await
        .expect("the resubmitted request reaches the target");
    let received: Vec<String> = sim.received_ids().into_iter().flatten().collect();
    assert_eq!(received.iter().filter(|id| **id == trigger).count(), 1);
    let source_topic = trigger.rsplitn(3, '/').nth(2).unwrap().to_string();
    let copies = read(source_topic.clone(), 1, 30).await;
    let again = resubmissions(&copies, &trigger);
    assert_eq!(again.len(), 1);
    assert_eq!(
        common::header(again[0], "sfwd-request-id").as_deref(),
        Some(trigger.as_str())
    );
    assert_eq!(common::header(again[0], "trace").as_deref(), Some("t-1"));

    let run = app.cli(&["failed", "resubmit", &trigger]).await;
    run.ok();
    assert!(
        run.stdout.contains("resubmitted by operator:tester"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nothing written"), "{}", run.stdout);
    let copies = read(source_topic, 1, 10).await;
    assert_eq!(resubmissions(&copies, &trigger).len(), 1, "still one copy");

    // A failure no rule matches, then discarded: hidden, not lost.
    sim.set_mode(Mode::BadRequest);
    let bad = produce(&app, 10, 1).await.remove(0);
    read(app.topic("failed"), 2, 60).await;
    let run = app.cli(&["failed", "list"]).await;
    run.ok();
    assert!(run.stdout.contains(&bad), "{}", run.stdout);
    assert!(!run.stdout.contains(&trigger), "resubmitted: not open");
    let run = app.cli(&["failed", "discard", &bad]).await;
    run.ok();
    assert!(
        run.stdout.contains(&format!("{bad}: discarded")),
        "{}",
        run.stdout
    );
    let run = app.cli(&["failed", "list"]).await;
    run.ok();
    assert!(!run.stdout.contains(&bad), "{}", run.stdout);
    assert!(
        run.stdout.contains("no failed events match"),
        "{}",
        run.stdout
    );
    let all = app
        .cli(&["failed", "list", "--all", "--output", "json"])
        .await
        .ok()
        .json();
    let status_of = |id: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|e| e["request_id"] == id)
            .map(|e| e["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&bad).as_deref(), Some("discarded"));
    assert_eq!(status_of(&trigger).as_deref(), Some("resubmitted"));
    let run = app.cli(&["failed", "discard", &bad]).await;
    assert!(run
        .ok()
        .stdout
        .contains("already discarded by operator:tester"));
    assert_eq!(
        read(app.topic("failed"), 2, 10).await.len(),
        2,
        "nothing deleted"
    );
    let cp = app.status().await;
    assert_eq!(cp["failed_by_status"]["resubmitted"], 1);
    assert_eq!(cp["failed_by_status"]["discarded"], 1);
    assert_eq!(cp["failed"], 0);
}

/// Writes failed events for requests `0..n` of `request_topic`, as an
/// instance would.
async fn write_failed(app: &App, request_topic: &str, n: i64) -> Vec<String> {
    let producer = common::producer();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{request_topic}/0/{i}");
        let event = FailedEvent {
            request_id: id.clone(),
            reason: FailureReason::StoreTrigger,
            detail: "test".into(),
            control_point: Some("Eis".into()),
            service: Some("eis".into()),
            interface: Some("Query".into()),
            operation: Some("get".into()),
            source: SourcePosition {
                topic: request_topic.to_string(),
                partition: 0,
                offset: i,
            },
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![Header::new("h", "1")],
            chain: ExceptionChain::new(vec![ChainElement::new(
                "ServiceUnavailableException",
                "503",
            )]),
            rule: Some("ServiceUnavailableException".into()),
            instance: "test".into(),
            failed_at: sfwd::clock::now_ms(),
            attempts: 1,
            epoch: Some(0),
        };
        common::produce(
            &producer,
            &app.topic("failed"),
            None,
            Some(id.as_bytes()),
            Some(&event.encode().unwrap()),
            &[],
        )
        .await;
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_resubmits_of_one_event_write_it_once() {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app = App::http("opresub", &sim);
    let requests = app.topic("get");
    common::create_topics(&[
        (&app.topic("failed"), 3),
        (&requests, 1),
        (&app.topic("put"), 1),
    ])
    .await;
    let ids = write_failed(&app, &requests, 3).await;

    // Two operators at once, as processes.
    let ana = ["failed", "resubmit", &ids[0], "--operator", "ana"];
    let bo = ["failed", "resubmit", &ids[0], "--operator", "bo"];
    let (one, two) = tokio::join!(app.cli(&ana), app.cli(&bo));
    let (one, two) = (one.ok(), two.ok());
    let wrote = [one, two]
        .iter()
        .filter(|r| r.stdout.contains("resubmitted to"))
        .count();
    assert_eq!(wrote, 1, "one wrote it:\n{}\n{}", one.stdout, two.stdout);
    assert!(
        [one, two]
            .iter()
            .any(|r| r.stdout.contains("nothing written")),
        "the other says so:\n{}\n{}",
        one.stdout,
        two.stdout
    );

    // Eight resubmits at once through the library.
    let topology = sfwd::topology::load(&app.topology).unwrap().0;
    let mut topology = topology;
    topology.kafka.bootstrap = common::bootstrap();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (t, id) = (topology.clone(), ids[1].clone());
        tasks.push(tokio::spawn(async move {
            let events = FailedEvents::new(&t).unwrap();
            let options = ResubmitOptions {
                by: format!("operator:op{n}"),
                again: false,
            };
            events
                .resubmit(&[id], &options, &mut |_| {})
                .await
                .unwrap()
                .remove(0)
        }));
    }
    let mut kinds = Vec::new();
    for t in tasks {
        kinds.push(t.await.unwrap().kind());
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "resubmitted").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds
        .iter()
        .all(|k| ["resubmitted", "lost-race", "already-resubmitted"].contains(k)));

    let written = read(requests.clone(), 2, 30).await;
    assert_eq!(resubmissions(&written, &ids[0]).len(), 1);
    assert_eq!(resubmissions(&written, &ids[1]).len(), 1);
    let m = resubmissions(&written, &ids[0])[0];
    {
        use rdkafka::Message;
        assert_eq!(m.key(), Some(&b"k0"[..]));
        assert_eq!(m.payload(), Some(&b"v0"[..]));
        assert_eq!(m.partition(), 0);
    }
    assert_eq!(common::header(m, "h").as_deref(), Some("1"));

    // --again writes another copy, on purpose.
    let run = app.cli(&["failed", "resubmit", &ids[0], "--again"]).await;
    assert!(run.ok().stdout.contains("resubmitted to"), "{}", run.stdout);
    let written = read(requests.clone(), 3, 30).await;
    assert_eq!(resubmissions(&written, &ids[0]).len(), 2);
    let listed = app
        .cli(&[
            "failed",
            "list",
            "--status",
            "resubmitted",
            "--output",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let open = app
        .cli(&["failed", "list", "--output", "json"])
        .await
        .ok()
        .json();
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["request_id"], ids[2].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_resubmit_reports_progress() {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app = App::http("opbulk", &sim);
    let requests = app.topic("get");
    common::create_topics(&[
        (&app.topic("failed"), 3),
        (&requests, 1),
        (&app.topic("put"), 1),
    ])
    .await;
    write_failed(&app, &requests, 150).await;
    let run = app.cli(&["failed", "resubmit"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no request ids given"),
        "{}",
        run.stderr
    );
    let run = app
        .cli(&["failed", "resubmit", "--control-point", "Eis"])
        .await;
    run.ok();
    assert!(run.stderr.contains("resubmitted 100/150"), "{}", run.stderr);
    assert!(run.stderr.contains("resubmitted 150/150"), "{}", run.stderr);
    assert!(run.stdout.contains("resubmitted: 150"), "{}", run.stdout);
    let written = read(requests, 150, 30).await;
    let resubmitted: Vec<i64> = written
        .iter()
        .filter_map(|m| common::header(m, "sfwd-resubmitted-from"))
        .map(|id| id.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        resubmitted,
        (0..150).collect::<Vec<_>>(),
        "once each, in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_published_while_no_instance_runs_are_applied_when_one_starts() {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app = App::http("opoffline", &sim);
    app.create_request_topics().await;

    // No instance has ever run: the command creates the topics it needs.
    let run = app.cli(&["control", "store", "Eis", "--wait", "2s"]).await;
    run.ok();
    assert!(
        run.stdout.contains("published `store` for `Eis`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("it will be applied when an instance runs"),
        "{}",
        run.stdout
    );
    let mut a = app.start("a");
    a.wait_for("the operator's store", Duration::from_secs(60), |v| {
        common::process::message(v) == "control point changed"
            && common::process::field(v, "command") == "store"
    });
    let cp = app.wait_status("STORE", |cp| cp["state"] == "STORE").await;
    assert_eq!(cp["cause"], "operator");
    assert_eq!(cp["by"], "operator:tester");
    assert!(cp["trigger"].is_null());
    sim.set_mode(Mode::Unavailable);
    produce(&app, 0, 4).await;
    read(app.topic("stored.Eis"), 4, 60).await;
    assert_eq!(sim.attempts(), 0, "stored, never invoked");

    // The topics exist but nothing runs: published, applied later.
    a.terminate();
    let run = app
        .cli(&[
            "control", "forward", "Eis", "--wait", "3s", "--output", "json",
        ])
        .await;
    let v = run.ok().json();
    assert_eq!(v["result"], "published");
    assert!(
        v["message"].as_str().unwrap().contains(
            "no control writer answered within 3s — it will be applied when an instance runs"
        ),
        "{v:#}"
    );
    assert_eq!(v["state"]["state"], "STORE");
    sim.set_mode(Mode::Up);
    let _b = app.start("b");
    sim.wait_for(4, Duration::from_secs(60))
        .await
        .expect("the stored requests are replayed");
    app.wait_status("FORWARD", |cp| cp["state"] == "FORWARD")
        .await;
}
