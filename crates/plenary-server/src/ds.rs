//! The MLS Delivery Service (RFC 9420 §16.6; DESIGN.md, Keys), sans-IO.
//!
//! Per room it holds the KeyPackages and join proofs of waiting joiners,
//! accepts the first commit for each epoch and refuses later ones
//! (`commit_rejected`, the stale-epoch rule), fans accepted commits and
//! application messages out to the group's members, and routes each
//! Welcome to the joiners whose KeyPackageRefs it names. It keeps no key and
//! reads nothing but the envelope header ([`plenary_e2ee::envelope`]): kind,
//! a commit's epoch, a Welcome's KeyPackageRefs.
//!
//! A commit that adds members arrives together with its Welcome (one `mls`
//! message). Accepting it is one step: the commit goes to every member and
//! every joiner already welcomed, the Welcome to the joiners it names, who
//! from then on receive every later commit too. A refused commit routes
//! nothing. (When the Welcome followed its commit's acceptance, a commit by
//! another member in between reached neither the joiner nor its Welcome,
//! and the joiner stayed one epoch behind for good.)
//!
//! When no member of a room's group is online (the room is new, or every
//! member left), the longest-present participant is asked to create a new
//! group (`create_group`); waiting join requests are relayed to it once it
//! announces itself with `group_member`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plenary_e2ee::envelope::Envelope;
use plenary_proto::{ErrorCode, ParticipantId, ServerMsg};

/// How long a participant asked to create the group may stay silent before
/// a joiner that speaks the protocol is asked instead.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest join request held for a joiner, in bytes of envelope: a
/// KeyPackage with a basic credential is well under 1 KiB.
pub const MAX_JOIN_REQUEST: usize = 16 * 1024;

/// KeyPackageRefs kept per waiting joiner: its latest requests (one every
/// few seconds while it waits), any of which a Welcome may name.
pub const MAX_REFS_PER_JOINER: usize = 8;

/// Largest application message relayed, in bytes of envelope. The largest
/// a client makes is a chat message of 16 KiB of text (`plenary_e2ee::app`)
/// in an MLS PrivateMessage (RFC 9420 §6.3), a little over 16 KiB; a
/// larger one is refused rather than copied to every member.
pub const MAX_APPLICATION_BYTES: usize = 64 * 1024;

/// Bytes of application messages (envelope) a member may have relayed per
/// second on average, and at once ([`APPLICATION_BURST_BYTES`]). Without a
/// budget one member sending the largest messages at the signaling rate
/// limit filled every other member's queue
/// (`client_queue::CLIENT_QUEUE_BYTES`) faster than a home downlink
/// drains it, and the server then disconnected those members as not
/// reading. Chat, profiles and raised hands use a few KiB a minute.
pub const APPLICATION_BYTES_PER_SEC: f64 = 64.0 * 1024.0;
/// See [`APPLICATION_BYTES_PER_SEC`]: eight of the largest messages.
pub const APPLICATION_BURST_BYTES: f64 = 8.0 * MAX_APPLICATION_BYTES as f64;

/// Messages to send: (recipient, message).
pub type Outbox = Vec<(ParticipantId, ServerMsg)>;

/// Why the Delivery Service refused an envelope or announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsError {
    /// Not base64url, or not a valid envelope.
    #[error("bad envelope: {0}")]
    BadEnvelope(String),
    /// The sender is not a member of the group (commits, Welcomes,
    /// application messages need membership; join requests the opposite).
    #[error("{0}")]
    NotGroupMember(&'static str),
    /// A Welcome sent on its own: it must travel with its commit.
    #[error("a Welcome travels with its commit (the `welcome` of an `mls` commit)")]
    WelcomeWithoutCommit,
    /// The participant is not in a room.
    #[error("not in a room")]
    NotJoined,
    /// A leaf index another online member already holds, or a second,
    /// different announcement.
    #[error("leaf {0} is not yours to announce")]
    LeafTaken(u32),
    /// The member sent more application bytes than its budget
    /// ([`APPLICATION_BYTES_PER_SEC`]); this message was not relayed.
    #[error("too many application message bytes; slow down")]
    ApplicationRate,
}

