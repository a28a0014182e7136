//! Deterministic SFU tests in virtual time: str0m peers and the SFU in one
//! process (see `harness`). They assert what a participant would notice:
//! who receives whose media, continuity across simulcast layer switches, and
//! rooms going away.

mod harness;

use std::time::Duration;

use harness::World;
use plenary_proto::{MediaKind, ServerMsg};

#[test]
fn three_publishers_five_subscribers_everyone_receives_everyone() {
    let mut w = World::new();
    let pubs: Vec<usize> = (0..3).map(|_| w.join("room-a", true, true)).collect();
    let subs: Vec<usize> = (0..5).map(|_| w.join("room-a", false, false)).collect();
    w.run(Duration::from_secs(3), 30);
    for &s in pubs.iter().chain(&subs) {
        for &p in &pubs {
            if s == p {
                continue;
            }
            let vmid = w.mid_of(s, p, MediaKind::Video).unwrap_or_else(|| panic!("{s} has no video of {p}"));
            let amid = w.mid_of(s, p, MediaKind::Audio).unwrap_or_else(|| panic!("{s} has no audio of {p}"));
            let video = w.frames(s, vmid);
            let audio = w.frames(s, amid);
            // 30 fps for ~3 s minus connection set-up and the first key frame.
            assert!(video.len() > 40, "peer {s} got only {} video frames from {p}", video.len());
            assert!(audio.len() > 80, "peer {s} got only {} audio frames from {p}", audio.len());
            assert!(video[0].keyframe, "first frame forwarded is a key frame");
            // Without a preference the SFU forwards one layer (the smallest), never a mix.
            assert!(video.iter().all(|f| f.layer_tag == 1), "peer {s} got mixed layers from {p}");
        }
        // Nobody receives their own media, or anything from pure subscribers.
        let me = w.peers[s].id;
        assert!(w.peers[s].track_map.iter().all(|t| t.participant_id != me));
        assert_eq!(w.peers[s].track_map.len(), if pubs.contains(&s) { 4 } else { 6 });
    }
    assert_eq!(w.sfu.room_members("room-a").len(), 8);
}

#[test]
fn layer_switches_keep_one_continuous_stream_and_start_on_key_frames() {
    let mut w = World::new();
    let p = w.join("room-b", true, true);
    let s = w.join("room-b", false, false);
    w.run(Duration::from_secs(2), 30);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video mid");
    // Up, down, up again: rendered sizes matching the f, q and h layers.
    for (wd, ht, tag) in [(1280, 720, 3u8), (160, 90, 1), (320, 180, 2), (640, 360, 3)] {
        w.prefer(s, p, wd, ht);
        w.run(Duration::from_secs(2), 30);
        let frames = w.frames(s, vmid);
        let last = frames.last().expect("frames");
        assert_eq!(last.layer_tag, tag, "after asking for {wd}x{ht} the subscriber gets layer {tag}");
    }
    let frames = w.frames(s, vmid);
    let mut switches = 0;
    for pair in frames.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(b.first_seq, a.last_seq + 1, "sequence numbers continue across frames and switches");
        assert!(b.contiguous, "receiver saw no gap");
        assert!(b.rtp_time > a.rtp_time, "RTP time moves forward ({} -> {})", a.rtp_time, b.rtp_time);
        assert!(b.rtp_time - a.rtp_time < 90_000, "no jump in RTP time over a second");
        if a.layer_tag != b.layer_tag {
            switches += 1;
            assert!(b.keyframe, "a switch to layer {} starts with a key frame", b.layer_tag);
        }
    }
    assert!(switches >= 4, "saw {switches} layer switches");
    let layer_msgs = w.peers[s].signals.iter().filter(|m| matches!(m, ServerMsg::Layer { .. })).count();
    assert!(layer_msgs >= 5, "the subscriber is told about each layer change");
    assert!(w.sfu.stats().keyframe_requests >= 4, "a key frame was requested for each switch");
}

#[test]
fn hidden_video_stops_and_resumes() {
    let mut w = World::new();
    let p = w.join("room-c", true, true);
    let s = w.join("room-c", false, false);
    w.run(Duration::from_secs(2), 30);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video mid");
    w.prefer(s, p, 0, 0);
    w.run(Duration::from_millis(200), 30);
    let before = w.frames(s, vmid).len();
    w.run(Duration::from_secs(2), 30);
    assert_eq!(w.frames(s, vmid).len(), before, "no video forwarded while the tile is hidden");
    w.prefer(s, p, 640, 360);
    w.run(Duration::from_secs(2), 30);
    assert!(w.frames(s, vmid).len() > before + 30, "video resumes when shown again");
}

