//! Datagrams from participants into the SFU (`Sfu::handle_receive`) once
//! real sessions are up: a simulcast publisher and a subscriber, connected
//! over ICE and DTLS in the virtual-time meeting of the SFU's tests
//! (tests/harness). Arbitrary bytes from either participant's address or
//! from a stranger (STUN, DTLS, SRTP and SRTCP demultiplexing and checks,
//! or none of them), and frames of arbitrary content that the publisher's
//! own session packetizes and encrypts (so the SFU's RTP reading sees
//! them: VP8 payload descriptors and key frame headers, audio levels),
//! with time passing. Never panics, and afterwards the meeting still works:
//! the subscriber receives the publisher's audio and video.
//!
//! Input: steps of `[op, len, len bytes]`. `op % 6`: 0-2 raw bytes from
//! the publisher, the subscriber or a stranger, 3 a video frame on the
//! simulcast layer `op / 6 % 3`, 4 an audio frame at level `op / 6`, 5 a
//! pause of `len` ms with regular media.
#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plenary_proto::MediaKind;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime};
use str0m::net::Protocol;

#[path = "../../tests/harness/mod.rs"]
mod harness;
use harness::{LAYERS, SFU_ADDR, World};

/// Frames the subscriber has received of `kind` from the publisher.
fn received(w: &World, kind: MediaKind) -> usize {
    w.mid_of(1, 0, kind).map_or(0, |mid| w.frames(1, mid).len())
}

/// The publisher sends `payload` as one frame of `kind` (on simulcast
/// layer `layer` for video; at level `level` -dBov for audio).
fn send_frame(w: &mut World, kind: MediaKind, layer: u8, level: u8, payload: &[u8]) {
    let now = w.now;
    let elapsed = (now - w.start).as_micros() as u64;
    let p = &mut w.peers[0];
    let (mid, codec, rtp) = match kind {
        MediaKind::Video => (p.video_mid, Codec::Vp8, MediaTime::new(elapsed * 90 / 1000, Frequency::NINETY_KHZ)),
        _ => (p.audio_mid, Codec::Opus, MediaTime::new(elapsed * 48 / 1000, Frequency::FORTY_EIGHT_KHZ)),
    };
    let Some(mid) = mid else { return };
    let Some(pt) = p.rtc.codec_config().find(|c| c.spec().codec == codec).map(|c| c.pt()) else { return };
    let Some(mut writer) = p.rtc.writer(mid) else { return };
    if kind == MediaKind::Video {
        writer = writer.rid(LAYERS[usize::from(layer % 3)].0.into());
    } else {
        let level = -i8::try_from(level % 128).unwrap_or(127);
        writer = writer.audio_level(level, level > -60);
    }
    let _ = writer.write(pt, now, rtp, payload.to_vec());
    w.pump();
}

fuzz_target!(|data: &[u8]| {
    let mut w = World::new();
    let publisher = w.join("room", true, true);
    let subscriber = w.join("room", false, false);
    w.run(Duration::from_millis(600), 10);
    let sfu = SocketAddr::from(SFU_ADDR);
    let stranger = SocketAddr::from(([10, 0, 9, 9], 7000));
    let mut rest = data;
    let mut steps = 0;
    while let [op, len, tail @ ..] = rest {
        steps += 1;
        if steps > 64 {
            break;
        }
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        match op % 6 {
            k @ 0..=2 => {
                let from = [w.peers[publisher].addr, w.peers[subscriber].addr, stranger][usize::from(k)];
                let _ = w.sfu.handle_receive(w.now, Protocol::Udp, from, sfu, bytes);
                w.pump();
            }
            3 => send_frame(&mut w, MediaKind::Video, op / 6, 0, bytes),
            4 => send_frame(&mut w, MediaKind::Audio, 0, op / 6, bytes),
            _ => w.run(Duration::from_millis(u64::from(*len)), 10),
        }
    }
    // The meeting goes on: within 2 s, with a key frame every 10 frames,
    // the subscriber gets new audio and video from the publisher.
    let (audio, video) = (received(&w, MediaKind::Audio), received(&w, MediaKind::Video));
    w.run(Duration::from_secs(2), 10);
    assert!(received(&w, MediaKind::Audio) > audio, "audio stopped after the fuzzed input");
    assert!(received(&w, MediaKind::Video) > video, "video stopped after the fuzzed input");
});
