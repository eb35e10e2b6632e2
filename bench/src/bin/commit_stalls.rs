//! Long commits of the embedded store under a steady write load: how often
//! a durable insert waits far longer than the group commit's cycle, and for
//! how long.
//!
//!     cargo run --release -p souk-bench --bin commit-stalls -- --writers 64 --seconds 60
//!
//! `writers` tasks insert orders in a closed loop, each waiting for its
//! insert to be durable, for `--seconds`: long enough for the store to fill
//! and flush memtables, start new journals and compact, which a few seconds
//! of `storage-compare` do not. A stall stops every writer at once, so the
//! report counts stalls (inserts that began within 5 ms of each other and all
//! took over `--stall-ms`) as well as inserts.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::OrderStore;
use souk_storage::testing;

/// The allocator souk's binaries use (see server/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 64)]
    writers: usize,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// An insert that took longer than this is part of a stall.
    #[arg(long, default_value_t = 50)]
    stall_ms: u64,
    /// Where the store lives (a temporary folder in it); the disk matters.
    #[arg(long, default_value = "/tmp")]
    dir: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir_in(&args.dir)?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), EngineKind::Fjall)?);
    let next = Arc::new(AtomicU64::new(1));
    let latencies = Rc::new(RefCell::new(souk_bench::histogram()));
    // The start of each long insert, in µs since `start`.
    let long = Rc::new(RefCell::new(Vec::new()));
    let per_second = Rc::new(RefCell::new(vec![0u64; args.seconds as usize]));
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(args.seconds);
    let stall = Duration::from_millis(args.stall_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for _ in 0..args.writers {
            let (store, next) = (store.clone(), next.clone());
            let (latencies, long, per_second) =
                (latencies.clone(), long.clone(), per_second.clone());
            tasks.push(tokio::task::spawn_local(async move {
                while Instant::now() < stop_at {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    if store.insert_order(&testing::order(id)).await.is_err() {
                        continue;
                    }
                    let took = began.elapsed();
                    latencies
                        .borrow_mut()
                        .saturating_record(took.as_micros().max(1) as u64);
                    if took > stall {
                        long.borrow_mut().push((began - start).as_micros() as u64);
                    }
                    let second = (began - start).as_secs() as usize;
                    if let Some(count) = per_second.borrow_mut().get_mut(second) {
                        *count += 1;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("writers do not panic");
        }
    });
    let latencies = latencies.borrow();
    let mut long = long.borrow().clone();
    long.sort_unstable();
    let stalls =
        long.windows(2).filter(|w| w[1] - w[0] > 5_000).count() + usize::from(!long.is_empty());
    let rates: Vec<f64> = per_second.borrow().iter().map(|&c| c as f64).collect();
    println!(
        "{} writers, {} s: {} inserts, median {:.0}/s (slowest second {:.0}/s)",
        args.writers,
        args.seconds,
        latencies.len(),
        souk_bench::median(rates.clone()),
        rates.iter().copied().fold(f64::INFINITY, f64::min),
    );
    println!(
        "latency µs: p50 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        latencies.value_at_quantile(0.50),
        latencies.value_at_quantile(0.99),
        latencies.value_at_quantile(0.999),
        latencies.value_at_quantile(0.9999),
        latencies.max(),
    );
    println!(
        "over {} ms: {} inserts in {} stalls",
        args.stall_ms,
        long.len(),
        stalls
    );
    Ok(())
}
