//! Signaling from clients into the SFU (`Sfu::handle_message`): SDP offers
//! and answers (our SDP checks, then str0m's parser and negotiation), and
//! any message a client can send, from two participants of one room, with
//! time passing and every output drained. Never panics, whatever the order.
//!
//! The input is a sequence of steps separated by 0xff bytes. A step's
//! first byte picks the sender (bit 0), what the rest is (bits 1-2: an SDP
//! offer, an SDP answer, a real client offer with the rest spliced in at a
//! line, or a JSON client message) and how many 10 ms pass after it (bits
//! 3-7).
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plenary_proto::{ClientMsg, decode_client_msg};
use plenary_sfu::{Output, Sfu, SfuConfig};
use str0m::Rtc;
use str0m::media::{Direction, MediaKind};

/// An offer as the native client makes it: one send-only audio and one
/// send-only video m-line.
fn client_offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    api.apply().map(|(offer, _)| offer.to_sdp_string()).unwrap_or_default()
}

/// `offer` with `insert` placed before line number `at` (modulo the line count).
fn splice(offer: &str, at: u8, insert: &str) -> String {
    let lines: Vec<&str> = offer.split_inclusive("\r\n").collect();
    let at = usize::from(at) % (lines.len() + 1);
    let mut out = lines[..at].concat();
    out.push_str(insert);
    out.push_str(&lines[at..].concat());
    out
}

fn drain(sfu: &mut Sfu, now: Instant) {
    for _ in 0..10_000 {
        if let Output::Timeout(_) = sfu.poll_output(now) {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut sfu = Sfu::new(SfuConfig::default());
    let (Ok(a), Ok(b)) = (sfu.join(now, "room", "{}".into(), 1), sfu.join(now, "room", "{}".into(), 1)) else {
        return;
    };
    drain(&mut sfu, now);
    let mut offer = None;
    for step in data.split(|&c| c == 0xff).take(16) {
        let Some((&op, rest)) = step.split_first() else { continue };
        let who = if op & 1 == 0 { a } else { b };
        let text = String::from_utf8_lossy(rest).into_owned();
        let msg = match (op >> 1) & 3 {
            0 => ClientMsg::Offer { sdp: text },
            1 => ClientMsg::Answer { sdp: text },
            2 => {
                let offer = offer.get_or_insert_with(client_offer);
                let (at, insert) = text.split_at(text.chars().next().map_or(0, char::len_utf8));
                let at = at.bytes().next().unwrap_or(0);
                ClientMsg::Offer { sdp: splice(offer, at, insert) }
            }
            _ => match decode_client_msg(&text) {
                Ok(m) => m,
                Err(_) => continue,
            },
        };
        let _ = sfu.handle_message(now, who, msg);
        drain(&mut sfu, now);
        now += Duration::from_millis(10 * u64::from(op >> 3));
        sfu.handle_timeout(now);
        drain(&mut sfu, now);
    }
});