impl DsError {
    /// The code reported to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            DsError::BadEnvelope(_) | DsError::WelcomeWithoutCommit => ErrorCode::BadEnvelope,
            DsError::NotGroupMember(_) => ErrorCode::NotGroupMember,
            DsError::NotJoined => ErrorCode::NotJoined,
            DsError::LeafTaken(_) => ErrorCode::NotGroupMember,
            DsError::ApplicationRate => ErrorCode::RateLimited,
        }
    }
}

#[derive(Debug)]
struct PendingJoin {
    from: ParticipantId,
    /// KeyPackageRefs of this joiner's requests since it last lost its
    /// group state: a member may add it from an earlier request than its
    /// latest retry.
    key_package_refs: Vec<Vec<u8>>,
    envelope: String,
}

#[derive(Debug, Default)]
struct GroupRoom {
    /// Participants in the room, in order of arrival.
    online: Vec<ParticipantId>,
    /// The group's current epoch, `None` while there is no group.
    epoch: Option<u64>,
    /// Asked to create the group (and when), not yet announced.
    creator: Option<ParticipantId>,
    creator_asked: Option<Instant>,
    /// Members online, with their leaf index.
    members: BTreeMap<ParticipantId, u32>,
    /// Join requests not yet answered by a Welcome.
    pending: Vec<PendingJoin>,
    /// Joiners a Welcome was routed to, who may now announce membership.
    welcomed: Vec<ParticipantId>,
    /// Participants that have spoken the end-to-end protocol (sent an
    /// envelope or announced membership); others (unencrypted clients)
    /// are never left in charge of creating the group.
    capable: Vec<ParticipantId>,
}

/// The Delivery Service for all rooms.
#[derive(Debug, Default)]
pub struct DeliveryService {
    rooms: HashMap<String, GroupRoom>,
    room_of: HashMap<ParticipantId, String>,
    /// Per participant that sent application messages: bytes it may still
    /// send ([`APPLICATION_BURST_BYTES`] at most) and when that was counted.
    app_budget: HashMap<ParticipantId, (f64, Instant)>,
}

impl DeliveryService {
    /// A participant entered `room`. May ask it to create the group.
    pub fn joined(&mut self, now: Instant, room: &str, id: ParticipantId) -> Outbox {
        self.room_of.insert(id, room.to_owned());
        let r = self.rooms.entry(room.to_owned()).or_default();
        r.online.push(id);
        let mut out = Vec::new();
        r.ensure_creator(now, &mut out);
        out
    }

    /// A participant left (or its connection died).
    pub fn left(&mut self, now: Instant, id: ParticipantId) -> Outbox {
        let mut out = Vec::new();
        self.app_budget.remove(&id);
        let Some(room) = self.room_of.remove(&id) else { return out };
        let Some(r) = self.rooms.get_mut(&room) else { return out };
        r.online.retain(|p| *p != id);
        r.members.remove(&id);
        r.pending.retain(|p| p.from != id);
        r.welcomed.retain(|p| *p != id);
        r.capable.retain(|p| *p != id);
        if r.creator == Some(id) {
            r.creator = None;
        }
        if r.online.is_empty() {
            self.rooms.remove(&room);
            return out;
        }
        r.recreate_if_memberless(now, &mut out);
        out
    }

