//! Crash consistency: a child process writes orders through the embedded
//! store and prints each acknowledged id; the test kills it with SIGKILL at
//! a random moment, reopens the store and checks that every acknowledged
//! order is there, intact, and reachable through its indexes, and that no
//! order is visible half-written. Fifty cycles on one directory for the
//! default engine (fjall), twenty-five for redb. The kill times come from a seed printed at the start, so a
//! failure can be replayed with SOUK_CRASH_SEED.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::OrderStore;
use souk_storage::testing;
use souk_wire::api::{OrderId, UserId};

/// Kills of the default engine's writer per run; the other engine gets fewer.
const CYCLES: usize = 50;

fn seed() -> u64 {
    std::env::var("SOUK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 ^ 0x5eed)
}

/// Runs the writer until it has acknowledged at least one order and then
/// for `run_ms` more, kills it, and returns every id it acknowledged.
fn write_then_kill(dir: &std::path::Path, engine: &str, first_id: u64, run_ms: u64) -> Vec<u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(dir)
        .arg(engine)
        .arg(first_id.to_string())
        .arg("16")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("writer starts");
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx
                .send(line.parse::<u64>().expect("an id per line"))
                .is_err()
            {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the writer acknowledges an order");
    std::thread::sleep(Duration::from_millis(run_ms));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    reader.join().expect("reader");
    let mut acked = vec![first];
    acked.extend(lines.try_iter());
    acked
}

/// Reopens the store and checks the given acknowledged orders, and that
/// every order of this cycle's id range that exists is whole: record and
/// both index entries, or nothing at all.
fn verify(
    dir: &std::path::Path,
    engine: EngineKind,
    check: &[u64],
    acked: &BTreeSet<u64>,
    cycle_ids: std::ops::Range<u64>,
) {
    let store = EmbeddedStore::open(dir, engine).expect("reopens after a crash");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for &id in check {
            let stored = store.order(OrderId(id)).await.unwrap();
            assert_eq!(
                stored,
                Some(testing::order(id)),
                "acknowledged order {id} lost or damaged"
            );
        }
        for id in cycle_ids {
            let Some(stored) = store.order(OrderId(id)).await.unwrap() else {
                assert!(!acked.contains(&id));
                continue;
            };
            assert_eq!(stored, testing::order(id), "stored order {id} damaged");
            let by_shard = store
                .orders_of_shard(stored.shard, Some(OrderId(id - 1)), 1)
                .await
                .unwrap();
            assert_eq!(
                by_shard.items.first().map(|o| o.id),
                Some(OrderId(id)),
                "order {id} not in its shard index"
            );
            let by_user = store
                .orders_of_user(UserId(id % testing::USERS), Some(OrderId(id + 1)), 1)
                .await
                .unwrap();
            assert_eq!(
                by_user.items.first().map(|o| o.id),
                Some(OrderId(id)),
                "order {id} not in its user index"
            );
        }
    });
}

fn crash_cycles(engine: EngineKind, name: &str, cycles: usize) {
    let seed = seed();
    eprintln!("crash test ({name}): seed {seed} (replay with SOUK_CRASH_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked = BTreeSet::new();
    let mut next_id = 1u64;
    for cycle in 0..cycles {
        let run_ms = rng.random_range(0..80);
        let first = next_id;
        let started = std::time::Instant::now();
        let ids = write_then_kill(dir.path(), name, first, run_ms);
        let wrote = started.elapsed();
        let highest = *ids.iter().max().unwrap();
        acked.extend(ids);
        // Writers in flight at the kill may have committed ids up to a few
        // dozen past the highest acknowledged; the next cycle starts clear
        // of them.
        next_id = highest + 1_000;
        // Every order acknowledged in this cycle, and a sample of older ones
        // (all of them are checked once more at the end).
        let mut check: Vec<u64> = acked.range(first..).copied().collect();
        let older: Vec<u64> = acked.range(..first).copied().collect();
        for _ in 0..older.len().min(300) {
            check.push(older[rng.random_range(0..older.len())]);
        }
        verify(dir.path(), engine, &check, &acked, first..next_id);
        if std::env::var_os("SOUK_CRASH_TIMING").is_some() {
            eprintln!(
                "cycle {cycle}: write {wrote:?}, verify {:?}",
                started.elapsed() - wrote
            );
        }
        assert!(acked.len() > cycle, "every cycle acknowledges orders");
    }
    let everything: Vec<u64> = acked.iter().copied().collect();
    verify(dir.path(), engine, &everything, &acked, next_id..next_id);
    eprintln!(
        "crash test ({name}): {cycles} kills, {} acknowledged orders all intact",
        acked.len()
    );
}

#[test]
fn acknowledged_orders_survive_sigkill_fjall() {
    crash_cycles(EngineKind::Fjall, "fjall", CYCLES);
}

#[test]
fn acknowledged_orders_survive_sigkill_redb() {
    crash_cycles(EngineKind::Redb, "redb", CYCLES / 2);
}
