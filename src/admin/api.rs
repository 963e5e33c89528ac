//! The JSON API over the control points, and the failed events.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::backlog::backlog;
use super::error::ApiError;
use super::{not_ready, AdminSettings, AdminState};
use crate::control::{replay_key, Command, CommandKind, ControlPoint, Mode, Outcome};
use crate::rules::ChainElement;

/// Header naming the operator of a store/forward request, when the body
/// does not.
pub const OPERATOR_HEADER: &str = "x-sfwd-operator";

/// The operator name when the request names none.
const DEFAULT_OPERATOR: &str = "admin-http";

/// How long computed backlogs are reused.
const BACKLOG_TTL: Duration = Duration::from_secs(1);

/// `GET /api/control-points`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPointsView {
    /// The instance that answered.
    pub instance: String,
    /// Whether it has loaded the control state; before, the states shown
    /// are those it had at its last stop.
    pub ready: bool,
    /// Every control point of the topology, in file order.
    pub control_points: Vec<ControlPointView>,
}

/// One control point as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPointView {
    /// The control point.
    pub name: String,
    /// Its service.
    pub service: String,
    /// `FORWARD` or `STORE`.
    pub state: String,
    /// FORWARD with stored requests still being replayed.
    pub replaying: bool,
    /// Incremented by every change.
    pub epoch: u64,
    /// When the current state began (ms since the Unix epoch); absent if
    /// it never changed.
    pub since_ms: Option<i64>,
    /// The same, RFC 3339 in UTC.
    pub since: Option<String>,
    /// `initial`, `trigger`, `operator`, `auto-resume`, `replay-caught-up`.
    pub cause: String,
    /// Who made the change: an instance id or `operator:<name>`.
    pub by: Option<String>,
    /// The request whose failure activated the store last, and why.
    pub trigger: Option<TriggerView>,
    /// Stored requests not yet replayed (an upper bound while a replay
    /// runs on several partitions); absent when the stored topic's offsets
    /// could not be read.
    pub stored_backlog: Option<u64>,
    /// While replaying: how many source partitions have finished.
    pub replay: Option<ReplayView>,
    /// Open failed events of this control point (not resubmitted nor
    /// discarded); absent when the failed events could not be read.
    pub failed: Option<u64>,
}

/// The designated trigger of an activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerView {
    /// The failed request.
    pub request_id: String,
    /// The instance that saw the failure.
    pub instance: String,
    /// `Interface.operation` of the request.
    pub operation: String,
    /// The rule that matched, written out.
    pub rule: String,
    /// The exception chain, top-level first.
    pub chain: Vec<ChainElement>,
}

/// Progress of a replay over the source partitions of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayView {
    /// Source partitions of the service.
    pub partitions: usize,
    /// Those whose replay has reached the end of the stored requests.
    pub caught_up: usize,
}

/// The answer to a store or forward request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// `applied`, `no-op` (already in that state: nothing published), or
    /// `pending` (published, not yet applied by the control writer).
    pub result: String,
    /// What happened, for a person.
    pub message: String,
    /// The id of the command published, if one was.
    pub command_id: Option<String>,
    /// The control point after the command.
    pub control_point: ControlPointView,
}

/// The body of a store or forward request (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    /// Who asks; recorded as `operator:<name>`.
    operator: Option<String>,
}

pub(super) async fn list(State(state): State<AdminState>) -> Json<ControlPointsView> {
    let backlogs = state.backlogs().await;
    let failed = state.open_failed_counts().await;
    let s = state.settings();
    let control_points = s
        .topology
        .control_points()
        .map(|(service, sf)| {
            let cp = &sf.control_point;
            let mut v = view(
                s,
                &service.name,
                s.table.get(cp),
                backlogs.get(cp).copied().flatten(),
            );
            v.failed = failed.as_ref().map(|f| f.get(cp).copied().unwrap_or(0));
            v
        })
        .collect();
    Json(ControlPointsView {
        instance: s.instance.clone(),
        ready: s.table.is_ready(),
        control_points,
    })
}

