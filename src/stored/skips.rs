//! The stored requests operators skipped, as an instance knows them: the
//! compacted `<app>.skips` topic read from its beginning and followed.
//!
//! A replay asks [`Skips::is_skipped`] of every stored request before it
//! delivers it, after [`Skips::wait_caught_up`] has read every skip written
//! before the replay began.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::records::{skip_key, AvroRecord, SourcePosition, StoredSkip};
use crate::shutdown::Shutdown;

/// Timeout of one metadata or watermark request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the skips could not be read. Every variant but [`SkipsError::Closed`]
/// is about the Kafka cluster; retrying helps once it is reachable.
#[derive(Debug, thiserror::Error)]
pub enum SkipsError {
    /// A Kafka request failed.
    #[error("reading the skipped stored requests from {topic}: {source}")]
    Kafka {
        /// The skips topic.
        topic: String,
        /// What Kafka reported.
        #[source]
        source: KafkaError,
    },
    /// The skips topic does not exist.
    #[error("topic `{0}` does not exist (`sfwd run` creates it)")]
    MissingTopic(String),
    /// The reader stopped (shutdown, or it failed): nothing more is read.
    #[error("the reader of {0} has stopped")]
    Closed(String),
}

/// The skipped stored requests. Cheap to clone.
#[derive(Clone)]
pub struct Skips {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    /// How to reach the topic; `None` for a set no reader feeds.
    config: Option<ClientConfig>,
    /// [`skip_key`]s of the skipped stored requests.
    skipped: RwLock<HashSet<String>>,
    /// Partitions of the topic, once the reader has assigned them.
    partitions: Mutex<Option<i32>>,
    /// Next offset to read, per partition.
    positions: Mutex<HashMap<i32, i64>>,
    /// Bumped whenever the read position moves, and when the reader stops.
    moved: watch::Sender<u64>,
    ready: watch::Sender<bool>,
    closed: AtomicBool,
    /// Asks the cluster for the topic's end, for [`Skips::wait_caught_up`].
    watermarks: Mutex<Option<Arc<BaseConsumer>>>,
}

impl Skips {
    /// An empty set over `topic`, to be filled by [`run_reader`] with a
    /// consumer made from `config` (a reader configuration, see
    /// [`crate::kafka::skips_reader_config`]).
    pub fn new(topic: &str, config: ClientConfig) -> Skips {
        Skips::with_config(topic, Some(config))
    }

    /// A set no reader feeds, filled by [`Skips::apply`]: it is always
    /// caught up (tests, and tools that fill it by hand).
    pub fn in_memory(topic: &str) -> Skips {
        let skips = Skips::with_config(topic, None);
        skips.inner.ready.send_replace(true);
        skips
    }

    fn with_config(topic: &str, config: Option<ClientConfig>) -> Skips {
        Skips {
            inner: Arc::new(Inner {
                topic: topic.to_string(),
                config,
                skipped: RwLock::default(),
                partitions: Mutex::new(None),
                positions: Mutex::default(),
                moved: watch::Sender::new(0),
                ready: watch::Sender::new(false),
                closed: AtomicBool::new(false),
                watermarks: Mutex::new(None),
            }),
        }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Was the stored request `request_id`, consumed at `source`, skipped?
    pub fn is_skipped(&self, request_id: &str, source: &SourcePosition) -> bool {
        self.inner
            .skipped
            .read()
            .unwrap()
            .contains(&skip_key(request_id, source))
    }

    /// How many stored requests are skipped.
    pub fn len(&self) -> usize {
        self.inner.skipped.read().unwrap().len()
    }

    /// No stored request is skipped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one record of the skips topic: a mark under `key`, or a
    /// tombstone (`None`) that removes the key.
    pub fn apply(&self, key: &str, mark: Option<&StoredSkip>) {
        let mut skipped = self.inner.skipped.write().unwrap();
        match mark {
            Some(mark) => {
                if skipped.insert(mark.key()) {
                    tracing::info!(
                        request_id = %mark.request_id,
                        control_point = %mark.control_point,
                        skipped_by = %mark.skipped_by,
                        "stored request skipped: it will not be replayed"
                    );
                }
            }
            None => {
                skipped.remove(key);
            }
        }
    }

    /// Has the reader read the topic to the end it had at start?
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until the reader has read the topic to the end it had at
    /// start.
    pub async fn wait_ready(&self) -> Result<(), SkipsError> {
        let mut moved = self.inner.moved.subscribe();
        loop {
            if self.is_ready() {
                return Ok(());
            }
            self.check_open()?;
            if moved.changed().await.is_err() {
                return Err(self.closed());
            }
        }
    }

    /// Waits until every skip written before this call is read: the
    /// reader's position reaches the end each partition has now.
    pub async fn wait_caught_up(&self) -> Result<(), SkipsError> {
        if self.inner.config.is_none() {
            return Ok(());
        }
        self.wait_ready().await?;
        let partitions = self.inner.partitions.lock().unwrap().unwrap_or(0);
        let consumer = self.watermark_consumer()?;
        let topic = self.inner.topic.clone();
        let ends = tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    consumer
                        .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                        .map(|(_, high)| (p, high))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| self.closed())?
        .map_err(|source| self.kafka_err(source))?;
        let mut moved = self.inner.moved.subscribe();
        loop {
            let behind = {
                let positions = self.inner.positions.lock().unwrap();
                ends.iter()
                    .any(|(p, high)| positions.get(p).copied().unwrap_or(0) < *high)
            };
            if !behind {
                return Ok(());
            }
            self.check_open()?;
            if moved.changed().await.is_err() {
                return Err(self.closed());
            }
        }
    }

