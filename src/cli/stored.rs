//! `sfwd stored list CP | show ID | skip ID…`
//!
//! The stored backlog on the command line, over [`sfwd::stored`]. Each
//! command reads the topics from their beginning to their current end and
//! needs no running instance. `--output json` prints, for `list`, an array
//! of entries and for `show` one entry with `key_bytes`, `value_bytes`,
//! `headers`, `decoded_value` (the value decoded with the operation's
//! input schema, or null) and `decode_error` (the fields are listed in the
//! docs of `sfwd::stored`); for `skip`, an array of `{request_id, result,
//! message, control_point, source}` where `result` is one of `skipped`,
//! `already-skipped`, `not-found`, `already-replayed`, `failed`.

use serde_json::Value;
use sfwd::failed::time::{format_age, format_utc, parse_instant};
use sfwd::stored::{
    decode_value, detail_json, DecodedValue, RecordAt, SkipReport, StoredBacklog, StoredEntry,
    StoredError, StoredFilter,
};
use sfwd::topology::Topology;

use super::operator::{
    audit, audit_event, count, run_async, unknown, Failure, Operator, Output, Table, Target,
};
use sfwd::records::AuditEvent;

/// Options of `sfwd stored`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the stored requests of a control point the replay has not
    /// reached yet (all of them with --all), in stored order.
    List(ListArgs),
    /// Show one stored request: every field, the headers, and the value
    /// decoded with its operation's input schema (hex without one).
    Show(ShowArgs),
    /// Take stored requests out of the backlog: they are never replayed and
    /// go to the failed events with reason `skipped`, once.
    Skip(SkipArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The control point.
    control_point: String,
    #[command(flatten)]
    target: Target,
    /// Only requests with this Kafka key (as the list shows it).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Only requests stored since then: a duration back from now (`1h`,
    /// `30m`, `2d`) or an RFC 3339 instant.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only requests stored before then (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only requests consumed from this partition of their request topic.
    #[arg(long, value_name = "P")]
    partition: Option<i32>,
    /// Show at most this many requests.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Requests the replay has passed too.
    #[arg(long)]
    all: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The request id (first column of `sfwd stored list`).
    request_id: String,
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct SkipArgs {
    /// Request ids of stored requests.
    #[arg(required = true)]
    request_ids: Vec<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    operator: Operator,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// Runs `sfwd stored …`.
pub fn run(args: Args) -> std::process::ExitCode {
    run_async(async move {
        match args.command {
            Command::List(a) => list(a).await,
            Command::Show(a) => show(a).await,
            Command::Skip(a) => skip(a).await,
        }
    })
}

impl From<StoredError> for Failure {
    fn from(e: StoredError) -> Self {
        Failure::failed(e.to_string())
    }
}

fn check_control_point(topology: &Topology, cp: &str) -> Result<(), Failure> {
    let cps: Vec<&str> = topology
        .control_points()
        .map(|(_, sf)| sf.control_point.as_str())
        .collect();
    if cps.contains(&cp) {
        Ok(())
    } else {
        Err(unknown("control point", cp, &cps))
    }
}

impl ListArgs {
    fn filter(&self) -> Result<StoredFilter, Failure> {
        let now = sfwd::clock::now_ms();
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(|s| parse_instant(s, now))
                .transpose()
                .map_err(|e| Failure::usage(e.to_string()))
        };
        Ok(StoredFilter {
            key: self.key.clone(),
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
            partition: self.partition,
            all: self.all,
            after: None::<RecordAt>,
        })
    }
}

fn undecodable_note(n: usize) {
    if n > 0 {
        eprintln!(
            "note: {} left out: they could not be decoded (see the warnings above)",
            count(n, "stored record")
        );
    }
}

async fn list(args: ListArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    check_control_point(&topology, &args.control_point)?;
    let filter = args.filter()?;
    let backlog = StoredBacklog::new(&topology)?
        .load(&[&args.control_point])
        .await?;
    let view = backlog
        .view(&args.control_point)
        .expect("the control point was read");
    let matching = view.list(&filter);
    let shown = &matching[..args.limit.unwrap_or(usize::MAX).min(matching.len())];
    match args.output {
        Output::Json => {
            let v: Vec<Value> = shown
                .iter()
                .map(|e| e.to_json(view.topic(), false))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
        }
        Output::Table => {
            print!("{}", render_list(shown, sfwd::clock::now_ms()));
            if matching.is_empty() {
                println!("no stored requests match");
            }
            if shown.len() < matching.len() {
                println!(
                    "({} of {} shown: --limit)",
                    shown.len(),
                    count(matching.len(), "stored request")
                );
            }
            let replayed = view
                .list(&StoredFilter {
                    all: true,
                    ..filter.clone()
                })
                .len()
                - matching.len();
            if replayed > 0 && !filter.all {
                println!(
                    "({} already replayed not shown: --all shows them)",
                    count(replayed, "more request")
                );
            }
        }
    }
    undecodable_note(view.undecodable());
    Ok(0)
}

/// The `list` table.
fn render_list(entries: &[&StoredEntry], now: i64) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&[
        "REQUEST ID",
        "STATUS",
        "KEY",
        "OPERATION",
        "STORED AT",
        "SIZE",
        "EPOCH",
    ]);
    for e in entries {
        let r = &e.request;
        table.row(vec![
            e.request_id().to_string(),
            e.status().to_string(),
            super::operator::ellipsize(&e.key_text(), 40),
            e.operation(),
            format!(
                "{} ({} ago)",
                format_utc(r.stored_at),
                format_age(r.stored_at, now)
            ),
            e.size().to_string(),
            r.epoch.to_string(),
        ]);
    }
    table.render()
}

