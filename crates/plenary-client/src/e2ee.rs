//! End-to-end encryption of one native participant, as the browser does it
//! (web/e2ee.js, web/media-worker.js): the meeting secret from the link's
//! fragment, MLS membership through the server's Delivery Service (create,
//! join requests, batched commits by the committer, Welcomes, profiles as
//! application messages) and SFrame on every frame sent and received.
//!
//! Sans-IO: the session feeds server messages and the clock in, and sends
//! the [`Out::Send`] messages it gets back. Never logs the secret, keys,
//! names or chat.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plenary_e2ee::app::AppMessage;
use plenary_e2ee::envelope::{Envelope, KIND_COMMIT};
use plenary_e2ee::group::{Event, GroupError, Participant};
use plenary_e2ee::media::{Codec, Disposition, MediaCrypto};
use plenary_e2ee::secret::MeetingSecret;
use plenary_proto::{ClientMsg, ParticipantId};

/// Wait this long to batch a burst of join requests into one commit.
const COMMIT_BATCH: Duration = Duration::from_millis(100);
/// A joiner not admitted after this long asks again.
const JOIN_RETRY: Duration = Duration::from_secs(8);
/// Alone in the room: how long to wait for `create_group` before asking to join.
const CREATE_WAIT: Duration = Duration::from_millis(1500);
/// How long the previous epoch's keys keep decrypting.
const GRACE: Duration = Duration::from_secs(2);
/// Known to be behind the room's epoch (a rejected commit's
/// `current_epoch`, a message from a later epoch, a commit at our epoch we
/// could not apply): wait this long for the missing commits, then rejoin.
const BEHIND_WAIT: Duration = Duration::from_secs(2);
/// Envelope kinds (plenary_e2ee::envelope).
const KIND_JOIN_REQUEST: u8 = 1;
const KIND_WELCOME: u8 = 3;
/// SFrame stream contexts, as the browser's defaults.
const CONTEXT_AUDIO: u64 = 0;
const CONTEXT_VIDEO: u64 = 1;

/// The meeting secret in a link's fragment. Every meeting is end-to-end
/// encrypted: `Err(())` for a link without a fragment, with an empty one,
/// or with one that is not a valid secret.
pub(crate) fn secret_from_link(link: &str) -> Result<MeetingSecret, ()> {
    let (_, fragment) = link.trim().split_once('#').ok_or(())?;
    // The browser's rules (secretFromHash) first, then the library's.
    let ok_chars = fragment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !(22..=128).contains(&fragment.len()) || !ok_chars || fragment.len() % 4 == 1 {
        return Err(());
    }
    MeetingSecret::from_base64url(fragment).map_err(|_| ())
}

/// What the session must do or report.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send this to the server.
    Send(ClientMsg),
    /// A new epoch: keys are installed.
    Epoch { epoch: u64, security_code: String },
    /// A member's display name from its encrypted profile.
    Profile { leaf: u32, participant_id: Option<ParticipantId>, display_name: String },
}

/// Our commit in flight (sent with its Welcome; the server routes both).
struct Inflight {
    joiners: Vec<ParticipantId>,
}

pub(crate) struct E2ee {
    room: String,
    secret: MeetingSecret,
    name: String,
    participant: Participant,
    media: MediaCrypto,
    /// Clock origin for the media keys' grace window.
    origin: Instant,
    self_id: ParticipantId,
    /// Leaves of the other participants known to be members.
    leaves: HashMap<ParticipantId, u32>,
    /// Display names by leaf, to name a participant whose profile came
    /// before its leaf was announced.
    names: HashMap<u32, String>,
    /// Join requests waiting for a commit.
    pending_joins: BTreeMap<ParticipantId, Vec<u8>>,
    /// Leaves of participants who left, to remove.
    removals: BTreeSet<u32>,
    inflight: Option<Inflight>,
    commit_at: Option<Instant>,
    join_at: Option<Instant>,
    profile_at: Option<Instant>,
    /// The room's epoch while we are known to be behind it, and when to
    /// rejoin if we still are.
    behind: Option<(u64, Instant)>,
    /// Times this participant lost its group state and asked to be added again.
    pub rejoins: u64,
    /// MLS operations that failed (reasons logged at debug, never content).
    pub errors: u64,
}

