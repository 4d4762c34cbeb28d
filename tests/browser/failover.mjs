// Two cluster nodes (--redis, one --secret-file) and peer.js given both
// URLs: A's node is killed (SIGKILL) mid-conversation; A moves to the next
// URL on its list and resumes there: same peer.id, resumed, still in the
// thread, and the message B sent to it meanwhile arrives exactly once.
// Needs redis-server; run by the cluster suite (tests/check/cluster.cpp).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import {
  scenario, Server, launchBrowser, openPage, record, waitEvent, waitIn,
  events, assertEqual, assert, tmpDir, note,
} from './lib.mjs';

async function freePort () {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  return port;
}

async function startRedis () {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
  { stdio: 'ignore' });
  process.on('exit', () => proc.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up)
      return { proc, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not come up');
}

scenario('failover', async (t) => {
  const redis = await startRedis();
  const secretFile = path.join(tmpDir('peerjs-failover-'), 'secret');
  const cluster = ['--redis', `redis://127.0.0.1:${redis.port}`, '--grace', '20'];
  const n1 = await Server.start({ secretFile, extra: [...cluster, '--node-id', 'n1'] });
  // The pages come from n1; n2 lets them in.
  const n2 = await Server.start({ secretFile, extra: [...cluster, '--node-id', 'n2',
    '--allow-origin', `http://localhost:${n1.port}`] });
  const u1 = `ws://localhost:${n1.port}/peerjs`;
  const u2 = `ws://localhost:${n2.port}/peerjs`;
  const browser = await launchBrowser();
  const open = async (name, urls) => {
    const page = await openPage(browser, n1, name);
    await record(page);
    await page.evaluate((u) => void window.peer.init(u), urls);
    page.peerId = await waitIn(page, 'peer.id after peer.init()', () => window.peer.id);
    note(`[${name}] peer.id ${page.peerId}`, true);
    return page;
  };
  // A on n1 first, then n2; B on n2 first.
  const a = await open('A', [u1, u2]);
  const b = await open('B', [u2, u1]);
  const [A, B] = [a.peerId, b.peerId];

  t.step('A (on n1) and B (on n2) join "room" and chat');
  await a.evaluate(() => void peer.thread('room', {}));
  await waitIn(a, 'A in room', () => peer.threads.room);
  await new Promise((r) => setTimeout(r, 300));
  await b.evaluate(() => void peer.thread('room', {}));
  await waitEvent(a, 'thread:connect', `e.from === '${B}'`);
  await waitEvent(b, 'thread:connect', `e.from === '${A}'`);
  await b.evaluate(() => void peer.send('message', { thread: 'room', data: 'before' }));
  await waitEvent(a, 'message', "e.data === 'before'");

  t.step('kill n1 (SIGKILL); B writes to A meanwhile');
  await n1.stop('SIGKILL');
  await waitEvent(a, 'socket:disconnect', '!e.from', { what: "A's own socket:disconnect" });
  await b.evaluate(() => void peer.send('message', { thread: 'room', data: 'while away' }));

  t.step('A resumes on n2, the next URL');
  const again = await waitEvent(a, 'socket:connect', 'true', { count: 2,
    what: 'the second socket:connect (on n2)' });
  assertEqual([again.id, again.resumed], [A, true], "A's id and resumed on n2");
  await waitEvent(a, 'message', "e.data === 'while away'");
  await b.evaluate(() => void peer.send('message', { thread: 'room', data: 'after' }));
  await waitEvent(a, 'message', "e.data === 'after'");
  await a.evaluate(() => void peer.send('message', { thread: 'room', data: 'back' }));
  await waitEvent(b, 'message', "e.data === 'back'");
  const seen = (await events(a, 'message', `e.from === '${B}'`)).map((e) => e.data);
  assertEqual(seen, ['before', 'while away', 'after'], 'messages from B at A, each once');
  assert((await events(b, 'thread:disconnect')).length === 0,
    'B saw A neither leave nor come back');
  await n2.stop();
  redis.proc.kill('SIGKILL');
});
