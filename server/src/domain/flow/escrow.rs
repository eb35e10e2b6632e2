//! Selling stock that several nodes share through their cluster (see
//! `souk_storage::scylla::escrow`). A SKU's owner shard reserves from the
//! units this node holds in escrow, exactly as from units received on a
//! node alone; when they fall short it takes units from the cluster's pool
//! (a conditional write) and tries once more. It takes more before a SKU
//! runs dry, gives idle units back, and sells nothing once its lease is
//! about to end, since another node may then reclaim its units.

use std::rc::Rc;

use souk_storage::store::{StockEscrow, Taken};
use souk_wire::api::RestockMode;
use souk_wire::limits::STOCK_UNITS_MAX;

use super::*;

/// Whether this node may still sell `margin` from now under its lease.
pub(super) fn may_sell(
    escrow: &dyn StockEscrow,
    margin: std::time::Duration,
) -> Result<(), ApiError> {
    match escrow.selling_for() {
        None => Err(ApiError::new(
            ErrorStatus::Unavailable,
            "this node was fenced by the nodes sharing its cluster; restart it to sell again",
        )),
        Some(left) if left <= margin => Err(ApiError::new(
            ErrorStatus::Unavailable,
            "this node cannot renew its lease with the cluster; it sells again once it can",
        )),
        Some(_) => Ok(()),
    }
}

/// Reserves an order's lines on their owner (this shard) from the units
/// this node holds, taking what falls short from the pool first.
pub(super) async fn reserve_shared<P: Ports>(
    ports: &Rc<P>,
    order: OrderId,
    user: UserId,
    lines: Vec<(Sku, i64)>,
) -> Result<(), ApiError> {
    let escrow = ports.escrow().expect("only where nodes share stock");
    may_sell(escrow, limits::ESCROW_SELL_MARGIN)?;
    let first = domain::reserve(&mut ports.state().borrow_mut(), order, user, &lines);
    match first {
        Err(error) if error.status == ErrorStatus::InsufficientStock => {}
        answer => {
            if answer.is_ok() {
                sold(ports, &lines);
            }
            return answer;
        }
    }
    let short: Vec<(Sku, i64)> = {
        let state = ports.state().borrow();
        let mut wanted: Vec<(Sku, i64)> = Vec::new();
        for (sku, units) in &lines {
            match wanted.iter_mut().find(|(s, _)| s == sku) {
                Some((_, total)) => *total += units,
                None => wanted.push((sku.clone(), *units)),
            }
        }
        wanted
            .into_iter()
            .filter(|(sku, units)| *units > state.inventory.available(sku))
            .collect()
    };
    for (sku, units) in &short {
        ensure(ports, sku, *units).await?;
    }
    let second = domain::reserve(&mut ports.state().borrow_mut(), order, user, &lines);
    if second.is_ok() {
        sold(ports, &lines);
    }
    second
}

