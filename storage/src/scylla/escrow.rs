//! Stock shared by several souk nodes on one cluster, held in escrow.
//!
//! Each SKU's units are split between its pool (units no node holds) and
//! one grant per node (units that node may sell, and those it sold). A
//! node sells only from its own grant, which its shards count in memory as
//! they count received stock on a single node; it takes units from the
//! pool in chunks and gives back what it does not sell. Units are
//! conserved: every change moves units between the pool and one grant in a
//! single conditional batch on the SKU's partition, so pool + grants stays
//! the units received and two nodes can never take the same units.
//!
//! A node renews a lease while it runs. Once a node's lease has run out,
//! another node fences it (marks the lease fenced under the next epoch, so
//! it cannot renew) and reclaims each grant down to the units the dead
//! node's durable orders hold (sold or awaiting payment), stamping the
//! grant with the fence's epoch. A dead node no longer expires its own
//! orders, so the reclaiming node expires those whose reservation lapsed
//! unpaid and moves their units back too (conditionally: if the fenced
//! node still runs, whichever of its payment and this expiry is written
//! first wins). A fenced node that starts again takes a lease under a
//! newer epoch and stamps its grants with it before it sells, so that a
//! reclaim still running on an older view can no longer move them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use souk_wire::api::{OrderId, OrderStatus, PaymentStatus, Sku, UnixMillis};

use super::{ScyllaStore, applied, to_i64, unavailable};
use crate::error::{Result, StorageError};
use crate::limits::PAGE_MAX;
use crate::model::{OrderRecord, StockRecord};
use crate::store::{OrderStore, StockEscrow, Taken};

/// Conditional writes tried before contention is reported as `Busy`.
const CAS_ATTEMPTS: usize = 32;

/// The row of a SKU's partition that holds its pool: a name no node can
/// have (node names are letters, digits, `-`, `_` and `.`).
const POOL: &str = "*pool";

/// Node numbers a cluster hands out: ids carry them in five bits.
pub const NODE_NUMBERS: i32 = 32;

/// Shard numbers a node's orders are indexed under (a server's most).
const SHARD_NUMBERS: u16 = 256;

/// How many shards' index rows, and orders of one page of them, a reading
/// of a node's orders asks for at once: a dead node's day of orders is
/// read many round trips at a time, not one after another.
const SHARDS_AT_ONCE: usize = 8;
const ORDERS_AT_ONCE: usize = 32;

/// One node's grant of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub node: String,
    pub units: i64,
    /// The lease epoch it was last stamped with.
    pub epoch: i64,
}

/// One SKU's escrow: its pool and every node's grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Escrow {
    /// Whether the pool was opened (from the SKU's stock record).
    pub opened: bool,
    pub pool: i64,
    pub grants: Vec<Grant>,
}

impl Escrow {
    pub fn grant(&self, node: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.node == node)
    }

    pub fn granted_to(&self, node: &str) -> i64 {
        self.grant(node).map_or(0, |g| g.units)
    }

    /// Units received: the pool and every grant.
    pub fn total(&self) -> i64 {
        self.pool + self.grants.iter().map(|g| g.units).sum::<i64>()
    }

    fn push(&mut self, node: String, units: Option<i64>, epoch: Option<i64>) {
        if node == POOL {
            self.opened = true;
            self.pool = units.unwrap_or(0);
        } else {
            self.grants.push(Grant {
                node,
                units: units.unwrap_or(0),
                epoch: epoch.unwrap_or(0),
            });
        }
    }
}

/// A node's lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Until when it may sell; `None` once fenced.
    pub until: Option<UnixMillis>,
    pub epoch: i64,
}

const FENCED: i64 = -1;

impl Lease {
    fn stored(until: Option<i64>, epoch: Option<i64>) -> Lease {
        let until = until.unwrap_or(FENCED);
        Lease {
            until: (until >= 0).then_some(UnixMillis(until as u64)),
            epoch: epoch.unwrap_or(0),
        }
    }

    fn until_value(&self) -> i64 {
        self.until.map_or(FENCED, millis)
    }
}

