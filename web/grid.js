// The participant grid: one tile per participant (own tile first, mirrored
// and muted), laid out to use the stage as well as possible, plus one hidden
// <audio> element per remote audio track. Tiles are keyed by the
// participant's `tileKey`, which survives a reconnect; a participant of a
// lost connection (`away`) keeps its tile, greyed, marked "Reconnecting…".
//
// It reports the size at which each remote video is rendered, in device
// pixels (0x0 when hidden), through `onRenderSize(mid, width, height)`, so the
// SFU can forward the simulcast layer that fits. User data (names) is only
// ever written with textContent.

import { icon } from './icons.js';

/** Whether the tile holding `video` is pinned by the user. */
function isPinned(video) {
  return !!video.closest('.tile')?.classList.contains('pinned');
}

/** Width over height of a tile. */
const TILE_ASPECT = 16 / 9;
/** Gap between tiles, CSS pixels (matches style.css). */
const GAP = 10;

/** Up to two initials of a name, for the avatar shown without video. */
/** What a remote participant is called before its encrypted profile came. */
export const JOINING_LABEL = 'Joining…';

/**
 * What to call remote participant `p`: its name; until its encrypted
 * profile came (`profiled` false: the name is not known yet, never "Guest"
 * for a moment), JOINING_LABEL; "Guest" if its profile has no name.
 */
export function remoteLabel(p) {
  return p.name || (p.profiled || p.away ? 'Guest' : JOINING_LABEL);
}

export function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  if (!words.length) return '?';
  const letters = words.length === 1 ? Array.from(words[0]).slice(0, 1) : [Array.from(words[0])[0], Array.from(words[words.length - 1])[0]];
  return letters.join('').toUpperCase();
}

