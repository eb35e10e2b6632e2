//! Configuration: defaults, then a TOML file, then environment variables,
//! then command-line flags, each overriding the one before.
//!
//! Every option has a flag and an environment variable (`souk --help` lists
//! both); the TOML file uses the flag's name with `_` for `-`. The defaults
//! run a working shop with its data in `./data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::limits;

/// souk: an e-commerce backend, shard per core, FlatBuffers over QUIC.
#[derive(Debug, Parser)]
#[command(name = "souk", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the shop (the default when no command is given).
    Serve,
    /// Import products from a CSV file into the store (souk's own columns,
    /// superstore.csv or @vendure/create's products.csv). Run it with the
    /// server stopped; re-running updates and never duplicates.
    Import(ImportArgs),
    /// Create an admin account in the store (run with the server stopped).
    /// The password is read from standard input, never from the command
    /// line, where other users of the machine could see it.
    CreateAdmin(CreateAdminArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateAdminArgs {
    /// The admin's e-mail, used to sign in.
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// The file's layout. [default: told from the header]
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// Currency of prices the file gives without one.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Units on hand for new SKUs the file gives no stock for.
    #[arg(long, default_value_t = 100)]
    pub initial_stock: i64,
}

/// Options of `souk serve`. Every field is optional here so that a value
/// from the command line or the environment can be told from one that should
/// come from the file or the default.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// TOML configuration file; its keys are the long flag names with `_`.
    #[arg(global = true, short, long, env = "SOUK_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// UDP address the QUIC endpoint listens on. [default: 0.0.0.0:4433]
    #[arg(global = true, long, env = "SOUK_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Number of shards (pinned threads). [default: the number of cores]
    #[arg(global = true, long, env = "SOUK_SHARDS", value_name = "N")]
    pub shards: Option<usize>,

    /// Directory for the store and the generated certificate. [default: ./data]
    #[arg(global = true, long, env = "SOUK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TLS certificate chain (PEM). Without it, souk creates a self-signed
    /// certificate in the data directory on first start and prints its
    /// SHA-256 fingerprint for clients to pin.
    #[arg(
        global = true,
        long,
        env = "SOUK_CERT",
        value_name = "PEM",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM) for --cert.
    #[arg(
        global = true,
        long,
        env = "SOUK_KEY",
        value_name = "PEM",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,

    /// Log line format. [default: human]
    #[arg(global = true, long, env = "SOUK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, as in RUST_LOG (for example `info,souk_server=debug`).
    /// [default: info,fjall=warn,lsm_tree=warn]
    #[arg(global = true, long, env = "SOUK_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Products in the generated demo catalog served when the store is empty. [default: 500]
    #[arg(global = true, long, env = "SOUK_DEMO_PRODUCTS", value_name = "N")]
    pub demo_products: Option<usize>,

    /// Seed of the demo catalog generator. [default: 1]
    #[arg(global = true, long, env = "SOUK_DEMO_SEED", value_name = "SEED")]
    pub demo_seed: Option<u64>,

    /// Open connections one shard accepts; more are refused before any
    /// handshake work. [default: 10000]
    #[arg(
        global = true,
        long,
        env = "SOUK_MAX_CONNECTIONS_PER_SHARD",
        value_name = "N"
    )]
    pub max_connections_per_shard: Option<usize>,

    /// Where orders, users and the catalog are kept. [default: embedded]
    #[arg(global = true, long, env = "SOUK_STORAGE", value_enum)]
    pub storage: Option<StorageKind>,

    /// The embedded store's engine. [default: fjall]
    #[arg(global = true, long, env = "SOUK_EMBEDDED_ENGINE", value_enum)]
    pub embedded_engine: Option<EmbeddedEngine>,

    /// ScyllaDB nodes (host:port, comma-separated) for --storage scylla.
    #[arg(
        global = true,
        long,
        env = "SOUK_SCYLLA_NODES",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub scylla_nodes: Option<Vec<String>>,

    /// ScyllaDB keyspace. [default: souk]
    #[arg(global = true, long, env = "SOUK_SCYLLA_KEYSPACE", value_name = "NAME")]
    pub scylla_keyspace: Option<String>,

    /// Replicas per datacenter when souk creates the keyspace. [default: 3]
    #[arg(
        global = true,
        long,
        env = "SOUK_SCYLLA_REPLICATION_FACTOR",
        value_name = "N"
    )]
    pub scylla_replication_factor: Option<u32>,

    /// Consistency of ScyllaDB reads and writes. [default: local-quorum]
    #[arg(
        global = true,
        long,
        env = "SOUK_SCYLLA_CONSISTENCY",
        value_enum,
        value_name = "LEVEL"
    )]
    pub scylla_consistency: Option<ScyllaConsistency>,

    /// Consistency of the Paxos round of ScyllaDB's conditional writes
    /// (unique e-mails, order states, refresh tokens). [default: local-serial]
    #[arg(
        global = true,
        long,
        env = "SOUK_SCYLLA_SERIAL_CONSISTENCY",
        value_enum,
        value_name = "LEVEL"
    )]
    pub scylla_serial_consistency: Option<ScyllaSerialConsistency>,

    /// This node's name among the souk nodes sharing a ScyllaDB cluster.
    /// [default: the host name]
    #[arg(global = true, long, env = "SOUK_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Pin each shard's thread to its own core. [default: true]
    #[arg(global = true, long, env = "SOUK_PIN_THREADS", value_name = "BOOL")]
    pub pin_threads: Option<bool>,

    /// Units of one SKU one customer may hold in unpaid and paid orders
    /// (bot protection); 0 for no limit. [default: 10]
    #[arg(global = true, long, env = "SOUK_PURCHASE_LIMIT", value_name = "UNITS")]
    pub purchase_limit: Option<i64>,

    /// Seconds a checkout holds its stock while payment completes; unpaid
    /// orders then expire and their stock returns. [default: 900]
    #[arg(
        global = true,
        long,
        env = "SOUK_RESERVATION_TTL_SECS",
        value_name = "SECS"
    )]
    pub reservation_ttl_secs: Option<u64>,

    /// Latency of the built-in simulated payment gateway. [default: 50]
    #[arg(
        global = true,
        long,
        env = "SOUK_PAYMENT_LATENCY_MS",
        value_name = "MS"
    )]
    pub payment_latency_ms: Option<u64>,

    /// How long a shard serves a catalog reply from its cache; 0 turns the
    /// cache off. Catalog changes clear the caches at once; only the stock
    /// figures in product details can be this old. [default: 1000]
    #[arg(
        global = true,
        long,
        env = "SOUK_CATALOG_CACHE_TTL_MS",
        value_name = "MS"
    )]
    pub catalog_cache_ttl_ms: Option<u64>,

    /// Cart edits per second one customer (user or guest device) may make;
    /// bursts of twice that (at least 5) pass. 0: no limit. [default: 20]
    #[arg(
        global = true,
        long,
        env = "SOUK_RATE_CART_WRITES",
        value_name = "PER_SEC"
    )]
    pub rate_cart_writes: Option<u32>,

    /// Checkouts per second one user may start, with bursts as for cart
    /// edits. 0: no limit. [default: 2]
    #[arg(
        global = true,
        long,
        env = "SOUK_RATE_CHECKOUTS",
        value_name = "PER_SEC"
    )]
    pub rate_checkouts: Option<u32>,

    /// Reads of their own data (cart, orders, profile, addresses) per
    /// second one customer may make, with bursts as for cart edits. 0: no
    /// limit. [default: 100]
    #[arg(global = true, long, env = "SOUK_RATE_READS", value_name = "PER_SEC")]
    pub rate_reads: Option<u32>,

    /// New connections per second one source address may open on one
    /// shard; past it the handshake is refused. 0: no limit. [default: 50]
    #[arg(
        global = true,
        long,
        env = "SOUK_NEW_CONNECTIONS_PER_SEC",
        value_name = "N"
    )]
    pub new_connections_per_sec: Option<u32>,

    /// Handshakes in progress on a shard above which a client must first
    /// prove its address with a QUIC Retry, before any handshake work is
    /// spent on it. 0: always. [default: 64]
    #[arg(global = true, long, env = "SOUK_RETRY_ABOVE", value_name = "N")]
    pub retry_above: Option<usize>,

    /// Redis URL (`redis://host:port/db`) for what several souk nodes must
    /// share: refresh tokens, failed-login counts and checkout rates.
    /// Unset: kept in the embedded store and in shard memory.
    #[arg(
        global = true,
        long,
        env = "SOUK_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// TCP address of the Prometheus metrics endpoint (`GET /metrics`).
    /// Unset: no endpoint.
    #[arg(global = true, long, env = "SOUK_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// TCP address of the HTTP/JSON bridge for browsers (every shard
    /// listens on it with SO_REUSEPORT); `off` turns the bridge off.
    /// [default: 127.0.0.1:8080]
    #[arg(global = true, long, env = "SOUK_HTTP_LISTEN", value_name = "ADDR|off")]
    pub http_listen: Option<HttpListen>,

    /// Serve the bridge over TLS (HTTP/2 by ALPN, and HTTP/1.1) with the
    /// QUIC endpoint's certificate, and send HSTS.
    #[arg(global = true, long, env = "SOUK_HTTP_TLS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub http_tls: Option<bool>,

    /// Origins (`https://shop.example`) whose pages may call the bridge
    /// from a browser (CORS, with credentials). Comma-separated.
    #[arg(
        global = true,
        long,
        env = "SOUK_HTTP_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub http_allow_origin: Option<Vec<String>>,

    /// Proxy addresses whose `Forwarded` / `X-Forwarded-For` headers name
    /// the client (rate limits key on it). Comma-separated.
    #[arg(
        global = true,
        long,
        env = "SOUK_HTTP_TRUSTED_PROXY",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub http_trusted_proxy: Option<Vec<std::net::IpAddr>>,

    /// Payments the simulated gateway declines, per 10,000. [default: 0]
    #[arg(
        global = true,
        long,
        env = "SOUK_PAYMENT_DECLINES_PER_10K",
        value_name = "N"
    )]
    pub payment_declines_per_10k: Option<u32>,
}

