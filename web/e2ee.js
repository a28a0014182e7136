// End-to-end encryption in the page (DESIGN.md, Keys):
// - the meeting secret from the URL fragment (`/m/<room>#<secret>`), which
//   never leaves the browser;
// - MediaE2ee: the media worker (media-worker.js) and the SFrame transform
//   of every RTCRtpSender and RTCRtpReceiver;
// - GroupSession: this connection's MLS membership through the server's
//   Delivery Service (create, join, batched commits by the committer,
//   Welcomes, profiles, chat and hand raises as application messages).
//
// Never log or send the secret, keys, names or chat text.

import init, { Meeting, FrameCrypto, roomTag } from './wasm/plenary_e2ee.js';

import { toBase64Url, fromBase64Url } from './room.js';

export { newSecret, secretFromHash } from './room.js';

/** Wait this long to batch a burst of join requests into one commit, ms. */
const COMMIT_BATCH_MS = 100;
/** A joiner not admitted after this long asks again, ms. */
const JOIN_RETRY_MS = 8000;
/** Alone in the room: how long to wait for `create_group` before asking to join, ms. */
const CREATE_WAIT_MS = 1500;
/**
 * Known to be behind the room's epoch (a rejected commit's `current_epoch`,
 * a message from a later epoch, a commit at our epoch we could not apply):
 * wait this long for the missing commits, then rejoin, ms.
 */
const BEHIND_WAIT_MS = 2000;

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

/** Envelope kinds (plenary_e2ee::envelope). */
const KIND_JOIN_REQUEST = 1;
const KIND_COMMIT = 2;
const KIND_WELCOME = 3;

/** The epoch a Commit envelope was made in (u64 big-endian after version and kind), or null. */
function commitEpoch(bytes) {
  if (bytes.length < 10 || bytes[1] !== KIND_COMMIT) return null;
  return Number(new DataView(bytes.buffer, bytes.byteOffset + 2, 8).getBigUint64(0));
}

/**
 * The later epoch of a message plenary-e2ee refused as `FutureEpoch`
 * ("message for future epoch N (group is at M)"), or null.
 */
function futureEpoch(err) {
  const m = /future epoch (\d+)/.exec(String(err?.message ?? err));
  return m ? Number(m[1]) : null;
}

/**
 * One connection's membership in the meeting's MLS group.
 *
 * Events: `change` (epoch, membership, security code, names or hands
 * changed), `chat` (detail: {leaf, text, self}).
 */
export class GroupSession extends EventTarget {
  /**
   * @param {{room: string, secret: string, name: string, signaling: import('./signaling.js').Signaling,
   *          media: MediaE2ee, online: () => Map<number, number>, selfId: () => number|null}} opts
   *   `online()` gives participant id -> leaf of the others known to be members.
   */
  constructor({ room, secret, name, signaling, media, online, selfId }) {
    super();
    this.room = room;
    this.secret = secret;
    this.name = name;
    this.sig = signaling;
    this.media = media;
    this.online = online;
    this.selfId = selfId;
    this.meeting = new Meeting(room, secret);
    this.firstKeys = true;
    /** Join requests waiting for a commit: participant id -> envelope bytes. */
    this.pendingJoins = new Map();
    /** Leaves of participants who left, to remove. */
    this.removals = new Set();
    /** Our commit in flight: {joiners}. */
    this.inflight = null;
    this.commitTimer = 0;
    this.joinTimer = 0;
    this.profileTimer = 0;
    /** The room's epoch when we are known to be behind it, and its timer. */
    this.behindEpoch = null;
    this.behindTimer = 0;
    /** Times this connection lost its group state and asked to be added again. */
    this.rejoins = 0;
    this.closed = false;
    this.securityCode = null;
    this.handRaised = false;
    this.errors = 0;
    this.handlers = {
      create_group: () => this.onCreateGroup(),
      mls: (ev) => this.onMls(ev.detail),
      commit_accepted: () => this.onCommitAccepted(),
      commit_rejected: (ev) => this.onCommitRejected(ev.detail),
    };
    for (const [type, fn] of Object.entries(this.handlers)) signaling.addEventListener(type, fn);
  }

