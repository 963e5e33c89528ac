//! One `sfwd run` instance: the topics, the local store, and its tasks
//! (control table reader, skips reader, control writer, pipeline, admin
//! server), supervised together: when one fails, the others are stopped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::task::JoinSet;

use crate::admin::{self, AdminSettings, AdminState, KafkaOffsets};
use crate::bindings::{HttpTarget, KafkaTarget, Target};
use crate::control::{self, CommandPublisher, ControlPoint, ControlTable};
use crate::failed::FailedEvents;
use crate::kafka::{self, TopicSpec};
use crate::pipeline::{self, route::Routes};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::RocksStore;
use crate::stored::{self, Skips, StoredBacklog};
use crate::topology::{Binding, Topology};

/// How to run an instance.
#[derive(Debug, Clone)]
pub struct Options {
    pub topology: Topology,
    /// Names this instance in records and logs; also names its data directory.
    pub instance_id: String,
    /// Where the local store lives.
    pub data_dir: PathBuf,
    /// Create missing request topics (with the topology's partition count).
    pub create_request_topics: bool,
    /// Where the admin HTTP server listens (port 0: any free port); `None`
    /// runs without it.
    pub admin_listen: Option<SocketAddr>,
    /// Who may use the admin server: its tokens and allowed host names.
    pub admin_access: admin::AccessPolicy,
    /// HTTPS for the admin server: its certificate and key.
    pub admin_tls: Option<admin::TlsFiles>,
    /// Receives this instance's control table as soon as it is open, for a
    /// caller in the same process that watches the control points (the
    /// demo measures the time from a trigger to each instance storing).
    pub table_observer: Option<tokio::sync::mpsc::UnboundedSender<ControlTable>>,
}

/// How long a store/forward request to the admin API waits for the control
/// writer to apply its command.
const ADMIN_DECISION_TIMEOUT: Duration = Duration::from_secs(5);

/// How often librdkafka reports the request consumer's statistics (lag).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// The partition counts and names an instance works with.
struct Topics {
    command_partitions: i32,
    stored_partitions: HashMap<String, i32>,
    /// Partitions of every request topic.
    request_partitions: HashMap<String, i32>,
}

