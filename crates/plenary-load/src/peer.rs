//! The simulated participants' connections: a WebRTC peer on str0m (RTP
//! mode: the harness packetizes, see [`crate::synth`]) and a plain UDP
//! peer for the relay baselines. Both count received packets with
//! [`Counter`], the light subscriber described in the crate docs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::pacing::Pacer;
use crate::rx_stamp;
use crate::synth::{AUDIO_FRAME, AudioSource, Clock, MediaSpec, Packet, RtpHead, Stamp, VideoSource};
use crate::target::{ClientSignal, PacketCrypto, Role, ServerSignal, Signaling, UdpLink};

/// How long ICE + DTLS (or a relay's first packet) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest datagram read.
const RECV_BUF: usize = 2048;
/// Sampled packets whose arrival times wait for their `RtpPacket` event.
const MAX_ARRIVALS: usize = 64;

/// Counters of one peer, shared with the runner (relaxed atomics: the
/// runner reads snapshots between steps).
#[derive(Debug, Default)]
pub struct PeerStats {
    /// ICE/DTLS up (or, for UDP peers, the first packet seen).
    pub connected: AtomicBool,
    /// From `Target::open` to ICE/DTLS connected (WebRTC peers), µs; 0 until then.
    pub connect_us: AtomicU64,
    /// From `Target::open` to the first received media packet (subscribers)
    /// or to the connection (publishers), µs; 0 until then.
    pub join_us: AtomicU64,
    /// RTP packets received (any payload type).
    pub packets_rx: AtomicU64,
    /// RTP bytes received (whole datagrams).
    pub bytes_rx: AtomicU64,
    /// Video frames received: packets with the marker bit.
    pub video_frames_rx: AtomicU64,
    /// Audio frames received: one per packet.
    pub audio_frames_rx: AtomicU64,
    /// Video frames sent.
    pub video_frames_tx: AtomicU64,
    /// Audio frames sent.
    pub audio_frames_tx: AtomicU64,
    /// RTP packets sent.
    pub packets_tx: AtomicU64,
    /// One-way latencies of sampled frames.
    pub latency_us: Mutex<Vec<LatencySample>>,
    /// Why the peer stopped early, if it did.
    pub failed: Mutex<Option<String>>,
}

impl PeerStats {
    fn fail(&self, why: String) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert(why);
        }
    }
}

/// What every peer of a run shares.
#[derive(Debug, Clone)]
pub struct PeerCtx {
    /// The synthetic media publishers send.
    pub spec: MediaSpec,
    /// The clock stamps are written and read with.
    pub clock: Clock,
    /// Decrypt one in this many frames for latency.
    pub sample_every: u32,
    /// Where WebRTC peers bind their UDP socket ([`crate::Target::local_ip`]).
    pub local_ip: std::net::IpAddr,
    /// Set to true to make every peer leave.
    pub stop: watch::Receiver<bool>,
}

/// One sampled frame's one-way latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySample {
    /// Receive time minus the stamp's send time, µs.
    pub us: u32,
    /// An audio frame (else the first packet of a video frame).
    pub audio: bool,
}

/// Media kind of a payload type, learned from the server's SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Audio,
    Video,
}

/// Payload types (0..=127) to media kinds, from `a=rtpmap` lines: VP8 is
/// video, Opus audio; anything else (RTX, RED, …) is not counted as frames.
#[derive(Debug, Clone)]
struct PtMap([Kind; 128]);

impl PtMap {
    fn new() -> PtMap {
        PtMap([Kind::Unknown; 128])
    }

    fn learn(&mut self, sdp: &str) {
        for line in sdp.lines() {
            let Some(rest) = line.strip_prefix("a=rtpmap:") else { continue };
            let mut it = rest.split_whitespace();
            let (Some(pt), Some(codec)) = (it.next().and_then(|p| p.parse::<u8>().ok()), it.next()) else {
                continue;
            };
            let codec = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
            let kind = match codec.as_str() {
                "vp8" => Kind::Video,
                "opus" => Kind::Audio,
                _ => continue,
            };
            if let Some(k) = self.0.get_mut(usize::from(pt)) {
                *k = kind;
            }
        }
    }

    fn first(&self, kind: Kind) -> Option<u8> {
        self.0.iter().position(|k| *k == kind).map(|p| p as u8)
    }
}

