// UI smoke test of the web client against the real server: the landing
// page creates a meeting (`/m/<room>#<secret>`, the secret made in the
// browser), the pre-join screen shows and joins, a second participant sees
// the first one's mute state change in the participant list, leaving and
// rejoining work; pasted links and codes without their secret are refused.
// Screenshots of each screen go to tests/e2e/artifacts/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { meetingFixture, foreignRequests, randomId, explained, waitFor, textEnds, ARTIFACTS, newSecret, joinPath } from './lib/harness.mjs';

const INCOMPLETE = 'This link is incomplete: the part after # is missing or damaged';

const m = meetingFixture({ server: { name: 'ui-server' }, prepare: () => fs.mkdirSync(ARTIFACTS, { recursive: true }) });

const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });

test('landing, pre-join, join, mute, leave and rejoin', { timeout: 90_000 }, async (t) => explained(t, m.ctx, async () => {
  const [a, b] = await m.openMany(2, { viewport: { width: 1280, height: 800 } });
  const nameA = `Alice-${randomId(4)}`;
  const nameB = `Bob-${randomId(4)}`;

  // Landing page: "New meeting" opens /m/<random id>#<secret> (the secret is
  // made in the browser and lives only in the fragment).
  await a.page.goto(m.server.url('/'));
  await a.page.getByRole('heading', { level: 1 }).waitFor();
  await shot(a.page, 'landing');
  await a.page.getByRole('button', { name: 'New meeting' }).click();
  await a.page.waitForURL(/\/m\/[A-Za-z0-9_-]{10,}#[A-Za-z0-9_-]{22,}$/);
  const room = new URL(a.page.url()).pathname.split('/')[2];
  const fragment = new URL(a.page.url()).hash;

  // Pre-join screen: preview, devices, name; Join is disabled without a name.
  await a.page.locator('#prejoin').waitFor({ state: 'visible' });
  const join = a.page.getByRole('button', { name: 'Join now' });
  assert.equal(await join.isDisabled(), true, 'Join is disabled without a name');
  await a.page.waitForFunction(() => document.getElementById('preview-video').videoWidth > 0);
  assert.ok(await a.page.locator('#cam-select option').count() >= 1, 'camera list');
  assert.ok(await a.page.locator('#mic-select option').count() >= 1, 'microphone list');
  await a.page.getByLabel('Your name').fill(nameA);
  await a.page.waitForTimeout(300); // let the button's transition finish
  await shot(a.page, 'prejoin');
  await join.click();
  await a.page.locator('#meeting').waitFor({ state: 'visible' });
  await a.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 20_000 });
  assert.equal(await a.page.locator('#conn-text').textContent(), 'Connected');
  await shot(a.page, 'meeting-alone');
  // Alone, a one-person group's code is nobody's to compare: none is shown.
  await a.page.waitForFunction(() => window.plenary.e2ee().member, null, { timeout: 20_000 });
  assert.equal((await a.page.evaluate(() => window.plenary.e2ee())).securityCode, null);
  assert.match(await a.page.locator('#security-code').textContent(), /^Nobody else is here yet/);

  // The name is remembered for the next visit.
  assert.equal(await a.page.evaluate(() => localStorage.getItem('plenary.name')), nameA);

  // A second participant joins directly.
  await b.page.goto(m.server.url(joinPath(room, fragment.slice(1), nameB)));
  await b.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 20_000 });
  await a.page.locator('.tile .tile-name', { hasText: nameB }).waitFor();
  await b.page.locator('.tile .tile-name', { hasText: nameA }).waitFor();
  const code = await a.page.waitForFunction(() => window.plenary.e2ee().securityCode, null, { timeout: 20_000 }).then((h) => h.jsonValue());
  assert.equal(await a.page.locator('#security-code').textContent(), code, 'with someone to compare with, the code shows');
  // Wait for video from the other side before the screenshot.
  await a.page.locator('.tile.has-frames:not(.tile-self)').waitFor({ timeout: 20_000 });
  await a.page.getByRole('button', { name: 'Show participants' }).click();
  await a.page.waitForTimeout(500);
  await shot(a.page, 'meeting');

  // Muting in A shows in B's participant list and on A's tile in B.
  await b.page.getByRole('button', { name: 'Show participants' }).click();
  const aInB = b.page.locator('.person', { has: b.page.locator('.person-display-name', { hasText: nameA }) });
  await aInB.waitFor();
  assert.equal(await aInB.getAttribute('data-audio-muted'), 'false');
  await a.page.getByRole('button', { name: 'Mute microphone' }).click();
  await a.page.getByRole('button', { name: 'Unmute microphone' }).waitFor();
  await b.page.waitForFunction((n) => [...document.querySelectorAll('.person')]
    .some((li) => li.querySelector('.person-display-name')?.textContent === n && li.dataset.audioMuted === 'true'), nameA);
  assert.equal(await aInB.getByRole('img', { name: 'Microphone off' }).count(), 1);
  const aTileInB = b.page.locator('.tile', { has: b.page.locator('.tile-name', { hasText: nameA }) });
  assert.equal(await aTileInB.locator('.tile-mic').isVisible(), true, 'muted icon on the tile');
  await a.page.getByRole('button', { name: 'Unmute microphone' }).click();
  await b.page.waitForFunction((n) => [...document.querySelectorAll('.person')]
    .some((li) => li.querySelector('.person-display-name')?.textContent === n && li.dataset.audioMuted === 'false'), nameA);

  // Camera off shows as an avatar in B.
  await a.page.getByRole('button', { name: 'Turn off camera' }).click();
  await b.page.waitForFunction((n) => [...document.querySelectorAll('.person')]
    .some((li) => li.querySelector('.person-display-name')?.textContent === n && li.dataset.videoMuted === 'true'), nameA);
  await aTileInB.locator('.avatar').waitFor({ state: 'visible' });
  await shot(b.page, 'meeting-camera-off');
  await a.page.getByRole('button', { name: 'Turn on camera' }).click();
  await b.page.waitForFunction((n) => [...document.querySelectorAll('.person')]
    .some((li) => li.querySelector('.person-display-name')?.textContent === n && li.dataset.videoMuted === 'false'), nameA);

  // Leave: A sees the "left" screen, B sees A go; rejoin brings A back.
  await a.page.getByRole('button', { name: 'Leave meeting' }).click();
  await a.page.getByRole('heading', { name: 'You left the meeting' }).waitFor();
  await shot(a.page, 'left');
  await b.page.locator('.person-display-name', { hasText: nameA }).waitFor({ state: 'detached' });
  await a.page.getByRole('button', { name: 'Rejoin' }).click();
  await a.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 20_000 });
  await b.page.locator('.person-display-name', { hasText: nameA }).waitFor();
  // A left on purpose: its chat says it rejoined (not "Reconnected"), once.
  await a.page.locator('#chat-list .chat-note', { hasText: /^Rejoined: / }).waitFor({ state: 'attached', timeout: 20_000 });
  assert.deepEqual((await a.page.locator('#chat-list .chat-note').allTextContents()).map((n) => n.split(':')[0]), ['Rejoined']);

  for (const [i, br] of [a, b].entries()) {
    assert.deepEqual(foreignRequests(br.requests, m.server.origin), [], `page ${i} made requests to other origins`);
    assert.ok(!br.requests.some((r) => r.includes(fragment.slice(1))), `page ${i} never sent the meeting secret`);
    assert.deepEqual(br.errors.filter((e) => !/favicon/.test(e)), [], `page ${i} had no errors`);
  }
}));

