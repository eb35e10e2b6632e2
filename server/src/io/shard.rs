//! One shard at run time: its thread, runtime, QUIC endpoint, connections,
//! request streams and inbox.
//!
//! The request path: `accept_connections` → `serve_connection` (one task per
//! connection) → `serve_stream` (one task per request stream: read a frame,
//! decode, `flow::dispatch`, encode, write). Handlers reach other shards
//! through `Ports::send` (the mesh); calls from other shards arrive in
//! `serve_inbox` and are answered by `flow::serve_call`.
//!
//! Shard state lives in `Rc<RefCell<_>>`: it is `!Send`, so the compiler
//! refuses any attempt to share it with another thread. A borrow is never
//! held across an `.await`.

use std::cell::{Cell, RefCell};
use std::net::UdpSocket;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use quinn::{Connection, Endpoint, EndpointConfig, Incoming, RecvStream, Runtime, SendStream};
use souk_storage::Store;
use souk_storage::redis::RedisState;
use souk_storage::store::{SharedLimits, StockEscrow, TokenStore};
use souk_wire::api::{ApiError, ErrorStatus, Response, UnixMillis};
use souk_wire::codec::{self, Encoder};
use souk_wire::{frame, limits as wire_limits};
use tokio::sync::{Barrier, watch};
use tokio::task::LocalSet;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::cache::ReplyCache;
use super::cid::CidKey;
use super::forward::{Datagram, ForwardQueue, ShardSocket};
use super::gate::{Admission, ConnectionGate};
use super::http::{self, HttpSettings};
use crate::clock::Clock;
use crate::domain::catalog::Catalog;
use crate::domain::flow;
use crate::domain::ports::{GatewayError, Ports, Task};
use crate::domain::{Session, ShardAnswer, ShardCall, ShardState};
use crate::limits;
use crate::shard::ShardId;
use crate::shard::ShardId as Owner;
use crate::shard::mesh::{CallError, Inbox, Mesh};
use crate::stats::{ShardStats, Stats};

pub type ShardMesh = Mesh<ShardCall, ShardAnswer>;
pub type ShardInbox = Inbox<ShardCall, ShardAnswer>;

/// QUIC application error codes souk closes streams and connections with.
pub mod error_code {
    use quinn::VarInt;
    /// The server is shutting down; reconnect and retry.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(1);
    /// The request frame was refused; the reply says why.
    pub const BAD_FRAME: VarInt = VarInt::from_u32(2);
}

/// Everything a shard thread starts with.
pub struct ShardSetup {
    pub state: ShardState,
    pub store: Arc<dyn Store>,
    /// Where refresh tokens live: the store, or Redis with `--redis`.
    pub sessions: Arc<dyn TokenStore>,
    /// With `--redis`: the limits that must hold across nodes.
    pub shared_limits: Option<Arc<RedisState>>,
    /// Where nodes share stock through their cluster: this node's escrow.
    pub escrow: Option<Arc<dyn StockEscrow>>,
    /// With `--redis`: every node's sign-outs everywhere.
    pub sign_outs: Option<souk_storage::redis::SignOutReceiver>,
    pub socket: UdpSocket,
    /// Names this shard in connection ids; shared by all shards.
    pub cid_key: CidKey,
    /// Every shard's queue of packets forwarded to it, and this shard's own.
    pub forward_peers: Arc<[tokio::sync::mpsc::Sender<Datagram>]>,
    pub forwarded: ForwardQueue,
    pub endpoint_config: EndpointConfig,
    pub server_config: quinn::ServerConfig,
    pub mesh: ShardMesh,
    pub inbox: ShardInbox,
    pub stats: Arc<Stats>,
    pub shutdown: watch::Receiver<bool>,
    /// Every shard waits here after draining, so that none stops answering
    /// its inbox while another still has requests that need it.
    pub drained: Arc<Barrier>,
    pub core: Option<core_affinity::CoreId>,
    pub connections_max: usize,
    /// New-connection rates per address, and when to ask for a Retry.
    pub gate: ConnectionGate,
    /// Publishes each new catalog to every shard.
    pub catalog_feed: Arc<watch::Sender<Arc<Catalog>>>,
    /// Lifetime of a cached catalog reply; zero turns the cache off.
    pub cache_ttl: std::time::Duration,
    pub clock: Clock,
    /// The HTTP bridge's listener (this shard's, on the shared port) and
    /// what it serves with; absent when the bridge is off.
    pub http: Option<(std::net::TcpListener, Arc<HttpSettings>)>,
    /// Told once the endpoint is listening, or why it could not be.
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
}

