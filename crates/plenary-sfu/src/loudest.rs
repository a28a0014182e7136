//! Forwarding only the loudest few audio streams of a room.
//!
//! With everyone's audio forwarded, a room of N speakers costs the SFU
//! N × (N − 1) audio streams and every subscriber N − 1 of them to receive,
//! decrypt and mix, though nobody follows more than two or three voices at
//! once. As conferencing services do (Jitsi's "route loudest only", three
//! by default), each subscriber gets only the `n` loudest other speakers
//! (`SfuConfig::audio_streams`), ranked from the RFC 6464 levels the SFU
//! reads in clear (DESIGN.md, Media path); it never needs the audio.
//!
//! Per room the detector keeps the `n + 1` loudest sources (so a
//! subscriber who is one of them still gets `n` others), re-ranked on every
//! speaker evaluation (100 ms) by the share of the last second spent
//! speaking ([`crate::speaker::WINDOW`]), with [`STAY_BONUS`] for those
//! already forwarded so that two voices of equal level do not take turns
//! every 100 ms. A source that starts to speak while one of the slots is
//! held by someone who has mostly stopped takes that slot at its first
//! packet at speech level ([`SpeakerDetector::admit`]): the first syllable
//! of someone answering a question is not cut.
//!
//! The levels are the senders' word: the SFU cannot check them against the
//! audio, which it cannot decrypt. A participant who claims to speak all
//! the time keeps a slot (as one who shouts would); `n` participants
//! colluding that way would silence the others for everyone. A source
//! that sends no level is ranked below anyone whose level says they speak
//! ([`UNMEASURED_SCORE`]).

use std::time::Instant;

use plenary_proto::ParticipantId;

use crate::speaker::{Levels, MIN_SCORE, SpeakerDetector};

/// Score bonus (share of the window) of a source already forwarded, when
/// the room is re-ranked: a challenger must speak this much more to take
/// its slot.
pub const STAY_BONUS: f32 = 0.15;

/// Highest score of a source whose packets carry no RFC 6464 level.
pub const UNMEASURED_SCORE: f32 = 0.5;

impl SpeakerDetector {
    /// Re-ranks the room's audio sources from the scores of the last
    /// [`SpeakerDetector::evaluate`] and keeps the `slots` loudest.
    pub(crate) fn rank_loudest(&mut self, slots: usize) {
        let held = |p: &ParticipantId| self.loudest.contains(p);
        // A source that sends no level counts as speaking all the time: it
        // is heard when a slot is free, but its score is capped so that it
        // never displaces someone whose level says they speak.
        let score = |l: &Levels| if l.measured { l.score } else { l.score.min(UNMEASURED_SCORE) };
        let mut ranked: Vec<(ParticipantId, f32, Option<Instant>, bool)> =
            self.levels.iter().map(|(p, l)| (*p, score(l), l.last_loud, held(p))).collect();
        let key = |(_, score, _, held): &(ParticipantId, f32, Option<Instant>, bool)| {
            score + if *held { STAY_BONUS } else { 0.0 }
        };
        // Louder first; at equal score the one heard last, then the one
        // already forwarded.
        ranked.sort_by(|a, b| key(b).total_cmp(&key(a)).then(b.2.cmp(&a.2)).then(b.3.cmp(&a.3)));
        self.loudest = ranked.into_iter().take(slots).map(|(p, ..)| p).collect();
    }

