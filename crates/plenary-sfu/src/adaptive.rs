//! Adaptive quality, run from the SFU's periodic tick: bandwidth-driven
//! layer allocation per subscriber, pausing simulcast layers nobody
//! receives, quality reports, and marking publishers whose uplink is too
//! weak for video.

use std::time::{Duration, Instant};

use plenary_proto::{MediaKind, ParticipantId, ServerMsg, TrackQuality};
use str0m::bwe::Bitrate;
use str0m::media::Mid;

use crate::Sfu;
use crate::alloc::{Demand, UPGRADE_SHARE, allocate, next_step, upgrades};
use crate::layer::{Allowance, LayerInfo};
use crate::sfu::Output;

/// How often layer rates are measured and allocations re-run.
pub const ADAPT_INTERVAL: Duration = Duration::from_millis(500);
/// How often each participant gets a [`ServerMsg::Quality`] report.
pub const QUALITY_REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// A layer no subscriber has needed for this long is paused.
pub const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// How often a subscriber limited by its estimate is probed for more.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// Bitrate assumed for an audio track not measured yet, bits per second
/// (Opus voice with RTP/SRTP/UDP overhead at 50 packets a second).
const AUDIO_FALLBACK_BPS: u64 = 40_000;
/// Below this video frame rate (frames per second, best layer) while audio
/// still arrives, an uplink is poor.
const POOR_FPS: u32 = 3;
/// At or above this frame rate a poor uplink is good again.
const GOOD_FPS: u32 = 8;
/// Audio counts as arriving when a packet came this recently.
const AUDIO_FRESH: Duration = Duration::from_secs(2);
/// How long after a subscriber's first estimate every video it watches
/// gets at least its smallest layer whatever the estimate says. Until the
/// subscriber receives that much, the estimator has seen too little traffic
/// to say more than ~1.5x what it carried (it is application-limited), so
/// trusting it would leave the second and later videos of a new meeting
/// off for seconds on a link with plenty of room; forwarding the smallest
/// layers is also how the estimate learns it can grow. Every video gets the
/// same grace for its first seconds after its m-line is negotiated (a new
/// subscriber's tracks, a video published into a running meeting).
pub(crate) const WARMUP: Duration = Duration::from_secs(5);
/// RTP header bytes of one forwarded audio packet beyond its Opus payload
/// (12 fixed, plus the MID, audio level and transport-wide sequence number
/// extensions with their padding): the audio track meters count payload,
/// str0m's pacer and the downlink count packets.
const AUDIO_RTP_HEADER_BYTES: u64 = 32;
/// Videos bypass str0m's pacer once audio plus the video the estimate
/// allows need more than this share of the estimate (str0m paces at 1.1 ×
/// the estimate, and counts the audio it sends unpaced against that) ...
const UNPACE_ABOVE_SHARE: f64 = 1.0;
/// ... and audio alone takes at least this share of it. They are paced
/// again when everything fits in [`PACE_BELOW_SHARE`] of the estimate or
/// audio takes less than [`CALM_AUDIO_SHARE`] of it.
const CROWDING_AUDIO_SHARE: f64 = 0.5;
/// See [`UNPACE_ABOVE_SHARE`].
const PACE_BELOW_SHARE: f64 = 0.8;
/// See [`UNPACE_ABOVE_SHARE`].
const CALM_AUDIO_SHARE: f64 = 0.4;
/// A forwarded layer is kept by the allocation's hysteresis (while it fits
/// `alloc::KEEP_SHARE` of the estimate, not `alloc::UPGRADE_SHARE`) for
/// this long at most: long enough to ride out a noisy estimate, short
/// enough that a link that really shrank steps down within 2 s although
/// str0m's estimate falls slowly.
const KEEP_FOR: Duration = Duration::from_millis(250);
/// A video being forwarded that the estimate no longer fits is turned off
/// only once the shortfall has lasted this long; until then it keeps its
/// smallest layer. A receiver starved of CPU stamps arrivals late, which
/// the delay-based estimator reads as congestion: its estimate collapses
/// with no network cause and climbs back within seconds, and a client that
/// publishes one layer has no smaller one to step down to, so its video
/// went off for 1-3 s (e.g. when the warm-up ended while the estimate was
/// still climbing from a bad start). On a link really too small the
/// estimate keeps falling: below [`FALLING`] × its value when the
/// shortfall began the video is turned off at once, as holding it fills
/// str0m's pacer queue and delays the videos kept by seconds. (So a dip
/// that falls that far is not ridden out either; telling it from a real
/// drop needs a loss or RTT signal.)
const OFF_AFTER: Duration = Duration::from_millis(1500);
/// ... or this long while the estimate climbs back: at least
/// [`RECOVERING`] × its value when the shortfall began.
const OFF_AFTER_RECOVERING: Duration = Duration::from_secs(4);
/// See [`OFF_AFTER_RECOVERING`].
const RECOVERING: f64 = 1.15;
/// See [`OFF_AFTER`].
const FALLING: f64 = 0.75;
/// A track must be this old before its uplink can be judged.
const JUDGE_AFTER: Duration = Duration::from_secs(3);

