//! Several souk nodes on one CQL cluster (the one `SOUK_SCYLLA_NODES`
//! names; see `storage/scylla/cluster.sh`), each with its own shards and
//! data directory, sharing every durable record and the token key.

use souk_client::api::{ErrorStatus, RestockMode};
use souk_client::new_idempotency_key;
use souk_server::config::StorageConfig;
use souk_server::{Config, Server};
use souk_storage::demo;
use support::{
    Keyspace, PASSWORD, checkout, cluster_node, connect, sign_in_admin, start_with_admin,
};

mod support;

/// Node `name` over its own data directory, storing into `cluster`'s keyspace.
fn node_config(cluster: &std::path::Path, data: &std::path::Path, name: &str) -> Option<Config> {
    let scylla = cluster_node(cluster, name)?;
    Some(Config {
        storage: StorageConfig::Scylla(scylla),
        ..support::config(data, 40)
    })
}

/// Starts a second node: with the first one's token key, as an operator
/// deploys several nodes, so a session signed in on one works on all.
fn join(first: &std::path::Path, config: &Config) -> Server {
    let key = souk_server::server::TOKEN_KEY_FILE;
    std::fs::copy(first.join(key), config.data_dir.join(key)).unwrap();
    Server::start(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_retried_on_another_node_returns_the_first_order() {
    let (cluster, data_a, data_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let Some(config_a) = node_config(cluster.path(), data_a.path(), "node-a") else {
        return;
    };
    let config_b = node_config(cluster.path(), data_b.path(), "node-b").unwrap();
    let StorageConfig::Scylla(scylla) = &config_a.storage else {
        unreachable!("a cluster node stores into the cluster");
    };
    let _keyspace = Keyspace::named(scylla);
    let a = start_with_admin(&config_a);
    let b = join(data_a.path(), &config_b);

    let admin = connect(&a).await;
    sign_in_admin(&admin).await;
    let product = admin.get_product(&demo::product_id(3)).await.unwrap();
    let sku = product.variants[0].sku.clone();
    admin
        .admin_restock(&sku, 50, RestockMode::Set)
        .await
        .unwrap();

    let on_a = connect(&a).await;
    let grant = on_a
        .register("two-nodes@example.org", PASSWORD, None)
        .await
        .unwrap();
    on_a.add_to_cart(None, &sku, 2).await.unwrap();
    let key = new_idempotency_key();
    let first = on_a.checkout(checkout("pm_tok_visa"), key).await.unwrap();

    // The answer was lost; the app retries through another node, where
    // the cart it was priced from does not live.
    let on_b = connect(&b).await;
    on_b.authenticate(&grant.access_token).await.unwrap();
    let again = on_b.checkout(checkout("pm_tok_visa"), key).await.unwrap();
    assert_eq!(
        again.id, first.id,
        "the key names the first order on every node"
    );
    assert_eq!(again.total, first.total);
    let orders = on_b.list_orders(None, 10).await.unwrap().orders;
    assert_eq!(orders.len(), 1, "one order: {orders:?}");

    // The same key for another checkout is refused there too.
    let other = on_b.checkout(checkout("pm_tok_mastercard"), key).await;
    assert_eq!(support::status(other), ErrorStatus::Conflict);

    // A checkout that failed (nothing in the cart on node B) gives its key
    // up: the same key then places an order once there is something to buy.
    let fresh = new_idempotency_key();
    let empty = on_b.checkout(checkout("pm_tok_visa"), fresh).await;
    assert_eq!(support::status(empty), ErrorStatus::BadRequest);
    on_b.add_to_cart(None, &sku, 1).await.unwrap();
    let placed = on_b.checkout(checkout("pm_tok_visa"), fresh).await.unwrap();
    assert_ne!(placed.id, first.id);
    let again = on_a.checkout(checkout("pm_tok_visa"), fresh).await.unwrap();
    assert_eq!(again.id, placed.id, "and node A finds node B's order by it");

    b.shutdown().unwrap();
    a.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_change_on_one_node_reaches_the_others() {
    let (cluster, data_a, data_b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let Some(config_a) = node_config(cluster.path(), data_a.path(), "node-a") else {
        return;
    };
    let config_b = node_config(cluster.path(), data_b.path(), "node-b").unwrap();
    let StorageConfig::Scylla(scylla) = &config_a.storage else {
        unreachable!("a cluster node stores into the cluster");
    };
    let _keyspace = Keyspace::named(scylla);
    let a = start_with_admin(&config_a);
    let b = join(data_a.path(), &config_b);

    // Node B serves (and caches) the product as it was.
    let id = demo::product_id(5);
    let shopper = connect(&b).await;
    let before = shopper.get_product(&id).await.unwrap();
    assert_eq!(shopper.get_product(&id).await.unwrap().name, before.name);

    let admin = connect(&a).await;
    sign_in_admin(&admin).await;
    let mut changed = before.clone();
    changed.name = format!("{} (renamed on node A)", before.name);
    admin
        .call(souk_client::api::RequestBody::AdminUpsertProduct(Box::new(
            changed.clone(),
        )))
        .await
        .unwrap();
    let changed_at = std::time::Instant::now();
    let lag = loop {
        let seen = shopper.get_product(&id).await.unwrap();
        if seen.name == changed.name {
            break changed_at.elapsed();
        }
        assert!(
            changed_at.elapsed() < std::time::Duration::from_secs(10),
            "node B still serves {:?}",
            seen.name
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    eprintln!("the change reached node B after {} ms", lag.as_millis());
    // A node started after the change reads it with the catalog.
    b.shutdown().unwrap();
    let b = Server::start(&config_b).unwrap();
    let later = connect(&b).await;
    assert_eq!(later.get_product(&id).await.unwrap().name, changed.name);

    b.shutdown().unwrap();
    a.shutdown().unwrap();
}
