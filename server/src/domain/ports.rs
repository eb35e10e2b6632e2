//! What a handler asks of the world, as one trait: the shard's state, the
//! store, the other shards, the clock and its timers, randomness, the
//! payment gateway, and background tasks.
//!
//! `io::shard::Shard` implements it with tokio, the shard mesh and the
//! configured store; `sim` implements it in one thread with a simulated
//! clock, a store and a gateway that fail on purpose, and a seeded random
//! source, so that the same handlers run under a seeded simulator and in
//! tests without sockets or a runtime. Handlers are generic over `Ports`,
//! so each use is compiled for its implementation: the indirection costs
//! nothing at run time.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use souk_storage::Store;
use souk_storage::store::{SharedLimits, StockEscrow, TokenStore};
use souk_wire::api::{Money, OrderId, UnixMillis};

use super::catalog::Catalog;
use super::{ShardAnswer, ShardCall, ShardState};
use crate::shard::ShardId;
use crate::shard::mesh::CallError;

/// A background task on the shard (a payment, a sweep).
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

pub trait Ports: Sized + 'static {
    fn shard(&self) -> ShardId;
    /// What this shard owns. Never borrowed across an `.await`.
    fn state(&self) -> &RefCell<ShardState>;
    fn store(&self) -> &dyn Store;
    /// Where refresh tokens and sign-out cutoffs live: the store, or a
    /// store every node shares.
    fn sessions(&self) -> &dyn TokenStore;
    /// Limits every node counts together, when configured; otherwise each
    /// limit is kept by the shard that owns its key.
    fn shared_limits(&self) -> Option<&dyn SharedLimits>;
    fn now(&self) -> UnixMillis;
    /// Fills `bytes` from the random source: the operating system's in a
    /// server (tokens are secrets), a seeded one in the simulator.
    fn fill_random(&self, bytes: &mut [u8]);
    /// Resolves once `duration` has passed on this shard's clock.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()>;
    /// Sends `call` to `owner`, another shard, and awaits its answer.
    fn send(
        &self,
        owner: ShardId,
        call: ShardCall,
    ) -> impl Future<Output = Result<ShardAnswer, CallError>>;
    /// Runs a task on this shard in the background, for as long as the
    /// shard runs; a stop or a crash ends it wherever it is.
    fn spawn(&self, task: Task);
    /// Runs CPU-heavy work (password hashing) off the shard's event loop;
    /// `None` if it could not run to the end.
    fn offload<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>>;
    /// Asks the payment gateway to charge `amount` for `order`. The order
    /// id is the idempotency key: asking again never charges twice.
    fn charge(
        &self,
        order: OrderId,
        payment_method_token: &str,
        amount: Money,
    ) -> impl Future<Output = Result<String, GatewayError>>;
    /// Gives back whatever the gateway charged for `order` (nothing if it
    /// charged nothing): the order id is the key, so asking twice refunds
    /// once.
    fn refund(
        &self,
        order: OrderId,
        amount: Money,
    ) -> impl Future<Output = Result<(), GatewayError>>;
    /// The latest catalog published to every shard (this shard's copy may
    /// lag it by a wake-up).
    fn latest_catalog(&self) -> std::sync::Arc<Catalog>;
    /// Publishes `catalog` to every shard.
    fn publish_catalog(&self, catalog: std::sync::Arc<Catalog>);
    /// Stock changed in a way listings show: every shard drops the
    /// replies it cached.
    fn replies_stale(&self);
    /// Where several nodes share stock through their cluster: this node's
    /// side of the escrow. `None` on a node that owns its stock alone.
    fn escrow(&self) -> Option<&dyn StockEscrow> {
        None
    }
    /// Counts units moved from the pool (`took`) or back to it.
    fn escrow_moved(&self, _took: bool, _units: i64) {}
}

/// Why a charge did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The payment was refused (card declined); asking again gets the same.
    Declined(String),
    /// The gateway did not answer (down, or timed out, perhaps after
    /// charging): the outcome is unknown, so the charge is asked again with
    /// the same key later.
    Unavailable(String),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Declined(reason) => write!(f, "declined: {reason}"),
            GatewayError::Unavailable(reason) => write!(f, "gateway unavailable: {reason}"),
        }
    }
}
