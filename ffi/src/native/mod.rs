//! The native SDKs' interface: Kotlin, Swift and Python bindings generated
//! with uniffi from this module.
//!
//! A thin layer over `souk_client::Client`: every method is the Rust SDK's
//! call of the same name, run on the SDK's runtime, with its errors mapped
//! to `SoukError`. No commerce logic lives here; retries with the same
//! idempotency key, reconnects, re-binding and token renewal are the Rust
//! SDK's. What this layer adds is only what a foreign app needs from it:
//! a runtime it does not have to provide, options as one record, and the
//! session handed to the app's own `SessionStore` whenever it changes.
//!
//! A call is cancellable where the language's binding supports it: a
//! Kotlin coroutine or an asyncio task cancelled drops the call here,
//! which aborts its task; the request stops being waited for, but one
//! already sent may still be carried out by the server, so a cancelled
//! checkout must be retried with its key to learn its outcome. uniffi's
//! Swift code cannot cancel yet: a cancelled Swift task's call runs to its
//! end.

mod error;
mod session;
mod types;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use souk_client::{Client, ClientConfig, ClientError, RetryPolicy, Trust};
use souk_wire::api::{
    Address, AddressId, BrowseCategory, CartView, Category, Checkout, Cursor, DeviceId, HelloReply,
    IdempotencyKey, Identity, Order, OrderId, OrderPage, PaymentView, Product, ProductId,
    ProductPage, Profile, RestockMode, SessionGrant, Sku, StockLevel,
};
use tokio::task::JoinHandle;

pub use error::SoukError;
pub use session::SessionStore;
use session::Sessions;

/// Worker threads of the runtime that drives every client in the process.
/// QUIC and the calls' bookkeeping need little CPU; two threads keep a
/// slow callback into the app from stalling the rest.
const RUNTIME_THREADS: usize = 2;

/// The tokio runtime the bindings' calls run on. One per process, made on
/// first use: the foreign languages have their own event loops, which
/// cannot drive quinn's sockets and timers, and a runtime per client would
/// have to be shut down from outside any runtime, which a client dropped
/// inside a callback cannot promise.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("souk-sdk")
        .enable_all()
        .build()
        .expect("the SDK runtime starts")
});

