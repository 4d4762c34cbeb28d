// The server restarts mid-session (same port, same --secret-file): both
// pages come back with the same peer.id and the same thread, and a message
// sent while the server was away arrives exactly once. Done twice: a clean
// shutdown (SIGTERM), then a crash (SIGKILL).
import path from 'node:path';
import {
  scenario, Server, launchBrowser, openPeer, waitEvent, waitIn, events,
  eventTimes, assertEqual, tmpDir, note,
} from './lib.mjs';

scenario('restart', async (t) => {
  const secretFile = path.join(tmpDir('peerjs-restart-'), 'secret');
  let server = await Server.start({ secretFile });
  const port = server.port;
  const browser = await launchBrowser();
  const [a, b] = await Promise.all([openPeer(browser, server, 'A'),
    openPeer(browser, server, 'B')]);
  const [A, B] = [a.peerId, b.peerId];

  t.step('A and B join "room" and chat');
  await a.evaluate(() => void peer.thread('room', {}));
  await b.evaluate(() => void peer.thread('room', {}));
  await waitEvent(a, 'thread:connect', `e.from === '${B}'`);
  await waitEvent(b, 'thread:connect', `e.from === '${A}'`);
  await a.evaluate(() => void peer.send('message', { thread: 'room', data: 'before' }));
  await waitEvent(b, 'message', "e.data === 'before'");

  for (const [round, signal] of [[1, 'SIGTERM'], [2, 'SIGKILL']]) {
    t.step(`round ${round}: stop the server with ${signal}`);
    await server.stop(signal);
    for (const p of [a, b])
      await waitEvent(p, 'socket:disconnect', '!e.from', { count: round,
        what: 'its own socket:disconnect (connection lost)' });

    const outage = `sent during outage ${round}`;
    await a.evaluate((data) => void peer.send('message', { thread: 'room', data }), outage);

    t.step(`round ${round}: start it again on port ${port} with the same secret`);
    const down = Date.now();
    server = await Server.start({ port, secretFile });
    for (const p of [a, b]) {
      const again = await waitEvent(p, 'socket:connect', 'true', { count: round + 1,
        what: `socket:connect number ${round + 1} (reconnected)` });
      assertEqual(again.id, p.peerId, `${p.name}'s id after the restart`);
      assertEqual(await p.evaluate(() => peer.id), p.peerId, `${p.name}'s peer.id after the restart`);
    }
    note(`both pages reconnected ${Date.now() - down} ms after the server started again`, true);
    // The message A sent while the server was away.
    let m;
    try {
      m = await waitEvent(b, 'message', `e.data === '${outage}'`, { timeout: 10000 });
    } catch (err) {
      // Who was back in the room first: the first thread:connect each
      // page got from the other after this restart is the other's join
      // (no `to`: it came back later) or its answer (`to`: it was back
      // first).
      const facts = [];
      for (const [p, other] of [[a, B], [b, A]]) {
        const connects = await eventTimes(p, 'socket:connect');
        const heard = (await events(p, 'thread:connect', `e.from === '${other}'`))[round];
        const at = (await eventTimes(p, 'thread:connect', `e.from === '${other}'`))[round];
        facts.push(`${p.name} reconnected at ${connects[round]} s`
          + (heard ? `, then got the other's ${heard.to ? 'answer' : 'join'} at ${at} s`
            : ', and has not heard from the other in room since'));
      }
      err.message += ` [${facts.join('; ')}; A sent '${outage}' while offline: peer.js sends it`
        + ' once A is connected again]';
      throw err;
    }
    assertEqual([m.from, m.thread], [A, 'room'], 'the outage message at B [from, thread]');

    // Both are still in the room: chat both ways, then count.
    const after = `after restart ${round}`;
    await b.evaluate((data) => void peer.send('message', { thread: 'room', data }), `${after} from B`);
    const r1 = await waitEvent(a, 'message', `e.data === '${after} from B'`);
    assertEqual(r1.from, B, 'B\'s message at A after the restart: from');
    await a.evaluate((data) => void peer.send('message', { thread: 'room', data }), `${after} from A`);
    await waitEvent(b, 'message', `e.data === '${after} from A'`);
    const seen = (await events(b, 'message', `e.from === '${A}'`)).map((e) => e.data);
    const expected = ['before'];
    for (let r = 1; r <= round; r++)
      expected.push(`sent during outage ${r}`, `after restart ${r} from A`);
    assertEqual(seen, expected, 'messages from A at B, in order, each once');
    for (const p of [a, b]) {
      const members = await waitIn(p, 'the other page in peer.threads.room.members',
        (other) => peer.threads.room && peer.threads.room.members[other]
          ? Object.keys(peer.threads.room.members) : false,
        p === a ? B : A);
      assertEqual(members, [p === a ? B : A], `${p.name}'s members of room`);
    }
  }
});
