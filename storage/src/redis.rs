//! Session state several souk nodes share, in Redis through `fred`:
//! refresh tokens and sign-out cutoffs (`TokenStore`), failed-attempt
//! windows (login brute force), token buckets (per-customer rates), and a
//! pub/sub channel of sign-outs everywhere (`SignOutFeed`). One node alone keeps all
//! of this in its embedded store and in shard memory; with `--redis`,
//! every node sees the same tokens and counts against the same limits.
//!
//! Each check-and-change is one Lua script, so it is atomic on the server:
//! two nodes rotating the same refresh token at once cannot both succeed.
//! The scripts touch keys they derive from their arguments (a family's
//! tokens), which a Redis Cluster would refuse: souk expects one Redis (a
//! primary, with replicas or Sentinel for failover).
//!
//! Durability is Redis's: with `appendonly yes` and `appendfsync always`
//! an acknowledged rotation survives a crash; with less, a Redis restart
//! can forget sessions (users sign in again) or failed-login counts, never
//! orders, which stay in the order store.

use async_trait::async_trait;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, Pool, ReconnectPolicy};
use fred::types::scripts::Script;
use souk_wire::api::{UnixMillis, UserId};

use crate::error::{Result, StorageError};
use crate::model::RefreshTokenRecord;
use crate::store::{SharedLimits, TokenStore};

/// Every key souk writes starts with this, so one Redis can be shared.
const PREFIX: &str = "souk:";

/// Even a token past its expiry is kept this long, so that a late reuse of
/// a rotated token is still recognised (and revokes its family) rather than
/// looking merely unknown.
const TOKEN_KEEP_MIN_MS: u64 = 60_000;

/// Where every node publishes its sign-outs everywhere, so that the others
/// end their open connections of the user too.
const SIGN_OUTS_CHANNEL: &str = "souk:sign-outs";

/// How long a call waits for Redis before it fails `Unavailable`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

const PUT_TOKEN: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'family', ARGV[2], 'issued', ARGV[3],
  'expires', ARGV[4], 'revoked', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'rotated', ARGV[6]) end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[8])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
return 1
";

/// KEYS: old token, new token, new token's family. ARGV: the new token's
/// fields, its time to live and its hash. 0: old unknown; -1: old already
/// rotated or revoked; 1: rotated.
const ROTATE_TOKEN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'rotated') == 1 then return -1 end
if redis.call('HGET', KEYS[1], 'revoked') ~= '0' then return -1 end
redis.call('HSET', KEYS[1], 'rotated', ARGV[3])
redis.call('HSET', KEYS[2], 'user', ARGV[1], 'family', ARGV[2], 'issued', ARGV[3],
  'expires', ARGV[4], 'revoked', '0')
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return 1
";

/// KEYS: the family set. ARGV: the token key prefix. How many were revoked.
const REVOKE_FAMILY: &str = r"
local revoked = 0
for _, hash in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. hash
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'revoked', '1')
    revoked = revoked + 1
  end
end
return revoked
";

/// KEYS: the user's sign-out cutoff. ARGV: the cutoff, ms to keep it.
/// Keeps the later of the stored cutoff and this one.
const SIGN_OUT: &str = r"
local at = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if at > stored then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
";

/// A sliding window of failures. KEYS: the window. ARGV: now, window ms,
/// max, this attempt's id. 0: counted; otherwise ms until a retry can pass.
const ATTEMPT_BEGIN: &str = r"
local now, window, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= max then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
";

/// A token bucket. KEYS: the bucket. ARGV: now, per second, burst. 0: a
/// token was taken; otherwise ms until one is there. Thousandths of a
/// token keep the arithmetic in integers.
const TAKE_TOKEN: &str = r"
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local full = burst * 1000
local state = redis.call('HMGET', KEYS[1], 'milli', 'at')
local milli = tonumber(state[1]) or full
local at = tonumber(state[2]) or now
milli = math.min(full, milli + math.max(0, now - at) * rate)
local wait = 0
if milli >= 1000 then
  milli = milli - 1000
