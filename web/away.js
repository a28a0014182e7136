// The others of a lost connection, as the meeting keeps showing them: when
// the connection drops, everyone listed whom we could know again stays,
// `away` (greyed tiles, "Reconnecting…"), until the same participant is
// back in the group of a new connection (it then takes its old tile again:
// the picture resumes where it was) or until AWAY_KEEP_MS after we are
// connected again (they left).
// A participant's id changes with every connection; its tile key
// (`tileKey`) is what survives. "The same participant" means the same name
// AND the same continuity token: a random token each page (and native
// client) makes once per meeting session and sends, with its name, only
// inside its end-to-end encrypted profile (plenary_e2ee::app). Someone else
// who picks the name of someone away gets a tile of their own. Whoever had
// no profile yet when the connection dropped (no name, no token) cannot be
// known again and is not kept. Names and tokens are only compared, never
// logged.

/** How long the others of a lost connection stay listed after we are back, ms. */
export const AWAY_KEEP_MS = 20000;

/**
 * While some are away, how long a participant of the new connection whose
 * name is not known yet stays hidden (it is most likely one of them, whose
 * tile is still there; its name comes with the keys), ms.
 */
export const NAME_WAIT_MS = 5000;

export class AwayList {
  /** @param {() => void} onChange called when the list shrinks or a hidden newcomer is due */
  constructor(onChange) {
    this.onChange = onChange;
    /** @type {Map<string, object>} by tile key */
    this.entries = new Map();
    this.timer = 0;
  }

  get size() {
    return this.entries.size;
  }

  /** The entries to show: {id: null, tileKey, name, away: true, ...}, no tracks. */
  values() {
    return [...this.entries.values()];
  }

  /**
   * The connection was lost: everyone in `participants` whom we could know
   * again (name and continuity token known) stays listed.
   */
  remember(participants) {
    window.clearTimeout(this.timer);
    for (const p of participants) {
      if (!p.name || !p.continuity) continue;
      this.entries.set(p.tileKey, {
        id: null, tileKey: p.tileKey, name: p.name, continuity: p.continuity, leaf: null, handRaised: false,
        audioMuted: p.audioMuted, videoMuted: p.videoMuted, away: true, waitingKeys: false,
      });
    }
  }

  /** We are connected again: whoever is not back within AWAY_KEEP_MS left. */
  connected() {
    window.clearTimeout(this.timer);
    if (this.size) this.timer = window.setTimeout(() => this.forget(), AWAY_KEEP_MS);
  }

  /** The connection is lost again: nobody is known to have left yet. */
  lost() {
    window.clearTimeout(this.timer);
  }

  /** Drops everyone (they left, or we did). */
  forget() {
    window.clearTimeout(this.timer);
    if (!this.size) return;
    this.entries.clear();
    this.onChange();
  }

  /** A participant of the new connection appeared: re-render when its name wait is over. */
  newcomer() {
    if (this.size) window.setTimeout(() => this.onChange(), NAME_WAIT_MS + 50);
  }

  /**
   * Participants of the new connection who are back (the same name and
   * continuity token) take the tile key of their away entry.
   * @param {Iterable<{name: string, continuity: string|null, tileKey: string, backFromAway?: boolean}>} participants
   */
  match(participants) {
    if (!this.size) return;
    for (const p of participants) {
      if (!p.name || !p.continuity || p.backFromAway) continue;
      const a = this.values().find((x) => x.name === p.name && x.continuity === p.continuity);
      if (!a) continue;
      this.entries.delete(a.tileKey);
      p.tileKey = a.tileKey;
      p.backFromAway = true;
    }
    if (!this.size) window.clearTimeout(this.timer);
  }

  /**
   * Which of the new connection's participants to show: newcomers without a
   * name yet, no more of them than there are away entries, stay hidden for
   * NAME_WAIT_MS (no second tile for the same person).
   * @param {Array<{name: string, since: number}>} participants
   */
  visible(participants, now = Date.now()) {
    let hide = this.size;
    return participants.filter((p) => p.name || hide <= 0 || now - p.since >= NAME_WAIT_MS || !hide--);
  }
}
