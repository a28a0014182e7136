// Local media: the user's camera and microphone. Opens devices with
// getUserMedia, lists them with enumerateDevices, switches between them and
// turns the camera off (stopping the device, so its light goes out) and on.
//
// It knows nothing of the peer connection: whoever sends the tracks listens
// for the `tracks` event (detail: {audio, video}, each a MediaStreamTrack or
// null) and swaps them in with RTCRtpSender.replaceTrack.

/** Camera constraints: small by default, the SFU forwards simulcast layers. */
const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    /** @type {MediaStreamTrack|null} */
    this.audio = null;
    /** @type {MediaStreamTrack|null} */
    this.video = null;
    /** Device ids chosen by the user ('' = default). */
    this.audioDeviceId = '';
    this.videoDeviceId = '';
    /** Whether the user wants the microphone muted / camera off. */
    this.micMuted = false;
    this.cameraOff = false;
    /** Last getUserMedia failure per kind, for the UI. */
    this.errors = { audio: null, video: null };
    /** The camera is being opened (or not tried yet): neither a track nor an error is known. */
    this.videoPending = true;
  }

  /**
   * Opens microphone and camera (those not turned off). A device that fails
   * leaves its track null and its error in `errors`; never throws.
   */
  async start() {
    const wantAudio = true; // a muted mic keeps its track, disabled, for a quick unmute
    const wantVideo = !this.cameraOff;
    if (!navigator.mediaDevices?.getUserMedia) {
      this.errors.audio = this.errors.video = new Error('media devices are not available');
      this.videoPending = false;
      this.emitTracks();
      return;
    }
    this.videoPending = wantVideo;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: wantAudio ? this.audioConstraints() : false,
        video: wantVideo ? this.videoConstraints() : false,
      });
      this.setTrack('audio', stream.getAudioTracks()[0] || null);
      this.setTrack('video', stream.getVideoTracks()[0] || null);
    } catch (err) {
      // Try each kind alone: one missing or blocked device should not cost the other.
      await this.openKind('audio');
      if (wantVideo) await this.openKind('video');
      if (!this.audio && !this.video) console.warn('plenary: no camera or microphone:', err.name);
    }
    this.videoPending = false;
    this.emitTracks();
  }

  audioConstraints() {
    return { ...AUDIO_CONSTRAINTS, ...(this.audioDeviceId ? { deviceId: { exact: this.audioDeviceId } } : {}) };
  }

  videoConstraints() {
    return { ...VIDEO_CONSTRAINTS, ...(this.videoDeviceId ? { deviceId: { exact: this.videoDeviceId } } : {}) };
  }

  /** Opens one kind of device, replacing the current track. Returns the track or null. */
  async openKind(kind) {
    if (kind === 'video') this.videoPending = true;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(
        kind === 'audio' ? { audio: this.audioConstraints() } : { video: this.videoConstraints() });
      this.errors[kind] = null;
      this.setTrack(kind, stream.getTracks()[0] || null);
    } catch (err) {
      this.errors[kind] = err;
      this.setTrack(kind, null);
    }
    if (kind === 'video') this.videoPending = false;
    return this[kind];
  }

  setTrack(kind, track) {
    const old = this[kind];
    if (old && old !== track) old.stop();
    this[kind] = track;
    if (track && kind === 'audio') track.enabled = !this.micMuted;
    if (track) {
      track.addEventListener('ended', () => {
        if (this[kind] === track) {
          this[kind] = null;
          this.emitTracks();
        }
      });
    }
  }

  emitTracks() {
    this.dispatchEvent(new CustomEvent('tracks', { detail: { audio: this.audio, video: this.video } }));
  }

  /** Mutes or unmutes the microphone (track.enabled: silence is sent while muted). */
  setMicMuted(muted) {
    this.micMuted = muted;
    if (this.audio) this.audio.enabled = !muted;
  }

  /**
   * Turns the camera off (stops the device) or on (opens it again).
   * Returns the new video track or null.
   */
  async setCameraOff(off) {
    this.cameraOff = off;
    if (off) {
      this.setTrack('video', null);
    } else if (!this.video) {
      await this.openKind('video');
    }
    this.emitTracks();
    return this.video;
  }

  /** Switches to another device of `kind` ('audio' or 'video'). */
  async selectDevice(kind, deviceId) {
    if (kind === 'audio') this.audioDeviceId = deviceId;
    else this.videoDeviceId = deviceId;
    if (kind === 'video' && this.cameraOff) return;
    // Release the old device first: some cameras cannot be opened twice.
    this.setTrack(kind, null);
    await this.openKind(kind);
    this.emitTracks();
  }

  /**
   * Lists input devices: {audio: [{deviceId, label}], video: [...]}. Labels
   * are only known once a device of that kind has been opened.
   */
  async devices() {
    const out = { audio: [], video: [] };
    if (!navigator.mediaDevices?.enumerateDevices) return out;
    const all = await navigator.mediaDevices.enumerateDevices();
    for (const d of all) {
      const kind = d.kind === 'audioinput' ? 'audio' : d.kind === 'videoinput' ? 'video' : null;
      if (!kind || !d.deviceId) continue;
      const n = out[kind].length + 1;
      out[kind].push({ deviceId: d.deviceId, label: d.label || (kind === 'audio' ? `Microphone ${n}` : `Camera ${n}`) });
    }
    return out;
  }

  /** The device id actually in use for `kind`, or ''. */
  currentDeviceId(kind) {
    const t = this[kind];
    return (t && t.getSettings().deviceId) || (kind === 'audio' ? this.audioDeviceId : this.videoDeviceId);
  }

  /** Stops every device. */
  stop() {
    this.setTrack('audio', null);
    this.setTrack('video', null);
  }
}
