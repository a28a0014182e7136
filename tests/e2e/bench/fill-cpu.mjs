#!/usr/bin/env node
// CPU of a room of native clients (run by hand, not by CI): N `plenary join`
// processes, as bench/join.mjs fills its room (audio only: each hides every
// video and publishes .media/carphone.ivf + .media/speech.ogg), settle for
// SETTLE ms, then the server's and the clients' CPU over 10 s, in % of one
// core, from /proc/PID/stat (utime + stime).
//
//   cd tests/e2e && N=30 PLENARY_BIN=../../target/release/plenary node bench/fill-cpu.mjs
//   SERVER_ARGS="--audio-streams 0" ...   # every audio stream to everyone
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { testMedia, startServer, startNative, newSecret, randomId, sleep } from '../lib/harness.mjs';

const N = Number(process.env.N || 30);
const SETTLE = Number(process.env.SETTLE || 20000);
const serverArgs = (process.env.SERVER_ARGS || '').split(' ').filter(Boolean);
const media = testMedia();
const server = await startServer({ name: 'fill-cpu', args: serverArgs });
const url = server.url(`/m/fill-${randomId(6)}#${newSecret()}`);
const natives = [];
try {
  for (let i = 0; i < N; i++) {
    natives.push(startNative(url, `Fill-${i}`, { media, args: ['--hide-video'] }));
    await sleep(150);
  }
  await sleep(SETTLE);
  const serverPid = Number(execFileSync('pgrep', ['-f', `serve --listen 127.0.0.1:${server.httpPort}`]).toString().split('\n')[0]);
  const ticks = (pid) => {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  };
  const pids = natives.map((n) => n.child.pid);
  const before = { s: ticks(serverPid), c: pids.map(ticks) };
  await sleep(10000);
  const per = pids.map((p, i) => (ticks(p) - before.c[i]) / 10);
  const total = per.reduce((a, b) => a + b, 0);
  console.log(JSON.stringify({
    clients: N,
    server_args: serverArgs.join(' '),
    server_pct: (ticks(serverPid) - before.s) / 10,
    clients_pct: Math.round(total * 10) / 10,
    per_client_pct: Math.round((total / N) * 100) / 100,
    load: fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  }));
} finally {
  for (const n of natives) n.child.kill('SIGINT');
  await sleep(1000);
  await server.stop();
}
