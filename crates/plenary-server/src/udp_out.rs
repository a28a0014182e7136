//! The media socket's send side: UDP datagrams the SFU produces in one
//! round of the media loop are queued and sent with `sendmmsg(2)` in
//! batches of up to [`MAX_BATCH`] (one syscall per batch instead of one
//! per datagram; a fan-out sends one packet to many subscribers, each at
//! its own address, so GSO does not apply).

use std::os::fd::AsRawFd;

use plenary_udp::{MAX_BATCH, Sender, SockaddrStorage};
use str0m::net::Transmit;
use tracing::debug;

/// Datagrams waiting for the next `sendmmsg`.
#[derive(Default)]
pub struct UdpOut {
    pending: Vec<Transmit>,
}

impl UdpOut {
    /// Queues `t`; sends the batch on `socket` once it is full.
    pub fn push(&mut self, socket: &impl AsRawFd, t: Transmit) {
        self.pending.push(t);
        if self.pending.len() >= MAX_BATCH {
            self.flush(socket);
        }
    }

    /// Sends everything queued. Datagrams the kernel refuses (full socket
    /// buffer, a peer gone) are dropped, as a lossy UDP send would.
    pub fn flush(&mut self, socket: &impl AsRawFd) {
        if self.pending.is_empty() {
            return;
        }
        for chunk in self.pending.chunks(MAX_BATCH) {
            let datagrams: [&[u8]; MAX_BATCH] = std::array::from_fn(|i| chunk.get(i).map_or(&[][..], |t| &t.contents));
            let addrs: [Option<SockaddrStorage>; MAX_BATCH] =
                std::array::from_fn(|i| chunk.get(i).map(|t| SockaddrStorage::from(t.destination)));
            // Created per batch: the headers hold raw pointers, which an
            // async task must not keep across an `.await`.
            let sent = Sender::new().send(socket.as_raw_fd(), &datagrams[..chunk.len()], &addrs[..chunk.len()]);
            if sent.dropped > 0 {
                debug!(dropped = sent.dropped, error = ?sent.last_error, "UDP send failed");
            }
        }
        self.pending.clear();
    }
}
