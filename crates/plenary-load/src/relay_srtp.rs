//! SRTP with AEAD_AES_128_GCM (RFC 7714) for the `srtp-relay` baseline:
//! the per-packet work an SFU's SRTP layer does (str0m's, with aws-lc-rs),
//! without the rest of WebRTC.
//!
//! - Session keys come from a master key and salt through the RFC 3711
//!   §4.3 key derivation (AES-128 in counter mode as the PRF; labels 0x00
//!   for the RTP encryption key, 0x02 for the RTP salt; key derivation
//!   rate 0), with RFC 7714 §11's 96-bit salts.
//! - A packet is `header || AES-GCM(payload) || 16-byte tag`; the header
//!   (with CSRCs and extensions) is the AAD and the 96-bit IV is
//!   `(0x0000 || SSRC || ROC || SEQ) XOR salt` (RFC 7714 §8.1).
//! - The rollover counter (ROC) of each SSRC is estimated from sequence
//!   numbers as in RFC 3711 §3.3.1.
//!
//! [`SrtpSession::protect_in_place`] and [`SrtpSession::unprotect_in_place`]
//! work on the caller's buffer: nothing is allocated per packet.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};

use crate::target::PacketCrypto;

/// Master key length, bytes (AES-128).
pub const MASTER_KEY_LEN: usize = 16;
/// Master (and session) salt length for AEAD_AES_128_GCM, bytes (RFC 7714 §11).
pub const SALT_LEN: usize = 12;
/// Authentication tag appended to every packet, bytes.
pub const TAG_LEN: usize = 16;

/// RFC 3711 §4.3.2 key derivation labels.
const LABEL_RTP_ENCRYPTION: u8 = 0x00;
const LABEL_RTP_SALT: u8 = 0x02;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// Shorter than its RTP header (RFC 3550 §5.1, with CSRCs and the
    /// RFC 8285 extension block) plus the tag, or not RTP version 2.
    #[error("not an RTP packet")]
    Malformed,
    /// The output buffer cannot take the tag.
    #[error("buffer too small for the SRTP tag")]
    BufferTooSmall,
    /// The tag did not verify (wrong key, altered packet, wrong ROC).
    #[error("SRTP authentication failed")]
    Authentication,
}

/// A master key and salt (RFC 3711 §8.2), as DTLS-SRTP would export.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey {
    /// The AES-128 master key.
    pub key: [u8; MASTER_KEY_LEN],
    /// The 96-bit master salt.
    pub salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The master key of peer `id` of a relay run: `self` with `id` XORed
    /// into the last four key bytes (0 = publishers, 1.. = subscribers).
    pub fn for_peer(&self, id: u32) -> MasterKey {
        let mut k = *self;
        for (b, x) in k.key[MASTER_KEY_LEN - 4..].iter_mut().zip(id.to_be_bytes()) {
            *b ^= x;
        }
        k
    }

    /// Lowercase hex of key then salt (56 digits).
    pub fn to_hex(&self) -> String {
        self.key.iter().chain(&self.salt).map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Self::to_hex`]'s form; `None` if not 56 hex digits.
    pub fn from_hex(s: &str) -> Option<MasterKey> {
        if s.len() != 2 * (MASTER_KEY_LEN + SALT_LEN) || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; MASTER_KEY_LEN + SALT_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let mut k = MasterKey { key: [0; MASTER_KEY_LEN], salt: [0; SALT_LEN] };
        k.key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        k.salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        Some(k)
    }

    /// A random master key and salt.
    pub fn random() -> MasterKey {
        MasterKey { key: rand::random(), salt: rand::random() }
    }
}

/// RFC 3711 §4.3.1 with the AES-CM PRF: `AES(master_key, (salt XOR label
/// at octet 7) || counter)` blocks, concatenated and cut to `out.len()`.
/// `salt` is the master salt (12 bytes here, zero-padded to 14 as RFC 7714
/// §11 says).
fn derive(master_key: &[u8; MASTER_KEY_LEN], salt: &[u8], label: u8, out: &mut [u8]) {
    let Ok(key) = UnboundCipherKey::new(&AES_128, master_key).and_then(EncryptingKey::ecb) else {
        // AES-128 with a 16-byte key cannot fail to set up.
        return;
    };
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..salt.len().min(14)].copy_from_slice(&salt[..salt.len().min(14)]);
        block[7] ^= label;
        block[14..].copy_from_slice(&(round as u16).to_be_bytes());
        let _ = key.less_safe_encrypt(&mut block, EncryptionContext::None);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// RTP header length (RFC 3550 §5.1: 12 + 4·CC, plus the RFC 8285
/// extension block when X is set), or `None` if `pkt` is too short or not
/// version 2.
pub fn rtp_header_len(pkt: &[u8]) -> Option<usize> {
    let b0 = *pkt.first()?;
    if b0 >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*pkt.get(len + 2)?, *pkt.get(len + 3)?]);
        len += 4 + 4 * usize::from(words);
    }
    (len <= pkt.len()).then_some(len)
}

