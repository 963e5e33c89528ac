//! Replays that finish whoever owns the control point's command partition,
//! that hold a cluster-wide pace, and that wait for an overloaded target
//! (SPEC §11), with real `sfwd run` processes on the real broker.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use common::app::*;
use common::process::{field, message, Sfwd};
use rdkafka::producer::FutureRecord;
use sfwd::control::{command_partition, CommandKind};
use sfwd::records::FailureReason;
use sfwd::target_sim::{Mode, TargetSim};

const PARTITIONS: i32 = 12;

/// One HTTP service over `sim` with control point `cp`, a 12-partition
/// request topic, and `replay` as its `replay:` block.
fn app(prefix: &str, sim: &TargetSim, cp: &str, replay: &str) -> App {
    App::http_with(
        prefix,
        sim,
        PARTITIONS,
        "",
        cp,
        &format!("replay: {replay}"),
        |name| format!("      Query: {{ operations: {{ get: {{ topic: {name}.requests }} }} }}"),
    )
}

fn start_all(app: &App, names: &[&str]) -> Vec<Sfwd> {
    let mut instances: Vec<Sfwd> = names.iter().map(|i| app.start(i)).collect();
    for i in &mut instances {
        i.wait_assigned();
    }
    instances
}

/// Produces `n` requests, request `i` to partition `i mod 12`, all sent
/// before any delivery is awaited; returns their ids in production order.
async fn produce_many(app: &App, n: usize) -> Vec<String> {
    let producer = common::producer();
    let topic = app.topic("requests");
    let mut pending = Vec::new();
    for i in 0..n {
        let key = format!("k-{i}");
        let record = FutureRecord::to(&topic)
            .partition(i as i32 % PARTITIONS)
            .key(&key)
            .payload("{}");
        pending.push(producer.send_result(record).expect("queue a request"));
    }
    let mut ids = Vec::new();
    for d in pending {
        let d = d.await.unwrap().map_err(|(e, _)| e).expect("produce");
        ids.push(format!("{topic}/{}/{}", d.partition, d.offset));
    }
    ids
}

/// Waits until `instance` has applied a state of `mode` (and, for
/// FORWARD, `replaying`) at an epoch above `after`; returns the epoch.
fn wait_state(instance: &mut Sfwd, mode: &str, replaying: bool, after: u64) -> u64 {
    let v = instance.wait_for(
        &format!("{mode} (replaying: {replaying}) after epoch {after}"),
        Duration::from_secs(60),
        |v| {
            message(v) == "control state applied"
                && field(v, "mode") == mode
                && v["replaying"].as_bool() == Some(replaying)
                && v["epoch"].as_u64().is_some_and(|e| e > after)
        },
    );
    v["epoch"].as_u64().unwrap()
}

/// Switches `cp` to STORE on every instance and parks `n` requests.
async fn park(app: &App, cp: &str, instances: &mut [Sfwd], n: usize) -> (u64, Vec<String>) {
    operator(app, cp, CommandKind::Store).await;
    let mut epoch = 0;
    for i in instances.iter_mut() {
        epoch = wait_state(i, "STORE", false, 0);
    }
    let ids = produce_many(app, n).await;
    read_async(app.topic(&format!("stored.{cp}")), n, 120).await;
    (epoch, ids)
}

/// Forwards `cp` and waits until the target has received `n` of its
/// stored requests.
async fn forward_until(app: &App, cp: &str, sim: &TargetSim, n: usize) {
    operator(app, cp, CommandKind::Forward).await;
    sim.wait_for(n, Duration::from_secs(60))
        .await
        .expect("the replay started");
}

/// Waits until every stored request reached the target and every
/// instance has seen the replay catch up, then checks the deliveries.
async fn finish(sim: &TargetSim, instances: &mut [Sfwd], stored_epoch: u64, ids: &[String]) {
    sim.wait_for(ids.len(), Duration::from_secs(180))
        .await
        .expect("every stored request replayed");
    for i in instances.iter_mut() {
        wait_state(i, "FORWARD", false, stored_epoch);
    }
    assert_replayed_once_in_order(sim, ids);
}

/// Whether the latest writer assignment `instance` logged includes
/// command partition `partition`.
fn owns(instance: &mut Sfwd, partition: i32) -> bool {
    let v = instance.wait_for("writer partitions", Duration::from_secs(60), |v| {
        message(v) == "control writer owns command partitions"
    });
    partition_listed(&v, partition)
}

fn partition_listed(v: &serde_json::Value, partition: i32) -> bool {
    field(v, "partitions")
        .trim_matches(|c| c == '{' || c == '}')
        .split(", ")
        .any(|p| p == partition.to_string())
}