else
  wait = math.max(1, math.ceil((1000 - milli) / rate))
end
redis.call('HSET', KEYS[1], 'milli', milli, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(full / rate) + 1000)
return wait
";

/// A connection pool to one Redis and the scripts souk runs there.
#[derive(Clone)]
pub struct RedisState {
    pool: Pool,
    put_token: Script,
    rotate_token: Script,
    revoke_family: Script,
    sign_out: Script,
    attempt_begin: Script,
    take_token: Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisState(..)")
    }
}

fn unavailable(error: fred::error::Error) -> StorageError {
    StorageError::Unavailable(format!("redis: {error}"))
}

impl RedisState {
    /// Connects `connections` clients to `url` (`redis://host:port/db`)
    /// and checks that the server answers. The connections' tasks run on
    /// the calling runtime; any runtime may call the methods after.
    pub async fn connect(url: &str, connections: usize) -> Result<RedisState> {
        let config = Config::from_url(url)
            .map_err(|e| StorageError::Unavailable(format!("redis url {url:?}: {e}")))?;
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            // A request waits at most this long for Redis, then gets
            // `Unavailable`: a Redis that is down must not hang logins.
            .with_performance_config(|c| c.default_command_timeout = COMMAND_TIMEOUT)
            // Keep reconnecting (0 = no cap), backing off up to 2 s.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(connections.max(1))
            .map_err(unavailable)?;
        pool.init().await.map_err(unavailable)?;
        let state = RedisState {
            pool,
            put_token: Script::from_lua(PUT_TOKEN),
            rotate_token: Script::from_lua(ROTATE_TOKEN),
            revoke_family: Script::from_lua(REVOKE_FAMILY),
            sign_out: Script::from_lua(SIGN_OUT),
            attempt_begin: Script::from_lua(ATTEMPT_BEGIN),
            take_token: Script::from_lua(TAKE_TOKEN),
        };
        for script in [
            &state.put_token,
            &state.rotate_token,
            &state.revoke_family,
            &state.sign_out,
            &state.attempt_begin,
            &state.take_token,
        ] {
            script.load(state.pool.next()).await.map_err(unavailable)?;
        }
        Ok(state)
    }

    async fn run<R: fred::types::FromValue>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        script
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await
            .map_err(unavailable)
    }
}

/// Every node's sign-outs everywhere, as published from now on, over a
/// connection of its own that resubscribes after a reconnect. Pub/sub
/// delivers at most once: one lost while Redis was unreachable leaves the
/// user's open connections on this node signed in until their access
/// tokens expire, while the durable cutoff still refuses their tokens.
pub struct SignOutFeed {
    subscriber: fred::clients::SubscriberClient,
    _resubscribing: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SignOutFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignOutFeed(..)")
    }
}

impl SignOutFeed {
    /// Connects to `url` and subscribes. Its tasks run on the calling
    /// runtime; receivers work on any.
    pub async fn connect(url: &str) -> Result<SignOutFeed> {
        let config = Config::from_url(url)
            .map_err(|e| StorageError::Unavailable(format!("redis url {url:?}: {e}")))?;
        let subscriber = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_subscriber_client()
            .map_err(unavailable)?;
        subscriber.init().await.map_err(unavailable)?;
        let resubscribing = subscriber.manage_subscriptions();
        fred::interfaces::PubsubInterface::subscribe(&subscriber, SIGN_OUTS_CHANNEL)
            .await
            .map_err(unavailable)?;
        Ok(SignOutFeed {
            subscriber,
            _resubscribing: resubscribing,
        })
    }

    /// A receiver of the sign-outs published from now on.
    pub fn receiver(&self) -> SignOutReceiver {
        use fred::interfaces::EventInterface;
        SignOutReceiver(self.subscriber.message_rx())
    }
}

