//! Who may use the admin server, and from where: bearer tokens with roles,
//! the `Host` allow-list, and the cross-site checks on actions.
//!
//! [`AccessPolicy::decide`] is pure: it takes the facts of one request
//! ([`RequestFacts`]) and answers who the caller is ([`Caller`]) or why the
//! request is refused ([`Denied`]). [`guard`] is the axum middleware that
//! gathers those facts and applies the answer.
//!
//! The rules, in order:
//! 1. `/healthz`, `/readyz` and `/metrics` are open to probes and scrapers.
//! 2. Every other request whose `Host` is not in the allow-list is refused
//!    (DNS rebinding: a foreign name resolved to this address).
//! 3. The page (`/`) is static and carries no data: open.
//! 4. With tokens configured, `/api/…` needs `Authorization: Bearer`; a
//!    `viewer` may read (GET), an `operator` may also act (POST). Without
//!    tokens, anyone may read and only a loopback client may act.
//! 5. An action (POST) is refused when the browser says it comes from
//!    another site (`Origin`, `Sec-Fetch-Site`), and, when it carries no
//!    token, unless it has the `x-sfwd-request` header, which a page of
//!    another origin cannot send without this server's consent (CORS).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AdminState;

/// The header that marks an action as sent by a script of this server's
/// own page (or by a client that is not a browser).
pub const REQUEST_HEADER: &str = "x-sfwd-request";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: every GET.
    Viewer,
    /// Reads and acts: store, forward, pace, skip.
    Operator,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// One token: who presents it, what it allows, and the secret itself.
#[derive(Clone, PartialEq, Eq)]
struct Token {
    principal: String,
    role: Role,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("principal", &self.principal)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Where the tokens are read: `file:PATH` or `env:VAR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A file, one token per line.
    File(PathBuf),
    /// An environment variable, tokens separated by newlines or spaces.
    Env(String),
}

impl TokenSource {
    /// Reads `file:PATH` or `env:VAR`.
    pub fn parse(s: &str) -> Result<TokenSource, String> {
        match s.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(TokenSource::File(path.into())),
            Some(("env", var)) if !var.is_empty() => Ok(TokenSource::Env(var.into())),
            _ => Err(format!(
                "`{s}` names no token source: write file:PATH (one `principal:role:token` per \
                 line) or env:VAR (an environment variable holding such entries)"
            )),
        }
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "file:{}", p.display()),
            TokenSource::Env(v) => write!(f, "env:{v}"),
        }
    }
}

/// A token list that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The file or variable could not be read.
    #[error("{source_name}: {why}")]
    Unreadable {
        /// The token source.
        source_name: String,
        /// Why.
        why: String,
    },
    /// An entry is not `principal:role:token`.
    #[error("{source_name}, entry {entry}: {why}")]
    Entry {
        /// The token source.
        source_name: String,
        /// The entry's number, from 1 (the line, for a file).
        entry: usize,
        /// What is wrong with it.
        why: String,
    },
}

/// The tokens the admin server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens(Vec<Token>);

/// Tokens shorter than this are refused: they could be guessed.
const MIN_SECRET: usize = 16;

impl Tokens {
    /// Reads the tokens of `source`.
    pub fn load(source: &TokenSource) -> Result<Tokens, TokenError> {
        let unreadable = |why: String| TokenError::Unreadable {
            source_name: source.to_string(),
            why,
        };
        let text = match source {
            TokenSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| unreadable(format!("cannot read the token file: {e}")))?,
            TokenSource::Env(var) => std::env::var(var)
                .map_err(|e| unreadable(format!("cannot read the environment variable: {e}")))?,
        };
        let entries: Vec<&str> = match source {
            TokenSource::File(_) => text.lines().collect(),
            TokenSource::Env(_) => text.split_whitespace().collect(),
        };
        Tokens::parse(&entries, &source.to_string())
    }

    /// Reads entries `principal:role:token`; blank entries and `#` comments
    /// are skipped.
    pub fn parse(entries: &[&str], source_name: &str) -> Result<Tokens, TokenError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let fail = |why: String| TokenError::Entry {
                source_name: source_name.to_string(),
                entry: i + 1,
                why,
            };
            let mut parts = entry.splitn(3, ':');
            let (Some(principal), Some(role), Some(secret)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(fail(
                    "expected `principal:role:token`, e.g. `alice:operator:<32 random hex digits>`"
                        .into(),
                ));
            };
            if !valid_principal(principal) {
                return Err(fail(format!(
                    "principal `{principal}`: 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
                )));
            }
            let Some(role) = Role::parse(role) else {
                return Err(fail(format!(
                    "role `{role}`: the roles are `viewer` (reads) and `operator` (reads and acts)"
                )));
            };
            if secret.len() < MIN_SECRET || secret.chars().any(|c| c.is_whitespace()) {
                return Err(fail(format!(
                    "the token of `{principal}` is shorter than {MIN_SECRET} characters or has \
                     spaces: use e.g. `openssl rand -hex 16`"
                )));
            }
            if tokens.iter().any(|t| t.secret == secret) {
                return Err(fail(format!(
                    "the token of `{principal}` is also another entry's: each principal needs its own"
                )));
            }
            tokens.push(Token {
                principal: principal.to_string(),
                role,
                secret: secret.to_string(),
            });
        }
        Ok(Tokens(tokens))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The token whose secret is `presented`. Every token is compared in
    /// full, so the time taken does not say how close a guess was.
    fn find(&self, presented: &str) -> Option<&Token> {
        let mut found = None;
        for token in &self.0 {
            if same_secret(token.secret.as_bytes(), presented.as_bytes()) {
                found = Some(token);
            }
        }
        found
    }
}

