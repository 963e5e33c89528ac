//! The JSON API over the control points, and the failed events.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::access::{valid_principal, Caller};
use super::backlog::backlog;
use super::error::ApiError;
use super::progress::replay_view;
use super::{not_ready, AdminSettings, AdminState};
use crate::control::{replay_key, Command, CommandKind, ControlPoint, Mode, Outcome, Pace};
use crate::records::AuditEvent;
use crate::rules::ChainElement;

/// Header naming the operator of a store/forward request, when the body
/// does not.
pub const OPERATOR_HEADER: &str = "x-sfwd-operator";

/// The operator name when the request names none.
const DEFAULT_OPERATOR: &str = "admin-http";

/// How long the stored topics' watermarks are reused.
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

pub use super::progress::{PartitionReplay, ReplayView};

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
    /// For forward and pace: the replay's cap across the cluster
    /// (`500/s`, `600/min`, `unlimited`; for pace also `default`).
    rate: Option<String>,
}

/// The `rate` of a command body: `None` when absent, `Some(None)` for
/// `default` (the topology's).
fn requested_pace(body: &[u8]) -> Result<Option<Option<Pace>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: CommandBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("unreadable body: {e}"))
            .hint(r#"send JSON like {"operator": "alice", "rate": "200/s"}"#)
    })?;
    parsed
        .rate
        .as_deref()
        .map(Pace::parse_setting)
        .transpose()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("`rate`: {e}"))
                .hint("e.g. \"200/s\", \"600/min\", \"unlimited\" or \"default\"")
        })
}

pub(super) async fn list(State(state): State<AdminState>) -> Json<ControlPointsView> {
    let watermarks = state.watermarks().await;
    let failed = state.open_failed_counts().await;
    let s = state.settings();
    let control_points = s
        .topology
        .control_points()
        .map(|(service, sf)| {
            let cp = &sf.control_point;
            let marks = watermarks.get(cp).and_then(|m| m.as_deref());
            let mut v = view(s, &service.name, s.table.get(cp), marks);
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
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    switch(state, name, caller, headers, body, Mode::Store).await
}

pub(super) async fn forward(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    switch(state, name, caller, headers, body, Mode::Forward).await
}

/// A store or forward, and its record in the audit trail.
async fn switch(
    state: AdminState,
    name: String,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
    wanted: Mode,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    let answer = command(
        state.clone(),
        name.clone(),
        &caller,
        &headers,
        &body,
        wanted,
    )
    .await;
    let action = match wanted {
        Mode::Store => "store",
        Mode::Forward => "forward",
    };
    state
        .audit_command(action, &name, &caller, &headers, &body, &answer)
        .await;
    answer
}

/// `POST /api/control-points/{name}/pace` with `{"rate": "50/s"}`: the
/// pace of the running replay (or, while storing, of the next one).
pub(super) async fn pace(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    let answer = set_pace(&state, &name, &caller, &headers, &body).await;
    state
        .audit_command("pace", &name, &caller, &headers, &body, &answer)
        .await;
    answer
}

async fn set_pace(
    state: &AdminState,
    name: &str,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    let s = state.settings();
    let service = find(s, name)?;
    if !s.table.is_ready() {
        return Err(not_ready());
    }
    let operator = operator(caller, headers, body)?;
    let Some(pace) = requested_pace(body)? else {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "no `rate` given").hint(
                r#"send JSON like {"rate": "50/s"}, {"rate": "unlimited"} or {"rate": "default"}"#,
            ),
        );
    };
    let current = s.table.get(name);
    let command = state.operator_command(&operator, CommandKind::Pace(pace), current.epoch);
    match current.clone().apply(&command) {
        Outcome::Applied { .. } => {}
        Outcome::NoOp(why) => {
            let view = state.counted_view(&service, current).await;
            return Ok(answer(StatusCode::OK, "no-op", why.to_string(), None, view));
        }
        Outcome::Refused(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("`{name}` is FORWARD with nothing to replay: a pace applies to a replay"),
            )
            .hint("set it while the control point is storing to pace the next replay"))
        }
    }
    let now = state.publish_and_wait(name, &command).await?;
    let id = Some(command.id.clone());
    let view = state.counted_view(&service, now.clone()).await;
    if now.command_id == id {
        let pace = view
            .replay
            .as_ref()
            .and_then(|r| r.pace.clone())
            .unwrap_or_else(|| "no cap".into());
        let message = format!("`{name}` replays at {pace}");
        Ok(answer(StatusCode::OK, "applied", message, id, view))
    } else {
        Ok(answer(
            StatusCode::ACCEPTED,
            "pending",
            pending_message(s),
            id,
            view,
        ))
    }
}

