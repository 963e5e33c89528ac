//! Rows 1–4: the throughput of sfwd and of the baselines, each over a
//! steady-state window with a backlog of requests waiting.
//!
//! Each consumer side (a *lane*) reads its own request topic. Before a run,
//! the topic is topped up so that the backlog outlasts the window; then the
//! consumer side starts, and once its first output is there and a warm-up
//! has passed, the outputs (the output topic's high watermarks, or the
//! requests the HTTP target answered) are counted over the window. What is
//! left of the backlog stays for the next run. A first, unmeasured run of
//! every lane sizes the backlog for the measured ones. Over the same
//! window, the CPU time of what consumes (sfwd's process, or the baseline's
//! threads in this process) and of the broker is read from `/proc`.

use std::time::{Duration, Instant};

use sfwd::bindings::Target;
use sfwd::target_sim::TargetSim;

use super::{app_topics, http_app, http_target, kafka_app, start_storing, Memory, WAIT};
use crate::common;
use crate::common::app::App;
use crate::cpu::{self, Reading};
use crate::kafka_io::{self, TopicCount};
use crate::pipes;
use crate::report::{median, Cpu, Goal, Report, Row};
use crate::Settings;

/// The spread allowed to the bare pipe's samples around their median.
const STABLE: f64 = 0.15;

/// The most a backlog holds, so that the broker's storage stays small:
/// when a fast lane drains it before the window ends, the window is
/// shorter.
const MAX_BACKLOG_BYTES: i64 = 128 << 20;

/// What consumes a lane's requests.
enum Side<'a> {
    /// The bare pipe, copying to `output`.
    Bare { group: String, output: String },
    /// The naive HTTP loop, calling `target`.
    Naive { group: String, target: &'a Target },
    /// An `sfwd run` of `app`; its outputs go to `output`, or to the HTTP
    /// target when `None`.
    Sfwd {
        app: &'a App,
        output: Option<String>,
    },
}

impl Side<'_> {
    /// What the side's rows are called, for notes.
    fn name(&self) -> &'static str {
        match self {
            Side::Bare { .. } => "bare pipe",
            Side::Naive { .. } => "naive HTTP loop",
            Side::Sfwd {
                output: Some(o), ..
            } if o.ends_with("stored.Svc") => "store-divert",
            Side::Sfwd {
                output: Some(_), ..
            } => "Kafka pass-through",
            Side::Sfwd { output: None, .. } => "HTTP pass-through",
        }
    }
}

/// One consumer side, its request topic and what is left in it.
struct Lane<'a> {
    side: Side<'a>,
    input: String,
    /// Requests produced and not yet consumed.
    left: i64,
    /// The highest rate seen, to size the next backlog.
    rate: Option<f64>,
    samples: Vec<Sample>,
}

/// One measured run of a lane.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rate: f64,
    /// CPU ms per 1,000 records of what consumes, and of the broker.
    own: f64,
    broker: Option<f64>,
}

/// What a window measured.
struct Measured {
    rate: f64,
    /// Outputs counted in the window.
    records: i64,
    /// CPU readings at the window's start and end.
    cpu: (Reading, Reading),
}

/// Where outputs are counted.
enum Counter<'a> {
    Topic(TopicCount),
    Target(&'a TargetSim),
}

impl Counter<'_> {
    fn count(&self) -> i64 {
        match self {
            Counter::Topic(t) => t.count(),
            Counter::Target(sim) => sim.attempts() as i64,
        }
    }
}

/// What is running for one lane.
enum Running {
    Pipe(pipes::Running),
    Sfwd(Box<crate::common::process::Sfwd>),
}

/// Everything a run needs besides its lane.
struct Bench<'a> {
    s: &'a Settings,
    size: usize,
    sim: &'a TargetSim,
    loader: rdkafka::producer::FutureProducer,
}

