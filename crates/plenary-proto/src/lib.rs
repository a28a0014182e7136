//! Plenary signaling protocol: the messages a client and the server exchange
//! over the WebSocket at `/ws`, one JSON object per text frame.
//!
//! Every message is an object with a `"type"` field in `snake_case`. The
//! server never needs to understand a participant's profile: it is an opaque
//! string (today a small JSON document, tomorrow MLS ciphertext) that the
//! server relays unchanged and never logs.
//!
//! A session goes like this:
//!
//! 1. client → `join` (room id, room tag, opaque profile), server → `joined`
//!    (own participant id, who is there).
//! 2. client → `offer` (its SDP, with the tracks it publishes),
//!    server → `answer`.
//! 3. whenever other participants' tracks appear or disappear, server →
//!    `offer` with a fresh `track_map`, client → `answer`.
//! 4. client → `layer_preference` for each remote video it renders, with the
//!    size it renders at, so the SFU forwards a fitting simulcast layer.
//! 5. adaptive quality, server → client: `layer` when the forwarded layer
//!    of a remote video changes, `quality` every 2 s (the downlink bandwidth
//!    estimate and the layer of each remote video), `layers_paused` to a
//!    publisher (simulcast layers nobody receives, to stop encoding),
//!    `active_speaker`, and `connection_quality` when a participant's uplink
//!    becomes too weak for video or recovers.
//!
//! ```
//! use plenary_proto::{ClientMsg, decode_client_msg};
//! let msg = decode_client_msg(r#"{"type":"join","room":"abc-123","room_tag":"aS4mntnm_rIOjgEerx05EQ","profile":"x"}"#).unwrap();
//! assert!(matches!(msg, ClientMsg::Join { .. }));
//! ```

use serde::{Deserialize, Serialize};

mod error;
mod ids;

pub use error::{DecodeError, ErrorCode};
pub use ids::{ParticipantId, RoomId, RoomIdError, RoomTag, RoomTagError};

/// Version of this protocol. A client sends it in `join`; the server refuses
/// versions it does not speak with [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest client message the server accepts, in bytes of UTF-8 JSON.
/// An SDP answer for a room of a few hundred tracks, or an MLS Welcome for a
/// group of several hundred members, fits.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest opaque profile, in bytes.
pub const MAX_PROFILE_BYTES: usize = 4096;

/// Kind of media of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 (or H.264/VP9) video, possibly simulcast.
    Video,
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Enter a room, creating it if it does not exist. Must be the first
    /// message of a connection, and sent once.
    Join {
        /// Room to join; see [`RoomId`] for the allowed characters.
        room: String,
        /// Opaque profile relayed to the other participants, at most
        /// [`MAX_PROFILE_BYTES`]. Never logged by the server.
        profile: String,
        /// Protocol version the client speaks; absent means 1.
        #[serde(default = "default_version")]
        version: u32,
        /// The meeting's room tag ([`RoomTag`]: 22 base64url characters
        /// derived from the link's secret). Participants of one room name
        /// with different tags are in different meetings. Required: a
        /// missing (read as empty) or malformed tag is refused with
        /// [`ErrorCode::IncompleteLink`] (fatal). Never logged by the server.
        #[serde(default)]
        room_tag: String,
    },
    /// The client's SDP offer (RFC 8829 JSEP). The first one sets up the
    /// transport and the client's published tracks.
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// The client's SDP answer to a server `offer`.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// The client muted or unmuted its microphone or camera (UI state only;
    /// a muted track also stops sending media).
    SetMuted {
        /// Which of the client's tracks.
        kind: MediaKind,
        /// New state.
        muted: bool,
    },
    /// The size at which the client renders the remote video received on
    /// `mid`; the SFU forwards the simulcast layer that fits it best.
    /// `0 × 0` means the video is not shown at all.
    LayerPreference {
        /// MID of the client's receiving transceiver (from the `track_map`).
        mid: String,
        /// Rendered width, in device pixels.
        width: u32,
        /// Rendered height, in device pixels.
        height: u32,
        /// The user pinned this video: it is served right after audio,
        /// before the active speaker and larger tiles, when bandwidth is
        /// short. Absent means false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pinned: bool,
    },
    /// Keep-alive; the server answers `pong` with the same id.
    Ping {
        /// Echoed back.
        #[serde(default)]
        id: u64,
    },
    /// An end-to-end encryption envelope for the MLS Delivery Service
    /// (RFC 9420 §16.6): a join request, a commit or an application
    /// message, as encoded by `plenary_e2ee::envelope`, in unpadded
    /// base64url. The server reads only the envelope's kind, a commit's
    /// epoch and a Welcome's KeyPackageRefs.
    ///
    /// A commit that adds members carries its Welcome in `welcome`: the
    /// server accepts or refuses both at once, and on accepting routes the
    /// Welcome to the joiners it names in the same step as it fans the
    /// commit out, so no later commit can overtake the Welcome. A Welcome
    /// on its own is refused ([`ErrorCode::BadEnvelope`]).
    Mls {
        /// The envelope, base64url without padding.
        envelope: String,
        /// With a commit: the Welcome envelope for the joiners it adds,
        /// base64url without padding. Absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<String>,
    },
    /// The sender is now a member of the room's MLS group at this leaf index
    /// (after creating the group or processing a Welcome). Lets every client
    /// compute the committer (lowest online leaf) the same way.
    GroupMember {
        /// Own leaf index.
        leaf: u32,
    },
    /// Leave the room. Closing the WebSocket does the same.
    Leave,
}