impl Sfu {
    /// The periodic part of adaptive quality; see the module docs.
    pub(crate) fn adapt(&mut self, now: Instant, report: bool) {
        let mut work = Vec::new();
        for p in self.participants.values_mut() {
            for t in &mut p.tracks_in {
                t.measure(now);
            }
        }
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for &id in &ids {
            work.extend(self.allocate(now, id));
            self.nudge_probe(now, id);
        }
        for &id in &ids {
            self.update_paused(now, id);
            self.judge_uplink(now, id);
            if report {
                self.report_quality(now, id);
                if tracing::enabled!(tracing::Level::DEBUG) {
                    self.log_send_queue(now, id);
                }
            }
        }
        self.process(work);
    }

    /// Records a new downlink estimate for `id` and re-allocates at once, so
    /// a drop is acted on at the estimator's pace. Returns the sessions to
    /// drain.
    pub(crate) fn on_estimate(&mut self, now: Instant, id: ParticipantId, estimate: Bitrate) -> Vec<ParticipantId> {
        let Some(p) = self.participants.get_mut(&id) else { return Vec::new() };
        p.estimate_bps = Some(estimate.as_u64());
        p.estimate_since.get_or_insert(now);
        tracing::debug!(participant = %id, estimate_bps = estimate.as_u64(), "downlink estimate");
        self.allocate(now, id)
    }

