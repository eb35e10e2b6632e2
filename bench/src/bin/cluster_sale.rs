//! A flash sale on one CQL cluster, sold by one souk node and then by
//! several sharing it, and the durable order write on CQL beside the
//! embedded store's, in one run:
//!
//!     cargo run --release -p souk-bench --bin cluster-sale -- \
//!         --scylla-nodes 127.0.0.1:9042 --scylla-replication-factor 1 --nodes 1,3
//!
//! - The sale: each node count gets a keyspace of its own, the nodes start
//!   in this process (each with its own shards), `--buyers` signed-in
//!   customers spread round robin over them buy one unit at a time ("buy
//!   now") until `--units` are sold. Units sold per second of sale, the
//!   checkout latency, and the escrow's takes from the pool (refills) per
//!   second, summed over the nodes. Selling more than `--units` fails the
//!   run.
//! - The durable write: `--writers` writers insert orders for `--seconds`
//!   into the CQL backend and into the embedded store (fjall), each waiting
//!   for its write before the next: p50 and p99.
//! - The reading of a node's orders that a reclaim of a dead node makes
//!   (`held_by`), over the orders the CQL writers stored: its time.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use souk_bench::closed_loop;
use souk_client::api::{Checkout, CheckoutLine, ErrorStatus, RestockMode};
use souk_client::{Client, ClientConfig, RetryPolicy, Trust, new_idempotency_key};
use souk_server::config::StorageConfig;
use souk_server::{Config, Server};
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::scylla::{ScyllaConfig, ScyllaStore};
use souk_storage::store::Store;
use souk_storage::{demo, testing};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// CQL nodes (host:port), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    scylla_nodes: Vec<String>,
    #[arg(long, default_value_t = 1)]
    scylla_replication_factor: u32,
    /// Node counts to sell with, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Shards of each node.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    #[arg(long, default_value_t = 5_000)]
    units: i64,
    #[arg(long, default_value_t = 96)]
    buyers: usize,
    /// Writers of the durable-write measurement.
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

const ADMIN_EMAIL: &str = "admin@example.org";
const ADMIN_PASSWORD: &str = "cluster sale benchmark admin";

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

fn scylla(args: &Args, keyspace: &str, node: &str) -> ScyllaConfig {
    let mut config = ScyllaConfig::new(args.scylla_nodes.clone(), keyspace.into());
    config.replication_factor = args.scylla_replication_factor;
    config.node = node.into();
    config
}

struct Sale {
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
    refills_per_second: f64,
    units_per_refill: f64,
}

