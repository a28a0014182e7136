//! The meeting's MLS group (RFC 9420): create, join, batched adds and removes,
//! self-updates, commits and Welcomes, application messages, roster.
//!
//! One [`Participant`] per person per meeting. It owns its identity, the
//! meeting secret from the link and, once it is a member, the MLS group. Every
//! operation returns bytes ([`crate::envelope`] envelopes) for the caller to
//! hand to the server, and every byte string from the server goes into
//! [`Participant::process`]. Nothing here does IO or reads a clock.
//!
//! # Rules every member follows
//!
//! - **Admission.** A joiner sends a JoinRequest: a KeyPackage with a
//!   pseudonymous credential and a join proof (see [`crate::secret`]). The
//!   committer verifies the proof, the KeyPackage signature and ciphersuite
//!   before adding anyone; a bad request is refused with a typed error and
//!   the others in the batch go ahead.
//! - **One committer.** Of the members the server reports online, the one
//!   with the lowest leaf index commits ([`Participant::committer`]). It
//!   gathers all pending joins and leaves into one commit, so a burst of
//!   joins costs one epoch and one Welcome.
//! - **Stale epoch.** The server accepts the first commit for each epoch and
//!   rejects the rest. A committer whose commit was rejected calls
//!   [`Participant::commit_rejected`], processes the winning commit and
//!   retries what is still pending. If the winner arrives first,
//!   [`Participant::process`] drops the losing pending commit itself and
//!   reports `lost_own_commit`.
//! - **Handshake privacy.** Commits and application messages are MLS
//!   PrivateMessages: the server sees group id, epoch and content type only.
//!
//! On every error, the group state is unchanged: the same epoch, roster,
//! keys and security code as before the call.

use std::collections::{BTreeMap, HashSet};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    GroupId, KeyPackage, KeyPackageIn, LeafNodeIndex, MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig,
    MlsMessageBodyIn, MlsMessageIn, MlsMessageOut, OpenMlsProvider, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY,
    ProcessedMessageContent, ProtocolMessage, ProtocolVersion, Sender, SenderRatchetConfiguration, StagedWelcome,
};

use crate::app::{AppError, AppMessage, ContinuityToken};
use crate::code::SecurityCode;
use crate::envelope::{Envelope, EnvelopeError};
use crate::identity::{CIPHERSUITE, CredentialId, Identity};
use crate::media::{EXPORTER_LABEL, EpochKeys, KEY_LEN};
use crate::secret::{MeetingSecret, SecretError};

/// Past epochs whose application messages still decrypt (chat in flight
/// while a commit lands).
pub const MAX_PAST_EPOCHS: usize = 1;

