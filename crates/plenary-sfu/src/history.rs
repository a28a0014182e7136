//! How much sent media each subscriber's session keeps for retransmission.
//!
//! str0m keeps, per outgoing stream, the RTP packets it sent so that it can
//! answer a subscriber's NACK (RFC 4585 §6.2.1) with an RTX packet (RFC
//! 4588), and takes its bandwidth probes' padding from the same cache. By
//! default it keeps 3 s of packets, up to 1,000 for video: at the 1 Mbit/s
//! of the load harness that was about 300 packets, 0.4 MiB per subscriber
//! and video track, most of an active subscriber's memory. Every
//! subscriber has its own copy (str0m packetizes and encrypts per
//! session), so this is the term that grows with room size.
//!
//! A retransmission only helps while the receiver still waits for the
//! frame: libwebrtc's sender keeps max(1 s, 3 × RTT) of history
//! (`RtpPacketHistory`), and its receiver stops asking for a packet well
//! within a second at conferencing delays. We keep [`HISTORY`] = 1 s,
//! enough for NACKs over paths of up to about 300 ms RTT (a request needs
//! one RTT to arrive plus the receiver's reaction time), capped at
//! [`VIDEO_PACKETS`] packets: 1 s of a 720p simulcast top layer (2.5
//! Mbit/s at about 1,150 bytes per packet is 270 packets per second) with
//! room for a key frame burst or a screen share of about 4 Mbit/s.
//! At a higher rate the cap shortens the history instead of growing
//! memory. Audio is capped at [`AUDIO_PACKETS`]: 1 s of 20 ms Opus frames.
//!
//! Padding resends cached packets ("spurious resends" on the RTX SSRC, the
//! most recent packet of a fitting size, often the same one many times), so
//! a whole small frame can reach a subscriber again. str0m drops such a copy
//! (the native client never sees one), but Chromium assembles the frame a
//! second time when the copy arrives after the frame was assembled and
//! before it was decoded, and its `RTCRtpScriptTransform` runs before its
//! duplicate check: the media worker's SFrame replay check drops it
//! (`MediaCrypto::disposition` in plenary-e2ee). Measured with `--tap` on
//! loopback, 3 pages and a native client for 40 s at load 6-8: no media
//! payload sent twice on any subscriber's main SSRC; 280-890 RTX packets per
//! subscriber, up to 35 for one packet; every one of the 38 frames that
//! pages dropped as replays had its packets among them; the native client
//! counted none.

use std::time::Duration;

use str0m::media::{MediaKind, Mid};
use str0m::{Rtc, RtcConfig};

/// How long a sent packet stays available for retransmission.
pub(crate) const HISTORY: Duration = Duration::from_secs(1);

/// Most video packets kept per outgoing stream.
pub(crate) const VIDEO_PACKETS: usize = 512;

/// Most audio packets kept per outgoing stream (one per 20 ms).
pub(crate) const AUDIO_PACKETS: usize = 50;

/// str0m's default: resends are dropped once they exceed 15 % of what
/// the stream sends, so a lossy link is not flooded with retransmissions.
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// Caps the send buffers of every stream a new session creates.
pub(crate) fn configure(config: RtcConfig) -> RtcConfig {
    config.set_send_buffer_video(VIDEO_PACKETS).set_send_buffer_audio(AUDIO_PACKETS)
}

/// Shortens the retransmission history of the stream just negotiated for
/// `mid` to [`HISTORY`]. Call once, when the stream opens: str0m empties
/// the cache when it is resized.
pub(crate) fn size_stream(rtc: &mut Rtc, mid: Mid, kind: MediaKind) {
    let packets = match kind {
        MediaKind::Audio => AUDIO_PACKETS,
        MediaKind::Video => VIDEO_PACKETS,
    };
    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
        tx.set_rtx_cache(packets, HISTORY, RTX_RATIO_CAP);
    }
}
