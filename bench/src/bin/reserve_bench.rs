//! Reservations per second: on the owner's core directly, and from another
//! shard through the mesh (the path a checkout takes when the buyer's shard
//! does not own the SKU).
//!
//!     cargo run --release -p souk-bench --bin reserve-bench
//!
//! Each reservation is followed by its commit (reserved → sold), as a paid
//! order does, so the counter never runs dry. The cross-shard figure uses
//! two threads, a calling shard and an owner shard, each a current-thread
//! runtime like a real shard; it is reported per owner core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use souk_bench::{closed_loop, median};
use souk_server::domain::inventory::Inventory;
use souk_server::domain::{ShardAnswer, ShardCall};
use souk_server::shard::ShardId;
use souk_server::shard::mesh;
use souk_server::stats::Stats;
use souk_wire::api::{OrderId, Sku, UserId};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Reservations in flight from the calling shard.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
}

const STOCK: i64 = 4_000_000_000_000;

fn sku() -> Sku {
    Sku::new("HOT-SKU-1").expect("valid")
}

fn in_core(seconds: u64) -> f64 {
    let mut inventory = Inventory::load(
        [(sku(), STOCK.min(souk_wire::limits::STOCK_UNITS_MAX))],
        None,
    );
    let lines = vec![(sku(), 1)];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            n += 1;
            inventory
                .reserve(OrderId(n), UserId(n % 1000), &lines)
                .expect("stock lasts");
            inventory.commit(OrderId(n));
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn cross_shard(seconds: u64, in_flight: usize) -> f64 {
    let stats = Arc::new(Stats::new(2));
    let mut meshes = mesh::build::<ShardCall, ShardAnswer>(2, 4096, Duration::from_secs(5), stats);
    let (owner_mesh, mut inbox) = meshes.pop().expect("two");
    let (caller, _caller_inbox) = meshes.pop().expect("two");
    let owner = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut inventory =
                Inventory::load([(sku(), souk_wire::limits::STOCK_UNITS_MAX)], None);
            while let Some(envelope) = inbox.recv().await {
                let answer = match envelope.call {
                    ShardCall::Reserve { order, user, lines } => {
                        ShardAnswer::Reserved(inventory.reserve(order, user, &lines))
                    }
                    ShardCall::Commit(order) => ShardAnswer::Settled(inventory.commit(order)),
                    other => unreachable!("{other:?}"),
                };
                let _ = envelope.reply.send(answer);
            }
        });
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let measured = local.block_on(&runtime, async move {
        let operation = move || {
            let (caller, n) = (
                caller.clone(),
                next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
            async move {
                let reserve = ShardCall::Reserve {
                    order: OrderId(n),
                    user: UserId(n % 1000),
                    lines: vec![(sku(), 1)],
                };
                let reserved = matches!(
                    caller.call(ShardId(1), reserve).await,
                    Ok(ShardAnswer::Reserved(Ok(())))
                );
                let committed = matches!(
                    caller.call(ShardId(1), ShardCall::Commit(OrderId(n))).await,
                    Ok(ShardAnswer::Settled(true))
                );
                reserved && committed
            }
        };
        closed_loop(
            in_flight,
            Duration::from_millis(500),
            Duration::from_secs(seconds),
            operation,
        )
        .await
    });
    drop(local);
    drop(runtime);
    // The owner stops once no handle can send to it.
    drop(owner_mesh);
    owner.join().expect("owner thread");
    assert_eq!(measured.errors, 0, "every reservation succeeded");
    measured.per_second()
}

fn main() {
    let args = Args::parse();
    let local: Vec<f64> = (0..args.runs).map(|_| in_core(args.seconds)).collect();
    let remote: Vec<f64> = (0..args.runs)
        .map(|_| cross_shard(args.seconds, args.in_flight))
        .collect();
    println!(
        "reserve + commit of one unit on one hot SKU, {} runs of {} s, medians",
        args.runs, args.seconds
    );
    println!(
        "  on the owner's core:           {:>12.0} reservations/s",
        median(local)
    );
    println!(
        "  from another shard (mesh):     {:>12.0} reservations/s per owner core ({} in flight)",
        median(remote),
        args.in_flight
    );
}
