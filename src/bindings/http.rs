//! The HTTP binding: one request, one HTTP/1.1 exchange.
//!
//! # What the target receives
//!
//! - the binding's method and URL, the request value as the body (empty
//!   when the record has no value);
//! - `sfwd-request-id: <request id>` and `sfwd-operation: <Interface>.<operation>`;
//! - `sfwd-key: <key>` when the record has a key that is valid UTF-8 without
//!   control characters;
//! - the binding's extra headers, and `content-type: application/octet-stream`
//!   unless those set a content type.
//!
//! - the W3C trace context of the record, `traceparent` (when it is a
//!   valid version-00 value) and `tracestate`, so that the call joins the
//!   producer's trace; a stored request keeps its headers, so its replay
//!   carries them too.
//!
//! No other Kafka header is forwarded. The `sfwd-` headers win over
//! binding headers of the same name. Redirects are not followed.
//!
//! # Outcomes
//!
//! The binding's timeout bounds the whole exchange: connecting, sending,
//! and reading the answer. A 2xx answer is a [`Response`]; everything else
//! is a [`Failure`]:
//!
//! | what happened | failure |
//! |---|---|
//! | an answer outside 2xx (3xx included) | `HttpStatus`, with up to 64 KiB of its body |
//! | no complete answer within the timeout | `Timeout` |
//! | connection refused, or any other TCP connect error | `ConnectRefused` |
//! | the host name did not resolve | `Dns` |
//! | the TLS handshake failed (bad certificate, not a TLS server, …) | `Tls` |
//! | the connection broke after it was set up (reset, early EOF, bad HTTP) | `Io` |
//!
//! The reason phrase in `HttpStatus` is the standard one for the status.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, Url};
use tokio::time::Instant;

use super::failure::Failure;
use super::{Request, Response, OPERATION_HEADER, REQUEST_ID_HEADER};
use crate::topology::HttpBinding;

pub use crate::wire::KEY_HEADER;
use crate::wire::{TRACEPARENT_HEADER as TRACEPARENT, TRACESTATE_HEADER as TRACESTATE};

/// The value of the last record header named `name`.
fn last_header<'r>(request: &'r Request, name: &str) -> Option<&'r [u8]> {
    request
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_deref())
}

