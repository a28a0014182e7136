//! Meeting secret and join proofs.
//!
//! The meeting secret is the capability of a meeting: whoever holds the link
//! `/m/<room>#<secret>` may join. It travels only in the URL fragment, which
//! browsers never send to the server.
//!
//! A joiner proves that it knows the secret without revealing it:
//!
//! ```text
//! join_key   = HKDF-SHA256(salt = "", IKM = secret, info = "plenary join", L = 32)   (RFC 5869)
//! join_proof = HMAC-SHA256(join_key, room_id || KeyPackageRef)                      (RFC 2104)
//! ```
//!
//! where `room_id` is the UTF-8 room id and `KeyPackageRef` the joiner's
//! KeyPackage reference (RFC 9420 §5.2). Binding the proof to the
//! KeyPackageRef means a proof seen on the wire cannot be reused for another
//! KeyPackage; binding it to the room means it cannot be replayed elsewhere.
//! Members verify the proof before they add anyone. The server, which lacks
//! the secret, cannot make one.
//!
//! Every joiner also tells the server a room tag, so that links to the same
//! room name with different secrets are different meetings (a wrong secret
//! lands in an empty meeting and cannot disturb the right one):
//!
//! ```text
//! room_tag = base64url(HKDF-SHA256(salt = "", IKM = secret, info = "plenary room tag" || room_id, L = 16))
//! ```
//!
//! The server learns only this random-looking per-meeting id, not the
//! secret; the HKDF `info` differs from the join key's, so the tag reveals
//! nothing about join proofs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a freshly generated meeting secret, in bytes (128 bits).
pub const SECRET_LEN: usize = 16;

/// Shortest meeting secret accepted from a link, in bytes (128 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// Longest meeting secret accepted from a link, in bytes.
pub const MAX_SECRET_LEN: usize = 64;

/// Length of a join proof, in bytes (HMAC-SHA256 output).
pub const JOIN_PROOF_LEN: usize = 32;

/// Length of a room tag, in bytes before base64url (128 bits).
pub const ROOM_TAG_LEN: usize = 16;

const JOIN_INFO: &[u8] = b"plenary join";
const ROOM_TAG_INFO: &[u8] = b"plenary room tag";

/// Why a meeting secret or a join proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The text is not unpadded base64url (RFC 4648 §5).
    #[error("meeting secret is not base64url")]
    NotBase64Url,
    /// The secret is shorter than [`MIN_SECRET_LEN`] or longer than
    /// [`MAX_SECRET_LEN`] bytes.
    #[error("meeting secret has {0} bytes, expected {MIN_SECRET_LEN}..={MAX_SECRET_LEN}")]
    BadLength(usize),
    /// The join proof does not match: the joiner does not know the secret,
    /// or the proof was made for another room or KeyPackage.
    #[error("join proof does not verify")]
    BadJoinProof,
    /// The random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

/// The meeting secret from the URL fragment.
///
/// `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MeetingSecret {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MeetingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeetingSecret(..)")
    }
}

impl MeetingSecret {
    /// Makes a new secret of [`SECRET_LEN`] random bytes drawn from the
    /// provider's RNG (`rand`).
    ///
    /// # Errors
    /// [`SecretError::Rng`] if the RNG fails.
    pub fn generate(rand: &impl openmls::prelude::OpenMlsRand) -> Result<Self, SecretError> {
        let bytes: [u8; SECRET_LEN] = rand.random_array().map_err(|_| SecretError::Rng)?;
        Ok(Self { bytes: bytes.to_vec() })
    }

    /// Makes a new secret of [`SECRET_LEN`] random bytes from a fresh
    /// `OpenMlsRustCrypto` provider's RNG.
    ///
    /// # Errors
    /// [`SecretError::Rng`] if the RNG fails.
    pub fn random() -> Result<Self, SecretError> {
        Self::generate(openmls::prelude::OpenMlsProvider::rand(&openmls_rust_crypto::OpenMlsRustCrypto::default()))
    }

