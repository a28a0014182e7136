//! SFrame media path: KIDs, grace window, replay and tamper rejection, clear
//! prefixes. Every refused frame leaves the receiver able to take the next.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::time::Duration;

use plenary_e2ee::media::{Codec, EpochKeys, MediaCrypto, MediaError, parse_header};

fn keys(epoch: u64, own_leaf: u32, key_byte: u8) -> EpochKeys {
    EpochKeys { epoch, base_key: [key_byte; 16], own_leaf, members: vec![0, 1, 2, 5] }
}

fn pair(epoch: u64) -> (MediaCrypto, MediaCrypto) {
    let mut tx = MediaCrypto::default();
    tx.set_epoch_keys(keys(epoch, 5, epoch as u8), Duration::ZERO);
    let mut rx = MediaCrypto::default();
    rx.set_epoch_keys(keys(epoch, 1, epoch as u8), Duration::ZERO);
    (tx, rx)
}

const T0: Duration = Duration::ZERO;

fn vp8_key_frame(n: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..n).map(|i| i as u8).collect();
    f[0] = 0x50; // bit 0 clear: key frame
    f
}

#[test]
fn kid_layout_follows_rfc9605_5_2() {
    let k = keys(0x1234, 5, 0);
    // Leaves up to 5 need S = 3 bits; E = 8.
    assert_eq!(k.index_bits(), 3);
    assert_eq!(k.kid(0, 5).unwrap(), (5 << 8) | 0x34);
    assert_eq!(k.kid(2, 5).unwrap(), (2 << 11) | (5 << 8) | 0x34);
    let (mut tx, _) = pair(3);
    let f = tx.encrypt(2, Codec::Opus, b"x").unwrap();
    let h = parse_header(&f).unwrap();
    assert_eq!(h.kid, (2 << 11) | (5 << 8) | 3);
    assert_eq!(h.ctr, 0);
    assert_eq!(EpochKeys::from_bytes(&k.to_bytes()).unwrap(), k);
    assert_eq!(EpochKeys::from_bytes(&[0; 10]), Err(MediaError::BadEpochKeys));
}

#[test]
fn opus_is_fully_encrypted_vp8_keeps_its_header() {
    let (mut tx, mut rx) = pair(1);
    let audio = vec![0xAB; 160];
    let sealed = tx.encrypt(0, Codec::Opus, &audio).unwrap();
    assert_eq!(sealed.len(), 160 + 3 + 16); // 1-byte config + 2-byte KID, CTR 0 inline
    assert!(!sealed.windows(8).any(|w| w == [0xAB; 8]));
    assert_eq!(rx.decrypt(Codec::Opus, &sealed, T0).unwrap().frame, audio);

    let key = vp8_key_frame(1200);
    let sealed = tx.encrypt(1, Codec::Vp8, &key).unwrap();
    assert_eq!(&sealed[..10], &key[..10]);
    let d = rx.decrypt(Codec::Vp8, &sealed, T0).unwrap();
    assert_eq!((d.sender_leaf, d.context, d.frame), (5, 1, key));

    let mut delta = vec![0x11; 300];
    delta[0] = 0x01;
    let sealed = tx.encrypt(1, Codec::Vp8, &delta).unwrap();
    assert_eq!(sealed[0], 0x01);
    assert_ne!(sealed[1], 0x11); // SFrame header follows one clear byte
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed, T0).unwrap().frame, delta);

    // Tiny frames: a 1-byte delta frame and an empty Opus frame work; an
    // empty VP8 frame or a key frame under 10 bytes is not a VP8 frame.
    let s = tx.encrypt(1, Codec::Vp8, &[0x01]).unwrap();
    assert_eq!(rx.decrypt(Codec::Vp8, &s, T0).unwrap().frame, [0x01]);
    let s = tx.encrypt(0, Codec::Opus, b"").unwrap();
    assert_eq!(rx.decrypt(Codec::Opus, &s, T0).unwrap().frame, b"");
    assert_eq!(tx.encrypt(1, Codec::Vp8, b""), Err(MediaError::MalformedFrame));
    assert_eq!(tx.encrypt(1, Codec::Vp8, &[0x00; 9]), Err(MediaError::MalformedFrame));
    assert_eq!(Codec::from_name("video/VP8"), Some(Codec::Vp8));
    assert_eq!(Codec::from_name("audio/opus"), Some(Codec::Opus));
    assert_eq!(Codec::from_name("H264"), None);
}

