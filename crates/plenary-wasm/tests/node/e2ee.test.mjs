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
const { Membership, FrameCrypto } = mod;

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

// The page's own generator: its secrets must be ones the wasm build accepts.
const { newSecret } = await import(resolve(root, 'web/room.js'));
const types = (actions) => actions.map((a) => a.type);
/** The single action of `type` among `actions`. */
function only(actions, type) {
  const found = actions.filter((a) => a.type === type);
  assert.equal(found.length, 1, `one "${type}" in [${types(actions)}]`);
  return found[0];
}

test('wasm Membership: batched join, wrong secret refused, names, chat, security code, media, leave rotates keys', () => {
  const secret = newSecret();
  assert.match(secret, /^[A-Za-z0-9_-]{22}$/);
  // Participant ids as the server numbers them.
  const alice = new Membership('room-x', secret, 'Alice', 1);
  const bob = new Membership('room-x', secret, 'Bob', 2);
  const carol = new Membership('room-x', '#' + secret, 'Carol', 3);
  const mallory = new Membership('room-x', newSecret(), 'Mallory', 4);
  assert.throws(() => new Membership('room-x', 'short', 'Eve', 5));

  const created = only(alice.createGroup(0), 'epoch');
  assert.equal(created.epoch, 0);
  assert.equal(created.reset, true);
  // Three ask to be added; the server relays their requests to the member.
  // Alice batches them and commits when her timer fires; Mallory's join
  // proof (another secret) is refused.
  const requests = [bob, carol, mallory].map((m) => only(m.start(true, 0), 'mls'));
  requests.forEach((r, i) => assert.deepEqual(alice.mls(2 + i, r.envelope, 1), []));
  assert.ok(alice.nextDeadline > 1);
  const commit = only(alice.timeout(alice.nextDeadline), 'mls');
  assert.ok(commit.welcome instanceof Uint8Array);
  const accepted = alice.commitAccepted(200);
  const aliceEpoch1 = only(accepted, 'epoch');
  assert.deepEqual([aliceEpoch1.epoch, aliceEpoch1.reset], [1, false]);
  assert.equal(alice.roster().length, 3, 'Alice, Bob and Carol; not Mallory');

  const bobJoined = bob.mls(1, commit.welcome, 200);
  const carolJoined = carol.mls(1, commit.welcome, 200);
  assert.deepEqual({ ...only(bobJoined, 'group_member') }, { type: 'group_member', leaf: 1 });
  assert.deepEqual({ ...only(carolJoined, 'group_member') }, { type: 'group_member', leaf: 2 });
  const bobEpoch1 = only(bobJoined, 'epoch');
  const carolEpoch1 = only(carolJoined, 'epoch');
  assert.equal(bobEpoch1.reset, true);
  assert.equal(bob.epoch, 1);
  assert.match(aliceEpoch1.securityCode, /^\d{5}( \d{5}){5}$/);
  assert.equal(bobEpoch1.securityCode, aliceEpoch1.securityCode);
  assert.equal(carolEpoch1.securityCode, aliceEpoch1.securityCode);
  assert.notEqual(aliceEpoch1.securityCode, created.securityCode);
  // The Welcome is not for Mallory, and a member ignores it when it comes again.
  assert.match(only(mallory.mls(1, commit.welcome, 200), 'failed').error, /not for this participant/);
  assert.equal(mallory.isMember, false);
  assert.deepEqual(bob.mls(1, commit.welcome, 201), []);

  // Names travel encrypted: the server announces Bob's leaf, then his profile names him.
  alice.participantLeaf(2, 1, 201);
  const named = alice.mls(2, only(bobJoined, 'mls').envelope, 201);
  assert.deepEqual({ ...only(named, 'profile') }, { type: 'profile', leaf: 1, participant: 2, displayName: 'Bob' });
  const roster = alice.roster();
  assert.equal(roster[1].displayName, 'Bob');
  assert.equal(roster[0].isSelf, true);
  const aliceProfile = only(accepted, 'mls');
  assert.equal(only(bob.mls(1, aliceProfile.envelope, 202), 'profile').displayName, 'Alice');
  // Once a member is announced, Alice sends her profile again (batched, by timer).
  const again = only(alice.timeout(alice.nextDeadline), 'mls');
  assert.equal(only(carol.mls(1, again.envelope, 302), 'profile').displayName, 'Alice');
  const chat = only(carol.chat('hello', 203), 'mls');
  assert.deepEqual({ ...only(alice.mls(3, chat.envelope, 203), 'chat') }, { type: 'chat', leaf: 2, text: 'hello' });
  const hand = only(carol.raiseHand(true, 204), 'mls');
  assert.deepEqual({ ...only(bob.mls(3, hand.envelope, 204), 'hand') }, { type: 'hand', leaf: 2, raised: true });
  assert.equal(carol.handRaised, true);

  // Media through the worker API, with the keys of the epoch actions.
  const tx = new FrameCrypto(2000);
  tx.setEpochKeys(aliceEpoch1.keys, 0);
  const rx = new FrameCrypto();
  rx.setEpochKeys(bobEpoch1.keys, 0);
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

  // Bob leaves: the committer removes his leaf in a commit of its own, the
  // keys rotate, and Bob's last keys no longer decrypt new media.
  assert.deepEqual(alice.participantLeft(2, 310), []);
  const removal = only(alice.timeout(alice.nextDeadline), 'mls');
  assert.equal(removal.welcome, null);
  const aliceEpoch2 = only(alice.commitAccepted(400), 'epoch');
  assert.equal(aliceEpoch2.epoch, 2);
  assert.equal(alice.roster().length, 2);
  const carolEpoch2 = only(carol.mls(1, removal.envelope, 400), 'epoch');
  assert.equal(carolEpoch2.securityCode, aliceEpoch2.securityCode);
  assert.notEqual(carolEpoch2.securityCode, aliceEpoch1.securityCode);
  // Bob (had he stayed online) sees he was removed and asks again with a fresh identity.
  const bobRemoved = bob.mls(1, removal.envelope, 400);
  assert.equal(only(bobRemoved, 'rejoin').reason, 'removed');
  assert.equal(bob.isMember, false);
  assert.equal(bob.rejoins, 1);
  tx.setEpochKeys(aliceEpoch2.keys, 10);
  const after = tx.encryptFrame('opus', new Uint8Array(80));
  assert.throws(() => rx.decryptFrame('opus', after, 11), /unknown KID/);
  // One epoch ahead of Bob's keys: it may still decrypt once he has the next ones.
  assert.deepEqual(rx.openFrame('opus', after, 11), { refused: 'hold', reason: 'unknownKey' });
  const rc = new FrameCrypto();
  rc.setEpochKeys(carolEpoch2.keys, 10);
  assert.equal(rc.decryptFrame('opus', after, 11).senderLeaf, 0);
  // Garbage from the server is a typed failure, not an exception.
  assert.match(only(carol.mls(1, new Uint8Array([9, 9]), 500), 'failed').error, /bad envelope/);
  assert.equal(carol.epoch, 2);
  for (const m of [alice, bob, carol, mallory]) m.free();
});

test('roomTag: the vector of plenary_e2ee::secret, and a bad secret throws', () => {
  // Secret bytes 0..15 (AAECAwQFBgcICQoLDA0ODw); computed independently with Python.
  assert.equal(mod.roomTag('standup', 'AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.equal(mod.roomTag('standup', '#AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.notEqual(mod.roomTag('other', 'AAECAwQFBgcICQoLDA0ODw'), 'aS4mntnm_rIOjgEerx05EQ');
  assert.throws(() => mod.roomTag('standup', 'short'));
});
