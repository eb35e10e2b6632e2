//! Durable order inserts: souk's embedded store on each engine, with group
//! commit, next to PostgreSQL `INSERT`s of an equivalent order row with
//! fsync on, in one run.
//!
//!     cargo run --release -p souk-bench --bin storage-compare
//!
//! For each writer count, `writers` tasks insert orders in a closed loop for
//! `--seconds`, each waiting for its insert to be durable before the next.
//! PostgreSQL gets the same row (same record bytes, primary key and the same
//! secondary index souk keeps: by user) through pgbench with as many clients;
//! it is started in a temporary directory (installed with apt if missing)
//! and the anchor is skipped with the reason if it cannot be. With `--runs
//! N` each writer count is measured in N rounds, and the ratio reported is
//! the median of the rounds' own ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use souk_bench::postgres::{PgbenchResult, Postgres};
use souk_bench::{Measurement, Row, closed_loop, median};
use souk_storage::Store;
use souk_storage::embedded::{EmbeddedStore, EngineKind};
use souk_storage::store::{OrderStore, WriteStats};
use souk_storage::testing;

/// The allocator souk's binaries use (see server/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Seconds measured per configuration (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent writers to measure, comma-separated.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    writers: Vec<usize>,
    /// Rounds per writer count, each measuring every store and the anchor
    /// in turn; the table shows medians, and the ratio is the median of
    /// each round's own ratio (this machine's disk changes speed from one
    /// minute to the next, so a ratio is only taken within a round).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    runs: u16,
    /// Skip the PostgreSQL anchor.
    #[arg(long)]
    no_postgres: bool,
    /// Measure only this engine, without anchors (for profiling).
    #[arg(long, value_parser = ["redb", "fjall"])]
    only: Option<String>,
    /// With `--only`: split the writers over this many independent stores
    /// (each its own journal, commit thread and sync threads), each order
    /// going to the store its id picks: what partitioning the embedded
    /// store, by shard for instance, would give.
    #[arg(long, default_value_t = 1, requires = "only",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    stores: u16,
    /// Also append the results to this file as JSON rows (for `compare`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// CPU seconds by thread during one measurement (warm-up included).
type CpuUse = Vec<(String, f64)>;

