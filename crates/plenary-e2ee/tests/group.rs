//! Group lifecycle: batched joins, removals, stale-epoch resolution, and bad
//! inputs that must leave the group unchanged.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::Duration;

use plenary_e2ee::app::AppMessage;
use plenary_e2ee::envelope::Envelope;
use plenary_e2ee::group::{Event, GroupError, Participant};
use plenary_e2ee::media::{Codec, MediaCrypto, MediaError};
use plenary_e2ee::secret::{MeetingSecret, SecretError};

const ROOM: &str = "room-test";

fn secret() -> MeetingSecret {
    MeetingSecret::from_bytes(&[42u8; 16]).unwrap()
}

fn participant() -> Participant {
    Participant::new(ROOM, secret()).unwrap()
}

/// Everything a member's state is judged by.
#[derive(Debug, PartialEq)]
struct Snapshot {
    epoch: Option<u64>,
    roster: Vec<(u32, String, Option<String>)>,
    code: Option<String>,
    export: Option<Vec<u8>>,
}

fn snapshot(p: &Participant) -> Snapshot {
    Snapshot {
        epoch: p.epoch(),
        roster: p
            .roster()
            .map(|r| r.into_iter().map(|e| (e.leaf, e.credential_id.to_string(), e.display_name)).collect())
            .unwrap_or_default(),
        code: p.security_code().ok().map(|c| c.to_string()),
        export: p.export_secret("plenary test", 32).ok(),
    }
}

/// A tiny Delivery Service: the committer commits the joins, the server takes
/// it, everyone processes the commit, joiners process the Welcome.
fn add_batch(members: &mut Vec<Participant>, joiners: Vec<Participant>) {
    let mut joiners = joiners;
    let requests: Vec<Vec<u8>> = joiners.iter_mut().map(|j| j.join_request().unwrap()).collect();
    let online: Vec<u32> = members.iter().map(|m| m.own_leaf().unwrap()).collect();
    let committer = members.iter().position(|m| m.is_committer(&online)).expect("one committer");
    let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let out = members[committer].commit(&refs, &[]).unwrap();
    assert_eq!(out.added.len(), joiners.len());
    assert!(out.rejected.is_empty());
    let welcome = out.welcome.clone().expect("one Welcome for the batch");
    members[committer].commit_accepted().unwrap();
    for (i, m) in members.iter_mut().enumerate() {
        if i != committer {
            assert!(matches!(m.process(&out.commit).unwrap(), Event::EpochChanged { .. }));
        }
    }
    for j in joiners.iter_mut() {
        assert!(matches!(j.process(&welcome).unwrap(), Event::Joined { .. }));
    }
    members.extend(joiners);
}

fn form_group(n: usize, batch: usize) -> Vec<Participant> {
    let mut first = participant();
    first.create().unwrap();
    let mut members = vec![first];
    while members.len() < n {
        let k = batch.min(n - members.len());
        add_batch(&mut members, (0..k).map(|_| participant()).collect());
    }
    members
}

fn assert_agree(members: &[Participant]) {
    let first = snapshot(&members[0]);
    for m in members {
        let s = snapshot(m);
        assert_eq!(s.epoch, first.epoch);
        assert_eq!(s.code, first.code);
        assert_eq!(s.export, first.export);
        let leaves: Vec<_> = s.roster.iter().map(|r| (r.0, r.1.clone())).collect();
        let first_leaves: Vec<_> = first.roster.iter().map(|r| (r.0, r.1.clone())).collect();
        assert_eq!(leaves, first_leaves);
    }
    assert_eq!(first.roster.len(), members.len());
}

#[test]
fn three_members_agree_and_chat() {
    let mut g = form_group(3, 2);
    assert_agree(&g);
    assert_eq!(g[0].epoch(), Some(1));
    let token = *b"continuity-token";
    let profile = g[1].send(&AppMessage::Profile { display_name: "Bea".into(), continuity: Some(token) }).unwrap();
    for i in [0, 2] {
        assert_eq!(g[i].process(&profile).unwrap(), Event::Profile { sender: 1, display_name: "Bea".into() });
        let roster = g[i].roster().unwrap();
        assert_eq!(roster[1].display_name.as_deref(), Some("Bea"));
        assert_eq!(roster[1].continuity, Some(token));
        assert_eq!(roster[2].continuity, None, "no profile from leaf 2 yet");
    }
    let chat = g[2].send(&AppMessage::Chat { text: "hi".into() }).unwrap();
    assert_eq!(g[0].process(&chat).unwrap(), Event::Chat { sender: 2, text: "hi".into() });
    // The server sees no plaintext.
    assert!(!chat.windows(2).any(|w| w == b"hi"));
    assert!(!profile.windows(3).any(|w| w == b"Bea"));
    assert!(!profile.windows(token.len()).any(|w| w == token), "the continuity token travels encrypted");
}

#[test]
fn twenty_members_in_batches() {
    let g = form_group(20, 7);
    assert_agree(&g);
    assert_eq!(g[0].epoch(), Some(3));
}

