//! `--target janus` against the real Janus (Debian `janus`): a str0m
//! publisher and subscribers connect through the target's signaling, and
//! the subscribers receive the publisher's frames, in order, with their
//! contents intact. Needs `janus` on PATH (`.ci/apt-packages.txt`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plenary_load::janus::JanusTarget;
use plenary_load::target::{ClientSignal, PeerLink, Role, ServerSignal, Signaling, StartOptions, Target};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

/// A str0m peer driven by the test: frame-level API, one UDP socket.
struct TestPeer {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    signaling: Signaling,
    pending: Option<SdpPendingOffer>,
    timeout: Instant,
    connected: bool,
    video: Option<Mid>,
    /// Frame numbers found in received video frames.
    received: Vec<u32>,
    failed: Option<String>,
}

impl TestPeer {
    async fn new(ip: IpAddr, link: PeerLink) -> TestPeer {
        let PeerLink::WebRtc(signaling) = link else { panic!("janus peers are WebRTC") };
        let socket = UdpSocket::bind((ip, 0)).await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let mut rtc = Rtc::builder().clear_codecs().enable_opus(true, false).enable_vp8(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut p = TestPeer {
            rtc,
            socket,
            addr,
            signaling,
            pending: None,
            timeout: Instant::now(),
            connected: false,
            video: None,
            received: Vec::new(),
            failed: None,
        };
        if p.signaling.client_offers {
            let mut api = p.rtc.sdp_api();
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            p.video = Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
            let (offer, pending) = api.apply().expect("offer");
            p.pending = Some(pending);
            p.signaling.to_server.send(ClientSignal::Offer(offer.to_sdp_string())).expect("signaling");
        }
        p.drain();
        p
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::MediaData(d))) => {
                    // Our frames: VP8 key frame header (10 bytes), then the number.
                    if let Some(n) = d.data.get(10..14) {
                        self.received.push(u32::from_be_bytes([n[0], n[1], n[2], n[3]]));
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    self.failed = Some(e.to_string());
                    return;
                }
            }
        }
    }

    fn signal(&mut self) {
        while let Ok(s) = self.signaling.from_server.try_recv() {
            match s {
                ServerSignal::Answer(sdp) => {
                    let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer SDP");
                    let pending = self.pending.take().expect("an offer was pending");
                    self.rtc.sdp_api().accept_answer(pending, answer).expect("accept answer");
                }
                ServerSignal::Offer(sdp) => {
                    let offer = SdpOffer::from_sdp_string(&sdp).expect("offer SDP");
                    let answer = self.rtc.sdp_api().accept_offer(offer).expect("accept offer");
                    self.signaling.to_server.send(ClientSignal::Answer(answer.to_sdp_string())).expect("signaling");
                }
                ServerSignal::Failed(why) => self.failed = Some(why),
            }
            self.drain();
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else { return };
        let input =
            Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.addr, contents });
        if self.rtc.accepts(&input) && self.rtc.handle_input(input).is_ok() {
            self.drain();
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.timeout {
            let _ = self.rtc.handle_input(Input::Timeout(now));
        }
        self.drain();
        self.signal();
    }

    /// Sends video frame `n`: a VP8 key frame header (RFC 6386 §9.1, 16×16)
    /// then `n`, padded to 1000 bytes.
    fn send_frame(&mut self, n: u32) {
        let Some(mid) = self.video else { return };
        let Some(w) = self.rtc.writer(mid) else { return };
        let Some(pt) = w.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt()) else { return };
        let mut data = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 16, 0, 16, 0];
        data.extend_from_slice(&n.to_be_bytes());
        data.resize(1000, 0xab);
        let _ = w.write(pt, Instant::now(), MediaTime::new(u64::from(n) * 3000, Frequency::NINETY_KHZ), data);
        self.drain();
    }
}

/// Steps every peer: waits for a datagram on any socket or the earliest
/// timer (at most 10 ms), then handles timers and signaling.
async fn step(peers: &mut [TestPeer]) {
    let deadline = peers
        .iter()
        .map(|p| p.timeout)
        .min()
        .unwrap_or_else(Instant::now)
        .min(Instant::now() + Duration::from_millis(10));
    let mut buf = [0u8; 2000];
    let got = {
        let recvs = peers.iter().enumerate().map(|(i, p)| {
            let mut b = [0u8; 2000];
            Box::pin(async move { p.socket.recv_from(&mut b).await.map(|(n, s)| (i, b, n, s)) })
        });
        tokio::select! {
            r = futures_util::future::select_all(recvs) => r.0.ok(),
            _ = tokio::time::sleep_until(deadline.into()) => None,
        }
    };
    if let Some((i, b, n, source)) = got {
        buf[..n].copy_from_slice(&b[..n]);
        peers[i].receive(&buf[..n], source);
    }
    for p in peers.iter_mut() {
        p.tick();
    }
}

