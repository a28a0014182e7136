//! Client message decoding (what the server reads from every WebSocket):
//! never panics, and what decodes re-encodes to a message that decodes to
//! the same value (unless the re-encoding exceeds the size limit).
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_proto::{MAX_CLIENT_MESSAGE_BYTES, decode_client_msg, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(msg) = decode_client_msg(text) {
        let encoded = encode(&msg);
        // Defaults filled in (e.g. `version`) may push it over the size limit.
        if encoded.len() <= MAX_CLIENT_MESSAGE_BYTES {
            let again = decode_client_msg(&encoded).expect("a decoded message re-encodes to a valid one");
            assert_eq!(again, msg);
        }
    }
});
