//! Application messages: what members tell each other inside the MLS group.
//!
//! These are the plaintexts of MLS application messages (RFC 9420 §6.3.1):
//! encrypted and authenticated to the group, never seen by the server.
//!
//! Layout: `kind: u8` followed by the body.
//!
//! ```text
//! kind 1 Chat:      UTF-8 text (rest), at most MAX_CHAT_LEN bytes
//! kind 2 Profile:   UTF-8 display name (rest), at most MAX_NAME_LEN bytes
//! kind 3 HandRaise: raised: u8 (0 or 1)
//! kind 4 Profile with a continuity token:
//!                   token: CONTINUITY_LEN bytes, then the UTF-8 display name
//!                   (rest), at most MAX_NAME_LEN bytes
//! ```
//!
//! The continuity token is random, made by a participant once per meeting
//! session and kept across its reconnections: after an outage, the others
//! take a returning participant for the one they knew only when its name
//! AND token are the same (someone else picking the same name is someone
//! else). Like the name, it travels only inside the group's encryption.

/// Longest chat message, in bytes of UTF-8.
pub const MAX_CHAT_LEN: usize = 16 * 1024;
/// Longest display name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 256;
/// Length of a continuity token, bytes (128 random bits).
pub const CONTINUITY_LEN: usize = 16;

/// A participant's continuity token: random, one per meeting session, kept
/// across reconnections (see the module docs). Not a secret from the other
/// members, never sent to the server in clear.
pub type ContinuityToken = [u8; CONTINUITY_LEN];

/// Why an application message's plaintext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// No bytes.
    #[error("empty application message")]
    Empty,
    /// Unknown kind byte.
    #[error("unknown application message kind {0}")]
    UnknownKind(u8),
    /// Text is not UTF-8.
    #[error("text is not UTF-8")]
    NotUtf8,
    /// Text longer than its limit.
    #[error("text of {0} bytes is too long")]
    TooLong(usize),
    /// Body has the wrong shape for its kind.
    #[error("malformed application message body")]
    Malformed,
}

/// One application message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppMessage {
    /// A chat line to everyone.
    Chat {
        /// Text, at most [`MAX_CHAT_LEN`] bytes.
        text: String,
    },
    /// The sender's profile; replaces any earlier one.
    Profile {
        /// Display name, at most [`MAX_NAME_LEN`] bytes.
        display_name: String,
        /// The sender's continuity token, if it has one (kind 4, else kind 2).
        continuity: Option<ContinuityToken>,
    },
    /// The sender raised or lowered their hand.
    HandRaise {
        /// `true` when raised.
        raised: bool,
    },
}

const KIND_CHAT: u8 = 1;
const KIND_PROFILE: u8 = 2;
const KIND_HAND: u8 = 3;
const KIND_PROFILE_TOKEN: u8 = 4;

fn text(body: &[u8], max: usize) -> Result<String, AppError> {
    if body.len() > max {
        return Err(AppError::TooLong(body.len()));
    }
    String::from_utf8(body.to_vec()).map_err(|_| AppError::NotUtf8)
}

impl AppMessage {
    /// Encodes the plaintext.
    ///
    /// # Errors
    /// [`AppError::TooLong`] when a text exceeds its limit.
    pub fn encode(&self) -> Result<Vec<u8>, AppError> {
        let (kind, body, max): (u8, &[u8], usize) = match self {
            AppMessage::Chat { text } => (KIND_CHAT, text.as_bytes(), MAX_CHAT_LEN),
            AppMessage::Profile { display_name, continuity: None } => {
                (KIND_PROFILE, display_name.as_bytes(), MAX_NAME_LEN)
            }
            AppMessage::Profile { display_name, continuity: Some(_) } => {
                (KIND_PROFILE_TOKEN, display_name.as_bytes(), MAX_NAME_LEN)
            }
            AppMessage::HandRaise { raised } => {
                return Ok(vec![KIND_HAND, u8::from(*raised)]);
            }
        };
        if body.len() > max {
            return Err(AppError::TooLong(body.len()));
        }
        let mut out = Vec::with_capacity(1 + CONTINUITY_LEN + body.len());
        out.push(kind);
        if let AppMessage::Profile { continuity: Some(token), .. } = self {
            out.extend_from_slice(token);
        }
        out.extend_from_slice(body);
        Ok(out)
    }

    /// Decodes a plaintext.
    ///
    /// # Errors
    /// An [`AppError`]; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, AppError> {
        let (&kind, body) = bytes.split_first().ok_or(AppError::Empty)?;
        match kind {
            KIND_CHAT => Ok(AppMessage::Chat { text: text(body, MAX_CHAT_LEN)? }),
            KIND_PROFILE => Ok(AppMessage::Profile { display_name: text(body, MAX_NAME_LEN)?, continuity: None }),
            KIND_PROFILE_TOKEN => {
                let (token, name) = body.split_first_chunk::<CONTINUITY_LEN>().ok_or(AppError::Malformed)?;
                Ok(AppMessage::Profile { display_name: text(name, MAX_NAME_LEN)?, continuity: Some(*token) })
            }
            KIND_HAND => match body {
                [0] => Ok(AppMessage::HandRaise { raised: false }),
                [1] => Ok(AppMessage::HandRaise { raised: true }),
                _ => Err(AppError::Malformed),
            },
            other => Err(AppError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for m in [
            AppMessage::Chat { text: "hé".into() },
            AppMessage::Profile { display_name: "Ada".into(), continuity: None },
            AppMessage::Profile { display_name: "Ada".into(), continuity: Some([7; CONTINUITY_LEN]) },
            AppMessage::Profile { display_name: String::new(), continuity: Some([0; CONTINUITY_LEN]) },
            AppMessage::HandRaise { raised: true },
            AppMessage::HandRaise { raised: false },
        ] {
            assert_eq!(AppMessage::decode(&m.encode().unwrap()).unwrap(), m);
        }
        assert_eq!(AppMessage::decode(&[]), Err(AppError::Empty));
        assert_eq!(AppMessage::decode(&[9]), Err(AppError::UnknownKind(9)));
        assert_eq!(AppMessage::decode(&[1, 0xff]), Err(AppError::NotUtf8));
        assert_eq!(AppMessage::decode(&[3, 2]), Err(AppError::Malformed));
        // A token-carrying profile shorter than its token.
        assert_eq!(AppMessage::decode(&[4; CONTINUITY_LEN]), Err(AppError::Malformed));
        // The token is opaque bytes; the name after it must still be UTF-8.
        let mut bad = vec![4];
        bad.extend_from_slice(&[0xff; CONTINUITY_LEN]);
        bad.push(0xff);
        assert_eq!(AppMessage::decode(&bad), Err(AppError::NotUtf8));
        for continuity in [None, Some([1; CONTINUITY_LEN])] {
            let long = AppMessage::Profile { display_name: "x".repeat(MAX_NAME_LEN + 1), continuity };
            assert_eq!(long.encode(), Err(AppError::TooLong(MAX_NAME_LEN + 1)));
        }
    }
}
