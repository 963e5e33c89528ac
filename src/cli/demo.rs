//! `sfwd demo`: the main job on an embedded cluster.

use std::process::ExitCode;
use std::time::Duration;

use sfwd::demo::{self, Rebalances, Settings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Options of `sfwd demo`.
///
/// Progress and the summary go to standard output; the instances' logs go
/// to standard error, at `warn` unless `--verbose` (`RUST_LOG` overrides
/// both).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests to send in all: a third before the outage, the rest during
    /// the outage and the replay.
    #[arg(long, default_value_t = Settings::default().requests as u32, value_parser = clap::value_parser!(u32).range(3..))]
    requests: u32,
    /// Partitions of the request topic.
    #[arg(long, default_value_t = Settings::default().partitions, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    /// Requests per second (0: as fast as possible).
    #[arg(long, default_value_t = Settings::default().rate)]
    rate: u32,
    /// How long the target stays down, e.g. `2s`, `500ms`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    outage: Duration,
    /// sfwd instances in the consumer group.
    #[arg(long, default_value_t = Settings::default().instances as u32, value_parser = clap::value_parser!(u32).range(1..=16))]
    instances: u32,
    /// Show the instances' logs at `info`.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    sfwd::topology::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration like 2s, 500ms or 1.5s"))
}

/// Runs the demo; exits 0 when every guarantee held, 1 otherwise.
pub fn run(args: Args) -> ExitCode {
    // librdkafka's warnings about the embedded cluster are noise here.
    let level = if args.verbose {
        "info,rdkafka=warn"
    } else {
        "warn,rdkafka=error,librdkafka=error"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (rebalances, rebalance_events) = Rebalances::new();
    let logs = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(rebalances.clone().with_filter(rebalance_events))
        .try_init();
    let settings = Settings {
        requests: args.requests as usize,
        partitions: args.partitions,
        rate: args.rate,
        outage: args.outage,
        instances: args.instances as usize,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // The instances make blocking Kafka calls from their tasks: more
        // threads than cores keep one from holding up the others.
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let outcome = runtime.block_on(demo::run(&settings, Some(&rebalances), &mut stdout));
    // Clients of the embedded cluster may still hold threads; do not wait
    // for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(summary) if summary.passed() => ExitCode::SUCCESS,
        Ok(summary) => {
            let failed: Vec<&str> = summary
                .checks()
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name)
                .collect();
            eprintln!("error: the guarantees did not hold: {}", failed.join(", "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: the demo could not run: {e:#}");
            ExitCode::FAILURE
        }
    }
}
