//! One shard at run time: its thread, runtime, QUIC endpoint, connections,
//! request streams and inbox.
//!
//! The request path: `accept_connections` → `serve_connection` (one task per
//! connection) → `serve_stream` (one task per request stream: read a frame,
//! decode, `execute`, encode, write) → `domain::handle`. Steps that need
//! other shards go through the mesh; calls from other shards arrive in
//! `serve_inbox` and are answered by `domain::answer`.
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
use souk_storage::model::StockRecord;
use souk_storage::redis::RedisState;
use souk_storage::store::TokenStore;
use souk_wire::api::{ApiError, ErrorStatus, Product, Request, Response, StockStatus, UnixMillis};
use souk_wire::codec::{self, Encoder};
use souk_wire::{frame, limits as wire_limits};
use tokio::sync::{Barrier, watch};
use tokio::task::LocalSet;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::cache::ReplyCache;
use super::cid::CidKey;
use super::commerce;
use super::forward::{Datagram, ForwardQueue, ShardSocket};
use super::gate::{Admission, ConnectionGate};
use crate::clock::Clock;
use crate::domain::catalog::Catalog;
use crate::domain::{self, Effect, Session, ShardAnswer, ShardCall, ShardState, Step};
use crate::limits;
use crate::shard::ShardId;
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
    /// Told once the endpoint is listening, or why it could not be.
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
}

/// What one shard's tasks share. Lives on the shard's thread only.
pub(super) struct Shard {
    pub(super) id: ShardId,
    pub(super) state: RefCell<ShardState>,
    pub(super) store: Arc<dyn Store>,
    pub(super) sessions: Arc<dyn TokenStore>,
    pub(super) shared_limits: Option<Arc<RedisState>>,
    mesh: ShardMesh,
    cache: RefCell<ReplyCache>,
    catalog_feed: Arc<watch::Sender<Arc<Catalog>>>,
    stats: Arc<Stats>,
    encoder: RefCell<Encoder>,
    /// Request streams in flight: shutdown waits for them.
    requests: TaskTracker,
    connections: Cell<usize>,
    connections_max: usize,
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

    pub(super) fn placement(&self) -> crate::shard::Placement {
        self.state.borrow().placement
    }

    pub(super) fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    pub(super) fn tokens(&self) -> Arc<crate::domain::accounts::TokenKeys> {
        self.state.borrow().tokens.clone()
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
        sessions,
        shared_limits,
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
        catalog_feed,
        stats,
        encoder: RefCell::new(Encoder::new()),
        requests: TaskTracker::new(),
        connections: Cell::new(0),
        connections_max,
        gate: RefCell::new(gate),
        handshaking: Cell::new(0),
        shutdown,
        clock,
        sessions,
        shared_limits,
    });
    let inbox_task = tokio::task::spawn_local(serve_inbox(shard.clone(), inbox));
    let expiry_task = tokio::task::spawn_local(commerce::expire_lapsed(shard.clone()));
    let catalog_task = tokio::task::spawn_local(follow_catalog(shard.clone()));
    let board_task = tokio::task::spawn_local(publish_stock_statuses(shard.clone()));
    let carts_task = tokio::task::spawn_local(commerce::flush_carts(shard.clone()));
    // Payments that a stop interrupted resume; the gateway is idempotent.
    let pending = shard.state.borrow().pending.ids();
    let resume_task = tokio::task::spawn_local(commerce::resume_payments(shard.clone(), pending));
    let sign_outs_task =
        sign_outs.map(|feed| tokio::task::spawn_local(follow_sign_outs(shard.clone(), feed)));
    let _ = ready.send(Ok(()));
    debug!(shard = id.0, "listening");

    accept_connections(&shard, &endpoint).await;
    drain(&shard, &endpoint).await;
    drained.wait().await;
    // Every shard has drained, so no cart can change any more: the last
    // changes are written before the store closes.
    carts_task.abort();
    commerce::flush_carts_once(&shard).await;
    inbox_task.abort();
    expiry_task.abort();
    catalog_task.abort();
    board_task.abort();
    resume_task.abort();
    if let Some(task) = sign_outs_task {
        task.abort();
    }
    debug!(shard = id.0, "stopped");
}

/// Records the sign-outs everywhere of every node (this one's too), so
/// that this shard's connections signed in before them lose their identity.
async fn follow_sign_outs(shard: Rc<Shard>, mut feed: souk_storage::redis::SignOutReceiver) {
    while let Some((user, at)) = feed.next().await {
        let now = shard.now();
        shard.state.borrow_mut().sign_outs.record(user, at, now);
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
            .map_err(|_| ReadFailure::Gone)?;
        let len = frame::payload_len(header, wire_limits::REQUEST_BYTES_MAX)
            .map_err(|e| ReadFailure::Refused(e.to_string()))?;
        // Allocated only after the length passed its bound.
        let mut buffer = vec![0u8; wire_limits::FRAME_HEADER_BYTES + len];
        buffer[..wire_limits::FRAME_HEADER_BYTES].copy_from_slice(&header);
        recv.read_exact(&mut buffer[wire_limits::FRAME_HEADER_BYTES..])
            .await
            .map_err(|_| ReadFailure::Gone)?;
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
            Box::pin(execute(&shard, &connection.session, request)).await
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
        debug!(shard = shard.id.0, "catalog updated; reply cache cleared");
    }
}

