//! The server's bounds, each with the reason for its value. Exceeding one
//! gives the client a typed error or `Busy`, never a crash or unbounded
//! memory. Message sizes live in `souk_wire::limits`.

use std::time::Duration;

/// Concurrent request streams one connection may have open. QUIC flow control
/// enforces it: the client's next `open_bi` waits until a stream finishes, so
/// a connection can never hold more than this × `REQUEST_BYTES_MAX` of
/// request buffers. 256 lets one app pipeline a whole screen of requests.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;

/// Open connections per shard (the default of `--max-connections-per-shard`).
/// Beyond it new connections are refused at the QUIC level
/// (CONNECTION_REFUSED), before any handshake work. With the connection
/// receive window (`io::quic`) it bounds the receive buffers a shard can be
/// made to hold (10,000 × 256 KiB), while serving more phones than one core
/// keeps busy: most app connections are idle most of the time.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// A connection with no traffic for this long is closed. Phones that keep a
/// connection for push events send keep-alives (the SDK does every 10 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request frame must arrive whole within this time of its stream opening:
/// a slow or stalled sender must not hold a stream slot forever.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages waiting in one shard's inbox. A full inbox answers the caller
/// `Busy` instead of blocking its event loop: back-pressure, not queueing.
/// 4096 is a few milliseconds of work at full rate, so a burst fits but a
/// sustained overload is refused quickly.
pub const SHARD_INBOX_MAX: usize = 4096;

/// How long a cross-shard call may wait for its reply. An owner shard that is
/// alive answers in microseconds; this only matters if one is wedged.
pub const CROSS_SHARD_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the catalog owner asks a store several nodes share for the
/// catalog changes other nodes made: the lag of such a change.
pub const CATALOG_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How far back each of those looks beyond the last one: for node clocks
/// that disagree and changes whose write was still landing (a change row
/// carries its writer's clock, and a write may be retried after a 5 s
/// timeout). Re-reading the products of the last half minute each second
/// costs little: catalog changes are rare, and only newer ones publish.
pub const CATALOG_CHANGE_SKEW: Duration = Duration::from_secs(30);

/// The retry hint sent with `Busy`.
pub const BUSY_RETRY_AFTER_MS: u32 = 50;

/// How long a checkout key claimed on a shared store by an order that was
/// never stored counts as an attempt still running on another node. An
/// attempt reaches its insert within a few storage timeouts (5 s each), so
/// past this it never will, and a retry takes the key over.
pub const CHECKOUT_CLAIM_TIMEOUT: Duration = Duration::from_secs(30);

/// The retry hint when a checkout is in progress on another node.
pub const CHECKOUT_ELSEWHERE_RETRY_AFTER_MS: u32 = 1_000;

/// On SIGTERM, in-flight requests get this long to finish before
/// connections are closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// After connections are closed, how long to wait for the peers'
/// acknowledgements so that they learn the reason instead of timing out.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// A variant with this many units or fewer is shown as low stock.
pub const LOW_STOCK_UNITS: i64 = 5;

/// Kernel UDP buffer per shard socket: room for bursts of a few thousand
/// packets while the shard is busy.
pub const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Shards one server may run: shard ids travel in one byte of the QUIC
/// connection id.
pub const SHARDS_MAX: usize = 256;

/// Settled orders each shard remembers, to refuse a reservation that
/// arrives after its order was released. A duplicate can only be a message
/// delayed in a shard inbox (bounded by `CROSS_SHARD_TIMEOUT`), so the last
/// 100,000 settlements cover far more than that window at any sale rate.
pub const SETTLED_ORDERS_REMEMBERED: usize = 100_000;

/// Lines in one cart: a cart is a shopping list, not a bulk order; the
/// bound keeps a checkout within one request's work.
pub const CART_LINES_MAX: usize = 100;

/// Units of one SKU in one cart line.
pub const CART_LINE_UNITS_MAX: u32 = 999;

/// Carts one shard holds in memory. Past it, the cart idle longest is
/// dropped, so a flood of guest devices cannot exhaust memory.
pub const CARTS_PER_SHARD_MAX: usize = 200_000;

