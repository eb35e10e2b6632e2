//! Checkout, on the user's shard (which owns the cart, the user's pending
//! orders and the idempotency guard):
//!
//! 1. look the idempotency key up among the shard's recent orders: a
//!    retry gets its order back;
//! 2. claim the key where every node sees it, when several nodes share the
//!    store: a retry sent to another node gets the first order back;
//! 3. price the cart (or the lines a "buy now" names) from the catalog;
//! 4. reserve every line on its SKU's owner shard, all or nothing;
//! 5. write the order `PendingPayment` durably, with its key;
//! 6. only then acknowledge, and start the payment.
//!
//! One durable write per checkout on one node (the claim is a second one
//! where nodes share a cluster). A crash before 5 leaves reservations
//! only in memory, gone with the process; the rebuild at start counts
//! exactly the durable orders and re-indexes their keys, so a retry after
//! a crash finds an order that was stored and places one that was not.
//! Concurrent duplicates are refused with `Busy` while the first runs.

use std::rc::Rc;

use souk_storage::store::KeyClaim;
use souk_wire::api::IdempotencyKey;

use super::reservations::{Settlement, reserve, settle};
use super::*;

/// Frees the idempotency guard when the checkout ends, however it ends.
struct InFlight<'a, P: Ports> {
    ports: &'a P,
    key: (UserId, IdempotencyKey),
}

impl<P: Ports> Drop for InFlight<'_, P> {
    fn drop(&mut self) {
        self.ports.state().borrow_mut().checkouts.remove(&self.key);
    }
}

pub(super) async fn place_order<P: Ports>(ports: &Rc<P>, call: CheckoutCall) -> ShardAnswer {
    ShardAnswer::Placed(place(ports, call).await.map(Box::new))
}

async fn place<P: Ports>(
    ports: &Rc<P>,
    call: CheckoutCall,
) -> Result<souk_wire::api::Order, ApiError> {
    let guard_key = (call.user, call.key);
    if !ports.state().borrow_mut().checkouts.insert(guard_key) {
        return Err(ApiError::busy(
            limits::BUSY_RETRY_AFTER_MS,
            "this checkout is already in progress",
        ));
    }
    let _guard = InFlight {
        ports: ports.as_ref(),
        key: guard_key,
    };
    let now = ports.now();
    let earlier = ports.state().borrow().placed.get(call.user, call.key);
    if let Some(id) = earlier
        && let Some(order) = ports.store().order(id).await.map_err(storage_failure)?
    {
        return replayed(&order, &call);
    }
    // Replays above are free; each new checkout attempt counts.
    take_checkout_token(ports, call.user, now).await?;
    let id = OrderId(ports.state().borrow_mut().ids.next(now));
    // Before pricing: a retry on another node finds the order even though
    // the cart it was priced from lives on the first node.
    if let Some(earlier) = claim_key(ports, &call, id, now).await? {
        return Ok(earlier);
    }
    let record = match price_and_reserve(ports, &call, id, now).await {
        Ok(record) => record,
        Err(error) => {
            // Nothing was stored: a retry may place the order.
            release_key(ports, &call, id).await;
            return Err(error);
        }
    };
    // A claim is taken over only `CHECKOUT_CLAIM_TIMEOUT` after it was
    // made: an attempt that took half of that to get here (a stalled
    // process) stops rather than insert under a key another may hold.
    let took = ports.now().0.saturating_sub(now.0);
    // Where nodes share stock, an order stored late in this node's lease
    // could land after another node reclaimed the units it holds.
    let lease = ports
        .escrow()
        .map(|escrow| super::escrow::may_sell(escrow, limits::ESCROW_INSERT_MARGIN));
    if let Some(Err(error)) = lease {
        settle(ports, &record, Settlement::Release).await;
        release_key(ports, &call, id).await;
        return Err(error);
    }
    if took > limits::CHECKOUT_CLAIM_TIMEOUT.as_millis() as u64 / 2 {
        settle(ports, &record, Settlement::Release).await;
        release_key(ports, &call, id).await;
        return Err(ApiError::new(
            ErrorStatus::Unavailable,
            "the checkout took too long; retry it with the same key",
        ));
    }
    if let Err(error) = ports.store().insert_order(&record).await {
        insert_failed(ports, &record, error).await?;
    }
    placed(ports, &call, &record, now);
    let view = order_rules::view(&record);
    ports.spawn(Box::pin(super::orders::pay(
        ports.clone(),
        record.id,
        Some(record),
    )));
    Ok(view)
}

/// After an insert that reported an error, which on a cluster may still
/// have stored the order (a conditional write that timed out half done):
/// the order is read back settled. Stored: the checkout goes on (`Ok`).
/// Not stored: its reservation is released, and the key claim kept (a
/// retry takes it over in time). Unknown: the reservation is kept and the
/// order left to the expiry sweep, so the units are never sold twice; a
/// retry finds the order if it was stored.
async fn insert_failed<P: Ports>(
    ports: &Rc<P>,
    record: &OrderRecord,
    error: StorageError,
) -> Result<(), ApiError> {
    match ports.store().order_settled(record.user_id, record.id).await {
        Ok(Some(_)) => {
            warn!(order = record.id.0, %error, "order stored although its insert failed");
            Ok(())
        }
        Ok(None) => {
            warn!(order = record.id.0, %error, "order not stored; its reservation is released");
            settle(ports, record, Settlement::Release).await;
            Err(storage_failure(error))
        }
        Err(unknown) => {
            warn!(order = record.id.0, %error, %unknown, "order may be stored; its units stay reserved");
            let mut state = ports.state().borrow_mut();
            state.pending.insert(record.id, record.expires_at);
            Err(storage_failure(error))
        }
    }
}

