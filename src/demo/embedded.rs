//! The pieces a demo runs in its own process: a Kafka-protocol cluster
//! (librdkafka's mock cluster), sfwd's topics on it, and sfwd instances
//! whose control tables it watches.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::control::{Cause, ControlTable, Mode};
use crate::instance::{self, Options};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::topology::Topology;

/// A Kafka-protocol cluster of one broker inside this process, on a
/// loopback port. Its topics must be made with [`Cluster::create_topics`]:
/// it does not implement the CreateTopics API.
pub struct Cluster {
    mock: MockCluster<'static, DefaultProducerContext>,
}

impl Cluster {
    /// Starts the cluster.
    pub fn start() -> anyhow::Result<Cluster> {
        let mock = MockCluster::new(1).context("starting the embedded Kafka cluster")?;
        Ok(Cluster { mock })
    }

    /// Its bootstrap address.
    pub fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    /// Creates every topic `topology` needs, as `sfwd run --create-topics`
    /// would: the request topics and sfwd's own.
    pub fn create_topics(&self, topology: &Topology) -> anyhow::Result<()> {
        let p = topology.kafka.partitions as i32;
        let mut topics = vec![
            (topology.failed_topic(), p),
            (topology.failed_actions_topic(), 1),
            (topology.control_topic(), 1),
            (topology.commands_topic(), p),
            (topology.replay_topic(), 1),
            (topology.skips_topic(), 1),
            (topology.audit_topic(), 1),
        ];
        for (_, sf) in topology.control_points() {
            topics.push((topology.stored_topic(&sf.control_point), p));
        }
        for t in topology.request_topics() {
            topics.push((t.to_string(), p));
        }
        for (name, partitions) in topics {
            self.mock
                .create_topic(&name, partitions, 1)
                .with_context(|| format!("creating topic {name} on the embedded cluster"))?;
        }
        Ok(())
    }
}

/// A change of a control point as one instance's control table saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index of the instance.
    pub instance: usize,
    /// The new mode.
    pub mode: Mode,
    /// FORWARD with a backlog still replaying.
    pub replaying: bool,
    /// The control point's epoch.
    pub epoch: u64,
    /// Why it changed.
    pub cause: Cause,
    /// Who made the change: an instance id, or `operator:<name>`.
    pub by: String,
    /// The request whose failure activated the store, for a trigger.
    pub trigger: Option<String>,
    /// When the change was decided: the time of the command that made it.
    pub since_ms: i64,
    /// When this instance's table held it.
    pub seen_ms: i64,
}

/// Every change seen by every instance, in the order seen.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// One sfwd instance running in this process.
pub struct Instance {
    /// Its instance id.
    pub id: String,
    stop: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts an instance of `topology` and a task that logs each change of
/// `control_point` in its control table to `seen`. Returns once the
/// instance has loaded the control state.
pub async fn start_instance(
    topology: &Topology,
    index: usize,
    id: &str,
    data_dir: PathBuf,
    control_point: &str,
    seen: SeenLog,
) -> anyhow::Result<Instance> {
    let (observer, mut tables) = mpsc::unbounded_channel();
    let (stop, _) = shutdown::channel();
    let options = Options {
        topology: topology.clone(),
        instance_id: id.to_string(),
        data_dir,
        create_request_topics: false,
        admin_listen: None,
        admin_access: Default::default(),
        admin_tls: None,
        table_observer: Some(observer),
    };
    let mut task = tokio::spawn(instance::run(options, stop.clone()));
    let table = tokio::select! {
        table = tables.recv() => table,
        finished = &mut task => {
            finished.context("instance task panicked")?.with_context(|| format!("instance {id}"))?;
            None
        }
    };
    let Some(table) = table else {
        bail!("instance {id} stopped before opening its control table");
    };
    tokio::spawn(watch_table(
        table.clone(),
        index,
        control_point.to_string(),
        seen,
        stop.listener(),
    ));
    tokio::select! {
        _ = table.wait_ready() => {}
        finished = &mut task => {
            finished.context("instance task panicked")?.with_context(|| format!("instance {id}"))?;
            bail!("instance {id} stopped before loading the control state");
        }
    }
    Ok(Instance {
        id: id.to_string(),
        stop,
        task,
    })
}

impl Instance {
    /// True once the instance has stopped (by itself, if not told to).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the instance and waits for it, at most `deadline`.
    pub async fn stop(self, deadline: Duration) -> anyhow::Result<()> {
        self.stop.fire();
        match tokio::time::timeout(deadline, self.task).await {
            Ok(joined) => joined
                .context("instance task panicked")?
                .with_context(|| format!("instance {}", self.id)),
            Err(_) => bail!("instance {} did not stop within {deadline:?}", self.id),
        }
    }
}

/// Logs each change of `control_point` in `table` until `stop` fires.
async fn watch_table(
    table: ControlTable,
    index: usize,
    control_point: String,
    seen: SeenLog,
    mut stop: Shutdown,
) {
    let mut changes = table.subscribe();
    let mut last = None;
    loop {
        let cp = table.get(&control_point);
        let now = crate::clock::now_ms();
        let key = (cp.mode, cp.replaying, cp.epoch);
        if last != Some(key) {
            last = Some(key);
            if cp.epoch > 0 {
                seen.lock().unwrap().push(Seen {
                    instance: index,
                    mode: cp.mode,
                    replaying: cp.replaying,
                    epoch: cp.epoch,
                    cause: cp.cause,
                    by: cp.by.clone(),
                    trigger: cp.trigger.as_ref().map(|t| t.request_id.clone()),
                    since_ms: cp.since_ms,
                    seen_ms: now,
                });
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.wait() => return,
        }
    }
}

/// A consumer for reading topics by `assign()` on the embedded cluster.
pub fn reader(bootstrap: &str, purpose: &str) -> anyhow::Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("sfwd-demo.{purpose}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
    c.create().context("creating a reader")
}

/// The number of records in `topic`: the sum of its partitions' high
/// watermarks (nothing is deleted on the embedded cluster).
pub fn topic_size(reader: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let partitions = partitions(reader, topic)?;
    let mut total = 0;
    for p in 0..partitions {
        total += reader
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .with_context(|| format!("watermarks of {topic}/{p}"))?
            .1;
    }
    Ok(total)
}

fn partitions(reader: &BaseConsumer, topic: &str) -> anyhow::Result<i32> {
    crate::kafka::partition_count(reader, topic, Duration::from_secs(5))?
        .with_context(|| format!("topic {topic} does not exist"))
}

/// Every record of `topic`, read from the beginning to the high watermarks
/// it has when called.
pub fn read_all(reader: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<OwnedMessage>> {
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions(reader, topic)? {
        let (_, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > 0 {
            ends.push((p, high));
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    reader.assign(&tpl)?;
    let total: i64 = ends.iter().map(|(_, h)| h).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < total {
        if std::time::Instant::now() > deadline {
            bail!(
                "reading {topic}: {} of {total} records after 30s",
                out.len()
            );
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let end = ends.iter().find(|(p, _)| *p == m.partition()).map(|e| e.1);
                if end.is_some_and(|end| m.offset() < end) {
                    out.push(m.detach());
                }
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            None => {}
        }
    }
    reader.unassign()?;
    Ok(out)
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system's temporary directory.
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
