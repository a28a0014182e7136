//! The target abstraction: a server under test and how simulated
//! participants connect to it.
//!
//! A [`Target`] is a running server process (its pid is what the harness
//! measures) plus a way to open *peers*. A simulated participant
//! ([`Role`]) is one or more peers: Plenary carries publishing and
//! receiving on one WebRTC PeerConnection, Janus VideoRoom uses one
//! PeerConnection to publish and another to subscribe, a relay baseline
//! uses plain UDP sockets.
//!
//! - [`PeerLink::WebRtc`]: the harness runs str0m on its side (full ICE,
//!   DTLS-SRTP, RFC 8829 JSEP) and exchanges SDP through a [`Signaling`]
//!   channel pair. The target's own task translates to its protocol
//!   (Plenary's WebSocket messages, Janus's HTTP API) and hides details
//!   such as layer preferences or Janus's `start` request.
//! - [`PeerLink::Udp`]: a baseline that is not WebRTC is fed the same RTP
//!   packet stream ([`crate::synth`]) over plain UDP; subscribers announce
//!   themselves with a `hello` datagram. An optional [`PacketCrypto`] does
//!   SRTP protect/unprotect on the harness side.
//!
//! Adding a target: implement [`Target`] in its own module and add an arm
//! to [`start`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::LoadError;

/// A boxed, sendable future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which server to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// `plenary serve`, started by the harness on free loopback ports.
    Plenary,
    /// Janus VideoRoom (Debian `janus`), started with a minimal config.
    Janus,
    /// Baseline: UDP relay without crypto (recvmmsg/sendmmsg batches).
    UdpRelay,
    /// Baseline: the UDP relay doing SRTP AES-128-GCM per packet.
    SrtpRelay,
}

impl TargetKind {
    /// Short name used in reports (`plenary`, `janus`, `udp-relay`, `srtp-relay`).
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Plenary => "plenary",
            TargetKind::Janus => "janus",
            TargetKind::UdpRelay => "udp-relay",
            TargetKind::SrtpRelay => "srtp-relay",
        }
    }
}

/// How to start a target.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// CPU the server is pinned to with `taskset -c` (None: not pinned).
    pub server_cpu: Option<usize>,
    /// The `plenary` binary (for [`TargetKind::Plenary`]).
    pub plenary_bin: PathBuf,
    /// The `janus` binary (for [`TargetKind::Janus`]), default `janus` on PATH.
    pub janus_bin: PathBuf,
    /// A scratch directory for configs and logs, removed by the caller.
    pub work_dir: PathBuf,
    /// Helper threads the server may use (Janus: helper threads), usually
    /// the number of cores.
    pub threads: usize,
}

/// What one simulated participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sends one audio and one video track, receives nothing.
    Publisher,
    /// Receives every track in the room, sends nothing.
    Subscriber,
    /// A meeting participant: sends and receives.
    Both,
}

impl Role {
    /// Whether the role sends media.
    pub fn publishes(self) -> bool {
        matches!(self, Role::Publisher | Role::Both)
    }
    /// Whether the role receives media.
    pub fn subscribes(self) -> bool {
        matches!(self, Role::Subscriber | Role::Both)
    }
}

/// A running server under test. Dropping it stops the server.
pub trait Target: Send + Sync {
    /// Which target this is.
    fn kind(&self) -> TargetKind;

    /// The server's process id: CPU time (utime + stime) and RSS are read
    /// from `/proc/<pid>/stat` and `/proc/<pid>/status`.
    fn pid(&self) -> u32;

    /// The local address WebRTC peers bind their UDP socket to, one the
    /// server's ICE candidates are reachable from (default 127.0.0.1;
    /// Janus, which never gathers on loopback, says otherwise).
    fn local_ip(&self) -> std::net::IpAddr {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    }

