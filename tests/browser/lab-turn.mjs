// Run by the network suite (tests/check/network.cpp) in a host of its lab,
// not by the browser suite: the demo page, opened at the lab server's
// address (PEERJS_LAB_URL, e.g. http://198.18.1.2:9001/), joins the room
// PEERJS_LAB_ROOM. What it does there is PEERJS_LAB_MODE's:
//   play     (the default) plays the video of the member PEERJS_LAB_MEMBER
//            (a peerjssink on a network with no route to this one: only the
//            TURN relay the server hands out in its greeting joins them);
//   publish  sends its fake camera (the page's origin counted as secure, as
//            a deployment with TLS would be) until the file PEERJS_LAB_DONE
//            exists: the network suite counts the frames a peerjssrc
//            decodes meanwhile;
//   publish-direct
//            the same, towards a pipeline the page reaches directly (no
//            relay asked for): the network suite conditions the pipeline's
//            link meanwhile;
//   file     says "in the room", then takes the first file offered with the
//            page's Download button and prints its size and SHA-256
//            (crypto.subtle: the origin counted as secure here too);
//   refused  waits for the notice the page shows when the TURN server
//            refuses the credentials of the greeting, and prints it;
//   invite   reads the invite and the camera notice of a page opened at a
//            non-loopback http address, and opens the invite in a second
//            page: both are in the room.
// play, publish and file print the candidate types (local/remote) of the
// pairs the page's connections chose, and fail unless each has a relay.
import fs from 'node:fs';
import {
  scenario, launchBrowser, openPage, cameraOn, videoPlays, waitIn,
  waitFor, record, note, assert, assertEqual,
} from './lib.mjs';

const URL_ = process.env.PEERJS_LAB_URL;
const ROOM = process.env.PEERJS_LAB_ROOM;
const MEMBER = process.env.PEERJS_LAB_MEMBER;
const MODE = process.env.PEERJS_LAB_MODE || 'play';
const DONE = process.env.PEERJS_LAB_DONE;

// The demo page at `url` (the lab server's address in ROOM unless said).
async function demo (browser, name = 'web', url = `${URL_}#${ROOM}`) {
  note(`-- the demo page at ${url}`, true);
  const page = await openPage(browser, { url }, name, { path: '' });
  page.peerId = await waitIn(page, 'peer.id on the demo page',
    () => window.peer && window.peer.id);
  await record(page);
  note(`[${name}] session id ${page.peerId}`, true);
  return page;
}

// The pairs that carry the page's connections: a relay on one side at least (the page may send from its host address
// to the other member's relay, which it reaches), never host to host.
async function relayPairs (page) {
  const pairs = await waitFor('the page\'s selected candidate pairs', () =>
    page.evaluate(async () => {
      const found = [];
      for (const pc of window.__pcs) {
        if (pc.connectionState !== 'connected')
          continue;
        const stats = await pc.getStats();
        for (const s of stats.values())
          if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated)
            found.push(`${stats.get(s.localCandidateId).candidateType}/`
              + `${stats.get(s.remoteCandidateId).candidateType}`);
      }
      return found.length ? found : false;
    }), 10000, 200);
  console.log(`lab-turn: web session ${page.peerId}, candidate pairs `
    + `${pairs.join(' ')}`);
  for (const p of pairs)
    assert(p.includes('relay'), `a pair that is not through the relay: ${p}`);
  return pairs;
}

// Chromium counting `origin` as secure, as it would over https: the camera
// and crypto.subtle at a non-loopback http address.
async function secureBrowser (origin) {
  return launchBrowser({ args: [`--unsafely-treat-insecure-origin-as-secure=${origin}`] });
}

