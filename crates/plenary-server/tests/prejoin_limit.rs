//! What a signaling connection may send before it has joined a room.
//!
//! Until `join` succeeds, a connection may send only small messages (a
//! `join` with the largest profile allowed fits, with room to spare): a
//! larger one is refused as soon as its first bytes exceed the limit, with
//! a fatal `too_large` error and a WebSocket close 1009 (RFC 6455 §7.4.1),
//! before the rest of it is sent, so unjoined connections cannot make the
//! server hold megabytes each. Once joined, a member still sends large MLS
//! messages: a commit adding 200 joiners, with its Welcome, is accepted and
//! the one joiner online gets in.
//!
//! The attack this guards against (found by a breaker): every address may
//! open [`SESSIONS`] signaling sessions; each announced a 4 MiB frame and
//! sent all of it but one byte, and the server kept it for the 15 s a
//! connection has to join, about 512 MiB per address.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Server;
use futures_util::{SinkExt, StreamExt};
use plenary_e2ee::group::Participant;
use plenary_e2ee::secret::MeetingSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The server's default signaling sessions per address (`--max-sessions-per-ip`).
const SESSIONS: usize = 128;
/// What each attacking connection announces: the largest frame the server
/// accepted from anyone before (4 x `MAX_CLIENT_MESSAGE_BYTES`), less a little.
const ANNOUNCED: usize = 4 * plenary_proto::MAX_CLIENT_MESSAGE_BYTES - 1024;
const PATIENCE: Duration = Duration::from_secs(20);

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A TCP connection to the server from `from` (any 127.x.y.z is local).
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// A raw WebSocket connection after the opening handshake.
async fn raw_ws(to: SocketAddr) -> TcpStream {
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), to).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {to}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut b)).await.expect("handshake answer").expect("read");
        assert_eq!(n, 1, "connection closed during the handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// The header of a masked client text frame of `len` bytes (RFC 6455 §5.2),
/// with an all-zero masking key so the payload goes out as it is.
fn text_frame_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend_from_slice(&(len as u64).to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

/// Sends up to `len` bytes of payload in 64 KiB writes, stopping early when
/// a write does not complete within `stall` (the server stopped reading);
/// returns how many bytes went out.
async fn send_payload(s: &mut TcpStream, len: usize, stall: Duration) -> usize {
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        match tokio::time::timeout(stall, s.write_all(&chunk[..n])).await {
            Ok(Ok(())) => sent += n,
            _ => break,
        }
    }
    sent
}

/// What the server said before closing: the texts of its frames and the
/// close code, if any. Reads until the close frame, EOF or `PATIENCE`.
async fn answers(s: &mut TcpStream) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut head = [0u8; 2];
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(tokio::time::timeout(left, s.read_exact(&mut head)).await, Ok(Ok(_))) {
            return (texts, None);
        }
        let len = match head[1] & 0x7f {
            126 => u64::from(s.read_u16().await.expect("length")),
            127 => s.read_u64().await.expect("length"),
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).expect("length")];
        s.read_exact(&mut payload).await.expect("payload");
        match head[0] & 0x0f {
            0x1 => texts.push(String::from_utf8(payload).expect("UTF-8")),
            0x8 => return (texts, payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
            _ => {}
        }
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn temp_dir(stem: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("plenary-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn join_msg(room: &str, secret: &MeetingSecret, profile: &str) -> Message {
    let join = serde_json::json!({"type": "join", "room": room, "profile": profile, "room_tag": secret.room_tag(room)});
    Message::text(join.to_string())
}

/// A signaling client from `from`.
async fn ws_from(from: IpAddr, http: SocketAddr) -> Ws {
    let tcp = connect_from(from, http).await;
    tokio_tungstenite::client_async(format!("ws://{http}/ws"), tcp).await.expect("WebSocket").0
}

/// Reads messages until one of type `kind`; panics on a close or error.
async fn wait_for(ws: &mut Ws, kind: &str) -> serde_json::Value {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == kind {
                    return v;
                }
                assert_ne!(v["type"], "error", "waiting for {kind}: {v}");
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended before {kind}: {other:?}"),
        }
    }
}

