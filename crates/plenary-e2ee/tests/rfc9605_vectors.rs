//! RFC 9605 Appendix C test vectors (see test-vectors/README.md for the source).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use plenary_e2ee::media::{encode_header, open, parse_header, seal};
use sframe::CipherSuite;

fn vectors() -> serde_json::Value {
    let text = include_str!("../test-vectors/rfc9605-test-vectors.json");
    serde_json::from_str(text).expect("vectors parse")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

#[test]
fn header_encoding_appendix_c1() {
    let v = vectors();
    let cases = v["header"].as_array().expect("header array");
    assert!(cases.len() > 200);
    for case in cases {
        let kid = case["kid"].as_u64().expect("kid");
        let ctr = case["ctr"].as_u64().expect("ctr");
        let encoded = unhex(case["encoded"].as_str().expect("encoded"));
        assert_eq!(encode_header(kid, ctr), encoded, "kid {kid} ctr {ctr}");
        let h = parse_header(&encoded).expect("parses");
        assert_eq!((h.kid, h.ctr, h.len), (kid, ctr, encoded.len()));
        // Truncated headers are a typed error, never a panic.
        assert!(parse_header(&encoded[..encoded.len() - 1]).is_err() || encoded.len() == 1);
    }
}

#[test]
fn sframe_encryption_appendix_c5() {
    let v = vectors();
    let mut checked = 0;
    for case in v["sframe"].as_array().expect("sframe array") {
        let suite = match case["cipher_suite"].as_u64() {
            Some(4) => CipherSuite::AesGcm128Sha256,
            Some(5) => CipherSuite::AesGcm256Sha512,
            _ => continue, // AES-CTR+HMAC suites are not enabled
        };
        let kid = case["kid"].as_u64().expect("kid");
        let ctr = case["ctr"].as_u64().expect("ctr");
        let base_key = unhex(case["base_key"].as_str().expect("base_key"));
        let metadata = unhex(case["metadata"].as_str().expect("metadata"));
        let pt = unhex(case["pt"].as_str().expect("pt"));
        let ct = unhex(case["ct"].as_str().expect("ct"));

        let sealed = seal(suite, &base_key, kid, ctr, &metadata, &pt).expect("seal");
        assert_eq!(&sealed[..metadata.len()], &metadata[..]);
        assert_eq!(&sealed[metadata.len()..], &ct[..], "suite {suite:?}");

        let (header, plain) = open(suite, &base_key, &metadata, &ct).expect("open");
        assert_eq!((header.kid, header.ctr), (kid, ctr));
        assert_eq!(plain, pt);

        // Any flipped bit in the ciphertext or the metadata fails.
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(suite, &base_key, &metadata, &bad).is_err());
        let mut bad_meta = metadata.clone();
        bad_meta[0] ^= 0x80;
        assert!(open(suite, &base_key, &bad_meta, &ct).is_err());
        checked += 1;
    }
    assert_eq!(checked, 2, "both AES-GCM suites checked");
}
