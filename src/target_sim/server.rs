//! The HTTP side of the simulated target: the routers, the handlers, and
//! the listener that is closed for `refuse` and bound again after.
//!
//! Each time the main port is bound, a new *generation* is served by
//! `axum::serve` with its own graceful-shutdown signal. Switching to
//! `refuse` fires that signal: axum stops accepting and drops the listener
//! at once (requests in flight still finish on their connections), which
//! closes the socket so that new connections are refused.

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::Listener;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::{Listening, Mode, Received, TargetSim, KEY_HEADER, MAX_RECORDED_BODY};
use crate::bindings::{OPERATION_HEADER, REQUEST_ID_HEADER};

/// How long requests in flight may take to finish at shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long a control request waits for the listener to follow a mode.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);
/// First and longest wait between attempts to bind the port again.
const REBIND_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// The body of the `error500` answer: the chain form read by
/// [`crate::bindings::failure`].
const ERROR_500_BODY: &str = r#"{"exception":{"type":"EisConnectionLost","message":"pool exhausted","cause":{"type":"SQLException","message":"connection refused by db-1:5432"}}}"#;

/// Serves the main port, re-binding it as the mode says, and the control
/// port if any, until shutdown; then drains and marks the target stopped.
pub(super) async fn supervise(sim: TargetSim, first: TcpListener, control: Option<TcpListener>) {
    let shared = sim.shared.clone();
    let addr = shared.addr;
    let mut mode = shared.mode.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut tasks = JoinSet::new();

    if let Some(control) = control {
        let mut stop = shared.shutdown.subscribe();
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tasks.spawn(serve(control, control_router(sim.clone()), stop));
    }

    let router = main_router(sim);
    let mut listener = Some(first);
    let mut backoff = REBIND_BACKOFF.0;
    loop {
        // Generations that have finished draining.
        while tasks.try_join_next().is_some() {}

        if let Some(bound) = listener.take() {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (closed_tx, closed_rx) = oneshot::channel::<()>();
            let generation = Generation {
                listener: Some(bound),
                closed: Some(closed_tx),
                accepted: shared.connections.clone(),
            };
            let stop = async move {
                let _ = stop_rx.await;
            };
            tasks.spawn(serve(generation, router.clone(), stop));
            shared.listening.send_replace(Listening::Open);

            let stopping = tokio::select! {
                _ = mode.wait_for(Mode::refuses) => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            let _ = stop_tx.send(());
            // Resolves when the generation drops its listener.
            let _ = closed_rx.await;
            shared.listening.send_replace(Listening::Closed);
            if stopping {
                break;
            }
            info!(%addr, "target-sim listener closed: connections are refused");
        } else {
            let serve_again = tokio::select! {
                _ = mode.wait_for(|m| !m.refuses()) => true,
                _ = shutdown.wait_for(|s| *s) => false,
            };
            if !serve_again {
                break;
            }
            match TcpListener::bind(addr).await {
                Ok(bound) => {
                    info!(%addr, "target-sim listening again");
                    listener = Some(bound);
                    backoff = REBIND_BACKOFF.0;
                }
                Err(e) => {
                    error!(%addr, error = %e, retry_in = ?backoff, "target-sim cannot bind its port again");
                    shared.listening.send_replace(Listening::BindFailed(
                        e.kind(),
                        format!("binding {addr} again: {e}"),
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => break,
                    }
                    backoff = (backoff * 2).min(REBIND_BACKOFF.1);
                }
            }
        }
    }

    shared.listening.send_replace(Listening::Closed);
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(%addr, deadline = ?DRAIN_DEADLINE, "target-sim connections still open at shutdown: closing them");
        tasks.shutdown().await;
    }
    shared.stopped.send_replace(true);
}

/// Serves `router` on `listener` until `stop` resolves and every
/// connection has finished.
async fn serve<L>(listener: L, router: Router, stop: impl Future<Output = ()> + Send + 'static)
where
    L: Listener,
    L::Addr: Debug,
{
    // With graceful shutdown, serving never fails: errors on single
    // connections are handled inside axum.
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await;
}

/// One binding of the main port; says when its socket is closed.
struct Generation {
    listener: Option<TcpListener>,
    closed: Option<oneshot::Sender<()>>,
    /// Counts the connections accepted.
    accepted: Arc<AtomicU64>,
}

impl Listener for Generation {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let listener = self
            .listener
            .as_mut()
            .expect("a generation's listener is only taken when it is dropped");
        let accepted = Listener::accept(listener).await;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        accepted
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // Close the socket first, then tell the supervisor it is closed.
        drop(self.listener.take());
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

/// The control endpoints, and every other path as a request.
fn main_router(sim: TargetSim) -> Router {
    control_routes().fallback(request).with_state(sim)
}

/// The control endpoints only.
fn control_router(sim: TargetSim) -> Router {
    control_routes().fallback(unknown_control).with_state(sim)
}

fn control_routes() -> Router<TargetSim> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/mode/{mode}", post(set_mode))
        .route("/_sim/received", get(received))
        .route("/_sim/duplicates", get(duplicates))
        .route("/_sim/reset", post(reset))
        .route("/_sim", any(unknown_control))
        .route("/_sim/", any(unknown_control))
        .route("/_sim/{*rest}", any(unknown_control))
}

/// The answer of `unavailable` (and of `slow-unavailable`, after its delay).
fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "service unavailable (simulated)\n",
    )
        .into_response()
}

