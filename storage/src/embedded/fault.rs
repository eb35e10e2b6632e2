//! Fault injection for the fault tests. `FaultyBackend` is a storage
//! backend for redb: a real file whose writes, growth and syncs can be made
//! to fail as a full disk fails them, to check that a full disk gives typed
//! errors and that nothing half-written is visible after a restart.
//! `FaultySync` wraps any real engine so that its syncs (the fsync stage of
//! group commit) can be held back or made to fail.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use redb::StorageBackend;
use redb::backends::FileBackend;

use super::engine::{Engine, Pair, Scan, Table, WriteTxn};
use crate::error::{Result, StorageError};

/// What to break. Shared between the test and the backend.
#[derive(Debug)]
pub struct Faults {
    disk_full: AtomicBool,
    /// Writes allowed before the disk fills; negative means unlimited.
    writes_left: AtomicI64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            disk_full: AtomicBool::new(false),
            writes_left: AtomicI64::new(-1),
        }
    }
}

impl Faults {
    /// From now on, every write, growth and sync fails.
    pub fn fill_disk(&self) {
        self.disk_full.store(true, Ordering::SeqCst);
    }

    /// The disk fills after `writes` more writes: a fault part-way through
    /// a commit.
    pub fn fill_disk_after(&self, writes: i64) {
        self.writes_left.store(writes, Ordering::SeqCst);
    }

    pub fn free_space(&self) {
        self.disk_full.store(false, Ordering::SeqCst);
        self.writes_left.store(-1, Ordering::SeqCst);
    }

    fn check(&self) -> io::Result<()> {
        if self.writes_left.load(Ordering::SeqCst) == 0 {
            self.disk_full.store(true, Ordering::SeqCst);
        }
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    fn count_write(&self) {
        let _ = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 0).then_some(n - 1)
            });
    }
}

#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    pub fn open(path: &Path, faults: Arc<Faults>) -> io::Result<FaultyBackend> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(FaultyBackend { inner, faults })
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > self.inner.len()? {
            self.faults.check()?;
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check()?;
        self.faults.count_write();
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
}

/// What to do to syncs. Shared between the test and the engine.
#[derive(Debug, Default)]
pub struct SyncFaults {
    fail: AtomicBool,
    held: Mutex<Held>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct Held {
    /// Every sync waits.
    all: bool,
    /// The next sync on a sync thread is to wait.
    next: bool,
    /// That sync is waiting.
    one: bool,
    /// Syncs waiting now.
    waiting: usize,
}

impl SyncFaults {
    /// From now on, every sync fails as an fsync that hit an I/O error.
    pub fn fail_syncs(&self) {
        self.fail.store(true, Ordering::SeqCst);
    }

    /// Syncs wait until `release`: applied writes stay undurable.
    pub fn hold(&self) {
        self.held.lock().expect("not poisoned").all = true;
    }

    /// Only the next sync run by a sync thread waits until `release`; the
    /// commit thread's own syncs (of a lone group) and later ones go on.
    pub fn hold_next(&self) {
        self.held.lock().expect("not poisoned").next = true;
    }

    /// Syncs waiting for `release` now.
    pub fn waiting(&self) -> usize {
        self.held.lock().expect("not poisoned").waiting
    }

    pub fn release(&self) {
        let mut held = self.held.lock().expect("not poisoned");
        (held.all, held.next, held.one) = (false, false, false);
        drop(held);
        self.released.notify_all();
    }
}

/// A real engine whose syncs obey `SyncFaults`.
pub struct FaultySync {
    inner: Arc<dyn Engine>,
    faults: Arc<SyncFaults>,
}

impl FaultySync {
    pub fn new(inner: Arc<dyn Engine>, faults: Arc<SyncFaults>) -> FaultySync {
        FaultySync { inner, faults }
    }
}

impl Engine for FaultySync {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(table, key)
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<Pair>> {
        self.inner.scan(table, scan)
    }

    fn begin(&self) -> Result<Box<dyn WriteTxn + '_>> {
        self.inner.begin()
    }

    fn sync(&self) -> Result<()> {
        let mut held = self.faults.held.lock().expect("not poisoned");
        // Only the sync that takes `next` waits on `one`; others go on.
        let this_one = held.next && std::thread::current().name() == Some("souk-sync");
        if this_one {
            (held.next, held.one) = (false, true);
        }
        let waits = |held: &mut Held| (this_one && held.one) || held.all;
        if waits(&mut held) {
            held.waiting += 1;
            held = self
                .faults
                .released
                .wait_while(held, waits)
                .expect("not poisoned");
            held.waiting -= 1;
        }
        drop(held);
        if self.faults.fail.load(Ordering::SeqCst) {
            return Err(StorageError::Io("injected: fsync failed".into()));
        }
        self.inner.sync()
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}
