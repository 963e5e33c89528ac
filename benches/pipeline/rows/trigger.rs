//! Rows 6 and 7 (idle): trigger to every instance storing, with three
//! instances.

use std::collections::HashMap;
use std::time::Duration;

use sfwd::control::CommandKind;
use sfwd::target_sim::{Mode, TargetSim};

use super::{http_app, wait_state, Memory, WAIT};
use crate::common;
use crate::common::app::{decode_failed, operator, read_async};
use crate::common::process::{field, message, Sfwd};
use crate::report::{quantile, Goal, Report, Row};
use crate::Settings;

/// Rows 6 and 7 (idle): three instances on one 12-partition topic, the
/// target failing and recovering `activations` times.
pub async fn trigger(s: &Settings, report: &mut Report, memory: &mut Memory) {
    const PARTITIONS: i32 = 12;
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("target sim");
    let app = http_app("bench-trigger", PARTITIONS, &sim).await;
    let mut instances: Vec<Sfwd> = ["a", "b", "c"]
        .iter()
        .map(|i| Sfwd::start(&app.topology, i, app.dir.path()))
        .collect();
    for i in &mut instances {
        i.wait_ready();
    }
    for i in &mut instances {
        i.wait_for("partitions assigned", WAIT, |v| {
            message(v) == "partitions assigned" && field(v, "partitions").contains(".requests")
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in &instances {
        memory.idle(i);
    }

    let producer = common::producer();
    let topic = app.topic("requests");
    let mut lags = Vec::new();
    let mut epoch = 0;
    let mut sent = 0;
    for n in 0..s.activations {
        sim.set_mode(Mode::Unavailable);
        for i in 0..PARTITIONS {
            let key = format!("act{n}-{i}");
            common::produce(
                &producer,
                &topic,
                Some(i),
                Some(key.as_bytes()),
                Some(b"{}"),
                &[],
            )
            .await;
            sent += 1;
        }
        let mut last = 0;
        let mut store_epoch = 0;
        for i in &mut instances {
            let (e, lag) = wait_state(i, "STORE", epoch, None);
            store_epoch = e;
            last = last.max(lag);
        }
        lags.push(last as f64);
        sim.set_mode(Mode::Up);
        operator(&app, "Svc", CommandKind::Forward).await;
        for i in &mut instances {
            epoch = wait_state(i, "FORWARD", store_epoch, None).0;
        }
    }
    let failed = decode_failed(&read_async(app.topic("failed"), s.activations, 60).await);
    let mut per_activation: HashMap<i64, usize> = HashMap::new();
    for f in &failed {
        *per_activation.entry(f.epoch.unwrap_or(-1)).or_default() += 1;
    }
    sim.wait_for(sent - s.activations, WAIT)
        .await
        .expect("every stored request delivered");
    for i in &mut instances {
        assert!(i.terminate().success());
    }
    crate::kafka_io::delete_topics(&super::app_topics(&app)).await;

    let p50 = quantile(&lags, 0.5).unwrap_or(0.0);
    let p99 = quantile(&lags, 0.99).unwrap_or(0.0);
    let mut row = Row::new(6, "trigger → last of 3 instances storing", "ms");
    row.samples = lags.clone();
    row.headline = Some(p99);
    row.text = Some(format!(
        "p50 {} ms, p99 {} ms ({} activations)",
        crate::report::number(p50),
        crate::report::number(p99),
        lags.len()
    ));
    row.goal = Some(Goal::AtMost(50.0));
    row.note = Some(
        "`lag_ms` of the `control state applied` log line of the last instance: from the \
         trigger command's creation to the instance acting on the decision"
            .into(),
    );
    report.push(row);

    let mut row = Row::new(6, "failed events per activation", "events");
    row.samples = per_activation.values().map(|&c| c as f64).collect();
    row.headline = Some(failed.len() as f64 / s.activations as f64);
    row.goal = Some(Goal::Exactly(1.0));
    row.note = Some(format!(
        "{} failed events over {} activations, at most {} for one epoch",
        failed.len(),
        s.activations,
        per_activation.values().max().copied().unwrap_or(0)
    ));
    report.push(row);
    sim.shutdown().await;
}
