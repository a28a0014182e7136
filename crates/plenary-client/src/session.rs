//! One participant's session: signaling over the WebSocket, media over one
//! UDP socket through a full-ICE str0m `Rtc`, all driven from one task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use plenary_proto::{ClientMsg, MediaKind, PROTOCOL_VERSION, ParticipantId, ParticipantInfo, ServerMsg, TrackInfo};
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaData, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::chat_input::chat_input;
use crate::e2ee::{E2ee, Out};
use crate::events::{
    JsonEvent, Reporter, SentStats, Summary, TrackStats, chat_line, human_summary, kind_str, shown_name,
};
use crate::meeting_url::MeetingUrl;
use crate::reconnect::Backoff;
use crate::record::{Pushed, RecordCodec, Recorder};
use crate::source::{AUDIO_CLOCK_RATE, KeyframeRequests, LoopedSource, VIDEO_CLOCK_RATE};
use crate::{ClientError, JoinOptions};
use plenary_e2ee::app::ContinuityToken;
use plenary_e2ee::media::Disposition;
use plenary_e2ee::secret::MeetingSecret;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the WebSocket connect and the server's `joined` may each take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ICE + DTLS may take after our offer. On a slow or lossy
/// network, or behind a server busy with a burst of joiners, the first
/// checks and handshake flights are lost or late and only their
/// retransmissions (1 s, 2 s, 4 s, ... apart) get through; str0m itself
/// gives up on ICE about 17 s after the offer, so this stays below that.
pub const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long ICE may stay disconnected before the session gives up.
const ICE_DISCONNECTED_GRACE: Duration = Duration::from_secs(3);
/// No datagram at all from the server for this long while connected (ICE
/// consent checks alone answer every few seconds): the media path is gone.
const MEDIA_SILENCE: Duration = Duration::from_secs(6);
/// Audio packets str0m may hold back waiting for a missing one, and for
/// how long at most: as a browser's jitter buffer, a lost 20 ms Opus packet
/// is skipped after about 60 ms (str0m's defaults, 15 packets and 1 s,
/// turn every loss into a silence of 300 ms or more).
const AUDIO_REORDER_PACKETS: usize = 3;
const AUDIO_REORDER_WAIT: Duration = Duration::from_millis(60);
/// Interval of `frames` reports.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Interval of signaling keep-alive pings.
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Least time between two key frame requests for one received track.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Least time between two answers to key frame requests for our video.
const KEYFRAME_ANSWER_INTERVAL: Duration = Duration::from_millis(250);
/// The render size we ask for on every remote video, so the SFU forwards
/// the top simulcast layer.
const PREFERRED_SIZE: (u32, u32) = (1280, 720);

/// Runs a whole session; see [`crate::join`]. Once media has connected, a
/// lost connection is followed by fresh sessions with back-off
/// (see [`crate::reconnect`]) until one connects or the attempts run out.
pub(crate) async fn run(opts: JoinOptions, extra_roots: Vec<CertificateDer<'static>>) -> Result<Summary, ClientError> {
    let meeting = MeetingUrl::parse(&opts.url)?;
    // The fragment holds the meeting secret: it stays on this machine.
    let secret = crate::e2ee::secret_from_link(&opts.url).map_err(|()| ClientError::IncompleteLink)?;
    let video = opts.video.as_deref().map(LoopedSource::from_ivf).transpose()?;
    let audio = opts.audio.as_deref().map(LoopedSource::from_ogg).transpose()?;
    if let Some(dir) = &opts.record {
        std::fs::create_dir_all(dir).map_err(|source| ClientError::RecordDir { path: dir.clone(), source })?;
    }
    let reporter = Reporter { json: opts.json };
    let mut chat_in = opts.chat_stdin.then(chat_input);
    let started = Instant::now();
    // The server learns no name: it travels encrypted in the group.
    let profile = "{}".to_owned();

    // The server keeps meetings apart by (room, tag); the tag reveals nothing of the secret.
    let room_tag = secret.room_tag(meeting.room.as_str());
    let (mut ws, joined) = establish(&meeting, &extra_roots, &profile, &room_tag).await?;
    let (rtc, socket, udp_addr) = open_media(joined.local_addr).await?;
    let mut session = Session {
        rtc,
        socket,
        udp_addr,
        reporter,
        started,
        record_dir: opts.record.clone(),
        hide_video: opts.hide_video,
        continuity: rand::random(),
        name: opts.name.clone(),
        secret,
        participant_id: joined.participant_id,
        room: joined.room.clone(),
        participants: Vec::new(),
        rx: Vec::new(),
        rx_by_mid: HashMap::new(),
        audio: audio.map(|s| TxTrack::new(s, MediaKind::Audio)),
        video: video.map(|s| TxTrack::new(s, MediaKind::Video)),
        pending: None,
        queued_offers: Vec::new(),
        offer_sent_at: None,
        connected_at: None,
        joined_at: Instant::now(),
        first_frame_seen: false,
        first_connected: None,
        first_connect_s: None,
        pace_start: None,
        paused_at: None,
        last_datagram: Instant::now(),
        ice_disconnected_since: None,
        keyframe_requests: KeyframeRequests::new(KEYFRAME_ANSWER_INTERVAL),
        rtp_base: (u64::from(rand::random::<u32>()), u64::from(rand::random::<u32>())),
        timeout: Instant::now(),
        e2ee: None,
        had_keys: false,
        code_note: None,
        names: HashMap::new(),
        reconnected: false,
        backoff: Backoff::default(),
    };
    session.attach(joined)?;
    loop {
        let result = session.run(&mut ws, opts.duration, &mut chat_in).await;
        let mut err = match result {
            Err(e) if session.first_connected.is_some() && crate::reconnect::is_transient(&e) => e,
            other => return session.finish(&mut ws, other).await,
        };
        session.detach(&mut ws).await?;
        // Fresh sessions until one joins; its media connecting ends the outage.
        loop {
            let Some(delay) = session.backoff.next(Instant::now()) else {
                return session.finish(&mut ws, Err(err)).await;
            };
            let reason = err.to_string();
            tracing::info!(attempt = session.backoff.attempt, %reason, "connection lost; reconnecting");
            session.reporter.emit(
                &JsonEvent::Reconnecting {
                    attempt: session.backoff.attempt,
                    reason: &reason,
                    delay_s: delay.as_secs_f64(),
                },
                || Some(format!("connection lost ({reason}); reconnecting in {:.1} s", delay.as_secs_f64())),
            );
            if let Some(end) = session.wait(delay, opts.duration).await {
                return session.finish(&mut ws, Ok(end)).await;
            }
            match establish(&meeting, &extra_roots, &profile, &room_tag).await {
                Ok((new_ws, joined)) => {
                    ws = new_ws;
                    match open_media(joined.local_addr).await {
                        Ok(media) => {
                            (session.rtc, session.socket, session.udp_addr) = media;
                            if let Err(e) = session.attach(joined) {
                                return session.finish(&mut ws, Err(e)).await;
                            }
                            break;
                        }
                        Err(e) if crate::reconnect::is_transient(&e) => err = e,
                        Err(e) => return session.finish(&mut ws, Err(e)).await,
                    }
                }
                Err(e) if crate::reconnect::is_transient(&e) => err = e,
                Err(e) => return session.finish(&mut ws, Err(e)).await,
            }
        }
    }
}

