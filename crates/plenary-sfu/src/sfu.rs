//! The SFU: participants, rooms and the forwarding between them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plenary_proto::{
    ClientMsg, MAX_PROFILE_BYTES, MediaKind, PROTOCOL_VERSION, ParticipantId, RoomId, ServerMsg, TrackInfo,
};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};
use tracing::{debug, info, warn};

use crate::adaptive::{ADAPT_INTERVAL, QUALITY_REPORT_INTERVAL};
use crate::config::SfuConfig;
use crate::drain::Draining;
use crate::error::SfuError;
use crate::fanout::{packetize_vp8, write_packets};
use crate::layer::Verdict;
use crate::participant::Participant;
use crate::speaker::SpeakerDetector;
use crate::track::{OutState, TrackIn, TrackOut, vp8_keyframe_size};

/// What the SFU wants the caller to do next.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram (UDP) or frame (TCP, RFC 4571 framing by the caller).
    Transmit(Transmit),
    /// Send this signaling message to a participant's WebSocket.
    Signal(ParticipantId, ServerMsg),
    /// The participant's media session died (ICE timeout, DTLS failure); it
    /// has been removed from its room. Close its WebSocket.
    Disconnected(ParticipantId),
    /// Operator tap ([`SfuConfig::tap`]): one RTP packet (RFC 3550 header,
    /// header extensions and payload) sent to a subscriber, as it is before
    /// SRTP protection, i.e. everything a server operator can read.
    Tap {
        /// The SFU's media address.
        source: SocketAddr,
        /// The subscriber's address, when known.
        destination: Option<SocketAddr>,
        /// The RTP packet.
        rtp: Vec<u8>,
    },
    /// Nothing more to do until this instant, or until new input.
    Timeout(Instant),
}

/// Counters for observability; no user data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Datagrams that were not STUN, DTLS, RTP or RTCP.
    pub datagrams_unrecognised: u64,
    /// Datagrams no session accepted.
    pub datagrams_unrouted: u64,
    /// Media frames forwarded to subscribers (frame × subscriber).
    pub frames_forwarded: u64,
    /// Key frame requests sent to publishers.
    pub keyframe_requests: u64,
    /// Simulcast layer switches.
    pub layer_switches: u64,
    /// Audio frames not forwarded to a subscriber whose send queue already
    /// held audio older than [`MAX_AUDIO_QUEUE_AGE`] (frame × subscriber).
    pub audio_frames_shed: u64,
    /// Audio frames not forwarded to a subscriber because their source was
    /// not among the loudest it gets ([`SfuConfig::audio_streams`]), frame
    /// × subscriber.
    pub audio_frames_unselected: u64,
}

/// The sans-IO SFU. See the crate docs.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    /// The SFU's DTLS certificate (RFC 5763 §5), shared by every session:
    /// one key pair per server, as other SFUs do, instead of generating
    /// and keeping one per participant.
    dtls_cert: Option<DtlsCert>,
    pub(crate) participants: BTreeMap<ParticipantId, Participant>,
    pub(crate) rooms: HashMap<RoomId, Vec<ParticipantId>>,
    routes: HashMap<(Protocol, SocketAddr), ParticipantId>,
    pub(crate) queue: VecDeque<Output>,
    /// Sessions being drained, one step each in turn (see `drain`).
    pub(crate) ring: VecDeque<Draining>,
    /// Sessions drained since the last renegotiation check.
    pub(crate) touched: Vec<ParticipantId>,
    next_id: u64,
    pub(crate) last_now: Option<Instant>,
    stats: SfuStats,
    pub(crate) speakers: HashMap<RoomId, SpeakerDetector>,
    next_speaker_eval: Option<Instant>,
    next_adapt: Option<Instant>,
    next_quality_report: Option<Instant>,
}

/// Downlink estimate a subscriber starts with before TWCC feedback says
/// more, bits per second: an h layer and audio for a few participants;
/// str0m probes upwards from there at once.
const INITIAL_ESTIMATE_BPS: u64 = 1_000_000;

/// Audio packets str0m may hold back waiting for a missing earlier one
/// before forwarding what follows. Every Opus packet is a whole 20 ms frame
/// and browsers do not retransmit audio, so waiting only delays everyone's
/// audio (str0m's default of 15 made each lost packet a ~300 ms pause for
/// every subscriber); the receivers' jitter buffers reorder.
const AUDIO_REORDER_PACKETS: usize = 1;

/// Longest an audio frame waits for a missing earlier packet.
const AUDIO_REORDER_WAIT: Duration = Duration::from_millis(20);

