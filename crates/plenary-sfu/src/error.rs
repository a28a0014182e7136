//! Errors of the SFU core.

use plenary_proto::{ErrorCode, RoomIdError};

/// Why the SFU refused an input. None of these affects other participants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The room id is not valid.
    #[error("bad room id: {0}")]
    BadRoomId(#[from] RoomIdError),
    /// The profile exceeds [`plenary_proto::MAX_PROFILE_BYTES`].
    #[error("profile of {0} bytes is too large")]
    ProfileTooLarge(usize),
    /// The client speaks another protocol version.
    #[error("protocol version {0} is not supported")]
    UnsupportedVersion(u32),
    /// The room already holds the configured maximum of participants.
    #[error("room is full")]
    RoomFull,
    /// No such participant (already left).
    #[error("unknown participant")]
    UnknownParticipant,
    /// A second `join` on one connection.
    #[error("already joined")]
    AlreadyJoined,
    /// An SDP offer or answer that does not parse or cannot be applied.
    #[error("SDP rejected: {0}")]
    BadSdp(String),
    /// An answer without an outstanding offer, or an offer while one is pending.
    #[error("{0}")]
    OutOfTurn(&'static str),
    /// A MID that is not one of the participant's receiving transceivers.
    #[error("unknown mid {0:?}")]
    UnknownMid(String),
    /// A datagram that is not STUN, DTLS, RTP or RTCP.
    #[error("unrecognised datagram of {0} bytes")]
    UnrecognisedDatagram(usize),
    /// A datagram no participant's ICE session accepts.
    #[error("datagram from an unknown peer")]
    UnknownPeer,
}

impl SfuError {
    /// The code reported to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            SfuError::BadRoomId(_) => ErrorCode::BadRoomId,
            SfuError::ProfileTooLarge(_) => ErrorCode::BadProfile,
            SfuError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            SfuError::RoomFull => ErrorCode::RoomFull,
            SfuError::UnknownParticipant => ErrorCode::NotJoined,
            SfuError::AlreadyJoined => ErrorCode::AlreadyJoined,
            SfuError::BadSdp(_) => ErrorCode::BadSdp,
            SfuError::OutOfTurn(_) => ErrorCode::OutOfTurn,
            SfuError::UnknownMid(_) => ErrorCode::UnknownMid,
            SfuError::UnrecognisedDatagram(_) | SfuError::UnknownPeer => ErrorCode::Malformed,
        }
    }
}
