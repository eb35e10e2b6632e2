//! Starting and stopping the whole server: every service's start here is
//! paired with its stop in `Server::shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use souk_storage::embedded::EmbeddedStore;
use souk_storage::model::{OrderRecord, SnapshotProgress, StockSnapshot};
use souk_storage::redis::RedisState;
use souk_storage::scylla::{NodeEscrow, ScyllaStore};
use souk_storage::store::{StockEscrow, TokenStore};
use souk_storage::{CatalogData, DataDir, Store, demo};
use souk_wire::api::{OrderId, UnixMillis, UserId};
use tokio::sync::{Barrier, watch};
use tracing::info;

use crate::clock::Clock;
use crate::config::{Config, StorageConfig};
use crate::domain::CommerceConfig;
use crate::domain::accounts::{self, TokenKeys};
use crate::domain::orders::{IdGenerator, SimulatedGateway};
use crate::domain::rebuild;
use crate::domain::throttle::{Rate, RateClass};
use crate::io::cid::CidKey;
use crate::io::gate::ConnectionGate;
use crate::io::http::{Assets, HttpSettings};
use crate::io::shard::{self, ShardSetup};
use crate::io::{forward, quic, socket};
use crate::shard::{Placement, mesh};
use crate::stats::Stats;
use crate::tls;
use crate::{limits, metrics};

/// A running server. Dropping it without `shutdown` leaves its threads
/// running until the process exits.
pub struct Server {
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    fingerprint: [u8; 32],
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    store: Arc<dyn Store>,
    /// Where nodes share stock: this node's lease and grants.
    escrow: Option<Arc<NodeEscrow>>,
    clock: Clock,
    /// Drives the storage driver's own tasks (ScyllaDB connections) and the
    /// start-up and shut-down storage calls; shards await storage from
    /// their own runtimes. Always present; an `Option` only so that `Drop`
    /// can take it out and shut it down without blocking.
    storage_runtime: Option<tokio::runtime::Runtime>,
    /// With `--redis`: the subscription the shards' sign-out feeds read.
    _sign_outs: Option<souk_storage::redis::SignOutFeed>,
    _data_dir: DataDir,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("shards", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts every shard and returns once all of them listen. Each step
    /// below is one function; `shutdown` undoes them in reverse.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        config.validate()?;
        let data_dir = DataDir::open(&config.data_dir)?;
        let identity = load_identity(config, &data_dir)?;
        let storage_runtime = storage_runtime()?;
        let stores = block_on(&storage_runtime, open_stores(config, &data_dir))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let clock = Clock::default();
        // Renewed from the moment it is taken: a long replay below must
        // not let the lease run out and the other nodes fence this one.
        if let Some(escrow) = &stores.escrow {
            let lease = keep_lease(escrow.clone(), clock.clone(), shutdown_rx.clone());
            storage_runtime.spawn(lease);
            let reclaim = reclaim_dead_nodes(escrow.clone(), clock.clone(), shutdown_rx.clone());
            storage_runtime.spawn(reclaim);
        }
        let settings = shard_settings(config, &data_dir, stores.node)?;
        let states = block_on(&storage_runtime, rebuild_shards(&stores, config, &settings))?;
        let stats = Arc::new(Stats::new(config.shards));
        let metrics_addr = serve_metrics(config, &stores, &stats, &storage_runtime, &shutdown_rx)?;
        let catalog = states[0].catalog.clone();
        let Started {
            threads,
            local_addr,
            http_addr,
            ready,
        } = spawn_shards(ShardsStart {
            config,
            states,
            stores: &stores,
            crypto: Arc::new(tls::quic_server_crypto(&identity)?),
            http_tls: config
                .http_tls
                .then(|| tls::http_server_crypto(&identity).map(Arc::new))
                .transpose()?,
            stats: &stats,
            shutdown: &shutdown_rx,
            clock: &clock,
        })?;
        storage_runtime.spawn(keep_stock_snapshot(
            stores.store.clone(),
            clock.clone(),
            shutdown_rx,
        ));
        let server = Server {
            local_addr,
            http_addr,
            metrics_addr,
            fingerprint: identity.fingerprint,
            stats,
            shutdown,
            threads,
            store: stores.store,
            escrow: stores.escrow,
            clock,
            storage_runtime: Some(storage_runtime),
            _sign_outs: stores.sign_outs,
            _data_dir: data_dir,
        };
        if let Err(error) = server.wait_until_listening(config.shards, ready) {
            let _ = server.shutdown();
            return Err(error);
        }
        info!(
            addr = %local_addr,
            http = ?http_addr,
            shards = config.shards,
            products = catalog.product_count(),
            fingerprint = %hex::encode(identity.fingerprint),
            "souk is serving"
        );
        Ok(server)
    }

