//! The gauges that follow an instance's state rather than its events: the
//! control points as its table holds them, readiness, the local store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::events::{ControlStateChanged, ControlStateHeld, InstanceReady, StoreHealth};
use crate::control::{ControlPoint, ControlTable};
use crate::shutdown::Shutdown;
use crate::store::RocksStore;

/// How often the gauges are set again while nothing changes (well within
/// [`super::GAUGE_IDLE_TIMEOUT`]).
const REFRESH: Duration = Duration::from_secs(10);

/// Follows `table` until shutdown: sets the state and epoch gauges of every
/// control point (those of the topology, `control_points`, and any other
/// the table holds), records for each state change applied while running
/// how long after the change it was, keeps the ready gauge, and reads the
/// local store's health.
///
/// States read while the table loads at start are old news, not changes
/// this instance acts on: they set the gauges only.
pub async fn run_control_metrics(
    instance: String,
    table: ControlTable,
    control_points: Vec<String>,
    store: Option<Arc<RocksStore>>,
    mut shutdown: Shutdown,
) {
    let mut changes = table.subscribe();
    let mut ready = table.is_ready();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut store_errors = 0;
    InstanceReady {
        instance: &instance,
        ready,
    }
    .emit();
    for state in states(&table, &control_points) {
        seen.insert(state.name.clone(), state.epoch);
        ControlStateHeld {
            instance: &instance,
            state: &state,
        }
        .emit();
    }
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                let loading = !ready;
                ready = table.is_ready();
                let now_ms = crate::clock::now_ms();
                for state in states(&table, &control_points) {
                    let before = seen.insert(state.name.clone(), state.epoch);
                    if loading || before.is_some_and(|e| e >= state.epoch) {
                        ControlStateHeld { instance: &instance, state: &state }.emit();
                    } else {
                        ControlStateChanged { instance: &instance, state: &state, now_ms }.emit();
                    }
                }
                if !loading {
                    continue;
                }
                InstanceReady { instance: &instance, ready }.emit();
            }
            _ = table.wait_ready(), if !ready => {
                ready = true;
                for state in states(&table, &control_points) {
                    seen.insert(state.name.clone(), state.epoch);
                }
                InstanceReady { instance: &instance, ready }.emit();
            }
            _ = tick.tick() => {
                InstanceReady { instance: &instance, ready }.emit();
                for state in states(&table, &control_points) {
                    ControlStateHeld { instance: &instance, state: &state }.emit();
                }
                if let Some(store) = &store {
                    let background_errors = store.background_errors();
                    StoreHealth {
                        instance: &instance,
                        background_errors,
                        errors_before: store_errors,
                        live_bytes: store.live_data_bytes(),
                    }
                    .emit();
                    store_errors = background_errors.unwrap_or(store_errors);
                }
            }
        }
    }
}

/// The topology's control points, then any other the table holds.
fn states(table: &ControlTable, control_points: &[String]) -> Vec<ControlPoint> {
    let mut out: Vec<ControlPoint> = control_points.iter().map(|cp| table.get(cp)).collect();
    for state in table.all() {
        if !control_points.contains(&state.name) {
            out.push(state);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Cause, Mode};
    use crate::store::MemoryStore;

    fn table() -> ControlTable {
        ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap()
    }

    fn storing(name: &str, epoch: u64, since_ms: i64) -> ControlPoint {
        ControlPoint {
            mode: Mode::Store,
            epoch,
            since_ms,
            cause: Cause::Operator,
            by: "operator:test".into(),
            ..ControlPoint::initial(name)
        }
    }

    #[test]
    fn a_change_is_timed_from_its_since() {
        let state = storing("Cp", 1, 1_000);
        let event = ControlStateChanged {
            instance: "i",
            state: &state,
            now_ms: 1_250,
        };
        assert_eq!(event.delay(), Duration::from_millis(250));
        let event = ControlStateChanged {
            instance: "i",
            state: &state,
            now_ms: 900,
        };
        assert_eq!(event.delay(), Duration::ZERO, "clock skew is not negative");
    }

    #[tokio::test]
    async fn gauges_follow_the_table() {
        let handle = super::super::install();
        let table = table();
        let (trigger, stop) = crate::shutdown::channel();
        let task = tokio::spawn(run_control_metrics(
            "watch-test".into(),
            table.clone(),
            vec!["WatchCp".into()],
            None,
            stop,
        ));
        let series =
            r#"sfwd_control_point_state{instance_id="watch-test",control_point="WatchCp"}"#;
        let value = |text: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        let wait_for = |want: &'static str| {
            let handle = handle.clone();
            async move {
                for _ in 0..200 {
                    if value(&handle.render()).as_deref() == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("state gauge never {want}: {}", handle.render());
            }
        };
        wait_for("0").await;
        let state = storing("WatchCp", 1, crate::clock::now_ms());
        table
            .apply_state(crate::control::state_to_record(&state, 1))
            .unwrap();
        wait_for("1").await;
        trigger.fire();
        task.await.unwrap();
    }
}
