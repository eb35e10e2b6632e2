//! Request handling, sans I/O.
//!
//! `handle` takes a decoded request, the shard's state, the connection's
//! session and the time, and returns a `Step`: either the reply, or the work
//! that must happen on other shards before there is one. The I/O layer
//! (`io::shard`) carries steps out; nothing here knows about sockets, tokio
//! or the clock, so every rule is tested by calling these functions.
//!
//! `answer` is the other half: what an owner shard does with a `ShardCall`
//! that another shard sent it.

pub mod accounts;
pub mod cart;
pub mod catalog;
pub mod escrow;
pub mod flow;
pub mod inventory;
pub mod orders;
pub mod ports;
pub mod rebuild;
pub mod sign_outs;
pub mod stock_board;
pub mod throttle;

use std::collections::HashMap;
use std::sync::Arc;

use souk_wire::api::{
    AdminRestock, ApiError, Checkout, ErrorStatus, Hello, HelloReply, IdempotencyKey, Identity,
    Order, OrderId, PROTOCOL_VERSION, Product, ProductId, Response, ResponseBody, Role, Sku,
    StockLevel, StockStatus, UnixMillis, UserId,
};

use crate::limits;
use crate::shard::{Placement, ShardId};
use accounts::TokenKeys;
use cart::{CartChange, CartKey, Carts};
use catalog::Catalog;
use inventory::Inventory;
use orders::{IdGenerator, Pending, SimulatedGateway};

/// What one shard owns and reads.
#[derive(Debug)]
pub struct ShardState {
    pub shard: ShardId,
    pub placement: Placement,
    /// Shared read-only by every shard.
    pub catalog: Arc<Catalog>,
    /// Counters of the SKUs this shard owns, and no others.
    pub inventory: Inventory,
    pub server_version: &'static str,
    /// Carts this shard owns (its users' and the guest carts hashed here).
    pub carts: Carts,
    /// Orders of this shard's users awaiting payment, by deadline.
    pub pending: Pending,
    /// Makes this shard's order and user ids.
    pub ids: IdGenerator,
    pub tokens: Arc<TokenKeys>,
    pub commerce: CommerceConfig,
    /// Checkouts under way on this shard, by user and idempotency key: a
    /// concurrent duplicate is refused instead of racing the first.
    pub checkouts: std::collections::HashSet<(UserId, IdempotencyKey)>,
    /// Recent checkouts of this shard's users, by idempotency key.
    pub placed: orders::Placed,
    /// Failed logins of the accounts and source addresses this shard owns.
    pub login_failures: LoginFailures,
    /// Per-customer rates of the operations this shard runs for them.
    pub rate_limits: throttle::RateLimits,
    /// Every owner's published stock statuses, for listings; this shard
    /// writes only its own SKUs' entries.
    pub stock_board: Arc<stock_board::StockBoard>,
    /// Recent "sign out everywhere" cutoffs, which end the identities of
    /// connections signed in before them.
    pub sign_outs: sign_outs::SignOuts,
    /// Where nodes share stock: the demand behind each take from the pool.
    pub escrow: escrow::EscrowBook,
}

/// Failed-login limits, per account and per source address.
#[derive(Debug)]
pub struct LoginFailures {
    pub accounts: throttle::Throttle,
    pub addresses: throttle::Throttle,
}

impl Default for LoginFailures {
    fn default() -> LoginFailures {
        use crate::limits::{
            LOGIN_FAILURE_WINDOW, LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_ADDRESS,
            THROTTLED_KEYS_MAX,
        };
        LoginFailures {
            accounts: throttle::Throttle::new(
                LOGIN_FAILURES_PER_ACCOUNT,
                LOGIN_FAILURE_WINDOW,
                THROTTLED_KEYS_MAX,
            ),
            addresses: throttle::Throttle::new(
                LOGIN_FAILURES_PER_ADDRESS,
                LOGIN_FAILURE_WINDOW,
                THROTTLED_KEYS_MAX,
            ),
        }
    }
}

/// The operator's settings for selling.
#[derive(Debug, Clone, Copy)]
pub struct CommerceConfig {
    /// How long a checkout holds its stock while payment completes.
    pub reservation_ttl: std::time::Duration,
    pub gateway: SimulatedGateway,
    /// Argon2id cost of new password hashes.
    pub password_cost: accounts::PasswordCost,
    /// Units of one SKU one customer may hold, if limited. Enforced by
    /// the SKU owners at reservation; carts use it to cap merged lines.
    pub purchase_limit: Option<i64>,
}

