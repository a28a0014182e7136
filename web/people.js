// The participant list panel: everyone in the meeting with their microphone
// and camera state. Names are written with textContent only.

import { icon } from './icons.js';
import { initials, hue, remoteLabel } from './grid.js';

/**
 * Renders the list into `ul`.
 * @param {HTMLUListElement} ul
 * @param {{name: string, micMuted: boolean, cameraOff: boolean}} self
 * @param {Array<{id: number|null, tileKey: string, away?: boolean, name: string, audioMuted: boolean, videoMuted: boolean}>} remotes
 *   (`away`: of a lost connection, listed as reconnecting)
 */
export function renderPeople(ul, self, remotes) {
  const rows = [
    row({ key: 'self', name: self.name, suffix: ' (You)', audioMuted: self.micMuted, videoMuted: self.cameraOff, handRaised: !!self.handRaised }),
    ...[...remotes]
      .sort((a, b) => a.name.localeCompare(b.name) || a.id - b.id)
      .map((p) => row({ key: String(p.id ?? p.tileKey), name: remoteLabel(p), suffix: p.away ? ' (reconnecting)' : '', audioMuted: p.audioMuted, videoMuted: p.videoMuted, handRaised: !!p.handRaised })),
  ];
  ul.replaceChildren(...rows);
}

function row({ key, name, suffix, audioMuted, videoMuted, handRaised }) {
  const li = document.createElement('li');
  li.className = 'person';
  li.dataset.participant = key;
  li.dataset.audioMuted = String(audioMuted);
  li.dataset.videoMuted = String(videoMuted);

  const avatar = document.createElement('span');
  avatar.className = 'avatar avatar-sm';
  avatar.textContent = initials(name);
  avatar.style.setProperty('--hue', String(hue(name)));

  const label = document.createElement('span');
  label.className = 'person-name';
  const n = document.createElement('span');
  n.className = 'person-display-name';
  n.textContent = name;
  label.append(n, suffix);

  const state = document.createElement('span');
  state.className = 'person-state';
  const mic = icon(audioMuted ? 'mic-off' : 'mic', 16);
  mic.setAttribute('role', 'img');
  mic.setAttribute('aria-hidden', 'false');
  mic.setAttribute('aria-label', audioMuted ? 'Microphone off' : 'Microphone on');
  mic.classList.toggle('off', audioMuted);
  const cam = icon(videoMuted ? 'video-off' : 'video', 16);
  cam.setAttribute('role', 'img');
  cam.setAttribute('aria-hidden', 'false');
  cam.setAttribute('aria-label', videoMuted ? 'Camera off' : 'Camera on');
  cam.classList.toggle('off', videoMuted);
  if (handRaised) {
    const hand = icon('hand', 16);
    hand.setAttribute('role', 'img');
    hand.setAttribute('aria-hidden', 'false');
    hand.setAttribute('aria-label', 'Hand raised');
    hand.classList.add('raised');
    state.append(hand);
  }
  state.append(mic, cam);

  li.append(avatar, label, state);
  return li;
}
