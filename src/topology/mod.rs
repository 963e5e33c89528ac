//! Topology files: the YAML a user writes, read and checked in three steps.
//!
//! 1. `yaml` parses the text into nodes that remember their line and column;
//! 2. `parse` reads the nodes into the topology *as written*, checking
//!    shapes, keys (unknown keys are errors) and scalar types;
//! 3. `validate` checks meaning (exception types, scopes, control points,
//!    topics, schemas, interaction styles) and builds the checked
//!    [`Topology`].
//!
//! Every step reports every problem it finds, each with its place in the
//! file and a hint, so one run of `sfwd validate` shows them all.

mod diagnostics;
mod model;
mod parse;
mod validate;
mod yaml;

use std::path::Path;

pub use diagnostics::{did_you_mean, Diagnostic, Severity};
pub use model::*;
pub use parse::{parse_duration, parse_size};
pub use validate::topic_name;
pub use yaml::Loc;

/// The result of checking one file: the topology when there were no
/// errors, and every diagnostic (errors and warnings) in file order.
#[derive(Debug)]
pub struct Checked {
    pub topology: Option<Topology>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// Reads and checks a topology file. I/O errors are reported as a
/// diagnostic at line 1 so the caller has one shape to handle; bytes that
/// are not UTF-8 at their place.
pub fn check_file(path: &Path) -> Checked {
    let mut d = diagnostics::Diagnostics::new(path);
    match std::fs::read(path) {
        Ok(bytes) => match yaml::utf8(&bytes) {
            Ok(text) => return check_str(text, path),
            Err(errors) => {
                for e in errors {
                    let diagnostic = d.error(e.loc, e.message);
                    if let Some(hint) = e.hint {
                        diagnostic.hint(hint);
                    }
                }
            }
        },
        Err(e) => {
            d.error(
                Loc { line: 1, col: 1 },
                format!("cannot read the file: {e}"),
            );
        }
    }
    Checked {
        topology: None,
        diagnostics: d.into_sorted(),
    }
}

/// Checks topology text as if read from `path` (input schemas are resolved
/// relative to its directory).
pub fn check_str(text: &str, path: &Path) -> Checked {
    let mut d = diagnostics::Diagnostics::new(path);
    let topology = match yaml::parse(text) {
        Ok(root) => {
            let raw = parse::read(&root, &mut d);
            let dir = path.parent().unwrap_or(Path::new("."));
            validate::check(raw, dir, &mut d)
        }
        Err(errors) => {
            for e in errors {
                let diagnostic = d.error(e.loc, format!("YAML syntax: {}", e.message));
                if let Some(hint) = e.hint {
                    diagnostic.hint(hint);
                }
            }
            None
        }
    };
    Checked {
        topology,
        diagnostics: d.into_sorted(),
    }
}

/// Loads a topology for running: the topology, or an error listing every
/// problem. Warnings are returned alongside.
pub fn load(path: &Path) -> Result<(Topology, Vec<Diagnostic>), Vec<Diagnostic>> {
    let checked = check_file(path);
    match checked.topology {
        Some(t) => Ok((t, checked.diagnostics)),
        None => Err(checked.diagnostics),
    }
}
