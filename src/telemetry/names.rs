//! Metric names. Stable: dashboards and alerts use them. Each says its
//! type and labels; every series also has `instance_id`.

/// Counter. Requests that reached an outcome. Labels: `service`,
/// `operation`, `outcome` (`delivered`, `stored`, `failed`, `replayed`,
/// `answered_sync`, `rejected`). A stored request counts again when it is
/// replayed or fails. Rejected (bad input) requests have the `service` and
/// `operation` the topic or the operation header tells, else empty ones.
pub const REQUESTS_TOTAL: &str = "sfwd_requests_total";

/// Counter. Requests written to a stored topic. Labels: `control_point`.
pub const STORED_TOTAL: &str = "sfwd_stored_total";

/// Counter. Stored requests delivered by a replay. Labels: `control_point`.
pub const REPLAYED_TOTAL: &str = "sfwd_replayed_total";

/// Counter. Waits of a replay for an overloaded target. Labels:
/// `control_point`.
pub const REPLAY_BACK_OFFS_TOTAL: &str = "sfwd_replay_back_offs_total";

/// Counter. Requests written to the failed-events topic. Labels: `service`
/// (empty for bad input), `reason` (`store-trigger`, `invocation-failed`,
/// `replay-failed`, `malformed`, `unknown-operation`, `oversized`,
/// `missing-header`, …: the failed event's reason).
pub const FAILED_TOTAL: &str = "sfwd_failed_total";

/// Counter. Commands decided by this instance's control writer. Labels:
/// `control_point`, `command` (`trigger`, `store`, `forward`,
/// `auto-resume`, `replay-caught-up`), `outcome` (`applied`, `no-op`,
/// `refused`). Refused triggers are the other instances' late triggers of
/// an activation that another one won.
pub const CONTROL_COMMANDS_TOTAL: &str = "sfwd_control_commands_total";

/// Gauge. A control point's state as this instance's control table holds
/// it: 0 forward, 1 store, 2 forward and replaying. Labels:
/// `control_point`.
pub const CONTROL_POINT_STATE: &str = "sfwd_control_point_state";

/// Gauge. A control point's epoch as this instance sees it. Labels:
/// `control_point`.
pub const CONTROL_POINT_EPOCH: &str = "sfwd_control_point_epoch";

/// Histogram, seconds. From a control point state change (the time its
/// command was issued) to this instance's control table applying it, from
/// which moment the instance's partitions act on it. Labels:
/// `control_point`, `state` (`forward`, `store`, `replaying`). Wall clocks
/// of different machines are compared, so it includes their skew.
pub const STATE_CHANGE_TO_ACT_SECONDS: &str = "sfwd_state_change_to_act_seconds";

/// Histogram, seconds. One target invocation, retries included. Labels:
/// `service`, `outcome` (`ok`, `error`).
pub const TARGET_CALL_SECONDS: &str = "sfwd_target_call_seconds";

/// Gauge. Records of a request topic partition that this instance's
/// consumer has not committed yet (librdkafka statistics, every 5 s).
/// Labels: `topic`, `partition`. A partition the instance no longer owns
/// disappears after a minute.
pub const KAFKA_CONSUMER_LAG: &str = "sfwd_kafka_consumer_lag";

/// Gauge. Records of a request topic partition that its worker took and
/// that no successful offset commit covers yet: what the partition's next
/// owner would process again after a crash, a rebalance or a broker outage.
/// The partition takes no new record while this reaches
/// `limits.max_uncommitted_records` (see [`UNCOMMITTED_HOLDS_TOTAL`]).
/// Labels: `topic`, `partition`.
pub const UNCOMMITTED_RECORDS: &str = "sfwd_uncommitted_records";

/// Gauge. The adaptive limit on calls in flight to an HTTP target with
/// `ordering: key`, per source partition: between 1 and the binding's
/// `in_flight`, growing while calls answer fast, shrinking when they slow
/// down or fail. Labels: `topic`, `partition`.
pub const IN_FLIGHT_LIMIT: &str = "sfwd_in_flight_limit";

/// Counter. Times a request topic partition stopped taking records at the
/// redelivery bound (`limits.max_uncommitted_records` or
/// `limits.max_uncommitted_age`) until an offset commit succeeded. Labels:
/// `topic`, `partition`.
pub const UNCOMMITTED_HOLDS_TOTAL: &str = "sfwd_uncommitted_holds_total";

/// Counter. Times the request consumer paused a partition because the
/// records waiting for its worker reached its share of
/// `limits.max_waiting_bytes` (its worker is behind: a slow target, a
/// replay, the redelivery bound); it resumes once less than a quarter of
/// the share waits. Labels: `topic`, `partition`.
pub const PARTITION_PAUSES_TOTAL: &str = "sfwd_partition_pauses_total";

/// Gauge. Brokers the request consumer is connected to (state `UP`).
pub const KAFKA_BROKERS_UP: &str = "sfwd_kafka_brokers_up";

/// Gauge. 1 once the instance has loaded the control state (the moment
/// `/readyz` answers 200), 0 before.
pub const INSTANCE_READY: &str = "sfwd_instance_ready";

/// Gauge. Background errors the local store (RocksDB) has met since it was
/// opened; anything above 0 needs a look at the disk.
pub const STORE_BACKGROUND_ERRORS: &str = "sfwd_store_background_errors";

/// Gauge, bytes. Estimated live data of the local store (RocksDB).
pub const STORE_LIVE_BYTES: &str = "sfwd_store_live_bytes";
