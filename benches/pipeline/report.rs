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
    /// The headline value is at most this.
    AtMost(f64),
    /// The headline value is below this.
    Below(f64),
    /// The headline value is exactly this.
    Exactly(f64),
}

impl Goal {
    fn text(&self, unit: &str) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("≥ {r:.2}×"),
            Goal::AtMost(v) => format!("≤ {} {unit}", number(*v)),
            Goal::Below(v) => format!("< {} {unit}", number(*v)),
            Goal::Exactly(v) => format!("= {}", number(*v)),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Row number in the issue (1–7).
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
        }
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.samples)
    }

    fn value(&self) -> Option<f64> {
        self.headline.or_else(|| self.median())
    }

    pub fn ratio(&self) -> Option<f64> {
        Some(self.median()? / self.baseline?)
    }

    fn met(&self) -> Option<bool> {
        Some(match self.goal? {
            Goal::RatioAtLeast(r) => self.ratio()? >= r,
            Goal::AtMost(v) => self.value()? <= v,
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
            "| # | measure | size | value (median) | spread (min–max) | ratio | target | met |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("- {}: {n}", r.measure)))
            .collect();
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
    format!(
        "| {} | {} | {size} | {value} | {spread} | {ratio} | {target} | {met} |",
        r.number, r.measure
    )
}
