//! A simulated target service: answers HTTP requests the way a real target
//! behind a topic would, up or failing, and records what it received.
//!
//! The tests start it in-process on port 0 and drive it through a
//! [`TargetSim`] handle; `sfwd target-sim` runs it as a process for the
//! demo and docker-compose, driven by its control endpoints or a
//! [`Schedule`].
//!
//! # Requests
//!
//! Every path outside `/_sim/`, with any method, is a request to the
//! target. It is counted in [`TargetSim::attempts`] when it arrives and
//! answered according to the current [`Mode`]:
//!
//! | mode | answer |
//! |---|---|
//! | `up` | `200`, `{"ok":true,"request_id":"…"}` |
//! | `unavailable` | `503` |
//! | `refuse` | no answer: the listening socket is closed, connections are refused; the same port is bound again when the mode changes |
//! | `slow:DELAY` | `200` as for `up`, after `DELAY` |
//! | `slow-unavailable:DELAY` | `503` as for `unavailable`, after `DELAY` |
//! | `error500` | `500`, `Content-Type: application/json`, an exception chain `EisConnectionLost` "pool exhausted" ← `SQLException` "connection refused by db-1:5432" in the form of [`crate::bindings::failure`] |
//! | `bad-request` | `400` |
//!
//! A request answered `2xx` is recorded as a [`Received`] (its `sfwd-*`
//! headers and at most 1 KiB of its body), in the order the answers are
//! given. A mode applies to requests that arrive after it is set; a `slow`
//! request (or `slow-unavailable` one) keeps the delay and the answer it
//! arrived with. Connections already open when
//! `refuse` begins are closed as soon as they are idle; a request that
//! races with the switch on one of them is answered `503` with
//! `Connection: close`.
//!
//! # Control endpoints
//!
//! | endpoint | what it does |
//! |---|---|
//! | `GET /_sim/state` | `{"mode":"up","listening":true,"received":3,"attempts":4,"most_concurrent":2,"connections":1}`: `most_concurrent` is the most requests it was answering at once, `connections` the connections it accepted |
//! | `POST /_sim/mode/{mode}` | sets the mode (`up`, `unavailable`, `refuse`, `error500`, `bad-request`, `slow?delay=2s` or `slow:2s`, `slow-unavailable:2s`); answers once the listener has followed (closed for `refuse`, bound again otherwise), with `{"mode":…,"previous":…}` |
//! | `GET /_sim/received` | the request ids received, in order (`null` for a request without one) |
//! | `GET /_sim/duplicates` | `[{"request_id":…,"count":…}]`, ids received more than once |
//! | `POST /_sim/reset` | forgets every request received and attempted |
//!
//! In `refuse` mode the main port serves nothing, the control endpoints
//! included; an optional second listener ([`Options::control_listen`])
//! serves only the control endpoints and stays up in every mode.

mod mode;
mod server;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

pub use mode::{Mode, ParseModeError, Schedule, ScheduleError, Step, StepProblem};

pub use crate::wire::KEY_HEADER;
/// Most bytes of a request body kept in a [`Received`].
pub const MAX_RECORDED_BODY: usize = 1024;

/// Where and how a [`TargetSim`] starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address for requests and control endpoints; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address of a listener that serves only the `/_sim/` control
    /// endpoints and stays up in `refuse` mode; none by default.
    pub control_listen: Option<SocketAddr>,
    /// The mode to start in; [`Mode::Up`] by default.
    pub mode: Mode,
}

impl Options {
    /// Listen on `listen`, no control listener, start up.
    pub fn new(listen: SocketAddr) -> Self {
        Options {
            listen,
            control_listen: None,
            mode: Mode::Up,
        }
    }
}

/// One request that the target answered with a `2xx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `sfwd-request-id` header.
    pub request_id: Option<String>,
    /// The `sfwd-operation` header.
    pub operation: Option<String>,
    /// The `sfwd-key` header.
    pub key: Option<String>,
    /// The W3C `traceparent` header.
    pub traceparent: Option<String>,
    /// The request carried `sfwd-redelivery` (it may have arrived before).
    pub redelivery: bool,
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The path, with the query if there was one.
    pub path: String,
    /// The first [`MAX_RECORDED_BODY`] bytes of the body.
    pub body: Vec<u8>,
    /// When the answer was given.
    pub at: SystemTime,
}

