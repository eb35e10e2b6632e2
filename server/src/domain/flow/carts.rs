//! Carts: views and changes on the cart's owner, guest-cart merges, and
//! the periodic write of changed carts.

use std::rc::Rc;

use souk_wire::api::CartLineChange;

use super::*;

pub(super) fn cart_key(
    identity: Option<&Identity>,
    device: Option<DeviceId>,
    now: UnixMillis,
) -> Result<CartKey, ApiError> {
    match (identity, device) {
        (Some(identity), _) if identity.access_expires_at > now => {
            Ok(CartKey::User(identity.user_id))
        }
        (Some(_), _) => Err(ApiError::new(
            ErrorStatus::Unauthenticated,
            "access token expired: refresh",
        )),
        (None, Some(device)) => Ok(CartKey::Guest(device)),
        (None, None) => Err(ApiError::bad_request(
            "a guest cart needs a device id; or sign in",
        )),
    }
}

async fn cart_lines<P: Ports>(
    ports: &Rc<P>,
    key: CartKey,
    change: CartChange,
) -> Result<Vec<(Sku, u32)>, ApiError> {
    let owner = key.owner(placement(ports));
    match call_owner(ports, owner, ShardCall::Cart { key, change }).await? {
        ShardAnswer::Cart(lines) => lines,
        other => unreachable!("cart answered with {other:?}"),
    }
}

/// Adds units of a SKU the shop sells to the caller's cart.
pub(super) async fn add<P: Ports>(
    ports: &Rc<P>,
    identity: Option<&Identity>,
    change: CartLineChange,
    now: UnixMillis,
) -> Response {
    let key = cart_key(identity, change.device_id, now)?;
    sold_here(ports, &change.sku)?;
    if change.quantity == 0 {
        return Err(ApiError::bad_request("add at least one unit"));
    }
    let add = CartChange::Add {
        sku: change.sku,
        units: change.quantity,
    };
    cart_change(ports, key, add).await
}

/// Sets a line's units; zero removes it.
pub(super) async fn update<P: Ports>(
    ports: &Rc<P>,
    identity: Option<&Identity>,
    change: CartLineChange,
    now: UnixMillis,
) -> Response {
    let key = cart_key(identity, change.device_id, now)?;
    if change.quantity > 0 {
        sold_here(ports, &change.sku)?;
    }
    let set = CartChange::Set {
        sku: change.sku,
        units: change.quantity,
    };
    cart_change(ports, key, set).await
}

fn sold_here<P: Ports>(ports: &Rc<P>, sku: &Sku) -> Result<(), ApiError> {
    match ports.state().borrow().catalog.sku(sku) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no SKU {sku}"),
        )),
    }
}

pub(super) async fn cart_change<P: Ports>(
    ports: &Rc<P>,
    key: CartKey,
    change: CartChange,
) -> Response {
    let lines = cart_lines(ports, key, change).await?;
    Ok(ResponseBody::CartView(cart_view(ports, &lines).await?))
}

async fn cart_view<P: Ports>(ports: &Rc<P>, lines: &[(Sku, u32)]) -> Result<CartView, ApiError> {
    let skus: Vec<Sku> = lines.iter().map(|(sku, _)| sku.clone()).collect();
    let levels = stock_levels(ports, skus).await?;
    Ok(cart::view(&ports.state().borrow().catalog, lines, &levels))
}

/// Current levels of SKUs, one call per owner shard.
pub(super) async fn stock_levels<P: Ports>(
    ports: &Rc<P>,
    skus: Vec<Sku>,
) -> Result<Vec<StockLevel>, ApiError> {
    let placement = placement(ports);
    let calls = group_by_owner(skus, |sku| placement.sku_owner(sku))
        .into_iter()
        .map(|(owner, skus)| call_owner(ports, owner, ShardCall::StockLevels(skus)));
    let mut levels = Vec::new();
    for answer in join_all(calls).await {
        match answer? {
            ShardAnswer::StockLevels(found) => levels.extend(found),
            other => unreachable!("stock levels answered with {other:?}"),
        }
    }
    Ok(levels)
}

pub(super) fn group_by_owner<T>(
    items: Vec<T>,
    owner: impl Fn(&T) -> ShardId,
) -> Vec<(ShardId, Vec<T>)> {
    let mut groups: Vec<(ShardId, Vec<T>)> = Vec::new();
    for item in items {
        let shard = owner(&item);
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push(item),
            None => groups.push((shard, vec![item])),
        }
    }
    groups
}

/// Moves a device's guest cart into the user's cart.
pub(super) async fn merge_guest_cart<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    device: DeviceId,
) -> Response {
    let taken = cart_lines(ports, CartKey::Guest(device), CartChange::Take).await?;
    let skus = taken.iter().map(|(sku, _)| sku.clone()).collect();
    let limit = ports.state().borrow().commerce.purchase_limit;
    let caps = stock_levels(ports, skus)
        .await?
        .into_iter()
        .map(|level| {
            let cap = level.available.max(0).min(limit.unwrap_or(i64::MAX));
            (level.sku, u32::try_from(cap).unwrap_or(u32::MAX))
        })
        .collect();
    let merge = CartChange::Merge { lines: taken, caps };
    cart_change(ports, CartKey::User(user), merge).await
}

/// Writes this shard's changed carts to the store, every
/// `CART_FLUSH_INTERVAL`, for the life of the shard.
pub async fn flush_carts<P: Ports>(ports: Rc<P>) {
    loop {
        ports.sleep(limits::CART_FLUSH_INTERVAL).await;
        flush_carts_once(ports.as_ref()).await;
    }
}

/// One write of every cart changed since the last; on failure they stay
/// marked and go with the next.
pub async fn flush_carts_once<P: Ports>(ports: &P) {
    let dirty = ports.state().borrow_mut().carts.take_dirty();
    if dirty.is_empty() {
        return;
    }
    let records: Vec<CartRecord> = dirty
        .iter()
        .map(|(key, lines, touched)| CartRecord {
            key: key.storage_key(),
            lines: lines.clone(),
            updated_at: *touched,
        })
        .collect();
    if let Err(error) = ports.store().put_carts(&records).await {
        warn!(shard = ports.shard().0, %error, carts = records.len(), "carts not written; retried");
        let keys = dirty.into_iter().map(|(key, _, _)| key);
        ports.state().borrow_mut().carts.mark_dirty(keys);
    }
}