/** A stable hue (0-359) for a name, so an avatar keeps its colour. */
export function hue(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

export class Grid {
  /**
   * @param {{grid: HTMLElement, stage: HTMLElement, audioSink: HTMLElement,
   *          template: HTMLTemplateElement,
   *          onRenderSize: (mid: string, w: number, h: number, pinned: boolean) => void,
   *          onAutoplayBlocked: () => void}} opts
   */
  constructor({ grid, stage, audioSink, template, onRenderSize, onAutoplayBlocked }) {
    this.gridEl = grid;
    this.stage = stage;
    this.audioSink = audioSink;
    this.template = template;
    this.onRenderSize = onRenderSize;
    this.onAutoplayBlocked = onAutoplayBlocked;
    /** @type {Map<string, {el: HTMLElement, video: HTMLVideoElement, track: MediaStreamTrack|null, mid: string|null}>} */
    this.tiles = new Map();
    /** @type {Map<string, {el: HTMLAudioElement, track: MediaStreamTrack}>} */
    this.audios = new Map();
    this.videoMids = new WeakMap();
    /** Key of the tile the user pinned (shown large, served first), or null. */
    this.pinned = null;
    this.sizeObserver = new ResizeObserver((entries) => this.onVideoResize(entries));
    this.stageObserver = new ResizeObserver(() => this.layout());
    this.stageObserver.observe(stage);
    // A page in the background shows no video: ask for none, and for the
    // rendered sizes again when it is back.
    document.addEventListener('visibilitychange', () => {
      for (const tile of this.tiles.values()) this.reportSize(tile.video);
    });
  }

  /**
   * Brings the tiles in line with the meeting.
   * @param {{self: {name: string, track: MediaStreamTrack|null, micMuted: boolean, cameraOff: boolean},
   *          remotes: Array<{id: number|null, tileKey: string, away?: boolean, name: string, audioMuted: boolean, videoMuted: boolean,
   *                          video?: {mid: string, track: MediaStreamTrack}, audio?: {mid: string, track: MediaStreamTrack}}>}} view
   */
  update({ self, remotes }) {
    const seen = new Set(['self']);
    this.renderTile('self', {
      name: self.name,
      label: `${self.name} (You)`,
      track: self.cameraOff ? null : self.track,
      mid: null,
      audioMuted: self.micMuted,
      videoMuted: self.cameraOff || !self.track,
      isSelf: true,
      handRaised: !!self.handRaised,
    });
    for (const p of remotes) {
      const key = p.tileKey;
      seen.add(key);
      this.renderTile(key, {
        name: p.name,
        label: remoteLabel(p),
        track: p.video?.track ?? null,
        mid: p.video?.mid ?? null,
        audioMuted: p.audioMuted,
        videoMuted: p.videoMuted || !p.video,
        isSelf: false,
        participantId: p.id,
        handRaised: !!p.handRaised,
        waitingKeys: !!p.waitingKeys,
        away: !!p.away,
      });
    }
    for (const [key, tile] of this.tiles) {
      if (seen.has(key)) continue;
      this.sizeObserver.unobserve(tile.video);
      tile.video.srcObject = null;
      tile.el.remove();
      this.tiles.delete(key);
    }
    if (this.pinned && !this.tiles.has(this.pinned)) this.pinned = null;
    this.updateAudio(remotes);
    this.applySpeakers();
    this.applyPoor();
    this.layout();
  }

  renderTile(key, t) {
    let tile = this.tiles.get(key);
    if (!tile) {
      const el = this.template.content.firstElementChild.cloneNode(true);
      const video = el.querySelector('video');
      tile = { el, video, track: null, mid: null };
      const pin = el.querySelector('.tile-pin');
      if (t.isSelf) {
        el.classList.add('tile-self');
        video.classList.add('mirror');
        pin?.remove();
      } else {
        pin?.addEventListener('click', () => this.togglePin(key));
        this.sizeObserver.observe(video, { box: 'device-pixel-content-box' });
        video.addEventListener('resize', () => el.classList.toggle('has-frames', video.videoWidth > 0));
      }
      this.tiles.set(key, tile);
      this.gridEl.appendChild(el);
    }
    const { el, video } = tile;
    /** Participant id of the current connection (null: own tile, or away). */
    tile.pid = t.isSelf ? null : t.participantId ?? null;
    el.dataset.participant = t.isSelf ? 'self' : String(t.participantId ?? '');
    el.classList.toggle('away', !!t.away);
    const awayEl = el.querySelector('.tile-away');
    if (awayEl) awayEl.hidden = !t.away;
    // Away: the picture ended with the connection; the avatar shows, greyed.
    el.classList.toggle('video-off', t.videoMuted || !!t.away);
    el.classList.toggle('audio-off', t.audioMuted);
    const nameEl = el.querySelector('.tile-name');
    nameEl.textContent = t.label;
    nameEl.title = t.label;
    const avatar = el.querySelector('.avatar');
    avatar.textContent = t.name || t.label !== JOINING_LABEL ? initials(t.name || t.label) : '…';
    avatar.style.setProperty('--hue', String(hue(t.name || '')));
    const mic = el.querySelector('.tile-mic');
    mic.hidden = !t.audioMuted;
    if (t.audioMuted && !mic.firstChild) mic.appendChild(icon('mic-off', 14));
    mic.setAttribute('aria-label', t.audioMuted ? 'Microphone off' : '');
    // An icon, not the ✋ emoji: Debian's Chromium has no emoji font and
    // showed an empty box.
    const hand = el.querySelector('.tile-hand');
    hand.hidden = !t.handRaised;
    if (t.handRaised && !hand.firstChild) hand.appendChild(icon('hand', 14));
    this.setTileWaiting(tile, !!t.waitingKeys);

    if (tile.track !== t.track) {
      tile.track = t.track;
      el.classList.remove('has-frames');
      video.srcObject = t.track ? new MediaStream([t.track]) : null;
      if (t.track) {
        video.play().catch(() => {});
        if (t.isSelf) el.classList.add('has-frames');
      }
    }
    if (tile.mid !== t.mid) {
      tile.mid = t.mid;
      if (t.mid) this.videoMids.set(video, t.mid);
      else this.videoMids.delete(video);
      this.reportSize(video);
    }
  }

  /** One <audio> per remote audio track (video elements stay muted). */
  updateAudio(remotes) {
    const want = new Map();
    for (const p of remotes) if (p.audio) want.set(p.audio.mid, p.audio.track);
    for (const [mid, a] of this.audios) {
      if (want.get(mid) === a.track) continue;
      a.el.srcObject = null;
      a.el.remove();
      this.audios.delete(mid);
    }
    for (const [mid, track] of want) {
      if (this.audios.has(mid)) continue;
      const el = document.createElement('audio');
      el.autoplay = true;
      el.srcObject = new MediaStream([track]);
      this.audioSink.appendChild(el);
      this.audios.set(mid, { el, track });
      el.play().catch(() => this.onAutoplayBlocked());
    }
  }

  /**
   * Shows "Waiting for keys…" instead of the picture on the tiles of the
   * participants in `ids` (their frames arrive but cannot be decrypted).
   */
  setWaiting(ids) {
    for (const [key, tile] of this.tiles) {
      if (key !== 'self') this.setTileWaiting(tile, tile.pid !== null && ids.has(tile.pid));
    }
  }

  setTileWaiting(tile, waiting) {
    tile.el.classList.toggle('waiting-keys', waiting);
    const w = tile.el.querySelector('.tile-waiting');
    if (w) w.hidden = !waiting;
  }

  /** Highlights the tiles of participants whose audio level is above a threshold. */
  setSpeaking(levels) {
    for (const [key, tile] of this.tiles) {
      if (key === 'self') continue;
      const level = levels.get(tile.pid) ?? 0;
      tile.el.classList.toggle('speaking', level > 0.04 && !tile.el.classList.contains('audio-off'));
    }
  }

  /**
   * Highlights the server's active speaker (`active_speaker`) and moves
   * the most recent speakers to the front, right after the own tile, so
   * they stay in view when the room has more tiles than fit.
   * @param {number} id
   */
  setActiveSpeaker(id) {
    this.recentSpeakers = [id, ...(this.recentSpeakers || []).filter((x) => x !== id)].slice(0, 16);
    this.applySpeakers();
  }

  applySpeakers() {
    const recent = this.recentSpeakers || [];
    for (const [key, tile] of this.tiles) {
      if (key === 'self') continue;
      const rank = tile.pid === null ? -1 : recent.indexOf(tile.pid);
      tile.el.classList.toggle('active-speaker', rank === 0);
      tile.el.style.order = key === this.pinned ? '-1' : rank < 0 ? '100' : String(rank + 1);
    }
  }

  /**
   * Pins the tile `key` (or unpins it if it is pinned): it is shown large,
   * first, and its video is served first when bandwidth is short (the
   * `pinned` flag of `layer_preference`).
   */
  togglePin(key) {
    this.pinned = this.pinned === key ? null : key;
    for (const [k, tile] of this.tiles) {
      const on = k === this.pinned;
      tile.el.classList.toggle('pinned', on);
      const b = tile.el.querySelector('.tile-pin');
      if (b) {
        b.setAttribute('aria-pressed', String(on));
        b.setAttribute('aria-label', on ? 'Unpin' : 'Pin');
        b.textContent = on ? 'Unpin' : 'Pin';
      }
    }
    this.applySpeakers();
    this.layout();
    for (const tile of this.tiles.values()) this.reportSize(tile.video);
  }

  /**
   * Shows "Poor connection" over a participant's tile instead of a frozen
   * picture while the server says its uplink cannot carry video.
   * @param {number} id
   * @param {boolean} poor
   */
  setPoorConnection(id, poor) {
    this.poor = this.poor || new Set();
    if (poor) this.poor.add(id);
    else this.poor.delete(id);
    this.applyPoor();
  }

  applyPoor() {
    for (const [key, tile] of this.tiles) {
      if (key === 'self') continue;
      const poor = tile.pid !== null && !!this.poor?.has(tile.pid);
      tile.el.classList.toggle('poor-connection', poor);
      let badge = tile.el.querySelector('.tile-poor');
      if (poor && !badge) {
        badge = document.createElement('div');
        badge.className = 'tile-poor';
        badge.setAttribute('role', 'status');
        badge.textContent = 'Poor connection';
        tile.el.appendChild(badge);
      }
      if (badge) badge.hidden = !poor;
      tile.video.style.visibility = poor ? 'hidden' : '';
    }
  }

  /** What the tiles show: the highlighted speaker and the poor-connection marks, in display order. */
  state() {
    const remote = [...this.tiles].filter(([k]) => k !== 'self');
    remote.sort((a, b) => Number(a[1].el.style.order || 100) - Number(b[1].el.style.order || 100));
    return remote.map(([, t]) => ({
      id: t.pid,
      away: t.el.classList.contains('away'),
      activeSpeaker: t.el.classList.contains('active-speaker'),
      poorConnection: t.el.classList.contains('poor-connection'),
    }));
  }

  /** Retries playing remote audio after a user gesture. */
  resumeAudio() {
    for (const a of this.audios.values()) a.el.play().catch(() => {});
  }

  onVideoResize(entries) {
    for (const entry of entries) {
      const mid = this.videoMids.get(entry.target);
      if (!mid || document.hidden) continue;
      const box = entry.devicePixelContentBoxSize?.[0];
      const w = box ? box.inlineSize : entry.contentRect.width * devicePixelRatio;
      const h = box ? box.blockSize : entry.contentRect.height * devicePixelRatio;
      this.onRenderSize(mid, w, h, isPinned(entry.target));
    }
  }

  reportSize(video) {
    const mid = this.videoMids.get(video);
    if (!mid) return;
    if (document.hidden) {
      this.onRenderSize(mid, 0, 0);
      return;
    }
    const r = video.getBoundingClientRect();
    this.onRenderSize(mid, r.width * devicePixelRatio, r.height * devicePixelRatio, isPinned(video));
  }

  /**
   * Chooses the number of columns that gives the largest tiles for the
   * stage's size, and sizes the tiles to it.
   */
  layout() {
    const n = this.tiles.size;
    if (!n) return;
    const style = getComputedStyle(this.stage);
    const W = this.stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const H = this.stage.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    if (W <= 0 || H <= 0) return;
    if (this.pinned && this.tiles.has(this.pinned) && n > 1) {
      // The pinned tile large on top, the others in a strip below it.
      const others = n - 1;
      const stripH = Math.max(H * 0.22, 60);
      const pinW = Math.floor(Math.min(W, (H - stripH - GAP) * TILE_ASPECT));
      const smallW = Math.floor(Math.min((W - GAP * (others - 1)) / others, stripH * TILE_ASPECT));
      this.gridEl.style.setProperty('--cols', String(others));
      this.gridEl.style.setProperty('--tile-w', `${smallW}px`);
      this.gridEl.style.setProperty('--pin-w', `${pinW}px`);
      this.gridEl.style.width = `${Math.max(pinW, others * smallW + GAP * (others - 1))}px`;
      this.gridEl.dataset.count = String(n);
      return;
    }
    this.gridEl.style.width = '';
    let best = { cols: 1, w: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((W - GAP * (cols - 1)) / cols, ((H - GAP * (rows - 1)) / rows) * TILE_ASPECT);
      if (w > best.w) best = { cols, w };
    }
    this.gridEl.style.setProperty('--cols', String(best.cols));
    this.gridEl.style.setProperty('--tile-w', `${Math.floor(best.w)}px`);
    this.gridEl.dataset.count = String(n);
  }

  clear() {
    this.update({ self: { name: '', track: null, micMuted: false, cameraOff: true }, remotes: [] });
    const self = this.tiles.get('self');
    if (self) {
      self.video.srcObject = null;
      self.el.remove();
      this.tiles.delete('self');
    }
  }
}
