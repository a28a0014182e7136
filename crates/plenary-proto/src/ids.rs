//! Identifiers: rooms and participants.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A participant id, assigned by the server, unique for its lifetime.
/// Serialised as a JSON number (below 2^53, so JavaScript reads it exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Only `A-Z a-z 0-9 - _` (the base64url alphabet, RFC 4648 §5).
fn url_safe(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A validated room id: 1 to 64 characters from `A-Z a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

/// Why a string is not a room id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomIdError {
    /// Empty string.
    #[error("room id is empty")]
    Empty,
    /// Longer than 64 characters.
    #[error("room id is longer than 64 characters")]
    TooLong,
    /// A character outside `A-Z a-z 0-9 - _`.
    #[error("room id may contain only letters, digits, '-' and '_'")]
    BadCharacter,
}

impl RoomId {
    /// Largest room id, in characters.
    pub const MAX_LEN: usize = 64;

    /// Validates `s` as a room id.
    ///
    /// # Errors
    /// [`RoomIdError`] when empty, too long, or with other characters.
    pub fn parse(s: &str) -> Result<RoomId, RoomIdError> {
        if s.is_empty() {
            return Err(RoomIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(RoomIdError::TooLong);
        }
        if !url_safe(s) {
            return Err(RoomIdError::BadCharacter);
        }
        Ok(RoomId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room tag: the 16-byte per-meeting id a client derives from the meeting
/// secret (`plenary_e2ee::secret::MeetingSecret::room_tag`), as unpadded
/// base64url (RFC 4648 §5), exactly 22 characters. The server keeps
/// meetings with the same room name but different tags apart; it never
/// logs a tag, so `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomTag(String);

/// Why a string is not a room tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomTagError {
    /// Not 22 characters of `A-Z a-z 0-9 - _`.
    #[error("room tag is not 22 base64url characters")]
    Malformed,
}

impl RoomTag {
    /// Length of a room tag, in characters.
    pub const LEN: usize = 22;

    /// Validates `s` as a room tag.
    ///
    /// # Errors
    /// [`RoomTagError::Malformed`].
    pub fn parse(s: &str) -> Result<RoomTag, RoomTagError> {
        if s.len() != Self::LEN || !url_safe(s) {
            return Err(RoomTagError::Malformed);
        }
        Ok(RoomTag(s.to_owned()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RoomTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomTag(..)")
    }
}
