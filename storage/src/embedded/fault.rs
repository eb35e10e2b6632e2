//! A fault-injecting storage backend for redb: a real file whose writes,
//! growth and syncs can be made to fail as a full disk fails them. The
//! fault tests use it to check that a full disk gives typed errors and that
//! nothing half-written is visible after a restart.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

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
