//! Product detail over QUIC, next to a bare quinn echo of the same reply.
//!
//!     cargo run --release -p souk-bench --bin quic-compare
//!
//! Starts souk in-process and the echo server, then in alternating rounds
//! drives each over one connection with `--concurrency` streams in flight:
//!
//! - `echo (raw)`: the bare quinn server, answering every request with the
//!   exact bytes souk sends for the product: QUIC's own limit here;
//! - `souk (raw)`: souk, driven by the same raw client as the echo;
//! - `souk (sdk)`: souk through the client SDK, which also decodes and
//!   validates every reply.
//!
//! Client and servers share the machine; the table reports the median round.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use souk_bench::echo::EchoServer;
use souk_bench::{Measurement, closed_loop, median};
use souk_client::{Client, ClientConfig, Trust};
use souk_server::{Config, Server};
use souk_wire::api::{ProductId, Request, RequestBody};
use souk_wire::codec::Encoder;
use souk_wire::limits;

#[derive(Parser)]
struct Args {
    /// Streams in flight on the one connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds measured per round and target.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; each round measures every target once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// souk shards.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Pin souk's shard threads to cores.
    #[arg(long)]
    pin: bool,
    /// Measure only souk over the raw client (for profiling the server).
    #[arg(long)]
    souk_only: bool,
    /// Also append the results to this file as JSON rows (for `compare`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn quic_endpoint(server: std::net::SocketAddr, fingerprint: [u8; 32]) -> quinn::Endpoint {
    let config = ClientConfig::new(server, Trust::Fingerprint(fingerprint));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(souk_client::quic_config(&config).unwrap());
    endpoint
}

/// One request on its own stream; true when a whole reply came back.
async fn exchange(connection: &quinn::Connection, request: &[u8]) -> bool {
    let Ok((mut send, mut recv)) = connection.open_bi().await else {
        return false;
    };
    if send.write_all(request).await.is_err() || send.finish().is_err() {
        return false;
    }
    recv.read_to_end(limits::RESPONSE_BYTES_MAX + limits::FRAME_HEADER_BYTES)
        .await
        .is_ok()
}

fn local_runtime() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (runtime, tokio::task::LocalSet::new())
}

fn measure_raw(
    args: &Args,
    addr: std::net::SocketAddr,
    fingerprint: [u8; 32],
    request: &Rc<Vec<u8>>,
) -> Measurement {
    let (runtime, local) = local_runtime();
    local.block_on(&runtime, async {
        let endpoint = quic_endpoint(addr, fingerprint);
        let connection = Rc::new(endpoint.connect(addr, "localhost").unwrap().await.unwrap());
        let request = request.clone();
        let operation = move || {
            let (connection, request) = (connection.clone(), request.clone());
            async move { exchange(&connection, &request).await }
        };
        let warmup = Duration::from_secs(1);
        closed_loop(
            args.concurrency,
            warmup,
            Duration::from_secs(args.seconds),
            operation,
        )
        .await
    })
}

fn measure_sdk(args: &Args, server: &Server, product: &ProductId) -> Measurement {
    let (runtime, local) = local_runtime();
    local.block_on(&runtime, async {
        let config = ClientConfig::new(
            server.local_addr(),
            Trust::Fingerprint(server.fingerprint()),
        );
        let client = Client::connect(config).await.unwrap();
        let product = Arc::new(product.clone());
        let operation = move || {
            let (client, product) = (client.clone(), product.clone());
            async move { client.get_product(&product).await.is_ok() }
        };
        let warmup = Duration::from_secs(1);
        closed_loop(
            args.concurrency,
            warmup,
            Duration::from_secs(args.seconds),
            operation,
        )
        .await
    })
}

/// What souk answers to `request`: the echo server sends exactly this.
fn souk_reply(server: &Server, request: &[u8]) -> Vec<u8> {
    let (runtime, local) = local_runtime();
    local.block_on(&runtime, async {
        let endpoint = quic_endpoint(server.local_addr(), server.fingerprint());
        let connection = endpoint
            .connect(server.local_addr(), "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(request).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(limits::RESPONSE_BYTES_MAX).await.unwrap()
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let server = Server::start(&Config {
        listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        shards: args.shards,
        data_dir: data.path().to_path_buf(),
        pin_threads: args.pin,
        log: "warn".into(),
        // Every client connects from this one address.
        new_connections_per_sec: 0,
        ..Config::default()
    })?;
    let product = ProductId::new("P00007").expect("valid id");
    let request = Encoder::new()
        .request(&Request {
            idempotency_key: None,
            body: RequestBody::GetProduct {
                product_id: product.clone(),
            },
        })?
        .to_vec();
    let reply = souk_reply(&server, &request);
    let echo = EchoServer::start(reply.clone())?;
    let request = Rc::new(request);
    println!(
        "product detail: request {} B, reply {} B; {} streams on one connection; {} s x {} rounds; souk with {} shard(s)",
        request.len(),
        reply.len(),
        args.concurrency,
        args.seconds,
        args.rounds,
        args.shards
    );

    if args.souk_only {
        let measurement = measure_raw(&args, server.local_addr(), server.fingerprint(), &request);
        println!("souk (raw): {:.0} req/s", measurement.per_second());
        return server.shutdown();
    }
    let mut rounds: [Vec<Measurement>; 3] = Default::default();
    for round in 0..args.rounds {
        rounds[0].push(measure_raw(
            &args,
            echo.addr(),
            echo.fingerprint(),
            &request,
        ));
        rounds[1].push(measure_raw(
            &args,
            server.local_addr(),
            server.fingerprint(),
            &request,
        ));
        rounds[2].push(measure_sdk(&args, &server, &product));
        let rates: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.0}", r[round].per_second()))
            .collect();
        println!("round {}: {}", round + 1, rates.join(" / "));
    }
    let rows = report(&rounds, args.concurrency);
    souk_bench::write_rows(args.json.as_deref(), &rows)?;
    server.shutdown()?;
    Ok(())
}

fn report(rounds: &[Vec<Measurement>; 3], concurrency: usize) -> Vec<souk_bench::Row> {
    let mut rows = Vec::new();
    let names = ["echo (raw)", "souk (raw)", "souk (sdk)"];
    let anchor = median(rounds[0].iter().map(Measurement::per_second).collect());
    println!("\n| target | req/s (median) | p50 µs | p99 µs | errors | vs echo |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, measurements) in names.iter().zip(rounds) {
        let rate = median(measurements.iter().map(Measurement::per_second).collect());
        let middle = measurements
            .iter()
            .min_by(|a, b| {
                (a.per_second() - rate)
                    .abs()
                    .total_cmp(&(b.per_second() - rate).abs())
            })
            .expect("at least one round");
        let errors: u64 = measurements.iter().map(|m| m.errors).sum();
        println!(
            "| {name} | {rate:.0} | {} | {} | {errors} | {:.2}x |",
            middle.p50_us(),
            middle.p99_us(),
            rate / anchor
        );
        rows.push(souk_bench::Row {
            comparison: format!("product detail, one QUIC connection, {concurrency} streams"),
            target: (*name).to_owned(),
            anchor: *name == "echo (raw)",
            per_second: rate,
            p50_us: middle.p50_us(),
            p99_us: middle.p99_us(),
        });
    }
    rows
}
