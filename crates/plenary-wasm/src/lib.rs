//! The browser face of [`plenary_e2ee`], through wasm-bindgen.
//!
//! Two classes, for two JavaScript contexts:
//!
//! - [`Membership`] for the page: the membership state machine the native
//!   client runs too ([`plenary_e2ee::membership`]): server messages and
//!   the time in, actions out (messages to send, epoch keys to post to the
//!   media worker, names, chat, rejoins).
//! - [`FrameCrypto`] for the media worker (`RTCRtpScriptTransform`): SFrame
//!   `encrypt_frame` / `decrypt_frame` of encoded frames, and `open_frame`,
//!   which also says what to do with a refused one.
//!
//! Bytes cross as `Uint8Array`; errors are thrown as `Error` whose message
//! names the reason. Times are milliseconds from any fixed origin (for
//! example `performance.now()`).
//!
//! Built by `scripts/build-wasm.sh` into `web/wasm/` (`plenary_e2ee.js` +
//! `plenary_e2ee_bg.wasm`, ES module, `--target web`).

use std::time::Duration;

use js_sys::{Array, Object, Reflect, Uint8Array};
use plenary_e2ee::app::{CONTINUITY_LEN, ContinuityToken};
use plenary_e2ee::media::{Codec, Disposition, EpochKeys, MediaCrypto, MediaError};
use plenary_e2ee::membership::{self, Action, Input, Outgoing, RejoinReason};
use plenary_e2ee::secret::MeetingSecret;
use wasm_bindgen::prelude::*;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value.into());
}

fn bytes(v: &[u8]) -> Uint8Array {
    Uint8Array::from(v)
}

fn ms(now_ms: f64) -> Duration {
    if now_ms.is_finite() && now_ms > 0.0 { Duration::from_secs_f64(now_ms / 1000.0) } else { Duration::ZERO }
}

/// The room tag to send in `join` as `room_tag`: 22 base64url characters
/// derived from the meeting secret (HKDF-SHA256, info "plenary room tag" ||
/// room; see `plenary_e2ee::secret`). The server keeps meetings with the
/// same room name but different tags apart. Throws on a bad secret.
///
/// ```js
/// sig.send({ type: 'join', room, profile: '{}', room_tag: roomTag(room, secret) });
/// ```
#[wasm_bindgen(js_name = roomTag)]
pub fn room_tag(room: &str, secret: &str) -> Result<String, JsError> {
    Ok(MeetingSecret::from_base64url(secret).map_err(err)?.room_tag(room))
}

fn action_to_js(action: Action) -> JsValue {
    let o = Object::new();
    match action {
        Action::Send(Outgoing::Mls { envelope, welcome }) => {
            set(&o, "type", "mls");
            set(&o, "envelope", bytes(&envelope));
            set(&o, "welcome", welcome.as_deref().map_or(JsValue::NULL, |w| bytes(w).into()));
        }
        Action::Send(Outgoing::GroupMember { leaf }) => {
            set(&o, "type", "group_member");
            set(&o, "leaf", leaf);
        }
        Action::NewEpoch { epoch, keys, reset, security_code } => {
            set(&o, "type", "epoch");
            set(&o, "epoch", epoch as f64);
            set(&o, "keys", bytes(&keys.to_bytes()));
            set(&o, "reset", reset);
            set(&o, "securityCode", security_code.to_string());
        }
        Action::Profile { leaf, participant, display_name } => {
            set(&o, "type", "profile");
            set(&o, "leaf", leaf);
            set(&o, "participant", participant.map_or(JsValue::NULL, |p| JsValue::from(p as f64)));
            set(&o, "displayName", display_name);
        }
        Action::HandRaise { leaf, raised } => {
            set(&o, "type", "hand");
            set(&o, "leaf", leaf);
            set(&o, "raised", raised);
        }
        Action::Chat { leaf, text } => {
            set(&o, "type", "chat");
            set(&o, "leaf", leaf);
            set(&o, "text", text);
        }
        Action::Rejoin(reason) => {
            set(&o, "type", "rejoin");
            let reason = match reason {
                RejoinReason::MissedCommit { .. } => "missedCommit",
                RejoinReason::LeftBehind { .. } => "leftBehind",
                RejoinReason::Removed => "removed",
                _ => "other",
            };
            set(&o, "reason", reason);
        }
        Action::Failed(e) => {
            set(&o, "type", "failed");
            set(&o, "error", e.to_string());
        }
        _ => set(&o, "type", "other"),
    }
    o.into()
}

