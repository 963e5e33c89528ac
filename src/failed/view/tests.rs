use std::collections::HashMap;

use super::*;
use crate::failed::{Filter, StatusFilter};
use crate::records::{FailureReason, Header};
use crate::rules::{ChainElement, ExceptionChain};

fn pos(topic: &str, partition: i32, offset: i64) -> SourcePosition {
    SourcePosition {
        topic: topic.into(),
        partition,
        offset,
    }
}

fn event(id: &str, source: SourcePosition, failed_at: i64) -> FailedEvent {
    FailedEvent {
        request_id: id.into(),
        reason: FailureReason::StoreTrigger,
        detail: "activated the store".into(),
        control_point: Some("Eis".into()),
        service: Some("eis".into()),
        interface: Some("Query".into()),
        operation: Some("get".into()),
        source,
        key: Some(b"emp-1".to_vec()),
        value: Some(vec![0xff, 0x00]),
        headers: vec![Header::new("trace", "t-1")],
        chain: ExceptionChain::new(vec![
            ChainElement::new("ServiceUnavailableException", "POST http://eis: 503\nmore"),
            ChainElement::new("HttpStatusException", "503"),
        ]),
        rule: Some("ServiceUnavailableException".into()),
        instance: "a".into(),
        failed_at,
        attempts: 1,
        epoch: Some(0),
    }
}

/// Events written to `app.failed` partition 0 at consecutive offsets.
fn written(events: Vec<FailedEvent>) -> Vec<(SourcePosition, FailedEvent)> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| (pos("app.failed", 0, i as i64), e))
        .collect()
}

struct Log {
    records: Vec<ActionAt>,
    keys: Vec<String>,
}

impl Log {
    fn new() -> Log {
        Log {
            records: Vec::new(),
            keys: Vec::new(),
        }
    }

    fn next(&self) -> i64 {
        self.records.len() as i64
    }

    fn push(&mut self, key: String, action: FailedAction) -> i64 {
        let offset = self.next();
        self.records.push(ActionAt {
            partition: 0,
            offset,
            action,
        });
        self.keys.push(key);
        offset
    }

    fn claim(&mut self, id: &str, failure: SourcePosition, claim: &str, forced: bool) -> i64 {
        self.push(
            format!("resubmit:{id}:{claim}"),
            action(
                id,
                FailedActionKind::Resubmitting,
                failure,
                Some(claim),
                forced,
            ),
        )
    }

    fn settle(&mut self, id: &str, failure: SourcePosition, claim: &str, claimed_at: i64) {
        let mut a = action(
            id,
            FailedActionKind::Resubmitted,
            failure,
            Some(claim),
            false,
        );
        a.claim_offset = Some(claimed_at);
        a.resubmitted_to = Some(pos("req", 0, 100 + claimed_at));
        self.push(format!("resubmit:{id}:{claim}"), a);
    }

    fn discard(&mut self, id: &str, failure: SourcePosition) {
        self.push(
            format!("discard:{id}"),
            action(id, FailedActionKind::Discarded, failure, None, false),
        );
    }

