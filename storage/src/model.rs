//! The records souk keeps. Catalog records reuse the API's value types
//! (`Product`, `Category`, `Address`); the rest are storage's own, because
//! they hold what clients never see (password hashes, token hashes,
//! payment-method tokens).
//!
//! Every record is encoded by `codec` with a format version in front, and is
//! checked against `limits` before it is written.

use serde::{Deserialize, Serialize};
use souk_wire::api::{
    Address, IdempotencyKey, Money, OrderId, OrderLine, OrderStatus, PaymentStatus, Role, Sku,
    UnixMillis, UserId,
};

/// An order with its lines: the durable fact of a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub id: OrderId,
    pub user_id: UserId,
    /// The shard that owns the order (the user's shard when it was placed);
    /// stock rebuild reads a shard's orders by this.
    pub shard: u16,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// While pending payment: when the reservation lapses.
    pub expires_at: UnixMillis,
    pub shipping_address: Option<Address>,
    pub payment_status: PaymentStatus,
    /// The payment provider's token; never a card number.
    pub payment_method_token: String,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub order_id: OrderId,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Money,
    pub attempts: u16,
    pub last_error: Option<String>,
    /// The gateway's reference for the authorization or capture.
    pub gateway_reference: Option<String>,
    pub updated_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    /// Lower-cased: e-mail uniqueness is case-insensitive.
    pub email: String,
    /// An Argon2id PHC string; never the password.
    pub password_hash: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: UnixMillis,
}

/// A refresh token, kept only as the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    pub token_hash: [u8; 32],
    pub user_id: UserId,
    /// Tokens rotated from one login share a family; reuse of a rotated
    /// token revokes the whole family.
    pub family: [u8; 16],
    pub issued_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// Set when the token was used and replaced by a new one.
    pub rotated_at: Option<UnixMillis>,
    pub revoked: bool,
}

/// Units of one SKU ever received (the initial stock plus every restock),
/// as last persisted. Units on hand are never written: they are `received`
/// less the units of paid orders, so a sale needs no stock write and the
/// order record alone is the durable fact (see `storage/DESIGN.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRecord {
    pub sku: Sku,
    pub received: i64,
    pub updated_at: UnixMillis,
}

/// Units sold, per SKU, by every order below `watermark`, folded in so
/// that a start replays only the orders from the watermark on. Orders
/// below it had all left `PendingPayment` when they were folded, and an
/// order's stock never changes after that (paid, fulfilled and refunded
/// orders have sold their units; cancelled and expired ones hold none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSnapshot {
    pub watermark: OrderId,
    /// Sorted by SKU; SKUs with nothing sold are absent.
    pub sold: Vec<(Sku, i64)>,
}

impl Default for StockSnapshot {
    fn default() -> StockSnapshot {
        StockSnapshot {
            watermark: OrderId(0),
            sold: Vec::new(),
        }
    }
}

/// What one `advance_stock_snapshot` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub watermark: OrderId,
    /// Orders folded in by this call; fewer than its limit means the
    /// watermark has caught up (with `below` or the first pending order).
    pub folded: usize,
}

/// A cart as its owner shard last flushed it. Carts are written behind
/// (every few hundred milliseconds, and at shutdown), not per change: a
/// crash may lose the last moments of cart edits, never an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartRecord {
    /// `u:<user id>` or `g:<device id>`.
    pub key: String,
    /// Empty: the cart is gone (emptied, merged or evicted).
    pub lines: Vec<(Sku, u32)>,
    pub updated_at: UnixMillis,
}

/// One page of a list and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}
