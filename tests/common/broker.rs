//! A test broker of the test's own, for tests that kill and restart it:
//! nisshi (from `SFWD_TEST_BROKER_BIN`, which `./dev test` exports) on a
//! free loopback port, with SQLite storage in its own temporary directory,
//! so that what it acknowledged survives a restart.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nisshi process of this test; killed when dropped.
pub struct Broker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// The broker binary, `SFWD_TEST_BROKER_BIN`; fails the test, saying
    /// how to get it, when it is not set.
    pub fn binary() -> PathBuf {
        match std::env::var_os("SFWD_TEST_BROKER_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => panic!(
                "this test starts and kills a broker of its own and needs SFWD_TEST_BROKER_BIN, \
                 the nisshi binary: run `./dev test` (which installs and exports it), or \
                 `./dev deps` and export SFWD_TEST_BROKER_BIN=~/.cache/sfwd/nisshi-0.8.1/bin/nisshi"
            ),
        }
    }

    /// Starts `bin` on a free port and waits until it accepts connections.
    pub fn start(bin: PathBuf) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Broker {
            bin,
            dir: tempfile::tempdir().expect("broker directory"),
            port,
            child: None,
        };
        broker.restart();
        broker
    }

    /// `host:port`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again, on the same port and storage, and waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "sqlite://broker.db?maintenance_interval=5s",
                "--group-initial-rebalance-delay",
                "0s",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("broker log"))
            .stderr(log)
            .spawn()
            .expect("start the test broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("wait") {
                panic!("the test broker exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the test broker did not listen on port {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the broker gets no chance to finish anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
