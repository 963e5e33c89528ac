//! An in-memory [`Store`] for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{full_key, Space, Store, StoreError, Write};

/// A [`Store`] in a `BTreeMap`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Store for MemoryStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().unwrap().get(&full_key(space, key)).cloned())
    }

    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap();
        for w in batch {
            match w {
                Write::Put { space, key, value } => {
                    map.insert(full_key(space, &key), value);
                }
                Write::Delete { space, key } => {
                    map.remove(&full_key(space, &key));
                }
            }
        }
        Ok(())
    }

    fn scan(&self, space: Space) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let prefix = full_key(space, b"");
        Ok(self
            .map
            .lock()
            .unwrap()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
            .collect())
    }
}
