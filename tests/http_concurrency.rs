//! An HTTP target with `ordering: key` and calls in flight, against the
//! real broker: calls of different keys overlap, each key keeps its order,
//! and an outage with many calls out still gives one failed event and
//! stores the rest in order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::app::{decode_failed, decode_stored, operator, read_async, start_target, App};
use sfwd::control::CommandKind;
use sfwd::target_sim::{Mode, TargetSim};

/// Keys the requests cycle through: more than `in_flight`, so that a
/// partition can have `IN_FLIGHT` calls out, one per key.
const KEYS: usize = 100;
/// The binding's `in_flight`.
const IN_FLIGHT: usize = 64;

/// One HTTP service over `sim` with `ordering: key`, on a request topic of
/// one partition.
fn keyed_app(prefix: &str, sim: &TargetSim) -> App {
    keyed_app_with(prefix, sim, 1, "")
}

/// [`keyed_app`] with `partitions` per topic and `extra` settings of the
/// binding (e.g. `rate: 50/s`).
fn keyed_app_with(prefix: &str, sim: &TargetSim, partitions: i32, extra: &str) -> App {
    App::http_with(
        prefix,
        sim,
        partitions,
        &format!("in_flight: {IN_FLIGHT}, ordering: key, {extra}"),
        "Eis",
        "",
        |name| format!("      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}"),
    )
}

/// The W3C trace context of request `i`.
fn traceparent(i: usize) -> String {
    format!("00-{:032x}-{:016x}-01", i + 1, i + 1)
}

/// Produces requests `from..from + n` with key `k<i mod KEYS>` and a
/// `traceparent` to the one partition; returns their ids
/// (`topic/0/offset`) in order.
async fn produce_keyed(app: &App, from: usize, n: usize) -> Vec<String> {
    produce_spread(app, 1, from, n).await
}

/// Produces requests `from..from + n` with key `k<i mod KEYS>` and a
/// `traceparent`, each key on one of `partitions`, all sent before any is
/// awaited; returns their ids (`topic/partition/offset`) in the order
/// sent, and checks that each partition's landed in that order.
async fn produce_spread(app: &App, partitions: i32, from: usize, n: usize) -> Vec<String> {
    let producer = common::producer();
    let topic = app.topic("get");
    let sends = (from..from + n).map(|i| {
        let (producer, topic) = (&producer, &topic);
        async move {
            let k = i % KEYS;
            let key = format!("k{k}");
            let value = format!("{{\"n\":{i}}}");
            let trace = traceparent(i);
            common::produce(
                producer,
                topic,
                Some((k % partitions as usize) as i32),
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[("traceparent", trace.as_bytes())],
            )
            .await
        }
    });
    let sent = futures::future::join_all(sends).await;
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (p, o) in &sent {
        let before = last.insert(*p, *o);
        assert!(
            before.is_none_or(|b| b < *o),
            "the requests landed in the order sent"
        );
    }
    sent.iter()
        .map(|(p, o)| format!("{topic}/{p}/{o}"))
        .collect()
}

/// The offsets each key's requests reached `sim` in, by key.
fn arrivals_by_key(sim: &TargetSim) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for r in sim.received() {
        let id = r.request_id.expect("request id header");
        let offset = id.rsplit('/').next().unwrap().parse().unwrap();
        out.entry(r.key.expect("key header"))
            .or_default()
            .push(offset);
    }
    out
}

/// Every key's offsets, in the order produced.
fn produced_by_key(ids: &[String], from: usize) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let offset = id.rsplit('/').next().unwrap().parse().unwrap();
        out.entry(format!("k{}", (from + i) % KEYS))
            .or_default()
            .push(offset);
    }
    out
}

/// Requests that take the adaptive limit from 1 to `IN_FLIGHT` and keep
/// it there for a while: it grows by about one call per round of calls,
/// so reaching 64 takes 1 + 2 + … + 64 = 2,080 fast answers.
const RAMP: usize = 3000;

