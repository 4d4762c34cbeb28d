/* File transfer rate, browser to browser, in one run:
 *   peer.js    offerFile/requestFile between two pages through the server
 *              (own data channel, 16 KiB chunks, flow control, SHA-256)
 *   raw        the same bytes over a bare RTCDataChannel between the same
 *              two pages (16 KiB chunks, the same buffering thresholds,
 *              no hashing): what Chromium itself gives
 * Prints one JSON line per measurement. Usage:
 *   node bench/file-transfer.mjs SERVER_BINARY [MEGABYTES] [ROUNDS]
 */
import { createRequire } from 'module';
import { spawn } from 'child_process';
import { fileURLToPath } from 'url';
import path from 'path';
import net from 'net';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(path.join(root, 'tests', 'browser', 'package.json'));
const { chromium } = require('playwright-core');

const [serverBin, mbArg, roundsArg] = process.argv.slice(2);
const MB = Number(mbArg || 32);
const ROUNDS = Number(roundsArg || 3);

function freePort () {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const port = await freePort();
const server = spawn(serverBin, ['--host', '127.0.0.1', '--port', String(port),
  '--web-root', path.join(root, 'signalling', 'web')], { stdio: 'ignore' });
const cleanup = () => { try { server.kill(); } catch (e) {} };
process.on('exit', cleanup);
for (let i = 0; i < 50; i++) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    if (r.ok) break;
  } catch (e) { /* not yet */ }
  await new Promise((r) => setTimeout(r, 100));
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
});
const ctx = await browser.newContext();
const [A, B] = [await ctx.newPage(), await ctx.newPage()];
for (const p of [A, B]) {
  await p.goto(`http://localhost:${port}/peer.js`);   /* same origin, any page */
  await p.setContent('<!doctype html><title>bench</title>');
  await p.addScriptTag({ url: `http://localhost:${port}/peer.js` });
  await p.evaluate(() => new Promise((res) => { peer.on('socket:connect', res); peer.init(); }));
}
const bId = await B.evaluate(() => peer.id);
await A.evaluate(() => peer.thread('bench', {}));
await B.evaluate(() => peer.thread('bench', {}));
await A.waitForFunction(() => peer.threads.bench.members && Object.keys(peer.threads.bench.members).length === 1);

const size = MB * 1024 * 1024;
await A.evaluate((size) => {
  const buf = new Uint8Array(size);
  for (let o = 0; o < size; o += 65536) crypto.getRandomValues(buf.subarray(o, o + 65536));
  window.benchFile = new File([buf], 'bench.bin');
}, size);

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

for (let i = 0; i < ROUNDS; i++) {
  for (const [name, fn] of [['peer.js', peerjsRound], ['raw', rawRound]]) {
    const r = await fn();
    console.log(JSON.stringify({ bench: 'file-transfer', impl: name, round: i, bytes: r.size,
      ms: Math.round(r.ms), mb_per_s: +(r.size / 1048576 / (r.ms / 1000)).toFixed(2) }));
  }
}
await browser.close();
cleanup();