/// Publishes the stock statuses of this shard's SKUs that changed, and
/// then drops every shard's cached replies, so that listings and product
/// pages show a SKU selling out (or coming back) at once rather than after
/// the cache's TTL.
async fn publish_stock_statuses(shard: Rc<Shard>) {
    let mut tick = tokio::time::interval(limits::STOCK_BOARD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (board, changes) = {
            let mut state = shard.state.borrow_mut();
            (
                state.stock_board.clone(),
                state.inventory.take_status_changes(),
            )
        };
        if !changes.is_empty() && board.publish(shard.id, &changes) {
            shard.catalog_feed.send_modify(|_| {});
        }
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

/// Carries out the step `domain::handle` returns.
async fn execute(shard: &Rc<Shard>, session: &RefCell<Session>, request: Request) -> Response {
    domain::end_signed_out(&shard.state.borrow(), &mut session.borrow_mut());
    if commerce::serves(&request.body) {
        return commerce::execute(shard, session, request).await;
    }
    let step = domain::handle(
        &shard.state.borrow(),
        &mut session.borrow_mut(),
        &request,
        shard.now(),
    );
    match step {
        Step::Reply(response) => response,
        Step::Owner { owner, call } => call_owner(shard, owner, call)
            .await
            .and_then(domain::owner_reply),
        Step::ProductStock { product_id, asks } => {
            let skus = asks.into_iter().flat_map(|(_, skus)| skus).collect();
            let levels = commerce::stock_levels(shard, skus).await?;
            domain::product_detail(&shard.state.borrow(), &product_id, &levels)
        }
        Step::Authenticate(verified) => {
            let user = verified.identity.user_id;
            match shard.sessions.signed_out_at(user).await {
                Ok(stored) => domain::bind(
                    &shard.state.borrow(),
                    &mut session.borrow_mut(),
                    verified,
                    stored,
                ),
                // Without the cutoff the token cannot be trusted.
                Err(error) => {
                    session.borrow_mut().identity = None;
                    Err(domain::storage_failure(error))
                }
            }
        }
    }
}

/// Runs `call` on `owner`: directly when that is this shard, else through
/// the mesh.
pub(super) async fn call_owner(
    shard: &Rc<Shard>,
    owner: ShardId,
    call: ShardCall,
) -> Result<ShardAnswer, ApiError> {
    if owner == shard.id {
        return Ok(answer(shard, call).await);
    }
    shard
        .mesh
        .call(owner, call)
        .await
        .map_err(|error| match error {
            CallError::Busy(_) => ApiError::busy(limits::BUSY_RETRY_AFTER_MS, error.to_string()),
            CallError::Stopped(_) | CallError::Timeout(_) => {
                ApiError::new(ErrorStatus::Unavailable, error.to_string())
            }
        })
}

/// Runs a call on this shard (its owner) and makes its effects durable
/// before answering; a failed effect is undone and reported.
async fn answer(shard: &Rc<Shard>, call: ShardCall) -> ShardAnswer {
    let call = match call {
        ShardCall::Checkout(checkout) => return commerce::place_order(shard, *checkout).await,
        ShardCall::UpsertProduct(product) => return upsert_product(shard, *product).await,
        call => call,
    };
    let (answer, effect) = domain::answer(&mut shard.state.borrow_mut(), call, shard.now());
    let Some(effect) = effect else {
        return answer;
    };
    let persisted = match &effect {
        Effect::PersistStock {
            level, received, ..
        } => {
            let record = StockRecord {
                sku: level.sku.clone(),
                received: *received,
                updated_at: shard.now(),
            };
            shard.store.put_stock(&[record]).await
        }
    };
    match persisted {
        Ok(()) => {
            // An operator's stock change shows everywhere at once: every
            // shard drops its cached replies, as for a catalog change.
            shard.catalog_feed.send_modify(|_| {});
            answer
        }
        Err(error) => {
            warn!(shard = shard.id.0, %error, "could not persist; change undone");
            domain::undo(
                &mut shard.state.borrow_mut(),
                effect,
                domain::storage_failure(error),
            )
        }
    }
}

/// Stores a product and publishes the catalog that includes it. Runs on
/// the catalog owner only, one change after another.
async fn upsert_product(shard: &Shard, mut product: Product) -> ShardAnswer {
    let now = shard.now();
    let catalog = shard.state.borrow().catalog.clone();
    if let Err(error) = catalog.check_upsert(&product) {
        return ShardAnswer::Upserted(Err(error));
    }
    product.created_at = catalog.product(&product.id).map_or(now, |p| p.created_at);
    product.updated_at = now;
    for variant in &mut product.variants {
        // Stock is the owners' counters', never the product record's.
        variant.available = 0;
        variant.stock_status = StockStatus::Unknown;
    }
    if let Err(error) = shard.store.upsert_product(&product).await {
        return ShardAnswer::Upserted(Err(domain::storage_failure(error)));
    }
    // Changes are applied in the order they were stored: the catalog is
    // re-read after the write, in case another change landed meanwhile.
    let latest = shard.catalog_feed.borrow().clone();
    shard
        .catalog_feed
        .send_replace(Arc::new(latest.with_product(product.clone())));
    ShardAnswer::Upserted(Ok(Box::new(product)))
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
            let answer = Box::pin(answer(&owner, envelope.call)).await;
            owner.stats().cross_shard_served.increment();
            // The caller may have timed out and gone; nothing to do then.
            let _ = envelope.reply.send(answer);
        });
    }
}