/// Per-SSRC state of the counter.
#[derive(Debug, Default, Clone, Copy)]
struct SsrcState {
    /// The last packet had the marker bit (so the next starts a frame).
    prev_marker: bool,
}

/// Counts RTP packets from their clear headers and picks the sample to
/// decrypt: the first packet of a video frame and an audio packet, each
/// with probability 1 / `sample_every`.
///
/// At random, not every n-th: 50 audio frames of 20 ms are one second, a
/// whole number of 30 fps video frames, so every 50th audio frame would
/// always be the one sent together with a video frame, and only ever
/// measure the audio that waits behind a video frame's fan-out (1 in 5 of
/// them with these clocks).
#[derive(Debug)]
struct Counter {
    pts: PtMap,
    ssrcs: HashMap<u32, SsrcState>,
    sample_every: u32,
}

impl Counter {
    /// Counts one RTP packet; returns whether to decrypt it for latency,
    /// and whether it is audio.
    fn count(&mut self, h: &RtpHead, len: usize, stats: &PeerStats) -> (bool, bool) {
        stats.packets_rx.fetch_add(1, Ordering::Relaxed);
        stats.bytes_rx.fetch_add(len as u64, Ordering::Relaxed);
        let kind = self.pts.0.get(usize::from(h.pt)).copied().unwrap_or(Kind::Unknown);
        let s = self.ssrcs.entry(h.ssrc).or_insert(SsrcState { prev_marker: true });
        let sample = match kind {
            Kind::Unknown => false,
            Kind::Audio => {
                stats.audio_frames_rx.fetch_add(1, Ordering::Relaxed);
                rand::random_ratio(1, self.sample_every)
            }
            Kind::Video => {
                let first = s.prev_marker;
                s.prev_marker = h.marker;
                if h.marker {
                    stats.video_frames_rx.fetch_add(1, Ordering::Relaxed);
                }
                first && rand::random_ratio(1, self.sample_every)
            }
        };
        (sample, kind == Kind::Audio)
    }
}

fn record_latency(stats: &PeerStats, clock: &Clock, now: Instant, payload: &[u8], audio: bool) {
    if let Some(stamp) = Stamp::find(payload) {
        let lat = clock.us(now).saturating_sub(stamp.sent_us);
        if let Ok(mut v) = stats.latency_us.lock() {
            v.push(LatencySample { us: lat.min(u64::from(u32::MAX)) as u32, audio });
        }
    }
}

/// A video packet waiting for its departure time ([`crate::pacing`]).
struct Queued {
    /// When it may leave.
    at: Instant,
    packet: Packet,
    seq: u64,
    /// RTP time of its frame.
    ts: u32,
    /// When its frame was due.
    due: Instant,
}

/// Sending side of a publishing peer.
struct Sender {
    video: VideoSource,
    audio: AudioSource,
    start: Instant,
    video_seq: u64,
    audio_seq: u64,
    video_ts: u32,
    audio_ts: u32,
    frame_interval: Duration,
    /// RTP time per video frame (90 kHz clock).
    ts_per_frame: u32,
    pacer: Pacer,
    /// Video packets made, not yet written, in departure order.
    queued: VecDeque<Queued>,
}

impl Sender {
    fn new(spec: MediaSpec, start: Instant) -> Sender {
        Sender {
            video: VideoSource::new(spec),
            audio: AudioSource::new(spec),
            start,
            video_seq: u64::from(rand::random::<u16>() >> 2),
            audio_seq: u64::from(rand::random::<u16>() >> 2),
            video_ts: rand::random(),
            audio_ts: rand::random(),
            frame_interval: spec.frame_interval(),
            ts_per_frame: 90_000 / spec.fps.max(1),
            pacer: spec.video_pacer(),
            queued: VecDeque::new(),
        }
    }

    fn next_video_due(&self) -> Instant {
        self.start + self.frame_interval * self.video.frames()
    }

    fn next_audio_due(&self, audio_frames: u64) -> Instant {
        self.start + AUDIO_FRAME * audio_frames as u32
    }

    /// When there is next something to send.
    fn next_wake(&self, audio_frames: u64) -> Instant {
        let wake = self.next_video_due().min(self.next_audio_due(audio_frames));
        self.queued.front().map_or(wake, |q| wake.min(q.at))
    }