/// Per-connection state, owned by the connection's task.
#[derive(Debug, Default)]
pub struct Session {
    pub identity: Option<Identity>,
    /// When the credential behind `identity` was issued: a sign-out
    /// cutoff at or after it ends the identity.
    pub signed_in_at: UnixMillis,
    /// Whether a sign-out everywhere ended the connection's last identity
    /// (until another is bound), so that requests are told why.
    pub signed_out: bool,
    /// The refresh-token family issued on this connection, which logout
    /// revokes.
    pub refresh_family: Option<[u8; 16]>,
    /// The client's address, which failed logins are also counted by.
    pub remote: Option<std::net::IpAddr>,
}

impl Session {
    /// Binds `identity`, from a credential issued at `issued_at`.
    pub fn sign_in(&mut self, identity: Identity, issued_at: UnixMillis) {
        self.identity = Some(identity);
        self.signed_in_at = issued_at;
        self.signed_out = false;
    }

    /// Ends the identity because its user signed out everywhere.
    pub fn end_signed_out(&mut self) {
        self.identity = None;
        self.refresh_family = None;
        self.signed_out = true;
    }
}

/// A message from one shard to the owner of some state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardCall {
    /// Current levels of SKUs the receiver owns.
    StockLevels(Vec<Sku>),
    Restock(AdminRestock),
    /// A change to a cart the receiver owns.
    Cart {
        key: CartKey,
        change: CartChange,
    },
    /// Reserve an order's lines whose SKUs the receiver owns.
    Reserve {
        order: OrderId,
        user: UserId,
        lines: Vec<(Sku, i64)>,
    },
    /// Return an order's reserved units to the available stock.
    Release(OrderId),
    /// Turn an order's reserved units into sold ones.
    Commit(OrderId),
    /// Place an order from the cart of a user the receiver owns.
    Checkout(Box<CheckoutCall>),
    /// Store a product and publish the new catalog; sent to the catalog
    /// owner (`CATALOG_OWNER`), which orders all catalog changes.
    UpsertProduct(Box<Product>),
    /// A login attempt against the failure limit of a key the receiver
    /// owns (`Placement::text_owner`).
    LoginAttempt {
        key: LoginKey,
        attempt: throttle::Attempt,
    },
    /// `user` signed out everywhere at `at`: sent to every shard, so that
    /// connections signed in before it lose their identity.
    SignOut {
        user: UserId,
        at: UnixMillis,
    },
}

/// What failed logins are counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginKey {
    /// The normalized e-mail, whether or not an account has it.
    Account(String),
    Address(std::net::IpAddr),
}

impl LoginKey {
    pub fn text(&self) -> String {
        match self {
            LoginKey::Account(email) => format!("acct:{email}"),
            LoginKey::Address(ip) => format!("addr:{ip}"),
        }
    }
}

/// The shard through which every catalog change goes, so that concurrent
/// admin changes apply one after another instead of overwriting each other.
pub const CATALOG_OWNER: ShardId = ShardId(0);

/// A checkout, as the connection's shard hands it to the user's shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutCall {
    pub user: UserId,
    pub key: IdempotencyKey,
    pub checkout: Checkout,
}

/// The owner's answer to a `ShardCall`, variant for variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardAnswer {
    StockLevels(Vec<StockLevel>),
    Restocked(Result<StockLevel, ApiError>),
    /// The cart's lines after the change.
    Cart(Result<Vec<(Sku, u32)>, ApiError>),
    Reserved(Result<(), ApiError>),
    /// Whether the order held a reservation on the receiver.
    Settled(bool),
    Placed(Result<Box<Order>, ApiError>),
    Upserted(Result<Box<Product>, ApiError>),
    Throttled(Result<(), ApiError>),
    SignedOut,
}

