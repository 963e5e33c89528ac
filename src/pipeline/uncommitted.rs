//! The redelivery bound (SPEC §11): while offset commits fail or lag, a
//! partition stops taking records once its uncommitted work reaches the
//! bound, and takes them again when a commit covers it.
//!
//! A record is *uncommitted work* from the moment its worker takes it until
//! an offset commit past it succeeds. Until then a crash, a rebalance or a
//! group membership lost in a broker outage hands it to the partition's
//! next owner, which processes it again: HTTP calls are repeated, Kafka
//! produces written twice. The bound is `limits.max_uncommitted_records`
//! records (plus the calls a Kafka binding keeps in flight, which are
//! uncommitted by design) or `limits.max_uncommitted_age` since the oldest
//! of them was taken, whichever comes first.
//!
//! librdkafka commits the stored offsets every `auto.commit.interval.ms`
//! and reports each commit, success or failure, to the consumer context,
//! which hands it to [`Commits`]: per partition, the offset of the last
//! commit that succeeded. Each worker's [`Uncommitted`] drops the records
//! that offset covers and decides, before each record, whether the
//! partition may take it. A quarter of the way to the bound it asks for
//! a commit at once rather than at the next interval, so that with a
//! healthy broker a partition seldom reaches it; since a commit covers
//! every partition of the consumer, asks are spaced per instance, not per
//! partition. A held partition's records wait in its queue and then in the
//! consumer (which the dispatcher pauses): nothing is skipped.
//!
//! Every commit must be heard of: the periodic commit leaves out the
//! partitions with nothing new stored, so a partition whose last stored
//! offset went out in a commit nobody reported would wait for ever. The
//! asks are therefore commits that report like the periodic ones (see
//! `commit_reported` in `consumer`), and the consumer's statistics,
//! which carry librdkafka's own last committed offset of each partition,
//! move [`Commits`] too ([`Commits::observed`]), should a report still be
//! missed.
//!
//! With `kafka.exactly_once` offsets are committed in each partition's
//! transactions, and a transaction that cannot commit stops the partition:
//! there is no bound to keep here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Partition;
use crate::telemetry::{self, PartitionGauge, UncommittedWork};

/// A hold that lasts this long is logged at `warn`: commits are failing,
/// not just a moment behind.
const REPORT_HOLD_AFTER: Duration = Duration::from_secs(1);
/// While held, the partition looks again this often (to report the hold,
/// refresh its gauge, and ask for a commit again).
const HOLD_TICK: Duration = Duration::from_millis(500);
/// The instance asks for a commit at most this often while asks are being
/// answered (a commit covers every partition, so a busy consumer commits
/// about this often, whatever its partitions)…
const ASK_EVERY: Duration = Duration::from_millis(20);
/// …and, while commits go unanswered (no coordinator), at most this often,
/// since librdkafka keeps each ask until the coordinator is back.
const ASK_UNANSWERED_EVERY: Duration = Duration::from_secs(1);

/// The last successful offset commit of every partition, as librdkafka
/// reports them; shared by the consumer context and the workers.
#[derive(Debug, Default)]
pub struct Commits {
    partitions: Mutex<HashMap<Partition, watch::Sender<Option<i64>>>>,
    /// Commit reports received, successful or not.
    reports: AtomicU64,
    /// The last ask for a commit, and the commit reports received then.
    asked: Mutex<Option<(Instant, u64)>>,
}

impl Commits {
    /// Follows `partition`'s commits from now on, for its new worker.
    pub(super) fn follow(&self, partition: &Partition) -> watch::Receiver<Option<i64>> {
        let (tx, rx) = watch::channel(None);
        self.partitions
            .lock()
            .unwrap()
            .insert(partition.clone(), tx);
        rx
    }

