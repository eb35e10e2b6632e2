//! The embedded engine on fjall: an LSM tree with a write-ahead journal;
//! applying a transaction is one atomic journal batch, written through to
//! the kernel, and `sync` is one fdatasync of the journal. One fjall
//! keyspace per table.
//!
//! fjall's own `persist` holds the journal's lock through the fdatasync,
//! which would stop the commit thread from applying the next group while
//! the last one syncs. So `sync` fdatasyncs the active journal through a
//! descriptor of its own, without that lock. This rests on two facts of
//! fjall's journal, checked by the tests below and to re-check before
//! upgrading fjall: journals are `<id>.jnl` files in the database folder,
//! the newest being the active one, and a journal is synced whole before
//! the next one is created. So when `sync` finds journal N the newest, every
//! batch applied before it is in journal N (synced now) or in an older one
//! (synced when N was created).

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    path: PathBuf,
    /// The active journal as `sync` last found it, by id.
    journal: Mutex<Option<(u64, File)>>,
}

/// The newest journal in the database folder: the one fjall appends to.
fn active_journal(folder: &Path) -> Result<(u64, PathBuf)> {
    let mut newest = None;
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".jnl"))
            .and_then(|id| id.parse::<u64>().ok());
        if let Some(id) = id
            && newest.as_ref().is_none_or(|(n, _)| id > *n)
        {
            newest = Some((id, path));
        }
    }
    newest.ok_or_else(|| StorageError::Corrupt {
        table: "journal",
        reason: format!("no journal in {}", folder.display()),
    })
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
        Ok(FjallEngine {
            db,
            keyspaces,
            path: path.to_path_buf(),
            journal: Mutex::new(None),
        })
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

    fn sync(&self) -> Result<()> {
        let mut journal = self.journal.lock().expect("not poisoned");
        // fjall numbers journals one after another, so the open one is still
        // the newest unless the next id exists: one stat per sync instead of
        // a directory listing.
        let current = journal
            .as_ref()
            .is_some_and(|(open, _)| !self.path.join(format!("{}.jnl", open + 1)).exists());
        if !current {
            let (id, path) = active_journal(&self.path)?;
            *journal = Some((id, File::open(path)?));
        }
        let (_, file) = journal.as_ref().expect("opened above");
        // fdatasync: it also persists the block allocation an append needs,
        // so it is as durable as fsync here (PostgreSQL's WAL default makes
        // the same choice).
        file.sync_data()?;
        Ok(())
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        Ok(Box::new(FjallWrite {
            engine: self,
            // Written through to the kernel, not synced: `sync` does that
            // for every batch applied since the last one, while the commit
            // thread applies the next.
            batch: self.db.batch().durability(Some(PersistMode::Buffer)),
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

    fn apply(self: Box<Self>) -> Result<()> {
        // One journal write for the whole batch; fjall numbers it after
        // every batch before it, and replays only whole batches.
        self.batch.commit().map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(path: &Path, marker: &[u8]) -> bool {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(marker.len()).any(|w| w == marker)
    }

    fn apply(engine: &FjallEngine, key: &[u8], value: &[u8]) {
        let mut txn = engine.begin().unwrap();
        txn.put(Table::Orders, key, value).unwrap();
        txn.apply().unwrap();
        engine.sync().unwrap();
    }

    /// What `sync` assumes of fjall's journal layout: the newest `<id>.jnl`
    /// holds the batches just applied, also after fjall starts a new one.
    #[test]
    fn sync_finds_the_journal_that_holds_the_applied_batches() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path()).unwrap();
        apply(&engine, b"k1", b"first-marker-7f3a");
        let (first, path) = active_journal(dir.path()).unwrap();
        assert!(contains(&path, b"first-marker-7f3a"));

        // fjall starts a new journal at a memtable flush once the active
        // one holds more than 64 MB; the filler does not compress.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut filler = vec![0u8; 1 << 20];
        for i in 0u32..70 {
            for byte in filler.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            apply(&engine, &i.to_be_bytes(), &filler);
        }
        engine.flush().unwrap();
        apply(&engine, b"k2", b"second-marker-91c2");
        let (second, path) = active_journal(dir.path()).unwrap();
        assert!(second > first, "a rotation starts a newer journal");
        assert!(contains(&path, b"second-marker-91c2"));
        assert_eq!(engine.journal.lock().unwrap().as_ref().unwrap().0, second);
    }
}
