//! The data path against a real broker: `sfwd run` processes consume
//! requests, invoke targets, store, fail and replay (SPEC §5–§7).

mod common;

use common::app::*;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;

#[tokio::test(flavor = "multi_thread")]
async fn kafka_target_pass_through_keeps_order_per_partition() {
    let app = App::new("passthru", |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 3 }}
services:
  svc:
    binding: {{ kafka: {{ topic: {name}.target }} }}
    store_and_forward: {{ control_point: Svc }}
    interfaces:
      I: {{ operations: {{ op: {{ topic: {name}.requests }} }} }}
"#
        )
    });
    let requests = app.topic("requests");
    let target = app.topic("target");
    common::create_topics(&[(&requests, 3), (&target, 1)]).await;
    let producer = common::producer();
    for i in 0..60 {
        let key = format!("k{}", i % 7);
        common::produce(
            &producer,
            &requests,
            Some(i % 3),
            Some(key.as_bytes()),
            Some(format!("v{i}").as_bytes()),
            &[("h", b"x")],
        )
        .await;
    }
    let _a = app.start("a");
    let delivered = tokio::task::spawn_blocking(move || {
        common::read_topic(&target, 60, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(delivered.len(), 60, "every request delivered once");
    for offsets in assert_ascending_per_partition(&request_ids(&delivered)).values() {
        assert_eq!(offsets.len(), 20);
    }
    // Key, value and headers travel to the target.
    let first = delivered
        .iter()
        .find(|m| common::header(m, "sfwd-request-id").unwrap() == format!("{requests}/0/0"))
        .unwrap();
    assert_eq!(first.key(), Some(&b"k0"[..]));
    assert_eq!(first.payload(), Some(&b"v0"[..]));
    assert_eq!(common::header(first, "h").as_deref(), Some("x"));
    assert_eq!(
        common::header(first, "sfwd-operation").as_deref(),
        Some("I.op")
    );
}

use sfwd::control::CommandKind;
use sfwd::records::FailureReason;
use sfwd::target_sim::Mode;

#[tokio::test(flavor = "multi_thread")]
async fn outage_stores_everything_after_one_trigger_and_forward_replays_in_order() {
    let sim = start_target().await;
    let app = http_app("outage", &sim, "");
    app.create_request_topics().await;
    let mut a = app.start_assigned("a");

    // Pass-through while the target is up.
    let first = produce_requests(&app, 0, 30).await;
    sim.wait_for(30, Duration::from_secs(60))
        .await
        .expect("30 delivered");

    // The target goes down: one trigger, the rest stored, target left alone.
    sim.set_mode(Mode::Unavailable);
    let second = produce_requests(&app, 30, 30).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    let stored_messages = read_async(app.topic("stored.Eis"), 29, 60).await;
    let stored = decode_stored(&stored_messages);
    assert_eq!(failed.len(), 1, "exactly one failed event: {failed:?}");
    let trigger = &failed[0];
    assert_eq!(trigger.reason, FailureReason::StoreTrigger);
    assert_eq!(trigger.control_point.as_deref(), Some("Eis"));
    assert_eq!(
        trigger.chain.top_level().unwrap().type_name,
        "ServiceUnavailableException"
    );
    assert!(trigger
        .rule
        .as_deref()
        .unwrap()
        .starts_with("ServiceUnavailableException"));
    assert!(
        second.contains(&trigger.request_id),
        "the trigger is one of the requests sent while down"
    );
    assert_eq!(stored.len(), 29, "every other request stored");
    let mut stored_ids: Vec<&str> = stored.iter().map(|s| s.request_id.as_str()).collect();
    stored_ids.sort();
    let mut expected: Vec<&str> = second
        .iter()
        .map(String::as_str)
        .filter(|id| *id != trigger.request_id)
        .collect();
    expected.sort();
    assert_eq!(stored_ids, expected);
    // Both operations of the service were stored, key/value/headers intact.
    assert!(
        stored.iter().any(|s| s.operation == "get") && stored.iter().any(|s| s.operation == "put")
    );
    let s = stored.iter().find(|s| s.request_id == expected[0]).unwrap();
    let n: usize = s
        .value
        .as_deref()
        .map(|v| {
            String::from_utf8_lossy(v)
                .trim_start_matches("{\"n\":")
                .trim_end_matches('}')
                .parse()
                .unwrap()
        })
        .unwrap();
    assert_eq!(s.key.as_deref(), Some(format!("emp-{n}").as_bytes()));
    let headers: Vec<(&str, &[u8])> = s
        .headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_deref().unwrap()))
        .collect();
    assert_eq!(
        headers,
        vec![("trace", &b"t-1"[..]), ("trace", &b"t-2"[..])]
    );
    // While storing, the target is not called.
    let attempts = sim.attempts();
    let third = produce_requests(&app, 60, 12).await;
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 29 + 12, 60).await);
    assert_eq!(stored.len(), 41);
    assert_eq!(
        sim.attempts(),
        attempts,
        "no call to the target while storing"
    );

    // Forward: the backlog is replayed in order, then new requests flow.
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    let fourth = produce_requests(&app, 72, 12).await;
    sim.wait_for(30 + 41 + 12, Duration::from_secs(60))
        .await
        .expect("backlog and new requests delivered");
    let all: Vec<String> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .chain(&fourth)
        .filter(|id| **id != trigger.request_id)
        .cloned()
        .collect();
    assert_in_order_per_partition(&received_by_partition(&sim), &all);
    assert!(
        sim.duplicates().is_empty(),
        "nothing delivered twice: {:?}",
        sim.duplicates()
    );
    // The control point finished replaying.
    a.wait_for("replay caught up", Duration::from_secs(30), |v| {
        common::process::message(v) == "control point changed"
            && common::process::field(v, "command") == "replay-caught-up"
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_no_rule_matches_goes_to_the_failed_events_and_nothing_is_stored() {
    let sim = start_target().await;
    let app = http_app("nomatch", &sim, "");
    app.create_request_topics().await;
    let _a = app.start("a");
    sim.set_mode(Mode::BadRequest);
    let ids = produce_requests(&app, 0, 6).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 6, 60).await);
    assert_eq!(failed.len(), 6);
    for f in &failed {
        assert_eq!(f.reason, FailureReason::InvocationFailed);
        assert_eq!(
            f.chain.top_level().unwrap().type_name,
            "ServiceBusinessException"
        );
        assert!(ids.contains(&f.request_id));
    }
    assert!(
        read_async(app.topic("stored.Eis"), 0, 5).await.is_empty(),
        "nothing stored"
    );
    // Still forwarding: the next requests reach the target.
    sim.set_mode(Mode::Up);
    produce_requests(&app, 6, 4).await;
    sim.wait_for(4, Duration::from_secs(60))
        .await
        .expect("forwarding continues");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_failed_with_its_reason_and_the_partition_keeps_flowing() {
    let sim = start_target().await;
    let url = sim.url("/x");
    let app = App::new("badinput", |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 1 }}
limits: {{ max_request_bytes: 512 }}
services:
  svc:
    binding: {{ http: {{ url: "{url}" }}, interaction: async }}
    store_and_forward: {{ control_point: Svc }}
    interfaces:
      I:
        operations:
          typed: {{ topic: {name}.in, operation_header: op, input_schema: schema.avsc }}
          plain: {{ topic: {name}.in, operation_header: op }}
          ask: {{ topic: {name}.in, operation_header: op, interaction: sync }}
"#
        )
    });
    std::fs::write(
        app.dir.path().join("schema.avsc"),
        r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}"#,
    )
    .unwrap();
    let topic = app.topic("in");
    common::create_topics(&[(&topic, 1)]).await;
    let _a = app.start("a");
    let producer = common::producer();
    let good_typed = [0x06, b'e', b'-', b'1']; // Avro string "e-1"
    let big = vec![b'x'; 600];
    // The value, the headers, and for a bad one: the reason and the
    // operation the failed event names (the service and control point are
    // known for all of them: every operation of the topic is of `svc`).
    type Case<'a> = (
        &'a [u8],
        Vec<(&'a str, &'a [u8])>,
        Option<(FailureReason, Option<&'a str>)>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            b"\xff\xff\xff",
            vec![("op", b"typed")],
            Some((FailureReason::Malformed, Some("typed"))),
        ),
        (&good_typed, vec![("op", b"typed")], None),
        (b"hello", vec![], Some((FailureReason::MissingHeader, None))),
        (
            b"hello",
            vec![("op", b"nope")],
            Some((FailureReason::UnknownOperation, None)),
        ),
        (
            &big,
            vec![("op", b"plain")],
            Some((FailureReason::Oversized, Some("plain"))),
        ),
        (
            b"hello",
            vec![("op", b"ask")],
            Some((FailureReason::MissingHeader, Some("ask"))),
        ),
        (
            b"hello",
            vec![("op", b"plain"), ("op", b"typed")],
            Some((FailureReason::Malformed, None)),
        ),
        (b"hello", vec![("op", b"I.plain")], None),
    ];
    let mut expected_failed = Vec::new();
    let mut expected_delivered = Vec::new();
    for (value, headers, bad) in &cases {
        let (p, o) = common::produce(&producer, &topic, Some(0), None, Some(value), headers).await;
        let id = format!("{topic}/{p}/{o}");
        match bad {
            Some((reason, operation)) => {
                expected_failed.push((id, *reason, operation.map(str::to_string)))
            }
            None => expected_delivered.push(id),
        }
    }
    sim.wait_for(expected_delivered.len(), Duration::from_secs(60))
        .await
        .expect("good requests delivered");
    let received: Vec<String> = sim.received_ids().into_iter().flatten().collect();
    assert_eq!(
        received, expected_delivered,
        "good requests delivered in order despite the bad ones"
    );
    let events = decode_failed(&read_async(app.topic("failed"), expected_failed.len(), 60).await);
    let mut failed: Vec<(String, FailureReason, Option<String>)> = events
        .iter()
        .map(|f| {
            assert!(!f.detail.is_empty());
            assert_eq!(f.service.as_deref(), Some("svc"), "{f:?}");
            assert_eq!(f.control_point.as_deref(), Some("Svc"), "{f:?}");
            assert_eq!(
                f.interface.as_deref(),
                f.operation.as_ref().map(|_| "I"),
                "{f:?}"
            );
            (f.request_id.clone(), f.reason, f.operation.clone())
        })
        .collect();
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    expected_failed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(failed, expected_failed);
    let twice = events
        .iter()
        .find(|f| f.headers.iter().filter(|h| h.key == "op").count() == 2)
        .expect("the record with two operation headers is a failed event");
    assert_eq!(
        twice.detail,
        "the record has 2 `op` headers (`plain`, `typed`); exactly one must name its operation"
    );
    // The operator finds bad input by its operation.
    let listed = common::cli::cli_json(&app, &["failed", "list", "--operation", "typed"]).await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    let malformed_typed = expected_failed
        .iter()
        .find(|(_, _, op)| op.as_deref() == Some("typed"))
        .map(|(id, _, _)| id.as_str());
    assert_eq!(listed, Vec::from_iter(malformed_typed));
    assert_eq!(sim.attempts(), 2, "bad input never reaches the target");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_requests_are_answered_and_never_stored_or_triggering() {
    let sim = start_target().await;
    let app = http_app(
        "sync",
        &sim,
        "      Ask: { operations: { ask: { topic: ASKTOPIC, interaction: sync } } }",
    );
    let ask = app.topic("ask");
    let text = std::fs::read_to_string(&app.topology)
        .unwrap()
        .replace("ASKTOPIC", &ask);
    std::fs::write(&app.topology, text).unwrap();
    let replies = app.topic("replies");
    common::create_topics(&[
        (&app.topic("get"), 3),
        (&app.topic("put"), 3),
        (&ask, 1),
        (&replies, 1),
    ])
    .await;
    let _a = app.start("a");
    let producer = common::producer();
    let reply_to: &[(&str, &[u8])] = &[("sfwd-reply-to", replies.as_bytes())];

    // Up: answered with the target's body.
    common::produce(&producer, &ask, Some(0), None, Some(b"q1"), reply_to).await;
    // Down: an error answer, no trigger, no failed event.
    let answered = read_async(replies.clone(), 1, 60).await;
    assert_eq!(
        common::header(&answered[0], "sfwd-status").as_deref(),
        Some("ok")
    );
    sim.set_mode(Mode::Unavailable);
    common::produce(&producer, &ask, Some(0), None, Some(b"q2"), reply_to).await;
    let answered = read_async(replies.clone(), 2, 60).await;
    assert_eq!(
        common::header(&answered[1], "sfwd-status").as_deref(),
        Some("error")
    );
    // The first async failure is the designated trigger: the sync failure
    // before it did not activate the store.
    produce_requests(&app, 0, 1).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, FailureReason::StoreTrigger);
    // Storing: a sync request is answered with an error, not stored.
    common::produce(&producer, &ask, Some(0), None, Some(b"q3"), reply_to).await;
    let answered = read_async(replies.clone(), 3, 60).await;
    assert_eq!(
        common::header(&answered[2], "sfwd-status").as_deref(),
        Some("error")
    );
    let body = String::from_utf8_lossy(answered[2].payload().unwrap()).into_owned();
    assert!(body.contains("is storing"), "{body}");
    assert!(read_async(app.topic("stored.Eis"), 0, 5).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_request_that_fails_again_re_triggers_and_the_rest_stays_stored() {
    let sim = start_target().await;
    let app = http_app("retrigger", &sim, "");
    app.create_request_topics().await;
    let _a = app.start("a");
    sim.set_mode(Mode::Unavailable);
    let ids = produce_requests(&app, 0, 120).await;
    read_async(app.topic("stored.Eis"), 119, 60).await;
    // Forward, and take the target down again part-way through the replay.
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    sim.wait_for(20, Duration::from_secs(60)).await.unwrap();
    sim.set_mode(Mode::Unavailable);
    let failed = decode_failed(&read_async(app.topic("failed"), 2, 60).await);
    assert_eq!(
        failed.len(),
        2,
        "the first trigger and one re-trigger: {failed:?}"
    );
    assert!(failed
        .iter()
        .all(|f| f.reason == FailureReason::StoreTrigger));
    // Forward again: everything else arrives, once, in order.
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    let failed_ids: Vec<&str> = failed.iter().map(|f| f.request_id.as_str()).collect();
    let expected: Vec<String> = ids
        .iter()
        .filter(|id| !failed_ids.contains(&id.as_str()))
        .cloned()
        .collect();
    sim.wait_for(expected.len(), Duration::from_secs(90))
        .await
        .expect("all but the triggers delivered");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
    assert_in_order_per_partition(&received_by_partition(&sim), &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_storing_and_while_replaying_loses_nothing_and_redelivers_only_flagged_requests(
) {
    let sim = start_target().await;
    let app = http_app("kill9", &sim, "");
    app.create_request_topics().await;
    let total = 3000;
    let mut a = app.start_assigned("a");
    sim.set_mode(Mode::Unavailable);

    // Killed while storing: requests keep arriving meanwhile.
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producing = produce_in_background(&app, total, produced.clone());
    while produced.load(std::sync::atomic::Ordering::Relaxed) < total / 4 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    assert!(
        produced.load(std::sync::atomic::Ordering::Relaxed) < total,
        "killed while requests were still arriving"
    );
    let mut a = app.start("a");
    let ids = producing.await.unwrap();
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1, "one trigger, also across the restart");
    assert_eq!(
        distinct_stored(&app, total - 1).await,
        total - 1,
        "every other request stored"
    );

    // Killed while replaying.
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    sim.wait_for(total / 5, Duration::from_secs(120))
        .await
        .unwrap();
    a.kill9();
    let delivered_before_kill = sim.received().len();
    assert!(delivered_before_kill < total - 1, "killed while replaying");
    let _a = app.start("a");

    // Everything but the trigger arrives; the only repeats are flagged.
    let expected: Vec<String> = ids
        .iter()
        .filter(|id| **id != failed[0].request_id)
        .cloned()
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let distinct: std::collections::HashSet<String> =
            sim.received_ids().into_iter().flatten().collect();
        if distinct.len() >= expected.len() || std::time::Instant::now() > deadline {
            break;
        }
        let n = sim.received().len();
        let _ = sim.wait_for(n + 1, Duration::from_secs(5)).await;
    }
    let received = sim.received();
    let distinct: std::collections::HashSet<String> = received
        .iter()
        .filter_map(|r| r.request_id.clone())
        .collect();
    let want: std::collections::HashSet<String> = expected.iter().cloned().collect();
    assert_eq!(distinct, want, "nothing lost");
    let mut counts: HashMap<String, Vec<bool>> = HashMap::new();
    for r in &received {
        counts
            .entry(r.request_id.clone().unwrap())
            .or_default()
            .push(r.redelivery);
    }
    let repeats: Vec<(&String, &Vec<bool>)> = counts.iter().filter(|(_, v)| v.len() > 1).collect();
    for (id, flags) in &repeats {
        assert_eq!(flags.len(), 2, "{id} delivered {} times", flags.len());
        assert!(
            flags[1],
            "{id} delivered twice and the second delivery is not flagged as a possible redelivery; all repeats: {repeats:?}"
        );
    }
    // An HTTP target gets one request at a time.
    let bound = 6 * sfwd::pipeline::redelivery_bound(1);
    assert!(
        repeats.len() <= bound,
        "at most the redelivery bound per partition: {} > {bound}",
        repeats.len()
    );
    eprintln!("delivered {} requests, {} stored copies repeated by the crash were skipped, {} flagged redeliveries", distinct.len(), 0, repeats.len());
    // Order per partition, first deliveries.
    let mut firsts: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &received {
        let id = r.request_id.clone().unwrap();
        if seen.insert(id.clone()) {
            firsts.push(id);
        }
    }
    assert_ascending_per_partition(&firsts);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_while_storing_keeps_storing_without_calling_the_target_and_sigterm_is_clean() {
    let sim = start_target().await;
    let app = http_app("restart", &sim, "");
    app.create_request_topics().await;
    let mut a = app.start_assigned("a");
    operator(&app, "Eis", CommandKind::Store).await;
    a.wait_for("store applied", Duration::from_secs(30), |v| {
        common::process::message(v) == "control state applied"
            && common::process::field(v, "mode") == "STORE"
    });
    produce_requests(&app, 0, 12).await;
    assert_eq!(distinct_stored(&app, 12).await, 12);
    let status = a.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let stopped = a.wait_for("stopped", Duration::from_secs(5), |v| {
        common::process::message(v) == "stopped"
    });
    assert_eq!(common::process::field(&stopped, "instance"), "a");

    // The target is up now, but the control point is still STORE: the
    // restarted instance must store, not call.
    let _a = app.start_assigned("a");
    produce_requests(&app, 12, 12).await;
    assert_eq!(distinct_stored(&app, 24).await, 24);
    assert_eq!(
        sim.attempts(),
        0,
        "no call to the target while STORE, before or after the restart"
    );
    // Nothing was processed twice after the clean stop: offsets were committed.
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 24, 30).await);
    assert_eq!(
        stored.len(),
        24,
        "no stored copy written twice after a clean stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_resume_forwards_when_the_probe_succeeds() {
    let sim = start_target().await;
    let app = http_app("autoresume", &sim, "");
    let probe = sim.url("/health");
    let text = std::fs::read_to_string(&app.topology)
        .unwrap()
        .replace(
            "      control_point: Eis\n",
            &format!("      control_point: Eis\n      auto_resume: {{ every: 300ms, probe_url: \"{probe}\" }}\n"),
        );
    std::fs::write(&app.topology, text).unwrap();
    app.create_request_topics().await;
    let mut a = app.start("a");
    sim.set_mode(Mode::Unavailable);
    let ids = produce_requests(&app, 0, 12).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1);
    read_async(app.topic("stored.Eis"), 11, 60).await;
    // The target comes back: the next probe forwards, and the backlog follows.
    sim.set_mode(Mode::Up);
    let forward = a.wait_for("auto-resume", Duration::from_secs(30), |v| {
        common::process::message(v) == "control point changed"
            && common::process::field(v, "command") == "auto-resume"
    });
    assert_eq!(common::process::field(&forward, "mode"), "FORWARD");
    sim.wait_for(11 + 1, Duration::from_secs(60))
        .await
        .expect("backlog replayed after the probe");
    let delivered: Vec<String> = sim
        .received()
        .into_iter()
        .filter(|r| r.path != "/health")
        .filter_map(|r| r.request_id)
        .collect();
    let mut expected: Vec<String> = ids
        .into_iter()
        .filter(|id| *id != failed[0].request_id)
        .collect();
    expected.sort();
    let mut got = delivered.clone();
    got.sort();
    assert_eq!(got, expected);
    assert!(
        sim.received()
            .iter()
            .any(|r| r.path == "/health" && r.method == "GET"),
        "the probe asked the probe URL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_on_a_broker_without_transactions_stops_with_a_clear_error() {
    let sim = start_target().await;
    let app = http_app("eos", &sim, "");
    let text = std::fs::read_to_string(&app.topology)
        .unwrap()
        .replace("partitions: 3 }", "partitions: 3, exactly_once: true }");
    std::fs::write(&app.topology, text).unwrap();
    app.create_request_topics().await;
    let mut a = app.start("a");
    produce_requests(&app, 0, 2).await;
    let failed = a.wait_for("transactions refused", Duration::from_secs(60), |v| {
        common::process::message(v) == "sfwd run failed"
    });
    let error = common::process::field(&failed, "error");
    assert!(
        error.contains("kafka.exactly_once") && error.contains("set `exactly_once: false`"),
        "{error}"
    );
    assert!(!a.terminate().success(), "the instance exits non-zero");
}

/// A Kafka target refuses one request (too large for the target topic)
/// while the binding has many in flight: that request is the trigger and
/// goes to the failed events; every other one reaches the target exactly
/// once, in source order, either directly or stored and replayed (again
/// many in flight) after forward.
#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_target_failure_among_requests_in_flight_keeps_order_and_loses_nothing() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};

    let app = App::new("inflight", |name| {
        format!(
            r#"
application: {name}
kafka:
  bootstrap: "unused:9092"
  partitions: 2
  # One record per batch: the target topic refuses the big record alone.
  properties: {{ batch.num.messages: "1" }}
services:
  svc:
    binding: {{ kafka: {{ topic: {name}.target, in_flight: 64 }} }}
    store_and_forward:
      control_point: Svc
      rules:
        - exception: ServiceRuntimeException
          message: "*SizeTooLarge*"
    interfaces:
      I: {{ operations: {{ op: {{ topic: {name}.requests }} }} }}
"#
        )
    });
    let requests = app.topic("requests");
    let target = app.topic("target");
    common::create_topics(&[(&requests, 2)]).await;
    // One target partition, so that its order is the order of arrival; a
    // record batch above 4 KiB is refused.
    let admin: AdminClient<_> = common::client_config().create().unwrap();
    let topic =
        NewTopic::new(&target, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4096");
    for result in admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.expect("create the target topic");
    }
    let producer = common::producer();
    let (per_partition, big_at, more) = (150, 40, 50);
    let mut ids = Vec::new();
    for i in 0..per_partition {
        for p in 0..2 {
            let value = if p == 0 && i == big_at {
                vec![b'x'; 8000]
            } else {
                format!("v{p}-{i}").into_bytes()
            };
            common::produce(&producer, &requests, Some(p), None, Some(&value), &[]).await;
            ids.push(format!("{requests}/{p}/{i}"));
        }
    }
    let big = format!("{requests}/0/{big_at}");
    let mut a = app.start("a");

    // The big request is refused and activates the store.
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    assert_eq!(failed.len(), 1, "one failed event");
    assert_eq!(failed[0].request_id, big);
    assert_eq!(failed[0].reason, FailureReason::StoreTrigger);
    a.wait_for("STORE applied", Duration::from_secs(60), |v| {
        common::process::message(v) == "control state applied"
            && common::process::field(v, "mode") == "STORE"
    });
    // Requests arriving now are stored, behind any still in flight.
    for i in per_partition..per_partition + more {
        for p in 0..2 {
            let value = format!("v{p}-{i}").into_bytes();
            common::produce(&producer, &requests, Some(p), None, Some(&value), &[]).await;
            ids.push(format!("{requests}/{p}/{i}"));
        }
    }
    let stored = decode_stored(&read_async(app.topic("stored.Svc"), 2 * more, 60).await);
    assert!(
        stored.len() >= 2 * more,
        "requests arriving while the store is active are stored"
    );
    assert!(
        stored.iter().all(|s| s.request_id != big),
        "the trigger is never stored"
    );

    // Forward: everything else arrives, once, in source order.
    operator(&app, "Svc", CommandKind::Forward).await;
    let others = ids.len() - 1;
    let delivered = request_ids(&read_async(target.clone(), others, 120).await);
    let mut seen = std::collections::HashSet::new();
    for id in &delivered {
        assert!(seen.insert(id.clone()), "{id} delivered twice");
    }
    assert!(!seen.contains(&big), "the trigger never reaches the target");
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| **id != big && !seen.contains(*id))
        .collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");
    let by = assert_ascending_per_partition(&delivered);
    let total = per_partition + more;
    assert_eq!(by[&format!("{requests}/0")].len(), total - 1);
    assert_eq!(by[&format!("{requests}/1")].len(), total);
}

