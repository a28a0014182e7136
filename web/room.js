// Room ids and meeting links. A room id is 1 to 64 characters from
// A-Z a-z 0-9 - _ (plenary_proto::RoomId); new ones are 12 random
// base64url characters (72 bits from crypto.getRandomValues).
// A meeting link is `/m/<room>#<secret>`: the meeting secret (at least 16
// bytes as unpadded base64url) lives only in the fragment, which browsers
// never send to the server. Every meeting is end-to-end encrypted, so a link
// without a valid secret cannot join.

const ROOM_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Whether `s` is a valid room id. */
export function isRoomId(s) {
  return typeof s === 'string' && ROOM_ID_RE.test(s);
}

/** A fresh random room id of `length` characters (default 12). */
export function newRoomId(length = 12) {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  // 256 is a multiple of 64, so `b & 63` is uniform.
  return Array.from(bytes, (b) => ALPHABET[b & 63]).join('');
}

/** The path of a meeting: `/m/<room>`. */
export function meetingPath(room) {
  return `/m/${encodeURIComponent(room)}`;
}

/** The room id in a meeting page's path (`/m/<room>`), or null. */
export function roomFromPath(pathname) {
  const m = /^\/m\/([^/]+)\/?$/.exec(pathname);
  if (!m) return null;
  let id;
  try {
    id = decodeURIComponent(m[1]);
  } catch {
    return null;
  }
  return isRoomId(id) ? id : null;
}

/** Shortest and longest meeting secret, in bytes (plenary_e2ee MIN_SECRET_LEN, MAX_SECRET_LEN). */
const MIN_SECRET_BYTES = 16;
const MAX_SECRET_BYTES = 64;

/** Bytes as unpadded base64url (RFC 4648 §5). */
export function toBase64Url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Unpadded base64url to bytes; throws on characters outside the alphabet. */
export function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Reads the meeting secret from a URL fragment (with or without its `#`):
 * {status: 'none'} without any fragment, {status: 'invalid'} when it is
 * present but not 16 to 64 bytes of canonical unpadded base64url (what
 * plenary_e2ee::MeetingSecret::from_base64url accepts), {status: 'valid', secret}.
 */
export function secretFromHash(hash) {
  const h = String(hash ?? '');
  const s = h.startsWith('#') ? h.slice(1) : h;
  if (s === '') return { status: 'none' };
  if (s.length > 2 * MAX_SECRET_BYTES || !/^[A-Za-z0-9_-]+$/.test(s) || s.length % 4 === 1) return { status: 'invalid' };
  let bytes;
  try {
    bytes = fromBase64Url(s);
  } catch {
    return { status: 'invalid' };
  }
  // Unused low bits of the last character must be zero (one encoding per secret).
  if (bytes.length < MIN_SECRET_BYTES || bytes.length > MAX_SECRET_BYTES || toBase64Url(bytes) !== s) return { status: 'invalid' };
  return { status: 'valid', secret: s };
}

/**
 * Reads what a user pasted to join: a meeting link (`https://host/m/<room>#<secret>`)
 * or a code (`<room>#<secret>`). Returns {url} to navigate to,
 * {incomplete: true} for a link or code to a room whose secret is missing or
 * damaged (it cannot join), or null if it is neither.
 * A link to another server is followed as it is (the user chose it, and that
 * server's page checks the secret); a link to this server keeps its fragment.
 */
export function parseJoinInput(text, here = window.location) {
  const s = text.trim();
  if (!s) return null;
  const code = /^([^#/:?]+)(#.*)?$/.exec(s);
  if (code && isRoomId(code[1])) return withSecret(code[1], code[2]);
  let url;
  try {
    url = new URL(s, here.origin);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  const room = roomFromPath(url.pathname);
  if (!room) return null;
  if (url.origin !== here.origin) return { url: url.href };
  return withSecret(room, url.hash);
}

function withSecret(room, hash) {
  const fragment = secretFromHash(hash);
  if (fragment.status !== 'valid') return { incomplete: true };
  return { url: `${meetingPath(room)}#${fragment.secret}` };
}

/** A new meeting secret for the link's fragment: 16 random bytes (WebCrypto) as unpadded base64url. */
export function newSecret() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return toBase64Url(bytes);
}

/** A new end-to-end encrypted meeting link path: `/m/<room>#<secret>`. */
export function newMeetingLink() {
  return `${meetingPath(newRoomId())}#${newSecret()}`;
}
