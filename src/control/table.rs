//! Every instance's local copy of the control topic (and of the replay
//! progress topic): read in full, kept in the local store, watched by the
//! pipeline.
//!
//! Both topics are compacted and each key has a single writer, so the latest
//! record of a key is its current value. A record whose fencing token
//! (`writer_generation`) is not higher than the one already held for its key
//! comes from a writer that lost ownership, and is ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::convert::state_from_record;
use super::machine::ControlPoint;
use crate::records::{AvroRecord, ControlStateRecord};
use crate::shutdown::Shutdown;
use crate::store::{Space, Store, StoreError, Write};

/// How far the replay of one source partition's stored requests has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    /// Next offset of the stored partition to read.
    pub next_offset: i64,
    /// Highest source offset already delivered (or failed) from the store;
    /// stored copies at or below it are duplicates, and so are live
    /// records at or below it.
    pub max_source_offset: i64,
    /// The FORWARD epoch whose replay this partition has finished (-1: none).
    pub done_epoch: i64,
    /// A replay was under way when this was written; if it is still set when
    /// a replay starts, the last one was interrupted, and the first records
    /// it re-delivers may have reached the target already.
    #[serde(default)]
    pub open: bool,
    /// The FORWARD epoch whose replay this partition began last (-1:
    /// none), with the stored offset and the time (ms since the Unix
    /// epoch) it began at: what progress and rates are counted from.
    #[serde(default = "none")]
    pub started_epoch: i64,
    #[serde(default)]
    pub started_offset: i64,
    #[serde(default)]
    pub started_ms: i64,
}

fn none() -> i64 {
    -1
}

impl Default for ReplayProgress {
    fn default() -> Self {
        ReplayProgress {
            next_offset: 0,
            max_source_offset: -1,
            done_epoch: -1,
            open: false,
            started_epoch: -1,
            started_offset: 0,
            started_ms: 0,
        }
    }
}

impl ReplayProgress {
    /// Progress only moves forward: delivered source offsets, stored offsets
    /// and finished epochs all grow. A record that is behind the one held is
    /// an older write read late (or a lost writer's) and is ignored.
    fn order(&self) -> (i64, i64, i64) {
        (self.max_source_offset, self.next_offset, self.done_epoch)
    }
}

/// Key of a replay progress record.
pub fn replay_key(control_point: &str, topic: &str, partition: i32) -> String {
    format!("{control_point}/{topic}/{partition}")
}

#[derive(Debug, Clone)]
struct Entry {
    state: ControlPoint,
    generation: i64,
}

/// The control points' states as this instance knows them. Cheap to clone.
#[derive(Clone)]
pub struct ControlTable {
    inner: Arc<Inner>,
}

struct Inner {
    control_topic: String,
    replay_topic: String,
    states: RwLock<HashMap<String, Entry>>,
    /// The fencing token of the last record read for each key, accepted or
    /// not: what compaction will keep.
    last_seen: RwLock<HashMap<String, i64>>,
    replay: RwLock<HashMap<String, ReplayProgress>>,
    /// Next offset to read per (topic, partition).
    positions: Mutex<HashMap<(String, i32), i64>>,
    store: Arc<dyn Store>,
    /// Bumped on every state change.
    states_changed: watch::Sender<u64>,
    /// Bumped whenever the read position moves.
    moved: watch::Sender<u64>,
    ready: watch::Sender<bool>,
}

impl ControlTable {
    /// A table over `store`, with what it held from the last run.
    pub fn open(
        store: Arc<dyn Store>,
        control_topic: &str,
        replay_topic: &str,
    ) -> Result<Self, StoreError> {
        let mut states = HashMap::new();
        for (_, value) in store.scan(Space::ControlStates)? {
            if let Ok(record) = ControlStateRecord::decode(&value) {
                let (state, generation) = state_from_record(record);
                states.insert(state.name.clone(), Entry { state, generation });
            }
        }
        let mut replay = HashMap::new();
        for (key, value) in store.scan(Space::Replay)? {
            if let (Ok(k), Ok(v)) = (String::from_utf8(key), serde_json::from_slice(&value)) {
                replay.insert(k, v);
            }
        }
        let mut positions = HashMap::new();
        for (key, value) in store.scan(Space::TableOffsets)? {
            let key = String::from_utf8_lossy(&key).into_owned();
            if let (Some((topic, partition)), Ok(bytes)) =
                (key.rsplit_once('/'), <[u8; 8]>::try_from(value.as_slice()))
            {
                if let Ok(p) = partition.parse() {
                    positions.insert((topic.to_string(), p), i64::from_be_bytes(bytes));
                }
            }
        }
        Ok(ControlTable {
            inner: Arc::new(Inner {
                control_topic: control_topic.to_string(),
                replay_topic: replay_topic.to_string(),
                states: RwLock::new(states),
                last_seen: RwLock::default(),
                replay: RwLock::new(replay),
                positions: Mutex::new(positions),
                store,
                states_changed: watch::Sender::new(0),
                moved: watch::Sender::new(0),
                ready: watch::Sender::new(false),
            }),
        })
    }

