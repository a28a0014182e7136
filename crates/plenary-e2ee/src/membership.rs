//! One participant's membership in the meeting's MLS group, as a sans-IO
//! state machine shared by the native client and the browser (through
//! `plenary-wasm`).
//!
//! [`Membership`] wraps a [`Participant`] and follows the rules of
//! [`crate::group`] with the server as Delivery Service (DESIGN.md, Keys):
//! it asks to be added or creates the group when the server says so,
//! verifies join requests, lets the committer (the online member with the
//! lowest leaf index, RFC 9420 §12.4 leaves the choice to the application)
//! batch joins and removals into one commit that travels with its Welcome,
//! resolves `commit_accepted` / `commit_rejected`, applies commits, exports
//! the SFrame keys of every epoch (RFC 9605 §5.2) and notices when it has
//! been left behind (it then rejoins with a fresh identity).
//!
//! Inputs are [`Input`]s with the current time `now` (a [`Duration`] from
//! any fixed origin, e.g. the process start or `performance.now()`);
//! outputs are [`Action`]s for the caller to carry out (send a message,
//! install keys, show a name...). Nothing here does IO or reads a clock,
//! so several members run deterministically in one test.
//!
//! ```
//! use std::time::Duration;
//! use plenary_e2ee::membership::{Action, Input, Membership, Outgoing};
//! use plenary_e2ee::secret::MeetingSecret;
//!
//! let secret = MeetingSecret::from_base64url("AAECAwQFBgcICQoLDA0ODw").unwrap();
//! let mut alice = Membership::new("room", secret, "Alice", 1).unwrap();
//! // The server asked Alice to create the group:
//! let actions = alice.handle(Input::CreateGroup, Duration::ZERO);
//! assert!(actions.iter().any(|a| matches!(a, Action::Send(Outgoing::GroupMember { leaf: 0 }))));
//! assert!(actions.iter().any(|a| matches!(a, Action::NewEpoch { epoch: 0, .. })));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::app::{AppMessage, ContinuityToken};
use crate::code::SecurityCode;
use crate::envelope::{Envelope, EnvelopeError, KIND_JOIN_REQUEST, KIND_WELCOME};
use crate::group::{Event, GroupError, Participant};
use crate::identity::CredentialId;
use crate::media::EpochKeys;
use crate::secret::MeetingSecret;

/// Wait this long to batch a burst of join requests (or leaves) into one commit.
pub const COMMIT_BATCH: Duration = Duration::from_millis(100);
/// A joiner not admitted after this long asks again.
pub const JOIN_RETRY: Duration = Duration::from_secs(8);
/// Alone in the room: how long to wait for `create_group` before asking to join.
pub const CREATE_WAIT: Duration = Duration::from_millis(1500);
/// Known to be behind the room's epoch (a rejected commit's `current_epoch`,
/// a message from a later epoch, a commit at our epoch we could not apply):
/// wait this long for the missing commits, then rejoin.
pub const BEHIND_WAIT: Duration = Duration::from_secs(2);
/// How long a joiner that left before its join completed is remembered, so
/// that a commit adding it that was already in flight gets its leaf removed.
pub const DEPARTED_KEEP: Duration = Duration::from_secs(30);

/// A participant id as the server numbers them (`participant_id`).
pub type ParticipantId = u64;

/// The group operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Making a fresh identity.
    NewIdentity,
    /// Creating the group.
    Create,
    /// Making a JoinRequest.
    JoinRequest,
    /// Processing an envelope from the server.
    Process,
    /// Making a commit.
    Commit,
    /// Applying our accepted commit.
    CommitAccepted,
    /// Dropping our rejected commit.
    CommitRejected,
    /// Exporting the epoch's keys and security code.
    Keys,
    /// Encrypting an application message (profile, chat, hand raise).
    Send,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::NewIdentity => "new identity",
            Operation::Create => "create",
            Operation::JoinRequest => "join request",
            Operation::Process => "process",
            Operation::Commit => "commit",
            Operation::CommitAccepted => "commit accepted",
            Operation::CommitRejected => "commit rejected",
            Operation::Keys => "keys",
            Operation::Send => "send",
        })
    }
}

