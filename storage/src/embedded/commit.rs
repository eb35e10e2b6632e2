//! Group commit in two stages. The commit thread owns the engine's write
//! side: writers from every shard queue their operations; it runs everything
//! queued (up to `COMMIT_BATCH_MAX`) in one write transaction and applies it
//! (one journal write). The sync threads make applied groups durable: an
//! fsync begun after a group was applied covers it and every group before
//! it, and only when one returns are those groups' writers told their
//! outcome. The stages overlap, so the commit thread applies the next group
//! while fsyncs run; under load thousands of writes share one fsync, and at
//! low load a write waits for nothing but its own. When there is nothing to
//! overlap (no fsync under way, no write waiting), the commit thread fsyncs
//! the group itself: a lone write then crosses one thread fewer.
//!
//! Up to `SYNC_THREADS` fsyncs run at once. A disk overlaps concurrent
//! fsyncs (this machine's, on one file: one thread 2,600 fsyncs/s, two
//! threads 3,800/s, four 6,200/s), so a group applied while an fsync runs
//! need not wait for that fsync to end before its own begins: a write
//! waits about one fsync, not up to two. An fsync that returns covers
//! every group applied before it began, so fsyncs running at once may
//! return in any order: each tells the writers of the groups it covers
//! that no other has told yet.
//!
//! An applied group is visible to readers before it is durable. So that no
//! read ever returns what a crash could take back, a read calls `settled`
//! after reading: it returns once every group applied before the read
//! ended is durable (at once when nothing is in flight).
//!
//! An operation checks everything it needs (conditions, sizes) before its
//! first write, so a refused operation has written nothing. An operation
//! that fails part-way with an I/O error poisons the whole transaction, and
//! the group is discarded rather than applied with half an operation in
//! it: every writer in it gets the error and nothing of the group is
//! durable or visible. A failed fsync leaves the journal's state unknown
//! (the kernel may have dropped the dirty pages), so it fails every writer
//! waiting on it and every later write and read until a restart recovers
//! from what is on disk.
//!
//! Which fsync covers which group, whom it tells, and when the commit
//! thread waits is `pipeline`: bookkeeping without threads, locks or clock,
//! which a seeded model of these threads drives through interleavings real
//! threads reach once in many runs.

mod pipeline;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::engine::{Engine, WriteTxn};
use crate::error::{Result, StorageError};
use crate::limits::{COMMIT_BATCH_MAX, COMMIT_QUEUE_MAX};
use crate::store::{SYNC_BUCKETS_SECONDS, WriteStats};
use pipeline::{HandedOver, Pipeline};

/// fsyncs that may run at once. With two, a group applied while both run
/// waits for one to end (about 50 µs per group at 64 writers); a third
/// cut that to about 37 µs and committed about 1.05x as many orders per
/// second at 16 to 256 writers. Four were no faster than two, and each
/// fsync took longer.
const SYNC_THREADS: usize = 3;

/// Called once the group is durable or has failed.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// An operation run inside the group's transaction. Its result says
/// whether it poisoned the transaction.
type Job = Box<dyn FnOnce(&mut dyn WriteTxn) -> (bool, Completion) + Send>;

/// A job and when it was queued, for the time writes wait for a group.
struct Queued {
    at: Instant,
    job: Job,
}

/// Whether an operation's error leaves the transaction unfit to commit:
/// refusals happen before any write; I/O-class errors may come after some.
fn poisons(error: &StorageError) -> bool {
    matches!(
        error,
        StorageError::Io(_)
            | StorageError::DiskFull
            | StorageError::Unavailable(_)
            | StorageError::Corrupt { .. }
    )
}

fn sync_failed() -> StorageError {
    StorageError::Unavailable("an fsync failed, so the store stopped: restart".into())
}

/// How far the two stages have got, in group numbers.
struct Progress {
    /// The last group the commit thread began to apply. Set before the
    /// group's writes can be visible, so a read that saw them also sees a
    /// number at least this large.
    applied: AtomicU64,
    /// Set once an fsync failed: nothing applied after the last good one
    /// can be trusted.
    failed: AtomicBool,
    /// The last group whose writers may be told it is durable (or that it
    /// failed without writing anything); wakes readers waiting in `settled`.
    settled: watch::Sender<u64>,
}

impl Progress {
    /// Records that every group through `through` is durable; the number
    /// never goes back, as fsyncs running at once may return out of order.
    fn settle(&self, through: u64) {
        self.settled.send_if_modified(|settled| {
            let later = through > *settled;
            if later {
                *settled = through;
            }
            later
        });
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.settled.send_modify(|_| {});
    }
}

