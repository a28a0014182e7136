//! Simulcast layer selection and stream continuity for one subscriber's
//! view of one published video track (RFC 8853 simulcast, RFC 8851 RID).
//!
//! A publisher sends up to three encodings of the same video, told apart by
//! RID. A subscriber receives one of them at a time through one outgoing
//! stream. [`LayerSelector`] decides which encoding to forward, switches only
//! on a key frame of the new layer (so the decoder never sees a delta frame
//! it cannot decode), and rewrites RTP timestamps so the subscriber sees one
//! continuous, monotonic timeline across switches. Sequence numbers and SSRC
//! of the outgoing stream are assigned by str0m's packetizer, so they are
//! continuous by construction.

use std::time::{Duration, Instant};

/// How a published layer looks, as far as the SFU can know without
/// decrypting anything: its RID and, once a key frame was seen, its size in
/// pixels (from the clear VP8 key frame header, RFC 6386 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// RID; `None` for a track sent without simulcast.
    pub rid: Option<String>,
    /// Width in pixels, when known.
    pub width: Option<u32>,
    /// Height in pixels, when known.
    pub height: Option<u32>,
    /// When media of this layer last arrived.
    pub last_seen: Instant,
    /// Bitrate of this layer as received, bits per second, averaged over
    /// about a second; 0 until measured. Kept while the layer is paused.
    pub bitrate_bps: u64,
    /// Frames per second received in the last measurement window.
    pub fps: u32,
    /// The SFU told the publisher to stop sending this layer because no
    /// subscriber receives it ([`plenary_proto::ServerMsg::LayersPaused`]).
    /// A paused layer still counts as available: choosing it resumes it.
    pub paused: bool,
}

impl LayerInfo {
    /// True when the layer can be chosen at `now`: media arrived recently,
    /// or the SFU itself paused it.
    pub fn available(&self, now: Instant) -> bool {
        self.paused || now.saturating_duration_since(self.last_seen) < LAYER_STALE_AFTER
    }

    /// The measured bitrate, bits per second, or before any measurement a
    /// guess from the size: 0.08 bits per pixel at 30 frames a second
    /// (about 35 kbit/s at 160×90, 550 kbit/s at 640×360), 500 kbit/s when
    /// the size is unknown too.
    pub fn bitrate_or_guess(&self) -> u64 {
        if self.bitrate_bps > 0 {
            return self.bitrate_bps;
        }
        match (self.width, self.height) {
            (Some(w), Some(h)) => u64::from(w) * u64::from(h) * 30 * 8 / 100,
            _ => 500_000,
        }
    }
}

/// How much of a subscriber's downlink one video may use, as decided by the
/// bandwidth allocation (see `alloc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// No bandwidth estimate: the rendered size alone decides.
    Unlimited,
    /// Layers up to this bitrate, bits per second.
    UpTo(u64),
    /// No layer fits: forward no video.
    Off,
}

/// A layer that has not delivered media for this long is treated as paused
/// by its publisher and is not selected.
pub const LAYER_STALE_AFTER: Duration = Duration::from_millis(1500);

/// What to do with one incoming frame of the source track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drop the frame: it is not of the forwarded layer.
    Drop,
    /// Drop the frame: the forwarded layer lost frames (or the target layer
    /// has not sent a key frame yet), so nothing but a key frame may pass;
    /// the caller should request one (PLI, rate limited).
    WaitKeyframe,
    /// Forward the frame with this (rewritten) RTP time, in units of the
    /// codec clock.
    Forward {
        /// RTP time to write on the outgoing stream.
        rtp_time: u64,
        /// This frame starts a newly selected layer.
        switched: bool,
    },
}

