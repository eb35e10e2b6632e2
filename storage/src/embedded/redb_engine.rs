//! The embedded engine on redb: a copy-on-write B-tree in one file, with
//! checksummed commits (a commit is one fsync), MVCC readers that never
//! wait for the writer, and a pluggable storage backend, which the fault
//! tests use to simulate a full disk.

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::engine::{Engine, Pair, Scan, Table, WriteTxn, prefix_end};
use crate::error::{Result, StorageError};

type Bytes = &'static [u8];

const fn definition(name: &'static str) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(name)
}

/// In `Table::ALL` order; sized by it, so a new table without its
/// definition does not compile.
const DEFINITIONS: [TableDefinition<'static, Bytes, Bytes>; Table::ALL.len()] = [
    definition("meta"),
    definition("categories"),
    definition("products"),
    definition("stock"),
    definition("users"),
    definition("users_by_email"),
    definition("addresses"),
    definition("refresh_tokens"),
    definition("token_families"),
    definition("orders"),
    definition("orders_by_user"),
    definition("payments"),
    definition("carts"),
    definition("stock_sold"),
    definition("sign_outs"),
];

fn table(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    let definition = DEFINITIONS[table.index()];
    debug_assert_eq!(definition.name(), table.name());
    definition
}

fn error(error: impl Into<redb::Error>) -> StorageError {
    match error.into() {
        redb::Error::Io(io) => StorageError::from(io),
        redb::Error::Corrupted(reason) => StorageError::Corrupt {
            table: "redb",
            reason,
        },
        redb::Error::PreviousIo => {
            StorageError::Unavailable("an earlier I/O error stopped the store: restart".into())
        }
        other => StorageError::Io(other.to_string()),
    }
}

pub struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<RedbEngine> {
        let db = Database::builder().create(path).map_err(error)?;
        RedbEngine::ready(db)
    }

    /// Opens a database on a custom backend (the fault-injection tests).
    pub fn open_with_backend(backend: impl StorageBackend) -> Result<RedbEngine> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(error)?;
        RedbEngine::ready(db)
    }

    /// Creates every table, so that readers never meet a missing one.
    fn ready(db: Database) -> Result<RedbEngine> {
        let txn = db.begin_write().map_err(error)?;
        for definition in DEFINITIONS {
            txn.open_table(definition).map_err(error)?;
        }
        txn.commit().map_err(error)?;
        Ok(RedbEngine { db })
    }
}

/// Collects a range walk into owned pairs.
fn collect<'a>(
    range: impl Iterator<
        Item = std::result::Result<
            (redb::AccessGuard<'a, Bytes>, redb::AccessGuard<'a, Bytes>),
            redb::StorageError,
        >,
    >,
    limit: usize,
) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for item in range.take(limit) {
        let (key, value) = item.map_err(error)?;
        pairs.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(pairs)
}

fn scan_table(table: &impl ReadableTable<Bytes, Bytes>, scan: Scan<'_>) -> Result<Vec<Pair>> {
    let end = prefix_end(scan.prefix);
    let low: &[u8] = match (scan.descending, scan.from) {
        (false, Some(from)) if from > scan.prefix => from,
        _ => scan.prefix,
    };
    let range = match (&end, scan.descending, scan.from) {
        (_, true, Some(from)) => table.range::<&[u8]>(low..=from),
        (Some(end), _, _) => table.range::<&[u8]>(low..end.as_slice()),
        (None, _, _) => table.range::<&[u8]>(low..),
    }
    .map_err(error)?;
    if scan.descending {
        collect(range.rev(), scan.limit)
    } else {
        collect(range, scan.limit)
    }
}

impl Engine for RedbEngine {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let read = self.db.begin_read().map_err(error)?;
        let table = read.open_table(table(t)).map_err(error)?;
        let value = table.get(key).map_err(error)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, t: Table, scan: Scan<'_>) -> Result<Vec<Pair>> {
        let read = self.db.begin_read().map_err(error)?;
        let table = read.open_table(table(t)).map_err(error)?;
        scan_table(&table, scan)
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        let txn = self.db.begin_write().map_err(error)?;
        Ok(Box::new(RedbWrite { txn }))
    }
}

struct RedbWrite {
    txn: WriteTransaction,
}

impl WriteTxn for RedbWrite {
    fn get(&mut self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(table(t)).map_err(error)?;
        let value = table.get(key).map_err(error)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan_prefix(&mut self, t: Table, prefix: &[u8]) -> Result<Vec<Pair>> {
        let table = self.txn.open_table(table(t)).map_err(error)?;
        scan_table(&table, Scan::prefix(prefix, usize::MAX))
    }

    fn scan_from(&mut self, t: Table, from: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let table = self.txn.open_table(table(t)).map_err(error)?;
        let scan = Scan {
            prefix: b"",
            from: Some(from),
            descending: false,
            limit,
        };
        scan_table(&table, scan)
    }

    fn put(&mut self, t: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let mut table = self.txn.open_table(table(t)).map_err(error)?;
        table.insert(key, value).map_err(error)?;
        Ok(())
    }

    fn delete(&mut self, t: Table, key: &[u8]) -> Result<()> {
        let mut table = self.txn.open_table(table(t)).map_err(error)?;
        table.remove(key).map_err(error)?;
        Ok(())
    }

    fn apply(self: Box<Self>) -> Result<()> {
        // redb's default durability is immediate: commit returns after
        // fsync, so the engine's `sync` has nothing left to do.
        self.txn.commit().map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database file written when there were more tables (`events`,
    /// since removed) opens: redb opens tables by name and `ready` opens
    /// only those `Table` names, so the others are left unread.
    #[test]
    fn tables_that_were_removed_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("souk.redb");
        let old = definition("events");
        {
            let db = Database::builder().create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(old)
                .unwrap()
                .insert(&b"k"[..], &b"old-event"[..])
                .unwrap();
            txn.commit().unwrap();
        }
        {
            let engine = RedbEngine::open(&path).unwrap();
            let mut txn = engine.begin().unwrap();
            txn.put(Table::Orders, b"k", b"an order").unwrap();
            txn.apply().unwrap();
            assert_eq!(
                engine.get(Table::Orders, b"k").unwrap().as_deref(),
                Some(&b"an order"[..])
            );
        }
        let db = Database::builder().create(&path).unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(old).unwrap();
        let stored = table.get(&b"k"[..]).unwrap().map(|v| v.value().to_vec());
        assert_eq!(stored.as_deref(), Some(&b"old-event"[..]));
    }
}