/// The next chat line from stdin; never ready without chat input.
async fn next_chat_line(chat_in: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match chat_in {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the server said in `joined`.
struct JoinedRoom {
    local_addr: SocketAddr,
    participant_id: ParticipantId,
    room: String,
    others: Vec<ParticipantInfo>,
}

/// Opens the WebSocket and joins the room.
async fn establish(
    meeting: &MeetingUrl,
    extra_roots: &[CertificateDer<'static>],
    profile: &str,
    room_tag: &str,
) -> Result<(Ws, JoinedRoom), ClientError> {
    let (mut ws, local_addr) = connect(meeting, extra_roots.to_vec()).await?;
    send(
        &mut ws,
        &ClientMsg::Join {
            room: meeting.room.to_string(),
            profile: profile.to_owned(),
            version: PROTOCOL_VERSION,
            room_tag: room_tag.to_owned(),
        },
    )
    .await?;
    let (participant_id, room, others) = wait_joined(&mut ws).await?;
    Ok((ws, JoinedRoom { local_addr, participant_id, room, others }))
}

/// A new media endpoint: a str0m `Rtc` (full ICE) and a UDP socket on
/// the IP address of `local_addr` (the one that reaches the server), any port.
async fn open_media(local_addr: SocketAddr) -> Result<(Rtc, UdpSocket, SocketAddr), ClientError> {
    let socket = UdpSocket::bind(SocketAddr::new(local_addr.ip(), 0)).await.map_err(ClientError::Socket)?;
    let udp_addr = socket.local_addr().map_err(ClientError::Socket)?;
    // Every remote track arrives here: room for a scheduling hiccup.
    match crate::udp_buffer::enlarge_recv_buffer(&socket, crate::udp_buffer::CLIENT_RECV_BUFFER) {
        Ok(granted) => tracing::debug!(granted, "media socket receive buffer"),
        Err(e) => tracing::debug!("media socket receive buffer: {e}"),
    }
    let rtc = Rtc::builder()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_vp9(true)
        .enable_h264(true)
        .set_reordering_size_audio(AUDIO_REORDER_PACKETS)
        .set_reordering_timeout_audio(Some(AUDIO_REORDER_WAIT))
        .build(Instant::now());
    Ok((rtc, socket, udp_addr))
}

/// TLS for `wss://`: the system's root certificates (which
/// `SSL_CERT_FILE`/`SSL_CERT_DIR` can replace) plus `extra_roots`, with the
/// aws-lc-rs provider.
fn tls_connector(extra_roots: Vec<CertificateDer<'static>>) -> Result<Connector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("loading system root certificates: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates");
    for cert in extra_roots {
        roots.add(cert).map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// Opens the WebSocket; returns it and the local address of its TCP
/// connection (the local address that reaches the server).
async fn connect(
    meeting: &MeetingUrl,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<(Ws, SocketAddr), ClientError> {
    let url = meeting.ws_url.to_string();
    let connector = if meeting.ws_url.scheme() == "wss" { Some(tls_connector(extra_roots)?) } else { None };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, connector);
    let (ws, _response) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => return Err(ClientError::Timeout { what: "connecting to the server", after: CONNECT_TIMEOUT }),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            return Err(ClientError::Connect {
                url,
                reason: format!("the server answered HTTP {} instead of a WebSocket", resp.status()),
            });
        }
        Ok(Err(e)) => return Err(ClientError::Connect { url, reason: e.to_string() }),
        Ok(Ok(v)) => v,
    };
    let local = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr(),
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0.local_addr(),
        _ => Err(std::io::Error::other("unexpected stream type")),
    }
    .map_err(ClientError::Socket)?;
    Ok((ws, local))
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<(), ClientError> {
    ws.send(Message::text(plenary_proto::encode(msg))).await.map_err(|e| ClientError::Signaling(e.to_string()))
}

/// Waits for `joined` (or an error) after `join`.
async fn wait_joined(ws: &mut Ws) -> Result<(ParticipantId, String, Vec<ParticipantInfo>), ClientError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| ClientError::Timeout { what: "the server's answer to join", after: CONNECT_TIMEOUT })?;
        match decode(msg)? {
            Some(ServerMsg::Joined { participant_id, room, participants, .. }) => {
                return Ok((participant_id, room, participants));
            }
            Some(ServerMsg::Error { code, message, .. }) => return Err(ClientError::Server { code, message }),
            _ => {}
        }
    }
}

