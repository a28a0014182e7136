//! Plenary's native participant: joins a meeting like a browser does,
//! publishes VP8 video from an IVF file and Opus audio from an Ogg file
//! (paced in real time, looped), receives every remote track, and can
//! record what it receives to files ffmpeg plays. Tests, benchmarks and
//! bots use it; `plenary join` is its command line.
//!
//! Signaling is [`plenary_proto`] over a WebSocket; media is str0m as a
//! full-ICE client on one UDP socket bound to the local address that
//! reaches the server (RFC 8445; the server is ICE-lite). Everything runs
//! on the calling task.
//!
//! ```no_run
//! # async fn demo() -> Result<(), plenary_client::ClientError> {
//! use std::time::Duration;
//! let summary = plenary_client::join(plenary_client::JoinOptions {
//!     url: "http://127.0.0.1:8080/m/standup#AAECAwQFBgcICQoLDA0ODw".into(),
//!     name: "bot".into(),
//!     video: Some(".media/bbb-360p.ivf".into()),
//!     audio: Some(".media/bbb.ogg".into()),
//!     duration: Some(Duration::from_secs(10)),
//!     record: None,
//!     json: false,
//!     hide_video: false,
//!     chat_stdin: false,
//! })
//! .await?;
//! for t in &summary.tracks {
//!     println!("{} {:?}: {} frames", t.participant_id, t.kind, t.frames);
//! }
//! # Ok(()) }
//! ```
//!
//! Privacy: every meeting is end-to-end encrypted; the display name
//! travels only inside the MLS group (the server gets the profile `{}`);
//! it is never logged. The meeting link's fragment is never sent anywhere;
//! the server gets only the room tag derived from it.

use std::path::PathBuf;
use std::time::Duration;

pub mod audio_level;
mod chat_input;
mod e2ee;
pub mod events;
pub mod ivf;
pub mod meeting_url;
pub mod ogg;
pub mod reconnect;
pub mod record;
mod session;
pub mod source;
pub mod udp_buffer;

pub use events::{SentStats, Summary, TrackStats};
pub use meeting_url::{MeetingUrl, UrlError};
pub use rustls::pki_types::CertificateDer;
pub use session::{CONNECT_TIMEOUT, MEDIA_CONNECT_TIMEOUT};

/// What [`join`] does.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// Meeting link, `http(s)://host[:port]/m/<room>[?query]#<secret>`. Every
    /// meeting is end-to-end encrypted (MLS + SFrame, as in the browser);
    /// the secret never leaves this process. A missing or damaged secret is
    /// [`ClientError::IncompleteLink`].
    pub url: String,
    /// Display name: only inside the encrypted MLS profile (the server gets "{}").
    pub name: String,
    /// VP8 IVF file to publish, looped.
    pub video: Option<PathBuf>,
    /// Ogg Opus file to publish, looped.
    pub audio: Option<PathBuf>,
    /// How long to publish, counted from the moment the media connection
    /// is up; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Directory to record every received track into
    /// (`<participant>-<kind>-mid<mid>-<n>.ivf|ogg`), created if missing.
    pub record: Option<PathBuf>,
    /// Print JSON lines on stdout instead of human-readable lines.
    pub json: bool,
    /// Tell the server every received video is hidden (`layer_preference`
    /// 0x0, as a client showing no video tiles does): it forwards none of
    /// it, only audio. Publishing is unchanged. Used to fill benchmark rooms
    /// without 30 clients each receiving 29 videos on one machine.
    pub hide_video: bool,
    /// Read chat lines from stdin and send each, end-to-end encrypted, to
    /// the meeting (incoming chat is printed either way).
    pub chat_stdin: bool,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The meeting link is not usable.
    #[error("bad meeting link: {0}")]
    Url(#[from] UrlError),
    /// A file to publish cannot be used.
    #[error("{0}")]
    Source(#[from] source::SourceError),
    /// The recording directory cannot be created.
    #[error("cannot create recording directory {path}: {source}")]
    RecordDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a recording failed.
    #[error("recording: {0}")]
    Record(#[from] record::RecordError),
    /// The WebSocket connection failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The WebSocket URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration for an https link could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The server did not answer in time.
    #[error("timed out after {} s waiting for {what}", after.as_secs())]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The server refused a request.
    #[error("the server refused: {message} ({code:?})")]
    Server {
        /// Machine-readable cause.
        code: plenary_proto::ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server closed the signaling connection.
    #[error("the server closed the connection")]
    Closed,
    /// The signaling connection failed.
    #[error("signaling connection failed: {0}")]
    Signaling(String),
    /// The server sent something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An SDP could not be parsed or applied.
    #[error("SDP negotiation failed: {0}")]
    Sdp(String),
    /// ICE and DTLS did not connect in time.
    #[error("media connection (ICE/DTLS) not established within {} s", .0.as_secs())]
    MediaTimeout(Duration),
    /// The media connection was lost.
    #[error("media connection lost")]
    MediaLost,
    /// The UDP socket failed.
    #[error("UDP socket: {0}")]
    Socket(std::io::Error),
    /// str0m refused an operation.
    #[error("WebRTC: {0}")]
    Rtc(String),
    /// The link has no fragment, or one that is not a valid meeting secret.
    #[error("This link is incomplete: the part after # is missing or damaged")]
    IncompleteLink,
    /// End-to-end encryption could not be set up.
    #[error("end-to-end encryption: {0}")]
    E2ee(String),
}

/// Joins a meeting, publishes, receives and reports until `duration` has
/// passed (or Ctrl-C), then leaves.
///
/// With `json`, prints JSON lines on stdout (see [`events::JsonEvent`]);
/// otherwise short human-readable lines. Returns what was received and
/// sent; the same summary is printed last.
///
/// Once the media connection has come up, a lost connection (WebSocket
/// closed, server restarted, ICE failed, nothing received for a few
/// seconds) is not an error: the client joins again as a fresh participant
/// with the same name and files, re-forms the end-to-end encrypted group,
/// publishes again and keeps recording (into new files), reporting
/// `reconnecting` and `reconnected`; see [`reconnect`].
///
/// # Errors
/// [`ClientError`]: a bad link or file, no connection, a refusal by the
/// server, ICE/DTLS not up within [`MEDIA_CONNECT_TIMEOUT`] on the first attempt,
/// or a lost connection that [`reconnect::RECONNECT_ATTEMPTS`]
/// attempts could not restore.
pub async fn join(opts: JoinOptions) -> Result<Summary, ClientError> {
    session::run(opts, Vec::new()).await
}

/// Like [`join`], but for `https` links also trusts `roots` (DER CA
/// certificates) besides the system's, e.g. a test server's self-signed
/// certificate. (The system store itself can be replaced with the
/// `SSL_CERT_FILE` or `SSL_CERT_DIR` environment variables.)
///
/// # Errors
/// As [`join`]; [`ClientError::Tls`] for a certificate rustls refuses.
pub async fn join_with_root_certificates(
    opts: JoinOptions,
    roots: Vec<CertificateDer<'static>>,
) -> Result<Summary, ClientError> {
    session::run(opts, roots).await
}

/// Path of a file made by `scripts/test-media.sh`, if it exists: in
/// `$PLENARY_MEDIA_DIR` or the workspace's `.media/`.
#[cfg(test)]
pub(crate) fn test_media(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("PLENARY_MEDIA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.media"));
    let p = dir.join(name);
    p.is_file().then_some(p)
}
