//! Active speaker detection from the RFC 6464 audio level header extension,
//! which senders keep in clear (DESIGN.md, Media path): the SFU never needs
//! the audio itself.
//!
//! Each audio packet carries the level of its audio in -dBov (0 = loudest,
//! 127 = silence). Per participant the detector keeps the levels of the last
//! [`WINDOW`] and scores the share of that window spent above
//! [`SPEECH_LEVEL`]. The speaker changes only when another participant has
//! out-scored the current one by [`MARGIN`] continuously for [`HOLD`], so a
//! cough or a door does not move the spotlight, while a real change of
//! speaker is reported in well under a second.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use plenary_proto::ParticipantId;

/// How far back the score looks.
pub const WINDOW: Duration = Duration::from_millis(1000);
/// Levels at or louder than this (in -dBov, so numerically at most) count as speech.
pub const SPEECH_LEVEL: i8 = 50;
/// How long a challenger must lead before it becomes the speaker.
pub const HOLD: Duration = Duration::from_millis(300);
/// By how much (share of the window) a challenger must lead.
pub const MARGIN: f32 = 0.15;
/// Least score to be a speaker at all.
pub const MIN_SCORE: f32 = 0.25;

#[derive(Debug, Default)]
pub(crate) struct Levels {
    samples: VecDeque<(Instant, bool)>,
    /// The score at the last [`SpeakerDetector::evaluate`].
    pub(crate) score: f32,
    /// When the last packet at speech level arrived.
    pub(crate) last_loud: Option<Instant>,
    /// The sender puts its level in its packets: only such a sender can
    /// become the active speaker, and only its score counts in full for
    /// the loudest few (`loudest`).
    pub(crate) measured: bool,
}

impl Levels {
    fn push(&mut self, at: Instant, loud: bool) {
        self.samples.push_back((at, loud));
        if loud {
            self.last_loud = Some(at);
        }
        self.trim(at);
    }

    fn trim(&mut self, now: Instant) {
        while self.samples.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW) {
            self.samples.pop_front();
        }
    }

    /// Share of the window with speech; missing packets (DTX, muted) count as silence.
    fn score(&mut self, now: Instant) -> f32 {
        self.trim(now);
        // 50 packets a second is the usual Opus ptime of 20 ms.
        let expected = (WINDOW.as_millis() / 20) as f32;
        let loud = self.samples.iter().filter(|(_, l)| *l).count() as f32;
        (loud / expected.max(self.samples.len() as f32)).min(1.0)
    }
}

/// Per-room detector.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    pub(crate) levels: Vec<(ParticipantId, Levels)>,
    current: Option<ParticipantId>,
    challenger: Option<(ParticipantId, Instant)>,
    /// The room's loudest audio sources, most forwarded first (`loudest`).
    pub(crate) loudest: Vec<ParticipantId>,
}

impl SpeakerDetector {
    /// Records one audio packet's level (-dBov, 0..=127) from `who`; a
    /// packet without the RFC 6464 extension (`None`) counts as speech, so
    /// a sender that does not measure its level is never left unheard.
    /// Returns whether the packet counted as speech.
    pub fn record(&mut self, who: ParticipantId, level: Option<i8>, at: Instant) -> bool {
        let loud = level.is_none_or(|l| l.unsigned_abs() <= SPEECH_LEVEL.unsigned_abs());
        match self.levels.iter_mut().find(|(p, _)| *p == who) {
            Some((_, l)) => {
                l.measured |= level.is_some();
                l.push(at, loud);
            }
            None => {
                let mut l = Levels { measured: level.is_some(), ..Levels::default() };
                l.push(at, loud);
                self.levels.push((who, l));
            }
        }
        loud
    }

    /// Forgets a participant who left.
    pub fn remove(&mut self, who: ParticipantId) {
        self.levels.retain(|(p, _)| *p != who);
        self.loudest.retain(|p| *p != who);
        if self.current == Some(who) {
            self.current = None;
        }
        if self.challenger.is_some_and(|(p, _)| p == who) {
            self.challenger = None;
        }
    }

    /// The current speaker, if any.
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// Re-evaluates at `now`; returns the new speaker when it changed.
    pub fn evaluate(&mut self, now: Instant) -> Option<ParticipantId> {
        let mut best: Option<(ParticipantId, f32)> = None;
        let mut current_score = 0.0;
        for (p, l) in &mut self.levels {
            let s = l.score(now);
            l.score = s;
            if !l.measured {
                continue;
            }
            if Some(*p) == self.current {
                current_score = s;
            }
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((*p, s));
            }
        }
        let (top, top_score) = best?;
        let leads = Some(top) != self.current
            && top_score >= MIN_SCORE
            && (self.current.is_none() || top_score >= current_score + MARGIN);
        if !leads {
            self.challenger = None;
            return None;
        }
        match self.challenger {
            Some((p, since)) if p == top => {
                if now.saturating_duration_since(since) >= HOLD || self.current.is_none() {
                    self.current = Some(top);
                    self.challenger = None;
                    return Some(top);
                }
                None
            }
            _ => {
                self.challenger = Some((top, now));
                if self.current.is_none() {
                    self.current = Some(top);
                    self.challenger = None;
                    return Some(top);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);

    /// Feeds 20 ms packets for `dur` with the given levels, evaluating every
    /// 100 ms; returns (time of each change, new speaker).
    fn feed(
        d: &mut SpeakerDetector,
        t: &mut Instant,
        dur: Duration,
        levels: &[(ParticipantId, i8)],
    ) -> Vec<(Duration, ParticipantId)> {
        let start = *t;
        let mut changes = Vec::new();
        let end = *t + dur;
        let mut n = 0u32;
        while *t < end {
            for (p, l) in levels {
                d.record(*p, Some(*l), *t);
            }
            n += 1;
            if n.is_multiple_of(5)
                && let Some(s) = d.evaluate(*t)
            {
                changes.push((*t - start, s));
            }
            *t += Duration::from_millis(20);
        }
        changes
    }

    #[test]
    fn speaker_change_is_detected_within_a_second() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        let c = feed(&mut d, &mut t, Duration::from_secs(3), &[(A, 20), (B, 127), (C, 127)]);
        assert_eq!(c.first().map(|x| x.1), Some(A));
        let c = feed(&mut d, &mut t, Duration::from_secs(3), &[(A, 127), (B, 25), (C, 127)]);
        assert_eq!(c.len(), 1, "one change, no flapping: {c:?}");
        assert_eq!(c[0].1, B);
        assert!(c[0].0 <= Duration::from_secs(1), "detected after {:?}", c[0].0);
    }

    #[test]
    fn brief_noise_does_not_flap() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        feed(&mut d, &mut t, Duration::from_secs(2), &[(A, 30), (B, 127)]);
        assert_eq!(d.current(), Some(A));
        // B coughs for 200 ms while A keeps talking, then A pauses briefly.
        let c = feed(&mut d, &mut t, Duration::from_millis(200), &[(A, 30), (B, 10)]);
        assert!(c.is_empty(), "{c:?}");
        let c = feed(&mut d, &mut t, Duration::from_secs(2), &[(A, 30), (B, 127)]);
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(d.current(), Some(A));
        // Silence everywhere: the last speaker stays highlighted.
        let c = feed(&mut d, &mut t, Duration::from_secs(2), &[(A, 127), (B, 127)]);
        assert!(c.is_empty());
        d.remove(A);
        assert_eq!(d.current(), None);
    }
}
