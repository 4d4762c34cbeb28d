// The original PeerJS demo page (/original.html: its README's code, only
// modernised where browsers removed APIs) between two pages, its code
// unchanged: chat; camera and microphone seen and heard at the other page;
// Mute and Picture (tracks taken out of peer.localmedia) take the audio
// and the video away at the other page and bring them back; moving to
// another thread and back, then Exit Thread and back, all by the URL
// hash; stopping the camera (the page stops its own tracks); a file
// offered, requested and sent the original way (file:offer, file:request
// and sendFile, with the original's id 0), with identical bytes.
import crypto from 'node:crypto';
import {
  scenario, Server, launchBrowser, openOriginal, waitIn, waitEvent, events,
  note, assert, assertEqual,
} from './lib.mjs';

const ROOM = 'orig-room';

// In the page: the video element the original's addVideoElement made for
// `member`'s latest stream (its id is the stream's id), described.
function tileOf (member) {
  const connects = (window.__events || []).filter((x) =>
    x.name === 'media:connect' && x.e.from === member);
  const last = connects[connects.length - 1];
  const v = last && document.getElementById(last.e.stream.id);
  if (!v)
    return null;
  const s = v.srcObject;
  const tracks = (kind) => (s ? s.getTracks().filter((t) => t.kind === kind) : [])
    .map((t) => `${t.readyState}${t.muted ? ',muted' : ''}`);
  return {
    id: v.id, video: tracks('video'), audio: tracks('audio'), stream: s && s.id,
    width: v.videoWidth, time: v.currentTime, paused: v.paused, muted: v.muted,
  };
}

// Waits until `page` shows `what` of `member`'s tile: `pred` is source
// text over `t` (tileOf's description).
async function tileIs (page, member, what, pred, timeout) {
  try {
    return await waitIn(page, what, ({ member, pred, tileOf }) => {
      const t = eval(`(${tileOf})`)(member);
      return t && new Function('t', `return (${pred});`)(t) ? t : false;
    }, { member, pred, tileOf: tileOf.toString() }, timeout);
  } catch (err) {
    const now = await page.evaluate(({ member, tileOf }) => eval(`(${tileOf})`)(member),
      { member, tileOf: tileOf.toString() });
    err.message += `; the tile now: ${JSON.stringify(now)}`;
    throw err;
  }
}

// `member`'s video plays on `page`: a frame size and its time moving on.
async function plays (page, member, name) {
  const first = await tileIs(page, member, `${name}'s video to play (videoWidth > 0)`,
    "t.video.length === 1 && t.video[0] === 'live' && t.width > 0 && !t.paused", 20000);
  const moving = await tileIs(page, member, `${name}'s video time to move on`,
    `t.time > ${first.time} + 0.3`);
  note(`[${page.name}] ${name}'s video plays at width ${moving.width}`, true);
  return moving;
}

// `member`'s audio is heard on `page`: one live, unmuted audio track in the
// stream of an element that plays unmuted, and audio packets coming in.
async function hears (page, member, name) {
  await tileIs(page, member, `a live audio track of ${name} in its tile`,
    "t.audio.length === 1 && t.audio[0] === 'live' && !t.paused && !t.muted");
  const packets = () => page.evaluate(async () => {
    let n = 0;
    for (const pc of window.__pcs || []) {
      if (pc.connectionState !== 'connected')
        continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio')
          n += r.packetsReceived || 0;
      });
    }
    return n;
  });
  const before = await packets();
  const deadline = Date.now() + 5000;
  let after = before;
  while (after <= before && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    after = await packets();
  }
  assert(after > before, `${page.name}: audio packets received from ${name} went on `
    + `(${before} then ${after})`);
}

// The text of the page's message box (the original's <pre>).
const box = (page) => page.evaluate(() => document.getElementById('pre').textContent);

