//! Bad MLS input through the server, against real clients (issue #5): three
//! `plenary join` participants hold an end-to-end encrypted meeting; a raw
//! WebSocket client in the same room (it knows the room tag, as the
//! operator does, but is not in the MLS group) sends a forged commit for the
//! current epoch, a commit for a past epoch, a Welcome naming a joiner that
//! does not exist, an application message, a malformed and an oversized
//! envelope. Each is refused with an error to the sender, which stays
//! connected; the participants' epoch and security code do not change and
//! they keep decrypting each other.
//!
//! Skips (with a message) only when `.media/` is missing; CI creates it.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::native::{Native, decrypted_in};
use common::{Server, media, new_secret};
use futures_util::{SinkExt, StreamExt};
use plenary_e2ee::envelope::Envelope;
use plenary_e2ee::secret::MeetingSecret;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "bad-mls";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next `error` the server sends (skipping room events), or `closed`.
async fn next_error(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.expect("an answer within 10 s");
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                if v["type"] == "error" {
                    return v;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return json!({"type": "closed"}),
            Some(Ok(_)) => {}
        }
    }
}

fn mls(envelope: &[u8]) -> Message {
    Message::Text(json!({"type": "mls", "envelope": URL_SAFE_NO_PAD.encode(envelope)}).to_string().into())
}

fn noise(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 % 251) as u8).collect()
}

/// (epoch, security code) of the latest `epoch` event.
fn group_state(n: &Native) -> Option<(Value, Value)> {
    n.events()
        .into_iter()
        .rev()
        .find(|(_, v)| v["event"] == "epoch")
        .map(|(_, v)| (v["epoch"].clone(), v["security_code"].clone()))
}

/// Decrypted audio frames from each other participant in the latest `frames` event.
fn decrypted_audio(n: &Native, others: &[u64]) -> Vec<u64> {
    let last = n.events().into_iter().rev().find(|(_, v)| v["event"] == "frames").map(|(_, v)| v).unwrap_or_default();
    others.iter().map(|o| decrypted_in(&last, *o, "audio")).collect()
}

