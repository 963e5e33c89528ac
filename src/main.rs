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
/// It also replaces `malloc` and `free` for the C code linked in
/// (`override`): librdkafka allocates every produced message and each of
/// its headers, and frees them on its delivery-report thread, which with
/// glibc's malloc was about a tenth of a pass-through's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps memory freed before it gives it back to the
/// system, in milliseconds (ten times as long for its arenas). mimalloc 3
/// waits a second; with librdkafka's fetch buffers and produced messages in
/// it too, a Kafka pass-through of 1 KB records then peaked at 176 to 210
/// MB, against 164 to 183 with glibc's malloc, and at 10 ms (mimalloc 2's
/// default) at 161 MB. `MIMALLOC_PURGE_DELAY` in the environment wins.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// `mi_option_purge_delay`: its place in mimalloc 3's `mi_option_e`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    /// mimalloc's own setter of its options, linked in with the allocator.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Applies [`PURGE_DELAY_MS`], unless the environment sets it.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's options may be set at any time, from any thread.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

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
    tune_allocator();
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

#[cfg(test)]
mod tests {
    extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }

    #[test]
    fn the_purge_delay_is_the_option_mimalloc_documents() {
        // Nothing has set it yet in this process: mimalloc 3's default for
        // `mi_option_purge_delay` is one second. Another option at that
        // place (a different mimalloc) would not start at 1000.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        assert_eq!(unsafe { mi_option_get(super::MI_OPTION_PURGE_DELAY) }, 1000);
        super::tune_allocator();
        assert_eq!(
            unsafe { mi_option_get(super::MI_OPTION_PURGE_DELAY) },
            super::PURGE_DELAY_MS
        );
    }
}