/// A request to the target, answered by the mode it arrives in.
async fn request(State(sim): State<TargetSim>, request: Request) -> Response {
    sim.shared.attempts.fetch_add(1, Ordering::Relaxed);
    let _open = Open::enter(&sim);
    let mode = sim.mode();
    let (parts, body) = request.into_parts();
    let body = match read_capped(body, MAX_RECORDED_BODY).await {
        Ok(body) => body,
        Err(e) => {
            warn!(error = %e, "target-sim could not read a request body");
            return (StatusCode::BAD_REQUEST, "could not read the request body\n").into_response();
        }
    };
    match mode {
        Mode::Up => {}
        Mode::Slow { delay } | Mode::SlowUnavailable { delay } => {
            let mut stop = sim.shared.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => {
                    return (StatusCode::SERVICE_UNAVAILABLE, "target-sim is shutting down\n").into_response();
                }
            }
            if matches!(mode, Mode::SlowUnavailable { .. }) {
                return unavailable();
            }
        }
        Mode::Unavailable => return unavailable(),
        Mode::Refuse => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONNECTION, "close")],
                "refusing connections (simulated)\n",
            )
                .into_response();
        }
        Mode::Error500 => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                ERROR_500_BODY,
            )
                .into_response();
        }
        Mode::BadRequest => {
            return (StatusCode::BAD_REQUEST, "bad request (simulated)\n").into_response();
        }
        Mode::Overloaded { retry_after } => {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds.to_string())],
                "too many requests (simulated)\n",
            )
                .into_response();
        }
    }
    let received = Received {
        request_id: header_text(&parts.headers, REQUEST_ID_HEADER),
        operation: header_text(&parts.headers, OPERATION_HEADER),
        key: header_text(&parts.headers, KEY_HEADER),
        traceparent: header_text(&parts.headers, "traceparent"),
        redelivery: parts
            .headers
            .contains_key(crate::bindings::REDELIVERY_HEADER),
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        body,
        at: SystemTime::now(),
    };
    let answer = json!({ "ok": true, "request_id": received.request_id });
    sim.record(received);
    Json(answer).into_response()
}

/// A request being answered: counted in `open` until dropped, and in
/// `most_open` at its peak.
struct Open<'s>(&'s TargetSim);

impl<'s> Open<'s> {
    fn enter(sim: &'s TargetSim) -> Open<'s> {
        let now = sim.shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        sim.shared.most_open.fetch_max(now, Ordering::Relaxed);
        Open(sim)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a body to its end, keeping its first `cap` bytes.
async fn read_capped(body: Body, cap: usize) -> Result<Vec<u8>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(kept)
}

/// A header's value as text (invalid UTF-8 replaced), if present.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `GET /_sim/state`.
async fn state(State(sim): State<TargetSim>) -> Json<Value> {
    Json(json!({
        "mode": sim.mode().to_string(),
        "listening": sim.is_listening(),
        "received": sim.shared.received_count.borrow().to_owned(),
        "attempts": sim.attempts(),
        "most_concurrent": sim.most_concurrent(),
        "connections": sim.connections(),
    }))
}

/// The query of `POST /_sim/mode/slow?delay=2s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeQuery {
    /// The delay of `slow` or `slow-unavailable`.
    delay: Option<String>,
}

/// `POST /_sim/mode/{mode}`.
async fn set_mode(
    State(sim): State<TargetSim>,
    Path(name): Path<String>,
    Query(query): Query<ModeQuery>,
) -> Response {
    let text = match (name.as_str(), query.delay) {
        (slow @ ("slow" | "slow-unavailable"), Some(delay)) => format!("{slow}:{delay}"),
        (_, None) => name,
        (other, Some(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("`delay` only applies to `slow` and `slow-unavailable`, not to `{other}`"),
            )
        }
    };
    let mode: Mode = match text.parse() {
        Ok(mode) => mode,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let previous = sim.mode();
    sim.set_mode(mode);
    let answer = |status: StatusCode, listening: &str| {
        (
            status,
            Json(json!({
                "mode": mode.to_string(),
                "previous": previous.to_string(),
                "listening": listening,
            })),
        )
            .into_response()
    };
    match tokio::time::timeout(SETTLE_DEADLINE, sim.settled()).await {
        Ok(Ok(())) if mode.refuses() => answer(StatusCode::OK, "closed"),
        Ok(Ok(())) => answer(StatusCode::OK, "open"),
        Ok(Err(e)) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("mode set to `{mode}`, but the listener did not follow: {e}"),
        ),
        Err(_) => answer(StatusCode::ACCEPTED, "changing"),
    }
}

/// `GET /_sim/received`.
async fn received(State(sim): State<TargetSim>) -> Json<Vec<Option<String>>> {
    Json(sim.received_ids())
}

/// `GET /_sim/duplicates`.
async fn duplicates(State(sim): State<TargetSim>) -> Json<Value> {
    let list: Vec<Value> = sim
        .duplicates()
        .into_iter()
        .map(|(id, count)| json!({ "request_id": id, "count": count }))
        .collect();
    Json(Value::Array(list))
}

/// `POST /_sim/reset`.
async fn reset(State(sim): State<TargetSim>) -> Json<Value> {
    sim.reset();
    Json(json!({ "ok": true }))
}

/// Any other path under `/_sim/`.
async fn unknown_control() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "unknown control endpoint; see GET /_sim/state, POST /_sim/mode/{mode}, \
         GET /_sim/received, GET /_sim/duplicates, POST /_sim/reset"
            .into(),
    )
}

/// A JSON error answer.
fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