async fn show(args: ShowArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let backlog = StoredBacklog::new(&topology)?.load(&[]).await?;
    let Some((entry, view, with_id)) = backlog.find(&args.request_id) else {
        let hint = match backlog.closest_id(&args.request_id) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "`sfwd stored list CP --all` lists the request ids".to_string(),
        };
        return Err(Failure::usage(format!(
            "no stored request has request id `{}`: {hint}",
            args.request_id
        )));
    };
    let topic = view.topic();
    let decoded = decode_value(&topology, &entry.request);
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&detail_json(&topology, entry, topic))
                .expect("plain data")
        ),
        Output::Table => {
            print!(
                "{}",
                render_show(entry, topic, &decoded, sfwd::clock::now_ms())
            );
            if with_id > 1 {
                println!(
                    "({} with this request id in the stored topics: a resubmitted copy was stored again)",
                    count(with_id, "stored request")
                );
            }
        }
    }
    Ok(0)
}

/// Bytes as hex, and as text too when they are printable UTF-8.
fn bytes_text(bytes: Option<&[u8]>) -> String {
    let Some(b) = bytes else {
        return "(none)".to_string();
    };
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    match std::str::from_utf8(b) {
        Ok(s) if !s.is_empty() && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            format!("({} bytes) hex {hex}\n    text {s}", b.len())
        }
        _ => format!("({} bytes) hex {hex}", b.len()),
    }
}

/// The `show` text.
fn render_show(e: &StoredEntry, topic: &str, decoded: &DecodedValue, now: i64) -> String {
    let r = &e.request;
    let when = |ms: i64| format!("{} ({} ago)", format_utc(ms), format_age(ms, now));
    let mut rows: Vec<(&str, String)> = vec![
        ("request id", r.request_id.clone()),
        ("status", e.status().to_string()),
        ("control point", r.control_point.clone()),
        ("service", r.service.clone()),
        ("operation", e.operation()),
        (
            "source",
            format!(
                "{}/{}/{}",
                r.source.topic, r.source.partition, r.source.offset
            ),
        ),
        (
            "stored record",
            format!("{topic}/{}/{}", e.record.partition, e.record.offset),
        ),
        ("stored at", when(r.stored_at)),
        ("epoch", r.epoch.to_string()),
        (
            "trigger",
            r.trigger
                .as_ref()
                .map_or_else(|| "-".to_string(), |t| t.request_id.clone()),
        ),
        ("instance", r.instance.clone()),
        ("size", format!("{} bytes", e.size())),
    ];
    if e.copies > 1 {
        rows.push((
            "copies",
            format!("{} (a crash repeated the write; shown once)", e.copies),
        ));
    }
    if let Some(s) = &e.skip {
        rows.push((
            "skipped",
            format!("by {} at {}", s.skipped_by, when(s.skipped_at)),
        ));
    }
    rows.push(("key", bytes_text(r.key.as_deref())));
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<14} {v}\n"));
    }
    out.push_str(&format!("headers ({}):\n", r.headers.len()));
    for h in &r.headers {
        out.push_str(&format!(
            "  {}: {}\n",
            h.key,
            bytes_text(h.value.as_deref())
        ));
    }
    match decoded {
        DecodedValue::Avro(v) => {
            let json = serde_json::to_string_pretty(v).expect("plain data");
            out.push_str("value (decoded with the operation's input schema):\n  ");
            out.push_str(&json.replace('\n', "\n  "));
            out.push('\n');
        }
        DecodedValue::Raw => {
            out.push_str(&format!(
                "{:<14} {}\n",
                "value",
                bytes_text(r.value.as_deref())
            ));
        }
        DecodedValue::Undecodable(why) => {
            out.push_str(&format!(
                "{:<14} {}\n{:<14} not decoded with the input schema: {why}\n",
                "value",
                bytes_text(r.value.as_deref()),
                ""
            ));
        }
    }
    out
}

