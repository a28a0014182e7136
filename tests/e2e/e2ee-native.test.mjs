// Mixed end-to-end encrypted meeting: two headless Chromium pages and one
// native client (`plenary join`) on the same `/m/<room>#<secret>` link, with
// the operator tap on (`plenary serve --tap FILE.pcap`).
//
// Asserts:
// - pages and the native client reach one epoch with the same security code;
// - every participant decodes every other one's video and decrypts its audio:
//   each page decodes > 100 video frames (after SFrame decryption) from the
//   other page and from the native client and decrypts > 100 audio frames;
//   the native client decrypts > 100 video and audio frames from each page;
// - names come from encrypted profiles (the pages show the native client's
//   name, the native client learns the pages' names), and a chat message
//   arrives;
// - the native client leaves: the pages move to a new epoch and security code
//   and the video between them never stalls for more than 1 s;
// - the names ("Participant-" plus a random suffix), the chat text and the
//   secret appear nowhere in the tap file, the server's log, or any WebSocket
//   frame between the server and the pages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  meetingFixture, waitFor, randomId, explained, hasSubcommand, newSecret, tempDir, sleep,
} from './lib/harness.mjs';

const MIN_FRAMES = 100;
/** Longest the native client may stay (it is stopped with SIGINT before), seconds. */
const NATIVE_SECONDS = 120;
/** Longest allowed pause in a page's decoded video from the other page across the key rotation, ms. */
const MAX_STALL_MS = 1000;

let tapDir;
let tapFile;
const m = meetingFixture({
  prepare: () => {
    tapDir = tempDir('plenary-e2e-tap-');
    tapFile = path.join(tapDir, 'tap.pcap');
  },
  server: () => ({ name: 'e2ee-native-server', args: ['--tap', tapFile] }),
  cleanup: () => {
    if (tapDir) fs.rmSync(tapDir, { recursive: true, force: true });
  },
});

const stats = (b) => b.page.evaluate(() => window.plenary.stats());
const e2ee = (b) => b.page.evaluate(() => window.plenary.e2ee());

/** Samples, in the page, framesDecoded per remote participant every 100 ms: [{t (ms), f: {id: frames}}]. */
function startSampling(b) {
  return b.page.evaluate(() => {
    const samples = [];
    let busy = false;
    const timer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const s = await window.plenary.stats();
        samples.push({ t: performance.now(), f: Object.fromEntries(s.participants.map((p) => [p.id, p.framesDecoded])) });
      } finally {
        busy = false;
      }
    }, 100);
    window.plenaryTestSampling = { samples, stop: () => clearInterval(timer) };
  });
}

/** Stops the sampling; returns the longest time (ms) in which the frames from `id` did not grow, and the growth. */
async function longestStall(b, id) {
  const samples = await b.page.evaluate(() => {
    window.plenaryTestSampling.stop();
    return window.plenaryTestSampling.samples;
  });
  const mine = samples.filter((s) => s.f[id] != null);
  assert.ok(mine.length > 20, `enough samples (${mine.length})`);
  let last = mine[0];
  let worst = 0;
  for (const s of mine) {
    if (s.f[id] > last.f[id]) {
      worst = Math.max(worst, s.t - last.t);
      last = s;
    }
  }
  worst = Math.max(worst, mine[mine.length - 1].t - last.t);
  return { worst: Math.round(worst), grew: mine[mine.length - 1].f[id] - mine[0].f[id], seconds: (mine[mine.length - 1].t - mine[0].t) / 1000 };
}