fn default_version() -> u32 {
    1
}

/// One participant as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned id, unique within the server's lifetime.
    pub id: ParticipantId,
    /// Opaque profile as the participant sent it.
    pub profile: String,
    /// Leaf index in the room's MLS group, once the participant is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<u32>,
    /// Microphone muted.
    pub audio_muted: bool,
    /// Camera muted.
    pub video_muted: bool,
}

/// One remote track as received by a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// MID of the subscriber's receiving transceiver.
    pub mid: String,
    /// Participant who publishes the track.
    pub participant_id: ParticipantId,
    /// Audio or video.
    pub kind: MediaKind,
}

/// The layer the SFU forwards of one remote video (see [`ServerMsg::Quality`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackQuality {
    /// MID of the subscriber's receiving transceiver.
    pub mid: String,
    /// Participant who publishes the video.
    pub participant_id: ParticipantId,
    /// RID of the forwarded layer (`q`, `h`, `f`); absent when nothing is
    /// forwarded or the video is not simulcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Height of the forwarded layer in pixels, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Bitrate of the forwarded layer as received from the publisher, bits
    /// per second.
    pub bitrate_bps: u64,
    /// The layer is below what the rendered size asks for (or the video is
    /// off) because the estimate does not allow more.
    pub limited: bool,
}

