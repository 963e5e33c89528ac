//! How far a replay has got: per source partition and in all, with the
//! rate since it began and the time left, from the stored topic's
//! watermarks and the replay progress every instance reads. Pure.
//!
//! Each source partition's replay records, on `<app>.replay`, the stored
//! offset and the time it began at for the current FORWARD epoch, and the
//! next stored offset it will read. So for a partition, `replayed` is next
//! minus start, `total` is the stored partition's high watermark minus
//! start, and its rate is what it replayed over the time since it began.
//! With the default layout (one source partition per stored partition)
//! the figures are exact; when several source partitions share a stored
//! partition, `total` counts the others' records too (an upper bound).

use serde::{Deserialize, Serialize};

use super::backlog::StoredLayout;
use crate::control::{ControlPoint, Pace, Rate, ReplayProgress};

/// Progress of a replay over the source partitions of the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayView {
    /// Source partitions of the service.
    pub partitions: usize,
    /// Those whose replay has reached the end of the stored requests.
    pub caught_up: usize,
    /// Stored requests replayed (delivered, failed or skipped) since the
    /// replay began; `None` when the stored topic's offsets could not be
    /// read.
    pub replayed: Option<u64>,
    /// Stored requests this replay has in all (replayed and left).
    pub total: Option<u64>,
    /// Requests per second since the replay began, summed over the
    /// partitions still replaying.
    pub rate_per_second: Option<f64>,
    /// Seconds until the slowest partition is done at its rate so far.
    pub eta_seconds: Option<u64>,
    /// The cap on the replay's rate across the cluster (`200/s`), `None`
    /// when there is none.
    pub pace: Option<String>,
    /// Whether the pace is an operator's override rather than the
    /// topology's `replay.rate`.
    pub pace_overridden: bool,
    /// Each source partition.
    pub by_partition: Vec<PartitionReplay>,
}

/// One source partition's part of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionReplay {
    pub topic: String,
    pub partition: i32,
    /// Whether it has reached the end of its stored requests.
    pub caught_up: bool,
    pub replayed: Option<u64>,
    pub total: Option<u64>,
    pub rate_per_second: Option<f64>,
    pub eta_seconds: Option<u64>,
}

/// The view of `state`'s replay. `watermarks` are the `(low, high)` of
/// each stored partition (`None` when unknown), `progress` the replay
/// progress of a source partition, `configured` the topology's cap.
pub fn replay_view(
    state: &ControlPoint,
    layout: &StoredLayout,
    watermarks: Option<&[(i64, i64)]>,
    progress: impl Fn(&str, i32) -> ReplayProgress,
    configured: Option<Rate>,
    now_ms: i64,
) -> ReplayView {
    let epoch = state.epoch as i64;
    let by_partition: Vec<PartitionReplay> = layout
        .sources
        .iter()
        .map(|(topic, p)| {
            let prog = progress(topic, *p);
            let caught_up = prog.done_epoch >= epoch;
            let stored = (p % layout.partitions.max(1)) as usize;
            let marks = watermarks.and_then(|m| m.get(stored)).copied();
            let (replayed, total, rate, eta) = match marks {
                Some((low, high)) => counts(&prog, epoch, caught_up, low, high, now_ms),
                None => (None, None, None, None),
            };
            PartitionReplay {
                topic: topic.clone(),
                partition: *p,
                caught_up,
                replayed,
                total,
                rate_per_second: rate,
                eta_seconds: eta,
            }
        })
        .collect();
    let sum = |f: fn(&PartitionReplay) -> Option<u64>| -> Option<u64> {
        by_partition.iter().map(f).sum()
    };
    let rates: Vec<f64> = by_partition
        .iter()
        .filter(|p| !p.caught_up)
        .filter_map(|p| p.rate_per_second)
        .collect();
    let cap = Pace::effective(state.pace, configured);
    ReplayView {
        partitions: by_partition.len(),
        caught_up: by_partition.iter().filter(|p| p.caught_up).count(),
        replayed: sum(|p| p.replayed),
        total: sum(|p| p.total),
        rate_per_second: (!rates.is_empty()).then(|| rates.iter().sum()),
        eta_seconds: by_partition
            .iter()
            .filter(|p| !p.caught_up)
            .map(|p| p.eta_seconds)
            .try_fold(0u64, |worst, eta| eta.map(|e| worst.max(e))),
        pace: cap.map(|r| r.to_string()),
        pace_overridden: state.pace.is_some(),
        by_partition,
    }
}