fn measure_souk(
    kind: EngineKind,
    writers: usize,
    seconds: u64,
    stores: u16,
) -> anyhow::Result<(Measurement, WriteStats, CpuUse)> {
    let before = souk_bench::cpu_by_thread();
    let dir = tempfile::tempdir()?;
    let stores = (0..stores)
        .map(|i| {
            let path = dir.path().join(i.to_string());
            std::fs::create_dir(&path)?;
            Ok(Arc::new(EmbeddedStore::open(&path, kind)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counted = stores.clone();
    let next = Arc::new(AtomicU64::new(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let measurement = local.block_on(&runtime, async move {
        let operation = move || {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let store = stores[id as usize % stores.len()].clone();
            async move { store.insert_order(&testing::order(id)).await.is_ok() }
        };
        closed_loop(
            writers,
            Duration::from_secs(1),
            Duration::from_secs(seconds),
            operation,
        )
        .await
    });
    let stats = counted
        .iter()
        .filter_map(|store| store.write_stats())
        .reduce(WriteStats::merged)
        .unwrap_or_default();
    // Threads that ran before (this one, the writers', and any earlier
    // store's still winding down) count only what they used since.
    let cpu = souk_bench::cpu_by_thread()
        .into_iter()
        .map(|(tid, name, seconds)| {
            let earlier = before.iter().find(|(t, ..)| *t == tid).map_or(0.0, |b| b.2);
            (name, seconds - earlier)
        })
        .collect();
    Ok((measurement, stats, cpu))
}

fn postgres_script(record_len: usize) -> String {
    let record = "ab".repeat(record_len);
    format!(
        "\\set user random(1, 100000)\n\
         INSERT INTO orders (user_id, shard, status, record) VALUES (:user, :user % 16, 0, decode('{record}', 'hex'));\n"
    )
}

/// One round at one writer count: every store, then the anchor.
struct Round {
    redb: Measurement,
    fjall: Measurement,
    pg: Option<PgbenchResult>,
}

const POSTGRES_SCHEMA: &str = "
    DROP TABLE IF EXISTS orders;
    CREATE TABLE orders (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL,
        shard int NOT NULL,
        status smallint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        record bytea NOT NULL
    );
    CREATE INDEX orders_by_user ON orders (user_id, id DESC);";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(only) = &args.only {
        let kind = if only == "redb" {
            EngineKind::Redb
        } else {
            EngineKind::Fjall
        };
        for &writers in &args.writers {
            let (m, stats, cpu) = measure_souk(kind, writers, args.seconds, args.stores)?;
            // Warm-up included: the batching and fsync time behind the rate.
            let groups = stats.groups.max(1) as f64;
            let syncs = stats.syncs.max(1) as f64;
            let writes = stats.writes.max(1) as f64;
            let per_write = |seconds: f64| seconds * 1e6 / writes;
            let total: f64 = cpu.iter().map(|(_, s)| s).sum();
            let mut by_thread: std::collections::BTreeMap<&str, f64> = Default::default();
            for (name, seconds) in &cpu {
                *by_thread.entry(name.as_str()).or_default() += seconds;
            }
            let threads = by_thread
                .iter()
                .filter(|(_, s)| **s > 0.0)
                .map(|(name, s)| format!("{name} {:.1}", per_write(*s)))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "{only} {writers} writers: {:.0} orders/s, p99 {} µs; {:.1} writes per group, {:.1} groups per fsync; mean µs: queue {:.0}, apply {:.0}, hand-over {:.0}, fsync {:.0}; CPU {:.1} µs per write ({threads})",
                m.per_second(),
                m.p99_us(),
                stats.writes as f64 / groups,
                stats.groups as f64 / syncs,
                stats.queue_seconds * 1e6 / writes,
                stats.apply_seconds * 1e6 / groups,
                stats.handover_seconds * 1e6 / groups,
                stats.sync_seconds * 1e6 / syncs,
                per_write(total),
            );
        }
        return Ok(());
    }
    let record_len = souk_storage::codec::encode("order", &testing::order(1), usize::MAX)?.len();
    let postgres = if args.no_postgres {
        Err("--no-postgres".to_owned())
    } else {
        Postgres::start()
    };
    if let Err(reason) = &postgres {
        println!("PostgreSQL anchor skipped: {reason}");
    }
    println!(
        "durable order inserts, {record_len}-byte order records, {} s per configuration, {} round(s) each (medians)",
        args.seconds, args.runs
    );
    println!(
        "\n| writers | souk redb orders/s | p99 µs | souk fjall orders/s | p99 µs | PostgreSQL INSERT/s | p99 µs | fjall (default) / PostgreSQL | each round |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &writers in &args.writers {
        let mut rounds = Vec::with_capacity(args.runs.into());
        for _ in 0..args.runs {
            let (redb, _, _) = measure_souk(EngineKind::Redb, writers, args.seconds, 1)?;
            let (fjall, _, _) = measure_souk(EngineKind::Fjall, writers, args.seconds, 1)?;
            anyhow::ensure!(
                redb.errors + fjall.errors == 0,
                "{} inserts failed",
                redb.errors + fjall.errors
            );
            let pg = match &postgres {
                Ok(pg) => {
                    pg.psql(POSTGRES_SCHEMA).map_err(anyhow::Error::msg)?;
                    Some(
                        pg.pgbench(&postgres_script(record_len), writers, args.seconds)
                            .map_err(anyhow::Error::msg)?,
                    )
                }
                Err(_) => None,
            };
            rounds.push(Round { redb, fjall, pg });
        }
        let comparison = format!("durable order inserts, {writers} writers");
        let souk_row = |target: &str, m: fn(&Round) -> &Measurement| {
            let runs: Vec<_> = rounds
                .iter()
                .map(|r| (m(r).per_second(), m(r).p50_us(), m(r).p99_us()))
                .collect();
            Row::of_medians(&comparison, target, false, &runs)
        };
        let fjall = souk_row("souk fjall (default)", |r| &r.fjall);
        let redb = souk_row("souk redb", |r| &r.redb);
        let pg = postgres.is_ok().then(|| {
            let runs: Vec<_> = rounds
                .iter()
                .filter_map(|r| r.pg.as_ref())
                .map(|p| (p.transactions_per_second, p.p50_us, p.p99_us))
                .collect();
            Row::of_medians(
                &comparison,
                "PostgreSQL INSERT (pgbench, fsync on)",
                true,
                &runs,
            )
        });
        let (pg_rate, pg_p99, ratio, each) = match &pg {
            Some(pg) => {
                let ratios: Vec<f64> = rounds
                    .iter()
                    .filter_map(|r| {
                        Some(r.fjall.per_second() / r.pg.as_ref()?.transactions_per_second)
                    })
                    .collect();
                let each: Vec<String> = ratios.iter().map(|r| format!("{r:.1}x")).collect();
                (
                    format!("{:.0}", pg.per_second),
                    pg.p99_us.to_string(),
                    format!("{:.1}x", median(ratios)),
                    each.join(", "),
                )
            }
            None => ("skipped".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {writers} | {:.0} | {} | {:.0} | {} | {pg_rate} | {pg_p99} | {ratio} | {each} |",
            redb.per_second, redb.p99_us, fjall.per_second, fjall.p99_us,
        );
        let mut rows = vec![fjall, redb];
        rows.extend(pg);
        souk_bench::write_rows(args.json.as_deref(), &rows)?;
    }
    Ok(())
}