/// Turns one WebSocket read into a server message: `Ok(None)` for frames
/// that carry none (ping, pong, binary).
fn decode(msg: Option<Result<Message, tungstenite::Error>>) -> Result<Option<ServerMsg>, ClientError> {
    match msg {
        None | Some(Ok(Message::Close(_))) => Err(ClientError::Closed),
        Some(Err(e)) => Err(ClientError::Signaling(e.to_string())),
        Some(Ok(Message::Text(text))) => {
            plenary_proto::decode_server_msg(text.as_str()).map(Some).map_err(|e| ClientError::Protocol(e.to_string()))
        }
        Some(Ok(_)) => Ok(None),
    }
}

/// One of our published tracks.
struct TxTrack {
    source: LoopedSource,
    kind: MediaKind,
    mid: Option<Mid>,
    pt: Option<Pt>,
    frames: u64,
    bytes: u64,
}

impl TxTrack {
    fn new(source: LoopedSource, kind: MediaKind) -> TxTrack {
        TxTrack { source, kind, mid: None, pt: None, frames: 0, bytes: 0 }
    }

    fn stats(&self) -> Option<SentStats> {
        Some(SentStats { kind: self.kind, mid: self.mid?.to_string(), frames: self.frames, bytes: self.bytes })
    }
}

/// One remote track we receive (or received).
struct RxTrack {
    stats: TrackStats,
    active: bool,
    recorder: Option<Recorder>,
    last_keyframe_request: Option<Instant>,
    /// Frames were dropped (not decryptable) since the last one recorded.
    decrypt_gap: bool,
    /// When the last usable frame arrived.
    last_frame_at: Option<Instant>,
    /// RTP time of the latest usable frame, in the track's clock (48 kHz
    /// audio, 90 kHz video).
    last_media_time: Option<u64>,
}

enum End {
    Duration,
    Interrupted,
}

struct Session {
    rtc: Rtc,
    socket: UdpSocket,
    udp_addr: SocketAddr,
    reporter: Reporter,
    started: Instant,
    record_dir: Option<PathBuf>,
    /// Every received video is reported hidden (`layer_preference` 0x0).
    hide_video: bool,
    /// Our display name (E2EE: for the encrypted profile of every session).
    name: String,
    /// The meeting secret from the link's fragment.
    secret: MeetingSecret,
    /// Our continuity token (plenary_e2ee::app): random, made once for this
    /// run, sent in the encrypted profile of every connection, so that the
    /// others' pages know us again after a reconnection.
    continuity: ContinuityToken,
    participant_id: ParticipantId,
    room: String,
    participants: Vec<ParticipantId>,
    rx: Vec<RxTrack>,
    rx_by_mid: HashMap<String, usize>,
    audio: Option<TxTrack>,
    video: Option<TxTrack>,
    pending: Option<SdpPendingOffer>,
    /// Server offers that arrived while our own offer was outstanding.
    queued_offers: Vec<(String, Vec<TrackInfo>)>,
    offer_sent_at: Option<Instant>,
    /// When this connection's media came up.
    connected_at: Option<Instant>,
    /// When the server's `joined` of this connection arrived.
    joined_at: Instant,
    /// The first remote video frame of this connection was decrypted.
    first_frame_seen: bool,
    /// When the first connection's media came up: `duration` counts from here.
    first_connected: Option<Instant>,
    /// How long the first connection took to come up after its offer.
    first_connect_s: Option<f64>,
    /// Origin of the pacing of our files; moved forward by each outage so
    /// that publishing resumes where it stopped.
    pace_start: Option<Instant>,
    /// When the last connection was lost (publishing paused).
    paused_at: Option<Instant>,
    /// When the last datagram arrived on the media socket.
    last_datagram: Instant,
    ice_disconnected_since: Option<Instant>,
    /// Key frame requests for our video, answered at most once per
    /// KEYFRAME_ANSWER_INTERVAL.
    keyframe_requests: KeyframeRequests,
    /// Random RTP time origins (audio, video), as real senders use.
    rtp_base: (u64, u64),
    /// Next time the Rtc wants a timeout input.
    timeout: Instant,
    /// End-to-end encryption of the current connection; `None` only
    /// between connections (nothing is sent or accepted in clear).
    e2ee: Option<E2ee>,
    /// Keys were installed before, in this or an earlier connection.
    had_keys: bool,
    /// Why the code must be compared again (`"reconnect"`, `"rejoin"`),
    /// until a code of a group shared with others is announced with it.
    code_note: Option<&'static str>,
    /// Display names of this connection's participants, from their
    /// encrypted profiles, cleaned for a terminal: for this user's stdout
    /// only, never for the log.
    names: HashMap<ParticipantId, String>,
    /// A reconnection happened: times are told since it, not since starting.
    reconnected: bool,
    /// Reconnection attempts since the connection was lost.
    backoff: Backoff,
}

/// How this user's stdout names a participant: its display name once its
/// profile is known (`names`), else its id (`p7`).
fn who(names: &HashMap<ParticipantId, String>, id: ParticipantId) -> String {
    names.get(&id).cloned().unwrap_or_else(|| id.to_string())
}

impl Session {
    /// Starts using a new signaling connection's room: end-to-end
    /// encryption (a fresh MLS identity each time) and the `joined` report.
    /// The media endpoint must be new as well.
    fn attach(&mut self, joined: JoinedRoom) -> Result<(), ClientError> {
        let JoinedRoom { participant_id, room, others, .. } = joined;
        self.participant_id = participant_id;
        self.room = room;
        self.participants = others.iter().map(|p| p.id).collect();
        // Ids are per connection: the names come again with the profiles.
        self.names.clear();
        let mut e = E2ee::new(&self.room, self.secret.clone(), &self.name, self.continuity, participant_id)
            .map_err(ClientError::E2ee)?;
        let now = Instant::now();
        for p in &others {
            // Nobody's profile is known yet: nothing to report.
            let _ = e.participant_leaf(p.id, p.leaf, now);
        }
        e.start(!others.is_empty(), now);
        self.e2ee = Some(e);
        self.pending = None;
        self.queued_offers.clear();
        self.offer_sent_at = None;
        self.connected_at = None;
        self.joined_at = now;
        self.first_frame_seen = false;
        self.ice_disconnected_since = None;
        self.timeout = Instant::now();
        for t in [&mut self.audio, &mut self.video].into_iter().flatten() {
            t.mid = None;
            t.pt = None;
        }
        tracing::info!(participant = %participant_id, "joined");
        let present = self.participants.clone();
        self.reporter
            .emit(&JsonEvent::Joined { participant_id, room: &self.room, participants: present.clone() }, || {
                Some(format!("joined room {} as {participant_id}; {} others here", self.room, present.len()))
            });
        Ok(())
    }

