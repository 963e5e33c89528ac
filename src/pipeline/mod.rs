//! The data path: the consumer group over every request topic, one task per
//! source partition, processed in order, partitions concurrently.
//!
//! The dispatcher owns the consumer: it hands each record to its
//! partition's [`worker`], pausing a partition whose worker is behind. A
//! worker stores a source offset only once the record's outputs, and those
//! of every record before it, are acknowledged; librdkafka commits stored
//! offsets. When partitions are revoked, their workers finish the record in
//! hand and stop before the revocation completes, so the next owner starts
//! after what was finished.
//!
//! Inside a worker: `worker` routes and checks each record and carries out
//! what [`decide`] says of it (store, invoke, fail, trigger), the same
//! pure decisions for live and replayed requests; `in_flight` keeps
//! target calls out without waiting (Kafka produces, HTTP calls with
//! `ordering: key` under the adaptive [`limit`] and the binding's rate,
//! `throttle`) and settles them in source order; `outputs` is the window
//! of writes whose acknowledgements move the source offset; `replay`
//! drains the stored backlog before the next live record, reading it
//! through the instance's shared `readers` and held to its share of the
//! control point's rate by `pacer`; `uncommitted` stops the partition from
//! taking records while offset commits fail, past the redelivery bound.

pub mod decide;
mod in_flight;
pub mod limit;
mod outputs;
mod pacer;
mod readers;
mod replay;
pub mod route;
mod steps;
mod throttle;
mod uncommitted;
mod worker;
mod writes;

pub use replay::redelivery_bound;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use crate::bindings::Target;
use crate::control::{CommandPublisher, ControlTable};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::StoreError;
use crate::stored::{Skips, SkipsError};
use crate::topology::Topology;
pub use outputs::OutputError;
pub use readers::{ReplayReader, ReplayReaders};
use route::Routes;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `kafka.exactly_once` is set and the broker refused a transaction.
    #[error("kafka.exactly_once: cannot use Kafka transactions for {topic}/{partition} (the broker must support them, or set `exactly_once: false`)")]
    Transactions {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    /// The skipped stored requests could not be read before a replay.
    #[error(transparent)]
    Skips(SkipsError),
    /// Shutdown or revocation interrupted a record; it will be read again.
    #[error("stopped")]
    Stopped,
}

impl From<SkipsError> for PipelineError {
    /// A skips reader that stopped means the instance is stopping.
    fn from(e: SkipsError) -> Self {
        match e {
            SkipsError::Closed(_) => PipelineError::Stopped,
            other => PipelineError::Skips(other),
        }
    }
}

/// Everything the workers share.
pub struct Context {
    pub topology: Arc<Topology>,
    pub routes: Routes,
    /// The target of each service, by service index.
    pub targets: Vec<Target>,
    pub table: ControlTable,
    /// The stored requests operators skipped: a replay settles them
    /// without delivering them.
    pub skips: Skips,
    pub publisher: CommandPublisher,
    pub producer: FutureProducer,
    pub instance: String,
    /// Partition count of each control point's stored topic.
    pub stored_partitions: HashMap<String, i32>,
    /// Consumer settings for reading by `assign()` (the replay progress
    /// topic's watermarks).
    pub reader_config: ClientConfig,
    /// The reader of the stored topics that replays use.
    pub replay_readers: ReplayReaders,
    /// With `kafka.exactly_once`: the producer settings from which each
    /// partition makes its transactional producer.
    pub exactly_once: Option<ClientConfig>,
    /// Per control point: how it is replayed, and every source partition of
    /// its service (among which its replay rate is split).
    pub replays: HashMap<String, ReplayPlan>,
    /// By service index: how many source partitions its requests come from
    /// (among which an HTTP binding's `rate` is split).
    pub source_partitions: Vec<usize>,
}

/// How one control point is replayed.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    pub policy: crate::topology::ReplayPolicy,
    pub partitions: Arc<[(String, i32)]>,
}

