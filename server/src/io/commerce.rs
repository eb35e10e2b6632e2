//! The commerce flows that span shards and storage: accounts, carts,
//! checkout, payment, expiry and order history. The rules are in `domain`;
//! this module sequences them with the mesh and the store.
//!
//! Checkout runs on the user's shard (which owns the cart, the user's
//! pending orders and the idempotency guard):
//!
//! 1. look the idempotency key up among the shard's recent orders: a
//!    retry gets its order back;
//! 2. price the cart from the catalog;
//! 3. reserve every line on its SKU's owner shard, all or nothing;
//! 4. write the order `PendingPayment` durably, with its key;
//! 5. only then acknowledge, and start the payment.
//!
//! One durable write per checkout. A crash before 4 leaves reservations
//! only in memory, gone with the process; the rebuild at start counts
//! exactly the durable orders and re-indexes their keys, so a retry after
//! a crash finds an order that was stored and places one that was not.
//! Concurrent duplicates are refused with `Busy` while the first runs.

use std::rc::Rc;

use futures_util::future::join_all;
use rand::RngExt;
use souk_storage::StorageError;
use souk_storage::model::{CartRecord, OrderRecord, PaymentRecord, RefreshTokenRecord, UserRecord};
use souk_wire::api::{
    Address, AddressId, ApiError, CartView, Cursor, DeviceId, ErrorStatus, Identity, OrderId,
    OrderPage, OrderStatus, PaymentStatus, PaymentView, Profile, Request, RequestBody, Response,
    ResponseBody, Role, SessionGrant, Sku, StockLevel, UnixMillis, UserId,
};
use tracing::{debug, warn};

use super::shard::{Shard, call_owner};
use crate::domain::cart::{self, CartChange, CartKey};
use crate::domain::throttle::{self, Attempt, RateClass};
use crate::domain::{
    self, CheckoutCall, LoginKey, Session, ShardAnswer, ShardCall, accounts, orders,
    storage_failure,
};
use crate::limits;
use crate::shard::ShardId;
use souk_wire::limits as wire_limits;

/// Whether `execute` (rather than `domain::handle`) serves a request.
pub fn serves(body: &RequestBody) -> bool {
    use RequestBody as R;
    matches!(
        body,
        R::Register(_)
            | R::Login(_)
            | R::Logout { .. }
            | R::Refresh { .. }
            | R::GetCart { .. }
            | R::AddToCart(_)
            | R::UpdateCartLine(_)
            | R::RemoveCartLine { .. }
            | R::MergeCart { .. }
            | R::Checkout(_)
            | R::GetOrder { .. }
            | R::ListOrders(_)
            | R::CancelOrder { .. }
            | R::GetPaymentStatus { .. }
            | R::GetProfile
            | R::UpdateProfile { .. }
            | R::ListAddresses
            | R::UpsertAddress(_)
            | R::DeleteAddress { .. }
    )
}

