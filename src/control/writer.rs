//! The single writer of each control point.
//!
//! Every instance is a member of the consumer group `<app>.control-writer`
//! on the commands topic; the member that owns a partition decides for the
//! control points whose commands land there. Before deciding anything after
//! it gains a partition, it reads the control topic to its end, so it starts
//! from the last state any previous owner wrote.
//!
//! Each state it writes carries, as fencing token, the commands-topic offset
//! of the command that produced it. Commands are applied in offset order and
//! a command at or below the token of the current state was already applied
//! (by this writer or a previous owner) and is skipped, so a command is
//! applied once even when a new owner re-reads commands whose offsets the
//! old owner had not committed. Readers ignore a state whose token is not
//! higher than the one they hold, so a writer that lost ownership cannot
//! overwrite a newer decision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::convert::{command_from_record, state_to_record};
use super::machine::{Command, CommandKind, ControlPoint, Mode, Outcome};
use super::probe::AutoResume;
use super::publisher::{command_partition, CommandPublisher};
use super::table::ControlTable;
use crate::kafka::{Assignment, RebalanceContext};
use crate::records::{AvroRecord, ControlCommand};
use crate::shutdown::Shutdown;

/// Why the writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("control writer: {0}")]
    Kafka(#[from] KafkaError),
    #[error("control writer: cannot write the state of `{control_point}` to {topic}: {source}")]
    Write {
        control_point: String,
        topic: String,
        source: KafkaError,
    },
}

/// Says whether the replay started at a FORWARD epoch has finished on
/// every source partition of a control point's service.
pub type ReplayDone = Arc<dyn Fn(&ControlPoint) -> bool + Send + Sync>;

/// What the writer needs.
pub struct WriterSettings {
    /// Consumer config with `group.id` = `<app>.control-writer`.
    pub consumer: ClientConfig,
    pub producer: FutureProducer,
    pub commands_topic: String,
    pub control_topic: String,
    pub table: ControlTable,
    /// Publishes `replay-caught-up` commands for the control points this
    /// writer owns.
    pub publisher: CommandPublisher,
    pub replay_done: ReplayDone,
    pub command_partitions: i32,
    /// Control points with automatic resume, and how to probe their target.
    pub auto_resume: HashMap<String, AutoResume>,
    /// Where each applied change is recorded.
    pub audit: Arc<dyn crate::audit::AuditSink>,
}

