//! The load generator against a real server: it runs, reports, and its
//! JSON report says what happened.

use std::process::Command;

use souk_server::{Config, Server};

#[test]
fn a_short_browse_run_reports_requests_and_no_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        data_dir: data.path().join("data"),
        pin_threads: false,
        ..Config::default()
    })
    .unwrap();
    let fingerprint: String = server
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let report = data.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_souk-loadgen"))
        .args(["--server", &server.local_addr().to_string()])
        .args(["--fingerprint", &fingerprint])
        .args(["--scenario", "browse", "--duration", "1", "--warmup", "0"])
        .args(["--connections", "2", "--concurrency", "8"])
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    server.shutdown().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(
        report["latency_us"]["p99"].as_u64().unwrap()
            >= report["latency_us"]["p50"].as_u64().unwrap()
    );
}
