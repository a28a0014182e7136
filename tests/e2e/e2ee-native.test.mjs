// Mixed end-to-end encrypted meeting: two headless Chromium pages and one
// native client (`plenary join`) on the same `/m/<room>#<secret>` link.
//
// Asserts:
// - pages and the native client reach one epoch with the same security code;
// - each page decodes the native client's video after SFrame decryption
//   (framesDecoded > 100) and decrypts its audio;
// - the native client decrypts > 100 video and audio frames from each page
//   and learns the pages' names from their encrypted profiles; the pages
//   show the native client's name;
// - no name reaches the server's log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  testMedia, startServer, openBrowser, waitFor, randomId, explained, hasSubcommand, newSecret, joinPath, startNative,
} from './lib/harness.mjs';

const MIN_FRAMES = 100;
/** How long the native client publishes, seconds. */
const NATIVE_SECONDS = 25;

let server;
let media;
const browsers = [];
const ctx = { server: () => server, browsers: () => browsers };

before(async () => {
  media = testMedia();
  server = await startServer({ name: 'e2ee-native-server' });
});

after(async () => {
  await Promise.all(browsers.map((b) => b.close()));
  await server?.stop();
});

const stats = (b) => b.page.evaluate(() => window.plenary.stats());
const e2ee = (b) => b.page.evaluate(() => window.plenary.e2ee());

test('browsers and a native client meet end-to-end encrypted and decrypt each other', { timeout: 150000 }, async (t) => {
  if (!hasSubcommand('join')) {
    t.skip('`plenary join` is not in this build');
    return;
  }
  await explained(t, ctx, async () => {
    const room = `e2ee-mixed-${randomId(6)}`;
    const secret = newSecret();
    const names = [`Participant-${randomId(6)}`, `Participant-${randomId(6)}`];
    const nativeName = `Participant-${randomId(6)}`;
    const pages = [];
    for (const [i, name] of names.entries()) {
      const b = await openBrowser(media);
      browsers.push(b);
      await b.page.goto(server.url(joinPath(room, secret, name)));
      pages.push(b);
      if (i === 0) await waitFor(async () => (await e2ee(b)).member, { ms: 20000, every: 200 });
    }
    const native = startNative(server.url(`/m/${room}#${secret}`), nativeName, { media, seconds: NATIVE_SECONDS });
    const nativeId = async () => (await waitFor(() => native.events.find((e) => e.event === 'joined'), { ms: 15000, every: 100 }))?.participant_id;
    const id = await nativeId();
    assert.ok(id != null, `native client joined: ${native.stderr.slice(-2000)}`);

    // One epoch and one security code for everyone.
    const agreed = await waitFor(async () => {
      const s = await Promise.all(pages.map(e2ee));
      const last = [...native.events].reverse().find((e) => e.event === 'epoch');
      const ok = last && s.every((x) => x.member && x.epoch === last.epoch && x.securityCode === last.security_code);
      return ok ? { pages: s, native: last } : null;
    }, { ms: 30000 });
    assert.ok(agreed, `same epoch and code: pages ${JSON.stringify((await Promise.all(pages.map(e2ee))).map((x) => ({ m: x.member, e: x.epoch })))}, native ${JSON.stringify(native.events.filter((e) => e.event === 'epoch').map((e) => e.epoch))}`);

    // Each page decodes the native client's video (decrypted in its worker).
    const decoded = await waitFor(async () => {
      const all = await Promise.all(pages.map(stats));
      const ok = all.every((s) => {
        const p = s.participants.find((x) => x.id === id);
        return p && p.framesDecoded > MIN_FRAMES && p.audioBytesReceived > 0;
      });
      return ok ? all : null;
    }, { ms: 45000 });
    assert.ok(decoded, `pages decode the native client: ${JSON.stringify((await Promise.all(pages.map(stats))).map((s) => s.participants.map((p) => ({ id: p.id, f: p.framesDecoded }))))}`);
    for (const b of pages) {
      const s = await waitFor(async () => {
        const x = await e2ee(b);
        const n = x.perParticipant[id];
        return n && n.video > MIN_FRAMES && n.audio > MIN_FRAMES ? x : null;
      }, { ms: 10000 });
      assert.ok(s, `page decrypts the native client's frames: ${JSON.stringify((await e2ee(b)).perParticipant)}`);
      await b.page.locator('.tile .tile-name', { hasText: nativeName }).waitFor({ timeout: 20000 });
    }

    const exit = await native.done;
    assert.equal(exit.code, 0, `plenary join exited with ${JSON.stringify(exit)}: ${native.stderr.slice(-2000)}`);
    const summary = native.events.find((e) => e.event === 'summary');
    assert.ok(summary, 'plenary join printed a summary');
    const pageIds = [...new Set(summary.tracks.map((tr) => tr.participant_id))];
    assert.equal(pageIds.length, 2, `native client received from both pages: ${JSON.stringify(summary.tracks)}`);
    for (const pid of pageIds) {
      for (const kind of ['video', 'audio']) {
        const got = summary.tracks.filter((tr) => tr.participant_id === pid && tr.kind === kind).reduce((a, tr) => a + (tr.decrypted || 0), 0);
        assert.ok(got > MIN_FRAMES, `native client decrypted ${got} ${kind} frames from p${pid}`);
      }
    }
    const learned = new Set(native.events.filter((e) => e.event === 'profile').map((e) => e.display_name));
    for (const n of names) assert.ok(learned.has(n), 'native client learned a page\'s name from its encrypted profile');
    const log = fs.readFileSync(server.logFile, 'utf8');
    for (const n of [...names, nativeName]) {
      assert.ok(!log.includes(n), 'a name reached the server log');
      assert.ok(!native.stderr.includes(n), 'the native client logged a name');
    }
  });
});
