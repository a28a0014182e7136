//! Batched UDP datagram I/O for Linux: `sendmmsg(2)` and `recvmmsg(2)`.
//!
//! One system call moves up to [`MAX_BATCH`] datagrams, each with its own
//! destination, so a fan-out (one packet to many subscribers, each at its
//! own address) pays the syscall entry once per batch instead of once per
//! datagram. The per-datagram kernel work (routing, socket buffer,
//! delivery) is unchanged. GSO (`UDP_SEGMENT`) is not used: it needs one
//! destination per call, which a fan-out does not have.
//!
//! Used by `plenary serve`'s media loop and by the relay baseline of
//! `plenary load`. Nothing here allocates per datagram.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MultiHeaders, recvmmsg, sendmmsg};
/// Address types and flags of the API, re-exported so users need no `nix` of their own.
pub use nix::sys::socket::{MsgFlags, SockaddrIn, SockaddrLike, SockaddrStorage};

/// Most datagrams one `sendmmsg` or `recvmmsg` call carries.
pub const MAX_BATCH: usize = 64;

/// What a [`Sender::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams dropped because the kernel refused them (for example
    /// `ECONNREFUSED` after an ICMP port unreachable from a peer that went
    /// away, or `EAGAIN` with a full socket buffer on a non-blocking
    /// socket); UDP may lose them anyway.
    pub dropped: usize,
    /// The last refusal, if any.
    pub last_error: Option<Errno>,
}

/// Sends batches of datagrams with `sendmmsg(2)`. Holds the message
/// headers, allocated once; `S` is the address type (`SockaddrIn` for
/// IPv4 only, `SockaddrStorage` for both families).
///
/// Not `Send` (the headers hold raw pointers): an async task creates one
/// between two `.await`s.
pub struct Sender<S: SockaddrLike + Copy> {
    headers: MultiHeaders<S>,
}

impl<S: SockaddrLike + Copy> Default for Sender<S> {
    fn default() -> Self {
        Sender::new()
    }
}

impl<S: SockaddrLike + Copy> Sender<S> {
    /// Headers for [`MAX_BATCH`] datagrams.
    pub fn new() -> Self {
        Sender { headers: MultiHeaders::preallocate(MAX_BATCH, None) }
    }

    /// Sends `datagrams[i]` to `addrs[i]` for every `i` (the shorter of
    /// the two slices decides how many), in calls of at most
    /// [`MAX_BATCH`]. A datagram the kernel refuses is dropped and the
    /// rest are still sent, so the call never loops forever and never
    /// fails as a whole.
    pub fn send(&mut self, fd: RawFd, datagrams: &[&[u8]], addrs: &[Option<S>]) -> Sent {
        let total = datagrams.len().min(addrs.len());
        let mut out = Sent::default();
        let mut done = 0;
        while done < total {
            let end = total.min(done + MAX_BATCH);
            let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] =
                std::array::from_fn(|i| [IoSlice::new(datagrams.get(done + i).copied().unwrap_or(&[]))]);
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            let res = sendmmsg(
                fd,
                &mut self.headers,
                &iovs[..end - done],
                &addrs[done..end],
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            );
            match res {
                Ok(r) => {
                    let n = r.count();
                    out.sent += n;
                    done += n;
                    if n == 0 {
                        // Nothing accepted and no error: drop one so the loop ends.
                        out.dropped += 1;
                        done += 1;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The first datagram of this call was refused: skip it.
                    out.dropped += 1;
                    out.last_error = Some(e);
                    done += 1;
                }
            }
        }
        out
    }
}

/// Receives batches of datagrams with `recvmmsg(2)` into buffers it owns
/// (allocated once).
pub struct Receiver<S: SockaddrLike> {
    headers: MultiHeaders<S>,
    bufs: Vec<Vec<u8>>,
    meta: Vec<(usize, Option<S>)>,
    received: usize,
}

impl<S: SockaddrLike + Copy> Receiver<S> {
    /// Room for `batch` datagrams (at most [`MAX_BATCH`]) of up to `mtu`
    /// bytes each; longer datagrams are truncated to `mtu`.
    pub fn new(batch: usize, mtu: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        Receiver {
            headers: MultiHeaders::preallocate(batch, None),
            bufs: vec![vec![0; mtu]; batch],
            meta: vec![(0, None); batch],
            received: 0,
        }
    }

