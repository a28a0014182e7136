// Adaptive quality in real Chromium against the real server: a simulcast
// layer that no subscriber receives is paused at the publisher (the SFU
// sends `layers_paused`, the page sets `active = false` on that encoding,
// so its outbound-rtp bytes stop growing), and resumed when a subscriber
// enlarges the tile. The subscriber's page shows the server's `quality`
// report (estimate and forwarded layer).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meetingFixture, waitFor, sleep, explained, newSecret, randomId } from './lib/harness.mjs';

const m = meetingFixture({ server: { name: 'adaptive-server' } });

/** Bytes sent so far per simulcast RID by the page. */
async function sentByRid(page) {
  const s = await page.evaluate(() => window.plenary.stats());
  return Object.fromEntries((s.local?.video ?? []).map((v) => [v.rid, { bytes: v.bytesSent ?? 0, height: v.frameHeight ?? 0 }]));
}

/** Bytes each RID sent during `ms`. */
async function growth(page, ms) {
  const a = await sentByRid(page);
  await sleep(ms);
  const b = await sentByRid(page);
  return Object.fromEntries(Object.keys(b).map((rid) => [rid, b[rid].bytes - (a[rid]?.bytes ?? 0)]));
}

test('a layer nobody receives is paused and resumes when the tile grows', { timeout: 120_000 }, async (t) => explained(t, m.ctx, async () => {
  const [pub, sub] = await m.openMany(2, { viewport: { width: 1280, height: 800 } });
  const room = `adaptive-${randomId(8)}`;
  const secret = newSecret();
  await m.join(pub, room, secret, 'Publisher');
  await m.join(sub, room, secret, 'Subscriber');
  for (const b of [pub, sub]) {
    await b.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 30_000 });
  }
  // The subscriber renders the publisher large: every layer flows.
  assert.ok(await waitFor(async () => {
    const s = await sub.page.evaluate(() => window.plenary.stats());
    return s.participants[0]?.framesDecoded > 30;
  }, { ms: 30_000 }), 'the subscriber decodes the publisher');
  const layers = await sentByRid(pub.page);
  const rids = Object.keys(layers).filter((r) => layers[r].bytes > 0);
  assert.ok(rids.length >= 2, `the publisher sends simulcast: ${JSON.stringify(layers)}`);
  const top = rids.sort((x, y) => layers[y].height - layers[x].height)[0];

  // A small tile: the top layer is no longer received by anyone, so it is paused.
  await sub.page.setViewportSize({ width: 360, height: 240 });
  assert.ok(await waitFor(async () => (await growth(pub.page, 1500))[top] === 0, { ms: 20_000, every: 0 }), `layer ${top} paused`);
  const meanwhile = await growth(pub.page, 1500);
  assert.ok(Object.entries(meanwhile).some(([rid, n]) => rid !== top && n > 0), `smaller layers keep flowing: ${JSON.stringify(meanwhile)}`);

  // The quality report names the forwarded (smaller) layer.
  assert.ok(await waitFor(async () => {
    const q = await sub.page.evaluate(() => window.plenary.quality());
    return q && q.tracks?.length === 1 && q.tracks[0].rid && q.tracks[0].rid !== top;
  }, { ms: 10_000 }), 'the quality report names the smaller layer');
  assert.match(await sub.page.locator('#conn-state').getAttribute('title'), /Download estimate/);

  // Enlarged again: the top layer resumes and reaches the subscriber.
  await sub.page.setViewportSize({ width: 1280, height: 800 });
  assert.ok(await waitFor(async () => (await growth(pub.page, 1000))[top] > 10_000, { ms: 20_000, every: 0 }), `layer ${top} resumed`);
  assert.ok(await waitFor(async () => {
    const q = await sub.page.evaluate(() => window.plenary.quality());
    return q?.tracks?.[0]?.rid === top;
  }, { ms: 20_000 }), `the subscriber gets layer ${top} again`);
}));

test('pinning a tile shows it large and tells the server it is pinned', { timeout: 120_000 }, async (t) => explained(t, m.ctx, async () => {
  const [a, b] = await m.openMany(2, { viewport: { width: 1280, height: 800 } });
  const room = `pin-${randomId(8)}`;
  const secret = newSecret();
  await m.join(a, room, secret, 'Pinner');
  await m.join(b, room, secret, 'Pinned');
  for (const p of [a, b]) {
    await p.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 30_000 });
  }
  const tile = a.page.locator('.tile:not(.tile-self)');
  await tile.waitFor({ timeout: 30_000 });
  const before = await tile.boundingBox();
  const selfBefore = await a.page.locator('.tile.tile-self').boundingBox();
  await tile.hover();
  await tile.locator('.tile-pin').click();
  assert.ok(await waitFor(async () => (await tile.getAttribute('class')).includes('pinned'), { ms: 5_000 }), 'the tile is pinned');
  assert.equal(await tile.locator('.tile-pin').getAttribute('aria-pressed'), 'true');
  const pinned = await tile.boundingBox();
  const selfAfter = await a.page.locator('.tile.tile-self').boundingBox();
  assert.ok(pinned.width > before.width * 1.2, `the pinned tile is larger: ${before.width} -> ${pinned.width}`);
  assert.ok(selfAfter.width < selfBefore.width, `the other tiles move to a strip: ${selfBefore.width} -> ${selfAfter.width}`);
  const sentPinned = () => a.frames.some((f) => f.includes('"layer_preference"') && f.includes('"pinned":true'));
  assert.ok(await waitFor(async () => sentPinned(), { ms: 5_000 }), 'layer_preference carries pinned: true');
  // Unpin: back to the grid, and the server is told.
  const sentBefore = a.frames.length;
  await tile.locator('.tile-pin').click();
  assert.ok(await waitFor(async () => !(await tile.getAttribute('class')).includes('pinned'), { ms: 5_000 }), 'unpinned');
  assert.ok(await waitFor(async () => a.frames.slice(sentBefore).some((f) => f.includes('"layer_preference"') && !f.includes('"pinned"')), { ms: 5_000 }),
    'an unpinned layer_preference follows');
  // The pinned page's video still decodes throughout.
  const s = await a.page.evaluate(() => window.plenary.stats());
  assert.ok(s.participants[0]?.framesDecoded > 0, 'video decodes');
}));
