//! Every size the protocol admits, each a named bound with its reason.
//!
//! The decoder checks these before it allocates or converts; a value over a
//! bound is a typed `BadRequest`, never a panic or an unbounded allocation.

/// Bytes of the little-endian `u32` length that precedes every message: the
/// FlatBuffers size prefix, which the buffer's alignment counts (see `frame`).
pub const FRAME_HEADER_BYTES: usize = 4;

/// The largest request. The biggest legitimate request is an admin product
/// upsert with `VARIANTS_PER_PRODUCT_MAX` variants and a full description,
/// which fits with room to spare; the bound caps per-stream buffer memory at
/// streams-per-connection × 64 KiB.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// The largest response: a page of `PAGE_LIMIT_MAX` products or orders with
/// every string at its bound still fits.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// The largest pushed event. Events are small notifications, not documents.
pub const EVENT_BYTES_MAX: usize = 16 * 1024;

/// Tables nest at most five deep in the schema (Request, AdminUpsertProduct,
/// Product, Variant, Money); anything deeper is an attack on the verifier.
pub const VERIFIER_DEPTH_MAX: usize = 16;

/// Tables the verifier visits in one request: a product upsert at every list
/// bound stays well under this.
pub const REQUEST_TABLES_MAX: usize = 16 * 1024;

/// Tables the verifier visits in one response (a full page of products).
pub const RESPONSE_TABLES_MAX: usize = 256 * 1024;

/// Ids are keys in storage, logs and URLs.
pub const IDENTIFIER_BYTES_MAX: usize = 64;

/// Names, option values, attribute values, address lines.
pub const TEXT_BYTES_MAX: usize = 256;

/// A product description.
pub const DESCRIPTION_BYTES_MAX: usize = 16 * 1024;

/// Image URLs.
pub const URL_BYTES_MAX: usize = 2048;

/// Tokens (JWT access tokens, refresh tokens, payment-method tokens).
pub const TOKEN_BYTES_MAX: usize = 4096;

/// E-mail addresses (RFC 5321's limit on a path).
pub const EMAIL_BYTES_MAX: usize = 254;

/// Passwords: long enough for any passphrase, short enough that hashing a
/// hostile one costs nothing extra.
pub const PASSWORD_BYTES_MAX: usize = 256;

/// A search text.
pub const SEARCH_TEXT_BYTES_MAX: usize = 256;

pub const VARIANTS_PER_PRODUCT_MAX: usize = 100;
pub const OPTIONS_PER_PRODUCT_MAX: usize = 8;
pub const VALUES_PER_OPTION_MAX: usize = 64;
pub const ATTRIBUTES_MAX: usize = 32;
pub const IMAGES_PER_PRODUCT_MAX: usize = 16;
pub const CATEGORIES_PER_PRODUCT_MAX: usize = 8;

/// A page of products, search hits or orders.
pub const PAGE_LIMIT_MAX: u16 = 100;
/// The page size when the client leaves `limit` at 0.
pub const PAGE_LIMIT_DEFAULT: u16 = 20;

pub const SUGGEST_LIMIT_MAX: u16 = 20;
pub const SUGGEST_LIMIT_DEFAULT: u16 = 8;

/// Lines in one cart; also bounds the lines of an order.
pub const CART_LINES_MAX: usize = 100;

/// Units of one SKU in one cart line.
pub const LINE_QUANTITY_MAX: u32 = 10_000;

/// Categories in a catalog list response.
pub const CATEGORIES_MAX: usize = 1024;

/// Saved addresses per account.
pub const ADDRESSES_MAX: usize = 32;

/// Cursors are opaque server tokens; this bounds what a client may echo back.
pub const CURSOR_BYTES_MAX: usize = 128;

/// A status message.
pub const MESSAGE_BYTES_MAX: usize = 1024;

// A framed request of the maximum size must fit the header's u32.
const _: () = assert!(RESPONSE_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(REQUEST_BYTES_MAX <= RESPONSE_BYTES_MAX);

/// Units of one SKU on hand or in one restock: far above any real stock, low
/// enough that sums over many SKUs and reservations cannot overflow an i64.
pub const STOCK_UNITS_MAX: i64 = 1_000_000_000;
