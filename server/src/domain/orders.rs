//! Orders: ids, the state machine, the views clients get, the reservations
//! awaiting payment, and the simulated payment gateway.
//!
//! An order belongs to its user's shard. That shard places it (reserving
//! every line on the lines' owner shards, then writing the order durably),
//! runs its payment, and expires it when its reservation lapses. Every
//! state change is a conditional write on the stored order, so payment,
//! expiry and cancellation racing for one order settle it exactly once.

use std::collections::{BTreeSet, HashMap, VecDeque};

use souk_storage::model::OrderRecord;
use souk_wire::api::{
    ApiError, Checkout, CheckoutLine, Currency, ErrorStatus, IdempotencyKey, Money, Order, OrderId,
    OrderLine, OrderStatus, PaymentStatus, Sku, UnixMillis, UserId,
};
use xxhash_rust::xxh3::xxh3_64;

use super::cart::line_name;
use super::catalog::Catalog;
use crate::limits::{CART_LINE_UNITS_MAX, IDEMPOTENCY_WINDOW, PLACED_KEYS_MAX};
use crate::shard::ShardId;

/// Makes order and user ids: milliseconds since the epoch, then the node
/// (its number among the nodes sharing a cluster; 0 alone), the shard and a
/// sequence number. Ids sort by creation time (order history reads newest
/// first by id) and never collide across shards or nodes; within a shard
/// the clock is never allowed to step back.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    shard: u64,
    last_ms: u64,
    sequence: u64,
}

const SEQUENCE_BITS: u32 = 7;
const SHARD_BITS: u32 = 8;
const NODE_BITS: u32 = 5;
/// Bits under the milliseconds.
const LOW_BITS: u32 = SEQUENCE_BITS + SHARD_BITS + NODE_BITS;

/// Nodes that can share a cluster and still make distinct ids.
pub const NODES_MAX: u8 = 1 << NODE_BITS;

impl IdGenerator {
    pub fn new(node: u8, shard: ShardId) -> IdGenerator {
        assert!(node < NODES_MAX, "node number {node} out of range");
        IdGenerator {
            node: u64::from(node),
            shard: u64::from(shard.0),
            last_ms: 0,
            sequence: 0,
        }
    }

    /// The smallest id any shard can make at or after `at`: ids below it
    /// were all made before `at`.
    pub fn first_at(at: UnixMillis) -> u64 {
        at.0 << LOW_BITS
    }

    pub fn next(&mut self, now: UnixMillis) -> u64 {
        let mut ms = now.0.max(self.last_ms);
        if ms == self.last_ms {
            self.sequence += 1;
            if self.sequence == 1 << SEQUENCE_BITS {
                // 128 ids in one millisecond: borrow the next one.
                ms += 1;
                self.sequence = 0;
            }
        } else {
            self.sequence = 0;
        }
        self.last_ms = ms;
        ms << LOW_BITS
            | self.node << (SHARD_BITS + SEQUENCE_BITS)
            | self.shard << SEQUENCE_BITS
            | self.sequence
    }
}

/// Whether an order may go from one status to another.
pub fn check_transition(from: OrderStatus, to: OrderStatus) -> Result<(), ApiError> {
    use OrderStatus as S;
    let allowed = matches!(
        (from, to),
        (S::PendingPayment, S::Paid | S::Cancelled | S::Expired)
            | (S::Paid, S::Fulfilled | S::Refunded)
            | (S::Fulfilled, S::Refunded)
    );
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorStatus::Conflict,
            format!("an order that is {from:?} cannot become {to:?}"),
        ))
    }
}

pub fn view(record: &OrderRecord) -> Order {
    Order {
        id: record.id,
        user_id: record.user_id,
        status: record.status,
        lines: record.lines.clone(),
        total: record.total,
        created_at: record.created_at,
        updated_at: record.updated_at,
        expires_at: record.expires_at,
        shipping_address: record.shipping_address.clone(),
        payment_status: record.payment_status,
    }
}