#[test]
fn two_hundred_members_in_batches() {
    let g = form_group(200, 50);
    assert_agree(&g);
    assert_eq!(g[0].epoch(), Some(4));
}

#[test]
fn security_code_changes_with_epoch() {
    let mut g = form_group(3, 2);
    let before = g[0].security_code().unwrap();
    let up = g[1].self_update().unwrap();
    g[1].commit_accepted().unwrap();
    g[0].process(&up.commit).unwrap();
    g[2].process(&up.commit).unwrap();
    assert_agree(&g);
    assert_ne!(g[0].security_code().unwrap(), before);
}

#[test]
fn removed_member_cannot_decrypt_media_or_chat() {
    let mut g = form_group(4, 3);
    // The best the removed member keeps: its real keys of the last epoch.
    let last_keys = g[2].epoch_keys().unwrap();
    let rm = g[0].commit(&[], &[2]).unwrap();
    assert!(rm.welcome.is_none());
    g[0].commit_accepted().unwrap();
    assert_eq!(g[2].process(&rm.commit).unwrap(), Event::Removed);
    assert!(!g[2].is_member());
    for i in [1, 3] {
        match g[i].process(&rm.commit).unwrap() {
            Event::EpochChanged { removed, .. } => assert_eq!(removed, vec![2]),
            other => panic!("{other:?}"),
        }
    }
    let removed = g.remove(2);
    assert_agree(&g);

    // Media after the removal: the removed member's last keys are of the old
    // epoch, so the new frame names a KID it does not know.
    let mut tx = MediaCrypto::default();
    tx.set_epoch_keys(g[0].epoch_keys().unwrap(), Duration::ZERO);
    let frame = tx.encrypt(0, Codec::Opus, b"after removal").unwrap();
    let mut stale = MediaCrypto::default();
    stale.set_epoch_keys(last_keys.clone(), Duration::ZERO);
    assert!(matches!(stale.decrypt(Codec::Opus, &frame, Duration::ZERO), Err(MediaError::UnknownKeyId { .. })));
    // Even claiming the new epoch with its old base key, nothing authenticates.
    let mut forced = last_keys;
    forced.epoch += 1;
    let mut wrong = MediaCrypto::default();
    wrong.set_epoch_keys(forced, Duration::ZERO);
    assert_eq!(wrong.decrypt(Codec::Opus, &frame, Duration::ZERO), Err(MediaError::Authentication));
    // Remaining members decrypt.
    let mut rx = MediaCrypto::default();
    rx.set_epoch_keys(g[2].epoch_keys().unwrap(), Duration::ZERO);
    assert_eq!(rx.decrypt(Codec::Opus, &frame, Duration::ZERO).unwrap().frame, b"after removal");
    // And chat sent after the removal is unreadable to the removed member.
    let mut removed = removed;
    let chat = g[1].send(&AppMessage::Chat { text: "secret".into() }).unwrap();
    assert_eq!(removed.process(&chat), Err(GroupError::NotInGroup));
}

#[test]
fn batched_remove_and_add_in_one_commit() {
    let mut g = form_group(5, 4);
    let mut joiner = participant();
    let req = joiner.join_request().unwrap();
    let out = g[0].commit(&[&req], &[1, 3]).unwrap();
    g[0].commit_accepted().unwrap();
    for i in [2, 4] {
        g[i].process(&out.commit).unwrap();
    }
    assert_eq!(g[1].process(&out.commit).unwrap(), Event::Removed);
    assert_eq!(g[3].process(&out.commit).unwrap(), Event::Removed);
    joiner.process(&out.welcome.unwrap()).unwrap();
    let mut rest: Vec<Participant> =
        g.into_iter().enumerate().filter(|(i, _)| [0, 2, 4].contains(i)).map(|(_, p)| p).collect();
    rest.push(joiner);
    assert_agree(&rest);
    assert_eq!(rest[0].member_count().unwrap(), 4);
}

#[test]
fn two_committers_same_epoch_resolve_by_stale_epoch_rule() {
    let mut g = form_group(3, 2);
    let mut j1 = participant();
    let mut j2 = participant();
    let r1 = j1.join_request().unwrap();
    let r2 = j2.join_request().unwrap();
    // Leaf 0 and leaf 1 both believe they commit (their online lists differ).
    let a = g[0].commit(&[&r1], &[]).unwrap();
    let b = g[1].commit(&[&r1, &r2], &[]).unwrap();
    assert_eq!(a.epoch, b.epoch);
    // The server takes the first commit for the epoch (a) and rejects b.
    g[0].commit_accepted().unwrap();
    g[1].commit_rejected().unwrap();
    assert!(!g[1].has_pending_commit());
    for i in [1, 2] {
        g[i].process(&a.commit).unwrap();
    }
    j1.process(&a.welcome.clone().unwrap()).unwrap();
    // The loser's Welcome never reaches anyone; j2 is still pending: retry.
    let online = [0, 1, 2, 3];
    assert!(g[0].is_committer(&online));
    assert!(!g[1].is_committer(&online));
    let retry = g[0].commit(&[&r2], &[]).unwrap();
    g[0].commit_accepted().unwrap();
    for i in [1, 2] {
        g[i].process(&retry.commit).unwrap();
    }
    j1.process(&retry.commit).unwrap();
    j2.process(&retry.welcome.unwrap()).unwrap();
    g.push(j1);
    g.push(j2);
    assert_agree(&g);
}

