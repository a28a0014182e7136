// Shared pieces of the browser end-to-end tests: the server binary, test
// media, headless Chromium (Debian's, driven by playwright-core), and a
// record of every request each page makes.
//
// Everything talks to loopback only. Names are test pseudonyms and are
// never printed.

import { spawn, execFileSync } from 'node:child_process';
import readline from 'node:readline';
import fs from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

/** The repository root. */
export const ROOT = process.env.PLENARY_ROOT || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The server binary (release build). */
export const PLENARY_BIN = process.env.PLENARY_BIN || path.join(ROOT, 'target/release/plenary');
/** Debian's Chromium; playwright's own browser downloads are never used. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Where screenshots and logs of the tests go (git-ignored). */
export const ARTIFACTS = path.join(ROOT, 'tests/e2e/artifacts');

/** Sleeps `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A random base64url-ish string of `n` characters. */
export function randomId(n = 12) {
  const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => a[b & 63]).join('');
}

/** A fresh meeting secret as the landing page makes it: 16 random bytes, unpadded base64url. */
export function newSecret() {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
}

/**
 * The path of a meeting page that joins at once as `name`:
 * `/m/<room>?name=<name>&autojoin=1#<secret>`.
 */
export function joinPath(room, secret, name) {
  return `/m/${room}?name=${encodeURIComponent(name)}&autojoin=1#${secret}`;
}

/**
 * Starts `plenary join URL --json` publishing the test media (VP8 and Opus
 * files) for `seconds` of connected media; `args` are added. Returns
 * {child, events (parsed JSON lines), done: Promise<{code, signal}>, stderr}.
 */
export function startNative(url, name, { media, seconds, args = [] }) {
  const argv = ['join', url, '--name', name, '--json', ...args];
  if (seconds) argv.push('--duration', String(seconds));
  if (media['carphone.ivf']) argv.push('--video', media['carphone.ivf']);
  if (media['speech.ogg']) argv.push('--audio', media['speech.ogg']);
  const child = spawn(PLENARY_BIN, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const events = [];
  let stderr = '';
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line));
    } catch {
      // not a JSON line
    }
  });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, events, done, get stderr() { return stderr; } };
}

/** A free TCP port on 127.0.0.1. */
export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A port free for both UDP and TCP on 127.0.0.1 (media: UDP plus ICE-TCP). */
export async function freeMediaPort() {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise((resolve, reject) => {
      const sock = dgram.createSocket('udp4');
      sock.on('error', reject);
      sock.bind(0, '127.0.0.1', () => {
        const { port: p } = sock.address();
        sock.close(() => resolve(p));
      });
    });
    const tcpFree = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (tcpFree) return port;
  }
  throw new Error('no free media port');
}

/**
 * Runs scripts/test-media.sh (cached) and returns the paths of the files it
 * made, by base name.
 */
export function testMedia() {
  const out = execFileSync('bash', [path.join(ROOT, 'scripts/test-media.sh')], {
    cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
  });
  const files = {};
  for (const line of out.split('\n')) {
    const p = line.trim();
    if (p && fs.existsSync(p)) files[path.basename(p)] = p;
  }
  for (const f of ['bbb-360p.y4m', 'speech.wav']) {
    if (!files[f]) throw new Error(`scripts/test-media.sh did not produce ${f}`);
  }
  return files;
}

