//! ICE-TCP framing (RFC 4571 §2, RFC 6544 §3) as the server reads it
//! (`tcp::read_frame`), from a byte stream that arrives in reads of
//! arbitrary sizes: never panics, every frame is exactly the bytes its
//! length prefix announces, in order, and a stream that ends inside a
//! frame yields an error, not a short frame.
//!
//! Input: the first byte seeds the sizes of the reads, the rest is the stream.
#![no_main]
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use plenary_server::tcp::read_frame;
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` in reads of 1 to 300 bytes (from a seeded xorshift),
/// now and then saying "not yet" first.
struct Chunked<'a> {
    data: &'a [u8],
    state: u32,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        if x % 7 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = (1 + x as usize % 300).min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut rd = Chunked { data: stream, state: u32::from(seed) | 0x100 };
        let mut at = 0;
        loop {
            match read_frame(&mut rd).await {
                Ok(frame) => {
                    let len = usize::from(u16::from_be_bytes([stream[at], stream[at + 1]]));
                    assert_eq!(frame.len(), len, "frame length is the prefix");
                    assert_eq!(frame, stream[at + 2..at + 2 + len], "frame is the bytes after the prefix");
                    at += 2 + len;
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                    let left = stream.len() - at;
                    let whole = left >= 2 && left >= 2 + usize::from(u16::from_be_bytes([stream[at], stream[at + 1]]));
                    assert!(!whole, "a whole frame was left unread");
                    break;
                }
            }
        }
    });
});
