//! The stock counters a shard owns. Only the owner shard of a SKU
//! (`Placement::sku_owner`) holds or changes its counter; every other shard
//! asks it through the mesh.
//!
//! A counter is `received` (initial stock plus restocks, the only number
//! ever persisted for it), `sold` (units of paid orders) and `reserved`
//! (units of orders awaiting payment). Units on hand are `received - sold`.
//! Invariant, asserted on every change: `0 <= reserved <= on_hand <=
//! STOCK_UNITS_MAX` and `0 <= sold <= received`, so `available = on_hand -
//! reserved` is never negative and an oversell cannot be represented.
//!
//! Reservations are keyed by order id, which makes every message about an
//! order idempotent: reserving twice reserves once, releasing or committing
//! a settled order changes nothing, and a reservation arriving after its
//! order was released is refused. That is what lets stock return exactly
//! once when an order expires, is cancelled or fails payment.

use std::collections::{HashMap, HashSet, VecDeque};

use souk_storage::model::OrderRecord;
use souk_wire::api::{
    AdminRestock, ApiError, ErrorStatus, OrderId, OrderStatus, RestockMode, Sku, StockLevel,
    StockStatus, UserId,
};
use souk_wire::limits::STOCK_UNITS_MAX;
use tracing::warn;

use super::stock_board::StockStatuses;
use crate::limits::SETTLED_ORDERS_REMEMBERED;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counter {
    received: i64,
    sold: i64,
    reserved: i64,
}

impl Counter {
    fn on_hand(&self) -> i64 {
        self.received - self.sold
    }

    fn available(&self) -> i64 {
        self.on_hand() - self.reserved
    }

    fn assert_valid(&self, sku: &Sku) {
        assert!(
            0 <= self.sold
                && self.sold <= self.received
                && 0 <= self.reserved
                && self.reserved <= self.on_hand()
                && self.on_hand() <= STOCK_UNITS_MAX,
            "stock invariant broken for {sku}: {self:?}"
        );
    }

    fn level(&self, sku: &Sku) -> StockLevel {
        self.assert_valid(sku);
        StockLevel {
            sku: sku.clone(),
            on_hand: self.on_hand(),
            reserved: self.reserved,
            available: self.available(),
        }
    }
}

/// Units of one order held on this shard, until it is paid or released.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reservation {
    user: UserId,
    lines: Vec<(Sku, i64)>,
}

/// Orders this shard has settled (committed or released), so that a late
/// duplicate reservation cannot take stock again. Bounded: the oldest are
/// forgotten first, long after any retry of them could still be in flight.
#[derive(Debug, Default)]
struct Settled {
    ids: HashSet<OrderId>,
    order: VecDeque<OrderId>,
}

impl Settled {
    fn insert(&mut self, id: OrderId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > SETTLED_ORDERS_REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.ids.remove(&oldest);
            }
        }
    }

    fn contains(&self, id: OrderId) -> bool {
        self.ids.contains(&id)
    }
}

/// Totals of one SKU, for the conservation check: `received == available +
/// reserved + sold` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub received: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

#[derive(Debug)]
pub struct Inventory {
    counters: HashMap<Sku, Counter>,
    reservations: HashMap<OrderId, Reservation>,
    /// Units of each SKU an account holds (reserved or bought): what the
    /// purchase limit is checked against. It counts the orders since the
    /// shard started and the ones a start replays, which are at least the
    /// last day's (`STOCK_SNAPSHOT_LAG`): a sale's limit, not a lifetime one.
    holdings: HashMap<(UserId, Sku), i64>,
    settled: Settled,
    /// Units of one SKU one account may hold, if limited.
    purchase_limit: Option<i64>,
    /// SKUs whose stock status may have changed since the owner last
    /// published them to the stock board.
    status_changes: Vec<Sku>,
    /// Where several nodes share stock (escrow): units of each SKU in the
    /// cluster's pool as last seen, which no node holds yet. Shown to
    /// shoppers with this node's own, never reserved from directly.
    pools: HashMap<Sku, i64>,
}

impl Default for Inventory {
    fn default() -> Inventory {
        Inventory::load([], None)
    }
}