/// Why an input could not be fully handled. The membership carries on; the
/// caller counts these and logs them (they hold no content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The server relayed bytes that are not an envelope.
    #[error("bad envelope from the server: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A group operation failed; the group state is unchanged.
    #[error("{operation} failed: {source}")]
    Group {
        /// What was attempted.
        operation: Operation,
        /// Why it failed.
        source: GroupError,
    },
}

/// Why this participant lost its group state and asks to be added again
/// with a fresh identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejoinReason {
    /// A commit from an epoch after ours arrived: we missed one.
    MissedCommit {
        /// Our epoch.
        ours: u64,
        /// The commit's epoch.
        room: u64,
    },
    /// We stayed behind the room's epoch for [`BEHIND_WAIT`].
    LeftBehind {
        /// Our epoch.
        ours: u64,
        /// The room's epoch as last learnt.
        room: u64,
    },
    /// A commit removed us (by mistake or as a leftover leaf).
    Removed,
}

/// A message for the server (the caller encodes it: `mls` with base64url
/// envelope and Welcome, or `group_member`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `{"type":"mls","envelope":..,"welcome":..}`: an envelope, and with a
    /// commit that adds members, its Welcome (the server routes both in one step).
    Mls {
        /// Envelope bytes ([`crate::envelope`]).
        envelope: Vec<u8>,
        /// Welcome envelope bytes.
        welcome: Option<Vec<u8>>,
    },
    /// `{"type":"group_member","leaf":..}`: we created the group or joined it at `leaf`.
    GroupMember {
        /// Own leaf index.
        leaf: u32,
    },
}

/// What the caller must do or show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send this to the server.
    Send(Outgoing),
    /// A new epoch (created, joined, or a commit applied): install `keys` in
    /// the media path (`reset`: the first keys of this identity, drop any
    /// older ones) and show the new security code.
    NewEpoch {
        /// MLS epoch.
        epoch: u64,
        /// SFrame keys of the epoch. Secret: never log them.
        keys: EpochKeys,
        /// First keys since this identity was made.
        reset: bool,
        /// The epoch's security code.
        security_code: SecurityCode,
    },
    /// A member's display name from its encrypted profile (never log it).
    Profile {
        /// Sender's leaf index.
        leaf: u32,
        /// The participant at that leaf, if known.
        participant: Option<ParticipantId>,
        /// Display name.
        display_name: String,
    },
    /// A member raised or lowered its hand.
    HandRaise {
        /// Sender's leaf index.
        leaf: u32,
        /// Raised.
        raised: bool,
    },
    /// A chat line from another member (never log it).
    Chat {
        /// Sender's leaf index.
        leaf: u32,
        /// Text.
        text: String,
    },
    /// We lost the group state: a fresh identity asks to be added again;
    /// no keys until then.
    Rejoin(RejoinReason),
    /// Something failed; see [`MembershipError`].
    Failed(MembershipError),
}