/// A version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
/// trace and parent ids not all zeros.
fn valid_traceparent(v: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts[..], [version, trace, parent, flags]
        if version == "00" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && nonzero(trace) && nonzero(parent))
}
/// Content type sent when the binding's headers set none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Most bytes of an error answer's body kept (the body chain limit).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// How long an idle pooled connection is kept: below the 5 s keep-alive
/// of common servers (Node.js, many proxies use more), so a request is not
/// sent on a connection the server is closing, which would fail as `Io`.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// An HTTP binding that cannot be used as written.
#[derive(Debug, thiserror::Error)]
pub enum HttpBindingError {
    /// The URL does not parse.
    #[error("invalid URL `{url}`: {detail}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The method is not a valid HTTP method token.
    #[error("invalid HTTP method `{0}`")]
    Method(String),
    /// A header name or value cannot be sent.
    #[error("invalid header `{name}`: {detail}")]
    Header {
        /// The header name as written.
        name: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The HTTP client could not be built (e.g. the TLS library failed).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// An HTTP target: one URL, method, timeout and extra headers, with its
/// own connection pool.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    inner: Arc<Endpoint>,
}

/// What a target holds; shared by its clones.
#[derive(Debug)]
struct Endpoint {
    /// The URL as written in the topology, for messages.
    url_text: String,
    url: Url,
    method: Method,
    timeout: Duration,
    /// The binding's headers plus the default content type.
    headers: HeaderMap,
    client: Client,
    /// Calls kept out at once per source partition.
    in_flight: usize,
    /// Cap on live calls per second across the cluster.
    rate: Option<crate::control::Rate>,
}

impl HttpTarget {
    /// Checks the binding and builds the target with its own client
    /// (connection pool, no redirects, `TCP_NODELAY`, proxies from the
    /// usual environment variables).
    pub fn new(binding: &HttpBinding) -> Result<HttpTarget, HttpBindingError> {
        let url = Url::parse(&binding.url).map_err(|e| HttpBindingError::Url {
            url: binding.url.clone(),
            detail: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(HttpBindingError::Url {
                url: binding.url.clone(),
                detail: "not an http:// or https:// URL with a host".into(),
            });
        }
        let method = Method::from_bytes(binding.method.as_bytes())
            .map_err(|_| HttpBindingError::Method(binding.method.clone()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &binding.headers {
            let header_error = |detail: String| HttpBindingError::Header {
                name: name.clone(),
                detail,
            };
            let header_name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_error(e.to_string()))?;
            let header_value =
                HeaderValue::from_str(value).map_err(|e| header_error(e.to_string()))?;
            headers.append(header_name, header_value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
        }
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // Every idle connection is kept (until the idle timeout): a
            // service's target is shared by all its source partitions, each
            // with up to `in_flight` calls out, and a cap below that closed
            // connections after each call and opened new ones for the next.
            .tcp_nodelay(true)
            .user_agent(concat!("sfwd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpBindingError::Client(error_text(&e)))?;
        Ok(HttpTarget {
            inner: Arc::new(Endpoint {
                url_text: binding.url.clone(),
                url,
                method,
                timeout: binding.timeout,
                headers,
                client,
                // The binding allows more than one only with `ordering: key`.
                in_flight: binding.in_flight.max(1) as usize,
                rate: binding.rate,
            }),
        })
    }

    /// Calls kept out at once per source partition: more than 1 only with
    /// `ordering: key`, where a call waits for the one before it of the
    /// same key.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight
    }

    /// The binding's cap on live calls per second across the cluster.
    pub fn rate(&self) -> Option<crate::control::Rate> {
        self.inner.rate
    }

    /// Sends one request, once; see the module docs for what is sent and
    /// how the outcome maps.
    pub async fn call(&self, request: &Request) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.inner.timeout;
        let send = self
            .inner
            .client
            .request(self.inner.method.clone(), self.inner.url.clone())
            .headers(self.request_headers(request))
            .body(request.value.clone().unwrap_or_default())
            .send();
        let answer = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(self.timeout_failure()),
            Ok(Err(e)) => return Err(self.failure(&e)),
            Ok(Ok(answer)) => answer,
        };
        let status = answer.status();
        let content_type = answer
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after_secs = answer
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
            .map(|wait| wait.as_secs().min(u64::from(u16::MAX)) as u16);
        if status.is_success() {
            let body = match tokio::time::timeout_at(deadline, answer.bytes()).await {
                Err(_) => return Err(self.timeout_failure()),
                Ok(Err(e)) => return Err(self.failure(&e)),
                Ok(Ok(body)) => body.to_vec(),
            };
            Ok(Response {
                status: Some(status.as_u16()),
                body,
                content_type,
            })
        } else {
            // The status is the answer: a body cut short by the deadline or
            // a broken connection is kept as far as it was read.
            let body = read_capped(answer, deadline, MAX_ERROR_BODY_BYTES).await;
            Err(Failure::HttpStatus {
                method: self.inner.method.to_string(),
                url: self.inner.url_text.clone(),
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                body,
                content_type,
                retry_after_secs,
            })
        }
    }

    /// `http METHOD URL`, for logs.
    pub fn describe(&self) -> String {
        format!("http {} {}", self.inner.method, self.inner.url_text)
    }

    /// The binding's headers, then the `sfwd-` headers over them.
    fn request_headers(&self, request: &Request) -> HeaderMap {
        let mut headers = self.inner.headers.clone();
        headers.insert(REQUEST_ID_HEADER, text_header_value(&request.request_id));
        let operation = format!("{}.{}", request.interface, request.operation);
        headers.insert(OPERATION_HEADER, text_header_value(&operation));
        if let Some(key) = request.key.as_deref().and_then(key_header_value) {
            headers.insert(KEY_HEADER, key);
        }
        // A resubmitted request says so to the target too.
        if let Some(from) = request
            .headers
            .iter()
            .rev()
            .find(|(k, _)| k == crate::failed::RESUBMITTED_FROM_HEADER)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| reqwest::header::HeaderValue::from_bytes(v).ok())
        {
            headers.insert(crate::failed::RESUBMITTED_FROM_HEADER, from);
        }
        if let Some(parent) = last_header(request, TRACEPARENT).filter(|v| valid_traceparent(v)) {
            if let Ok(value) = HeaderValue::from_bytes(parent) {
                headers.insert(TRACEPARENT, value);
                if let Some(state) =
                    last_header(request, TRACESTATE).and_then(|v| HeaderValue::from_bytes(v).ok())
                {
                    headers.insert(TRACESTATE, state);
                }
            }
        }
        if request
            .headers
            .iter()
            .any(|(k, _)| k == super::REDELIVERY_HEADER)
        {
            headers.insert(
                super::REDELIVERY_HEADER,
                reqwest::header::HeaderValue::from_static("possible"),
            );
        }
        headers
    }

    fn timeout_failure(&self) -> Failure {
        Failure::Timeout {
            method: self.inner.method.to_string(),
            url: self.inner.url_text.clone(),
            after: self.inner.timeout,
        }
    }

    fn failure(&self, error: &reqwest::Error) -> Failure {
        let phase = if error.is_connect() {
            Phase::Connect {
                tls: self.inner.url.scheme() == "https",
            }
        } else {
            Phase::Exchange
        };
        let (method, url) = (self.inner.method.to_string(), self.inner.url_text.clone());
        match classify(error, phase, error.is_timeout()) {
            Cause::Timeout => self.timeout_failure(),
            Cause::Refused(detail) => Failure::ConnectRefused { url, detail },
            Cause::Dns(detail) => Failure::Dns {
                url,
                host: self.inner.url.host_str().unwrap_or_default().to_string(),
                detail,
            },
            Cause::Tls(detail) => Failure::Tls {
                method,
                url,
                detail,
            },
            Cause::Io(detail) => Failure::Io {
                method,
                url,
                detail,
            },
        }
    }
}

/// Reads at most `cap` bytes of a body, stopping early at the deadline or
/// on a read error.
async fn read_capped(mut answer: reqwest::Response, deadline: Instant, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match tokio::time::timeout_at(deadline, answer.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        }
    }
    body
}

/// A header value for text we must send (request id, operation): control
/// characters, which HTTP forbids, are escaped as `\u{…}`.
fn text_header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| {
        let escaped: String = text
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        HeaderValue::from_str(&escaped).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

/// The key as a header value, if it is UTF-8 that HTTP allows in a header.
fn key_header_value(key: &[u8]) -> Option<HeaderValue> {
    let text = std::str::from_utf8(key).ok()?;
    HeaderValue::from_str(text).ok()
}

/// Where in the exchange an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Setting up the connection (DNS, TCP, and the TLS handshake if `tls`).
    Connect { tls: bool },
    /// Sending the request or reading the answer.
    Exchange,
}

/// What an HTTP client error means, with its detail text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    Timeout,
    Refused(String),
    Dns(String),
    Tls(String),
    Io(String),
}

