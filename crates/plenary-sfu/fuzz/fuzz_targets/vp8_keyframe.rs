//! The clear VP8 key frame header the SFU reads from every published key
//! frame (RFC 6386 §9.1; under SFrame these bytes stay in clear): never
//! panics, and a size is found only in a key frame's header with the start
//! code, each side 1 to 16383 pixels.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_sfu::vp8_keyframe_size;

fuzz_target!(|data: &[u8]| {
    if let Some((w, h)) = vp8_keyframe_size(data) {
        assert!(data.len() >= 10 && data[0] & 1 == 0 && data[3..6] == [0x9d, 0x01, 0x2a]);
        assert!((1..=0x3fff).contains(&w) && (1..=0x3fff).contains(&h));
    }
});
