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
use crate::topology::{RetryPolicy, Topology};

/// Everything the workers share.
pub struct Context {
    /// The topology as written: the rules a control point matches failures
    /// against, and the settings a partition reads when its worker starts.
    pub topology: Arc<Topology>,
    /// What the pipeline needs to know of the topology, worked out at start.
    pub plan: Plan,
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
    /// Consumer settings for reading by `assign()` (the replay progress
    /// topic's watermarks).
    pub reader_config: ClientConfig,
    /// The reader of the stored topics that replays use.
    pub replay_readers: ReplayReaders,
    /// With `kafka.exactly_once`: the producer settings from which each
    /// partition makes its transactional producer.
    pub exactly_once: Option<ClientConfig>,
}

/// The facts of the topology the pipeline acts on, each worked out once,
/// at start: every service's retry policy and control point, every control
/// point's stored topic and replay, every request topic's services, the
/// topic names the workers write to. The pipeline only reads it.
#[derive(Debug)]
pub struct Plan {
    /// By service index.
    services: Vec<ServicePlan>,
    /// Service index by service name.
    service_indices: HashMap<String, usize>,
    /// By control point.
    control_points: HashMap<String, ControlPointPlan>,
    /// Per control point: how it is replayed, and every source partition of
    /// its service (among which its replay rate is split).
    pub replays: HashMap<String, ReplayPlan>,
    /// By request topic.
    topics: HashMap<String, TopicPlan>,
    /// Every distinct request topic, in file order: what the consumer
    /// subscribes to.
    request_topics: Vec<String>,
    /// `<app>.failed`
    failed_topic: String,
    /// `<app>.replay`
    replay_topic: String,
}

/// What the pipeline knows of one service.
#[derive(Debug)]
pub(super) struct ServicePlan {
    pub(super) name: String,
    pub(super) retry: Option<RetryPolicy>,
    /// Its control point, with store and forward.
    pub(super) control_point: Option<String>,
    /// How many source partitions its requests come from (among which an
    /// HTTP binding's `rate` is split).
    pub(super) source_partitions: usize,
}

/// What the pipeline knows of one control point.
#[derive(Debug)]
pub(super) struct ControlPointPlan {
    /// `<app>.stored.<control point>`
    pub(super) stored_topic: String,
    /// Partition count of the stored topic (at least 1).
    pub(super) stored_partitions: i32,
    /// Index of every service it is the control point of.
    pub(super) services: Vec<usize>,
}

/// What the pipeline knows of one request topic, for each of its
/// partitions.
#[derive(Debug, Default)]
pub(super) struct TopicPlan {
    /// Index of every service with an operation reading it.
    pub(super) services: Vec<usize>,
    /// The control points of those services.
    pub(super) control_points: Vec<String>,
}

impl Plan {
    /// The plan of `topology`, given the partition count of each request
    /// topic and of each control point's stored topic.
    pub fn new(
        topology: &Topology,
        request_partitions: &HashMap<String, i32>,
        stored_partitions: &HashMap<String, i32>,
    ) -> Self {
        let services = topology
            .services
            .iter()
            .map(|s| ServicePlan {
                name: s.name.clone(),
                retry: s.retry,
                control_point: s
                    .store_and_forward
                    .as_ref()
                    .map(|sf| sf.control_point.clone()),
                source_partitions: s.source_partitions(request_partitions).len(),
            })
            .collect();
        let mut service_indices = HashMap::new();
        for (index, service) in topology.services.iter().enumerate() {
            service_indices.entry(service.name.clone()).or_insert(index);
        }
        let mut control_points: HashMap<String, ControlPointPlan> = HashMap::new();
        for (index, service) in topology.services.iter().enumerate() {
            let Some(sf) = &service.store_and_forward else {
                continue;
            };
            let cp = &sf.control_point;
            control_points
                .entry(cp.clone())
                .or_insert_with(|| ControlPointPlan {
                    stored_topic: topology.stored_topic(cp),
                    stored_partitions: stored_partitions.get(cp).copied().unwrap_or(1).max(1),
                    services: Vec::new(),
                })
                .services
                .push(index);
        }
        let request_topics: Vec<String> = topology
            .request_topics()
            .into_iter()
            .map(str::to_string)
            .collect();
        let topics = request_topics
            .iter()
            .map(|topic| {
                let services: Vec<usize> = topology
                    .services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.operations().any(|(_, o)| o.topic == *topic))
                    .map(|(i, _)| i)
                    .collect();
                let control_points = services
                    .iter()
                    .filter_map(|&i| topology.services[i].store_and_forward.as_ref())
                    .map(|sf| sf.control_point.clone())
                    .collect();
                let plan = TopicPlan {
                    services,
                    control_points,
                };
                (topic.clone(), plan)
            })
            .collect();
        Plan {
            services,
            service_indices,
            control_points,
            replays: ReplayPlan::for_topology(topology, request_partitions),
            topics,
            request_topics,
            failed_topic: topology.failed_topic(),
            replay_topic: topology.replay_topic(),
        }
    }

    /// Service `index` (an index into the topology's services).
    pub(super) fn service(&self, index: usize) -> &ServicePlan {
        &self.services[index]
    }

    /// The index of the service named `name`, if the topology has it.
    pub(super) fn service_index(&self, name: &str) -> Option<usize> {
        self.service_indices.get(name).copied()
    }

    /// Control point `cp` of the topology.
    pub(super) fn control_point(&self, cp: &str) -> &ControlPointPlan {
        self.control_points
            .get(cp)
            .expect("a control point of the topology")
    }

    /// Request topic `topic`; a topic no operation reads has no services.
    pub(super) fn topic(&self, topic: &str) -> &TopicPlan {
        static NONE: TopicPlan = TopicPlan {
            services: Vec::new(),
            control_points: Vec::new(),
        };
        self.topics.get(topic).unwrap_or(&NONE)
    }

    pub(super) fn request_topics(&self) -> &[String] {
        &self.request_topics
    }

    pub(super) fn failed_topic(&self) -> &str {
        &self.failed_topic
    }

    pub(super) fn replay_topic(&self) -> &str {
        &self.replay_topic
    }
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
    fn for_topology(
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
        let topic = self.plan.replay_topic();
        let reader: BaseConsumer = self.reader_config.create()?;
        let (_, high) = tokio::task::block_in_place(|| {
            reader.fetch_watermarks(topic, 0, Duration::from_secs(10))
        })?;
        self.table.wait_position(topic, 0, high).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