/// Classifies a client error by walking its `source()` chain.
///
/// hyper-util's connector names its failures `dns error` (with the
/// resolver's `failed to lookup address …` below) and `tcp connect error`
/// (with the OS error below); a connect error that is neither comes from
/// the TLS layer, the only other step of an `https` connect.
fn classify(error: &(dyn StdError + 'static), phase: Phase, timed_out: bool) -> Cause {
    if timed_out {
        return Cause::Timeout;
    }
    let chain = chain_of(error);
    let refused = chain.iter().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused)
    });
    if refused {
        return Cause::Refused(describe(&chain));
    }
    if let Some(at) = chain.iter().position(|e| e.to_string() == "dns error") {
        let below = &chain[at + 1..];
        return Cause::Dns(describe(if below.is_empty() { &chain } else { below }));
    }
    if chain
        .iter()
        .any(|e| e.to_string().contains("failed to lookup address"))
    {
        return Cause::Dns(describe(&chain));
    }
    match phase {
        Phase::Connect { tls } => {
            let tcp = chain.iter().any(|e| e.to_string().starts_with("tcp "));
            if tls && !tcp {
                Cause::Tls(describe(&chain))
            } else {
                Cause::Refused(describe(&chain))
            }
        }
        Phase::Exchange => Cause::Io(describe(&chain)),
    }
}

fn chain_of<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = vec![error];
    let mut next = error.source();
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    chain
}