/// What one shard's tasks share. Lives on the shard's thread only.
pub(super) struct Shard {
    id: ShardId,
    state: RefCell<ShardState>,
    store: Arc<dyn Store>,
    sessions: Arc<dyn TokenStore>,
    shared_limits: Option<Arc<RedisState>>,
    escrow: Option<Arc<dyn StockEscrow>>,
    /// Payments and other work handlers leave running: a stop waits for
    /// them after the requests.
    background: TaskTracker,
    mesh: ShardMesh,
    cache: RefCell<ReplyCache<Bytes>>,
    /// The bridge's catalog replies, as JSON with their ETags.
    http_cache: RefCell<ReplyCache<http::CachedJson>>,
    catalog_feed: Arc<watch::Sender<Arc<Catalog>>>,
    stats: Arc<Stats>,
    encoder: RefCell<Encoder>,
    /// Request streams in flight: shutdown waits for them.
    requests: TaskTracker,
    connections: Cell<usize>,
    connections_max: usize,
    http_connections: Cell<usize>,
    gate: RefCell<ConnectionGate>,
    /// Handshakes begun and not yet finished, for the Retry threshold.
    handshaking: Cell<usize>,
    shutdown: watch::Receiver<bool>,
    clock: Clock,
}

impl Shard {
    fn stats(&self) -> &ShardStats {
        self.stats.shard(self.id)
    }

    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    // What the HTTP bridge, in its own module, needs of the shard.

    pub(super) fn stats_for_http(&self) -> &ShardStats {
        self.stats()
    }

    pub(super) fn now_millis(&self) -> u64 {
        self.clock.now().0
    }

    pub(super) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub(super) fn draining(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs `task` as a request: the drain waits for it.
    pub(super) fn track_request(&self, task: impl Future<Output = ()> + 'static) {
        self.requests.spawn_local(task);
    }

    pub(super) fn http_connections_full(&self) -> bool {
        self.http_connections.get() >= self.connections_max
    }

    /// Counts an HTTP connection for as long as the slot lives.
    pub(super) fn http_connection_slot(self: &Rc<Self>) -> HttpConnectionSlot {
        self.http_connections.set(self.http_connections.get() + 1);
        self.stats().connections_accepted.increment();
        HttpConnectionSlot(self.clone())
    }

    pub(super) fn with_encoder<T>(&self, f: impl FnOnce(&mut Encoder) -> T) -> T {
        f(&mut self.encoder.borrow_mut())
    }

    pub(super) fn http_cache_get(&self, key: &[u8], now: Instant) -> Option<http::CachedJson> {
        self.http_cache.borrow_mut().get(key, now)
    }

    pub(super) fn http_cache_put(&self, key: &[u8], reply: http::CachedJson, now: Instant) {
        let mut cache = self.http_cache.borrow_mut();
        if cache.caches_anything() {
            cache.put(key, reply, now);
        }
    }

    /// Whether the store still takes writes (false after a failed write
    /// or fsync, until a restart).
    pub(super) fn store_healthy(&self) -> bool {
        self.store.write_stats().is_none_or(|stats| stats.healthy)
    }

    /// Asks every other shard for nothing, to learn that it answers.
    pub(super) async fn probe_shards(&self) -> Result<(), String> {
        let placement = self.state.borrow().placement;
        let probes = placement
            .shards()
            .filter(|&owner| owner != self.id)
            .map(|owner| async move {
                self.mesh
                    .call(owner, ShardCall::StockLevels(Vec::new()))
                    .await
                    .map_err(|error| format!("{owner} does not answer: {error:?}"))
            });
        for probe in futures_util::future::join_all(probes).await {
            probe?;
        }
        Ok(())
    }
}

pub(super) struct HttpConnectionSlot(Rc<Shard>);

impl Drop for HttpConnectionSlot {
    fn drop(&mut self) {
        self.0
            .http_connections
            .set(self.0.http_connections.get() - 1);
        self.0.stats().connections_closed.increment();
    }
}

/// The real world a shard's handlers run in: tokio timers and tasks, the
/// mesh, the configured store, the operating system's randomness and the
/// built-in gateway.
impl Ports for Shard {
    fn shard(&self) -> ShardId {
        self.id
    }

