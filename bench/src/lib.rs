//! souk's benchmarks: criterion microbenchmarks (`benches/`) and
//! side-by-side comparisons with anchors measured in the same run
//! (`src/bin/`).
//!
//! This library holds what the comparisons share: a closed-loop driver that
//! records every latency in an HDR histogram, and a bare quinn echo server
//! (the transport's own limit on this machine) configured exactly as a souk
//! shard's endpoint.

pub mod echo;
pub mod postgres;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The outcome of one measured run.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Measurement {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p50_us(&self) -> u64 {
        self.latency_us.value_at_quantile(0.50)
    }

    pub fn p99_us(&self) -> u64 {
        self.latency_us.value_at_quantile(0.99)
    }
}

/// The latency histogram every benchmark here records into.
pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Runs `concurrency` loops of `operation` on the current (single-threaded)
/// runtime for `warmup` then `duration`, recording each completion's latency
/// during `duration` only. Must be called inside a `LocalSet`.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    operation: F,
) -> Measurement
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = bool> + 'static,
{
    let histogram = Rc::new(RefCell::new(histogram()));
    let errors = Rc::new(RefCell::new(0u64));
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (operation, histogram, errors) = (operation.clone(), histogram.clone(), errors.clone());
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    break;
                }
                let ok = operation().await;
                if sent >= measure_from {
                    if ok {
                        let micros = sent.elapsed().as_micros() as u64;
                        histogram.borrow_mut().saturating_record(micros.max(1));
                    } else {
                        *errors.borrow_mut() += 1;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("benchmark loops do not panic");
    }
    let latency_us = histogram.borrow().clone();
    let errors = *errors.borrow();
    Measurement {
        requests: latency_us.len(),
        errors,
        elapsed: duration,
        latency_us,
    }
}

/// One measured target of a comparison, as the comparison binaries write
/// it with `--json FILE` for `compare` to gather into one table.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub comparison: String,
    pub target: String,
    /// What souk is compared against (rather than souk itself).
    pub anchor: bool,
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Row {
    /// The medians of several runs of one target, each run given as (per
    /// second, p50 µs, p99 µs).
    pub fn of_medians(
        comparison: &str,
        target: &str,
        anchor: bool,
        runs: &[(f64, u64, u64)],
    ) -> Row {
        Row {
            comparison: comparison.into(),
            target: target.into(),
            anchor,
            per_second: median(runs.iter().map(|r| r.0).collect()),
            p50_us: median(runs.iter().map(|r| r.1 as f64).collect()) as u64,
            p99_us: median(runs.iter().map(|r| r.2 as f64).collect()) as u64,
        }
    }
}

/// Appends `rows` to `path` (one JSON row per line), if a path was given.
pub fn write_rows(path: Option<&std::path::Path>, rows: &[Row]) -> anyhow::Result<()> {
    use std::io::Write;
    let Some(path) = path else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for row in rows {
        writeln!(file, "{}", serde_json::to_string(row)?)?;
    }
    Ok(())
}

/// The median of some numbers (the middle one, or the lower middle).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// CPU seconds (user + system) each thread of this process has used so
/// far, as (thread id, name, seconds), from `/proc`: steal time on a shared machine is not
/// in them, so CPU per operation stays comparable between noisy runs where
/// rates do not. Empty where `/proc` is not readable.
pub fn cpu_by_thread() -> Vec<(u32, String, f64)> {
    let ticks = 100.0; // USER_HZ, fixed at 100 on Linux's user ABI
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut threads = Vec::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ..." where comm may hold spaces or parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line.
        let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            threads.push((tid, name, (user + system) / ticks));
        }
    }
    threads
}