/// `--http-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpListen(pub Option<SocketAddr>);

impl std::str::FromStr for HttpListen {
    type Err = String;

    fn from_str(text: &str) -> Result<HttpListen, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(HttpListen(None));
        }
        text.parse()
            .map(|addr| HttpListen(Some(addr)))
            .map_err(|_| format!("{text:?} is neither an address (127.0.0.1:8080) nor off"))
    }
}

impl TryFrom<String> for HttpListen {
    type Error = String;

    fn try_from(text: String) -> Result<HttpListen, String> {
        text.parse()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// An embedded database in the data directory.
    #[default]
    Embedded,
    /// A ScyllaDB cluster (--scylla-nodes), for several souk nodes.
    Scylla,
}

/// CQL consistency levels souk accepts for reads and plain writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScyllaConsistency {
    One,
    LocalOne,
    Quorum,
    LocalQuorum,
    EachQuorum,
    All,
}

impl From<ScyllaConsistency> for souk_storage::scylla::Consistency {
    fn from(level: ScyllaConsistency) -> Self {
        use souk_storage::scylla::Consistency as C;
        match level {
            ScyllaConsistency::One => C::One,
            ScyllaConsistency::LocalOne => C::LocalOne,
            ScyllaConsistency::Quorum => C::Quorum,
            ScyllaConsistency::LocalQuorum => C::LocalQuorum,
            ScyllaConsistency::EachQuorum => C::EachQuorum,
            ScyllaConsistency::All => C::All,
        }
    }
}