pub fn hello_reply(state: &ShardState, hello: &Hello, now: UnixMillis) -> Response {
    if hello.protocol_version == 0 || hello.protocol_version > PROTOCOL_VERSION {
        return Err(ApiError::bad_request(format!(
            "protocol version {} is not supported; this server speaks 1..={PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    Ok(ResponseBody::HelloReply(HelloReply {
        protocol_version: PROTOCOL_VERSION,
        server_version: state.server_version.to_owned(),
        shard: state.shard.0,
        shard_count: state.placement.shard_count() as u16,
        server_time: now,
    }))
}

/// Binds a verified access token's identity to the connection, unless the
/// user signed out everywhere after it was issued (`stored`: the durable
/// cutoff, if any; this shard may know a newer one).
pub fn bind(
    state: &ShardState,
    session: &mut Session,
    verified: accounts::Verified,
    stored: Option<UnixMillis>,
) -> Response {
    let accounts::Verified {
        identity,
        issued_at,
    } = verified;
    let signed_out = stored.is_some_and(|cutoff| issued_at <= cutoff)
        || state.sign_outs.refuses(identity.user_id, issued_at);
    if signed_out {
        session.identity = None;
        return Err(signed_out_everywhere());
    }
    session.sign_in(identity.clone(), issued_at);
    Ok(ResponseBody::Identity(identity))
}

pub fn signed_out_everywhere() -> ApiError {
    ApiError::new(
        ErrorStatus::Unauthenticated,
        "signed out on every device: sign in again",
    )
}

/// Ends the connection's identity if its user has since signed out
/// everywhere; run before every request.
pub fn end_signed_out(state: &ShardState, session: &mut Session) {
    if let Some(identity) = &session.identity
        && state
            .sign_outs
            .refuses(identity.user_id, session.signed_in_at)
    {
        session.end_signed_out();
    }
}

/// The identity bound to the connection, if there is one and its access
/// token has not expired.
pub fn current_identity(
    identity: Option<&Identity>,
    now: UnixMillis,
) -> Result<&Identity, ApiError> {
    match identity {
        None => Err(ApiError::new(ErrorStatus::Unauthenticated, "sign in first")),
        Some(identity) if identity.access_expires_at <= now => Err(ApiError::new(
            ErrorStatus::Unauthenticated,
            "access token expired: refresh",
        )),
        Some(identity) => Ok(identity),
    }
}

/// The session's identity, as `current_identity` checks it; one that a
/// sign-out everywhere ended says so.
fn session_identity(session: &Session, now: UnixMillis) -> Result<&Identity, ApiError> {
    if session.identity.is_none() && session.signed_out {
        return Err(signed_out_everywhere());
    }
    current_identity(session.identity.as_ref(), now)
}

/// The customer the connection is authenticated as.
pub fn require_customer(session: &Session, now: UnixMillis) -> Result<UserId, ApiError> {
    session_identity(session, now).map(|identity| identity.user_id)
}

pub fn require_admin(session: &Session, now: UnixMillis) -> Result<(), ApiError> {
    let identity = session_identity(session, now)?;
    if identity.role != Role::Admin {
        return Err(ApiError::new(ErrorStatus::Forbidden, "admin role required"));
    }
    Ok(())
}

/// The SKUs of a product's variants, whose stock its detail page shows.
pub fn product_skus(state: &ShardState, product_id: &ProductId) -> Result<Vec<Sku>, ApiError> {
    match state.catalog.product(product_id) {
        Some(product) => Ok(product.variants.iter().map(|v| v.sku.clone()).collect()),
        None => Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no product {product_id}"),
        )),
    }
}

/// Current levels of SKUs this shard owns.
pub fn stock_levels(state: &ShardState, skus: &[Sku]) -> Vec<StockLevel> {
    skus.iter()
        .map(|sku| {
            assert_owned(state, sku);
            state.inventory.level(sku)
        })
        .collect()
}

/// A change to a cart this shard owns. Customers' own edits are rate
/// limited; the merges and deductions souk makes for them are not.
pub fn change_cart(
    state: &mut ShardState,
    key: CartKey,
    change: CartChange,
    now: UnixMillis,
) -> Result<Vec<(Sku, u32)>, ApiError> {
    let class = match change {
        CartChange::Add { .. } | CartChange::Set { .. } | CartChange::Remove { .. } => {
            Some(throttle::RateClass::CartWrites)
        }
        CartChange::View => Some(throttle::RateClass::Reads),
        CartChange::Take | CartChange::Merge { .. } | CartChange::Deduct { .. } => None,
    };
    if let Some(class) = class {
        state.rate_limits.take(&key.storage_key(), class, now)?;
    }
    state.carts.apply(&key, change, now)
}

