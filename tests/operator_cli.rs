//! The operator's command line against a real broker: `sfwd control …`
//! and `sfwd failed …` driven as processes, next to `sfwd run` instances
//! and a simulated target.

mod common;

use std::time::{Duration, Instant};

use common::app::{decode_failed, http_app, produce_requests, read_async, start_target, App};
use common::cli::Run;
use rdkafka::message::OwnedMessage;
use serde_json::Value;
use sfwd::failed::{FailedEvents, ResubmitOptions};
use sfwd::records::{AvroRecord, FailedEvent, FailureReason, Header, SourcePosition};
use sfwd::rules::{ChainElement, ExceptionChain};
use sfwd::target_sim::Mode;

/// The operator's command line, run against the shared test application.
impl App {
    /// Runs `sfwd <args> --topology <file>` to completion.
    async fn cli(&self, args: &[&str]) -> Run {
        common::cli::cli(self, args).await
    }

    /// Runs `sfwd <args> --output json --topology <file>`, which must
    /// succeed, and returns what it printed.
    async fn cli_json(&self, args: &[&str]) -> Value {
        common::cli::cli_json(self, args).await
    }

    async fn status(&self) -> Value {
        self.cli_json(&["control", "status"]).await["control_points"][0].clone()
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

/// The records of `topic` that are resubmissions of `id`.
fn resubmissions<'m>(messages: &'m [OwnedMessage], id: &str) -> Vec<&'m OwnedMessage> {
    messages
        .iter()
        .filter(|m| common::header(m, "sfwd-resubmitted-from").as_deref() == Some(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_seen_and_handled_from_the_command_line() {
    let sim = start_target().await;
    let app = http_app("opcli", &sim, "");
    app.create_request_topics().await;
    let _a = app.start_assigned("a");

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
    let ids = produce_requests(&app, 0, 10).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1);
    let trigger = failed[0].request_id.clone();
    assert!(ids.contains(&trigger));
    read_async(app.topic("stored.Eis"), 9, 60).await;

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
    table
        .prints(&format!("Eis: trigger {trigger} "))
        .prints("rule: ServiceUnavailableException");

    // `store` on a storing control point: a no-op that publishes nothing.
    let commands_before = read_async(app.topic("control-commands"), 0, 5).await.len();
    let run = app.cli(&["control", "store", "Eis"]).await;
    run.ok()
        .prints("already storing")
        .prints("nothing published");
    let v = app.cli_json(&["control", "store", "Eis"]).await;
    assert_eq!(v["result"], "no-op");
    assert_eq!(
        read_async(app.topic("control-commands"), 0, 5).await.len(),
        commands_before,
        "no command published"
    );

    // An unknown name: a usage error with a suggestion.
    let run = app.cli(&["control", "forward", "Eiss"]).await;
    run.exits(2)
        .reports("unknown control point `Eiss`: did you mean `Eis`?");

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
    let list = app.cli_json(&["failed", "list"]).await;
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
        run.prints(&want);
    }
    let shown = app.cli_json(&["failed", "show", &trigger]).await;
    assert!(shown["value"]["utf8"]
        .as_str()
        .unwrap()
        .starts_with("{\"n\":"));
    app.cli(&["failed", "show", "nope/0/0"]).await.exits(2);

    // Forward: the backlog is replayed and the control point settles.
    sim.set_mode(Mode::Up);
    let run = app.cli(&["control", "forward", "Eis"]).await;
    // The replay may have finished (epoch 3) by the time the command looks.
    run.ok()
        .prints("`Eis` is now FORWARD")
        .prints("(was STORE at epoch 1)");
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
    run.ok().prints("resubmitted to");
    sim.wait_for(10, Duration::from_secs(60))
        .await
        .expect("the resubmitted request reaches the target");
    let received: Vec<String> = sim.received_ids().into_iter().flatten().collect();
    assert_eq!(received.iter().filter(|id| **id == trigger).count(), 1);
    let source_topic = trigger.rsplitn(3, '/').nth(2).unwrap().to_string();
    let copies = read_async(source_topic.clone(), 1, 30).await;
    let again = resubmissions(&copies, &trigger);
    assert_eq!(again.len(), 1);
    assert_eq!(
        common::header(again[0], "sfwd-request-id").as_deref(),
        Some(trigger.as_str())
    );
    assert_eq!(common::header(again[0], "trace").as_deref(), Some("t-1"));

    let run = app.cli(&["failed", "resubmit", &trigger]).await;
    run.ok()
        .prints("resubmitted by operator:tester")
        .prints("nothing written");
    let copies = read_async(source_topic, 1, 10).await;
    assert_eq!(resubmissions(&copies, &trigger).len(), 1, "still one copy");

    // A failure no rule matches, then discarded: hidden, not lost.
    sim.set_mode(Mode::BadRequest);
    let bad = produce_requests(&app, 10, 1).await.remove(0);
    read_async(app.topic("failed"), 2, 60).await;
    let run = app.cli(&["failed", "list"]).await;
    run.ok().prints(&bad);
    assert!(!run.stdout.contains(&trigger), "resubmitted: not open");
    let run = app.cli(&["failed", "discard", &bad]).await;
    run.ok().prints(&format!("{bad}: discarded"));
    let run = app.cli(&["failed", "list"]).await;
    run.ok();
    assert!(!run.stdout.contains(&bad), "{}", run.stdout);
    run.prints("no failed events match");
    let all = app.cli_json(&["failed", "list", "--all"]).await;
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
    run.ok().prints("already discarded by operator:tester");
    assert_eq!(
        read_async(app.topic("failed"), 2, 10).await.len(),
        2,
        "nothing deleted"
    );
    let cp = app.status().await;
    assert_eq!(cp["failed_by_status"]["resubmitted"], 1);
    assert_eq!(cp["failed_by_status"]["discarded"], 1);
    assert_eq!(cp["failed"], 0);

    // The audit trail holds all of it: the automatic changes, and every
    // operator action with who, from where and the result.
    let trail = app.cli_json(&["control", "history", "Eis"]).await;
    let events = trail["events"].as_array().unwrap();
    let find = |pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
        events.iter().filter(|e| pred(e)).collect()
    };
    let stored = find(&|e| e["action"] == "state-change" && e["subject"] == trigger.as_str());
    assert_eq!(stored.len(), 1, "{trail:#}");
    assert_eq!(
        (stored[0]["actor"].as_str(), stored[0]["via"].as_str()),
        (Some("a"), Some("control-writer"))
    );
    assert!(
        stored[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("STORE epoch 1 (trigger)"),
        "{trail:#}"
    );
    let noops = find(&|e| e["action"] == "store" && e["result"] == "no-op");
    assert_eq!(noops.len(), 2, "{trail:#}");
    for e in &noops {
        assert_eq!(
            (e["actor"].as_str(), e["via"].as_str()),
            (Some("operator:tester"), Some("cli"))
        );
        assert!(
            e["origin"].as_str().unwrap().contains('@'),
            "user@host: {e}"
        );
    }
    let forward = find(&|e| e["action"] == "forward");
    assert_eq!(forward.len(), 1, "{trail:#}");
    assert!(
        matches!(forward[0]["result"].as_str(), Some("applied" | "reached")),
        "{trail:#}"
    );
    let applied =
        find(&|e| e["action"] == "state-change" && e["command_id"] == forward[0]["command_id"]);
    assert_eq!(
        applied.len(),
        1,
        "the forward, applied by the writer: {trail:#}"
    );
    assert!(applied[0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("FORWARD epoch 2 (operator)"));
    assert_eq!(
        find(&|e| e["action"] == "state-change"
            && e["detail"].as_str().unwrap().contains("(replay-caught-up)"))
        .len(),
        1,
        "{trail:#}"
    );
    let results = |action: &str, subject: &str| -> Vec<String> {
        find(&|e| e["action"] == action && e["subject"] == subject)
            .iter()
            .map(|e| e["result"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(results("resubmit", &trigger).len(), 2, "{trail:#}");
    assert_eq!(results("discard", &bad).len(), 2, "{trail:#}");
    app.cli(&["control", "history", "Eis"])
        .await
        .ok()
        .prints("ACTION")
        .prints("operator:tester");
}

/// Creates the failed-events topic (3 partitions) and the request topics
/// with one partition each; returns the `get` topic.
async fn create_failed_topics(app: &App) -> String {
    let requests = app.topic("get");
    common::create_topics(&[
        (&app.topic("failed"), 3),
        (&requests, 1),
        (&app.topic("put"), 1),
    ])
    .await;
    requests
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
    let sim = start_target().await;
    let app = http_app("opresub", &sim, "");
    let requests = create_failed_topics(&app).await;
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

    let written = read_async(requests.clone(), 2, 30).await;
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
    run.ok().prints("resubmitted to");
    let written = read_async(requests.clone(), 3, 30).await;
    assert_eq!(resubmissions(&written, &ids[0]).len(), 2);
    let listed = app
        .cli_json(&["failed", "list", "--status", "resubmitted"])
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let open = app.cli_json(&["failed", "list"]).await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["request_id"], ids[2].as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_resubmit_reports_progress() {
    let sim = start_target().await;
    let app = http_app("opbulk", &sim, "");
    let requests = create_failed_topics(&app).await;
    write_failed(&app, &requests, 150).await;
    let run = app.cli(&["failed", "resubmit"]).await;
    run.exits(2).reports("no request ids given");
    let run = app
        .cli(&["failed", "resubmit", "--control-point", "Eis"])
        .await;
    run.ok()
        .reports("resubmitted 100/150")
        .reports("resubmitted 150/150")
        .prints("resubmitted: 150");
    let written = read_async(requests, 150, 30).await;
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
    let sim = start_target().await;
    let app = http_app("opoffline", &sim, "");
    app.create_request_topics().await;

    // No instance has ever run: the command creates the topics it needs.
    let run = app.cli(&["control", "store", "Eis", "--wait", "2s"]).await;
    run.ok()
        .prints("published `store` for `Eis`")
        .prints("it will be applied when an instance runs");
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
    produce_requests(&app, 0, 4).await;
    read_async(app.topic("stored.Eis"), 4, 60).await;
    assert_eq!(sim.attempts(), 0, "stored, never invoked");

    // The topics exist but nothing runs: published, applied later.
    a.terminate();
    let v = app
        .cli_json(&["control", "forward", "Eis", "--wait", "3s"])
        .await;
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