fn lib_err(what: &str, e: impl std::fmt::Display) {
    tracing::debug!("e2ee {what} failed: {e}");
}

impl E2ee {
    pub(crate) fn new(room: &str, secret: MeetingSecret, name: &str, self_id: ParticipantId) -> Result<E2ee, String> {
        let participant = Participant::new(room, secret.clone()).map_err(|e| e.to_string())?;
        Ok(E2ee {
            room: room.to_owned(),
            secret,
            name: name.to_owned(),
            participant,
            media: MediaCrypto::new(GRACE),
            origin: Instant::now(),
            self_id,
            leaves: HashMap::new(),
            names: HashMap::new(),
            pending_joins: BTreeMap::new(),
            removals: BTreeSet::new(),
            inflight: None,
            commit_at: None,
            join_at: None,
            profile_at: None,
            behind: None,
            rejoins: 0,
            errors: 0,
        })
    }

    fn fresh(&mut self) {
        match Participant::new(&self.room, self.secret.clone()) {
            Ok(p) => self.participant = p,
            Err(e) => {
                self.errors += 1;
                lib_err("new identity", e);
            }
        }
        self.media = MediaCrypto::new(GRACE);
        self.inflight = None;
        self.behind = None;
        self.names.clear();
    }

    /// Lost the group state (missed a commit): ask to be added again with a
    /// fresh identity; the committer replaces our old leaf (see `maybe_commit`).
    fn rejoin(&mut self, now: Instant) {
        self.rejoins += 1;
        self.fresh();
        self.join_at = Some(now);
    }

    /// The room is at `room_epoch`: if we stay below it for [`BEHIND_WAIT`], rejoin.
    fn note_behind(&mut self, room_epoch: u64, now: Instant) {
        let Some(ours) = self.participant.epoch() else { return };
        if room_epoch <= ours {
            return;
        }
        let at = self.behind.map_or(now + BEHIND_WAIT, |(_, at)| at);
        let room_epoch = self.behind.map_or(room_epoch, |(e, _)| e.max(room_epoch));
        self.behind = Some((room_epoch, at));
    }

    /// After `joined`: ask to be added, or (alone) wait a little for `create_group`.
    pub(crate) fn start(&mut self, others_present: bool, now: Instant) {
        self.join_at = Some(if others_present { now } else { now + CREATE_WAIT });
    }

