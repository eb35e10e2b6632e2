//! The server's hot steps, each alone:
//!
//!     cargo bench -p souk-bench --bench server
//!
//! - a catalog reply served from a shard's reply cache;
//! - a reservation and its commit on the SKU's owner shard;
//! - a cross-shard call round trip through the mesh (two threads);
//! - a durable order insert through group commit, alone and 64 at once.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use souk_server::domain::inventory::Inventory;
use souk_server::io::cache::ReplyCache;
use souk_server::shard::ShardId;
use souk_server::shard::mesh;
use souk_server::stats::Stats;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::OrderStore;
use souk_storage::testing;
use souk_wire::api::{OrderId, Request, RequestBody, Sku, UserId};
use souk_wire::codec::Encoder;
use souk_wire::samples;

fn cache_hit(c: &mut Criterion) {
    let mut cache = ReplyCache::new(Duration::from_secs(60), 10_000);
    let request = Encoder::new()
        .request(&Request {
            idempotency_key: None,
            body: RequestBody::GetProduct {
                product_id: samples::product().id,
            },
        })
        .unwrap()
        .to_vec();
    let reply = Bytes::from(vec![7u8; 1200]);
    cache.put(&request, reply, Instant::now());
    let now = Instant::now();
    c.bench_function("catalog cache hit (product detail frame)", |b| {
        b.iter(|| cache.get(black_box(&request), now).unwrap().len())
    });
}

fn reservation(c: &mut Criterion) {
    let sku = Sku::new("P00001-M").unwrap();
    // Enough stock for any number of iterations criterion picks: the
    // reserved units are committed, so each iteration sells one.
    let mut inventory = Inventory::load([(sku.clone(), souk_wire::limits::STOCK_UNITS_MAX)], None);
    let lines = [(sku, 1)];
    let mut n = 0u64;
    c.bench_function("reserve + commit on the owner shard", |b| {
        b.iter(|| {
            n += 1;
            inventory
                .reserve(OrderId(n), UserId(n % 1000), black_box(&lines))
                .unwrap();
            inventory.commit(OrderId(n))
        })
    });
}

fn cross_shard(c: &mut Criterion) {
    let stats = Arc::new(Stats::new(2));
    let mut shards = mesh::build::<u64, u64>(2, 1024, Duration::from_secs(5), stats);
    let (_, mut inbox) = shards.pop().unwrap();
    let (caller, _) = shards.pop().unwrap();
    let owner = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            while let Some(envelope) = inbox.recv().await {
                let _ = envelope.reply.send(envelope.call + 1);
            }
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function("cross-shard call round trip", |b| {
        b.iter(|| {
            runtime
                .block_on(caller.call(ShardId(1), black_box(41)))
                .unwrap()
        })
    });
    // The owner stops when the last handle to its inbox is gone.
    drop(caller);
    owner.join().unwrap();
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), EngineKind::Fjall).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut next = 1u64;
    let mut group = c.benchmark_group("group commit");
    group.sample_size(20);
    group.bench_function("one durable order insert", |b| {
        b.iter(|| {
            next += 1;
            runtime
                .block_on(store.insert_order(&testing::order(next)))
                .unwrap()
        })
    });
    group.bench_function("64 concurrent durable order inserts", |b| {
        b.iter(|| {
            let first = next;
            next += 64;
            runtime.block_on(async {
                let inserts = (first..first + 64).map(|id| {
                    let store = store.clone();
                    tokio::spawn(async move { store.insert_order(&testing::order(id)).await })
                });
                for insert in inserts.collect::<Vec<_>>() {
                    insert.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, cache_hit, reservation, cross_shard, group_commit);
criterion_main!(benches);
