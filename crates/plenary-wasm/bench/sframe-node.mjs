// SFrame throughput of the wasm build in Node, and MLS timings in wasm.
// Usage: bash scripts/build-wasm.sh && node crates/plenary-wasm/bench/sframe-node.mjs
// Prints one line per measurement; numbers go to BENCHMARKS.md.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../../..');
const wasmDir = process.env.PLENARY_WASM_DIR ?? resolve(root, 'web/wasm');
const mod = await import(resolve(wasmDir, 'plenary_e2ee.js'));
mod.initSync({ module: readFileSync(resolve(wasmDir, 'plenary_e2ee_bg.wasm')) });
const { Membership, FrameCrypto } = mod;
const { newSecret } = await import(resolve(root, 'web/room.js'));

function epochKeys(ownLeaf) {
  // Same layout as EpochKeys::to_bytes: epoch u64, key[16], own u32, count u32, leaves.
  const members = [...Array(16).keys()];
  const b = new DataView(new ArrayBuffer(8 + 16 + 8 + 4 * members.length));
  b.setBigUint64(0, 7n);
  for (let i = 0; i < 16; i++) b.setUint8(8 + i, 3);
  b.setUint32(24, ownLeaf);
  b.setUint32(28, members.length);
  members.forEach((m, i) => b.setUint32(32 + 4 * i, m));
  return new Uint8Array(b.buffer);
}

function timeIt(fn, minMs = 1500) {
  for (let i = 0; i < 200; i++) fn(); // warm-up
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
    t = performance.now();
  }
  return (t - t0) / n; // ms per op
}

for (const size of [160, 1200, 30000]) {
  const codec = size === 160 ? 'opus' : 'vp8';
  const frame = new Uint8Array(size).fill(0x42);
  const tx = new FrameCrypto();
  tx.setEpochKeys(epochKeys(3), 0);
  const rx = new FrameCrypto();
  rx.setEpochKeys(epochKeys(5), 0);
  const enc = timeIt(() => tx.encryptFrame(codec, frame, 1));
  // Decrypt needs fresh frames (replay protection): pre-encrypt a pool,
  // warm up on another stream context, then decrypt the pool once.
  const warm = [];
  for (let i = 0; i < 200; i++) warm.push(tx.encryptFrame(codec, frame, 2));
  for (const f of warm) rx.decryptFrame(codec, f, 0);
  const pool = [];
  const count = size === 30000 ? 2000 : 20000;
  for (let i = 0; i < count; i++) pool.push(tx.encryptFrame(codec, frame, 1));
  const d0 = performance.now();
  for (const f of pool) rx.decryptFrame(codec, f, 0);
  const dec = (performance.now() - d0) / count;
  const mbs = (ms) => (size / (ms / 1000) / 1e6).toFixed(1);
  console.log(`wasm sframe ${size} B: encrypt ${(enc * 1000).toFixed(2)} us (${mbs(enc)} MB/s), decrypt ${(dec * 1000).toFixed(2)} us (${mbs(dec)} MB/s)`);
}

{
  // MLS through the page's Membership: the committer verifies 10 join
  // requests, commits adding them all (with its Welcome), one joins from it.
  const secret = newSecret();
  const t0 = performance.now();
  const a = new Membership('bench', secret, 'A', 1);
  a.createGroup(0);
  const requests = [];
  const joiners = [];
  for (let i = 0; i < 10; i++) {
    const m = new Membership('bench', secret, 'J', 2 + i);
    requests.push(m.start(true, 0).find((x) => x.type === 'mls'));
    joiners.push(m);
  }
  const t1 = performance.now();
  requests.forEach((r, i) => a.mls(2 + i, r.envelope, 1));
  const commit = a.timeout(a.nextDeadline).find((x) => x.type === 'mls');
  a.commitAccepted(200);
  const t2 = performance.now();
  joiners[0].mls(1, commit.welcome, 200);
  const t3 = performance.now();
  console.log(`wasm mls: create + 10 join requests ${(t1 - t0).toFixed(1)} ms, verify 10 requests + commit adding 10 ${(t2 - t1).toFixed(1)} ms (welcome ${commit.welcome.length} B), join from Welcome ${(t3 - t2).toFixed(1)} ms`);
}
