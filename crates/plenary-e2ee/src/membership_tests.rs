//! Several members driven through [`Membership`] in virtual time, with a
//! minimal Delivery Service between them (the server's rules: the first
//! commit per epoch is accepted and goes to every other member, its Welcome
//! to the joiners still present; later ones are rejected with the room's
//! epoch; join requests and application messages go to members).

use std::collections::VecDeque;

use super::*;
use crate::envelope::{KIND_APPLICATION, KIND_COMMIT};
use crate::media::{Codec, MediaCrypto};

struct Meeting {
    parts: Vec<Membership>,
    /// Media keys each participant installed.
    media: Vec<MediaCrypto>,
    /// Connected to the server (a participant that left receives nothing).
    present: Vec<bool>,
    /// Announced membership (`group_member`) to the server.
    announced: Vec<bool>,
    /// The group's epoch at the server.
    room_epoch: Option<u64>,
    now: Duration,
    /// While set, messages wait at the server until [`Meeting::release`].
    hold: bool,
    held: VecDeque<(usize, Outgoing)>,
    /// The next commit does not reach this participant (it misses it)...
    deaf: Option<usize>,
    /// ...or reaches it damaged, so it cannot apply it.
    garble: bool,
    /// Application messages do not reach this participant.
    mute: Option<usize>,
    /// Operations that failed, per participant.
    failures: Vec<Vec<MembershipError>>,
}

fn id(i: usize) -> ParticipantId {
    i as ParticipantId + 1
}

impl Meeting {
    fn new(n: usize) -> Meeting {
        let secret = MeetingSecret::random().expect("secret");
        Meeting::with_secrets(vec![secret; n])
    }

    fn with_secrets(secrets: Vec<MeetingSecret>) -> Meeting {
        let n = secrets.len();
        let parts = secrets
            .into_iter()
            .enumerate()
            .map(|(i, s)| Membership::new("room", s, &format!("P{i}"), id(i)).expect("membership"))
            .collect();
        Meeting {
            parts,
            media: (0..n).map(|_| MediaCrypto::new(Duration::from_secs(2))).collect(),
            present: vec![true; n],
            announced: vec![false; n],
            room_epoch: None,
            now: Duration::ZERO,
            hold: false,
            held: VecDeque::new(),
            deaf: None,
            garble: false,
            mute: None,
            failures: vec![Vec::new(); n],
        }
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        let actions = self.parts[i].handle(input, self.now);
        self.run(i, actions);
    }

    /// Carries out participant `i`'s actions and everything they cause.
    fn run(&mut self, i: usize, actions: Vec<Action>) {
        let mut queue: VecDeque<(usize, Action)> = actions.into_iter().map(|a| (i, a)).collect();
        while let Some((from, action)) = queue.pop_front() {
            match action {
                Action::Send(msg) if self.hold => self.held.push_back((from, msg)),
                Action::Send(msg) => {
                    for (to, input) in self.server(from, msg) {
                        let actions = match &input {
                            Owned::Mls(bytes) => {
                                self.parts[to].handle(Input::Mls { from: id(from), envelope: bytes }, self.now)
                            }
                            Owned::Input(input) => self.parts[to].handle(*input, self.now),
                        };
                        queue.extend(actions.into_iter().map(|a| (to, a)));
                    }
                }
                Action::NewEpoch { keys, reset, .. } => {
                    if reset {
                        self.media[from] = MediaCrypto::new(Duration::from_secs(2));
                    }
                    self.media[from].set_epoch_keys(keys, self.now);
                }
                Action::Failed(e) => self.failures[from].push(e),
                _ => {}
            }
        }
    }

