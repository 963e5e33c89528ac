//! The dispatcher: it owns the request consumer and hands each record to
//! its partition's worker, starting a worker when a partition is assigned
//! or first heard of, and pausing the partition while the records its
//! worker has not taken yet pile up; at shutdown it stops every worker and
//! commits what they finished.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::mpsc;

use super::consumer::{commit_reported, PipelineContext, WorkerStop};
use super::record::{inbox, InboxSender, Record};
use super::{outputs, uncommitted, worker, Context, Partition, PipelineError};
use crate::bindings::Target;
use crate::shutdown::{self, Shutdown};
use crate::telemetry;
use crate::topology::MIN_WAITING_PER_PARTITION;

/// A partition's worker, as the dispatcher holds it.
struct Handle {
    inbox: InboxSender,
    /// The worker task; a later worker of the same partition waits for it.
    task: tokio::task::JoinHandle<()>,
    /// Fired when the worker is told to stop (its partition revoked): a
    /// record of the partition after that needs a new worker.
    stop: Shutdown,
}

/// The workers' handles by topic, then partition: a record's handle is
/// found by its borrowed topic name, without allocating, and with a fast
/// hash (the keys are the topology's topics and the partitions the group
/// assigned, nothing a caller chooses).
#[derive(Default)]
struct Handles(HashMap<String, HashMap<i32, Handle, Fast>, Fast>);

type Fast = foldhash::fast::FixedState;

impl Handles {
    fn get_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Handle> {
        self.0.get_mut(topic)?.get_mut(&partition)
    }

    /// Workers not told to stop.
    fn live_count(&self) -> usize {
        self.0
            .values()
            .flat_map(HashMap::values)
            .filter(|h| !h.stop.is_fired())
            .count()
    }

    /// The handle of a worker not told to stop.
    fn live(&mut self, topic: &str, partition: i32) -> Option<&mut Handle> {
        self.get_mut(topic, partition)
            .filter(|h| !h.stop.is_fired())
    }

    fn insert(&mut self, p: &Partition, h: Handle) {
        self.0.entry(p.0.clone()).or_default().insert(p.1, h);
    }

    fn remove(&mut self, p: &Partition) -> Option<Handle> {
        self.0.get_mut(&p.0)?.remove(&p.1)
    }
}

/// The least a partition may hold waiting for its worker before it is
/// paused, whatever its share of `limits.max_waiting_bytes` (the topology
/// warns about a budget below it).
///
/// A fetch brings up to `max.partition.fetch.bytes` (1 MiB by default) of
/// one partition at once, and pausing drops what the consumer has fetched
/// beyond it, to be fetched again on resuming: room for two fetches keeps
/// a worker that keeps up from being paused by a fetch's burst.
const PAUSE_AT_LEAST: usize = MIN_WAITING_PER_PARTITION as usize;

/// The most a partition may hold waiting for its worker: a few seconds of
/// work at any record size, however few partitions share the budget.
const PAUSE_AT_MOST: usize = 32 << 20;

/// The bytes of records ([`Record::held_bytes`]) waiting for a partition's
/// worker at which the dispatcher pauses the partition, with `partitions`
/// live workers sharing `budget` (`limits.max_waiting_bytes`): an equal
/// share, between [`PAUSE_AT_LEAST`] and [`PAUSE_AT_MOST`]. Each pause
/// drops what the consumer prefetched of the partition and costs a fetch
/// to start again, so the larger the share, the fewer pauses.
fn pause_at(budget: u64, partitions: usize) -> usize {
    let share = budget / partitions.max(1) as u64;
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .clamp(PAUSE_AT_LEAST, PAUSE_AT_MOST)
}

/// A paused partition resumes once less than this waits: enough left to
/// work on while the consumer fetches again.
fn resume_below(pause_at: usize) -> usize {
    pause_at / 4
}