  get isMember() {
    return !this.closed && this.meeting.isMember;
  }

  get epoch() {
    return this.meeting.epoch ?? null;
  }

  get ownLeaf() {
    return this.meeting.ownLeaf ?? null;
  }

  close() {
    this.closed = true;
    window.clearTimeout(this.commitTimer);
    window.clearTimeout(this.joinTimer);
    window.clearTimeout(this.profileTimer);
    window.clearTimeout(this.behindTimer);
    for (const [type, fn] of Object.entries(this.handlers)) this.sig.removeEventListener(type, fn);
    try {
      this.meeting.free();
    } catch {
      // already freed
    }
  }

  send(envelope) {
    return this.sig.send({ type: 'mls', envelope: toBase64Url(envelope) });
  }

  /** After `joined`: ask to be added, unless we are alone and asked to create the group. */
  start(othersPresent) {
    if (othersPresent) this.requestJoin();
    else this.joinTimer = window.setTimeout(() => this.requestJoin(), CREATE_WAIT_MS);
  }

  requestJoin() {
    window.clearTimeout(this.joinTimer);
    if (this.closed || this.meeting.isMember) return;
    try {
      this.send(this.meeting.joinRequest());
    } catch (err) {
      this.fault('join request', err);
    }
    this.joinTimer = window.setTimeout(() => this.requestJoin(), JOIN_RETRY_MS);
  }

  onCreateGroup() {
    if (this.closed) return;
    window.clearTimeout(this.joinTimer);
    // The server lost the group (e.g. it restarted): start a new one.
    if (this.meeting.isMember) this.fresh();
    try {
      this.meeting.create();
    } catch (err) {
      this.fault('create', err);
      return;
    }
    this.pendingJoins.clear();
    this.removals.clear();
    this.sig.send({ type: 'group_member', leaf: this.meeting.ownLeaf });
    this.onNewEpoch(false);
  }

  onMls(msg) {
    if (this.closed || typeof msg?.envelope !== 'string') return;
    let bytes;
    try {
      bytes = fromBase64Url(msg.envelope);
    } catch {
      return;
    }
    const kind = bytes[1];
    const epoch = commitEpoch(bytes);
    if (epoch !== null && this.meeting.isMember && epoch > this.epoch) {
      // A commit from an epoch after ours: we missed a commit and can follow
      // the group no more. Rejoin with a fresh identity; the committer
      // replaces our old leaf.
      this.rejoin();
      return;
    }
    if (kind === KIND_JOIN_REQUEST) {
      this.onJoinRequest(msg.from, bytes);
      return;
    }
    if (kind === KIND_WELCOME && this.meeting.isMember) return;
    let ev;
    try {
      ev = this.meeting.process(bytes);
    } catch (err) {
      this.fault('process', err);
      const later = futureEpoch(err);
      if (later !== null) this.noteBehind(later);
      // A commit at our epoch that we cannot apply: the room moved on without us.
      else if (epoch !== null && epoch === this.epoch) this.noteBehind(epoch + 1);
      return;
    }
    this.onEvent(ev);
  }

  /** The room is at `roomEpoch`: if we stay below it for BEHIND_WAIT_MS, rejoin. */
  noteBehind(roomEpoch) {
    if (this.closed || !this.meeting.isMember || !(roomEpoch > this.epoch)) return;
    this.behindEpoch = Math.max(this.behindEpoch ?? 0, roomEpoch);
    if (this.behindTimer) return;
    this.behindTimer = window.setTimeout(() => {
      this.behindTimer = 0;
      if (!this.closed && this.meeting.isMember && this.behindEpoch !== null && this.epoch < this.behindEpoch) this.rejoin();
      this.behindEpoch = null;
    }, BEHIND_WAIT_MS);
  }

