//! The readers of the stored topics: one Kafka consumer per instance, with
//! a queue of its own for each stored partition being replayed.
//!
//! Every source partition replays from its own stored partition, and up to
//! one per request partition replay at once. One consumer fetches them all
//! in one request per broker, where a consumer each would send as many
//! fetches (and hold as many connections); each replay reads its
//! partition's queue, so the replays stay independent. A stored partition
//! that is already being read (several source partitions stored in one,
//! when the stored topic has fewer partitions) is read by a consumer of its
//! own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::shutdown::Shutdown;

const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared reader of an instance's replays.
#[derive(Clone)]
pub struct ReplayReaders {
    config: ClientConfig,
    consumer: Arc<StreamConsumer>,
    /// Stored partitions with an open [`ReplayReader`] on the shared
    /// consumer.
    open: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ReplayReaders {
    /// A shared consumer with `config` (a reader configuration, see
    /// `kafka::replay_reader_config`). Its main queue is served by a task
    /// until `stop` fires; it carries no messages, only events.
    pub fn new(config: ClientConfig, mut stop: Shutdown) -> Result<Self, KafkaError> {
        let consumer: Arc<StreamConsumer> = Arc::new(config.create()?);
        let events = consumer.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait() => break,
                    m = events.recv() => match m {
                        Ok(m) => tracing::warn!(topic = m.topic(), partition = m.partition(), "a stored record reached the replay readers' main queue; ignored"),
                        Err(KafkaError::PartitionEOF(_)) => {}
                        Err(e) => tracing::warn!(error = %e, "replay readers"),
                    },
                }
            }
        });
        Ok(ReplayReaders {
            config,
            consumer,
            open: Arc::default(),
        })
    }

    /// The `(low, high)` watermarks of a stored partition. Blocks for a
    /// broker round trip.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        tokio::task::block_in_place(|| {
            self.consumer
                .fetch_watermarks(topic, partition, WATERMARKS_TIMEOUT)
        })
    }

    /// Starts reading `topic`/`partition` at `offset`.
    pub fn open(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<ReplayReader, KafkaError> {
        let key = (topic.to_string(), partition);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        if !self.open.lock().unwrap().insert(key.clone()) {
            let own: StreamConsumer = self.config.create()?;
            own.assign(&tpl)?;
            return Ok(ReplayReader::Own(own));
        }
        let opened = self
            .consumer
            .split_partition_queue(topic, partition)
            .ok_or(KafkaError::Subscription(format!(
                "cannot read {topic} partition {partition} on its own queue"
            )))
            .and_then(|queue| {
                self.consumer.incremental_assign(&tpl)?;
                Ok(queue)
            });
        match opened {
            Ok(queue) => Ok(ReplayReader::Shared {
                queue,
                readers: self.clone(),
                key,
            }),
            Err(e) => {
                self.open.lock().unwrap().remove(&key);
                Err(e)
            }
        }
    }
}

/// One replay's reader of its stored partition; reading stops when it is
/// dropped.
pub enum ReplayReader {
    /// A queue of the shared consumer.
    Shared {
        queue: StreamPartitionQueue<DefaultConsumerContext>,
        readers: ReplayReaders,
        key: (String, i32),
    },
    /// A consumer of its own (the stored partition was already open).
    Own(StreamConsumer),
}

impl ReplayReader {
    /// The next stored record.
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        match self {
            ReplayReader::Shared { queue, .. } => queue.recv().await,
            ReplayReader::Own(consumer) => consumer.recv().await,
        }
    }
}

impl Drop for ReplayReader {
    fn drop(&mut self) {
        if let ReplayReader::Shared { readers, key, .. } = self {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            if let Err(e) = readers.consumer.incremental_unassign(&tpl) {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "replay readers: cannot stop reading a stored partition");
            }
            readers.open.lock().unwrap().remove(key);
        }
    }
}
