//! The MLS Delivery Service (`ds::DeliveryService`) under any sequence of
//! client messages from five fake connections in two rooms: joins,
//! leaves, `group_member` announcements and `mls` envelopes (well-formed
//! join requests, commits for nearby epochs with or without a Welcome,
//! Welcomes, application messages, or arbitrary bytes), with time passing.
//! Never panics; refusals are typed (`DsError`, with the client's error
//! code); after every step the rooms' state keeps its rules
//! (`broken_invariant`), every message goes to a participant online in the
//! sender's room, and a commit is accepted at most once per epoch.
//!
//! Input: steps of a few bytes. Byte 0: who (bits 0-2, modulo 5) and what
//! (bits 3-7); then up to 3 argument bytes, depending on what.
#![no_main]
use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use plenary_proto::{ErrorCode, ParticipantId, ServerMsg};
use plenary_server::ds::{DeliveryService, Outbox};
use plenary_server::ds_test_messages::{commit, envelope, join_request, welcome};

const PEOPLE: u64 = 5;

struct Model {
    ds: DeliveryService,
    /// Room of each online participant.
    room: HashMap<ParticipantId, u8>,
    /// Epochs accepted per room since its group was (re)created: a group
    /// lost (no member left) starts anew at epoch 0 with `create_group`.
    accepted: HashMap<u8, Vec<u64>>,
    now: Instant,
}

impl Model {
    fn check(&mut self, from: ParticipantId, out: &Outbox) {
        if let Some(broken) = self.ds.broken_invariant() {
            panic!("Delivery Service state broken: {broken}");
        }
        for (to, msg) in out {
            // (A leaver's room mates may be told things: a new creator.)
            let Some(room) = self.room.get(to) else { panic!("message to {to}, who is not online") };
            if *msg == ServerMsg::CreateGroup {
                self.accepted.remove(room);
            }
        }
        let Some(&room) = self.room.get(&from) else { return };
        for (to, msg) in out {
            assert_eq!(self.room.get(to), Some(&room), "message for {to} leaves {from}'s room");
            if let ServerMsg::CommitAccepted { epoch } = msg {
                assert_eq!(*to, from, "only the committer hears its commit was accepted");
                let seen = self.accepted.entry(room).or_default();
                assert!(!seen.contains(epoch), "two commits accepted for epoch {epoch}");
                seen.push(*epoch);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut m = Model { ds: DeliveryService::default(), room: HashMap::new(), accepted: HashMap::new(), now };
    let mut bytes = data.iter().copied();
    let mut steps = 0;
    while let Some(op) = bytes.next() {
        steps += 1;
        if steps > 200 {
            break;
        }
        let who = ParticipantId(u64::from(op & 7) % PEOPLE + 1);
        let mut arg = || bytes.next().unwrap_or(0);
        let result = match op >> 3 {
            0..=3 => {
                if m.room.contains_key(&who) {
                    continue;
                }
                // Participants 1-3 meet in room 0, 4 and 5 in room 1.
                let room = u8::from(who.0 > 3);
                m.room.insert(who, room);
                Ok(m.ds.joined(m.now, ["a", "b"][usize::from(room)], who))
            }
            4..=5 => {
                m.room.remove(&who);
                Ok(m.ds.left(m.now, who))
            }
            6..=9 => m.ds.group_member(who, u32::from(arg() % 8)),
            10..=15 => m.ds.envelope(m.now, who, &join_request(arg() % 8), None),
            16..=21 => {
                let epoch = u64::from(arg() % 6);
                let refs = arg();
                let w = (refs != 0).then(|| welcome(&[refs % 8, (refs >> 3) % 8][..1 + usize::from(refs >> 7)]));
                m.ds.envelope(m.now, who, &commit(epoch), w.as_deref())
            }
            22..=23 => m.ds.envelope(m.now, who, &envelope(4, b"ciphertext"), None),
            24 => m.ds.envelope(m.now, who, &welcome(&[arg() % 8]), None),
            25 => {
                // Any kind, with a Welcome that may not be one.
                let kind = arg() % 6;
                let w = envelope(arg() % 6, &[arg(); 40]);
                m.ds.envelope(m.now, who, &envelope(kind, &[0; 40]), Some(&w))
            }
            26..=29 => {
                // Arbitrary envelope bytes, base64url or not.
                let len = usize::from(arg() % 64);
                let raw: Vec<u8> = (0..len).map(|_| arg()).collect();
                let text =
                    if op & 0x08 == 0 { URL_SAFE_NO_PAD.encode(&raw) } else { String::from_utf8_lossy(&raw).into() };
                m.ds.envelope(m.now, who, &text, None)
            }
            _ => {
                m.now += Duration::from_millis(250 * u64::from(arg() % 32));
                continue;
            }
        };
        match result {
            Ok(out) => m.check(who, &out),
            Err(e) => {
                let code = e.code();
                assert!(
                    matches!(
                        code,
                        ErrorCode::BadEnvelope
                            | ErrorCode::NotGroupMember
                            | ErrorCode::NotJoined
                            | ErrorCode::RateLimited
                    ),
                    "unexpected code {code:?} for {e}"
                );
                // (Bad bytes are refused before the room is looked up.)
                assert!(code != ErrorCode::NotJoined || !m.room.contains_key(&who), "{who} is in a room: {e}");
                m.check(who, &Vec::new());
            }
        }
    }
});
