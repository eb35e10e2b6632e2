//! The child side of the storage crash test (`tests/crash.rs`): inserts
//! orders through the embedded store as fast as it can and prints the id of
//! each order the store acknowledged, one per line, until it is killed.
//!
//!     crash-writer <data dir> <fjall|redb> <first order id> <writers>

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::model::OrderRecord;
use souk_storage::store::OrderStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, engine, first, writers] = args.as_slice() else {
        eprintln!("usage: crash-writer <data dir> <fjall|redb> <first order id> <writers>");
        std::process::exit(2);
    };
    let engine: EngineKind = engine.parse().expect("engine");
    let next = Arc::new(AtomicU64::new(first.parse().expect("first id")));
    let writers: usize = writers.parse().expect("writers");
    let store = Arc::new(EmbeddedStore::open(dir.as_ref(), engine).expect("open store"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for _ in 0..writers {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let order: OrderRecord = souk_storage::testing::order(id);
                    store.insert_order(&order).await.expect("insert");
                    // Written only after the store acknowledged the order.
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{id}").expect("stdout");
                    stdout.flush().expect("stdout");
                }
            });
        }
        // The writers run until the test kills this process.
        std::future::pending::<()>().await;
    });
}
