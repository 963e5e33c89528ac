//! Producing the requests, and reading how many outputs there are and when
//! they were written.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common;

/// The value of request `i`: its production time in milliseconds since the
/// epoch (13 digits), padded with `x` to `size` bytes.
pub fn value(size: usize) -> Vec<u8> {
    let mut v = format!("{:013}", sfwd::clock::now_ms()).into_bytes();
    v.resize(size.max(13), b'x');
    v
}

/// The production time written by [`value`].
pub fn produced_at(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value.get(..13)?).ok()?.parse().ok()
}

/// A producer for loading request topics fast: sfwd's producer settings,
/// with larger batches.
pub fn loader() -> FutureProducer {
    let mut c = sfwd::kafka::producer_config(&common::client_config());
    c.set("linger.ms", "20")
        .set("max.in.flight.requests.per.connection", "5");
    c.create().expect("loading producer")
}

/// Produces `n` requests of `size` bytes, spread evenly over the
/// partitions, and waits until all are acknowledged. Each has a key of
/// its own, or with `keys`, one of that many keys (`k0`, `k1`, …, in
/// turn), each key on one partition.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partitions: i32,
    n: usize,
    size: usize,
    keys: Option<usize>,
) {
    let mut pending = VecDeque::new();
    for i in 0..n {
        let k = keys.map_or(i, |keys| i % keys.max(1));
        let key = format!("k{k}");
        let payload = value(size);
        let partition = (k % partitions as usize) as i32;
        loop {
            let record = FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(payload.as_slice())
                .partition(partition);
            match producer.send_result(record) {
                Ok(d) => {
                    pending.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(d) => check(d.await),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
        while pending.len() > 50_000 {
            check(pending.pop_front().expect("non-empty").await);
        }
    }
    for d in pending {
        check(d.await);
    }
}

fn check(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) {
    match result {
        Ok(Ok(_)) => {}
        Ok(Err((e, _))) => panic!("a request was not acknowledged: {e}"),
        Err(_) => panic!("a request's delivery was cancelled"),
    }
}

/// Deletes topics, to give the broker its memory back; errors are ignored.
pub async fn delete_topics(names: &[String]) {
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

/// Deletes the records of `topic` a lane is done with, so that the broker's
/// storage does not grow with every repetition (the test broker keeps it
/// in memory, and lists a partition's batches at every fetch): with
/// `group`, those below the offsets the group committed (the consumed part
/// of a backlog, the rest stays for the next run); without, every record
/// (an output topic, counted by its high watermarks, which stay). Returns
/// whether the broker deleted them.
pub async fn trim(topic: &str, partitions: i32, group: Option<&str>) -> bool {
    let (topic_name, group) = (topic.to_string(), group.map(str::to_string));
    let upto = tokio::task::spawn_blocking(move || -> Vec<(i32, i64)> {
        match group {
            None => highs(&topic_name, partitions)
                .into_iter()
                .enumerate()
                .map(|(p, high)| (p as i32, high))
                .collect(),
            Some(group) => {
                let mut c = common::client_config();
                c.set("group.id", &group).set("enable.auto.commit", "false");
                let consumer: BaseConsumer = c.create().expect("offsets reader");
                let mut tpl = rdkafka::TopicPartitionList::new();
                for p in 0..partitions {
                    tpl.add_partition(&topic_name, p);
                }
                let committed = consumer
                    .committed_offsets(tpl, Duration::from_secs(10))
                    .unwrap_or_default();
                committed
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            }
        }
    })
    .await
    .expect("offsets");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, offset) in upto.into_iter().filter(|(_, o)| *o > 0) {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(offset))
            .expect("offset");
    }
    if tpl.count() == 0 {
        return true;
    }
    let admin: AdminClient<DefaultClientContext> =
        common::client_config().create().expect("admin client");
    match admin.delete_records(&tpl, &AdminOptions::new()).await {
        Ok(result) => result.elements().iter().all(|e| e.error().is_ok()),
        Err(_) => false,
    }
}

/// Counts the records of a topic by its high watermarks.
pub struct TopicCount {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl TopicCount {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn new(topic: &str, partitions: i32) -> TopicCount {
        TopicCount {
            consumer: reader(),
            topic: topic.to_string(),
            partitions,
        }
    }

    /// The sum of the high watermarks.
    pub fn count(&self) -> i64 {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// A consumer for metadata and single reads; no group membership.
fn reader() -> BaseConsumer {
    let mut c = common::client_config();
    c.set("group.id", common::unique("bench-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
    c.create().expect("reader")
}

/// The high watermark of every partition of `topic`.
pub fn highs(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = reader();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .collect()
}

/// Waits until `topic` holds at least `n` records beyond `from` (high
/// watermarks, looked at every 50 ms); returns the watermarks then, and
/// the time (ms since the epoch) they were seen.
pub fn wait_outputs(topic: &str, from: &[i64], n: usize, timeout: Duration) -> (Vec<i64>, i64) {
    let consumer = reader();
    let deadline = Instant::now() + timeout;
    loop {
        let now: Vec<i64> = (0..from.len() as i32)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .unwrap_or(0)
            })
            .collect();
        let seen_ms = sfwd::clock::now_ms();
        let added: i64 = now.iter().zip(from).map(|(a, b)| a - b).sum();
        if added >= n as i64 {
            return (now, seen_ms);
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {added} of {n} outputs within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Outputs counted and the times of the first and last of them.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub count: usize,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Span {
    /// Records per second between the first and the last output.
    pub fn rate(&self) -> f64 {
        let ms = (self.last_ms - self.first_ms).max(1) as f64;
        (self.count.saturating_sub(1)) as f64 * 1000.0 / ms
    }

    /// The span of a set of times.
    pub fn of(times: impl IntoIterator<Item = i64>) -> Span {
        let mut span = Span {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        };
        for t in times {
            span.count += 1;
            span.first_ms = span.first_ms.min(t);
            span.last_ms = span.last_ms.max(t);
        }
        span
    }
}
