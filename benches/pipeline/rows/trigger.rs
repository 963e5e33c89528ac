//! Rows 6 and 7 (idle): trigger to every instance storing, with three
//! instances, against its floor on the same broker (two produce→consume
//! hops of a bare client); the broker's CPU with one idle instance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use sfwd::control::CommandKind;
use sfwd::target_sim::{Mode, TargetSim};

use super::{http_app, wait_state, Memory, WAIT};
use crate::common;
use crate::common::app::{decode_failed, operator, read_async};
use crate::common::process::{field, message, Sfwd};
use crate::cpu;
use crate::report::{quantile, Goal, Report, Row};
use crate::Settings;

/// Seconds over which the broker's idle CPU is read.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

/// The broker's CPU over [`IDLE_WINDOW`], in % of one core.
async fn broker_percent() -> Option<f64> {
    let before = cpu::broker_seconds()?;
    let t0 = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let after = cpu::broker_seconds()?;
    Some((after - before) * 100.0 / t0.elapsed().as_secs_f64())
}

/// A reader of partition 0 of `topic` (new, empty) from its start, with
/// `fetch.wait.max.ms` of `wait`.
fn hop_reader(topic: &str, wait: &str) -> BaseConsumer {
    let mut c = common::client_config();
    c.set("fetch.wait.max.ms", wait);
    let consumer: BaseConsumer =
        sfwd::kafka::reader_config(&c, &common::unique("bench-probe"), "floor")
            .create()
            .expect("probe reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Polls `consumer` until the record whose value is `id` arrives.
fn receive(consumer: &BaseConsumer, id: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "probe record not received");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            if m.expect("probe reader").payload() == Some(id) {
                return;
            }
        }
    }
}

