//! The signaling WebSocket transport (RFC 6455): the opening handshake on
//! an HTTP/1.1 upgrade, the socket's buffer sizes, and outgoing text
//! messages split into fragments.
//!
//! Why not axum's `WebSocket`: tungstenite keeps its write buffer at the
//! capacity of the largest frame it ever wrote, for the life of the
//! connection. A signaling connection's largest message is its `joined`,
//! which lists every other participant of the room, so with whole-message
//! frames each participant kept a buffer that grew with the room size:
//! about 70 bytes per other participant with empty profiles, 42 KB for the
//! 600th of an idle room of 600 (BENCHMARKS.md, idle subscribers), and a
//! big MLS Welcome or commit did the same. Sending large messages as
//! fragments of at most [`FRAGMENT_BYTES`] (RFC 6455 §5.4; every browser
//! and tungstenite reassemble them) bounds that buffer instead; axum's
//! `Message` cannot express a fragment, so this module speaks to
//! tokio-tungstenite directly.
//!
//! The socket also enforces how large a message may be while its
//! connection has not joined a room ([`MessageLimit`]): tungstenite's own
//! limit is fixed when the socket is made, so a smaller one until `join`
//! is enforced below it, on the bytes read from the connection.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error, Message, handshake::derive_accept_key};
use tracing::debug;

/// A server-side signaling WebSocket (over an upgraded HTTP connection,
/// unless `I` says otherwise).
pub type Socket<I = TokioIo<Upgraded>> = WebSocketStream<LimitedIo<I>>;

/// Largest payload of one outgoing frame, bytes. A message up to this size
/// goes out as one frame, a larger one as several (a `joined` of a room of
/// 600 in 21). The connection's write buffer stays below about twice this.
pub const FRAGMENT_BYTES: usize = 2 * 1024;

/// Initial read buffer of one signaling WebSocket, bytes. tungstenite's
/// default (128 KiB) is zero-filled on the first read, so it was resident
/// memory for every connected participant, more than the rest of an idle
/// participant together (BENCHMARKS.md, idle subscribers). Signaling
/// messages are small (an SDP offer is 1 to 6 KiB); tungstenite grows the
/// buffer to the length a frame header announces, so a larger frame (an
/// MLS commit of a big group) still arrives whole.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Why a request to `/ws` is not a WebSocket opening handshake
/// (RFC 6455 §4.2.1). Answered with `400 Bad Request`, or `426 Upgrade
/// Required` and the supported version for a wrong version (§4.4).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The method is not GET.
    #[error("a WebSocket handshake is a GET request")]
    NotGet,
    /// `Connection` does not contain `upgrade`.
    #[error("the Connection header must contain \"upgrade\"")]
    NoConnectionUpgrade,
    /// `Upgrade` is not `websocket`.
    #[error("the Upgrade header must be \"websocket\"")]
    NotWebSocket,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("only WebSocket version 13 is supported")]
    Version,
    /// `Sec-WebSocket-Key` is missing.
    #[error("the Sec-WebSocket-Key header is missing")]
    NoKey,
    /// `Sec-WebSocket-Key` is repeated, or is not the base64 of 16 bytes
    /// (RFC 6455 §4.1 item 7, §4.2.1 item 5).
    #[error("the Sec-WebSocket-Key header must be one base64-encoded 16-byte value")]
    BadKey,
    /// The HTTP connection cannot be upgraded (not HTTP/1.1 with upgrades).
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for UpgradeError {
    fn into_response(self) -> Response {
        match self {
            UpgradeError::Version => {
                (StatusCode::UPGRADE_REQUIRED, [(header::SEC_WEBSOCKET_VERSION, "13")], self.to_string())
                    .into_response()
            }
            _ => (StatusCode::BAD_REQUEST, self.to_string()).into_response(),
        }
    }
}