/// Whose grant a reclaim moves, and under which condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// This node's own grants, under its epoch (a clean stop).
    Own { epoch: i64 },
    /// A fenced node's grants, under the fence's epoch, which they are
    /// stamped with. A grant already stamped by this fence moves again,
    /// down to a newer count of what the node's orders hold: they only
    /// leave (expire, are cancelled elsewhere), past the margin after the
    /// lease within which an insert may still land; and a reclaim never
    /// raises a grant, so a count found higher moves nothing. A grant
    /// stamped by a newer epoch (the node started again) is left.
    Fenced { epoch: i64 },
}

/// Orders of a fenced node whose reservation ran out unpaid before
/// `before`: a reclaim expires them, at `now`, and does not count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lapse {
    pub before: UnixMillis,
    pub now: UnixMillis,
}

/// What a node's durable orders hold, as one reading of them found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Units of each SKU, sold or awaiting payment.
    pub units: HashMap<Sku, i64>,
    /// Orders this reading expired (see `Lapse`).
    pub expired: usize,
    /// The orders still awaiting payment.
    pub pending: Vec<OrderRecord>,
}

impl Held {
    /// When the next order still awaiting payment lapses.
    pub fn next_lapse(&self) -> Option<UnixMillis> {
        self.pending.iter().map(|order| order.expires_at).min()
    }

    /// Counts `order`'s units as held, or not.
    fn count(&mut self, order: &OrderRecord, sign: i64) {
        for line in &order.lines {
            *self.units.entry(line.sku.clone()).or_default() += sign * i64::from(line.quantity);
        }
    }
}

/// What a reclaim of a node's grants did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Units moved back to the pools.
    pub units: i64,
    /// Orders expired because they lapsed unpaid.
    pub expired: usize,
    /// When the next order still awaiting payment lapses: nothing needs
    /// reclaiming from a fenced node before then.
    pub next_lapse: Option<UnixMillis>,
}

fn millis(at: UnixMillis) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

/// After a conditional write lost to another writer: a short random wait,
/// growing with the attempt, so that writers racing on one partition stop
/// colliding in step.
async fn back_off(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let ceiling_ms = 1u64 << attempt.min(6);
    let wait = rand::random::<u64>() % ceiling_ms;
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
}

fn contended(what: &str) -> StorageError {
    StorageError::Unavailable(format!(
        "scylla: {what} stayed contended after {CAS_ATTEMPTS} conditional writes"
    ))
}

impl ScyllaStore {
    /// This node's name among the nodes sharing the cluster.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This node's number among the nodes sharing the cluster, claimed by
    /// its name the first time it asks and the same ever after.
    pub async fn node_number(&self) -> Result<u8> {
        for _ in 0..CAS_ATTEMPTS {
            let rows = self
                .run(&self.statements.node_numbers, ())
                .await?
                .into_rows_result()
                .map_err(unavailable)?;
            let mut taken = Vec::new();
            for row in rows.rows::<(i32, Option<String>)>().map_err(unavailable)? {
                let (number, node) = row.map_err(unavailable)?;
                if node.as_deref() == Some(self.node.as_str()) {
                    return Ok(number as u8);
                }
                taken.push(number);
            }
            let Some(free) = (0..NODE_NUMBERS).find(|n| !taken.contains(n)) else {
                return Err(StorageError::Conflict(format!(
                    "all {NODE_NUMBERS} node numbers are taken; {} cannot join",
                    self.node
                )));
            };
            let written = self
                .run(&self.statements.claim_number, (free, self.node.as_str()))
                .await?;
            if applied(written)? {
                return Ok(free as u8);
            }
        }
        Err(contended("the node numbers"))
    }

    /// A SKU's pool and grants.
    pub async fn escrow(&self, sku: &Sku) -> Result<Escrow> {
        let rows = self
            .run(&self.statements.escrow_of, (sku.as_str(),))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut escrow = Escrow::default();
        for row in rows
            .rows::<(String, Option<i64>, Option<i64>)>()
            .map_err(unavailable)?
        {
            let (node, units, epoch) = row.map_err(unavailable)?;
            escrow.push(node, units, epoch);
        }
        Ok(escrow)
    }

