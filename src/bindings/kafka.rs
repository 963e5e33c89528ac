//! The Kafka binding: a request is produced to the binding's topic.
//!
//! The record keeps the request's key, value and original headers (in
//! order, duplicates kept), followed by `sfwd-request-id` and
//! `sfwd-operation` (`Interface.operation`); original headers of those two
//! names are left out so each appears once. The partition is chosen by the
//! producer's partitioner from the key.
//!
//! A binding keeps up to `in_flight` produces per source partition on
//! their way (default 1024): [`KafkaTarget::send`] hands a request to the
//! producer and returns its [`Delivery`], and the pipeline settles
//! deliveries in source order. The producer keeps order per partition
//! across retries (`kafka::producer_config`), so sends to one target
//! partition land in the order they were made.
//!
//! The binding's timeout bounds the wait for the delivery report. When it
//! passes, a short metadata request tells an outage from a slow cluster:
//! if no broker can be reached the call fails with code `AllBrokersDown`
//! (librdkafka keeps messages queued while brokers are down instead of
//! failing them), otherwise with `MessageTimedOut`. Either way the message
//! may still be delivered later by the producer (until its
//! `message.timeout.ms`), so a Kafka target sees at-least-once delivery,
//! like any retried produce.
//!
//! A produce error becomes [`Failure::Kafka`] with `code` the
//! [`RDKafkaErrorCode`] name as Rust spells it (`MessageTimedOut`,
//! `UnknownTopicOrPartition`, `MessageSizeTooLarge`, `AllBrokersDown`,
//! `BrokerTransportFailure`, …), `detail` librdkafka's text for the code,
//! and `retriable` true for the Kafka protocol's retriable errors and
//! librdkafka's transient local errors: librdkafka reports delivery errors
//! as bare codes, without its own retriable flag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::failure::Failure;
use super::{Request, Response, OPERATION_HEADER, REQUEST_ID_HEADER};
use crate::topology::KafkaBinding;

/// How long the probe after a delivery timeout waits for a usable broker.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a call waits before sending again when the producer's queue is
/// full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// A Kafka target: requests are produced to its topic through a shared
/// producer.
#[derive(Clone)]
pub struct KafkaTarget {
    /// Shared: each call's [`Delivery`] holds a clone of the target.
    topic: Arc<str>,
    timeout: Duration,
    in_flight: usize,
    producer: FutureProducer,
}

/// Why [`KafkaTarget::send`] did not send.
#[derive(Debug)]
pub enum Sent {
    /// The producer's queue is full: wait for some deliveries, then send
    /// again.
    QueueFull,
    /// The producer refused the record.
    Failed(Box<Failure>),
}

/// A produce on its way: its delivery report, due by the binding's timeout.
pub struct Delivery {
    report: DeliveryFuture,
    deadline: Instant,
    target: KafkaTarget,
}

impl Delivery {
    /// The call's outcome: waits for the delivery report until the
    /// binding's timeout has passed since the send.
    /// Cancel-safe until it returns; not to be awaited again after.
    pub async fn outcome(&mut self) -> Result<Response, Failure> {
        match tokio::time::timeout_at(self.deadline.into(), &mut self.report).await {
            Ok(Ok(Ok(_))) => Ok(Response::default()),
            Ok(Ok(Err((error, _)))) => Err(self.target.failure(&error)),
            // The producer went away with the message (only at shutdown).
            Ok(Err(_canceled)) => Err(self.target.failure(&KafkaError::Canceled)),
            Err(_) => Err(self.target.timed_out().await),
        }
    }
}

impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTarget")
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaTarget {
    /// A target producing to `binding.topic` through `producer`, which the
    /// caller builds (and shares between targets) with `acks=all`.
    pub fn new(binding: &KafkaBinding, producer: FutureProducer) -> KafkaTarget {
        KafkaTarget {
            topic: binding.topic.as_str().into(),
            timeout: binding.timeout,
            in_flight: binding.in_flight.max(1) as usize,
            producer,
        }
    }

    /// Produces the request and waits for its delivery report, at most the
    /// binding's timeout. Success carries no status and an empty body.
    pub async fn call(&self, request: &Request) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.send(request) {
                Ok(mut delivery) => return delivery.outcome().await,
                Err(Sent::QueueFull) if Instant::now() < deadline => {
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err(Sent::QueueFull) => return Err(self.queue_full()),
                Err(Sent::Failed(failure)) => return Err(*failure),
            }
        }
    }

    /// Hands the request to the producer and returns at once; the
    /// [`Delivery`] resolves to the call's outcome. Sends to one target
    /// partition reach it in the order they were made.
    pub fn send(&self, request: &Request) -> Result<Delivery, Sent> {
        let headers = record_headers(request);
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &request.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &request.value {
            record = record.payload(value.as_slice());
        }
        match self.producer.send_result(record) {
            Ok(report) => Ok(Delivery {
                report,
                deadline: Instant::now() + self.timeout,
                target: self.clone(),
            }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(Sent::QueueFull)
            }
            Err((error, _)) => Err(Sent::Failed(Box::new(self.failure(&error)))),
        }
    }

    /// Produces kept in flight per source partition (the binding's
    /// `in_flight`).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn queue_full(&self) -> Failure {
        Failure::Kafka {
            topic: self.topic.to_string(),
            code: format!("{:?}", RDKafkaErrorCode::QueueFull),
            detail: format!(
                "the producer's queue stayed full for {}ms",
                self.timeout.as_millis()
            ),
            retriable: true,
        }
    }

    /// `kafka TOPIC`, for logs.
    pub fn describe(&self) -> String {
        format!("kafka {}", self.topic)
    }

    /// The failure for a delivery report that did not come in time: asks
    /// the cluster for the topic's metadata to tell "no broker reachable"
    /// from "slow".
    async fn timed_out(&self) -> Failure {
        let producer = self.producer.clone();
        let topic = self.topic.to_string();
        let probe = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                .err()
                .and_then(|e| e.rdkafka_error_code())
        })
        .await
        .ok()
        .flatten();
        let within = format!("no delivery report within {}ms", self.timeout.as_millis());
        let (code, detail) = match probe {
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => (
                RDKafkaErrorCode::AllBrokersDown,
                format!("{within}, and no broker reachable"),
            ),
            _ => (RDKafkaErrorCode::MessageTimedOut, within),
        };
        Failure::Kafka {
            topic: self.topic.to_string(),
            code: format!("{code:?}"),
            detail,
            retriable: true,
        }
    }

    fn failure(&self, error: &KafkaError) -> Failure {
        let (code, detail, retriable) = match error.rdkafka_error_code() {
            Some(code) => (format!("{code:?}"), code_text(code), is_retriable(code)),
            None => ("Unknown".to_string(), error.to_string(), false),
        };
        Failure::Kafka {
            topic: self.topic.to_string(),
            code,
            detail,
            retriable,
        }
    }
}

/// The original headers without the two sfwd names, then the sfwd ones.
fn record_headers(request: &Request) -> OwnedHeaders {
    let ours = [REQUEST_ID_HEADER, OPERATION_HEADER];
    let original = request
        .headers
        .iter()
        .filter(|(name, _)| !ours.contains(&name.as_str()));
    let mut headers = OwnedHeaders::new_with_capacity(request.headers.len() + 2);
    for (name, value) in original {
        headers = headers.insert(Header {
            key: name,
            value: value.as_deref(),
        });
    }
    let operation = format!("{}.{}", request.interface, request.operation);
    headers
        .insert(Header {
            key: REQUEST_ID_HEADER,
            value: Some(request.request_id.as_bytes()),
        })
        .insert(Header {
            key: OPERATION_HEADER,
            value: Some(operation.as_bytes()),
        })
}