    fn state(&self) -> &RefCell<ShardState> {
        &self.state
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn sessions(&self) -> &dyn TokenStore {
        self.sessions.as_ref()
    }

    fn escrow(&self) -> Option<&dyn StockEscrow> {
        self.escrow.as_deref()
    }

    fn escrow_moved(&self, took: bool, units: i64) {
        let stats = self.stats();
        if took {
            stats.escrow_takes.increment();
            stats.escrow_units_taken.add(units.unsigned_abs());
        } else {
            stats.escrow_units_returned.add(units.unsigned_abs());
        }
    }

    fn shared_limits(&self) -> Option<&dyn SharedLimits> {
        self.shared_limits
            .as_deref()
            .map(|redis| redis as &dyn SharedLimits)
    }

    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    fn fill_random(&self, bytes: &mut [u8]) {
        rand::fill(bytes);
    }

    async fn sleep(&self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }

    async fn send(&self, owner: Owner, call: ShardCall) -> Result<ShardAnswer, CallError> {
        self.mesh.call(owner, call).await
    }

    fn spawn(&self, task: Task) {
        self.background.spawn_local(task);
    }

    async fn offload<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        tokio::task::spawn_blocking(work).await.ok()
    }

    async fn charge(
        &self,
        order: souk_wire::api::OrderId,
        payment_method_token: &str,
        _amount: souk_wire::api::Money,
    ) -> Result<String, GatewayError> {
        let gateway = self.state.borrow().commerce.gateway;
        tokio::time::sleep(gateway.latency).await;
        gateway
            .charge(order, payment_method_token)
            .map_err(GatewayError::Declined)
    }

    async fn refund(
        &self,
        _order: souk_wire::api::OrderId,
        _amount: souk_wire::api::Money,
    ) -> Result<(), GatewayError> {
        // The built-in gateway moves no money, so there is none to return.
        Ok(())
    }

    fn latest_catalog(&self) -> Arc<Catalog> {
        self.catalog_feed.borrow().clone()
    }

    fn publish_catalog(&self, catalog: Arc<Catalog>) {
        self.catalog_feed.send_replace(catalog);
    }

    fn replies_stale(&self) {
        // Every shard's follower drops its cached replies on a change.
        self.catalog_feed.send_modify(|_| {});
    }
}

/// Starts the shard's thread.
pub fn spawn(setup: ShardSetup) -> std::io::Result<std::thread::JoinHandle<()>> {
    let id = setup.state.shard;
    std::thread::Builder::new()
        .name(format!("souk-shard-{}", id.0))
        .spawn(move || {
            if let Some(core) = setup.core
                && !core_affinity::set_for_current(core)
            {
                warn!(shard = id.0, "could not pin to core {}", core.id);
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = setup.ready.send(Err(format!("runtime: {error}")));
                    return;
                }
            };
            LocalSet::new().block_on(&runtime, run(setup));
        })
}