/// A valid opening handshake, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = UpgradeError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(UpgradeError::NotGet);
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(UpgradeError::NoConnectionUpgrade);
        }
        if !header_is(&parts.headers, header::UPGRADE, "websocket") {
            return Err(UpgradeError::NotWebSocket);
        }
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(UpgradeError::Version);
        }
        let mut keys = parts.headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = keys.next().ok_or(UpgradeError::NoKey)?.clone();
        if keys.next().is_some() || !is_nonce(&key) {
            return Err(UpgradeError::BadKey);
        }
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(UpgradeError::NotUpgradable)?;
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and runs `session` on the socket
    /// once hyper hands the connection over. Incoming messages and frames
    /// are limited to `max_message` bytes, and to `first_limit` bytes each
    /// until the session lifts that with [`MessageLimit::lift`]; the bytes
    /// of unfinished messages are also counted in `unfinished`, which may
    /// not pass its budgets.
    pub fn accept<F, Fut>(
        self,
        max_message: usize,
        first_limit: usize,
        unfinished: UnfinishedBudget,
        session: F,
    ) -> Response
    where
        F: FnOnce(Socket, MessageLimit) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Base64 (RFC 6455 §4.2.2), always a valid header value.
        let Ok(accept) = HeaderValue::try_from(derive_accept_key(self.key.as_bytes())) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let (socket, limit) = socket(TokioIo::new(upgraded), max_message, first_limit, unfinished).await;
                    session(socket, limit).await;
                }
                Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response()
    }
}

/// The server side of a WebSocket on `io` once the opening handshake is
/// done, configured as [`Upgrade::accept`] says (`max_message`,
/// `first_limit` and `unfinished` as there), and the limit of its messages.
pub async fn socket<I>(
    io: I,
    max_message: usize,
    first_limit: usize,
    unfinished: UnfinishedBudget,
) -> (Socket<I>, MessageLimit)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Every frame is written out at once (under backpressure only
        // the one waiting stays buffered).
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let limit = MessageLimit(Arc::new(LimitState {
        max: AtomicUsize::new(first_limit),
        read: AtomicUsize::new(0),
        unfinished,
    }));
    let io = LimitedIo { io, limit: limit.0.clone() };
    (WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await, limit)
}

/// Bytes of unfinished incoming messages the server holds, counted per
/// client address (`address`, shared by that address's connections, from
/// [`crate::limits::Slot::held_bytes`]) and over all connections
/// (`server`); neither may pass its budget.
#[derive(Debug, Clone)]
pub struct UnfinishedBudget {
    /// Bytes the client's address holds now.
    pub address: Arc<AtomicUsize>,
    /// Most bytes one address may hold at once.
    pub per_address: usize,
    /// Bytes all connections hold now.
    pub server: Arc<AtomicUsize>,
    /// Most bytes all connections may hold at once.
    pub per_server: usize,
}

/// Why the socket's reader stopped taking a message: the error it returns
/// (inside an `io::Error` of kind `InvalidData`) once the bytes read since
/// the last whole message pass the connection's [`MessageLimit`], or the
/// unfinished messages of the client's address or of all clients pass
/// their [`UnfinishedBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// One message larger than the limit.
    #[error("a message of more than {max} bytes")]
    Message {
        /// The limit, bytes.
        max: usize,
    },
    /// The address's connections together hold more unfinished messages.
    #[error("more than {budget} bytes of unfinished messages from one address")]
    Address {
        /// The budget, bytes.
        budget: usize,
    },
    /// All connections together hold more unfinished messages.
    #[error("the server holds more than {budget} bytes of unfinished messages; retry later")]
    Server {
        /// The budget, bytes.
        budget: usize,
    },
}

/// Whether `e` (from reading the socket) says a message was too large:
/// over tungstenite's limit, the [`MessageLimit`] or the [`UnfinishedBudget`].
pub fn too_large(e: &Error) -> Option<OverLimit> {
    match e {
        Error::Capacity(CapacityError::MessageTooLong { max_size, .. }) => Some(OverLimit::Message { max: *max_size }),
        Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<OverLimit>()).copied(),
        _ => None,
    }
}

struct LimitState {
    /// Bytes a message may take, `usize::MAX` once lifted.
    max: AtomicUsize,
    /// Bytes read since the last whole message (also counted in `unfinished`).
    read: AtomicUsize,
    unfinished: UnfinishedBudget,
}

impl LimitState {
    /// The bytes read since the last whole message are no longer held.
    fn release(&self) {
        let read = self.read.swap(0, Ordering::Relaxed);
        self.unfinished.address.fetch_sub(read, Ordering::Relaxed);
        self.unfinished.server.fetch_sub(read, Ordering::Relaxed);
    }
}

/// The per-message limit of one connection until it is lifted, shared
/// between the session and its socket's reader. The reader counts the
/// bytes it takes from the connection; the session calls
/// [`MessageLimit::message_done`] after each data message it receives (not
/// after a ping or pong, which may come between the fragments of one, so
/// the bytes of pings and pongs count too). Once the count passes the limit, the reader takes no more bytes and fails with
/// [`OverLimit`], so a larger message is refused after at most `max` bytes
/// of it were read, however large its frame header says it is. The count
/// may include the start of the next message read along with a message
/// (at most a read buffer, 4 KiB).
#[derive(Clone)]
pub struct MessageLimit(Arc<LimitState>);

