//! `souk-loadgen`: drives a running souk server through the client SDK (or
//! its HTTP/JSON bridge, `--target http`) and tells the truth about it
//! under load.
//!
//!     souk-loadgen --fingerprint <hex> --scenario browse --rate 20000
//!     souk-loadgen --fingerprint <hex> --scenario checkout --concurrency 64 \
//!         --admin-email boss@example.org --admin-password '...'
//!     souk-loadgen --fingerprint <hex> --scenario browse --ramp --rate 5000 \
//!         --ramp-step 5000 --slo-p99-ms 1
//!     souk-loadgen --target http --http 127.0.0.1:8080 --scenario checkout \
//!         --admin-email boss@example.org --admin-password '...'
//!     souk-loadgen --server 10.0.0.1:4433 --fingerprint <hex> \
//!         --server 10.0.0.2:4433 --fingerprint <hex> --scenario flash-sale ...
//!
//! Several `--server`s (or `--http`s) spread the connections over several
//! souk nodes sharing one store, round robin, and the report gives each
//! node's figures beside the totals.
//!
//! A run is: setup through the public API (read the catalog, sign the
//! shoppers in, stock the SKUs with the admin account), warm-up, the
//! measured phase (or the steps of a ramp), then the checks: a flash sale
//! must have sold exactly its units and no more, and sampled acknowledged
//! orders must read back. A failed check exits with status 2.

mod engine;
mod report;
mod scenario;
mod shop;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use souk_client::api::{BrowseCategory, RestockMode, Sku, UnixMillis};
use souk_client::{ClientConfig, RetryPolicy, Trust};

use engine::{Engine, Measured, Phase, ThreadSetup};
use report::{Check, RampStep, Report, Second};
use scenario::{Catalog, Mix, Scenario};
use shop::{Endpoint, Shop};

/// How the load reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// FlatBuffers over QUIC, through the Rust client SDK.
    Quic,
    /// JSON over HTTP/1.1 keep-alive, through the bridge (`--http`).
    Http,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "souk-loadgen", version, about = "Load generator for souk")]