/// Waits for `joined`; false if the join itself was refused as
/// `too_large` because the server already holds its budget of unfinished
/// messages (the other connections got there first: the server defends
/// itself before this one could join).
async fn joined_or_refused(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "joined" {
                    return true;
                }
                if v["type"] == "error" {
                    assert_eq!(v["code"], "too_large", "waiting for joined: {v}");
                    assert_eq!(v["fatal"], true, "{v}");
                    return false;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended before joined: {other:?}"),
        }
    }
}

/// Announces a text frame of [`ANNOUNCED`] bytes on `s` and sends all of
/// it but one byte, as fast as the server takes it; returns the stream and
/// how many payload bytes went out.
async fn almost_send_big_frame(mut s: TcpStream) -> (TcpStream, usize) {
    s.write_all(&text_frame_header(ANNOUNCED)).await.expect("frame header");
    let sent = send_payload(&mut s, ANNOUNCED - 1, Duration::from_secs(2)).await;
    (s, sent)
}

/// Waits for every attacker, sampling the server's RSS meanwhile (and for
/// a second after); returns what they returned and the peak RSS, KiB.
async fn wait_for_attackers<T>(attackers: Vec<tokio::task::JoinHandle<T>>, pid: u32, before: u64) -> (Vec<T>, u64) {
    let mut peak = before;
    let mut streams = Vec::new();
    for a in attackers {
        while !a.is_finished() {
            peak = peak.max(vm_rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        streams.push(a.await.expect("attacker"));
    }
    for _ in 0..10 {
        peak = peak.max(vm_rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (streams, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unjoined_connections_cannot_make_the_server_hold_big_messages() {
    let dir = temp_dir("prejoin-flood");
    let server = Server::start(&dir, &[]);
    let pid = server.child.id();
    let before = vm_rss_kib(pid);

    // Every session the address may open announces a 4 MiB message and
    // sends all of it but one byte, as fast as the server takes it.
    let started = Instant::now();
    let attackers: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let http = server.http;
            tokio::spawn(async move { almost_send_big_frame(raw_ws(http).await).await })
        })
        .collect();
    let (streams, peak) = wait_for_attackers(attackers, pid, before).await;
    let sending = started.elapsed();
    let sent: usize = streams.iter().map(|(_, n)| n).sum();
    eprintln!(
        "server RSS {} MiB before, peak {} MiB with {SESSIONS} unjoined connections announcing {} KiB each \
         ({} MiB sent in {:.1} s)",
        before / 1024,
        peak / 1024,
        ANNOUNCED / 1024,
        sent >> 20,
        sending.as_secs_f64(),
    );

    // Someone else (another address) joins and is served meanwhile.
    let secret = MeetingSecret::random().expect("secret");
    let mut other = ws_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), server.http).await;
    other.send(join_msg("bystander", &secret, "{}")).await.expect("join");
    wait_for(&mut other, "joined").await;

    // Each attacker was told why, with a close for a message too big.
    for (mut s, _) in streams {
        let (texts, close) = answers(&mut s).await;
        let error: serde_json::Value = serde_json::from_str(texts.first().expect("an error message")).expect("JSON");
        assert_eq!(
            (&error["type"], &error["code"], &error["fatal"]),
            (&"error".into(), &"too_large".into(), &true.into())
        );
        assert_eq!(close, Some(1009), "close code: Message Too Big");
    }
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "unjoined connections made the server grow by {} MiB",
        peak.saturating_sub(before) / 1024
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_first_message_is_refused_before_it_is_sent_whole() {
    let dir = temp_dir("prejoin-one");
    let server = Server::start(&dir, &[]);
    let mut s = raw_ws(server.http).await;
    s.write_all(&text_frame_header(ANNOUNCED)).await.expect("frame header");
    // A quarter of it; the rest never comes.
    let sent = send_payload(&mut s, ANNOUNCED / 4, Duration::from_secs(5)).await;
    let (texts, close) = answers(&mut s).await;
    let error: serde_json::Value = serde_json::from_str(texts.first().expect("an error message")).expect("JSON");
    assert_eq!(error["code"], "too_large", "{error} after {sent} bytes");
    assert_eq!(error["fatal"], true);
    assert_eq!(close, Some(1009));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `per_address` connections from each of `addresses` join and then each
/// announce a 4 MiB message and send all of it but one byte; asserts the
/// server grew by less than `most_mib` while a bystander at another
/// address is served, that at least half were refused with a fatal
/// `too_large` and a close 1009, and that the addresses are served again
/// once they are gone.
async fn joined_flood(stem: &str, addresses: &[IpAddr], per_address: usize, most_mib: u64) {
    let dir = temp_dir(stem);
    let server = Server::start(&dir, &[]);
    let pid = server.child.id();
    let secret = MeetingSecret::random().expect("secret");
    let before = vm_rss_kib(pid);
    let attackers: Vec<_> = (0..addresses.len() * per_address)
        .map(|i| {
            let (http, secret, from) = (server.http, secret.clone(), addresses[i % addresses.len()]);
            tokio::spawn(async move {
                let mut ws = ws_from(from, http).await;
                ws.send(join_msg(&format!("flood-{i}"), &secret, "{}")).await.expect("join");
                if !joined_or_refused(&mut ws).await {
                    return None;
                }
                // Back to the raw stream.
                Some(almost_send_big_frame(ws.into_inner()).await)
            })
        })
        .collect();
    let total = attackers.len();
    let (streams, peak) = wait_for_attackers(attackers, pid, before).await;
    let sent: usize = streams.iter().flatten().map(|(_, n)| n).sum();
    eprintln!(
        "server RSS {} MiB before, peak {} MiB with {total} joined connections from {} addresses announcing {} KiB \
         each ({} MiB sent)",
        before / 1024,
        peak / 1024,
        addresses.len(),
        ANNOUNCED / 1024,
        sent >> 20
    );
    // Someone at another address joins and is served meanwhile.
    let mut other = ws_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)), server.http).await;
    other.send(join_msg("bystander", &secret, "{}")).await.expect("join");
    wait_for(&mut other, "joined").await;
    assert!(
        peak.saturating_sub(before) < most_mib * 1024,
        "joined connections made the server grow by {} MiB",
        peak.saturating_sub(before) / 1024
    );
    // Those refused were told why; close the rest.
    // Refused at join (the server's budget already full) counts as refused.
    let mut refused = streams.iter().filter(|s| s.is_none()).count();
    for (mut s, _) in streams.into_iter().flatten() {
        let _ = s.shutdown().await;
        let (texts, close) = answers(&mut s).await;
        let told = texts
            .iter()
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .find(|v| v["type"] == "error" && v["code"] == "too_large");
        if let Some(error) = told {
            assert_eq!(error["fatal"], true, "{error}");
            assert_eq!(close, Some(1009), "close code: Message Too Big");
            refused += 1;
        }
    }
    assert!(refused >= total / 2, "only {refused} of {total} unfinished 4 MiB messages were refused");
    // Once they are gone, the addresses are served again.
    for (i, from) in addresses.iter().enumerate() {
        let mut again = ws_from(*from, server.http).await;
        again.send(join_msg(&format!("after-flood-{i}"), &secret, "{}")).await.expect("join");
        wait_for(&mut again, "joined").await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_connections_of_one_address_share_a_budget_for_unfinished_messages() {
    // Found by a helper reading the limits: once joined, a connection may
    // send messages of up to 4 MiB with no deadline, so every session an
    // address may open could hold one unfinished, 512 MiB per address
    // (32 here grew the server by 129 MiB without the budget).
    joined_flood("joined-flood", &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))], 32, 48).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_connections_of_many_addresses_share_a_budget_for_unfinished_messages() {
    // Per address alone, many addresses would add up (an IPv6 /48 holds
    // 65,536 /64s): 8 addresses x 8 connections x 4 MiB here.
    let addresses: Vec<IpAddr> = (0..8).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i))).collect();
    joined_flood("joined-flood-many", &addresses, 8, 100).await;
}