pub(super) async fn one(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<ControlPointView>, ApiError> {
    let service = find(state.settings(), &name)?;
    let now = state.settings().table.get(&name);
    Ok(Json(state.counted_view(&service, now).await))
}

pub(super) async fn store(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    command(state, name, &headers, &body, Mode::Store).await
}

pub(super) async fn forward(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    command(state, name, &headers, &body, Mode::Forward).await
}

/// Publishes an operator command, unless the control point is already
/// where it asks (the state machine's no-op), and waits a little for the
/// control writer to apply it.
async fn command(
    state: AdminState,
    name: String,
    headers: &HeaderMap,
    body: &[u8],
    wanted: Mode,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    let s = state.settings();
    let service = find(s, &name)?;
    if !s.table.is_ready() {
        return Err(not_ready());
    }
    let operator = operator(headers, body)?;
    let current = s.table.get(&name);
    let at_ms = crate::clock::now_ms();
    let n = state.inner.commands_sent.fetch_add(1, Ordering::Relaxed);
    let by = format!("operator:{operator}");
    let command = Command {
        id: format!("{by}@{}-{at_ms}-{n}", s.instance),
        kind: match wanted {
            Mode::Store => CommandKind::Store,
            Mode::Forward => CommandKind::Forward,
        },
        observed_epoch: current.epoch,
        by,
        at_ms,
    };
    // The state machine decides whether there is anything to do; the
    // control writer decides again on the state it holds.
    match current.clone().apply(&command) {
        Outcome::Applied { .. } => {}
        Outcome::NoOp(why) => {
            return Ok(answer(
                StatusCode::OK,
                "no-op",
                why.to_string(),
                None,
                state.counted_view(&service, current).await,
            ))
        }
        Outcome::Refused(why) => return Err(ApiError::new(StatusCode::CONFLICT, why.to_string())),
    }
    let mut changes = s.table.subscribe();
    s.commands.send(&name, &command).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot publish the {} command: {e}", command.kind.name()),
        )
        .hint("is the Kafka cluster reachable from this instance?")
    })?;
    tracing::info!(control_point = %name, command = command.kind.name(), by = %command.by, id = %command.id, "operator command published");
    let deadline = tokio::time::sleep(s.decision_timeout);
    tokio::pin!(deadline);
    loop {
        if s.table.get(&name).command_id.as_deref() == Some(command.id.as_str()) {
            break;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = &mut deadline => break,
        }
    }
    let now = s.table.get(&name);
    let id = Some(command.id.clone());
    let (status, result, message) = if now.command_id == id {
        let message = match now.mode {
            Mode::Store => format!(
                "`{name}` is storing (epoch {}): new requests for `{service}` go to its stored topic",
                now.epoch
            ),
            Mode::Forward => format!(
                "`{name}` is forwarding (epoch {}): its stored requests are replayed in order",
                now.epoch
            ),
        };
        (StatusCode::OK, "applied", message)
    } else if now.mode == wanted {
        let message = format!(
            "`{name}` was already {} when the command arrived (changed by {}); nothing changed",
            now.mode, now.by
        );
        (StatusCode::OK, "no-op", message)
    } else {
        let message = format!(
            "command published; the control writer has not applied it within {:?}. It is \
             applied when the instance that owns the control point's command partition reads it",
            s.decision_timeout
        );
        (StatusCode::ACCEPTED, "pending", message)
    };
    let after = state.counted_view(&service, now).await;
    Ok(answer(status, result, message, id, after))
}

fn answer(
    status: StatusCode,
    result: &str,
    message: String,
    command_id: Option<String>,
    control_point: ControlPointView,
) -> (StatusCode, Json<CommandOutcome>) {
    (
        status,
        Json(CommandOutcome {
            result: result.to_string(),
            message,
            command_id,
            control_point,
        }),
    )
}

/// The service of control point `name`, or a 404 with a did-you-mean.
pub(super) fn find(s: &AdminSettings, name: &str) -> Result<String, ApiError> {
    if let Some((service, _)) = s
        .topology
        .control_points()
        .find(|(_, sf)| sf.control_point == name)
    {
        return Ok(service.name.clone());
    }
    let names: Vec<&str> = s
        .topology
        .control_points()
        .map(|(_, sf)| sf.control_point.as_str())
        .collect();
    let hint = match crate::topology::did_you_mean(name, names.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if names.is_empty() => "this topology has no control points".to_string(),
        None => format!("control points: {}", names.join(", ")),
    };
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("unknown control point `{name}`"),
    )
    .hint(hint))
}

