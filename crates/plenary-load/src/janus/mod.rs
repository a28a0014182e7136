//! `--target janus`: the Janus WebRTC server (Debian package `janus`, 1.1)
//! with its VideoRoom plugin, the SFU people would pick instead, as the
//! peer Plenary is measured against.
//!
//! [`start`] writes a minimal configuration ([`config`]: the VideoRoom
//! plugin and the HTTP transport only, no STUN, one static event loop per
//! core, log to a file) into the run's work dir, starts `janus` pinned
//! like every server under test, and waits for `GET /janus/info`. One
//! Janus session ([`JanusSession`], with keepalives and a long poll) then
//! carries every handle. Per room name the target creates one VideoRoom
//! room; per participant:
//! - a publishing peer offers (one `sendonly` audio, one `sendonly` video
//!   m-line), the task sends `joinandconfigure` with that offer and hands
//!   back Janus's answer; its feed id is then announced to the room;
//! - a receiving peer is a second PeerConnection on its own handle: once
//!   at least one other feed is up the task joins as a subscriber to all
//!   of them, hands Janus's offer to the harness and sends the answer with
//!   `start`; later feeds are added with `subscribe` and Janus's new
//!   offers (feeds added or gone) are passed on the same way.
//!
//! Janus never gathers ICE candidates on a loopback interface, so its one
//! host candidate is on this machine's first non-loopback IPv4 address
//! ([`media_ipv4`]); the harness's peers must bind there
//! ([`JanusTarget::media_ip`]). The kernel still carries that traffic over
//! `lo`, as it does for loopback.

pub mod api;
pub mod config;
mod http;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use api::{JanusSession, Published, VideoRoomHandle};
pub use config::JanusConfig;
use http::Http;

use crate::LoadError;
use crate::process::{ServerProcess, free_port, http_ok, wait_ready};
use crate::target::{
    BoxFuture, ClientSignal, Peer, PeerLink, Role, ServerSignal, Signaling, StartOptions, Target, TargetKind,
};

/// Publishers a room admits (a meeting of scenario (b) has up to 50).
const ROOM_PUBLISHERS: u32 = 100;
/// Video bitrate cap of a room's publishers, bits per second (high enough
/// never to throttle the harness's streams).
const ROOM_BITRATE_BPS: u64 = 20_000_000;
/// How long a subscriber waits for a feed's PeerConnection to come up.
const FEED_WAIT: Duration = Duration::from_secs(30);

/// Errors of the Janus target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JanusError {
    /// A TCP-level failure talking to the HTTP API.
    #[error("janus HTTP API: {0}")]
    Http(std::io::Error),
    /// The HTTP API answered with a non-2xx status.
    #[error("janus HTTP API: status {status} for {path}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The request path.
        path: String,
    },
    /// An answer or event of an unexpected shape.
    #[error("janus protocol: {0}")]
    Protocol(String),
    /// Janus's core refused a request (`{"janus":"error"}`).
    #[error("janus error {code}: {reason}")]
    Api {
        /// Janus error code (e.g. 458 = no such session).
        code: u64,
        /// Janus's reason text.
        reason: String,
    },
    /// The VideoRoom plugin refused a request (`error_code`).
    #[error("janus VideoRoom error {code}: {reason}")]
    Plugin {
        /// VideoRoom error code (e.g. 426 = no such room, 428 = no such feed).
        code: u64,
        /// The plugin's reason text.
        reason: String,
    },
    /// Janus hung the PeerConnection up.
    #[error("janus hung up: {0}")]
    Hangup(String),
    /// A request or awaited event did not come in time.
    #[error("janus: timed out waiting for {0}")]
    Timeout(String),
    /// The session's event stream ended.
    #[error("janus session closed")]
    SessionClosed,
}

impl From<JanusError> for LoadError {
    fn from(e: JanusError) -> Self {
        LoadError::Signaling(e.to_string())
    }
}

/// VideoRoom error code for a feed that does not exist (yet).
const NO_SUCH_FEED: u64 = 428;

/// A running Janus and the session the harness drives it with.
pub struct JanusTarget {
    process: ServerProcess,
    media_ip: Ipv4Addr,
    session: Arc<JanusSession>,
    admin: VideoRoomHandle,
    rooms: tokio::sync::Mutex<HashMap<String, Arc<Room>>>,
    participants: AtomicU64,
}

/// One VideoRoom room and its feeds whose PeerConnection is up.
struct Room {
    id: u64,
    /// (participant number, feed id) of every publishing peer that got
    /// Janus's answer.
    feeds: watch::Sender<Vec<(u64, u64)>>,
}

