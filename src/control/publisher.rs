//! Publishing commands to the commands topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::convert::command_to_record;
use super::machine::{Command, CommandKind};
use crate::records::AvroRecord;

pub use crate::wire::command_partition;

/// Publishes commands on behalf of one instance or operator.
#[derive(Clone)]
pub struct CommandPublisher {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    issuer: String,
    counter: Arc<AtomicU64>,
}

impl CommandPublisher {
    pub fn new(producer: FutureProducer, topic: &str, partitions: i32, issuer: &str) -> Self {
        CommandPublisher {
            producer,
            topic: topic.to_string(),
            partitions,
            issuer: issuer.to_string(),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A publisher for `topic`, with its partition count read from the
    /// cluster (the topic must exist).
    pub fn discover(
        producer: FutureProducer,
        topic: &str,
        issuer: &str,
    ) -> Result<Self, KafkaError> {
        use rdkafka::producer::Producer;
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .filter(|n| *n > 0)
            .ok_or(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ))?;
        Ok(Self::new(producer, topic, partitions, issuer))
    }

    /// Who the commands are from.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A command from this issuer with a fresh id.
    pub fn command(&self, kind: CommandKind, observed_epoch: u64) -> Command {
        let now = crate::clock::now_ms();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Command {
            id: format!("{}-{now}-{n}", self.issuer),
            kind,
            observed_epoch,
            by: self.issuer.clone(),
            at_ms: now,
        }
    }

    /// Publishes `command` for `control_point` and waits for the broker's
    /// acknowledgement.
    pub async fn publish(&self, control_point: &str, command: &Command) -> Result<(), KafkaError> {
        let payload = command_to_record(control_point, command)
            .encode()
            .expect("a command always encodes");
        let record = FutureRecord::to(&self.topic)
            .partition(command_partition(control_point, self.partitions))
            .key(control_point)
            .payload(&payload);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_and_in_range() {
        for n in [1, 3, 12] {
            let p = command_partition("EmployeeDataFromEISSystem", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, command_partition("EmployeeDataFromEISSystem", n));
        }
        // FNV-1a of "a" is 0xe40c292c.
        assert_eq!(
            command_partition("a", 1000),
            (0xe40c_292c_u32 % 1000) as i32
        );
    }
}
