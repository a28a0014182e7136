// The meeting page (/m/<room>): switches between its views (pre-join,
// meeting, left, failed), wires the controls to the MeetingSession, and
// renders the grid, the participant list and the connection state.
//
// `?name=NAME&autojoin=1` skips the pre-join screen and joins at once with
// the default devices (or none, if they cannot be opened).
//
// Every meeting is end-to-end encrypted: the link is `/m/<room>#<secret>`
// (the fragment never reaches the server). A link whose fragment is missing
// or not a valid secret shows "This link is incomplete" and does not join
// (no WebSocket, no plenary-wasm).
//
// For tests and diagnostics, `window.plenary` exposes the session:
// `await plenary.stats()` gives the connection state and, per remote
// participant, name and inbound-rtp counters (see MeetingSession.stats);
// `plenary.e2ee()` the encryption state (see MeetingSession.e2eeState).

import { roomFromPath } from './room.js';
import { LocalMedia } from './local-media.js';
import { MeetingSession, cleanName, nowMs, CODE_NOTE } from './session.js';
import { PreJoin, fillSelect } from './prejoin.js';
import { Grid } from './grid.js';
import { renderPeople } from './people.js';
import { fillIcons, setIcon } from './icons.js';
import { secretFromHash, loadWasm, MediaE2ee } from './e2ee.js';

const $ = (id) => document.getElementById(id);

const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  failed: 'Connection failed',
  left: 'Left',
};

/** Shows one of the page's views: prejoin, meeting, left, failed, bad-room. */
function showView(name) {
  document.body.dataset.view = name;
  for (const id of ['prejoin', 'meeting', 'left', 'failed', 'bad-room', 'bad-link']) $(id).hidden = id !== name;
  $('controls').hidden = name !== 'meeting';
}

/**
 * A short message at the bottom of the screen; `action` adds a button;
 * `who` (a participant's name) comes first, bidi-isolated (<bdi>, as in the
 * chat) so that it cannot reorder the text after it.
 */
