//! Orders after checkout: reading them, cancelling, and the payment and
//! expiry that move them on.

use std::rc::Rc;

use super::reservations::{Settlement, settle};
use super::*;

/// Charges the order through the gateway and records the outcome. Runs on
/// the user's shard after the order is acknowledged (with the record just
/// written, `placed`), and again for every pending order after a restart
/// (read back): the gateway is asked with the order id as its idempotency
/// key, so a repeated charge never charges twice. A gateway that does not
/// answer is asked again, `PAYMENT_RETRY_DELAY` apart, while the order's
/// reservation lasts. Whether the order is still pending when the outcome
/// is written is the write's condition, not a read's.
pub async fn pay<P: Ports>(ports: Rc<P>, order_id: OrderId, placed: Option<OrderRecord>) {
    let stored = match placed {
        Some(order) => Ok(Some(order)),
        None => ports.store().order(order_id).await,
    };
    let order = match stored {
        Ok(Some(order)) if order.status == OrderStatus::PendingPayment => order,
        Ok(_) => return,
        Err(error) => {
            warn!(order = order_id.0, %error, "payment not started; the reservation will lapse");
            return;
        }
    };
    let mut attempts: u16 = 0;
    let charged = loop {
        attempts += 1;
        let charge = ports.charge(order_id, &order.payment_method_token, order.total);
        match charge.await {
            Err(GatewayError::Unavailable(reason))
                if ports.now() < order.expires_at && attempts < limits::PAYMENT_ATTEMPTS =>
            {
                debug!(order = order_id.0, %reason, attempts, "payment to be asked again");
                ports.sleep(limits::PAYMENT_RETRY_DELAY).await;
            }
            outcome => break outcome,
        }
    };
    let reason = match charged {
        Ok(reference) => return record_charge(&ports, order, reference, attempts).await,
        Err(GatewayError::Declined(reason)) => reason,
        // Left pending: the expiry sweep releases the stock, and the charge,
        // if the gateway made one, is found by the gateway's own key.
        Err(GatewayError::Unavailable(reason)) => {
            warn!(order = order_id.0, %reason, attempts, "payment gave up; the order will expire");
            return;
        }
    };
    let now = ports.now();
    let payment = PaymentRecord {
        order_id,
        status: PaymentStatus::Failed,
        amount: order.total,
        refunded: souk_wire::api::Money::new(0, order.total.currency),
        attempts,
        last_error: Some(reason),
        gateway_reference: None,
        updated_at: now,
    };
    let outcome = Outcome {
        status: OrderStatus::Cancelled,
        payment_status: PaymentStatus::Failed,
        settlement: Settlement::Release,
        payment: Some(&payment),
    };
    let _ = transition(&ports, order, outcome, now).await;
}

/// Records a captured charge: the order is paid and its units sold. If the
/// order was cancelled or expired while the charge was under way, the
/// money goes back (a real provider is sent the refund here).
async fn record_charge<P: Ports>(
    ports: &Rc<P>,
    order: OrderRecord,
    reference: String,
    attempts: u16,
) {
    let now = ports.now();
    let (order_id, order_total) = (order.id, order.total);
    let payment = PaymentRecord {
        order_id,
        status: PaymentStatus::Captured,
        amount: order.total,
        refunded: souk_wire::api::Money::new(0, order.total.currency),
        attempts,
        last_error: None,
        gateway_reference: Some(reference),
        updated_at: now,
    };
    let outcome = Outcome {
        status: OrderStatus::Paid,
        payment_status: PaymentStatus::Captured,
        settlement: Settlement::Commit,
        payment: Some(&payment),
    };
    let Err(error) = transition(ports, order, outcome, now).await else {
        return;
    };
    if error.status != ErrorStatus::Conflict {
        // Not written: the order stays pending, and a restart (or the
        // expiry sweep) settles it.
        warn!(order = order_id.0, %error, "payment outcome not stored");
        return;
    }
    warn!(order = order_id.0, %error, "paid too late; the charge is refunded");
    ports.spawn(Box::pin(refund(ports.clone(), order_id, order_total)));
    let refund = PaymentRecord {
        status: PaymentStatus::Refunded,
        refunded: payment.amount,
        last_error: Some("the order was no longer awaiting payment".into()),
        ..payment
    };
    if let Err(error) = ports.store().put_payment(&refund).await {
        warn!(order = order_id.0, %error, "refund not recorded");
    }
}