    /// Waits for every shard's word that it listens.
    fn wait_until_listening(
        &self,
        shards: usize,
        ready: std::sync::mpsc::Receiver<Result<(), String>>,
    ) -> anyhow::Result<()> {
        for _ in 0..shards {
            let started = ready
                .recv()
                .map_err(|_| anyhow!("a shard stopped while starting"))?;
            if let Err(reason) = started {
                return Err(anyhow!("a shard failed to start: {reason}"));
            }
        }
        Ok(())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the HTTP bridge listens, unless it is off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where `/metrics` is served, when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// SHA-256 of the server certificate, for clients that pin it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The clock every shard reads; a test advances it to pass an expiry
    /// without waiting for it.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Folds every order that has left the replay window into the stock
    /// snapshot now, as the server does every `STOCK_SNAPSHOT_INTERVAL`.
    pub fn fold_stock_snapshot(&self) -> anyhow::Result<SnapshotProgress> {
        let runtime = self.storage_runtime.as_ref().expect("present until drop");
        block_on(
            runtime,
            fold_stock_snapshot(self.store.as_ref(), self.clock.now()),
        )
    }

    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `SHUTDOWN_GRACE`), closes connections and joins every shard.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let mut panicked = 0;
        for thread in std::mem::take(&mut self.threads) {
            panicked += usize::from(thread.join().is_err());
        }
        // Every shard has drained: make what they wrote durable and stop.
        let runtime = self.storage_runtime.as_ref().expect("present until drop");
        if let Some(escrow) = &self.escrow {
            // Nothing sells any more: what the orders do not hold goes back.
            let leave =
                async { tokio::time::timeout(limits::ESCROW_LEAVE_TIMEOUT, escrow.leave()).await };
            match block_on(runtime, leave) {
                Ok(Ok(units)) => info!(units, "gave unsold units back to the shared pools"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not give unsold units back; they return when this node's lease is reclaimed")
                }
                Err(_) => tracing::warn!(
                    "giving unsold units back took too long; the rest return when this node's lease is reclaimed"
                ),
            }
        }
        let closed = block_on(runtime, self.store.close());
        if panicked > 0 {
            return Err(anyhow!("{panicked} shard thread(s) panicked"));
        }
        closed.context("closing the store")?;
        info!("souk stopped");
        Ok(())
    }
}

/// The server's certificate: configured, or self-signed and kept in the
/// data directory.
fn load_identity(config: &Config, data_dir: &DataDir) -> anyhow::Result<tls::TlsIdentity> {
    let identity = tls::load_or_create(&config.tls, data_dir.path())?;
    if identity.created {
        info!(
            path = %data_dir.file(tls::SELF_SIGNED_CERT_FILE).display(),
            "created a self-signed certificate"
        );
    }
    Ok(identity)
}

/// The runtime that drives the storage driver's own tasks and the
/// start-up, metrics and shut-down storage calls; never a shard's.
fn storage_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("souk-storage")
        .enable_all()
        .build()
}

