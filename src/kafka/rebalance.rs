//! Tells a consumer's owner which partitions it gained and lost.

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

/// A change of assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// A consumer context that reports assignment changes on a channel.
/// Revocations are reported before the partitions are taken away
/// (`pre_rebalance`), assignments after they are given.
pub struct RebalanceContext {
    tx: mpsc::UnboundedSender<Assignment>,
}

impl RebalanceContext {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Assignment>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (RebalanceContext { tx }, rx)
    }
}

fn partitions(tpl: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let _ = self.tx.send(Assignment::Revoked(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let _ = self.tx.send(Assignment::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}