    /// Shares `sub`'s estimate among the videos it watches (see `alloc`),
    /// retargets the ones whose allowance changed, and tells str0m's
    /// estimator what to probe for. Returns the sessions to drain (the
    /// subscriber, publishers asked for key frames).
    pub(crate) fn allocate(&mut self, now: Instant, sub: ParticipantId) -> Vec<ParticipantId> {
        let Some(p) = self.participants.get(&sub) else { return Vec::new() };
        let Some(estimate) = p.estimate_bps else { return Vec::new() };
        let speaker = self.speakers.get(&p.room).and_then(|d| d.current());
        let mut audio_bps = 0;
        let mut audio_wire_bps = 0;
        let mut videos: Vec<(ParticipantId, Mid, Vec<LayerInfo>)> = Vec::new();
        let mut demands = Vec::new();
        let mut warm = Vec::new();
        let mut shortfalls = Vec::new();
        let mut kept_since = Vec::new();
        for t in p.tracks_out.iter().filter(|t| t.live_mid().is_some()) {
            let Some(layers) = self.source_layers(t.source, t.source_mid) else { continue };
            if t.kind == MediaKind::Audio {
                let measured = layers.iter().filter(|l| l.bitrate_bps > 0).max_by_key(|l| l.bitrate_bps);
                audio_bps += measured.map_or(AUDIO_FALLBACK_BPS, |l| l.bitrate_bps);
                audio_wire_bps += measured
                    .map_or(AUDIO_FALLBACK_BPS, |l| l.bitrate_bps + u64::from(l.fps) * AUDIO_RTP_HEADER_BYTES * 8);
                continue;
            }
            let steps = t.selector.ladder(layers, now);
            let ladder: Vec<u64> = steps.iter().map(|l| l.bitrate_or_guess()).collect();
            let current = match t.selector.allowance() {
                Allowance::Unlimited => ladder.len().checked_sub(1),
                // The layer allowed now, found by its RID: comparing the
                // cap it was allowed under with its fresh rate would call
                // it off whenever that rate crept up since, and lose the
                // hysteresis that keeps it.
                Allowance::UpTo(_) => [t.selector.target(), t.selector.current()]
                    .into_iter()
                    .flatten()
                    .find_map(|rid| steps.iter().position(|l| l.rid == *rid)),
                Allowance::Off => None,
            };
            kept_since.push(t.kept_since);
            shortfalls
                .push(t.selector.current().is_some().then_some(t.short_since).map(|s| s.unwrap_or((now, estimate))));
            let area = t.selector.preferred().map_or(0, |(w, h)| u64::from(w) * u64::from(h));
            warm.push(t.warm_until.is_some_and(|w| now < w));
            demands.push(Demand { pinned: t.pinned, speaker: speaker == Some(t.source), area, ladder, current });
            videos.push((t.source, t.source_mid, layers.to_vec()));
        }
        let up = upgrades(estimate, audio_bps, &demands);
        for ((d, up), since) in demands.iter_mut().zip(up).zip(&mut kept_since) {
            *since = d.current.filter(|c| up < Some(*c)).map(|_| since.unwrap_or(now));
            if since.is_some_and(|s| now - s >= KEEP_FOR) {
                d.current = None;
            }
        }
        let mut chosen = allocate(estimate, audio_bps, &demands);
        let video_by_estimate: u64 = chosen.iter().zip(&demands).filter_map(|(c, d)| c.map(|i| d.ladder[i])).sum();
        let warming = p.estimate_since.is_some_and(|t| now < t + WARMUP);
        let unpaced = self.pace_video(sub, estimate, audio_wire_bps, video_by_estimate);
        for (((pick, d), warm), shortfall) in chosen.iter_mut().zip(&demands).zip(warm).zip(&mut shortfalls) {
            if (warming || warm) && pick.is_none() && !d.ladder.is_empty() {
                *pick = Some(0);
            }
            // `shortfall` is set for the videos forwarded now: keep it for
            // the ones the estimate no longer fits, clear it for the rest.
            match shortfall {
                Some((since, start)) if pick.is_none() && !d.ladder.is_empty() => {
                    if keeps_on(now - *since, *start, estimate) {
                        *pick = Some(0);
                    }
                }
                _ => *shortfall = None,
            }
        }
        tracing::debug!(
            participant = %sub,
            estimate_bps = estimate,
            audio_bps,
            videos = demands.len(),
            with_ladder = demands.iter().filter(|d| !d.ladder.is_empty()).count(),
            on = chosen.iter().filter(|c| c.is_some()).count(),
            speaker = ?speaker,
            video_unpaced = unpaced,
            chosen = ?chosen,
            "allocation"
        );
        let wanted: u64 = demands.iter().filter_map(|d| d.ladder.last()).sum();
        let mut sent = audio_bps;
        let mut retarget = Vec::new();
        for ((((d, pick), (source, source_mid, layers)), shortfall), kept) in
            demands.iter().zip(&chosen).zip(videos).zip(shortfalls).zip(kept_since)
        {
            let allowance = match pick {
                Some(i) => {
                    sent += d.ladder[*i];
                    Allowance::UpTo(d.ladder[*i])
                }
                None if d.ladder.is_empty() => Allowance::Unlimited,
                None => Allowance::Off,
            };
            let Some(t) = self
                .participants
                .get_mut(&sub)
                .and_then(|p| p.tracks_out.iter_mut().find(|t| t.source == source && t.source_mid == source_mid))
            else {
                continue;
            };
            t.short_since = shortfall;
            t.kept_since = kept;
            if t.selector.allowance() != allowance {
                t.selector.set_allowance(allowance);
            }
            if let Some(rid) = t.selector.retarget(&layers, now) {
                retarget.push((source, source_mid, rid));
            }
        }
        if let Some(p) = self.participants.get_mut(&sub) {
            // Sustain (with padding, which str0m caps at the estimate) the
            // rate at which the next upgrade would be taken, so the
            // estimate can grow towards it; probe towards what the
            // rendered sizes ask for.
            let desired = ((audio_bps + wanted) as f64 / UPGRADE_SHARE) as u64;
            let step = next_step(&demands, &chosen);
            let minimum = if step == 0 { sent } else { ((sent + step) as f64 / UPGRADE_SHARE) as u64 };
            let rates = (minimum.min(desired), desired);
            if p.bwe_rates != rates
                && let Some(rtc) = p.rtc.as_mut()
            {
                p.bwe_rates = rates;
                rtc.bwe().set_bitrate(Bitrate::from(rates.0), Bitrate::from(rates.1.max(rates.0)));
            }
        }
        let mut work = vec![sub];
        for (source, source_mid, rid) in retarget {
            self.request_keyframe(now, source, source_mid, rid.as_deref());
            self.update_paused(now, source);
            work.push(source);
        }
        work
    }