fn id(v: f64) -> u64 {
    if v.is_finite() && v >= 0.0 { v as u64 } else { u64::MAX }
}

/// One connection's membership in the meeting's MLS group, for the page:
/// the state machine of [`plenary_e2ee::membership`]. Every method takes
/// the time in ms (`performance.now()`) and returns an array of actions to
/// carry out in order, each `{type, ...}`:
///
/// - `"mls"` {envelope: Uint8Array, welcome: Uint8Array|null}: send
///   `{type:"mls", envelope, welcome}` (base64url) to the server;
/// - `"group_member"` {leaf}: send `{type:"group_member", leaf}`;
/// - `"epoch"` {epoch, keys: Uint8Array, reset, securityCode}: post `keys`
///   to the media worker (`reset`: first keys of a new identity), show the code;
/// - `"profile"` {leaf, participant, displayName}, `"hand"` {leaf, raised},
///   `"chat"` {leaf, text}: what members sent;
/// - `"rejoin"` {reason}: the group state was lost, a fresh identity asks
///   to be added again;
/// - `"failed"` {error}: an operation failed (count it; never content).
///
/// Call `timeout(now)` at `nextDeadline` (ms, or `undefined`).
///
/// ```js
/// const m = new Membership(room, secret, name, selfId);
/// for (const a of m.start(othersPresent, performance.now())) carryOut(a);
/// ```
#[wasm_bindgen]
pub struct Membership {
    inner: membership::Membership,
}

#[wasm_bindgen]
impl Membership {
    /// The membership of participant `self_id` (or `null` if not known yet)
    /// in `room`, with the secret from the URL fragment and our display
    /// name (sent only encrypted). Throws on a bad secret.
    #[wasm_bindgen(constructor)]
    pub fn new(room: &str, secret: &str, display_name: &str, self_id: Option<f64>) -> Result<Membership, JsError> {
        let secret = MeetingSecret::from_base64url(secret).map_err(err)?;
        let self_id = self_id.map_or(u64::MAX, id);
        Ok(Membership { inner: membership::Membership::new(room, secret, display_name, self_id).map_err(err)? })
    }

    /// Sends `token` (16 random bytes, the same for every connection of
    /// this meeting session) with our name from now on, so that the others
    /// know us again after a reconnection (`plenary_e2ee::app`). Throws on
    /// another length.
    #[wasm_bindgen(js_name = setContinuity)]
    pub fn set_continuity(&mut self, token: &[u8]) -> Result<(), JsError> {
        let token = ContinuityToken::try_from(token)
            .map_err(|_| JsError::new(&format!("a continuity token is {CONTINUITY_LEN} bytes")))?;
        self.inner.set_continuity(token);
        Ok(())
    }

    fn handle(&mut self, input: Input<'_>, now_ms: f64) -> Array {
        self.inner.handle(input, ms(now_ms)).into_iter().map(action_to_js).collect()
    }

    /// After `joined`: ask to be added (others present) or wait for `create_group`.
    pub fn start(&mut self, others_present: bool, now_ms: f64) -> Array {
        self.handle(Input::Start { others_present }, now_ms)
    }

    /// `create_group` from the server.
    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(&mut self, now_ms: f64) -> Array {
        self.handle(Input::CreateGroup, now_ms)
    }

    /// `mls` from the server: the envelope (decoded bytes) from participant `from`.
    pub fn mls(&mut self, from: f64, envelope: &[u8], now_ms: f64) -> Array {
        self.handle(Input::Mls { from: id(from), envelope }, now_ms)
    }

    /// `commit_accepted` from the server.
    #[wasm_bindgen(js_name = commitAccepted)]
    pub fn commit_accepted(&mut self, now_ms: f64) -> Array {
        self.handle(Input::CommitAccepted, now_ms)
    }

    /// `commit_rejected` from the server, with its `current_epoch`.
    #[wasm_bindgen(js_name = commitRejected)]
    pub fn commit_rejected(&mut self, current_epoch: f64, now_ms: f64) -> Array {
        self.handle(Input::CommitRejected { current_epoch: id(current_epoch) }, now_ms)
    }