/// What `Committer::stats` reports: `groups`, `writes` and the queue and
/// apply times are counted by the commit thread, fsyncs and hand-overs by
/// whichever thread ran the fsync (a sync thread, or the commit thread for
/// a lone group), `busy` by refused writers.
#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    writes: AtomicU64,
    busy: AtomicU64,
    queue_nanos: AtomicU64,
    apply_nanos: AtomicU64,
    handover_nanos: AtomicU64,
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
    sync_buckets: [AtomicU64; SYNC_BUCKETS_SECONDS.len()],
}

fn add(counter: &AtomicU64, took: Duration) {
    counter.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
}

impl Counters {
    fn count_sync(&self, took: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        add(&self.sync_nanos, took);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in SYNC_BUCKETS_SECONDS.iter().zip(&self.sync_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A group on its way from the commit thread to the sync threads.
struct Applied {
    number: u64,
    /// When the apply ended: the hand-over to an fsync is timed from here.
    at: Instant,
    /// The apply's outcome: an `Err` group wrote nothing and needs no sync.
    outcome: Result<()>,
    completions: Vec<Completion>,
}

pub struct Committer {
    queue: Mutex<Option<SyncSender<Queued>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Cleared by the first failed commit or sync: the engine may be unable
    /// to write (a full disk), so a clean-shutdown flush must not be tried.
    healthy: Arc<AtomicBool>,
    progress: Arc<Progress>,
    counters: Arc<Counters>,
}

impl Committer {
    pub fn start(engine: Arc<dyn Engine>) -> std::io::Result<Committer> {
        let (queue, jobs) = sync_channel::<Queued>(COMMIT_QUEUE_MAX);
        let healthy = Arc::new(AtomicBool::new(true));
        let progress = Arc::new(Progress {
            applied: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            settled: watch::Sender::new(0),
        });
        let counters = Arc::new(Counters::default());
        let stage = Arc::new(Stage {
            engine,
            syncs: Syncs::default(),
            healthy: healthy.clone(),
            progress: progress.clone(),
            counters: counters.clone(),
        });
        let mut threads = Vec::with_capacity(1 + SYNC_THREADS);
        let mut spawned = Ok(());
        for _ in 0..SYNC_THREADS {
            let stage = stage.clone();
            spawned = std::thread::Builder::new()
                .name("souk-sync".into())
                .spawn(move || stage.sync_loop())
                .map(|thread| threads.push(thread));
            if spawned.is_err() {
                break;
            }
        }
        if spawned.is_ok() {
            let stage = stage.clone();
            spawned = std::thread::Builder::new()
                .name("souk-commit".into())
                .spawn(move || {
                    stage.commit_loop(jobs);
                    stage.syncs.close();
                })
                .map(|thread| threads.push(thread));
        }
        if let Err(error) = spawned {
            // Lets the sync threads already started end: nothing will hand
            // them work.
            stage.syncs.close();
            return Err(error);
        }
        Ok(Committer {
            queue: Mutex::new(Some(queue)),
            threads: Mutex::new(threads),
            healthy,
            progress,
            counters,
        })
    }

    /// The group commit's counters so far.
    pub fn stats(&self) -> WriteStats {
        let counters = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let seconds = |counter: &AtomicU64| read(counter) as f64 / 1e9;
        WriteStats {
            groups: read(&counters.groups),
            writes: read(&counters.writes),
            busy: read(&counters.busy),
            queue_seconds: seconds(&counters.queue_nanos),
            apply_seconds: seconds(&counters.apply_nanos),
            handover_seconds: seconds(&counters.handover_nanos),
            syncs: read(&counters.syncs),
            sync_seconds: seconds(&counters.sync_nanos),
            sync_buckets: std::array::from_fn(|i| read(&counters.sync_buckets[i])),
            healthy: self.healthy(),
        }
    }

    /// Whether every commit and sync so far succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Runs `operation` in the next group commit and returns its result once
    /// the group is durable. Never blocks: a full queue is `Busy` at once.
    pub async fn write<R, F>(&self, operation: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn WriteTxn) -> Result<R> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = operation(txn);
            let poisoned = result.as_ref().err().is_some_and(poisons);
            let completion: Completion = Box::new(move |commit| {
                let _ = reply.send(match (result, commit) {
                    (Err(error), _) | (Ok(_), Err(error)) => Err(error),
                    (Ok(value), Ok(())) => Ok(value),
                });
            });
            (poisoned, completion)
        });
        let sender = self.queue.lock().expect("not poisoned").clone();
        let Some(sender) = sender else {
            return Err(StorageError::Unavailable("the store is closed".into()));
        };
        let queued = Queued {
            at: Instant::now(),
            job,
        };
        sender.try_send(queued).map_err(|error| match error {
            TrySendError::Full(_) => {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                StorageError::Busy
            }
            TrySendError::Disconnected(_) => {
                StorageError::Unavailable("the store is closed".into())
            }
        })?;
        outcome
            .await
            .map_err(|_| StorageError::Unavailable("the commit thread stopped".into()))?
    }