async fn run(setup: ShardSetup) {
    let ShardSetup {
        state,
        store,
        socket,
        endpoint_config,
        server_config,
        mesh,
        inbox,
        stats,
        shutdown,
        drained,
        ready,
        connections_max,
        cid_key,
        forward_peers,
        forwarded,
        catalog_feed,
        cache_ttl,
        clock,
        http,
        sessions,
        shared_limits,
        escrow,
        sign_outs,
        gate,
        ..
    } = setup;
    let id = state.shard;
    let runtime = Arc::new(quinn::TokioRuntime);
    let endpoint = runtime.wrap_udp_socket(socket).and_then(|inner| {
        let socket = ShardSocket::new(inner, id, cid_key, forward_peers, forwarded, stats.clone());
        let socket = Arc::new(socket);
        Endpoint::new_with_abstract_socket(endpoint_config, Some(server_config), socket, runtime)
    });
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(error) => {
            let _ = ready.send(Err(format!("{id}: endpoint: {error}")));
            // The other shards wait for every shard at the barrier.
            drained.wait().await;
            return;
        }
    };
    let shard = Rc::new(Shard {
        id,
        state: RefCell::new(state),
        store,
        mesh,
        cache: RefCell::new(ReplyCache::new(cache_ttl, limits::CACHED_REPLIES_MAX)),
        http_cache: RefCell::new(ReplyCache::new(cache_ttl, limits::CACHED_REPLIES_MAX)),
        catalog_feed,
        stats,
        encoder: RefCell::new(Encoder::new()),
        requests: TaskTracker::new(),
        connections: Cell::new(0),
        connections_max,
        http_connections: Cell::new(0),
        gate: RefCell::new(gate),
        handshaking: Cell::new(0),
        shutdown,
        clock,
        sessions,
        shared_limits,
        escrow,
        background: TaskTracker::new(),
    });
    let inbox_task = tokio::task::spawn_local(serve_inbox(shard.clone(), inbox));
    let expiry_task = tokio::task::spawn_local(flow::expire_lapsed(shard.clone()));
    let catalog_task = tokio::task::spawn_local(follow_catalog(shard.clone()));
    let board_task = tokio::task::spawn_local(flow::publish_stock_statuses(shard.clone()));
    let shared_catalog_task = (id == crate::domain::CATALOG_OWNER)
        .then(|| tokio::task::spawn_local(flow::follow_shared_catalog(shard.clone())));
    let carts_task = tokio::task::spawn_local(flow::flush_carts(shard.clone()));
    let escrow_task = tokio::task::spawn_local(flow::keep_escrow_balanced(shard.clone()));
    // Payments that a stop interrupted resume; the gateway is idempotent.
    let pending = shard.state.borrow().pending.ids();
    let resume_task = tokio::task::spawn_local(flow::resume_payments(shard.clone(), pending));
    let sign_outs_task =
        sign_outs.map(|feed| tokio::task::spawn_local(follow_sign_outs(shard.clone(), feed)));
    if let Some((listener, settings)) = http {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(format!("{id}: HTTP listener: {error}")));
                drained.wait().await;
                return;
            }
        };
        tokio::task::spawn_local(http::accept(shard.clone(), listener, settings));
    }
    let _ = ready.send(Ok(()));
    debug!(shard = id.0, "listening");

    accept_connections(&shard, &endpoint).await;
    drain(&shard, &endpoint).await;
    drained.wait().await;
    // Every shard has drained, so no cart can change any more: the last
    // changes are written before the store closes.
    carts_task.abort();
    escrow_task.abort();
    flow::flush_carts_once(shard.as_ref()).await;
    shard.background.close();
    shard.background.wait().await;
    inbox_task.abort();
    expiry_task.abort();
    catalog_task.abort();
    board_task.abort();
    resume_task.abort();
    for task in [sign_outs_task, shared_catalog_task].into_iter().flatten() {
        task.abort();
    }
    debug!(shard = id.0, "stopped");
}

/// Records the sign-outs everywhere of every node (this one's too), so
/// that this shard's connections signed in before them lose their identity.
async fn follow_sign_outs(shard: Rc<Shard>, mut feed: souk_storage::redis::SignOutReceiver) {
    while let Some((user, at)) = feed.next().await {
        flow::record_sign_out(shard.as_ref(), user, at);
    }
}

