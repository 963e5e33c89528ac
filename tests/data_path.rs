//! The data path against a real broker: `sfwd run` processes consume
//! requests, invoke targets, store, fail and replay (SPEC §5–§7).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::process::Sfwd;
use rdkafka::Message;

/// A test's own application: topology file, topic names, data directory.
struct App {
    name: String,
    dir: tempfile::TempDir,
    topology: PathBuf,
}

impl App {
    fn new(prefix: &str, yaml: impl Fn(&str) -> String) -> App {
        let name = common::unique(prefix);
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.yaml");
        std::fs::write(&topology, yaml(&name)).unwrap();
        App {
            name,
            dir,
            topology,
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    fn start(&self, instance: &str) -> Sfwd {
        let mut s = Sfwd::start(&self.topology, instance, self.dir.path());
        s.wait_ready();
        s
    }
}

fn request_ids(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| common::header(m, "sfwd-request-id").expect("request id header"))
        .collect()
}

/// Splits `topic/partition/offset` ids by partition, keeping their order.
fn by_partition(ids: &[String]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for id in ids {
        let (tp, offset) = id.rsplit_once('/').expect("positional id");
        out.entry(tp.to_string())
            .or_default()
            .push(offset.parse().unwrap());
    }
    out
}

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
    let ids = request_ids(&delivered);
    for (partition, offsets) in by_partition(&ids) {
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(offsets, sorted, "order kept for {partition}");
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
