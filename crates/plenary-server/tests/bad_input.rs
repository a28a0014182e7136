//! Bad input over real sockets: malformed and oversized WebSocket messages,
//! unknown types, bad room ids, out-of-turn SDP, garbage UDP datagrams and
//! ICE-TCP frames, truncated RTP/RTCP/STUN/DTLS. Each gets a typed error or
//! is dropped; the server never panics, and two native participants in a
//! meeting keep exchanging media the whole time.

mod common;

use common::{free_port, media, new_secret, wait_with_timeout};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

struct Server {
    child: Child,
    http: u16,
    rtc: u16,
    log: PathBuf,
}

impl Server {
    fn start() -> Server {
        let (http, rtc) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("plenary-bad-input-{}.log", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_plenary"))
            .args(["serve", "--listen", &format!("127.0.0.1:{http}"), "--rtc-port", &rtc.to_string()])
            .env("PLENARY_LOG", "debug,str0m=warn,dimpl=warn,is=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start plenary serve");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", http)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, http, rtc, log }
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.http)) else { return false };
        let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line.contains("200")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `text` and returns the next server message's `type` and `code`.
async fn exchange(ws: &mut Ws, msg: Message) -> (String, String) {
    ws.send(msg).await.expect("send");
    next(ws).await
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> (String, String) {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("answer in time");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                let ty = v["type"].as_str().unwrap_or_default().to_string();
                if matches!(
                    ty.as_str(),
                    "participant_joined"
                        | "participant_left"
                        | "participant_updated"
                        | "create_group"
                        | "active_speaker"
                ) {
                    continue;
                }
                return (ty, v["code"].as_str().unwrap_or_default().to_string());
            }
            Some(Ok(Message::Close(_))) | None => return ("closed".into(), String::new()),
            Some(Ok(_)) => continue,
            Some(Err(_)) => return ("closed".into(), String::new()),
        }
    }
}

async fn connect(port: u16) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.expect("ws connect").0
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

fn spawn_native(server: &Server, link: &str, name: &str, video: &PathBuf, audio: &PathBuf) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["join", &format!("http://127.0.0.1:{}/m/{link}", server.http), "--name", name, "--json"])
        .args(["--duration", "14", "--video"])
        .arg(video)
        .arg("--audio")
        .arg(audio)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start plenary join")
}