/// Produces `n` requests of `size` bytes to partition 0 of `topic` without
/// waiting for each; returns their ids once all are acknowledged.
async fn produce_sized(topic: &str, n: usize, size: usize) -> Vec<String> {
    use rdkafka::producer::FutureRecord;
    let producer = common::producer();
    let value = vec![b'x'; size];
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("k{i}");
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(key.as_bytes())
            .payload(value.as_slice());
        let queued = producer.send_result(record).map_err(|(e, _)| e);
        deliveries.push(queued.expect("queued"));
    }
    let mut ids = Vec::with_capacity(n);
    for d in deliveries {
        let delivery = d.await.expect("not cancelled").expect("produced");
        ids.push(format!(
            "{topic}/{}/{}",
            delivery.partition, delivery.offset
        ));
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_whose_worker_is_behind_is_paused_while_others_flow_and_loses_nothing() {
    let sim = start_target().await;
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(50),
    });
    let url = sim.url("/eis");
    // One consumer reads both topics: `slow` calls the slow target one
    // request at a time, `fast` goes to a Kafka topic.
    let app = App::new("pause", move |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 1 }}
# Two partitions share 6 MiB: each is paused at 3 MiB.
limits: {{ max_waiting_bytes: 6MiB }}
services:
  slow:
    binding:
      http: {{ url: "{url}", timeout: 5s }}
      interaction: async
    interfaces:
      S: {{ operations: {{ op: {{ topic: {name}.slow }} }} }}
  fast:
    binding: {{ kafka: {{ topic: {name}.target }} }}
    interfaces:
      F: {{ operations: {{ op: {{ topic: {name}.fast }} }} }}