function toast(text, { kind = 'info', ms = 4000, action = null, who = null } = {}) {
  const el = document.createElement('div');
  el.className = `toast toast-${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const span = document.createElement('span');
  if (who !== null) {
    const name = document.createElement('bdi');
    name.className = 'toast-who';
    name.textContent = who;
    span.append(name);
  }
  span.append(text);
  el.appendChild(span);
  if (action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-sm btn-secondary';
    b.textContent = action.label;
    b.addEventListener('click', () => {
      action.run();
      el.remove();
    });
    el.appendChild(b);
  }
  $('toasts').appendChild(el);
  if (ms) setTimeout(() => el.remove(), ms);
  return el;
}

/** Copies the meeting link (with its fragment) to the clipboard. */
async function copyLink(room) {
  const link = `${location.origin}/m/${encodeURIComponent(room)}${location.hash}`;
  try {
    await navigator.clipboard.writeText(link);
    toast('Meeting link copied');
  } catch {
    toast(`Meeting link: ${link}`, { ms: 10000 });
  }
}

function formatElapsed(ms) {
  const s = Math.floor(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

class MeetingPage {
  /** @param {string} room @param {string} secret the meeting secret from the fragment */
  constructor(room, secret) {
    this.room = room;
    this.secret = secret;
    /** @type {MediaE2ee|null} */
    this.media = null;
    this.unreadChat = 0;
    this.local = new LocalMedia();
    /** @type {MeetingSession|null} */
    this.session = null;
    this.name = '';
    this.soundToast = null;
    this.joinedAt = 0;
    this.clockTimer = 0;
    this.grid = new Grid({
      grid: $('grid'),
      stage: $('stage'),
      audioSink: $('audio-sink'),
      template: $('tile-template'),
      onRenderSize: (mid, w, h, pinned) => this.session?.setRenderSize(mid, w, h, pinned),
      onAutoplayBlocked: () => this.askForSound(),
    });
    this.wireControls();
    this.local.addEventListener('tracks', () => this.render());
  }

  wireControls() {
    $('mic-button').addEventListener('click', () => this.toggleMic());
    $('cam-button').addEventListener('click', () => this.toggleCamera());
    $('leave-button').addEventListener('click', () => this.leave());
    $('people-button').addEventListener('click', () => this.togglePeople());
    $('people-close').addEventListener('click', () => this.togglePeople(false));
    $('chat-button').addEventListener('click', () => this.toggleChat());
    $('chat-close').addEventListener('click', () => this.toggleChat(false));
    $('chat-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('chat-input');
      if (this.session?.sendChat(input.value)) input.value = '';
      else if (input.value.trim()) toast('The message could not be sent yet: still joining the encrypted meeting.', { kind: 'warn' });
    });
    $('hand-button').addEventListener('click', () => this.toggleHand());
    const showCode = (show) => {
      $('e2ee-info').hidden = !show;
      $('e2ee-badge').setAttribute('aria-expanded', String(show));
      // A note about a new code stays until the user has seen it.
      if (show && !$('security-code-note').hidden) this.codeNoteSeen = true;
      if (!show && this.codeNoteSeen) {
        this.codeNoteSeen = false;
        this.session?.clearCodeNote();
        this.renderE2ee();
      }
    };
    $('e2ee-badge').addEventListener('click', () => showCode($('e2ee-info').hidden));
    // Closes on Escape or a click elsewhere.
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') showCode(false);
    });
    document.addEventListener('click', (ev) => {
      if (!$('e2ee-info').hidden && !ev.target.closest?.('.e2ee-wrap')) showCode(false);
    });
    for (const id of ['copy-link', 'copy-link-top', 'copy-link-alone']) {
      $(id).addEventListener('click', () => copyLink(this.room));
    }
    $('settings-button').addEventListener('click', () => this.openSettings());
    $('settings-mic').addEventListener('change', (ev) => this.local.selectDevice('audio', ev.target.value));
    $('settings-cam').addEventListener('change', (ev) => this.local.selectDevice('video', ev.target.value));
    $('rejoin-button').addEventListener('click', () => this.rejoin());
    $('retry-button').addEventListener('click', () => this.rejoin());
    document.addEventListener('keydown', (ev) => {
      if (document.body.dataset.view !== 'meeting' || !(ev.ctrlKey || ev.metaKey)) return;
      const key = ev.key.toLowerCase();
      if (key === 'd') {
        ev.preventDefault();
        this.toggleMic();
      } else if (key === 'e') {
        ev.preventDefault();
        this.toggleCamera();
      }
    });
  }

  /** Pre-join screen, then the meeting. */
  async runPreJoin(suggestedName) {
    showView('prejoin');
    const name = await new PreJoin(this.local).run(suggestedName);
    this.joinPressedAt = nowMs();
    this.join(name);
  }

  /** Joins without the pre-join screen, with default devices (or none). */
  async autoJoin(name) {
    showView('meeting');
    this.setConnState('connecting');
    this.joinPressedAt = nowMs();
    await this.local.start();
    this.join(name);
  }

  /** Loads plenary-wasm and starts the media worker (once). */
  prepareE2ee() {
    this.e2eeReady ||= loadWasm().then(() => {
      this.wasmReadyAt = nowMs();
      this.media = new MediaE2ee();
      this.media.addEventListener('stats', () => this.onMediaStats());
    });
    return this.e2eeReady;
  }

  join(name) {
    this.name = cleanName(name) || 'Guest';
    showView('meeting');
    if (!this.media) {
      this.prepareE2ee().then(() => this.join(name), (err) => {
        console.error('plenary: could not load end-to-end encryption:', String(err?.message ?? err));
        $('failed-message').textContent = 'End-to-end encryption could not be started in this browser.';
        showView('failed');
      });
      return;
    }
    // Rejoining from the left or failed view: the chat so far stays, and
    // new keys are news.
    const session = new MeetingSession({
      room: this.room, name: this.name, local: this.local, secret: this.secret, media: this.media, rejoined: !!this.joinedBefore,
    });
    this.joinedBefore = true;
    this.session = session;
    this.retryNote = null;
    session.addEventListener('e2ee', () => this.renderE2ee());
    session.addEventListener('chat', (ev) => this.onChat(ev.detail));
    // The hand icon on a tile is easy to miss: a raise is also said (not the lowering).
    session.addEventListener('hand', (ev) => toast(' raised their hand', { who: ev.detail.name || 'Someone', ms: 5000 }).classList.add('toast-hand'));
    this.unreadChat = 0;
    this.renderE2ee();
    session.addEventListener('state', (ev) => this.onState(ev.detail));
    session.addEventListener('retry', (ev) => this.onRetry(ev.detail));
    session.addEventListener('participants', () => this.render());
    session.addEventListener('error', (ev) => this.onError(ev.detail));
    session.addEventListener('quality', (ev) => this.onQuality(ev.detail));
    session.addEventListener('active_speaker', (ev) => this.grid.setActiveSpeaker(ev.detail.participant_id));
    session.addEventListener('connection_quality', (ev) => this.grid.setPoorConnection(ev.detail.participant_id, ev.detail.poor));
    this.quality = null;
    this.joinedAt = Date.now();
    window.clearInterval(this.clockTimer);
    this.clockTimer = window.setInterval(() => this.tickClock(), 1000);
    window.clearInterval(this.levelTimer);
    this.levelTimer = window.setInterval(() => this.grid.setSpeaking(this.session?.audioLevels() ?? new Map()), 300);
    this.tickClock();
    session.join();
    this.render();
  }

  /**
   * The server's report on our downlink (`quality`): the bandwidth estimate
   * and the simulcast layer of each remote video, shown on the connection
   * indicator (hover) and kept for `plenary.quality()`.
   */
  onQuality(msg) {
    this.quality = { at: Date.now(), ...msg };
    const names = this.session?.participants ?? new Map();
    const lines = [msg.estimate_bps ? `Download estimate: ${formatBitrate(msg.estimate_bps)}` : 'Download estimate: measuring…'];
    for (const t of msg.tracks || []) {
      const who = names.get(t.participant_id)?.name || 'Guest';
      const layer = t.rid ? `${t.height ? `${t.height}p` : t.rid}${t.limited ? ' (limited by bandwidth)' : ''}` : (t.limited ? 'off (bandwidth)' : 'none');
      lines.push(`${who}: ${layer}`);
    }
    const el = $('conn-state');
    el.title = lines.join('\n');
    el.dataset.estimate = String(msg.estimate_bps ?? '');
    el.classList.toggle('limited', (msg.tracks || []).some((t) => t.limited));
  }

  tickClock() {
    $('clock').textContent = formatElapsed(Date.now() - this.joinedAt);
  }

  onState(state) {
    this.setConnState(state);
    this.render();
    if (state === 'failed') {
      const err = this.session?.lastError;
      $('failed-message').textContent = err?.message || 'The server cannot be reached.';
      this.grid.clear();
      this.local.stop();
      window.clearInterval(this.clockTimer);
      window.clearInterval(this.levelTimer);
      showView('failed');
    }
  }

  setConnState(state) {
    $('reconnect-banner').hidden = state !== 'reconnecting';
    const el = $('conn-state');
    el.dataset.state = state;
    if (state !== 'connecting' && state !== 'reconnecting') this.retryNote = null;
    $('conn-text').textContent = this.retryNote || STATE_TEXT[state] || state;
  }

  /** The server did not answer in time: say so while the next attempt waits. */
  onRetry({ attempt, timedOut }) {
    this.retryNote = timedOut ? `No answer from the server, trying again (attempt ${attempt + 1})…` : null;
    this.setConnState(this.session?.state ?? 'connecting');
  }

  onError(err) {
    if (err.fatal) return; // shown by the failed view
    toast(err.message, { kind: 'error', ms: 6000 });
  }

  askForSound() {
    if (this.soundToast?.isConnected) return;
    this.soundToast = toast('Your browser blocked sound from the meeting.', {
      kind: 'warn',
      ms: 0,
      action: { label: 'Enable sound', run: () => this.grid.resumeAudio() },
    });
  }

  toggleMic() {
    if (!this.session) return;
    if (!this.local.audio && this.local.micMuted === false) {
      toast('No microphone is available.', { kind: 'warn' });
    }
    this.session.setMicMuted(!this.local.micMuted);
    this.render();
  }

  async toggleCamera() {
    if (!this.session) return;
    const track = await this.session.setCameraOff(!this.local.cameraOff);
    if (!this.local.cameraOff && !track) {
      toast('The camera could not be started.', { kind: 'warn' });
      await this.session.setCameraOff(true);
    }
    this.render();
  }

  /** The device settings dialog: switch microphone or camera mid-meeting. */
  async openSettings() {
    const list = await this.local.devices();
    fillSelect($('settings-mic'), list.audio, this.local.currentDeviceId('audio'), 'No microphone');
    fillSelect($('settings-cam'), list.video, this.local.currentDeviceId('video'), 'No camera');
    $('settings').showModal();
  }

  togglePeople(open) {
    const panel = $('people-panel');
    const show = open ?? panel.hidden;
    panel.hidden = !show;
    $('people-button').setAttribute('aria-pressed', String(show));
    $('people-button').setAttribute('aria-label', show ? 'Hide participants' : 'Show participants');
    this.grid.layout();
  }

  /** Security code and lock. */
  renderE2ee() {
    const st = this.session?.e2eeState();
    const waiting = st?.member ? 'Nobody else is here yet: the code to compare comes when someone joins.' : 'Joining the encrypted meeting…';
    $('security-code').textContent = st?.securityCode || waiting;
    const note = st?.securityCode && st.codeNote ? CODE_NOTE[st.codeNote] : null;
    $('security-code-note').textContent = note ?? '';
    $('security-code-note').hidden = !note;
    $('e2ee-new-code').hidden = !note;
    const raised = !!this.session?.handRaised;
    const hand = $('hand-button');
    hand.setAttribute('aria-pressed', String(raised));
    hand.setAttribute('aria-label', raised ? 'Lower hand' : 'Raise hand');
    hand.classList.toggle('raised', raised);
  }

  onMediaStats() {
    const s = this.session;
    if (!s) return;
    const waiting = new Set();
    for (const p of s.participants.values()) if (s.waitingForKeys(p.id)) waiting.add(p.id);
    this.grid.setWaiting(waiting);
  }

  toggleHand() {
    if (!this.session) return;
    this.session.raiseHand(!this.session.handRaised);
    this.renderE2ee();
    this.render();
  }

  toggleChat(open) {
    const panel = $('chat-panel');
    const show = open ?? panel.hidden;
    panel.hidden = !show;
    if (show) $('people-panel').hidden = true;
    $('chat-button').setAttribute('aria-pressed', String(show));
    $('chat-button').setAttribute('aria-label', show ? 'Hide chat' : 'Show chat');
    if (show) {
      this.unreadChat = 0;
      $('chat-badge').hidden = true;
      $('chat-input').focus();
    }
    this.grid.layout();
  }

  /** One chat line, or a note; written with textContent only. */
  onChat(line) {
    const list = $('chat-list');
    if (line.note) {
      const li = document.createElement('li');
      li.className = 'chat-note';
      li.setAttribute('role', 'note');
      li.textContent = line.note;
      list.appendChild(li);
      list.scrollTop = list.scrollHeight;
      return;
    }
    const li = document.createElement('li');
    li.className = 'chat-line';
    li.dataset.self = String(line.self);
    const from = document.createElement('span');
    from.className = 'chat-from';
    from.textContent = line.self ? 'You' : line.name;
    const text = document.createElement('span');
    text.className = 'chat-text';
    text.textContent = line.text;
    li.append(from, text);
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
    if ($('chat-panel').hidden && !line.self) {
      this.unreadChat++;
      $('chat-badge').textContent = String(this.unreadChat);
      $('chat-badge').hidden = false;
    }
  }

  leave() {
    this.session?.leave();
    this.session = null;
    this.local.stop();
    window.clearInterval(this.clockTimer);
    window.clearInterval(this.levelTimer);
    this.grid.clear();
    this.setConnState('left');
    showView('left');
  }

  /** From the left or failed view: open devices again and join. */
  async rejoin() {
    this.session?.leave();
    this.session = null;
    showView('meeting');
    this.setConnState('connecting');
    await this.local.start();
    this.join(this.name);
  }

  /** Renders everything that depends on the session: grid, list, buttons. */
  render() {
    const s = this.session;
    if (!s) return;
    const micMuted = this.local.micMuted || !this.local.audio;
    const cameraOff = this.local.cameraOff || !this.local.video;
    const remotes = s.remoteView();
    const self = { name: this.name, track: this.local.video, micMuted, cameraOff, handRaised: s.handRaised };
    this.grid.update({ self, remotes });
    renderPeople($('people-list'), self, remotes);
    const count = String(remotes.length + 1);
    $('people-count').textContent = count;
    $('people-badge').textContent = count;
    $('alone').hidden = remotes.length > 0 || s.state !== 'connected';
    document.body.classList.toggle('is-alone', remotes.length === 0);

    const mic = $('mic-button');
    mic.setAttribute('aria-pressed', String(micMuted));
    mic.setAttribute('aria-label', micMuted ? 'Unmute microphone' : 'Mute microphone');
    mic.classList.toggle('off', micMuted);
    setIcon(mic, micMuted ? 'mic-off' : 'mic');
    const cam = $('cam-button');
    cam.setAttribute('aria-pressed', String(cameraOff));
    cam.setAttribute('aria-label', cameraOff ? 'Turn on camera' : 'Turn off camera');
    cam.classList.toggle('off', cameraOff);
    setIcon(cam, cameraOff ? 'video-off' : 'video');
  }
}

function formatBitrate(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

function main() {
  fillIcons();
  const room = roomFromPath(location.pathname);
  if (!room) {
    showView('bad-room');
    return;
  }
  // The meeting secret lives only in the fragment, which browsers never send.
  const fragment = secretFromHash(location.hash);
  if (fragment.status !== 'valid') {
    showView('bad-link');
    return;
  }
  const { secret } = fragment;
  $('room-id').textContent = room;
  $('prejoin-room').textContent = room;
  document.title = `${room} · Plenary`;
  const page = new MeetingPage(room, secret);
  // Start loading the encryption early, while the pre-join screen shows.
  page.prepareE2ee().catch(() => {});

  window.plenary = {
    /** Connection state and per-participant receive statistics. */
    stats: async () => (page.session ? page.session.stats() : { state: 'idle', participants: [] }),
    get state() {
      return page.session?.state ?? 'idle';
    },
    setMicMuted: (muted) => {
      if (page.local.micMuted !== muted) page.toggleMic();
    },
    setCameraOff: async (off) => {
      if (page.local.cameraOff !== off) await page.toggleCamera();
    },
    leave: () => page.leave(),
    /** E2EE state: epoch, security code, decrypt failures, frames decrypted per participant. */
    e2ee: () => (page.session ? page.session.e2eeState() : { enabled: true }),
    sendChat: (text) => page.session?.sendChat(text) ?? false,
    /** Join timings in ms since the Unix epoch: `pressed` (Join), `wasm` (plenary-wasm loaded), and MeetingSession.timings(). */
    timings: () => ({ pressed: page.joinPressedAt, wasm: page.wasmReadyAt, ...page.session?.timings() }),
    raiseHand: (raised) => page.session?.raiseHand(raised),
    /** Last `quality` report: estimate_bps and the layer per remote video (mid, participant_id, rid, limited). */
    quality: () => page.quality,
    /** Active speaker and poor-connection marks as the grid shows them. */
    tiles: () => page.grid.state(),
  };

  const params = new URLSearchParams(location.search);
  const name = cleanName(params.get('name') || '');
  if (params.get('autojoin') === '1' && name) page.autoJoin(name);
  else page.runPreJoin(name);
  window.addEventListener('pagehide', () => page.session?.leave());
}

main();
