//! `sfwd target-sim`

use std::process::ExitCode;

/// Options of `sfwd target-sim`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("target-sim: not built yet");
    ExitCode::FAILURE
}
