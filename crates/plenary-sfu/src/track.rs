//! Published tracks (what a participant sends) and subscribed tracks (what
//! the SFU forwards to a participant).

use std::time::{Duration, Instant};

use plenary_proto::{MediaKind, ParticipantId};
use str0m::media::{Mid, Rid};

use crate::layer::{LayerInfo, LayerSelector};

/// A track a participant publishes: one m-line of its offer.
#[derive(Debug)]
pub(crate) struct TrackIn {
    pub mid: Mid,
    pub kind: MediaKind,
    /// Layers seen so far (one entry with `rid: None` without simulcast).
    pub layers: Vec<LayerInfo>,
    /// Last key frame request per layer, for the PLI rate limit.
    pub last_pli: Vec<(Option<Rid>, Instant)>,
    /// Bitrate and frame rate measurement, one per entry of `layers`.
    pub meters: Vec<RateMeter>,
    /// When the track was published.
    pub since: Instant,
}

/// Counts bytes and frames of one layer over windows of at least
/// [`RATE_WINDOW`].
#[derive(Debug, Clone)]
pub(crate) struct RateMeter {
    start: Instant,
    bytes: u64,
    frames: u32,
    /// Last time any subscriber needed this layer (for pausing).
    pub last_needed: Instant,
}

/// Shortest measurement window of [`RateMeter`].
pub(crate) const RATE_WINDOW: Duration = Duration::from_millis(1000);

impl RateMeter {
    fn new(now: Instant) -> Self {
        RateMeter { start: now, bytes: 0, frames: 0, last_needed: now }
    }

    /// Closes the window when it is long enough: returns (bits per second,
    /// frames per second) measured over it.
    pub fn sample(&mut self, now: Instant) -> Option<(u64, u32)> {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < RATE_WINDOW {
            return None;
        }
        let micros = elapsed.as_micros().max(1) as u64;
        let bps = self.bytes.saturating_mul(8_000_000) / micros;
        let fps = (u64::from(self.frames) * 1_000_000 / micros) as u32;
        self.start = now;
        self.bytes = 0;
        self.frames = 0;
        Some((bps, fps))
    }
}

impl TrackIn {
    pub fn new(mid: Mid, kind: MediaKind, now: Instant) -> Self {
        TrackIn { mid, kind, layers: Vec::new(), last_pli: Vec::new(), meters: Vec::new(), since: now }
    }

    /// Updates every layer's bitrate and frame rate whose measurement window
    /// is complete. A window without frames leaves the bitrate as it was (a
    /// paused layer keeps its last rate) and sets the frame rate to 0.
    pub fn measure(&mut self, now: Instant) {
        for (l, m) in self.layers.iter_mut().zip(&mut self.meters) {
            if let Some((bps, fps)) = m.sample(now) {
                if bps > 0 {
                    l.bitrate_bps = if l.bitrate_bps == 0 { bps } else { (l.bitrate_bps + bps) / 2 };
                }
                l.fps = fps;
            }
        }
    }

    /// Records a frame of `bytes` bytes of layer `rid`; `size` from a key
    /// frame header. Returns true when the set of layers changed (new layer,
    /// new size, or a layer back from silence).
    pub fn saw_frame(&mut self, rid: Option<&str>, size: Option<(u32, u32)>, bytes: usize, now: Instant) -> bool {
        let Some(i) = self.layers.iter().position(|l| l.rid.as_deref() == rid) else {
            self.layers.push(LayerInfo {
                rid: rid.map(str::to_owned),
                width: size.map(|s| s.0),
                height: size.map(|s| s.1),
                last_seen: now,
                bitrate_bps: 0,
                fps: 0,
                paused: false,
            });
            let mut meter = RateMeter::new(now);
            meter.bytes = bytes as u64;
            meter.frames = 1;
            self.meters.push(meter);
            return true;
        };
        if let Some(m) = self.meters.get_mut(i) {
            m.bytes += bytes as u64;
            m.frames += 1;
        }
        match self.layers.get_mut(i) {
            Some(l) => {
                let stale = now.saturating_duration_since(l.last_seen) >= crate::layer::LAYER_STALE_AFTER;
                l.last_seen = now;
                let mut changed = stale;
                if let Some((w, h)) = size
                    && (l.height != Some(h) || l.width != Some(w))
                {
                    l.width = Some(w);
                    l.height = Some(h);
                    changed = true;
                }
                changed
            }
            None => false,
        }
    }

