//! The souk server: shard-per-core QUIC front, request handling and the
//! commerce domain.
//!
//! Layout, from the outside in:
//!
//! - `main.rs` parses the command line (`config`), sets up logging and runs
//!   a `Server` until SIGINT or SIGTERM.
//! - `server` starts the shards and stops them; `tls` provides the
//!   certificate.
//! - `io` is the only layer that knows tokio, quinn and sockets: per shard a
//!   thread, a runtime and an endpoint (`io::shard`), the reuseport sockets,
//!   and connection ids that name their shard (`io::cid`).
//! - `shard` says which shard owns what (`Placement`) and carries typed
//!   calls between shards (`shard::mesh`).
//! - `domain` handles requests without I/O: bytes never reach it, time is
//!   passed in, and its results are replies or steps for `io` to carry out.
//! - `clock` is the one wall clock shards read; tests advance it.
//! - `sim` runs every shard's handlers in one thread under a seeded
//!   simulator with a faulty store and gateway, checking invariants.
//! - `limits` names every bound with its reason; `stats` counts.

pub mod clock;
pub mod config;
pub mod domain;
pub mod import;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod sim;
pub mod stats;
pub mod tls;

pub use config::Config;
pub use server::Server;
