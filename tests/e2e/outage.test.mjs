// What a participant sees when the connection goes wrong:
//
// - Server restart: three pages in one meeting; while the server is down
//   page A shows a "Reconnecting…" banner and keeps the others' tiles,
//   greyed and marked "Reconnecting…"; page C closes meanwhile. Once the
//   server is back, B's picture resumes in the very tile it had (never a
//   second tile for B meanwhile), C's tile
//   goes (C really left), the security code panel says the keys were set up
//   again after reconnecting (a normal join said nothing), and the chat
//   keeps what A showed, marks the point of rejoin, and goes on.
// - Keys after a reconnect: a page whose signaling drops and whose MLS
//   traffic is then lost stays in the room without keys: the other's tile
//   shows "Waiting for keys…", not a frozen picture, until the keys come.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { meetingFixture, randomId, waitFor, explained, newSecret, routeMls, ARTIFACTS } from './lib/harness.mjs';

const m = meetingFixture({ server: { name: 'outage-server' } });

const stats = (b) => b.page.evaluate(() => window.plenary.stats());
const e2ee = (b) => b.page.evaluate(() => window.plenary.e2ee());
const state = (b) => b.page.evaluate(() => window.plenary.state);

/** Frames `b` decoded from the participant called `name` in its current connection. */
async function framesFrom(b, name) {
  return (await stats(b)).participants.find((p) => p.name === name)?.framesDecoded ?? 0;
}

/** The remote tile of `name` on page `b`. */
const tileOf = (b, name) => b.page.locator('.tile:not(.tile-self)', { has: b.page.locator('.tile-name', { hasText: name }) });

/** The texts of page `b`'s chat list, notes as `note: ...`. */
const chatLines = (b) => b.page.$$eval('#chat-list > li', (lis) => lis.map((li) => (li.classList.contains('chat-note') ? `note: ${li.textContent}` : li.querySelector('.chat-text')?.textContent ?? '')));

