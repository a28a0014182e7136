// A meeting as the client sees it, without any DOM: who is in the room,
// which remote tracks belong to whom, and the connection state. It owns the
// Signaling (WebSocket), the PeerSession (RTCPeerConnection) and the
// GroupSession (MLS membership), and reconnects them when any dies.
// Every meeting is end-to-end encrypted: the server gets the profile "{}",
// names, chat and hands travel as MLS application messages, every frame is
// SFrame-encrypted.
//
// Connection states (the `state` event; detail: the state):
//   idle -> connecting -> connected <-> reconnecting -> failed
//   and `left` after leave().
// `connected` means the WebSocket is open and the PeerConnection connected.
//
// While the connection is lost, the others stay listed as `away`
// (remoteView, away.js) until the same participants (name and continuity
// token, from their encrypted profiles) are back in the group of the new
// connection, or for a while after it connected (then they left).
// When this tab's keys had to be set up anew (a reconnect re-forms or
// rejoins the group, or the membership lost its state), `codeNote` says so
// next to the security code and a note marks the point in the chat.
//
// Other events: `participants` (someone joined, left, changed, or got or lost
// a track), `chat` (detail: a line, or {note, at} for a note), `hand`
// (detail: {name, tileKey}: someone's hand went up; once per raise: not
// again when the same participant comes back after an outage, or tells its
// hand again to a newcomer), `error`
// (detail: {code, message, fatal} from the server, or a local failure with
// code 'client'), `retry` (detail: {attempt, delayMs,
// timedOut}: the next connection attempt is scheduled; `timedOut` when the
// WebSocket did not open within CONNECT_TIMEOUT_MS).

import { Signaling, signalingUrl, ConnectTimeoutError } from './signaling.js';
import { PeerSession } from './peer.js';
import { GroupSession, meetingRoomTag } from './e2ee.js';
import { AwayList } from './away.js';

/** Longest display name, in characters. */
export const MAX_NAME_CHARS = 64;

/** Errors that answer `join`: retrying the same join cannot help. */
const JOIN_ERRORS = new Set(['bad_room_id', 'bad_profile', 'unsupported_version', 'room_full', 'already_joined']);

/** Errors about MLS envelopes from the Delivery Service. */
const MLS_ERRORS = new Set(['bad_envelope', 'stale_epoch', 'not_group_member']);

/**
 * Reconnection waits, milliseconds (as the native client's, see
 * crates/plenary-client/src/reconnect.rs): 500 before the first attempt, then
 * 1000, short and flat so that a restarted server is found within about 1 s
 * (issue #5: media resumes within 10 s), each scaled by 1 ± RECONNECT_JITTER
 * at random so that a room cut off together does not return in lock-step.
 * After RECONNECT_ATTEMPTS (about 30 s) the meeting fails.
 */
const FIRST_RECONNECT_DELAY_MS = 500;
const RECONNECT_DELAY_MS = 1000;
const RECONNECT_ATTEMPTS = 30;
const RECONNECT_JITTER = 0.2;

/** The wait before reconnection attempt `attempt` (0-based), milliseconds. */
export function reconnectDelayMs(attempt) {
  const base = attempt === 0 ? FIRST_RECONNECT_DELAY_MS : RECONNECT_DELAY_MS;
  return Math.round(base * (1 + RECONNECT_JITTER * (2 * Math.random() - 1)));
}

/** How long the server may take to answer `join`, milliseconds. */
const JOIN_TIMEOUT_MS = 10000;

/** How long the PeerConnection may stay `disconnected` before a full rejoin. */
const DISCONNECTED_GRACE_MS = 8000;


/** What the security code note says when this tab's keys were set up anew. */
export const CODE_NOTE = {
  reconnect: "New code: the meeting's keys were set up again after reconnecting. Compare it again.",
  rejoin: "New code: this device had to rejoin the meeting's keys. Compare it again.",
};

/** The note in the chat where this tab's keys were set up anew after a lost connection. */
export const CHAT_REJOIN_NOTE = 'Reconnected: messages sent while you were away cannot be shown; chat is end-to-end encrypted.';

/** The note in the chat where the user came back after leaving on purpose (Leave, then Rejoin). */
export const CHAT_REJOINED_NOTE = 'Rejoined: messages sent while you were away cannot be shown; chat is end-to-end encrypted.';

/** Wall-clock time in ms (performance.timeOrigin + now), comparable with the media worker's. */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

