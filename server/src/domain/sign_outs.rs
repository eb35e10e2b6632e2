//! "Sign out everywhere": each shard's memory of recent cutoffs.
//!
//! The cutoff itself is durable in the token store, which refuses refresh
//! tokens and (at `Authenticate`) access tokens issued at or before it.
//! Connections already signed in do not present a token again, so every
//! shard of the node is told the cutoff and ends each such connection's
//! identity at its next request. A cutoff is needed for one access-token
//! lifetime: after that, every identity it could end has expired anyway.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use souk_wire::api::{UnixMillis, UserId};

use crate::limits::{ACCESS_TOKEN_TTL, SIGN_OUTS_MAX};

#[derive(Debug, Default)]
pub struct SignOuts {
    cutoffs: HashMap<UserId, UnixMillis>,
    /// `(cutoff, user)` as recorded, so that expired ones are forgotten
    /// oldest first; an entry whose cutoff was since raised is skipped.
    recorded: VecDeque<(UnixMillis, UserId)>,
}

impl SignOuts {
    /// Records `user`'s cutoff `at`; a later cutoff already kept stays.
    pub fn record(&mut self, user: UserId, at: UnixMillis, now: UnixMillis) {
        self.forget_expired(now);
        // The same cutoff again (told by this node and by Redis) adds nothing.
        match self.cutoffs.entry(user) {
            Entry::Occupied(kept) if *kept.get() >= at => return,
            Entry::Occupied(mut kept) => *kept.get_mut() = at,
            Entry::Vacant(new) => {
                new.insert(at);
            }
        }
        self.recorded.push_back((at, user));
        // Over the bound even after forgetting: a flood of sign-outs costs
        // the oldest cutoff its in-memory half (its connections keep
        // their identity until their access token expires, as they do on
        // other nodes); the durable cutoff still refuses its tokens.
        while self.cutoffs.len() > SIGN_OUTS_MAX {
            self.forget_oldest();
        }
    }

    /// Whether a credential of `user` issued at `issued_at` is signed out.
    pub fn refuses(&self, user: UserId, issued_at: UnixMillis) -> bool {
        !self.cutoffs.is_empty() && self.cutoffs.get(&user).is_some_and(|c| issued_at <= *c)
    }

    pub fn len(&self) -> usize {
        self.cutoffs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cutoffs.is_empty()
    }

    fn forget_expired(&mut self, now: UnixMillis) {
        let lifetime = ACCESS_TOKEN_TTL.as_millis() as u64;
        while self
            .recorded
            .front()
            .is_some_and(|(at, _)| at.0.saturating_add(lifetime) <= now.0)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((at, user)) = self.recorded.pop_front() else {
            return;
        };
        if self.cutoffs.get(&user) == Some(&at) {
            self.cutoffs.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: UnixMillis = UnixMillis(1_800_000_000_000);

    #[test]
    fn credentials_issued_up_to_the_cutoff_are_refused() {
        let mut sign_outs = SignOuts::default();
        sign_outs.record(UserId(1), T, T);
        assert!(sign_outs.refuses(UserId(1), UnixMillis(T.0 - 60_000)));
        assert!(sign_outs.refuses(UserId(1), T));
        assert!(!sign_outs.refuses(UserId(1), UnixMillis(T.0 + 1)));
        assert!(!sign_outs.refuses(UserId(2), T));
        // An earlier cutoff arriving late changes nothing.
        sign_outs.record(UserId(1), UnixMillis(T.0 - 10), T);
        assert!(sign_outs.refuses(UserId(1), T));
    }

    #[test]
    fn a_cutoff_is_forgotten_once_every_identity_it_could_end_has_expired() {
        let mut sign_outs = SignOuts::default();
        sign_outs.record(UserId(1), T, T);
        let raised = UnixMillis(T.0 + 1_000);
        sign_outs.record(UserId(1), raised, raised);
        let lifetime = ACCESS_TOKEN_TTL.as_millis() as u64;
        // The first record expires; the raised cutoff is kept.
        sign_outs.record(
            UserId(2),
            UnixMillis(T.0 + lifetime),
            UnixMillis(T.0 + lifetime),
        );
        assert!(sign_outs.refuses(UserId(1), raised));
        assert_eq!(sign_outs.len(), 2);
        let later = UnixMillis(raised.0 + lifetime);
        sign_outs.record(UserId(3), later, later);
        assert!(!sign_outs.refuses(UserId(1), raised));
        assert_eq!(sign_outs.len(), 2);
    }

    #[test]
    fn the_bound_drops_the_oldest() {
        let mut sign_outs = SignOuts::default();
        for n in 0..=SIGN_OUTS_MAX as u64 {
            sign_outs.record(UserId(n), UnixMillis(T.0 + n), T);
        }
        assert_eq!(sign_outs.len(), SIGN_OUTS_MAX);
        assert!(!sign_outs.refuses(UserId(0), T));
        assert!(sign_outs.refuses(UserId(1), T));
    }
}
