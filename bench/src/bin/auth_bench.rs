//! What authentication costs: one Argon2id login check, one access token
//! verified (which souk does once per connection, at `Authenticate`, never
//! per request), and requests per second on a signed-in connection against
//! an anonymous one on the same server, alternating runs (they should be
//! equal).
//!
//!     cargo run --release -p souk-bench --bin auth-bench

use std::time::{Duration, Instant};

use clap::Parser;
use souk_bench::{closed_loop, median};
use souk_client::{Client, ClientConfig, Trust};
use souk_server::domain::accounts::{TokenKeys, hash_password, verify_password};
use souk_server::{Config, Server};
use souk_storage::demo;
use souk_wire::api::{Role, UnixMillis, UserId};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Login checks timed (each is tens of milliseconds).
    #[arg(long, default_value_t = 20)]
    logins: usize,
    /// Seconds of token verification per run.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Requests in flight on each connection in the throughput runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Shards of the server the throughput runs use.
    #[arg(long, default_value_t = 1)]
    shards: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let phc = hash_password(
        "correct horse battery",
        souk_server::domain::accounts::PasswordCost::STANDARD,
        [7; 16],
    );
    let mut logins = Vec::new();
    for _ in 0..args.logins {
        let began = Instant::now();
        assert!(verify_password(&phc, "correct horse battery"));
        logins.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    let keys = TokenKeys::new(&[7; 32]);
    let now = UnixMillis(1_800_000_000_000);
    let (token, _) = keys.issue(UserId(42), Role::Customer, now, [7; 16]);
    let mut verifies = Vec::new();
    for _ in 0..args.runs {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let began = Instant::now();
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                assert!(keys.verify(&token, now).is_ok());
            }
            n += 1000;
        }
        verifies.push(began.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    println!(
        "Argon2id (m=19 MiB, t=2, p=1) login check: median {:.1} ms of one core ({} checks)",
        median(logins),
        args.logins
    );
    println!(
        "HS256 access-token verify (with its claims): median {:.2} µs ({} runs of {} s)",
        median(verifies),
        args.runs,
        args.seconds
    );
    let (anonymous, signed_in) = throughput(&args)?;
    println!(
        "product detail, one connection, {} in flight, cache off: anonymous median {:.0}/s, \
         signed in median {:.0}/s, ratio {:.3} ({} alternating runs of {} s)",
        args.concurrency,
        median(anonymous.clone()),
        median(signed_in.clone()),
        median(signed_in) / median(anonymous),
        args.runs,
        args.seconds
    );
    Ok(())
}

/// Alternating runs of product-detail reads on an anonymous connection and
/// on a signed-in one. The reply cache is off, so that every request is
/// decoded and handled: where a per-request token check would show.
fn throughput(args: &Args) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let data = tempfile::tempdir()?;
    let server = Server::start(&Config {
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        shards: args.shards,
        data_dir: data.path().to_path_buf(),
        demo_products: 50,
        catalog_cache_ttl: Duration::ZERO,
        log: "warn".into(),
        ..Config::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let runs = local.block_on(&runtime, async {
        let config = ClientConfig::new(
            server.local_addr(),
            Trust::Fingerprint(server.fingerprint()),
        );
        let anonymous = Client::connect(config.clone()).await?;
        let signed_in = Client::connect(config).await?;
        signed_in
            .register("bench@example.org", "correct horse battery", None)
            .await?;
        let product = demo::product_id(7);
        let (mut a, mut s) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            for (client, out) in [(&anonymous, &mut a), (&signed_in, &mut s)] {
                let (client, product) = (client.clone(), product.clone());
                let operation = move || {
                    let (client, product) = (client.clone(), product.clone());
                    async move { client.get_product(&product).await.is_ok() }
                };
                let measured = closed_loop(
                    args.concurrency,
                    Duration::from_millis(500),
                    Duration::from_secs(args.seconds),
                    operation,
                )
                .await;
                anyhow::ensure!(measured.errors == 0, "{} errors", measured.errors);
                out.push(measured.per_second());
            }
        }
        anyhow::Ok((a, s))
    })?;
    server.shutdown()?;
    Ok(runs)
}
