//! Chat lines typed on stdin (`--chat-stdin`), read by a thread of their
//! own (a blocking read would stall the session).
//!
//! Input is whatever the terminal or a pipe gives: a line that is not
//! UTF-8 is sent with U+FFFD for its bad bytes rather than ending chat
//! input, and a line longer than [`MAX_LINE_BYTES`] is cut there (the
//! rest, up to its line break, is dropped), so endless input without a
//! line break cannot fill memory.

use std::io::BufRead;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Longest line kept, bytes; the session sends at most 2000 characters of it.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// Lines from stdin; the channel closes at end of input or on a read error.
pub(crate) fn chat_input() -> UnboundedReceiver<String> {
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), |line| tx.send(line).is_ok()));
    rx
}

/// Gives each line of `input` (without its `\n` or `\r\n`) to `deliver`
/// until end of input, a read error, or `deliver` returns false.
pub(crate) fn read_lines(mut input: impl BufRead, mut deliver: impl FnMut(String) -> bool) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let Ok(n) = std::io::Read::take(&mut input, MAX_LINE_BYTES as u64).read_until(b'\n', &mut buf) else { return };
        if n == 0 {
            return;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if n == MAX_LINE_BYTES {
            skip_line(&mut input);
        }
        if !deliver(String::from_utf8_lossy(&buf).into_owned()) {
            return;
        }
    }
}

/// Drops input up to and including the next `\n` (or to its end).
fn skip_line(input: &mut impl BufRead) {
    loop {
        let (done, used) = match input.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(b) => match b.iter().position(|&c| c == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, b.len()),
            },
        };
        input.consume(used);
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, |l| {
            out.push(l);
            true
        });
        out
    }

    /// A line of bad bytes neither ends chat input nor hides the lines after it.
    #[test]
    fn invalid_utf8_is_replaced_and_input_goes_on() {
        assert_eq!(
            lines(b"hello1\n\xff\xfe bad\r\nhello2\nlast"),
            ["hello1", "\u{fffd}\u{fffd} bad", "hello2", "last"]
        );
    }

    /// A line without end is cut at the limit; the next line is whole.
    #[test]
    fn an_overlong_line_is_cut_and_the_next_one_kept() {
        let mut input = vec![b'x'; 3 * MAX_LINE_BYTES];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2, "{:?}", got.iter().map(String::len).collect::<Vec<_>>());
        assert_eq!(got[0].len(), MAX_LINE_BYTES);
        assert_eq!(got[1], "next");
        assert_eq!(lines(&vec![b'y'; MAX_LINE_BYTES + 5]).len(), 1);
    }

    /// The reader stops when the session stops taking lines.
    #[test]
    fn stops_when_not_delivered() {
        let mut n = 0;
        read_lines(&b"a\nb\nc\n"[..], |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
    }
}
