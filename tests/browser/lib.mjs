// Shared code for the browser scenarios: the signalling server, Chromium,
// pages, waits with timeouts, assertions with clear messages.
//
// A scenario is `scenario('name', async (t) => { ... })`. It exits 0 when
// the body finished, 1 when it threw or ran past its deadline; either way
// the servers it started and the browsers it launched are stopped. On
// failure it prints the error, then the timeline: every step, the server's
// output and the pages' console, in the order they happened, and what each
// open page looked like (peer.id, peer events seen, peer connection states).
//
// tests/check/browser.cpp runs each scenario inside a loopback-only network
// namespace; run by hand, a scenario works the same on the host's loopback.
//
// Running this file directly (`node tests/browser/lib.mjs`) is a smoke test
// of the infrastructure alone: server, /healthz, Chromium, a page from the
// server, getUserMedia on the fake camera.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// PEERJS_WEB_ROOT: another web root, e.g. a changed copy, to see a scenario fail.
export const WEB_ROOT = process.env.PEERJS_WEB_ROOT || path.join(REPO, 'signalling/web');
export const SERVER_BIN = process.env.PEERJS_SIGNALLING
  || path.join(REPO, 'build/signalling/server/peerjs-signalling');
export const ARTIFACTS = process.env.PEERJS_ARTIFACTS
  || path.join(REPO, 'build/tests/artifacts');
export const CHROMIUM = process.env.PEERJS_CHROMIUM || '/usr/bin/chromium';

// Default timeout of one wait. Generous: two cores may also be running
// another test suite.
export const WAIT_MS = 15000;

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

const T0 = Date.now();
const timeline = [];
const TIMELINE_MAX = 4000;

function stamp () {
  return ((Date.now() - T0) / 1000).toFixed(3).padStart(7);
}

// Record a line in the timeline; `echo` also prints it now.
export function note (line, echo = false) {
  const l = `${stamp()} ${line}`;
  timeline.push(l);
  if (timeline.length > TIMELINE_MAX)
    timeline.splice(0, timeline.length - TIMELINE_MAX);
  if (echo)
    console.log(l);
}

export function log (...args) {
  note(args.join(' '), true);
}

export function sleep (ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------- assertions

export class AssertionError extends Error {}

export function assert (cond, message) {
  if (!cond)
    throw new AssertionError(message);
}

function show (v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

export function assertEqual (actual, expected, what) {
  const a = show(actual), e = show(expected);
  if (a !== e)
    throw new AssertionError(`${what}: expected ${e}, got ${a}`);
}

// Waits for a Node-side condition (async function returning truthy).
export async function waitFor (what, fn, timeout = WAIT_MS, interval = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v)
        return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new AssertionError(`timed out after ${timeout} ms waiting for ${what}`
        + (last ? ` (last error: ${last.message})` : ''));
    await sleep(interval);
  }
}