    /// Makes the video frames due by `now` and queues their packets, each
    /// at its departure time from the pacer (all at once when it is off).
    fn make_due_frames(&mut self, now: Instant, stats: &PeerStats) {
        while self.next_video_due() <= now {
            let due = self.next_video_due();
            // The stamp is rewritten when the packet is written (`pop_video`);
            // the first packet may leave at once (`now`, as `pop_video` sees it).
            let packets = self.video.next_frame(0);
            let times = self.pacer.schedule(now, packets.iter().map(|p| p.payload.len()));
            for (at, packet) in times.into_iter().zip(packets) {
                self.queued.push_back(Queued { at, packet, seq: self.video_seq, ts: self.video_ts, due });
                self.video_seq += 1;
            }
            self.video_ts = self.video_ts.wrapping_add(self.ts_per_frame);
            stats.video_frames_tx.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The next queued video packet whose time has come, its stamp set to
    /// now: a publisher that wakes late delays the frame before it is
    /// sent, which is not forwarding latency.
    fn pop_video(&mut self, now: Instant, clock: &Clock) -> Option<Queued> {
        if self.queued.front()?.at > now {
            return None;
        }
        let mut q = self.queued.pop_front()?;
        q.packet.restamp(clock.us(Instant::now()));
        Some(q)
    }
}

/// Runs one WebRTC peer until `ctx.stop` or a failure (recorded in
/// `stats.failed`). `opened_at` is when `Target::open` was called.
pub async fn run_webrtc(sig: Signaling, role: Role, ctx: PeerCtx, stats: Arc<PeerStats>, opened_at: Instant) {
    if let Err(e) = webrtc(sig, role, ctx, &stats, opened_at).await {
        stats.fail(e);
    }
}

async fn webrtc(
    mut sig: Signaling,
    role: Role,
    mut ctx: PeerCtx,
    stats: &PeerStats,
    opened_at: Instant,
) -> Result<(), String> {
    let socket = UdpSocket::bind((ctx.local_ip, 0)).await.map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    // Without kernel stamps latency falls back to read times.
    let _ = rx_stamp::enable(&socket);
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut builder = Rtc::builder().set_rtp_mode(true).clear_codecs().enable_opus(true, false).enable_vp8(true);
    if role.subscribes() {
        // str0m sees only the sample: its transport-wide CC feedback would
        // report 49 of 50 packets lost and the SFU's bandwidth estimator
        // would cut this receiver off. So receivers do not negotiate TWCC.
        let mut exts = ExtensionMap::empty();
        for (id, ext) in [
            (1, Extension::AudioLevel),
            (2, Extension::AbsoluteSendTime),
            (4, Extension::RtpMid),
            (10, Extension::RtpStreamId),
            (11, Extension::RepairedRtpStreamId),
        ] {
            exts.set(id, ext);
        }
        builder = builder.set_extension_map(exts);
    }
    let mut rtc = builder.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut pending = None;
    let mut mids: Option<(Mid, Mid)> = None;
    if sig.client_offers {
        let mut api = rtc.sdp_api();
        if role.publishes() {
            let a = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            let v = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            mids = Some((a, v));
        } else {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, p) = api.apply().ok_or("no offer to make")?;
        pending = Some(p);
        sig.to_server.send(ClientSignal::Offer(offer.to_sdp_string())).map_err(|_| "signaling closed")?;
    }
    let mut counter = Counter { pts: PtMap::new(), ssrcs: HashMap::new(), sample_every: ctx.sample_every.max(1) };
    let mut pts: Option<(Pt, Pt)> = None;
    let mut sender: Option<Sender> = None;
    let mut connected = false;
    let mut buf = vec![0u8; RECV_BUF];
    let mut timeout = Instant::now();
    // Polls the session until it waits (str0m's rule after every input).
    macro_rules! drain_session {
        () => {
            drain(
                &mut rtc,
                &socket,
                &mut timeout,
                &mut Handler::new(stats, &ctx.clock, &mut connected, &mut sender, &mut arrivals),
            )
        };
    }
    drain_session!()?;
    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;

    loop {
        let now = Instant::now();
        if connected && stats.connect_us.load(Ordering::Relaxed) == 0 {
            stats.connect_us.store((now - opened_at).as_micros().max(1) as u64, Ordering::Relaxed);
        }
        if !connected && now >= connect_deadline {
            return Err(format!("ICE/DTLS not up within {} s", CONNECT_TIMEOUT.as_secs()));
        }
        // Publishing starts once connected and negotiated.
        if connected && sender.is_none() && role.publishes() && pts.is_some() {
            sender = Some(Sender::new(ctx.spec, now));
            if stats.join_us.load(Ordering::Relaxed) == 0 && !role.subscribes() {
                stats.join_us.store((now - opened_at).as_micros().max(1) as u64, Ordering::Relaxed);
            }
        }
        if let (Some(s), Some((audio_mid, video_mid)), Some((apt, vpt))) = (sender.as_mut(), mids, pts) {
            let mut wrote = false;
            s.make_due_frames(now, stats);
            let mut api = rtc.direct_api();
            if let Some(tx) = api.stream_tx_by_mid(video_mid, None) {
                while let Some(q) = s.pop_video(now, &ctx.clock) {
                    let write = RtpWrite::new(vpt, q.seq.into(), q.ts, q.due, q.packet.payload);
                    tx.write_rtp(write.marker(q.packet.marker));
                    stats.packets_tx.fetch_add(1, Ordering::Relaxed);
                    wrote = true;
                }
            }
            loop {
                let n = stats.audio_frames_tx.load(Ordering::Relaxed);
                let due = s.next_audio_due(n);
                if due > now {
                    break;
                }
                let p = s.audio.next_frame(ctx.clock.us(Instant::now()));
                let mut api = rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(audio_mid, None) else { break };
                tx.write_rtp(RtpWrite::new(apt, s.audio_seq.into(), s.audio_ts, due, p.payload));
                s.audio_seq += 1;
                s.audio_ts = s.audio_ts.wrapping_add(960);
                stats.audio_frames_tx.fetch_add(1, Ordering::Relaxed);
                stats.packets_tx.fetch_add(1, Ordering::Relaxed);
                wrote = true;
            }
            if wrote {
                drain_session!()?;
            }
        }
        let mut wake = timeout;
        if let Some(s) = &sender {
            wake = wake.min(s.next_wake(stats.audio_frames_tx.load(Ordering::Relaxed)));
        }
        if !connected {
            wake = wake.min(connect_deadline);
        }
        tokio::select! {
            r = rx_stamp::recv(&socket, &mut buf) => {
                let (n, from, at) = r.map_err(|e| e.to_string())?;
                let mut fed = false;
                let mut next = Some((n, from, at));
                while let Some((n, from, at)) = next {
                    let now = Instant::now();
                    let d = &buf[..n];
                    let head = if connected { RtpHead::parse(d) } else { None };
                    // None: an RTP packet only counted; Some(Some(_)): the
                    // sample, for str0m to decrypt; Some(None): not RTP
                    // (STUN, DTLS, RTCP), for str0m.
                    let feed = match head {
                        Some(h) => {
                            if stats.join_us.load(Ordering::Relaxed) == 0 {
                                stats.join_us.store((now - opened_at).as_micros().max(1) as u64, Ordering::Relaxed);
                            }
                            let (sample, audio) = counter.count(&h, n, stats);
                            sample.then_some(Some(Arrival { ssrc: h.ssrc, seq: h.seq, at, audio }))
                        }
                        None => Some(None),
                    };
                    if let Some(sampled) = feed
                        && let Ok(contents) = d.try_into()
                    {
                        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source: from, destination: local, contents });
                        if rtc.accepts(&input) {
                            rtc.handle_input(input).map_err(|e| e.to_string())?;
                            fed = true;
                            if let Some(a) = sampled {
                                if arrivals.len() >= MAX_ARRIVALS {
                                    arrivals.remove(0);
                                }
                                arrivals.push(a);
                            }
                            if let Some(h) = head
                                && let Some(rx) = rtc.direct_api().stream_rx(&h.ssrc.into())
                            {
                                // The gaps are ours: never make the server resend.
                                rx.suppress_nack(true);
                            }
                        }
                    }
                    next = rx_stamp::try_recv(&socket, &mut buf).ok();
                }
                if fed {
                    drain_session!()?;
                }
            }
            s = sig.from_server.recv() => {
                match s {
                    None => return Err("signaling closed".into()),
                    Some(ServerSignal::Failed(why)) => return Err(format!("server: {why}")),
                    Some(ServerSignal::Answer(sdp)) => {
                        let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                        let p = pending.take().ok_or("an answer without an offer")?;
                        rtc.sdp_api().accept_answer(p, answer).map_err(|e| e.to_string())?;
                        counter.pts.learn(&sdp);
                        if role.publishes() {
                            let a = counter.pts.first(Kind::Audio).ok_or("the server accepted no Opus")?;
                            let v = counter.pts.first(Kind::Video).ok_or("the server accepted no VP8")?;
                            pts = Some((a.into(), v.into()));
                        }
                    }
                    Some(ServerSignal::Offer(sdp)) => {
                        let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string())?;
                        counter.pts.learn(&sdp);
                        sig.to_server.send(ClientSignal::Answer(answer.to_sdp_string())).map_err(|_| "signaling closed")?;
                    }
                }
                drain_session!()?;
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if now >= timeout {
                    rtc.handle_input(Input::Timeout(now)).map_err(|e| e.to_string())?;
                    drain_session!()?;
                }
            }
            _ = ctx.stop.changed() => {
                rtc.disconnect();
                return Ok(());
            }
        }
    }
}

