// Resilience of the web client: a participant without any camera or
// microphone still joins and sees the others, and pages reconnect by
// themselves when the server restarts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  testMedia, startServer, openBrowser, foreignRequests, policyViolations, randomId, waitFor, sleep,
  explained, newSecret, joinPath,
} from './lib/harness.mjs';

let server;
let media;
const browsers = [];
/** What `explained` prints from when a test fails. */
const ctx = { server: () => server, browsers: () => browsers };

before(async () => {
  media = testMedia();
  server = await startServer({ name: 'resilience-server' });
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  await server?.stop();
});

const statsOf = (b) => b.page.evaluate(() => window.plenary.stats());

/** Frames `b` decoded from the participant called `name` (0 if not there). */
async function framesFrom(b, name) {
  const s = await statsOf(b);
  return s.participants.find((p) => p.name === name)?.framesDecoded ?? 0;
}

test('a participant without camera and microphone joins and sees the others', { timeout: 60_000 }, async (t) => explained(t, ctx, async () => {
  const [withMedia, without] = await Promise.all([openBrowser(media), openBrowser(media, { devices: false })]);
  browsers.push(withMedia, without);
  const room = randomId();
  const secret = newSecret();
  const nameA = `Cam-${randomId(4)}`;
  const nameB = `NoCam-${randomId(4)}`;
  await withMedia.page.goto(server.url(joinPath(room, secret, nameA)));
  await without.page.goto(server.url(joinPath(room, secret, nameB)));

  const seen = await waitFor(async () => (await framesFrom(without, nameA)) > 50, { ms: 30_000 });
  assert.ok(seen, `the participant without devices decodes video (${await framesFrom(without, nameA)} frames)`);
  const s = await statsOf(withMedia);
  const b = s.participants.find((p) => p.name === nameB);
  assert.ok(b, 'the other page lists the participant without devices');
  assert.equal(b.audioMuted, true, 'shown with microphone off');
  assert.equal(b.videoMuted, true, 'shown with camera off');
  assert.equal(await without.page.getByRole('button', { name: 'Unmute microphone' }).count(), 1);
  for (const br of [withMedia, without]) {
    assert.deepEqual(foreignRequests(br.requests, server.origin), []);
    assert.deepEqual(policyViolations(br), []);
  }
  await Promise.all([withMedia.close(), without.close()]);
  browsers.length = 0;
}));

test('pages reconnect after the server restarts', { timeout: 90_000 }, async (t) => explained(t, ctx, async () => {
  const [a, b] = await Promise.all([openBrowser(media), openBrowser(media)]);
  browsers.push(a, b);
  const room = randomId();
  const secret = newSecret();
  const nameA = `A-${randomId(4)}`;
  const nameB = `B-${randomId(4)}`;
  await a.page.goto(server.url(joinPath(room, secret, nameA)));
  await b.page.goto(server.url(joinPath(room, secret, nameB)));
  assert.ok(await waitFor(async () => (await framesFrom(a, nameB)) > 30 && (await framesFrom(b, nameA)) > 30),
    'video flows before the restart');

  const { httpPort, rtcPort } = server;
  await server.stop();
  const reconnecting = await waitFor(async () => {
    const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
    return states.every((st) => st === 'reconnecting') && states;
  }, { ms: 10_000, every: 200 });
  assert.ok(reconnecting, 'both pages show "reconnecting" while the server is down');
  assert.equal(await a.page.locator('#conn-text').textContent(), 'Reconnecting…');
  await sleep(1000);

  server = await startServer({ name: 'resilience-server-2', httpPort, rtcPort });
  const back = await waitFor(async () => (await framesFrom(a, nameB)) > 30 && (await framesFrom(b, nameA)) > 30,
    { ms: 40_000 });
  const states = await Promise.all([a, b].map((x) => x.page.evaluate(() => window.plenary.state)));
  assert.ok(back, `video flows again after the restart (states ${states})`);
  assert.deepEqual(states, ['connected', 'connected']);
  for (const br of [a, b]) {
    assert.deepEqual(foreignRequests(br.requests, server.origin), []);
    assert.deepEqual(policyViolations(br), []);
  }
}));
