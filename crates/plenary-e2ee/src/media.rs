//! SFrame media encryption (RFC 9605) with keys from the MLS group (§5.2).
//!
//! Each encoded audio or video frame is encrypted by its sender before RTP
//! packetization and decrypted by each receiver after depacketization; the
//! SFU forwards it untouched.
//!
//! # Keys (RFC 9605 §5.2)
//!
//! Per MLS epoch, every member computes
//! `base_key = MLS-Exporter("SFrame 1.0 Base Key", "", 16)` (done by
//! [`crate::group::Participant::epoch_keys`]) and hands it, with the epoch, its
//! own leaf index and the occupied leaf indices, to a [`MediaCrypto`] as
//! [`EpochKeys`]. Each sender's key follows from the KID (§4.4.2), so every
//! sender leaf has its own key:
//!
//! ```text
//! KID = (context << (S + E)) | (leaf_index << E) | (epoch mod 2^E)
//! ```
//!
//! with `E` = [`EPOCH_BITS`] and `S` the smallest number of bits with
//! `max_leaf_index < 2^S` in that epoch. `context` is chosen by the sender to
//! tell its outgoing streams apart (say 0 for the microphone, 1 for the camera,
//! 2 for a screen share); every (context, epoch) has its own key and CTR, so
//! two encoders never share a nonce.
//!
//! Receivers keep the previous epoch's keys for a grace window
//! ([`DEFAULT_GRACE`], configurable) after a new epoch arrives, so frames in
//! flight still decrypt. Replayed frames are refused with a sliding window
//! (RFC 9605 §9.3, [`REPLAY_WINDOW`] frames per KID).
//!
//! # Frame layout
//!
//! ```text
//! | clear prefix | SFrame header (§4.3) | encrypted payload | 16-byte tag |
//! ```
//!
//! The clear prefix is left readable for the SFU and is authenticated as AAD
//! (the SFrame "metadata", §4.4.3): changing one bit of it makes decryption
//! fail. Its length is a function of the codec and the frame, see
//! [`Codec::clear_prefix_len`].
//!
//! Time is passed in as a [`Duration`] since any fixed origin (for example
//! `performance.now()` in a browser); this module reads no clock.

use std::collections::HashMap;
use std::time::Duration;

use sframe::CipherSuite;
use sframe::frame::validation::{ReplayAttackProtectionError, ReplayAttackProtectionStore, Tolerance};
use sframe::frame::{EncryptedFrameView, MediaFrameView, SingleUseCounter};
use sframe::header::SframeHeader;
use sframe::key::{DecryptionKey, EncryptionKey};

/// The SFrame cipher suite used for media: AES_128_GCM_SHA256_128 (0x0004).
pub const CIPHER_SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;

/// Length of the base key and of SFrame keys for [`CIPHER_SUITE`], in bytes.
pub const KEY_LEN: usize = 16;

/// Length of the authentication tag for [`CIPHER_SUITE`], in bytes.
pub const TAG_LEN: usize = 16;

/// `E` of RFC 9605 §5.2: low-order epoch bits carried in the KID.
pub const EPOCH_BITS: u8 = 8;

/// Default grace window during which the previous epoch's keys still decrypt.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Frames a counter may lag behind the newest one of the same KID before it is
/// refused as too old (RFC 9605 §9.3).
pub const REPLAY_WINDOW: usize = 512;

/// Largest `context` value a sender may use.
pub const MAX_CONTEXT: u64 = 0xffff;

/// The exporter label of RFC 9605 §5.2.
pub const EXPORTER_LABEL: &str = "SFrame 1.0 Base Key";

/// Why a frame could not be encrypted or decrypted, or keys not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// No epoch keys installed yet.
    #[error("no media keys yet")]
    NoKeys,
    /// The frame is too short to hold its clear prefix, an SFrame header and a tag.
    #[error("frame too short")]
    Truncated,
    /// The KID names no sender of a known epoch (unknown epoch bits, a leaf
    /// that is not a member, or a previous epoch whose grace window ended).
    #[error("unknown KID {kid:#x}")]
    UnknownKeyId {
        /// KID from the frame header (unauthenticated).
        kid: u64,
    },
    /// The frame's CTR was already seen, or is too far behind, for its KID.
    #[error("replayed or too old frame")]
    Replayed,
    /// Authentication failed: the ciphertext, header or clear prefix was changed,
    /// or the frame was encrypted with another key.
    #[error("frame does not authenticate")]
    Authentication,
    /// The sender's CTR space for this key is used up; wait for the next epoch.
    #[error("frame counter exhausted")]
    CounterExhausted,
    /// The stream context exceeds [`MAX_CONTEXT`].
    #[error("context {0} too large")]
    BadContext(u64),
    /// [`EpochKeys`] bytes are malformed.
    #[error("malformed epoch keys")]
    BadEpochKeys,
    /// The frame to encrypt is too short for its codec (an empty VP8 frame,
    /// or a VP8 key frame under 10 bytes).
    #[error("frame too short for its codec")]
    MalformedFrame,
    /// The SFrame library refused the operation.
    #[error("SFrame failure")]
    Sframe,
}

