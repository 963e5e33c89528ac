//! When the instances' consumer groups last changed, read from the log
//! events the instances emit in this process.
//!
//! The demo takes the target down only once the groups have settled, so
//! that the outage meets every instance at work rather than a rebalance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};

/// The log messages that mark a change of an instance's partitions: in the
/// request group (the pipeline) and in the control-writer group.
const MESSAGES: [&str; 3] = [
    "partitions assigned",
    "partitions revoked",
    "control writer owns command partitions",
];

/// A [`Layer`] that notes the time of the last rebalance event. Clones
/// share what they saw.
#[derive(Debug, Clone)]
pub struct Rebalances {
    inner: Arc<Mutex<Seen>>,
}

#[derive(Debug)]
struct Seen {
    since: Instant,
    events: u64,
    last: Option<Instant>,
}

impl Default for Rebalances {
    fn default() -> Self {
        Rebalances {
            inner: Arc::new(Mutex::new(Seen {
                since: Instant::now(),
                events: 0,
                last: None,
            })),
        }
    }
}

impl Rebalances {
    /// A watcher and the filter to install it with: sfwd's own events at
    /// `info`, so that it enables nothing else.
    pub fn new() -> (Rebalances, Targets) {
        (
            Rebalances::default(),
            Targets::new().with_target("sfwd", tracing::Level::INFO),
        )
    }

    /// Rebalance events seen so far.
    pub fn events(&self) -> u64 {
        self.inner.lock().unwrap().events
    }

    /// How long since the last rebalance event (or since the watcher was
    /// made, if none came).
    pub fn quiet_for(&self) -> Duration {
        let seen = self.inner.lock().unwrap();
        seen.last.unwrap_or(seen.since).elapsed()
    }

    fn note(&self) {
        let mut seen = self.inner.lock().unwrap();
        seen.events += 1;
        seen.last = Some(Instant::now());
    }
}

/// Reads an event's `message` field.
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber> Layer<S> for Rebalances {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Message(None);
        event.record(&mut message);
        if message.0.is_some_and(|m| MESSAGES.contains(&m.as_str())) {
            self.note();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn rebalance_events_are_noted_and_others_are_not() {
        let (watch, filter) = Rebalances::new();
        let subscriber = tracing_subscriber::registry().with(watch.clone().with_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "sfwd::pipeline", partitions = ?[1, 2], "partitions assigned");
            tracing::info!(target: "sfwd::pipeline", "consuming requests");
            tracing::info!(target: "other", "partitions revoked");
        });
        assert_eq!(watch.events(), 1);
        assert!(watch.quiet_for() < Duration::from_secs(5));
    }
}