/// Resumes the payments a stop interrupted, a bounded number at a time, so
/// that a start after a busy sale does not spawn a task per pending order
/// at once.
pub async fn resume_payments<P: Ports>(ports: Rc<P>, orders: Vec<OrderId>) {
    for chunk in orders.chunks(limits::PAYMENTS_RESUMED_AT_ONCE) {
        join_all(chunk.iter().map(|id| pay(ports.clone(), *id, None))).await;
    }
}

/// Where a transition takes an order.
struct Outcome<'a> {
    status: OrderStatus,
    payment_status: PaymentStatus,
    settlement: Settlement,
    /// The payment record written with the order's change, in one write.
    payment: Option<&'a PaymentRecord>,
}

/// Moves a pending order on if it is still pending, and settles its
/// reservation. Whether this call made the change.
async fn transition<P: Ports>(
    ports: &Rc<P>,
    mut order: OrderRecord,
    outcome: Outcome<'_>,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    order_rules::check_transition(order.status, outcome.status)?;
    let expected = order.status;
    order.status = outcome.status;
    order.payment_status = outcome.payment_status;
    order.updated_at = now;
    let written = match outcome.payment {
        Some(payment) => {
            ports
                .store()
                .settle_payment(&order, expected, payment)
                .await
        }
        None => ports.store().update_order(&order, expected).await,
    };
    match written {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            let current = ports
                .store()
                .order(order.id)
                .await
                .ok()
                .flatten()
                .map_or(expected, |o| o.status);
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                format!("the order is {current:?} now"),
            ));
        }
        Err(error) => return Err(storage_failure(error)),
    }
    ports.state().borrow_mut().pending.remove(order.id);
    if outcome.status != OrderStatus::Paid && outcome.payment.is_none() {
        // Cancelled or expired with a charge perhaps under way or made
        // unanswered: whatever the gateway took goes back.
        ports.spawn(Box::pin(refund(ports.clone(), order.id, order.total)));
    }
    settle(ports, &order, outcome.settlement).await;
    Ok(order)
}

/// Asks the gateway to give back what it charged for an order that will
/// not be paid, `PAYMENT_RETRY_DELAY` apart until it answers. A stop
/// before then loses the request: the durable event log will carry it.
async fn refund<P: Ports>(ports: Rc<P>, order_id: OrderId, amount: souk_wire::api::Money) {
    for _ in 0..limits::PAYMENT_ATTEMPTS {
        match ports.refund(order_id, amount).await {
            Ok(()) => return,
            Err(error) => {
                debug!(order = order_id.0, %error, "refund to be asked again");
                ports.sleep(limits::PAYMENT_RETRY_DELAY).await;
            }
        }
    }
    warn!(order = order_id.0, "the gateway never answered the refund");
}

