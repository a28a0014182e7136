//! Configuration of the SFU core.

use std::net::SocketAddr;
use std::time::Duration;

use plenary_proto::IceServer;

/// What the SFU needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP addresses advertised as ICE host candidates (RFC 8445 §5.1.1.1):
    /// the public address of the one media socket.
    pub udp_candidates: Vec<SocketAddr>,
    /// TCP addresses advertised as passive ICE-TCP host candidates
    /// (RFC 6544), usually the same port number as UDP.
    pub tcp_candidates: Vec<SocketAddr>,
    /// STUN/TURN servers handed to clients; empty by default.
    pub ice_servers: Vec<IceServer>,
    /// Shortest interval between two key frame requests (PLI, RFC 4585
    /// §6.3.1) sent to one layer of one publisher.
    pub pli_interval: Duration,
    /// Most participants one room may hold.
    pub max_room_size: usize,
    /// Operator tap: emit [`crate::Output::Tap`] with every RTP packet sent
    /// to a subscriber, as it is before SRTP protection. Off by default; for
    /// proving what an operator can see.
    pub tap: bool,
    /// Most audio streams forwarded to one subscriber: the loudest other
    /// speakers of its room, ranked by their RFC 6464 levels (`loudest`).
    /// 0 forwards every audio stream (the default here; `plenary serve`
    /// forwards 3).
    pub audio_streams: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            udp_candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            ice_servers: Vec::new(),
            pli_interval: Duration::from_millis(500),
            max_room_size: 1000,
            tap: false,
            audio_streams: 0,
        }
    }
}
