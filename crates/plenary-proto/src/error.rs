//! Errors of the signaling protocol.

use serde::{Deserialize, Serialize};

/// Why a client message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message exceeds the size limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size received, bytes.
        len: usize,
        /// Limit, bytes.
        max: usize,
    },
    /// The message is a JSON object with a `type` this server does not know.
    /// The text (sent back to the peer) does not quote the `type`.
    #[error("unknown message type")]
    UnknownType {
        /// The `type` field, cut to 64 characters (for the receiver's own
        /// diagnostics; not part of the error text).
        kind: String,
    },
    /// Not JSON, or fields missing or of the wrong type.
    #[error("malformed message: {detail}")]
    Malformed {
        /// What is wrong and where (line, column), never quoting the input.
        detail: String,
    },
}

impl DecodeError {
    /// The error code reported to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::UnknownType { .. } => ErrorCode::UnknownType,
            DecodeError::Malformed { .. } => ErrorCode::Malformed,
        }
    }
}

/// Machine-readable error codes in [`crate::ServerMsg::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Message larger than allowed.
    TooLarge,
    /// Unknown message type.
    UnknownType,
    /// Not a valid message.
    Malformed,
    /// Room id not allowed.
    BadRoomId,
    /// Profile larger than allowed.
    BadProfile,
    /// Protocol version not supported.
    UnsupportedVersion,
    /// A message that needs `join` first.
    NotJoined,
    /// A second `join` on one connection.
    AlreadyJoined,
    /// An SDP that could not be applied.
    BadSdp,
    /// An answer without an outstanding server offer, or an offer out of turn.
    OutOfTurn,
    /// A MID that is not one of the client's receiving transceivers.
    UnknownMid,
    /// Too many messages in a short time.
    RateLimited,
    /// The room is full.
    RoomFull,
    /// An envelope that is not valid base64url or not a valid envelope.
    BadEnvelope,
    /// A commit for an epoch that is not the group's current one.
    StaleEpoch,
    /// An MLS message from someone who is not (or not yet) a group member,
    /// or a Welcome for nobody waiting.
    NotGroupMember,
    /// The meeting link's secret part is missing or damaged: `join` without
    /// a valid `room_tag`. Fatal.
    IncompleteLink,
    /// The server is shutting down or failed internally.
    Internal,
}
