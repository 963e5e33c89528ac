//! Invoking targets.
//!
//! [`Target`] is what the pipeline calls: built once from a topology
//! service's binding (a `service` reference is followed to the binding it
//! ends at), it sends one [`Request`] and returns the target's [`Response`]
//! or a [`failure::Failure`] that [`failure::chain_for`] turns into an
//! exception chain. [`invoke`] adds the service's retry policy.

pub mod failure;
mod http;
mod kafka;
mod retry;

pub use http::{HttpBindingError, HttpTarget, KEY_HEADER};
pub use kafka::{Delivery, KafkaTarget, Sent};
pub use retry::{invoke, retry_after, Invocation, MAX_BACKOFF};

use failure::Failure;

/// Header carrying the request id to the target (HTTP and Kafka).
pub const REQUEST_ID_HEADER: &str = crate::topology::REQUEST_ID_HEADER;
pub use crate::wire::OPERATION_HEADER;
/// On a replayed request that may have reached the target before (value
/// `possible`): a replay interrupted by a crash re-delivers the few
/// requests whose progress was not yet recorded. Targets that must not see
/// a request twice deduplicate these by request id.
pub use crate::wire::REDELIVERY_HEADER;

/// One request on its way to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Stable id: from the incoming id header, or `topic/partition/offset`.
    pub request_id: String,
    pub service: String,
    pub interface: String,
    pub operation: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Original Kafka headers, in order, duplicates kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A successful answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// HTTP status for an HTTP target; `None` for a Kafka target.
    pub status: Option<u16>,
    /// Response body (HTTP), empty for Kafka.
    pub body: Vec<u8>,
    /// Content type of the body, if the target said.
    pub content_type: Option<String>,
}

/// A target the pipeline can invoke.
#[derive(Debug, Clone)]
pub enum Target {
    Http(HttpTarget),
    Kafka(KafkaTarget),
}

impl Target {
    /// Sends one request, once.
    pub async fn call(&self, request: &Request) -> Result<Response, Failure> {
        match self {
            Target::Http(t) => t.call(request).await,
            Target::Kafka(t) => t.call(request).await,
        }
    }

    /// Calls kept out at once per source partition (1: each waits for the
    /// outcome of the one before).
    pub fn in_flight(&self) -> usize {
        match self {
            Target::Http(t) => t.in_flight(),
            Target::Kafka(t) => t.in_flight(),
        }
    }

    /// A short description for logs: `http POST http://…` or `kafka topic`.
    pub fn describe(&self) -> String {
        match self {
            Target::Http(t) => t.describe(),
            Target::Kafka(t) => t.describe(),
        }
    }
}
