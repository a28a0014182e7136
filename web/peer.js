// The media session: one RTCPeerConnection to the SFU (bundled, ICE servers
// only those the server's `joined` names).
//
// Negotiation (see crates/plenary-proto):
// - the client makes exactly one offer, right after `joined`: an audio
//   transceiver (sendonly) and a video transceiver (sendonly, simulcast with
//   RIDs q/h/f); the server answers;
// - afterwards only the server offers, whenever the set of remote tracks
//   changes, with a `track_map` (mid -> participant, kind); the client answers.
//   The client never renegotiates: camera and microphone changes go through
//   RTCRtpSender.replaceTrack.
//
// Events: `remote` (detail: array of remote tracks {mid, participantId,
// kind, track, receiver}) after every applied server offer; `state`
// (detail: RTCPeerConnection.connectionState); `error` (detail: Error).

/** Simulcast layers of the camera: quarter, half and full resolution. */
export const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Wait this long after the last size change before telling the server. */
const LAYER_DEBOUNCE_MS = 250;

export class PeerSession extends EventTarget {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {{media: import('./e2ee.js').MediaE2ee,
   *          iceServers?: Array<{urls: string[], username?: string, credential?: string}>,
   *          audio?: MediaStreamTrack|null, video?: MediaStreamTrack|null,
   *          mark?: (step: string) => void}} opts
   *   `media` encrypts every sent and decrypts every received frame (SFrame);
   *   `mark` is told each negotiation step as it happens.
   */
  constructor(signaling, { media, iceServers = [], audio = null, video = null, mark = () => {} }) {
    super();
    /** Records a step of joining (`offer` sent, `answer` applied, `server_offer` applied) for timings. */
    this.mark = mark;
    if (!media) throw new Error('Media is end-to-end encrypted: the SFrame worker is required.');
    this.signaling = signaling;
    /** @type {import('./e2ee.js').MediaE2ee} SFrame transforms. */
    this.media = media;
    /** Receiver -> the id its transform reports under. */
    this.e2eeIds = new Map();
    this.pc = new RTCPeerConnection({
      ...media.pcConfig,
      iceServers: iceServers.map((s) => ({
        urls: s.urls,
        ...(s.username != null ? { username: s.username } : {}),
        ...(s.credential != null ? { credential: s.credential } : {}),
      })),
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    this.initialTracks = { audio, video };
    /** @type {Map<string, {mid: string, participantId: number, kind: string, track: MediaStreamTrack, receiver: RTCRtpReceiver}>} */
    this.remote = new Map();
    /** Last size sent per mid, and pending debounced sizes. */
    this.sentSizes = new Map();
    this.pendingSizes = new Map();
    this.sizeTimer = 0;
    /** Serialises every signaling step so that offers and answers never interleave. */
    this.queue = Promise.resolve();
    this.closed = false;
    /** A server offer that arrived while our own offer was outstanding. */
    this.deferredOffer = null;
    this.audioSender = null;
    this.videoSender = null;

    this.pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('state', { detail: this.pc.connectionState }));
    });
    this.onAnswer = (ev) => this.enqueue(() => this.applyAnswer(ev.detail));
    this.onOffer = (ev) => this.enqueue(() => this.applyOffer(ev.detail));
    signaling.addEventListener('answer', this.onAnswer);
    signaling.addEventListener('offer', this.onOffer);
  }

  get connectionState() {
    return this.pc.connectionState;
  }

  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => {
      console.error('plenary: negotiation failed:', err);
      this.dispatchEvent(new CustomEvent('error', { detail: err }));
    });
    return this.queue;
  }

  /** Adds the sending transceivers and sends the one client offer. */
  start() {
    return this.enqueue(async () => {
      const audio = this.pc.addTransceiver(this.initialTracks.audio || 'audio', { direction: 'sendonly' });
      const video = this.pc.addTransceiver(this.initialTracks.video || 'video', {
        direction: 'sendonly',
        sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })),
      });
      preferCodec(video, 'video/VP8');
      this.media.attachSender(audio.sender, 'audio');
      this.media.attachSender(video.sender, 'video');
      this.audioSender = audio.sender;
      this.videoSender = video.sender;
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.signaling.offer(this.pc.localDescription.sdp);
      this.mark('offer');
    });
  }

  async applyAnswer(msg) {
    if (this.pc.signalingState !== 'have-local-offer') {
      console.warn('plenary: ignoring an answer in state', this.pc.signalingState);
      return;
    }
    await this.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    this.mark('answer');
    const deferred = this.deferredOffer;
    this.deferredOffer = null;
    if (deferred) await this.applyOffer(deferred);
  }

  async applyOffer(msg) {
    if (this.pc.signalingState === 'have-local-offer') {
      // The server offered before answering our offer. Applying it now
      // would roll our offer back; apply it once our answer is in.
      this.deferredOffer = msg;
      return;
    }
    await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    this.attachReceivers();
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.signaling.answer(this.pc.localDescription.sdp);
    this.mark('server_offer');
    this.updateRemote(Array.isArray(msg.track_map) ? msg.track_map : []);
  }

  /** Every new receiving transceiver gets its decrypting transform before media flows. */
  attachReceivers() {
    for (const t of this.pc.getTransceivers()) {
      const r = t.receiver;
      if (t.mid == null || !r.track || this.e2eeIds.has(r)) continue;
      if (t.sender === this.audioSender || t.sender === this.videoSender) continue;
      this.e2eeIds.set(r, this.media.attachReceiver(r, r.track.kind));
    }
  }

  /** Rebuilds the mid -> remote track map from the transceivers and `trackMap`. */
  updateRemote(trackMap) {
    const byMid = new Map();
    for (const t of this.pc.getTransceivers()) {
      if (t.mid != null) byMid.set(t.mid, t);
    }
    const next = new Map();
    for (const info of trackMap) {
      const t = byMid.get(String(info.mid));
      if (!t || !t.receiver.track) continue;
      const prev = this.remote.get(info.mid);
      if (prev && prev.participantId !== info.participant_id) this.sentSizes.delete(info.mid);
      next.set(info.mid, {
        mid: info.mid,
        participantId: info.participant_id,
        kind: info.kind,
        track: t.receiver.track,
        receiver: t.receiver,
        e2eeId: this.e2eeIds.get(t.receiver) ?? null,
      });
    }
    for (const mid of this.sentSizes.keys()) if (!next.has(mid)) this.sentSizes.delete(mid);
    this.remote = next;
    this.dispatchEvent(new CustomEvent('remote', { detail: [...next.values()] }));
  }

  /** Replaces the sent microphone or camera track (null sends nothing). */
  async setTrack(kind, track) {
    const sender = kind === 'audio' ? this.audioSender : this.videoSender;
    if (!sender) {
      this.initialTracks[kind] = track;
      return;
    }
    if (sender.track !== track) await sender.replaceTrack(track);
  }

  /**
   * Records the size at which the remote video on `mid` is rendered (device
   * pixels; 0x0 when hidden). Sent as `layer_preference`, debounced, only
   * when changed.
   */
  setRenderSize(mid, width, height, pinned = false) {
    this.pendingSizes.set(mid, { width: Math.round(width), height: Math.round(height), pinned: !!pinned });
    window.clearTimeout(this.sizeTimer);
    this.sizeTimer = window.setTimeout(() => this.flushSizes(), LAYER_DEBOUNCE_MS);
  }

  flushSizes() {
    for (const [mid, size] of this.pendingSizes) {
      if (!this.remote.has(mid)) continue;
      const last = this.sentSizes.get(mid);
      if (last && last.width === size.width && last.height === size.height && last.pinned === size.pinned) continue;
      if (this.signaling.layerPreference(mid, size.width, size.height, size.pinned)) this.sentSizes.set(mid, size);
    }
    this.pendingSizes.clear();
  }

  /**
   * Receive statistics per remote track, from getStats inbound-rtp:
   * [{mid, participantId, kind, framesDecoded, frameWidth, frameHeight,
   *   framesPerSecond, bytesReceived, packetsReceived, packetsLost,
   *   totalSamplesReceived, audioLevel}].
   */
  async remoteStats() {
    const out = [];
    for (const r of this.remote.values()) {
      const entry = {
        mid: r.mid, participantId: r.participantId, kind: r.kind, bytesReceived: 0, packetsReceived: 0,
        // The size last sent in `layer_preference` for this mid, if any.
        requested: this.sentSizes.get(r.mid) ?? null,
      };
      try {
        const report = await r.receiver.getStats();
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          Object.assign(entry, {
            bytesReceived: s.bytesReceived ?? 0,
            packetsReceived: s.packetsReceived ?? 0,
            packetsLost: s.packetsLost ?? 0,
            framesDecoded: s.framesDecoded,
            frameWidth: s.frameWidth,
            frameHeight: s.frameHeight,
            framesPerSecond: s.framesPerSecond,
            keyFramesDecoded: s.keyFramesDecoded,
            framesDropped: s.framesDropped,
            freezeCount: s.freezeCount,
            pliCount: s.pliCount,
            nackCount: s.nackCount,
            totalSamplesReceived: s.totalSamplesReceived,
            audioLevel: s.audioLevel,
          });
        });
      } catch {
        // A receiver that is being torn down has no stats; report zeros.
      }
      out.push(entry);
    }
    return out;
  }

  /**
   * Stops encoding the simulcast layers the SFU says nobody receives
   * (`layers_paused`, RIDs) and resumes all others, through
   * `RTCRtpEncodingParameters.active`; a resumed layer starts with a key
   * frame. Repeats the last request after a camera change.
   * @param {string[]} paused
   */
  async setPausedLayers(paused) {
    this.pausedLayers = paused;
    const sender = this.videoSender;
    if (!sender) return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return;
    let changed = false;
    for (const e of params.encodings) {
      const active = !paused.includes(e.rid);
      if (e.active !== active) {
        e.active = active;
        changed = true;
      }
    }
    if (!changed) return;
    try {
      await sender.setParameters(params);
    } catch (err) {
      console.warn('plenary: could not pause simulcast layers', err);
    }
  }

  /** Send statistics of the camera per simulcast layer and of the microphone. */
  async localStats() {
    const out = { audio: null, video: [] };
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      if (s.kind === 'audio') out.audio = { bytesSent: s.bytesSent, packetsSent: s.packetsSent };
      else out.video.push({ rid: s.rid, bytesSent: s.bytesSent, framesEncoded: s.framesEncoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight });
    });
    return out;
  }

  close() {
    this.closed = true;
    window.clearTimeout(this.sizeTimer);
    this.signaling.removeEventListener('answer', this.onAnswer);
    this.signaling.removeEventListener('offer', this.onOffer);
    this.pc.close();
    this.remote = new Map();
  }
}

/** Puts `mimeType` first in the transceiver's codec list (keeping the others). */
function preferCodec(transceiver, mimeType) {
  const caps = window.RTCRtpReceiver?.getCapabilities?.('video');
  if (!caps || !transceiver.setCodecPreferences) return;
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mimeType.toLowerCase());
  if (!first.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mimeType.toLowerCase());
  try {
    transceiver.setCodecPreferences([...first, ...rest]);
  } catch (err) {
    console.warn('plenary: could not set codec preferences:', err);
  }
}
