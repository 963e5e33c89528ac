//! Kafka plumbing: client configuration and the topics sfwd owns.
//!
//! Everything that names an rdkafka type lives here or in the tasks that
//! drive consumers (`pipeline`, `control`); the pure modules never do.

mod rebalance;
mod topics;

pub use rebalance::{Assignment, RebalanceContext};
pub use topics::{ensure_topics, partition_count, TopicSpec};

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::topology::KafkaSettings;

/// Base client configuration: bootstrap servers plus the topology's extra
/// librdkafka properties.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    client_config_from(&settings.bootstrap, &settings.properties)
}

/// Base client configuration from parts.
pub fn client_config_from(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Sets a client setting unless the topology's `kafka.properties` already
/// did: the user's librdkafka settings win over sfwd's defaults.
trait OrSet {
    fn or_set(&mut self, key: &str, value: &str) -> &mut Self;
}

impl OrSet for ClientConfig {
    fn or_set(&mut self, key: &str, value: &str) -> &mut Self {
        if self.get(key).is_none() {
            self.set(key, value);
        }
        self
    }
}

/// Producer settings for sfwd's outputs: every write acknowledged by all
/// in-sync replicas, order kept per partition across retries.
pub fn producer_config(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    c.or_set("acks", "all")
        .or_set("max.in.flight.requests.per.connection", "1")
        .or_set("linger.ms", "2")
        .or_set("message.timeout.ms", "30000")
        .or_set("queue.buffering.max.kbytes", "32768");
    c
}

/// Consumer settings for a group member that stores offsets itself after
/// its outputs are acknowledged (at least once: nothing is skipped).
pub fn group_consumer_config(base: &ClientConfig, group: &str, instance: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group)
        .set("client.id", instance)
        // Offsets are stored by sfwd once a record's outputs are acknowledged,
        // and committed from there: not settable, G1 depends on it.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .or_set("auto.commit.interval.ms", "500")
        .or_set("auto.offset.reset", "earliest")
        .or_set("partition.assignment.strategy", "cooperative-sticky")
        .or_set("session.timeout.ms", "10000")
        .or_set("heartbeat.interval.ms", "1000")
        .or_set("queued.max.messages.kbytes", "16384");
    c
}

/// `fetch.wait.max.ms` of the control writer's consumer. The commands
/// topic has as many partitions as the request topics and is nearly always
/// idle, so this consumer sits in long polls all the time. A broker that
/// answers a long poll by reading every partition in rounds until the wait
/// ends (the test broker does, over SQLite) pays for each partition about
/// log2(wait in ms) times per wait: at 10 ms, an idle instance kept such a
/// broker at about 85 % of a core, taken from the data path. On Kafka a long
/// poll ends as soon as a record arrives, so a longer wait adds no latency
/// there; on a polling broker it adds at most half the wait.
pub const COMMANDS_FETCH_WAIT_MS: &str = "50";

/// Consumer settings for the control writer: a group member on the
/// commands topic.
pub fn control_writer_config(base: &ClientConfig, group: &str, instance: &str) -> ClientConfig {
    let mut c = group_consumer_config(base, group, instance);
    c.set("fetch.wait.max.ms", COMMANDS_FETCH_WAIT_MS);
    c
}

/// Consumer settings for the control table's reader (the control topic
/// and replay progress, one partition each). Every instance acts on a new
/// control state when this reader fetches it; on Kafka a long poll returns
/// as soon as a record arrives, and on a broker that polls in rounds (the
/// test broker) a record waits at most about half the wait.
pub fn control_table_config(base: &ClientConfig, instance: &str) -> ClientConfig {
    let mut c = base.clone();
    c.or_set("fetch.wait.max.ms", CONTROL_TABLE_FETCH_WAIT_MS);
    reader_config(&c, instance, "control-table")
}

/// Consumer settings for the reader of the skipped stored requests
/// (`<app>.skips`): as quick to see a new record as the control table's.
pub fn skips_reader_config(base: &ClientConfig, instance: &str) -> ClientConfig {
    let mut c = base.clone();
    c.or_set("fetch.wait.max.ms", CONTROL_TABLE_FETCH_WAIT_MS);
    reader_config(&c, instance, "skips")
}

/// `fetch.wait.max.ms` of the control table's reader.
pub const CONTROL_TABLE_FETCH_WAIT_MS: &str = "100";

/// Consumer settings for a replay's reader of a stored topic partition. It
/// reads a backlog that is all there when it starts, so it gains nothing
/// from short polls once it has fetched to the end; a broker that answers
/// a waiting fetch by reading the partition again and again (as the test
/// broker does) is spared most of that work by a long wait.
pub fn replay_reader_config(base: &ClientConfig, instance: &str) -> ClientConfig {
    let mut c = base.clone();
    c.or_set("fetch.wait.max.ms", "500")
        // Up to one stored partition per source partition replays at once,
        // each with a queue of its own: 4 MiB of prefetch each, fetched
        // 4 MiB at a time (some 16,000 stored requests of 100 bytes), keeps
        // a replay from waiting on round trips to the broker (with 1 MiB it
        // replayed at half the rate) and an instance's memory bounded.
        .or_set("queued.max.messages.kbytes", "4096")
        .or_set("max.partition.fetch.bytes", "4194304");
    reader_config(&c, instance, "replay")
}

/// Consumer settings for reading partitions by `assign()`: no group
/// membership, nothing committed. librdkafka still wants a `group.id`.
pub fn reader_config(base: &ClientConfig, instance: &str, purpose: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", format!("{instance}.{purpose}"))
        .set("client.id", format!("{instance}.{purpose}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .or_set("auto.offset.reset", "earliest")
        .or_set("fetch.wait.max.ms", "10")
        .or_set("queued.max.messages.kbytes", "8192");
    c
}
