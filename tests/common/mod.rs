//! Helpers shared by the integration tests that need Kafka.
//!
//! The broker's address comes from `SFWD_TEST_BOOTSTRAP`, which `./dev test`
//! sets after starting a broker on a free loopback port. Every test makes
//! its own topics and groups with a random suffix, so tests can share one
//! broker and run in parallel.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use sfwd::kafka::{ensure_topics, TopicSpec};

/// The test broker's bootstrap address.
pub fn bootstrap() -> String {
    std::env::var("SFWD_TEST_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "this test needs a Kafka broker: run `./dev test`, or start one with \
             `./dev broker` and export the SFWD_TEST_BOOTSTRAP it prints"
        )
    })
}

/// A name no other test uses: `prefix-<random>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n: u64 = (nanos as u64) ^ (std::process::id() as u64).rotate_left(32) ^ counter();
    format!("{prefix}-{:x}", n & 0xffff_ffff_ffff)
}

fn counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static C: AtomicU64 = AtomicU64::new(0);
    C.fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

pub fn client_config() -> ClientConfig {
    client_config_on(&bootstrap())
}

/// Client settings for the broker at `bootstrap` (a test's own broker).
pub fn client_config_on(bootstrap: &str) -> ClientConfig {
    sfwd::kafka::client_config_from(bootstrap, &BTreeMap::new())
}

/// Creates topics with the given partition counts.
pub async fn create_topics(topics: &[(&str, i32)]) {
    create_topics_on(&bootstrap(), topics).await
}

/// Creates topics with the given partition counts on the broker at
/// `bootstrap`.
pub async fn create_topics_on(bootstrap: &str, topics: &[(&str, i32)]) {
    let specs: Vec<TopicSpec> = topics
        .iter()
        .map(|(name, partitions)| TopicSpec {
            name: name.to_string(),
            partitions: *partitions,
            replication_factor: 1,
            compacted: false,
        })
        .collect();
    ensure_topics(&client_config_on(bootstrap), &specs)
        .await
        .expect("create test topics");
}

pub fn producer() -> FutureProducer {
    let mut c = client_config();
    c.set("acks", "all").set("linger.ms", "0");
    c.create().expect("test producer")
}

/// Produces one record and waits for its acknowledgement.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> (i32, i64) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(h);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce test record");
    (delivery.partition, delivery.offset)
}

/// Reads every record of `topic` (all partitions) until at least `min`
/// records were read and the end of every partition is reached, or the
/// deadline passes. Returns what was read, in per-partition order.
pub fn read_topic(topic: &str, min: usize, deadline: Duration) -> Vec<OwnedMessage> {
    let mut c = client_config();
    c.set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create().expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                if out.len() >= min && at_end(&consumer, topic, partitions, &out) {
                    break;
                }
            }
        }
    }
    out
}

fn at_end(consumer: &BaseConsumer, topic: &str, partitions: i32, read: &[OwnedMessage]) -> bool {
    (0..partitions).all(|p| {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .unwrap_or((0, 0));
        let last = read
            .iter()
            .filter(|m| m.partition() == p)
            .map(|m| m.offset() + 1)
            .max()
            .unwrap_or(0);
        last >= high
    })
}

/// The value of header `key` as UTF-8.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub mod admin;
pub mod app;
pub mod broker;
pub mod cli;
pub mod process;
