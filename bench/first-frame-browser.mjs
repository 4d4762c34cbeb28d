/* Time to the first frame between pipelines and browsers, in one run, each
 * figure the median of ROUNDS:
 *   gst->browser   a peerjssink pipeline is started next to a page already in
 *                  the room: from "Setting pipeline to PLAYING" to the page's
 *                  first video frame (requestVideoFrameCallback)
 *   browser->gst   a peerjssrc pipeline is started next to a page sending its
 *                  fake camera: from PLAYING to the first decoded buffer at
 *                  the pipeline's fakesink
 *   browser->browser (the peer) a page joins next to a page sending its
 *                  camera: from peer.init() to its first video frame
 * Every start includes connecting to the server, joining the room,
 * negotiating and ICE. 320x240 at 30 fps; the pipelines use latency=30, the
 * elements' default. Run it in a loopback-only network namespace, with the
 * plugin on GST_PLUGIN_PATH:
 *   unshare --net sh -c 'ip link set lo up && \
 *     GST_PLUGIN_PATH=build/gst/peerjs node bench/first-frame-browser.mjs [ROUNDS]'
 * Prints one JSON line per measurement, then a summary line.
 */
import { Server, launchBrowser, openPage, WAIT_MS } from '../tests/browser/lib.mjs';
import { Pipeline } from '../tests/browser/gst.mjs';

const ROUNDS = Number(process.argv[2] || 5);
const CAPS = 'video/x-raw,width=320,height=240,framerate=30/1';

function median (xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// In the page: join `room`, optionally sending the fake camera; record the
// Date.now() of the first video frame from any member in window.__first.
async function joinRoom (page, room, send) {
  return page.evaluate(async ({ room, send }) => {
    window.__first = null;
    if (send) {
      const s = await navigator.mediaDevices.getUserMedia({
        video: { width: 320, height: 240, frameRate: 30 }, audio: false });
      peer.addMedia(s);
    }
    peer.on('media:connect', (e) => {
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      v.srcObject = e.stream;
      document.body.appendChild(v);
      v.requestVideoFrameCallback(() => {
        if (!window.__first)
          window.__first = Date.now();
      });
    });
    const t0 = Date.now();
    await new Promise((res) => {
      peer.on('socket:connect', res);
      peer.init();
    });
    peer.thread(room, { video: true, audio: true });
    return t0;
  }, { room, send });
}

async function waitFirst (page) {
  await page.waitForFunction(() => window.__first, null, { timeout: WAIT_MS });
  return page.evaluate(() => window.__first);
}

// Date.now() when the pipeline printed that it goes to PLAYING.
async function playingAt (pipeline) {
  for (;;) {
    const i = pipeline.output.indexOf('Setting pipeline to PLAYING');
    if (i >= 0 && pipeline.playing)
      return pipeline.playing;
    if (pipeline.exited)
      throw new Error(`${pipeline.name} exited:\n${pipeline.output.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function launch (name, args) {
  const p = Pipeline.launch(name, args, { eos: false });
  // Stamp the moments we measure from and to, as the output arrives.
  const onData = (chunk) => {
    const text = chunk.toString();
    if (!p.playing && text.includes('Setting pipeline to PLAYING'))
      p.playing = Date.now();
    if (!p.firstBuffer && text.includes('(out:sink)'))
      p.firstBuffer = Date.now();
  };
  p.proc.stdout.on('data', onData);
  p.proc.stderr.on('data', onData);
  return p;
}

const server = await Server.start();
const ws = `ws://127.0.0.1:${server.port}/peerjs`;
const browser = await launchBrowser();
const results = { 'gst->browser': [], 'browser->gst': [], 'browser->browser': [] };

for (let round = 0; round < ROUNDS; round++) {
  {
    const room = `gb-${round}`;
    const page = await openPage(browser, server, `recv-${round}`);
    await joinRoom(page, room, false);
    const sink = launch(`sink-${round}`, ['peerjssink', `server=${ws}`,
      `thread=${room}`, 'latency=30', 'videotestsrc', 'is-live=true', '!', CAPS,
      '!', 'peerjssink0.video']);
    const t0 = await playingAt(sink);
    const t1 = await waitFirst(page);
    results['gst->browser'].push(t1 - t0);
    await sink.interrupt();
    await page.context().close();
  }
  {
    const room = `bg-${round}`;
    const page = await openPage(browser, server, `send-${round}`);
    await joinRoom(page, room, true);
    const src = launch(`src-${round}`, ['peerjssrc', `server=${ws}`,
      `thread=${room}`, 'latency=30', '!', 'videoconvert', '!', 'fakesink',
      'name=out', 'silent=false', 'sync=false']);
    const t0 = await playingAt(src);
    const deadline = Date.now() + WAIT_MS;
    while (!src.firstBuffer && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 2));
    if (!src.firstBuffer)
      throw new Error(`no frame at peerjssrc:\n${src.output.slice(-2000)}`);
    results['browser->gst'].push(src.firstBuffer - t0);
    await src.interrupt();
    await page.context().close();
  }
  {
    const room = `bb-${round}`;
    const a = await openPage(browser, server, `a-${round}`);
    await joinRoom(a, room, true);
    const b = await openPage(browser, server, `b-${round}`);
    const t0 = await joinRoom(b, room, false);
    const t1 = await waitFirst(b);
    results['browser->browser'].push(t1 - t0);
    await a.context().close();
    await b.context().close();
  }
  console.log(JSON.stringify({ round, ...Object.fromEntries(
    Object.entries(results).map(([k, v]) => [k, v[v.length - 1]])) }));
}

const summary = Object.fromEntries(Object.entries(results).map(([k, v]) =>
  [k, { median_ms: median(v), min_ms: Math.min(...v), max_ms: Math.max(...v) }]));
summary.ratio_gst_to_browser = +(summary['gst->browser'].median_ms
  / summary['browser->browser'].median_ms).toFixed(2);
summary.ratio_browser_to_gst = +(summary['browser->gst'].median_ms
  / summary['browser->browser'].median_ms).toFixed(2);
console.log(JSON.stringify({ summary }));
await browser.close();
await server.stop();
process.exit(0);
