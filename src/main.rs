//! The `sfwd` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// mimalloc instead of the system's malloc: with glibc's, allocating and
/// freeing the buffers of every request (its record, headers, the copy
/// produced) took about a third of a Kafka pass-through's CPU, in
/// consolidating and unlinking free chunks, and its per-thread arenas held
/// on to memory under load (README, "Benchmarks"). Built without asking
/// for transparent huge pages (`no_thp`): with them, an idle instance took
/// 57 MB instead of 42, and a replaying one 220 MB instead of 173.
///
/// librdkafka and RocksDB keep glibc's `malloc`. mimalloc can take it over
/// for them too (its `override` feature): that cut a 100 B Kafka
/// pass-through's CPU per record by about a tenth, but mimalloc keeps
/// freed memory for a second before giving it back, and with librdkafka's
/// fetch buffers in it a 1 KB pass-through peaked above 200 MB in four runs
/// of nine (glibc: 164 to 183 MB); giving it back after 10 ms kept the
/// peak at 161 MB but took the CPU gain back (README, "Latest results").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Store-and-forward for Kafka: when a service goes down, every instance
/// parks its requests; when it comes back, they are replayed in order.
#[derive(Debug, Parser)]
#[command(name = "sfwd", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show sfwd at work with nothing else installed: an embedded Kafka
    /// cluster, a simulated target and three instances play an outage, and
    /// a summary checks the guarantees.
    ///
    /// Exits 0 when every guarantee held, 1 when one did not or the demo
    /// could not run.
    Demo(cli::demo::Args),
    /// Check topology files and report every problem, with its place.
    ///
    /// Exits 1 when a file has errors; warnings are printed and exit 0.
    Validate {
        /// Topology files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print nothing for files without problems.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run one instance: consume requests, invoke targets, store and
    /// forward. Start several with the same topology to scale out.
    Run(cli::run::Args),
    /// Show every control point, or switch one to store or forward.
    Control(cli::control::Args),
    /// List, show, resubmit and discard failed events.
    Failed(cli::failed::Args),
    /// List and show the stored requests of a control point, and skip one
    /// so that it is never replayed.
    Stored(cli::stored::Args),
    /// Play a target service over HTTP: answer requests, record them, and
    /// switch between up and the failure modes on command.
    TargetSim(cli::target_sim::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Validate { files, quiet } => cli::validate::run(&files, quiet),
        Command::Run(args) => cli::run::run(args),
        Command::Control(args) => cli::control::run(args),
        Command::Failed(args) => cli::failed::run(args),
        Command::Stored(args) => cli::stored::run(args),
        Command::TargetSim(args) => cli::target_sim::run(args),
    }
}
