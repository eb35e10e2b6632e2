//! Connection migration across shards.
//!
//! The kernel picks a shard's socket by the packet's address 4-tuple. When a
//! phone moves from Wi-Fi to cellular its address changes, so its packets
//! may arrive at another shard's socket, whose QUIC endpoint does not know
//! the connection. `ShardSocket` wraps each shard's socket: for every
//! short-header packet it reads the destination connection id, which names
//! the owner shard (`cid`), and hands packets for another shard to that
//! shard over a bounded queue. The owner's endpoint receives them as if they
//! had arrived on its own socket, with the sender's new address, validates
//! the new path and answers from its own socket on the same port.
//!
//! A full queue drops the packet, as a full UDP buffer would; QUIC's loss
//! recovery resends it.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

use super::cid::{CID_BYTES, CidKey};
use crate::shard::ShardId;
use crate::stats::Stats;

/// Packets waiting to be read by one shard after another shard forwarded
/// them: a burst of a migrating connection's packets fits; a shard that
/// falls this far behind loses the excess like a full socket buffer would.
pub const FORWARD_QUEUE_MAX: usize = 1024;

/// One datagram on its way to its owner shard.
#[derive(Debug)]
pub struct Datagram {
    bytes: Box<[u8]>,
    meta: RecvMeta,
}

pub type ForwardQueue = mpsc::Receiver<Datagram>;

/// Every shard's forwarding queue: the senders shared by all, and each
/// shard's receiver.
pub fn queues(shard_count: usize) -> (Arc<[mpsc::Sender<Datagram>]>, Vec<ForwardQueue>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| mpsc::channel(FORWARD_QUEUE_MAX))
        .unzip();
    (senders.into(), receivers)
}

/// A shard's UDP socket, forwarding other shards' packets to them and
/// receiving the packets they forward.
pub struct ShardSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    me: ShardId,
    key: CidKey,
    peers: Arc<[mpsc::Sender<Datagram>]>,
    /// Only the shard's endpoint driver polls it; the mutex satisfies the
    /// trait's `Sync` and is never contended.
    forwarded: Mutex<ForwardQueue>,
    stats: Arc<Stats>,
}

impl fmt::Debug for ShardSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardSocket")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl ShardSocket {
    pub fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        me: ShardId,
        key: CidKey,
        peers: Arc<[mpsc::Sender<Datagram>]>,
        forwarded: ForwardQueue,
        stats: Arc<Stats>,
    ) -> ShardSocket {
        ShardSocket {
            inner,
            me,
            key,
            peers,
            forwarded: Mutex::new(forwarded),
            stats,
        }
    }

    /// The shard that owns the connection a packet belongs to, when that is
    /// another shard. Long-header packets (handshakes) never migrate.
    fn foreign_owner(&self, packet: &[u8]) -> Option<ShardId> {
        let first = *packet.first()?;
        if first & 0x80 != 0 || packet.len() < 1 + CID_BYTES {
            return None;
        }
        let owner = self.key.shard_of(&packet[1..1 + CID_BYTES])?;
        (owner != self.me && owner.index() < self.peers.len()).then_some(owner)
    }

    /// Sends a received buffer on to its owner if it is not ours; the buffer
    /// is then emptied (`len = 0`) so that the local endpoint skips it. A
    /// GRO buffer holds datagrams of one flow, so the first decides for all.
    fn route(&self, buffer: &[u8], meta: &mut RecvMeta) {
        let Some(owner) = self.foreign_owner(buffer) else {
            return;
        };
        let stats = self.stats.shard(self.me);
        for segment in buffer.chunks(meta.stride.max(1)) {
            let datagram = Datagram {
                bytes: segment.into(),
                meta: RecvMeta {
                    len: segment.len(),
                    stride: segment.len(),
                    ..*meta
                },
            };
            match self.peers[owner.index()].try_send(datagram) {
                Ok(()) => stats.datagrams_forwarded.increment(),
                Err(_) => stats.datagrams_forward_dropped.increment(),
            }
        }
        meta.len = 0;
    }

    /// Hands out datagrams other shards forwarded here, if any are waiting.
    fn poll_forwarded(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> usize {
        let mut queue = self
            .forwarded
            .lock()
            .expect("never poisoned: no panics while held");
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let Poll::Ready(Some(datagram)) = queue.poll_recv(cx) else {
                break;
            };
            let len = datagram.bytes.len();
            if len > bufs[filled].len() {
                continue;
            }
            bufs[filled][..len].copy_from_slice(&datagram.bytes);
            meta[filled] = datagram.meta;
            filled += 1;
        }
        filled
    }
}

impl AsyncUdpSocket for ShardSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // Checking the queue first also registers this task to be woken when
        // another shard forwards a packet while the socket is idle.
        let forwarded = self.poll_forwarded(cx, bufs, meta);
        if forwarded > 0 {
            return Poll::Ready(Ok(forwarded));
        }
        let received = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        if self.peers.len() > 1 {
            for (buffer, meta) in bufs.iter().zip(meta.iter_mut()).take(received) {
                self.route(&buffer[..meta.len], meta);
            }
        }
        Poll::Ready(Ok(received))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
