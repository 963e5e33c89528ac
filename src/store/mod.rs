//! Local state behind a narrow key-value trait.
//!
//! Each instance keeps, in its own store: the control-point states read from
//! the control topic (a local copy of a global table), the offsets it has
//! read that topic up to, and replay bookkeeping. Everything in it can be
//! rebuilt from Kafka; it makes restarts fast and lets an instance act on the
//! last known state before it has caught up.
//!
//! [`RocksStore`] is the real one; [`MemoryStore`] has the same behaviour for
//! tests of the logic that uses a store.

mod memory;
mod rocks;

pub use memory::MemoryStore;
pub use rocks::RocksStore;

use thiserror::Error;

/// A store failure. Local disk problems are not retriable by waiting.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("local store at {path}: {message}")]
    Backend { path: String, message: String },
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
}

/// The separate key spaces of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Control point name → encoded control state.
    ControlStates,
    /// `topic/partition` → next offset to read, for topics read as tables.
    TableOffsets,
    /// Replay progress: `control point/topic/partition` → encoded progress.
    Replay,
}

impl Space {
    fn prefix(self) -> u8 {
        match self {
            Space::ControlStates => b'c',
            Space::TableOffsets => b'o',
            Space::Replay => b'r',
        }
    }
}

/// Entries of a space, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A small, synchronous key-value store. Batches are atomic.
pub trait Store: Send + Sync + 'static {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError>;
    /// Every entry of a space, in key order.
    fn scan(&self, space: Space) -> Result<Entries, StoreError>;

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(vec![Write::Put {
            space,
            key: key.to_vec(),
            value: value.to_vec(),
        }])
    }

    fn delete(&self, space: Space, key: &[u8]) -> Result<(), StoreError> {
        self.write(vec![Write::Delete {
            space,
            key: key.to_vec(),
        }])
    }
}

fn full_key(space: Space, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(space.prefix());
    k.push(b'/');
    k.extend_from_slice(key);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same behaviour from both implementations.
    fn exercise(store: &dyn Store) {
        assert_eq!(store.get(Space::ControlStates, b"a").unwrap(), None);
        store.put(Space::ControlStates, b"a", b"1").unwrap();
        store.put(Space::ControlStates, b"b", b"2").unwrap();
        store
            .put(Space::TableOffsets, b"a", b"other space")
            .unwrap();
        assert_eq!(
            store.get(Space::ControlStates, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            store.scan(Space::ControlStates).unwrap(),
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        store
            .write(vec![
                Write::Delete {
                    space: Space::ControlStates,
                    key: b"a".to_vec(),
                },
                Write::Put {
                    space: Space::Replay,
                    key: b"x".to_vec(),
                    value: b"y".to_vec(),
                },
            ])
            .unwrap();
        assert_eq!(store.get(Space::ControlStates, b"a").unwrap(), None);
        assert_eq!(store.scan(Space::Replay).unwrap().len(), 1);
        assert_eq!(
            store.scan(Space::TableOffsets).unwrap(),
            vec![(b"a".to_vec(), b"other space".to_vec())]
        );
    }

    #[test]
    fn memory_store_behaves() {
        exercise(&MemoryStore::default());
    }

    #[test]
    fn rocks_store_behaves_and_keeps_data_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RocksStore::open(dir.path()).unwrap();
            exercise(&store);
        }
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(
            store.get(Space::ControlStates, b"b").unwrap().as_deref(),
            Some(&b"2"[..])
        );
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksStore::open(dir.path()).unwrap();
        let err = RocksStore::open(dir.path()).expect_err("locked");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
