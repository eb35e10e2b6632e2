//! A bare quinn server that answers every request stream with a fixed
//! reply: the same framing, TLS, transport limits and single-threaded
//! runtime as a souk shard, and no request handling at all. Its rate is
//! what QUIC itself allows on this machine.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use bytes::Bytes;
use souk_server::config::TlsSource;
use souk_server::{io::quic, tls};
use souk_wire::{frame, limits};
use tokio::sync::watch;

pub struct EchoServer {
    addr: SocketAddr,
    fingerprint: [u8; 32],
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    _certificate_dir: tempfile::TempDir,
}

impl EchoServer {
    /// Starts the server on loopback; every request gets `reply` (a frame).
    pub fn start(reply: Vec<u8>) -> anyhow::Result<EchoServer> {
        let certificate_dir = tempfile::tempdir()?;
        let identity = tls::load_or_create(&TlsSource::SelfSigned, certificate_dir.path())?;
        let crypto = Arc::new(tls::quic_server_crypto(&identity)?);
        let server_config = quic::server_config(crypto);
        let socket = UdpSocket::bind("127.0.0.1:0").context("bind")?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let reply = Bytes::from(reply);
        let thread = std::thread::Builder::new()
            .name("echo".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let endpoint = quinn::Endpoint::new(
                        quinn::EndpointConfig::default(),
                        Some(server_config),
                        socket,
                        Arc::new(quinn::TokioRuntime),
                    )
                    .expect("endpoint");
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            Some(incoming) = endpoint.accept() => {
                                tokio::task::spawn_local(serve(incoming, reply.clone()));
                            }
                        }
                    }
                    endpoint.close(0u32.into(), b"done");
                });
            })?;
        Ok(EchoServer {
            addr,
            fingerprint: identity.fingerprint,
            shutdown,
            thread: Some(thread),
            _certificate_dir: certificate_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(incoming: quinn::Incoming, reply: Bytes) {
    let Ok(connection) = incoming.await else {
        return;
    };
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let reply = reply.clone();
        tokio::task::spawn_local(async move {
            let mut header = [0u8; limits::FRAME_HEADER_BYTES];
            if recv.read_exact(&mut header).await.is_err() {
                return;
            }
            let Ok(len) = frame::payload_len(header, limits::REQUEST_BYTES_MAX) else {
                return;
            };
            let mut payload = vec![0u8; len];
            if recv.read_exact(&mut payload).await.is_err() {
                return;
            }
            // Like souk's server: note the FIN that came with the request,
            // so that dropping the stream sends no STOP_SENDING.
            let mut byte = [0u8; 1];
            let read = std::pin::pin!(recv.read(&mut byte));
            let _ = read.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            if send.write_chunk(reply).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}
