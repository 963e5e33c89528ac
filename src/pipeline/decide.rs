//! What happens to one request, decided without I/O: before its call
//! ([`before_call`]), after it ([`after_call`]), and after the control
//! writer answered its trigger ([`after_trigger`]). Live and replayed
//! requests go through the same functions; the worker and the replay carry
//! out the steps (write, store, answer, wait).

use std::time::Duration;

use crate::control::{Cause, ControlPoint, Mode};
use crate::records::FailureReason;

/// Where a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Consumed from a request topic. `sync`: answered on a reply topic;
    /// `control_point`: its service has store and forward.
    Live { sync: bool, control_point: bool },
    /// Read from a stored topic during a replay.
    Replayed,
}

/// What a call came to, as far as deciding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Called {
    /// The target answered (2xx, or the produce was acknowledged).
    Answered,
    /// A failure; `matched`: a store-and-forward rule matches its
    /// exception chain; `overloaded`: the target asked to wait this long
    /// (429, or 503 with `Retry-After`) and the replay's `on_overload` is
    /// `back-off` (live calls ignore it).
    Failed {
        matched: bool,
        overloaded: Option<Duration>,
    },
}

/// What to do with a request after its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered: its offset moves on (a sync request gets the answer).
    Done,
    /// A sync request failed: it is answered with the error, never stored
    /// and never a trigger.
    AnswerError,
    /// To the failed events with this reason; nothing else changes.
    Fail(FailureReason),
    /// A matching failure: the control writer decides ([`after_trigger`]).
    Trigger,
    /// Wait, then call again (a replay, its target overloaded).
    BackOff(Duration),
}

/// Decides after a call of a request from `origin`.
pub fn after_call(origin: Origin, called: Called) -> Step {
    let Called::Failed {
        matched,
        overloaded,
    } = called
    else {
        return Step::Done;
    };
    match origin {
        Origin::Live { sync: true, .. } => Step::AnswerError,
        Origin::Live {
            control_point: true,
            ..
        } if matched => Step::Trigger,
        Origin::Live { .. } => Step::Fail(FailureReason::InvocationFailed),
        Origin::Replayed => match overloaded {
            Some(wait) => Step::BackOff(wait),
            None if matched => Step::Trigger,
            None => Step::Fail(FailureReason::ReplayFailed),
        },
    }
}

/// The control writer's answer to a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This request activated the store.
    Designated,
    /// Another request won, or the control point was storing already.
    Store,
    /// The control point is forwarding again: call once more.
    Retry,
}

/// The writer's answer to the trigger of request `request_id`, published
/// by `instance` from an older state, read from the control point's state
/// `now`.
///
/// The request is designated when `now` is the activation its trigger
/// names, whichever instance published that trigger: when an instance
/// stops between publishing a trigger and the writer's decision, the next
/// owner of the partition calls the request again and publishes a trigger
/// of its own, which the writer refuses as stale once it has applied the
/// first. That request is still the activation's trigger, and goes to the
/// failed events, never to the stored topic.
///
/// A state keeps the trigger of its last activation through later changes,
/// and nothing in it tells which epoch that activation had: once another
/// change followed (an operator's, say), only the instance that published
/// the named trigger is designated, so that a request sent again under the
/// same id (a resubmitted failed event) is not taken for the trigger of an
/// activation it did not cause.
pub fn answer(now: &ControlPoint, request_id: &str, instance: &str) -> Decision {
    let designated = now.trigger.as_ref().is_some_and(|t| {
        t.request_id == request_id && (now.cause == Cause::Trigger || t.instance == instance)
    });
    if designated {
        Decision::Designated
    } else if now.mode == Mode::Store {
        Decision::Store
    } else {
        Decision::Retry
    }
}

/// What to do with a request after its trigger was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// To the failed events as the store's trigger (live, or a replayed
    /// request that activated the store again).
    FailAsTrigger,
    /// Stored (live), or left stored (replayed: the replay stops here).
    Store,
    /// Called again.
    CallAgain,
}

/// Decides after the control writer answered the trigger of a request.
pub fn after_trigger(decision: Decision) -> Settle {
    match decision {
        Decision::Designated => Settle::FailAsTrigger,
        Decision::Store => Settle::Store,
        Decision::Retry => Settle::CallAgain,
    }
}

/// What a live request of a service with store and forward meets before
/// its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Call the target.
    Invoke,
    /// Store it: the control point is storing.
    Store,
    /// A sync request while storing: answered with an error, not stored.
    RefuseSync,
    /// The recorded trigger of the current activation, consumed again
    /// after the instance that sent it stopped: to the failed events.
    FailAsTrigger,
}

/// Decides before the call of a live request.
pub fn before_call(sync: bool, storing: bool, is_recorded_trigger: bool) -> Before {
    match (storing, sync, is_recorded_trigger) {
        (false, _, _) => Before::Invoke,
        (true, true, _) => Before::RefuseSync,
        (true, false, true) => Before::FailAsTrigger,
        (true, false, false) => Before::Store,
    }
}

#[cfg(test)]
mod tests;
