//! Security codes: what participants compare aloud.
//!
//! The code is derived from the MLS `epoch_authenticator` (RFC 9420 §8.7), a
//! secret of the current epoch that only members hold. Two members who see the
//! same code share the same epoch, hence the same group: the same member list
//! and the same keys. If the server had added a member that someone did not
//! see, or had split the meeting into two groups to sit in the middle, the
//! codes would differ. The code changes with every epoch (every join, leave
//! and key update), so compare it after the roster settles.
//!
//! Rendering: the first 30 bytes of the authenticator, taken 5 bytes (40 bits,
//! big-endian) at a time, each reduced modulo 100 000 and printed as 5 digits:
//! 6 groups of 5 digits, about 99 bits.

/// Number of digit groups in a [`SecurityCode`].
pub const GROUPS: usize = 6;
/// Digits per group.
pub const DIGITS_PER_GROUP: usize = 5;

/// Why a security code could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The authenticator is shorter than the 30 bytes the code needs.
    #[error("epoch authenticator has {0} bytes, need at least 30")]
    TooShort(usize),
}

/// A security code: 6 groups of 5 decimal digits, e.g.
/// `"01234 56789 01234 56789 01234 56789"` as [`std::fmt::Display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityCode {
    groups: [u32; GROUPS],
}

impl SecurityCode {
    /// Derives the code from an `epoch_authenticator` (32 bytes for
    /// ciphersuite 0x0001).
    ///
    /// # Errors
    /// [`CodeError::TooShort`] if fewer than 30 bytes are given.
    pub fn from_epoch_authenticator(authenticator: &[u8]) -> Result<Self, CodeError> {
        if authenticator.len() < GROUPS * 5 {
            return Err(CodeError::TooShort(authenticator.len()));
        }
        let mut groups = [0u32; GROUPS];
        for (group, chunk) in groups.iter_mut().zip(authenticator.chunks_exact(5)) {
            let value = chunk.iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            // < 100_000, fits a u32.
            *group = (value % 100_000) as u32;
        }
        Ok(Self { groups })
    }

    /// The six groups, each in `0..100_000`.
    pub fn groups(&self) -> [u32; GROUPS] {
        self.groups
    }
}

impl std::fmt::Display for SecurityCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_six_groups_of_five_digits() {
        let code = SecurityCode::from_epoch_authenticator(&[0u8; 32]).unwrap();
        assert_eq!(code.to_string(), "00000 00000 00000 00000 00000 00000");
        let mut auth = [0u8; 32];
        auth[4] = 0x01; // first group value 1
        auth[5..10].copy_from_slice(&[0xff; 5]); // 2^40-1 mod 1e5 = 27775
        let code = SecurityCode::from_epoch_authenticator(&auth).unwrap();
        assert_eq!(code.to_string(), "00001 27775 00000 00000 00000 00000");
        assert_eq!(SecurityCode::from_epoch_authenticator(&[0u8; 29]), Err(CodeError::TooShort(29)));
    }
}