    /// Participant `id` is a member at `leaf` (from `joined`,
    /// `participant_joined`, `participant_updated`).
    #[wasm_bindgen(js_name = participantLeaf)]
    pub fn participant_leaf(&mut self, participant: f64, leaf: u32, now_ms: f64) -> Array {
        self.handle(Input::ParticipantLeaf { id: id(participant), leaf }, now_ms)
    }

    /// `participant_left`.
    #[wasm_bindgen(js_name = participantLeft)]
    pub fn participant_left(&mut self, participant: f64, now_ms: f64) -> Array {
        self.handle(Input::ParticipantLeft { id: id(participant) }, now_ms)
    }

    /// Runs the timers due by `now_ms`.
    pub fn timeout(&mut self, now_ms: f64) -> Array {
        self.handle(Input::Timeout, now_ms)
    }

    /// Encrypts a chat line (an `"mls"` action, or `"failed"`).
    pub fn chat(&mut self, text: &str, now_ms: f64) -> Array {
        self.handle(Input::Chat { text }, now_ms)
    }

    /// Raises or lowers our hand (sent now if a member, and with our profile later).
    #[wasm_bindgen(js_name = raiseHand)]
    pub fn raise_hand(&mut self, raised: bool, now_ms: f64) -> Array {
        self.handle(Input::RaiseHand { raised }, now_ms)
    }

    /// When to call `timeout`, in ms, or `undefined`.
    #[wasm_bindgen(getter, js_name = nextDeadline)]
    pub fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline().map(|d| d.as_secs_f64() * 1000.0)
    }

    /// Whether we are a member of the group.
    #[wasm_bindgen(getter, js_name = isMember)]
    pub fn is_member(&self) -> bool {
        self.inner.participant().is_member()
    }

    /// Current epoch, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> Option<f64> {
        self.inner.participant().epoch().map(|e| e as f64)
    }

    /// Own leaf index, or `undefined`.
    #[wasm_bindgen(getter, js_name = ownLeaf)]
    pub fn own_leaf(&self) -> Option<u32> {
        self.inner.participant().own_leaf()
    }

    /// Times the group state was lost and we asked to be added again.
    #[wasm_bindgen(getter)]
    pub fn rejoins(&self) -> f64 {
        self.inner.rejoins() as f64
    }

    /// Whether our hand is raised.
    #[wasm_bindgen(getter, js_name = handRaised)]
    pub fn hand_raised(&self) -> bool {
        self.inner.hand_raised()
    }

    /// Everyone in the group: array of `{leaf, credentialId, displayName:
    /// string|null, continuity: string|null (the token, lowercase hex),
    /// handRaised, isSelf}` ordered by leaf index.
    pub fn roster(&self) -> Result<Array, JsError> {
        let roster = self.inner.participant().roster().map_err(err)?;
        Ok(roster
            .into_iter()
            .map(|r| {
                let o = Object::new();
                set(&o, "leaf", r.leaf);
                set(&o, "credentialId", r.credential_id.to_string());
                set(&o, "displayName", r.display_name.map_or(JsValue::NULL, JsValue::from));
                let hex = |t: ContinuityToken| t.iter().map(|b| format!("{b:02x}")).collect::<String>();
                set(&o, "continuity", r.continuity.map_or(JsValue::NULL, |t| JsValue::from(hex(t))));
                set(&o, "handRaised", r.hand_raised);
                set(&o, "isSelf", r.is_self);
                JsValue::from(o)
            })
            .collect())
    }
}

/// SFrame state for the media worker.
///
/// ```js
/// const fc = new FrameCrypto(2000);
/// fc.setEpochKeys(keysFromPage, performance.now());
/// const out = fc.encryptFrame("vp8", frameBytes);
/// const {senderLeaf, data} = fc.decryptFrame("vp8", received, performance.now());
/// ```
#[wasm_bindgen]
pub struct FrameCrypto {
    inner: MediaCrypto,
}

impl Default for FrameCrypto {
    fn default() -> Self {
        Self::new(None)
    }
}

#[wasm_bindgen]
impl FrameCrypto {
    /// `grace_ms`: how long the previous epoch's keys keep decrypting after new
    /// ones arrive, in ms (default 2000).
    #[wasm_bindgen(constructor)]
    pub fn new(grace_ms: Option<f64>) -> FrameCrypto {
        FrameCrypto { inner: MediaCrypto::new(grace_ms.map_or(plenary_e2ee::media::DEFAULT_GRACE, ms)) }
    }

