//! A datagram as the light subscriber reads it: the RTP fixed header
//! (RFC 3550 §5.1) and the latency stamp in the payload. Never panics; a
//! parsed header written back parses to the same fields, and a found stamp
//! re-encodes to one found again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_load::synth::{RtpHead, Stamp};

fuzz_target!(|data: &[u8]| {
    if let Some(head) = RtpHead::parse(data) {
        let rewritten = head.write(0, &data[12..]);
        assert_eq!(RtpHead::parse(&rewritten), Some(head));
    }
    if let Some(stamp) = Stamp::find(data) {
        assert_eq!(Stamp::find(&stamp.encode()), Some(stamp));
    }
});
