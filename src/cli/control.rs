//! `sfwd control status | store CP | forward CP`
//!
//! The commands read the control topic to its end themselves and publish
//! operator commands to the commands topic, so they need no running
//! instance: a command published while none runs is applied by the first
//! instance that starts.
//!
//! `status --output json` prints one object: `application`, `bootstrap`,
//! `at` (RFC 3339 UTC), `at_ms`, `notes` (strings), and `control_points`,
//! one per control point of the topology in file order, with the fields of
//! the admin API's control point (`name`, `service`, `state` (`FORWARD` or
//! `STORE`), `replaying`, `epoch`, `since`, `since_ms`, `cause`
//! (`initial`, `trigger`, `operator`, `auto-resume`, `replay-caught-up`),
//! `by`, `trigger` (null or `{request_id, instance, operation, rule,
//! chain: [{type, message}]}`), `stored_backlog`, `replay` (null, or while
//! replaying `{partitions, caught_up}`), `failed` (open failed events))
//! and also `age_seconds`, `stored_topic` and `failed_by_status` (`{open,
//! discarded, resubmitting, resubmitted}`). Absent values are `null`.
//!
//! `stored_backlog` is the number of stored requests not yet replayed: per
//! partition of the stored topic, its high watermark minus the lowest
//! replay position of the source partitions stored there. It is exact
//! when each stored partition holds one source partition (the default
//! layout), an upper bound otherwise, and 0 once every replay has reached
//! the end.

mod history;
mod pace;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use serde_json::json;
use sfwd::control::{
    self, CommandKind, CommandPublisher, ControlPoint, ControlTable, Mode, NoOp, Outcome, Pace,
};
use sfwd::failed::time::{format_age, format_utc};
use sfwd::kafka::{self, TopicSpec};
use sfwd::shutdown::{self, ShutdownTrigger};
use sfwd::store::MemoryStore;
use sfwd::topology::{parse_duration, Topology};

use super::operator::{
    audit, audit_event, count, run_async, unknown, Failure, Operator, Output, Table, Target,
};
use pace::pace_replay;
use sfwd::records::AuditEvent;
use status::{gather, layouts, render_status, state_text, watermarks, Sources};

/// Options of `sfwd control`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show every control point: state, epoch, since when, why and by whom,
    /// the last trigger, stored backlog, replay progress, failed events.
    Status(StatusArgs),
    /// Switch a control point to STORE: every instance parks the requests
    /// of its service in the stored topic.
    Store(SwitchArgs),
    /// Switch a control point to FORWARD: its stored requests are replayed
    /// in order, then its service is invoked again.
    Forward(ForwardArgs),
    /// Change the pace of a control point's replay, on every instance: the
    /// one running now, or (while storing) the next one.
    Pace(PaceArgs),
    /// The audit trail of a control point (or of all): who did what, when,
    /// from where, with what result, and every change of state.
    History(history::HistoryArgs),
}

#[derive(Debug, clap::Args)]
struct ForwardArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// Replay at most this many requests per second across the cluster
    /// (e.g. `500/s`, `600/min`, or `unlimited`) instead of the topology's
    /// `replay.rate`, until this replay has caught up.
    #[arg(long, value_parser = pace)]
    rate: Option<Pace>,
}

#[derive(Debug, clap::Args)]
struct PaceArgs {
    #[command(flatten)]
    switch: SwitchArgs,
    /// Requests per second across the cluster (`50/s`, `600/min`),
    /// `unlimited`, or `default` for the topology's `replay.rate`.
    #[arg(value_parser = pace_or_default)]
    rate: PaceChoice,
}

/// A pace, or the topology's.
#[derive(Debug, Clone, Copy)]
struct PaceChoice(Option<Pace>);

fn pace(s: &str) -> Result<Pace, String> {
    s.parse()
        .map_err(|e: sfwd::control::pace::RateError| e.to_string())
}

