//! What the operator sees: `plenary serve --tap` records every RTP packet the
//! SFU forwards after SRTP decryption. From that tap this test rebuilds each
//! VP8 stream (RFC 7741 depacketization) and asks ffmpeg to decode it.
//! - Control, a link without a secret (hop-by-hop encryption only): the
//!   operator's tap decodes into pictures, so the method works.
//! - A link with a secret (end-to-end encrypted): the same method yields no
//!   picture, while the participants themselves decode each other.

mod common;

use common::{free_port, media};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plenary_client::ivf::{IvfHeader, IvfWriter};

/// Runs a 2-participant meeting on `fragment` (may be empty) with a tapping
/// server; returns the tap file and the video frames each participant decrypted.
fn meeting(dir: &Path, fragment: &str) -> (PathBuf, Vec<u64>) {
    let video = media("carphone.ivf").expect("media");
    let tap = dir.join(format!("tap{}.pcap", if fragment.is_empty() { "-plain" } else { "-e2ee" }));
    let (http, rtc) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["serve", "--listen", &format!("127.0.0.1:{http}"), "--rtc-port", &rtc.to_string(), "--tap"])
        .arg(&tap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{http}/m/tap-room{fragment}");
    let clients: Vec<_> = ["Tap-one", "Tap-two"]
        .iter()
        .map(|name| {
            Command::new(env!("CARGO_BIN_EXE_plenary"))
                .args(["join", &url, "--name", name, "--duration", "6", "--json", "--video"])
                .arg(&video)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("join")
        })
        .collect();
    let mut frames = Vec::new();
    for c in clients {
        let out = c.wait_with_output().expect("join ends");
        assert!(out.status.success(), "a participant failed");
        let summary = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "summary")
            .expect("summary");
        frames.push(
            summary["tracks"]
                .as_array()
                .expect("tracks")
                .iter()
                .filter(|t| t["kind"] == "video")
                .map(|t| t["frames"].as_u64().unwrap_or(0))
                .sum(),
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    (tap, frames)
}

/// VP8 payload descriptor length (RFC 7741 §4.2), or `None` if malformed.
fn vp8_descriptor_len(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    let mut n = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        n = 2;
        if x & 0x80 != 0 {
            n += if *p.get(n)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            n += 1;
        }
        if x & 0x30 != 0 {
            n += 1;
        }
    }
    (n < p.len()).then_some(n)
}

/// One RTP packet from the tap: payload type, timestamp, marker, payload.
type Packet = (u8, u32, bool, Vec<u8>);

/// Rebuilds the VP8 streams in a tap file: one IVF per SSRC of the video
/// payload type. Returns the IVF paths.
fn rebuild_vp8(tap: &Path, dir: &Path) -> Vec<PathBuf> {
    let data = std::fs::read(tap).expect("tap file");
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).expect("pcap");
    let mut streams: BTreeMap<u32, BTreeMap<u16, Packet>> = BTreeMap::new();
    let mut pt_count: BTreeMap<u8, usize> = BTreeMap::new();
    while let Some(Ok(pkt)) = reader.next_packet() {
        let rtp = &pkt.data[28..];
        if rtp.len() < 12 || rtp[0] >> 6 != 2 {
            continue;
        }
        let cc = usize::from(rtp[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if rtp[0] & 0x10 != 0 && rtp.len() >= off + 4 {
            let words = usize::from(u16::from_be_bytes([rtp[off + 2], rtp[off + 3]]));
            off += 4 + 4 * words;
        }
        if off >= rtp.len() {
            continue;
        }
        let pt = rtp[1] & 0x7f;
        *pt_count.entry(pt).or_default() += 1;
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
        let ssrc = u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]);
        streams.entry(ssrc).or_default().insert(seq, (pt, ts, rtp[1] & 0x80 != 0, rtp[off..].to_vec()));
    }
    // Opus is 111 here; the video payload type is the busiest other one.
    let video_pt = pt_count.iter().filter(|(pt, _)| **pt != 111).max_by_key(|(_, n)| **n).map(|(pt, _)| *pt);
    let mut out = Vec::new();
    for (ssrc, packets) in streams {
        let path = dir.join(format!("tap-{ssrc:08x}.ivf"));
        let header = IvfHeader {
            fourcc: *b"VP80",
            width: 176,
            height: 144,
            timebase_denominator: 90_000,
            timebase_numerator: 1,
            frame_count: 0,
        };
        let mut w = IvfWriter::new(File::create(&path).expect("ivf"), header).expect("ivf header");
        let mut frame = Vec::new();
        let mut frame_ts = None;
        for (pt, ts, marker, payload) in packets.values() {
            if Some(*pt) != video_pt {
                continue;
            }
            let Some(n) = vp8_descriptor_len(payload) else { continue };
            if frame_ts != Some(*ts) {
                frame.clear();
                frame_ts = Some(*ts);
            }
            frame.extend_from_slice(&payload[n..]);
            if *marker && !frame.is_empty() {
                w.write_frame(u64::from(*ts), &frame).expect("write frame");
                frame.clear();
            }
        }
        if w.frames() > 10 {
            w.finish().expect("finish");
            out.push(path);
        }
    }
    out
}

/// Pictures ffmpeg decodes from an IVF without any decoder error.
fn decodable_pictures(path: &Path) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg (Debian package ffmpeg) is installed");
    let errors = String::from_utf8_lossy(&out.stderr).lines().count();
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count();
    if errors > 0 || !out.status.success() { 0 } else { frames }
}

#[test]
fn the_operator_tap_holds_pictures_only_without_end_to_end_encryption() {
    if media("carphone.ivf").is_none() {
        eprintln!("SKIPPED: run scripts/test-media.sh first (CI always does)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("plenary-tap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    let (plain_tap, plain_frames) = meeting(&dir, "");
    assert!(plain_frames.iter().all(|f| *f > 50), "control meeting delivered video: {plain_frames:?}");
    let plain_dir = dir.join("plain");
    std::fs::create_dir_all(&plain_dir).expect("dir");
    let plain_streams = rebuild_vp8(&plain_tap, &plain_dir);
    assert_eq!(plain_streams.len(), 2, "one forwarded video stream per participant in the control tap");
    for s in &plain_streams {
        assert!(decodable_pictures(s) > 50, "control: the tap of an unencrypted meeting decodes ({})", s.display());
    }

    let e2ee_dir = dir.join("e2ee");
    std::fs::create_dir_all(&e2ee_dir).expect("dir");
    let (e2ee_tap, e2ee_frames) = meeting(&e2ee_dir, "#AAECAwQFBgcICQoLDA0ODw");
    assert!(e2ee_frames.iter().all(|f| *f > 50), "participants decrypt and receive video: {e2ee_frames:?}");
    let streams = rebuild_vp8(&e2ee_tap, &e2ee_dir);
    assert_eq!(streams.len(), 2, "the tap holds both forwarded video streams");
    for s in &streams {
        assert_eq!(decodable_pictures(s), 0, "the operator's tap of an encrypted meeting yields no picture ({})", s.display());
    }
    let _ = std::fs::remove_dir_all(dir);
}
