//! Envelope decoding: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plenary_e2ee::app::AppMessage;
use plenary_e2ee::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.encode().expect("re-encodes"), data);
    }
    if let Ok(msg) = AppMessage::decode(data) {
        assert_eq!(msg.encode().expect("re-encodes"), data);
    }
});