/// Where data lives: the store, and with `--redis` the limits and
/// sessions every node shares.
struct Stores {
    store: Arc<dyn Store>,
    /// The store, or Redis with `--redis`.
    sessions: Arc<dyn TokenStore>,
    redis: Option<Arc<RedisState>>,
    sign_outs: Option<souk_storage::redis::SignOutFeed>,
    /// Where several nodes share stock through a cluster.
    escrow: Option<Arc<NodeEscrow>>,
    /// This node's number among them (0 alone): ids carry it.
    node: u8,
}

async fn open_stores(config: &Config, data_dir: &DataDir) -> anyhow::Result<Stores> {
    let (store, escrow, node): (Arc<dyn Store>, _, _) = match &config.storage {
        StorageConfig::Scylla(scylla) => {
            let store = Arc::new(connect_scylla(scylla).await?);
            let node = store
                .node_number()
                .await
                .context("claiming this node's number in the cluster")?;
            let until =
                UnixMillis(Clock::default().now().0 + limits::ESCROW_LEASE.as_millis() as u64);
            let escrow = NodeEscrow::join(store.clone(), until, limits::ESCROW_LEASE)
                .await
                .context("taking this node's lease on the shared stock")?;
            info!(node = %scylla.node, number = node, epoch = escrow.epoch(), "joined the nodes sharing the cluster");
            (store, Some(Arc::new(escrow)), node)
        }
        StorageConfig::Embedded(_) => (open_store(config, data_dir).await?, None, 0),
    };
    let Some(url) = &config.redis else {
        return Ok(Stores {
            sessions: store.clone(),
            store,
            redis: None,
            sign_outs: None,
            escrow,
            node,
        });
    };
    let redis = RedisState::connect(url, limits::REDIS_CONNECTIONS)
        .await
        .with_context(|| format!("cannot reach Redis at {}", redact(url)))?;
    let sign_outs = souk_storage::redis::SignOutFeed::connect(url)
        .await
        .with_context(|| format!("cannot subscribe at Redis {}", redact(url)))?;
    info!(url = %redact(url), "refresh tokens and shared limits in Redis");
    let redis = Arc::new(redis);
    Ok(Stores {
        store,
        sessions: redis.clone(),
        redis: Some(redis),
        sign_outs: Some(sign_outs),
        escrow,
        node,
    })
}

/// What every shard starts with, from the configuration.
fn shard_settings(
    config: &Config,
    data_dir: &DataDir,
    node: u8,
) -> anyhow::Result<rebuild::Settings> {
    Ok(rebuild::Settings {
        placement: Placement::new(config.shards),
        tokens: Arc::new(TokenKeys::new(&token_key(data_dir)?)),
        commerce: CommerceConfig {
            reservation_ttl: config.reservation_ttl,
            gateway: SimulatedGateway {
                latency: config.payment_latency,
                declines_per_10k: config.payment_declines_per_10k,
            },
            password_cost: accounts::PasswordCost::STANDARD,
            purchase_limit: (config.purchase_limit > 0).then_some(config.purchase_limit),
        },
        rates: [
            (RateClass::Reads, config.rate_reads),
            (RateClass::CartWrites, config.rate_cart_writes),
            (RateClass::Checkouts, config.rate_checkouts),
        ]
        .into_iter()
        .filter_map(|(class, per_second)| Some((class, Rate::limiting(per_second)?)))
        .collect(),
        server_version: env!("CARGO_PKG_VERSION"),
        node,
    })
}

