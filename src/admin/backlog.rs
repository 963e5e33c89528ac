//! How many stored requests a control point still has to replay, from the
//! stored topic's watermarks and the replay progress in the control table,
//! without reading the stored topic.
//!
//! The requests of source partition `p` are stored in partition
//! `p mod n` of the stored topic, and each source partition's replay
//! records the next stored offset it will read. So in a stored partition,
//! everything from the lowest next offset of the source partitions that
//! map to it up to the high watermark is not yet replayed by all of them:
//! an upper bound of the backlog, exact when one source partition maps to
//! each stored partition, and 0 once every replay has reached the end.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::control::ReplayProgress;
use crate::topology::Topology;

/// Where a control point's requests are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayout {
    /// The stored topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// Every partition of every request topic of the control point's
    /// service.
    pub sources: Vec<(String, i32)>,
}

/// The layout of every control point of `topology`, given the partition
/// counts of the request topics and of the stored topics.
pub fn layouts(
    topology: &Topology,
    request_partitions: &HashMap<String, i32>,
    stored_partitions: &HashMap<String, i32>,
) -> HashMap<String, StoredLayout> {
    topology
        .control_points()
        .map(|(service, sf)| {
            let sources = service.source_partitions(request_partitions);
            let layout = StoredLayout {
                topic: topology.stored_topic(&sf.control_point),
                partitions: stored_partitions
                    .get(&sf.control_point)
                    .copied()
                    .unwrap_or(1)
                    .max(1),
                sources,
            };
            (sf.control_point.clone(), layout)
        })
        .collect()
}

/// The backlog bound of one control point (see the module docs), from the
/// `(low, high)` watermarks of each stored partition and each source
/// partition's replay progress.
pub fn backlog(
    layout: &StoredLayout,
    watermarks: &[(i64, i64)],
    progress: impl Fn(&str, i32) -> ReplayProgress,
) -> u64 {
    let mut total = 0;
    for (stored, (low, high)) in watermarks.iter().enumerate() {
        let from = layout
            .sources
            .iter()
            .filter(|(_, p)| p % layout.partitions == stored as i32)
            .map(|(t, p)| progress(t, *p).next_offset)
            .min();
        if let Some(from) = from {
            total += (high - from.max(*low)).max(0) as u64;
        }
    }
    total
}

/// Reads the watermarks of stored topic partitions.
pub trait StoredOffsets: Send + Sync + 'static {
    /// `(low, high)` of `topic`/`partition`. May block for a broker round
    /// trip.
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), String>;
}

/// [`StoredOffsets`] from the Kafka cluster.
pub struct KafkaOffsets {
    consumer: BaseConsumer,
}

impl KafkaOffsets {
    /// A client for `config` (a reader configuration: no group membership).
    pub fn new(config: &rdkafka::ClientConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(KafkaOffsets {
            consumer: config.create()?,
        })
    }
}

impl StoredOffsets for KafkaOffsets {
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), String> {
        self.consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(2))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress<'a>(next: &'a [(&'a str, i32, i64)]) -> impl Fn(&str, i32) -> ReplayProgress + 'a {
        move |t, p| ReplayProgress {
            next_offset: next
                .iter()
                .find(|(tt, pp, _)| *tt == t && *pp == p)
                .map_or(0, |(_, _, n)| *n),
            ..ReplayProgress::default()
        }
    }

    #[test]
    fn counts_what_the_slowest_replay_of_each_stored_partition_has_left() {
        let layout = StoredLayout {
            topic: "app.stored.Cp".into(),
            partitions: 2,
            sources: vec![
                ("get".into(), 0),
                ("get".into(), 1),
                ("put".into(), 0),
                ("put".into(), 1),
            ],
        };
        // Stored partition 0 holds get/0 and put/0, partition 1 get/1 and put/1.
        let marks = [(0, 10), (0, 7)];
        let p = [("get", 0, 10), ("put", 0, 4), ("get", 1, 7), ("put", 1, 7)];
        assert_eq!(backlog(&layout, &marks, progress(&p)), 6);
        let done = [("get", 0, 10), ("put", 0, 10), ("get", 1, 7), ("put", 1, 7)];
        assert_eq!(backlog(&layout, &marks, progress(&done)), 0);
        // Nothing replayed yet, records before the low watermark deleted.
        assert_eq!(backlog(&layout, &[(3, 10), (0, 7)], progress(&[])), 14);
    }

    #[test]
    fn layouts_list_every_source_partition_once_per_topic() {
        let yaml = r#"
application: app
kafka: { bootstrap: "k:9092", partitions: 3 }
services:
  svc:
    binding: { kafka: { topic: out } }
    store_and_forward: { control_point: Cp }
    interfaces:
      I:
        operations:
          a: { topic: shared, operation_header: op }
          b: { topic: shared, operation_header: op }
          c: { topic: other }
"#;
        let topology = crate::topology::check_str(yaml, std::path::Path::new("t.yaml"))
            .topology
            .expect("valid topology");
        let requests = HashMap::from([("shared".to_string(), 2), ("other".to_string(), 1)]);
        let stored = HashMap::from([("Cp".to_string(), 3)]);
        let l = &layouts(&topology, &requests, &stored)["Cp"];
        assert_eq!(l.topic, "app.stored.Cp");
        assert_eq!(l.partitions, 3);
        assert_eq!(
            l.sources,
            vec![
                ("shared".to_string(), 0),
                ("shared".to_string(), 1),
                ("other".to_string(), 0)
            ]
        );
    }
}
