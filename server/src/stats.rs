//! Counters per shard. Each shard writes only its own `ShardStats` (one
//! writer per cache line, so no contention); anyone may read them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::shard::ShardId;

/// One shard's counters, padded to its own cache lines so that shards never
/// write the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    pub requests: Counter,
    pub request_errors: Counter,
    pub bad_frames: Counter,
    pub cross_shard_calls: Counter,
    pub cross_shard_busy: Counter,
    pub cross_shard_served: Counter,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    /// New connections asked to prove their address (QUIC Retry).
    pub connections_retried: Counter,
    /// New connections refused for their address opening too many.
    pub connections_rate_limited: Counter,
    pub connections_closed: Counter,
    /// Packets of migrated connections handed to their owner shard.
    pub datagrams_forwarded: Counter,
    /// Packets for another shard dropped because its queue was full.
    pub datagrams_forward_dropped: Counter,
    /// Catalog reads answered from the shard's reply cache, and those that
    /// had to be built.
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// Where nodes share stock: takes from the cluster's pools, the units
    /// they moved here, and units given back.
    pub escrow_takes: Counter,
    pub escrow_units_taken: Counter,
    pub escrow_units_returned: Counter,
}

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn increment(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every shard's counters.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[ShardStats]>,
}

impl Stats {
    pub fn new(shard_count: usize) -> Stats {
        Stats {
            shards: (0..shard_count).map(|_| ShardStats::default()).collect(),
        }
    }

    pub fn shard(&self, shard: ShardId) -> &ShardStats {
        &self.shards[shard.index()]
    }

    pub fn shards(&self) -> &[ShardStats] {
        &self.shards
    }

    /// Share of cacheable catalog reads answered from the reply caches.
    pub fn cache_hit_rate(&self) -> f64 {
        let hits = self.total(|s| &s.cache_hits) as f64;
        let misses = self.total(|s| &s.cache_misses) as f64;
        if hits + misses == 0.0 {
            0.0
        } else {
            hits / (hits + misses)
        }
    }

    /// The sum of one counter over all shards.
    pub fn total(&self, counter: impl Fn(&ShardStats) -> &Counter) -> u64 {
        self.shards.iter().map(|s| counter(s).get()).sum()
    }
}
