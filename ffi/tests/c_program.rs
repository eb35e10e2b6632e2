//! Compiles a C program against `include/souk.h` and the static library
//! with the system C compiler, and has it call a running server.

use std::path::{Path, PathBuf};
use std::process::Command;

use souk_server::{Config, Server};
use souk_wire::api::{Hello, PROTOCOL_VERSION, ProductId, Request, RequestBody, ResponseBody};
use souk_wire::codec::{Encoder, decode_response};

/// `target/<profile>`: this test's own `deps/` directory's parent.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds `libsouk_ffi.a` from the current sources. `cargo test` builds the
/// library only as an rlib for the tests, so a static library left in
/// `target/` could be stale. The build gets a target directory of its own:
/// its feature set differs from the test build's, and sharing one directory
/// would make each rebuild the other's artifacts every run.
fn static_library() -> PathBuf {
    let profile_dir = target_dir();
    let target = profile_dir.parent().unwrap().join("ffi-static");
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "--quiet",
        "-p",
        "souk-ffi",
        "--lib",
        "--target-dir",
    ]);
    build.arg(&target);
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    if release {
        build.arg("--release");
    }
    let output = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building the static library failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target
        .join(if release { "release" } else { "debug" })
        .join("libsouk_ffi.a")
}

fn compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc).arg("--version").output().is_ok();
    found.then_some(cc)
}

/// Under `SOUK_REQUIRE_ALL_TESTS` (set, and not 0; CI sets it) a test that
/// cannot get what it needs fails; otherwise it says it skipped. As
/// `souk_storage::testing::skip_or_fail`, which this crate does not depend on.
fn skip_or_fail(reason: &str) {
    let required =
        std::env::var_os("SOUK_REQUIRE_ALL_TESTS").is_some_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{reason} (SOUK_REQUIRE_ALL_TESTS is set: every test must run, none may skip)");
    }
    eprintln!("skipped: {reason}");
}

fn frame(body: RequestBody) -> Vec<u8> {
    let request = Request {
        idempotency_key: None,
        body,
    };
    Encoder::new().request(&request).unwrap().to_vec()
}

#[test]
fn a_c_program_calls_the_server_blocking_and_with_a_callback() {
    let Some(cc) = compiler() else {
        skip_or_fail("no C compiler (cc) on PATH; apt install gcc");
        return;
    };
    let library = static_library();
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("call");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compiled = Command::new(&cc)
        .arg("-std=c11")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/call.c"))
        .arg(&library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&program)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "C compile failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let data = work.path().join("data");
    let server = Server::start(&Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        data_dir: data,
        demo_products: 50,
        pin_threads: false,
        ..Config::default()
    })
    .unwrap();

    let hello = RequestBody::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: Some("c-test".into()),
        client_version: None,
    });
    let product = RequestBody::GetProduct {
        product_id: ProductId::new("P00003").unwrap(),
    };
    let files: Vec<PathBuf> = ["req1", "resp1", "req2", "resp2"]
        .iter()
        .map(|name| work.path().join(name))
        .collect();
    std::fs::write(&files[0], frame(hello)).unwrap();
    std::fs::write(&files[2], frame(product)).unwrap();

    let run = Command::new(&program)
        .arg(server.local_addr().to_string())
        .arg(hex_fingerprint(&server))
        .args(&files)
        .output()
        .unwrap();
    server.shutdown().unwrap();
    assert!(
        run.status.success(),
        "C program failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let hello = decode_response(&std::fs::read(&files[1]).unwrap()).unwrap();
    assert!(
        matches!(hello, Ok(ResponseBody::HelloReply(ref r)) if r.shard_count == 2),
        "{hello:?}"
    );
    let product = decode_response(&std::fs::read(&files[3]).unwrap()).unwrap();
    let Ok(ResponseBody::ProductDetail(product)) = product else {
        panic!("product detail expected, got {product:?}");
    };
    assert_eq!(product.id.as_str(), "P00003");
}

fn hex_fingerprint(server: &Server) -> String {
    server
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
