// Run by the network suite (tests/check/network.cpp) in a host of its lab,
// not by the browser suite: the demo page, opened at the lab server's
// address (PEERJS_LAB_URL, e.g. http://198.18.1.2:9001/), joins the room
// PEERJS_LAB_ROOM and must play the video of the member PEERJS_LAB_MEMBER
// (a peerjssink on a network with no route to this one: only the TURN
// relay the server hands out in its greeting joins them). Prints the
// candidate types (local/remote) of the pairs its connections chose.
import {
  scenario, launchBrowser, openPage, videoPlays, waitIn, waitFor, record, note,
  assert, assertEqual,
} from './lib.mjs';

const URL = process.env.PEERJS_LAB_URL;
const ROOM = process.env.PEERJS_LAB_ROOM;
const MEMBER = process.env.PEERJS_LAB_MEMBER;

scenario('lab-turn', async (t) => {
  assert(URL && ROOM && MEMBER,
    'PEERJS_LAB_URL, PEERJS_LAB_ROOM and PEERJS_LAB_MEMBER must be set');
  const browser = await launchBrowser();
  t.step(`the demo page at ${URL}#${ROOM}`);
  const page = await openPage(browser, { url: URL }, 'web', { path: `/#${ROOM}` });
  page.peerId = await waitIn(page, 'peer.id on the demo page',
    () => window.peer && window.peer.id);
  await record(page);
  note(`[web] session id ${page.peerId}`, true);
  const size = await videoPlays(page, MEMBER, 'peerjssink', 20000);
  assertEqual(size, { w: 320, h: 240 }, 'the pipeline\'s picture size in the page');
  // The pairs that carry the media (one per member that reached the page:
  // the publisher, and the gst receiver in the room too): a relay on one
  // side at least (the page may send from its host address to the other
  // member's relay, which it reaches), never host to host.
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
});
