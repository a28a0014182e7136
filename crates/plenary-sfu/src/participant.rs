//! One participant: its WebRTC session and the tracks it sends and receives.

use std::time::Instant;

use plenary_proto::{ParticipantId, ParticipantInfo, RoomId};
use str0m::Rtc;
use str0m::change::SdpPendingOffer;

use crate::track::{TrackIn, TrackOut};

#[derive(Debug)]
pub(crate) struct Participant {
    pub id: ParticipantId,
    pub room: RoomId,
    /// Opaque; never logged.
    pub profile: String,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// Leaf index in the room's MLS group, once announced.
    pub leaf: Option<u32>,
    /// Created by the participant's first SDP offer.
    pub rtc: Option<Rtc>,
    pub next_timeout: Option<Instant>,
    pub pending_offer: Option<SdpPendingOffer>,
    pub tracks_in: Vec<TrackIn>,
    pub tracks_out: Vec<TrackOut>,
}

impl Participant {
    pub fn new(id: ParticipantId, room: RoomId, profile: String) -> Self {
        Participant {
            id,
            room,
            profile,
            audio_muted: false,
            video_muted: false,
            leaf: None,
            rtc: None,
            next_timeout: None,
            pending_offer: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
        }
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id,
            profile: self.profile.clone(),
            leaf: self.leaf,
            audio_muted: self.audio_muted,
            video_muted: self.video_muted,
        }
    }
}
