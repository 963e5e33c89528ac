//! The pace of a replay: a cluster-wide rate, its slow start, and the share
//! of it one source partition may use. Pure: no clock is read here, every
//! time is passed in.
//!
//! A control point's replay rate caps the requests per second that reach
//! its target from the stored topic, summed over every instance. Each
//! source partition is replayed by exactly one task, so the cap is split
//! evenly over the source partitions whose replay of the current epoch has
//! not finished; as partitions finish, the others take over their share.
//! A partition that has nothing left to replay holds no share, one that is
//! waiting for an owner holds its share unused: the sum never passes the
//! cap.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Requests per second, finite and above zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(f64);

// Never NaN: `Rate::per_second` refuses it.
impl Eq for Rate {}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error(
        "`{0}` is not a rate; write requests per unit of time, e.g. `200/s`, `600/min` or `5000/h`"
    )]
    Syntax(String),
    #[error("`{0}`: the rate must be above zero (leave it out, or write `unlimited`, for no cap)")]
    NotPositive(String),
    #[error("`{input}`: unknown unit `{unit}`; use s, min or h")]
    Unit { input: String, unit: String },
}

impl Rate {
    /// The slowest rate accepted: one request an hour.
    pub const MIN_PER_SECOND: f64 = 1.0 / 3600.0;

    /// A rate of `n` requests per second, if `n` is a usable rate.
    pub fn per_second(n: f64) -> Option<Rate> {
        (n.is_finite() && n >= Rate::MIN_PER_SECOND).then_some(Rate(n))
    }

    pub fn as_per_second(self) -> f64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = RateError;

    /// `N/s`, `N/min` or `N/h`; `N` may have a fraction.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let (n, unit) = input
            .split_once('/')
            .ok_or_else(|| RateError::Syntax(input.to_string()))?;
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| RateError::Syntax(input.to_string()))?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => {
                return Err(RateError::Unit {
                    input: input.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        if !n.is_finite() {
            return Err(RateError::Syntax(input.to_string()));
        }
        Rate::per_second(n / seconds).ok_or_else(|| RateError::NotPositive(input.to_string()))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1.0 {
            write!(f, "{}/s", round(self.0))
        } else if self.0 * 60.0 >= 1.0 {
            write!(f, "{}/min", round(self.0 * 60.0))
        } else {
            write!(f, "{}/h", round(self.0 * 3600.0))
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An operator's override of a control point's replay rate, carried by the
/// control state (`sfwd control forward --rate`, `sfwd control pace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// No cap, whatever the topology says.
    Unlimited,
    /// This cap instead of the topology's.
    Rate(Rate),
}

impl Pace {
    /// The cap in effect: the override if any, else the topology's.
    pub fn effective(over: Option<Pace>, topology: Option<Rate>) -> Option<Rate> {
        match over {
            Some(Pace::Unlimited) => None,
            Some(Pace::Rate(r)) => Some(r),
            None => topology,
        }
    }

    /// As the control topic carries it: 0 for unlimited.
    pub fn to_wire(self) -> f64 {
        match self {
            Pace::Unlimited => 0.0,
            Pace::Rate(r) => r.as_per_second(),
        }
    }

    /// From the control topic: 0 (or anything not a usable rate) is
    /// unlimited.
    pub fn from_wire(n: f64) -> Pace {
        Rate::per_second(n).map_or(Pace::Unlimited, Pace::Rate)
    }
}

impl FromStr for Pace {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "unlimited" | "none" | "off" => Ok(Pace::Unlimited),
            other => other.parse().map(Pace::Rate),
        }
    }
}

impl Pace {
    /// An operator's pace setting: a rate, `unlimited`, or `default` (the
    /// topology's, `None`).
    pub fn parse_setting(s: &str) -> Result<Option<Pace>, RateError> {
        match s.trim() {
            "default" => Ok(None),
            other => other.parse().map(Some),
        }
    }
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pace::Unlimited => f.write_str("unlimited"),
            Pace::Rate(r) => r.fmt(f),
        }
    }
}

