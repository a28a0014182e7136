// Room ids and meeting links. A room id is 1 to 64 characters from
// A-Z a-z 0-9 - _ (plenary_proto::RoomId); new ones are 12 random
// base64url characters (72 bits from crypto.getRandomValues).

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

/**
 * Reads what a user pasted to join: a meeting link (`https://host/m/<room>#...`)
 * or a bare room id. Returns {url} to navigate to, or null if it is neither.
 * A link to another server is followed as it is (the user chose it); a link
 * to this server keeps its fragment (the meeting secret lives there).
 */
export function parseJoinInput(text, here = window.location) {
  const s = text.trim();
  if (!s) return null;
  if (isRoomId(s)) return { url: meetingPath(s) };
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
  return { url: meetingPath(room) + url.hash };
}

/** A new meeting secret for the link's fragment: 16 random bytes (WebCrypto) as unpadded base64url. */
export function newSecret() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A new end-to-end encrypted meeting link path: `/m/<room>#<secret>`. */
export function newMeetingLink() {
  return `${meetingPath(newRoomId())}#${newSecret()}`;
}
