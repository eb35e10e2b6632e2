//! Deterministic records for tests, benchmarks and the crash writer: the
//! same id always gives the same order, so a reader can check that what it
//! reads back is intact.

use souk_wire::api::{
    Currency, IdempotencyKey, Money, OrderId, OrderLine, OrderStatus, PaymentStatus, ProductId,
    Sku, UnixMillis, UserId,
};

use crate::model::OrderRecord;

/// Users the generated orders spread over.
pub const USERS: u64 = 1000;
/// Shards the generated orders spread over.
pub const SHARDS: u16 = 16;

/// A two-line order whose every field follows from `id`.
pub fn order(id: u64) -> OrderRecord {
    let usd = |minor_units| Money::new(minor_units, Currency::USD);
    let line = |n: u64| OrderLine {
        sku: Sku::new(format!("P{:05}-M", n % 500)).expect("valid SKU"),
        product_id: ProductId::new(format!("P{:05}", n % 500)).expect("valid id"),
        name: "Classic Cotton T-Shirt (M)".into(),
        quantity: 1 + (n % 3) as u32,
        unit_price: usd(1999),
        line_total: usd(1999 * (1 + (n % 3) as i64)),
    };
    let lines = vec![line(id), line(id + 7)];
    let total = usd(lines.iter().map(|l| l.line_total.minor_units).sum());
    OrderRecord {
        id: OrderId(id),
        user_id: UserId(id % USERS),
        shard: (id % u64::from(SHARDS)) as u16,
        status: OrderStatus::PendingPayment,
        lines,
        total,
        created_at: UnixMillis(1_800_000_000_000 + id),
        updated_at: UnixMillis(1_800_000_000_000 + id),
        expires_at: UnixMillis(1_800_000_900_000 + id),
        shipping_address: None,
        payment_status: PaymentStatus::Pending,
        payment_method_token: "pm_tok_visa_4242".into(),
        idempotency_key: Some(IdempotencyKey(u128::from(id) << 64 | 7)),
    }
}
