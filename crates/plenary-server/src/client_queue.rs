//! The queue of messages from the media loop to one signaling connection,
//! bounded in messages ([`CLIENT_QUEUE`]) and in bytes of MLS envelopes
//! ([`CLIENT_QUEUE_BYTES`]).
//!
//! A bound in messages alone let a connection that does not read hold
//! [`CLIENT_QUEUE`] envelopes of up to a MiB each (`MAX_CLIENT_MESSAGE_BYTES`):
//! a member sending large application messages to a room with a few
//! connections that never read grew the server by about 200 MiB per such
//! connection within seconds (each recipient's queue holds its own copy),
//! up to a GiB each. Envelopes are the only large messages the loop relays
//! from one client to others, so they are what the byte bound counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plenary_proto::ServerMsg;
use tokio::sync::mpsc;

/// Most messages queued for one connection. A client that does not read
/// its WebSocket is disconnected when its queue is full, so no connection
/// can make the server hold unbounded memory.
pub const CLIENT_QUEUE: usize = 1024;

/// Most bytes of MLS envelopes (base64url text) queued for one connection;
/// more and it is treated as not reading, like a full [`CLIENT_QUEUE`].
/// Eight of the largest messages a client may send.
pub const CLIENT_QUEUE_BYTES: usize = 8 * plenary_proto::MAX_CLIENT_MESSAGE_BYTES;

/// What a WebSocket connection receives from the media loop.
#[derive(Debug)]
pub enum ToClient {
    /// A signaling message. Boxed: the queue stores its messages inline in
    /// blocks of 32, and every connection keeps one or two blocks for good,
    /// so the slot size is paid per participant (a `ServerMsg` is about
    /// 90 bytes, 5 KiB per connection; a box is 8).
    Msg(Box<ServerMsg>),
    /// The participant's media session died; close the connection.
    Close,
}

/// Bytes of `msg` counted against [`CLIENT_QUEUE_BYTES`]: its envelopes'.
fn weight(msg: &ToClient) -> usize {
    match msg {
        ToClient::Msg(m) => match m.as_ref() {
            ServerMsg::Mls { envelope, .. } => envelope.len(),
            _ => 0,
        },
        ToClient::Close => 0,
    }
}

/// The message did not fit: the queue is full in messages or bytes, or
/// the connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// [`CLIENT_QUEUE`] messages or [`CLIENT_QUEUE_BYTES`] bytes queued.
    #[error("the connection's queue is full")]
    Full,
    /// The connection closed.
    #[error("the connection is closed")]
    Closed,
}

/// Where a connection's messages go (cheap to clone).
#[derive(Debug, Clone)]
pub struct ClientTx {
    tx: mpsc::Sender<ToClient>,
    queued_bytes: Arc<AtomicUsize>,
}

/// The connection's end of its queue.
#[derive(Debug)]
pub struct ClientRx {
    rx: mpsc::Receiver<ToClient>,
    queued_bytes: Arc<AtomicUsize>,
}

/// A new, empty queue.
pub fn client_queue() -> (ClientTx, ClientRx) {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (ClientTx { tx, queued_bytes: Arc::clone(&queued_bytes) }, ClientRx { rx, queued_bytes })
}

impl ClientTx {
    /// Queues `msg` without waiting.
    ///
    /// # Errors
    /// [`QueueError::Full`] when [`CLIENT_QUEUE`] messages or, with this one,
    /// more than [`CLIENT_QUEUE_BYTES`] envelope bytes would be queued;
    /// [`QueueError::Closed`] when the connection is gone.
    pub fn try_send(&self, msg: ToClient) -> Result<(), QueueError> {
        let w = weight(&msg);
        let before = self.queued_bytes.fetch_add(w, Ordering::Relaxed);
        let result = if before + w > CLIENT_QUEUE_BYTES {
            Err(QueueError::Full)
        } else {
            self.tx.try_send(msg).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            })
        };
        if result.is_err() {
            self.queued_bytes.fetch_sub(w, Ordering::Relaxed);
        }
        result
    }
}

impl ClientRx {
    /// The next message, `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<ToClient> {
        let msg = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(weight(&msg), Ordering::Relaxed);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plenary_proto::ParticipantId;

    fn envelope(len: usize) -> ToClient {
        ToClient::Msg(Box::new(ServerMsg::Mls { from: ParticipantId(1), envelope: "A".repeat(len) }))
    }

    #[tokio::test]
    async fn large_envelopes_fill_the_queue_by_bytes_and_reading_frees_them() {
        let (tx, mut rx) = client_queue();
        let big = plenary_proto::MAX_CLIENT_MESSAGE_BYTES;
        for _ in 0..CLIENT_QUEUE_BYTES / big {
            assert_eq!(tx.try_send(envelope(big)), Ok(()));
        }
        // Far fewer than CLIENT_QUEUE messages, but the bytes are used up.
        assert_eq!(tx.try_send(envelope(big)), Err(QueueError::Full));
        // Small messages that carry no envelope still fit.
        assert_eq!(tx.try_send(ToClient::Msg(Box::new(ServerMsg::Pong { id: 1 }))), Ok(()));
        // Reading one envelope makes room for exactly one more.
        assert!(matches!(rx.recv().await, Some(ToClient::Msg(_))));
        assert_eq!(tx.try_send(envelope(big)), Ok(()));
        assert_eq!(tx.try_send(envelope(1)), Err(QueueError::Full));
    }

    #[tokio::test]
    async fn the_message_count_still_bounds_small_messages() {
        let (tx, rx) = client_queue();
        for _ in 0..CLIENT_QUEUE {
            assert_eq!(tx.try_send(envelope(10)), Ok(()));
        }
        assert_eq!(tx.try_send(envelope(10)), Err(QueueError::Full));
        drop(rx);
        assert_eq!(tx.try_send(ToClient::Close), Err(QueueError::Closed));
    }
}
