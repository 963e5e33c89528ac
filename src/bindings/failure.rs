//! From a failed invocation of a target to its exception chain.
//!
//! A binding (HTTP or Kafka) describes what went wrong as a [`Failure`]:
//! plain data, no client types. [`chain_for`] turns it into the
//! [`ExceptionChain`] that the store-and-forward rules are matched against.
//! Nothing here performs I/O.
//!
//! # The chains
//!
//! Top-level exception first, original cause last. `M` is the request
//! method, `U` the target URL, `H` its host, `T` the Kafka topic.
//!
//! | failure | chain, top-level first |
//! |---|---|
//! | HTTP 503, 502, 429 | `ServiceUnavailableException` "M U: HTTP 503 Service Unavailable" ← `HttpStatusException` "503 Service Unavailable" ← body chain |
//! | HTTP 504, 408 | `ServiceTimeoutException` "M U: HTTP 504 Gateway Timeout" ← `HttpStatusException` "504 Gateway Timeout" ← body chain |
//! | HTTP 500, 501, 505 and any other 5xx | `ServiceRuntimeException` "M U: HTTP 500 Internal Server Error" ← `HttpStatusException` "500 Internal Server Error" ← body chain |
//! | HTTP 4xx other than 408, 429 | `ServiceBusinessException` "M U: HTTP 404 Not Found" ← `HttpStatusException` "404 Not Found" ← body chain |
//! | HTTP 1xx, 3xx (not followed), anything else | `ServiceRuntimeException` "M U: HTTP 302 Found" ← `HttpStatusException` "302 Found" |
//! | connection refused | `ServiceUnavailableException` "cannot connect to U" ← `ConnectException` "*detail*" |
//! | host name does not resolve | `ServiceUnavailableException` "cannot resolve host H of U" ← `UnknownHostException` "H: *detail*" |
//! | no answer within the deadline | `ServiceTimeoutException` "M U: no answer within 2s" ← `TimeoutException` "deadline of 2s exceeded" |
//! | TLS handshake or certificate failure | `ServiceRuntimeException` "M U: TLS failure" ← `TlsException` "*detail*" |
//! | connection broken mid-exchange | `ServiceRuntimeException` "M U: connection broken" ← `IoException` "*detail*" |
//! | Kafka `MessageTimedOut`, `RequestTimedOut` | `ServiceTimeoutException` "produce to topic T failed: *code*" ← `KafkaException` "*code*: *detail*" |
//! | Kafka `AllBrokersDown`, `BrokerTransportFailure`, `UnknownTopicOrPartition`, `UnknownTopic`, `LeaderNotAvailable`, `NotLeaderForPartition`, `NetworkException`, `Transport`, or any error librdkafka calls retriable | `ServiceUnavailableException` "produce to topic T failed: *code*" ← `KafkaException` "*code*: *detail*" |
//! | any other Kafka error (e.g. `MsgSizeTooLarge`) | `ServiceRuntimeException` "produce to topic T failed: *code*" ← `KafkaException` "*code*: *detail*" |
//!
//! A 4xx is a `ServiceBusinessException`: the target answered, it is not
//! down, so a rule on `ServiceRuntimeException` with subtypes never stores
//! because of it. A TLS failure is a `ServiceRuntimeException` but not a
//! `ServiceUnavailableException`: a bad certificate is not an outage that
//! waiting fixes, so rules on `ServiceUnavailableException` do not store on
//! it, while a rule on `ServiceRuntimeException` (with subtypes) or on
//! `TlsException` does. Durations read like `250ms`, `2s`, `1.5s`, `1m30s`.
//! Every message is cut to 1000 characters.
//!
//! # The target's own chain in an HTTP error body
//!
//! An HTTP target may return its own exception chain in the body of a 4xx or
//! 5xx answer. It is appended below the `HttpStatusException`, so rules can
//! match the target's types. The body is used when:
//!
//! - the `Content-Type` is `application/json`, or any `+json` type such as
//!   `application/vnd.sfwd.chain+json` (parameters like `charset` are
//!   ignored);
//! - it is at most 64 KiB of JSON of this form, a nested cause chain like
//!   Java's, top-level first:
//!
//! ```json
//! {
//!   "exception": {
//!     "type": "EisConnectionLost",
//!     "message": "pool exhausted",
//!     "cause": {
//!       "type": "SQLException",
//!       "message": "connection refused by db-1:5432",
//!       "cause": null
//!     }
//!   }
//! }
//! ```
//!
//! `type` is required and must be a valid type name (ASCII letters, digits,
//! `_`, `.`, `$`, not starting with a digit, `.` or `$`, at most 200
//! characters); `message` is optional (a string, default empty); `cause` is
//! optional (an exception or `null`). Other fields are ignored. At most 32
//! exceptions deep. A body that is not of this form in any way (not JSON,
//! wrong content type, too large, too deep, a bad type name) is not used at
//! all; the status still maps as in the table.

