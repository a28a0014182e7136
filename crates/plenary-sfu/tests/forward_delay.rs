//! Delay the SFU itself adds to forwarded media, in virtual time over
//! perfect links: no CPU time, no network, so whatever delay a frame shows
//! was added by the SFU's own queueing and timers (str0m's pacer, frame
//! assembly, timeouts), the part of forwarding latency that is ours
//! whatever the machine.

mod harness;

use std::time::Duration;

use harness::{Received, World};
use plenary_proto::MediaKind;

/// Simulcast layers of about 150 kbit/s, 500 kbit/s and 1.3 Mbit/s at 30
/// frames a second.
const LAYERS: [usize; 3] = [625, 2_080, 5_400];

/// Per frame: arrival minus send time, ms. Send times follow from the RTP
/// timestamps (90 kHz video, 48 kHz audio); the SFU rewrites their offset,
/// so each delay is taken relative to the least delayed frame of the
/// stream, which on a perfect link in virtual time left at once.
fn added_delays_ms(frames: &[&Received], clock_hz: f64) -> Vec<f64> {
    let Some(first) = frames.first() else { return Vec::new() };
    let raw: Vec<f64> = frames
        .iter()
        .map(|f| {
            let elapsed = (f.at - first.at).as_secs_f64();
            let media = (f.rtp_time as f64 - first.rtp_time as f64) / clock_hz;
            (elapsed - media) * 1000.0
        })
        .collect();
    let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
    raw.iter().map(|d| d - min).collect()
}

fn p(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

#[test]
fn forwarding_adds_no_queueing_delay_on_a_perfect_link() {
    let mut w = World::new();
    w.layer_bytes = LAYERS;
    let publisher = w.join("delay", true, true);
    let subs: Vec<usize> = (0..5).map(|_| w.join("delay", false, false)).collect();
    w.run(Duration::from_secs(2), 30);
    for &s in &subs {
        w.prefer(s, publisher, 640, 360);
    }
    w.run(Duration::from_secs(4), 30);
    let from = w.now;
    w.run(Duration::from_secs(10), 30);
    for &s in &subs {
        let video = w.mid_of(s, publisher, MediaKind::Video).expect("video");
        let audio = w.mid_of(s, publisher, MediaKind::Audio).expect("audio");
        let vf: Vec<&Received> = w.frames(s, video).into_iter().filter(|f| f.at >= from).collect();
        let af: Vec<&Received> = w.frames(s, audio).into_iter().filter(|f| f.at >= from).collect();
        let mut vd = added_delays_ms(&vf, 90_000.0);
        let mut ad = added_delays_ms(&af, 48_000.0);
        let (v50, v99, vmax) = (p(&mut vd, 0.5), p(&mut vd, 0.99), p(&mut vd, 1.0));
        let amax = p(&mut ad, 1.0);
        eprintln!("subscriber {s}: video p50 {v50:.2} p99 {v99:.2} max {vmax:.2} ms, audio max {amax:.2} ms");
        assert!(vd.len() > 250 && ad.len() > 450, "media flowed: {} video, {} audio frames", vd.len(), ad.len());
        // str0m paces video (a frame's packets spread at the pacing rate);
        // that may hold a frame a few ms, never a whole frame interval.
        assert!(v99 <= 5.0, "video p99 {v99:.2} ms added by the SFU");
        assert!(vmax <= 15.0, "video max {vmax:.2} ms added by the SFU");
        // Audio is one packet per frame and not paced.
        assert!(amax <= 1.0, "audio max {amax:.2} ms added by the SFU");
    }
}
