//! The rows of the table: throughput (1–4), replay (5), trigger to storing
//! (6), memory (7), HTTP calls in flight with `ordering: key` (8); and the
//! applications they run.

mod http_keys;
mod lanes;
mod replay;
mod throughput;
mod trigger;

pub use http_keys::http_keys;
pub use replay::replay;
pub use throughput::throughput;
pub use trigger::trigger;

use std::time::Duration;

use sfwd::bindings::{HttpTarget, Target};
use sfwd::control::CommandKind;
use sfwd::target_sim::TargetSim;
use sfwd::topology::Binding;

use crate::common;
use crate::common::app::{operator, App};
use crate::common::process::{field, message, Sfwd};
use crate::report::{Goal, Report, Row};

/// How long any one wait for outputs may take.
pub(crate) const WAIT: Duration = Duration::from_secs(900);

/// Resident memory of the sfwd processes, from `/proc/PID/status`.
#[derive(Debug, Default)]
pub struct Memory {
    /// VmRSS of each instance, started and assigned, before any traffic.
    idle_mb: Vec<f64>,
    /// VmHWM (peak) of each instance at the end of a loaded run, with
    /// what the run was.
    peak_mb: Vec<(String, f64)>,
}

impl Memory {
    /// Notes the peak of an instance that has just carried load.
    pub(crate) fn loaded(&mut self, instance: &Sfwd, run: &str) {
        if let Some(kb) = status_kb(instance.pid(), "VmHWM:") {
            self.peak_mb.push((run.to_string(), kb as f64 / 1024.0));
        }
    }

    pub(crate) fn idle(&mut self, instance: &Sfwd) {
        if let Some(kb) = status_kb(instance.pid(), "VmRSS:") {
            self.idle_mb.push(kb as f64 / 1024.0);
        }
    }

    /// Row 7: the largest idle and loaded figures over every instance.
    pub fn report(&self, report: &mut Report) {
        if !self.idle_mb.is_empty() {
            let mut row = Row::new(7, "RSS per instance, idle (largest)", "MB");
            row.samples = self.idle_mb.clone();
            row.headline = self.idle_mb.iter().copied().reduce(f64::max);
            row.goal = Some(Goal::Below(50.0));
            row.note = Some(format!(
                "VmRSS of {} instances started, assigned and idle",
                self.idle_mb.len()
            ));
            report.push(row);
        }
        if !self.peak_mb.is_empty() {
            let mut row = Row::new(7, "RSS per instance, under load (peak)", "MB");
            row.samples = self.peak_mb.iter().map(|(_, mb)| *mb).collect();
            row.headline = row.samples.iter().copied().reduce(f64::max);
            // The largest peak of each kind of run, largest first.
            let mut runs: Vec<(&str, f64)> = Vec::new();
            for (run, mb) in &self.peak_mb {
                match runs.iter_mut().find(|(r, _)| r == run) {
                    Some((_, m)) => *m = m.max(*mb),
                    None => runs.push((run, *mb)),
                }
            }
            runs.sort_by(|a, b| b.1.total_cmp(&a.1));
            let runs: Vec<String> = runs
                .iter()
                .map(|(run, mb)| format!("{run} {mb:.0} MB"))
                .collect();
            row.goal = Some(Goal::Below(200.0));
            row.note = Some(format!(
                "VmHWM of {} instances at the end of their loaded runs (rows 2–5 and 8); \
                 largest per run: {}",
                self.peak_mb.len(),
                runs.join(", ")
            ));
            report.push(row);
        }
    }
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Top-level topology lines added to the benchmark's applications
/// (`SFWD_BENCH_EXTRA_YAML`, e.g. `limits: { max_uncommitted_records: 5000 }`),
/// to measure the effect of a setting.
fn extra_yaml() -> String {
    std::env::var("SFWD_BENCH_EXTRA_YAML").unwrap_or_default()
}

/// An application whose one service produces to `<app>.target` (the Kafka
/// binding), with store and forward on control point `Svc`.
pub(crate) async fn kafka_app(prefix: &str, partitions: i32) -> App {
    let extra = extra_yaml();
    let app = App::new(prefix, move |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: {partitions} }}
{extra}
services:
  svc:
    binding: {{ kafka: {{ topic: {name}.target }} }}
    store_and_forward: {{ control_point: Svc }}
    interfaces:
      I: {{ operations: {{ op: {{ topic: {name}.requests }} }} }}
"#
        )
    });
    common::create_topics(&[
        (&app.topic("requests"), partitions),
        (&app.topic("target"), partitions),
    ])
    .await;
    app
}

