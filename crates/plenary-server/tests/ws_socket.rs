//! The signaling WebSocket transport (`src/ws_socket.rs`) over real
//! sockets.
//!
//! Large signaling messages leave the server as fragments of at most 2 KiB
//! (RFC 6455 §5.4), so that no connection's write buffer grows to the
//! largest message it was ever sent (see `src/ws_socket.rs`), and arrive
//! whole: a participant joining a room whose members have large profiles,
//! with characters of two bytes falling on fragment boundaries, gets every
//! profile intact in its `joined`, through a client that refuses any frame
//! over 2 KiB. A request that is not a WebSocket handshake is refused with
//! the status RFC 6455 §4.2.2 and §4.4 ask for.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The server's fragment size (`ws_socket::FRAGMENT_BYTES`).
const FRAGMENT_BYTES: usize = 2 * 1024;
const PATIENCE: Duration = Duration::from_secs(20);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads messages until one of `kind`; panics on a socket error (a frame
/// over the client's limit is one).
async fn wait_for(ws: &mut Ws, kind: &str) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next()).await.expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == kind {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("socket failed before {kind}: {other:?}"),
        }
    }
}

async fn join(ws: &mut Ws, profile: &str) -> serde_json::Value {
    let join = serde_json::json!({
        "type": "join", "room": "big-profiles", "profile": profile, "room_tag": "AAAAAAAAAAAAAAAAAAAAAA",
    });
    ws.send(Message::text(join.to_string())).await.expect("send join");
    wait_for(ws, "joined").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_joined_arrives_whole_in_small_frames() {
    let dir = std::env::temp_dir().join(format!("plenary-ws-fragments-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let url = format!("ws://{}/ws", server.http);

    // Three members with ~3.8 KB profiles of two-byte characters: the
    // fourth one's `joined` lists them, about 11.5 KB.
    let profiles: Vec<String> = (0..3).map(|i| format!("{i}{}", "é".repeat(1900))).collect();
    let mut members = Vec::new();
    for p in &profiles {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
        join(&mut ws, p).await;
        members.push(ws);
    }

    let strict = WebSocketConfig::default().max_frame_size(Some(FRAGMENT_BYTES));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(strict), false).await.expect("connect");
    let joined = join(&mut ws, "{}").await;
    let got: Vec<&str> = joined["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["profile"].as_str().expect("profile"))
        .collect();
    assert_eq!(got, profiles.iter().map(String::as_str).collect::<Vec<_>>(), "every profile arrives intact");

    // The connection goes on: a ping is answered after the fragmented message.
    ws.send(Message::text(r#"{"type":"ping","id":7}"#)).await.expect("send ping");
    assert_eq!(wait_for(&mut ws, "pong").await["id"], 7);
    drop(members);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The status line the server answers `request` with.
fn status_line(server: &Server, request: &str) -> String {
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

#[test]
fn a_request_that_is_not_a_handshake_is_refused() {
    let dir = std::env::temp_dir().join(format!("plenary-ws-handshake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let plain = status_line(&server, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(plain.contains(" 400 "), "plain GET: {plain}");
    let old = status_line(
        &server,
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(old.contains(" 426 "), "version 8: {old}");
    // The key must be one base64-encoded 16-byte nonce (RFC 6455 §4.2.1).
    let handshake = |key_lines: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n{key_lines}\r\n"
        )
    };
    for (what, keys) in [
        ("empty key", "Sec-WebSocket-Key: \r\n".to_owned()),
        ("huge key", format!("Sec-WebSocket-Key: {}\r\n", "A".repeat(8000))),
        ("15-byte key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n".to_owned()),
        ("not base64", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!==\r\n".to_owned()),
        (
            "two keys",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n".to_owned(),
        ),
    ] {
        let answer = status_line(&server, &handshake(&keys));
        assert!(answer.contains(" 400 "), "{what}: {answer}");
    }
    let ok = status_line(
        &server,
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(ok.contains(" 101 "), "valid handshake: {ok}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