/// The messages of a chain joined with `: `, leaving out the client's own
/// wrappers (which only say "error sending request" or "client error") and
/// messages that repeat the one before.
fn describe(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain {
        let text = e.to_string();
        let wrapper = text.starts_with("error sending request")
            || text.starts_with("request or response body error")
            || text.starts_with("client error (");
        let repeated = parts.last().is_some_and(|last| last.contains(&text));
        if !text.is_empty() && !wrapper && !repeated {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        chain
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unknown error".into())
    } else {
        parts.join(": ")
    }
}

/// The whole chain of an error as text.
fn error_text(error: &(dyn StdError + 'static)) -> String {
    describe(&chain_of(error))
}

/// The wait a `Retry-After` value asks for at `now`: delta-seconds, or an
/// HTTP date (a date in the past asks for no wait). `None` when it is
/// neither.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt;

    use super::*;

    /// An error with a fixed message and an optional cause, like the
    /// client's wrappers.
    #[derive(Debug)]
    struct Wrapped {
        message: &'static str,
        source: Option<Box<dyn StdError + Send + Sync>>,
    }

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.source.as_ref().map(|e| &**e as _)
        }
    }

    /// `messages[0]` wrapping `messages[1]` … wrapping `innermost`.
    fn chain(
        messages: &[&'static str],
        innermost: impl StdError + Send + Sync + 'static,
    ) -> Wrapped {
        let mut source: Box<dyn StdError + Send + Sync> = Box::new(innermost);
        for message in messages[1..].iter().rev() {
            source = Box::new(Wrapped {
                message,
                source: Some(source),
            });
        }
        Wrapped {
            message: messages[0],
            source: Some(source),
        }
    }

    const CONNECT: Phase = Phase::Connect { tls: false };
    const CONNECT_TLS: Phase = Phase::Connect { tls: true };

    #[test]
    fn refused_connections_are_found_by_io_kind() {
        let error = chain(
            &[
                "error sending request for url (http://x/)",
                "client error (Connect)",
                "tcp connect error",
            ],
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        for phase in [CONNECT, CONNECT_TLS, Phase::Exchange] {
            assert_eq!(
                classify(&error, phase, false),
                Cause::Refused("tcp connect error: connection refused".into())
            );
        }
    }

    #[test]
    fn dns_errors_keep_the_resolver_text() {
        let error = chain(
            &[
                "error sending request for url (http://x/)",
                "client error (Connect)",
                "dns error",
            ],
            io::Error::other("failed to lookup address information: Name or service not known"),
        );
        assert_eq!(
            classify(&error, CONNECT, false),
            Cause::Dns("failed to lookup address information: Name or service not known".into())
        );
        let bare = chain(&["client error (Connect)"], io::Error::other("dns error"));
        assert_eq!(
            classify(&bare, CONNECT_TLS, false),
            Cause::Dns("dns error".into())
        );
    }

    #[test]
    fn other_tcp_connect_errors_count_as_refused() {
        let error = chain(
            &["client error (Connect)", "tcp connect error"],
            io::Error::other("Network is unreachable (os error 101)"),
        );
        assert_eq!(
            classify(&error, CONNECT_TLS, false),
            Cause::Refused("tcp connect error: Network is unreachable (os error 101)".into())
        );
    }

    #[test]
    fn connect_errors_beyond_tcp_are_tls_on_https() {
        let error = chain(
            &[
                "error sending request for url (https://x/)",
                "client error (Connect)",
            ],
            io::Error::other("error:0A00010B:SSL routines::wrong version number"),
        );
        assert_eq!(
            classify(&error, CONNECT_TLS, false),
            Cause::Tls("error:0A00010B:SSL routines::wrong version number".into())
        );
        assert!(matches!(
            classify(&error, CONNECT, false),
            Cause::Refused(_)
        ));
    }

    #[test]
    fn errors_after_connecting_are_io() {
        let error = chain(
            &[
                "error sending request for url (http://x/)",
                "client error (SendRequest)",
            ],
            io::Error::other("connection closed before message completed"),
        );
        assert_eq!(
            classify(&error, Phase::Exchange, false),
            Cause::Io("connection closed before message completed".into())
        );
    }

    #[test]
    fn timeouts_win() {
        let error = chain(
            &["client error (Connect)"],
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(classify(&error, CONNECT, true), Cause::Timeout);
    }

    #[test]
    fn describe_drops_wrappers_and_repeats() {
        let error = chain(
            &["error sending request", "a: b", "b"],
            io::Error::other("c"),
        );
        assert_eq!(describe(&chain_of(&error)), "a: b: c");
        let only_wrapper = Wrapped {
            message: "error sending request",
            source: None,
        };
        assert_eq!(describe(&chain_of(&only_wrapper)), "error sending request");
    }

    #[test]
    fn key_header_only_for_header_safe_text() {
        assert_eq!(
            key_header_value(b"order-17").unwrap().to_str().unwrap(),
            "order-17"
        );
        assert!(key_header_value(b"caf\xc3\xa9").is_some());
        assert!(key_header_value(b"\xff\xfe").is_none());
        assert!(key_header_value(b"line\nbreak").is_none());
    }

    #[test]
    fn trace_context_is_passed_on_when_valid() {
        let t = HttpTarget::new(&binding("http://t/x", &[])).unwrap();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let with = |headers: Vec<(&str, &str)>| Request {
            request_id: "t/0/1".into(),
            service: "s".into(),
            interface: "I".into(),
            operation: "op".into(),
            key: None,
            value: None,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
                .collect(),
        };
        let sent = t.request_headers(&with(vec![
            (
                "traceparent",
                "00-00000000000000000000000000000001-0000000000000001-00",
            ),
            ("traceparent", parent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]));
        assert_eq!(sent.get("traceparent").unwrap(), parent, "the last one");
        assert_eq!(sent.get("tracestate").unwrap(), "congo=t61rcWkgMzE");
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let sent = t.request_headers(&with(vec![("traceparent", bad), ("tracestate", "a=b")]));
            assert!(sent.get("traceparent").is_none(), "{bad}");
            assert!(
                sent.get("tracestate").is_none(),
                "no state without a parent"
            );
        }
    }

    #[test]
    fn text_header_values_escape_control_characters() {
        assert_eq!(text_header_value("t/0/17").to_str().unwrap(), "t/0/17");
        assert_eq!(text_header_value("a\nb").to_str().unwrap(), "a\\u{a}b");
    }

    fn binding(url: &str, headers: &[(&str, &str)]) -> HttpBinding {
        HttpBinding {
            url: url.into(),
            method: "PUT".into(),
            timeout: Duration::from_secs(2),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            in_flight: 1,
            ordering: Default::default(),
            rate: None,
        }
    }

    fn request() -> Request {
        Request {
            request_id: "orders/0/42".into(),
            service: "orders".into(),
            interface: "Orders".into(),
            operation: "create".into(),
            key: Some(b"k-1".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: vec![("traceparent".into(), Some(b"00-abc".to_vec()))],
        }
    }

    #[tokio::test]
    async fn request_headers_are_the_binding_ones_plus_sfwd() {
        let target = HttpTarget::new(&binding(
            "http://orders:8080/o",
            &[("X-Tenant", "t1"), ("sfwd-operation", "spoofed")],
        ))
        .unwrap();
        let headers = target.request_headers(&request());
        let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("x-tenant").as_deref(), Some("t1"));
        assert_eq!(get(REQUEST_ID_HEADER).as_deref(), Some("orders/0/42"));
        assert_eq!(get(OPERATION_HEADER).as_deref(), Some("Orders.create"));
        assert_eq!(get(KEY_HEADER).as_deref(), Some("k-1"));
        assert_eq!(get("content-type").as_deref(), Some(DEFAULT_CONTENT_TYPE));
        assert_eq!(get("traceparent"), None);
        assert_eq!(headers.get_all(OPERATION_HEADER).iter().count(), 1);
        assert_eq!(target.describe(), "http PUT http://orders:8080/o");
    }

    #[tokio::test]
    async fn a_binding_content_type_replaces_the_default() {
        let target = HttpTarget::new(&binding(
            "http://orders/o",
            &[("Content-Type", "application/json")],
        ))
        .unwrap();
        let headers = target.request_headers(&request());
        let types: Vec<_> = headers.get_all(CONTENT_TYPE).iter().collect();
        assert_eq!(types, ["application/json"]);
    }

    #[test]
    fn bad_bindings_are_refused() {
        assert!(matches!(
            HttpTarget::new(&binding("not a url", &[])),
            Err(HttpBindingError::Url { .. })
        ));
        assert!(matches!(
            HttpTarget::new(&binding("ftp://orders/o", &[])),
            Err(HttpBindingError::Url { .. })
        ));
        assert!(matches!(
            HttpTarget::new(&binding("http://orders/o", &[("bad name", "v")])),
            Err(HttpBindingError::Header { .. })
        ));
        assert!(matches!(
            HttpTarget::new(&binding("http://orders/o", &[("x-a", "line\nbreak")])),
            Err(HttpBindingError::Header { .. })
        ));
        let mut bad_method = binding("http://orders/o", &[]);
        bad_method.method = "PO ST".into();
        assert!(matches!(
            HttpTarget::new(&bad_method),
            Err(HttpBindingError::Method(_))
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