/// What a receiver does with a frame that [`MediaCrypto::decrypt`] refused,
/// the same way in every client (browser worker through plenary-wasm, native
/// client). See [`MediaCrypto::disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disposition {
    /// A copy of a frame already decrypted (same KID and CTR), or one older
    /// than the replay window (RFC 9605 §9.3): drop it silently. The decoder
    /// got the frame once, so nothing is missing and it is no failure.
    Replay,
    /// The keys for it may still arrive: no keys are installed yet, or its KID
    /// carries epoch bits one or two epochs ahead of the current epoch (the
    /// sender processed a commit before us). Hold it briefly and try again.
    Hold,
    /// It cannot be decrypted (unknown sender, a past epoch, tampered,
    /// truncated): drop it and count it as a failure; the picture needs the
    /// next key frame.
    Fail,
}

/// The media codec of a frame; decides the clear prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Opus audio: fully encrypted.
    Opus,
    /// VP8 video (RFC 6386): the frame tag stays in clear so the SFU can tell
    /// key frames.
    Vp8,
}

impl Codec {
    /// Parses a codec name as used in SDP or `RTCEncodedFrame` metadata:
    /// `"opus"`, `"vp8"`, `"audio/opus"`, `"video/VP8"` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let base = lower.rsplit('/').next().unwrap_or(&lower);
        match base {
            "opus" => Some(Codec::Opus),
            "vp8" => Some(Codec::Vp8),
            _ => None,
        }
    }

    /// The name used by [`Codec::from_name`] (`"opus"`, `"vp8"`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
        }
    }

    /// Number of leading bytes of `frame` left in clear, in bytes, or `None`
    /// if `frame` is too short to be a frame of this codec.
    ///
    /// - Opus: 0 (fully encrypted); any length.
    /// - VP8 (RFC 6386 §9.1): bit 0 of the frame tag is 0 on key frames. Key
    ///   frames keep 10 bytes in clear (3-byte frame tag, start code, width
    ///   and height), delta frames 1 byte, as common practice. `None` for an
    ///   empty frame or a key frame shorter than 10 bytes.
    ///
    /// The rule reads only bytes that stay in clear, so the sender and every
    /// receiver (and the SFU) compute the same length. New codecs (H.264,
    /// VP9, AV1) add a branch here.
    pub fn clear_prefix_len(self, frame: &[u8]) -> Option<usize> {
        let wanted = match self {
            Codec::Opus => 0,
            Codec::Vp8 => match frame.first() {
                Some(tag) if tag & 0x01 == 0 => 10,
                Some(_) => 1,
                None => return None,
            },
        };
        (wanted <= frame.len()).then_some(wanted)
    }
}