    /// The Delivery Service: what one message from `from` makes the server send.
    fn server(&mut self, from: usize, msg: Outgoing) -> Vec<(usize, Owned)> {
        let mut out = Vec::new();
        if !self.present[from] {
            return out;
        }
        let n = self.parts.len();
        // Joiners sent a Welcome are members before they announce.
        let members: Vec<usize> = (0..n)
            .filter(|t| self.present[*t] && (self.announced[*t] || self.parts[*t].participant().is_member()))
            .collect();
        match msg {
            Outgoing::GroupMember { leaf } => {
                self.announced[from] = true;
                for to in (0..n).filter(|t| *t != from && self.present[*t]) {
                    out.push((to, Owned::Input(Input::ParticipantLeaf { id: id(from), leaf })));
                }
            }
            Outgoing::Mls { envelope, welcome } => {
                let decoded = Envelope::decode(&envelope).expect("envelope");
                let kind = decoded.kind();
                if kind == KIND_JOIN_REQUEST {
                    self.announced[from] = false;
                    for to in members.iter().filter(|t| **t != from) {
                        out.push((*to, Owned::Mls(envelope.clone())));
                    }
                    return out;
                }
                if let Envelope::Commit { epoch, .. } = decoded {
                    if self.room_epoch.is_some_and(|e| e != epoch) {
                        let current_epoch = self.room_epoch.unwrap_or_default();
                        out.push((from, Owned::Input(Input::CommitRejected { current_epoch })));
                        return out;
                    }
                    self.room_epoch = Some(epoch + 1);
                }
                for to in members.iter().copied().filter(|t| *t != from) {
                    let mut envelope = envelope.clone();
                    if kind == KIND_COMMIT && self.deaf == Some(to) {
                        self.deaf = None;
                        if !self.garble {
                            continue;
                        }
                        if let Some(b) = envelope.last_mut() {
                            *b ^= 0x55;
                        }
                    }
                    if kind == KIND_APPLICATION && self.mute == Some(to) {
                        continue;
                    }
                    out.push((to, Owned::Mls(envelope)));
                }
                // The Welcome, routed with its commit, to joiners still present.
                if let Some(w) = welcome {
                    for to in (0..n).filter(|t| self.present[*t] && !members.contains(t)) {
                        out.push((to, Owned::Mls(w.clone())));
                    }
                }
                if kind == KIND_COMMIT {
                    out.push((from, Owned::Input(Input::CommitAccepted)));
                }
            }
        }
        out
    }

    /// The server processes the held messages, in the order they came.
    fn release(&mut self) {
        self.hold = false;
        while let Some((from, msg)) = self.held.pop_front() {
            self.run(from, vec![Action::Send(msg)]);
        }
    }

    /// Participant `i` disconnects; the server tells the others.
    fn leave(&mut self, i: usize) {
        self.present[i] = false;
        self.announced[i] = false;
        let others: Vec<usize> = (0..self.parts.len()).filter(|t| self.present[*t]).collect();
        for to in others {
            self.input(to, Input::ParticipantLeft { id: id(i) });
        }
    }

    /// Participant `i` joins the room (others are there).
    fn join(&mut self, i: usize) {
        for (to, leaf) in (0..self.parts.len())
            .filter(|t| *t != i && self.present[*t] && self.announced[*t])
            .filter_map(|t| self.parts[t].participant().own_leaf().map(|l| (t, l)))
            .collect::<Vec<_>>()
        {
            self.input(i, Input::ParticipantLeaf { id: id(to), leaf });
        }
        self.input(i, Input::Start { others_present: true });
    }

    /// Runs the timers in virtual time until nothing is due for 60 s.
    fn settle(&mut self) {
        let horizon = self.now + Duration::from_secs(60);
        for _ in 0..1000 {
            let next = (0..self.parts.len())
                .filter(|i| self.present[*i])
                .filter_map(|i| self.parts[i].next_deadline().map(|t| (t, i)))
                .min();
            match next {
                Some((t, i)) if t <= horizon => {
                    self.now = self.now.max(t);
                    self.input(i, Input::Timeout);
                }
                _ => return,
            }
        }
        panic!("no quiet after 1000 timers");
    }

    fn epochs(&self) -> Vec<Option<u64>> {
        self.parts.iter().map(|p| p.participant().epoch()).collect()
    }

    /// `all` participants; the first `n` form the group, the others wait.
    fn started(n: usize, all: usize) -> Meeting {
        let mut m = Meeting::new(all);
        m.input(0, Input::CreateGroup);
        for i in 1..n {
            m.join(i);
        }
        m.settle();
        let epochs = m.epochs();
        assert!(epochs[..n].iter().all(|e| e.is_some() && *e == epochs[0]), "{n} in one epoch: {epochs:?}");
        m
    }

    fn rejoins(&self) -> Vec<u64> {
        self.parts.iter().map(Membership::rejoins).collect()
    }

    /// The participants present are one group: one epoch, one security
    /// code, no other leaves, and everyone decrypts everyone's media.
    fn assert_one_group(&mut self) {
        let here: Vec<usize> = (0..self.parts.len()).filter(|i| self.present[*i]).collect();
        let epochs: Vec<Option<u64>> = here.iter().map(|i| self.parts[*i].participant().epoch()).collect();
        assert!(epochs.iter().all(|e| e.is_some() && *e == epochs[0]), "all in one epoch: {epochs:?}");
        let codes: Vec<String> =
            here.iter().map(|i| self.parts[*i].participant().security_code().expect("code").to_string()).collect();
        assert!(codes.iter().all(|c| *c == codes[0]), "one security code");
        for &from in &here {
            let frame = self.media[from].encrypt(0, Codec::Opus, &[0xfc, 1, 2, 3, 4]).expect("keys");
            for &to in here.iter().filter(|t| **t != from) {
                assert!(self.media[to].decrypt(Codec::Opus, &frame, self.now).is_ok(), "{to} decrypts {from}");
            }
        }
        let count = self.parts[here[0]].participant().member_count().expect("count");
        assert_eq!(count, here.len(), "no leftover leaves");
    }
}