    /// `group_member`: the participant created the group or processed its
    /// Welcome and sits at `leaf`.
    ///
    /// # Errors
    /// [`DsError::NotGroupMember`] when it was neither asked to create nor
    /// sent a Welcome.
    pub fn group_member(&mut self, id: ParticipantId, leaf: u32) -> Result<Outbox, DsError> {
        let r = self.room_mut(id)?;
        if !r.capable.contains(&id) {
            r.capable.push(id);
        }
        let mut out = Vec::new();
        if r.members.iter().any(|(p, l)| *p != id && *l == leaf) {
            return Err(DsError::LeafTaken(leaf));
        }
        if r.creator == Some(id) {
            r.creator = None;
            r.epoch = Some(0);
            r.members.clear();
            r.members.insert(id, leaf);
            r.pending.retain(|p| p.from != id);
            for p in &r.pending {
                out.push((id, ServerMsg::Mls { from: p.from, envelope: p.envelope.clone() }));
            }
            return Ok(out);
        }
        if let Some(pos) = r.welcomed.iter().position(|p| *p == id) {
            r.welcomed.remove(pos);
            r.members.insert(id, leaf);
            return Ok(out);
        }
        if let Some(known) = r.members.get(&id) {
            // Re-announcing the same leaf is harmless; moving is not allowed
            // (leaves do not move in MLS while a member stays).
            return if *known == leaf { Ok(out) } else { Err(DsError::LeafTaken(leaf)) };
        }
        Err(DsError::NotGroupMember("announce membership only after creating the group or processing a Welcome"))
    }

