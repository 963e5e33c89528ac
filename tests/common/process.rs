//! Running `sfwd run` processes from tests, and following their logs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One `sfwd run` child process with JSON logs.
pub struct Sfwd {
    pub instance: String,
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// The thread that reads the instance's standard output into `lines`.
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every log line seen so far.
    pub seen: Vec<Value>,
}

impl Sfwd {
    /// Starts an instance of `topology` with its own data directory under `dir`.
    /// `SFWD_TEST_WRAPPER`, when set, is a command that runs it (e.g.
    /// `valgrind --tool=callgrind` to profile it).
    pub fn start(topology: &Path, instance: &str, dir: &Path) -> Sfwd {
        Sfwd::start_with(topology, instance, dir, &["--admin-listen", "127.0.0.1:0"])
    }

    /// [`Sfwd::start`] with other options of `sfwd run` instead of
    /// `--admin-listen 127.0.0.1:0`.
    pub fn start_with(topology: &Path, instance: &str, dir: &Path, options: &[&str]) -> Sfwd {
        Sfwd::spawn(&super::bootstrap(), topology, instance, dir, options, None)
    }

    /// [`Sfwd::start`] against the broker at `bootstrap`, with `log` as
    /// its `RUST_LOG` when given (else `SFWD_TEST_RUST_LOG`, else
    /// `info,rdkafka=warn`).
    pub fn start_on(
        bootstrap: &str,
        topology: &Path,
        instance: &str,
        dir: &Path,
        log: Option<&str>,
    ) -> Sfwd {
        let options = ["--admin-listen", "127.0.0.1:0"];
        Sfwd::spawn(bootstrap, topology, instance, dir, &options, log)
    }

    fn spawn(
        bootstrap: &str,
        topology: &Path,
        instance: &str,
        dir: &Path,
        options: &[&str],
        log: Option<&str>,
    ) -> Sfwd {
        let data_dir: PathBuf = dir.join(instance);
        let wrapper = std::env::var("SFWD_TEST_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_sfwd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sfwd")),
        };
        let mut child = command
            .args([
                "run",
                "--log-format",
                "json",
                "--create-topics",
                "--topology",
            ])
            .arg(topology)
            .args(options)
            .args(["--instance-id", instance, "--data-dir"])
            .arg(&data_dir)
            .env("SFWD_BOOTSTRAP", bootstrap)
            .env(
                "RUST_LOG",
                log.map(str::to_string).unwrap_or_else(|| {
                    std::env::var("SFWD_TEST_RUST_LOG")
                        .unwrap_or_else(|_| "info,rdkafka=warn".into())
                }),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sfwd run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let name = instance.to_string();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if std::env::var_os("SFWD_TEST_LOGS").is_some() {
                            eprintln!("[{name}] {line}");
                        }
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[{name}] {line}"),
                }
            }
        });
        Sfwd {
            instance: instance.to_string(),
            child,
            lines: rx,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits for a log line matching `pred`, among those not yet seen by a
    /// previous wait as well as new ones. Panics after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "instance {}: no log line for `{what}` within {timeout:?}; exited: {:?}",
                    self.instance,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Like [`Sfwd::wait_for`], but `None` instead of a panic when no line
    /// matches within `timeout`.
    pub fn find_within(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// Waits until the instance has loaded the control state.
    pub fn wait_ready(&mut self) {
        self.wait_for("ready", Duration::from_secs(60), |v| message(v) == "ready");
    }

    /// Waits until the instance has partitions of the request topics.
    pub fn wait_assigned(&mut self) {
        self.wait_for("partitions assigned", Duration::from_secs(60), |v| {
            message(v) == "partitions assigned"
        });
    }

    /// The address of the instance's admin server, from its
    /// `admin listening` log line.
    pub fn admin_addr(&mut self) -> std::net::SocketAddr {
        let line = self.wait_for("admin listening", Duration::from_secs(60), |v| {
            message(v) == "admin listening"
        });
        field(&line, "addr").parse().expect("admin address")
    }

    /// The process id (for reading `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "instance {} did not stop within 30s of SIGTERM",
                    self.instance
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Log lines of an instance printed when a test fails.
const LINES_ON_FAILURE: usize = 200;

impl Drop for Sfwd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failing test shows what each of its instances logged last
            // (cargo prints a failing test's output): every line, once the
            // reader has met the end of the dead instance's output.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            while let Ok(v) = self.lines.try_recv() {
                self.seen.push(v);
            }
            let from = self.seen.len().saturating_sub(LINES_ON_FAILURE);
            eprintln!(
                "--- instance {}: its last {} log lines ---",
                self.instance,
                self.seen.len() - from
            );
            for v in &self.seen[from..] {
                eprintln!("{} {v}", self.instance);
            }
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// The `message` field of a JSON log line.
pub fn message(v: &Value) -> &str {
    v.get("message").and_then(Value::as_str).unwrap_or("")
}

/// A string field of a JSON log line.
pub fn field<'v>(v: &'v Value, name: &str) -> &'v str {
    v.get(name).and_then(Value::as_str).unwrap_or("")
}
