//! Shards: which shard owns what, and how shards talk.
//!
//! A shard is one pinned OS thread with its own single-threaded runtime,
//! owning a partition of the mutable state (see the ownership table in
//! ARCHITECTURE.md). Another shard that needs that state sends the owner a
//! typed message (`mesh`) and awaits the reply.

pub mod mesh;

use std::fmt;

use souk_wire::api::{DeviceId, Sku, UserId};
use xxhash_rust::xxh3::xxh3_64;

/// A shard's index, `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// Maps state to its owner shard. The hash (xxh3) is fixed, not seeded per
/// process, so that ownership is the same after a restart: a shard rebuilds
/// exactly the counters it owned before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    shard_count: u16,
}

impl Placement {
    pub fn new(shard_count: usize) -> Placement {
        assert!(
            (1..=crate::limits::SHARDS_MAX).contains(&shard_count),
            "shard count {shard_count} out of range"
        );
        Placement {
            shard_count: shard_count as u16,
        }
    }

    pub fn shard_count(self) -> usize {
        usize::from(self.shard_count)
    }

    pub fn shards(self) -> impl Iterator<Item = ShardId> {
        (0..self.shard_count).map(ShardId)
    }

    /// The shard that owns a SKU's inventory counter.
    pub fn sku_owner(self, sku: &Sku) -> ShardId {
        self.by_hash(xxh3_64(sku.as_str().as_bytes()))
    }

    /// The shard that owns a user's cart, orders and limits.
    pub fn user_owner(self, user: UserId) -> ShardId {
        self.by_hash(xxh3_64(&user.0.to_le_bytes()))
    }

    /// The shard that owns a keyed limit (failed logins of an account or
    /// an address).
    pub fn text_owner(self, key: &str) -> ShardId {
        self.by_hash(xxh3_64(key.as_bytes()))
    }

    /// The shard that owns a device's guest cart.
    pub fn device_owner(self, device: &DeviceId) -> ShardId {
        self.by_hash(xxh3_64(device.as_str().as_bytes()))
    }

    fn by_hash(self, hash: u64) -> ShardId {
        ShardId((hash % u64::from(self.shard_count)) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_stable_and_spread() {
        let placement = Placement::new(4);
        let sku = Sku::new("P00001-M").unwrap();
        assert_eq!(placement.sku_owner(&sku), placement.sku_owner(&sku));
        let mut per_shard = [0usize; 4];
        for n in 0..4000 {
            let sku = Sku::new(format!("P{n:05}-STD")).unwrap();
            per_shard[placement.sku_owner(&sku).index()] += 1;
        }
        for count in per_shard {
            assert!((800..1200).contains(&count), "uneven spread {per_shard:?}");
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        let placement = Placement::new(1);
        assert_eq!(placement.user_owner(UserId(99)), ShardId(0));
    }
}
