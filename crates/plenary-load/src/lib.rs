//! Load harness for SFUs: `plenary load`.
//!
//! Starts a server under test ([`target`]: Plenary, Janus VideoRoom, or a
//! UDP/SRTP relay baseline) on loopback, connects P publishers and S
//! subscribers, ramps S in steps held for a set time, and measures per
//! step: packets and bits forwarded per second, server CPU-seconds per
//! million forwarded packets (utime + stime of the server process from
//! `/proc/<pid>/stat`, the server pinned to one core with `taskset`, the
//! generator to the other), subscriber loss, one-way forwarding latency
//! p50/p99, server RSS per subscriber and join time. Output: JSON per run,
//! a markdown table, an SVG chart.
//!
//! # The generator is cheaper than the server
//! The harness must not be the bottleneck, yet it runs every publisher and
//! subscriber on one core while the server has the other. So:
//! - **Publishers** send synthetic frames ([`synth`]): valid-looking VP8
//!   (RFC 7741 payload descriptor, RFC 6386 frame tag, a key frame header
//!   with the picture size every key frame) and Opus-sized audio, at a set
//!   bitrate and frame rate. The harness packetizes itself and writes RTP
//!   packets through str0m's RTP mode, so there is no frame packetizer in
//!   the loop, and relay baselines get the very same packets. Each frame
//!   starts (after the VP8 header) with a stamp: magic, frame number and
//!   send time in µs on the harness clock.
//! - **Light subscribers** complete ICE and DTLS with str0m like any
//!   browser. From then on every datagram is classified by its first byte
//!   (RFC 7983): RTCP and STUN still go to str0m, but RTP packets are
//!   counted from their clear 12-byte header (SSRC, sequence number,
//!   marker, payload type) and dropped, except a sample: the first packet
//!   of a video frame (the packet after one with the marker bit) and an
//!   audio packet, each with probability 1/50 (at random: a fixed "every
//!   50th" is phase-locked to the video clock, see `peer::Counter`), are
//!   handed to str0m, which decrypts them; the stamp inside, against the
//!   time the kernel received the datagram (`SO_TIMESTAMPNS`, [`rx_stamp`]:
//!   not when the busy generator read it), gives the one-way forwarding
//!   latency, reported for audio and video apart as well. NACKs are
//!   suppressed on the subscriber, so the gaps str0m sees do not make the
//!   server retransmit, and receivers do not negotiate transport-wide CC
//!   (draft-holmer-rmcat-transport-wide-cc-extensions): feedback built from
//!   the sample would report 49 of 50 packets lost and the SFU's bandwidth
//!   estimator would pause them. Caveat: a server then does no TWCC work
//!   for these receivers (Plenary runs a per-subscriber estimator for
//!   browsers), so its figures here are slightly better than with
//!   browsers; Janus does no per-subscriber estimation either way. Per forwarded packet the generator pays one
//!   `recv` and a header parse; the server pays a receive share, a
//!   packetizer, SRTP encryption and a `send`.
//! - **Loss** is counted per subscriber and media kind: frames received
//!   (video: packets with the marker bit; audio: packets) against frames
//!   published while the subscriber was connected. This survives an SFU
//!   that repacketizes (Plenary forwards frames, Janus forwards packets).
//!
//! All participants run on one current-thread tokio runtime.

pub mod cli;
pub mod idle;
pub mod janus;
pub mod measure;
pub mod pacing;
pub mod peer;
pub mod plenary;
pub mod process;
pub mod relay;
pub mod relay_server;
pub mod relay_srtp;
pub mod report;
pub mod run;
pub mod rx_stamp;
pub mod synth;
pub mod target;

pub use target::{Peer, PeerLink, Role, Target, TargetKind};

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The server under test did not start.
    #[error("cannot start {target}: {reason}")]
    Start {
        /// Which target.
        target: &'static str,
        /// Why.
        reason: String,
    },
    /// The server refused or did not answer a signaling request.
    #[error("signaling: {0}")]
    Signaling(String),
    /// SDP could not be made, parsed or applied.
    #[error("SDP: {0}")]
    Sdp(String),
    /// ICE/DTLS did not connect in time.
    #[error("media connection not established within {0} s")]
    MediaTimeout(u64),
    /// A socket or file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A command-line value the run cannot use (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A result file or the output directory cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Output {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A target and scenario this harness cannot run together.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}
