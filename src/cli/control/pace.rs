//! `sfwd control pace CP RATE`: changes the pace of a replay through the
//! commands topic, so that every instance replaying the control point
//! follows it.

use std::time::Instant;

use rdkafka::producer::FutureProducer;
use serde_json::json;
use sfwd::control::{CommandKind, CommandPublisher, Outcome, Pace};
use sfwd::kafka;
use sfwd::records::AuditEvent;

use super::{
    as_if, audit, audit_event, ensure_control_topics, kafka_failure, load_control, probe,
    service_of, Failure, Output, PaceArgs, METADATA_TIMEOUT,
};

/// How a pace reads for people: the override, or the topology's cap.
fn describe(over: Option<Pace>, topology: Option<sfwd::control::Rate>) -> String {
    match (over, topology) {
        (Some(p), _) => p.to_string(),
        (None, Some(r)) => format!("{r} (the topology's)"),
        (None, None) => "unlimited (the topology's)".to_string(),
    }
}

pub(super) async fn pace_replay(args: PaceArgs) -> Result<u8, Failure> {
    let wanted = args.rate.0;
    let args = args.switch;
    let topology = args.target.load()?;
    let cp = args.control_point.as_str();
    // An unknown control point is refused before anything is read.
    service_of(&topology, cp)?;
    let configured = topology
        .control_point(cp)
        .and_then(|(_, sf)| sf.replay.rate);
    let probe = probe(&topology)?;
    let control = load_control(&topology, &probe).await?;
    let before = control.table.get(cp);
    let issuer = args.operator.issuer();
    let kind = CommandKind::Pace(wanted);
    let (result, message, command_id) = match before.clone().apply(&as_if(&kind, &before, &issuer)) {
        Outcome::Refused(_) => {
            return Err(Failure::usage(format!(
                "`{cp}` is FORWARD with nothing to replay: a pace applies to a replay; set it while `{cp}` is storing to pace the next one, or use `sfwd control forward {cp} --rate …`"
            )))
        }
        Outcome::NoOp(why) => ("no-op", format!("`{cp}`: {why}"), None),
        Outcome::Applied { .. } => {
            if control.fresh {
                ensure_control_topics(&topology).await?;
            }
            let commands = topology.commands_topic();
            let partitions = kafka::partition_count(&probe, &commands, METADATA_TIMEOUT)
                .map_err(|e| {
                    kafka_failure(&topology, &format!("reading the metadata of {commands}"), e)
                })?
                .unwrap_or(topology.kafka.partitions as i32);
            let producer: FutureProducer =
                kafka::producer_config(&kafka::client_config(&topology.kafka))
                    .create()
                    .map_err(|e| Failure::failed(format!("creating a Kafka producer: {e}")))?;
            let publisher = CommandPublisher::new(producer, &commands, partitions, &issuer);
            let command = publisher.command(kind, before.epoch);
            let mut changes = control.table.subscribe();
            publisher
                .publish(cp, &command)
                .await
                .map_err(|e| kafka_failure(&topology, &format!("publishing to {commands}"), e))?;
            let deadline = Instant::now() + args.wait;
            let applied = loop {
                if control.table.get(cp).command_id.as_deref() == Some(command.id.as_str()) {
                    break true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || control.fresh {
                    break false;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break false },
                    _ = tokio::time::sleep(left) => {}
                }
            };
            if applied {
                (
                    "applied",
                    format!(
                        "`{cp}` replays at {} (was {})",
                        describe(wanted, configured),
                        describe(before.pace, configured)
                    ),
                    Some(command.id),
                )
            } else {
                (
                    "published",
                    format!(
                        "published `pace` for `{cp}` (command {}); it will be applied when an instance runs",
                        command.id
                    ),
                    Some(command.id),
                )
            }
        }
    };
    let event = AuditEvent {
        command_id: command_id.clone(),
        detail: Some(format!("rate {}", describe(wanted, configured))),
        message: Some(message.clone()),
        ..audit_event("pace", Some(cp), &issuer, result)
    };
    audit(&topology, vec![event]).await;
    match args.output {
        Output::Table => println!("{message}"),
        Output::Json => {
            let after = control.table.get(cp);
            let v = json!({
                "control_point": cp,
                "command": "pace",
                "result": result,
                "message": message,
                "command_id": command_id,
                "pace": after.pace.map(|p| p.to_string()),
                "effective_rate_per_second": Pace::effective(after.pace, configured).map(|r| r.as_per_second()),
            });
            println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
        }
    }
    Ok(0)
}
