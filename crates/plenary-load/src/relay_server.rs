//! The relay baseline's forwarding loop (the `plenary-relay` binary): one
//! UDP socket; every RTP datagram received is sent to every subscriber
//! address, with `recvmmsg`/`sendmmsg` batches and no allocation per
//! packet. A subscriber registers by sending a hello datagram
//! ([`hello`]). With SRTP, each packet is decrypted once with the
//! publishers' context and encrypted once per subscriber with that
//! subscriber's context (AEAD_AES_128_GCM, RFC 7714), as an SFU does.
//!
//! This is the machine's forwarding limit: no ICE, no DTLS, no RTCP, no
//! congestion control, no header rewriting.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg, setsockopt, sockopt};

use crate::relay_srtp::{MasterKey, SrtpSession, TAG_LEN};

/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Datagrams written per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Largest datagram handled, bytes.
const MTU: usize = 1500;
/// Socket buffer sizes asked for, bytes.
const SOCKET_BUFFER: usize = 8 << 20;

/// Magic that starts a subscriber's hello datagram.
pub const HELLO_MAGIC: &[u8; 4] = b"PLRH";

/// A subscriber's hello: [`HELLO_MAGIC`] then its peer id (big-endian
/// u32, ≥ 1; its SRTP master key is `MasterKey::for_peer(id)`).
pub fn hello(id: u32) -> Vec<u8> {
    let mut h = HELLO_MAGIC.to_vec();
    h.extend_from_slice(&id.to_be_bytes());
    h
}

fn parse_hello(d: &[u8]) -> Option<u32> {
    let rest = d.strip_prefix(HELLO_MAGIC)?;
    Some(u32::from_be_bytes(rest.try_into().ok()?))
}

struct Subscriber {
    addr: SockaddrIn,
    srtp: Option<SrtpSession>,
}

/// Runs the relay on `socket` until an I/O error; `srtp` is the run's
/// master key for the SRTP variant (publishers use `for_peer(0)`).
///
/// # Errors
/// The `recvmmsg`/`sendmmsg` error that stopped it.
pub fn run(socket: &UdpSocket, srtp: Option<MasterKey>) -> std::io::Result<()> {
    let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    let fd = socket.as_raw_fd();
    let mut inbound = srtp.map(|m| SrtpSession::new(&m.for_peer(0)));
    let mut subs: Vec<Subscriber> = Vec::new();
    let mut known: HashMap<SocketAddrV4, usize> = HashMap::new();

    // Allocated once; the loop below allocates nothing.
    let mut rx_bufs = vec![[0u8; MTU]; RECV_BATCH];
    let mut rx_meta: [(usize, Option<SockaddrIn>); RECV_BATCH] = [(0, None); RECV_BATCH];
    let mut rx_headers = MultiHeaders::<SockaddrIn>::preallocate(RECV_BATCH, None);
    let mut tx_headers = MultiHeaders::<SockaddrIn>::preallocate(SEND_BATCH, None);
    // SRTP: one encrypted copy per queued datagram.
    let mut tx_bufs = vec![[0u8; MTU + TAG_LEN]; if srtp.is_some() { SEND_BATCH } else { 0 }];

    loop {
        let received = {
            let mut bufs = rx_bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().map_or(&mut [][..], |b| &mut b[..]))]);
            let res = recvmmsg(fd, &mut rx_headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)
                .map_err(std::io::Error::from)?;
            let mut n = 0;
            for (meta, msg) in rx_meta.iter_mut().zip(res) {
                *meta = (msg.bytes, msg.address);
                n += 1;
            }
            n
        };
        let mut queue = SendQueue::new();
        for (buf, &(len, from)) in rx_bufs.iter_mut().zip(&rx_meta).take(received) {
            let Some(from) = from else { continue };
            let data = &buf[..len.min(MTU)];
            if let Some(id) = parse_hello(data) {
                let key = SocketAddrV4::from(from);
                if let std::collections::hash_map::Entry::Vacant(e) = known.entry(key) {
                    e.insert(subs.len());
                    subs.push(Subscriber { addr: from, srtp: srtp.map(|m| SrtpSession::new(&m.for_peer(id))) });
                }
                continue;
            }
            // RTP version 2 (RFC 7983: first byte 128..=191).
            if !(128..=191).contains(&data.first().copied().unwrap_or(0)) {
                continue;
            }
            let plain_len = match &mut inbound {
                Some(ctx) => match ctx.unprotect_in_place(&mut buf[..], len) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
                None => len,
            };
            let plain = &buf[..plain_len];
            for sub in subs.iter_mut() {
                match (&mut sub.srtp, tx_bufs.get_mut(queue.len)) {
                    (Some(ctx), Some(out)) => {
                        out[..plain_len].copy_from_slice(plain);
                        let Ok(n) = ctx.protect_in_place(&mut out[..], plain_len) else { continue };
                        queue.push_len(n, sub.addr);
                    }
                    _ => queue.push_ref(plain, sub.addr),
                }
                if queue.len == SEND_BATCH {
                    queue.flush(fd, &mut tx_headers, &tx_bufs)?;
                }
            }
            // Plain packets borrow `buf`: send them before it is reused.
            queue.flush(fd, &mut tx_headers, &tx_bufs)?;
        }
    }
}

/// Datagrams waiting for one `sendmmsg`: either slices of a received
/// buffer (plain relay) or the first lengths of the encrypted buffers.
struct SendQueue<'a> {
    len: usize,
    refs: [&'a [u8]; SEND_BATCH],
    lens: [usize; SEND_BATCH],
    addrs: [Option<SockaddrIn>; SEND_BATCH],
    encrypted: bool,
}

impl<'a> SendQueue<'a> {
    fn new() -> SendQueue<'a> {
        SendQueue {
            len: 0,
            refs: [&[]; SEND_BATCH],
            lens: [0; SEND_BATCH],
            addrs: [None; SEND_BATCH],
            encrypted: false,
        }
    }

    fn push_ref(&mut self, data: &'a [u8], to: SockaddrIn) {
        self.refs[self.len] = data;
        self.addrs[self.len] = Some(to);
        self.len += 1;
    }

    fn push_len(&mut self, len: usize, to: SockaddrIn) {
        self.encrypted = true;
        self.lens[self.len] = len;
        self.addrs[self.len] = Some(to);
        self.len += 1;
    }

    /// Sends everything queued (looping on partial sends) and empties
    /// the queue.
    fn flush(
        &mut self,
        fd: i32,
        headers: &mut MultiHeaders<SockaddrIn>,
        tx_bufs: &[[u8; MTU + TAG_LEN]],
    ) -> std::io::Result<()> {
        let mut sent = 0;
        while sent < self.len {
            let iovs: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|i| {
                let data: &[u8] =
                    if self.encrypted { tx_bufs.get(i).map_or(&[][..], |b| &b[..self.lens[i]]) } else { self.refs[i] };
                [IoSlice::new(data)]
            });
            let n = {
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                let res = sendmmsg(
                    fd,
                    headers,
                    &iovs[sent..self.len],
                    &self.addrs[sent..self.len],
                    no_cmsgs,
                    MsgFlags::empty(),
                );
                match res {
                    Ok(r) => r.count(),
                    // A subscriber gone (ICMP port unreachable): skip it.
                    Err(nix::errno::Errno::ECONNREFUSED) => 1,
                    Err(e) => return Err(e.into()),
                }
            };
            sent += n.max(1);
        }
        self.len = 0;
        self.encrypted = false;
        Ok(())
    }
}

/// Binds the relay socket on `addr`.
///
/// # Errors
/// The bind error.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}
