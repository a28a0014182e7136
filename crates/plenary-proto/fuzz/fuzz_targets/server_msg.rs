//! Server message decoding (what native clients read from the server):
//! never panics, and what decodes re-encodes to a message that decodes to
//! the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_proto::{decode_server_msg, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(msg) = decode_server_msg(text) {
        let again = decode_server_msg(&encode(&msg)).expect("a decoded message re-encodes to a valid one");
        assert_eq!(again, msg);
    }
});
