//! The envelope: how Plenary's end-to-end messages travel through the server.
//!
//! Every message a participant hands to the server for other participants is
//! one envelope. The server reads only what it needs to act as the MLS
//! Delivery Service (RFC 9420 §16.6 calls it the DS): the kind, the epoch of a
//! commit (to accept the first commit per epoch and reject the rest), and the
//! KeyPackageRefs a Welcome is for (to route it). Everything else is MLS
//! ciphertext or public MLS structures that carry no names.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! version: u8 = 1
//! kind:    u8
//! kind 1 JoinRequest: ref_len: u8, key_package_ref, proof: [u8; 32], key_package: MLSMessage (rest)
//! kind 2 Commit:      epoch: u64, commit: MLSMessage with a PrivateMessage (rest)
//! kind 3 Welcome:     count: u16, count × (ref_len: u8, key_package_ref), welcome: MLSMessage (rest)
//! kind 4 Application: MLSMessage with a PrivateMessage (rest)
//! ```
//!
//! `epoch` of a Commit is the epoch the commit was made in (the one it
//! leaves). An envelope is at most [`MAX_ENVELOPE_LEN`] bytes.
//!
//! What the server does with them:
//!
//! - JoinRequest: keeps it (it is the joiner's KeyPackage) and hands it to
//!   the members; remembers `key_package_ref` → joiner connection.
//! - Commit: accepts the first commit whose `epoch` equals the room's current
//!   epoch, bumps the room's epoch, fans it out to every other member (and
//!   acknowledges the sender); rejects any other with "stale epoch".
//! - Welcome: sends it to the joiners whose KeyPackageRefs it lists, before
//!   any commit of a later epoch, so a joiner never sees a commit for an epoch
//!   it has not joined yet.
//! - Application: fans it out to the other members.
//!
//! Each client must receive envelopes in the order the server accepted them.

/// Envelope format version.
pub const VERSION: u8 = 1;

/// Largest envelope accepted, in bytes (a Welcome for thousands of members
/// with the ratchet tree inside fits).
pub const MAX_ENVELOPE_LEN: usize = 16 * 1024 * 1024;

/// Longest KeyPackageRef accepted, in bytes (32 for ciphersuite 0x0001).
pub const MAX_REF_LEN: usize = 64;

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than the layout needs.
    #[error("envelope truncated")]
    Truncated,
    /// Larger than [`MAX_ENVELOPE_LEN`].
    #[error("envelope of {0} bytes is too large")]
    TooLarge(usize),
    /// A version this build does not speak.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// An unknown kind byte.
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    /// A KeyPackageRef longer than [`MAX_REF_LEN`] or empty.
    #[error("bad KeyPackageRef length {0}")]
    BadRefLength(usize),
    /// The MLS message part is empty.
    #[error("envelope carries no MLS message")]
    Empty,
}

/// A decoded envelope, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Envelope<'a> {
    /// A joiner asks to be added: its KeyPackage and join proof.
    JoinRequest {
        /// KeyPackageRef (RFC 9420 §5.2) as claimed by the joiner; members
        /// recompute it from the KeyPackage and refuse a mismatch.
        key_package_ref: &'a [u8],
        /// Join proof, see [`crate::secret`].
        proof: &'a [u8; 32],
        /// TLS-encoded `MLSMessage` carrying a KeyPackage.
        key_package: &'a [u8],
    },
    /// A commit that moves the group from `epoch` to `epoch + 1`.
    Commit {
        /// Epoch the commit was made in.
        epoch: u64,
        /// TLS-encoded `MLSMessage` carrying a PrivateMessage.
        message: &'a [u8],
    },
    /// A Welcome for the joiners whose KeyPackageRefs are listed.
    Welcome {
        /// KeyPackageRefs of the joiners it is for.
        key_package_refs: Vec<&'a [u8]>,
        /// TLS-encoded `MLSMessage` carrying a Welcome.
        message: &'a [u8],
    },
    /// An application message (chat, profile, hand raise).
    Application {
        /// TLS-encoded `MLSMessage` carrying a PrivateMessage.
        message: &'a [u8],
    },
}

/// Kind byte of a JoinRequest.
pub const KIND_JOIN_REQUEST: u8 = 1;
/// Kind byte of a Commit.
pub const KIND_COMMIT: u8 = 2;
/// Kind byte of a Welcome.
pub const KIND_WELCOME: u8 = 3;
/// Kind byte of an Application message.
pub const KIND_APPLICATION: u8 = 4;

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.take(1)?[0])
    }
    fn key_package_ref(&mut self) -> Result<&'a [u8], EnvelopeError> {
        let len = usize::from(self.u8()?);
        if len == 0 || len > MAX_REF_LEN {
            return Err(EnvelopeError::BadRefLength(len));
        }
        self.take(len)
    }
    fn message(self) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.is_empty() {
            return Err(EnvelopeError::Empty);
        }
        Ok(self.rest)
    }
}

