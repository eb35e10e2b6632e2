//! What must hold at every step of a simulation, and at rest.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use souk_wire::api::{OrderStatus, Sku};

use super::World;
use crate::domain::ports::Ports;

/// Checked after every step: stock is conserved and never oversold on any
/// SKU, and (every few steps, being costlier) the stored orders keep one
/// order per key and no paid order without its charge.
pub(super) fn after_step(world: &Rc<World>) -> Result<(), String> {
    if let Some(violation) = world.ledger.borrow().violations.first() {
        return Err(violation.clone());
    }
    let node = world.node();
    for shard in &node.shards {
        let state = shard.state().borrow();
        for sku in state.catalog.skus() {
            if state.placement.sku_owner(sku) != shard.shard() {
                continue;
            }
            let t = state.inventory.totals(sku);
            if t.available < 0 || t.reserved < 0 || t.sold < 0 {
                return Err(format!("{sku} went negative: {t:?}"));
            }
            if t.received != t.available + t.reserved + t.sold {
                return Err(format!("{sku} is not conserved: {t:?}"));
            }
        }
    }
    if world.report.borrow().steps.is_multiple_of(32) {
        stored_orders(world)?;
    }
    Ok(())
}

/// One order per (user, idempotency key); every paid order was charged
/// its total at the gateway.
fn stored_orders(world: &World) -> Result<(), String> {
    let mut keys = HashSet::new();
    for order in world.store.all_orders() {
        if let Some(key) = order.idempotency_key
            && !keys.insert((order.user_id, key))
        {
            return Err(format!(
                "a second order {} for user {} under key {:x}",
                order.id.0, order.user_id.0, key.0
            ));
        }
        if order.status == OrderStatus::Paid
            && world.gateway.captured(order.id) != Some(order.total)
        {
            return Err(format!(
                "order {} is paid but was not charged {}",
                order.id.0, order.total
            ));
        }
    }
    Ok(())
}

/// Every order a shopper was told is placed is in the store.
pub(super) fn acknowledged_orders_survive(world: &World) -> Result<(), String> {
    let stored: HashSet<_> = world.store.all_orders().iter().map(|o| o.id).collect();
    for (order, (user, _)) in &world.ledger.borrow().acknowledged {
        if !stored.contains(order) {
            return Err(format!(
                "acknowledged order {} of user {} is lost",
                order.0, user.0
            ));
        }
    }
    Ok(())
}

/// Once every reservation has lapsed and the shop is idle: no order is
/// still pending, and each SKU's counters agree with the orders exactly
/// (sold = the paid orders' units, nothing reserved), so no order was
/// counted in two states.
pub(super) fn at_rest(world: &Rc<World>) -> Result<(), String> {
    stored_orders(world)?;
    acknowledged_orders_survive(world)?;
    let orders = world.store.all_orders();
    let now = world.clock.now_ms();
    if let Some(order) = orders
        .iter()
        .find(|o| o.status == OrderStatus::PendingPayment && o.expires_at.0 < now)
    {
        return Err(format!(
            "order {} is still pending past its expiry",
            order.id.0
        ));
    }
    let orphaned = &world.ledger.borrow().orphaned_charges;
    for order in &orders {
        let charged = world.gateway.captured(order.id).is_some();
        let refunded = world.gateway.refunded(order.id);
        match order.status {
            OrderStatus::Paid if refunded => {
                return Err(format!("paid order {} was refunded", order.id.0));
            }
            OrderStatus::Cancelled | OrderStatus::Expired
                if charged && !refunded && !orphaned.contains(&order.id) =>
            {
                return Err(format!(
                    "order {} is {:?} but its charge was never refunded",
                    order.id.0, order.status
                ));
            }
            _ => {}
        }
    }
    let mut paid: HashMap<&Sku, i64> = HashMap::new();
    for order in orders.iter().filter(|o| o.status == OrderStatus::Paid) {
        for line in &order.lines {
            *paid.entry(&line.sku).or_default() += i64::from(line.quantity);
        }
    }
    let node = world.node();
    for shard in &node.shards {
        let state = shard.state().borrow();
        for sku in state.catalog.skus() {
            if state.placement.sku_owner(sku) != shard.shard() {
                continue;
            }
            let totals = state.inventory.totals(sku);
            let sold = paid.get(sku).copied().unwrap_or(0);
            if totals.reserved != 0 || totals.sold != sold {
                return Err(format!(
                    "{sku}: counters {totals:?} but the paid orders hold {sold} sold, nothing reserved"
                ));
            }
        }
    }
    Ok(())
}
