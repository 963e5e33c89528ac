//! The table: rows with their samples, ratio and target, the machine they
//! ran on, printed as markdown and written as JSON.

use std::time::Duration;

use serde_json::{json, Value};

use crate::Settings;

/// The machine, read from `/proc`.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_mb: u64,
    pub mem_available_mb: u64,
    /// `/proc/loadavg`: 1, 5 and 15 minutes.
    pub load: String,
}

impl Machine {
    pub fn now() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem = |key: &str| -> u64 {
            meminfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                / 1024
        };
        let load = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_mb: mem("MemTotal:"),
            mem_available_mb: mem("MemAvailable:"),
            load,
        }
    }

    fn json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "mem_total_mb": self.mem_total_mb,
            "mem_available_mb": self.mem_available_mb,
            "load": self.load,
        })
    }
}

/// How a row's target is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The ratio to the baseline is at least this.
    RatioAtLeast(f64),
    /// The ratio to the baseline is at most this.
    RatioAtMost(f64),
    /// The headline value is below this.
    Below(f64),
    /// The headline value is exactly this.
    Exactly(f64),
}

impl Goal {
    fn text(&self, unit: &str) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("≥ {r:.2}×"),
            Goal::RatioAtMost(r) => format!("≤ {r:.2}×"),
            Goal::Below(v) => format!("< {} {unit}", number(*v)),
            Goal::Exactly(v) => format!("= {}", number(*v)),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Row number in the issue (1–8).
    pub number: u8,
    /// What is measured, for people.
    pub measure: String,
    /// Value size in bytes, for throughput rows.
    pub size: Option<usize>,
    /// Unit of the samples: `rec/s`, `ms`, `MB`, `events`.
    pub unit: &'static str,
    /// One value per repetition (or per activation, instance…).
    pub samples: Vec<f64>,
    /// The headline value, when it is not the median of the samples
    /// (e.g. a p99).
    pub headline: Option<f64>,
    /// Shown instead of the median (e.g. `p50 12 ms, p99 40 ms`).
    pub text: Option<String>,
    /// The baseline's median, for a ratio.
    pub baseline: Option<f64>,
    pub goal: Option<Goal>,
    pub note: Option<String>,
    /// CPU per record, for throughput and replay rows.
    pub cpu: Option<Cpu>,
}

/// CPU milliseconds per 1,000 records (microseconds per record) of what a
/// row measures (sfwd's processes, or a baseline's threads) and of the
/// broker, one sample per repetition, with the baseline's medians from the
/// same run and the highest ratios allowed.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    pub own: Vec<f64>,
    pub broker: Vec<f64>,
    pub own_baseline: Option<f64>,
    pub broker_baseline: Option<f64>,
    pub own_goal: Option<f64>,
    pub broker_goal: Option<f64>,
}

impl Cpu {
    pub fn own_median(&self) -> Option<f64> {
        median(&self.own)
    }

    pub fn broker_median(&self) -> Option<f64> {
        median(&self.broker)
    }

    fn own_ratio(&self) -> Option<f64> {
        Some(self.own_median()? / self.own_baseline?)
    }

    fn broker_ratio(&self) -> Option<f64> {
        Some(self.broker_median()? / self.broker_baseline?)
    }

    fn own_met(&self) -> Option<bool> {
        Some(self.own_ratio()? <= self.own_goal?)
    }

    fn broker_met(&self) -> Option<bool> {
        Some(self.broker_ratio()? <= self.broker_goal?)
    }

    fn json(&self) -> Value {
        json!({
            "unit": "CPU ms per 1000 records",
            "own": {
                "samples": self.own,
                "median": self.own_median(),
                "baseline": self.own_baseline,
                "ratio": self.own_ratio(),
                "target_ratio_at_most": self.own_goal,
                "met": self.own_met(),
            },
            "broker": {
                "samples": self.broker,
                "median": self.broker_median(),
                "baseline": self.broker_baseline,
                "ratio": self.broker_ratio(),
                "target_ratio_at_most": self.broker_goal,
                "met": self.broker_met(),
            },
        })
    }
}

/// One CPU cell: `12.3 (1.20×, ≤ 1.50×: yes)`.
fn cpu_cell(
    median: Option<f64>,
    ratio: Option<f64>,
    goal: Option<f64>,
    met: Option<bool>,
) -> String {
    let Some(m) = median else {
        return "–".into();
    };
    let value = if m < 100.0 {
        format!("{m:.1}")
    } else {
        number(m)
    };
    match (ratio, goal, met) {
        (Some(r), Some(g), Some(met)) => format!(
            "{value} ({r:.2}×, ≤ {g:.2}×: {})",
            if met { "yes" } else { "**no**" }
        ),
        (Some(r), _, _) => format!("{value} ({r:.2}×)"),
        _ => value,
    }
}

impl Row {
    pub fn new(number: u8, measure: impl Into<String>, unit: &'static str) -> Row {
        Row {
            number,
            measure: measure.into(),
            size: None,
            unit,
            samples: Vec::new(),
            headline: None,
            text: None,
            baseline: None,
            goal: None,
            note: None,
            cpu: None,
        }
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }

    fn value(&self) -> Option<f64> {
        self.headline.or_else(|| self.median())
    }