    /// What compaction may leave: only the last record of each key.
    fn compacted(&self) -> Vec<ActionAt> {
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, k) in self.keys.iter().enumerate() {
            last.insert(k, i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort();
        keep.into_iter().map(|i| self.records[i].clone()).collect()
    }
}

fn action(
    id: &str,
    kind: FailedActionKind,
    failure: SourcePosition,
    claim: Option<&str>,
    forced: bool,
) -> FailedAction {
    FailedAction {
        request_id: id.into(),
        action: kind,
        failure,
        claim: claim.map(str::to_string),
        claim_offset: None,
        forced,
        by: format!("operator:{}", claim.unwrap_or("d")),
        at: 1_000,
        resubmitted_to: None,
        detail: None,
    }
}

#[test]
fn copies_of_one_failure_collapse_and_the_first_is_kept() {
    let src = pos("req", 1, 7);
    let mut second = event("r1", src.clone(), 20);
    second.instance = "b".into();
    let view = FailedView::from_records(
        written(vec![
            event("r1", src.clone(), 10),
            event("r2", pos("req", 0, 3), 15),
            second,
        ]),
        vec![],
    );
    assert_eq!(view.len(), 2);
    let e = view.get("r1").unwrap();
    assert_eq!((e.copies, e.failures), (2, 1));
    assert_eq!(e.event.instance, "a");
    assert_eq!(e.failed_record, pos("app.failed", 0, 0));
    assert_eq!(e.status, Status::Open);
    // Oldest failure first.
    let ids: Vec<&str> = view
        .entries()
        .iter()
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(ids, ["r1", "r2"]);
}

#[test]
fn a_resubmitted_request_that_fails_again_is_open_again() {
    let first = pos("req", 0, 5);
    let again = pos("req", 0, 105);
    let mut log = Log::new();
    let c = log.claim("r1", first.clone(), "c1", false);
    log.settle("r1", first.clone(), "c1", c);
    let view = FailedView::from_records(
        written(vec![event("r1", first.clone(), 10)]),
        log.records.clone(),
    );
    assert_eq!(view.get("r1").unwrap().status, Status::Resubmitted);
    let view = FailedView::from_records(
        written(vec![event("r1", first, 10), event("r1", again.clone(), 30)]),
        log.records,
    );
    let e = view.get("r1").unwrap();
    assert_eq!((e.status, e.failures, e.copies), (Status::Open, 2, 1));
    assert_eq!(e.event.source, again);
    assert!(e.resubmission.is_none());
}

#[test]
fn the_first_claim_wins_and_later_ones_lose_unless_forced() {
    let f = pos("req", 0, 5);
    let mut log = Log::new();
    let a = log.claim("r1", f.clone(), "a", false);
    let b = log.claim("r1", f.clone(), "b", false);
    let book = ActionBook::new(log.records.clone());
    let winners: Vec<&str> = book.winners("r1", &f).map(|a| a.claim.as_str()).collect();
    assert_eq!(winners, ["a"]);
    // Settling does not change the order, even once compaction dropped the claims.
    log.settle("r1", f.clone(), "b", b);
    log.settle("r1", f.clone(), "a", a);
    for records in [log.records.clone(), log.compacted()] {
        let book = ActionBook::new(records);
        let winners: Vec<&str> = book.winners("r1", &f).map(|a| a.claim.as_str()).collect();
        assert_eq!(winners, ["a"]);
    }
    // A forced claim wins too, and decides the status from then on.
    log.claim("r1", f.clone(), "c", true);
    log.claim("r1", f.clone(), "d", false);
    let book = ActionBook::new(log.compacted());
    let winners: Vec<&str> = book.winners("r1", &f).map(|a| a.claim.as_str()).collect();
    assert_eq!(winners, ["a", "c"]);
    let view = FailedView::from_records(written(vec![event("r1", f, 1)]), log.compacted());
    let e = view.get("r1").unwrap();
    assert_eq!(e.status, Status::Resubmitting);
    assert_eq!(e.resubmission.as_ref().unwrap().claim, "c");
}

#[test]
fn claims_for_another_failure_do_not_count() {
    let old = pos("req", 0, 5);
    let new = pos("req", 0, 9);
    let mut log = Log::new();
    log.claim("r1", old.clone(), "a", false);
    let book = ActionBook::new(log.records.clone());
    assert!(book.effective("r1", &new).is_none());
    assert!(book.effective("r2", &old).is_none());
    assert_eq!(book.effective("r1", &old).unwrap().claim, "a");
}

#[test]
fn discards_hide_open_events_and_resubmission_wins_over_discard() {
    let f = pos("req", 0, 5);
    let mut log = Log::new();
    log.discard("r1", f.clone());
    let events = written(vec![
        event("r1", f.clone(), 1),
        event("r2", pos("req", 0, 6), 2),
    ]);
    let view = FailedView::from_records(events.clone(), log.records.clone());
    let e = view.get("r1").unwrap();
    assert_eq!(e.status, Status::Discarded);
    assert_eq!(e.discard.as_ref().unwrap().by, "operator:d");
    let open: Vec<&str> = view
        .list(&Filter::default())
        .iter()
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(open, ["r2"]);
    let all = view.list(&Filter {
        status: StatusFilter::Any,
        ..Filter::default()
    });
    assert_eq!(all.len(), 2);
    // A discarded event may still be resubmitted; it then counts as resubmitted.
    let c = log.claim("r1", f.clone(), "a", false);
    log.settle("r1", f.clone(), "a", c);
    let view = FailedView::from_records(events, log.compacted());
    assert_eq!(view.get("r1").unwrap().status, Status::Resubmitted);
    let counts = view.counts_by_control_point();
    assert_eq!(counts["Eis"].resubmitted, 1);
    assert_eq!(counts["Eis"].open, 1);
    assert_eq!(counts["Eis"].total(), 2);
}

#[test]
fn unknown_and_malformed_actions_are_ignored() {
    let f = pos("req", 0, 5);
    let mut log = Log::new();
    log.push(
        "x".into(),
        action("r1", FailedActionKind::Unknown, f.clone(), Some("u"), false),
    );
    // A settled record without its claim offset cannot be ordered.
    log.push(
        "resubmit:r1:z".into(),
        action(
            "r1",
            FailedActionKind::Resubmitted,
            f.clone(),
            Some("z"),
            false,
        ),
    );
    let view = FailedView::from_records(written(vec![event("r1", f, 1)]), log.records);
    assert_eq!(view.get("r1").unwrap().status, Status::Open);
}

#[test]
fn filters_combine() {
    let mut bad = event("bad", pos("other", 0, 1), 3_000);
    bad.reason = FailureReason::Malformed;
    bad.control_point = None;
    bad.service = None;
    bad.interface = None;
    bad.operation = None;
    bad.chain = ExceptionChain::default();
    let mut put = event("put", pos("req", 0, 2), 2_000);
    put.interface = Some("Update".into());
    put.operation = Some("put".into());
    put.reason = FailureReason::InvocationFailed;
    let view = FailedView::from_records(
        written(vec![event("get", pos("req", 0, 1), 1_000), put, bad]),
        vec![],
    );
    let ids =
        |f: Filter| -> Vec<String> { view.list(&f).iter().map(|e| e.request_id.clone()).collect() };
    assert_eq!(ids(Filter::default()), ["get", "put", "bad"]);
    let cp = Filter {
        control_point: Some("Eis".into()),
        ..Filter::default()
    };
    assert!(cp.narrows());
    assert_eq!(ids(cp), ["get", "put"]);
    assert_eq!(
        ids(Filter {
            service: Some("eis".into()),
            operation: Some("put".into()),
            ..Filter::default()
        }),
        ["put"]
    );
    assert_eq!(
        ids(Filter {
            operation: Some("Query.get".into()),
            ..Filter::default()
        }),
        ["get"]
    );
    assert!(ids(Filter {
        operation: Some("Update.get".into()),
        ..Filter::default()
    })
    .is_empty());
    assert_eq!(
        ids(Filter {
            reason: Some(FailureReason::Malformed),
            ..Filter::default()
        }),
        ["bad"]
    );
    assert_eq!(
        ids(Filter {
            since_ms: Some(2_000),
            until_ms: Some(3_000),
            ..Filter::default()
        }),
        ["put"]
    );
    assert!(ids(Filter {
        status: StatusFilter::Is(Status::Discarded),
        ..Filter::default()
    })
    .is_empty());
    assert!(!Filter::default().narrows());
}

#[test]
fn summary_lines_and_operation_names() {
    let view = FailedView::from_records(written(vec![event("r", pos("req", 0, 1), 1)]), vec![]);
    let e = view.get("r").unwrap();
    assert_eq!(
        e.summary_line(),
        "ServiceUnavailableException: POST http://eis: 503"
    );
    assert_eq!(e.operation_name(), "Query.get");
    let mut bad = event("b", pos("req", 0, 2), 1);
    bad.chain = ExceptionChain::default();
    bad.interface = None;
    bad.operation = None;
    bad.detail = "no operation `x` on topic req".into();
    let view = FailedView::from_records(written(vec![bad]), vec![]);
    let e = view.get("b").unwrap();
    assert_eq!(e.summary_line(), "no operation `x` on topic req");
    assert_eq!(e.operation_name(), "-");
}

#[test]
fn json_has_the_documented_fields() {
    let f = pos("req", 0, 5);
    let mut log = Log::new();
    let c = log.claim("r1", f.clone(), "a", false);
    log.settle("r1", f.clone(), "a", c);
    let view = FailedView::from_records(
        written(vec![event("r1", f, 1_740_821_400_000)]),
        log.records,
    );
    let e = view.get("r1").unwrap();
    let v = e.to_json(false);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "attempts",
            "chain",
            "control_point",
            "copies",
            "detail",
            "discarded",
            "epoch",
            "failed_at",
            "failed_at_ms",
            "failed_record",
            "failures",
            "instance",
            "interface",
            "operation",
            "reason",
            "request_id",
            "resubmission",
            "rule",
            "service",
            "source",
            "status"
        ]
    );
    assert_eq!(v["status"], "resubmitted");
    assert_eq!(v["reason"], "store-trigger");
    assert_eq!(v["failed_at"], "2025-03-01T09:30:00Z");
    assert_eq!(v["source"]["offset"], 5);
    assert_eq!(v["chain"][0]["type"], "ServiceUnavailableException");
    assert_eq!(v["chain"][1]["message"], "503");
    assert_eq!(v["resubmission"]["state"], "resubmitted");
    assert_eq!(v["resubmission"]["resubmitted_to"]["offset"], 100);
    assert_eq!(v["discarded"], Value::Null);
    let full = e.to_json(true);
    assert_eq!(full["key"], json!({"utf8": "emp-1"}));
    assert_eq!(full["value"], json!({"base64": "/wA="}));
    assert_eq!(
        full["headers"],
        json!([{"key": "trace", "value": {"utf8": "t-1"}}])
    );
}

#[test]
fn base64_matches_the_standard() {
    for (input, out) in [
        (&b""[..], ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foobar", "Zm9vYmFy"),
        (&[0xff, 0xfe, 0xfd, 0x00][..], "//79AA=="),
    ] {
        assert_eq!(base64(input), out);
    }
}

#[test]
fn statuses_parse_their_names() {
    for s in Status::ALL {
        assert_eq!(s.as_str().parse::<Status>(), Ok(s));
    }
    assert!("closed"
        .parse::<Status>()
        .unwrap_err()
        .to_string()
        .contains("open, discarded"));
}