/// A masked client frame (RFC 6455 §5.2) with an all-zero masking key:
/// `opcode` with FIN set or not.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 | opcode } else { opcode }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_pongs_between_fragments_do_not_restart_the_count() {
    // Found by the breaker: a ping or pong between the fragments of one
    // message used to count as a whole message, so 60 KiB fragments with
    // a ping after each made one unjoined connection hold 3.7 MB.
    let dir = temp_dir("prejoin-fragments");
    let server = Server::start(&dir, &[]);
    for control in [0x9, 0xA] {
        let mut s = raw_ws(server.http).await;
        let part = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        let mut first = true;
        // 256 KiB in fragments, four times the limit.
        while sent < 16 * part.len() {
            let f = frame(false, if first { 0x1 } else { 0x0 }, &part);
            first = false;
            let ping = frame(true, control, b"p");
            let wrote = tokio::time::timeout(Duration::from_secs(5), async {
                s.write_all(&f).await?;
                s.write_all(&ping).await
            })
            .await;
            if !matches!(wrote, Ok(Ok(()))) {
                break;
            }
            sent += part.len();
        }
        let (texts, close) = answers(&mut s).await;
        let error = texts
            .iter()
            .map(|t| serde_json::from_str::<serde_json::Value>(t).expect("JSON"))
            .find(|v| v["type"] == "error")
            .unwrap_or_else(|| panic!("no error after {sent} bytes in fragments with control frame {control:#x}"));
        assert_eq!((&error["code"], &error["fatal"]), (&"too_large".into(), &true.into()), "{error}");
        assert_eq!(close, Some(1009), "close code after fragments with control frame {control:#x}");
    }
    // The server still serves a join.
    let secret = MeetingSecret::random().expect("secret");
    let mut ws = ws_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server.http).await;
    ws.send(join_msg("after-fragments", &secret, "{}")).await.expect("join");
    wait_for(&mut ws, "joined").await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `msg` as `{"type":"mls"}` with an optional Welcome, base64url.