/// How often active speakers are re-evaluated.
const SPEAKER_EVAL_INTERVAL: Duration = Duration::from_millis(100);
/// A subscriber whose str0m send queue holds audio older than this gets
/// no new audio frames until the queue is younger again (they are shed,
/// as a congested link would lose them; Opus conceals the gap). str0m's
/// queues have no bound: a server short of CPU, or a session whose
/// DTLS is not up yet, would otherwise deliver seconds-old audio, and
/// every frame queued behind it (a joiner's first frames of its epoch)
/// as late. A frame written behind 100 ms of audio waits about as long
/// again, so the audio heard stays within about 300 ms.
pub const MAX_AUDIO_QUEUE_AGE: Duration = Duration::from_millis(100);

impl Sfu {
    /// A new SFU with no rooms.
    pub fn new(config: SfuConfig) -> Self {
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        Sfu {
            config,
            dtls_cert: crypto.dtls_provider.generate_certificate(),
            crypto,
            participants: BTreeMap::new(),
            rooms: HashMap::new(),
            routes: HashMap::new(),
            queue: VecDeque::new(),
            ring: VecDeque::new(),
            touched: Vec::new(),
            next_id: 1,
            last_now: None,
            stats: SfuStats::default(),
            speakers: HashMap::new(),
            next_speaker_eval: None,
            next_adapt: None,
            next_quality_report: None,
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    /// Number of rooms with at least one participant.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Participants in `room`, empty if the room does not exist.
    pub fn room_members(&self, room: &str) -> Vec<ParticipantId> {
        RoomId::parse(room).ok().and_then(|r| self.rooms.get(&r).cloned()).unwrap_or_default()
    }

    /// Adds a participant to `room` (created on first join). Queues
    /// `joined` for the joiner and `participant_joined` for the others.
    ///
    /// # Errors
    /// [`SfuError::BadRoomId`], [`SfuError::ProfileTooLarge`],
    /// [`SfuError::UnsupportedVersion`], [`SfuError::RoomFull`].
    pub fn join(&mut self, now: Instant, room: &str, profile: String, version: u32) -> Result<ParticipantId, SfuError> {
        self.settle();
        self.last_now = Some(now);
        if version != PROTOCOL_VERSION {
            return Err(SfuError::UnsupportedVersion(version));
        }
        let room = RoomId::parse(room)?;
        if profile.len() > MAX_PROFILE_BYTES {
            return Err(SfuError::ProfileTooLarge(profile.len()));
        }
        let members = self.rooms.get(&room).cloned().unwrap_or_default();
        if members.len() >= self.config.max_room_size {
            return Err(SfuError::RoomFull);
        }
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let mut me = Participant::new(id, room.clone(), profile);
        let mut others = Vec::new();
        for m in &members {
            if let Some(p) = self.participants.get(m) {
                others.push(p.info());
                for t in &p.tracks_in {
                    me.tracks_out.push(TrackOut::new(p.id, t.mid, t.kind));
                }
            }
        }
        let info = me.info();
        self.participants.insert(id, me);
        self.rooms.entry(room.clone()).or_default().push(id);
        info!(participant = %id, room_size = members.len() + 1, "participant joined");
        self.queue.push_back(Output::Signal(
            id,
            ServerMsg::Joined {
                participant_id: id,
                room: room.to_string(),
                participants: others,
                ice_servers: self.config.ice_servers.clone(),
            },
        ));
        for m in members {
            self.queue.push_back(Output::Signal(m, ServerMsg::ParticipantJoined { participant: info.clone() }));
        }
        if let Some(speaker) = self.speakers.get(&room).and_then(|d| d.current()) {
            self.queue.push_back(Output::Signal(id, ServerMsg::ActiveSpeaker { participant_id: speaker }));
        }
        Ok(id)
    }

    /// Handles a signaling message from a joined participant (anything but
    /// `join`). Queues any answer.
    ///
    /// # Errors
    /// [`SfuError::UnknownParticipant`], [`SfuError::AlreadyJoined`] for a
    /// second `join`, [`SfuError::BadSdp`], [`SfuError::OutOfTurn`],
    /// [`SfuError::UnknownMid`]. The participant stays in the room.
    pub fn handle_message(&mut self, now: Instant, id: ParticipantId, msg: ClientMsg) -> Result<(), SfuError> {
        self.settle();
        self.last_now = Some(now);
        if !self.participants.contains_key(&id) {
            return Err(SfuError::UnknownParticipant);
        }
        let result = match msg {
            ClientMsg::Join { .. } => Err(SfuError::AlreadyJoined),
            ClientMsg::Offer { sdp } => self.handle_offer(now, id, &sdp),
            ClientMsg::Answer { sdp } => self.handle_answer(now, id, &sdp),
            ClientMsg::SetMuted { kind, muted } => {
                self.set_muted(id, kind, muted);
                Ok(())
            }
            ClientMsg::LayerPreference { mid, width, height, pinned } => {
                self.layer_preference(now, id, &mid, width, height, pinned)
            }
            ClientMsg::Ping { id: ping } => {
                self.queue.push_back(Output::Signal(id, ServerMsg::Pong { id: ping }));
                Ok(())
            }
            ClientMsg::Leave => {
                self.remove(id);
                Ok(())
            }
            // End-to-end encryption messages are the Delivery Service's
            // business (plenary-server), never the SFU's.
            ClientMsg::Mls { .. } => Ok(()),
            ClientMsg::GroupMember { leaf } => {
                self.set_leaf(id, leaf);
                Ok(())
            }
        };
        self.process(vec![id]);
        result
    }

    /// Removes a participant (WebSocket closed or `leave`); tells the others
    /// and stops its tracks in their sessions. Drops the room when empty.
    pub fn leave(&mut self, now: Instant, id: ParticipantId) {
        self.settle();
        self.last_now = Some(now);
        self.remove(id);
    }

    /// [`Sfu::leave`] without settling the drain first (called from it).
    pub(crate) fn remove(&mut self, id: ParticipantId) {
        let Some(mut gone) = self.participants.remove(&id) else {
            return;
        };
        if let Some(rtc) = gone.rtc.as_mut() {
            rtc.disconnect();
        }
        self.routes.retain(|_, p| *p != id);
        let members = match self.rooms.get_mut(&gone.room) {
            Some(m) => {
                m.retain(|p| *p != id);
                m.clone()
            }
            None => Vec::new(),
        };
        if let Some(d) = self.speakers.get_mut(&gone.room) {
            d.remove(id);
        }
        if members.is_empty() {
            self.rooms.remove(&gone.room);
            self.speakers.remove(&gone.room);
            info!(participant = %id, "participant left; room closed");
        } else {
            info!(participant = %id, room_size = members.len(), "participant left");
        }
        for m in &members {
            if let Some(p) = self.participants.get_mut(m) {
                p.tracks_out.retain_mut(|t| {
                    if t.source != id {
                        return true;
                    }
                    match t.state {
                        OutState::ToOpen => false,
                        OutState::Open(mid) => {
                            t.state = OutState::ToStop(mid);
                            true
                        }
                        OutState::Negotiating(_) => {
                            t.orphaned = true;
                            true
                        }
                        OutState::ToStop(_) | OutState::NegotiatingStop(_) => true,
                    }
                });
            }
            self.queue.push_back(Output::Signal(*m, ServerMsg::ParticipantLeft { participant_id: id }));
        }
        self.process(members);
    }

    /// Feeds one datagram received on a media socket.
    ///
    /// # Errors
    /// [`SfuError::UnrecognisedDatagram`] for bytes that are not STUN, DTLS,
    /// RTP or RTCP; [`SfuError::UnknownPeer`] when no session accepts it.
    /// Either way the datagram is dropped and nothing else is affected.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> Result<(), SfuError> {
        self.settle();
        self.last_now = Some(now);
        let Ok(datagram) = contents.try_into() else {
            self.stats.datagrams_unrecognised += 1;
            return Err(SfuError::UnrecognisedDatagram(contents.len()));
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents: datagram });
        let cached =
            self.routes.get(&(proto, source)).copied().filter(|id| {
                self.participants.get(id).and_then(|p| p.rtc.as_ref()).is_some_and(|rtc| rtc.accepts(&input))
            });
        let target = cached.or_else(|| {
            self.participants.values().find(|p| p.rtc.as_ref().is_some_and(|rtc| rtc.accepts(&input))).map(|p| p.id)
        });
        let Some(id) = target else {
            self.stats.datagrams_unrouted += 1;
            return Err(SfuError::UnknownPeer);
        };
        if cached.is_none() {
            self.routes.insert((proto, source), id);
        }
        if let Some(rtc) = self.participants.get_mut(&id).and_then(|p| p.rtc.as_mut())
            && let Err(e) = rtc.handle_input(input)
        {
            debug!(participant = %id, error = %e, "input rejected by session");
        }
        self.process(vec![id]);
        Ok(())
    }

