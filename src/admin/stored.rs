//! The stored backlog over HTTP, through [`crate::stored`]:
//!
//! - `GET /api/control-points/{name}/stored` — the stored requests of a
//!   control point, a page at a time. Query parameters (all optional):
//!   `limit` (default 100, at most 1000), `after` (the `next_after` of the
//!   previous page), `key`, `since`, `until` (a duration back from now like
//!   `1h`, or an RFC 3339 instant), `partition` (of the request topic),
//!   `all` (`true` lists the requests the replay has passed too). Answers
//!   `{control_point, topic, total, shown, next_after, undecodable,
//!   stored: [entry]}`; `next_after` is null on the last page.
//! - `GET /api/stored/{id}` — one stored request with its key, value and
//!   headers, and the value decoded with its operation's input schema.
//! - `POST /api/stored/{id}/skip` — skip it (at most once; see
//!   [`crate::stored`]); the operator is named as for store/forward.
//!   Answers 200 with `result` `skipped` or `already-skipped`, 404 for an id
//!   no stored topic holds, 409 for one already replayed, 502 when Kafka
//!   refused a write.
//!
//! Request ids contain `/`: send them percent-encoded (`%2F`) in the path.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::access::Caller;
use super::api::{find, operator};
use super::error::ApiError;
use super::AdminState;
use crate::records::AuditEvent;
use crate::stored::{
    detail_json, Backlog, RecordAt, SkipReport, SkipResult, StoredBacklog, StoredFilter,
};

/// Entries in a page when the request sets no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The largest page.
const MAX_LIMIT: usize = 1000;

/// The query parameters of the list.
const PARAMETERS: &[&str] = &[
    "limit",
    "after",
    "key",
    "since",
    "until",
    "partition",
    "all",
];

/// Where the stored backlog is read and skipped: the cluster, or a test
/// double.
pub trait StoredSource: Send + Sync + 'static {
    /// Reads the stored topics of `control_points` (every control point
    /// when empty), with the replay progress and the skips.
    fn load(&self, control_points: Vec<String>) -> BoxFuture<'_, Result<Backlog, String>>;

    /// Skips the stored request `request_id` as `by` (`operator:<name>`).
    fn skip(&self, request_id: String, by: String) -> BoxFuture<'_, Result<SkipReport, String>>;
}

impl StoredSource for StoredBacklog {
    fn load(&self, control_points: Vec<String>) -> BoxFuture<'_, Result<Backlog, String>> {
        Box::pin(async move {
            let names: Vec<&str> = control_points.iter().map(String::as_str).collect();
            StoredBacklog::load(self, &names)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn skip(&self, request_id: String, by: String) -> BoxFuture<'_, Result<SkipReport, String>> {
        Box::pin(async move {
            let mut reports = StoredBacklog::skip(self, &[request_id], &by)
                .await
                .map_err(|e| e.to_string())?;
            reports
                .pop()
                .ok_or_else(|| "the skip reported nothing".to_string())
        })
    }
}

impl AdminState {
    fn stored_source(&self) -> Result<&dyn StoredSource, ApiError> {
        self.settings().stored.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this server reads no stored backlog",
            )
            .hint("use `sfwd stored`")
        })
    }

    async fn load_stored(&self, control_points: Vec<String>) -> Result<Backlog, ApiError> {
        self.stored_source()?
            .load(control_points)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot read the stored backlog: {e}"),
                )
                .hint("is the Kafka cluster reachable from this instance?")
            })
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The filter and page size of the query.
fn page_query(params: &HashMap<String, String>) -> Result<(StoredFilter, usize), ApiError> {
    for key in params.keys() {
        if !PARAMETERS.contains(&key.as_str()) {
            let hint = match crate::topology::did_you_mean(key, PARAMETERS.iter().copied()) {
                Some(p) => format!("did you mean `{p}`?"),
                None => format!("parameters: {}", PARAMETERS.join(", ")),
            };
            return Err(bad(format!("unknown parameter `{key}`")).hint(hint));
        }
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "limit `{l}` is not a number from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let after = params
        .get("after")
        .map(|a| {
            a.split_once(':')
                .and_then(|(p, o)| {
                    Some(RecordAt {
                        partition: p.parse().ok()?,
                        offset: o.parse().ok()?,
                    })
                })
                .ok_or_else(|| {
                    bad(format!("after `{a}` is not a page position"))
                        .hint("pass the `next_after` of the previous page, like `0:42`")
                })
        })
        .transpose()?;
    let partition = params
        .get("partition")
        .map(|p| {
            p.parse::<i32>()
                .map_err(|_| bad(format!("partition `{p}` is not a number")))
        })
        .transpose()?;
    let all = match params.get("all").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(bad(format!("all must be true or false, not `{other}`"))),
    };
    let now = crate::clock::now_ms();
    let time = |key: &str| {
        params
            .get(key)
            .map(|t| crate::failed::time::parse_instant(t, now).map_err(|e| bad(e.to_string())))
            .transpose()
    };
    let filter = StoredFilter {
        key: params.get("key").cloned(),
        since_ms: time("since")?,
        until_ms: time("until")?,
        partition,
        all,
        after,
    };
    Ok((filter, limit))
}

