#!/usr/bin/env node
// Browser join benchmark (run by hand, not by CI): the time from pressing
// Join on the pre-join screen of a headless Chromium page to the first
// remote video frame its media worker decrypts, end-to-end encryption on,
// with 2, 10 and 30 participants already in the room.
//
// The room is filled with native clients (`plenary join`, each publishing
// .media/carphone.ivf and .media/speech.ogg): much cheaper on this machine
// than as many browsers, and the same MLS + SFrame path. Each run opens a
// fresh Chromium (fresh profile), waits on the pre-join screen until the
// preview plays and plenary-wasm is loaded (a user typing a name takes
// longer), presses Join, waits for the first decrypted and the first decoded
// remote video frame, and closes the browser.
//
//   cargo build --release -p plenary-server && bash scripts/build-wasm.sh
//   cd tests/e2e && node bench/join.mjs            # 2,10,30 participants, 5 runs each
//   BENCH_COUNTS=2,10 BENCH_RUNS=3 node bench/join.mjs
//
// Prints one JSON line per run (milliseconds after pressing Join of each
// step: wasm = plenary-wasm loaded (negative: before pressing Join),
// ws = WebSocket open, joined = server's answer, offer = SDP offer sent,
// answer = the server's SDP answer applied (ICE starts), server_offer = the
// server's offer of the remote tracks answered, member = MLS Welcome
// processed and keys installed, connected = PeerConnection, tracks = the
// remote tracks negotiated, seen = first remote video frame in the media
// worker, video = first remote video frame decrypted, decoded = first remote
// video frame decoded) and a table of medians.
//
// BENCH_JOINER=native measures the native column the same way: the joiner
// is `plenary join --json` publishing the same files, started at the moment
// of "pressing Join"; steps, ms after its start: joined = server's answer,
// connected = ICE + DTLS up, keys = its first `epoch` line read (MLS Welcome
// processed; to the 20 ms poll, process start included), members = every
// fill client reported the joiner's epoch (they encrypt with its keys from
// then on; same poll), video = first remote video frame decrypted (its
// `first_frame` event). The joiner's
// events and stderr of the last run are left in
// artifacts/bench-join-native-events.jsonl and bench-join-native-stderr.log.
//
//   BENCH_JOINER=native node bench/join.mjs
//   BENCH_SERVER_ARGS="--audio-streams 0" node bench/join.mjs   # all audio to all

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ARTIFACTS,
  testMedia, startServer, openBrowser, startNative, newSecret, randomId, waitFor, sleep,
} from '../lib/harness.mjs';

const COUNTS = (process.env.BENCH_COUNTS || '2,10,30').split(',').map(Number);
const RUNS = Number(process.env.BENCH_RUNS || 5);
/**
 * Fill clients receive no video by default (`plenary join --hide-video`: they
 * tell the server every video is hidden, as a client showing no video tiles
 * does, and get audio only): 30 native clients each receiving 29 videos need
 * about 1.8 of this machine's 2 cores, and the room churns. The joining page
 * still receives, decrypts and decodes all 30 videos. BENCH_FILL_VIDEO=1
 * makes them receive every video.
 */
const FILL_ARGS = process.env.BENCH_FILL_VIDEO === '1' ? [] : ['--hide-video'];
/** Niceness of the fill clients (BENCH_FILL_NICE, default 10; 0 = as the server). */
const FILL_NICE = Number(process.env.BENCH_FILL_NICE ?? 10);
/**
 * How many fill clients publish audio (BENCH_FILL_SPEAKERS, default: all):
 * the others join with their microphone muted, as most of a real meeting
 * does. With every one of 30 talking at once the server forwards 30 x 30
 * audio streams (about 45,000 packets a second).
 */
const FILL_SPEAKERS = Number(process.env.BENCH_FILL_SPEAKERS ?? Infinity);
const JOINER = process.env.BENCH_JOINER || 'browser';
const STEPS = JOINER === 'native'
  ? ['joined', 'connected', 'keys', 'members', 'video']
  : ['wasm', 'ws', 'joined', 'offer', 'answer', 'server_offer', 'member', 'connected', 'tracks', 'seen', 'video', 'decoded'];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

/** The latest epoch each native client reported. */
const lastEpoch = (n) => [...n.events].reverse().find((e) => e.event === 'epoch')?.epoch ?? null;

/** How many native clients are at each epoch: `{ epoch: count }`. */
const roomEpochs = (natives) => {
  const room = {};
  for (const e of natives.map(lastEpoch)) room[e] = (room[e] ?? 0) + 1;
  return room;
};