/// Starts Janus pinned to `opts.server_cpu` with `opts.threads` static
/// event loops, its configuration and log in `opts.work_dir`.
///
/// # Errors
/// [`LoadError::Start`] if `janus` is missing (Debian: `apt-get install
/// janus`), exits, or its API does not answer within 20 s;
/// [`LoadError::Start`] too if the machine has no non-loopback IPv4
/// address for ICE.
pub async fn start(opts: &StartOptions) -> Result<Box<dyn Target>, LoadError> {
    Ok(Box::new(JanusTarget::start(opts).await?))
}

impl JanusTarget {
    /// See [`start`].
    ///
    /// # Errors
    /// As [`start`].
    pub async fn start(opts: &StartOptions) -> Result<JanusTarget, LoadError> {
        let fail = |reason: String| LoadError::Start { target: "janus", reason };
        let media_ip = media_ipv4().ok_or_else(|| {
            fail("Janus gathers ICE candidates only on non-loopback interfaces and no IPv4 one is up".into())
        })?;
        let mut last = None;
        for attempt in 0..3 {
            let dir = opts.work_dir.join(format!("janus-{attempt}"));
            std::fs::create_dir_all(&dir)?;
            let http_port = free_port()?;
            let config = JanusConfig {
                modules: config::DEBIAN_MODULES.into(),
                dir: dir.clone(),
                ip: Ipv4Addr::LOCALHOST,
                media_ip,
                http_port,
                event_loops: opts.threads.max(1),
                debug_level: 4,
            };
            config.write()?;
            let args = vec![
                "-C".to_owned(),
                config.core_file().display().to_string(),
                "-F".to_owned(),
                dir.display().to_string(),
                "--disable-colors".to_owned(),
            ];
            let mut process =
                ServerProcess::spawn(&opts.janus_bin, &args, &[], opts.server_cpu, dir.join("janus.out"))?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, http_port));
            match wait_ready("janus", &mut process, Duration::from_secs(20), || http_ok(addr, "/janus/info")).await {
                Ok(()) => {
                    let session = JanusSession::create(Http { addr }).await?;
                    let admin = session.attach_videoroom().await?;
                    return Ok(JanusTarget {
                        process,
                        media_ip,
                        session: Arc::new(session),
                        admin,
                        rooms: tokio::sync::Mutex::default(),
                        participants: AtomicU64::new(0),
                    });
                }
                Err(LoadError::Start { reason, .. }) => {
                    let log = std::fs::read_to_string(config.log_file()).unwrap_or_default();
                    let tail: String =
                        log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                    last = Some(fail(format!("{reason}\njanus.log:\n{tail}")));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| fail("no attempt".into())))
    }

    /// The address Janus's ICE candidates are on: the harness's peers bind
    /// their UDP sockets to it.
    pub fn media_ip(&self) -> Ipv4Addr {
        self.media_ip
    }

    /// The room called `name`, created in Janus on first use.
    async fn room(&self, name: &str) -> Result<Arc<Room>, JanusError> {
        let mut rooms = self.rooms.lock().await;
        if let Some(r) = rooms.get(name) {
            return Ok(r.clone());
        }
        let id = self.session.create_room(&self.admin, ROOM_PUBLISHERS, ROOM_BITRATE_BPS).await?;
        let room = Arc::new(Room { id, feeds: watch::Sender::new(Vec::new()) });
        rooms.insert(name.to_owned(), room.clone());
        Ok(room)
    }
}

impl Target for JanusTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Janus
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn local_ip(&self) -> IpAddr {
        IpAddr::V4(self.media_ip)
    }

    fn open<'a>(&'a self, room: &'a str, role: Role) -> BoxFuture<'a, Result<Vec<Peer>, LoadError>> {
        Box::pin(async move {
            let room = self.room(room).await?;
            let me = self.participants.fetch_add(1, Ordering::Relaxed);
            let mut peers = Vec::new();
            if role.publishes() {
                let handle = self.session.attach_videoroom().await?;
                let (signaling, channels) = signaling_pair(true);
                tokio::spawn(publisher(self.session.clone(), room.clone(), me, handle, channels));
                peers.push(Peer { role: Role::Publisher, link: PeerLink::WebRtc(signaling) });
            }
            if role.subscribes() {
                let handle = self.session.attach_videoroom().await?;
                let (signaling, channels) = signaling_pair(false);
                tokio::spawn(subscriber(self.session.clone(), room, me, handle, channels));
                peers.push(Peer { role: Role::Subscriber, link: PeerLink::WebRtc(signaling) });
            }
            Ok(peers)
        })
    }
}

/// The target's ends of a peer's signaling channels.
struct Channels {
    commands: mpsc::UnboundedReceiver<ClientSignal>,
    events: mpsc::UnboundedSender<ServerSignal>,
}