    /// An envelope from a participant, and with a commit, the Welcome for
    /// the joiners it adds (both unpadded base64url).
    ///
    /// # Errors
    /// [`DsError`]: bad bytes, a `welcome` that is not a Welcome or comes
    /// with anything but a commit, a Welcome on its own, or a message the
    /// sender's role does not allow.
    pub fn envelope(
        &mut self,
        now: Instant,
        id: ParticipantId,
        b64: &str,
        welcome: Option<&str>,
    ) -> Result<Outbox, DsError> {
        let bytes = decode_base64url(b64)?;
        let env = Envelope::decode(&bytes).map_err(|e| DsError::BadEnvelope(e.to_string()))?;
        let welcome_bytes = welcome.map(decode_base64url).transpose()?;
        let welcome_refs = match welcome_bytes.as_deref().map(Envelope::decode) {
            None => None,
            Some(Ok(Envelope::Welcome { key_package_refs, .. })) => Some(key_package_refs),
            Some(Ok(_)) => return Err(DsError::BadEnvelope("`welcome` is not a Welcome".into())),
            Some(Err(e)) => return Err(DsError::BadEnvelope(format!("welcome: {e}"))),
        };
        if welcome_refs.is_some() && !matches!(env, Envelope::Commit { .. }) {
            return Err(DsError::BadEnvelope("only a commit carries a Welcome".into()));
        }
        if let Envelope::Application { .. } = env {
            if bytes.len() > MAX_APPLICATION_BYTES {
                return Err(DsError::BadEnvelope(format!(
                    "application message larger than {MAX_APPLICATION_BYTES} bytes"
                )));
            }
            if self.room_of.contains_key(&id) {
                self.spend_application_bytes(now, id, bytes.len())?;
            }
        }
        let r = self.room_mut(id)?;
        if !r.capable.contains(&id) {
            r.capable.push(id);
        }
        let is_member = r.members.contains_key(&id);
        let mut out = Vec::new();
        match env {
            Envelope::JoinRequest { key_package_ref, .. } => {
                if bytes.len() > MAX_JOIN_REQUEST {
                    return Err(DsError::BadEnvelope(format!("join request larger than {MAX_JOIN_REQUEST} bytes")));
                }
                let mut key_package_refs = Vec::new();
                if is_member || r.welcomed.contains(&id) {
                    // It lost its group state (missed a commit, or its
                    // Welcome failed) and asks to be added anew: no longer
                    // a member until its next Welcome.
                    r.members.remove(&id);
                    r.welcomed.retain(|p| *p != id);
                    // If it was the last member (the others left or lost
                    // their state too), nobody is left to add anyone.
                    r.recreate_if_memberless(now, &mut out);
                } else if let Some(pos) = r.pending.iter().position(|p| p.from == id) {
                    // A retry: a commit made from the earlier request still
                    // reaches it.
                    key_package_refs = r.pending.remove(pos).key_package_refs;
                }
                key_package_refs.push(key_package_ref.to_vec());
                let excess = key_package_refs.len().saturating_sub(MAX_REFS_PER_JOINER);
                key_package_refs.drain(..excess);
                if r.members.is_empty()
                    && r.creator.is_some_and(|c| !r.capable.contains(&c))
                    && r.creator_asked.is_some_and(|t| now.saturating_duration_since(t) >= CREATE_TIMEOUT)
                {
                    // The participant asked to create stayed silent (an
                    // unencrypted client): this joiner creates instead.
                    r.creator = Some(id);
                    r.creator_asked = Some(now);
                    out.push((id, ServerMsg::CreateGroup));
                    return Ok(out);
                }
                r.pending.push(PendingJoin { from: id, key_package_refs, envelope: b64.to_owned() });
                for m in r.members.keys() {
                    out.push((*m, ServerMsg::Mls { from: id, envelope: b64.to_owned() }));
                }
            }
            Envelope::Commit { epoch, .. } => {
                if !is_member {
                    return Err(DsError::NotGroupMember("only members commit"));
                }
                let current = r.epoch.unwrap_or(0);
                if r.epoch != Some(epoch) {
                    out.push((id, ServerMsg::CommitRejected { epoch, current_epoch: current }));
                    return Ok(out);
                }
                r.epoch = Some(epoch + 1);
                // Joiners sent a Welcome are in the group before they announce.
                for m in r.members.keys().chain(&r.welcomed).filter(|m| **m != id) {
                    out.push((*m, ServerMsg::Mls { from: id, envelope: b64.to_owned() }));
                }
                // In the same step, the Welcome reaches the joiners it names,
                // who thereby get every later commit. A joiner that left
                // meanwhile is no longer waiting and gets nothing.
                if let (Some(refs), Some(w)) = (welcome_refs, welcome) {
                    let named = |p: &PendingJoin| p.key_package_refs.iter().any(|k| refs.contains(&k.as_slice()));
                    for p in r.pending.extract_if(.., |p| named(p)) {
                        out.push((p.from, ServerMsg::Mls { from: id, envelope: w.to_owned() }));
                        r.welcomed.push(p.from);
                    }
                }
                out.push((id, ServerMsg::CommitAccepted { epoch }));
            }
            Envelope::Welcome { .. } => {
                return Err(if is_member {
                    DsError::WelcomeWithoutCommit
                } else {
                    DsError::NotGroupMember("only members send Welcomes")
                });
            }
            Envelope::Application { .. } => {
                if !is_member {
                    return Err(DsError::NotGroupMember("only members send application messages"));
                }
                for m in r.members.keys().chain(&r.welcomed).filter(|m| **m != id) {
                    out.push((*m, ServerMsg::Mls { from: id, envelope: b64.to_owned() }));
                }
            }
            _ => return Err(DsError::BadEnvelope("unsupported envelope kind".into())),
        }
        Ok(out)
    }