impl Inventory {
    /// Counters for the SKUs this shard owns, from their units received,
    /// before any order.
    pub fn load(
        received: impl IntoIterator<Item = (Sku, i64)>,
        purchase_limit: Option<i64>,
    ) -> Inventory {
        let counters = received
            .into_iter()
            .map(|(sku, received)| {
                let counter = Counter {
                    received: received.clamp(0, STOCK_UNITS_MAX),
                    ..Counter::default()
                };
                (sku, counter)
            })
            .collect();
        Inventory {
            counters,
            reservations: HashMap::new(),
            holdings: HashMap::new(),
            settled: Settled::default(),
            purchase_limit,
            status_changes: Vec::new(),
            pools: HashMap::new(),
        }
    }

    /// Units shown as available: this node's own and the pool's.
    fn shown(&self, sku: &Sku) -> i64 {
        let own = self.counters.get(sku).map_or(0, |c| c.available());
        own + self.pools.get(sku).copied().unwrap_or(0)
    }

    /// Units of a SKU this shard may still reserve itself.
    pub fn available(&self, sku: &Sku) -> i64 {
        self.counters.get(sku).map_or(0, |c| c.available())
    }

    /// The pools of shared SKUs as last seen.
    pub fn pool(&self) -> &HashMap<Sku, i64> {
        &self.pools
    }

    /// Notes the pool of a shared SKU as just read.
    pub fn set_pool(&mut self, sku: &Sku, pool: i64) {
        let before = self.shown(sku);
        self.pools.insert(sku.clone(), pool.max(0));
        self.note_shown(sku, before);
    }

    /// Units this node took from the pool into its grant: more received.
    pub fn grant(&mut self, sku: &Sku, units: i64) {
        let before = self.shown(sku);
        let counter = self.counters.entry(sku.clone()).or_default();
        counter.received += units;
        counter.assert_valid(sku);
        self.note_shown(sku, before);
    }

    /// Takes `units` of the available stock out of this node's counter,
    /// to give back to the pool; false (nothing changed) if fewer are
    /// available.
    pub fn take_back(&mut self, sku: &Sku, units: i64) -> bool {
        let Some(counter) = self.counters.get_mut(sku) else {
            return false;
        };
        if units <= 0 || counter.available() < units {
            return false;
        }
        let before = counter.available();
        counter.received -= units;
        counter.assert_valid(sku);
        self.note(sku, before);
        true
    }

    /// SKUs with units available to this node.
    pub fn held_skus(&self) -> Vec<(Sku, i64)> {
        self.counters
            .iter()
            .filter(|(_, c)| c.available() > 0)
            .map(|(sku, c)| (sku.clone(), c.available()))
            .collect()
    }

    fn note_shown(&mut self, sku: &Sku, before: i64) {
        if super::stock_status(before) != super::stock_status(self.shown(sku)) {
            self.status_changes.push(sku.clone());
        }
    }

    /// The stock status of every SKU this shard owns: the stock board's
    /// first entries.
    pub fn statuses(&self) -> StockStatuses {
        self.counters
            .keys()
            .chain(self.pools.keys())
            .map(|sku| (sku.clone(), super::stock_status(self.shown(sku))))
            .collect()
    }

    /// The current status of each SKU whose status may have changed since
    /// the last call, for the owner to publish.
    pub fn take_status_changes(&mut self) -> Vec<(Sku, StockStatus)> {
        let mut skus = std::mem::take(&mut self.status_changes);
        skus.sort_unstable();
        skus.dedup();
        skus.into_iter()
            .map(|sku| {
                let status = super::stock_status(self.shown(&sku));
                (sku, status)
            })
            .collect()
    }

    /// Notes `sku` for the stock board when a change of its available units
    /// from `before` may have moved it to another status. Cheap enough for
    /// every reservation: only a crossing allocates.
    fn note(&mut self, sku: &Sku, before: i64) {
        let pool = self.pools.get(sku).copied().unwrap_or(0);
        let after = self.counters.get(sku).map_or(0, |c| c.available());
        if super::stock_status(before + pool) != super::stock_status(after + pool) {
            self.status_changes.push(sku.clone());
        }
    }

