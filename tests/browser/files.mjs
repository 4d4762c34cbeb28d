// Files: a 5 MB random file offered to a thread arrives whole (SHA-256 of
// the received bytes equals the original's); a sender that closes its page
// mid-transfer gives the receiver file:error.
import {
  scenario, Server, launchBrowser, openPeer, waitEvent, events, within,
  assert, assertEqual, note,
} from './lib.mjs';

const SIZE = 5 * 1024 * 1024;

// In the page: a File of `size` random bytes (or zeros, without a hash),
// and its SHA-256.
async function makeFile (page, name, size, random = true) {
  return page.evaluate(async ({ name, size, random }) => {
    const bytes = new Uint8Array(size);
    let sha256 = null;
    if (random) {
      for (let o = 0; o < size; o += 65536)
        crypto.getRandomValues(bytes.subarray(o, Math.min(size, o + 65536)));
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      sha256 = Array.from(new Uint8Array(digest),
        (b) => b.toString(16).padStart(2, '0')).join('');
    }
    const file = new File([bytes], name, { type: 'application/octet-stream' });
    window.files = window.files || {};
    window.files[name] = file;
    return { size: file.size, sha256 };
  }, { name, size, random });
}

async function join (pages, thread) {
  for (const p of pages)
    await p.evaluate((thread) => void peer.thread(thread, {}), thread);
  for (const p of pages)
    for (const q of pages)
      if (p !== q)
        await waitEvent(p, 'thread:connect', `e.from === '${q.peerId}' && e.thread === '${thread}'`);
}

scenario('files', async (t) => {
  const server = await Server.start();
  const browser = await launchBrowser();
  const [a, b] = await Promise.all([openPeer(browser, server, 'A'),
    openPeer(browser, server, 'B')]);
  const [A, B] = [a.peerId, b.peerId];
  await join([a, b], 'files');

  t.step('A offers a 5 MB random file to the thread; B requests it');
  const original = await makeFile(a, 'random.bin', SIZE);
  assertEqual(original.size, SIZE, 'size of the file made in A');
  // B requests every offer as it arrives.
  await b.evaluate(() => void peer.on('file:offer', (e) => peer.requestFile(e)));
  const started = Date.now();
  const id = await a.evaluate(() => peer.offerFile(window.files['random.bin'],
    { thread: 'files' }));
  assert(typeof id === 'string' && id.length > 0, `offerFile returned an id: ${id}`);
  const offer = await waitEvent(b, 'file:offer', `e.id === '${id}'`);
  assertEqual([offer.from, offer.name, offer.size, offer.thread],
    [A, 'random.bin', SIZE, 'files'], 'the offer B got [from, name, size, thread]');

  const done = await waitEvent(b, 'file:complete', `e.id === '${id}'`,
    { timeout: 30000 });
  note(`5 MB file received in ${Date.now() - started} ms`, true);
  assertEqual([done.from, done.name, done.size], [A, 'random.bin', SIZE],
    'file:complete at B [from, name, size]');
  const received = await b.evaluate(async (id) => {
    const e = window.__events.find((x) => x.name === 'file:complete' && x.e.id === id).e;
    const buf = await e.blob.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', buf);
    return { size: buf.byteLength, sha256: Array.from(new Uint8Array(digest),
      (b) => b.toString(16).padStart(2, '0')).join(''), reported: e.sha256 };
  }, id);
  assertEqual(received.size, SIZE, 'bytes in the received blob');
  assertEqual(received.sha256, original.sha256, 'SHA-256 of the received bytes');
  assertEqual(received.reported, original.sha256, 'sha256 field of file:complete');
  const progress = await events(b, 'file:progress', `e.id === '${id}'`);
  assert(progress.length > 0, 'B got file:progress while receiving');
  assert(progress.every((p) => p.from === A && p.size === SIZE
    && p.received > 0 && p.received <= SIZE),
  `B's file:progress events are {from: A, received <= size}: ${JSON.stringify(progress.slice(0, 3))}`);
  const sent = await waitEvent(a, 'file:sent', `e.id === '${id}'`);
  assertEqual(sent.to, B, 'file:sent at A: to');
  assertEqual(await events(b, 'file:error'), [], 'file:error events at B');

  t.step('a sender that closes its page mid-transfer');
  const c = await openPeer(browser, server, 'C');
  const C = c.peerId;
  await join([b, c], 'files2');
  // Big enough to still be going when C's page closes: the close follows
  // B's first file:progress by a few milliseconds.
  await makeFile(c, 'big.bin', 32 * 1024 * 1024, false);
  let firstProgress;
  const progressed = new Promise((resolve) => { firstProgress = resolve; });
  await b.exposeFunction('firstProgress', (e) => firstProgress(e));
  await b.evaluate((C) => void peer.on('file:progress', (e) => {
    if (e.from === C && !window.progressed) {
      window.progressed = true;
      window.firstProgress({ received: e.received, size: e.size });
    }
  }), C);
  const id2 = await c.evaluate(() => peer.offerFile(window.files['big.bin'],
    { thread: 'files2' }));
  const first = await within('B\'s first file:progress from C', progressed);
  note(`B's first progress: ${first.received} of ${first.size} bytes`, true);
  // For the timeline: whether C's unload handlers ran (this one runs after
  // peer.js's, which ends the session).
  await c.evaluate(() => addEventListener('beforeunload',
    () => console.log('beforeunload handlers ran')));
  // Closed as a user closes a tab: the page's unload handlers run.
  const closedAt = Date.now();
  const closed = new Promise((resolve) => c.once('close', resolve));
  await c.close({ runBeforeUnload: true });
  await within('C\'s page to close', closed, 5000);
  // "Within a few seconds": 10 at most.
  const err = await waitEvent(b, 'file:error', `e.id === '${id2}'`, { timeout: 10000,
    what: 'file:error at B after the sender closed its page' }).catch(async (e) => {
    // What B heard about C after the close, if anything.
    const heard = await b.evaluate(({ C, closedAt }) => window.__events
      .filter((x) => x.wall >= closedAt && x.e && (x.e.from === C || x.e.to === C)
        && x.name !== 'file:progress')
      .map((x) => `${x.name} +${x.wall - closedAt} ms`), { C, closedAt });
    e.message += `; B's events about C since the close: ${heard.join(', ') || 'none'}`;
    throw e;
  });
  const took = Date.now() - closedAt;
  note(`file:error at B ${took} ms after C closed: ${err.message}`, true);
  assertEqual(err.from, C, 'file:error at B: from');
  assert(typeof err.message === 'string' && err.message.length > 0,
    `file:error has a message: ${JSON.stringify(err)}`);
  assertEqual(await events(b, 'file:complete', `e.id === '${id2}'`), [],
    'file:complete at B for the broken transfer');
});
