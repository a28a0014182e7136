//! Writing a forwarded VP8 frame to many subscribers from one packetizing.
//!
//! str0m's frame mode packetizes every frame again for every subscriber
//! (`Writer::write`): at 200 receivers that was 13 % of the SFU's CPU
//! (BENCHMARKS.md, "Where the time goes at 200 receivers"). A VP8 frame is
//! instead split into RTP payloads once ([`packetize_vp8`]) and each
//! subscriber's send stream gets the same payloads, shared (`Arc`), through
//! str0m's `StreamTx::write_rtp` ([`write_packets`]): its send queue and
//! its retransmission cache hold references, not copies. What differs per
//! subscriber is all in the RTP header str0m writes when it sends (SSRC,
//! sequence number, RTP timestamp, marker, header extensions); the payload
//! (RFC 7741 §4.2 payload descriptor, then the frame's bytes) is the same,
//! because it carries no picture ID (str0m's own VP8 packetizer, which this
//! one reproduces, writes none either). NACK/RTX (the packets
//! are nackable and cached), TWCC sequence numbers and pacing are str0m's,
//! as for frames written with `Writer::write`.
//!
//! Audio stays on `Writer::write`: an Opus frame is one packet, and str0m
//! wraps it in RED (RFC 2198) when that is negotiated.

use std::sync::Arc;
use std::time::Instant;

use str0m::Rtc;
use str0m::media::{Mid, Pt};
use str0m::rtp::{RtpWrite, SeqNo};

/// Most bytes of RTP payload per packet: str0m's datagram target of 1150
/// bytes less the SRTP tag (16), rounded down to the SRTP block size (16),
/// as str0m's own packetizing does, so the packets are the sizes
/// `Writer::write` would have made.
const PAYLOAD_MTU: usize = (1150 - 16) / 16 * 16;

/// The RTP payloads of one VP8 frame (`frame`: the frame's VP8 bitstream,
/// as str0m hands it over), in order; empty if the frame is. Each is the
/// one-byte payload descriptor of RFC 7741 §4.2 (no extensions: X = 0; S = 1
/// and partition index 0 on the first packet, 0x00 on the others) and up to
/// [`PAYLOAD_MTU`] - 1 bytes of the frame, as str0m's `Vp8Packetizer`
/// makes them.
pub(crate) fn packetize_vp8(frame: &[u8]) -> Vec<Arc<[u8]>> {
    frame
        .chunks(PAYLOAD_MTU - 1)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = Vec::with_capacity(chunk.len() + 1);
            p.push(if i == 0 { 0x10 } else { 0x00 });
            p.extend_from_slice(chunk);
            Arc::from(p)
        })
        .collect()
}

/// Why a frame could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// The session has no send stream for the m-line (yet).
    #[error("no send stream for the m-line")]
    NoStream,
    /// The frame had no payload.
    #[error("empty frame")]
    Empty,
}

/// Queues `packets` (one frame) on the send stream of `mid` in `rtc`:
/// payload type `pt`, RTP timestamp `rtp_time` (90 kHz), `wallclock` for
/// sender reports, the marker bit on the last packet (RFC 7741 §4.1).
/// `next_seq` is the subscriber track's next RTP sequence number (RFC 3550
/// §5.1, extended to 64 bits, so the SRTP rollover counter follows);
/// `None` starts it from the stream's SSRC (below 2^15, rollover counter 0,
/// so the receiver needs no signalling of it). Before ICE connects the
/// frame is dropped, as `Writer::write` does.
///
/// # Errors
/// [`WriteError`].
pub(crate) fn write_packets(
    rtc: &mut Rtc,
    mid: Mid,
    pt: Pt,
    next_seq: &mut Option<u64>,
    rtp_time: u32,
    wallclock: Instant,
    packets: &[Arc<[u8]>],
) -> Result<(), WriteError> {
    let Some(last) = packets.len().checked_sub(1) else { return Err(WriteError::Empty) };
    if !rtc.is_connected() {
        return Ok(());
    }
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else { return Err(WriteError::NoStream) };
    let mut seq = next_seq.unwrap_or_else(|| u64::from(*tx.ssrc() & 0x7fff));
    for (i, payload) in packets.iter().enumerate() {
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), rtp_time, wallclock, Arc::clone(payload))
                .marker(i == last)
                .nackable(true),
        );
        seq += 1;
    }
    *next_seq = Some(seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_frames_split_into_mtu_sized_payloads_with_the_start_bit_on_the_first() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let packets = packetize_vp8(&frame);
        assert_eq!(packets.iter().map(|p| p.len()).collect::<Vec<_>>(), [1120, 1120, 2500 - 2 * 1119 + 1]);
        assert_eq!(packets.iter().map(|p| p[0]).collect::<Vec<_>>(), [0x10, 0x00, 0x00]);
        let rebuilt: Vec<u8> = packets.iter().flat_map(|p| p[1..].to_vec()).collect();
        assert_eq!(rebuilt, frame);
        assert!(packetize_vp8(&[]).is_empty());
    }
}
