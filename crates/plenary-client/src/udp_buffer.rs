//! Receive buffers of media sockets.
//!
//! A media socket receives a steady stream of small datagrams (an SFU's
//! socket: every participant's RTP, RTCP, STUN and DTLS; a client's: every
//! remote track). The kernel's default buffer (`net.core.rmem_default`,
//! 208 KiB on Linux, about 270 small datagrams because each is charged
//! its full buffer size) holds less than 200 ms of that on a busy socket:
//! when the process is not scheduled for that long (a loaded machine, a
//! burst of signaling work) the kernel drops what arrives, including the
//! STUN checks and DTLS handshakes of participants still connecting.
//! Real-time media servers therefore ask for megabytes.

use tokio::net::UdpSocket;

/// Receive buffer an SFU's media socket asks for, in bytes.
pub const SERVER_RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Receive buffer a participant's media socket asks for, in bytes.
pub const CLIENT_RECV_BUFFER: usize = 2 * 1024 * 1024;

/// Asks the kernel for a receive buffer of `bytes` on `socket`; returns the
/// size it granted, in bytes (Linux caps a request at `net.core.rmem_max`
/// and reports twice the granted value, its bookkeeping overhead included).
///
/// # Errors
/// The `setsockopt`/`getsockopt` error; the socket stays usable with its
/// previous buffer.
pub fn enlarge_recv_buffer(socket: &UdpSocket, bytes: usize) -> std::io::Result<usize> {
    let sock = socket2::SockRef::from(socket);
    sock.set_recv_buffer_size(bytes)?;
    sock.recv_buffer_size()
}
