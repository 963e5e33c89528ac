//! The adaptive limit on calls in flight (AIMD on latency and errors).
//!
//! A partition that keeps several calls out at once (an HTTP binding with
//! `ordering: key`) sends no more than [`Limit::current`] of them, between
//! 1 and the binding's `in_flight`. The limit starts at 1 and:
//!
//! - grows by about one call per round of calls (`+1/limit` per success)
//!   while calls answer within twice the *baseline* latency;
//! - shrinks by a tenth on a success slower than that (the target queues);
//! - halves on a failure (an error answer, a timeout, a refused
//!   connection), down to 1.
//!
//! The baseline is the lowest latency seen, drifting up by 1% of the gap
//! with every slower sample, so that a target that has become slower for
//! good is, after a few hundred calls, measured against its new speed.
//!
//! Pure: no clock, no I/O; latencies come in as arguments.

use std::time::Duration;

/// A success at most this many times the baseline counts as fast.
const TOLERANCE: f64 = 2.0;
/// How much of the gap to a slower sample the baseline moves by.
const DRIFT: f64 = 0.01;
/// What a slow success multiplies the limit by.
const SLOW_DECREASE: f64 = 0.9;
/// What a failure multiplies the limit by.
const FAILURE_DECREASE: f64 = 0.5;

/// One partition's limit on calls in flight.
#[derive(Debug, Clone)]
pub struct Limit {
    limit: f64,
    cap: f64,
    /// Seconds; `None` before the first success.
    baseline: Option<f64>,
}

/// What a settled call tells the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// Answered, after this long.
    Success(Duration),
    /// Failed (error answer, timeout, connection refused).
    Failure,
}

impl Limit {
    /// A limit that starts at 1 and never exceeds `cap` (at least 1).
    pub fn new(cap: usize) -> Limit {
        Limit {
            limit: 1.0,
            cap: cap.max(1) as f64,
            baseline: None,
        }
    }

    /// How many calls may be out now.
    pub fn current(&self) -> usize {
        self.limit.floor().clamp(1.0, self.cap) as usize
    }

    /// Takes the outcome of one settled call into account.
    pub fn observe(&mut self, sample: Sample) {
        match sample {
            Sample::Failure => self.limit *= FAILURE_DECREASE,
            Sample::Success(latency) => {
                let seconds = latency.as_secs_f64();
                let baseline = match self.baseline {
                    Some(b) if seconds < b => seconds,
                    Some(b) => b + (seconds - b) * DRIFT,
                    None => seconds,
                };
                self.baseline = Some(baseline);
                if seconds <= baseline * TOLERANCE {
                    self.limit += 1.0 / self.limit;
                } else {
                    self.limit *= SLOW_DECREASE;
                }
            }
        }
        self.limit = self.limit.clamp(1.0, self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Sample {
        Sample::Success(Duration::from_millis(n))
    }

    #[test]
    fn grows_to_the_cap_while_fast_and_shrinks_when_slow_or_failing() {
        let mut l = Limit::new(16);
        assert_eq!(l.current(), 1);
        for _ in 0..200 {
            l.observe(ms(20));
        }
        assert_eq!(l.current(), 16, "fast answers: up to the cap");
        l.observe(Sample::Failure);
        assert_eq!(l.current(), 8, "a failure halves it");
        for _ in 0..200 {
            l.observe(ms(20));
        }
        assert_eq!(l.current(), 16);
        let mut slow = 0;
        while l.current() > 4 {
            l.observe(ms(400));
            slow += 1;
        }
        assert!(
            slow <= 15,
            "a slower target is felt within a few calls: {slow}"
        );
    }

    #[test]
    fn a_target_slower_for_good_becomes_the_new_baseline() {
        let mut l = Limit::new(32);
        for _ in 0..100 {
            l.observe(ms(10));
        }
        for _ in 0..30 {
            l.observe(ms(200));
        }
        let low = l.current();
        for _ in 0..2000 {
            l.observe(ms(200));
        }
        assert!(
            l.current() > low,
            "after the baseline caught up, it grows again: {low} → {}",
            l.current()
        );
    }

    proptest! {
        #[test]
        fn the_limit_stays_between_1_and_the_cap(
            cap in 1usize..2000,
            samples in prop::collection::vec(prop_oneof![
                (0u64..5000).prop_map(ms),
                Just(Sample::Failure),
            ], 0..500),
        ) {
            let mut l = Limit::new(cap);
            for s in samples {
                let before = l.current();
                l.observe(s);
                prop_assert!((1..=cap).contains(&l.current()));
                if s == Sample::Failure {
                    prop_assert!(l.current() <= before.max(1));
                }
                if let Sample::Success(_) = s {
                    // One success adds at most one call.
                    prop_assert!(l.current() <= before + 1);
                }
            }
        }
    }
}
