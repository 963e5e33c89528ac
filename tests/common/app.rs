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
        }
    }

    pub fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    pub fn start(&self, instance: &str) -> Sfwd {
        let mut s = Sfwd::start(&self.topology, instance, self.dir.path());
        s.wait_ready();
        s
    }
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
    let url = sim.url("/eis");
    let extra = extra_ops.to_string();
    App::new(prefix, move |name| {
        format!(
            r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 3 }}
services:
  eis:
    binding:
      http: {{ url: "{url}", timeout: 2s }}
      interaction: async
    store_and_forward:
      control_point: Eis
    interfaces:
      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
      Update:
        operations:
          put: {{ topic: {name}.put }}
{extra}
"#
        )
    })
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
