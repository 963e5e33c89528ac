//! Bounded redelivery (SPEC §11): while offset commits fail, a partition
//! stops taking records once its uncommitted work reaches the bound, so a
//! broker outage repeats at most the bound per partition at the target.
//!
//! The first test runs a broker of its own, since it kills it (see
//! `common::broker`); the second uses the shared test broker.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use common::admin::{get, metric};
use common::app::{by_partition, distinct_stored, operator, start_target, App};
use common::broker::Broker;
use common::cli::cli_json;
use common::process::{field, message};
use sfwd::control::CommandKind;
use sfwd::target_sim::{Mode, TargetSim};

/// Partitions of the request topic.
const PARTITIONS: i32 = 4;
/// The test topology's `limits.max_uncommitted_records`.
const BOUND: usize = 50;
/// Requests waiting when the instance starts.
const BACKLOG: usize = 1_600;
/// Requests in the stream that follows, and how many a second.
const STREAM: usize = 2_000;
const RATE: u64 = 250;

/// An HTTP service over `sim` with store and forward, `PARTITIONS` per
/// topic and a redelivery bound of `BOUND` records; `kafka_extra`, a line
/// of YAML added to its `kafka` block (indented by two spaces).
fn bounded_app(prefix: &str, sim: &TargetSim, kafka_extra: &str) -> App {
    let url = sim.url("/eis");
    let extra = kafka_extra.to_string();
    App::new(prefix, move |name| {
        format!(
            r#"
application: {name}
kafka:
  bootstrap: "unused:9092"
  partitions: {PARTITIONS}
{extra}
limits: {{ max_uncommitted_records: {BOUND} }}
services:
  eis:
    binding:
      http: {{ url: "{url}", timeout: 5s }}
      interaction: async
    store_and_forward: {{ control_point: Eis }}
    interfaces:
      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
"#
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_and_restarted_loses_nothing_and_repeats_at_most_the_bound() {
    let bin = Broker::binary();
    let mut broker = Broker::start(bin);
    let bootstrap = broker.bootstrap();
    let sim = start_target().await;
    // Slower than the stream (about 45 a second per partition), behind a
    // backlog: when the broker dies the instance has records in hand, and
    // keeps working on them while its commits fail.
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(20),
    });
    let app = bounded_app("redeliver", &sim, "").on(&bootstrap);
    let topic = app.topic("get");
    common::create_topics_on(&bootstrap, &[(&topic, PARTITIONS)]).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut ids = produce(&bootstrap, &topic, BACKLOG, None, acked.clone()).await;
    let (mut a, admin) = app.start_with_admin("a");

    let producing = {
        let (bootstrap, topic, acked) = (bootstrap.clone(), topic.clone(), acked.clone());
        tokio::spawn(async move { produce(&bootstrap, &topic, STREAM, Some(RATE), acked).await })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before_kill = sim.received().len();
    assert!(before_kill > 0, "requests reach the target");
    broker.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during_outage = sim.received().len() - before_kill;
    eprintln!(
        "{} acknowledged and {before_kill} delivered before the kill, {during_outage} during the outage",
        acked.load(Ordering::Relaxed)
    );
    // What the operator sees while the broker is down: every partition's
    // uncommitted records, at most the bound, and the holds.
    let (_, metrics) = get(&format!("{admin}/metrics")).await;
    for p in 0..PARTITIONS {
        let uncommitted = metric(
            &metrics,
            "sfwd_uncommitted_records",
            &[("topic", &topic), ("partition", &p.to_string())],
        );
        assert!(
            uncommitted > 0.0 && uncommitted <= BOUND as f64,
            "partition {p}: {uncommitted} uncommitted records"
        );
    }
    let holds = metric(
        &metrics,
        "sfwd_uncommitted_holds_total",
        &[("topic", &topic)],
    );
    assert!(holds >= 1.0, "holds counted: {holds}");
    broker.restart();
    let restarted = Instant::now();
    let held = tokio::task::block_in_place(|| {
        a.wait_for("a partition holds", Duration::from_secs(30), |v| {
            message(v).starts_with("partition holds:")
        })
    });
    assert_eq!(field(&held, "level"), "WARN", "{held}");
    assert_eq!(field(&held, "topic"), topic, "{held}");
    assert!(
        held.get("uncommitted_records").is_some()
            && held.get("max_uncommitted_records") == Some(&serde_json::json!(BOUND)),
        "{held}"
    );

    ids.extend(producing.await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(240);
    let missing = loop {
        let received: std::collections::HashSet<String> =
            sim.received_ids().into_iter().flatten().collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !received.contains(*id)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        let n = sim.received().len();
        let _ = sim.wait_for(n + 1, Duration::from_secs(5)).await;
    };
    assert_eq!(missing, 0, "nothing lost: every request reached the target");

    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in sim.received_ids().into_iter().flatten() {
        *counts.entry(id).or_default() += 1;
    }
    let repeated: Vec<String> = counts
        .iter()
        .flat_map(|(id, n)| std::iter::repeat_n(id.clone(), n - 1))
        .collect();
    let per_partition: HashMap<String, usize> = by_partition(&repeated)
        .into_iter()
        .map(|(p, offsets)| (p, offsets.len()))
        .collect();
    let bound = BOUND * PARTITIONS as usize;
    eprintln!(
        "{} requests, {} delivered during the {} s outage, all delivered {:.1} s after the restart; \
         repeats at the target: {} (per partition {per_partition:?}), bound {bound}",
        ids.len(),
        during_outage,
        5,
        restarted.elapsed().as_secs_f64(),
        repeated.len(),
    );
    assert!(
        repeated.len() <= bound,
        "at most {BOUND} repeats per partition: {} > {bound} ({per_partition:?})",
        repeated.len()
    );
}

/// With a healthy broker the bound only paces a partition: a large backlog
/// stored as fast as it comes, under a small bound, is stored whole, and
/// every partition's uncommitted work drops to nothing once it is.
///
/// The periodic commit is a minute apart here, so the partitions move on
/// the commits they ask for alone: those must tell them what they covered.
/// (They did not: a partition whose last stored offset was committed at an
/// ask was left waiting for a report that never came, since the periodic
/// commit leaves out partitions with nothing new to commit.)
#[tokio::test(flavor = "multi_thread")]
async fn a_large_backlog_stored_under_a_small_bound_is_stored_whole() {
    const REQUESTS: usize = 6_000;
    let sim = start_target().await;
    let app = bounded_app(
        "paced",
        &sim,
        r#"  properties: { "auto.commit.interval.ms": "60000" }"#,
    );
    let topic = app.topic("get");
    common::create_topics(&[(&topic, PARTITIONS)]).await;
    let (_a, admin) = app.start_with_admin("a");
    operator(&app, "Eis", CommandKind::Store).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cp = cli_json(&app, &["control", "status"]).await["control_points"][0].clone();
        if cp["state"] == "STORE" {
            break;
        }
        assert!(Instant::now() < deadline, "never stores: {cp:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let started = Instant::now();
    let ids = produce(
        &common::bootstrap(),
        &topic,
        REQUESTS,
        None,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(ids.len(), REQUESTS);
    let stored = distinct_stored(&app, REQUESTS).await;
    eprintln!(
        "{stored} of {REQUESTS} requests stored in {:.1} s under a bound of {BOUND} per partition",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(stored, REQUESTS, "every request is stored: none stuck");
    assert!(sim.received().is_empty(), "nothing reaches the target");

    // Every partition's work is committed soon after: none waits for ever.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = get(&format!("{admin}/metrics")).await;
        let uncommitted: Vec<f64> = (0..PARTITIONS)
            .map(|p| {
                metric(
                    &metrics,
                    "sfwd_uncommitted_records",
                    &[("topic", &topic), ("partition", &p.to_string())],
                )
            })
            .collect();
        if uncommitted.iter().all(|&n| n == 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uncommitted records per partition stay at {uncommitted:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Produces `n` requests spread over the partitions, `rate` a second or
/// as fast as the producer takes them, without waiting for each
/// acknowledgement (so a stream goes on into the producer's queue while
/// the broker is down); returns their positional ids once all are
/// acknowledged, counting acknowledgements in `acked` as they come.
async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    rate: Option<u64>,
    acked: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut config = common::client_config_on(bootstrap);
    config.set("acks", "all").set("linger.ms", "5");
    let producer: FutureProducer = config.create().expect("producer");
    let mut tick = rate.map(|r| tokio::time::interval(Duration::from_micros(1_000_000 / r)));
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        let value = format!("{{\"n\":{i}}}");
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(i as i32 % PARTITIONS)
            .payload(value.as_bytes());
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueue a request");
        let acked = acked.clone();
        deliveries.push(tokio::spawn(async move {
            let delivered = delivery
                .await
                .expect("delivery report")
                .map_err(|(e, _)| e)
                .expect("request acknowledged");
            acked.fetch_add(1, Ordering::Relaxed);
            (delivered.partition, delivered.offset)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for d in deliveries {
        let (partition, offset) = d.await.unwrap();
        ids.push(format!("{topic}/{partition}/{offset}"));
    }
    ids
}
