//! Handles of the metrics counted with every request, registered once per
//! set of label values and reused.
//!
//! `counter!` with labels builds the labels (a `String` each), hashes
//! them and looks them up in the recorder's registry at every call; for
//! the few series a request touches that was a measurable share of a
//! pass-through's CPU. A handle (`metrics::Counter`, `Histogram`) is a
//! shared pointer to the series: kept here by label values, found with
//! lookups that allocate nothing, it is registered once.
//!
//! Only counters and histograms are kept here: the recorder forgets gauges
//! that stay idle (`telemetry::install`), and a kept handle to a forgotten
//! gauge would update a series no longer exported.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

/// A fast hasher for short label values looked up per request; the keys
/// come from the topology, not from callers, so no hash flooding to fear.
type Fast = foldhash::fast::FixedState;

/// Handles of type `T`, by three label values (`""` where a metric has
/// fewer labels).
pub(super) struct Handles<T> {
    by_label: LazyLock<RwLock<Nested<T>>>,
}

type Nested<T> = HashMap<String, HashMap<String, HashMap<String, T, Fast>, Fast>, Fast>;

impl<T: Clone> Handles<T> {
    pub(super) const fn new() -> Self {
        Handles {
            by_label: LazyLock::new(|| RwLock::new(HashMap::default())),
        }
    }

    /// The handle for `a`, `b`, `c`, registered with `register` the first
    /// time.
    pub(super) fn get(&self, a: &str, b: &str, c: &str, register: impl FnOnce() -> T) -> T {
        let found = self
            .by_label
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(a)
            .and_then(|m| m.get(b))
            .and_then(|m| m.get(c))
            .cloned();
        if let Some(handle) = found {
            return handle;
        }
        self.by_label
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(a.to_string())
            .or_default()
            .entry(b.to_string())
            .or_default()
            .entry(c.to_string())
            .or_insert_with(register)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn registers_once_per_label_values() {
        static HANDLES: Handles<usize> = Handles::new();
        let registered = AtomicUsize::new(0);
        let register = || registered.fetch_add(1, Ordering::SeqCst);
        assert_eq!(HANDLES.get("i", "svc", "op", register), 0);
        assert_eq!(HANDLES.get("i", "svc", "op", register), 0);
        assert_eq!(HANDLES.get("i", "svc", "other", register), 1);
        assert_eq!(HANDLES.get("j", "svc", "op", register), 2);
        assert_eq!(HANDLES.get("i", "svc", "op", register), 0);
        assert_eq!(registered.load(Ordering::SeqCst), 3);
    }
}
