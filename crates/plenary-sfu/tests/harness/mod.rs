//! A deterministic, virtual-time meeting: the SFU and str0m client peers in
//! one process, packets handed over in memory, time advanced to whichever
//! deadline is due next (as str0m's own tests do). No sockets, no clock.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plenary_proto::{ClientMsg, ParticipantId, ServerMsg, TrackInfo};
use plenary_sfu::{Output, Sfu, SfuConfig};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Rtc};
use str0m_netem::{Netem, NetemConfig};

/// The SFU's media address in the virtual network.
pub const SFU_ADDR: ([u8; 4], u16) = ([10, 0, 0, 1], 5000);

/// One received frame as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub mid: Mid,
    pub first_seq: u64,
    pub last_seq: u64,
    pub rtp_time: u64,
    pub keyframe: bool,
    pub contiguous: bool,
    pub layer_tag: u8,
    pub len: usize,
}

/// A client peer.
pub struct Peer {
    pub id: ParticipantId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub next: Instant,
    pub video_mid: Option<Mid>,
    pub audio_mid: Option<Mid>,
    pub simulcast: bool,
    pub track_map: Vec<TrackInfo>,
    pub signals: Vec<ServerMsg>,
    /// When each of `signals` arrived.
    pub signal_times: Vec<Instant>,
    pub received: Vec<Received>,
    pub frame_no: u64,
    pub connected: bool,
    /// A PLI/FIR arrived: the next frame of each layer is a key frame.
    pub keyframe_requested: bool,
    /// RFC 6464 level sent with audio, -dBov (127 = silence).
    pub audio_level: i8,
    /// Own offer awaiting the SFU's answer.
    pub pending: Option<str0m::change::SdpPendingOffer>,
    /// Emulated link SFU → peer (none: perfect).
    pub downlink: Option<Netem<Vec<u8>>>,
    /// Emulated link peer → SFU (none: perfect).
    pub uplink: Option<Netem<Vec<u8>>>,
    /// Simulcast layers the SFU asked this publisher to pause (a browser
    /// sets `active = false` on them).
    pub paused: Vec<String>,
}

/// The world: SFU + peers + virtual clock.
pub struct World {
    pub sfu: Sfu,
    pub sfu_next: Instant,
    pub start: Instant,
    pub now: Instant,
    pub peers: Vec<Peer>,
    /// Packets from this address to the SFU are lost until the instant.
    pub blackout: Option<(SocketAddr, Instant)>,
    /// Bytes of one video frame of each simulcast layer (q, h, f); at 30
    /// frames a second 625 bytes are 150 kbit/s.
    pub layer_bytes: [usize; 3],
    /// Bytes of one 20 ms audio frame (60: 24 kbit/s of Opus payload).
    pub audio_bytes: usize,
    /// Resolution of the SFU's timer (none: exact). The server waits with
    /// tokio's timer, which rounds a deadline in the future up to the next
    /// millisecond, so a session that asks to be woken 1 µs later waits
    /// up to 1 ms; set `Some(1 ms)` to drive the SFU that way.
    pub sfu_timer_tick: Option<Duration>,
    /// A datagram reached the SFU since its last timeout.
    sfu_received: bool,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>, bool)>,
}

/// Bytes of one frame of each simulcast layer for about 150 kbit/s,
/// 500 kbit/s and 1.3 Mbit/s at 30 frames a second, as a browser sends for
/// 180p/360p/720p (for [`World::layer_bytes`]).
pub const REALISTIC_LAYERS: [usize; 3] = [625, 2_080, 5_400];

/// Layer sizes written in VP8 key frame headers: (rid, width, height, tag).
pub const LAYERS: [(&str, u32, u32, u8); 3] = [("q", 160, 90, 1), ("h", 320, 180, 2), ("f", 640, 360, 3)];

impl World {
    pub fn new() -> World {
        World::with_config(SfuConfig::default())
    }

