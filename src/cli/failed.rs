//! `sfwd failed list | show ID | resubmit ID… | discard ID…`
//!
//! The failed-event manager on the command line, over [`sfwd::failed`].
//! `--output json` prints, for `list`, an array of entries and for `show`
//! one entry with `key`, `value` and `headers` (the fields are listed in
//! the docs of `sfwd::failed`); for `resubmit` and `discard`, an array of
//! `{request_id, result, message, resubmitted_to}` where `result` is one of
//! `resubmitted`, `discarded`, `already-resubmitted`, `lost-race`,
//! `already-discarded`, `not-discardable`, `interrupted`, `failed`.

use std::io::Write as _;

use serde_json::{json, Value};
use sfwd::failed::time::{format_age, format_utc, parse_instant};
use sfwd::failed::{
    base64, ActionReport, ActionResult, AttemptState, FailedEntry, FailedEvents, FailedView,
    Filter, Progress, ResubmitOptions, Status, StatusFilter,
};
use sfwd::records::{AuditEvent, FailureReason};
use sfwd::topology::Topology;

use super::operator::{
    audit, audit_event, count, ellipsize, run_async, unknown, Failure, Operator, Output, Table,
    Target, EXIT_FAILURE,
};

/// Options of `sfwd failed`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List failed events, one line per request id, oldest first (open
    /// ones unless --all or --status).
    List(ListArgs),
    /// Show one failed event: every field, the whole exception chain, the
    /// key, the value and the headers.
    Show(ShowArgs),
    /// Write the original requests back to their request topics, at most
    /// once per failure (unless --again).
    Resubmit(ResubmitArgs),
    /// Hide failed events from the default list; they stay in the
    /// failed-events topic.
    Discard(DiscardArgs),
}

/// Which events: every condition given must hold.
#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// Only events of this control point.
    #[arg(long, value_name = "NAME")]
    control_point: Option<String>,
    /// Only events of this service.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Only events of this operation (`op` or `Interface.op`).
    #[arg(long, value_name = "NAME")]
    operation: Option<String>,
    /// Only events that failed for this reason (store-trigger,
    /// invocation-failed, malformed, unknown-operation, oversized,
    /// missing-header, replay-failed, skipped).
    #[arg(long, value_name = "REASON")]
    reason: Option<FailureReason>,
    /// Only events that failed since then: a duration back from now
    /// (`1h`, `30m`, `2d`) or an RFC 3339 instant.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events that failed before then (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only events in this status (open, discarded, resubmitting,
    /// resubmitted) [default: open].
    #[arg(long, value_name = "STATUS", conflicts_with = "all")]
    status: Option<Status>,
    /// Events in every status, discarded and resubmitted ones included.
    #[arg(long)]
    all: bool,
}

