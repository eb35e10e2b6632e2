//! The connection, the retry loop and the typed calls.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as SyncMutex};

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{
    Connection, ConnectionError, Endpoint, TransportConfig, TransportErrorCode, WriteError,
};
use rand::RngExt;
use souk_wire::api::{
    Address, AddressId, AdminRestock, ApiError, BrowseCategory, CartLineChange, CartView, Category,
    Checkout, Cursor, DeviceId, ErrorStatus, Hello, HelloReply, IdempotencyKey, Identity,
    ListOrders, Login, Operation, Order, OrderId, OrderPage, PROTOCOL_VERSION, PaymentView,
    Product, ProductId, ProductPage, Profile, Register, Request, RequestBody, Response,
    ResponseBody, RestockMode, SessionGrant, Sku, StockLevel,
};
use souk_wire::codec::{self, Encoder};
use souk_wire::{frame, limits};
use tokio::sync::Mutex;
use tracing::debug;

use crate::{ClientConfig, ClientError, tls};

/// How long to wait before reconnecting to a server that refused a
/// connection for being full.
const REFUSED_RETRY_AFTER_MS: u32 = 200;

thread_local! {
    /// One encoder per thread: encoding reuses its buffer instead of
    /// allocating a builder per request.
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new());
}

/// A souk client over one QUIC connection. Cheap to clone; all clones share
/// the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.config.server)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClientConfig,
    endpoint: Endpoint,
    quic: quinn::ClientConfig,
    /// The live connection. A `tokio` mutex: while one task reconnects, the
    /// others wait for that connection instead of each opening their own.
    connection: Mutex<Option<Connection>>,
    /// The access token bound with `authenticate`, re-bound on reconnect.
    access_token: SyncMutex<Option<String>>,
    /// The newest grant from register, login or refresh: its refresh token
    /// renews the session when the access token expires. Apps that keep
    /// the refresh token across restarts watch it (`session_updates`),
    /// since each renewal rotates it.
    session: tokio::sync::watch::Sender<Option<SessionGrant>>,
    /// Held while renewing, so that calls failing together renew once.
    renewing: Mutex<()>,
    /// Bumped whenever the held session changes: a call that failed
    /// compares it with the value when it was sent to tell whether another
    /// call has renewed meanwhile, without copying the token per call.
    session_changes: std::sync::atomic::AtomicU64,
}

/// Why one try of a request failed.
enum Failure {
    /// The server refused the connection: it is at its connection limit.
    Refused,
    Transport(String),
    Timeout,
    Malformed(String),
    Config(String),
}

impl Failure {
    fn transport(error: impl std::fmt::Display) -> Failure {
        Failure::Transport(error.to_string())
    }
}

impl From<Failure> for ClientError {
    fn from(failure: Failure) -> ClientError {
        match failure {
            Failure::Refused => ClientError::Api(ApiError::busy(
                REFUSED_RETRY_AFTER_MS,
                "the server refused the connection: it is at its connection limit",
            )),
            Failure::Transport(reason) => ClientError::Transport(reason),
            Failure::Timeout => ClientError::Timeout,
            Failure::Malformed(reason) => ClientError::UnexpectedReply(reason),
            Failure::Config(reason) => ClientError::Config(reason),
        }
    }
}

/// The quinn client configuration a `Client` uses: its trust, ALPN and
/// keep-alive. Public for tools that speak to souk below the typed API
/// (benchmarks, protocol tests).
pub fn quic_config(config: &ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
    let crypto = QuicClientConfig::try_from(tls::rustls_config(&config.trust)?)
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive));
    quic.transport_config(Arc::new(transport));
    Ok(quic)
}

