// Real network conditions between the server and a native subscriber: the
// native client (`plenary join`) runs in its own network namespace behind a
// veth pair (lib/netns.mjs) and receives a headless Chromium page that
// publishes simulcast video and audio, end-to-end encrypted.
//
// - 3% random loss into the namespace (iptables statistic): the native
//   client hears the page's audio without any gap over 200 ms, its
//   recording of the page's video decodes with ffmpeg throughout (about
//   15 fps or more, no error) and the video never stalls for a second.
//   Gaps are measured in media time (`max_media_gap_ms`, from RTP
//   timestamps: what was lost or dropped), so that frames a loaded machine
//   only delivers late do not count; arrival-time gaps are printed.
// - 500 kbit/s cap into the namespace (tbf): the server moves the native
//   client to the lowest simulcast layer (`q`) and its audio has no gap over
//   200 ms, before, during and after the step down; removing the cap brings
//   the layer it had before back. This needs the SFU's bandwidth-driven
//   layer allocation (issue #3 item 1). An audio gap here is audio that never
//   arrived, by RTP time (`max_media_gap_ms`: the cap's queue drops what it
//   cannot carry within 200 ms): on a loaded machine, frames that are only
//   late because a process waited for a core are not the link's doing.
// - Link cut: the native client notices (nothing received for 6 s),
//   reports `reconnecting`, and once the link is back it joins again and
//   decrypts audio and video within 10 s.
//
// Needs root and iproute2/iptables/tc; skips with the reason otherwise.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import {
  ROOT, PLENARY_BIN, meetingFixture, randomId, waitFor, explained, newSecret, tempDir, hasSubcommand, sleep,
} from './lib/harness.mjs';
import { createNetns, netnsUnavailable } from './lib/netns.mjs';

/** Longest acceptable silence in received audio, milliseconds. */
const MAX_AUDIO_GAP_MS = 200;
/** How long the native client receives, seconds of connected media. */
const RECEIVE_SECONDS = 20;

const unavailable = netnsUnavailable() ?? (hasSubcommand('join') ? null : '`plenary join` is not in this build');
let ns;
const m = meetingFixture({
  skip: unavailable,
  prepare: () => {
    ns = createNetns();
  },
  server: () => ({ name: 'netns-server', host: ns.hostIp }),
  cleanup: () => ns?.destroy(),
});

/** Starts `plenary join --json` inside the namespace, receiving only. */
function startShapedNative(url, name, args) {
  const argv = [...ns.prefix, PLENARY_BIN, 'join', url, '--name', name, '--json', ...args];
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const events = [];
  let stderr = '';
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      events.push({ at: Date.now(), ...JSON.parse(line) });
    } catch {
      // not a JSON line
    }
  });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, events, done, get stderr() { return stderr; } };
}

