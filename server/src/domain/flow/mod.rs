//! Every operation's handler, written once against `Ports`.
//!
//! `dispatch` is the one entry for a decoded request: its `match` names
//! every `RequestBody`, so the compiler refuses a request nobody handles.
//! `serve_call` is the owner's side of a cross-shard call, with one arm per
//! `ShardCall`. `call_owner` routes a call to its owner: this shard runs it
//! in place, another gets it through the mesh. The I/O layer decodes,
//! calls `dispatch`, and encodes; every commerce rule and error policy is
//! here or in the pure modules beside it.

mod accounts;
mod carts;
mod checkout;
mod escrow;
mod orders;
mod reservations;

pub use accounts::adopt_refresh_family;
pub use carts::{flush_carts, flush_carts_once};
pub use escrow::keep_escrow_balanced;
pub use orders::{expire_lapsed, resume_payments};

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::join_all;
use souk_storage::StorageError;
use souk_storage::model::{
    CartRecord, OrderRecord, PaymentRecord, RefreshTokenRecord, StockRecord, UserRecord,
};
use souk_wire::api::{
    Address, AddressId, AdminRestock, ApiError, CartView, Cursor, DeviceId, ErrorStatus, Identity,
    OrderId, OrderPage, OrderStatus, PaymentStatus, PaymentView, Product, ProductId, Profile,
    Request, RequestBody, Response, ResponseBody, Role, SessionGrant, Sku, StockLevel, StockStatus,
    UnixMillis, UserId,
};
use souk_wire::limits as wire_limits;
use tracing::{debug, warn};

use super::cart::{self, CartChange, CartKey};
use super::ports::{GatewayError, Ports};
use super::throttle::{self, Attempt, RateClass};
use super::{
    self as domain, CheckoutCall, LoginKey, Session, ShardAnswer, ShardCall, accounts as rules,
    orders as order_rules, storage_failure,
};
use crate::limits;
use crate::shard::mesh::CallError;
use crate::shard::{Placement, ShardId};

fn placement<P: Ports>(ports: &Rc<P>) -> Placement {
    ports.state().borrow().placement
}

/// Handles one decoded request for the connection whose `session` it is.
pub async fn dispatch<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    request: Request,
) -> Response {
    use RequestBody as R;
    domain::end_signed_out(&ports.state().borrow(), &mut session.borrow_mut());
    let now = ports.now();
    let Request {
        idempotency_key,
        body,
    } = request;
    let operation = body.operation();
    let identity = session.borrow().identity.clone();
    match body {
        R::Hello(hello) => domain::hello_reply(&ports.state().borrow(), &hello, now),
        R::Authenticate { access_token } => authenticate(ports, session, &access_token, now).await,
        R::ListCategories => Ok(ResponseBody::CategoryList(
            ports.state().borrow().catalog.categories().to_vec(),
        )),
        R::BrowseCategory(query) => domain::browse(&ports.state().borrow(), &query),
        R::GetProduct { product_id } => product_detail(ports, &product_id).await,
        R::AdminRestock(restock) => admin_restock(ports, session, restock, now).await,
        R::AdminUpsertProduct(product) => admin_upsert(ports, session, *product, now).await,
        R::Register(register) => {
            let granted = accounts::register_user(ports, register, now).await?;
            Ok(ResponseBody::SessionGrant(accounts::bind(session, granted)))
        }
        R::Login(login) => accounts::login(ports, session, login, now).await,
        R::Refresh { refresh_token } => {
            let granted = accounts::refresh(ports, &refresh_token, now).await?;
            Ok(ResponseBody::SessionGrant(accounts::bind(session, granted)))
        }
        R::Logout { all_devices } => accounts::logout(ports, session, all_devices, now).await,
        R::GetProfile => {
            let user = own_read(ports, session, now)?;
            accounts::profile(ports, user).await
        }
        R::UpdateProfile { name } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            accounts::update_profile(ports, user, name).await
        }
        R::ListAddresses => {
            let user = own_read(ports, session, now)?;
            let addresses = ports
                .store()
                .addresses(user)
                .await
                .map_err(storage_failure)?;
            Ok(ResponseBody::AddressList(addresses))
        }
        R::UpsertAddress(address) => {
            let user = domain::require_customer(&session.borrow(), now)?;
            accounts::upsert_address(ports, user, address, now).await
        }
        R::DeleteAddress { address_id } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            accounts::delete_address(ports, user, address_id).await
        }
        R::GetCart { device_id } => {
            let key = carts::cart_key(identity.as_ref(), device_id, now)?;
            carts::cart_change(ports, key, CartChange::View).await
        }
        R::AddToCart(change) => carts::add(ports, identity.as_ref(), change, now).await,
        R::UpdateCartLine(change) => carts::update(ports, identity.as_ref(), change, now).await,
        R::RemoveCartLine { device_id, sku } => {
            let key = carts::cart_key(identity.as_ref(), device_id, now)?;
            carts::cart_change(ports, key, CartChange::Remove { sku }).await
        }
        R::MergeCart { guest_device_id } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            carts::merge_guest_cart(ports, user, guest_device_id).await
        }
        R::Checkout(checkout) => {
            let user = domain::require_customer(&session.borrow(), now)?;
            let key = idempotency_key
                .ok_or_else(|| ApiError::bad_request("checkout needs an idempotency key"))?;
            let owner = placement(ports).user_owner(user);
            let call = CheckoutCall {
                user,
                key,
                checkout,
            };
            match call_owner(ports, owner, ShardCall::Checkout(Box::new(call))).await? {
                ShardAnswer::Placed(order) => Ok(ResponseBody::OrderView(order?)),
                other => unreachable!("checkout answered with {other:?}"),
            }
        }
        R::GetOrder { order_id } => {
            own_read(ports, session, now)?;
            let order = orders::own_order(ports, identity.as_ref(), order_id, now).await?;
            Ok(ResponseBody::OrderView(Box::new(order_rules::view(&order))))
        }
        R::ListOrders(list) => {
            let user = own_read(ports, session, now)?;
            orders::list_orders(ports, user, list.cursor, list.limit).await
        }
        R::CancelOrder { order_id } => {
            let order = orders::own_order(ports, identity.as_ref(), order_id, now).await?;
            orders::cancel(ports, order, now).await
        }
        R::GetPaymentStatus { order_id } => {
            own_read(ports, session, now)?;
            let order = orders::own_order(ports, identity.as_ref(), order_id, now).await?;
            orders::payment_view(ports, &order).await
        }
        // Later protocol versions' operations: the schema names them so
        // that clients can be built against them, and this server says
        // plainly that it does not offer them.
        R::Search(_)
        | R::Suggest(_)
        | R::RefundPayment(_)
        | R::WatchProduct { .. }
        | R::UnwatchProduct { .. } => Err(domain::not_offered(operation)),
    }
}