use std::time::Duration;

use serde_json::Value;

use crate::rules::{
    ChainElement, ExceptionChain, SERVICE_BUSINESS, SERVICE_RUNTIME, SERVICE_TIMEOUT,
    SERVICE_UNAVAILABLE,
};

const CONNECT: &str = "ConnectException";
const UNKNOWN_HOST: &str = "UnknownHostException";
const HTTP_STATUS: &str = "HttpStatusException";
const TIMEOUT: &str = "TimeoutException";
const TLS: &str = "TlsException";
const IO: &str = "IoException";
const KAFKA: &str = "KafkaException";

/// Largest error body read for a chain, in bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most exceptions a body chain may nest.
const MAX_BODY_DEPTH: usize = 32;
/// Longest type name accepted from a body, in characters.
const MAX_TYPE_CHARS: usize = 200;
/// Longest message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;

/// librdkafka error codes meaning the Kafka target cannot be reached.
const KAFKA_UNAVAILABLE: &[&str] = &[
    "AllBrokersDown",
    "BrokerTransportFailure",
    "UnknownTopicOrPartition",
    "UnknownTopic",
    "LeaderNotAvailable",
    "NotLeaderForPartition",
    "NetworkException",
    "Transport",
];
/// librdkafka error codes meaning the Kafka target did not answer in time.
const KAFKA_TIMEOUT: &[&str] = &["MessageTimedOut", "RequestTimedOut"];

