//! `cargo bench --bench pipeline` (or `./dev bench`, which starts a broker):
//! sfwd against the bare librdkafka pipe, side by side on one broker, in one
//! run (SPEC §9).
//!
//! sfwd is measured as it runs in production: the `sfwd` binary of this
//! build, started as processes with `sfwd run`. The baselines (a bare
//! consume→produce pipe, a naive consume→HTTP→commit loop) run inside this
//! process with the same client settings (`sfwd::kafka::producer_config`,
//! `group_consumer_config`, the HTTP binding's client).
//!
//! # Method
//!
//! Throughput rows (steady state, see `rows/throughput.rs`): requests are
//! produced to the request topic first, so that a backlog waits; then the
//! consumer side (pipe or sfwd) is started, and once its first output is
//! there and a warm-up has passed, its outputs are counted over a window:
//! the output topic's high watermarks, or the requests the HTTP target
//! answered, sampled every 100 ms. Start-up and group joins are not
//! counted. Rows are interleaved within each repetition, so that noise from
//! other work on the machine falls on all of them alike; ratios are of
//! medians measured in the same run. Repetitions go on (up to
//! `SFWD_BENCH_MAX_REPS`) until the bare pipe's last `SFWD_BENCH_REPS`
//! samples at every size lie within ±15 % of their median; the medians are
//! of those repetitions, of every row alike.
//!
//! CPU per record (see `cpu.rs`): over each window, the CPU time of the
//! sfwd processes (`/proc/PID/stat`) or of the baseline's threads in this
//! process (`/proc/self/task/TID/stat`), and of the broker when
//! `SFWD_BENCH_BROKER_PID` names its process (`./dev bench` does), per
//! 1,000 records output in the window.
//!
//! The broker is `SFWD_TEST_BOOTSTRAP`; `SFWD_BENCH_BROKER` describes it in
//! the report. Settings (environment): `SFWD_BENCH_RECORDS` (the backlog of
//! the first, sizing run of a throughput row), `SFWD_BENCH_WARMUP_S`,
//! `SFWD_BENCH_WINDOW_S`, `SFWD_BENCH_SIZES` (value sizes in bytes, default
//! `100,1000`), `SFWD_BENCH_REPS`, `SFWD_BENCH_MAX_REPS`,
//! `SFWD_BENCH_PARTITIONS`,
//! `SFWD_BENCH_BACKLOG` and `SFWD_BENCH_REPLAY_BUDGET_S` (the replay's
//! backlog, made smaller when a first, small replay shows that draining it
//! would take longer than the budget), `SFWD_BENCH_LIVE_RATE`,
//! `SFWD_BENCH_ACTIVATIONS`, `SFWD_BENCH_PROBES` (samples of the trigger's
//! floor), `SFWD_BENCH_HTTP_IN_FLIGHT`, `SFWD_BENCH_HTTP_KEYS`,
//! `SFWD_BENCH_HTTP_LATENCY_MS` and `SFWD_BENCH_HTTP_WARMUP_S` (row 8: the
//! cap of calls per partition, the keys, the target's latency, and a
//! warm-up long enough for the adaptive limit to reach the cap),
//! `SFWD_BENCH_ROWS` (a comma-separated subset of
//! `throughput,http,replay,trigger`), `SFWD_BENCH_OUT` (the JSON file),
//! `SFWD_BENCH_EXTRA_YAML` (top-level topology lines added to the
//! benchmark's applications, to measure a setting's effect).
//! `SFWD_BENCH_BROKER_PID`: the broker's process, for its CPU time.

/// The allocator sfwd runs with (`src/main.rs`), for the baselines in this
/// process too: the ratios then measure the work sfwd does, not a
/// different allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../tests/common/mod.rs"]
mod common;

mod cpu;
mod kafka_io;
mod pipes;
mod report;
mod rows;

use std::path::PathBuf;
use std::time::Instant;

use report::{Machine, Report};