/// Reserves an order's lines whose SKUs this shard owns, all or none.
pub fn reserve(
    state: &mut ShardState,
    order: OrderId,
    user: UserId,
    lines: &[(Sku, i64)],
) -> Result<(), ApiError> {
    for (sku, _) in lines {
        assert_owned(state, sku);
    }
    state.inventory.reserve(order, user, lines)
}

/// A login attempt against the failure limit of a key this shard owns.
pub fn login_attempt(
    state: &mut ShardState,
    key: &LoginKey,
    attempt: throttle::Attempt,
    now: UnixMillis,
) -> Result<(), ApiError> {
    let text = key.text();
    let (throttle, attempt) = match key {
        LoginKey::Account(_) => (&mut state.login_failures.accounts, attempt),
        // A success clears an account's failures, but only takes back its
        // own count from an address many people share.
        LoginKey::Address(_) => {
            let attempt = match attempt {
                throttle::Attempt::Succeeded { .. } => {
                    throttle::Attempt::Succeeded { forgive: false }
                }
                begin => begin,
            };
            (&mut state.login_failures.addresses, attempt)
        }
    };
    throttle.attempt(&text, attempt, now)
}

/// The reply to an operation this server version does not offer: a
/// client may try another server, and retrying this one will not help.
pub fn not_offered(operation: souk_wire::api::Operation) -> ApiError {
    ApiError::new(
        ErrorStatus::NotOffered,
        format!("{operation} is not offered by this server version"),
    )
}

/// How a storage failure reads to a client.
pub fn storage_failure(error: souk_storage::StorageError) -> ApiError {
    use souk_storage::StorageError as E;
    match error {
        E::Busy => ApiError::busy(limits::BUSY_RETRY_AFTER_MS, "storage is busy"),
        E::Conflict(message) => ApiError::new(ErrorStatus::Conflict, message),
        E::NotFound(message) => ApiError::new(ErrorStatus::NotFound, message),
        E::TooLarge { .. } | E::InvalidKey(_) => ApiError::bad_request(error.to_string()),
        E::DiskFull | E::Io(_) | E::Unavailable(_) => {
            ApiError::new(ErrorStatus::Unavailable, error.to_string())
        }
        E::Corrupt { .. } => ApiError::new(ErrorStatus::Internal, error.to_string()),
    }
}

pub fn assert_owned(state: &ShardState, sku: &Sku) {
    assert_eq!(
        state.placement.sku_owner(sku),
        state.shard,
        "{sku} reached a shard that does not own it"
    );
}

/// The product detail reply, once the owners reported the variants' stock.
pub fn product_detail(
    state: &ShardState,
    product_id: &ProductId,
    levels: &[StockLevel],
) -> Response {
    let Some(product) = state.catalog.product(product_id) else {
        return Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no product {product_id}"),
        ));
    };
    let available: HashMap<&Sku, i64> = levels.iter().map(|l| (&l.sku, l.available)).collect();
    let mut product = product.clone();
    for variant in &mut product.variants {
        let units = available.get(&variant.sku).copied().unwrap_or(0);
        variant.available = units;
        variant.stock_status = stock_status(units);
    }
    Ok(ResponseBody::ProductDetail(Box::new(product)))
}

/// A page of the catalog, each product with the best stock status of its
/// variants as their owners last published it.
pub fn browse(state: &ShardState, query: &souk_wire::api::BrowseCategory) -> Response {
    let mut page = state.catalog.browse(query)?;
    let board = state.stock_board.snapshot();
    for summary in &mut page.products {
        if let Some(product) = state.catalog.product(&summary.id) {
            summary.stock_status = board.best(product.variants.iter().map(|v| &v.sku));
        }
    }
    Ok(ResponseBody::ProductPage(page))
}

pub fn stock_status(available: i64) -> StockStatus {
    match available {
        n if n <= 0 => StockStatus::OutOfStock,
        n if n <= limits::LOW_STOCK_UNITS => StockStatus::LowStock,
        _ => StockStatus::InStock,
    }
}

#[cfg(test)]
mod tests;
