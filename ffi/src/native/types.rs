//! The API's values as the foreign languages see them.
//!
//! These are `souk_wire::api`'s own types, declared to uniffi as "remote"
//! types: uniffi derives the conversions from the definitions restated
//! here, so the records the apps get are the API's records field for field,
//! and nothing converts between two models by hand. Each restated definition
//! must match the original; the compiler checks that it does.
//!
//! Identifiers (`Sku`, `ProductId`, ...) travel as strings and are checked
//! by their own constructors when they come back in: a SKU the server would
//! refuse is refused here, as `SoukError::BadRequest`, before anything is
//! sent.

use souk_wire::api::{
    Address, AddressId, Attribute, BrowseCategory, BrowseSort, CartLine, CartView, Category,
    CategoryId, Checkout, CheckoutLine, Currency, Cursor, DeviceId, HelloReply, IdempotencyKey,
    Identity, Image, Money, OptionValue, Order, OrderId, OrderLine, OrderPage, OrderStatus,
    PaymentStatus, PaymentView, PriceRange, Product, ProductId, ProductOption, ProductPage,
    ProductSummary, Profile, RestockMode, Role, SessionGrant, Sku, StockLevel, StockStatus,
    UnixMillis, UserId, Variant, Violation,
};

use super::SoukError;

fn refused(what: &str, value: &str, violation: Violation) -> uniffi::deps::anyhow::Error {
    let shown: String = value.chars().take(40).collect();
    SoukError::BadRequest {
        detail: format!("{what} {shown:?} {violation}"),
    }
    .into()
}

macro_rules! identifier_as_string {
    ($name:ident, $what:literal) => {
        uniffi::custom_type!($name, String, {
            remote,
            lower: |value| value.into(),
            try_lift: |value| $name::new(value.clone()).map_err(|v| refused($what, &value, v)),
        });
    };
}

identifier_as_string!(Sku, "SKU");
identifier_as_string!(ProductId, "product id");
identifier_as_string!(CategoryId, "category id");
identifier_as_string!(DeviceId, "device id");

uniffi::custom_type!(Currency, String, {
    remote,
    lower: |currency| currency.into(),
    try_lift: |code| Currency::new(&code).map_err(|v| refused("currency", &code, v)),
});

/// A newtype over a value any content of which is valid: it travels as
/// that value.
macro_rules! newtype_as {
    ($name:ident, $inner:ty) => {
        uniffi::custom_type!($name, $inner, {
            remote,
            lower: |value| value.0,
            try_lift: |value| Ok($name(value)),
        });
    };
}

newtype_as!(Cursor, String);
newtype_as!(UserId, u64);
newtype_as!(OrderId, u64);
newtype_as!(AddressId, u64);
newtype_as!(UnixMillis, u64);

// 32 hexadecimal digits: what `new_idempotency_key` returns, and what an
// app stores beside a checkout it has not seen the outcome of.
uniffi::custom_type!(IdempotencyKey, String, {
    remote,
    lower: |key| format!("{:032x}", key.0),
    try_lift: |text| parse_idempotency_key(&text),
});

fn parse_idempotency_key(text: &str) -> uniffi::Result<IdempotencyKey> {
    // `from_str_radix` alone would take a sign as well.
    let digits = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    match u128::from_str_radix(text, 16) {
        Ok(key) if digits => Ok(IdempotencyKey(key)),
        _ => {
            let shown: String = text.chars().take(40).collect();
            Err(SoukError::BadRequest {
                detail: format!("idempotency key {shown:?} is not 32 hex digits"),
            }
            .into())
        }
    }
}

#[uniffi::remote(Enum)]
pub enum Role {
    Customer,
    Admin,
}

#[uniffi::remote(Enum)]
pub enum StockStatus {
    Unknown,
    InStock,
    LowStock,
    OutOfStock,
}

#[uniffi::remote(Enum)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilled,
    Cancelled,
    Expired,
    Refunded,
}

#[uniffi::remote(Enum)]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Failed,
    Refunded,
    PartiallyRefunded,
}

#[uniffi::remote(Enum)]
pub enum BrowseSort {
    NameAsc,
    NameDesc,
    PriceAsc,
    PriceDesc,
    Newest,
}

#[uniffi::remote(Enum)]
pub enum RestockMode {
    Add,
    Set,
}

/// An amount in integer minor units (cents for USD) and its ISO 4217
/// currency. Never a float: format it with the platform's currency
/// formatter, dividing by the currency's minor-unit factor.
#[uniffi::remote(Record)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

#[uniffi::remote(Record)]
pub struct Image {
    pub url: String,
    pub alt: Option<String>,
}

#[uniffi::remote(Record)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

#[uniffi::remote(Record)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub parent_id: Option<CategoryId>,
    pub product_count: u32,
}

#[uniffi::remote(Record)]
pub struct OptionValue {
    pub name: String,
    pub value: String,
}

#[uniffi::remote(Record)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

#[uniffi::remote(Record)]
pub struct Variant {
    pub sku: Sku,
    pub name: Option<String>,
    pub options: Vec<OptionValue>,
    pub price: Money,
    pub compare_at_price: Option<Money>,
    pub stock_status: StockStatus,
    pub available: i64,
    pub attributes: Vec<Attribute>,
}

