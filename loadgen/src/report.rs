//! The run's report: printed, as JSON (`--json`) and drawn (`--plot`).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::engine::{Measured, histogram};
use crate::scenario::ACTIONS;
use crate::{Args, Target};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(histogram: &hdrhistogram::Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionReport {
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub latency_us: Percentiles,
}

/// What one node served.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    pub address: String,
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub latency_us: Percentiles,
}

/// One second of the measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Second {
    pub t: u64,
    pub target_per_s: Option<f64>,
    pub completed: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors_by_status: BTreeMap<String, u64>,
}

impl Second {
    pub fn of(t: u64, target: Option<f64>, measured: &Measured) -> Second {
        let q = |q| measured.overall.value_at_quantile(q);
        Second {
            t,
            target_per_s: target,
            completed: measured.completed,
            errors: measured.error_count(),
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            errors_by_status: measured.errors.clone(),
        }
    }

    pub fn progress(&self, phase: &str) -> String {
        let errors = if self.errors_by_status.is_empty() {
            "no errors".to_owned()
        } else {
            let each: Vec<String> = self
                .errors_by_status
                .iter()
                .map(|(status, n)| format!("{status} {n}"))
                .collect();
            format!("errors: {}", each.join(", "))
        };
        format!(
            "[{:>4}s {phase:<7}] {:>8}/s  p50 {:>6} µs  p99 {:>7} µs  {errors}",
            self.t + 1,
            self.completed,
            self.p50_us,
            self.p99_us
        )
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RampStep {
    pub target_per_s: f64,
    pub achieved_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub error_ratio: f64,
    /// Whether p99 stayed within the objective at the target rate.
    pub held: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub target: Target,
    pub scenario: crate::scenario::Scenario,
    pub mode: String,
    pub connections: usize,
    pub threads: usize,
    pub seed: u64,
    pub duration_s: u64,
    /// Completed actions (a checkout is one action of two requests).
    pub completed: u64,
    pub per_second: f64,
    pub latency_us: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// Flash-sale checkouts refused for want of stock: the sale working.
    pub sold_out: u64,
    pub actions: BTreeMap<String, ActionReport>,
    /// Each node's share, in `--server` (or `--http`) order.
    pub nodes: Vec<NodeReport>,
    pub timeline: Vec<Second>,
    pub ramp: Vec<RampStep>,
    /// With `--ramp`: the highest rate whose p99 held the objective.
    pub ramp_highest_held_per_s: Option<f64>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(
        args: &Args,
        measured: &Measured,
        nodes: &[String],
        timeline: Vec<Second>,
        ramp: Vec<RampStep>,
        checks: Vec<Check>,
    ) -> Report {
        let seconds = args.duration.max(1) as f64;
        let empty = (histogram(), 0);
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(n, address)| {
                let (histogram, errors) = measured.nodes.get(&n).unwrap_or(&empty);
                NodeReport {
                    address: address.clone(),
                    ok: histogram.len(),
                    errors: *errors,
                    per_second: (histogram.len() + errors) as f64 / seconds,
                    latency_us: Percentiles::of(histogram),
                }
            })
            .collect();
        let mut actions = BTreeMap::new();
        for name in ACTIONS {
            if let Some((histogram, errors)) = measured.actions.get(name) {
                actions.insert(
                    (*name).to_owned(),
                    ActionReport {
                        ok: histogram.len(),
                        errors: *errors,
                        per_second: (histogram.len() + errors) as f64 / seconds,
                        latency_us: Percentiles::of(histogram),
                    },
                );
            }
        }
        let mode = match (args.ramp, args.rate) {
            (true, _) => format!("ramp, p99 objective {} ms", args.slo_p99_ms),
            (false, Some(rate)) => format!("open loop at {rate}/s"),
            (false, None) => format!("closed loop, {} in flight", args.concurrency),
        };
        let highest = ramp
            .iter()
            .filter(|s| s.held)
            .map(|s| s.target_per_s)
            .next_back();
        Report {
            target: args.target,
            scenario: args.scenario,
            mode,
            connections: args.connections,
            threads: args.threads,
            seed: args.seed,
            duration_s: args.duration,
            completed: measured.completed,
            per_second: measured.completed as f64 / seconds,
            latency_us: Percentiles::of(&measured.overall),
            errors: measured.errors.clone(),
            sold_out: measured.sold_out,
            actions,
            nodes,
            timeline,
            ramp,
            ramp_highest_held_per_s: highest.filter(|_| args.ramp),
            checks,
        }
    }

    pub fn print(&self, args: &Args) {
        println!(
            "scenario {:?} over {:?}, {} ({} connections, {} threads, seed {})",
            self.scenario, self.target, self.mode, self.connections, self.threads, self.seed
        );
        println!(
            "{} actions in {} s = {:.0}/s; errors {}{}",
            self.completed,
            self.duration_s,
            self.per_second,
            self.errors.values().sum::<u64>(),
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.errors)
            }
        );
        println!(
            "{:<12} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "action", "ok", "errors", "per s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
        );
        for (name, action) in &self.actions {
            let l = &action.latency_us;
            println!(
                "{name:<12} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>9}",
                action.ok, action.errors, action.per_second, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        let l = &self.latency_us;
        println!(
            "{:<12} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "all",
            self.completed - self.errors.values().sum::<u64>(),
            self.errors.values().sum::<u64>(),
            self.per_second,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        if self.nodes.len() > 1 {
            println!(
                "{:<22} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}",
                "node", "ok", "errors", "per s", "p50 µs", "p99 µs", "max µs"
            );
            for node in &self.nodes {
                let l = &node.latency_us;
                println!(
                    "{:<22} {:>9} {:>7} {:>9.0} {:>8} {:>8} {:>8}",
                    node.address, node.ok, node.errors, node.per_second, l.p50, l.p99, l.max
                );
            }
        }
        if self.sold_out > 0 {
            println!(
                "{} flash-sale checkouts found the stock gone",
                self.sold_out
            );
        }
        if self.errors.contains_key("LimitExceeded") {
            println!(
                "note: LimitExceeded means the server's per-customer limits refused \
                 (run it with --rate-checkouts 0 --rate-cart-writes 0 --purchase-limit 0 to measure past them)"
            );
        }
        if self.errors.contains_key("Busy") {
            println!(
                "note: Busy is the server shedding load (or refusing new connections: --new-connections-per-sec 0)"
            );
        }
        for step in &self.ramp {
            println!(
                "ramp {:>9.0}/s: achieved {:>9.0}/s, p50 {:>6} µs, p99 {:>7} µs, errors {:.2} % {}",
                step.target_per_s,
                step.achieved_per_s,
                step.p50_us,
                step.p99_us,
                step.error_ratio * 100.0,
                if step.held { "held" } else { "missed" }
            );
        }
        if args.ramp {
            match self.ramp_highest_held_per_s {
                Some(rate) => println!(
                    "highest rate with p99 <= {} ms: {rate:.0}/s",
                    args.slo_p99_ms
                ),
                None => println!("no rate held p99 <= {} ms", args.slo_p99_ms),
            }
        }
        for check in &self.checks {
            println!(
                "check {}: {} ({})",
                if check.passed { "passed" } else { "FAILED" },
                check.name,
                check.detail
            );
        }
    }
}

/// One value per measured second, for a line.
fn points(report: &Report, value: impl Fn(&Second) -> f64) -> Vec<(u64, f64)> {
    report
        .timeline
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, value(s)))
        .collect()
}

