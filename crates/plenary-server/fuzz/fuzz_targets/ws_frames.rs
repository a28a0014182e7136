//! A signaling connection (`ws::serve` on the socket `ws_socket::socket`
//! makes, exactly as the server runs them) fed a client's byte stream
//! split into reads of arbitrary sizes: frames of any opcode, length,
//! mask and fragmentation, pings between fragments, oversized messages,
//! bad UTF-8, bad JSON. The media loop is a stand-in that admits every
//! `join` (or refuses it, by the first input byte).
//!
//! Never panics and always ends when the stream does; the unfinished bytes
//! it counts never pass the address and server budgets (checked at every
//! read) and all return to the budgets once the connection ended; and what
//! the server wrote back is a valid WebSocket stream (its fragments
//! reassemble) of server messages that decode, nothing after a close.
//!
//! Input: byte 0 picks the limits (small ones, so that each is reached)
//! and whether joins are admitted; byte 1 seeds the read sizes; the rest
//! is the stream after the opening handshake.
#![no_main]
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use plenary_proto::{ParticipantId, decode_server_msg};
use plenary_server::media::{Command, MediaHandle};
use plenary_server::ws::{self, PRE_JOIN_MESSAGE_BYTES};
use plenary_server::ws_socket::{UnfinishedBudget, socket};
use plenary_sfu::SfuError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The client's side of the connection: hands out `data` in reads of
/// varying size, records what the server writes.
struct Wire {
    data: Vec<u8>,
    at: usize,
    state: u32,
    written: Arc<Mutex<Vec<u8>>>,
    budget: UnfinishedBudget,
}

impl Wire {
    fn next(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x
    }
}

impl AsyncRead for Wire {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let b = &self.budget;
        let (address, server) = (b.address.load(Ordering::Relaxed), b.server.load(Ordering::Relaxed));
        assert!(address <= b.per_address, "address holds {address} > {}", b.per_address);
        assert!(server <= b.per_server, "server holds {server} > {}", b.per_server);
        let x = self.next();
        if x % 5 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let size = if x % 3 == 0 { 1 + x as usize % 8 } else { 1 + x as usize % 3000 };
        let at = self.at;
        let n = size.min(self.data.len() - at).min(buf.remaining());
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.written.lock().expect("written").extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The media loop, reduced to admitting or refusing joins.
async fn media(mut commands: mpsc::Receiver<Command>, admit: bool) {
    while let Some(cmd) = commands.recv().await {
        if let Command::Join { reply, .. } = cmd {
            let _ = reply.send(if admit { Ok(ParticipantId(7)) } else { Err(SfuError::RoomFull) });
        }
    }
}

/// Checks what the server wrote: whole frames that reassemble into server
/// messages, nothing after a close. (A close is not always there: after
/// the client vanished without one, the server has nobody to send it to.)
async fn check_written(written: Vec<u8>, seed: u32) {
    let unlimited = UnfinishedBudget {
        address: Arc::new(AtomicUsize::new(0)),
        per_address: usize::MAX,
        server: Arc::new(AtomicUsize::new(0)),
        per_server: usize::MAX,
    };
    let wire = Wire { data: written, at: 0, state: seed, written: Arc::default(), budget: unlimited };
    let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
    let mut closed = false;
    while let Some(msg) = client.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                assert!(!closed, "message after the close");
                if let Err(e) = decode_server_msg(&t) {
                    panic!("server wrote an undecodable message: {e}");
                }
            }
            Ok(Message::Close(_)) => closed = true,
            // tungstenite answers pings by itself (RFC 6455 §5.5.3).
            Ok(Message::Pong(_)) => {}
            Ok(other) => panic!("server wrote {other:?}"),
            // The client's side ends after the close (it cannot reply).
            Err(_) => break,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, seed, stream @ ..] = input else { return };
    let (first_limit, max_message) = match flags & 3 {
        0 => (PRE_JOIN_MESSAGE_BYTES, 4 * plenary_proto::MAX_CLIENT_MESSAGE_BYTES),
        1 => (64, 1024),
        2 => (300, 600),
        _ => (1024, 1 << 16),
    };
    let per_address = [ws::ADDRESS_UNFINISHED_BYTES, 500, 2500, 9000][usize::from(flags >> 2 & 3)];
    let per_server = [ws::SERVER_UNFINISHED_BYTES, 800, 4000, 20000][usize::from(flags >> 4 & 3)];
    let others = [0, 100, 400, 2000][usize::from(flags >> 6 & 1) * 2 + usize::from(seed & 1)].min(per_address / 2);
    let admit = flags & 0x80 == 0;
    let budget = UnfinishedBudget {
        address: Arc::new(AtomicUsize::new(others)),
        per_address,
        server: Arc::new(AtomicUsize::new(others)),
        per_server,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let written = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let (tx, rx) = mpsc::channel(16);
        let media_task = tokio::spawn(media(rx, admit));
        let wire = Wire {
            data: stream.to_vec(),
            at: 0,
            state: u32::from(*seed) | 0x100,
            written: Arc::clone(&written),
            budget: budget.clone(),
        };
        let (sock, limit) = socket(wire, max_message, first_limit, budget.clone()).await;
        ws::serve(sock, limit, MediaHandle { commands: tx }).await;
        media_task.await.expect("media stand-in");
    });
    assert_eq!(budget.address.load(Ordering::Relaxed), others, "the connection's bytes went back to the address");
    assert_eq!(budget.server.load(Ordering::Relaxed), others, "the connection's bytes went back to the server");
    let written = std::mem::take(&mut *written.lock().expect("written"));
    rt.block_on(check_written(written, u32::from(*seed) | 0x100));
});
