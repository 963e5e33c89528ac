//! `sfwd control history [CP]`: the audit trail of a control point (or of
//! all), oldest first: operators' actions from the API and the command
//! line, and every change of state the control writer applied.

use serde_json::Value;
use sfwd::failed::time::format_utc;
use sfwd::kafka;
use sfwd::records::AuditEvent;

use super::{service_of, Failure, Output, Table, Target};

/// Options of `sfwd control history`.
#[derive(Debug, clap::Args)]
pub(super) struct HistoryArgs {
    /// The control point (as named in the topology); every one when absent.
    control_point: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Show the last N events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

pub(super) async fn history(args: HistoryArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let cp = args.control_point.as_deref();
    if let Some(cp) = cp {
        service_of(&topology, cp)?;
    }
    let config = kafka::reader_config(
        &kafka::client_config(&topology.kafka),
        "sfwd-cli",
        "history",
    );
    let topic = topology.audit_topic();
    let (events, undecodable) =
        sfwd::audit::history(config, &topic, &topology.kafka.bootstrap, cp, args.limit)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
    match args.output {
        Output::Json => {
            let v: Vec<Value> = events.iter().map(sfwd::audit::to_json).collect();
            let doc = serde_json::json!({ "events": v, "undecodable": undecodable });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("plain data")
            );
        }
        Output::Table => {
            if events.is_empty() {
                println!(
                    "no audit events{} in {}",
                    cp.map(|c| format!(" for `{c}`")).unwrap_or_default(),
                    topology.audit_topic()
                );
            } else {
                print!("{}", table(&events, cp.is_none()).render());
            }
            if undecodable > 0 {
                eprintln!(
                    "warning: {undecodable} records of {} could not be read",
                    topology.audit_topic()
                );
            }
        }
    }
    Ok(0)
}

fn table(events: &[AuditEvent], with_control_point: bool) -> Table {
    let mut header = vec!["AT"];
    if with_control_point {
        header.push("CONTROL POINT");
    }
    header.extend(["ACTION", "BY", "VIA", "FROM", "RESULT", "DETAIL"]);
    let mut t = Table::new(&header);
    for e in events {
        let mut row = vec![format_utc(e.at)];
        if with_control_point {
            row.push(e.control_point.clone().unwrap_or_else(|| "-".into()));
        }
        let detail = [e.subject.as_deref(), e.detail.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
        row.extend([
            e.action.clone(),
            e.actor.clone(),
            e.via.clone(),
            e.origin.clone().unwrap_or_else(|| e.instance.clone()),
            e.result.clone(),
            if detail.is_empty() {
                "-".into()
            } else {
                detail
            },
        ]);
        t.row(row);
    }
    t
}
