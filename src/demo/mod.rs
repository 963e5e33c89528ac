//! `sfwd demo`: sfwd doing its job with nothing else installed.
//!
//! One process runs an embedded Kafka-protocol cluster (librdkafka's mock
//! cluster, [`embedded::Cluster`]), the simulated target
//! ([`crate::target_sim`]) and several sfwd instances
//! ([`crate::instance::run`], each with its own data directory), and plays
//! an outage through them:
//!
//! 1. start: the cluster, the target, the instances;
//! 2. target up: a third of the requests flow to the target;
//! 3. target down (HTTP 503) while the rest keep coming: the first failed
//!    call triggers the store, every instance stores, one failed event;
//! 4. target back up, an operator forwards;
//! 5. replay: the stored requests reach the target in order, new requests
//!    wait behind them.
//!
//! It then reads the stored and failed-events topics and the target's
//! record, and adds them up into a [`Summary`] with a check for each
//! guarantee shown.

pub mod embedded;
pub mod rebalances;
pub mod summary;
mod traffic;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

use crate::clock::now_ms;
use crate::control::{Cause, CommandKind, CommandPublisher, Mode};
use crate::records::{AvroRecord, FailedEvent, StoredRequest};
use crate::target_sim::{self, TargetSim};
use crate::topology::{self, Topology};
use embedded::{Cluster, Instance, Seen, SeenLog, TempDir};
pub use rebalances::Rebalances;
use summary::{Arrival, FailedCopy, InstanceTiming, Observations, StoredCopy};
pub use summary::{Check, Summary};
use traffic::Traffic;

/// The demo's application id.
pub const APPLICATION: &str = "sfwd-demo";
/// The demo's control point.
pub const CONTROL_POINT: &str = "EmployeeDataFromEISSystem";
/// The demo's request topic.
pub const REQUEST_TOPIC: &str = "hr.employee.get";

/// How big and how long a demo run is.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Requests sent in all: a third before the outage, the rest during
    /// the outage and the replay.
    pub requests: usize,
    /// Partitions of the request topic (and of sfwd's topics).
    pub partitions: i32,
    /// Requests per second; 0 sends as fast as the producer takes them.
    pub rate: u32,
    /// How long the target stays down.
    pub outage: Duration,
    /// sfwd instances in the consumer group.
    pub instances: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            requests: 1200,
            partitions: 6,
            rate: 200,
            outage: Duration::from_secs(2),
            instances: 3,
        }
    }
}

/// How long to wait for anything the demo expects before giving up.
const PATIENCE: Duration = Duration::from_secs(60);
/// With every request sent and the replay caught up, how long the demo waits
/// for requests still missing before it adds up what it has.
const STALL: Duration = Duration::from_secs(5);
/// How often the demo looks at the instances' control tables and the target.
const POLL: Duration = Duration::from_millis(10);
/// The consumers' session timeout on the embedded cluster.
const SESSION_TIMEOUT_MS: u64 = 3000;
/// How long the consumer groups must go without a rebalance before the
/// target goes down: longer than the embedded cluster waits for a member
/// to rejoin (the session timeout less a second).
const SETTLED: Duration = Duration::from_millis(SESSION_TIMEOUT_MS - 500);

/// The demo's topology: one HTTP service over the simulated target at
/// `url`, asynchronous, with store and forward on the default rule.
pub fn topology_yaml(bootstrap: &str, url: &str, partitions: i32) -> String {
    format!(
        r#"application: {APPLICATION}
kafka:
  bootstrap: "{bootstrap}"
  partitions: {partitions}
  properties:
    # The embedded cluster gives a member that is slow to rejoin a
    # rebalance the session timeout less a second: keep both short.
    session.timeout.ms: "{SESSION_TIMEOUT_MS}"
    heartbeat.interval.ms: "500"
services:
  employee-eis:
    binding:
      http: {{ url: "{url}", timeout: 2s }}
      interaction: async
    store_and_forward:
      control_point: {CONTROL_POINT}
    interfaces:
      EmployeeQuery:
        operations:
          getEmployee: {{ topic: {REQUEST_TOPIC} }}
"#
    )
}

/// How long after `start` the first of `received` arrived, and the rate of
/// the arrivals after it.
fn flow(received: &[target_sim::Received], start: SystemTime) -> (Duration, f64) {
    let (Some(first), Some(last)) = (received.first(), received.last()) else {
        return (Duration::ZERO, 0.0);
    };
    let to_first = first.at.duration_since(start).unwrap_or_default();
    let span = last.at.duration_since(first.at).unwrap_or_default();
    let rate = if span.is_zero() {
        0.0
    } else {
        (received.len() - 1) as f64 / span.as_secs_f64()
    };
    (to_first, rate)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Writes a line and flushes it, so progress shows as it happens.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        writeln!($out, $($arg)*)?;
        $out.flush()?;
    }};
}

