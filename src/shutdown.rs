//! Shutdown as a value: one [`ShutdownTrigger`] per process, cloned
//! [`Shutdown`] listeners in every task.
//!
//! Tasks take a `Shutdown` and stop at their next safe point when it fires,
//! so a test stops an instance by firing it, without signals.

use tokio::sync::watch;

/// Fires shutdown for every listener made from it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    pub fn listener(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown fires (at once if it already has). Safe to
    /// use in `select!` repeatedly.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|fired| *fired).await;
    }
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_sees_the_shutdown() {
        let (trigger, mut a) = channel();
        let mut b = trigger.listener();
        assert!(!a.is_fired());
        trigger.fire();
        a.wait().await;
        b.wait().await;
        assert!(a.is_fired() && b.is_fired());
        // Waiting again returns at once.
        a.wait().await;
    }
}