#[uniffi::remote(Record)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub category_ids: Vec<CategoryId>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<Variant>,
    pub attributes: Vec<Attribute>,
    pub images: Vec<Image>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

#[uniffi::remote(Record)]
pub struct ProductSummary {
    pub id: ProductId,
    pub name: String,
    pub brand: Option<String>,
    pub category_id: Option<CategoryId>,
    pub price_from: Money,
    pub image: Option<Image>,
    pub stock_status: StockStatus,
    pub created_at: UnixMillis,
}

#[uniffi::remote(Record)]
pub struct ProductPage {
    pub products: Vec<ProductSummary>,
    pub next_cursor: Option<Cursor>,
    pub total: u32,
}

#[uniffi::remote(Record)]
pub struct PriceRange {
    #[uniffi(default = None)]
    pub min_minor_units: Option<i64>,
    #[uniffi(default = None)]
    pub max_minor_units: Option<i64>,
}

/// A page of a category (or of the whole catalog, without `category_id`).
/// `limit` is clamped to the server's page limit.
#[uniffi::remote(Record)]
pub struct BrowseCategory {
    #[uniffi(default = None)]
    pub category_id: Option<CategoryId>,
    pub sort: BrowseSort,
    pub price: PriceRange,
    #[uniffi(default = None)]
    pub cursor: Option<Cursor>,
    #[uniffi(default = 20)]
    pub limit: u16,
}

#[uniffi::remote(Record)]
pub struct Address {
    pub id: AddressId,
    pub name: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub is_default: bool,
}

#[uniffi::remote(Record)]
pub struct CartLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
    pub stock_status: StockStatus,
    pub available: i64,
}

#[uniffi::remote(Record)]
pub struct CartView {
    pub lines: Vec<CartLine>,
    pub subtotal: Option<Money>,
    pub item_count: u32,
}

#[uniffi::remote(Record)]
pub struct CheckoutLine {
    pub sku: Sku,
    pub quantity: u32,
}

/// What to order: the cart (empty `lines`) or these lines ("buy now"),
/// paid with a payment-method token from the payment provider's own SDK.
/// Card numbers never reach souk. `expected_total`, when given, makes the
/// server refuse the order if the price changed since the app showed it.
#[uniffi::remote(Record)]
pub struct Checkout {
    #[uniffi(default = None)]
    pub device_id: Option<DeviceId>,
    pub payment_method_token: String,
    #[uniffi(default = None)]
    pub shipping_address_id: Option<AddressId>,
    #[uniffi(default = None)]
    pub expected_total: Option<Money>,
    #[uniffi(default = [])]
    pub lines: Vec<CheckoutLine>,
}

#[uniffi::remote(Record)]
pub struct OrderLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

#[uniffi::remote(Record)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub shipping_address: Option<Address>,
    pub payment_status: PaymentStatus,
}

#[uniffi::remote(Record)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_cursor: Option<Cursor>,
}

#[uniffi::remote(Record)]
pub struct PaymentView {
    pub order_id: OrderId,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Option<Money>,
    pub attempts: u16,
    pub last_error: Option<String>,
    pub updated_at: UnixMillis,
}

#[uniffi::remote(Record)]
pub struct Profile {
    pub user_id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: UnixMillis,
}

#[uniffi::remote(Record)]
pub struct HelloReply {
    pub protocol_version: u16,
    pub server_version: String,
    pub shard: u16,
    pub shard_count: u16,
    pub server_time: UnixMillis,
}

#[uniffi::remote(Record)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub access_expires_at: UnixMillis,
}

/// A signed-in session. The app keeps it in the platform's keychain or
/// keystore (through its `SessionStore`), never in plain files: the
/// refresh token signs the user in.
#[uniffi::remote(Record)]
pub struct SessionGrant {
    pub user_id: UserId,
    pub role: Role,
    pub access_token: String,
    pub access_expires_at: UnixMillis,
    pub refresh_token: String,
}

#[uniffi::remote(Record)]
pub struct StockLevel {
    pub sku: Sku,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(error: uniffi::deps::anyhow::Error) -> SoukError {
        error
            .downcast::<SoukError>()
            .expect("a refusal is a SoukError")
    }

    #[test]
    fn idempotency_keys_are_32_hex_digits_both_ways() {
        let key = IdempotencyKey(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = format!("{:032x}", key.0);
        assert_eq!(parse_idempotency_key(&text).unwrap(), key);
        assert_eq!(
            parse_idempotency_key(&"0".repeat(32)).unwrap(),
            IdempotencyKey(0)
        );
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"0".repeat(33),
            "+123456789abcdef0123456789abcdef",
        ] {
            let error = refusal(parse_idempotency_key(bad).unwrap_err());
            assert!(
                matches!(error, SoukError::BadRequest { .. }),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn a_refused_identifier_names_what_and_why_without_echoing_all_of_it() {
        let long = "x".repeat(500);
        let error = refusal(refused("SKU", &long, Violation::TooLong { max: 64 }));
        let SoukError::BadRequest { detail } = error else {
            panic!("not BadRequest: {error:?}");
        };
        assert!(detail.starts_with("SKU \"xxxx"), "{detail}");
        assert!(detail.ends_with("longer than 64 bytes"), "{detail}");
        assert!(detail.len() < 100, "{detail}");
    }
}
