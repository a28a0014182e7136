//! Adaptive quality in virtual time over seeded emulated links
//! (str0m-netem): what a participant notices when its downlink shrinks,
//! recovers or loses packets, when nobody watches a layer, and when a
//! publisher's uplink is too weak for video.

mod harness;

use std::time::{Duration, Instant};

use harness::{REALISTIC_LAYERS, Received, World};
use plenary_proto::{MediaKind, ServerMsg};
use str0m_netem::{Bitrate, DataSize, NetemConfig, Probability, RandomLoss};

/// A link of `kbps` with a queue holding `queue_ms` of it and 20 ms delay.
fn link(kbps: u64, queue_ms: u64, seed: u64) -> NetemConfig {
    NetemConfig::new()
        .latency(Duration::from_millis(20))
        .link(Bitrate::kbps(kbps), DataSize::bytes((kbps * queue_ms / 8) as i64))
        .seed(seed)
}

fn delay_only(seed: u64) -> NetemConfig {
    NetemConfig::new().latency(Duration::from_millis(20)).seed(seed)
}

/// 20 ms delay and random loss of `loss` (0 to 1) of the packets.
fn lossy(loss: f32, seed: u64) -> NetemConfig {
    NetemConfig::new().latency(Duration::from_millis(20)).loss(RandomLoss::new(Probability::new(loss))).seed(seed)
}

/// A world with a publisher (audio and video, simulcast with
/// [`REALISTIC_LAYERS`] when `simulcast`) and a subscriber in `room`:
/// `(world, publisher, subscriber)`.
fn publisher_and_subscriber(room: &str, simulcast: bool) -> (World, usize, usize) {
    let mut w = World::new();
    w.layer_bytes = REALISTIC_LAYERS;
    let p = w.join(room, true, simulcast);
    let s = w.join(room, false, false);
    (w, p, s)
}

/// Audio packets lost on `mid` among those sent between the first and the
/// last received in [from, to): by RTP sequence number gaps.
fn audio_loss(frames: &[&Received], from: Instant, to: Instant) -> (u64, u64) {
    let window: Vec<&&Received> = frames.iter().filter(|f| f.at >= from && f.at < to).collect();
    let (Some(first), Some(last)) = (window.first(), window.last()) else { return (0, 0) };
    let expected = last.last_seq - first.first_seq + 1;
    (expected - window.len() as u64, expected)
}

fn fps(frames: &[&Received], from: Instant, to: Instant) -> f64 {
    let n = frames.iter().filter(|f| f.at >= from && f.at < to).count();
    n as f64 / (to - from).as_secs_f64()
}

/// Layers of the frames a player would show from `after` on: frames in
/// sequence order (a retransmission completing an old frame late is not
/// shown).
fn layer_at(frames: &[&Received], after: Instant) -> Vec<u8> {
    let mut newest = 0;
    let mut tags: Vec<u8> = frames
        .iter()
        .filter(|f| {
            let in_order = f.first_seq > newest;
            newest = newest.max(f.last_seq);
            in_order && f.at >= after
        })
        .map(|f| f.layer_tag)
        .collect();
    tags.dedup();
    tags
}