    /// Every opened SKU's escrow, as a node reads it at start.
    pub async fn all_escrow(&self) -> Result<Vec<(Sku, Escrow)>> {
        let mut all: Vec<(Sku, Escrow)> = Vec::new();
        let mut paging = scylla::response::PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(&self.statements.all_escrow, (), paging)
                .await
                .map_err(unavailable)?;
            let rows = result.into_rows_result().map_err(unavailable)?;
            type EscrowRow = (String, String, Option<i64>, Option<i64>);
            for row in rows.rows::<EscrowRow>().map_err(unavailable)? {
                let (sku, node, units, epoch) = row.map_err(unavailable)?;
                let sku = Sku::new(sku).map_err(|e| StorageError::Corrupt {
                    table: "stock_escrow",
                    reason: e.to_string(),
                })?;
                if all.last().is_none_or(|(last, _)| *last != sku) {
                    all.push((sku, Escrow::default()));
                }
                all.last_mut()
                    .expect("pushed above")
                    .1
                    .push(node, units, epoch);
            }
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => return Ok(all),
                std::ops::ControlFlow::Continue(state) => paging = state,
            }
        }
    }

    /// The SKU's escrow, its pool opened first from the units its stock
    /// record says were received (once: whoever opens it first wins).
    async fn opened_escrow(&self, sku: &Sku) -> Result<Escrow> {
        let escrow = self.escrow(sku).await?;
        if escrow.opened {
            return Ok(escrow);
        }
        let stock: Option<StockRecord> = self
            .record("stock", &self.statements.stock_of, (sku.as_str(),))
            .await?;
        let received = stock.map_or(0, |s| s.received.max(0));
        // Not applied means another node opened it: either way it is open.
        self.run(&self.statements.open_pool, (sku.as_str(), received))
            .await?;
        self.escrow(sku).await
    }

    /// Adds `units` received to the pool (a restock), or removes units
    /// from it when negative (`Conflict` if the pool has fewer); the pool's
    /// new size.
    pub async fn add_to_pool(&self, sku: &Sku, units: i64) -> Result<i64> {
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.opened_escrow(sku).await?;
            let pool = escrow.pool + units;
            if pool < 0 {
                return Err(StorageError::Conflict(format!(
                    "the pool of {sku} holds {} units, cannot take {}",
                    escrow.pool, -units
                )));
            }
            let written = self
                .run(&self.statements.set_pool, (pool, sku.as_str(), escrow.pool))
                .await?;
            if applied(written)? {
                return Ok(pool);
            }
        }
        Err(contended("the pool"))
    }

    /// Sets the pool to `units` (a restock that sets the stock on hand).
    pub async fn set_pool_to(&self, sku: &Sku, units: i64) -> Result<i64> {
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.opened_escrow(sku).await?;
            if escrow.pool == units {
                return Ok(units);
            }
            let written = self
                .run(
                    &self.statements.set_pool,
                    (units.max(0), sku.as_str(), escrow.pool),
                )
                .await?;
            if applied(written)? {
                return Ok(units.max(0));
            }
        }
        Err(contended("the pool"))
    }

    /// Moves units from the pool to this node's grant (stamped `epoch`):
    /// none unless the pool has `need`; up to `want` (at least `need`) but
    /// never more than a quarter of the pool beyond `need`, so that the
    /// last units go out in small pieces to whichever node sells them.
    pub async fn take_from_pool(
        &self,
        sku: &Sku,
        epoch: i64,
        need: i64,
        want: i64,
    ) -> Result<Taken> {
        let node = self.node.as_str();
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.opened_escrow(sku).await?;
            let Some(grant) = escrow.grant(node) else {
                // Not applied means it exists now: either way, read again.
                self.run(&self.statements.open_grant, (sku.as_str(), node, epoch))
                    .await?;
                continue;
            };
            let share = want.min(escrow.pool / 4).max(need).max(1);
            let units = share.min(escrow.pool);
            if units <= 0 || units < need {
                return Ok(Taken {
                    units: 0,
                    pool: escrow.pool,
                });
            }
            if grant.epoch != epoch {
                return Err(fenced(node, sku));
            }
            let pool = escrow.pool;
            if self
                .move_units(sku, node, (pool, grant.units, epoch), -units, epoch)
                .await?
            {
                return Ok(Taken {
                    units,
                    pool: pool - units,
                });
            }
        }
        Err(contended("the pool"))
    }

    /// Moves `units` of this node's grant (stamped `epoch`) back to the
    /// pool; the pool's new size. `Conflict` if the grant holds fewer.
    pub async fn return_to_pool(&self, sku: &Sku, epoch: i64, units: i64) -> Result<i64> {
        let node = self.node.as_str();
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.escrow(sku).await?;
            let Some(grant) = escrow.grant(node) else {
                return Err(StorageError::Conflict(format!("{node} holds no {sku}")));
            };
            if grant.epoch != epoch {
                return Err(fenced(node, sku));
            }
            if grant.units < units || units < 0 {
                return Err(StorageError::Conflict(format!(
                    "{node} holds {} units of {sku}, cannot give back {units}",
                    grant.units
                )));
            }
            if units == 0 {
                return Ok(escrow.pool);
            }
            if self
                .move_units(sku, node, (escrow.pool, grant.units, epoch), units, epoch)
                .await?
            {
                return Ok(escrow.pool + units);
            }
        }
        Err(contended("a grant"))
    }

    /// Sets `node`'s grant of `sku` to `keep(units granted)` (at most what
    /// it has), the rest back to the pool; the units returned. Under
    /// `Reclaim::Fenced` a grant stamped with a newer epoch is left.
    pub async fn reclaim(
        &self,
        sku: &Sku,
        node: &str,
        keep: impl Fn(i64) -> i64,
        how: Reclaim,
    ) -> Result<i64> {
        for attempt in 0..CAS_ATTEMPTS {
            back_off(attempt).await;
            let escrow = self.escrow(sku).await?;
            let Some(grant) = escrow.grant(node) else {
                return Ok(0);
            };
            let stamp = match how {
                Reclaim::Own { epoch } if grant.epoch == epoch => epoch,
                Reclaim::Own { .. } => return Err(fenced(node, sku)),
                Reclaim::Fenced { epoch } if grant.epoch <= epoch => epoch,
                Reclaim::Fenced { .. } => return Ok(0),
            };
            let kept = keep(grant.units).clamp(0, grant.units);
            let returned = grant.units - kept;
            if returned == 0 && stamp == grant.epoch {
                return Ok(0);
            }
            let read = (escrow.pool, grant.units, grant.epoch);
            if self.move_units(sku, node, read, returned, stamp).await? {
                return Ok(returned);
            }
        }
        Err(contended("a grant"))
    }

    /// Reclaims every grant of `node` down to what its durable orders hold,
    /// expiring first those that lapsed (under `lapse`): the units returned,
    /// and what the orders were found to hold.
    pub async fn reclaim_node(
        &self,
        node: &str,
        how: Reclaim,
        lapse: Option<Lapse>,
    ) -> Result<(i64, Held)> {
        let all = self.all_escrow().await?;
        let pending = |escrow: &Escrow| {
            escrow.grant(node).is_some_and(|g| match how {
                Reclaim::Own { .. } => g.units > 0,
                // Unstamped, or holding units its orders may have let go.
                Reclaim::Fenced { epoch } => g.epoch < epoch || (g.epoch == epoch && g.units > 0),
            })
        };
        if !all.iter().any(|(_, escrow)| pending(escrow)) {
            return Ok((0, Held::default()));
        }
        let held = self.held_by(node, lapse).await?;
        let mut returned = 0;
        for (sku, _) in all.iter().filter(|(_, e)| pending(e)) {
            let keep = held.units.get(sku).copied().unwrap_or(0);
            returned += self.reclaim(sku, node, |_| keep, how).await?;
        }
        Ok((returned, held))
    }

    /// Units of each SKU that `node`'s durable orders hold: sold (its stock
    /// snapshot, then its paid orders after it) or awaiting payment. An
    /// index row whose order a plain read does not find is read again at
    /// the serial consistency, which completes or discards an insert a
    /// timeout left half done: an order that lands later would hold units
    /// the pool had been given. Under `lapse`, orders awaiting payment past
    /// `lapse.before` are expired (if still awaiting it: a payment recorded
    /// first wins) and hold nothing.
    pub async fn held_by(&self, node: &str, lapse: Option<Lapse>) -> Result<Held> {
        let snapshot = self.snapshot_of(node).await?;
        let after = snapshot.watermark.0.checked_sub(1).map(OrderId);
        let mut held = Held {
            units: snapshot.sold.into_iter().collect(),
            ..Held::default()
        };
        let mut shards = stream::iter(0..SHARD_NUMBERS)
            .map(|shard| self.held_in_shard(node, shard, after, lapse))
            .buffer_unordered(SHARDS_AT_ONCE);
        while let Some(shard) = shards.try_next().await? {
            for (sku, units) in shard.units {
                *held.units.entry(sku).or_default() += units;
            }
            held.expired += shard.expired;
            held.pending.extend(shard.pending);
        }
        Ok(held)
    }

    /// What `node`'s orders of `shard` after `after` hold (see `held_by`).
    async fn held_in_shard(
        &self,
        node: &str,
        shard: u16,
        mut after: Option<OrderId>,
        lapse: Option<Lapse>,
    ) -> Result<Held> {
        let mut held = Held::default();
        loop {
            let index = self.shard_index_of(node, shard, after, PAGE_MAX).await?;
            let orders: Vec<Option<OrderRecord>> = stream::iter(index.iter().copied())
                .map(|(id, user)| self.indexed_order(user, id))
                .buffered(ORDERS_AT_ONCE)
                .try_collect()
                .await?;
            for mut order in orders.into_iter().flatten() {
                if let Some(lapse) = lapse
                    && order.status == OrderStatus::PendingPayment
                    && order.expires_at < lapse.before
                {
                    match self.expire(&order, lapse.now).await? {
                        None => {
                            held.expired += 1;
                            continue;
                        }
                        Some(moved_on) => order = moved_on,
                    }
                }
                if matches!(order.status, OrderStatus::Cancelled | OrderStatus::Expired) {
                    continue;
                }
                held.count(&order, 1);
                if order.status == OrderStatus::PendingPayment {
                    held.pending.push(order);
                }
            }
            match index.last() {
                Some(&(last, _)) if index.len() == PAGE_MAX => {
                    after = Some(OrderId(last.max(0).unsigned_abs()));
                }
                _ => return Ok(held),
            }
        }
    }

    /// The order an index row names: read plainly, then, if not found, at
    /// the serial consistency (see `held_by`).
    async fn indexed_order(&self, user: i64, id: i64) -> Result<Option<OrderRecord>> {
        let order = self
            .record("order", &self.statements.get_order, (user, id))
            .await?;
        if order.is_some() {
            return Ok(order);
        }
        self.record("order", &self.statements.get_order_settled, (user, id))
            .await
    }

    /// Expires `order`, which lapsed awaiting payment, as its own node's
    /// expiry sweep would have; `None` once expired, or the order as it
    /// moved on first (paid, cancelled or expired elsewhere). An order no
    /// read finds any more is returned as it was: it still counts.
    async fn expire(&self, order: &OrderRecord, now: UnixMillis) -> Result<Option<OrderRecord>> {
        let expired = OrderRecord {
            status: OrderStatus::Expired,
            payment_status: PaymentStatus::Failed,
            updated_at: now,
            ..order.clone()
        };
        match self
            .update_order(&expired, OrderStatus::PendingPayment)
            .await
        {
            Ok(()) => Ok(None),
            Err(StorageError::Conflict(_) | StorageError::NotFound(_)) => {
                let values = (to_i64(order.user_id.0), to_i64(order.id.0));
                let current: Option<OrderRecord> = self
                    .record("order", &self.statements.get_order_settled, values)
                    .await?;
                Ok(Some(current.unwrap_or_else(|| order.clone())))
            }
            Err(error) => Err(error),
        }
    }

    /// `pool += units`, `grant -= units` and the grant stamped `stamp`, if
    /// pool, grant and its epoch are still as read.
    async fn move_units(
        &self,
        sku: &Sku,
        node: &str,
        (pool, granted, epoch): (i64, i64, i64),
        units: i64,
        stamp: i64,
    ) -> Result<bool> {
        let values = (
            (pool + units, sku.as_str(), pool),
            (granted - units, stamp, sku.as_str(), node, granted, epoch),
        );
        let result = self
            .session
            .batch(&self.statements.move_units, values)
            .await
            .map_err(unavailable)?;
        applied(result)
    }

    /// `node`'s lease, if it ever had one.
    pub async fn lease(&self, node: &str) -> Result<Option<Lease>> {
        let rows = self
            .run(&self.statements.lease_of, (node,))
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        let row: Option<(Option<i64>, Option<i64>)> =
            rows.maybe_first_row().map_err(unavailable)?;
        Ok(row.map(|(until, epoch)| Lease::stored(until, epoch)))
    }

    /// Every node's lease.
    pub async fn leases(&self) -> Result<Vec<(String, Lease)>> {
        let rows = self
            .run(&self.statements.all_leases, ())
            .await?
            .into_rows_result()
            .map_err(unavailable)?;
        rows.rows::<(String, Option<i64>, Option<i64>)>()
            .map_err(unavailable)?
            .map(|row| {
                let (node, until, epoch) = row.map_err(unavailable)?;
                Ok((node, Lease::stored(until, epoch)))
            })
            .collect()
    }

    /// Moves this node's lease from `held` (as last read or written) to
    /// `until` under `epoch`. `Conflict` when the stored lease is no
    /// longer `held`: another node fenced this one.
    async fn set_lease(&self, held: Option<Lease>, until: UnixMillis, epoch: i64) -> Result<Lease> {
        let node = self.node.as_str();
        let written = match held {
            None => {
                self.run(&self.statements.new_lease, (node, millis(until), epoch))
                    .await?
            }
            Some(held) => {
                let values = (millis(until), epoch, node, held.until_value(), held.epoch);
                self.run(&self.statements.set_lease, values).await?
            }
        };
        if applied(written)? {
            Ok(Lease {
                until: Some(until),
                epoch,
            })
        } else {
            Err(StorageError::Conflict(format!(
                "the lease of {node} changed: fenced by another node"
            )))
        }
    }

    /// Renews the lease this node holds (`held`, as it last wrote it).
    pub async fn renew_lease(&self, held: Lease, until: UnixMillis) -> Result<Lease> {
        if held.until.is_none() {
            return Err(StorageError::Conflict(format!("{} is fenced", self.node)));
        }
        self.set_lease(Some(held), until, held.epoch).await
    }

    /// Takes this node's lease at start, under a new epoch, with every
    /// grant of the node stamped with it before this returns, and so before
    /// the node reads its grants and sells: a reclaim still running
    /// elsewhere on an older view cannot move them.
    pub async fn join(&self, until: UnixMillis) -> Result<Lease> {
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.lease(&self.node).await?;
            let taken = match stored {
                None => self.set_lease(None, until, 1).await,
                // A new epoch at every start, so that every grant is
                // stamped below: a conditional write on each partition,
                // which completes any move of this node's left half done by
                // a timeout before the grants are read.
                Some(lease) => self.set_lease(Some(lease), until, lease.epoch + 1).await,
            };
            let lease = match taken {
                Ok(lease) => lease,
                // Fenced or renewed meanwhile: read it again.
                Err(StorageError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            };
            self.stamp_grants(lease.epoch).await?;
            return Ok(lease);
        }
        Err(contended("the lease"))
    }

    /// Stamps every grant of this node with `epoch`.
    async fn stamp_grants(&self, epoch: i64) -> Result<()> {
        let node = self.node.as_str();
        for (sku, escrow) in self.all_escrow().await? {
            let mut grant = escrow.grant(node).cloned();
            let mut attempts = 0;
            while let Some(current) = grant.filter(|g| g.epoch != epoch) {
                attempts += 1;
                if attempts > CAS_ATTEMPTS {
                    return Err(contended("a grant's epoch"));
                }
                let values = (epoch, sku.as_str(), node, current.epoch);
                if applied(self.run(&self.statements.stamp_grant, values).await?)? {
                    break;
                }
                grant = self.escrow(&sku).await?.grant(node).cloned();
            }
        }
        Ok(())
    }

    /// Fences `node` if its lease ran out before `before`: from then on it
    /// cannot renew, and its grants can be reclaimed under the returned
    /// epoch (also when it was fenced before). `None` while its lease runs.
    pub async fn fence(&self, node: &str, before: UnixMillis) -> Result<Option<i64>> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(lease) = self.lease(node).await? else {
                return Ok(None);
            };
            match lease.until {
                None => return Ok(Some(lease.epoch)),
                Some(until) if until >= before => return Ok(None),
                Some(_) => {
                    let values = (
                        FENCED,
                        lease.epoch + 1,
                        node,
                        lease.until_value(),
                        lease.epoch,
                    );
                    if applied(self.run(&self.statements.set_lease, values).await?)? {
                        return Ok(Some(lease.epoch + 1));
                    }
                }
            }
        }
        Err(contended("a lease"))
    }
}

