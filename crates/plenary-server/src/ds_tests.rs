use super::*;
use crate::ds_test_messages::{commit, envelope as env, join_request, welcome};

fn t0() -> Instant {
    use std::sync::OnceLock;
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

const A: ParticipantId = ParticipantId(1);
const B: ParticipantId = ParticipantId(2);
const C: ParticipantId = ParticipantId(3);

/// Room "r" with A (leaf 0, the creator) and B (leaf 1, added in epoch 0).
fn two_members() -> DeliveryService {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.joined(t0(), "r", B);
    ds.group_member(A, 0).unwrap();
    ds.envelope(t0(), B, &join_request(7), None).unwrap();
    ds.envelope(t0(), A, &commit(0), Some(&welcome(&[7]))).unwrap();
    ds.group_member(B, 1).unwrap();
    ds
}

fn to(out: &Outbox, who: ParticipantId) -> Vec<&ServerMsg> {
    out.iter().filter(|(p, _)| *p == who).map(|(_, m)| m).collect()
}

#[test]
fn first_creates_joiners_are_welcomed_commits_are_ordered() {
    let mut ds = DeliveryService::default();
    assert_eq!(to(&ds.joined(t0(), "r", A), A), vec![&ServerMsg::CreateGroup]);
    assert!(ds.joined(t0(), "r", B).is_empty(), "only one creator");
    // B asks before A announced: the request waits.
    let jr = join_request(7);
    assert!(ds.envelope(t0(), B, &jr, None).unwrap().is_empty());
    let out = ds.group_member(A, 0).unwrap();
    assert!(matches!(to(&out, A)[0], ServerMsg::Mls { from, .. } if *from == B), "waiting request relayed to creator");
    // A commits in epoch 0, adding B: accepted, and the Welcome goes to B
    // only; B may then announce membership.
    assert_eq!(ds.group_member(B, 1).unwrap_err().code(), ErrorCode::NotGroupMember);
    let out = ds.envelope(t0(), A, &commit(0), Some(&welcome(&[7]))).unwrap();
    assert_eq!(to(&out, A), vec![&ServerMsg::CommitAccepted { epoch: 0 }]);
    assert_eq!(out.len(), 2);
    assert_eq!(to(&out, B), vec![&ServerMsg::Mls { from: A, envelope: welcome(&[7]) }]);
    // A second commit for epoch 0 is stale and routes nothing.
    ds.joined(t0(), "r", C);
    ds.envelope(t0(), C, &join_request(8), None).unwrap();
    let out = ds.envelope(t0(), A, &commit(0), Some(&welcome(&[8]))).unwrap();
    assert_eq!(out, vec![(A, ServerMsg::CommitRejected { epoch: 0, current_epoch: 1 })]);
    assert_eq!(ds.group_member(B, 0).unwrap_err(), DsError::LeafTaken(0), "A's leaf is A's");
    ds.group_member(B, 1).unwrap();
    assert!(ds.group_member(B, 1).is_ok(), "repeating is harmless");
    assert_eq!(ds.group_member(B, 7).unwrap_err(), DsError::LeafTaken(7), "no moving");
    // Application messages fan out to the other members.
    let app = env(4, b"ciphertext");
    let out = ds.envelope(t0(), B, &app, None).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, A);
}

#[test]
fn a_welcomed_joiner_gets_the_commits_and_messages_sent_before_it_announces() {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.group_member(A, 0).unwrap();
    ds.joined(t0(), "r", B);
    ds.joined(t0(), "r", C);
    ds.envelope(t0(), B, &join_request(7), None).unwrap();
    ds.envelope(t0(), A, &commit(0), Some(&welcome(&[7]))).unwrap();
    // C asks; A adds it at once, before B has processed its Welcome and
    // announced itself: B must get that commit, or it is stuck in epoch 1.
    ds.envelope(t0(), C, &join_request(8), None).unwrap();
    let out = ds.envelope(t0(), A, &commit(1), None).unwrap();
    assert_eq!(to(&out, B).len(), 1, "the commit reaches the welcomed joiner");
    assert!(to(&out, C).is_empty(), "not the joiner still waiting");
    let out = ds.envelope(t0(), A, &env(4, b"profile"), None).unwrap();
    assert_eq!(to(&out, B).len(), 1, "application messages too");
    ds.group_member(B, 1).unwrap();
    let out = ds.envelope(t0(), A, &commit(2), None).unwrap();
    assert_eq!(to(&out, B).len(), 1, "once announced, once only");
}

