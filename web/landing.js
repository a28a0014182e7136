// Landing page: start a new meeting (random room id and meeting secret) or join one from a
// pasted link or code.

import { newMeetingLink, parseJoinInput } from './room.js';
import { fillIcons } from './icons.js';

fillIcons();

const input = document.getElementById('join-input');
const joinButton = document.getElementById('join-button');
const error = document.getElementById('join-error');

document.getElementById('new-meeting').addEventListener('click', () => {
  // The secret after # is made here and never sent to the server.
  window.location.assign(newMeetingLink());
});

input.addEventListener('input', () => {
  joinButton.disabled = input.value.trim() === '';
  error.hidden = true;
});

document.getElementById('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const target = parseJoinInput(input.value);
  if (!target) {
    error.hidden = false;
    input.focus();
    return;
  }
  window.location.assign(target.url);
});
