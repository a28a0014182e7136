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
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
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