pub struct SignOutReceiver(tokio::sync::broadcast::Receiver<fred::types::Message>);

impl SignOutReceiver {
    /// The next sign-out (`user`, `at`); none once the feed is gone. A
    /// receiver that fell behind skips what it missed.
    pub async fn next(&mut self) -> Option<(UserId, UnixMillis)> {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match self.0.recv().await {
                Ok(message) => {
                    let text: Option<String> = message.value.convert().ok();
                    let parsed = text.as_deref().and_then(|text| {
                        let (user, at) = text.split_once(':')?;
                        Some((UserId(user.parse().ok()?), UnixMillis(at.parse().ok()?)))
                    });
                    if let Some(parsed) = parsed {
                        return Some(parsed);
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn token_key(hash: &[u8; 32]) -> String {
    format!("{PREFIX}rt:{}", hex(hash))
}

fn family_key(family: &[u8; 16]) -> String {
    format!("{PREFIX}rf:{}", hex(family))
}

fn sign_out_key(user: UserId) -> String {
    format!("{PREFIX}so:{}", user.0)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// How long Redis keeps a token record: until it expires, and a little
/// longer so that reuse is still caught.
fn keep_ms(expires_at: UnixMillis) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    expires_at.0.saturating_sub(now) + TOKEN_KEEP_MIN_MS
}

fn corrupt(reason: &str) -> StorageError {
    StorageError::Corrupt {
        table: "redis refresh tokens",
        reason: reason.into(),
    }
}

#[async_trait]
impl SharedLimits for RedisState {
    /// Counts an attempt against `key`'s window of at most `max` in
    /// `window_ms`, or says how long until one would be allowed. `id`
    /// names this attempt, for `attempt_succeeded`.
    async fn attempt_begin(
        &self,
        key: &str,
        id: u64,
        max: usize,
        window_ms: u64,
        now: UnixMillis,
    ) -> Result<Option<u64>> {
        let wait: i64 = self
            .run(
                &self.attempt_begin,
                vec![format!("{PREFIX}fail:{key}")],
                vec![
                    now.0.to_string(),
                    window_ms.to_string(),
                    max.to_string(),
                    format!("{id:016x}"),
                ],
            )
            .await?;
        Ok((wait > 0).then_some(wait as u64))
    }

    /// The attempt `id` succeeded: it is taken back, and with `forgive`
    /// every failure of `key` is.
    async fn attempt_succeeded(&self, key: &str, id: u64, forgive: bool) -> Result<()> {
        let window = format!("{PREFIX}fail:{key}");
        let client = self.pool.next();
        if forgive {
            client.del::<(), _>(window).await.map_err(unavailable)
        } else {
            fred::interfaces::SortedSetsInterface::zrem::<(), _, _>(
                client,
                window,
                format!("{id:016x}"),
            )
            .await
            .map_err(unavailable)
        }
    }

    /// Takes a token from `key`'s bucket (`per_second` sustained, `burst`
    /// at once), or says how long until one is there.
    async fn take_token(
        &self,
        key: &str,
        per_second: u32,
        burst: u32,
        now: UnixMillis,
    ) -> Result<Option<u64>> {
        let wait: i64 = self
            .run(
                &self.take_token,
                vec![format!("{PREFIX}rate:{key}")],
                vec![
                    now.0.to_string(),
                    per_second.max(1).to_string(),
                    burst.max(1).to_string(),
                ],
            )
            .await?;
        Ok((wait > 0).then_some(wait as u64))
    }

    /// Tells every node following the sign-outs (`SignOutFeed`) that `user`
    /// signed out everywhere at `at`.
    async fn publish_sign_out(&self, user: UserId, at: UnixMillis) -> Result<()> {
        let message = format!("{}:{}", user.0, at.0);
        fred::interfaces::PubsubInterface::publish::<i64, _, _>(
            self.pool.next(),
            SIGN_OUTS_CHANNEL,
            message,
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl TokenStore for RedisState {
    async fn put_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        let _: i64 = self
            .run(
                &self.put_token,
                vec![token_key(&token.token_hash), family_key(&token.family)],
                vec![
                    token.user_id.0.to_string(),
                    hex(&token.family),
                    token.issued_at.0.to_string(),
                    token.expires_at.0.to_string(),
                    if token.revoked { "1" } else { "0" }.into(),
                    token
                        .rotated_at
                        .map_or(String::new(), |at| at.0.to_string()),
                    keep_ms(token.expires_at).to_string(),
                    hex(&token.token_hash),
                ],
            )
            .await?;
        Ok(())
    }

    async fn refresh_token(&self, token_hash: &[u8; 32]) -> Result<Option<RefreshTokenRecord>> {
        let fields: std::collections::HashMap<String, String> =
            fred::interfaces::HashesInterface::hgetall(self.pool.next(), token_key(token_hash))
                .await
                .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let number = |name: &str| -> Result<u64> {
            fields
                .get(name)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(&format!("field {name} missing or not a number")))
        };
        let family = fields
            .get("family")
            .and_then(|f| unhex::<16>(f))
            .ok_or_else(|| corrupt("family missing or malformed"))?;
        Ok(Some(RefreshTokenRecord {
            token_hash: *token_hash,
            user_id: UserId(number("user")?),
            family,
            issued_at: UnixMillis(number("issued")?),
            expires_at: UnixMillis(number("expires")?),
            rotated_at: match fields.get("rotated") {
                None => None,
                Some(_) => Some(UnixMillis(number("rotated")?)),
            },
            revoked: fields.get("revoked").is_some_and(|r| r != "0"),
        }))
    }

    async fn rotate_refresh_token(&self, old: &[u8; 32], new: &RefreshTokenRecord) -> Result<()> {
        let outcome: i64 = self
            .run(
                &self.rotate_token,
                vec![
                    token_key(old),
                    token_key(&new.token_hash),
                    family_key(&new.family),
                ],
                vec![
                    new.user_id.0.to_string(),
                    hex(&new.family),
                    new.issued_at.0.to_string(),
                    new.expires_at.0.to_string(),
                    keep_ms(new.expires_at).to_string(),
                    hex(&new.token_hash),
                ],
            )
            .await?;
        match outcome {
            1 => Ok(()),
            0 => Err(StorageError::Conflict("unknown refresh token".into())),
            _ => Err(StorageError::Conflict(
                "refresh token already used or revoked".into(),
            )),
        }
    }

    async fn revoke_token_family(&self, family: &[u8; 16]) -> Result<usize> {
        let revoked: i64 = self
            .run(
                &self.revoke_family,
                vec![family_key(family)],
                vec![format!("{PREFIX}rt:")],
            )
            .await?;
        Ok(revoked as usize)
    }

    async fn sign_out_everywhere(
        &self,
        user: UserId,
        at: UnixMillis,
        keep_until: UnixMillis,
    ) -> Result<()> {
        let keep = keep_until.0.saturating_sub(at.0).max(1);
        let _: i64 = self
            .run(
                &self.sign_out,
                vec![sign_out_key(user)],
                vec![at.0.to_string(), keep.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn signed_out_at(&self, user: UserId) -> Result<Option<UnixMillis>> {
        let stored: Option<String> = self
            .pool
            .next()
            .get(sign_out_key(user))
            .await
            .map_err(unavailable)?;
        stored
            .map(|at| {
                at.parse()
                    .map(UnixMillis)
                    .map_err(|_| StorageError::Corrupt {
                        table: "redis sign-outs",
                        reason: format!("cutoff {at:?} is not a number"),
                    })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex::<4>("0001abff"), Some(bytes));
        assert_eq!(unhex::<4>("0001abf"), None);
        assert_eq!(unhex::<4>("zz01abff"), None);
    }
}