impl MessageLimit {
    /// A whole data message (text or binary) was received: the next one may
    /// take `max` bytes again.
    pub fn message_done(&self) {
        self.0.release();
    }

    /// No limit from here on but the socket's own (`max_message` of
    /// [`Upgrade::accept`]).
    pub fn lift(&self) {
        self.0.max.store(usize::MAX, Ordering::Relaxed);
    }
}

/// The upgraded connection `I`, reading at most what its [`MessageLimit`] allows.
pub struct LimitedIo<I = TokioIo<Upgraded>> {
    io: I,
    limit: Arc<LimitState>,
}

impl<I: AsyncRead + Unpin> AsyncRead for LimitedIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let limit = &self.limit;
        let max = limit.max.load(Ordering::Relaxed);
        let for_message = max.saturating_sub(limit.read.load(Ordering::Relaxed));
        let u = &limit.unfinished;
        let for_address = u.per_address.saturating_sub(u.address.load(Ordering::Relaxed));
        let for_server = u.per_server.saturating_sub(u.server.load(Ordering::Relaxed));
        let allowed = for_message.min(for_address).min(for_server);
        if allowed == 0 {
            let over = if for_message == 0 {
                OverLimit::Message { max }
            } else if for_address == 0 {
                OverLimit::Address { budget: u.per_address }
            } else {
                OverLimit::Server { budget: u.per_server }
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, over)));
        }
        // Read at most `allowed` bytes: the rest stays in the kernel.
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(allowed.min(buf.remaining())));
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut part);
        let n = part.filled().len();
        if let Poll::Ready(Ok(())) = polled {
            self.limit.read.fetch_add(n, Ordering::Relaxed);
            self.limit.unfinished.address.fetch_add(n, Ordering::Relaxed);
            self.limit.unfinished.server.fetch_add(n, Ordering::Relaxed);
            buf.advance(n);
        }
        polled
    }
}

impl<I> Drop for LimitedIo<I> {
    fn drop(&mut self) {
        self.limit.release();
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for LimitedIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Whether `key` is the base64 of 16 bytes: 24 characters ending in `==`.
fn is_nonce(key: &HeaderValue) -> bool {
    use base64::Engine;
    key.len() == 24 && base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).is_ok_and(|n| n.len() == 16)
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers.get(name).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// Whether a comma-separated header contains `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

/// Sends `text` as one text message: one frame up to [`FRAGMENT_BYTES`],
/// else a text frame and continuation frames of at most that many bytes
/// each, split between characters, flushed once.
///
/// # Errors
/// The socket's, for example when the peer is gone.
pub async fn send_text<S>(sink: &mut S, text: String) -> Result<(), Error>
where
    S: Sink<Message, Error = Error> + Unpin,
{
    if text.len() <= FRAGMENT_BYTES {
        return sink.send(Message::text(text)).await;
    }
    let ranges = fragments(&text, FRAGMENT_BYTES);
    let last = ranges.len() - 1;
    let bytes = Bytes::from(text);
    for (i, range) in ranges.into_iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        sink.feed(Message::Frame(Frame::message(bytes.slice(range), opcode, i == last))).await?;
    }
    sink.flush().await
}

/// Splits `text` into consecutive byte ranges of at most `max` bytes (at
/// least one character each), ending on character boundaries.
fn fragments(text: &str, max: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(text.len().div_ceil(max.max(1)));
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + max).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == start {
            // `max` is smaller than this character: take the character.
            end = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fragments;

    #[test]
    fn fragments_cover_the_text_on_character_boundaries() {
        // 'é' is 2 bytes and 'ü' 2: boundaries fall inside characters.
        let text = "aé".repeat(1000) + "ü";
        let ranges = fragments(&text, 100);
        let mut joined = String::new();
        for r in &ranges {
            assert!(r.len() <= 100 && !r.is_empty());
            joined.push_str(&text[r.clone()]);
        }
        assert_eq!(joined, text);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
    }

    #[test]
    fn short_text_and_tiny_limit() {
        assert_eq!(fragments("abc", 10), vec![0..3]);
        assert!(fragments("", 10).is_empty());
        // A limit below one character still makes progress.
        assert_eq!(fragments("éé", 1), vec![0..2, 2..4]);
    }
}
