//! Cluster-wide store and forward with three `sfwd run` processes on a
//! 12-partition request topic (SPEC §7 G2, G3, G5).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::app::*;
use common::process::{field, message, Sfwd};
use sfwd::control::CommandKind;
use sfwd::records::FailureReason;
use sfwd::target_sim::{Mode, TargetSim};

const PARTITIONS: i32 = 12;

fn cluster_app(prefix: &str, sim: &TargetSim) -> App {
    App::http(prefix, sim, PARTITIONS, |name| {
        format!("      Query: {{ operations: {{ get: {{ topic: {name}.requests }} }} }}")
    })
}

/// A simulated target, and three instances of a [`cluster_app`] over it
/// with its request topic, the 12 partitions spread over all of them.
async fn start_cluster(prefix: &str) -> (TargetSim, App, Vec<Sfwd>) {
    let sim = start_target().await;
    let app = cluster_app(prefix, &sim);
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let instances = start_three(&app);
    (sim, app, instances)
}

/// Starts three instances and waits until the 12 partitions are spread
/// over all of them.
fn start_three(app: &App) -> Vec<Sfwd> {
    let mut instances: Vec<Sfwd> = ["a", "b", "c"]
        .iter()
        .map(|i| Sfwd::start(&app.topology, i, app.dir.path()))
        .collect();
    for i in &mut instances {
        i.wait_ready();
    }
    wait_spread(&mut instances);
    instances
}

/// Waits until every instance holds at least one request partition.
fn wait_spread(instances: &mut [Sfwd]) {
    for i in instances.iter_mut() {
        i.wait_for("partitions assigned", Duration::from_secs(60), |v| {
            message(v) == "partitions assigned" && field(v, "partitions").contains(".requests")
        });
    }
}

async fn produce_n(app: &App, n: usize, tag: &str) -> Vec<String> {
    let producer = common::producer();
    let topic = app.topic("requests");
    let mut ids = Vec::new();
    for i in 0..n {
        let key = format!("{tag}-{i}");
        let (p, o) = common::produce(
            &producer,
            &topic,
            Some((i as i32) % PARTITIONS),
            Some(key.as_bytes()),
            Some(b"{}"),
            &[],
        )
        .await;
        ids.push(format!("{topic}/{p}/{o}"));
    }
    ids
}

