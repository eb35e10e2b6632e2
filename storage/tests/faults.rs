//! A full disk: writes fail with a typed error, and after a restart every
//! acknowledged write is there and nothing of a failed one is.
//!
//! redb runs on a fault-injecting backend that can fail any write, growth
//! or sync, including part-way through a commit. fjall (the default engine)
//! has no pluggable I/O, so it runs on a real, tiny tmpfs that is filled up;
//! that test needs permission to mount (root, as in CI) and, where it has
//! none, skips with the reason, or fails under `SOUK_REQUIRE_ALL_TESTS`.
//!
//! Group commit's fsync stage runs on a real fjall engine whose syncs can be
//! held back or failed: a read never answers with a write that is not yet
//! durable, and a failed fsync fails its writers and stops the store.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use souk_storage::StorageError;
use souk_storage::embedded::engine::{Scan, Table};
use souk_storage::embedded::fault::{Faults, FaultyBackend, FaultySync, SyncFaults};
use souk_storage::embedded::redb_engine::RedbEngine;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::{OrderStore, SYNC_BUCKETS_SECONDS};
use souk_storage::testing;
use souk_wire::api::OrderId;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn redb_store(path: &Path, faults: &Arc<Faults>) -> EmbeddedStore {
    let backend = FaultyBackend::open(path, faults.clone()).unwrap();
    EmbeddedStore::with_engine(Arc::new(RedbEngine::open_with_backend(backend).unwrap())).unwrap()
}

/// Inserts orders `ids` concurrently (so that they share group commits) and
/// returns the ids acknowledged and the errors of the others.
async fn insert_all(
    store: &Arc<EmbeddedStore>,
    ids: std::ops::Range<u64>,
) -> (BTreeSet<u64>, Vec<StorageError>) {
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let store = store.clone();
        tasks.spawn(async move { (id, store.insert_order(&testing::order(id)).await) });
    }
    let (mut acked, mut errors) = (BTreeSet::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (id, Ok(())) => {
                acked.insert(id);
            }
            (_, Err(error)) => errors.push(error),
        }
    }
    (acked, errors)
}

/// Writes refused by a full disk fail with one of the I/O-class errors.
fn assert_disk_errors(errors: &[StorageError]) {
    for error in errors {
        assert!(
            matches!(
                error,
                StorageError::DiskFull | StorageError::Unavailable(_) | StorageError::Io(_)
            ),
            "typed error, got {error:?}"
        );
    }
}

/// Every acknowledged order is intact; every other one is wholly absent.
async fn check_after_restart(
    store: &EmbeddedStore,
    acked: &BTreeSet<u64>,
    ids: std::ops::Range<u64>,
) {
    for id in ids {
        let stored = store.order(OrderId(id)).await.unwrap();
        if acked.contains(&id) {
            assert_eq!(stored, Some(testing::order(id)), "acknowledged order {id}");
        } else if let Some(stored) = stored {
            // Committed, but the writer was told it failed: possible only if
            // the failure came after the commit; it must still be whole.
            assert_eq!(stored, testing::order(id));
        }
    }
}

#[test]
fn redb_full_disk_is_a_typed_error_and_nothing_failed_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("souk.redb");
    let faults = Arc::new(Faults::default());
    runtime().block_on(async {
        let store = Arc::new(redb_store(&path, &faults));
        let (acked, errors) = insert_all(&store, 1..50).await;
        assert_eq!(acked.len(), 49);
        assert!(errors.is_empty());
        faults.fill_disk();
        let refused = store.insert_order(&testing::order(100)).await.unwrap_err();
        assert_eq!(refused, StorageError::DiskFull);
        // Reads still work on a full disk.
        assert_eq!(
            store.order(OrderId(7)).await.unwrap(),
            Some(testing::order(7))
        );
        souk_storage::Store::close(&*store).await.unwrap();
        drop(store);

        faults.free_space();
        let store = redb_store(&path, &faults);
        check_after_restart(&store, &acked, 1..101).await;
        assert_eq!(store.order(OrderId(100)).await.unwrap(), None);
        store.insert_order(&testing::order(100)).await.unwrap();
    });
}