#[test]
fn forged_stale_misaddressed_and_malformed_mls_is_refused_and_the_meeting_goes_on() {
    let (Some(video), Some(audio)) = (media("carphone.ivf"), media("speech.ogg")) else {
        eprintln!("skipping: .media/carphone.ivf or speech.ogg missing (run scripts/test-media.sh)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("plenary-bad-mls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let server = Server::start(&dir, &[]);
    let secret = new_secret();
    let url = format!("http://{}/m/{ROOM}#{secret}", server.http);
    let args = [
        "--video".as_ref(),
        video.as_os_str(),
        "--audio".as_ref(),
        audio.as_os_str(),
        "--duration".as_ref(),
        "40".as_ref(),
    ];
    let t0 = Instant::now();
    let natives: Vec<Native> = ["Participant-A", "Participant-B", "Participant-C"]
        .iter()
        .map(|n| Native::spawn(&[], &url, n, &args))
        .collect();
    let ids: Vec<u64> = natives
        .iter()
        .map(|n| {
            n.wait_for(t0, Duration::from_secs(20), |v| v["event"] == "joined")
                .and_then(|(_, v)| v["participant_id"].as_u64())
                .unwrap_or_else(|| panic!("joins: {}", n.stderr_tail()))
        })
        .collect();
    let others =
        |i: usize| -> Vec<u64> { ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, id)| *id).collect() };

    // The meeting is running: everyone decrypts everyone, one group.
    for (i, n) in natives.iter().enumerate() {
        let o = others(i);
        let ok = n.wait_for(t0, Duration::from_secs(30), |v| {
            v["event"] == "frames" && o.iter().all(|from| decrypted_in(v, *from, "audio") > 25)
        });
        assert!(ok.is_some(), "participant {i} decrypts the others before the attack: {}", n.stderr_tail());
    }
    let before: Vec<_> = natives.iter().map(group_state).collect();
    assert!(before[0].is_some() && before.iter().all(|s| *s == before[0]), "one group before the attack: {before:?}");
    let epoch = before[0].as_ref().and_then(|(e, _)| e.as_u64()).expect("epoch number");
    let counts_before: Vec<Vec<u64>> =
        natives.iter().enumerate().map(|(i, n)| decrypted_audio(n, &others(i))).collect();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await.expect("ws connect");
        let tag = MeetingSecret::from_base64url(&secret).expect("secret").room_tag(ROOM);
        ws.send(Message::Text(
            json!({"type": "join", "room": ROOM, "profile": "{}", "room_tag": tag}).to_string().into(),
        ))
        .await
        .expect("send join");
        let commit = |e: u64| Envelope::Commit { epoch: e, message: &noise(300) }.encode().expect("encode");
        let cases: Vec<(&str, Message, &str)> = vec![
            ("forged commit for the current epoch", mls(&commit(epoch)), "not_group_member"),
            ("commit for a past epoch", mls(&commit(epoch.saturating_sub(1))), "not_group_member"),
            (
                "Welcome addressed to a joiner that is not waiting",
                mls(&Envelope::Welcome { key_package_refs: vec![&noise(32)], message: &noise(200) }
                    .encode()
                    .expect("encode")),
                "not_group_member",
            ),
            (
                "application message from outside the group",
                mls(&Envelope::Application { message: &noise(100) }.encode().expect("encode")),
                "not_group_member",
            ),
            (
                "envelope that is not base64url",
                Message::Text(json!({"type": "mls", "envelope": "%%%not base64%%%"}).to_string().into()),
                "bad_envelope",
            ),
            ("truncated envelope", mls(&[1]), "bad_envelope"),
            ("unknown envelope kind", mls(&[1, 0xee, 1, 2, 3]), "bad_envelope"),
            (
                "oversized join request (KeyPackage of 20 KB)",
                mls(&Envelope::JoinRequest {
                    key_package_ref: &noise(32),
                    proof: &[7; 32],
                    key_package: &noise(20_000),
                }
                .encode()
                .expect("encode")),
                "bad_envelope",
            ),
            (
                "MLS message over the 1 MiB message limit",
                mls(&noise(plenary_proto::MAX_CLIENT_MESSAGE_BYTES)),
                "too_large",
            ),
        ];
        for (what, msg, code) in cases {
            ws.send(msg).await.expect("send");
            let err = next_error(&mut ws).await;
            assert_eq!(err["type"], "error", "{what}: refused with an error, connection kept: {err}");
            assert_eq!(err["code"], code, "{what}: {err}");
            assert_ne!(err["fatal"], true, "{what}: not fatal");
        }
        // Still connected and served.
        ws.send(Message::Text(json!({"type": "ping", "id": 7}).to_string().into())).await.expect("ping");
        let pong = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && t.as_str().contains("\"pong\"")
                {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(pong, Ok(true), "the sender is still served after its bad messages");
    });

    // The meeting carried on: same group, media still decrypting.
    let attack = Instant::now();
    for (i, n) in natives.iter().enumerate() {
        let o = others(i);
        let base = counts_before[i].clone();
        let ok = n.wait_for(attack, Duration::from_secs(15), |v| {
            v["event"] == "frames" && o.iter().zip(&base).all(|(from, b)| decrypted_in(v, *from, "audio") > b + 50)
        });
        assert!(ok.is_some(), "participant {i} keeps decrypting after the attack: {}", n.stderr_tail());
    }
    let after: Vec<_> = natives.iter().map(group_state).collect();
    assert_eq!(after, before, "no epoch change and the same security code: the bad messages changed nothing");
    for n in &natives {
        let failures: u64 = n
            .events()
            .into_iter()
            .rev()
            .find(|(t, v)| *t >= attack && v["event"] == "frames")
            .map(|(_, v)| {
                v["tracks"].as_array().into_iter().flatten().filter_map(|t| t["decrypt_failures"].as_u64()).sum()
            })
            .unwrap_or(0);
        assert!(failures < 20, "no wave of decrypt failures after the attack: {failures}");
    }
    let log = server.log_text();
    for name in ["Participant-A", "Participant-B", "Participant-C"] {
        assert!(!log.contains(name), "the server log never holds a display name");
    }
    drop(natives);
    let _ = std::fs::remove_dir_all(&dir);
}