/// An ICE server (STUN/TURN) the client should use; empty unless the
/// operator configured one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Answer to `join`: the client is in the room.
    Joined {
        /// The client's own participant id.
        participant_id: ParticipantId,
        /// Room id, normalised.
        room: String,
        /// Everyone else already in the room.
        participants: Vec<ParticipantInfo>,
        /// ICE servers for the client's `RTCPeerConnection`; usually empty.
        ice_servers: Vec<IceServer>,
    },
    /// Someone entered the room.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone changed mute state.
    ParticipantUpdated {
        /// New state.
        participant: ParticipantInfo,
    },
    /// Someone left the room (or their connection died).
    ParticipantLeft {
        /// Who.
        participant_id: ParticipantId,
    },
    /// The server's SDP answer to the client's offer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A server SDP offer adding or stopping remote tracks; the client
    /// answers with `answer`. `track_map` lists every remote track the
    /// client receives once this offer is applied.
    Offer {
        /// SDP text.
        sdp: String,
        /// All current remote tracks of this subscriber.
        track_map: Vec<TrackInfo>,
    },
    /// The simulcast layer now forwarded on `mid` changed.
    Layer {
        /// MID of the subscriber's receiving transceiver.
        mid: String,
        /// RID of the forwarded layer (`q`, `h`, `f`), absent without simulcast.
        rid: Option<String>,
    },
    /// No member of the room's MLS group is online: the recipient creates a
    /// new group (epoch 0) and announces it with `group_member`. Join
    /// requests waiting at the server are then relayed to it.
    CreateGroup,
    /// An envelope relayed by the Delivery Service: join requests and
    /// application messages from other participants, commits accepted for
    /// the group, Welcomes addressed to this participant.
    Mls {
        /// Who sent it.
        from: ParticipantId,
        /// The envelope, base64url without padding.
        envelope: String,
    },
    /// The server accepted the recipient's commit for `epoch`; it was
    /// relayed to the other members. Apply it and send the Welcome, if any.
    CommitAccepted {
        /// Epoch the commit was made in (the group is now at `epoch + 1`).
        epoch: u64,
    },
    /// The server refused the recipient's commit because another commit for
    /// that epoch came first (`stale_epoch`); process the winner, which is
    /// relayed as `mls`, and retry.
    CommitRejected {
        /// Epoch the refused commit was made in.
        epoch: u64,
        /// The group's current epoch at the server.
        current_epoch: u64,
    },
    /// The room's active speaker changed (from the RFC 6464 audio levels,
    /// smoothed, with hysteresis).
    ActiveSpeaker {
        /// Who is speaking now.
        participant_id: ParticipantId,
    },
    /// Media quality of the recipient's downlink, every 2 s while it
    /// receives media: the SFU's bandwidth estimate towards it (TWCC,
    /// draft-holmer-rmcat-transport-wide-cc-extensions) and the simulcast
    /// layer it chose for each remote video. For the connection panel.
    Quality {
        /// Estimated bandwidth from the server to the recipient, bits per
        /// second; absent until the estimator has one (or the client sends
        /// no TWCC feedback).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimate_bps: Option<u64>,
        /// One entry per remote video the recipient receives.
        tracks: Vec<TrackQuality>,
    },
    /// Sent to a publisher: of its simulcast video sent on `mid`, the layers
    /// (RIDs, RFC 8851) listed in `paused` reach no subscriber, so it may stop
    /// encoding them (browser: `RTCRtpEncodingParameters.active = false`);
    /// every other layer must be sent. The SFU sends the full set whenever it
    /// changes; an empty list resumes everything. The lowest layer is never
    /// paused while anyone subscribes, so a subscriber can always switch to it
    /// at once.
    LayersPaused {
        /// MID of the publisher's sending transceiver.
        mid: String,
        /// RIDs to stop sending.
        paused: Vec<String>,
    },
    /// Whether a participant's uplink is too weak for video: its video
    /// stalled while its audio still arrives (or its bandwidth estimate is
    /// below the lowest layer). Clients show "Poor connection" instead of a
    /// frozen picture. Sent on every change.
    ConnectionQuality {
        /// Whose uplink.
        participant_id: ParticipantId,
        /// True while the uplink is too weak for video.
        poor: bool,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// A request failed. The connection stays open unless the error says
    /// otherwise (`fatal`).
    Error {
        /// Machine-readable cause.
        code: ErrorCode,
        /// Human-readable detail (never contains user data).
        message: String,
        /// The server closes the connection after this message.
        fatal: bool,
    },
}

/// Parses one client message, enforcing [`MAX_CLIENT_MESSAGE_BYTES`].
///
/// # Errors
/// [`DecodeError::TooLarge`], [`DecodeError::UnknownType`] for a well-formed
/// object with a `type` we do not know, [`DecodeError::Malformed`] otherwise.
pub fn decode_client_msg(text: &str) -> Result<ClientMsg, DecodeError> {
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge { len: text.len(), max: MAX_CLIENT_MESSAGE_BYTES });
    }
    match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => Ok(msg),
        Err(err) => Err(classify(text, err)),
    }
}

/// Parses one server message (used by native clients).
///
/// # Errors
/// [`DecodeError::UnknownType`] or [`DecodeError::Malformed`].
pub fn decode_server_msg(text: &str) -> Result<ServerMsg, DecodeError> {
    serde_json::from_str::<ServerMsg>(text).map_err(|err| classify(text, err))
}

fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "type")]
        kind: String,
    }
    const KNOWN: &[&str] = &[
        "join",
        "offer",
        "answer",
        "set_muted",
        "layer_preference",
        "ping",
        "leave",
        "mls",
        "group_member",
        "joined",
        "participant_joined",
        "participant_updated",
        "participant_left",
        "layer",
        "pong",
        "error",
        "create_group",
        "commit_accepted",
        "commit_rejected",
        "active_speaker",
        "quality",
        "layers_paused",
        "connection_quality",
    ];
    match serde_json::from_str::<Tagged>(text) {
        Ok(t) if !KNOWN.contains(&t.kind.as_str()) => {
            DecodeError::UnknownType { kind: t.kind.chars().take(64).collect() }
        }
        _ => DecodeError::Malformed { detail: describe(&err) },
    }
}

/// A parser error as text that never quotes the input: serde's own text
/// does ("unknown variant `…`", "invalid type: string \"…\""), and
/// [`ServerMsg::Error`] promises to carry no user data.
fn describe(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "JSON cut short",
        Category::Data => "a field is missing, unknown or of the wrong type",
        Category::Io => "unreadable",
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

/// Encodes a message as one JSON text frame.
pub fn encode<T: Serialize>(msg: &T) -> String {
    // Serialising these plain data types cannot fail.
    serde_json::to_string(msg).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests;