#[test]
fn redb_disk_filling_part_way_through_a_commit_loses_only_unacknowledged_writes() {
    for writes_before_full in [0, 1, 2, 3, 5, 8, 13, 21, 34] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("souk.redb");
        let faults = Arc::new(Faults::default());
        runtime().block_on(async {
            let store = Arc::new(redb_store(&path, &faults));
            let (mut acked, _) = insert_all(&store, 1..20).await;
            faults.fill_disk_after(writes_before_full);
            let (later, errors) = insert_all(&store, 20..60).await;
            acked.extend(later);
            assert_disk_errors(&errors);
            souk_storage::Store::close(&*store).await.unwrap();
            drop(store);
            faults.free_space();
            let store = redb_store(&path, &faults);
            check_after_restart(&store, &acked, 1..60).await;
        });
    }
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Takes every free byte with a filler file.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0xAAu8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.flush();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn fjall_on_a_full_disk_refuses_writes_typed_and_recovers_after_restart() {
    let disk = match SmallDisk::mount(64 * 1024 * 1024) {
        Ok(disk) => disk,
        Err(reason) => {
            testing::skip_or_fail(&format!("{reason} (run as root, with the right to mount)"));
            return;
        }
    };
    let store_dir = disk.path().join("store");
    runtime().block_on(async {
        let store = Arc::new(EmbeddedStore::open(&store_dir, EngineKind::Fjall).unwrap());
        let (acked, errors) = insert_all(&store, 1..200).await;
        assert!(errors.is_empty(), "{errors:?}");
        disk.fill();
        // The journal's blocks zero-filled ahead of its data (at most 256
        // KiB) still take writes; 2,800 orders need more than that.
        let (late, errors) = insert_all(&store, 200..3000).await;
        assert!(!errors.is_empty(), "a full disk refuses writes");
        assert_disk_errors(&errors);
        assert!(errors.contains(&StorageError::DiskFull), "{errors:?}");
        souk_storage::Store::close(&*store).await.unwrap();
        drop(store);

        disk.free();
        let acked: BTreeSet<u64> = acked.union(&late).copied().collect();
        let store = EmbeddedStore::open(&store_dir, EngineKind::Fjall).unwrap();
        check_after_restart(&store, &acked, 1..3000).await;
        store.insert_order(&testing::order(5000)).await.unwrap();
    });
}

fn fjall_with_sync_faults(dir: &Path, faults: &Arc<SyncFaults>) -> Arc<EmbeddedStore> {
    let engine = EngineKind::Fjall.open(dir).unwrap();
    let engine = Arc::new(FaultySync::new(engine, faults.clone()));
    Arc::new(EmbeddedStore::with_engine(engine).unwrap())
}

#[test]
fn a_read_waits_until_what_it_saw_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(SyncFaults::default());
    runtime().block_on(async {
        let store = fjall_with_sync_faults(dir.path(), &faults);
        store.insert_order(&testing::order(1)).await.unwrap();
        faults.hold();
        let insert = tokio::spawn({
            let store = store.clone();
            async move { store.insert_order(&testing::order(2)).await }
        });
        // Wait until the order is applied: in the engine, not yet durable.
        let applied = |store: &EmbeddedStore| {
            let orders = store.engine().scan(Table::Orders, Scan::prefix(b"", 10));
            orders.unwrap().len() == 2
        };
        while !applied(&store) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.order(OrderId(2)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!insert.is_finished(), "acknowledged before its fsync");
        assert!(!read.is_finished(), "answered with an undurable write");

        faults.release();
        insert.await.unwrap().unwrap();
        assert_eq!(read.await.unwrap().unwrap(), Some(testing::order(2)));
        // With nothing in flight, a read answers at once.
        assert_eq!(
            store.order(OrderId(1)).await.unwrap(),
            Some(testing::order(1))
        );
    });
}

#[test]
fn a_later_fsync_answers_every_group_it_covers_while_an_earlier_one_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(SyncFaults::default());
    runtime().block_on(async {
        let store = fjall_with_sync_faults(dir.path(), &faults);
        faults.hold_next();
        // A lone group is synced by the commit thread itself, which is not
        // held: write until a group reaches a sync thread and its fsync hangs.
        let mut next = 1;
        let mut stuck = tokio::task::JoinSet::new();
        while faults.waiting() == 0 {
            for id in next..next + 50 {
                let store = store.clone();
                stuck.spawn(async move { store.insert_order(&testing::order(id)).await });
            }
            next += 50;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(next < 100_000, "no group ever reached a sync thread");
        }
        // Applied after the hung fsync began, so it needs an fsync of its
        // own, which covers the hung one's groups too.
        let answered = async {
            let (acked, errors) = insert_all(&store, next..next + 50).await;
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(acked.len(), 50);
            while let Some(joined) = stuck.join_next().await {
                joined.unwrap().unwrap();
            }
        };
        let patience = std::time::Duration::from_secs(20);
        if tokio::time::timeout(patience, answered).await.is_err() {
            faults.release();
            panic!("writes waited for an fsync that began before they were applied");
        }
        assert_eq!(faults.waiting(), 1, "answered by the hung fsync");
        faults.release();
        // The hung fsync returns last: what it covered was settled by the
        // later one, and the settled number must not go back.
        store
            .insert_order(&testing::order(next + 50))
            .await
            .unwrap();
        assert_eq!(
            store.order(OrderId(next)).await.unwrap(),
            Some(testing::order(next))
        );
        souk_storage::Store::close(&*store).await.unwrap();
        drop(store);

        let store = EmbeddedStore::open(dir.path(), EngineKind::Fjall).unwrap();
        let acked: BTreeSet<u64> = (1..=next + 50).collect();
        check_after_restart(&store, &acked, 1..next + 51).await;
    });
}