/// The signed-in customer of a read of their own records, counted against
/// their read rate where the read runs (cart views count on the cart's
/// owner): a storage read per request needs no cross-shard call to be
/// limited. A read without a customer is refused by its handler.
fn own_read<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    now: UnixMillis,
) -> Result<UserId, ApiError> {
    let user = domain::require_customer(&session.borrow(), now)?;
    let customer = CartKey::User(user).storage_key();
    ports
        .state()
        .borrow_mut()
        .rate_limits
        .take(&customer, RateClass::Reads, now)?;
    Ok(user)
}

/// Runs `call` on `owner`: in place when that is this shard, else through
/// the mesh. A mesh failure reads to the client as `Busy` (the owner's
/// inbox is full: retry soon) or `Unavailable` (it stopped or did not
/// answer in time).
pub async fn call_owner<P: Ports>(
    ports: &Rc<P>,
    owner: ShardId,
    call: ShardCall,
) -> Result<ShardAnswer, ApiError> {
    if owner == ports.shard() {
        // Boxed: a checkout's call reaches this shard's own reservations
        // through here, so the future contains itself.
        return Ok(Box::pin(serve_call(ports, call)).await);
    }
    ports.send(owner, call).await.map_err(|error| match error {
        CallError::Busy(_) => ApiError::busy(limits::BUSY_RETRY_AFTER_MS, error.to_string()),
        CallError::Stopped(_) | CallError::Timeout(_) => {
            ApiError::new(ErrorStatus::Unavailable, error.to_string())
        }
    })
}