    /// A commit report from librdkafka (the consumer context's commit
    /// callback). Only partitions committed without error move.
    pub(super) fn reported(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit failed");
            return;
        }
        let partitions = self.partitions.lock().unwrap();
        for e in offsets.elements() {
            let (Offset::Offset(next), Ok(())) = (e.offset(), e.error()) else {
                continue;
            };
            advance(&partitions, e.topic(), e.partition(), next);
        }
    }

    /// The consumer's statistics: per partition, the offset of its last
    /// successful commit as librdkafka keeps it. A second way to learn of
    /// commits, every `statistics.interval.ms`, should a commit's report
    /// not come: a partition that stores nothing more is left out of the
    /// later periodic commits, so one missed report would hold it for ever.
    pub(super) fn observed(&self, statistics: &rdkafka::Statistics) {
        self.observed_offsets(statistics.topics.iter().flat_map(|(topic, t)| {
            t.partitions
                .iter()
                .map(move |(&partition, p)| (topic.as_str(), partition, p.committed_offset))
        }));
    }

    /// [`Commits::observed`]: `(topic, partition, committed offset)`, the
    /// offset negative where librdkafka knows of no commit.
    fn observed_offsets<'a>(&self, committed: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        let partitions = self.partitions.lock().unwrap();
        for (topic, partition, next) in committed {
            // -1 is librdkafka's internal partition.
            if partition >= 0 && next >= 0 {
                advance(&partitions, topic, partition, next);
            }
        }
    }

    /// Whether a worker may ask for a commit now; if so, the ask is
    /// recorded. Asks are spaced [`ASK_EVERY`] apart, or
    /// [`ASK_UNANSWERED_EVERY`] while no commit report came since the last.
    fn may_ask(&self) -> bool {
        let reports = self.reports.load(Ordering::Relaxed);
        let mut asked = self.asked.lock().unwrap();
        if let Some((at, seen)) = *asked {
            let wait = if reports > seen {
                ASK_EVERY
            } else {
                ASK_UNANSWERED_EVERY
            };
            if at.elapsed() < wait {
                return false;
            }
        }
        *asked = Some((Instant::now(), reports));
        true
    }
}

/// Moves `partition`'s committed offset forward to `next`, if it follows
/// that partition and `next` is ahead.
fn advance(
    partitions: &HashMap<Partition, watch::Sender<Option<i64>>>,
    topic: &str,
    partition: i32,
    next: i64,
) {
    if let Some(tx) = partitions.get(&(topic.to_string(), partition)) {
        tx.send_if_modified(|c| {
            let moved = c.is_none_or(|c| next > c);
            if moved {
                *c = Some(next);
            }
            moved
        });
    }
}

/// The redelivery bound of one partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bound {
    /// Records taken past the last successful commit…
    pub(super) records: usize,
    /// …beyond the target's calls in flight (a Kafka binding's
    /// `in_flight`; 0 for a target called one request at a time).
    pub(super) in_flight: usize,
    /// Age of the oldest of them.
    pub(super) age: Duration,
}

impl Bound {
    /// Records taken past the last successful commit at which the
    /// partition holds.
    fn hold_at(&self) -> usize {
        self.in_flight.saturating_add(self.records)
    }

    /// Records at which it asks for a commit: a quarter of the bound, above
    /// the calls in flight. Early enough that a partition taking records
    /// fast has a commit back before the bound: what it takes meanwhile
    /// (while the oldest outputs are acknowledged, the last ask is
    /// [`ASK_EVERY`] old and the commit goes to the broker and back) has
    /// the other three quarters.
    fn ask_at(&self) -> usize {
        self.in_flight.saturating_add(self.records.div_ceil(4))
    }
}

/// Asks the consumer to commit the offsets stored so far, without waiting;
/// the commit is reported to [`Commits::reported`].
pub(super) type AskCommit = Box<dyn Fn() -> KafkaResult<()> + Send>;

/// One partition's uncommitted work, and whether it may take a record.
pub(super) struct Uncommitted {
    instance: String,
    topic: String,
    partition: i32,
    /// `None` with `kafka.exactly_once`: no bound.
    bound: Option<Bound>,
    /// Offsets taken and not covered by a successful commit, oldest first,
    /// with when they were taken.
    taken: VecDeque<(i64, Instant)>,
    committed: watch::Receiver<Option<i64>>,
    commits: Arc<Commits>,
    ask: AskCommit,
    held: Option<Held>,
    gauge: PartitionGauge,
}

struct Held {
    since: Instant,
    reported: bool,
}

impl Uncommitted {
    pub(super) fn new(
        instance: &str,
        partition: &Partition,
        bound: Option<Bound>,
        commits: Arc<Commits>,
        ask: AskCommit,
    ) -> Self {
        Uncommitted {
            instance: instance.to_string(),
            topic: partition.0.clone(),
            partition: partition.1,
            bound,
            taken: VecDeque::new(),
            committed: commits.follow(partition),
            commits,
            ask,
            held: None,
            gauge: PartitionGauge::uncommitted_records(instance, &partition.0, partition.1),
        }
    }