/// Per-subscriber, per-track forwarding state.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    /// Rendered size the subscriber asked for, device pixels. `None` until
    /// the subscriber tells; `Some((0, 0))` when the video is hidden.
    preferred: Option<(u32, u32)>,
    /// Layer being forwarded now (`Some(None)` = the single non-simulcast
    /// layer), `None` before the first key frame.
    current: Option<Option<String>>,
    /// Layer wanted next.
    target: Option<Option<String>>,
    /// Offset added to incoming RTP time of the current layer.
    offset: i64,
    /// Last RTP time written out and when.
    last_out: Option<(u64, Instant)>,
    /// Clock rate of the codec, Hz.
    clock_rate: u32,
    /// The current layer lost frames upstream: forward nothing until its
    /// next key frame. The outgoing stream's sequence numbers and VP8
    /// picture ids are continuous, so a receiver could not tell that a
    /// reference frame is missing and would decode garbage.
    broken: bool,
    /// Bandwidth cap from the allocation.
    allowance: Allowance,
}

impl LayerSelector {
    /// A selector for a stream with the given RTP clock rate (90 000 for video).
    pub fn new(clock_rate: u32) -> Self {
        LayerSelector {
            preferred: None,
            current: None,
            target: None,
            offset: 0,
            last_out: None,
            clock_rate,
            broken: false,
            allowance: Allowance::Unlimited,
        }
    }

    /// Sets the bandwidth cap; takes effect at the next [`Self::retarget`].
    pub fn set_allowance(&mut self, allowance: Allowance) {
        self.allowance = allowance;
    }

    /// The current bandwidth cap.
    pub fn allowance(&self) -> Allowance {
        self.allowance
    }

    /// The rendered size last asked for (`(0, 0)`: hidden), if any.
    pub fn preferred(&self) -> Option<(u32, u32)> {
        self.preferred
    }

