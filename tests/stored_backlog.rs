//! The stored backlog against a real broker: `sfwd stored list | show |
//! skip` as processes, next to `sfwd run` instances and a simulated target,
//! and with no instance at all.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use common::app::{
    assert_in_order_per_partition, decode_failed, decode_stored, operator, read_async,
    received_by_partition, start_target, App,
};
use common::cli::{cli, cli_json};
use serde_json::{json, Value};
use sfwd::control::CommandKind;
use sfwd::records::{AvroRecord, FailedEvent, FailureReason, SourcePosition, StoredRequest};
use sfwd::target_sim::{Mode, TargetSim};

const GET_SCHEMA: &str = r#"{"type":"record","name":"GetEmployee","namespace":"test","fields":[{"name":"id","type":"string"},{"name":"n","type":"int"}]}"#;

/// A `get` request as an Avro datum of [`GET_SCHEMA`].
fn get_employee(n: i32) -> Vec<u8> {
    let schema = Schema::parse_str(GET_SCHEMA).unwrap();
    GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(Avro::Record(vec![
            ("id".into(), Avro::String(format!("emp-{n}"))),
            ("n".into(), Avro::Int(n)),
        ]))
        .unwrap()
}

/// One HTTP service over `sim` whose only operation, `Query.get`, declares
/// an input schema; its request topic has 3 partitions.
async fn schema_app(sim: &TargetSim) -> App {
    let app = App::http("stored", sim, 3, |name| {
        format!("      Query: {{ operations: {{ get: {{ topic: {name}.get, input_schema: get.avsc }} }} }}")
    });
    std::fs::write(app.dir.path().join("get.avsc"), GET_SCHEMA).unwrap();
    common::create_topics(&[(&app.topic("get"), 3)]).await;
    app
}

/// Polls `control status` until the control point is FORWARD with nothing
/// left to replay.
async fn wait_replayed(app: &App) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp = cli_json(app, &["control", "status"]).await["control_points"][0].clone();
        if cp["state"] == "FORWARD" && cp["replaying"] == false {
            return;
        }
        assert!(Instant::now() < deadline, "never done replaying: {cp:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect()
}