/// A spawned call that is aborted when its caller stops waiting for it.
struct Call<T>(JoinHandle<T>);

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future` on the SDK's runtime and waits for it; dropping the
/// returned future (the foreign caller cancelled) aborts it.
async fn run<T: Send + 'static>(
    future: impl Future<Output = Result<T, SoukError>> + Send + 'static,
) -> Result<T, SoukError> {
    let mut call = Call(RUNTIME.spawn(future));
    match (&mut call.0).await {
        Ok(result) => result,
        Err(join) => Err(SoukError::Internal {
            detail: format!("the call failed inside the SDK: {join}"),
        }),
    }
}

/// How to reach and trust the server, and how patient to be.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientOptions {
    /// `host:port`: a literal IP address or a DNS name.
    pub server: String,
    /// The name the server's certificate carries; by default the host of
    /// `server` when it is a name, else "localhost".
    #[uniffi(default = None)]
    pub server_name: Option<String>,
    /// Certificate pinning: the SHA-256 of the server's certificate (64 hex
    /// digits; souk prints it at start). Exactly one of this and `ca_pem`.
    #[uniffi(default = None)]
    pub pinned_sha256: Option<String>,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
    /// Limit on one try of one call.
    #[uniffi(default = 5000)]
    pub request_timeout_ms: u32,
    #[uniffi(default = 5000)]
    pub connect_timeout_ms: u32,
    /// Tries in all for a call that fails in transit or gets `Busy`,
    /// `Unavailable` or `Internal`, each with the same idempotency key. 1
    /// means no retry.
    #[uniffi(default = 4)]
    pub retry_attempts: u32,
    /// Sent to the server for its logs, such as "shop-android/2.3".
    #[uniffi(default = None)]
    pub client_name: Option<String>,
}

/// A fresh random idempotency key. Keep it with a checkout until its
/// outcome is known: the same key never orders twice.
#[uniffi::export]
pub fn new_idempotency_key() -> IdempotencyKey {
    souk_client::new_idempotency_key()
}

/// A fresh random device id, which keys the guest cart before sign-in.
/// Make one at first launch and keep it.
#[uniffi::export]
pub fn new_device_id() -> DeviceId {
    let key = souk_client::new_idempotency_key();
    DeviceId::new(format!("{:032x}", key.0)).expect("hex digits make a valid id")
}

/// A connection to a souk server. Share one per app; calls run
/// concurrently, each on its own stream.
#[derive(uniffi::Object)]
pub struct SoukClient {
    client: Client,
    sessions: Option<Arc<Sessions>>,
}

impl Drop for SoukClient {
    fn drop(&mut self) {
        self.client.close();
    }
}

impl std::fmt::Debug for SoukClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoukClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// The Rust SDK's configuration for `options`, and the addresses to try
/// in turn (a name may resolve to several, IPv6 and IPv4).
async fn client_config(
    options: ClientOptions,
) -> Result<(ClientConfig, Vec<SocketAddr>), SoukError> {
    let config_error = |detail: &str| SoukError::Config {
        detail: detail.into(),
    };
    let trust = match (&options.pinned_sha256, &options.ca_pem) {
        (Some(hex_digits), None) => {
            let fingerprint = hex::decode(hex_digits.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| config_error("pinned_sha256 is not 64 hex digits"))?;
            Trust::Fingerprint(fingerprint)
        }
        (None, Some(pem)) => Trust::CaPem(pem.as_bytes().to_vec()),
        _ => return Err(config_error("give exactly one of pinned_sha256 and ca_pem")),
    };
    let connect_timeout = Duration::from_millis(options.connect_timeout_ms.into());
    let addresses = resolve(&options.server, connect_timeout).await?;
    let mut config = ClientConfig::new(addresses[0], trust);
    if let Some(name) = options.server_name.or_else(|| host_name(&options.server)) {
        config.server_name = name;
    }
    config.request_timeout = Duration::from_millis(options.request_timeout_ms.into());
    config.connect_timeout = connect_timeout;
    config.retry = RetryPolicy {
        attempts: options.retry_attempts.max(1),
        ..RetryPolicy::default()
    };
    if let Some(name) = options.client_name {
        config.client_name = name;
    }
    Ok((config, addresses))
}

/// The host of `host:port` when it is a name rather than an address: the
/// name the server's certificate must carry.
fn host_name(server: &str) -> Option<String> {
    let (host, _port) = server.rsplit_once(':')?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let is_address = literal.parse::<std::net::IpAddr>().is_ok();
    (!is_address && !host.is_empty()).then(|| host.to_owned())
}

/// The addresses of `server`, looked up within `timeout` when it is a name.
async fn resolve(server: &str, timeout: Duration) -> Result<Vec<SocketAddr>, SoukError> {
    if let Ok(address) = server.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    if server.rsplit_once(':').is_none() {
        return Err(SoukError::Config {
            detail: format!("server {server:?} is not host:port"),
        });
    }
    let found = match tokio::time::timeout(timeout, tokio::net::lookup_host(server)).await {
        Err(_) => return Err(SoukError::Timeout),
        Ok(Err(error)) => {
            return Err(SoukError::Transport {
                detail: format!("cannot resolve {server:?}: {error}"),
            });
        }
        Ok(Ok(found)) => found.collect::<Vec<_>>(),
    };
    if found.is_empty() {
        return Err(SoukError::Transport {
            detail: format!("{server:?} resolves to no address"),
        });
    }
    Ok(found)
}

/// Connects to the first of `addresses` that answers. The client keeps
/// that address for its reconnects; a server that moves needs a new client.
async fn connect_any(
    mut config: ClientConfig,
    addresses: Vec<SocketAddr>,
) -> Result<Client, SoukError> {
    let mut last_error = SoukError::Timeout;
    for address in addresses {
        config.server = address;
        match Client::connect(config.clone()).await {
            Ok(client) => return Ok(client),
            Err(error @ (ClientError::Transport(_) | ClientError::Timeout)) => {
                last_error = error.into();
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(last_error)
}

#[uniffi::export]
impl SoukClient {
    /// Connects and says hello. With a `session_store`, resumes the session
    /// it holds and saves every change from then on.
    #[uniffi::constructor(default(session_store = None))]
    pub async fn connect(
        options: ClientOptions,
        session_store: Option<Arc<dyn SessionStore>>,
    ) -> Result<Arc<SoukClient>, SoukError> {
        run(async move {
            let (config, addresses) = client_config(options).await?;
            let client = connect_any(config, addresses).await?;
            let sessions = match session_store {
                Some(store) => Some(Arc::new(Sessions::start(&client, store).await?)),
                None => None,
            };
            Ok(Arc::new(SoukClient { client, sessions }))
        })
        .await
    }

    /// The session held now, if signed in.
    pub fn session(&self) -> Option<SessionGrant> {
        self.client.session_updates().borrow().clone()
    }

    /// Closes the connection, keeping the client: the next call connects
    /// again and re-binds the session. For an app going to the background.
    pub async fn disconnect(&self) -> Result<(), SoukError> {
        let client = self.client.clone();
        run(async move {
            client.disconnect().await;
            Ok(())
        })
        .await
    }

    pub async fn hello(&self) -> Result<HelloReply, SoukError> {
        self.call(move |client| async move { client.hello().await })
            .await
    }

    /// Creates a customer account and signs in as it.
    #[uniffi::method(default(name = None))]
    pub async fn register(
        &self,
        email: String,
        password: String,
        name: Option<String>,
    ) -> Result<SessionGrant, SoukError> {
        self.call_saving(move |client| async move {
            client.register(&email, &password, name.as_deref()).await
        })
        .await
    }

    /// Signs in; the guest cart of `device_id`, if given, joins the user's.
    #[uniffi::method(default(device_id = None))]
    pub async fn login(
        &self,
        email: String,
        password: String,
        device_id: Option<DeviceId>,
    ) -> Result<SessionGrant, SoukError> {
        self.call_saving(
            move |client| async move { client.login(&email, &password, device_id).await },
        )
        .await
    }

    /// Resumes a session kept by the app itself (without a `SessionStore`).
    pub async fn resume(&self, session: SessionGrant) -> Result<Identity, SoukError> {
        self.call_saving(move |client| async move { client.resume(session).await })
            .await
    }

    pub async fn logout(&self) -> Result<(), SoukError> {
        self.call_saving(move |client| async move { client.logout().await })
            .await
    }

    /// Signs the user out on every device.
    pub async fn logout_everywhere(&self) -> Result<(), SoukError> {
        self.call_saving(move |client| async move { client.logout_everywhere().await })
            .await
    }

    pub async fn list_categories(&self) -> Result<Vec<Category>, SoukError> {
        self.call(move |client| async move { client.list_categories().await })
            .await
    }

    pub async fn browse(&self, query: BrowseCategory) -> Result<ProductPage, SoukError> {
        self.call(move |client| async move { client.browse(query).await })
            .await
    }

    pub async fn get_product(&self, product_id: ProductId) -> Result<Product, SoukError> {
        self.call(move |client| async move { client.get_product(&product_id).await })
            .await
    }

    /// The signed-in user's cart, or the guest cart of `device_id`.
    pub async fn get_cart(&self, device_id: Option<DeviceId>) -> Result<CartView, SoukError> {
        self.call(move |client| async move { client.get_cart(device_id).await })
            .await
    }

    pub async fn add_to_cart(
        &self,
        device_id: Option<DeviceId>,
        sku: Sku,
        quantity: u32,
    ) -> Result<CartView, SoukError> {
        self.call(move |client| async move { client.add_to_cart(device_id, &sku, quantity).await })
            .await
    }

    /// Sets a line's quantity; 0 removes the line.
    pub async fn update_cart_line(
        &self,
        device_id: Option<DeviceId>,
        sku: Sku,
        quantity: u32,
    ) -> Result<CartView, SoukError> {
        self.call(
            move |client| async move { client.update_cart_line(device_id, &sku, quantity).await },
        )
        .await
    }

    pub async fn remove_cart_line(
        &self,
        device_id: Option<DeviceId>,
        sku: Sku,
    ) -> Result<CartView, SoukError> {
        self.call(move |client| async move { client.remove_cart_line(device_id, &sku).await })
            .await
    }

    pub async fn merge_cart(&self, guest_device_id: DeviceId) -> Result<CartView, SoukError> {
        self.call(move |client| async move { client.merge_cart(guest_device_id).await })
            .await
    }

    /// Places an order. Keep `idempotency_key` until the outcome is known
    /// and call again with it after any failure, even after a restart: the
    /// same key returns the same order and never orders twice.
    pub async fn checkout(
        &self,
        checkout: Checkout,
        idempotency_key: IdempotencyKey,
    ) -> Result<Order, SoukError> {
        self.call(move |client| async move { client.checkout(checkout, idempotency_key).await })
            .await
    }

    pub async fn get_order(&self, order_id: OrderId) -> Result<Order, SoukError> {
        self.call(move |client| async move { client.get_order(order_id).await })
            .await
    }

    /// The signed-in user's orders, newest first.
    #[uniffi::method(default(cursor = None, limit = 20))]
    pub async fn list_orders(
        &self,
        cursor: Option<Cursor>,
        limit: u16,
    ) -> Result<OrderPage, SoukError> {
        self.call(move |client| async move { client.list_orders(cursor, limit).await })
            .await
    }

    /// Cancels an order that is still awaiting payment.
    pub async fn cancel_order(&self, order_id: OrderId) -> Result<Order, SoukError> {
        self.call(move |client| async move { client.cancel_order(order_id).await })
            .await
    }

    pub async fn payment_status(&self, order_id: OrderId) -> Result<PaymentView, SoukError> {
        self.call(move |client| async move { client.payment_status(order_id).await })
            .await
    }

    pub async fn profile(&self) -> Result<Profile, SoukError> {
        self.call(move |client| async move { client.profile().await })
            .await
    }

    pub async fn update_profile(&self, name: Option<String>) -> Result<Profile, SoukError> {
        self.call(move |client| async move { client.update_profile(name).await })
            .await
    }

    pub async fn list_addresses(&self) -> Result<Vec<Address>, SoukError> {
        self.call(move |client| async move { client.list_addresses().await })
            .await
    }

    /// Creates an address (id 0) or replaces one; returns it with its id.
    pub async fn upsert_address(&self, address: Address) -> Result<Address, SoukError> {
        self.call(move |client| async move { client.upsert_address(address).await })
            .await
    }

    pub async fn delete_address(&self, address_id: AddressId) -> Result<(), SoukError> {
        self.call(move |client| async move { client.delete_address(address_id).await })
            .await
    }

    /// Admin: adds to (`RestockMode.ADD`) or sets a SKU's stock.
    pub async fn admin_restock(
        &self,
        sku: Sku,
        quantity: i64,
        mode: RestockMode,
    ) -> Result<StockLevel, SoukError> {
        self.call(move |client| async move { client.admin_restock(&sku, quantity, mode).await })
            .await
    }
}

impl SoukClient {
    /// Runs one call of the Rust SDK on the runtime.
    async fn call<T, F>(
        &self,
        call: impl FnOnce(Client) -> F + Send + 'static,
    ) -> Result<T, SoukError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let client = self.client.clone();
        run(async move { call(client).await.map_err(SoukError::from) }).await
    }

    /// As `call`, for the calls that change the session: the app's store
    /// has the new session before the call returns.
    async fn call_saving<T, F>(
        &self,
        call: impl FnOnce(Client) -> F + Send + 'static,
    ) -> Result<T, SoukError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let client = self.client.clone();
        let sessions = self.sessions.clone();
        run(async move {
            let result = call(client).await.map_err(SoukError::from);
            if let Some(sessions) = sessions {
                sessions.settled().await;
            }
            result
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use souk_wire::api::{ApiError, ErrorStatus};

    fn options(pinned: Option<&str>, ca_pem: Option<&str>) -> ClientOptions {
        ClientOptions {
            server: "127.0.0.1:4433".into(),
            server_name: None,
            pinned_sha256: pinned.map(Into::into),
            ca_pem: ca_pem.map(Into::into),
            request_timeout_ms: 1500,
            connect_timeout_ms: 2500,
            retry_attempts: 0,
            client_name: Some("test-app/1".into()),
        }
    }

    fn config(options: ClientOptions) -> Result<ClientConfig, SoukError> {
        RUNTIME
            .block_on(client_config(options))
            .map(|(config, _)| config)
    }

    #[test]
    fn options_become_the_rust_sdks_config() {
        let pin = "ab".repeat(32);
        let config = config(options(Some(&pin), None)).unwrap();
        assert!(matches!(config.trust, Trust::Fingerprint(fp) if fp == [0xab; 32]));
        assert_eq!(config.server, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.connect_timeout, Duration::from_millis(2500));
        // Zero tries would never send: one is the least.
        assert_eq!(config.retry.attempts, 1);
        assert_eq!(config.client_name, "test-app/1");
    }

    #[test]
    fn a_host_name_is_resolved_to_every_address_and_named_to_tls() {
        let mut named = options(Some(&"00".repeat(32)), None);
        named.server = "localhost:4433".into();
        named.server_name = Some("shop.example".into());
        let (config, addresses) = RUNTIME.block_on(client_config(named)).unwrap();
        assert!(!addresses.is_empty());
        assert!(
            addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 4433)
        );
        assert_eq!(config.server, addresses[0]);
        // An explicit name wins over the host's.
        assert_eq!(config.server_name, "shop.example");
    }

    #[test]
    fn only_a_name_is_a_tls_name() {
        assert_eq!(
            host_name("shop.example:443").as_deref(),
            Some("shop.example")
        );
        assert_eq!(host_name("localhost:4433").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:4433"), None);
        assert_eq!(host_name("[::1]:4433"), None);
        assert_eq!(host_name(":4433"), None);
        assert_eq!(host_name("no-port"), None);
    }

    #[test]
    fn trust_must_be_exactly_one_good_pin_or_a_ca() {
        for (pinned, ca) in [
            (None, None),
            (Some("ab".repeat(32)), Some("-----BEGIN CERTIFICATE-----")),
            (Some("ab".repeat(31)), None),
            (Some("zz".repeat(32)), None),
        ] {
            let result = config(options(pinned.as_deref(), ca));
            assert!(
                matches!(result, Err(SoukError::Config { .. })),
                "{pinned:?} {ca:?}: {result:?}"
            );
        }
        let mut unparsable = options(Some(&"ab".repeat(32)), None);
        unparsable.server = "no port here".into();
        assert!(matches!(config(unparsable), Err(SoukError::Config { .. })));
    }

    #[test]
    fn device_ids_are_valid_and_fresh() {
        let (a, b) = (new_device_id(), new_device_id());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn every_server_status_keeps_its_kind_and_hint() {
        let busy = SoukError::from(ClientError::Api(ApiError::busy(250, "full")));
        assert_eq!(
            busy,
            SoukError::Busy {
                detail: "full".into(),
                retry_after_ms: 250
            }
        );
        let sold_out = ApiError::new(ErrorStatus::InsufficientStock, "2 left");
        assert!(matches!(
            SoukError::from(sold_out),
            SoukError::InsufficientStock { .. }
        ));
        assert_eq!(SoukError::from(ClientError::Timeout), SoukError::Timeout);
    }

    #[test]
    fn a_cancelled_call_stops_its_task() {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (dropped_tx, dropped_rx) = std::sync::mpsc::channel::<()>();
        struct Guard(std::sync::mpsc::Sender<()>);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let call = run(async move {
            let _guard = Guard(dropped_tx);
            started_tx.send(()).unwrap();
            std::future::pending::<Result<(), SoukError>>().await
        });
        // Polled once on a throwaway runtime, as a foreign executor would,
        // then dropped: the task on the SDK's runtime must go too.
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        local.block_on(async {
            let mut call = std::pin::pin!(call);
            assert!(poll_once(call.as_mut()).await.is_none());
            started_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("the call started");
        });
        dropped_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the call's task was dropped when its caller stopped waiting");
    }

    async fn poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
