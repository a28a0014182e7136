//! Which meeting a `join` enters: rooms are partitioned by (room name,
//! room tag), so links to one room name with different secrets are
//! different meetings, each with its own SFU room and MLS group.
//!
//! The SFU and the Delivery Service key rooms by an opaque string; for a
//! tagged join it is `base64url(SHA-256(room || 0x00 || tag))` (43
//! characters, a valid [`RoomId`]), so neither the tag nor the pair appears
//! in the SFU's state, and nothing here is logged.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plenary_proto::{RoomId, RoomTag};
use sha2::{Digest, Sha256};

/// The SFU/Delivery Service room key for `room` (as sent by the client)
/// and its tag. A room name that is not a valid [`RoomId`] is returned
/// unchanged so that the SFU refuses it with its usual error; without a tag
/// (clients that predate room tags) the key is the room name.
pub fn meeting_key(room: &str, tag: Option<&RoomTag>) -> String {
    match tag {
        Some(tag) if RoomId::parse(room).is_ok() => {
            let mut h = Sha256::new();
            h.update(room.as_bytes());
            h.update([0u8]);
            h.update(tag.as_str().as_bytes());
            URL_SAFE_NO_PAD.encode(h.finalize())
        }
        _ => room.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_partition_rooms() {
        let a = RoomTag::parse("aS4mntnm_rIOjgEerx05EQ").unwrap();
        let b = RoomTag::parse("1Eb0ZU6SGeX_OWDexHdsOA").unwrap();
        let ka = meeting_key("standup", Some(&a));
        assert_eq!(ka, meeting_key("standup", Some(&a)));
        assert_ne!(ka, meeting_key("standup", Some(&b)));
        assert_ne!(ka, meeting_key("standup2", Some(&a)));
        assert!(RoomId::parse(&ka).is_ok());
        assert!(!ka.contains(a.as_str()));
        assert_eq!(meeting_key("standup", None), "standup");
        assert_eq!(meeting_key("bad room", Some(&a)), "bad room");
    }
}
