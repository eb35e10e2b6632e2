//! The storage traits: what souk keeps, as typed async operations. Every
//! backend (embedded, ScyllaDB) implements all of them, and one conformance
//! suite (`tests/conformance.rs`) holds each backend to the same behaviour.
//!
//! A write returns only once it is durable. Conditional writes (unique
//! e-mails, order state transitions, token rotation)
//! either happen whole or fail with `Conflict` having written nothing.
//! No FlatBuffers or CQL type appears here.

use async_trait::async_trait;
use souk_wire::api::{
    Address, AddressId, Category, IdempotencyKey, OrderId, OrderStatus, Product, ProductId, Sku,
    UnixMillis, UserId,
};

use crate::CatalogData;
use crate::error::Result;
use crate::model::{
    CartRecord, OrderRecord, Page, PaymentRecord, RefreshTokenRecord, SnapshotProgress,
    StockRecord, StockSnapshot, UserRecord,
};

#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Whether a catalog was ever imported (the demo catalog or a real one).
    async fn catalog_imported(&self) -> Result<bool>;
    /// Writes categories, products and stock levels, and marks the catalog
    /// imported, in one atomic write.
    async fn import_catalog(&self, catalog: &CatalogData) -> Result<()>;
    /// The whole catalog with the persisted stock levels: what a server
    /// loads into its read cache at start.
    async fn load_catalog(&self) -> Result<CatalogData>;
    async fn upsert_product(&self, product: &Product) -> Result<()>;
    async fn product(&self, id: &ProductId) -> Result<Option<Product>>;
    /// Products changed (upserted) at or after `since`, by any node sharing
    /// this store: what a node polls to follow catalog changes made on
    /// others. The default has none: a store only one node uses sees its
    /// changes as it makes them.
    async fn catalog_changes(&self, _since: UnixMillis) -> Result<Vec<ProductId>> {
        Ok(Vec::new())
    }
    async fn put_categories(&self, categories: &[Category]) -> Result<()>;
}

#[async_trait]
pub trait StockStore: Send + Sync {
    /// Persists stock levels (a snapshot of counters).
    async fn put_stock(&self, levels: &[StockRecord]) -> Result<()>;
    async fn stock_levels(&self) -> Result<Vec<StockRecord>>;
    /// The stock snapshot (watermark 0, nothing sold, before the first).
    async fn stock_snapshot(&self) -> Result<StockSnapshot>;
    /// Folds orders from the snapshot's watermark up to `below` into it,
    /// in id order, stopping at the first order still pending payment and
    /// after `limit` orders, and moves the watermark past them, atomically.
    /// From then on `insert_order` refuses an order below the watermark
    /// with `Conflict`, so a folded range can never gain an order. Orders
    /// are those placed by shards `0..shards`.
    async fn advance_stock_snapshot(
        &self,
        below: OrderId,
        limit: usize,
        shards: u16,
    ) -> Result<SnapshotProgress>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; `Conflict` if the id or the e-mail (case-insensitive)
    /// is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    /// Replaces a user's profile; the e-mail cannot change here.
    async fn update_user(&self, user: &UserRecord) -> Result<()>;
    async fn put_address(&self, user: UserId, address: &Address) -> Result<()>;
    /// Whether the address existed.
    async fn delete_address(&self, user: UserId, id: AddressId) -> Result<bool>;
    async fn addresses(&self, user: UserId) -> Result<Vec<Address>>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn put_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()>;
    async fn refresh_token(&self, token_hash: &[u8; 32]) -> Result<Option<RefreshTokenRecord>>;
    /// Marks `old` rotated and stores `new`, atomically; `Conflict` (and no
    /// write) if `old` is missing, already rotated or revoked.
    async fn rotate_refresh_token(&self, old: &[u8; 32], new: &RefreshTokenRecord) -> Result<()>;
    /// Revokes every token of a family; returns how many.
    async fn revoke_token_family(&self, family: &[u8; 16]) -> Result<usize>;
    /// Signs `user` out of every session begun at or before `at`: the
    /// caller refuses refresh and access tokens issued by then. A cutoff
    /// never moves back (a later one wins, whatever order they arrive in).
    /// It may be forgotten after `keep_until`, once every token it could
    /// refuse has expired.
    async fn sign_out_everywhere(
        &self,
        user: UserId,
        at: UnixMillis,
        keep_until: UnixMillis,
    ) -> Result<()>;
    /// The user's latest sign-out cutoff, if one is kept.
    async fn signed_out_at(&self, user: UserId) -> Result<Option<UnixMillis>>;
}

