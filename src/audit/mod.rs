//! The audit trail: every operator action (store, forward, pace, skip,
//! resubmit, discard) and every change of a control point's state, with
//! who, what, when, from where and the result, on the non-compacted
//! `<app>.audit` topic.
//!
//! Three kinds of writers append to it, each at the place it acts: the
//! admin API and the command line record what an operator asked and what
//! came of it (`via` `admin-api`, `cli`); the control writer records each
//! state change it applies, whoever issued the command (`control-writer`),
//! so automatic changes (a trigger, a replay caught up, an automatic
//! resume) are in the trail too. [`history`] reads it back for one control
//! point.
//!
//! Writing an audit event never fails the action it describes: the action
//! has happened by then. A write that Kafka refuses is logged as a warning
//! with the whole event, so the trail can be completed from the logs.

mod history;

pub use history::{history, select, HistoryError};

use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::records::{AuditEvent, AvroRecord};
use crate::topology::Topology;

/// How long one audit write may wait for the broker.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The events of a control point (all when `None`), oldest first, and how
/// many records could not be read.
pub type Trail = (Vec<AuditEvent>, usize);

/// Where audit events go and are read back: the audit topic, or a test
/// double.
pub trait AuditSink: Send + Sync + 'static {
    /// Appends `event` to the trail; never fails the caller.
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()>;

    /// The last `limit` events of `control_point` (all when `None`).
    fn history<'a>(
        &'a self,
        control_point: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Trail, String>>;
}

/// The `<app>.audit` topic, written by one process.
#[derive(Clone)]
pub struct AuditLog {
    producer: FutureProducer,
    topic: String,
    bootstrap: String,
    instance: String,
    /// A consumer configuration for reading the trail back.
    reader: ClientConfig,
}

impl AuditLog {
    /// Writes to `topology`'s audit topic with `producer`, naming
    /// `instance` (an instance id, or `sfwd-cli:user@host`) as the writer;
    /// reads it back with `reader`, a consumer configuration.
    pub fn new(
        producer: FutureProducer,
        topology: &Topology,
        instance: &str,
        reader: ClientConfig,
    ) -> AuditLog {
        AuditLog {
            producer,
            topic: topology.audit_topic(),
            bootstrap: topology.kafka.bootstrap.clone(),
            instance: instance.to_string(),
            reader,
        }
    }

    /// An event of `action` by `actor` through `via` with `result`, now,
    /// written by this process; the optional fields empty.
    pub fn event(&self, action: &str, via: &str, actor: &str, result: &str) -> AuditEvent {
        event(&self.instance, action, via, actor, result)
    }

    /// Appends `event`, waiting for the broker's acknowledgement.
    pub async fn write(&self, event: &AuditEvent) -> Result<(), KafkaError> {
        let payload = event.encode().expect("an audit event always encodes");
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .partition(0)
            .payload(&payload);
        if let Some(cp) = &event.control_point {
            record = record.key(cp.as_str());
        }
        self.producer
            .send(record, WRITE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

impl AuditSink for AuditLog {
    fn history<'a>(
        &'a self,
        control_point: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Trail, String>> {
        Box::pin(async move {
            history(
                self.reader.clone(),
                &self.topic,
                &self.bootstrap,
                control_point,
                limit,
            )
            .await
            .map_err(|e| e.to_string())
        })
    }

    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.write(&event).await {
                tracing::warn!(
                    topic = %self.topic,
                    error = %e,
                    event = ?event,
                    "cannot write an audit event; it is only in this log"
                );
            }
        })
    }
}

/// An event of `action` by `actor` through `via` with `result`, now,
/// written by `instance`; the optional fields empty.
pub fn event(instance: &str, action: &str, via: &str, actor: &str, result: &str) -> AuditEvent {
    AuditEvent {
        at: crate::clock::now_ms(),
        action: action.to_string(),
        control_point: None,
        subject: None,
        command_id: None,
        actor: actor.to_string(),
        via: via.to_string(),
        origin: None,
        instance: instance.to_string(),
        detail: None,
        result: result.to_string(),
        message: None,
    }
}

/// An event as JSON: its fields, and its time also in RFC 3339 (`at_utc`).
pub fn to_json(event: &AuditEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(event).expect("plain data");
    v["at_utc"] = serde_json::Value::String(crate::failed::time::format_utc(event.at));
    v
}

/// `user@host` of this process, for events from the command line.
pub fn user_at_host() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}
