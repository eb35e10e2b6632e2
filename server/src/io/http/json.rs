//! The JSON shapes of the HTTP API, and their conversions to and from the
//! `api` model: the one place JSON meets `api` values, as `wire::codec` is
//! for FlatBuffers.
//!
//! These are separate types rather than serde on `api` itself because the
//! browser's JSON has rules of its own: 64-bit ids travel as decimal
//! strings (a JavaScript number loses them above 2^53), enums as
//! `snake_case` strings, and a refresh token never appears in a body. Each
//! type derives its OpenAPI schema, so the document is generated from the
//! very types the bridge encodes.

use serde::{Deserialize, Serialize};
use souk_wire::api;
use utoipa::ToSchema;

/// An amount in integer minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Minor units: 1999 is 19.99 in a two-decimal currency. Never
    /// negative in a request.
    pub minor_units: i64,
    /// ISO 4217 code, three upper-case letters.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

impl From<api::Money> for Money {
    fn from(money: api::Money) -> Money {
        Money {
            minor_units: money.minor_units,
            currency: money.currency.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockStatus {
    Unknown,
    InStock,
    LowStock,
    OutOfStock,
}

impl From<api::StockStatus> for StockStatus {
    fn from(status: api::StockStatus) -> StockStatus {
        match status {
            api::StockStatus::Unknown => StockStatus::Unknown,
            api::StockStatus::InStock => StockStatus::InStock,
            api::StockStatus::LowStock => StockStatus::LowStock,
            api::StockStatus::OutOfStock => StockStatus::OutOfStock,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Fulfilled,
    Cancelled,
    Expired,
    Refunded,
}

impl From<api::OrderStatus> for OrderStatus {
    fn from(status: api::OrderStatus) -> OrderStatus {
        match status {
            api::OrderStatus::PendingPayment => OrderStatus::PendingPayment,
            api::OrderStatus::Paid => OrderStatus::Paid,
            api::OrderStatus::Fulfilled => OrderStatus::Fulfilled,
            api::OrderStatus::Cancelled => OrderStatus::Cancelled,
            api::OrderStatus::Expired => OrderStatus::Expired,
            api::OrderStatus::Refunded => OrderStatus::Refunded,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Failed,
    Refunded,
    PartiallyRefunded,
}

impl From<api::PaymentStatus> for PaymentStatus {
    fn from(status: api::PaymentStatus) -> PaymentStatus {
        match status {
            api::PaymentStatus::Pending => PaymentStatus::Pending,
            api::PaymentStatus::Authorized => PaymentStatus::Authorized,
            api::PaymentStatus::Captured => PaymentStatus::Captured,
            api::PaymentStatus::Failed => PaymentStatus::Failed,
            api::PaymentStatus::Refunded => PaymentStatus::Refunded,
            api::PaymentStatus::PartiallyRefunded => PaymentStatus::PartiallyRefunded,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl From<api::Role> for Role {
    fn from(role: api::Role) -> Role {
        match role {
            api::Role::Customer => Role::Customer,
            api::Role::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub product_count: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryList {
    pub categories: Vec<Category>,
}

impl From<Vec<api::Category>> for CategoryList {
    fn from(categories: Vec<api::Category>) -> CategoryList {
        CategoryList {
            categories: categories
                .into_iter()
                .map(|c| Category {
                    id: c.id.into(),
                    name: c.name,
                    parent_id: c.parent_id.map(String::from),
                    product_count: c.product_count,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub url: String,
    #[serde(default)]
    pub alt: Option<String>,
}

impl From<api::Image> for Image {
    fn from(image: api::Image) -> Image {
        Image {
            url: image.url,
            alt: image.alt,
        }
    }
}

/// A name and value, for attributes and chosen options alike.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductSummary {
    pub id: String,
    pub name: String,
    pub brand: Option<String>,
    pub category_id: Option<String>,
    /// The lowest price among the product's variants.
    pub price_from: Money,
    pub image: Option<Image>,
    pub stock_status: StockStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl From<api::ProductSummary> for ProductSummary {
    fn from(p: api::ProductSummary) -> ProductSummary {
        ProductSummary {
            id: p.id.into(),
            name: p.name,
            brand: p.brand,
            category_id: p.category_id.map(String::from),
            price_from: p.price_from.into(),
            image: p.image.map(Image::from),
            stock_status: p.stock_status.into(),
            created_at: p.created_at.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductPage {
    pub products: Vec<ProductSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Products matching the filter, over all pages.
    pub total: u32,
}

impl From<api::ProductPage> for ProductPage {
    fn from(page: api::ProductPage) -> ProductPage {
        ProductPage {
            products: page.products.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor.map(|c| c.0),
            total: page.total,
        }
    }
}

/// One purchasable variant. On input (admin upsert) `stock_status` and
/// `available` are ignored: stock moves only by restock and sales.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub sku: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    #[serde(default)]
    pub options: Vec<NameValue>,
    pub price: Money,
    #[serde(default)]
    pub compare_at_price: Option<Money>,
    #[serde(default = "unknown_stock")]
    pub stock_status: StockStatus,
    /// Units that can be bought now, read live from the SKU's owner.
    #[serde(default)]
    pub available: i64,
    #[serde(default)]
    pub attributes: Vec<NameValue>,
}

fn unknown_stock() -> StockStatus {
    StockStatus::Unknown
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub category_ids: Vec<String>,
    #[serde(default)]
    pub options: Vec<ProductOption>,
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub attributes: Vec<NameValue>,
    #[serde(default)]
    pub images: Vec<Image>,
    /// Milliseconds since the Unix epoch; set by the server.
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
}

fn attributes_out(list: Vec<api::Attribute>) -> Vec<NameValue> {
    list.into_iter()
        .map(|a| NameValue {
            name: a.name,
            value: a.value,
        })
        .collect()
}

impl From<api::Product> for Product {
    fn from(p: api::Product) -> Product {
        Product {
            id: p.id.into(),
            name: p.name,
            description: p.description,
            brand: p.brand,
            category_ids: p.category_ids.into_iter().map(String::from).collect(),
            options: p
                .options
                .into_iter()
                .map(|o| ProductOption {
                    name: o.name,
                    values: o.values,
                })
                .collect(),
            variants: p
                .variants
                .into_iter()
                .map(|v| Variant {
                    sku: v.sku.into(),
                    name: v.name,
                    options: v
                        .options
                        .into_iter()
                        .map(|o| NameValue {
                            name: o.name,
                            value: o.value,
                        })
                        .collect(),
                    price: v.price.into(),
                    compare_at_price: v.compare_at_price.map(Money::from),
                    stock_status: v.stock_status.into(),
                    available: v.available,
                    attributes: attributes_out(v.attributes),
                })
                .collect(),
            attributes: attributes_out(p.attributes),
            images: p.images.into_iter().map(Image::from).collect(),
            created_at: p.created_at.0,
            updated_at: p.updated_at.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

impl From<api::StockLevel> for StockLevel {
    fn from(s: api::StockLevel) -> StockLevel {
        StockLevel {
            sku: s.sku.into(),
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartLine {
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
    pub stock_status: StockStatus,
    pub available: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    /// Absent for an empty cart.
    pub subtotal: Option<Money>,
    pub item_count: u32,
}

impl From<api::CartView> for Cart {
    fn from(cart: api::CartView) -> Cart {
        Cart {
            lines: cart
                .lines
                .into_iter()
                .map(|l| CartLine {
                    sku: l.sku.into(),
                    product_id: l.product_id.into(),
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                    stock_status: l.stock_status.into(),
                    available: l.available,
                })
                .collect(),
            subtotal: cart.subtotal.map(Money::from),
            item_count: cart.item_count,
        }
    }
}

/// A postal address. On output `id` is the address's id, a decimal string.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[serde(default)]
    #[schema(read_only)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub line1: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub line2: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub city: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub region: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub phone: Option<String>,
    #[serde(default)]
    pub is_default: bool,
}

impl From<api::Address> for Address {
    fn from(a: api::Address) -> Address {
        Address {
            id: Some(a.id.0.to_string()),
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
            is_default: a.is_default,
        }
    }
}

impl Address {
    /// The api value, with the id taken from the path (or 0: a new one).
    pub fn into_api(self, id: api::AddressId) -> api::Address {
        api::Address {
            id,
            name: self.name,
            line1: self.line1,
            line2: self.line2,
            city: self.city,
            region: self.region,
            postal_code: self.postal_code,
            country: self.country,
            phone: self.phone,
            is_default: self.is_default,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AddressList {
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLine {
    pub sku: String,
    pub product_id: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    /// Decimal string: order ids exceed JavaScript's safe integers.
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: u64,
    pub updated_at: u64,
    /// When an unpaid order expires and its stock returns.
    pub expires_at: u64,
    pub shipping_address: Option<Address>,
}

impl From<api::Order> for Order {
    fn from(o: api::Order) -> Order {
        Order {
            id: o.id.0.to_string(),
            status: o.status.into(),
            payment_status: o.payment_status.into(),
            lines: o
                .lines
                .into_iter()
                .map(|l| OrderLine {
                    sku: l.sku.into(),
                    product_id: l.product_id.into(),
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                })
                .collect(),
            total: o.total.into(),
            created_at: o.created_at.0,
            updated_at: o.updated_at.0,
            expires_at: o.expires_at.0,
            shipping_address: o.shipping_address.map(Address::from),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_cursor: Option<String>,
}

impl From<api::OrderPage> for OrderPage {
    fn from(page: api::OrderPage) -> OrderPage {
        OrderPage {
            orders: page.orders.into_iter().map(Order::from).collect(),
            next_cursor: page.next_cursor.map(|c| c.0),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Payment {
    #[schema(pattern = "^[0-9]+$")]
    pub order_id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Option<Money>,
    /// Charges tried so far; a gateway outage is retried.
    pub attempts: u16,
    pub last_error: Option<String>,
    pub updated_at: u64,
}

impl From<api::PaymentView> for Payment {
    fn from(p: api::PaymentView) -> Payment {
        Payment {
            order_id: p.order_id.0.to_string(),
            status: p.status.into(),
            amount: p.amount.into(),
            refunded: p.refunded.map(Money::from),
            attempts: p.attempts,
            last_error: p.last_error,
            updated_at: p.updated_at.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    #[schema(pattern = "^[0-9]+$")]
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: u64,
}

impl From<api::Profile> for Profile {
    fn from(p: api::Profile) -> Profile {
        Profile {
            user_id: p.user_id.0.to_string(),
            email: p.email,
            name: p.name,
            role: p.role.into(),
            created_at: p.created_at.0,
        }
    }
}

/// A signed-in session. The access token is also set as an HttpOnly
/// cookie; the refresh token is only ever a cookie, scoped to
/// `/v1/account/session`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    #[schema(pattern = "^[0-9]+$")]
    pub user_id: String,
    pub role: Role,
    /// For `Authorization: Bearer`, when the client does not use cookies.
    pub access_token: String,
    pub access_expires_at: u64,
}

// ---------------------------------------------------------------------------
// Request bodies

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCartLine {
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub sku: String,
    /// Units to add to the line.
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartLineQuantity {
    /// The line's new quantity; 0 removes it.
    #[schema(maximum = 10000)]
    pub quantity: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutLine {
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub sku: String,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A token from the payment provider; card numbers never reach souk.
    #[schema(min_length = 1, max_length = 4096)]
    pub payment_method_token: String,
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub shipping_address_id: Option<String>,
    /// The total the buyer saw; a different price refuses the checkout.
    #[serde(default)]
    pub expected_total: Option<Money>,
    /// Buy these lines now and leave the cart as it is; empty: the cart.
    #[serde(default)]
    pub lines: Vec<CheckoutLine>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Logout {
    /// Sign out every device of the account, not only this one.
    #[serde(default)]
    pub all_devices: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    #[serde(default)]
    #[schema(max_length = 256)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestockMode {
    /// Add `quantity` units (negative removes).
    Add,
    /// Set the units on hand to `quantity`.
    Set,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    /// Units to add (negative removes), or with `set` the units on hand
    /// (0 or more).
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    pub quantity: i64,
    #[serde(default = "restock_add")]
    pub mode: RestockMode,
}

fn restock_add() -> RestockMode {
    RestockMode::Add
}

// ---------------------------------------------------------------------------
// Errors and operations

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable name of the failure, as in the QUIC API's `Status`.
    pub code: String,
    /// For `Busy` and `LimitExceeded`: when to try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or why the server is not ready.
    pub status: String,
}