/// `GET /api/control-points/{name}/stored`.
pub(super) async fn list(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    find(state.settings(), &name)?;
    let (filter, limit) = page_query(&params)?;
    let backlog = state.load_stored(vec![name.clone()]).await?;
    let Some(view) = backlog.view(&name) else {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the stored topic of `{name}` was not read"),
        ));
    };
    let total = view
        .list(&StoredFilter {
            after: None,
            ..filter.clone()
        })
        .len();
    let rest = view.list(&filter);
    let page = &rest[..limit.min(rest.len())];
    let next_after = (rest.len() > page.len())
        .then(|| page.last())
        .flatten()
        .map(|e| format!("{}:{}", e.record.partition, e.record.offset));
    Ok(Json(json!({
        "control_point": name,
        "topic": view.topic(),
        "total": total,
        "shown": page.len(),
        "next_after": next_after,
        "undecodable": view.undecodable(),
        "stored": page.iter().map(|e| e.to_json(view.topic(), false)).collect::<Vec<_>>(),
    })))
}

fn not_stored(backlog: &Backlog, id: &str) -> ApiError {
    let hint = match backlog.closest_id(id) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "GET /api/control-points/{name}/stored?all=true lists the request ids".to_string(),
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no stored request has request id `{id}`"),
    )
    .hint(hint)
}

/// `GET /api/stored/{id}`.
pub(super) async fn one(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let backlog = state.load_stored(Vec::new()).await?;
    let Some((entry, view, with_id)) = backlog.find(&id) else {
        return Err(not_stored(&backlog, &id));
    };
    let mut v = detail_json(&state.settings().topology, entry, view.topic());
    v["with_this_id"] = json!(with_id);
    Ok(Json(v))
}

/// `POST /api/stored/{id}/skip`.
pub(super) async fn skip(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let by = format!("operator:{}", operator(&caller, &headers, &body)?);
    let outcome = state.stored_source()?.skip(id.clone(), by.clone()).await;
    let event = match &outcome {
        Ok(report) => AuditEvent {
            control_point: report.control_point.clone(),
            message: Some(report.to_string()),
            ..state.audit_event("skip", &caller, &headers, &body, report.kind())
        },
        Err(e) => AuditEvent {
            message: Some(e.clone()),
            ..state.audit_event("skip", &caller, &headers, &body, "failed")
        },
    };
    state
        .record(AuditEvent {
            subject: Some(id.clone()),
            ..event
        })
        .await;
    let report = outcome.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, format!("cannot skip `{id}`: {e}"))
            .hint("is the Kafka cluster reachable from this instance?")
    })?;
    tracing::info!(request_id = %id, by = %by, result = report.kind(), "stored request skip over the admin API");
    let status = match &report.result {
        SkipResult::Skipped { .. }
        | SkipResult::Completed { .. }
        | SkipResult::AlreadySkipped { .. } => StatusCode::OK,
        SkipResult::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, report.to_string())
                .hint("GET /api/control-points/{name}/stored?all=true lists the request ids"))
        }
        SkipResult::AlreadyReplayed { .. } => {
            return Err(ApiError::new(StatusCode::CONFLICT, report.to_string())
                .hint("a replayed request was delivered or is in the failed events already"))
        }
        SkipResult::Failed { .. } => StatusCode::BAD_GATEWAY,
    };
    Ok((status, Json(report.to_json())))
}
