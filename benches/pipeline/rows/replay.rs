//! Row 5: replaying a stored backlog while live requests keep coming.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use sfwd::control::CommandKind;

use super::{kafka_app, start_storing, wait_state, Memory, WAIT};
use crate::common;
use crate::common::app::operator;
use crate::cpu::{self, Reading};
use crate::kafka_io::{self, Span};
use crate::report::{quantile, Cpu, Goal, Report, Row};
use crate::Settings;

/// One output of the replay run.
struct Output {
    source_partition: i32,
    source_offset: i64,
    written_ms: i64,
    produced_ms: Option<i64>,
}

/// Reads the outputs of `topic` between the watermarks `from` and `to`.
fn read_outputs(topic: &str, from: &[i64], to: &[i64]) -> Vec<Output> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = common::client_config();
    c.set("group.id", common::unique("bench-reader"))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut left = 0;
    for (p, (a, b)) in from.iter().zip(to).enumerate() {
        if b > a {
            tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Offset(*a))
                .expect("offset");
            left += b - a;
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(left as usize);
    let deadline = std::time::Instant::now() + WAIT;
    while left > 0 {
        assert!(std::time::Instant::now() < deadline, "reading {topic}");
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("reading outputs");
        if m.offset() >= to[m.partition() as usize] {
            continue;
        }
        left -= 1;
        let id = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "sfwd-request-id")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        let Some((partition, offset)) = id.as_deref().and_then(|id| {
            let (rest, offset) = id.rsplit_once('/')?;
            let (_, partition) = rest.rsplit_once('/')?;
            Some((partition.parse().ok()?, offset.parse().ok()?))
        }) else {
            panic!("an output without a positional request id: {id:?}");
        };
        out.push(Output {
            source_partition: partition,
            source_offset: offset,
            written_ms: m.timestamp().to_millis().unwrap_or(0),
            produced_ms: m.payload().and_then(kafka_io::produced_at),
        });
    }
    out
}

/// Produces live requests at `rate` per second until `stop`; counts them.
fn live_traffic(
    topic: String,
    partitions: i32,
    rate: u32,
    size: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let producer = common::producer();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        let mut i = 0usize;
        let mut pending = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let key = format!("live-{i}");
            let payload = kafka_io::value(size);
            let record = FutureRecord::to(&topic)
                .key(key.as_bytes())
                .payload(payload.as_slice())
                .partition((i % partitions as usize) as i32);
            pending.push(
                rdkafka::producer::FutureProducer::send_result(&producer, record)
                    .map_err(|(e, _)| e)
                    .expect("live request"),
            );
            i += 1;
        }
        for d in pending {
            d.await
                .expect("delivery")
                .map_err(|(e, _)| e)
                .expect("live request acknowledged");
        }
        sent.store(i, Ordering::Relaxed);
    })
}

/// The replay application with its running instance.
struct Run<'a> {
    app: &'a crate::common::app::App,
    sfwd: crate::common::process::Sfwd,
    /// The epoch of the control point's last change.
    epoch: u64,
    /// Whether the control point is in STORE.
    storing: bool,
    loader: rdkafka::producer::FutureProducer,
    partitions: i32,
    size: usize,
}

impl Run<'_> {
    /// Stores `backlog` requests, switches to FORWARD with live requests
    /// coming at `live_rate` per second, and waits until the replay has
    /// ended and every request is delivered. Returns the replay's rate,
    /// the live requests' latencies (ms) and their number, and the CPU ms
    /// per 1,000 records delivered of sfwd and of the broker from the
    /// command to forward until the last is there.
    async fn replay(
        &mut self,
        backlog: usize,
        live_rate: u32,
        memory: &mut Memory,
    ) -> (f64, Vec<f64>, usize, (f64, Option<f64>)) {
        let (app, p) = (self.app, self.partitions);
        let (stored, requests, output) = (
            app.topic("stored.Svc"),
            app.topic("requests"),
            app.topic("target"),
        );
        if !self.storing {
            operator(app, "Svc", CommandKind::Store).await;
            self.epoch = wait_state(&mut self.sfwd, "STORE", self.epoch, None).0;
        }
        let stored_from = kafka_io::highs(&stored, p);
        kafka_io::produce(&self.loader, &requests, p, backlog, self.size, None).await;
        kafka_io::wait_outputs(&stored, &stored_from, backlog, WAIT);
        let boundary = kafka_io::highs(&requests, p);
        let from = kafka_io::highs(&output, p);

        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let live = live_traffic(
            requests.clone(),
            p,
            live_rate,
            self.size,
            stop.clone(),
            sent.clone(),
        );
        let pid = self.sfwd.pid();
        let read = || Reading {
            own: cpu::process_seconds(pid).unwrap_or(0.0),
            broker: cpu::broker_seconds(),
        };
        let cpu0 = read();
        operator(app, "Svc", CommandKind::Forward).await;
        self.epoch = wait_state(&mut self.sfwd, "FORWARD", self.epoch, Some(false)).0;
        self.storing = false;
        stop.store(true, Ordering::Relaxed);
        live.await.expect("live traffic");
        let live_n = sent.load(Ordering::Relaxed);
        let (to, _) = kafka_io::wait_outputs(&output, &from, backlog + live_n, WAIT);
        let cpu = cpu0.per_thousand(&read(), (backlog + live_n) as i64);
        memory.loaded(&self.sfwd, "replay");

        let outputs = read_outputs(&output, &from, &to);
        let (replayed, live): (Vec<&Output>, Vec<&Output>) = outputs
            .iter()
            .partition(|o| o.source_offset < boundary[o.source_partition as usize]);
        let rate = Span::of(replayed.iter().map(|o| o.written_ms)).rate();
        let latencies = live
            .iter()
            .filter_map(|o| Some((o.written_ms - o.produced_ms?) as f64))
            .collect();
        eprintln!(
            "  replayed at {rate:.0} rec/s, {live_n} live requests; CPU ms per 1,000: {:.1} sfwd, {} broker",
            cpu.0,
            cpu.1.map_or("–".into(), |b| format!("{b:.1}"))
        );
        (rate, latencies, live_n, cpu)
    }
}