/// librdkafka's description of a code, without the code name in front.
fn code_text(code: RDKafkaErrorCode) -> String {
    // Display is `Name (description)`.
    let full = code.to_string();
    let name = format!("{code:?} (");
    full.strip_prefix(&name)
        .and_then(|rest| rest.strip_suffix(')'))
        .map(str::to_owned)
        .unwrap_or(full)
}

/// Whether retrying a produce that failed with `code` can succeed: the
/// Kafka protocol's retriable errors (leadership moves, replicas catching
/// up, timeouts, throttling) and librdkafka's transient local errors (no
/// connection, full queue, timeouts).
fn is_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        // librdkafka, local
        BrokerTransportFailure
            | Resolve
            | MessageTimedOut
            | AllBrokersDown
            | OperationTimedOut
            | QueueFull
            | TimedOutQueue
            | WaitCache
            | Retry
            // Kafka protocol
            | InvalidMessage
            | UnknownTopicOrPartition
            | LeaderNotAvailable
            | NotLeaderForPartition
            | RequestTimedOut
            | BrokerNotAvailable
            | ReplicaNotAvailable
            | NetworkException
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | NotController
            | ConcurrentTransactions
            | KafkaStorageError
            | ListenerNotFound
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | OffsetNotAvailable
            | PreferredLeaderNotAvailable
            | EligibleLeadersNotAvailable
            | UnstableOffsetCommit
            | ThrottlingQuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn code_names_are_the_rust_variant_names() {
        for (code, name) in [
            (RDKafkaErrorCode::MessageTimedOut, "MessageTimedOut"),
            (RDKafkaErrorCode::RequestTimedOut, "RequestTimedOut"),
            (
                RDKafkaErrorCode::UnknownTopicOrPartition,
                "UnknownTopicOrPartition",
            ),
            (RDKafkaErrorCode::UnknownTopic, "UnknownTopic"),
            (RDKafkaErrorCode::AllBrokersDown, "AllBrokersDown"),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "BrokerTransportFailure",
            ),
            (RDKafkaErrorCode::MessageSizeTooLarge, "MessageSizeTooLarge"),
            (
                RDKafkaErrorCode::NotLeaderForPartition,
                "NotLeaderForPartition",
            ),
        ] {
            assert_eq!(format!("{code:?}"), name);
        }
    }

    #[test]
    fn code_text_is_the_description_alone() {
        assert_eq!(
            code_text(RDKafkaErrorCode::MessageTimedOut),
            "Local: Message timed out"
        );
        assert_eq!(
            code_text(RDKafkaErrorCode::MessageSizeTooLarge),
            "Broker: Message size too large"
        );
    }

    #[test]
    fn outages_are_retriable_and_bad_messages_are_not() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(is_retriable(code), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::MessageBatchTooLarge,
        ] {
            assert!(!is_retriable(code), "{code:?}");
        }
    }

    #[test]
    fn headers_keep_order_and_duplicates_then_sfwd() {
        let request = Request {
            request_id: "t/0/7".into(),
            service: "s".into(),
            interface: "Orders".into(),
            operation: "create".into(),
            key: None,
            value: None,
            headers: vec![
                ("a".into(), Some(b"1".to_vec())),
                (REQUEST_ID_HEADER.into(), Some(b"t/0/7".to_vec())),
                ("a".into(), Some(b"2".to_vec())),
                ("bin".into(), Some(vec![0, 255])),
                ("none".into(), None),
            ],
        };
        let headers = record_headers(&request);
        let got: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let want: Vec<(String, Option<Vec<u8>>)> = vec![
            ("a".into(), Some(b"1".to_vec())),
            ("a".into(), Some(b"2".to_vec())),
            ("bin".into(), Some(vec![0, 255])),
            ("none".into(), None),
            (REQUEST_ID_HEADER.into(), Some(b"t/0/7".to_vec())),
            (OPERATION_HEADER.into(), Some(b"Orders.create".to_vec())),
        ];
        assert_eq!(got, want);
    }
}
