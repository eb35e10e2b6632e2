//! A flash sale on one hot SKU: souk's checkout next to the two usual ways
//! to sell a counted item, in one run on this machine.
//!
//!     cargo run --release -p souk-bench --bin flash-sale
//!
//! - souk: a real server (every core a shard, embedded store, simulated
//!   payment) and `--buyers` signed-in customers, each on a connection of
//!   its own, who buy one unit at a time until the SKU is sold out: in one
//!   sale by setting their cart to one unit and checking the cart out (two
//!   requests), in the other by naming the line in the checkout ("buy now",
//!   one request); the two sales alternate. Each checkout reserves on the
//!   SKU's owner shard and writes the order durably before it is
//!   acknowledged. Every sale must sell exactly `--units` (0 oversell,
//!   checked) and its rate is units sold per second of sale.
//! - PostgreSQL: `UPDATE inventory SET stock = stock - 1 WHERE id = 1 AND
//!   stock > 0` on one row, fsync on, pgbench with `--clients`.
//! - Redis: a Lua conditional decrement (`EVALSHA`) through `fred` with
//!   `--clients` connections, append-only file with `appendfsync always`.
//!
//! Anchors that cannot be started here are skipped with the reason.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use fred::prelude::{Builder, ClientLike, Config as RedisConfig, LuaInterface};
use souk_bench::postgres::Postgres;
use souk_bench::{closed_loop, median};
use souk_client::api::{Checkout, CheckoutLine, ErrorStatus, RestockMode};
use souk_client::{Client, ClientConfig, RetryPolicy, Trust, new_idempotency_key};
use souk_server::{Config, Server};
use souk_storage::demo;
use souk_storage::testing::RedisServer as Redis;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Units on sale in each souk run.
    #[arg(long, default_value_t = 20_000)]
    units: i64,
    /// Concurrent buyers (connections) in the souk sale.
    #[arg(long, default_value_t = 128)]
    buyers: usize,
    /// souk shards. [default: the number of cores]
    #[arg(long)]
    shards: Option<usize>,
    /// Clients of the PostgreSQL and Redis anchors.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds each anchor is measured.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of each; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    no_postgres: bool,
    #[arg(long)]
    no_redis: bool,
    /// Also append the results to this file as JSON rows (for `compare`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

struct Sale {
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
}

const ADMIN_EMAIL: &str = "admin@example.org";
const ADMIN_PASSWORD: &str = "flash sale benchmark admin";

/// How each buyer buys.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Sets the cart to one unit, then checks the cart out: two requests.
    Cart,
    /// Names the line in the checkout itself ("buy now"): one request.
    BuyNow,
}