test('a raised hand is announced (a polite status toast, the name bidi-isolated), its lowering is not', { timeout: 90_000 }, async (t) => explained(t, m.ctx, async () => {
  // A name ending in a right-to-left override must not turn " raised their hand" around.
  const [nameA, nameH] = [`Alice-${randomId(4)}`, `Mallory-${randomId(4)}\u202e`];
  const [a, h] = await m.joinGroup(`hand-${randomId(6)}`, newSecret(), [nameA, nameH]);
  const tileH = a.page.locator('.tile:not(.tile-self)', { has: a.page.locator('.tile-name', { hasText: nameH }) });
  await tileH.waitFor({ timeout: 30_000 });
  // Count every hand toast A ever shows (they go after a few seconds).
  await a.page.evaluate(() => {
    window.handToasts = [];
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) if (n.classList?.contains('toast-hand')) window.handToasts.push(n.textContent);
    }).observe(document.getElementById('toasts'), { childList: true });
  });
  const toasts = () => a.page.evaluate(() => window.handToasts);
  const handButton = h.page.locator('#hand-button');
  assert.ok(await waitFor(() => h.page.evaluate(() => window.plenary.e2ee().member), { ms: 20_000, every: 200 }), 'H is in the group');

  await handButton.click();
  const toast = a.page.locator('.toast-hand');
  await toast.waitFor({ timeout: 15_000 });
  assert.equal(await toast.textContent(), `${nameH} raised their hand`);
  assert.equal(await toast.getAttribute('role'), 'status', 'read out politely by screen readers');
  assert.equal(await a.page.locator('#toasts').getAttribute('aria-live'), 'polite');
  assert.equal(await toast.locator('bdi').textContent(), nameH, 'the name is isolated for bidi');
  // " raised their hand" reads left to right as written, after the name.
  const [first, last] = await toast.locator(':scope > span').evaluate(textEnds, 1);
  assert.ok(first < last, `the text after the name is not reordered (first at x=${first}, last at x=${last})`);
  assert.equal(await tileH.locator('.tile-hand').isVisible(), true, 'the icon stays on the tile');

  // Lowering: the icon goes, nothing is announced; a new raise is announced again.
  await handButton.click();
  assert.ok(await waitFor(async () => !(await tileH.locator('.tile-hand').isVisible()), { ms: 15_000, every: 200 }), 'the icon goes');
  assert.equal((await toasts()).length, 1, 'the lowering is not announced');
  await handButton.click();
  assert.ok(await waitFor(async () => (await toasts()).length === 2, { ms: 15_000, every: 200 }), 'the next raise is announced');
  assert.equal((await toasts())[1], `${nameH} raised their hand`);
}));