pub struct Args {
    /// Server address (UDP); repeat it for several nodes.
    #[arg(
        long = "server",
        default_value = "127.0.0.1:4433",
        value_delimiter = ','
    )]
    servers: Vec<std::net::SocketAddr>,
    /// SHA-256 of the server certificate, in hex (souk prints it at start);
    /// for `--target quic`. One per `--server`, in the same order, or one
    /// that every node's certificate has.
    #[arg(
        long = "fingerprint",
        required_if_eq("target", "quic"),
        value_delimiter = ','
    )]
    fingerprints: Vec<String>,
    /// The HTTP bridge's address, for `--target http`; repeat it for
    /// several nodes.
    #[arg(long = "http", default_value = "127.0.0.1:8080", value_delimiter = ',')]
    https: Vec<std::net::SocketAddr>,
    #[arg(long, value_enum, default_value_t = Target::Quic)]
    target: Target,
    #[arg(long, value_enum, default_value_t = Scenario::Browse)]
    scenario: Scenario,
    /// Weights for `--scenario mixed`.
    #[arg(long, default_value = "browse=70,category=20,cart=8,checkout=2")]
    mix: Mix,
    /// Open loop: actions per second in all, each measured from when it
    /// was meant to start. Without it the loop is closed (`--concurrency`).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: actions in flight in all.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// QUIC connections, one shopper each (signed in as its own account
    /// where the scenario needs one).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Threads, each with its own runtime and its share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured seconds (per step, with `--ramp`).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring (per step, with `--ramp`).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seed of every random choice: the same seed sends the same actions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Products read from the catalog for `browse` (the most popular first).
    #[arg(long, default_value_t = 1000)]
    products: usize,
    /// Zipf exponent of product popularity (0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// SKUs that carts and checkouts choose from.
    #[arg(long, default_value_t = 50)]
    skus: usize,
    /// Units of the flash sale's SKU.
    #[arg(long, default_value_t = 100)]
    flash_units: i64,
    /// Checkouts and flash-sale buys name their line in the checkout
    /// ("buy now", one request) instead of adding it to the cart first.
    #[arg(long)]
    buy_now: bool,
    /// An admin account, to stock the SKUs that checkouts and the flash
    /// sale buy (`souk create-admin`).
    #[arg(long, env = "SOUK_LOADGEN_ADMIN_EMAIL")]
    admin_email: Option<String>,
    #[arg(long, env = "SOUK_LOADGEN_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Shopper accounts are `{prefix}-{thread}-{n}@loadgen.example`,
    /// registered on first use and signed in after.
    #[arg(long, default_value = "shopper")]
    account_prefix: String,
    /// Raise the open-loop rate step by step from `--rate` until p99
    /// exceeds `--slo-p99-ms` (or the rate is not reached, or errors pass
    /// 1 %); report the highest rate that held.
    #[arg(long, requires = "rate")]
    ramp: bool,
    /// Rate added at each ramp step [default: --rate].
    #[arg(long)]
    ramp_step: Option<f64>,
    /// The ramp stops here.
    #[arg(long, default_value_t = 1_000_000.0)]
    ramp_max: f64,
    /// The ramp's latency objective.
    #[arg(long, default_value_t = 10.0)]
    slo_p99_ms: f64,
    /// Open loop: actions in flight at most, over all threads; past it the
    /// schedule waits, and the wait counts in the latency.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// Acknowledged orders read back at the end to check none was lost.
    #[arg(long, default_value_t = 1000)]
    verify_orders: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Draw latency percentiles and throughput per second to this file
    /// (`.svg`, or `.html` for the same drawing in a page).
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(report) if report.checks.iter().all(|c| c.passed) => {}
        Ok(_) => {
            eprintln!("a correctness check failed");
            std::process::exit(2);
        }
        Err(error) => {
            eprintln!("souk-loadgen: {error:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    if args.threads == 0 || args.connections < args.threads {
        bail!("need --threads >= 1 and --connections >= --threads");
    }
    if args.rate.is_none() && args.concurrency < args.threads {
        bail!("need --concurrency >= --threads");
    }
    let endpoints = endpoints(args)?;
    let endpoint = &endpoints[0];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (catalog, sale) = runtime.block_on(setup(args, endpoint))?;
    let catalog = Arc::new(catalog);
    let accounts = args.scenario.needs_accounts()
        || (args.scenario == Scenario::Mixed && args.mix.0.iter().any(|(s, _)| s.needs_accounts()));
    eprintln!(
        "setup: {} products, {} categories, {} SKUs; {} connections on {} threads{}",
        catalog.products.len(),
        catalog.categories.len(),
        catalog.skus.len(),
        args.connections,
        args.threads,
        if accounts { ", signed in" } else { "" }
    );
    let engine = Engine::start(
        args.threads,
        &ThreadSetup {
            endpoints: endpoints.clone(),
            connections: args.connections,
            threads: args.threads,
            scenario: args.scenario,
            mix: args.mix.clone(),
            zipf: args.zipf,
            seed: args.seed,
            catalog: catalog.clone(),
            account_prefix: args.account_prefix.clone(),
            sign_in: accounts,
            max_in_flight: args.max_in_flight / args.threads,
        },
    )?;

    let mut timeline = Vec::new();
    let mut steps = Vec::new();
    let measured = if args.ramp {
        ramp(args, &engine, &mut timeline, &mut steps)?
    } else {
        phase(args, &engine, args.rate, &mut timeline)?
    };

    let mut checks = Vec::new();
    if accounts && args.verify_orders > 0 {
        let orders = engine.verify_orders(args.verify_orders)?;
        checks.push(Check {
            name: "acknowledged orders read back".into(),
            passed: orders.missing == 0 && orders.unreadable == 0,
            detail: format!(
                "{} sampled, {} missing, {} unreadable",
                orders.checked, orders.missing, orders.unreadable
            ),
        });
    }
    if let Some((sku, since)) = &sale {
        checks.extend(runtime.block_on(flash_checks(args, endpoint, &engine, sku, *since))?);
    }
    engine.stop();
    let nodes: Vec<String> = endpoints.iter().map(|e| e.address().to_string()).collect();
    let report = Report::new(args, &measured, &nodes, timeline, steps, checks);
    report.print(args);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        report::plot(&report, path).with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(report)
}

