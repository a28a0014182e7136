//! What the Janus target reads from Janus's HTTP API: answers to requests
//! and long-polled events (JSON of any shape). Never panics; a success's
//! id, a JSEP's SDP and an event's routing agree with the JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    plenary_load::janus::api::fuzz_answer(data);
});
