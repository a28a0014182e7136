//! ICE-TCP (RFC 6544) on the media port: passive TCP candidates. Each
//! accepted connection carries STUN/DTLS/RTP packets framed by a 16-bit
//! big-endian length (RFC 4571). Reader tasks hand frames to the media loop;
//! the loop writes replies back through per-connection queues.
//!
//! Slow or greedy clients: the first frame must arrive within the first
//! frame timeout (ICE starts with a STUN binding request at once), every
//! later frame within [`IDLE_TIMEOUT`] (consent checks come every few
//! seconds), and one address may hold a limited number of connections;
//! more are closed at once (RFC 4571 framing has no way to say why).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

use crate::limits::{PerAddress, Slot};

/// A connection that sends no complete frame for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the ICE-TCP listener.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// Longest time until a connection's first complete frame.
    pub first_frame_timeout: Duration,
    /// Open connections per address.
    pub connections: Arc<PerAddress>,
}

/// Largest queued outgoing bytes per connection before frames are dropped.
const MAX_QUEUED_FRAMES: usize = 512;

/// Something that happened on an ICE-TCP connection.
#[derive(Debug)]
pub enum TcpEvent {
    /// One RFC 4571 frame arrived.
    Frame {
        /// Remote address.
        source: SocketAddr,
        /// Local address (the advertised candidate).
        local: SocketAddr,
        /// Frame contents.
        data: Vec<u8>,
    },
    /// A connection opened; frames to `remote` go to `writer`.
    Opened {
        /// Remote address.
        remote: SocketAddr,
        /// Outgoing frames.
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// A connection closed.
    Closed(SocketAddr),
}

/// The listener and the open connections.
pub struct TcpMux {
    events: mpsc::Receiver<TcpEvent>,
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

impl TcpMux {
    /// Starts accepting on `listener`; `advertised` is the candidate address.
    pub fn start(listener: TcpListener, advertised: SocketAddr, limits: TcpLimits) -> TcpMux {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(accept_loop(listener, advertised, limits, tx));
        TcpMux { events: rx, writers: HashMap::new() }
    }

    /// Next frame; bookkeeping events are handled inside.
    pub async fn next_event(&mut self) -> Option<TcpEvent> {
        loop {
            match self.events.recv().await? {
                TcpEvent::Opened { remote, writer } => {
                    self.writers.insert(remote, writer);
                }
                TcpEvent::Closed(remote) => {
                    self.writers.remove(&remote);
                }
                frame @ TcpEvent::Frame { .. } => return Some(frame),
            }
        }
    }

    /// Queues one frame to `destination`; dropped if the connection is gone
    /// or too far behind (media is loss tolerant).
    pub fn send(&mut self, destination: SocketAddr, data: &[u8]) {
        if let Some(w) = self.writers.get(&destination)
            && w.try_send(data.to_vec()).is_err()
        {
            debug!("ICE-TCP send queue full or closed; frame dropped");
        }
    }
}

async fn accept_loop(listener: TcpListener, advertised: SocketAddr, limits: TcpLimits, events: mpsc::Sender<TcpEvent>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Over the limit: dropping the stream closes it.
        let Ok(slot) = limits.connections.acquire(remote.ip()) else { continue };
        let _ = stream.set_nodelay(true);
        let (wtx, wrx) = mpsc::channel(MAX_QUEUED_FRAMES);
        if events.send(TcpEvent::Opened { remote, writer: wtx }).await.is_err() {
            return;
        }
        let first_frame = limits.first_frame_timeout;
        tokio::spawn(connection(stream, remote, advertised, first_frame, slot, events.clone(), wrx));
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    first_frame: Duration,
    slot: Slot,
    events: mpsc::Sender<TcpEvent>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else { continue };
            if wr.write_all(&len.to_be_bytes()).await.is_err() || wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut wait = first_frame;
    // A peer that sends no frame in time is gone or stalling.
    while let Ok(Ok(data)) = tokio::time::timeout(wait, read_frame(&mut rd)).await {
        wait = IDLE_TIMEOUT;
        if events.send(TcpEvent::Frame { source: remote, local, data }).await.is_err() {
            break;
        }
    }
    writer.abort();
    let _ = events.send(TcpEvent::Closed(remote)).await;
    drop(slot);
}

/// Reads one RFC 4571 frame (RFC 6544 §3): a 16-bit big-endian length,
/// then that many bytes (0 to 65,535; the allocation is at most that).
///
/// # Errors
/// The reader's, `UnexpectedEof` when the stream ends inside a frame.
pub async fn read_frame(rd: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    rd.read_exact(&mut len).await?;
    let mut data = vec![0u8; usize::from(u16::from_be_bytes(len))];
    rd.read_exact(&mut data).await?;
    Ok(data)
}
