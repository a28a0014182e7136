//! End-to-end encryption between native participants over real sockets:
//! `plenary serve --tap FILE.pcap` and three `plenary join --json` processes
//! on a link with a secret (`/m/<room>#<secret>`), each publishing real media
//! from `.media/` (scripts/test-media.sh). All three reach the same epoch and
//! security code, each decrypts at least 90% of the frames each other one
//! sent, one records and ffmpeg decodes its recordings, and each learns the
//! others' display names from their encrypted profiles. A fourth client
//! with a wrong secret sends another room tag, so it lands in an empty
//! meeting of its own: it never sees the members nor they it, it decrypts
//! nothing of theirs, and it does not disturb them. The names, the secret
//! and the room tag appear neither in the server's log nor in the
//! operator's tap file.
//!
//! Skips (with a message) only when `.media/` is missing; CI creates it.

mod common;

use common::report::Report;
use common::{Server, ffmpeg_decode, free_tcp_port, media_dir, wait_with_timeout};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How long each of the three members publishes.
const PUBLISH: Duration = Duration::from_secs(10);
/// Share of a sender's frame rate every member must decrypt while both are
/// in the group.
const MIN_SHARE: f64 = 0.9;
/// Time each member must spend in the group with all the others (its own
/// per-second reports from the shared epoch to the first departure) for
/// its rates to be judged, seconds; less means joining took most of the
/// meeting.
const MIN_TOGETHER_S: f64 = 4.0;

/// A random-enough 16-byte secret as unpadded base64url (22 characters).
fn make_secret(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = String::new();
    for i in 0..22 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // The last character of 16 bytes carries 2 bits: keep the rest zero.
        let c = if i == 21 { ALPHABET[((x % 4) * 16) as usize] } else { ALPHABET[(x % 64) as usize] };
        out.push(c as char);
    }
    out
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id())
}

fn spawn_client(url: &str, name: &str, video: &Path, audio: &Path, duration: Duration, record: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plenary"));
    cmd.args(["join", url, "--name", name, "--json"])
        .arg("--video")
        .arg(video)
        .arg("--audio")
        .arg(audio)
        .args(["--duration", &duration.as_secs().to_string()])
        .env("PLENARY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = record {
        cmd.arg("--record").arg(dir);
    }
    cmd.spawn().expect("starting plenary join")
}

/// What one client printed.
struct Run {
    id: u64,
    /// (epoch, security code) of every `epoch` event.
    epochs: Vec<(u64, String)>,
    /// participant id -> display name from `profile` events.
    names: HashMap<u64, String>,
    /// Everyone `joined` or `participant_joined` reported.
    seen: Vec<u64>,
    summary: Value,
    /// Every event, in order.
    report: Report,
}

impl Run {
    fn parse(stdout: &str) -> Option<Run> {
        let mut epochs = Vec::new();
        let mut names = HashMap::new();
        let mut summary = None;
        let mut seen = Vec::new();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            match v["event"].as_str() {
                Some("joined") => seen.extend(v["participants"].as_array()?.iter().filter_map(Value::as_u64)),
                Some("participant_joined") => seen.push(v["participant_id"].as_u64()?),
                Some("epoch") => epochs.push((v["epoch"].as_u64()?, v["security_code"].as_str()?.to_owned())),
                Some("profile") => {
                    if let (Some(id), Some(n)) = (v["participant_id"].as_u64(), v["display_name"].as_str()) {
                        names.insert(id, n.to_owned());
                    }
                }
                Some("summary") => summary = Some(v),
                _ => {}
            }
        }
        let summary = summary?;
        Some(Run {
            id: summary["participant_id"].as_u64()?,
            epochs,
            names,
            seen,
            summary,
            report: Report::parse(stdout),
        })
    }

    fn sent(&self, kind: &str) -> u64 {
        self.summary["sent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["kind"] == kind)
            .filter_map(|t| t["frames"].as_u64())
            .sum()
    }

    /// (frames, decrypted, decrypt failures) received from `id` of `kind`.
    fn received(&self, id: u64, kind: &str) -> (u64, u64, u64) {
        let mut r = (0, 0, 0);
        for t in self.summary["tracks"].as_array().into_iter().flatten() {
            if t["participant_id"].as_u64() == Some(id) && t["kind"] == kind {
                r.0 += t["frames"].as_u64().unwrap_or(0);
                r.1 += t["decrypted"].as_u64().unwrap_or(0);
                r.2 += t["decrypt_failures"].as_u64().unwrap_or(0);
            }
        }
        r
    }

    fn decrypted_total(&self) -> u64 {
        self.summary["tracks"].as_array().into_iter().flatten().filter_map(|t| t["decrypted"].as_u64()).sum()
    }

    fn recordings(&self) -> Vec<(String, u64, PathBuf)> {
        self.summary["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["kind"].as_str()?.to_owned(),
                    t["decrypted"].as_u64()?,
                    PathBuf::from(t["recording"].as_str()?),
                ))
            })
            .collect()
    }
}