impl ReplayPlan {
    /// The plan of every control point of `topology`, given the partition
    /// count of each request topic.
    pub fn for_topology(
        topology: &Topology,
        request_partitions: &HashMap<String, i32>,
    ) -> HashMap<String, ReplayPlan> {
        let mut plans = HashMap::new();
        for (service, sf) in topology.control_points() {
            plans.insert(
                sf.control_point.clone(),
                ReplayPlan {
                    policy: sf.replay,
                    partitions: service.source_partitions(request_partitions).into(),
                },
            );
        }
        plans
    }
}

impl Context {
    /// Waits until the local table has read the replay progress topic to its
    /// current end.
    async fn wait_replay_table(&self) -> Result<(), PipelineError> {
        let topic = self.topology.replay_topic();
        let reader: BaseConsumer = self.reader_config.create()?;
        let (_, high) = tokio::task::block_in_place(|| {
            reader.fetch_watermarks(&topic, 0, Duration::from_secs(10))
        })?;
        self.table.wait_position(&topic, 0, high).await;
        Ok(())
    }
}

type Partition = (String, i32);

/// A worker's stop switch and its "stopped" flag.
struct WorkerStop {
    trigger: ShutdownTrigger,
    stopped: Arc<(Mutex<bool>, Condvar)>,
}

/// The consumer context: on revocation, stops the partitions' workers and
/// waits (bounded) until they have stored what they finished.
pub struct PipelineContext {
    workers: Arc<Mutex<HashMap<Partition, WorkerStop>>>,
    assigned: mpsc::UnboundedSender<Vec<Partition>>,
    /// Where every partition's offset commits stand (the redelivery bound).
    commits: Arc<uncommitted::Commits>,
}

impl ClientContext for PipelineContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.commits.observed(&statistics);
        crate::telemetry::ConsumerStatistics::new(&statistics).emit();
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked: Vec<Partition> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let stops: Vec<WorkerStop> = {
                let mut workers = self.workers.lock().unwrap();
                revoked.iter().filter_map(|p| workers.remove(p)).collect()
            };
            for s in &stops {
                s.trigger.fire();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            // Called from the dispatcher's poll: let the runtime move other
            // tasks, the workers among them, off this thread while it waits.
            tokio::task::block_in_place(|| wait_stopped(stops, deadline));
            tracing::info!(partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<Partition> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(partitions = ?assigned, "partitions assigned");
            let _ = self.assigned.send(assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.commits.reported(&result, offsets);
    }
}

/// Asks librdkafka to commit the stored offsets now, without waiting, and
/// to report the result to the consumer context's `commit_callback` as it
/// reports its periodic commits.
///
/// `commit_consumer_state(CommitMode::Async)` would not do: librdkafka
/// reports an asynchronous `rd_kafka_commit` only to an
/// `offset_commit_cb`, which rdkafka does not set (it takes commit results
/// as events of the consumer's queue). Such a commit is silent, and since
/// the periodic commit leaves out the partitions with nothing new stored,
/// a partition whose last stored offset it committed never hears of it:
/// held at the redelivery bound, it waited for ever.
/// `rd_kafka_commit_queue` on the main queue (forwarded to the consumer's
/// queue, which the dispatcher polls) reports the commit, success or
/// failure, per partition, like the periodic ones.
fn commit_reported<C: ClientContext>(client: &rdkafka::client::Client<C>) -> KafkaResult<()> {
    use rdkafka::bindings as rdsys;
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live consumer handle `client` owns.
    // `rd_kafka_queue_get_main` returns a new reference to its main queue;
    // `rd_kafka_commit_queue` copies what it needs (no offsets: the stored
    // ones), keeps its own reference to the queue for the reply, and with a
    // queue given returns at once; the reference taken here is then
    // released.
    let err = unsafe {
        let queue = rdsys::rd_kafka_queue_get_main(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::InvalidArgument,
            ));
        }
        let err =
            rdsys::rd_kafka_commit_queue(rk, std::ptr::null(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        err
    };
    if err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}

/// Waits until every worker has stopped, or the deadline passes.
fn wait_stopped(stops: Vec<WorkerStop>, deadline: std::time::Instant) {
    for s in stops {
        let (lock, cvar) = &*s.stopped;
        let mut done = lock.lock().unwrap();
        while !*done {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!("a revoked partition's worker is still finishing; its next owner may repeat its last record");
                return;
            }
            done = cvar.wait_timeout(done, left).unwrap().0;
        }
    }
}

