//! The baselines: what a hand-written service would do without sfwd.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sfwd::bindings::{Request, Target};
use tokio::sync::{mpsc, watch};
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
            let request = Request {
                request_id: format!("{input}/{}/{}", m.partition(), m.offset()),
                service: "svc".into(),
                interface: "I".into(),
                operation: "op".into(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: Vec::new(),
            };
            if let Err(f) = target.call(&request).await {
                panic!("naive loop: the target failed: {f:?}");
            }
            let _ = consumer.store_offset(&input, m.partition(), m.offset());
        }
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    });
    Running { stop, task }
}