/// What the server hands a participant.
enum Owned {
    Mls(Vec<u8>),
    Input(Input<'static>),
}

#[test]
fn a_burst_of_joiners_is_added_in_one_commit() {
    let mut m = Meeting::started(1, 6);
    for i in 1..6 {
        m.join(i);
    }
    m.settle();
    assert_eq!(m.epochs(), vec![Some(1); 6], "one epoch for five joiners");
    assert_eq!(m.rejoins(), vec![0; 6]);
    m.assert_one_group();
    // Every name reached everyone through the encrypted profiles.
    for p in &m.parts {
        let roster = p.participant().roster().expect("roster");
        assert!(roster.iter().all(|r| r.display_name.is_some()), "names known");
    }
}

#[test]
fn the_continuity_token_reaches_the_others_with_the_name() {
    let mut m = Meeting::new(3);
    m.parts[1].set_continuity([1; 16]);
    m.input(0, Input::CreateGroup);
    m.join(1);
    m.join(2);
    m.settle();
    m.assert_one_group();
    for p in [0, 2] {
        let roster = m.parts[p].participant().roster().expect("roster");
        let of = |leaf_of: usize| {
            let leaf = m.parts[leaf_of].participant().own_leaf().expect("leaf");
            roster.iter().find(|r| r.leaf == leaf).map(|r| r.continuity).expect("member")
        };
        assert_eq!(of(1), Some([1; 16]), "token of the one who set it");
        assert_eq!(of(if p == 0 { 2 } else { 0 }), None, "none from who set none");
    }
}

#[test]
fn a_wrong_secret_is_never_added_and_disturbs_nobody() {
    let good = MeetingSecret::random().expect("secret");
    let bad = MeetingSecret::random().expect("secret");
    let mut m = Meeting::with_secrets(vec![good.clone(), good, bad]);
    m.input(0, Input::CreateGroup);
    m.join(1);
    m.join(2);
    m.settle();
    assert!(!m.parts[2].participant().is_member());
    assert_eq!(m.epochs()[..2], [Some(1), Some(1)]);
    assert_eq!(m.parts[0].participant().member_count().expect("count"), 2);
}

/// Two members briefly disagree on the committer and commit at the same
/// epoch: the server takes the first; the second processes the winner,
/// gets `commit_rejected`, and commits again what the winner left out.
#[test]
fn concurrent_commits_one_wins_the_other_retries() {
    let mut m = Meeting::started(3, 5);
    let start = m.epochs()[0].expect("epoch");
    let leaf0 = m.parts[1].leaves.remove(&id(0)).expect("1 knows 0's leaf");
    m.join(3);
    m.join(4);
    // 1 saw only 3's request; 0 saw both.
    m.parts[1].pending_joins.remove(&id(4));
    m.hold = true;
    let later = m.now + COMMIT_BATCH;
    m.now = later;
    m.input(1, Input::Timeout);
    m.input(0, Input::Timeout);
    assert_eq!(m.held.len(), 2, "both committed");
    m.parts[1].leaves.insert(id(0), leaf0);
    m.release();
    m.settle();
    assert_eq!(m.rejoins(), vec![0; 5], "nobody lost the group");
    assert_eq!(m.epochs(), vec![Some(start + 2); 5], "1's commit, then 0's retry");
    m.assert_one_group();
}

/// A participant leaves: the committer removes it, the keys rotate, and
/// a frame of the new epoch does not decrypt with its last keys.
#[test]
fn a_leave_rotates_the_keys() {
    let mut m = Meeting::started(3, 3);
    let before = m.epochs()[0].expect("epoch");
    m.leave(2);
    m.settle();
    assert_eq!(m.epochs()[..2], [Some(before + 1), Some(before + 1)]);
    m.assert_one_group();
    let frame = m.media[1].encrypt(0, Codec::Opus, &[0xfc, 9, 9, 9]).expect("keys");
    assert!(m.media[2].decrypt(Codec::Opus, &frame, m.now).is_err(), "the one who left cannot decrypt");
}

/// The ghost leaf: a joiner leaves while the commit adding it is on its
/// way to the server. The commit lands and gives it a leaf; the next
/// commit removes that leaf.
#[test]
fn a_joiner_that_leaves_while_its_commit_is_in_flight_leaves_no_leaf() {
    let mut m = Meeting::started(3, 4);
    m.join(3);
    m.hold = true;
    m.now += COMMIT_BATCH;
    m.input(0, Input::Timeout);
    assert_eq!(m.held.len(), 1, "the commit adding 3 is in flight");
    m.leave(3);
    m.release();
    m.settle();
    m.assert_one_group();
}

/// The same, a little later: the commit landed and its Welcome was routed,
/// but the joiner disconnected before it announced its leaf.
#[test]
fn a_joiner_that_leaves_before_announcing_its_leaf_leaves_no_leaf() {
    let mut m = Meeting::started(3, 4);
    m.join(3);
    m.hold = true;
    m.now += COMMIT_BATCH;
    m.input(0, Input::Timeout);
    // Gone before the Welcome reaches it; the server tells the others after.
    m.present[3] = false;
    m.release();
    assert_eq!(m.parts[0].participant().member_count().expect("count"), 4, "3 has a leaf");
    m.present[3] = true;
    m.leave(3);
    m.settle();
    m.assert_one_group();
}

#[test]
fn a_member_that_missed_a_commit_rejoins_and_decrypts_again() {
    let mut m = Meeting::started(3, 4);
    // Participant 2 misses the commit that adds participant 3, and every
    // message after it.
    m.deaf = Some(2);
    m.mute = Some(2);
    m.join(3);
    m.now += COMMIT_BATCH * 2;
    m.input(0, Input::Timeout);
    m.mute = None;
    let behind = m.epochs();
    assert!(behind[2] < behind[0] && behind[3] == behind[0], "2 is behind: {behind:?}");
    // The next commit (3 leaves) shows 2 that it is behind; its old leaf
    // is removed in the commit that adds it anew.
    m.leave(3);
    m.settle();
    assert_eq!(m.rejoins(), vec![0, 0, 1, 0]);
    m.assert_one_group();
}

/// A member misses a commit and no later commit comes. The others'
/// messages from the later epoch (the newcomer's and the others'
/// profiles) tell it that it is behind; it waits [`BEHIND_WAIT`] for the
/// missing commit, then rejoins.
#[test]
fn a_member_left_behind_with_no_later_commit_rejoins() {
    let mut m = Meeting::started(3, 4);
    m.deaf = Some(2);
    m.join(3);
    m.settle();
    assert_eq!(m.rejoins(), vec![0, 0, 1, 0], "2 rejoined once, nobody else");
    m.assert_one_group();
}

/// The committer misses a commit by another member (who briefly thought
/// itself committer), and its own commit for the same epoch is rejected
/// with the room's `current_epoch`. No commit follows: it rejoins, and
/// while it asks to be added again the next member commits in its place.
#[test]
fn a_committer_whose_commit_lost_to_one_it_missed_rejoins() {
    let mut m = Meeting::started(3, 4);
    let leaf0 = m.parts[1].leaves.remove(&id(0)).expect("1 knows 0's leaf");
    m.deaf = Some(0);
    m.mute = Some(0);
    m.join(3);
    m.now += COMMIT_BATCH;
    // Both commit at once; 1's reaches the server first.
    m.hold = true;
    m.input(1, Input::Timeout);
    m.input(0, Input::Timeout);
    m.parts[1].leaves.insert(id(0), leaf0);
    m.release();
    assert!(m.parts[3].participant().is_member(), "1 added 3");
    assert!(m.parts[0].behind.is_some(), "0 knows it is behind");
    m.mute = None;
    m.settle();
    assert_eq!(m.rejoins(), vec![1, 0, 0, 0], "0 rejoined once");
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
    m.join(3);
    m.now += COMMIT_BATCH;
    m.input(0, Input::Timeout);
    m.mute = None;
    assert!(m.failures[2].iter().any(|e| matches!(e, MembershipError::Group { operation: Operation::Process, .. })));
    m.settle();
    assert_eq!(m.rejoins(), vec![0, 0, 1, 0], "2 rejoined once");
    m.assert_one_group();
}

/// Bytes that are no envelope give a typed error and change nothing.
#[test]
fn garbage_from_the_server_is_a_typed_error() {
    let mut m = Meeting::started(2, 2);
    let before = m.epochs();
    let actions = m.parts[1].handle(Input::Mls { from: id(0), envelope: &[9, 9, 9] }, m.now);
    assert!(matches!(actions.as_slice(), [Action::Failed(MembershipError::Envelope(_))]), "{actions:?}");
    assert_eq!(m.epochs(), before);
}
