//! What a bulk action did with each request id.

use std::fmt;

use super::time::format_utc;
use super::view::{Attempt, AttemptState, Status};
use crate::records::SourcePosition;

/// How far a bulk action has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events handled so far.
    pub done: usize,
    /// Events to handle.
    pub total: usize,
}

/// Who resubmits, and whether a resubmitted event may be resubmitted again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResubmitOptions {
    /// Recorded with the action: `operator:<name>`.
    pub by: String,
    /// Resubmit even an event that was resubmitted (or is being
    /// resubmitted) already: another copy of the request is written.
    pub again: bool,
}

/// What an action did with one request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    /// The request id.
    pub request_id: String,
    /// What happened.
    pub result: ActionResult,
}

/// What an action did with one request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// The original request was written back at `to`. `recorded` is false
    /// when the `resubmitted` record could not be written afterwards (the
    /// event then shows as `resubmitting`).
    Resubmitted {
        /// Where it was written.
        to: SourcePosition,
        /// The `resubmitted` action record was written.
        recorded: bool,
    },
    /// Marked discarded.
    Discarded,
    /// No failed event has this request id.
    NotFound,
    /// Already resubmitted, or being resubmitted, by this attempt; nothing written.
    AlreadyResubmitted(Attempt),
    /// Another resubmission claimed this event first, at the same time;
    /// nothing written.
    LostRace(Attempt),
    /// Already discarded; nothing written.
    AlreadyDiscarded {
        /// Who discarded it.
        by: String,
        /// When.
        at: i64,
    },
    /// A discard of an event that was resubmitted (or is being): nothing written.
    NotDiscardable(Status),
    /// The claim was made but the request could not be written back (it
    /// may still have been): the event shows as `resubmitting`.
    Interrupted {
        /// The error.
        error: String,
    },
    /// Nothing was written for this id because Kafka refused a write.
    Failed {
        /// The error.
        error: String,
    },
}

impl ActionReport {
    /// Did the action do what was asked, or find it done already?
    pub fn is_ok(&self) -> bool {
        !matches!(
            self.result,
            ActionResult::NotFound | ActionResult::Interrupted { .. } | ActionResult::Failed { .. }
        )
    }

    /// A short name for scripts: `resubmitted`, `discarded`, `not-found`,
    /// `already-resubmitted`, `lost-race`, `already-discarded`,
    /// `not-discardable`, `interrupted`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self.result {
            ActionResult::Resubmitted { .. } => "resubmitted",
            ActionResult::Discarded => "discarded",
            ActionResult::NotFound => "not-found",
            ActionResult::AlreadyResubmitted(_) => "already-resubmitted",
            ActionResult::LostRace(_) => "lost-race",
            ActionResult::AlreadyDiscarded { .. } => "already-discarded",
            ActionResult::NotDiscardable(_) => "not-discardable",
            ActionResult::Interrupted { .. } => "interrupted",
            ActionResult::Failed { .. } => "failed",
        }
    }
}

fn position(p: &SourcePosition) -> String {
    format!("{}/{}/{}", p.topic, p.partition, p.offset)
}

fn attempt_text(a: &Attempt) -> String {
    let when = format_utc(a.at);
    match &a.state {
        AttemptState::Resubmitted { to } => {
            format!("resubmitted by {} at {when} to {}", a.by, position(to))
        }
        AttemptState::Claimed => format!(
            "a resubmission by {} (claimed at {when}) is in progress or its process stopped before confirming it",
            a.by
        ),
        AttemptState::Interrupted { detail } => format!(
            "a resubmission by {} at {when} was interrupted ({detail}); the request may or may not have been written",
            a.by
        ),
    }
}

impl fmt::Display for ActionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.request_id;
        match &self.result {
            ActionResult::Resubmitted { to, recorded: true } => {
                write!(f, "{id}: resubmitted to {}", position(to))
            }
            ActionResult::Resubmitted { to, recorded: false } => write!(
                f,
                "{id}: resubmitted to {}, but recording it failed: it shows as `resubmitting`",
                position(to)
            ),
            ActionResult::Discarded => write!(f, "{id}: discarded"),
            ActionResult::NotFound => write!(f, "{id}: no failed event has this request id"),
            ActionResult::AlreadyResubmitted(a) => write!(
                f,
                "{id}: {}; nothing written (--again resubmits it once more)",
                attempt_text(a)
            ),
            ActionResult::LostRace(a) => write!(
                f,
                "{id}: a resubmission by {} claimed it first, at the same time; nothing written",
                a.by
            ),
            ActionResult::AlreadyDiscarded { by, at } => write!(
                f,
                "{id}: already discarded by {by} at {}; nothing written",
                format_utc(*at)
            ),
            ActionResult::NotDiscardable(status) => write!(
                f,
                "{id}: it is {status}, not open; nothing to discard"
            ),
            ActionResult::Interrupted { error } => write!(
                f,
                "{id}: claimed, but writing the request back failed: {error}; check the request topic, then resubmit with --again if it is not there"
            ),
            ActionResult::Failed { error } => write!(f, "{id}: nothing written: {error}"),
        }
    }
}