impl<'a> Envelope<'a> {
    /// Decodes an envelope without copying.
    ///
    /// # Errors
    /// An [`EnvelopeError`] saying what is wrong; never panics on any input.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        let mut r = Reader { rest: bytes };
        let version = r.u8()?;
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        match r.u8()? {
            KIND_JOIN_REQUEST => {
                let key_package_ref = r.key_package_ref()?;
                let proof: &[u8; 32] = r.take(32)?.try_into().map_err(|_| EnvelopeError::Truncated)?;
                Ok(Envelope::JoinRequest { key_package_ref, proof, key_package: r.message()? })
            }
            KIND_COMMIT => {
                let epoch_bytes: [u8; 8] = r.take(8)?.try_into().map_err(|_| EnvelopeError::Truncated)?;
                Ok(Envelope::Commit { epoch: u64::from_be_bytes(epoch_bytes), message: r.message()? })
            }
            KIND_WELCOME => {
                let count_bytes: [u8; 2] = r.take(2)?.try_into().map_err(|_| EnvelopeError::Truncated)?;
                let count = usize::from(u16::from_be_bytes(count_bytes));
                // Each ref takes at least 2 bytes; refuse counts the input cannot hold.
                if count * 2 > r.rest.len() {
                    return Err(EnvelopeError::Truncated);
                }
                let mut key_package_refs = Vec::with_capacity(count);
                for _ in 0..count {
                    key_package_refs.push(r.key_package_ref()?);
                }
                Ok(Envelope::Welcome { key_package_refs, message: r.message()? })
            }
            KIND_APPLICATION => Ok(Envelope::Application { message: r.message()? }),
            other => Err(EnvelopeError::UnknownKind(other)),
        }
    }

    /// Encodes the envelope.
    ///
    /// # Errors
    /// [`EnvelopeError::BadRefLength`] for an empty or too long
    /// KeyPackageRef, [`EnvelopeError::Empty`] for an empty message,
    /// [`EnvelopeError::TooLarge`] if the result would exceed
    /// [`MAX_ENVELOPE_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        fn put_ref(out: &mut Vec<u8>, r: &[u8]) -> Result<(), EnvelopeError> {
            if r.is_empty() || r.len() > MAX_REF_LEN {
                return Err(EnvelopeError::BadRefLength(r.len()));
            }
            out.push(r.len() as u8);
            out.extend_from_slice(r);
            Ok(())
        }
        let mut out = vec![VERSION];
        let message = match self {
            Envelope::JoinRequest { key_package_ref, proof, key_package } => {
                out.push(KIND_JOIN_REQUEST);
                put_ref(&mut out, key_package_ref)?;
                out.extend_from_slice(&proof[..]);
                key_package
            }
            Envelope::Commit { epoch, message } => {
                out.push(KIND_COMMIT);
                out.extend_from_slice(&epoch.to_be_bytes());
                message
            }
            Envelope::Welcome { key_package_refs, message } => {
                out.push(KIND_WELCOME);
                let count = u16::try_from(key_package_refs.len()).map_err(|_| EnvelopeError::TooLarge(0))?;
                out.extend_from_slice(&count.to_be_bytes());
                for r in key_package_refs {
                    put_ref(&mut out, r)?;
                }
                message
            }
            Envelope::Application { message } => {
                out.push(KIND_APPLICATION);
                message
            }
        };
        if message.is_empty() {
            return Err(EnvelopeError::Empty);
        }
        out.extend_from_slice(message);
        if out.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// The kind byte of this envelope.
    pub fn kind(&self) -> u8 {
        match self {
            Envelope::JoinRequest { .. } => KIND_JOIN_REQUEST,
            Envelope::Commit { .. } => KIND_COMMIT,
            Envelope::Welcome { .. } => KIND_WELCOME,
            Envelope::Application { .. } => KIND_APPLICATION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let proof = [9u8; 32];
        let all = [
            Envelope::JoinRequest { key_package_ref: b"ref", proof: &proof, key_package: b"k" },
            Envelope::Commit { epoch: 7, message: b"c" },
            Envelope::Welcome { key_package_refs: vec![b"r1", b"r22"], message: b"w" },
            Envelope::Application { message: b"a" },
        ];
        for e in all {
            let bytes = e.encode().unwrap();
            assert_eq!(Envelope::decode(&bytes).unwrap(), e);
            // Every strict prefix (messages here are 1 byte) is refused.
            for n in 0..bytes.len() {
                assert!(Envelope::decode(&bytes[..n]).is_err());
            }
        }
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(Envelope::decode(&[]), Err(EnvelopeError::Truncated));
        assert_eq!(Envelope::decode(&[2, 1]), Err(EnvelopeError::UnsupportedVersion(2)));
        assert_eq!(Envelope::decode(&[1, 99, 0]), Err(EnvelopeError::UnknownKind(99)));
        assert_eq!(Envelope::decode(&[1, 3, 0xff, 0xff, 1]), Err(EnvelopeError::Truncated));
    }
}