/// What `drain` updates.
struct Handler<'a> {
    stats: &'a PeerStats,
    clock: &'a Clock,
    connected: &'a mut bool,
    sender: &'a mut Option<Sender>,
    /// Sampled RTP packets given to the session, taken by their
    /// `RtpPacket` events.
    arrivals: &'a mut Vec<Arrival>,
}

/// A sampled RTP packet handed to str0m for decryption.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    ssrc: u32,
    seq: u16,
    /// When the kernel received it.
    at: Instant,
    audio: bool,
}

impl<'a> Handler<'a> {
    fn new(
        stats: &'a PeerStats,
        clock: &'a Clock,
        connected: &'a mut bool,
        sender: &'a mut Option<Sender>,
        arrivals: &'a mut Vec<Arrival>,
    ) -> Self {
        Handler { stats, clock, connected, sender, arrivals }
    }

    /// The sampled packet `(ssrc, seq)`, if it was one.
    fn arrival(&mut self, ssrc: u32, seq: u16) -> Option<Arrival> {
        let i = self.arrivals.iter().position(|a| a.ssrc == ssrc && a.seq == seq)?;
        Some(self.arrivals.swap_remove(i))
    }
}

/// Polls the Rtc until it waits: sends transmits, handles events.
fn drain(rtc: &mut Rtc, socket: &UdpSocket, timeout: &mut Instant, h: &mut Handler<'_>) -> Result<(), String> {
    loop {
        if !rtc.is_alive() {
            return Err("media connection closed".into());
        }
        match rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Timeout(t) => {
                *timeout = t;
                return Ok(());
            }
            Output::Transmit(t) => {
                // Loopback: a full socket buffer only drops this datagram.
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Output::Event(e) => match e {
                Event::Connected => {
                    *h.connected = true;
                    h.stats.connected.store(true, Ordering::Relaxed);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    return Err("ICE disconnected".into());
                }
                Event::KeyframeRequest(_) => {
                    if let Some(s) = h.sender.as_mut() {
                        s.video.request_keyframe();
                    }
                }
                Event::RtpPacket(p) => {
                    // Only the counter's sample is timed (RTP reaches str0m
                    // for nothing else).
                    if let Some(a) = h.arrival(*p.header.ssrc, p.header.sequence_number) {
                        record_latency(h.stats, h.clock, a.at, &p.payload, a.audio);
                    }
                }
                _ => {}
            },
        }
    }
}