    /// The state of a control point (FORWARD at epoch 0 if never changed).
    pub fn get(&self, control_point: &str) -> ControlPoint {
        self.inner
            .states
            .read()
            .unwrap()
            .get(control_point)
            .map(|e| e.state.clone())
            .unwrap_or_else(|| ControlPoint::initial(control_point))
    }

    /// The state and its fencing token, if the control point was ever written.
    pub fn get_with_generation(&self, control_point: &str) -> Option<(ControlPoint, i64)> {
        self.inner
            .states
            .read()
            .unwrap()
            .get(control_point)
            .map(|e| (e.state.clone(), e.generation))
    }

    /// The fencing token of the last record read for `control_point`,
    /// whether it was accepted or not.
    pub fn last_seen_generation(&self, control_point: &str) -> Option<i64> {
        self.inner
            .last_seen
            .read()
            .unwrap()
            .get(control_point)
            .copied()
    }

    /// The next offset the table will read of `topic`/`partition`.
    pub fn read_position(&self, topic: &str, partition: i32) -> i64 {
        self.position(topic, partition)
    }

    /// Every control point ever written.
    pub fn all(&self) -> Vec<ControlPoint> {
        let mut all: Vec<_> = self
            .inner
            .states
            .read()
            .unwrap()
            .values()
            .map(|e| e.state.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn replay_progress(&self, key: &str) -> ReplayProgress {
        self.inner
            .replay
            .read()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Whether source partition `topic`/`partition` has finished the replay
    /// of control point `state` at its current epoch.
    pub fn replay_finished(&self, state: &ControlPoint, topic: &str, partition: i32) -> bool {
        self.replay_progress(&replay_key(&state.name, topic, partition))
            .done_epoch
            >= state.epoch as i64
    }

    /// Every replay progress record whose key starts with `prefix`.
    pub fn replay_progress_with_prefix(&self, prefix: &str) -> Vec<(String, ReplayProgress)> {
        self.inner
            .replay
            .read()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Notified on every state change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.states_changed.subscribe()
    }

    /// Has the table read both topics to the end they had at start?
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Marks the table loaded, for a table that no reader feeds (tests and
    /// tools that fill it by hand).
    pub fn mark_ready(&self) {
        self.inner.ready.send_replace(true);
    }

    /// Waits until the table has read both topics to the end they had when
    /// this instance started.
    pub async fn wait_ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Waits until the table has read `topic`/`partition` up to `offset`
    /// (exclusive).
    pub async fn wait_position(&self, topic: &str, partition: i32, offset: i64) {
        let mut rx = self.inner.moved.subscribe();
        loop {
            if self.position(topic, partition) >= offset {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn position(&self, topic: &str, partition: i32) -> i64 {
        self.inner
            .positions
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// Applies one record of the control topic. Returns whether the state
    /// changed (a stale or repeated record changes nothing).
    pub fn apply_state(&self, record: ControlStateRecord) -> Result<bool, StoreError> {
        let bytes = record.encode().ok();
        let (state, generation) = state_from_record(record);
        self.inner
            .last_seen
            .write()
            .unwrap()
            .insert(state.name.clone(), generation);
        let mut states = self.inner.states.write().unwrap();
        if let Some(current) = states.get(&state.name) {
            if generation <= current.generation {
                if generation < current.generation {
                    tracing::warn!(
                        control_point = %state.name,
                        generation,
                        current = current.generation,
                        "ignored a control state from a writer that lost ownership"
                    );
                }
                return Ok(false);
            }
        }
        if let Some(bytes) = bytes {
            self.inner
                .store
                .put(Space::ControlStates, state.name.as_bytes(), &bytes)?;
        }
        tracing::info!(
            control_point = %state.name,
            mode = %state.mode,
            replaying = state.replaying,
            epoch = state.epoch,
            lag_ms = crate::clock::now_ms() - state.since_ms,
            "control state applied"
        );
        states.insert(state.name.clone(), Entry { state, generation });
        drop(states);
        self.inner.states_changed.send_modify(|v| *v += 1);
        Ok(true)
    }

    /// Applies one record of the replay progress topic, unless it is behind
    /// the progress already held for its key.
    pub fn apply_replay(&self, key: &str, progress: ReplayProgress) -> Result<(), StoreError> {
        let mut replay = self.inner.replay.write().unwrap();
        if replay
            .get(key)
            .is_some_and(|held| progress.order() < held.order())
        {
            return Ok(());
        }
        self.inner.store.put(
            Space::Replay,
            key.as_bytes(),
            &serde_json::to_vec(&progress).expect("plain struct"),
        )?;
        replay.insert(key.to_string(), progress);
        Ok(())
    }

    fn advance(&self, topic: &str, partition: i32, next: i64) -> Result<(), StoreError> {
        {
            let mut positions = self.inner.positions.lock().unwrap();
            let slot = positions.entry((topic.to_string(), partition)).or_insert(0);
            if next <= *slot {
                return Ok(());
            }
            *slot = next;
        }
        self.inner.store.write(vec![Write::Put {
            space: Space::TableOffsets,
            key: format!("{topic}/{partition}").into_bytes(),
            value: next.to_be_bytes().to_vec(),
        }])?;
        self.inner.moved.send_modify(|v| *v += 1);
        Ok(())
    }
}

/// Why the table reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("reading the control topics: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("topic `{0}` does not exist")]
    MissingTopic(String),
}

/// Reads the control and replay topics into `table` until shutdown.
/// The table becomes ready once both are read to the end they had at start.
pub async fn run_reader(
    config: ClientConfig,
    table: ControlTable,
    mut shutdown: Shutdown,
) -> Result<(), TableError> {
    let consumer: StreamConsumer = config.create()?;
    let topics = [
        table.inner.control_topic.clone(),
        table.inner.replay_topic.clone(),
    ];
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in &topics {
        let partitions = crate::kafka::partition_count(&consumer, topic, Duration::from_secs(10))?
            .ok_or_else(|| TableError::MissingTopic(topic.clone()))?;
        for p in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            let from = table.position(topic, p);
            if from < high {
                ends.insert((topic.clone(), p), high);
            }
            let offset = if from > 0 {
                Offset::Offset(from)
            } else {
                Offset::Beginning
            };
            assignment.add_partition_offset(topic, p, offset)?;
        }
    }
    consumer.assign(&assignment)?;
    if ends.is_empty() {
        table.inner.ready.send_replace(true);
    }
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.wait() => return Ok(()),
        };
        match message {
            Ok(m) => {
                let topic = m.topic().to_string();
                let (partition, offset) = (m.partition(), m.offset());
                if topic == table.inner.control_topic {
                    match m.payload().map(ControlStateRecord::decode) {
                        Some(Ok(record)) => {
                            table.apply_state(record)?;
                        }
                        Some(Err(e)) => tracing::error!(
                            topic, partition, offset, error = %e,
                            "skipped an undecodable control state record"
                        ),
                        None => {}
                    }
                } else {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    match (
                        key,
                        m.payload().map(serde_json::from_slice::<ReplayProgress>),
                    ) {
                        (Some(k), Some(Ok(p))) => table.apply_replay(&k, p)?,
                        (k, _) => tracing::error!(
                            topic, partition, offset, key = ?k,
                            "skipped an undecodable replay progress record"
                        ),
                    }
                }
                table.advance(&topic, partition, offset + 1)?;
                if ends
                    .get(&(topic.clone(), partition))
                    .is_some_and(|end| offset + 1 >= *end)
                {
                    ends.remove(&(topic, partition));
                    if ends.is_empty() {
                        table.inner.ready.send_replace(true);
                    }
                }
            }
            Err(KafkaError::PartitionEOF(_)) => {}
            Err(e) => tracing::warn!(error = %e, "control topics reader"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn replay_progress_never_moves_back() {
        let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
        let at = |max: i64, next: i64, done: i64| ReplayProgress {
            next_offset: next,
            max_source_offset: max,
            done_epoch: done,
            open: done < 0,
            ..ReplayProgress::default()
        };
        table.apply_replay("cp/t/0", at(10, 20, -1)).unwrap();
        table.apply_replay("cp/t/0", at(4, 8, -1)).unwrap();
        assert_eq!(table.replay_progress("cp/t/0"), at(10, 20, -1));
        table.apply_replay("cp/t/0", at(10, 25, 2)).unwrap();
        table.apply_replay("cp/t/0", at(10, 20, -1)).unwrap();
        assert_eq!(table.replay_progress("cp/t/0"), at(10, 25, 2));
        // Unknown keys read as nothing replayed.
        assert_eq!(table.replay_progress("cp/t/1"), ReplayProgress::default());
    }

    #[test]
    fn a_state_from_a_writer_that_lost_ownership_is_ignored() {
        let table = ControlTable::open(Arc::new(MemoryStore::default()), "c", "r").unwrap();
        let mut cp = ControlPoint::initial("cp");
        cp.mode = crate::control::Mode::Store;
        cp.epoch = 1;
        assert!(table
            .apply_state(super::super::convert::state_to_record(&cp, 7))
            .unwrap());
        let mut stale = ControlPoint::initial("cp");
        stale.epoch = 1;
        assert!(!table
            .apply_state(super::super::convert::state_to_record(&stale, 5))
            .unwrap());
        assert!(!table
            .apply_state(super::super::convert::state_to_record(&stale, 7))
            .unwrap());
        assert_eq!(table.get("cp").mode, crate::control::Mode::Store);
    }
}