test('the pre-join preview says "Starting camera…" while the camera starts, not "Camera not available"', { timeout: 30_000 }, async (t) => explained(t, m.ctx, async () => {
  const c = await m.open();
  // The camera answers only when the test lets it, as a slow camera would.
  await c.page.addInitScript(() => {
    const md = navigator.mediaDevices;
    const getUserMedia = md.getUserMedia.bind(md);
    const gate = new Promise((resolve) => { window.releaseCamera = resolve; });
    md.getUserMedia = async (constraints) => { await gate; return getUserMedia(constraints); };
  });
  await c.page.goto(m.server.url(`/m/ui-slow-cam-${randomId(6)}#${newSecret()}`));
  await c.page.locator('#prejoin').waitFor({ state: 'visible' });
  const off = c.page.locator('#preview-off-text');
  await off.waitFor({ state: 'visible' });
  assert.equal(await off.textContent(), 'Starting camera…');
  await c.page.evaluate(() => window.releaseCamera());
  await c.page.waitForFunction(() => document.getElementById('preview-video').videoWidth > 0);
  assert.equal(await c.page.locator('#preview-off').isHidden(), true, 'the picture replaces the note');
}));

test('Join pressed while the camera still starts: no reload, the name never reaches the server, the join goes ahead', { timeout: 40_000 }, async (t) => explained(t, m.ctx, async () => {
  const c = await m.open();
  const name = `Early-${randomId(6)}`;
  const requested = [];
  c.page.on('request', (r) => requested.push(r.url()));
  // The camera answers only when the test lets it, as while a permission prompt is open.
  await c.page.addInitScript(() => {
    const md = navigator.mediaDevices;
    const getUserMedia = md.getUserMedia.bind(md);
    const gate = new Promise((resolve) => { window.releaseCamera = resolve; });
    md.getUserMedia = async (constraints) => { await gate; return getUserMedia(constraints); };
  });
  const url = m.server.url(`/m/ui-early-${randomId(6)}#${newSecret()}`);
  await c.page.goto(url);
  await c.page.locator('#prejoin').waitFor({ state: 'visible' });
  await c.page.evaluate(() => { window.sameDocument = true; });
  await c.page.getByLabel('Your name').fill(name);
  await c.page.getByRole('button', { name: 'Join now' }).click();
  await c.page.waitForTimeout(1000);
  assert.equal(await c.page.evaluate(() => window.sameDocument === true), true, 'the page did not reload');
  assert.equal(c.page.url(), url, 'the URL is unchanged');
  await c.page.evaluate(() => window.releaseCamera());
  await c.page.locator('#meeting').waitFor({ state: 'visible', timeout: 20_000 });
  await c.page.waitForFunction(() => window.plenary.state === 'connected', null, { timeout: 20_000 });
  const leaked = requested.filter((u) => u.includes(name) || u.includes(encodeURIComponent(name)));
  assert.deepEqual(leaked, [], 'no request carries the name');
}));

