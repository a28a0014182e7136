//! Synthetic media: VP8-looking video frames and Opus-sized audio frames
//! at a set bitrate and frame rate, each carrying a [`Stamp`], and the RTP
//! packetization the publishers use (RFC 7741 VP8 payload descriptor).
//!
//! The SFU never reads payloads beyond what Plenary reads in clear: the
//! VP8 payload descriptor and the frame tag, and on key frames the start
//! code and picture size (RFC 6386 §9.1). Those bytes are valid here; the
//! rest of each frame is filler.

use std::time::{Duration, Instant};

/// Marks a stamp in a payload.
pub const STAMP_MAGIC: [u8; 4] = *b"PLd1";
/// Bytes of a stamp: magic, frame number (u32 BE), send time in µs (u64 BE).
pub const STAMP_LEN: usize = 16;
/// Most RTP payload bytes per video packet (the rest of a 1200-byte MTU is
/// RTP header, extensions and the SRTP tag).
pub const MAX_PAYLOAD: usize = 1100;
/// Audio frame duration: 20 ms (Opus default).
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// How far into a payload a stamp may start (VP8 descriptor up to 6
/// bytes, key frame header 10 bytes, with room to spare).
const STAMP_SEARCH: usize = 48;

/// What a frame carries to measure forwarding latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Frame number of the track, from 0.
    pub frame: u32,
    /// Send time, µs since the harness's clock origin.
    pub sent_us: u64,
}

impl Stamp {
    /// The 16-byte encoding.
    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut b = [0u8; STAMP_LEN];
        b[..4].copy_from_slice(&STAMP_MAGIC);
        b[4..8].copy_from_slice(&self.frame.to_be_bytes());
        b[8..].copy_from_slice(&self.sent_us.to_be_bytes());
        b
    }

    /// Finds a stamp in the first bytes of an RTP payload (after whatever
    /// VP8 descriptor and frame header the SFU wrote).
    pub fn find(payload: &[u8]) -> Option<Stamp> {
        let end = payload.len().min(STAMP_SEARCH + STAMP_LEN);
        let window = payload.get(..end)?;
        let at = window.windows(4).position(|w| w == STAMP_MAGIC)?;
        let b = window.get(at..at + STAMP_LEN)?;
        let frame = u32::from_be_bytes(b[4..8].try_into().ok()?);
        let sent_us = u64::from_be_bytes(b[8..16].try_into().ok()?);
        Some(Stamp { frame, sent_us })
    }
}

/// The harness's clock: µs since a fixed origin, shared by publishers and
/// subscribers of one process.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock(Instant::now())
    }
    /// µs since the origin at `t`.
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Parameters of the synthetic streams of one publisher.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MediaSpec {
    /// Video bitrate, bits per second (average including key frames).
    pub video_bps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// A key frame every this many frames (and on request).
    pub keyframe_interval: u32,
    /// Picture size written in key frame headers.
    pub width: u16,
    /// Picture height.
    pub height: u16,
    /// Audio bitrate, bits per second (one packet per 20 ms).
    pub audio_bps: u32,
    /// Video pacing rate, bits per second; 0 writes a frame's packets back
    /// to back (see [`crate::pacing`]).
    pub pace_bps: u32,
    /// Video pacing burst allowance, ms of debt at `pace_bps`.
    pub pace_burst_ms: u32,
}

impl MediaSpec {
    /// Time between video frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_micros(1_000_000 / u64::from(self.fps.max(1)))
    }

    /// Bytes of a delta frame and of a key frame (three deltas), so that
    /// the average is `video_bps`.
    fn frame_sizes(&self) -> (usize, usize) {
        let per_frame = u64::from(self.video_bps) / 8 / u64::from(self.fps.max(1));
        let n = u64::from(self.keyframe_interval.max(1));
        // (n - 1) deltas + one key of 3 deltas = per_frame * n
        let delta = (per_frame * n / (n + 2)).max(STAMP_LEN as u64 + 16);
        (delta as usize, (delta * 3) as usize)
    }

    /// The pacer for this spec's video.
    pub fn video_pacer(&self) -> crate::pacing::Pacer {
        crate::pacing::Pacer::new(self.pace_bps, Duration::from_millis(u64::from(self.pace_burst_ms)))
    }

    /// Audio payload bytes per 20 ms packet.
    pub fn audio_size(&self) -> usize {
        ((u64::from(self.audio_bps) / 8 / 50) as usize).max(STAMP_LEN + 4)
    }
}