  /** A new identity and no group: after a lost group state. */
  fresh() {
    this.meeting.free();
    this.meeting = new Meeting(this.room, this.secret);
    this.firstKeys = true;
    this.inflight = null;
    this.behindEpoch = null;
    window.clearTimeout(this.behindTimer);
    this.behindTimer = 0;
  }

  /** Lost the group state: ask to be added again with a fresh identity. */
  rejoin() {
    console.info('plenary: end-to-end encryption: missed a commit; rejoining the group');
    this.rejoins++;
    this.fresh();
    this.emitChange();
    this.requestJoin();
  }

  onJoinRequest(from, bytes) {
    if (from === this.selfId() || !this.meeting.isMember) return;
    try {
      this.meeting.verifyJoinRequest(bytes);
    } catch {
      // A wrong secret (or a forged request): never added.
      this.pendingJoins.delete(from);
      return;
    }
    this.pendingJoins.set(from, bytes);
    this.scheduleCommit();
  }

  /** A participant left the room (or the connection died). */
  participantLeft(id, leaf) {
    this.pendingJoins.delete(id);
    if (leaf != null && leaf !== this.ownLeaf) {
      this.removals.add(leaf);
      this.scheduleCommit();
    }
  }

  /**
   * A participant announced its leaf: its join is done, and the server now
   * relays application messages to it, so it gets our profile (batched).
   */
  participantLeaf(id, isNew) {
    this.pendingJoins.delete(id);
    if (!isNew || this.profileTimer) return;
    this.profileTimer = window.setTimeout(() => {
      this.profileTimer = 0;
      if (!this.closed) this.sendProfile();
    }, COMMIT_BATCH_MS);
  }

  onEvent(ev) {
    switch (ev.type) {
      case 'joined':
        window.clearTimeout(this.joinTimer);
        this.sig.send({ type: 'group_member', leaf: ev.ownLeaf });
        this.onNewEpoch(true);
        break;
      case 'epoch':
        for (const l of ev.removed || []) this.removals.delete(l);
        for (const l of ev.added || []) this.removals.delete(l);
        this.onNewEpoch((ev.added || []).length > 0);
        break;
      case 'removed':
        // Removed by mistake or as a leftover: ask to be added again.
        this.rejoin();
        break;
      case 'chat':
        this.dispatchEvent(new CustomEvent('chat', { detail: { leaf: ev.sender, text: ev.text, self: false } }));
        break;
      case 'profile':
      case 'hand':
        this.emitChange();
        break;
      default:
        break;
    }
  }

  /** New epoch (joined, created, or a commit applied): keys, code, profile. */
  onNewEpoch(sendProfile) {
    if (this.behindEpoch !== null && this.epoch >= this.behindEpoch) this.behindEpoch = null;
    try {
      this.media.setKeys(this.meeting.epochKeys(), this.firstKeys);
      this.firstKeys = false;
      this.securityCode = this.meeting.securityCode();
    } catch (err) {
      this.fault('keys', err);
    }
    if (sendProfile) this.sendProfile();
    this.emitChange();
    if (this.pendingJoins.size || this.removals.size) this.scheduleCommit();
  }

  sendProfile() {
    if (!this.meeting.isMember) return;
    try {
      this.send(this.meeting.setProfile(this.name));
      if (this.handRaised) this.send(this.meeting.raiseHand(true));
    } catch (err) {
      this.fault('profile', err);
    }
  }

  emitChange() {
    this.dispatchEvent(new CustomEvent('change'));
  }

  /**
   * Leaves of the members online: ours and those announced by the others,
   * but not of one asking to be added again (it lost its group state and
   * cannot commit; if it was the committer, the next one takes over).
   */
  onlineLeaves() {
    const leaves = [...this.online()].filter(([id]) => !this.pendingJoins.has(id)).map(([, leaf]) => leaf);
    if (this.ownLeaf != null) leaves.push(this.ownLeaf);
    return leaves;
  }