/// The operator's name: the body's `operator`, else the operator header,
/// else `admin-http`.
pub(super) fn operator(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: CommandBody = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("unreadable body: {e}"))
                .hint(r#"send no body, or JSON like {"operator": "alice"}"#)
        })?;
        parsed.operator
    };
    let from_header = match headers.get(OPERATOR_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("the {OPERATOR_HEADER} header is not text"),
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    let name = from_body
        .or(from_header)
        .unwrap_or_else(|| DEFAULT_OPERATOR.to_string());
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid operator name `{name}`"),
        )
        .hint("1 to 64 letters, digits, `-`, `_`, `.` or `@`"));
    }
    Ok(name)
}

fn view(
    s: &AdminSettings,
    service: &str,
    state: ControlPoint,
    stored_backlog: Option<u64>,
) -> ControlPointView {
    let changed = state.epoch > 0;
    let replay = match (state.replaying, s.layouts.get(&state.name)) {
        (true, Some(layout)) => Some(ReplayView {
            partitions: layout.sources.len(),
            caught_up: layout
                .sources
                .iter()
                .filter(|(t, p)| {
                    s.table
                        .replay_progress(&replay_key(&state.name, t, *p))
                        .done_epoch
                        >= state.epoch as i64
                })
                .count(),
        }),
        _ => None,
    };
    ControlPointView {
        service: service.to_string(),
        state: state.mode.as_str().to_string(),
        replaying: state.replaying,
        epoch: state.epoch,
        since_ms: changed.then_some(state.since_ms),
        since: changed.then(|| crate::failed::time::format_utc(state.since_ms)),
        cause: state.cause.as_str().to_string(),
        by: changed.then_some(state.by),
        trigger: state.trigger.map(|t| TriggerView {
            request_id: t.request_id,
            instance: t.instance,
            operation: format!("{}.{}", t.interface, t.operation),
            rule: t.rule,
            chain: t.chain.into_elements(),
        }),
        stored_backlog,
        replay,
        failed: None,
        name: state.name,
    }
}

impl AdminState {
    /// The view of one control point's `state`, with its backlog and
    /// failed count.
    async fn counted_view(&self, service: &str, state: ControlPoint) -> ControlPointView {
        let name = state.name.clone();
        let backlog = self.backlogs().await.get(&name).copied().flatten();
        let failed = self.open_failed_counts().await;
        let mut v = view(self.settings(), service, state, backlog);
        v.failed = failed.map(|f| f.get(&name).copied().unwrap_or(0));
        v
    }

    /// The backlog of every control point, reused for [`BACKLOG_TTL`].
    async fn backlogs(&self) -> super::Backlogs {
        let mut cache = self.inner.backlogs.lock().await;
        if let Some((at, backlogs)) = &*cache {
            if at.elapsed() < BACKLOG_TTL {
                return backlogs.clone();
            }
        }
        let state = self.clone();
        let fresh = tokio::task::spawn_blocking(move || state.compute_backlogs())
            .await
            .unwrap_or_default();
        *cache = Some((Instant::now(), fresh.clone()));
        fresh
    }

    fn compute_backlogs(&self) -> super::Backlogs {
        let s = self.settings();
        s.layouts
            .iter()
            .map(|(cp, layout)| {
                let marks: Result<Vec<(i64, i64)>, String> = (0..layout.partitions)
                    .map(|p| s.offsets.watermarks(&layout.topic, p))
                    .collect();
                let b = match marks {
                    Ok(marks) => Some(backlog(layout, &marks, |t, p| {
                        s.table.replay_progress(&replay_key(cp, t, p))
                    })),
                    Err(e) => {
                        tracing::debug!(topic = %layout.topic, error = %e, "cannot read the stored topic's offsets");
                        None
                    }
                };
                (cp.clone(), b)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        let none = HeaderMap::new();
        assert_eq!(operator(&none, b"").unwrap(), "admin-http");
        assert_eq!(
            operator(&none, br#"{"operator":"alice"}"#).unwrap(),
            "alice"
        );
        let mut h = HeaderMap::new();
        h.insert(OPERATOR_HEADER, "bob".parse().unwrap());
        assert_eq!(operator(&h, b"").unwrap(), "bob");
        assert_eq!(operator(&h, br#"{"operator":"alice"}"#).unwrap(), "alice");
        assert_eq!(
            operator(&none, br#"{"operator":"a b"}"#)
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            operator(&none, br#"{"who":"x"}"#).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