    /// The earliest time [`E2ee::poll`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.commit_at, self.join_at, self.profile_at, self.behind.map(|(_, at)| at)].into_iter().flatten().min()
    }

    /// Runs the timers due by `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        if let Some((room_epoch, at)) = self.behind
            && at <= now
        {
            self.behind = None;
            if let Some(ours) = self.participant.epoch()
                && ours < room_epoch
            {
                tracing::info!(
                    ours,
                    room_epoch,
                    "end-to-end encryption: left behind the room's epoch; rejoining the group"
                );
                self.rejoin(now);
            }
        }
        if self.join_at.is_some_and(|t| t <= now) {
            self.join_at = None;
            if !self.participant.is_member() {
                match self.participant.join_request() {
                    Ok(req) => out.push(mls(&req)),
                    Err(e) => {
                        self.errors += 1;
                        lib_err("join request", e);
                    }
                }
                self.join_at = Some(now + JOIN_RETRY);
            }
        }
        if self.profile_at.is_some_and(|t| t <= now) {
            self.profile_at = None;
            self.send_profile(&mut out);
        }
        if self.commit_at.is_some_and(|t| t <= now) {
            self.commit_at = None;
            self.maybe_commit(&mut out);
        }
        out
    }

    pub(crate) fn on_create_group(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        self.join_at = None;
        if self.participant.is_member() {
            // The server lost the group (e.g. it restarted): start a new one.
            self.fresh();
        }
        if let Err(e) = self.participant.create() {
            self.errors += 1;
            lib_err("create", e);
            return out;
        }
        self.pending_joins.clear();
        self.removals.clear();
        if let Some(leaf) = self.participant.own_leaf() {
            out.push(Out::Send(ClientMsg::GroupMember { leaf }));
        }
        self.new_epoch(false, Instant::now(), &mut out);
        out
    }

    pub(crate) fn on_mls(&mut self, from: ParticipantId, envelope: &str, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(envelope) else {
            return out;
        };
        let (kind, commit_epoch) = match Envelope::decode(&bytes) {
            Ok(Envelope::Commit { epoch, .. }) => (KIND_COMMIT, Some(epoch)),
            Ok(e) => (e.kind(), None),
            Err(_) => return out,
        };
        if let (Some(epoch), Some(ours)) = (commit_epoch, self.participant.epoch())
            && epoch > ours
        {
            // A commit from an epoch after ours: we missed a commit and
            // can follow the group no more. Rejoin with a fresh identity;
            // the committer replaces our old leaf (see `maybe_commit`).
            tracing::info!(ours, epoch, "end-to-end encryption: missed a commit; rejoining the group");
            self.rejoin(now);
            return out;
        }
        if kind == KIND_JOIN_REQUEST {
            self.on_join_request(from, bytes, now);
            return out;
        }
        if kind == KIND_WELCOME && self.participant.is_member() {
            return out;
        }
        match self.participant.process(&bytes) {
            Ok(ev) => self.on_event(ev, now, &mut out),
            Err(e) => {
                self.errors += 1;
                let ours = self.participant.epoch();
                match &e {
                    GroupError::FutureEpoch { message, .. } => self.note_behind(*message, now),
                    // A commit at our epoch that we cannot apply: the room
                    // moved on without us.
                    _ if commit_epoch.is_some() && commit_epoch == ours => {
                        self.note_behind(ours.unwrap_or_default() + 1, now);
                    }
                    _ => {}
                }
                lib_err("process", e);
            }
        }
        out
    }

    fn on_join_request(&mut self, from: ParticipantId, bytes: Vec<u8>, now: Instant) {
        if from == self.self_id || !self.participant.is_member() {
            return;
        }
        if self.participant.verify_join_request(&bytes).is_err() {
            // A wrong secret (or a forged request): never added.
            self.pending_joins.remove(&from);
            return;
        }
        self.pending_joins.insert(from, bytes);
        self.schedule_commit(now);
    }

    /// A participant's leaf from `joined`, `participant_joined` or `participant_updated`.
    pub(crate) fn participant_leaf(&mut self, id: ParticipantId, leaf: Option<u32>, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(leaf) = leaf else { return out };
        if id == self.self_id {
            return out;
        }
        let before = self.leaves.insert(id, leaf);
        if before != Some(leaf)
            && let Some(name) = self.names.get(&leaf)
        {
            out.push(Out::Profile { leaf, participant_id: Some(id), display_name: name.clone() });
        }
        self.pending_joins.remove(&id);
        // Its join is done and the server now relays application messages
        // to it: send our profile (batched).
        if before != Some(leaf) && self.profile_at.is_none() {
            self.profile_at = Some(now + COMMIT_BATCH);
        }
        out
    }

    /// A participant left the room.
    pub(crate) fn participant_left(&mut self, id: ParticipantId, now: Instant) {
        self.pending_joins.remove(&id);
        if let Some(leaf) = self.leaves.remove(&id)
            && Some(leaf) != self.participant.own_leaf()
        {
            self.removals.insert(leaf);
            self.schedule_commit(now);
        }
    }

    fn on_event(&mut self, ev: Event, now: Instant, out: &mut Vec<Out>) {
        match ev {
            Event::Joined { own_leaf, .. } => {
                self.join_at = None;
                out.push(Out::Send(ClientMsg::GroupMember { leaf: own_leaf }));
                self.new_epoch(true, now, out);
            }
            Event::EpochChanged { added, removed, .. } => {
                for l in removed.iter().chain(added.iter()) {
                    self.removals.remove(l);
                }
                self.new_epoch(!added.is_empty(), now, out);
            }
            Event::Removed => {
                // Removed by mistake or as a leftover: ask to be added again.
                self.rejoin(now);
            }
            Event::Profile { sender, display_name } => {
                let participant_id = self.leaves.iter().find(|(_, l)| **l == sender).map(|(id, _)| *id);
                self.names.insert(sender, display_name.clone());
                out.push(Out::Profile { leaf: sender, participant_id, display_name });
            }
            _ => {}
        }
    }

    /// New epoch (joined, created, or a commit applied): keys, code, profile.
    fn new_epoch(&mut self, send_profile: bool, now: Instant, out: &mut Vec<Out>) {
        if self.behind.is_some_and(|(room, _)| self.participant.epoch().is_some_and(|e| e >= room)) {
            self.behind = None;
        }
        match (self.participant.epoch_keys(), self.participant.security_code()) {
            (Ok(keys), Ok(code)) => {
                let epoch = keys.epoch;
                self.media.set_epoch_keys(keys, self.origin.elapsed());
                out.push(Out::Epoch { epoch, security_code: code.to_string() });
            }
            (Err(e), _) | (_, Err(e)) => {
                self.errors += 1;
                lib_err("keys", e);
            }
        }
        if send_profile {
            self.send_profile(out);
        }
        if !self.pending_joins.is_empty() || !self.removals.is_empty() {
            self.schedule_commit(now);
        }
    }

    fn send_profile(&mut self, out: &mut Vec<Out>) {
        if !self.participant.is_member() {
            return;
        }
        match self.participant.send(&AppMessage::Profile { display_name: self.name.clone() }) {
            Ok(env) => out.push(mls(&env)),
            Err(e) => {
                self.errors += 1;
                lib_err("profile", e);
            }
        }
    }

    fn schedule_commit(&mut self, now: Instant) {
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
    fn maybe_commit(&mut self, out: &mut Vec<Out>) {
        let p = &mut self.participant;
        if !p.is_member() || p.has_pending_commit() || self.inflight.is_some() {
            return;
        }
        let online = self.online_leaves();
        if !self.participant.is_committer(&online) {
            return;
        }
        let members: BTreeSet<u32> = match self.participant.roster() {
            Ok(r) => r.iter().map(|e| e.leaf).collect(),
            Err(_) => return,
        };
        let own = self.participant.own_leaf();
        self.removals.retain(|l| members.contains(l));
        let joiners: Vec<ParticipantId> = self.pending_joins.keys().copied().collect();
        // A member asking to join again lost its group state (it missed a
        // commit): its old leaf goes in the same commit that adds it anew.
        let rejoining = joiners.iter().filter_map(|id| self.leaves.get(id)).filter(|l| members.contains(l));
        let removes: Vec<u32> = self
            .removals
            .iter()
            .copied()
            .chain(rejoining.copied())
            .filter(|l| Some(*l) != own)
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        if joiners.is_empty() && removes.is_empty() {
            return;
        }
        let requests: Vec<&[u8]> =
            joiners.iter().filter_map(|id| self.pending_joins.get(id).map(Vec::as_slice)).collect();
        let result = self.participant.commit(&requests, &removes);
        match result {
            Ok(c) => {
                for (i, _) in &c.rejected {
                    if let Some(id) = joiners.get(*i) {
                        self.pending_joins.remove(id);
                    }
                }
                self.inflight = Some(Inflight { joiners });
                // The Welcome travels with its commit: the server routes it
                // in the same step as it accepts the commit.
                out.push(Out::Send(ClientMsg::Mls {
                    envelope: URL_SAFE_NO_PAD.encode(&c.commit),
                    welcome: c.welcome.map(|w| URL_SAFE_NO_PAD.encode(w)),
                }));
            }
            Err(e) => {
                self.errors += 1;
                lib_err("commit", e);
            }
        }
    }

    pub(crate) fn on_commit_accepted(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let inflight = self.inflight.take();
        if !self.participant.has_pending_commit() {
            return out;
        }
        let ev = match self.participant.commit_accepted() {
            Ok(ev) => ev,
            Err(e) => {
                self.errors += 1;
                lib_err("commit accepted", e);
                return out;
            }
        };
        for id in inflight.iter().flat_map(|i| &i.joiners) {
            self.pending_joins.remove(id);
        }
        self.on_event(ev, now, &mut out);
        out
    }

    /// The server refused our commit; the room is at `current_epoch`.
    pub(crate) fn on_commit_rejected(&mut self, current_epoch: u64, now: Instant) {
        self.inflight = None;
        if self.participant.has_pending_commit()
            && let Err(e) = self.participant.commit_rejected()
        {
            self.errors += 1;
            lib_err("commit rejected", e);
        }
        // The winning commit arrives as `mls` (before this answer); its
        // epoch event retries. If the room is past our epoch anyway, we
        // missed it.
        self.note_behind(current_epoch, now);
    }

    /// Encrypts one of our frames; `None` while there are no keys (the
    /// frame is dropped: nothing leaves in clear).
    pub(crate) fn encrypt(&mut self, video: bool, frame: &[u8]) -> Option<Vec<u8>> {
        let (context, codec) = if video { (CONTEXT_VIDEO, Codec::Vp8) } else { (CONTEXT_AUDIO, Codec::Opus) };
        self.media.encrypt(context, codec, frame).ok()
    }

    /// Decrypts one received frame; if it cannot be, what to do with it
    /// (a replay is dropped silently, see [`Disposition`]).
    pub(crate) fn decrypt(&mut self, video: bool, frame: &[u8]) -> Result<Vec<u8>, Disposition> {
        let codec = if video { Codec::Vp8 } else { Codec::Opus };
        self.media.decrypt(codec, frame, self.origin.elapsed()).map(|d| d.frame).map_err(|e| {
            // KIDs travel in clear; the reason says which keys were missing.
            tracing::debug!(video, epoch = ?self.media.epoch(), error = %e, "frame not decrypted");
            self.media.disposition(&e)
        })
    }
}

