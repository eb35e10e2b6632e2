//! The wall clock every shard reads: token expiry, reservation expiry,
//! rate-limit windows and order times all come from here.
//!
//! It is the system clock plus an offset that only moves forward. The
//! offset is zero unless someone calls `advance`: tests and simulations
//! drive time past a token's or a reservation's expiry that way instead of
//! sleeping, and the server behaves exactly as it would after the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use souk_wire::api::UnixMillis;

/// Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    pub fn now(&self) -> UnixMillis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(since_epoch.as_millis() as u64 + self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this server's time forward by `by`, for every shard at once.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600));
        let after = other.now();
        assert!(after.0 >= before.0 + 3_600_000, "{before:?} -> {after:?}");
        assert!(after.0 < before.0 + 3_700_000, "{before:?} -> {after:?}");
    }
}