/// An application whose one service calls `sim` over HTTP, with store and
/// forward on control point `Svc`; its request topic and `<app>.naive`
/// (the naive loop's) are created.
pub(crate) async fn http_app(prefix: &str, partitions: i32, sim: &TargetSim) -> App {
    http_app_with(prefix, partitions, sim, "", "naive").await
}

/// [`http_app`] with `binding` settings added to the `http` block (e.g.
/// `in_flight: 64, ordering: key`) and `<app>.<baseline>` as the
/// baseline's request topic.
pub(crate) async fn http_app_with(
    prefix: &str,
    partitions: i32,
    sim: &TargetSim,
    binding: &str,
    baseline: &str,
) -> App {
    let url = sim.url("/svc");
    let extra = extra_yaml();
    let binding = binding.to_string();
    let app = App::new(prefix, move |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: {partitions} }}
{extra}
services:
  svc:
    binding:
      http: {{ url: "{url}", timeout: 2s, {binding} }}
      interaction: async
    store_and_forward: {{ control_point: Svc }}
    interfaces:
      I: {{ operations: {{ op: {{ topic: {name}.requests }} }} }}
"#
        )
    });
    common::create_topics(&[
        (&app.topic("requests"), partitions),
        (&app.topic(baseline), partitions),
    ])
    .await;
    app
}

/// The HTTP target of an application's first service, built as sfwd builds it.
pub(crate) fn http_target(app: &App) -> Target {
    let (topology, _) = sfwd::topology::load(&app.topology).expect("bench topology");
    match &topology.services[0].binding {
        Binding::Http(h) => Target::Http(HttpTarget::new(h).expect("http target")),
        other => panic!("not an http binding: {other:?}"),
    }
}

/// Waits until `instance` has applied a state of `mode` at an epoch above
/// `after` (and, if given, with that `replaying`); returns the epoch and
/// the `lag_ms` of the log line.
pub(crate) fn wait_state(
    instance: &mut Sfwd,
    mode: &str,
    after: u64,
    replaying: Option<bool>,
) -> (u64, i64) {
    let v = instance.wait_for(&format!("{mode} after epoch {after}"), WAIT, |v| {
        message(v) == "control state applied"
            && field(v, "mode") == mode
            && v.get("epoch")
                .and_then(|e| e.as_u64())
                .is_some_and(|e| e > after)
            && replaying.is_none_or(|r| v.get("replaying").and_then(|x| x.as_bool()) == Some(r))
    });
    (v["epoch"].as_u64().unwrap(), v["lag_ms"].as_i64().unwrap())
}

/// Starts an instance and switches the control point to STORE; returns
/// the running instance and the epoch of the switch.
pub(crate) async fn start_storing(app: &App, instance: &str) -> (Sfwd, u64) {
    let mut sfwd = app.start(instance);
    operator(app, "Svc", CommandKind::Store).await;
    let (epoch, _) = wait_state(&mut sfwd, "STORE", 0, None);
    (sfwd, epoch)
}

/// The topics of an application, sfwd's own among them.
pub(crate) fn app_topics(app: &App) -> Vec<String> {
    [
        "requests",
        "target",
        "naive",
        "stored.Svc",
        "failed",
        "failed-actions",
        "control",
        "control-commands",
        "replay",
    ]
    .iter()
    .map(|t| app.topic(t))
    .collect()
}
