// Auth tokens on the demo page: a server started with --auth-secret; two
// pages open /?token=...#lobby with tokens made by peerjs-token, join and
// chat, and each sees the other's name (from_name) on its chat line and
// tile; the invite link carries no token. A page whose token is signed with
// another key is refused and says so on the page, and a page without a
// token is told that this server needs one; both stop retrying (peer.js
// asks GET /auth). Alice renews her token while connected (peer.setToken)
// and goes on under its name; a page whose token does not grant a thread
// forgets that thread; negotiation sent to a session sharing no thread is
// dropped without a word to the page.
// Screenshots go to $PEERJS_ARTIFACTS/auth-*.png.
import {
  scenario, Server, launchBrowser, openPage, waitIn, record, note, assert,
  assertEqual, tmpDir, sleep, ARTIFACTS, SERVER_BIN, waitEvent, events,
} from './lib.mjs';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// Built next to the server (signalling/server/).
const TOKEN_BIN = path.join(path.dirname(SERVER_BIN), 'peerjs-token');

function mint (secretFile, name, more = []) {
  assert(fs.existsSync(TOKEN_BIN), `${TOKEN_BIN} does not exist (ninja -C build)`);
  return execFileSync(TOKEN_BIN, ['--secret', secretFile, '--name', name, '--ttl', '600',
    ...more], { encoding: 'utf8' }).trim();
}