    /// The layers worth forwarding, smallest first, ending with the one the
    /// rendered size asks for (ignoring bandwidth): what the allocation
    /// chooses among. Empty when the video is hidden or nothing is available.
    pub fn ladder<'a>(&self, layers: &'a [LayerInfo], now: Instant) -> Vec<&'a LayerInfo> {
        if matches!(self.preferred, Some((0, 0))) {
            return Vec::new();
        }
        let mut available: Vec<&LayerInfo> = layers.iter().filter(|l| l.available(now)).collect();
        let Some(top) = choose(&available, self.preferred.map(|p| p.1)) else {
            return Vec::new();
        };
        let top_rank = layer_order(top);
        available.retain(|l| layer_order(l) <= top_rank);
        available.sort_by_key(|l| layer_order(l));
        available
    }

    /// Sets the subscriber's rendered size; `(0, 0)` pauses forwarding.
    pub fn set_preferred(&mut self, width: u32, height: u32) {
        self.preferred = Some((width, height));
    }

    /// The layer being forwarded, if any (`Some(None)` for a non-simulcast track).
    pub fn current(&self) -> Option<&Option<String>> {
        self.current.as_ref()
    }

    /// The layer chosen at the last [`Self::retarget`] (`Some(None)` for a
    /// non-simulcast track): what is forwarded, or will be from the next
    /// key frame; `None` when nothing is.
    pub fn target(&self) -> Option<&Option<String>> {
        self.target.as_ref()
    }

    /// The layer the selector is waiting to switch to, if it differs from
    /// the current one.
    pub fn pending_target(&self) -> Option<&Option<String>> {
        match (&self.target, &self.current) {
            (Some(t), Some(c)) if t == c => None,
            (t, _) => t.as_ref(),
        }
    }

    /// Chooses the target layer among `layers` (those seen recently) for the
    /// current preference. Returns `Some(rid)` when the target changed to a
    /// layer, so the caller can request a key frame (PLI) on it.
    pub fn retarget(&mut self, layers: &[LayerInfo], now: Instant) -> Option<Option<String>> {
        let live: Vec<&LayerInfo> = layers
            .iter()
            .filter(|l| l.available(now))
            .filter(|l| match self.allowance {
                Allowance::Unlimited => true,
                Allowance::UpTo(max) => l.bitrate_or_guess() <= max,
                Allowance::Off => false,
            })
            .collect();
        let new_target = if matches!(self.preferred, Some((0, 0))) {
            None
        } else {
            choose(&live, self.preferred.map(|p| p.1)).map(|l| l.rid.clone())
        };
        if new_target == self.target {
            return None;
        }
        self.target = new_target.clone();
        if new_target.is_none() {
            // Hidden (or nothing live): stop forwarding at once.
            self.current = None;
        }
        new_target
    }

    /// Decides what to do with one incoming frame of layer `rid` with RTP
    /// time `rtp_time` (codec clock units, unwrapped) received at `now`.
    /// `contiguous` is false when frames of that layer were lost before it.
    ///
    /// Frames of the current layer are forwarded until a key frame of the
    /// target layer arrives; then the selector switches. After a loss on the
    /// current layer only its next key frame passes.
    pub fn on_frame(
        &mut self,
        rid: &Option<String>,
        rtp_time: u64,
        keyframe: bool,
        contiguous: bool,
        now: Instant,
    ) -> Verdict {
        let Some(target) = &self.target else {
            return Verdict::Drop;
        };
        let mut switched = false;
        if self.current.as_ref() != Some(rid) {
            if target != rid {
                return Verdict::Drop;
            }
            if !keyframe {
                return Verdict::WaitKeyframe;
            }
            self.current = Some(rid.clone());
            self.offset = self.offset_for(rtp_time, now);
            self.broken = false;
            switched = true;
        } else if keyframe {
            self.broken = false;
        } else if !contiguous || self.broken {
            self.broken = true;
            return Verdict::WaitKeyframe;
        }
        let out = (rtp_time as i64).saturating_add(self.offset).max(0) as u64;
        if let Some((last, _)) = self.last_out
            && !switched
        {
            if out == last {
                // The frame just forwarded, again (a layer's frames have
                // distinct RTP times): the subscriber has it, and a second
                // copy would only cost its bandwidth and reach its SFrame
                // replay check.
                return Verdict::Drop;
            }
            if out < last {
                // A frame from before the last one sent: it cannot be shown
                // in order, and what follows may reference it.
                self.broken = true;
                return Verdict::WaitKeyframe;
            }
        }
        self.last_out = Some((out, now));
        Verdict::Forward { rtp_time: out, switched }
    }

    /// The frame last answered with [`Verdict::Forward`] never reached the
    /// subscriber's session (no writer yet, no matching payload type, or
    /// the session refused it). The selector counted it as sent, and the
    /// frames after it may reference it: forward nothing more on this
    /// stream until a key frame, as after an upstream loss.
    pub fn write_failed(&mut self) {
        self.broken = true;
    }

    /// Offset that makes the first frame of a new layer continue the
    /// outgoing timeline: last written time plus the wall-clock gap (at least
    /// one tick), so timestamps stay monotonic.
    fn offset_for(&self, rtp_time: u64, now: Instant) -> i64 {
        match self.last_out {
            None => 0,
            Some((last, at)) => {
                let gap = now.saturating_duration_since(at);
                let ticks = (gap.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000).max(1);
                (last + ticks) as i64 - rtp_time as i64
            }
        }
    }
}

/// Picks the layer that best fits a rendered height: the smallest layer at
/// least as tall as the tile (with 10% slack), else the largest. Without a
/// preference yet, the smallest layer (fast start, cheap). When some layer's
/// size is unknown (no key frame seen yet), RIDs follow the common convention
/// q (quarter) < h (half) < f (full) and the height picks among them.
fn choose<'a>(live: &[&'a LayerInfo], height: Option<u32>) -> Option<&'a LayerInfo> {
    let mut sorted: Vec<&LayerInfo> = live.to_vec();
    let sizes_known = sorted.iter().all(|l| l.height.is_some());
    if sizes_known {
        sorted.sort_by_key(|l| (l.height.unwrap_or(0), rid_rank(l)));
    } else {
        sorted.sort_by_key(|l| rid_rank(l));
    }
    let Some(h) = height else {
        return sorted.first().copied();
    };
    if sizes_known {
        let want = (u64::from(h) * 9 / 10) as u32;
        return sorted.iter().find(|l| l.height.is_some_and(|lh| lh >= want)).or(sorted.last()).copied();
    }
    let wanted_rank = match h {
        0..=200 => 0,
        201..=400 => 1,
        _ => 2,
    };
    sorted.iter().rev().find(|l| rid_rank(l) <= wanted_rank).or(sorted.first()).copied()
}