fn options(dir: &std::path::Path) -> StartOptions {
    StartOptions {
        server_cpu: None,
        plenary_bin: PathBuf::from("plenary"),
        janus_bin: PathBuf::from("janus"),
        work_dir: dir.to_path_buf(),
        threads: 2,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn janus_forwards_a_publisher_to_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let janus = JanusTarget::start(&options(dir.path())).await.expect("janus starts (apt-get install janus)");
    assert!(janus.pid() > 0);
    let ip = IpAddr::V4(janus.media_ip());

    let mut peers = Vec::new();
    for role in [Role::Publisher, Role::Subscriber, Role::Subscriber] {
        let mut links = janus.open("smoke", role).await.expect("open");
        assert_eq!(links.len(), 1);
        let link = links.remove(0);
        assert_eq!(link.role, role);
        peers.push(TestPeer::new(ip, link.link).await);
    }
    assert!(peers[0].signaling.client_offers && !peers[1].signaling.client_offers);

    let started = Instant::now();
    let mut next_frame = Instant::now();
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(40) {
        step(&mut peers).await;
        for p in &peers {
            assert!(p.failed.is_none(), "peer failed: {:?}\n{}", p.failed, janus_log(dir.path()));
        }
        if peers[0].connected && Instant::now() >= next_frame {
            next_frame = Instant::now() + Duration::from_millis(33);
            peers[0].send_frame(sent);
            sent += 1;
        }
        if peers[1..].iter().all(|p| p.received.len() >= 60) {
            break;
        }
    }
    for (i, p) in peers[1..].iter().enumerate() {
        assert!(p.connected, "subscriber {i} connected\n{}", janus_log(dir.path()));
        assert!(
            p.received.len() >= 60,
            "subscriber {i} got {} of {sent} frames\n{}",
            p.received.len(),
            janus_log(dir.path())
        );
        assert!(p.received.windows(2).all(|w| w[0] < w[1]), "frames in order: {:?}", p.received);
        assert!(p.received.iter().all(|n| *n < sent), "only frames that were sent");
    }
}

/// A meeting: three participants that all publish and receive (one
/// publisher and one subscriber PeerConnection each in Janus); every one
/// receives the frames of both others, including from one that joined
/// after it.
#[tokio::test(flavor = "current_thread")]
async fn janus_meeting_everyone_receives_everyone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let janus = JanusTarget::start(&options(dir.path())).await.expect("janus starts");
    let ip = IpAddr::V4(janus.media_ip());
    let mut peers = Vec::new();
    for _ in 0..3 {
        let links = janus.open("meeting", Role::Both).await.expect("open");
        assert_eq!(links.iter().map(|l| l.role).collect::<Vec<_>>(), [Role::Publisher, Role::Subscriber]);
        for l in links {
            peers.push(TestPeer::new(ip, l.link).await);
        }
    }
    // peers: [pub0, sub0, pub1, sub1, pub2, sub2]; publisher k numbers its
    // frames k * 1_000_000 + n.
    let started = Instant::now();
    let mut next_frame = Instant::now();
    let mut n = 0u32;
    let done = |peers: &[TestPeer]| {
        (0..3).all(|k| {
            let got = &peers[2 * k + 1].received;
            (0..3).filter(|&o| o != k).all(|o| got.iter().filter(|f| **f / 1_000_000 == o as u32).count() >= 30)
        })
    };
    while started.elapsed() < Duration::from_secs(60) && !done(&peers) {
        step(&mut peers).await;
        for p in &peers {
            assert!(p.failed.is_none(), "peer failed: {:?}\n{}", p.failed, janus_log(dir.path()));
        }
        if Instant::now() >= next_frame {
            next_frame = Instant::now() + Duration::from_millis(33);
            for k in 0..3 {
                if peers[2 * k].connected {
                    peers[2 * k].send_frame(k as u32 * 1_000_000 + n);
                }
            }
            n += 1;
        }
    }
    for k in 0..3 {
        let got = &peers[2 * k + 1].received;
        assert!(got.iter().all(|f| *f / 1_000_000 != k as u32), "participant {k} does not receive itself");
        for o in (0..3).filter(|&o| o != k) {
            let c = got.iter().filter(|f| **f / 1_000_000 == o as u32).count();
            assert!(c >= 30, "participant {k} got {c} frames of {o}\n{}", janus_log(dir.path()));
        }
    }
}

fn janus_log(dir: &std::path::Path) -> String {
    let log = std::fs::read_to_string(dir.join("janus-0").join("janus.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
