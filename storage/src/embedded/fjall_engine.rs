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
//!
//! After each apply the commit thread writes zeros a little ahead of the
//! journal's data (`Prefill`), so that an fdatasync writes data blocks and
//! no block allocation: fsyncs about 30 % shorter on this machine's ext4.
//!
//! A thread of its own frees the memtables fjall has flushed (`Reaper`),
//! which fjall would free while every write to the keyspace waits.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{
    AbstractTree, Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Slice,
};

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
    /// First, so that it stops before the database closes: its thread holds
    /// the keyspaces.
    #[allow(dead_code, reason = "held for its drop, which stops the thread")]
    reaper: Reaper,
    db: Database,
    /// In `Table::ALL` order.
    keyspaces: Vec<Keyspace>,
    path: PathBuf,
    /// The active journal as `sync` last found it, by id.
    journal: Mutex<Option<(u64, Arc<File>)>>,
    /// Zero-filling ahead of the journal's writes (see `Prefill`); only the
    /// commit thread takes it.
    prefill: Mutex<Prefill>,
}

/// Frees the memtables fjall has flushed, on a thread of its own.
///
/// Once a memtable is flushed, fjall drops the last version that refers to
/// it while it holds the keyspace's version lock, which every write to the
/// keyspace takes: freeing a full memtable (64 MiB, a skiplist of some
/// hundreds of thousands of nodes) took about 150 ms here, and every commit
/// waited that long, once per memtable flushed. The reaper holds a reference
/// to each keyspace's active memtable, so that fjall's drop only lowers a
/// count; once the reaper's is the last reference, nothing in fjall can
/// reach the memtable again and the reaper frees it.
///
/// fjall lets go of a flushed memtable at its next rotation of a memtable or
/// compaction. The reaper looks every `REAP_EVERY`; a memtable sealed between
/// two looks is freed by fjall as before, which only a small one can be: a
/// full one takes longer than that to fill. This rests on fjall
/// keeping memtables in `Arc`s reached through `Keyspace::tree`, which the
/// test below checks, to re-check before upgrading fjall.
struct Reaper {
    stop: Arc<AtomicBool>,
    /// Memtables the reaper has freed (for the tests).
    #[allow(dead_code, reason = "read by the tests")]
    freed: Arc<AtomicU64>,
    /// Memtables it holds now: each keyspace's active one, and those fjall
    /// has sealed and not yet let go of (for the tests).
    #[allow(dead_code, reason = "read by the tests")]
    held: Arc<AtomicU64>,
    /// Looks it has finished (for the tests).
    #[allow(dead_code, reason = "read by the tests")]
    looks: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

const REAP_EVERY: Duration = Duration::from_millis(10);

impl Reaper {
    fn start(keyspaces: Vec<Keyspace>) -> std::io::Result<Reaper> {
        let stop = Arc::new(AtomicBool::new(false));
        let freed = Arc::new(AtomicU64::new(0));
        let held_count = Arc::new(AtomicU64::new(0));
        let looks = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("souk-reaper".into())
            .spawn({
                let (stop, freed, held_count, looks) = (
                    stop.clone(),
                    freed.clone(),
                    held_count.clone(),
                    looks.clone(),
                );
                move || {
                    // Freeing a memtable takes a core for as long as the
                    // stall it saves; at the lowest priority it takes what
                    // the commit path leaves. Only a cost if it fails.
                    let this = Some(rustix::thread::gettid());
                    let _ = rustix::process::setpriority_process(this, 19);
                    let mut newest = vec![None; keyspaces.len()];
                    let mut held = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        for (keyspace, newest) in keyspaces.iter().zip(&mut newest) {
                            let memtable = keyspace.tree.active_memtable();
                            if *newest != Some(memtable.id()) {
                                *newest = Some(memtable.id());
                                held.push(memtable);
                            }
                        }
                        let before = held.len();
                        held.retain(|memtable| Arc::strong_count(memtable) > 1);
                        freed.fetch_add((before - held.len()) as u64, Ordering::Relaxed);
                        held_count.store(held.len() as u64, Ordering::Relaxed);
                        looks.fetch_add(1, Ordering::Relaxed);
                        std::thread::park_timeout(REAP_EVERY);
                    }
                }
            })?;
        Ok(Reaper {
            stop,
            freed,
            held: held_count,
            looks,
            thread: Some(thread),
        })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The size fjall gives a new journal (`set_len`, so a hole); data is
/// written into it from offset 0. A journal of any other length (one
/// reopened after recovery, which cut it to its data and appends) is never
/// prefilled, so the file never grows under fjall: zeros past its end
/// would come before the next batch. So after a restart the prefill waits
/// for fjall's next journal (after about 64 MB of writes).
const JOURNAL_PREALLOCATED: u64 = 64 * 1024 * 1024;
/// Zeros written ahead of the journal's data at a time.
const PREFILL_CHUNK: u64 = 256 * 1024;
const BLOCK: usize = 4096;

/// Writes zeros ahead of the journal's data, as PostgreSQL zero-fills its
/// WAL segments. fjall's journal is a 64 MiB hole that batches are written
/// into; an fdatasync after a write into a hole must also write the new
/// block allocation, which costs about as much again as the data. Into
/// blocks already written (with zeros) the fdatasync writes data alone.
///
/// It only ever writes zeros into the file's holes (found with
/// `SEEK_HOLE`/`SEEK_DATA`, which count written-but-unallocated pages as
/// data), from the commit thread, which is the only thread that writes
/// batches to the journal (and every batch is written through to the
/// kernel before `apply` returns): so no byte of the journal changes, and
/// what recovery reads is the same with or without it. A filesystem that
/// cannot report holes reports none, and nothing is written.
#[derive(Default)]
struct Prefill {
    /// The journal being prefilled, by id; `None` in the file slot once it
    /// cannot be (another length, or a failed write: it only costs speed).
    journal: Option<(u64, Option<File>)>,
    /// Zeros are written up to here.
    filled: u64,
    /// Keys and values applied since this journal began: a lower bound of
    /// where its data ends (fjall adds headers; the journal is not
    /// compressed).
    applied: u64,
}

static ZEROS: [u8; PREFILL_CHUNK as usize] = [0; PREFILL_CHUNK as usize];

/// The holes of `file` between `from` and `to`, as ranges.
fn holes(file: &File, from: u64, to: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut holes = Vec::new();
    let mut at = from;
    while at < to {
        let hole = seek(file, SeekFrom::Hole(at))?;
        if hole >= to {
            break;
        }
        let data = match seek(file, SeekFrom::Data(hole)) {
            Ok(data) => data.min(to),
            // No data after the hole: it runs to the end of the file.
            Err(rustix::io::Errno::NXIO) => to,
            Err(error) => return Err(error.into()),
        };
        holes.push((hole, data));
        at = data;
    }
    Ok(holes)
}

impl Prefill {
    /// Called after each batch of `bytes` (keys and values) is applied.
    fn advance(&mut self, folder: &Path, bytes: u64) {
        let current = self
            .journal
            .as_ref()
            .is_some_and(|(id, _)| still_newest(folder, *id));
        if !current {
            let Ok((id, path)) = active_journal(folder) else {
                return;
            };
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .ok()
                .filter(|f| f.metadata().is_ok_and(|m| m.len() == JOURNAL_PREALLOCATED));
            self.journal = Some((id, file));
            self.filled = 0;
            self.applied = 0;
        }
        self.applied += bytes;
        let Some((_, Some(file))) = &self.journal else {
            return;
        };
        if self.filled >= JOURNAL_PREALLOCATED {
            return;
        }
        use std::os::unix::fs::FileExt;
        // Refill once the data reaches the second half of what is filled:
        // known from the bytes applied, or seen in the journal (the
        // data's headers make it run ahead of that count).
        let probe = self.filled.saturating_sub(PREFILL_CHUNK / 2);
        if self.filled > 0 && self.applied < probe {
            let mut block = [0u8; BLOCK];
            match file.read_exact_at(&mut block, probe) {
                Ok(()) if block.iter().all(|&b| b == 0) => return,
                Ok(()) => {}
                Err(_) => return self.stop(),
            }
        }
        let end = (self.filled + PREFILL_CHUNK).min(JOURNAL_PREALLOCATED);
        let filled = holes(file, self.filled, end).and_then(|holes| {
            for (from, to) in holes {
                file.write_all_at(&ZEROS[..(to - from) as usize], from)?;
            }
            Ok(())
        });
        match filled {
            Ok(()) => self.filled = end,
            Err(_) => self.stop(),
        }
    }

