/* File transfer rate, browser to browser, in one run:
 *   peer.js    offerFile/requestFile between two pages through the server
 *              (own data channel, 16 KiB chunks, flow control, SHA-256)
 *   raw        the same bytes over a bare RTCDataChannel between the same
 *              two pages (16 KiB chunks, the same buffering thresholds,
 *              no hashing): what Chromium itself gives
 * Prints one JSON line per measurement. Usage:
 *   node bench/file-transfer.mjs SERVER_BINARY [MEGABYTES] [ROUNDS]
 *
 * gst-bench (--only files) runs it as
 *   node bench/file-transfer.mjs --driven HTTP_URL THREAD BYTES
 * on its own server (HTTP_URL such as http://127.0.0.1:PORT, serving
 * signalling/web): pages A and B for the two measurements above, and page G
 * in THREAD, where gst-bench's pipelines are, for the legs between
 * pipelines and a browser. All files are BYTES random bytes. It prints
 *   {"ready": true, "page": G's id, "bytes": N, "sha256": G's file's}
 * and then takes one command per line on stdin, answering each with JSON
 * lines on stdout:
 *   bb peer.js | bb raw   one measurement between A and B: {"impl", "bytes", "ms"}
 *   receive               G requests the next file offered to it:
 *                         {"armed": true}, then at file:complete
 *                         {"impl": "gst->browser", "bytes", "ms", "sha256"},
 *                         ms from file:offer to file:complete in G
 *   offer                 G offers its file to THREAD: {"offered": file id}
 *   quit
 * Anything that fails is answered with {"error": "..."}.
 */
import { spawn } from 'child_process';
import { fileURLToPath } from 'url';
import path from 'path';
import net from 'net';
import readline from 'readline';
import { launchBrowser } from '../tests/browser/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

const driven = process.argv[2] === '--driven';

function freePort () {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let base;          /* http://localhost:PORT, the server's */
let cleanup = () => {};
if (driven) {
  base = process.argv[3].replace('127.0.0.1', 'localhost');
} else {
  const port = await freePort();
  const server = spawn(process.argv[2], ['--host', '127.0.0.1', '--port', String(port),
    '--web-root', path.join(root, 'signalling', 'web')], { stdio: 'ignore' });
  cleanup = () => { try { server.kill(); } catch (e) {} };
  process.on('exit', cleanup);
  base = `http://localhost:${port}`;
  for (let i = 0; i < 50; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) break;
    } catch (e) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/* Chromium as the browser scenarios launch it (its flags, and temporary
 * files in a directory of its own, removed once it is closed). */
const browser = await launchBrowser();
/* Camera and microphone allowed, as in tests/browser/lib.mjs: without
 * them Chromium gathers ICE candidates on the default route's interface
 * only, and a loopback-only network namespace (gst-bench's) has none. */
const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] });

async function openPeer () {
  const p = await ctx.newPage();
  await p.goto(`${base}/peer.js`);   /* same origin, any page */
  await p.setContent('<!doctype html><title>bench</title>');
  await p.addScriptTag({ url: `${base}/peer.js` });
  await p.evaluate(() => new Promise((res) => { peer.on('socket:connect', res); peer.init(); }));
  return p;
}

/* In the page: window.benchFile, `size` random bytes; its SHA-256 when
 * `hash`. */
function makeFile (page, size, hash) {
  return page.evaluate(async ({ size, hash }) => {
    const buf = new Uint8Array(size);
    for (let o = 0; o < size; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(size, o + 65536)));
    window.benchFile = new File([buf], 'bench.bin');
    if (!hash) return null;
    const digest = await crypto.subtle.digest('SHA-256', buf);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
  }, { size, hash });
}

const [A, B] = [await openPeer(), await openPeer()];
const bbThread = 'bench-' + Math.random().toString(36).slice(2);
const bId = await B.evaluate(() => peer.id);
await A.evaluate((t) => peer.thread(t, {}), bbThread);
await B.evaluate((t) => peer.thread(t, {}), bbThread);
await A.waitForFunction((t) => peer.threads[t].members && Object.keys(peer.threads[t].members).length === 1,
  bbThread);

const size = driven ? Number(process.argv[5]) : Number(process.argv[3] || 32) * 1024 * 1024;
await makeFile(A, size, false);

async function peerjsRound () {
  const done = B.evaluate(() => new Promise((resolve, reject) => {
    peer.one('file:offer', (e) => { window.t0 = performance.now(); peer.requestFile(e); });
    peer.one('file:complete', (e) => resolve({ ms: performance.now() - window.t0, size: e.size }));
    peer.one('file:error', (e) => reject(new Error(e.message)));
  }));
  await A.evaluate((to) => peer.offerFile(window.benchFile, { to }), bId);
  return done;
}

/* A bare pair of RTCPeerConnections between the two pages, signalled by
 * the bench itself, carrying the same bytes in the same chunks. */