fn mls_msg(envelope: &[u8], welcome: Option<&[u8]>) -> Message {
    let mut m = serde_json::json!({"type": "mls", "envelope": URL_SAFE_NO_PAD.encode(envelope)});
    if let Some(w) = welcome {
        m["welcome"] = URL_SAFE_NO_PAD.encode(w).into();
    }
    Message::text(m.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_join_and_a_large_commit_after_it_are_accepted() {
    let dir = temp_dir("prejoin-legit");
    let server = Server::start(&dir, &[]);
    let room = "large-commit";
    let secret = MeetingSecret::random().expect("secret");
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);

    // The largest join a client can send: a profile of the largest size
    // allowed, every byte of which JSON writes as a 6-byte escape.
    let profile = "\u{1}".repeat(plenary_proto::MAX_PROFILE_BYTES);
    let big_join = join_msg(room, &secret, &profile);
    eprintln!("largest join: {} bytes", big_join.len());
    let mut a = ws_from(local, server.http).await;
    a.send(big_join).await.expect("join");
    wait_for(&mut a, "joined").await;
    wait_for(&mut a, "create_group").await;
    let mut alice = Participant::new(room, secret.clone()).expect("participant");
    alice.create().expect("create");
    a.send(Message::text(r#"{"type":"group_member","leaf":0}"#)).await.expect("group_member");

    // Bob joins and asks to be added.
    let mut b = ws_from(local, server.http).await;
    b.send(join_msg(room, &secret, "{}")).await.expect("join");
    wait_for(&mut b, "joined").await;
    let mut bob = Participant::new(room, secret.clone()).expect("participant");
    b.send(mls_msg(&bob.join_request().expect("join request"), None)).await.expect("send join request");
    let relayed = wait_for(&mut a, "mls").await;
    let bob_request = URL_SAFE_NO_PAD.decode(relayed["envelope"].as_str().expect("envelope")).expect("base64url");

    // Alice adds Bob and 199 others in one commit.
    let mut requests = vec![bob_request];
    for _ in 0..199 {
        requests.push(Participant::new(room, secret.clone()).expect("joiner").join_request().expect("request"));
    }
    let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let out = alice.commit(&refs, &[]).expect("commit");
    assert_eq!(out.added.len(), 200);
    let commit = mls_msg(&out.commit, out.welcome.as_deref());
    eprintln!("commit adding 200 with its Welcome: {} bytes", commit.len());
    assert!(commit.len() > 2 * 64 * 1024, "the commit is a large message ({} bytes)", commit.len());
    a.send(commit).await.expect("send commit");
    wait_for(&mut a, "commit_accepted").await;
    alice.commit_accepted().expect("apply own commit");

    // Bob gets the Welcome and is in the group, at Alice's epoch.
    let welcome = wait_for(&mut b, "mls").await;
    bob.process(&URL_SAFE_NO_PAD.decode(welcome["envelope"].as_str().expect("envelope")).expect("base64url"))
        .expect("Welcome");
    assert!(bob.is_member());
    assert_eq!(bob.epoch(), alice.epoch());
    assert_eq!(bob.security_code().expect("code").to_string(), alice.security_code().expect("code").to_string());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