/// Row 5: replaying a stored backlog while live requests keep coming.
pub async fn replay(s: &Settings, report: &mut Report, memory: &mut Memory) {
    let (p, size) = (s.partitions, 100);
    let row_median = |number: u8, measure: &str| {
        report
            .rows
            .iter()
            .find(|r| r.number == number && r.size == Some(size) && r.measure.starts_with(measure))
            .and_then(|r| r.median())
    };
    let bare = row_median(1, "bare pipe");
    let pass_through = row_median(3, "pass-through");
    let bare_cpu = report
        .rows
        .iter()
        .find(|r| r.number == 1 && r.size == Some(size))
        .and_then(|r| r.cpu.clone());
    let app = kafka_app("bench-replay", p).await;
    let (sfwd, epoch) = start_storing(&app, "bench").await;
    let mut run = Run {
        app: &app,
        sfwd,
        epoch,
        storing: true,
        loader: kafka_io::loader(),
        partitions: p,
        size,
    };
    // A first, small replay measures how fast this broker lets a replay
    // go; the measured ones are sized to take about the budget, with live
    // traffic at a tenth of that rate.
    let sizing = match pass_through {
        Some(rate) => ((rate * 5.0) as usize).clamp(1000, s.backlog),
        None => s.backlog.min(5000),
    };
    eprintln!("replay, sizing run of {sizing} stored requests");
    let (rate, _, _, _) = run.replay(sizing, 1, memory).await;
    let backlog = ((rate * s.replay_budget) as usize / 1000 * 1000).clamp(1000, s.backlog);
    let live_rate = s.live_rate.min((rate / 10.0).ceil() as u32).max(1);

    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    let mut all_latencies = Vec::new();
    let mut live_total = 0;
    let (mut own, mut broker) = (Vec::new(), Vec::new());
    for rep in 0..s.reps {
        eprintln!(
            "replay of {backlog} stored requests, repetition {}",
            rep + 1
        );
        let (rate, latencies, live_n, cpu) = run.replay(backlog, live_rate, memory).await;
        rates.push(rate);
        own.push(cpu.0);
        broker.extend(cpu.1);
        if let Some(p99) = quantile(&latencies, 0.99) {
            p99s.push(p99);
        }
        all_latencies.extend(latencies);
        live_total += live_n;
    }
    let mut sfwd = run.sfwd;
    assert!(sfwd.terminate().success());
    kafka_io::delete_topics(&super::app_topics(&app)).await;

    let mut row = Row::new(
        5,
        format!("replay of {backlog} stored requests, live traffic {live_rate}/s"),
        "rec/s",
    );
    row.size = Some(size);
    row.samples = rates;
    // The replay sends to the same Kafka target as row 3: its baseline is
    // sfwd's own pass-through on this broker, in this run.
    row.baseline = pass_through;
    row.goal = Some(Goal::RatioAtLeast(0.8));
    row.cpu = Some(Cpu {
        own,
        broker,
        own_baseline: bare_cpu.as_ref().and_then(|c| c.own_median()),
        broker_baseline: bare_cpu.as_ref().and_then(|c| c.broker_median()),
        own_goal: None,
        broker_goal: None,
    });
    let mut notes = Vec::new();
    match (pass_through, bare, row.median()) {
        (None, _, _) => {
            notes.push("no ratio: Kafka pass-through did not run (SFWD_BENCH_ROWS)".to_string())
        }
        (Some(_), Some(bare), Some(median)) => notes.push(format!(
            "ratio to Kafka pass-through (row 3, 100 B); {:.2}x the bare pipe",
            median / bare
        )),
        (Some(_), _, _) => notes.push("ratio to Kafka pass-through (row 3, 100 B)".to_string()),
    }
    notes.push(
        "CPU from the command to forward until every request is delivered, per 1,000 \
         delivered (stored and live), ratios to the bare pipe (row 1, 100 B)"
            .to_string(),
    );
    if backlog < s.backlog {
        notes.push(format!(
            "backlog made smaller than {}: at the rate of a first, small replay it would take more than {:.0} s to drain on this broker",
            s.backlog, s.replay_budget
        ));
    }
    row.note = Some(notes.join("; "));
    report.push(row);

    let mut row = Row::new(5, "live latency during the replay", "ms");
    row.size = Some(size);
    row.samples = p99s;
    row.headline = quantile(&all_latencies, 0.99);
    row.text = Some(format!(
        "p50 {} ms, p99 {} ms ({} live requests)",
        crate::report::number(quantile(&all_latencies, 0.5).unwrap_or(0.0)),
        crate::report::number(quantile(&all_latencies, 0.99).unwrap_or(0.0)),
        live_total
    ));
    row.note = Some(
        "a live request waits in its source topic until its partition's backlog is replayed (G4); \
         the spread is of the p99 per repetition"
            .into(),
    );
    report.push(row);
}