/** A fresh temporary directory that `cleanup()` removes. */
export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Whether the plenary binary has subcommand `name` (per `plenary --help`). */
export function hasSubcommand(name) {
  try {
    const help = execFileSync(PLENARY_BIN, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return new RegExp(`^\\s+${name}\\b`, 'm').test(help);
  } catch {
    return false;
  }
}

/**
 * Starts `plenary serve` on free loopback ports and waits for /healthz.
 * Given ports (e.g. those of a server that was stopped) are reused; `args`
 * are added to the command line (e.g. `['--tap', file]`); `host` is the
 * local IPv4 address to listen on and announce (e.g. one end of a veth
 * pair, see lib/netns.mjs).
 * Returns {origin, httpPort, rtcPort, url(path), logFile, stop()}.
 */
export async function startServer({ name = 'server', httpPort = 0, rtcPort = 0, args: extra = [], host = '127.0.0.1' } = {}) {
  if (!fs.existsSync(PLENARY_BIN)) {
    throw new Error(`${PLENARY_BIN} is missing: run cargo build --release -p plenary-server`);
  }
  httpPort ||= await freeTcpPort();
  rtcPort ||= await freeMediaPort();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const logFile = path.join(ARTIFACTS, `${name}.log`);
  const log = fs.openSync(logFile, 'w');
  const args = ['serve', '--listen', `${host}:${httpPort}`, '--rtc-port', String(rtcPort), '--public-ip', host];
  if (process.env.PLENARY_WEB_DIR) args.push('--web-dir', process.env.PLENARY_WEB_DIR);
  args.push(...extra);
  const child = spawn(PLENARY_BIN, args, {
    cwd: ROOT,
    stdio: ['ignore', log, log],
    env: { ...process.env },
  });
  const origin = `http://${host}:${httpPort}`;
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const deadline = Date.now() + 15000;
  for (;;) {
    if (exited) throw new Error(`plenary serve exited early (${JSON.stringify(exited)}); see ${logFile}`);
    try {
      const res = await fetch(`${origin}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`plenary serve did not answer /healthz within 15 s; see ${logFile}`);
    }
    await sleep(100);
  }
  return {
    origin,
    httpPort,
    rtcPort,
    logFile,
    url: (p) => `${origin}${p}`,
    /** The server process exited (crashed) before stop(). */
    get exited() { return exited; },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const done = new Promise((r) => child.once('exit', r));
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
      fs.closeSync(log);
    },
  };
}

/** Chromium flags for headless runs with fake capture from the test media. */
export function chromiumArgs(media) {
  return [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-default-apps',
    '--disable-extensions',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-video-capture=${media['bbb-360p.y4m']}`,
    `--use-file-for-fake-audio-capture=${media['speech.wav']}`,
    '--autoplay-policy=no-user-gesture-required',
  ];
}

/**
 * One headless Chromium with a fresh profile (its own browser process),
 * recording every request and WebSocket its pages open, and the payload of
 * every WebSocket frame the server sent to them or they sent (`frames`).
 * `devices: false` gives it no camera and no microphone at all;
 * `executablePath` replaces Chromium (e.g. a wrapper that runs it in a
 * network namespace) and `extraArgs` are added to its flags.
 * Returns {context, page, requests, frames, errors, close()}.
 */
export async function openBrowser(media, {
  viewport = { width: 960, height: 540 }, devices = true, executablePath = CHROMIUM, extraArgs = [],
} = {}) {
  const profile = tempDir('plenary-e2e-profile-');
  // Without fake devices, headless Chromium has no camera or microphone.
  const base = devices ? chromiumArgs(media) : chromiumArgs(media).filter((a) => !/fake-(device|video|audio)/.test(a));
  const args = [...base, ...extraArgs];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport,
    args,
  });
  const requests = [];
  const frames = [];
  const errors = [];
  const watch = (page) => {
    page.on('request', (r) => requests.push(r.url()));
    page.on('websocket', (ws) => {
      requests.push(ws.url());
      ws.on('framereceived', (f) => frames.push(String(f.payload)));
      ws.on('framesent', (f) => frames.push(String(f.payload)));
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
  };
  context.on('page', watch);
  context.pages().forEach(watch);
  const page = context.pages()[0] || (await context.newPage());
  return {
    context,
    page,
    requests,
    frames,
    errors,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The request URLs among `urls` that are not on `origin` (http or ws scheme). */
export function foreignRequests(urls, origin) {
  const host = new URL(origin).host;
  return urls.filter((u) => {
    let url;
    try {
      url = new URL(u);
    } catch {
      return true;
    }
    return !(['http:', 'ws:'].includes(url.protocol) && url.host === host);
  });
}

/**
 * Console errors of a browser that report a request the page's
 * Content-Security-Policy blocked: such a request never shows up as a
 * request event, so the origin check must look here too.
 */
export function policyViolations(browser) {
  return browser.errors.filter((e) => /Content Security Policy|Refused to (load|connect|execute|frame)/i.test(e));
}

/**
 * Routes browser `b`'s signaling through the test (call before it loads the
 * page). Returns `{drop, pageSide}`: while `drop` is true, its MLS traffic
 * is lost both ways (it stays in the room and gets media, but no keys and
 * no profiles); `pageSide` is the page's end of the latest WebSocket (its
 * `close()` cuts the signaling).
 */
export async function routeMls(b) {
  const route = { drop: false, pageSide: null };
  await b.page.routeWebSocket(/\/ws$/, (ws) => {
    route.pageSide = ws;
    const srv = ws.connectToServer();
    srv.onMessage((msg) => {
      if (!(route.drop && /"type":"(mls|create_group)"/.test(String(msg)))) ws.send(msg);
    });
    ws.onMessage((msg) => {
      if (!(route.drop && /"type":"mls"/.test(String(msg)))) srv.send(msg);
    });
  });
  return route;
}

/**
 * Where character `first` and the last character of element `el`'s last
 * text node are drawn, [left, left] in CSS pixels, to see that bidi did
 * not turn the text around: runs in the page, `locator.evaluate(textEnds, first)`.
 */
export function textEnds(el, first = 0) {
  const node = [...el.childNodes].reverse().find((n) => n.nodeType === Node.TEXT_NODE);
  const x = (i) => {
    const r = document.createRange();
    r.setStart(node, i);
    r.setEnd(node, i + 1);
    return r.getBoundingClientRect().left;
  };
  return [x(first), x(node.length - 1)];
}

/** Polls `check()` until it returns a truthy value or `ms` pass; returns the last value. */
export async function waitFor(check, { ms = 30000, every = 500 } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last || Date.now() > deadline) return last;
    await sleep(every);
  }
}

/**
 * Runs a test body; when it fails, prints what helps to understand why
 * (each page's errors and connection state, the end of the server log)
 * before passing the failure on.
 */
export async function explained(t, { server, browsers }, body) {
  try {
    await body();
  } catch (err) {
    for (const [i, b] of (browsers() || []).entries()) {
      const state = await b.page.evaluate(() => window.plenary?.state).catch(() => 'unknown');
      t.diagnostic(`page ${i}: state ${state}; errors: ${JSON.stringify(b.errors.slice(-5))}`);
    }
    const srv = server();
    if (srv?.logFile && fs.existsSync(srv.logFile)) {
      const lines = fs.readFileSync(srv.logFile, 'utf8').trim().split('\n').slice(-20);
      t.diagnostic(`server ${srv.exited ? `exited ${JSON.stringify(srv.exited)}` : 'running'}; log tail:`);
      for (const line of lines) t.diagnostic(`  ${line.replace(/\x1b\[[0-9;]*m/g, '')}`);
    }
    throw err;
  }
}

/**
 * The set-up every browser test file shares, as `before`/`after` hooks of
 * the file: the test media, one `plenary serve` (`startServer(server)`;
 * `server` may be a function called in `before`, after `prepare()`), and
 * the browsers and native clients the tests open through the fixture.
 * After the tests, native clients are killed, browsers closed, the server
 * stopped, then `cleanup()` runs. With `skip` (a reason) nothing starts.
 *
 * Returns the fixture `fx`: `fx.media`, `fx.server` (replaced by
 * `startAgain()`), `fx.browsers`, `fx.ctx` (for `explained`), and
 * - `open(options)`: `openBrowser(fx.media, options)`, closed after the tests;
 * - `openMany(n, options)`: `n` of them, opened in parallel;
 * - `close(...browsers)`: closes those now (all of them without arguments);
 * - `join(b, room, secret, name)`: browser `b` opens the meeting page that
 *   joins at once (`joinPath`);
 * - `joinGroup(room, secret, names, { init })`: a browser per name (`init(b)`
 *   runs before it loads the page) joins the meeting; the first forms the
 *   MLS group before the others join (together, as one batch); returns them;
 * - `native(url, name, options)`: `startNative`, killed after the tests;
 * - `startAgain(name)`: a new server on the ports of the last one (stopped
 *   first if it still runs: `fx.server.stop()` is idempotent).
 */
export function meetingFixture({ server: serverOptions = {}, skip = null, prepare, cleanup } = {}) {
  const fx = {
    media: null,
    server: null,
    browsers: [],
    natives: [],
    ctx: { server: () => fx.server, browsers: () => fx.browsers },
    async open(options) {
      const b = await openBrowser(fx.media, options);
      fx.browsers.push(b);
      return b;
    },
    openMany(n, options) {
      return Promise.all(Array.from({ length: n }, () => fx.open(options)));
    },
    async close(...which) {
      const closing = which.length ? which : [...fx.browsers];
      for (const b of closing) fx.browsers.splice(fx.browsers.indexOf(b), 1);
      await Promise.all(closing.map((b) => b.close()));
    },
    join(b, room, secret, name) {
      return b.page.goto(fx.server.url(joinPath(room, secret, name)));
    },
    async joinGroup(room, secret, names, { init } = {}) {
      const pages = [];
      for (const name of names) {
        const b = await fx.open();
        await init?.(b);
        await fx.join(b, room, secret, name);
        pages.push(b);
        if (pages.length === 1) {
          await waitFor(() => b.page.evaluate(() => window.plenary.e2ee().member), { ms: 20000, every: 200 });
        }
      }
      return pages;
    },
    native(url, name, options) {
      const n = startNative(url, name, { media: fx.media, ...options });
      fx.natives.push(n);
      return n;
    },
    async startAgain(name) {
      const { httpPort, rtcPort } = fx.server;
      await fx.server.stop();
      fx.server = await startServer({ ...fx.options, name, httpPort, rtcPort });
      return fx.server;
    },
  };
  before(async () => {
    if (skip) return;
    fx.media = testMedia();
    await prepare?.(fx);
    fx.options = typeof serverOptions === 'function' ? serverOptions(fx) : serverOptions;
    fx.server = await startServer(fx.options);
  });
  after(async () => {
    for (const n of fx.natives) n.child.kill('SIGKILL');
    await fx.close();
    await fx.server?.stop();
    await cleanup?.(fx);
  });
  return fx;
}