#[test]
fn a_failed_fsync_fails_its_writers_and_stops_the_store_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(SyncFaults::default());
    runtime().block_on(async {
        let store = fjall_with_sync_faults(dir.path(), &faults);
        let (acked, errors) = insert_all(&store, 1..50).await;
        assert!(errors.is_empty(), "{errors:?}");
        faults.fail_syncs();
        let (late, errors) = insert_all(&store, 50..80).await;
        assert!(late.is_empty(), "acknowledged without an fsync: {late:?}");
        assert_eq!(errors.len(), 30);
        assert_disk_errors(&errors);
        // The journal's state is unknown after a failed fsync: later writes
        // and reads are refused rather than answered from it.
        let refused = store.insert_order(&testing::order(90)).await.unwrap_err();
        assert!(
            matches!(refused, StorageError::Unavailable(_)),
            "{refused:?}"
        );
        let refused = store.order(OrderId(7)).await.unwrap_err();
        assert!(
            matches!(refused, StorageError::Unavailable(_)),
            "{refused:?}"
        );
        let stats = souk_storage::Store::write_stats(&*store).unwrap();
        assert!(!stats.healthy, "{stats:?}");
        souk_storage::Store::close(&*store).await.unwrap();
        drop(store);

        let store = EmbeddedStore::open(dir.path(), EngineKind::Fjall).unwrap();
        check_after_restart(&store, &acked, 1..91).await;
        store.insert_order(&testing::order(1000)).await.unwrap();
        assert_eq!(
            store.order(OrderId(1000)).await.unwrap(),
            Some(testing::order(1000))
        );
    });
}

#[test]
fn a_full_commit_queue_answers_busy_at_once_and_the_counters_show_it() {
    use souk_storage::Store;
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(SyncFaults::default());
    runtime().block_on(async {
        let store = fjall_with_sync_faults(dir.path(), &faults);
        store.insert_order(&testing::order(1)).await.unwrap();
        let before = store.write_stats().unwrap();
        assert!(before.healthy && before.syncs >= 1, "{before:?}");

        // With fsyncs held, writes fill the groups waiting for a sync, then
        // the commit queue; past that they are refused, not queued.
        faults.hold();
        const WRITES: u64 = 60_000;
        let mut tasks = tokio::task::JoinSet::new();
        for id in 2..2 + WRITES {
            let store = store.clone();
            tasks.spawn(async move { store.insert_order(&testing::order(id)).await });
        }
        let mut busy = 0;
        // Only refusals can finish while fsyncs are held; a second with
        // none means the rest are waiting for the sync.
        let quiet = std::time::Duration::from_secs(1);
        while let Ok(Some(joined)) = tokio::time::timeout(quiet, tasks.join_next()).await {
            let refused = joined.unwrap().unwrap_err();
            assert!(matches!(refused, StorageError::Busy), "{refused:?}");
            busy += 1;
        }
        assert!(busy > 0, "a full commit queue never answered Busy");
        // At least those: a loaded machine may leave some refusals unseen
        // for a second; they are counted after the release.
        assert!(store.write_stats().unwrap().busy - before.busy >= busy);

        faults.release();
        let mut acked = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                Ok(()) => acked += 1,
                Err(StorageError::Busy) => busy += 1,
                Err(error) => panic!("{error:?}"),
            }
        }
        assert_eq!(acked + busy, WRITES);
        let after = store.write_stats().unwrap();
        assert!(after.healthy, "{after:?}");
        assert_eq!(after.busy - before.busy, busy);
        assert_eq!(after.writes - before.writes, acked);
        let groups = after.groups - before.groups;
        assert!(groups >= 1 && groups <= acked, "{after:?}");
        let syncs = after.syncs - before.syncs;
        assert!(syncs >= 1 && syncs <= groups, "{after:?}");
        assert!(after.sync_seconds > before.sync_seconds);
        // Cumulative buckets: each counts the fsyncs at most its bound.
        assert!(
            after.sync_buckets.windows(2).all(|w| w[0] <= w[1]),
            "{after:?}"
        );
        assert!(after.sync_buckets[SYNC_BUCKETS_SECONDS.len() - 1] <= after.syncs);
        // The hold lasted at least `quiet`, and the writes in the full queue
        // waited all of it for a group to take them.
        assert!(
            after.queue_seconds - before.queue_seconds >= quiet.as_secs_f64(),
            "{after:?}"
        );
        assert!(after.apply_seconds > before.apply_seconds, "{after:?}");
        let stored = store
            .engine()
            .scan(Table::Orders, Scan::prefix(b"", usize::MAX))
            .unwrap();
        assert_eq!(stored.len() as u64, 1 + acked);
    });
}
