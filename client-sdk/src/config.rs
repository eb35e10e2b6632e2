//! What a client connects to, how it trusts the server, and how it retries.

use std::net::SocketAddr;
use std::time::Duration;

/// How the client decides the server's certificate is the right one.
#[derive(Clone)]
pub enum Trust {
    /// Accept exactly the certificate whose DER has this SHA-256. For a
    /// server with a self-signed certificate, which prints its fingerprint.
    Fingerprint([u8; 32]),
    /// Accept certificates that chain to these CA certificates (PEM) and
    /// name `server_name`.
    CaPem(Vec<u8>),
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::Fingerprint(fp) => write!(f, "Fingerprint({})", hex::encode(fp)),
            Trust::CaPem(pem) => write!(f, "CaPem({} bytes)", pem.len()),
        }
    }
}

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included. 1 means no retry.
    pub attempts: u32,
    /// Wait before the first retry; doubles with each retry.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff_initial: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (from 1), at least `hint_ms`
    /// (the server's retry-after).
    pub fn backoff(&self, retry: u32, hint_ms: u32) -> Duration {
        let doubled = self
            .backoff_initial
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        doubled
            .min(self.backoff_max)
            .max(Duration::from_millis(u64::from(hint_ms)))
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: SocketAddr,
    /// The name in the server's certificate (TLS SNI).
    pub server_name: String,
    pub trust: Trust,
    /// Limit on one try of one request, from opening its stream to the last
    /// byte of the reply.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Keep-alive pings keep an idle connection (and NAT bindings) open.
    pub keep_alive: Duration,
    pub retry: RetryPolicy,
    /// Sent in `Hello`, for the server's logs.
    pub client_name: String,
}

impl ClientConfig {
    pub fn new(server: SocketAddr, trust: Trust) -> ClientConfig {
        ClientConfig {
            server,
            server_name: "localhost".into(),
            trust,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            client_name: format!("souk-client-rust/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_the_hint() {
        let policy = RetryPolicy {
            attempts: 10,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(70),
        };
        let waits: Vec<u128> = (1..=5).map(|n| policy.backoff(n, 0).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 70, 70]);
        assert_eq!(policy.backoff(1, 500).as_millis(), 500);
    }
}