/// Serial consistency levels: the Paxos quorum across datacenters or in
/// the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScyllaSerialConsistency {
    Serial,
    LocalSerial,
}

impl From<ScyllaSerialConsistency> for souk_storage::scylla::SerialConsistency {
    fn from(level: ScyllaSerialConsistency) -> Self {
        use souk_storage::scylla::SerialConsistency as S;
        match level {
            ScyllaSerialConsistency::Serial => S::Serial,
            ScyllaSerialConsistency::LocalSerial => S::LocalSerial,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddedEngine {
    /// LSM tree with a journal: the faster one on order inserts here.
    #[default]
    Fjall,
    /// Copy-on-write B-tree in one file.
    Redb,
}

/// Where souk keeps its data.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Embedded(souk_storage::embedded::EngineKind),
    Scylla(souk_storage::scylla::ScyllaConfig),
}

/// Where the server's TLS identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `cert.pem` and `key.pem` in the data directory, created on first start.
    SelfSigned,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub shards: usize,
    pub data_dir: PathBuf,
    pub tls: TlsSource,
    pub log_format: LogFormat,
    pub log: String,
    pub demo_products: usize,
    pub demo_seed: u64,
    pub max_connections_per_shard: usize,
    pub pin_threads: bool,
    pub storage: StorageConfig,
    pub purchase_limit: i64,
    pub reservation_ttl: std::time::Duration,
    pub payment_latency: std::time::Duration,
    pub payment_declines_per_10k: u32,
    pub catalog_cache_ttl: std::time::Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub rate_cart_writes: u32,
    pub rate_checkouts: u32,
    pub rate_reads: u32,
    pub new_connections_per_sec: u32,
    pub retry_above: usize,
    pub redis: Option<String>,
    /// The HTTP bridge's address; `None`: no bridge.
    pub http_listen: Option<SocketAddr>,
    pub http_tls: bool,
    pub http_allow_origins: Vec<String>,
    pub http_trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            shards: available_cores(),
            data_dir: PathBuf::from("data"),
            tls: TlsSource::SelfSigned,
            log_format: LogFormat::Human,
            // The storage engines narrate every table they open at info.
            log: "info,fjall=warn,lsm_tree=warn".into(),
            demo_products: souk_storage::demo::DEMO_PRODUCTS_DEFAULT,
            demo_seed: 1,
            max_connections_per_shard: limits::CONNECTIONS_PER_SHARD_MAX,
            pin_threads: true,
            storage: StorageConfig::Embedded(Default::default()),
            purchase_limit: 10,
            reservation_ttl: std::time::Duration::from_secs(900),
            payment_latency: std::time::Duration::from_millis(50),
            payment_declines_per_10k: 0,
            catalog_cache_ttl: std::time::Duration::from_millis(1000),
            metrics_listen: None,
            rate_cart_writes: 20,
            rate_checkouts: 2,
            rate_reads: 100,
            new_connections_per_sec: 50,
            retry_above: 64,
            redis: None,
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            http_tls: false,
            http_allow_origins: Vec::new(),
            http_trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Resolves command-line and environment options (already merged by
    /// clap) over the config file they name, over the defaults.
    pub fn resolve(cli: Options) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Options::default(),
        };
        let defaults = Config::default();
        let storage = storage_config(&cli, &file)?;
        let tls = match (cli.cert.or(file.cert), cli.key.or(file.key)) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned,
            _ => return Err(ConfigError::Invalid("cert and key go together".into())),
        };
        let config = Config {
            storage,
            listen: cli.listen.or(file.listen).unwrap_or(defaults.listen),
            shards: cli.shards.or(file.shards).unwrap_or(defaults.shards),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            tls,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            log: cli.log.or(file.log).unwrap_or(defaults.log),
            demo_products: cli
                .demo_products
                .or(file.demo_products)
                .unwrap_or(defaults.demo_products),
            demo_seed: cli
                .demo_seed
                .or(file.demo_seed)
                .unwrap_or(defaults.demo_seed),
            max_connections_per_shard: cli
                .max_connections_per_shard
                .or(file.max_connections_per_shard)
                .unwrap_or(defaults.max_connections_per_shard),
            pin_threads: cli
                .pin_threads
                .or(file.pin_threads)
                .unwrap_or(defaults.pin_threads),
            purchase_limit: cli
                .purchase_limit
                .or(file.purchase_limit)
                .unwrap_or(defaults.purchase_limit),
            reservation_ttl: cli
                .reservation_ttl_secs
                .or(file.reservation_ttl_secs)
                .map_or(defaults.reservation_ttl, std::time::Duration::from_secs),
            payment_latency: cli
                .payment_latency_ms
                .or(file.payment_latency_ms)
                .map_or(defaults.payment_latency, std::time::Duration::from_millis),
            payment_declines_per_10k: cli
                .payment_declines_per_10k
                .or(file.payment_declines_per_10k)
                .unwrap_or(defaults.payment_declines_per_10k),
            catalog_cache_ttl: cli
                .catalog_cache_ttl_ms
                .or(file.catalog_cache_ttl_ms)
                .map_or(defaults.catalog_cache_ttl, std::time::Duration::from_millis),
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            rate_cart_writes: cli
                .rate_cart_writes
                .or(file.rate_cart_writes)
                .unwrap_or(defaults.rate_cart_writes),
            rate_checkouts: cli
                .rate_checkouts
                .or(file.rate_checkouts)
                .unwrap_or(defaults.rate_checkouts),
            rate_reads: cli
                .rate_reads
                .or(file.rate_reads)
                .unwrap_or(defaults.rate_reads),
            new_connections_per_sec: cli
                .new_connections_per_sec
                .or(file.new_connections_per_sec)
                .unwrap_or(defaults.new_connections_per_sec),
            retry_above: cli
                .retry_above
                .or(file.retry_above)
                .unwrap_or(defaults.retry_above),
            redis: cli.redis.or(file.redis),
            http_listen: cli
                .http_listen
                .or(file.http_listen)
                .map_or(defaults.http_listen, |listen| listen.0),
            http_tls: cli.http_tls.or(file.http_tls).unwrap_or(defaults.http_tls),
            http_allow_origins: cli
                .http_allow_origin
                .or(file.http_allow_origin)
                .unwrap_or_default(),
            http_trusted_proxies: cli
                .http_trusted_proxy
                .or(file.http_trusted_proxy)
                .unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shards == 0 || self.shards > limits::SHARDS_MAX {
            return Err(ConfigError::Invalid(format!(
                "shards must be between 1 and {}, got {}",
                limits::SHARDS_MAX,
                self.shards
            )));
        }
        if self.max_connections_per_shard == 0 {
            return Err(ConfigError::Invalid(
                "max connections per shard must be at least 1".into(),
            ));
        }
        if self.purchase_limit < 0 {
            return Err(ConfigError::Invalid(
                "purchase limit must be 0 (none) or more".into(),
            ));
        }
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "reservation TTL must be at least 1 second".into(),
            ));
        }
        for origin in &self.http_allow_origins {
            let scheme = origin.starts_with("https://") || origin.starts_with("http://");
            if !scheme || origin.ends_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "allowed origin {origin:?}: scheme://host[:port], without a path"
                )));
            }
        }
        if self.payment_declines_per_10k > 10_000 {
            return Err(ConfigError::Invalid(
                "payment declines are counted per 10,000: at most 10000".into(),
            ));
        }
        Ok(())
    }
}

