//! What the operator sees: `plenary serve --tap` records every RTP packet the
//! SFU forwards after SRTP decryption. From that tap this test rebuilds each
//! forwarded VP8 stream (RFC 7741 depacketization) and asks ffmpeg to
//! decode it, in a 2-participant meeting (every meeting is end-to-end
//! encrypted) where both participants record what they receive.
//! - The extraction works: each stream rebuilt from the tap holds the
//!   frames its receiver got, in count, and in size: in order, each frame
//!   the receiver decrypted and recorded is one tap frame plus the SFrame
//!   overhead (RFC 9605 §4.3 header, 2 to 17 bytes, and a 16-byte tag).
//! - Yet ffmpeg decodes no picture from the tap, while the receivers'
//!   `--record` files of the same senders decode.

mod common;

use common::{Server, media, new_secret, wait_with_timeout};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plenary_client::ivf::{IvfHeader, IvfReader, IvfWriter};

/// Fewest and most bytes SFrame adds to a frame: header (1 byte, plus 1..=8
/// each for KID and CTR when they do not fit in it) and the AES-GCM tag.
const SFRAME_OVERHEAD: std::ops::RangeInclusive<usize> = 17..=33;

/// One participant's run: video frames received and sent, and the IVF it
/// recorded of the other's video.
struct Run {
    received: u64,
    sent: u64,
    recording: PathBuf,
}

