//! One run that measures souk and its anchors on this machine and prints
//! one table with the ratios:
//!
//!     cargo build --release -p souk-bench --bins
//!     target/release/compare            # about 4 minutes
//!
//! - product detail over QUIC (souk, raw and through the SDK) vs a bare
//!   quinn echo of the same reply (`quic-compare`) and vs Redis `GET` of a
//!   value of the same size (`redis-benchmark -c 50`);
//! - flash-sale checkout vs PostgreSQL's hot-row `UPDATE ... WHERE stock >
//!   0` (pgbench, fsync on) and a Redis Lua conditional decrement (fred,
//!   `appendfsync always`) (`flash-sale`);
//! - durable order inserts vs PostgreSQL `INSERT` (`storage-compare`).
//!
//! Redis and PostgreSQL are installed with apt when missing (as root),
//! started on loopback in temporary directories and stopped after; an
//! anchor that cannot be had is skipped with the reason printed. The
//! comparisons run one after another, each with the machine to itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use souk_bench::Row;
use souk_storage::testing::RedisServer;

#[derive(Parser)]
struct Args {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs (rounds) per comparison; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Writers for the durable-insert comparison.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Also write every row as JSON lines here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A sibling binary of this one (built by `cargo build -p souk-bench --bins`).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the benchmarks with `cargo build --release -p souk-bench --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Runs a comparison binary, showing its output, and returns its stdout.
fn run(name: &str, args: &[String]) -> anyhow::Result<String> {
    eprintln!("== {name} {}", args.join(" "));
    let output = Command::new(sibling(name)?)
        .args(args)
        .output()
        .with_context(|| format!("running {name}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprint!("{stdout}");
    if !output.status.success() {
        bail!("{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(stdout)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Redis with apt if `redis-server` is missing and we may.
fn ensure_redis() -> Result<(), String> {
    let present = |bin: &str| Command::new(bin).arg("--version").output().is_ok();
    if present("redis-server") && present("redis-benchmark") {
        return Ok(());
    }
    if !is_root() {
        return Err("Redis is not installed and installing it needs root".into());
    }
    eprintln!("== installing redis-server with apt");
    let installed = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server",
        ])
        .status()
        .map_err(|e| e.to_string())?;
    if installed.success() {
        Ok(())
    } else {
        Err("apt-get install redis-server failed".into())
    }
}

/// Redis `GET` of a `size`-byte value with redis-benchmark's 50 clients.
fn redis_get(size: usize, comparison: &str) -> Result<Row, String> {
    ensure_redis()?;
    let redis = RedisServer::start("everysec")?;
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port, "-c", "50", "-n", "500000"])
        .args(["-t", "get", "-d", &size.to_string(), "--csv"])
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    let line = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))
        .ok_or_else(|| format!("no GET line in redis-benchmark's output: {text}"))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap_or(0.0))
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
    Ok(Row {
        comparison: comparison.into(),
        target: format!("Redis GET {size} B (redis-benchmark -c 50)"),
        anchor: true,
        per_second: field(0),
        p50_us: (field(3) * 1000.0) as u64,
        p99_us: (field(5) * 1000.0) as u64,
    })
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).context("a row from a comparison"))
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let rows_path = work.path().join("rows.jsonl");
    let rows_arg = rows_path.display().to_string();
    let (seconds, runs) = (args.seconds.to_string(), args.runs.to_string());
    let mut skipped = Vec::new();

    let quic = run(
        "quic-compare",
        &[
            "--seconds".into(),
            seconds.clone(),
            "--rounds".into(),
            runs.clone(),
            "--json".into(),
            rows_arg.clone(),
        ],
    )?;
    // "product detail: request N B, reply M B; ..."
    let reply_bytes = quic
        .split("reply ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024usize);
    let quic_comparison = read_rows(&rows_path)?
        .first()
        .map(|row| row.comparison.clone())
        .unwrap_or_default();
    match redis_get(reply_bytes, &quic_comparison) {
        Ok(row) => souk_bench::write_rows(Some(&rows_path), &[row])?,
        Err(why) => skipped.push(format!("Redis GET: {why}")),
    }
    run(
        "flash-sale",
        &[
            "--seconds".into(),
            seconds.clone(),
            "--runs".into(),
            runs,
            "--json".into(),
            rows_arg.clone(),
        ],
    )?;
    run(
        "storage-compare",
        &[
            "--seconds".into(),
            seconds,
            "--writers".into(),
            args.writers.to_string(),
            "--json".into(),
            rows_arg,
        ],
    )?;

    let rows = read_rows(&rows_path)?;
    println!(
        "\nsouk and its anchors, measured in one run on {}",
        machine()
    );
    println!(
        "(load generators share the machine with the servers; medians of {} runs)\n",
        args.runs
    );
    println!("| comparison | target | per s | p50 µs | p99 µs | souk / this |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut comparisons: Vec<&str> = Vec::new();
    for row in &rows {
        if !comparisons.contains(&row.comparison.as_str()) {
            comparisons.push(&row.comparison);
        }
    }
    for comparison in comparisons {
        let group: Vec<&Row> = rows.iter().filter(|r| r.comparison == comparison).collect();
        // souk's best target in the group is what the anchors are set against.
        let souk = group
            .iter()
            .filter(|r| !r.anchor)
            .map(|r| r.per_second)
            .fold(0.0, f64::max);
        for row in group {
            let ratio = if row.anchor && row.per_second > 0.0 {
                format!("{:.2}x", souk / row.per_second)
            } else {
                String::new()
            };
            println!(
                "| {comparison} | {} | {:.0} | {} | {} | {ratio} |",
                row.target, row.per_second, row.p50_us, row.p99_us
            );
        }
    }
    for why in &skipped {
        println!("skipped: {why}");
    }
    if let Some(path) = &args.json {
        std::fs::copy(&rows_path, path)?;
    }
    Ok(())
}
