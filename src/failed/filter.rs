//! Which failed events to show or act on.

use super::view::{FailedEntry, Status};
use crate::records::FailureReason;

/// Which statuses pass a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    /// Only open events (the default: what still needs an operator).
    #[default]
    Open,
    /// Only events in this status.
    Is(Status),
    /// Every event, whatever its status.
    Any,
}

impl StatusFilter {
    fn passes(self, status: Status) -> bool {
        match self {
            StatusFilter::Open => status == Status::Open,
            StatusFilter::Is(s) => status == s,
            StatusFilter::Any => true,
        }
    }
}

/// Conditions on failed events; every condition set must hold. The default
/// passes every open event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The event's control point.
    pub control_point: Option<String>,
    /// The event's service.
    pub service: Option<String>,
    /// The event's operation, as `operation` or `Interface.operation`.
    pub operation: Option<String>,
    /// Why it failed.
    pub reason: Option<FailureReason>,
    /// Failed at or after this instant (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Failed before this instant (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// Which statuses pass.
    pub status: StatusFilter,
}

impl Filter {
    /// Does the entry pass every condition?
    pub fn matches(&self, entry: &FailedEntry) -> bool {
        let e = &entry.event;
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        let operation = self.operation.as_ref().is_none_or(|want| {
            let op = e.operation.as_deref();
            match want.split_once('.') {
                Some((i, o)) => e.interface.as_deref() == Some(i) && op == Some(o),
                None => op == Some(want.as_str()),
            }
        });
        same(&self.control_point, &e.control_point)
            && same(&self.service, &e.service)
            && operation
            && self.reason.is_none_or(|r| r == e.reason)
            && self.since_ms.is_none_or(|t| e.failed_at >= t)
            && self.until_ms.is_none_or(|t| e.failed_at < t)
            && self.status.passes(entry.status)
    }

    /// Is any condition other than the status set?
    pub fn narrows(&self) -> bool {
        self.control_point.is_some()
            || self.service.is_some()
            || self.operation.is_some()
            || self.reason.is_some()
            || self.since_ms.is_some()
            || self.until_ms.is_some()
    }
}