/// Every shard's state from what the store holds (the demo catalog is
/// imported into an empty store first).
async fn rebuild_shards(
    stores: &Stores,
    config: &Config,
    settings: &rebuild::Settings,
) -> anyhow::Result<Vec<crate::domain::ShardState>> {
    let store = stores.store.as_ref();
    let mut data = load_catalog(store, config).await?;
    let pools = match &stores.escrow {
        Some(escrow) => shared_stock(escrow.store(), &mut data).await?,
        None => Vec::new(),
    };
    let (snapshot, orders) = load_orders(store).await?;
    info!(
        orders = orders.len(),
        watermark = snapshot.watermark.0,
        "replaying the orders after the stock snapshot"
    );
    let carts = store.carts().await.context("reading carts")?;
    let stored = rebuild::Stored {
        catalog: &data,
        snapshot: &snapshot,
        orders: &orders,
        carts,
        pools,
    };
    Ok(rebuild::shard_states(stored, settings))
}

/// Where nodes share stock: this node's grants stand in for the units
/// received in `data.stock`; the pools (a SKU's stock record until its
/// pool is first opened) are returned for shoppers to see.
async fn shared_stock(
    store: &ScyllaStore,
    data: &mut CatalogData,
) -> anyhow::Result<Vec<(souk_wire::api::Sku, i64)>> {
    let escrow: std::collections::HashMap<_, _> = store
        .all_escrow()
        .await
        .context("reading the shared stock")?
        .into_iter()
        .collect();
    let mut pools = Vec::with_capacity(data.stock.len());
    let mut grants = Vec::with_capacity(data.stock.len());
    for (sku, received) in &data.stock {
        match escrow.get(sku) {
            Some(shared) if shared.opened => {
                pools.push((sku.clone(), shared.pool));
                grants.push((sku.clone(), shared.granted_to(store.node())));
            }
            _ => pools.push((sku.clone(), *received)),
        }
    }
    info!(
        skus = grants.len(),
        units = grants.iter().map(|(_, units)| units).sum::<i64>(),
        "this node's grants of the shared stock"
    );
    data.stock = grants;
    Ok(pools)
}

/// `/metrics` on `--metrics-listen`, served from the storage runtime.
fn serve_metrics(
    config: &Config,
    stores: &Stores,
    stats: &Arc<Stats>,
    runtime: &tokio::runtime::Runtime,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let serving = metrics::serve(
        listener,
        stats.clone(),
        stores.store.clone(),
        shutdown.clone(),
    );
    runtime.spawn(async move {
        if let Err(error) = serving.await {
            tracing::warn!(%error, "the metrics endpoint stopped");
        }
    });
    info!(addr = %bound, "metrics at /metrics");
    Ok(Some(bound))
}

/// What the shard threads are started from.
struct ShardsStart<'a> {
    config: &'a Config,
    states: Vec<crate::domain::ShardState>,
    stores: &'a Stores,
    crypto: Arc<quinn::crypto::rustls::QuicServerConfig>,
    http_tls: Option<Arc<rustls::ServerConfig>>,
    stats: &'a Arc<Stats>,
    shutdown: &'a watch::Receiver<bool>,
    clock: &'a Clock,
}

/// The shard threads just started.
struct Started {
    threads: Vec<JoinHandle<()>>,
    /// The address every shard's socket shares.
    local_addr: SocketAddr,
    /// The address every shard's HTTP listener shares.
    http_addr: Option<SocketAddr>,
    /// Each shard's word that it listens, or why it could not.
    ready: std::sync::mpsc::Receiver<Result<(), String>>,
}