/// Runs a 2-participant meeting with a tapping server, both participants
/// recording into `dir`; returns the tap file and both runs.
fn meeting(dir: &Path) -> (PathBuf, Vec<Run>) {
    // Different media per participant, so that each tap stream matches
    // exactly one recording (same media made the sizes ambiguous).
    let videos = [media("carphone.ivf").expect("media"), media("bbb-360p.ivf").expect("media")];
    let tap = dir.join("tap.pcap");
    // Killed on drop, also when an assertion below fails.
    let server = Server::start(dir, &["--tap".as_ref(), tap.as_os_str()]);
    let url = format!("http://{}/m/tap-room#{}", server.http, new_secret());
    let clients: Vec<_> = ["Tap-one", "Tap-two"]
        .iter()
        .zip(&videos)
        .map(|(name, video)| {
            Command::new(env!("CARGO_BIN_EXE_plenary"))
                .args(["join", &url, "--name", name, "--duration", "6", "--json", "--video"])
                .arg(video)
                .arg("--record")
                .arg(dir.join(name))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("join")
        })
        .collect();
    let mut runs = Vec::new();
    for c in clients {
        let out = wait_with_timeout(c, Duration::from_secs(40));
        assert!(
            out.status.success(),
            "a participant failed ({}): {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            server.log_text()
        );
        let summary = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "summary")
            .expect("summary");
        let videos = || summary["tracks"].as_array().expect("tracks").iter().filter(|t| t["kind"] == "video");
        let recording = videos().find_map(|t| t["recording"].as_str().map(PathBuf::from)).expect("a video recording");
        let sent = summary["sent"].as_array().expect("sent").iter().filter(|t| t["kind"] == "video");
        runs.push(Run {
            received: videos().map(|t| t["frames"].as_u64().unwrap_or(0)).sum(),
            sent: sent.map(|t| t["frames"].as_u64().unwrap_or(0)).sum(),
            recording,
        });
    }
    drop(server);
    (tap, runs)
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
/// payload type. Returns the IVF paths and each stream's frame sizes, in
/// bytes, in order.
fn rebuild_vp8(tap: &Path, dir: &Path) -> Vec<(PathBuf, Vec<usize>)> {
    let data = std::fs::read(tap).expect("tap file");
    let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).expect("pcap");
    // Per SSRC, packets by extended sequence number (RFC 3550 §A.1): the
    // SFU starts each stream at a random number, so one in about a hundred
    // runs wraps past 65535 within the meeting, and ordering by the 16-bit
    // number would then put the stream's tail before its head.
    let mut streams: BTreeMap<u32, (u64, BTreeMap<u64, Packet>)> = BTreeMap::new();
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
        // Start one cycle up, so a packet reordered before the first still fits.
        let (last, packets) = streams.entry(ssrc).or_insert((1 << 16 | u64::from(seq), BTreeMap::new()));
        let ext = last.wrapping_add_signed(i64::from(seq.wrapping_sub(*last as u16) as i16));
        *last = (*last).max(ext);
        packets.insert(ext, (pt, ts, rtp[1] & 0x80 != 0, rtp[off..].to_vec()));
    }
    // Opus is 111 here; the video payload type is the busiest other one.
    let video_pt = pt_count.iter().filter(|(pt, _)| **pt != 111).max_by_key(|(_, n)| **n).map(|(pt, _)| *pt);
    let mut out = Vec::new();
    for (ssrc, (_, packets)) in streams {
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
        let mut sizes = Vec::new();
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
                sizes.push(frame.len());
                frame.clear();
            }
        }
        if w.frames() > 10 {
            w.finish().expect("finish");
            out.push((path, sizes));
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

/// Frame sizes of an IVF file, in bytes, in order.
fn ivf_frame_sizes(path: &Path) -> Vec<usize> {
    let mut r = IvfReader::new(File::open(path).expect("recording")).expect("IVF header");
    let mut sizes = Vec::new();
    while let Some(f) = r.next_frame().expect("IVF frame") {
        sizes.push(f.data.len());
    }
    sizes
}

/// How many of the `plain` frames (in order) match the tap frames, in
/// order, each exactly [`SFRAME_OVERHEAD`] bigger. The recorder skips
/// frames (until the first key frame, and those it could not decrypt), so
/// `plain` is matched as a subsequence of `sealed`.
fn matched_in_order(plain: &[usize], sealed: &[usize]) -> usize {
    let mut matched = 0;
    let mut j = 0;
    for p in plain {
        while j < sealed.len() && !SFRAME_OVERHEAD.contains(&sealed[j].wrapping_sub(*p)) {
            j += 1;
        }
        if j == sealed.len() {
            break;
        }
        matched += 1;
        j += 1;
    }
    matched
}

#[test]
fn the_operator_tap_holds_the_frames_but_no_picture() {
    if media("carphone.ivf").is_none() || media("bbb-360p.ivf").is_none() {
        eprintln!("SKIPPED: run scripts/test-media.sh first (CI always does)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("plenary-tap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    let (tap, runs) = meeting(&dir);
    for r in &runs {
        assert!(r.received > 50 && r.sent > 50, "participants send and receive video: {} / {}", r.sent, r.received);
    }
    let streams = rebuild_vp8(&tap, &dir);
    assert_eq!(streams.len(), 2, "the tap holds both forwarded video streams");
    let recordings: Vec<Vec<usize>> = runs.iter().map(|r| ivf_frame_sizes(&r.recording)).collect();
    for (path, sealed) in &streams {
        // Which receiver's recording this stream matches best.
        let (i, matched) = recordings
            .iter()
            .enumerate()
            .map(|(i, plain)| (i, matched_in_order(plain, sealed)))
            .max_by_key(|(_, m)| *m)
            .expect("two recordings");
        let (receiver, sender) = (&runs[i], &runs[1 - i]);
        let plain = &recordings[i];
        assert!(
            plain.len() > 50 && matched * 100 >= plain.len() * 95,
            "{}: only {matched} of the {} recorded frames match a tap frame plus SFrame overhead",
            path.display(),
            plain.len()
        );
        // Count: the tap stream holds what the receiver got, all the sender sent.
        let n = sealed.len() as u64;
        assert!(
            n.abs_diff(receiver.received) <= receiver.received / 50 + 2,
            "tap {n} frames, receiver got {}",
            receiver.received
        );
        // The sender may publish a moment alone (nothing forwarded) before the other joins.
        assert!(n <= sender.sent + 2, "tap {n} frames, sender sent {}", sender.sent);
        eprintln!(
            "{}: tap {n} frames; sender sent {}, receiver got {}, recorded {}, {matched} matched",
            path.display(),
            sender.sent,
            receiver.received,
            plain.len()
        );
        // Yet the operator gets no picture out of it; the receiver does.
        assert_eq!(decodable_pictures(path), 0, "the operator's tap yields no picture ({})", path.display());
        let decoded = common::ffmpeg_decode(&receiver.recording).expect("ffmpeg (Debian package ffmpeg) is installed");
        assert!(decoded > 50, "the receiver's recording decodes: {decoded} pictures");
    }
    let _ = std::fs::remove_dir_all(dir);
}
