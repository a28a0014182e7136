// Tests of the wasm build of plenary-e2ee in Node (node --test).
// Env: PLENARY_WASM_DIR (default web/wasm), PLENARY_CROSS_FIXTURE (JSON from
// `cargo run -p plenary-e2ee --example cross_fixture write`), PLENARY_CROSS_OUT
// (where to write wasm-encrypted frames for the native side to verify).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../../../..');
const wasmDir = process.env.PLENARY_WASM_DIR ?? resolve(root, 'web/wasm');
const mod = await import(resolve(wasmDir, 'plenary_e2ee.js'));
mod.initSync({ module: readFileSync(resolve(wasmDir, 'plenary_e2ee_bg.wasm')) });
const { Meeting, FrameCrypto } = mod;

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

test('cross-build: native frames decrypt in wasm, wasm encrypts the same bytes', { skip: !process.env.PLENARY_CROSS_FIXTURE }, () => {
  const fx = JSON.parse(readFileSync(process.env.PLENARY_CROSS_FIXTURE, 'utf8'));
  const tx = new FrameCrypto();
  tx.setEpochKeys(unhex(fx.sender_keys), 0);
  const rx = new FrameCrypto();
  rx.setEpochKeys(unhex(fx.receiver_keys), 0);
  assert.equal(rx.epoch, 5);
  for (const f of fx.frames) {
    const d = rx.decryptFrame(f.codec, unhex(f.sealed), 0);
    assert.equal(d.senderLeaf, 3);
    assert.equal(hex(d.data), f.plain);
    // Same keys, same counters: the wasm build produces identical bytes.
    const sealed = tx.encryptFrame(f.codec, unhex(f.plain), f.context);
    assert.equal(hex(sealed), f.sealed);
  }
  // Replays are refused in wasm too.
  assert.throws(() => rx.decryptFrame(fx.frames[0].codec, unhex(fx.frames[0].sealed), 0), /replay/);
  // Fresh frames for the native side to decrypt.
  const out = [];
  for (const [codec, n] of [['opus', 100], ['vp8', 3000]]) {
    const plain = new Uint8Array(n).map((_, i) => (i * 7 + n) & 0xff);
    out.push({ codec, plain: hex(plain), sealed: hex(tx.encryptFrame(codec, plain)) });
  }
  if (process.env.PLENARY_CROSS_OUT) {
    writeFileSync(process.env.PLENARY_CROSS_OUT, JSON.stringify({ frames: out }));
  }
});

