//! souk's storage layer.
//!
//! Today it holds what the server needs to start with its data on disk:
//!
//! - `data_dir`: the data directory, locked so that two servers never share one.
//! - `catalog`: the catalog as records (`CatalogData`): what an import or the
//!   demo generator produces and what the server indexes into its read cache.
//! - `demo`: a seeded generator of a plausible demo catalog, so that a fresh
//!   `souk` serves a shop.
//!
//! This crate knows nothing of QUIC, shards or FlatBuffers; it speaks the
//! `souk_wire::api` value types.

pub mod catalog;
pub mod codec;
pub mod data_dir;
pub mod demo;
pub mod embedded;
pub mod error;
pub mod limits;
pub mod model;
pub mod redis;
pub mod scylla;
pub mod store;
pub mod testing;

pub use catalog::CatalogData;
pub use data_dir::{DataDir, DataDirError};
pub use error::{Result, StorageError};
pub use store::Store;
