//! The failed-event manager: list, show, resubmit and discard the requests
//! on `<app>.failed`, for the CLI (`sfwd failed …`) and the admin API.
//!
//! # Entries
//!
//! Failed events are [`FailedEvent`](crate::records::FailedEvent) records
//! keyed by request id. A [`FailedView`] collapses them into one
//! [`FailedEntry`] per request id:
//! - copies of one failure (same source position: a crash repeated the
//!   write) count as one, the first kept ([`FailedEntry::copies`]);
//! - a request id with several failures (its resubmitted copy failed
//!   again; it keeps its request id) shows its latest failure, and every
//!   action applies to that failure ([`FailedEntry::failures`]).
//!
//! # Actions
//!
//! Operators' actions are [`FailedAction`](crate::records::FailedAction)
//! records on the compacted topic `<app>.failed-actions` (one partition;
//! every action of a request id goes to the partition its id hashes to, so
//! they are ordered). They are shared by every operator, CLI and instance,
//! and survive everything the topic survives. The failed events themselves
//! are never changed or deleted by an action.
//!
//! - **discard** writes `DISCARDED` under key `discard:<id>`. The entry is
//!   hidden from the default list ([`StatusFilter::Open`]) and listed as
//!   `discarded` with `--all`.
//! - **resubmit** writes the original request (key, value, headers in
//!   order, with `sfwd-request-id: <id>` so sfwd treats it as the same
//!   request, and `sfwd-resubmitted-from: <id>`) back to its request
//!   topic and partition. It goes through a claim, under its own key
//!   `resubmit:<id>:<claim>` that only the claimant writes:
//!   1. write `RESUBMITTING` (the claim) and note its offset;
//!   2. read the actions partition to its end; among the claims for this
//!      failure of this request, ordered by the offset of their
//!      `RESUBMITTING` record, the first one wins, and so does every claim
//!      made with `--again`; a claim that does not win writes nothing more;
//!   3. the winner writes the request back, waits for the broker's
//!      acknowledgement, and writes `RESUBMITTED` with the new position (or
//!      `INTERRUPTED` with the error) under its claim's key, carrying the
//!      claim's offset.
//!
//! What holds, without transactions: **a failure of a request is written
//! back at most once, however many operators, CLIs or admin API calls
//! resubmit it at the same time or later, unless one of them passes
//! `--again`** (each `--again` may add one copy). Every claimant orders
//! the claims the same way, from facts written before anything is
//! produced, and each claim's key has a single writer, so compaction (which
//! keeps the last record of each key) never removes what orders them.
//! The request is written with an idempotent producer, so a retried write
//! does not duplicate it either.
//!
//! What does not hold: *at least once*. A winner that stops between its
//! claim and writing the request (killed, Kafka unreachable) leaves the
//! event `resubmitting`, and so does a winner that wrote the request but
//! could not record it. Nobody else resubmits it without `--again`; the
//! operator checks the request topic for a record with
//! `sfwd-resubmitted-from: <id>` and decides. Once written back, the
//! request is processed like any other (and deduplicated by its id only as
//! far as the target does).
//!
//! # JSON
//!
//! [`FailedEntry::to_json`] gives the stable shape used by
//! `sfwd failed list|show --output json` and the admin API: `request_id`,
//! `status` (`open`, `discarded`, `resubmitting`, `resubmitted`), `reason`,
//! `detail`, `control_point`, `service`, `interface`, `operation` (null for
//! bad input), `source` (`{topic, partition, offset}` where it was
//! consumed), `failed_at` (RFC 3339 UTC), `failed_at_ms`, `attempts`,
//! `instance`, `epoch`, `rule`, `chain` (`[{type, message}]`, top-level
//! first), `copies`, `failures`, `failed_record` (`{topic, partition,
//! offset}` in `<app>.failed`), `resubmission` (null, or `{state: claimed |
//! resubmitted | interrupted, by, at, at_ms, forced, claim,
//! resubmitted_to, detail}`), `discarded` (null, or `{by, at, at_ms}`);
//! with `full`, also `key`, `value` (null, `{"utf8": …}` or `{"base64": …}`)
//! and `headers` (`[{key, value}]`, values encoded the same way).

mod filter;
mod manager;
pub(crate) mod read;
mod report;
mod resubmit;
pub mod time;
mod view;

pub use filter::{Filter, StatusFilter};
pub use manager::FailedEvents;
pub use read::FailedError;
pub(crate) use read::{read_to_end, RawRecord};
pub use report::{ActionReport, ActionResult, Progress, ResubmitOptions};
pub use resubmit::{resubmission_headers, RESUBMITTED_FROM_HEADER};
pub(crate) use view::bytes_json;
pub use view::{
    base64, ActionAt, Attempt, AttemptState, Discard, FailedEntry, FailedView, ParseStatusError,
    Status, StatusCounts,
};
