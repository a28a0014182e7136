//! Sharing one subscriber's downlink bandwidth estimate among the videos it
//! watches.
//!
//! The estimate comes from str0m's send-side bandwidth estimation over TWCC
//! feedback (draft-holmer-rmcat-transport-wide-cc-extensions, the Google
//! congestion controller). Videos are served in priority order: videos the
//! subscriber pinned, then the active speaker, then larger tiles before
//! smaller ones. Every video first gets its smallest layer while the
//! estimate lasts, then the videos are upgraded one at a time, in the same
//! order, up to the layer their rendered size asks for, with what is left
//! after audio. A video that not even its smallest layer fits is turned off,
//! except the first one: a subscriber always gets the smallest layer of its
//! first video in priority order (pinned, speaker, largest tile), as every
//! conferencing client keeps showing the speaker on a poor link; one small
//! layer is also what keeps the estimator fed so that it can recover.
//!
//! Audio competes with upgrades only, never with the smallest layers: str0m
//! sends audio unpaced whatever the allocation says, so counting it first
//! would only turn video off without giving audio anything, and in a large
//! meeting the audio of 29 others (about 1.2 Mbit/s) left no room for a
//! single 150 kbit/s layer under any estimate below 1.8 Mbit/s, which a
//! receiver starved of CPU reports on an idle loopback. On a link that is
//! really congested the estimate itself falls below the smallest layers and
//! turns them off, lowest priority first.
//!
//! Hysteresis: a layer already forwarded is kept while it fits
//! [`KEEP_SHARE`] of the estimate; a higher layer is taken only when it fits
//! [`UPGRADE_SHARE`]. So a noisy estimate does not make layers flap. The
//! caller limits how long a layer is kept that way (see
//! [`Demand::current`]), as str0m's estimate falls slowly on a link that
//! has really shrunk (from 880 to 550 kbit/s over 4 s on a 300 kbit/s
//! link), and a drop must step down within a second or two.

/// Share of the estimate that the forwarded layers may keep using.
pub const KEEP_SHARE: f64 = 0.9;
/// Share of the estimate within which a higher layer is taken.
pub const UPGRADE_SHARE: f64 = 0.75;

/// One video competing for the downlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Pinned by the subscriber: served before every other video.
    pub pinned: bool,
    /// The room's active speaker: served before the rest.
    pub speaker: bool,
    /// Rendered area in device pixels: larger tiles are served first.
    pub area: u64,
    /// Bitrates of the layers worth sending, smallest first, bits per
    /// second; the last one is what the rendered size asks for. Empty for a
    /// hidden video.
    pub ladder: Vec<u64>,
    /// Index into `ladder` of the layer allowed now, if any, to be kept
    /// while it fits [`KEEP_SHARE`]; `None` also when that hysteresis no
    /// longer applies.
    pub current: Option<usize>,
}

/// Chooses a layer (an index into its ladder, or `None` for no video) for
/// every demand, given the downlink estimate and what the subscriber's
/// audio takes, both in bits per second. See the module docs.
pub fn allocate(estimate_bps: u64, audio_bps: u64, demands: &[Demand]) -> Vec<Option<usize>> {
    let keep = fill(share(estimate_bps, KEEP_SHARE), audio_bps, demands);
    let up = upgrades(estimate_bps, audio_bps, demands);
    demands
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let kept = match (d.current, keep[i]) {
                (Some(c), Some(k)) => Some(c.min(k)),
                _ => None,
            };
            up[i].max(kept)
        })
        .collect()
}

/// The layers [`allocate`] would choose without hysteresis: what fits
/// [`UPGRADE_SHARE`] of the estimate.
pub fn upgrades(estimate_bps: u64, audio_bps: u64, demands: &[Demand]) -> Vec<Option<usize>> {
    fill(share(estimate_bps, UPGRADE_SHARE), audio_bps, demands)
}

/// Extra bits per second the next upgrade would need: the step to the next
/// layer of the first video, in priority order, below what it asks for. 0
/// when every video has its wanted layer.
pub fn next_step(demands: &[Demand], chosen: &[Option<usize>]) -> u64 {
    priority_order(demands)
        .into_iter()
        .find_map(|i| {
            let ladder = &demands[i].ladder;
            match chosen.get(i).copied().flatten() {
                None => ladder.first().copied(),
                Some(at) if at + 1 < ladder.len() => Some(ladder[at + 1].saturating_sub(ladder[at])),
                Some(_) => None,
            }
        })
        .unwrap_or(0)
}

fn priority_order(demands: &[Demand]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..demands.len()).filter(|&i| !demands[i].ladder.is_empty()).collect();
    order.sort_by_key(|&i| (!demands[i].pinned, !demands[i].speaker, std::cmp::Reverse(demands[i].area)));
    order
}

fn share(estimate_bps: u64, share: f64) -> u64 {
    (estimate_bps as f64 * share) as u64
}

