// Files between pipelines and pages, both ways, with identical SHA-256:
// `filesrc ! peerjssink` offers a file a page fetches with peer.js, and a
// file a page offers lands in a peerjssrc's download-dir. Then a page that
// plays a bad sender on its own data channels: bytes before file:start,
// more bytes than announced, a wrong SHA-256, a channel for a file never
// asked for. Each is an error for that transfer alone: nothing is kept,
// and a good file still arrives afterwards.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  scenario, Server, launchBrowser, openPeer, waitEvent, waitIn, tmpDir,
  assert, assertEqual, note,
} from './lib.mjs';
import { Pipeline } from './gst.mjs';

const ROOM = 'pipeline-files';
const SIZE = 8 * 1024 * 1024;

function sha256 (file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

// In the page: a File of `size` random bytes and its SHA-256.
async function makeFile (page, name, size) {
  return page.evaluate(async ({ name, size }) => {
    const bytes = new Uint8Array(size);
    for (let o = 0; o < size; o += 65536)
      crypto.getRandomValues(bytes.subarray(o, Math.min(size, o + 65536)));
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    window.files = window.files || {};
    window.files[name] = new File([bytes], name, { type: 'application/octet-stream' });
    return Array.from(new Uint8Array(digest),
      (b) => b.toString(16).padStart(2, '0')).join('');
  }, { name, size });
}

scenario('pipeline-files', async (t) => {
  const server = await Server.start();
  const ws = `ws://127.0.0.1:${server.port}/peerjs`;
  const dir = tmpDir('peerjs-pipeline-files-');
  const inbox = path.join(dir, 'in');
  fs.mkdirSync(inbox);

  t.step('a page joins; filesrc ! peerjssink offers a file to the room');
  const browser = await launchBrowser();
  const page = await openPeer(browser, server, 'B');
  await page.evaluate((room) => {
    peer.thread(room, {});
    peer.on('file:offer', (e) => peer.requestFile(e));
  }, ROOM);
  const original = path.join(dir, 'from-pipeline.bin');
  fs.writeFileSync(original, crypto.randomBytes(SIZE));
  const want = sha256(original);
  const sink = Pipeline.launch('sink', ['filesrc', `location=${original}`, '!',
    'peerjssink', `server=${ws}`, `thread=${ROOM}`], { eos: false });
  const sinkId = await sink.sessionId();

  t.step('the page fetches it: same bytes');
  const offer = await waitEvent(page, 'file:offer', `e.from === '${sinkId}'`);
  assertEqual([offer.name, offer.size], ['from-pipeline.bin', SIZE],
    'the pipeline\'s offer [name, size]');
  const started = Date.now();
  await waitEvent(page, 'file:complete', `e.id === '${offer.id}'`, { timeout: 30000 });
  note(`8 MiB pipeline to page in ${Date.now() - started} ms`, true);
  const got = await page.evaluate(async (id) => {
    const e = window.__events.find((x) => x.name === 'file:complete' && x.e.id === id).e;
    const buf = await e.blob.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', buf);
    return { size: buf.byteLength, sha256: Array.from(new Uint8Array(digest),
      (b) => b.toString(16).padStart(2, '0')).join('') };
  }, offer.id);
  assertEqual(got, { size: SIZE, sha256: want }, 'what the page received');
  await sink.waitMessage(`peerjs-file-complete, id=(string)${offer.id}`);
  await sink.interrupt();

  t.step('a peerjssrc with a download-dir joins; a page offers it a file');
  const src = Pipeline.launch('src', ['peerjssrc', `server=${ws}`, `thread=${ROOM}`,
    'accept-files=all', `download-dir=${inbox}`, '!', 'fakesink', 'sync=false'],
  { eos: false });
  const srcId = await src.sessionId();
  await waitEvent(page, 'thread:connect', `e.from === '${srcId}'`);
  const pageSha = await makeFile(page, 'from-page.bin', SIZE);
  const id = await page.evaluate((room) => peer.offerFile(window.files['from-page.bin'],
    { thread: room }), ROOM);
  const done = await src.waitMessage(`peerjs-file-complete, id=(string)${id}`, 30000);
  assert(done.includes(`sha256=(string)${pageSha}`), `the pipeline's SHA-256: ${done}`);
  assertEqual(sha256(path.join(inbox, 'from-page.bin')), pageSha,
    'SHA-256 of the file in download-dir');
  await waitEvent(page, 'file:sent', `e.id === '${id}'`);

  t.step('the original\'s way: an offer with id 0 and no size, sendFile in the request handler');
  const origSha = await makeFile(page, 'original.bin', 256 * 1024);
  await page.evaluate((room) => {
    peer.on('file:request', (e) => {
      if (String(e.id) === '0') peer.sendFile(window.files['original.bin'], e.from);
    });
    peer.send({ type: 'file:offer', name: 'original.bin', id: 0, thread: room });
  }, ROOM);
  const orig = await src.waitMessage('peerjs-file-complete, id=(string)0,', 30000);
  assert(orig.includes(`sha256=(string)${origSha}`), `the pipeline's SHA-256: ${orig}`);
  assertEqual(sha256(path.join(inbox, 'original.bin')), origSha,
    'SHA-256 of original.bin in download-dir');

  t.step('a bad sender: each broken transfer is an error, nothing is kept');
  // The page offers by hand and answers the pipeline's request on a channel
  // of its own, sending what `frames` says.
  const bad = async (name, frames) => {
    const fileId = 'bad' + Math.random().toString(36).slice(2, 8);
    await page.evaluate(({ room, fileId, name, frames, srcId }) => {
      peer.on('file:request', (e) => {
        if (e.id !== fileId) return;
        const pc = peer._remote(srcId).pc;
        const ch = pc.createDataChannel('file:' + fileId + ':x', { ordered: true });
        ch.binaryType = 'arraybuffer';
        window.badReplies = window.badReplies || {};
        window.badReplies[fileId] = [];
        ch.onmessage = (m) => window.badReplies[fileId].push(m.data);
        ch.onopen = () => {
          for (const f of frames)
            ch.send(typeof f === 'string' ? f.replaceAll('ID', fileId) : new Uint8Array(f));
        };
      });
      peer.send('file:offer', { thread: room, id: fileId, name, size: 4, mime: 'text/plain' });
    }, { room: ROOM, fileId, name, frames, srcId });
    // gst-launch prints the structure with its spaces escaped.
    const error = (await src.waitMessage(`peerjs-file-error, id=(string)${fileId}`))
      .replace(/\\ /g, ' ');
    const replies = await waitIn(page, `the pipeline's answer on ${name}'s channel`,
      (fileId) => (window.badReplies[fileId] || []).length && window.badReplies[fileId], fileId);
    note(`[src] ${name}: ${error.slice(error.indexOf('message='))}; it answered ${replies[0]}`, true);
    assert(!fs.existsSync(path.join(inbox, name)), `${name} is not in download-dir`);
    return { error, reply: JSON.parse(replies[0]) };
  };
  const start = '{"type":"file:start","id":"ID","name":"x","size":4,"mime":"text/plain","chunk":16384}';
  let r = await bad('early.txt', [[1, 2, 3, 4]]);
  assert(r.error.includes('data before file:start'), r.error);
  assertEqual(r.reply.type, 'file:cancel', 'the answer to bytes before file:start');
  r = await bad('long.txt', [start, [1, 2, 3, 4, 5, 6]]);
  assert(r.error.includes('more bytes than announced'), r.error);
  r = await bad('wrong.txt', [start, [1, 2, 3, 4],
    '{"type":"file:end","id":"ID","size":4,"sha256":"' + '0'.repeat(64) + '"}']);
  assert(r.error.includes('SHA-256 mismatch'), r.error);
  assertEqual(r.reply.type, 'file:error', 'the answer to a wrong SHA-256');
  r = await bad('garbled.txt', [start, 'not json at all']);
  assert(r.error.includes('unreadable'), r.error);

  // A channel for a file the pipeline never asked for: turned away.
  const unasked = await page.evaluate((srcId) => new Promise((resolve) => {
    const ch = peer._remote(srcId).pc.createDataChannel('file:nosuch:x', { ordered: true });
    ch.onmessage = (m) => resolve(m.data);
  }), srcId);
  assertEqual(JSON.parse(unasked).reason, 'not requested', 'the answer to an unasked channel');
  const leftovers = fs.readdirSync(inbox)
    .filter((f) => f !== 'from-page.bin' && f !== 'original.bin');
  assertEqual(leftovers, [], 'files in download-dir besides the good one');

  t.step('after all that, a good file still arrives');
  const sha2 = await makeFile(page, 'again.bin', 1024 * 1024);
  const id2 = await page.evaluate((room) => peer.offerFile(window.files['again.bin'],
    { thread: room }), ROOM);
  await src.waitMessage(`peerjs-file-complete, id=(string)${id2}`, 30000);
  assertEqual(sha256(path.join(inbox, 'again.bin')), sha2, 'SHA-256 of again.bin');
  await src.interrupt();
  assert(!/CRITICAL/.test(sink.output + src.output), 'no criticals from the pipelines');
  fs.rmSync(dir, { recursive: true, force: true });
}, { deadline: 90000 });