/// Runs the writer until shutdown.
pub async fn run_writer(s: WriterSettings, mut shutdown: Shutdown) -> Result<(), WriterError> {
    let (context, mut assignments) = RebalanceContext::new();
    let consumer: StreamConsumer<RebalanceContext> = s.consumer.create_with_context(context)?;
    consumer.subscribe(&[&s.commands_topic])?;

    let mut owned: HashSet<i32> = HashSet::new();
    let mut to_restore: HashSet<i32> = HashSet::new();
    // The writer's own view of the control points it decides for.
    let mut current: HashMap<String, (ControlPoint, i64)> = HashMap::new();
    let mut caught_up_sent: HashMap<String, u64> = HashMap::new();
    // When each storing control point was last probed, and whether a probe
    // is under way.
    let mut probed: HashMap<String, (std::time::Instant, Arc<std::sync::atomic::AtomicBool>)> =
        HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            // An assignment is handled before any command of the partitions
            // it gives.
            biased;
            _ = shutdown.wait() => break,
            Some(change) = assignments.recv() => match change {
                Assignment::Assigned(ps) => {
                    for (_, p) in ps {
                        owned.insert(p);
                        to_restore.insert(p);
                    }
                    tracing::info!(partitions = ?owned, "control writer owns command partitions");
                    // Read the control topic to its end now rather than when
                    // the first command arrives: that command is most often
                    // a trigger, and its pipeline is waiting for the decision.
                    if !to_restore.is_empty() {
                        restore(&consumer, &s).await?;
                        for p in to_restore.drain() {
                            current.retain(|cp, _| command_partition(cp, s.command_partitions) != p);
                        }
                    }
                }
                Assignment::Revoked(ps) => {
                    for (_, p) in ps {
                        owned.remove(&p);
                        to_restore.remove(&p);
                        current.retain(|cp, _| command_partition(cp, s.command_partitions) != p);
                    }
                }
            },
            _ = tick.tick() => {
                // Automatic resume: probe the targets of storing control
                // points this writer decides for.
                for state in s.table.all() {
                    let Some(auto) = s.auto_resume.get(&state.name) else { continue };
                    if state.mode != Mode::Store || !owned.contains(&command_partition(&state.name, s.command_partitions)) {
                        continue;
                    }
                    let (last, busy) = probed
                        .entry(state.name.clone())
                        .or_insert_with(|| (std::time::Instant::now(), Arc::default()));
                    if last.elapsed() < auto.every || busy.swap(true, std::sync::atomic::Ordering::AcqRel) {
                        continue;
                    }
                    *last = std::time::Instant::now();
                    let (probe, busy, publisher) = (auto.probe.clone(), busy.clone(), s.publisher.clone());
                    tokio::spawn(async move {
                        if probe.is_up().await {
                            tracing::info!(control_point = %state.name, epoch = state.epoch, ?probe, "probe succeeded: resuming");
                            let command = publisher.command(CommandKind::AutoResume, state.epoch);
                            if let Err(e) = publisher.publish(&state.name, &command).await {
                                tracing::warn!(control_point = %state.name, error = %e, "cannot publish auto-resume");
                            }
                        } else {
                            tracing::debug!(control_point = %state.name, ?probe, "probe: target still down");
                        }
                        busy.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
                // A writer that lost ownership may have written after the
                // valid state: its record would be the one compaction keeps.
                for state in s.table.all() {
                    let cp = state.name.clone();
                    if !owned.contains(&command_partition(&cp, s.command_partitions)) {
                        continue;
                    }
                    let accepted = s.table.get_with_generation(&cp).map(|(_, g)| g);
                    if needs_repair(accepted, s.table.last_seen_generation(&cp)) {
                        let (state, generation) = current.get(&cp).cloned().or_else(|| s.table.get_with_generation(&cp)).expect("accepted");
                        tracing::warn!(control_point = %cp, generation, "a stale control state was written after the current one; writing the current state again");
                        write_state(&s, &state, generation).await?;
                    }
                }
                // A replay that has finished everywhere ends with a command,
                // so that it is ordered with the others. Every control point
                // of an owned partition is looked at, whether or not a
                // command for it arrived since the partition was assigned:
                // completion depends on the replay progress alone.
                for table_state in s.table.all() {
                    let cp = table_state.name.clone();
                    let partition = command_partition(&cp, s.command_partitions);
                    if !owned.contains(&partition) || to_restore.contains(&partition) {
                        continue;
                    }
                    let state = current.get(&cp).map(|(state, _)| state).unwrap_or(&table_state);
                    if replay_finished(state, caught_up_sent.get(&cp).copied(), &s.replay_done) {
                        let command = s.publisher.command(CommandKind::ReplayCaughtUp, state.epoch);
                        match s.publisher.publish(&cp, &command).await {
                            Ok(()) => {
                                tracing::info!(control_point = %cp, epoch = state.epoch, "replay finished on every partition: published replay-caught-up");
                                caught_up_sent.insert(cp, state.epoch);
                            }
                            Err(e) => tracing::warn!(control_point = %cp, error = %e, "cannot publish replay-caught-up"),
                        }
                    }
                }
            }
            message = consumer.recv() => {
                let m = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "control writer consumer");
                        continue;
                    }
                };
                let (partition, offset) = (m.partition(), m.offset());
                if to_restore.remove(&partition) {
                    restore(&consumer, &s).await?;
                    current.retain(|cp, _| command_partition(cp, s.command_partitions) != partition);
                }
                let decoded = m
                    .payload()
                    .map(ControlCommand::decode)
                    .and_then(|r| r.ok())
                    .and_then(command_from_record);
                let Some((cp, command)) = decoded else {
                    tracing::error!(partition, offset, "skipped an undecodable control command");
                    consumer.store_offset(&s.commands_topic, partition, offset)?;
                    continue;
                };
                let expected = command_partition(&cp, s.command_partitions);
                if partition != expected {
                    // Its order with the control point's other commands is
                    // unknown: applying it could undo a later decision.
                    tracing::error!(
                        control_point = %cp,
                        partition,
                        expected,
                        by = %command.by,
                        "ignored a command published to the wrong partition of the commands topic; publish with sfwd's partitioner (FNV-1a of the control point name)"
                    );
                    consumer.store_offset(&s.commands_topic, partition, offset)?;
                    continue;
                }
                let (state, generation) = current
                    .entry(cp.clone())
                    .or_insert_with(|| s.table.get_with_generation(&cp).unwrap_or_else(|| (ControlPoint::initial(&cp), -1)));
                if offset <= *generation {
                    // Applied before, by this writer or a previous owner.
                    consumer.store_offset(&s.commands_topic, partition, offset)?;
                    continue;
                }
                let mut next = state.clone();
                let outcome = next.apply(&command);
                crate::telemetry::CommandDecided::new(s.publisher.issuer(), &cp, &command, &outcome).emit();
                match &outcome {
                    Outcome::Applied { designated_trigger } => {
                        write_state(&s, &next, offset).await?;
                        tracing::info!(
                            control_point = %cp,
                            command = command.kind.name(),
                            by = %command.by,
                            mode = %next.mode,
                            replaying = next.replaying,
                            epoch = next.epoch,
                            trigger = designated_trigger.as_deref().unwrap_or(""),
                            "control point changed"
                        );
                        // In its own task: the next decision does not wait for
                        // the audit topic's acknowledgement.
                        let (audit, event) = (s.audit.clone(), change_event(s.publisher.issuer(), &next, &command, designated_trigger.as_deref()));
                        tokio::spawn(async move { audit.record(event).await });
                        *state = next;
                        *generation = offset;
                    }
                    Outcome::NoOp(why) => tracing::info!(control_point = %cp, command = command.kind.name(), by = %command.by, "{why}"),
                    Outcome::Refused(why) => tracing::debug!(control_point = %cp, by = %command.by, "{why}"),
                }
                consumer.store_offset(&s.commands_topic, partition, offset)?;
            }
        }
    }
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    Ok(())
}

