//! The commit a partition asks for, against librdkafka's mock cluster.

use std::time::Instant;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset};

use super::*;

/// A commit report: the result, and each partition's offset.
type Report = (KafkaResult<()>, Vec<(i32, Offset)>);

/// A consumer context that keeps the commit reports.
#[derive(Default)]
struct Reports(Mutex<Vec<Report>>);

impl ClientContext for Reports {}

impl ConsumerContext for Reports {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let offsets = offsets
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        self.0.lock().unwrap().push((result, offsets));
    }
}

/// The commit a partition asks for is reported with what it covered,
/// as the periodic commits are (here a minute apart, so none comes).
#[tokio::test(flavor = "multi_thread")]
async fn an_asked_commit_is_reported_with_the_offsets_it_committed() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("requests", 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for i in 0..3 {
        let value = i.to_string();
        producer
            .send(BaseRecord::<(), _>::to("requests").payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut config = crate::kafka::group_consumer_config(
        ClientConfig::new().set("bootstrap.servers", &bootstrap),
        "asks",
        "test",
    );
    config.set("auto.commit.interval.ms", "60000");
    let consumer: StreamConsumer<Reports> = config.create_with_context(Reports::default()).unwrap();
    consumer.subscribe(&["requests"]).unwrap();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a record within 30 s")
            .unwrap();
    }
    // The three records done: the next to read is 3.
    consumer.store_offset("requests", 0, 2).unwrap();
    commit_reported(consumer.client()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reports = consumer.context().0.lock().unwrap().len();
        if reports > 0 || Instant::now() > deadline {
            break;
        }
        // Serves the consumer's queue, where the report arrives.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let reports = std::mem::take(&mut *consumer.context().0.lock().unwrap());
    assert_eq!(reports.len(), 1, "one report: {reports:?}");
    let (result, offsets) = &reports[0];
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(offsets, &[(0, Offset::Offset(3))]);
}