pub async fn execute(
    shard: &Rc<Shard>,
    session: &std::cell::RefCell<Session>,
    request: Request,
) -> Response {
    use RequestBody as R;
    let identity = session.borrow().identity.clone();
    let now = shard.now();
    let own_read = matches!(
        request.body,
        R::GetOrder { .. }
            | R::ListOrders(_)
            | R::GetPaymentStatus { .. }
            | R::GetProfile
            | R::ListAddresses
    );
    if own_read && let Some(identity) = &identity {
        // Counted where the read runs (cart views count on the cart's
        // owner): a storage read per request needs no cross-shard call
        // to be limited.
        let customer = CartKey::User(identity.user_id).storage_key();
        shard
            .state
            .borrow_mut()
            .rate_limits
            .take(&customer, RateClass::Reads, now)?;
    }
    match request.body {
        R::Register(register) => {
            let granted = register_user(shard, register, now).await?;
            Ok(ResponseBody::SessionGrant(bind(session, granted)))
        }
        R::Login(login) => {
            let device = login.device_id.clone();
            let remote = session.borrow().remote;
            let granted = log_in(shard, login, remote, now).await?;
            let grant = bind(session, granted);
            if let Some(device) = device {
                // A failed merge leaves the guest cart where it was; the
                // login itself has succeeded.
                if let Err(error) = merge_guest_cart(shard, grant.user_id, device).await {
                    debug!(%error, "guest cart not merged at login");
                }
            }
            Ok(ResponseBody::SessionGrant(grant))
        }
        R::Refresh { refresh_token } => {
            let granted = refresh(shard, &refresh_token, now).await?;
            Ok(ResponseBody::SessionGrant(bind(session, granted)))
        }
        R::Logout { all_devices: true } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            sign_out_everywhere(shard, user, now).await?;
            // A retry whose first reply was lost is told what happened.
            session.borrow_mut().end_signed_out();
            Ok(ResponseBody::Empty)
        }
        R::Logout { all_devices: false } => {
            let family = {
                let mut session = session.borrow_mut();
                session.identity = None;
                session.refresh_family.take()
            };
            if let Some(family) = family {
                shard
                    .sessions
                    .revoke_token_family(&family)
                    .await
                    .map_err(storage_failure)?;
            }
            Ok(ResponseBody::Empty)
        }
        R::GetCart { device_id } => {
            let key = cart_key(identity.as_ref(), device_id, now)?;
            cart_change(shard, key, CartChange::View).await
        }
        R::AddToCart(change) => {
            let key = cart_key(identity.as_ref(), change.device_id, now)?;
            sold_here(shard, &change.sku)?;
            if change.quantity == 0 {
                return Err(ApiError::bad_request("add at least one unit"));
            }
            let add = CartChange::Add {
                sku: change.sku,
                units: change.quantity,
            };
            cart_change(shard, key, add).await
        }
        R::UpdateCartLine(change) => {
            let key = cart_key(identity.as_ref(), change.device_id, now)?;
            if change.quantity > 0 {
                sold_here(shard, &change.sku)?;
            }
            let set = CartChange::Set {
                sku: change.sku,
                units: change.quantity,
            };
            cart_change(shard, key, set).await
        }
        R::RemoveCartLine { device_id, sku } => {
            let key = cart_key(identity.as_ref(), device_id, now)?;
            cart_change(shard, key, CartChange::Remove { sku }).await
        }
        R::MergeCart { guest_device_id } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            merge_guest_cart(shard, user, guest_device_id).await
        }
        R::Checkout(checkout) => {
            let user = domain::require_customer(&session.borrow(), now)?;
            let Some(key) = request.idempotency_key else {
                return Err(ApiError::bad_request("checkout needs an idempotency key"));
            };
            let owner = shard.placement().user_owner(user);
            let call = CheckoutCall {
                user,
                key,
                checkout,
            };
            match call_owner(shard, owner, ShardCall::Checkout(Box::new(call))).await? {
                ShardAnswer::Placed(order) => Ok(ResponseBody::OrderView(order?)),
                other => unreachable!("checkout answered with {other:?}"),
            }
        }
        R::GetOrder { order_id } => {
            let order = own_order(shard, identity.as_ref(), order_id, now).await?;
            Ok(ResponseBody::OrderView(Box::new(orders::view(&order))))
        }
        R::ListOrders(list) => {
            let user = domain::require_customer(&session.borrow(), now)?;
            list_orders(shard, user, list.cursor, list.limit).await
        }
        R::CancelOrder { order_id } => {
            let order = own_order(shard, identity.as_ref(), order_id, now).await?;
            cancel(shard, order, now).await
        }
        R::GetPaymentStatus { order_id } => {
            let order = own_order(shard, identity.as_ref(), order_id, now).await?;
            payment_view(shard, &order).await
        }
        R::GetProfile => {
            let user = domain::require_customer(&session.borrow(), now)?;
            profile(shard, user).await
        }
        R::UpdateProfile { name } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            let mut record = user_record(shard, user).await?;
            record.name = name.filter(|n| !n.trim().is_empty());
            shard
                .store
                .update_user(&record)
                .await
                .map_err(storage_failure)?;
            profile(shard, user).await
        }
        R::ListAddresses => {
            let user = domain::require_customer(&session.borrow(), now)?;
            let addresses = shard.store.addresses(user).await.map_err(storage_failure)?;
            Ok(ResponseBody::AddressList(addresses))
        }
        R::UpsertAddress(address) => {
            let user = domain::require_customer(&session.borrow(), now)?;
            upsert_address(shard, user, address, now).await
        }
        R::DeleteAddress { address_id } => {
            let user = domain::require_customer(&session.borrow(), now)?;
            if shard
                .store
                .delete_address(user, address_id)
                .await
                .map_err(storage_failure)?
            {
                Ok(ResponseBody::Empty)
            } else {
                Err(ApiError::new(
                    ErrorStatus::NotFound,
                    format!("no address {}", address_id.0),
                ))
            }
        }
        other => unreachable!("{} is not a commerce request", other.operation()),
    }
}

/// Credentials just issued, with the refresh-token family they belong to.
struct Granted {
    grant: SessionGrant,
    family: [u8; 16],
    issued_at: UnixMillis,
}