/// Expires this shard's orders whose reservation lapsed. Runs for the life
/// of the shard.
pub async fn expire_lapsed<P: Ports>(ports: Rc<P>) {
    loop {
        ports.sleep(limits::EXPIRY_SWEEP_INTERVAL).await;
        let now = ports.now();
        let due = ports.state().borrow_mut().pending.due(now);
        for order_id in due {
            let order = match ports.store().order(order_id).await {
                Ok(Some(order)) if order.status == OrderStatus::PendingPayment => order,
                // Moved on elsewhere: cancelled through another node
                // sharing the store, or expired by one that fenced this
                // node. The reservation still held here for it is settled
                // as the order was (once only: settling is per order id).
                Ok(Some(order)) => {
                    let settlement = match order.status {
                        OrderStatus::Cancelled | OrderStatus::Expired => Settlement::Release,
                        _ => Settlement::Commit,
                    };
                    settle(&ports, &order, settlement).await;
                    continue;
                }
                Ok(None) => continue,
                Err(error) => {
                    warn!(order = order_id.0, %error, "expiry postponed");
                    let retry = UnixMillis(now.0 + 1000);
                    ports.state().borrow_mut().pending.insert(order_id, retry);
                    continue;
                }
            };
            let outcome = Outcome {
                status: OrderStatus::Expired,
                payment_status: PaymentStatus::Failed,
                settlement: Settlement::Release,
                payment: None,
            };
            if let Err(error) = transition(&ports, order, outcome, now).await {
                // Not written, or moved on elsewhere between the read and
                // the write (`Conflict`): looked at again in a second, when
                // the read above finds how it went.
                if error.status != ErrorStatus::Conflict {
                    warn!(order = order_id.0, %error, "expiry postponed");
                }
                let retry = UnixMillis(now.0 + 1000);
                ports.state().borrow_mut().pending.insert(order_id, retry);
            }
        }
    }
}

/// An order the caller may see: their own, or any for an admin. Someone
/// else's order is `NotFound`, so ids reveal nothing.
pub(super) async fn own_order<P: Ports>(
    ports: &Rc<P>,
    identity: Option<&Identity>,
    order_id: OrderId,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    let identity = domain::current_identity(identity, now)?;
    let (user, is_admin) = (identity.user_id, identity.role == Role::Admin);
    let not_found = || ApiError::new(ErrorStatus::NotFound, format!("no order {}", order_id.0));
    let order = ports
        .store()
        .order(order_id)
        .await
        .map_err(storage_failure)?
        .ok_or_else(not_found)?;
    if order.user_id != user && !is_admin {
        return Err(not_found());
    }
    Ok(order)
}

pub(super) async fn list_orders<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    cursor: Option<Cursor>,
    limit: u16,
) -> Response {
    let before = match cursor {
        None => None,
        Some(Cursor(text)) => Some(
            text.strip_prefix("b:")
                .and_then(|id| id.parse().ok())
                .map(OrderId)
                .ok_or_else(|| ApiError::bad_request("not a cursor this server gave out"))?,
        ),
    };
    let limit = match limit {
        0 => limits::ORDER_PAGE_DEFAULT,
        n => usize::from(n),
    };
    let page = ports
        .store()
        .orders_of_user(user, before, limit)
        .await
        .map_err(storage_failure)?;
    Ok(ResponseBody::OrderPage(OrderPage {
        orders: page.items.iter().map(order_rules::view).collect(),
        next_cursor: page.next.map(|id| Cursor(format!("b:{}", id.0))),
    }))
}

pub(super) async fn cancel<P: Ports>(
    ports: &Rc<P>,
    order: OrderRecord,
    now: UnixMillis,
) -> Response {
    let outcome = Outcome {
        status: OrderStatus::Cancelled,
        payment_status: order.payment_status,
        settlement: Settlement::Release,
        payment: None,
    };
    let order = transition(ports, order, outcome, now).await?;
    Ok(ResponseBody::OrderView(Box::new(order_rules::view(&order))))
}

pub(super) async fn payment_view<P: Ports>(ports: &Rc<P>, order: &OrderRecord) -> Response {
    let payment = ports
        .store()
        .payment(order.id)
        .await
        .map_err(storage_failure)?;
    let view = match payment {
        Some(payment) => PaymentView {
            order_id: order.id,
            status: payment.status,
            amount: payment.amount,
            refunded: (payment.refunded.minor_units > 0).then_some(payment.refunded),
            attempts: payment.attempts,
            last_error: payment.last_error,
            updated_at: payment.updated_at,
        },
        None => PaymentView {
            order_id: order.id,
            status: order.payment_status,
            amount: order.total,
            refunded: None,
            attempts: 0,
            last_error: None,
            updated_at: order.updated_at,
        },
    };
    Ok(ResponseBody::PaymentView(view))
}