/// Runs one relay-baseline peer on plain UDP until `ctx.stop`.
pub async fn run_udp(link: UdpLink, role: Role, ctx: PeerCtx, stats: Arc<PeerStats>, opened_at: Instant) {
    if let Err(e) = udp(link, role, ctx, &stats, opened_at).await {
        stats.fail(e);
    }
}

/// Payload types of the plain RTP the relay peers send.
const UDP_AUDIO_PT: u8 = 111;
const UDP_VIDEO_PT: u8 = 96;

async fn udp(link: UdpLink, role: Role, mut ctx: PeerCtx, stats: &PeerStats, opened_at: Instant) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let _ = rx_stamp::enable(&socket);
    let crypto: Option<Arc<dyn PacketCrypto>> = link.crypto.clone();
    let mut pts = PtMap::new();
    pts.0[usize::from(UDP_AUDIO_PT)] = Kind::Audio;
    pts.0[usize::from(UDP_VIDEO_PT)] = Kind::Video;
    let mut counter = Counter { pts, ssrcs: HashMap::new(), sample_every: ctx.sample_every.max(1) };
    let mut sender = role.publishes().then(|| Sender::new(ctx.spec, Instant::now()));
    let (audio_ssrc, video_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
    if sender.is_some() {
        stats.connected.store(true, Ordering::Relaxed);
        stats.join_us.store((Instant::now() - opened_at).as_micros().max(1) as u64, Ordering::Relaxed);
    }
    let send = |socket: &UdpSocket, head: RtpHead, ts: u32, payload: &[u8]| {
        let plain = head.write(ts, payload);
        let out = match &crypto {
            Some(c) => c.protect(&plain),
            None => plain,
        };
        let _ = socket.try_send_to(&out, link.server);
    };
    let mut buf = vec![0u8; RECV_BUF];
    let mut next_hello = Instant::now();
    loop {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        if role.subscribes() && !stats.connected.load(Ordering::Relaxed) {
            if now >= next_hello {
                let _ = socket.try_send_to(&link.hello, link.server);
                next_hello = now + Duration::from_millis(200);
            }
            if now >= opened_at + CONNECT_TIMEOUT {
                return Err("no packet from the relay".into());
            }
            wake = wake.min(next_hello);
        }
        if let Some(s) = sender.as_mut() {
            s.make_due_frames(now, stats);
            while let Some(q) = s.pop_video(now, &ctx.clock) {
                let head = RtpHead { pt: UDP_VIDEO_PT, marker: q.packet.marker, seq: q.seq as u16, ssrc: video_ssrc };
                send(&socket, head, q.ts, &q.packet.payload);
                stats.packets_tx.fetch_add(1, Ordering::Relaxed);
            }
            loop {
                let due = s.next_audio_due(stats.audio_frames_tx.load(Ordering::Relaxed));
                if due > now {
                    break;
                }
                let p = s.audio.next_frame(ctx.clock.us(Instant::now()));
                let head = RtpHead { pt: UDP_AUDIO_PT, marker: false, seq: s.audio_seq as u16, ssrc: audio_ssrc };
                send(&socket, head, s.audio_ts, &p.payload);
                s.audio_seq += 1;
                s.audio_ts = s.audio_ts.wrapping_add(960);
                stats.audio_frames_tx.fetch_add(1, Ordering::Relaxed);
                stats.packets_tx.fetch_add(1, Ordering::Relaxed);
            }
            wake = wake.min(s.next_wake(stats.audio_frames_tx.load(Ordering::Relaxed)));
        }
        tokio::select! {
            r = rx_stamp::recv(&socket, &mut buf) => {
                let mut next = Some(r.map_err(|e| e.to_string())?);
                while let Some((n, _, at)) = next {
                    let now = Instant::now();
                    if let Some(h) = RtpHead::parse(&buf[..n]) {
                        if !stats.connected.swap(true, Ordering::Relaxed) {
                            stats.join_us.store((now - opened_at).as_micros().max(1) as u64, Ordering::Relaxed);
                        }
                        let (sample, audio) = counter.count(&h, n, stats);
                        if sample {
                            let plain = match &crypto {
                                Some(c) => c.unprotect(&buf[..n]),
                                None => Some(buf[..n].to_vec()),
                            };
                            if let Some(p) = plain.as_deref().and_then(|p| p.get(12..)) {
                                record_latency(stats, &ctx.clock, at, p, audio);
                            }
                        }
                    }
                    next = rx_stamp::try_recv(&socket, &mut buf).ok();
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = ctx.stop.changed() => return Ok(()),
        }
    }
}

/// Where a peer sends, for logs.
pub fn describe(addr: SocketAddr) -> String {
    addr.to_string()
}