#[test]
fn winner_arriving_first_drops_own_pending_commit() {
    let mut g = form_group(3, 2);
    let a = g[0].self_update().unwrap();
    let _b = g[1].self_update().unwrap();
    g[0].commit_accepted().unwrap();
    match g[1].process(&a.commit).unwrap() {
        Event::EpochChanged { lost_own_commit, .. } => assert!(lost_own_commit),
        other => panic!("{other:?}"),
    }
    assert!(!g[1].has_pending_commit());
    g[2].process(&a.commit).unwrap();
    assert_agree(&g);
}

#[test]
fn own_commit_echoed_by_server_counts_as_accepted() {
    let mut g = form_group(2, 1);
    let up = g[0].self_update().unwrap();
    assert!(matches!(g[0].process(&up.commit).unwrap(), Event::EpochChanged { .. }));
    g[1].process(&up.commit).unwrap();
    assert_agree(&g);
}

#[test]
fn bad_inputs_are_typed_errors_and_change_nothing() {
    let mut g = form_group(3, 2);
    // An old commit (epoch 0 -> 1 was the batch), kept for replay below.
    let mut j = participant();
    let req = j.join_request().unwrap();
    let out = g[0].commit(&[&req], &[]).unwrap();
    g[0].commit_accepted().unwrap();
    for i in [1, 2] {
        g[i].process(&out.commit).unwrap();
    }
    let welcome = out.welcome.unwrap();
    j.process(&welcome).unwrap();
    g.push(j);
    let up = g[1].self_update().unwrap();
    g[1].commit_accepted().unwrap();
    for i in [0, 2, 3] {
        g[i].process(&up.commit).unwrap();
    }
    let before: Vec<Snapshot> = g.iter().map(snapshot).collect();

    // Commit for a past epoch.
    assert!(matches!(g[2].process(&out.commit), Err(GroupError::StaleEpoch { message: 1, group: 3 })));
    // Late (duplicate) Welcome.
    assert_eq!(g[3].process(&welcome), Err(GroupError::AlreadyInGroup));
    // Garbage and truncation.
    assert!(matches!(g[0].process(b""), Err(GroupError::Envelope(_))));
    assert!(matches!(g[0].process(&[1, 4, 0, 1, 2, 3]), Err(GroupError::MalformedMls)));
    let chat = g[1].send(&AppMessage::Chat { text: "x".into() }).unwrap();
    assert!(g[0].process(&chat[..chat.len() - 5]).is_err());
    // A flipped bit in an application message.
    let mut flipped = chat.clone();
    let n = flipped.len() - 20;
    flipped[n] ^= 0x01;
    assert!(matches!(g[0].process(&flipped), Err(GroupError::Refused(_))));
    // The genuine message still decrypts afterwards.
    assert_eq!(g[0].process(&chat).unwrap(), Event::Chat { sender: 1, text: "x".into() });
    assert!(g[0].process(&chat).is_err(), "replayed application message");
    g[2].process(&chat).unwrap();
    g[3].process(&chat).unwrap();
    // A JoinRequest is not for process().
    let mut outsider = participant();
    let req = outsider.join_request().unwrap();
    assert_eq!(g[0].process(&req), Err(GroupError::UnexpectedKind(1)));

    // A forged join proof: knows the room, not the secret.
    let mut forger = Participant::new(ROOM, MeetingSecret::from_bytes(&[7u8; 16]).unwrap()).unwrap();
    let forged = forger.join_request().unwrap();
    assert_eq!(g[0].verify_join_request(&forged), Err(GroupError::JoinProof(SecretError::BadJoinProof)));
    let res = g[0].commit(&[&forged], &[]);
    assert_eq!(res, Err(GroupError::NothingToCommit));
    // A valid proof copied onto another KeyPackage.
    let Envelope::JoinRequest { proof, .. } = Envelope::decode(&req).unwrap() else { panic!() };
    let proof = *proof;
    let Envelope::JoinRequest { key_package_ref, key_package, .. } = Envelope::decode(&forged).unwrap() else {
        panic!()
    };
    let spliced = Envelope::JoinRequest { key_package_ref, proof: &proof, key_package }.encode().unwrap();
    assert_eq!(g[0].verify_join_request(&spliced), Err(GroupError::JoinProof(SecretError::BadJoinProof)));
    // Mixed batch: the forged request is refused, the good one goes ahead.
    let mixed = g[0].commit(&[&forged, &req], &[]).unwrap();
    assert_eq!(mixed.added, vec![1]);
    assert_eq!(mixed.rejected.len(), 1);
    g[0].commit_rejected().unwrap();
    // A Welcome for someone else.
    assert_eq!(forger.process(&mixed.welcome.unwrap()), Err(GroupError::NotForUs));

    let after: Vec<Snapshot> = g.iter().map(snapshot).collect();
    assert_eq!(before, after);
}