    /// Opens the peers of one participant of `role` in `room` (a room name
    /// of `[a-z0-9-]`, created on first use). Publishers of a room join
    /// before its subscribers in scenario (a); in a meeting participants
    /// join one after another and each receives the tracks of those that
    /// joined before and after it.
    ///
    /// Returns one [`Peer`] per connection (Plenary: one; Janus: a
    /// publisher and a subscriber handle for [`Role::Both`]).
    ///
    /// # Errors
    /// [`LoadError::Signaling`] when the server refuses or does not answer.
    fn open<'a>(&'a self, room: &'a str, role: Role) -> BoxFuture<'a, Result<Vec<Peer>, LoadError>>;
}

/// One connection of a simulated participant.
pub struct Peer {
    /// What this connection carries: [`Role::Publisher`] (sends audio +
    /// video), [`Role::Subscriber`] (receives) or [`Role::Both`].
    pub role: Role,
    /// How it connects.
    pub link: PeerLink,
}

/// How a peer reaches the server.
pub enum PeerLink {
    /// A WebRTC PeerConnection (str0m on the harness side).
    WebRtc(Signaling),
    /// Plain UDP for the relay baselines.
    Udp(UdpLink),
}

/// SDP exchange of one WebRTC peer with the server, as two channels served
/// by a task of the target.
///
/// Sequence: if `client_offers`, the harness first sends
/// [`ClientSignal::Offer`] (publishing peers: one `sendonly` audio and one
/// `sendonly` video m-line; receive-only peers of a target that needs a
/// client offer first, like Plenary: one `recvonly` audio m-line) and
/// waits for [`ServerSignal::Answer`]. Then, at any time, the server may
/// send [`ServerSignal::Offer`] (tracks to receive, added or removed) and
/// the harness replies with [`ClientSignal::Answer`].
pub struct Signaling {
    /// Whether the client must make the first offer (Plenary: always;
    /// Janus: publishers only; Janus subscribers get Janus's offer).
    pub client_offers: bool,
    /// Harness → server.
    pub to_server: mpsc::UnboundedSender<ClientSignal>,
    /// Server → harness; closes when the signaling session ends.
    pub from_server: mpsc::UnboundedReceiver<ServerSignal>,
}

/// A message from the harness to the target's signaling task.
#[derive(Debug, Clone)]
pub enum ClientSignal {
    /// The client's SDP offer.
    Offer(String),
    /// The client's SDP answer to the last [`ServerSignal::Offer`].
    Answer(String),
}

/// A message from the target's signaling task to the harness.
#[derive(Debug, Clone)]
pub enum ServerSignal {
    /// The answer to our offer.
    Answer(String),
    /// An offer from the server (tracks to receive).
    Offer(String),
    /// The server refused something or the session ended; the text says why.
    Failed(String),
}

/// A baseline peer on plain UDP.
pub struct UdpLink {
    /// Where the peer sends: publishers send their RTP packets here,
    /// subscribers send `hello` here (every 200 ms until packets arrive)
    /// so that the relay learns their address.
    pub server: SocketAddr,
    /// First datagram of a subscriber.
    pub hello: Vec<u8>,
    /// SRTP on the harness side (for [`TargetKind::SrtpRelay`]), or none.
    pub crypto: Option<Arc<dyn PacketCrypto>>,
}

/// Per-packet SRTP on the harness side of a relay baseline (RFC 3711 with
/// AES-128-GCM, RFC 7714).
pub trait PacketCrypto: Send + Sync {
    /// Protects one RTP packet (header + payload) for sending.
    fn protect(&self, rtp: &[u8]) -> Vec<u8>;
    /// Unprotects one received SRTP packet; `None` if authentication fails.
    fn unprotect(&self, srtp: &[u8]) -> Option<Vec<u8>>;
}

/// Starts a target.
///
/// # Errors
/// [`LoadError::Start`] if the server process does not come up.
pub async fn start(kind: TargetKind, opts: &StartOptions) -> Result<Box<dyn Target>, LoadError> {
    match kind {
        TargetKind::Plenary => crate::plenary::start(opts).await,
        TargetKind::Janus => crate::janus::start(opts).await,
        TargetKind::UdpRelay => crate::relay::start(opts, false).await,
        TargetKind::SrtpRelay => crate::relay::start(opts, true).await,
    }
}
