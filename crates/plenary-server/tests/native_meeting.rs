//! Integration over real sockets: `plenary serve` and three `plenary join
//! --json` processes in one meeting, each publishing real media from
//! `.media/` (scripts/test-media.sh) for 10 s. Every client must receive at
//! least 90% of the frames each other client sent (as its summary reports),
//! on every track; one client records, and ffmpeg must decode its
//! recordings. Also: `plenary join` fails fast and clearly when it cannot
//! join, and refuses a link without its secret.
//!
//! The meeting test skips (with a message) only when `.media/` is missing;
//! CI creates it.

mod common;

use common::{Server, ffmpeg_decode, free_tcp_port, media_dir, new_secret};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long each client publishes.
const PUBLISH: Duration = Duration::from_secs(10);
/// Share of a sender's frames every receiver must get.
const MIN_SHARE: f64 = 0.9;

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
        Some(ClientSummary { id, sent, received })
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
    for (s, p) in summaries.iter().zip(&PUBLISHERS) {
        assert_eq!(s.sent.len(), 2, "p{} publishes audio and video", s.id);
        // Pacing: the sender put out about 10 s of media.
        for (kind, frames) in &s.sent {
            let fps = match (kind.as_str(), p.video) {
                ("audio", _) => 50.0,
                (_, "carphone.ivf") => 29.97,
                _ => 25.0,
            };
            let expected = fps * PUBLISH.as_secs_f64();
            let ratio = *frames as f64 / expected;
            if !(0.95..=1.05).contains(&ratio) {
                failures
                    .push(format!("p{} sent {frames} {kind} frames in {PUBLISH:?}, expected about {expected}", s.id));
            }
        }
    }
    for rx in &summaries {
        assert!(rx.received.iter().all(|t| t.0 != rx.id), "p{} received its own media", rx.id);
        for tx in summaries.iter().filter(|t| t.id != rx.id) {
            for (kind, sent) in &tx.sent {
                let got = rx.frames_from(tx.id, kind);
                let share = got as f64 / (*sent).max(1) as f64;
                report.push_str(&format!(
                    "p{} <- p{} {kind}: {got}/{sent} frames ({:.1}%)\n",
                    rx.id,
                    tx.id,
                    share * 100.0
                ));
                if share < MIN_SHARE {
                    failures.push(format!("p{} received {got} of {sent} {kind} frames from p{}", rx.id, tx.id));
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

/// Waits for a child, killing it after `limit`; returns its output.
fn wait_with_timeout(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so a chatty child cannot block on them.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() }
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