fn mls(envelope: &[u8]) -> Out {
    Out::Send(ClientMsg::Mls { envelope: URL_SAFE_NO_PAD.encode(envelope), welcome: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plenary_e2ee::envelope::KIND_APPLICATION;

    /// Participants and a minimal Delivery Service between them (the
    /// server's rules: the first commit per epoch is accepted and goes to
    /// every other member, its Welcome to the joiners; later ones are
    /// rejected; join requests and application messages go to members).
    struct Meeting {
        parts: Vec<E2ee>,
        /// The group's epoch at the server.
        room_epoch: Option<u64>,
        /// The next commit does not reach this participant (it misses it)...
        deaf: Option<usize>,
        /// ...or reaches it damaged, so it cannot apply it.
        garble: bool,
        /// Application messages do not reach this participant.
        mute: Option<usize>,
    }

    impl Meeting {
        fn new(n: usize) -> Meeting {
            let secret = MeetingSecret::random().expect("secret");
            let parts = (0..n)
                .map(|i| {
                    E2ee::new("room", secret.clone(), &format!("P{i}"), ParticipantId(i as u64 + 1)).expect("e2ee")
                })
                .collect();
            Meeting { parts, room_epoch: None, deaf: None, garble: false, mute: None }
        }

        fn id(i: usize) -> ParticipantId {
            ParticipantId(i as u64 + 1)
        }

        /// Delivers `outs` of participant `from` and everything they cause.
        fn run(&mut self, from: usize, outs: Vec<Out>) {
            let mut queue: Vec<(usize, Out)> = outs.into_iter().map(|o| (from, o)).collect();
            while !queue.is_empty() {
                let (from, out) = queue.remove(0);
                let now = Instant::now();
                match out {
                    Out::Send(ClientMsg::Mls { envelope, welcome }) => {
                        let bytes = URL_SAFE_NO_PAD.decode(&envelope).expect("base64");
                        let decoded = Envelope::decode(&bytes).expect("envelope");
                        let kind = decoded.kind();
                        if let Envelope::Commit { epoch, .. } = decoded {
                            if self.room_epoch.is_some_and(|e| e != epoch) {
                                let current = self.room_epoch.unwrap_or_default();
                                self.parts[from].on_commit_rejected(current, now);
                                continue;
                            }
                            self.room_epoch = Some(epoch + 1);
                        }
                        let members: Vec<bool> = self.parts.iter().map(|p| p.participant.is_member()).collect();
                        for to in (0..self.parts.len()).filter(|t| *t != from && members[*t]) {
                            let mut envelope = envelope.clone();
                            if kind == KIND_COMMIT && self.deaf == Some(to) {
                                self.deaf = None;
                                if !self.garble {
                                    continue;
                                }
                                let mut damaged = bytes.clone();
                                if let Some(b) = damaged.last_mut() {
                                    *b ^= 0x55;
                                }
                                envelope = URL_SAFE_NO_PAD.encode(damaged);
                            }
                            if kind == KIND_APPLICATION && self.mute == Some(to) {
                                continue;
                            }
                            let outs = self.parts[to].on_mls(Self::id(from), &envelope, now);
                            queue.extend(outs.into_iter().map(|o| (to, o)));
                        }
                        // The Welcome, routed with its commit, to those not in the group.
                        let joiners = (0..members.len()).filter(|t| !members[*t]);
                        for (to, w) in joiners.flat_map(|t| welcome.as_deref().map(|w| (t, w))) {
                            let outs = self.parts[to].on_mls(Self::id(from), w, now);
                            queue.extend(outs.into_iter().map(|o| (to, o)));
                        }
                        if kind == KIND_COMMIT {
                            let outs = self.parts[from].on_commit_accepted(now);
                            queue.extend(outs.into_iter().map(|o| (from, o)));
                        }
                    }
                    Out::Send(ClientMsg::GroupMember { leaf }) => {
                        for to in (0..self.parts.len()).filter(|t| *t != from) {
                            let outs = self.parts[to].participant_leaf(Self::id(from), Some(leaf), now);
                            queue.extend(outs.into_iter().map(|o| (to, o)));
                        }
                    }
                    _ => {}
                }
            }
        }

        /// Runs every participant's timers until nothing is due within 10 s
        /// of simulated waiting.
        fn settle(&mut self) {
            for _ in 0..50 {
                let mut any = false;
                for i in 0..self.parts.len() {
                    if self.parts[i].next_deadline().is_some() {
                        any = true;
                        // Timers are short (batching, retries): run them now.
                        let outs = self.parts[i].poll(Instant::now() + Duration::from_secs(10));
                        self.run(i, outs);
                    }
                }
                if !any {
                    return;
                }
            }
        }

        fn epochs(&self) -> Vec<Option<u64>> {
            self.parts.iter().map(|p| p.participant.epoch()).collect()
        }

        /// `all` participants; the first `n` form the group, the others wait.
        fn started(n: usize, all: usize) -> Meeting {
            let mut m = Meeting::new(all);
            let outs = m.parts[0].on_create_group();
            m.run(0, outs);
            for i in 1..n {
                m.parts[i].start(true, Instant::now());
            }
            m.settle();
            let epochs = m.epochs();
            assert!(epochs[..n].iter().all(|e| e.is_some() && *e == epochs[0]), "{n} in one epoch: {epochs:?}");
            m
        }

        /// Everyone in one epoch with one security code, decrypting each other.
        fn assert_one_group(&mut self) {
            let epochs = self.epochs();
            assert!(epochs.iter().all(|e| e.is_some() && *e == epochs[0]), "all in one epoch: {epochs:?}");
            let codes: Vec<String> =
                self.parts.iter().map(|p| p.participant.security_code().expect("code").to_string()).collect();
            assert!(codes.iter().all(|c| *c == codes[0]), "one security code");
            let n = self.parts.len();
            for (from, to) in (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).filter(|(a, b)| a != b) {
                let frame = self.parts[from].encrypt(false, &[0xfc, 1, 2, 3, 4]).expect("keys");
                assert!(self.parts[to].decrypt(false, &frame).is_ok(), "{to} decrypts {from}");
            }
            assert_eq!(self.parts[0].participant.member_count().expect("count"), n, "no leftover leaves");
        }
    }

    #[test]
    fn a_member_that_missed_a_commit_rejoins_and_decrypts_again() {
        let mut m = Meeting::started(3, 4);
        let now = Instant::now();
        // Participant 2 misses the commit that adds participant 3, and
        // every message after it.
        m.deaf = Some(2);
        m.mute = Some(2);
        m.parts[3].start(true, now);
        m.settle();
        m.mute = None;
        let behind = m.epochs();
        assert!(behind[2] < behind[0] && behind[3] == behind[0], "2 is behind: {behind:?}");

        // The next commit (someone leaves) shows 2 that it is behind; its
        // old leaf is removed in the commit that adds it anew.
        m.parts[0].participant_left(Meeting::id(3), now);
        m.parts[1].participant_left(Meeting::id(3), now);
        m.parts[2].participant_left(Meeting::id(3), now);
        m.parts.truncate(3);
        m.settle();
        assert_eq!(m.parts[2].rejoins, 1);
        m.assert_one_group();
    }

    /// The stuck joiner at 30, generalised: a member misses a commit and no
    /// later commit comes. The others' messages from the later epoch (here
    /// the newcomer's and the others' profiles) tell it that it is behind;
    /// it waits [`BEHIND_WAIT`] for the missing commit, then rejoins.
    #[test]
    fn a_member_left_behind_with_no_later_commit_rejoins() {
        let mut m = Meeting::started(3, 4);
        m.deaf = Some(2);
        m.parts[3].start(true, Instant::now());
        m.settle();
        assert_eq!(m.parts[2].rejoins, 1, "2 rejoined once");
        assert!(m.parts.iter().enumerate().all(|(i, p)| i == 2 || p.rejoins == 0), "nobody else did");
        m.assert_one_group();
    }

    /// Two members briefly disagree on the committer: 1 commits adding 3,
    /// the committer 0 misses that commit, and its own commit for the same
    /// epoch is rejected with the room's `current_epoch`. No commit follows:
    /// 0 rejoins, and while it asks to be added again the next member
    /// commits in its place.
    #[test]
    fn a_committer_whose_commit_lost_to_one_it_missed_rejoins() {
        let mut m = Meeting::started(3, 4);
        let leaf0 = m.parts[1].leaves.remove(&Meeting::id(0)).expect("1 knows 0's leaf");
        m.deaf = Some(0);
        m.mute = Some(0);
        m.parts[3].start(true, Instant::now());
        let outs = m.parts[3].poll(Instant::now());
        m.run(3, outs);
        // Both commit at once; 1's reaches the server first.
        let later = Instant::now() + Duration::from_secs(1);
        let (outs1, outs0) = (m.parts[1].poll(later), m.parts[0].poll(later));
        m.run(1, outs1);
        m.parts[1].leaves.insert(Meeting::id(0), leaf0);
        assert!(m.parts[3].participant.is_member(), "1 added 3");
        m.run(0, outs0);
        assert!(m.parts[0].next_deadline().is_some(), "0 waits for the commit it lacks");
        m.settle();
        assert_eq!(m.parts[0].rejoins, 1, "0 rejoined once");
        m.assert_one_group();
    }

    /// A member that cannot apply a commit made at its own epoch (here it
    /// arrives damaged) can follow the group no more: it rejoins.
    #[test]
    fn a_member_that_cannot_apply_a_commit_at_its_epoch_rejoins() {
        let mut m = Meeting::started(3, 4);
        m.deaf = Some(2);
        m.garble = true;
        m.mute = Some(2);
        m.parts[3].start(true, Instant::now());
        m.settle();
        assert_eq!(m.parts[2].rejoins, 1, "2 rejoined once");
        m.assert_one_group();
    }

    #[test]
    fn secrets_from_links() {
        assert!(secret_from_link("http://h/m/r").is_err());
        assert!(secret_from_link("http://h/m/r#").is_err());
        assert!(secret_from_link("http://h/m/r#AAECAwQFBgcICQoLDA0ODw").is_ok());
        assert!(secret_from_link("http://h/m/r#short").is_err());
        assert!(secret_from_link("http://h/m/r#AAECAwQFBgcICQoLDA0OD!").is_err());
    }
}
