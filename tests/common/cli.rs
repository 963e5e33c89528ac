//! Running `sfwd` operator commands (`control`, `failed`, `stored`) as
//! processes against a test's application, and what they printed.
#![allow(dead_code)]

use std::process::Output;

use serde_json::Value;

use super::app::App;

/// Runs `sfwd <args> --topology <app's file>` to completion, as operator
/// `tester`.
pub async fn cli(app: &App, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sfwd"))
        .args(args)
        .arg("--topology")
        .arg(&app.topology)
        .env("SFWD_BOOTSTRAP", super::bootstrap())
        .env("SFWD_OPERATOR", "tester")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run sfwd");
    let run = Run::from(args, output);
    if std::env::var_os("SFWD_TEST_LOGS").is_some() {
        eprintln!(
            "$ sfwd {} (exit {})\n{}{}",
            run.args, run.code, run.stdout, run.stderr
        );
    }
    run
}

/// Runs `sfwd <args> --output json …`, which must succeed, and returns what
/// it printed.
pub async fn cli_json(app: &App, args: &[&str]) -> Value {
    cli(app, &[args, &["--output", "json"]].concat())
        .await
        .ok()
        .json()
}

/// What one run printed, and its exit code.
pub struct Run {
    pub args: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(args: &[&str], o: Output) -> Run {
        Run {
            args: args.join(" "),
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0.
    pub fn ok(&self) -> &Run {
        self.exits(0)
    }

    /// Asserts the exit code.
    pub fn exits(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "`sfwd {}` exit code:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// Asserts that the run printed `text` on stdout.
    pub fn prints(&self, text: &str) -> &Run {
        assert!(self.stdout.contains(text), "{text:?} in:\n{}", self.stdout);
        self
    }

    /// Asserts that the run printed `text` on stderr.
    pub fn reports(&self, text: &str) -> &Run {
        assert!(self.stderr.contains(text), "{text:?} in:\n{}", self.stderr);
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`sfwd {}` JSON: {e}\n{}", self.args, self.stdout))
    }
}
