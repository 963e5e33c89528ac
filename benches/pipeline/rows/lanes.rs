//! Lanes: what the throughput rows (1–4, 8) measure, each over a
//! steady-state window with a backlog of requests waiting.
//!
//! Each consumer side (a *lane*) reads its own request topic. Before a run,
//! the topic is topped up so that the backlog outlasts the window; then the
//! consumer side starts, and once its first output is there and a warm-up
//! has passed, the outputs (the output topic's high watermarks, or the
//! requests the HTTP target answered) are counted over the window. What is
//! left of the backlog stays for the next run; what the run consumed, and
//! its outputs, are deleted from the broker, so that its storage does not
//! grow from one repetition to the next. A first, unmeasured run of
//! every lane sizes the backlog for the measured ones. Over the same
//! window, the CPU time of what consumes (sfwd's process, or the baseline's
//! threads in this process) and of the broker is read from `/proc`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sfwd::bindings::Target;
use sfwd::target_sim::TargetSim;

use super::{Memory, WAIT};
use crate::common::app::App;
use crate::cpu::{self, Reading};
use crate::kafka_io::{self, TopicCount};
use crate::pipes;
use crate::report::median;
use crate::Settings;

/// The spread allowed to the bare pipe's samples around their median.
const STABLE: f64 = 0.15;

/// The most a backlog holds, so that the broker's storage stays small:
/// when a fast lane drains it before the window ends, the window is
/// shorter.
const MAX_BACKLOG_BYTES: i64 = 128 << 20;

/// What consumes a lane's requests.
pub(super) enum Side<'a> {
    /// The bare pipe, copying to `output`.
    Bare { group: String, output: String },
    /// The naive HTTP loop, calling `target`.
    Naive { group: String, target: &'a Target },
    /// The unordered HTTP fan-out, `in_flight` calls per partition.
    FanOut {
        group: String,
        target: &'a Target,
        in_flight: usize,
    },
    /// An `sfwd run` of `app`; its outputs go to `output`, or to the HTTP
    /// target when `None`.
    Sfwd {
        app: &'a App,
        output: Option<String>,
    },
}

impl Side<'_> {
    /// What the side's rows are called, for notes.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Side::Bare { .. } => "bare pipe",
            Side::Naive { .. } => "naive HTTP loop",
            Side::FanOut { .. } => "HTTP fan-out",
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
pub(super) struct Lane<'a> {
    pub(super) side: Side<'a>,
    pub(super) input: String,
    /// Requests produced and not yet consumed.
    left: i64,
    /// The highest rate seen, to size the next backlog.
    rate: Option<f64>,
    pub(super) samples: Vec<Sample>,
    /// Whether every run checks that each key's requests reached the
    /// HTTP target in the order of their offsets.
    check_keys: bool,
    /// Requests whose key order was checked, over every run.
    pub(super) keys_checked: usize,
}

/// One measured run of a lane.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) rate: f64,
    /// CPU ms per 1,000 records of what consumes, and of the broker.
    pub(super) own: f64,
    pub(super) broker: Option<f64>,
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
pub(super) struct Bench<'a> {
    pub(super) s: &'a Settings,
    pub(super) size: usize,
    pub(super) sim: &'a TargetSim,
    pub(super) loader: rdkafka::producer::FutureProducer,
    /// The keys the requests cycle through; `None`: a key each.
    pub(super) keys: Option<usize>,
    /// Seconds between a run's first output and its window.
    pub(super) warmup: f64,
}