/// The floor of trigger → storing: what two sequential acknowledged hops
/// through this broker take with bare rdkafka clients. Each sample produces
/// to topic A (`acks=all`, sfwd's producer settings), consumes it with the
/// control writer's `fetch.wait.max.ms`, produces to topic B and consumes
/// it with the control table reader's, as the trigger command and the
/// decision travel. Returns milliseconds per sample.
async fn floor(samples: usize) -> Vec<f64> {
    let (a, b) = (common::unique("bench-hop-a"), common::unique("bench-hop-b"));
    common::create_topics(&[(&a, 1), (&b, 1)]).await;
    let producer: FutureProducer = sfwd::kafka::producer_config(&common::client_config())
        .create()
        .expect("probe producer");
    let hop_a = hop_reader(&a, sfwd::kafka::COMMANDS_FETCH_WAIT_MS);
    let hop_b = hop_reader(&b, sfwd::kafka::CONTROL_TABLE_FETCH_WAIT_MS);
    let mut out = Vec::with_capacity(samples);
    // Three unmeasured probes: connections made, readers at the end.
    for i in 0..samples + 3 {
        let id = format!("probe-{i}");
        let t0 = Instant::now();
        for (topic, reader) in [(&a, &hop_a), (&b, &hop_b)] {
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(0)
                        .payload(id.as_bytes()),
                    Timeout::Never,
                )
                .await
                .map_err(|(e, _)| e)
                .expect("probe acknowledged");
            receive(reader, id.as_bytes());
        }
        if i >= 3 {
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    crate::kafka_io::delete_topics(&[a, b]).await;
    out
}

/// Rows 6 and 7 (idle): three instances on one 12-partition topic, the
/// target failing and recovering `activations` times.
pub async fn trigger(s: &Settings, report: &mut Report, memory: &mut Memory) {
    const PARTITIONS: i32 = 12;
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("target sim");
    let app = http_app("bench-trigger", PARTITIONS, &sim).await;
    let assigned = |i: &mut Sfwd| {
        i.wait_for("partitions assigned", WAIT, |v| {
            message(v) == "partitions assigned" && field(v, "partitions").contains(".requests")
        });
    };
    // The broker's idle CPU: with no instance, then with one started,
    // assigned and idle.
    let idle_none = broker_percent().await;
    let mut instances = vec![Sfwd::start(&app.topology, "a", app.dir.path())];
    instances[0].wait_ready();
    assigned(&mut instances[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_one = broker_percent().await;
    for name in ["b", "c"] {
        instances.push(Sfwd::start(&app.topology, name, app.dir.path()));
    }
    for i in &mut instances[1..] {
        i.wait_ready();
        assigned(i);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in &instances {
        memory.idle(i);
    }
    let idle_three = broker_percent().await;
    let floor = floor(s.probes).await;

    let producer = common::producer();
    let topic = app.topic("requests");
    let mut lags = Vec::new();
    let mut epoch = 0;
    let mut sent = 0;
    for n in 0..s.activations {
        sim.set_mode(Mode::Unavailable);
        for i in 0..PARTITIONS {
            let key = format!("act{n}-{i}");
            common::produce(
                &producer,
                &topic,
                Some(i),
                Some(key.as_bytes()),
                Some(b"{}"),
                &[],
            )
            .await;
            sent += 1;
        }
        let mut last = 0;
        let mut store_epoch = 0;
        for i in &mut instances {
            let (e, lag) = wait_state(i, "STORE", epoch, None);
            store_epoch = e;
            last = last.max(lag);
        }
        lags.push(last as f64);
        sim.set_mode(Mode::Up);
        operator(&app, "Svc", CommandKind::Forward).await;
        for i in &mut instances {
            epoch = wait_state(i, "FORWARD", store_epoch, None).0;
        }
    }
    let failed = decode_failed(&read_async(app.topic("failed"), s.activations, 60).await);
    let mut per_activation: HashMap<i64, usize> = HashMap::new();
    for f in &failed {
        *per_activation.entry(f.epoch.unwrap_or(-1)).or_default() += 1;
    }
    sim.wait_for(sent - s.activations, WAIT)
        .await
        .expect("every stored request delivered");
    for i in &mut instances {
        assert!(i.terminate().success());
    }
    crate::kafka_io::delete_topics(&super::app_topics(&app)).await;

    let p50 = quantile(&lags, 0.5).unwrap_or(0.0);
    let p99 = quantile(&lags, 0.99).unwrap_or(0.0);
    let floor_p99 = quantile(&floor, 0.99);
    let mut row = Row::new(
        6,
        "floor: two produce→consume hops, bare rdkafka (baseline)",
        "ms",
    );
    row.samples = floor.clone();
    row.headline = floor_p99;
    row.text = Some(format!(
        "p50 {} ms, p99 {} ms ({} samples)",
        crate::report::number(quantile(&floor, 0.5).unwrap_or(0.0)),
        crate::report::number(floor_p99.unwrap_or(0.0)),
        floor.len()
    ));
    row.note = Some(format!(
        "produce (acks=all, sfwd's producer settings) to topic A, consume it (fetch.wait.max.ms {}, \
         the control writer's), produce to topic B, consume it (fetch.wait.max.ms {}, the control \
         table reader's); on the same broker with the three instances idle, before the activations",
        sfwd::kafka::COMMANDS_FETCH_WAIT_MS,
        sfwd::kafka::CONTROL_TABLE_FETCH_WAIT_MS
    ));
    report.push(row);

    let mut row = Row::new(6, "trigger → last of 3 instances storing", "ms");
    row.samples = lags.clone();
    row.headline = Some(p99);
    row.text = Some(format!(
        "p50 {} ms, p99 {} ms ({} activations)",
        crate::report::number(p50),
        crate::report::number(p99),
        lags.len()
    ));
    row.baseline = floor_p99;
    row.goal = Some(Goal::RatioAtMost(1.5));
    row.note = Some(
        "`lag_ms` of the `control state applied` log line of the last instance: from the \
         trigger command's creation to the instance acting on the decision; ratio of p99s to \
         the floor's"
            .into(),
    );
    report.push(row);

    let mut row = Row::new(6, "failed events per activation", "events");
    row.samples = per_activation.values().map(|&c| c as f64).collect();
    row.headline = Some(failed.len() as f64 / s.activations as f64);
    row.goal = Some(Goal::Exactly(1.0));
    row.note = Some(format!(
        "{} failed events over {} activations, at most {} for one epoch",
        failed.len(),
        s.activations,
        per_activation.values().max().copied().unwrap_or(0)
    ));
    report.push(row);

    if let Some(one) = idle_one {
        let mut row = Row::new(7, "broker CPU, one idle instance", "% of a core");
        row.samples = vec![one];
        row.text = Some(format!(
            "{one:.1} % of a core (no instance: {}; three: {})",
            idle_none.map_or("–".into(), |x| format!("{x:.1} %")),
            idle_three.map_or("–".into(), |x| format!("{x:.1} %")),
        ));
        row.note = Some(format!(
            "the broker's CPU time (/proc/PID/stat) over {} s with one instance of the trigger \
             rows' application started, assigned and idle, against none and three",
            IDLE_WINDOW.as_secs()
        ));
        report.push(row);
    }
    sim.shutdown().await;
}
