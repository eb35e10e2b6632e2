//! Deterministic records for tests, benchmarks and the crash writer: the
//! same id always gives the same order, so a reader can check that what it
//! reads back is intact. Also what tests share to get what they need from
//! outside: a throwaway `redis-server`, and `skip_or_fail` for when a tool,
//! server or permission is missing.

use souk_wire::api::{
    Currency, IdempotencyKey, Money, OrderId, OrderLine, OrderStatus, PaymentStatus, ProductId,
    Sku, UnixMillis, UserId,
};

use crate::model::OrderRecord;

/// Users the generated orders spread over.
pub const USERS: u64 = 1000;
/// Shards the generated orders spread over.
pub const SHARDS: u16 = 16;

/// A two-line order whose every field follows from `id`.
pub fn order(id: u64) -> OrderRecord {
    let usd = |minor_units| Money::new(minor_units, Currency::USD);
    let line = |n: u64| OrderLine {
        sku: Sku::new(format!("P{:05}-M", n % 500)).expect("valid SKU"),
        product_id: ProductId::new(format!("P{:05}", n % 500)).expect("valid id"),
        name: "Classic Cotton T-Shirt (M)".into(),
        quantity: 1 + (n % 3) as u32,
        unit_price: usd(1999),
        line_total: usd(1999 * (1 + (n % 3) as i64)),
    };
    let lines = vec![line(id), line(id + 7)];
    let total = usd(lines.iter().map(|l| l.line_total.minor_units).sum());
    OrderRecord {
        id: OrderId(id),
        user_id: UserId(id % USERS),
        shard: (id % u64::from(SHARDS)) as u16,
        status: OrderStatus::PendingPayment,
        lines,
        total,
        created_at: UnixMillis(1_800_000_000_000 + id),
        updated_at: UnixMillis(1_800_000_000_000 + id),
        expires_at: UnixMillis(1_800_000_900_000 + id),
        shipping_address: None,
        payment_status: PaymentStatus::Pending,
        payment_method_token: "pm_tok_visa_4242".into(),
        idempotency_key: Some(IdempotencyKey(u128::from(id) << 64 | 7)),
    }
}

/// Set (as `.ci/run` sets it, to 1), a test that cannot get what it needs
/// fails instead of skipping: a skip passes, so only such a run shows
/// that every test ran.
pub const REQUIRE_ALL_TESTS: &str = "SOUK_REQUIRE_ALL_TESTS";

/// For a test that cannot get what it needs (a tool, a server, a
/// permission); `reason` says what is missing and how to get it. Under
/// `SOUK_REQUIRE_ALL_TESTS` (set, and not 0) it fails with the reason;
/// otherwise it prints `skipped: reason` and the caller returns.
pub fn skip_or_fail(reason: &str) {
    let required = std::env::var_os(REQUIRE_ALL_TESTS).is_some_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{reason} ({REQUIRE_ALL_TESTS} is set: every test must run, none may skip)");
    }
    eprintln!("skipped: {reason}");
}

/// `skip_or_fail`, except that with `opt_out` set to 1 the test skips
/// even under `SOUK_REQUIRE_ALL_TESTS`: for what CI cannot provide yet,
/// said (with why) where CI sets `opt_out`.
pub fn skip_or_fail_unless(opt_out: &str, reason: &str) {
    if std::env::var_os(opt_out).is_some_and(|v| v == "1") {
        eprintln!("skipped ({opt_out}=1): {reason}");
    } else {
        skip_or_fail(reason);
    }
}

/// A throwaway `redis-server` on a free loopback port, for the tests and
/// benchmarks that need a real Redis; stopped and its directory removed
/// when dropped. Made durable (append-only file, `appendfsync` as given)
/// so that benchmarks compare it on souk's terms.
#[derive(Debug)]
pub struct RedisServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one, or says why it cannot: the caller hands that reason,
    /// which names the package to install, to `skip_or_fail`.
    pub fn start(appendfsync: &str) -> Result<RedisServer, String> {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("souk-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", appendfsync])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("redis-server cannot be started ({e}); apt install redis-server")
            })?;
        let redis = RedisServer { child, port, dir };
        // Ready when it answers PING: a listening socket alone can still
        // answer LOADING while the append-only file is read.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(port) {
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Drops `keyspace` on the CQL cluster at `nodes`, from any thread (it runs
/// a runtime of its own): what tests call when the keyspace they made is
/// done with, running or not.
pub fn drop_keyspace(nodes: &[String], keyspace: &str) -> Result<(), String> {
    let (nodes, cql) = (
        nodes.to_vec(),
        format!("DROP KEYSPACE IF EXISTS {keyspace}"),
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(&nodes)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let mut drop = scylla::statement::unprepared::Statement::new(cql);
            drop.set_request_timeout(Some(crate::scylla::SCHEMA_TIMEOUT));
            session
                .query_unpaged(drop, &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "dropping the keyspace panicked".to_string())?
}
