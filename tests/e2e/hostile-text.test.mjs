// What another participant's name and chat can do to a page: nothing but
// show as text. A name ending in a right-to-left override (U+202E) must
// not turn the chat text after it around (it would let "ih :ecilA" read
// "Alice: hi", a line seemingly from someone else): the sender's name and
// the text are each isolated for bidi (UAX #9 §2.4, CSS unicode-bidi).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meetingFixture, randomId, waitFor, explained, newSecret, textEnds } from './lib/harness.mjs';

const m = meetingFixture({ server: { name: 'hostile-text-server' } });

test('a bidi override in a name does not reorder the chat text after it', { timeout: 120_000 }, async (t) => {
  await explained(t, m.ctx, async () => {
    const room = `hostile-text-${randomId(6)}`;
    const [victim, hostile] = await m.joinGroup(room, newSecret(), [`Victim-${randomId(5)}`, `Mallory-${randomId(4)}\u202e`]);
    const text = `ih :ecilA ${randomId(6)}`;
    await victim.page.getByRole('button', { name: 'Show chat' }).click();
    assert.ok(await waitFor(() => hostile.page.evaluate((x) => window.plenary.sendChat(x), text), { ms: 30_000 }), 'the chat line is sent');
    const line = victim.page.locator('.chat-line .chat-text', { hasText: text });
    await line.waitFor({ timeout: 15_000 });
    // Where the first and the last character of the text are drawn.
    const [first, last] = await line.evaluate(textEnds);
    assert.ok(first < last, `the text reads left to right as written (first character at x=${first}, last at x=${last})`);
  });
});