/// What an owner shard does with a call for the state it owns.
pub async fn serve_call<P: Ports>(ports: &Rc<P>, call: ShardCall) -> ShardAnswer {
    let now = ports.now();
    match call {
        ShardCall::StockLevels(skus) => {
            ShardAnswer::StockLevels(domain::stock_levels(&ports.state().borrow(), &skus))
        }
        ShardCall::Restock(restock) => restock_owned(ports, restock).await,
        ShardCall::Cart { key, change } => ShardAnswer::Cart(domain::change_cart(
            &mut ports.state().borrow_mut(),
            key,
            change,
            now,
        )),
        ShardCall::Reserve { order, user, lines } if ports.escrow().is_some() => {
            ShardAnswer::Reserved(escrow::reserve_shared(ports, order, user, lines).await)
        }
        ShardCall::Reserve { order, user, lines } => ShardAnswer::Reserved(domain::reserve(
            &mut ports.state().borrow_mut(),
            order,
            user,
            &lines,
        )),
        ShardCall::Release(order) => {
            ShardAnswer::Settled(ports.state().borrow_mut().inventory.release(order))
        }
        ShardCall::Commit(order) => {
            ShardAnswer::Settled(ports.state().borrow_mut().inventory.commit(order))
        }
        ShardCall::Checkout(checkout) => checkout::place_order(ports, *checkout).await,
        ShardCall::UpsertProduct(product) => upsert_product(ports, *product).await,
        ShardCall::LoginAttempt { key, attempt } => ShardAnswer::Throttled(domain::login_attempt(
            &mut ports.state().borrow_mut(),
            &key,
            attempt,
            now,
        )),
        ShardCall::SignOut { user, at } => {
            ports.state().borrow_mut().sign_outs.record(user, at, now);
            ShardAnswer::SignedOut
        }
    }
}

/// Checks an access token this server signed, then binds its identity to
/// the connection unless its user signed out everywhere after it was
/// issued (the durable cutoff is read: without it the token cannot be
/// trusted).
async fn authenticate<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    token: &str,
    now: UnixMillis,
) -> Response {
    let verified = ports.state().borrow().tokens.verify(token, now);
    let verified = match verified {
        Ok(verified) => verified,
        Err(error) => {
            session.borrow_mut().identity = None;
            return Err(error);
        }
    };
    let user = verified.identity.user_id;
    match ports.sessions().signed_out_at(user).await {
        Ok(stored) => domain::bind(
            &ports.state().borrow(),
            &mut session.borrow_mut(),
            verified,
            stored,
        ),
        Err(error) => {
            session.borrow_mut().identity = None;
            Err(storage_failure(error))
        }
    }
}

/// A product with its variants' stock, read from their owners (one call
/// per owner shard).
async fn product_detail<P: Ports>(ports: &Rc<P>, product_id: &ProductId) -> Response {
    let skus = domain::product_skus(&ports.state().borrow(), product_id)?;
    let levels = carts::stock_levels(ports, skus).await?;
    domain::product_detail(&ports.state().borrow(), product_id, &levels)
}

async fn admin_restock<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    restock: AdminRestock,
    now: UnixMillis,
) -> Response {
    domain::require_admin(&session.borrow(), now)?;
    if ports.state().borrow().catalog.sku(&restock.sku).is_none() {
        return Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no SKU {}", restock.sku),
        ));
    }
    let owner = placement(ports).sku_owner(&restock.sku);
    match call_owner(ports, owner, ShardCall::Restock(restock)).await? {
        ShardAnswer::Restocked(level) => level.map(ResponseBody::StockLevel),
        other => unreachable!("a restock answered with {other:?}"),
    }
}

/// Changes a SKU's units on its owner and makes the new count durable
/// before answering; if the write fails, the change is undone.
async fn restock_owned<P: Ports>(ports: &Rc<P>, restock: AdminRestock) -> ShardAnswer {
    if ports.escrow().is_some() {
        domain::assert_owned(&ports.state().borrow(), &restock.sku);
        let level = escrow::restock_shared(ports, restock).await;
        if level.is_ok() {
            ports.replies_stale();
        }
        return ShardAnswer::Restocked(level);
    }
    let (level, delta, received) = {
        let mut state = ports.state().borrow_mut();
        domain::assert_owned(&state, &restock.sku);
        let before = state.inventory.level(&restock.sku).on_hand;
        match state.inventory.restock(&restock) {
            Ok(level) => {
                let delta = level.on_hand - before;
                (level, delta, state.inventory.received(&restock.sku))
            }
            Err(error) => return ShardAnswer::Restocked(Err(error)),
        }
    };
    let record = StockRecord {
        sku: level.sku.clone(),
        received,
        updated_at: ports.now(),
    };
    match ports.store().put_stock(&[record]).await {
        Ok(()) => {
            // An operator's stock change shows everywhere at once.
            ports.replies_stale();
            ShardAnswer::Restocked(Ok(level))
        }
        Err(error) => {
            warn!(shard = ports.shard().0, %error, "restock not stored; undone");
            ports
                .state()
                .borrow_mut()
                .inventory
                .revert(&level.sku, delta);
            ShardAnswer::Restocked(Err(storage_failure(error)))
        }
    }
}

