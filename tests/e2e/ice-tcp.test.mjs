// ICE-TCP (RFC 6544): with UDP to the media port blocked (an iptables rule
// on this test's own port, loopback only), two Chromium pages still meet
// over the server's passive TCP candidate on the same port number, and
// decode each other's video.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { meetingFixture, waitFor, randomId, newSecret } from './lib/harness.mjs';

let rule = null;

function iptables(args) {
  execFileSync('iptables', args, { stdio: 'ignore' });
}

function canUseIptables() {
  try {
    iptables(['-L', 'INPUT', '-n']);
    return true;
  } catch {
    return false;
  }
}

const m = meetingFixture({
  server: { name: 'ice-tcp-server' },
  cleanup: () => {
    if (rule) iptables(['-D', ...rule]);
  },
});

test('browsers meet over ICE-TCP when UDP is blocked', { skip: !canUseIptables() && 'iptables unavailable (needs root)' }, async () => {
  rule = ['INPUT', '-i', 'lo', '-p', 'udp', '--dport', String(m.server.rtcPort), '-j', 'DROP'];
  iptables(['-I', ...rule]);
  const room = randomId();
  const secret = newSecret();
  for (const name of ['Tcp-a', 'Tcp-b']) {
    await m.join(await m.open(), room, secret, name);
  }
  const met = await waitFor(async () => {
    for (const b of m.browsers) {
      const s = await b.page.evaluate(() => window.plenary.stats());
      const other = s.participants.find((p) => p.framesDecoded > 50);
      if (!other) return false;
    }
    return true;
  }, { ms: 40000 });
  // UDP to the media port is dropped, so the frames came over ICE-TCP.
  assert.ok(met, 'both pages decode each other\'s video with UDP blocked');
});
