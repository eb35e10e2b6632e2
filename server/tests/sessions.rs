//! What several nodes share through Redis (`--redis`), and the gate in
//! front of the handshake, on real servers: Redis is a real `redis-server`
//! started on a free port (without one the Redis tests skip, saying why, or
//! fail under `SOUK_REQUIRE_ALL_TESTS`).

use std::time::Duration;

use souk_client::api::ErrorStatus;
use souk_client::{Client, ClientError, RetryPolicy};
use souk_server::domain::accounts::refresh_token_hash;
use souk_server::{Config, Server};
use souk_storage::redis::RedisState;
use souk_storage::store::TokenStore;
use souk_storage::testing::RedisServer;
use support::{PASSWORD, checkout, client_config, connect, status};

mod support;

/// Two shards over `data` with 20 demo products, changed by `tune`.
fn config(data: &std::path::Path, tune: impl FnOnce(&mut Config)) -> Config {
    let mut config = support::config(data, 20);
    tune(&mut config);
    config
}

fn redis() -> Option<RedisServer> {
    match RedisServer::start("everysec") {
        Ok(redis) => Some(redis),
        Err(reason) => {
            souk_storage::testing::skip_or_fail(&reason);
            None
        }
    }
}

/// Two nodes on one Redis: refresh tokens live there (and survive a
/// node's restart), and failed logins count together wherever they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_redis_share_refresh_tokens_and_login_limits() {
    let Some(redis) = redis() else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_redis = |c: &mut Config| c.redis = Some(redis.url());
    let node_a = Server::start(&config(dir_a.path(), with_redis)).unwrap();
    let node_b = Server::start(&config(dir_b.path(), with_redis)).unwrap();
    let tokens = RedisState::connect(&redis.url(), 1).await.unwrap();

    let client = connect(&node_a).await;
    let first = client
        .register("ola@example.org", PASSWORD, None)
        .await
        .unwrap();
    let stored = tokens
        .refresh_token(&refresh_token_hash(&first.refresh_token))
        .await
        .unwrap()
        .expect("the refresh token is in Redis");
    assert_eq!(stored.user_id, first.user_id);
    let second = client.refresh(&first.refresh_token).await.unwrap();
    assert!(
        tokens
            .refresh_token(&refresh_token_hash(&first.refresh_token))
            .await
            .unwrap()
            .unwrap()
            .rotated_at
            .is_some()
    );

    // A checkout is counted against the user's rate in Redis, where every
    // node would see it.
    let product = client
        .get_product(&souk_storage::demo::product_id(2))
        .await
        .unwrap();
    client
        .add_to_cart(None, &product.variants[0].sku, 1)
        .await
        .unwrap();
    client
        .checkout(checkout("pm_tok_visa"), souk_client::new_idempotency_key())
        .await
        .unwrap();
    let bucket = format!("souk:rate:checkouts:u:{}", first.user_id.0);
    let scan = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "exists", &bucket])
        .output()
        .expect("redis-cli comes with redis-server");
    assert_eq!(
        String::from_utf8_lossy(&scan.stdout).trim(),
        "1",
        "{bucket}"
    );

    // Node A restarts: its sessions were never its own to lose.
    node_a.shutdown().unwrap();
    let node_a = Server::start(&config(dir_a.path(), with_redis)).unwrap();
    let client = connect(&node_a).await;
    let third = client.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(third.user_id, first.user_id);
    assert_eq!(
        status(client.refresh(&second.refresh_token).await),
        ErrorStatus::Unauthenticated,
        "reuse after the restart is still caught"
    );
    assert!(
        tokens
            .refresh_token(&refresh_token_hash(&third.refresh_token))
            .await
            .unwrap()
            .unwrap()
            .revoked,
        "and revokes the family in Redis"
    );

    // Guessing a password: three tries on A and two on B use up the five
    // allowed per account; the next is refused on either node.
    let (on_a, on_b) = (connect(&node_a).await, connect(&node_b).await);
    for (node, tries) in [(&on_a, 3), (&on_b, 2)] {
        for _ in 0..tries {
            assert_eq!(
                status(node.login("ola@example.org", "guess", None).await),
                ErrorStatus::Unauthenticated
            );
        }
    }
    for node in [&on_a, &on_b] {
        let refused = node.login("ola@example.org", PASSWORD, None).await;
        let error = refused.unwrap_err();
        assert_eq!(error.status(), Some(ErrorStatus::LimitExceeded));
        let ClientError::Api(api) = error else {
            unreachable!()
        };
        assert!(api.retry_after_ms > 0, "says when to retry");
    }

    // Redis gone: logins fail with a typed error at once, never hang.
    drop(redis);
    let mut no_retry = client_config(&node_b);
    no_retry.retry = RetryPolicy::none();
    let lonely = Client::connect(no_retry).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        status(lonely.login("ola@example.org", PASSWORD, None).await),
        ErrorStatus::Unavailable
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    node_a.shutdown().unwrap();
    node_b.shutdown().unwrap();
}

