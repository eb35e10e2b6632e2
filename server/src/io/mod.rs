//! The I/O layer: the only part of the server that knows tokio, quinn and
//! sockets. It reads frames, hands decoded requests to `domain`, carries out
//! the steps it returns, and writes the replies.

pub mod cache;
pub mod cid;
mod commerce;
pub mod forward;
pub mod gate;
pub mod quic;
pub mod shard;
pub mod socket;