fn pace_or_default(s: &str) -> Result<PaceChoice, String> {
    Pace::parse_setting(s)
        .map(PaceChoice)
        .map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct SwitchArgs {
    /// The control point (as named in the topology).
    control_point: String,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    operator: Operator,
    /// How long to wait for the control writer to apply the command
    /// (`0s`: publish and return).
    #[arg(long, default_value = "10s", value_parser = duration)]
    wait: Duration,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration: write e.g. `500ms`, `10s`, `2m`"))
}

/// Runs `sfwd control …`.
pub fn run(args: Args) -> std::process::ExitCode {
    run_async(async move {
        match args.command {
            Command::Status(a) => status(a).await,
            Command::Store(a) => switch(a, Mode::Store, None).await,
            Command::Forward(a) => forward(a).await,
            Command::Pace(a) => pace_replay(a).await,
            Command::History(a) => history::history(a).await,
        }
    })
}

/// How long to wait for the control topic to be read to its end.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The control table of an application, read from its control topic and
/// kept up to date until dropped.
struct Control {
    table: ControlTable,
    stop: ShutdownTrigger,
    /// The control topics did not exist: nothing was ever changed.
    fresh: bool,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// A consumer for metadata and watermarks only.
fn probe(topology: &Topology) -> Result<BaseConsumer, Failure> {
    let base = kafka::client_config(&topology.kafka);
    kafka::reader_config(&base, &reader_name(topology), "probe")
        .create()
        .map_err(|e| Failure::failed(format!("creating a Kafka client: {e}")))
}

fn reader_name(topology: &Topology) -> String {
    format!(
        "{}.operator.{}.{}",
        topology.application,
        std::process::id(),
        sfwd::clock::now_ms()
    )
}

fn kafka_failure(topology: &Topology, what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::failed(format!(
        "{what} on {}: {e} (is the broker reachable? check --bootstrap / SFWD_BOOTSTRAP and the topology's kafka settings)",
        topology.kafka.bootstrap
    ))
}

/// Reads the control and replay topics to their end.
async fn load_control(topology: &Topology, probe: &BaseConsumer) -> Result<Control, Failure> {
    let table = ControlTable::open(
        Arc::new(MemoryStore::default()),
        &topology.control_topic(),
        &topology.replay_topic(),
    )
    .map_err(|e| Failure::failed(e.to_string()))?;
    let (stop, listener) = shutdown::channel();
    let mut exists = true;
    for topic in [topology.control_topic(), topology.replay_topic()] {
        let n = kafka::partition_count(probe, &topic, METADATA_TIMEOUT)
            .map_err(|e| kafka_failure(topology, &format!("reading the metadata of {topic}"), e))?;
        exists &= n.is_some();
    }
    if !exists {
        table.mark_ready();
        return Ok(Control {
            table,
            stop,
            fresh: true,
        });
    }
    let base = kafka::client_config(&topology.kafka);
    let config = kafka::reader_config(&base, &reader_name(topology), "control");
    let mut reader = tokio::spawn(control::run_reader(config, table.clone(), listener));
    tokio::select! {
        _ = table.wait_ready() => {}
        joined = &mut reader => {
            let why = match joined {
                Ok(Ok(())) => "stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(kafka_failure(topology, "reading the control topic", why));
        }
        _ = tokio::time::sleep(LOAD_TIMEOUT) => {
            stop.fire();
            return Err(kafka_failure(
                topology,
                &format!("reading {}", topology.control_topic()),
                format!("not read to its end within {}s", LOAD_TIMEOUT.as_secs()),
            ));
        }
    }
    Ok(Control {
        table,
        stop,
        fresh: false,
    })
}

async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let (status, _control) = gather(&topology).await?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("plain data")
        ),
        Output::Table => print!("{}", render_status(&status)),
    }
    Ok(0)
}

/// Creates the topics a command needs when no instance has created them
/// yet, with the same settings `sfwd run` uses.
async fn ensure_control_topics(topology: &Topology) -> Result<(), Failure> {
    let k = &topology.kafka;
    let rf = i32::from(k.replication_factor);
    let spec = |name: String, partitions: i32, compacted: bool| TopicSpec {
        name,
        partitions,
        replication_factor: rf,
        compacted,
    };
    let specs = [
        spec(topology.control_topic(), 1, true),
        spec(topology.commands_topic(), k.partitions as i32, false),
        spec(topology.replay_topic(), 1, true),
        spec(topology.audit_topic(), 1, false),
    ];
    kafka::ensure_topics(&kafka::client_config(k), &specs)
        .await
        .map_err(|e| kafka_failure(topology, "creating the control topics", e))
}

/// What `store` or `forward` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwitchResult {
    /// Already there: nothing published.
    NoOp,
    /// Published and applied by the control writer.
    Applied,
    /// Published; the control point is where asked, but its latest change
    /// is another one (a later one, or one that came first).
    Reached,
    /// Published; nothing applied it within the wait.
    Published,
}

