//! A subscriber gets a forwarded video's frames in an order its decoder can
//! follow, on a lossy uplink where lost packets are retransmitted (NACK,
//! RTX) and across simulcast layer switches. The SFU's VP8 descriptors
//! carry no picture ID and its sequence numbers are continuous, so a
//! receiver cannot tell a misplaced frame: it decodes a delta frame on the
//! wrong reference and shows block garbage until the next key frame.

mod harness;

use std::time::Duration;

use harness::World;
use plenary_proto::MediaKind;
use str0m_netem::{NetemConfig, Probability, RandomLoss};

#[test]
fn frames_reach_the_subscriber_in_decodable_order_on_a_lossy_uplink() {
    let mut w = World::new();
    let p = w.join("room-order", true, true);
    let s = w.join("room-order", false, false);
    w.run(Duration::from_secs(2), 100_000);
    // 5% loss: some frames complete only when their retransmission comes,
    // after later frames that then wait for them.
    let lossy =
        NetemConfig::new().latency(Duration::from_millis(20)).loss(RandomLoss::new(Probability::new(0.05))).seed(3);
    w.set_links(p, None, Some(lossy));
    for (wd, ht) in [(1280, 720), (160, 90), (320, 180), (160, 90), (640, 360), (320, 180)] {
        w.prefer(s, p, wd, ht);
        w.run(Duration::from_secs(2), 100_000);
    }
    let vmid = w.mid_of(s, p, MediaKind::Video).expect("video mid");
    let frames = w.frames(s, vmid);
    assert!(frames.len() > 150, "the subscriber got only {} frames", frames.len());
    let mut switches = 0;
    for pair in frames.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.rtp_time > a.rtp_time,
            "frame at RTP time {} came after {} (sequence numbers {} then {}): out of order, undetectably",
            b.rtp_time,
            a.rtp_time,
            a.last_seq,
            b.first_seq
        );
        if a.layer_tag != b.layer_tag {
            switches += 1;
        }
        assert!(
            b.keyframe || b.layer_tag == a.layer_tag,
            "a delta frame of layer {} came right after a frame of layer {}: its reference is missing",
            b.layer_tag,
            a.layer_tag
        );
    }
    assert!(switches >= 3, "saw {switches} layer switches");
}
