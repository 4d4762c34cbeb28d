// Camera video between three demo pages in one room; Mute takes the audio
// away at the others (the track leaves the remote stream, as
// docs/protocol.md says), and Unmute brings it back; Exit thread removes
// the member's tile at the others.
import {
  scenario, Server, launchBrowser, openDemo, cameraOn, videoPlays, waitIn,
  note, assert, assertEqual,
} from './lib.mjs';

const ROOM = 'media-room';

// The audio of `member`'s stream as `page` sees it: tracks in the remote
// stream that are live and not muted.
async function remoteAudio (page, member) {
  return page.evaluate((member) => {
    const v = document.querySelector(`[data-member="${member}"] video`);
    const s = v && v.srcObject;
    if (!s)
      return null;
    return s.getAudioTracks().map((t) => ({ state: t.readyState, muted: t.muted }));
  }, member);
}

scenario('media', async (t) => {
  const server = await Server.start();
  const browser = await launchBrowser();
  const pages = await Promise.all(['A', 'B', 'C'].map((name) =>
    openDemo(browser, server, name, ROOM)));
  const [a, b, c] = pages;

  t.step('cameras on; every page sees the two others play');
  await Promise.all(pages.map(cameraOn));
  await Promise.all(pages.flatMap((p) => pages.filter((q) => q !== p)
    .map((q) => videoPlays(p, q.peerId, q.name))));
  for (const p of pages) {
    assertEqual(p.httpErrors, [], `${p.name}: HTTP errors loading the demo page`);
    const tiles = await p.evaluate(() => [...document.querySelectorAll('#members [data-member]')]
      .map((el) => el.dataset.member).sort());
    assertEqual(tiles, pages.filter((q) => q !== p).map((q) => q.peerId).sort(),
      `${p.name}: member tiles in #members`);
  }

  t.step('A mutes: the others lose A\'s audio, keep its video');
  for (const p of [b, c]) {
    const audio = await remoteAudio(p, a.peerId);
    assertEqual(audio, [{ state: 'live', muted: false }],
      `${p.name}: A's audio tracks before Mute`);
  }
  await a.click('#toggle-mute');
  await Promise.all([b, c].map(async (p) => {
    // docs/protocol.md: "The other side sees the track leave the remote
    // stream."
    await waitIn(p, 'A\'s audio track to leave A\'s stream (getAudioTracks() empty)',
      (member) => {
        const v = document.querySelector(`[data-member="${member}"] video`);
        return v && v.srcObject && v.srcObject.getAudioTracks().length === 0;
      }, a.peerId).catch(async (err) => {
      err.message += `; A's audio tracks at ${p.name} now: `
        + JSON.stringify(await remoteAudio(p, a.peerId));
      throw err;
    });
    const seen = 'removed from the stream';
    note(`[${p.name}] A's audio after Mute: ${seen}`, true);
    // Video goes on.
    await p.evaluate(() => { window.__started = {}; });
    await videoPlays(p, a.peerId, 'A (muted)');
  }));
  // B's own audio still reaches C: the mute was A's alone.
  assertEqual(await remoteAudio(c, b.peerId), [{ state: 'live', muted: false }],
    'C: B\'s audio tracks after A muted');

  t.step('A unmutes: the others get A\'s audio back');
  await a.click('#toggle-mute');
  await Promise.all([b, c].map((p) =>
    waitIn(p, 'a live, unmuted audio track of A again', (member) => {
      const v = document.querySelector(`[data-member="${member}"] video`);
      const tracks = v && v.srcObject ? v.srcObject.getAudioTracks() : [];
      return tracks.length === 1 && tracks[0].readyState === 'live' && !tracks[0].muted;
    }, a.peerId)));

  t.step('A exits the thread: its tile goes from the others');
  await a.click('#exit-thread');
  await Promise.all([b, c].map((p) =>
    waitIn(p, 'A\'s tile to go', (member) =>
      !document.querySelector(`[data-member="${member}"]`), a.peerId)));
  // B and C still see each other.
  await Promise.all([[b, c], [c, b]].map(async ([p, q]) => {
    await p.evaluate(() => { window.__started = {}; });
    await videoPlays(p, q.peerId, q.name);
  }));
  const left = await a.evaluate(() => document.querySelectorAll('#members [data-member]').length);
  assertEqual(left, 0, 'A: member tiles after leaving');
  assert(!(await a.evaluate((room) => {
    const t = window.peer.threads[room];
    return t && t.constraints !== false;
  }, ROOM)), 'A is no longer in the thread after Exit thread');
});
