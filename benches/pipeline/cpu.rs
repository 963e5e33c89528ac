//! CPU time from `/proc`: of a process (sfwd, the broker), and of the
//! threads of this process that run a baseline.
//!
//! `utime + stime` of `/proc/PID/stat` (or `/proc/self/task/TID/stat`), in
//! clock ticks (`getconf CLK_TCK`, 100 on Linux), read at the start and
//! the end of a measuring window.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Clock ticks per second.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The command name and `utime + stime` (ticks) of a `stat` file.
fn stat(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the first after `)` is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU seconds used so far by process `pid` (all its threads), if it runs.
pub fn process_seconds(pid: u32) -> Option<f64> {
    stat(&format!("/proc/{pid}/stat")).map(|(_, t)| t as f64 / ticks_per_second())
}

/// The broker's process id, when `./dev bench` started it
/// (`SFWD_BENCH_BROKER_PID`).
pub fn broker_pid() -> Option<u32> {
    std::env::var("SFWD_BENCH_BROKER_PID")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|pid| process_seconds(*pid).is_some())
}

/// CPU seconds used so far by the broker, when its process is known.
pub fn broker_seconds() -> Option<f64> {
    process_seconds(broker_pid()?)
}

fn own_threads() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let (comm, ticks) = stat(&format!("/proc/self/task/{tid}/stat"))?;
        Some((tid, comm, ticks))
    })
    .collect()
}

/// The threads of this process that run a baseline started after
/// [`Threads::before_start`]: those created since (the baseline's
/// librdkafka client threads) and tokio's worker threads (which run its
/// tasks). The main thread, which counts outputs, and the threads of
/// clients created before (the counter's, the loading producer's) are
/// left out. What else runs on tokio's workers at the same time is counted
/// too: nothing during the bare pipe's window; the HTTP target simulator
/// during the naive HTTP loop's.
pub struct Threads {
    before: HashSet<u32>,
}

impl Threads {
    pub fn before_start() -> Threads {
        Threads {
            before: own_threads().into_iter().map(|(tid, _, _)| tid).collect(),
        }
    }

    /// CPU seconds used so far by the baseline's threads that are alive.
    pub fn seconds(&self) -> f64 {
        let ticks: u64 = own_threads()
            .into_iter()
            .filter(|(tid, comm, _)| !self.before.contains(tid) || is_tokio_worker(comm))
            .map(|(_, _, t)| t)
            .sum();
        ticks as f64 / ticks_per_second()
    }
}

/// tokio's worker threads: `tokio-rt-worker` (`tokio-runtime-worker` in
/// older versions, cut to 15 characters).
fn is_tokio_worker(comm: &str) -> bool {
    comm.starts_with("tokio-rt-worker") || comm.starts_with("tokio-runtime-w")
}

/// CPU seconds of what a row measures and of the broker, read together.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub own: f64,
    pub broker: Option<f64>,
}

impl Reading {
    /// CPU milliseconds per 1,000 records between `self` and `later`
    /// (the same as microseconds per record): (own, broker).
    pub fn per_thousand(&self, later: &Reading, records: i64) -> (f64, Option<f64>) {
        let per = |a: f64, b: f64| (b - a).max(0.0) * 1e6 / records.max(1) as f64;
        (
            per(self.own, later.own),
            self.broker.zip(later.broker).map(|(a, b)| per(a, b)),
        )
    }
}