/// One RTP payload of a packetized frame.
#[derive(Debug, Clone)]
pub struct Packet {
    /// RTP payload (VP8 descriptor + frame bytes, or the audio frame).
    pub payload: Vec<u8>,
    /// RTP marker bit: the last packet of a video frame.
    pub marker: bool,
}

impl Packet {
    /// Rewrites the send time of the stamp this payload carries, if any
    /// (a paced packet leaves after its frame was made).
    pub fn restamp(&mut self, sent_us: u64) {
        let end = self.payload.len().min(STAMP_SEARCH + STAMP_LEN);
        let Some(at) = self.payload[..end].windows(4).position(|w| w == STAMP_MAGIC) else { return };
        if let Some(t) = self.payload.get_mut(at + 8..at + STAMP_LEN) {
            t.copy_from_slice(&sent_us.to_be_bytes());
        }
    }
}

/// Produces the frames of one synthetic video track, packetized.
#[derive(Debug)]
pub struct VideoSource {
    spec: MediaSpec,
    frame: u32,
    picture_id: u16,
    key_due: bool,
}

impl VideoSource {
    /// A source whose first frame is a key frame.
    pub fn new(spec: MediaSpec) -> VideoSource {
        VideoSource { spec, frame: 0, picture_id: rand::random::<u16>() & 0x7fff, key_due: true }
    }

    /// Makes the next frame a key frame (answer to a PLI).
    pub fn request_keyframe(&mut self) {
        self.key_due = true;
    }

    /// Frames produced so far.
    pub fn frames(&self) -> u32 {
        self.frame
    }

    /// The next frame, stamped with `sent_us`, as RTP payloads (RFC 7741
    /// §4.2 descriptor with a 15-bit PictureID; S=1 on the first packet).
    pub fn next_frame(&mut self, sent_us: u64) -> Vec<Packet> {
        let interval = self.spec.keyframe_interval.max(1);
        let key = self.key_due || self.frame.is_multiple_of(interval);
        self.key_due = false;
        let (delta, key_size) = self.spec.frame_sizes();
        let size = if key { key_size } else { delta };
        let mut frame = Vec::with_capacity(size);
        // Frame tag (RFC 6386 §9.1): bit 0 = 0 for key frames, version 0,
        // show_frame = 1, first partition size 0.
        frame.extend_from_slice(&[if key { 0x10 } else { 0x11 }, 0x00, 0x00]);
        if key {
            frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            frame.extend_from_slice(&(self.spec.width & 0x3fff).to_le_bytes());
            frame.extend_from_slice(&(self.spec.height & 0x3fff).to_le_bytes());
        }
        frame.extend_from_slice(&Stamp { frame: self.frame, sent_us }.encode());
        frame.resize(size.max(frame.len()), 0);
        self.frame = self.frame.wrapping_add(1);
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let chunk = MAX_PAYLOAD - 4;
        let n = frame.len().div_ceil(chunk);
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let mut payload = Vec::with_capacity(part.len() + 4);
                // X=1, S on the first packet, partition 0; I=1; M=1 + PictureID.
                payload.push(if i == 0 { 0x90 } else { 0x80 });
                payload.push(0x80);
                payload.push(0x80 | (pid >> 8) as u8);
                payload.push(pid as u8);
                payload.extend_from_slice(part);
                Packet { payload, marker: i + 1 == n }
            })
            .collect()
    }
}

/// Produces the packets of one synthetic audio track (one per 20 ms).
#[derive(Debug)]
pub struct AudioSource {
    size: usize,
    frame: u32,
}

impl AudioSource {
    /// A source of `spec.audio_size()`-byte frames.
    pub fn new(spec: MediaSpec) -> AudioSource {
        AudioSource { size: spec.audio_size(), frame: 0 }
    }

