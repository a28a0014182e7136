//! `join` against scripted signaling servers on loopback: every way of not
//! getting into a meeting must end in the right typed error, in time.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use plenary_client::{ClientError, JoinOptions};
use plenary_proto::{ClientMsg, ErrorCode, ParticipantId, ServerMsg};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts one WebSocket on a loopback port and runs `script` on it.
async fn fake_server<F, Fut>(script: F) -> SocketAddr
where
    F: FnOnce(ServerWs) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        script(ws).await;
    });
    addr
}

async fn recv(ws: &mut ServerWs) -> ClientMsg {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return plenary_proto::decode_client_msg(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("client went away: {other:?}"),
        }
    }
}

async fn send(ws: &mut ServerWs, msg: &ServerMsg) {
    ws.send(Message::text(plenary_proto::encode(msg))).await.unwrap();
}

fn joined() -> ServerMsg {
    ServerMsg::Joined { participant_id: ParticipantId(7), room: "r".into(), participants: vec![], ice_servers: vec![] }
}

/// Plays the server's side of a join up to the SDP answer: reads `join`,
/// sends `joined`, answers the client's offer from an ICE-lite session
/// whose only candidate is `media` (a socket that never answers). Returns
/// that session for further offers.
async fn join_and_answer(ws: &mut ServerWs, media: SocketAddr) -> str0m::Rtc {
    let _ = recv(ws).await;
    send(ws, &joined()).await;
    let ClientMsg::Offer { sdp } = recv(ws).await else { panic!("no offer") };
    let mut rtc = str0m::Rtc::builder().set_ice_lite(true).build(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host(media, "udp").unwrap());
    let offer = str0m::change::SdpOffer::from_sdp_string(&sdp).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    send(ws, &ServerMsg::Answer { sdp: answer.to_sdp_string() }).await;
    rtc
}

fn opts(addr: SocketAddr) -> JoinOptions {
    JoinOptions {
        url: format!("http://{addr}/m/r#AAECAwQFBgcICQoLDA0ODw"),
        name: "Ada Lovelace".into(),
        duration: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

/// The server gets the room, the room tag and the profile "{}": neither
/// the name nor the secret.
#[tokio::test]
async fn join_sends_room_and_tag_but_neither_name_nor_secret() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr = fake_server(|mut ws| async move {
        let first = recv(&mut ws).await;
        let _ = tx.send(first);
        send(&mut ws, &ServerMsg::Error { code: ErrorCode::RoomFull, message: "room is full".into(), fatal: true })
            .await;
    })
    .await;
    let err = plenary_client::join(opts(addr)).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { code: ErrorCode::RoomFull, message } if message == "room is full"),
        "{err}"
    );
    match rx.await.unwrap() {
        ClientMsg::Join { room, profile, version, room_tag } => {
            assert_eq!(room, "r");
            assert_eq!(version, plenary_proto::PROTOCOL_VERSION);
            assert_eq!(profile, "{}");
            // HKDF-SHA256(secret, "plenary room tag" || "r"), computed with Python.
            assert_eq!(room_tag, "Qa7hAmlqYgwdpCqsGsorEQ");
        }
        other => panic!("first message {other:?}"),
    }
}

/// Every meeting is end-to-end encrypted: a link without its secret is
/// refused before connecting.
#[tokio::test]
async fn link_without_secret_is_refused_before_connecting() {
    // A connection would end in another error (the script closes at once).
    let addr = fake_server(|_ws| async move {}).await;
    for url in [format!("http://{addr}/m/r"), format!("http://{addr}/m/r#")] {
        let mut o = opts(addr);
        o.url = url;
        let err = plenary_client::join(o).await.unwrap_err();
        assert!(matches!(err, ClientError::IncompleteLink), "{err}");
        assert_eq!(err.to_string(), "This link is incomplete: the part after # is missing or damaged");
    }
}

/// A damaged secret is refused before connecting.
#[tokio::test]
async fn damaged_secret_is_refused_before_connecting() {
    let addr = fake_server(|_ws| async move {}).await;
    let mut o = opts(addr);
    o.url = format!("http://{addr}/m/r#fragment-secret");
    let err = plenary_client::join(o).await.unwrap_err();
    assert!(matches!(err, ClientError::IncompleteLink), "{err}");
    assert_eq!(err.to_string(), "This link is incomplete: the part after # is missing or damaged");
}