/** Frames ffmpeg decodes from `file`, and its complaints. */
function ffmpegDecode(file) {
  try {
    const out = execFileSync('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-i', file, '-f', 'framemd5', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
    return { frames: out.split('\n').filter((l) => l && !l.startsWith('#')).length, errors: '' };
  } catch (e) {
    return { frames: 0, errors: String(e.stderr || e.message) };
  }
}

/** Opens the publishing page (root namespace) in `room`. */
async function publisher(room, secret) {
  const b = await m.open({ extraArgs: [`--unsafely-treat-insecure-origin-as-secure=${m.server.origin}`] });
  await m.join(b, room, secret, `Participant-${randomId(6)}`);
  const member = await waitFor(() => b.page.evaluate(() => window.plenary.e2ee().member), { ms: 20_000, every: 200 });
  assert.ok(member, 'the publishing page forms the group');
  return b;
}

test('3% random loss: audio without gaps over 200 ms, video keeps decoding', { timeout: 120_000, skip: unavailable ?? false }, async (t) => explained(t, m.ctx, async () => {
  const room = `netns-loss-${randomId(6)}`;
  const secret = newSecret();
  const page = await publisher(room, secret);
  ns.loss(0.03);
  const rec = tempDir('plenary-netns-rec-');
  try {
    const native = startShapedNative(m.server.url(`/m/${room}#${secret}`), `Participant-${randomId(6)}`,
      ['--duration', String(RECEIVE_SECONDS), '--record', rec]);
    const exit = await native.done;
    const layers = native.events.filter((e) => e.event === 'frames')
      .map((e) => e.tracks.find((tr) => tr.kind === 'video')?.layer ?? '-').join('');
    t.diagnostic(`forwarded video layer, second by second: ${layers}`);
    const estimates = native.events.filter((e) => e.event === 'quality').map((e) => Math.round((e.estimate_bps ?? 0) / 1000)).join(' ');
    t.diagnostic(`downlink estimate, kbit/s: ${estimates}`);
    assert.equal(exit.code, 0, `plenary join: ${native.stderr.slice(-1500)}`);
    const summary = native.events.find((e) => e.event === 'summary');
    const tracks = summary?.tracks ?? [];
    t.diagnostic(`load average ${os.loadavg()[0].toFixed(1)}: ${JSON.stringify(tracks.map(({ kind, frames, decrypted, decrypt_failures: f, decrypt_replays: replays, max_gap_ms: arrivalGap, max_media_gap_ms: gap }) => ({ kind, frames, decrypted, f, replays, gap, arrivalGap })))}`);
    const audio = tracks.filter((tr) => tr.kind === 'audio');
    const video = tracks.filter((tr) => tr.kind === 'video');
    assert.equal(audio.length, 1, 'one audio track received');
    assert.equal(video.length, 1, 'one video track received');
    // 20 ms Opus packets: most of the session's audio arrives and decrypts.
    assert.ok(audio[0].decrypted > (RECEIVE_SECONDS - 5) * 50 * 0.9, `audio frames decrypted: ${audio[0].decrypted}`);
    assert.ok(audio[0].max_media_gap_ms <= MAX_AUDIO_GAP_MS, `longest audio gap ${audio[0].max_media_gap_ms} ms`);
    assert.ok(video[0].recording, 'the video was recorded');
    const decoded = ffmpegDecode(video[0].recording);
    t.diagnostic(`video: ${decoded.frames} frames decoded by ffmpeg, longest gap ${video[0].max_media_gap_ms} ms (${video[0].max_gap_ms} ms of arrival time)`);
    assert.equal(decoded.errors, '', 'ffmpeg decodes the recording without errors');
    assert.ok(decoded.frames > (RECEIVE_SECONDS - 5) * 15, `video keeps decoding: ${decoded.frames} frames`);
    assert.ok(video[0].max_media_gap_ms < 1000, `no video freeze of a second or more (longest gap ${video[0].max_media_gap_ms} ms)`);
  } finally {
    ns.clearLoss();
    fs.rmSync(rec, { recursive: true, force: true });
    await m.close(page);
  }
}));

/** The native client's track of `kind` in its latest `frames` event. */
function latestTrack(native, kind) {
  const last = [...native.events].reverse().find((e) => e.event === 'frames');
  return last?.tracks.find((tr) => tr.kind === kind) ?? null;
}

test('500 kbit/s cap: lowest layer and audio without gaps over 200 ms; without the cap the high layer returns', { timeout: 150_000, skip: unavailable ?? false }, async (t) => explained(t, m.ctx, async () => {
  const room = `netns-cap-${randomId(6)}`;
  const secret = newSecret();
  const page = await publisher(room, secret);
  const native = startShapedNative(m.server.url(`/m/${room}#${secret}`), `Participant-${randomId(6)}`, ['--duration', '120']);
  try {
    const video = () => latestTrack(native, 'video');
    const audio = () => latestTrack(native, 'audio');
    const high = await waitFor(() => {
      const v = video();
      return v && v.decrypted > 60 && v.layer && v.layer !== 'q' ? v.layer : null;
    }, { ms: 30_000, every: 250 });
    assert.ok(high, `a layer above the lowest before the cap: ${JSON.stringify(video())} ${native.stderr.slice(-1000)}`);

    ns.cap(500);
    const cappedAt = Date.now();
    const low = await waitFor(() => video()?.layer === 'q', { ms: 10_000, every: 100 });
    t.diagnostic(`on the lowest layer ${((Date.now() - cappedAt) / 1000).toFixed(1)} s after the cap`);
    assert.ok(low, `the lowest layer under the cap: ${JSON.stringify(video())}`);
    const before = video().decrypted;
    await sleep(10_000);
    const v = video();
    // The SFU may probe back up to a layer the capped link does carry (with
    // a 640x360 camera Chromium's h layer, 320x180, often needs well under
    // 500 kbit/s); what it must not do is forward more than the link holds.
    const quality = [...native.events].reverse().find((e) => e.event === 'quality');
    const forwarded = (quality?.tracks ?? []).reduce((sum, tr) => sum + (tr.bitrate_bps ?? 0), 0);
    t.diagnostic(`10 s under the cap: layer ${v.layer}, video ${forwarded} bit/s, estimate ${quality?.estimate_bps}`);
    assert.ok(v.layer === 'q' || forwarded <= 450_000,
      `under the cap only the lowest layer or one the link carries: ${v.layer} at ${forwarded} bit/s ${JSON.stringify(quality)}`);
    // 100 frames (10 s at 10 fps) through the capped link; a loaded machine
    // encodes and forwards fewer per second, so the count is polled for.
    const flowing = await waitFor(() => video().decrypted - before > 10 * 10, { ms: 20_000, every: 250 });
    t.diagnostic(`under the cap: ${video().decrypted - before} video frames in ${((Date.now() - cappedAt) / 1000).toFixed(1)} s`);
    assert.ok(flowing, `video keeps arriving under the cap: ${video().decrypted - before} frames`);
    const gap = audio()?.max_media_gap_ms;
    t.diagnostic(`longest audio gap so far ${gap} ms of media time (${audio()?.max_gap_ms} ms of arrival time, load average ${os.loadavg()[0].toFixed(1)})`);
    assert.ok(gap <= MAX_AUDIO_GAP_MS, `audio without gaps over ${MAX_AUDIO_GAP_MS} ms (longest ${gap} ms)`);

    ns.uncap();
    const uncappedAt = Date.now();
    // The allocation probes for more every 3 s; the estimate then needs a
    // few rounds of feedback, longer when the machine is loaded.
    const back = await waitFor(() => video()?.layer === high, { ms: 40_000, every: 250 });
    t.diagnostic(`back on ${high} ${((Date.now() - uncappedAt) / 1000).toFixed(1)} s after the cap was removed`);
    assert.ok(back, `the ${high} layer returns without the cap: ${JSON.stringify(video())}`);
    assert.ok(audio().max_media_gap_ms <= MAX_AUDIO_GAP_MS, `audio without gaps over ${MAX_AUDIO_GAP_MS} ms (longest ${audio().max_media_gap_ms} ms)`);
  } finally {
    native.child.kill('SIGINT');
    await native.done;
    try { ns.uncap(); } catch { /* not capped */ }
    await m.close(page);
  }
}));

test('a native client whose link is cut reconnects by itself and receives again within 10 s of the link coming back', { timeout: 120_000, skip: unavailable ?? false }, async (t) => explained(t, m.ctx, async () => {
  const room = `netns-cut-${randomId(6)}`;
  const secret = newSecret();
  const page = await publisher(room, secret);
  const native = startShapedNative(m.server.url(`/m/${room}#${secret}`), `Participant-${randomId(6)}`, ['--duration', '120']);
  try {
    const receiving = (min) => {
      const v = latestTrack(native, 'video');
      const a = latestTrack(native, 'audio');
      return v && a && v.decrypted > min && a.decrypted > min;
    };
    assert.ok(await waitFor(() => receiving(50), { ms: 30_000, every: 250 }), `receiving before the cut: ${native.stderr.slice(-1000)}`);
    const before = native.events.length;
    ns.cut();
    const noticed = await waitFor(() => native.events.slice(before).some((e) => e.event === 'reconnecting'), { ms: 15_000, every: 100 });
    assert.ok(noticed, 'plenary join reports reconnecting while the link is down');
    await sleep(4000);
    ns.restore();
    const restoredAt = Date.now();
    const back = await waitFor(() => native.events.slice(before).some((e) => e.event === 'reconnected') && receiving(10),
      { ms: 30_000, every: 100 });
    const took = Date.now() - restoredAt;
    t.diagnostic(`receiving again ${(took / 1000).toFixed(1)} s after the link came back`);
    assert.ok(back, `reconnected and receiving decrypted audio and video again: ${native.stderr.slice(-1000)}`);
    assert.ok(took <= 10_000, `within 10 s of the link coming back (took ${(took / 1000).toFixed(1)} s)`);
  } finally {
    try { ns.restore(); } catch { /* up */ }
    native.child.kill('SIGINT');
    await native.done;
    await m.close(page);
  }
}));