impl FilterArgs {
    /// The filter, with every name checked against the topology.
    fn build(&self, topology: &Topology) -> Result<Filter, Failure> {
        let cps: Vec<&str> = topology
            .control_points()
            .map(|(_, sf)| sf.control_point.as_str())
            .collect();
        if let Some(cp) = &self.control_point {
            if !cps.contains(&cp.as_str()) {
                return Err(unknown("control point", cp, &cps));
            }
        }
        let services: Vec<&str> = topology.services.iter().map(|s| s.name.as_str()).collect();
        if let Some(s) = &self.service {
            if !services.contains(&s.as_str()) {
                return Err(unknown("service", s, &services));
            }
        }
        if let Some(op) = &self.operation {
            let mut names = Vec::new();
            for s in &topology.services {
                for (i, o) in s.operations() {
                    names.push(format!("{}.{}", i.name, o.name));
                    names.push(o.name.clone());
                }
            }
            if !names.contains(op) {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                return Err(unknown("operation", op, &refs));
            }
        }
        let now = sfwd::clock::now_ms();
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(|s| parse_instant(s, now))
                .transpose()
                .map_err(|e| Failure::usage(e.to_string()))
        };
        Ok(Filter {
            control_point: self.control_point.clone(),
            service: self.service.clone(),
            operation: self.operation.clone(),
            reason: self.reason,
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
            status: match (self.all, self.status) {
                (true, _) => StatusFilter::Any,
                (false, Some(s)) => StatusFilter::Is(s),
                (false, None) => StatusFilter::Open,
            },
        })
    }
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    filter: FilterArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The request id (first column of `sfwd failed list`).
    request_id: String,
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ResubmitArgs {
    /// Request ids. Without any, every event that passes the filter options
    /// (which must then name at least one of --control-point, --service,
    /// --operation, --reason, --since, --until).
    request_ids: Vec<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    operator: Operator,
    /// Resubmit even events that were resubmitted already: writes another
    /// copy of each request.
    #[arg(long)]
    again: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct DiscardArgs {
    /// Request ids. Without any, every event that passes the filter options
    /// (which must then name at least one of them).
    request_ids: Vec<String>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    operator: Operator,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// Runs `sfwd failed …`.
pub fn run(args: Args) -> std::process::ExitCode {
    run_async(async move {
        match args.command {
            Command::List(a) => list(a).await,
            Command::Show(a) => show(a).await,
            Command::Resubmit(a) => resubmit(a).await,
            Command::Discard(a) => discard(a).await,
        }
    })
}

fn undecodable_note(view: &FailedView) {
    if view.undecodable() > 0 {
        eprintln!(
            "note: {} left out: they could not be decoded (see the warnings above)",
            count(view.undecodable(), "record")
        );
    }
}

async fn list(args: ListArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let filter = args.filter.build(&topology)?;
    let view = FailedEvents::new(&topology)?.load().await?;
    let entries = view.list(&filter);
    match args.output {
        Output::Json => {
            let v: Vec<Value> = entries.iter().map(|e| e.to_json(false)).collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
        }
        Output::Table => {
            print!("{}", render_list(&entries, sfwd::clock::now_ms()));
            let hidden = view.len()
                - view
                    .list(&Filter {
                        status: StatusFilter::Any,
                        ..filter.clone()
                    })
                    .len();
            let others = view.len() - entries.len() - hidden;
            if entries.is_empty() {
                println!("no failed events match");
            }
            if others > 0 && filter.status == StatusFilter::Open {
                println!(
                    "({} discarded or resubmitted not shown: --all shows them)",
                    count(others, "more event")
                );
            }
        }
    }
    undecodable_note(&view);
    Ok(0)
}

/// The `list` table.
fn render_list(entries: &[&FailedEntry], now: i64) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&[
        "REQUEST ID",
        "FAILED AT",
        "STATUS",
        "REASON",
        "CONTROL POINT",
        "OPERATION",
        "ATTEMPTS",
        "ERROR",
    ]);
    for e in entries {
        let ev = &e.event;
        let operation = match &ev.service {
            Some(s) => format!("{s}.{}", e.operation_name()),
            None => "-".to_string(),
        };
        let mut status = e.status.to_string();
        if e.copies > 1 {
            status.push_str(&format!(" (x{})", e.copies));
        }
        table.row(vec![
            e.request_id.clone(),
            format!(
                "{} ({} ago)",
                format_utc(ev.failed_at),
                format_age(ev.failed_at, now)
            ),
            status,
            ev.reason.to_string(),
            ev.control_point.clone().unwrap_or_else(|| "-".into()),
            operation,
            ev.attempts.to_string(),
            ellipsize(&e.summary_line(), 80),
        ]);
    }
    table.render()
}

async fn show(args: ShowArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let view = FailedEvents::new(&topology)?.load().await?;
    let Some(entry) = view.get(&args.request_id) else {
        return Err(unknown_id(&view, &args.request_id));
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&entry.to_json(true)).expect("plain data")
        ),
        Output::Table => print!("{}", render_show(entry, sfwd::clock::now_ms())),
    }
    Ok(0)
}

