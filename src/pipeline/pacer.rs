//! Holds one source partition's replay to its share of the control point's
//! cluster-wide rate (see `control::pace` for how the cap is split).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::control::pace::{partition_share, Bucket};
use crate::control::{ControlPoint, ControlTable, Pace};
use crate::shutdown::Shutdown;
use crate::topology::ReplayPolicy;

/// How often the partitions still replaying are counted again.
const RECOUNT_EVERY: Duration = Duration::from_millis(250);
/// The longest one wait lasts before the rate is looked at again, so that
/// a faster pace takes effect at once.
const LONGEST_WAIT: Duration = Duration::from_millis(200);

/// The pacing of one replay of one source partition.
pub(super) struct Pacer {
    policy: ReplayPolicy,
    /// Every source partition of the control point's service.
    partitions: Arc<[(String, i32)]>,
    origin: Instant,
    bucket: Bucket,
    /// Partitions still replaying at the last count, and when it was made.
    replaying: usize,
    counted_at: Option<Instant>,
}

impl Pacer {
    pub(super) fn new(policy: ReplayPolicy, partitions: Arc<[(String, i32)]>) -> Self {
        Pacer {
            policy,
            partitions,
            origin: Instant::now(),
            bucket: Bucket::new(Duration::ZERO),
            replaying: 1,
            counted_at: None,
        }
    }

    /// The cap in effect for `state`, if any.
    pub(super) fn cap(&self, state: &ControlPoint) -> Option<crate::control::Rate> {
        Pace::effective(state.pace, self.policy.rate)
    }

    /// Waits until this partition may send its next replayed request,
    /// starting from `state`, the control point as last read. Returns
    /// `false` if `stop` fired first. While it waits the state is read
    /// again from `table`, so a `pace` command takes effect at once.
    pub(super) async fn wait(
        &mut self,
        state: &ControlPoint,
        table: &ControlTable,
        stop: &mut Shutdown,
    ) -> bool {
        let cp = state.name.as_str();
        let mut state = std::borrow::Cow::Borrowed(state);
        loop {
            let Some(cap) = self.cap(&state) else {
                return true;
            };
            let now = Instant::now();
            if self.counted_at.is_none_or(|at| now - at >= RECOUNT_EVERY) {
                self.replaying = self
                    .partitions
                    .iter()
                    .filter(|(topic, p)| !table.replay_finished(&state, topic, *p))
                    .count();
                self.counted_at = Some(now);
            }
            let since_forward =
                Duration::from_millis((crate::clock::now_ms() - state.since_ms).max(0) as u64);
            let share = partition_share(cap, self.policy.ramp, since_forward, self.replaying);
            match self.bucket.try_take(now - self.origin, share) {
                Ok(()) => return true,
                Err(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait.min(LONGEST_WAIT)) => {}
                        _ = stop.wait() => return false,
                    }
                    state = std::borrow::Cow::Owned(table.get(cp));
                }
            }
        }
    }
}
