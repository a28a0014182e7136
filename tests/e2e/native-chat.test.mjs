// Chat between the browser and the native client (`plenary join`), end to
// end encrypted: the page's chat line and raised hand appear in the native
// client's human output as `<name>: <text>`; a line typed on the native
// client's stdin (`--chat-stdin`) appears in the page's chat. Neither the
// names nor the texts reach the server's log or the native client's log
// (stderr), and the `--json` output reports the page's chat as `chat`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import fs from 'node:fs';
import { meetingFixture, randomId, waitFor, explained, newSecret, hasSubcommand, PLENARY_BIN, ROOT } from './lib/harness.mjs';

const m = meetingFixture({ server: { name: 'native-chat-server' } });

/** `plenary join URL --name NAME --chat-stdin [args]`: stdout lines, stderr, stdin. */
function nativeChat(url, name, args = []) {
  const argv = ['join', url, '--name', name, '--chat-stdin', '--audio', m.media['speech.ogg'], '--duration', '90', ...args];
  const child = spawn(PLENARY_BIN, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  let stderr = '';
  readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  m.natives.push({ child });
  return { child, lines, done, get stderr() { return stderr; } };
}

const chatTexts = (b) => b.page.$$eval('#chat-list .chat-line', (lis) => lis.map((li) => `${li.querySelector('.chat-from').textContent}: ${li.querySelector('.chat-text').textContent}`));

test('chat and raised hands between a page and the native client', { timeout: 120_000, skip: hasSubcommand('join') ? false : '`plenary join` is not in this build' }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `native-chat-${randomId(6)}`;
    const secret = newSecret();
    const [nameA, nameN, nameJ] = [`Participant-A${randomId(5)}`, `Participant-N${randomId(5)}`, `Participant-J${randomId(5)}`];
    const [a] = await m.joinGroup(room, secret, [nameA]);
    const url = m.server.url(`/m/${room}#${secret}`);
    const native = nativeChat(url, nameN);
    const json = nativeChat(url, nameJ, ['--json']);
    // Both native clients are in the group once the page shows their names.
    for (const name of [nameN, nameJ]) {
      await a.page.locator('.tile .tile-name', { hasText: name }).waitFor({ timeout: 45_000 });
    }

    const fromPage = `hello-native-${randomId(8)}`;
    assert.ok(await a.page.evaluate((x) => window.plenary.sendChat(x), fromPage));
    await a.page.evaluate(() => window.plenary.raiseHand(true));
    const got = await waitFor(() => native.lines.includes(`${nameA}: ${fromPage}`) && native.lines.includes(`${nameA}: raised a hand`), { ms: 15_000, every: 200 });
    assert.ok(got, `the native client prints the page's chat and hand: ${JSON.stringify(native.lines.slice(-10))}`);
    const jsonChat = await waitFor(() => json.lines.map((l) => { try { return JSON.parse(l); } catch { return null; } })
      .find((e) => e?.event === 'chat' && e.text === fromPage), { ms: 15_000, every: 200 });
    assert.ok(jsonChat, '--json reports the chat');
    assert.equal(jsonChat.name, nameA);
    assert.equal(jsonChat.own, false);

    const fromNative = `hello-page-${randomId(8)}`;
    native.child.stdin.write(`${fromNative}\n`);
    assert.ok(await waitFor(async () => (await chatTexts(a)).includes(`${nameN}: ${fromNative}`), { ms: 15_000, every: 200 }),
      `the page shows the native client's chat: ${JSON.stringify(await chatTexts(a))}`);

    // Human output names people by their display names once known, not only by ids.
    assert.ok(native.lines.some((l) => /^p\d+ is /.test(l) && l.endsWith(` is ${nameA}`)), `"pN is <name>": ${JSON.stringify(native.lines)}`);
    json.child.kill('SIGINT');
    assert.ok(await waitFor(() => native.lines.includes(`${nameJ} left`), { ms: 15_000, every: 200 }),
      `"<name> left", not an id: ${JSON.stringify(native.lines.slice(-10))}`);

    // End of input ends nothing: the session goes on until interrupted.
    native.child.stdin.end();
    native.child.kill('SIGINT');
    for (const n of [native, json]) assert.equal((await n.done).code, 0, `plenary join ends cleanly: ${n.stderr.slice(-1500)}`);
    const logs = [native.stderr, json.stderr, fs.readFileSync(m.server.logFile, 'utf8')];
    for (const secretText of [nameA, nameN, nameJ, fromPage, fromNative]) {
      assert.ok(logs.every((l) => !l.includes(secretText)), 'no name or chat text in any log');
    }
  });
});