    fn watermark_consumer(&self) -> Result<Arc<BaseConsumer>, SkipsError> {
        let mut slot = self.inner.watermarks.lock().unwrap();
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let config = self.inner.config.as_ref().expect("checked by the caller");
        let consumer: Arc<BaseConsumer> =
            Arc::new(config.create().map_err(|source| self.kafka_err(source))?);
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    fn check_open(&self) -> Result<(), SkipsError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(self.closed())
        } else {
            Ok(())
        }
    }

    fn closed(&self) -> SkipsError {
        SkipsError::Closed(self.inner.topic.clone())
    }

    fn kafka_err(&self, source: KafkaError) -> SkipsError {
        SkipsError::Kafka {
            topic: self.inner.topic.clone(),
            source,
        }
    }

    fn advance(&self, partition: i32, next: i64) {
        self.inner.positions.lock().unwrap().insert(partition, next);
        self.inner.moved.send_modify(|v| *v += 1);
    }
}

/// Marks the set closed when the reader ends, however it ends, so that
/// nobody waits for records it will never read.
struct CloseOnDrop(Skips);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.inner.closed.store(true, Ordering::Release);
        self.0.inner.moved.send_modify(|v| *v += 1);
    }
}

/// Reads the skips topic into `skips` from its beginning until shutdown.
pub async fn run_reader(skips: Skips, mut shutdown: Shutdown) -> Result<(), SkipsError> {
    let _close = CloseOnDrop(skips.clone());
    let topic = skips.inner.topic.clone();
    let Some(config) = skips.inner.config.clone() else {
        return Ok(());
    };
    let err = |source| SkipsError::Kafka {
        topic: topic.clone(),
        source,
    };
    let consumer: StreamConsumer = config.create().map_err(err)?;
    let partitions = tokio::task::block_in_place(|| {
        crate::kafka::partition_count(&consumer, &topic, METADATA_TIMEOUT)
    })
    .map_err(err)?
    .ok_or_else(|| SkipsError::MissingTopic(topic.clone()))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (_, high) =
            tokio::task::block_in_place(|| consumer.fetch_watermarks(&topic, p, METADATA_TIMEOUT))
                .map_err(err)?;
        if high > 0 {
            ends.insert(p, high);
        }
        assignment
            .add_partition_offset(&topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&assignment).map_err(err)?;
    *skips.inner.partitions.lock().unwrap() = Some(partitions);
    if ends.is_empty() {
        skips.inner.ready.send_replace(true);
        skips.inner.moved.send_modify(|v| *v += 1);
    }
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.wait() => return Ok(()),
        };
        let m = match message {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(_)) => continue,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "reading the skipped stored requests");
                continue;
            }
        };
        let (partition, offset) = (m.partition(), m.offset());
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        match (key, m.payload().map(StoredSkip::decode)) {
            (_, Some(Ok(mark))) => skips.apply(&mark.key(), Some(&mark)),
            (Some(key), None) => skips.apply(&key, None),
            (key, other) => tracing::error!(
                topic = %topic, partition, offset, key = ?key, error = ?other.map(|r| r.err()),
                "skipped an undecodable record of the skips topic"
            ),
        }
        // Ready is set after the position moves, so a waiter that sees
        // ready also sees every record before the end it had at start.
        skips.advance(partition, offset + 1);
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
            if ends.is_empty() {
                skips.inner.ready.send_replace(true);
                skips.inner.moved.send_modify(|v| *v += 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: &str, offset: i64) -> StoredSkip {
        StoredSkip {
            request_id: id.into(),
            control_point: "Eis".into(),
            source: SourcePosition {
                topic: "hr.get".into(),
                partition: 1,
                offset,
            },
            skip_id: "s-1".into(),
            skipped_by: "operator:ana".into(),
            skipped_at: 1,
        }
    }

    #[tokio::test]
    async fn a_skip_names_one_stored_request_by_id_and_position() {
        let skips = Skips::in_memory("app.skips");
        assert!(skips.is_empty());
        let m = mark("hr.get/1/7", 7);
        skips.apply(&m.key(), Some(&m));
        skips.apply(&m.key(), Some(&m));
        assert_eq!(skips.len(), 1);
        assert!(skips.is_skipped("hr.get/1/7", &m.source));
        // A resubmitted copy keeps the request id, not the position.
        let copy = SourcePosition {
            offset: 30,
            ..m.source.clone()
        };
        assert!(!skips.is_skipped("hr.get/1/7", &copy));
        assert!(!skips.is_skipped("hr.get/1/8", &m.source));
        // A tombstone removes the mark.
        skips.apply(&m.key(), None);
        assert!(!skips.is_skipped("hr.get/1/7", &m.source));
        skips.wait_caught_up().await.unwrap();
    }

    #[tokio::test]
    async fn waiters_are_released_when_the_reader_stops() {
        let skips = Skips::new("app.skips", ClientConfig::new());
        let waiter = tokio::spawn({
            let skips = skips.clone();
            async move { skips.wait_ready().await }
        });
        drop(CloseOnDrop(skips.clone()));
        let result = waiter.await.unwrap();
        assert!(matches!(result, Err(SkipsError::Closed(t)) if t == "app.skips"));
        assert!(matches!(
            skips.wait_caught_up().await,
            Err(SkipsError::Closed(_))
        ));
    }
}