    /// Decides whether the videos sent to `sub` bypass str0m's pacer, given
    /// its downlink estimate and what its audio (RTP packets) and the videos
    /// the estimate allows need, bits per second; returns the decision.
    ///
    /// str0m 0.25 paces at 1.1 × the estimate and sends audio unpaced, but
    /// adds every packet sent, audio included, to the debt its pacer drains
    /// at that rate; video leaves the queue only while the debt is small.
    /// So when audio alone takes most of the pacing rate (the audio of 29
    /// others is about 1.4 Mbit/s with headers, more than a starting
    /// estimate of 1 Mbit/s), video waits seconds in the queue, and the
    /// estimator, fed only audio, does not grow. Its API offers no pacing
    /// rate above 1.1 × the estimate, so such a subscriber's videos are
    /// sent unpaced too: the allocation, which already fits them to the
    /// estimate, is their limit, and the estimator sees them again. They
    /// are paced again (with hysteresis) once everything fits. Only audio
    /// crowding the pacer does this: a video above the estimate beside
    /// little audio (the first video, which a subscriber always gets, on a
    /// congested link) stays paced, as the pacer is what keeps its bursts
    /// from costing the audio.
    fn pace_video(&mut self, sub: ParticipantId, estimate: u64, audio: u64, video: u64) -> bool {
        let Some(p) = self.participants.get_mut(&sub) else { return false };
        let (need_share, audio_share) = if p.video_unpaced {
            (PACE_BELOW_SHARE, CALM_AUDIO_SHARE)
        } else {
            (UNPACE_ABOVE_SHARE, CROWDING_AUDIO_SHARE)
        };
        let estimate_f = estimate as f64;
        let unpaced = (audio + video) as f64 > estimate_f * need_share && audio as f64 >= estimate_f * audio_share;
        let changed = unpaced != p.video_unpaced;
        if changed {
            tracing::debug!(
                participant = %sub,
                estimate_bps = estimate,
                audio_bps = audio,
                video_bps = video,
                unpaced,
                "video pacing"
            );
            p.video_unpaced = unpaced;
        }
        // Video streams start paced: touch them (which makes str0m re-poll
        // the session) only to unpace them, new ones included, or on a change.
        if (unpaced || changed)
            && let Some(rtc) = p.rtc.as_mut()
        {
            let mut api = rtc.direct_api();
            for mid in p.tracks_out.iter().filter(|t| t.kind == MediaKind::Video).filter_map(|t| t.live_mid()) {
                if let Some(stream) = api.stream_tx_by_mid(mid, None) {
                    stream.set_unpaced(unpaced);
                }
            }
        }
        unpaced
    }