fn failed_for<'e>(events: &'e [FailedEvent], id: &str) -> Vec<&'e FailedEvent> {
    events.iter().filter(|e| e.request_id == id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skipped_request_never_reaches_the_target_and_fails_once() {
    let sim = start_target().await;
    let app = schema_app(&sim).await;
    let mut a = app.start_assigned("a");

    // An outage: one trigger, eight stored.
    sim.set_mode(Mode::Unavailable);
    let producer = common::producer();
    for n in 0..9 {
        common::produce(
            &producer,
            &app.topic("get"),
            Some(n % 3),
            Some(format!("emp-{n}").as_bytes()),
            Some(&get_employee(n)),
            &[("trace", b"t-1")],
        )
        .await;
    }
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1);
    let trigger = failed[0].request_id.clone();
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 8, 60).await);
    assert_eq!(stored.len(), 8);

    // list: every stored request, in stored order, with what it is.
    let list = cli_json(&app, &["stored", "list", "Eis"]).await;
    assert_eq!(list.as_array().unwrap().len(), 8, "{list:#}");
    for e in list.as_array().unwrap() {
        let s = stored
            .iter()
            .find(|s| s.request_id == e["request_id"])
            .unwrap();
        assert_eq!(e["status"], "stored");
        assert_eq!(e["operation"], "get");
        assert_eq!(e["epoch"], 1);
        assert_eq!(e["key"], String::from_utf8(s.key.clone().unwrap()).unwrap());
        assert_eq!(e["size"], s.value.as_ref().unwrap().len());
        assert_eq!(e["stored_at_ms"], s.stored_at);
        assert_eq!(e["trigger"], trigger.as_str());
    }
    // The victim: a stored request with another one after it in its partition.
    let victim: StoredRequest = stored
        .iter()
        .find(|s| {
            stored.iter().any(|t| {
                t.source.partition == s.source.partition && t.source.offset > s.source.offset
            })
        })
        .cloned()
        .unwrap();
    let victim_id = victim.request_id.clone();
    let victim_key = String::from_utf8(victim.key.clone().unwrap()).unwrap();
    let n: i64 = victim_key.trim_start_matches("emp-").parse().unwrap();

    // Filters.
    let by_key = cli_json(&app, &["stored", "list", "Eis", "--key", &victim_key]).await;
    assert_eq!(ids(&by_key), [victim_id.as_str()]);
    let p = victim.source.partition.to_string();
    let by_partition = cli_json(&app, &["stored", "list", "Eis", "--partition", &p]).await;
    let in_partition = stored
        .iter()
        .filter(|s| s.source.partition == victim.source.partition)
        .count();
    assert_eq!(ids(&by_partition).len(), in_partition);
    assert!(by_partition
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["source"]["partition"] == victim.source.partition));
    assert_eq!(
        ids(&cli_json(&app, &["stored", "list", "Eis", "--limit", "2"]).await).len(),
        2
    );
    assert_eq!(
        ids(&cli_json(&app, &["stored", "list", "Eis", "--since", "1h"]).await).len(),
        8
    );
    assert!(ids(&cli_json(&app, &["stored", "list", "Eis", "--until", "1h"]).await).is_empty());
    cli(&app, &["stored", "list", "Eis", "--limit", "2"])
        .await
        .ok()
        .prints("REQUEST ID")
        .prints("(2 of 8 stored requests shown: --limit)");
    cli(&app, &["stored", "list", "Nope"])
        .await
        .exits(2)
        .reports("unknown control point `Nope`");

    // show: the value decoded with the operation's input schema.
    let shown = cli_json(&app, &["stored", "show", &victim_id]).await;
    assert_eq!(shown["decoded_value"], json!({"id": victim_key, "n": n}));
    assert_eq!(shown["decode_error"], Value::Null);
    assert_eq!(shown["key_bytes"]["utf8"], victim_key.as_str());
    assert_eq!(
        shown["headers"],
        json!([{"key": "trace", "value": {"utf8": "t-1"}}])
    );
    cli(&app, &["stored", "show", &victim_id])
        .await
        .ok()
        .prints("value (decoded with the operation's input schema):")
        .prints(&format!("\"id\": \"{victim_key}\""));
    cli(&app, &["stored", "show", "no-such-id"])
        .await
        .exits(2)
        .reports("no stored request has request id `no-such-id`");

    // skip, then skip again: one failed event.
    cli(&app, &["stored", "skip", &victim_id, "--operator", "ana"])
        .await
        .ok()
        .prints("skipped: it will not be replayed");
    let again = cli_json(&app, &["stored", "skip", &victim_id]).await;
    assert_eq!(again[0]["result"], "already-skipped", "{again:#}");
    assert!(again[0]["message"]
        .as_str()
        .unwrap()
        .contains("already skipped by operator:ana"));
    cli(&app, &["stored", "skip", "no-such-id"])
        .await
        .exits(2)
        .prints("no stored request has this id");
    let list = cli_json(&app, &["stored", "list", "Eis", "--key", &victim_key]).await;
    assert_eq!(list[0]["status"], "skipped");
    assert_eq!(list[0]["skipped"]["by"], "operator:ana");

    // The skip holds across a restart: a new instance replays the rest.
    a.terminate();
    let _b = app.start_assigned("b");
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    let expected: Vec<String> = stored
        .iter()
        .map(|s| s.request_id.clone())
        .filter(|id| *id != victim_id)
        .collect();
    sim.wait_for(expected.len(), Duration::from_secs(90))
        .await
        .expect("the rest of the backlog delivered");
    wait_replayed(&app).await;
    let received: HashSet<String> = sim.received_ids().into_iter().flatten().collect();
    assert!(
        !received.contains(&victim_id),
        "the skipped request was delivered"
    );
    assert_eq!(received.len(), expected.len());
    assert_in_order_per_partition(&received_by_partition(&sim), &expected);

    // Exactly once in the failed events, with reason skipped and who did it.
    let failed = decode_failed(&read_async(app.topic("failed"), 2, 30).await);
    assert_eq!(failed.len(), 2, "{failed:?}");
    let skipped = failed_for(&failed, &victim_id);
    assert_eq!(skipped.len(), 1);
    let s = skipped[0];
    assert_eq!(s.reason, FailureReason::Skipped);
    assert!(s.detail.contains("skipped by operator:ana"), "{}", s.detail);
    assert_eq!(s.instance, "operator:ana");
    assert_eq!(s.value, victim.value);
    assert_eq!(s.source, victim.source);
    let listed = cli_json(&app, &["failed", "list", "--reason", "skipped"]).await;
    assert_eq!(ids(&listed), [victim_id.as_str()]);

    // After the replay: skipped stays skipped, the others are replayed.
    let all = cli_json(&app, &["stored", "list", "Eis", "--all"]).await;
    for e in all.as_array().unwrap() {
        let want = if e["request_id"] == victim_id.as_str() {
            "skipped"
        } else {
            "replayed"
        };
        assert_eq!(e["status"], want, "{e:#}");
    }
    assert!(ids(&cli_json(&app, &["stored", "list", "Eis"]).await).is_empty());
    cli(&app, &["stored", "skip", &expected[0]])
        .await
        .exits(2)
        .prints("already replayed from the stored topic of Eis");
    cli(&app, &["stored", "skip", &victim_id])
        .await
        .ok()
        .prints("already skipped by operator:ana");
    let failed = decode_failed(&read_async(app.topic("failed"), 2, 10).await);
    assert_eq!(failed.len(), 2, "no failed event added: {failed:?}");
}

