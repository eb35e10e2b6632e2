//! The typed API model: plain Rust values for every request, response and
//! event of `schema/*.fbs`.
//!
//! This is what the server's domain code and the client SDK work with. It
//! knows nothing of FlatBuffers; `codec` converts between these values and
//! bytes, once, at the boundary. Values here are already validated: a `Sku`
//! always satisfies the SKU rules, a `Money` always has a well-formed
//! currency code, so code that receives them need not check again.

use std::fmt;

use crate::limits;

/// The protocol version this build speaks, sent in `Hello`.
pub const PROTOCOL_VERSION: u16 = 1;

/// The ALPN identifier negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"souk/1";

// ---------------------------------------------------------------------------
// Value types

/// Why a value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Empty,
    TooLong { max: usize },
    TooMany { max: usize },
    InvalidCharacters,
    OutOfRange,
    Missing,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Empty => write!(f, "must not be empty"),
            Violation::TooLong { max } => write!(f, "longer than {max} bytes"),
            Violation::TooMany { max } => write!(f, "more than {max} items"),
            Violation::InvalidCharacters => write!(f, "contains characters that are not allowed"),
            Violation::OutOfRange => write!(f, "out of range"),
            Violation::Missing => write!(f, "required but absent"),
        }
    }
}

/// An ISO 4217 currency code: three ASCII upper-case letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn new(code: &str) -> Result<Currency, Violation> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 {
            return Err(Violation::InvalidCharacters);
        }
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(Violation::InvalidCharacters);
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl TryFrom<String> for Currency {
    type Error = Violation;

    fn try_from(code: String) -> Result<Currency, Violation> {
        Currency::new(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.as_str().to_owned()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in integer minor units. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor_units: i64, currency: Currency) -> Money {
        Money {
            minor_units,
            currency,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let abs = self.minor_units.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

/// A client-chosen key (a UUID) that makes a mutating request safe to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IdempotencyKey(pub u128);

/// Declares a validated identifier made of visible ASCII (no spaces), at most
/// `$max` bytes: the rule every external identifier in souk follows, so that
/// identifiers are safe in logs, URLs, CSV files and storage keys.
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(
            feature = "serde",
            derive(serde::Serialize, serde::Deserialize),
            serde(try_from = "String", into = "String")
        )]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = Violation;

            fn try_from(value: String) -> Result<$name, Violation> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            pub const BYTES_MAX: usize = $max;

            pub fn new(value: impl Into<String>) -> Result<$name, Violation> {
                let value = value.into();
                validate_identifier(&value, Self::BYTES_MAX)?;
                Ok($name(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn validate_identifier(value: &str, bytes_max: usize) -> Result<(), Violation> {
    if value.is_empty() {
        return Err(Violation::Empty);
    }
    if value.len() > bytes_max {
        return Err(Violation::TooLong { max: bytes_max });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Violation::InvalidCharacters);
    }
    Ok(())
}

identifier!(
    /// A stock-keeping unit: one purchasable variant, such as `TSHIRT-RED-M`.
    Sku,
    limits::IDENTIFIER_BYTES_MAX
);
identifier!(
    /// A product, which groups variants (SKUs).
    ProductId,
    limits::IDENTIFIER_BYTES_MAX
);
identifier!(
    /// A catalog category.
    CategoryId,
    limits::IDENTIFIER_BYTES_MAX
);
identifier!(
    /// A device's id, which keys a guest cart before login.
    DeviceId,
    limits::IDENTIFIER_BYTES_MAX
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UserId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OrderId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AddressId(pub u64);

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UnixMillis(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    #[default]
    Customer,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StockStatus {
    #[default]
    Unknown,
    InStock,
    LowStock,
    OutOfStock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OrderStatus {
    #[default]
    PendingPayment,
    Paid,
    Fulfilled,
    Cancelled,
    Expired,
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PaymentStatus {
    #[default]
    Pending,
    Authorized,
    Captured,
    Failed,
    Refunded,
    PartiallyRefunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BrowseSort {
    #[default]
    NameAsc,
    NameDesc,
    PriceAsc,
    PriceDesc,
    Newest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestockMode {
    #[default]
    Add,
    Set,
}

/// An opaque paging cursor chosen by the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(pub String);

// ---------------------------------------------------------------------------
// Shared records

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Image {
    pub url: String,
    pub alt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub parent_id: Option<CategoryId>,
    pub product_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OptionValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OrderLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

// ---------------------------------------------------------------------------
// Requests

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Present on every mutating request.
    pub idempotency_key: Option<IdempotencyKey>,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u16,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub email: String,
    pub password: String,
    pub device_id: Option<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceRange {
    pub min_minor_units: Option<i64>,
    pub max_minor_units: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrowseCategory {
    pub category_id: Option<CategoryId>,
    pub sort: BrowseSort,
    pub price: PriceRange,
    pub cursor: Option<Cursor>,
    /// Already clamped to `1..=PAGE_LIMIT_MAX` by the decoder.
    pub limit: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRestock {
    pub sku: Sku,
    pub quantity: i64,
    pub mode: RestockMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub text: String,
    pub category_id: Option<CategoryId>,
    pub price: PriceRange,
    pub cursor: Option<Cursor>,
    pub limit: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggest {
    pub prefix: String,
    pub limit: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLineChange {
    pub device_id: Option<DeviceId>,
    pub sku: Sku,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub device_id: Option<DeviceId>,
    pub payment_method_token: String,
    pub shipping_address_id: Option<AddressId>,
    pub expected_total: Option<Money>,
    /// Empty: order the cart. Otherwise order these lines and leave the
    /// cart as it is ("buy now").
    pub lines: Vec<CheckoutLine>,
}

/// A line bought without the cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutLine {
    pub sku: Sku,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOrders {
    pub cursor: Option<Cursor>,
    pub limit: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPayment {
    pub order_id: OrderId,
    pub amount: Option<Money>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    Hello(Hello),
    Authenticate {
        access_token: String,
    },
    Refresh {
        refresh_token: String,
    },
    Logout {
        all_devices: bool,
    },
    Register(Register),
    Login(Login),
    ListCategories,
    BrowseCategory(BrowseCategory),
    GetProduct {
        product_id: ProductId,
    },
    AdminUpsertProduct(Box<Product>),
    AdminRestock(AdminRestock),
    Search(SearchQuery),
    Suggest(Suggest),
    GetCart {
        device_id: Option<DeviceId>,
    },
    AddToCart(CartLineChange),
    UpdateCartLine(CartLineChange),
    RemoveCartLine {
        device_id: Option<DeviceId>,
        sku: Sku,
    },
    MergeCart {
        guest_device_id: DeviceId,
    },
    Checkout(Checkout),
    GetOrder {
        order_id: OrderId,
    },
    ListOrders(ListOrders),
    CancelOrder {
        order_id: OrderId,
    },
    GetPaymentStatus {
        order_id: OrderId,
    },
    RefundPayment(RefundPayment),
    GetProfile,
    UpdateProfile {
        name: Option<String>,
    },
    ListAddresses,
    UpsertAddress(Address),
    DeleteAddress {
        address_id: AddressId,
    },
    WatchProduct {
        product_id: ProductId,
    },
    UnwatchProduct {
        product_id: ProductId,
    },
}

impl RequestBody {
    /// The operation's name, as used in logs and metrics.
    pub fn operation(&self) -> Operation {
        use RequestBody as R;
        match self {
            R::Hello(_) => Operation::Hello,
            R::Authenticate { .. } => Operation::Authenticate,
            R::Refresh { .. } => Operation::Refresh,
            R::Logout { .. } => Operation::Logout,
            R::Register(_) => Operation::Register,
            R::Login(_) => Operation::Login,
            R::ListCategories => Operation::ListCategories,
            R::BrowseCategory(_) => Operation::BrowseCategory,
            R::GetProduct { .. } => Operation::GetProduct,
            R::AdminUpsertProduct(_) => Operation::AdminUpsertProduct,
            R::AdminRestock(_) => Operation::AdminRestock,
            R::Search(_) => Operation::Search,
            R::Suggest(_) => Operation::Suggest,
            R::GetCart { .. } => Operation::GetCart,
            R::AddToCart(_) => Operation::AddToCart,
            R::UpdateCartLine(_) => Operation::UpdateCartLine,
            R::RemoveCartLine { .. } => Operation::RemoveCartLine,
            R::MergeCart { .. } => Operation::MergeCart,
            R::Checkout(_) => Operation::Checkout,
            R::GetOrder { .. } => Operation::GetOrder,
            R::ListOrders(_) => Operation::ListOrders,
            R::CancelOrder { .. } => Operation::CancelOrder,
            R::GetPaymentStatus { .. } => Operation::GetPaymentStatus,
            R::RefundPayment(_) => Operation::RefundPayment,
            R::GetProfile => Operation::GetProfile,
            R::UpdateProfile { .. } => Operation::UpdateProfile,
            R::ListAddresses => Operation::ListAddresses,
            R::UpsertAddress(_) => Operation::UpsertAddress,
            R::DeleteAddress { .. } => Operation::DeleteAddress,
            R::WatchProduct { .. } => Operation::WatchProduct,
            R::UnwatchProduct { .. } => Operation::UnwatchProduct,
        }
    }
}

/// Every operation of the API, without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Hello,
    Authenticate,
    Refresh,
    Logout,
    Register,
    Login,
    ListCategories,
    BrowseCategory,
    GetProduct,
    AdminUpsertProduct,
    AdminRestock,
    Search,
    Suggest,
    GetCart,
    AddToCart,
    UpdateCartLine,
    RemoveCartLine,
    MergeCart,
    Checkout,
    GetOrder,
    ListOrders,
    CancelOrder,
    GetPaymentStatus,
    RefundPayment,
    GetProfile,
    UpdateProfile,
    ListAddresses,
    UpsertAddress,
    DeleteAddress,
    WatchProduct,
    UnwatchProduct,
}

impl Operation {
    pub const ALL: [Operation; 31] = [
        Operation::Hello,
        Operation::Authenticate,
        Operation::Refresh,
        Operation::Logout,
        Operation::Register,
        Operation::Login,
        Operation::ListCategories,
        Operation::BrowseCategory,
        Operation::GetProduct,
        Operation::AdminUpsertProduct,
        Operation::AdminRestock,
        Operation::Search,
        Operation::Suggest,
        Operation::GetCart,
        Operation::AddToCart,
        Operation::UpdateCartLine,
        Operation::RemoveCartLine,
        Operation::MergeCart,
        Operation::Checkout,
        Operation::GetOrder,
        Operation::ListOrders,
        Operation::CancelOrder,
        Operation::GetPaymentStatus,
        Operation::RefundPayment,
        Operation::GetProfile,
        Operation::UpdateProfile,
        Operation::ListAddresses,
        Operation::UpsertAddress,
        Operation::DeleteAddress,
        Operation::WatchProduct,
        Operation::UnwatchProduct,
    ];

    /// Mutating operations must carry an idempotency key.
    pub fn is_mutating(self) -> bool {
        use Operation as O;
        matches!(
            self,
            O::Register
                | O::AdminUpsertProduct
                | O::AdminRestock
                | O::AddToCart
                | O::UpdateCartLine
                | O::RemoveCartLine
                | O::MergeCart
                | O::Checkout
                | O::CancelOrder
                | O::RefundPayment
                | O::UpdateProfile
                | O::UpsertAddress
                | O::DeleteAddress
        )
    }

    /// Safe reads may arrive as QUIC 0-RTT early data, which an attacker can replay.
    pub fn is_safe_read(self) -> bool {
        use Operation as O;
        matches!(
            self,
            O::Hello
                | O::ListCategories
                | O::BrowseCategory
                | O::GetProduct
                | O::Search
                | O::Suggest
                | O::GetCart
        )
    }

    pub fn name(self) -> &'static str {
        use Operation as O;
        match self {
            O::Hello => "hello",
            O::Authenticate => "authenticate",
            O::Refresh => "refresh",
            O::Logout => "logout",
            O::Register => "register",
            O::Login => "login",
            O::ListCategories => "list_categories",
            O::BrowseCategory => "browse_category",
            O::GetProduct => "get_product",
            O::AdminUpsertProduct => "admin_upsert_product",
            O::AdminRestock => "admin_restock",
            O::Search => "search",
            O::Suggest => "suggest",
            O::GetCart => "get_cart",
            O::AddToCart => "add_to_cart",
            O::UpdateCartLine => "update_cart_line",
            O::RemoveCartLine => "remove_cart_line",
            O::MergeCart => "merge_cart",
            O::Checkout => "checkout",
            O::GetOrder => "get_order",
            O::ListOrders => "list_orders",
            O::CancelOrder => "cancel_order",
            O::GetPaymentStatus => "get_payment_status",
            O::RefundPayment => "refund_payment",
            O::GetProfile => "get_profile",
            O::UpdateProfile => "update_profile",
            O::ListAddresses => "list_addresses",
            O::UpsertAddress => "upsert_address",
            O::DeleteAddress => "delete_address",
            O::WatchProduct => "watch_product",
            O::UnwatchProduct => "unwatch_product",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// Responses

/// Every status but `Ok`: the typed reason a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorStatus {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    InsufficientStock,
    LimitExceeded,
    Busy,
    Unavailable,
    Internal,
    /// This server version does not offer the operation; unlike
    /// `Unavailable`, retrying will not help.
    NotOffered,
}

impl ErrorStatus {
    /// Whether the same request, with the same idempotency key, may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorStatus::Busy | ErrorStatus::Unavailable | ErrorStatus::Internal
        )
    }
}

/// A failed request: a typed status, a message for humans, and for `Busy` and
/// `LimitExceeded` a hint when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: ErrorStatus,
    pub message: String,
    pub retry_after_ms: u32,
}

impl ApiError {
    pub fn new(status: ErrorStatus, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after_ms: 0,
        }
    }

    pub fn busy(retry_after_ms: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status: ErrorStatus::Busy,
            message: message.into(),
            retry_after_ms,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorStatus::BadRequest, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.status, self.message)?;
        if self.retry_after_ms > 0 {
            write!(f, " (retry after {} ms)", self.retry_after_ms)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A response: the body of a successful request, or why it failed.
pub type Response = Result<ResponseBody, ApiError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    pub protocol_version: u16,
    pub server_version: String,
    pub shard: u16,
    pub shard_count: u16,
    pub server_time: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub access_expires_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    pub user_id: UserId,
    pub role: Role,
    pub access_token: String,
    pub access_expires_at: UnixMillis,
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPage {
    pub products: Vec<ProductSummary>,
    pub next_cursor: Option<Cursor>,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: Sku,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub hits: Vec<ProductSummary>,
    pub total: u32,
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub lines: Vec<CartLine>,
    pub subtotal: Option<Money>,
    pub item_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub order_id: OrderId,
    pub status: PaymentStatus,
    pub amount: Money,
    pub refunded: Option<Money>,
    pub attempts: u16,
    pub last_error: Option<String>,
    pub updated_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// Success with nothing to return (logout, delete, watch).
    Empty,
    HelloReply(HelloReply),
    Identity(Identity),
    SessionGrant(SessionGrant),
    CategoryList(Vec<Category>),
    ProductPage(ProductPage),
    ProductDetail(Box<Product>),
    StockLevel(StockLevel),
    SearchResults(SearchResults),
    Suggestions(Vec<String>),
    CartView(CartView),
    OrderView(Box<Order>),
    OrderPage(OrderPage),
    PaymentView(PaymentView),
    Profile(Profile),
    AddressList(Vec<Address>),
    Address(Address),
}

// ---------------------------------------------------------------------------
// Server push events

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub at: UnixMillis,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    OrderStatusChanged {
        order_id: OrderId,
        status: OrderStatus,
        previous: OrderStatus,
    },
    PaymentResult {
        order_id: OrderId,
        status: PaymentStatus,
        message: Option<String>,
    },
    StockLeft {
        product_id: ProductId,
        sku: Sku,
        available: i64,
    },
    WaitingRoomPosition {
        room: String,
        position: u32,
        estimated_wait_ms: u32,
        admitted: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_empty_long_and_invisible() {
        assert_eq!(Sku::new(""), Err(Violation::Empty));
        assert_eq!(Sku::new("A B"), Err(Violation::InvalidCharacters));
        assert_eq!(Sku::new("é"), Err(Violation::InvalidCharacters));
        let long = "X".repeat(Sku::BYTES_MAX + 1);
        assert_eq!(
            Sku::new(long),
            Err(Violation::TooLong {
                max: Sku::BYTES_MAX
            })
        );
        assert_eq!(
            Sku::new("FUR-BO-10001798").unwrap().as_str(),
            "FUR-BO-10001798"
        );
    }

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert_eq!(Currency::new("USD"), Ok(Currency::USD));
        assert!(Currency::new("usd").is_err());
        assert!(Currency::new("US").is_err());
        assert!(Currency::new("USDX").is_err());
        assert_eq!(Money::new(-1999, Currency::EUR).to_string(), "-19.99 EUR");
    }

    #[test]
    fn every_operation_is_listed_once() {
        let mut names: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Operation::ALL.len());
    }
}
