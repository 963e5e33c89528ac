//! `sfwd validate FILE…`

use std::path::PathBuf;
use std::process::ExitCode;

use sfwd::topology::{self, Severity};

/// Checks every file, prints every diagnostic and a summary line per file.
pub fn run(files: &[PathBuf], quiet: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let checked = topology::check_file(file);
        for d in &checked.diagnostics {
            eprintln!("{d}\n");
        }
        let errors = checked.errors().count();
        let warnings = checked.warnings().count();
        match &checked.topology {
            Some(t) => {
                if !quiet || warnings > 0 {
                    let cps = t.control_points().count();
                    println!(
                        "{}: ok: application `{}`, {} service{}, {} control point{}, {} request topic{}{}",
                        file.display(),
                        t.application,
                        t.services.len(),
                        plural(t.services.len()),
                        cps,
                        plural(cps),
                        t.request_topics().len(),
                        plural(t.request_topics().len()),
                        count_note(warnings, "warning"),
                    );
                }
            }
            None => {
                failed = true;
                println!(
                    "{}: refused: {errors} error{}{}",
                    file.display(),
                    plural(errors),
                    count_note(warnings, "warning")
                );
            }
        }
        debug_assert!(
            checked.topology.is_some()
                || checked
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error)
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn count_note(n: usize, what: &str) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} {what}{}", plural(n))
    }
}
