//! Setup the integration tests share, each piece defined once. A test file
//! takes it in with `mod support;`.
//!
//! - `process.rs`: [`Souk`], the `souk` binary started as an operator
//!   starts it, for tests that need a real process.
//! - `in_process.rs`: a [`Server`](souk_server::Server) in the test's own
//!   process over a temporary data directory, and clients that pin its
//!   certificate.
//! - `http.rs`: [`Http`], a browser-like HTTP/1.1 client of the bridge
//!   with a cookie jar.
//! - `storage.rs`: the embedded store, or with `SOUK_TEST_STORAGE=scylla`
//!   a keyspace per data directory on the CQL cluster.
//! - `requests.rs`: the accounts the tests sign in with, and the requests
//!   and errors several of them build or read, whichever server answers.

// Each test crate uses a different part of this and of what it re-exports.
#![allow(dead_code, unused_imports)]

mod http;
mod in_process;
mod process;
mod requests;
mod storage;

pub use http::{Http, Reply};
pub use in_process::{REQUEST_TIMEOUT, Running, client_config, config, connect, start_with_admin};
pub use process::Souk;
pub use requests::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, checkout, sign_in_admin, status};
pub use storage::{Keyspace, cluster_node, on_cql, scylla_args};