/// The lines of a buy-now checkout, checked as a cart line would be: a SKU
/// the catalog sells, once, in at most `CART_LINE_UNITS_MAX` units.
pub fn buy_now_lines(
    catalog: &Catalog,
    lines: &[CheckoutLine],
) -> Result<Vec<(Sku, u32)>, ApiError> {
    let mut checked: Vec<(Sku, u32)> = Vec::with_capacity(lines.len());
    for line in lines {
        if checked.iter().any(|(sku, _)| *sku == line.sku) {
            return Err(ApiError::bad_request(format!(
                "{} is named twice; give one line per SKU",
                line.sku
            )));
        }
        if line.quantity == 0 || line.quantity > CART_LINE_UNITS_MAX {
            return Err(ApiError::bad_request(format!(
                "{}: from 1 to {CART_LINE_UNITS_MAX} units per line",
                line.sku
            )));
        }
        if catalog.sku_variant(&line.sku).is_none() {
            return Err(ApiError::new(
                ErrorStatus::NotFound,
                format!("no SKU {}", line.sku),
            ));
        }
        checked.push((line.sku.clone(), line.quantity));
    }
    Ok(checked)
}

/// Whether a stored order is what `checkout` asks for: a retry with the same
/// idempotency key must not stand for a different purchase.
pub fn same_checkout(order: &OrderRecord, checkout: &Checkout) -> bool {
    order.payment_method_token == checkout.payment_method_token
        && checkout.expected_total.is_none_or(|t| t == order.total)
        && (checkout.lines.is_empty()
            || (checkout.lines.len() == order.lines.len()
                && checkout
                    .lines
                    .iter()
                    .zip(&order.lines)
                    .all(|(asked, placed)| {
                        asked.sku == placed.sku && asked.quantity == placed.quantity
                    })))
}

/// Who places a new order, where and when: what pricing does not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    pub id: OrderId,
    pub user: UserId,
    /// The user's shard, which places the order and runs its payment.
    pub shard: ShardId,
    pub key: IdempotencyKey,
    pub placed_at: UnixMillis,
    /// When its reservation lapses if payment has not completed.
    pub expires_at: UnixMillis,
}

/// The order a checkout of `lines` would place, priced from the catalog
/// now. Refuses an empty cart, SKUs gone from the catalog, mixed
/// currencies, and a total other than the one the client expects.
pub fn price(
    catalog: &Catalog,
    order: &NewOrder,
    lines: &[(Sku, u32)],
    checkout: &Checkout,
) -> Result<OrderRecord, ApiError> {
    if lines.is_empty() {
        return Err(ApiError::bad_request("the cart is empty"));
    }
    if checkout.payment_method_token.trim().is_empty() {
        return Err(ApiError::bad_request("a payment method token is required"));
    }
    let mut order_lines = Vec::with_capacity(lines.len());
    let mut currency: Option<Currency> = None;
    let mut total: i64 = 0;
    for (sku, units) in lines {
        let Some((product, variant)) = catalog.sku_variant(sku) else {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                format!("{sku} is no longer sold; remove it from the cart"),
            ));
        };
        if *currency.get_or_insert(variant.price.currency) != variant.price.currency {
            return Err(ApiError::bad_request(
                "the cart mixes currencies; check out each separately",
            ));
        }
        let line_total = variant
            .price
            .minor_units
            .checked_mul(i64::from(*units))
            .ok_or_else(|| ApiError::bad_request("line total out of range"))?;
        total = total
            .checked_add(line_total)
            .ok_or_else(|| ApiError::bad_request("order total out of range"))?;
        order_lines.push(OrderLine {
            sku: sku.clone(),
            product_id: product.id.clone(),
            name: line_name(&product.name, variant.name.as_deref()),
            quantity: *units,
            unit_price: variant.price,
            line_total: Money::new(line_total, variant.price.currency),
        });
    }
    let total = Money::new(total, currency.expect("at least one line"));
    if let Some(expected) = checkout.expected_total
        && expected != total
    {
        return Err(ApiError::new(
            ErrorStatus::Conflict,
            format!("prices changed: the total is now {total}, not {expected}"),
        ));
    }
    Ok(OrderRecord {
        id: order.id,
        user_id: order.user,
        shard: order.shard.0,
        status: OrderStatus::PendingPayment,
        lines: order_lines,
        total,
        created_at: order.placed_at,
        updated_at: order.placed_at,
        expires_at: order.expires_at,
        shipping_address: None,
        payment_status: PaymentStatus::Pending,
        payment_method_token: checkout.payment_method_token.clone(),
        idempotency_key: Some(order.key),
    })
}

