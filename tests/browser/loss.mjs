// Pipelines and a page under 10 % UDP loss (nftables on loopback, in the
// scenario's own network namespace): each side asks the other for lost
// video packets (NACK) and key frames (PLI), and each answers with RTX and
// key frames. What Chromium counts shows that both directions work with it:
// a peerjssink's video reaches the page, the page's camera reaches a
// peerjssrc. The elements' do-fec is on (the default): red and ulpfec are
// negotiated for video both ways, Chromium plays what peerjssink wraps in
// RED (with ULPFEC packets once the page reports loss), and peerjssrc
// decodes what the page sends. Once the page reports loss, peerjssink asks
// it to hold each frame long enough for a retransmission (the
// playout-delay RTP header extension), and Chromium does.
import { execFileSync } from 'node:child_process';
import {
  scenario, Server, launchBrowser, openDemo, cameraOn, videoPlays, waitFor,
  note, assert, sleep,
} from './lib.mjs';
import { Pipeline } from './gst.mjs';

const ROOM = 'loss-room';
const LOSSY_MS = 8000;
const TABLE = 'peerjs_loss';

const nft = (...args) => execFileSync('nft', args, { stdio: ['ignore', 'pipe', 'pipe'] });

function lossOn (percent) {
  nft('add', 'table', 'inet', TABLE);
  nft('add', 'chain', 'inet', TABLE, 'out',
    '{ type filter hook output priority 0 ; }');
  nft('add', 'rule', 'inet', TABLE, 'out', 'meta', 'l4proto', 'udp',
    'numgen', 'random', 'mod', '100', '<', String(percent), 'drop');
  note(`[nft] ${percent} % of UDP dropped`, true);
}

function lossOff () {
  try {
    nft('delete', 'table', 'inet', TABLE);
    note('[nft] loss off', true);
  } catch (e) {
    // Not there: nothing to take away.
  }
}

// Chromium's video RTP statistics, summed over the page's connections.
const videoStats = (page) => page.evaluate(async () => {
  const sum = { in: {}, out: {} };
  const add = (to, r, fields) => {
    for (const f of fields)
      to[f] = (to[f] || 0) + (r[f] || 0);
  };
  for (const pc of window.__pcs || []) {
    if (pc.connectionState !== 'connected')
      continue;
    (await pc.getStats()).forEach((r) => {
      if (r.kind !== 'video')
        return;
      if (r.type === 'inbound-rtp')
        add(sum.in, r, ['packetsReceived', 'packetsLost', 'nackCount', 'pliCount',
          'firCount', 'retransmittedPacketsReceived', 'framesDecoded',
          'fecPacketsReceived', 'fecPacketsDiscarded', 'jitterBufferEmittedCount',
          'jitterBufferDelay']);
      else if (r.type === 'outbound-rtp')
        add(sum.out, r, ['packetsSent', 'nackCount', 'pliCount', 'firCount',
          'retransmittedPacketsSent', 'framesEncoded']);
    });
  }
  return sum;
});

// The video m-lines of the page's connections, local and remote.
const videoSdp = (page) => page.evaluate(() => (window.__pcs || [])
  .filter((pc) => pc.connectionState === 'connected')
  .flatMap((pc) => [pc.localDescription, pc.remoteDescription])
  .map((d) => (d && d.sdp.split('m=').find((m) => m.startsWith('video'))) || ''));

// The last value of a peerjs-stats field a pipeline printed (-m) about
// `member`; 0 when none did yet.
function lastStat (pipeline, member, field) {
  const lines = pipeline.output.split('\n').filter((l) =>
    l.includes(`peerjs-stats, member=(string)${member},`));
  const m = lines.length
    ? lines[lines.length - 1].match(new RegExp(`${field}=\\(u?int(?:64)?\\)(\\d+)`))
    : null;
  return m ? Number(m[1]) : 0;
}