/// Byte-wise comparison whose time depends only on the lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// An operator or principal name: 1 to 64 of `A-Za-z0-9-_.@`.
pub fn valid_principal(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// The host names a request may be addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any `Host` (`--admin-allowed-hosts '*'`).
    Any,
    /// These names (lowercase, without port).
    Only(Vec<String>),
}

impl AllowedHosts {
    /// `localhost`, `127.0.0.1`, `::1`, the listen address when it is a
    /// specific one, and `extra`; `*` in `extra` allows any.
    pub fn new(listen: Option<SocketAddr>, extra: &[String]) -> AllowedHosts {
        if extra.iter().any(|h| h.trim() == "*") {
            return AllowedHosts::Any;
        }
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(addr) = listen.filter(|a| !a.ip().is_unspecified()) {
            names.push(addr.ip().to_string());
        }
        for h in extra {
            let h = host_name(h.trim()).to_ascii_lowercase();
            if !h.is_empty() && !names.contains(&h) {
                names.push(h);
            }
        }
        AllowedHosts::Only(names)
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            AllowedHosts::Any => true,
            AllowedHosts::Only(names) => {
                let name = host_name(host).to_ascii_lowercase();
                names.contains(&name)
            }
        }
    }

    /// The names, for messages.
    pub fn describe(&self) -> String {
        match self {
            AllowedHosts::Any => "any".into(),
            AllowedHosts::Only(names) => names.join(", "),
        }
    }
}

/// The name part of a `Host` value: `[::1]:80` → `::1`, `a:80` → `a`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}

/// The admin server's access rules.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The accepted tokens; empty: no authentication (reads open, actions
    /// from loopback only).
    pub tokens: Tokens,
    /// The `Host` names requests may carry.
    pub hosts: AllowedHosts,
}

impl Default for AccessPolicy {
    /// No tokens; the loopback names only.
    fn default() -> Self {
        AccessPolicy {
            tokens: Tokens::default(),
            hosts: AllowedHosts::new(None, &[]),
        }
    }
}

/// What [`AccessPolicy::decide`] needs to know of a request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// The path.
    pub path: &'a str,
    /// POST (or any other method that acts), not GET/HEAD.
    pub acts: bool,
    /// The `Host` header, if any.
    pub host: Option<&'a str>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The `Sec-Fetch-Site` header, if any.
    pub fetch_site: Option<&'a str>,
    /// Whether the [`REQUEST_HEADER`] is present.
    pub marked: bool,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
}

/// Who is calling, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's principal; `None` without authentication.
    pub principal: Option<String>,
    /// What the caller may do.
    pub role: Role,
    /// The client's address, when known.
    pub from: Option<SocketAddr>,
}

impl Caller {
    /// The client's address as text, or `unknown`.
    pub fn from_text(&self) -> String {
        self.from
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// `Host` is not in the allow-list.
    ForeignHost(String),
    /// No token, or not a bearer token.
    NoToken,
    /// A token no entry has.
    UnknownToken,
    /// A viewer tried to act.
    ViewerActs(String),
    /// An action without tokens from a client that is not on loopback.
    NotLoopback(Option<SocketAddr>),
    /// An action that the browser says comes from another site.
    CrossSite(String),
    /// An action without a token nor the [`REQUEST_HEADER`].
    Unmarked,
}

impl Denied {
    /// The JSON error answered.
    pub fn to_error(&self, hosts: &AllowedHosts) -> ApiError {
        match self {
            Denied::ForeignHost(host) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this server does not answer to the host name `{host}`"),
            )
            .hint(format!(
                "allowed: {}; add names with --admin-allowed-hosts (SFWD_ADMIN_ALLOWED_HOSTS)",
                hosts.describe()
            )),
            Denied::NoToken => ApiError::new(StatusCode::UNAUTHORIZED, "a token is needed")
                .hint("send `Authorization: Bearer <token>`; tokens come from --admin-tokens"),
            Denied::UnknownToken => ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")
                .hint("send `Authorization: Bearer <token>` with a token of the server's --admin-tokens list"),
            Denied::ViewerActs(principal) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("`{principal}` is a viewer: only an operator may act"),
            )
            .hint("use a token whose role is `operator`"),
            Denied::NotLoopback(peer) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "actions are accepted only from this machine (loopback) while no admin \
                     tokens are configured; this request came from {}",
                    peer.map(|p| p.ip().to_string())
                        .unwrap_or_else(|| "an unknown address".into())
                ),
            )
            .hint("configure tokens with --admin-tokens file:PATH and send `Authorization: Bearer <token>`"),
            Denied::CrossSite(why) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cross-site action refused: {why}"),
            )
            .hint("act from this server's own page, or from a client that is not a browser"),
            Denied::Unmarked => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("an action without a token must carry the `{REQUEST_HEADER}` header"),
            )
            .hint(format!(
                "e.g. curl -X POST -H '{REQUEST_HEADER}: 1' …; browsers cannot add it to a \
                 request from another site, which is why it is asked for"
            )),
        }
    }
}

