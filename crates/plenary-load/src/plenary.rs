//! `--target plenary`: starts `plenary serve` on free loopback ports and
//! speaks its signaling (plenary-proto over a WebSocket at `/ws`).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use plenary_proto::{ClientMsg, MediaKind, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::LoadError;
use crate::process::{ServerProcess, free_port, http_ok, wait_ready};
use crate::target::{
    BoxFuture, ClientSignal, Peer, PeerLink, Role, ServerSignal, Signaling, StartOptions, Target, TargetKind,
};

/// Rendered size sent as the layer preference of every received video:
/// the top layer.
const PREFERRED_SIZE: (u32, u32) = (1280, 720);

/// How long connecting the signaling WebSocket, and then being joined, may take.
const SIGNALING_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `plenary serve`.
pub struct Plenary {
    process: ServerProcess,
    http: SocketAddr,
}

/// Starts `plenary serve` pinned to `opts.server_cpu`, on free ports.
///
/// # Errors
/// [`LoadError::Start`] if it does not answer `/healthz` within 20 s.
pub async fn start(opts: &StartOptions) -> Result<Box<dyn Target>, LoadError> {
    let mut last = None;
    for attempt in 0..3 {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let rtc = free_port()?;
        let args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            http.to_string(),
            "--rtc-port".to_owned(),
            rtc.to_string(),
            "--no-ice-tcp".to_owned(),
            // Every load peer signals from 127.0.0.1: no per-address limits.
            "--max-sessions-per-ip".to_owned(),
            "0".to_owned(),
            "--max-connections-per-ip".to_owned(),
            "0".to_owned(),
            // Every publisher's audio to every subscriber, as Janus and the
            // relays forward it: the same work for every target.
            "--audio-streams".to_owned(),
            "0".to_owned(),
        ];
        let log = opts.work_dir.join(format!("plenary-{attempt}.log"));
        let mut process =
            ServerProcess::spawn(&opts.plenary_bin, &args, &[("PLENARY_LOG", "warn")], opts.server_cpu, log)?;
        match wait_ready("plenary", &mut process, Duration::from_secs(20), || http_ok(http, "/healthz")).await {
            Ok(()) => return Ok(Box::new(Plenary { process, http })),
            // Most likely a port taken meanwhile: retry on others.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(LoadError::Start { target: "plenary", reason: "no attempt".into() }))
}

impl Target for Plenary {
    fn kind(&self) -> TargetKind {
        TargetKind::Plenary
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn open<'a>(&'a self, room: &'a str, role: Role) -> BoxFuture<'a, Result<Vec<Peer>, LoadError>> {
        Box::pin(async move {
            let url = format!("ws://{}/ws", self.http);
            let (mut ws, _) = tokio::time::timeout(SIGNALING_TIMEOUT, tokio_tungstenite::connect_async(url))
                .await
                .map_err(|_| LoadError::Signaling("WebSocket connect timed out".into()))?
                .map_err(|e| LoadError::Signaling(e.to_string()))?;
            // Load peers hold no meeting secret; one fixed tag puts all of a room's peers in one meeting.
            let room_tag = "AAAAAAAAAAAAAAAAAAAAAA".to_owned();
            let join =
                ClientMsg::Join { room: room.to_owned(), profile: "{}".into(), version: PROTOCOL_VERSION, room_tag };
            ws.send(Message::text(plenary_proto::encode(&join)))
                .await
                .map_err(|e| LoadError::Signaling(e.to_string()))?;
            // One deadline for the whole wait: a server chattering other
            // messages (or pings) must not hold the ramp forever.
            let deadline = tokio::time::Instant::now() + SIGNALING_TIMEOUT;
            loop {
                let msg = tokio::time::timeout_at(deadline, ws.next())
                    .await
                    .map_err(|_| LoadError::Signaling("no answer to join".into()))?;
                match msg {
                    Some(Ok(Message::Text(t))) => match plenary_proto::decode_server_msg(t.as_str()) {
                        Ok(ServerMsg::Joined { .. }) => break,
                        Ok(ServerMsg::Error { message, .. }) => return Err(LoadError::Signaling(message)),
                        _ => {}
                    },
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(LoadError::Signaling(e.to_string())),
                    None => return Err(LoadError::Signaling("closed before joined".into())),
                }
            }
            let (to_server, mut commands) = mpsc::unbounded_channel::<ClientSignal>();
            let (events, from_server) = mpsc::unbounded_channel::<ServerSignal>();
            tokio::spawn(async move {
                let mut video_mids: Vec<String> = Vec::new();
                let mut ping = tokio::time::interval(Duration::from_secs(15));
                let mut ping_id = 0u64;
                loop {
                    let out = tokio::select! {
                        cmd = commands.recv() => match cmd {
                            None => {
                                let _ = ws.send(Message::text(plenary_proto::encode(&ClientMsg::Leave))).await;
                                let _ = ws.close(None).await;
                                return;
                            }
                            Some(ClientSignal::Offer(sdp)) => vec![ClientMsg::Offer { sdp }],
                            Some(ClientSignal::Answer(sdp)) => {
                                let mut v = vec![ClientMsg::Answer { sdp }];
                                let (width, height) = PREFERRED_SIZE;
                                v.extend(video_mids.drain(..).map(|mid| ClientMsg::LayerPreference { mid, width, height, pinned: false }));
                                v
                            }
                        },
                        _ = ping.tick() => {
                            ping_id += 1;
                            vec![ClientMsg::Ping { id: ping_id }]
                        }
                        msg = ws.next() => {
                            let signal = match msg {
                                Some(Ok(Message::Text(t))) => match plenary_proto::decode_server_msg(t.as_str()) {
                                    Ok(ServerMsg::Answer { sdp }) => Some(ServerSignal::Answer(sdp)),
                                    Ok(ServerMsg::Offer { sdp, track_map }) => {
                                        video_mids = track_map.into_iter().filter(|t| t.kind == MediaKind::Video).map(|t| t.mid).collect();
                                        Some(ServerSignal::Offer(sdp))
                                    }
                                    Ok(ServerMsg::Error { message, fatal: true, .. }) => Some(ServerSignal::Failed(message)),
                                    Ok(_) => None,
                                    Err(e) => Some(ServerSignal::Failed(e.to_string())),
                                },
                                Some(Ok(_)) => None,
                                Some(Err(e)) => Some(ServerSignal::Failed(e.to_string())),
                                None => Some(ServerSignal::Failed("signaling closed".into())),
                            };
                            if let Some(s) = signal {
                                let end = matches!(s, ServerSignal::Failed(_));
                                if events.send(s).is_err() || end {
                                    return;
                                }
                            }
                            Vec::new()
                        }
                    };
                    for m in out {
                        if ws.send(Message::text(plenary_proto::encode(&m))).await.is_err() {
                            let _ = events.send(ServerSignal::Failed("signaling send failed".into()));
                            return;
                        }
                    }
                }
            });
            let signaling = Signaling { client_offers: true, to_server, from_server };
            Ok(vec![Peer { role, link: PeerLink::WebRtc(signaling) }])
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A server that accepts the join but only ever sends other messages.
    #[tokio::test]
    async fn a_server_chattering_instead_of_joining_fails_the_open_in_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            loop {
                let pong = plenary_proto::encode(&ServerMsg::Pong { id: 1 });
                if ws.send(Message::text(pong)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let process =
            ServerProcess::spawn(Path::new("sleep"), &["60".into()], &[], None, dir.path().join("log")).unwrap();
        let target = Plenary { process, http };
        let started = tokio::time::Instant::now();
        let r = target.open("room", Role::Subscriber).await;
        assert!(matches!(r, Err(LoadError::Signaling(ref m)) if m.contains("no answer")), "{:?}", r.err());
        assert!(started.elapsed() < SIGNALING_TIMEOUT + Duration::from_secs(10));
    }
}