/// Binds every shard's socket and starts its thread.
fn spawn_shards(start: ShardsStart<'_>) -> anyhow::Result<Started> {
    let ShardsStart {
        config,
        states,
        stores,
        crypto,
        http_tls,
        stats,
        shutdown,
        clock,
    } = start;
    let sockets = socket::bind_shared(config.listen, config.shards)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = sockets[0].local_addr()?;
    let listeners = match config.http_listen {
        Some(addr) => socket::listen_shared(addr, config.shards)
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?,
        None => Vec::new(),
    };
    let http_addr = listeners.first().map(|l| l.local_addr()).transpose()?;
    let http_settings = Arc::new(HttpSettings {
        allowed_origins: config.http_allow_origins.clone(),
        trusted_proxies: config.http_trusted_proxies.clone(),
        tls: http_tls,
        assets: Assets::build(),
    });
    let mut listeners = listeners.into_iter();
    let meshes = mesh::build(
        config.shards,
        limits::SHARD_INBOX_MAX,
        limits::CROSS_SHARD_TIMEOUT,
        stats.clone(),
    );
    let catalog_feed = Arc::new(watch::Sender::new(states[0].catalog.clone()));
    let drained = Arc::new(Barrier::new(config.shards));
    let cores = config
        .pin_threads
        .then(core_affinity::get_core_ids)
        .flatten()
        .filter(|cores| !cores.is_empty());
    let cid_key = CidKey::default();
    let (forward_peers, forward_queues) = forward::queues(config.shards);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(config.shards);
    let per_shard = sockets.into_iter().zip(meshes).zip(forward_queues);
    for (state, ((socket, (mesh, inbox)), forwarded)) in states.into_iter().zip(per_shard) {
        let shard = state.shard;
        let setup = ShardSetup {
            store: stores.store.clone(),
            sessions: stores.sessions.clone(),
            shared_limits: stores.redis.clone(),
            escrow: stores
                .escrow
                .clone()
                .map(|escrow| escrow as Arc<dyn StockEscrow>),
            sign_outs: stores.sign_outs.as_ref().map(|feed| feed.receiver()),
            state,
            socket,
            cid_key: cid_key.clone(),
            forward_peers: forward_peers.clone(),
            forwarded,
            endpoint_config: quic::endpoint_config(shard, cid_key.clone()),
            server_config: quic::server_config(crypto.clone()),
            mesh,
            inbox,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            drained: drained.clone(),
            core: cores.as_ref().map(|c| c[shard.index() % c.len()]),
            connections_max: config.max_connections_per_shard,
            gate: ConnectionGate::new(
                config.new_connections_per_sec,
                config.retry_above,
                limits::GATED_ADDRESSES_MAX,
            ),
            catalog_feed: catalog_feed.clone(),
            cache_ttl: config.catalog_cache_ttl,
            clock: clock.clone(),
            http: listeners
                .next()
                .map(|listener| (listener, http_settings.clone())),
            ready: ready_tx.clone(),
        };
        threads.push(shard::spawn(setup)?);
    }
    Ok(Started {
        threads,
        local_addr,
        http_addr,
        ready,
    })
}

/// Runs a storage future to completion from synchronous code. It runs on a
/// thread of its own, so that `Server` can be started and stopped from
/// inside another runtime (tests, embedding applications) as well.
fn block_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .expect("storage calls do not panic")
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime;
        // its tasks (driver connections) are abandoned instead.
        if let Some(runtime) = self.storage_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Creates an account with the admin role in the store of
/// `config.data_dir`, with souk stopped (the store is locked while it
/// runs): what `souk create-admin` does, and how tests make their admin.
pub fn create_admin(
    config: &Config,
    email: &str,
    password: &str,
    name: Option<String>,
) -> anyhow::Result<UserId> {
    let email = accounts::normalize_email(email).map_err(|e| anyhow!(e.message))?;
    accounts::check_password(password).map_err(|e| anyhow!(e.message))?;
    let now = Clock::default().now();
    // Tools name themselves with the last shard number in ids; a clash with
    // a shard's id is refused by the store as a conflict.
    let tool = crate::shard::ShardId((limits::SHARDS_MAX - 1) as u16);
    let user = souk_storage::model::UserRecord {
        id: UserId(IdGenerator::new(0, tool).next(now)),
        email,
        password_hash: accounts::hash_password(
            password,
            accounts::PasswordCost::STANDARD,
            rand::random(),
        ),
        name,
        role: souk_wire::api::Role::Admin,
        created_at: now,
    };
    // A thread of its own, so that a caller inside an async runtime (a
    // test) may call this too: the tool's runtime cannot nest in another.
    let id = user.id;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let (runtime, store) = open_store_for_tool(config).context(
                    "cannot open the store (is souk running on this data directory? stop it first)",
                )?;
                runtime.block_on(async {
                    let created = store.create_user(&user).await;
                    let closed = store.close().await;
                    created.context("creating the account (is the e-mail taken?)")?;
                    closed.context("closing the store")
                })
            })
            .join()
            .map_err(|_| anyhow!("creating the admin account panicked"))?
    })?;
    Ok(id)
}