/// The audit event of a change the writer applied: what the control point
/// became, by whose command.
fn change_event(
    instance: &str,
    now: &ControlPoint,
    command: &Command,
    designated_trigger: Option<&str>,
) -> crate::records::AuditEvent {
    let mut detail = format!("{} epoch {} ({})", now.mode, now.epoch, now.cause.as_str());
    if now.replaying {
        detail.push_str(", replaying");
    }
    if let Some(pace) = &now.pace {
        detail.push_str(&format!(", pace {pace}"));
    }
    crate::records::AuditEvent {
        control_point: Some(now.name.clone()),
        subject: designated_trigger.map(str::to_string),
        command_id: Some(command.id.clone()),
        detail: Some(detail),
        message: Some(format!("command {}", command.kind.name())),
        ..crate::audit::event(
            instance,
            "state-change",
            "control-writer",
            &command.by,
            "applied",
        )
    }
}

/// Waits until the table has read the control topic to its current end.
async fn restore(
    consumer: &StreamConsumer<RebalanceContext>,
    s: &WriterSettings,
) -> Result<(), WriterError> {
    let topic = s.control_topic.clone();
    let partitions =
        crate::kafka::partition_count(consumer, &topic, Duration::from_secs(10))?.unwrap_or(1);
    for p in 0..partitions {
        let (_, high) = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))
        })?;
        s.table.wait_position(&topic, p, high).await;
    }
    Ok(())
}

/// Writes `state` to the control topic; returns the record's offset.
async fn write_state(
    s: &WriterSettings,
    state: &ControlPoint,
    generation: i64,
) -> Result<i64, WriterError> {
    let payload = state_to_record(state, generation)
        .encode()
        .expect("a control state always encodes");
    let record = FutureRecord::to(&s.control_topic)
        .key(state.name.as_str())
        .partition(0)
        .payload(&payload);
    s.producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|delivery| delivery.offset)
        .map_err(|(source, _)| WriterError::Write {
            control_point: state.name.clone(),
            topic: s.control_topic.clone(),
            source,
        })
}

/// Should the owner of a control point's command partition publish
/// `replay-caught-up` for it? Yes when it is FORWARD and replaying, the
/// replay of its current epoch has finished on every source partition, and
/// no such command was published for that epoch yet.
fn replay_finished(state: &ControlPoint, published_for: Option<u64>, done: &ReplayDone) -> bool {
    state.mode == Mode::Forward
        && state.replaying
        && published_for != Some(state.epoch)
        && done(state)
}

/// Should the owner write a control point's state again? Yes when the last
/// record read for it carries a lower fencing token than the state readers
/// hold: a write from an owner that lost ownership came after the valid
/// one, and compaction would keep it as the key's only value.
pub fn needs_repair(accepted: Option<i64>, last_seen: Option<i64>) -> bool {
    matches!((accepted, last_seen), (Some(a), Some(l)) if l < a)
}