#[tokio::test]
async fn server_closing_during_join_is_an_error() {
    let addr = fake_server(|mut ws| async move {
        let _ = recv(&mut ws).await;
        let _ = ws.close(None).await;
    })
    .await;
    let err = plenary_client::join(opts(addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err}");
}

#[tokio::test]
async fn a_refused_offer_is_an_error() {
    let addr = fake_server(|mut ws| async move {
        let _ = recv(&mut ws).await;
        send(&mut ws, &joined()).await;
        assert!(matches!(recv(&mut ws).await, ClientMsg::Offer { .. }));
        send(&mut ws, &ServerMsg::Error { code: ErrorCode::BadSdp, message: "bad SDP".into(), fatal: true }).await;
        // Keep the connection open: the client must act on the error itself.
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let err = plenary_client::join(opts(addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::BadSdp, .. }), "{err}");
}

/// The server answers the offer, but its media port never answers ICE
/// checks: `join` gives up after [`plenary_client::MEDIA_CONNECT_TIMEOUT`].
#[tokio::test]
async fn no_media_connection_times_out() {
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let addr = fake_server(move |mut ws| async move {
        let _rtc = join_and_answer(&mut ws, hole_addr).await;
        while ws.next().await.is_some() {}
        drop(black_hole);
    })
    .await;
    let started = Instant::now();
    let err = plenary_client::join(opts(addr)).await.unwrap_err();
    assert!(matches!(err, ClientError::MediaTimeout(_)), "{err}");
    let took = started.elapsed();
    assert!(
        took >= plenary_client::MEDIA_CONNECT_TIMEOUT
            && took < plenary_client::MEDIA_CONNECT_TIMEOUT + Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = plenary_client::join(opts(port)).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("cannot connect"));
}

#[tokio::test]
async fn bad_files_are_rejected_before_connecting() {
    let mut o = opts("127.0.0.1:9".parse().unwrap());
    o.video = Some("/nonexistent/video.ivf".into());
    let err = plenary_client::join(o).await.unwrap_err();
    assert!(matches!(err, ClientError::Source(_)), "{err}");
}

/// A TLS fake server with a fresh self-signed certificate for 127.0.0.1
/// that refuses the join; returns its address and the certificate.
async fn tls_server_refusing_join() -> (SocketAddr, plenary_client::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // An untrusting client aborts the handshake: nothing more to do.
        let Ok(tls) = acceptor.accept(tcp).await else { return };
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                assert!(matches!(plenary_proto::decode_client_msg(t.as_str()), Ok(ClientMsg::Join { .. })));
                let refuse = ServerMsg::Error { code: ErrorCode::RoomFull, message: "full".into(), fatal: true };
                ws.send(Message::text(plenary_proto::encode(&refuse))).await.unwrap();
            }
        }
    });
    (addr, cert)
}

#[tokio::test]
async fn https_links_use_tls() {
    let (addr, cert) = tls_server_refusing_join().await;
    let mut o = opts(addr);
    o.url = format!("https://{addr}/m/r#AAECAwQFBgcICQoLDA0ODw");
    // The refusal arrived over TLS.
    let err = plenary_client::join_with_root_certificates(o, vec![cert]).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::RoomFull, .. }), "{err}");
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails() {
    let (addr, _cert) = tls_server_refusing_join().await;
    let mut o = opts(addr);
    o.url = format!("https://{addr}/m/r#AAECAwQFBgcICQoLDA0ODw");
    let err = plenary_client::join(o).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// What the client asks for a remote video the server offers: its
/// `layer_preference` size, given `hide_video`.
async fn layer_preference_asked(hide_video: bool) -> (u32, u32) {
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr = fake_server(move |mut ws| async move {
        let mut rtc = join_and_answer(&mut ws, hole_addr).await;
        // One remote video, as the SFU offers it.
        let mut change = rtc.sdp_api();
        let mid = change.add_media(
            str0m::media::MediaKind::Video,
            str0m::media::Direction::SendOnly,
            Some("8".into()),
            Some("8-v".into()),
            None,
        );
        let (offer, _pending) = change.apply().unwrap();
        let track_map = vec![plenary_proto::TrackInfo {
            mid: mid.to_string(),
            participant_id: ParticipantId(8),
            kind: plenary_proto::MediaKind::Video,
        }];
        send(&mut ws, &ServerMsg::Offer { sdp: offer.to_sdp_string(), track_map }).await;
        loop {
            if let ClientMsg::LayerPreference { width, height, .. } = recv(&mut ws).await {
                let _ = tx.send((width, height));
                break;
            }
        }
        while ws.next().await.is_some() {}
        drop(black_hole);
    })
    .await;
    let client = tokio::spawn(plenary_client::join(JoinOptions { hide_video, ..opts(addr) }));
    let asked = tokio::time::timeout(Duration::from_secs(20), rx).await;
    client.abort();
    asked.expect("no layer_preference within 20 s").unwrap()
}

/// `hide_video` (the benchmark's fill clients): every received video is
/// reported hidden, so the server forwards none of it; without it the
/// client asks for a large picture.
#[tokio::test]
async fn hide_video_reports_every_video_hidden() {
    assert_eq!(layer_preference_asked(true).await, (0, 0));
    let (w, h) = layer_preference_asked(false).await;
    assert!(w > 0 && h > 0, "{w}x{h}");
}
