//! A test's own sfwd application: a topology file, its topics, instances,
//! and the requests it sends.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::Message;
use sfwd::control::{CommandKind, CommandPublisher};
use sfwd::records::{AvroRecord, FailedEvent, StoredRequest};
use sfwd::target_sim::TargetSim;

use super::process::Sfwd;

/// A test's own application: topology file, topic names, data directory.
pub struct App {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub topology: PathBuf,
    /// The broker its instances use, when not the shared test broker
    /// (`SFWD_TEST_BOOTSTRAP`).
    pub bootstrap: Option<String>,
    /// Its instances' `RUST_LOG`, when not the tests' default.
    pub log: Option<String>,
}

impl App {
    pub fn new(prefix: &str, yaml: impl Fn(&str) -> String) -> App {
        let name = super::unique(prefix);
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.yaml");
        std::fs::write(&topology, yaml(&name)).unwrap();
        App {
            name,
            dir,
            topology,
            bootstrap: None,
            log: None,
        }
    }

    /// The same application, with its instances on the broker at
    /// `bootstrap` (a test's own broker).
    pub fn on(mut self, bootstrap: &str) -> App {
        self.bootstrap = Some(bootstrap.to_string());
        self
    }

    /// The same application, with `filter` as its instances' `RUST_LOG`
    /// (e.g. to turn on the per-request spans, `sfwd::request=debug`).
    pub fn logging(mut self, filter: &str) -> App {
        self.log = Some(filter.to_string());
        self
    }

    /// The bootstrap address of the broker its instances use.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone().unwrap_or_else(super::bootstrap)
    }

    /// One HTTP service `eis` over `sim` with control point `Eis` and
    /// `partitions` per topic; `interfaces(name)` gives its interfaces, as
    /// YAML lines indented by six spaces.
    pub fn http(
        prefix: &str,
        sim: &TargetSim,
        partitions: i32,
        interfaces: impl Fn(&str) -> String,
    ) -> App {
        App::http_with(prefix, sim, partitions, "", "Eis", "", interfaces)
    }

    /// [`App::http`] with `binding`, settings added to its `http` block
    /// (e.g. `in_flight: 64, ordering: key`), control point `cp` and
    /// `store_and_forward`, a line of YAML added to its store-and-forward
    /// block (e.g. `replay: { rate: 100/s }`); empty for none.
    pub fn http_with(
        prefix: &str,
        sim: &TargetSim,
        partitions: i32,
        binding: &str,
        cp: &str,
        store_and_forward: &str,
        interfaces: impl Fn(&str) -> String,
    ) -> App {
        let url = sim.url("/eis");
        let binding = if binding.is_empty() {
            String::new()
        } else {
            format!(", {binding}")
        };
        let (cp, extra) = (cp.to_string(), store_and_forward.to_string());
        App::new(prefix, move |name| {
            let interfaces = interfaces(name);
            format!(
                r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: {partitions} }}
services:
  eis:
    binding:
      http: {{ url: "{url}", timeout: 2s{binding} }}
      interaction: async
    store_and_forward:
      control_point: {cp}
      {extra}
    interfaces:
{interfaces}
"#
            )
        })
    }

    pub fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    /// Creates the request topics of [`http_app`], `get` and `put`, with 3
    /// partitions each.
    pub async fn create_request_topics(&self) {
        super::create_topics(&[(&self.topic("get"), 3), (&self.topic("put"), 3)]).await;
    }

    /// Starts an instance and waits until it is ready.
    pub fn start(&self, instance: &str) -> Sfwd {
        let mut s = Sfwd::start_on(
            &self.bootstrap(),
            &self.topology,
            instance,
            self.dir.path(),
            self.log.as_deref(),
        );
        s.wait_ready();
        s
    }

    /// Starts an instance and waits until it has partitions of the request
    /// topics.
    pub fn start_assigned(&self, instance: &str) -> Sfwd {
        let mut s = self.start(instance);
        s.wait_assigned();
        s
    }

    /// Starts an instance, waits until it has partitions, and returns it
    /// with its admin base URL.
    pub fn start_with_admin(&self, instance: &str) -> (Sfwd, String) {
        let mut s = self.start_assigned(instance);
        let addr = s.admin_addr();
        (s, format!("http://{addr}"))
    }
}

/// A simulated target on a free loopback port.
pub async fn start_target() -> TargetSim {
    TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub fn request_ids(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| super::header(m, "sfwd-request-id").expect("request id header"))
        .collect()
}

/// Splits `topic/partition/offset` ids by partition, keeping their order.
pub fn by_partition(ids: &[String]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for id in ids {
        let (tp, offset) = id.rsplit_once('/').expect("positional id");
        out.entry(tp.to_string())
            .or_default()
            .push(offset.parse().unwrap());
    }
    out
}

/// A service over HTTP to a simulated target, with two interfaces on two
/// topics of 3 partitions, and store and forward on the default rule.
pub fn http_app(prefix: &str, sim: &TargetSim, extra_ops: &str) -> App {
    let extra = extra_ops.to_string();
    App::http(prefix, sim, 3, move |name| {
        format!(
            r#"      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
      Update:
        operations:
          put: {{ topic: {name}.put }}
{extra}"#
        )
    })
}

