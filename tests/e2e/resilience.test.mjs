// Resilience of the web client: a participant without any camera or
// microphone still joins and sees the others, pages reconnect by themselves
// when the server restarts, and a WebSocket handshake that gets no answer
// times out, says so, and is tried again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  meetingFixture, foreignRequests, policyViolations, randomId, waitFor, sleep, explained, newSecret, joinPath,
} from './lib/harness.mjs';

const m = meetingFixture({ server: { name: 'resilience-server' } });

const statsOf = (b) => b.page.evaluate(() => window.plenary.stats());

/** Frames `b` decoded from the participant called `name` (0 if not there). */
async function framesFrom(b, name) {
  const s = await statsOf(b);
  return s.participants.find((p) => p.name === name)?.framesDecoded ?? 0;
}

test('a participant without camera and microphone joins and sees the others', { timeout: 60_000 }, async (t) => explained(t, m.ctx, async () => {
  const [withMedia, without] = await Promise.all([m.open(), m.open({ devices: false })]);
  const room = randomId();
  const secret = newSecret();
  const nameA = `Cam-${randomId(4)}`;
  const nameB = `NoCam-${randomId(4)}`;
  await m.join(withMedia, room, secret, nameA);
  await m.join(without, room, secret, nameB);

  const seen = await waitFor(async () => (await framesFrom(without, nameA)) > 50, { ms: 30_000 });
  assert.ok(seen, `the participant without devices decodes video (${await framesFrom(without, nameA)} frames)`);
  const s = await statsOf(withMedia);
  const b = s.participants.find((p) => p.name === nameB);
  assert.ok(b, 'the other page lists the participant without devices');
  assert.equal(b.audioMuted, true, 'shown with microphone off');
  assert.equal(b.videoMuted, true, 'shown with camera off');
  assert.equal(await without.page.getByRole('button', { name: 'Unmute microphone' }).count(), 1);
  for (const br of [withMedia, without]) {
    assert.deepEqual(foreignRequests(br.requests, m.server.origin), []);
    assert.deepEqual(policyViolations(br), []);
  }
  await m.close(withMedia, without);
}));

test('pages reconnect after the server restarts', { timeout: 90_000 }, async (t) => explained(t, m.ctx, async () => {
  const [a, b] = await m.openMany(2);
  const room = randomId();
  const secret = newSecret();
  const nameA = `A-${randomId(4)}`;
  const nameB = `B-${randomId(4)}`;
  await m.join(a, room, secret, nameA);
  await m.join(b, room, secret, nameB);
  assert.ok(await waitFor(async () => (await framesFrom(a, nameB)) > 30 && (await framesFrom(b, nameA)) > 30),
    'video flows before the restart');

  await m.server.stop();
  const reconnecting = await waitFor(async () => {
    const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
    return states.every((st) => st === 'reconnecting') && states;
  }, { ms: 10_000, every: 200 });
  assert.ok(reconnecting, 'both pages show "reconnecting" while the server is down');
  assert.equal(await a.page.locator('#conn-text').textContent(), 'Reconnecting…');
  await sleep(1000);

  await m.startAgain('resilience-server-2');
  const back = await waitFor(async () => (await framesFrom(a, nameB)) > 30 && (await framesFrom(b, nameA)) > 30,
    { ms: 40_000 });
  const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
  assert.ok(back, `video flows again after the restart (states ${states})`);
  assert.deepEqual(states, ['connected', 'connected']);
  for (const br of [a, b]) {
    assert.deepEqual(foreignRequests(br.requests, m.server.origin), []);
    assert.deepEqual(policyViolations(br), []);
  }
}));

/**
 * A TCP front for the server on a free loopback port: it passes every
 * connection through, except that while `swallow` is set it accepts a
 * WebSocket handshake (`GET /ws`) and never answers it, as a broken proxy or
 * a black-holed network would. Returns {origin, swallowed, close()}.
 */
async function stallingFront(upstreamPort, swallow) {
  const sockets = new Set();
  const front = { swallowed: 0 };
  const srv = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.once('data', (head) => {
      if (swallow() && head.toString('latin1').startsWith('GET /ws')) {
        front.swallowed++;
        return;
      }
      const up = net.connect(upstreamPort, '127.0.0.1', () => {
        up.write(head);
        client.pipe(up).pipe(client);
      });
      sockets.add(up);
      up.on('close', () => { sockets.delete(up); client.destroy(); });
      up.on('error', () => client.destroy());
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  front.origin = `http://127.0.0.1:${srv.address().port}`;
  front.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => srv.close(r));
  };
  return front;
}

test('an unanswered WebSocket handshake times out, is shown, and is retried', { timeout: 90_000 }, async (t) => explained(t, m.ctx, async () => {
  let swallow = true;
  const front = await stallingFront(m.server.httpPort, () => swallow);
  try {
    const b = await m.open();
    await b.page.goto(`${front.origin}${joinPath(randomId(), newSecret(), `T-${randomId(4)}`)}`);
    // The handshake hangs: after the connect timeout (10 s) the page says the
    // server does not answer, instead of "Connecting…" for minutes.
    const shown = await waitFor(async () => {
      const text = await b.page.locator('#conn-text').textContent();
      return /No answer from the server, trying again/.test(text) && text;
    }, { ms: 25_000, every: 200 });
    assert.ok(shown, `the page says the server does not answer: ${await b.page.locator('#conn-text').textContent()}`);
    assert.ok(front.swallowed >= 1);
    assert.equal(await b.page.evaluate(() => window.plenary.state), 'connecting');
    // The next attempt gets through.
    swallow = false;
    const connected = await waitFor(async () => (await b.page.evaluate(() => window.plenary.state)) === 'connected', { ms: 40_000, every: 200 });
    assert.ok(connected, 'connected once the server answers');
    assert.equal(await b.page.locator('#conn-text').textContent(), 'Connected');
    assert.deepEqual(policyViolations(b), []);
    await m.close(b);
  } finally {
    await front.close();
  }
}));