test('a server restart: banner, greyed tiles restored, new code explained, chat kept and marked', { timeout: 150_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `outage-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameB, nameC] = ['A', 'B', 'C'].map((x) => `Participant-${x}${randomId(5)}`);
    const [a, b, c] = await m.joinGroup(room, secret, [nameA, nameB, nameC]);
    const flowing = async (min) => (await framesFrom(a, nameB)) > min && (await framesFrom(b, nameA)) > min && (await framesFrom(a, nameC)) > min;
    assert.ok(await waitFor(() => flowing(20), { ms: 45_000 }), 'video flows before the restart');
    // Joins changed the code: no note for that.
    assert.equal((await e2ee(a)).codeNote, null, 'a normal join needs no explanation');
    assert.equal(await a.page.locator('#e2ee-new-code').isVisible(), false);

    const before = `before-${randomId(8)}`;
    assert.ok(await a.page.evaluate((x) => window.plenary.sendChat(x), before), 'chat sent');
    await b.page.locator('#chat-list .chat-text', { hasText: before }).waitFor({ state: 'attached', timeout: 10_000 });
    // Mark B's tile on A, to see that the same tile comes back.
    await tileOf(a, nameB).evaluate((el) => { el.dataset.testMark = 'b-tile'; });

    await m.server.stop();
    await a.page.locator('#reconnect-banner').waitFor({ state: 'visible', timeout: 15_000 });
    assert.match(await a.page.locator('#reconnect-banner').textContent(), /Reconnecting…/);
    // The others stay, greyed and marked, and so does the chat.
    for (const name of [nameB, nameC]) {
      const tile = tileOf(a, name);
      assert.equal(await tile.count(), 1, 'the tile stays during the outage');
      assert.ok(await tile.evaluate((el) => el.classList.contains('away')), 'greyed as reconnecting');
      assert.equal((await tile.locator('.tile-away').textContent()).trim(), 'Reconnecting…');
      assert.equal(await tile.locator('.tile-away').isVisible(), true);
    }
    await a.page.screenshot({ path: path.join(ARTIFACTS, 'outage-reconnecting.png') }).catch(() => {});
    // C leaves for good while the server is down.
    await m.close(c);

    await m.startAgain('outage-server-2');
    const up = Date.now();
    // Meanwhile, nobody gets a second tile (B's new connection, nameless until the keys come).
    let mostTiles = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        mostTiles = Math.max(mostTiles, await a.page.locator('.tile:not(.tile-self)').count().catch(() => 0));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const back = await waitFor(async () => (await state(a)) === 'connected' && (await state(b)) === 'connected'
      && (await framesFrom(a, nameB)) > 10 && (await framesFrom(b, nameA)) > 10, { ms: 40_000, every: 250 });
    assert.ok(back, 'media flows again after the restart');
    t.diagnostic(`media back ${((Date.now() - up) / 1000).toFixed(1)} s after the server`);
    assert.equal(await a.page.locator('#reconnect-banner').isVisible(), false, 'the banner is gone');
    const bTile = tileOf(a, nameB);
    assert.ok(await waitFor(async () => (await bTile.count()) === 1 && !(await bTile.evaluate((el) => el.classList.contains('away'))), { ms: 10_000, every: 200 }),
      "B's tile is live again");
    assert.equal(await bTile.getAttribute('data-test-mark'), 'b-tile', "B's picture resumes in the tile it had");
    watching = false;
    await watcher;
    assert.equal(mostTiles, 2, 'B and C, never a second tile for B');
    await bTile.locator('.tile-video').evaluate((v) => new Promise((resolve) => (v.videoWidth > 0 ? resolve() : v.addEventListener('resize', resolve, { once: true }))));
    // C is not coming back: its tile goes once the others are back for a while.
    assert.ok(await waitFor(async () => (await tileOf(a, nameC).count()) === 0, { ms: 35_000, every: 500 }), "C's tile goes: C left");

    // The security code: new, shared, and explained.
    const [sa, sb] = await Promise.all([e2ee(a), e2ee(b)]);
    assert.equal(sa.securityCode, sb.securityCode, 'one group again');
    assert.equal(sa.codeNote, 'reconnect');
    assert.equal(await a.page.locator('#e2ee-new-code').isVisible(), true, 'the lock says the code is new');
    await a.page.locator('#e2ee-badge').click();
    assert.equal((await a.page.locator('#security-code').textContent()).trim(), sa.securityCode);
    assert.match(await a.page.locator('#security-code-note').textContent(), /^New code: the meeting's keys were set up again after reconnecting\. Compare it again\.$/);
    await a.page.screenshot({ path: path.join(ARTIFACTS, 'outage-new-code.png') }).catch(() => {});
    await a.page.keyboard.press('Escape');
    assert.equal(await a.page.locator('#e2ee-new-code').isVisible(), false, 'seen: the mark goes');

    // The chat: what A showed, the point of rejoin, then what comes next.
    const after = `after-${randomId(8)}`;
    assert.ok(await waitFor(() => b.page.evaluate((x) => window.plenary.sendChat(x), after), { ms: 10_000, every: 250 }), 'B can chat again');
    await a.page.locator('#chat-list .chat-text', { hasText: after }).waitFor({ state: 'attached', timeout: 10_000 });
    const lines = await chatLines(a);
    const note = 'note: Reconnected: messages sent while you were away cannot be shown; chat is end-to-end encrypted.';
    assert.deepEqual(lines.filter((l) => l === before || l === after || l.startsWith('note:')), [before, note, after]);
  });
});

test('a tile whose frames cannot be decrypted after a reconnect shows "Waiting for keys…" until the keys come', { timeout: 120_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `outage-keys-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameK] = [`Participant-A${randomId(5)}`, `Participant-K${randomId(5)}`];
    const [a] = await m.joinGroup(room, secret, [nameA]);
    // K's signaling goes through here: `mls.drop` loses its MLS traffic both
    // ways (it stays in the room, so it gets media, but gets no keys).
    const k = await m.open();
    const mls = await routeMls(k);
    await m.join(k, room, secret, nameK);
    assert.ok(await waitFor(async () => (await framesFrom(k, nameA)) > 20 && (await framesFrom(a, nameK)) > 20, { ms: 45_000 }), 'video flows both ways');
    assert.equal(await k.page.locator('.tile-waiting:not([hidden])').count(), 0, 'nobody waits for keys');

    // K's signaling drops; K reconnects, but its MLS traffic is lost.
    mls.drop = true;
    await mls.pageSide.close({ code: 1011, reason: 'test: signaling cut' });
    assert.ok(await waitFor(async () => (await state(k)) === 'reconnecting', { ms: 10_000, every: 100 }), 'K reconnects');
    assert.ok(await waitFor(async () => (await state(k)) === 'connected', { ms: 20_000, every: 200 }), 'K is connected again');
    const reconnected = Date.now();
    const waiting = k.page.locator('.tile:not(.tile-self):not(.away) .tile-waiting:not([hidden])');
    await waiting.waitFor({ timeout: 15_000 });
    t.diagnostic(`"Waiting for keys…" shown ${((Date.now() - reconnected) / 1000).toFixed(1)} s after K reconnected`);
    assert.equal((await waiting.textContent()).trim(), 'Waiting for keys…');
    await k.page.screenshot({ path: path.join(ARTIFACTS, 'outage-waiting-for-keys.png') }).catch(() => {});
    const ks = await e2ee(k);
    assert.equal(ks.member, false);
    assert.ok(Object.values(ks.perParticipant).some((p) => p.videoFailed > 0 && p.waiting), `frames arrive and fail: ${JSON.stringify(ks.perParticipant)}`);

    // The MLS traffic comes through again: K's join is retried, the keys come, the picture too.
    mls.drop = false;
    const keyed = await waitFor(async () => (await e2ee(k)).member && (await framesFrom(k, nameA)) > 10, { ms: 40_000, every: 250 });
    assert.ok(keyed, 'K gets the keys and decodes A again');
    assert.ok(await waitFor(async () => (await k.page.locator('.tile-waiting:not([hidden])').count()) === 0, { ms: 10_000, every: 250 }),
      'no tile waits for keys any more');
    // A's tile on K is one tile, named again.
    assert.ok(await waitFor(async () => (await tileOf(k, nameA).count()) === 1 && (await k.page.locator('.tile.away').count()) === 0, { ms: 10_000, every: 250 }),
      "A's tile is back, once");
  });
});

