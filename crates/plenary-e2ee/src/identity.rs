//! Identity: a signature key pair and a pseudonymous MLS credential.
//!
//! A participant's MLS credential (RFC 9420 §5.3, a `BasicCredential`) holds
//! only [`CREDENTIAL_ID_LEN`] random bytes: no name, no account, nothing that
//! links two meetings. Display names travel later as encrypted application
//! messages (see [`crate::app`]). All randomness comes from the provider
//! (`OpenMlsRustCrypto`), which draws it from the platform's CSPRNG.

use openmls::prelude::{BasicCredential, Ciphersuite, CredentialWithKey, OpenMlsCrypto, OpenMlsProvider, OpenMlsRand};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

/// The MLS ciphersuite: 0x0001, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
/// (RFC 9420 §17.1).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Length of the random pseudonymous credential id, in bytes.
pub const CREDENTIAL_ID_LEN: usize = 16;

/// A pseudonymous credential id: random bytes, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(pub [u8; CREDENTIAL_ID_LEN]);

impl std::fmt::Display for CredentialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl CredentialId {
    /// Reads the id from a member's MLS credential; `None` if it is not a
    /// `BasicCredential` of exactly [`CREDENTIAL_ID_LEN`] bytes.
    pub fn from_credential(credential: &openmls::prelude::Credential) -> Option<Self> {
        let basic = BasicCredential::try_from(credential.clone()).ok()?;
        let bytes: [u8; CREDENTIAL_ID_LEN] = basic.identity().try_into().ok()?;
        Some(Self(bytes))
    }
}

/// Why an identity could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The provider's RNG failed.
    #[error("random number generator failed")]
    Rng,
    /// Key generation or storing the key failed.
    #[error("signature key generation failed")]
    KeyGeneration,
}

/// A participant's crypto provider, signature key pair and credential.
pub struct Identity {
    pub(crate) provider: OpenMlsRustCrypto,
    pub(crate) signer: SignatureKeyPair,
    pub(crate) credential: CredentialWithKey,
    pub(crate) id: CredentialId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Identity {
    /// Makes a fresh Ed25519 key pair and a random credential id.
    ///
    /// # Errors
    /// [`IdentityError`].
    pub fn generate() -> Result<Self, IdentityError> {
        let provider = OpenMlsRustCrypto::default();
        let id: [u8; CREDENTIAL_ID_LEN] = provider.rand().random_array().map_err(|_| IdentityError::Rng)?;
        let scheme = CIPHERSUITE.signature_algorithm();
        let (private, public) =
            provider.crypto().signature_key_gen(scheme).map_err(|_| IdentityError::KeyGeneration)?;
        let signer = SignatureKeyPair::from_raw(scheme, private, public);
        signer.store(provider.storage()).map_err(|_| IdentityError::KeyGeneration)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Ok(Self { provider, signer, credential, id: CredentialId(id) })
    }

    /// The pseudonymous credential id.
    pub fn credential_id(&self) -> CredentialId {
        self.id
    }

    /// The provider's RNG, for [`crate::secret::MeetingSecret::generate`].
    pub fn rand(&self) -> &impl OpenMlsRand {
        self.provider.rand()
    }
}
