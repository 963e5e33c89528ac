//! The redelivery bound with commits reported, failed, missed or only seen
//! in the statistics, under paused time.

use std::sync::atomic::AtomicUsize;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::*;

const TOPIC: &str = "requests";

struct Setup {
    commits: Arc<Commits>,
    asks: Arc<AtomicUsize>,
    uncommitted: Uncommitted,
}

fn setup(bound: Option<Bound>) -> Setup {
    let commits = Arc::new(Commits::default());
    let asks = Arc::new(AtomicUsize::new(0));
    let counter = asks.clone();
    let uncommitted = Uncommitted::new(
        "test",
        &(TOPIC.to_string(), 0),
        bound,
        commits.clone(),
        Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    );
    Setup {
        commits,
        asks,
        uncommitted,
    }
}

fn bound(records: usize, age: Duration) -> Option<Bound> {
    Some(Bound {
        records,
        in_flight: 0,
        age,
    })
}

/// librdkafka reports a commit of `next` for `(topic, partition)`.
fn report(commits: &Commits, topic: &str, partition: i32, next: i64, ok: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))
        .unwrap();
    let result = if ok {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::WaitingForCoordinator,
        ))
    };
    commits.reported(&result, &tpl);
}

#[tokio::test]
async fn holds_at_the_record_bound_until_a_commit_covers_the_work() {
    let mut s = setup(bound(3, Duration::from_secs(3600)));
    for offset in 10..12 {
        assert!(!s.uncommitted.holds());
        s.uncommitted.take(offset);
    }
    assert!(!s.uncommitted.holds(), "two taken, bound three");
    s.uncommitted.take(12);
    assert!(s.uncommitted.holds(), "three taken, none committed");
    report(&s.commits, TOPIC, 0, 13, false);
    assert!(s.uncommitted.holds(), "a failed commit moves nothing");
    report(&s.commits, TOPIC, 1, 13, true);
    assert!(s.uncommitted.holds(), "another partition's commit");
    report(&s.commits, TOPIC, 0, 11, true);
    assert!(!s.uncommitted.holds(), "offset 10 committed: two left");
    report(&s.commits, TOPIC, 0, 10, true);
    s.uncommitted.take(13);
    assert!(
        s.uncommitted.holds(),
        "an older commit reported late moves nothing back or forward"
    );
    report(&s.commits, TOPIC, 0, 14, true);
    assert!(!s.uncommitted.holds());
    assert!(!s.uncommitted.has_work(), "everything taken is committed");
}

#[tokio::test(start_paused = true)]
async fn holds_when_the_oldest_record_waits_too_long_for_a_commit() {
    let mut s = setup(bound(1000, Duration::from_secs(5)));
    s.uncommitted.take(0);
    tokio::time::advance(Duration::from_secs(2)).await;
    s.uncommitted.take(1);
    tokio::time::advance(Duration::from_millis(2900)).await;
    assert!(!s.uncommitted.holds());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(s.uncommitted.holds(), "the oldest was taken 5 s ago");
    report(&s.commits, TOPIC, 0, 1, true);
    assert!(!s.uncommitted.holds(), "the oldest left was taken 3 s ago");
}

#[tokio::test(start_paused = true)]
async fn asks_for_a_commit_at_a_quarter_and_again_only_once_answered_or_after_a_second() {
    let mut s = setup(bound(8, Duration::from_secs(3600)));
    s.uncommitted.take(0);
    s.uncommitted.holds();
    assert_eq!(
        s.asks.load(Ordering::Relaxed),
        0,
        "below a quarter of the bound"
    );
    s.uncommitted.take(1);
    s.uncommitted.holds();
    assert_eq!(s.asks.load(Ordering::Relaxed), 1, "a quarter of the bound");
    tokio::time::advance(Duration::from_millis(500)).await;
    s.uncommitted.holds();
    assert_eq!(s.asks.load(Ordering::Relaxed), 1, "the ask is unanswered");
    tokio::time::advance(Duration::from_millis(500)).await;
    s.uncommitted.holds();
    assert_eq!(s.asks.load(Ordering::Relaxed), 2, "a second later");
    report(&s.commits, TOPIC, 0, 0, false);
    s.uncommitted.holds();
    assert_eq!(
        s.asks.load(Ordering::Relaxed),
        2,
        "answered, but just asked"
    );
    tokio::time::advance(Duration::from_millis(19)).await;
    s.uncommitted.holds();
    assert_eq!(s.asks.load(Ordering::Relaxed), 2, "answered, 19 ms later");
    tokio::time::advance(Duration::from_millis(1)).await;
    s.uncommitted.holds();
    assert_eq!(s.asks.load(Ordering::Relaxed), 3, "answered, 20 ms later");
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_come_on_top_of_the_bound_and_asks_are_spaced_per_instance() {
    let bound = Some(Bound {
        records: 8,
        in_flight: 10,
        age: Duration::from_secs(3600),
    });
    let mut s = setup(bound);
    let counter = s.asks.clone();
    let mut other = Uncommitted::new(
        "test",
        &(TOPIC.to_string(), 1),
        bound,
        s.commits.clone(),
        Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }),
    );
    for offset in 0..11 {
        s.uncommitted.take(offset);
        other.take(offset);
    }
    assert!(!s.uncommitted.holds() && !other.holds());
    assert_eq!(s.asks.load(Ordering::Relaxed), 0, "11 < 10 + 8 / 4");
    s.uncommitted.take(11);
    other.take(11);
    assert!(!s.uncommitted.holds() && !other.holds());
    assert_eq!(
        s.asks.load(Ordering::Relaxed),
        1,
        "both a quarter of the way: one ask commits both"
    );
    for offset in 12..17 {
        s.uncommitted.take(offset);
    }
    assert!(!s.uncommitted.holds(), "17 < 10 in flight + 8");
    s.uncommitted.take(17);
    assert!(s.uncommitted.holds(), "18 = 10 in flight + 8");
}