/// Paths open to anyone, whatever their `Host`: probes and scrapers.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

impl AccessPolicy {
    /// Admits `request` as a [`Caller`], or says why not.
    pub fn decide(&self, request: &RequestFacts<'_>) -> Result<Caller, Denied> {
        let anonymous = |role| Caller {
            principal: None,
            role,
            from: request.peer,
        };
        if is_open(request.path) {
            return Ok(anonymous(Role::Viewer));
        }
        if let Some(host) = request.host {
            if !self.hosts.allows(host) {
                return Err(Denied::ForeignHost(host.to_string()));
            }
        }
        if request.path == "/" && !request.acts {
            return Ok(anonymous(Role::Viewer));
        }
        let caller = if self.tokens.is_empty() {
            if request.acts && !request.peer.is_some_and(|p| is_loopback(p.ip())) {
                return Err(Denied::NotLoopback(request.peer));
            }
            anonymous(Role::Operator)
        } else {
            let presented = request
                .authorization
                .and_then(bearer)
                .ok_or(Denied::NoToken)?;
            let token = self.tokens.find(presented).ok_or(Denied::UnknownToken)?;
            if request.acts && token.role < Role::Operator {
                return Err(Denied::ViewerActs(token.principal.clone()));
            }
            Caller {
                principal: Some(token.principal.clone()),
                role: token.role,
                from: request.peer,
            }
        };
        if request.acts {
            same_site(request)?;
            if request.authorization.is_none() && !request.marked {
                return Err(Denied::Unmarked);
            }
        }
        Ok(caller)
    }
}

/// The token of an `Authorization: Bearer …` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(super) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuses an action that a browser marks as coming from another site.
fn same_site(request: &RequestFacts<'_>) -> Result<(), Denied> {
    if let Some(site) = request.fetch_site {
        if !matches!(site, "same-origin" | "none") {
            return Err(Denied::CrossSite(format!("Sec-Fetch-Site is `{site}`")));
        }
    }
    if let Some(origin) = request.origin {
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let same = match (authority, request.host) {
            (Some(a), Some(host)) => a.eq_ignore_ascii_case(host),
            _ => false,
        };
        if !same {
            return Err(Denied::CrossSite(format!(
                "Origin `{origin}` is not this server ({})",
                request.host.unwrap_or("no Host header")
            )));
        }
    }
    Ok(())
}

/// The axum middleware: admits the request as a [`Caller`] extension, or
/// answers the refusal (and logs it).
pub async fn guard(State(state): State<AdminState>, mut request: Request, next: Next) -> Response {
    let policy = &state.settings().access;
    let headers = request.headers();
    let text = |h: &HeaderMap, name: header::HeaderName| {
        h.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let host = text(headers, header::HOST);
    let authorization = text(headers, header::AUTHORIZATION);
    let origin = text(headers, header::ORIGIN);
    let fetch_site = text(headers, header::HeaderName::from_static("sec-fetch-site"));
    let marked = headers.contains_key(REQUEST_HEADER);
    // As axum's `ConnectInfo` extractor: the connection's address, else the
    // one a test router was given.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| {
            request
                .extensions()
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|c| c.0)
        });
    let acts = !matches!(*request.method(), Method::GET | Method::HEAD);
    let path = request.uri().path().to_string();
    let facts = RequestFacts {
        path: &path,
        acts,
        host: host.as_deref(),
        authorization: authorization.as_deref(),
        origin: origin.as_deref(),
        fetch_site: fetch_site.as_deref(),
        marked,
        peer,
    };
    match policy.decide(&facts) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(denied) => {
            tracing::warn!(
                path = %path,
                method = %request.method(),
                peer = ?peer,
                host = ?host,
                reason = ?denied,
                "admin request refused"
            );
            let mut response = denied.to_error(&policy.hosts).into_response();
            if matches!(denied, Denied::NoToken | Denied::UnknownToken) {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sfwd\""),
                );
            }
            response
        }
    }
}

#[cfg(test)]
mod tests;