impl Bench<'_> {
    async fn run(&self, lane: &mut Lane<'_>, memory: &mut Memory, measured: bool) {
        let s = self.s;
        let need = match lane.rate {
            Some(r) => ((r * (s.warmup + s.window) * 1.3) as i64 + 1000)
                .min(MAX_BACKLOG_BYTES / self.size as i64),
            None => s.records as i64,
        };
        if lane.left < need {
            let more = (need - lane.left) as usize;
            kafka_io::produce(&self.loader, &lane.input, s.partitions, more, self.size).await;
            lane.left = need;
        }
        let counter = match &lane.side {
            Side::Bare { output, .. }
            | Side::Sfwd {
                output: Some(output),
                ..
            } => Counter::Topic(TopicCount::new(output, s.partitions)),
            Side::Naive { .. } | Side::Sfwd { output: None, .. } => {
                self.sim.reset();
                Counter::Target(self.sim)
            }
        };
        let start = counter.count();
        let threads = cpu::Threads::before_start();
        let running = match &lane.side {
            Side::Bare { group, output } => {
                Running::Pipe(pipes::bare_pipe(group, &lane.input, output))
            }
            Side::Naive { group, target } => {
                Running::Pipe(pipes::naive_http(group, &lane.input, (*target).clone()))
            }
            Side::Sfwd { app, .. } => Running::Sfwd(Box::new(app.start("bench"))),
        };
        let pid = match &running {
            Running::Sfwd(sfwd) => Some(sfwd.pid()),
            Running::Pipe(_) => None,
        };
        let read = || Reading {
            own: match pid {
                Some(pid) => cpu::process_seconds(pid).unwrap_or(0.0),
                None => threads.seconds(),
            },
            broker: cpu::broker_seconds(),
        };
        let m = window(&counter, start, lane.left, s, &read);
        let rate = m.rate;
        match running {
            Running::Pipe(pipe) => pipe.stop().await,
            Running::Sfwd(mut sfwd) => {
                memory.loaded(&sfwd, &format!("{} at {} B", lane.side.name(), self.size));
                assert!(sfwd.terminate().success(), "sfwd exited with an error");
            }
        }
        lane.left -= counter.count() - start;
        lane.rate = Some(lane.rate.map_or(rate, |r| r.max(rate)));
        let (own, broker) = m.cpu.0.per_thousand(&m.cpu.1, m.records);
        if measured {
            lane.samples.push(Sample { rate, own, broker });
        }
        eprintln!(
            "  {} {} B: {rate:.0} rec/s, CPU ms per 1,000: {own:.1} own, {} broker{}",
            lane.input,
            self.size,
            broker.map_or("–".into(), |b| format!("{b:.1}")),
            if measured { "" } else { " (sizing run)" }
        );
    }
}

