//! Integration over real sockets: `plenary serve` and three `plenary join
//! --json` processes in one meeting, each publishing real media from
//! `.media/` (scripts/test-media.sh) for 10 s. While all three are in the
//! meeting, each sends at its file's frame rate and receives at least 90%
//! of the frame rate each other one sends, on every track (rates from each
//! client's per-second reports, see `common::report`); one client records,
//! and ffmpeg must decode its recordings. Also: `plenary join` fails fast and clearly when it cannot
//! join, and refuses a link without its secret.
//!
//! The meeting test skips (with a message) only when `.media/` is missing;
//! CI creates it.

mod common;

use common::report::Report;
use common::{Server, ffmpeg_decode, free_tcp_port, media_dir, new_secret, wait_with_timeout};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long each client publishes.
const PUBLISH: Duration = Duration::from_secs(10);
/// Share of a sender's frame rate every receiver must get.
const MIN_SHARE: f64 = 0.9;
/// Time all three must spend in the meeting together for rates to be
/// judged, seconds.
const MIN_TOGETHER_S: f64 = 4.0;

/// What one client publishes.
struct Publisher {
    video: &'static str,
    audio: &'static str,
}

const PUBLISHERS: [Publisher; 3] = [
    Publisher { video: "bbb-360p.ivf", audio: "bbb.ogg" },
    Publisher { video: "carphone.ivf", audio: "speech.ogg" },
    Publisher { video: "bbb-360p.ivf", audio: "speech.ogg" },
];

/// Runs `plenary join --json` to the end; returns its JSON lines.
fn run_client(url: &str, i: usize, p: &Publisher, media: &Path, record: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plenary"));
    cmd.args(["join", url, "--name", &format!("native client {i}"), "--json"])
        .arg("--video")
        .arg(media.join(p.video))
        .arg("--audio")
        .arg(media.join(p.audio))
        .args(["--duration", &PUBLISH.as_secs().to_string()])
        .env("PLENARY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = record {
        cmd.arg("--record").arg(dir);
    }
    cmd.spawn().expect("starting plenary join")
}

/// One client's final summary: its id, what it sent and what it received.
struct ClientSummary {
    id: u64,
    /// (kind, frames)
    sent: Vec<(String, u64)>,
    /// (from participant, kind, frames, recording)
    received: Vec<(u64, String, u64, Option<PathBuf>)>,
    /// Every event, in order.
    report: Report,
}

impl ClientSummary {
    fn parse(stdout: &str) -> Option<ClientSummary> {
        let line = stdout.lines().rev().find(|l| l.contains("\"summary\""))?;
        let v: Value = serde_json::from_str(line).ok()?;
        let id = v["participant_id"].as_u64()?;
        let sent = v["sent"]
            .as_array()?
            .iter()
            .map(|t| Some((t["kind"].as_str()?.to_owned(), t["frames"].as_u64()?)))
            .collect::<Option<_>>()?;
        let received = v["tracks"]
            .as_array()?
            .iter()
            .map(|t| {
                Some((
                    t["participant_id"].as_u64()?,
                    t["kind"].as_str()?.to_owned(),
                    t["frames"].as_u64()?,
                    t["recording"].as_str().map(PathBuf::from),
                ))
            })
            .collect::<Option<_>>()?;
        Some(ClientSummary { id, sent, received, report: Report::parse(stdout) })
    }

    fn frames_from(&self, id: u64, kind: &str) -> u64 {
        self.received.iter().filter(|r| r.0 == id && r.1 == kind).map(|r| r.2).sum()
    }
}

