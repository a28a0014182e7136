//! MLS message intake: arbitrary bytes into a member's and a joiner's
//! `process` and a committer's join-request check. Never panics, and a refused
//! input leaves the member's epoch and security code unchanged.
#![no_main]
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use plenary_e2ee::group::Participant;
use plenary_e2ee::secret::MeetingSecret;

struct World {
    member: Participant,
    joiner: Participant,
}

fn world() -> World {
    let secret = MeetingSecret::from_bytes(&[1; 16]).expect("secret");
    let mut member = Participant::new("fuzz", secret.clone()).expect("participant");
    member.create().expect("create");
    let mut joiner = Participant::new("fuzz", secret).expect("participant");
    let _ = joiner.join_request();
    World { member, joiner }
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    let w = guard.get_or_insert_with(world);
    let before = (w.member.epoch(), w.member.security_code().ok());
    if w.member.process(data).is_err() {
        assert_eq!(before, (w.member.epoch(), w.member.security_code().ok()));
    }
    let _ = w.member.verify_join_request(data);
    let _ = w.joiner.process(data);
    if w.joiner.is_member() {
        // A forged Welcome cannot be made without the joiner's keys; reset anyway.
        *guard = None;
    }
});