/// One direction's SRTP crypto context: session key and salt derived from
/// a master key, and the ROC per SSRC.
pub struct SrtpSession {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
    rocs: HashMap<u32, RocState>,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession").field("ssrcs", &self.rocs.len()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct RocState {
    roc: u32,
    last_seq: u16,
}

impl SrtpSession {
    /// Derives the RTP session key and salt from `master` (RFC 3711 §4.3).
    pub fn new(master: &MasterKey) -> SrtpSession {
        let mut key = [0u8; 16];
        let mut salt = [0u8; SALT_LEN];
        derive(&master.key, &master.salt, LABEL_RTP_ENCRYPTION, &mut key);
        derive(&master.key, &master.salt, LABEL_RTP_SALT, &mut salt);
        SrtpSession::with_session_keys(key, salt)
    }

    /// A context from session key and salt directly (RFC 7714 §16's test
    /// vectors are given that way).
    pub fn with_session_keys(key: [u8; 16], salt: [u8; SALT_LEN]) -> SrtpSession {
        // AES-128-GCM with a 16-byte key cannot fail to set up.
        #[allow(clippy::expect_used)]
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("AES-128-GCM key"));
        SrtpSession { key, salt, rocs: HashMap::new() }
    }

    /// The ROC for `seq` on `ssrc` (RFC 3711 §3.3.1 estimate from the
    /// highest sequence number seen), updating the state.
    fn roc(&mut self, ssrc: u32, seq: u16) -> u32 {
        let s = self.rocs.entry(ssrc).or_insert(RocState { roc: 0, last_seq: seq });
        let delta = seq.wrapping_sub(s.last_seq) as i16;
        let roc = if delta >= 0 {
            if seq < s.last_seq { s.roc.wrapping_add(1) } else { s.roc }
        } else if seq > s.last_seq {
            s.roc.wrapping_sub(1)
        } else {
            s.roc
        };
        if delta > 0 {
            s.roc = roc;
            s.last_seq = seq;
        }
        roc
    }

    fn nonce(&self, ssrc: u32, roc: u32, seq: u16) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(&self.salt) {
            *v ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag;
    /// returns the SRTP length (`len + 16`).
    ///
    /// # Errors
    /// [`SrtpError::Malformed`] if `buf[..len]` is not RTP,
    /// [`SrtpError::BufferTooSmall`] if `buf` has no room for the tag.
    pub fn protect_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let hlen = rtp_header_len(pkt).ok_or(SrtpError::Malformed)?;
        if buf.len() < len + TAG_LEN {
            return Err(SrtpError::BufferTooSmall);
        }
        let (seq, ssrc) = seq_ssrc(pkt);
        let roc = self.roc(ssrc, seq);
        let nonce = self.nonce(ssrc, roc, seq);
        let (header, rest) = buf.split_at_mut(hlen);
        let (payload, tail) = rest.split_at_mut(len - hlen);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), payload)
            .map_err(|_| SrtpError::Malformed)?;
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(len + TAG_LEN)
    }

    /// Verifies and decrypts the SRTP packet in `buf[..len]` in place;
    /// returns the RTP length (`len - 16`).
    ///
    /// # Errors
    /// [`SrtpError::Malformed`] if it is not SRTP, [`SrtpError::Authentication`]
    /// if the tag does not verify.
    pub fn unprotect_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let hlen = rtp_header_len(pkt).ok_or(SrtpError::Malformed)?;
        if len < hlen + TAG_LEN {
            return Err(SrtpError::Malformed);
        }
        let (seq, ssrc) = seq_ssrc(pkt);
        // Estimate without committing: a forged packet must not move the ROC.
        let saved = self.rocs.get(&ssrc).copied();
        let roc = self.roc(ssrc, seq);
        let nonce = self.nonce(ssrc, roc, seq);
        let (header, rest) = buf.split_at_mut(hlen);
        match self.key.open_in_place(nonce, Aad::from(&*header), &mut rest[..len - hlen]) {
            Ok(plain) => Ok(hlen + plain.len()),
            Err(_) => {
                match saved {
                    Some(s) => self.rocs.insert(ssrc, s),
                    None => self.rocs.remove(&ssrc),
                };
                Err(SrtpError::Authentication)
            }
        }
    }
}