/// Orders per page of order history when the client asks for none.
pub const ORDER_PAGE_DEFAULT: usize = 20;

/// How often each shard looks for reservations that have lapsed.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// A release or commit for a SKU owner that answers `Busy` is retried this
/// many times (with `SETTLE_RETRY_DELAY` between) before it is left to the
/// next restart's rebuild, which settles it from the order record.
pub const SETTLE_ATTEMPTS: u32 = 100;
pub const SETTLE_RETRY_DELAY: Duration = Duration::from_millis(20);

/// Lifetime of an access token. Short, because only a "sign out
/// everywhere" revokes one before it expires; the refresh token renews it.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Lifetime of a refresh token.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Recent "sign out everywhere" cutoffs one shard keeps in memory (each is
/// needed for one access-token lifetime); past it the oldest is dropped.
/// Bounded by accounts, each of which signs out everywhere once per entry.
pub const SIGN_OUTS_MAX: usize = 100_000;

/// Tries at telling a busy shard of a sign-out everywhere (with
/// `SETTLE_RETRY_DELAY` between); its durable cutoff holds regardless.
pub const SIGN_OUT_ATTEMPTS: u32 = 5;

/// Password length bounds: long enough to matter, short enough that
/// hashing one is bounded work.
pub const PASSWORD_CHARS_MIN: usize = 8;
pub const PASSWORD_BYTES_MAX: usize = 256;

/// How long a checkout's idempotency key returns its order: a day, as
/// payment APIs keep theirs, is far longer than any client retries.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How often an owner shard publishes its SKUs' changed stock statuses
/// (in stock, low, sold out) for listings: what a browse page's status may
/// lag a counter by, plus the reply cache's TTL when no change flushes it.
pub const STOCK_BOARD_INTERVAL: Duration = Duration::from_millis(100);

/// How often the stock snapshot takes in the orders that have left the
/// replay window. Starts read every order after the snapshot, so this
/// bounds what a start reads beyond the window to this long's orders.
pub const STOCK_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);

/// How far behind now the stock snapshot stays: a start replays at least
/// this long's orders, which rebuild the idempotency keys (kept for
/// `IDEMPOTENCY_WINDOW`) and the purchase-limit counts.
pub const STOCK_SNAPSHOT_LAG: Duration = IDEMPOTENCY_WINDOW;

/// Orders one snapshot step folds: each step holds the commit thread for
/// about as long as decoding this many orders takes (milliseconds).
pub const STOCK_SNAPSHOT_STEP: usize = 4096;

/// Idempotency keys one shard remembers within the window; at about 64
/// bytes each, a million is 64 MiB at most.
pub const PLACED_KEYS_MAX: usize = 1_000_000;

/// Catalog replies one shard caches. Replies are a few KiB at most (a
/// browse page of 100 summaries), so 20,000 bound the cache near 50 MiB
/// even if every entry were a full page.
pub const CACHED_REPLIES_MAX: usize = 20_000;

/// A payment gateway that does not answer is asked again this many times,
/// `PAYMENT_RETRY_DELAY` apart (and never after the order's reservation
/// lapsed): long enough to ride out a short outage, bounded so that a
/// shard never holds a payment task per order for longer than its
/// reservation.
pub const PAYMENT_ATTEMPTS: u16 = 20;
pub const PAYMENT_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Interrupted payments a shard resumes at once after a start.
pub const PAYMENTS_RESUMED_AT_ONCE: usize = 64;

/// How often each shard writes its changed carts to the store. Carts are
/// written behind, in one write per interval, so that browsing and
/// filling carts add no durable write per request; a crash loses at most
/// this much of cart edits (never an order).
pub const CART_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Failed logins allowed per account, and per source address, within
/// `LOGIN_FAILURE_WINDOW`; beyond them logins are refused with
/// `LimitExceeded` before any password is hashed. Five lets a person
/// mistype; an address gets more because many people share one (NAT,
/// offices, carrier gateways).
pub const LOGIN_FAILURES_PER_ACCOUNT: usize = 5;
pub const LOGIN_FAILURES_PER_ADDRESS: usize = 50;
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Keys one shard tracks failed logins for; past it the stalest is dropped.
pub const THROTTLED_KEYS_MAX: usize = 100_000;