#[test]
fn downlink_drop_steps_down_within_2s_without_audio_loss_and_recovers_within_10s() {
    let (mut w, p, s) = publisher_and_subscriber("room-bw", true);
    w.set_links(s, Some(link(3_000, 300, 1)), Some(delay_only(2)));
    w.run(Duration::from_secs(1), 30);
    w.prefer(s, p, 1280, 720);
    w.run(Duration::from_secs(5), 30);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video");
    let amid = w.mid_of(s, p, MediaKind::Audio).expect("audio");
    assert_eq!(w.frames(s, vmid).last().map(|f| f.layer_tag), Some(3), "3 Mbit/s carries the 720p layer");

    // The link drops to 300 kbit/s.
    let drop = w.now;
    w.set_links(s, Some(link(300, 300, 3)), Some(delay_only(4)));
    w.run(Duration::from_secs(10), 30);
    let video = w.frames(s, vmid);
    let to_low = w.peers[s].signals.iter().zip(&w.peers[s].signal_times).find_map(|(m, t)| match m {
        ServerMsg::Layer { rid, .. } if *t >= drop && rid.as_deref() == Some("q") => Some(*t - drop),
        _ => None,
    });
    assert!(to_low.is_some_and(|d| d <= Duration::from_secs(2)), "switched to the lowest layer within 2 s: {to_low:?}");
    // What was queued on the link and in the pacer before the switch, and
    // its retransmissions, drain within another 2 s.
    assert_eq!(layer_at(&video, drop + Duration::from_secs(4)), [1], "only the lowest layer arrives after that");
    let audio = w.frames(s, amid);
    let (lost, sent) = audio_loss(&audio, drop, w.now);
    assert!(sent > 450, "audio kept arriving ({sent} packets)");
    assert!(lost * 100 <= sent, "audio loss {lost}/{sent} over 1% after the drop");
    assert!(fps(&video, w.now - Duration::from_secs(4), w.now) > 25.0, "the low layer plays smoothly");

    // The link recovers.
    let recovery = w.now;
    w.set_links(s, Some(link(3_000, 300, 5)), Some(delay_only(6)));
    w.run(Duration::from_secs(10), 30);
    let video = w.frames(s, vmid);
    let back = video.iter().find(|f| f.at >= recovery && f.layer_tag == 3).map(|f| f.at - recovery);
    assert!(back.is_some(), "back on the 720p layer within 10 s of recovery");
    let quality = w.peers[s].signals.iter().rev().find_map(|m| match m {
        ServerMsg::Quality { estimate_bps, tracks } => Some((*estimate_bps, tracks.clone())),
        _ => None,
    });
    let (estimate, tracks) = quality.expect("quality reports");
    assert!(estimate.is_some_and(|e| e > 1_000_000), "estimate after recovery: {estimate:?}");
    assert_eq!(tracks[0].rid.as_deref(), Some("f"), "the report names the forwarded layer");
    let switches: Vec<Option<String>> = w.peers[s]
        .signals
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Layer { rid, .. } => Some(rid.clone()),
            _ => None,
        })
        .collect();
    assert!(switches.len() < 12, "layers did not flap: {switches:?}");
}

#[test]
fn five_percent_loss_for_10s_video_recovers_and_frame_rate_returns() {
    let (mut w, p, s) = publisher_and_subscriber("room-loss", true);
    w.set_links(s, Some(delay_only(7)), Some(delay_only(8)));
    w.run(Duration::from_secs(1), 300);
    w.prefer(s, p, 640, 360);
    w.run(Duration::from_secs(3), 300);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video");
    let start = w.now;
    w.set_links(s, Some(lossy(0.05, 9)), Some(delay_only(10)));
    w.run(Duration::from_secs(10), 300);
    let during = fps(&w.frames(s, vmid), start, w.now);
    assert!(during > 15.0, "video kept playing under 5% loss (NACK/RTX, key frames): {during:.1} fps");
    let end = w.now;
    w.set_links(s, Some(delay_only(11)), Some(delay_only(12)));
    w.run(Duration::from_secs(4), 300);
    let video = w.frames(s, vmid);
    let after: Vec<&&Received> = video.iter().filter(|f| f.at >= end + Duration::from_secs(1)).collect();
    assert!(fps(&video, end + Duration::from_secs(1), w.now) > 28.0, "frame rate back to normal");
    assert!(after.iter().all(|f| f.contiguous), "no gaps once the loss stopped");
    assert!(after.windows(2).all(|p| p[1].first_seq == p[0].last_seq + 1), "sequence continuous");
}

