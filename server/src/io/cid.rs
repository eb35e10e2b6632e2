//! QUIC connection ids that name the shard owning the connection.
//!
//! The kernel spreads packets over the shards' sockets by address 4-tuple,
//! so after a phone changes network its packets may reach another shard.
//! Because every connection id souk issues encodes its owner shard, the
//! receiving shard can tell whose packet it is.
//!
//! A plain shard byte would let an on-path observer link a connection's ids
//! across a migration (RFC 9000 §5.1 forbids ids that correlate). So the
//! shard byte is masked: `id[0] = shard ^ mask(id[1..])`, where `mask` is a
//! keyed hash with a key drawn at server start and shared by its shards.
//! Without the key the first byte looks as random as the rest.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use quinn::{ConnectionId, ConnectionIdGenerator};
use rand::RngExt;

use crate::shard::ShardId;

/// Length of the ids souk issues: one masked shard byte and seven random
/// bytes, enough entropy that ids cannot be guessed.
pub const CID_BYTES: usize = 8;

/// The secret shared by one server's shards.
#[derive(Debug, Clone, Default)]
pub struct CidKey(RandomState);

impl CidKey {
    fn mask(&self, rest: &[u8]) -> u8 {
        self.0.hash_one(rest) as u8
    }

    /// The shard a connection id of this server names, if it is one of ours.
    pub fn shard_of(&self, cid: &[u8]) -> Option<ShardId> {
        if cid.len() != CID_BYTES {
            return None;
        }
        Some(ShardId(u16::from(cid[0] ^ self.mask(&cid[1..]))))
    }
}

/// quinn's hook for choosing the ids of a shard's connections.
#[derive(Debug)]
pub struct ShardCids {
    shard: u8,
    key: CidKey,
}

impl ShardCids {
    pub fn new(shard: ShardId, key: CidKey) -> ShardCids {
        let shard = u8::try_from(shard.0).expect("shard ids fit a byte (SHARDS_MAX)");
        ShardCids { shard, key }
    }
}

impl ConnectionIdGenerator for ShardCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_BYTES];
        rand::rng().fill(&mut bytes[1..]);
        bytes[0] = self.shard ^ self.key.mask(&bytes[1..]);
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_BYTES
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_names_its_shard_under_the_key_only() {
        let key = CidKey::default();
        for shard in [0u16, 1, 7, 255] {
            let mut generator = ShardCids::new(ShardId(shard), key.clone());
            for _ in 0..100 {
                let cid = generator.generate_cid();
                assert_eq!(cid.len(), CID_BYTES);
                assert_eq!(key.shard_of(&cid), Some(ShardId(shard)));
            }
        }
        let mut generator = ShardCids::new(ShardId(3), key);
        let other_key = CidKey::default();
        let misses = (0..100)
            .filter(|_| other_key.shard_of(&generator.generate_cid()) != Some(ShardId(3)))
            .count();
        assert!(misses > 80, "without the key the shard byte looks random");
    }

    #[test]
    fn foreign_ids_are_not_ours() {
        assert_eq!(CidKey::default().shard_of(&[1, 2, 3]), None);
    }
}
