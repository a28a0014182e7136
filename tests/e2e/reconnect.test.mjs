// Reconnection, as a participant notices it: media stops when the server
// restarts or the participant's network is cut, and comes back by itself.
//
// - Server restart: two Chromium pages and a native client (`plenary
//   join`) in one end-to-end encrypted meeting; the server is stopped and
//   started again on the same ports; everyone reconnects by themselves,
//   the group re-forms, and within 10 s of the new server being up every
//   page decodes the other page's and the native client's video and the
//   native client decrypts both pages' audio and video; on a page, the
//   other page and the native client are back in the tiles they had.
// - Network cut: a page whose Chromium runs in its own network namespace
//   (lib/netns.mjs) loses its link until the server has dropped it; once
//   the link is back, within 10 s it is connected again and it and the
//   other page decode each other's video. Needs root and iproute2 (skips
//   with the reason otherwise).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  meetingFixture, startServer, openBrowser, randomId, waitFor, sleep, explained, newSecret, joinPath, hasSubcommand,
} from './lib/harness.mjs';
import { createNetns, netnsUnavailable } from './lib/netns.mjs';

/** Media must flow again this soon after the connection is back, milliseconds. */
const RESUME_MS = 10_000;

const m = meetingFixture({ server: { name: 'reconnect-server' } });

const statsOf = (b) => b.page.evaluate(() => window.plenary.stats());

/** The remote tile of `name` on page `b`. */
const tileOf = (b, name) => b.page.locator('.tile:not(.tile-self)', { has: b.page.locator('.tile-name', { hasText: name }) });

/** Frames `b` decoded from the participant called `name` (0 if not there). */
async function framesFrom(b, name) {
  const s = await statsOf(b);
  return s.participants.find((p) => p.name === name)?.framesDecoded ?? 0;
}

/** Decrypted frames of `kind` the native client got from its latest `frames` event, per participant id. */
function nativeDecrypted(native, kind) {
  const last = [...native.events].reverse().find((e) => e.event === 'frames');
  const out = new Map();
  for (const t of last?.tracks ?? []) {
    if (t.kind === kind) out.set(t.participant_id, (out.get(t.participant_id) ?? 0) + (t.decrypted ?? 0));
  }
  return out;
}

/** Whether the native client, in its current session, decrypts > `min` audio and video frames from `n` others. */
function nativeReceives(native, n, min) {
  const [v, a] = [nativeDecrypted(native, 'video'), nativeDecrypted(native, 'audio')];
  return [...v.values()].filter((x) => x > min).length >= n && [...a.values()].filter((x) => x > min).length >= n;
}

test('pages and a native client reconnect by themselves after the server restarts', { timeout: 120_000 }, async (t) => {
  if (!hasSubcommand('join')) {
    t.skip('`plenary join` is not in this build');
    return;
  }
  await explained(t, m.ctx, async () => {
    const room = `reconnect-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameB, nameN] = [0, 1, 2].map(() => `Participant-${randomId(6)}`);
    const [a, b] = await m.openMany(2);
    await m.join(a, room, secret, nameA);
    await m.join(b, room, secret, nameB);
    const native = m.native(m.server.url(`/m/${room}#${secret}`), nameN, { seconds: 60 });

    let seen = null;
    const everyone = async (min) => {
      const [ab, ba, an, bn] = await Promise.all([framesFrom(a, nameB), framesFrom(b, nameA), framesFrom(a, nameN), framesFrom(b, nameN)]);
      seen = { ab, ba, an, bn, native: Object.fromEntries(nativeDecrypted(native, 'video')) };
      return ab > min && ba > min && an > min && bn > min && nativeReceives(native, 2, min);
    };
    assert.ok(await waitFor(() => everyone(30), { ms: 45_000 }), `media flows before the restart: ${JSON.stringify(seen)} ${native.stderr.slice(-1500)}`);
    // Mark B's and the native client's tiles on A: each must come back to its own tile
    // (re-matched by name and continuity token, which the native client carries too).
    for (const name of [nameB, nameN]) await tileOf(a, name).evaluate((el, mark) => { el.dataset.testMark = mark; }, `mark-${name}`);

    const eventsBefore = native.events.length;
    await m.server.stop();
    const down = await waitFor(async () => {
      const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
      const nat = native.events.slice(eventsBefore).some((e) => e.event === 'reconnecting');
      return states.every((st) => st === 'reconnecting') && nat;
    }, { ms: 10_000, every: 200 });
    assert.ok(down, 'pages show "reconnecting" and the native client reports reconnecting while the server is down');
    await sleep(1000);

    await m.startAgain('reconnect-server-2');
    const up = Date.now();
    // Fresh PeerConnections and a fresh native session: counters start at 0.
    const back = await waitFor(async () => native.events.slice(eventsBefore).some((e) => e.event === 'reconnected') && everyone(10),
      { ms: RESUME_MS + 20_000, every: 250 });
    const took = Date.now() - up;
    t.diagnostic(`media resumed for everyone ${(took / 1000).toFixed(1)} s after the new server was up`);
    assert.ok(back, `media flows again after the restart: ${JSON.stringify(seen)} ${native.stderr.slice(-1500)}`);
    assert.ok(took <= RESUME_MS, `media resumed within ${RESUME_MS / 1000} s (took ${(took / 1000).toFixed(1)} s)`);
    const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
    assert.deepEqual(states, ['connected', 'connected']);
    for (const name of [nameB, nameN]) {
      const live = a.page.locator(`.tile:not(.tile-self):not(.away)[data-test-mark="mark-${name}"]`, { has: a.page.locator('.tile-name', { hasText: name }) });
      assert.ok(await waitFor(async () => (await live.count()) === 1, { ms: 10_000, every: 200 }), `${name === nameN ? 'the native client' : 'B'} is back in the tile it had`);
    }
    // One group again: the pages and the native client share epoch and code.
    const agreed = await waitFor(async () => {
      const s = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.e2ee())));
      const last = [...native.events].reverse().find((e) => e.event === 'epoch');
      return s.every((x) => x.member && x.epoch === last?.epoch && x.securityCode === last?.security_code);
    }, { ms: 10_000 });
    assert.ok(agreed, 'pages and native client share one epoch and security code after the restart');
    // The native client, like the pages, says why its code changed: keys set up anew, not a join.
    const epochs = native.events.filter((e) => e.event === 'epoch');
    const beforeRestart = native.events.slice(0, eventsBefore).filter((e) => e.event === 'epoch');
    assert.ok(beforeRestart.length >= 1 && beforeRestart.every((e) => e.keys_set_up_again === undefined), 'joins before the restart: nothing to explain');
    assert.equal(epochs.slice(beforeRestart.length).filter((e) => e.keys_set_up_again === 'reconnect').length, 1, 'the first keys after the restart are explained once');
    // The first code it announces after the restart is one of a group shared
    // with the pages (a one-person group's code, which no page shows, is not
    // announced), and the "compare it again" note goes with it.
    const announced = epochs.slice(beforeRestart.length).filter((e) => e.members >= 2);
    assert.ok(announced.length >= 1 && announced[0].keys_set_up_again === 'reconnect', `the note goes with the first shared code: ${JSON.stringify(epochs.slice(beforeRestart.length))}`);
    assert.ok(epochs.every((e) => e.keys_set_up_again === undefined || e.members >= 2), 'never with a one-person group');
    native.child.kill('SIGINT');
    assert.equal((await native.done).code, 0, `plenary join ends cleanly: ${native.stderr.slice(-1500)}`);
  });
});

