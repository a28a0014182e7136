//! Plenary's end-to-end encryption core: MLS group keys (RFC 9420), SFrame
//! media encryption (RFC 9605), join proofs and security codes.
//!
//! No IO, no async, no clock: operations return bytes for the caller to send
//! and take the current time as an argument where it matters. Builds for
//! `wasm32-unknown-unknown` too (see the `plenary-wasm` crate).
//!
//! - [`group::Participant`]: one person in one meeting; creates or joins the
//!   MLS group, commits batched adds and removes, processes what the server
//!   relays, encrypts chat, profiles and hand raises.
//! - [`membership::Membership`]: the sans-IO state machine around a
//!   participant that both the native client and the browser run: server
//!   messages and time in, actions out (send, install keys, rejoin).
//! - [`media::MediaCrypto`]: SFrame encryption of encoded frames with per-sender
//!   keys from the MLS exporter (RFC 9605 §5.2).
//! - [`secret`]: the meeting secret from the link and join proofs.
//! - [`code`]: the security code participants compare aloud.
//! - [`envelope`]: the binary envelope the server relays.
//!
//! ```
//! use std::time::Duration;
//! use plenary_e2ee::{group::{Participant, Event}, media::{Codec, MediaCrypto}, secret::MeetingSecret};
//!
//! let secret = MeetingSecret::from_base64url("AAECAwQFBgcICQoLDA0ODw").unwrap();
//! let mut alice = Participant::new("room-1", secret.clone()).unwrap();
//! alice.create().unwrap();
//! let mut bob = Participant::new("room-1", secret).unwrap();
//!
//! // Bob asks to join; Alice, the committer, adds him in one commit.
//! let request = bob.join_request().unwrap();
//! let out = alice.commit(&[&request], &[]).unwrap();
//! alice.commit_accepted().unwrap(); // the server took the commit
//! assert!(matches!(bob.process(&out.welcome.unwrap()).unwrap(), Event::Joined { .. }));
//! assert_eq!(alice.security_code().unwrap(), bob.security_code().unwrap());
//!
//! // Media: Alice encrypts a frame, Bob decrypts it.
//! let (mut tx, mut rx) = (MediaCrypto::default(), MediaCrypto::default());
//! tx.set_epoch_keys(alice.epoch_keys().unwrap(), Duration::ZERO);
//! rx.set_epoch_keys(bob.epoch_keys().unwrap(), Duration::ZERO);
//! let sealed = tx.encrypt(0, Codec::Opus, b"opus frame").unwrap();
//! let opened = rx.decrypt(Codec::Opus, &sealed, Duration::ZERO).unwrap();
//! assert_eq!((opened.sender_leaf, opened.frame.as_slice()), (0, &b"opus frame"[..]));
//! ```

pub mod app;
pub mod code;
pub mod envelope;
pub mod group;
pub mod identity;
pub mod media;
pub mod membership;
pub mod secret;

/// Any error of this crate, wrapping the error of the module it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`group::GroupError`].
    #[error(transparent)]
    Group(#[from] group::GroupError),
    /// See [`media::MediaError`].
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// See [`secret::SecretError`].
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    /// See [`envelope::EnvelopeError`].
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    /// See [`app::AppError`].
    #[error(transparent)]
    App(#[from] app::AppError),
    /// See [`code::CodeError`].
    #[error(transparent)]
    Code(#[from] code::CodeError),
    /// See [`identity::IdentityError`].
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}