impl Bench<'_> {
    pub(super) async fn run(&self, lane: &mut Lane<'_>, memory: &mut Memory, measured: bool) {
        let s = self.s;
        let need = match lane.rate {
            Some(r) => ((r * (self.warmup + s.window) * 1.3) as i64 + 1000)
                .min(MAX_BACKLOG_BYTES / self.size as i64),
            None => (s.records as i64).min(MAX_BACKLOG_BYTES / self.size as i64),
        };
        if lane.left < need {
            let more = (need - lane.left) as usize;
            kafka_io::produce(
                &self.loader,
                &lane.input,
                s.partitions,
                more,
                self.size,
                self.keys,
            )
            .await;
            lane.left = need;
        }
        let counter = match &lane.side {
            Side::Bare { output, .. }
            | Side::Sfwd {
                output: Some(output),
                ..
            } => Counter::Topic(TopicCount::new(output, s.partitions)),
            Side::Naive { .. } | Side::FanOut { .. } | Side::Sfwd { output: None, .. } => {
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
            Side::FanOut {
                group,
                target,
                in_flight,
            } => Running::Pipe(pipes::fan_out_http(
                group,
                &lane.input,
                (*target).clone(),
                *in_flight,
            )),
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
        // The window waits in this thread: `block_in_place` hands this
        // tokio worker's other tasks (an in-process baseline's, the target
        // simulator's) to another thread meanwhile, so that the waiting
        // takes no worker from them.
        let m = tokio::task::block_in_place(|| {
            window(&counter, start, lane.left, self.warmup, s.window, &read)
        });
        let rate = m.rate;
        match running {
            Running::Pipe(pipe) => pipe.stop().await,
            Running::Sfwd(mut sfwd) => {
                memory.loaded(&sfwd, &format!("{} at {} B", lane.side.name(), self.size));
                assert!(sfwd.terminate().success(), "sfwd exited with an error");
            }
        }
        lane.left -= counter.count() - start;
        // What this run consumed, and its outputs, are of no further use.
        let group = match &lane.side {
            Side::Bare { group, .. } | Side::Naive { group, .. } | Side::FanOut { group, .. } => {
                group.as_str()
            }
            Side::Sfwd { app, .. } => app.name.as_str(),
        };
        let mut trimmed = kafka_io::trim(&lane.input, s.partitions, Some(group)).await;
        if let Counter::Topic(t) = &counter {
            trimmed &= kafka_io::trim(t.topic(), s.partitions, None).await;
        }
        if !trimmed {
            eprintln!("  the broker did not delete the records this run is done with: its storage grows with each run");
        }
        if lane.check_keys {
            lane.keys_checked += check_key_order(self.sim, &lane.input);
        }
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

impl Bench<'_> {
    /// Runs every lane once unmeasured (sizing the backlogs), then in
    /// measured repetitions until the first lane's (the baseline's) last
    /// `reps` samples lie within ±15 % of their median, or `max_reps` are
    /// done. Returns the repetitions the medians are to be of (the steady
    /// ones, or all) and a note that says which.
    pub(super) async fn repeat(
        &self,
        lanes: &mut [Lane<'_>],
        memory: &mut Memory,
        what: &str,
    ) -> (std::ops::Range<usize>, String) {
        let s = self.s;
        eprintln!("{what}: sizing run");
        for lane in lanes.iter_mut() {
            self.run(lane, memory, false).await;
        }
        let mut done = 0;
        let steady = loop {
            done += 1;
            eprintln!(
                "{what}: repetition {done} (at least {}, at most {})",
                s.reps, s.max_reps
            );
            for lane in lanes.iter_mut() {
                self.run(lane, memory, true).await;
            }
            let baseline: Vec<f64> = lanes[0].samples.iter().map(|x| x.rate).collect();
            if done >= s.reps && stable(&baseline[done - s.reps..]) {
                break true;
            }
            if done >= s.max_reps {
                break false;
            }
        };
        let name = lanes[0].side.name();
        if steady {
            let used = done - s.reps..done;
            let note = format!(
                "medians of repetitions {}–{done} of {done}, where the {name}'s samples lie within ±15 % of their median",
                used.start + 1
            );
            (used, note)
        } else {
            let note = format!(
                "the {name}'s samples did not settle within ±15 % of their median in {done} repetitions: medians of all {done}"
            );
            (0..done, note)
        }
    }
}

pub(super) fn lane(side: Side<'_>, input: String) -> Lane<'_> {
    Lane {
        side,
        input,
        left: 0,
        rate: None,
        samples: Vec::new(),
        check_keys: false,
        keys_checked: 0,
    }
}

/// A lane whose runs check each key's order at the target.
pub(super) fn keyed_lane(side: Side<'_>, input: String) -> Lane<'_> {
    Lane {
        check_keys: true,
        ..lane(side, input)
    }
}

/// Checks that the requests of `input` the target answered in this run
/// came, key by key, in the order of their offsets (each key lives on one
/// partition); returns how many were checked. Panics, naming the key and
/// the offsets, when one came out of order.
fn check_key_order(sim: &TargetSim, input: &str) -> usize {
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut checked = 0;
    for r in sim.received() {
        let Some(id) = r.request_id.filter(|id| id.starts_with(input)) else {
            continue;
        };
        let offset: i64 = id
            .rsplit('/')
            .next()
            .and_then(|o| o.parse().ok())
            .unwrap_or_else(|| panic!("request id `{id}` does not end in an offset"));
        let key = r.key.unwrap_or_default();
        if let Some(before) = last.insert(key.clone(), offset) {
            assert!(
                offset > before,
                "key `{key}` of {input}: offset {offset} reached the target after {before}"
            );
        }
        checked += 1;
    }
    checked
}

/// Waits for the first output, lets `warmup` seconds pass, and counts
/// outputs over `span` seconds (or until the backlog runs out): outputs
/// per second, and the CPU readings (`read`) at the window's ends.
fn window(
    counter: &Counter<'_>,
    start: i64,
    available: i64,
    warmup: f64,
    span: f64,
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
    std::thread::sleep(Duration::from_secs_f64(warmup));
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
    while (t1 - t0).as_secs_f64() < span && c1 < end {
        std::thread::sleep(Duration::from_millis(100));
        cpu1 = read();
        c1 = counter.count();
        t1 = Instant::now();
    }
    if c1 >= end && (t1 - t0).as_secs_f64() < span / 2.0 {
        // The window saw only the backlog's tail, which drains slower
        // than the steady state (fewer partitions still have records):
        // the rate from the first output on says more.
        eprintln!(
            "  the backlog ran out {:.1} s into the window: rate from the first output on",
            (t1 - t0).as_secs_f64()
        );
        return Measured {
            rate: (c1 - start) as f64 / (t1 - first).as_secs_f64(),
            records: c1 - start,
            cpu: (cpu_first, cpu1),
        };
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