/// Binds a grant's identity to the connection, remembering its refresh
/// family so that logout can revoke it.
fn bind(session: &std::cell::RefCell<Session>, granted: Granted) -> SessionGrant {
    let mut session = session.borrow_mut();
    let identity = Identity {
        user_id: granted.grant.user_id,
        role: granted.grant.role,
        access_expires_at: granted.grant.access_expires_at,
    };
    session.sign_in(identity, granted.issued_at);
    session.refresh_family = Some(granted.family);
    granted.grant
}

fn sold_here(shard: &Rc<Shard>, sku: &Sku) -> Result<(), ApiError> {
    match shard.state.borrow().catalog.sku(sku) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no SKU {sku}"),
        )),
    }
}

// ---------------------------------------------------------------------------
// Accounts

async fn register_user(
    shard: &Rc<Shard>,
    register: souk_wire::api::Register,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let email = accounts::normalize_email(&register.email)?;
    accounts::check_password(&register.password)?;
    let password = register.password;
    let password_hash = tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(|_| ApiError::new(ErrorStatus::Internal, "password hashing failed"))?;
    let id = UserId(shard.state.borrow_mut().ids.next(now));
    let user = UserRecord {
        id,
        email,
        password_hash,
        name: register.name,
        role: Role::Customer,
        created_at: now,
    };
    match shard.store.create_user(&user).await {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                "an account with this e-mail exists: sign in",
            ));
        }
        Err(error) => return Err(storage_failure(error)),
    }
    grant(shard, &user, None, now).await
}

async fn log_in(
    shard: &Rc<Shard>,
    login: souk_wire::api::Login,
    remote: Option<std::net::IpAddr>,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let refused = || ApiError::new(ErrorStatus::Unauthenticated, "wrong e-mail or password");
    let email = accounts::normalize_email(&login.email).map_err(|_| refused())?;
    if login.password.len() > limits::PASSWORD_BYTES_MAX {
        return Err(refused());
    }
    let mut keys = vec![LoginKey::Account(email.clone())];
    keys.extend(remote.map(LoginKey::Address));
    let attempt_id: u64 = rand::rng().random();
    // Refused before any hashing: a brute-force run costs us nothing more.
    login_attempt(shard, &keys, Attempt::Begin, attempt_id, now).await?;
    let user = shard
        .store
        .user_by_email(&email)
        .await
        .map_err(storage_failure)?;
    let phc = user
        .as_ref()
        .map_or(accounts::UNKNOWN_USER_HASH.to_owned(), |u| {
            u.password_hash.clone()
        });
    let password = login.password;
    let matches = tokio::task::spawn_blocking(move || accounts::verify_password(&phc, &password))
        .await
        .map_err(|_| ApiError::new(ErrorStatus::Internal, "password check failed"))?;
    match user {
        Some(user) if matches => {
            let succeeded = Attempt::Succeeded { forgive: true };
            login_attempt(shard, &keys, succeeded, attempt_id, now).await?;
            grant(shard, &user, None, now).await
        }
        _ => Err(refused()),
    }
}

/// Asks each key's owner about a login attempt (or Redis, with
/// `--redis`, so that every node counts together); the first refusal wins.
/// `id` names this attempt, so that its success takes back its own count.
async fn login_attempt(
    shard: &Rc<Shard>,
    keys: &[LoginKey],
    attempt: Attempt,
    id: u64,
    now: UnixMillis,
) -> Result<(), ApiError> {
    if let Some(redis) = &shard.shared_limits {
        for key in keys {
            let text = key.text();
            let (max, forgive) = match key {
                LoginKey::Account(_) => (limits::LOGIN_FAILURES_PER_ACCOUNT, true),
                // As on a shard: an address's count is shared by everyone
                // behind it, so a success takes back only its own.
                LoginKey::Address(_) => (limits::LOGIN_FAILURES_PER_ADDRESS, false),
            };
            match attempt {
                Attempt::Begin => {
                    let window = limits::LOGIN_FAILURE_WINDOW.as_millis() as u64;
                    let wait = redis
                        .attempt_begin(&text, id, max, window, now)
                        .await
                        .map_err(storage_failure)?;
                    if let Some(wait) = wait {
                        return Err(throttle::too_many_failures(wait));
                    }
                }
                Attempt::Succeeded { .. } => redis
                    .attempt_succeeded(&text, id, forgive)
                    .await
                    .map_err(storage_failure)?,
            }
        }
        return Ok(());
    }
    let placement = shard.placement();
    let calls = keys.iter().map(|key| {
        let owner = placement.text_owner(&key.text());
        let call = ShardCall::LoginAttempt {
            key: key.clone(),
            attempt,
        };
        call_owner(shard, owner, call)
    });
    for answer in join_all(calls).await {
        match answer? {
            ShardAnswer::Throttled(result) => result?,
            other => unreachable!("a login attempt answered with {other:?}"),
        }
    }
    Ok(())
}

