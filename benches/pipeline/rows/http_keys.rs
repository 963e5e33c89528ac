//! Row 8: calls in flight to an HTTP target with `ordering: key`.
//!
//! The target answers every call after a fixed latency (target-sim's
//! `slow` mode); the requests cycle through many keys, each key on one
//! partition. Three lanes read their own request topics, in turn within
//! each repetition (see `lanes.rs`):
//!
//! - the unordered fan-out (`pipes::fan_out_http`): up to `in_flight`
//!   calls per partition, in no order, the bound of what that cap allows;
//! - sfwd with `ordering: key` and the same `in_flight`, every run checked
//!   key by key: each key's requests reach the target in offset order;
//! - sfwd with the default `ordering: partition`: one call per partition at
//!   a time, the loop sfwd had before calls in flight.

use sfwd::target_sim::{Mode, TargetSim};

use super::lanes::{keyed_lane, lane, Bench, Sample, Side};
use super::{app_topics, http_app_with, http_target, Memory};
use crate::common;
use crate::kafka_io;
use crate::report::{median, Cpu, Goal, Report, Row};
use crate::Settings;

/// Value size of the requests, in bytes.
const SIZE: usize = 100;

/// Row 8, `reps` times, the lanes interleaved.
pub async fn http_keys(s: &Settings, report: &mut Report, memory: &mut Memory) {
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("target sim");
    sim.set_mode(Mode::Slow {
        delay: s.http_latency,
    });
    let p = s.partitions;
    let cap = s.http_in_flight;
    let keyed = http_app_with(
        "bench-keyed",
        p,
        &sim,
        &format!("in_flight: {cap}, ordering: key"),
        "fanout",
    )
    .await;
    let one = http_app_with("bench-one-call", p, &sim, "", "fanout").await;
    let target = http_target(&keyed);
    let bench = Bench {
        s,
        size: SIZE,
        sim: &sim,
        loader: kafka_io::loader(),
        keys: Some(s.http_keys),
        warmup: s.http_warmup,
    };
    let mut lanes = [
        lane(
            Side::FanOut {
                group: common::unique("bench-fanout"),
                target: &target,
                in_flight: cap,
            },
            keyed.topic("fanout"),
        ),
        keyed_lane(
            Side::Sfwd {
                app: &keyed,
                output: None,
            },
            keyed.topic("requests"),
        ),
        keyed_lane(
            Side::Sfwd {
                app: &one,
                output: None,
            },
            one.topic("requests"),
        ),
    ];
    let (used, window_note) = bench
        .repeat(&mut lanes, memory, "HTTP with ordering: key")
        .await;
    let checked = lanes[1].keys_checked + lanes[2].keys_checked;
    let [fan_out, key, one_call] = lanes.map(|l| l.samples[used.clone()].to_vec());
    let rates = |x: &[Sample]| x.iter().map(|x| x.rate).collect::<Vec<_>>();
    let cpu = |x: &[Sample]| Cpu {
        own: x.iter().map(|x| x.own).collect(),
        broker: x.iter().filter_map(|x| x.broker).collect(),
        ..Cpu::default()
    };
    let setup = format!(
        "target answering in {} ms, {p} partitions, {} keys, {SIZE} B",
        s.http_latency.as_millis(),
        s.http_keys
    );
    let order = format!(
        "each key's order checked on every sfwd run: {checked} requests, all in offset order"
    );
    let mut rows = vec![
        (
            format!(
                "HTTP fan-out: rdkafka consume → {cap} calls per partition, unordered (baseline)"
            ),
            fan_out.clone(),
            None,
            None,
            format!("{setup}; {window_note}; own CPU includes the target simulator"),
        ),
        (
            "HTTP, sfwd ordering: partition (one call per partition at a time, baseline)".into(),
            one_call.clone(),
            None,
            None,
            setup.clone(),
        ),
    ];
    rows.push((
        format!("HTTP, sfwd ordering: key, in_flight {cap}, against the fan-out"),
        key.clone(),
        median(&rates(&fan_out)),
        Some(Goal::RatioAtLeast(0.9)),
        order.clone(),
    ));
    rows.push((
        format!("HTTP, sfwd ordering: key, in_flight {cap}, against one call per partition"),
        key,
        median(&rates(&one_call)),
        Some(Goal::RatioAtLeast(10.0)),
        order,
    ));
    for (measure, samples, baseline, goal, note) in rows {
        let mut row = Row::new(8, measure, "rec/s");
        row.size = Some(SIZE);
        row.samples = rates(&samples);
        row.baseline = baseline;
        row.goal = goal;
        row.note = Some(note);
        row.cpu = Some(cpu(&samples));
        report.push(row);
    }
    let mut topics = app_topics(&keyed);
    topics.extend(app_topics(&one));
    topics.extend([keyed.topic("fanout"), one.topic("fanout")]);
    kafka_io::delete_topics(&topics).await;
    sim.shutdown().await;
}