    /// Ends a lost connection: closes what it received (recordings stay
    /// valid files), leaves best-effort, pauses publishing.
    async fn detach(&mut self, ws: &mut Ws) -> Result<(), ClientError> {
        for i in 0..self.rx.len() {
            self.stop_track(i)?;
        }
        self.rx_by_mid.clear();
        self.participants.clear();
        self.e2ee = None;
        self.rtc.disconnect();
        if self.connected_at.is_some() {
            self.paused_at = Some(Instant::now());
        }
        // The server may be gone or unreachable: never wait long.
        let _ = tokio::time::timeout(Duration::from_millis(500), send(ws, &ClientMsg::Leave)).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
        Ok(())
    }

    /// Waits `delay` before a reconnection attempt; `Some` when the session
    /// should end instead (its duration ran out, or Ctrl-C).
    async fn wait(&self, delay: Duration, duration: Option<Duration>) -> Option<End> {
        let mut until = Instant::now() + delay;
        let end = duration.zip(self.first_connected).map(|(d, t)| t + d);
        if let Some(end) = end {
            until = until.min(end);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = tokio::signal::ctrl_c() => return Some(End::Interrupted),
        }
        end.is_some_and(|e| Instant::now() >= e).then_some(End::Duration)
    }

    async fn run(
        &mut self,
        ws: &mut Ws,
        duration: Option<Duration>,
        chat_in: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    ) -> Result<End, ClientError> {
        let candidate = Candidate::host(self.udp_addr, "udp").map_err(|e| ClientError::Rtc(e.to_string()))?;
        self.rtc.add_local_candidate(candidate);
        self.drain()?;

        // Like the browser client: one audio and one video m-line, both
        // send-only, whether or not we have media for them.
        let mut api = self.rtc.sdp_api();
        let audio_mid = api.add_media(str0m::media::MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = api.add_media(str0m::media::MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or_else(|| ClientError::Rtc("no SDP offer to make".into()))?;
        self.drain()?;
        if let Some(t) = &mut self.audio {
            t.mid = Some(audio_mid);
        }
        if let Some(t) = &mut self.video {
            t.mid = Some(video_mid);
        }
        self.pending = Some(pending);
        send(ws, &ClientMsg::Offer { sdp: offer.to_sdp_string() }).await?;
        self.offer_sent_at = Some(Instant::now());
        // Without a file for a kind, show it as muted, as a browser without
        // that device does.
        for (kind, has) in [(MediaKind::Audio, self.audio.is_some()), (MediaKind::Video, self.video.is_some())] {
            if !has {
                send(ws, &ClientMsg::SetMuted { kind, muted: true }).await?;
            }
        }

        let mut buf = vec![0u8; 2048];
        let mut next_report = Instant::now() + REPORT_INTERVAL;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let mut ping_id = 0u64;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);

        loop {
            let now = Instant::now();
            // Session-level timers.
            if self.connected_at.is_none() {
                let since = self.offer_sent_at.unwrap_or(now);
                if now >= since + MEDIA_CONNECT_TIMEOUT {
                    return Err(ClientError::MediaTimeout(MEDIA_CONNECT_TIMEOUT));
                }
            }
            if let Some(t) = self.ice_disconnected_since
                && now >= t + ICE_DISCONNECTED_GRACE
            {
                return Err(ClientError::MediaLost);
            }
            if let (Some(d), Some(start)) = (duration, self.first_connected)
                && now >= start + d
            {
                return Ok(End::Duration);
            }
            if self.connected_at.is_some() && now >= self.last_datagram + MEDIA_SILENCE {
                tracing::info!("nothing received for {} s", MEDIA_SILENCE.as_secs());
                return Err(ClientError::MediaLost);
            }
            if now >= next_report {
                self.report();
                next_report += REPORT_INTERVAL;
                if next_report < now {
                    next_report = now + REPORT_INTERVAL;
                }
            }
            if now >= next_ping {
                ping_id += 1;
                send(ws, &ClientMsg::Ping { id: ping_id }).await?;
                next_ping = now + PING_INTERVAL;
            }
            if let Some(e) = &mut self.e2ee {
                let outs = e.poll(now);
                self.on_e2ee(ws, outs).await?;
            }
            self.send_due_media(now)?;
            if !self.rtc.is_alive() {
                return Err(ClientError::MediaLost);
            }

            let mut deadline = self.timeout.min(next_report).min(next_ping);
            match self.connected_at {
                None => deadline = deadline.min(self.offer_sent_at.unwrap_or(now) + MEDIA_CONNECT_TIMEOUT),
                Some(_) => {
                    if let Some(start) = self.pace_start {
                        for t in [&self.audio, &self.video].into_iter().flatten() {
                            deadline = deadline.min(t.source.next_due(start));
                        }
                    }
                    if let (Some(d), Some(start)) = (duration, self.first_connected) {
                        deadline = deadline.min(start + d);
                    }
                    deadline = deadline.min(self.last_datagram + MEDIA_SILENCE);
                }
            }
            if let Some(t) = self.ice_disconnected_since {
                deadline = deadline.min(t + ICE_DISCONNECTED_GRACE);
            }
            if let Some(t) = self.e2ee.as_ref().and_then(E2ee::next_deadline) {
                deadline = deadline.min(t);
            }

            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    match r {
                        Ok((n, source)) => {
                            self.last_datagram = Instant::now();
                            if let Ok(contents) = buf[..n].try_into() {
                                let input = Input::Receive(
                                    Instant::now(),
                                    Receive { proto: Protocol::Udp, source, destination: self.udp_addr, contents },
                                );
                                if self.rtc.accepts(&input) {
                                    self.rtc.handle_input(input).map_err(|e| ClientError::Rtc(e.to_string()))?;
                                    self.drain()?;
                                }
                            }
                        }
                        // ICMP "port unreachable" and the like surface here
                        // on Linux; ICE handles the consequences.
                        Err(e) => tracing::debug!("UDP receive: {e}"),
                    }
                }
                msg = ws.next() => {
                    if let Some(m) = decode(msg)? {
                        self.on_server_msg(ws, m).await?;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if now >= self.timeout {
                        self.rtc.handle_input(Input::Timeout(now)).map_err(|e| ClientError::Rtc(e.to_string()))?;
                        self.drain()?;
                    }
                }
                line = next_chat_line(chat_in) => match line {
                    Some(line) => self.send_chat(ws, &line).await?,
                    // End of input: no more chat to send, the session goes on.
                    None => *chat_in = None,
                },
                _ = &mut ctrl_c => return Ok(End::Interrupted),
            }
        }
    }

