//! The async Rust client for souk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), souk_client::ClientError> {
//! use souk_client::{Client, ClientConfig, Trust};
//! use souk_wire::api::ProductId;
//!
//! let fingerprint = [0u8; 32]; // printed by the server at start
//! let config = ClientConfig::new("127.0.0.1:4433".parse().unwrap(), Trust::Fingerprint(fingerprint));
//! let client = Client::connect(config).await?;
//! let product = client.get_product(&ProductId::new("P00042").unwrap()).await?;
//! println!("{} from {}", product.name, product.variants[0].price);
//! # Ok(()) }
//! ```
//!
//! One `Client` holds one QUIC connection; clone it freely and call it from
//! many tasks at once: every request is its own stream, so requests never
//! wait behind each other. The client reconnects on its own when the
//! connection drops (re-binding the identity given to `authenticate`), and
//! retries a request that failed in transit or got `Busy`, reusing its
//! idempotency key so that the server never acts twice.
//!
//! Layout: `config` (what to connect to and how to trust it), `tls` (the
//! certificate checks), `client` (connection, retries, typed calls), `error`.

mod client;
mod config;
mod error;
mod tls;

pub use client::{Client, new_idempotency_key, quic_config};
pub use config::{ClientConfig, RetryPolicy, Trust};
pub use error::ClientError;
pub use souk_wire::api;
