//! The admin HTTP server of an instance: health, readiness, Prometheus
//! metrics, the control-point API and the web page.
//!
//! | endpoint | what it answers |
//! |---|---|
//! | `GET /` | the web page: every control point, live, with Store/Forward buttons |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the control state is loaded, 503 before |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /api/session` | who the caller is: principal, role, whether it may act |
//! | `GET /api/control-points` | every control point of the topology |
//! | `GET /api/control-points/{name}` | one control point |
//! | `POST /api/control-points/{name}/store` | operator `store` |
//! | `POST /api/control-points/{name}/forward` | operator `forward` |
//! | `GET /api/control-points/{name}/history` | the control point's audit trail |
//! | `GET /api/failed` | the failed events |
//! | `GET /api/control-points/{name}/stored` | a page of the control point's stored requests |
//! | `GET /api/stored/{id}` | one stored request, its value decoded |
//! | `POST /api/stored/{id}/skip` | skip a stored request: never replayed, one failed event |
//!
//! [`router`] builds the routes over an [`AdminState`] and needs no socket,
//! so tests drive it with `oneshot`; [`serve`] runs it on a listener until
//! shutdown. The state reaches Kafka only through [`CommandSink`],
//! [`StoredOffsets`], [`FailedSource`] and [`StoredSource`], which tests
//! replace.

pub mod access;
mod api;
mod backlog;
mod error;
mod failed;
mod history;
mod progress;
mod stored;
pub mod tls;

pub use access::{AccessPolicy, AllowedHosts, Role, TokenSource, Tokens};
pub use api::{
    CommandOutcome, ControlPointView, ControlPointsView, PartitionReplay, ReplayView, TriggerView,
    OPERATOR_HEADER,
};
pub use backlog::{backlog, layouts, KafkaOffsets, StoredLayout, StoredOffsets};
pub use error::ApiError;
pub use failed::FailedSource;
pub use progress::replay_view;
pub use stored::StoredSource;
pub use tls::TlsFiles;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::control::{Command, CommandPublisher, ControlTable};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// The web page, compiled into the binary.
pub const PAGE: &str = include_str!("page.html");

/// The largest request body: every body the API takes is a small JSON
/// object.
const MAX_BODY: usize = 64 * 1024;

/// The longest request target (path and query).
const MAX_URI: usize = 8 * 1024;

/// The most header bytes (names and values) a request may carry.
const MAX_HEADERS: usize = 32 * 1024;

/// How long in-flight requests may take to finish once shutdown fires.
const DRAIN: Duration = Duration::from_secs(5);

/// Where operator commands go: the commands topic, or a test double.
pub trait CommandSink: Send + Sync + 'static {
    /// Publishes `command` for `control_point` and waits for the
    /// acknowledgement. The error says why it could not.
    fn send<'a>(
        &'a self,
        control_point: &'a str,
        command: &'a Command,
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl CommandSink for CommandPublisher {
    fn send<'a>(
        &'a self,
        control_point: &'a str,
        command: &'a Command,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.publish(control_point, command)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Everything the admin server shows and acts on.
pub struct AdminSettings {
    /// The topology the instance runs.
    pub topology: Arc<Topology>,
    /// The instance id.
    pub instance: String,
    /// The instance's control table.
    pub table: ControlTable,
    /// Where operator commands are published.
    pub commands: Arc<dyn CommandSink>,
    /// Watermarks of the stored topics, for the backlog.
    pub offsets: Arc<dyn StoredOffsets>,
    /// Where each control point's requests are stored ([`layouts`]).
    pub layouts: HashMap<String, StoredLayout>,
    /// The Prometheus registry ([`crate::telemetry::install`]).
    pub metrics: PrometheusHandle,
    /// Where `/api/failed` and the failed counts read the failed events;
    /// without one, `/api/failed` answers 501.
    pub failed: Option<Arc<dyn FailedSource>>,
    /// Where the stored-backlog endpoints read and skip; without one they
    /// answer 501.
    pub stored: Option<Arc<dyn StoredSource>>,
    /// How long a store/forward request waits for the control writer to
    /// apply its command before answering `pending`.
    pub decision_timeout: Duration,
    /// Who may read and act ([`access`]).
    pub access: AccessPolicy,
    /// Where operators' actions are recorded; without one they are only
    /// logged.
    pub audit: Option<Arc<dyn crate::audit::AuditSink>>,
}

/// The admin server's shared state. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AdminSettings,
    /// Makes the ids of the commands this server publishes unique.
    commands_sent: AtomicU64,
    /// The last watermarks read, and when: a page polling every second
    /// from several browsers costs one round of watermark requests.
    watermarks: tokio::sync::Mutex<Option<(std::time::Instant, Watermarks)>>,
    /// The last read of the failed events.
    failed: tokio::sync::Mutex<failed::FailedCache>,
}

/// The `(low, high)` watermarks of each partition of each control point's
/// stored topic; `None` where they could not be read.
type Watermarks = HashMap<String, Option<Vec<(i64, i64)>>>;