async fn admin_upsert<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    product: Product,
    now: UnixMillis,
) -> Response {
    domain::require_admin(&session.borrow(), now)?;
    ports.state().borrow().catalog.check_upsert(&product)?;
    let call = ShardCall::UpsertProduct(Box::new(product));
    match call_owner(ports, domain::CATALOG_OWNER, call).await? {
        ShardAnswer::Upserted(product) => product.map(ResponseBody::ProductDetail),
        other => unreachable!("an upsert answered with {other:?}"),
    }
}

/// Stores a product and publishes the catalog that includes it. Runs on
/// the catalog owner only, one change after another.
async fn upsert_product<P: Ports>(ports: &Rc<P>, mut product: Product) -> ShardAnswer {
    let now = ports.now();
    let catalog = ports.latest_catalog();
    if let Err(error) = catalog.check_upsert(&product) {
        return ShardAnswer::Upserted(Err(error));
    }
    product.created_at = catalog.product(&product.id).map_or(now, |p| p.created_at);
    product.updated_at = now;
    for variant in &mut product.variants {
        // Stock is the owners' counters', never the product record's.
        variant.available = 0;
        variant.stock_status = StockStatus::Unknown;
    }
    if let Err(error) = ports.store().upsert_product(&product).await {
        return ShardAnswer::Upserted(Err(storage_failure(error)));
    }
    // Changes are applied in the order they were stored: the catalog is
    // re-read after the write, in case another change landed meanwhile.
    let latest = ports.latest_catalog();
    ports.publish_catalog(std::sync::Arc::new(latest.with_product(product.clone())));
    ShardAnswer::Upserted(Ok(Box::new(product)))
}

/// Publishes the stock statuses of this shard's SKUs that changed, every
/// `STOCK_BOARD_INTERVAL`, and then has every shard drop its cached
/// replies, so that listings and product pages show a SKU selling out (or
/// coming back) at once rather than after the cache's lifetime.
pub async fn publish_stock_statuses<P: Ports>(ports: Rc<P>) {
    loop {
        ports.sleep(limits::STOCK_BOARD_INTERVAL).await;
        let (board, changes) = {
            let mut state = ports.state().borrow_mut();
            (
                state.stock_board.clone(),
                state.inventory.take_status_changes(),
            )
        };
        if !changes.is_empty() && board.publish(ports.shard(), &changes) {
            ports.replies_stale();
        }
    }
}

/// Follows the catalog changes other nodes sharing the store make: every
/// `CATALOG_POLL_INTERVAL` the catalog owner asks the store which products
/// changed since its last look (less `CATALOG_CHANGE_SKEW`, for clocks
/// that disagree and writes still landing), and publishes those newer than
/// its own copy, which empties every shard's reply caches. On a store only
/// this node uses there are never any.
pub async fn follow_shared_catalog<P: Ports>(ports: Rc<P>) {
    let skew = limits::CATALOG_CHANGE_SKEW.as_millis() as u64;
    let mut since = UnixMillis(ports.now().0.saturating_sub(skew));
    loop {
        ports.sleep(limits::CATALOG_POLL_INTERVAL).await;
        let looked = ports.now();
        let changed = match ports.store().catalog_changes(since).await {
            Ok(changed) => changed,
            Err(error) => {
                warn!(%error, "cannot read the catalog changes of other nodes");
                continue;
            }
        };
        let (mut fetched, mut complete) = (Vec::new(), true);
        for id in changed {
            match ports.store().product(&id).await {
                Ok(Some(product)) => fetched.push(product),
                Ok(None) => {}
                Err(error) => {
                    warn!(product = %id, %error, "cannot read a changed product");
                    complete = false;
                }
            }
        }
        // Applied to the catalog as it is now, with no wait in between: a
        // change made on this node while the products were read stays.
        let mut catalog = ports.latest_catalog();
        let mut newer = false;
        for product in fetched {
            let held = catalog.product(&product.id).map(|p| p.updated_at);
            if held.is_none_or(|at| at < product.updated_at) {
                catalog = std::sync::Arc::new(catalog.with_product(product));
                newer = true;
            }
        }
        if newer {
            ports.publish_catalog(catalog);
        }
        // A product that could not be read is looked for again next time.
        if complete {
            since = UnixMillis(looked.0.saturating_sub(skew));
        }
    }
}

/// Records a sign-out everywhere another node published.
pub fn record_sign_out<P: Ports>(ports: &P, user: UserId, at: UnixMillis) {
    let now = ports.now();
    ports.state().borrow_mut().sign_outs.record(user, at, now);
}
