//! What a partition writes: stored requests, failed events, sync replies;
//! and the window that stores a source offset only once every output of
//! that record, and of every record before it, is acknowledged.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::FutureExt;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

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
    /// With `kafka.exactly_once`: the open transaction.
    txn: Option<Txn>,
}

/// The open transaction of a partition's transactional producer: outputs
/// and the source offset are committed together.
struct Txn {
    /// The last source offset finished in this transaction.
    offset: Option<i64>,
    outputs: usize,
    since: std::time::Instant,
}

/// A transaction is committed after this many outputs or this long.
pub const TXN_OUTPUTS: usize = 500;
const TXN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
const TXN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
            txn: None,
        }
    }

    /// From now on, writes outputs and source offsets together in Kafka
    /// transactions (`kafka.exactly_once`) through `producer`, which must
    /// have a `transactional.id` of its own; initialising it fences any
    /// earlier producer with that id. Call before the first output.
    pub fn make_transactional(&mut self, producer: FutureProducer) -> Result<(), KafkaError> {
        tokio::task::block_in_place(|| {
            producer.init_transactions(TXN_TIMEOUT)?;
            producer.begin_transaction()
        })?;
        self.producer = producer;
        self.txn = Some(Txn {
            offset: None,
            outputs: 0,
            since: std::time::Instant::now(),
        });
        Ok(())
    }

    /// Are outputs written in transactions?
    pub fn is_transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// Writes a bookkeeping record (replay progress) in the open transaction.
    /// Transactional windows only.
    pub async fn write_in_transaction(&mut self, output: Output) -> Result<(), OutputError> {
        // Acknowledged by the transaction's commit.
        drop(self.enqueue(output).await?);
        if let Some(txn) = &mut self.txn {
            txn.outputs += 1;
        }
        Ok(())
    }

    /// Commits the open transaction with the finished source offset, and
    /// opens the next.
    fn commit(&mut self) -> Result<(), OutputError> {
        let Some(txn) = &mut self.txn else {
            return Ok(());
        };
        if txn.offset.is_none() && txn.outputs == 0 {
            txn.since = std::time::Instant::now();
            return Ok(());
        }
        let error = |source| OutputError {
            topic: self.source_topic.clone(),
            source,
        };
        let offset = txn.offset;
        let result = tokio::task::block_in_place(|| -> Result<(), KafkaError> {
            if let Some(offset) = offset {
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset(
                    &self.source_topic,
                    self.source_partition,
                    rdkafka::Offset::Offset(offset + 1),
                )?;
                let group = self
                    .consumer
                    .group_metadata()
                    .ok_or(KafkaError::MessageProduction(RDKafkaErrorCode::State))?;
                self.producer
                    .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
            }
            self.producer.commit_transaction(TXN_TIMEOUT)?;
            self.producer.begin_transaction()
        });
        result.map_err(error)?;
        let txn = self.txn.as_mut().expect("transactional");
        txn.offset = None;
        txn.outputs = 0;
        txn.since = std::time::Instant::now();
        Ok(())
    }

    /// Records that the source record at `offset` is finished once `output`
    /// (if any) is acknowledged.
    pub async fn push(&mut self, offset: i64, output: Option<Output>) -> Result<(), OutputError> {
        if self.txn.is_some() {
            if let Some(o) = output {
                drop(self.enqueue(o).await?);
            }
            let txn = self.txn.as_mut().expect("transactional");
            txn.offset = Some(offset);
            txn.outputs += 1;
            if txn.outputs >= TXN_OUTPUTS || txn.since.elapsed() >= TXN_INTERVAL {
                self.commit()?;
            }
            return Ok(());
        }
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
        if self.txn.is_some() {
            // Acknowledged by the transaction's commit.
            drop(self.enqueue(output).await?);
            return self.commit();
        }
        let topic = output.topic.clone();
        let delivery = self.enqueue(output).await?;
        self.drain().await?;
        wait_delivery(&topic, delivery).await
    }

    /// Are outputs still waiting for their acknowledgement?
    pub fn has_pending(&self) -> bool {
        match &self.txn {
            Some(txn) => txn.offset.is_some() || txn.outputs > 0,
            None => !self.pending.is_empty(),
        }
    }

    /// Waits until the oldest output in flight is acknowledged, then stores
    /// the offsets of every finished record. Cancel-safe: nothing is taken
    /// from the window until its acknowledgement is in hand, so a partition
    /// whose traffic stops still commits what it finished.
    pub async fn settle(&mut self) -> Result<(), OutputError> {
        if let Some(txn) = &self.txn {
            // Cancel-safe too: the commit happens after the wait, at once.
            tokio::time::sleep(TXN_INTERVAL.saturating_sub(txn.since.elapsed())).await;
            return self.commit();
        }
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
        if self.txn.is_some() {
            return self.commit();
        }
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