#[test]
fn three_native_clients_exchange_real_media() {
    let media = media_dir();
    for p in &PUBLISHERS {
        for f in [p.video, p.audio] {
            if !media.join(f).is_file() {
                eprintln!("SKIPPED native_meeting: {} is missing; run scripts/test-media.sh", media.join(f).display());
                return;
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("plenary-native-meeting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let room = format!("native-{}", std::process::id());
    // The query is ignored; e2ee_native.rs checks epochs, codes and decryption.
    let url = format!("http://{}/m/{room}?autojoin=1#{}", server.http, new_secret());
    let recordings = dir.join("recordings");

    let children: Vec<Child> = PUBLISHERS
        .iter()
        .enumerate()
        .map(|(i, p)| run_client(&url, i, p, &media, (i == 0).then_some(recordings.as_path())))
        .collect();
    let mut summaries = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = wait_with_timeout(child, PUBLISH + Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "client {i} failed ({}):\n{stderr}\n{stdout}\nserver log:\n{}",
            out.status,
            server.log_text()
        );
        // Others' names arrive (encrypted) as `profile` events; its own is never printed.
        assert!(!stdout.contains(&format!("native client {i}")), "client {i} printed its name");
        assert!(!stderr.contains("native client"), "client {i} logged its name");
        let s = ClientSummary::parse(&stdout).unwrap_or_else(|| panic!("client {i}: no summary in\n{stdout}"));
        summaries.push(s);
    }
    assert!(!server.log_text().contains("native client"), "the server logged a name");

    let mut report = String::new();
    let mut failures = Vec::new();
    // Rates over the time all three were in the meeting, from the shared
    // epoch (every meeting is end-to-end encrypted: nothing is sent before
    // the keys) to the first departure.
    let ids: Vec<u64> = summaries.iter().map(|s| s.id).collect();
    let others = |me: u64| ids.iter().copied().filter(|id| *id != me).collect::<Vec<_>>();
    let epochs: Vec<_> = summaries.iter().map(|s| s.report.last_epoch_with(&others(s.id))).collect();
    assert!(epochs.windows(2).all(|w| w[0] == w[1]) && epochs[0].is_some(), "one group: {epochs:?}");
    let shared = epochs[0].as_ref();
    let together = |rate: Option<common::report::Rate>, what: &str, failures: &mut Vec<String>| match rate {
        Some(r) if r.seconds >= MIN_TOGETHER_S => Some(r),
        _ => {
            failures.push(format!("{what}: not {MIN_TOGETHER_S} s together ({rate:?})"));
            None
        }
    };
    for (s, p) in summaries.iter().zip(&PUBLISHERS) {
        assert_eq!(s.sent.len(), 2, "p{} publishes audio and video", s.id);
        // Pacing: the sender puts media out in real time.
        for (kind, _) in &s.sent {
            let fps = match (kind.as_str(), p.video) {
                ("audio", _) => 50.0,
                (_, "carphone.ivf") => 29.97,
                _ => 25.0,
            };
            let what = format!("p{} sending {kind}", s.id);
            let rate = s.report.rate_while_together(&others(s.id), shared, None, kind, "frames");
            let Some(rate) = together(rate, &what, &mut failures) else { continue };
            report.push_str(&format!("{what}: {:.1}/s over {:.1} s\n", rate.per_second(), rate.seconds));
            if !(0.95..=1.05).contains(&(rate.per_second() / fps)) {
                failures.push(format!("{what}: {:.1} frames/s, expected {fps}", rate.per_second()));
            }
        }
    }
    for rx in &summaries {
        assert!(rx.received.iter().all(|t| t.0 != rx.id), "p{} received its own media", rx.id);
        for tx in summaries.iter().filter(|t| t.id != rx.id) {
            for (kind, sent) in &tx.sent {
                let what = format!("p{} <- p{} {kind}", rx.id, tx.id);
                let got = rx.report.rate_while_together(&others(rx.id), shared, Some(tx.id), kind, "frames");
                let put = tx.report.rate_while_together(&others(tx.id), shared, None, kind, "frames");
                let (Some(got), Some(put)) = (together(got, &what, &mut failures), together(put, &what, &mut failures))
                else {
                    continue;
                };
                let share = got.per_second() / put.per_second().max(1e-3);
                report.push_str(&format!(
                    "{what}: {}/{sent} frames in all; together {:.1}/s of {:.1}/s ({:.1}%)\n",
                    rx.frames_from(tx.id, kind),
                    got.per_second(),
                    put.per_second(),
                    share * 100.0
                ));
                if share < MIN_SHARE {
                    failures.push(format!("{what}: {:.1} frames/s of {:.1}/s", got.per_second(), put.per_second()));
                }
            }
        }
    }
    eprintln!("{report}");

    // Client 0's recordings: one file per remote track, all decodable.
    let recorded: Vec<_> =
        summaries[0].received.iter().filter_map(|t| Some((t.1.clone(), t.2, t.3.clone()?))).collect();
    if recorded.len() != 4 {
        failures.push(format!("client 0 recorded {} tracks, expected 4", recorded.len()));
    }
    for (kind, frames, path) in recorded {
        if let Some(decoded) = ffmpeg_decode(&path) {
            // Video starts at the first key frame, so allow for one GOP.
            let min = if kind == "audio" { frames as f64 * 0.95 } else { frames as f64 * 0.85 };
            if (decoded as f64) < min {
                failures.push(format!("{}: ffmpeg decoded {decoded} of {frames} frames", path.display()));
            }
        }
    }

    assert!(failures.is_empty(), "{}\n{report}\nserver log:\n{}", failures.join("\n"), server.log_text());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `plenary join` exits non-zero, quickly, with a clear message when it
/// cannot join.
#[test]
fn join_fails_clearly() {
    let closed = free_tcp_port();
    let cases = [
        (format!("http://{closed}/m/room#{}", new_secret()), "cannot connect"),
        (format!("http://{closed}/m/room"), "this link is incomplete: the part after # is missing or damaged"),
        ("http://127.0.0.1:1/nothing-here".to_owned(), "bad meeting link"),
        ("ftp://127.0.0.1/m/room".to_owned(), "bad meeting link"),
        ("http://127.0.0.1:1/m/bad%20room".to_owned(), "bad meeting link"),
    ];
    for (url, expect) in cases {
        let started = Instant::now();
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
        assert!(stderr.to_lowercase().contains(expect), "{url}: expected {expect:?} in:\n{stderr}");
        assert!(!stderr.contains("someone"), "{url}: the name was printed");
        assert!(started.elapsed() < Duration::from_secs(15), "{url}: took {:?}", started.elapsed());
    }
}

/// A client that publishes nothing still connects (both m-lines are
/// negotiated, as in the browser) and leaves cleanly.
#[test]
fn join_without_media_connects() {
    let dir = std::env::temp_dir().join(format!("plenary-native-nomedia-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let url = format!("http://{}/m/quick-{}#{}", server.http, std::process::id(), new_secret());
    let child = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["join", &url, "--name", "someone", "--duration", "1", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting plenary join");
    let out = wait_with_timeout(child, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.contains("\"connected\"")), "{stdout}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