/// Notes the end of a reply stream whose last bytes were just read, if the
/// FIN has already arrived (it travels with the reply), without waiting for
/// it: quinn answers a stream dropped before its end with STOP_SENDING, one
/// more packet per request.
fn take_fin(recv: &mut quinn::RecvStream) {
    let mut byte = [0u8; 1];
    let read = std::pin::pin!(recv.read(&mut byte));
    let _ = read.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

/// A fresh random idempotency key.
pub fn new_idempotency_key() -> IdempotencyKey {
    IdempotencyKey(rand::rng().random())
}

fn encode(request: &Request) -> Result<Vec<u8>, ClientError> {
    ENCODER.with(|encoder| {
        let mut encoder = encoder.borrow_mut();
        encoder
            .request(request)
            .map(<[u8]>::to_vec)
            .map_err(ClientError::Encode)
    })
}

impl Client {
    /// Connects and says hello; fails if the server cannot be reached,
    /// its certificate is not trusted, or it speaks another protocol.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let local: SocketAddr = if config.server.is_ipv6() {
            "[::]:0".parse().expect("valid address")
        } else {
            "0.0.0.0:0".parse().expect("valid address")
        };
        let endpoint =
            Endpoint::client(local).map_err(|e| ClientError::Transport(e.to_string()))?;
        let quic = quic_config(&config)?;
        let client = Client {
            inner: Arc::new(Inner {
                config,
                endpoint,
                quic,
                connection: Mutex::new(None),
                access_token: SyncMutex::new(None),
                session: tokio::sync::watch::Sender::new(None),
                renewing: Mutex::new(()),
                session_changes: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        client.hello().await?;
        Ok(client)
    }

    /// QUIC statistics of the current connection (round-trip time, packets
    /// and frames each way, losses) for an app's diagnostics; `None` while
    /// no connection is open.
    pub async fn transport_stats(&self) -> Option<quinn::ConnectionStats> {
        let slot = self.inner.connection.lock().await;
        slot.as_ref()
            .filter(|connection| connection.close_reason().is_none())
            .map(Connection::stats)
    }

    /// The live connection, reconnecting (and re-authenticating) if needed.
    async fn connection(&self) -> Result<Connection, Failure> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let config = &self.inner.config;
        let connecting = self
            .inner
            .endpoint
            .connect_with(self.inner.quic.clone(), config.server, &config.server_name)
            .map_err(|e| Failure::Config(e.to_string()))?;
        let connection = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(ConnectionError::ConnectionClosed(close)))
                if close.error_code == TransportErrorCode::CONNECTION_REFUSED =>
            {
                return Err(Failure::Refused);
            }
            Ok(Err(error)) => return Err(Failure::transport(error)),
            Ok(Ok(connection)) => connection,
        };
        debug!(server = %config.server, "connected");
        let token = self
            .inner
            .access_token
            .lock()
            .expect("not poisoned")
            .clone();
        if let Some(access_token) = token {
            let request = Request {
                idempotency_key: None,
                body: RequestBody::Authenticate { access_token },
            };
            let frame = encode(&request).map_err(|e| Failure::Config(e.to_string()))?;
            let reply = self.exchange(&connection, &frame).await?;
            if let Ok(Err(error)) = codec::decode_response(&reply) {
                debug!(%error, "identity could not be re-bound after reconnecting");
            }
        }
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// One request on its own stream: write the frame, read the reply frame.
    async fn exchange(&self, connection: &Connection, request: &[u8]) -> Result<Vec<u8>, Failure> {
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(Failure::transport)?;
            match send.write_all(request).await {
                Ok(()) => {
                    let _ = send.finish();
                }
                // The server refused the frame and stopped reading; its
                // reply says why.
                Err(WriteError::Stopped(_)) => {}
                Err(error) => return Err(Failure::transport(error)),
            }
            let mut header = [0u8; limits::FRAME_HEADER_BYTES];
            recv.read_exact(&mut header)
                .await
                .map_err(Failure::transport)?;
            let len = frame::payload_len(header, limits::RESPONSE_BYTES_MAX)
                .map_err(|e| Failure::Malformed(e.to_string()))?;
            let mut reply = vec![0u8; limits::FRAME_HEADER_BYTES + len];
            reply[..limits::FRAME_HEADER_BYTES].copy_from_slice(&header);
            recv.read_exact(&mut reply[limits::FRAME_HEADER_BYTES..])
                .await
                .map_err(Failure::transport)?;
            take_fin(&mut recv);
            Ok(reply)
        };
        match tokio::time::timeout(self.inner.config.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends a framed request, retrying per the policy, and returns the
    /// final reply both decoded and as the bytes the server sent.
    async fn send(&self, request: &[u8]) -> Result<(Response, Vec<u8>), ClientError> {
        let policy = self.inner.config.retry;
        let mut retry_hint_ms = 0;
        let mut last_error = ClientError::Timeout;
        for attempt in 1..=policy.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(policy.backoff(attempt - 1, retry_hint_ms)).await;
            }
            let reply = match self.connection().await {
                Ok(connection) => self.exchange(&connection, request).await,
                Err(failure) => Err(failure),
            };
            let bytes = match reply {
                Ok(bytes) => bytes,
                Err(Failure::Config(reason)) => return Err(ClientError::Config(reason)),
                Err(failure) => {
                    retry_hint_ms = match failure {
                        Failure::Refused => REFUSED_RETRY_AFTER_MS,
                        _ => 0,
                    };
                    last_error = failure.into();
                    continue;
                }
            };
            match codec::decode_response(&bytes) {
                Ok(Err(error)) if error.status.is_retryable() && attempt < policy.attempts => {
                    retry_hint_ms = error.retry_after_ms;
                    last_error = ClientError::Api(error);
                }
                Ok(response) => return Ok((response, bytes)),
                Err(error) => return Err(ClientError::Decode(error)),
            }
        }
        Err(last_error)
    }

    /// Calls any operation. Mutating operations get a fresh idempotency key,
    /// which every retry of this call reuses.
    pub async fn call(&self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let key = body.operation().is_mutating().then(new_idempotency_key);
        self.call_with_key(body, key).await
    }

    /// Calls with a key the caller chose, for retries that span calls (for
    /// example after an app restart).
    pub async fn call_with_key(
        &self,
        body: RequestBody,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<ResponseBody, ClientError> {
        let request = Request {
            idempotency_key,
            body,
        };
        let operation = request.body.operation();
        let frame = encode(&request)?;
        let sent_with = self.session_change();
        let (response, _) = self.send(&frame).await?;
        match response {
            Err(error) if error.status == ErrorStatus::Unauthenticated && renews(operation) => {
                // The access token expired (or the server forgot the
                // connection): renew with the refresh token on this
                // connection and try once more, with the same key.
                if !self.renew(Some(sent_with)).await? {
                    return Err(ClientError::Api(error));
                }
                let (response, _) = self.send(&frame).await?;
                response.map_err(ClientError::Api)
            }
            response => response.map_err(ClientError::Api),
        }
    }

    fn current_access_token(&self) -> Option<String> {
        self.inner
            .access_token
            .lock()
            .expect("not poisoned")
            .clone()
    }

    fn session_change(&self) -> u64 {
        self.inner
            .session_changes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Trades the held refresh token for new tokens, unless the session
    /// changed since `seen` (another call renewed it). Whether there is a
    /// fresh access token to try again with.
    async fn renew(&self, seen: Option<u64>) -> Result<bool, ClientError> {
        let _renewing = self.inner.renewing.lock().await;
        if seen.is_some_and(|seen| seen != self.session_change()) {
            return Ok(true);
        }
        let Some(refresh_token) = self
            .inner
            .session
            .borrow()
            .as_ref()
            .map(|grant| grant.refresh_token.clone())
        else {
            return Ok(false);
        };
        debug!("access token refused; renewing the session");
        // Sent below `call`, which renews by calling this.
        let request = Request {
            idempotency_key: None,
            body: RequestBody::Refresh { refresh_token },
        };
        let (response, _) = self.send(&encode(&request)?).await?;
        match response {
            Ok(body) => self.grant(body).map(|_| true),
            Err(error) if error.status == ErrorStatus::Unauthenticated => {
                // The refresh token is spent or revoked: only signing in
                // again helps, so stop presenting it.
                self.forget_session();
                Ok(false)
            }
            Err(error) => Err(ClientError::Api(error)),
        }
    }

    fn forget_session(&self) {
        *self.inner.access_token.lock().expect("not poisoned") = None;
        self.inner.session.send_replace(None);
        self.session_changed();
    }

    fn session_changed(&self) {
        self.inner
            .session_changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The newest grant, now and after each renewal: an app that keeps its
    /// refresh token across restarts stores each one it sees here, since a
    /// renewal rotates it and the old one stops working.
    pub fn session_updates(&self) -> tokio::sync::watch::Receiver<Option<SessionGrant>> {
        self.inner.session.subscribe()
    }

    /// Resumes a session saved by an earlier run: binds its access token
    /// if it is still good, and renews with its refresh token when it is
    /// not (or when it later expires).
    pub async fn resume(&self, grant: SessionGrant) -> Result<Identity, ClientError> {
        let access_token = grant.access_token.clone();
        self.inner.session.send_replace(Some(grant));
        match self.authenticate(&access_token).await {
            Err(ClientError::Api(error)) if error.status == ErrorStatus::Unauthenticated => {
                if !self.renew(None).await? {
                    return Err(ClientError::Api(error));
                }
                let token = self.current_access_token().unwrap_or_default();
                self.authenticate(&token).await
            }
            result => result,
        }
    }

    /// Sends a request that is already a frame (length header and FlatBuffers
    /// `Request`) and returns the reply frame: for bindings in other
    /// languages. The request is verified first, so a bad buffer is a typed
    /// error here rather than at the server.
    pub async fn call_frame(&self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        codec::decode_request(request).map_err(ClientError::InvalidRequest)?;
        let (_, bytes) = self.send(request).await?;
        Ok(bytes)
    }

    // -- Typed calls --------------------------------------------------------

    pub async fn hello(&self) -> Result<HelloReply, ClientError> {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: Some(self.inner.config.client_name.clone()),
            client_version: Some(env!("CARGO_PKG_VERSION").into()),
        };
        match self.call(RequestBody::Hello(hello)).await? {
            ResponseBody::HelloReply(reply) => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Binds an identity to the connection; later calls carry none. The
    /// client re-binds it by itself after a reconnect.
    pub async fn authenticate(&self, access_token: &str) -> Result<Identity, ClientError> {
        let body = RequestBody::Authenticate {
            access_token: access_token.to_owned(),
        };
        match self.call(body).await? {
            ResponseBody::Identity(identity) => {
                *self.inner.access_token.lock().expect("not poisoned") = Some(access_token.into());
                self.session_changed();
                Ok(identity)
            }
            other => Err(unexpected(other)),
        }
    }

    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call(RequestBody::Logout { all_devices: false })
            .await?;
        self.forget_session();
        Ok(())
    }

    /// Signs the user out on every device ("this account was used
    /// somewhere I do not know"): every refresh and access token issued so
    /// far stops working, connections signed in as the user lose their
    /// identity, and this client forgets its session.
    pub async fn logout_everywhere(&self) -> Result<(), ClientError> {
        self.call(RequestBody::Logout { all_devices: true }).await?;
        self.forget_session();
        Ok(())
    }

    pub async fn list_categories(&self) -> Result<Vec<Category>, ClientError> {
        match self.call(RequestBody::ListCategories).await? {
            ResponseBody::CategoryList(categories) => Ok(categories),
            other => Err(unexpected(other)),
        }
    }

    pub async fn browse(&self, query: BrowseCategory) -> Result<ProductPage, ClientError> {
        match self.call(RequestBody::BrowseCategory(query)).await? {
            ResponseBody::ProductPage(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_product(&self, product_id: &ProductId) -> Result<Product, ClientError> {
        let body = RequestBody::GetProduct {
            product_id: product_id.clone(),
        };
        match self.call(body).await? {
            ResponseBody::ProductDetail(product) => Ok(*product),
            other => Err(unexpected(other)),
        }
    }

    /// Admin: adds to (`RestockMode::Add`) or sets the stock of a SKU.
    pub async fn admin_restock(
        &self,
        sku: &Sku,
        quantity: i64,
        mode: RestockMode,
    ) -> Result<StockLevel, ClientError> {
        let body = RequestBody::AdminRestock(AdminRestock {
            sku: sku.clone(),
            quantity,
            mode,
        });
        match self.call(body).await? {
            ResponseBody::StockLevel(level) => Ok(level),
            other => Err(unexpected(other)),
        }
    }

    fn remember(&self, grant: &SessionGrant) {
        *self.inner.access_token.lock().expect("not poisoned") = Some(grant.access_token.clone());
        self.inner.session.send_replace(Some(grant.clone()));
        self.session_changed();
    }

    fn grant(&self, body: ResponseBody) -> Result<SessionGrant, ClientError> {
        match body {
            ResponseBody::SessionGrant(grant) => {
                self.remember(&grant);
                Ok(grant)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Creates a customer account and signs this connection in as it.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<SessionGrant, ClientError> {
        let body = RequestBody::Register(Register {
            email: email.into(),
            password: password.into(),
            name: name.map(Into::into),
        });
        let reply = self.call(body).await?;
        self.grant(reply)
    }

    /// Signs in; the guest cart of `device_id`, if given, joins the user's.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        device_id: Option<DeviceId>,
    ) -> Result<SessionGrant, ClientError> {
        let body = RequestBody::Login(Login {
            email: email.into(),
            password: password.into(),
            device_id,
        });
        let reply = self.call(body).await?;
        self.grant(reply)
    }

    /// Trades a refresh token for new tokens (the old one stops working).
    pub async fn refresh(&self, refresh_token: &str) -> Result<SessionGrant, ClientError> {
        let body = RequestBody::Refresh {
            refresh_token: refresh_token.into(),
        };
        let reply = self.call(body).await?;
        self.grant(reply)
    }

    fn cart(body: ResponseBody) -> Result<CartView, ClientError> {
        match body {
            ResponseBody::CartView(cart) => Ok(cart),
            other => Err(unexpected(other)),
        }
    }

    /// The signed-in user's cart, or the guest cart of `device_id`.
    pub async fn get_cart(&self, device_id: Option<DeviceId>) -> Result<CartView, ClientError> {
        Self::cart(self.call(RequestBody::GetCart { device_id }).await?)
    }

    pub async fn add_to_cart(
        &self,
        device_id: Option<DeviceId>,
        sku: &Sku,
        quantity: u32,
    ) -> Result<CartView, ClientError> {
        let change = cart_line(device_id, sku, quantity);
        Self::cart(self.call(RequestBody::AddToCart(change)).await?)
    }

    /// Sets a line's quantity; 0 removes the line.
    pub async fn update_cart_line(
        &self,
        device_id: Option<DeviceId>,
        sku: &Sku,
        quantity: u32,
    ) -> Result<CartView, ClientError> {
        let change = cart_line(device_id, sku, quantity);
        Self::cart(self.call(RequestBody::UpdateCartLine(change)).await?)
    }

    pub async fn remove_cart_line(
        &self,
        device_id: Option<DeviceId>,
        sku: &Sku,
    ) -> Result<CartView, ClientError> {
        let body = RequestBody::RemoveCartLine {
            device_id,
            sku: sku.clone(),
        };
        Self::cart(self.call(body).await?)
    }

    pub async fn merge_cart(&self, guest_device_id: DeviceId) -> Result<CartView, ClientError> {
        Self::cart(
            self.call(RequestBody::MergeCart { guest_device_id })
                .await?,
        )
    }

    fn order(body: ResponseBody) -> Result<Order, ClientError> {
        match body {
            ResponseBody::OrderView(order) => Ok(*order),
            other => Err(unexpected(other)),
        }
    }

    /// Places an order from the cart. Keep `key` until the outcome is
    /// known: calling again with it (after a timeout, a crash, an app
    /// restart) returns the same order and never orders twice.
    pub async fn checkout(
        &self,
        checkout: Checkout,
        key: IdempotencyKey,
    ) -> Result<Order, ClientError> {
        let reply = self
            .call_with_key(RequestBody::Checkout(checkout), Some(key))
            .await?;
        Self::order(reply)
    }

    pub async fn get_order(&self, order_id: OrderId) -> Result<Order, ClientError> {
        Self::order(self.call(RequestBody::GetOrder { order_id }).await?)
    }

    /// The signed-in user's orders, newest first.
    pub async fn list_orders(
        &self,
        cursor: Option<Cursor>,
        limit: u16,
    ) -> Result<OrderPage, ClientError> {
        let body = RequestBody::ListOrders(ListOrders { cursor, limit });
        match self.call(body).await? {
            ResponseBody::OrderPage(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels an order that is still awaiting payment.
    pub async fn cancel_order(&self, order_id: OrderId) -> Result<Order, ClientError> {
        Self::order(self.call(RequestBody::CancelOrder { order_id }).await?)
    }

    pub async fn payment_status(&self, order_id: OrderId) -> Result<PaymentView, ClientError> {
        match self
            .call(RequestBody::GetPaymentStatus { order_id })
            .await?
        {
            ResponseBody::PaymentView(view) => Ok(view),
            other => Err(unexpected(other)),
        }
    }

    pub async fn profile(&self) -> Result<Profile, ClientError> {
        match self.call(RequestBody::GetProfile).await? {
            ResponseBody::Profile(profile) => Ok(profile),
            other => Err(unexpected(other)),
        }
    }

    pub async fn update_profile(&self, name: Option<String>) -> Result<Profile, ClientError> {
        match self.call(RequestBody::UpdateProfile { name }).await? {
            ResponseBody::Profile(profile) => Ok(profile),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_addresses(&self) -> Result<Vec<Address>, ClientError> {
        match self.call(RequestBody::ListAddresses).await? {
            ResponseBody::AddressList(addresses) => Ok(addresses),
            other => Err(unexpected(other)),
        }
    }

    /// Creates an address (id 0) or replaces one; returns it with its id.
    pub async fn upsert_address(&self, address: Address) -> Result<Address, ClientError> {
        match self.call(RequestBody::UpsertAddress(address)).await? {
            ResponseBody::Address(address) => Ok(address),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_address(&self, address_id: AddressId) -> Result<(), ClientError> {
        self.call(RequestBody::DeleteAddress { address_id }).await?;
        Ok(())
    }

    /// Closes the current connection but not the client: the next call
    /// connects again and re-binds the signed-in identity. For an app going
    /// to the background, which should not hold a connection open; calls in
    /// flight fail over to the new connection like any lost connection.
    pub async fn disconnect(&self) {
        if let Some(connection) = self.inner.connection.lock().await.take() {
            connection.close(0u32.into(), b"client disconnected");
        }
    }

    /// Closes the connection; in-flight calls fail.
    pub fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"client closed");
    }
}

fn cart_line(device_id: Option<DeviceId>, sku: &Sku, quantity: u32) -> CartLineChange {
    CartLineChange {
        device_id,
        sku: sku.clone(),
        quantity,
    }
}

/// Whether an `Unauthenticated` reply to `operation` means the session
/// needs renewing. Not for the calls that sign in or renew themselves,
/// where it means wrong credentials.
fn renews(operation: Operation) -> bool {
    !matches!(
        operation,
        Operation::Hello
            | Operation::Authenticate
            | Operation::Refresh
            | Operation::Logout
            | Operation::Register
            | Operation::Login
    )
}

fn unexpected(body: ResponseBody) -> ClientError {
    let name = format!("{body:?}");
    ClientError::UnexpectedReply(name.chars().take(80).collect())
}