async fn skip(args: SkipArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let backlog = StoredBacklog::new(&topology)?;
    let by = args.operator.issuer();
    let reports = backlog.skip(&args.request_ids, &by).await?;
    let events = reports
        .iter()
        .map(|r| AuditEvent {
            subject: Some(r.request_id.clone()),
            message: Some(r.to_string()),
            ..audit_event("skip", r.control_point.as_deref(), &by, r.kind())
        })
        .collect();
    audit(&topology, events).await;
    match args.output {
        Output::Json => {
            let v: Vec<Value> = reports.iter().map(SkipReport::to_json).collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
        }
        Output::Table => {
            for r in &reports {
                println!("{r}");
            }
        }
    }
    let refused = reports.iter().any(|r| {
        matches!(
            r.result,
            sfwd::stored::SkipResult::NotFound | sfwd::stored::SkipResult::AlreadyReplayed { .. }
        )
    });
    Ok(if reports.iter().all(SkipReport::is_ok) {
        0
    } else if refused {
        super::operator::EXIT_USAGE
    } else {
        super::operator::EXIT_FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sfwd::records::{Header, SourcePosition, StoredRequest};
    use sfwd::stored::StoredView;

    const NOW: i64 = 1_740_821_400_000;

    fn view() -> StoredView {
        let request = |offset: i64| StoredRequest {
            request_id: format!("hr.get/1/{offset}"),
            control_point: "Eis".into(),
            service: "eis".into(),
            interface: "Query".into(),
            operation: "get".into(),
            source: SourcePosition {
                topic: "hr.get".into(),
                partition: 1,
                offset,
            },
            key: Some(format!("emp-{offset}").into_bytes()),
            value: Some(b"{\"n\":1}".to_vec()),
            headers: vec![Header::new("trace", "t-1")],
            stored_at: NOW - 120_000,
            epoch: 3,
            trigger: None,
            instance: "a".into(),
        };
        StoredView::from_records(
            "Eis",
            "hr.stored.Eis",
            vec![
                (
                    RecordAt {
                        partition: 1,
                        offset: 0,
                    },
                    request(12),
                ),
                (
                    RecordAt {
                        partition: 1,
                        offset: 1,
                    },
                    request(13),
                ),
            ],
            &Default::default(),
            &[],
        )
    }

    #[test]
    fn the_list_table_has_one_line_per_stored_request() {
        let v = view();
        let all: Vec<&StoredEntry> = v.entries().iter().collect();
        let text = render_list(&all, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "REQUEST ID   STATUS  KEY     OPERATION  STORED AT                      SIZE  EPOCH",
                "hr.get/1/12  stored  emp-12  Query.get  2025-03-01T09:28:00Z (2m ago)  7     3",
                "hr.get/1/13  stored  emp-13  Query.get  2025-03-01T09:28:00Z (2m ago)  7     3",
            ]
        );
        assert_eq!(render_list(&[], NOW), "");
    }

    #[test]
    fn show_prints_the_fields_the_headers_and_the_value() {
        let v = view();
        let e = &v.entries()[0];
        let raw = render_show(e, v.topic(), &DecodedValue::Raw, NOW);
        for want in [
            "request id     hr.get/1/12\n",
            "status         stored\n",
            "operation      Query.get\n",
            "stored record  hr.stored.Eis/1/0\n",
            "epoch          3\n",
            "key            (6 bytes) hex 656d702d3132\n    text emp-12\n",
            "headers (1):\n  trace: (3 bytes) hex 742d31\n    text t-1\n",
            "value          (7 bytes) hex 7b226e223a317d\n    text {\"n\":1}\n",
        ] {
            assert!(raw.contains(want), "missing {want:?} in:\n{raw}");
        }
        let decoded = render_show(e, v.topic(), &DecodedValue::Avro(json!({"id": "e-7"})), NOW);
        assert!(
            decoded.contains(
                "value (decoded with the operation's input schema):\n  {\n    \"id\": \"e-7\"\n  }\n"
            ),
            "{decoded}"
        );
    }

    #[test]
    fn bytes_show_as_hex_and_as_text_when_printable() {
        assert_eq!(bytes_text(None), "(none)");
        assert_eq!(bytes_text(Some(b"\x00\xff")), "(2 bytes) hex 00ff");
        assert_eq!(bytes_text(Some(b"ab")), "(2 bytes) hex 6162\n    text ab");
    }
}
