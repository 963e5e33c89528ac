//! `sfwd target-sim`: the simulated target as a process.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use sfwd::target_sim::{Mode, Options, Schedule, TargetSim};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// Options of `sfwd target-sim`.
///
/// Requests to any path outside `/_sim/` are answered by the mode; the
/// control endpoints are `GET /_sim/state`, `POST /_sim/mode/{mode}`
/// (`slow?delay=2s`), `GET /_sim/received`, `GET /_sim/duplicates` and
/// `POST /_sim/reset`. Logging follows `RUST_LOG` (default `info`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve requests and control endpoints on.
    #[arg(long, env = "SFWD_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of a second listener that serves only the control endpoints
    /// and stays up while the main port refuses connections.
    #[arg(long, env = "SFWD_SIM_CONTROL_LISTEN", visible_alias = "control-addr")]
    pub control_listen: Option<SocketAddr>,
    /// Mode to start in: up, unavailable, refuse, slow:DELAY (e.g.
    /// slow:2s), slow-unavailable:DELAY (a 503 after DELAY), error500, bad-request, overloaded:RETRY_AFTER (a 429 with
    /// Retry-After, e.g. overloaded:3s).
    #[arg(long, env = "SFWD_SIM_MODE", default_value = "up")]
    pub mode: Mode,
    /// Modes over time, e.g. `up:10s,unavailable:20s,up`: runs once when
    /// the last step has no duration, repeats when every step has one.
    #[arg(long, env = "SFWD_SIM_SCHEDULE", conflicts_with = "mode")]
    pub schedule: Option<Schedule>,
}

/// Runs the simulated target until SIGINT or SIGTERM (a second one exits
/// at once).
pub fn run(args: Args) -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Another subscriber already installed (e.g. by a caller) is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "cannot listen for SIGINT and SIGTERM");
            return ExitCode::FAILURE;
        }
    };

    let options = Options {
        listen: args.listen,
        control_listen: args.control_listen,
        mode: match &args.schedule {
            Some(schedule) => schedule.steps()[0].mode,
            None => args.mode,
        },
    };
    let sim = match TargetSim::start_with(options).await {
        Ok(sim) => sim,
        Err(e) => {
            error!(listen = %args.listen, control_listen = ?args.control_listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    info!(
        url = %sim.url("/"),
        control = %sim.control_addr().map_or_else(|| sim.url("/_sim/state"), |a| format!("http://{a}/_sim/state")),
        "target-sim ready"
    );

    let schedule = args.schedule.map(|schedule| {
        info!(%schedule, repeats = schedule.repeats(), "target-sim following a schedule");
        let sim = sim.clone();
        tokio::spawn(async move { sim.run_schedule(&schedule).await })
    });

    let name = next_signal(&mut interrupt, &mut terminate).await;
    info!(
        signal = name,
        "target-sim stopping (send it again to exit at once)"
    );
    if let Some(schedule) = schedule {
        schedule.abort();
    }
    tokio::select! {
        _ = sim.shutdown() => ExitCode::SUCCESS,
        name = next_signal(&mut interrupt, &mut terminate) => {
            warn!(signal = name, "target-sim exiting without draining");
            ExitCode::FAILURE
        }
    }
}

/// The name of the next SIGINT or SIGTERM received.
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> &'static str {
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
