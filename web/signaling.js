// Signaling: one WebSocket to the server's `/ws`, carrying the JSON messages
// of the Plenary signaling protocol (crates/plenary-proto). Every message is
// an object whose "type" is in snake_case.
//
// This module knows the wire format and nothing about media or the page:
// it sends messages, and re-emits each server message as a DOM event whose
// name is the message type (`joined`, `offer`, `participant_left`, ...), with
// the message as `event.detail`. It also emits `open` and `close`
// (detail: {code, reason, wasClean, byUser}).

/** Protocol version this client speaks (plenary_proto::PROTOCOL_VERSION). */
export const PROTOCOL_VERSION = 1;

/** Interval between keep-alive pings, in milliseconds. */
const PING_INTERVAL_MS = 15000;

/**
 * How long the WebSocket may take to open, in milliseconds: a server or
 * network that swallows the handshake would otherwise leave the page
 * "Connecting…" for minutes (the browser's own TCP timeout).
 */
export const CONNECT_TIMEOUT_MS = 10000;

/** The WebSocket did not open within the connect timeout. */
export class ConnectTimeoutError extends Error {
  constructor(ms) {
    super(`The server did not answer within ${Math.round(ms / 1000)} s.`);
    this.name = 'ConnectTimeoutError';
  }
}

/** The WebSocket URL on the page's own origin. */
export function signalingUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

export class Signaling extends EventTarget {
  /** @param {string} url WebSocket URL, normally `signalingUrl()`. */
  constructor(url) {
    super();
    this.url = url;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.closedByUser = false;
    this.pingTimer = 0;
    this.pingId = 0;
  }

  /** `connecting`, `open`, `closing` or `closed`. */
  get state() {
    if (!this.ws) return 'closed';
    return ['connecting', 'open', 'closing', 'closed'][this.ws.readyState];
  }

  /**
   * Opens the WebSocket. Resolves once it is open; rejects if it closes
   * before opening, or with a ConnectTimeoutError (and closes it) if it is
   * not open after `timeoutMs`.
   */
  connect(timeoutMs = CONNECT_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      const timer = window.setTimeout(() => {
        reject(new ConnectTimeoutError(timeoutMs));
        // Its close event follows; the caller has moved on by then.
        ws.close();
      }, timeoutMs);
      ws.addEventListener('open', () => {
        window.clearTimeout(timer);
        opened = true;
        this.pingTimer = window.setInterval(() => this.send({ type: 'ping', id: ++this.pingId }), PING_INTERVAL_MS);
        this.dispatchEvent(new CustomEvent('open'));
        resolve();
      });
      ws.addEventListener('message', (ev) => this.onMessage(ev));
      ws.addEventListener('close', (ev) => {
        window.clearTimeout(timer);
        window.clearInterval(this.pingTimer);
        if (this.ws === ws) this.ws = null;
        if (!opened) reject(new Error(`WebSocket closed before opening (code ${ev.code})`));
        this.dispatchEvent(new CustomEvent('close', {
          detail: { code: ev.code, reason: ev.reason, wasClean: ev.wasClean, byUser: this.closedByUser },
        }));
      });
    });
  }

  onMessage(ev) {
    if (typeof ev.data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      console.warn('plenary: ignoring a signaling message that is not JSON');
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
  }

  /** Sends one message object; dropped (returns false) when not open. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * `join`: enter `room` of the meeting `roomTag` (from the link's secret)
   * with an opaque `profile` string.
   */
  join(room, roomTag, profile) {
    return this.send({ type: 'join', room, room_tag: roomTag, profile, version: PROTOCOL_VERSION });
  }

  offer(sdp) { return this.send({ type: 'offer', sdp }); }

  answer(sdp) { return this.send({ type: 'answer', sdp }); }

  /** @param {'audio'|'video'} kind */
  setMuted(kind, muted) { return this.send({ type: 'set_muted', kind, muted }); }

  /**
   * Rendered size of the remote video on `mid`, in device pixels (0x0:
   * hidden), and whether the user pinned it (served first when bandwidth is short).
   */
  layerPreference(mid, width, height, pinned = false) {
    return this.send({ type: 'layer_preference', mid, width, height, ...(pinned ? { pinned: true } : {}) });
  }

  /** Sends `leave` (if open) and closes the socket. */
  close() {
    this.closedByUser = true;
    window.clearInterval(this.pingTimer);
    if (this.ws) {
      this.send({ type: 'leave' });
      this.ws.close(1000, 'leave');
    }
  }
}