/// Issues an access token and a refresh token (of a new family, or of
/// `family` when rotating).
async fn grant(
    shard: &Rc<Shard>,
    user: &UserRecord,
    rotating: Option<(&[u8; 32], [u8; 16])>,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let (access_token, access_expires_at) = shard.tokens().issue(user.id, user.role, now);
    let (refresh_token, token_hash) = accounts::new_refresh_token();
    let family = rotating.map_or_else(rand_family, |(_, family)| family);
    let record = RefreshTokenRecord {
        token_hash,
        user_id: user.id,
        family,
        issued_at: now,
        expires_at: UnixMillis(now.0 + limits::REFRESH_TOKEN_TTL.as_millis() as u64),
        rotated_at: None,
        revoked: false,
    };
    let stored = match rotating {
        None => shard.sessions.put_refresh_token(&record).await,
        Some((old, _)) => shard.sessions.rotate_refresh_token(old, &record).await,
    };
    match stored {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorStatus::Unauthenticated,
                "refresh token already used: sign in again",
            ));
        }
        Err(error) => return Err(storage_failure(error)),
    }
    let grant = SessionGrant {
        user_id: user.id,
        role: user.role,
        access_token,
        access_expires_at,
        refresh_token,
    };
    Ok(Granted {
        grant,
        family,
        issued_at: now,
    })
}

fn rand_family() -> [u8; 16] {
    let key = accounts::new_token_key();
    key[..16].try_into().expect("16 of 32 bytes")
}

/// Rotates a refresh token. Presenting one that was already rotated means
/// it was copied: the whole family is revoked, the thief's copy with the
/// owner's.
async fn refresh(shard: &Rc<Shard>, token: &str, now: UnixMillis) -> Result<Granted, ApiError> {
    let refused = |why: &str| ApiError::new(ErrorStatus::Unauthenticated, why.to_owned());
    let hash = accounts::refresh_token_hash(token);
    let Some(record) = shard
        .sessions
        .refresh_token(&hash)
        .await
        .map_err(storage_failure)?
    else {
        return Err(refused("unknown refresh token: sign in again"));
    };
    if record.rotated_at.is_some() {
        let revoked = shard.sessions.revoke_token_family(&record.family).await;
        warn!(
            user = record.user_id.0,
            ?revoked,
            "a rotated refresh token was reused; its family is revoked"
        );
        return Err(refused("refresh token already used: sign in again"));
    }
    if record.revoked || record.expires_at <= now {
        return Err(refused("refresh token expired or revoked: sign in again"));
    }
    signed_out_since(shard, &record).await?;
    let user = shard
        .store
        .user(record.user_id)
        .await
        .map_err(storage_failure)?
        .ok_or_else(|| refused("the account no longer exists"))?;
    let granted = grant(shard, &user, Some((&hash, record.family)), now).await?;
    // A sign-out everywhere that landed while the token rotated still
    // wins: the new token never leaves the server.
    if let Err(error) = signed_out_since(shard, &record).await {
        let revoked = shard.sessions.revoke_token_family(&record.family).await;
        debug!(
            user = record.user_id.0,
            ?revoked,
            "signed out while refreshing"
        );
        return Err(error);
    }
    Ok(granted)
}

/// Refuses a refresh token issued at or before its user's sign-out cutoff.
async fn signed_out_since(shard: &Rc<Shard>, token: &RefreshTokenRecord) -> Result<(), ApiError> {
    let cutoff = shard
        .sessions
        .signed_out_at(token.user_id)
        .await
        .map_err(storage_failure)?;
    match cutoff {
        Some(cutoff) if token.issued_at <= cutoff => Err(domain::signed_out_everywhere()),
        _ => Ok(()),
    }
}