/// Latency percentiles (above) and throughput (below) per second.
pub fn plot(report: &Report, path: &Path) -> anyhow::Result<()> {
    let html = path.extension().is_some_and(|e| e == "html");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(420);
        let seconds = report.timeline.len().max(1) as u64;
        let top_ms = report
            .timeline
            .iter()
            .map(|s| s.p999_us)
            .max()
            .unwrap_or(1)
            .max(1) as f64
            / 1000.0;
        let title = format!(
            "souk-loadgen: {:?}, {} — latency (ms)",
            report.scenario, report.mode
        );
        let mut latency = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..seconds, 0f64..top_ms * 1.1)?;
        latency
            .configure_mesh()
            .x_desc("second")
            .y_desc("ms")
            .draw()?;
        type Series = (&'static str, fn(&Second) -> u64, RGBColor);
        let series: [Series; 3] = [
            ("p50", |s| s.p50_us, BLUE),
            ("p99", |s| s.p99_us, RED),
            ("p99.9", |s| s.p999_us, MAGENTA),
        ];
        for (name, value, color) in series {
            latency
                .draw_series(LineSeries::new(
                    points(report, |s| value(s) as f64 / 1000.0),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        latency
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;

        let top_rate = report
            .timeline
            .iter()
            .map(|s| (s.completed as f64).max(s.target_per_s.unwrap_or(0.0)))
            .fold(1.0, f64::max);
        let mut throughput = ChartBuilder::on(&lower)
            .caption("completed per second", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..seconds, 0f64..top_rate * 1.1)?;
        throughput.configure_mesh().x_desc("second").draw()?;
        throughput
            .draw_series(LineSeries::new(
                points(report, |s| s.completed as f64),
                GREEN.stroke_width(2),
            ))?
            .label("completed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        if report.timeline.iter().any(|s| s.target_per_s.is_some()) {
            throughput
                .draw_series(LineSeries::new(
                    points(report, |s| s.target_per_s.unwrap_or(0.0)),
                    BLACK.stroke_width(1),
                ))?
                .label("target")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        throughput
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    let contents = if html {
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>souk-loadgen</title></head>\
             <body>\n{svg}\n</body></html>\n"
        )
    } else {
        svg
    };
    std::fs::write(path, contents)?;
    Ok(())
}