/// Waits until `instance` has applied a state of `mode` at an epoch above
/// `after`; returns its epoch and how long after the change it was applied.
fn wait_state(instance: &mut Sfwd, mode: &str, after: u64) -> (u64, i64) {
    let v = instance.wait_for(
        &format!("{mode} after epoch {after}"),
        Duration::from_secs(60),
        |v| {
            message(v) == "control state applied"
                && field(v, "mode") == mode
                && v.get("epoch")
                    .and_then(|e| e.as_u64())
                    .is_some_and(|e| e > after)
        },
    );
    (v["epoch"].as_u64().unwrap(), v["lag_ms"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_seen_by_three_instances_stores_everywhere_with_one_failed_event() {
    let (sim, app, mut instances) = start_cluster("cluster-outage").await;
    let warm = produce_n(&app, 24, "warm").await;
    sim.wait_for(24, Duration::from_secs(60))
        .await
        .expect("flowing through all three");

    sim.set_mode(Mode::Unavailable);
    let down = produce_n(&app, 120, "down").await;
    for i in &mut instances {
        wait_state(i, "STORE", 0);
    }
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 119, 60).await);
    assert_eq!(
        failed.len(),
        1,
        "exactly one failed event for the activation: {failed:?}"
    );
    assert_eq!(failed[0].reason, FailureReason::StoreTrigger);
    let stored_ids: HashSet<&str> = stored.iter().map(|s| s.request_id.as_str()).collect();
    assert_eq!(stored.len(), 119, "every other request stored once");
    for id in &down {
        assert!(
            stored_ids.contains(id.as_str()) || *id == failed[0].request_id,
            "{id} lost"
        );
    }
    // Which instances stored: all three took part.
    let storers: HashSet<&str> = stored.iter().map(|s| s.instance.as_str()).collect();
    assert_eq!(storers.len(), 3, "all three instances stored: {storers:?}");

    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    sim.wait_for(24 + 119, Duration::from_secs(60))
        .await
        .expect("backlog replayed");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
    let all: Vec<String> = warm
        .iter()
        .chain(&down)
        .filter(|id| **id != failed[0].request_id)
        .cloned()
        .collect();
    assert_in_order_per_partition(&received_by_partition(&sim), &all);
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_reach_every_instance_and_survive_a_restart_of_all() {
    let (sim, app, mut instances) = start_cluster("cluster-operator").await;

    operator(&app, "Eis", CommandKind::Store).await;
    let mut epoch = 0;
    for i in &mut instances {
        epoch = wait_state(i, "STORE", 0).0;
    }
    let first = produce_n(&app, 36, "one").await;
    read_async(app.topic("stored.Eis"), 36, 60).await;
    assert_eq!(sim.attempts(), 0, "no call while STORE");

    // Restart all three: still STORE, and nothing reaches the target.
    for i in &mut instances {
        assert!(i.terminate().success());
    }
    drop(instances);
    let mut instances = start_three(&app);
    let second = produce_n(&app, 36, "two").await;
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 72, 60).await);
    assert_eq!(stored.len(), 72);
    assert_eq!(
        sim.attempts(),
        0,
        "restarted instances act on STORE before invoking anything"
    );

    operator(&app, "Eis", CommandKind::Forward).await;
    for i in &mut instances {
        wait_state(i, "FORWARD", epoch);
    }
    sim.wait_for(72, Duration::from_secs(60))
        .await
        .expect("backlog replayed once");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_in_order_per_partition(&received_by_partition(&sim), &all);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_control_writer_during_a_trigger_leaves_one_decision_and_loses_nothing() {
    let (sim, app, mut instances) = start_cluster("cluster-kill").await;
    let owned = sfwd::control::command_partition("Eis", PARTITIONS);
    let owner = instances
        .iter_mut()
        .position(|i| {
            let v = i.wait_for("writer partitions", Duration::from_secs(30), |v| {
                message(v) == "control writer owns command partitions"
            });
            let parts = field(&v, "partitions").to_string();
            parts
                .trim_matches(|c| c == '{' || c == '}')
                .split(", ")
                .any(|p| p == owned.to_string())
        })
        .expect("an instance owns the control point's command partition");

    sim.set_mode(Mode::Unavailable);
    let producing = tokio::spawn({
        let topic = app.topic("requests");
        async move {
            let producer = common::producer();
            let mut ids = Vec::new();
            for i in 0..240 {
                let (p, o) = common::produce(
                    &producer,
                    &topic,
                    Some(i % PARTITIONS),
                    None,
                    Some(b"{}"),
                    &[],
                )
                .await;
                ids.push(format!("{topic}/{p}/{o}"));
            }
            ids
        }
    });
    // The owner dies as the first triggers arrive.
    instances[owner].wait_for("a trigger", Duration::from_secs(60), |v| {
        message(v) == "trigger sent" || message(v) == "control point changed"
    });
    instances[owner].kill9();
    let ids = producing.await.unwrap();
    let mut survivors: Vec<&mut Sfwd> = instances
        .iter_mut()
        .enumerate()
        .filter(|(n, _)| *n != owner)
        .map(|(_, i)| i)
        .collect();
    for i in survivors.iter_mut() {
        wait_state(i, "STORE", 0);
    }
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 239, 120).await);
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    let failed_ids: HashSet<&str> = failed.iter().map(|f| f.request_id.as_str()).collect();
    assert_eq!(
        failed_ids.len(),
        1,
        "one failed event for the activation (copies of it collapse): {failed:?}"
    );
    let stored_ids: HashSet<&str> = stored.iter().map(|s| s.request_id.as_str()).collect();
    for id in &ids {
        assert!(
            stored_ids.contains(id.as_str()) || failed_ids.contains(id.as_str()),
            "{id} lost"
        );
    }
    assert!(
        !stored_ids.iter().any(|id| failed_ids.contains(id)),
        "the trigger is never stored"
    );
}

/// The time from a trigger to the last of three instances storing, over 20
/// activations, and the failed events per activation.
#[tokio::test(flavor = "multi_thread")]
async fn time_from_trigger_to_every_instance_storing() {
    let (sim, app, mut instances) = start_cluster("cluster-timing").await;
    let activations = 20;
    let mut lags = Vec::new();
    let mut epoch = 0;
    let mut sent = 0;
    for n in 0..activations {
        sim.set_mode(Mode::Unavailable);
        sent += produce_n(&app, 12, &format!("act{n}")).await.len();
        let mut last = 0;
        let mut store_epoch = 0;
        for i in &mut instances {
            let (e, lag) = wait_state(i, "STORE", epoch);
            store_epoch = e;
            last = last.max(lag);
        }
        lags.push(last);
        sim.set_mode(Mode::Up);
        operator(&app, "Eis", CommandKind::Forward).await;
        for i in &mut instances {
            epoch = wait_state(i, "FORWARD", store_epoch).0;
        }
    }
    let failed = decode_failed(&read_async(app.topic("failed"), activations, 60).await);
    let per_activation: HashMap<i64, usize> = failed.iter().fold(HashMap::new(), |mut m, f| {
        *m.entry(f.epoch.unwrap_or(-1)).or_default() += 1;
        m
    });
    assert_eq!(
        failed.len(),
        activations,
        "one failed event per activation: {per_activation:?}"
    );
    sim.wait_for(sent - activations, Duration::from_secs(60))
        .await
        .expect("every stored request delivered");
    lags.sort();
    let p50 = lags[lags.len() / 2];
    let p99 = lags[(lags.len() * 99).div_ceil(100) - 1];
    println!("trigger → last of 3 instances storing over {activations} activations: p50 {p50} ms, p99 {p99} ms, max {} ms; failed events per activation: {}", lags.last().unwrap(), failed.len() as f64 / activations as f64);
}