/// Ends every session of `user` begun by `at`: the durable cutoff refuses
/// their refresh and access tokens from now on, on every node; then every
/// shard of this node is told, so that connections already signed in as
/// the user lose their identity at their next request, and with `--redis`
/// so is every other node (pub/sub, at most once: a node that misses it
/// keeps such connections until their access token expires, at most
/// `ACCESS_TOKEN_TTL`).
async fn sign_out_everywhere(
    shard: &Rc<Shard>,
    user: UserId,
    at: UnixMillis,
) -> Result<(), ApiError> {
    // A refresh that began after `at` and finished before the cutoff
    // landed issued tokens after it: a second cutoff, taken once the first
    // is stored, is later than every such refresh's tokens (and every later
    // refresh sees the first). Every token a cutoff can refuse has expired
    // once the refresh-token lifetime has passed.
    let keep = limits::REFRESH_TOKEN_TTL.as_millis() as u64;
    let store = |at: UnixMillis| async move {
        shard
            .sessions
            .sign_out_everywhere(user, at, UnixMillis(at.0 + keep))
            .await
            .map_err(storage_failure)
    };
    store(at).await?;
    let at = shard.now().max(at);
    store(at).await?;
    if let Some(redis) = &shard.shared_limits
        && let Err(error) = redis.publish_sign_out(user, at).await
    {
        // Other nodes' open connections then end with their access token.
        warn!(user = user.0, %error, "a sign-out everywhere was not published");
    }
    let mut unreached: Vec<ShardId> = shard.placement().shards().collect();
    for attempt in 1..=limits::SIGN_OUT_ATTEMPTS {
        let calls = unreached
            .iter()
            .map(|&owner| call_owner(shard, owner, ShardCall::SignOut { user, at }));
        let answers = join_all(calls).await;
        unreached = unreached
            .into_iter()
            .zip(answers)
            .filter_map(|(owner, answer)| answer.is_err().then_some(owner))
            .collect();
        if unreached.is_empty() {
            return Ok(());
        }
        if attempt < limits::SIGN_OUT_ATTEMPTS {
            tokio::time::sleep(limits::SETTLE_RETRY_DELAY).await;
        }
    }
    // The cutoff is durable; only open connections on these shards keep
    // their identity, until their access token expires.
    warn!(
        user = user.0,
        shards = ?unreached,
        "shards not told of a sign-out everywhere"
    );
    Ok(())
}

async fn user_record(shard: &Rc<Shard>, user: UserId) -> Result<UserRecord, ApiError> {
    shard
        .store
        .user(user)
        .await
        .map_err(storage_failure)?
        .ok_or_else(|| ApiError::new(ErrorStatus::Unauthenticated, "the account no longer exists"))
}

async fn profile(shard: &Rc<Shard>, user: UserId) -> Response {
    let record = user_record(shard, user).await?;
    Ok(ResponseBody::Profile(Profile {
        user_id: record.id,
        email: record.email,
        name: record.name,
        role: record.role,
        created_at: record.created_at,
    }))
}

/// Creates (id 0) or replaces one of the user's addresses. At most
/// `ADDRESSES_MAX` per user; one default, so setting a new default clears
/// the old one.
async fn upsert_address(
    shard: &Rc<Shard>,
    user: UserId,
    mut address: Address,
    now: UnixMillis,
) -> Response {
    let existing = shard.store.addresses(user).await.map_err(storage_failure)?;
    if address.id == AddressId(0) {
        if existing.len() >= wire_limits::ADDRESSES_MAX {
            return Err(ApiError::new(
                ErrorStatus::LimitExceeded,
                format!(
                    "at most {} addresses per account",
                    wire_limits::ADDRESSES_MAX
                ),
            ));
        }
        address.id = AddressId(shard.state.borrow_mut().ids.next(now));
    } else if !existing.iter().any(|a| a.id == address.id) {
        return Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no address {}", address.id.0),
        ));
    }
    if address.is_default {
        for mut other in existing
            .into_iter()
            .filter(|a| a.is_default && a.id != address.id)
        {
            other.is_default = false;
            shard
                .store
                .put_address(user, &other)
                .await
                .map_err(storage_failure)?;
        }
    }
    shard
        .store
        .put_address(user, &address)
        .await
        .map_err(storage_failure)?;
    Ok(ResponseBody::Address(address))
}

// ---------------------------------------------------------------------------
// Carts

