//! Kernel receive timestamps for the receivers' sockets (`SO_TIMESTAMPNS`,
//! socket(7)): latency is taken when a datagram reached the receiver's
//! socket, not when the harness got round to reading it.
//!
//! Hundreds of receivers share the generator's one core. A fan-out
//! reaches them within a millisecond or two, and each then waits its turn
//! on that core: measured at read time, the UDP relay's audio showed
//! 4 ms at p50 with 400 receivers, growing with the receivers and with
//! the video they were busy reading, all of it the harness's own queue.
//! The kernel's stamp leaves only what the target and the network path
//! add, which is what forwarding latency means.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::cmsg_space;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to stamp each datagram `socket` receives.
///
/// # Errors
/// The `setsockopt(2)` error (the socket then gives read times instead).
pub fn enable(socket: &UdpSocket) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// One datagram already queued on `socket`, without waiting: its length,
/// source and the instant it reached the socket (the read time when the
/// kernel gave no stamp).
///
/// # Errors
/// `WouldBlock` when nothing is queued; other receive errors as is.
pub fn try_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    socket.try_io(Interest::READABLE, || {
        let mut cmsg = cmsg_space!(TimeSpec);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
            .map_err(io::Error::from)?;
        let source = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6))))
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a source address"))?;
        let stamp = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                _ => None,
            })
        });
        Ok((msg.bytes, source, stamp.map_or_else(Instant::now, arrival)))
    })
}

/// [`try_recv`], waiting until a datagram is queued.
///
/// # Errors
/// Receive errors other than `WouldBlock`.
pub async fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    loop {
        socket.readable().await?;
        match try_recv(socket, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// The monotonic instant of a `CLOCK_REALTIME` stamp: now, less the
/// stamp's age on the wall clock.
fn arrival(ts: TimeSpec) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec())) else { return now };
    let stamped = UNIX_EPOCH + Duration::new(secs, nanos);
    let age = wall.duration_since(stamped).unwrap_or(Duration::ZERO);
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stamps_when_the_datagram_arrived_not_when_it_was_read() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        enable(&rx).expect("SO_TIMESTAMPNS");
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut buf = [0u8; 64];
        // The kernel turns receive timestamping on shortly after the first
        // socket asks (a deferred static key): a datagram that arrives
        // before then is stamped when read. So try a few times.
        let mut gaps = Vec::new();
        for _ in 0..20 {
            let sent = Instant::now();
            tx.send_to(b"hello", rx.local_addr().expect("addr")).await.expect("send");
            // Read it well after it arrived.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let (n, from, at) = recv(&rx, &mut buf).await.expect("recv");
            let read = Instant::now();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, tx.local_addr().expect("addr"));
            assert!(at + Duration::from_millis(5) >= sent, "stamp before the send");
            gaps.push(read - at);
            if read - at >= Duration::from_millis(20) {
                assert!(matches!(try_recv(&rx, &mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock));
                return;
            }
        }
        panic!("every datagram stamped at read time, not arrival: {gaps:?}");
    }
}