#[test]
fn layers_nobody_receives_are_paused_and_resumed_when_needed() {
    let (mut w, p, s) = publisher_and_subscriber("room-pause", true);
    w.run(Duration::from_secs(1), 30);
    w.prefer(s, p, 160, 90);
    w.run(Duration::from_secs(4), 30);
    let paused = |w: &World| {
        w.peers[p].signals.iter().rev().find_map(|m| match m {
            ServerMsg::LayersPaused { paused, .. } => Some(paused.clone()),
            _ => None,
        })
    };
    assert_eq!(paused(&w), Some(vec!["f".to_string(), "h".to_string()]), "only the small layer is watched");
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video");
    assert_eq!(layer_at(&w.frames(s, vmid), w.now - Duration::from_secs(1)), [1]);
    let enlarged = w.now;
    w.prefer(s, p, 1280, 720);
    w.run(Duration::from_secs(3), 30);
    assert_eq!(paused(&w), Some(vec!["h".to_string()]), "the big layer resumed, the middle one stays paused");
    let video = w.frames(s, vmid);
    let first_f = video.iter().find(|f| f.at >= enlarged && f.layer_tag == 3).expect("the 720p layer arrives");
    assert!(first_f.at - enlarged < Duration::from_secs(1), "within a second: {:?}", first_f.at - enlarged);
    assert!(first_f.keyframe, "resumed on a key frame");
    // Nobody watches at all: everything but the smallest layer pauses.
    w.prefer(s, p, 0, 0);
    w.run(Duration::from_secs(3), 30);
    assert_eq!(paused(&w), Some(vec!["f".to_string(), "h".to_string()]));
}

#[test]
fn a_publisher_whose_uplink_cannot_carry_video_is_marked_poor() {
    let (mut w, p, s) = publisher_and_subscriber("room-poor", true);
    w.run(Duration::from_secs(4), 30);
    let pid = w.peers[p].id;
    let marks = |w: &World| -> Vec<bool> {
        w.peers[s]
            .signals
            .iter()
            .filter_map(|m| match m {
                ServerMsg::ConnectionQuality { participant_id, poor } if *participant_id == pid => Some(*poor),
                _ => None,
            })
            .collect()
    };
    assert!(marks(&w).is_empty(), "a healthy uplink is not marked");
    // 64 kbit/s up: audio gets through, video does not.
    w.set_links(p, Some(delay_only(13)), Some(link(64, 500, 14)));
    let cut = w.now;
    w.run(Duration::from_secs(5), 30);
    assert_eq!(marks(&w), [true], "marked poor");
    let at = w.peers[s]
        .signals
        .iter()
        .zip(&w.peers[s].signal_times)
        .find_map(|(m, t)| matches!(m, ServerMsg::ConnectionQuality { poor: true, .. }).then_some(*t - cut));
    assert!(at.is_some_and(|d| d < Duration::from_secs(4)), "marked within 4 s: {at:?}");
    let amid = w.mid_of(s, p, MediaKind::Audio).expect("audio");
    assert!(fps(&w.frames(s, amid), w.now - Duration::from_secs(2), w.now) > 20.0, "its audio still plays");
    w.set_links(p, Some(delay_only(15)), Some(delay_only(16)));
    w.run(Duration::from_secs(5), 30);
    assert_eq!(marks(&w), [true, false], "cleared once video flows again");
}

#[test]
fn loss_on_a_publishers_uplink_does_not_hold_back_its_audio() {
    let (mut w, p, s) = publisher_and_subscriber("room-uplink-loss", false);
    w.run(Duration::from_secs(2), 60);
    let amid = w.mid_of(s, p, MediaKind::Audio).expect("audio");
    let start = w.now;
    w.set_links(p, Some(delay_only(20)), Some(lossy(0.03, 21)));
    w.run(Duration::from_secs(10), 60);
    let audio: Vec<Instant> = w.frames(s, amid).iter().filter(|f| f.at >= start).map(|f| f.at).collect();
    assert!(audio.len() > 400, "audio kept flowing: {} frames in 10 s", audio.len());
    // A lost packet is a lost 20 ms frame, not a pause: the SFU forwards
    // what follows it at once instead of waiting for it.
    let worst = audio.windows(2).map(|p| p[1] - p[0]).max().unwrap_or_default();
    assert!(worst <= Duration::from_millis(120), "longest pause in forwarded audio: {worst:?}");
}

