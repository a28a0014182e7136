//! One participant: its WebRTC session and the tracks it sends and receives.

use std::time::{Duration, Instant};

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
    /// Created by the participant's first SDP offer. Boxed: an `Rtc` is
    /// about 10 KiB, and inline it would make every slot of the SFU's
    /// participant map that large, used or not.
    pub rtc: Option<Box<Rtc>>,
    pub next_timeout: Option<Instant>,
    /// When the session was last given `Input::Timeout`.
    pub timeout_fed: Option<Instant>,
    /// Media was written to the session since its last `Input::Timeout`:
    /// str0m packetizes written frames on the next timeout, so the session
    /// is due at once (see [`Participant::media_written_at`]).
    pub media_written: bool,
    pub pending_offer: Option<SdpPendingOffer>,
    pub tracks_in: Vec<TrackIn>,
    pub tracks_out: Vec<TrackOut>,
    /// Downlink bandwidth estimate (TWCC), bits per second, once known.
    pub estimate_bps: Option<u64>,
    /// When the first downlink estimate arrived (start of the warm-up).
    pub estimate_since: Option<Instant>,
    /// (minimum, desired) last given to the bandwidth estimator, bits per second.
    pub bwe_rates: (u64, u64),
    /// Next allocation probe while the estimate limits the layers.
    pub next_probe: Option<Instant>,
    /// The uplink is too weak for video (see `adaptive`).
    pub poor_uplink: bool,
    /// The videos sent to this participant bypass str0m's pacer, because
    /// the audio it sends unpaced leaves too little of the pacing rate
    /// (see `adaptive::Sfu::pace_video`).
    pub video_unpaced: bool,
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
            timeout_fed: None,
            media_written: false,
            pending_offer: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            estimate_bps: None,
            estimate_since: None,
            bwe_rates: (0, 0),
            next_probe: None,
            poor_uplink: false,
            video_unpaced: false,
        }
    }

    /// When the session next needs `Input::Timeout`. str0m may ask again
    /// for an instant it was already given (a pacer or probe with nothing to
    /// send yet); that is pushed 1 ms past the last feed so the caller's
    /// clock moves on instead of spinning.
    pub fn due_at(&self) -> Option<Instant> {
        let t = self.next_timeout?;
        if self.media_written {
            return Some(t);
        }
        Some(match self.timeout_fed {
            Some(fed) if t <= fed => fed + Duration::from_millis(1),
            _ => t,
        })
    }

    /// Notes that a frame was written to the session at `now`. The session
    /// is not polled now: a write only queues the frame, which str0m
    /// packetizes on the next `Input::Timeout`, and polling in between
    /// walks every stream of the session for nothing (a meeting's
    /// subscriber has two per other participant). The caller's next
    /// timeout feeds it, once for all frames written meanwhile.
    pub fn media_written_at(&mut self, now: Instant) {
        self.media_written = true;
        self.next_timeout = Some(self.next_timeout.map_or(now, |t| t.min(now)));
    }

    /// Notes that the session is given `Input::Timeout` at `now`.
    pub fn timeout_fed_at(&mut self, now: Instant) {
        self.timeout_fed = Some(now);
        self.media_written = false;
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