#[test]
fn refusals_are_typed_and_change_nothing() {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.group_member(A, 0).unwrap();
    ds.joined(t0(), "r", B);
    // Non-members cannot commit, welcome or send application messages.
    assert_eq!(ds.envelope(t0(), B, &commit(0), None).unwrap_err().code(), ErrorCode::NotGroupMember);
    assert_eq!(ds.envelope(t0(), B, &env(4, b"x"), None).unwrap_err().code(), ErrorCode::NotGroupMember);
    assert_eq!(ds.envelope(t0(), B, &welcome(&[1]), None).unwrap_err().code(), ErrorCode::NotGroupMember);
    assert_eq!(ds.envelope(t0(), B, &commit(0), Some(&welcome(&[1]))).unwrap_err().code(), ErrorCode::NotGroupMember);
    // A Welcome travels with its commit, never alone nor with anything else.
    ds.envelope(t0(), B, &join_request(9), None).unwrap();
    assert_eq!(ds.envelope(t0(), A, &welcome(&[9]), None).unwrap_err(), DsError::WelcomeWithoutCommit);
    assert_eq!(ds.envelope(t0(), A, &env(4, b"x"), Some(&welcome(&[9]))).unwrap_err().code(), ErrorCode::BadEnvelope);
    assert_eq!(ds.envelope(t0(), A, &commit(0), Some(&commit(0))).unwrap_err().code(), ErrorCode::BadEnvelope);
    assert_eq!(ds.envelope(t0(), A, &commit(0), Some("!!!")).unwrap_err().code(), ErrorCode::BadEnvelope);
    // An oversized join request is not held.
    let mut big = vec![32u8];
    big.extend_from_slice(&[5; 32]);
    big.extend_from_slice(&[0; 32]);
    big.extend_from_slice(&vec![0; MAX_JOIN_REQUEST]);
    assert_eq!(ds.envelope(t0(), B, &env(1, &big), None).unwrap_err().code(), ErrorCode::BadEnvelope);
    // Garbage.
    for bad in ["", "!!!", &URL_SAFE_NO_PAD.encode([1u8]), &URL_SAFE_NO_PAD.encode([9u8, 1, 2]), &env(2, &[0, 0])] {
        assert_eq!(ds.envelope(t0(), A, bad, None).unwrap_err().code(), ErrorCode::BadEnvelope, "{bad:?}");
    }
    // Epoch untouched by all of that.
    let out = ds.envelope(t0(), A, &commit(0), None).unwrap();
    assert_eq!(to(&out, A), vec![&ServerMsg::CommitAccepted { epoch: 0 }]);
    assert_eq!(ds.envelope(t0(), C, &commit(1), None).unwrap_err(), DsError::NotJoined);
}

#[test]
fn group_is_recreated_when_every_member_left() {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.group_member(A, 0).unwrap();
    ds.joined(t0(), "r", B);
    ds.joined(t0(), "r", C);
    ds.envelope(t0(), C, &join_request(3), None).unwrap();
    ds.envelope(t0(), B, &join_request(2), None).unwrap();
    let out = ds.left(t0(), A);
    assert_eq!(to(&out, B), vec![&ServerMsg::CreateGroup], "longest present participant creates");
    let out = ds.group_member(B, 0).unwrap();
    assert_eq!(to(&out, B).len(), 1, "C's waiting request reaches the new creator");
    // The new group starts at epoch 0.
    let out = ds.envelope(t0(), B, &commit(0), None).unwrap();
    assert_eq!(to(&out, B), vec![&ServerMsg::CommitAccepted { epoch: 0 }]);
    ds.left(t0(), B);
    ds.left(t0(), C);
    assert!(ds.rooms.is_empty());
}

#[test]
fn an_unencrypted_first_participant_does_not_lock_the_room() {
    let mut ds = DeliveryService::default();
    assert_eq!(to(&ds.joined(t0(), "r", A), A), vec![&ServerMsg::CreateGroup]);
    ds.joined(t0(), "r", B);
    // A never answers (no end-to-end support). Within the grace time B's
    // request waits for A; after it, B is asked to create instead.
    assert!(ds.envelope(t0(), B, &join_request(2), None).unwrap().is_empty());
    let later = t0() + CREATE_TIMEOUT;
    let out = ds.envelope(later, B, &join_request(2), None).unwrap();
    assert_eq!(to(&out, B), vec![&ServerMsg::CreateGroup]);
    ds.group_member(B, 0).unwrap();
    ds.joined(t0(), "r", C);
    let out = ds.envelope(t0(), C, &join_request(3), None).unwrap();
    assert!(matches!(to(&out, B)[0], ServerMsg::Mls { from, .. } if *from == C), "requests now reach B");
    // When B leaves, the capable C is asked to create, not the silent A.
    let out = ds.left(t0(), B);
    assert_eq!(to(&out, C), vec![&ServerMsg::CreateGroup]);
    assert!(to(&out, A).is_empty());
}