/// What went wrong when invoking a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target answered with a status outside 2xx.
    HttpStatus {
        /// The request method, e.g. `POST`.
        method: String,
        /// The URL invoked.
        url: String,
        /// The status code of the answer.
        status: u16,
        /// The reason phrase; may be empty (HTTP/2 has none), the standard
        /// phrase is used then.
        reason: String,
        /// The response body; may be empty.
        body: Vec<u8>,
        /// The `Content-Type` header of the answer, if any.
        content_type: Option<String>,
        /// The answer's `Retry-After`, in whole seconds from when it
        /// arrived (a date is turned into the seconds until it; at most
        /// about 18 hours).
        retry_after_secs: Option<u16>,
    },
    /// The TCP connection was refused or reset before a request was sent.
    ConnectRefused {
        /// The URL invoked.
        url: String,
        /// What the operating system or client said.
        detail: String,
    },
    /// The host name of the target did not resolve.
    Dns {
        /// The URL invoked.
        url: String,
        /// The host name that did not resolve.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// No complete answer arrived within the deadline.
    Timeout {
        /// The request method, e.g. `POST`.
        method: String,
        /// The URL invoked.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The TLS handshake failed or the certificate was refused.
    Tls {
        /// The request method, e.g. `POST`.
        method: String,
        /// The URL invoked.
        url: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The connection broke mid-exchange (reset, early EOF, protocol error).
    Io {
        /// The request method, e.g. `POST`.
        method: String,
        /// The URL invoked.
        url: String,
        /// What the operating system or client said.
        detail: String,
    },
    /// Producing to a Kafka target failed.
    Kafka {
        /// The topic produced to.
        topic: String,
        /// librdkafka's error code name: `MessageTimedOut`,
        /// `UnknownTopicOrPartition`, `MsgSizeTooLarge`, `AllBrokersDown`, …
        code: String,
        /// The error text.
        detail: String,
        /// Whether librdkafka calls the error retriable.
        retriable: bool,
    },
}

/// The exception chain of a failure, top-level first; see the module docs
/// for the table. Never empty.
pub fn chain_for(failure: &Failure) -> ExceptionChain {
    match failure {
        Failure::HttpStatus {
            method,
            url,
            status,
            reason,
            body,
            content_type,
            ..
        } => http_status_chain(method, url, *status, reason, body, content_type.as_deref()),
        Failure::ConnectRefused { url, detail } => pair(
            SERVICE_UNAVAILABLE,
            format!("cannot connect to {url}"),
            CONNECT,
            detail.clone(),
        ),
        Failure::Dns { url, host, detail } => pair(
            SERVICE_UNAVAILABLE,
            format!("cannot resolve host {host} of {url}"),
            UNKNOWN_HOST,
            with_detail(host, detail),
        ),
        Failure::Timeout { method, url, after } => {
            let after = human_duration(*after);
            pair(
                SERVICE_TIMEOUT,
                format!("{method} {url}: no answer within {after}"),
                TIMEOUT,
                format!("deadline of {after} exceeded"),
            )
        }
        Failure::Tls {
            method,
            url,
            detail,
        } => pair(
            SERVICE_RUNTIME,
            format!("{method} {url}: TLS failure"),
            TLS,
            detail.clone(),
        ),
        Failure::Io {
            method,
            url,
            detail,
        } => pair(
            SERVICE_RUNTIME,
            format!("{method} {url}: connection broken"),
            IO,
            detail.clone(),
        ),
        Failure::Kafka {
            topic,
            code,
            detail,
            retriable,
        } => pair(
            kafka_top_level(code, *retriable),
            format!("produce to topic {topic} failed: {code}"),
            KAFKA,
            with_detail(code, detail),
        ),
    }
}

/// The target's own chain from an HTTP error body, in the JSON form the
/// module docs describe; `None` when the body is not of that form (wrong or
/// missing content type, too large, not JSON, too deep, bad type name).
pub fn chain_from_body(body: &[u8], content_type: Option<&str>) -> Option<ExceptionChain> {
    if body.is_empty() || body.len() > MAX_BODY_BYTES || !is_json(content_type?) {
        return None;
    }
    // serde_json refuses nesting beyond 128 levels, which bounds the parse.
    let root: Value = serde_json::from_slice(body).ok()?;
    let mut next = root.as_object()?.get("exception")?;
    let mut chain = ExceptionChain::default();
    loop {
        if chain.len() == MAX_BODY_DEPTH {
            return None;
        }
        let exception = next.as_object()?;
        let type_name = exception.get("type")?.as_str()?;
        if !is_valid_body_type(type_name) {
            return None;
        }
        let message = match exception.get("message") {
            None | Some(Value::Null) => "",
            Some(m) => m.as_str()?,
        };
        chain.push_cause(element(type_name, message.to_string()));
        match exception.get("cause") {
            None | Some(Value::Null) => return Some(chain),
            Some(cause) => next = cause,
        }
    }
}

fn http_status_chain(
    method: &str,
    url: &str,
    status: u16,
    reason: &str,
    body: &[u8],
    content_type: Option<&str>,
) -> ExceptionChain {
    let (top_level, is_error) = match status {
        503 | 502 | 429 => (SERVICE_UNAVAILABLE, true),
        504 | 408 => (SERVICE_TIMEOUT, true),
        500..=599 => (SERVICE_RUNTIME, true),
        400..=499 => (SERVICE_BUSINESS, true),
        _ => (SERVICE_RUNTIME, false),
    };
    let reason = match reason.trim() {
        "" => canonical_reason(status),
        given => given,
    };
    let status_line = if reason.is_empty() {
        status.to_string()
    } else {
        format!("{status} {reason}")
    };
    let mut chain = pair(
        top_level,
        format!("{method} {url}: HTTP {status_line}"),
        HTTP_STATUS,
        status_line,
    );
    if is_error {
        if let Some(body_chain) = chain_from_body(body, content_type) {
            chain.extend(body_chain);
        }
    }
    chain
}

/// Timeout codes come first: a timed-out message is often also retriable,
/// and the more specific type is the more useful one to match.
fn kafka_top_level(code: &str, retriable: bool) -> &'static str {
    if KAFKA_TIMEOUT.contains(&code) {
        SERVICE_TIMEOUT
    } else if retriable || KAFKA_UNAVAILABLE.contains(&code) {
        SERVICE_UNAVAILABLE
    } else {
        SERVICE_RUNTIME
    }
}

fn pair(
    top_type: &str,
    top_message: String,
    cause_type: &str,
    cause_message: String,
) -> ExceptionChain {
    ExceptionChain::new(vec![
        element(top_type, top_message),
        element(cause_type, cause_message),
    ])
}

fn element(type_name: &str, message: String) -> ChainElement {
    ChainElement::new(type_name, clip(message))
}

/// `subject: detail`, or just `subject` when there is no detail.
fn with_detail(subject: &str, detail: &str) -> String {
    if detail.is_empty() {
        subject.to_string()
    } else {
        format!("{subject}: {detail}")
    }
}

fn clip(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
    }
    message
}