    fn stop(&mut self) {
        if let Some((_, file)) = &mut self.journal {
            *file = None;
        }
    }
}

/// Whether journal `id` is still the newest: fjall numbers journals one
/// after another, so it is unless the next id exists (one stat instead of
/// a directory listing).
fn still_newest(folder: &Path, id: u64) -> bool {
    !folder.join(format!("{}.jnl", id + 1)).exists()
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
            .collect::<Result<Vec<Keyspace>>>()?;
        let reaper = Reaper::start(keyspaces.clone())?;
        Ok(FjallEngine {
            db,
            keyspaces,
            path: path.to_path_buf(),
            journal: Mutex::new(None),
            prefill: Mutex::new(Prefill::default()),
            reaper,
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
        // Several fsyncs run at once, so the lock is not held through one.
        let file = {
            let mut journal = self.journal.lock().expect("not poisoned");
            let current = journal
                .as_ref()
                .is_some_and(|(open, _)| still_newest(&self.path, *open));
            if !current {
                let (id, path) = active_journal(&self.path)?;
                *journal = Some((id, Arc::new(File::open(path)?)));
            }
            journal.as_ref().expect("opened above").1.clone()
        };
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
            bytes: 0,
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
    /// Keys and values in the batch, for `Prefill`.
    bytes: u64,
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
        self.bytes += (key.len() + value.len()) as u64;
        let value = Slice::from(value);
        self.batch
            .insert(self.engine.keyspace(table), key, value.clone());
        self.overlay.insert((table, key.to_vec()), Some(value));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<()> {
        self.bytes += key.len() as u64;
        self.batch.remove(self.engine.keyspace(table), key);
        self.overlay.insert((table, key.to_vec()), None);
        Ok(())
    }

    fn apply(self: Box<Self>) -> Result<()> {
        // One journal write for the whole batch; fjall numbers it after
        // every batch before it, and replays only whole batches.
        self.batch.commit().map_err(error)?;
        self.engine
            .prefill
            .lock()
            .expect("not poisoned")
            .advance(&self.engine.path, self.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 10 s for `condition` (the reaper looks every 10 ms).
    fn eventually(condition: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        condition()
    }

    /// What the reaper assumes of fjall: once fjall lets go of a flushed
    /// memtable (at its next rotation), only the reaper's reference reaches
    /// it, so the reaper frees it; and it holds no more memtables than that.
    #[test]
    fn the_reaper_frees_flushed_memtables_and_keeps_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path()).unwrap();
        let reaper = &engine.reaper;
        let keyspaces = Table::ALL.len() as u64;
        assert!(eventually(
            || reaper.held.load(Ordering::Relaxed) == keyspaces
        ));
        for round in 0..4u8 {
            let written: Vec<Vec<u8>> = (0..100u8).map(|i| vec![round, i]).collect();
            for key in &written {
                apply(&engine, key, b"an order");
            }
            // Seals the memtable of the orders and writes it to a table;
            // fjall lets go of the one flushed the round before.
            engine.flush().unwrap();
            // The reaper takes up the new memtables at its next whole look.
            // It runs at the lowest priority: on a busy machine, a round
            // that went on first would seal them before it held them, and
            // fjall would free them as it did before the reaper.
            let looked = reaper.looks.load(Ordering::Relaxed);
            assert!(eventually(
                || reaper.looks.load(Ordering::Relaxed) >= looked + 2
            ));
            let freed = u64::from(round);
            assert!(
                eventually(|| reaper.freed.load(Ordering::Relaxed) >= freed),
                "round {round}: the reaper freed {} memtables, not {freed}",
                reaper.freed.load(Ordering::Relaxed)
            );
            // Nothing is lost with a memtable: it is in a table now.
            for key in &written {
                assert_eq!(
                    engine.get(Table::Orders, key).unwrap().as_deref(),
                    Some(&b"an order"[..])
                );
            }
        }
        // Each keyspace's active memtable, and the last one flushed, which
        // fjall has not let go of yet: none of the three before it.
        assert!(eventually(
            || reaper.held.load(Ordering::Relaxed) == keyspaces + 1
        ));
    }

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

    /// A data directory written when there were more tables (`events`, since
    /// removed) opens: fjall recovers every keyspace it finds and `open`
    /// asks only for those `Table` names, so the others are left unread.
    #[test]
    fn keyspaces_of_removed_tables_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let old_keyspace = |db: &Database| {
            db.keyspace("events", KeyspaceCreateOptions::default)
                .unwrap()
        };
        {
            let db = Database::builder(dir.path()).open().unwrap();
            old_keyspace(&db).insert(b"k", b"old-event").unwrap();
            db.persist(PersistMode::SyncAll).unwrap();
        }
        {
            let engine = FjallEngine::open(dir.path()).unwrap();
            apply(&engine, b"k", b"an order");
            assert_eq!(
                engine.get(Table::Orders, b"k").unwrap().as_deref(),
                Some(&b"an order"[..])
            );
            engine.flush().unwrap();
        }
        let db = Database::builder(dir.path()).open().unwrap();
        let stored = old_keyspace(&db).get(b"k").unwrap();
        assert_eq!(stored.as_deref(), Some(&b"old-event"[..]));
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
        // The prefill follows to the new journal.
        let prefill = engine.prefill.lock().unwrap();
        assert_eq!(prefill.journal.as_ref().unwrap().0, second);
        assert!(prefill.filled > 0);
    }

    /// Bytes of the file that have disk blocks (holes have none).
    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn the_prefill_allocates_ahead_of_the_journal_and_changes_no_byte() {
        let dir = tempfile::tempdir().unwrap();
        let engine = FjallEngine::open(dir.path()).unwrap();
        // Values with whole zero blocks in them: journal data that reads as
        // zero must come through as it was.
        let mut value = vec![0u8; 3 * BLOCK];
        value[..17].copy_from_slice(b"order-marker-5d0e");
        for i in 0u32..40 {
            apply(&engine, &i.to_be_bytes(), &value);
        }
        let (_, path) = active_journal(dir.path()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            JOURNAL_PREALLOCATED
        );
        let filled = engine.prefill.lock().unwrap().filled;
        assert!(
            filled > 40 * value.len() as u64,
            "zeros are written ahead of the data ({filled} bytes)"
        );
        assert!(allocated(&path) >= filled, "the prefilled range has blocks");

        // Filling again from the start, over the data, changes nothing.
        let before = std::fs::read(&path).unwrap();
        let mut again = Prefill::default();
        again.advance(dir.path(), 0);
        assert_eq!(again.filled, PREFILL_CHUNK);
        assert!(before == std::fs::read(&path).unwrap(), "no byte changed");

        drop(engine);
        let engine = FjallEngine::open(dir.path()).unwrap();
        for i in 0u32..40 {
            let stored = engine.get(Table::Orders, &i.to_be_bytes()).unwrap();
            assert_eq!(stored.as_deref(), Some(value.as_slice()), "batch {i}");
        }
    }

    #[test]
    fn zeros_go_into_holes_and_never_over_data_not_yet_on_disk() {
        // Written but not synced, the data has no blocks yet (delayed
        // allocation): it must still count as data, not as a hole.
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("5.jnl");
        let file = File::create(&path).unwrap();
        file.set_len(JOURNAL_PREALLOCATED).unwrap();
        let data = vec![0x5Au8; 3 * BLOCK + 100];
        file.write_all_at(&data, 100 * 1024).unwrap();
        let before = std::fs::read(&path).unwrap();
        let mut prefill = Prefill::default();
        prefill.advance(dir.path(), 0);
        assert_eq!(prefill.filled, PREFILL_CHUNK);
        assert!(before == std::fs::read(&path).unwrap(), "no byte changed");
        file.sync_all().unwrap();
        assert!(
            allocated(&path) >= PREFILL_CHUNK,
            "the holes around the data got blocks"
        );
    }

    #[test]
    fn a_journal_of_another_length_is_neither_prefilled_nor_grown() {
        // A journal reopened after recovery is cut to its data and appended
        // to: zeros past its end would come before the next batch.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3.jnl");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, &data).unwrap();
        let mut prefill = Prefill::default();
        prefill.advance(dir.path(), 0);
        prefill.advance(dir.path(), 10_000);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(prefill.filled, 0);
    }
}
