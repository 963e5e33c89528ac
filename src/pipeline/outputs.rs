//! What a partition writes: stored requests, failed events, sync replies;
//! and the window that stores a source offset only once every output of
//! that record, and of every record before it, is acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::FutureExt;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// An output record, ready to send.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Why a partition stopped: an output could not be written. Nothing is
/// lost: its source offset was not stored, so the record is read again.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to `{topic}`: {source}")]
pub struct OutputError {
    pub topic: String,
    #[source]
    pub source: KafkaError,
}

struct Pending {
    offset: i64,
    topic: String,
    delivery: Option<DeliveryFuture>,
}

/// Outputs in flight for one source partition, in source order.
pub struct OutputWindow<C: ConsumerContext + 'static> {
    consumer: Arc<StreamConsumer<C>>,
    producer: FutureProducer,
    source_topic: String,
    source_partition: i32,
    pending: VecDeque<Pending>,
    max_in_flight: usize,
}

impl<C: ConsumerContext + 'static> OutputWindow<C> {
    pub fn new(
        consumer: Arc<StreamConsumer<C>>,
        producer: FutureProducer,
        source_topic: &str,
        source_partition: i32,
    ) -> Self {
        OutputWindow {
            consumer,
            producer,
            source_topic: source_topic.to_string(),
            source_partition,
            pending: VecDeque::new(),
            max_in_flight: 1000,
        }
    }

    /// Records that the source record at `offset` is finished once `output`
    /// (if any) is acknowledged.
    pub async fn push(&mut self, offset: i64, output: Option<Output>) -> Result<(), OutputError> {
        let (topic, delivery) = match output {
            Some(o) => (o.topic.clone(), Some(self.enqueue(o).await?)),
            None => (String::new(), None),
        };
        self.pending.push_back(Pending {
            offset,
            topic,
            delivery,
        });
        self.settle_ready()?;
        while self.pending.len() > self.max_in_flight {
            self.settle_front().await?;
        }
        Ok(())
    }

    /// Writes `output` and waits for its acknowledgement, in order with the
    /// outputs already in flight (for outputs that must be durable before
    /// the partition goes on, such as a trigger's failed event).
    pub async fn write_now(&mut self, output: Output) -> Result<(), OutputError> {
        let topic = output.topic.clone();
        let delivery = self.enqueue(output).await?;
        self.drain().await?;
        wait_delivery(&topic, delivery).await
    }

    /// Are outputs still waiting for their acknowledgement?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits until the oldest output in flight is acknowledged, then stores
    /// the offsets of every finished record. Cancel-safe: nothing is taken
    /// from the window until its acknowledgement is in hand, so a partition
    /// whose traffic stops still commits what it finished.
    pub async fn settle(&mut self) -> Result<(), OutputError> {
        if let Some(front) = self.pending.front_mut() {
            if let Some(delivery) = front.delivery.as_mut() {
                let result = delivery.await;
                front.delivery = None;
                check_delivery(&front.topic, result)?;
            }
        }
        self.settle_ready()
    }

    /// Waits for every output in flight and stores their offsets.
    pub async fn drain(&mut self) -> Result<(), OutputError> {
        while !self.pending.is_empty() {
            self.settle_front().await?;
        }
        Ok(())
    }

    async fn enqueue(&mut self, o: Output) -> Result<DeliveryFuture, OutputError> {
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
            for (k, v) in &o.headers {
                headers = headers.insert(KafkaHeader {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&o.topic)
                .payload(o.payload.as_slice())
                .headers(headers);
            if let Some(k) = &o.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = o.partition {
                record = record.partition(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if self.pending.iter().any(|p| p.delivery.is_some()) {
                        self.settle_front().await?;
                    } else {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
                Err((source, _)) => {
                    return Err(OutputError {
                        topic: o.topic.clone(),
                        source,
                    })
                }
            }
        }
    }

    fn settle_ready(&mut self) -> Result<(), OutputError> {
        while let Some(front) = self.pending.front_mut() {
            match &mut front.delivery {
                None => {}
                Some(d) => match d.now_or_never() {
                    None => return Ok(()),
                    Some(result) => check_delivery(&front.topic, result)?,
                },
            }
            let done = self.pending.pop_front().expect("front exists");
            self.store(done.offset);
        }
        Ok(())
    }

    async fn settle_front(&mut self) -> Result<(), OutputError> {
        if let Some(front) = self.pending.pop_front() {
            if let Some(d) = front.delivery {
                wait_delivery(&front.topic, d).await?;
            }
            self.store(front.offset);
        }
        Ok(())
    }

    fn store(&self, offset: i64) {
        if let Err(e) =
            self.consumer
                .store_offset(&self.source_topic, self.source_partition, offset)
        {
            // The partition was taken away: the next owner reads the record again.
            tracing::debug!(topic = %self.source_topic, partition = self.source_partition, offset, error = %e, "offset not stored");
        }
    }
}

type DeliveryOutcome = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

async fn wait_delivery(topic: &str, delivery: DeliveryFuture) -> Result<(), OutputError> {
    check_delivery(topic, delivery.await)
}

fn check_delivery(topic: &str, result: DeliveryOutcome) -> Result<(), OutputError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, _))) => Err(OutputError {
            topic: topic.to_string(),
            source,
        }),
        Err(_) => Err(OutputError {
            topic: topic.to_string(),
            source: KafkaError::Canceled,
        }),
    }
}