  scheduleCommit() {
    if (this.commitTimer || this.closed) return;
    this.commitTimer = window.setTimeout(() => {
      this.commitTimer = 0;
      this.maybeCommit();
    }, COMMIT_BATCH_MS);
  }

  /** The committer adds the waiting joiners and removes who left, in one commit. */
  maybeCommit() {
    const m = this.meeting;
    if (this.closed || !m.isMember || m.hasPendingCommit || this.inflight) return;
    if (!m.isCommitter(this.onlineLeaves())) return;
    const members = new Set(m.roster().map((r) => r.leaf));
    const removes = [...this.removals].filter((l) => members.has(l) && l !== this.ownLeaf);
    for (const l of this.removals) if (!members.has(l)) this.removals.delete(l);
    const joiners = [...this.pendingJoins.keys()];
    // A member asking to join again lost its group state (it missed a
    // commit): its old leaf goes in the same commit that adds it anew.
    const online = this.online();
    for (const id of joiners) {
      const old = online.get(id);
      if (old != null && members.has(old) && old !== this.ownLeaf && !removes.includes(old)) removes.push(old);
    }
    if (!joiners.length && !removes.length) return;
    let out;
    try {
      out = m.commit(joiners.map((id) => this.pendingJoins.get(id)), removes);
    } catch (err) {
      this.fault('commit', err);
      return;
    }
    // Joiners whose requests were refused are dropped.
    for (const r of out.rejected || []) this.pendingJoins.delete(joiners[r.index]);
    this.inflight = { joiners };
    // The Welcome travels with its commit: the server routes it in the same
    // step as it accepts the commit, so no later commit overtakes it.
    const msg = { type: 'mls', envelope: toBase64Url(out.commit) };
    if (out.welcome) msg.welcome = toBase64Url(out.welcome);
    this.sig.send(msg);
  }

  onCommitAccepted() {
    const inflight = this.inflight;
    this.inflight = null;
    if (this.closed || !this.meeting.hasPendingCommit) return;
    let ev;
    try {
      ev = this.meeting.commitAccepted();
    } catch (err) {
      this.fault('commit accepted', err);
      return;
    }
    for (const id of inflight?.joiners || []) this.pendingJoins.delete(id);
    this.onEvent(ev);
  }

  onCommitRejected(msg) {
    this.inflight = null;
    if (this.closed) return;
    if (this.meeting.hasPendingCommit) {
      try {
        this.meeting.commitRejected();
      } catch (err) {
        this.fault('commit rejected', err);
      }
    }
    // The winning commit arrives as `mls` (before this answer); its epoch
    // event retries. If the room is past our epoch anyway, we missed it.
    if (Number.isFinite(msg?.current_epoch)) this.noteBehind(msg.current_epoch);
  }

  /** Encrypted chat line. Returns whether it was sent. */
  sendChat(text) {
    if (!this.meeting.isMember) return false;
    try {
      return this.send(this.meeting.sendChat(text));
    } catch (err) {
      this.fault('chat', err);
      return false;
    }
  }

  raiseHand(raised) {
    this.handRaised = raised;
    if (!this.meeting.isMember) return;
    try {
      this.send(this.meeting.raiseHand(raised));
    } catch (err) {
      this.fault('hand', err);
    }
    this.emitChange();
  }

  /** leaf -> {displayName, handRaised} of the group's members. */
  roster() {
    const out = new Map();
    if (!this.meeting.isMember) return out;
    try {
      for (const r of this.meeting.roster()) out.set(r.leaf, { displayName: r.displayName, handRaised: r.handRaised, isSelf: r.isSelf });
    } catch {
      // no group
    }
    return out;
  }

  fault(what, err) {
    this.errors++;
    // Only the operation and the library's reason; never content.
    console.warn(`plenary: e2ee ${what} failed: ${String(err?.message ?? err).slice(0, 120)}`);
  }
}
