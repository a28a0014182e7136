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
use plenary_e2ee::group::{Event, Participant};
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

/// Our commit in flight.
struct Inflight {
    welcome: Option<Vec<u8>>,
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
        self.names.clear();
    }

    /// After `joined`: ask to be added, or (alone) wait a little for `create_group`.
    pub(crate) fn start(&mut self, others_present: bool, now: Instant) {
        self.join_at = Some(if others_present { now } else { now + CREATE_WAIT });
    }

    /// The earliest time [`E2ee::poll`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.commit_at, self.join_at, self.profile_at].into_iter().flatten().min()
    }

    /// Runs the timers due by `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
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
        self.new_epoch(false, &mut out);
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
            self.fresh();
            self.join_at = Some(now);
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
                self.new_epoch(true, out);
            }
            Event::EpochChanged { added, removed, .. } => {
                for l in removed.iter().chain(added.iter()) {
                    self.removals.remove(l);
                }
                self.new_epoch(!added.is_empty(), out);
            }
            Event::Removed => {
                // Removed by mistake or as a leftover: ask to be added again.
                self.fresh();
                self.join_at = Some(now);
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
    fn new_epoch(&mut self, send_profile: bool, out: &mut Vec<Out>) {
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
            self.schedule_commit(Instant::now());
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

    fn online_leaves(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.leaves.values().copied().collect();
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
                self.inflight = Some(Inflight { welcome: c.welcome, joiners });
                out.push(mls(&c.commit));
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
        if let Some(i) = inflight {
            if let Some(w) = &i.welcome {
                out.push(mls(w));
            }
            for id in &i.joiners {
                self.pending_joins.remove(id);
            }
        }
        self.on_event(ev, now, &mut out);
        out
    }

    pub(crate) fn on_commit_rejected(&mut self) {
        self.inflight = None;
        if !self.participant.has_pending_commit() {
            return;
        }
        if let Err(e) = self.participant.commit_rejected() {
            self.errors += 1;
            lib_err("commit rejected", e);
        }
        // The winning commit arrives as `mls`; its epoch event retries.
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
        self.media.decrypt(codec, frame, self.origin.elapsed()).map(|d| d.frame).map_err(|e| self.media.disposition(&e))
    }
}

fn mls(envelope: &[u8]) -> Out {
    Out::Send(ClientMsg::Mls { envelope: URL_SAFE_NO_PAD.encode(envelope) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Participants and a minimal Delivery Service between them (the
    /// server's rules: commits to every other member and joiner, Welcomes
    /// to joiners, join requests and application messages to members).
    struct Meeting {
        parts: Vec<E2ee>,
        /// Commits not delivered to this participant (it misses them).
        deaf: Option<usize>,
    }

    impl Meeting {
        fn new(n: usize) -> Meeting {
            let secret = MeetingSecret::random().expect("secret");
            let parts = (0..n)
                .map(|i| {
                    E2ee::new("room", secret.clone(), &format!("P{i}"), ParticipantId(i as u64 + 1)).expect("e2ee")
                })
                .collect();
            Meeting { parts, deaf: None }
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
                    Out::Send(ClientMsg::Mls { envelope }) => {
                        let bytes = URL_SAFE_NO_PAD.decode(&envelope).expect("base64");
                        let kind = Envelope::decode(&bytes).expect("envelope").kind();
                        for to in 0..self.parts.len() {
                            let member = self.parts[to].participant.is_member();
                            let deliver = to != from
                                && match kind {
                                    KIND_COMMIT => self.deaf != Some(to),
                                    KIND_JOIN_REQUEST => member,
                                    KIND_WELCOME => !member,
                                    _ => member,
                                };
                            if deliver {
                                let outs = self.parts[to].on_mls(Self::id(from), &envelope, now);
                                queue.extend(outs.into_iter().map(|o| (to, o)));
                            }
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
    }

    #[test]
    fn a_member_that_missed_a_commit_rejoins_and_decrypts_again() {
        let mut m = Meeting::new(4);
        let now = Instant::now();
        let outs = m.parts[0].on_create_group();
        m.run(0, outs);
        for i in 1..3 {
            m.parts[i].start(true, now);
        }
        m.settle();
        let epochs = m.epochs();
        assert!(epochs[..3].iter().all(|e| e.is_some() && *e == epochs[0]), "three in one epoch: {epochs:?}");

        // Participant 2 misses the commit that adds participant 3.
        m.deaf = Some(2);
        m.parts[3].start(true, now);
        m.settle();
        m.deaf = None;
        let behind = m.epochs();
        assert!(behind[2] < behind[0] && behind[3] == behind[0], "2 is behind: {behind:?}");

        // The next commit (someone leaves) shows 2 that it is behind.
        m.parts[0].participant_left(Meeting::id(3), now);
        m.parts[1].participant_left(Meeting::id(3), now);
        m.parts[2].participant_left(Meeting::id(3), now);
        m.parts.truncate(3);
        m.settle();
        let healed = m.epochs();
        assert!(healed.iter().all(|e| e.is_some() && *e == healed[0]), "all in one epoch again: {healed:?}");
        let codes: Vec<String> =
            m.parts.iter().map(|p| p.participant.security_code().expect("code").to_string()).collect();
        assert!(codes.iter().all(|c| *c == codes[0]), "one security code");
        // Everyone decrypts 2's audio, and 2 decrypts everyone's.
        for (from, to) in [(2, 0), (2, 1), (0, 2), (1, 2)] {
            let frame = m.parts[from].encrypt(false, &[0xfc, 1, 2, 3, 4]).expect("keys");
            assert!(m.parts[to].decrypt(false, &frame).is_ok(), "{to} decrypts {from}");
        }
        // Its old leaf is gone: three leaves for three participants.
        assert_eq!(m.parts[0].participant.member_count().expect("count"), 3);
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
