//! Calling a target under a retry policy.
//!
//! Without a policy a target is called once. With one it is called up to
//! `attempts` times: the first retry waits `backoff`, each further one twice
//! as long as the one before, at most [`MAX_BACKOFF`]. A failure that a
//! retry cannot change ends the invocation at once:
//!
//! - an HTTP answer below 500 other than 408 and 429: a 4xx is the target's
//!   business answer, and a 1xx or 3xx (redirects are not followed) would
//!   come back the same;
//! - a Kafka error librdkafka does not count as retriable (e.g.
//!   `MessageSizeTooLarge`).
//!
//! Everything else (5xx, 408, 429, timeouts, refused connections, DNS, TLS,
//! broken connections, retriable Kafka errors) is retried.

use std::future::Future;
use std::time::Duration;

use super::failure::Failure;
use super::{Request, Response, Target};
use crate::topology::RetryPolicy;

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The outcome of an invocation, after retries.
#[derive(Debug)]
pub struct Invocation {
    /// The last attempt's outcome.
    pub result: Result<Response, Failure>,
    /// Calls made, the first included; at least 1.
    pub attempts: u32,
}

/// Calls `target`, retrying per `policy` (see the module docs).
pub async fn invoke(target: &Target, policy: Option<RetryPolicy>, request: &Request) -> Invocation {
    invoke_with(
        policy,
        || async {
            let result = target.call(request).await;
            if let Err(failure) = &result {
                tracing::debug!(
                    target_name = %target.describe(),
                    request_id = %request.request_id,
                    ?failure,
                    "target call failed"
                );
            }
            result
        },
        tokio::time::sleep,
    )
    .await
}

/// Goes on with an invocation whose first call, sent without waiting
/// (a pipelined Kafka produce), failed with `first`: retries per `policy`
/// as [`invoke`] would have.
pub async fn retry_after(
    target: &Target,
    policy: Option<RetryPolicy>,
    request: &Request,
    first: Failure,
) -> Invocation {
    let mut first = Some(first);
    invoke_with(
        policy,
        || {
            let first = first.take();
            async move {
                match first {
                    Some(failure) => Err(failure),
                    None => target.call(request).await,
                }
            }
        },
        tokio::time::sleep,
    )
    .await
}

/// The retry loop over any call and any way of waiting, so it can be
/// tested without a target or a clock.
async fn invoke_with<C, CF, S, SF>(
    policy: Option<RetryPolicy>,
    mut call: C,
    mut sleep: S,
) -> Invocation
where
    C: FnMut() -> CF,
    CF: Future<Output = Result<Response, Failure>>,
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let (max_attempts, mut backoff) = match policy {
        Some(p) => (p.attempts.max(1), p.backoff.min(MAX_BACKOFF)),
        None => (1, Duration::ZERO),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = call().await;
        match &result {
            Err(failure) if attempts < max_attempts && retry_may_help(failure) => {
                sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ => return Invocation { result, attempts },
        }
    }
}

/// Whether calling again could end differently.
fn retry_may_help(failure: &Failure) -> bool {
    match failure {
        Failure::HttpStatus { status, .. } => *status >= 500 || matches!(status, 408 | 429),
        Failure::Kafka { retriable, .. } => *retriable,
        Failure::ConnectRefused { .. }
        | Failure::Dns { .. }
        | Failure::Timeout { .. }
        | Failure::Tls { .. }
        | Failure::Io { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    fn status(status: u16) -> Failure {
        Failure::HttpStatus {
            method: "POST".into(),
            url: "http://t/".into(),
            status,
            reason: String::new(),
            body: Vec::new(),
            content_type: None,
            retry_after_secs: None,
        }
    }

    fn refused() -> Failure {
        Failure::ConnectRefused {
            url: "http://t/".into(),
            detail: "connection refused".into(),
        }
    }

    fn kafka(retriable: bool) -> Failure {
        Failure::Kafka {
            topic: "t".into(),
            code: "X".into(),
            detail: String::new(),
            retriable,
        }
    }

    fn policy(attempts: u32, backoff_ms: u64) -> Option<RetryPolicy> {
        Some(RetryPolicy {
            attempts,
            backoff: Duration::from_millis(backoff_ms),
        })
    }

    /// Runs `invoke_with` over scripted outcomes on a fake clock that the
    /// waits advance; returns the invocation and when (on that clock) each
    /// call was made.
    async fn run(
        policy: Option<RetryPolicy>,
        outcomes: Vec<Result<Response, Failure>>,
    ) -> (Invocation, Vec<Duration>) {
        let now = Cell::new(Duration::ZERO);
        let calls = RefCell::new(Vec::new());
        let outcomes = RefCell::new(outcomes.into_iter());
        let invocation = invoke_with(
            policy,
            || {
                calls.borrow_mut().push(now.get());
                let next = outcomes.borrow_mut().next().expect("an outcome per call");
                async move { next }
            },
            |wait| {
                now.set(now.get() + wait);
                async {}
            },
        )
        .await;
        (invocation, calls.into_inner())
    }

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[tokio::test]
    async fn no_policy_calls_once() {
        let (inv, calls) = run(None, vec![Err(refused())]).await;
        assert_eq!(inv.attempts, 1);
        assert_eq!(inv.result, Err(refused()));
        assert_eq!(calls, ms(&[0]));
    }

    #[tokio::test]
    async fn success_stops_the_loop() {
        let (inv, calls) = run(
            policy(5, 100),
            vec![Err(refused()), Err(status(503)), Ok(Response::default())],
        )
        .await;
        assert_eq!(inv.attempts, 3);
        assert_eq!(inv.result, Ok(Response::default()));
        assert_eq!(calls, ms(&[0, 100, 300]));
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_30s() {
        let (inv, calls) = run(policy(8, 5_000), vec![Err(refused()); 8]).await;
        assert_eq!(inv.attempts, 8);
        assert_eq!(inv.result, Err(refused()));
        // waits: 5, 10, 20, 30, 30, 30, 30 seconds
        assert_eq!(
            calls,
            ms(&[0, 5_000, 15_000, 35_000, 65_000, 95_000, 125_000, 155_000])
        );
    }

    #[tokio::test]
    async fn a_backoff_over_the_cap_is_capped() {
        let (_, calls) = run(policy(3, 60_000), vec![Err(refused()); 3]).await;
        assert_eq!(calls, ms(&[0, 30_000, 60_000]));
    }

    #[tokio::test]
    async fn zero_attempts_still_calls_once() {
        let (inv, _) = run(policy(0, 100), vec![Err(refused())]).await;
        assert_eq!(inv.attempts, 1);
    }

    #[tokio::test]
    async fn business_answers_are_not_retried() {
        for code in [400, 404, 409, 422, 302, 301] {
            let (inv, calls) = run(policy(5, 100), vec![Err(status(code))]).await;
            assert_eq!(inv.attempts, 1, "{code}");
            assert_eq!(calls.len(), 1);
        }
        let (inv, _) = run(policy(5, 100), vec![Err(kafka(false))]).await;
        assert_eq!(inv.attempts, 1);
    }

    #[tokio::test]
    async fn outages_and_throttling_are_retried() {
        for failure in [
            status(408),
            status(429),
            status(500),
            status(503),
            kafka(true),
        ] {
            let (inv, _) = run(policy(2, 10), vec![Err(failure.clone()); 2]).await;
            assert_eq!(inv.attempts, 2, "{failure:?}");
        }
    }
}
