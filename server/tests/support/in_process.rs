//! A [`Server`] in the test's own process, over a temporary data directory,
//! and clients that trust only its certificate.

use std::path::Path;
use std::time::Duration;

use souk_client::{Client, ClientConfig, Trust};
use souk_server::{Config, Server};

use super::requests::{ADMIN_EMAIL, ADMIN_PASSWORD};
use super::storage::{Keyspace, storage_config};

/// How long the tests' clients wait for one reply: twice the SDK's default,
/// since a debug build shares the machine's cores with other tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A server and the temporary data directory it runs over, which lives as
/// long as the server does, as does its keyspace when it runs on CQL.
pub struct Running {
    pub server: Server,
    _data: tempfile::TempDir,
    _keyspace: Keyspace,
}

impl Running {
    /// Starts a server that holds an admin account ([`ADMIN_EMAIL`]) over a
    /// new temporary data directory; `config` makes the configuration from
    /// the directory's path.
    pub fn start(config: impl FnOnce(&Path) -> Config) -> Running {
        let data = tempfile::tempdir().unwrap();
        let server = start_with_admin(&config(data.path()));
        Running {
            server,
            _keyspace: Keyspace::of(data.path()),
            _data: data,
        }
    }
}

/// Two shards on an ephemeral loopback port over `data` (and its keyspace,
/// on CQL), with `demo_products` demo products. Threads are not pinned:
/// the tests share the machine's cores.
pub fn config(data: &Path, demo_products: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 2,
        data_dir: data.to_path_buf(),
        storage: storage_config(data),
        demo_products,
        pin_threads: false,
        ..Config::default()
    }
}

/// Creates the admin account in `config`'s data directory, then starts the
/// server over it.
pub fn start_with_admin(config: &Config) -> Server {
    souk_server::server::create_admin(config, ADMIN_EMAIL, ADMIN_PASSWORD, None).unwrap();
    Server::start(config).unwrap()
}

/// A client configuration that trusts `server` by its certificate's
/// fingerprint, and waits [`REQUEST_TIMEOUT`] for a reply.
pub fn client_config(server: &Server) -> ClientConfig {
    let mut config = ClientConfig::new(
        server.local_addr(),
        Trust::Fingerprint(server.fingerprint()),
    );
    config.request_timeout = REQUEST_TIMEOUT;
    config
}

/// A new connection to `server`, signed in as nobody.
pub async fn connect(server: &Server) -> Client {
    Client::connect(client_config(server)).await.unwrap()
}