fn fenced(node: &str, sku: &Sku) -> StorageError {
    StorageError::Conflict(format!(
        "the grant of {sku} to {node} was stamped by a newer lease: {node} was fenced"
    ))
}

/// This node's side of the escrow, for its shards: the lease it holds and
/// the epoch its grants carry. Shards sell only while the lease runs,
/// which they judge by the monotonic time since the last renewal was sent
/// (a wall clock stepping does not stretch it), not by its stored end.
#[derive(Debug)]
pub struct NodeEscrow {
    store: Arc<ScyllaStore>,
    epoch: AtomicI64,
    /// The stored lease's end, as last written.
    until: AtomicU64,
    fenced: AtomicBool,
    /// How long a lease runs from its renewal.
    lease: Duration,
    base: Instant,
    /// When the last renewal that landed was sent, in ms after `base`.
    renewed: AtomicU64,
    /// Per fenced node: the fence's epoch its grants were last reclaimed
    /// under, and what its orders held then. Until one of its orders
    /// awaiting payment lapses, nothing is read again; then only that
    /// order is.
    reclaimed: Mutex<HashMap<String, (i64, Held)>>,
}

impl NodeEscrow {
    /// Joins the cluster's escrow: takes the lease (see `ScyllaStore::join`),
    /// to `until`, `lease` from now.
    pub async fn join(
        store: Arc<ScyllaStore>,
        until: UnixMillis,
        lease: Duration,
    ) -> Result<NodeEscrow> {
        let base = Instant::now();
        let taken = store.join(until).await?;
        Ok(NodeEscrow {
            store,
            epoch: AtomicI64::new(taken.epoch),
            until: AtomicU64::new(until.0),
            fenced: AtomicBool::new(false),
            lease,
            base,
            renewed: AtomicU64::new(0),
            reclaimed: Mutex::new(HashMap::new()),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn store(&self) -> &Arc<ScyllaStore> {
        &self.store
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Renews the lease to `until`. A fence found here is final: the node
    /// stops selling for good (a restart rejoins under a new epoch).
    pub async fn renew(&self, until: UnixMillis) -> Result<()> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(StorageError::Conflict(format!(
                "{} is fenced",
                self.store.node
            )));
        }
        let held = Lease {
            until: Some(UnixMillis(self.until.load(Ordering::SeqCst))),
            epoch: self.epoch(),
        };
        let sent = self.elapsed_ms();
        let renewed = match self.store.renew_lease(held, until).await {
            // Not as last written: a renewal whose reply was lost may have
            // landed. Still this epoch and not fenced: it is ours.
            Err(StorageError::Conflict(reason)) => {
                match self.store.lease(&self.store.node).await? {
                    Some(stored) if stored.epoch == held.epoch && stored.until.is_some() => {
                        self.store.renew_lease(stored, until).await
                    }
                    _ => Err(StorageError::Conflict(reason)),
                }
            }
            other => other,
        };
        match renewed {
            Ok(_) => {
                self.until.store(until.0, Ordering::SeqCst);
                self.renewed.store(sent, Ordering::SeqCst);
                Ok(())
            }
            Err(StorageError::Conflict(reason)) => {
                self.fenced.store(true, Ordering::SeqCst);
                Err(StorageError::Conflict(reason))
            }
            Err(error) => Err(error),
        }
    }

    /// Gives back every unit of this node's grants that its durable orders
    /// do not hold: at a clean stop, once no shard sells any more.
    pub async fn leave(&self) -> Result<i64> {
        if self.fenced.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let node = self.store.node.clone();
        let own = Reclaim::Own {
            epoch: self.epoch(),
        };
        Ok(self.store.reclaim_node(&node, own, None).await?.0)
    }

    /// Fences every node whose lease ran out before `before` and reclaims
    /// its grants; when an order of a fenced node lapses unpaid (before
    /// `before`), expires it at `now` and reclaims its units too. What
    /// this pass gave back, and when the next order of a fenced node
    /// lapses. A node that fails is tried again at the next pass; the
    /// others go on, and the first error is returned.
    pub async fn reclaim_dead(&self, before: UnixMillis, now: UnixMillis) -> Result<Reclaimed> {
        let mut total = Reclaimed::default();
        let mut failed = None;
        for (node, lease) in self.store.leases().await? {
            if node == self.store.node || lease.until.is_some_and(|until| until >= before) {
                continue;
            }
            let lapse = Lapse { before, now };
            match self.reclaim_fenced(&node, lapse).await {
                Ok(reclaimed) => {
                    total.units += reclaimed.units;
                    total.expired += reclaimed.expired;
                    total.next_lapse = match (total.next_lapse, reclaimed.next_lapse) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(total),
        }
    }

    /// Fences `node` (its lease ran out before `lapse.before`) and reclaims
    /// its grants: all of its orders are read once per fence; after that,
    /// only those awaiting payment, as each lapses.
    async fn reclaim_fenced(&self, node: &str, lapse: Lapse) -> Result<Reclaimed> {
        let Some(epoch) = self.store.fence(node, lapse.before).await? else {
            return Ok(Reclaimed::default());
        };
        // Taken out while it is worked on: a pass that fails reads the
        // node's orders afresh next time.
        let last = self.reclaimed.lock().expect("not poisoned").remove(node);
        let (units, held) = match last {
            Some((at, held)) if at == epoch => self.settle_lapsed(node, epoch, held, lapse).await?,
            _ => {
                self.store
                    .reclaim_node(node, Reclaim::Fenced { epoch }, Some(lapse))
                    .await?
            }
        };
        let reclaimed = Reclaimed {
            units,
            expired: held.expired,
            next_lapse: held.next_lapse(),
        };
        let kept = Held { expired: 0, ..held };
        self.reclaimed
            .lock()
            .expect("not poisoned")
            .insert(node.to_owned(), (epoch, kept));
        Ok(reclaimed)
    }

    /// Expires `node`'s orders in `held` that lapsed unpaid, or finds them
    /// moved on, and reclaims the grants of the SKUs they held down to what
    /// the rest hold.
    async fn settle_lapsed(
        &self,
        node: &str,
        epoch: i64,
        mut held: Held,
        lapse: Lapse,
    ) -> Result<(i64, Held)> {
        let (lapsed, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut held.pending)
            .into_iter()
            .partition(|order| order.expires_at < lapse.before);
        held.pending = pending;
        let mut skus = Vec::new();
        for order in lapsed {
            let now_is = match self.store.expire(&order, lapse.now).await? {
                None => {
                    held.expired += 1;
                    None
                }
                Some(moved_on) => Some(moved_on),
            };
            match now_is {
                Some(order) if order.status == OrderStatus::PendingPayment => {
                    held.pending.push(order);
                    continue;
                }
                Some(order)
                    if !matches!(order.status, OrderStatus::Cancelled | OrderStatus::Expired) =>
                {
                    continue;
                }
                _ => {}
            }
            held.count(&order, -1);
            skus.extend(order.lines.iter().map(|line| line.sku.clone()));
        }
        skus.sort();
        skus.dedup();
        let mut returned = 0;
        for sku in skus {
            let keep = held.units.get(&sku).copied().unwrap_or(0);
            returned += self
                .store
                .reclaim(&sku, node, |_| keep, Reclaim::Fenced { epoch })
                .await?;
        }
        Ok((returned, held))
    }
}

#[async_trait]
impl StockEscrow for NodeEscrow {
    fn selling_for(&self) -> Option<Duration> {
        if self.fenced.load(Ordering::SeqCst) {
            return None;
        }
        let since = self
            .elapsed_ms()
            .saturating_sub(self.renewed.load(Ordering::SeqCst));
        Some(self.lease.saturating_sub(Duration::from_millis(since)))
    }

    async fn take(&self, sku: &Sku, need: i64, want: i64) -> Result<Taken> {
        self.store
            .take_from_pool(sku, self.epoch(), need, want)
            .await
    }

    async fn give_back(&self, sku: &Sku, units: i64) -> Result<i64> {
        self.store.return_to_pool(sku, self.epoch(), units).await
    }

    async fn add(&self, sku: &Sku, units: i64) -> Result<i64> {
        self.store.add_to_pool(sku, units).await
    }

    async fn set(&self, sku: &Sku, units: i64) -> Result<i64> {
        self.store.set_pool_to(sku, units).await
    }

    async fn pools(&self) -> Result<Vec<(Sku, i64)>> {
        Ok(self
            .store
            .all_escrow()
            .await?
            .into_iter()
            .map(|(sku, escrow)| (sku, escrow.pool))
            .collect())
    }
}