#[tokio::test(flavor = "multi_thread")]
async fn calls_of_different_keys_overlap_and_each_key_keeps_its_order() {
    let sim = common::app::start_target().await;
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(40),
    });
    let app = keyed_app("http-keyed", &sim);
    common::create_topics(&[(&app.topic("get"), 1)]).await;
    let ids = produce_keyed(&app, 0, RAMP).await;
    let _a = app.start_assigned("a");

    sim.wait_for(RAMP, Duration::from_secs(180))
        .await
        .expect("every request reaches the target");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
    assert_eq!(
        arrivals_by_key(&sim),
        produced_by_key(&ids, 0),
        "each key's requests in the order consumed"
    );
    let most = sim.most_concurrent();
    eprintln!("most calls at once: {most} (in_flight {IN_FLIGHT})");
    assert!(
        (IN_FLIGHT as u64 / 2..=IN_FLIGHT as u64).contains(&most),
        "calls overlapped up to in_flight and never beyond it: {most} at once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_with_calls_in_flight_gives_one_failed_event_and_stores_the_rest_in_order() {
    let sim = start_target().await;
    // The per-request spans on: the trigger's log line carries its span.
    let app = keyed_app("http-keyed-outage", &sim).logging("info,rdkafka=warn,sfwd::request=debug");
    common::create_topics(&[(&app.topic("get"), 1)]).await;
    let (mut a, base) = app.start_with_admin("a");

    // Fast answers raise the partition's limit towards in_flight.
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(20),
    });
    produce_keyed(&app, 0, RAMP).await;
    sim.wait_for(RAMP, Duration::from_secs(180))
        .await
        .expect("the requests before the outage delivered");
    let limit = limit_now(&base).await;
    assert!(
        limit >= IN_FLIGHT as f64 / 2.0,
        "the limit grew towards in_flight ({IN_FLIGHT}): {limit}"
    );

    // The service fails, each call after 200 ms: every call the limit
    // lets out fails while the others are still out.
    sim.reset();
    sim.set_mode(Mode::SlowUnavailable {
        delay: Duration::from_millis(200),
    });
    let ids = produce_keyed(&app, RAMP, 300).await;
    let failed = decode_failed(&read_async(app.topic("failed"), 1, 60).await);
    let stored = decode_stored(&read_async(app.topic("stored.Eis"), 299, 60).await);
    // Read again after the 299: nothing more comes.
    let failed_again = decode_failed(&read_async(app.topic("failed"), 2, 5).await);
    let out_at_once = sim.most_concurrent();
    eprintln!("calls out when the service failed: {out_at_once}, limit {limit}");
    assert!(
        out_at_once as f64 >= limit.min(IN_FLIGHT as f64) && out_at_once <= IN_FLIGHT as u64,
        "the limit's worth of calls were out: {out_at_once}, limit {limit}"
    );
    assert_eq!(failed.len(), 1, "one trigger, however many calls were out");
    assert_eq!(failed_again.len(), 1);
    let trigger = failed[0].request_id.clone();
    assert_eq!(trigger, ids[0], "the oldest call is the trigger");
    // Its log lines carry the span of its request, settled on its own.
    let line = a.wait_for("the trigger's log line", Duration::from_secs(10), |l| {
        common::process::message(l) == "trigger sent"
    });
    let span = &line["span"];
    assert_eq!(
        (
            span["request_id"].as_str(),
            span["service"].as_str(),
            span["offset"].as_i64(),
            span["outcome"].as_str()
        ),
        (
            Some(trigger.as_str()),
            Some("eis"),
            Some(RAMP as i64),
            Some("error")
        ),
        "{line}"
    );
    assert_eq!(line["spans"].as_array().map(Vec::len), Some(1), "{line}");
    let stored_ids: Vec<String> = stored.iter().map(|s| s.request_id.clone()).collect();
    assert_eq!(
        stored_ids,
        ids[1..],
        "the rest stored, in the order consumed"
    );

    sim.reset();
    sim.set_mode(Mode::Up);
    operator(&app, "Eis", CommandKind::Forward).await;
    sim.wait_for(299, Duration::from_secs(60))
        .await
        .expect("the stored requests replayed");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
    let mut want = produced_by_key(&ids[1..], RAMP + 1);
    want.retain(|_, offsets| !offsets.is_empty());
    assert_eq!(
        arrivals_by_key(&sim),
        want,
        "each key in order after the replay"
    );
    // The trace context went through the store and the replay.
    for r in sim.received() {
        let id = r.request_id.unwrap();
        let i = ids.iter().position(|x| *x == id).unwrap();
        assert_eq!(r.traceparent, Some(traceparent(RAMP + i)), "{id}");
    }
}

