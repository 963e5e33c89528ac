//! What the operator commands (`sfwd control`, `sfwd failed`, `sfwd stored`)
//! share: the topology and cluster they act on, output formats, tables,
//! exit codes.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use rdkafka::producer::FutureProducer;
use sfwd::audit::AuditLog;
use sfwd::kafka::{self, TopicSpec};
use sfwd::records::AuditEvent;
use sfwd::topology::{self, Topology};
use tracing_subscriber::EnvFilter;

/// Appends an operator's actions from the command line to the audit trail
/// (`via` `cli`, from `user@host`), with one producer for all of them; the
/// actions have happened, so a failure to write is a warning on standard
/// error, not an error.
pub async fn audit(topology: &Topology, events: Vec<AuditEvent>) {
    if events.is_empty() {
        return;
    }
    let origin = sfwd::audit::user_at_host();
    let instance = format!("sfwd-cli:{origin}");
    let written = async {
        let k = &topology.kafka;
        let spec = TopicSpec {
            name: topology.audit_topic(),
            partitions: 1,
            replication_factor: i32::from(k.replication_factor),
            compacted: false,
        };
        let config = kafka::client_config(k);
        kafka::ensure_topics(&config, &[spec])
            .await
            .map_err(|e| e.to_string())?;
        let producer: FutureProducer = kafka::producer_config(&config)
            .create()
            .map_err(|e| e.to_string())?;
        let log = AuditLog::new(producer, topology, &instance, config.clone());
        for event in events {
            let event = AuditEvent {
                via: "cli".into(),
                origin: Some(origin.clone()),
                instance: instance.clone(),
                ..event
            };
            log.write(&event).await.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    if let Err(e) = written.await {
        eprintln!(
            "warning: the action is done, but it could not be written to {}: {e}",
            topology.audit_topic()
        );
    }
}

/// An audit event of `action` on `control_point` by `actor` with `result`.
pub fn audit_event(
    action: &str,
    control_point: Option<&str>,
    actor: &str,
    result: &str,
) -> AuditEvent {
    AuditEvent {
        control_point: control_point.map(str::to_string),
        ..sfwd::audit::event("", action, "cli", actor, result)
    }
}

/// Exit code when the cluster could not be reached or an action failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when what the operator typed is wrong: unknown control point
/// or request id, a bad option value, a topology file with errors.
pub const EXIT_USAGE: u8 = 2;

/// Which application, on which cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The topology file of the application.
    #[arg(long, short)]
    pub topology: PathBuf,
    /// Kafka bootstrap servers, overriding the topology's `kafka.bootstrap`.
    #[arg(long, env = "SFWD_BOOTSTRAP")]
    pub bootstrap: Option<String>,
}

impl Target {
    /// Loads the topology, with `--bootstrap` applied. Warnings are not
    /// shown: `sfwd validate` shows them.
    pub fn load(&self) -> Result<Topology, Failure> {
        match topology::load(&self.topology) {
            Ok((mut t, _warnings)) => {
                if let Some(b) = &self.bootstrap {
                    t.kafka.bootstrap = b.clone();
                }
                Ok(t)
            }
            Err(diagnostics) => {
                for d in diagnostics
                    .iter()
                    .filter(|d| d.severity == topology::Severity::Error)
                {
                    eprintln!("{d}\n");
                }
                Err(Failure::usage(format!(
                    "{} has errors (above); fix them (`sfwd validate` lists them too)",
                    self.topology.display()
                )))
            }
        }
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// For people: aligned columns.
    #[default]
    Table,
    /// For scripts: one JSON document on standard output.
    Json,
}

/// Who an operator command is from: `--operator`, else `$USER`.
#[derive(Debug, Clone, clap::Args)]
pub struct Operator {
    /// Your name, recorded with the action as `operator:<name>` [default: $USER].
    #[arg(long = "operator", env = "SFWD_OPERATOR", value_name = "NAME")]
    pub name: Option<String>,
}

impl Operator {
    /// `operator:<name>`.
    pub fn issuer(&self) -> String {
        let name = self
            .name
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        format!("operator:{}", name.trim())
    }
}

/// Why a command stopped, and with which exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What to print after `error: `.
    pub message: String,
}

impl Failure {
    /// A problem with what the operator typed (exit code 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A problem with the cluster or an action (exit code 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sfwd::failed::FailedError> for Failure {
    fn from(e: sfwd::failed::FailedError) -> Self {
        Failure::failed(e.to_string())
    }
}

/// Logs go to standard error, warnings and errors only unless `RUST_LOG`
/// says otherwise: standard output is the command's result. The Kafka
/// client's own logs are off (a command's error says what failed);
/// `RUST_LOG=warn,librdkafka=warn,rdkafka=warn` shows them.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,librdkafka=off,rdkafka=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs an operator command on a tokio runtime and turns its result into
/// an exit code.
pub fn run_async<F>(f: F) -> ExitCode
where
    F: std::future::Future<Output = Result<u8, Failure>>,
{
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(f) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// `unknown <what> `name``, with a did-you-mean or the list of names.
pub fn unknown(what: &str, name: &str, known: &[&str]) -> Failure {
    let hint = match topology::did_you_mean(name, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if known.is_empty() => format!("the topology declares no {what}"),
        None => format!("known: {}", known.join(", ")),
    };
    Failure::usage(format!("unknown {what} `{name}`: {hint}"))
}

/// A table of text: a header row and aligned columns, two spaces apart.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rows added so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The table as lines; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `N thing` or `N things`.
pub fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("{n} {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_one_unpadded() {
        let mut t = Table::new(&["ID", "STATE", "NOTE"]);
        t.row(vec!["a".into(), "STORE".into(), "x".into()]);
        t.row(vec!["long-id".into(), "FORWARD".into(), String::new()]);
        assert_eq!(
            t.render(),
            "ID       STATE    NOTE\n\
             a        STORE    x\n\
             long-id  FORWARD\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn tables_count_characters_not_bytes() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é…".into(), "1".into()]);
        assert_eq!(t.render(), "A   B\né…  1\n");
    }

    #[test]
    fn ellipsize_and_count() {
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abc", 4), "abc");
        assert_eq!(count(1, "event"), "1 event");
        assert_eq!(count(0, "event"), "0 events");
    }

    #[test]
    fn unknown_names_get_a_suggestion_or_the_list() {
        let f = unknown("control point", "Eiss", &["Eis", "Billing"]);
        assert_eq!(f.code, EXIT_USAGE);
        assert_eq!(
            f.message,
            "unknown control point `Eiss`: did you mean `Eis`?"
        );
        let f = unknown("control point", "zzzzzz", &["Eis", "Billing"]);
        assert_eq!(
            f.message,
            "unknown control point `zzzzzz`: known: Eis, Billing"
        );
        let f = unknown("control point", "x", &[]);
        assert!(f
            .message
            .ends_with("the topology declares no control point"));
    }

    #[test]
    fn the_issuer_is_the_operator_flag_or_the_user() {
        let op = Operator {
            name: Some(" ana ".into()),
        };
        assert_eq!(op.issuer(), "operator:ana");
    }
}