/// The redelivery bound of a partition read by `services` (indices into
/// the topology): `limits.max_uncommitted_records`, plus the calls a Kafka
/// binding among them keeps in flight (uncommitted by design); none with
/// `kafka.exactly_once`, whose transactions commit offsets with outputs.
fn uncommitted_bound(ctx: &Context, services: &[usize]) -> Option<uncommitted::Bound> {
    if ctx.exactly_once.is_some() {
        return None;
    }
    let limits = &ctx.topology.limits;
    let in_flight = services
        .iter()
        .filter_map(|&i| match &ctx.targets[i] {
            Target::Kafka(t) if t.in_flight() > 1 => Some(t.in_flight()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    Some(uncommitted::Bound {
        records: usize::try_from(limits.max_uncommitted_records).unwrap_or(usize::MAX),
        in_flight,
        age: limits.max_uncommitted_age,
    })
}

/// Runs the pipeline until shutdown. `consumer_config` must have the
/// application's `group.id`.
pub async fn run_pipeline(
    ctx: Arc<Context>,
    consumer_config: ClientConfig,
    mut stop: Shutdown,
) -> Result<(), PipelineError> {
    let workers: Arc<Mutex<HashMap<Partition, WorkerStop>>> = Arc::default();
    let commits: Arc<uncommitted::Commits> = Arc::default();
    let (assigned_tx, mut assigned_rx) = mpsc::unbounded_channel();
    let context = PipelineContext {
        workers: workers.clone(),
        assigned: assigned_tx,
        commits: commits.clone(),
    };
    let mut consumer_config = consumer_config;
    if ctx.exactly_once.is_some() {
        // Offsets are committed in each partition's transactions.
        consumer_config.set("enable.auto.commit", "false");
    }
    let consumer: Arc<StreamConsumer<PipelineContext>> =
        Arc::new(consumer_config.create_with_context(context)?);
    let topics: Vec<&str> = ctx
        .plan
        .request_topics()
        .iter()
        .map(String::as_str)
        .collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, "consuming requests");

    let mut handles = Handles::default();
    // Partitions paused because their workers are behind.
    let mut paused: HashSet<Partition> = HashSet::new();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<(Partition, PipelineError)>();
    let budget = ctx.topology.limits.max_waiting_bytes;
    // Each partition's share of the budget, counted again as workers start
    // and when a partition reaches it (partitions may have been revoked
    // since).
    let mut pause_at_bytes = pause_at(budget, 1);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let ask_commit = {
        let consumer = consumer.clone();
        move || -> uncommitted::AskCommit {
            let consumer = consumer.clone();
            Box::new(move || commit_reported(consumer.client()))
        }
    };
    let spawn = |p: &Partition, handles: &mut Handles| {
        let (tx, rx) = inbox();
        let (trigger, listener) = shutdown::channel();
        let stop_listener = listener.clone();
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        workers.lock().unwrap().insert(
            p.clone(),
            WorkerStop {
                trigger,
                stopped: stopped.clone(),
            },
        );
        let topic = ctx.plan.topic(&p.0);
        let worker = worker::Worker {
            ctx: ctx.clone(),
            topic: p.0.clone(),
            partition: p.1,
            window: outputs::OutputWindow::new(consumer.clone(), ctx.producer.clone(), &p.0, p.1),
            needs_replay: topic.control_points.iter().cloned().collect(),
            control_points: topic.control_points.clone(),
            replay_keys: HashMap::new(),
            calls: Default::default(),
            throttles: Default::default(),
            delivered_ahead: Default::default(),
            uncommitted: uncommitted::Uncommitted::new(
                &ctx.instance,
                p,
                uncommitted_bound(&ctx, &topic.services),
                commits.clone(),
                ask_commit(),
            ),
            stop: listener,
        };
        let failed = failed_tx.clone();
        let partition = p.clone();
        // A partition revoked and assigned again must not have two workers:
        // the new one starts when the last one has finished.
        let previous = handles.remove(p).map(|h| h.task);
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let result = worker.run(rx).await;
            {
                let (lock, cvar) = &*stopped;
                *lock.lock().unwrap() = true;
                cvar.notify_all();
            }
            match result {
                Ok(()) | Err(PipelineError::Stopped) => {}
                Err(e) => {
                    let _ = failed.send((partition, e));
                }
            }
        });
        handles.insert(
            p,
            Handle {
                inbox: tx,
                task,
                stop: stop_listener,
            },
        );
    };

    let result = loop {
        tokio::select! {
            // An assignment is taken before the records it brings, so that
            // each partition's share of the budget counts every partition.
            biased;
            _ = stop.wait() => break Ok(()),
            Some((p, e)) = failed_rx.recv() => {
                tracing::error!(topic = %p.0, partition = p.1, error = %e, "a partition stopped; stopping so that nothing is lost");
                break Err(e);
            }
            Some(assigned) = assigned_rx.recv() => {
                // Start the workers now, so that a partition without new
                // records still replays its stored requests.
                for p in assigned {
                    if handles.live(&p.0, p.1).is_none() {
                        spawn(&p, &mut handles);
                    }
                }
                pause_at_bytes = pause_at(budget, handles.live_count());
            }
            _ = tick.tick(), if !paused.is_empty() => {
                // A partition resumes once its worker is nearly through what
                // it holds, or has stopped (revoked: nothing to resume for).
                let caught_up: Vec<Partition> = paused
                    .iter()
                    .filter(|p| {
                        handles
                            .live(&p.0, p.1)
                            .is_none_or(|h| h.inbox.held() < resume_below(pause_at_bytes))
                    })
                    .cloned()
                    .collect();
                let mut resume = TopicPartitionList::new();
                for p in caught_up {
                    telemetry::PartitionPaused {
                        instance: &ctx.instance,
                        topic: &p.0,
                        partition: p.1,
                        waiting_bytes: handles.get_mut(&p.0, p.1).map_or(0, |h| h.inbox.held()),
                        paused: false,
                    }
                    .emit();
                    resume.add_partition(&p.0, p.1);
                    paused.remove(&p);
                }
                if resume.count() > 0 {
                    if let Err(e) = consumer.resume(&resume) {
                        tracing::debug!(error = %e, "resume");
                    }
                }
            }
            message = consumer.recv() => {
                let m = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "request consumer");
                        continue;
                    }
                };
                let (topic, partition) = (m.topic(), m.partition());
                if handles.live(topic, partition).is_none() {
                    spawn(&(topic.to_string(), partition), &mut handles);
                    pause_at_bytes = pause_at(budget, handles.live_count());
                }
                let h = handles.get_mut(topic, partition).expect("spawned");
                // A worker that stopped leaves the record to the
                // partition's next owner.
                if !h.inbox.send(Record::of(&m)) {
                    continue;
                }
                let held = h.inbox.held();
                if held < pause_at_bytes {
                    continue;
                }
                // Partitions revoked since the share was counted leave a
                // larger share to the others.
                pause_at_bytes = pause_at(budget, handles.live_count());
                if held < pause_at_bytes {
                    continue;
                }
                let p = (topic.to_string(), partition);
                if !paused.contains(&p) {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&p.0, p.1);
                    if let Err(e) = consumer.pause(&tpl) {
                        tracing::debug!(error = %e, "pause");
                    }
                    telemetry::PartitionPaused {
                        instance: &ctx.instance,
                        topic: &p.0,
                        partition: p.1,
                        waiting_bytes: held,
                        paused: true,
                    }
                    .emit();
                    paused.insert(p);
                }
            }
        }
    };

    // Stop every worker, let each store what it finished, commit, leave.
    let stops: Vec<WorkerStop> = workers.lock().unwrap().drain().map(|(_, s)| s).collect();
    for s in &stops {
        s.trigger.fire();
    }
    drop(handles);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for s in stops {
        loop {
            if *s.stopped.0.lock().unwrap() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if ctx.exactly_once.is_none() {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
    }
    consumer.unsubscribe();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_paused_at_its_share_of_the_budget_within_bounds() {
        let budget = 64 << 20;
        assert_eq!(pause_at(budget, 8), 8 << 20, "an equal share");
        assert_eq!(pause_at(budget, 0), PAUSE_AT_MOST, "before any worker");
        assert_eq!(
            pause_at(budget, 1),
            PAUSE_AT_MOST,
            "a few seconds of work at most"
        );
        assert_eq!(
            pause_at(budget, 1000),
            PAUSE_AT_LEAST,
            "room for two fetches at least"
        );
        assert_eq!(pause_at(4 << 20, 2), 2 << 20);
        for partitions in 0..200 {
            let at = pause_at(budget, partitions);
            assert!((PAUSE_AT_LEAST..=PAUSE_AT_MOST).contains(&at));
            assert!(
                at * partitions.max(1) <= (budget as usize).max(PAUSE_AT_LEAST * partitions),
                "{partitions} partitions hold no more than the budget, or 2 MiB each"
            );
            assert!(resume_below(at) > 0 && resume_below(at) < at);
        }
    }
}
