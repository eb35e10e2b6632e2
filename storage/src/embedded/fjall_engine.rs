//! The embedded engine on fjall: an LSM tree with a write-ahead journal;
//! a commit is one atomic journal batch followed by one fdatasync. One
//! fjall keyspace per table.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Slice};

use super::engine::{Engine, Pair, Scan, Table, WriteTxn, prefix_end};
use crate::error::{Result, StorageError};

fn error(error: fjall::Error) -> StorageError {
    match error {
        fjall::Error::Io(io) => StorageError::from(io),
        fjall::Error::Poisoned => {
            StorageError::Unavailable("an earlier I/O error stopped the store: restart".into())
        }
        other => StorageError::Io(other.to_string()),
    }
}

pub struct FjallEngine {
    db: Database,
    /// In `Table::ALL` order.
    keyspaces: Vec<Keyspace>,
}

impl FjallEngine {
    pub fn open(path: &Path) -> Result<FjallEngine> {
        let db = Database::builder(path).open().map_err(error)?;
        let keyspaces = Table::ALL
            .iter()
            .map(|t| {
                db.keyspace(t.name(), KeyspaceCreateOptions::default)
                    .map_err(error)
            })
            .collect::<Result<_>>()?;
        Ok(FjallEngine { db, keyspaces })
    }

    fn keyspace(&self, table: Table) -> &Keyspace {
        &self.keyspaces[table.index()]
    }
}

fn scan_keyspace(keyspace: &Keyspace, scan: Scan<'_>) -> Result<Vec<Pair>> {
    let end = prefix_end(scan.prefix);
    let low = match (scan.descending, scan.from) {
        (false, Some(from)) if from > scan.prefix => from.to_vec(),
        _ => scan.prefix.to_vec(),
    };
    let high = match (scan.descending, scan.from, end) {
        (true, Some(from), _) => Bound::Included(from.to_vec()),
        (_, _, Some(end)) => Bound::Excluded(end),
        (_, _, None) => Bound::Unbounded,
    };
    let range = keyspace.range::<Vec<u8>, _>((Bound::Included(low), high));
    let mut pairs = Vec::new();
    let mut push = |guard: fjall::Guard| -> Result<()> {
        let (key, value) = guard.into_inner().map_err(error)?;
        pairs.push((key.to_vec(), value.to_vec()));
        Ok(())
    };
    if scan.descending {
        for guard in range.rev().take(scan.limit) {
            push(guard)?;
        }
    } else {
        for guard in range.take(scan.limit) {
            push(guard)?;
        }
    }
    Ok(pairs)
}

impl Engine for FjallEngine {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.keyspace(table).get(key).map_err(error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<Pair>> {
        scan_keyspace(self.keyspace(table), scan)
    }

    fn flush(&self) -> Result<()> {
        for keyspace in &self.keyspaces {
            keyspace.rotate_memtable_and_wait().map_err(error)?;
        }
        Ok(())
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        Ok(Box::new(FjallWrite {
            engine: self,
            batch: self.db.batch().durability(Some(PersistMode::SyncData)),
            overlay: BTreeMap::new(),
        }))
    }
}

/// A journal batch plus an overlay of its writes, so that reads in the
/// transaction see them (fjall batches are write-only).
struct FjallWrite<'a> {
    engine: &'a FjallEngine,
    batch: OwnedWriteBatch,
    /// Values are shared with the batch (`Slice` is reference-counted), so
    /// the overlay costs no second copy.
    overlay: BTreeMap<(Table, Vec<u8>), Option<Slice>>,
}

impl WriteTxn for FjallWrite<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(value) = self.overlay.get(&(table, key.to_vec())) {
            return Ok(value.as_ref().map(|v| v.to_vec()));
        }
        self.engine.get(table, key)
    }

    fn scan_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<Pair>> {
        let stored = self.engine.scan(table, Scan::prefix(prefix, usize::MAX))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        let pending = self
            .overlay
            .range((table, prefix.to_vec())..)
            .take_while(|((t, key), _)| *t == table && key.starts_with(prefix));
        for ((_, key), value) in pending {
            match value {
                Some(value) => merged.insert(key.clone(), value.to_vec()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn scan_from(&mut self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let pending: Vec<_> = self
            .overlay
            .range((table, from.to_vec())..)
            .take_while(|((t, _), _)| *t == table)
            .collect();
        // Reading as many more stored pairs as there are pending writes
        // keeps the first `limit` merged pairs exact: at most that many
        // stored ones can be deleted, and pending keys past the stored ones
        // read sort after all of the first `limit`.
        let scan = Scan {
            prefix: b"",
            from: Some(from),
            descending: false,
            limit: limit.saturating_add(pending.len()),
        };
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.engine.scan(table, scan)?.into_iter().collect();
        for ((_, key), value) in pending {
            match value {
                Some(value) => merged.insert(key.clone(), value.to_vec()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let value = Slice::from(value);
        self.batch
            .insert(self.engine.keyspace(table), key, value.clone());
        self.overlay.insert((table, key.to_vec()), Some(value));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<()> {
        self.batch.remove(self.engine.keyspace(table), key);
        self.overlay.insert((table, key.to_vec()), None);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        // One journal write for the whole batch, then one fdatasync: on Linux
        // it also persists the file size an append changed, so it is as
        // durable as fsync here (PostgreSQL's WAL default makes the same choice).
        self.batch.commit().map_err(error)
    }
}