    /// Installs the keys of an `"epoch"` action of [`Membership`] at time `now_ms`.
    #[wasm_bindgen(js_name = setEpochKeys)]
    pub fn set_epoch_keys(&mut self, keys: &[u8], now_ms: f64) -> Result<(), JsError> {
        let keys = EpochKeys::from_bytes(keys).map_err(err)?;
        self.inner.set_epoch_keys(keys, ms(now_ms));
        Ok(())
    }

    /// Current epoch, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> Option<f64> {
        self.inner.epoch().map(|e| e as f64)
    }

    /// Encrypts one encoded frame. `codec`: `"opus"`, `"vp8"` (or a MIME type
    /// such as `"video/VP8"`). `context` tells our streams apart (default:
    /// 0 for audio, 1 for video; use another value, e.g. 2, for a second
    /// stream of the same codec such as a screen share). Returns the SFrame
    /// frame: the codec's clear prefix, the SFrame header, the ciphertext and
    /// a 16-byte tag.
    #[wasm_bindgen(js_name = encryptFrame)]
    pub fn encrypt_frame(&mut self, codec: &str, frame: &[u8], context: Option<u32>) -> Result<Uint8Array, JsError> {
        let codec = parse_codec(codec)?;
        let context = context.unwrap_or(match codec {
            Codec::Opus => 0,
            _ => 1,
        });
        Ok(bytes(&self.inner.encrypt(u64::from(context), codec, frame).map_err(err)?))
    }

    /// Decrypts one SFrame frame of `codec` at time `now_ms`. Returns
    /// `{senderLeaf, context, epoch, data: Uint8Array}`; throws on an unknown
    /// KID, a replay or a failed authentication.
    #[wasm_bindgen(js_name = decryptFrame)]
    pub fn decrypt_frame(&mut self, codec: &str, frame: &[u8], now_ms: f64) -> Result<JsValue, JsError> {
        let codec = parse_codec(codec)?;
        let d = self.inner.decrypt(codec, frame, ms(now_ms)).map_err(err)?;
        Ok(decrypted(&d))
    }

    /// Decrypts one SFrame frame of `codec` at time `now_ms` for a receiver:
    /// `{senderLeaf, context, epoch, data: Uint8Array}` as
    /// [`FrameCrypto::decrypt_frame`], or, for a frame it refuses, what to do
    /// with it ([`MediaCrypto::disposition`], the same rule as the native
    /// client): `{refused: "replay" | "hold" | "fail", reason}`. `replay`: a
    /// copy of a frame already decrypted (RFC 9605 §9.3), drop it silently;
    /// `hold`: its keys may still come (none yet, or its epoch is one or two
    /// ahead), try again when they do; `fail`: drop it, the decoder needs a
    /// key frame. `reason` for counters: `"noKeys"`, `"unknownKey"`,
    /// `"replayed"`, `"authentication"` or `"other"`. Throws only for an
    /// unsupported codec.
    #[wasm_bindgen(js_name = openFrame)]
    pub fn open_frame(&mut self, codec: &str, frame: &[u8], now_ms: f64) -> Result<JsValue, JsError> {
        let codec = parse_codec(codec)?;
        let e = match self.inner.decrypt(codec, frame, ms(now_ms)) {
            Ok(d) => return Ok(decrypted(&d)),
            Err(e) => e,
        };
        let refused = match self.inner.disposition(&e) {
            Disposition::Replay => "replay",
            Disposition::Hold => "hold",
            _ => "fail",
        };
        let reason = match e {
            _ if self.inner.epoch().is_none() => "noKeys",
            MediaError::UnknownKeyId { .. } => "unknownKey",
            MediaError::Replayed => "replayed",
            MediaError::Authentication => "authentication",
            _ => "other",
        };
        let o = Object::new();
        set(&o, "refused", refused);
        set(&o, "reason", reason);
        Ok(o.into())
    }
}

fn decrypted(d: &plenary_e2ee::media::DecryptedFrame) -> JsValue {
    let o = Object::new();
    set(&o, "senderLeaf", d.sender_leaf);
    set(&o, "context", d.context as f64);
    set(&o, "epoch", d.epoch as f64);
    set(&o, "data", bytes(&d.frame));
    o.into()
}

fn parse_codec(name: &str) -> Result<Codec, JsError> {
    Codec::from_name(name).ok_or_else(|| JsError::new(&format!("unsupported codec {name}")))
}