fn unknown_id(view: &FailedView, id: &str) -> Failure {
    let ids: Vec<&str> = view
        .entries()
        .iter()
        .map(|e| e.request_id.as_str())
        .collect();
    let hint = match sfwd::topology::did_you_mean(id, ids.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "`sfwd failed list --all` lists the request ids".to_string(),
    };
    Failure::usage(format!("no failed event has request id `{id}`: {hint}"))
}

/// Bytes for a person: the text when it is UTF-8 without control
/// characters other than newlines and tabs, else hex and base64.
fn bytes_text(bytes: Option<&[u8]>) -> String {
    let Some(b) = bytes else {
        return "(none)".to_string();
    };
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            if s.contains('\n') {
                format!(
                    "({} bytes, UTF-8)\n    {}",
                    b.len(),
                    s.replace('\n', "\n    ")
                )
            } else {
                s.to_string()
            }
        }
        _ => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "({} bytes, not printable text) hex {hex}\n    base64 {}",
                b.len(),
                base64(b)
            )
        }
    }
}

/// The `show` text.
fn render_show(e: &FailedEntry, now: i64) -> String {
    let ev = &e.event;
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let pos =
        |p: &sfwd::records::SourcePosition| format!("{}/{}/{}", p.topic, p.partition, p.offset);
    let when = |ms: i64| format!("{} ({} ago)", format_utc(ms), format_age(ms, now));
    let mut rows: Vec<(&str, String)> = vec![
        ("request id", e.request_id.clone()),
        ("status", e.status.to_string()),
        ("reason", ev.reason.to_string()),
        ("detail", ev.detail.clone()),
        ("control point", opt(&ev.control_point)),
        ("service", opt(&ev.service)),
        ("operation", e.operation_name()),
        ("source", pos(&ev.source)),
        ("failed at", when(ev.failed_at)),
        ("attempts", ev.attempts.to_string()),
        ("instance", ev.instance.clone()),
        (
            "epoch",
            ev.epoch.map_or_else(|| "-".to_string(), |x| x.to_string()),
        ),
        ("rule", opt(&ev.rule)),
        ("record", pos(&e.failed_record)),
    ];
    if e.copies > 1 {
        rows.push((
            "copies",
            format!("{} (a crash repeated the write; shown once)", e.copies),
        ));
    }
    if e.failures > 1 {
        rows.push((
            "failures",
            format!(
                "{} (this is the latest; earlier ones were resubmitted)",
                e.failures
            ),
        ));
    }
    if let Some(a) = &e.resubmission {
        let what = match &a.state {
            AttemptState::Resubmitted { to } => format!("resubmitted to {}", pos(to)),
            AttemptState::Claimed => "claimed, not confirmed written".to_string(),
            AttemptState::Interrupted { detail } => format!("interrupted: {detail}"),
        };
        let forced = if a.forced { " (--again)" } else { "" };
        rows.push((
            "resubmission",
            format!("{what}, by {} at {}{forced}", a.by, when(a.at)),
        ));
    }
    if let Some(d) = &e.discard {
        if e.status == Status::Discarded {
            rows.push(("discarded", format!("by {} at {}", d.by, when(d.at))));
        }
    }
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<14} {v}\n"));
    }
    if ev.chain.is_empty() {
        out.push_str("exception chain: none (the request was refused before any invocation)\n");
    } else {
        out.push_str("exception chain (top-level first, original cause last):\n");
        for (i, el) in ev.chain.elements().iter().enumerate() {
            out.push_str(&format!("  {}. {el}\n", i + 1));
        }
    }
    out.push_str(&format!(
        "{:<14} {}\n",
        "key",
        bytes_text(ev.key.as_deref())
    ));
    out.push_str(&format!(
        "{:<14} {}\n",
        "value",
        bytes_text(ev.value.as_deref())
    ));
    out.push_str(&format!("headers ({}):\n", ev.headers.len()));
    for h in &ev.headers {
        out.push_str(&format!(
            "  {}: {}\n",
            h.key,
            bytes_text(h.value.as_deref())
        ));
    }
    out
}

