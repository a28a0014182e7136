//! Audio selection (`SfuConfig::audio_streams`): each subscriber gets the
//! audio of the loudest few other speakers only, switched as people start
//! and stop talking, in virtual time over real str0m sessions.

mod harness;

use std::time::Duration;

use harness::World;
use plenary_proto::MediaKind;
use plenary_sfu::SfuConfig;

const SPEECH: i8 = 25;
const SILENT: i8 = 127;

/// Audio frames `sub` received from `publisher` in the last `window`.
fn heard(w: &World, sub: usize, publisher: usize, window: Duration) -> usize {
    let Some(mid) = w.mid_of(sub, publisher, MediaKind::Audio) else { return 0 };
    w.frames(sub, mid).iter().filter(|f| w.now.duration_since(f.at) <= window).count()
}

#[test]
fn listeners_get_the_three_loudest_and_a_new_voice_within_half_a_second() {
    let mut w = World::with_config(SfuConfig { audio_streams: 3, ..SfuConfig::default() });
    // Five publish audio (no video), two only listen.
    let speakers: Vec<usize> = (0..5).map(|_| w.join_with("room-l", true, false, false)).collect();
    let listener = w.join_with("room-l", false, false, false);
    let levels = [SPEECH, SPEECH, SPEECH, SILENT, SILENT];
    for (s, l) in speakers.iter().zip(levels) {
        w.peers[*s].audio_level = l;
    }
    w.run(Duration::from_secs(3), 30);
    let second = Duration::from_secs(1);
    let got: Vec<usize> = speakers.iter().map(|s| heard(&w, listener, *s, second)).collect();
    // 50 frames a second from each of the three talking, none from the others.
    assert!(got[..3].iter().all(|n| *n >= 40), "the three talking are heard: {got:?}");
    assert!(got[3..].iter().all(|n| *n == 0), "the silent two are not forwarded: {got:?}");
    // A speaker hears the other two speakers.
    assert!(heard(&w, speakers[0], speakers[1], second) >= 40 && heard(&w, speakers[0], speakers[2], second) >= 40);
    assert!(w.sfu.stats().audio_frames_unselected > 0);

    // The first stops; the fifth answers: heard within half a second.
    w.peers[speakers[0]].audio_level = SILENT;
    w.run(Duration::from_secs(2), 30);
    w.peers[speakers[4]].audio_level = SPEECH;
    w.run(Duration::from_millis(500), 30);
    let half = Duration::from_millis(500);
    assert!(heard(&w, listener, speakers[4], half) >= 20, "the new voice: {}", heard(&w, listener, speakers[4], half));
    assert!(heard(&w, listener, speakers[1], half) >= 20 && heard(&w, listener, speakers[2], half) >= 20);
}

#[test]
fn every_stream_is_forwarded_when_selection_is_off() {
    let mut w = World::new();
    let speakers: Vec<usize> = (0..5).map(|_| w.join_with("room-m", true, false, false)).collect();
    let listener = w.join_with("room-m", false, false, false);
    for (i, s) in speakers.iter().enumerate() {
        w.peers[*s].audio_level = if i < 3 { SPEECH } else { SILENT };
    }
    w.run(Duration::from_secs(3), 30);
    let got: Vec<usize> = speakers.iter().map(|s| heard(&w, listener, *s, Duration::from_secs(1))).collect();
    assert!(got.iter().all(|n| *n >= 40), "{got:?}");
    assert_eq!(w.sfu.stats().audio_frames_unselected, 0);
}
