//! A participant joining a meeting where 29 others send audio gets video
//! at once and in step with the audio. str0m sends audio unpaced but counts
//! it against its pacing rate (1.1 × the downlink estimate); the audio of
//! 29 others (about 1.4 Mbit/s with headers) is more than that at a
//! starting estimate of 1 Mbit/s, so unless the SFU accounts for it the
//! joiner's video waits seconds in the pacer queue (the join benchmark at
//! 30 got none at all).

mod harness;

use std::time::Duration;

use harness::{REALISTIC_LAYERS, World};
use plenary_proto::MediaKind;
use str0m_netem::{Bitrate, DataSize, NetemConfig, Probability, RandomLoss};

/// Opus voice at 32 kbit/s: 80 bytes every 20 ms.
const OPUS_VOICE_BYTES: usize = 80;

#[test]
fn a_joiner_gets_video_in_step_with_audio_while_29_others_speak() {
    let mut w = World::new();
    w.layer_bytes = REALISTIC_LAYERS;
    w.audio_bytes = OPUS_VOICE_BYTES;
    let room = "room-crowded";
    let camera = w.join(room, true, true);
    for _ in 0..29 {
        w.join_with(room, true, false, false);
    }
    w.run(Duration::from_secs(1), 60);

    let joiner = w.join(room, false, false);
    // A 20 Mbit/s downlink, room for all of it many times over, but losing
    // 15% of the packets: that holds the estimate near its starting 1
    // Mbit/s (as a receiver starved of CPU held it at 0.4 Mbit/s in the
    // join benchmark). Lost video packets are retransmitted (NACK, RTX).
    let link = NetemConfig::new()
        .latency(Duration::from_millis(20))
        .link(Bitrate::mbps(20), DataSize::bytes(500_000))
        .loss(RandomLoss::new(Probability::new(0.15)))
        .seed(1);
    w.set_links(joiner, Some(link), None);
    let joined = w.now;
    w.run(Duration::from_secs(6), 60);

    let audio_tracks = w.peers[joiner].track_map.iter().filter(|t| t.kind == MediaKind::Audio).count();
    assert_eq!(audio_tracks, 30, "the joiner receives everyone's audio");
    let vmid = w.mid_of(joiner, camera, MediaKind::Video).expect("the joiner has the camera's video");
    let video = w.frames(joiner, vmid);
    let first = video.first().map(|f| f.at - joined);
    assert!(first.is_some_and(|d| d < Duration::from_secs(2)), "first video frame {first:?} after joining");
    // How far the picture lags behind the camera: arrival minus capture
    // time (the harness stamps RTP time from the start of the world, and
    // the SFU keeps it while it forwards one layer).
    let recent: Vec<_> = video.iter().filter(|f| f.at >= w.now - Duration::from_secs(3)).collect();
    assert!(recent.len() > 60, "video keeps playing: {} frames in the last 3 s", recent.len());
    let lag = recent
        .iter()
        .map(|f| f.at.saturating_duration_since(w.start + Duration::from_micros(f.rtp_time * 1000 / 90)))
        .max()
        .unwrap_or_default();
    assert!(lag < Duration::from_millis(500), "video lags {lag:?} behind the camera (and the audio)");
}
