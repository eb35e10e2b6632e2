//! Group commit: one thread owns the engine's write side. Writers from every
//! shard queue their operations; the thread runs everything queued (up to
//! `COMMIT_BATCH_MAX`) in one write transaction, commits it with one fsync,
//! and only then tells each writer its outcome. While one commit's fsync
//! runs, the next group gathers, so under load thousands of writes share
//! one fsync and at low load a write waits for nothing but its own commit.
//!
//! An operation checks everything it needs (conditions, sizes) before its
//! first write, so a refused operation has written nothing. An operation
//! that fails part-way with an I/O error poisons the whole transaction, and
//! the group is discarded rather than committed with half an operation in
//! it: every writer in it gets the error and nothing of the group is
//! durable or visible.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::engine::{Engine, WriteTxn};
use crate::error::{Result, StorageError};
use crate::limits::{COMMIT_BATCH_MAX, COMMIT_QUEUE_MAX};

/// Called once the group's commit has succeeded or failed.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// An operation run inside the group's transaction. Its result says
/// whether it poisoned the transaction.
type Job = Box<dyn FnOnce(&mut dyn WriteTxn) -> (bool, Completion) + Send>;

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

pub struct Committer {
    queue: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Cleared by the first failed commit: the engine may be unable to
    /// write (a full disk), so a clean-shutdown flush must not be tried.
    healthy: Arc<AtomicBool>,
}

impl Committer {
    pub fn start(engine: Arc<dyn Engine>) -> std::io::Result<Committer> {
        let (queue, jobs) = sync_channel::<Job>(COMMIT_QUEUE_MAX);
        let healthy = Arc::new(AtomicBool::new(true));
        let thread_healthy = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("souk-commit".into())
            .spawn(move || commit_loop(engine.as_ref(), jobs, &thread_healthy))?;
        Ok(Committer {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
            healthy,
        })
    }

    /// Whether every commit so far succeeded.
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
        sender.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => StorageError::Busy,
            TrySendError::Disconnected(_) => {
                StorageError::Unavailable("the store is closed".into())
            }
        })?;
        outcome
            .await
            .map_err(|_| StorageError::Unavailable("the commit thread stopped".into()))?
    }

    /// Commits what is queued, then stops the thread. Later writes are
    /// refused as `Unavailable`.
    pub fn close(&self) {
        drop(self.queue.lock().expect("not poisoned").take());
        if let Some(thread) = self.thread.lock().expect("not poisoned").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.close();
    }
}

fn commit_loop(engine: &dyn Engine, jobs: Receiver<Job>, healthy: &AtomicBool) {
    let mut group = Vec::with_capacity(COMMIT_BATCH_MAX);
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while group.len() < COMMIT_BATCH_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if !commit_group(engine, &mut group) {
            healthy.store(false, Ordering::SeqCst);
        }
    }
}

/// Commits one group; false when the commit (or the transaction) failed.
fn commit_group(engine: &dyn Engine, group: &mut Vec<Job>) -> bool {
    let mut txn = match engine.begin() {
        Ok(txn) => txn,
        Err(error) => {
            for job in group.drain(..) {
                // The operation never ran; report the engine's error.
                let (_, completion) = job(&mut Refused(error.clone()));
                completion(Err(error.clone()));
            }
            return false;
        }
    };
    let mut completions = Vec::with_capacity(group.len());
    let mut poisoned = false;
    for job in group.drain(..) {
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
        txn.commit()
    };
    let committed = outcome.is_ok();
    for completion in completions {
        completion(outcome.clone());
    }
    committed
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
    fn commit(self: Box<Self>) -> Result<()> {
        Err(self.0)
    }
}