/// Opens the configured store for a command-line tool (`souk import`),
/// with the runtime its calls run on.
pub fn open_store_for_tool(
    config: &Config,
) -> anyhow::Result<(tokio::runtime::Runtime, Arc<dyn Store>)> {
    let data_dir = DataDir::open(&config.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = runtime.block_on(open_store(config, &data_dir))?;
    Ok((runtime, store))
}

/// Opens the configured store.
async fn open_store(config: &Config, data_dir: &DataDir) -> anyhow::Result<Arc<dyn Store>> {
    match &config.storage {
        StorageConfig::Embedded(engine) => {
            let store = EmbeddedStore::open(&data_dir.file("store"), *engine)
                .context("cannot open the embedded store")?;
            info!(backend = store.backend(), "store open");
            Ok(Arc::new(store))
        }
        StorageConfig::Scylla(scylla) => Ok(Arc::new(connect_scylla(scylla).await?)),
    }
}

/// The catalog from the store; on a store's first start, the generated
/// demo catalog is imported first (once: later starts find it imported).
async fn load_catalog(store: &dyn Store, config: &Config) -> anyhow::Result<CatalogData> {
    if !store.catalog_imported().await? {
        let demo = demo::generate(config.demo_seed, config.demo_products);
        store
            .import_catalog(&demo)
            .await
            .context("importing the demo catalog")?;
        info!(
            products = demo.products.len(),
            "imported the demo catalog into an empty store"
        );
    }
    store.load_catalog().await.context("loading the catalog")
}

/// The stock snapshot and every stored order after it, which the shards
/// replay to rebuild their stock counters, pending orders and idempotency
/// keys. Orders are read over every shard number a server can have, so
/// that a restart with a different shard count still finds them all.
async fn load_orders(store: &dyn Store) -> anyhow::Result<(StockSnapshot, Vec<OrderRecord>)> {
    let snapshot = store
        .stock_snapshot()
        .await
        .context("reading the stock snapshot")?;
    let orders = store
        .orders_from(snapshot.watermark, limits::SHARDS_MAX as u16)
        .await
        .context("reading orders to rebuild stock")?;
    Ok((snapshot, orders))
}

/// Folds the orders placed before the replay window (`STOCK_SNAPSHOT_LAG`
/// ago) into the stock snapshot, a bounded step at a time so that other
/// writes wait at most one step.
async fn fold_stock_snapshot(
    store: &dyn Store,
    now: UnixMillis,
) -> anyhow::Result<SnapshotProgress> {
    let lag = limits::STOCK_SNAPSHOT_LAG.as_millis() as u64;
    let below = OrderId(IdGenerator::first_at(UnixMillis(now.0.saturating_sub(lag))));
    let mut total = 0;
    loop {
        let progress = store
            .advance_stock_snapshot(
                below,
                limits::STOCK_SNAPSHOT_STEP,
                limits::SHARDS_MAX as u16,
            )
            .await
            .context("advancing the stock snapshot")?;
        total += progress.folded;
        if progress.folded < limits::STOCK_SNAPSHOT_STEP {
            return Ok(SnapshotProgress {
                watermark: progress.watermark,
                folded: total,
            });
        }
    }
}

async fn connect_scylla(
    scylla: &souk_storage::scylla::ScyllaConfig,
) -> anyhow::Result<ScyllaStore> {
    let store = ScyllaStore::connect(scylla)
        .await
        .with_context(|| format!("cannot connect to ScyllaDB at {:?}", scylla.nodes))?;
    info!(keyspace = %scylla.keyspace, node = %scylla.node, "ScyllaDB connected");
    Ok(store)
}

/// Waits `period`: `false` if shutdown began first.
async fn tick(period: std::time::Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = shutdown.changed() => false,
    }
}