/// The running pieces of a demo.
struct Demo {
    cluster: Cluster,
    bootstrap: String,
    sim: TargetSim,
    topology: Topology,
    instances: Vec<Instance>,
    seen: SeenLog,
    _dir: TempDir,
}

impl Demo {
    async fn start(settings: &Settings) -> anyhow::Result<Demo> {
        let cluster = Cluster::start()?;
        let bootstrap = cluster.bootstrap();
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sim = TargetSim::start(loopback)
            .await
            .context("starting the simulated target")?;
        let yaml = topology_yaml(&bootstrap, &sim.url("/employee"), settings.partitions);
        let checked = topology::check_str(&yaml, Path::new("sfwd-demo.yaml"));
        let problems: Vec<String> = checked.errors().map(ToString::to_string).collect();
        let topology = checked
            .topology
            .ok_or_else(|| anyhow!("the demo's topology is refused:\n{}", problems.join("\n")))?;
        cluster.create_topics(&topology)?;
        let dir = TempDir::new("sfwd-demo")?;
        let seen: SeenLog = Arc::default();
        // Started together, the instances join the consumer group in one
        // rebalance.
        let starts = (0..settings.instances).map(|i| {
            let id = format!("demo-{}", i + 1);
            let data_dir = dir.path().join(&id);
            let (topology, seen) = (&topology, seen.clone());
            async move {
                embedded::start_instance(topology, i, &id, data_dir, CONTROL_POINT, seen).await
            }
        });
        let instances = futures::future::try_join_all(starts).await?;
        Ok(Demo {
            cluster,
            bootstrap,
            sim,
            topology,
            instances,
            seen,
            _dir: dir,
        })
    }

    /// Fails when an instance has stopped on its own.
    fn check_instances(&self) -> anyhow::Result<()> {
        if let Some(i) = self.instances.iter().find(|i| i.is_finished()) {
            bail!(
                "instance {} stopped during the demo (run with --verbose to see why)",
                i.id
            );
        }
        Ok(())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds, checking the instances, for at most `limit`.
    async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&Demo) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            self.check_instances()?;
            if Instant::now() > deadline {
                bail!("{what}: not within {}", secs(limit));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Distinct request ids the target received.
    fn delivered(&self) -> usize {
        self.sim
            .received_ids()
            .into_iter()
            .flatten()
            .collect::<HashSet<_>>()
            .len()
    }

    /// The first change to `mode` seen by instance `i` at an epoch above
    /// `after`.
    fn first(&self, i: usize, mode: Mode, after: u64) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.instance == i && s.mode == mode && s.epoch > after)
            .cloned()
    }

    fn operator(&self) -> anyhow::Result<CommandPublisher> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating the operator's producer")?;
        CommandPublisher::discover(producer, &self.topology.commands_topic(), "operator:demo")
            .context("finding the commands topic")
    }

    /// Reads what the run left in the stored and failed-events topics.
    fn read_outputs(&self) -> anyhow::Result<(Vec<StoredCopy>, Vec<FailedCopy>)> {
        let reader = embedded::reader(&self.bootstrap, "summary")?;
        let stored = embedded::read_all(&reader, &self.topology.stored_topic(CONTROL_POINT))?
            .iter()
            .filter_map(|m| m.payload())
            .map(|p| {
                StoredRequest::decode(p).map(|s| StoredCopy {
                    request_id: s.request_id,
                    instance: s.instance,
                })
            })
            .collect::<Result<_, _>>()
            .context("decoding a stored request")?;
        let failed = embedded::read_all(&reader, &self.topology.failed_topic())?
            .iter()
            .filter_map(|m| m.payload())
            .map(|p| {
                FailedEvent::decode(p).map(|f| FailedCopy {
                    request_id: f.request_id,
                    reason: f.reason,
                })
            })
            .collect::<Result<_, _>>()
            .context("decoding a failed event")?;
        Ok((stored, failed))
    }

    /// Stops the instances, then the target; the cluster goes last.
    async fn stop(self) -> anyhow::Result<()> {
        let stops = self
            .instances
            .into_iter()
            .map(|i| i.stop(Duration::from_secs(20)));
        let results = futures::future::join_all(stops).await;
        self.sim.shutdown().await;
        drop(self.cluster);
        results.into_iter().collect()
    }
}