    /// Reads up to the batch size of datagrams: blocks for the first
    /// unless `flags` has `MSG_DONTWAIT`, then takes what is queued
    /// (`MSG_WAITFORONE` is added). Returns how many arrived.
    ///
    /// # Errors
    /// The `recvmmsg` error (`EAGAIN` when non-blocking and nothing is queued).
    pub fn recv(&mut self, fd: RawFd, flags: MsgFlags) -> Result<usize, Errno> {
        self.received = 0;
        let batch = self.bufs.len();
        let mut bufs = self.bufs.iter_mut();
        let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(bufs.next().map_or(&mut [][..], |b| &mut b[..]))]);
        let res = recvmmsg(fd, &mut self.headers, iovs[..batch].iter_mut(), flags | MsgFlags::MSG_WAITFORONE, None)?;
        for (meta, msg) in self.meta.iter_mut().zip(res) {
            *meta = (msg.bytes, msg.address);
            self.received += 1;
        }
        Ok(self.received)
    }

    /// The datagrams of the last [`Receiver::recv`]: source (when the
    /// kernel gave one) and a mutable view of the bytes (for in-place
    /// decryption).
    pub fn datagrams(&mut self) -> impl Iterator<Item = (Option<S>, &mut [u8])> + '_ {
        self.bufs.iter_mut().zip(&self.meta).take(self.received).map(|(buf, &(len, from))| {
            let len = len.min(buf.len());
            (from, &mut buf[..len])
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (UdpSocket, Vec<UdpSocket>) {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let rx = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind")).collect();
        (tx, rx)
    }

    #[test]
    fn fan_out_reaches_every_destination_in_order_and_more_than_one_batch() {
        let (tx, rx) = pair();
        // 150 datagrams: three calls of at most 64.
        let payloads: Vec<Vec<u8>> = (0..150u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let datagrams: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let addrs: Vec<Option<SockaddrStorage>> =
            (0..150).map(|i| Some(SockaddrStorage::from(rx[i % 3].local_addr().expect("addr")))).collect();
        let sent = Sender::new().send(tx.as_raw_fd(), &datagrams, &addrs);
        assert_eq!(sent, Sent { sent: 150, dropped: 0, last_error: None });
        for (r, sock) in rx.iter().enumerate() {
            let mut recv = Receiver::<SockaddrStorage>::new(MAX_BATCH, 64);
            let mut got = Vec::new();
            while got.len() < 50 {
                let n = recv.recv(sock.as_raw_fd(), MsgFlags::empty()).expect("recv");
                assert!(n > 0);
                for (from, d) in recv.datagrams() {
                    assert_eq!(
                        from.and_then(|f| f.as_sockaddr_in().map(|a| a.port())),
                        Some(tx.local_addr().expect("addr").port())
                    );
                    got.push(u32::from_be_bytes(d.try_into().expect("4 bytes")));
                }
            }
            let want: Vec<u32> = (0..150u32).filter(|i| *i as usize % 3 == r).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_refused_datagram_is_dropped_and_the_rest_still_go() {
        let (tx, rx) = pair();
        let payload = [7u8; 10];
        // An IPv6 destination on an IPv4 socket: the kernel refuses it at once.
        let v6: std::net::SocketAddr = "[::1]:9".parse().expect("addr");
        let live = rx[0].local_addr().expect("addr");
        let addrs: Vec<Option<SockaddrStorage>> =
            vec![Some(v6.into()), Some(live.into()), Some(v6.into()), Some(live.into())];
        let datagrams = [&payload[..]; 4];
        let s = Sender::new().send(tx.as_raw_fd(), &datagrams, &addrs);
        assert_eq!((s.sent, s.dropped), (2, 2), "{s:?}");
        assert!(s.last_error.is_some());
        let mut recv = Receiver::<SockaddrStorage>::new(8, 64);
        let mut got = 0;
        while got < 2 {
            got += recv.recv(rx[0].as_raw_fd(), MsgFlags::empty()).expect("recv");
        }
        assert_eq!(got, 2);
    }

    #[test]
    fn non_blocking_receive_with_nothing_queued_is_eagain_and_long_datagrams_truncate() {
        let (tx, rx) = pair();
        let mut recv = Receiver::<SockaddrStorage>::new(4, 8);
        assert_eq!(recv.recv(rx[0].as_raw_fd(), MsgFlags::MSG_DONTWAIT), Err(Errno::EAGAIN));
        tx.send_to(&[1u8; 20], rx[0].local_addr().expect("addr")).expect("send");
        assert_eq!(recv.recv(rx[0].as_raw_fd(), MsgFlags::empty()), Ok(1));
        let lens: Vec<usize> = recv.datagrams().map(|(_, d)| d.len()).collect();
        assert_eq!(lens, vec![8]);
    }
}