/// Stops taking connections, lets in-flight requests finish within the
/// grace period, then closes every connection with a reason.
async fn drain(shard: &Shard, endpoint: &Endpoint) {
    endpoint.set_server_config(None);
    shard.requests.close();
    let in_flight = shard.requests.len();
    if tokio::time::timeout(limits::SHUTDOWN_GRACE, shard.requests.wait())
        .await
        .is_err()
    {
        warn!(
            shard = shard.id.0,
            in_flight = shard.requests.len(),
            "requests still running after the grace period"
        );
    }
    endpoint.close(error_code::SHUTDOWN, b"server shutting down");
    let _ = tokio::time::timeout(limits::SHUTDOWN_DRAIN, endpoint.wait_idle()).await;
    let stats = shard.stats();
    info!(
        shard = shard.id.0,
        drained_requests = in_flight,
        requests = stats.requests.get(),
        request_errors = stats.request_errors.get(),
        cross_shard_calls = stats.cross_shard_calls.get(),
        cross_shard_busy = stats.cross_shard_busy.get(),
        connections = stats.connections_accepted.get(),
        connections_refused = stats.connections_refused.get(),
        datagrams_forwarded = stats.datagrams_forwarded.get(),
        cache_hits = stats.cache_hits.get(),
        cache_misses = stats.cache_misses.get(),
        "shard drained"
    );
}

async fn accept_connections(shard: &Rc<Shard>, endpoint: &Endpoint) {
    let mut shutdown = shard.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        if shard.connections.get() >= shard.connections_max {
            shard.stats().connections_refused.increment();
            incoming.refuse();
            continue;
        }
        let admission = shard.gate.borrow_mut().admit(
            incoming.remote_address().ip(),
            incoming.remote_address_validated(),
            shard.handshaking.get(),
            shard.now(),
        );
        match admission {
            Admission::Retry if incoming.may_retry() => {
                shard.stats().connections_retried.increment();
                if let Err(error) = incoming.retry() {
                    error.into_incoming().ignore();
                }
                continue;
            }
            Admission::Refuse => {
                shard.stats().connections_rate_limited.increment();
                incoming.refuse();
                continue;
            }
            Admission::Accept | Admission::Retry => {}
        }
        tokio::task::spawn_local(serve_connection(shard.clone(), incoming));
    }
}

/// Counts a connection for as long as it lives.
struct ConnectionSlot(Rc<Shard>);

impl ConnectionSlot {
    fn take(shard: &Rc<Shard>) -> ConnectionSlot {
        shard.connections.set(shard.connections.get() + 1);
        shard.stats().connections_accepted.increment();
        ConnectionSlot(shard.clone())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
        self.0.stats().connections_closed.increment();
    }
}

/// Counts a handshake in progress until it ends either way. A 0-RTT
/// connection counts until its first flight is in, which is when the
/// server has done its handshake work.
struct Handshaking(Rc<Shard>);

impl Handshaking {
    fn begin(shard: &Rc<Shard>) -> Handshaking {
        shard.handshaking.set(shard.handshaking.get() + 1);
        Handshaking(shard.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.handshaking.set(self.0.handshaking.get() - 1);
    }
}

/// The state one connection's request streams share.
struct ConnectionState {
    session: RefCell<Session>,
    /// Becomes true when the TLS handshake completes. Until then streams may
    /// carry 0-RTT data, which an attacker can replay: only safe reads run.
    handshake_done: watch::Receiver<bool>,
}

async fn serve_connection(shard: Rc<Shard>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let _slot = ConnectionSlot::take(&shard);
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            debug!(%remote, %error, "handshake refused");
            return;
        }
    };
    let (done_tx, handshake_done) = watch::channel(false);
    let handshaking = Handshaking::begin(&shard);
    let connection = match connecting.into_0rtt() {
        Ok((connection, accepted)) => {
            tokio::task::spawn_local(async move {
                accepted.await;
                let _ = done_tx.send(true);
            });
            connection
        }
        Err(connecting) => match connecting.await {
            Ok(connection) => {
                let _ = done_tx.send(true);
                connection
            }
            Err(error) => {
                debug!(%remote, %error, "handshake failed");
                return;
            }
        },
    };
    drop(handshaking);
    let state = Rc::new(ConnectionState {
        session: RefCell::new(Session {
            remote: Some(remote.ip()),
            ..Session::default()
        }),
        handshake_done,
    });
    debug!(%remote, shard = shard.id.0, "connection open");
    accept_streams(&shard, &connection, &state).await;
    if *shard.shutdown.borrow() {
        // Keep the connection until every in-flight reply is delivered,
        // then close it with a reason the client can act on.
        let _ = tokio::time::timeout(limits::SHUTDOWN_GRACE, shard.requests.wait()).await;
        connection.close(error_code::SHUTDOWN, b"server shutting down");
    }
    debug!(%remote, "connection closed");
}