fn sale(args: &Args, nodes: usize) -> anyhow::Result<Sale> {
    let keyspace = format!("souk_cluster_sale_{}", now_ms());
    let dirs: Vec<tempfile::TempDir> = (0..nodes)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let configs: Vec<Config> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| Config {
            listen: "127.0.0.1:0".parse().expect("an address"),
            http_listen: None,
            shards: args.shards,
            data_dir: dir.path().to_path_buf(),
            demo_products: 50,
            purchase_limit: 0,
            rate_checkouts: 0,
            rate_cart_writes: 0,
            new_connections_per_sec: 0,
            storage: StorageConfig::Scylla(scylla(args, &keyspace, &format!("bench-{n}"))),
            ..Config::default()
        })
        .collect();
    souk_server::server::create_admin(&configs[0], ADMIN_EMAIL, ADMIN_PASSWORD, None)?;
    let mut servers = vec![Server::start(&configs[0])?];
    let key = souk_server::server::TOKEN_KEY_FILE;
    for config in &configs[1..] {
        std::fs::copy(configs[0].data_dir.join(key), config.data_dir.join(key))?;
        servers.push(Server::start(config)?);
    }
    let client_configs: Vec<ClientConfig> = servers
        .iter()
        .map(|server| {
            let mut c = ClientConfig::new(
                server.local_addr(),
                Trust::Fingerprint(server.fingerprint()),
            );
            c.request_timeout = Duration::from_secs(30);
            c.retry = RetryPolicy::default();
            c
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async {
        let admin = Client::connect(client_configs[0].clone()).await?;
        admin.login(ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
        let product = admin.get_product(&demo::product_id(1)).await?;
        let sku = product.variants[0].sku.clone();
        admin
            .admin_restock(&sku, args.units, RestockMode::Set)
            .await?;
        let mut buyers = Vec::with_capacity(args.buyers);
        for n in 0..args.buyers {
            let client = Client::connect(client_configs[n % nodes].clone()).await?;
            client
                .register(
                    &format!("buyer{n}@example.org"),
                    "cluster-sale-password",
                    None,
                )
                .await?;
            buyers.push(client);
        }
        let sold = Rc::new(Cell::new(0i64));
        let last_sale = Rc::new(Cell::new(Instant::now()));
        let histogram = Rc::new(std::cell::RefCell::new(souk_bench::histogram()));
        let units = args.units;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in buyers {
            let (sku, sold, last_sale, histogram) = (
                sku.clone(),
                sold.clone(),
                last_sale.clone(),
                histogram.clone(),
            );
            tasks.push(tokio::task::spawn_local(async move {
                let checkout = Checkout {
                    device_id: None,
                    payment_method_token: "pm_tok_visa".into(),
                    shipping_address_id: None,
                    expected_total: None,
                    lines: vec![CheckoutLine {
                        sku: sku.clone(),
                        quantity: 1,
                    }],
                };
                // Sold out here may be units held by another node for a
                // moment: the buyer tries again until all are sold, or
                // nothing has sold for a while.
                while sold.get() < units && last_sale.get().elapsed() < Duration::from_secs(5) {
                    let began = Instant::now();
                    match client
                        .checkout(checkout.clone(), new_idempotency_key())
                        .await
                    {
                        Ok(_) => {
                            sold.set(sold.get() + 1);
                            last_sale.set(Instant::now());
                            histogram
                                .borrow_mut()
                                .saturating_record(began.elapsed().as_micros() as u64);
                        }
                        Err(error)
                            if matches!(
                                error.status(),
                                Some(ErrorStatus::InsufficientStock | ErrorStatus::Busy)
                            ) =>
                        {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(error) => return Err(anyhow::Error::from(error)),
                    }
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let elapsed = (last_sale.get() - start).as_secs_f64();
        anyhow::ensure!(
            sold.get() <= args.units,
            "sold {} of {} units: oversold",
            sold.get(),
            args.units
        );
        let histogram = histogram.borrow();
        anyhow::Ok((
            sold.get(),
            elapsed,
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
        ))
    });
    let (sold, elapsed, p50_us, p99_us) = outcome?;
    let takes: u64 = servers
        .iter()
        .map(|s| s.stats().total(|s| &s.escrow_takes))
        .sum();
    let taken: u64 = servers
        .iter()
        .map(|s| s.stats().total(|s| &s.escrow_units_taken))
        .sum();
    for server in servers {
        server.shutdown()?;
    }
    let config = scylla(args, &keyspace, "bench-cleanup");
    let _ = souk_storage::testing::drop_keyspace(&config.nodes, &config.keyspace);
    eprintln!(
        "{nodes} node(s): {sold} of {} units in {elapsed:.2} s",
        args.units
    );
    Ok(Sale {
        per_second: sold as f64 / elapsed,
        p50_us,
        p99_us,
        refills_per_second: takes as f64 / elapsed,
        units_per_refill: taken as f64 / takes.max(1) as f64,
    })
}

/// p50 and p99 (µs) of a durable order insert into `store`.
fn durable_writes(store: Arc<dyn Store>, writers: usize, seconds: u64) -> (f64, u64, u64) {
    let next = Arc::new(AtomicU64::new(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    let measured = local.block_on(&runtime, async move {
        let operation = move || {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let store = store.clone();
            async move { store.insert_order(&testing::order(id)).await.is_ok() }
        };
        closed_loop(
            writers,
            Duration::from_secs(1),
            Duration::from_secs(seconds),
            operation,
        )
        .await
    });
    (measured.per_second(), measured.p50_us(), measured.p99_us())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("| nodes | units/s | checkout p50 / p99 µs | escrow refills/s | units per refill |");
    println!("|---|---|---|---|---|");
    for &nodes in &args.nodes {
        let sale = sale(&args, nodes)?;
        println!(
            "| {nodes} | {:.0} | {} / {} | {:.1} | {:.1} |",
            sale.per_second,
            sale.p50_us,
            sale.p99_us,
            sale.refills_per_second,
            sale.units_per_refill
        );
    }

    let keyspace = format!("souk_durable_write_{}", now_ms());
    let config = scylla(&args, &keyspace, "bench-writer");
    let runtime = tokio::runtime::Runtime::new()?;
    let cql_store = Arc::new(runtime.block_on(ScyllaStore::connect(&config))?);
    let cql: Arc<dyn Store> = cql_store.clone();
    let dir = tempfile::tempdir()?;
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(
        &dir.path().join("store"),
        EngineKind::Fjall,
    )?);
    println!();
    println!(
        "| durable order insert, {} writer(s) | per second | p50 µs | p99 µs |",
        args.writers
    );
    println!("|---|---|---|---|");
    for (name, store) in [("CQL", cql), ("embedded (fjall)", embedded)] {
        let (per_second, p50, p99) = durable_writes(store, args.writers, args.seconds);
        println!("| {name} | {per_second:.0} | {p50} | {p99} |");
    }
    let started = Instant::now();
    let held = runtime.block_on(cql_store.held_by("bench-writer", None))?;
    println!();
    println!(
        "reading a node's {} orders, as a reclaim of a dead node does: {} ms",
        held.pending.len(),
        started.elapsed().as_millis()
    );
    let _ = souk_storage::testing::drop_keyspace(&config.nodes, &config.keyspace);
    drop(runtime);
    Ok(())
}