/// Makes `units` of `sku` available here if the pool has them: one take
/// per SKU at a time on this shard, which the reservations short at the
/// same moment wait for (sized to cover them, as a chunk is) rather than
/// each racing the others' conditional writes on the SKU's partition.
async fn ensure<P: Ports>(ports: &Rc<P>, sku: &Sku, units: i64) -> Result<(), ApiError> {
    let started = ports.now();
    loop {
        let (need, pool) = {
            let state = ports.state().borrow();
            let available = state.inventory.available(sku);
            (units - available, state.inventory.pool().get(sku).copied())
        };
        if need <= 0 {
            return Ok(());
        }
        // The pool as last read (at every take and restock here, and every
        // `ESCROW_POOLS_EVERY`) cannot cover it: sold out on this node for
        // now, without a read of the cluster per refused checkout.
        if pool.is_some_and(|pool| pool < need) {
            return Ok(());
        }
        if ports.state().borrow_mut().escrow.start_taking(sku) {
            let taken = take(ports, sku, need).await;
            ports.state().borrow_mut().escrow.done_taking(sku);
            return taken.map(drop);
        }
        // Another reservation's take is under way: its units may cover
        // this one. A take that never ends is the store's to time out.
        if ports.now().0.saturating_sub(started.0) > limits::ESCROW_TAKE_WAIT.as_millis() as u64 {
            return Err(ApiError::busy(
                limits::BUSY_RETRY_AFTER_MS,
                "stock is being moved to this node; retry",
            ));
        }
        ports.sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Takes units of `sku` from the pool into this node's grant: none unless
/// the pool has `need`, up to a chunk sized to the SKU's sales.
async fn take<P: Ports>(ports: &Rc<P>, sku: &Sku, need: i64) -> Result<i64, ApiError> {
    let escrow = ports.escrow().expect("only where nodes share stock");
    let want = ports.state().borrow().escrow.chunk(sku).max(need);
    match escrow.take(sku, need, want).await {
        Ok(taken) => {
            credit(ports, sku, taken);
            Ok(taken.units)
        }
        // A take whose outcome is unknown may have moved units into the
        // grant: they stay out of the counter (unsold, never oversold)
        // until the next start reads the grant.
        Err(error) => Err(storage_failure(error)),
    }
}

fn credit<P: Ports>(ports: &Rc<P>, sku: &Sku, taken: Taken) {
    let mut state = ports.state().borrow_mut();
    state.inventory.grant(sku, taken.units);
    state.inventory.set_pool(sku, taken.pool);
    if taken.units > 0 {
        ports.escrow_moved(true, taken.units);
    }
}

/// Notes a sale and, when a SKU runs low, takes more in the background.
fn sold<P: Ports>(ports: &Rc<P>, lines: &[(Sku, i64)]) {
    let now = ports.now();
    let mut top_up = Vec::new();
    {
        let mut state = ports.state().borrow_mut();
        for (sku, units) in lines {
            state.escrow.sold(sku, *units, now);
            let available = state.inventory.available(sku);
            let pool_left = state.inventory.pool().get(sku).is_none_or(|pool| *pool > 0);
            if pool_left
                && state.escrow.wants_more(sku, available)
                && state.escrow.start_taking(sku)
            {
                top_up.push(sku.clone());
            }
        }
    }
    for sku in top_up {
        let ports_for_task = ports.clone();
        ports.spawn(Box::pin(async move {
            if let Err(error) = take(&ports_for_task, &sku, 1).await {
                debug!(%sku, %error, "could not top up from the pool");
            }
            ports_for_task.state().borrow_mut().escrow.done_taking(&sku);
        }));
    }
}

/// Gives idle units back to the pool and reads the pools again, every
/// `ESCROW_BALANCE_EVERY`, for as long as the shard runs.
pub async fn keep_escrow_balanced<P: Ports>(ports: Rc<P>) {
    let Some(_) = ports.escrow() else {
        return;
    };
    let mut ticks: u64 = 0;
    loop {
        ports.sleep(limits::ESCROW_BALANCE_EVERY).await;
        ticks += 1;
        let every = limits::ESCROW_POOLS_EVERY.as_secs() / limits::ESCROW_BALANCE_EVERY.as_secs();
        if ticks.is_multiple_of(every.max(1)) {
            read_pools(&ports).await;
        }
        give_back_idle(&ports).await;
    }
}

async fn read_pools<P: Ports>(ports: &Rc<P>) {
    let escrow = ports.escrow().expect("checked by the caller");
    match escrow.pools().await {
        Ok(pools) => {
            let mut state = ports.state().borrow_mut();
            let shard = state.shard;
            let placement = state.placement;
            for (sku, pool) in pools {
                if placement.sku_owner(&sku) == shard {
                    state.inventory.set_pool(&sku, pool);
                }
            }
        }
        Err(error) => debug!(%error, "cannot read the pools"),
    }
}

async fn give_back_idle<P: Ports>(ports: &Rc<P>) {
    let escrow = ports.escrow().expect("checked by the caller");
    let now = ports.now();
    let idle: Vec<(Sku, i64)> = {
        let mut state = ports.state().borrow_mut();
        let held = state.inventory.held_skus();
        let mut idle = Vec::new();
        for (sku, available) in held {
            let pool = state.inventory.pool().get(&sku).copied();
            let units = state.escrow.to_give_back(&sku, available, pool, now);
            if units > 0 && state.inventory.take_back(&sku, units) {
                idle.push((sku, units));
            }
        }
        idle
    };
    for (sku, units) in idle {
        match escrow.give_back(&sku, units).await {
            Ok(pool) => {
                ports.state().borrow_mut().inventory.set_pool(&sku, pool);
                ports.escrow_moved(false, units);
            }
            // Refused: the units are still this node's.
            Err(StorageError::Conflict(reason)) => {
                warn!(%sku, %reason, "could not give units back to the pool");
                ports.state().borrow_mut().inventory.grant(&sku, units);
            }
            // Unknown: they may be in the pool already, so this node does
            // not sell them; the next start reads the grant as it is.
            Err(error) => warn!(%sku, %error, "giving units back did not finish"),
        }
    }
}

/// A restock where nodes share stock. Adding (or removing) units changes
/// the pool, which every node takes from. Setting the units on hand sets
/// what this node shows: its own unsold units go back to the pool first,
/// and the pool is set to the quantity less this node's reserved units.
/// Other nodes' unsold units are not counted: no node knows the others'
/// sales to set them from, and they come back to the pool when idle.
pub(super) async fn restock_shared<P: Ports>(
    ports: &Rc<P>,
    restock: AdminRestock,
) -> Result<StockLevel, ApiError> {
    let escrow = ports.escrow().expect("only where nodes share stock");
    let sku = &restock.sku;
    let in_range = match restock.mode {
        RestockMode::Add => restock.quantity.abs() <= STOCK_UNITS_MAX,
        RestockMode::Set => (0..=STOCK_UNITS_MAX).contains(&restock.quantity),
    };
    if !in_range {
        return Err(ApiError::bad_request(format!(
            "stock of {sku} would leave 0..={STOCK_UNITS_MAX}"
        )));
    }
    let refused = |error: StorageError| match error {
        StorageError::Conflict(reason) => ApiError::new(ErrorStatus::Conflict, reason),
        other => storage_failure(other),
    };
    let pool = match restock.mode {
        RestockMode::Add => escrow.add(sku, restock.quantity).await.map_err(refused)?,
        RestockMode::Set => {
            let own = ports.state().borrow().inventory.available(sku);
            if own > 0 && ports.state().borrow_mut().inventory.take_back(sku, own) {
                match escrow.give_back(sku, own).await {
                    Ok(_) => ports.escrow_moved(false, own),
                    Err(StorageError::Conflict(reason)) => {
                        ports.state().borrow_mut().inventory.grant(sku, own);
                        return Err(ApiError::new(ErrorStatus::Conflict, reason));
                    }
                    Err(error) => return Err(storage_failure(error)),
                }
            }
            let reserved = ports.state().borrow().inventory.level(sku).reserved;
            if restock.quantity < reserved {
                return Err(ApiError::new(
                    ErrorStatus::Conflict,
                    format!("{sku} has {reserved} units reserved by pending orders"),
                ));
            }
            escrow
                .set(sku, restock.quantity - reserved)
                .await
                .map_err(refused)?
        }
    };
    let mut state = ports.state().borrow_mut();
    state.inventory.set_pool(sku, pool);
    Ok(state.inventory.level(sku))
}
