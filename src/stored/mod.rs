//! The stored backlog of the control points: list and show the requests
//! parked on each `<app>.stored.<control point>` topic, and skip one, for
//! the CLI (`sfwd stored …`) and the admin API.
//!
//! # Entries
//!
//! A [`StoredView`] is one control point's stored topic read from its
//! beginning to its current end, one [`StoredEntry`] per stored request
//! (copies written twice by a crash, same request id and source position,
//! count once), in stored-topic order: partition by partition, oldest
//! first. Its status ([`StoredStatus`]) comes from the replay progress on
//! `<app>.replay` (a request at or below its source partition's
//! `max_source_offset` was *replayed*) and from the skips.
//!
//! # Skips
//!
//! Kafka cannot delete one record, so a skip is a mark on the compacted
//! topic `<app>.skips`: a [`StoredSkip`](crate::records::StoredSkip) keyed
//! `<request id>@<topic>/<partition>/<offset>` (a resubmitted copy of a
//! skipped request keeps its id but not its position, so it is another
//! stored request). Every instance follows that topic ([`Skips`]), and a
//! replay settles a skipped stored request without delivering it.
//!
//! [`StoredBacklog::skip`], which needs no running instance:
//! 1. refuses an id no stored topic holds, or one the replay has passed;
//! 2. writes the mark, with an id unique to this attempt, and waits for
//!    the broker's acknowledgement;
//! 3. reads the skips topic back: of the marks of one stored request, the
//!    first written wins; a skip whose mark is not the first says who
//!    skipped it and does nothing more (it writes the first mark again, so
//!    that compaction, which keeps the last record of a key, keeps it);
//! 4. the winner writes the request (key, value, headers) to the failed
//!    events with reason `skipped`, the operator's name in `detail` and
//!    `instance`.
//!
//! So a stored request reaches the failed events through a skip at most
//! once, however many skips of it run. A skip that stops between 2 and 4
//! leaves the request marked (never replayed) without its failed event;
//! any later skip of it sees the mark, finds no failed event, and writes
//! it. A skip made while a replay of its partition is running takes effect
//! once the instances have read the mark (within about 100 ms); a request
//! the replay delivers before then is delivered, and also listed in the
//! failed events. To be sure, skip while the control point is STORE.
//!
//! # JSON
//!
//! [`StoredEntry::to_json`] gives the shape of `sfwd stored list|show
//! --output json` and the admin API: `request_id`, `status` (`stored`,
//! `skipped`, `replayed`), `control_point`, `service`, `interface`,
//! `operation`, `key` (text, `base64:…`, or `-`), `source` (`{topic,
//! partition, offset}` where it was consumed), `stored_record` (`{topic,
//! partition, offset}` in the stored topic), `stored_at` (RFC 3339 UTC),
//! `stored_at_ms`, `size` (bytes of the value), `epoch` (the control point's
//! epoch when it was stored), `trigger` (the request id of the activation's
//! trigger, or null), `instance`, `copies`, `skipped` (null, or `{by, at,
//! at_ms}`); with `full`, also `key_bytes`, `value_bytes` (`{"utf8": …}` or
//! `{"base64": …}`) and `headers` (`[{key, value}]`).

mod backlog;
mod decode;
mod skip;
mod skips;
mod view;

pub use backlog::{Backlog, StoredBacklog, StoredError};
pub use decode::{decode_value, detail_json, DecodedValue};
pub use skip::{SkipReport, SkipResult};
pub use skips::{run_reader as run_skips_reader, Skips, SkipsError};
pub use view::{RecordAt, StoredEntry, StoredFilter, StoredStatus, StoredView};