fn storage_config(cli: &Options, file: &Options) -> Result<StorageConfig, ConfigError> {
    let kind = cli.storage.or(file.storage).unwrap_or_default();
    if kind == StorageKind::Embedded {
        let engine = match cli
            .embedded_engine
            .or(file.embedded_engine)
            .unwrap_or_default()
        {
            EmbeddedEngine::Fjall => souk_storage::embedded::EngineKind::Fjall,
            EmbeddedEngine::Redb => souk_storage::embedded::EngineKind::Redb,
        };
        return Ok(StorageConfig::Embedded(engine));
    }
    let nodes = cli
        .scylla_nodes
        .clone()
        .or_else(|| file.scylla_nodes.clone())
        .filter(|nodes| !nodes.is_empty())
        .ok_or_else(|| ConfigError::Invalid("--storage scylla needs --scylla-nodes".into()))?;
    let keyspace = cli
        .scylla_keyspace
        .clone()
        .or_else(|| file.scylla_keyspace.clone())
        .unwrap_or_else(|| "souk".into());
    let mut scylla = souk_storage::scylla::ScyllaConfig::new(nodes, keyspace);
    if let Some(factor) = cli
        .scylla_replication_factor
        .or(file.scylla_replication_factor)
    {
        scylla.replication_factor = factor;
    }
    if let Some(level) = cli.scylla_consistency.or(file.scylla_consistency) {
        scylla.consistency = level.into();
    }
    if let Some(level) = cli
        .scylla_serial_consistency
        .or(file.scylla_serial_consistency)
    {
        scylla.serial_consistency = level.into();
    }
    scylla.node = cli
        .node_name
        .clone()
        .or_else(|| file.node_name.clone())
        .unwrap_or_else(host_name);
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if scylla.node.is_empty() || scylla.node.len() > 64 || !scylla.node.bytes().all(valid) {
        return Err(ConfigError::Invalid(format!(
            "node name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
            scylla.node
        )));
    }
    Ok(StorageConfig::Scylla(scylla))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "souk".into())
}

