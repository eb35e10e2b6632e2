//! Failed-attempt limits (login brute force): at most `max` attempts that
//! did not succeed per key within a sliding `window`, after which attempts
//! are refused with `LimitExceeded` and a retry hint until the oldest ages
//! out.
//!
//! Keys are owned like any other state: `Placement::text_owner(key)` holds a
//! key's failures, so every shard's logins for one account (or from one
//! address) count together. A key is counted whether or not an account
//! exists for it, so a refusal reveals nothing about which e-mails exist.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use souk_wire::api::{ApiError, ErrorStatus, UnixMillis};

/// What a caller tells the key's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// An attempt starts: refused past the limit, else counted as a
    /// failure until it is known to have succeeded. Counting up front
    /// means a burst of concurrent guesses cannot all slip in while the
    /// first ones are still being checked.
    Begin,
    /// The attempt succeeded: its count is taken back; with `forgive`,
    /// every failure of the key is.
    Succeeded { forgive: bool },
}

/// The refusal past the failure limit, retrying in `wait_ms`. It reads
/// the same whether or not the account exists.
pub fn too_many_failures(wait_ms: u64) -> ApiError {
    let mut error = ApiError::new(
        ErrorStatus::LimitExceeded,
        "too many failed attempts: try again later",
    );
    error.retry_after_ms = u32::try_from(wait_ms.max(1)).unwrap_or(u32::MAX);
    error
}

#[derive(Debug)]
pub struct Throttle {
    max: usize,
    window: Duration,
    /// Failure times per key, oldest first; at most `max` each.
    failures: HashMap<String, VecDeque<UnixMillis>>,
    keys_max: usize,
}

impl Throttle {
    pub fn new(max: usize, window: Duration, keys_max: usize) -> Throttle {
        Throttle {
            max,
            window,
            failures: HashMap::new(),
            keys_max,
        }
    }

    pub fn attempt(
        &mut self,
        key: &str,
        attempt: Attempt,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        match attempt {
            Attempt::Begin => {
                self.check(key, now)?;
                self.fail(key, now);
                Ok(())
            }
            Attempt::Succeeded { forgive: true } => {
                self.failures.remove(key);
                Ok(())
            }
            Attempt::Succeeded { forgive: false } => {
                if let Some(times) = self.failures.get_mut(key) {
                    times.pop_back();
                    if times.is_empty() {
                        self.failures.remove(key);
                    }
                }
                Ok(())
            }
        }
    }

    fn window_start(&self, now: UnixMillis) -> UnixMillis {
        UnixMillis(now.0.saturating_sub(self.window.as_millis() as u64))
    }

    fn check(&mut self, key: &str, now: UnixMillis) -> Result<(), ApiError> {
        let start = self.window_start(now);
        let Some(times) = self.failures.get_mut(key) else {
            return Ok(());
        };
        while times.front().is_some_and(|t| *t <= start) {
            times.pop_front();
        }
        if times.len() < self.max {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let retry_after = (oldest.0 + self.window.as_millis() as u64).saturating_sub(now.0);
        Err(too_many_failures(retry_after))
    }

    fn fail(&mut self, key: &str, now: UnixMillis) {
        if !self.failures.contains_key(key) && self.failures.len() >= self.keys_max {
            let start = self.window_start(now);
            self.failures
                .retain(|_, times| times.back().is_some_and(|t| *t > start));
            if self.failures.len() >= self.keys_max {
                // Still full of live keys (an attack on many accounts):
                // forget the key whose last failure is oldest.
                let oldest = self
                    .failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    self.failures.remove(&oldest);
                }
            }
        }
        let times = self.failures.entry(key.to_owned()).or_default();
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn failures_past_the_limit_are_refused_until_they_age_out() {
        let mut throttle = Throttle::new(3, MINUTE, 100);
        let at = |s: u64| UnixMillis(1_000_000 + s * 1000);
        for s in 0..3 {
            throttle.attempt("acct:a", Attempt::Begin, at(s)).unwrap();
        }
        let refused = throttle
            .attempt("acct:a", Attempt::Begin, at(10))
            .unwrap_err();
        assert_eq!(refused.status, ErrorStatus::LimitExceeded);
        assert_eq!(
            refused.retry_after_ms, 50_000,
            "until the first failure is a minute old"
        );
        throttle.attempt("acct:b", Attempt::Begin, at(10)).unwrap();
        throttle.attempt("acct:a", Attempt::Begin, at(61)).unwrap();
    }

    #[test]
    fn success_forgives_and_the_key_count_is_bounded() {
        let mut throttle = Throttle::new(2, MINUTE, 2);
        let now = UnixMillis(5_000);
        throttle.attempt("a", Attempt::Begin, now).unwrap();
        throttle.attempt("a", Attempt::Begin, now).unwrap();
        assert!(throttle.attempt("a", Attempt::Begin, now).is_err());
        throttle
            .attempt("a", Attempt::Succeeded { forgive: false }, now)
            .unwrap();
        throttle.attempt("a", Attempt::Begin, now).unwrap();
        assert!(
            throttle.attempt("a", Attempt::Begin, now).is_err(),
            "one taken back, one used"
        );
        throttle
            .attempt("a", Attempt::Succeeded { forgive: true }, now)
            .unwrap();
        assert!(throttle.attempt("a", Attempt::Begin, now).is_ok());
        for key in ["x", "y", "z"] {
            throttle.attempt(key, Attempt::Begin, now).unwrap();
        }
        assert!(throttle.len() <= 2);
    }
}

/// What a per-customer rate is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Reads of the customer's own data: cart, orders, profile, addresses.
    Reads,
    CartWrites,
    Checkouts,
    /// New connections per source address (`io::gate`).
    NewConnections,
}