impl AdminState {
    /// The state over `settings`.
    pub fn new(settings: AdminSettings) -> Self {
        AdminState {
            inner: Arc::new(Inner {
                settings,
                commands_sent: AtomicU64::new(0),
                watermarks: tokio::sync::Mutex::new(None),
                failed: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn settings(&self) -> &AdminSettings {
        &self.inner.settings
    }
}

/// The admin routes over `state`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/session", get(session))
        .route("/api/control-points", get(api::list))
        .route("/api/control-points/{name}", get(api::one))
        .route("/api/control-points/{name}/store", post(api::store))
        .route("/api/control-points/{name}/forward", post(api::forward))
        .route("/api/control-points/{name}/pace", post(api::pace))
        .route("/api/control-points/{name}/history", get(history::history))
        .route("/api/failed", get(failed::list))
        .route("/api/control-points/{name}/stored", get(stored::list))
        .route("/api/stored/{id}", get(stored::one))
        .route("/api/stored/{id}/skip", post(stored::skip))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(limits))
        .with_state(state)
}

/// Serves [`router`] on `listener` (over TLS with `tls`) until `shutdown`
/// fires, then lets in-flight requests finish for a few seconds. Logs
/// `admin listening` with the bound address (`addr`) and `scheme` first,
/// which tells a caller that bound port 0 where to connect.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    state: AdminState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    use std::future::IntoFuture as _;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %addr, scheme, instance = %state.settings().instance, "admin listening");
    let mut drain = shutdown.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move { shutdown.wait().await };
    let server = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .into_future(),
        Some(config) => {
            // `tap_io` gives the TLS listener axum's `ConnectInfo<SocketAddr>`.
            let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| ());
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future()
        }
    };
    tokio::select! {
        served = server => served,
        _ = async {
            drain.wait().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!("admin requests still open after the drain deadline; closing them");
            Ok(())
        }
    }
}

/// Binds the admin listener on `addr`, saying which option sets it when the
/// address is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "binding the admin server to {addr} (set another address with --admin-listen, \
             `127.0.0.1:0` for any free port, or `none` to run without it)"
        )
    })
}

/// Says at start who may use the admin server at `addr`.
pub fn log_access(access: &AccessPolicy, addr: SocketAddr) {
    let hosts = access.hosts.describe();
    if access.tokens.is_empty() {
        if addr.ip().is_loopback() {
            tracing::info!(addr = %addr, hosts = %hosts, "admin server without tokens: reads and actions from this machine only");
        } else {
            tracing::warn!(
                addr = %addr,
                hosts = %hosts,
                "admin server without tokens: anyone who reaches it may read, and actions are \
                 refused except from loopback; configure --admin-tokens to act from elsewhere"
            );
        }
    } else {
        tracing::info!(addr = %addr, tokens = access.tokens.len(), hosts = %hosts, "admin server with tokens: viewers read, operators act");
    }
}

/// Refuses a request target or headers too large, and gives every
/// refusal for size (also the body limit's, answered deeper down) the
/// JSON error shape.
async fn limits(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = request.uri().to_string().len();
    if uri > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri} bytes; at most {MAX_URI} are read"),
        )
        .hint("page with `limit` and `after` instead of long queries")
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > MAX_HEADERS {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request's headers are {headers} bytes; at most {MAX_HEADERS} are read"),
        )
        .hint("send fewer or smaller headers (cookies of other sites on this host count too)")
        .into_response();
    }
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
        .hint(r#"the API takes small JSON bodies like {"rate": "200/s"}"#)
        .into_response();
    }
    response
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

/// `GET /api/session`: the caller as the server sees it.
async fn session(
    axum::extract::State(state): axum::extract::State<AdminState>,
    axum::extract::Extension(caller): axum::extract::Extension<access::Caller>,
) -> impl IntoResponse {
    let policy = &state.settings().access;
    let can_act = if policy.tokens.is_empty() {
        caller.from.is_some_and(|a| access::is_loopback(a.ip()))
    } else {
        caller.role == Role::Operator
    };
    Json(serde_json::json!({
        "principal": caller.principal,
        "role": caller.role.as_str(),
        "authenticated": caller.principal.is_some(),
        "can_act": can_act,
        "from": caller.from_text(),
    }))
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "instance": state.settings().instance }))
}

async fn readyz(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> axum::response::Response {
    let s = state.settings();
    if s.table.is_ready() {
        Json(serde_json::json!({ "status": "ready", "instance": s.instance })).into_response()
    } else {
        not_ready().into_response()
    }
}

/// The error of everything that needs the control state before it is loaded.
fn not_ready() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready: the control state is still loading",
    )
    .hint("the instance reads the control topic to its end at start; retry in a moment")
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AdminState>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.settings().metrics.render(),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
    .hint(
        "endpoints: / /healthz /readyz /metrics /api/control-points \
         /api/control-points/{name}[/store|/forward|/pace|/stored|/history] /api/session /api/failed \
         /api/stored/{id}[/skip]",
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let hint = if uri.path().ends_with("/store") || uri.path().ends_with("/forward") {
        "store and forward are POST requests"
    } else if uri.path().ends_with("/skip") {
        "skip is a POST request"
    } else {
        "this endpoint answers GET"
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
    .hint(hint)
}

/// [`router`] as a loopback client reaches it, for tests without a socket.
#[cfg(test)]
fn local_router(state: AdminState) -> Router {
    router(state).layer(axum::extract::connect_info::MockConnectInfo(
        SocketAddr::from(([127, 0, 0, 1], 40000)),
    ))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stored_tests;