fn souk_sale(args: &Args, mode: Mode) -> anyhow::Result<Sale> {
    let data = tempfile::tempdir()?;
    let shards = args
        .shards
        .unwrap_or_else(souk_server::config::available_cores);
    let config = Config {
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        shards,
        data_dir: data.path().to_path_buf(),
        demo_products: 50,
        purchase_limit: 0,
        // Each buyer here is a load generator, not a person.
        rate_checkouts: 0,
        rate_cart_writes: 0,
        // All of them connect from one address.
        new_connections_per_sec: 0,
        ..Config::default()
    };
    souk_server::server::create_admin(&config, ADMIN_EMAIL, ADMIN_PASSWORD, None)?;
    let server = Server::start(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let client_config = {
        let mut c = ClientConfig::new(
            server.local_addr(),
            Trust::Fingerprint(server.fingerprint()),
        );
        c.request_timeout = Duration::from_secs(30);
        c.retry = RetryPolicy::default();
        c
    };
    let result = local.block_on(&runtime, async {
        let admin = Client::connect(client_config.clone()).await?;
        admin.login(ADMIN_EMAIL, ADMIN_PASSWORD, None).await?;
        let product = admin.get_product(&demo::product_id(1)).await?;
        let sku = product.variants[0].sku.clone();
        admin
            .admin_restock(&sku, args.units, RestockMode::Set)
            .await?;
        let mut buyers = Vec::with_capacity(args.buyers);
        for n in 0..args.buyers {
            let client = Client::connect(client_config.clone()).await?;
            client
                .register(
                    &format!("buyer{n}@example.org"),
                    "flash-sale-password",
                    None,
                )
                .await?;
            buyers.push(client);
        }
        let sold = Rc::new(Cell::new(0i64));
        let last_sale = Rc::new(Cell::new(Instant::now()));
        let histogram = Rc::new(std::cell::RefCell::new(souk_bench::histogram()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in buyers {
            let (sku, sold, last_sale, histogram) = (
                sku.clone(),
                sold.clone(),
                last_sale.clone(),
                histogram.clone(),
            );
            tasks.push(tokio::task::spawn_local(async move {
                let checkout = Checkout {
                    device_id: None,
                    payment_method_token: "pm_tok_visa".into(),
                    shipping_address_id: None,
                    expected_total: None,
                    lines: match mode {
                        Mode::Cart => Vec::new(),
                        Mode::BuyNow => vec![CheckoutLine {
                            sku: sku.clone(),
                            quantity: 1,
                        }],
                    },
                };
                loop {
                    let began = Instant::now();
                    if mode == Mode::Cart {
                        client.update_cart_line(None, &sku, 1).await?;
                    }
                    match client
                        .checkout(checkout.clone(), new_idempotency_key())
                        .await
                    {
                        Ok(_) => {
                            sold.set(sold.get() + 1);
                            last_sale.set(Instant::now());
                            histogram
                                .borrow_mut()
                                .saturating_record(began.elapsed().as_micros() as u64);
                        }
                        Err(error) if error.status() == Some(ErrorStatus::InsufficientStock) => {
                            return anyhow::Ok(());
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let elapsed = last_sale.get() - start;
        let level = admin.admin_restock(&sku, 0, RestockMode::Add).await?;
        anyhow::ensure!(
            sold.get() == args.units,
            "sold {} of {} units: oversell or undersell",
            sold.get(),
            args.units
        );
        anyhow::ensure!(
            level.available == 0,
            "{} units left after the sale",
            level.available
        );
        let histogram = histogram.borrow();
        anyhow::Ok(Sale {
            per_second: sold.get() as f64 / elapsed.as_secs_f64(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
        })
    });
    server.shutdown()?;
    result
}

fn postgres_sale(postgres: &Postgres, args: &Args) -> Result<Sale, String> {
    postgres.psql(
        "DROP TABLE IF EXISTS inventory; \
         CREATE TABLE inventory (id integer PRIMARY KEY, stock bigint NOT NULL); \
         INSERT INTO inventory VALUES (1, 1000000000);",
    )?;
    let result = postgres.pgbench(
        "UPDATE inventory SET stock = stock - 1 WHERE id = 1 AND stock > 0;\n",
        args.clients,
        args.seconds,
    )?;
    Ok(Sale {
        per_second: result.transactions_per_second,
        p50_us: result.p50_us,
        p99_us: result.p99_us,
    })
}

const DECREMENT: &str = "local stock = tonumber(redis.call('GET', KEYS[1])) \
     if stock and stock > 0 then redis.call('DECR', KEYS[1]) return 1 end return 0";

fn redis_sale(redis: &Redis, args: &Args) -> anyhow::Result<Sale> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let pool =
            Builder::from_config(RedisConfig::from_url(&redis.url())?).build_pool(args.clients)?;
        pool.init().await?;
        let client = pool.next().clone();
        let _: () = fred::interfaces::KeysInterface::set(
            &client,
            "stock",
            1_000_000_000i64,
            None,
            None,
            false,
        )
        .await?;
        let sha: String = client.script_load(DECREMENT).await?;
        let operation = move || {
            let (client, sha) = (pool.next().clone(), sha.clone());
            async move {
                let sold: Result<i64, _> = client.evalsha(sha, vec!["stock"], ()).await;
                matches!(sold, Ok(1))
            }
        };
        let measured = closed_loop(
            args.clients,
            Duration::from_secs(1),
            Duration::from_secs(args.seconds),
            operation,
        )
        .await;
        anyhow::Ok(Sale {
            per_second: measured.per_second(),
            p50_us: measured.p50_us(),
            p99_us: measured.p99_us(),
        })
    })
}

const COMPARISON: &str = "flash-sale checkout on one hot SKU";

fn row(target: &str, anchor: bool, runs: &[Sale]) -> souk_bench::Row {
    let runs: Vec<_> = runs
        .iter()
        .map(|s| (s.per_second, s.p50_us, s.p99_us))
        .collect();
    souk_bench::Row::of_medians(COMPARISON, target, anchor, &runs)
}

fn report(name: &str, runs: &[Sale]) -> f64 {
    let rate = median(runs.iter().map(|s| s.per_second).collect());
    let p50 = median(runs.iter().map(|s| s.p50_us as f64).collect());
    let p99 = median(runs.iter().map(|s| s.p99_us as f64).collect());
    let each: Vec<String> = runs
        .iter()
        .map(|s| format!("{:.0}", s.per_second))
        .collect();
    println!(
        "{name:<44} {rate:>10.0}/s  p50 {p50:>7.0} µs  p99 {p99:>7.0} µs  (runs: {})",
        each.join(", ")
    );
    rate
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "flash sale on one hot SKU, {} run(s) each, medians; souk: {} units, {} buyers; anchors: {} clients, {} s",
        args.runs, args.units, args.buyers, args.clients, args.seconds
    );
    let (mut cart, mut buy_now) = (Vec::new(), Vec::new());
    // Alternating, so that both see the machine at the same hours.
    for _ in 0..args.runs {
        cart.push(souk_sale(&args, Mode::Cart)?);
        buy_now.push(souk_sale(&args, Mode::BuyNow)?);
    }
    let cart_rate = report("souk checkout (cart + reserve + durable order)", &cart);
    let buy_now_rate = report("souk buy now (reserve + durable order)", &buy_now);
    let mut rows = vec![
        row("souk checkout of the cart", false, &cart),
        row("souk buy now (lines in the checkout)", false, &buy_now),
    ];
    println!(
        "  oversell: 0 (every run sold exactly {} units and ended at 0 available)",
        args.units
    );
    let ratios = |anchor: &str, rate: f64| {
        println!(
            "  souk / {anchor}: {:.2}x checkout of the cart, {:.2}x buy now",
            cart_rate / rate,
            buy_now_rate / rate
        );
    };

    if args.no_postgres {
        println!("PostgreSQL: skipped (--no-postgres)");
    } else {
        match Postgres::start() {
            Err(why) => println!("PostgreSQL: skipped: {why}"),
            Ok(postgres) => {
                let runs: Result<Vec<Sale>, String> = (0..args.runs)
                    .map(|_| postgres_sale(&postgres, &args))
                    .collect();
                match runs {
                    Ok(runs) => {
                        let rate = report("PostgreSQL hot-row UPDATE (fsync on)", &runs);
                        rows.push(row(
                            "PostgreSQL hot-row UPDATE (pgbench, fsync on)",
                            true,
                            &runs,
                        ));
                        ratios("PostgreSQL", rate);
                    }
                    Err(why) => println!("PostgreSQL: failed: {why}"),
                }
            }
        }
    }
    if args.no_redis {
        println!("Redis: skipped (--no-redis)");
    } else {
        match Redis::start("always") {
            Err(why) => println!("Redis: skipped: {why}"),
            Ok(redis) => {
                let runs: anyhow::Result<Vec<Sale>> =
                    (0..args.runs).map(|_| redis_sale(&redis, &args)).collect();
                let runs = runs?;
                let rate = report("Redis Lua decrement (appendfsync always)", &runs);
                rows.push(row(
                    "Redis Lua decrement (fred, appendfsync always)",
                    true,
                    &runs,
                ));
                ratios("Redis", rate);
            }
        }
    }
    souk_bench::write_rows(args.json.as_deref(), &rows)
}