    /// Advances time: drives every session whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        self.last_now = Some(now);
        if self.next_speaker_eval.is_none_or(|t| t <= now) {
            self.next_speaker_eval = Some(now + SPEAKER_EVAL_INTERVAL);
            self.evaluate_speakers(now);
        }
        if self.next_adapt.is_none_or(|t| t <= now) {
            self.next_adapt = Some(now + ADAPT_INTERVAL);
            let report = self.next_quality_report.is_none_or(|t| t <= now);
            if report {
                self.next_quality_report = Some(now + QUALITY_REPORT_INTERVAL);
            }
            self.adapt(now, report);
        }
        let due: Vec<ParticipantId> = self
            .participants
            .values()
            .filter(|p| p.rtc.is_some() && p.due_at().is_none_or(|t| t <= now))
            .map(|p| p.id)
            .collect();
        // Each is given `Input::Timeout(now)` when its turn in the ring
        // comes, so the first subscriber's packets leave before the last
        // one's frame is packetized.
        self.ring.extend(due.into_iter().map(Draining::fed));
    }

    fn evaluate_speakers(&mut self, now: Instant) {
        let audio_streams = self.config.audio_streams;
        for (room, d) in &mut self.speakers {
            let changed = d.evaluate(now);
            if audio_streams > 0 {
                d.rank_loudest(audio_streams + 1);
            }
            if let Some(speaker) = changed {
                for m in self.rooms.get(room).into_iter().flatten() {
                    self.queue.push_back(Output::Signal(*m, ServerMsg::ActiveSpeaker { participant_id: speaker }));
                }
            }
        }
    }

    /// Next thing to do. Call until it returns [`Output::Timeout`], and
    /// send each datagram as it comes: the sessions with work are drained
    /// here, one datagram per session in turn (`drain`), so a frame's first
    /// packet reaches every subscriber before its second reaches any. The
    /// next `handle_*` call finishes any drain left unpolled.
    pub fn poll_output(&mut self, now: Instant) -> Output {
        loop {
            if let Some(o) = self.queue.pop_front() {
                return o;
            }
            if !self.step() {
                break;
            }
        }
        let next = self
            .participants
            .values()
            .filter_map(|p| p.due_at())
            .chain(self.next_speaker_eval.filter(|_| !self.speakers.is_empty()))
            .chain(self.next_adapt.filter(|_| !self.participants.is_empty()))
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        Output::Timeout(next.max(self.last_now.unwrap_or(now)).min(now + Duration::from_secs(1)))
    }

    // ---- signaling ----

    fn handle_offer(&mut self, now: Instant, id: ParticipantId, sdp: &str) -> Result<(), SfuError> {
        let session = self.participants.get(&id).and_then(|p| p.rtc.as_deref());
        let known = |mid| session.is_some_and(|rtc| rtc.media(mid).is_some());
        crate::sdp_check::check_sdp(sdp, known, crate::sdp_check::MAX_NEW_MEDIA_SECTIONS)?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| {
            debug!(participant = %id, error = %e, "offer does not parse");
            SfuError::BadSdp("the offer is not valid SDP".into())
        })?;
        let config = &self.config;
        let crypto = self.crypto.clone();
        let cert = self.dtls_cert.as_ref();
        let p = self.participants.get_mut(&id).ok_or(SfuError::UnknownParticipant)?;
        if p.pending_offer.is_some() {
            return Err(SfuError::OutOfTurn("an offer from the server is awaiting your answer"));
        }
        let mut fresh = None;
        let rtc = match p.rtc.as_deref_mut() {
            Some(rtc) => rtc,
            None => fresh.insert(new_rtc(config, crypto, cert, now, offers_twcc(sdp))),
        };
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| {
            debug!(participant = %id, error = %e, "offer refused");
            SfuError::BadSdp("the offer cannot be applied".into())
        })?;
        if let Some(rtc) = fresh {
            p.rtc = Some(Box::new(rtc));
        }
        for t in &mut p.tracks_out {
            if let OutState::Negotiating(_) = t.state {
                t.state = OutState::ToOpen;
            }
        }
        self.queue.push_back(Output::Signal(id, ServerMsg::Answer { sdp: answer.to_sdp_string() }));
        Ok(())
    }

    fn handle_answer(&mut self, now: Instant, id: ParticipantId, sdp: &str) -> Result<(), SfuError> {
        let p = self.participants.get(&id).ok_or(SfuError::UnknownParticipant)?;
        let offered = p.tracks_out.iter().filter(|t| matches!(t.state, OutState::Negotiating(_))).count();
        let session = p.rtc.as_deref();
        crate::sdp_check::check_sdp(sdp, |mid| session.is_some_and(|rtc| rtc.media(mid).is_some()), offered)?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| {
            debug!(participant = %id, error = %e, "answer does not parse");
            SfuError::BadSdp("the answer is not valid SDP".into())
        })?;
        let p = self.participants.get_mut(&id).ok_or(SfuError::UnknownParticipant)?;
        let (Some(rtc), Some(pending)) = (p.rtc.as_mut(), p.pending_offer.take()) else {
            return Err(SfuError::OutOfTurn("no offer from the server is awaiting an answer"));
        };
        if let Err(e) = rtc.sdp_api().accept_answer(pending, answer) {
            // The offer is lost; renegotiate the tracks it carried.
            for t in &mut p.tracks_out {
                match t.state {
                    OutState::Negotiating(_) => t.state = OutState::ToOpen,
                    OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                    _ => {}
                }
            }
            debug!(participant = %id, error = %e, "answer refused");
            return Err(SfuError::BadSdp("the answer cannot be applied".into()));
        }
        p.tracks_out.retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        for t in &mut p.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = if t.orphaned { OutState::ToStop(m) } else { OutState::Open(m) };
                t.warm_until = Some(now + crate::adaptive::WARMUP);
                crate::history::size_stream(rtc, m, to_str0m_kind(t.kind));
            }
        }
        Ok(())
    }

    fn set_muted(&mut self, id: ParticipantId, kind: MediaKind, muted: bool) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        match kind {
            MediaKind::Audio => p.audio_muted = muted,
            MediaKind::Video => p.video_muted = muted,
        }
        let info = p.info();
        for m in self.rooms.get(&p.room).cloned().unwrap_or_default() {
            if m != id {
                self.queue.push_back(Output::Signal(m, ServerMsg::ParticipantUpdated { participant: info.clone() }));
            }
        }
    }

    /// Records the participant's leaf index in the room's MLS group and
    /// tells the others (`participant_updated`).
    pub fn set_leaf(&mut self, id: ParticipantId, leaf: u32) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        p.leaf = Some(leaf);
        let info = p.info();
        for m in self.rooms.get(&p.room).cloned().unwrap_or_default() {
            if m != id {
                self.queue.push_back(Output::Signal(m, ServerMsg::ParticipantUpdated { participant: info.clone() }));
            }
        }
    }

    fn layer_preference(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: &str,
        w: u32,
        h: u32,
        pinned: bool,
    ) -> Result<(), SfuError> {
        let p = self.participants.get_mut(&id).ok_or(SfuError::UnknownParticipant)?;
        let Some(t) = p.tracks_out.iter_mut().find(|t| t.live_mid().is_some_and(|m| *m == *mid)) else {
            return Err(SfuError::UnknownMid(mid.chars().take(32).collect()));
        };
        t.selector.set_preferred(w, h);
        t.pinned = pinned;
        let (source, source_mid) = (t.source, t.source_mid);
        self.retarget(now, id, source, source_mid);
        let mut work = self.allocate(now, id);
        self.update_paused(now, source);
        work.push(source);
        self.process(work);
        Ok(())
    }

    /// Re-chooses the layer `subscriber` receives of `source`'s track and
    /// requests a key frame on a newly chosen layer.
    fn retarget(&mut self, now: Instant, subscriber: ParticipantId, source: ParticipantId, source_mid: Mid) {
        let Some(layers) = self
            .participants
            .get(&source)
            .and_then(|p| p.tracks_in.iter().find(|t| t.mid == source_mid))
            .map(|t| t.layers.clone())
        else {
            return;
        };
        let Some(sub) = self.participants.get_mut(&subscriber) else { return };
        let Some(t) = sub.tracks_out.iter_mut().find(|t| t.source == source && t.source_mid == source_mid) else {
            return;
        };
        if let Some(rid) = t.selector.retarget(&layers, now) {
            self.request_keyframe(now, source, source_mid, rid.as_deref());
        }
    }

    pub(crate) fn request_keyframe(&mut self, now: Instant, source: ParticipantId, mid: Mid, rid: Option<&str>) {
        let interval = self.config.pli_interval;
        let Some(p) = self.participants.get_mut(&source) else { return };
        let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else { return };
        if t.kind != MediaKind::Video || !t.may_request_keyframe(rid.map(Into::into), now, interval) {
            return;
        }
        if let Some(mut w) = p.rtc.as_mut().and_then(|rtc| rtc.writer(mid)) {
            match w.request_keyframe(rid.map(Into::into), KeyframeRequestKind::Pli) {
                Ok(()) => self.stats.keyframe_requests += 1,
                Err(e) => debug!(participant = %source, error = %e, "key frame request failed"),
            }
        }
    }

    pub(crate) fn handle_event(&mut self, now: Instant, id: ParticipantId, ev: Event, work: &mut Vec<ParticipantId>) {
        match ev {
            Event::Connected => info!(participant = %id, "media connected"),
            Event::IceConnectionStateChange(state) => {
                debug!(participant = %id, ?state, "ICE state");
                if state == IceConnectionState::Disconnected {
                    if let Some(rtc) = self.participants.get_mut(&id).and_then(|p| p.rtc.as_mut()) {
                        rtc.disconnect();
                    }
                    work.push(id);
                }
            }
            Event::MediaAdded(added) => {
                if matches!(added.direction, Direction::RecvOnly | Direction::SendRecv) {
                    self.track_published(now, id, added.mid, kind_of(added.kind));
                }
            }
            Event::MediaData(data) => self.forward(now, id, data, work),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                work.extend(self.on_estimate(now, id, estimate));
            }
            Event::RawPacket(raw) => {
                if let str0m::rtp::RawPacket::RtpTx(_, rtp) = *raw {
                    let destination = self.routes.iter().find(|(_, p)| **p == id).map(|((_, addr), _)| *addr);
                    let source = self.config.udp_candidates.first().copied().unwrap_or(([0, 0, 0, 0], 0).into());
                    self.queue.push_back(Output::Tap { source, destination, rtp });
                }
            }
            Event::KeyframeRequest(req) => {
                let found = self.participants.get(&id).and_then(|p| {
                    p.tracks_out.iter().find(|t| t.live_mid() == Some(req.mid)).map(|t| {
                        let rid = t.selector.pending_target().or(t.selector.current()).cloned().flatten();
                        (t.source, t.source_mid, rid)
                    })
                });
                if let Some((source, source_mid, rid)) = found {
                    self.request_keyframe(now, source, source_mid, rid.as_deref());
                    work.push(source);
                }
            }
            _ => {}
        }
    }

    fn track_published(&mut self, now: Instant, id: ParticipantId, mid: Mid, kind: MediaKind) {
        let Some(p) = self.participants.get_mut(&id) else { return };
        if p.tracks_in.iter().any(|t| t.mid == mid) {
            return;
        }
        p.tracks_in.push(TrackIn::new(mid, kind, now));
        debug!(participant = %id, %mid, ?kind, "track published");
        let room = p.room.clone();
        for m in self.rooms.get(&room).cloned().unwrap_or_default() {
            if m == id {
                continue;
            }
            if let Some(sub) = self.participants.get_mut(&m) {
                sub.tracks_out.push(TrackOut::new(id, mid, kind));
                self.negotiate(m);
            }
        }
    }

    /// Forwards one frame from `source` to every subscriber of the track.
    fn forward(&mut self, now: Instant, source: ParticipantId, data: MediaData, work: &mut Vec<ParticipantId>) {
        let rid: Option<String> = data.rid.map(|r| r.to_string());
        let is_vp8 = data.params.spec().codec == Codec::Vp8;
        let size = if data.is_keyframe() && is_vp8 { vp8_keyframe_size(&data.data) } else { None };
        // A VP8 key frame must carry its (clear) header; anything else
        // claiming to be one is not a safe switching point.
        let keyframe = data.is_keyframe() && (!is_vp8 || size.is_some());
        let (layers_changed, layers, kind, size_unknown) = {
            let Some(p) = self.participants.get_mut(&source) else { return };
            let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == data.mid) else { return };
            let changed = t.saw_frame(rid.as_deref(), size, data.data.len(), now);
            if keyframe {
                // The request was answered: a subscriber that needs the next
                // key frame (a new track going live, a loss) may ask at once.
                t.last_pli.retain(|(r, _)| *r != data.rid);
            }
            let unknown = t.layers.iter().any(|l| l.rid == rid && l.height.is_none());
            (changed, if changed { t.layers.clone() } else { Vec::new() }, t.kind, unknown)
        };
        if kind == MediaKind::Video && is_vp8 && size_unknown {
            // Learn this layer's size from a key frame so subscribers can be
            // given the layer that fits their tile (rate limited).
            self.request_keyframe(now, source, data.mid, rid.as_deref());
            work.push(source);
        }
        if !data.contiguous && kind == MediaKind::Video {
            self.request_keyframe(now, source, data.mid, rid.as_deref());
            work.push(source);
        }
        // Borrowed, not cloned, per frame: the loop below touches only
        // other fields of `self`.
        let Some(room) = self.participants.get(&source).map(|p| &p.room) else { return };
        let audio_streams = self.config.audio_streams;
        if kind == MediaKind::Audio {
            let level = data.ext_vals.audio_level;
            let d = match self.speakers.get_mut(room) {
                Some(d) => d,
                None => self.speakers.entry(room.clone()).or_default(),
            };
            if d.record(source, level, now) && audio_streams > 0 {
                d.admit(source, audio_streams + 1);
            }
        }
        // Audio goes only to the subscribers it is one of the loudest for.
        let loudest = if kind == MediaKind::Audio && audio_streams > 0 { self.speakers.get(room) } else { None };
        let members: &[ParticipantId] = self.rooms.get(room).map(Vec::as_slice).unwrap_or(&[]);
        let mut pli_for: Vec<Option<String>> = Vec::new();
        // VP8 video is packetized once, on the first subscriber that takes
        // this frame, and the packets are shared by all (`fanout`).
        let shared_vp8 = kind == MediaKind::Video && is_vp8;
        let mut vp8_packets: Option<Vec<Arc<[u8]>>> = None;
        for &m in members {
            if m == source {
                continue;
            }
            let Some(sub) = self.participants.get_mut(&m) else { continue };
            let Some(t) = sub.tracks_out.iter_mut().find(|t| t.source == source && t.source_mid == data.mid) else {
                continue;
            };
            let Some(out_mid) = t.live_mid() else { continue };
            let rtp_time = if kind == MediaKind::Audio {
                if loudest.is_some_and(|d| !d.forwards_audio(m, source, audio_streams)) {
                    self.stats.audio_frames_unselected += 1;
                    continue;
                }
                if sub.rtc.as_deref_mut().is_some_and(|rtc| audio_backlogged(rtc, out_mid, now)) {
                    self.stats.audio_frames_shed += 1;
                    continue;
                }
                data.time.numer()
            } else {
                if layers_changed && let Some(r) = t.selector.retarget(&layers, now) {
                    pli_for.push(r);
                }
                match t.selector.on_frame(&rid, data.time.numer(), keyframe, data.contiguous, now) {
                    Verdict::Drop => continue,
                    Verdict::WaitKeyframe => {
                        // Waiting for a key frame of this layer: ask (rate limited).
                        pli_for.push(rid.clone());
                        continue;
                    }
                    Verdict::Forward { rtp_time, switched } => {
                        if switched {
                            self.stats.layer_switches += 1;
                            self.queue.push_back(Output::Signal(
                                m,
                                ServerMsg::Layer { mid: out_mid.to_string(), rid: rid.clone() },
                            ));
                        }
                        rtp_time
                    }
                }
            };
            let time = MediaTime::new(rtp_time, data.time.frequency());
            let wallclock = t.wallclock_for(data.network_time);
            let written = match sub.rtc.as_mut() {
                None => Err(String::from("no session")),
                Some(rtc) => match rtc.writer(out_mid).map(|w| w.match_params(data.params)) {
                    None => Err(String::from("no writer for the m-line")),
                    Some(None) => Err(String::from("no matching payload type")),
                    Some(Some(pt)) if shared_vp8 => {
                        let packets = vp8_packets.get_or_insert_with(|| packetize_vp8(&data.data));
                        write_packets(rtc, out_mid, pt, &mut t.next_seq, time.numer() as u32, wallclock, packets)
                            .map_err(|e| e.to_string())
                    }
                    Some(Some(pt)) => match rtc.writer(out_mid) {
                        None => Err(String::from("no writer for the m-line")),
                        Some(writer) => writer.write(pt, wallclock, time, data.data.clone()).map_err(|e| e.to_string()),
                    },
                },
            };
            match written {
                Ok(()) => {
                    self.stats.frames_forwarded += 1;
                    sub.media_written_at(now);
                }
                Err(e) => {
                    debug!(participant = %m, error = %e, "write failed");
                    if kind == MediaKind::Video {
                        // The selector counted it as sent; what follows may
                        // reference it. Wait for (and ask) a key frame.
                        t.selector.write_failed();
                        pli_for.push(rid.clone());
                    }
                }
            }
        }
        pli_for.sort();
        pli_for.dedup();
        for r in pli_for {
            self.request_keyframe(now, source, data.mid, r.as_deref());
            work.push(source);
        }
    }

    /// Sends a server offer to `id` if tracks need adding or stopping and no
    /// offer is outstanding; true if it did.
    pub(crate) fn negotiate(&mut self, id: ParticipantId) -> bool {
        let Some(p) = self.participants.get_mut(&id) else { return false };
        if p.pending_offer.is_some() {
            return false;
        }
        // Called for every session a frame touched: nothing to do is the rule.
        if !p.tracks_out.iter().any(|t| matches!(t.state, OutState::ToOpen | OutState::ToStop(_))) {
            return false;
        }
        let Some(rtc) = p.rtc.as_mut() else { return false };
        let mut change = rtc.sdp_api();
        for t in &mut p.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let mid = change.add_media(
                        to_str0m_kind(t.kind),
                        Direction::SendOnly,
                        Some(format!("{}", t.source)),
                        Some(format!("{}-{}", t.source, t.source_mid)),
                        None,
                    );
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return false;
        }
        let Some((offer, pending)) = change.apply() else { return false };
        p.pending_offer = Some(pending);
        let track_map = p
            .tracks_out
            .iter()
            .filter(|t| !t.orphaned)
            .filter_map(|t| {
                t.live_mid().map(|mid| TrackInfo { mid: mid.to_string(), participant_id: t.source, kind: t.kind })
            })
            .collect();
        self.queue.push_back(Output::Signal(id, ServerMsg::Offer { sdp: offer.to_sdp_string(), track_map }));
        true
    }
}