/// Video frames received from the other participant, from the summary line.
fn video_frames_received(child: Child) -> u64 {
    // 14 s of media after connecting: a client still running long after
    // that is a failure to report, not a CI job to hang.
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert!(out.status.success(), "native client failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .expect("summary line");
    summary["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .filter(|t| t["kind"] == "video")
        .map(|t| t["frames"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_meeting_goes_on() {
    let (Some(video), Some(audio)) = (media("carphone.ivf"), media("speech.ogg")) else {
        eprintln!("SKIPPED: run scripts/test-media.sh first (CI always does)");
        return;
    };
    let server = Server::start();
    let link = format!("steady#{}", new_secret());
    let a = spawn_native(&server, &link, "Participant-a", &video, &audio);
    let b = spawn_native(&server, &link, "Participant-b", &video, &audio);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // --- WebSocket ---
    let mut ws = connect(server.http).await;
    let cases: Vec<(Message, &str)> = vec![
        (text("this is not json"), "malformed"),
        (text("{\"type\":\"offer\"}"), "malformed"),
        (text("{\"type\":\"self_destruct\"}"), "unknown_type"),
        (Message::Binary(vec![1u8, 2, 3].into()), "malformed"),
        (text("{\"type\":\"answer\",\"sdp\":\"v=0\"}"), "not_joined"),
        (
            text(
                "{\"type\":\"join\",\"room\":\"../etc/passwd\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
            ),
            "bad_room_id",
        ),
        (
            text("{\"type\":\"join\",\"room\":\"\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}"),
            "bad_room_id",
        ),
        (
            text(format!(
                "{{\"type\":\"join\",\"room\":\"{}\",\"profile\":\"{{}}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}}",
                "a".repeat(65)
            )),
            "bad_room_id",
        ),
        (
            text(format!(
                "{{\"type\":\"join\",\"room\":\"ok\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}}",
                "p".repeat(5000)
            )),
            "bad_profile",
        ),
        (
            text(
                "{\"type\":\"join\",\"room\":\"ok\",\"profile\":\"{}\",\"version\":99,\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
            ),
            "unsupported_version",
        ),
    ];
    for (msg, code) in cases {
        let (ty, got) = exchange(&mut ws, msg).await;
        assert_eq!((ty.as_str(), got.as_str()), ("error", code));
    }
    // Now a real join on the same connection, then protocol violations.
    let (ty, _) = exchange(
        &mut ws,
        text("{\"type\":\"join\",\"room\":\"other-room\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}"),
    )
    .await;
    assert_eq!(ty, "joined");
    for (msg, code) in [
        (
            text(
                "{\"type\":\"join\",\"room\":\"other-room\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
            ),
            "already_joined",
        ),
        (text("{\"type\":\"answer\",\"sdp\":\"v=0\\r\\n\"}"), "bad_sdp"),
        (text("{\"type\":\"offer\",\"sdp\":\"v=0\\r\\nm=garbage\\r\\n\"}"), "bad_sdp"),
        (text("{\"type\":\"layer_preference\",\"mid\":\"nope\",\"width\":1,\"height\":1}"), "unknown_mid"),
        // Over the protocol's limit but not the socket's (only a joined
        // connection may send more than a small message; see prejoin_limit.rs).
        (
            text(format!(
                "{{\"type\":\"offer\",\"sdp\":\"{}\"}}",
                "v".repeat(plenary_proto::MAX_CLIENT_MESSAGE_BYTES + 1024)
            )),
            "too_large",
        ),
    ] {
        let (ty, got) = exchange(&mut ws, msg).await;
        assert_eq!((ty.as_str(), got.as_str()), ("error", code));
    }
    // A flood is rate limited, not served.
    let mut limited = false;
    for i in 0..400 {
        ws.send(text(format!("{{\"type\":\"ping\",\"id\":{i}}}"))).await.expect("send");
    }
    for _ in 0..400 {
        let (ty, code) = next(&mut ws).await;
        if ty == "error" && code == "rate_limited" {
            limited = true;
            break;
        }
    }
    assert!(limited, "a flood of messages is rate limited");
    // A frame far beyond any limit closes only this connection.
    let _ = ws.send(text("x".repeat(5 * plenary_proto::MAX_CLIENT_MESSAGE_BYTES))).await;
    let mut closed = false;
    for _ in 0..500 {
        let (ty, _) = next(&mut ws).await;
        if ty == "closed" {
            closed = true;
            break;
        }
        assert!(ty == "pong" || ty == "error", "only answers to the flood are left, got {ty}");
    }
    assert!(closed, "an oversized frame closes the connection");

    // A join without a valid room tag (a link missing its secret) is refused
    // with a fatal, typed error, and the connection is closed.
    for join in [
        "{\"type\":\"join\",\"room\":\"steady\",\"profile\":\"{}\"}",
        "{\"type\":\"join\",\"room\":\"steady\",\"profile\":\"{}\",\"room_tag\":\"\"}",
        "{\"type\":\"join\",\"room\":\"steady\",\"profile\":\"{}\",\"room_tag\":\"short\"}",
        "{\"type\":\"join\",\"room\":\"steady\",\"profile\":\"{}\",\"room_tag\":\"AAAAAAAAAAAAAAAAAAAAA+\"}",
    ] {
        let mut ws = connect(server.http).await;
        ws.send(text(join)).await.expect("send");
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no answer to {join}") };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
        assert_eq!(v["type"], "error", "{join}: {v}");
        assert_eq!(v["code"], "incomplete_link", "{join}: {v}");
        assert_eq!(v["message"], "This link is incomplete: the part after # is missing or damaged");
        assert_eq!(v["fatal"], true);
        assert_eq!(next(&mut ws).await.0, "closed", "{join}: the connection is closed");
    }

    // --- UDP and ICE-TCP on the media port ---
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let target = SocketAddr::from(([127, 0, 0, 1], server.rtc));
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        vec![0x80, 0x60, 0, 1],                   // truncated RTP
        vec![0x81, 0xc9, 0, 7, 1, 2],             // truncated RTCP
        vec![0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42], // truncated STUN
        vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], // STUN, no attributes
        vec![0x16, 0xfe, 0xfd, 0, 0],             // truncated DTLS
        (0..1400u32).map(|i| (i * 7919 % 251) as u8).collect(), // noise
    ];
    for _ in 0..50 {
        for j in &junk {
            let _ = udp.send_to(j, target);
        }
    }
    if let Ok(mut tcp) = TcpStream::connect(target) {
        let _ = tcp.write_all(&[0, 5, 1, 2, 3, 4, 5, 0xff, 0xff, 9]); // a frame, then a huge announced length
        let _ = tcp.write_all(&[0u8; 100]);
    }
    assert!(server.healthy(), "server answers after the garbage");

    // --- the meeting went on ---
    let (fa, fb) =
        tokio::task::spawn_blocking(move || (video_frames_received(a), video_frames_received(b))).await.expect("join");
    // carphone is ~30 fps; 14 s of media, allow set-up and a key frame wait.
    assert!(fa > 300 && fb > 300, "native participants kept receiving video: {fa} and {fb} frames");
    assert!(server.healthy());
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "server panicked:\n{log}");
    assert!(!log.contains("Participant-a") && !log.contains("Participant-b"), "names never logged");
}
