// The demo page with two members, both on the fake camera, a chat line and
// a file offer: a PNG of it in $PEERJS_ARTIFACTS/demo-two-members.png.
import fs from 'node:fs';
import path from 'node:path';
import {
  scenario, Server, launchBrowser, openDemo, cameraOn, videoPlays, waitIn,
  ARTIFACTS, note, assert, assertEqual,
} from './lib.mjs';

const ROOM = 'two-members';
const OUT = path.join(ARTIFACTS, 'demo-two-members.png');

scenario('screenshot', async (t) => {
  const server = await Server.start();
  const browser = await launchBrowser();
  const [a, b] = await Promise.all(['A', 'B'].map((name) =>
    openDemo(browser, server, name, ROOM)));

  t.step('cameras on; both see each other play');
  await Promise.all([a, b].map(cameraOn));
  await Promise.all([videoPlays(a, b.peerId, 'B'), videoPlays(b, a.peerId, 'A')]);
  // The self view plays too.
  await waitIn(a, 'A\'s own video (#local-video) to play', () => {
    const v = document.querySelector('#local-video');
    return v && !v.paused && v.videoWidth > 0;
  });

  t.step('B says hello through the chat form; B offers a file');
  await b.fill('#chat-input', 'Hello from B!');
  await b.press('#chat-input', 'Enter');
  await waitIn(a, 'B\'s chat line in #chat on A', () =>
    [...document.querySelectorAll('#chat li')].some((li) => li.textContent.includes('Hello from B!')));
  await b.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain',
    buffer: Buffer.from('peerjs demo notes\n'.repeat(100)) });
  await waitIn(a, 'B\'s file offer (.file-offer[data-file-id]) on A', () =>
    document.querySelector('.file-offer[data-file-id]'));
  assertEqual(a.httpErrors, [], 'A: HTTP errors loading the demo page');

  t.step(`screenshot of A to ${OUT}`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.rmSync(OUT, { force: true });
  await a.screenshot({ path: OUT });
  const png = fs.readFileSync(OUT);
  assertEqual(png.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
  const [w, h] = [png.readUInt32BE(16), png.readUInt32BE(20)];
  assertEqual([w, h], [1280, 800], 'PNG size (the viewport)');
  // A picture with two live videos is tens of kilobytes at least; a blank
  // page is a few.
  assert(png.length > 30000, `${OUT} is ${png.length} bytes: too small to show two videos`);
  note(`wrote ${OUT}: ${w}x${h}, ${png.length} bytes`, true);
});
