//! The load generator against a real server: it sets up through the API,
//! runs each mode, reports, and checks what the server did.

use std::process::{Command, Output};

use souk_server::{Config, Server};

const ADMIN_EMAIL: &str = "admin@example.org";
const ADMIN_PASSWORD: &str = "loadgen test admin password";

struct Running {
    server: Server,
    dir: tempfile::TempDir,
}

/// A two-shard server whose per-customer limits are off: the shoppers
/// here are load, not people.
fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 2,
        data_dir: dir.path().join("data"),
        pin_threads: false,
        demo_products: 60,
        payment_latency: std::time::Duration::from_millis(5),
        purchase_limit: 0,
        rate_checkouts: 0,
        rate_cart_writes: 0,
        new_connections_per_sec: 0,
        ..Config::default()
    };
    souk_server::server::create_admin(&config, ADMIN_EMAIL, ADMIN_PASSWORD, None).unwrap();
    Running {
        server: Server::start(&config).unwrap(),
        dir,
    }
}

/// `souk-loadgen` pointed at the server, with the admin account.
fn command(running: &Running) -> Command {
    let fingerprint: String = running
        .server
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_souk-loadgen"));
    command
        .args(["--server", &running.server.local_addr().to_string()])
        .args(["--fingerprint", &fingerprint])
        .args(["--http", &running.server.http_addr().unwrap().to_string()])
        .args([
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-password",
            ADMIN_PASSWORD,
        ]);
    command
}

