//! Cold start with a large store: how long from `souk` starting on a data
//! directory holding `--orders` orders to its first answered request.
//!
//!     cargo run --release -p souk-bench --bin cold-start -- --orders 1000000
//!
//! Fills a fresh data directory through the embedded store (many writers,
//! group commit), closes it, then starts the server on it and times start
//! (which reads every order to rebuild the stock counters), connect and the
//! first product-detail reply, several times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use souk_client::{Client, ClientConfig, Trust};
use souk_server::config::StorageConfig;
use souk_server::{Config, Server};
use souk_storage::Store;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::OrderStore;
use souk_storage::{demo, testing};

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
}

fn fill(dir: &std::path::Path, engine: EngineKind, orders: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = Arc::new(EmbeddedStore::open(dir, engine)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let next = Arc::new(AtomicU64::new(1));
        let mut writers = Vec::new();
        for _ in 0..256 {
            let (store, next) = (store.clone(), next.clone());
            writers.push(tokio::spawn(async move {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id > orders {
                        return Ok::<(), souk_storage::StorageError>(());
                    }
                    store.insert_order(&settled_order(id)).await?;
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

/// A stored order as a shop accumulates them: nearly all paid, some
/// cancelled, a few still awaiting payment.
fn settled_order(id: u64) -> souk_storage::model::OrderRecord {
    let mut order = testing::order(id);
    order.status = match id % 100 {
        0 => souk_wire::api::OrderStatus::PendingPayment,
        1..=4 => souk_wire::api::OrderStatus::Cancelled,
        _ => souk_wire::api::OrderStatus::Paid,
    };
    order
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let filled = fill(&data.path().join("store"), args.engine, args.orders)?;
    println!(
        "stored {} orders in {:.1} s ({:.0} orders/s through group commit)",
        args.orders,
        filled.as_secs_f64(),
        args.orders as f64 / filled.as_secs_f64()
    );
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        shards: 2,
        data_dir: data.path().to_path_buf(),
        pin_threads: false,
        // The synthetic orders sell more than the demo stock received;
        // the rebuild's warnings about that are not the measurement.
        log: "error".into(),
        storage: StorageConfig::Embedded(args.engine),
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut times = Vec::new();
    for start in 1..=args.starts {
        let begun = Instant::now();
        let server = Server::start(&config)?;
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
            "start {start}: listening after {} ms, first product reply after {} ms",
            listening.as_millis(),
            first_reply.as_millis()
        );
        times.push(first_reply.as_secs_f64() * 1000.0);
        server.shutdown()?;
    }
    println!(
        "median time to first reply: {:.0} ms",
        souk_bench::median(times)
    );
    Ok(())
}
