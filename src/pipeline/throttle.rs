//! The live rate cap of an HTTP binding (`rate: 200/s`): cluster-wide,
//! split evenly over the source partitions of the service, each partition
//! holding its share with a token bucket ([`crate::control::pace::Bucket`],
//! the replay's pacing bucket). A call waits for its token before it is
//! made; the partition's other work waits with it, as it would behind a
//! slow call.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::control::pace::Bucket;
use crate::control::Rate;

/// One partition's buckets, by service index.
#[derive(Default)]
pub(super) struct Throttles(HashMap<usize, Throttle>);

struct Throttle {
    origin: Instant,
    bucket: Bucket,
    /// Calls per second this partition may make.
    share: f64,
}

impl Throttles {
    /// Waits until this partition may call service `service`, whose
    /// binding caps its calls at `rate` across `partitions` source
    /// partitions.
    pub(super) async fn wait(&mut self, service: usize, rate: Rate, partitions: usize) {
        let t = self.0.entry(service).or_insert_with(|| Throttle {
            origin: Instant::now(),
            bucket: Bucket::new(Duration::ZERO),
            share: rate.as_per_second() / partitions.max(1) as f64,
        });
        loop {
            match t.bucket.try_take(t.origin.elapsed(), t.share) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}