/** Waits until every native client is in the same epoch, and it has been stable for `quietMs`. */
async function settled(natives, quietMs = 1500, ms = 120000) {
  let since = 0;
  let prev = null;
  return waitFor(() => {
    const epochs = natives.map(lastEpoch);
    const same = epochs.every((e) => e !== null && e === epochs[0]);
    if (!same || epochs[0] !== prev) {
      prev = same ? epochs[0] : null;
      since = Date.now();
      return false;
    }
    return Date.now() - since >= quietMs;
  }, { ms, every: 250 });
}

/** One browser join: returns the steps in ms after pressing Join. */
async function browserJoin(server, media, room, secret, natives) {
  const b = await openBrowser(media);
  try {
    await b.page.goto(server.url(`/m/${room}?name=Bench-browser#${secret}`));
    await b.page.locator('#prejoin').waitFor({ state: 'visible' });
    await b.page.waitForFunction(() => document.getElementById('preview-video').videoWidth > 0
      && window.plenary.timings().wasm > 0, null, { timeout: 30000 });
    const join = b.page.getByRole('button', { name: 'Join now' });
    await join.waitFor();
    // Watch for the first decoded frame from the page itself, from before the click.
    const decoded = b.page.evaluate(async () => {
      for (;;) {
        const s = await window.plenary.stats();
        if (s.participants.some((p) => p.framesDecoded > 0)) return performance.timeOrigin + performance.now();
        // Every 100 ms: getStats on 60 receivers costs the page CPU while it joins.
        await new Promise((r) => setTimeout(r, 100));
      }
    }).catch(() => NaN); // the page closes first when the run fails
    await join.click();
    const at = await waitFor(() => b.page.evaluate(() => {
      const t = window.plenary.timings();
      return t.video ? t : null;
    }), { ms: 60000, every: 100 });
    if (!at) {
      // What the page got: its epoch, frames decrypted and failed (and
      // why), and from how many participants video bytes arrived at all.
      const why = await b.page.evaluate(async () => {
        const e = window.plenary.e2ee();
        const failedBy = {};
        let videoDecrypted = 0;
        for (const p of Object.values(e.perParticipant)) {
          videoDecrypted += p.video;
          for (const [k, n] of Object.entries(p.videoFailedBy)) failedBy[k] = (failedBy[k] ?? 0) + n;
        }
        const s = await window.plenary.stats();
        return {
          timings: window.plenary.timings(),
          epoch: e.epoch,
          workerEpoch: e.workerEpoch,
          videoDecrypted,
          decryptFailures: e.decryptFailures,
          videoFailedBy: failedBy,
          withVideoBytes: s.participants.filter((p) => p.videoBytesReceived > 0).length,
          participants: s.participants.length,
        };
      });
      why.roomEpochs = roomEpochs(natives);
      throw new Error(`no decrypted video within 60 s: ${JSON.stringify(why)}`);
    }
    at.decoded = await Promise.race([decoded, sleep(30000).then(() => NaN)]);
    const out = {};
    for (const step of STEPS) out[step] = Math.round(at[step] - at.pressed);
    return out;
  } finally {
    await b.close();
  }
}