/// Whether the main listener is open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listening {
    /// Bound and accepting.
    Open,
    /// Closed (`refuse` mode or shut down).
    Closed,
    /// Closed, and binding the port again failed; still retrying.
    BindFailed(io::ErrorKind, String),
}

/// A running simulated target; clones are handles to the same one.
#[derive(Debug, Clone)]
pub struct TargetSim {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    mode: watch::Sender<Mode>,
    listening: watch::Sender<Listening>,
    shutdown: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
    /// Every request answered `2xx`, in order.
    received: Mutex<Vec<Received>>,
    /// The length of `received`, for waiters; written under its lock.
    received_count: watch::Sender<usize>,
    attempts: AtomicU64,
    /// Requests being answered now, and the most there ever were at once.
    open: AtomicU64,
    most_open: AtomicU64,
    /// Connections accepted on the main port.
    connections: Arc<AtomicU64>,
}

impl TargetSim {
    /// Starts a target on `addr` (port 0 picks a free port), up, with no
    /// control listener. It serves until [`TargetSim::shutdown`].
    pub async fn start(addr: SocketAddr) -> io::Result<TargetSim> {
        Self::start_with(Options::new(addr)).await
    }

    /// Starts a target as `options` say. It serves until
    /// [`TargetSim::shutdown`].
    pub async fn start_with(options: Options) -> io::Result<TargetSim> {
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let control = match options.control_listen {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let control_addr = control.as_ref().map(TcpListener::local_addr).transpose()?;
        let sim = TargetSim {
            shared: Arc::new(Shared {
                addr,
                control_addr,
                mode: watch::Sender::new(options.mode),
                listening: watch::Sender::new(Listening::Open),
                shutdown: watch::Sender::new(false),
                stopped: watch::Sender::new(false),
                received: Mutex::new(Vec::new()),
                received_count: watch::Sender::new(0),
                attempts: AtomicU64::new(0),
                open: AtomicU64::new(0),
                most_open: AtomicU64::new(0),
                connections: Arc::default(),
            }),
        };
        let shown = control_addr.map_or_else(|| "none".to_string(), |a| a.to_string());
        info!(%addr, control = %shown, mode = %options.mode, "target-sim started");
        tokio::spawn(server::supervise(sim.clone(), listener, control));
        Ok(sim)
    }

    /// The address requests are served on (the real port when started on
    /// port 0); it stays the same across `refuse`.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The address of the control listener, if there is one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.shared.control_addr
    }