/// Runs an instance until `shutdown` fires or a task fails.
pub async fn run(options: Options, shutdown: ShutdownTrigger) -> anyhow::Result<()> {
    let topology = Arc::new(options.topology.clone());
    let instance = options.instance_id.clone();
    let metrics = crate::telemetry::install();
    let base = kafka::client_config(&topology.kafka);
    let topics = prepare_topics(&topology, &base, options.create_request_topics).await?;

    let dir = options.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let store = Arc::new(RocksStore::open(&dir).with_context(|| {
        format!(
            "opening the local store in {} (is another instance using it? give each instance its own --instance-id or --data-dir)",
            dir.display()
        )
    })?);
    let table = ControlTable::open(
        store.clone(),
        &topology.control_topic(),
        &topology.replay_topic(),
    )?;
    if let Some(observer) = &options.table_observer {
        // A caller that stopped listening does not stop the instance.
        let _ = observer.send(table.clone());
    }
    let producer: FutureProducer = kafka::producer_config(&base)
        .create()
        .context("creating the producer")?;
    let audit: Arc<dyn crate::audit::AuditSink> = Arc::new(crate::audit::AuditLog::new(
        producer.clone(),
        &topology,
        &instance,
        kafka::reader_config(&base, &instance, "audit"),
    ));
    let publisher = CommandPublisher::new(
        producer.clone(),
        &topology.commands_topic(),
        topics.command_partitions,
        &instance,
    );

    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    {
        let config = kafka::control_table_config(&base, &instance);
        let (table, stop) = (table.clone(), shutdown.listener());
        tasks.spawn(async move {
            (
                "control table",
                control::run_reader(config, table, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    let skips = Skips::new(
        &topology.skips_topic(),
        kafka::skips_reader_config(&base, &instance),
    );
    {
        let (skips, stop) = (skips.clone(), shutdown.listener());
        tasks.spawn(async move {
            (
                "skips reader",
                stored::run_skips_reader(skips, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    {
        let control_points = topology
            .control_points()
            .map(|(_, sf)| sf.control_point.clone())
            .collect();
        let watched = crate::telemetry::run_control_metrics(
            instance.clone(),
            table.clone(),
            control_points,
            Some(store.clone()),
            shutdown.listener(),
        );
        tasks.spawn(async move {
            watched.await;
            ("control metrics", Ok(()))
        });
    }
    if let Some(addr) = options.admin_listen {
        let tls = options
            .admin_tls
            .as_ref()
            .map(admin::TlsFiles::load)
            .transpose()
            .context("the admin server's TLS certificate (--admin-tls-cert, --admin-tls-key)")?;
        let listener = admin::bind(addr).await?;
        admin::log_access(&options.admin_access, listener.local_addr()?);
        let state = AdminState::new(AdminSettings {
            topology: topology.clone(),
            instance: instance.clone(),
            table: table.clone(),
            commands: Arc::new(publisher.clone()),
            offsets: Arc::new(KafkaOffsets::new(&kafka::reader_config(
                &base, &instance, "admin",
            ))?),
            layouts: admin::layouts(
                &topology,
                &topics.request_partitions,
                &topics.stored_partitions,
            ),
            metrics,
            decision_timeout: ADMIN_DECISION_TIMEOUT,
            access: options.admin_access.clone(),
            audit: Some(audit.clone()),
            failed: Some(Arc::new(
                FailedEvents::new(&topology).context("the admin server's failed-event reader")?,
            )),
            stored: Some(Arc::new(
                StoredBacklog::new(&topology)
                    .context("the admin server's stored-backlog reader")?,
            )),
        });
        let stop = shutdown.listener();
        tasks.spawn(async move {
            (
                "admin server",
                admin::serve(listener, tls, state, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    tracing::info!(instance = %instance, "loading the control state");
    tokio::select! {
        loaded = async { table.wait_ready().await; skips.wait_ready().await } => {
            loaded.context("loading the skipped stored requests")?;
        }
        Some(joined) = tasks.join_next() => {
            let (name, result) = joined.context("task panicked")?;
            result.with_context(|| format!("{name} stopped before the control state was loaded"))?;
            bail!("{name} stopped before the control state was loaded");
        }
    }
    for cp in table.all() {
        tracing::info!(control_point = %cp.name, mode = %cp.mode, epoch = cp.epoch, replaying = cp.replaying, "control point at start");
    }
    tracing::info!(instance = %instance, "ready");
    let plan = pipeline::Plan::new(
        &topology,
        &topics.request_partitions,
        &topics.stored_partitions,
    );

    {
        let replay_done = replay_done_check(plan.replays.clone(), table.clone());
        let settings = control::WriterSettings {
            consumer: kafka::control_writer_config(
                &base,
                &format!("{}.control-writer", topology.application),
                &instance,
            ),
            producer: producer.clone(),
            commands_topic: topology.commands_topic(),
            control_topic: topology.control_topic(),
            table: table.clone(),
            publisher: publisher.clone(),
            replay_done,
            command_partitions: topics.command_partitions,
            auto_resume: auto_resume(&topology, &producer)?,
            audit: audit.clone(),
        };
        let stop = shutdown.listener();
        tasks.spawn(async move {
            (
                "control writer",
                control::run_writer(settings, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }
    {
        let ctx = Arc::new(pipeline::Context {
            routes: Routes::new(&topology),
            targets: targets(&topology, &producer)?,
            table: table.clone(),
            skips: skips.clone(),
            publisher: publisher.clone(),
            producer: producer.clone(),
            instance: instance.clone(),
            reader_config: kafka::reader_config(&base, &instance, "replay-progress"),
            replay_readers: pipeline::ReplayReaders::new(
                kafka::replay_reader_config(&base, &instance),
                shutdown.listener(),
            )
            .context("creating the replay readers")?,
            exactly_once: topology.kafka.exactly_once.then(|| {
                let mut c = kafka::producer_config(&base);
                c.set("enable.idempotence", "true")
                    .set("max.in.flight.requests.per.connection", "5");
                c
            }),
            topology: topology.clone(),
            plan,
        });
        let mut config = kafka::group_consumer_config(&base, &topology.application, &instance);
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        let stop = shutdown.listener();
        tasks.spawn(async move {
            (
                "pipeline",
                pipeline::run_pipeline(ctx, config, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }

    let mut outcome = Ok(());
    let mut stopping: Shutdown = shutdown.listener();
    loop {
        tokio::select! {
            _ = stopping.wait(), if !stopping.is_fired() => {
                tracing::info!("shutting down");
            }
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let (name, result) = joined.context("task panicked")?;
                if let Err(e) = result {
                    tracing::error!(task = name, error = %format!("{e:#}"), "task failed; stopping the instance");
                    if outcome.is_ok() {
                        outcome = Err(e.context(format!("{name} failed")));
                    }
                }
                shutdown.fire();
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    tracing::info!(instance = %instance, "stopped");
    outcome
}

/// Creates sfwd's own topics and checks that the request topics exist.
async fn prepare_topics(
    topology: &Topology,
    base: &rdkafka::ClientConfig,
    create_request_topics: bool,
) -> anyhow::Result<Topics> {
    let k = &topology.kafka;
    let (p, rf) = (k.partitions as i32, i32::from(k.replication_factor));
    let spec = |name: String, partitions: i32, compacted: bool| TopicSpec {
        name,
        partitions,
        replication_factor: rf,
        compacted,
    };
    let mut specs = vec![
        spec(topology.failed_topic(), p, false),
        spec(topology.failed_actions_topic(), 1, true),
        spec(topology.control_topic(), 1, true),
        spec(topology.commands_topic(), p, false),
        spec(topology.replay_topic(), 1, true),
        spec(topology.skips_topic(), 1, true),
        spec(topology.audit_topic(), 1, false),
    ];
    for (_, sf) in topology.control_points() {
        specs.push(spec(topology.stored_topic(&sf.control_point), p, false));
    }
    if create_request_topics {
        for t in topology.request_topics() {
            specs.push(spec(t.to_string(), p, false));
        }
    }
    kafka::ensure_topics(base, &specs)
        .await
        .with_context(|| format!("creating sfwd's topics on {}", k.bootstrap))?;

    let mut probe = base.clone();
    probe.set("group.id", format!("{}.probe", topology.application));
    let consumer: BaseConsumer = probe.create()?;
    let count = |topic: &str| -> anyhow::Result<Option<i32>> {
        // Topic metadata can lag just after creation: look a few times.
        for _ in 0..20 {
            if let Some(n) = kafka::partition_count(&consumer, topic, Duration::from_secs(10))? {
                return Ok(Some(n));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(None)
    };
    let mut request_partitions = HashMap::new();
    let mut missing = Vec::new();
    for t in topology.request_topics() {
        match count(t)? {
            Some(n) => {
                request_partitions.insert(t.to_string(), n);
            }
            None => missing.push(t.to_string()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "request topics missing on {}: {}; create them, or start with --create-topics",
            k.bootstrap,
            missing.join(", ")
        );
    }
    let command_partitions = count(&topology.commands_topic())?.unwrap_or(p);
    let mut stored_partitions = HashMap::new();
    for (_, sf) in topology.control_points() {
        let n = count(&topology.stored_topic(&sf.control_point))?.unwrap_or(p);
        stored_partitions.insert(sf.control_point.clone(), n);
    }
    Ok(Topics {
        command_partitions,
        stored_partitions,
        request_partitions,
    })
}

/// The target of each service, following `service` references.
fn targets(topology: &Topology, producer: &FutureProducer) -> anyhow::Result<Vec<Target>> {
    topology
        .services
        .iter()
        .map(|s| {
            let mut binding = &s.binding;
            for _ in 0..=topology.services.len() {
                match binding {
                    Binding::Service(name) => {
                        binding = &topology
                            .service(name)
                            .with_context(|| {
                                format!("service `{}` refers to unknown service `{name}`", s.name)
                            })?
                            .binding;
                    }
                    Binding::Http(h) => {
                        return Ok(Target::Http(HttpTarget::new(h).with_context(|| {
                            format!("the http binding of service `{}`", s.name)
                        })?))
                    }
                    Binding::Kafka(k) => {
                        return Ok(Target::Kafka(KafkaTarget::new(k, producer.clone())))
                    }
                }
            }
            bail!("service `{}`: references form a cycle", s.name)
        })
        .collect()
}

/// Whether a FORWARD's replay has finished on every source partition of the
/// control point's service.
fn replay_done_check(
    replays: HashMap<String, pipeline::ReplayPlan>,
    table: ControlTable,
) -> control::ReplayDone {
    Arc::new(move |cp: &ControlPoint| {
        replays.get(&cp.name).is_some_and(|plan| {
            plan.partitions
                .iter()
                .all(|(t, p)| table.replay_finished(cp, t, *p))
        })
    })
}

/// The probes of the control points with `auto_resume`, following `service`
/// references to the binding that is called.
fn auto_resume(
    topology: &Topology,
    producer: &FutureProducer,
) -> anyhow::Result<HashMap<String, control::AutoResume>> {
    let mut out = HashMap::new();
    for (service, sf) in topology.control_points() {
        let Some(auto) = &sf.auto_resume else {
            continue;
        };
        let mut binding = &service.binding;
        for _ in 0..=topology.services.len() {
            match binding {
                Binding::Service(name) => match topology.service(name) {
                    Some(s) => binding = &s.binding,
                    None => break,
                },
                _ => break,
            }
        }
        let probe = match binding {
            Binding::Http(h) => {
                let url = auto.probe_url.clone().unwrap_or_else(|| h.url.clone());
                control::Probe::http(&url, h.timeout)
                    .with_context(|| format!("the auto-resume probe of `{}`", sf.control_point))?
            }
            Binding::Kafka(k) => control::Probe::Kafka {
                producer: producer.clone(),
                topic: k.topic.clone(),
                timeout: k.timeout.min(Duration::from_secs(10)),
            },
            Binding::Service(_) => continue,
        };
        out.insert(
            sf.control_point.clone(),
            control::AutoResume {
                every: auto.every,
                probe,
            },
        );
    }
    Ok(out)
}