    /// Rebuilds the counters after a start: units received as persisted,
    /// units the stock snapshot holds sold (`sold_before`: by the orders
    /// below its watermark), then every later order's lines that this shard
    /// owns (`owned`), in the state the order was last durably written in.
    /// A pending order holds its units reserved; a paid one has sold them;
    /// a cancelled or expired one holds nothing. Purchase limits count the
    /// replayed orders only, which span at least the replay window.
    pub fn rebuild<'a>(
        received: impl IntoIterator<Item = (Sku, i64)>,
        sold_before: impl IntoIterator<Item = (Sku, i64)>,
        orders: impl IntoIterator<Item = &'a OrderRecord>,
        owned: impl Fn(&Sku) -> bool,
        purchase_limit: Option<i64>,
    ) -> Inventory {
        let mut inventory = Inventory::load(received, purchase_limit);
        for (sku, sold) in sold_before {
            inventory.counters.entry(sku).or_default().sold += sold;
        }
        for order in orders {
            let lines: Vec<(Sku, i64)> = order
                .lines
                .iter()
                .filter(|line| owned(&line.sku))
                .map(|line| (line.sku.clone(), i64::from(line.quantity)))
                .collect();
            if lines.is_empty() {
                continue;
            }
            match order.status {
                OrderStatus::PendingPayment => {
                    inventory.replay_reservation(order.id, order.user_id, lines)
                }
                OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Refunded => {
                    for (sku, units) in &lines {
                        inventory.counters.entry(sku.clone()).or_default().sold += units;
                        inventory.add_holding(order.user_id, sku, *units);
                    }
                    inventory.settled.insert(order.id);
                }
                OrderStatus::Cancelled | OrderStatus::Expired => inventory.settled.insert(order.id),
            }
        }
        // Only now are the totals final. A store whose stock records are
        // behind its orders (restored from an older backup, say) would
        // leave more sold or reserved than received: received is raised to
        // cover them, so that every reservation can still be released.
        for (sku, counter) in &mut inventory.counters {
            if counter.sold + counter.reserved > counter.received {
                warn!(%sku, ?counter, "orders hold more than was received; units received raised to match");
                counter.received = counter.sold + counter.reserved;
            }
            counter.assert_valid(sku);
        }
        inventory
    }

    fn replay_reservation(&mut self, order: OrderId, user: UserId, lines: Vec<(Sku, i64)>) {
        for (sku, units) in &lines {
            self.counters.entry(sku.clone()).or_default().reserved += units;
            self.add_holding(user, sku, *units);
        }
        self.reservations.insert(order, Reservation { user, lines });
    }

    /// Counts units an account holds. Only kept while a limit is set: with
    /// none, nothing reads it, and it would grow with every buyer.
    fn add_holding(&mut self, user: UserId, sku: &Sku, units: i64) {
        if self.purchase_limit.is_some() {
            *self.holdings.entry((user, sku.clone())).or_default() += units;
        }
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The level of a SKU; a SKU with no counter has none in stock. A
    /// shared SKU's pool counts as on hand and available.
    pub fn level(&self, sku: &Sku) -> StockLevel {
        let mut level = self
            .counters
            .get(sku)
            .copied()
            .unwrap_or_default()
            .level(sku);
        let pool = self.pools.get(sku).copied().unwrap_or(0);
        level.on_hand += pool;
        level.available += pool;
        level
    }

    pub fn totals(&self, sku: &Sku) -> Totals {
        let counter = self.counters.get(sku).copied().unwrap_or_default();
        Totals {
            received: counter.received,
            available: counter.available(),
            reserved: counter.reserved,
            sold: counter.sold,
        }
    }

    /// Reserves every line of an order, or none: if one line cannot be had
    /// (not enough available, or over the account's purchase limit), no
    /// counter changes. Reserving an order that already holds its
    /// reservation succeeds without reserving again.
    pub fn reserve(
        &mut self,
        order: OrderId,
        user: UserId,
        lines: &[(Sku, i64)],
    ) -> Result<(), ApiError> {
        if self.reservations.contains_key(&order) {
            return Ok(());
        }
        if self.settled.contains(order) {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                format!("order {} is already settled", order.0),
            ));
        }
        let lines = merge_lines(lines)?;
        for (sku, units) in &lines {
            let counter = self.counters.get(sku).copied().unwrap_or_default();
            if counter.available() < *units {
                return Err(ApiError::new(
                    ErrorStatus::InsufficientStock,
                    format!(
                        "{sku}: {units} wanted, {} available",
                        counter.available().max(0)
                    ),
                ));
            }
            let held = self.holdings.get(&(user, sku.clone())).copied();
            if let Some(limit) = self.purchase_limit
                && held.unwrap_or(0) + units > limit
            {
                return Err(ApiError::new(
                    ErrorStatus::LimitExceeded,
                    format!(
                        "{sku}: at most {limit} units per customer; {} already ordered",
                        held.unwrap_or(0)
                    ),
                ));
            }
        }
        for (sku, units) in &lines {
            let counter = self.counters.entry(sku.clone()).or_default();
            let before = counter.available();
            counter.reserved += units;
            counter.assert_valid(sku);
            self.note(sku, before);
            self.add_holding(user, sku, *units);
        }
        self.reservations.insert(order, Reservation { user, lines });
        Ok(())
    }

    /// Returns an order's reserved units to the available stock: on
    /// expiry, cancellation, failed payment or a failed checkout. Whether
    /// anything was held.
    pub fn release(&mut self, order: OrderId) -> bool {
        self.settle(order, false)
    }

    /// Turns an order's reserved units into sold ones, once it is paid.
    /// Whether anything was held.
    pub fn commit(&mut self, order: OrderId) -> bool {
        self.settle(order, true)
    }

    /// Ends an order's reservation, once: its units leave `reserved`, into
    /// `sold` if it was paid, back to the available stock (and out of the
    /// account's holdings) if not.
    fn settle(&mut self, order: OrderId, sold: bool) -> bool {
        self.settled.insert(order);
        let Some(reservation) = self.reservations.remove(&order) else {
            return false;
        };
        for (sku, units) in &reservation.lines {
            let counter = self.counters.entry(sku.clone()).or_default();
            let before = counter.available();
            counter.reserved -= units;
            if sold {
                counter.sold += units;
            }
            counter.assert_valid(sku);
            self.note(sku, before);
            if !sold {
                self.take_holding(reservation.user, sku, *units);
            }
        }
        true
    }

    fn take_holding(&mut self, user: UserId, sku: &Sku, units: i64) {
        let key = (user, sku.clone());
        if let Some(held) = self.holdings.get_mut(&key) {
            *held -= units;
            if *held <= 0 {
                self.holdings.remove(&key);
            }
        }
    }

    /// Adds to or sets the units on hand. Stock already reserved by pending
    /// orders cannot be taken away.
    pub fn restock(&mut self, restock: &AdminRestock) -> Result<StockLevel, ApiError> {
        let counter = self.counters.entry(restock.sku.clone()).or_default();
        let on_hand = match restock.mode {
            RestockMode::Add => counter.on_hand().checked_add(restock.quantity),
            RestockMode::Set => Some(restock.quantity),
        };
        let Some(on_hand) = on_hand.filter(|n| (0..=STOCK_UNITS_MAX).contains(n)) else {
            return Err(ApiError::bad_request(format!(
                "stock of {} would leave 0..={STOCK_UNITS_MAX}",
                restock.sku
            )));
        };
        if on_hand < counter.reserved {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                format!(
                    "{} has {} units reserved by pending orders",
                    restock.sku, counter.reserved
                ),
            ));
        }
        let before = counter.available();
        counter.received = counter.sold + on_hand;
        let level = counter.level(&restock.sku);
        self.note(&restock.sku, before);
        Ok(level)
    }

    /// Units received of a SKU: the number a restock persists.
    pub fn received(&self, sku: &Sku) -> i64 {
        self.counters.get(sku).map_or(0, |c| c.received)
    }

    /// Takes back a restock of `delta` units that could not be persisted.
    pub fn revert(&mut self, sku: &Sku, delta: i64) {
        let counter = self.counters.entry(sku.clone()).or_default();
        let before = counter.available();
        let floor = counter.sold + counter.reserved;
        counter.received = (counter.received - delta).max(floor);
        counter.assert_valid(sku);
        self.note(sku, before);
    }
}

/// One entry per SKU, quantities summed and checked.
fn merge_lines(lines: &[(Sku, i64)]) -> Result<Vec<(Sku, i64)>, ApiError> {
    let mut merged: Vec<(Sku, i64)> = Vec::with_capacity(lines.len());
    for (sku, units) in lines {
        if *units <= 0 || *units > STOCK_UNITS_MAX {
            return Err(ApiError::bad_request(format!(
                "{sku}: quantity {units} out of range"
            )));
        }
        match merged.iter_mut().find(|(s, _)| s == sku) {
            Some((_, total)) => *total += units,
            None => merged.push((sku.clone(), *units)),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests;
