//! Slow and greedy clients against a real server on loopback: a client that
//! sends its request headers byte by byte, or nothing at all, is cut off
//! while others are served; one address gets only its share of HTTP
//! connections, signaling sessions and ICE-TCP connections (the next one is
//! refused with HTTP 429 or closed), while another address is still served.
//! Refusals are logged without the address.
//!
//! Other addresses: Linux routes all of 127.0.0.0/8 to loopback, so a client
//! bound to 127.0.0.2 is another address to the server on 127.0.0.1.

mod common;

use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, healthz};

const ME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Longest wait for something that should happen within a second or two.
const PATIENCE: Duration = Duration::from_secs(20);

fn start(args: &[&str]) -> (tempdir::Dir, Server) {
    let dir = tempdir::Dir::new("limits");
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let server = Server::start(&dir.0, &args);
    (dir, server)
}

/// Minimal temporary directory, removed on drop.
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(stem: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "plenary-{stem}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let stream = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::new(from, 0))?;
            s.connect(to).await
        })
        .expect("connect")
        .into_std()
        .expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// Sends one keep-alive `GET path` and returns the response's status code
/// (0 if the connection closed without an answer).
fn get(s: &mut TcpStream, path: &str) -> u16 {
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).is_err() {
        return 0;
    }
    response(s).0
}

/// A connection from `from` on which `GET /healthz` is answered (retried
/// while connections closed just before still count).
fn served(from: IpAddr, http: SocketAddr) -> TcpStream {
    let mut found = None;
    assert!(
        eventually(|| {
            let mut s = connect_from(from, http);
            let ok = get(&mut s, "/healthz") == 200;
            found = ok.then_some(s);
            ok
        }),
        "a connection is served"
    );
    found.expect("served")
}

/// Reads a response and returns its status code (0 on close or error) and body.
fn response(s: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return (0, String::new()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    // Skip the body (Content-Length is always given here).
    let len = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body);
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the server closed `s`: a read returns end of file or a reset
/// within [`PATIENCE`].
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return true,
            Err(_) => return false,
        }
    }
}

/// Whether `s` is still open after `wait`: no end of file or reset (what
/// the server sends meanwhile is read and ignored).
fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    let open = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break true;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break false,
            Ok(_) => continue,
            Err(e) => break matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    };
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    open
}

/// Opens a signaling session from `from` and joins a room (so that the
/// join timeout does not end it); returns the socket and the upgrade's
/// HTTP status and body.
fn session(from: IpAddr, http: SocketAddr, room: &str) -> (TcpStream, (u16, String)) {
    let mut s = connect_from(from, http);
    let upgrade = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    s.write_all(upgrade.as_bytes()).expect("upgrade request");
    let code = response(&mut s);
    if code.0 == 101 {
        let join = plenary_proto::encode(&plenary_proto::ClientMsg::Join {
            room: room.into(),
            profile: "{}".into(),
            version: plenary_proto::PROTOCOL_VERSION,
            room_tag: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        });
        // One masked text frame; a zero mask leaves the payload as is (RFC 6455 §5.3).
        let mut frame = vec![0x81, 0x80 | 126];
        frame.extend_from_slice(&u16::try_from(join.len()).expect("short").to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(join.as_bytes());
        s.write_all(&frame).expect("join frame");
    }
    (s, code)
}

/// Polls `f` until it is true or [`PATIENCE`] passes.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Refusal warnings in the log, which must name no address.
fn refusal_lines(server: &Server) -> Vec<String> {
    let log = server.log_text();
    let lines: Vec<String> =
        log.lines().filter(|l| l.contains("per-address limit reached")).map(String::from).collect();
    for l in &lines {
        assert!(!l.contains("127.0.0."), "a refusal is logged without the client's address: {l}");
    }
    lines
}

#[test]
fn slow_and_silent_clients_are_cut_off_while_others_are_served() {
    let (_dir, server) = start(&["--header-timeout", "2"]);

    // Headers byte by byte, 250 ms apart: 10 s for the whole request head.
    let mut slow = connect_from(ME, server.http);
    let mut writer = slow.try_clone().expect("clone");
    let finished = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&finished);
    let sender = std::thread::spawn(move || {
        for b in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow\r\n\r\n" {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        done.store(true, Ordering::SeqCst);
    });
    // Meanwhile a normal client is served.
    assert!(healthz(server.http), "a normal client is served while the slow one sends");
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(!finished.load(Ordering::SeqCst), "the slow client is cut off before it finishes its headers");
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "), "and is not served");
    let _ = sender.join();

    // A client that sends nothing is cut off too.
    let mut silent = connect_from(ME, server.http);
    assert!(closed_by_server(&mut silent), "a silent HTTP client is disconnected");
    // An ICE-TCP client that sends no frame as well.
    let mut silent_tcp = connect_from(ME, SocketAddr::new(ME, server.rtc));
    assert!(closed_by_server(&mut silent_tcp), "a silent ICE-TCP client is disconnected");

    assert!(healthz(server.http), "the server still serves");
}

