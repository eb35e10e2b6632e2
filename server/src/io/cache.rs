//! Each shard's cache of catalog replies, kept as the exact frames sent:
//! a hit is a hash lookup and a write, with no decoding, no handler and no
//! FlatBuffers building.
//!
//! The key is the request frame itself. Only safe catalog reads are cached
//! (their reply depends on nothing but the request and the catalog), and a
//! frame is only ever stored after it decoded and was answered, so bytes
//! that hit are bytes already verified.
//!
//! Freshness: a catalog change empties every shard's cache as soon as the
//! shard sees the new catalog (`io::shard::follow_catalog`, one turn of its
//! event loop). Stock figures inside product details change with every
//! sale without an event; they are at most `ttl` old, and checkout always
//! reserves against the live counter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use souk_wire::api::Operation;

#[derive(Debug)]
struct Cached<R> {
    reply: R,
    expires: Instant,
}

/// Replies of type `R` by request: frames for QUIC (`Bytes`), JSON with
/// its ETag for the HTTP bridge.
#[derive(Debug)]
pub struct ReplyCache<R = Bytes> {
    entries: HashMap<Box<[u8]>, Cached<R>>,
    ttl: Duration,
    capacity: usize,
}

impl<R: Clone> ReplyCache<R> {
    /// A `ttl` of zero turns caching off.
    pub fn new(ttl: Duration, capacity: usize) -> ReplyCache<R> {
        ReplyCache {
            entries: HashMap::new(),
            ttl,
            capacity,
        }
    }

    pub fn caches_anything(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub fn caches(&self, operation: Operation) -> bool {
        !self.ttl.is_zero()
            && matches!(
                operation,
                Operation::ListCategories | Operation::BrowseCategory | Operation::GetProduct
            )
    }

    pub fn get(&mut self, request: &[u8], now: Instant) -> Option<R> {
        let cached = self.entries.get(request)?;
        if cached.expires > now {
            return Some(cached.reply.clone());
        }
        self.entries.remove(request);
        None
    }

    pub fn put(&mut self, request: &[u8], reply: R, now: Instant) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, cached| cached.expires > now);
            if self.entries.len() >= self.capacity {
                // Still full of live entries: start over rather than pay
                // for recency tracking on every hit.
                self.entries.clear();
            }
        }
        let cached = Cached {
            reply,
            expires: now + self.ttl,
        };
        self.entries.insert(request.into(), cached);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_for_the_ttl_and_the_cache_stays_bounded() {
        let mut cache = ReplyCache::new(Duration::from_secs(1), 2);
        let now = Instant::now();
        cache.put(b"a", Bytes::from_static(b"A"), now);
        assert_eq!(cache.get(b"a", now).as_deref(), Some(&b"A"[..]));
        assert_eq!(
            cache.get(b"a", now + Duration::from_secs(2)),
            None,
            "expired"
        );
        assert!(cache.is_empty(), "an expired entry is dropped when met");
        cache.put(b"a", Bytes::from_static(b"A"), now);
        cache.put(b"b", Bytes::from_static(b"B"), now);
        cache.put(b"c", Bytes::from_static(b"C"), now);
        assert!(cache.len() <= 2);
        assert_eq!(cache.get(b"c", now).as_deref(), Some(&b"C"[..]));
    }

    #[test]
    fn only_catalog_reads_are_cached_and_zero_ttl_caches_nothing() {
        let cache = ReplyCache::<Bytes>::new(Duration::from_secs(1), 10);
        assert!(cache.caches(Operation::GetProduct));
        assert!(cache.caches(Operation::BrowseCategory));
        assert!(!cache.caches(Operation::GetCart));
        assert!(
            !cache.caches(Operation::Hello),
            "hello carries the server time"
        );
        assert!(!ReplyCache::<Bytes>::new(Duration::ZERO, 10).caches(Operation::GetProduct));
    }
}