    /// `http://ADDR/PATH` on the main listener; a missing leading `/` is
    /// added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.shared.addr)
    }

    /// Switches the mode for the next request (and, for `refuse` and back,
    /// the listener, shortly after). Use [`TargetSim::apply`] to wait until
    /// the listener has followed.
    pub fn set_mode(&self, mode: Mode) {
        let previous = self.shared.mode.send_replace(mode);
        if previous == mode {
            debug!(%mode, "target-sim mode unchanged");
        } else {
            info!(%mode, %previous, "target-sim mode changed");
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// A receiver that sees every later mode change (see
    /// [`watch::Receiver::changed`]).
    pub fn subscribe_mode(&self) -> watch::Receiver<Mode> {
        self.shared.mode.subscribe()
    }

    /// Switches the mode and waits until the listener has followed: closed
    /// for `refuse`, bound again otherwise. Fails when the port cannot be
    /// bound again (it keeps trying) or the target is shut down.
    pub async fn apply(&self, mode: Mode) -> io::Result<()> {
        self.set_mode(mode);
        self.settled().await
    }

    /// Waits until the listener matches the current mode: closed for
    /// `refuse`, open otherwise. Fails when the port cannot be bound again
    /// (it keeps trying) or the target is shut down.
    pub async fn settled(&self) -> io::Result<()> {
        let mut mode = self.shared.mode.subscribe();
        let mut listening = self.shared.listening.subscribe();
        let mut stopped = self.shared.stopped.subscribe();
        loop {
            let refuses = mode.borrow_and_update().refuses();
            match (refuses, &*listening.borrow_and_update()) {
                (true, Listening::Closed | Listening::BindFailed(..))
                | (false, Listening::Open) => return Ok(()),
                (false, Listening::BindFailed(kind, message)) => {
                    return Err(io::Error::new(*kind, message.clone()))
                }
                _ => {}
            }
            if *stopped.borrow_and_update() {
                return Err(io::Error::other("target-sim is shut down"));
            }
            tokio::select! {
                _ = mode.changed() => {}
                _ = listening.changed() => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// True while the main listener accepts connections.
    pub fn is_listening(&self) -> bool {
        *self.shared.listening.borrow() == Listening::Open
    }

    /// Every request answered `2xx`, in the order of the answers.
    pub fn received(&self) -> Vec<Received> {
        self.lock_received().clone()
    }

    /// The request ids of [`TargetSim::received`], in order; `None` for a
    /// request without one.
    pub fn received_ids(&self) -> Vec<Option<String>> {
        self.lock_received()
            .iter()
            .map(|r| r.request_id.clone())
            .collect()
    }

    /// How many requests arrived, whatever their answer (control endpoints
    /// not counted).
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::Relaxed)
    }

    /// The most requests that were being answered at the same time.
    pub fn most_concurrent(&self) -> u64 {
        self.shared.most_open.load(Ordering::Relaxed)
    }

    /// How many connections the main port accepted: a client that keeps
    /// its connections open makes about as many as it has calls out at
    /// once, however many calls it makes.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` requests have been answered `2xx`; on
    /// timeout returns those received so far.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<(), Vec<Received>> {
        let mut count = self.shared.received_count.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            // The sender lives as long as `self`: this cannot fail.
            count.wait_for(|c| *c >= n).await.is_ok()
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(self.received()),
        }
    }

    /// Request ids answered `2xx` more than once, with how many times, in
    /// the order of their first answer.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        let received = self.lock_received();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut order = Vec::new();
        for id in received.iter().filter_map(|r| r.request_id.as_deref()) {
            let count = counts.entry(id).or_insert(0);
            if *count == 0 {
                order.push(id);
            }
            *count += 1;
        }
        order
            .into_iter()
            .filter(|id| counts[id] > 1)
            .map(|id| (id.to_string(), counts[id]))
            .collect()
    }

    /// Forgets every request received and attempted.
    pub fn reset(&self) {
        let mut received = self.lock_received();
        received.clear();
        self.shared.attempts.store(0, Ordering::Relaxed);
        self.shared.most_open.store(0, Ordering::Relaxed);
        self.shared.connections.store(0, Ordering::Relaxed);
        self.shared.received_count.send_replace(0);
        info!("target-sim records reset");
    }

    /// Runs `schedule`: sets each step's mode and waits its duration.
    /// Returns after the last step has begun when the schedule runs once,
    /// never when it repeats; stops at shutdown.
    pub async fn run_schedule(&self, schedule: &Schedule) {
        let mut stop = self.shared.shutdown.subscribe();
        let steps = schedule.steps();
        loop {
            for (i, step) in steps.iter().enumerate() {
                if *stop.borrow_and_update() {
                    return;
                }
                info!(step = i + 1, of = steps.len(), mode = %step.mode, "target-sim schedule step");
                self.set_mode(step.mode);
                let Some(duration) = step.duration else {
                    return;
                };
                tokio::select! {
                    _ = tokio::time::sleep(duration) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    /// Stops accepting, lets requests in flight finish (a `slow` one is
    /// answered `503` at once), and returns when every listener is closed.
    /// Other handles see the target stopped.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        let mut stopped = self.shared.stopped.subscribe();
        // The sender lives in `self.shared`: this cannot fail.
        let _ = stopped.wait_for(|s| *s).await;
        info!(addr = %self.shared.addr, "target-sim stopped");
    }

    /// Records a request answered `2xx`.
    fn record(&self, received: Received) {
        let mut all = self.lock_received();
        all.push(received);
        self.shared.received_count.send_replace(all.len());
    }

    fn lock_received(&self) -> MutexGuard<'_, Vec<Received>> {
        // A panic while holding the lock leaves the list whole: go on.
        self.shared
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