#[test]
fn leaving_stops_tracks_and_last_one_out_closes_the_room() {
    let mut w = World::new();
    let a = w.join("room-d", true, true);
    let b = w.join("room-d", true, false);
    let c = w.join("room-d", false, false);
    w.run(Duration::from_secs(2), 30);
    assert_eq!(w.sfu.room_count(), 1);
    let a_id = w.peers[a].id;
    w.leave(a);
    w.run(Duration::from_secs(1), 30);
    for s in [b, c] {
        assert!(
            w.peers[s]
                .signals
                .iter()
                .any(|m| matches!(m, ServerMsg::ParticipantLeft { participant_id } if *participant_id == a_id)),
            "peer {s} told that {a} left"
        );
        assert!(w.peers[s].track_map.iter().all(|t| t.participant_id != a_id), "a's tracks removed from {s}'s map");
    }
    // c still receives b's non-simulcast video.
    let vmid = w.mid_of(c, b, MediaKind::Video).expect("b's video");
    let n = w.frames(c, vmid).len();
    w.run(Duration::from_secs(1), 30);
    assert!(w.frames(c, vmid).len() > n + 20, "media between the others keeps flowing");
    w.leave(b);
    w.leave(c);
    assert_eq!(w.sfu.room_count(), 0, "room dropped when empty");
    assert!(w.sfu.room_members("room-d").is_empty());
}

#[test]
fn garbage_datagrams_do_not_disturb_a_meeting() {
    let mut w = World::new();
    let p = w.join("room-e", true, false);
    let s = w.join("room-e", false, false);
    w.run(Duration::from_secs(2), 30);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video");
    let n = w.frames(s, vmid).len();
    let sfu_addr = std::net::SocketAddr::from(harness::SFU_ADDR);
    let peer_addr = w.peers[p].addr;
    let now = w.now;
    let junk: [&[u8]; 6] = [
        &[],
        &[0xff; 3],
        &[0x80, 0x60, 0, 1],                   // truncated RTP
        &[0x81, 0xc9, 0, 7, 1, 2],             // truncated RTCP
        &[0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42], // truncated STUN
        &[0x16, 0xfe, 0xfd, 0, 0],             // truncated DTLS
    ];
    for j in junk {
        // From a stranger and from a real participant's address.
        let _ = w.sfu.handle_receive(now, str0m::net::Protocol::Udp, "10.9.9.9:1".parse().unwrap(), sfu_addr, j);
        let _ = w.sfu.handle_receive(now, str0m::net::Protocol::Udp, peer_addr, sfu_addr, j);
    }
    w.pump();
    w.run(Duration::from_secs(2), 30);
    assert!(w.frames(s, vmid).len() > n + 40, "media keeps flowing after garbage");
}

#[test]
fn after_an_upstream_outage_subscribers_resume_on_a_key_frame() {
    let mut w = World::new();
    let p = w.join("room-f", true, false);
    let s = w.join("room-f", false, false);
    // Key frames only every 10 s: recovery must come from a key frame request.
    w.run(Duration::from_secs(2), 300);
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video");
    let before = w.frames(s, vmid).len();
    let plis = w.sfu.stats().keyframe_requests;
    w.blackout = Some((w.peers[p].addr, w.now + Duration::from_secs(3)));
    w.run(Duration::from_secs(6), 300);
    let frames = w.frames(s, vmid);
    assert!(frames.len() > before + 30, "video came back after the outage");
    let first_after = frames[before];
    assert!(first_after.keyframe, "the first frame forwarded after frames were lost is a key frame");
    assert!(w.sfu.stats().keyframe_requests > plis, "the SFU asked the publisher for it");
}

#[test]
fn active_speaker_follows_who_talks_within_a_second() {
    let mut w = World::new();
    let a = w.join("room-g", true, false);
    let b = w.join("room-g", true, false);
    let c = w.join("room-g", false, false);
    let (a_id, b_id) = (w.peers[a].id, w.peers[b].id);
    let speakers = |w: &World, i: usize| -> Vec<plenary_proto::ParticipantId> {
        w.peers[i]
            .signals
            .iter()
            .filter_map(|m| match m {
                ServerMsg::ActiveSpeaker { participant_id } => Some(*participant_id),
                _ => None,
            })
            .collect()
    };
    w.peers[a].audio_level = 25;
    w.run(Duration::from_secs(3), 30);
    assert_eq!(speakers(&w, c).last(), Some(&a_id), "a talks");
    w.peers[a].audio_level = 127;
    w.peers[b].audio_level = 30;
    let before = speakers(&w, c).len();
    w.run(Duration::from_secs(1), 30);
    assert_eq!(speakers(&w, c).last(), Some(&b_id), "b detected within 1 s");
    // A 200 ms burst from a while b talks moves nothing.
    w.peers[a].audio_level = 10;
    w.run(Duration::from_millis(200), 30);
    w.peers[a].audio_level = 127;
    w.run(Duration::from_secs(2), 30);
    let all = speakers(&w, c);
    assert_eq!(all.len(), before + 1, "exactly one change, no flapping: {all:?}");
    // A newcomer learns who speaks.
    let d = w.join("room-g", false, false);
    assert_eq!(speakers(&w, d).last(), Some(&b_id));
}