#[test]
fn tampering_replay_and_unknown_kid_are_refused_without_state_change() {
    let (mut tx, mut rx) = pair(1);
    let key = vp8_key_frame(500);
    let sealed = tx.encrypt(1, Codec::Vp8, &key).unwrap();

    // Flipped bit in the ciphertext.
    let mut bad = sealed.clone();
    bad[200] ^= 0x04;
    assert_eq!(rx.decrypt(Codec::Vp8, &bad, T0), Err(MediaError::Authentication));
    // Flipped bit in the clear prefix (not the key-frame bit).
    let mut bad = sealed.clone();
    bad[5] ^= 0x80;
    assert_eq!(rx.decrypt(Codec::Vp8, &bad, T0), Err(MediaError::Authentication));
    // Flipped key-frame bit: the prefix length changes, still refused.
    let mut bad = sealed.clone();
    bad[0] ^= 0x01;
    assert!(rx.decrypt(Codec::Vp8, &bad, T0).is_err());
    // Flipped tag bit.
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(rx.decrypt(Codec::Vp8, &bad, T0), Err(MediaError::Authentication));
    // Truncated.
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed[..20], T0), Err(MediaError::Truncated));
    assert_eq!(rx.decrypt(Codec::Opus, &[], T0), Err(MediaError::Truncated));

    // None of that was recorded: the genuine frame decrypts, once.
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed, T0).unwrap().frame, key);
    assert_eq!(rx.decrypt(Codec::Vp8, &sealed, T0), Err(MediaError::Replayed));

    // Unknown KID: a leaf that is not a member (4), and another epoch.
    let mut other = MediaCrypto::default();
    other.set_epoch_keys(EpochKeys { members: vec![0, 1, 2, 4, 5], own_leaf: 4, ..keys(1, 4, 1) }, T0);
    let from_4 = other.encrypt(0, Codec::Opus, b"a").unwrap();
    assert!(matches!(rx.decrypt(Codec::Opus, &from_4, T0), Err(MediaError::UnknownKeyId { .. })));
    let (mut tx9, _) = pair(9);
    let epoch9 = tx9.encrypt(0, Codec::Opus, b"a").unwrap();
    assert!(matches!(rx.decrypt(Codec::Opus, &epoch9, T0), Err(MediaError::UnknownKeyId { .. })));
    // Still fine afterwards.
    let next = tx.encrypt(1, Codec::Vp8, &key).unwrap();
    assert_eq!(rx.decrypt(Codec::Vp8, &next, T0).unwrap().frame, key);

    // Frames out of order within the window are accepted.
    let a = tx.encrypt(0, Codec::Opus, b"1").unwrap();
    let b = tx.encrypt(0, Codec::Opus, b"2").unwrap();
    assert_eq!(rx.decrypt(Codec::Opus, &b, T0).unwrap().frame, b"2");
    assert_eq!(rx.decrypt(Codec::Opus, &a, T0).unwrap().frame, b"1");
}

