/* The peerjs demo chat room: one thread at a time, named by the URL hash.
 * A server that wants auth tokens gets the one in the page's own query:
 * /?token=...#thread. */
'use strict';

(() => {
  const $ = (selector) => document.querySelector(selector);
  const MEDIA = { video: true, audio: true };

  const ui = {
    roomName: $('#room-name'),
    count: $('#member-count'),
    status: $('#status'),
    notice: $('#notice'),
    insecure: $('#insecure'),
    camera: $('#toggle-camera'),
    mute: $('#toggle-mute'),
    picture: $('#toggle-picture'),
    newThread: $('#new-thread'),
    exit: $('#exit-thread'),
    out: $('#out'),
    outRoom: $('#out-room'),
    rejoin: $('#rejoin'),
    self: $('#self-view'),
    localVideo: $('#local-video'),
    tiles: $('.tiles'),
    members: $('#members'),
    enableSound: $('#enable-sound'),
    shareLink: $('#share-link'),
    copyLink: $('#copy-link'),
    shareHint: $('#share-hint'),
    chat: $('#chat'),
    form: $('#chat-form'),
    input: $('#chat-input'),
    fileInput: $('#file-input'),
    unread: $('#unread'),
  };

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  if (!window.peer) {
    showNotice('Could not load /peer.js, so the chat room cannot start.');
    ui.status.textContent = 'Offline';
    return;
  }

  const rtc = Boolean(peer.support && peer.support.rtc);
  // Personal, like a password: it goes to the server and nowhere else (not
  // into the invite link).
  const token = new URLSearchParams(location.search).get('token');

  let room = null;      // the thread named by the hash
  let joined = false;   // whether we are in it right now
  let myId = null;
  const tiles = new Map();     // member session id -> tile element
  const streams = new Map();   // member session id -> MediaStream
  const watched = new WeakSet();  // streams and tracks we listen to
  const transfers = new Map(); // "from:id" or "out:id" -> chat entry parts
  const removed = { audio: [], video: [] };  // tracks taken out by Mute / Hide picture
  const names = new Map();     // member session id -> the name its token gives (from_name)
  let connectNotice = false;   // the notice says we could not connect
  let refused = false;         // the server wants a (valid) token: peer.js stopped
  let greeted = false;         // the server greeted us once: joins are real
  let unread = [];             // chat entries from others not seen yet

  /* ---------- small helpers ---------- */

  const short = (id) => String(id ?? '').slice(0, 6);
  const who = (id) => names.get(id) || short(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === 'class') node.className = value;
      else if (key.startsWith('data-') || key.startsWith('aria-')) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  }

  function formatSize(bytes) {
    if (!Number.isFinite(bytes)) return '';
    const units = ['B', 'KB', 'MB', 'GB'];
    let i = 0;
    while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
    return `${i ? bytes.toFixed(1) : bytes} ${units[i]}`;
  }

  function randomRoom() {
    return Array.from(crypto.getRandomValues(new Uint8Array(4)),
        (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function hashText() {
    const raw = location.hash.slice(1);
    try { return decodeURIComponent(raw); } catch { return raw; }
  }

  /* The server takes thread names of 1-128 bytes without control characters. */
  function roomName(text) {
    const bytes = new TextEncoder();
    let name = '';
    for (const ch of text.replace(/[\u0000-\u001f\u007f]/g, '').trim()) {
      if (bytes.encode(name + ch).length > 128) break;
      name += ch;
    }
    return name;
  }

  function setHash(name) {
    history.replaceState(null, '', `#${encodeURIComponent(name)}`);
  }

  /* This page's address without its token: the room, for others to join
     with tokens of their own. It is the address the page was opened at,
     so others must be able to reach it. */
  function inviteUrl() {
    const url = new URL(location.href);
    url.searchParams.delete('token');
    return url.href;
  }

  const host = location.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host.endsWith('.localhost')
    || /^127\./.test(host) || host === '::1';

  /* Browsers give camera and microphone only to secure contexts: https, or
     http on this machine's own names (localhost, 127.0.0.1). */
  function explainInsecure() {
    if (window.isSecureContext) return false;
    const port = location.port ? `:${location.port}` : '';
    ui.insecure.textContent = `The camera and microphone are blocked: this page was opened at `
      + `${location.origin}, which the browser does not count as secure (plain http away from `
      + `localhost). You can still chat. To share video, serve the page over https (start `
      + `peerjs-signalling with --tls-cert FILE --tls-key FILE, or behind a TLS proxy), or, on the `
      + `server's own machine, open http://localhost${port}${location.pathname}${location.hash}.`;
    ui.insecure.hidden = false;
    return true;
  }

  /* The server puts the name a member's token gives in what it relays;
   * a pipeline without one says its display-name in its thread:connect and
   * thread:change (display_name), which the token's name wins over. */
  const kinds = new Map();     // member session id -> { pipeline, records }
  function learnName(e) {
    if (!e.from) return;
    const name = typeof e.from_name === 'string' && e.from_name ? e.from_name
      : typeof e.display_name === 'string' && e.display_name && !names.has(e.from)
        ? e.display_name : null;
    if (!name || names.get(e.from) === name) return;
    names.set(e.from, name);
    const tile = tiles.get(e.from);
    if (tile) {
      tile.querySelector('.name').textContent = name;
      tile.querySelector('.avatar').replaceWith(avatar(e.from));
    }
  }

  /* A pipeline says so (pipeline: its element), and whether it records
   * the room (records): its tile is marked. */
  function learnKind(e) {
    if (!e.from || (e.type !== 'thread:connect' && e.type !== 'thread:change')) return;
    kinds.set(e.from, { pipeline: typeof e.pipeline === 'string' ? e.pipeline : '',
      records: e.records === true });
    markKind(e.from);
  }

  function markKind(id) {
    const tile = tiles.get(id);
    const k = kinds.get(id);
    if (!tile || !k) return;
    tile.classList.toggle('pipeline', !!k.pipeline);
    tile.classList.toggle('records', k.records);
    const caption = tile.querySelector('figcaption');
    for (const old of caption.querySelectorAll('.kind')) old.remove();
    if (k.pipeline) caption.append(el('span', { class: 'kind', title: `a GStreamer pipeline (${k.pipeline})` }, 'pipeline'));
    if (k.records) caption.append(el('span', { class: 'kind rec', title: 'records the room' }, 'rec'));
  }

  /* A microphone with a stroke through it, for the "muted" badge. */
  function micOff() {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('fill', 'none');
    svg.setAttribute('stroke', 'currentColor');
    svg.setAttribute('stroke-width', '2.2');
    svg.setAttribute('stroke-linecap', 'round');
    const path = document.createElementNS(svg.namespaceURI, 'path');
    path.setAttribute('d', 'M9 6a3 3 0 0 1 6 0v5a3 3 0 0 1-6 0zM5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21M4 3l16 18');
    svg.append(path);
    return svg;
  }

  function badge() {
    return el('span', { class: 'badge' }, micOff(), 'muted');
  }

  function avatar(id) {
    const node = el('span', { class: 'avatar', 'aria-hidden': 'true' }, who(id).slice(0, 2).toUpperCase());
    let hue = 0;
    for (const c of String(id)) hue = (hue * 31 + c.charCodeAt(0)) % 360;
    node.style.setProperty('--hue', hue);
    return node;
  }

  /* ---------- status, room and buttons ---------- */

  function setStatus(state) {
    document.body.dataset.connection = state;
    ui.status.textContent = {
      connecting: 'Connecting…',
      connected: `Connected as ${who(myId)}`,
      reconnecting: 'Connection lost, reconnecting…',
      failed: 'Could not connect, retrying…',
      unauthorized: token ? 'Not connected: the server refused the token'
        : 'Not connected: this server needs an auth token',
      ended: 'Disconnected: reload the page to come back',
      replaced: 'Disconnected: this session continues in another tab',
    }[state];
    ui.status.title = state === 'connected' ? `Session ${myId}` : '';
  }

  function render() {
    const label = `#${room}`;
    ui.roomName.textContent = label;
    document.title = `${label} · peerjs chat room`;
    ui.count.textContent = refused ? '' : joined ? `${tiles.size + 1} here` : 'left';
    ui.shareLink.href = ui.shareLink.textContent = inviteUrl();
    // In the heading, so that it takes no room of its own on a phone.
    ui.shareHint.hidden = !loopback;
    ui.shareHint.textContent = loopback ? '(opens only on this computer)' : '';
    ui.shareHint.title = loopback ? `This link names ${host}. For others, open this page at an `
      + 'address they can reach (this machine\'s name or IP address, over https for the camera).' : '';
    ui.out.hidden = joined;
    ui.outRoom.textContent = label;
    ui.exit.disabled = !joined || refused;
    ui.input.disabled = !joined || refused;
    ui.form.querySelector('[type=submit]').disabled = !joined || refused;
    ui.fileInput.disabled = !joined || refused || !rtc;
    ui.input.placeholder = refused ? 'Needs an auth token'
      : joined ? `Message ${label}` : 'Rejoin to chat';
  }

  function renderLocal() {
    const stream = peer.localmedia || null;
    if (ui.localVideo.srcObject !== stream) ui.localVideo.srcObject = stream;
    const has = (kind) => Boolean(stream && stream.getTracks().some((t) => t.kind === kind));
    ui.self.classList.toggle('has-media', Boolean(stream));
    ui.self.classList.toggle('has-video', has('video'));
    ui.self.classList.toggle('has-audio', has('audio'));
    ui.camera.setAttribute('aria-pressed', String(Boolean(stream)));
    // The labels say what a click does; aria-pressed and the colour say
    // that the microphone or the picture is off now.
    const muted = removed.audio.length > 0;
    const hidden = removed.video.length > 0;
    ui.mute.setAttribute('aria-pressed', String(muted));
    ui.mute.textContent = muted ? 'Unmute' : 'Mute';
    ui.mute.title = muted ? 'The others cannot hear you' : '';
    ui.picture.setAttribute('aria-pressed', String(hidden));
    ui.picture.textContent = hidden ? 'Show picture' : 'Hide picture';
    ui.picture.title = hidden ? 'The others do not see you' : '';
    ui.mute.disabled = !stream || (!has('audio') && !removed.audio.length);
    ui.picture.disabled = !stream || (!has('video') && !removed.video.length);
    scheduleLayout();  // a picture more or less may change the tiles' aspect
  }

  /* ---------- tile layout ---------- */

  // Until a picture says otherwise: what cameras give getUserMedia by default.
  const DEFAULT_ASPECT = 4 / 3;
  // Below this the tiles stop shrinking and the stage scrolls instead.
  const MIN_TILE_WIDTH = 120;

  /* The aspect most of the pictures on show have (the first one seen among
     equals); tiles without a picture follow it. A picture of another shape
     gets bars (object-fit: contain), never cropped. */
  function pictureAspect(list) {
    const votes = new Map();  // aspect rounded to 1/100 -> [count, exact aspect]
    for (const tile of list) {
      const v = tile.querySelector('video');
      if (!tile.classList.contains('has-video') || !v || !v.videoWidth || !v.videoHeight) continue;
      const exact = v.videoWidth / v.videoHeight;
      const key = Math.round(exact * 100);
      const vote = votes.get(key) || [0, exact];
      vote[0]++;
      votes.set(key, vote);
    }
    let best = [0, DEFAULT_ASPECT];
    for (const vote of votes.values()) if (vote[0] > best[0]) best = vote;
    return best[1];
  }

  /* The largest tile of this aspect that `count` of fit in width x height,
     `gap` apart: every column count is tried, the rows follow from it. */
  function bestGrid(count, width, height, gap, aspect) {
    let best = { cols: 1, rows: count, w: 0, h: 0 };
    for (let cols = 1; cols <= count; cols++) {
      const rows = Math.ceil(count / cols);
      const cellW = (width - gap * (cols - 1)) / cols;
      const cellH = (height - gap * (rows - 1)) / rows;
      // Whole pixels, rounded down, so that `cols` tiles always fit a row.
      const w = Math.floor(Math.min(cellW, cellH * aspect));
      if (w > best.w) best = { cols, rows, w };
    }
    if (best.w < MIN_TILE_WIDTH) {
      const cols = Math.max(1, Math.floor((width + gap) / (MIN_TILE_WIDTH + gap)));
      const w = Math.floor(Math.min(width, (width - gap * (cols - 1)) / cols));
      best = { cols, rows: Math.ceil(count / cols), w };
    }
    // The height stays fractional: a tile a fraction of a pixel off the
    // picture's aspect shows a hairline of background along one edge.
    return { ...best, h: best.w / aspect };
  }

  function layoutTiles() {
    const box = ui.tiles;
    const list = [...box.querySelectorAll('.tile')];  // ours and the members'
    const style = getComputedStyle(box);
    const width = box.clientWidth;
    // A phone's stage grows with its tiles up to its max-height (demo.css);
    // on a desktop the box has the height left under the controls.
    const maxHeight = parseFloat(style.maxHeight);  // NaN for "none"
    const height = Number.isFinite(maxHeight) ? maxHeight : box.clientHeight;
    if (!width || !height || !list.length) return;
    const grid = bestGrid(list.length, width, height, parseFloat(style.columnGap) || 0,
        pictureAspect(list));
    box.style.setProperty('--tile-w', `${grid.w}px`);
    box.style.setProperty('--tile-h', `${grid.h}px`);
    box.dataset.grid = `${grid.cols}x${grid.rows}`;
  }

  /* Once per frame at most: resizes, pictures that change size, tracks. */
  let layoutQueued = false;
  function scheduleLayout() {
    if (layoutQueued) return;
    layoutQueued = true;
    requestAnimationFrame(() => {
      layoutQueued = false;
      layoutTiles();
    });
  }

  // Through a frame, not in the callback: on a phone the box's height follows
  // the tiles, and a size changed inside the callback would be an error
  // ("ResizeObserver loop completed with undelivered notifications").
  new ResizeObserver(scheduleLayout).observe(ui.tiles);
  ui.localVideo.addEventListener('resize', scheduleLayout);

  /* ---------- threads ---------- */

  function join() {
    const thread = peer.thread(room, MEDIA);
    joined = true;
    for (const id of Object.keys(thread.members || {})) addMember(id, false);
    // Before the greeting the join is only queued: said once it is real.
    if (greeted) note(`You joined #${room}`);
    render();
  }

  function leave() {
    peer.thread(room, false);
    joined = false;
    clearMembers();
    note(`You left #${room}`);
    render();
  }

  function enterRoom(name) {
    if (joined) leave();
    room = name;
    join();
  }

  function onHashChange() {
    const name = roomName(hashText()) || randomRoom();
    if (name !== hashText()) setHash(name);
    if (name !== room) enterRoom(name);
    else if (!joined) join();
    else render();
  }

  /* ---------- member tiles ---------- */

  function addMember(id, announce = true) {
    if (tiles.has(id)) return tiles.get(id);
    // Silent until an audio track of theirs says otherwise (showStream).
    const tile = el('figure', { class: 'tile silent', 'data-member': id },
        avatar(id),
        el('figcaption', {}, el('span', { class: 'name', title: id }, who(id)), badge()));
    tiles.set(id, tile);
    ui.members.append(tile);
    if (streams.has(id)) showStream(id);
    if (announce) note(`${who(id)} joined`);
    render();
    layoutTiles();
    return tile;
  }

  function removeMember(id, why = 'left') {
    const tile = tiles.get(id);
    if (!tile) return;
    tile.remove();
    tiles.delete(id);
    note(`${who(id)} ${why}`);
    render();
    layoutTiles();
  }

  function clearMembers() {
    for (const tile of tiles.values()) tile.remove();
    tiles.clear();
    layoutTiles();
  }

  function showStream(id) {
    const tile = tiles.get(id);
    const stream = streams.get(id);
    if (!tile) return;
    let video = tile.querySelector('video');
    if (!stream) {
      if (video) video.remove();
      tile.classList.remove('has-media', 'has-video', 'has-audio');
      tile.classList.add('silent');
      scheduleLayout();
      return;
    }
    if (!video) {
      video = el('video', { autoplay: true, playsInline: true });
      video.addEventListener('resize', scheduleLayout);  // the picture's size is known or changed
      tile.prepend(video);
    }
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      video.play().catch((error) => { if (error.name === 'NotAllowedError') soundBlocked(video); });
    }
    for (const track of stream.getTracks()) {
      if (watched.has(track)) continue;
      watched.add(track);
      // The track may come back later in another stream object (a member
      // whose tracks all went and came back): ask the current one.
      for (const type of ['mute', 'unmute', 'ended'])
        track.addEventListener(type, () => {
          const now = streams.get(id);
          if (now && now.getTracks().includes(track)) showStream(id);
        });
    }
    tile.classList.add('has-media');
    // A muted remote track has no frames yet, or no more. A member who mutes
    // takes the audio track out of the stream (peer.js removes it here).
    const playing = (t) => t.readyState === 'live' && !t.muted;
    const audible = stream.getAudioTracks().some(playing);
    tile.classList.toggle('has-video', stream.getVideoTracks().some(playing));
    tile.classList.toggle('has-audio', audible);
    tile.classList.toggle('silent', !audible);
    scheduleLayout();
  }

  /* Autoplay rules may refuse sound until the user interacts with the page. */
  function soundBlocked(video) {
    video.muted = true;
    video.play().catch(() => {});
    ui.enableSound.hidden = false;
  }

  ui.enableSound.addEventListener('click', () => {
    for (const video of ui.members.querySelectorAll('video')) {
      video.muted = false;
      video.play().catch(() => {});
    }
    ui.enableSound.hidden = true;
  });

  /* ---------- chat ---------- */

  function scrollChat(update) {
    const log = ui.chat;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    update();
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  /* Whether an entry's start is on screen: inside the chat's box, above
     the bottom of the window and above the message box (which sits over
     the chat at the bottom of a phone's screen). */
  function inSight(li) {
    if (!li.isConnected) return true;
    const r = li.getBoundingClientRect();
    const log = ui.chat.getBoundingClientRect();
    const bottom = Math.min(log.bottom, innerHeight, ui.form.getBoundingClientRect().top);
    const top = Math.max(log.top, 0);
    return r.top < bottom - 12 && r.bottom > top + 4;
  }

  /* New chat out of sight (a phone shows the room first, the chat below
     it; or the chat was scrolled back) gets a hint over the message box. */
  function renderUnread() {
    unread = unread.filter((li) => !inSight(li));
    ui.unread.hidden = unread.length === 0;
    ui.unread.textContent = unread.length === 1 ? '1 new message ↓' : `${unread.length} new messages ↓`;
  }

  function markUnread(li) {
    if (inSight(li)) return;
    unread.push(li);
    renderUnread();
  }

  let unreadQueued = false;
  function checkUnread() {
    if (!unread.length || unreadQueued) return;
    unreadQueued = true;
    requestAnimationFrame(() => {
      unreadQueued = false;
      renderUnread();
    });
  }

  ui.unread.addEventListener('click', () => {
    const last = unread[unread.length - 1] || ui.chat.lastElementChild;
    ui.chat.scrollTop = ui.chat.scrollHeight;
    if (last) last.scrollIntoView({ block: 'end', behavior: 'smooth' });
    unread = [];
    renderUnread();
  });
  addEventListener('scroll', checkUnread, { passive: true });
  addEventListener('resize', checkUnread, { passive: true });
  ui.chat.addEventListener('scroll', checkUnread, { passive: true });

  function note(text) {
    scrollChat(() => ui.chat.append(el('li', { class: 'note', textContent: text })));
  }

  /* One chat entry: who, which thread, when, then the body. */
  function entry(from, thread, ...body) {
    const time = new Date();
    const li = el('li', { class: from ? 'msg' : 'msg mine' },
        el('div', { class: 'meta' },
            el('span', { class: 'from', title: from || myId || '' }, from ? who(from) : 'you'),
            el('span', { class: 'thread', textContent: thread ? `#${thread}` : '' }),
            el('time', { dateTime: time.toISOString(),
              textContent: time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) })),
        ...body);
    scrollChat(() => ui.chat.append(li));
    if (from) markUnread(li);
    return li;
  }

  function text(data) {
    return el('p', { class: 'text', textContent: typeof data === 'string' ? data : JSON.stringify(data) });
  }

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = ui.input.value.trim();
    if (!data || !joined) return;
    peer.send('message', { thread: room, data });
    entry(null, room, text(data));  // the server does not echo our own messages
    ui.input.value = '';
  });

  /* ---------- files ---------- */

  function progressBar(size) {
    return el('progress', { max: size || 1, value: 0 });
  }

  ui.fileInput.addEventListener('change', () => {
    for (const file of ui.fileInput.files) {
      const id = peer.offerFile(file, { thread: room });
      const list = el('ul', { class: 'sends' });
      entry(null, room,
          el('p', { class: 'text' }, 'Offered ', el('strong', { textContent: file.name }),
              ` (${formatSize(file.size)})`),
          list);
      transfers.set(`out:${id}`, { list, rows: new Map(), size: file.size });
    }
    ui.fileInput.value = '';
  });

  /* Outgoing transfers get one row per member who asked for the file. */
  function sendRow(e) {
    const t = transfers.get(`out:${e.id}`);
    if (!t) return null;
    let row = t.rows.get(e.to);
    if (!row) {
      row = { bar: progressBar(e.size || t.size), state: el('span', { class: 'state' }) };
      t.rows.set(e.to, row);
      t.list.append(el('li', {}, `to ${who(e.to)} `, row.bar, row.state));
    }
    return row;
  }

  function setProgress(bar, label, done, size) {
    bar.max = size || bar.max;
    bar.value = done;
    label.textContent = `${Math.floor((100 * done) / (size || bar.max))}%`;
  }

  peer.on('file:offer', (e) => {
    learnName(e);
    if (!e.from) return;
    const key = `${e.from}:${e.id}`;
    const button = el('button', { type: 'button', class: 'file-offer', 'data-file-id': e.id },
        'Download ', el('strong', { textContent: e.name }),
        el('span', { class: 'size', textContent: formatSize(e.size) }));
    const state = el('span', { class: 'state' });
    const t = { button, state, bar: null, cancel: null };
    transfers.set(key, t);
    button.addEventListener('click', () => {
      button.disabled = true;
      state.textContent = '';
      t.bar = progressBar(e.size);
      t.cancel = el('button', { type: 'button', class: 'link', textContent: 'Cancel' });
      t.cancel.addEventListener('click', () => {
        peer.cancelFile(e.id);
        fileFailed(t, 'cancelled');
      });
      button.after(t.bar, t.cancel);
      peer.requestFile(e);
    });
    entry(e.from, e.thread, el('p', { class: 'file' }, button, state));
  });

  function fileFailed(t, message) {
    if (t.bar) t.bar.remove();
    if (t.cancel) t.cancel.remove();
    t.bar = t.cancel = null;
    t.button.disabled = false;  // let the user try again
    t.state.textContent = message;
    t.state.classList.add('error');
  }

  peer.on('file:progress', (e) => {
    if (e.from) {
      const t = transfers.get(`${e.from}:${e.id}`);
      if (t && t.bar) setProgress(t.bar, t.state, e.received, e.size);
    } else if (e.to) {
      const row = sendRow(e);
      if (row) setProgress(row.bar, row.state, e.sent, e.size);
    }
  });

  peer.on('file:sent', (e) => {
    const row = sendRow(e);
    if (row) {
      setProgress(row.bar, row.state, e.size, e.size);
      row.state.textContent = 'delivered';
    }
  });

  peer.on('file:complete', (e) => {
    if (!e.from || !e.blob) return;
    const t = transfers.get(`${e.from}:${e.id}`);
    if (!t) return;
    const link = el('a', { class: 'file-offer file-download', 'data-file-id': e.id,
      href: URL.createObjectURL(e.blob), download: e.name || 'file' },
        'Save ', el('strong', { textContent: e.name }),
        el('span', { class: 'size', textContent: formatSize(e.size) }));
    t.button.replaceWith(link);
    if (t.bar) t.bar.remove();
    if (t.cancel) t.cancel.remove();
    t.state.textContent = '';
    t.state.classList.remove('error');
    transfers.delete(`${e.from}:${e.id}`);
  });

  peer.on('file:error', (e) => {
    if (e.from) {
      const t = transfers.get(`${e.from}:${e.id}`);
      if (t && t.bar) fileFailed(t, `failed: ${e.message || 'unknown error'}`);
    } else if (e.to) {
      const row = sendRow(e);
      if (row) {
        row.state.textContent = `failed: ${e.message || 'unknown error'}`;
        row.state.classList.add('error');
      }
    }
  });

  /* ---------- local media ---------- */

  function stopRemovedTracks() {
    for (const kind of ['audio', 'video']) {
      for (const track of removed[kind]) track.stop();
      removed[kind] = [];
    }
  }

  function toggleCamera() {
    if (peer.localmedia) {
      stopRemovedTracks();
      peer.removeMedia();
      renderLocal();
      return;
    }
    ui.camera.disabled = true;
    peer.addMedia(() => {
      ui.camera.disabled = false;
      renderLocal();
    }, (error) => {
      ui.camera.disabled = false;
      showNotice(`Camera and microphone unavailable: ${(error && (error.message || error.name)) || error}`);
      renderLocal();
    });
  }

  /* Mute and Hide picture take the track out of the shared stream and put it back. */
  function toggleTrack(kind) {
    const stream = peer.localmedia;
    if (!stream) return;
    const live = stream.getTracks().filter((t) => t.kind === kind);
    if (live.length) {
      for (const track of live) stream.removeTrack(track);
      removed[kind] = live;
    } else {
      for (const track of removed[kind]) stream.addTrack(track);
      removed[kind] = [];
    }
    peer.addMedia(stream);
    renderLocal();
  }

  ui.camera.addEventListener('click', toggleCamera);
  ui.self.querySelector('.start-camera').addEventListener('click', toggleCamera);
  ui.mute.addEventListener('click', () => toggleTrack('audio'));
  ui.picture.addEventListener('click', () => toggleTrack('video'));

  /* ---------- room buttons and share link ---------- */

  ui.newThread.addEventListener('click', () => { location.hash = randomRoom(); });
  ui.exit.addEventListener('click', () => { if (joined) leave(); });
  ui.rejoin.addEventListener('click', () => { if (!joined) join(); });

  ui.copyLink.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(inviteUrl());
      ui.copyLink.textContent = 'Copied';
    } catch {
      getSelection().selectAllChildren(ui.shareLink);  // for copying by hand
      ui.copyLink.textContent = 'Selected';
    }
    setTimeout(() => { ui.copyLink.textContent = 'Copy'; }, 2000);
  });

  /* ---------- peer events ---------- */

  peer.on('socket:connect', (e) => {
    // Not resumed: the server forgot us, peer.js joins our threads again and
    // the members answer anew, so the tiles we have may be stale.
    if (myId && !e.resumed) {
      clearMembers();
      render();
    }
    if (connectNotice) {
      ui.notice.hidden = true;
      connectNotice = false;
    }
    if (!greeted) {
      greeted = true;
      if (joined) note(`You joined #${room}`);
    }
    myId = e.id || peer.id;
    if (e.name) names.set(myId, e.name);
    ui.self.querySelector('.name').textContent = who(myId);
    ui.self.querySelector('.avatar').replaceWith(avatar(myId));
    setStatus('connected');
  });

  peer.on('socket:disconnect', (e) => {
    if (e.from) {
      streams.delete(e.from);
      removeMember(e.from, 'disconnected');
    } else {
      // peer.js gives up after 1000 (session ended) and 4000 (taken over).
      setStatus({ 1000: 'ended', 4000: 'replaced' }[e.code] || 'reconnecting');
    }
  });

  peer.on('thread:connect, thread:change', (e) => {
    learnName(e);
    if (e.from && joined && e.thread === room) addMember(e.from);
    learnKind(e);
  });

  peer.on('thread:disconnect', (e) => {
    if (e.from && e.thread === room) removeMember(e.from);
  });

  peer.on('media:connect', (e) => {
    if (!e.from || !e.stream) return;
    streams.set(e.from, e.stream);
    if (!watched.has(e.stream)) {
      watched.add(e.stream);
      const update = () => { if (streams.get(e.from) === e.stream) showStream(e.from); };
      e.stream.addEventListener('addtrack', update);
      e.stream.addEventListener('removetrack', update);
    }
    if (joined && !tiles.has(e.from)) addMember(e.from);
    showStream(e.from);
  });

  peer.on('media:disconnect', (e) => {
    if (!e.from) return;
    streams.delete(e.from);
    showStream(e.from);
  });

  peer.on('localmedia:connect, localmedia:disconnect', renderLocal);

  peer.on('error', (e) => {
    if (e.code === 'unauthorized') {
      // peer.js asked the server (GET /auth) and stopped retrying.
      refused = true;
      setStatus('unauthorized');
      showNotice(token
        ? `The server refused the auth token in this page's address: ${e.reason}. `
          + `Open the page again with a valid one, /?token=TOKEN#${room}. Not retrying.`
        : 'This server needs an auth token. Open the page with one in its address, '
          + `/?token=TOKEN#${room}, from whoever runs the server (tools/token mints them). `
          + 'Not retrying.');
      connectNotice = false;
      render();
      return;
    }
    if (e.code === 'connect-failed') {
      if (refused) return;
      // Said once per outage; a greeting clears it.
      if (myId) setStatus('reconnecting');
      else setStatus('failed');
      showNotice(`Could not connect to the server: it refused the connection or cannot be reached.${
        token ? ' The token in this page\'s address may be invalid or expired.' : ''} Retrying…`);
      connectNotice = true;
      return;
    }
    // A refused resume token is handled by peer.js: it only means a new id.
    if (e.code && e.code !== 'bad-token') note(`Server: ${e.message || e.code}`);
  });

  peer.on('message', (e) => {
    learnName(e);
    if (e.from) entry(e.from, e.thread, text(e.data));
  });

  /* ---------- start ---------- */

  if (!rtc) {
    showNotice('This browser has no WebRTC: you can chat, but not share video or files.');
    ui.camera.disabled = true;
    ui.self.querySelector('.start-camera').disabled = true;
  } else if (explainInsecure()) {
    ui.camera.disabled = true;
    ui.self.querySelector('.start-camera').disabled = true;
  }

  /* A TURN server that refuses the credentials the server handed out:
     members on other networks cannot be reached through it. Said once. */
  let turnRefused = false;
  peer.on('stream:ice-error', (e) => {
    if (turnRefused || !/^turns?:/.test(e.url || '') || e.errorCode < 400 || e.errorCode >= 500) return;
    turnRefused = true;
    showNotice(`The TURN server ${e.url} refused this page's credentials (${e.errorCode} ${
      e.errorText || ''}): members on other networks may not be reached. Its static-auth-secret `
      + 'and the signalling server\'s --turn-secret must be the same.');
  });

  ui.self.querySelector('.badge').prepend(micOff());
  window.addEventListener('hashchange', onHashChange);
  peer.init(token ? { token } : {});
  onHashChange();
  renderLocal();
})();
