//! One WebSocket signaling connection: decodes client messages, enforces
//! size and rate limits, forwards them to the media loop and writes the
//! loop's messages back. Bad input gets an `error` message; the connection
//! and everyone else carry on. A message over the size limit of the socket
//! (of [`PRE_JOIN_MESSAGE_BYTES`] until the connection has joined) ends
//! only this connection, with a fatal `too_large` error and a close 1009.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use plenary_proto::{ClientMsg, ErrorCode, ParticipantId, RoomTag, ServerMsg, decode_client_msg, encode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, info};

use crate::client_queue::{ToClient, client_queue};
use crate::media::{Command, MediaHandle};
use crate::ws_socket::{MessageLimit, Socket, send_text, too_large};

/// What a `join` with a missing or malformed room tag is told.
pub const INCOMPLETE_LINK: &str = "This link is incomplete: the part after # is missing or damaged";

/// Largest message a connection may send before it has joined a room,
/// bytes: a `join` (room id, room tag, profile) or a `ping`. The largest
/// `join` a client can send, with a profile of [`plenary_proto::MAX_PROFILE_BYTES`]
/// that JSON writes entirely as 6-byte escapes, is 24,662 bytes
/// (tests/prejoin_limit.rs); browsers and the native client send about
/// 150. A larger message is refused after this many bytes of it were read,
/// so the 128 connections an address may hold before joining make the
/// server keep at most about 8 MiB for them, not 512 MiB (BENCHMARKS.md).
pub const PRE_JOIN_MESSAGE_BYTES: usize = 64 * 1024;

/// Most bytes of unfinished incoming messages the signaling connections of
/// one address may make the server hold at once (four messages of the
/// largest size a joined member may send). Without it, joined connections
/// could each hold a message of up to 4 MiB, unfinished, for as long as
/// they stay: 512 MiB for the 128 sessions an address may open. The
/// connection whose message passes it gets a fatal `too_large` error.
pub const ADDRESS_UNFINISHED_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes of unfinished incoming messages all signaling connections
/// together may make the server hold at once: many addresses (an IPv6
/// /48 holds 65,536 /64s) must not add up to more. Past it, the
/// connection whose read would pass it gets a fatal `too_large` error.
pub const SERVER_UNFINISHED_BYTES: usize = 64 * 1024 * 1024;

/// A connection must join within this time.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// A client that does not take a message within this time is disconnected.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages per second a connection may send on average.
const RATE_PER_SEC: f64 = 30.0;
/// Burst allowance, in messages.
const RATE_BURST: f64 = 120.0;

/// Token bucket for the per-connection message rate.
struct RateLimit {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new(now: Instant) -> Self {
        RateLimit { tokens: RATE_BURST, at: now }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn error(code: ErrorCode, message: impl Into<String>, fatal: bool) -> ToClient {
    ToClient::Msg(Box::new(ServerMsg::Error { code, message: message.into(), fatal }))
}

/// Serves one connection until it closes. `size` is the socket's
/// per-message limit before joining ([`PRE_JOIN_MESSAGE_BYTES`]), lifted
/// once the connection has joined.
pub async fn serve<I>(socket: Socket<I>, size: MessageLimit, media: MediaHandle)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = client_queue();
    let mut writer = tokio::spawn(async move {
        let mut close = None;
        while let Some(out) = rx.recv().await {
            match out {
                ToClient::Msg(msg) => {
                    let fatal = match &*msg {
                        ServerMsg::Error { fatal: true, code, .. } => Some(*code),
                        _ => None,
                    };
                    let sent = tokio::time::timeout(SEND_TIMEOUT, send_text(&mut sink, encode(&msg))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                    if let Some(code) = fatal {
                        // RFC 6455 §7.4.1: 1009, "Message Too Big".
                        close = (code == ErrorCode::TooLarge)
                            .then(|| CloseFrame { code: CloseCode::Size, reason: "message too big".into() });
                        break;
                    }
                }
                ToClient::Close => break,
            }
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(close))).await;
    });

