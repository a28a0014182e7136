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
//   {type: 'stats', epoch, sent, sendDropped, recv: {id: {kind, decrypted, failed, leaf, waiting, seenAt, firstAt}}}
//   (`seenAt`, `firstAt`: when the first frame arrived, and decrypted, in ms
//   since the Unix epoch as performance.timeOrigin + performance.now(), or null)
// No key, frame or plaintext is ever logged or posted back.

import init, { FrameCrypto } from './wasm/plenary_e2ee.js';

/** How long the previous epoch's keys keep decrypting, ms. */
const GRACE_MS = 2000;
/** A receiver that decrypted nothing for this long while failing is waiting for keys, ms. */
const WAITING_AFTER_MS = 1000;
/** At most one key frame request per receiver in this interval, ms. */
const KEYFRAME_REQUEST_MS = 1000;

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

function receiverTransform(id, kind, transformer) {
  const codec = codecOf(kind);
  const r = { kind, decrypted: 0, failed: 0, leaf: null, lastOk: 0, lastFail: 0, failing: false, lastKeyRequest: 0, seenAt: null, firstAt: null, transformer };
  recv.set(id, r);
  return new TransformStream({
    transform(frame, ctl) {
      const now = performance.now();
      r.seenAt ??= performance.timeOrigin + now;
      if (!hasKeys()) {
        r.failed++;
        r.lastFail = now;
        r.failing = true;
        return;
      }
      let d;
      try {
        d = crypto.decryptFrame(codec, new Uint8Array(frame.data), now);
      } catch {
        // Not decryptable (no keys for its KID, tampered, replayed): never
        // passed to the decoder.
        r.failed++;
        r.lastFail = now;
        r.failing = true;
        return;
      }
      frame.data = bufferOf(d.data);
      r.firstAt ??= performance.timeOrigin + now;
      r.decrypted++;
      r.leaf = d.senderLeaf;
      r.lastOk = now;
      if (r.failing && kind === 'video') requestKeyFrame(r, now);
      r.failing = false;
      ctl.enqueue(frame);
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
      else if (recv.get(id)?.transformer === transformer) recv.delete(id);
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
    // Receivers that lack a picture may be able to decode now.
    const now = performance.now();
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
      leaf: r.leaf,
      waiting: r.failing && now - r.lastOk > WAITING_AFTER_MS,
      seenAt: r.seenAt,
      firstAt: r.firstAt,
    };
  }
  self.postMessage({ type: 'stats', epoch: crypto?.epoch ?? null, sent, sendDropped, recv: out });
}, 500);