fn read_file(path: &Path) -> Result<Options, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses as the command line does, but without the environment: a
    /// `SOUK_*` variable set where the tests run (CI names its CQL cluster
    /// in `SOUK_SCYLLA_NODES`) must not change what these tests see.
    fn parse(args: &[&str]) -> Options {
        use clap::{CommandFactory, FromArgMatches};
        let mut argv = vec!["souk"];
        argv.extend_from_slice(args);
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.try_get_matches_from(argv).expect("valid arguments");
        Cli::from_arg_matches(&matches)
            .expect("valid arguments")
            .options
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("souk.toml");
        std::fs::write(
            &path,
            "shards = 3\nlisten = \"127.0.0.1:5000\"\ndemo_products = 10\n",
        )
        .unwrap();
        let config = Config::resolve(parse(&[
            "--config",
            path.to_str().unwrap(),
            "--shards",
            "2",
        ]))
        .unwrap();
        assert_eq!(config.shards, 2, "flag wins over file");
        assert_eq!(
            config.listen,
            "127.0.0.1:5000".parse().unwrap(),
            "file wins over default"
        );
        assert_eq!(config.demo_products, 10);
        assert_eq!(config.data_dir, PathBuf::from("data"), "default");
        assert_eq!(config.tls, TlsSource::SelfSigned);
        assert!(matches!(config.storage, StorageConfig::Embedded(_)));
    }

    #[test]
    fn scylla_storage_takes_its_nodes_and_names() {
        let config = Config::resolve(parse(&[
            "--storage",
            "scylla",
            "--scylla-nodes",
            "10.0.0.1:9042,10.0.0.2:9042",
            "--node-name",
            "edge-1",
        ]))
        .unwrap();
        let StorageConfig::Scylla(scylla) = config.storage else {
            panic!("scylla storage expected");
        };
        assert_eq!(scylla.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(
            (scylla.keyspace.as_str(), scylla.node.as_str()),
            ("souk", "edge-1")
        );
        use souk_storage::scylla::{Consistency, SerialConsistency};
        assert_eq!(
            (
                scylla.replication_factor,
                scylla.consistency,
                scylla.serial_consistency
            ),
            (3, Consistency::LocalQuorum, SerialConsistency::LocalSerial),
            "production defaults"
        );
    }

    #[test]
    fn a_one_node_dev_cluster_is_configured_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("souk.toml");
        std::fs::write(
            &path,
            "storage = \"scylla\"\nscylla_nodes = [\"127.0.0.1:9042\"]\n\
             scylla_replication_factor = 1\nscylla_consistency = \"one\"\n\
             scylla_serial_consistency = \"serial\"\n",
        )
        .unwrap();
        let config = Config::resolve(parse(&["--config", path.to_str().unwrap()])).unwrap();
        let StorageConfig::Scylla(scylla) = config.storage else {
            panic!("scylla storage expected");
        };
        use souk_storage::scylla::{Consistency, SerialConsistency};
        assert_eq!(
            (
                scylla.replication_factor,
                scylla.consistency,
                scylla.serial_consistency
            ),
            (1, Consistency::One, SerialConsistency::Serial)
        );
        let flag = Config::resolve(parse(&[
            "--config",
            path.to_str().unwrap(),
            "--scylla-consistency",
            "local-quorum",
        ]))
        .unwrap();
        let StorageConfig::Scylla(scylla) = flag.storage else {
            panic!("scylla storage expected");
        };
        assert_eq!(
            scylla.consistency,
            Consistency::LocalQuorum,
            "the flag wins"
        );
        assert!(
            Cli::try_parse_from(["souk", "--scylla-consistency", "serial"]).is_err(),
            "serial is for conditions only"
        );
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("souk.toml");
        std::fs::write(&path, "shardz = 3\n").unwrap();
        let error = Config::resolve(parse(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
        let error = Config::resolve(parse(&["--shards", "0"])).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid(_)), "{error}");
        let error = Config::resolve(parse(&["--storage", "scylla"])).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid(_)), "{error}");
        assert!(Cli::try_parse_from(["souk", "--cert", "a.pem"]).is_err());
    }
}
