// Each video codec a pipeline encodes, as Chromium receives it: a
// peerjssink with video-codec=h264, then vp9, publishes a red test
// pattern (a white ball moving on it); the demo page plays it at 320x240,
// its RTP statistics name the codec and count decoded frames, and a frame
// drawn on a canvas is red. The page names the pipeline by its
// display-name and marks it as a pipeline; a recording one (peerjssrc
// mix=true) as recording too. Last, a stand-in RTSP camera's H.264
// (tests/rtsp/rtsp-camera.c), bridged without decoding or encoding, plays.
import {
  scenario, Server, launchBrowser, openDemo, videoPlays, waitFor, waitIn, note,
  assert, assertEqual,
} from './lib.mjs';
import { spawn } from 'node:child_process';
import { Pipeline } from './gst.mjs';

// The page's inbound video: the codec's MIME type and frames decoded.
async function inbound (page) {
  return page.evaluate(async () => {
    for (const pc of window.__pcs || []) {
      const stats = await pc.getStats();
      for (const s of stats.values()) {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video' || !s.framesDecoded)
          continue;
        const codec = stats.get(s.codecId);
        return { mime: codec ? codec.mimeType : '?', frames: s.framesDecoded };
      }
    }
    return null;
  });
}

// The mean colour of a frame of the member's video, drawn on a canvas.
async function colour (page, member) {
  return page.evaluate((member) => {
    const v = document.querySelector(`[data-member="${member}"] video`);
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4)
      for (let k = 0; k < 3; k++)
        sum[k] += d[i + k];
    const n = d.length / 4;
    return sum.map((x) => Math.round(x / n));
  }, member);
}

scenario('codecs', async (t) => {
  const server = await Server.start();
  const ws = `ws://127.0.0.1:${server.port}/peerjs`;
  const browser = await launchBrowser();

  for (const [codec, mime] of [['h264', 'video/H264'], ['vp9', 'video/VP9']]) {
    const room = `codec-${codec}`;
    t.step(`a peerjssink publishes ${codec}`);
    const sink = Pipeline.launch(`sink-${codec}`, [
      'peerjssink', `server=${ws}`, `thread=${room}`, 'name=s',
      `video-codec=${codec}`, `display-name=camera ${codec}`,
      'videotestsrc', 'is-live=true', 'pattern=ball',
      'background-color=0xffff0000', '!',
      'video/x-raw,width=320,height=240,framerate=15/1', '!', 's.video',
    ]);
    const sinkId = await sink.sessionId();

    t.step(`the page receives ${codec} and decodes it`);
    const page = await openDemo(browser, server, `P-${codec}`, room);
    const size = await videoPlays(page, sinkId, 'peerjssink');
    assertEqual(size, { w: 320, h: 240 }, `the ${codec} picture size in the page`);
    await waitFor(`30 ${codec} frames decoded in the page`, async () => {
      const s = await inbound(page);
      return s && s.frames >= 30;
    }, 20000);
    const stats = await inbound(page);
    note(`[P-${codec}] inbound ${JSON.stringify(stats)}`, true);
    assertEqual(stats.mime, mime, `the codec Chromium decodes for ${codec}`);
    const [r, g, b] = await colour(page, sinkId);
    note(`[P-${codec}] mean colour ${r},${g},${b}`, true);
    assert(r > 200 && g < 60 && b < 60, `${codec}: a red picture, got ${r},${g},${b}`);

    t.step('the page names the pipeline by its display-name and marks it');
    const tile = await waitIn(page, 'the pipeline\'s tile named and marked', (id) => {
      const t = document.querySelector(`[data-member="${id}"]`);
      return t && t.classList.contains('pipeline') && !t.classList.contains('records')
        && { name: t.querySelector('.name').textContent,
          marks: [...t.querySelectorAll('.kind')].map((k) => k.textContent) };
    }, sinkId);
    assertEqual(tile, { name: `camera ${codec}`, marks: ['pipeline'] }, 'the pipeline\'s tile');
    if (codec === 'h264') {
      t.step('a recording pipeline (peerjssrc mix=true) is marked rec');
      const rec = Pipeline.launch('rec', [
        'peerjssrc', `server=${ws}`, `thread=${room}`, 'name=r', 'mix=true',
        'mix-width=320', 'mix-height=240',
        'r.video', '!', 'fakesink', 'r.audio', '!', 'fakesink',
      ]);
      const recId = await rec.sessionId();
      const marks = await waitIn(page, 'the recorder\'s tile marked rec', (id) => {
        const t = document.querySelector(`[data-member="${id}"]`);
        return t && t.classList.contains('records')
          && [...t.querySelectorAll('.kind')].map((k) => k.textContent);
      }, recId);
      assertEqual(marks, ['pipeline', 'rec'], 'the recorder\'s marks');
      await rec.interrupt();
    }

    await page.close();
    await sink.interrupt();
    assert(!/CRITICAL|ERROR:/.test(sink.output), `no criticals or errors from the ${codec} pipeline`);
  }

  // An RTSP camera's H.264, bridged as it is (no decoder or encoder in the
  // pipeline), plays in the page.
  if (process.env.PEERJS_RTSP_CAMERA) {
    t.step('an RTSP camera bridged by examples/pipelines\' pipeline plays in the page');
    const camera = spawn(process.env.PEERJS_RTSP_CAMERA, ['0', '320x240@15'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const url = await new Promise((resolve, reject) => {
        let out = '';
        camera.stdout.on('data', (d) => {
          out += d;
          const m = out.match(/serving (rtsp:\/\/\S+)/);
          if (m) resolve(m[1]);
        });
        camera.on('exit', (code) => reject(new Error(`rtsp-camera exited ${code}`)));
      });
      note(`[camera] ${url}`, true);
      const room = 'codec-rtsp';
      const bridge = Pipeline.launch('bridge', [
        'peerjssink', `server=${ws}`, `thread=${room}`, 'name=s', 'display-name=front door',
        'rtspsrc', `location=${url}`, 'protocols=tcp', 'latency=100', '!',
        'rtph264depay', '!', 'h264parse', '!', 'queue', '!', 's.video',
      ]);
      const bridgeId = await bridge.sessionId();
      const page = await openDemo(browser, server, 'P-rtsp', room);
      const size = await videoPlays(page, bridgeId, 'the camera bridge');
      assertEqual(size, { w: 320, h: 240 }, 'the camera\'s picture size in the page');
      await waitFor('30 frames of the camera decoded in the page', async () => {
        const s = await inbound(page);
        return s && s.frames >= 30;
      }, 20000);
      const stats = await inbound(page);
      note(`[P-rtsp] inbound ${JSON.stringify(stats)}`, true);
      assertEqual(stats.mime, 'video/H264', 'the codec Chromium decodes from the camera');
      assert(!/(X264Enc|Openh264|avdec_|avenc_|VP[89]Enc)/.test(bridge.output),
        'no decoder or encoder in the bridge');
      await page.close();
      await bridge.interrupt();
    } finally {
      camera.kill();
    }
  }
}, { deadline: 90000 });
