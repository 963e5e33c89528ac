//! The progress of a replay on `<app>.replay`: what is settled, when it
//! is written, and how many writes may be in flight.

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::super::worker::Worker;
use super::super::PipelineError;
use crate::control::ReplayProgress;

/// Progress writes in flight during a replay, at most, for a target that
/// takes one call at a time (see [`progress_window`]).
pub const PROGRESS_WINDOW: usize = 4;
/// Requests settled between two progress writes, at most (fewer when
/// [`PROGRESS_INTERVAL`] passes first).
pub const PROGRESS_EVERY: usize = 128;
/// Time after which settled requests get a progress write, however few.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// How many requests a replay interrupted by a crash may re-deliver, with
/// a target keeping `in_flight` calls out at once: those covered by
/// progress writes not yet acknowledged, those settled since the last
/// write, and those in flight. The next replay flags as many with
/// `sfwd-redelivery: possible`.
pub fn redelivery_bound(in_flight: usize) -> usize {
    (progress_window(in_flight) + 1) * PROGRESS_EVERY + in_flight
}

/// Progress writes in flight during a replay to a target that keeps
/// `in_flight` calls out: enough to cover them, so that waiting for a
/// progress write (which is acknowledged after the outputs sent before it)
/// never holds the replay to fewer calls in flight than the target takes.
pub fn progress_window(in_flight: usize) -> usize {
    PROGRESS_WINDOW.max(in_flight.div_ceil(PROGRESS_EVERY))
}

/// The bookkeeping of one replay: progress, and its writes in flight.
pub(super) struct Progress {
    pub(super) key: String,
    pub(super) now: ReplayProgress,
    /// Requests settled since the last progress write.
    pub(super) unwritten: usize,
    pub(super) written_at: std::time::Instant,
    pub(super) writes: VecDeque<DeliveryFuture>,
    /// Writes in flight, at most ([`progress_window`]).
    pub(super) window: usize,
}

impl Progress {
    /// A request at stored offset `offset` (source offset `source_offset`)
    /// is settled: delivered or in the failed events.
    pub(super) fn settled(&mut self, offset: i64, source_offset: i64) {
        self.now.max_source_offset = self.now.max_source_offset.max(source_offset);
        self.now.next_offset = self.now.next_offset.max(offset + 1);
        self.unwritten += 1;
    }

    /// Whether a progress write is due: after [`PROGRESS_EVERY`] settled
    /// requests, or after [`PROGRESS_INTERVAL`] if a write can go out
    /// without waiting for an earlier one (so that a slow broker gets
    /// fewer, fuller writes rather than holding the replay up).
    /// A write that failed stops the partition, as any output does.
    pub(super) fn write_due(&mut self) -> Result<bool, PipelineError> {
        while let Some(Some(result)) = self.writes.front_mut().map(|d| d.now_or_never()) {
            self.writes.pop_front();
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(PipelineError::Kafka(e)),
                Err(_) => return Err(PipelineError::Kafka(KafkaError::Canceled)),
            }
        }
        Ok(self.unwritten >= PROGRESS_EVERY
            || (self.unwritten > 0
                && self.written_at.elapsed() >= PROGRESS_INTERVAL
                && self.writes.len() < self.window))
    }
}

impl Worker {
    /// Writes the replay's progress, keeping at most its window of
    /// writes in flight.
    pub(super) async fn send_progress(
        &mut self,
        progress: &mut Progress,
    ) -> Result<(), PipelineError> {
        let ctx = self.ctx.clone();
        let payload = serde_json::to_vec(&progress.now).expect("plain struct");
        let topic = ctx.plan.replay_topic();
        progress.unwritten = 0;
        progress.written_at = std::time::Instant::now();
        if self.window.is_transactional() {
            // In the partition's transaction, with the outputs it covers.
            self.window
                .write_in_transaction(super::super::outputs::Output {
                    topic: topic.to_string(),
                    partition: Some(0),
                    key: Some(progress.key.as_bytes().to_vec()),
                    payload,
                    headers: Vec::new(),
                })
                .await?;
            ctx.table.apply_replay(&progress.key, progress.now)?;
            return Ok(());
        }
        loop {
            let record = FutureRecord::to(topic)
                .key(&progress.key)
                .partition(0)
                .payload(&payload);
            match ctx.producer.send_result(record) {
                Ok(d) => {
                    progress.writes.push_back(d);
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => match progress.writes.pop_front() {
                    Some(d) => wait_progress(d).await?,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Err((e, _)) => return Err(PipelineError::Kafka(e)),
            }
        }
        while progress.writes.len() > progress.window {
            let d = progress.writes.pop_front().expect("non-empty");
            wait_progress(d).await?;
        }
        ctx.table.apply_replay(&progress.key, progress.now)?;
        Ok(())
    }
}

pub(super) async fn wait_progress(
    d: rdkafka::producer::DeliveryFuture,
) -> Result<(), PipelineError> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(PipelineError::Kafka(e)),
        Err(_) => Err(PipelineError::Kafka(KafkaError::Canceled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_writes_in_flight_cover_the_calls_in_flight() {
        for in_flight in [1, 2, 64, 128, 129, 1024, 10_000] {
            let window = progress_window(in_flight);
            assert!(window >= PROGRESS_WINDOW);
            assert!(window * PROGRESS_EVERY >= in_flight, "{in_flight}");
            assert!(
                (window - 1) * PROGRESS_EVERY < in_flight.max(PROGRESS_WINDOW * PROGRESS_EVERY)
            );
            assert_eq!(
                redelivery_bound(in_flight),
                (window + 1) * PROGRESS_EVERY + in_flight
            );
        }
    }
}