/// The nodes the load goes to, as `--target` reaches them.
fn endpoints(args: &Args) -> anyhow::Result<Vec<Endpoint>> {
    match args.target {
        Target::Quic => {
            let fingerprints = args
                .fingerprints
                .iter()
                .map(|hex_text| {
                    hex::decode(hex_text.trim())
                        .context("--fingerprint is hex")?
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("--fingerprint is 32 bytes"))
                })
                .collect::<anyhow::Result<Vec<[u8; 32]>>>()?;
            if fingerprints.len() != 1 && fingerprints.len() != args.servers.len() {
                bail!("give one --fingerprint, or one per --server");
            }
            let endpoints = args.servers.iter().enumerate().map(|(n, server)| {
                let fingerprint = fingerprints[n.min(fingerprints.len() - 1)];
                let mut client = ClientConfig::new(*server, Trust::Fingerprint(fingerprint));
                // The load generator measures the server: a retry would hide an error.
                client.retry = RetryPolicy::none();
                Endpoint::Quic(client)
            });
            Ok(endpoints.collect())
        }
        Target::Http => {
            let endpoints = args.https.iter().map(|addr| Endpoint::Http {
                addr: *addr,
                // The SDK's default, so both targets give up alike.
                timeout: ClientConfig::new(*addr, Trust::Fingerprint([0; 32])).request_timeout,
            });
            Ok(endpoints.collect())
        }
    }
}

/// Reads the catalog through the public API and stocks what the scenario
/// buys. Returns the flash sale's SKU and the server time it opened.
async fn setup(
    args: &Args,
    endpoint: &Endpoint,
) -> anyhow::Result<(Catalog, Option<(Sku, UnixMillis)>)> {
    let client = Shop::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {}", endpoint.address()))?;
    let categories = client.category_ids().await?;
    if categories.is_empty() {
        bail!("the server's catalog is empty");
    }
    // Round-robin over categories, so that every one is represented.
    let mut products = Vec::new();
    let mut cursors = vec![None; categories.len()];
    let mut open = vec![true; categories.len()];
    while products.len() < args.products && open.iter().any(|o| *o) {
        for (i, category) in categories.iter().enumerate() {
            if !open[i] || products.len() >= args.products {
                continue;
            }
            let (page, next) = client
                .browse(BrowseCategory {
                    category_id: Some(category.clone()),
                    limit: 100,
                    cursor: cursors[i].take(),
                    ..BrowseCategory::default()
                })
                .await?;
            products.extend(page);
            cursors[i] = next;
            open[i] = cursors[i].is_some();
        }
    }
    products.truncate(args.products);
    let mut skus = Vec::new();
    for product in products.iter().take(args.skus) {
        if let Some(sku) = client.product(product).await? {
            skus.push(sku);
        }
    }
    if skus.is_empty() {
        bail!("no product has a variant to buy");
    }

    let buys = matches!(args.scenario, Scenario::Checkout | Scenario::FlashSale)
        || (args.scenario == Scenario::Mixed
            && args.mix.0.iter().any(|(s, _)| *s == Scenario::Checkout));
    let admin = match (&args.admin_email, &args.admin_password) {
        (Some(email), Some(password)) if buys => {
            let admin = Shop::connect(endpoint).await?;
            admin
                .login(email, password)
                .await
                .context("signing in as the admin")?;
            Some(admin)
        }
        _ => None,
    };
    let mut sale = None;
    if args.scenario == Scenario::FlashSale {
        let Some(admin) = &admin else {
            bail!("a flash sale sets its SKU's stock: give --admin-email and --admin-password");
        };
        // Its own SKU, outside the ones carts and checkouts use.
        let sku = products
            .iter()
            .rev()
            .find(|p| !skus.iter().any(|s| s.as_str().starts_with(p.as_str())))
            .unwrap_or(&products[0]);
        let sku = client
            .product(sku)
            .await?
            .context("the flash sale's product has no variant")?;
        admin
            .restock(&sku, args.flash_units, RestockMode::Set)
            .await
            .context("setting the flash sale's stock")?;
        eprintln!("flash sale: {} units of {sku}", args.flash_units);
        // Over HTTP the clock reads to the second: a second's margin.
        let opened = client.server_time().await?;
        let opened = match args.target {
            Target::Quic => opened,
            Target::Http => UnixMillis(opened.0.saturating_sub(1000)),
        };
        sale = Some((sku, opened));
    } else if buys {
        match &admin {
            Some(admin) => {
                for sku in &skus {
                    admin
                        .restock(sku, 1_000_000, RestockMode::Set)
                        .await
                        .context("stocking the SKUs checkouts buy")?;
                }
            }
            None => eprintln!(
                "note: no --admin-email/--admin-password: checkouts buy from the stock there is"
            ),
        }
    }
    client.close();
    let flash_sku = sale.as_ref().map(|(sku, _)| sku.clone());
    Ok((
        Catalog {
            products,
            categories,
            skus,
            flash_sku,
            buy_now: args.buy_now,
        },
        sale,
    ))
}

