// The media worker: SFrame encryption of every encoded frame we send and
// decryption of every frame we receive (RFC 9605, through plenary-wasm's
// FrameCrypto), attached with RTCRtpScriptTransform (or, where that is
// missing, with the encoded streams the page transfers here).
//
// Messages from the page:
//   {type: 'keys', keys: Uint8Array, reset: boolean}  epoch keys (secret);
//       `reset` starts over with a fresh FrameCrypto (a new group)
//   {type: 'streams', readable, writable, options}    createEncodedStreams fallback
// Messages to the page, twice a second:
//   {type: 'stats', epoch, sent, sendDropped, recv: {id: {kind, decrypted, failed, failedBy, replayed, held, leaf, waiting, seenAt, firstAt}}}
//   (`seenAt`, `firstAt`: when the first frame arrived, and decrypted, in ms
//   since the Unix epoch as performance.timeOrigin + performance.now(), or null;
//   `failedBy`: frames dropped as undecryptable, by reason {noKeys,
//   unknownKey, authentication, other}; `replayed`: copies of frames already
//   decrypted (same KID and CTR), dropped by replay protection (RFC 9605
//   §9.3) but not failures: the decoder got the frame once. Chromium hands
//   the transform a frame a second time when a retransmitted copy of its
//   packets (RTX, RFC 4588: str0m's bandwidth-probe padding resends recent
//   packets, and answers to NACKs) arrives after the frame was assembled but
//   before it was decoded; its duplicate check comes after the transform;
//   `held`: frames that waited for their epoch's keys)
// No key, frame or plaintext is ever logged or posted back.
//
// Key changes race with media: a sender installs the keys of a new epoch when
// it processes the commit, and its first frames under them can reach a
// receiver that has not processed that commit yet (or, for a joiner, has not
// processed its Welcome). Such frames (no keys yet, or a KID whose epoch bits
// are one or two epochs ahead of ours) are held, in order, for up to HOLD_MS
// and decrypted as soon as the keys arrive, instead of being dropped (which
// would freeze the picture until the next key frame). Frames of the previous
// epoch still decrypt for GRACE_MS after the new keys (plenary-e2ee).

import init, { FrameCrypto } from './wasm/plenary_e2ee.js';

/** How long the previous epoch's keys keep decrypting, ms. */
const GRACE_MS = 2000;
/** A receiver that decrypted nothing for this long while failing is waiting for keys, ms. */
const WAITING_AFTER_MS = 1000;
/** At most one key frame request per receiver in this interval, ms. */
const KEYFRAME_REQUEST_MS = 1000;
/** How long a frame may wait for the keys of its epoch, ms. */
const HOLD_MS = 1500;
/** At most this many frames wait per receiver (about 3 s of video at 30 fps). */
const HOLD_MAX = 100;

const ready = init();
/** @type {FrameCrypto|null} */
let crypto = null;
let sent = 0;
let sendDropped = 0;
/** Receivers by id: counters and their transformer (for key frame requests). */
const recv = new Map();
/** Sending transformers (for key frame generation on new keys). */
const senders = new Set();

function codecOf(kind) {
  return kind === 'audio' ? 'opus' : 'vp8';
}

function hasKeys() {
  return crypto !== null && crypto.epoch !== undefined;
}

/** The exact ArrayBuffer of a Uint8Array (copied if it is a view). */
function bufferOf(u8) {
  return u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8.buffer : u8.slice().buffer;
}

function senderTransform(kind) {
  const codec = codecOf(kind);
  return new TransformStream({
    transform(frame, ctl) {
      // Nothing leaves in clear: without keys, frames are dropped.
      if (!hasKeys()) {
        sendDropped++;
        return;
      }
      try {
        frame.data = bufferOf(crypto.encryptFrame(codec, new Uint8Array(frame.data)));
        sent++;
        ctl.enqueue(frame);
      } catch {
        sendDropped++;
      }
    },
  });
}

/**
 * Tries to decrypt one frame: null once it went to the decoder, else why not
 * and what to do with it, `{refused, reason}` as plenary-wasm's openFrame
 * says (the rule plenary-e2ee's MediaCrypto::disposition shares with the
 * native client): `refused` is 'replay' (drop silently), 'hold' (its keys may
 * still come) or 'fail'.
 */
function tryFrame(r, frame, ctl, now) {
  if (!hasKeys()) return { refused: 'hold', reason: 'noKeys' };
  let d;
  try {
    d = crypto.openFrame(r.codec, new Uint8Array(frame.data), now);
  } catch {
    return { refused: 'fail', reason: 'other' };
  }
  if (d.refused) return d;
  frame.data = bufferOf(d.data);
  r.firstAt ??= performance.timeOrigin + now;
  r.decrypted++;
  r.leaf = d.senderLeaf;
  r.lastOk = now;
  if (r.failing && r.kind === 'video') requestKeyFrame(r, now);
  r.failing = false;
  try {
    ctl.enqueue(frame);
  } catch {
    // The receiver went away while the frame was held.
  }
  return null;
}