    /// The next 20 ms frame, stamped with `sent_us`.
    pub fn next_frame(&mut self, sent_us: u64) -> Packet {
        let mut payload = Vec::with_capacity(self.size);
        payload.extend_from_slice(&Stamp { frame: self.frame, sent_us }.encode());
        payload.resize(self.size, 0);
        self.frame = self.frame.wrapping_add(1);
        Packet { payload, marker: false }
    }
}

/// The fields of an RTP fixed header (RFC 3550 §5.1) the light subscriber
/// counts with, read without decrypting (SRTP leaves the header clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHead {
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Synchronization source.
    pub ssrc: u32,
}

impl RtpHead {
    /// Parses the fixed header of an RTP (not RTCP) packet; `None` for
    /// anything else (RFC 7983 demultiplexing, RFC 5761 §4 for RTCP).
    pub fn parse(d: &[u8]) -> Option<RtpHead> {
        if d.len() < 12 || d[0] >> 6 != 2 || (192..=223).contains(&d[1]) {
            return None;
        }
        Some(RtpHead {
            pt: d[1] & 0x7f,
            marker: d[1] & 0x80 != 0,
            seq: u16::from_be_bytes([d[2], d[3]]),
            ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        })
    }

    /// Writes a plain RTP packet with this header, RTP time `ts` and
    /// `payload` (for the relay baselines).
    pub fn write(&self, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(self.pt | if self.marker { 0x80 } else { 0 });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MediaSpec {
        MediaSpec {
            video_bps: 1_000_000,
            fps: 30,
            keyframe_interval: 60,
            width: 1280,
            height: 720,
            audio_bps: 32_000,
            pace_bps: 0,
            pace_burst_ms: 0,
        }
    }

    #[test]
    fn key_frames_carry_a_vp8_header_plenary_can_read() {
        let mut v = VideoSource::new(spec());
        let pkts = v.next_frame(42);
        assert!(pkts.len() > 1, "a key frame of a 1 Mbps stream spans packets");
        assert!(pkts.last().is_some_and(|p| p.marker));
        assert!(pkts[..pkts.len() - 1].iter().all(|p| !p.marker));
        let first = &pkts[0].payload;
        assert_eq!(first[0] & 0x10, 0x10, "S bit on the first packet");
        // After the 4-byte descriptor: frame tag, start code, 1280 x 720.
        let f = &first[4..];
        assert_eq!(f[0] & 1, 0);
        assert_eq!(&f[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([f[6], f[7]]) & 0x3fff, 1280);
        assert_eq!(u16::from_le_bytes([f[8], f[9]]) & 0x3fff, 720);
        assert_eq!(Stamp::find(first), Some(Stamp { frame: 0, sent_us: 42 }));
        let delta = v.next_frame(43);
        assert_eq!(delta[0].payload[4] & 1, 1, "then delta frames");
        assert_eq!(Stamp::find(&delta[0].payload), Some(Stamp { frame: 1, sent_us: 43 }));
    }

    #[test]
    fn average_bitrate_matches_the_spec() {
        let s = spec();
        let mut v = VideoSource::new(s);
        let bytes: usize = (0..s.fps * 10).flat_map(|i| v.next_frame(u64::from(i))).map(|p| p.payload.len()).sum();
        let bps = bytes as f64 * 8.0 / 10.0;
        assert!((bps - 1_000_000.0).abs() < 60_000.0, "{bps}");
    }

    #[test]
    fn rtp_header_round_trip_and_rtcp_is_not_rtp() {
        let h = RtpHead { pt: 96, marker: true, seq: 65535, ssrc: 0xdead_beef };
        let p = h.write(9000, b"abc");
        assert_eq!(RtpHead::parse(&p), Some(h));
        // An RTCP sender report (PT 200) is not RTP.
        let mut sr = p.clone();
        sr[1] = 200;
        assert_eq!(RtpHead::parse(&sr), None);
        assert_eq!(RtpHead::parse(&p[..11]), None);
    }
}
