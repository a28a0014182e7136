//! `plenary join` reconnects by itself when the server restarts: two native
//! participants on an end-to-end encrypted link decrypt each other; the
//! server is killed and started again on the same ports; both report
//! `reconnecting` then `reconnected` (as new participants), re-form the MLS
//! group (one epoch, one security code) and decrypt each other's audio and
//! video again within 10 s of the restart. The recording participant's
//! files from before and after the restart all decode with ffmpeg.
//!
//! Skips (with a message) only when `.media/` is missing; CI creates it.

mod common;

use common::native::{Native, decrypted_in};
use common::{Server, ffmpeg_decode, media};
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long each participant runs, counted from its first media connection.
const RUN: Duration = Duration::from_secs(20);
/// Media must be decrypted again this soon after the new server is up.
const RESUME: Duration = Duration::from_secs(10);

/// A 16-byte secret as unpadded base64url, from the clock.
fn secret() -> String {
    use base64::Engine as _;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let bytes = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn event_is(v: &Value, name: &str) -> bool {
    v["event"] == name
}

/// Our participant id in the latest `joined` event read after `after`.
fn joined_id(n: &Native, after: Instant) -> Option<u64> {
    n.events()
        .into_iter()
        .rev()
        .find(|(t, v)| *t >= after && event_is(v, "joined"))
        .and_then(|(_, v)| v["participant_id"].as_u64())
}

#[test]
fn native_participants_reconnect_after_a_server_restart() {
    let (Some(video), Some(audio)) = (media("carphone.ivf"), media("speech.ogg")) else {
        eprintln!("skipping: .media/carphone.ivf or speech.ogg missing (run scripts/test-media.sh)");
        return;
    };
    let dir = tempfile_dir("plenary-reconnect-native");
    let rec = dir.join("rec");
    let mut server = Server::start(&dir, &[]);
    let url = format!("http://{}/m/reconnect#{}", server.http, secret());
    let run = RUN.as_secs().to_string();
    let media_args = |record: bool| {
        let mut a: Vec<&OsStr> = vec![
            "--video".as_ref(),
            video.as_os_str(),
            "--audio".as_ref(),
            audio.as_os_str(),
            "--duration".as_ref(),
            run.as_ref(),
        ];
        if record {
            a.extend(["--record".as_ref(), rec.as_os_str()]);
        }
        a
    };
    let t0 = Instant::now();
    let a = Native::spawn(&[], &url, "Participant-A", &media_args(false));
    let mut b = Native::spawn(&[], &url, "Participant-B", &media_args(true));
    let ids = [&a, &b].map(|n| {
        n.wait_for(t0, Duration::from_secs(15), |v| event_is(v, "joined"))
            .and_then(|(_, v)| v["participant_id"].as_u64())
    });
    let [Some(id_a), Some(id_b)] = ids else { panic!("both join: {}\n{}", a.stderr_tail(), b.stderr_tail()) };

    // Before: each decrypts the other.
    for (n, from) in [(&a, id_b), (&b, id_a)] {
        let ok = n.wait_for(t0, Duration::from_secs(20), |v| {
            event_is(v, "frames") && decrypted_in(v, from, "video") > 30 && decrypted_in(v, from, "audio") > 30
        });
        assert!(ok.is_some(), "decrypting before the restart: {}", n.stderr_tail());
    }

    let killed = Instant::now();
    server.restart(&dir, &[]);
    let up = Instant::now();
    eprintln!("server restarted in {:.1} s", (up - killed).as_secs_f64());

    // Both notice, say so, and come back as new participants.
    for n in [&a, &b] {
        let r = n.wait_for(killed, Duration::from_secs(5), |v| event_is(v, "reconnecting"));
        assert!(r.is_some(), "reports reconnecting: {}", n.stderr_tail());
        let r = n.wait_for(killed, RESUME, |v| event_is(v, "reconnected"));
        assert!(r.is_some(), "reports reconnected: {}", n.stderr_tail());
    }
    // Fresh sessions (ids are per server process, so they may repeat).
    let new_a = joined_id(&a, killed).expect("a joined again");
    let new_b = joined_id(&b, killed).expect("b joined again");

    // Media resumes, decrypted, for both, within RESUME of the restart.
    for (n, from) in [(&a, new_b), (&b, new_a)] {
        let got = n.wait_for(killed, (up + RESUME).saturating_duration_since(Instant::now()), |v| {
            event_is(v, "frames") && decrypted_in(v, from, "video") > 10 && decrypted_in(v, from, "audio") > 10
        });
        let Some((t, _)) = got else {
            panic!("decrypting again within {} s of the restart: {}", RESUME.as_secs(), n.stderr_tail())
        };
        eprintln!("media resumed {:.1} s after the new server was up", (t - up).as_secs_f64());
    }
    // The re-formed group: same epoch and security code for both.
    let last_epoch = |n: &Native| {
        n.events()
            .into_iter()
            .rev()
            .find(|(t, v)| *t >= killed && event_is(v, "epoch"))
            .map(|(_, v)| (v["epoch"].clone(), v["security_code"].clone()))
    };
    assert!(last_epoch(&a).is_some() && last_epoch(&a) == last_epoch(&b), "one group after the restart");
    // One of the two re-forms the group alone first: that one-person group's
    // code is nobody's to compare, so "compare it again" goes with the first
    // code of the shared group, the one the other participant shows.
    for n in [&a, &b] {
        let after: Vec<Value> =
            n.events().into_iter().filter(|(t, v)| *t >= killed && event_is(v, "epoch")).map(|(_, v)| v).collect();
        let noted: Vec<&Value> = after.iter().filter(|v| v["keys_set_up_again"] == "reconnect").collect();
        assert_eq!(noted.len(), 1, "the new keys are explained once: {after:?}");
        assert!(noted[0]["members"].as_u64() >= Some(2), "with a code the other shows: {after:?}");
        let first_shared = after.iter().find(|v| v["members"].as_u64() >= Some(2));
        assert_eq!(first_shared, Some(noted[0]), "the first shared code carries the note: {after:?}");
    }

    // Recording went on across the restart: files of both sessions decode.
    assert!(b.finish(RUN + Duration::from_secs(20)).success(), "b exits cleanly: {}", b.stderr_tail());
    let summary = b.summary().expect("summary");
    // Tracks are listed in order of arrival: A's video before, then after.
    let recorded: Vec<String> = summary["tracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"] == "video")
        .filter_map(|t| t["recording"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(recorded.len(), 2, "A's video recorded before and after the restart: {recorded:?}");
    for file in &recorded {
        if let Some(frames) = ffmpeg_decode(file.as_ref()) {
            assert!(frames > 10, "{file} decodes into {frames} frames");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), secret()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