fn lane(side: Side<'_>, input: String) -> Lane<'_> {
    Lane {
        side,
        input,
        left: 0,
        rate: None,
        samples: Vec::new(),
    }
}

/// Waits for the first output, lets `warmup` pass, and counts outputs over
/// `window` (or until the backlog runs out): outputs per second, and the
/// CPU readings (`read`) at the window's ends.
fn window(
    counter: &Counter<'_>,
    start: i64,
    available: i64,
    s: &Settings,
    read: &dyn Fn() -> Reading,
) -> Measured {
    let deadline = Instant::now() + WAIT;
    let (first, cpu_first) = loop {
        if counter.count() > start {
            break (Instant::now(), read());
        }
        assert!(Instant::now() < deadline, "no output within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_secs_f64(s.warmup));
    let end = start + available;
    let (c0, t0, cpu0) = (counter.count(), Instant::now(), read());
    if c0 >= end {
        eprintln!("  the backlog ran out during the warm-up: rate from the first output on");
        return Measured {
            rate: (c0 - start) as f64 / (t0 - first).as_secs_f64(),
            records: c0 - start,
            cpu: (cpu_first, cpu0),
        };
    }
    let (mut c1, mut t1, mut cpu1) = (c0, t0, cpu0);
    while (t1 - t0).as_secs_f64() < s.window && c1 < end {
        std::thread::sleep(Duration::from_millis(100));
        cpu1 = read();
        c1 = counter.count();
        t1 = Instant::now();
    }
    Measured {
        rate: (c1 - c0) as f64 / (t1 - t0).as_secs_f64(),
        records: c1 - c0,
        cpu: (cpu0, cpu1),
    }
}

/// Whether `samples` lie within ±[`STABLE`] of their median.
fn stable(samples: &[f64]) -> bool {
    let Some(m) = median(samples) else {
        return false;
    };
    samples.iter().all(|x| (x - m).abs() <= STABLE * m)
}

/// Rows 1–4, every size, `reps` times, interleaved.
pub async fn throughput(s: &Settings, report: &mut Report, memory: &mut Memory) {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("target sim");
    let p = s.partitions;
    let mut rows = Vec::new();
    for &size in &s.sizes {
        let bench = Bench {
            s,
            size,
            sim: &sim,
            loader: kafka_io::loader(),
        };
        let (bare_in, bare_out) = (
            common::unique("bench-bare-in"),
            common::unique("bench-bare-out"),
        );
        common::create_topics(&[(&bare_in, p), (&bare_out, p)]).await;
        let store = kafka_app("bench-store", p).await;
        let (mut storing, _) = start_storing(&store, "bench").await;
        assert!(storing.terminate().success());
        drop(storing);
        let pass = kafka_app("bench-pass", p).await;
        let http = http_app("bench-http", p, &sim).await;
        let target = http_target(&http);

        let mut lanes = [
            lane(
                Side::Bare {
                    group: common::unique("bench-bare"),
                    output: bare_out.clone(),
                },
                bare_in.clone(),
            ),
            lane(
                Side::Sfwd {
                    app: &store,
                    output: Some(store.topic("stored.Svc")),
                },
                store.topic("requests"),
            ),
            lane(
                Side::Sfwd {
                    app: &pass,
                    output: Some(pass.topic("target")),
                },
                pass.topic("requests"),
            ),
            lane(
                Side::Naive {
                    group: common::unique("bench-naive"),
                    target: &target,
                },
                http.topic("naive"),
            ),
            lane(
                Side::Sfwd {
                    app: &http,
                    output: None,
                },
                http.topic("requests"),
            ),
        ];
        // A sizing run, then repetitions until the bare pipe's last
        // `reps` samples are within ±15 % of their median.
        eprintln!("throughput, {size} B: sizing run");
        for lane in &mut lanes {
            bench.run(lane, memory, false).await;
        }
        let mut done = 0;
        let steady = loop {
            done += 1;
            eprintln!(
                "throughput, {size} B: repetition {done} (at least {}, at most {})",
                s.reps, s.max_reps
            );
            for lane in &mut lanes {
                bench.run(lane, memory, true).await;
            }
            let bare: Vec<f64> = lanes[0].samples.iter().map(|x| x.rate).collect();
            if done >= s.reps && stable(&bare[done - s.reps..]) {
                break true;
            }
            if done >= s.max_reps {
                break false;
            }
        };
        // The repetitions the medians are of: the steady ones, or all.
        let used = if steady { done - s.reps } else { 0 }..done;
        let window_note = if steady {
            format!(
                "medians of repetitions {}–{done} of {done}, where the bare pipe's samples lie within ±15 % of their median",
                used.start + 1
            )
        } else {
            format!(
                "the bare pipe's samples did not settle within ±15 % of their median in {done} repetitions: medians of all {done}"
            )
        };
        let [bare, stored, passed, naive, http_pass] =
            lanes.map(|l| l.samples[used.clone()].to_vec());
        let rates = |x: &[Sample]| x.iter().map(|x| x.rate).collect::<Vec<_>>();
        let owns = |x: &[Sample]| x.iter().map(|x| x.own).collect::<Vec<_>>();
        let brokers = |x: &[Sample]| x.iter().filter_map(|x| x.broker).collect::<Vec<_>>();
        let (bare_median, naive_median) = (median(&rates(&bare)), median(&rates(&naive)));
        let (bare_own, bare_broker) = (median(&owns(&bare)), median(&brokers(&bare)));
        let naive_broker = median(&brokers(&naive));
        let rows_of_size = [
            (
                1,
                "bare pipe: rdkafka consume→produce (baseline)",
                bare,
                None,
                None,
                (None, None, None, None),
                Some(format!(
                    "{window_note}; own CPU: this process's threads that run the pipe \
                     (its librdkafka clients' threads and tokio's workers)"
                )),
            ),
            (
                2,
                "store-divert: sfwd, control point STORE",
                stored,
                bare_median,
                Some(Goal::RatioAtLeast(0.85)),
                (bare_own, bare_broker, Some(1.5), Some(1.25)),
                None,
            ),
            (
                3,
                "pass-through, Kafka binding",
                passed,
                bare_median,
                Some(Goal::RatioAtLeast(0.85)),
                (bare_own, bare_broker, Some(1.5), Some(1.25)),
                None,
            ),
            (
                4,
                "naive consume→HTTP→commit loop (HTTP baseline)",
                naive,
                None,
                None,
                (None, None, None, None),
                Some(
                    "own CPU includes the HTTP target simulator, which runs on the same \
                     tokio workers"
                        .to_string(),
                ),
            ),
            (
                4,
                "pass-through, HTTP binding",
                http_pass,
                naive_median,
                Some(Goal::RatioAtLeast(1.0)),
                (None, naive_broker, None, None),
                None,
            ),
        ];
        for (order, (number, measure, samples, baseline, goal, cpu, note)) in
            rows_of_size.into_iter().enumerate()
        {
            let mut row = Row::new(number, measure, "rec/s");
            row.size = Some(size);
            row.samples = rates(&samples);
            row.baseline = baseline;
            row.goal = goal;
            row.note = note;
            let (own_baseline, broker_baseline, own_goal, broker_goal) = cpu;
            row.cpu = Some(Cpu {
                own: owns(&samples),
                broker: brokers(&samples),
                own_baseline,
                broker_baseline,
                own_goal,
                broker_goal,
            });
            rows.push((order, row));
        }
        let mut topics = vec![bare_in, bare_out];
        for app in [&store, &pass, &http] {
            topics.extend(app_topics(app));
        }
        kafka_io::delete_topics(&topics).await;
    }
    rows.sort_by_key(|(order, row)| (*order, row.size));
    for (_, row) in rows {
        report.push(row);
    }
    sim.shutdown().await;
}