/** Cuts a name to MAX_NAME_CHARS characters (code points), trimmed. */
export function cleanName(name) {
  return Array.from(String(name ?? '').trim()).slice(0, MAX_NAME_CHARS).join('').trim();
}

/** Length of a continuity token, bytes (plenary_e2ee::app::CONTINUITY_LEN). */
const CONTINUITY_BYTES = 16;

/** The profile the server gets: nothing (names travel encrypted in the group). */
const SERVER_PROFILE = '{}';

export class MeetingSession extends EventTarget {
  /**
   * @param {{room: string, name: string, local: import('./local-media.js').LocalMedia,
   *          secret: string, media: import('./e2ee.js').MediaE2ee}} opts
   *   `secret`: the meeting secret from the URL fragment (secretFromHash);
   *   `media`: the page's SFrame worker; `rejoined`: this tab was in the
   *   meeting before (its keys and chat start anew).
   */
  constructor({ room, name, local, secret, media, rejoined = false }) {
    super();
    if (!secret || !media) throw new Error('A meeting needs its secret and the media worker.');
    this.room = room;
    this.name = cleanName(name);
    this.local = local;
    this.secret = secret;
    /** Which meeting of this room name the server puts us in (from the secret). */
    this.roomTag = meetingRoomTag(room, secret);
    /**
     * This meeting session's continuity token (away.js): random, kept in
     * this object only (every connection of the session sends it, inside
     * the encrypted profile; a Leave then Rejoin makes a new one).
     */
    this.continuity = crypto.getRandomValues(new Uint8Array(CONTINUITY_BYTES));
    this.media = media;
    /** @type {GroupSession|null} this connection's MLS membership. */
    this.group = null;
    /** Chat lines of this meeting: {from, name, text, self, at}, or {note, at}. */
    this.chat = [];
    /** Whether this tab had keys in this meeting before (a new setup is news). */
    this.hadKeys = !!rejoined;
    /** The user left and rejoined on purpose: the first keys' chat note says so. */
    this.rejoinedByUser = !!rejoined;
    /** Why the current security code comes from keys set up anew ('reconnect', 'rejoin'), or null. */
    this.codeNote = null;
    /** Connection number: tile keys of different connections never collide. */
    this.gen = 0;
    /** Tile keys of the remote participants whose raised hand was announced (`hand`). */
    this.handsUp = new Set();
    /** Participants of a lost connection, by tile key, until back or gone. */
    this.away = new AwayList(() => this.emitParticipants());
    this.state = 'idle';
    /** Our participant id in the current connection. */
    this.selfId = null;
    /** @type {Map<number, {id: number, name: string, audioMuted: boolean, videoMuted: boolean}>} */
    this.participants = new Map();
    /** Remote tracks from the latest server offer. */
    this.remoteTracks = [];
    /** @type {Signaling|null} */
    this.signaling = null;
    /** @type {PeerSession|null} */
    this.peer = null;
    this.attempt = 0;
    this.retryTimer = 0;
    this.graceTimer = 0;
    this.joinTimer = 0;
    this.lastError = null;
    /** Whether the current connection got `joined`. */
    this.connJoined = false;
    /** Simulcast layer (RID) the server forwards per receiving mid. */
    this.layers = new Map();
    /** When the first connection reached each step (nowMs): ws, joined, member, connected. */
    this.marks = {};
    this.onLocalTracks = (ev) => this.sendLocalTracks(ev.detail);
    local.addEventListener('tracks', this.onLocalTracks);
  }

  mark(step) {
    this.marks[step] ??= nowMs();
  }