/// Orders awaiting payment on this shard, by when their reservation lapses.
#[derive(Debug, Default)]
pub struct Pending {
    by_deadline: BTreeSet<(UnixMillis, OrderId)>,
    deadlines: HashMap<OrderId, UnixMillis>,
}

impl Pending {
    pub fn insert(&mut self, id: OrderId, expires_at: UnixMillis) {
        if let Some(old) = self.deadlines.insert(id, expires_at) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((expires_at, id));
    }

    pub fn remove(&mut self, id: OrderId) {
        if let Some(deadline) = self.deadlines.remove(&id) {
            self.by_deadline.remove(&(deadline, id));
        }
    }

    /// Takes out every order whose deadline has passed.
    pub fn due(&mut self, now: UnixMillis) -> Vec<OrderId> {
        let mut due = Vec::new();
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            self.by_deadline.pop_first();
            self.deadlines.remove(&id);
            due.push(id);
        }
        due
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn ids(&self) -> Vec<OrderId> {
        self.deadlines.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

/// Checkouts placed recently on this shard, by user and idempotency key:
/// what makes a retried checkout return its order instead of placing
/// another. It is derived from the orders (each stores its key), so it
/// needs no write of its own and is rebuilt at start. A key is honoured
/// for `IDEMPOTENCY_WINDOW` and the shard remembers at most
/// `PLACED_KEYS_MAX` keys, oldest forgotten first.
#[derive(Debug, Default)]
pub struct Placed {
    by_key: HashMap<(UserId, IdempotencyKey), OrderId>,
    by_age: VecDeque<(UnixMillis, UserId, IdempotencyKey)>,
}

impl Placed {
    /// Records a placed order. Calls come in creation order.
    pub fn insert(&mut self, user: UserId, key: IdempotencyKey, order: OrderId, at: UnixMillis) {
        if self.by_key.insert((user, key), order).is_none() {
            self.by_age.push_back((at, user, key));
        }
        let cutoff = UnixMillis(at.0.saturating_sub(IDEMPOTENCY_WINDOW.as_millis() as u64));
        while let Some(&(placed_at, user, key)) = self.by_age.front() {
            if placed_at >= cutoff && self.by_age.len() <= PLACED_KEYS_MAX {
                break;
            }
            self.by_age.pop_front();
            self.by_key.remove(&(user, key));
        }
    }

    pub fn get(&self, user: UserId, key: IdempotencyKey) -> Option<OrderId> {
        self.by_key.get(&(user, key)).copied()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The built-in stand-in for a payment provider: it answers after a set
/// latency, declines a set share of payments, and, like a real provider
/// called with an idempotency key, gives the same answer for the same
/// order every time it is asked.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedGateway {
    pub latency: std::time::Duration,
    /// Declines per 10,000 payments.
    pub declines_per_10k: u32,
}

impl SimulatedGateway {
    /// Whether the charge for `order` goes through; the decline reason if not.
    pub fn charge(&self, order: OrderId, token: &str) -> Result<String, String> {
        if token.starts_with("pm_decline") {
            return Err("card declined".into());
        }
        let draw = xxh3_64(&order.0.to_le_bytes()) % 10_000;
        if draw < u64::from(self.declines_per_10k) {
            return Err("card declined".into());
        }
        Ok(format!("sim_ch_{:016x}", xxh3_64(&order.0.to_be_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_name_their_node_and_shard() {
        let mut ids = IdGenerator::new(5, ShardId(3));
        let mut last = 0;
        for n in 0..10_000 {
            let id = ids.next(UnixMillis(1_800_000_000_000 + n / 5000));
            assert!(id > last, "ids strictly increase");
            assert_eq!((id >> SEQUENCE_BITS) & 0xff, 3, "the shard is in the id");
            assert_eq!(
                (id >> (SEQUENCE_BITS + SHARD_BITS)) & 0x1f,
                5,
                "and the node"
            );
            last = id;
        }
        let earlier = ids.next(UnixMillis(1_700_000_000_000));
        assert!(earlier > last, "a clock stepping back does not repeat ids");
        let at = UnixMillis(1_800_000_000_000);
        let made = [
            IdGenerator::new(0, ShardId(3)).next(at),
            IdGenerator::new(0, ShardId(4)).next(at),
            IdGenerator::new(1, ShardId(3)).next(at),
            IdGenerator::new(NODES_MAX - 1, ShardId(255)).next(at),
        ];
        let distinct: std::collections::HashSet<u64> = made.into_iter().collect();
        assert_eq!(distinct.len(), made.len(), "{made:?}");
        assert!(made.iter().all(|&id| id >= IdGenerator::first_at(at)));
        assert!(
            made.iter()
                .all(|&id| id < IdGenerator::first_at(UnixMillis(at.0 + 1)))
        );
    }

    #[test]
    fn only_listed_transitions_are_allowed() {
        use OrderStatus as S;
        let all = [
            S::PendingPayment,
            S::Paid,
            S::Fulfilled,
            S::Cancelled,
            S::Expired,
            S::Refunded,
        ];
        let mut allowed = 0;
        for from in all {
            for to in all {
                if check_transition(from, to).is_ok() {
                    allowed += 1;
                } else {
                    assert_eq!(
                        check_transition(from, to).unwrap_err().status,
                        ErrorStatus::Conflict
                    );
                }
            }
        }
        assert_eq!(allowed, 6);
        assert!(
            check_transition(S::Paid, S::Cancelled).is_err(),
            "a paid order is refunded, not cancelled"
        );
        assert!(check_transition(S::Expired, S::Paid).is_err());
    }

    #[test]
    fn pending_orders_come_due_in_deadline_order() {
        let mut pending = Pending::default();
        pending.insert(OrderId(1), UnixMillis(30));
        pending.insert(OrderId(2), UnixMillis(10));
        pending.insert(OrderId(3), UnixMillis(20));
        pending.remove(OrderId(3));
        assert_eq!(pending.due(UnixMillis(25)), vec![OrderId(2)]);
        assert_eq!(pending.due(UnixMillis(30)), vec![OrderId(1)]);
        assert!(pending.is_empty());
    }

    #[test]
    fn placed_keys_are_remembered_for_the_window() {
        let mut placed = Placed::default();
        let key = IdempotencyKey(9);
        placed.insert(UserId(1), key, OrderId(1), UnixMillis(0));
        assert_eq!(placed.get(UserId(1), key), Some(OrderId(1)));
        assert_eq!(placed.get(UserId(2), key), None, "keys are per user");
        let later = UnixMillis(IDEMPOTENCY_WINDOW.as_millis() as u64 + 1);
        placed.insert(UserId(2), key, OrderId(2), later);
        assert_eq!(placed.get(UserId(1), key), None, "past the window");
        assert_eq!(placed.len(), 1);
    }

    #[test]
    fn the_gateway_answers_the_same_for_the_same_order() {
        let gateway = SimulatedGateway {
            latency: std::time::Duration::ZERO,
            declines_per_10k: 5000,
        };
        let outcomes: Vec<bool> = (0..1000)
            .map(|n| gateway.charge(OrderId(n), "pm_tok").is_ok())
            .collect();
        let again: Vec<bool> = (0..1000)
            .map(|n| gateway.charge(OrderId(n), "pm_tok").is_ok())
            .collect();
        assert_eq!(outcomes, again);
        let paid = outcomes.iter().filter(|ok| **ok).count();
        assert!((400..600).contains(&paid), "about half declined: {paid}");
        assert!(
            gateway
                .charge(OrderId(1), "pm_decline_insufficient_funds")
                .is_err()
        );
    }
}