    /// Logs (debug) what waits in str0m's send queues for `id`: packets,
    /// bytes and the age of the oldest, in ms. Media that waits there for
    /// long reaches the subscriber late (its pacer, or a session not
    /// driven often enough).
    fn log_send_queue(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        let Some(rtc) = p.rtc.as_mut() else { return };
        let mut api = rtc.direct_api();
        let (mut packets, mut bytes, mut oldest) = (0, 0, None::<Instant>);
        for mid in p.tracks_out.iter().filter_map(|t| t.live_mid()) {
            let Some(info) = api.stream_tx_by_mid(mid, None).and_then(|s| s.queue_info()) else { continue };
            packets += info.packet_count();
            bytes += info.byte_size();
            oldest = match (oldest, info.first_unsent()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let oldest_ms = oldest.map(|t| now.saturating_duration_since(t).as_millis());
        tracing::debug!(participant = %id, packets, bytes, ?oldest_ms, unpaced = p.video_unpaced, "send queue");
    }

    /// While `id` gets less than it asks for, re-arms an allocation probe
    /// every [`PROBE_INTERVAL`]: str0m probes when the desired bitrate rises
    /// above the estimate, so the desired bitrate dips by 1% now and is
    /// restored by the next allocation. Without it a link that recovered
    /// would only be found by the estimator's slow additive increase.
    fn nudge_probe(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        let (Some(estimate), (minimum, desired)) = (p.estimate_bps, p.bwe_rates) else { return };
        if estimate >= desired || p.next_probe.is_some_and(|t| now < t) {
            return;
        }
        p.next_probe = Some(now + PROBE_INTERVAL);
        if let Some(rtc) = p.rtc.as_mut() {
            let dip = desired - desired / 100;
            p.bwe_rates = (minimum, dip);
            rtc.bwe().set_bitrate(Bitrate::from(minimum.min(dip)), Bitrate::from(dip));
        }
    }

    fn source_layers(&self, source: ParticipantId, mid: Mid) -> Option<&[LayerInfo]> {
        self.participants
            .get(&source)
            .and_then(|p| p.tracks_in.iter().find(|t| t.mid == mid))
            .map(|t| t.layers.as_slice())
    }

    /// Pauses the simulcast layers of `publisher` that no subscriber has
    /// received or waited for during [`PAUSE_AFTER`], resumes the ones now
    /// needed, and tells the publisher when the set changes. The smallest
    /// layer is never paused: it keeps every subscriber one key frame away
    /// from some picture, and it is how the SFU sees that the uplink works.
    pub(crate) fn update_paused(&mut self, now: Instant, publisher: ParticipantId) {
        let Some(p) = self.participants.get(&publisher) else { return };
        let room = p.room.clone();
        let mut needed: Vec<(Mid, Option<String>)> = Vec::new();
        for m in self.rooms.get(&room).into_iter().flatten() {
            let Some(sub) = self.participants.get(m) else { continue };
            for t in sub.tracks_out.iter().filter(|t| t.source == publisher && t.live_mid().is_some()) {
                for rid in [t.selector.current(), t.selector.pending_target()].into_iter().flatten() {
                    needed.push((t.source_mid, rid.clone()));
                }
            }
        }
        let Some(p) = self.participants.get_mut(&publisher) else { return };
        for t in p.tracks_in.iter_mut().filter(|t| t.kind == MediaKind::Video) {
            if t.layers.len() < 2 {
                continue;
            }
            let smallest =
                t.layers.iter().enumerate().min_by_key(|(_, l)| (l.height.unwrap_or(0), l.rid.clone())).map(|(i, _)| i);
            let mut changed = false;
            for (i, (l, meter)) in t.layers.iter_mut().zip(&mut t.meters).enumerate() {
                let is_needed = Some(i) == smallest || needed.iter().any(|(mid, rid)| *mid == t.mid && *rid == l.rid);
                if is_needed {
                    meter.last_needed = now;
                    if l.paused {
                        l.paused = false;
                        // Give the resumed layer time to arrive before it
                        // counts as gone.
                        l.last_seen = now;
                        changed = true;
                    }
                } else if !l.paused && now.saturating_duration_since(meter.last_needed) >= PAUSE_AFTER {
                    l.paused = true;
                    changed = true;
                }
            }
            if changed {
                let mut paused: Vec<String> =
                    t.layers.iter().filter(|l| l.paused).filter_map(|l| l.rid.clone()).collect();
                paused.sort();
                self.queue
                    .push_back(Output::Signal(publisher, ServerMsg::LayersPaused { mid: t.mid.to_string(), paused }));
            }
        }
    }

    /// Marks `id` as having a poor connection when its video stalled (best
    /// layer under [`POOR_FPS`]) while its audio still arrives, and clears
    /// the mark at [`GOOD_FPS`]; tells the room on every change.
    fn judge_uplink(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        let audio_fresh = p
            .tracks_in
            .iter()
            .filter(|t| t.kind == MediaKind::Audio)
            .flat_map(|t| &t.layers)
            .any(|l| now.saturating_duration_since(l.last_seen) < AUDIO_FRESH);
        let Some(video) = p.tracks_in.iter().find(|t| t.kind == MediaKind::Video) else { return };
        if now.saturating_duration_since(video.since) < JUDGE_AFTER {
            return;
        }
        let fps = video
            .layers
            .iter()
            .filter(|l| now.saturating_duration_since(l.last_seen) < Duration::from_secs(1))
            .map(|l| l.fps)
            .max()
            .unwrap_or(0);
        let poor = if p.video_muted {
            false
        } else if p.poor_uplink {
            fps < GOOD_FPS
        } else {
            audio_fresh && fps < POOR_FPS
        };
        if poor == p.poor_uplink {
            return;
        }
        p.poor_uplink = poor;
        tracing::info!(participant = %id, poor, "uplink quality changed");
        for m in self.rooms.get(&p.room).into_iter().flatten() {
            self.queue.push_back(Output::Signal(*m, ServerMsg::ConnectionQuality { participant_id: id, poor }));
        }
    }

    /// Sends `id` its downlink estimate and the layer of each video it receives.
    fn report_quality(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get(&id) else { return };
        if p.rtc.is_none() || p.tracks_out.is_empty() {
            return;
        }
        let mut tracks = Vec::new();
        for t in p.tracks_out.iter().filter(|t| t.kind == MediaKind::Video) {
            let Some(mid) = t.live_mid() else { continue };
            let rid = t.selector.current().cloned().flatten();
            let layer = t.selector.current().and_then(|cur| {
                self.source_layers(t.source, t.source_mid).and_then(|ls| ls.iter().find(|l| l.rid == *cur)).cloned()
            });
            let limited = match t.selector.allowance() {
                Allowance::Unlimited => false,
                Allowance::Off => !matches!(t.selector.preferred(), Some((0, 0))),
                Allowance::UpTo(_) => {
                    // Below the top of its ladder (by RID, as in `allocate`).
                    let layers = self.source_layers(t.source, t.source_mid).unwrap_or_default();
                    t.selector.ladder(layers, now).last().is_some_and(|top| t.selector.target() != Some(&top.rid))
                }
            };
            tracks.push(TrackQuality {
                mid: mid.to_string(),
                participant_id: t.source,
                rid,
                height: layer.as_ref().and_then(|l| l.height),
                bitrate_bps: layer.map_or(0, |l| l.bitrate_bps),
                limited,
            });
        }
        let msg = ServerMsg::Quality { estimate_bps: p.estimate_bps, tracks };
        self.queue.push_back(Output::Signal(id, msg));
    }
}

/// Whether a video being forwarded that the estimate (bits per second) has
/// not fitted for `short_for`, since it was `start`, stays on at its
/// smallest layer: see [`OFF_AFTER`].
fn keeps_on(short_for: Duration, start: u64, estimate: u64) -> bool {
    let (estimate, start) = (estimate as f64, start as f64);
    if estimate < start * FALLING {
        return false;
    }
    short_for < OFF_AFTER || (short_for < OFF_AFTER_RECOVERING && estimate >= start * RECOVERING)
}