  /**
   * When each step of joining first happened (nowMs): `ws` (WebSocket open),
   * `joined` (the server's answer), `offer` (our SDP offer sent), `answer`
   * (the server's SDP answer applied: ICE starts), `server_offer` (the
   * server's offer of the remote tracks answered), `member` (in the MLS
   * group, keys installed), `connected` (PeerConnection), `tracks` (remote tracks
   * negotiated), `seen` (the first remote video frame reached the worker),
   * `video` (the first remote video frame decrypted); absent until it happens.
   */
  timings() {
    const video = Object.values(this.media.stats.recv || {}).filter((r) => r.kind === 'video');
    const first = (key) => {
      const at = video.map((r) => r[key]).filter((x) => x != null);
      return at.length ? Math.min(...at) : undefined;
    };
    return { ...this.marks, seen: first('seenAt'), video: first('firstAt') };
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  emitParticipants() {
    this.dispatchEvent(new CustomEvent('participants'));
  }

  emitError(err) {
    this.lastError = err;
    this.dispatchEvent(new CustomEvent('error', { detail: err }));
  }

  /** Joins the room; reconnects by itself on failure until it gives up. */
  join() {
    this.attempt = 0;
    this.setState('connecting');
    this.connect();
  }

  /** One connection attempt: WebSocket, `join`, then the PeerConnection. */
  async connect() {
    this.teardown();
    this.gen++;
    this.connJoined = false;
    const sig = new Signaling(signalingUrl());
    this.signaling = sig;
    sig.addEventListener('joined', (ev) => this.onJoined(ev.detail));
    sig.addEventListener('participant_joined', (ev) => this.upsert(ev.detail.participant));
    sig.addEventListener('participant_updated', (ev) => this.upsert(ev.detail.participant));
    sig.addEventListener('participant_left', (ev) => this.onLeft(ev.detail.participant_id));
    sig.addEventListener('error', (ev) => this.onServerError(ev.detail));
    sig.addEventListener('layer', (ev) => this.layers.set(ev.detail.mid, ev.detail.rid ?? null));
    // Adaptive quality (plenary-proto): the page shows these; paused
    // simulcast layers go to the sender.
    for (const type of ['quality', 'active_speaker', 'connection_quality']) {
      sig.addEventListener(type, (ev) => this.dispatchEvent(new CustomEvent(type, { detail: ev.detail })));
    }
    sig.addEventListener('layers_paused', (ev) => this.peer?.setPausedLayers(ev.detail.paused || []));
    const group = new GroupSession({
      room: this.room,
      secret: this.secret,
      name: this.name,
      continuity: this.continuity,
      signaling: sig,
      media: this.media,
    });
    this.group = group;
    group.addEventListener('change', () => {
      if (this.group !== group) return;
      if (group.isMember) this.mark('member');
      this.refreshNames();
      this.emitParticipants();
      this.dispatchEvent(new CustomEvent('e2ee'));
    });
    group.addEventListener('chat', (ev) => {
      if (this.group === group) this.addChat(ev.detail);
    });
    group.addEventListener('hand', (ev) => {
      // A hand going down ends the raise; the next raise is news again.
      if (this.group === group && !ev.detail.raised) this.handsUp.delete(this.participantAtLeaf(ev.detail.leaf)?.tileKey);
    });
    group.addEventListener('keys', (ev) => {
      if (this.group === group) this.onKeysSetUp(ev.detail.why);
    });
    sig.addEventListener('close', (ev) => {
      if (this.signaling !== sig || ev.detail.byUser) return;
      this.connectionLost();
    });
    try {
      await sig.connect();
    } catch (err) {
      if (this.signaling === sig) this.connectionLost({ timedOut: err instanceof ConnectTimeoutError });
      return;
    }
    this.mark('ws');
    // The server learns no name: it travels encrypted in the group.
    sig.join(this.room, this.roomTag, SERVER_PROFILE);
    this.joinTimer = window.setTimeout(() => {
      if (this.signaling === sig && !this.connJoined) this.connectionLost();
    }, JOIN_TIMEOUT_MS);
  }

  onJoined(msg) {
    this.mark('joined');
    this.selfId = msg.participant_id;
    this.connJoined = true;
    this.layers.clear();
    this.participants.clear();
    for (const p of msg.participants || []) this.upsert(p, false);
    this.emitParticipants();
    this.group.start((msg.participants || []).length > 0);
    const peer = new PeerSession(this.signaling, {
      media: this.media,
      iceServers: msg.ice_servers || [],
      audio: this.local.audio,
      video: this.local.cameraOff ? null : this.local.video,
      mark: (step) => this.mark(step),
    });
    this.peer = peer;
    peer.addEventListener('state', (ev) => this.onPeerState(peer, ev.detail));
    peer.addEventListener('remote', (ev) => {
      if (ev.detail.length) this.mark('tracks');
      this.remoteTracks = ev.detail;
      this.emitParticipants();
    });
    peer.addEventListener('error', (ev) => {
      this.emitError({ code: 'client', message: `Media negotiation failed: ${ev.detail.message}`, fatal: false });
    });
    peer.start();
    // The server assumes unmuted; tell it otherwise.
    if (this.local.micMuted || !this.local.audio) this.signaling.setMuted('audio', true);
    if (this.local.cameraOff || !this.local.video) this.signaling.setMuted('video', true);
  }

  onPeerState(peer, pcState) {
    if (peer !== this.peer) return;
    window.clearTimeout(this.graceTimer);
    if (pcState === 'connected') {
      this.mark('connected');
      this.attempt = 0;
      this.setState('connected');
      this.away.connected();
    } else if (pcState === 'disconnected') {
      // ICE may recover by itself; rejoin if it does not.
      this.setState('reconnecting');
      this.graceTimer = window.setTimeout(() => this.connectionLost(), DISCONNECTED_GRACE_MS);
    } else if (pcState === 'failed') {
      this.connectionLost();
    }
  }

  upsert(p, emit = true) {
    if (!p || p.id === this.selfId) return;
    const leaf = Number.isInteger(p.leaf) ? p.leaf : null;
    const known = this.participants.get(p.id);
    if (!known) this.away.newcomer();
    this.participants.set(p.id, {
      id: p.id,
      since: known?.since ?? Date.now(),
      tileKey: this.participants.get(p.id)?.tileKey ?? `c${this.gen}-${p.id}`,
      name: '',
      profiled: false,
      continuity: null,
      leaf,
      handRaised: false,
      audioMuted: !!p.audio_muted,
      videoMuted: !!p.video_muted,
    });
    if (leaf !== null) this.group?.participantLeaf(p.id, leaf);
    this.refreshNames();
    if (emit) this.emitParticipants();
  }

  onLeft(id) {
    const p = this.participants.get(id);
    if (p) this.group?.participantLeft(id);
    if (this.participants.delete(id)) this.emitParticipants();
  }

  /** Names and hands from the encrypted profiles, by leaf. */
  refreshNames() {
    if (!this.group) return;
    const roster = this.group.roster();
    for (const p of this.participants.values()) {
      const r = p.leaf !== null ? roster.get(p.leaf) : null;
      p.name = r && !r.isSelf ? cleanName(r.displayName ?? '') : '';
      /** Whether its encrypted profile came (else its name is not known yet). */
      p.profiled = !!(r && !r.isSelf && r.displayName != null);
      p.continuity = r && !r.isSelf ? r.continuity ?? null : null;
      p.handRaised = !!(r && !r.isSelf && r.handRaised);
    }
    this.away.match(this.participants.values());
    // After the match: one back from an outage keeps its tile key, hence
    // its raise is not news.
    for (const p of this.participants.values()) {
      if (!p.handRaised || this.handsUp.has(p.tileKey)) continue;
      this.handsUp.add(p.tileKey);
      this.dispatchEvent(new CustomEvent('hand', { detail: { name: p.name, tileKey: p.tileKey } }));
    }
  }

  /**
   * The remote participants to show: those of this connection with their
   * tracks and `waitingKeys`, then those of a lost connection (`away`,
   * id null, no tracks).
   */
  remoteView() {
    const live = this.away.visible([...this.participants.values()]).map((p) => ({ ...p, ...this.tracksOf(p.id), waitingKeys: this.waitingForKeys(p.id), away: false }));
    return [...live, ...this.away.values()];
  }

  /**
   * This connection's membership installed the first keys of a new
   * identity (`why`: 'new', or 'rejoin' after it lost its group state).
   * If this tab had keys before, the security code changed for that reason,
   * not for a join or leave, and chat sent meanwhile is lost.
   */
  onKeysSetUp(why) {
    if (this.hadKeys) {
      this.codeNote = why === 'rejoin' ? 'rejoin' : 'reconnect';
      this.addChatNote(this.rejoinedByUser ? CHAT_REJOINED_NOTE : CHAT_REJOIN_NOTE);
    }
    this.hadKeys = true;
    this.rejoinedByUser = false;
  }

  /** The user has seen the security code note. */
  clearCodeNote() {
    this.codeNote = null;
  }

  /** The participant at `leaf`, if known. */
  participantAtLeaf(leaf) {
    for (const p of this.participants.values()) if (p.leaf === leaf) return p;
    return null;
  }

  addChat({ leaf, text, self }) {
    const p = self ? null : this.participantAtLeaf(leaf);
    const line = { from: self ? this.selfId : p?.id ?? null, name: self ? this.name : p?.name || 'Guest', text: String(text), self: !!self, at: Date.now() };
    this.chat.push(line);
    if (this.chat.length > 500) this.chat.shift();
    this.dispatchEvent(new CustomEvent('chat', { detail: line }));
  }

  /**
   * A note in the chat (not a message: nobody sent it). One note per gap:
   * none right after another note, with no message between them (a server
   * restart soon after a rejoin is the same gap in what the user saw).
   */
  addChatNote(text) {
    if (this.chat.at(-1)?.note !== undefined) return;
    const line = { note: text, at: Date.now() };
    this.chat.push(line);
    if (this.chat.length > 500) this.chat.shift();
    this.dispatchEvent(new CustomEvent('chat', { detail: line }));
  }

  /** Sends an encrypted chat line; returns whether it went out. */
  sendChat(text) {
    const t = String(text ?? '').trim().slice(0, 2000);
    if (!t || !this.group) return false;
    if (!this.group.sendChat(t)) return false;
    this.addChat({ leaf: this.group.ownLeaf, text: t, self: true });
    return true;
  }

  /** Raises or lowers our hand (encrypted). */
  raiseHand(raised) {
    this.group?.raiseHand(!!raised);
  }

  get handRaised() {
    return !!this.group?.handRaised;
  }

  /**
   * E2EE state for the page and tests: epoch, security code (null until
   * someone else is in the group), membership, group size (`members`),
   * decrypt failures, frames decrypted per remote participant. No keys.
   */
  e2eeState() {
    const g = this.group;
    const w = this.media.stats;
    const perParticipant = {};
    let decryptFailures = 0;
    for (const r of Object.values(w.recv || {})) decryptFailures += r.failed;
    for (const t of this.remoteTracks) {
      const r = t.e2eeId ? w.recv?.[t.e2eeId] : null;
      if (!r) continue;
      const e = (perParticipant[t.participantId] ||= {
        video: 0, audio: 0, videoFailed: 0, audioFailed: 0, videoFailedBy: {}, replayed: 0, held: 0, waiting: false,
      });
      e[t.kind] += r.decrypted;
      e[`${t.kind}Failed`] += r.failed;
      e.held += r.held ?? 0;
      e.replayed += r.replayed ?? 0;
      if (t.kind === 'video') for (const [why, n] of Object.entries(r.failedBy || {})) e.videoFailedBy[why] = (e.videoFailedBy[why] ?? 0) + n;
      if (t.kind === 'video' && r.waiting) e.waiting = true;
    }
    // A one-person group's code (e.g. of the first page back after a server
    // restart) is nobody else's: it is not shown, nor is the note about it.
    const members = g?.isMember ? g.roster().size : 0;
    return {
      enabled: true,
      member: !!g?.isMember,
      members,
      epoch: g?.isMember ? g.epoch : null,
      leaf: g?.isMember ? g.ownLeaf : null,
      securityCode: members >= 2 ? g.securityCode : null,
      codeNote: this.codeNote,
      workerEpoch: w.epoch,
      framesSent: w.sent,
      sendDropped: w.sendDropped,
      decryptFailures,
      framesDecrypted: Object.fromEntries(Object.entries(perParticipant).map(([id, e]) => [id, e.video + e.audio])),
      perParticipant,
      groupErrors: g?.errors ?? 0,
      rejoins: g?.rejoins ?? 0,
      members: g?.isMember ? g.roster().size : null,
    };
  }

  /** Whether the video of participant `id` arrives but cannot be decrypted. */
  waitingForKeys(id) {
    const v = this.tracksOf(id).video;
    return !!(v?.e2eeId && this.media.stats.recv?.[v.e2eeId]?.waiting);
  }

  onServerError(msg) {
    const code = msg.code || 'internal';
    // The Delivery Service refusing an MLS message is the group's business
    // (e.g. a Welcome for a joiner who just left): counted, not shown.
    if (this.group && MLS_ERRORS.has(code)) {
      this.group.errors++;
      return;
    }
    // Before `joined`, an error about the join itself ends the attempt.
    const fatal = !!msg.fatal || (!this.connJoined && JOIN_ERRORS.has(code));
    const err = { code, message: msg.message || 'Server error', fatal };
    this.emitError(err);
    if (err.fatal) this.fail();
  }

  /**
   * The WebSocket or PeerConnection died, or the WebSocket did not open in
   * time (`timedOut`): start over after a back-off. Emits `retry` (detail:
   * {attempt, delayMs, timedOut}) before waiting.
   */
  connectionLost({ timedOut = false } = {}) {
    if (this.state === 'left' || this.state === 'failed') return;
    this.teardown();
    if (this.attempt >= RECONNECT_ATTEMPTS) {
      this.emitError({ code: 'client', message: 'Could not reach the server.', fatal: true });
      this.fail();
      return;
    }
    this.away.lost();
    const delay = reconnectDelayMs(this.attempt++);
    this.setState(this.selfId === null && this.state === 'connecting' ? 'connecting' : 'reconnecting');
    this.dispatchEvent(new CustomEvent('retry', { detail: { attempt: this.attempt, delayMs: delay, timedOut } }));
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  fail() {
    this.teardown();
    this.away.forget();
    this.setState('failed');
  }

  /** Closes the current WebSocket and PeerConnection, keeps local media. */
  teardown() {
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.graceTimer);
    window.clearTimeout(this.joinTimer);
    if (this.peer) this.peer.close();
    this.peer = null;
    if (this.group) this.group.close();
    this.group = null;
    if (this.signaling) this.signaling.close();
    this.signaling = null;
    // Until they are back (or known to be gone), the others stay listed.
    this.away.remember(this.participants.values());
    if (this.remoteTracks.length || this.participants.size) {
      this.remoteTracks = [];
      this.participants.clear();
      this.emitParticipants();
    }
  }

  /** Leaves the meeting for good (the caller stops local media). */
  leave() {
    this.teardown();
    this.away.forget();
    this.selfId = null;
    this.local.removeEventListener('tracks', this.onLocalTracks);
    this.setState('left');
  }

  /** Local tracks changed (device switch, camera on/off): swap them in. */
  async sendLocalTracks({ audio, video }) {
    if (!this.peer) return;
    await this.peer.setTrack('audio', audio);
    await this.peer.setTrack('video', this.local.cameraOff ? null : video);
  }

  setMicMuted(muted) {
    this.local.setMicMuted(muted);
    this.signaling?.setMuted('audio', muted || !this.local.audio);
  }

  async setCameraOff(off) {
    const track = await this.local.setCameraOff(off);
    this.signaling?.setMuted('video', off || !track);
    return track;
  }

  /** Remote tracks of participant `id`: {audio, video}, each {mid, track} or undefined. */
  tracksOf(id) {
    const out = {};
    for (const t of this.remoteTracks) if (t.participantId === id) out[t.kind] = t;
    return out;
  }

  /**
   * Current audio level (0..1) of each remote participant, from the RTP
   * audio level header extension as the receivers report it.
   */
  audioLevels() {
    const out = new Map();
    for (const t of this.remoteTracks) {
      if (t.kind !== 'audio') continue;
      const src = t.receiver.getSynchronizationSources?.()[0];
      if (src && performance.timeOrigin + performance.now() - src.timestamp < 1000) out.set(t.participantId, src.audioLevel ?? 0);
    }
    return out;
  }

  /** Tells the SFU the size the video on `mid` is rendered at (device pixels). */
  setRenderSize(mid, width, height, pinned = false) {
    this.peer?.setRenderSize(mid, width, height, pinned);
  }

  /**
   * Statistics for tests and diagnostics: connection state, own id, and per
   * remote participant their name and inbound-rtp counters.
   */
  async stats() {
    const remote = this.peer ? await this.peer.remoteStats() : [];
    const local = this.peer ? await this.peer.localStats().catch(() => null) : null;
    const participants = [...this.participants.values()].map((p) => {
      const mine = remote.filter((r) => r.participantId === p.id);
      const video = mine.find((r) => r.kind === 'video');
      const audio = mine.find((r) => r.kind === 'audio');
      return {
        id: p.id,
        name: p.name,
        audioMuted: p.audioMuted,
        videoMuted: p.videoMuted,
        framesDecoded: video?.framesDecoded ?? 0,
        frameWidth: video?.frameWidth ?? 0,
        frameHeight: video?.frameHeight ?? 0,
        videoBytesReceived: video?.bytesReceived ?? 0,
        audioBytesReceived: audio?.bytesReceived ?? 0,
        totalSamplesReceived: audio?.totalSamplesReceived ?? 0,
        video: video ? { ...video, layer: this.layers.get(video.mid) ?? null } : null,
        audio: audio || null,
      };
    });
    return {
      state: this.state,
      signaling: this.signaling?.state ?? 'closed',
      peerConnection: this.peer?.connectionState ?? 'closed',
      participantId: this.selfId,
      room: this.room,
      participants,
      local,
    };
  }
}
