//! Reservations on the SKU owners: taking an order's lines all or
//! nothing, and settling them (commit or release) once the order is paid,
//! cancelled or expired. Every message names the order, so each is
//! idempotent on its owner.

use std::rc::Rc;

use super::carts::group_by_owner;
use super::*;

/// Reserves every line on its owner, all or nothing: after any refusal
/// every owner is told to release, so no line stays held.
pub(super) async fn reserve<P: Ports>(ports: &Rc<P>, record: &OrderRecord) -> Result<(), ApiError> {
    let placement = placement(ports);
    let lines: Vec<(Sku, i64)> = record
        .lines
        .iter()
        .map(|l| (l.sku.clone(), i64::from(l.quantity)))
        .collect();
    let groups = group_by_owner(lines, |(sku, _)| placement.sku_owner(sku));
    let calls = groups.into_iter().map(|(owner, lines)| {
        let call = ShardCall::Reserve {
            order: record.id,
            user: record.user_id,
            lines,
        };
        call_owner(ports, owner, call)
    });
    let mut refusal: Option<ApiError> = None;
    for answer in join_all(calls).await {
        let error = match answer {
            Ok(ShardAnswer::Reserved(Ok(()))) => continue,
            Ok(ShardAnswer::Reserved(Err(error))) | Err(error) => error,
            Ok(other) => unreachable!("reserve answered with {other:?}"),
        };
        // The customer's own reason (sold out, over the limit) before a
        // transient one.
        let rank = |e: &ApiError| {
            !matches!(
                e.status,
                ErrorStatus::InsufficientStock | ErrorStatus::LimitExceeded
            )
        };
        if refusal.as_ref().is_none_or(|r| rank(r) && !rank(&error)) {
            refusal = Some(error);
        }
    }
    match refusal {
        None => Ok(()),
        Some(error) => {
            settle(ports, record, Settlement::Release).await;
            Err(error)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    Release,
    Commit,
}

/// Tells every owner of the order's lines to release or commit it. These
/// messages must arrive: `Busy` is retried; if an owner stays unreachable,
/// the next start rebuilds its counters from the order's stored state.
pub(super) async fn settle<P: Ports>(ports: &Rc<P>, record: &OrderRecord, settlement: Settlement) {
    let placement = placement(ports);
    let mut owners: Vec<ShardId> = record
        .lines
        .iter()
        .map(|l| placement.sku_owner(&l.sku))
        .collect();
    owners.sort_unstable();
    owners.dedup();
    let calls = owners.into_iter().map(|owner| async move {
        for _ in 0..limits::SETTLE_ATTEMPTS {
            let call = match settlement {
                Settlement::Release => ShardCall::Release(record.id),
                Settlement::Commit => ShardCall::Commit(record.id),
            };
            match call_owner(ports, owner, call).await {
                Ok(_) => return,
                Err(error) if error.status == ErrorStatus::Busy => {
                    ports.sleep(limits::SETTLE_RETRY_DELAY).await;
                }
                Err(error) => {
                    warn!(order = record.id.0, %owner, %error, "could not settle; the next start will");
                    return;
                }
            }
        }
        warn!(order = record.id.0, %owner, "owner stayed busy; the next start settles the order");
    });
    join_all(calls).await;
}