fn loadgen(running: &Running, args: &[&str]) -> (Output, serde_json::Value) {
    let report = running.dir.path().join("report.json");
    let _ = std::fs::remove_file(&report);
    let output = command(running)
        .args(["--warmup", "0"])
        .args(if args.contains(&"--duration") {
            &[][..]
        } else {
            &["--duration", "1"][..]
        })
        .args(args)
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let json = std::fs::read(&report)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    (output, json)
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_closed_loop_browse_run_reports_and_draws() {
    let running = start();
    let plot = running.dir.path().join("run.svg");
    let (output, report) = loadgen(
        &running,
        &[
            "--scenario",
            "browse",
            "--connections",
            "2",
            "--threads",
            "2",
            "--concurrency",
            "8",
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    assert_success(&output);
    assert!(report["completed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let product = &report["actions"]["product"];
    assert!(product["latency_us"]["p99"].as_u64() >= product["latency_us"]["p50"].as_u64());
    assert_eq!(
        report["timeline"].as_array().unwrap().len(),
        1,
        "one measured second"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p99"), "{svg:.200}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("measure"),
        "a progress line each second: {stderr}"
    );
    running.server.shutdown().unwrap();
}

/// Two nodes (here two shops of the same demo catalog): the connections
/// alternate between them, and the report gives each node its share.
#[test]
fn connections_spread_over_several_servers_and_each_is_reported() {
    let (first, second) = (start(), start());
    let hex = |server: &Server| -> String {
        server
            .fingerprint()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let report = first.dir.path().join("nodes.json");
    let output = command(&first)
        .args(["--server", &second.server.local_addr().to_string()])
        .args(["--fingerprint", &hex(&second.server)])
        .args([
            "--scenario",
            "browse",
            "--connections",
            "4",
            "--threads",
            "2",
        ])
        .args(["--concurrency", "8", "--warmup", "0", "--duration", "1"])
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    assert_success(&output);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let nodes = report["nodes"].as_array().unwrap();
    let addresses: Vec<String> = [&first, &second]
        .map(|running| running.server.local_addr().to_string())
        .to_vec();
    assert_eq!(
        nodes
            .iter()
            .map(|n| n["address"].as_str().unwrap())
            .collect::<Vec<_>>(),
        addresses
    );
    for node in nodes {
        assert!(
            node["ok"].as_u64().unwrap() > 0,
            "every node served: {report}"
        );
    }
    let served: u64 = nodes
        .iter()
        .map(|n| n["ok"].as_u64().unwrap() + n["errors"].as_u64().unwrap())
        .sum();
    assert_eq!(served, report["completed"].as_u64().unwrap());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&addresses[1]), "a line per node: {stdout}");
    let mismatched = command(&first)
        .args(["--server", &second.server.local_addr().to_string()])
        .args(["--fingerprint", &hex(&second.server)])
        .args(["--server", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(
        mismatched.status.code(),
        Some(1),
        "two fingerprints, three servers"
    );
    first.server.shutdown().unwrap();
    second.server.shutdown().unwrap();
}

/// Eight buyers, 30 units: the sale sells out, and the checks (nothing
/// oversold, every unit taken is in an order, acknowledged orders read
/// back) pass.
/// A buyer refused through the cart keeps the unit in it.
#[test]
fn a_flash_sale_sells_its_units_and_the_checks_pass() {
    let running = flash_sale_sells_out(&[]);
    assert!(units_in_shoppers_carts(&running) > 0);
    running.server.shutdown().unwrap();
}

/// The same, buying now: one request per unit, and no cart is touched.
#[test]
fn a_flash_sale_bought_now_sells_its_units_and_the_checks_pass() {
    let running = flash_sale_sells_out(&["--buy-now"]);
    assert_eq!(units_in_shoppers_carts(&running), 0);
    running.server.shutdown().unwrap();
}

/// Units in the carts of the load generator's shopper accounts (eight of
/// them, on however many threads it ran).
fn units_in_shoppers_carts(running: &Running) -> u32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = souk_client::ClientConfig::new(
            running.server.local_addr(),
            souk_client::Trust::Fingerprint(running.server.fingerprint()),
        );
        let client = souk_client::Client::connect(config).await.unwrap();
        let (mut shoppers, mut units) = (0, 0);
        // Stops at the eighth: failed sign-ins are limited per address.
        for (thread, n) in (0..8).flat_map(|t| (0..8).map(move |n| (t, n))) {
            if shoppers == 8 {
                break;
            }
            let email = format!("shopper-{thread}-{n}@loadgen.example");
            if client
                .login(&email, "souk loadgen shopper", None)
                .await
                .is_ok()
            {
                shoppers += 1;
                units += client.get_cart(None).await.unwrap().item_count;
            }
        }
        assert_eq!(shoppers, 8, "the eight shoppers' accounts");
        units
    })
}

fn flash_sale_sells_out(extra: &[&str]) -> Running {
    let running = start();
    let mut args = vec![
        "--scenario",
        "flash-sale",
        "--flash-units",
        "30",
        "--connections",
        "8",
        "--concurrency",
        "8",
        "--duration",
        "2",
    ];
    args.extend_from_slice(extra);
    let (output, report) = loadgen(&running, &args);
    assert_success(&output);
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{report}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("30 units in"), "{stdout}");
    assert!(stdout.contains("sold out"), "{stdout}");
    assert!(report["sold_out"].as_u64().unwrap() > 0, "{report}");
    running
}

/// The same sale through the HTTP bridge: the same actions, the same
/// checks, none oversold.
#[test]
fn the_http_target_runs_the_same_flash_sale() {
    let running = flash_sale_sells_out(&["--target", "http"]);
    running.server.shutdown().unwrap();
}

/// Every scenario's actions over HTTP, mixed, without an error.
#[test]
fn a_mixed_http_run_has_no_errors() {
    let running = start();
    let (output, report) = loadgen(
        &running,
        &[
            "--target",
            "http",
            "--scenario",
            "mixed",
            "--mix",
            "browse=40,category=20,cart=30,checkout=10",
            "--connections",
            "4",
            "--concurrency",
            "8",
        ],
    );
    assert_success(&output);
    assert_eq!(report["target"], "http", "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    for action in ["product", "category", "checkout"] {
        assert!(
            report["actions"][action]["ok"].as_u64().unwrap_or(0) > 0,
            "no {action} over HTTP: {report}"
        );
    }
    running.server.shutdown().unwrap();
}

/// Open loop at a fixed rate: the schedule is kept (every action is sent)
/// and each checkout's order reads back.
#[test]
fn an_open_loop_checkout_run_keeps_its_schedule() {
    let running = start();
    let (output, report) = loadgen(
        &running,
        &[
            "--scenario",
            "checkout",
            "--rate",
            "200",
            "--connections",
            "4",
            "--verify-orders",
            "50",
        ],
    );
    assert_success(&output);
    let completed = report["completed"].as_u64().unwrap();
    assert!((190..=210).contains(&completed), "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks[0]["passed"], true, "{report}");
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("50 sampled")
    );
    running.server.shutdown().unwrap();
}

/// A ramp with an objective every step meets: it climbs to the top and
/// reports it; the same seed repeats the same mix.
#[test]
fn a_ramp_finds_the_highest_rate_within_the_objective() {
    let running = start();
    let (output, report) = loadgen(
        &running,
        &[
            "--scenario",
            "mixed",
            "--mix",
            "browse=5,category=3,cart=2",
            "--ramp",
            "--rate",
            "100",
            "--ramp-step",
            "100",
            "--ramp-max",
            "300",
            "--slo-p99-ms",
            "2000",
        ],
    );
    assert_success(&output);
    let steps = report["ramp"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{report}");
    assert_eq!(report["ramp_highest_held_per_s"], 300.0, "{report}");
    for action in ["product", "category"] {
        assert!(
            report["actions"][action]["ok"].as_u64().unwrap() > 0,
            "{report}"
        );
    }
    running.server.shutdown().unwrap();
}

#[test]
fn bad_arguments_are_refused_before_any_load() {
    let output = Command::new(env!("CARGO_BIN_EXE_souk-loadgen"))
        .args(["--fingerprint", "00", "--mix", "browse=x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("whole number"));
}

/// Stock that appears in the middle of a flash sale (here an admin's
/// restock) ends with more units in orders than were put on sale: the
/// checks catch it and the run exits with status 2, so it can gate a CI job.
#[test]
fn a_sale_that_sells_more_than_its_units_fails_the_run() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let running = start();
    let mut child = command(&running)
        .args(["--scenario", "flash-sale", "--flash-units", "20"])
        .args(["--connections", "4", "--concurrency", "4"])
        .args(["--warmup", "0", "--duration", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The loadgen names the sale's SKU, then prints a line a second.
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut sku = None;
    for line in progress.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("flash sale: 20 units of ") {
            sku = Some(souk_client::api::Sku::new(rest.trim()).unwrap());
        }
        if line.contains("measure") {
            break;
        }
    }
    let sku = sku.expect("the loadgen names the flash sale's SKU");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = souk_client::ClientConfig::new(
            running.server.local_addr(),
            souk_client::Trust::Fingerprint(running.server.fingerprint()),
        );
        config.request_timeout = std::time::Duration::from_secs(10);
        let admin = souk_client::Client::connect(config).await.unwrap();
        admin
            .login(ADMIN_EMAIL, ADMIN_PASSWORD, None)
            .await
            .unwrap();
        admin
            .admin_restock(&sku, 10, souk_client::api::RestockMode::Add)
            .await
            .unwrap();
    });
    // Drain the rest of the progress so the child never blocks on it.
    for _ in progress {}
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("check FAILED: flash sale: nothing oversold (30 units in"),
        "{stdout}"
    );
    running.server.shutdown().unwrap();
}
