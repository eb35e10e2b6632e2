//! Who gets a handshake: the first defence against floods of new
//! connections, decided per shard before any cryptography is done.
//!
//! - Under load (more handshakes in progress than `retry_above`), a client
//!   whose address is not yet proven gets a QUIC Retry: a stateless packet
//!   carrying a token it must echo from the address it claims. Spoofed
//!   sources never answer, so they cost one packet and no handshake.
//! - Each (proven, or not under load) source address may open at most
//!   `per_second` new connections per second on this shard; the rest are
//!   refused, which the client SDK reports as `Busy`.

use std::net::IpAddr;

use souk_wire::api::UnixMillis;

use crate::domain::throttle::{Rate, RateClass, RateLimits};

/// What to do with a new connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Ask the client to prove its address first.
    Retry,
    /// Refuse: the address opens connections too fast.
    Refuse,
}

#[derive(Debug)]
pub struct ConnectionGate {
    rates: RateLimits,
    retry_above: usize,
}

impl ConnectionGate {
    /// `per_second` new connections per address (0: unlimited, bursts of
    /// the same size); a Retry when more than `retry_above` handshakes are
    /// in progress (0: always).
    pub fn new(per_second: u32, retry_above: usize, addresses_max: usize) -> ConnectionGate {
        let rate = (per_second > 0).then_some(Rate {
            per_second,
            burst: per_second,
        });
        let rates = rate.map(|rate| (RateClass::NewConnections, rate));
        ConnectionGate {
            rates: RateLimits::new(rates, addresses_max),
            retry_above,
        }
    }

    pub fn admit(
        &mut self,
        remote: IpAddr,
        validated: bool,
        handshaking: usize,
        now: UnixMillis,
    ) -> Admission {
        if !validated && handshaking >= self.retry_above {
            return Admission::Retry;
        }
        let address = remote.to_canonical().to_string();
        match self.rates.take(&address, RateClass::NewConnections, now) {
            Ok(()) => Admission::Accept,
            Err(_) => Admission::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_clients_retry_under_load_and_fast_openers_are_refused() {
        let mut gate = ConnectionGate::new(2, 10, 100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = UnixMillis(50_000);
        assert_eq!(gate.admit(a, false, 10, t), Admission::Retry, "under load");
        assert_eq!(gate.admit(a, true, 10, t), Admission::Accept, "proven");
        assert_eq!(gate.admit(a, false, 9, t), Admission::Accept);
        assert_eq!(gate.admit(a, true, 0, t), Admission::Refuse, "3rd in 1 s");
        assert_eq!(gate.admit(b, false, 0, t), Admission::Accept, "per address");
        let later = UnixMillis(t.0 + 500);
        assert_eq!(gate.admit(a, true, 0, later), Admission::Accept);

        let mut always = ConnectionGate::new(0, 0, 100);
        assert_eq!(always.admit(a, false, 0, t), Admission::Retry);
        for _ in 0..100 {
            assert_eq!(always.admit(a, true, 0, t), Admission::Accept, "no rate");
        }
    }
}
