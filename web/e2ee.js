// End-to-end encryption in the page (DESIGN.md, Keys):
// - the meeting secret from the URL fragment (`/m/<room>#<secret>`), which
//   never leaves the browser;
// - MediaE2ee: the media worker (media-worker.js) and the SFrame transform
//   of every RTCRtpSender and RTCRtpReceiver;
// - GroupSession: this connection's MLS membership through the server's
//   Delivery Service: thin glue around plenary-wasm's Membership, the state
//   machine the native client runs too (plenary_e2ee::membership: create,
//   join, batched commits by the committer, Welcomes, profiles, chat and
//   hand raises, rejoining when left behind). Messages in, actions out.
//
// Never log or send the secret, keys, names or chat text.

import init, { Membership, FrameCrypto, roomTag } from './wasm/plenary_e2ee.js';

import { toBase64Url, fromBase64Url } from './room.js';

export { newSecret, secretFromHash } from './room.js';

/**
 * The room tag sent with `join` (22 base64url characters, HKDF of the secret
 * and the room; plenary_e2ee::MeetingSecret::room_tag): the server keeps
 * links with the same room but another secret in another meeting, and
 * cannot recover the secret from it. Needs loadWasm() first.
 */
export function meetingRoomTag(room, secret) {
  return roomTag(room, secret);
}

let wasmReady = null;
/** Loads plenary-wasm once. */
export function loadWasm() {
  wasmReady ||= init().then((w) => {
    // A web/wasm built before media-worker.js would refuse every frame.
    if (typeof FrameCrypto.prototype.openFrame !== 'function') {
      console.error('plenary: web/wasm is older than web/ (no FrameCrypto.openFrame): rebuild it with scripts/build-wasm.sh');
    }
    // ... or than the continuity token (every join would throw).
    if (typeof Membership.prototype.setContinuity !== 'function') {
      console.error('plenary: web/wasm is older than web/ (no Membership.setContinuity): rebuild it with scripts/build-wasm.sh');
    }
    return w;
  });
  return wasmReady;
}

/**
 * The media side for the whole page: one worker, an SFrame transform per
 * sender and receiver, the current epoch keys, and what the worker reports.
 */
export class MediaE2ee extends EventTarget {
  constructor() {
    super();
    this.worker = new Worker(new URL('./media-worker.js', import.meta.url), { type: 'module', name: 'plenary-media' });
    this.useScript = typeof window.RTCRtpScriptTransform === 'function';
    /** Latest worker report. */
    this.stats = { epoch: null, sent: 0, sendDropped: 0, recv: {} };
    this.worker.addEventListener('message', (ev) => {
      if (ev.data?.type !== 'stats') return;
      this.stats = ev.data;
      this.dispatchEvent(new CustomEvent('stats'));
    });
    this.worker.addEventListener('error', () => console.error('plenary: media worker failed'));
    this.nextId = 0;
  }

  /** RTCPeerConnection options that the fallback path needs. */
  get pcConfig() {
    return this.useScript ? {} : { encodedInsertableStreams: true };
  }

  /** Installs the epoch keys in the worker; `reset` for a new group. */
  setKeys(keys, reset) {
    this.worker.postMessage({ type: 'keys', keys, reset: !!reset });
  }

  /** Encrypts everything `sender` sends. */
  attachSender(sender, kind) {
    this.attach(sender, { role: 'send', kind, id: `s${this.nextId++}` });
  }

  /** Decrypts everything `receiver` receives; returns the id the worker reports it under. */
  attachReceiver(receiver, kind) {
    const id = `r${this.nextId++}`;
    this.attach(receiver, { role: 'recv', kind, id });
    return id;
  }

  attach(endpoint, options) {
    if (this.useScript) {
      endpoint.transform = new window.RTCRtpScriptTransform(this.worker, options);
    } else if (endpoint.createEncodedStreams) {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.worker.postMessage({ type: 'streams', readable, writable, options }, [readable, writable]);
    } else {
      throw new Error('This browser cannot encrypt media end to end.');
    }
  }
}

/**
 * One connection's membership in the meeting's MLS group.
 *
 * Events: `change` (epoch, membership, security code, names or hands
 * changed), `chat` (detail: {leaf, text, self}), `hand` (detail: {leaf,
 * raised}: a member raised or lowered its hand, or told it again to a
 * newcomer), `keys` (detail: {why}:
 * the first keys of a new identity are installed: `why` is 'rejoin' after
 * the membership lost its group state, else 'new').
 */