/// Customers one shard keeps rate buckets for; past it, buckets that have
/// refilled are dropped (they hold nothing), then all.
pub const RATE_LIMITED_KEYS_MAX: usize = 200_000;

/// Connections to Redis (`--redis`) per server: its calls are small and
/// pipelined, so a few connections carry every shard's.
pub const REDIS_CONNECTIONS: usize = 4;

/// Source addresses a shard tracks for its new-connection rate; past it
/// the addresses whose buckets refilled are forgotten, then all.
pub const GATED_ADDRESSES_MAX: usize = 100_000;

/// How long a client may take to send a request's headers; also how long
/// an idle keep-alive HTTP connection is kept.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (request line and headers) the bridge reads:
/// cookies and a bearer token fit with room to spare.
pub const HTTP_HEADER_BYTES_MAX: usize = 16 * 1024;

/// Concurrent requests on one HTTP/2 connection, as browsers default to.
pub const HTTP2_STREAMS_MAX: u32 = 100;

/// Catalog replies over HTTP: a CDN or browser may reuse one for a second
/// (as long as a shard's own reply cache keeps one) and serve it stale
/// for a few more while it revalidates. Product details carry live stock,
/// so their age stays short; checkout reserves against the live counter
/// whatever a cached page said.
pub const HTTP_CATALOG_CACHE_CONTROL: &str = "public, max-age=1, stale-while-revalidate=5";

/// Connections the kernel queues per shard before the bridge accepts them.
pub const HTTP_ACCEPT_BACKLOG: i32 = 1024;

/// Where several nodes share stock (escrow): how long a node's lease runs
/// from each renewal, and how often it renews.
pub const ESCROW_LEASE: Duration = Duration::from_secs(15);
pub const ESCROW_RENEW_EVERY: Duration = Duration::from_secs(3);
/// A node stops reserving this long before its lease ends (renewals have
/// failed for a while: it may be cut off from the cluster), and stops
/// storing orders this long before, so that no order lands after another
/// node could have fenced it.
pub const ESCROW_SELL_MARGIN: Duration = Duration::from_secs(5);
pub const ESCROW_INSERT_MARGIN: Duration = Duration::from_secs(3);
/// How far past its lease a node is fenced and its grants reclaimed: an
/// order that passed the insert margin may still be landing for two of the
/// driver's 5 s requests (its index batch, then its conditional insert),
/// and the rest is the clock skew between nodes souk tolerates (10 s).
pub const ESCROW_SKEW: Duration = Duration::from_secs(20);
/// A clean stop gives unsold units back for at most this long; the rest
/// return when the node's lease is reclaimed.
pub const ESCROW_LEAVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often each node looks for dead nodes to reclaim, and each owner
/// shard for idle units to give back and pools to read again.
pub const ESCROW_RECLAIM_EVERY: Duration = Duration::from_secs(5);
pub const ESCROW_BALANCE_EVERY: Duration = Duration::from_secs(1);
/// How long a reservation waits for another's take from the same pool
/// before it answers `Busy` (well inside a client's request timeout).
pub const ESCROW_TAKE_WAIT: Duration = Duration::from_secs(3);
/// How often each owner shard reads the pools again: units other nodes
/// gave back are seen (and sold) here within this.
pub const ESCROW_POOLS_EVERY: Duration = Duration::from_secs(2);
/// Units taken from a pool at once, at least and at most.
pub const ESCROW_CHUNK_MIN: i64 = 4;
pub const ESCROW_CHUNK_MAX: i64 = 1024;
/// A SKU unsold this long gives its units back when the pool is dry, and
/// all but a minimum chunk after the longer wait.
pub const ESCROW_IDLE: Duration = Duration::from_secs(2);
pub const ESCROW_IDLE_SURPLUS: Duration = Duration::from_secs(60);