/// The media keys of one MLS epoch, as handed from the group to the media
/// path (for a browser: from the page to the media worker).
///
/// `Debug` does not print the base key.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochKeys {
    /// MLS epoch.
    pub epoch: u64,
    /// `MLS-Exporter("SFrame 1.0 Base Key", "", 16)` of that epoch.
    pub base_key: [u8; KEY_LEN],
    /// Own leaf index (the sender index in outgoing KIDs).
    pub own_leaf: u32,
    /// Leaf indices of all members in that epoch, ascending.
    pub members: Vec<u32>,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKeys")
            .field("epoch", &self.epoch)
            .field("own_leaf", &self.own_leaf)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl EpochKeys {
    /// `S` of RFC 9605 §5.2 for this epoch: the smallest number of bits that
    /// holds every member's leaf index.
    pub fn index_bits(&self) -> u8 {
        let max = self.members.iter().copied().chain(std::iter::once(self.own_leaf)).max().unwrap_or(0);
        (u32::BITS - max.leading_zeros()) as u8
    }

    /// KID for `leaf` sending on `context` in this epoch.
    ///
    /// # Errors
    /// [`MediaError::BadContext`] if `context` exceeds [`MAX_CONTEXT`].
    pub fn kid(&self, context: u64, leaf: u32) -> Result<u64, MediaError> {
        if context > MAX_CONTEXT {
            return Err(MediaError::BadContext(context));
        }
        let s = u32::from(self.index_bits());
        let e = u32::from(EPOCH_BITS);
        Ok((context << (s + e)) | (u64::from(leaf) << e) | (self.epoch & ((1 << e) - 1)))
    }

    /// Serializes for transfer to a worker: `epoch u64 | base_key [16] |
    /// own_leaf u32 | count u32 | count × leaf u32`, big-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 4 * self.members.len());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.base_key);
        out.extend_from_slice(&self.own_leaf.to_be_bytes());
        out.extend_from_slice(&(self.members.len() as u32).to_be_bytes());
        for m in &self.members {
            out.extend_from_slice(&m.to_be_bytes());
        }
        out
    }

    /// Parses [`EpochKeys::to_bytes`].
    ///
    /// # Errors
    /// [`MediaError::BadEpochKeys`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MediaError> {
        let bad = || MediaError::BadEpochKeys;
        let fixed = 8 + KEY_LEN + 4 + 4;
        if bytes.len() < fixed {
            return Err(bad());
        }
        let u32_at = |i: usize| -> Result<u32, MediaError> {
            Ok(u32::from_be_bytes(bytes.get(i..i + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?))
        };
        let epoch = u64::from_be_bytes(bytes[0..8].try_into().map_err(|_| bad())?);
        let base_key: [u8; KEY_LEN] = bytes[8..8 + KEY_LEN].try_into().map_err(|_| bad())?;
        let own_leaf = u32_at(8 + KEY_LEN)?;
        let count = u32_at(8 + KEY_LEN + 4)? as usize;
        if bytes.len() != fixed + 4 * count {
            return Err(bad());
        }
        let members = (0..count).map(|i| u32_at(fixed + 4 * i)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { epoch, base_key, own_leaf, members })
    }
}

/// A parsed SFrame header (RFC 9605 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Key ID.
    pub kid: u64,
    /// Counter.
    pub ctr: u64,
    /// Encoded length, in bytes (1..=17).
    pub len: usize,
}

/// Parses the SFrame header at the start of `bytes` (RFC 9605 §4.3).
///
/// # Errors
/// [`MediaError::Truncated`] if `bytes` ends inside the header.
pub fn parse_header(bytes: &[u8]) -> Result<Header, MediaError> {
    let h = SframeHeader::deserialize(bytes).map_err(|_| MediaError::Truncated)?;
    Ok(Header { kid: h.key_id(), ctr: h.counter(), len: h.len() })
}

/// Encodes an SFrame header (RFC 9605 §4.3), shortest form.
pub fn encode_header(kid: u64, ctr: u64) -> Vec<u8> {
    let h = SframeHeader::new(kid, ctr);
    let mut out = vec![0u8; h.len()];
    // The buffer has exactly the header's length.
    let _ = h.serialize(&mut out);
    out
}