/// The answer to a retried checkout: its order, if the retry asks for the
/// same thing.
fn replayed(order: &OrderRecord, call: &CheckoutCall) -> Result<souk_wire::api::Order, ApiError> {
    if !order_rules::same_checkout(order, &call.checkout) {
        return Err(ApiError::new(
            ErrorStatus::Conflict,
            "this idempotency key was used for a different checkout",
        ));
    }
    Ok(order_rules::view(order))
}

/// Claims the checkout's key for `record` where every node sharing the
/// store sees it (a no-op on a store one node uses). `Some` is the order an
/// earlier attempt stored, on any node. A claim whose order is not stored
/// is an attempt still running elsewhere (`Busy`) until
/// `CHECKOUT_CLAIM_TIMEOUT` has passed, far beyond any attempt's time to
/// its insert; then it never stored one, and the claim is taken over.
async fn claim_key<P: Ports>(
    ports: &Rc<P>,
    call: &CheckoutCall,
    id: OrderId,
    now: UnixMillis,
) -> Result<Option<souk_wire::api::Order>, ApiError> {
    let store = ports.store();
    for _ in 0..3 {
        let claim = match store.claim_checkout_key(call.user, call.key, id, now).await {
            // Released between reading and claiming: claim again.
            Err(StorageError::Conflict(_)) => continue,
            claim => claim.map_err(storage_failure)?,
        };
        let KeyClaim::Taken { order, claimed_at } = claim else {
            return Ok(None);
        };
        // Settled: an insert left half done by a timeout is completed or
        // discarded first, so a missing order will not appear later.
        let stored = store
            .order_settled(call.user, order)
            .await
            .map_err(storage_failure)?;
        if let Some(stored) = stored {
            return replayed(&stored, call).map(Some);
        }
        let timeout = limits::CHECKOUT_CLAIM_TIMEOUT.as_millis() as u64;
        if now.0.saturating_sub(claimed_at.0) < timeout {
            return Err(ApiError::busy(
                limits::CHECKOUT_ELSEWHERE_RETRY_AFTER_MS,
                "this checkout is in progress on another node",
            ));
        }
        let taken = store
            .take_over_checkout_key(call.user, call.key, order, id, now)
            .await
            .map_err(storage_failure)?;
        if taken {
            return Ok(None);
        }
    }
    Err(ApiError::busy(
        limits::CHECKOUT_ELSEWHERE_RETRY_AFTER_MS,
        "this checkout's key keeps changing hands",
    ))
}

async fn price_and_reserve<P: Ports>(
    ports: &Rc<P>,
    call: &CheckoutCall,
    id: OrderId,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    let record = price(ports, call, id, now)?;
    reserve(ports, &record).await?;
    Ok(record)
}

/// Gives up the key's claim after a checkout that stored nothing; a claim
/// that cannot be given up lapses after `CHECKOUT_CLAIM_TIMEOUT`.
async fn release_key<P: Ports>(ports: &Rc<P>, call: &CheckoutCall, id: OrderId) {
    let released = ports
        .store()
        .release_checkout_key(call.user, call.key, id)
        .await;
    if let Err(error) = released {
        warn!(order = id.0, %error, "checkout key not released; it lapses");
    }
}

/// Takes one of the user's checkout tokens: from the limit every node
/// shares when there is one (a user checking out through several nodes at
/// once is still held to one rate), else from this shard's.
async fn take_checkout_token<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    now: UnixMillis,
) -> Result<(), ApiError> {
    let customer = CartKey::User(user).storage_key();
    let rate = ports
        .state()
        .borrow()
        .rate_limits
        .rate(RateClass::Checkouts);
    match (ports.shared_limits(), rate) {
        (Some(shared), Some(rate)) => {
            let key = format!("{}:{customer}", RateClass::Checkouts.name());
            let wait = shared
                .take_token(&key, rate.per_second, rate.burst, now)
                .await
                .map_err(storage_failure)?;
            match wait {
                Some(wait) => Err(throttle::too_many(rate, wait)),
                None => Ok(()),
            }
        }
        _ => ports
            .state()
            .borrow_mut()
            .rate_limits
            .take(&customer, RateClass::Checkouts, now),
    }
}

/// The order this checkout places, priced from the catalog now: the
/// lines a "buy now" names, or the user's cart.
fn price<P: Ports>(
    ports: &Rc<P>,
    call: &CheckoutCall,
    id: OrderId,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    let mut state = ports.state().borrow_mut();
    let lines = if call.checkout.lines.is_empty() {
        state
            .carts
            .apply(&CartKey::User(call.user), CartChange::View, now)?
    } else {
        order_rules::buy_now_lines(&state.catalog, &call.checkout.lines)?
    };
    let order = order_rules::NewOrder {
        id,
        user: call.user,
        shard: state.shard,
        key: call.key,
        placed_at: now,
        expires_at: UnixMillis(now.0 + state.commerce.reservation_ttl.as_millis() as u64),
    };
    order_rules::price(&state.catalog, &order, &lines, &call.checkout)
}

/// Books a stored order on its user's shard: the cart loses what was
/// ordered (buying now leaves it as it is), the order awaits payment, and
/// its key finds it on a retry.
fn placed<P: Ports>(ports: &Rc<P>, call: &CheckoutCall, record: &OrderRecord, now: UnixMillis) {
    let mut state = ports.state().borrow_mut();
    if call.checkout.lines.is_empty() {
        let ordered = record
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect();
        let _ = state.carts.apply(
            &CartKey::User(call.user),
            CartChange::Deduct { lines: ordered },
            now,
        );
    }
    state.pending.insert(record.id, record.expires_at);
    state.placed.insert(call.user, call.key, record.id, now);
}
