//! SFrame frame intake: arbitrary bytes as Opus and VP8 frames into a
//! receiver with keys installed. Never panics, never authenticates.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plenary_e2ee::media::{Codec, EpochKeys, MediaCrypto};

fuzz_target!(|data: &[u8]| {
    let mut rx = MediaCrypto::default();
    rx.set_epoch_keys(EpochKeys { epoch: 1, base_key: [9; 16], own_leaf: 0, members: vec![0, 1, 2] }, Duration::ZERO);
    for codec in [Codec::Opus, Codec::Vp8] {
        assert!(rx.decrypt(codec, data, Duration::from_millis(1)).is_err());
    }
});