/// Encrypts one frame per RFC 9605 §4.4.3 with the key derived from
/// `base_key` and `kid` (§4.4.2). Returns `metadata || header || ciphertext || tag`;
/// `metadata` is authenticated, not encrypted.
///
/// # Errors
/// [`MediaError::Sframe`] if the library refuses.
pub fn seal(
    cipher_suite: CipherSuite,
    base_key: &[u8],
    kid: u64,
    ctr: u64,
    metadata: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, MediaError> {
    let key = EncryptionKey::derive_from(cipher_suite, kid, base_key).map_err(|_| MediaError::Sframe)?;
    seal_with(&key, ctr, metadata, plaintext)
}

fn seal_with(key: &EncryptionKey, ctr: u64, metadata: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MediaError> {
    let mut counter = SingleUseCounter::new(ctr);
    let frame =
        MediaFrameView::try_with_meta_data(&mut counter, plaintext, metadata).map_err(|_| MediaError::Sframe)?;
    let mut out = Vec::with_capacity(metadata.len() + 17 + plaintext.len() + TAG_LEN);
    frame.encrypt_into(key, &mut out).map_err(|_| MediaError::Sframe)?;
    Ok(out)
}

/// Decrypts one SFrame ciphertext (`header || ciphertext || tag`) per RFC 9605
/// §4.4.4 with the key derived from `base_key` and the header's KID,
/// authenticating `metadata`. Returns the header and the plaintext.
///
/// # Errors
/// [`MediaError::Truncated`], [`MediaError::Authentication`].
pub fn open(
    cipher_suite: CipherSuite,
    base_key: &[u8],
    metadata: &[u8],
    sframe_ciphertext: &[u8],
) -> Result<(Header, Vec<u8>), MediaError> {
    let header = parse_header(sframe_ciphertext)?;
    let key = DecryptionKey::derive_from(cipher_suite, header.kid, base_key).map_err(|_| MediaError::Sframe)?;
    let view =
        EncryptedFrameView::try_with_meta_data(sframe_ciphertext, metadata).map_err(|_| MediaError::Truncated)?;
    let mut out = Vec::new();
    let plain = view.decrypt_into(&key, &mut out).map_err(|_| MediaError::Authentication)?;
    Ok((header, plain.payload().to_vec()))
}

/// A decrypted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptedFrame {
    /// Leaf index of the sender, authenticated by the key.
    pub sender_leaf: u32,
    /// Sender's stream context from the KID.
    pub context: u64,
    /// MLS epoch the frame was encrypted in.
    pub epoch: u64,
    /// The original frame: clear prefix followed by the decrypted payload.
    pub frame: Vec<u8>,
}

struct EpochSlot {
    keys: EpochKeys,
    index_bits: u8,
    /// Per outgoing context: the key and the next CTR.
    senders: HashMap<u64, (EncryptionKey, u64)>,
    /// Derived receive keys, by KID.
    receivers: HashMap<u64, DecryptionKey>,
    replay: ReplayAttackProtectionStore,
}

impl EpochSlot {
    fn new(keys: EpochKeys) -> Self {
        let index_bits = keys.index_bits();
        Self {
            keys,
            index_bits,
            senders: HashMap::new(),
            receivers: HashMap::new(),
            replay: ReplayAttackProtectionStore::new(Tolerance::new(REPLAY_WINDOW)),
        }
    }

    fn epoch_bits(&self) -> u64 {
        self.keys.epoch & ((1 << EPOCH_BITS) - 1)
    }
}

/// SFrame state of one participant: the sender keys for its own streams and the
/// receive keys of everyone, for the current and (during the grace window) the
/// previous epoch.
pub struct MediaCrypto {
    grace: Duration,
    current: Option<EpochSlot>,
    previous: Option<(EpochSlot, Duration)>,
}

impl std::fmt::Debug for MediaCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCrypto")
            .field("grace", &self.grace)
            .field("epoch", &self.current.as_ref().map(|s| s.keys.epoch))
            .finish_non_exhaustive()
    }
}

impl Default for MediaCrypto {
    fn default() -> Self {
        Self::new(DEFAULT_GRACE)
    }
}

impl MediaCrypto {
    /// Creates an empty state; `grace` is how long the previous epoch's keys
    /// keep decrypting after [`MediaCrypto::set_epoch_keys`].
    pub fn new(grace: Duration) -> Self {
        Self { grace, current: None, previous: None }
    }

    /// The current epoch, if keys were installed.
    pub fn epoch(&self) -> Option<u64> {
        self.current.as_ref().map(|s| s.keys.epoch)
    }

    /// Installs the keys of a new epoch at time `now`. The former current
    /// epoch becomes the previous one and keeps decrypting until
    /// `now + grace`. Installing the same epoch again is a no-op.
    pub fn set_epoch_keys(&mut self, keys: EpochKeys, now: Duration) {
        if let Some(cur) = &self.current
            && cur.keys.epoch == keys.epoch
            && cur.keys.base_key == keys.base_key
        {
            return;
        }
        let new = EpochSlot::new(keys);
        if let Some(old) = self.current.take() {
            // RFC 9605 §5.2: drop an old epoch whose low bits collide.
            if old.epoch_bits() != new.epoch_bits() {
                self.previous = Some((old, now + self.grace));
            } else {
                self.previous = None;
            }
        }
        self.current = Some(new);
    }

    /// What to do with a frame that [`MediaCrypto::decrypt`] refused with
    /// `error`, given the keys installed now: see [`Disposition`]. A KID is
    /// "ahead" when its epoch bits (the low [`EPOCH_BITS`] of the epoch) are
    /// one or two past the current epoch's, modulo 2^[`EPOCH_BITS`].
    pub fn disposition(&self, error: &MediaError) -> Disposition {
        match error {
            MediaError::Replayed => Disposition::Replay,
            MediaError::NoKeys => Disposition::Hold,
            MediaError::UnknownKeyId { kid } => {
                let Some(current) = self.epoch() else { return Disposition::Hold };
                let mask = (1u64 << EPOCH_BITS) - 1;
                match (kid & mask).wrapping_sub(current & mask) & mask {
                    1 | 2 => Disposition::Hold,
                    _ => Disposition::Fail,
                }
            }
            _ => Disposition::Fail,
        }
    }