fn pending_message(s: &AdminSettings) -> String {
    format!(
        "command published; the control writer has not applied it within {:?}. It is \
         applied when the instance that owns the control point's command partition reads it",
        s.decision_timeout
    )
}

/// Publishes an operator command, unless the control point is already
/// where it asks (the state machine's no-op), and waits a little for the
/// control writer to apply it.
async fn command(
    state: AdminState,
    name: String,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    wanted: Mode,
) -> Result<(StatusCode, Json<CommandOutcome>), ApiError> {
    let s = state.settings();
    let service = find(s, &name)?;
    if !s.table.is_ready() {
        return Err(not_ready());
    }
    let operator = operator(caller, headers, body)?;
    let pace = requested_pace(body)?;
    let current = s.table.get(&name);
    let kind = match wanted {
        Mode::Store => CommandKind::Store,
        Mode::Forward => CommandKind::Forward,
    };
    let command = state.operator_command(&operator, kind, current.epoch);
    let paced = match (wanted, pace) {
        (Mode::Store, Some(_)) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "`rate` applies to forward and pace, not store")
                .hint("send it with forward, or to /pace"))
        }
        (Mode::Forward, Some(_)) if current.mode == Mode::Forward => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("`{name}` is already forwarding: change the pace of its replay with POST /api/control-points/{name}/pace"),
            ))
        }
        (_, pace) => pace.map(|p| state.operator_command(&operator, CommandKind::Pace(p), current.epoch)),
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
    if let Some(paced) = &paced {
        // Applied before the forward, in the same partition: the replay
        // starts at this pace.
        state.publish(&name, paced).await?;
    }
    let now = state.publish_and_wait(&name, &command).await?;
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
        (StatusCode::ACCEPTED, "pending", pending_message(s))
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
    if let Some((service, _)) = s.topology.control_point(name) {
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

/// The operator's name: the token's principal when the caller presented
/// one (what the client says is then ignored); otherwise the body's
/// `operator`, else the operator header, else `admin-http`.
pub(super) fn operator(
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
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
    if let Some(principal) = &caller.principal {
        return Ok(principal.clone());
    }
    let name = from_body
        .or(from_header)
        .unwrap_or_else(|| DEFAULT_OPERATOR.to_string());
    if !valid_principal(&name) {
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
    watermarks: Option<&[(i64, i64)]>,
) -> ControlPointView {
    let changed = state.epoch > 0;
    let progress = |t: &str, p: i32| s.table.replay_progress(&replay_key(&state.name, t, p));
    let layout = s.layouts.get(&state.name);
    let stored_backlog = layout
        .zip(watermarks)
        .map(|(layout, marks)| backlog(layout, marks, progress));
    let replay = match (state.replaying, layout) {
        (true, Some(layout)) => {
            let configured = s
                .topology
                .control_point(&state.name)
                .and_then(|(_, sf)| sf.replay.rate);
            Some(replay_view(
                &state,
                layout,
                watermarks,
                progress,
                configured,
                crate::clock::now_ms(),
            ))
        }
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
    /// An audit event of `action` asked by `caller` through the API, with
    /// `result`; the actor is the operator name the request is recorded
    /// under.
    pub(super) fn audit_event(
        &self,
        action: &str,
        caller: &Caller,
        headers: &HeaderMap,
        body: &[u8],
        result: &str,
    ) -> AuditEvent {
        let actor = operator(caller, headers, body)
            .or_else(|_| caller.principal.clone().ok_or(()))
            .unwrap_or_else(|_| DEFAULT_OPERATOR.to_string());
        AuditEvent {
            origin: Some(caller.from_text()),
            ..crate::audit::event(
                &self.settings().instance,
                action,
                "admin-api",
                &format!("operator:{actor}"),
                result,
            )
        }
    }

    /// Appends `event` to the audit trail, if the server has one.
    pub(super) async fn record(&self, event: AuditEvent) {
        if let Some(audit) = &self.settings().audit {
            audit.record(event).await;
        }
    }

    /// Records a store, forward or pace request and its answer.
    async fn audit_command(
        &self,
        action: &str,
        name: &str,
        caller: &Caller,
        headers: &HeaderMap,
        body: &[u8],
        answer: &Result<(StatusCode, Json<CommandOutcome>), ApiError>,
    ) {
        let (result, command_id, message) = match answer {
            Ok((_, Json(outcome))) => (
                outcome.result.clone(),
                outcome.command_id.clone(),
                outcome.message.clone(),
            ),
            Err(e) if e.status.is_client_error() => ("refused".into(), None, e.error.clone()),
            Err(e) => ("failed".into(), None, e.error.clone()),
        };
        let detail = requested_pace(body).ok().flatten().map(|pace| match pace {
            Some(p) => format!("rate {p}"),
            None => "rate default".into(),
        });
        let event = AuditEvent {
            control_point: Some(name.to_string()),
            command_id,
            detail,
            message: Some(message),
            ..self.audit_event(action, caller, headers, body, &result)
        };
        self.record(event).await;
    }

    /// A command from `operator`, with an id unique to this server.
    fn operator_command(&self, operator: &str, kind: CommandKind, observed_epoch: u64) -> Command {
        let at_ms = crate::clock::now_ms();
        let n = self.inner.commands_sent.fetch_add(1, Ordering::Relaxed);
        let by = format!("operator:{operator}");
        Command {
            id: format!("{by}@{}-{at_ms}-{n}", self.settings().instance),
            kind,
            observed_epoch,
            by,
            at_ms,
        }
    }

    /// Publishes `command` for control point `name`.
    async fn publish(&self, name: &str, command: &Command) -> Result<(), ApiError> {
        self.settings()
            .commands
            .send(name, command)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot publish the {} command: {e}", command.kind.name()),
                )
                .hint("is the Kafka cluster reachable from this instance?")
            })?;
        tracing::info!(control_point = %name, command = command.kind.name(), by = %command.by, id = %command.id, "operator command published");
        Ok(())
    }

    /// Publishes `command` and waits, at most the decision timeout, for the
    /// control writer to apply it; returns the state then.
    async fn publish_and_wait(
        &self,
        name: &str,
        command: &Command,
    ) -> Result<ControlPoint, ApiError> {
        let s = self.settings();
        let mut changes = s.table.subscribe();
        self.publish(name, command).await?;
        let deadline = tokio::time::sleep(s.decision_timeout);
        tokio::pin!(deadline);
        loop {
            if s.table.get(name).command_id.as_deref() == Some(command.id.as_str()) {
                break;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = &mut deadline => break,
            }
        }
        Ok(s.table.get(name))
    }

    /// The view of one control point's `state`, with its backlog and
    /// failed count.
    async fn counted_view(&self, service: &str, state: ControlPoint) -> ControlPointView {
        let name = state.name.clone();
        let watermarks = self.watermarks().await;
        let marks = watermarks.get(&name).and_then(|m| m.as_deref());
        let failed = self.open_failed_counts().await;
        let mut v = view(self.settings(), service, state, marks);
        v.failed = failed.map(|f| f.get(&name).copied().unwrap_or(0));
        v
    }

    /// The watermarks of every control point's stored topic, reused for
    /// [`BACKLOG_TTL`].
    async fn watermarks(&self) -> super::Watermarks {
        let mut cache = self.inner.watermarks.lock().await;
        if let Some((at, marks)) = &*cache {
            if at.elapsed() < BACKLOG_TTL {
                return marks.clone();
            }
        }
        let state = self.clone();
        let fresh = tokio::task::spawn_blocking(move || state.read_watermarks())
            .await
            .unwrap_or_default();
        *cache = Some((Instant::now(), fresh.clone()));
        fresh
    }

    fn read_watermarks(&self) -> super::Watermarks {
        let s = self.settings();
        s.layouts
            .iter()
            .map(|(cp, layout)| {
                let marks: Result<Vec<(i64, i64)>, String> = (0..layout.partitions)
                    .map(|p| s.offsets.watermarks(&layout.topic, p))
                    .collect();
                let marks = marks
                    .inspect_err(|e| tracing::debug!(topic = %layout.topic, error = %e, "cannot read the stored topic's offsets"))
                    .ok();
                (cp.clone(), marks)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        let anonymous = Caller {
            principal: None,
            role: crate::admin::Role::Operator,
            from: None,
        };
        let operator = |h: &HeaderMap, body: &[u8]| super::operator(&anonymous, h, body);
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
        let alice = Caller {
            principal: Some("alice".into()),
            ..anonymous.clone()
        };
        assert_eq!(
            super::operator(&alice, &h, br#"{"operator":"mallory"}"#).unwrap(),
            "alice",
            "a token's principal is recorded, whatever the client says"
        );
    }
}