/// A stored request as an instance would have written it.
fn stored_request(app: &App, partition: i32, offset: i64) -> StoredRequest {
    let source = SourcePosition {
        topic: app.topic("get"),
        partition,
        offset,
    };
    StoredRequest {
        request_id: format!("{}/{partition}/{offset}", source.topic),
        control_point: "Eis".into(),
        service: "eis".into(),
        interface: "Query".into(),
        operation: "get".into(),
        source,
        key: Some(format!("k-{offset}").into_bytes()),
        value: Some(b"{}".to_vec()),
        headers: Vec::new(),
        stored_at: sfwd::clock::now_ms(),
        epoch: 1,
        trigger: None,
        instance: "gone".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skips_need_no_running_instance_and_happen_once() {
    let app = App::new("stored-offline", |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 3 }}
services:
  eis:
    binding:
      http: {{ url: "http://127.0.0.1:9/eis", timeout: 2s }}
      interaction: async
    store_and_forward:
      control_point: Eis
    interfaces:
      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
"#
        )
    });
    // A backlog and a replay progress left by instances that are gone; the
    // skips and failed-events topics do not exist yet.
    let (stored_topic, replay_topic) = (app.topic("stored.Eis"), app.topic("replay"));
    common::create_topics(&[(&stored_topic, 3), (&replay_topic, 1)]).await;
    let producer = common::producer();
    let backlog = [(0, 3), (0, 5), (1, 2), (1, 4)].map(|(p, o)| stored_request(&app, p, o));
    for r in &backlog {
        let payload = r.encode().unwrap();
        common::produce(
            &producer,
            &stored_topic,
            Some(r.source.partition),
            None,
            Some(&payload),
            &[],
        )
        .await;
    }
    let progress =
        json!({"next_offset": 1, "max_source_offset": 3, "done_epoch": 1, "open": false});
    let key = format!("Eis/{}/0", app.topic("get"));
    common::produce(
        &producer,
        &replay_topic,
        Some(0),
        Some(key.as_bytes()),
        Some(progress.to_string().as_bytes()),
        &[],
    )
    .await;
    let [replayed, victim, contested, _] = backlog.map(|r| r.request_id);

    let waiting = cli_json(&app, &["stored", "list", "Eis"]).await;
    assert_eq!(ids(&waiting).len(), 3);
    assert!(!ids(&waiting).contains(&replayed));
    let all = cli_json(&app, &["stored", "list", "Eis", "--all"]).await;
    assert_eq!(ids(&all).len(), 4);
    assert_eq!(all[0]["request_id"], replayed.as_str());
    assert_eq!(all[0]["status"], "replayed");

    cli(&app, &["stored", "skip", &replayed])
        .await
        .exits(2)
        .prints("already replayed");
    cli(&app, &["stored", "skip", "no-such-id"])
        .await
        .exits(2)
        .prints("no stored request has this id");

    // The skip creates the topics it writes.
    cli(&app, &["stored", "skip", &victim])
        .await
        .ok()
        .prints("skipped");
    cli(&app, &["stored", "skip", &victim])
        .await
        .ok()
        .prints("already skipped by operator:tester");
    let marks = read_async(app.topic("skips"), 1, 10).await;
    assert!(!marks.is_empty());
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 10).await);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].request_id, victim);
    assert_eq!(failed[0].reason, FailureReason::Skipped);

    // Three operators skip the same request at once: one failed event.
    let args = ["stored", "skip", contested.as_str()];
    let runs = futures::future::join_all((0..3).map(|_| cli_json(&app, &args))).await;
    let results: Vec<&str> = runs
        .iter()
        .map(|r| r[0]["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| **r == "skipped").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == "already-skipped").count(),
        2,
        "{results:?}"
    );
    let failed = decode_failed(&read_async(app.topic("failed"), 2, 10).await);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed_for(&failed, &contested).len(), 1);
    let list = cli_json(&app, &["stored", "list", "Eis"]).await;
    let statuses: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["request_id"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(statuses.contains(&(victim.as_str(), "skipped")));
    assert!(statuses.contains(&(contested.as_str(), "skipped")));
}