test('joining from a pasted link or code; without its secret it is refused', { timeout: 30_000 }, async (t) => explained(t, m.ctx, async () => {
  const c = await m.open();
  const room = randomId(12);
  const secret = newSecret();
  const paste = async (text) => {
    await c.page.goto(m.server.url('/'));
    await c.page.getByLabel('Meeting link or code').fill(text);
    await c.page.getByRole('button', { name: 'Join', exact: true }).click();
  };
  await paste(`${m.server.origin}/m/${room}#${secret}`);
  await c.page.waitForURL(m.server.url(`/m/${room}#${secret}`));
  await c.page.locator('#prejoin').waitFor({ state: 'visible' });

  // A code is the room and its secret.
  await paste(`${room}#${secret}`);
  await c.page.waitForURL(m.server.url(`/m/${room}#${secret}`));
  await c.page.locator('#prejoin').waitFor({ state: 'visible' });

  await paste('not a room!');
  await c.page.locator('#join-error', { hasText: 'That is not a meeting link or code.' }).waitFor({ state: 'visible' });

  // A link or code without the part after #, or with a damaged one, cannot join.
  for (const text of [`${m.server.origin}/m/${room}`, room, `${room}#${secret.slice(0, 10)}`]) {
    await paste(text);
    await c.page.locator('#join-error', { hasText: INCOMPLETE }).waitFor({ state: 'visible' });
    assert.equal(c.page.url(), m.server.url('/'), 'stays on the landing page');
  }
}));

test('room ids, links, secrets and names (client modules in the browser)', { timeout: 30_000 }, async (t) => explained(t, m.ctx, async () => {
  const d = await m.open();
  await d.page.goto(m.server.url('/'));
  const r = await d.page.evaluate(async () => {
    const room = await import('/room.js');
    const session = await import('/session.js');
    const e2ee = await import('/e2ee.js');
    await e2ee.loadWasm();
    const ids = Array.from({ length: 50 }, () => room.newRoomId());
    return {
      idsValid: ids.every((id) => /^[A-Za-z0-9_-]{12}$/.test(id) && room.isRoomId(id)),
      idsDistinct: new Set(ids).size === ids.length,
      bad: ['', 'a b', 'x'.repeat(65), '../x', 'é'].map((s) => room.isRoomId(s)),
      fromPath: [room.roomFromPath('/m/abc-DEF_1'), room.roomFromPath('/m/a%2Fb'), room.roomFromPath('/x/abc')],
      secret: room.newSecret(),
      // none, none, too short, bad character, 65 bytes, unused bits set, 16 bytes, 32 bytes, 64 bytes
      secrets: ['', '#', '#abc', `#${'A'.repeat(21)}+`, `#${'A'.repeat(87)}`, 'B'.repeat(43), `#${'A'.repeat(22)}`, `${'B'.repeat(42)}A`, `${'C'.repeat(85)}A`]
        .map((h) => room.secretFromHash(h)),
      link: room.parseJoinInput(`${location.origin}/m/abc123#${'A'.repeat(22)}`),
      noSecret: [room.parseJoinInput(`${location.origin}/m/abc123`), room.parseJoinInput(`${location.origin}/m/abc123#secret`)],
      other: room.parseJoinInput('https://plenary.example/m/abc123'),
      code: room.parseJoinInput(`  abc123#${'A'.repeat(22)} `),
      bareCode: room.parseJoinInput('  abc123 '),
      junk: [room.parseJoinInput('javascript:alert(1)'), room.parseJoinInput('hello world')],
      name: session.cleanName(`  ${'n'.repeat(100)}  `),
      // plenary-e2ee's test vector: secret = bytes 0..15.
      tags: [e2ee.meetingRoomTag('standup', 'AAECAwQFBgcICQoLDA0ODw'), e2ee.meetingRoomTag('other', 'AAECAwQFBgcICQoLDA0ODw')],
    };
  });
  assert.ok(r.idsValid, 'new room ids are 12 base64url characters');
  assert.ok(r.idsDistinct, 'new room ids differ');
  assert.deepEqual(r.bad, [false, false, false, false, false]);
  assert.deepEqual(r.fromPath, ['abc-DEF_1', null, null]);
  assert.match(r.secret, /^[A-Za-z0-9_-]{22}$/, 'a new secret is 16 random bytes, base64url');
  assert.deepEqual(r.secrets.map((x) => x.status), ['none', 'none', 'invalid', 'invalid', 'invalid', 'invalid', 'valid', 'valid', 'valid']);
  assert.deepEqual(r.link, { url: `/m/abc123#${'A'.repeat(22)}` });
  assert.deepEqual(r.noSecret, [{ incomplete: true }, { incomplete: true }]);
  assert.deepEqual(r.other, { url: 'https://plenary.example/m/abc123' });
  assert.deepEqual(r.code, { url: `/m/abc123#${'A'.repeat(22)}` });
  assert.deepEqual(r.bareCode, { incomplete: true });
  assert.deepEqual(r.junk, [null, null]);
  assert.equal(r.name.length, 64, 'names are cut to 64 characters');
  assert.deepEqual(r.tags, ['aS4mntnm_rIOjgEerx05EQ', '1Eb0ZU6SGeX_OWDexHdsOA'], 'room tags as plenary-e2ee makes them');
  assert.deepEqual(foreignRequests(d.requests, m.server.origin), []);
}));
