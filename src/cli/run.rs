//! `sfwd run --topology FILE`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sfwd::admin::{AccessPolicy, AllowedHosts, TlsFiles, TokenSource, Tokens};
use sfwd::instance::{self, Options};
use sfwd::shutdown;

use super::logging::{self, LogFormat};

/// Options of `sfwd run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file.
    #[arg(long, short)]
    topology: PathBuf,
    /// This instance's id: names it in records and logs, and its data
    /// directory. Every instance of a group needs its own.
    #[arg(long, env = "SFWD_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Where the local store lives [default: .sfwd/<application>/<instance id>].
    #[arg(long, env = "SFWD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers, overriding the topology's `kafka.bootstrap`.
    #[arg(long, env = "SFWD_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Create request topics that do not exist (with `kafka.partitions` partitions).
    #[arg(long)]
    create_topics: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SFWD_LOG_FORMAT")]
    log_format: LogFormat,
    /// Address of the admin HTTP server (health, readiness, metrics, API,
    /// web page): `host:port`, port 0 for any free port (the log line
    /// `admin listening` says which), or `none` (or `0`) to run without it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9464",
        env = "SFWD_ADMIN_LISTEN",
        value_parser = parse_admin_listen
    )]
    admin_listen: AdminListen,
    /// Where the admin server's tokens are: `file:PATH` or `env:VAR`, each
    /// entry `principal:role:token` (roles `viewer`, `operator`). Without
    /// tokens anyone who reaches the server may read, and only loopback
    /// clients may act.
    #[arg(long, value_name = "SOURCE", env = "SFWD_ADMIN_TOKENS", value_parser = TokenSource::parse)]
    admin_tokens: Option<TokenSource>,
    /// Host names the admin server answers to besides localhost, 127.0.0.1,
    /// ::1 and its listen address (comma-separated; `*` for any).
    #[arg(
        long,
        value_name = "NAMES",
        env = "SFWD_ADMIN_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    admin_allowed_hosts: Vec<String>,
    /// Serve the admin server over HTTPS with this certificate chain (PEM);
    /// needs --admin-tls-key.
    #[arg(
        long,
        value_name = "PEM",
        env = "SFWD_ADMIN_TLS_CERT",
        requires = "admin_tls_key"
    )]
    admin_tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert (PEM).
    #[arg(
        long,
        value_name = "PEM",
        env = "SFWD_ADMIN_TLS_KEY",
        requires = "admin_tls_cert"
    )]
    admin_tls_key: Option<PathBuf>,
}

/// The `--admin-listen` value: an address, or no admin server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AdminListen(Option<SocketAddr>);

fn parse_admin_listen(s: &str) -> Result<AdminListen, String> {
    match s.trim() {
        "none" | "0" | "" => Ok(AdminListen(None)),
        addr => addr.parse().map(|a| AdminListen(Some(a))).map_err(|e| {
            format!("`{addr}` is not an address like 127.0.0.1:9464, 0.0.0.0:0 or none: {e}")
        }),
    }
}

pub fn run(args: Args) -> ExitCode {
    logging::init(args.log_format);
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sfwd run failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: Args) -> anyhow::Result<()> {
    let (mut topology, warnings) = match sfwd::topology::load(&args.topology) {
        Ok(t) => t,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}\n");
            }
            anyhow::bail!(
                "{} has errors; `sfwd validate` shows them too",
                args.topology.display()
            );
        }
    };
    for w in warnings {
        tracing::warn!("{}", w.to_string().replace('\n', " "));
    }
    if let Some(b) = args.bootstrap {
        topology.kafka.bootstrap = b;
    }
    let tokens = match &args.admin_tokens {
        Some(source) => {
            Tokens::load(source).context("reading the admin tokens (--admin-tokens)")?
        }
        None => Tokens::default(),
    };
    let admin_access = AccessPolicy {
        tokens,
        hosts: AllowedHosts::new(args.admin_listen.0, &args.admin_allowed_hosts),
    };
    let instance_id = args.instance_id.unwrap_or_else(default_instance_id);
    let data_dir = args.data_dir.unwrap_or_else(|| {
        PathBuf::from(".sfwd")
            .join(&topology.application)
            .join(&instance_id)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (trigger, _) = shutdown::channel();
        let on_signal = trigger.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            tracing::info!("signal received: finishing in-flight work");
            on_signal.fire();
            // A second signal exits at once.
            shutdown::signal().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
        instance::run(
            Options {
                topology,
                instance_id,
                data_dir,
                create_request_topics: args.create_topics,
                admin_listen: args.admin_listen.0,
                admin_access,
                admin_tls: args
                    .admin_tls_cert
                    .zip(args.admin_tls_key)
                    .map(|(cert, key)| TlsFiles { cert, key }),
                table_observer: None,
            },
            trigger,
        )
        .await
    })
}

fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sfwd".to_string());
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_listen_values() {
        assert_eq!(
            parse_admin_listen("127.0.0.1:0"),
            Ok(AdminListen(Some("127.0.0.1:0".parse().unwrap())))
        );
        assert_eq!(parse_admin_listen("none"), Ok(AdminListen(None)));
        assert_eq!(parse_admin_listen("0"), Ok(AdminListen(None)));
        assert!(parse_admin_listen("localhost")
            .unwrap_err()
            .contains("not an address"));
    }
}
