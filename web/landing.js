// Landing page: start a new meeting (random room id and meeting secret) or join one from a
// pasted link or code (`<room>#<secret>`); a room without its secret cannot be joined.

import { newMeetingLink, parseJoinInput } from './room.js';
import { fillIcons } from './icons.js';

fillIcons();

const input = document.getElementById('join-input');
const joinButton = document.getElementById('join-button');
const error = document.getElementById('join-error');
const NOT_A_LINK = 'That is not a meeting link or code.';
const INCOMPLETE = 'This link is incomplete: the part after # is missing or damaged';

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
  if (!target?.url) {
    error.textContent = target?.incomplete ? INCOMPLETE : NOT_A_LINK;
    error.hidden = false;
    input.focus();
    return;
  }
  window.location.assign(target.url);
});