    /// Encrypts one encoded frame of stream `context` (0..=[`MAX_CONTEXT`])
    /// with the current epoch's key. Returns the SFrame frame (see the module
    /// docs for the layout); its length is the input length plus header
    /// (1 to 17 bytes) plus [`TAG_LEN`].
    ///
    /// # Errors
    /// [`MediaError::MalformedFrame`], [`MediaError::NoKeys`],
    /// [`MediaError::BadContext`], [`MediaError::CounterExhausted`].
    pub fn encrypt(&mut self, context: u64, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, MediaError> {
        let prefix = codec.clear_prefix_len(frame).ok_or(MediaError::MalformedFrame)?;
        let slot = self.current.as_mut().ok_or(MediaError::NoKeys)?;
        if context > MAX_CONTEXT {
            return Err(MediaError::BadContext(context));
        }
        if !slot.senders.contains_key(&context) {
            let kid = slot.keys.kid(context, slot.keys.own_leaf)?;
            let key =
                EncryptionKey::derive_from(CIPHER_SUITE, kid, slot.keys.base_key).map_err(|_| MediaError::Sframe)?;
            slot.senders.insert(context, (key, 0));
        }
        let (key, next) = slot.senders.get_mut(&context).ok_or(MediaError::NoKeys)?;
        let ctr = *next;
        *next = next.checked_add(1).ok_or(MediaError::CounterExhausted)?;
        let (clear, payload) = frame.split_at(prefix);
        seal_with(key, ctr, clear, payload)
    }

    /// Decrypts one SFrame frame of `codec` at time `now`.
    ///
    /// On any error the state is unchanged: a refused frame is not recorded
    /// for replay protection and installs no key.
    ///
    /// # Errors
    /// [`MediaError::Truncated`], [`MediaError::UnknownKeyId`] (also for the
    /// previous epoch after its grace window), [`MediaError::Replayed`],
    /// [`MediaError::Authentication`].
    pub fn decrypt(&mut self, codec: Codec, frame: &[u8], now: Duration) -> Result<DecryptedFrame, MediaError> {
        let prefix = codec.clear_prefix_len(frame).ok_or(MediaError::Truncated)?;
        let (clear, sframe_part) = frame.split_at(prefix);
        let header = parse_header(sframe_part)?;
        if sframe_part.len() < header.len + TAG_LEN {
            return Err(MediaError::Truncated);
        }
        let kid = header.kid;
        let epoch_bits = kid & ((1 << EPOCH_BITS) - 1);
        let unknown = MediaError::UnknownKeyId { kid };
        let slot = match (&mut self.current, &mut self.previous) {
            (Some(cur), _) if cur.epoch_bits() == epoch_bits => cur,
            (_, Some((prev, until))) if prev.epoch_bits() == epoch_bits && now <= *until => prev,
            _ => return Err(unknown),
        };
        let s = u32::from(slot.index_bits);
        let rest = kid >> EPOCH_BITS;
        let leaf = (rest & ((1u64 << s) - 1)) as u32;
        let context = rest >> s;
        if context > MAX_CONTEXT || slot.keys.members.binary_search(&leaf).is_err() {
            return Err(unknown);
        }
        let derived = if slot.receivers.contains_key(&kid) {
            None
        } else {
            Some(DecryptionKey::derive_from(CIPHER_SUITE, kid, slot.keys.base_key).map_err(|_| MediaError::Sframe)?)
        };
        let key = match (&derived, slot.receivers.get(&kid)) {
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => return Err(MediaError::Sframe),
        };
        let view = EncryptedFrameView::try_with_meta_data(sframe_part, clear).map_err(|_| MediaError::Truncated)?;
        let mut out = Vec::with_capacity(frame.len());
        let len = match view.validated_decrypt_into(key, &mut out, &mut slot.replay) {
            Ok(plain) => plain.meta_data().len() + plain.payload().len(),
            Err(e) if e.source_as::<ReplayAttackProtectionError>().is_some() => {
                return Err(MediaError::Replayed);
            }
            Err(_) => return Err(MediaError::Authentication),
        };
        out.truncate(len);
        if let Some(k) = derived {
            // Authenticated: the KID is genuine, keep its key.
            slot.receivers.insert(kid, k);
        }
        Ok(DecryptedFrame { sender_leaf: leaf, context, epoch: slot.keys.epoch, frame: out })
    }
}
