// One Chromium member of a bench/net leg, run by net-bench in a host of
// its network lab (node, with tests/browser's playwright-core and lib.mjs).
//
//   node lab-page.mjs publish URL ROOM WIDTH HEIGHT FPS
//     The demo page at URL joins ROOM and shares the fake camera at
//     WIDTH x HEIGHT @ FPS (and the fake microphone). Prints
//     "net-page: session ID" and stays until SIGINT or SIGTERM.
//
//   node lab-page.mjs watch URL ROOM MEMBER SECONDS FIRST_MS
//     The demo page at URL joins ROOM and waits (at most FIRST_MS) for
//     MEMBER's video to give a frame; prints "net-page: first-frame",
//     then counts the frames the page is given to paint
//     (requestVideoFrameCallback) for SECONDS and prints
//     "net-page: result {json}": frames, the time without a new frame for
//     more than 200 ms (and each such gap: its start in seconds from the
//     first frame, its length), the picture sizes seen, and what Chromium
//     counted.
//     With no frame in FIRST_MS it prints "net-page: no-picture".
import {
  launchBrowser, openPage, waitIn, note,
} from '../../tests/browser/lib.mjs';

const [role, url, room, ...rest] = process.argv.slice(2);
// The rate the fake camera runs at: the publisher's, else 30.
const FPS = role === 'publish' ? Number(rest[2]) : 30;
const say = (line) => console.log(`net-page: ${line}`);

async function open (name) {
  // The lab's server is at a plain http address: a secure context only
  // by this flag (the camera needs one).
  const origin = new URL(url).origin;
  const browser = await launchBrowser({
    // The fake camera gives 20 fps unless told (the later flag wins).
    args: [`--unsafely-treat-insecure-origin-as-secure=${origin}`,
      `--use-fake-device-for-media-stream=fps=${FPS}`],
  });
  const page = await openPage(browser, { url }, name, { path: `/#${room}` });
  const id = await waitIn(page, 'peer.id on the demo page',
    () => window.peer && window.peer.id, undefined, 20000);
  say(`session ${id}`);
  return { browser, page };
}

async function publish ([width, height, fps]) {
  const { browser, page } = await open('publisher');
  const got = await page.evaluate(async ([w, h, f]) => {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: f } },
    });
    window.peer.addMedia(stream);
    const s = stream.getVideoTracks()[0].getSettings();
    return `${s.width}x${s.height}@${s.frameRate}`;
  }, [Number(width), Number(height), Number(fps)]);
  say(`camera ${got}`);
  await new Promise((resolve) => {
    process.on('SIGINT', resolve);
    process.on('SIGTERM', resolve);
  });
  await browser.close();
}

async function watch ([member, seconds, firstMs]) {
  const { browser, page } = await open('receiver');
  // Stopped before its result (the bench gave up on it): the browser is
  // closed all the same, and its temporary files go with it.
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => browser.close().finally(() => process.exit(1)));
  const sel = `[data-member="${member}"] video`;
  const first = await page.evaluate(([sel, timeout]) => new Promise((resolve) => {
    const start = performance.now();
    const look = () => {
      const v = document.querySelector(sel);
      if (v && v.videoWidth) {
        // A size is known once a key frame arrived, which is no frame
        // painted yet: the wait ends at the timeout all the same.
        v.requestVideoFrameCallback(() => resolve(true));
        setTimeout(() => resolve(false),
          Math.max(0, timeout - (performance.now() - start)));
        return;
      }
      if (performance.now() - start > timeout)
        resolve(false);
      else
        setTimeout(look, 50);
    };
    look();
  }), [sel, Number(firstMs)]);
  if (!first) {
    say('no-picture');
    await browser.close();
    return;
  }
  say('first-frame');
  const result = await page.evaluate(([sel, ms]) => new Promise((resolve) => {
    const v = document.querySelector(sel);
    const start = performance.now();
    const sizes = {};
    // presentedFrames: frames the compositor took, also those replaced
    // before a callback ran (two within one refresh).
    let frames = 0, previous = start, frozen = 0, firstPresented = -1,
      presented = 0;
    // Each gap of more than 200 ms: [its start, its length], in seconds
    // from the first frame.
    const freezes = [];
    const gap = (now) => {
      if (now - previous <= 200)
        return;
      frozen += now - previous;
      freezes.push([(previous - start) / 1000, (now - previous) / 1000]);
    };
    const inbound = async () => {
      const sum = { framesReceived: 0, framesDecoded: 0, framesDropped: 0,
        packetsLost: 0, nackCount: 0, pliCount: 0, jitterBufferDelay: 0,
        jitterBufferEmittedCount: 0, retransmittedPacketsReceived: 0 };
      for (const pc of window.__pcs || [])
        (await pc.getStats()).forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'video')
            for (const k of Object.keys(sum))
              sum[k] += r[k] || 0;
        });
      return sum;
    };
    inbound().then((before) => {
      const onFrame = (now, meta) => {
        if (now - start >= ms)
          return;
        frames++;
        if (firstPresented < 0)
          firstPresented = meta.presentedFrames - 1;
        presented = meta.presentedFrames - firstPresented;
        gap(now);
        previous = now;
        const size = `${v.videoWidth}x${v.videoHeight}`;
        sizes[size] = (sizes[size] || 0) + 1;
        v.requestVideoFrameCallback(onFrame);
      };
      v.requestVideoFrameCallback(onFrame);
      setTimeout(async () => {
        gap(start + ms);
        const after = await inbound();
        const counted = {};
        for (const k of Object.keys(after))
          counted[k] = after[k] - before[k];
        resolve({ frames, frozen_s: frozen / 1000, freezes, sizes, counted,
          presented });
      }, ms);
    });
  }), [sel, Number(seconds) * 1000]);
  say(`result ${JSON.stringify(result)}`);
  await browser.close();
}

const roles = { publish, watch };
if (!roles[role]) {
  console.error('usage: lab-page.mjs publish URL ROOM W H FPS | watch URL ROOM MEMBER SECONDS FIRST_MS');
  process.exit(2);
}
roles[role](rest).then(() => process.exit(0), (e) => {
  note(`net-page: ${e.stack || e}`, true);
  say(`failed ${e.message || e}`);
  process.exit(1);
});
