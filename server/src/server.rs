//! Starting and stopping the whole server: every service's start here is
//! paired with its stop in `Server::shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use souk_storage::{CatalogData, DataDir, demo};
use souk_wire::api::Sku;
use tokio::sync::{Barrier, watch};
use tracing::info;

use crate::config::Config;
use crate::domain::catalog::Catalog;
use crate::domain::inventory::Inventory;
use crate::domain::{AdminKey, ShardState};
use crate::io::cid::CidKey;
use crate::io::shard::{self, ShardSetup};
use crate::io::{forward, quic, socket};
use crate::limits;
use crate::shard::{Placement, mesh};
use crate::stats::Stats;
use crate::tls;

/// A running server. Dropping it without `shutdown` leaves its threads
/// running until the process exits.
pub struct Server {
    local_addr: SocketAddr,
    fingerprint: [u8; 32],
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
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
    /// Starts every shard and returns once all of them listen.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        config.validate()?;
        let data_dir = DataDir::open(&config.data_dir)?;
        let identity = tls::load_or_create(&config.tls, data_dir.path())?;
        if identity.created {
            info!(
                path = %data_dir.file(tls::SELF_SIGNED_CERT_FILE).display(),
                "created a self-signed certificate"
            );
        }
        let crypto = Arc::new(tls::quic_server_crypto(&identity)?);
        let placement = Placement::new(config.shards);
        let data = demo::generate(config.demo_seed, config.demo_products);
        let catalog = Arc::new(Catalog::build(&data));
        let mut stock = stock_per_shard(&data, placement);

        let sockets = socket::bind_shared(config.listen, config.shards)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = sockets[0].local_addr()?;
        let stats = Arc::new(Stats::new(config.shards));
        let meshes = mesh::build(
            config.shards,
            limits::SHARD_INBOX_MAX,
            limits::CROSS_SHARD_TIMEOUT,
            stats.clone(),
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let drained = Arc::new(Barrier::new(config.shards));
        let cores = config
            .pin_threads
            .then(core_affinity::get_core_ids)
            .flatten()
            .filter(|cores| !cores.is_empty());
        let cid_key = CidKey::default();
        let (forward_peers, forward_queues) = forward::queues(config.shards);
        let admin_key = config.admin_key.as_deref().map(AdminKey::new);
        let (ready_tx, ready) = std::sync::mpsc::channel();

        let mut threads = Vec::with_capacity(config.shards);
        let per_shard = sockets.into_iter().zip(meshes).zip(forward_queues);
        for (shard, ((socket, (mesh, inbox)), forwarded)) in placement.shards().zip(per_shard) {
            let setup = ShardSetup {
                state: ShardState {
                    shard,
                    placement,
                    catalog: catalog.clone(),
                    inventory: Inventory::load(std::mem::take(&mut stock[shard.index()])),
                    admin_key: admin_key.clone(),
                    server_version: env!("CARGO_PKG_VERSION"),
                },
                socket,
                cid_key: cid_key.clone(),
                forward_peers: forward_peers.clone(),
                forwarded,
                endpoint_config: quic::endpoint_config(shard, cid_key.clone()),
                server_config: quic::server_config(crypto.clone()),
                mesh,
                inbox,
                stats: stats.clone(),
                shutdown: shutdown_rx.clone(),
                drained: drained.clone(),
                core: cores.as_ref().map(|c| c[shard.index() % c.len()]),
                connections_max: config.max_connections_per_shard,
                ready: ready_tx.clone(),
            };
            threads.push(shard::spawn(setup)?);
        }
        let server = Server {
            local_addr,
            fingerprint: identity.fingerprint,
            stats,
            shutdown,
            threads,
            _data_dir: data_dir,
        };
        for _ in 0..config.shards {
            let started = ready
                .recv()
                .map_err(|_| anyhow!("a shard stopped while starting"))?;
            if let Err(reason) = started {
                let _ = server.shutdown();
                return Err(anyhow!("a shard failed to start: {reason}"));
            }
        }
        info!(
            addr = %local_addr,
            shards = config.shards,
            products = catalog.product_count(),
            fingerprint = %hex::encode(identity.fingerprint),
            "souk is serving"
        );
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// SHA-256 of the server certificate, for clients that pin it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `SHUTDOWN_GRACE`), closes connections and joins every shard.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let mut panicked = 0;
        for thread in std::mem::take(&mut self.threads) {
            panicked += usize::from(thread.join().is_err());
        }
        if panicked > 0 {
            return Err(anyhow!("{panicked} shard thread(s) panicked"));
        }
        info!("souk stopped");
        Ok(())
    }
}

/// Splits the stock over the shards that own each SKU.
fn stock_per_shard(data: &CatalogData, placement: Placement) -> Vec<Vec<(Sku, i64)>> {
    let mut per_shard = vec![Vec::new(); placement.shard_count()];
    for (sku, on_hand) in &data.stock {
        per_shard[placement.sku_owner(sku).index()].push((sku.clone(), *on_hand));
    }
    per_shard
}