/// A service over HTTP to a simulated target with one interface on topic
/// `get` of 3 partitions, which it creates.
pub async fn query_app(prefix: &str, sim: &TargetSim) -> App {
    let app = App::http(prefix, sim, 3, |name| {
        format!("      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}")
    });
    super::create_topics(&[(&app.topic("get"), 3)]).await;
    app
}

pub async fn read_async(
    topic: String,
    min: usize,
    secs: u64,
) -> Vec<rdkafka::message::OwnedMessage> {
    tokio::task::spawn_blocking(move || super::read_topic(&topic, min, Duration::from_secs(secs)))
        .await
        .unwrap()
}

pub fn decode_failed(messages: &[rdkafka::message::OwnedMessage]) -> Vec<FailedEvent> {
    messages
        .iter()
        .map(|m| FailedEvent::decode(m.payload().unwrap()).expect("failed event"))
        .collect()
}

pub fn decode_stored(messages: &[rdkafka::message::OwnedMessage]) -> Vec<StoredRequest> {
    messages
        .iter()
        .map(|m| StoredRequest::decode(m.payload().unwrap()).expect("stored request"))
        .collect()
}

/// Produces `n` requests spread over both topics and their partitions;
/// returns their positional ids in production order.
pub async fn produce_requests(app: &App, from: usize, n: usize) -> Vec<String> {
    let producer = super::producer();
    let mut ids = Vec::new();
    for i in from..from + n {
        let topic = if i % 2 == 0 {
            app.topic("get")
        } else {
            app.topic("put")
        };
        let key = format!("emp-{i}");
        let value = format!("{{\"n\":{i}}}");
        let (p, o) = super::produce(
            &producer,
            &topic,
            Some((i / 2 % 3) as i32),
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[("trace", b"t-1"), ("trace", b"t-2")],
        )
        .await;
        ids.push(format!("{topic}/{p}/{o}"));
    }
    ids
}

/// Produces requests `from..from + n` to topic `get` of a [`query_app`],
/// request `i` to partition `i mod 3`, without key or headers.
pub async fn produce_queries(app: &App, from: usize, n: usize) {
    let producer = super::producer();
    let topic = app.topic("get");
    for i in from..from + n {
        let value = format!("{{\"n\":{i}}}");
        super::produce(
            &producer,
            &topic,
            Some((i % 3) as i32),
            None,
            Some(value.as_bytes()),
            &[],
        )
        .await;
    }
}

pub async fn operator(app: &App, cp: &str, kind: CommandKind) {
    let producer: rdkafka::producer::FutureProducer = super::client_config().create().unwrap();
    let publisher =
        CommandPublisher::discover(producer, &app.topic("control-commands"), "operator:test")
            .expect("the commands topic exists");
    let command = publisher.command(kind, 0);
    publisher
        .publish(cp, &command)
        .await
        .expect("publish operator command");
}

/// For every source partition, the offsets the target received, in order.
pub fn received_by_partition(sim: &TargetSim) -> HashMap<String, Vec<i64>> {
    let ids: Vec<String> = sim
        .received_ids()
        .into_iter()
        .map(|id| id.expect("request id header"))
        .collect();
    by_partition(&ids)
}

/// Asserts that, for every source partition of `expected_ids`, `received`
/// (as from [`received_by_partition`]) holds exactly their offsets, in
/// increasing order.
pub fn assert_in_order_per_partition(
    received: &HashMap<String, Vec<i64>>,
    expected_ids: &[String],
) {
    for (partition, offsets) in by_partition(expected_ids) {
        let mut want = offsets;
        want.sort();
        assert_eq!(
            received.get(&partition),
            Some(&want),
            "order and completeness for {partition}"
        );
    }
}

/// Asserts that the offsets of `ids` increase within every partition;
/// returns them by partition.
pub fn assert_ascending_per_partition(ids: &[String]) -> HashMap<String, Vec<i64>> {
    let partitions = by_partition(ids);
    for (partition, offsets) in &partitions {
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(offsets, &sorted, "order for {partition}");
    }
    partitions
}

/// Produces `n` requests in the background, spread over both topics and 3
/// partitions each; returns their ids when done and reports progress.
pub fn produce_in_background(
    app: &App,
    n: usize,
    produced: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (get, put) = (app.topic("get"), app.topic("put"));
    tokio::spawn(async move {
        let producer = super::producer();
        let mut ids = Vec::new();
        for i in 0..n {
            let topic = if i % 2 == 0 { &get } else { &put };
            let (p, o) = super::produce(
                &producer,
                topic,
                Some((i / 2 % 3) as i32),
                Some(format!("k{i}").as_bytes()),
                Some(b"v"),
                &[],
            )
            .await;
            ids.push(format!("{topic}/{p}/{o}"));
            produced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ids
    })
}

pub async fn distinct_stored(app: &App, at_least: usize) -> usize {
    let topic = app.topic("stored.Eis");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stored = decode_stored(&read_async(topic.clone(), 0, 10).await);
        let distinct: std::collections::HashSet<String> =
            stored.into_iter().map(|s| s.request_id).collect();
        if distinct.len() >= at_least || std::time::Instant::now() > deadline {
            return distinct.len();
        }
    }
}

/// The most requests that arrived within any window of `width`.
pub fn busiest_window(times: &[std::time::SystemTime], width: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]).unwrap() > width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