/// With `--redis` a sign-out everywhere is kept in Redis, where every node
/// reads it: the old tokens stay refused after the node restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_everywhere_is_kept_in_redis() {
    let Some(redis) = redis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let with_redis = |c: &mut Config| c.redis = Some(redis.url());
    let node = Server::start(&config(dir.path(), with_redis)).unwrap();
    let tokens = RedisState::connect(&redis.url(), 1).await.unwrap();
    let laptop = connect(&node).await;
    let user = laptop
        .register("lin@example.org", PASSWORD, None)
        .await
        .unwrap()
        .user_id;
    let phone = connect(&node).await;
    let stolen = phone
        .login("lin@example.org", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(tokens.signed_out_at(user).await.unwrap(), None);
    laptop.logout_everywhere().await.unwrap();
    assert!(tokens.signed_out_at(user).await.unwrap().is_some());
    assert_eq!(status(phone.profile().await), ErrorStatus::Unauthenticated);

    node.shutdown().unwrap();
    let node = Server::start(&config(dir.path(), with_redis)).unwrap();
    let client = connect(&node).await;
    assert_eq!(
        status(client.authenticate(&stolen.access_token).await),
        ErrorStatus::Unauthenticated
    );
    assert_eq!(
        status(client.refresh(&stolen.refresh_token).await),
        ErrorStatus::Unauthenticated
    );
    client
        .login("lin@example.org", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(client.profile().await.unwrap().user_id, user);
    node.shutdown().unwrap();
}

/// With `--redis`, a sign-out everywhere on one node also ends the user's
/// open connections on another, which hears of it through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_everywhere_reaches_open_connections_on_other_nodes() {
    let Some(redis) = redis() else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_redis = |c: &mut Config| c.redis = Some(redis.url());
    let node_a = Server::start(&config(dir_a.path(), with_redis)).unwrap();
    // The nodes sign access tokens with one key, as a deployment's do.
    let key = souk_server::server::TOKEN_KEY_FILE;
    std::fs::copy(dir_a.path().join(key), dir_b.path().join(key)).unwrap();
    let node_b = Server::start(&config(dir_b.path(), with_redis)).unwrap();

    let laptop = connect(&node_a).await;
    let grant = laptop
        .register("noor@example.org", PASSWORD, None)
        .await
        .unwrap();
    let elsewhere = connect(&node_b).await;
    elsewhere.authenticate(&grant.access_token).await.unwrap();
    elsewhere.list_orders(None, 10).await.unwrap();

    laptop.logout_everywhere().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match elsewhere.list_orders(None, 10).await {
            Err(error) => break error,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(_) => panic!("node B kept the connection signed in"),
        }
    };
    assert_eq!(refused.status(), Some(ErrorStatus::Unauthenticated));
    assert!(refused.to_string().contains("signed out"), "{refused}");
    node_a.shutdown().unwrap();
    node_b.shutdown().unwrap();
}

/// With `--retry-above 0` every new client proves its address with a QUIC
/// Retry first, and the SDK follows it without noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_a_quic_retry_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), |c| c.retry_above = 0)).unwrap();
    for _ in 0..3 {
        let client = connect(&server).await;
        assert!(!client.list_categories().await.unwrap().is_empty());
        client.close();
    }
    let retried = server.stats().total(|s| &s.connections_retried);
    assert!(retried >= 3, "{retried} retries for 3 connections");
    server.shutdown().unwrap();
}

/// One address opening connections faster than `--new-connections-per-sec`
/// is refused (the SDK reports `Busy`), and allowed again a moment later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_opening_connections_too_fast_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&config(dir.path(), |c| {
        c.shards = 1;
        c.new_connections_per_sec = 2;
    }))
    .unwrap();
    let mut no_retry = client_config(&server);
    no_retry.retry = RetryPolicy::none();
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(Client::connect(no_retry.clone()).await.map(|c| c.close()));
    }
    let refused = outcomes.iter().filter(|o| o.is_err()).count();
    assert!(refused >= 1, "{outcomes:?}");
    for outcome in outcomes.into_iter().filter(Result::is_err) {
        assert_eq!(status(outcome), ErrorStatus::Busy);
    }
    assert!(server.stats().total(|s| &s.connections_rate_limited) >= 1);
    server.clock().advance(Duration::from_secs(1));
    Client::connect(no_retry)
        .await
        .expect("the address's allowance refilled a second later");
    server.shutdown().unwrap();
}
