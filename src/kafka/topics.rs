//! Creating the topics sfwd writes, and checking the ones it reads.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

/// A topic sfwd needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// `cleanup.policy=compact`: only the latest record per key is kept.
    pub compacted: bool,
}

/// Creates every topic that does not exist yet. Topics that exist are left
/// as they are, and when all exist nothing is asked of the cluster but
/// metadata (so a principal without the right to create topics, or a broker
/// without the CreateTopics API, works with topics made beforehand); a
/// missing topic that cannot be created is an error naming it.
pub async fn ensure_topics(config: &ClientConfig, topics: &[TopicSpec]) -> Result<(), KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let mut config = config.clone();
    // Looking topics up must not create them with the broker's defaults.
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    let existing: HashSet<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.name())
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !existing.contains(t.name.as_str()))
        .map(|t| {
            let topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            );
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

/// The number of partitions of `topic`, or `None` if it does not exist.
pub fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}
