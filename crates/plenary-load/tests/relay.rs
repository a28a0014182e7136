//! The relay baselines as processes (`plenary-relay`): every subscriber
//! receives every packet a publisher sends, byte for byte after SRTP,
//! each subscriber under its own key.

use std::path::PathBuf;
use std::time::Duration;

use plenary_load::relay;
use plenary_load::target::{PeerLink, Role, StartOptions, UdpLink};
use tokio::net::UdpSocket;

fn options(dir: &std::path::Path) -> StartOptions {
    StartOptions {
        server_cpu: None,
        // plenary-relay is found beside the plenary binary.
        plenary_bin: PathBuf::from(env!("CARGO_BIN_EXE_plenary-relay")).with_file_name("plenary"),
        janus_bin: PathBuf::from("janus"),
        work_dir: dir.to_path_buf(),
        threads: 1,
    }
}

fn udp(link: PeerLink) -> UdpLink {
    match link {
        PeerLink::Udp(l) => l,
        PeerLink::WebRtc(_) => panic!("relay peers are UDP"),
    }
}

/// RTP packet `n`: version 2, PT 96, seq n, SSRC 0x1234, payload of
/// `100 + n % 900` bytes starting with n.
fn rtp(n: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&n.wrapping_add(65_500).to_be_bytes()); // crosses a rollover
    p.extend_from_slice(&u32::from(n).wrapping_mul(3000).to_be_bytes());
    p.extend_from_slice(&0x1234u32.to_be_bytes());
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(12 + 100 + usize::from(n) % 900, 0x5a);
    p
}

async fn forwards_every_packet(srtp: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = relay::start(&options(dir.path()), srtp).await.expect("relay starts");
    assert!(target.pid() > 0);

    let publisher = udp(target.open("r", Role::Publisher).await.expect("open").remove(0).link);
    let mut subs = Vec::new();
    for _ in 0..3 {
        let link = udp(target.open("r", Role::Subscriber).await.expect("open").remove(0).link);
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        subs.push((link, socket));
    }
    // Register: hello until the relay knows us (it forwards only to known
    // subscribers), proved by a probe packet coming back.
    let pub_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let protect = |p: &[u8]| publisher.crypto.as_ref().map_or_else(|| p.to_vec(), |c| c.protect(p));
    let mut buf = [0u8; 2048];
    for (link, socket) in &subs {
        let mut ok = false;
        for _ in 0..50 {
            socket.send_to(&link.hello, link.server).await.expect("hello");
            pub_socket.send_to(&protect(&rtp(0)), publisher.server).await.expect("probe");
            if tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "subscriber registered");
    }
    // Drain the probes.
    for (_, socket) in &subs {
        while tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await.is_ok() {}
    }

    // Garbage from a broken or hostile sender is dropped, and the relay
    // carries on (checked below: every packet after it arrives intact).
    let mut garbage: Vec<Vec<u8>> =
        vec![vec![], vec![0], b"PLRH".to_vec(), b"PLRH\0\0\0\x01\x02".to_vec(), vec![0x16; 300], vec![0x40; 2000]];
    if srtp {
        // RTP-looking but short, or failing authentication.
        garbage.extend([vec![0x80], vec![0x80, 96, 0, 1], vec![0x9f; 40], rtp(7), vec![0xbf; 1500]]);
    }
    for g in &garbage {
        pub_socket.send_to(g, publisher.server).await.expect("garbage");
    }

    const N: u16 = 200;
    // Receive concurrently (a socket's default buffer holds ~100 packets).
    let second_key = subs[1].0.crypto.clone();
    let receivers: Vec<_> = subs
        .into_iter()
        .map(|(link, socket)| {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                let mut first_wire = Vec::new();
                while got.len() < usize::from(N) {
                    let Ok(r) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await else {
                        break;
                    };
                    let (len, from) = r.expect("recv");
                    assert_eq!(from, link.server);
                    let wire = buf[..len].to_vec();
                    let plain = match &link.crypto {
                        Some(c) => c.unprotect(&wire).expect("decrypts under this subscriber's key"),
                        None => wire.clone(),
                    };
                    if got.is_empty() {
                        first_wire = wire;
                    }
                    got.push(plain);
                }
                (got, first_wire)
            })
        })
        .collect();
    for n in 1..=N {
        pub_socket.send_to(&protect(&rtp(n)), publisher.server).await.expect("send");
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut wires = Vec::new();
    for r in receivers {
        let (got, first_wire) = r.await.expect("receiver");
        assert_eq!(got.len(), usize::from(N), "every packet arrived");
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p, &rtp(i as u16 + 1), "packet {} intact", i + 1);
        }
        wires.push(first_wire);
    }
    if srtp {
        // Each subscriber has its own key: same packet, different bytes,
        // and another subscriber's key does not open it.
        assert_ne!(wires[0], wires[1]);
        assert!(second_key.as_ref().expect("crypto").unprotect(&wires[0]).is_none());
    } else {
        assert_eq!(wires[0], rtp(1));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn udp_relay_forwards_every_packet_to_every_subscriber() {
    forwards_every_packet(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn srtp_relay_reencrypts_every_packet_per_subscriber() {
    forwards_every_packet(true).await;
}

#[test]
fn bad_flags_exit_2_instead_of_starting_another_relay() {
    let bin = env!("CARGO_BIN_EXE_plenary-relay");
    for args in [
        &["--listen", "127.0.0.1:0", "--srtp-master", "not-hex"][..],
        &["--listen", "127.0.0.1:0", "--srtp-master", &"ab".repeat(27)],
        &["--listen", "nowhere"],
        &["--listen"],
        &[],
    ] {
        let out = std::process::Command::new(bin).args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} started: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("plenary-relay: "), "{args:?}");
    }
}
