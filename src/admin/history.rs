//! `GET /api/control-points/{name}/history`: the audit trail of one
//! control point, oldest first.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::find;
use super::error::ApiError;
use super::AdminState;

/// The most events one request returns.
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// The last N events (default 50).
    limit: Option<usize>,
}

pub(super) async fn history(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    find(state.settings(), &name)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`limit` is {limit}: it must be 1 to {MAX_LIMIT}"),
        ));
    }
    let Some(audit) = &state.settings().audit else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server keeps no audit trail",
        ));
    };
    let (events, undecodable) = audit.history(Some(&name), limit).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot read the audit trail: {e}"),
        )
        .hint("is the Kafka cluster reachable from this instance?")
    })?;
    let events: Vec<Value> = events.iter().map(crate::audit::to_json).collect();
    Ok(Json(json!({
        "control_point": name,
        "events": events,
        "undecodable": undecodable,
    })))
}
