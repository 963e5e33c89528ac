//! `sfwd control status`: what it reads, and how it shows it.

use std::collections::{BTreeMap, HashMap};

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use sfwd::control::{replay_key, ControlPoint, ControlTable, Mode};
use sfwd::failed::time::{format_age, format_utc};
use sfwd::failed::{FailedError, FailedEvents, StatusCounts};
use sfwd::kafka;
use sfwd::topology::Topology;

use super::{kafka_failure, load_control, probe, Control, METADATA_TIMEOUT};
use crate::cli::operator::{count, Failure, Table};

/// One control point as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct PointStatus {
    name: String,
    service: String,
    state: &'static str,
    replaying: bool,
    epoch: u64,
    since: Option<String>,
    since_ms: Option<i64>,
    age_seconds: Option<i64>,
    cause: &'static str,
    by: Option<String>,
    trigger: Option<TriggerStatus>,
    stored_topic: String,
    stored_backlog: Option<u64>,
    replay: Option<sfwd::admin::ReplayView>,
    failed: Option<usize>,
    failed_by_status: Option<FailedCounts>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct TriggerStatus {
    request_id: String,
    instance: String,
    operation: String,
    rule: String,
    chain: sfwd::rules::ExceptionChain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct FailedCounts {
    open: usize,
    discarded: usize,
    resubmitting: usize,
    resubmitted: usize,
}

impl From<StatusCounts> for FailedCounts {
    fn from(c: StatusCounts) -> Self {
        FailedCounts {
            open: c.open,
            discarded: c.discarded,
            resubmitting: c.resubmitting,
            resubmitted: c.resubmitted,
        }
    }
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Status {
    application: String,
    bootstrap: String,
    at: String,
    at_ms: i64,
    control_points: Vec<PointStatus>,
    notes: Vec<String>,
}

/// Where the stored requests of each control point are, and how far
/// their replays have got.
pub(super) struct Layouts {
    layouts: HashMap<String, sfwd::admin::StoredLayout>,
    stored_exists: HashMap<String, bool>,
}

pub(super) fn layouts(topology: &Topology, probe: &BaseConsumer) -> Result<Layouts, Failure> {
    let count = |topic: &str| {
        kafka::partition_count(probe, topic, METADATA_TIMEOUT)
            .map_err(|e| kafka_failure(topology, &format!("reading the metadata of {topic}"), e))
    };
    let mut requests = HashMap::new();
    for topic in topology.request_topics() {
        if let Some(n) = count(topic)? {
            requests.insert(topic.to_string(), n);
        }
    }
    let mut stored = HashMap::new();
    let mut stored_exists = HashMap::new();
    for (_, sf) in topology.control_points() {
        let n = count(&topology.stored_topic(&sf.control_point))?;
        stored_exists.insert(sf.control_point.clone(), n.is_some());
        stored.insert(sf.control_point.clone(), n.unwrap_or(0));
    }
    Ok(Layouts {
        layouts: sfwd::admin::layouts(topology, &requests, &stored),
        stored_exists,
    })
}

/// The `(low, high)` watermarks of each partition of a control point's
/// stored topic; empty when it does not exist yet.
pub(super) fn watermarks(
    topology: &Topology,
    probe: &BaseConsumer,
    layouts: &Layouts,
    cp: &str,
) -> Result<Vec<(i64, i64)>, Failure> {
    let (Some(layout), Some(true)) = (layouts.layouts.get(cp), layouts.stored_exists.get(cp))
    else {
        return Ok(Vec::new());
    };
    let mut marks = Vec::new();
    for p in 0..layout.partitions {
        let m = probe
            .fetch_watermarks(&layout.topic, p, METADATA_TIMEOUT)
            .map_err(|e| {
                kafka_failure(
                    topology,
                    &format!("reading the offsets of {} partition {p}", layout.topic),
                    e,
                )
            })?;
        marks.push(m);
    }
    Ok(marks)
}

/// What a control point's status is computed from.
pub(super) struct Sources<'a> {
    pub(super) topology: &'a Topology,
    pub(super) layouts: &'a Layouts,
    pub(super) table: &'a ControlTable,
    pub(super) now: i64,
}

impl Sources<'_> {
    /// The status of `state`, with its stored topic's `watermarks`.
    pub(super) fn point(
        &self,
        service: &str,
        state: ControlPoint,
        watermarks: &[(i64, i64)],
        failed: Option<StatusCounts>,
    ) -> PointStatus {
        point_status(self, service, state, watermarks, failed)
    }

    /// The stored backlog of a control point (see the module docs of
    /// `sfwd control`).
    pub(super) fn backlog(&self, cp: &str, watermarks: &[(i64, i64)]) -> u64 {
        match self.layouts.layouts.get(cp) {
            Some(layout) if !watermarks.is_empty() => {
                sfwd::admin::backlog(layout, watermarks, |t, p| {
                    self.table.replay_progress(&replay_key(cp, t, p))
                })
            }
            _ => 0,
        }
    }
}