/// An event for [`Membership::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input<'a> {
    /// `joined`: ask to be added now, or (alone in the room) after
    /// [`CREATE_WAIT`] unless the server asks us to create the group.
    Start {
        /// Others were in the room.
        others_present: bool,
    },
    /// `create_group`: create a new group (dropping any old one).
    CreateGroup,
    /// `mls`: an envelope relayed from participant `from` (decoded bytes).
    Mls {
        /// Sender.
        from: ParticipantId,
        /// Envelope bytes.
        envelope: &'a [u8],
    },
    /// `commit_accepted`: our commit was taken.
    CommitAccepted,
    /// `commit_rejected`: our commit lost; the room is at `current_epoch`.
    CommitRejected {
        /// The room's epoch.
        current_epoch: u64,
    },
    /// A participant's leaf (`joined`, `participant_joined`,
    /// `participant_updated` with a leaf): it is an online member.
    ParticipantLeaf {
        /// Participant.
        id: ParticipantId,
        /// Its leaf index.
        leaf: u32,
    },
    /// `participant_left`.
    ParticipantLeft {
        /// Participant.
        id: ParticipantId,
    },
    /// Time passed: run the timers due by `now` (see [`Membership::next_deadline`]).
    Timeout,
    /// Send a chat line.
    Chat {
        /// Text.
        text: &'a str,
    },
    /// Raise or lower our hand.
    RaiseHand {
        /// Raised.
        raised: bool,
    },
}

/// A join request waiting for a commit.
#[derive(Debug)]
struct PendingJoin {
    request: Vec<u8>,
    credential: CredentialId,
}

/// One participant's membership; see the module docs.
#[derive(Debug)]
pub struct Membership {
    room: String,
    secret: MeetingSecret,
    display_name: String,
    /// Sent with the display name; see [`Membership::set_continuity`].
    continuity: Option<ContinuityToken>,
    hand_raised: bool,
    self_id: ParticipantId,
    participant: Participant,
    /// Keys not yet installed since the identity was made.
    first_keys: bool,
    /// Leaves of the other participants known to be members (announced).
    leaves: BTreeMap<ParticipantId, u32>,
    /// Leaves that commits gave joiners not yet announced.
    added: BTreeMap<ParticipantId, u32>,
    /// Joiners that left before their join completed, until when to remember them.
    departed: Vec<(CredentialId, Duration)>,
    /// Display names by leaf, to name a participant whose profile came
    /// before its leaf was announced.
    names: BTreeMap<u32, String>,
    pending_joins: BTreeMap<ParticipantId, PendingJoin>,
    /// Leaves to remove.
    removals: BTreeSet<u32>,
    /// Joiners of our commit in flight.
    inflight: Option<Vec<ParticipantId>>,
    commit_at: Option<Duration>,
    join_at: Option<Duration>,
    profile_at: Option<Duration>,
    /// The room's epoch while we are known to be behind it, and when to
    /// rejoin if we still are.
    behind: Option<(u64, Duration)>,
    rejoins: u64,
}

impl Membership {
    /// The membership of participant `self_id` in meeting `room`, holding
    /// `secret` from the link, showing `display_name` to the others. Not a
    /// member until [`Input::CreateGroup`] or a Welcome.
    ///
    /// # Errors
    /// [`GroupError::Library`] if the identity cannot be made.
    pub fn new(
        room: &str,
        secret: MeetingSecret,
        display_name: &str,
        self_id: ParticipantId,
    ) -> Result<Self, GroupError> {
        let participant = Participant::new(room, secret.clone())?;
        Ok(Self {
            room: room.to_owned(),
            secret,
            display_name: display_name.to_owned(),
            continuity: None,
            hand_raised: false,
            self_id,
            participant,
            first_keys: true,
            leaves: BTreeMap::new(),
            added: BTreeMap::new(),
            departed: Vec::new(),
            names: BTreeMap::new(),
            pending_joins: BTreeMap::new(),
            removals: BTreeSet::new(),
            inflight: None,
            commit_at: None,
            join_at: None,
            profile_at: None,
            behind: None,
            rejoins: 0,
        })
    }

    /// Sends `token` with our display name from now on: the continuity
    /// token of this meeting session ([`crate::app`]), the same for every
    /// connection (hence every `Membership`) of the session, so that the
    /// others know us again after a reconnection. Call before the first
    /// input; without it the profile carries no token.
    pub fn set_continuity(&mut self, token: ContinuityToken) {
        self.continuity = Some(token);
    }

    /// The MLS group state (epoch, roster, security code).
    pub fn participant(&self) -> &Participant {
        &self.participant
    }

