//! Cross-build fixture for the wasm build (see `crates/plenary-wasm/tests/`).
//!
//! `cross_fixture write` prints JSON: fixed epoch keys for a sender (leaf 3)
//! and a receiver (leaf 1), and frames encrypted natively by the sender. The
//! Node test re-encrypts them in wasm (same keys and counters give the same
//! bytes), decrypts the native ones, and writes frames of its own.
//! `cross_fixture verify FILE` decrypts the frames the wasm build wrote
//! (`{"frames":[{"codec","plain","sealed"}]}`, hex) natively and exits
//! non-zero on any mismatch.

use std::time::Duration;

use plenary_e2ee::media::{Codec, EpochKeys, MediaCrypto};

fn keys(own_leaf: u32) -> EpochKeys {
    EpochKeys { epoch: 5, base_key: core::array::from_fn(|i| i as u8), own_leaf, members: vec![0, 1, 3, 7] }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
}

/// Frames of the fixture: codec, context, plaintext.
fn frames() -> Vec<(Codec, u64, Vec<u8>)> {
    let pattern =
        |n: usize, seed: u8| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect() };
    let mut key_frame = pattern(1200, 7);
    key_frame[0] = 0x10; // VP8 key frame: bit 0 clear
    let mut delta = pattern(900, 9);
    delta[0] = 0x31; // VP8 delta frame: bit 0 set
    vec![
        (Codec::Opus, 0, pattern(160, 1)),
        (Codec::Opus, 0, pattern(120, 2)),
        (Codec::Vp8, 1, key_frame),
        (Codec::Vp8, 1, delta),
    ]
}

fn field<'a>(obj: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = obj.find(&key)? + key.len();
    let end = obj[start..].find('"')? + start;
    Some(&obj[start..end])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => {
            let mut tx = MediaCrypto::default();
            tx.set_epoch_keys(keys(3), Duration::ZERO);
            let mut out = String::from("{\"sender_keys\":\"");
            out += &hex(&keys(3).to_bytes());
            out += "\",\"receiver_keys\":\"";
            out += &hex(&keys(1).to_bytes());
            out += "\",\"frames\":[";
            for (i, (codec, ctx, plain)) in frames().into_iter().enumerate() {
                let sealed = tx.encrypt(ctx, codec, &plain).expect("encrypt");
                if i > 0 {
                    out += ",";
                }
                out += &format!(
                    "{{\"codec\":\"{}\",\"context\":{ctx},\"plain\":\"{}\",\"sealed\":\"{}\"}}",
                    codec.name(),
                    hex(&plain),
                    hex(&sealed)
                );
            }
            out += "]}";
            println!("{out}");
        }
        Some("verify") => {
            let path = args.get(2).expect("verify FILE");
            let text = std::fs::read_to_string(path).expect("read");
            let mut rx = MediaCrypto::default();
            rx.set_epoch_keys(keys(1), Duration::ZERO);
            let mut n = 0;
            for obj in text.split('{').skip(2) {
                let (Some(codec), Some(plain), Some(sealed)) =
                    (field(obj, "codec"), field(obj, "plain"), field(obj, "sealed"))
                else {
                    continue;
                };
                let codec = Codec::from_name(codec).expect("codec");
                let d = rx.decrypt(codec, &unhex(sealed), Duration::ZERO).expect("wasm frame decrypts natively");
                assert_eq!(d.frame, unhex(plain), "plaintext matches");
                assert_eq!(d.sender_leaf, 3);
                n += 1;
            }
            assert!(n > 0, "no frames in {path}");
            println!("cross_fixture: {n} wasm-encrypted frames decrypted natively");
        }
        _ => {
            eprintln!("usage: cross_fixture write | verify FILE");
            std::process::exit(2);
        }
    }
}