impl SwitchResult {
    fn as_str(self) -> &'static str {
        match self {
            SwitchResult::NoOp => "no-op",
            SwitchResult::Applied => "applied",
            SwitchResult::Reached => "reached",
            SwitchResult::Published => "published",
        }
    }
}

/// `kind` as `issuer` would publish it now, to see what the state machine
/// makes of it before anything is published.
fn as_if(kind: &CommandKind, before: &ControlPoint, issuer: &str) -> sfwd::control::Command {
    sfwd::control::Command {
        id: String::new(),
        kind: kind.clone(),
        observed_epoch: before.epoch,
        by: issuer.to_string(),
        at_ms: sfwd::clock::now_ms(),
    }
}

/// The service of control point `cp`, or the error that lists the known ones.
fn service_of(topology: &Topology, cp: &str) -> Result<String, Failure> {
    let names: Vec<&str> = topology
        .control_points()
        .map(|(_, sf)| sf.control_point.as_str())
        .collect();
    topology
        .control_point(cp)
        .map(|(s, _)| s.name.clone())
        .ok_or_else(|| unknown("control point", cp, &names))
}

async fn forward(args: ForwardArgs) -> Result<u8, Failure> {
    switch(args.switch, Mode::Forward, args.rate).await
}

async fn switch(args: SwitchArgs, wanted: Mode, rate: Option<Pace>) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let cp = args.control_point.as_str();
    let service = service_of(&topology, cp)?;
    let kind = match wanted {
        Mode::Store => CommandKind::Store,
        Mode::Forward => CommandKind::Forward,
    };
    let issuer = args.operator.issuer();
    let probe = probe(&topology)?;
    let control = load_control(&topology, &probe).await?;
    let before = control.table.get(cp);

    let producer: FutureProducer = kafka::producer_config(&kafka::client_config(&topology.kafka))
        .create()
        .map_err(|e| Failure::failed(format!("creating a Kafka producer: {e}")))?;
    let commands = topology.commands_topic();
    // The state machine says whether there is anything to do.
    let as_if = as_if(&kind, &before, &issuer);
    if let (Some(rate), Outcome::NoOp(NoOp::AlreadyForwarding { .. })) =
        (rate, before.clone().apply(&as_if))
    {
        return Err(Failure::failed(format!(
            "`{cp}` is already forwarding: to change the pace of its replay, run `sfwd control pace {cp} {rate}`"
        )));
    }
    if let Outcome::NoOp(why) = before.clone().apply(&as_if) {
        let now = sfwd::clock::now_ms();
        let message = match why {
            NoOp::AlreadyStoring { epoch, since_ms } => format!(
                "`{cp}` is already storing (epoch {epoch}, since {} ({} ago), {} by {}): nothing published",
                format_utc(since_ms),
                format_age(since_ms, now),
                before.cause,
                before.by
            ),
            NoOp::AlreadyForwarding { epoch, replaying } => format!(
                "`{cp}` is already forwarding (epoch {epoch}{}): nothing published",
                if replaying { ", replaying its stored requests" } else { "" }
            ),
            NoOp::Duplicate { .. } | NoOp::AlreadyPaced { .. } => {
                format!("`{cp}`: {why}; nothing published")
            }
        };
        let report = SwitchReport {
            wanted,
            result: SwitchResult::NoOp,
            message,
            command_id: None,
        };
        report.audit(&topology, cp, &issuer, rate).await;
        report.print(
            &args, &topology, &service, &before, &before, &control, &probe,
        )?;
        return Ok(0);
    }

    if control.fresh {
        ensure_control_topics(&topology).await?;
    }
    let partitions = kafka::partition_count(&probe, &commands, METADATA_TIMEOUT)
        .map_err(|e| kafka_failure(&topology, &format!("reading the metadata of {commands}"), e))?
        .unwrap_or(topology.kafka.partitions as i32);
    let publisher = CommandPublisher::new(producer, &commands, partitions, &issuer);
    let command = publisher.command(kind, before.epoch);
    let mut changes = control.table.subscribe();
    if let Some(rate) = rate {
        // Applied before the forward, in the same partition: the replay
        // starts at this pace.
        let paced = publisher.command(CommandKind::Pace(Some(rate)), before.epoch);
        publisher
            .publish(cp, &paced)
            .await
            .map_err(|e| kafka_failure(&topology, &format!("publishing to {commands}"), e))?;
    }
    publisher
        .publish(cp, &command)
        .await
        .map_err(|e| kafka_failure(&topology, &format!("publishing to {commands}"), e))?;

    let deadline = Instant::now() + args.wait;
    let result = loop {
        let now = control.table.get(cp);
        if now.command_id.as_deref() == Some(command.id.as_str()) {
            break SwitchResult::Applied;
        }
        if now.epoch > before.epoch && now.mode == wanted {
            break SwitchResult::Reached;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || control.fresh {
            break SwitchResult::Published;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break SwitchResult::Published },
            _ = tokio::time::sleep(left) => {}
        }
    };
    let after = control.table.get(cp);
    let was = state_text(before.mode.as_str(), before.replaying);
    let message = match result {
        SwitchResult::Applied => format!(
            "`{cp}` is now {} at epoch {} (was {was} at epoch {}), by {}",
            state_text(after.mode.as_str(), after.replaying),
            after.epoch,
            before.epoch,
            after.by
        ),
        SwitchResult::Reached => format!(
            "`{cp}` is now {} at epoch {} (was {was} at epoch {}); its latest change: {} by {}",
            state_text(after.mode.as_str(), after.replaying),
            after.epoch,
            before.epoch,
            after.cause,
            after.by
        ),
        SwitchResult::Published if control.fresh || args.wait.is_zero() => format!(
            "published `{}` for `{cp}` (command {}); it will be applied when an instance runs",
            command.kind.name(),
            command.id
        ),
        SwitchResult::Published => format!(
            "published `{}` for `{cp}` (command {}); no control writer answered within {} — it will be applied when an instance runs",
            command.kind.name(),
            command.id,
            humantime(args.wait)
        ),
        SwitchResult::NoOp => unreachable!("handled before publishing"),
    };
    let report = SwitchReport {
        wanted,
        result,
        message,
        command_id: Some(command.id),
    };
    report.audit(&topology, cp, &issuer, rate).await;
    report.print(
        &args, &topology, &service, &before, &after, &control, &probe,
    )?;
    Ok(0)
}