fn cart_key(
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

async fn cart_lines(
    shard: &Rc<Shard>,
    key: CartKey,
    change: CartChange,
) -> Result<Vec<(Sku, u32)>, ApiError> {
    let owner = key.owner(shard.placement());
    match call_owner(shard, owner, ShardCall::Cart { key, change }).await? {
        ShardAnswer::Cart(lines) => lines,
        other => unreachable!("cart answered with {other:?}"),
    }
}

async fn cart_change(shard: &Rc<Shard>, key: CartKey, change: CartChange) -> Response {
    let lines = cart_lines(shard, key, change).await?;
    Ok(ResponseBody::CartView(cart_view(shard, &lines).await?))
}

async fn cart_view(shard: &Rc<Shard>, lines: &[(Sku, u32)]) -> Result<CartView, ApiError> {
    let skus: Vec<Sku> = lines.iter().map(|(sku, _)| sku.clone()).collect();
    let levels = stock_levels(shard, skus).await?;
    Ok(cart::view(&shard.state.borrow().catalog, lines, &levels))
}

/// Current levels of SKUs, one call per owner shard.
pub async fn stock_levels(shard: &Rc<Shard>, skus: Vec<Sku>) -> Result<Vec<StockLevel>, ApiError> {
    let placement = shard.placement();
    let calls = group_by_owner(skus, |sku| placement.sku_owner(sku))
        .into_iter()
        .map(|(owner, skus)| call_owner(shard, owner, ShardCall::StockLevels(skus)));
    let mut levels = Vec::new();
    for answer in join_all(calls).await {
        match answer? {
            ShardAnswer::StockLevels(found) => levels.extend(found),
            other => unreachable!("stock levels answered with {other:?}"),
        }
    }
    Ok(levels)
}

fn group_by_owner<T>(items: Vec<T>, owner: impl Fn(&T) -> ShardId) -> Vec<(ShardId, Vec<T>)> {
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
async fn merge_guest_cart(shard: &Rc<Shard>, user: UserId, device: DeviceId) -> Response {
    let taken = cart_lines(shard, CartKey::Guest(device), CartChange::Take).await?;
    let skus = taken.iter().map(|(sku, _)| sku.clone()).collect();
    let limit = shard.state.borrow().commerce.purchase_limit;
    let caps = stock_levels(shard, skus)
        .await?
        .into_iter()
        .map(|level| {
            let mut cap = level.available.max(0);
            if limit > 0 {
                cap = cap.min(limit);
            }
            (level.sku, u32::try_from(cap).unwrap_or(u32::MAX))
        })
        .collect();
    let merge = CartChange::Merge { lines: taken, caps };
    cart_change(shard, CartKey::User(user), merge).await
}

/// Writes this shard's changed carts to the store, every
/// `CART_FLUSH_INTERVAL`, for the life of the shard.
pub async fn flush_carts(shard: Rc<Shard>) {
    let mut tick = tokio::time::interval(limits::CART_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_carts_once(&shard).await;
    }
}

/// One write of every cart changed since the last; on failure they stay
/// marked and go with the next.
pub async fn flush_carts_once(shard: &Shard) {
    let dirty = shard.state.borrow_mut().carts.take_dirty();
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
    if let Err(error) = shard.store.put_carts(&records).await {
        warn!(shard = shard.id.0, %error, carts = records.len(), "carts not written; retried");
        let keys = dirty.into_iter().map(|(key, _, _)| key);
        shard.state.borrow_mut().carts.mark_dirty(keys);
    }
}

// ---------------------------------------------------------------------------
// Checkout, on the user's shard

/// Frees the idempotency guard when the checkout ends, however it ends.
struct InFlight<'a> {
    shard: &'a Shard,
    key: (UserId, souk_wire::api::IdempotencyKey),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shard.state.borrow_mut().checkouts.remove(&self.key);
    }
}

pub async fn place_order(shard: &Rc<Shard>, call: CheckoutCall) -> ShardAnswer {
    ShardAnswer::Placed(place(shard, call).await.map(Box::new))
}

