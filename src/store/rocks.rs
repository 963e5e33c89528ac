//! The RocksDB [`Store`].

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Cache, Direction, IteratorMode, Options, WriteBatch, DB};

use super::{full_key, Space, Store, StoreError, Write};

/// A [`Store`] in a RocksDB database, sized for small state: a few MiB of
/// memtable and block cache.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksStore {
    /// Opens (or creates) the database in `path`. A directory already open
    /// by another process is an error naming it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(4 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(64);
        opts.set_keep_log_file_num(2);
        opts.set_max_total_wal_size(16 << 20);
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(4 << 20).map_err(|e| err(path, e))?;
        table.set_block_cache(&cache);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, path).map_err(|e| err(path, e))?;
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Background errors (flushes, compactions) since the store was opened,
    /// if RocksDB says.
    pub fn background_errors(&self) -> Option<u64> {
        self.db
            .property_int_value("rocksdb.background-errors")
            .ok()
            .flatten()
    }

    /// Estimated size of the live data in bytes, if RocksDB says.
    pub fn live_data_bytes(&self) -> Option<u64> {
        self.db
            .property_int_value("rocksdb.estimate-live-data-size")
            .ok()
            .flatten()
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl Store for RocksStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get(full_key(space, key))
            .map_err(|e| err(&self.path, e))
    }

    fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        for w in batch {
            match w {
                Write::Put { space, key, value } => b.put(full_key(space, &key), value),
                Write::Delete { space, key } => b.delete(full_key(space, &key)),
            }
        }
        self.db.write(b).map_err(|e| err(&self.path, e))
    }

    fn scan(&self, space: Space) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let prefix = full_key(space, b"");
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| err(&self.path, e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