test('wasm: create, batched join, roster, profiles, security code, media', () => {
  const secret = Meeting.generateSecret();
  assert.match(secret, /^[A-Za-z0-9_-]{22}$/);
  const alice = new Meeting('room-x', secret);
  alice.create();
  const bob = new Meeting('room-x', secret);
  const carol = new Meeting('room-x', '#' + secret);
  const mallory = new Meeting('room-x', Meeting.generateSecret());
  const reqs = [bob.joinRequest(), carol.joinRequest(), mallory.joinRequest()];
  assert.throws(() => alice.verifyJoinRequest(reqs[2]), /join proof/);
  const out = alice.commit(reqs, []);
  assert.deepEqual(out.added, [0, 1]);
  assert.equal(out.rejected.length, 1);
  assert.equal(out.rejected[0].index, 2);
  assert.ok(out.welcome instanceof Uint8Array);
  const ev = alice.commitAccepted();
  assert.equal(ev.type, 'epoch');
  assert.deepEqual(ev.added, [1, 2]);
  assert.equal(bob.process(out.welcome).type, 'joined');
  assert.equal(carol.process(out.welcome).type, 'joined');
  assert.throws(() => mallory.process(out.welcome), /not for this participant/);
  assert.throws(() => bob.process(out.welcome), /already a member/);
  assert.equal(alice.securityCode(), bob.securityCode());
  assert.equal(alice.securityCode(), carol.securityCode());
  assert.match(alice.securityCode(), /^\d{5}( \d{5}){5}$/);

  const prof = bob.setProfile('Bob');
  assert.deepEqual({ ...alice.process(prof) }, { type: 'profile', sender: 1, displayName: 'Bob' });
  carol.process(prof);
  const roster = alice.roster();
  assert.equal(roster.length, 3);
  assert.equal(roster[1].displayName, 'Bob');
  assert.equal(roster[0].isSelf, true);
  const chat = carol.sendChat('hello');
  assert.equal(alice.process(chat).text, 'hello');
  assert.equal(bob.process(carol.raiseHand(true)).raised, true);

  // Media through the worker API.
  const tx = new FrameCrypto(2000);
  tx.setEpochKeys(alice.epochKeys(), 0);
  const rx = new FrameCrypto();
  rx.setEpochKeys(bob.epochKeys(), 0);
  const key = new Uint8Array(500).fill(3); key[0] = 0x10; // VP8 key frame
  const sealed = tx.encryptFrame('video/VP8', key);
  assert.deepEqual(sealed.subarray(0, 10), key.subarray(0, 10)); // clear prefix
  const d = rx.decryptFrame('vp8', sealed, 1);
  assert.equal(d.senderLeaf, 0);
  assert.deepEqual(d.data, key);
  const sealed2 = tx.encryptFrame('vp8', key);
  const bad = sealed2.slice(); bad[3] ^= 1; // clear prefix is authenticated
  assert.throws(() => rx.decryptFrame('vp8', bad, 2), /authenticate/);
  assert.deepEqual(rx.decryptFrame('vp8', sealed2, 2).data, key);
  assert.throws(() => rx.decryptFrame('vp8', sealed2, 2), /replay/);
  // The receiver's view (plenary_e2ee::media::Disposition): a replay is
  // dropped silently, a tampered frame is a failure, a frame before any
  // keys waits for them.
  assert.deepEqual(rx.openFrame('vp8', sealed2, 2), { refused: 'replay', reason: 'replayed' });
  const sealed3 = tx.encryptFrame('vp8', key);
  const bad3 = sealed3.slice(); bad3[3] ^= 1;
  assert.deepEqual(rx.openFrame('vp8', bad3, 2), { refused: 'fail', reason: 'authentication' });
  assert.deepEqual(new FrameCrypto().openFrame('vp8', sealed3, 2), { refused: 'hold', reason: 'noKeys' });
  assert.deepEqual(rx.openFrame('vp8', sealed3, 2).data, key);

  // Remove Bob: he can no longer decrypt new media.
  const rm = alice.commit([], [1]);
  alice.commitAccepted();
  assert.equal(bob.process(rm.commit).type, 'removed');
  assert.equal(carol.process(rm.commit).type, 'epoch');
  tx.setEpochKeys(alice.epochKeys(), 10);
  const after = tx.encryptFrame('opus', new Uint8Array(80));
  assert.throws(() => rx.decryptFrame('opus', after, 11), /unknown KID/);
  // One epoch ahead of Bob's keys: it may still decrypt once he has the next ones.
  assert.deepEqual(rx.openFrame('opus', after, 11), { refused: 'hold', reason: 'unknownKey' });
  const rc = new FrameCrypto();
  rc.setEpochKeys(carol.epochKeys(), 10);
  assert.equal(rc.decryptFrame('opus', after, 11).senderLeaf, 0);
});

test('roomTag: the vector of plenary_e2ee::secret, and a bad secret throws', () => {
  // Secret bytes 0..15 (AAECAwQFBgcICQoLDA0ODw); computed independently with Python.
  assert.equal(mod.roomTag('standup', 'AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.equal(mod.roomTag('standup', '#AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.notEqual(mod.roomTag('other', 'AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.throws(() => mod.roomTag('standup', 'short'));
});

test('wasm Membership: the state machine the page runs, driven through its actions', () => {
  const { Membership } = mod;
  const secret = Meeting.generateSecret();
  const alice = new Membership('room-m', secret, 'Alice', 1);
  const bob = new Membership('room-m', secret, 'Bob', null);
  const types = (actions) => actions.map((a) => a.type);
  // The server asks Alice to create the group.
  const created = alice.createGroup(0);
  assert.deepEqual(types(created), ['group_member', 'epoch']);
  assert.equal(created[1].reset, true);
  assert.match(created[1].securityCode, /^\d{5}( \d{5}){5}$/);
  // Bob asks to join; Alice batches the request and commits when her timer fires.
  const [req] = bob.start(true, 0);
  assert.equal(req.type, 'mls');
  assert.deepEqual(alice.mls(2, req.envelope, 1), []);
  assert.ok(alice.nextDeadline > 1);
  const [commit] = alice.timeout(alice.nextDeadline);
  assert.equal(commit.type, 'mls');
  assert.ok(commit.welcome instanceof Uint8Array);
  const accepted = alice.commitAccepted(200);
  assert.ok(types(accepted).includes('epoch'));
  const joined = bob.mls(1, commit.welcome, 200);
  assert.deepEqual(types(joined).slice(0, 2), ['group_member', 'epoch']);
  assert.equal(joined[1].securityCode, accepted.find((a) => a.type === 'epoch').securityCode);
  assert.equal(bob.epoch, alice.epoch);
  // Bob's profile (sent on joining) names him at Alice's.
  const profile = joined.find((a) => a.type === 'mls');
  const named = alice.mls(2, profile.envelope, 201);
  assert.deepEqual({ ...named[0] }, { type: 'profile', leaf: 1, participant: null, displayName: 'Bob' });
  // Garbage from the server is a typed failure, not an exception.
  assert.equal(bob.mls(1, new Uint8Array([9, 9]), 202)[0].type, 'failed');
  alice.free();
  bob.free();
});
