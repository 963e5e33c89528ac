//! The demo's producer: requests at a steady rate, spread over the
//! partitions of the request topic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Sends requests to one topic, request `n` to partition `n mod partitions`
/// with key `emp-n`.
pub struct Traffic {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    next: usize,
    /// Requests acknowledged so far, for progress.
    acked: Arc<AtomicUsize>,
}

impl Traffic {
    /// A producer for `topic` on `bootstrap`.
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Traffic> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .context("creating the demo's producer")?;
        Ok(Traffic {
            producer,
            topic: topic.to_string(),
            partitions,
            next: 0,
            acked: Arc::default(),
        })
    }

    /// Requests acknowledged so far.
    pub fn acked(&self) -> Arc<AtomicUsize> {
        self.acked.clone()
    }

    /// Sends `n` requests at `rate` per second (0: as fast as the producer
    /// takes them) and returns their request ids (`topic/partition/offset`)
    /// once all are acknowledged.
    pub async fn send(&mut self, n: usize, rate: u32) -> anyhow::Result<Vec<String>> {
        let (deliveries, mut acks) = mpsc::unbounded_channel::<DeliveryFuture>();
        let topic = self.topic.clone();
        let acked = self.acked.clone();
        let collector = tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(delivery) = acks.recv().await {
                let d = delivery
                    .await
                    .context("the producer dropped a request")?
                    .map_err(|(e, _)| e)
                    .context("sending a request")?;
                ids.push(format!("{topic}/{}/{}", d.partition, d.offset));
                acked.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(ids)
        });
        let start = Instant::now();
        for i in 0..n {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                tokio::time::sleep_until(due).await;
            }
            let number = self.next;
            self.next += 1;
            let key = format!("emp-{number}");
            let value = format!("{{\"employee\":\"{key}\",\"n\":{number}}}");
            let partition = (number % self.partitions.max(1) as usize) as i32;
            loop {
                let record = FutureRecord::to(&self.topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&value);
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        // The collector only stops on an error, which it returns below.
                        let _ = deliveries.send(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(e).context("sending a request"),
                }
            }
        }
        drop(deliveries);
        collector.await.context("the delivery collector panicked")?
    }
}
