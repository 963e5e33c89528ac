//! Rows 1–4: the throughput of sfwd and of the baselines at each value
//! size, in lanes run in turn within each repetition (see `lanes.rs`).

use sfwd::target_sim::TargetSim;

use super::lanes::{lane, Bench, Sample, Side};
use super::{app_topics, http_app, http_target, kafka_app, start_storing, Memory};
use crate::common;
use crate::kafka_io;
use crate::report::{median, Cpu, Goal, Report, Row};
use crate::Settings;

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
            keys: None,
            warmup: s.warmup,
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
        let (used, window_note) = bench
            .repeat(&mut lanes, memory, &format!("throughput, {size} B"))
            .await;
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
