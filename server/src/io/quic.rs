//! QUIC endpoint configuration shared by every shard.

use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use souk_wire::limits::{FRAME_HEADER_BYTES, REQUEST_BYTES_MAX};

use super::cid::{CidKey, ShardCids};
use crate::limits;
use crate::shard::ShardId;

/// Bytes a client may have in flight on one connection before the server
/// reads them: a few maximum-size requests, or thousands of typical
/// (~100-byte) ones. With the connection limit per shard it bounds the
/// receive buffers one shard can be made to hold.
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 256 * 1024;

/// Transport parameters: the limits of `limits.rs`, enforced by QUIC flow
/// control so that a client cannot exceed them at all.
pub fn transport() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(limits::STREAMS_PER_CONNECTION_MAX))
        // Clients open no unidirectional streams; the server pushes events on its own.
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(
            (REQUEST_BYTES_MAX + FRAME_HEADER_BYTES) as u32,
        ))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW_BYTES))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(limits::IDLE_TIMEOUT).expect("idle timeout fits a VarInt"),
        ));
    transport
}

pub fn server_config(crypto: Arc<QuicServerConfig>) -> quinn::ServerConfig {
    let mut config = quinn::ServerConfig::with_crypto(crypto);
    config.transport_config(Arc::new(transport()));
    config.migration(true);
    config
}

/// The endpoint of one shard: its connection ids name it (see `cid`).
pub fn endpoint_config(shard: ShardId, key: CidKey) -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.cid_generator(move || Box::new(ShardCids::new(shard, key.clone())));
    config
}
