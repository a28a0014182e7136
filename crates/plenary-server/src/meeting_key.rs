//! Which meeting a `join` enters: rooms are partitioned by (room name,
//! room tag), so links to one room name with different secrets are
//! different meetings, each with its own SFU room and MLS group.
//!
//! The SFU and the Delivery Service key rooms by an opaque string:
//! `base64url(SHA-256(room || 0x00 || tag))` (43
//! characters, a valid [`RoomId`]), so neither the tag nor the pair appears
//! in the SFU's state, and nothing here is logged.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plenary_proto::{RoomId, RoomTag};
use sha2::{Digest, Sha256};

/// The SFU/Delivery Service room key for `room` (as sent by the client)
/// and its tag. A room name that is not a valid [`RoomId`] is returned
/// unchanged so that the SFU refuses it with its usual error.
pub fn meeting_key(room: &str, tag: &RoomTag) -> String {
    if RoomId::parse(room).is_err() {
        return room.to_owned();
    }
    let mut h = Sha256::new();
    h.update(room.as_bytes());
    h.update([0u8]);
    h.update(tag.as_str().as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_partition_rooms() {
        let a = RoomTag::parse("aS4mntnm_rIOjgEerx05EQ").unwrap();
        let b = RoomTag::parse("1Eb0ZU6SGeX_OWDexHdsOA").unwrap();
        let ka = meeting_key("standup", &a);
        assert_eq!(ka, meeting_key("standup", &a));
        assert_ne!(ka, meeting_key("standup", &b));
        assert_ne!(ka, meeting_key("standup2", &a));
        assert!(RoomId::parse(&ka).is_ok());
        assert!(!ka.contains(a.as_str()));
        assert_eq!(meeting_key("bad room", &a), "bad room");
    }
}
