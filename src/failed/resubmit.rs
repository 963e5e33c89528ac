//! What a resubmission writes back: the original request, recognisable.

use crate::pipeline::route::request_id;
use crate::records::FailedEvent;
use crate::topology::REQUEST_ID_HEADER;

pub use crate::wire::RESUBMITTED_FROM_HEADER;

/// The headers of the resubmitted copy of `event`'s request: the original
/// headers in order (duplicates kept), without any earlier
/// `sfwd-resubmitted-from`; then `sfwd-request-id: <id>` when the original
/// headers do not already give the request that id (it was derived from
/// the source position), so that sfwd recognises the copy as the same
/// request; then `sfwd-resubmitted-from: <id>`.
pub fn resubmission_headers(event: &FailedEvent) -> Vec<(String, Option<Vec<u8>>)> {
    let id = &event.request_id;
    let mut headers: Vec<(String, Option<Vec<u8>>)> = event
        .headers
        .iter()
        .filter(|h| h.key != RESUBMITTED_FROM_HEADER)
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    // An id the pipeline derives from the headers never looks like this
    // position, so equality means the headers carry the id.
    if request_id(&headers, "", -1, -1) != *id {
        headers.push((REQUEST_ID_HEADER.to_string(), Some(id.clone().into_bytes())));
    }
    headers.push((
        RESUBMITTED_FROM_HEADER.to_string(),
        Some(id.clone().into_bytes()),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{FailureReason, Header, SourcePosition};

    fn event(id: &str, headers: Vec<Header>) -> FailedEvent {
        FailedEvent {
            request_id: id.into(),
            reason: FailureReason::StoreTrigger,
            detail: String::new(),
            control_point: None,
            service: None,
            interface: None,
            operation: None,
            source: SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 5,
            },
            key: None,
            value: None,
            headers,
            chain: Default::default(),
            rule: None,
            instance: "i".into(),
            failed_at: 0,
            attempts: 1,
            epoch: None,
        }
    }

    fn names(h: &[(String, Option<Vec<u8>>)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    String::from_utf8_lossy(v.as_deref().unwrap_or(b"<none>")).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_positional_id_is_added_as_a_header() {
        let e = event(
            "t/0/5",
            vec![
                Header::new("trace", "1"),
                Header {
                    key: "empty".into(),
                    value: None,
                },
                Header::new("trace", "2"),
            ],
        );
        assert_eq!(
            names(&resubmission_headers(&e)),
            pairs(&[
                ("trace", "1"),
                ("empty", "<none>"),
                ("trace", "2"),
                ("sfwd-request-id", "t/0/5"),
                ("sfwd-resubmitted-from", "t/0/5"),
            ])
        );
    }

    #[test]
    fn an_id_from_the_header_is_kept_where_it_was() {
        let e = event(
            "abc",
            vec![
                Header::new("sfwd-request-id", " abc "),
                Header::new("sfwd-resubmitted-from", "older"),
                Header::new("x", "y"),
            ],
        );
        assert_eq!(
            names(&resubmission_headers(&e)),
            pairs(&[
                ("sfwd-request-id", " abc "),
                ("x", "y"),
                ("sfwd-resubmitted-from", "abc"),
            ])
        );
    }

    #[test]
    fn an_unusable_id_header_is_overridden_by_a_later_one() {
        // The pipeline ignored the empty header and used the position.
        let e = event("t/0/5", vec![Header::new("sfwd-request-id", "")]);
        let h = resubmission_headers(&e);
        assert_eq!(request_id(&h, "t", 0, 99), "t/0/5");
        assert_eq!(h.len(), 3);
    }
}