async fn accept_streams(shard: &Rc<Shard>, connection: &Connection, state: &Rc<ConnectionState>) {
    let mut shutdown = shard.shutdown.clone();
    loop {
        let (send, recv) = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            stream = connection.accept_bi() => match stream {
                Ok(stream) => stream,
                Err(_) => return,
            },
        };
        shard
            .requests
            .spawn_local(serve_stream(shard.clone(), state.clone(), send, recv));
    }
}

/// Why a request could not be read off its stream.
enum ReadFailure {
    /// The client sent something we refuse; it gets a `BadRequest` reply.
    Refused(String),
    /// The stream or connection went away; nobody is left to reply to.
    Gone,
}

async fn read_frame(recv: &mut RecvStream) -> Result<Vec<u8>, ReadFailure> {
    let read = async {
        let mut header = [0u8; wire_limits::FRAME_HEADER_BYTES];
        recv.read_exact(&mut header)
            .await
            .map_err(|error| ended_early(error, "its 4-byte length"))?;
        let len = frame::payload_len(header, wire_limits::REQUEST_BYTES_MAX)
            .map_err(|e| ReadFailure::Refused(e.to_string()))?;
        // Allocated only after the length passed its bound.
        let mut buffer = vec![0u8; wire_limits::FRAME_HEADER_BYTES + len];
        buffer[..wire_limits::FRAME_HEADER_BYTES].copy_from_slice(&header);
        recv.read_exact(&mut buffer[wire_limits::FRAME_HEADER_BYTES..])
            .await
            .map_err(|error| ended_early(error, "the length its header gives"))?;
        take_fin(recv);
        Ok(buffer)
    };
    match tokio::time::timeout(limits::REQUEST_READ_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(ReadFailure::Refused(format!(
            "request not received within {} s",
            limits::REQUEST_READ_TIMEOUT.as_secs()
        ))),
    }
}

/// A stream that ended (FIN) before `what` arrived was sent a frame too
/// short: the client is told so. A reset stream or a lost connection has
/// nobody left to reply to.
fn ended_early(error: quinn::ReadExactError, what: &str) -> ReadFailure {
    match error {
        quinn::ReadExactError::FinishedEarly(read) => ReadFailure::Refused(format!(
            "the request stream ended after {read} bytes, before {what}: a request is one \
             size-prefixed FlatBuffers frame"
        )),
        quinn::ReadExactError::ReadError(_) => ReadFailure::Gone,
    }
}