/// Sort key from smallest to largest layer: height when known, else RID.
fn layer_order(l: &LayerInfo) -> (u32, u32) {
    (l.height.unwrap_or(0), rid_rank(l))
}

fn rid_rank(l: &LayerInfo) -> u32 {
    match l.rid.as_deref() {
        Some("q") => 0,
        Some("h") | None => 1,
        Some("f") => 2,
        Some(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rid: &str, h: Option<u32>, at: Instant) -> LayerInfo {
        LayerInfo {
            rid: Some(rid.into()),
            width: h.map(|h| h * 16 / 9),
            height: h,
            last_seen: at,
            bitrate_bps: u64::from(h.unwrap_or(0)) * 1000,
            fps: 30,
            paused: false,
        }
    }

    #[test]
    fn picks_by_rendered_height() {
        let now = Instant::now();
        let layers = [layer("q", Some(90), now), layer("h", Some(180), now), layer("f", Some(360), now)];
        let mut s = LayerSelector::new(90_000);
        assert_eq!(s.retarget(&layers, now), Some(Some("q".into())), "smallest before any preference");
        s.set_preferred(640, 360);
        assert_eq!(s.retarget(&layers, now), Some(Some("f".into())));
        s.set_preferred(320, 170);
        assert_eq!(s.retarget(&layers, now), Some(Some("h".into())));
        s.set_preferred(1920, 1080);
        assert_eq!(s.retarget(&layers, now), Some(Some("f".into())));
        assert_eq!(s.retarget(&layers, now), None, "unchanged target is not reported");
        s.set_preferred(0, 0);
        assert_eq!(s.retarget(&layers, now), None);
        assert_eq!(s.on_frame(&Some("f".into()), 1000, true, true, now), Verdict::Drop);
    }

    #[test]
    fn allowance_caps_the_layer_and_paused_layers_stay_choosable() {
        let now = Instant::now();
        let old = now - Duration::from_secs(5);
        let mut layers = [layer("q", Some(90), now), layer("h", Some(180), now), layer("f", Some(360), old)];
        layers[2].paused = true;
        let mut s = LayerSelector::new(90_000);
        s.set_preferred(640, 360);
        let ladder: Vec<_> = s.ladder(&layers, now).iter().map(|l| l.rid.clone()).collect();
        assert_eq!(ladder, [Some("q".into()), Some("h".into()), Some("f".into())]);
        assert_eq!(s.retarget(&layers, now), Some(Some("f".into())), "a paused layer can be chosen");
        s.set_allowance(Allowance::UpTo(200_000));
        assert_eq!(s.retarget(&layers, now), Some(Some("h".into())));
        s.set_allowance(Allowance::UpTo(100_000));
        assert_eq!(s.retarget(&layers, now), Some(Some("q".into())));
        s.set_allowance(Allowance::Off);
        assert_eq!(s.retarget(&layers, now), None);
        assert_eq!(s.current(), None, "nothing forwarded without bandwidth");
        s.set_preferred(320, 180);
        assert_eq!(s.ladder(&layers, now).len(), 2, "the ladder stops at the rendered size");
        s.set_preferred(0, 0);
        assert!(s.ladder(&layers, now).is_empty());
    }

    #[test]
    fn stale_layers_are_skipped() {
        let now = Instant::now();
        let old = now - Duration::from_secs(5);
        let layers = [layer("q", Some(90), now), layer("f", Some(360), old)];
        let mut s = LayerSelector::new(90_000);
        s.set_preferred(640, 360);
        assert_eq!(s.retarget(&layers, now), Some(Some("q".into())));
    }

    #[test]
    fn switch_waits_for_keyframe_and_keeps_time_monotonic() {
        let t0 = Instant::now();
        let q = Some("q".to_string());
        let f = Some("f".to_string());
        let mut s = LayerSelector::new(90_000);
        s.retarget(&[layer("q", None, t0), layer("f", None, t0)], t0);
        assert_eq!(s.on_frame(&q, 10_000, false, true, t0), Verdict::WaitKeyframe, "no key frame yet");
        assert!(matches!(
            s.on_frame(&q, 13_000, true, true, t0),
            Verdict::Forward { rtp_time: 13_000, switched: true }
        ));
        s.set_preferred(1280, 720);
        assert_eq!(s.retarget(&[layer("q", None, t0), layer("f", None, t0)], t0), Some(f.clone()));
        let t1 = t0 + Duration::from_millis(33);
        // The other layer's timeline is unrelated (random RTP offset).
        assert_eq!(s.on_frame(&f, 900_000, false, true, t1), Verdict::WaitKeyframe, "delta frame of target");
        assert!(matches!(s.on_frame(&q, 16_000, false, true, t1), Verdict::Forward { rtp_time: 16_000, .. }));
        let t2 = t1 + Duration::from_millis(33);
        let Verdict::Forward { rtp_time, switched } = s.on_frame(&f, 903_000, true, true, t2) else { panic!() };
        assert!(switched);
        assert_eq!(rtp_time, 16_000 + 2970, "continues from the last output by the wall-clock gap");
        assert_eq!(s.on_frame(&q, 19_000, false, true, t2), Verdict::Drop, "old layer dropped after switch");
        let Verdict::Forward { rtp_time: next, .. } = s.on_frame(&f, 906_000, false, true, t2) else { panic!() };
        assert_eq!(next, rtp_time + 3000);
    }

    /// A selector on its only layer "h", whose key frame at RTP time 0 it
    /// has forwarded.
    fn forwarding_one_layer() -> (LayerSelector, Option<String>, Instant) {
        let t0 = Instant::now();
        let h = Some("h".to_string());
        let mut s = LayerSelector::new(90_000);
        s.retarget(&[layer("h", Some(180), t0)], t0);
        assert!(matches!(s.on_frame(&h, 0, true, true, t0), Verdict::Forward { .. }));
        (s, h, t0)
    }

    #[test]
    fn after_a_loss_only_a_key_frame_passes() {
        let (mut s, h, t0) = forwarding_one_layer();
        assert!(matches!(s.on_frame(&h, 3000, false, true, t0), Verdict::Forward { .. }));
        assert_eq!(s.on_frame(&h, 9000, false, false, t0), Verdict::WaitKeyframe, "gap upstream");
        assert_eq!(s.on_frame(&h, 12000, false, true, t0), Verdict::WaitKeyframe, "still broken");
        assert!(matches!(s.on_frame(&h, 15000, true, true, t0), Verdict::Forward { .. }), "key frame heals");
        assert!(matches!(s.on_frame(&h, 18000, false, true, t0), Verdict::Forward { .. }));
        assert_eq!(s.on_frame(&h, 17000, false, true, t0), Verdict::WaitKeyframe, "late frame breaks the chain");
    }

    #[test]
    fn a_frame_that_could_not_be_written_breaks_the_chain() {
        let (mut s, h, t0) = forwarding_one_layer();
        assert!(matches!(s.on_frame(&h, 3000, false, true, t0), Verdict::Forward { .. }));
        s.write_failed();
        assert_eq!(s.on_frame(&h, 6000, false, true, t0), Verdict::WaitKeyframe, "its successor needs it");
        assert!(matches!(s.on_frame(&h, 9000, true, true, t0), Verdict::Forward { .. }), "key frame heals");
        assert!(matches!(s.on_frame(&h, 12000, false, true, t0), Verdict::Forward { .. }));
    }

    #[test]
    fn a_frame_is_forwarded_once() {
        let (mut s, h, t0) = forwarding_one_layer();
        assert_eq!(s.on_frame(&h, 0, true, true, t0), Verdict::Drop, "a copy of the key frame");
        assert!(matches!(s.on_frame(&h, 3000, false, true, t0), Verdict::Forward { .. }));
        assert_eq!(s.on_frame(&h, 3000, false, true, t0), Verdict::Drop, "a copy of the delta frame");
        assert!(
            matches!(s.on_frame(&h, 6000, false, true, t0), Verdict::Forward { .. }),
            "a copy neither breaks the chain nor needs a key frame"
        );
    }
}