/// `application/json` or any `+json` media type, ignoring parameters.
fn is_json(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.split_once('/') {
        Some((kind, subtype)) => {
            (kind == "application" && subtype == "json")
                || (!kind.is_empty() && subtype.len() > "+json".len() && subtype.ends_with("+json"))
        }
        None => false,
    }
}

/// The rules' type-name syntax, with a length limit for untrusted input.
fn is_valid_body_type(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    starts_well
        && name.len() <= MAX_TYPE_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$'))
}

/// `250ms`, `2s`, `1.5s`, `1m30s`, `2h`.
fn human_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    let secs = d.as_secs();
    if secs == 0 {
        return if nanos == 0 {
            "0s".to_string()
        } else if nanos < 1_000 {
            format!("{nanos}ns")
        } else if nanos < 1_000_000 {
            format!("{}µs", decimal(u64::from(nanos), 1_000))
        } else {
            format!("{}ms", decimal(u64::from(nanos / 1_000), 1_000))
        };
    }
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos >= 1_000_000 {
        let millis = seconds * 1_000 + u64::from(nanos / 1_000_000);
        out.push_str(&format!("{}s", decimal(millis, 1_000)));
    }
    out
}

/// `value / unit` in decimal, without trailing zeros; `unit` is 1000.
fn decimal(value: u64, unit: u64) -> String {
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        whole.to_string()
    } else {
        let digits = format!("{fraction:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// The standard reason phrase, for answers that carry none (HTTP/2).
fn canonical_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const URL: &str = "http://orders:8080/orders";
    const JSON_CHAIN: &str = r#"{"exception": {"type": "EisConnectionLost", "message": "pool exhausted",
        "cause": {"type": "SQLException", "message": "connection refused by db-1", "cause": null}}}"#;

    fn http(status: u16, reason: &str) -> Failure {
        http_with_body(status, reason, b"", None)
    }

    fn http_with_body(
        status: u16,
        reason: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Failure {
        Failure::HttpStatus {
            method: "POST".into(),
            url: URL.into(),
            status,
            reason: reason.into(),
            body: body.to_vec(),
            content_type: content_type.map(str::to_string),
            retry_after_secs: None,
        }
    }

    fn types(chain: &ExceptionChain) -> Vec<&str> {
        chain
            .elements()
            .iter()
            .map(|e| e.type_name.as_str())
            .collect()
    }

    fn message(chain: &ExceptionChain, i: usize) -> &str {
        &chain.elements()[i].message
    }

    fn assert_http(status: u16, reason: &str, top_level: &str) {
        let chain = chain_for(&http(status, reason));
        assert_eq!(types(&chain), [top_level, HTTP_STATUS], "HTTP {status}");
        assert_eq!(
            message(&chain, 0),
            format!("POST {URL}: HTTP {status} {reason}")
        );
        assert_eq!(message(&chain, 1), format!("{status} {reason}"));
    }

    #[test]
    fn http_503_is_unavailable() {
        let chain = chain_for(&http(503, "Service Unavailable"));
        assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, HTTP_STATUS]);
        assert_eq!(
            message(&chain, 0),
            "POST http://orders:8080/orders: HTTP 503 Service Unavailable"
        );
        assert_eq!(message(&chain, 1), "503 Service Unavailable");
    }

    #[test]
    fn http_502_and_429_are_unavailable() {
        assert_http(502, "Bad Gateway", SERVICE_UNAVAILABLE);
        assert_http(429, "Too Many Requests", SERVICE_UNAVAILABLE);
    }

    #[test]
    fn http_504_and_408_are_timeouts() {
        assert_http(504, "Gateway Timeout", SERVICE_TIMEOUT);
        assert_http(408, "Request Timeout", SERVICE_TIMEOUT);
    }

    #[test]
    fn other_5xx_are_runtime() {
        assert_http(500, "Internal Server Error", SERVICE_RUNTIME);
        assert_http(501, "Not Implemented", SERVICE_RUNTIME);
        assert_http(505, "HTTP Version Not Supported", SERVICE_RUNTIME);
        assert_http(599, "Custom", SERVICE_RUNTIME);
    }

    #[test]
    fn other_4xx_are_business_faults() {
        assert_http(400, "Bad Request", SERVICE_BUSINESS);
        assert_http(404, "Not Found", SERVICE_BUSINESS);
        assert_http(409, "Conflict", SERVICE_BUSINESS);
        assert_http(422, "Unprocessable Content", SERVICE_BUSINESS);
    }

    #[test]
    fn informational_and_redirects_are_runtime() {
        assert_http(101, "Switching Protocols", SERVICE_RUNTIME);
        assert_http(302, "Found", SERVICE_RUNTIME);
        assert_http(304, "Not Modified", SERVICE_RUNTIME);
    }

    #[test]
    fn missing_reason_phrase_uses_the_standard_one() {
        let chain = chain_for(&http(503, ""));
        assert_eq!(message(&chain, 1), "503 Service Unavailable");
        let chain = chain_for(&http(599, ""));
        assert_eq!(message(&chain, 0), format!("POST {URL}: HTTP 599"));
        assert_eq!(message(&chain, 1), "599");
    }

    #[test]
    fn connect_refused_is_unavailable() {
        let chain = chain_for(&Failure::ConnectRefused {
            url: URL.into(),
            detail: "Connection refused (os error 111)".into(),
        });
        assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, CONNECT]);
        assert_eq!(message(&chain, 0), format!("cannot connect to {URL}"));
        assert_eq!(message(&chain, 1), "Connection refused (os error 111)");
    }

    #[test]
    fn dns_failure_is_unavailable() {
        let chain = chain_for(&Failure::Dns {
            url: URL.into(),
            host: "orders".into(),
            detail: "Name or service not known".into(),
        });
        assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, UNKNOWN_HOST]);
        assert_eq!(
            message(&chain, 0),
            format!("cannot resolve host orders of {URL}")
        );
        assert_eq!(message(&chain, 1), "orders: Name or service not known");
    }

    #[test]
    fn timeout_is_a_timeout_with_the_deadline() {
        let chain = chain_for(&Failure::Timeout {
            method: "POST".into(),
            url: URL.into(),
            after: Duration::from_secs(2),
        });
        assert_eq!(types(&chain), [SERVICE_TIMEOUT, TIMEOUT]);
        assert_eq!(
            message(&chain, 0),
            format!("POST {URL}: no answer within 2s")
        );
        assert_eq!(message(&chain, 1), "deadline of 2s exceeded");
    }

    #[test]
    fn tls_failure_is_runtime_not_unavailable() {
        let chain = chain_for(&Failure::Tls {
            method: "PUT".into(),
            url: "https://orders/o".into(),
            detail: "certificate has expired".into(),
        });
        assert_eq!(types(&chain), [SERVICE_RUNTIME, TLS]);
        assert_eq!(message(&chain, 0), "PUT https://orders/o: TLS failure");
        assert_eq!(message(&chain, 1), "certificate has expired");
    }

    #[test]
    fn broken_connection_is_runtime() {
        let chain = chain_for(&Failure::Io {
            method: "POST".into(),
            url: URL.into(),
            detail: "connection reset by peer".into(),
        });
        assert_eq!(types(&chain), [SERVICE_RUNTIME, IO]);
        assert_eq!(message(&chain, 0), format!("POST {URL}: connection broken"));
        assert_eq!(message(&chain, 1), "connection reset by peer");
    }

    fn kafka(code: &str, retriable: bool) -> ExceptionChain {
        chain_for(&Failure::Kafka {
            topic: "payments".into(),
            code: code.into(),
            detail: "broker said no".into(),
            retriable,
        })
    }

    #[test]
    fn kafka_unreachable_codes_are_unavailable() {
        for code in KAFKA_UNAVAILABLE {
            let chain = kafka(code, false);
            assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, KAFKA], "{code}");
            assert_eq!(
                message(&chain, 0),
                format!("produce to topic payments failed: {code}")
            );
            assert_eq!(message(&chain, 1), format!("{code}: broker said no"));
        }
    }

    #[test]
    fn kafka_retriable_errors_are_unavailable() {
        let chain = kafka("OutOfOrderSequenceNumber", true);
        assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, KAFKA]);
    }

    #[test]
    fn kafka_timeouts_are_timeouts_even_when_retriable() {
        for code in KAFKA_TIMEOUT {
            for retriable in [false, true] {
                let chain = kafka(code, retriable);
                assert_eq!(types(&chain), [SERVICE_TIMEOUT, KAFKA], "{code}");
                assert_eq!(
                    message(&chain, 0),
                    format!("produce to topic payments failed: {code}")
                );
            }
        }
    }

    #[test]
    fn other_kafka_errors_are_runtime() {
        let chain = kafka("MsgSizeTooLarge", false);
        assert_eq!(types(&chain), [SERVICE_RUNTIME, KAFKA]);
        assert_eq!(message(&chain, 1), "MsgSizeTooLarge: broker said no");
    }

    #[test]
    fn body_chain_is_appended_below_the_status() {
        for (status, top_level) in [
            (503, SERVICE_UNAVAILABLE),
            (500, SERVICE_RUNTIME),
            (504, SERVICE_TIMEOUT),
            (422, SERVICE_BUSINESS),
        ] {
            let chain = chain_for(&http_with_body(
                status,
                "",
                JSON_CHAIN.as_bytes(),
                Some("application/json; charset=utf-8"),
            ));
            assert_eq!(
                types(&chain),
                [top_level, HTTP_STATUS, "EisConnectionLost", "SQLException"]
            );
            assert_eq!(message(&chain, 2), "pool exhausted");
            assert_eq!(message(&chain, 3), "connection refused by db-1");
        }
    }

    #[test]
    fn body_chain_is_not_read_for_redirects() {
        let chain = chain_for(&http_with_body(
            302,
            "Found",
            JSON_CHAIN.as_bytes(),
            Some("application/json"),
        ));
        assert_eq!(types(&chain), [SERVICE_RUNTIME, HTTP_STATUS]);
    }

    #[test]
    fn json_content_types_are_accepted() {
        for content_type in [
            "application/json",
            "Application/JSON",
            "application/json;charset=UTF-8",
            "application/vnd.sfwd.chain+json",
            "application/problem+json; charset=utf-8",
        ] {
            let chain = chain_from_body(JSON_CHAIN.as_bytes(), Some(content_type));
            assert_eq!(chain.map(|c| c.len()), Some(2), "{content_type}");
        }
    }

    #[test]
    fn message_and_cause_are_optional() {
        let chain = chain_from_body(
            br#"{"exception": {"type": "Boom"}}"#,
            Some("application/json"),
        )
        .unwrap();
        assert_eq!(
            chain,
            ExceptionChain::new(vec![ChainElement::new("Boom", "")])
        );
        let chain = chain_from_body(
            br#"{"exception": {"type": "a.B$C", "message": null, "stack": [1]}, "extra": 1}"#,
            Some("application/json"),
        )
        .unwrap();
        assert_eq!(types(&chain), ["a.B$C"]);
    }

    #[test]
    fn non_json_content_types_are_ignored() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("text/html; charset=utf-8"),
            Some("application/xml"),
            Some("application/jsonp"),
            Some("+json"),
            Some("application/+json"),
            Some(""),
        ] {
            assert_eq!(
                chain_from_body(JSON_CHAIN.as_bytes(), content_type),
                None,
                "{content_type:?}"
            );
        }
        let chain = chain_for(&http_with_body(
            500,
            "Internal Server Error",
            JSON_CHAIN.as_bytes(),
            Some("text/plain"),
        ));
        assert_eq!(types(&chain), [SERVICE_RUNTIME, HTTP_STATUS]);
    }

    #[test]
    fn malformed_bodies_are_ignored() {
        for body in [
            "",
            "not json",
            "{",
            "[]",
            "null",
            "{}",
            r#"{"exception": null}"#,
            r#"{"exception": "Boom"}"#,
            r#"{"exception": {}}"#,
            r#"{"exception": {"message": "no type"}}"#,
            r#"{"exception": {"type": 7}}"#,
            r#"{"exception": {"type": "Boom", "message": 7}}"#,
            r#"{"exception": {"type": "Boom", "cause": "Bang"}}"#,
            r#"{"exception": {"type": "Boom", "cause": {"type": "9Lives"}}}"#,
            r#"{"exception": {"type": "Bad Name"}}"#,
            r#"{"exception": {"type": ""}}"#,
            r#"{"exception": {"type": "$Dollar"}}"#,
            r#"{"exception": {"type": "Boom"}} trailing"#,
        ] {
            assert_eq!(
                chain_from_body(body.as_bytes(), Some("application/json")),
                None,
                "{body}"
            );
        }
        let chain = chain_for(&http_with_body(
            503,
            "Service Unavailable",
            b"{\"exception\": {",
            Some("application/json"),
        ));
        assert_eq!(types(&chain), [SERVICE_UNAVAILABLE, HTTP_STATUS]);
    }

    fn nested(depth: usize) -> String {
        let mut body = String::from("null");
        for i in (0..depth).rev() {
            body = format!(r#"{{"type": "E{i}", "message": "m", "cause": {body}}}"#);
        }
        format!(r#"{{"exception": {body}}}"#)
    }

    #[test]
    fn depth_limit_is_32() {
        let chain = chain_from_body(nested(32).as_bytes(), Some("application/json")).unwrap();
        assert_eq!(chain.len(), 32);
        assert_eq!(chain.top_level().unwrap().type_name, "E0");
        assert_eq!(chain.original().unwrap().type_name, "E31");
        assert_eq!(
            chain_from_body(nested(33).as_bytes(), Some("application/json")),
            None
        );
        assert_eq!(
            chain_from_body(nested(500).as_bytes(), Some("application/json")),
            None
        );
    }

    #[test]
    fn oversized_bodies_are_ignored() {
        let message = "x".repeat(MAX_BODY_BYTES);
        let body = format!(r#"{{"exception": {{"type": "Boom", "message": "{message}"}}}}"#);
        assert_eq!(
            chain_from_body(body.as_bytes(), Some("application/json")),
            None
        );
        let padded = format!(
            "{}{JSON_CHAIN}",
            " ".repeat(MAX_BODY_BYTES - JSON_CHAIN.len())
        );
        assert!(chain_from_body(padded.as_bytes(), Some("application/json")).is_some());
        let padded = format!(" {padded}");
        assert_eq!(
            chain_from_body(padded.as_bytes(), Some("application/json")),
            None
        );
    }

    #[test]
    fn type_names_are_limited_to_200_characters() {
        let body = |n: usize| format!(r#"{{"exception": {{"type": "{}"}}}}"#, "T".repeat(n));
        assert!(chain_from_body(body(200).as_bytes(), Some("application/json")).is_some());
        assert_eq!(
            chain_from_body(body(201).as_bytes(), Some("application/json")),
            None
        );
    }

    #[test]
    fn messages_are_cut_to_1000_characters() {
        let body = format!(
            r#"{{"exception": {{"type": "Boom", "message": "{}"}}}}"#,
            "é".repeat(1500)
        );
        let chain = chain_from_body(body.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(message(&chain, 0).chars().count(), 1000);
        let chain = chain_for(&Failure::Io {
            method: "POST".into(),
            url: URL.into(),
            detail: "d".repeat(5000),
        });
        assert_eq!(message(&chain, 1).len(), 1000);
    }

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(500), "500ns"),
            (Duration::from_micros(750), "750µs"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(1_250), "1.25s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(90_500), "1m30.5s"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_secs(3_660), "1h1m"),
        ];
        for (duration, text) in cases {
            assert_eq!(human_duration(duration), text, "{duration:?}");
        }
    }

    proptest! {
        #[test]
        fn every_status_maps_to_a_service_type_over_the_status(status in 100u16..600) {
            let chain = chain_for(&http(status, ""));
            prop_assert!(!chain.is_empty());
            let top_level = chain.top_level().unwrap().type_name.as_str();
            prop_assert!(
                [SERVICE_RUNTIME, SERVICE_UNAVAILABLE, SERVICE_TIMEOUT, SERVICE_BUSINESS]
                    .contains(&top_level)
            );
            prop_assert_eq!(chain.elements()[1].type_name.as_str(), HTTP_STATUS);
            prop_assert!(chain.elements()[0].message.contains(&status.to_string()));
            prop_assert!(chain.elements()[0].message.contains(URL));
        }

        #[test]
        fn arbitrary_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            content_type in proptest::option::of("[a-z+/;= ]{0,40}"),
        ) {
            let _ = chain_from_body(&body, content_type.as_deref());
            let _ = chain_from_body(&body, Some("application/json"));
        }

        #[test]
        fn arbitrary_json_bodies_never_panic(
            text in r#"[{}\[\]":, a-zA-Z0-9_.$\\]{0,512}"#,
        ) {
            let _ = chain_from_body(text.as_bytes(), Some("application/json"));
        }
    }
}