/// Notes the end of a stream whose last bytes were just read, if the FIN
/// has already arrived (it travels in the request's own packet), without
/// waiting for it. quinn tells the peer STOP_SENDING when a stream it has
/// not seen the end of is dropped: one more packet each way per request.
fn take_fin(recv: &mut RecvStream) {
    let mut byte = [0u8; 1];
    let read = std::pin::pin!(recv.read(&mut byte));
    let _ = read.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

async fn serve_stream(
    shard: Rc<Shard>,
    connection: Rc<ConnectionState>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    shard.stats().requests.increment();
    let decoded = match read_frame(&mut recv).await {
        Ok(frame) => {
            let cached = shard.cache.borrow_mut().get(&frame, Instant::now());
            if let Some(reply) = cached {
                shard.stats().cache_hits.increment();
                send_reply(&mut send, reply).await;
                return;
            }
            codec::decode_request(&frame)
                .map(|request| (request, frame))
                .map_err(|e| ReadFailure::Refused(e.to_string()))
        }
        Err(failure) => Err(failure),
    };
    let mut cache_key = None;
    let response = match decoded {
        Ok((request, frame)) => {
            let mut handshake = connection.handshake_done.clone();
            if !request.body.operation().is_safe_read()
                && handshake.wait_for(|done| *done).await.is_err()
            {
                return;
            }
            if shard.cache.borrow().caches(request.body.operation()) {
                cache_key = Some(frame);
            }
            // Boxed: the handlers' state is kilobytes, and a task's future
            // is copied whole when it is spawned and when it completes.
            Box::pin(flow::dispatch(&shard, &connection.session, request)).await
        }
        Err(ReadFailure::Gone) => return,
        Err(ReadFailure::Refused(reason)) => {
            shard.stats().bad_frames.increment();
            // Tell the peer to stop sending the rest of a refused frame.
            let _ = recv.stop(error_code::BAD_FRAME);
            Err(ApiError::bad_request(reason))
        }
    };
    if response.is_err() {
        shard.stats().request_errors.increment();
    }
    let bytes = encode(&shard, &response);
    if let Some(key) = cache_key
        && response.is_ok()
    {
        shard.stats().cache_misses.increment();
        shard
            .cache
            .borrow_mut()
            .put(&key, bytes.clone(), Instant::now());
    }
    send_reply(&mut send, bytes).await;
}

async fn send_reply(send: &mut SendStream, bytes: Bytes) {
    if send.write_chunk(bytes).await.is_err() || send.finish().is_err() {
        return;
    }
    // The task (and so the shard's drain) lasts until the client has the
    // whole reply: closing a connection abandons unacknowledged data.
    let _ = tokio::time::timeout(limits::SHUTDOWN_DRAIN, send.stopped()).await;
}

/// Swaps in each catalog the catalog owner publishes, and drops the
/// replies built from the old one. A restock re-publishes the same
/// catalog, which only drops the replies.
async fn follow_catalog(shard: Rc<Shard>) {
    let mut feed = shard.catalog_feed.subscribe();
    while feed.changed().await.is_ok() {
        let catalog = feed.borrow_and_update().clone();
        shard.state.borrow_mut().catalog = catalog;
        shard.cache.borrow_mut().clear();
        shard.http_cache.borrow_mut().clear();
        debug!(shard = shard.id.0, "catalog updated; reply cache cleared");
    }
}

fn encode(shard: &Shard, response: &Response) -> Bytes {
    let mut encoder = shard.encoder.borrow_mut();
    match encoder.response(response) {
        Ok(frame) => Bytes::copy_from_slice(frame),
        Err(error) => {
            warn!(%error, "response over its bound");
            let internal = Err(ApiError::new(ErrorStatus::Internal, "response too large"));
            let frame = encoder
                .response(&internal)
                .expect("a short error response fits");
            Bytes::copy_from_slice(frame)
        }
    }
}

/// Answers other shards' calls for the state this shard owns. Each call
/// runs as its own task, so that one waiting on storage does not hold up
/// the reads behind it.
async fn serve_inbox(shard: Rc<Shard>, mut inbox: ShardInbox) {
    while let Some(envelope) = inbox.recv().await {
        let owner = shard.clone();
        shard.requests.spawn_local(async move {
            // Boxed, like a request's handler: kilobytes of state that the
            // spawn would otherwise copy.
            let answer = Box::pin(flow::serve_call(&owner, envelope.call)).await;
            owner.stats().cross_shard_served.increment();
            // The caller may have timed out and gone; nothing to do then.
            let _ = envelope.reply.send(answer);
        });
    }
}
