//! The baselines: what a hand-written service would do without sfwd.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sfwd::bindings::{Request, Target};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::common;

/// A baseline running in the background until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops taking records, waits for those in hand, commits, leaves the group.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("baseline task");
    }
}

fn consumer(group: &str, topic: &str) -> Arc<StreamConsumer> {
    let c = sfwd::kafka::group_consumer_config(&common::client_config(), group, "bench");
    let consumer: StreamConsumer = c.create().expect("baseline consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    Arc::new(consumer)
}

/// The bare pipe: consume `input`, produce each record (key, value,
/// headers) to `output`, and store its offset once the copy is
/// acknowledged; sfwd's consumer and producer settings, many records in
/// flight. This is the practical limit of a consume→produce service.
pub fn bare_pipe(group: &str, input: &str, output: &str) -> Running {
    let consumer = consumer(group, input);
    let producer: FutureProducer = sfwd::kafka::producer_config(&common::client_config())
        .create()
        .expect("baseline producer");
    let (stop, mut stopped) = watch::channel(false);
    let (input, output) = (input.to_string(), output.to_string());
    let task = tokio::spawn(async move {
        let (acks_tx, mut acks) = mpsc::unbounded_channel::<(DeliveryFuture, i32, i64)>();
        let settler = {
            let (consumer, input) = (consumer.clone(), input.clone());
            tokio::spawn(async move {
                while let Some((delivery, partition, offset)) = acks.recv().await {
                    match delivery.await {
                        Ok(Ok(_)) => {
                            let _ = consumer.store_offset(&input, partition, offset);
                        }
                        other => panic!("bare pipe: a copy was not acknowledged: {other:?}"),
                    }
                }
            })
        };
        loop {
            let m = tokio::select! {
                _ = stopped.changed() => break,
                m = consumer.recv() => m.expect("bare pipe consumer"),
            };
            let headers = m.headers().map(|h| h.detach());
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&output);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Some(h) = headers {
                record = record.headers(h);
            }
            loop {
                match producer.send_result(record) {
                    Ok(d) => {
                        let _ = acks_tx.send((d, m.partition(), m.offset()));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => panic!("bare pipe: producing: {e}"),
                }
            }
        }
        drop(acks_tx);
        settler.await.expect("settler");
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    });
    Running { stop, task }
}

/// The unordered HTTP fan-out: consume `input` and call the target with up
/// to `in_flight` requests of each partition at once, in whatever order
/// they finish, without regard to keys; a partition's offset is stored as
/// the highest offset answered so far (what a hand-written fan-out does,
/// and why it can lose requests in a crash). The upper bound of a
/// partition's calls at this cap: sfwd's `ordering: key` is measured
/// against it.
pub fn fan_out_http(group: &str, input: &str, target: Target, in_flight: usize) -> Running {
    let consumer = consumer(group, input);
    let (stop, mut stopped) = watch::channel(false);
    let input = input.to_string();
    let task = tokio::spawn(async move {
        // One task per partition, as sfwd has, behind a channel without a
        // bound: a partition at its cap never holds the others back (a
        // fetch brings many records of one partition at once).
        let mut partitions: HashMap<i32, mpsc::UnboundedSender<(Request, i64)>> = HashMap::new();
        let mut tasks = Vec::new();
        loop {
            let m = tokio::select! {
                _ = stopped.changed() => break,
                m = consumer.recv() => m.expect("fan-out consumer"),
            };
            let partition = m.partition();
            let to = partitions.entry(partition).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let calls = Arc::new(Semaphore::new(in_flight));
                tasks.push(tokio::spawn(fan_out_partition(
                    rx,
                    calls,
                    in_flight,
                    target.clone(),
                    consumer.clone(),
                    input.clone(),
                    partition,
                )));
                tx
            });
            let request = bench_request(&input, &m);
            if to.send((request, m.offset())).is_err() {
                break;
            }
        }
        partitions.clear();
        for t in tasks {
            t.await.expect("fan-out partition");
        }
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    });
    Running { stop, task }
}

/// One partition of [`fan_out_http`]: each request in a task of its own,
/// at most `in_flight` at once; returns when its channel closes and every
/// call has ended.
async fn fan_out_partition(
    mut requests: mpsc::UnboundedReceiver<(Request, i64)>,
    calls: Arc<Semaphore>,
    in_flight: usize,
    target: Target,
    consumer: Arc<StreamConsumer>,
    input: String,
    partition: i32,
) {
    let highest = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    while let Some((request, offset)) = requests.recv().await {
        let permit = calls.clone().acquire_owned().await.expect("open semaphore");
        let (target, consumer, input, highest) = (
            target.clone(),
            consumer.clone(),
            input.clone(),
            highest.clone(),
        );
        tokio::spawn(async move {
            if let Err(f) = target.call(&request).await {
                panic!("fan-out: the target failed: {f:?}");
            }
            let before = highest.fetch_max(offset, std::sync::atomic::Ordering::Relaxed);
            if offset > before {
                let _ = consumer.store_offset(&input, partition, offset);
            }
            drop(permit);
        });
    }
    let _ = calls.acquire_many(in_flight as u32).await;
}

/// The request sfwd's binding would make of record `m` of `input`.
fn bench_request(input: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> Request {
    Request {
        request_id: format!("{input}/{}/{}", m.partition(), m.offset()),
        service: "svc".into(),
        interface: "I".into(),
        operation: "op".into(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: Vec::new(),
    }
}

/// The naive HTTP service: consume `input`, call the target with each
/// record and wait for the answer, store the offset, take the next record.
/// One request in flight, as one sfwd instance is one consumer; the same
/// HTTP client as sfwd's binding (`target`).
pub fn naive_http(group: &str, input: &str, target: Target) -> Running {
    let consumer = consumer(group, input);
    let (stop, mut stopped) = watch::channel(false);
    let input = input.to_string();
    let task = tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                _ = stopped.changed() => break,
                m = consumer.recv() => m.expect("naive consumer"),
            };
            let request = bench_request(&input, &m);
            if let Err(f) = target.call(&request).await {
                panic!("naive loop: the target failed: {f:?}");
            }
            let _ = consumer.store_offset(&input, m.partition(), m.offset());
        }
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    });
    Running { stop, task }
}