    /// `who` just sent a packet at speech level: if it is not forwarded
    /// and a slot is free or held by a source that has mostly stopped
    /// speaking (score under [`MIN_SCORE`] at the last evaluation), it takes
    /// that slot now rather than at the next re-ranking.
    pub(crate) fn admit(&mut self, who: ParticipantId, slots: usize) {
        if self.loudest.contains(&who) {
            return;
        }
        if self.loudest.len() < slots {
            self.loudest.push(who);
            return;
        }
        let score = |p: &ParticipantId| self.levels.iter().find(|(q, _)| q == p).map_or(0.0, |(_, l)| l.score);
        let weakest = self.loudest.iter().enumerate().map(|(i, p)| (i, score(p))).min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, s)) = weakest
            && s < MIN_SCORE
        {
            self.loudest[i] = who;
        }
    }

    /// Whether `subscriber` is sent `source`'s audio when it gets the `n`
    /// loudest other sources of the room.
    pub fn forwards_audio(&self, subscriber: ParticipantId, source: ParticipantId, n: usize) -> bool {
        self.loudest.iter().filter(|p| **p != subscriber).take(n).any(|p| *p == source)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `n` = 2 streams per subscriber: 3 slots per room.
    const N: usize = 2;
    const SILENT: i8 = 127;
    const SPEECH: i8 = 30;

    fn p(i: u64) -> ParticipantId {
        ParticipantId(i)
    }

    /// 20 ms packets from sources 1..=levels.len() for `dur`, as the SFU
    /// does it: `record` + `admit` per packet, `evaluate` + `rank_loudest`
    /// every 100 ms.
    fn run(d: &mut SpeakerDetector, t: &mut Instant, dur: Duration, levels: &[i8]) {
        let end = *t + dur;
        let mut n = 0u32;
        while *t < end {
            for (i, l) in levels.iter().enumerate() {
                if d.record(p(i as u64 + 1), Some(*l), *t) {
                    d.admit(p(i as u64 + 1), N + 1);
                }
            }
            n += 1;
            if n.is_multiple_of(5) {
                d.evaluate(*t);
                d.rank_loudest(N + 1);
            }
            *t += Duration::from_millis(20);
        }
    }

    fn heard_by(d: &SpeakerDetector, subscriber: u64, sources: u64) -> Vec<u64> {
        (1..=sources).filter(|s| *s != subscriber && d.forwards_audio(p(subscriber), p(*s), N)).collect()
    }

    #[test]
    fn everyone_hears_the_loudest_others() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        // 1, 2 and 3 speak; 4 and 5 are silent.
        run(&mut d, &mut t, Duration::from_secs(2), &[SPEECH, SPEECH, SPEECH, SILENT, SILENT]);
        assert_eq!(heard_by(&d, 4, 5).len(), N, "a listener gets {N} streams");
        assert!(heard_by(&d, 4, 5).iter().all(|s| *s <= 3), "{:?}", heard_by(&d, 4, 5));
        // A speaker among the slots hears the other two speakers.
        assert_eq!(heard_by(&d, 1, 5), vec![2, 3]);
        assert_eq!(heard_by(&d, 3, 5), vec![1, 2]);
    }

    #[test]
    fn someone_who_starts_talking_is_heard_at_once_when_a_slot_is_quiet() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        run(&mut d, &mut t, Duration::from_secs(2), &[SPEECH, SILENT, SILENT, SILENT, SILENT]);
        run(&mut d, &mut t, Duration::from_secs(1), &[SPEECH, SPEECH, SPEECH, SILENT, SILENT]);
        // 1 and 2 fall silent; 5 answers: its first packet takes a slot.
        run(&mut d, &mut t, Duration::from_secs(2), &[SILENT, SILENT, SPEECH, SILENT, SILENT]);
        let before = t;
        run(&mut d, &mut t, Duration::from_millis(20), &[SILENT, SILENT, SPEECH, SILENT, SPEECH]);
        assert!(t - before <= Duration::from_millis(20));
        assert!(heard_by(&d, 4, 5).contains(&5), "{:?}", heard_by(&d, 4, 5));
        assert!(heard_by(&d, 4, 5).contains(&3), "{:?}", heard_by(&d, 4, 5));
    }

    #[test]
    fn a_louder_challenger_replaces_the_quietest_and_equal_voices_do_not_flap() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        // Five equal voices: three slots, and they stay put.
        run(&mut d, &mut t, Duration::from_secs(2), &[SPEECH; 5]);
        let first = d.loudest.clone();
        assert_eq!(first.len(), N + 1);
        run(&mut d, &mut t, Duration::from_secs(3), &[SPEECH; 5]);
        assert_eq!(d.loudest, first, "equal voices keep their slots");
        // The three forwarded ones go silent; the other two keep talking:
        // within about a second both are forwarded.
        let mut levels = [SPEECH; 5];
        for s in &first {
            levels[s.0 as usize - 1] = SILENT;
        }
        run(&mut d, &mut t, Duration::from_millis(1200), &levels);
        for (i, l) in levels.iter().enumerate() {
            if *l == SPEECH {
                assert!(d.loudest.contains(&p(i as u64 + 1)), "{} not forwarded: {:?}", i + 1, d.loudest);
            }
        }
    }

    #[test]
    fn a_source_without_levels_never_displaces_measured_speech() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        // 4 sends no level (counts as speech) while 1, 2, 3 are silent: it is heard.
        let end = t + Duration::from_secs(2);
        let mut n = 0u32;
        while t < end {
            for i in 1..=5u64 {
                let level = match i {
                    4 => None,
                    5 => Some(SILENT),
                    _ => Some(if t > end - Duration::from_secs(1) { SPEECH } else { SILENT }),
                };
                if d.record(p(i), level, t) {
                    d.admit(p(i), N + 1);
                }
            }
            n += 1;
            if n.is_multiple_of(5) {
                d.evaluate(t);
                d.rank_loudest(N + 1);
            }
            t += Duration::from_millis(20);
        }
        // 1, 2 and 3 speak for the last second: they hold the 3 slots a
        // listener (5) gets, the level-less 4 is left out.
        assert_eq!(heard_by(&d, 5, 5), vec![1, 2], "n = {N}: {:?}", d.loudest);
        assert!(!d.forwards_audio(p(5), p(4), N), "{:?}", d.loudest);
    }

    #[test]
    fn a_source_that_left_frees_its_slot() {
        let mut d = SpeakerDetector::default();
        let mut t = Instant::now();
        run(&mut d, &mut t, Duration::from_secs(1), &[SPEECH, SPEECH, SPEECH, SPEECH]);
        let gone = d.loudest[0];
        d.remove(gone);
        assert!(!d.loudest.contains(&gone));
        assert!(!d.forwards_audio(p(9), gone, N));
    }
}
