//! `kafka.exactly_once`: each partition writes its outputs and commits its
//! source offsets in Kafka transactions. Run against the embedded cluster
//! (librdkafka's mock broker), which accepts transactions; the test broker
//! does not (see `exactly_once_on_a_broker_without_transactions_stops_with_a_clear_error`).

mod common;

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sfwd::control::{CommandKind, CommandPublisher};
use sfwd::demo::embedded::Cluster;
use sfwd::records::{AvroRecord, FailedEvent, FailureReason, StoredRequest};
use sfwd::target_sim::{Mode, TargetSim};

#[tokio::test(flavor = "multi_thread")]
async fn outputs_and_offsets_go_through_transactions_from_store_to_replay() {
    let cluster = Cluster::start().unwrap();
    let sim = TargetSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
application: eos
kafka:
  bootstrap: "{bootstrap}"
  partitions: 2
  exactly_once: true
  properties: {{ partition.assignment.strategy: range }}
services:
  eis:
    binding: {{ http: {{ url: "{url}", timeout: 2s }}, interaction: async }}
    store_and_forward: {{ control_point: Eis }}
    interfaces:
      Q: {{ operations: {{ get: {{ topic: eos.requests }} }} }}
"#,
        bootstrap = cluster.bootstrap(),
        url = sim.url("/eis")
    );
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (topology, _) = sfwd::topology::load(&path).unwrap();
    cluster.create_topics(&topology).unwrap();
    let (trigger, _) = sfwd::shutdown::channel();
    let running = tokio::spawn(sfwd::instance::run(
        sfwd::instance::Options {
            topology: topology.clone(),
            instance_id: "eos-1".into(),
            data_dir: dir.path().join("eos-1"),
            create_request_topics: false,
            admin_listen: None,
            admin_access: Default::default(),
            admin_tls: None,
            table_observer: None,
        },
        trigger.clone(),
    ));

    let config = sfwd::kafka::client_config_from(&cluster.bootstrap(), &Default::default());
    let producer: FutureProducer = config.create().unwrap();
    let send = |n: usize| {
        let producer = producer.clone();
        async move {
            for i in 0..n {
                let record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to("eos.requests")
                    .partition((i % 2) as i32)
                    .payload(b"{}");
                producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
        }
    };
    send(10).await;
    sim.wait_for(10, Duration::from_secs(60))
        .await
        .expect("delivered through transactions");

    sim.set_mode(Mode::Unavailable);
    send(10).await;
    let read = |topic: &'static str, n: usize| {
        let bootstrap = cluster.bootstrap();
        tokio::task::spawn_blocking(move || read_all(&bootstrap, topic, n))
    };
    let failed: Vec<FailedEvent> = read("eos.failed", 1)
        .await
        .unwrap()
        .iter()
        .map(|b| FailedEvent::decode(b).unwrap())
        .collect();
    let stored: Vec<StoredRequest> = read("eos.stored.Eis", 9)
        .await
        .unwrap()
        .iter()
        .map(|b| StoredRequest::decode(b).unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, FailureReason::StoreTrigger);
    assert_eq!(stored.len(), 9);

    sim.set_mode(Mode::Up);
    let publisher = CommandPublisher::discover(
        producer.clone(),
        &topology.commands_topic(),
        "operator:test",
    )
    .unwrap();
    publisher
        .publish("Eis", &publisher.command(CommandKind::Forward, 0))
        .await
        .unwrap();
    sim.wait_for(19, Duration::from_secs(60))
        .await
        .expect("replayed through transactions");
    assert!(sim.duplicates().is_empty());

    trigger.fire();
    running.await.unwrap().expect("clean stop");
}

/// Reads `n` record values of `topic` from the start (all partitions).
fn read_all(bootstrap: &str, topic: &str, n: usize) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let mut c = sfwd::kafka::client_config_from(bootstrap, &Default::default());
    c.set("group.id", "eos-test-reader")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}