/// Renews this node's lease on the shared stock every
/// `ESCROW_RENEW_EVERY` until shutdown. A node that finds itself fenced
/// stops selling for good: a restart rejoins under a new epoch.
async fn keep_lease(escrow: Arc<NodeEscrow>, clock: Clock, mut shutdown: watch::Receiver<bool>) {
    let lease = limits::ESCROW_LEASE.as_millis() as u64;
    while tick(limits::ESCROW_RENEW_EVERY, &mut shutdown).await {
        let now = clock.now();
        match escrow.renew(UnixMillis(now.0 + lease)).await {
            Ok(()) => {}
            Err(souk_storage::StorageError::Conflict(reason)) => {
                tracing::error!(%reason, "fenced by the nodes sharing the cluster: this node sells nothing until restarted");
                return;
            }
            Err(error) => tracing::warn!(%error, "could not renew the lease on the shared stock"),
        }
    }
}

/// Every `ESCROW_RECLAIM_EVERY`, fences the nodes whose leases ran out
/// `ESCROW_SKEW` ago and reclaims their grants, until shutdown. A task of
/// its own: reading a dead node's orders may take long, and must never
/// hold back this node's own renewals.
async fn reclaim_dead_nodes(
    escrow: Arc<NodeEscrow>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let skew = limits::ESCROW_SKEW.as_millis() as u64;
    while tick(limits::ESCROW_RECLAIM_EVERY, &mut shutdown).await {
        let now = clock.now();
        match escrow
            .reclaim_dead(UnixMillis(now.0.saturating_sub(skew)), now)
            .await
        {
            Ok(reclaimed) if reclaimed.units == 0 && reclaimed.expired == 0 => {}
            // No refund is asked for an order expired here: the
            // built-in gateway, the only one, moves no money.
            Ok(reclaimed) => info!(
                units = reclaimed.units,
                expired_orders = reclaimed.expired,
                "reclaimed the unsold units of nodes whose lease ran out, and the units of their orders that lapsed unpaid"
            ),
            Err(error) => tracing::warn!(%error, "could not reclaim the stock of dead nodes"),
        }
    }
}

/// Keeps the stock snapshot `STOCK_SNAPSHOT_LAG` behind now until shutdown.
async fn keep_stock_snapshot(
    store: Arc<dyn Store>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    while tick(limits::STOCK_SNAPSHOT_INTERVAL, &mut shutdown).await {
        match fold_stock_snapshot(store.as_ref(), clock.now()).await {
            Ok(progress) if progress.folded > 0 => info!(
                folded = progress.folded,
                watermark = progress.watermark.0,
                "stock snapshot advanced"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "the stock snapshot did not advance; starts replay more orders until it does")
            }
        }
    }
}

/// The key that signs access tokens: `token.key` in the data directory,
/// created with a random key on first start. Nodes that must accept each
/// other's tokens are given copies of the same file.
fn token_key(data_dir: &DataDir) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.file(TOKEN_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() >= accounts::TOKEN_KEY_BYTES => Ok(key),
        Ok(_) => Err(anyhow!(
            "{} is shorter than {} bytes",
            path.display(),
            accounts::TOKEN_KEY_BYTES
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; accounts::TOKEN_KEY_BYTES] = rand::random();
            write_private(&path, &key)
                .with_context(|| format!("cannot write {}", path.display()))?;
            info!(path = %path.display(), "created the access-token key");
            Ok(key.to_vec())
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A Redis URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The file holding the access-token signing key, in the data directory.
pub const TOKEN_KEY_FILE: &str = "token.key";

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