    /// The headline value (the median, or e.g. a p99) over the baseline.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.value()? / self.baseline?)
    }

    fn met(&self) -> Option<bool> {
        Some(match self.goal? {
            Goal::RatioAtLeast(r) => self.ratio()? >= r,
            Goal::RatioAtMost(r) => self.ratio()? <= r,
            Goal::Below(v) => self.value()? < v,
            Goal::Exactly(v) => (self.value()? - v).abs() < 1e-9,
        })
    }

    fn spread(&self) -> Option<(f64, f64)> {
        if self.samples.len() < 2 {
            return None;
        }
        let min = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        Some((min, max))
    }

    fn json(&self) -> Value {
        json!({
            "row": self.number,
            "measure": self.measure,
            "size_bytes": self.size,
            "unit": self.unit,
            "samples": self.samples,
            "median": self.median(),
            "value": self.value(),
            "text": self.text,
            "spread": self.spread().map(|(a, b)| json!({"min": a, "max": b})),
            "baseline": self.baseline,
            "ratio": self.ratio(),
            "target": self.goal.map(|g| g.text(self.unit)),
            "met": self.met(),
            "note": self.note,
            "cpu": self.cpu.as_ref().map(Cpu::json),
        })
    }
}

/// The median; the mean of the two middle values for an even count.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The `q` quantile (0–1) by the nearest-rank method.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

/// A number for people: thousands separated, at most one decimal below 100.
pub fn number(v: f64) -> String {
    if v.abs() < 100.0 && v.fract().abs() > 1e-9 {
        return format!("{v:.1}");
    }
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Every row of one run, with the machine and the broker.
pub struct Report {
    before: Machine,
    after: Option<(Machine, Duration)>,
    broker: String,
    settings: Value,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(machine: Machine, broker: String, settings: &Settings) -> Report {
        Report {
            before: machine,
            after: None,
            broker,
            settings: json!({
                "records_per_run": settings.records,
                "repetitions": settings.reps,
                "max_repetitions": settings.max_reps,
                "partitions": settings.partitions,
                "sizes_bytes": settings.sizes,
                "backlog": settings.backlog,
                "live_rate_per_s": settings.live_rate,
                "activations": settings.activations,
            }),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Row) {
        eprintln!("{}", line(&row));
        self.rows.push(row);
    }

    pub fn finish(&mut self, machine: Machine, took: Duration) {
        self.after = Some((machine, took));
    }

    pub fn markdown(&self) -> String {
        let m = &self.before;
        let mut out = String::new();
        out.push_str(&format!(
            "Machine: {} × {}, {} MB memory ({} MB available at start); load average {} at start",
            m.cpus, m.cpu_model, m.mem_total_mb, m.mem_available_mb, m.load
        ));
        if let Some((after, took)) = &self.after {
            out.push_str(&format!(
                ", {} at end; the run took {:.0} s",
                after.load,
                took.as_secs_f64()
            ));
        }
        out.push_str(&format!(".\nBroker: {}.\n\n", self.broker));
        out.push_str(
            "| # | measure | size | value (median) | spread (min–max) | ratio | target | met \
             | CPU ms per 1,000 rec: own (ratio, target) | broker (ratio, target) |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        let mut notes: Vec<String> = Vec::new();
        for r in &self.rows {
            let Some(n) = &r.note else { continue };
            let size = r.size.map(|s| format!(" ({s} B)")).unwrap_or_default();
            let line = format!("- {}{size}: {n}", r.measure);
            if !notes.contains(&line) {
                notes.push(line);
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "machine": self.before.json(),
            "machine_at_end": self.after.as_ref().map(|(m, _)| m.json()),
            "seconds": self.after.as_ref().map(|(_, d)| d.as_secs_f64()),
            "broker": self.broker,
            "settings": self.settings,
            "rows": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
        })
    }
}

fn line(r: &Row) -> String {
    let value = match (&r.text, r.value()) {
        (Some(t), _) => t.clone(),
        (None, Some(v)) => format!("{} {}", number(v), r.unit),
        (None, None) => "–".into(),
    };
    let spread = r
        .spread()
        .map(|(a, b)| format!("{}–{}", number(a), number(b)))
        .unwrap_or_else(|| "–".into());
    let ratio = r
        .ratio()
        .map(|x| format!("{x:.2}×"))
        .unwrap_or_else(|| "–".into());
    let target = r.goal.map(|g| g.text(r.unit)).unwrap_or_else(|| "–".into());
    let met = match r.met() {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "–",
    };
    let size = r
        .size
        .map(|s| format!("{s} B"))
        .unwrap_or_else(|| "–".into());
    let (own, broker) = match &r.cpu {
        Some(c) => (
            cpu_cell(c.own_median(), c.own_ratio(), c.own_goal, c.own_met()),
            cpu_cell(
                c.broker_median(),
                c.broker_ratio(),
                c.broker_goal,
                c.broker_met(),
            ),
        ),
        None => ("–".into(), "–".into()),
    };
    format!(
        "| {} | {} | {size} | {value} | {spread} | {ratio} | {target} | {met} | {own} | {broker} |",
        r.number, r.measure
    )
}