    let mut me: Option<ParticipantId> = None;
    let mut limit = RateLimit::new(Instant::now());
    let mut last_limit_error: Option<Instant> = None;
    let started = Instant::now();
    loop {
        let wait = if me.is_none() { JOIN_TIMEOUT.saturating_sub(started.elapsed()) } else { Duration::MAX };
        let frame = tokio::select! {
            f = tokio::time::timeout(wait, stream.next()) => match f {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    let _ = tx.try_send(error(ErrorCode::NotJoined, "no join within 15 s", true));
                    break;
                }
            },
            // The writer gave up (client not reading): stop reading too.
            _ = &mut writer => break,
        };
        let now = Instant::now();
        // Only a whole data message ends one: a ping or pong may come
        // between the fragments of a message (RFC 6455 §5.4), and must not
        // let the fragments after it count from zero.
        if matches!(frame, Ok(Message::Text(_) | Message::Binary(_))) {
            size.message_done();
        }
        if !matches!(frame, Ok(Message::Close(_)) | Err(_)) && !limit.allow(now) {
            if last_limit_error.is_none_or(|t| now.duration_since(t) > Duration::from_secs(1)) {
                last_limit_error = Some(now);
                let _ = tx.try_send(error(ErrorCode::RateLimited, "too many messages; slow down", false));
            }
            continue;
        }
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(b)) => {
                debug!(len = b.len(), "binary frame rejected");
                let _ =
                    tx.try_send(error(ErrorCode::Malformed, "binary frames are not supported; send JSON text", false));
                continue;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                if let Some(over) = too_large(&e) {
                    let when = if me.is_none() { " before join" } else { "" };
                    let _ = tx.try_send(error(ErrorCode::TooLarge, format!("{over}{when}; closing"), true));
                }
                debug!(error = %e, "WebSocket read error");
                break;
            }
        };
        let msg = match decode_client_msg(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                // The detail can quote client input; log only the kind.
                debug!(code = ?e.code(), "bad client message");
                let _ = tx.try_send(error(e.code(), e.to_string(), false));
                continue;
            }
        };
        match (me, msg) {
            (None, ClientMsg::Join { room, profile, version, room_tag }) => {
                let room_tag = match RoomTag::parse(&room_tag) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = tx.try_send(error(ErrorCode::IncompleteLink, INCOMPLETE_LINK, true));
                        break;
                    }
                };
                let (reply_tx, reply_rx) = oneshot::channel();
                let cmd = Command::Join { room, room_tag, profile, version, to_client: tx.clone(), reply: reply_tx };
                if media.commands.send(cmd).await.is_err() {
                    let _ = tx.try_send(error(ErrorCode::Internal, "server is shutting down", true));
                    break;
                }
                match reply_rx.await {
                    Ok(Ok(id)) => {
                        me = Some(id);
                        size.lift();
                    }
                    Ok(Err(e)) => {
                        let _ = tx.try_send(error(e.code(), e.to_string(), false));
                    }
                    Err(_) => break,
                }
            }
            (None, ClientMsg::Ping { id }) => {
                let _ = tx.try_send(ToClient::Msg(Box::new(ServerMsg::Pong { id })));
            }
            (None, _) => {
                let _ = tx.try_send(error(ErrorCode::NotJoined, "send join first", false));
            }
            (Some(id), ClientMsg::Leave) => {
                let _ = media.commands.send(Command::Leave(id)).await;
                me = None;
                break;
            }
            (Some(id), msg) => {
                if media.commands.send(Command::Message(id, msg)).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(id) = me {
        let _ = media.commands.send(Command::Leave(id)).await;
        info!(participant = %id, "signaling connection closed");
    }
    drop(tx);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(SEND_TIMEOUT, &mut writer).await;
    }
    writer.abort();
}
