//! The checked topology: what the rest of sfwd runs on. Only
//! [`super::load`] builds one, and only from a file without errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::rules::{RuleSet, TypeTree};

pub use crate::wire::{
    OPERATION_HEADER as DEFAULT_OPERATION_HEADER, REPLY_TO_HEADER, REQUEST_ID_HEADER,
};
/// Default size limit of one request (key + value + headers).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Default bytes of records an instance holds for workers that are behind
/// (`limits.max_waiting_bytes`).
pub const DEFAULT_MAX_WAITING_BYTES: u64 = 64 << 20;
/// The least a partition may hold waiting for its worker before it is
/// paused, whatever its share of `limits.max_waiting_bytes` (2 MiB).
pub const MIN_WAITING_PER_PARTITION: u64 = 2 << 20;
/// Default redelivery bound: records a source partition may take past its
/// last committed offset.
pub const DEFAULT_MAX_UNCOMMITTED_RECORDS: u64 = 1000;
/// Default redelivery bound: how long the oldest record taken past the last
/// committed offset may wait for a commit.
pub const DEFAULT_MAX_UNCOMMITTED_AGE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it was read from.
    pub source: PathBuf,
    /// Application id: consumer group id and prefix of every topic sfwd owns.
    pub application: String,
    pub kafka: KafkaSettings,
    pub limits: Limits,
    /// Built-in exception types plus the ones the file declares.
    pub types: TypeTree,
    /// In file order.
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// Commit outputs and offsets in Kafka transactions.
    pub exactly_once: bool,
    /// Partitions of the topics sfwd creates (stored, failed, control).
    pub partitions: u32,
    pub replication_factor: u16,
    /// Extra librdkafka settings for every client.
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Larger requests go to the failed-events topic as `oversized`.
    pub max_request_bytes: u64,
    /// The redelivery bound, in records: a source partition takes no new
    /// record while this many records it took are not covered by a
    /// successful offset commit.
    pub max_uncommitted_records: u64,
    /// The redelivery bound, in time: a source partition takes no new
    /// record while the oldest record it took past the last successful
    /// offset commit was taken this long ago.
    pub max_uncommitted_age: Duration,
    /// Bytes of records an instance holds for workers that are behind, all
    /// its partitions together: each partition is paused at its share.
    pub max_waiting_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Sync,
    Async,
}

impl Interaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Sync => "sync",
            Interaction::Async => "async",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub binding: Binding,
    /// The effective interaction style (declared, or the binding's default).
    pub interaction: Interaction,
    pub retry: Option<RetryPolicy>,
    pub store_and_forward: Option<StoreAndForward>,
    pub interfaces: Vec<Interface>,
}

impl Service {
    /// Every operation with its interface.
    pub fn operations(&self) -> impl Iterator<Item = (&Interface, &Operation)> {
        self.interfaces
            .iter()
            .flat_map(|i| i.operations.iter().map(move |o| (i, o)))
    }

    /// Every partition of every request topic of this service, each topic
    /// once, given the partition count of each topic (a topic missing
    /// from it has none).
    pub fn source_partitions(
        &self,
        request_partitions: &std::collections::HashMap<String, i32>,
    ) -> Vec<(String, i32)> {
        let mut partitions: Vec<(String, i32)> = Vec::new();
        for (_, op) in self.operations() {
            if partitions.iter().any(|(t, _)| *t == op.topic) {
                continue;
            }
            let n = request_partitions.get(&op.topic).copied().unwrap_or(0);
            partitions.extend((0..n).map(|p| (op.topic.clone(), p)));
        }
        partitions
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Http(HttpBinding),
    Kafka(KafkaBinding),
    /// Another service of this topology.
    Service(String),
}

impl Binding {
    pub fn kind(&self) -> &'static str {
        match self {
            Binding::Http(_) => "http",
            Binding::Kafka(_) => "kafka",
            Binding::Service(_) => "service",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBinding {
    pub url: String,
    pub method: String,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    /// Calls kept out at once per source partition (1: one at a time).
    pub in_flight: u32,
    /// What order the calls of a partition keep.
    pub ordering: Ordering,
    /// Cluster-wide cap on live calls per second, split evenly over the
    /// source partitions of the service; `None`: no cap.
    pub rate: Option<crate::control::Rate>,
}

/// The order an HTTP binding keeps among a partition's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// The partition's order: one call at a time (G4 as written).
    #[default]
    Partition,
    /// Each key's order: calls of different keys overlap, up to
    /// `in_flight`; a call waits for the one before it with the same key.
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBinding {
    pub topic: String,
    /// How long a produce may take before it counts as failed.
    pub timeout: Duration,
    /// Produces kept in flight per source partition: a request is sent
    /// before the delivery reports of the ones before it are in; 1 waits
    /// for each report before the next send.
    pub in_flight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each further failure.
    pub backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAndForward {
    pub control_point: String,
    pub rules: RuleSet,
    pub auto_resume: Option<AutoResume>,
    /// How stored requests are replayed.
    pub replay: ReplayPolicy,
}

/// How a control point's stored requests are replayed (`replay:` in its
/// `store_and_forward` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayPolicy {
    /// Cluster-wide cap on replayed requests per second; `None`: no cap.
    pub rate: Option<crate::control::Rate>,
    /// Slow start: the cap climbs linearly from a tenth to all of it over
    /// this time after the forward (zero: no ramp).
    pub ramp: Duration,
    /// What a 429, or a 503 with `Retry-After`, does during a replay.
    pub on_overload: Overload,
}

/// What an overloaded target's answer does during a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Wait as the answer says (at most [`Overload::MAX_WAIT`]), then send
    /// the same request again; never a trigger.
    #[default]
    BackOff,
    /// Treat it as any other failure: rules decide.
    Fail,
}

impl Overload {
    /// The longest a `Retry-After` is obeyed for at once.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
    /// The wait after a 429 without `Retry-After`.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