#[test]
fn one_address_gets_its_share_and_others_are_still_served() {
    // A long header timeout: the held connections stay silent meanwhile.
    let (_dir, server) =
        start(&["--max-connections-per-ip", "3", "--max-sessions-per-ip", "2", "--header-timeout", "120"]);

    // HTTP: three keep-alive connections work, the fourth gets 429.
    let mut held: Vec<TcpStream> = (0..3).map(|_| served(ME, server.http)).collect();
    let mut fourth = connect_from(ME, server.http);
    let (code, body) = response(&mut fourth);
    assert_eq!(code, 429, "the 4th connection from one address gets 429 Too Many Requests");
    assert!(body.contains("Too many connections"), "{body}");
    let mut other = connect_from(OTHER, server.http);
    assert_eq!(get(&mut other, "/healthz"), 200, "another address is served");
    for s in &mut held {
        assert_eq!(get(s, "/healthz"), 200, "the first 3 keep working");
    }
    drop(held.pop());
    drop(served(ME, server.http)); // a closed connection frees its place
    drop(held);
    drop(other);

    // Signaling: two sessions, the third upgrade gets 429. (Upgraded
    // connections no longer count as HTTP connections; the retries wait
    // for the server to notice the connections closed above.)
    let open = |room: &str| {
        let mut found = None;
        assert!(
            eventually(|| {
                let (s, (code, _)) = session(ME, server.http, room);
                found = (code == 101).then_some(s);
                code == 101
            }),
            "session {room} opens"
        );
        found.expect("open")
    };
    let mut a = open("limits-a");
    let _b = open("limits-b");
    let (code, body) = session(ME, server.http, "limits-c").1;
    assert_eq!(code, 429, "the 3rd session from one address gets 429");
    assert!(body.contains("signaling sessions"), "the answer says why: {body}");
    let (_c, (code, _)) = session(OTHER, server.http, "limits-c");
    assert_eq!(code, 101, "another address opens a session");
    assert!(still_open(&mut a, Duration::from_millis(500)), "the first sessions stay open");
    drop(a);
    let _d = open("limits-d"); // a closed session frees its place

    // ICE-TCP: three connections stay open, the fourth is closed at once.
    let rtc = SocketAddr::new(ME, server.rtc);
    let mut media: Vec<TcpStream> = (0..3).map(|_| connect_from(ME, rtc)).collect();
    let mut fourth = connect_from(ME, rtc);
    assert!(closed_by_server(&mut fourth), "the 4th ICE-TCP connection from one address is closed");
    let mut other = connect_from(OTHER, rtc);
    for s in media.iter_mut().chain([&mut other]) {
        assert!(still_open(s, Duration::from_millis(300)), "the first 3, and another address's, stay open");
    }

    let lines = refusal_lines(&server);
    for what in ["HTTP connections", "signaling sessions", "ICE-TCP connections"] {
        assert!(lines.iter().any(|l| l.contains(what)), "refused {what} are counted in the log: {lines:?}");
    }
    assert!(healthz(server.http), "the server still serves");
}
