//! SFrame header parsing (RFC 9605 §4.3): never panics; what parses
//! re-encodes to the bytes it came from when they were in shortest form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_e2ee::media::{encode_header, parse_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_header(data) {
        assert!(h.len <= data.len());
        let again = encode_header(h.kid, h.ctr);
        let reparsed = parse_header(&again).expect("own encoding parses");
        assert_eq!((reparsed.kid, reparsed.ctr), (h.kid, h.ctr));
    }
});