scenario('original', async (t) => {
  const server = await Server.start();
  const browser = await launchBrowser();
  const a = await openOriginal(browser, server, 'A', ROOM);
  const b = await openOriginal(browser, server, 'B', ROOM);
  const [A, B] = [a.peerId, b.peerId];
  for (const [p, other] of [[a, B], [b, A]]) {
    const c = await waitIn(p, 'the other page in peer.threads[room].members',
      ({ room, other }) => peer.threads[room] && peer.threads[room].members[other],
      { room: ROOM, other });
    assertEqual(c, { video: true }, `${p.name}: the other's constraints`);
    assertEqual(p.httpErrors, [], `${p.name}: HTTP errors loading /original.html`);
  }

  t.step('chat: A writes, B reads; B answers');
  await a.fill('form.msg input[name=input]', 'hello from A');
  await a.press('form.msg input[name=input]', 'Enter');
  await waitIn(b, 'A\'s message in B\'s box', (line) =>
    document.getElementById('pre').textContent.includes(line),
  `hello from A (thread:${ROOM},from:${A})`);
  await b.fill('form.msg input[name=input]', 'hello from B');
  await b.press('form.msg input[name=input]', 'Enter');
  await waitIn(a, 'B\'s message in A\'s box', (line) =>
    document.getElementById('pre').textContent.includes(line),
  `hello from B (thread:${ROOM},from:${B})`);
  assertEqual(await box(a), `hello from A (thread:${ROOM})\n`
    + `hello from B (thread:${ROOM},from:${B})\n`, 'A\'s message box');

  t.step('Toggle User Media on both: each sees and hears the other');
  // The room was joined with {video:true} alone: audio follows video.
  await a.click('text=Toggle User Media');
  await b.click('text=Toggle User Media');
  for (const p of [a, b]) {
    await waitIn(p, 'its own camera in #myvideo', () => {
      const v = document.getElementById('myvideo');
      return v.srcObject === peer.localmedia && v.videoWidth > 0;
    });
  }
  await Promise.all([[a, B, 'B'], [b, A, 'A']].map(async ([p, m, name]) => {
    await plays(p, m, name);
    await hears(p, m, name);
  }));

  t.step('A mutes: B loses A\'s audio track, keeps its video; A unmutes');
  await a.click('text=Mute');
  await tileIs(b, A, 'A\'s audio track to leave its stream at B', 't.audio.length === 0');
  await plays(b, A, 'A (muted)');
  await a.click('text=Mute');
  await hears(b, A, 'A (unmuted)');

  t.step('A hides its picture: B loses A\'s video, keeps its audio; A shows it again');
  await a.click('text=Picture');
  await tileIs(b, A, 'A\'s video track to leave its stream at B', 't.video.length === 0');
  await hears(b, A, 'A (picture hidden)');
  await a.click('text=Picture');
  await plays(b, A, 'A (picture back)');

  t.step('A moves to another thread by the hash: no media in the room, audio included');
  await a.evaluate(() => { location.hash = 'orig-elsewhere'; });
  const moved = await waitIn(b, 'A\'s constraints in the room to change',
    ({ room, A }) => {
      const c = peer.threads[room].members[A];
      return c && c.video === false ? c : false;
    }, { room: ROOM, A });
  assertEqual(moved, { video: false }, 'A\'s constraints in the room at B');
  await waitEvent(b, 'media:disconnect', `e.from === '${A}'`);
  await tileIs(b, A, 'A\'s tracks to leave its stream at B',
    't.video.length === 0 && t.audio.length === 0');
  await a.evaluate((room) => { location.hash = room; }, ROOM);
  await waitEvent(b, 'media:connect', `e.from === '${A}'`, { count: 2 });
  await plays(b, A, 'A (back)');
  await hears(b, A, 'A (back)');

  t.step('A exits the thread (empty hash), then comes back by the hash');
  await a.click('text=Exit Thread');
  await waitEvent(b, 'thread:disconnect', `e.from === '${A}' && e.thread === '${ROOM}'`);
  await waitIn(b, 'A gone from the room\'s members', ({ room, A }) =>
    !peer.threads[room].members[A], { room: ROOM, A });
  await waitEvent(b, 'media:disconnect', `e.from === '${A}'`, { count: 2 });
  await a.evaluate((room) => { location.hash = room; }, ROOM);
  await waitIn(b, 'A back in the room\'s members', ({ room, A }) =>
    peer.threads[room].members[A], { room: ROOM, A });
  await waitEvent(b, 'media:connect', `e.from === '${A}'`, { count: 3 });
  await waitEvent(a, 'media:connect', `e.from === '${B}'`, { count: 2 });
  await Promise.all([[a, B, 'B'], [b, A, 'A']].map(async ([p, m, name]) => {
    await plays(p, m, `${name} (rejoined)`);
    await hears(p, m, `${name} (rejoined)`);
  }));

  t.step('A stops its camera (Toggle User Media stops the tracks)');
  await a.click('text=Toggle User Media');
  await waitEvent(a, 'localmedia:disconnect', 'true', { timeout: 3000 });
  assert(await a.evaluate(() => peer.localmedia === null
    && document.getElementById('myvideo').srcObject === null),
  'A: peer.localmedia and #myvideo emptied after localmedia:disconnect');
  await waitEvent(b, 'media:disconnect', `e.from === '${A}'`, { count: 3 });
  await tileIs(b, A, 'A\'s tracks to leave its stream at B',
    't.video.length === 0 && t.audio.length === 0');
  t.step('A starts its camera again');
  await a.click('text=Toggle User Media');
  await waitEvent(b, 'media:connect', `e.from === '${A}'`, { count: 4 });
  await plays(b, A, 'A (camera again)');
  await hears(b, A, 'A (camera again)');

  t.step('a file the original way: file:offer, file:request, sendFile');
  const bytes = crypto.randomBytes(300 * 1024 + 7);
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  await a.setInputFiles('input[type=file]', { name: 'original.bin',
    mimeType: 'application/octet-stream', buffer: bytes });
  const offer = await waitEvent(b, 'file:offer', `e.from === '${A}'`);
  assertEqual([offer.name, offer.id, offer.thread], ['original.bin', 0, ROOM],
    'the offer B got [name, id, thread]');
  // The original's link in the message box asks for it.
  await b.click('#pre a:text-is("original.bin")');
  const done = await waitEvent(b, 'file:complete', `e.from === '${A}'`, { timeout: 20000 });
  assertEqual([done.id, done.name, done.size], ['0', 'original.bin', bytes.length],
    'file:complete at B [id, name, size]');
  const got = await b.evaluate(async () => {
    const e = window.__events.find((x) => x.name === 'file:complete').e;
    const buf = await e.blob.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', buf);
    return { size: buf.byteLength, sha256: Array.from(new Uint8Array(digest),
      (x) => x.toString(16).padStart(2, '0')).join(''), reported: e.sha256 };
  });
  assertEqual(got, { size: bytes.length, sha256, reported: sha256 },
    'the bytes B received [size, SHA-256, file:complete sha256]');
  const progress = await events(b, 'file:progress', `e.from === '${A}'`);
  assert(progress.length > 0 && progress[progress.length - 1].received === bytes.length,
    `B's file:progress reached the size: ${JSON.stringify(progress.slice(-1))}`);
  const sent = await waitEvent(a, 'file:sent', `e.to === '${B}'`);
  assertEqual([sent.id, sent.size], ['0', bytes.length], 'file:sent at A [id, size]');
  assertEqual(await events(a, 'file:error'), [], 'file:error events at A');
  assertEqual(await events(b, 'file:error'), [], 'file:error events at B');
}, { deadline: 60000 });
