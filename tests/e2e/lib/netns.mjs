// A network namespace joined to this one by a veth pair, to cut or degrade
// one participant's network with what this kernel offers: links going
// down, iptables (random loss with `-m statistic`, blocking UDP) and the
// `tbf` qdisc (a rate cap). The netem qdisc is not available here.
//
// Everything is named `reconnect-<random>` (namespace) / `rc<random>h|n`
// (veth ends) and removed by `destroy()`, on process exit, and on SIGINT /
// SIGTERM. Needs root and iproute2; `netnsUnavailable()` says why not.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomId, CHROMIUM } from './harness.mjs';

const live = new Set();

function run(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function cleanupAll() {
  for (const ns of [...live]) ns.destroy();
}
process.once('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

/** Why network namespaces cannot be used here, or null when they can. */
export function netnsUnavailable() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not root';
  try {
    run('ip', ['netns', 'list']);
    run('iptables', ['--version']);
    run('tc', ['-V']);
  } catch (e) {
    return `ip netns / iptables / tc unavailable: ${String(e.message).split('\n')[0]}`;
  }
  return null;
}

/**
 * Creates a namespace with a veth pair to this one, on a random /30 in
 * 10.200.0.0/13: `hostIp` here, `nsIp` inside.
 */
export function createNetns() {
  const id = randomId(6).toLowerCase().replace(/[^a-z0-9]/g, 'x');
  const name = `reconnect-${id}`;
  const hostIf = `rc${id}h`;
  const nsIf = `rc${id}n`;
  const b = crypto.getRandomValues(new Uint8Array(3));
  const prefix = `10.${200 + (b[0] % 8)}.${b[1]}`;
  const base = b[2] & 0xfc;
  const hostIp = `${prefix}.${base + 1}`;
  const nsIp = `${prefix}.${base + 2}`;
  const inNs = (cmd, args) => run('ip', ['netns', 'exec', name, cmd, ...args]);
  let wrapperDir = null;
  const ns = {
    name, hostIf, nsIf, hostIp, nsIp,
    /** Runs `cmd args` inside the namespace; returns its stdout. */
    exec: inNs,
    /** argv prefix that runs a program inside the namespace. */
    prefix: ['ip', 'netns', 'exec', name],
    /** Takes the link down: nothing passes in either direction. */
    cut() { run('ip', ['link', 'set', hostIf, 'down']); },
    /** Brings the link back up. */
    restore() { run('ip', ['link', 'set', hostIf, 'up']); },
    /** Drops each packet entering the namespace with probability `p` (iptables statistic). */
    loss(p) {
      inNs('iptables', ['-A', 'INPUT', '-i', nsIf, '-m', 'statistic', '--mode', 'random', '--probability', String(p), '-j', 'DROP']);
    },
    /** Removes the loss. */
    clearLoss() { inNs('iptables', ['-F', 'INPUT']); },
    /** Caps traffic into the namespace at `kbit` kbit/s (tbf on the host end). */
    cap(kbit) {
      run('tc', ['qdisc', 'replace', 'dev', hostIf, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '16kb', 'latency', '200ms']);
    },
    /** Removes the cap. */
    uncap() { run('tc', ['qdisc', 'del', 'dev', hostIf, 'root']); },
    /** An executable that runs Chromium inside the namespace (for openBrowser). */
    chromiumWrapper() {
      wrapperDir ||= fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
      const file = path.join(wrapperDir, 'chromium');
      fs.writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${name} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
      return file;
    },
    /** Removes the namespace, its veth pair and the wrapper; safe to call twice. */
    destroy() {
      if (!live.delete(ns)) return;
      try { run('ip', ['netns', 'pids', name]).split('\n').filter(Boolean).forEach((pid) => { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }); } catch { /* no namespace */ }
      try { run('ip', ['link', 'del', hostIf]); } catch { /* already gone */ }
      try { run('ip', ['netns', 'del', name]); } catch { /* already gone */ }
      if (wrapperDir) fs.rmSync(wrapperDir, { recursive: true, force: true });
    },
  };
  live.add(ns);
  try {
    run('ip', ['netns', 'add', name]);
    run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    run('ip', ['link', 'set', nsIf, 'netns', name]);
    run('ip', ['addr', 'add', `${hostIp}/30`, 'dev', hostIf]);
    run('ip', ['link', 'set', hostIf, 'up']);
    inNs('ip', ['addr', 'add', `${nsIp}/30`, 'dev', nsIf]);
    inNs('ip', ['link', 'set', nsIf, 'up']);
    inNs('ip', ['link', 'set', 'lo', 'up']);
  } catch (e) {
    ns.destroy();
    throw e;
  }
  return ns;
}