/// Runs one phase at `rate` (or closed loop), printing a line a second.
fn phase(
    args: &Args,
    engine: &Engine,
    rate: Option<f64>,
    timeline: &mut Vec<Second>,
) -> anyhow::Result<Measured> {
    let start = Instant::now() + Duration::from_millis(50);
    let warmup = Duration::from_secs(args.warmup);
    let duration = Duration::from_secs(args.duration);
    let threads = args.threads;
    engine.run(Phase {
        rate: rate.map(|r| r / threads as f64),
        concurrency: args.concurrency / threads,
        start,
        warmup,
        duration,
    });
    let live = &engine.live;
    let offset = timeline.last().map_or(0, |s: &Second| s.t + 1);
    let total = args.warmup + args.duration;
    for second in 1..=total {
        std::thread::sleep(
            (start + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let taken = std::mem::take(&mut *live.second.lock().expect("not poisoned"));
        let measuring = second > args.warmup;
        let line = Second::of(offset + second - 1, rate, &taken);
        eprintln!(
            "{}",
            line.progress(if measuring { "measure" } else { "warmup" })
        );
        if measuring {
            timeline.push(line);
        }
    }
    engine.collect()
}

fn ramp(
    args: &Args,
    engine: &Engine,
    timeline: &mut Vec<Second>,
    steps: &mut Vec<RampStep>,
) -> anyhow::Result<Measured> {
    let first = args.rate.expect("--ramp requires --rate");
    let step = args.ramp_step.unwrap_or(first);
    let mut rate = first;
    let mut best = Measured::default();
    while rate <= args.ramp_max {
        eprintln!("ramp: {rate:.0}/s");
        let measured = phase(args, engine, Some(rate), timeline)?;
        let achieved = measured.completed as f64 / args.duration as f64;
        let p99_ms = measured.overall.value_at_quantile(0.99) as f64 / 1000.0;
        let errors = measured.error_count() as f64 / measured.completed.max(1) as f64;
        let held = p99_ms <= args.slo_p99_ms && achieved >= 0.95 * rate && errors < 0.01;
        steps.push(RampStep {
            target_per_s: rate,
            achieved_per_s: achieved,
            p50_us: measured.overall.value_at_quantile(0.5),
            p99_us: measured.overall.value_at_quantile(0.99),
            error_ratio: errors,
            held,
        });
        if !held {
            break;
        }
        best = measured;
        rate += step;
    }
    Ok(best)
}

/// After a flash sale: the stock the server reports and the units in the
/// shoppers' orders must agree, and never exceed what was put on sale.
async fn flash_checks(
    args: &Args,
    endpoint: &Endpoint,
    engine: &Engine,
    sku: &Sku,
    since: UnixMillis,
) -> anyhow::Result<Vec<Check>> {
    let admin = Shop::connect(endpoint).await?;
    let (Some(email), Some(password)) = (&args.admin_email, &args.admin_password) else {
        bail!("the flash sale's checks need the admin account");
    };
    admin.login(email, password).await?;
    let level = admin.restock(sku, 0, RestockMode::Add).await?;
    let units = engine.flash_units(sku, since)?;
    let taken = args.flash_units - level.available;
    let checks = vec![
        Check {
            name: "flash sale: nothing oversold".into(),
            passed: units.units <= args.flash_units && level.available >= 0,
            detail: format!(
                "{} units in {} orders, {} paid, of {} on sale; {}",
                units.units,
                units.orders,
                units.paid_units,
                args.flash_units,
                if level.available == 0 {
                    "sold out".to_owned()
                } else {
                    format!("{} left (the run ended first)", level.available)
                }
            ),
        },
        Check {
            name: "flash sale: every unit taken is in an order".into(),
            passed: units.units == taken,
            detail: format!(
                "the server counts {taken} taken ({} sold, {} reserved); the orders hold {}",
                args.flash_units - level.on_hand,
                level.reserved,
                units.units
            ),
        },
    ];
    admin.close();
    Ok(checks)
}