"#
        )
    })
    .logging("info,sfwd::telemetry::events=debug");
    let (slow, fast, target) = (app.topic("slow"), app.topic("fast"), app.topic("target"));
    common::create_topics(&[(&slow, 1), (&fast, 1), (&target, 1)]).await;
    // 6,000 requests of 1 KB: more than the 3 MiB that pause the partition.
    let slow_ids = produce_sized(&slow, 6000, 1000).await;
    let (mut a, admin) = app.start_with_admin("a");
    let paused = tokio::task::block_in_place(|| {
        a.wait_for("the slow partition paused", Duration::from_secs(60), |v| {
            common::process::message(v) == "partition paused: its worker is behind"
        })
    });
    assert_eq!(common::process::field(&paused, "topic"), slow, "{paused}");
    let waiting = paused["waiting_bytes"].as_u64().expect("waiting_bytes");
    assert!(
        (3 << 20..=4 << 20).contains(&waiting),
        "paused with {waiting} bytes waiting: its 3 MiB share and the record that reached it"
    );
    let (_, metrics) = common::admin::get(&format!("{admin}/metrics")).await;
    let pauses = common::admin::metric(
        &metrics,
        "sfwd_partition_pauses_total",
        &[("topic", &slow), ("partition", "0")],
    );
    assert!(pauses >= 1.0, "pauses counted: {pauses}");

    // The other topic's requests flow meanwhile.
    let fast_ids = produce_sized(&fast, 500, 100).await;
    let delivered = tokio::task::spawn_blocking(move || {
        common::read_topic(&target, 500, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(
        request_ids(&delivered),
        fast_ids,
        "every fast request, in order"
    );
    let called = sim.attempts();
    assert!(
        called < 3000,
        "the slow partition is still behind: {called} called"
    );

    // Once the target answers at once, the slow partition resumes and every
    // request reaches it once, in order, across the pauses.
    sim.set_mode(Mode::Up);
    tokio::task::block_in_place(|| {
        a.wait_for("the slow partition resumed", Duration::from_secs(60), |v| {
            common::process::message(v) == "partition resumed"
        })
    });
    sim.wait_for(slow_ids.len(), Duration::from_secs(120))
        .await
        .expect("every slow request reaches the target");
    let received = received_by_partition(&sim);
    assert_in_order_per_partition(&received, &slow_ids);
    assert!(a.terminate().success(), "clean exit");
}