/// Why an operation on the group failed. The group state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The operation needs membership in the group.
    #[error("not a member of the group")]
    NotInGroup,
    /// A Welcome arrived after this participant had already joined (late
    /// or duplicate Welcome), or `create` was called twice.
    #[error("already a member of the group")]
    AlreadyInGroup,
    /// The bytes are not a valid envelope.
    #[error("bad envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The envelope's MLS message does not parse, or is of the wrong type for
    /// its envelope kind.
    #[error("malformed MLS message")]
    MalformedMls,
    /// The message belongs to another group.
    #[error("message for another group")]
    WrongGroup,
    /// A commit for an epoch the group has left (RFC 9420 §14: handshake
    /// messages of an old epoch are dropped).
    #[error("commit for past epoch {message} (group is at {group})")]
    StaleEpoch {
        /// Epoch of the message.
        message: u64,
        /// Epoch of the group.
        group: u64,
    },
    /// A message for an epoch the group has not reached: commits were missed.
    #[error("message for future epoch {message} (group is at {group})")]
    FutureEpoch {
        /// Epoch of the message.
        message: u64,
        /// Epoch of the group.
        group: u64,
    },
    /// The join proof is wrong or missing.
    #[error("join refused: {0}")]
    JoinProof(#[from] SecretError),
    /// The KeyPackage does not verify, uses another ciphersuite, or its
    /// credential is not a pseudonymous id.
    #[error("invalid KeyPackage")]
    BadKeyPackage,
    /// The KeyPackageRef in the JoinRequest is not the KeyPackage's.
    #[error("KeyPackageRef does not match the KeyPackage")]
    KeyPackageRefMismatch,
    /// The joiner's credential id is already in the group.
    #[error("joiner already in the group")]
    DuplicateMember,
    /// A Welcome for other joiners.
    #[error("Welcome is not for this participant")]
    NotForUs,
    /// MLS refused the message: bad signature, failed decryption, invalid
    /// proposal, own message echoed without a pending commit, and so on.
    #[error("MLS refused the message: {0}")]
    Refused(String),
    /// A commit is pending; resolve it with [`Participant::commit_accepted`]
    /// or [`Participant::commit_rejected`] first.
    #[error("a commit is pending")]
    CommitPending,
    /// There is no pending commit to resolve.
    #[error("no pending commit")]
    NoPendingCommit,
    /// Nothing to commit: no valid adds and no removes.
    #[error("nothing to commit")]
    NothingToCommit,
    /// A leaf index to remove is not a member (or is the committer itself).
    #[error("leaf {0} is not a member that can be removed")]
    UnknownMember(u32),
    /// The application message plaintext is invalid.
    #[error("bad application message: {0}")]
    App(#[from] AppError),
    /// An envelope kind that [`Participant::process`] does not take (a
    /// JoinRequest goes to [`Participant::commit`]).
    #[error("unexpected envelope kind {0}")]
    UnexpectedKind(u8),
    /// An internal failure of the MLS library or its storage.
    #[error("MLS library failure: {0}")]
    Library(String),
}

fn lib<E: std::fmt::Display>(e: E) -> GroupError {
    GroupError::Library(e.to_string())
}

/// What [`Participant::process`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// This participant joined through a Welcome.
    Joined {
        /// Epoch joined at.
        epoch: u64,
        /// Own leaf index.
        own_leaf: u32,
    },
    /// A commit moved the group to a new epoch. Install new media keys
    /// ([`Participant::epoch_keys`]); if `added` is not empty, send your
    /// profile again so newcomers learn it.
    EpochChanged {
        /// New epoch.
        epoch: u64,
        /// Leaf indices added.
        added: Vec<u32>,
        /// Leaf indices removed.
        removed: Vec<u32>,
        /// This participant's own pending commit lost the race for the epoch
        /// and was dropped; retry what it carried if still needed.
        lost_own_commit: bool,
    },
    /// This participant was removed; it can no longer read the meeting.
    Removed,
    /// A chat line.
    Chat {
        /// Sender's leaf index.
        sender: u32,
        /// Text.
        text: String,
    },
    /// A member set their profile.
    Profile {
        /// Sender's leaf index.
        sender: u32,
        /// Display name.
        display_name: String,
    },
    /// A member raised or lowered their hand.
    HandRaise {
        /// Sender's leaf index.
        sender: u32,
        /// Raised.
        raised: bool,
    },
    /// Own message echoed by the server; nothing to do.
    Echo,
}

/// One member as this participant sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// Leaf index.
    pub leaf: u32,
    /// Pseudonymous credential id.
    pub credential_id: CredentialId,
    /// Display name from the member's last Profile message, if any.
    pub display_name: Option<String>,
    /// Continuity token from the member's last Profile message, if it had
    /// one ([`ContinuityToken`]).
    pub continuity: Option<ContinuityToken>,
    /// Hand raised.
    pub hand_raised: bool,
    /// This participant.
    pub is_self: bool,
}

/// A commit made by [`Participant::commit`] or [`Participant::self_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutput {
    /// Commit envelope for the server (kind Commit).
    pub commit: Vec<u8>,
    /// Welcome envelope for the joiners, if any were added.
    pub welcome: Option<Vec<u8>>,
    /// Epoch the commit was made in.
    pub epoch: u64,
    /// Indices (into the `joins` argument) of the join requests added.
    pub added: Vec<usize>,
    /// Indices of the join requests refused, with why.
    pub rejected: Vec<(usize, GroupError)>,
}

#[derive(Debug, Clone, Default)]
struct Profile {
    display_name: Option<String>,
    continuity: Option<ContinuityToken>,
    hand_raised: bool,
}

/// One participant of one meeting.
pub struct Participant {
    identity: Identity,
    room: String,
    secret: MeetingSecret,
    group: Option<MlsGroup>,
    pending_refs: Vec<Vec<u8>>,
    profiles: BTreeMap<u32, Profile>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.identity.id)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn group_id(room: &str) -> GroupId {
    GroupId::from_slice(format!("plenary/{room}").as_bytes())
}