/// Who holds a checkout's idempotency key across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClaim {
    /// The caller's order holds it now.
    Claimed,
    /// Another order claimed it at `claimed_at`; it may or may not have
    /// been stored.
    Taken {
        order: OrderId,
        claimed_at: UnixMillis,
    },
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Claims a checkout's idempotency key for `order` where every node
    /// sharing this store sees it, before any stock is reserved, so that a
    /// checkout retried on another node finds the first order. The default
    /// claims nothing: on a store only one node uses, the owner shard's
    /// index of recent keys is the whole truth.
    async fn claim_checkout_key(
        &self,
        _user: UserId,
        _key: IdempotencyKey,
        _order: OrderId,
        _now: UnixMillis,
    ) -> Result<KeyClaim> {
        Ok(KeyClaim::Claimed)
    }
    /// Moves a claim from `from` (an order that was never stored, claimed
    /// long enough ago that it never will be) to `order`; false when the
    /// claim is no longer `from`'s.
    async fn take_over_checkout_key(
        &self,
        _user: UserId,
        _key: IdempotencyKey,
        _from: OrderId,
        _order: OrderId,
        _now: UnixMillis,
    ) -> Result<bool> {
        Ok(true)
    }
    /// Gives up `order`'s claim: its checkout failed before anything was
    /// stored (no stock, say), and a retry may place another.
    async fn release_checkout_key(
        &self,
        _user: UserId,
        _key: IdempotencyKey,
        _order: OrderId,
    ) -> Result<()> {
        Ok(())
    }

    /// Stores a new order. Order ids are unique by construction (the owner
    /// shard makes them), so storing the same order again, as a retry after
    /// a timeout does, is harmless: it leaves one copy. An id below the
    /// stock snapshot's watermark is refused with `Conflict`.
    async fn insert_order(&self, order: &OrderRecord) -> Result<()>;
    async fn order(&self, id: OrderId) -> Result<Option<OrderRecord>>;
    /// `user`'s order `id` once every write in flight for it has settled:
    /// on a store where a conditional insert can be left half done (a
    /// timeout on a cluster), this completes or discards it first, so
    /// `None` means the order will never appear. The default reads it as
    /// `order` does: there every write is settled when it returns.
    async fn order_settled(&self, user: UserId, id: OrderId) -> Result<Option<OrderRecord>> {
        let _ = user;
        self.order(id).await
    }
    /// Replaces an order if its stored status is `expected`; `Conflict`
    /// otherwise, `NotFound` if it does not exist.
    async fn update_order(&self, order: &OrderRecord, expected: OrderStatus) -> Result<()>;
    /// A user's orders, newest first, starting below `before`.
    async fn orders_of_user(
        &self,
        user: UserId,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>>;
    /// A shard's orders in id order, starting above `after`: what a shard
    /// replays to rebuild its stock counters.
    async fn orders_of_shard(
        &self,
        shard: u16,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<OrderRecord, OrderId>>;

    /// Every stored order from `from` on (inclusive), each once, in id
    /// order, placed by shards `0..shards`: what a server replays at start
    /// (from the stock snapshot's watermark). The default reads each
    /// shard's orders in turn; a backend that can scan its orders whole
    /// does so instead.
    async fn orders_from(&self, from: OrderId, shards: u16) -> Result<Vec<OrderRecord>> {
        let mut orders = Vec::new();
        for shard in 0..shards {
            let mut after = from.0.checked_sub(1).map(OrderId);
            loop {
                let page = self.orders_of_shard(shard, after, usize::MAX).await?;
                orders.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        orders.sort_unstable_by_key(|o| o.id);
        Ok(orders)
    }
}

#[async_trait]
pub trait PaymentStore: Send + Sync {
    async fn put_payment(&self, payment: &PaymentRecord) -> Result<()>;
    async fn payment(&self, order: OrderId) -> Result<Option<PaymentRecord>>;
}

#[async_trait]
pub trait CartStore: Send + Sync {
    /// Writes carts whole, in one write; a record with no lines deletes
    /// its cart.
    async fn put_carts(&self, carts: &[CartRecord]) -> Result<()>;
    /// Every stored cart: what a server loads at start.
    async fn carts(&self) -> Result<Vec<CartRecord>>;
}

/// Units a node took from a SKU's pool, and what the pool held after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub units: i64,
    pub pool: i64,
}

/// Stock several souk nodes share through their cluster (see
/// `scylla::escrow`): each node sells only units it took into its grant.
#[async_trait]
pub trait StockEscrow: Send + Sync {
    /// How much longer this node may sell under its lease; `None` once
    /// fenced by another node.
    fn selling_for(&self) -> Option<std::time::Duration>;
    /// Moves units from the pool into this node's grant: none unless the
    /// pool has `need`, up to `want`.
    async fn take(&self, sku: &Sku, need: i64, want: i64) -> Result<Taken>;
    /// Moves unsold units of this node's grant back to the pool; the
    /// pool's new size.
    async fn give_back(&self, sku: &Sku, units: i64) -> Result<i64>;
    /// Adds units received to the pool (removes when negative); the pool's
    /// new size.
    async fn add(&self, sku: &Sku, units: i64) -> Result<i64>;
    /// Sets the pool to `units`; its new size.
    async fn set(&self, sku: &Sku, units: i64) -> Result<i64>;
    /// Every opened pool's size.
    async fn pools(&self) -> Result<Vec<(Sku, i64)>>;
}

/// Limits that several souk nodes count together (`--redis`): failed-login
/// windows, token buckets, and the feed of sign-outs everywhere. Without
/// one, each limit is kept in memory by the shard that owns its key.
#[async_trait]
pub trait SharedLimits: Send + Sync {
    /// Counts an attempt against `key`'s window of at most `max` in
    /// `window_ms`, or says how many milliseconds until one is allowed.
    /// `id` names the attempt, for `attempt_succeeded`.
    async fn attempt_begin(
        &self,
        key: &str,
        id: u64,
        max: usize,
        window_ms: u64,
        now: UnixMillis,
    ) -> Result<Option<u64>>;
    /// The attempt `id` succeeded: it is taken back, and with `forgive`
    /// every failure of `key` is.
    async fn attempt_succeeded(&self, key: &str, id: u64, forgive: bool) -> Result<()>;
    /// Takes a token from `key`'s bucket (`per_second` sustained, `burst`
    /// at once), or says how many milliseconds until one is there.
    async fn take_token(
        &self,
        key: &str,
        per_second: u32,
        burst: u32,
        now: UnixMillis,
    ) -> Result<Option<u64>>;
    /// Tells every node that `user` signed out everywhere at `at` (at most
    /// once: the durable cutoff is what refuses tokens).
    async fn publish_sign_out(&self, user: UserId, at: UnixMillis) -> Result<()>;
}

/// Upper bounds, in seconds, of the buckets `WriteStats::sync_buckets`
/// counts fsyncs in: from a fast disk's flush to a stalled one.
pub const SYNC_BUCKETS_SECONDS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// How a backend's group commit is doing, for operators: the batching it
/// achieves, how long its fsyncs take and whether writes are refused.
/// Counters since the store opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteStats {
    /// Groups committed: write transactions applied (and then synced).
    pub groups: u64,
    /// Writes run in those groups; `writes / groups` is the batching.
    pub writes: u64,
    /// Writes refused with `Busy` because the commit queue was full.
    pub busy: u64,
    /// Where a write's wait goes before its fsync, in seconds summed over
    /// all: `queue_seconds` over writes, from being queued until their
    /// group began to apply; `apply_seconds` over groups, running the
    /// group's operations and applying its transaction; `handover_seconds`
    /// over groups made durable, from the end of the apply until the fsync
    /// covering the group began (a wake-up, or a wait for a free sync
    /// thread). Divided by `writes`, `groups` and `groups`, they give the
    /// mean of each stage, next to the fsync's `sync_seconds / syncs`.
    pub queue_seconds: f64,
    pub apply_seconds: f64,
    pub handover_seconds: f64,
    /// fsyncs, and the seconds they took in all.
    pub syncs: u64,
    pub sync_seconds: f64,
    /// fsyncs that took at most each `SYNC_BUCKETS_SECONDS` bound
    /// (cumulative, as a Prometheus histogram counts).
    pub sync_buckets: [u64; SYNC_BUCKETS_SECONDS.len()],
    /// False once a commit or fsync failed: the store refuses writes until
    /// a restart.
    pub healthy: bool,
}

impl WriteStats {
    /// The counters of two committers together (stores side by side):
    /// every field is named, so one added later cannot be left out.
    pub fn merged(self, other: WriteStats) -> WriteStats {
        WriteStats {
            groups: self.groups + other.groups,
            writes: self.writes + other.writes,
            busy: self.busy + other.busy,
            queue_seconds: self.queue_seconds + other.queue_seconds,
            apply_seconds: self.apply_seconds + other.apply_seconds,
            handover_seconds: self.handover_seconds + other.handover_seconds,
            syncs: self.syncs + other.syncs,
            sync_seconds: self.sync_seconds + other.sync_seconds,
            sync_buckets: std::array::from_fn(|i| self.sync_buckets[i] + other.sync_buckets[i]),
            healthy: self.healthy && other.healthy,
        }
    }
}

/// Everything souk keeps.
#[async_trait]
pub trait Store:
    CatalogStore + StockStore + UserStore + TokenStore + OrderStore + PaymentStore + CartStore
{
    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
    /// The group commit's counters, for backends that commit in groups
    /// (the embedded store); a remote database keeps its own.
    fn write_stats(&self) -> Option<WriteStats> {
        None
    }
    /// Makes every acknowledged write durable and stops accepting writes.
    async fn close(&self) -> Result<()>;

    /// A payment's outcome: stores `payment` and replaces the order as
    /// `update_order` does. The default writes the payment first, so that
    /// a stop between the two leaves a recorded charge on a pending order,
    /// which the next start settles; a backend that can write both
    /// atomically does, and then writes neither on `Conflict`.
    async fn settle_payment(
        &self,
        order: &OrderRecord,
        expected: OrderStatus,
        payment: &PaymentRecord,
    ) -> Result<()> {
        self.put_payment(payment).await?;
        self.update_order(order, expected).await
    }
}
