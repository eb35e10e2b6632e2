//! Cold start with a large store: how long from `souk` starting on a data
//! directory holding `--orders` orders to its first answered request.
//!
//!     cargo run --release -p souk-bench --bin cold-start -- --orders 1000000
//!     cargo run --release -p souk-bench --bin cold-start -- --orders 100000 \
//!         --scylla-nodes 127.0.0.1:9042 --scylla-replication-factor 1
//!
//! Fills a fresh data directory through the embedded store (many writers,
//! group commit), or a fresh keyspace on a CQL cluster (dropped at the
//! end), with `--days` of order history, closes it, then starts the
//! server on it and times start, connect and the first product-detail
//! reply, several times: first with every order to replay (a store no
//! server has folded yet), then after folding the orders older than the
//! replay window into the stock snapshot, as a running server does every
//! minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use souk_client::{Client, ClientConfig, Trust};
use souk_server::config::StorageConfig;
use souk_server::domain::orders::IdGenerator;
use souk_server::{Config, Server, limits};
use souk_storage::Store;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::model::OrderRecord;
use souk_storage::scylla::{ScyllaConfig, ScyllaStore};
use souk_storage::{demo, testing};
use souk_wire::api::{OrderId, OrderStatus, UnixMillis};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Timed starts.
    #[arg(long, default_value_t = 3)]
    starts: usize,
    #[arg(long, default_value = "fjall")]
    engine: EngineKind,
    /// Days of history the orders are spread over, ending now.
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Store on this CQL cluster (host:port,...) instead of the embedded
    /// store.
    #[arg(long, value_delimiter = ',')]
    scylla_nodes: Option<Vec<String>>,
    #[arg(long, default_value_t = 1)]
    scylla_replication_factor: u32,
}

/// Where the orders are kept.
enum Backend {
    Embedded(std::path::PathBuf, EngineKind),
    Scylla(ScyllaConfig),
}

impl Backend {
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Backend::Embedded(dir, engine) => Arc::new(EmbeddedStore::open(dir, *engine)?),
            Backend::Scylla(config) => Arc::new(ScyllaStore::connect(config).await?),
        })
    }

    fn storage(&self) -> StorageConfig {
        match self {
            Backend::Embedded(_, engine) => StorageConfig::Embedded(*engine),
            Backend::Scylla(config) => StorageConfig::Scylla(config.clone()),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn fill(backend: &Backend, orders: u64, days: u64) -> anyhow::Result<Duration> {
    let (end, span) = (now_ms(), days * 86_400_000);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = backend.open().await?;
        let next = Arc::new(AtomicU64::new(1));
        let mut writers = Vec::new();
        // Enough writers to fill group commits; a CQL cluster (on the same
        // machine, for the tests) is driven by fewer.
        let writers_count = match backend {
            Backend::Embedded(..) => 256,
            Backend::Scylla(_) => 64,
        };
        for _ in 0..writers_count {
            let (store, next) = (store.clone(), next.clone());
            writers.push(tokio::spawn(async move {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id > orders {
                        return anyhow::Ok(());
                    }
                    store
                        .insert_order(&historic_order(id, orders, end, span))
                        .await?;
                }
            }));
        }
        for writer in writers {
            writer.await??;
        }
        store.close().await?;
        anyhow::Ok(())
    })?;
    Ok(started.elapsed())
}

/// Order `n` of `count`, placed evenly over `span` ms up to `end`, as a
/// shop accumulates them: nearly all paid, some cancelled, and the ones of
/// the last reservation period still awaiting payment.
fn historic_order(n: u64, count: u64, end: u64, span: u64) -> OrderRecord {
    let at = end - span + span * n / count;
    let mut order = testing::order(IdGenerator::first_at(UnixMillis(at)) + n % 4096);
    order.created_at = UnixMillis(at);
    order.updated_at = UnixMillis(at);
    order.status = match n % 100 {
        _ if at + 15 * 60_000 > end => OrderStatus::PendingPayment,
        0..=4 => OrderStatus::Cancelled,
        _ => OrderStatus::Paid,
    };
    order
}

/// What the running server does every `STOCK_SNAPSHOT_INTERVAL`.
fn fold(backend: &Backend) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lag = limits::STOCK_SNAPSHOT_LAG.as_millis() as u64;
    let below = OrderId(IdGenerator::first_at(UnixMillis(now_ms() - lag)));
    let folded = runtime.block_on(async {
        let store = backend.open().await?;
        let mut folded = 0;
        loop {
            let step = limits::STOCK_SNAPSHOT_STEP;
            let progress = store
                .advance_stock_snapshot(below, step, limits::SHARDS_MAX as u16)
                .await?;
            folded += progress.folded;
            if progress.folded < step {
                break;
            }
        }
        store.close().await?;
        anyhow::Ok(folded)
    })?;
    Ok((started.elapsed(), folded))
}

/// Starts the server `starts` times and returns the median time to the
/// first reply, in ms.
fn time_starts(config: &Config, starts: usize, label: &str) -> anyhow::Result<f64> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut times = Vec::new();
    for start in 1..=starts {
        let begun = Instant::now();
        let server = Server::start(config)?;
        let listening = begun.elapsed();
        let (fingerprint, addr) = (server.fingerprint(), server.local_addr());
        runtime.block_on(async {
            let client =
                Client::connect(ClientConfig::new(addr, Trust::Fingerprint(fingerprint))).await?;
            client.get_product(&demo::product_id(1)).await?;
            anyhow::Ok(())
        })?;
        let first_reply = begun.elapsed();
        println!(
            "{label}, start {start}: listening after {} ms, first product reply after {} ms",
            listening.as_millis(),
            first_reply.as_millis()
        );
        times.push(first_reply.as_secs_f64() * 1000.0);
        server.shutdown()?;
    }
    Ok(souk_bench::median(times))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let backend = match &args.scylla_nodes {
        None => Backend::Embedded(data.path().join("store"), args.engine),
        Some(nodes) => {
            let keyspace = format!("souk_cold_start_{}", now_ms());
            let mut config = ScyllaConfig::new(nodes.clone(), keyspace);
            config.replication_factor = args.scylla_replication_factor;
            config.node = "souk-bench".into();
            Backend::Scylla(config)
        }
    };
    let filled = fill(&backend, args.orders, args.days)?;
    println!(
        "stored {} orders over {} days in {:.1} s ({:.0} orders/s)",
        args.orders,
        args.days,
        filled.as_secs_f64(),
        args.orders as f64 / filled.as_secs_f64()
    );
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        shards: 2,
        data_dir: data.path().to_path_buf(),
        pin_threads: false,
        // The synthetic orders sell more than the demo stock received;
        // the rebuild's warnings about that are not the measurement.
        log: "error".into(),
        storage: backend.storage(),
        ..Config::default()
    };
    let unfolded = time_starts(&config, args.starts, "every order replayed")?;
    let (took, folded) = fold(&backend)?;
    println!(
        "folded {folded} orders older than {} h into the stock snapshot in {:.1} s",
        limits::STOCK_SNAPSHOT_LAG.as_secs() / 3600,
        took.as_secs_f64()
    );
    let snapshotted = time_starts(&config, args.starts, "after the snapshot")?;
    println!(
        "median time to first reply: {unfolded:.0} ms replaying every order, \
         {snapshotted:.0} ms replaying those after the snapshot"
    );
    if let Backend::Scylla(config) = &backend {
        testing::drop_keyspace(&config.nodes, &config.keyspace).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}