    /// Sends a line typed on stdin as an encrypted chat message (at most
    /// 2000 characters, as the browser). Names and text stay out of the log.
    async fn send_chat(&mut self, ws: &mut Ws, line: &str) -> Result<(), ClientError> {
        let text: String = line.trim().chars().take(2000).collect();
        if text.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        match self.e2ee.as_mut().and_then(|e| e.chat(&text, now)) {
            Some((leaf, outs)) => {
                self.on_e2ee(ws, outs).await?;
                self.reporter.emit(&JsonEvent::Chat { leaf, name: Some(&self.name), text: &text, own: true }, || None);
            }
            None => self.reporter.emit(&JsonEvent::ChatNotSent { reason: "not in the encrypted meeting yet" }, || {
                Some("(message not sent: still joining the encrypted meeting)".to_owned())
            }),
        }
        Ok(())
    }

    /// Polls the Rtc until it returns a timeout: sends datagrams, handles
    /// events. Must follow every mutation of the Rtc.
    fn drain(&mut self) -> Result<(), ClientError> {
        loop {
            match self.rtc.poll_output().map_err(|e| ClientError::Rtc(e.to_string()))? {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return Ok(());
                }
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        tracing::debug!("UDP send to {}: {e}", t.destination);
                    }
                }
                Output::Event(e) => self.on_event(e)?,
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), ClientError> {
        match event {
            Event::Connected => {
                let now = Instant::now();
                self.connected_at = Some(now);
                self.last_datagram = now;
                let connect_s = self.offer_sent_at.map(|t| (now - t).as_secs_f64()).unwrap_or(0.0);
                tracing::info!(participant = %self.participant_id, connect_s, "media connected");
                self.reporter.emit(&JsonEvent::Connected { connect_s }, || {
                    // In ms: on a LAN or loopback it takes a few, which
                    // "0.00 s" hid.
                    Some(format!("media connected {:.0} ms after the offer", connect_s * 1000.0))
                });
                // Publishing resumes where it paused, with a key frame.
                self.pace_start = Some(match (self.pace_start, self.paused_at.take()) {
                    (Some(start), Some(paused)) => start + (now - paused),
                    _ => now,
                });
                if let Some(v) = &mut self.video {
                    v.source.rewind_to_key_frame();
                }
                if self.first_connected.is_none() {
                    self.first_connected = Some(now);
                    self.first_connect_s = Some(connect_s);
                }
                if let Some(outage) = self.backoff.connected(now) {
                    self.reconnected = true;
                    let (attempts, outage_s) = (outage.attempts, outage.duration.as_secs_f64());
                    tracing::info!(attempts, outage_s, "reconnected");
                    self.reporter.emit(
                        &JsonEvent::Reconnected { participant_id: self.participant_id, attempts, outage_s },
                        || Some(format!("reconnected after {outage_s:.1} s as {}", self.participant_id)),
                    );
                }
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(?state, "ICE state");
                match state {
                    IceConnectionState::Disconnected => {
                        self.ice_disconnected_since.get_or_insert_with(Instant::now);
                    }
                    _ => self.ice_disconnected_since = None,
                }
            }
            Event::MediaData(data) => self.on_media(data)?,
            Event::KeyframeRequest(req) => {
                if let Some(v) = self.video.as_mut().filter(|v| v.mid == Some(req.mid)) {
                    self.keyframe_requests.request();
                    if self.keyframe_requests.answer_now(Instant::now()) {
                        v.source.rewind_to_key_frame();
                    }
                }
            }
            Event::Closed => {
                tracing::debug!("DTLS closed by the server");
            }
            _ => {}
        }
        Ok(())
    }

    fn on_media(&mut self, data: MediaData) -> Result<(), ClientError> {
        let mid = data.mid.to_string();
        let Some(&i) = self.rx_by_mid.get(&mid) else {
            tracing::debug!(%mid, "media on a MID not in the track map");
            return Ok(());
        };
        let track = &mut self.rx[i];
        track.stats.frames += 1;
        track.stats.bytes += data.data.len() as u64;
        let plain;
        let video = track.stats.kind == MediaKind::Video;
        // Without a session's E2EE state nothing can decrypt: never passed on in clear.
        let decrypted = self.e2ee.as_mut().map_or(Err(Disposition::Fail), |e| e.decrypt(video, &data.data));
        let frame: &[u8] = match decrypted {
            Ok(p) => {
                *track.stats.decrypted.get_or_insert(0) += 1;
                plain = p;
                &plain
            }
            Err(Disposition::Replay) => {
                // A copy of a frame already passed on: nothing is missing.
                *track.stats.decrypt_replays.get_or_insert(0) += 1;
                return Ok(());
            }
            Err(_) => {
                // Never passed on: the recorder then waits for a key frame.
                *track.stats.decrypt_failures.get_or_insert(0) += 1;
                track.decrypt_gap = true;
                return Ok(());
            }
        };
        let now = Instant::now();
        if track.stats.kind == MediaKind::Video && !self.first_frame_seen {
            self.first_frame_seen = true;
            let (since_start_s, since_joined_s) =
                ((now - self.started).as_secs_f64(), (now - self.joined_at).as_secs_f64());
            let participant_id = track.stats.participant_id;
            let who = who(&self.names, participant_id);
            let reconnected = self.reconnected;
            self.reporter.emit(&JsonEvent::FirstFrame { participant_id, since_start_s, since_joined_s }, || {
                Some(if reconnected {
                    format!("first picture from {who} {since_joined_s:.2} s after reconnecting")
                } else {
                    format!("first picture from {who} {since_start_s:.2} s after starting")
                })
            });
        }
        if let Some(last) = track.last_frame_at.replace(now) {
            let gap = u64::try_from((now - last).as_millis()).unwrap_or(u64::MAX);
            track.stats.max_gap_ms = track.stats.max_gap_ms.max(gap);
        }
        let clock = match track.stats.kind {
            MediaKind::Audio => Frequency::FORTY_EIGHT_KHZ,
            MediaKind::Video => Frequency::NINETY_KHZ,
        };
        let time = data.time.rebase(clock).numer();
        if let Some(last) = track.last_media_time
            && time > last
        {
            let step = (time - last).saturating_mul(1000) / u64::from(clock.get());
            track.stats.max_media_gap_ms = track.stats.max_media_gap_ms.max(step);
        }
        track.last_media_time = Some(track.last_media_time.map_or(time, |last| last.max(time)));
        let contiguous = data.contiguous && !track.decrypt_gap;
        let Some(rec) = &mut track.recorder else {
            return Ok(());
        };
        let codec = data.params.spec().codec;
        if !matches!(codec, Codec::Vp8 | Codec::Opus) {
            return Ok(());
        }
        match rec.push(time, contiguous, frame)? {
            Pushed::Written => {
                track.decrypt_gap = false;
                if track.stats.recording.is_none() {
                    track.stats.recording = Some(rec.path().to_owned());
                }
            }
            Pushed::NeedKeyFrame => {
                let now = Instant::now();
                if track.last_keyframe_request.is_none_or(|t| now - t >= KEYFRAME_REQUEST_INTERVAL) {
                    track.last_keyframe_request = Some(now);
                    if let Some(mut w) = self.rtc.writer(data.mid)
                        && w.is_request_keyframe_possible(KeyframeRequestKind::Pli)
                    {
                        let _ = w.request_keyframe(data.rid, KeyframeRequestKind::Pli);
                    }
                }
            }
            Pushed::Skipped => {}
        }
        Ok(())
    }

    /// Writes every frame of our files that is due by `now`.
    fn send_due_media(&mut self, now: Instant) -> Result<(), ClientError> {
        let (Some(start), Some(_)) = (self.pace_start, self.connected_at) else {
            return Ok(());
        };
        for is_video in [false, true] {
            loop {
                let (track, base, clock) = if is_video {
                    (self.video.as_mut(), self.rtp_base.1, VIDEO_CLOCK_RATE)
                } else {
                    (self.audio.as_mut(), self.rtp_base.0, AUDIO_CLOCK_RATE)
                };
                let Some(track) = track else { break };
                let due_at = track.source.next_due(start);
                if due_at > now {
                    break;
                }
                // A request that came too soon after the last answer is answered now.
                if is_video && self.keyframe_requests.answer_now(now) {
                    track.source.rewind_to_key_frame();
                }
                let frame = track.source.advance();
                let Some(mid) = track.mid else { break };
                let Some(writer) = self.rtc.writer(mid) else { break };
                let want = if is_video { Codec::Vp8 } else { Codec::Opus };
                let pt = match track.pt {
                    Some(pt) => pt,
                    None => {
                        let Some(pt) = writer.payload_params().find(|p| p.spec().codec == want).map(|p| p.pt()) else {
                            return Err(ClientError::Rtc(format!("the server did not accept {want:?}")));
                        };
                        track.pt = Some(pt);
                        pt
                    }
                };
                let time = MediaTime::new(base + frame.time, frequency(clock));
                // Nothing leaves in clear: without keys, frames are dropped.
                let Some(data) = self.e2ee.as_mut().and_then(|e| e.encrypt(is_video, &frame.data)) else {
                    continue;
                };
                let len = data.len() as u64;
                // The level (RFC 6464) stays in clear for the SFU's choice of
                // speakers; str0m writes it as minus dBov.
                let writer = match frame.level {
                    Some(level) => {
                        writer.audio_level(-(level.min(127) as i8), level <= crate::audio_level::VOICE_LEVEL)
                    }
                    None => writer,
                };
                writer.write(pt, due_at, time, data).map_err(|e| ClientError::Rtc(e.to_string()))?;
                track.frames += 1;
                track.bytes += len;
                self.drain()?;
            }
        }
        Ok(())
    }

    async fn on_server_msg(&mut self, ws: &mut Ws, msg: ServerMsg) -> Result<(), ClientError> {
        match msg {
            ServerMsg::Answer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| ClientError::Sdp(e.to_string()))?;
                let Some(pending) = self.pending.take() else {
                    return Err(ClientError::Protocol("an answer without an offer".into()));
                };
                self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| ClientError::Sdp(e.to_string()))?;
                self.drain()?;
                for (sdp, track_map) in std::mem::take(&mut self.queued_offers) {
                    self.on_offer(ws, &sdp, track_map).await?;
                }
            }
            ServerMsg::Offer { sdp, track_map } => {
                if self.pending.is_some() {
                    self.queued_offers.push((sdp, track_map));
                } else {
                    self.on_offer(ws, &sdp, track_map).await?;
                }
            }
            ServerMsg::ParticipantJoined { participant } | ServerMsg::ParticipantUpdated { participant }
                if self.e2ee.is_some() && participant.leaf.is_some() && self.participants.contains(&participant.id) =>
            {
                if let Some(e) = &mut self.e2ee {
                    let outs = e.participant_leaf(participant.id, participant.leaf, Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
            }
            ServerMsg::ParticipantJoined { participant } => {
                let id = participant.id;
                if let Some(e) = &mut self.e2ee {
                    let outs = e.participant_leaf(id, participant.leaf, Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
                if !self.participants.contains(&id) {
                    self.participants.push(id);
                }
                let who = who(&self.names, id);
                self.reporter
                    .emit(&JsonEvent::ParticipantJoined { participant_id: id }, || Some(format!("{who} joined")));
            }
            ServerMsg::ParticipantLeft { participant_id } => {
                self.participants.retain(|p| *p != participant_id);
                if let Some(e) = &mut self.e2ee {
                    let outs = e.participant_left(participant_id, Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
                let who = who(&self.names, participant_id);
                self.names.remove(&participant_id);
                self.reporter.emit(&JsonEvent::ParticipantLeft { participant_id }, || Some(format!("{who} left")));
            }
            ServerMsg::Error { code, message, fatal } => {
                if fatal {
                    return Err(ClientError::Server { code, message });
                }
                tracing::warn!(?code, %message, "server reported an error");
            }
            ServerMsg::Layer { mid, rid } => {
                tracing::debug!(%mid, ?rid, "layer");
                if let Some(&i) = self.rx_by_mid.get(&mid) {
                    self.rx[i].stats.layer = rid;
                }
            }
            ServerMsg::Quality { estimate_bps, tracks } => {
                // Every 2 s: JSON only, the human output stays quiet.
                self.reporter.emit(&JsonEvent::Quality { estimate_bps, tracks: &tracks }, || None);
            }
            ServerMsg::CreateGroup => {
                if let Some(e) = &mut self.e2ee {
                    let outs = e.on_create_group(Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
            }
            ServerMsg::Mls { from, envelope } => {
                if let Some(e) = &mut self.e2ee {
                    let outs = e.on_mls(from, &envelope, Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
            }
            ServerMsg::CommitAccepted { .. } => {
                if let Some(e) = &mut self.e2ee {
                    let outs = e.on_commit_accepted(Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
            }
            ServerMsg::CommitRejected { current_epoch, .. } => {
                if let Some(e) = &mut self.e2ee {
                    let outs = e.on_commit_rejected(current_epoch, Instant::now());
                    self.on_e2ee(ws, outs).await?;
                }
            }
            // joined (again), participant_updated, pong, and messages this
            // client does not take part in yet.
            _ => {}
        }
        Ok(())
    }

    /// Sends and reports what end-to-end encryption asked for.
    async fn on_e2ee(&mut self, ws: &mut Ws, outs: Vec<Out>) -> Result<(), ClientError> {
        for out in outs {
            match out {
                Out::Send(msg) => send(ws, &msg).await?,
                Out::Epoch { epoch, security_code, first_keys, members } => {
                    tracing::info!(epoch, "end-to-end encryption: new epoch");
                    // As the browser does on new keys: a key frame, so that
                    // newcomers get a picture at once.
                    if let Some(v) = &mut self.video {
                        v.source.rewind_to_key_frame();
                    }
                    // Keys set up anew after we had some: the code changed
                    // for that, not for a join or leave (as the browser says).
                    let first_ever = first_keys.is_some() && !self.had_keys;
                    if let Some(w) = first_keys.filter(|_| self.had_keys) {
                        self.code_note = Some(if w == "rejoin" { "rejoin" } else { "reconnect" });
                    }
                    self.had_keys = true;
                    // A one-person group (e.g. the first one back after a
                    // server restart) has a code nobody else shows: it is not
                    // announced, and the note waits for the shared group's.
                    let shared = members >= 2;
                    let again = if shared { self.code_note.take() } else { None };
                    let event =
                        JsonEvent::Epoch { epoch, security_code: &security_code, keys_set_up_again: again, members };
                    self.reporter.emit(&event, || {
                        if !shared {
                            return first_ever.then(|| {
                                "end-to-end encrypted; the security code to compare comes when someone joins".into()
                            });
                        }
                        let mut line = format!("end-to-end encrypted, epoch {epoch}; security code {security_code}");
                        match again {
                            Some("rejoin") => line
                                .push_str("\nnew code: this device had to rejoin the meeting's keys; compare it again"),
                            Some(_) => line.push_str(
                                "\nnew code: the meeting's keys were set up again after reconnecting; compare it again",
                            ),
                            None => {}
                        }
                        Some(line)
                    });
                }
                Out::Profile { leaf, participant_id, display_name } => {
                    // Names go to our own output only, never to the log.
                    let known = participant_id.and_then(|id| {
                        let name = shown_name(Some(&display_name));
                        let old = self.names.insert(id, name.clone());
                        let new = old.as_ref() != Some(&name) && self.participants.contains(&id);
                        new.then(|| format!("{id} is {name}"))
                    });
                    self.reporter
                        .emit(&JsonEvent::Profile { participant_id, leaf, display_name: &display_name }, || known);
                }
                // Chat and hands: to the user's own output only, never to the log.
                Out::Chat { leaf, name, text } => {
                    let name = name.as_deref();
                    self.reporter.emit(&JsonEvent::Chat { leaf, name, text: &text, own: false }, || {
                        Some(chat_line(name, &text))
                    });
                }
                Out::Hand { leaf, name, raised } => {
                    let name = name.as_deref();
                    self.reporter.emit(&JsonEvent::Hand { leaf, name, raised }, || {
                        Some(chat_line(name, if raised { "raised a hand" } else { "lowered their hand" }))
                    });
                }
            }
        }
        Ok(())
    }

    async fn on_offer(&mut self, ws: &mut Ws, sdp: &str, track_map: Vec<TrackInfo>) -> Result<(), ClientError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| ClientError::Sdp(e.to_string()))?;
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(|e| ClientError::Sdp(e.to_string()))?;
        self.drain()?;
        send(ws, &ClientMsg::Answer { sdp: answer.to_sdp_string() }).await?;
        let added = self.apply_track_map(track_map)?;
        for mid in added {
            let (width, height) = if self.hide_video { (0, 0) } else { PREFERRED_SIZE };
            send(ws, &ClientMsg::LayerPreference { mid, width, height, pinned: false }).await?;
        }
        Ok(())
    }

    /// Brings the received tracks in line with the server's `track_map`;
    /// returns the MIDs of new video tracks.
    fn apply_track_map(&mut self, track_map: Vec<TrackInfo>) -> Result<Vec<String>, ClientError> {
        let mut keep = std::collections::HashSet::new();
        let mut new_video = Vec::new();
        for t in track_map {
            if let Some(&i) = self.rx_by_mid.get(&t.mid) {
                let s = &self.rx[i].stats;
                if s.participant_id == t.participant_id && s.kind == t.kind {
                    keep.insert(t.mid);
                    continue;
                }
                // The MID was recycled for another track.
                self.stop_track(i)?;
            }
            let recorder = self.record_dir.as_ref().map(|dir| {
                let (codec, kind) = match t.kind {
                    MediaKind::Audio => (RecordCodec::Opus, "audio"),
                    MediaKind::Video => (RecordCodec::Vp8, "video"),
                };
                let name = format!("{}-{kind}-mid{}-{}.{}", t.participant_id, t.mid, self.rx.len(), codec.extension());
                Recorder::new(dir.join(sanitize(&name)), codec)
            });
            let who = who(&self.names, t.participant_id);
            self.reporter
                .emit(&JsonEvent::TrackAdded { participant_id: t.participant_id, kind: t.kind, mid: &t.mid }, || {
                    Some(format!("receiving {} from {who} on mid {}", kind_str(t.kind), t.mid))
                });
            if t.kind == MediaKind::Video {
                new_video.push(t.mid.clone());
            }
            self.rx_by_mid.insert(t.mid.clone(), self.rx.len());
            keep.insert(t.mid.clone());
            self.rx.push(RxTrack {
                stats: TrackStats {
                    participant_id: t.participant_id,
                    kind: t.kind,
                    mid: t.mid,
                    frames: 0,
                    bytes: 0,
                    recording: None,
                    decrypted: Some(0),
                    decrypt_failures: Some(0),
                    decrypt_replays: Some(0),
                    max_gap_ms: 0,
                    max_media_gap_ms: 0,
                    layer: None,
                },
                active: true,
                recorder,
                last_keyframe_request: None,
                decrypt_gap: false,
                last_frame_at: None,
                last_media_time: None,
            });
        }
        let gone: Vec<usize> = self.rx_by_mid.iter().filter(|(mid, _)| !keep.contains(*mid)).map(|(_, &i)| i).collect();
        for i in gone {
            self.stop_track(i)?;
        }
        Ok(new_video)
    }

    fn stop_track(&mut self, i: usize) -> Result<(), ClientError> {
        let t = &mut self.rx[i];
        if !t.active {
            return Ok(());
        }
        t.active = false;
        self.rx_by_mid.remove(&t.stats.mid);
        if let Some(mut rec) = t.recorder.take() {
            rec.finish()?;
        }
        let s = &t.stats;
        let who = who(&self.names, s.participant_id);
        self.reporter
            .emit(&JsonEvent::TrackRemoved { participant_id: s.participant_id, kind: s.kind, mid: &s.mid }, || {
                Some(format!("{who} stopped sending {} (mid {})", kind_str(s.kind), s.mid))
            });
        Ok(())
    }

    fn sent_stats(&self) -> Vec<SentStats> {
        [&self.audio, &self.video].into_iter().flatten().filter_map(TxTrack::stats).collect()
    }

    fn report(&self) {
        let tracks = self.rx.iter().filter(|t| t.active).map(|t| t.stats.clone()).collect();
        let event = JsonEvent::Frames { t: self.started.elapsed().as_secs_f64(), tracks, sent: self.sent_stats() };
        self.reporter.emit(&event, || None);
    }

    /// Leaves the room and closes files; returns the summary, or the
    /// session's error after printing the summary.
    async fn finish(mut self, ws: &mut Ws, result: Result<End, ClientError>) -> Result<Summary, ClientError> {
        let mut result = result;
        // Best effort: the server may already be gone.
        let _ = send(ws, &ClientMsg::Leave).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        self.rtc.disconnect();
        for i in 0..self.rx.len() {
            if let Some(mut rec) = self.rx[i].recorder.take()
                && let Err(e) = rec.finish()
                && result.is_ok()
            {
                result = Err(e.into());
            }
        }
        let summary = Summary {
            participant_id: self.participant_id,
            room: self.room.clone(),
            duration_s: self.started.elapsed().as_secs_f64(),
            connect_s: self.first_connect_s,
            tracks: self.rx.iter().map(|t| t.stats.clone()).collect(),
            sent: self.sent_stats(),
        };
        if let Ok(End::Interrupted) = result {
            tracing::info!("interrupted");
        }
        self.reporter.emit(&JsonEvent::Summary(&summary), || Some(human_summary(&summary)));
        result.map(|_| summary)
    }
}

fn frequency(rate: u32) -> Frequency {
    match rate {
        48_000 => Frequency::FORTY_EIGHT_KHZ,
        _ => Frequency::NINETY_KHZ,
    }
}

/// Keeps file names to `[A-Za-z0-9._-]` (MIDs come from the server's SDP).
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}
