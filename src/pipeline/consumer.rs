//! The request consumer's context: a revocation stops the partitions'
//! workers before it completes, an assignment starts them, and commit
//! reports and statistics go to the redelivery bound's [`Commits`]. Also
//! [`commit_reported`], the commit a partition asks for when it nears the
//! bound.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use super::uncommitted::Commits;
use super::Partition;
use crate::shutdown::ShutdownTrigger;

/// A worker's stop switch and its "stopped" flag.
pub(super) struct WorkerStop {
    pub(super) trigger: ShutdownTrigger,
    pub(super) stopped: Arc<(Mutex<bool>, Condvar)>,
}

/// The consumer context: on revocation, stops the partitions' workers and
/// waits (bounded) until they have stored what they finished.
pub(super) struct PipelineContext {
    pub(super) workers: Arc<Mutex<HashMap<Partition, WorkerStop>>>,
    pub(super) assigned: mpsc::UnboundedSender<Vec<Partition>>,
    /// Where every partition's offset commits stand (the redelivery bound).
    pub(super) commits: Arc<Commits>,
}

impl ClientContext for PipelineContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.commits.observed(&statistics);
        crate::telemetry::ConsumerStatistics::new(&statistics).emit();
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            let stops: Vec<WorkerStop> = {
                let mut workers = self.workers.lock().unwrap();
                revoked.iter().filter_map(|p| workers.remove(p)).collect()
            };
            for s in &stops {
                s.trigger.fire();
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            // Called from the dispatcher's poll: let the runtime move other
            // tasks, the workers among them, off this thread while it waits.
            tokio::task::block_in_place(|| wait_stopped(stops, deadline));
            tracing::info!(partitions = ?revoked, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions(tpl);
            tracing::info!(partitions = ?assigned, "partitions assigned");
            let _ = self.assigned.send(assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.commits.reported(&result, offsets);
    }
}

/// The partitions of `tpl`.
fn partitions(tpl: &TopicPartitionList) -> Vec<Partition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// Asks librdkafka to commit the stored offsets now, without waiting, and
/// to report the result to the consumer context's `commit_callback` as it
/// reports its periodic commits.
///
/// `commit_consumer_state(CommitMode::Async)` would not do: librdkafka
/// reports an asynchronous `rd_kafka_commit` only to an
/// `offset_commit_cb`, which rdkafka does not set (it takes commit results
/// as events of the consumer's queue). Such a commit is silent, and since
/// the periodic commit leaves out the partitions with nothing new stored,
/// a partition whose last stored offset it committed never hears of it:
/// held at the redelivery bound, it waited for ever.
/// `rd_kafka_commit_queue` on the main queue (forwarded to the consumer's
/// queue, which the dispatcher polls) reports the commit, success or
/// failure, per partition, like the periodic ones.
pub(super) fn commit_reported<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
) -> KafkaResult<()> {
    use rdkafka::bindings as rdsys;
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live consumer handle `client` owns.
    // `rd_kafka_queue_get_main` returns a new reference to its main queue;
    // `rd_kafka_commit_queue` copies what it needs (no offsets: the stored
    // ones), keeps its own reference to the queue for the reply, and with a
    // queue given returns at once; the reference taken here is then
    // released.
    let err = unsafe {
        let queue = rdsys::rd_kafka_queue_get_main(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::InvalidArgument,
            ));
        }
        let err =
            rdsys::rd_kafka_commit_queue(rk, std::ptr::null(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        err
    };
    if err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}

/// Waits until every worker has stopped, or the deadline passes.
fn wait_stopped(stops: Vec<WorkerStop>, deadline: std::time::Instant) {
    for s in stops {
        let (lock, cvar) = &*s.stopped;
        let mut done = lock.lock().unwrap();
        while !*done {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                tracing::warn!("a revoked partition's worker is still finishing; its next owner may repeat its last record");
                return;
            }
            done = cvar.wait_timeout(done, left).unwrap().0;
        }
    }
}

#[cfg(test)]
mod tests;
