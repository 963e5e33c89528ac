//! The data path: the consumer group over every request topic, one task per
//! source partition, processed in order, partitions concurrently.
//!
//! The dispatcher (`dispatch`) owns the consumer: it copies each record
//! once (`record`) into its partition's worker's inbox, pausing a
//! partition while too much waits there for a worker that is behind. A
//! worker stores a source offset only once the record's outputs, and those
//! of every record before it, are acknowledged; librdkafka commits stored
//! offsets. When partitions are revoked, the `consumer` context stops
//! their workers, which finish the record in hand and stop before the
//! revocation completes, so the next owner starts after what was finished.
//!
//! Every worker shares one [`Context`] (`plan`): the instance's clients,
//! the targets, and the [`Plan`], the facts of the topology worked out
//! once at start (retry policies, stored topics, the services and control
//! points of each request topic) that the pipeline only reads.
//!
//! Inside a worker: `worker` routes and checks each record ([`route`]) and
//! carries out what [`decide`] says of it (store, invoke, fail, trigger;
//! `steps`, `writes`), the same pure decisions for live and replayed
//! requests; `in_flight` keeps target calls out without waiting (Kafka
//! produces, HTTP calls with `ordering: key` under the adaptive [`limit`]
//! and the binding's rate, `throttle`) and settles them in source order,
//! its `produce` handing a record to a Kafka target for live calls and
//! replays alike;
//! `outputs` is the window of writes whose acknowledgements move the
//! source offset; `replay` drains the stored backlog before the next live
//! record, reading it through the instance's shared `readers` and held to
//! its share of the control point's rate by `pacer`; `uncommitted` stops
//! the partition from taking records while offset commits fail, past the
//! redelivery bound.

mod consumer;
pub mod decide;
mod dispatch;
mod in_flight;
pub mod limit;
mod outputs;
mod pacer;
mod plan;
mod readers;
mod record;
mod replay;
pub mod route;
mod steps;
mod throttle;
mod uncommitted;
mod worker;
mod writes;

pub use dispatch::run_pipeline;
pub use outputs::OutputError;
pub use plan::{Context, Plan, ReplayPlan};
pub use readers::{ReplayReader, ReplayReaders};
pub use replay::redelivery_bound;

use rdkafka::error::KafkaError;

use crate::store::StoreError;
use crate::stored::SkipsError;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `kafka.exactly_once` is set and the broker refused a transaction.
    #[error("kafka.exactly_once: cannot use Kafka transactions for {topic}/{partition} (the broker must support them, or set `exactly_once: false`)")]
    Transactions {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    /// The skipped stored requests could not be read before a replay.
    #[error(transparent)]
    Skips(SkipsError),
    /// Shutdown or revocation interrupted a record; it will be read again.
    #[error("stopped")]
    Stopped,
}

impl From<SkipsError> for PipelineError {
    /// A skips reader that stopped means the instance is stopping.
    fn from(e: SkipsError) -> Self {
        match e {
            SkipsError::Closed(_) => PipelineError::Stopped,
            other => PipelineError::Skips(other),
        }
    }
}

type Partition = (String, i32);