#[tokio::test]
async fn a_commit_whose_report_never_came_is_learnt_from_the_statistics() {
    // Held at the bound; the commit that covers the work goes out but
    // is not reported, and the periodic commits that follow leave the
    // partition out (nothing new stored): no report will ever come.
    let mut s = setup(bound(3, Duration::from_secs(3600)));
    for offset in 10..13 {
        s.uncommitted.take(offset);
    }
    assert!(s.uncommitted.holds(), "three taken, none committed");
    report(&s.commits, TOPIC, 1, 40, true);
    assert!(s.uncommitted.holds(), "another partition's commit");
    // librdkafka's statistics: no commit known (-1001), its internal
    // partition, another partition, another topic.
    s.commits.observed_offsets([
        (TOPIC, 0, -1001),
        (TOPIC, -1, 13),
        (TOPIC, 1, 13),
        ("other", 0, 13),
    ]);
    assert!(s.uncommitted.holds(), "nothing known of this partition");
    s.commits.observed_offsets([(TOPIC, 0, 12)]);
    assert!(!s.uncommitted.holds(), "offsets 10 and 11 committed");
    s.commits.observed_offsets([(TOPIC, 0, 13)]);
    assert!(!s.uncommitted.holds());
    assert!(!s.uncommitted.has_work(), "everything taken is committed");
    s.uncommitted.take(13);
    s.commits.observed_offsets([(TOPIC, 0, 11)]);
    report(&s.commits, TOPIC, 0, 12, true);
    s.uncommitted.holds();
    assert!(
        s.uncommitted.has_work(),
        "older commits, observed or reported, move nothing back"
    );
    assert_eq!(*s.uncommitted.committed.borrow(), Some(13));
}

#[tokio::test(start_paused = true)]
async fn a_held_partition_wakes_when_the_statistics_show_its_commit() {
    let mut s = setup(bound(1, Duration::from_secs(3600)));
    s.uncommitted.take(0);
    assert!(s.uncommitted.holds());
    let commits = s.commits.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        commits.observed_offsets([(TOPIC, 0, 1)]);
    });
    let started = Instant::now();
    s.uncommitted.changed(true).await;
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert!(!s.uncommitted.holds());
}

#[tokio::test(start_paused = true)]
async fn an_idle_partition_with_work_wakes_to_ask_for_a_commit_halfway_to_the_age_bound() {
    let mut s = setup(bound(1000, Duration::from_secs(10)));
    s.uncommitted.take(0);
    assert!(!s.uncommitted.holds());
    assert_eq!(s.asks.load(Ordering::Relaxed), 0);
    // Nothing more comes: the worker waits on `changed` alone.
    let started = Instant::now();
    s.uncommitted.changed(false).await;
    assert_eq!(started.elapsed(), Duration::from_secs(5), "halfway");
    assert!(!s.uncommitted.holds());
    assert_eq!(s.asks.load(Ordering::Relaxed), 1, "it asks");
    let started = Instant::now();
    s.uncommitted.changed(false).await;
    assert_eq!(started.elapsed(), HOLD_TICK, "and again, until committed");
    report(&s.commits, TOPIC, 0, 1, true);
    assert!(!s.uncommitted.holds());
    assert!(!s.uncommitted.has_work());
    let waiting = tokio::time::timeout(Duration::from_secs(3600), s.uncommitted.changed(false));
    assert!(
        waiting.await.is_err(),
        "without work, only a commit wakes it"
    );
}

#[tokio::test]
async fn a_record_may_skip_the_full_look_only_below_the_count_that_asks_for_a_commit() {
    // Bound 8: a commit is asked for at 2 records taken, held at 8.
    let mut s = setup(bound(8, Duration::from_secs(3600)));
    assert!(s.uncommitted.well_under());
    s.uncommitted.take(0);
    assert!(s.uncommitted.well_under(), "one taken, below a quarter");
    s.uncommitted.take(1);
    assert!(
        !s.uncommitted.well_under(),
        "at a quarter the full look asks for a commit"
    );
    assert!(!s.uncommitted.holds());
    assert_eq!(s.asks.load(Ordering::Relaxed), 1);
    for offset in 2..8 {
        s.uncommitted.take(offset);
        assert!(!s.uncommitted.well_under());
    }
    assert!(s.uncommitted.holds(), "the bound is never passed unlooked");
    let unbounded = setup(None);
    assert!(unbounded.uncommitted.well_under());
}

#[tokio::test]
async fn without_a_bound_nothing_holds() {
    let mut s = setup(None);
    for offset in 0..10_000 {
        s.uncommitted.take(offset);
    }
    assert!(!s.uncommitted.holds());
    assert!(!s.uncommitted.has_work());
    assert_eq!(s.asks.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_held_partition_wakes_on_a_commit_or_after_the_tick() {
    let mut s = setup(bound(1, Duration::from_secs(3600)));
    s.uncommitted.take(0);
    assert!(s.uncommitted.holds());
    let started = Instant::now();
    s.uncommitted.changed(true).await;
    assert_eq!(started.elapsed(), HOLD_TICK, "no commit: the tick");
    let commits = s.commits.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        report(&commits, TOPIC, 0, 1, true);
    });
    let started = Instant::now();
    s.uncommitted.changed(true).await;
    assert_eq!(started.elapsed(), Duration::from_millis(50), "the commit");
    assert!(!s.uncommitted.holds());
}
