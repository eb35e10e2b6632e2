//! The seeded simulator over a fixed budget of seeds: every shard's real
//! handlers, a store that fails and delays, a gateway that times out, and
//! crashes, with the shop's invariants checked after every step.
//!
//! `SOUK_SIM_SEED=N` replays one seed; `SOUK_SIM_SEEDS=N` runs N seeds
//! from `SOUK_SIM_FIRST` (default 0) for a long run, and
//! `SOUK_SIM_SHOPPERS` / `SOUK_SIM_STEPS` size each seed's shop:
//!
//! ```text
//! SOUK_SIM_SEEDS=2000 cargo test --release -p souk-server --test simulate -- --nocapture
//! SOUK_SIM_SHOPPERS=2000 SOUK_SIM_STEPS=200000 SOUK_SIM_SEEDS=20 cargo test --release ...
//! ```

use std::time::Instant;

use souk_server::sim;

/// Seeds CI runs: a few thousand steps each, well under two minutes in a
/// debug build on two cores.
const CI_SEEDS: u64 = 24;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

#[test]
fn the_shops_invariants_hold_under_faults_and_crashes() {
    let seeds: Vec<u64> = match sim::seed_from_env() {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("SOUK_SIM_FIRST").unwrap_or(0);
            let count = env_u64("SOUK_SIM_SEEDS").unwrap_or(CI_SEEDS);
            (first..first + count).collect()
        }
    };
    let started = Instant::now();
    let (mut steps, mut crashes, mut requests, mut acknowledged, mut paid) = (0, 0, 0, 0, 0);
    let mut orphaned = 0;
    let defaults = sim::Settings::default();
    let settings = sim::Settings {
        shoppers: env_u64("SOUK_SIM_SHOPPERS").map_or(defaults.shoppers, |n| n as usize),
        steps: env_u64("SOUK_SIM_STEPS").unwrap_or(defaults.steps),
        ..defaults
    };
    for &seed in &seeds {
        match sim::run(seed, settings) {
            Ok(report) => {
                steps += report.steps;
                crashes += report.crashes;
                requests += report.requests;
                acknowledged += report.orders_acknowledged;
                paid += report.orders_paid;
                orphaned += report.charges_orphaned;
            }
            Err(violation) => panic!(
                "seed {seed} broke an invariant: {violation}\n\
                 replay it: SOUK_SIM_SEED={seed} cargo test -p souk-server --test simulate"
            ),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "simulated {} seeds in {seconds:.1} s ({:.1} seeds/s, {:.0} steps/s): {steps} steps, \
         {requests} requests, {crashes} crashes, {acknowledged} orders acknowledged, {paid} paid, \
         {orphaned} charges of unpaid orders left unrefunded by a crash",
        seeds.len(),
        seeds.len() as f64 / seconds,
        steps as f64 / seconds,
    );
    assert!(
        acknowledged > 0,
        "the shoppers placed no order: the simulation tested nothing"
    );
    assert!(crashes > 0 || seeds.len() < 4, "no seed crashed");
}