test('until its encrypted profile comes, a newcomer is "Joining…", never "Guest"', { timeout: 120_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `outage-joining-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameK] = [`Participant-A${randomId(5)}`, `Participant-K${randomId(5)}`];
    const [a] = await m.joinGroup(room, secret, [nameA]);
    // Every name A's remote tiles ever show.
    await a.page.evaluate(() => {
      window.tileNames = new Set();
      const look = () => document.querySelectorAll('.tile:not(.tile-self) .tile-name').forEach((el) => window.tileNames.add(el.textContent));
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    // K's MLS traffic is held back: it is in the room (media), its profile does not come.
    const k = await m.open();
    const mls = await routeMls(k);
    mls.drop = true;
    await m.join(k, room, secret, nameK);
    const joining = a.page.locator('.tile:not(.tile-self) .tile-name', { hasText: 'Joining…' });
    await joining.waitFor({ timeout: 30_000 });
    assert.equal(await a.page.locator('.person-display-name', { hasText: 'Joining…' }).count(), 1, 'the participant list says so too');
    await a.page.screenshot({ path: path.join(ARTIFACTS, 'outage-joining.png') }).catch(() => {});
    mls.drop = false;
    assert.ok(await waitFor(async () => (await tileOf(a, nameK).count()) === 1, { ms: 40_000, every: 250 }), "K's name comes");
    const seen = await a.page.evaluate(() => [...window.tileNames]);
    assert.deepEqual(seen.filter((x) => x !== nameK), ['Joining…'], `names shown: ${JSON.stringify(seen)}`);
  });
});

test('someone else who picks the name of one who is away gets a tile of their own, not the old one', { timeout: 150_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `outage-name-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameB] = [`Participant-A${randomId(5)}`, `Participant-B${randomId(5)}`];
    const [a, b] = await m.joinGroup(room, secret, [nameA, nameB]);
    assert.ok(await waitFor(async () => (await framesFrom(a, nameB)) > 10, { ms: 45_000 }), 'A sees B');
    await tileOf(a, nameB).evaluate((el) => { el.dataset.testMark = 'b-tile'; });

    await m.server.stop();
    await a.page.locator('#reconnect-banner').waitFor({ state: 'visible', timeout: 15_000 });
    // B is gone for good; another page (another person) takes B's name.
    await m.close(b);
    await m.startAgain('outage-name-server-2');
    assert.ok(await waitFor(async () => (await state(a)) === 'connected', { ms: 40_000, every: 250 }), 'A is back');
    const other = await m.open();
    await m.join(other, room, secret, nameB);
    assert.ok(await waitFor(async () => (await framesFrom(a, nameB)) > 10, { ms: 45_000, every: 250 }), "A decodes the newcomer's video");
    // The newcomer's live tile is a new one; B's old tile stays greyed until B is known to be gone.
    const live = a.page.locator('.tile:not(.tile-self):not(.away)', { has: a.page.locator('.tile-name', { hasText: nameB }) });
    assert.ok(await waitFor(async () => (await live.count()) === 1, { ms: 10_000, every: 200 }), 'one live tile with that name');
    assert.equal(await live.getAttribute('data-test-mark'), null, "the newcomer does not get B's tile");
    const old = a.page.locator('.tile[data-test-mark="b-tile"]');
    if ((await old.count()) === 1) assert.ok(await old.evaluate((el) => el.classList.contains('away')), "B's tile, if still there, is greyed");
    assert.ok(await waitFor(async () => (await old.count()) === 0, { ms: 35_000, every: 500 }), "B's old tile goes: B left");
  });
});