// HS256 by hand, with a key the server does not have.
function forge (key, name) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({
    name, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${body}.${crypto.createHmac('sha256', key).update(body).digest('base64url')}`;
}

async function openWithToken (browser, server, name, token, room) {
  return openPage(browser, server, name,
    { path: `/?token=${encodeURIComponent(token)}#${room}` });
}

// The page's notice and status once peer.js gave up on a refused token.
async function refusedNotice (page, status) {
  return waitIn(page, `the status "${status}" and its notice on ${page.name}`, (want) => {
    const n = document.querySelector('#notice');
    const s = document.querySelector('#status').textContent;
    return s === want && n && !n.hidden ? {
      notice: n.textContent,
      chat: {
        joined: [...document.querySelectorAll('#chat li')].some((li) => li.textContent.startsWith('You joined')),
        input: document.querySelector('#chat-input').disabled,
      },
    } : false;
  }, status);
}

// The server's count of connections refused for a token.
async function refusedTokens (server) {
  const text = await (await fetch(`${server.url}metrics`)).text();
  const m = text.match(/^peerjs_connections_refused_total\{reason="token"\} (\d+)$/m);
  return m ? Number(m[1]) : 0;
}

// peer.js stopped retrying: over 6 s (its retries come at most 5 s apart)
// the server refuses no more WebSockets for a token.
async function noMoreAttempts (page, server) {
  const before = await refusedTokens(server);
  await sleep(6000);
  const after = await refusedTokens(server);
  assertEqual(after - before, 0, `${page.name}: WebSockets refused for a token in the 6 s after the notice`);
}

scenario('auth', async (t) => {
  const dir = tmpDir('peerjs-auth-');
  const secret = path.join(dir, 'secret');
  fs.writeFileSync(secret, crypto.randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const server = await Server.start({ extra: ['--auth-secret', secret] });
  const browser = await launchBrowser();
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  t.step('Alice and Bob open the demo with their tokens');
  const alice = mint(secret, 'Alice');
  const bob = mint(secret, 'Bob');
  const a = await openWithToken(browser, server, 'A', alice, 'lobby');
  const b = await openWithToken(browser, server, 'B', bob, 'lobby');
  for (const p of [a, b]) {
    p.peerId = await waitIn(p, 'peer.id with a good token', () => window.peer && window.peer.id);
    await record(p);
    note(`[${p.name}] peer.id ${p.peerId}`, true);
  }

  t.step('the invite link is the room without the token');
  for (const p of [a, b]) {
    const link = await p.evaluate(() => {
      const l = document.querySelector('#share-link');
      return { text: l.textContent, href: l.href, address: location.href };
    });
    assert(link.address.includes('token='), `${p.name}: the address keeps its token: ${link.address}`);
    assertEqual([link.text, link.href], [`${server.url}#lobby`, `${server.url}#lobby`],
      `${p.name}: the invite link [text, href]`);
  }

  t.step('each sees the other under their name');
  const tileName = (id) => `[data-member="${id}"] .name`;
  await waitIn(a, 'Bob\'s tile named Bob on A',
    (sel) => document.querySelector(sel)?.textContent === 'Bob', tileName(b.peerId));
  await waitIn(b, 'Alice\'s tile named Alice on B',
    (sel) => document.querySelector(sel)?.textContent === 'Alice', tileName(a.peerId));

  t.step('each knows its own name from the greeting');
  for (const [p, name] of [[a, 'Alice'], [b, 'Bob']]) {
    await waitIn(p, `${name}'s own tile and status`, (n) =>
      window.peer?.name === n
      && document.querySelector('#self-view .name')?.textContent === n
      && document.body.textContent.includes(`Connected as ${n}`), name);
  }

  t.step('Alice chats; Bob\'s chat line says it is from Alice');
  await a.fill('#chat-input', 'Hello, I am Alice');
  await a.press('#chat-input', 'Enter');
  const line = await waitIn(b, 'Alice\'s message in B\'s chat', () => {
    const li = [...document.querySelectorAll('#chat li.msg')]
      .find((l) => l.querySelector('.text')?.textContent === 'Hello, I am Alice');
    return li ? { from: li.querySelector('.from').textContent,
      title: li.querySelector('.from').title } : false;
  });
  assertEqual(line, { from: 'Alice', title: a.peerId }, 'B\'s chat line [from, title]');
  await b.fill('#chat-input', 'Hi Alice, Bob here');
  await b.press('#chat-input', 'Enter');
  const back = await waitIn(a, 'Bob\'s answer in A\'s chat', () => {
    const li = [...document.querySelectorAll('#chat li.msg')]
      .find((l) => l.querySelector('.text')?.textContent === 'Hi Alice, Bob here');
    return li ? li.querySelector('.from').textContent : false;
  });
  assertEqual(back, 'Bob', 'A\'s chat line: from');
  const shotA = path.join(ARTIFACTS, 'auth-chat.png');
  await a.screenshot({ path: shotA });
  note(`wrote ${shotA}`, true);

  t.step('a token signed with another key is refused, and the page says so');
  const c = await openWithToken(browser, server, 'C', forge(crypto.randomBytes(32), 'Mallory'),
    'lobby');
  const shown = await refusedNotice(c, 'Not connected: the server refused the token');
  assert(shown.notice.includes('refused the auth token') && shown.notice.includes('Not retrying'),
    `C's notice says the token was refused, and that it stopped: ${shown.notice}`);
  assertEqual(await c.evaluate(() => window.peer.id), null, 'C\'s peer.id');
  await noMoreAttempts(c, server);
  const shotC = path.join(ARTIFACTS, 'auth-refused.png');
  await c.screenshot({ path: shotC });
  note(`wrote ${shotC}`, true);

  t.step('a page without a token is told that this server needs one, and stops');
  const d = await openPage(browser, server, 'D', { path: '/#lobby' });
  const told = await refusedNotice(d, 'Not connected: this server needs an auth token');
  assert(told.notice.includes('This server needs an auth token')
    && told.notice.includes('/?token=TOKEN#lobby') && !told.notice.includes('Retrying'),
    `D's notice says a token is needed and how to give it: ${told.notice}`);
  assertEqual(told.chat, { joined: false, input: true },
    'D: a "You joined" note in the chat, the message box disabled');
  await noMoreAttempts(d, server);
  const shotD = path.join(ARTIFACTS, 'auth-token-needed.png');
  await d.screenshot({ path: shotD });
  note(`wrote ${shotD}`, true);
  // Alice's and Bob's pages know nothing of C.
  for (const p of [a, b])
    assertEqual(await p.evaluate(() => document.querySelectorAll('[data-member]').length), 1,
      `${p.name}: member tiles`);

  t.step('the refused page is given a good token (peer.setToken) and gets in');
  await c.evaluate((tok) => window.peer.setToken(tok), mint(secret, 'Carol'));
  const carol = await waitIn(c, 'peer.id of C after setToken', () => window.peer && window.peer.id);
  assert(typeof carol === 'string' && carol.length > 0, `C's peer.id after setToken: ${carol}`);
  assertEqual(await c.evaluate(() => window.peer.name), 'Carol', 'C\'s peer.name after setToken');
  await c.evaluate(() => window.peer.disconnect());

  t.step('Alice renews her token while connected, and goes on under its name');
  const before = await a.evaluate(() => window.peer.expires);
  assert(typeof before === 'number' && before > Date.now() / 1000,
    `A's peer.expires from the greeting: ${before}`);
  await a.evaluate((tok) => window.peer.setToken(tok), mint(secret, 'Alicia', ['--ttl', '900']));
  const renewed = await waitEvent(a, 'socket:token');
  assertEqual(renewed.name, 'Alicia', 'the renewal\'s name');
  assert(renewed.expires > before, `the renewal's expires ${renewed.expires} is later than ${before}`);
  assertEqual(await a.evaluate(() => [window.peer.name, window.peer.expires]),
    ['Alicia', renewed.expires], 'A\'s [peer.name, peer.expires]');
  await a.fill('#chat-input', 'Renewed');
  await a.press('#chat-input', 'Enter');
  const renamed = await waitIn(b, 'Alicia\'s message in B\'s chat', () => {
    const li = [...document.querySelectorAll('#chat li.msg')]
      .find((l) => l.querySelector('.text')?.textContent === 'Renewed');
    return li ? li.querySelector('.from').textContent : false;
  });
  assertEqual(renamed, 'Alicia', 'B\'s chat line after the renewal: from');

  t.step('a thread the token does not grant is forgotten');
  const dave = await openWithToken(browser, server, 'E', mint(secret, 'Dave', ['--threads', 'lobby']),
    'lobby');
  dave.peerId = await waitIn(dave, 'peer.id of D', () => window.peer && window.peer.id);
  await record(dave);
  await dave.evaluate(() => window.peer.thread('attic', {}));
  const refused = await waitEvent(dave, 'thread:disconnect', 'e.thread === \'attic\'');
  assertEqual(refused.refused, true, 'D\'s thread:disconnect for attic: refused');
  assertEqual(await dave.evaluate(() => Object.keys(window.peer.threads)), ['lobby'],
    'D\'s threads');

  t.step('negotiation sent to a session sharing no thread is dropped quietly');
  await dave.evaluate(() => window.peer.thread('lobby', false));
  await waitEvent(a, 'thread:disconnect', `e.from === '${dave.peerId}'`);
  const answer = await a.evaluate((to) => new Promise((resolve) => {
    window.peer._send({ type: 'stream:candidate', to, data: {} });
    // The same refusal, as a callback's reply: it comes after the first.
    window.peer.send('stream:makeoffer', { to }, resolve);
  }), dave.peerId);
  assertEqual(answer.code, 'no-shared-thread', 'the refusal of a makeoffer to D');
  assertEqual(await events(a, 'error', 'e.code === \'no-shared-thread\''), [],
    'A\'s error events for no-shared-thread');
  assert(!(await a.evaluate(() => document.body.textContent.includes('shares no thread'))),
    'A\'s page says nothing of it');
  fs.rmSync(dir, { recursive: true, force: true });
});