/// What one run measures, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requests waiting before the first (sizing) run of a throughput row.
    pub records: usize,
    /// Seconds between a throughput run's first output and its window.
    pub warmup: f64,
    /// Seconds over which a throughput run's outputs are counted.
    pub window: f64,
    /// Repetitions of every throughput row and of the replay.
    pub reps: usize,
    /// Repetitions of the throughput rows at most, while the bare pipe's
    /// last `reps` samples spread more than ±15 %.
    pub max_reps: usize,
    /// Partitions of every request, output and stored topic.
    pub partitions: i32,
    /// Value sizes of the throughput rows, in bytes.
    pub sizes: Vec<usize>,
    /// Stored requests the replay row drains, at most.
    pub backlog: usize,
    /// Seconds a replay may take, at the rate of a first small replay,
    /// before its backlog is made smaller.
    pub replay_budget: f64,
    /// Live requests per second during the replay, at most (and at most a
    /// tenth of the replay's rate).
    pub live_rate: u32,
    /// Activations of the trigger row.
    pub activations: usize,
    /// Samples of the trigger's floor (two produce→consume hops).
    pub probes: usize,
    /// Row 8: calls per partition at most, for sfwd and the fan-out.
    pub http_in_flight: usize,
    /// Row 8: the keys the requests cycle through.
    pub http_keys: usize,
    /// Row 8: how long the target takes to answer.
    pub http_latency: std::time::Duration,
    /// Row 8: seconds between a run's first output and its window.
    pub http_warmup: f64,
    /// Which groups of rows run.
    pub groups: Vec<String>,
    /// Where the JSON report goes.
    pub out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str, default: usize| -> usize {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
                })
                .unwrap_or(default)
        };
        let groups = std::env::var("SFWD_BENCH_ROWS")
            .unwrap_or_else(|_| "throughput,http,replay,trigger".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let out = std::env::var_os("SFWD_BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
                target.join("bench").join("pipeline.json")
            });
        let secs = |name: &str, default: f64| -> f64 {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
                })
                .unwrap_or(default)
        };
        Settings {
            records: num("SFWD_BENCH_RECORDS", 150_000),
            warmup: secs("SFWD_BENCH_WARMUP_S", 0.5),
            window: secs("SFWD_BENCH_WINDOW_S", 3.0),
            reps: num("SFWD_BENCH_REPS", 3).max(1),
            max_reps: num("SFWD_BENCH_MAX_REPS", 8).max(num("SFWD_BENCH_REPS", 3).max(1)),
            partitions: num("SFWD_BENCH_PARTITIONS", 12) as i32,
            sizes: std::env::var("SFWD_BENCH_SIZES")
                .unwrap_or_else(|_| "100,1000".into())
                .split(',')
                .map(|v| v.trim().parse().expect("SFWD_BENCH_SIZES: sizes in bytes"))
                .collect(),
            backlog: num("SFWD_BENCH_BACKLOG", 100_000),
            replay_budget: secs("SFWD_BENCH_REPLAY_BUDGET_S", 60.0),
            live_rate: num("SFWD_BENCH_LIVE_RATE", 100) as u32,
            activations: num("SFWD_BENCH_ACTIVATIONS", 20).max(1),
            probes: num("SFWD_BENCH_PROBES", 30).max(1),
            http_in_flight: num("SFWD_BENCH_HTTP_IN_FLIGHT", 64).clamp(1, 1024),
            http_keys: num("SFWD_BENCH_HTTP_KEYS", 1000).max(1),
            http_latency: std::time::Duration::from_millis(
                num("SFWD_BENCH_HTTP_LATENCY_MS", 20) as u64
            ),
            http_warmup: secs("SFWD_BENCH_HTTP_WARMUP_S", 3.0),
            groups,
            out,
        }
    }

    fn runs(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let settings = Settings::from_env();
    let broker = std::env::var("SFWD_BENCH_BROKER")
        .unwrap_or_else(|_| format!("the Kafka cluster at {}", common::bootstrap()));
    eprintln!("sfwd bench: {settings:?}\nbroker: {broker}");
    let started = Instant::now();
    let mut report = Report::new(Machine::now(), broker, &settings);
    let mut memory = rows::Memory::default();

    if settings.runs("throughput") {
        rows::throughput(&settings, &mut report, &mut memory).await;
    }
    if settings.runs("http") {
        rows::http_keys(&settings, &mut report, &mut memory).await;
    }
    if settings.runs("replay") {
        rows::replay(&settings, &mut report, &mut memory).await;
    }
    if settings.runs("trigger") {
        rows::trigger(&settings, &mut report, &mut memory).await;
    }
    memory.report(&mut report);
    report.finish(Machine::now(), started.elapsed());

    println!("{}", report.markdown());
    if let Some(dir) = settings.out.parent() {
        std::fs::create_dir_all(dir).expect("create the report directory");
    }
    std::fs::write(
        &settings.out,
        serde_json::to_string_pretty(&report.json()).expect("json"),
    )
    .expect("write the JSON report");
    println!("wrote {}", settings.out.display());
}