#[test]
fn a_member_that_lost_its_group_asks_again_and_is_welcomed_anew() {
    let mut ds = two_members();
    // B missed a commit and asks to be added again with a new KeyPackage:
    // relayed to the other members, and B is no member until its Welcome.
    let out = ds.envelope(t0(), B, &join_request(9), None).unwrap();
    assert!(matches!(to(&out, A)[..], [ServerMsg::Mls { from, .. }] if *from == B), "request relayed to A");
    assert!(ds.envelope(t0(), B, &commit(1), None).is_err(), "B commits no more");
    let out = ds.envelope(t0(), A, &commit(1), Some(&welcome(&[9]))).unwrap();
    assert_eq!(to(&out, A), vec![&ServerMsg::CommitAccepted { epoch: 1 }]);
    assert_eq!(
        to(&out, B),
        vec![&ServerMsg::Mls { from: A, envelope: welcome(&[9]) }],
        "only the new Welcome reaches B"
    );
    ds.group_member(B, 2).unwrap();
}

/// The stuck joiner of the 30-person room: A's commit adds J; before J has
/// announced itself, B (who applied A's commit, and briefly thinks itself
/// the committer) commits the next epoch. J must get A's Welcome first and
/// then B's commit, or it stays one epoch behind with no media.
#[test]
fn a_commit_right_after_the_one_adding_a_joiner_reaches_that_joiner() {
    const J: ParticipantId = ParticipantId(4);
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.group_member(A, 0).unwrap();
    ds.joined(t0(), "r", B);
    ds.envelope(t0(), B, &join_request(2), None).unwrap();
    ds.envelope(t0(), A, &commit(0), Some(&welcome(&[2]))).unwrap();
    ds.group_member(B, 1).unwrap();
    ds.joined(t0(), "r", J);
    ds.joined(t0(), "r", C);
    ds.envelope(t0(), J, &join_request(4), None).unwrap();
    ds.envelope(t0(), C, &join_request(3), None).unwrap();

    let mut to_j = Vec::new();
    let out = ds.envelope(t0(), A, &commit(1), Some(&welcome(&[4]))).unwrap();
    to_j.extend(to(&out, J).into_iter().cloned());
    // B adds C at epoch 2, and also names J (its request was still in B's
    // list): J is welcomed already, so it gets the commit, not a Welcome.
    let out = ds.envelope(t0(), B, &commit(2), Some(&welcome(&[3, 4]))).unwrap();
    to_j.extend(to(&out, J).into_iter().cloned());
    assert_eq!(to(&out, B), vec![&ServerMsg::CommitAccepted { epoch: 2 }]);
    assert_eq!(to(&out, C), vec![&ServerMsg::Mls { from: B, envelope: welcome(&[3, 4]) }]);
    assert_eq!(
        to_j,
        vec![ServerMsg::Mls { from: A, envelope: welcome(&[4]) }, ServerMsg::Mls { from: B, envelope: commit(2) }],
        "J joins at epoch 2 and follows to epoch 3"
    );
    // A stale commit naming a waiting joiner routes nothing.
    ds.joined(t0(), "r", ParticipantId(5));
    ds.envelope(t0(), ParticipantId(5), &join_request(5), None).unwrap();
    let out = ds.envelope(t0(), A, &commit(2), Some(&welcome(&[5]))).unwrap();
    assert_eq!(out, vec![(A, ServerMsg::CommitRejected { epoch: 2, current_epoch: 3 })]);
}

/// A joiner that retried its request (new KeyPackage, same identity) is
/// still reached by a commit made from its first request.
#[test]
fn a_welcome_for_an_earlier_request_of_a_waiting_joiner_reaches_it() {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.group_member(A, 0).unwrap();
    ds.joined(t0(), "r", B);
    ds.envelope(t0(), B, &join_request(7), None).unwrap();
    ds.envelope(t0(), B, &join_request(8), None).unwrap();
    let out = ds.envelope(t0(), A, &commit(0), Some(&welcome(&[7]))).unwrap();
    assert_eq!(to(&out, B), vec![&ServerMsg::Mls { from: A, envelope: welcome(&[7]) }]);
    ds.group_member(B, 1).unwrap();
}