fn sender_ratchet() -> SenderRatchetConfiguration {
    // Tolerate reordering of up to 64 messages per sender, and up to 1000
    // messages skipped.
    SenderRatchetConfiguration::new(64, 1000)
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

fn serialize(msg: &MlsMessageOut) -> Result<Vec<u8>, GroupError> {
    msg.tls_serialize_detached().map_err(lib)
}

fn parse_mls(bytes: &[u8]) -> Result<MlsMessageIn, GroupError> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| GroupError::MalformedMls)
}

impl Participant {
    /// A participant of meeting `room` who holds `secret` from the link,
    /// with a fresh identity.
    ///
    /// # Errors
    /// [`GroupError::Library`] if the identity cannot be made.
    pub fn new(room: &str, secret: MeetingSecret) -> Result<Self, GroupError> {
        Ok(Self {
            identity: Identity::generate().map_err(lib)?,
            room: room.to_owned(),
            secret,
            group: None,
            pending_refs: Vec::new(),
            profiles: BTreeMap::new(),
        })
    }

    /// The pseudonymous credential id.
    pub fn credential_id(&self) -> CredentialId {
        self.identity.id
    }

    /// The room id.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Whether this participant is a member of the group.
    pub fn is_member(&self) -> bool {
        self.group.is_some()
    }

