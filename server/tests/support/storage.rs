//! The storage the server tests run on: the embedded store in each test's
//! data directory, or, with `SOUK_TEST_STORAGE=scylla`, the CQL cluster
//! named by `SOUK_SCYLLA_NODES` (`.ci/run` runs the end-to-end, commerce
//! and crash tests so as well). There each data directory gets a keyspace
//! of its own, named after its path, so a server started again over the
//! same directory finds its data; [`Keyspace`] drops it.

use std::hash::{Hash, Hasher};
use std::path::Path;

use souk_server::config::StorageConfig;
use souk_storage::scylla::ScyllaConfig;

/// Whether the tests run on the CQL cluster.
pub fn on_cql() -> bool {
    match std::env::var("SOUK_TEST_STORAGE").as_deref() {
        Ok("scylla") => true,
        Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("SOUK_TEST_STORAGE={other}: expected scylla or embedded"),
    }
}

/// The cluster's configuration for `data`, when the tests run on CQL.
pub fn scylla(data: &Path) -> Option<ScyllaConfig> {
    if !on_cql() {
        return None;
    }
    let nodes = std::env::var("SOUK_SCYLLA_NODES").expect(
        "SOUK_TEST_STORAGE=scylla needs SOUK_SCYLLA_NODES (storage/scylla/cluster.sh start)",
    );
    Some(keyspace_config(&nodes, "souk_test", data, "souk-test"))
}

/// Node `node`'s configuration on the cluster at `nodes`, in a keyspace
/// named `prefix` and a hash of `dir`, at the test replication factor.
fn keyspace_config(nodes: &str, prefix: &str, dir: &Path, node: &str) -> ScyllaConfig {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let keyspace = format!("{prefix}_{:016x}", hasher.finish());
    let mut config = ScyllaConfig::new(nodes.split(',').map(str::to_owned).collect(), keyspace);
    config.replication_factor = std::env::var("SOUK_SCYLLA_REPLICATION_FACTOR")
        .ok()
        .and_then(|rf| rf.parse().ok())
        .unwrap_or(1);
    config.node = node.into();
    config
}

/// What an in-process server over `data` stores into.
pub fn storage_config(data: &Path) -> StorageConfig {
    match scylla(data) {
        Some(config) => StorageConfig::Scylla(config),
        None => souk_server::Config::default().storage,
    }
}

/// The same, as `souk`'s command-line flags.
pub fn storage_args(data: &Path) -> Vec<String> {
    scylla(data).map_or_else(Vec::new, |config| scylla_args(&config))
}

/// `souk`'s command-line flags for `config`.
pub fn scylla_args(config: &ScyllaConfig) -> Vec<String> {
    [
        "--storage",
        "scylla",
        "--scylla-nodes",
        &config.nodes.join(","),
        "--scylla-keyspace",
        &config.keyspace,
        "--scylla-replication-factor",
        &config.replication_factor.to_string(),
        "--node-name",
        &config.node,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Drops the keyspace of a data directory when the test is done with it;
/// nothing on the embedded store, whose data goes with the directory.
pub struct Keyspace(Option<ScyllaConfig>);

impl Keyspace {
    pub fn of(data: &Path) -> Keyspace {
        Keyspace(scylla(data))
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        if let Some(config) = &self.0 {
            let dropped = souk_storage::testing::drop_keyspace(&config.nodes, &config.keyspace);
            if let Err(error) = dropped {
                eprintln!("keyspace {} not dropped: {error}", config.keyspace);
            }
        }
    }
}

/// Node `name` of several souk nodes sharing one keyspace on the CQL
/// cluster named by `SOUK_SCYLLA_NODES` (whatever `SOUK_TEST_STORAGE`
/// says: several nodes need a shared store); `None`, having said why (see
/// `skip_or_fail`), without one. The keyspace is named after `cluster`, a
/// directory the test holds for as long as the nodes run.
pub fn cluster_node(cluster: &Path, name: &str) -> Option<ScyllaConfig> {
    let Ok(nodes) = std::env::var("SOUK_SCYLLA_NODES") else {
        souk_storage::testing::skip_or_fail_unless(
            "SOUK_SKIP_CQL",
            "SOUK_SCYLLA_NODES is not set (no CQL cluster for several souk nodes)",
        );
        return None;
    };
    Some(keyspace_config(&nodes, "souk_cluster", cluster, name))
}

impl Keyspace {
    /// The keyspace of `config`, dropped with this.
    pub fn named(config: &ScyllaConfig) -> Keyspace {
        Keyspace(Some(config.clone()))
    }
}
