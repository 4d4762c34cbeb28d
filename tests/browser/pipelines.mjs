// Pipelines and browsers in one room: a demo page shows peerjssink's test
// pattern (videoWidth 320, time moving on) and gets its audio track;
// peerjssrc decodes the page's fake camera and microphone into frames and
// samples. The pipelines are gst-launch-1.0 processes with the plugin from
// the build tree (GST_PLUGIN_PATH, set by the test runner).
import fs from 'node:fs';
import path from 'node:path';
import {
  scenario, Server, launchBrowser, openDemo, cameraOn, videoPlays, waitIn,
  waitFor, note, assert, assertEqual, ARTIFACTS,
} from './lib.mjs';
import { Pipeline } from './gst.mjs';

// What the page looks like with the pipeline in the room.
const SHOT = path.join(ARTIFACTS, 'demo-with-pipeline.png');

const ROOM = 'pipelines-room';

scenario('pipelines', async (t) => {
  const server = await Server.start();
  const ws = `ws://127.0.0.1:${server.port}/peerjs`;

  t.step('a peerjssink publishes a test pattern and a tone');
  const sink = Pipeline.launch('sink', [
    'peerjssink', `server=${ws}`, `thread=${ROOM}`, 'name=s',
    'videotestsrc', 'is-live=true', 'pattern=ball', '!',
    'video/x-raw,width=320,height=240,framerate=15/1', '!', 's.video',
    'audiotestsrc', 'is-live=true', 'wave=sine', '!', 's.audio',
  ]);
  const sinkId = await sink.sessionId();

  t.step('a page joins with its camera; it sees and hears the pipeline');
  const browser = await launchBrowser();
  const page = await openDemo(browser, server, 'B', ROOM);
  await cameraOn(page);
  const size = await videoPlays(page, sinkId, 'peerjssink');
  assertEqual(size, { w: 320, h: 240 }, 'the pipeline\'s picture size in the page');
  const audio = await waitIn(page, 'a live audio track from the pipeline',
    (member) => {
      const v = document.querySelector(`[data-member="${member}"] video`);
      const tracks = v && v.srcObject ? v.srcObject.getAudioTracks() : [];
      return tracks.filter((tr) => tr.readyState === 'live').length || false;
    }, sinkId);
  assertEqual(audio, 1, 'live audio tracks from the pipeline in the page');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: SHOT });
  note(`[B] screenshot ${SHOT}`, true);

  t.step('the sink leaves; the page drops its tile');
  await sink.interrupt();
  await waitIn(page, 'the pipeline\'s tile to go',
    (member) => !document.querySelector(`[data-member="${member}"]`), sinkId);

  t.step('a peerjssrc joins: the page is the only other member');
  const src = Pipeline.launch('src', [
    'peerjssrc', `server=${ws}`, `thread=${ROOM}`, 'name=r',
    'r.', '!', 'video/x-raw', '!', 'queue', '!', 'videoconvert', '!',
    'fakesink', 'name=video-out', 'silent=false', 'sync=false',
    'r.', '!', 'audio/x-raw', '!', 'queue', '!', 'audioconvert', '!',
    'fakesink', 'name=audio-out', 'silent=false', 'sync=false',
  ]);
  await src.sessionId();

  t.step('peerjssrc decodes the page\'s camera and microphone');
  await src.waitMessage(`peerjs-media-connect, member=(string)${page.peerId}, kind=(string)video`);
  await src.waitMessage(`peerjs-media-connect, member=(string)${page.peerId}, kind=(string)audio`);
  await waitFor('30 decoded video frames and 30 audio buffers at peerjssrc', () =>
    src.count('(video-out:sink)') >= 30 && src.count('(audio-out:sink)') >= 30, 20000);
  note(`[src] video buffers ${src.count('(video-out:sink)')}, `
    + `audio buffers ${src.count('(audio-out:sink)')}`, true);

  t.step('peerjssrc stops cleanly');
  await src.interrupt();
  assert(!/CRITICAL|ERROR:/.test(sink.output + src.output),
    'no criticals or errors from the pipelines');
}, { deadline: 90000 });