/** One native join: returns the steps in ms after the process started. */
async function nativeJoin(url, media, natives) {
  const spawned = Date.now();
  const n = startNative(url, 'Bench-native', { media });
  let keys = NaN;
  let members = NaN;
  try {
    const first = await waitFor(() => {
      // Keys: when the first `epoch` line arrived (to the 20 ms poll).
      if (Number.isNaN(keys) && n.events.some((e) => e.event === 'epoch')) keys = Date.now() - spawned;
      const epoch = lastEpoch(n);
      if (Number.isNaN(members) && epoch !== null && natives.every((x) => lastEpoch(x) >= epoch)) {
        members = Date.now() - spawned;
      }
      return n.events.find((e) => e.event === 'first_frame');
    }, { ms: 60000, every: 20 });
    if (!first) {
      const last = [...n.events].reverse().find((e) => e.event === 'frames');
      const failed = (last?.tracks ?? []).reduce((a, t) => a + (t.decrypt_failures ?? 0), 0);
      // Per received track: kind, frames decrypted, failed (the joiner's last `frames` report).
      const tracks = (last?.tracks ?? []).map((t) => `${t.kind}:${t.frames ?? t.decrypted ?? '?'}/${t.decrypt_failures ?? 0}`);
      throw new Error(`no decrypted video within 60 s (keys after ${keys} ms, epoch ${lastEpoch(n)}; room epochs ${JSON.stringify(roomEpochs(natives))}; ${failed} frames failed to decrypt; tracks ${tracks.join(' ')})`);
    }
    const connected = n.events.find((e) => e.event === 'connected');
    const joined = (first.since_start_s - first.since_joined_s) * 1000;
    return {
      joined: Math.round(joined),
      // connect_s counts from the offer, sent right after `joined`.
      connected: connected ? Math.round(joined + connected.connect_s * 1000) : NaN,
      keys,
      members,
      video: Math.round(first.since_start_s * 1000),
    };
  } finally {
    n.child.kill('SIGINT');
    await Promise.race([n.done, sleep(5000)]);
    n.child.kill('SIGKILL');
    // The joiner's `--json` events of the last run, for diagnosis.
    fs.writeFileSync(path.join(ARTIFACTS, 'bench-join-native-events.jsonl'), n.events.map((e) => JSON.stringify(e)).join('\n'));
    fs.writeFileSync(path.join(ARTIFACTS, 'bench-join-native-stderr.log'), n.stderr);
  }
}

async function main() {
  const media = testMedia();
  // BENCH_SERVER_ARGS: extra `plenary serve` flags, e.g. "--audio-streams 0"
  // (every audio stream to everyone, as before the 3-loudest default).
  const server = await startServer({
    name: 'bench-join-server',
    args: (process.env.BENCH_SERVER_ARGS || '').split(' ').filter(Boolean),
  });
  const room = `bench-${randomId(8)}`;
  const secret = newSecret();
  const url = server.url(`/m/${room}#${secret}`);
  const natives = [];
  const rows = [];
  try {
    for (const count of COUNTS) {
      while (natives.length < count) {
        // The first FILL_SPEAKERS publish speech; the others' microphones are muted.
        const fillMedia = natives.length < FILL_SPEAKERS ? media : { ...media, 'speech.ogg': undefined };
        const fill = startNative(url, `Bench-${natives.length}`, { media: fillMedia, args: FILL_ARGS });
        // Fill clients yield the CPU to the server and the joiner: on this
        // 2-core machine 30 of them starve the server, whose socket then
        // holds seconds of media (measured: 7 MB queued at load 15).
        try { os.setPriority(fill.child.pid, FILL_NICE); } catch { /* the process already exited */ }
        natives.push(fill);
        // Joins a few at a time, not as a burst: the room is filled, not measured.
        if (natives.length % 5 === 0 || natives.length === 1) await settled(natives, 500);
      }
      if (!(await settled(natives))) throw new Error(`the ${count} native clients did not settle on one epoch`);
      const load = os.loadavg()[0];
      const runs = [];
      for (let i = 0; i < RUNS; i++) {
        const r = JOINER === 'native' ? await nativeJoin(url, media, natives) : await browserJoin(server, media, room, secret, natives);
        runs.push(r);
        console.log(JSON.stringify({ participants: count, run: i, ...r }));
        // The natives remove the page that left before the next run.
        await settled(natives);
      }
      const p50 = Object.fromEntries(STEPS.map((s) => [s, median(runs.map((r) => r[s]))]));
      rows.push({ count, runs: runs.length, p50, load, max: Math.max(...runs.map((r) => r.video)) });
    }
  } finally {
    for (const n of natives) n.child.kill('SIGINT');
    await Promise.all(natives.map((n) => Promise.race([n.done, sleep(5000)])));
    for (const n of natives) n.child.kill('SIGKILL');
    await server.stop();
  }
  console.log(`\nmachine: ${os.cpus().length} cores, ${os.cpus()[0]?.model}; node ${process.version}; fill clients ${FILL_ARGS.length ? 'hide video (audio only)' : 'receive all video'}; server flags: ${process.env.BENCH_SERVER_ARGS || 'defaults (3 loudest audio streams)'}`);
  console.log(`\n| participants already in the room | ${JOINER} p50 (Join -> first decrypted video) | max | runs | p50 steps: ${STEPS.join(' / ')} (ms) | load avg |`);
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.count} | ${(r.p50.video / 1000).toFixed(2)} s | ${(r.max / 1000).toFixed(2)} s | ${r.runs} | ${STEPS.map((s) => r.p50[s]).join(' / ')} | ${r.load.toFixed(1)} |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