/// The fraction of the cap in effect `elapsed` after the replay began: a
/// slow start that climbs linearly from a tenth to all of it over `ramp`.
pub fn ramp_factor(ramp: Duration, elapsed: Duration) -> f64 {
    if ramp.is_zero() || elapsed >= ramp {
        return 1.0;
    }
    0.1 + 0.9 * (elapsed.as_secs_f64() / ramp.as_secs_f64())
}

/// Requests per second one source partition may replay: the cap, ramped,
/// split evenly over the partitions still replaying (at least this one).
pub fn partition_share(cap: Rate, ramp: Duration, elapsed: Duration, replaying: usize) -> f64 {
    cap.as_per_second() * ramp_factor(ramp, elapsed) / replaying.max(1) as f64
}

/// A token bucket whose rate may change at every call.
///
/// It holds at most one token (or a tenth of a second of the rate when that
/// is more), so a partition never sends a burst above its share.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    /// The time of the last refill, as a duration since any fixed origin.
    last: Duration,
}

impl Bucket {
    /// An empty bucket at `now`: the first token comes after one interval
    /// of the rate, so that partitions starting together send no burst.
    pub fn new(now: Duration) -> Self {
        Bucket {
            tokens: 0.0,
            last: now,
        }
    }

    /// Refills at `rate` per second since the last call, then takes a
    /// token if there is one; otherwise says how long until there is one
    /// at that rate (the rate may change before then: ask again).
    pub fn try_take(&mut self, now: Duration, rate: f64) -> Result<(), Duration> {
        let rate = rate.max(Rate::MIN_PER_SECOND);
        let capacity = (rate / 10.0).max(1.0);
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate).max(Duration::from_micros(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_read_with_their_unit() {
        assert_eq!("200/s".parse::<Rate>().unwrap().as_per_second(), 200.0);
        assert_eq!("600/min".parse::<Rate>().unwrap().as_per_second(), 10.0);
        assert_eq!("7200/h".parse::<Rate>().unwrap().as_per_second(), 2.0);
        assert_eq!(" 2.5 / s ".parse::<Rate>().unwrap().as_per_second(), 2.5);
        assert_eq!(
            "0/s".parse::<Rate>(),
            Err(RateError::NotPositive("0/s".into()))
        );
        assert!(matches!("200".parse::<Rate>(), Err(RateError::Syntax(_))));
        assert!(matches!("x/s".parse::<Rate>(), Err(RateError::Syntax(_))));
        assert!(matches!("inf/s".parse::<Rate>(), Err(RateError::Syntax(_))));
        assert!(matches!(
            "5/day".parse::<Rate>(),
            Err(RateError::Unit { .. })
        ));
    }

    #[test]
    fn rates_print_in_a_unit_that_keeps_them_readable() {
        assert_eq!("200/s".parse::<Rate>().unwrap().to_string(), "200/s");
        assert_eq!("30/min".parse::<Rate>().unwrap().to_string(), "30/min");
        assert_eq!("2/h".parse::<Rate>().unwrap().to_string(), "2/h");
    }

    #[test]
    fn an_override_wins_over_the_topology() {
        let r = |s: &str| s.parse::<Rate>().unwrap();
        assert_eq!(Pace::effective(None, Some(r("5/s"))), Some(r("5/s")));
        assert_eq!(Pace::effective(None, None), None);
        assert_eq!(Pace::effective(Some(Pace::Unlimited), Some(r("5/s"))), None);
        assert_eq!(
            Pace::effective(Some(Pace::Rate(r("9/s"))), Some(r("5/s"))),
            Some(r("9/s"))
        );
        assert_eq!("unlimited".parse::<Pace>(), Ok(Pace::Unlimited));
        assert_eq!(Pace::parse_setting(" default "), Ok(None));
        assert_eq!(Pace::parse_setting("5/s"), Ok(Some(Pace::Rate(r("5/s")))));
        assert!(Pace::parse_setting("fast").is_err());
        assert_eq!(Pace::from_wire(0.0), Pace::Unlimited);
        assert_eq!(
            Pace::from_wire(Pace::Rate(r("9/s")).to_wire()),
            Pace::Rate(r("9/s"))
        );
    }

    #[test]
    fn the_ramp_climbs_from_a_tenth_to_the_whole_cap() {
        let ramp = Duration::from_secs(30);
        assert_eq!(ramp_factor(ramp, Duration::ZERO), 0.1);
        assert!((ramp_factor(ramp, Duration::from_secs(15)) - 0.55).abs() < 1e-9);
        assert_eq!(ramp_factor(ramp, Duration::from_secs(30)), 1.0);
        assert_eq!(ramp_factor(ramp, Duration::from_secs(300)), 1.0);
        assert_eq!(ramp_factor(Duration::ZERO, Duration::ZERO), 1.0);
    }

    #[test]
    fn the_cap_is_split_over_the_partitions_still_replaying() {
        let cap = "120/s".parse::<Rate>().unwrap();
        let full = Duration::from_secs(60);
        assert_eq!(partition_share(cap, Duration::ZERO, full, 12), 10.0);
        assert_eq!(partition_share(cap, Duration::ZERO, full, 3), 40.0);
        assert_eq!(partition_share(cap, Duration::ZERO, full, 0), 120.0);
        assert_eq!(partition_share(cap, full, Duration::ZERO, 12), 1.0);
    }

    /// Sends as fast as the bucket allows for `seconds` and counts them.
    fn sent_in(rate: f64, seconds: f64) -> usize {
        let mut b = Bucket::new(Duration::ZERO);
        let mut now = Duration::ZERO;
        let end = Duration::from_secs_f64(seconds);
        let mut sent = 0;
        loop {
            while let Err(wait) = b.try_take(now, rate) {
                now += wait;
            }
            if now >= end {
                return sent;
            }
            sent += 1;
        }
    }

    #[test]
    fn a_bucket_holds_its_rate() {
        assert_eq!(sent_in(100.0, 5.0), 499);
        assert_eq!(sent_in(8.0, 5.0), 39);
        assert_eq!(sent_in(0.5, 10.0), 4);
    }

    proptest! {
        /// Over any run of calls, however they are spaced, a bucket lets no
        /// more through than its rate times the time, plus its capacity.
        #[test]
        fn a_bucket_never_passes_its_rate_plus_capacity(
            rate in 0.5f64..5000.0,
            gaps in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let mut b = Bucket::new(Duration::ZERO);
            let mut now = Duration::ZERO;
            let mut sent = 0usize;
            for gap in gaps {
                now += Duration::from_micros(gap);
                while let Err(wait) = b.try_take(now, rate) {
                    now += wait.min(Duration::from_millis(200));
                }
                sent += 1;
                let allowed = now.as_secs_f64() * rate + (rate / 10.0).max(1.0);
                prop_assert!(sent as f64 <= allowed + 1e-6, "{sent} sent by {now:?} at {rate}/s");
            }
        }

        /// Shares always sum to the ramped cap, so the cluster never passes it.
        #[test]
        fn shares_sum_to_the_ramped_cap(
            cap in 1.0f64..10_000.0,
            replaying in 1usize..64,
            elapsed in 0u64..120_000,
        ) {
            let cap = Rate::per_second(cap).unwrap();
            let ramp = Duration::from_secs(30);
            let elapsed = Duration::from_millis(elapsed);
            let sum = partition_share(cap, ramp, elapsed, replaying) * replaying as f64;
            prop_assert!((sum - cap.as_per_second() * ramp_factor(ramp, elapsed)).abs() < 1e-6 * cap.as_per_second());
            prop_assert!(sum <= cap.as_per_second() * (1.0 + 1e-9));
        }
    }
}
