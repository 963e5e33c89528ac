//! Reading a topic from its beginning to its current end, and what can
//! go wrong on the way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka;

/// How long a read may go without a record before it gives up.
const STALL: Duration = Duration::from_secs(30);
/// Timeout of one metadata or watermark request.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the failed events could not be read or acted on. Every variant is
/// about the Kafka cluster (unreachable, topic missing, write refused);
/// retrying helps once the cluster is reachable.
#[derive(Debug, thiserror::Error)]
pub enum FailedError {
    /// A Kafka request failed.
    #[error("{what} on {bootstrap}: {source} (is the broker reachable? check --bootstrap / SFWD_BOOTSTRAP and the topology's kafka settings)")]
    Kafka {
        /// What was being done.
        what: String,
        /// The bootstrap servers used.
        bootstrap: String,
        /// What Kafka reported.
        #[source]
        source: Box<KafkaError>,
    },
    /// A topic stopped delivering records before its end.
    #[error("reading {topic} on {bootstrap}: no record for {}s before the end of partition {partition} (offset {high}); the broker may be overloaded, try again", STALL.as_secs())]
    Stalled {
        /// The topic.
        topic: String,
        /// A partition not read to its end.
        partition: i32,
        /// Its end.
        high: i64,
        /// The bootstrap servers used.
        bootstrap: String,
    },
    /// The failed-events topic does not exist.
    #[error("topic {topic} does not exist on {bootstrap}: no `sfwd run` of application `{application}` has started on this cluster yet (or --bootstrap points elsewhere)")]
    NoFailedTopic {
        /// The topic.
        topic: String,
        /// The application id.
        application: String,
        /// The bootstrap servers used.
        bootstrap: String,
    },
    /// A background read task panicked: a bug.
    #[error("internal error while reading {topic}: {message}")]
    Internal {
        /// The topic.
        topic: String,
        /// The panic.
        message: String,
    },
}
/// One record as read.
pub(crate) struct RawRecord {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Option<Vec<u8>>,
}

/// Reads every partition of `topic` from the beginning to the end it has
/// now (blocking). `None` when the topic does not exist.
pub(crate) fn read_to_end(
    config: ClientConfig,
    topic: &str,
    bootstrap: &str,
) -> Result<Option<Vec<RawRecord>>, FailedError> {
    let err = |what: String| {
        move |source| FailedError::Kafka {
            what,
            bootstrap: bootstrap.to_string(),
            source: Box::new(source),
        }
    };
    let consumer: BaseConsumer = config.create().map_err(err("creating a consumer".into()))?;
    let Some(partitions) = kafka::partition_count(&consumer, topic, METADATA_TIMEOUT)
        .map_err(err(format!("reading the metadata of {topic}")))?
    else {
        return Ok(None);
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(err(format!("reading the end of {topic} partition {p}")))?;
        if high > low {
            ends.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(err(format!("assigning {topic} partition {p}")))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(Some(out));
    }
    consumer
        .assign(&assignment)
        .map_err(err(format!("assigning {topic}")))?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let (p, offset) = (m.partition(), m.offset());
                if ends.get(&p).is_some_and(|high| offset < *high) {
                    out.push(RawRecord {
                        partition: p,
                        offset,
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                    });
                }
                if ends.get(&p).is_some_and(|high| offset + 1 >= *high) {
                    ends.remove(&p);
                }
            }
            Some(Err(e)) => {
                tracing::debug!(topic, error = %e, "reading");
            }
            None => {
                // A partition that ends with transaction markers has no
                // record at `high - 1`: its position tells it is read.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(next), Some(high)) =
                            (e.offset(), ends.get(&e.partition()))
                        {
                            if next >= *high {
                                ends.remove(&e.partition());
                            }
                        }
                    }
                }
            }
        }
        if last_progress.elapsed() > STALL {
            let (&partition, &high) = ends.iter().next().expect("not empty");
            return Err(FailedError::Stalled {
                topic: topic.to_string(),
                partition,
                high,
                bootstrap: bootstrap.to_string(),
            });
        }
    }
    Ok(Some(out))
}