#[test]
fn native_clients_meet_end_to_end_encrypted() {
    let media = media_dir();
    let files = [("bbb-360p.ivf", "bbb.ogg"), ("carphone.ivf", "speech.ogg"), ("bbb-360p.ivf", "speech.ogg")];
    for f in files.iter().flat_map(|(v, a)| [v, a]) {
        if !media.join(f).is_file() {
            eprintln!("SKIPPED e2ee_native: {} is missing; run scripts/test-media.sh", media.join(f).display());
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("plenary-e2ee-native-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tap = dir.join("tap.pcap");
    let server = Server::start(&dir, &["--tap".as_ref(), tap.as_os_str()]);
    let seed = seed();
    let room = format!("e2ee-{}", std::process::id());
    let secret = make_secret(seed);
    let wrong = make_secret(seed.rotate_left(17) ^ 1);
    assert_ne!(secret, wrong);
    let url = format!("http://{}/m/{room}#{secret}", server.http);
    let names: Vec<String> = (0..4).map(|i| format!("Participant-{:x}{i}", seed % 0xFFFF_FFFF)).collect();
    let recordings = dir.join("recordings");

    let members: Vec<Child> = files
        .iter()
        .enumerate()
        .map(|(i, (v, a))| {
            spawn_client(
                &url,
                &names[i],
                &media.join(v),
                &media.join(a),
                PUBLISH,
                (i == 0).then_some(recordings.as_path()),
            )
        })
        .collect();
    // The intruder comes once the group is formed, and leaves before the others.
    std::thread::sleep(Duration::from_secs(3));
    let wrong_url = format!("http://{}/m/{room}#{wrong}", server.http);
    let intruder = spawn_client(
        &wrong_url,
        &names[3],
        &media.join("carphone.ivf"),
        &media.join("bbb.ogg"),
        Duration::from_secs(5),
        None,
    );

    let mut runs = Vec::new();
    let mut outputs = String::new();
    for (i, child) in members.into_iter().chain([intruder]).enumerate() {
        let out = wait_with_timeout(child, PUBLISH + Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "client {i} failed ({}):\n{stderr}\n{stdout}\nserver log:\n{}",
            out.status,
            server.log_text()
        );
        for n in &names {
            assert!(!stderr.contains(n.as_str()), "client {i} logged a name");
        }
        assert!(!stderr.contains(&secret) && !stdout.contains(&secret), "client {i} printed the secret");
        let run = Run::parse(&stdout).unwrap_or_else(|| panic!("client {i}: no summary in\n{stdout}"));
        outputs.push_str(&format!(
            "--- client {i} (p{}) epochs {:?}\n",
            run.id,
            run.epochs.iter().map(|e| e.0).collect::<Vec<_>>()
        ));
        runs.push(run);
    }
    let log = server.log_text();
    let tap_bytes = std::fs::read(&tap).unwrap_or_default();
    assert!(!tap_bytes.is_empty(), "the tap file is empty");
    for n in &names {
        assert!(!log.contains(n.as_str()), "the server logged a name");
        assert!(!tap_bytes.windows(n.len()).any(|w| w == n.as_bytes()), "a name is in the tap file");
    }
    assert!(!log.contains(&secret) && !log.contains(&wrong), "the secret reached the server");
    for s in [&secret, &wrong] {
        let tag = plenary_e2ee::secret::MeetingSecret::from_base64url(s).expect("secret").room_tag(&room);
        assert!(!log.contains(&tag), "the server logged a room tag");
    }

    let (members, intruder) = runs.split_at(3);
    let intruder = &intruder[0];
    let mut failures = Vec::new();
    let mut report = String::new();

    // One epoch and one security code for all members while all three are
    // in the meeting. (Whoever leaves last may see the others' departures
    // and rekey once more: that epoch is not the meeting's.)
    let ids: Vec<u64> = members.iter().map(|r| r.id).collect();
    let others = |me: u64| ids.iter().copied().filter(|id| *id != me).collect::<Vec<_>>();
    let last: Vec<_> = members.iter().map(|r| r.report.last_epoch_with(&others(r.id))).collect();
    if last.iter().any(Option::is_none) || last.windows(2).any(|w| w[0] != w[1]) {
        failures.push(format!("members were in different epochs while all three were in the meeting: {last:?}"));
    }
    let shared = last.first().cloned().flatten();
    if let Some(Some((_, code))) = last.first() {
        assert_eq!(code.split(' ').count(), 6, "security code {code:?}");
    }
    // The intruder is in a meeting of its own: it sees nobody, nobody sees
    // it, and its group (if any) is not the members' group.
    if !intruder.seen.is_empty() {
        failures.push(format!("the client with the wrong secret saw participants {:?}", intruder.seen));
    }
    if let (Some(Some((_, code))), Some((_, own))) = (last.first(), intruder.epochs.last())
        && code == own
    {
        failures.push("the client with the wrong secret shows the members' security code".into());
    }
    if intruder.decrypted_total() != 0 {
        failures.push(format!("the client with the wrong secret decrypted {} frames", intruder.decrypted_total()));
    }
    if !intruder.names.is_empty() {
        failures.push("the client with the wrong secret learned names".into());
    }
    for (i, rx) in members.iter().enumerate() {
        for (j, tx) in members.iter().enumerate().filter(|(j, _)| *j != i) {
            if rx.names.get(&tx.id) != Some(&names[j]) {
                failures.push(format!(
                    "p{} knows p{} as {:?}",
                    rx.id,
                    tx.id,
                    rx.names.get(&tx.id).map(|_| "another name")
                ));
            }
            for kind in ["audio", "video"] {
                let sent = tx.sent(kind);
                let (frames, decrypted, failed) = rx.received(tx.id, kind);
                report.push_str(&format!(
                    "p{} <- p{} {kind}: sent {sent}, received {frames}, decrypted {decrypted}, failed {failed}",
                    rx.id, tx.id
                ));
                // Over the time both were in the group: the rate rx
                // decrypted tx's frames at against the rate tx sent them.
                let got =
                    rx.report.rate_while_together(&others(rx.id), shared.as_ref(), Some(tx.id), kind, "decrypted");
                let put = tx.report.rate_while_together(&others(tx.id), shared.as_ref(), None, kind, "frames");
                match (got, put) {
                    (Some(got), Some(put)) if got.seconds >= MIN_TOGETHER_S && put.seconds >= MIN_TOGETHER_S => {
                        let share = got.per_second() / put.per_second().max(1e-3);
                        report.push_str(&format!(
                            "; together: decrypted {:.1}/s over {:.1} s, sent {:.1}/s ({:.1}%)\n",
                            got.per_second(),
                            got.seconds,
                            put.per_second(),
                            share * 100.0
                        ));
                        if share < MIN_SHARE {
                            failures.push(format!(
                                "p{} decrypted {:.1} {kind} frames/s from p{}, which sent {:.1}/s",
                                rx.id,
                                got.per_second(),
                                tx.id,
                                put.per_second()
                            ));
                        }
                    }
                    _ => {
                        report.push('\n');
                        failures.push(format!(
                            "p{} and p{} were not in the group together for {MIN_TOGETHER_S} s: {got:?} {put:?}",
                            rx.id, tx.id
                        ));
                    }
                }
            }
        }
        // Nothing is decryptable from the intruder (it has no keys and sends nothing).
        for kind in ["audio", "video"] {
            let (_, decrypted, _) = rx.received(intruder.id, kind);
            if decrypted != 0 {
                failures.push(format!("p{} decrypted {decrypted} {kind} frames from the intruder", rx.id));
            }
        }
        if rx.names.contains_key(&intruder.id) {
            failures.push(format!("p{} learned the intruder's name", rx.id));
        }
        if rx.seen.contains(&intruder.id) {
            failures.push(format!("p{} saw the client with the wrong secret", rx.id));
        }
    }
    eprintln!("{outputs}{report}");

    // Client 0 recorded the decrypted frames: ffmpeg decodes them.
    let recorded = members[0].recordings();
    let expected_tracks = 4;
    if recorded.len() < expected_tracks {
        failures.push(format!("client 0 recorded {} tracks, expected {expected_tracks}", recorded.len()));
    }
    for (kind, decrypted, path) in recorded {
        if let Some(decoded) = ffmpeg_decode(&path) {
            let min = if kind == "audio" { decrypted as f64 * 0.9 } else { decrypted as f64 * 0.8 };
            if decoded == 0 || (decoded as f64) < min {
                failures.push(format!("{}: ffmpeg decoded {decoded} of {decrypted} frames", path.display()));
            }
        }
    }

    assert!(failures.is_empty(), "{}\n{outputs}{report}\nserver log:\n{log}", failures.join("\n"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Key rotation: a member leaves; the committer removes it, the other two
/// move to a new epoch with a new security code and keep decrypting each
/// other.
#[test]
fn a_leaving_member_is_removed_and_keys_rotate() {
    let media = media_dir();
    let (video, audio) = (media.join("carphone.ivf"), media.join("speech.ogg"));
    if !video.is_file() || !audio.is_file() {
        eprintln!("SKIPPED e2ee_native rotation: .media is missing; run scripts/test-media.sh");
        return;
    }
    let dir = std::env::temp_dir().join(format!("plenary-e2ee-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &["--tap".as_ref(), dir.join("tap.pcap").as_os_str()]);
    let seed = seed();
    let url = format!("http://{}/m/rotate-{}#{}", server.http, std::process::id(), make_secret(seed));
    let stay: Vec<Child> =
        (0..2).map(|i| spawn_client(&url, &format!("Stayer-{i}"), &video, &audio, PUBLISH, None)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let leaver = spawn_client(&url, "Leaver", &video, &audio, Duration::from_secs(4), None);
    let mut runs = Vec::new();
    for (i, child) in stay.into_iter().chain([leaver]).enumerate() {
        let out = wait_with_timeout(child, PUBLISH + Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "client {i}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        runs.push(Run::parse(&stdout).unwrap_or_else(|| panic!("client {i}: no summary in\n{stdout}")));
    }
    let leaver_last = runs[2].epochs.last().cloned().expect("the leaver joined the group");
    // The last epoch of each stayer while the other was still there (the
    // one who leaves last may rekey once more without the first).
    let (a, b) = (runs[0].report.last_epoch_with(&[runs[1].id]), runs[1].report.last_epoch_with(&[runs[0].id]));
    let (a, b) = (a.expect("epochs"), b.expect("epochs"));
    assert_eq!(a, b, "the two who stayed agree on epoch and code");
    assert!(a.0 > leaver_last.0, "a new epoch after the leaver left: {a:?} vs {leaver_last:?}");
    assert_ne!(a.1, leaver_last.1, "the security code changed");
    // They keep decrypting each other through both rekeyings (the leaver
    // in, the leaver out): rates from the first epoch both were in.
    let first = runs[0].epochs.iter().find(|e| runs[1].epochs.contains(e)).cloned().expect("a shared epoch");
    for (rx, tx) in [(&runs[0], &runs[1]), (&runs[1], &runs[0])] {
        for kind in ["audio", "video"] {
            let got = rx.report.rate_while_together(&[tx.id], Some(&first), Some(tx.id), kind, "decrypted");
            let put = tx.report.rate_while_together(&[rx.id], Some(&first), None, kind, "frames");
            let (Some(got), Some(put)) = (got, put) else { panic!("p{} and p{} never together", rx.id, tx.id) };
            assert!(
                got.seconds >= MIN_TOGETHER_S && got.per_second() >= MIN_SHARE * put.per_second(),
                "p{} decrypted {got:?} {kind} frames from p{}, which sent {put:?}",
                rx.id,
                tx.id
            );
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A link whose fragment is not a valid secret is refused before anything
/// is sent.
#[test]
fn damaged_secret_is_refused() {
    let closed = free_tcp_port();
    for fragment in ["short", "AAECAwQFBgcICQoLDA0OD!x", "A"] {
        let url = format!("http://{closed}/m/room#{fragment}");
        let child = Command::new(env!("CARGO_BIN_EXE_plenary"))
            .args(["join", &url, "--name", "someone", "--duration", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting plenary join");
        let out = wait_with_timeout(child, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: exit status {}", out.status);
        assert!(stderr.contains("This link is incomplete: the part after # is missing or damaged"), "{url}: {stderr}");
        assert!(!stderr.contains("cannot connect"), "{url}: tried to connect: {stderr}");
    }
}