/// Runs the demo, writing its progress and summary to `out`. Returns the
/// summary; [`Summary::passed`] says whether the guarantees held. An error
/// means the demo could not play its scenario (an instance stopped, the
/// target never received the first requests, …).
///
/// With `rebalances` (installed as a layer of the process's tracing
/// subscriber), the target goes down only once the consumer groups have
/// settled; without it, after a fixed wait.
pub async fn run(
    settings: &Settings,
    rebalances: Option<&Rebalances>,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let Settings {
        requests,
        partitions,
        rate,
        outage,
        instances: n,
    } = settings.clone();
    if n == 0 || partitions < 1 || requests < 3 {
        bail!("the demo needs at least 1 instance, 1 partition and 3 requests");
    }
    let begun = Instant::now();
    say!(
        out,
        "sfwd demo: {n} instance{} over {partitions} partitions of {REQUEST_TOPIC}, {requests} requests {}, target down for {}\n",
        if n == 1 { "" } else { "s" },
        if rate == 0 { "as fast as possible".to_string() } else { format!("at {rate}/s") },
        secs(outage),
    );

    // 1. Start.
    let phase = Instant::now();
    let demo = Demo::start(settings).await?;
    let ids: Vec<String> = demo.instances.iter().map(|i| i.id.clone()).collect();
    say!(
        out,
        "[1/5] start        embedded Kafka at {}, target at {}, instances {} ready ({})",
        demo.bootstrap,
        demo.sim.url("/employee"),
        ids.join(", "),
        secs(phase.elapsed())
    );
    let outcome = play(&demo, settings, rebalances, out, begun).await;
    let stopped = demo.stop().await;
    let summary = outcome?;
    if let Err(e) = stopped {
        say!(out, "warning: {e:#}");
    }
    Ok(summary)
}

