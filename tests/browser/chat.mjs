// Chat in one thread with two, then three pages; a callback round trip;
// presence (watch, tag, answer); on/one/off.
import {
  scenario, Server, launchBrowser, openPeer, waitEvent, waitIn, events,
  assert, assertEqual,
} from './lib.mjs';

scenario('chat', async (t) => {
  const server = await Server.start();
  const browser = await launchBrowser();
  const [a, b, c] = await Promise.all([
    openPeer(browser, server, 'A'), openPeer(browser, server, 'B'),
    openPeer(browser, server, 'C')]);
  const [A, B, C] = [a.peerId, b.peerId, c.peerId];
  assert(new Set([A, B, C]).size === 3, `three pages, three ids: ${A} ${B} ${C}`);

  t.step('A and B join "room"');
  await a.evaluate(() => void peer.thread('room', {}));
  await b.evaluate(() => void peer.thread('room', {}));
  // A hears B join; B hears A's answer.
  await waitEvent(a, 'thread:connect', `e.from === '${B}' && e.thread === 'room'`);
  await waitEvent(b, 'thread:connect', `e.from === '${A}' && e.thread === 'room'`);

  t.step('on/one/off: B counts messages with handlers it removes');
  await b.evaluate(() => {
    window.counts = { on: 0, one: 0, off: 0 };
    window.onHandler = () => window.counts.on++;
    window.offHandler = () => window.counts.off++;
    peer.on('message', window.onHandler);
    peer.on('message', window.offHandler);
    peer.off('message', window.offHandler);
    peer.one('message', () => window.counts.one++);
  });

  t.step('two pages: A -> B, B -> A');
  await a.evaluate(() => void peer.send('message', { thread: 'room', data: 'hello from A' }));
  const m1 = await waitEvent(b, 'message', "e.data === 'hello from A'");
  assertEqual([m1.from, m1.thread, m1.data], [A, 'room', 'hello from A'],
    'B got A\'s message [from, thread, data]');
  await b.evaluate(() => void peer.send('message', { thread: 'room', data: 'hello from B' }));
  const m2 = await waitEvent(a, 'message', "e.data === 'hello from B'");
  assertEqual([m2.from, m2.thread], [B, 'room'], 'A got B\'s message [from, thread]');
  // A's only message is B's: the server does not echo A's own.
  assertEqual((await events(a, 'message')).map((e) => e.data), ['hello from B'],
    'messages A received');

  t.step('C joins; three pages');
  await c.evaluate(() => void peer.thread('room', {}));
  await waitEvent(a, 'thread:connect', `e.from === '${C}'`);
  await waitEvent(b, 'thread:connect', `e.from === '${C}'`);
  await waitEvent(c, 'thread:connect', `e.from === '${A}'`);
  await waitEvent(c, 'thread:connect', `e.from === '${B}'`);
  const members = await waitIn(c, 'A and B in peer.threads.room.members on C',
    ([A, B]) => {
      const m = peer.threads.room && peer.threads.room.members;
      return m && m[A] && m[B] ? Object.keys(m).sort() : false;
    }, [A, B]);
  assertEqual(members, [A, B].sort(), 'members of room on C');

  await c.evaluate(() => void peer.send('message', { thread: 'room', data: 'hello from C' }));
  for (const p of [a, b]) {
    const m = await waitEvent(p, 'message', "e.data === 'hello from C'");
    assertEqual([m.from, m.thread], [C, 'room'], `${p.name} got C's message [from, thread]`);
  }
  await a.evaluate(() => void peer.send('message', { thread: 'room', data: 'second from A' }));
  for (const p of [b, c]) {
    const m = await waitEvent(p, 'message', "e.data === 'second from A'");
    assertEqual([m.from, m.thread], [A, 'room'], `${p.name} got A's second message`);
  }
  // B has now seen three messages: from A, C, A.
  assertEqual((await events(b, 'message')).map((e) => e.data),
    ['hello from A', 'hello from C', 'second from A'], 'messages B received, in order');
  assertEqual(await b.evaluate(() => window.counts), { on: 3, one: 1, off: 0 },
    'B\'s handler calls (on: every message, one: the first, off: removed before any)');

  t.step('callback round trip: A invites B, B answers');
  await b.evaluate(() => void peer.on('invite:connect', (e, callback) => {
    callback({ data: { accepted: true, room: e.data.room, by: peer.id } });
  }));
  const reply = await a.evaluate((B) => new Promise((resolve) => {
    peer.send('invite:connect', { to: B, data: { room: 'elsewhere' } },
      (r) => resolve({ from: r.from, type: r.type, data: r.data }));
  }), B);
  assertEqual(reply, { from: B, data: { accepted: true, room: 'elsewhere', by: B } },
    'the answer to A\'s invite:connect');
  const invite = (await events(b, 'invite:connect'))[0];
  assertEqual([invite.from, invite.data], [A, { room: 'elsewhere' }],
    'the invite B got [from, data]');

  t.step('presence: C carries "bob", A watches it, then B takes it too');
  await c.evaluate(() => void peer.tag('bob'));
  // C, the carrier when the watch comes, answers with a message to the
  // watcher; B, who takes the tag later and gets the held watch, answers
  // through the watch's callback (one reply per callback: C leaves it).
  await c.evaluate(() => void peer.on('presence:watch', (e) => {
    peer.send('status', { to: e.from, data: { online: true, tag: e.original_to, id: peer.id } });
  }));
  await b.evaluate(() => void peer.on('presence:watch', (e, callback) => {
    callback({ data: { online: true, tag: e.original_to, id: peer.id } });
  }));
  // C's tag must be set before the watch, so that it gets the watch as the
  // current carrier; a message C sends after tagging orders the two.
  await c.evaluate((A) => void peer.send('message', { to: A, data: 'tagged' }), A);
  await waitEvent(a, 'message', "e.data === 'tagged'");
  await a.evaluate(() => {
    window.watchReplies = [];
    peer.watch('bob', (r) => window.watchReplies.push({ from: r.from, type: r.type, data: r.data }));
  });
  const wc = await waitEvent(c, 'presence:watch', `e.from === '${A}'`);
  assertEqual(wc.original_to, 'bob', 'the watch C got: original_to');
  const sc = await waitEvent(a, 'status', `e.from === '${C}'`);
  assertEqual(sc.data, { online: true, tag: 'bob', id: C }, 'C\'s answer to A\'s watch');
  await b.evaluate(() => void peer.tag('bob'));
  const wb = await waitEvent(b, 'presence:watch', `e.from === '${A}'`);
  assertEqual([wb.from, wb.original_to], [A, 'bob'], 'the held watch B got on tagging');
  const replies = await waitIn(a, 'the reply to A\'s watch callback',
    () => window.watchReplies.length && window.watchReplies);
  assertEqual(replies, [{ from: B, data: { online: true, tag: 'bob', id: B } }],
    'replies to A\'s watch callback (B\'s answer)');
  assertEqual((await events(a, 'presence:watch')).length, 0,
    'presence:watch events at the watcher');
});