scenario('lab-turn', async (t) => {
  assert(URL_ && ROOM, 'PEERJS_LAB_URL and PEERJS_LAB_ROOM must be set');
  const origin = new URL(URL_).origin;

  if (MODE === 'play') {
    assert(MEMBER, 'PEERJS_LAB_MEMBER must be set');
    const page = await demo(await launchBrowser());
    const played = Date.now();
    const size = await videoPlays(page, MEMBER, 'peerjssink', 20000);
    // The whole picture within seconds: the receiver already in the room
    // gets the top layer, so the page starts on the layer its first
    // budget allows and climbs as its estimate grows (docs/elements.md,
    // Layers); on this unlimited link it must reach the top.
    const sel = `[data-member="${MEMBER}"] video`;
    await waitIn(page, `${sel} at the pipeline's 320x240`, (sel) => {
      const v = document.querySelector(sel);
      return v && v.videoWidth === 320 && v.videoHeight === 240;
    }, sel, 15000);
    console.log(`lab-turn: first played at ${size.w}x${size.h}, 320x240 `
      + `${((Date.now() - played) / 1000).toFixed(1)} s after the page looked`);
    // One pair per member that reached the page: the publisher, and the
    // gst receiver in the room too.
    await relayPairs(page);
  } else if (MODE === 'publish' || MODE === 'publish-direct') {
    assert(MEMBER && DONE, 'PEERJS_LAB_MEMBER and PEERJS_LAB_DONE must be set');
    const page = await demo(await secureBrowser(origin));
    assert(await page.evaluate(() => window.isSecureContext),
      `${origin} is not a secure context in spite of the flag`);
    await cameraOn(page);
    await waitIn(page, `a connection to ${MEMBER}`, (m) =>
      window.peer._remote && window.peer._remote(m)
        && window.peer._remote(m).pc.connectionState === 'connected', MEMBER, 20000);
    if (MODE === 'publish')
      await relayPairs(page);
    console.log('lab-turn: publishing');
    await waitFor(`${DONE} (the network suite has counted its frames)`,
      () => fs.existsSync(DONE), 40000, 100);
  } else if (MODE === 'file') {
    const page = await demo(await secureBrowser(origin));
    await waitIn(page, `the page in ${ROOM}`, (room) =>
      window.peer.threads && window.peer.threads[room], ROOM);
    console.log(`lab-turn: in the room as ${page.peerId}`);
    const offer = await waitIn(page, 'a file offered in the room',
      () => {
        const b = document.querySelector('button.file-offer');
        return b ? b.dataset.fileId : false;
      }, undefined, 30000);
    await page.click(`button.file-offer[data-file-id="${offer}"]`);
    await waitIn(page, `the file ${offer} received whole`, (id) =>
      (window.__events || []).some((x) => x.name === 'file:complete' && x.e.id === id),
    offer, 30000);
    const got = await page.evaluate(async (id) => {
      const e = window.__events.find((x) => x.name === 'file:complete' && x.e.id === id).e;
      const buf = await e.blob.arrayBuffer();
      const digest = await crypto.subtle.digest('SHA-256', buf);
      return { name: e.name, size: buf.byteLength, from: e.from,
        sha256: Array.from(new Uint8Array(digest),
          (b) => b.toString(16).padStart(2, '0')).join('') };
    }, offer);
    console.log(`lab-turn: file ${got.name} from ${got.from}: ${got.size} bytes, `
      + `sha256 ${got.sha256}`);
    await relayPairs(page);
  } else if (MODE === 'refused') {
    // The page's own handler, there from its start: coturn answers within
    // milliseconds here, maybe before this script records events.
    const page = await demo(await launchBrowser());
    const notice = await waitIn(page, 'a notice naming the TURN server\'s refusal', () => {
      const n = document.querySelector('#notice');
      return !n.hidden && /TURN server/.test(n.textContent) ? n.textContent : false;
    }, undefined, 20000);
    console.log(`lab-turn: notice ${notice}`);
  } else if (MODE === 'invite') {
    const browser = await launchBrowser();
    const page = await demo(browser, 'opener');
    const seen = await page.evaluate(() => ({
      invite: document.querySelector('#share-link').textContent,
      href: document.querySelector('#share-link').href,
      secure: window.isSecureContext,
      notice: document.querySelector('#insecure').hidden ? ''
        : document.querySelector('#insecure').textContent,
      hint: !document.querySelector('#share-hint').hidden,
      camera: document.querySelector('#toggle-camera').disabled,
    }));
    console.log(`lab-turn: invite ${seen.invite}`);
    console.log(`lab-turn: notice ${seen.notice}`);
    assertEqual([seen.invite, seen.href, seen.secure, seen.hint, seen.camera],
      [`${URL_}#${ROOM}`, `${URL_}#${ROOM}`, false, false, true],
      'the page opened away from loopback: [invite text, its link, secure context, '
      + 'localhost hint, camera button disabled]');
    for (const words of ['blocked', origin, '--tls-cert', '--tls-key'])
      assert(seen.notice.includes(words), `the notice says '${words}': '${seen.notice}'`);

    t.step('a second page opens the invite: both are in the room');
    const guest = await demo(browser, 'guest', seen.invite);
    for (const [p, other] of [[guest, page.peerId], [page, guest.peerId]])
      await waitIn(p, `the tile of ${other}`, (id) =>
        document.querySelector(`[data-member="${id}"]`) !== null, other);
  } else {
    assert(false, `PEERJS_LAB_MODE ${MODE}: not play, publish, file, refused or invite`);
  }
});