/** A frame is not decryptable (no keys for its KID, tampered) or a replay: never passed to the decoder. */
function dropFrame(r, failure, now) {
  if (failure.refused === 'replay') {
    // A copy of a frame the decoder already has: nothing is missing.
    r.replayed++;
    return;
  }
  r.failed++;
  r.failedBy[failure.reason] = (r.failedBy[failure.reason] ?? 0) + 1;
  r.lastFail = now;
  r.failing = true;
}

/**
 * Decrypts the held frames of `r` in order, as far as the keys now allow;
 * frames held longer than HOLD_MS (or all of them, with `expire`) are dropped.
 */
function releaseHeld(r, now, expire = false) {
  while (r.held.length) {
    const { frame, ctl, at } = r.held[0];
    const failure = tryFrame(r, frame, ctl, now);
    if (failure && !expire && now - at < HOLD_MS && failure.refused === 'hold') break;
    r.held.shift();
    if (failure) dropFrame(r, failure, now);
  }
  clearTimeout(r.holdTimer);
  r.holdTimer = 0;
  if (r.held.length) {
    r.holdTimer = setTimeout(() => releaseHeld(r, performance.now()), Math.max(0, r.held[0].at + HOLD_MS - now));
  }
}

function receiverTransform(id, kind, transformer) {
  const r = {
    kind, codec: codecOf(kind), decrypted: 0, failed: 0, failedBy: {}, replayed: 0, heldTotal: 0, held: [], holdTimer: 0,
    leaf: null, lastOk: 0, lastFail: 0, failing: false, lastKeyRequest: 0, seenAt: null, firstAt: null, transformer,
  };
  recv.set(id, r);
  return new TransformStream({
    transform(frame, ctl) {
      const now = performance.now();
      r.seenAt ??= performance.timeOrigin + now;
      // Frames stay in order: behind held ones, a frame waits too.
      const failure = r.held.length ? { refused: 'queued' } : tryFrame(r, frame, ctl, now);
      if (!failure) return;
      if ((failure.refused === 'queued' || failure.refused === 'hold') && r.held.length < HOLD_MAX) {
        r.held.push({ frame, ctl, at: now });
        r.heldTotal++;
        if (r.held.length === 1) releaseHeld(r, now);
        return;
      }
      if (failure.refused === 'queued') {
        // Too many waiting: give up on the oldest, then this one goes behind the rest.
        releaseHeld(r, now, true);
        const f = tryFrame(r, frame, ctl, now);
        if (f) dropFrame(r, f, now);
        return;
      }
      dropFrame(r, failure, now);
    },
  });
}

/** After frames were dropped, the decoder needs a key frame to go on. */
function requestKeyFrame(r, now) {
  if (now - r.lastKeyRequest < KEYFRAME_REQUEST_MS) return;
  r.lastKeyRequest = now;
  try {
    r.transformer?.sendKeyFrameRequest?.()?.catch?.(() => {});
  } catch {
    // Not supported here; the decoder asks by itself.
  }
}

function attach({ readable, writable, options }, transformer = null) {
  const { role, kind, id } = options || {};
  const ts = role === 'send' ? senderTransform(kind) : receiverTransform(id, kind, transformer);
  if (role === 'send' && transformer) senders.add(transformer);
  ready
    .then(() => readable.pipeThrough(ts).pipeTo(writable))
    .catch(() => {})
    .finally(() => {
      if (role === 'send') senders.delete(transformer);
      else if (recv.get(id)?.transformer === transformer) {
        clearTimeout(recv.get(id).holdTimer);
        recv.delete(id);
      }
    });
}

self.addEventListener('rtctransform', (ev) => attach(ev.transformer, ev.transformer));

self.addEventListener('message', async (ev) => {
  const msg = ev.data;
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'streams') {
    attach(msg, null);
  } else if (msg.type === 'keys') {
    await ready;
    if (msg.reset || !crypto) crypto = new FrameCrypto(GRACE_MS);
    try {
      crypto.setEpochKeys(msg.keys, performance.now());
    } catch {
      return;
    }
    // Held frames of this epoch decrypt now; receivers that lack a picture
    // may be able to decode now.
    const now = performance.now();
    for (const r of recv.values()) releaseHeld(r, now);
    for (const r of recv.values()) if (r.kind === 'video' && r.failing) requestKeyFrame(r, now);
    for (const t of senders) {
      try {
        t.generateKeyFrame?.()?.catch?.(() => {});
      } catch {
        // Not supported: the receivers' key frame requests do it.
      }
    }
  }
});

setInterval(() => {
  const now = performance.now();
  const out = {};
  for (const [id, r] of recv) {
    out[id] = {
      kind: r.kind,
      decrypted: r.decrypted,
      failed: r.failed,
      failedBy: r.failedBy,
      replayed: r.replayed,
      held: r.heldTotal,
      leaf: r.leaf,
      waiting: r.failing && now - r.lastOk > WAITING_AFTER_MS,
      seenAt: r.seenAt,
      firstAt: r.firstAt,
    };
  }
  self.postMessage({ type: 'stats', epoch: crypto?.epoch ?? null, sent, sendDropped, recv: out });
}, 500);