// Rejects with a clear message if `promise` takes longer than `timeout`.
export async function within (what, promise, timeout = WAIT_MS) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new AssertionError(
      `timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

// -------------------------------------------------------------------- server

export class Server {
  constructor (proc, port, args) {
    this.proc = proc;
    this.port = port;
    this.args = args;
    this.exited = false;
    proc.on('exit', (code, signal) => {
      this.exited = true;
      note(`[server:${port}] exited (${signal || code})`);
    });
  }

  // http://localhost:PORT/ : a secure context, as getUserMedia needs.
  get url () {
    return `http://localhost:${this.port}/`;
  }

  // Starts peerjs-signalling on 127.0.0.1 and waits for /healthz.
  // port 0 picks a free port.
  static async start ({ port = 0, secretFile = null, extra = [] } = {}) {
    assert(fs.existsSync(SERVER_BIN),
      `the server binary ${SERVER_BIN} does not exist (ninja -C build)`);
    const args = ['--host', '127.0.0.1', '--port', String(port),
      '--web-root', WEB_ROOT];
    if (secretFile)
      args.push('--secret-file', secretFile);
    args.push(...extra);
    note(`[server] starting ${path.basename(SERVER_BIN)} ${args.join(' ')}`, true);
    const proc = spawn(SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const seen = new Promise((resolve, reject) => {
      const onLine = (stream) => (chunk) => {
        const text = chunk.toString();
        for (const l of text.split('\n').filter(Boolean))
          note(`[server${port ? ':' + port : ''} ${stream}] ${l}`);
        out += text;
        const m = out.match(/listening on https?:\/\/[^:]+:(\d+)\//);
        if (m)
          resolve(Number(m[1]));
      };
      proc.stdout.on('data', onLine('out'));
      proc.stderr.on('data', onLine('err'));
      proc.on('exit', (code, signal) => reject(new Error(
        `the server exited (${signal || code}) before listening:\n${out}`)));
      proc.on('error', reject);
    });
    const server = new Server(proc, 0, args);
    Server.running.add(server);
    server.port = await within('the server to print its port', seen, 10000);
    await waitFor(`GET /healthz 200 on port ${server.port}`, async () => {
      const r = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      return r.status === 200;
    }, 10000, 50);
    note(`[server] up on port ${server.port} (pid ${proc.pid})`, true);
    return server;
  }

  // SIGTERM (a clean shutdown) or SIGKILL (a crash); waits for the exit.
  async stop (signal = 'SIGTERM') {
    Server.running.delete(this);
    if (this.exited)
      return;
    const gone = once(this.proc, 'exit');
    this.proc.kill(signal);
    try {
      await within(`the server to exit on ${signal}`, gone, 5000);
    } catch (e) {
      this.proc.kill('SIGKILL');
      await gone;
      throw e;
    }
  }
}
Server.running = new Set();

// ------------------------------------------------------------------- browser

// `args`: more Chromium flags, after CHROMIUM_ARGS. Chromium's temporary
// files (its singleton socket's directory, which it leaves behind even when
// closed) go in a tmpDir () of the browser's own, removed once it is gone
// (outside a scenario too, as in bench/net/lab-page.mjs).
export async function launchBrowser ({ args = [] } = {}) {
  assert(fs.existsSync(CHROMIUM), `${CHROMIUM} does not exist (apt-get install chromium)`);
  const tmp = tmpDir('peerjs-chromium-');
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...args],
      env: { ...process.env, TMPDIR: tmp },
      timeout: 30000,
    });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  note(`[browser] Chromium ${browser.version()}`, true);
  launched.add(browser);
  browser.on('disconnected', () => {
    launched.delete(browser);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return browser;
}
const launched = new Set();

// Runs in every page before its own scripts: keeps the page's peer
// connections in window.__pcs, for the diagnostics printed on failure. It
// only observes; the class behaves as RTCPeerConnection does.
function pageInit () {
  window.__pcs = [];
  const Native = window.RTCPeerConnection;
  if (Native) {
    window.RTCPeerConnection = class RTCPeerConnection extends Native {
      constructor (...args) {
        super(...args);
        window.__pcs.push(this);
      }
    };
  }
}

// The library scenarios run in the server's own /healthz document, with
// /peer.js added as a script: a page of the server's origin (a secure
// context, on the loopback address space) with nothing but peer.js in it.
// (A page made up by the test with route.fulfill() would not do: Chromium
// then counts it as public and blocks its WebSocket to localhost.)
const BLANK = 'healthz';

export const pages = new Set();

// A browser page in a context of its own (its own storage: its own peer).
// `path` is the path on the server; null gives the blank peer.js page.
export async function openPage (browser, server, name, { path: p = null,
  viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({
    viewport,
    permissions: ['camera', 'microphone'],
  });
  await context.addInitScript(pageInit);
  const page = await context.newPage();
  page.name = name;
  page.on('console', (m) => note(`[${name} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => note(`[${name} pageerror] ${e.stack || e.message}`, true));
  page.on('requestfailed', (r) => note(
    `[${name} requestfailed] ${r.url()} ${r.failure()?.errorText}`));
  page.httpErrors = [];
  page.on('response', (r) => {
    if (r.status() >= 400) {
      page.httpErrors.push(`${r.status()} ${r.url()}`);
      note(`[${name} http ${r.status()}] ${r.url()}`, true);
    }
  });
  page.on('crash', () => note(`[${name}] page crashed`, true));
  page.on('close', () => pages.delete(page));
  pages.add(page);
  page.setDefaultTimeout(WAIT_MS);
  const url = server.url + (p === null ? BLANK : p.replace(/^\//, ''));
  note(`[${name}] open ${url}`, true);
  const response = await page.goto(url, { waitUntil: 'load' });
  assert(response && response.ok(), `${name}: GET ${url} answered `
    + `${response ? response.status() : 'nothing'}`);
  if (p === null) {
    await page.evaluate(() => { document.title = 'peer.js test'; });
    await page.addScriptTag({ url: '/peer.js' }).catch((e) => {
      throw new AssertionError(`${name}: <script src="/peer.js"> did not load: ${e.message}`);
    });
  }
  return page;
}

// A blank page with peer.js, an event recorder, and peer.init() done:
// peer.id is set when it returns.
export async function openPeer (browser, server, name) {
  const page = await openPage(browser, server, name);
  const hasPeer = await page.evaluate(() => typeof window.peer === 'object'
    && window.peer !== null && typeof window.peer.init === 'function');
  assert(hasPeer, `${name}: /peer.js did not define a global 'peer' with init() `
    + `(is signalling/web/peer.js there? ${fs.existsSync(path.join(WEB_ROOT, 'peer.js'))})`);
  await record(page);
  await page.evaluate(() => void window.peer.init());
  const id = await waitIn(page, 'peer.id after peer.init()',
    () => window.peer.id);
  page.peerId = id;
  note(`[${name}] peer.id ${id}`, true);
  return page;
}

// Records every peer event of the page in window.__events, via '*'.
export async function record (page) {
  await page.evaluate(() => {
    if (window.__events)
      return;
    window.__events = [];
    window.peer.on('*', (name, e) => {
      window.__events.push({ name, e, wall: Date.now() });
    });
  });
}

// Waits until `fn(arg)` is truthy in the page, returns its value.
export async function waitIn (page, what, fn, arg, timeout = WAIT_MS) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout, polling: 50 });
    return await handle.jsonValue();
  } catch (e) {
    if (/Timeout|timed out/i.test(e.message))
      throw new AssertionError(`${page.name}: timed out after ${timeout} ms `
        + `waiting for ${what}`);
    throw new AssertionError(`${page.name}: while waiting for ${what}: ${e.message}`);
  }
}

// A JSON-safe copy of an event: media streams, blobs and functions are
// described, not copied. Defined in the page (as a string, so it can be
// used inside other page functions).
const PLAIN = `(function plain (v, depth = 0) {
  if (v === null || typeof v !== 'object')
    return typeof v === 'function' ? '[function]' : v;
  if (depth > 6) return '[deep]';
  if (typeof MediaStream !== 'undefined' && v instanceof MediaStream)
    return { MediaStream: v.id, video: v.getVideoTracks().length, audio: v.getAudioTracks().length };
  if (typeof Blob !== 'undefined' && v instanceof Blob)
    return { Blob: v.size, type: v.type };
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return { bytes: v.byteLength };
  if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
  const o = {};
  for (const k of Object.keys(v)) o[k] = plain(v[k], depth + 1);
  return o;
})`;

// The time of an event in the timeline's terms: seconds since the start.
export function since (wall) {
  return ((wall - T0) / 1000).toFixed(3);
}

// Events of this name seen so far (JSON-safe copies), optionally filtered by
// a predicate given as source text over `e`, e.g. "e.from === 'x'".
export async function events (page, name, where = 'true') {
  return page.evaluate(({ name, where, PLAIN }) => {
    const plain = eval(PLAIN);
    const pred = new Function('e', `return (${where});`);
    return (window.__events || []).filter((x) => x.name === name && pred(x.e || {}))
      .map((x) => plain(x.e));
  }, { name, where, PLAIN });
}

// When those events came, as seconds since the scenario started.
export async function eventTimes (page, name, where = 'true') {
  const walls = await page.evaluate(({ name, where }) => {
    const pred = new Function('e', `return (${where});`);
    return (window.__events || []).filter((x) => x.name === name && pred(x.e || {}))
      .map((x) => x.wall);
  }, { name, where });
  return walls.map(since);
}

// Waits for the `count`-th event of this name matching `where` (source text
// over `e`), and returns a JSON-safe copy of it.
export async function waitEvent (page, name, where = 'true', { timeout = WAIT_MS,
  count = 1, what = null } = {}) {
  return waitIn(page, what || `peer event '${name}' where ${where}`
    + (count > 1 ? ` (${count} of them)` : ''),
  ({ name, where, count, PLAIN }) => {
    const pred = new Function('e', `return (${where});`);
    const hits = (window.__events || []).filter((x) => x.name === name && pred(x.e || {}));
    if (hits.length < count)
      return false;
    return eval(PLAIN)(hits[count - 1].e);
  }, { name, where, count, PLAIN }, timeout);
}

// What a page looked like, for the failure report.
async function describe (page) {
  try {
    return await within('page diagnostics', page.evaluate(({ PLAIN, T0 }) => {
      const plain = eval(PLAIN);
      const counts = {};
      for (const x of window.__events || [])
        counts[x.name] = (counts[x.name] || 0) + 1;
      const p = window.peer;
      let threads;
      try {
        threads = p && plain(p.threads);
      } catch (e) {
        threads = String(e);
      }
      return {
        url: location.href,
        peer_js: typeof p,
        id: p ? p.id : undefined,
        threads,
        events: counts,
        last_events: (window.__events || []).slice(-12).map((x) =>
          ({ name: x.name, at: ((x.wall - T0) / 1000).toFixed(3), e: plain(x.e) })),
        peer_connections: (window.__pcs || []).map((pc) => ({
          connection: pc.connectionState, ice: pc.iceConnectionState,
          signaling: pc.signalingState,
          transceivers: pc.getTransceivers().map((t) =>
            `${t.receiver.track.kind}:${t.currentDirection || t.direction}`),
        })),
        members: [...document.querySelectorAll('[data-member]')].map((el) => {
          const v = el.querySelector('video');
          return { member: el.dataset.member, video: v ? { w: v.videoWidth,
            paused: v.paused, ready: v.readyState } : null };
        }),
      };
    }, { PLAIN, T0 }), 3000);
  } catch (e) {
    return `(cannot describe: ${e.message})`;
  }
}

// ------------------------------------------------------------- demo page

// Opens the demo page in `room` (the URL hash) and waits for its peer.id.
export async function openDemo (browser, server, name, room) {
  const page = await openPage(browser, server, name, { path: `/#${room}` });
  page.peerId = await waitIn(page, 'peer.id on the demo page',
    () => window.peer && window.peer.id);
  await record(page);
  note(`[${name}] peer.id ${page.peerId}`, true);
  return page;
}

// Turns the camera on with the demo's Camera button; waits for the local
// stream (fake camera and microphone).
export async function cameraOn (page) {
  await page.click('#toggle-camera');
  const kinds = await waitIn(page, 'peer.localmedia with a live video and audio track',
    () => {
      const s = window.peer.localmedia;
      const live = (k) => s && s.getTracks().filter((t) => t.kind === k && t.readyState === 'live').length;
      return s && live('video') && live('audio') ? { video: live('video'), audio: live('audio') } : false;
    });
  assertEqual(kinds, { video: 1, audio: 1 }, `${page.name}: local tracks`);
}

// Waits until the tile of `member` on `page` has a video that plays: a
// frame size, not paused, and its time moving on.
export async function videoPlays (page, member, name, timeout = 20000) {
  const sel = `[data-member="${member}"] video`;
  const size = await waitIn(page, `${sel} (${name}'s tile) to play with videoWidth > 0`,
    (sel) => {
      const v = document.querySelector(sel);
      if (!v || v.paused || v.readyState < 2 || !v.videoWidth)
        return false;
      window.__started = window.__started || {};
      if (!(sel in window.__started))
        window.__started[sel] = v.currentTime;
      // Moving on: at least 0.3 s of video played since first seen.
      return v.currentTime > window.__started[sel] + 0.3
        ? { w: v.videoWidth, h: v.videoHeight } : false;
    }, sel, timeout);
  note(`[${page.name}] ${name}'s video plays at ${size.w}x${size.h}`, true);
  return size;
}

// ------------------------------------------------------------------ scenario

// A directory of its own under the system's temporary one, removed with
// everything in it when the scenario ends, passed or failed.
const tmpDirs = new Set();

export function tmpDir (prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.add(dir);
  return dir;
}

let cleaningUp = null;

async function cleanup () {
  if (cleaningUp)
    return cleaningUp;
  cleaningUp = (async () => {
    for (const b of [...launched])
      await within('the browser to close', b.close(), 10000).catch((e) =>
        note(`[browser] close: ${e.message}`, true));
    for (const s of [...Server.running])
      await s.stop().catch((e) => note(`[server] stop: ${e.message}`, true));
    for (const dir of tmpDirs)
      fs.rmSync(dir, { recursive: true, force: true });
  })();
  return cleaningUp;
}

// Runs a scenario body with a deadline, then exits the process.
export function scenario (name, body, { deadline = 75000 } = {}) {
  const t = {
    name,
    started: Date.now(),
    step (what) {
      log(`-- ${what}`);
    },
  };
  let done = false;
  const fail = async (err) => {
    if (done)
      return;
    done = true;
    const descriptions = [];
    for (const p of [...pages])
      descriptions.push(`${p.name}: ${JSON.stringify(await describe(p), null, 1)}`);
    console.log(`\nFAIL ${name} after ${((Date.now() - t.started) / 1000).toFixed(1)} s: `
      + (err instanceof AssertionError ? err.message : err.stack || err));
    if (err instanceof AssertionError && err.stack)
      console.log(err.stack.split('\n').filter((l) => /\.mjs:/.test(l)).join('\n'));
    console.log('\n--- open pages');
    console.log(descriptions.join('\n') || '(none)');
    console.log('\n--- timeline (steps, server output, page consoles)');
    console.log(timeline.join('\n'));
    await cleanup();
    process.exit(1);
  };
  const timer = setTimeout(() => fail(new AssertionError(
    `the scenario ran past its deadline of ${deadline / 1000} s`)), deadline);
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => fail(new AssertionError(`stopped by ${sig}`)));
  process.on('unhandledRejection', (e) => fail(e));
  (async () => {
    log(`scenario ${name}`);
    await body(t);
    if (done)
      return;
    done = true;
    clearTimeout(timer);
    await cleanup();
    log(`PASS ${name} in ${((Date.now() - t.started) / 1000).toFixed(1)} s`);
    process.exit(0);
  })().catch(fail);
}

// ------------------------------------------------------------- smoke test

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  scenario('smoke', async (t) => {
    const server = await Server.start();
    const browser = await launchBrowser();
    const page = await openPage(browser, server, 'smoke', { path: '/' });
    const r = await page.evaluate(async () => {
      const health = await (await fetch('/healthz')).status;
      const s = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      return { health, secure: window.isSecureContext,
        video: s.getVideoTracks().length, audio: s.getAudioTracks().length };
    });
    assertEqual(r, { health: 200, secure: true, video: 1, audio: 1 },
      'fetch /healthz and getUserMedia from the served page');
    t.step(`peer.js is ${fs.existsSync(path.join(WEB_ROOT, 'peer.js')) ? 'there' : 'not there yet'}`);
  });
}

// ------------------------------------------------------ the original's page

// Opens the original PeerJS demo page (/original.html) in `room` (the URL
// hash), waits for its peer.id and records its peer events from then on.
// It is opened at 127.0.0.1, not localhost: on a host named localhost the
// original's code connects to port 5000 instead of the page's own server.
export async function openOriginal (browser, server, name, room) {
  const at = { url: `http://127.0.0.1:${server.port}/` };
  const page = await openPage(browser, at, name, { path: `/original.html#${room}` });
  page.peerId = await waitIn(page, 'peer.id on the original\'s page',
    () => window.peer && window.peer.id);
  await record(page);
  note(`[${name}] peer.id ${page.peerId}`, true);
  return page;
}