/// The ids an action applies to: the ones given (every one must exist),
/// or those the filter passes.
fn select(
    view: &FailedView,
    ids: &[String],
    filter: &FilterArgs,
    topology: &Topology,
    verb: &str,
) -> Result<Vec<String>, Failure> {
    let filter_given = filter.control_point.is_some()
        || filter.service.is_some()
        || filter.operation.is_some()
        || filter.reason.is_some()
        || filter.since.is_some()
        || filter.until.is_some()
        || filter.status.is_some()
        || filter.all;
    if !ids.is_empty() {
        if filter_given {
            return Err(Failure::usage(format!(
                "give request ids or filter options to {verb}, not both"
            )));
        }
        if let Some(missing) = ids.iter().find(|id| view.get(id).is_none()) {
            return Err(unknown_id(view, missing));
        }
        return Ok(ids.to_vec());
    }
    let f = filter.build(topology)?;
    if !f.narrows() {
        return Err(Failure::usage(format!(
            "no request ids given: name the events to {verb}, or select them with --control-point, --service, --operation, --reason, --since or --until"
        )));
    }
    // In the order the requests were first consumed.
    let mut selected = view.list(&f);
    selected.sort_by(|a, b| {
        let s = (&a.event.source, &b.event.source);
        (&s.0.topic, s.0.partition, s.0.offset).cmp(&(&s.1.topic, s.1.partition, s.1.offset))
    });
    Ok(selected.iter().map(|e| e.request_id.clone()).collect())
}

fn progress_printer(verb: &'static str) -> impl FnMut(Progress) {
    move |p: Progress| {
        if p.total > 1 {
            eprintln!("{verb} {}/{}", p.done, p.total);
            let _ = std::io::stderr().flush();
        }
    }
}