fn signaling_pair(client_offers: bool) -> (Signaling, Channels) {
    let (to_server, commands) = mpsc::unbounded_channel();
    let (events, from_server) = mpsc::unbounded_channel();
    (Signaling { client_offers, to_server, from_server }, Channels { commands, events })
}

/// A publishing peer: its offer → `joinandconfigure` → Janus's answer; the
/// feed is announced to the room until the harness drops the peer.
async fn publisher(
    session: Arc<JanusSession>,
    room: Arc<Room>,
    me: u64,
    mut handle: VideoRoomHandle,
    mut ch: Channels,
) {
    let result = async {
        let offer = loop {
            match ch.commands.recv().await {
                Some(ClientSignal::Offer(sdp)) => break sdp,
                Some(ClientSignal::Answer(_)) => continue,
                None => return Ok(None),
            }
        };
        let published = session.publish(&mut handle, room.id, &offer).await?;
        let _ = ch.events.send(ServerSignal::Answer(published.answer_sdp));
        room.feeds.send_modify(|f| f.push((me, published.feed)));
        Ok::<_, JanusError>(Some(published.feed))
    }
    .await;
    match result {
        Ok(Some(feed)) => {
            // Until the harness drops the peer.
            while ch.commands.recv().await.is_some() {}
            room.feeds.send_modify(|f| f.retain(|(_, id)| *id != feed));
        }
        Ok(None) => {}
        Err(e) => {
            let _ = ch.events.send(ServerSignal::Failed(e.to_string()));
        }
    }
    let _ = session.detach(handle).await;
}

/// A receiving peer: subscribes to every other feed of the room once one
/// is up, passes Janus's offers on and answers them with `start`.
async fn subscriber(
    session: Arc<JanusSession>,
    room: Arc<Room>,
    me: u64,
    mut handle: VideoRoomHandle,
    mut ch: Channels,
) {
    let mut feeds_rx = room.feeds.subscribe();
    let result = async {
        let mut subscribed: Vec<u64> = Vec::new();
        loop {
            let others: Vec<u64> = feeds_rx
                .borrow_and_update()
                .iter()
                .filter(|(p, f)| *p != me && !subscribed.contains(f))
                .map(|(_, f)| *f)
                .collect();
            if !others.is_empty() {
                let first = subscribed.is_empty();
                // A feed is listed once its publisher got the answer, but
                // Janus admits subscribers only when the publisher's
                // PeerConnection is up: retry "no such feed" a while.
                let deadline = tokio::time::Instant::now() + FEED_WAIT;
                let offer = loop {
                    let r = if first {
                        session.subscribe(&mut handle, room.id, &others).await.map(Some)
                    } else {
                        session.add_feeds(&handle, &others).await.map(|()| None)
                    };
                    match r {
                        Err(JanusError::Plugin { code: NO_SUCH_FEED, .. })
                            if tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        r => break r?,
                    }
                };
                subscribed.extend(&others);
                if let Some(offer) = offer {
                    let _ = ch.events.send(ServerSignal::Offer(offer));
                    let Some(answer) = next_answer(&mut ch.commands).await else { return Ok(()) };
                    session.start(&mut handle, &answer).await?;
                }
            }
            tokio::select! {
                changed = feeds_rx.changed() => if changed.is_err() { return Ok(()) },
                offer = handle.next_offer(), if !subscribed.is_empty() => {
                    let Some(offer) = offer else { return Err(JanusError::SessionClosed) };
                    let _ = ch.events.send(ServerSignal::Offer(offer?));
                    let Some(answer) = next_answer(&mut ch.commands).await else { return Ok(()) };
                    session.answer(&handle, &answer).await?;
                }
                cmd = ch.commands.recv() => if cmd.is_none() { return Ok(()) },
            }
        }
    }
    .await;
    if let Err(e) = result {
        let _ = ch.events.send(ServerSignal::Failed(e.to_string()));
    }
    let _ = session.detach(handle).await;
}

/// The harness's next answer; `None` when it dropped the peer.
async fn next_answer(commands: &mut mpsc::UnboundedReceiver<ClientSignal>) -> Option<String> {
    loop {
        match commands.recv().await? {
            ClientSignal::Answer(sdp) => return Some(sdp),
            ClientSignal::Offer(_) => continue,
        }
    }
}

/// The first IPv4 address of an interface that is up, running and not
/// loopback: where Janus gathers its ICE candidate (Janus skips loopback
/// interfaces). Traffic between two local addresses still goes through the
/// kernel's `lo` path, as loopback traffic does.
pub fn media_ipv4() -> Option<Ipv4Addr> {
    use nix::net::if_::InterfaceFlags;
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs
        .filter(|i| {
            i.flags.contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING)
                && !i.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local())
}
