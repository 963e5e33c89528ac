//! Reading the stored backlogs, the replay progress and the skips from
//! Kafka, from the beginning of each topic to the end it has now.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use super::view::{RecordAt, StoredEntry, StoredView};
use crate::control::ReplayProgress;
use crate::failed::{read_to_end, FailedError, RawRecord};
use crate::kafka::{self, TopicSpec};
use crate::records::{AvroRecord, StoredRequest, StoredSkip};
use crate::topology::Topology;

/// Why the stored backlog could not be read or acted on. Every variant is
/// about the Kafka cluster; retrying helps once it is reachable.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Reading or writing a topic failed.
    #[error(transparent)]
    Kafka(#[from] FailedError),
    /// A control point's stored topic does not exist.
    #[error("topic {topic} does not exist on {bootstrap}: no `sfwd run` of application `{application}` has started on this cluster yet (or --bootstrap points elsewhere)")]
    NoStoredTopic {
        /// The stored topic.
        topic: String,
        /// The application id.
        application: String,
        /// The bootstrap servers used.
        bootstrap: String,
    },
}

/// The stored backlogs of every control point, as read.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// One view per control point read, in topology order.
    pub views: Vec<StoredView>,
    /// The skip marks, in the order they were written.
    pub marks: Vec<StoredSkip>,
}

impl Backlog {
    /// The view of `control_point`, if it was read.
    pub fn view(&self, control_point: &str) -> Option<&StoredView> {
        self.views
            .iter()
            .find(|v| v.control_point() == control_point)
    }
}

impl Backlog {
    /// The stored request `request_id` with its view: the one the replay
    /// has not passed if there is one (a resubmitted copy stored again
    /// keeps the request id), else the last one; and how many stored
    /// requests have this id.
    pub fn find(&self, request_id: &str) -> Option<(&StoredEntry, &StoredView, usize)> {
        let found: Vec<(&StoredEntry, &StoredView)> = self
            .views
            .iter()
            .flat_map(|v| {
                v.entries()
                    .iter()
                    .filter(|e| e.request_id() == request_id)
                    .map(move |e| (e, v))
            })
            .collect();
        let (entry, view) = found
            .iter()
            .find(|(e, _)| !e.replayed)
            .or_else(|| found.last())
            .copied()?;
        Some((entry, view, found.len()))
    }

    /// The known request id closest to `request_id`, for a did-you-mean.
    pub fn closest_id(&self, request_id: &str) -> Option<&str> {
        let ids = self
            .views
            .iter()
            .flat_map(|v| v.entries().iter().map(StoredEntry::request_id));
        crate::topology::did_you_mean(request_id, ids)
    }
}

/// One application's stored backlogs: read them, skip stored requests.
///
/// Reads assign every partition and read it from the beginning to the end
/// it had when the read started, without a consumer group: nothing is
/// committed, any number of readers may run at once, and no `sfwd run`
/// instance needs to be running.
pub struct StoredBacklog {
    pub(super) topology: Topology,
    pub(super) base: ClientConfig,
    pub(super) producer: FutureProducer,
}

static READERS: AtomicU64 = AtomicU64::new(0);

impl StoredBacklog {
    /// A handle on the stored backlogs of `topology`'s application, on the
    /// cluster its `kafka` settings name.
    pub fn new(topology: &Topology) -> Result<StoredBacklog, StoredError> {
        let base = kafka::client_config(&topology.kafka);
        let mut producer_config = kafka::producer_config(&base);
        producer_config.set("enable.idempotence", "true");
        let producer = producer_config
            .create()
            .map_err(|source| FailedError::Kafka {
                what: "creating a producer".into(),
                bootstrap: topology.kafka.bootstrap.clone(),
                source: Box::new(source),
            })?;
        Ok(StoredBacklog {
            topology: topology.clone(),
            base,
            producer,
        })
    }

    pub(super) fn kafka_err(&self, what: impl Into<String>, source: KafkaError) -> StoredError {
        StoredError::Kafka(FailedError::Kafka {
            what: what.into(),
            bootstrap: self.topology.kafka.bootstrap.clone(),
            source: Box::new(source),
        })
    }

