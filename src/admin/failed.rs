//! `GET /api/failed`: the failed events, through the failed-event manager
//! ([`crate::failed`]), filtered like `sfwd failed list`.
//!
//! Query parameters (all optional): `control_point`, `service`,
//! `operation` (`op` or `Interface.op`), `reason`, `since`, `until` (a
//! duration back from now like `1h`, or an RFC 3339 instant), `status`
//! (`open` by default, `discarded`, `resubmitting`, `resubmitted`, or
//! `all`), `full` (`true` adds key, value and headers), `limit` (default
//! 500, the oldest first).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AdminState;
use crate::failed::{FailedEvents, FailedView, Filter, Status, StatusFilter};
use crate::records::FailureReason;

/// How long a read of the failed events is reused: the web page asks for
/// the counts every second, and each read goes through the whole topic.
const FAILED_TTL: Duration = Duration::from_secs(5);

/// Entries returned when the request sets no `limit`.
const DEFAULT_LIMIT: usize = 500;

/// The query parameters `/api/failed` knows.
const PARAMETERS: &[&str] = &[
    "control_point",
    "service",
    "operation",
    "reason",
    "since",
    "until",
    "status",
    "full",
    "limit",
];

/// Where the failed events are read from: the cluster, or a test double.
pub trait FailedSource: Send + Sync + 'static {
    /// Reads every failed event and action, collapsed.
    fn load(&self) -> BoxFuture<'_, Result<FailedView, String>>;
}

impl FailedSource for FailedEvents {
    fn load(&self) -> BoxFuture<'_, Result<FailedView, String>> {
        Box::pin(async move { FailedEvents::load(self).await.map_err(|e| e.to_string()) })
    }
}

/// The last read of the failed events, and when it was made.
pub(super) type FailedCache = Option<(Instant, Result<Arc<FailedView>, String>)>;

impl AdminState {
    /// The failed events, read at most once per [`FailedTTL`]; `None` when
    /// this server has no failed-event source.
    ///
    /// [`FailedTTL`]: FAILED_TTL
    pub(super) async fn failed_view(&self) -> Option<Result<Arc<FailedView>, String>> {
        let source = self.settings().failed.clone()?;
        let mut cache = self.inner.failed.lock().await;
        if let Some((at, view)) = &*cache {
            if at.elapsed() < FAILED_TTL {
                return Some(view.clone());
            }
        }
        let view = source.load().await.map(Arc::new);
        if let Err(e) = &view {
            tracing::warn!(error = %e, "cannot read the failed events");
        }
        *cache = Some((Instant::now(), view.clone()));
        Some(view)
    }

    /// Open failed events per control point, if they can be read.
    pub(super) async fn open_failed_counts(&self) -> Option<HashMap<String, u64>> {
        let view = self.failed_view().await?.ok()?;
        Some(
            view.counts_by_control_point()
                .into_iter()
                .map(|(cp, counts)| (cp, counts.open as u64))
                .collect(),
        )
    }
}

pub(super) async fn list(
    State(state): State<AdminState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let s = state.settings();
    let filter = filter(&state, &params)?;
    let full = flag(&params, "full")?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit `{l}` is not a number"),
            )
        })?,
    };
    let view = match state.failed_view().await {
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this server reads no failed events",
            )
            .hint("use `sfwd failed list`"))
        }
        Some(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot read the failed events: {e}"),
            )
            .hint(format!(
                "is the Kafka cluster reachable? the topic is {}",
                s.topology.failed_topic()
            )))
        }
        Some(Ok(view)) => view,
    };
    let entries = view.list(&filter);
    let shown: Vec<Value> = entries
        .iter()
        .take(limit)
        .map(|e| e.to_json(full))
        .collect();
    Ok(Json(json!({
        "total": entries.len(),
        "shown": shown.len(),
        "undecodable": view.undecodable(),
        "failed_events": shown,
    })))
}

/// The filter of the query, every name checked against the topology.
fn filter(state: &AdminState, params: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, e);
    for key in params.keys() {
        if !PARAMETERS.contains(&key.as_str()) {
            let hint = match crate::topology::did_you_mean(key, PARAMETERS.iter().copied()) {
                Some(p) => format!("did you mean `{p}`?"),
                None => format!("parameters: {}", PARAMETERS.join(", ")),
            };
            return Err(bad(format!("unknown parameter `{key}`")).hint(hint));
        }
    }
    let topology = &state.settings().topology;
    let known = |what: &str, value: &str, names: Vec<String>| -> Result<(), ApiError> {
        if names.iter().any(|n| n == value) {
            return Ok(());
        }
        let hint = crate::topology::did_you_mean(value, names.iter().map(String::as_str))
            .map(|n| format!("did you mean `{n}`?"))
            .unwrap_or_else(|| format!("{what}s: {}", names.join(", ")));
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("unknown {what} `{value}`")).hint(hint))
    };
    if let Some(cp) = params.get("control_point") {
        let names = topology
            .control_points()
            .map(|(_, sf)| sf.control_point.clone())
            .collect();
        known("control point", cp, names)?;
    }
    if let Some(service) = params.get("service") {
        known(
            "service",
            service,
            topology.services.iter().map(|s| s.name.clone()).collect(),
        )?;
    }
    if let Some(op) = params.get("operation") {
        let mut names = Vec::new();
        for s in &topology.services {
            for (i, o) in s.operations() {
                names.push(format!("{}.{}", i.name, o.name));
                names.push(o.name.clone());
            }
        }
        known("operation", op, names)?;
    }
    let reason = params
        .get("reason")
        .map(|r| FailureReason::from_str(r).map_err(|e| bad(e.to_string())))
        .transpose()?;
    let now = crate::clock::now_ms();
    let time = |key: &str| {
        params
            .get(key)
            .map(|t| crate::failed::time::parse_instant(t, now).map_err(|e| bad(e.to_string())))
            .transpose()
    };
    let status = match params.get("status").map(String::as_str) {
        None => StatusFilter::Open,
        Some("all") => StatusFilter::Any,
        Some(s) => StatusFilter::Is(
            Status::from_str(s)
                .map_err(|e| bad(e.to_string()).hint("or `all` for every status"))?,
        ),
    };
    Ok(Filter {
        control_point: params.get("control_point").cloned(),
        service: params.get("service").cloned(),
        operation: params.get("operation").cloned(),
        reason,
        since_ms: time("since")?,
        until_ms: time("until")?,
        status,
    })
}

fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match params.get(key).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{key} must be true or false, not `{other}`"),
        )),
    }
}