scenario('loss', async (t) => {
  const server = await Server.start();
  const ws = `ws://127.0.0.1:${server.port}/peerjs`;

  t.step('a peerjssink publishes, a page with its camera and a peerjssrc join');
  const sink = Pipeline.launch('sink', [
    'peerjssink', `server=${ws}`, `thread=${ROOM}`, 'name=s', 'stats-interval=500',
    'videotestsrc', 'is-live=true', 'pattern=snow', '!',
    'video/x-raw,width=320,height=240,framerate=15/1', '!', 's.video',
  ]);
  const sinkId = await sink.sessionId();
  const browser = await launchBrowser();
  const page = await openDemo(browser, server, 'B', ROOM);
  await cameraOn(page);
  await videoPlays(page, sinkId, 'peerjssink');
  const src = Pipeline.launch('src', [
    'peerjssrc', `server=${ws}`, `thread=${ROOM}`, 'name=r', 'stats-interval=500',
    'r.', '!', 'video/x-raw', '!', 'queue', '!', 'fakesink', 'name=video-out',
    'silent=false', 'sync=false',
  ]);
  await src.sessionId();
  await src.waitMessage(`peerjs-media-connect, member=(string)${page.peerId}, kind=(string)video`);
  await waitFor('30 decoded frames of the page\'s camera at peerjssrc',
    () => src.count('(video-out:sink)') >= 30, 20000);

  t.step('red and ulpfec are negotiated for video with the page, both ways');
  const sdps = await videoSdp(page);
  assert(sdps.length >= 4, `the page has ${sdps.length / 2} connections, wanted 2`);
  for (const m of sdps) {
    assert(/ red\/90000/.test(m) && / ulpfec\/90000/.test(m),
      `red and ulpfec in every video m-line: ${m.slice(0, 400)}`);
  }

  t.step(`10 % of UDP lost for ${LOSSY_MS / 1000} s`);
  const recoveredBefore = lastStat(src, page.peerId, 'fec-packets-recovered');
  const before = await videoStats(page);
  const framesBefore = src.count('(video-out:sink)');
  // From the first report of loss, peerjssink asks the page to hold its
  // frames (playout-delay), rising to it at 100 ms a second: what
  // Chromium counts from then on, once the least asked stopped rising (the
  // same in stats 700 ms apart; they come every 500 ms).
  let held = 0, heldFrom = null, delayAsked = 0, delayAskedSince = 0;
  const rising = [];  // what was asked until then, in turn
  lossOn(10);
  try {
    for (const t0 = Date.now(); Date.now() - t0 < LOSSY_MS;) {
      await sleep(250);
      const now = lastStat(sink, page.peerId, 'playout-delay');
      if (now !== delayAsked) {
        if (now > 0 && !heldFrom)
          rising.push(now);
        delayAsked = now;
        delayAskedSince = Date.now();
      } else if (!heldFrom && delayAsked > 0 && Date.now() - delayAskedSince >= 700) {
        held = delayAsked;
        heldFrom = await videoStats(page);
      }
    }
  } finally {
    lossOff();
  }
  const after = await videoStats(page);
  const frames = src.count('(video-out:sink)') - framesBefore;
  const delta = (side, f) => (after[side][f] || 0) - (before[side][f] || 0);
  note(`[B] under loss, from peerjssink: ${JSON.stringify(Object.fromEntries(
    Object.keys(after.in).map((f) => [f, delta('in', f)])))}`, true);
  note(`[B] under loss, to peerjssrc: ${JSON.stringify(Object.fromEntries(
    Object.keys(after.out).map((f) => [f, delta('out', f)])))}`, true);
  note(`[src] ${frames} frames of the page's camera decoded under loss, `
    + `${lastStat(src, page.peerId, 'fec-packets-recovered') - recoveredBefore} `
    + 'packets recovered from its FEC', true);
  note(`[sink] ULPFEC to the page at ${lastStat(sink, page.peerId, 'fec-percentage')} % `
    + 'at the end of the loss', true);

  t.step('the page asked peerjssink for lost packets, got them again, and played on');
  assert(delta('in', 'nackCount') > 0, 'the page sent NACKs to peerjssink');
  assert(lastStat(sink, page.peerId, 'fec-percentage') > 0,
    'peerjssink sends the page ULPFEC since it reported loss');
  assert(delta('in', 'retransmittedPacketsReceived') > 0,
    'the page received retransmitted packets from peerjssink (RTX on the SSRC '
    + 'the SDP gave)');
  // 120 frames were sent (8 s at 15 a second); without retransmission
  // Chromium waits for a key frame that loss hits too, and shows a handful.
  assert(delta('in', 'framesDecoded') >= 60,
    `the page decoded ${delta('in', 'framesDecoded')} of peerjssink's 120 frames`);

  t.step('peerjssink asked the page to hold its frames for retransmissions, and it did');
  const pairs = [];
  for (let i = 0; i + 1 < sdps.length; i += 2)
    pairs.push(sdps.slice(i, i + 2));
  assert(pairs.some((p) => p.every((m) => m.includes('/playout-delay'))),
    'the playout-delay extension in the offer and answer of peerjssink and the page');
  assert(held > 0 && heldFrom, 'peerjssink asked for no steady playout delay '
    + `under loss (the last asked: ${delayAsked} ms)`);
  // A least raised in one step stops Chromium's picture for that long.
  assert(rising.some((ms) => ms < held), 'the playout delay asked rose to '
    + `${held} ms in one step (${rising.join(', ')} ms)`);
  // Chromium holds a frame 10 to 30 ms on loopback of its own.
  const heldFrames = after.in.jitterBufferEmittedCount - heldFrom.in.jitterBufferEmittedCount;
  const kept = heldFrames > 0 ? 1000 * (after.in.jitterBufferDelay
    - heldFrom.in.jitterBufferDelay) / heldFrames : 0;
  note(`[B] asked to hold frames ${rising.join(', ')} ms in turn`, true);
  note(`[B] asked to hold frames ${held} ms: held them ${kept.toFixed(0)} ms `
    + `on average (${heldFrames} frames)`, true);
  assert(kept >= 0.8 * held, `the page held peerjssink's frames `
    + `${kept.toFixed(0)} ms on average, asked for ${held} ms`);

  t.step('peerjssrc asked the page for lost packets or key frames');
  // The page's own video sometimes loses next to nothing in the window
  // (a few packets of a few hundred): then the loss goes on, for at most
  // LOSSY_MS more, until peerjssrc has something to ask for.
  const asked = (stats) => (stats.out.nackCount || 0) + (stats.out.pliCount || 0)
    - (before.out.nackCount || 0) - (before.out.pliCount || 0);
  let requests = asked(after);
  if (requests === 0) {
    note('[B] no NACK or PLI from peerjssrc yet: the loss goes on', true);
    lossOn(10);
    try {
      for (let waited = 0; requests === 0 && waited < LOSSY_MS; waited += 500) {
        await sleep(500);
        requests = asked(await videoStats(page));
      }
    } finally {
      lossOff();
    }
  }
  assert(requests > 0, 'the page received NACKs or PLIs from peerjssrc');
  assert(frames > 0, 'peerjssrc decoded frames of the page under loss');

  await src.interrupt();
  await sink.interrupt();
  assert(!/CRITICAL|ERROR:/.test(sink.output + src.output),
    'no criticals or errors from the pipelines');
}, { deadline: 90000 });