test('the away list: the same name and token take their old tiles, nameless newcomers wait, the rest goes (module in the browser)', { timeout: 30_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const d = await m.open();
    await d.page.goto(m.server.url('/'));
    const r = await d.page.evaluate(async () => {
      const { AwayList, NAME_WAIT_MS } = await import('/away.js');
      let changes = 0;
      const away = new AwayList(() => changes++);
      const p = (id, name, tileKey, since = 0, continuity = name ? `t-${tileKey}` : null) => ({ id, name, continuity, tileKey, since, audioMuted: false, videoMuted: false });
      // Who had no profile yet when the connection dropped (no name, no
      // token) cannot be known again: not kept (else a greyed "Guest" for 20 s).
      away.remember([p(1, 'Sam', 'c1-1'), p(2, 'Sam', 'c1-2'), p(3, 'Kim', 'c1-3'), p(4, 'Ann', 'c1-4'), p(5, '', 'c1-5'), p(6, 'Lou', 'c1-6', 0, null)]);
      const remembered = away.values().map((x) => x.tileKey);
      const now = 100_000;
      const fresh = [p(7, '', 'c2-7', now), p(8, '', 'c2-8', now), p(9, '', 'c2-9', now), p(10, '', 'c2-10', now), p(12, '', 'c2-12', now)];
      const hiddenAtFirst = away.visible(fresh, now).map((x) => x.id);
      const shownLater = away.visible(fresh, now + NAME_WAIT_MS).map((x) => x.id);
      // Sam and Sam are back (their tokens); Lee is new; the one calling
      // themselves Ann is someone else (another token), so is a token-less Kim.
      const back = [p(7, 'Sam', 'c2-7', now, 't-c1-2'), p(8, 'Sam', 'c2-8', now, 't-c1-1'), p(9, 'Lee', 'c2-9', now),
        p(10, 'Ann', 'c2-10', now, 't-someone-else'), p(11, 'Kim', 'c2-11', now, null)];
      away.match(back);
      const left = away.values().map((x) => [x.tileKey, x.name, x.away, x.id]);
      away.forget();
      return { remembered, hiddenAtFirst, shownLater, keys: back.map((x) => x.tileKey), left, size: away.size, changes };
    });
    assert.deepEqual(r.remembered, ['c1-1', 'c1-2', 'c1-3', 'c1-4'], 'only who has a name and a token is kept');
    assert.deepEqual(r.hiddenAtFirst, [12], 'as many nameless newcomers hidden as there are away');
    assert.deepEqual(r.shownLater, [7, 8, 9, 10, 12], 'all shown once the name wait is over');
    assert.deepEqual(r.keys, ['c1-2', 'c1-1', 'c2-9', 'c2-10', 'c2-11'], 'each one back takes its own old tile; a new name, another token or none keep their own');
    assert.deepEqual(r.left, [['c1-3', 'Kim', true, null], ['c1-4', 'Ann', true, null]], 'who is not back stays away');
    assert.equal(r.size, 0);
    assert.equal(r.changes, 1, 'forgetting redraws once');
  });
});