/// Priority order, then smallest layers for all within `budget`, then
/// upgrades within what is left after `audio_bps`.
fn fill(mut budget: u64, audio_bps: u64, demands: &[Demand]) -> Vec<Option<usize>> {
    let order = priority_order(demands);
    let mut chosen: Vec<Option<usize>> = vec![None; demands.len()];
    for (n, &i) in order.iter().enumerate() {
        let lowest = demands[i].ladder[0];
        if lowest <= budget || n == 0 {
            budget = budget.saturating_sub(lowest);
            chosen[i] = Some(0);
        }
    }
    budget = budget.saturating_sub(audio_bps);
    for &i in &order {
        let Some(mut at) = chosen[i] else { continue };
        let ladder = &demands[i].ladder;
        while at + 1 < ladder.len() {
            let extra = ladder[at + 1].saturating_sub(ladder[at]);
            if extra > budget {
                break;
            }
            budget -= extra;
            at += 1;
        }
        chosen[i] = Some(at);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    const LADDER: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn demand(speaker: bool, area: u64, current: Option<usize>) -> Demand {
        Demand { pinned: false, speaker, area, ladder: LADDER.to_vec(), current }
    }

    #[test]
    fn a_pinned_video_comes_before_the_speaker_and_larger_tiles() {
        let mut pinned = demand(false, 50, None);
        pinned.pinned = true;
        let d = [demand(true, 400, None), pinned, demand(false, 800, None)];
        // 300 kbps: room for one q after audio: the pinned one's.
        assert_eq!(allocate(300_000, 64_000, &d), [None, Some(0), None]);
        // 1.2 Mbps: three q, then the pinned one's upgrade to h.
        assert_eq!(allocate(1_200_000, 64_000, &d), [Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn plenty_gives_everyone_what_they_render() {
        let d = [demand(false, 100, None), demand(false, 200, None)];
        assert_eq!(allocate(10_000_000, 64_000, &d), [Some(2), Some(2)]);
    }

    #[test]
    fn smallest_layers_first_then_the_speaker_and_large_tiles() {
        let d = [demand(false, 100, None), demand(true, 50, None), demand(false, 400, None)];
        // 1.2 Mbps: 0.75 × 1.2 M − 64 k = 836 k: three q (450 k), then the
        // speaker's upgrade to h (+350 k).
        assert_eq!(allocate(1_200_000, 64_000, &d), [Some(0), Some(1), Some(0)]);
        // 300 kbps: room for one q after audio: the speaker's.
        assert_eq!(allocate(300_000, 64_000, &d), [None, Some(0), None]);
        // Too little for even one smallest layer: the speaker's still.
        assert_eq!(allocate(150_000, 64_000, &d), [None, Some(0), None]);
        // Without a speaker, the largest tile goes first.
        let d = [demand(false, 100, None), demand(false, 400, None)];
        assert_eq!(allocate(300_000, 64_000, &d), [None, Some(0)]);
    }

    #[test]
    fn the_audio_of_a_large_meeting_does_not_turn_the_smallest_layers_off() {
        // 29 others' audio (1.16 Mbit/s) and an estimate of 700 kbit/s: the
        // smallest layers of three tiles (450 k) fit in 0.75 × 700 k, no
        // upgrade does once audio is counted.
        let d = [demand(false, 100, None), demand(true, 50, None), demand(false, 400, None)];
        assert_eq!(allocate(700_000, 1_160_000, &d), [Some(0), Some(0), Some(0)]);
        // An estimate that holds only two: the speaker's and the larger tile's.
        assert_eq!(allocate(450_000, 1_160_000, &d), [None, Some(0), Some(0)]);
        // An estimate below one smallest layer (a receiver starved of CPU
        // reported 130 kbit/s): the speaker's smallest layer still.
        assert_eq!(allocate(130_000, 1_160_000, &d), [None, Some(0), None]);
        // Upgrades still wait until audio fits beside them: 0.75 × 2.4 M =
        // 1.8 M; three q (450 k) and audio (1.16 M) leave 190 k, short of
        // the speaker's step to h (350 k).
        assert_eq!(allocate(2_400_000, 1_160_000, &d), [Some(0), Some(0), Some(0)]);
        assert_eq!(allocate(2_700_000, 1_160_000, &d), [Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn hysteresis_keeps_a_layer_that_still_fits_and_drops_one_that_does_not() {
        // 0.75 × 2 M − 64 k = 1.436 M: not enough to take f (1.5 M) ...
        assert_eq!(allocate(2_000_000, 64_000, &[demand(false, 1, Some(1))]), [Some(1)]);
        // ... but 0.9 × 1.8 M − 64 k = 1.556 M keeps an f already forwarded.
        assert_eq!(allocate(1_800_000, 64_000, &[demand(false, 1, Some(2))]), [Some(2)]);
        // A real drop steps down at once.
        assert_eq!(allocate(300_000, 64_000, &[demand(false, 1, Some(2))]), [Some(0)]);
        assert_eq!(next_step(&[demand(false, 1, Some(0))], &[Some(0)]), 350_000, "q to h");
        assert_eq!(next_step(&[demand(false, 1, None)], &[Some(2)]), 0, "all there");
        // Hidden videos get nothing.
        let hidden = Demand { pinned: false, speaker: false, area: 0, ladder: Vec::new(), current: None };
        assert_eq!(allocate(10_000_000, 0, &[hidden]), [None]);
    }
}