impl SwitchReport {
    /// Records this store or forward in the audit trail.
    async fn audit(&self, topology: &Topology, cp: &str, issuer: &str, rate: Option<Pace>) {
        let action = match self.wanted {
            Mode::Store => "store",
            Mode::Forward => "forward",
        };
        let event = AuditEvent {
            command_id: self.command_id.clone(),
            detail: rate.map(|r| format!("rate {r}")),
            message: Some(self.message.clone()),
            ..audit_event(action, Some(cp), issuer, self.result.as_str())
        };
        audit(topology, vec![event]).await;
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What `store` or `forward` did, to print.
struct SwitchReport {
    wanted: Mode,
    result: SwitchResult,
    message: String,
    command_id: Option<String>,
}

impl SwitchReport {
    #[allow(clippy::too_many_arguments)]
    fn print(
        &self,
        args: &SwitchArgs,
        topology: &Topology,
        service: &str,
        before: &ControlPoint,
        after: &ControlPoint,
        control: &Control,
        probe: &BaseConsumer,
    ) -> Result<(), Failure> {
        let layouts = layouts(topology, probe)?;
        let marks = watermarks(topology, probe, &layouts, &after.name)?;
        let src = Sources {
            topology,
            layouts: &layouts,
            table: &control.table,
            now: sfwd::clock::now_ms(),
        };
        match args.output {
            Output::Table => {
                println!("{}", self.message);
                let b = src.backlog(&after.name, &marks);
                if b > 0 {
                    let what = if after.mode == Mode::Store {
                        "stored, waiting for `forward`"
                    } else {
                        "stored, to replay"
                    };
                    println!("{} {what}", count(b as usize, "request"));
                }
            }
            Output::Json => {
                let v = json!({
                    "control_point": after.name,
                    "command": match self.wanted { Mode::Store => "store", Mode::Forward => "forward" },
                    "result": self.result.as_str(),
                    "message": self.message,
                    "command_id": self.command_id,
                    "previous": { "state": before.mode.as_str(), "replaying": before.replaying, "epoch": before.epoch },
                    "state": src.point(service, after.clone(), &marks, None),
                });
                println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
            }
        }
        Ok(())
    }
}
