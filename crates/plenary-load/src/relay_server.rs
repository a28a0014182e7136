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
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{setsockopt, sockopt};
use plenary_udp::{MAX_BATCH, MsgFlags, Receiver, Sender, SockaddrIn};

use crate::relay_srtp::{MasterKey, SrtpSession, TAG_LEN};

/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 32;
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
/// The `recvmmsg` error that stopped it. Datagrams the kernel refuses to
/// send (a subscriber gone: ICMP port unreachable) are skipped.
pub fn run(socket: &UdpSocket, srtp: Option<MasterKey>) -> std::io::Result<()> {
    let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    let fd = socket.as_raw_fd();
    let mut inbound = srtp.map(|m| SrtpSession::new(&m.for_peer(0)));
    let mut subs: Vec<Subscriber> = Vec::new();
    let mut known: HashMap<SocketAddrV4, usize> = HashMap::new();

    // Allocated once; the loop below allocates nothing.
    let mut rx = Receiver::<SockaddrIn>::new(RECV_BATCH, MTU);
    let mut tx = Sender::<SockaddrIn>::new();
    // SRTP: one encrypted copy per datagram of a send batch.
    let mut tx_bufs = vec![[0u8; MTU + TAG_LEN]; if srtp.is_some() { MAX_BATCH } else { 0 }];

    loop {
        rx.recv(fd, MsgFlags::empty()).map_err(std::io::Error::from)?;
        for (from, buf) in rx.datagrams() {
            let Some(from) = from else { continue };
            if let Some(id) = parse_hello(buf) {
                let key = SocketAddrV4::from(from);
                if let std::collections::hash_map::Entry::Vacant(e) = known.entry(key) {
                    e.insert(subs.len());
                    subs.push(Subscriber { addr: from, srtp: srtp.map(|m| SrtpSession::new(&m.for_peer(id))) });
                }
                continue;
            }
            // RTP version 2 (RFC 7983: first byte 128..=191).
            if !(128..=191).contains(&buf.first().copied().unwrap_or(0)) {
                continue;
            }
            let len = buf.len();
            let plain_len = match &mut inbound {
                Some(ctx) => match ctx.unprotect_in_place(buf, len) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
                None => len,
            };
            let plain = &buf[..plain_len];
            for group in subs.chunks_mut(MAX_BATCH) {
                let mut addrs: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
                let mut lens = [0usize; MAX_BATCH];
                let mut n = 0;
                for sub in group.iter_mut() {
                    match (&mut sub.srtp, tx_bufs.get_mut(n)) {
                        (Some(ctx), Some(out)) => {
                            out[..plain_len].copy_from_slice(plain);
                            let Ok(l) = ctx.protect_in_place(&mut out[..], plain_len) else { continue };
                            lens[n] = l;
                        }
                        _ => lens[n] = plain_len,
                    }
                    addrs[n] = Some(sub.addr);
                    n += 1;
                }
                let datagrams: [&[u8]; MAX_BATCH] = std::array::from_fn(|i| match tx_bufs.get(i) {
                    Some(b) => &b[..lens[i]],
                    None => plain,
                });
                tx.send(fd, &datagrams[..n], &addrs[..n]);
            }
        }
    }
}

/// Binds the relay socket on `addr`.
///
/// # Errors
/// The bind error.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}