    /// Takes `len` bytes from `id`'s application budget, refilled at
    /// [`APPLICATION_BYTES_PER_SEC`] up to [`APPLICATION_BURST_BYTES`].
    fn spend_application_bytes(&mut self, now: Instant, id: ParticipantId, len: usize) -> Result<(), DsError> {
        let (tokens, at) = self.app_budget.entry(id).or_insert((APPLICATION_BURST_BYTES, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * APPLICATION_BYTES_PER_SEC;
        *tokens = (*tokens + refill).min(APPLICATION_BURST_BYTES);
        *at = now;
        if *tokens < len as f64 {
            return Err(DsError::ApplicationRate);
        }
        *tokens -= len as f64;
        Ok(())
    }

    /// The first broken rule of the rooms' state, if any (for fuzzing and
    /// tests; `None` always in a correct Delivery Service): every member,
    /// welcomed joiner, waiting joiner and creator is online in its room,
    /// leaves are distinct, a joiner waits once with 1 to
    /// [`MAX_REFS_PER_JOINER`] KeyPackageRefs, a room with participants
    /// has a member or someone asked to create the group, and rooms hold
    /// exactly the participants [`DeliveryService::joined`] put there.
    pub fn broken_invariant(&self) -> Option<String> {
        let mut counted = 0;
        for (name, r) in &self.rooms {
            if r.online.is_empty() {
                return Some(format!("room {name:?} is kept without participants"));
            }
            for p in &r.online {
                if self.room_of.get(p) != Some(name) {
                    return Some(format!("{p} is online in {name:?} but not recorded there"));
                }
            }
            counted += r.online.len();
            let offline = |p: &ParticipantId| !r.online.contains(p);
            if let Some(p) = r.members.keys().find(|p| offline(p)) {
                return Some(format!("member {p} is not online"));
            }
            if let Some(p) = r.welcomed.iter().chain(r.pending.iter().map(|j| &j.from)).find(|p| offline(p)) {
                return Some(format!("joiner {p} is not online"));
            }
            if r.creator.is_some_and(|c| offline(&c)) {
                return Some("the creator is not online".into());
            }
            let mut leaves: Vec<u32> = r.members.values().copied().collect();
            leaves.sort_unstable();
            if leaves.windows(2).any(|w| w[0] == w[1]) {
                return Some(format!("two members at one leaf: {leaves:?}"));
            }
            for (i, j) in r.pending.iter().enumerate() {
                if r.pending[..i].iter().any(|k| k.from == j.from) {
                    return Some(format!("{} waits twice", j.from));
                }
                if !(1..=MAX_REFS_PER_JOINER).contains(&j.key_package_refs.len()) {
                    return Some(format!("{} holds {} KeyPackageRefs", j.from, j.key_package_refs.len()));
                }
            }
            if r.members.is_empty() && r.creator.is_none() {
                return Some(format!("room {name:?} has neither a member nor a creator"));
            }
            if !r.members.is_empty() && r.epoch.is_none() {
                return Some(format!("room {name:?} has members but no epoch"));
            }
        }
        (counted != self.room_of.len()).then(|| format!("{} in rooms, {} recorded", counted, self.room_of.len()))
    }

    fn room_mut(&mut self, id: ParticipantId) -> Result<&mut GroupRoom, DsError> {
        let room = self.room_of.get(&id).ok_or(DsError::NotJoined)?;
        self.rooms.get_mut(room).ok_or(DsError::NotJoined)
    }
}

fn decode_base64url(b64: &str) -> Result<Vec<u8>, DsError> {
    URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|e| DsError::BadEnvelope(format!("not base64url: {e}")))
}

impl GroupRoom {
    /// When no member is left (all left or lost their group state) and
    /// nobody is creating, the group is lost: asks a participant to start
    /// a new one.
    fn recreate_if_memberless(&mut self, now: Instant, out: &mut Outbox) {
        if self.members.is_empty() && self.creator.is_none() {
            self.epoch = None;
            self.welcomed.clear();
            self.ensure_creator(now, out);
        }
    }

    fn ensure_creator(&mut self, now: Instant, out: &mut Outbox) {
        if self.members.is_empty()
            && self.creator.is_none()
            && self.epoch.is_none()
            && let Some(first) = self.online.iter().find(|p| self.capable.contains(p)).or(self.online.first())
        {
            self.creator = Some(*first);
            self.creator_asked = Some(now);
            out.push((*first, ServerMsg::CreateGroup));
        }
    }
}

#[cfg(test)]
#[path = "ds_tests.rs"]
mod tests;