fn point_status(
    src: &Sources<'_>,
    service: &str,
    state: ControlPoint,
    watermarks: &[(i64, i64)],
    failed: Option<StatusCounts>,
) -> PointStatus {
    let (topology, table, now) = (src.topology, src.table, src.now);
    let changed = state.epoch > 0;
    let stored_backlog = Some(src.backlog(&state.name, watermarks));
    let replay = match (state.replaying, src.layouts.layouts.get(&state.name)) {
        (true, Some(layout)) => Some(sfwd::admin::replay_view(
            &state,
            layout,
            Some(watermarks).filter(|m| !m.is_empty()),
            |t, p| table.replay_progress(&replay_key(&state.name, t, p)),
            topology
                .control_point(&state.name)
                .and_then(|(_, sf)| sf.replay.rate),
            now,
        )),
        _ => None,
    };
    PointStatus {
        service: service.to_string(),
        state: state.mode.as_str(),
        replaying: state.replaying,
        epoch: state.epoch,
        since: changed.then(|| format_utc(state.since_ms)),
        since_ms: changed.then_some(state.since_ms),
        age_seconds: changed.then(|| ((now - state.since_ms) / 1000).max(0)),
        cause: state.cause.as_str(),
        by: changed.then(|| state.by.clone()),
        trigger: state.trigger.map(|t| TriggerStatus {
            request_id: t.request_id,
            instance: t.instance,
            operation: format!("{}.{}", t.interface, t.operation),
            rule: t.rule,
            chain: t.chain,
        }),
        stored_topic: topology.stored_topic(&state.name),
        stored_backlog,
        replay,
        failed: failed.map(|c| c.open),
        failed_by_status: failed.map(FailedCounts::from),
        name: state.name,
    }
}

/// Reads everything `status` shows.
pub(super) async fn gather(topology: &Topology) -> Result<(Status, Control), Failure> {
    let probe = probe(topology)?;
    let control = load_control(topology, &probe).await?;
    let mut notes = Vec::new();
    if control.fresh {
        notes.push(format!(
            "{} does not exist yet: no `sfwd run` of `{}` has started on this cluster, every control point is FORWARD",
            topology.control_topic(),
            topology.application
        ));
    }
    let failed: Option<BTreeMap<String, StatusCounts>> =
        match FailedEvents::new(topology)?.load().await {
            Ok(view) => {
                if view.undecodable() > 0 {
                    notes.push(format!(
                        "{} left out: they could not be decoded",
                        count(view.undecodable(), "failed-event record")
                    ));
                }
                Some(view.counts_by_control_point())
            }
            Err(FailedError::NoFailedTopic { .. }) => Some(BTreeMap::new()),
            Err(e) => {
                notes.push(format!("failed events not counted: {e}"));
                None
            }
        };
    let layouts = layouts(topology, &probe)?;
    let now = sfwd::clock::now_ms();
    let src = Sources {
        topology,
        layouts: &layouts,
        table: &control.table,
        now,
    };
    let mut points = Vec::new();
    for (service, sf) in topology.control_points() {
        let cp = &sf.control_point;
        let marks = watermarks(topology, &probe, &layouts, cp)?;
        let counts = failed
            .as_ref()
            .map(|f| f.get(cp).copied().unwrap_or_default());
        points.push(src.point(&service.name, control.table.get(cp), &marks, counts));
    }
    if points.is_empty() {
        notes.push("the topology declares no store_and_forward block: no control points".into());
    }
    Ok((
        Status {
            application: topology.application.clone(),
            bootstrap: topology.kafka.bootstrap.clone(),
            at: format_utc(now),
            at_ms: now,
            control_points: points,
            notes,
        },
        control,
    ))
}

/// `5/12 partitions, 1,200/2,000, 98/s, ETA 8s`
fn replay_text(r: &sfwd::admin::ReplayView) -> String {
    let mut text = format!("{}/{} partitions", r.caught_up, r.partitions);
    if let (Some(done), Some(total)) = (r.replayed, r.total) {
        text.push_str(&format!(", {done}/{total}"));
    }
    if let Some(rate) = r.rate_per_second {
        text.push_str(&format!(", {rate:.0}/s"));
    }
    if let Some(eta) = r.eta_seconds {
        text.push_str(&format!(", ETA {}", eta_text(eta)));
    }
    text
}

