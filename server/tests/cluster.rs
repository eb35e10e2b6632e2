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

/// Two nodes, A (with the admin account) and B, each over its own data
/// directory, on one keyspace that is dropped with this.
struct TwoNodes {
    config_a: Config,
    config_b: Config,
    _keyspace: Keyspace,
    _dirs: [tempfile::TempDir; 3],
}

impl TwoNodes {
    /// `None`, having said why, without a cluster.
    fn new() -> Option<TwoNodes> {
        let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
        let [cluster, data_a, data_b] = dirs.each_ref().map(|dir| dir.path());
        let node = |data: &std::path::Path, name: &str| -> Option<Config> {
            Some(Config {
                storage: StorageConfig::Scylla(cluster_node(cluster, name)?),
                ..support::config(data, 40)
            })
        };
        let (config_a, config_b) = (node(data_a, "node-a")?, node(data_b, "node-b")?);
        let StorageConfig::Scylla(scylla) = &config_a.storage else {
            unreachable!("a cluster node stores into the cluster");
        };
        Some(TwoNodes {
            _keyspace: Keyspace::named(scylla),
            config_a,
            config_b,
            _dirs: dirs,
        })
    }

    /// Starts A, then B with A's token key, as an operator deploys several
    /// nodes, so that a session signed in on one works on all.
    fn start(&self) -> (Server, Server) {
        let a = start_with_admin(&self.config_a);
        let key = souk_server::server::TOKEN_KEY_FILE;
        let (data_a, data_b) = (&self.config_a.data_dir, &self.config_b.data_dir);
        std::fs::copy(data_a.join(key), data_b.join(key)).unwrap();
        (a, Server::start(&self.config_b).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_retried_on_another_node_returns_the_first_order() {
    let Some(nodes) = TwoNodes::new() else {
        return;
    };
    let (a, b) = nodes.start();

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
    let Some(nodes) = TwoNodes::new() else {
        return;
    };
    let (a, b) = nodes.start();

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
    let b = Server::start(&nodes.config_b).unwrap();
    let later = connect(&b).await;
    assert_eq!(later.get_product(&id).await.unwrap().name, changed.name);

    b.shutdown().unwrap();
    a.shutdown().unwrap();
}