fn print_reports(reports: &[ActionReport], output: Output) -> u8 {
    match output {
        Output::Json => {
            let v: Vec<Value> = reports
                .iter()
                .map(|r| {
                    json!({
                        "request_id": r.request_id,
                        "result": r.kind(),
                        "message": r.to_string(),
                        "resubmitted_to": match &r.result {
                            ActionResult::Resubmitted { to, .. } => json!({"topic": to.topic, "partition": to.partition, "offset": to.offset}),
                            _ => Value::Null,
                        },
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
        }
        Output::Table => {
            for r in reports {
                println!("{r}");
            }
            let mut kinds: Vec<(&str, usize)> = Vec::new();
            for r in reports {
                match kinds.iter_mut().find(|(k, _)| *k == r.kind()) {
                    Some((_, n)) => *n += 1,
                    None => kinds.push((r.kind(), 1)),
                }
            }
            if reports.len() > 1 {
                let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                println!("{}", summary.join(", "));
            }
        }
    }
    if reports.iter().all(ActionReport::is_ok) {
        0
    } else {
        EXIT_FAILURE
    }
}

async fn resubmit(args: ResubmitArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let events = FailedEvents::new(&topology)?;
    let view = events.load().await?;
    let ids = select(
        &view,
        &args.request_ids,
        &args.filter,
        &topology,
        "resubmit",
    )?;
    if ids.is_empty() {
        println!("no failed events match: nothing resubmitted");
        return Ok(0);
    }
    let options = ResubmitOptions {
        by: args.operator.issuer(),
        again: args.again,
    };
    let reports = events
        .resubmit(&ids, &options, &mut progress_printer("resubmitted"))
        .await?;
    audit_actions(&topology, &view, "resubmit", &options.by, &reports).await;
    Ok(print_reports(&reports, args.output))
}

async fn discard(args: DiscardArgs) -> Result<u8, Failure> {
    let topology = args.target.load()?;
    let events = FailedEvents::new(&topology)?;
    let view = events.load().await?;
    let ids = select(&view, &args.request_ids, &args.filter, &topology, "discard")?;
    if ids.is_empty() {
        println!("no failed events match: nothing discarded");
        return Ok(0);
    }
    let by = args.operator.issuer();
    let reports = events
        .discard(&ids, &by, &mut progress_printer("discarded"))
        .await?;
    audit_actions(&topology, &view, "discard", &by, &reports).await;
    Ok(print_reports(&reports, args.output))
}

/// Records each request's resubmit or discard in the audit trail, under
/// the control point of its failed event.
async fn audit_actions(
    topology: &Topology,
    view: &FailedView,
    action: &str,
    by: &str,
    reports: &[ActionReport],
) {
    let events = reports
        .iter()
        .map(|r| {
            let cp = view
                .get(&r.request_id)
                .and_then(|e| e.event.control_point.clone());
            AuditEvent {
                subject: Some(r.request_id.clone()),
                message: Some(r.to_string()),
                ..audit_event(action, cp.as_deref(), by, r.kind())
            }
        })
        .collect();
    audit(topology, events).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfwd::failed::{ActionAt, FailedView};
    use sfwd::records::{FailedAction, FailedActionKind, FailedEvent, Header, SourcePosition};
    use sfwd::rules::{ChainElement, ExceptionChain};

    const NOW: i64 = 1_740_821_400_000;

    fn pos(t: &str, p: i32, o: i64) -> SourcePosition {
        SourcePosition {
            topic: t.into(),
            partition: p,
            offset: o,
        }
    }

    fn event(id: &str, offset: i64) -> FailedEvent {
        FailedEvent {
            request_id: id.into(),
            reason: FailureReason::StoreTrigger,
            detail: "this request's failure activated the store of `Eis`".into(),
            control_point: Some("Eis".into()),
            service: Some("eis".into()),
            interface: Some("Query".into()),
            operation: Some("get".into()),
            source: pos("hr.get", 1, offset),
            key: Some(b"emp-7".to_vec()),
            value: Some(vec![0xc3, 0x01, 0x00]),
            headers: vec![
                Header::new("trace", "t-1"),
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
            chain: ExceptionChain::new(vec![
                ChainElement::new(
                    "ServiceUnavailableException",
                    "POST http://eis/x: 503 Service Unavailable",
                ),
                ChainElement::new("HttpStatusException", "503"),
            ]),
            rule: Some("ServiceUnavailableException chain=original-first".into()),
            instance: "a".into(),
            failed_at: NOW - 120_000,
            attempts: 1,
            epoch: Some(0),
        }
    }

    fn view() -> FailedView {
        let discard = FailedAction {
            request_id: "hr.get/1/13".into(),
            action: FailedActionKind::Discarded,
            failure: pos("hr.get", 1, 13),
            claim: None,
            claim_offset: None,
            forced: false,
            by: "operator:ana".into(),
            at: NOW - 60_000,
            resubmitted_to: None,
            detail: None,
        };
        FailedView::from_records(
            vec![
                (pos("hr.failed", 0, 0), event("hr.get/1/12", 12)),
                (pos("hr.failed", 0, 1), event("hr.get/1/13", 13)),
                (pos("hr.failed", 0, 2), event("hr.get/1/12", 12)),
            ],
            vec![ActionAt {
                partition: 0,
                offset: 0,
                action: discard,
            }],
        )
    }

    #[test]
    fn the_list_table_has_one_line_per_request() {
        let v = view();
        let all: Vec<&FailedEntry> = v.entries().iter().collect();
        let text = render_list(&all, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "REQUEST ID   FAILED AT                      STATUS     REASON         CONTROL POINT  OPERATION      ATTEMPTS  ERROR"
        );
        assert_eq!(
            lines[1],
            "hr.get/1/12  2025-03-01T09:28:00Z (2m ago)  open (x2)  store-trigger  Eis            eis.Query.get  1         ServiceUnavailableException: POST http://eis/x: 503 Service Unavailable"
        );
        assert!(lines[2].starts_with("hr.get/1/13  2025-03-01T09:28:00Z (2m ago)  discarded"));
        assert_eq!(render_list(&[], NOW), "");
    }

    #[test]
    fn show_prints_every_field_the_chain_and_the_raw_request() {
        let v = view();
        let text = render_show(v.get("hr.get/1/12").unwrap(), NOW);
        for want in [
            "request id     hr.get/1/12\n",
            "status         open\n",
            "reason         store-trigger\n",
            "operation      Query.get\n",
            "source         hr.get/1/12\n",
            "failed at      2025-03-01T09:28:00Z (2m ago)\n",
            "rule           ServiceUnavailableException chain=original-first\n",
            "record         hr.failed/0/0\n",
            "copies         2 (a crash repeated the write; shown once)\n",
            "exception chain (top-level first, original cause last):\n  1. ServiceUnavailableException: POST http://eis/x: 503 Service Unavailable\n  2. HttpStatusException: 503\n",
            "key            emp-7\n",
            "value          (3 bytes, not printable text) hex c30100\n    base64 wwEA\n",
            "headers (2):\n  trace: t-1\n  empty: (none)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let text = render_show(v.get("hr.get/1/13").unwrap(), NOW);
        assert!(
            text.contains("discarded      by operator:ana at 2025-03-01T09:29:00Z (1m ago)\n"),
            "{text}"
        );
    }

    #[test]
    fn bytes_are_shown_as_text_when_they_are() {
        assert_eq!(bytes_text(None), "(none)");
        assert_eq!(bytes_text(Some(b"{\"n\":1}")), "{\"n\":1}");
        assert_eq!(bytes_text(Some(b"a\nb")), "(3 bytes, UTF-8)\n    a\n    b");
        assert!(bytes_text(Some(b"a\x07")).contains("hex 6107"));
    }

    fn topology() -> Topology {
        sfwd::topology::check_str(
            "application: hr\nkafka: { bootstrap: k:9092 }\nservices:\n  eis:\n    binding: { kafka: { topic: out } }\n    store_and_forward: { control_point: Eis }\n    interfaces: { Query: { operations: { get: { topic: hr.get } } } }\n",
            std::path::Path::new("t.yaml"),
        )
        .topology
        .expect("valid")
    }

    fn filter_args() -> FilterArgs {
        FilterArgs {
            control_point: None,
            service: None,
            operation: None,
            reason: None,
            since: None,
            until: None,
            status: None,
            all: false,
        }
    }

    #[test]
    fn filter_options_are_checked_against_the_topology() {
        let t = topology();
        let f = FilterArgs {
            control_point: Some("Eiss".into()),
            ..filter_args()
        };
        let e = f.build(&t).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("did you mean `Eis`?"), "{}", e.message);
        let f = FilterArgs {
            operation: Some("Query.gte".into()),
            ..filter_args()
        };
        assert!(f
            .build(&t)
            .unwrap_err()
            .message
            .contains("did you mean `Query.get`?"));
        let f = FilterArgs {
            since: Some("last week".into()),
            ..filter_args()
        };
        assert!(f.build(&t).unwrap_err().message.contains("RFC 3339"));
        let f = FilterArgs {
            control_point: Some("Eis".into()),
            operation: Some("get".into()),
            since: Some("1h".into()),
            all: true,
            ..filter_args()
        };
        let built = f.build(&t).unwrap();
        assert_eq!(built.status, StatusFilter::Any);
        assert!(built.since_ms.unwrap() < sfwd::clock::now_ms());
    }

    #[test]
    fn actions_take_ids_or_a_narrowing_filter() {
        let (t, v) = (topology(), view());
        let ids = select(&v, &["hr.get/1/12".into()], &filter_args(), &t, "resubmit").unwrap();
        assert_eq!(ids, ["hr.get/1/12"]);
        let e = select(&v, &["hr.get/1/21".into()], &filter_args(), &t, "resubmit").unwrap_err();
        assert!(
            e.message.contains("did you mean `hr.get/1/12`?"),
            "{}",
            e.message
        );
        let e = select(&v, &[], &filter_args(), &t, "resubmit").unwrap_err();
        assert!(e.message.contains("no request ids given"));
        let by_cp = FilterArgs {
            control_point: Some("Eis".into()),
            ..filter_args()
        };
        assert_eq!(
            select(&v, &[], &by_cp, &t, "resubmit").unwrap(),
            ["hr.get/1/12"]
        );
        assert!(select(&v, &["x".into()], &by_cp, &t, "resubmit").is_err());
    }
}