    /// Returns once everything a read that has just ended could have seen
    /// is durable, so the read may be answered. At once when no group is
    /// between apply and fsync; otherwise within one fsync.
    pub async fn settled(&self) -> Result<()> {
        let progress = &self.progress;
        let applied = progress.applied.load(Ordering::SeqCst);
        let ready = |settled: u64| -> Option<Result<()>> {
            if progress.failed.load(Ordering::SeqCst) {
                Some(Err(sync_failed()))
            } else {
                (settled >= applied).then_some(Ok(()))
            }
        };
        if let Some(outcome) = ready(*progress.settled.borrow()) {
            return outcome;
        }
        let mut outcome = None;
        // The sender lives in `progress`, which `self` holds: waiting ends
        // only when the outcome is known.
        let _ = progress
            .settled
            .subscribe()
            .wait_for(|&settled| {
                outcome = ready(settled);
                outcome.is_some()
            })
            .await;
        outcome.unwrap_or_else(|| Err(StorageError::Unavailable("the store is closed".into())))
    }

    /// Commits what is queued, then stops the commit and sync threads. Later writes are
    /// refused as `Unavailable`.
    pub fn close(&self) {
        drop(self.queue.lock().expect("not poisoned").take());
        for thread in self.threads.lock().expect("not poisoned").drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Everything the commit thread and the sync threads share.
struct Stage {
    engine: Arc<dyn Engine>,
    syncs: Syncs,
    healthy: Arc<AtomicBool>,
    progress: Arc<Progress>,
    counters: Arc<Counters>,
}

/// Applied groups on their way to durability: the bookkeeping
/// (`commit/pipeline.rs`) and the condvars its answers call for.
#[derive(Default)]
struct Syncs {
    pipeline: Mutex<Pipeline>,
    /// Wakes a sync thread: a group was handed over, or the store closes.
    work: Condvar,
    /// Wakes the commit thread waiting for room to hand its group over.
    room: Condvar,
}

impl Syncs {
    fn lock(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .expect("never poisoned: a panic while held is a bug that stops the writes")
    }

    fn close(&self) {
        self.lock().close();
        self.work.notify_all();
    }
}

impl Stage {
    fn commit_loop(&self, jobs: Receiver<Queued>) {
        let mut group = Vec::with_capacity(COMMIT_BATCH_MAX);
        let mut number = 0;
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(job) => job,
                None => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            group.push(first);
            while group.len() < COMMIT_BATCH_MAX {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            number += 1;
            let counters = &self.counters;
            let began = Instant::now();
            counters.groups.fetch_add(1, Ordering::Relaxed);
            counters
                .writes
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let waited: Duration = group
                .iter()
                .map(|q| began.saturating_duration_since(q.at))
                .sum();
            add(&counters.queue_nanos, waited);
            let applied = if self.progress.failed.load(Ordering::SeqCst) {
                refuse(&mut group, sync_failed(), number)
            } else {
                apply_group(self.engine.as_ref(), &mut group, number, &self.progress)
            };
            add(
                &counters.apply_nanos,
                applied.at.saturating_duration_since(began),
            );
            if applied.outcome.is_err() {
                self.healthy.store(false, Ordering::SeqCst);
            }
            next = jobs.try_recv().ok();
            self.hand_over(applied, next.is_some());
        }
    }

    /// Hands an applied group to the sync stage, waiting while there is no
    /// room for it, and syncs it here when there is nothing to overlap.
    fn hand_over(&self, mut group: Applied, more_queued: bool) {
        let mut pipeline = self.syncs.lock();
        loop {
            match pipeline.hand_over(group, more_queued) {
                Ok(HandedOver::SyncHere) => return self.sync_round(pipeline),
                Ok(HandedOver::WakeSyncThread) => {
                    drop(pipeline);
                    self.syncs.work.notify_one();
                    return;
                }
                Err(back) => {
                    group = back;
                    pipeline = self.syncs.room.wait(pipeline).expect("never poisoned");
                }
            }
        }
    }

    fn sync_loop(&self) {
        let mut pipeline = self.syncs.lock();
        loop {
            if pipeline.uncovered() {
                self.sync_round(pipeline);
                pipeline = self.syncs.lock();
            } else if pipeline.closed() {
                return;
            } else {
                pipeline = self.syncs.work.wait(pipeline).expect("never poisoned");
            }
        }
    }

    /// Runs one fsync covering every group handed over so far, then tells
    /// the writers of every group it covers that are still waiting. Takes
    /// the lock with a group not yet covered, and returns without it.
    fn sync_round(&self, mut pipeline: MutexGuard<'_, Pipeline>) {
        // One clock read times both the hand-over (until now) and the fsync.
        let began = Instant::now();
        let round = pipeline.begin_round(began);
        drop(pipeline);
        if round.wake_commit {
            self.syncs.room.notify_one();
        }
        let sync = if self.progress.failed.load(Ordering::SeqCst) {
            Err(sync_failed())
        } else if round.needs_sync {
            add(&self.counters.handover_nanos, round.handover);
            let sync = self.engine.sync();
            self.counters.count_sync(began.elapsed());
            sync
        } else {
            Ok(())
        };
        let mut pipeline = self.syncs.lock();
        // An fsync begun later may have returned first and told some of
        // this round's groups already.
        let ended = pipeline.end_round(&round, sync.is_ok());
        match &sync {
            Ok(()) => self.progress.settle(round.through),
            Err(_) => {
                self.healthy.store(false, Ordering::SeqCst);
                self.progress.fail();
            }
        }
        drop(pipeline);
        if ended.wake_commit {
            self.syncs.room.notify_one();
        }
        for group in ended.told {
            let outcome = group.outcome.and(sync.clone());
            for completion in group.completions {
                completion(outcome.clone());
            }
        }
    }
}

/// Runs one group's operations and applies them as one transaction.
fn apply_group(
    engine: &dyn Engine,
    group: &mut Vec<Queued>,
    number: u64,
    progress: &Progress,
) -> Applied {
    let mut txn = match engine.begin() {
        Ok(txn) => txn,
        Err(error) => return refuse(group, error, number),
    };
    let mut completions = Vec::with_capacity(group.len());
    let mut poisoned = false;
    for Queued { job, .. } in group.drain(..) {
        let (poisons, completion) = job(txn.as_mut());
        poisoned |= poisons;
        completions.push(completion);
    }
    let outcome = if poisoned {
        drop(txn);
        Err(StorageError::Io(
            "a write in this group failed part-way; the group was discarded".into(),
        ))
    } else {
        progress.applied.store(number, Ordering::SeqCst);
        txn.apply()
    };
    Applied {
        number,
        at: Instant::now(),
        outcome,
        completions,
    }
}

/// A group that never ran: each operation meets `error` at its first step.
fn refuse(group: &mut Vec<Queued>, error: StorageError, number: u64) -> Applied {
    let completions = group
        .drain(..)
        .map(|Queued { job, .. }| job(&mut Refused(error.clone())).1)
        .collect();
    Applied {
        number,
        at: Instant::now(),
        outcome: Err(error),
        completions,
    }
}

/// A stand-in transaction that refuses everything, for jobs whose group
/// could not open a real one.
struct Refused(StorageError);

impl WriteTxn for Refused {
    fn get(&mut self, _: super::engine::Table, _: &[u8]) -> Result<Option<Vec<u8>>> {
        Err(self.0.clone())
    }
    fn scan_prefix(
        &mut self,
        _: super::engine::Table,
        _: &[u8],
    ) -> Result<Vec<super::engine::Pair>> {
        Err(self.0.clone())
    }
    fn scan_from(
        &mut self,
        _: super::engine::Table,
        _: &[u8],
        _: usize,
    ) -> Result<Vec<super::engine::Pair>> {
        Err(self.0.clone())
    }
    fn put(&mut self, _: super::engine::Table, _: &[u8], _: &[u8]) -> Result<()> {
        Err(self.0.clone())
    }
    fn delete(&mut self, _: super::engine::Table, _: &[u8]) -> Result<()> {
        Err(self.0.clone())
    }
    fn apply(self: Box<Self>) -> Result<()> {
        Err(self.0)
    }
}