test('browsers and a native client meet end-to-end encrypted; the tap, log and signaling hold no name or chat', { timeout: 180000 }, async (t) => {
  if (!hasSubcommand('join')) {
    t.skip('`plenary join` is not in this build');
    return;
  }
  await explained(t, m.ctx, async () => {
    const room = `e2ee-mixed-${randomId(6)}`;
    const secret = newSecret();
    const names = [`Participant-${randomId(6)}`, `Participant-${randomId(6)}`];
    const nativeName = `Participant-${randomId(6)}`;
    const chatText = `Chat-${randomId(12)}`;
    const pages = await m.joinGroup(room, secret, names);
    const native = m.native(m.server.url(`/m/${room}#${secret}`), nativeName, { seconds: NATIVE_SECONDS });
    const joined = await waitFor(() => native.events.find((e) => e.event === 'joined'), { ms: 15000, every: 100 });
    assert.ok(joined, `native client joined: ${native.stderr.slice(-2000)}`);
    const id = joined.participant_id;
    const pageIds = await waitFor(async () => {
      const ids = await Promise.all(pages.map(async (b) => (await stats(b)).participantId));
      return ids.every((x) => x != null) ? ids : null;
    }, { ms: 20000, every: 200 });
    assert.ok(pageIds, 'both pages joined');

    // One epoch and one security code for everyone.
    const agreed = await waitFor(async () => {
      const s = await Promise.all(pages.map(e2ee));
      const last = [...native.events].reverse().find((e) => e.event === 'epoch');
      const ok = last && s.every((x) => x.member && x.epoch === last.epoch && x.securityCode === last.security_code);
      return ok ? { pages: s, native: last } : null;
    }, { ms: 30000 });
    assert.ok(agreed, `same epoch and code: pages ${JSON.stringify((await Promise.all(pages.map(e2ee))).map((x) => ({ m: x.member, e: x.epoch })))}, native ${JSON.stringify(native.events.filter((e) => e.event === 'epoch').map((e) => e.epoch))}`);

    // Each page decodes the other page's and the native client's video and
    // receives their audio, all decrypted in its worker.
    const othersOf = (i) => [pageIds[1 - i], id];
    const decoded = await waitFor(async () => {
      const all = await Promise.all(pages.map(stats));
      return all.every((s, i) => othersOf(i).every((pid) => {
        const p = s.participants.find((x) => x.id === pid);
        return p && p.framesDecoded > MIN_FRAMES && p.audioBytesReceived > 0 && p.totalSamplesReceived > 0;
      })) ? all : null;
    }, { ms: 60000 });
    assert.ok(decoded, `pages ${JSON.stringify(pageIds)} decode everyone: ${JSON.stringify((await Promise.all(pages.map(stats))).map((s) => s.participants.map((p) => ({ id: p.id, f: p.framesDecoded, a: p.audioBytesReceived, s: p.totalSamplesReceived }))))}`);
    for (const [i, b] of pages.entries()) {
      const s = await waitFor(async () => {
        const x = await e2ee(b);
        return othersOf(i).every((pid) => x.perParticipant[pid]?.video > MIN_FRAMES && x.perParticipant[pid]?.audio > MIN_FRAMES) ? x : null;
      }, { ms: 10000 });
      assert.ok(s, `page ${i} decrypts everyone's frames: ${JSON.stringify((await e2ee(b)).perParticipant)}`);
      for (const name of [names[1 - i], nativeName]) {
        await b.page.locator('.tile .tile-name', { hasText: name }).waitFor({ timeout: 20000 });
      }
    }

    // Encrypted chat between the pages.
    await pages[0].page.getByRole('button', { name: 'Show chat' }).click();
    await pages[0].page.locator('#chat-input').fill(chatText);
    await pages[0].page.locator('#chat-send').click();
    await pages[1].page.getByRole('button', { name: 'Show chat' }).click();
    await pages[1].page.locator('.chat-line .chat-text', { hasText: chatText }).waitFor({ timeout: 10000 });

    // The native client leaves: the keys rotate, the pages' video goes on.
    await Promise.all(pages.map(startSampling));
    await sleep(1000);
    native.child.kill('SIGINT');
    const exit = await native.done;
    assert.equal(exit.code, 0, `plenary join exited with ${JSON.stringify(exit)}: ${native.stderr.slice(-2000)}`);
    const rotated = await waitFor(async () => {
      const s = await Promise.all(pages.map(e2ee));
      return s.every((x) => x.member && x.epoch > agreed.native.epoch && x.securityCode === s[0].securityCode
        && x.securityCode !== agreed.native.security_code) ? s : null;
    }, { ms: 15000, every: 200 });
    assert.ok(rotated, `a new epoch and security code after the native client left: ${JSON.stringify((await Promise.all(pages.map(e2ee))).map((x) => x.epoch))}`);
    await sleep(3000);
    for (const [i, b] of pages.entries()) {
      const stall = await longestStall(b, pageIds[1 - i]);
      t.diagnostic(`page ${i}: longest pause in the other page's video across the rotation ${stall.worst} ms (${stall.grew} frames in ${stall.seconds.toFixed(1)} s)`);
      assert.ok(stall.grew > 0, `page ${i} kept decoding the other page`);
      assert.ok(stall.worst <= MAX_STALL_MS, `page ${i}: the other page's video paused ${stall.worst} ms across the key rotation`);
    }

    // What the native client got.
    const summary = native.events.find((e) => e.event === 'summary');
    assert.ok(summary, 'plenary join printed a summary');
    for (const pid of pageIds) {
      for (const kind of ['video', 'audio']) {
        const got = summary.tracks.filter((tr) => tr.participant_id === pid && tr.kind === kind).reduce((a, tr) => a + (tr.decrypted || 0), 0);
        assert.ok(got > MIN_FRAMES, `native client decrypted ${got} ${kind} frames from p${pid}`);
      }
    }
    const learned = new Set(native.events.filter((e) => e.event === 'profile').map((e) => e.display_name));
    for (const n of names) assert.ok(learned.has(n), 'native client learned a page\'s name from its encrypted profile');

    // Nothing the operator sees holds a name, the chat text or the secret.
    const hidden = [...names, nativeName, chatText, secret];
    const tap = fs.readFileSync(tapFile);
    assert.ok(tap.length > 500000, `the tap recorded the meeting's media (${tap.length} bytes)`);
    const log = fs.readFileSync(m.server.logFile, 'utf8');
    assert.match(log, /tap/i, 'the server log says the tap is on');
    for (const s of hidden) {
      assert.ok(!tap.includes(Buffer.from(s, 'utf8')), 'the tap file holds no name, chat or secret');
      assert.ok(!log.includes(s), 'the server log holds no name, chat or secret');
      assert.ok(!native.stderr.includes(s), 'the native client logged no name, chat or secret');
    }
    for (const [i, b] of pages.entries()) {
      assert.ok(b.frames.length > 10, 'WebSocket frames were captured');
      const all = b.frames.join('\n');
      for (const s of hidden) assert.ok(!all.includes(s), `page ${i}'s WebSocket traffic holds no name, chat or secret`);
    }
  });
});