export class GroupSession extends EventTarget {
  /**
   * @param {{room: string, secret: string, name: string, continuity: Uint8Array,
   *          signaling: import('./signaling.js').Signaling, media: MediaE2ee}} opts
   *   `continuity`: this meeting session's continuity token (16 random
   *   bytes, the same for every connection), sent only inside the
   *   encrypted profile so that the others know us again after an outage.
   */
  constructor({ room, secret, name, continuity, signaling, media }) {
    super();
    this.sig = signaling;
    this.media = media;
    // Our participant id is not known before `joined` (and the one of a
    // previous connection may be someone else's now); the server never
    // relays our own messages or leaf back to us.
    this.sm = new Membership(room, secret, name, null);
    this.sm.setContinuity(continuity);
    this.timer = 0;
    this.closed = false;
    this.securityCode = null;
    this.errors = 0;
    /** Why the next first keys come: 'rejoin' after a Rejoin action. */
    this.keysWhy = 'new';
    this.handlers = {
      create_group: () => this.apply((now) => this.sm.createGroup(now)),
      mls: (ev) => {
        const msg = ev.detail;
        if (typeof msg?.envelope !== 'string') return;
        let bytes;
        try {
          bytes = fromBase64Url(msg.envelope);
        } catch {
          this.errors++;
          return;
        }
        this.apply((now) => this.sm.mls(msg.from, bytes, now));
      },
      commit_accepted: () => this.apply((now) => this.sm.commitAccepted(now)),
      commit_rejected: (ev) => {
        const epoch = ev.detail?.current_epoch;
        this.apply((now) => this.sm.commitRejected(Number.isFinite(epoch) ? epoch : 0, now));
      },
    };
    for (const [type, fn] of Object.entries(this.handlers)) signaling.addEventListener(type, fn);
  }

  get isMember() {
    return !this.closed && this.sm.isMember;
  }

  get epoch() {
    return this.sm.epoch ?? null;
  }

  get ownLeaf() {
    return this.sm.ownLeaf ?? null;
  }

  get rejoins() {
    return this.sm.rejoins;
  }

  get handRaised() {
    return this.sm.handRaised;
  }

  close() {
    this.closed = true;
    window.clearTimeout(this.timer);
    for (const [type, fn] of Object.entries(this.handlers)) this.sig.removeEventListener(type, fn);
    try {
      this.sm.free();
    } catch {
      // already freed
    }
  }

  /** Feeds one input (`fn(nowMs)` returns the actions), carries the actions out, re-arms the timer. */
  apply(fn) {
    if (this.closed) return [];
    const actions = fn(performance.now());
    let changed = false;
    for (const a of actions) {
      switch (a.type) {
        case 'mls': {
          const msg = { type: 'mls', envelope: toBase64Url(a.envelope) };
          // The Welcome travels with its commit: the server routes both in one step.
          if (a.welcome) msg.welcome = toBase64Url(a.welcome);
          this.sig.send(msg);
          break;
        }
        case 'group_member':
          this.sig.send({ type: 'group_member', leaf: a.leaf });
          break;
        case 'epoch':
          this.media.setKeys(a.keys, a.reset);
          this.securityCode = a.securityCode;
          changed = true;
          if (a.reset) {
            this.dispatchEvent(new CustomEvent('keys', { detail: { why: this.keysWhy } }));
            this.keysWhy = 'new';
          }
          break;
        case 'profile':
          changed = true;
          break;
        case 'hand':
          changed = true;
          this.dispatchEvent(new CustomEvent('hand', { detail: { leaf: a.leaf, raised: !!a.raised } }));
          break;
        case 'chat':
          this.dispatchEvent(new CustomEvent('chat', { detail: { leaf: a.leaf, text: a.text, self: false } }));
          break;
        case 'rejoin':
          console.info(`plenary: end-to-end encryption: lost the group state (${a.reason}); rejoining the group`);
          this.securityCode = null;
          this.keysWhy = 'rejoin';
          changed = true;
          break;
        case 'failed':
          this.errors++;
          // Only the operation and the library's reason; never content.
          console.warn(`plenary: e2ee ${String(a.error).slice(0, 120)}`);
          break;
        default:
          break;
      }
    }
    window.clearTimeout(this.timer);
    const due = this.sm.nextDeadline;
    if (due !== undefined) {
      this.timer = window.setTimeout(() => this.apply((now) => this.sm.timeout(now)), Math.max(0, due - performance.now()));
    }
    if (changed) this.emitChange();
    return actions;
  }

  /** After `joined`: ask to be added, unless we are alone and asked to create the group. */
  start(othersPresent) {
    this.apply((now) => this.sm.start(othersPresent, now));
  }

  /** A participant left the room (or the connection died). */
  participantLeft(id) {
    this.apply((now) => this.sm.participantLeft(id, now));
  }

  /**
   * A participant announced its leaf: its join is done, and the server now
   * relays application messages to it, so it gets our profile (batched).
   */
  participantLeaf(id, leaf) {
    this.apply((now) => this.sm.participantLeaf(id, leaf, now));
  }

  emitChange() {
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** Encrypted chat line. Returns whether it was sent. */
  sendChat(text) {
    if (!this.isMember) return false;
    return this.apply((now) => this.sm.chat(text, now)).some((a) => a.type === 'mls');
  }

  raiseHand(raised) {
    this.apply((now) => this.sm.raiseHand(raised, now));
    if (this.isMember) this.emitChange();
  }

  /**
   * leaf -> {displayName (null until its profile came), continuity (the
   * member's continuity token, hex, or null), handRaised, isSelf} of the
   * group's members.
   */
  roster() {
    const out = new Map();
    if (!this.isMember) return out;
    try {
      for (const r of this.sm.roster()) out.set(r.leaf, { displayName: r.displayName, continuity: r.continuity, handRaised: r.handRaised, isSelf: r.isSelf });
    } catch {
      // no group
    }
    return out;
  }
}
