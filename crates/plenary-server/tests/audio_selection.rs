//! Audio selection end to end (`plenary serve` forwards each participant
//! the 3 loudest other speakers, `--audio-streams`): native clients measure
//! the level of the Opus frames they publish (RFC 6464, in clear beside the
//! SFrame-encrypted audio), and the SFU forwards by it.
//!
//! Four `plenary join` clients publish speech, a fifth publishes silence,
//! a sixth only listens. Once everyone is connected, the listener decrypts
//! audio of at most three at a time, and of the silent one never, while
//! the SFU runs unchanged with `--audio-streams 0` in `burst_join.rs`.
//!
//! Skips (with a message) only when `.media/` is missing; CI creates it.
//! About 20 s.

mod common;

use common::native::{Native, decrypted_in};
use common::{Server, media, new_secret};
use plenary_client::ogg::{OggOpusWriter, OpusHead};
use serde_json::Value;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

/// An Opus packet of 20 ms of silence (TOC: CELT, fullband, 20 ms, mono,
/// one frame; RFC 6716 §3.1), as WebRTC stacks send for muted audio.
const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// Writes 5 s of Opus silence as Ogg Opus (RFC 7845) to `path`.
fn write_silence(path: &std::path::Path) {
    let head = OpusHead {
        channels: 1,
        pre_skip: 312,
        input_sample_rate: 48_000,
        output_gain: 0,
        mapping_family: 0,
        mapping_table: Vec::new(),
    };
    let file = std::fs::File::create(path).expect("silence file");
    let mut w = OggOpusWriter::new(file, 7, &head, "plenary-test").expect("ogg writer");
    for _ in 0..250 {
        w.write_packet(&OPUS_SILENCE).expect("write");
    }
    w.finish().expect("finish");
}

fn participant_id(n: &Native) -> u64 {
    n.events()
        .iter()
        .find(|(_, v)| v["event"] == "joined")
        .and_then(|(_, v)| v["participant_id"].as_u64())
        .expect("joined")
}

/// The listener's latest `frames` report.
fn frames(n: &Native) -> Option<Value> {
    n.events().into_iter().rev().find(|(_, v)| v["event"] == "frames").map(|(_, v)| v)
}

#[test]
fn a_listener_gets_the_three_loudest_and_never_the_silent_one() {
    let Some(speech) = media("speech.ogg") else {
        eprintln!("SKIPPED audio_selection: .media/speech.ogg is missing; run scripts/test-media.sh");
        return;
    };
    let dir = std::env::temp_dir().join(format!("plenary-audio-sel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let silence = dir.join("silence.ogg");
    write_silence(&silence);
    let server = Server::start(&dir, &[]);
    let url = format!("http://{}/m/loudest#{}", server.http, new_secret());
    let duration = [OsStr::new("--duration"), OsStr::new("60")];
    let start = Instant::now();
    let mut talkers = Vec::new();
    for i in 0..4 {
        let args = [OsStr::new("--audio"), speech.as_os_str(), duration[0], duration[1]];
        talkers.push(Native::spawn(&[], &url, &format!("Talker-{i}"), &args));
        // Different places in the file: they do not pause together.
        std::thread::sleep(Duration::from_millis(700));
    }
    let quiet =
        Native::spawn(&[], &url, "Quiet", &[OsStr::new("--audio"), silence.as_os_str(), duration[0], duration[1]]);
    let listener = Native::spawn(&[], &url, "Listener", &duration);
    let all: Vec<&Native> = talkers.iter().chain([&quiet, &listener]).collect();
    for n in &all {
        n.wait_for(start, Duration::from_secs(30), |v| v["event"] == "connected")
            .unwrap_or_else(|| panic!("not connected:\n{}\nserver log:\n{}", n.stderr_tail(), server.log_text()));
    }
    let talker_ids: Vec<u64> = talkers.iter().map(participant_id).collect();
    let quiet_id = participant_id(&quiet);

    // Let the keys settle and the ranking form, then watch 5 s.
    std::thread::sleep(Duration::from_secs(4));
    let count = |f: &Value, id: u64| decrypted_in(f, id, "audio");
    let before = frames(&listener).expect("a frames report");
    let watched = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let after = frames(&listener).expect("a frames report");
    let secs = watched.elapsed().as_secs_f64();
    let got: Vec<u64> = talker_ids.iter().map(|id| count(&after, *id) - count(&before, *id)).collect();
    let total: u64 = got.iter().sum();
    let silent = count(&after, quiet_id) - count(&before, quiet_id);
    eprintln!("in {secs:.1} s the listener decrypted {got:?} audio frames of the talkers, {silent} of the silent one");
    assert_eq!(silent, 0, "the silent participant's audio is not forwarded while four talk");
    // Three streams at 50 frames a second at most (a report lags the
    // frames by up to its 1 s interval: one second of slack), and the
    // talkers are heard.
    let most = (3.0 * 50.0 * (secs + 1.0)) as u64;
    assert!(total <= most, "at most three streams at a time: {total} frames > {most} ({got:?})");
    assert!(total >= (50.0 * secs) as u64, "the talkers are heard: {got:?}");
    assert!(got.iter().filter(|n| **n > 0).count() >= 2, "more than one talker heard: {got:?}");
    // Everyone else still hears each other: each talker decrypts audio.
    for (i, t) in talkers.iter().enumerate() {
        let f = frames(t).expect("frames");
        let heard: u64 = talker_ids.iter().filter(|id| **id != talker_ids[i]).map(|id| count(&f, *id)).sum();
        assert!(heard > 0, "talker {i} hears the others");
    }
}