    /// Times this participant lost its group state and asked to be added again.
    pub fn rejoins(&self) -> u64 {
        self.rejoins
    }

    /// Whether our hand is raised.
    pub fn hand_raised(&self) -> bool {
        self.hand_raised
    }

    /// The earliest `now` at which [`Input::Timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        [self.commit_at, self.join_at, self.profile_at, self.behind.map(|(_, at)| at)].into_iter().flatten().min()
    }

    /// Handles one input at time `now`; returns what to do, in order.
    pub fn handle(&mut self, input: Input<'_>, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start { others_present: true } => self.request_join(now, &mut out),
            Input::Start { others_present: false } => self.join_at = Some(now + CREATE_WAIT),
            Input::CreateGroup => self.on_create_group(now, &mut out),
            Input::Mls { from, envelope } => self.on_mls(from, envelope, now, &mut out),
            Input::CommitAccepted => self.on_commit_accepted(now, &mut out),
            Input::CommitRejected { current_epoch } => self.on_commit_rejected(current_epoch, now, &mut out),
            Input::ParticipantLeaf { id, leaf } => self.on_participant_leaf(id, leaf, now, &mut out),
            Input::ParticipantLeft { id } => self.on_participant_left(id, now),
            Input::Timeout => self.on_timeout(now, &mut out),
            Input::Chat { text } => self.send_app(&AppMessage::Chat { text: text.to_owned() }, &mut out),
            Input::RaiseHand { raised } => {
                self.hand_raised = raised;
                if self.participant.is_member() {
                    self.send_app(&AppMessage::HandRaise { raised }, &mut out);
                }
            }
        }
        out
    }

    fn fail(out: &mut Vec<Action>, operation: Operation, source: GroupError) {
        out.push(Action::Failed(MembershipError::Group { operation, source }));
    }

    /// A fresh identity and no group: after a lost group state.
    fn fresh(&mut self, out: &mut Vec<Action>) {
        match Participant::new(&self.room, self.secret.clone()) {
            Ok(p) => self.participant = p,
            Err(e) => Self::fail(out, Operation::NewIdentity, e),
        }
        self.first_keys = true;
        self.inflight = None;
        self.commit_at = None;
        self.behind = None;
        self.names.clear();
    }

    /// Lost the group state: ask to be added again with a fresh identity;
    /// the committer replaces our old leaf (see `maybe_commit`).
    fn rejoin(&mut self, reason: RejoinReason, now: Duration, out: &mut Vec<Action>) {
        self.rejoins += 1;
        self.fresh(out);
        out.push(Action::Rejoin(reason));
        self.request_join(now, out);
    }

    fn request_join(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.join_at = None;
        if self.participant.is_member() {
            return;
        }
        match self.participant.join_request() {
            Ok(req) => out.push(send_mls(req, None)),
            Err(e) => Self::fail(out, Operation::JoinRequest, e),
        }
        self.join_at = Some(now + JOIN_RETRY);
    }

    /// The room is at `room_epoch`: if we stay below it for [`BEHIND_WAIT`], rejoin.
    fn note_behind(&mut self, room_epoch: u64, now: Duration) {
        let Some(ours) = self.participant.epoch() else { return };
        if room_epoch <= ours {
            return;
        }
        self.behind = Some(match self.behind {
            Some((e, at)) => (e.max(room_epoch), at),
            None => (room_epoch, now + BEHIND_WAIT),
        });
    }

    fn on_timeout(&mut self, now: Duration, out: &mut Vec<Action>) {
        if let Some((room, at)) = self.behind
            && at <= now
        {
            self.behind = None;
            if let Some(ours) = self.participant.epoch()
                && ours < room
            {
                self.rejoin(RejoinReason::LeftBehind { ours, room }, now, out);
            }
        }
        if self.join_at.is_some_and(|t| t <= now) {
            self.request_join(now, out);
        }
        if self.profile_at.is_some_and(|t| t <= now) {
            self.profile_at = None;
            self.send_profile(out);
        }
        if self.commit_at.is_some_and(|t| t <= now) {
            self.commit_at = None;
            self.maybe_commit(out);
        }
    }

    fn on_create_group(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.join_at = None;
        if self.participant.is_member() {
            // The server lost the group (e.g. it restarted): start a new one.
            self.fresh(out);
        }
        if let Err(e) = self.participant.create() {
            Self::fail(out, Operation::Create, e);
            return;
        }
        self.pending_joins.clear();
        self.removals.clear();
        self.added.clear();
        if let Some(leaf) = self.participant.own_leaf() {
            out.push(Action::Send(Outgoing::GroupMember { leaf }));
        }
        self.new_epoch(false, now, out);
    }

    fn on_mls(&mut self, from: ParticipantId, bytes: &[u8], now: Duration, out: &mut Vec<Action>) {
        let (kind, commit_epoch) = match Envelope::decode(bytes) {
            Ok(Envelope::Commit { epoch, .. }) => (crate::envelope::KIND_COMMIT, Some(epoch)),
            Ok(e) => (e.kind(), None),
            Err(e) => {
                out.push(Action::Failed(e.into()));
                return;
            }
        };
        let ours = self.participant.epoch();
        if let (Some(room), Some(ours)) = (commit_epoch, ours)
            && room > ours
        {
            // A commit from an epoch after ours: we missed a commit and
            // can follow the group no more.
            self.rejoin(RejoinReason::MissedCommit { ours, room }, now, out);
            return;
        }
        if kind == KIND_JOIN_REQUEST {
            self.on_join_request(from, bytes, now);
            return;
        }
        if kind == KIND_WELCOME && self.participant.is_member() {
            return;
        }
        match self.participant.process(bytes) {
            Ok(ev) => self.on_event(ev, now, out),
            Err(e) => {
                match &e {
                    GroupError::FutureEpoch { message, .. } => self.note_behind(*message, now),
                    // A commit at our epoch that we cannot apply: the room
                    // moved on without us.
                    _ if commit_epoch.is_some() && commit_epoch == ours => {
                        self.note_behind(ours.unwrap_or_default() + 1, now);
                    }
                    _ => {}
                }
                Self::fail(out, Operation::Process, e);
            }
        }
    }

    fn on_join_request(&mut self, from: ParticipantId, bytes: &[u8], now: Duration) {
        if from == self.self_id || !self.participant.is_member() {
            return;
        }
        match self.participant.verify_join_request(bytes) {
            Ok(credential) => {
                self.pending_joins.insert(from, PendingJoin { request: bytes.to_vec(), credential });
                self.schedule_commit(now);
            }
            // A wrong secret (or a forged request): never added.
            Err(_) => {
                self.pending_joins.remove(&from);
            }
        }
    }

    fn on_participant_leaf(&mut self, id: ParticipantId, leaf: u32, now: Duration, out: &mut Vec<Action>) {
        if id == self.self_id {
            return;
        }
        let before = self.leaves.insert(id, leaf);
        self.added.remove(&id);
        self.pending_joins.remove(&id);
        if before == Some(leaf) {
            return;
        }
        if let Some(name) = self.names.get(&leaf) {
            out.push(Action::Profile { leaf, participant: Some(id), display_name: name.clone() });
        }
        // Its join is done and the server now relays application messages
        // to it: send our profile (batched).
        if self.profile_at.is_none() {
            self.profile_at = Some(now + COMMIT_BATCH);
        }
    }

    fn on_participant_left(&mut self, id: ParticipantId, now: Duration) {
        self.departed.retain(|(_, until)| *until > now);
        if let Some(join) = self.pending_joins.remove(&id) {
            // A commit adding it may be in flight: its leaf goes when it lands.
            self.departed.push((join.credential, now + DEPARTED_KEEP));
        }
        let leaves = [self.leaves.remove(&id), self.added.remove(&id)];
        for leaf in leaves.into_iter().flatten() {
            if Some(leaf) != self.participant.own_leaf() {
                self.removals.insert(leaf);
                self.schedule_commit(now);
            }
        }
    }

    fn on_event(&mut self, ev: Event, now: Duration, out: &mut Vec<Action>) {
        match ev {
            Event::Joined { own_leaf, .. } => {
                self.join_at = None;
                out.push(Action::Send(Outgoing::GroupMember { leaf: own_leaf }));
                self.new_epoch(true, now, out);
            }
            Event::EpochChanged { added, removed, lost_own_commit, .. } => {
                if lost_own_commit {
                    self.inflight = None;
                }
                for l in removed.iter().chain(&added) {
                    self.removals.remove(l);
                }
                self.added.retain(|_, l| !removed.contains(l));
                self.note_added(&added, now);
                self.new_epoch(!added.is_empty(), now, out);
            }
            Event::Removed => self.rejoin(RejoinReason::Removed, now, out),
            Event::Profile { sender, display_name } => {
                let participant = self.leaves.iter().find(|(_, l)| **l == sender).map(|(id, _)| *id);
                self.names.insert(sender, display_name.clone());
                out.push(Action::Profile { leaf: sender, participant, display_name });
            }
            Event::HandRaise { sender, raised } => out.push(Action::HandRaise { leaf: sender, raised }),
            Event::Chat { sender, text } => out.push(Action::Chat { leaf: sender, text }),
            _ => {}
        }
    }

    /// Leaves a commit added: which joiner each is (by credential), so that a
    /// joiner leaving before it announces its leaf is removed, and a joiner
    /// that left while the commit was in flight is removed at once (it would
    /// otherwise stay a leaf that nobody removes).
    fn note_added(&mut self, added: &[u32], now: Duration) {
        if added.is_empty() {
            return;
        }
        let Ok(roster) = self.participant.roster() else { return };
        self.departed.retain(|(_, until)| *until > now);
        for entry in roster.iter().filter(|e| added.contains(&e.leaf)) {
            let joiner =
                self.pending_joins.iter().find(|(_, j)| j.credential == entry.credential_id).map(|(id, _)| *id);
            if let Some(id) = joiner {
                self.pending_joins.remove(&id);
                self.added.insert(id, entry.leaf);
            } else if let Some(pos) = self.departed.iter().position(|(c, _)| *c == entry.credential_id) {
                self.departed.remove(pos);
                self.removals.insert(entry.leaf);
            }
        }
    }

    /// New epoch (joined, created, or a commit applied): keys, code, profile.
    fn new_epoch(&mut self, send_profile: bool, now: Duration, out: &mut Vec<Action>) {
        if self.behind.is_some_and(|(room, _)| self.participant.epoch().is_some_and(|e| e >= room)) {
            self.behind = None;
        }
        match (self.participant.epoch_keys(), self.participant.security_code()) {
            (Ok(keys), Ok(security_code)) => {
                let reset = std::mem::take(&mut self.first_keys);
                out.push(Action::NewEpoch { epoch: keys.epoch, keys, reset, security_code });
            }
            (Err(e), _) | (_, Err(e)) => Self::fail(out, Operation::Keys, e),
        }
        if send_profile {
            self.send_profile(out);
        }
        if !self.pending_joins.is_empty() || !self.removals.is_empty() {
            self.schedule_commit(now);
        }
    }

    fn send_profile(&mut self, out: &mut Vec<Action>) {
        if !self.participant.is_member() {
            return;
        }
        self.send_app(
            &AppMessage::Profile { display_name: self.display_name.clone(), continuity: self.continuity },
            out,
        );
        if self.hand_raised {
            self.send_app(&AppMessage::HandRaise { raised: true }, out);
        }
    }

    fn send_app(&mut self, message: &AppMessage, out: &mut Vec<Action>) {
        match self.participant.send(message) {
            Ok(env) => out.push(send_mls(env, None)),
            Err(e) => Self::fail(out, Operation::Send, e),
        }
    }

    fn schedule_commit(&mut self, now: Duration) {
        if self.commit_at.is_none() {
            self.commit_at = Some(now + COMMIT_BATCH);
        }
    }

    /// Leaves of the members online: ours and those announced by the
    /// others, but not of one asking to be added again (it lost its group
    /// state and cannot commit; if it was the committer, the next one takes over).
    fn online_leaves(&self) -> Vec<u32> {
        let mut v: Vec<u32> =
            self.leaves.iter().filter(|(id, _)| !self.pending_joins.contains_key(id)).map(|(_, l)| *l).collect();
        v.extend(self.participant.own_leaf());
        v
    }

    /// The committer adds the waiting joiners and removes who left, in one commit.
    fn maybe_commit(&mut self, out: &mut Vec<Action>) {
        let p = &self.participant;
        if !p.is_member() || p.has_pending_commit() || self.inflight.is_some() || !p.is_committer(&self.online_leaves())
        {
            return;
        }
        let members: BTreeSet<u32> = match p.roster() {
            Ok(r) => r.iter().map(|e| e.leaf).collect(),
            Err(_) => return,
        };
        let own = p.own_leaf();
        self.removals.retain(|l| members.contains(l));
        let joiners: Vec<ParticipantId> = self.pending_joins.keys().copied().collect();
        // A member asking to join again lost its group state (it missed a
        // commit): its old leaf goes in the same commit that adds it anew.
        let rejoining = joiners.iter().filter_map(|id| self.leaves.get(id)).filter(|l| members.contains(l));
        let removes: Vec<u32> = self
            .removals
            .iter()
            .chain(rejoining)
            .copied()
            .filter(|l| Some(*l) != own)
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        if joiners.is_empty() && removes.is_empty() {
            return;
        }
        let requests: Vec<&[u8]> =
            joiners.iter().filter_map(|id| self.pending_joins.get(id).map(|j| j.request.as_slice())).collect();
        match self.participant.commit(&requests, &removes) {
            Ok(c) => {
                for (i, _) in &c.rejected {
                    if let Some(id) = joiners.get(*i) {
                        self.pending_joins.remove(id);
                    }
                }
                self.inflight = Some(joiners);
                // The Welcome travels with its commit: the server routes it
                // in the same step as it accepts the commit.
                out.push(send_mls(c.commit, c.welcome));
            }
            Err(e) => Self::fail(out, Operation::Commit, e),
        }
    }

    fn on_commit_accepted(&mut self, now: Duration, out: &mut Vec<Action>) {
        let inflight = self.inflight.take();
        if !self.participant.has_pending_commit() {
            return;
        }
        match self.participant.commit_accepted() {
            Ok(ev) => {
                self.on_event(ev, now, out);
                for id in inflight.iter().flatten() {
                    self.pending_joins.remove(id);
                }
            }
            Err(e) => Self::fail(out, Operation::CommitAccepted, e),
        }
    }

    fn on_commit_rejected(&mut self, current_epoch: u64, now: Duration, out: &mut Vec<Action>) {
        self.inflight = None;
        if self.participant.has_pending_commit()
            && let Err(e) = self.participant.commit_rejected()
        {
            Self::fail(out, Operation::CommitRejected, e);
        }
        // The winning commit arrives as `mls` (before this answer) and the
        // work still pending is retried; if the room is past our epoch
        // anyway, we missed it.
        if !self.pending_joins.is_empty() || !self.removals.is_empty() {
            self.schedule_commit(now);
        }
        self.note_behind(current_epoch, now);
    }
}

fn send_mls(envelope: Vec<u8>, welcome: Option<Vec<u8>>) -> Action {
    Action::Send(Outgoing::Mls { envelope, welcome })
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
