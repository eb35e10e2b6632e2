//! The cross-shard call primitive (Seastar's `invoke_on`): send a typed
//! message to the shard that owns the state and await its reply.
//!
//! Every shard has one bounded inbox. A caller never blocks its event loop on
//! a full inbox: `call` fails at once with `CallError::Busy`, which becomes a
//! `Busy` reply with a retry hint. Calls are counted per calling shard.
//!
//! The mesh knows nothing of what the messages mean: the call and answer
//! types are parameters, and the owner's handling of them lives in `domain`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ShardId;
use crate::stats::Stats;

/// A message in an owner shard's inbox.
#[derive(Debug)]
pub struct Envelope<Call, Answer> {
    pub from: ShardId,
    pub call: Call,
    pub reply: oneshot::Sender<Answer>,
}

/// An owner shard's end of the mesh.
pub type Inbox<Call, Answer> = mpsc::Receiver<Envelope<Call, Answer>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The owner's inbox is full: it is overloaded. Retry later.
    #[error("{0} is busy")]
    Busy(ShardId),
    /// The owner has stopped (the server is shutting down).
    #[error("{0} has stopped")]
    Stopped(ShardId),
    /// The owner did not answer in time.
    #[error("{0} did not answer in time")]
    Timeout(ShardId),
}

/// One shard's handle on every shard's inbox. Cheap to clone; each shard
/// holds its own.
#[derive(Debug)]
pub struct Mesh<Call, Answer> {
    me: ShardId,
    inboxes: Arc<[mpsc::Sender<Envelope<Call, Answer>>]>,
    stats: Arc<Stats>,
    timeout: Duration,
}

impl<Call, Answer> Clone for Mesh<Call, Answer> {
    fn clone(&self) -> Self {
        Mesh {
            me: self.me,
            inboxes: self.inboxes.clone(),
            stats: self.stats.clone(),
            timeout: self.timeout,
        }
    }
}

/// Creates the inboxes of `shard_count` shards, each bounded at
/// `inbox_max` messages, and returns each shard's mesh handle with its inbox.
pub fn build<Call, Answer>(
    shard_count: usize,
    inbox_max: usize,
    timeout: Duration,
    stats: Arc<Stats>,
) -> Vec<(Mesh<Call, Answer>, Inbox<Call, Answer>)> {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..shard_count).map(|_| mpsc::channel(inbox_max)).unzip();
    let inboxes: Arc<[_]> = senders.into();
    receivers
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| {
            let mesh = Mesh {
                me: ShardId(index as u16),
                inboxes: inboxes.clone(),
                stats: stats.clone(),
                timeout,
            };
            (mesh, inbox)
        })
        .collect()
}

impl<Call, Answer> Mesh<Call, Answer> {
    pub fn me(&self) -> ShardId {
        self.me
    }

    /// Sends `call` to shard `to` and awaits its answer. Local state is not
    /// reached through here: a shard calling itself is a bug.
    pub async fn call(&self, to: ShardId, call: Call) -> Result<Answer, CallError> {
        assert_ne!(to, self.me, "a shard handles its own state directly");
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope {
            from: self.me,
            call,
            reply,
        };
        let stats = self.stats.shard(self.me);
        stats.cross_shard_calls.increment();
        if let Err(error) = self.inboxes[to.index()].try_send(envelope) {
            return Err(match error {
                mpsc::error::TrySendError::Full(_) => {
                    stats.cross_shard_busy.increment();
                    CallError::Busy(to)
                }
                mpsc::error::TrySendError::Closed(_) => CallError::Stopped(to),
            });
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            // The owner dropped the reply without answering: it is stopping.
            Ok(Err(_)) => Err(CallError::Stopped(to)),
            Err(_) => Err(CallError::Timeout(to)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_call_reaches_the_owner_and_its_answer_comes_back() {
        let stats = Arc::new(Stats::new(2));
        let mut shards = build::<u32, u32>(2, 4, Duration::from_secs(1), stats.clone());
        let (_, mut owner_inbox) = shards.pop().unwrap();
        let (caller, _) = shards.pop().unwrap();
        let owner = std::thread::spawn(move || {
            runtime().block_on(async {
                let envelope = owner_inbox.recv().await.unwrap();
                assert_eq!(envelope.from, ShardId(0));
                envelope.reply.send(envelope.call * 2).unwrap();
            })
        });
        let answer = runtime().block_on(caller.call(ShardId(1), 21));
        owner.join().unwrap();
        assert_eq!(answer, Ok(42));
        assert_eq!(stats.shard(ShardId(0)).cross_shard_calls.get(), 1);
    }

    #[test]
    fn a_full_inbox_is_busy_at_once_and_never_blocks() {
        let stats = Arc::new(Stats::new(2));
        let mut shards = build::<u32, u32>(2, 2, Duration::from_secs(60), stats.clone());
        // The owner never reads its inbox: it is wedged.
        let (_, _owner_inbox) = shards.pop().unwrap();
        let (caller, _) = shards.pop().unwrap();
        runtime().block_on(async {
            let mut pending = Vec::new();
            for n in 0..2 {
                let caller = caller.clone();
                pending.push(tokio::spawn(
                    async move { caller.call(ShardId(1), n).await },
                ));
            }
            tokio::task::yield_now().await;
            assert_eq!(
                caller.call(ShardId(1), 9).await,
                Err(CallError::Busy(ShardId(1)))
            );
            for task in pending {
                task.abort();
            }
        });
        assert_eq!(stats.shard(ShardId(0)).cross_shard_busy.get(), 1);
    }

    #[test]
    fn a_stopped_owner_is_reported_not_awaited() {
        let stats = Arc::new(Stats::new(2));
        let mut shards = build::<u32, u32>(2, 2, Duration::from_secs(60), stats);
        drop(shards.pop());
        let (caller, _) = shards.pop().unwrap();
        let answer = runtime().block_on(caller.call(ShardId(1), 1));
        assert_eq!(answer, Err(CallError::Stopped(ShardId(1))));
    }
}