    /// True (and records the request) when a key frame may be requested on
    /// `rid` now under the rate limit.
    pub fn may_request_keyframe(&mut self, rid: Option<Rid>, now: Instant, interval: Duration) -> bool {
        match self.last_pli.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.saturating_duration_since(*at) < interval => false,
            Some((_, at)) => {
                *at = now;
                true
            }
            None => {
                self.last_pli.push((rid, now));
                true
            }
        }
    }
}

/// Negotiation state of a subscribed track's m-line on the subscriber's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Needs an m-line; not yet offered.
    ToOpen,
    /// Offered, answer pending.
    Negotiating(Mid),
    /// Negotiated; media flows.
    Open(Mid),
    /// The source went away; the m-line must be stopped.
    ToStop(Mid),
    /// Stop offered, answer pending.
    NegotiatingStop(Mid),
}

/// A remote track forwarded to a subscriber.
#[derive(Debug)]
pub(crate) struct TrackOut {
    pub source: ParticipantId,
    pub source_mid: Mid,
    pub kind: MediaKind,
    pub state: OutState,
    /// The source left while the m-line was being negotiated.
    pub orphaned: bool,
    pub selector: LayerSelector,
    /// Until then the track gets at least its smallest layer whatever the
    /// subscriber's estimate: `adaptive::WARMUP` from when the
    /// track went live for the subscriber (its m-line negotiated), so a
    /// video starts at its first key frame.
    pub warm_until: Option<Instant>,
    /// Since when the allocation has wanted this forwarded video off, and
    /// the downlink estimate then (bits per second): see
    /// `adaptive::OFF_AFTER`.
    pub short_since: Option<(Instant, u64)>,
    /// Since when the forwarded layer has been above what the upgrade
    /// share of the estimate allows (kept by hysteresis only): see
    /// `adaptive::KEEP_FOR`.
    pub kept_since: Option<Instant>,
    /// The subscriber pinned this video (`layer_preference`): served first
    /// among videos when bandwidth is short.
    pub pinned: bool,
    /// Wall-clock instant given with the last frame written (see
    /// [`TrackOut::wallclock_for`]).
    last_wallclock: Option<Instant>,
    /// Next RTP sequence number of a VP8 track written packet by packet
    /// (`crate::fanout`); `None` before its first frame.
    pub next_seq: Option<u64>,
}

impl TrackOut {
    pub fn new(source: ParticipantId, source_mid: Mid, kind: MediaKind) -> Self {
        let clock = if kind == MediaKind::Audio { 48_000 } else { 90_000 };
        TrackOut {
            source,
            source_mid,
            kind,
            state: OutState::ToOpen,
            orphaned: false,
            selector: LayerSelector::new(clock),
            warm_until: None,
            short_since: None,
            kept_since: None,
            pinned: false,
            last_wallclock: None,
            next_seq: None,
        }
    }

    /// The wall-clock instant to write a frame with: its arrival time
    /// (`network_time`, the earliest of its packets), but never before the
    /// previous frame's. str0m queues written frames by this instant until
    /// the session next packetizes, so an earlier one would overtake frames
    /// written before it; that happens when a frame completes late (its
    /// lost packet retransmitted) and the frames waiting behind it, which
    /// arrived earlier, follow in the same instant. The subscriber would get
    /// them out of order with continuous sequence numbers and no VP8 picture
    /// ID: its decoder cannot see that a delta frame's reference has not
    /// come yet and shows block garbage until the next key frame.
    pub fn wallclock_for(&mut self, network_time: Instant) -> Instant {
        let at = self.last_wallclock.map_or(network_time, |last| last.max(network_time));
        self.last_wallclock = Some(at);
        at
    }

    /// The subscriber-side MID while media may flow on it.
    pub fn live_mid(&self) -> Option<Mid> {
        match self.state {
            OutState::Negotiating(m) | OutState::Open(m) => Some(m),
            _ => None,
        }
    }
}

/// Width and height from a VP8 key frame's clear header (RFC 6386 §9.1):
/// 3-byte frame tag with the key frame bit clear, start code 9d 01 2a, then
/// 14-bit width and height, little endian. These are exactly the bytes a
/// sender leaves in clear under SFrame.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_size_from_keyframe_header() {
        let kf = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0xff];
        assert_eq!(vp8_keyframe_size(&kf), Some((640, 360)));
        let mut delta = kf;
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_size(&delta), None);
        assert_eq!(vp8_keyframe_size(&kf[..5]), None);
    }
}