    /// How long to wait before sending a replayed request again after
    /// `failure`: `Some` for a 429 (as its `Retry-After` says, or
    /// [`Overload::DEFAULT_WAIT`]) or a 503 with `Retry-After`, at most
    /// [`Overload::MAX_WAIT`]; `None` when rules decide.
    pub fn wait_after(self, failure: &crate::bindings::failure::Failure) -> Option<Duration> {
        use crate::bindings::failure::Failure;
        if self == Overload::Fail {
            return None;
        }
        let Failure::HttpStatus {
            status,
            retry_after_secs,
            ..
        } = failure
        else {
            return None;
        };
        let wait = match (*status, retry_after_secs) {
            (429, None) => Overload::DEFAULT_WAIT,
            (429 | 503, Some(secs)) => Duration::from_secs(u64::from(*secs)),
            _ => return None,
        };
        Some(wait.min(Overload::MAX_WAIT))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overload::BackOff => "back-off",
            Overload::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoResume {
    /// Time between probes while storing.
    pub every: Duration,
    /// URL to probe for an HTTP binding (default: the binding's URL).
    pub probe_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    /// The request topic.
    pub topic: String,
    /// Set on a shared topic: the header whose value (`operation` or
    /// `Interface.operation`) selects this operation.
    pub operation_header: Option<String>,
    /// Sync requests carry a reply topic and are answered, never stored.
    pub interaction: Interaction,
    /// The Avro schema requests must decode with, if declared.
    pub input_schema: Option<InputSchema>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSchema {
    /// As resolved from the topology file's directory.
    pub path: PathBuf,
    /// The schema's canonical JSON.
    pub canonical: String,
    /// The fingerprints a value in single-object encoding may carry: the
    /// Avro specification's, then the ones apache-avro computes from the
    /// file and from `canonical` (what earlier releases compared with).
    pub fingerprints: Vec<u64>,
}

impl Topology {
    /// `<app>.stored.<control point>`
    pub fn stored_topic(&self, control_point: &str) -> String {
        crate::wire::topic(
            &self.application,
            &format!("{}.{control_point}", crate::wire::topics::STORED),
        )
    }

    /// `<app>.failed`
    pub fn failed_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::FAILED)
    }

    /// `<app>.failed-actions`: operators' actions on failed events (compacted).
    pub fn failed_actions_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::FAILED_ACTIONS)
    }

    /// `<app>.control`: the compacted control-point states.
    pub fn control_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::CONTROL)
    }

    /// `<app>.control-commands`: triggers and operator commands.
    pub fn commands_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::COMMANDS)
    }

    /// `<app>.replay`: replay progress per control point and source partition.
    pub fn replay_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::REPLAY)
    }

    /// `<app>.audit`: operators' actions and state changes (one partition,
    /// not compacted).
    pub fn audit_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::AUDIT)
    }

    /// `<app>.skips`: the stored requests operators skipped (compacted).
    pub fn skips_topic(&self) -> String {
        crate::wire::topic(&self.application, crate::wire::topics::SKIPS)
    }

    /// The index in `services` of the service called `name`.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every control point with its service.
    pub fn control_points(&self) -> impl Iterator<Item = (&Service, &StoreAndForward)> {
        self.services
            .iter()
            .filter_map(|s| s.store_and_forward.as_ref().map(|sf| (s, sf)))
    }

    /// The control point named `name`, with its service.
    pub fn control_point(&self, name: &str) -> Option<(&Service, &StoreAndForward)> {
        self.control_points()
            .find(|(_, sf)| sf.control_point == name)
    }

    /// Every distinct request topic, in file order.
    pub fn request_topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = Vec::new();
        for s in &self.services {
            for (_, op) in s.operations() {
                if !topics.contains(&op.topic.as_str()) {
                    topics.push(&op.topic);
                }
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::failure::Failure;

    fn answer(status: u16, retry_after_secs: Option<u16>) -> Failure {
        Failure::HttpStatus {
            method: "POST".into(),
            url: "http://t/".into(),
            status,
            reason: String::new(),
            body: Vec::new(),
            content_type: None,
            retry_after_secs,
        }
    }

    #[test]
    fn an_overloaded_target_is_waited_for_as_it_asks() {
        let b = Overload::BackOff;
        assert_eq!(
            b.wait_after(&answer(429, Some(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            b.wait_after(&answer(429, None)),
            Some(Overload::DEFAULT_WAIT)
        );
        assert_eq!(
            b.wait_after(&answer(503, Some(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            b.wait_after(&answer(503, Some(3600))),
            Some(Overload::MAX_WAIT)
        );
        assert_eq!(b.wait_after(&answer(503, None)), None, "rules decide");
        assert_eq!(b.wait_after(&answer(500, Some(1))), None);
        assert_eq!(Overload::Fail.wait_after(&answer(429, Some(3))), None);
    }
}