/// The `sfwd_in_flight_limit` of the one partition, from `/metrics`.
async fn limit_now(base: &str) -> f64 {
    let (_, text) = common::admin::get(&format!("{base}/metrics")).await;
    common::admin::metric(&text, "sfwd_in_flight_limit", &[("partition", "0")])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adaptive_limit_grows_while_the_target_is_fast_and_shrinks_when_it_slows() {
    let sim = start_target().await;
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(20),
    });
    let app = keyed_app("http-keyed-adaptive", &sim);
    common::create_topics(&[(&app.topic("get"), 1)]).await;
    let (_a, base) = app.start_with_admin("a");

    produce_keyed(&app, 0, 300).await;
    sim.wait_for(300, Duration::from_secs(120))
        .await
        .expect("the fast phase delivered");
    let fast = limit_now(&base).await;
    assert!(
        fast >= 8.0 && fast <= IN_FLIGHT as f64,
        "fast answers raise the limit towards in_flight ({IN_FLIGHT}): {fast}"
    );

    // The target now takes 20 times longer: the limit comes down.
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(400),
    });
    produce_keyed(&app, 300, 36).await;
    sim.wait_for(336, Duration::from_secs(120))
        .await
        .expect("the slow phase delivered");
    let slow = limit_now(&base).await;
    eprintln!("sfwd_in_flight_limit: {fast} while fast, {slow} after slowing");
    assert!(
        slow <= fast / 2.0,
        "a slower target lowers the limit: {fast} → {slow}"
    );
    assert_eq!(
        arrivals_by_key(&sim),
        produced_by_key(&(0..336).map(|i| format!("x/0/{i}")).collect::<Vec<_>>(), 0),
        "each key still in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_cap_holds_the_calls_of_every_partition_together_to_it() {
    let sim = start_target().await;
    let app = keyed_app_with("http-keyed-rate", &sim, 3, "rate: 50/s");
    common::create_topics(&[(&app.topic("get"), 3)]).await;
    produce_spread(&app, 3, 0, 300).await;
    let _a = app.start_assigned("a");
    sim.wait_for(300, Duration::from_secs(120))
        .await
        .expect("every request reaches the target");
    let times: Vec<_> = sim.received().iter().map(|r| r.at).collect();
    let busiest = common::app::busiest_window(&times, Duration::from_secs(2));
    eprintln!("rate 50/s over 3 partitions: busiest 2 s window {busiest} calls");
    assert!(
        busiest <= 110,
        "{busiest} calls within 2 s: above 50/s by more than 10%"
    );
    assert!(sim.duplicates().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_out_across_partitions_keep_their_connections_between_bursts() {
    let sim = start_target().await;
    sim.set_mode(Mode::Slow {
        delay: Duration::from_millis(20),
    });
    // Together the partitions have far more calls out than one
    // partition's `in_flight`: the target's connection pool is shared.
    let partitions = 12;
    let burst = 4800;
    let app = keyed_app_with("http-keyed-pool", &sim, partitions, "");
    common::create_topics(&[(&app.topic("get"), partitions)]).await;
    produce_spread(&app, partitions, 0, burst).await;
    let _a = app.start_assigned("a");
    sim.wait_for(burst, Duration::from_secs(120))
        .await
        .expect("the first burst reaches the target");
    let first = sim.most_concurrent();
    assert!(
        first > IN_FLIGHT as u64,
        "the partitions together had more calls out than one partition's in_flight: {first}"
    );

    // Every call has ended: the connections are idle. A second burst
    // finds them open (the pool keeps idle connections for 4 s).
    sim.reset();
    produce_spread(&app, partitions, burst, burst).await;
    sim.wait_for(burst, Duration::from_secs(120))
        .await
        .expect("the second burst reaches the target");
    let (second, opened) = (sim.most_concurrent(), sim.connections());
    eprintln!(
        "calls at once: {first}, then {second}; connections opened for the second burst: {opened}"
    );
    assert!(
        opened <= second.saturating_sub(first) + 24,
        "{opened} connections opened for a burst of {second} calls at once after one of {first}: \
         idle connections were closed between the bursts"
    );
}
