//! Metrics and internal events: what an instance counts and logs about its
//! own work.
//!
//! Every metric name is a constant in [`names`], with what it measures and
//! its labels. Every internal event is one struct in [`events`] whose
//! `emit()` writes the log line (with `tracing`, structured fields) and
//! updates the metrics (with the `metrics` macros) in one place, so the
//! data path has one line per event and names never drift.
//!
//! Labels are a small fixed set: `instance_id`, `service`, `operation`,
//! `outcome`, `reason`, `control_point`, `command`, `state`, and for the
//! consumer lag and the uncommitted records `topic` and `partition`. Never
//! a request id: a label value per request would grow the registry without
//! bound.
//!
//! The recorder is Prometheus's ([`install`]); the admin server renders it
//! at `/metrics`. The `metrics` crate has one recorder per process, so
//! several instances in one process share it; the `instance_id` label keeps
//! their series apart (it is not called `instance` because Prometheus adds
//! that label to every scraped series itself).

pub mod events;
mod handles;
pub mod names;
mod watch;

pub use events::*;
pub use watch::run_control_metrics;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Upper bounds of the target call latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the state-change-to-action buckets, in seconds.
pub const ACT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A gauge not set for this long disappears from `/metrics`: the lag of a
/// partition this instance no longer owns is not shown forever. Gauges that
/// must stay are set again more often than this.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often histograms are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder and returns a handle to
/// render it. Idempotent: every later call, from any instance of the
/// process, returns the same handle.
///
/// If another recorder was installed first (by an embedding program), the
/// handle renders an empty registry and a warning says why.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| match builder().install_recorder() {
            Ok(handle) => {
                describe();
                let upkeep = handle.clone();
                std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    })
                    .expect("spawning the metrics upkeep thread");
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed: /metrics will be empty");
                builder().build_recorder().handle()
            }
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::TARGET_CALL_SECONDS.into()),
            LATENCY_BUCKETS,
        )
        .expect("non-empty buckets")
        .set_buckets_for_metric(
            Matcher::Full(names::STATE_CHANGE_TO_ACT_SECONDS.into()),
            ACT_BUCKETS,
        )
        .expect("non-empty buckets")
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests that reached an outcome, by service, operation and outcome"
    );
    describe_counter!(
        STORED_TOTAL,
        Unit::Count,
        "Requests written to a control point's stored topic"
    );
    describe_counter!(
        REPLAYED_TOTAL,
        Unit::Count,
        "Stored requests delivered to the target by a replay"
    );
    describe_counter!(
        REPLAY_BACK_OFFS_TOTAL,
        Unit::Count,
        "Waits of a replay for an overloaded target (429, or 503 with Retry-After)"
    );
    describe_counter!(
        FAILED_TOTAL,
        Unit::Count,
        "Requests written to the failed-events topic, by reason"
    );
    describe_counter!(
        CONTROL_COMMANDS_TOTAL,
        Unit::Count,
        "Control commands decided by this instance's control writer"
    );
    describe_gauge!(
        CONTROL_POINT_STATE,
        "State of a control point as this instance sees it: 0 forward, 1 store, 2 replaying"
    );
    describe_gauge!(
        CONTROL_POINT_EPOCH,
        Unit::Count,
        "Epoch of a control point as this instance sees it"
    );
    describe_histogram!(
        STATE_CHANGE_TO_ACT_SECONDS,
        Unit::Seconds,
        "Time from a control point state change to this instance acting on it"
    );
    describe_histogram!(
        TARGET_CALL_SECONDS,
        Unit::Seconds,
        "Duration of a target invocation, retries included"
    );
    describe_gauge!(
        KAFKA_CONSUMER_LAG,
        Unit::Count,
        "Records of a request partition not yet committed by this instance"
    );
    describe_gauge!(
        UNCOMMITTED_RECORDS,
        Unit::Count,
        "Records of a request partition taken and not yet covered by a successful offset commit"
    );
    describe_gauge!(
        IN_FLIGHT_LIMIT,
        Unit::Count,
        "Calls to an HTTP target with ordering: key that a request partition may have out now (adaptive)"
    );
    describe_counter!(
        PARTITION_PAUSES_TOTAL,
        Unit::Count,
        "Times a request partition was paused because its worker was behind"
    );
    describe_counter!(
        UNCOMMITTED_HOLDS_TOTAL,
        Unit::Count,
        "Times a request partition stopped taking records at the redelivery bound"
    );
    describe_gauge!(
        KAFKA_BROKERS_UP,
        Unit::Count,
        "Brokers the request consumer is connected to"
    );
    describe_gauge!(
        INSTANCE_READY,
        "1 once the instance has loaded the control state, 0 before"
    );
    describe_gauge!(
        STORE_BACKGROUND_ERRORS,
        Unit::Count,
        "Background errors of the local store (RocksDB) since it was opened"
    );
    describe_gauge!(
        STORE_LIVE_BYTES,
        Unit::Bytes,
        "Estimated size of the live data of the local store (RocksDB)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_gives_the_same_registry() {
        let a = install();
        let b = install();
        InstanceReady {
            instance: "telemetry-test",
            ready: true,
        }
        .emit();
        let series = r#"sfwd_instance_ready{instance_id="telemetry-test"} 1"#;
        assert!(a.render().contains(series), "{}", a.render());
        assert!(b.render().contains(series), "{}", b.render());
    }

    #[test]
    fn histograms_render_with_buckets() {
        let handle = install();
        TargetCalled {
            instance: "telemetry-test",
            service: "svc",
            ok: true,
            elapsed: Duration::from_millis(3),
        }
        .emit();
        let text = handle.render();
        assert!(
            text.contains(
                r#"sfwd_target_call_seconds_bucket{instance_id="telemetry-test",service="svc",outcome="ok",le="0.005"} 1"#
            ),
            "{text}"
        );
    }
}