/// `(replayed, total, rate, eta)` of one source partition whose stored
/// partition has watermarks `low`, `high`.
fn counts(
    prog: &ReplayProgress,
    epoch: i64,
    caught_up: bool,
    low: i64,
    high: i64,
    now_ms: i64,
) -> (Option<u64>, Option<u64>, Option<f64>, Option<u64>) {
    let started = prog.started_epoch == epoch;
    let from = if started {
        prog.started_offset
    } else {
        prog.next_offset
    }
    .max(low);
    let next = prog.next_offset.max(from);
    let left = if caught_up { 0 } else { (high - next).max(0) };
    let replayed = (next - from) as u64;
    let total = replayed + left as u64;
    let elapsed_s = (now_ms - prog.started_ms) as f64 / 1000.0;
    let rate = (started && elapsed_s > 0.0).then(|| replayed as f64 / elapsed_s);
    let eta = if left == 0 {
        Some(0)
    } else {
        rate.filter(|r| *r > 0.0)
            .map(|r| (left as f64 / r).ceil() as u64)
    };
    (Some(replayed), Some(total), rate, eta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> StoredLayout {
        StoredLayout {
            topic: "app.stored.Cp".into(),
            partitions: 2,
            sources: vec![("req".into(), 0), ("req".into(), 1)],
        }
    }

    fn replaying(epoch: u64) -> ControlPoint {
        ControlPoint {
            mode: crate::control::Mode::Forward,
            replaying: true,
            epoch,
            ..ControlPoint::initial("Cp")
        }
    }

    #[test]
    fn counts_each_partition_from_where_its_replay_began() {
        let now = 1_000_000;
        let progress = |_: &str, p: i32| match p {
            // Began at 100 ten seconds ago, now at 300 of 600: 20/s, 15 s left.
            0 => ReplayProgress {
                next_offset: 300,
                started_epoch: 4,
                started_offset: 100,
                started_ms: now - 10_000,
                open: true,
                ..ReplayProgress::default()
            },
            // Done.
            _ => ReplayProgress {
                next_offset: 50,
                done_epoch: 4,
                started_epoch: 4,
                started_offset: 0,
                started_ms: now - 10_000,
                ..ReplayProgress::default()
            },
        };
        let v = replay_view(
            &replaying(4),
            &layout(),
            Some(&[(0, 600), (0, 50)]),
            progress,
            Rate::per_second(100.0),
            now,
        );
        assert_eq!((v.partitions, v.caught_up), (2, 1));
        assert_eq!((v.replayed, v.total), (Some(250), Some(550)));
        assert_eq!(
            v.rate_per_second,
            Some(20.0),
            "only partitions still replaying"
        );
        assert_eq!(v.eta_seconds, Some(15));
        assert_eq!(v.pace.as_deref(), Some("100/s"));
        assert!(!v.pace_overridden);
        assert_eq!(v.by_partition[0].total, Some(500));
        assert_eq!(v.by_partition[1].eta_seconds, Some(0));
    }

    #[test]
    fn a_partition_not_begun_yet_has_everything_left_and_no_eta() {
        let mut state = replaying(2);
        state.pace = Some(Pace::Unlimited);
        let v = replay_view(
            &state,
            &layout(),
            Some(&[(10, 40), (0, 0)]),
            |_, _| ReplayProgress {
                next_offset: 5,
                ..ReplayProgress::default()
            },
            Rate::per_second(100.0),
            0,
        );
        assert_eq!(v.by_partition[0].replayed, Some(0));
        assert_eq!(v.by_partition[0].total, Some(30), "from the low watermark");
        assert_eq!(v.by_partition[0].eta_seconds, None);
        assert_eq!(v.eta_seconds, None);
        assert_eq!((v.pace, v.pace_overridden), (None, true));
    }

    #[test]
    fn without_watermarks_only_the_partitions_are_counted() {
        let v = replay_view(
            &replaying(1),
            &layout(),
            None,
            |_, _| ReplayProgress {
                done_epoch: 1,
                ..ReplayProgress::default()
            },
            None,
            0,
        );
        assert_eq!((v.partitions, v.caught_up), (2, 2));
        assert_eq!((v.replayed, v.total), (None, None));
        assert_eq!(v.eta_seconds, Some(0), "every partition is done");
    }
}