    /// The worker takes the record at `offset`.
    pub(super) fn take(&mut self, offset: i64) {
        if self.bound.is_some() {
            self.taken.push_back((offset, Instant::now()));
        }
    }

    /// Whether the partition must hold (take no record) now. Logs and
    /// counts when it starts and stops holding; asks for a commit when
    /// a quarter of the way to the bound (or with its oldest record halfway
    /// to the age bound).
    pub(super) fn holds(&mut self) -> bool {
        let Some(bound) = self.bound else {
            return false;
        };
        if let Some(next) = *self.committed.borrow_and_update() {
            while self.taken.front().is_some_and(|(o, _)| *o < next) {
                self.taken.pop_front();
            }
        }
        self.gauge.set(self.taken.len());
        let oldest = self.oldest();
        let over = self.taken.len() >= bound.hold_at() || oldest >= bound.age;
        if over || self.taken.len() >= bound.ask_at() || oldest >= bound.age / 2 {
            self.ask_commit();
        }
        match (&mut self.held, over) {
            (None, true) => {
                self.held = Some(Held {
                    since: Instant::now(),
                    reported: false,
                });
                telemetry::PartitionHeld(self.work(bound)).emit();
            }
            (Some(h), true) if !h.reported && h.since.elapsed() >= REPORT_HOLD_AFTER => {
                h.reported = true;
                telemetry::PartitionStillHeld(self.work(bound)).emit();
            }
            (Some(_), false) => {
                let h = self.held.take().expect("held");
                telemetry::PartitionResumed {
                    work: self.work(bound),
                    held: h.since.elapsed(),
                    reported: h.reported,
                }
                .emit();
            }
            _ => {}
        }
        over
    }

    /// Whether one more record of the records a worker takes in one turn
    /// may be taken without the full look of [`Uncommitted::holds`]: the
    /// partition is below the count at which it asks for a commit. The
    /// turn's first record had that look, and a turn lasts milliseconds, far
    /// less than the age bound.
    pub(super) fn well_under(&self) -> bool {
        self.bound
            .is_none_or(|bound| self.taken.len() < bound.ask_at())
    }

    /// Whether records taken are waiting for a commit.
    pub(super) fn has_work(&self) -> bool {
        !self.taken.is_empty()
    }

    /// Returns when a commit moved the partition's committed offset, or,
    /// while `held`, after [`HOLD_TICK`] at the latest; not held with work
    /// waiting for a commit, when its oldest record is halfway to the age
    /// bound (time to ask for a commit), and from then on every
    /// [`HOLD_TICK`] until a commit covers it. So an idle partition's last
    /// records do not wait for whatever commit comes next: it asks.
    pub(super) async fn changed(&mut self, held: bool) {
        let wake = if held { Some(HOLD_TICK) } else { self.ask_in() };
        if let Some(wake) = wake {
            tokio::select! {
                Ok(()) = self.committed.changed() => {}
                _ = tokio::time::sleep(wake) => {}
            }
        } else if self.committed.changed().await.is_err() {
            // A later worker of the partition follows its commits now; this
            // one is stopping.
            std::future::pending::<()>().await;
        }
    }

    /// With records waiting for a commit, how long until the partition
    /// asks for one for the age of the oldest ([`HOLD_TICK`] at least).
    fn ask_in(&self) -> Option<Duration> {
        let bound = self.bound?;
        if self.taken.is_empty() {
            return None;
        }
        Some((bound.age / 2).saturating_sub(self.oldest()).max(HOLD_TICK))
    }

    fn oldest(&self) -> Duration {
        self.taken
            .front()
            .map_or(Duration::ZERO, |(_, at)| at.elapsed())
    }

    fn work(&self, bound: Bound) -> UncommittedWork<'_> {
        UncommittedWork {
            instance: &self.instance,
            topic: &self.topic,
            partition: self.partition,
            records: self.taken.len(),
            oldest: self.oldest(),
            committed: *self.committed.borrow(),
            max_records: bound.hold_at(),
            max_age: bound.age,
        }
    }

    /// Asks librdkafka to commit the stored offsets now, unless an ask is
    /// recent.
    fn ask_commit(&mut self) {
        if !self.commits.may_ask() {
            return;
        }
        if let Err(e) = (self.ask)() {
            tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "asking for an offset commit");
        }
    }
}

#[cfg(test)]
mod tests;
