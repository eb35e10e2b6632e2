//! How much shared stock a SKU's owner shard takes from the cluster's pool
//! at once, and when it gives units back: the bookkeeping beside the
//! counters where several nodes share stock (see `flow::escrow`).
//!
//! A chunk is twice the units the SKU sold here in the last second, within
//! `ESCROW_CHUNK_MIN..=ESCROW_CHUNK_MAX`: a SKU selling fast is refilled
//! before it runs dry without a conditional write per checkout, one
//! selling slowly holds few units another node may need. Units a SKU has
//! not sold for a while go back to the pool, at once when the pool is
//! (nearly) empty, so the last units sell on whichever node is asked.

use std::collections::{HashMap, HashSet};

use souk_wire::api::{Sku, UnixMillis};

use crate::limits::{ESCROW_CHUNK_MAX, ESCROW_CHUNK_MIN, ESCROW_IDLE, ESCROW_IDLE_SURPLUS};

#[derive(Debug, Default, Clone, Copy)]
struct Demand {
    /// Start of the current one-second window, and units reserved in it.
    window_start: u64,
    window_units: i64,
    /// Units reserved in the last full window.
    last_window_units: i64,
    last_sale: u64,
}

#[derive(Debug, Default)]
pub struct EscrowBook {
    demand: HashMap<Sku, Demand>,
    /// SKUs with a take from the pool under way.
    taking: HashSet<Sku>,
}

impl EscrowBook {
    /// Notes units of a SKU reserved here.
    pub fn sold(&mut self, sku: &Sku, units: i64, now: UnixMillis) {
        let demand = self.demand.entry(sku.clone()).or_default();
        let window = now.0 / 1000 * 1000;
        if window != demand.window_start {
            demand.last_window_units = if window == demand.window_start + 1000 {
                demand.window_units
            } else {
                0
            };
            demand.window_start = window;
            demand.window_units = 0;
        }
        demand.window_units += units;
        demand.last_sale = now.0;
    }

    /// Units to take at once for a SKU.
    pub fn chunk(&self, sku: &Sku) -> i64 {
        let rate = self
            .demand
            .get(sku)
            .map_or(0, |d| d.last_window_units.max(d.window_units));
        (2 * rate).clamp(ESCROW_CHUNK_MIN, ESCROW_CHUNK_MAX)
    }

    /// Whether to take more before the SKU runs dry: fewer available than
    /// half a chunk, and no take already under way.
    pub fn wants_more(&self, sku: &Sku, available: i64) -> bool {
        available < self.chunk(sku) / 2 && !self.taking.contains(sku)
    }

    /// Marks a take under way; false if one already is.
    pub fn start_taking(&mut self, sku: &Sku) -> bool {
        self.taking.insert(sku.clone())
    }

    pub fn done_taking(&mut self, sku: &Sku) {
        self.taking.remove(sku);
    }

    /// Units of an idle SKU to give back: all of them when the pool is
    /// (nearly) empty, so another node can sell them; beyond a minimum
    /// chunk after a long idle; none while it sells.
    pub fn to_give_back(
        &self,
        sku: &Sku,
        available: i64,
        pool: Option<i64>,
        now: UnixMillis,
    ) -> i64 {
        if available <= 0 || self.taking.contains(sku) {
            return 0;
        }
        let idle = now
            .0
            .saturating_sub(self.demand.get(sku).map_or(0, |d| d.last_sale));
        let scarce = pool.is_some_and(|pool| pool < ESCROW_CHUNK_MIN);
        if scarce && idle >= ESCROW_IDLE.as_millis() as u64 {
            available
        } else if idle >= ESCROW_IDLE_SURPLUS.as_millis() as u64 {
            (available - ESCROW_CHUNK_MIN).max(0)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku() -> Sku {
        Sku::new("S-1").unwrap()
    }

    #[test]
    fn chunks_follow_the_sale_rate_within_bounds() {
        let mut book = EscrowBook::default();
        assert_eq!(book.chunk(&sku()), ESCROW_CHUNK_MIN);
        for n in 0..100 {
            book.sold(&sku(), 3, UnixMillis(10_000 + n * 5));
        }
        assert_eq!(
            book.chunk(&sku()),
            600,
            "two seconds' worth of 300 a second"
        );
        book.sold(&sku(), 1, UnixMillis(11_000));
        assert_eq!(book.chunk(&sku()), 600, "the last full second counts");
        book.sold(&sku(), 1, UnixMillis(15_000));
        assert_eq!(
            book.chunk(&sku()),
            ESCROW_CHUNK_MIN,
            "an idle gap forgets it"
        );
        for _ in 0..10_000 {
            book.sold(&sku(), 1, UnixMillis(15_500));
        }
        assert_eq!(book.chunk(&sku()), ESCROW_CHUNK_MAX);
    }

    #[test]
    fn idle_units_go_back_at_once_only_when_the_pool_is_dry() {
        let mut book = EscrowBook::default();
        book.sold(&sku(), 1, UnixMillis(10_000));
        let idle = UnixMillis(10_000 + ESCROW_IDLE.as_millis() as u64);
        assert_eq!(
            book.to_give_back(&sku(), 9, Some(0), UnixMillis(10_500)),
            0,
            "still selling"
        );
        assert_eq!(book.to_give_back(&sku(), 9, Some(0), idle), 9);
        assert_eq!(
            book.to_give_back(&sku(), 9, Some(500), idle),
            0,
            "the pool has plenty"
        );
        let long_idle = UnixMillis(10_000 + ESCROW_IDLE_SURPLUS.as_millis() as u64);
        assert_eq!(
            book.to_give_back(&sku(), 9, Some(500), long_idle),
            9 - ESCROW_CHUNK_MIN
        );
        assert!(book.start_taking(&sku()));
        assert!(!book.start_taking(&sku()));
        assert_eq!(
            book.to_give_back(&sku(), 9, Some(0), idle),
            0,
            "not while taking"
        );
        assert!(!book.wants_more(&sku(), 0));
        book.done_taking(&sku());
        assert!(book.wants_more(&sku(), 0));
        assert!(!book.wants_more(&sku(), ESCROW_CHUNK_MIN));
    }
}
