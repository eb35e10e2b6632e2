//! `souk-loadgen`: drives a running souk server through the client SDK and
//! reports throughput and latency percentiles.
//!
//!     souk-loadgen --server 127.0.0.1:4433 --fingerprint <hex> --scenario browse
//!
//! Closed loop: `--concurrency` requests stay in flight, spread over
//! `--connections` QUIC connections on `--threads` threads (one
//! single-threaded runtime each). Each thread records into its own HDR
//! histogram; they are merged for the report.

mod scenario;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use souk_client::{Client, ClientConfig, RetryPolicy, Trust};

use scenario::{Scenario, Workload};

#[derive(Debug, Clone, Parser)]
#[command(name = "souk-loadgen", version, about = "Load generator for souk")]
pub struct Args {
    /// Server address (UDP).
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: std::net::SocketAddr,
    /// SHA-256 of the server certificate, in hex (souk prints it at start).
    #[arg(long)]
    fingerprint: String,
    #[arg(long, value_enum, default_value_t = Scenario::Browse)]
    scenario: Scenario,
    /// QUIC connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight over all connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Threads, each with its own runtime and its share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seed of the request mix: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Products in the server's demo catalog (ids P00000..).
    #[arg(long, default_value_t = 500)]
    products: usize,
    /// Zipf exponent of product popularity (0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Counters the workers bump and the progress line reads.
#[derive(Default)]
struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
}

struct WorkerResult {
    latency_us: Histogram<u64>,
    requests: u64,
    errors_by_status: std::collections::BTreeMap<String, u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.threads == 0 || args.connections < args.threads || args.concurrency < args.connections {
        bail!("need threads >= 1, connections >= threads and concurrency >= connections");
    }
    let fingerprint: [u8; 32] = hex::decode(args.fingerprint.trim())
        .context("fingerprint is hex")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("fingerprint is 32 bytes"))?;
    let progress = Arc::new(Progress::default());
    let workers: Vec<_> = (0..args.threads)
        .map(|index| {
            let (args, progress) = (args.clone(), progress.clone());
            std::thread::spawn(move || worker(index, &args, fingerprint, &progress))
        })
        .collect();
    report_progress(&args, &progress);
    let mut results = Vec::new();
    for worker in workers {
        results.push(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??,
        );
    }
    report(&args, results)
}

/// Prints one line per second until the run ends.
fn report_progress(args: &Args, progress: &Progress) {
    let total = args.warmup + args.duration;
    if args.warmup == 0 {
        progress.measuring.store(true, Ordering::Relaxed);
    }
    let mut last = 0;
    for second in 1..=total {
        std::thread::sleep(Duration::from_secs(1));
        if second == args.warmup {
            progress.measuring.store(true, Ordering::Relaxed);
        }
        let now = progress.requests.load(Ordering::Relaxed);
        let phase = if second <= args.warmup {
            "warmup"
        } else {
            "measure"
        };
        eprintln!(
            "[{second:>3}s {phase}] {:>8} req/s, {} errors",
            now - last,
            progress.errors.load(Ordering::Relaxed)
        );
        last = now;
    }
}

fn worker(
    index: usize,
    args: &Args,
    fingerprint: [u8; 32],
    progress: &Arc<Progress>,
) -> anyhow::Result<WorkerResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let connections =
            args.connections / args.threads + usize::from(index < args.connections % args.threads);
        let mut config = ClientConfig::new(args.server, Trust::Fingerprint(fingerprint));
        // The load generator measures the server: a retry would hide an error.
        config.retry = RetryPolicy::none();
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(Client::connect(config.clone()).await.context("connect")?);
        }
        let per_thread = args.concurrency / args.threads;
        let workload = Workload::new(args, index);
        let stop_at = Instant::now() + Duration::from_secs(args.warmup + args.duration);
        let mut tasks = Vec::with_capacity(per_thread);
        for slot in 0..per_thread {
            let client = clients[slot % clients.len()].clone();
            let (workload, progress) = (workload.fork(slot), progress.clone());
            tasks.push(tokio::task::spawn_local(drive(
                client, workload, progress, stop_at,
            )));
        }
        let mut result = WorkerResult {
            latency_us: histogram(),
            requests: 0,
            errors_by_status: Default::default(),
        };
        for task in tasks {
            let part = task.await?;
            result.latency_us.add(&part.latency_us)?;
            result.requests += part.requests;
            for (status, count) in part.errors_by_status {
                *result.errors_by_status.entry(status).or_default() += count;
            }
        }
        Ok(result)
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// One in-flight slot: send, wait, record, repeat.
async fn drive(
    client: Client,
    mut workload: Workload,
    progress: Arc<Progress>,
    stop_at: Instant,
) -> WorkerResult {
    let mut result = WorkerResult {
        latency_us: histogram(),
        requests: 0,
        errors_by_status: Default::default(),
    };
    while Instant::now() < stop_at {
        let request = workload.next_request();
        let sent = Instant::now();
        let outcome = client.call(request).await;
        let micros = sent.elapsed().as_micros() as u64;
        progress.requests.fetch_add(1, Ordering::Relaxed);
        if !progress.measuring.load(Ordering::Relaxed) {
            continue;
        }
        result.requests += 1;
        match outcome {
            Ok(_) => result.latency_us.saturating_record(micros.max(1)),
            Err(error) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                let status = error
                    .status()
                    .map_or_else(|| "transport".to_owned(), |s| format!("{s:?}"));
                *result.errors_by_status.entry(status).or_default() += 1;
            }
        }
    }
    result
}

/// The `--json` report.
#[derive(serde::Serialize)]
struct Report {
    scenario: String,
    duration_s: u64,
    requests: u64,
    rate_per_s: f64,
    latency_us: Percentiles,
    errors: std::collections::BTreeMap<String, u64>,
}

#[derive(serde::Serialize)]
struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn report(args: &Args, results: Vec<WorkerResult>) -> anyhow::Result<()> {
    let mut latency = histogram();
    let mut requests = 0;
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for result in results {
        latency.add(&result.latency_us)?;
        requests += result.requests;
        for (status, count) in result.errors_by_status {
            *errors.entry(status).or_default() += count;
        }
    }
    let quantile = |q| latency.value_at_quantile(q);
    let rate = requests as f64 / args.duration as f64;
    println!(
        "scenario {:?}: {requests} requests in {} s = {rate:.0} req/s",
        args.scenario, args.duration
    );
    println!(
        "latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
        quantile(0.999),
        latency.max()
    );
    let error_count: u64 = errors.values().sum();
    println!("errors: {error_count} {errors:?}");
    if let Some(path) = &args.json {
        let report = Report {
            scenario: format!("{:?}", args.scenario).to_lowercase(),
            duration_s: args.duration,
            requests,
            rate_per_s: rate,
            latency_us: Percentiles {
                p50: quantile(0.5),
                p90: quantile(0.9),
                p99: quantile(0.99),
                p999: quantile(0.999),
                max: latency.max(),
            },
            errors,
        };
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