#[test]
fn previous_epoch_decrypts_during_grace_window_only() {
    let (mut tx, mut rx) = pair(1);
    let old1 = tx.encrypt(0, Codec::Opus, b"old-1").unwrap();
    let old2 = tx.encrypt(0, Codec::Opus, b"old-2").unwrap();
    let t = Duration::from_secs(100);
    tx.set_epoch_keys(keys(2, 5, 2), t);
    rx.set_epoch_keys(keys(2, 1, 2), t);
    let new = tx.encrypt(0, Codec::Opus, b"new").unwrap();
    assert_eq!(rx.decrypt(Codec::Opus, &new, t).unwrap().epoch, 2);
    // In flight from epoch 1, 1.5 s later: still decrypts.
    let d = rx.decrypt(Codec::Opus, &old1, t + Duration::from_millis(1500)).unwrap();
    assert_eq!((d.epoch, d.frame.as_slice()), (1, &b"old-1"[..]));
    // 2.5 s later: the grace window (2 s) is over.
    assert!(matches!(
        rx.decrypt(Codec::Opus, &old2, t + Duration::from_millis(2500)),
        Err(MediaError::UnknownKeyId { .. })
    ));
    // A custom grace window.
    let mut short = MediaCrypto::new(Duration::from_millis(100));
    short.set_epoch_keys(keys(1, 1, 1), T0);
    short.set_epoch_keys(keys(2, 1, 2), t);
    assert!(short.decrypt(Codec::Opus, &old2, t + Duration::from_millis(200)).is_err());
    // No keys at all.
    let mut empty = MediaCrypto::default();
    assert_eq!(empty.encrypt(0, Codec::Opus, b"x"), Err(MediaError::NoKeys));
    assert!(matches!(empty.decrypt(Codec::Opus, &new, T0), Err(MediaError::UnknownKeyId { .. })));
    assert_eq!(tx.encrypt(1 << 20, Codec::Opus, b"x"), Err(MediaError::BadContext(1 << 20)));
}

#[test]
fn each_sender_has_its_own_key() {
    // Leaves 1 and 5 both send with context 0 and CTR 0: different KIDs, so
    // different keys and nonces.
    let mut a = MediaCrypto::default();
    a.set_epoch_keys(keys(1, 1, 1), T0);
    let mut b = MediaCrypto::default();
    b.set_epoch_keys(keys(1, 5, 1), T0);
    let fa = a.encrypt(0, Codec::Opus, &[0u8; 32]).unwrap();
    let fb = b.encrypt(0, Codec::Opus, &[0u8; 32]).unwrap();
    assert_ne!(fa[3..], fb[3..]);
    let mut rx = MediaCrypto::default();
    rx.set_epoch_keys(keys(1, 0, 1), T0);
    assert_eq!(rx.decrypt(Codec::Opus, &fa, T0).unwrap().sender_leaf, 1);
    assert_eq!(rx.decrypt(Codec::Opus, &fb, T0).unwrap().sender_leaf, 5);
}

#[test]
fn refused_frames_get_one_disposition_for_every_client() {
    use plenary_e2ee::media::Disposition;
    let (mut tx, mut rx) = pair(1);
    let frame = tx.encrypt(0, Codec::Opus, b"hello").unwrap();
    // No keys yet: wait for them.
    let mut fresh = MediaCrypto::default();
    let e = fresh.decrypt(Codec::Opus, &frame, T0).unwrap_err();
    assert_eq!(fresh.disposition(&e), Disposition::Hold);
    // A copy of a decrypted frame is a replay, not a failure.
    rx.decrypt(Codec::Opus, &frame, T0).unwrap();
    let e = rx.decrypt(Codec::Opus, &frame, T0).unwrap_err();
    assert_eq!((e.clone(), rx.disposition(&e)), (MediaError::Replayed, Disposition::Replay));
    // One and two epochs ahead: the commit is on its way; three: not.
    for (epoch, want) in [(2, Disposition::Hold), (3, Disposition::Hold), (4, Disposition::Fail)] {
        let (mut ahead, _) = pair(epoch);
        let e = rx.decrypt(Codec::Opus, &ahead.encrypt(0, Codec::Opus, b"x").unwrap(), T0).unwrap_err();
        assert_eq!(rx.disposition(&e), want, "{} epochs ahead", epoch - 1);
    }
    // Epoch bits wrap: 255 -> 0 is one ahead.
    let (_, mut rx255) = pair(255);
    let (mut tx256, _) = pair(256);
    let e = rx255.decrypt(Codec::Opus, &tx256.encrypt(0, Codec::Opus, b"x").unwrap(), T0).unwrap_err();
    assert_eq!(rx255.disposition(&e), Disposition::Hold);
    // Tampered: a failure.
    let mut bad = tx.encrypt(0, Codec::Opus, b"hello").unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = rx.decrypt(Codec::Opus, &bad, T0).unwrap_err();
    assert_eq!((e.clone(), rx.disposition(&e)), (MediaError::Authentication, Disposition::Fail));
}