struct Handle {
    tx: mpsc::Sender<OwnedMessage>,
    /// The worker task; a later worker of the same partition waits for it.
    task: tokio::task::JoinHandle<()>,
    /// Records the worker could not take yet, oldest first.
    overflow: VecDeque<OwnedMessage>,
    /// Bytes held in `overflow` (see [`held_bytes`]).
    overflow_bytes: usize,
}

/// Per-partition queue length of a worker.
const QUEUE: usize = 256;

/// Bytes of records a partition may hold beyond its worker's queue before
/// it is paused. Pausing drops what the consumer has already fetched for
/// the partition, and resuming fetches it again; holding about one fetch
/// (`max.partition.fetch.bytes`, 1 MiB by default) first keeps a slow
/// worker's partition from being fetched many times over.
const OVERFLOW_BYTES: usize = 1 << 20;

/// What a record held in an overflow counts for: its key and value, plus
/// a little for the rest.
fn held_bytes(m: &OwnedMessage) -> usize {
    64 + m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len)
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
    let topics = ctx.topology.request_topics();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, "consuming requests");

    let mut handles: HashMap<Partition, Handle> = HashMap::new();
    // Partitions with records in their overflow, and those of them paused.
    let mut backlogged: HashSet<Partition> = HashSet::new();
    let mut paused: HashSet<Partition> = HashSet::new();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<(Partition, PipelineError)>();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let ask_commit = {
        let consumer = consumer.clone();
        move || -> uncommitted::AskCommit {
            let consumer = consumer.clone();
            Box::new(move || commit_reported(consumer.client()))
        }
    };
    let spawn = |p: &Partition, handles: &mut HashMap<Partition, Handle>| {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (trigger, listener) = shutdown::channel();
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        workers.lock().unwrap().insert(
            p.clone(),
            WorkerStop {
                trigger,
                stopped: stopped.clone(),
            },
        );
        let services: Vec<usize> = (0..ctx.topology.services.len())
            .filter(|&i| {
                ctx.topology.services[i]
                    .operations()
                    .any(|(_, o)| o.topic == p.0)
            })
            .collect();
        let cps: Vec<String> = services
            .iter()
            .map(|&i| &ctx.topology.services[i])
            .filter_map(|s| {
                s.store_and_forward
                    .as_ref()
                    .map(|sf| sf.control_point.clone())
            })
            .collect();
        let worker = worker::Worker {
            ctx: ctx.clone(),
            topic: p.0.clone(),
            partition: p.1,
            window: outputs::OutputWindow::new(consumer.clone(), ctx.producer.clone(), &p.0, p.1),
            needs_replay: cps.iter().cloned().collect(),
            control_points: cps,
            calls: Default::default(),
            throttles: Default::default(),
            delivered_ahead: Default::default(),
            uncommitted: uncommitted::Uncommitted::new(
                &ctx.instance,
                p,
                uncommitted_bound(&ctx, &services),
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
            p.clone(),
            Handle {
                tx,
                task,
                overflow: VecDeque::new(),
                overflow_bytes: 0,
            },
        );
    };

    let result = loop {
        tokio::select! {
            _ = stop.wait() => break Ok(()),
            Some((p, e)) = failed_rx.recv() => {
                tracing::error!(topic = %p.0, partition = p.1, error = %e, "a partition stopped; stopping so that nothing is lost");
                break Err(e);
            }
            Some(assigned) = assigned_rx.recv() => {
                // Start the workers now, so that a partition without new
                // records still replays its stored requests.
                for p in assigned {
                    let live = workers.lock().unwrap().contains_key(&p);
                    if !live {
                        spawn(&p, &mut handles);
                    }
                }
            }
            _ = tick.tick(), if !backlogged.is_empty() => {
                let mut resume = TopicPartitionList::new();
                for p in backlogged.clone() {
                    let Some(h) = handles.get_mut(&p) else {
                        backlogged.remove(&p);
                        paused.remove(&p);
                        continue;
                    };
                    while let Some(m) = h.overflow.pop_front() {
                        let bytes = held_bytes(&m);
                        match h.tx.try_send(m) {
                            Ok(()) => h.overflow_bytes -= bytes,
                            Err(mpsc::error::TrySendError::Full(m)) => {
                                h.overflow.push_front(m);
                                break;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                h.overflow.clear();
                                h.overflow_bytes = 0;
                            }
                        }
                    }
                    if h.overflow.is_empty() {
                        backlogged.remove(&p);
                        if paused.remove(&p) {
                            resume.add_partition(&p.0, p.1);
                        }
                    }
                }
                if resume.count() > 0 {
                    if let Err(e) = consumer.resume(&resume) {
                        tracing::debug!(error = %e, "resume");
                    }
                }
            }
            message = consumer.recv() => {
                let m = match message {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        tracing::warn!(error = %e, "request consumer");
                        continue;
                    }
                };
                let p = (m.topic().to_string(), m.partition());
                let live = workers.lock().unwrap().contains_key(&p);
                if !live {
                    spawn(&p, &mut handles);
                }
                let h = handles.get_mut(&p).expect("spawned");
                let m = if h.overflow.is_empty() {
                    match h.tx.try_send(m) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => continue,
                        Err(mpsc::error::TrySendError::Full(m)) => m,
                    }
                } else {
                    m
                };
                h.overflow_bytes += held_bytes(&m);
                h.overflow.push_back(m);
                backlogged.insert(p.clone());
                if h.overflow_bytes > OVERFLOW_BYTES && !paused.contains(&p) {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&p.0, p.1);
                    if let Err(e) = consumer.pause(&tpl) {
                        tracing::debug!(error = %e, "pause");
                    }
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
    use std::time::Instant;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Offset;

    use super::*;

    /// A commit report: the result, and each partition's offset.
    type Report = (KafkaResult<()>, Vec<(i32, Offset)>);

    /// A consumer context that keeps the commit reports.
    #[derive(Default)]
    struct Reports(Mutex<Vec<Report>>);

    impl ClientContext for Reports {}

    impl ConsumerContext for Reports {
        fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
            let offsets = offsets
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect();
            self.0.lock().unwrap().push((result, offsets));
        }
    }

    /// The commit a partition asks for is reported with what it covered,
    /// as the periodic commits are (here a minute apart, so none comes).
    #[tokio::test(flavor = "multi_thread")]
    async fn an_asked_commit_is_reported_with_the_offsets_it_committed() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("requests", 1, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for i in 0..3 {
            let value = i.to_string();
            producer
                .send(BaseRecord::<(), _>::to("requests").payload(&value))
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let mut config = crate::kafka::group_consumer_config(
            ClientConfig::new().set("bootstrap.servers", &bootstrap),
            "asks",
            "test",
        );
        config.set("auto.commit.interval.ms", "60000");
        let consumer: StreamConsumer<Reports> =
            config.create_with_context(Reports::default()).unwrap();
        consumer.subscribe(&["requests"]).unwrap();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("a record within 30 s")
                .unwrap();
        }
        // The three records done: the next to read is 3.
        consumer.store_offset("requests", 0, 2).unwrap();
        commit_reported(consumer.client()).unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reports = consumer.context().0.lock().unwrap().len();
            if reports > 0 || Instant::now() > deadline {
                break;
            }
            // Serves the consumer's queue, where the report arrives.
            let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        }
        let reports = std::mem::take(&mut *consumer.context().0.lock().unwrap());
        assert_eq!(reports.len(), 1, "one report: {reports:?}");
        let (result, offsets) = &reports[0];
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(offsets, &[(0, Offset::Offset(3))]);
    }
}