    /// A world whose SFU has `config` (its ICE candidate set here).
    pub fn with_config(config: SfuConfig) -> World {
        let start = Instant::now();
        let sfu_addr = SocketAddr::from(SFU_ADDR);
        let sfu = Sfu::new(SfuConfig { udp_candidates: vec![sfu_addr], ..config });
        World {
            sfu,
            sfu_next: start,
            start,
            now: start,
            peers: Vec::new(),
            blackout: None,
            layer_bytes: [200, 400, 600],
            audio_bytes: 60,
            sfu_timer_tick: None,
            sfu_received: false,
            wire: VecDeque::new(),
        }
    }

    /// A participant joins `room`, publishing audio and (simulcast) video
    /// when `publish` is set; returns its index.
    pub fn join(&mut self, room: &str, publish: bool, simulcast: bool) -> usize {
        self.join_with(room, publish, publish, simulcast)
    }

    /// A participant joins `room`, publishing audio when `audio`, and
    /// (simulcast) video when `video`; returns its index.
    pub fn join_with(&mut self, room: &str, audio: bool, video: bool, simulcast: bool) -> usize {
        let n = self.peers.len() as u8 + 2;
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 1, n), 6000));
        let id = self.sfu.join(self.now, room, format!("{{\"name\":\"peer{n}\"}}"), 1).expect("join");
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let mut rtc = Rtc::builder().set_crypto_provider(crypto).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut change = rtc.sdp_api();
        let mut video_mid = None;
        if video {
            let sim = simulcast.then(|| {
                let mut s = Simulcast::new();
                for (rid, ..) in LAYERS {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            });
            video_mid = Some(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, sim));
        }
        let audio_mid = if audio {
            Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None))
        } else if video {
            None
        } else {
            // A receive-only participant still needs a transport: offer an inactive audio line.
            change.add_media(MediaKind::Audio, Direction::Inactive, None, None, None);
            None
        };
        let (offer, pending) = change.apply().expect("offer");
        let peer = Peer {
            id,
            addr,
            rtc,
            next: self.now,
            video_mid,
            audio_mid,
            simulcast,
            track_map: Vec::new(),
            signals: Vec::new(),
            signal_times: Vec::new(),
            received: Vec::new(),
            frame_no: 0,
            connected: false,
            keyframe_requested: false,
            audio_level: 127,
            pending: Some(pending),
            downlink: None,
            uplink: None,
            paused: Vec::new(),
        };
        self.peers.push(peer);
        let idx = self.peers.len() - 1;
        self.sfu.handle_message(self.now, id, ClientMsg::Offer { sdp: offer.to_sdp_string() }).expect("offer accepted");
        self.pump();
        idx
    }

    /// Delivers SFU outputs and signaling until everything is quiet at `now`.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut busy = false;
            loop {
                match self.sfu.poll_output(self.now) {
                    Output::Transmit(t) => {
                        self.wire.push_back((t.source, t.destination, t.contents.to_vec(), false));
                        busy = true;
                    }
                    Output::Signal(id, msg) => {
                        busy = true;
                        self.signal(id, msg);
                    }
                    Output::Disconnected(_) | Output::Tap { .. } => busy = true,
                    Output::Timeout(t) => {
                        self.sfu_next = self.sfu_wake_at(t);
                        break;
                    }
                }
            }
            for i in 0..self.peers.len() {
                busy |= self.drain_peer(i);
            }
            while let Some((src, dst, data, _)) = self.wire.pop_front() {
                busy = true;
                self.enter_link(src, dst, data);
            }
            busy |= self.drain_links();
            if self.sfu_timer_tick.is_some() && std::mem::take(&mut self.sfu_received) {
                // As the server does after each batch of datagrams.
                self.sfu.handle_timeout(self.now);
                busy = true;
            }
            if !busy {
                return;
            }
        }
        panic!("virtual network did not settle");
    }

    /// When the SFU's timer fires for deadline `t`: at once if it is due,
    /// else at `t` rounded up to [`World::sfu_timer_tick`].
    fn sfu_wake_at(&self, t: Instant) -> Instant {
        let Some(tick) = self.sfu_timer_tick.filter(|_| t > self.now) else { return t };
        let ticks = (t - self.start).as_nanos().div_ceil(tick.as_nanos());
        self.start + tick * u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Puts a datagram on the emulated link it travels, or delivers it at
    /// once when that link is perfect.
    fn enter_link(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let now = self.now;
        let sfu = SocketAddr::from(SFU_ADDR);
        let link = self.peers.iter_mut().find_map(|p| {
            if dst == p.addr {
                p.downlink.as_mut()
            } else if src == p.addr && dst == sfu {
                p.uplink.as_mut()
            } else {
                None
            }
        });
        match link {
            Some(link) => link.handle_input(str0m_netem::Input::Packet(now, data)),
            None => self.deliver(src, dst, &data),
        }
    }

    /// Delivers what the emulated links let through by now.
    fn drain_links(&mut self) -> bool {
        let now = self.now;
        let sfu = SocketAddr::from(SFU_ADDR);
        let mut out = Vec::new();
        for p in &mut self.peers {
            for (link, src, dst) in [(p.downlink.as_mut(), sfu, p.addr), (p.uplink.as_mut(), p.addr, sfu)] {
                let Some(link) = link else { continue };
                link.handle_input(str0m_netem::Input::Timeout(now));
                while let Some(o) = link.poll_output() {
                    if let str0m_netem::Output::Packet(d) = o {
                        out.push((src, dst, d));
                    }
                }
            }
        }
        let busy = !out.is_empty();
        for (src, dst, d) in out {
            self.deliver(src, dst, &d);
        }
        busy
    }

    /// Sets the emulated links of peer `i` (`None`: perfect). Packets
    /// already queued on a link stay queued.
    pub fn set_links(&mut self, i: usize, down: Option<NetemConfig>, up: Option<NetemConfig>) {
        let p = &mut self.peers[i];
        for (link, config) in [(&mut p.downlink, down), (&mut p.uplink, up)] {
            match (link.as_mut(), config) {
                (Some(l), Some(c)) => l.set_config(c),
                (None, Some(c)) => *link = Some(Netem::new(c)),
                (_, None) => *link = None,
            }
        }
    }

    fn signal(&mut self, id: ParticipantId, msg: ServerMsg) {
        let Some(i) = self.peers.iter().position(|p| p.id == id) else { return };
        if let ServerMsg::LayersPaused { paused, .. } = &msg {
            // A resumed encoding starts with a key frame, as in a browser.
            if self.peers[i].paused.iter().any(|r| !paused.contains(r)) {
                self.peers[i].keyframe_requested = true;
            }
            self.peers[i].paused = paused.clone();
        }
        if let ServerMsg::Answer { sdp } = &msg {
            let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
            let pending = self.peers[i].pending.take().expect("an offer was pending");
            self.peers[i].rtc.sdp_api().accept_answer(pending, answer).expect("answer applies");
        }
        if let ServerMsg::Offer { sdp, track_map } = &msg {
            let offer = SdpOffer::from_sdp_string(sdp).expect("server offer parses");
            let answer = self.peers[i].rtc.sdp_api().accept_offer(offer).expect("server offer applies");
            self.peers[i].track_map = track_map.clone();
            self.sfu
                .handle_message(self.now, id, ClientMsg::Answer { sdp: answer.to_sdp_string() })
                .expect("answer accepted");
        }
        self.peers[i].signals.push(msg);
        self.peers[i].signal_times.push(self.now);
    }

    fn deliver(&mut self, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
        if dst == SocketAddr::from(SFU_ADDR) {
            if let Some((addr, until)) = self.blackout
                && addr == src
                && self.now < until
            {
                return;
            }
            let _ = self.sfu.handle_receive(self.now, Protocol::Udp, src, dst, data);
            self.sfu_received = true;
            return;
        }
        if let Some(p) = self.peers.iter_mut().find(|p| p.addr == dst) {
            let Ok(contents) = data.try_into() else { return };
            let input =
                Input::Receive(self.now, Receive { proto: Protocol::Udp, source: src, destination: dst, contents });
            p.rtc.handle_input(input).expect("peer input");
        }
    }

    /// Polls one peer until it waits; returns whether it did anything.
    fn drain_peer(&mut self, i: usize) -> bool {
        let mut busy = false;
        let now = self.now;
        loop {
            let p = &mut self.peers[i];
            match p.rtc.poll_output().expect("peer output") {
                str0m::Output::Timeout(t) => {
                    p.next = t;
                    return busy;
                }
                str0m::Output::Transmit(t) => {
                    busy = true;
                    self.wire.push_back((t.source, t.destination, t.contents.to_vec(), true));
                }
                str0m::Output::Event(e) => {
                    busy = true;
                    match e {
                        Event::Connected => p.connected = true,
                        Event::KeyframeRequest(_) => p.keyframe_requested = true,
                        Event::MediaData(d) => p.received.push(Received {
                            at: now,
                            mid: d.mid,
                            first_seq: **d.seq_range.start(),
                            last_seq: **d.seq_range.end(),
                            rtp_time: d.time.numer(),
                            keyframe: d.is_keyframe(),
                            contiguous: d.contiguous,
                            layer_tag: d.data.get(10).copied().unwrap_or(0),
                            len: d.data.len(),
                        }),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Advances virtual time by `dur`, publishers sending 30 video frames/s
    /// (a key frame every `keyframe_every` frames) and 50 audio frames/s.
    pub fn run(&mut self, dur: Duration, keyframe_every: u64) {
        let end = self.now + dur;
        let mut next_video = self.now;
        let mut next_audio = self.now;
        let mut stuck = 0;
        while self.now < end {
            let next_peer = self.peers.iter().map(|p| p.next).min().unwrap_or(end);
            let next_link = self
                .peers
                .iter()
                .flat_map(|p| [p.downlink.as_ref(), p.uplink.as_ref()])
                .flatten()
                .map(|l| l.poll_timeout())
                .min()
                .unwrap_or(end);
            let t = [self.sfu_next, next_peer, next_link, next_video, next_audio, end].into_iter().min().unwrap_or(end);
            if t <= self.now {
                stuck += 1;
                assert!(stuck < 1000, "virtual time does not advance at {:?}", self.now - self.start);
            } else {
                stuck = 0;
            }
            self.now = t.max(self.now);
            if self.now >= next_video {
                self.send_video(keyframe_every);
                next_video += Duration::from_millis(33);
            }
            if self.now >= next_audio {
                self.send_audio();
                next_audio += Duration::from_millis(20);
            }
            for p in &mut self.peers {
                if p.next <= self.now {
                    p.rtc.handle_input(Input::Timeout(self.now)).expect("peer timeout");
                }
            }
            if self.sfu_next <= self.now {
                self.sfu.handle_timeout(self.now);
            }
            self.pump();
        }
    }

    fn send_video(&mut self, keyframe_every: u64) {
        let now = self.now;
        let elapsed = now - self.start;
        let layer_bytes = self.layer_bytes;
        for p in &mut self.peers {
            let (Some(mid), true) = (p.video_mid, p.connected) else { continue };
            let Some(pt) = p.rtc.codec_config().find(|c| c.spec().codec == Codec::Vp8).map(|c| c.pt()) else {
                continue;
            };
            let key = p.frame_no % keyframe_every == 0 || p.keyframe_requested;
            p.keyframe_requested = false;
            let rtp = MediaTime::new(elapsed.as_micros() as u64 * 90 / 1000, Frequency::NINETY_KHZ);
            let layers: Vec<(Option<&str>, u32, u32, u8)> = if p.simulcast {
                LAYERS.iter().map(|(r, w, h, t)| (Some(*r), *w, *h, *t)).collect()
            } else {
                vec![(None, 640, 360, 9)]
            };
            for (rid, w, h, tag) in layers {
                if rid.is_some_and(|r| p.paused.iter().any(|x| x == r)) {
                    continue;
                }
                let len = if p.simulcast { layer_bytes[usize::from(tag) - 1] } else { 200 * usize::from(tag) };
                let frame = vp8_frame(key, w, h, tag, len);
                let Some(mut writer) = p.rtc.writer(mid) else { continue };
                if let Some(r) = rid {
                    writer = writer.rid(r.into());
                }
                let _ = writer.write(pt, now, rtp, frame);
            }
            p.frame_no += 1;
        }
    }

    fn send_audio(&mut self) {
        let now = self.now;
        let elapsed = now - self.start;
        let len = self.audio_bytes;
        for p in &mut self.peers {
            let (Some(mid), true) = (p.audio_mid, p.connected) else { continue };
            let Some(pt) = p.rtc.codec_config().find(|c| c.spec().codec == Codec::Opus).map(|c| c.pt()) else {
                continue;
            };
            let rtp = MediaTime::new(elapsed.as_micros() as u64 * 48 / 1000, Frequency::FORTY_EIGHT_KHZ);
            if let Some(w) = p.rtc.writer(mid) {
                let _ =
                    w.audio_level(-p.audio_level.abs(), p.audio_level.abs() < 60).write(pt, now, rtp, vec![0xfc; len]);
            }
        }
    }

    /// The subscriber-side MID on which peer `sub` receives `kind` from peer `publisher`.
    pub fn mid_of(&self, sub: usize, publisher: usize, kind: plenary_proto::MediaKind) -> Option<Mid> {
        let pid = self.peers[publisher].id;
        self.peers[sub]
            .track_map
            .iter()
            .find(|t| t.participant_id == pid && t.kind == kind)
            .map(|t| Mid::from(t.mid.as_str()))
    }

    /// Frames peer `sub` received on `mid`.
    pub fn frames(&self, sub: usize, mid: Mid) -> Vec<&Received> {
        self.peers[sub].received.iter().filter(|r| r.mid == mid).collect()
    }

    /// Sends a layer preference from `sub` for the video of `publisher`.
    pub fn prefer(&mut self, sub: usize, publisher: usize, w: u32, h: u32) {
        let mid = self.mid_of(sub, publisher, plenary_proto::MediaKind::Video).expect("video mid");
        let id = self.peers[sub].id;
        self.sfu
            .handle_message(
                self.now,
                id,
                ClientMsg::LayerPreference { mid: mid.to_string(), width: w, height: h, pinned: false },
            )
            .expect("preference accepted");
        self.pump();
    }

    pub fn leave(&mut self, i: usize) {
        let id = self.peers[i].id;
        self.sfu.leave(self.now, id);
        self.peers[i].video_mid = None;
        self.peers[i].audio_mid = None;
        self.pump();
    }

    pub fn map(&self) -> HashMap<ParticipantId, usize> {
        self.peers.iter().enumerate().map(|(i, p)| (p.id, i)).collect()
    }
}

/// A synthetic VP8 frame: a real key frame header (RFC 6386 §9.1: frame tag,
/// start code, size) or a delta frame tag, then filler. Byte 10 carries a
/// tag telling which layer it came from.
pub fn vp8_frame(key: bool, w: u32, h: u32, tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(11)];
    f[0] = if key { 0x10 } else { 0x11 };
    f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
    f[6..8].copy_from_slice(&(w as u16).to_le_bytes());
    f[8..10].copy_from_slice(&(h as u16).to_le_bytes());
    f[10] = tag;
    f
}
