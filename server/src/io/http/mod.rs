//! The HTTP bridge for browsers: each shard serves HTTP/1.1 (and HTTP/2
//! over TLS, by ALPN) on its own `SO_REUSEPORT` listener, in its own
//! runtime, beside its QUIC endpoint.
//!
//! The bridge is a codec: JSON in → the same `api::Request` → the same
//! `domain::flow::dispatch` as QUIC → JSON out. What it adds is what only
//! HTTP has: routes, cookies, CSRF and CORS, problem+json, ETags for a CDN,
//! the storefront's files and the health endpoints.
//!
//! hyper is used directly rather than through axum: axum's handlers must be
//! `Send`, and a shard's state is deliberately not (it lives on one thread,
//! in `Rc<RefCell<_>>`). hyper's connections are plain futures, which run
//! on the shard's `LocalSet` like its QUIC streams.

mod assets;
mod exchange;
pub mod json;
pub mod openapi;
mod problem;
mod routes;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use hyper::rt::Executor;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

pub use assets::Assets;
pub use routes::CachedJson;

use super::shard::Shard;
use crate::limits;

/// What every shard's bridge serves with; shared by all shards.
#[derive(Debug)]
pub struct HttpSettings {
    /// Origins (`https://shop.example`) whose pages may call the API with
    /// CORS; the bridge's own origin always may.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// TLS for the bridge, with the QUIC endpoint's certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub assets: Assets,
}

/// Runs on the shard's `LocalSet`: hyper's HTTP/2 tasks need not be `Send`.
#[derive(Clone, Copy, Debug)]
struct LocalExec;

impl<F> Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// Accepts connections until shutdown. Each connection is a task tracked
/// with the shard's requests, so that the drain waits for its replies.
pub(super) async fn accept(shard: Rc<Shard>, listener: TcpListener, settings: Arc<HttpSettings>) {
    let mut shutdown = shard.shutdown_signal();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, most likely: back off, don't spin.
                    warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if shard.http_connections_full() {
            shard.stats_for_http().connections_refused.increment();
            continue;
        }
        let _ = stream.set_nodelay(true);
        let task = serve_connection(shard.clone(), stream, peer, settings.clone());
        shard.track_request(task);
    }
}

async fn serve_connection(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<HttpSettings>,
) {
    let _slot = shard.http_connection_slot();
    match settings.tls.clone() {
        None => serve_http1(&shard, TokioIo::new(stream), peer, &settings).await,
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let handshake =
                tokio::time::timeout(limits::HTTP_HEADER_TIMEOUT, acceptor.accept(stream)).await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                serve_http2(&shard, TokioIo::new(stream), peer, &settings).await;
            } else {
                serve_http1(&shard, TokioIo::new(stream), peer, &settings).await;
            }
        }
    }
}

async fn serve_http1<I>(shard: &Rc<Shard>, io: I, peer: SocketAddr, settings: &Arc<HttpSettings>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let service = routes::service(shard.clone(), settings.clone(), peer);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection is kept.
        .header_read_timeout(limits::HTTP_HEADER_TIMEOUT)
        .max_buf_size(limits::HTTP_HEADER_BYTES_MAX.max(8192));
    let connection = builder.serve_connection(io, service);
    until_stopped(shard, peer, "HTTP/1.1", connection, |c| {
        c.graceful_shutdown()
    })
    .await;
}

async fn serve_http2<I>(shard: &Rc<Shard>, io: I, peer: SocketAddr, settings: &Arc<HttpSettings>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let service = routes::service(shard.clone(), settings.clone(), peer);
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::HTTP2_STREAMS_MAX)
        .max_header_list_size(limits::HTTP_HEADER_BYTES_MAX as u32)
        .keep_alive_interval(Some(limits::HTTP_HEADER_TIMEOUT));
    let connection = builder.serve_connection(io, service);
    until_stopped(shard, peer, "HTTP/2", connection, |c| c.graceful_shutdown()).await;
}

/// Serves a connection until it ends, or until the shard stops: then the
/// request in flight finishes and the connection closes (an idle
/// keep-alive one at once), within the grace period.
async fn until_stopped<C, E>(
    shard: &Shard,
    peer: SocketAddr,
    protocol: &'static str,
    connection: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let mut shutdown = shard.shutdown_signal();
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%peer, %error, protocol, "HTTP connection ended");
            }
        }
        _ = shutdown.wait_for(|stop| *stop) => {
            graceful_shutdown(connection.as_mut());
            let _ = tokio::time::timeout(limits::SHUTDOWN_GRACE, connection).await;
        }
    }
}