/// Longest wait between two frames received in [from, to).
fn longest_gap(frames: &[&Received], from: Instant, to: Instant) -> Duration {
    let times: Vec<Instant> =
        [from].into_iter().chain(frames.iter().map(|f| f.at).filter(|t| *t >= from && *t < to)).chain([to]).collect();
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

#[test]
fn a_video_is_not_turned_off_while_the_estimate_is_still_climbing_after_a_bad_start() {
    // A meeting of two publishers (one 640x360 layer each, ~430 kbit/s)
    // and a subscriber whose downlink carries only 250 kbit/s for its
    // first 2.5 s (a receiver starved of CPU at start does the same to its
    // estimate): the estimate collapses, then climbs once the link is free.
    let mut w = World::new();
    let a = w.join("room-ramp", true, false);
    let b = w.join("room-ramp", true, false);
    let s = w.join("room-ramp", false, false);
    w.set_links(s, Some(link(250, 300, 11)), Some(delay_only(12)));
    w.run(Duration::from_secs(2), 60);
    w.set_links(s, Some(link(20_000, 300, 13)), Some(delay_only(14)));
    let free = w.now;
    w.run(Duration::from_secs(9), 60);
    // From a second after the link was freed, through the end of the
    // warm-up, both videos play: neither pauses for half a second.
    let from = free + Duration::from_secs(1);
    let estimates: Vec<u64> = w.peers[s]
        .signals
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Quality { estimate_bps, .. } => *estimate_bps,
            _ => None,
        })
        .collect();
    for p in [a, b] {
        let mid = w.mid_of(s, p, MediaKind::Video).expect("video");
        let gap = longest_gap(&w.frames(s, mid), from, w.now);
        assert!(
            gap < Duration::from_millis(500),
            "video of peer {p} paused {gap:?}; estimates every 2 s: {estimates:?}"
        );
    }
}

#[test]
fn a_link_too_small_for_two_videos_turns_the_second_off_and_keeps_the_first_playing() {
    // Two publishers of one layer each (~440 kbit/s) and a subscriber
    // whose downlink, after the warm-up, shrinks to 600 kbit/s: room for
    // one video and the audio. Waiting for the estimate to recover (as for
    // a dip with no network cause) would only queue video. (What was
    // queued before the switch still drains for seconds: the video kept
    // lags up to 1.9 s behind the camera 7 s later, as before this hold.)
    let mut w = World::new();
    let a = w.join("room-shrink", true, false);
    let b = w.join("room-shrink", true, false);
    let s = w.join("room-shrink", false, false);
    w.set_links(s, Some(delay_only(21)), Some(delay_only(22)));
    w.run(Duration::from_secs(8), 60);
    let cut = w.now;
    w.set_links(s, Some(link(600, 300, 23)), Some(delay_only(24)));
    w.run(Duration::from_secs(10), 60);
    let recent = w.now - Duration::from_secs(3);
    let mut playing = Vec::new();
    for p in [a, b] {
        let video = w.frames(s, w.mid_of(s, p, MediaKind::Video).expect("video"));
        let last = video.last().map(|f| f.at - cut);
        let frames = video.iter().filter(|f| f.at >= recent).count();
        playing.push((p, frames, last));
    }
    let on: Vec<_> = playing.iter().filter(|(_, n, _)| *n > 0).collect();
    assert_eq!(on.len(), 1, "one video plays, one is off (peer, frames in the last 3 s, last frame): {playing:?}");
    assert!(on[0].1 > 75, "the video kept plays smoothly: {playing:?}");
    let off = playing.iter().find(|(_, n, _)| *n == 0).and_then(|(_, _, last)| *last);
    assert!(off.is_some_and(|t| t < Duration::from_secs(5)), "the other stopped within 5 s: {playing:?}");
    for p in [a, b] {
        let amid = w.mid_of(s, p, MediaKind::Audio).expect("audio");
        let (lost, sent) = audio_loss(&w.frames(s, amid), cut, w.now);
        assert!(sent > 450 && lost * 100 <= sent * 3, "audio of peer {p} kept arriving: lost {lost} of {sent}");
    }
}
