// Pre-join screen: name (remembered in localStorage), camera and microphone
// preview with device choice, "join muted" options and a microphone level
// meter. Resolves `run()` with the name once the user presses Join.

import { cleanName } from './session.js';
import { setIcon } from './icons.js';

const NAME_KEY = 'plenary.name';
const MUTED_KEY = 'plenary.startMuted';
const CAM_OFF_KEY = 'plenary.startCameraOff';

/** The remembered display name, or ''. */
export function rememberedName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function remember(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage disabled (private mode): nothing to remember.
  }
}

function recall(key) {
  try {
    return localStorage.getItem(key) === '1';
  } catch {
    return false;
  }
}

export class PreJoin {
  /** @param {import('./local-media.js').LocalMedia} local */
  constructor(local) {
    this.local = local;
    this.$ = (id) => document.getElementById(id);
    this.video = this.$('preview-video');
    this.nameInput = this.$('name-input');
    this.joinButton = this.$('join-button');
    this.micButton = this.$('preview-mic');
    this.camButton = this.$('preview-cam');
    this.micSelect = this.$('mic-select');
    this.camSelect = this.$('cam-select');
    this.mutedBox = this.$('start-muted');
    this.camOffBox = this.$('start-cam-off');
    this.meter = null;
  }

  /**
   * Shows the screen, opens devices, and resolves with the name on Join.
   * `suggestedName` (from the link) wins over the remembered one.
   */
  async run(suggestedName = '') {
    this.nameInput.value = suggestedName || rememberedName();
    this.local.micMuted = this.mutedBox.checked = recall(MUTED_KEY);
    this.local.cameraOff = this.camOffBox.checked = recall(CAM_OFF_KEY);
    this.updateJoinEnabled();
    this.renderToggles();
    this.nameInput.addEventListener('input', () => this.updateJoinEnabled());
    this.micButton.addEventListener('click', () => this.setMicMuted(!this.local.micMuted));
    this.camButton.addEventListener('click', () => this.setCameraOff(!this.local.cameraOff));
    this.mutedBox.addEventListener('change', () => this.setMicMuted(this.mutedBox.checked));
    this.camOffBox.addEventListener('change', () => this.setCameraOff(this.camOffBox.checked));
    this.micSelect.addEventListener('change', () => this.choose('audio', this.micSelect.value));
    this.camSelect.addEventListener('change', () => this.choose('video', this.camSelect.value));
    this.onTracks = () => this.showPreview();
    this.local.addEventListener('tracks', this.onTracks);
    // Some browsers only start an AudioContext after a user gesture.
    document.addEventListener('pointerdown', () => this.meter?.ctx.resume(), { once: true });

    if (!this.nameInput.value) this.nameInput.focus();
    // Join may be pressed while the camera and microphone still start (a
    // permission prompt is open): the form is handled from the start, so
    // it is never submitted by the browser (that would reload the page
    // with the name in the URL, sent to the server), and the join goes
    // ahead once the devices are ready.
    const pressed = new Promise((resolve) => {
      this.$('prejoin-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        const name = cleanName(this.nameInput.value);
        if (!name) {
          this.nameInput.focus();
          return;
        }
        resolve(name);
      });
    });
    await this.local.start();
    await this.fillDevices();
    navigator.mediaDevices?.addEventListener?.('devicechange', () => this.fillDevices());
    const name = await pressed;
    remember(NAME_KEY, name);
    remember(MUTED_KEY, this.local.micMuted ? '1' : '0');
    remember(CAM_OFF_KEY, this.local.cameraOff ? '1' : '0');
    this.close();
    return name;
  }

  updateJoinEnabled() {
    this.joinButton.disabled = cleanName(this.nameInput.value) === '';
  }

  setMicMuted(muted) {
    this.local.setMicMuted(muted);
    this.mutedBox.checked = muted;
    this.renderToggles();
  }

  async setCameraOff(off) {
    this.camOffBox.checked = off;
    await this.local.setCameraOff(off);
    this.renderToggles();
    if (!off) await this.fillDevices();
  }

  async choose(kind, deviceId) {
    await this.local.selectDevice(kind, deviceId);
    this.renderToggles();
  }

  renderToggles() {
    const { micMuted, cameraOff } = this.local;
    this.micButton.setAttribute('aria-pressed', String(micMuted));
    this.micButton.setAttribute('aria-label', micMuted ? 'Turn on microphone' : 'Turn off microphone');
    setIcon(this.micButton, micMuted ? 'mic-off' : 'mic');
    this.camButton.setAttribute('aria-pressed', String(cameraOff));
    this.camButton.setAttribute('aria-label', cameraOff ? 'Turn on camera' : 'Turn off camera');
    setIcon(this.camButton, cameraOff ? 'video-off' : 'video');
    this.showPreview();
  }

  showPreview() {
    const { video, audio, cameraOff, errors } = this.local;
    const off = this.$('preview-off');
    if (video && !cameraOff) {
      if (this.video.srcObject?.getVideoTracks()[0] !== video) this.video.srcObject = new MediaStream([video]);
      off.hidden = true;
    } else {
      this.video.srcObject = null;
      off.hidden = false;
      const why = cameraOff ? 'Camera is off' : this.local.videoPending ? 'Starting camera…' : 'Camera not available';
      this.$('preview-off-text').textContent = why;
    }
    const problems = [];
    if (!audio && errors.audio) problems.push(`Microphone not available (${errors.audio.name || 'error'}).`);
    if (!video && !cameraOff && errors.video) problems.push(`Camera not available (${errors.video.name || 'error'}).`);
    const err = this.$('device-error');
    err.textContent = problems.join(' ');
    err.hidden = problems.length === 0;
    this.startMeter(audio);
  }

  async fillDevices() {
    const list = await this.local.devices();
    fillSelect(this.micSelect, list.audio, this.local.currentDeviceId('audio'), 'No microphone');
    fillSelect(this.camSelect, list.video, this.local.currentDeviceId('video'), 'No camera');
  }

  /** Shows the microphone level (RMS of the analyser's time domain data). */
  startMeter(track) {
    if (this.meter?.track === track) return;
    this.stopMeter();
    if (!track || !window.AudioContext) return;
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    const bar = this.$('level-bar');
    const meter = { ctx, track, raf: 0 };
    const tick = () => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const v of data) sum += v * v;
      const rms = Math.sqrt(sum / data.length);
      const level = this.local.micMuted ? 0 : Math.min(1, rms * 4);
      bar.style.width = `${Math.round(level * 100)}%`;
      meter.raf = requestAnimationFrame(tick);
    };
    meter.raf = requestAnimationFrame(tick);
    this.meter = meter;
  }

  stopMeter() {
    if (!this.meter) return;
    cancelAnimationFrame(this.meter.raf);
    this.meter.ctx.close();
    this.meter = null;
  }

  /** Leaves the screen: stops the preview and the meter (devices stay open). */
  close() {
    this.stopMeter();
    this.local.removeEventListener('tracks', this.onTracks);
    this.video.srcObject = null;
  }
}

/** Fills a <select> with devices, selecting `current`. */
export function fillSelect(select, devices, current, emptyLabel) {
  const options = devices.map((d) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label;
    o.selected = d.deviceId === current;
    return o;
  });
  if (!options.length) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = emptyLabel;
    options.push(o);
  }
  select.replaceChildren(...options);
  select.disabled = devices.length === 0;
}