/// Whether an SDP offer negotiates transport-wide congestion control
/// feedback (draft-holmer-rmcat-transport-wide-cc-extensions; every
/// browser does).
fn offers_twcc(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("a=extmap:") && l.contains("transport-wide-cc"))
}

/// A session for a participant whose first offer is being accepted. With
/// `twcc`, str0m estimates the downlink and paces what it sends at 1.1 ×
/// the estimate. A peer that sends no TWCC feedback gives the estimator
/// nothing: the estimate would stay at [`INITIAL_ESTIMATE_BPS`] for
/// good, the allocation would cap its layers there and the pacer would
/// queue anything above 1.1 Mbit/s without limit (a key frame of a
/// 1 Mbit/s stream waited tens of ms behind it). Such a peer gets what it
/// asks for, unpaced, as Janus and a plain relay would send it.
fn new_rtc(
    config: &SfuConfig,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    cert: Option<&DtlsCert>,
    now: Instant,
    twcc: bool,
) -> Rtc {
    let mut builder = Rtc::builder();
    if let Some(cert) = cert {
        builder = builder.set_dtls_cert(cert.clone());
    }
    let mut rtc = crate::history::configure(builder)
        .set_ice_lite(true)
        .set_crypto_provider(crypto)
        // Video is VP8 only: SFrame's clear header bytes (plenary-e2ee
        // media.rs), key frame detection and the shared packetizing of
        // `fanout` know VP8 and Opus; a second video codec on one track
        // would also give its SSRC two unrelated sequence counters.
        .enable_vp9(false)
        .enable_h264(false)
        .enable_h265(false)
        .enable_av1(false)
        .enable_raw_packets(config.tap)
        .enable_bwe(twcc.then(|| Bitrate::from(INITIAL_ESTIMATE_BPS)))
        .set_reordering_size_audio(AUDIO_REORDER_PACKETS)
        .set_reordering_timeout_audio(Some(AUDIO_REORDER_WAIT))
        .build(now);
    for addr in &config.udp_candidates {
        match Candidate::host(*addr, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => warn!(error = %e, "bad UDP candidate"),
        }
    }
    for addr in &config.tcp_candidates {
        match Candidate::builder().tcp().host(*addr).tcptype(TcpType::Passive).build() {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => warn!(error = %e, "bad TCP candidate"),
        }
    }
    rtc
}

fn kind_of(k: str0m::media::MediaKind) -> MediaKind {
    match k {
        str0m::media::MediaKind::Audio => MediaKind::Audio,
        str0m::media::MediaKind::Video => MediaKind::Video,
    }
}

fn to_str0m_kind(k: MediaKind) -> str0m::media::MediaKind {
    match k {
        MediaKind::Audio => str0m::media::MediaKind::Audio,
        MediaKind::Video => str0m::media::MediaKind::Video,
    }
}

/// Whether the audio queued in `rtc` for `mid` waits for longer than
/// [`MAX_AUDIO_QUEUE_AGE`] (from str0m's queue sample of its last timeout).
fn audio_backlogged(rtc: &mut Rtc, mid: Mid, now: Instant) -> bool {
    let mut api = rtc.direct_api();
    let oldest = api.stream_tx_by_mid(mid, None).and_then(|s| s.queue_info()).and_then(|q| q.first_unsent());
    oldest.is_some_and(|t| now.saturating_duration_since(t) > MAX_AUDIO_QUEUE_AGE)
}
