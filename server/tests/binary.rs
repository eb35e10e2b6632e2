//! The `souk` binary as an operator runs it: help, start, SIGTERM, exit 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use souk_client::Client;
use support::Souk;

mod support;

#[test]
fn help_documents_every_option_with_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_souk"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, env) in [
        ("--config", "SOUK_CONFIG"),
        ("--listen", "SOUK_LISTEN"),
        ("--shards", "SOUK_SHARDS"),
        ("--data-dir", "SOUK_DATA_DIR"),
        ("--cert", "SOUK_CERT"),
        ("--key", "SOUK_KEY"),
        ("--log-format", "SOUK_LOG_FORMAT"),
        ("--log", "SOUK_LOG"),
        ("--demo-products", "SOUK_DEMO_PRODUCTS"),
        ("--demo-seed", "SOUK_DEMO_SEED"),
        (
            "--max-connections-per-shard",
            "SOUK_MAX_CONNECTIONS_PER_SHARD",
        ),
        ("--pin-threads", "SOUK_PIN_THREADS"),
        ("--purchase-limit", "SOUK_PURCHASE_LIMIT"),
        ("--reservation-ttl-secs", "SOUK_RESERVATION_TTL_SECS"),
        ("--payment-latency-ms", "SOUK_PAYMENT_LATENCY_MS"),
        (
            "--payment-declines-per-10k",
            "SOUK_PAYMENT_DECLINES_PER_10K",
        ),
        ("--catalog-cache-ttl-ms", "SOUK_CATALOG_CACHE_TTL_MS"),
        ("--rate-cart-writes", "SOUK_RATE_CART_WRITES"),
        ("--rate-checkouts", "SOUK_RATE_CHECKOUTS"),
        ("--rate-reads", "SOUK_RATE_READS"),
        ("--new-connections-per-sec", "SOUK_NEW_CONNECTIONS_PER_SEC"),
        ("--retry-above", "SOUK_RETRY_ABOVE"),
        ("--redis", "SOUK_REDIS"),
        ("--metrics-listen", "SOUK_METRICS_LISTEN"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(help.contains(env), "--help lacks {env}:\n{help}");
    }
}

#[test]
fn sigterm_stops_the_server_cleanly_with_exit_status_zero() {
    let data = tempfile::tempdir().unwrap();
    let souk = Souk::spawn(
        &["--shards", "2", "--log-format", "json"],
        data.path(),
        Stdio::piped(),
    );
    let config = souk.client_config();
    let mut souk = souk;
    let child = &mut souk.child;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hello = runtime.block_on(async {
        let client = Client::connect(config).await?;
        client.hello().await
    });
    assert_eq!(hello.unwrap().shard_count, 2);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "souk did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(status.success(), "exit {status:?}\n{logs}");
    assert!(
        logs.lines().all(|l| l.starts_with('{')),
        "JSON log lines only:\n{logs}"
    );
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[test]
fn an_admin_account_made_with_create_admin_can_restock_and_a_customer_cannot() {
    let data = tempfile::tempdir().unwrap();
    let created = Souk::create_admin(data.path(), "Boss@Example.org", "a long admin password");
    assert!(created.status.success(), "{created:?}");
    assert!(String::from_utf8_lossy(&created.stdout).contains("admin boss@example.org created"));

    let souk = Souk::spawn(&["--shards", "2"], data.path(), Stdio::null());
    let config = souk.client_config();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = Client::connect(config.clone()).await.unwrap();
        let grant = admin
            .login("boss@example.org", "a long admin password", None)
            .await
            .unwrap();
        assert_eq!(grant.role, souk_client::api::Role::Admin);
        let product = admin
            .get_product(&souk_storage::demo::product_id(1))
            .await
            .unwrap();
        let sku = product.variants[0].sku.clone();
        let level = admin
            .admin_restock(&sku, 7, souk_client::api::RestockMode::Set)
            .await
            .unwrap();
        assert_eq!(level.on_hand, 7);

        let customer = Client::connect(config).await.unwrap();
        customer
            .register("cu@example.org", "a customer password", None)
            .await
            .unwrap();
        let refused = customer
            .admin_restock(&sku, 1_000, souk_client::api::RestockMode::Set)
            .await
            .unwrap_err();
        assert_eq!(
            refused.status(),
            Some(souk_client::api::ErrorStatus::Forbidden)
        );
        let upsert = customer
            .call(souk_client::api::RequestBody::AdminUpsertProduct(Box::new(
                product,
            )))
            .await
            .unwrap_err();
        assert_eq!(
            upsert.status(),
            Some(souk_client::api::ErrorStatus::Forbidden)
        );
        let level = admin
            .admin_restock(&sku, 0, souk_client::api::RestockMode::Add)
            .await
            .unwrap();
        assert_eq!(level.on_hand, 7, "the refused restock changed nothing");
    });
    souk.kill();
}

/// A sign-out everywhere is durable once acknowledged: the process killed
/// with SIGKILL right after the reply, the restarted server still refuses
/// the tokens issued before it.
#[test]
fn an_acknowledged_sign_out_everywhere_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let souk = Souk::spawn(&["--shards", "2"], data.path(), Stdio::null());
    let stolen = runtime.block_on(async {
        let laptop = Client::connect(souk.client_config()).await.unwrap();
        laptop
            .register("kim@example.org", "a customer password", None)
            .await
            .unwrap();
        let phone = Client::connect(souk.client_config()).await.unwrap();
        let stolen = phone
            .login("kim@example.org", "a customer password", None)
            .await
            .unwrap();
        laptop.logout_everywhere().await.unwrap();
        stolen
    });
    souk.kill();

    let souk = Souk::spawn(&["--shards", "2"], data.path(), Stdio::null());
    runtime.block_on(async {
        let client = Client::connect(souk.client_config()).await.unwrap();
        let unauthenticated = Some(souk_client::api::ErrorStatus::Unauthenticated);
        let refused = client.refresh(&stolen.refresh_token).await.unwrap_err();
        assert_eq!(refused.status(), unauthenticated);
        assert!(refused.to_string().contains("signed out"), "{refused}");
        let refused = client.authenticate(&stolen.access_token).await;
        assert_eq!(refused.unwrap_err().status(), unauthenticated);
    });
    souk.kill();
}