    /// Reads the stored topic of each control point named (every control
    /// point of the topology when `control_points` is empty), with the
    /// replay progress and the skips.
    pub async fn load(&self, control_points: &[&str]) -> Result<Backlog, StoredError> {
        let progress = self.read_progress().await?;
        let marks = self.read_marks().await?;
        let names: Vec<String> = self
            .topology
            .control_points()
            .map(|(_, sf)| sf.control_point.clone())
            .filter(|cp| control_points.is_empty() || control_points.contains(&cp.as_str()))
            .collect();
        let mut views = Vec::with_capacity(names.len());
        let marks_only: Vec<StoredSkip> = marks.iter().map(|(_, m)| m.clone()).collect();
        for cp in names {
            let topic = self.topology.stored_topic(&cp);
            let records = self
                .read(&topic)
                .await?
                .ok_or_else(|| StoredError::NoStoredTopic {
                    topic: topic.clone(),
                    application: self.topology.application.clone(),
                    bootstrap: self.topology.kafka.bootstrap.clone(),
                })?;
            let mut bad = 0;
            let mut decoded = Vec::with_capacity(records.len());
            for r in records {
                match r.payload.as_deref().map(StoredRequest::decode) {
                    Some(Ok(request)) => decoded.push((
                        RecordAt {
                            partition: r.partition,
                            offset: r.offset,
                        },
                        request,
                    )),
                    other => {
                        bad += 1;
                        tracing::warn!(topic = %topic, partition = r.partition, offset = r.offset, error = ?other.map(|r| r.err()), "left out an undecodable stored request");
                    }
                }
            }
            let mut view = StoredView::from_records(&cp, &topic, decoded, &progress, &marks_only);
            view.set_undecodable(bad);
            views.push(view);
        }
        Ok(Backlog {
            views,
            marks: marks_only,
        })
    }

    /// The replay progress of every control point and source partition, by
    /// key (`control point/topic/partition`).
    async fn read_progress(&self) -> Result<HashMap<String, ReplayProgress>, StoredError> {
        let topic = self.topology.replay_topic();
        let mut progress: HashMap<String, ReplayProgress> = HashMap::new();
        for r in self.read(&topic).await?.unwrap_or_default() {
            let key = r.key.as_deref().map(String::from_utf8_lossy);
            match (key, r.payload.as_deref().map(serde_json::from_slice)) {
                (Some(k), Some(Ok(p))) => {
                    let p: ReplayProgress = p;
                    let slot = progress.entry(k.into_owned()).or_insert(p);
                    // Progress only moves forward; an older write read
                    // late does not move it back.
                    if p.max_source_offset >= slot.max_source_offset {
                        *slot = p;
                    }
                }
                (k, _) => {
                    tracing::warn!(topic = %topic, partition = r.partition, offset = r.offset, key = ?k, "left out an undecodable replay progress record")
                }
            }
        }
        Ok(progress)
    }

    /// The skip marks in the order they were written, with where each is;
    /// a tombstone removes the marks of its key written before it.
    pub(super) async fn read_marks(&self) -> Result<Vec<(RecordAt, StoredSkip)>, StoredError> {
        let topic = self.topology.skips_topic();
        let mut marks: Vec<(RecordAt, StoredSkip)> = Vec::new();
        let mut records = self.read(&topic).await?.unwrap_or_default();
        records.sort_by_key(|r| (r.partition, r.offset));
        for r in records {
            let at = RecordAt {
                partition: r.partition,
                offset: r.offset,
            };
            match (r.payload.as_deref().map(StoredSkip::decode), &r.key) {
                (Some(Ok(mark)), _) => marks.push((at, mark)),
                (None, Some(key)) => {
                    let key = String::from_utf8_lossy(key);
                    marks.retain(|(_, m)| m.key() != key);
                }
                (other, _) => {
                    tracing::warn!(topic = %topic, partition = r.partition, offset = r.offset, error = ?other.map(|r| r.err()), "left out an undecodable skip mark")
                }
            }
        }
        Ok(marks)
    }

    /// Every record of `topic` up to the end it had at the start, or `None`
    /// if the topic does not exist.
    pub(super) async fn read(&self, topic: &str) -> Result<Option<Vec<RawRecord>>, StoredError> {
        let n = READERS.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.operator.{}.{}.{n}",
            self.topology.application,
            std::process::id(),
            crate::clock::now_ms()
        );
        let config = kafka::reader_config(&self.base, &name, "stored");
        let (t, bootstrap) = (topic.to_string(), self.topology.kafka.bootstrap.clone());
        let read = tokio::task::spawn_blocking(move || read_to_end(config, &t, &bootstrap))
            .await
            .map_err(|e| FailedError::Internal {
                topic: topic.to_string(),
                message: e.to_string(),
            })??;
        Ok(read)
    }

    /// Creates the skips and failed-events topics if they do not exist yet,
    /// as `sfwd run` would.
    pub(super) async fn ensure_topics(&self) -> Result<(), StoredError> {
        let k = &self.topology.kafka;
        let spec = |name: String, partitions: i32, compacted: bool| TopicSpec {
            name,
            partitions,
            replication_factor: i32::from(k.replication_factor),
            compacted,
        };
        let specs = [
            spec(self.topology.skips_topic(), 1, true),
            spec(self.topology.failed_topic(), k.partitions as i32, false),
        ];
        kafka::ensure_topics(&self.base, &specs)
            .await
            .map_err(|e| self.kafka_err(format!("creating {}", self.topology.skips_topic()), e))
    }
}
