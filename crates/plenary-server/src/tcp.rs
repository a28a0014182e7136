//! ICE-TCP (RFC 6544) on the media port: passive TCP candidates. Each
//! accepted connection carries STUN/DTLS/RTP packets framed by a 16-bit
//! big-endian length (RFC 4571). Reader tasks hand frames to the media loop;
//! the loop writes replies back through per-connection queues.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

/// A connection silent for this long is closed.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    pub fn start(listener: TcpListener, advertised: SocketAddr) -> TcpMux {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(accept_loop(listener, advertised, tx));
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

async fn accept_loop(listener: TcpListener, advertised: SocketAddr, events: mpsc::Sender<TcpEvent>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (wtx, wrx) = mpsc::channel(MAX_QUEUED_FRAMES);
        if events.send(TcpEvent::Opened { remote, writer: wtx }).await.is_err() {
            return;
        }
        tokio::spawn(connection(stream, remote, advertised, events.clone(), wrx));
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
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
    let mut len_buf = [0u8; 2];
    loop {
        // ICE sends consent checks every few seconds; a silent peer is gone.
        match tokio::time::timeout(IDLE_TIMEOUT, rd.read_exact(&mut len_buf)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let len = usize::from(u16::from_be_bytes(len_buf));
        let mut data = vec![0u8; len];
        if rd.read_exact(&mut data).await.is_err() {
            break;
        }
        if events.send(TcpEvent::Frame { source: remote, local, data }).await.is_err() {
            break;
        }
    }
    writer.abort();
    let _ = events.send(TcpEvent::Closed(remote)).await;
}