test('a page whose network is cut reconnects within 10 s of the link coming back', { timeout: 150_000, skip: netnsUnavailable() ?? false }, async (t) => {
  const ns = createNetns();
  let srv = null;
  const pages = [];
  const local = { server: () => srv, browsers: () => pages };
  try {
    srv = await startServer({ name: 'reconnect-cut-server', host: ns.hostIp });
    await explained(t, local, async () => {
      // Pages on http://<veth address> are secure contexts only by this flag.
      const flags = [`--unsafely-treat-insecure-origin-as-secure=${srv.origin}`];
      const cut = await openBrowser(m.media, { executablePath: ns.chromiumWrapper(), extraArgs: flags });
      pages.push(cut);
      const other = await openBrowser(m.media, { extraArgs: flags });
      pages.push(other);
      const room = `reconnect-cut-${randomId(6)}`;
      const secret = newSecret();
      const [nameCut, nameOther] = [`Participant-${randomId(6)}`, `Participant-${randomId(6)}`];
      await cut.page.goto(srv.url(joinPath(room, secret, nameCut)));
      await other.page.goto(srv.url(joinPath(room, secret, nameOther)));
      const both = async (min) => (await framesFrom(cut, nameOther)) > min && (await framesFrom(other, nameCut)) > min;
      assert.ok(await waitFor(() => both(30), { ms: 45_000 }), 'video flows both ways before the cut');

      ns.cut();
      const cutAt = Date.now();
      const noticed = await waitFor(async () => (await cut.page.evaluate(() => window.plenary.state)) === 'reconnecting',
        { ms: 20_000, every: 200 });
      assert.ok(noticed, 'the cut page shows "reconnecting"');
      // Keep the link down until the server has ended the page's session
      // (the other page no longer lists it), so the way back is a rejoin.
      const dropped = await waitFor(async () => !(await statsOf(other)).participants.some((p) => p.name === nameCut),
        { ms: 40_000, every: 250 });
      assert.ok(dropped, 'the server drops the unreachable page');
      t.diagnostic(`link down for ${((Date.now() - cutAt) / 1000).toFixed(1)} s`);

      ns.restore();
      const restoredAt = Date.now();
      const back = await waitFor(async () => (await cut.page.evaluate(() => window.plenary.state)) === 'connected' && both(10),
        { ms: RESUME_MS + 20_000, every: 250 });
      const took = Date.now() - restoredAt;
      t.diagnostic(`media resumed both ways ${(took / 1000).toFixed(1)} s after the link came back`);
      if (!back) {
        const e2ee = await Promise.all([cut, other].map((x) => x.page.evaluate(() => window.plenary.e2ee())));
        t.diagnostic(`pages' E2EE state: ${JSON.stringify(e2ee.map((e) => ({ member: e.member, epoch: e.epoch, leaf: e.leaf, failures: e.decryptFailures, per: e.perParticipant })))}`);
      }
      assert.ok(back, 'the cut page reconnects and media flows both ways again');
      assert.ok(took <= RESUME_MS, `within ${RESUME_MS / 1000} s of the link coming back (took ${(took / 1000).toFixed(1)} s)`);
    });
  } finally {
    await Promise.all(pages.map((b) => b.close()));
    await srv?.stop();
    ns.destroy();
  }
});