    /// The current epoch, if a member.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.epoch().as_u64())
    }

    /// Own leaf index, if a member.
    pub fn own_leaf(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.own_leaf_index().u32())
    }

    /// Whether a commit of this participant awaits the server's verdict.
    pub fn has_pending_commit(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.pending_commit().is_some())
    }

    fn group(&self) -> Result<&MlsGroup, GroupError> {
        self.group.as_ref().ok_or(GroupError::NotInGroup)
    }

    /// Creates the group as its first member, at epoch 0, leaf 0.
    ///
    /// # Errors
    /// [`GroupError::AlreadyInGroup`], [`GroupError::Library`].
    pub fn create(&mut self) -> Result<(), GroupError> {
        if self.group.is_some() {
            return Err(GroupError::AlreadyInGroup);
        }
        let id = &self.identity;
        let group = MlsGroup::new_with_group_id(
            &id.provider,
            &id.signer,
            &create_config(),
            group_id(&self.room),
            id.credential.clone(),
        )
        .map_err(lib)?;
        self.group = Some(group);
        Ok(())
    }

    /// Makes a JoinRequest envelope: a fresh KeyPackage and its join proof.
    /// Send it to the server, which hands it to the members; the Welcome
    /// comes back through [`Participant::process`].
    ///
    /// # Errors
    /// [`GroupError::AlreadyInGroup`], [`GroupError::Library`].
    pub fn join_request(&mut self) -> Result<Vec<u8>, GroupError> {
        if self.group.is_some() {
            return Err(GroupError::AlreadyInGroup);
        }
        let id = &self.identity;
        let bundle =
            KeyPackage::builder().build(CIPHERSUITE, &id.provider, &id.signer, id.credential.clone()).map_err(lib)?;
        let kp = bundle.key_package().clone();
        let kp_ref = kp.hash_ref(id.provider.crypto()).map_err(lib)?;
        let proof = self.secret.join_proof(&self.room, kp_ref.as_slice());
        let kp_bytes = serialize(&MlsMessageOut::from(kp))?;
        let envelope =
            Envelope::JoinRequest { key_package_ref: kp_ref.as_slice(), proof: &proof, key_package: &kp_bytes }
                .encode()?;
        self.pending_refs.push(kp_ref.as_slice().to_vec());
        Ok(envelope)
    }

    /// The committer among the `online` leaf indices: the lowest one that is
    /// a member. Every member computes the same answer from the same list.
    pub fn committer(&self, online: &[u32]) -> Option<u32> {
        let group = self.group.as_ref()?;
        online.iter().copied().filter(|leaf| group.member_at(LeafNodeIndex::new(*leaf)).is_some()).min()
    }

    /// Whether this participant is the committer for `online`.
    pub fn is_committer(&self, online: &[u32]) -> bool {
        self.own_leaf().is_some() && self.committer(online) == self.own_leaf()
    }

    /// Checks one JoinRequest envelope and returns its verified KeyPackage.
    ///
    /// # Errors
    /// [`GroupError::Envelope`], [`GroupError::UnexpectedKind`],
    /// [`GroupError::MalformedMls`], [`GroupError::BadKeyPackage`],
    /// [`GroupError::KeyPackageRefMismatch`], [`GroupError::JoinProof`],
    /// [`GroupError::DuplicateMember`].
    pub fn verify_join_request(&self, bytes: &[u8]) -> Result<CredentialId, GroupError> {
        let existing = self.member_ids()?;
        self.check_join(bytes, &existing).map(|(id, _)| id)
    }

    fn member_ids(&self) -> Result<HashSet<CredentialId>, GroupError> {
        Ok(self.group()?.members().filter_map(|m| CredentialId::from_credential(&m.credential)).collect())
    }

    fn check_join(
        &self,
        bytes: &[u8],
        existing: &HashSet<CredentialId>,
    ) -> Result<(CredentialId, KeyPackage), GroupError> {
        let Envelope::JoinRequest { key_package_ref, proof, key_package } = Envelope::decode(bytes)? else {
            return Err(GroupError::UnexpectedKind(bytes.get(1).copied().unwrap_or(0)));
        };
        let kp_in: KeyPackageIn = match parse_mls(key_package)?.extract() {
            MlsMessageBodyIn::KeyPackage(kp) => kp,
            _ => return Err(GroupError::MalformedMls),
        };
        let crypto = self.identity.provider.crypto();
        let kp = kp_in.validate(crypto, ProtocolVersion::Mls10).map_err(|_| GroupError::BadKeyPackage)?;
        if kp.ciphersuite() != CIPHERSUITE {
            return Err(GroupError::BadKeyPackage);
        }
        let real_ref = kp.hash_ref(crypto).map_err(lib)?;
        if real_ref.as_slice() != key_package_ref {
            return Err(GroupError::KeyPackageRefMismatch);
        }
        self.secret.verify_join_proof(&self.room, real_ref.as_slice(), proof)?;
        let cred_id = CredentialId::from_credential(kp.leaf_node().credential()).ok_or(GroupError::BadKeyPackage)?;
        if existing.contains(&cred_id) {
            return Err(GroupError::DuplicateMember);
        }
        Ok((cred_id, kp))
    }

    /// Makes one commit that adds every valid joiner in `joins` (JoinRequest
    /// envelopes) and removes the members at leaf indices `removes`, with a
    /// path update (fresh keys for the committer). Produces one Welcome for
    /// all joiners. Invalid join requests are listed in
    /// [`CommitOutput::rejected`] and left out.
    ///
    /// The commit stays pending until [`Participant::commit_accepted`] (the
    /// server took it) or [`Participant::commit_rejected`] (stale epoch).
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::CommitPending`],
    /// [`GroupError::UnknownMember`], [`GroupError::NothingToCommit`],
    /// [`GroupError::Library`].
    pub fn commit(&mut self, joins: &[&[u8]], removes: &[u32]) -> Result<CommitOutput, GroupError> {
        let group = self.group()?;
        if group.pending_commit().is_some() {
            return Err(GroupError::CommitPending);
        }
        let own = group.own_leaf_index().u32();
        for &leaf in removes {
            if leaf == own || group.member_at(LeafNodeIndex::new(leaf)).is_none() {
                return Err(GroupError::UnknownMember(leaf));
            }
        }
        let existing = self.member_ids()?;
        let mut key_packages = Vec::new();
        let mut seen = HashSet::new();
        let mut added = Vec::new();
        let mut rejected = Vec::new();
        for (i, join) in joins.iter().enumerate() {
            match self.check_join(join, &existing) {
                Ok((cred, _)) if seen.contains(&cred) => {
                    rejected.push((i, GroupError::DuplicateMember));
                }
                Ok((cred, kp)) => {
                    seen.insert(cred);
                    key_packages.push(kp);
                    added.push(i);
                }
                Err(e) => rejected.push((i, e)),
            }
        }
        if key_packages.is_empty() && removes.is_empty() {
            return Err(GroupError::NothingToCommit);
        }
        let id = &self.identity;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        let epoch = group.epoch().as_u64();
        let bundle = group
            .commit_builder()
            .propose_adds(key_packages)
            .propose_removals(removes.iter().map(|l| LeafNodeIndex::new(*l)))
            .force_self_update(true)
            .load_psks(id.provider.storage())
            .map_err(lib)?
            .build(id.provider.rand(), id.provider.crypto(), &id.signer, |_| true)
            .map_err(lib)?
            .stage_commit(&id.provider)
            .map_err(lib)?;
        self.finish_commit(bundle, epoch, added, rejected)
    }

    fn finish_commit(
        &mut self,
        bundle: openmls::prelude::CommitMessageBundle,
        epoch: u64,
        added: Vec<usize>,
        rejected: Vec<(usize, GroupError)>,
    ) -> Result<CommitOutput, GroupError> {
        let welcome = match bundle.welcome() {
            Some(w) => {
                let refs: Vec<Vec<u8>> = w.secrets().iter().map(|s| s.new_member().as_slice().to_vec()).collect();
                let msg = serialize(&MlsMessageOut::from_welcome(w.clone(), ProtocolVersion::Mls10))?;
                let refs: Vec<&[u8]> = refs.iter().map(Vec::as_slice).collect();
                Some(Envelope::Welcome { key_package_refs: refs, message: &msg }.encode()?)
            }
            None => None,
        };
        let commit_msg = serialize(bundle.commit())?;
        let commit = Envelope::Commit { epoch, message: &commit_msg }.encode()?;
        Ok(CommitOutput { commit, welcome, epoch, added, rejected })
    }

    /// Makes a commit that only refreshes this member's keys (post-compromise
    /// security, RFC 9420 §12.4). Pending like [`Participant::commit`].
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::CommitPending`],
    /// [`GroupError::Library`].
    pub fn self_update(&mut self) -> Result<CommitOutput, GroupError> {
        let id = &self.identity;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        if group.pending_commit().is_some() {
            return Err(GroupError::CommitPending);
        }
        let epoch = group.epoch().as_u64();
        let bundle = group.self_update(&id.provider, &id.signer, Default::default()).map_err(lib)?;
        self.finish_commit(bundle, epoch, Vec::new(), Vec::new())
    }

    /// The server accepted this participant's pending commit: apply it.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::NoPendingCommit`],
    /// [`GroupError::Library`].
    pub fn commit_accepted(&mut self) -> Result<Event, GroupError> {
        let provider = &self.identity.provider;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        let Some(staged) = group.pending_commit() else {
            return Err(GroupError::NoPendingCommit);
        };
        let removed: Vec<u32> = staged.remove_proposals().map(|p| p.remove_proposal().removed().u32()).collect();
        let new_members_before: Vec<u32> = group.members().map(|m| m.index.u32()).collect();
        group.merge_pending_commit(provider).map_err(lib)?;
        let mut added = Vec::new();
        for m in group.members() {
            let leaf = m.index.u32();
            if !new_members_before.contains(&leaf) || removed.contains(&leaf) {
                added.push(leaf);
            }
        }
        let epoch = group.epoch().as_u64();
        for leaf in &removed {
            self.profiles.remove(leaf);
        }
        Ok(Event::EpochChanged { epoch, added, removed, lost_own_commit: false })
    }

    /// The server rejected this participant's pending commit (stale epoch):
    /// drop it. Then process the winning commit and, if still committer,
    /// commit again what is still pending.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::NoPendingCommit`],
    /// [`GroupError::Library`].
    pub fn commit_rejected(&mut self) -> Result<(), GroupError> {
        let provider = &self.identity.provider;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        if group.pending_commit().is_none() {
            return Err(GroupError::NoPendingCommit);
        }
        group.clear_pending_commit(provider.storage()).map_err(lib)?;
        Ok(())
    }

    /// Encrypts an application message to the group; returns its envelope.
    /// A [`AppMessage::Profile`] or [`AppMessage::HandRaise`] also updates this
    /// participant's own roster entry.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::App`],
    /// [`GroupError::CommitPending`] (MLS sends no application data while a
    /// commit is pending), [`GroupError::Library`].
    pub fn send(&mut self, message: &AppMessage) -> Result<Vec<u8>, GroupError> {
        let plaintext = message.encode()?;
        let id = &self.identity;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        if group.pending_commit().is_some() {
            return Err(GroupError::CommitPending);
        }
        let own = group.own_leaf_index().u32();
        let out = group.create_message(&id.provider, &id.signer, &plaintext).map_err(lib)?;
        let bytes = serialize(&out)?;
        let env = Envelope::Application { message: &bytes }.encode()?;
        self.apply_app(own, message);
        Ok(env)
    }

    fn apply_app(&mut self, sender: u32, message: &AppMessage) -> Option<Event> {
        let entry = self.profiles.entry(sender).or_default();
        match message {
            AppMessage::Chat { text } => Some(Event::Chat { sender, text: text.clone() }),
            AppMessage::Profile { display_name, continuity } => {
                entry.display_name = Some(display_name.clone());
                entry.continuity = *continuity;
                Some(Event::Profile { sender, display_name: display_name.clone() })
            }
            AppMessage::HandRaise { raised } => {
                entry.hand_raised = *raised;
                Some(Event::HandRaise { sender, raised: *raised })
            }
        }
    }

    /// Processes one envelope from the server: a Commit, a Welcome or an
    /// Application message.
    ///
    /// # Errors
    /// Any [`GroupError`]; the group state is then unchanged. Notably
    /// [`GroupError::StaleEpoch`] for a commit of a past epoch,
    /// [`GroupError::AlreadyInGroup`] for a late Welcome,
    /// [`GroupError::Envelope`] / [`GroupError::MalformedMls`] for garbage.
    /// A server that echoes a commit back to its sender after the sender
    /// already called [`Participant::commit_accepted`] gets
    /// [`GroupError::StaleEpoch`] for the echo, which is harmless; an echo
    /// that arrives while the commit is still pending counts as acceptance.
    pub fn process(&mut self, bytes: &[u8]) -> Result<Event, GroupError> {
        match Envelope::decode(bytes)? {
            Envelope::Welcome { key_package_refs, message } => self.process_welcome(&key_package_refs, message),
            Envelope::Commit { message, .. } | Envelope::Application { message } => self.process_protocol(message),
            other => Err(GroupError::UnexpectedKind(other.kind())),
        }
    }

    fn process_welcome(&mut self, refs: &[&[u8]], message: &[u8]) -> Result<Event, GroupError> {
        if self.group.is_some() {
            return Err(GroupError::AlreadyInGroup);
        }
        if !refs.iter().any(|r| self.pending_refs.iter().any(|p| p.as_slice() == *r)) {
            return Err(GroupError::NotForUs);
        }
        let welcome = match parse_mls(message)?.extract() {
            MlsMessageBodyIn::Welcome(w) => w,
            _ => return Err(GroupError::MalformedMls),
        };
        let provider = &self.identity.provider;
        let staged = StagedWelcome::new_from_welcome(provider, &join_config(), welcome, None)
            .map_err(|e| GroupError::Refused(e.to_string()))?;
        if staged.group_context().group_id() != &group_id(&self.room) {
            return Err(GroupError::WrongGroup);
        }
        if staged.members().any(|m| CredentialId::from_credential(&m.credential).is_none()) {
            return Err(GroupError::Refused("group has a member without a pseudonymous credential".into()));
        }
        let group = staged.into_group(provider).map_err(|e| GroupError::Refused(e.to_string()))?;
        let epoch = group.epoch().as_u64();
        let own_leaf = group.own_leaf_index().u32();
        self.group = Some(group);
        self.pending_refs.clear();
        Ok(Event::Joined { epoch, own_leaf })
    }

    fn process_protocol(&mut self, message: &[u8]) -> Result<Event, GroupError> {
        let group = self.group.as_ref().ok_or(GroupError::NotInGroup)?;
        let protocol: ProtocolMessage =
            parse_mls(message)?.try_into_protocol_message().map_err(|_| GroupError::MalformedMls)?;
        if protocol.group_id() != group.group_id() {
            return Err(GroupError::WrongGroup);
        }
        let msg_epoch = protocol.epoch().as_u64();
        let group_epoch = group.epoch().as_u64();
        let is_handshake = !matches!(protocol.content_type(), openmls::prelude::ContentType::Application);
        if msg_epoch > group_epoch {
            return Err(GroupError::FutureEpoch { message: msg_epoch, group: group_epoch });
        }
        if is_handshake && msg_epoch < group_epoch {
            return Err(GroupError::StaleEpoch { message: msg_epoch, group: group_epoch });
        }
        let provider = &self.identity.provider;
        let group = self.group.as_mut().ok_or(GroupError::NotInGroup)?;
        let processed = group.process_message(provider, protocol).map_err(|e| GroupError::Refused(e.to_string()))?;
        let sender = match processed.sender() {
            Sender::Member(leaf) => Some(leaf.u32()),
            _ => None,
        };
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let sender = sender.ok_or_else(|| GroupError::Refused("no sender".into()))?;
                let message = AppMessage::decode(&app.into_bytes())?;
                self.apply_app(sender, &message).ok_or_else(|| GroupError::Refused("unknown content".into()))
            }
            ProcessedMessageContent::OwnPrivateMessage | ProcessedMessageContent::OwnPendingCommit => {
                if is_handshake && self.has_pending_commit() {
                    // Our own commit fanned out: the server took it.
                    self.commit_accepted()
                } else if is_handshake {
                    Err(GroupError::Refused("own commit without pending commit".into()))
                } else {
                    Ok(Event::Echo)
                }
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                // Every member must carry a pseudonymous credential id, so the
                // roster can show everyone.
                if staged.add_proposals().any(|p| {
                    CredentialId::from_credential(p.add_proposal().key_package().leaf_node().credential()).is_none()
                }) {
                    return Err(GroupError::Refused("commit adds a member without a pseudonymous credential".into()));
                }
                let lost_own_commit = group.pending_commit().is_some();
                let removed: Vec<u32> =
                    staged.remove_proposals().map(|p| p.remove_proposal().removed().u32()).collect();
                let before: Vec<u32> = group.members().map(|m| m.index.u32()).collect();
                let self_removed = staged.self_removed();
                group.merge_staged_commit(provider, *staged).map_err(lib)?;
                if self_removed {
                    self.group = None;
                    self.profiles.clear();
                    return Ok(Event::Removed);
                }
                let added: Vec<u32> = group
                    .members()
                    .map(|m| m.index.u32())
                    .filter(|l| !before.contains(l) || removed.contains(l))
                    .collect();
                let epoch = group.epoch().as_u64();
                for leaf in &removed {
                    self.profiles.remove(leaf);
                }
                Ok(Event::EpochChanged { epoch, added, removed, lost_own_commit })
            }
            _ => Err(GroupError::Refused("proposals are not used".into())),
        }
    }

    /// Everyone in the group, by leaf index, with decrypted profiles.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`].
    pub fn roster(&self) -> Result<Vec<RosterEntry>, GroupError> {
        let group = self.group()?;
        let own = group.own_leaf_index().u32();
        Ok(group
            .members()
            .map(|m| {
                let leaf = m.index.u32();
                // Membership rules keep every credential pseudonymous; an odd
                // one still shows (as all zeros) rather than hiding a member.
                let credential_id = CredentialId::from_credential(&m.credential)
                    .unwrap_or(CredentialId([0; crate::identity::CREDENTIAL_ID_LEN]));
                let profile = self.profiles.get(&leaf).cloned().unwrap_or_default();
                RosterEntry {
                    leaf,
                    credential_id,
                    display_name: profile.display_name,
                    continuity: profile.continuity,
                    hand_raised: profile.hand_raised,
                    is_self: leaf == own,
                }
            })
            .collect())
    }

    /// Number of members.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`].
    pub fn member_count(&self) -> Result<usize, GroupError> {
        Ok(self.group()?.members().count())
    }

    /// The security code of the current epoch, see [`crate::code`].
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`].
    pub fn security_code(&self) -> Result<SecurityCode, GroupError> {
        let group = self.group()?;
        SecurityCode::from_epoch_authenticator(group.epoch_authenticator().as_slice()).map_err(lib)
    }

    /// The SFrame keys of the current epoch (RFC 9605 §5.2), for
    /// [`crate::media::MediaCrypto::set_epoch_keys`].
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::Library`].
    pub fn epoch_keys(&self) -> Result<EpochKeys, GroupError> {
        let group = self.group()?;
        let secret = group.export_secret(self.identity.provider.crypto(), EXPORTER_LABEL, b"", KEY_LEN).map_err(lib)?;
        let base_key: [u8; KEY_LEN] = secret.as_slice().try_into().map_err(lib)?;
        let mut members: Vec<u32> = group.members().map(|m| m.index.u32()).collect();
        members.sort_unstable();
        Ok(EpochKeys { epoch: group.epoch().as_u64(), base_key, own_leaf: group.own_leaf_index().u32(), members })
    }

    /// Exports a secret from the current epoch (RFC 9420 §8.5), for tests and
    /// for keys of later features.
    ///
    /// # Errors
    /// [`GroupError::NotInGroup`], [`GroupError::Library`].
    pub fn export_secret(&self, label: &str, length: usize) -> Result<Vec<u8>, GroupError> {
        let group = self.group()?;
        group
            .export_secret(self.identity.provider.crypto(), label, b"", length)
            .map(|s| s.as_slice().to_vec())
            .map_err(lib)
    }
}