impl RateClass {
    pub fn name(self) -> &'static str {
        match self {
            RateClass::Reads => "reads",
            RateClass::CartWrites => "cart-writes",
            RateClass::Checkouts => "checkouts",
            RateClass::NewConnections => "new-connections",
        }
    }
}

/// A rate: `per_second` sustained (never 0), `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_second` with bursts of twice that, and at least 5, so that a
    /// person's quick clicks never meet it; `None` (no limit) for 0, as an
    /// operator's setting says it.
    pub fn limiting(per_second: u32) -> Option<Rate> {
        (per_second > 0).then(|| Rate {
            per_second,
            burst: per_second.saturating_mul(2).max(5),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token, so refills need no floating point.
    milli_tokens: u64,
    refilled_at: UnixMillis,
}

/// Token buckets per customer (user or guest device) and class, held by
/// the shard that runs the limited operation for that customer (the cart's
/// and the user's owner), so a check is a local map lookup.
#[derive(Debug)]
pub struct RateLimits {
    rates: HashMap<RateClass, Rate>,
    buckets: HashMap<(String, RateClass), Bucket>,
    keys_max: usize,
}

impl RateLimits {
    pub fn new(rates: impl IntoIterator<Item = (RateClass, Rate)>, keys_max: usize) -> RateLimits {
        let rates: HashMap<RateClass, Rate> = rates.into_iter().collect();
        assert!(
            rates.values().all(|rate| rate.per_second > 0),
            "an unlimited class has no rate, not a rate of 0"
        );
        RateLimits {
            rates,
            buckets: HashMap::new(),
            keys_max,
        }
    }

    /// The rate of `class`, unless it is unlimited.
    pub fn rate(&self, class: RateClass) -> Option<Rate> {
        self.rates.get(&class).copied()
    }

    /// Takes one token for `who` in `class`, or says when to retry.
    pub fn take(&mut self, who: &str, class: RateClass, now: UnixMillis) -> Result<(), ApiError> {
        let Some(rate) = self.rate(class) else {
            return Ok(());
        };
        let full = u64::from(rate.burst.max(1)) * 1000;
        if self.buckets.len() >= self.keys_max {
            // Buckets that refilled completely hold nothing worth keeping.
            self.buckets.retain(|(_, class), bucket| {
                let per_second = self.rates.get(class).map_or(0, |r| u64::from(r.per_second));
                let elapsed = now.0.saturating_sub(bucket.refilled_at.0);
                bucket.milli_tokens + elapsed * per_second < full
            });
            if self.buckets.len() >= self.keys_max {
                self.buckets.clear();
            }
        }
        let bucket = self
            .buckets
            .entry((who.to_owned(), class))
            .or_insert(Bucket {
                milli_tokens: full,
                refilled_at: now,
            });
        let elapsed = now.0.saturating_sub(bucket.refilled_at.0);
        bucket.milli_tokens =
            (bucket.milli_tokens + elapsed * u64::from(rate.per_second)).min(full);
        bucket.refilled_at = now;
        if bucket.milli_tokens >= 1000 {
            bucket.milli_tokens -= 1000;
            return Ok(());
        }
        let missing = 1000 - bucket.milli_tokens;
        Err(too_many(rate, missing.div_ceil(u64::from(rate.per_second))))
    }
}

/// The refusal for a customer over `rate`, retrying in `wait_ms`.
pub fn too_many(rate: Rate, wait_ms: u64) -> ApiError {
    let mut error = ApiError::new(
        ErrorStatus::LimitExceeded,
        format!("too many requests: at most {} per second", rate.per_second),
    );
    error.retry_after_ms = u32::try_from(wait_ms.max(1)).unwrap_or(u32::MAX);
    error
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate {
            per_second: 2,
            burst: 3,
        };
        let mut limits = RateLimits::new([(RateClass::Checkouts, rate)], 100);
        let t = |ms: u64| UnixMillis(10_000 + ms);
        for _ in 0..3 {
            limits.take("u:1", RateClass::Checkouts, t(0)).unwrap();
        }
        let refused = limits.take("u:1", RateClass::Checkouts, t(0)).unwrap_err();
        assert_eq!(refused.status, ErrorStatus::LimitExceeded);
        assert_eq!(refused.retry_after_ms, 500, "one token every 500 ms");
        limits.take("u:2", RateClass::Checkouts, t(0)).unwrap();
        limits.take("u:1", RateClass::CartWrites, t(0)).unwrap();
        assert!(limits.take("u:1", RateClass::Checkouts, t(499)).is_err());
        limits.take("u:1", RateClass::Checkouts, t(500)).unwrap();
    }

    #[test]
    fn a_zero_rate_is_no_limit_and_keys_stay_bounded() {
        assert_eq!(Rate::limiting(0), None);
        let off = Rate::limiting(0).map(|rate| (RateClass::Checkouts, rate));
        let mut limits = RateLimits::new(off, 2);
        for _ in 0..100 {
            limits
                .take("u:1", RateClass::Checkouts, UnixMillis(1))
                .unwrap();
        }
        let on = Rate {
            per_second: 1,
            burst: 1,
        };
        let mut limits = RateLimits::new([(RateClass::CartWrites, on)], 2);
        for n in 0..10 {
            limits
                .take(&format!("u:{n}"), RateClass::CartWrites, UnixMillis(1))
                .unwrap();
        }
        assert!(limits.buckets.len() <= 2);
    }
}