async function rawRound () {
  await A.evaluate(() => {
    window.rawPc = new RTCPeerConnection();
    window.rawCh = rawPc.createDataChannel('raw', { ordered: true });
    rawCh.binaryType = 'arraybuffer';
    window.rawCands = [];
    rawPc.onicecandidate = (e) => e.candidate && rawCands.push(e.candidate.toJSON());
  });
  await B.evaluate(() => {
    window.rawPc = new RTCPeerConnection();
    window.rawCands = [];
    rawPc.onicecandidate = (e) => e.candidate && rawCands.push(e.candidate.toJSON());
    window.rawDone = new Promise((resolve) => {
      rawPc.ondatachannel = (ev) => {
        const ch = ev.channel;
        ch.binaryType = 'arraybuffer';
        let got = 0;
        let total = -1;
        let t0 = 0;
        ch.onmessage = (m) => {
          if (typeof m.data === 'string') {
            const h = JSON.parse(m.data);
            if (h.start) { total = h.size; t0 = performance.now(); }
            return;
          }
          got += m.data.byteLength;
          if (got === total) resolve({ ms: performance.now() - t0, size: got });
        };
      };
    });
  });
  const offer = await A.evaluate(async () => { await rawPc.setLocalDescription(); return rawPc.localDescription.toJSON(); });
  const answer = await B.evaluate(async (o) => { await rawPc.setRemoteDescription(o); await rawPc.setLocalDescription(); return rawPc.localDescription.toJSON(); }, offer);
  await A.evaluate(async (a) => rawPc.setRemoteDescription(a), answer);
  await new Promise((r) => setTimeout(r, 300));
  const ca = await A.evaluate(() => rawCands);
  const cb = await B.evaluate(() => rawCands);
  await B.evaluate(async (cs) => { for (const c of cs) await rawPc.addIceCandidate(c); }, ca);
  await A.evaluate(async (cs) => { for (const c of cs) await rawPc.addIceCandidate(c); }, cb);
  await A.evaluate(() => new Promise((r) => rawCh.readyState === 'open' ? r() : (rawCh.onopen = r)));
  const done = B.evaluate(() => rawDone);
  await A.evaluate(async () => {
    const ch = rawCh;
    ch.bufferedAmountLowThreshold = 256 * 1024;
    const f = window.benchFile;
    ch.send(JSON.stringify({ start: true, size: f.size }));
    for (let at = 0; at < f.size; at += 1024 * 1024) {
      const block = new Uint8Array(await f.slice(at, at + 1024 * 1024).arrayBuffer());
      for (let o = 0; o < block.length; o += 16384) {
        if (ch.bufferedAmount > 1024 * 1024) {
          await new Promise((r) => ch.addEventListener('bufferedamountlow', r, { once: true }));
        }
        ch.send(block.subarray(o, o + 16384));
      }
    }
  });
  const r = await done;
  await A.evaluate(() => rawPc.close());
  await B.evaluate(() => rawPc.close());
  return r;
}

const rounds = { 'peer.js': peerjsRound, raw: rawRound };

if (!driven) {
  const ROUNDS = Number(process.argv[4] || 3);
  for (let i = 0; i < ROUNDS; i++) {
    for (const [name, fn] of Object.entries(rounds)) {
      const r = await fn();
      console.log(JSON.stringify({ bench: 'file-transfer', impl: name, round: i, bytes: r.size,
        ms: Math.round(r.ms), mb_per_s: +(r.size / 1048576 / (r.ms / 1000)).toFixed(2) }));
    }
  }
  await browser.close();
  cleanup();
  process.exit(0);
}

/* Driven by gst-bench. */
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const G = await openPeer();
const gThread = process.argv[4];
const sha256 = await makeFile(G, size, true);
await G.evaluate((t) => peer.thread(t, {}), gThread);
/* The first file between A and B sets up their connection, so that no
 * measured round pays for it. */
await A.evaluate(() => { window.fullFile = window.benchFile; window.benchFile = window.benchFile.slice(0, 1 << 20); });
await peerjsRound();
await A.evaluate(() => { window.benchFile = window.fullFile; });
say({ ready: true, page: await G.evaluate(() => peer.id), bytes: size, sha256 });

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const [cmd, arg] = line.trim().split(/\s+/);
  try {
    if (cmd === 'bb' && rounds[arg]) {
      const r = await rounds[arg]();
      say({ impl: arg, bytes: r.size, ms: r.ms });
    } else if (cmd === 'receive') {
      await G.evaluate(() => {
        window.gstDone = new Promise((resolve, reject) => {
          peer.one('file:offer', (e) => { window.t0 = performance.now(); peer.requestFile(e); });
          peer.one('file:complete', (e) => resolve({ ms: performance.now() - window.t0, size: e.size,
            sha256: e.sha256 }));
          peer.one('file:error', (e) => reject(new Error(e.message)));
        });
      });
      say({ armed: true });
      const r = await G.evaluate(() => window.gstDone);
      say({ impl: 'gst->browser', bytes: r.size, ms: r.ms, sha256: r.sha256 });
    } else if (cmd === 'offer') {
      say({ offered: await G.evaluate((thread) => peer.offerFile(window.benchFile, { thread }), gThread) });
    } else if (cmd === 'quit') {
      break;
    } else {
      say({ error: `unknown command '${line.trim()}'` });
    }
  } catch (e) {
    say({ error: String(e.message || e).split('\n')[0] });
  }
}
await browser.close();
process.exit(0);
