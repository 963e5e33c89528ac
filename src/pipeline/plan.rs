//! What the workers share: the instance's clients and the facts of the
//! topology they act on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use super::readers::ReplayReaders;
use super::route::Routes;
use super::PipelineError;
use crate::bindings::Target;
use crate::control::{CommandPublisher, ControlTable};
use crate::stored::Skips;
use crate::topology::Topology;

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
    pub(super) async fn wait_replay_table(&self) -> Result<(), PipelineError> {
        let topic = self.topology.replay_topic();
        let reader: BaseConsumer = self.reader_config.create()?;
        let (_, high) = tokio::task::block_in_place(|| {
            reader.fetch_watermarks(&topic, 0, Duration::from_secs(10))
        })?;
        self.table.wait_position(&topic, 0, high).await;
        Ok(())
    }
}