/// Phases 2 to 5 and the summary.
async fn play(
    demo: &Demo,
    settings: &Settings,
    rebalances: Option<&Rebalances>,
    out: &mut dyn Write,
    begun: Instant,
) -> anyhow::Result<Summary> {
    let Settings {
        requests,
        rate,
        outage,
        instances: n,
        ..
    } = settings.clone();

    // 2. Target up: the first third flows through.
    let phase = Instant::now();
    let phase_wall = SystemTime::now();
    let mut traffic = Traffic::new(&demo.bootstrap, REQUEST_TOPIC, settings.partitions)?;
    let acked = traffic.acked();
    let first = requests / 3;
    let mut sent = traffic.send(first, rate).await?;
    demo.wait_until("the first requests reaching the target", PATIENCE, |d| {
        d.delivered() >= first
    })
    .await?;
    let (to_first, per_second) = flow(&demo.sim.received(), phase_wall);
    let settling = Instant::now();
    let quiet = || rebalances.map_or(settling.elapsed(), Rebalances::quiet_for);
    // Not settling is no reason to stop: the guarantees hold through a
    // rebalance too.
    let _ = demo
        .wait_until("the consumer groups settling", PATIENCE, |_| {
            quiet() >= SETTLED
        })
        .await;
    say!(
        out,
        "[2/5] target up    sent {first}, delivered {}: the first after {} (the consumer groups forming), then {per_second:.0}/s; groups settled ({})",
        demo.delivered(),
        secs(to_first),
        secs(phase.elapsed())
    );

    // 3. Target down while the rest keep coming.
    let phase = Instant::now();
    let delivered_at_down = demo.delivered();
    demo.sim
        .apply(target_sim::Mode::Unavailable)
        .await
        .context("taking the target down")?;
    say!(
        out,
        "[3/5] target down  the target answers 503 for {}; requests keep coming",
        secs(outage)
    );
    let acked_at_down = acked.load(Ordering::Relaxed);
    let rest = requests - first;
    let sending = tokio::spawn(async move { traffic.send(rest, rate).await });
    let mut shown = vec![false; n];
    let mut store_epoch = None;
    let mut all_storing: Option<u64> = None;
    let deadline = phase + PATIENCE;
    loop {
        demo.check_instances()?;
        for s in demo.seen() {
            if s.mode != Mode::Store || shown[s.instance] {
                continue;
            }
            if store_epoch.is_none() {
                if let Some(trigger) = &s.trigger {
                    say!(
                        out,
                        "                   trigger: {trigger} failed on {} (the one failed event)",
                        s.by
                    );
                }
                store_epoch = Some(s.epoch);
            }
            shown[s.instance] = true;
            say!(
                out,
                "                   {} storing, {} ms after the trigger",
                demo.instances[s.instance].id,
                s.seen_ms - s.since_ms
            );
        }
        if all_storing.is_none() && shown.iter().all(|s| *s) {
            all_storing = Some(demo.sim.attempts());
        }
        if phase.elapsed() >= outage && all_storing.is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "storing did not begin on every instance within {}: {} of {n} storing",
                secs(PATIENCE),
                shown.iter().filter(|s| **s).count()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let store_epoch = store_epoch.unwrap_or(0);
    let calls_while_storing = demo.sim.attempts() - all_storing.unwrap_or(0);
    let (stored_now, failed_now) = {
        let reader = embedded::reader(&demo.bootstrap, "progress")?;
        (
            embedded::topic_size(&reader, &demo.topology.stored_topic(CONTROL_POINT))?,
            embedded::topic_size(&reader, &demo.topology.failed_topic())?,
        )
    };
    say!(
        out,
        "                   sent {} while down, stored {stored_now}, failed {failed_now}, target calls once all stored {calls_while_storing} ({})",
        acked.load(Ordering::Relaxed) - acked_at_down,
        secs(phase.elapsed())
    );

    // 4. Target back up; an operator forwards.
    let phase = Instant::now();
    demo.sim
        .apply(target_sim::Mode::Up)
        .await
        .context("bringing the target back")?;
    let operator = demo.operator()?;
    let forward = operator.command(CommandKind::Forward, 0);
    operator
        .publish(CONTROL_POINT, &forward)
        .await
        .context("publishing the operator's forward")?;
    demo.wait_until("every instance forwarding", PATIENCE, |d| {
        (0..n).all(|i| d.first(i, Mode::Forward, store_epoch).is_some())
    })
    .await?;
    let lags: Vec<i64> = (0..n)
        .filter_map(|i| demo.first(i, Mode::Forward, store_epoch))
        .map(|s| s.seen_ms - s.since_ms)
        .collect();
    say!(
        out,
        "[4/5] forward      target up, operator forward published; every instance replaying within {} ms",
        lags.iter().max().copied().unwrap_or(0)
    );

    // 5. Replay, with new requests behind it.
    let replay_start = now_ms();
    sent.extend(sending.await.context("the producer task panicked")??);
    let caught_up = |d: &Demo| {
        (0..n).all(|i| {
            d.seen.lock().unwrap().iter().any(|s| {
                s.instance == i && s.cause == Cause::ReplayCaughtUp && s.epoch > store_epoch
            })
        })
    };
    demo.wait_until("the replay catching up", PATIENCE, caught_up)
        .await?;
    let replay_ms = demo
        .seen()
        .iter()
        .filter(|s| s.cause == Cause::ReplayCaughtUp && s.epoch > store_epoch)
        .map(|s| s.since_ms)
        .min()
        .unwrap_or(replay_start)
        - forward.at_ms;
    let activations = || {
        demo.seen()
            .iter()
            .filter(|s| s.mode == Mode::Store)
            .map(|s| s.epoch)
            .collect::<HashSet<_>>()
            .len()
    };
    // Everything sent is delivered, but for one failed event per activation;
    // if something is missing, wait until nothing moves for a while.
    let mut last = (demo.delivered(), Instant::now());
    let give_up = Instant::now() + PATIENCE;
    while demo.delivered() + activations() < sent.len() && Instant::now() < give_up {
        demo.check_instances()?;
        let now = demo.delivered();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STALL {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let (stored, failed) = demo.read_outputs()?;
    let received = demo
        .sim
        .received()
        .into_iter()
        .filter_map(|r| {
            r.request_id.map(|request_id| Arrival {
                request_id,
                redelivery: r.redelivery,
            })
        })
        .collect();
    let instances = demo
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| InstanceTiming {
            instance: inst.id.clone(),
            trigger_to_store_ms: demo
                .first(i, Mode::Store, 0)
                .map(|s| s.seen_ms - s.since_ms),
            forward_to_replay_ms: demo
                .first(i, Mode::Forward, store_epoch)
                .map(|s| s.seen_ms - s.since_ms),
        })
        .collect();
    let summary = Summary::from_observations(&Observations {
        sent,
        received,
        stored,
        failed,
        activations: activations(),
        instances,
    });
    let rate = |n: usize, ms: i64| {
        if ms > 0 {
            format!(" ({:.0}/s)", n as f64 * 1000.0 / ms as f64)
        } else {
            String::new()
        }
    };
    say!(
        out,
        "[5/5] replay       {} stored requests replayed in {replay_ms} ms{}; {} later requests delivered behind them; delivered {} of {} ({})\n",
        summary.replayed,
        rate(summary.replayed, replay_ms),
        summary.delivered_live.saturating_sub(delivered_at_down),
        summary.delivered,
        summary.sent,
        secs(phase.elapsed())
    );
    say!(out, "{summary}");
    say!(
        out,
        "{} in {}",
        if summary.passed() {
            "every guarantee held"
        } else {
            "a guarantee did not hold"
        },
        secs(begun.elapsed())
    );
    Ok(summary)
}