fn eta_text(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub(super) fn state_text(state: &str, replaying: bool) -> String {
    if replaying {
        format!("{state} (replaying)")
    } else {
        state.to_string()
    }
}

/// The human form of `status`: a table, then each trigger.
pub(super) fn render_status(s: &Status) -> String {
    let mut table = Table::new(&[
        "CONTROL POINT",
        "SERVICE",
        "STATE",
        "EPOCH",
        "SINCE",
        "CAUSE",
        "BY",
        "STORED",
        "REPLAY",
        "FAILED",
    ]);
    for p in &s.control_points {
        table.row(vec![
            p.name.clone(),
            p.service.clone(),
            state_text(p.state, p.replaying),
            p.epoch.to_string(),
            match p.since_ms {
                Some(ms) => format!("{} ({} ago)", format_utc(ms), format_age(ms, s.at_ms)),
                None => "-".into(),
            },
            p.cause.to_string(),
            p.by.clone().unwrap_or_else(|| "-".into()),
            p.stored_backlog
                .map_or_else(|| "?".into(), |b| b.to_string()),
            match &p.replay {
                Some(r) => replay_text(r),
                None => "-".into(),
            },
            p.failed.map_or_else(|| "?".into(), |f| f.to_string()),
        ]);
    }
    let mut out = String::new();
    if table.len() > 0 {
        out.push_str(&table.render());
    }
    for p in &s.control_points {
        let Some(r) = &p.replay else { continue };
        out.push_str(&format!(
            "\n{}: replay at {}{}\n",
            p.name,
            r.pace.as_deref().unwrap_or("no cap"),
            if r.pace_overridden {
                " (set by an operator)"
            } else {
                ""
            }
        ));
        let mut parts = Table::new(&["  PARTITION", "REPLAYED", "TOTAL", "RATE", "ETA"]);
        for q in &r.by_partition {
            parts.row(vec![
                format!("  {}/{}", q.topic, q.partition),
                q.replayed.map_or_else(|| "?".into(), |n| n.to_string()),
                q.total.map_or_else(|| "?".into(), |n| n.to_string()),
                q.rate_per_second
                    .map_or_else(|| "-".into(), |r| format!("{r:.0}/s")),
                if q.caught_up {
                    "done".into()
                } else {
                    q.eta_seconds.map_or_else(|| "-".into(), eta_text)
                },
            ]);
        }
        out.push_str(&parts.render());
    }
    for p in &s.control_points {
        let Some(t) = &p.trigger else { continue };
        let which = if p.state == Mode::Store.as_str() {
            "trigger"
        } else {
            "last trigger"
        };
        out.push_str(&format!(
            "\n{}: {which} {} ({} {}) seen by {}\n  rule: {}\n",
            p.name, t.request_id, p.service, t.operation, t.instance, t.rule
        ));
        for (i, e) in t.chain.elements().iter().enumerate() {
            out.push_str(&format!(
                "  {}{e}\n",
                if i == 0 { "chain: " } else { "       " }
            ));
        }
    }
    if let Some(f) = s
        .control_points
        .iter()
        .find(|p| p.failed.is_some_and(|n| n > 0))
    {
        out.push_str(&format!(
            "\nFAILED is the number of open failed events: `sfwd failed list --control-point {}` lists them.\n",
            f.name
        ));
    }
    for n in &s.notes {
        out.push_str(&format!("\nnote: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use sfwd::control::{Cause, Trigger};
    use sfwd::rules::{ChainElement, ExceptionChain};
    use sfwd::store::MemoryStore;

    /// Control point `Eis` stores the requests of `hr.get` in one partition.
    fn eis_layouts() -> Layouts {
        Layouts {
            layouts: HashMap::from([(
                "Eis".to_string(),
                sfwd::admin::StoredLayout {
                    topic: "hr.stored.Eis".into(),
                    partitions: 1,
                    sources: vec![("hr.get".into(), 0)],
                },
            )]),
            stored_exists: HashMap::from([("Eis".to_string(), true)]),
        }
    }

    fn status() -> Status {
        let now = 1_740_821_400_000;
        let mut cp = ControlPoint::initial("Eis");
        cp.mode = Mode::Store;
        cp.epoch = 1;
        cp.since_ms = now - 180_000;
        cp.cause = Cause::Trigger;
        cp.by = "a".into();
        cp.trigger = Some(Trigger {
            request_id: "hr.get/1/12".into(),
            service: "eis".into(),
            interface: "Query".into(),
            operation: "get".into(),
            chain: ExceptionChain::new(vec![
                ChainElement::new("ServiceUnavailableException", "POST http://eis: 503"),
                ChainElement::new("HttpStatusException", "503"),
            ]),
            rule: "ServiceUnavailableException".into(),
            instance: "a".into(),
        });
        let layouts = eis_layouts();
        let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
        let counts = StatusCounts {
            open: 1,
            ..StatusCounts::default()
        };
        let topology = sfwd::topology::check_str(
            "application: hr\nkafka: { bootstrap: k:9092 }\nservices:\n  eis:\n    binding: { kafka: { topic: out } }\n    store_and_forward: { control_point: Eis }\n    interfaces: { Query: { operations: { get: { topic: hr.get } } } }\n",
            std::path::Path::new("t.yaml"),
        )
        .topology
        .expect("valid");
        let src = Sources {
            topology: &topology,
            layouts: &layouts,
            table: &table,
            now,
        };
        let stored = src.point("eis", cp, &[(0, 41)], Some(counts));
        let fresh = src.point(
            "billing",
            ControlPoint::initial("Billing"),
            &[],
            Some(StatusCounts::default()),
        );
        Status {
            application: "hr".into(),
            bootstrap: "k:9092".into(),
            at: format_utc(now),
            at_ms: now,
            control_points: vec![stored, fresh],
            notes: vec![],
        }
    }

    #[test]
    fn the_table_shows_every_control_point_and_the_trigger() {
        let text = render_status(&status());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "CONTROL POINT  SERVICE  STATE    EPOCH  SINCE                          CAUSE    BY  STORED  REPLAY  FAILED"
        );
        assert_eq!(
            lines[1],
            "Eis            eis      STORE    1      2025-03-01T09:27:00Z (3m ago)  trigger  a   41      -       1"
        );
        assert_eq!(
            lines[2],
            "Billing        billing  FORWARD  0      -                              initial  -   0       -       0"
        );
        assert!(text.contains("Eis: trigger hr.get/1/12 (eis Query.get) seen by a\n  rule: ServiceUnavailableException\n  chain: ServiceUnavailableException: POST http://eis: 503\n         HttpStatusException: 503\n"), "{text}");
        assert!(text.contains("sfwd failed list --control-point Eis"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(status()).unwrap();
        let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        top.sort();
        assert_eq!(
            top,
            [
                "application",
                "at",
                "at_ms",
                "bootstrap",
                "control_points",
                "notes"
            ]
        );
        let cp = &v["control_points"][0];
        let mut keys: Vec<&str> = cp.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "age_seconds",
                "by",
                "cause",
                "epoch",
                "failed",
                "failed_by_status",
                "name",
                "replay",
                "replaying",
                "service",
                "since",
                "since_ms",
                "state",
                "stored_backlog",
                "stored_topic",
                "trigger"
            ]
        );
        assert_eq!(cp["state"], "STORE");
        assert_eq!(cp["cause"], "trigger");
        assert_eq!(cp["age_seconds"], 180);
        assert_eq!(cp["stored_topic"], "hr.stored.Eis");
        assert_eq!(cp["trigger"]["request_id"], "hr.get/1/12");
        assert_eq!(cp["trigger"]["operation"], "Query.get");
        assert_eq!(
            cp["trigger"]["chain"][0]["type"],
            "ServiceUnavailableException"
        );
        assert_eq!(cp["failed_by_status"]["open"], 1);
        let fresh = &v["control_points"][1];
        assert_eq!(fresh["state"], "FORWARD");
        assert_eq!(fresh["epoch"], 0);
        assert!(fresh["since"].is_null() && fresh["by"].is_null() && fresh["trigger"].is_null());
    }

    #[test]
    fn a_replay_shows_its_progress_per_partition_and_its_eta() {
        let now = 1_740_821_400_000;
        let layouts = eis_layouts();
        let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
        table
            .apply_replay(
                &replay_key("Eis", "hr.get", 0),
                sfwd::control::ReplayProgress {
                    next_offset: 400,
                    started_epoch: 2,
                    started_offset: 0,
                    started_ms: now - 4_000,
                    open: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let topology = sfwd::topology::check_str(
            "application: hr\nkafka: { bootstrap: k:9092 }\nservices:\n  eis:\n    binding: { kafka: { topic: out } }\n    store_and_forward: { control_point: Eis, replay: { rate: 100/s } }\n    interfaces: { Query: { operations: { get: { topic: hr.get } } } }\n",
            std::path::Path::new("t.yaml"),
        )
        .topology
        .expect("valid");
        let mut cp = ControlPoint::initial("Eis");
        cp.replaying = true;
        cp.epoch = 2;
        cp.since_ms = now - 5_000;
        let src = Sources {
            topology: &topology,
            layouts: &layouts,
            table: &table,
            now,
        };
        let point = src.point("eis", cp, &[(0, 1_000)], None);
        assert_eq!(point.stored_backlog, Some(600));
        let text = render_status(&Status {
            application: "hr".into(),
            bootstrap: "k:9092".into(),
            at: format_utc(now),
            at_ms: now,
            control_points: vec![point],
            notes: vec![],
        });
        assert!(
            text.contains("0/1 partitions, 400/1000, 100/s, ETA 6s"),
            "{text}"
        );
        assert!(text.contains("Eis: replay at 100/s\n"), "{text}");
        assert!(
            text.contains("hr.get/0   400       1000   100/s  6s"),
            "{text}"
        );
    }
}