    /// Wraps raw secret bytes, [`MIN_SECRET_LEN`]..=[`MAX_SECRET_LEN`] long.
    ///
    /// # Errors
    /// [`SecretError::BadLength`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(SecretError::BadLength(bytes.len()));
        }
        Ok(Self { bytes: bytes.to_vec() })
    }

    /// Parses the URL fragment form: unpadded base64url (RFC 4648 §5). A
    /// leading `#` is ignored.
    ///
    /// # Errors
    /// [`SecretError::NotBase64Url`], [`SecretError::BadLength`].
    pub fn from_base64url(text: &str) -> Result<Self, SecretError> {
        let text = text.strip_prefix('#').unwrap_or(text);
        let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| SecretError::NotBase64Url)?;
        Self::from_bytes(&bytes)
    }

    /// The URL fragment form: unpadded base64url, 22 characters for a
    /// generated secret.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    /// The room tag sent to the server with `join`: unpadded base64url
    /// (RFC 4648 §5, 22 characters) of
    /// `HKDF-SHA256(IKM = secret, info = "plenary room tag" || room, L = 16)`
    /// (RFC 5869). The server partitions meetings by (room, tag); it cannot
    /// recover the secret or any key from it.
    pub fn room_tag(&self, room: &str) -> String {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes);
        let mut tag = [0u8; ROOM_TAG_LEN];
        // 16 bytes is far below HKDF-SHA256's limit of 255 * 32.
        let _ = hk.expand_multi_info(&[ROOM_TAG_INFO, room.as_bytes()], &mut tag);
        URL_SAFE_NO_PAD.encode(tag)
    }

    fn join_mac(&self, room: &str, key_package_ref: &[u8]) -> Hmac<Sha256> {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes);
        let mut join_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        let _ = hk.expand(JOIN_INFO, &mut join_key);
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&join_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(room.as_bytes());
        mac.update(key_package_ref);
        mac
    }

    /// `HMAC-SHA256(HKDF(secret, "plenary join"), room || key_package_ref)`,
    /// 32 bytes.
    pub fn join_proof(&self, room: &str, key_package_ref: &[u8]) -> [u8; JOIN_PROOF_LEN] {
        self.join_mac(room, key_package_ref).finalize().into_bytes().into()
    }

    /// Checks a join proof in constant time.
    ///
    /// # Errors
    /// [`SecretError::BadJoinProof`].
    pub fn verify_join_proof(&self, room: &str, key_package_ref: &[u8], proof: &[u8]) -> Result<(), SecretError> {
        self.join_mac(room, key_package_ref).verify_slice(proof).map_err(|_| SecretError::BadJoinProof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip_and_limits() {
        let s = MeetingSecret::from_bytes(&[7u8; 16]).unwrap();
        let text = s.to_base64url();
        assert_eq!(text.len(), 22);
        assert_eq!(MeetingSecret::from_base64url(&text).unwrap(), s);
        assert_eq!(MeetingSecret::from_base64url(&format!("#{text}")).unwrap(), s);
        assert_eq!(MeetingSecret::from_base64url("AAAA"), Err(SecretError::BadLength(3)));
        assert_eq!(MeetingSecret::from_base64url("not base64!"), Err(SecretError::NotBase64Url));
        assert_eq!(format!("{s:?}"), "MeetingSecret(..)");
    }

    #[test]
    fn room_tag_vector() {
        // Computed independently with Python's hmac/hashlib (RFC 5869 HKDF).
        let s = MeetingSecret::from_bytes(&(0u8..16).collect::<Vec<_>>()).unwrap();
        assert_eq!(s.room_tag("standup"), "aS4mntnm_rIOjgEerx05EQ");
        assert_eq!(s.room_tag("other"), "1Eb0ZU6SGeX_OWDexHdsOA");
        let other = MeetingSecret::from_bytes(&[1u8; 16]).unwrap();
        assert_ne!(other.room_tag("standup"), s.room_tag("standup"));
    }

    #[test]
    fn room_tag_is_independent_of_the_join_key() {
        let s = MeetingSecret::from_bytes(&[9u8; 16]).unwrap();
        let tag = URL_SAFE_NO_PAD.decode(s.room_tag("r")).unwrap();
        let hk = Hkdf::<Sha256>::new(None, &s.bytes);
        let mut join_key = [0u8; 32];
        hk.expand(JOIN_INFO, &mut join_key).unwrap();
        assert_eq!(tag.len(), ROOM_TAG_LEN);
        // Not a prefix or any window of the join key, nor of any join proof.
        assert!(!join_key.windows(ROOM_TAG_LEN).any(|w| w == tag.as_slice()));
        let proof = s.join_proof("r", b"");
        assert!(!proof.windows(ROOM_TAG_LEN).any(|w| w == tag.as_slice()));
        // Same room string used as the join proof's room: still distinct
        // info strings ("plenary room tag" || room vs "plenary join").
        let mut with_join_info = [0u8; ROOM_TAG_LEN];
        hk.expand_multi_info(&[JOIN_INFO, b"r"], &mut with_join_info).unwrap();
        assert_ne!(with_join_info.as_slice(), tag.as_slice());
    }

    #[test]
    fn proof_binds_room_and_key_package() {
        let s = MeetingSecret::from_bytes(&[1u8; 16]).unwrap();
        let other = MeetingSecret::from_bytes(&[2u8; 16]).unwrap();
        let p = s.join_proof("room-a", b"ref-1");
        assert!(s.verify_join_proof("room-a", b"ref-1", &p).is_ok());
        assert_eq!(s.verify_join_proof("room-b", b"ref-1", &p), Err(SecretError::BadJoinProof));
        assert_eq!(s.verify_join_proof("room-a", b"ref-2", &p), Err(SecretError::BadJoinProof));
        assert_eq!(other.verify_join_proof("room-a", b"ref-1", &p), Err(SecretError::BadJoinProof));
        assert_eq!(s.verify_join_proof("room-a", b"ref-1", &p[..31]), Err(SecretError::BadJoinProof));
    }
}