fn seq_ssrc(pkt: &[u8]) -> (u16, u32) {
    let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
    let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
    (seq, ssrc)
}

/// The harness side of an `srtp-relay` peer: one context to protect what
/// it sends and one to unprotect what it receives, both under the peer's
/// master key (the relay holds the same keys).
#[derive(Debug)]
pub struct PeerSrtp {
    tx: Mutex<SrtpSession>,
    rx: Mutex<SrtpSession>,
}

impl PeerSrtp {
    /// Contexts for a peer with master key `master`.
    pub fn new(master: &MasterKey) -> PeerSrtp {
        PeerSrtp { tx: Mutex::new(SrtpSession::new(master)), rx: Mutex::new(SrtpSession::new(master)) }
    }
}

impl PacketCrypto for PeerSrtp {
    fn protect(&self, rtp: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; rtp.len() + TAG_LEN];
        buf[..rtp.len()].copy_from_slice(rtp);
        let mut s = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match s.protect_in_place(&mut buf, rtp.len()) {
            Ok(n) => buf.truncate(n),
            // Not RTP: sent as is (the relay drops it).
            Err(_) => buf.truncate(rtp.len()),
        }
        buf
    }

    fn unprotect(&self, srtp: &[u8]) -> Option<Vec<u8>> {
        let mut buf = srtp.to_vec();
        let mut s = self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = s.unprotect_in_place(&mut buf, srtp.len()).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0)).collect()
    }

    /// RFC 3711 Appendix B.3: key derivation test vectors.
    #[test]
    fn rfc3711_key_derivation() {
        let mut master = [0u8; 16];
        master.copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut key = [0u8; 16];
        derive(&master, &salt, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&master, &salt, LABEL_RTP_SALT, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    const RFC7714_RTP: &str =
        "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
    const RFC7714_SRTP: &str = "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833 899d7f27beb16a9152cf765ee4390cce";

    fn rfc7714_session() -> SrtpSession {
        let mut key = [0u8; 16];
        key.copy_from_slice(&hex("000102030405060708090a0b0c0d0e0f"));
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&hex("517569642070726f2071756f"));
        SrtpSession::with_session_keys(key, salt)
    }

    /// RFC 7714 §16.1.1 (encryption) and §16.1.2 (decryption) with
    /// AEAD_AES_128_GCM.
    #[test]
    fn rfc7714_aes_128_gcm_vectors() {
        let plain = hex(RFC7714_RTP);
        let want = hex(RFC7714_SRTP);
        let mut buf = plain.clone();
        buf.resize(plain.len() + TAG_LEN, 0);
        let n = rfc7714_session().protect_in_place(&mut buf, plain.len()).expect("protect");
        assert_eq!(&buf[..n], &want[..]);

        let mut buf = want.clone();
        let n = rfc7714_session().unprotect_in_place(&mut buf, want.len()).expect("unprotect");
        assert_eq!(&buf[..n], &plain[..]);

        let mut bad = want.clone();
        bad[20] ^= 1;
        let len = bad.len();
        assert_eq!(rfc7714_session().unprotect_in_place(&mut bad, len), Err(SrtpError::Authentication));
    }

    #[test]
    fn peers_with_their_own_keys_round_trip_across_a_rollover() {
        let master = MasterKey::random();
        let a = PeerSrtp::new(&master.for_peer(3));
        let b = PeerSrtp::new(&master.for_peer(3));
        let other = PeerSrtp::new(&master.for_peer(4));
        for seq in [65533u16, 65534, 65535, 0, 1, 2] {
            let mut rtp = hex("80600000 00000001 0000abcd");
            rtp[2..4].copy_from_slice(&seq.to_be_bytes());
            rtp.extend_from_slice(b"payload");
            let srtp = a.protect(&rtp);
            assert_eq!(srtp.len(), rtp.len() + TAG_LEN);
            assert_eq!(b.unprotect(&srtp).as_deref(), Some(&rtp[..]), "seq {seq}");
            assert!(other.unprotect(&srtp).is_none());
        }
    }

    #[test]
    fn bad_input_is_refused_not_panicking() {
        let mut s = rfc7714_session();
        for pkt in [
            &[][..],
            &[0x80][..],
            &[0x40; 40][..],
            &[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff][..],
        ] {
            let mut buf = pkt.to_vec();
            let len = buf.len();
            assert!(s.unprotect_in_place(&mut buf, len).is_err());
            assert!(s.protect_in_place(&mut buf, len).is_err());
        }
        assert_eq!(MasterKey::from_hex(&MasterKey::random().to_hex()).map(|k| k.salt.len()), Some(SALT_LEN));
        assert!(MasterKey::from_hex("zz").is_none());
    }
}