/// A member commits something the others cannot apply (a forged or broken
/// commit: the server cannot tell, it sees only the epoch) and leaves. The
/// others lose their group state and ask to be added anew; when the last
/// member has asked, no member is left to add anyone: the longest-present
/// participant must be asked to create a new group, as when every member
/// leaves, or the room stays without a group until someone leaves.
#[test]
fn group_is_recreated_when_every_member_lost_its_group_state() {
    let mut ds = DeliveryService::default();
    for p in [A, B, C] {
        ds.joined(t0(), "r", p);
    }
    ds.group_member(A, 0).unwrap();
    ds.envelope(t0(), B, &join_request(2), None).unwrap();
    ds.envelope(t0(), C, &join_request(3), None).unwrap();
    ds.envelope(t0(), A, &commit(0), Some(&welcome(&[2, 3]))).unwrap();
    ds.group_member(B, 1).unwrap();
    ds.group_member(C, 2).unwrap();
    // A's unusable commit is accepted (right epoch), then A leaves.
    ds.envelope(t0(), A, &commit(1), None).unwrap();
    assert!(ds.left(t0(), A).is_empty(), "B and C are still members");
    let out = ds.envelope(t0(), B, &join_request(12), None).unwrap();
    assert!(to(&out, B).is_empty(), "C is still a member and gets B's request");
    let out = ds.envelope(t0(), C, &join_request(13), None).unwrap();
    assert_eq!(to(&out, B), vec![&ServerMsg::CreateGroup], "the longest present participant creates");
    let out = ds.group_member(B, 0).unwrap();
    assert!(matches!(to(&out, B)[..], [ServerMsg::Mls { from, .. }] if *from == C), "C's request reaches B");
    let out = ds.envelope(t0(), B, &commit(0), Some(&welcome(&[13]))).unwrap();
    assert_eq!(to(&out, B), vec![&ServerMsg::CommitAccepted { epoch: 0 }], "the new group starts at epoch 0");
    assert_eq!(to(&out, C), vec![&ServerMsg::Mls { from: B, envelope: welcome(&[13]) }]);
}

#[test]
fn broken_invariant_holds_in_a_meeting_and_names_what_breaks() {
    let mut ds = DeliveryService::default();
    ds.joined(t0(), "r", A);
    ds.joined(t0(), "r", B);
    ds.envelope(t0(), B, &join_request(7), None).unwrap();
    ds.group_member(A, 0).unwrap();
    ds.envelope(t0(), A, &commit(0), Some(&welcome(&[7]))).unwrap();
    ds.group_member(B, 1).unwrap();
    assert_eq!(ds.broken_invariant(), None);
    ds.left(t0(), A);
    assert_eq!(ds.broken_invariant(), None, "B stays the only member");

    fn room(ds: &mut DeliveryService) -> &mut GroupRoom {
        ds.rooms.get_mut("r").unwrap()
    }
    room(&mut ds).members.insert(C, 1);
    assert!(ds.broken_invariant().unwrap().contains("member p3 is not online"));
    room(&mut ds).members.remove(&C);
    ds.joined(t0(), "r", C);
    room(&mut ds).members.insert(C, 1);
    assert!(ds.broken_invariant().unwrap().contains("two members at one leaf"));
    room(&mut ds).members.remove(&C);
    room(&mut ds).members.clear();
    assert!(ds.broken_invariant().unwrap().contains("neither a member nor a creator"));
    ds.room_of.insert(A, "r".into());
    room(&mut ds).creator = Some(B);
    assert!(ds.broken_invariant().unwrap().contains("2 in rooms, 3 recorded"));
}

#[test]
fn a_member_flooding_application_messages_is_slowed_not_relayed() {
    let mut ds = two_members();
    // Larger than any chat message: refused, not copied to every member.
    let huge = env(4, &vec![0x55; MAX_APPLICATION_BYTES]);
    assert_eq!(ds.envelope(t0(), A, &huge, None).unwrap_err().code(), ErrorCode::BadEnvelope);
    // The largest allowed, as fast as the signaling rate limit lets a
    // client send (30 a second): B gets a burst of them, then only
    // APPLICATION_BYTES_PER_SEC worth, so its queue (8 MiB) never fills
    // from one sender however slowly it reads.
    let big = env(4, &vec![0x55; MAX_APPLICATION_BYTES - 2]);
    let mut relayed = 0usize;
    let mut refused = 0;
    for i in 0..300u32 {
        let now = t0() + Duration::from_millis(u64::from(i) * 1000 / 30);
        match ds.envelope(now, A, &big, None) {
            Ok(out) => relayed += to(&out, B).len(),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::RateLimited, "{e}");
                refused += 1;
            }
        }
    }
    // 10 s: the burst of 8 and 64 KiB a second.
    assert!((16..=19).contains(&relayed), "{relayed} relayed, {refused} refused");
    assert!(relayed * MAX_APPLICATION_BYTES < crate::client_queue::CLIENT_QUEUE_BYTES * 3);
    // Chat at human speed is never slowed: B sends a 16 KiB message
    // every two seconds for a minute.
    let chat = env(4, &vec![0x33; 17 * 1024]);
    for i in 0..30u64 {
        let out = ds.envelope(t0() + Duration::from_secs(2 * i), B, &chat, None).unwrap();
        assert_eq!(to(&out, A).len(), 1);
    }
    // Leaving forgets the budget.
    ds.left(t0() + Duration::from_secs(10), A);
    assert!(!ds.app_budget.contains_key(&A));
}