/// Every request delivered exactly once (or a repeat flagged as a
/// possible redelivery), in source order per partition.
fn assert_replayed_once_in_order(sim: &TargetSim, ids: &[String]) {
    let received: HashSet<String> = sim
        .received()
        .into_iter()
        .filter_map(|r| r.request_id)
        .collect();
    for id in ids {
        assert!(received.contains(id), "{id} lost");
    }
    assert!(
        sim.duplicates().is_empty(),
        "delivered twice from the store: {:?}",
        sim.duplicates()
    );
    assert_in_order_per_partition(&received_by_partition(sim), ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_finishes_when_the_control_writer_leaves_during_it() {
    let sim = start_target().await;
    let app = app("replay-owner-leaves", &sim, "Eis", "{ rate: 100/s }");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a", "b", "c"]);
    let partition = command_partition("Eis", PARTITIONS);
    let owner = instances
        .iter_mut()
        .position(|i| owns(i, partition))
        .expect("an instance owns the control point's command partition");

    let (stored_epoch, ids) = park(&app, "Eis", &mut instances, 1_500).await;
    forward_until(&app, "Eis", &sim, 150).await;
    let mut leaving = instances.remove(owner);
    assert!(leaving.terminate().success(), "a clean stop on SIGTERM");
    assert!(
        sim.received().len() < ids.len(),
        "the owner left while the replay ran"
    );
    finish(&sim, &mut instances, stored_epoch, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_finishes_when_a_joining_instance_takes_over_the_control_writer() {
    let sim = start_target().await;
    // A control point whose command partition is the first: the
    // cooperative-sticky assignor has the first instance keep the last
    // partitions and hand over the first ones when others join.
    let cp = (0..)
        .map(|n| format!("Eis{n}"))
        .find(|name| command_partition(name, PARTITIONS) == 0)
        .unwrap();
    let app = app("replay-owner-joins", &sim, &cp, "{ rate: 100/s }");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a"]);
    assert!(owns(&mut instances[0], 0));

    let (stored_epoch, ids) = park(&app, &cp, &mut instances, 1_500).await;
    forward_until(&app, &cp, &sim, 150).await;
    instances.extend(start_all(&app, &["b", "c"]));
    let takes_over = |v: &serde_json::Value| {
        message(v) == "control writer owns command partitions" && partition_listed(v, 0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let new_owner = loop {
        if let Some(n) = (1..3).find(|&n| {
            instances[n]
                .find_within(Duration::from_millis(200), takes_over)
                .is_some()
        }) {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no joining instance took over the control point's command partition"
        );
    };
    println!("instance {new_owner} took over command partition 0");
    assert!(
        sim.received().len() < ids.len(),
        "the owner changed while the replay ran"
    );
    finish(&sim, &mut instances, stored_epoch, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paced_replay_killed_midway_resumes_and_finishes() {
    let sim = start_target().await;
    let app = app("replay-kill9", &sim, "Eis", "{ rate: 100/s }");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a", "b", "c"]);
    let (stored_epoch, ids) = park(&app, "Eis", &mut instances, 1_500).await;
    forward_until(&app, "Eis", &sim, 300).await;
    instances[0].kill9();
    assert!(sim.received().len() < ids.len(), "killed while replaying");
    let mut survivors = instances.split_off(1);

    sim.wait_for(ids.len(), Duration::from_secs(180))
        .await
        .expect("every stored request replayed");
    for i in &mut survivors {
        wait_state(i, "FORWARD", false, stored_epoch);
    }
    // A kill -9 may repeat what was delivered after the last progress
    // write, and only flagged as a possible redelivery.
    let mut deliveries: HashMap<String, Vec<bool>> = HashMap::new();
    for r in sim.received() {
        deliveries
            .entry(r.request_id.unwrap())
            .or_default()
            .push(r.redelivery);
    }
    for id in &ids {
        let flags = deliveries.get(id).unwrap_or_else(|| panic!("{id} lost"));
        assert!(
            flags.len() == 1 || flags[1..].iter().all(|f| *f),
            "{id} delivered {} times without the redelivery flag: {flags:?}",
            flags.len()
        );
    }
    let bound = PARTITIONS as usize * sfwd::pipeline::redelivery_bound(1);
    let repeats = deliveries.values().filter(|f| f.len() > 1).count();
    assert!(repeats <= bound, "{repeats} repeats, bound {bound}");
}

/// `sfwd control status --output json` of `app`.
fn control_status(app: &App) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args(["control", "status", "--output", "json", "--topology"])
        .arg(&app.topology)
        .env("SFWD_BOOTSTRAP", common::bootstrap())
        .output()
        .expect("run sfwd control status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paced_replay_stays_within_its_cluster_wide_rate() {
    let sim = start_target().await;
    let app = app("replay-paced", &sim, "Eis", "{ rate: 100/s }");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a", "b", "c"]);
    let (stored_epoch, ids) = park(&app, "Eis", &mut instances, 2_000).await;
    // Midway, `sfwd control status` shows how far it got and what is left.
    forward_until(&app, "Eis", &sim, 500).await;
    let status = control_status(&app);
    let replay = &status["control_points"][0]["replay"];
    assert_eq!(replay["total"], 2_000, "{replay}");
    assert_eq!(replay["pace"], "100/s", "{replay}");
    let replayed = replay["replayed"].as_u64().unwrap();
    assert!((500..2_000).contains(&replayed), "{replay}");
    let rate = replay["rate_per_second"].as_f64().unwrap();
    assert!(rate > 0.0 && rate <= 110.0, "{replay}");
    assert!(replay["eta_seconds"].as_u64().is_some(), "{replay}");
    assert_eq!(replay["by_partition"].as_array().unwrap().len(), 12);
    finish(&sim, &mut instances, stored_epoch, &ids).await;

    let times: Vec<SystemTime> = sim.received().iter().map(|r| r.at).collect();
    let busiest = busiest_window(&times, Duration::from_secs(5));
    println!(
        "paced replay of {} at 100/s: busiest 5 s window {busiest} requests",
        ids.len()
    );
    assert!(
        busiest <= 550,
        "{busiest} requests within 5 s: above the cap of 100/s by more than 10%"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pace_command_slows_a_running_replay_on_every_instance() {
    let sim = start_target().await;
    let app = app("replay-pace-cmd", &sim, "Eis", "{}");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a", "b"]);
    let (stored_epoch, ids) = park(&app, "Eis", &mut instances, 1_200).await;
    // Set while storing: the replay starts at this pace.
    common::cli::cli(&app, &["control", "pace", "Eis", "20/s"])
        .await
        .ok()
        .prints("`Eis` replays at 20/s (was unlimited (the topology's))");
    forward_until(&app, "Eis", &sim, 100).await;
    let times: Vec<SystemTime> = sim.received().iter().map(|r| r.at).collect();
    let slow = busiest_window(&times, Duration::from_secs(2));
    assert!(slow <= 48, "{slow} requests within 2 s at 20/s");
    // Unlimited from now on: the rest follows without a cap.
    common::cli::cli(&app, &["control", "pace", "Eis", "unlimited"])
        .await
        .ok()
        .prints("`Eis` replays at unlimited (was 20/s)");
    finish(&sim, &mut instances, stored_epoch, &ids).await;
    let times: Vec<SystemTime> = sim.received().iter().map(|r| r.at).collect();
    let fast = busiest_window(&times, Duration::from_secs(2));
    assert!(
        fast > 48,
        "after `pace unlimited` the replay went no faster: {fast} within 2 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_pauses_the_replay_without_a_trigger() {
    let sim = start_target().await;
    let app = app("replay-429", &sim, "Eis", "{ on_overload: back-off }");
    common::create_topics(&[(&app.topic("requests"), PARTITIONS)]).await;
    let mut instances = start_all(&app, &["a"]);
    let (stored_epoch, ids) = park(&app, "Eis", &mut instances, 240).await;

    sim.set_mode(Mode::Overloaded {
        retry_after: Duration::from_secs(3),
    });
    operator(&app, "Eis", CommandKind::Forward).await;
    let forward_epoch = wait_state(&mut instances[0], "FORWARD", true, stored_epoch);
    // Each partition's first request is refused; the replay of that
    // partition then waits 3 s before sending it again.
    instances[0].wait_for("a back-off", Duration::from_secs(60), |v| {
        message(v) == "target overloaded during the replay: waiting as it asks, then sending again"
            && v["wait_ms"].as_u64() == Some(3_000)
    });
    let before = sim.attempts();
    let paused = std::time::Instant::now();
    // Observe the target for as long as one Retry-After lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = sim.attempts() - before;
    let elapsed = paused.elapsed();
    assert!(
        during <= 2 * PARTITIONS as u64 * 3,
        "{during} attempts within {elapsed:?}: the replay did not wait as the 429 asked"
    );
    assert_eq!(sim.received().len(), 0);

    sim.set_mode(Mode::Up);
    sim.wait_for(ids.len(), Duration::from_secs(120))
        .await
        .expect("every stored request replayed once the target is up");
    wait_state(&mut instances[0], "FORWARD", false, forward_epoch);
    assert_replayed_once_in_order(&sim, &ids);
    let failed = decode_failed(&read_async(app.topic("failed"), 0, 30).await);
    assert!(
        failed
            .iter()
            .all(|f| f.reason != FailureReason::StoreTrigger),
        "a 429 during the replay triggered the store: {failed:?}"
    );
    assert!(failed.is_empty(), "{failed:?}");
}