async fn place(shard: &Rc<Shard>, call: CheckoutCall) -> Result<souk_wire::api::Order, ApiError> {
    let guard_key = (call.user, call.key);
    if !shard.state.borrow_mut().checkouts.insert(guard_key) {
        return Err(ApiError::busy(
            limits::BUSY_RETRY_AFTER_MS,
            "this checkout is already in progress",
        ));
    }
    let _guard = InFlight {
        shard,
        key: guard_key,
    };
    let now = shard.now();
    let earlier = shard.state.borrow().placed.get(call.user, call.key);
    if let Some(id) = earlier
        && let Some(order) = shard.store.order(id).await.map_err(storage_failure)?
    {
        if !orders::same_checkout(&order, &call.checkout) {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                "this idempotency key was used for a different checkout",
            ));
        }
        return Ok(orders::view(&order));
    }
    // Replays above are free; each new checkout attempt counts.
    let customer = CartKey::User(call.user).storage_key();
    let rate = shard.state.borrow().rate_limits.rate(RateClass::Checkouts);
    match (&shard.shared_limits, rate) {
        // Across nodes: a user checking out through several at once is
        // still held to one rate.
        (Some(redis), Some(rate)) => {
            let key = format!("{}:{customer}", RateClass::Checkouts.name());
            let wait = redis
                .take_token(&key, rate.per_second, rate.burst, now)
                .await
                .map_err(storage_failure)?;
            if let Some(wait) = wait {
                return Err(throttle::too_many(rate, wait));
            }
        }
        _ => shard
            .state
            .borrow_mut()
            .rate_limits
            .take(&customer, RateClass::Checkouts, now)?,
    }
    let order_id = OrderId(shard.state.borrow_mut().ids.next(now));

    let buy_now = !call.checkout.lines.is_empty();
    let lines = {
        let mut state = shard.state.borrow_mut();
        if buy_now {
            orders::buy_now_lines(&state.catalog, &call.checkout.lines)?
        } else {
            state
                .carts
                .apply(&CartKey::User(call.user), CartChange::View, now)?
        }
    };
    let record = {
        let state = shard.state.borrow();
        let expires_at = UnixMillis(now.0 + state.commerce.reservation_ttl.as_millis() as u64);
        orders::price(
            &state.catalog,
            order_id,
            call.user,
            shard.id,
            &lines,
            &call.checkout,
            Some(call.key),
            now,
            expires_at,
        )?
    };

    reserve(shard, &record).await?;
    if let Err(error) = shard.store.insert_order(&record).await {
        warn!(order = record.id.0, %error, "order not stored; its reservation is released");
        settle(shard, &record, Settlement::Release).await;
        return Err(storage_failure(error));
    }
    {
        let mut state = shard.state.borrow_mut();
        // Buying now leaves the cart as it is.
        if !buy_now {
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
    let view = orders::view(&record);
    tokio::task::spawn_local(pay(shard.clone(), record.id, Some(record)));
    Ok(view)
}

/// Reserves every line on its owner, all or nothing: after any refusal
/// every owner is told to release, so no line stays held.
async fn reserve(shard: &Rc<Shard>, record: &OrderRecord) -> Result<(), ApiError> {
    let placement = shard.placement();
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
        call_owner(shard, owner, call)
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
            settle(shard, record, Settlement::Release).await;
            Err(error)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    Release,
    Commit,
}

/// Tells every owner of the order's lines to release or commit it. These
/// messages must arrive: `Busy` is retried; if an owner stays unreachable,
/// the next start rebuilds its counters from the order's stored state.
async fn settle(shard: &Rc<Shard>, record: &OrderRecord, settlement: Settlement) {
    let placement = shard.placement();
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
            match call_owner(shard, owner, call).await {
                Ok(_) => return,
                Err(error) if error.status == ErrorStatus::Busy => {
                    tokio::time::sleep(limits::SETTLE_RETRY_DELAY).await;
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

/// Charges the order through the gateway and records the outcome. Runs on
/// the user's shard after the order is acknowledged (with the record just
/// written, `placed`), and again for every pending order after a restart
/// (read back): the gateway answers the same for the same order, so a
/// repeated charge never charges twice. Whether the order is still pending
/// when the outcome is written is the write's condition, not a read's.
pub async fn pay(shard: Rc<Shard>, order_id: OrderId, placed: Option<OrderRecord>) {
    let gateway = shard.state.borrow().commerce.gateway;
    tokio::time::sleep(gateway.latency).await;
    let stored = match placed {
        Some(order) => Ok(Some(order)),
        None => shard.store.order(order_id).await,
    };
    let order = match stored {
        Ok(Some(order)) if order.status == OrderStatus::PendingPayment => order,
        Ok(_) => return,
        Err(error) => {
            warn!(order = order_id.0, %error, "payment not started; the reservation will lapse");
            return;
        }
    };
    let now = shard.now();
    let charge = gateway.charge(order_id, &order.payment_method_token);
    let (status, payment_status, reference, last_error) = match charge {
        Ok(reference) => (
            OrderStatus::Paid,
            PaymentStatus::Captured,
            Some(reference),
            None,
        ),
        Err(reason) => (
            OrderStatus::Cancelled,
            PaymentStatus::Failed,
            None,
            Some(reason),
        ),
    };
    let payment = PaymentRecord {
        order_id,
        status: payment_status,
        amount: order.total,
        refunded: souk_wire::api::Money::new(0, order.total.currency),
        attempts: 1,
        last_error,
        gateway_reference: reference,
        updated_at: now,
    };
    let settlement = if status == OrderStatus::Paid {
        Settlement::Commit
    } else {
        Settlement::Release
    };
    let outcome = Outcome {
        status,
        payment_status,
        settlement,
        payment: Some(&payment),
    };
    let settled = transition(&shard, order, outcome, now).await;
    if let Err(error) = settled
        && status == OrderStatus::Paid
    {
        // Cancelled or expired while the charge was under way: the money
        // goes back. (A real provider is sent the refund here.)
        warn!(order = order_id.0, %error, "paid too late; the charge is refunded");
        let refund = PaymentRecord {
            status: PaymentStatus::Refunded,
            refunded: payment.amount,
            last_error: Some("the order was no longer awaiting payment".into()),
            ..payment
        };
        if let Err(error) = shard.store.put_payment(&refund).await {
            warn!(order = order_id.0, %error, "refund not recorded");
        }
    }
}

/// Resumes the payments a stop interrupted, a bounded number at a time, so
/// that a start after a busy sale does not spawn a task per pending order
/// at once.
pub async fn resume_payments(shard: Rc<Shard>, orders: Vec<OrderId>) {
    for chunk in orders.chunks(limits::PAYMENTS_RESUMED_AT_ONCE) {
        join_all(chunk.iter().map(|id| pay(shard.clone(), *id, None))).await;
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
async fn transition(
    shard: &Rc<Shard>,
    mut order: OrderRecord,
    outcome: Outcome<'_>,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    orders::check_transition(order.status, outcome.status)?;
    let expected = order.status;
    order.status = outcome.status;
    order.payment_status = outcome.payment_status;
    order.updated_at = now;
    let written = match outcome.payment {
        Some(payment) => shard.store.settle_payment(&order, expected, payment).await,
        None => shard.store.update_order(&order, expected).await,
    };
    match written {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            let current = shard
                .store
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
    shard.state.borrow_mut().pending.remove(order.id);
    settle(shard, &order, outcome.settlement).await;
    Ok(order)
}

/// Expires this shard's orders whose reservation lapsed. Runs for the life
/// of the shard.
pub async fn expire_lapsed(shard: Rc<Shard>) {
    let mut tick = tokio::time::interval(limits::EXPIRY_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = shard.now();
        let due = shard.state.borrow_mut().pending.due(now);
        for order_id in due {
            let order = match shard.store.order(order_id).await {
                Ok(Some(order)) if order.status == OrderStatus::PendingPayment => order,
                Ok(_) => continue,
                Err(error) => {
                    warn!(order = order_id.0, %error, "expiry postponed");
                    let retry = UnixMillis(now.0 + 1000);
                    shard.state.borrow_mut().pending.insert(order_id, retry);
                    continue;
                }
            };
            let outcome = Outcome {
                status: OrderStatus::Expired,
                payment_status: PaymentStatus::Failed,
                settlement: Settlement::Release,
                payment: None,
            };
            let expired = transition(&shard, order, outcome, now).await;
            if let Err(error) = expired
                && error.status != ErrorStatus::Conflict
            {
                warn!(order = order_id.0, %error, "expiry postponed");
                let retry = UnixMillis(now.0 + 1000);
                shard.state.borrow_mut().pending.insert(order_id, retry);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Orders

/// An order the caller may see: their own, or any for an admin. Someone
/// else's order is `NotFound`, so ids reveal nothing.
async fn own_order(
    shard: &Rc<Shard>,
    identity: Option<&Identity>,
    order_id: OrderId,
    now: UnixMillis,
) -> Result<OrderRecord, ApiError> {
    let identity = domain::current_identity(identity, now)?;
    let (user, is_admin) = (identity.user_id, identity.role == Role::Admin);
    let not_found = || ApiError::new(ErrorStatus::NotFound, format!("no order {}", order_id.0));
    let order = shard
        .store
        .order(order_id)
        .await
        .map_err(storage_failure)?
        .ok_or_else(not_found)?;
    if order.user_id != user && !is_admin {
        return Err(not_found());
    }
    Ok(order)
}

async fn list_orders(
    shard: &Rc<Shard>,
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
    let page = shard
        .store
        .orders_of_user(user, before, limit)
        .await
        .map_err(storage_failure)?;
    Ok(ResponseBody::OrderPage(OrderPage {
        orders: page.items.iter().map(orders::view).collect(),
        next_cursor: page.next.map(|id| Cursor(format!("b:{}", id.0))),
    }))
}

async fn cancel(shard: &Rc<Shard>, order: OrderRecord, now: UnixMillis) -> Response {
    let outcome = Outcome {
        status: OrderStatus::Cancelled,
        payment_status: order.payment_status,
        settlement: Settlement::Release,
        payment: None,
    };
    let order = transition(shard, order, outcome, now).await?;
    Ok(ResponseBody::OrderView(Box::new(orders::view(&order))))
}

async fn payment_view(shard: &Rc<Shard>, order: &OrderRecord) -> Response {
    let payment = shard
        .store
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
