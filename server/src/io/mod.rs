//! The I/O layer: the only part of the server that knows tokio, quinn, hyper
//! and sockets. It reads frames, hands decoded requests to
//! `domain::flow::dispatch`, writes the replies, and gives the handlers
//! their `Ports`: timers, tasks, the mesh, the store. It holds no commerce
//! rule.

pub mod cache;
pub mod cid;
pub mod forward;
pub mod gate;
pub mod http;
pub mod quic;
pub mod shard;
pub mod socket;
