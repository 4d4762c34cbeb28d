/* peer.js: the browser client of peerjs-signalling, with the PeerJS API.
 *
 *   <script src="/peer.js"></script>            -> window.peer
 *   import peer from '/peer.mjs';               -> the same object
 *
 * One WebSocket to the server (docs/protocol.md), one RTCPeerConnection per
 * remote member with a data channel, media by the members' thread
 * constraints, files over a data channel of their own per transfer
 * (docs/protocol.md, "Files over data channels"). No dependencies.
 */
(function (global) {
  'use strict';

  const FILE_CHUNK = 16 * 1024;           /* safe with every browser */
  const FILE_HIGH_WATER = 1024 * 1024;    /* pause sending above this */
  const FILE_LOW_WATER = 256 * 1024;      /* resume below this */
  const FILE_READ_BLOCK = 1024 * 1024;    /* bytes read from the file at once */
  const PROGRESS_EVERY_MS = 100;
  const OUTBOX_LIMIT = 1000;              /* messages held while offline */
  const RECONNECT_MIN_MS = 250;
  const RECONNECT_MAX_MS = 5000;
  const REJOIN_WAIT_MS = 10000;           /* after a server restart */
  const LOCAL_POLL_MS = 250;              /* looks at peer.localmedia's tracks */
  const REMEMBERED_MAX = 256;             /* file:requests and offers kept for sendFile */
  const KINDS = ['audio', 'video'];

  /* ------------------------------------------------------------------ */
  /* SHA-256, incremental: WebCrypto has no streaming digest and needs a
   * secure context, and files should not be held twice to be hashed. */

  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  class Sha256 {
    constructor () {
      this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
      this.block = new Uint8Array(64);
      this.used = 0;
      this.length = 0;
      this.w = new Uint32Array(64);
    }

    update (data) {
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
      let i = 0;
      this.length += bytes.length;
      if (this.used) {
        const n = Math.min(64 - this.used, bytes.length);
        this.block.set(bytes.subarray(0, n), this.used);
        this.used += n;
        i = n;
        if (this.used < 64) return this;
        this._compress(this.block, 0);
        this.used = 0;
      }
      for (; i + 64 <= bytes.length; i += 64) this._compress(bytes, i);
      this.block.set(bytes.subarray(i), 0);
      this.used = bytes.length - i;
      return this;
    }

    hex () {
      const bits = this.length * 8;
      const pad = new Uint8Array((this.used < 56 ? 56 : 120) - this.used + 8);
      pad[0] = 0x80;
      const view = new DataView(pad.buffer);
      view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
      view.setUint32(pad.length - 4, bits >>> 0);
      this.update(pad);
      return Array.from(this.h, (x) => x.toString(16).padStart(8, '0')).join('');
    }

    _compress (b, o) {
      const w = this.w;
      for (let t = 0; t < 16; t++) {
        const p = o + t * 4;
        w[t] = (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
      }
      for (let t = 16; t < 64; t++) {
        const a = w[t - 15], c = w[t - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((c >>> 17) | (c << 15)) ^ ((c >>> 19) | (c << 13)) ^ (c >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let [A, B, C, D, E, F, G, H] = this.h;
      for (let t = 0; t < 64; t++) {
        const S1 = ((E >>> 6) | (E << 26)) ^ ((E >>> 11) | (E << 21)) ^ ((E >>> 25) | (E << 7));
        const ch = (E & F) ^ (~E & G);
        const t1 = (H + S1 + ch + K[t] + w[t]) | 0;
        const S0 = ((A >>> 2) | (A << 30)) ^ ((A >>> 13) | (A << 19)) ^ ((A >>> 22) | (A << 10));
        const maj = (A & B) ^ (A & C) ^ (B & C);
        const t2 = (S0 + maj) | 0;
        H = G; G = F; F = E; E = (D + t1) | 0;
        D = C; C = B; B = A; A = (t1 + t2) | 0;
      }
      const h = this.h;
      h[0] += A; h[1] += B; h[2] += C; h[3] += D;
      h[4] += E; h[5] += F; h[6] += G; h[7] += H;
    }
  }

  /* ------------------------------------------------------------------ */
  /* Events: on('a, b', fn), one, off, emit; '*' handlers get the name. */

  function names (list) {
    return String(list).split(/[\s,]+/).filter(Boolean);
  }

  class Emitter {
    constructor () {
      this._handlers = new Map();
    }

    on (list, fn) {
      for (const name of names(list)) {
        if (!this._handlers.has(name)) this._handlers.set(name, []);
        this._handlers.get(name).push({ fn, once: false });
      }
      return this;
    }

    one (list, fn) {
      for (const name of names(list)) {
        if (!this._handlers.has(name)) this._handlers.set(name, []);
        this._handlers.get(name).push({ fn, once: true });
      }
      return this;
    }

    off (list, fn) {
      for (const name of names(list)) {
        const hs = this._handlers.get(name);
        if (!hs) continue;
        const keep = fn ? hs.filter((h) => h.fn !== fn) : [];
        if (keep.length) this._handlers.set(name, keep);
        else this._handlers.delete(name);
      }
      return this;
    }

    emit (name, e, callback) {
      const run = (key, args) => {
        const hs = this._handlers.get(key);
        if (!hs) return;
        for (const h of hs.slice()) {
          if (h.once) this.off(key, h.fn);
          try {
            h.fn.apply(this, args);
          } catch (err) {
            console.error('peer.js: handler for', name, 'threw', err);
          }
        }
      };
      run(name, [e, callback]);
      run('*', [name, e, callback]);
      return this;
    }
  }

  /* ------------------------------------------------------------------ */

  function randomId () {
    const a = new Uint32Array(2);
    global.crypto.getRandomValues(a);
    return a[0].toString(36) + a[1].toString(36);
  }

  function resolveUrl (url) {
    const loc = global.location;
    const secure = loc && loc.protocol === 'https:';
    if (!url) return (secure ? 'wss://' : 'ws://') + loc.host + '/peerjs';
    if (url.startsWith('//')) url = (secure ? 'wss:' : 'ws:') + url;
    url = url.replace(/^http(s?):/, 'ws$1:');
    const u = new URL(url);
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/peerjs';
    return u.toString();
  }

  /* Whether constraints let a kind through. The original shared the whole
   * camera-and-microphone stream with `video`, so an `audio` that is not
   * given follows `video` (docs/protocol.md). `undefined` counts as not
   * given: JSON drops it, so that is what the other members see too. */
  function allows (constraints, kind) {
    if (!constraints) return false;
    if (kind === 'audio' && constraints.audio === undefined) return !!constraints.video;
    return !!constraints[kind];
  }

  function merge (base, extra) {
    const out = Object.assign({}, base || {});
    for (const k of Object.keys(extra || {})) {
      const v = extra[k];
      out[k] = v && typeof v === 'object' && !Array.isArray(v) ? merge(out[k], v) : v;
    }
    return out;
  }

  /* A remote member: one RTCPeerConnection, shared by all common threads. */
  class Remote {
    constructor (id, master) {
      this.id = id;
      this.master = master;   /* the larger id makes every offer */
      this.pc = null;
      this.channel = null;
      this.candidates = [];   /* received before the remote description */
      this.makingOffer = false;
      this.offerAgain = false;
      this.stream = null;     /* their media, as media:connect gave it */
      this.label = null;      /* the stream our tracks go in, for its id */
      this.transfers = new Set();
    }
  }

  class Peer extends Emitter {
    constructor () {
      super();
      this.id = null;
      this.name = null;
      this.threads = {};
      this.localmedia = null;
      this.stun_server = null;     /* the original's way to name one */
      /* The ICE servers of every RTCPeerConnection: the greeting's (the
       * server's --ice-server, with TURN credentials minted for this
       * session), unless the application gave its own. */
      this.iceServers = [];
      this._greetingIce = this.iceServers;
      this.support = {
        rtc: typeof global.RTCPeerConnection === 'function',
        datachannel: typeof global.RTCPeerConnection === 'function' &&
          'createDataChannel' in global.RTCPeerConnection.prototype,
      };
      this.maxMessageSize = 65536;
      this.token = null;             /* auth token, presented on every connection */
      this.expires = null;           /* its exp (seconds since the epoch), from the server */
      this._url = null;              /* the server connected to, or tried */
      this._urls = [];               /* every server given, tried in turn */
      this._ws = null;
      this._connected = false;
      this._closing = false;
      this._failed = false;          /* connect-failed told for this outage */
      this._refused = false;         /* the server refused our token: no more retries */
      this._token = null;
      this._lastSeq = 0;
      this._outbox = [];
      this._holding = null;          /* members awaited before the outbox goes */
      this._holdTimer = null;
      this._callbacks = new Map();
      this._callbackSeq = 0;
      this._retry = 0;
      this._retryTimer = null;
      this._remotes = new Map();
      this._tags = new Set();
      this._watches = new Set();
      this._offers = new Map();      /* offerFile: id -> File */
      this._wanted = new Map();      /* requestFile: from/id -> offer */
      this._transfers = new Map();   /* id -> Set of transfer states */
      this._requests = [];           /* file:requests for sendFile: {from, id} */
      this._answering = null;        /* the one whose handlers run now */
      this._sentOffers = new Map();  /* file:offers sent with send(): id -> name */
      this._localTimer = null;
      this._localSeen = '';
    }

    /* -------------------------------------------------------------- */
    /* The signalling connection */

    init (url, options) {
      if (url && typeof url === 'object' && !Array.isArray(url)) {
        options = url;
        url = undefined;
      }
      options = options || {};
      if (options.iceServers) this.iceServers = options.iceServers;
      if (options.token) this.token = options.token;
      if (this._url) return this;
      /* Several servers (nodes of one cluster, docs/scaling.md): the first
       * is used until its connection is lost, then the next, in turn. */
      const urls = Array.isArray(url) ? url : [url];
      if (urls.length === 0) urls.push(undefined);
      this._urls = urls.map(resolveUrl);
      this._url = this._urls[0];
      this._closing = false;
      this._open();
      if (global.addEventListener) {
        global.addEventListener('beforeunload', () => this.disconnect());
      }
      return this;
    }

    _open () {
      const query = [];
      if (this.token) query.push('token=' + encodeURIComponent(this.token));
      if (this._token) {
        query.push('resume=' + encodeURIComponent(this._token), 'last=' + this._lastSeq);
      }
      let url = this._url;
      if (query.length) url += (url.includes('?') ? '&' : '?') + query.join('&');
      const ws = new WebSocket(url);
      this._ws = ws;
      ws.onmessage = (ev) => {
        if (this._ws === ws) this._received(ev.data);
      };
      ws.onclose = (ev) => {
        if (this._ws === ws) this._closed(ev);
      };
    }

    _closed (ev) {
      const was = this._connected;
      this._ws = null;
      this._connected = false;
      /* 4000: this session was resumed on another connection. */
      const reconnecting = !this._closing && ev.code !== 4000;
      if (was) this.emit('socket:disconnect', { code: ev.code, reason: ev.reason, reconnecting });
      if (!was && !this._closing && !this._failed) {
        /* No greeting on this socket. A browser does not say why: a refused
         * upgrade (401 for a token, 403 for an origin) and a server that
         * is down look the same. Told once until a greeting comes. */
        this._failed = true;
        this.emit('error', {
          code: 'connect-failed',
          message: 'could not connect to ' + this._url + ': the server refused ' +
            'the connection or cannot be reached' +
            (this.token ? '; the auth token may be invalid or expired' : ''),
        });
      }
      if (!was && !this._closing) this._checkToken();
      if (!reconnecting || this._refused) return;
      /* The next server, resuming there; the delay grows once every server
       * has been tried. */
      const n = this._urls.length;
      this._url = this._urls[(this._urls.indexOf(this._url) + 1) % n];
      const delay = Math.min(RECONNECT_MAX_MS,
        RECONNECT_MIN_MS * 2 ** Math.floor(this._retry++ / n));
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        if (!this._closing && !this._refused) this._open();
      }, delay);
    }

    /* A socket closed without a greeting. Whether the server refused our
     * token, a WebSocket cannot tell; the server says it over plain HTTP
     * (GET /auth next to /peerjs). On a 401 there, retrying cannot help:
     * stop, and say so with the error 'unauthorized'. Any other answer, or
     * none, and the retries go on. */
    _checkToken () {
      if (typeof global.fetch !== 'function' || typeof global.URL !== 'function') return;
      let url;
      try {
        url = new URL('auth', this._url.replace(/^ws(s?):/, 'http$1:'));
      } catch (err) {
        return;
      }
      const token = this.token;
      if (token) url.searchParams.set('token', token);
      global.fetch(url.href, { cache: 'no-store', credentials: 'omit' }).then((res) => {
        if (res.status !== 401) return null;
        return res.json().catch(() => ({})).then((body) => {
          /* A token set meanwhile is judged on its own connection. */
          if (this._connected || this._closing || this._refused || token !== this.token) return;
          this._refused = true;
          if (this._retryTimer) {
            clearTimeout(this._retryTimer);
            this._retryTimer = null;
          }
          const why = body && typeof body.error === 'string' ? body.error : '401 Unauthorized';
          this.emit('error', {
            code: 'unauthorized',
            token: Boolean(this.token),
            reason: why,
            message: (this.token ? 'the server refused the auth token: '
              : 'the server requires an auth token: ') + why + '; not retrying',
          });
        });
      }).catch(() => {});
    }

    _received (text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (err) {
        console.warn('peer.js: the server sent something that is not JSON', text);
        return;
      }
      if (typeof msg.seq === 'number') {
        if (msg.seq <= this._lastSeq) return;   /* replayed twice */
        this._lastSeq = msg.seq;
      }
      if (msg.type === 'socket:connect' && !msg.seq) {
        this._greeted(msg);
        return;
      }
      if (msg.callback_response !== undefined && this._callbacks.has(msg.callback_response)) {
        const cb = this._callbacks.get(msg.callback_response);
        this._callbacks.delete(msg.callback_response);
        if (msg.type === 'error') console.warn('peer.js: error reply', msg);
        try {
          cb.call(this, msg);
        } catch (err) {
          console.error('peer.js: callback threw', err);
        }
        return;
      }
      this._dispatch(msg);
    }

    _greeted (msg) {
      const previous = this.id;
      if (!msg.resumed) this._lastSeq = 0;
      this.id = msg.id;
      /* Our own name, when the auth token gives one. */
      this.name = typeof msg.name === 'string' ? msg.name : null;
      this.expires = typeof msg.expires === 'number' ? msg.expires : null;
      this._token = msg.token;
      this._connected = true;
      this._failed = false;
      this._refused = false;
      this._retry = 0;
      if (msg.max_message_size) this.maxMessageSize = msg.max_message_size;
      /* Fresh credentials on every greeting, resumes included; an
       * application that set peer.iceServers keeps its own. */
      if (this.iceServers === this._greetingIce) {
        this.iceServers = this._greetingIce = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
      }
      if (previous && previous !== msg.id) {
        /* A new identity: every connection was to the old one. */
        for (const r of Array.from(this._remotes.values())) this._closeRemote(r);
        for (const t of Object.values(this.threads)) t.members = {};
      }
      if (previous && !msg.resumed) {
        this._restore();
        /* The server restarted: what was written during the outage is for
         * members who are rejoining too. Hold it until they are back (or
         * for REJOIN_WAIT_MS), or it would reach an empty room. */
        const known = new Set();
        for (const t of Object.values(this.threads)) Object.keys(t.members).forEach((m) => known.add(m));
        if (known.size && this._outbox.length) {
          this._holding = known;
          this._holdTimer = setTimeout(() => this._release(), REJOIN_WAIT_MS);
        }
      }
      if (!this._holding) this._release();
      this.emit('socket:connect', { id: this.id, name: this.name, resumed: !!msg.resumed });
    }

    /* Send what waited in the outbox, in order. */
    _release () {
      if (this._holdTimer) clearTimeout(this._holdTimer);
      this._holdTimer = null;
      this._holding = null;
      if (!this._connected) return;
      const queued = this._outbox;
      this._outbox = [];
      for (const text of queued) this._ws.send(text);
    }

    /* The server forgot us (restart, or grace passed): join again, ahead
     * of anything queued. */
    _restore () {
      const now = (obj) => this._ws.send(JSON.stringify(obj));
      for (const t of Object.values(this.threads)) {
        if (t.constraints !== false) now({ type: 'thread:connect', thread: t.id, constraints: t.constraints });
      }
      if (this._tags.size) now({ type: 'presence:tag', data: Array.from(this._tags) });
      if (this._watches.size) now({ type: 'presence:watch', to: Array.from(this._watches) });
    }

    _send (obj) {
      const text = JSON.stringify(obj);
      if (this._connected && !this._holding) {
        this._ws.send(text);
      } else {
        if (this._outbox.length >= OUTBOX_LIMIT) {
          const dropped = this._outbox.shift();
          console.warn('peer.js: offline queue full; dropped', dropped);
        }
        this._outbox.push(text);
      }
    }

    send (type, fields, callback) {
      let obj;
      if (typeof type === 'string') {
        if (typeof fields === 'function') {
          callback = fields;
          fields = undefined;
        }
        obj = Object.assign({}, fields || {}, { type });
      } else {
        callback = fields;
        obj = Object.assign({}, type);
      }
      if (typeof callback === 'function') {
        obj.callback_id = ++this._callbackSeq;
        this._callbacks.set(obj.callback_id, callback);
      }
      this._noteSent(obj);
      this._send(obj);
      return this;
    }

    /* Files the original way: the page offers with send({type:'file:offer',
     * id, name}), the other side asks with send({type:'file:request', to,
     * id}), and the offerer answers with sendFile(file, to) from its
     * file:request handler. What goes through send() is noted, so that the
     * requester takes the channel for that id, and the offerer's sendFile
     * finds the id it answers (_requestFor). */
    _noteSent (obj) {
      if (obj.id === undefined || obj.id === null) return;
      const id = String(obj.id);
      if (obj.type === 'file:request' && typeof obj.to === 'string') {
        const key = obj.to + '/' + id;
        if (!this._wanted.has(key)) this._wanted.set(key, { from: obj.to, id });
        if (this.support.datachannel && this.id && obj.to !== this.id) this._remote(obj.to);
      } else if (obj.type === 'file:offer') {
        this._sentOffers.delete(id);
        this._sentOffers.set(id, obj.name);
        if (this._sentOffers.size > REMEMBERED_MAX) {
          this._sentOffers.delete(this._sentOffers.keys().next().value);
        }
      }
    }

    /* A fresh auth token: presented on every connection from now on, and
     * handed to the server at once when connected (socket:token), so that
     * the session outlives the old token's exp. */
    setToken (token) {
      this.token = token || null;
      if (this._connected && this.token) this._send({ type: 'socket:token', token: this.token });
      if (this._refused && !this._closing && !this._ws) {
        /* Stopped for a refused token: the new one gets a fresh try. */
        this._refused = false;
        this._failed = false;
        this._retry = 0;
        this._open();
      }
      return this;
    }

    disconnect () {
      if (this._closing) return this;
      this._closing = true;
      if (this._retryTimer) clearTimeout(this._retryTimer);
      if (this._holdTimer) clearTimeout(this._holdTimer);
      if (this._connected) this._ws.send(JSON.stringify({ type: 'socket:disconnect' }));
      for (const r of Array.from(this._remotes.values())) this._closeRemote(r);
      if (this._ws) this._ws.close(1000);
      return this;
    }

    /* -------------------------------------------------------------- */
    /* Incoming messages */

    _dispatch (msg) {
      let callback;
      if (msg.callback_id !== undefined && msg.from) {
        let answered = false;
        callback = (reply) => {
          if (answered) return;
          answered = true;
          const out = Object.assign({}, reply || {});
          delete out.type;
          out.to = msg.from;
          out.callback_response = msg.callback_id;
          this._send(out);
        };
      }
      const from = msg.from;
      let answering = null;
      switch (msg.type) {
        case 'thread:connect':
        case 'thread:change':
          this._memberChanged(msg);
          break;
        case 'thread:disconnect':
          this._memberLeft(msg.thread, from);
          break;
        case 'socket:disconnect':
          if (from) this._gone(from);
          break;
        case 'stream:offer':
          this._onOffer(from, msg.data);
          break;
        case 'stream:answer':
          this._onAnswer(from, msg.data);
          break;
        case 'stream:candidate':
          this._onCandidate(from, msg.data);
          break;
        case 'stream:makeoffer':
          if (this.support.rtc && from) {
            const r = this._remote(from);
            if (r.master) this._offer(r);
          }
          break;
        case 'file:request':
          if (this._offers.has(String(msg.id))) {
            this.sendFile(this._offers.get(String(msg.id)), from, String(msg.id));
          } else if (from && msg.id !== undefined && msg.id !== null) {
            /* Not an offerFile file: for the page to answer, as the
             * original demo does, with sendFile(file, from). */
            answering = { from, id: String(msg.id) };
            this._requests.push(answering);
            if (this._requests.length > REMEMBERED_MAX) this._requests.shift();
          }
          break;
        case 'file:cancel': {
          /* Through the server: the offerer refused a request of ours (it
           * offers no such file any more). */
          const key = from + '/' + String(msg.id);
          const offer = this._wanted.get(key);
          const started = this._transfers.has(String(msg.id));
          if (offer && !started) {
            this._wanted.delete(key);
            this.emit('file:error', {
              id: String(msg.id), from, name: offer.name,
              message: 'the sender refused: ' + (msg.reason || 'cancelled'),
            });
          }
          break;
        }
        case 'socket:token':
          /* The server took a renewed token: its name and exp from now on. */
          this.name = typeof msg.name === 'string' ? msg.name : null;
          this.expires = typeof msg.expires === 'number' ? msg.expires : null;
          break;
        case 'error':
          if (msg.code === 'no-shared-thread' && typeof msg.ref_type === 'string'
              && (msg.ref_type.startsWith('stream:') || msg.ref_type === 'file:cancel')) {
            /* The member left the thread we shared just before our
             * negotiation reached it: nothing to tell the page. */
            console.debug('peer.js: not delivered', msg.message);
            return;
          }
          console.warn('peer.js: server error', msg.code, msg.message);
          if (msg.code === 'forbidden' && msg.grant === 'threads' && msg.ref_type === 'thread:connect') {
            this._refusedThread(msg.thread);
          }
          break;
      }
      this._answering = answering;
      this.emit(msg.type, msg, callback);
      this._answering = null;
    }

    _memberChanged (msg) {
      const t = this.threads[msg.thread];
      if (!t || t.constraints === false || !msg.from) return;
      const joined = msg.type === 'thread:connect' && !msg.to;
      t.members[msg.from] = msg.constraints || {};
      if (this._holding && this._holding.delete(msg.from) && !this._holding.size) this._release();
      /* Answer a join directly, so both know each other's constraints. */
      if (joined) {
        this._send({ type: 'thread:connect', to: msg.from, thread: t.id, constraints: t.constraints });
      }
      if (this.support.rtc) this._sync(this._remote(msg.from));
    }

    _memberLeft (thread, from) {
      const t = this.threads[thread];
      if (!t || !from) return;
      delete t.members[from];
      const r = this._remotes.get(from);
      if (r) this._settle(r);
    }

    /* The token does not grant this thread: forget it, so that no
     * reconnection asks for it again. */
    _refusedThread (id) {
      const t = typeof id === 'string' ? this.threads[id] : undefined;
      if (!t) return;
      const members = Object.keys(t.members);
      t.constraints = false;
      t.members = {};
      delete this.threads[id];
      this.emit('thread:disconnect', { thread: id, refused: true });
      for (const m of members) {
        const r = this._remotes.get(m);
        if (r) this._settle(r);
      }
    }

    _gone (from) {
      this._requests = this._requests.filter((q) => q.from !== from);
      for (const t of Object.values(this.threads)) delete t.members[from];
      const r = this._remotes.get(from);
      if (r) this._closeRemote(r);
    }

    /* -------------------------------------------------------------- */
    /* Threads */

    thread (id, constraints) {
      if (id && typeof id === 'object') {
        constraints = id;
        id = undefined;
      }
      if (!id) id = randomId();
      id = String(id);
      let t = this.threads[id];
      if (constraints === undefined) {
        if (t) return t;
        constraints = {};
      }

      if (!t) {
        if (constraints === false) return { id, constraints: false, members: {} };
        const c = constraints === null ? {} : merge({}, constraints);
        t = this.threads[id] = { id, constraints: c, members: {} };
        this._send({ type: 'thread:connect', thread: id, constraints: c });
        this.emit('thread:connect', { thread: id, constraints: c });
        return t;
      }

      if (constraints === false) {
        const members = Object.keys(t.members);
        t.constraints = false;
        t.members = {};
        delete this.threads[id];
        this._send({ type: 'thread:disconnect', thread: id });
        this.emit('thread:disconnect', { thread: id });
        for (const m of members) {
          const r = this._remotes.get(m);
          if (r) this._settle(r);
        }
        return t;
      }

      /* null: stay in the thread, share no media. */
      t.constraints = constraints === null ? {} : merge(t.constraints, constraints);
      this._send({ type: 'thread:change', thread: id, constraints: constraints === null ? null : t.constraints });
      this.emit('thread:change', { thread: id, constraints: t.constraints });
      for (const m of Object.keys(t.members)) {
        const r = this._remotes.get(m);
        if (r) this._sync(r);
      }
      return t;
    }

    /* -------------------------------------------------------------- */
    /* Presence */

    tag (tags) {
      const list = [].concat(tags);
      list.forEach((t) => this._tags.add(String(t)));
      this._send({ type: 'presence:tag', data: list.map(String) });
      return this;
    }

    watch (tags, callback) {
      const list = [].concat(tags).map(String);
      list.forEach((t) => this._watches.add(t));
      return this.send('presence:watch', { to: list }, callback);
    }

    /* -------------------------------------------------------------- */
    /* Local media */

    addMedia (arg, fail) {
      if (global.MediaStream && arg instanceof global.MediaStream) {
        this._setLocal(arg);
        return this;
      }
      const done = typeof arg === 'function' ? arg : null;
      const live = this.localmedia &&
        this.localmedia.getTracks().some((t) => t.readyState === 'live');
      if (live) {
        if (done) done.call(this, this.localmedia);
        return this;
      }
      /* Camera and microphone, else whichever of them there is; a refused
       * permission is final. */
      const tries = [{ audio: true, video: true }, { audio: true }, { video: true }];
      const attempt = (i) => navigator.mediaDevices.getUserMedia(tries[i]).catch((error) => {
        if (error.name === 'NotAllowedError' || error.name === 'SecurityError' || i + 1 === tries.length) {
          throw error;
        }
        return attempt(i + 1);
      });
      if (!navigator.mediaDevices) {
        const error = new Error('getUserMedia needs a secure page (https or localhost)');
        this.emit('localmedia:failed', { error });
        if (typeof fail === 'function') fail.call(this, error);
        return this;
      }
      attempt(0).then((stream) => {
        this._setLocal(stream);
        if (done) done.call(this, stream);
      }, (error) => {
        this.emit('localmedia:failed', { error });
        if (typeof fail === 'function') fail.call(this, error);
      });
      return this;
    }

    _setLocal (stream) {
      const fresh = stream !== this.localmedia;
      this.localmedia = stream;
      if (fresh) {
        /* A track that ends by itself (device unplugged, permission
         * withdrawn) says so at once; the poll below catches it too. */
        for (const track of stream.getTracks()) {
          track.addEventListener('ended', () => this._checkLocal());
        }
        this.emit('localmedia:connect', { stream });
      }
      this._localSeen = this._localState();
      if (!this._localTimer) this._localTimer = setInterval(() => this._checkLocal(), LOCAL_POLL_MS);
      for (const r of this._remotes.values()) this._sync(r);
    }

    /* The tracks of peer.localmedia and their states, as one string. */
    _localState () {
      const stream = this.localmedia;
      return stream ? stream.getTracks().map((t) => t.id + '=' + t.readyState).join(' ') : '';
    }

    /* Browsers tell a page nothing about the changes it makes to its own
     * stream: no `ended` for a track it stopped itself, no `addtrack` or
     * `removetrack` for tracks it added or removed. Pages written for the
     * original do exactly that (Toggle, Mute, Picture), so the tracks are
     * looked at every LOCAL_POLL_MS while there is local media. A stream
     * whose tracks have all ended is gone (localmedia:disconnect); one
     * whose tracks were all removed is only empty. */
    _checkLocal () {
      const stream = this.localmedia;
      if (!stream) {
        clearInterval(this._localTimer);
        this._localTimer = null;
        return;
      }
      const state = this._localState();
      if (state === this._localSeen) return;
      this._localSeen = state;
      const tracks = stream.getTracks();
      if (tracks.length && !tracks.some((t) => t.readyState === 'live')) {
        this.removeMedia();
        return;
      }
      for (const r of this._remotes.values()) this._sync(r);
    }

    removeMedia () {
      const stream = this.localmedia;
      if (!stream) return this;
      this.localmedia = null;
      clearInterval(this._localTimer);
      this._localTimer = null;
      stream.getTracks().forEach((t) => t.stop());
      for (const r of this._remotes.values()) this._sync(r);
      this.emit('localmedia:disconnect', { stream });
      return this;
    }

    /* -------------------------------------------------------------- */
    /* Peer connections */

    /* What may flow between us and `id`, by kind: both allow it in at
     * least one common thread. */
    _allowed (id) {
      const allowed = { audio: false, video: false, any: false };
      for (const t of Object.values(this.threads)) {
        const theirs = t.members[id];
        if (!t.constraints || !theirs) continue;
        allowed.any = true;
        for (const k of KINDS) if (allows(t.constraints, k) && allows(theirs, k)) allowed[k] = true;
      }
      return allowed;
    }

    _remote (id) {
      let r = this._remotes.get(id);
      if (r) return r;
      r = new Remote(id, this.id > id);
      this._remotes.set(id, r);
      const servers = this.iceServers.slice();
      if (this.stun_server) servers.push({ urls: this.stun_server });
      const pc = new RTCPeerConnection({ iceServers: servers });
      r.pc = pc;
      pc.onicecandidate = (e) => {
        if (e.candidate) this._send({ type: 'stream:candidate', to: id, data: e.candidate.toJSON() });
      };
      /* A STUN or TURN server that failed us: a TURN server answering 401
       * refused the credentials (a wrong or expired secret). */
      pc.onicecandidateerror = (e) => {
        this.emit('stream:ice-error', { from: id, url: e.url, errorCode: e.errorCode, errorText: e.errorText });
      };
      pc.onnegotiationneeded = () => {
        if (r.master) this._offer(r);
        else this._send({ type: 'stream:makeoffer', to: id });
      };
      pc.oniceconnectionstatechange = () => {
        const state = pc.iceConnectionState;
        this.emit('stream:' + state, { from: id });
        /* A member gone without a goodbye: its transfers cannot finish. */
        if (state === 'disconnected' || state === 'failed') {
          for (const t of Array.from(r.transfers)) t.fail('the connection to ' + id + ' was lost');
        }
        if (state === 'failed' && r.master && pc.restartIce) pc.restartIce();
      };
      pc.ontrack = (e) => this._onTrack(r, e);
      pc.ondatachannel = (e) => this._onChannel(r, e.channel);
      if (r.master) this._onChannel(r, pc.createDataChannel('data'));
      return r;
    }

    _onChannel (r, channel) {
      if (channel.label.startsWith('file:')) {
        this._incomingFile(r, channel);
        return;
      }
      r.channel = channel;
      channel.onopen = () => this.emit('channel:connect', { from: r.id, id: r.id, to: this.id });
      channel.onmessage = (ev) => {
        let msg = ev.data;
        try {
          msg = JSON.parse(ev.data);
        } catch (err) { /* plain text is passed on as it is */ }
        this.emit('channel:message', { from: r.id, data: msg });
        if (msg && typeof msg === 'object' && msg.type) {
          this.emit(msg.type, Object.assign({}, msg, { from: r.id }));
        }
      };
    }

    /* Put our tracks on the connection, or take them off, as the threads
     * allow. The master owns the transceivers (one per kind); the other
     * side only sets directions and tracks on the ones the master made. */
    _sync (r) {
      const allowed = this._allowed(r.id);
      const pc = r.pc;
      for (const kind of KINDS) {
        const track = this.localmedia &&
          this.localmedia.getTracks().find((t) => t.kind === kind && t.readyState === 'live');
        const send = allowed[kind] && !!track;
        const recv = allowed[kind];
        let tr = pc.getTransceivers().find((t) => !t.stopped && t.receiver.track.kind === kind);
        if (!tr) {
          if (!recv || !r.master) continue;
          tr = pc.addTransceiver(kind, { direction: 'inactive' });
        }
        const want = send ? track : null;
        if (tr.sender.track !== want) {
          tr.sender.replaceTrack(want).catch((err) => console.warn('peer.js: replaceTrack', err));
        }
        /* The stream id the member sees is one of this connection's own,
         * not localmedia's: a page that finds its video elements by stream
         * id (the original demo) then makes a new one for a new connection
         * instead of finding the element of the closed one. */
        if (send && tr.sender.setStreams) {
          if (!r.label) r.label = new MediaStream();
          tr.sender.setStreams(r.label);
        }
        const direction = send && recv ? 'sendrecv' : send ? 'sendonly' : recv ? 'recvonly' : 'inactive';
        if (tr.direction !== direction) tr.direction = direction;
      }
    }

    /* After a member left a thread: keep the connection while a thread or
     * a transfer still needs it. */
    _settle (r) {
      if (this._allowed(r.id).any || r.transfers.size) this._sync(r);
      else this._closeRemote(r);
    }

    _closeRemote (r) {
      this._remotes.delete(r.id);
      for (const state of Array.from(r.transfers)) state.fail('the connection to ' + r.id + ' closed');
      try {
        r.pc.close();
      } catch (err) { /* already closed */ }
      if (r.stream) {
        r.stream = null;
        this.emit('media:disconnect', { from: r.id });
      }
    }

    _onTrack (r, e) {
      const stream = (e.streams && e.streams[0]) || r.stream || new MediaStream();
      if (!stream.getTracks().includes(e.track)) stream.addTrack(e.track);
      if (r.stream !== stream) {
        r.stream = stream;
        stream.addEventListener('removetrack', () => {
          if (r.stream === stream && !stream.getTracks().length) {
            r.stream = null;
            this.emit('media:disconnect', { from: r.id });
          }
        });
        this.emit('media:connect', { from: r.id, stream });
      }
    }

    async _offer (r) {
      const pc = r.pc;
      if (r.makingOffer || pc.signalingState !== 'stable') {
        r.offerAgain = true;
        return;
      }
      r.makingOffer = true;
      r.offerAgain = false;
      try {
        this._sync(r);
        await pc.setLocalDescription(await pc.createOffer());
        this._send({ type: 'stream:offer', to: r.id, data: { type: 'offer', sdp: pc.localDescription.sdp } });
      } catch (err) {
        console.warn('peer.js: offer to', r.id, 'failed', err);
      } finally {
        r.makingOffer = false;
      }
    }

    async _onOffer (from, data) {
      if (!from || !data || !this.support.rtc) return;
      const r = this._remote(from);
      if (r.master) return;   /* the larger id offers; never the other */
      const pc = r.pc;
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
        await this._flushCandidates(r);
        this._sync(r);
        await pc.setLocalDescription(await pc.createAnswer());
        this._send({ type: 'stream:answer', to: from, data: { type: 'answer', sdp: pc.localDescription.sdp } });
      } catch (err) {
        console.warn('peer.js: answering', from, 'failed', err);
      }
    }

    async _onAnswer (from, data) {
      const r = from && this._remotes.get(from);
      if (!r || !data || r.pc.signalingState !== 'have-local-offer') return;
      try {
        await r.pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
        await this._flushCandidates(r);
      } catch (err) {
        console.warn('peer.js: answer from', from, 'failed', err);
      }
      if (r.offerAgain) this._offer(r);
    }

    async _onCandidate (from, data) {
      const r = from && this._remotes.get(from);
      if (!r || !data) return;
      const c = {
        candidate: data.candidate,
        sdpMid: data.sdpMid,
        sdpMLineIndex: data.sdpMLineIndex !== undefined ? data.sdpMLineIndex : data.label,
      };
      if (!r.pc.remoteDescription) {
        r.candidates.push(c);
        return;
      }
      await r.pc.addIceCandidate(c).catch(() => { /* from an older session */ });
    }

    async _flushCandidates (r) {
      const list = r.candidates;
      r.candidates = [];
      for (const c of list) await r.pc.addIceCandidate(c).catch(() => {});
    }

    /* -------------------------------------------------------------- */
    /* Files: offered through the server, sent over a data channel of their
     * own (label "file:ID:NONCE"), chunks of 16 KiB, SHA-256 at the end. */

    offerFile (file, target) {
      const id = randomId();
      this._offers.set(id, file);
      const offer = Object.assign({}, target || {}, {
        id, name: file.name || 'file', size: file.size, mime: file.type || 'application/octet-stream',
      });
      this._send(Object.assign({ type: 'file:offer' }, offer));
      return id;
    }

    requestFile (offer) {
      const id = String(offer.id);
      if (!this.support.datachannel) {
        this.emit('file:error', { id, from: offer.from, message: 'this browser has no data channels' });
        return id;
      }
      this._wanted.set(offer.from + '/' + id, offer);
      this._remote(offer.from);
      this._send({ type: 'file:request', to: offer.from, id });
      return id;
    }

    cancelFile (id) {
      id = String(id);
      const states = this._transfers.get(id);
      if (states) for (const s of Array.from(states)) s.cancel('cancelled');
      /* Requested but not started: the sender's channel will be turned
       * away as not requested. */
      for (const [key, offer] of Array.from(this._wanted)) {
        if (String(offer.id) === id && !(states && states.size)) {
          this._wanted.delete(key);
          this.emit('file:error', { id, from: offer.from, name: offer.name, message: 'cancelled' });
        }
      }
      return this;
    }

    _track (r, state) {
      r.transfers.add(state);
      if (!this._transfers.has(state.id)) this._transfers.set(state.id, new Set());
      this._transfers.get(state.id).add(state);
      return () => {
        r.transfers.delete(state);
        const set = this._transfers.get(state.id);
        if (set) {
          set.delete(state);
          if (!set.size) this._transfers.delete(state.id);
        }
      };
    }

    /* The id for sendFile(file, to) without one: the request from `to`
     * whose handlers run now; else an unanswered request from `to`, for
     * the file offered under this name with send() if there is one, else
     * the oldest; else a new id, which a receiver takes only if it expects
     * it. A request answered this way is forgotten. */
    _requestFor (file, to) {
      let pick = this._answering && this._answering.from === to ? this._answering : null;
      if (!pick) {
        const theirs = this._requests.filter((q) => q.from === to);
        pick = theirs.find((q) => this._sentOffers.get(q.id) === file.name) || theirs[0];
      }
      if (!pick) return randomId();
      this._answering = null;
      const at = this._requests.indexOf(pick);
      if (at >= 0) this._requests.splice(at, 1);
      return pick.id;
    }

    sendFile (file, to, id) {
      if (!(global.Blob && file instanceof global.Blob) || typeof to !== 'string' || !to) {
        id = id === undefined || id === null ? undefined : String(id);
        this.emit('file:error', { id, to, message: 'sendFile needs a File or Blob and a member id' });
        return id;
      }
      id = id === undefined || id === null ? this._requestFor(file, to) : String(id);
      if (!this.support.datachannel) {
        this.emit('file:error', { id, to, message: 'this browser has no data channels' });
        return id;
      }
      const r = this._remote(to);
      const channel = r.pc.createDataChannel('file:' + id + ':' + randomId(), { ordered: true });
      channel.binaryType = 'arraybuffer';
      channel.bufferedAmountLowThreshold = FILE_LOW_WATER;
      let finished = false;
      let sent = 0;
      let lastProgress = 0;
      const state = { id, to };
      const untrack = this._track(r, state);
      const end = () => {
        finished = true;
        untrack();
        try {
          channel.close();
        } catch (err) { /* closed */ }
      };
      state.fail = (message) => {
        if (finished) return;
        end();
        this.emit('file:error', { id, to, message });
      };
      state.cancel = (reason) => {
        if (finished) return;
        if (channel.readyState === 'open') channel.send(JSON.stringify({ type: 'file:cancel', id, reason }));
        state.fail(reason || 'cancelled');
      };
      const drained = () => new Promise((resolve) => {
        if (channel.bufferedAmount <= FILE_HIGH_WATER) return resolve();
        channel.addEventListener('bufferedamountlow', () => resolve(), { once: true });
      });

      channel.onmessage = (ev) => {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (err) {
          return;
        }
        if (msg.type === 'file:ack') {
          end();
          this.emit('file:sent', { id, to, size: file.size });
        } else if (msg.type === 'file:cancel' || msg.type === 'file:error') {
          state.fail(msg.reason || msg.message || 'refused by the receiver');
        }
      };
      channel.onclose = () => state.fail('the receiver went away');
      channel.onopen = async () => {
        try {
          channel.send(JSON.stringify({
            type: 'file:start', id, name: file.name || 'file', size: file.size,
            mime: file.type || 'application/octet-stream', chunk: FILE_CHUNK,
          }));
          const hash = new Sha256();
          for (let at = 0; at < file.size && !finished; at += FILE_READ_BLOCK) {
            const block = new Uint8Array(await file.slice(at, at + FILE_READ_BLOCK).arrayBuffer());
            hash.update(block);
            for (let o = 0; o < block.length && !finished; o += FILE_CHUNK) {
              await drained();
              if (finished || channel.readyState !== 'open') return;
              const chunk = block.subarray(o, o + FILE_CHUNK);
              channel.send(chunk);
              sent += chunk.length;
              const now = Date.now();
              if (now - lastProgress >= PROGRESS_EVERY_MS) {
                lastProgress = now;
                this.emit('file:progress', { id, to, sent, size: file.size });
              }
            }
          }
          if (finished) return;
          this.emit('file:progress', { id, to, sent, size: file.size });
          channel.send(JSON.stringify({ type: 'file:end', id, size: sent, sha256: hash.hex() }));
        } catch (err) {
          state.cancel('could not read the file: ' + err.message);
        }
      };
      return id;
    }

    _incomingFile (r, channel) {
      const parts = channel.label.split(':');
      const id = parts[1];
      const offer = this._wanted.get(r.id + '/' + id);
      channel.binaryType = 'arraybuffer';
      if (!offer) {
        /* Refused; the closing is left to the sender (docs/protocol.md),
         * with a late close in case it does not. */
        const refuse = () => {
          channel.send(JSON.stringify({ type: 'file:cancel', id, reason: 'not requested' }));
          setTimeout(() => {
            try {
              channel.close();
            } catch (err) { /* closed */ }
          }, 2000);
        };
        if (channel.readyState === 'open') refuse();
        else channel.onopen = refuse;
        return;
      }
      const from = r.id;
      const hash = new Sha256();
      let chunks = [];
      let meta = null;
      let received = 0;
      let lastProgress = 0;
      let finished = false;
      const state = { id, from };
      const untrack = this._track(r, state);
      const end = () => {
        finished = true;
        chunks = null;
        untrack();
        this._wanted.delete(from + '/' + id);
      };
      state.fail = (message) => {
        if (finished) return;
        end();
        try {
          channel.close();
        } catch (err) { /* closed */ }
        this.emit('file:error', { id, from, name: meta ? meta.name : offer.name, message });
      };
      /* Refusing, the receiver tells the sender and leaves the closing to
       * it (docs/protocol.md): the sender may still have data on the way. */
      const refuse = (msg, why) => {
        if (finished) return;
        if (channel.readyState === 'open') channel.send(JSON.stringify(msg));
        end();
        setTimeout(() => {
          try {
            channel.close();
          } catch (err) { /* closed */ }
        }, 2000);
        this.emit('file:error', { id, from, name: meta ? meta.name : offer.name, message: why });
      };
      state.cancel = (reason) => refuse({ type: 'file:cancel', id, reason }, reason || 'cancelled');
      channel.onclose = () => state.fail('the sender went away before the file was complete');
      channel.onmessage = (ev) => {
        if (finished) return;
        if (typeof ev.data !== 'string') {
          if (!meta) return state.cancel('data before file:start');
          const bytes = new Uint8Array(ev.data);
          received += bytes.length;
          if (received > meta.size) return state.cancel('more bytes than announced');
          hash.update(bytes);
          chunks.push(bytes);
          const now = Date.now();
          if (now - lastProgress >= PROGRESS_EVERY_MS || received === meta.size) {
            lastProgress = now;
            this.emit('file:progress', { id, from, name: meta.name, received, size: meta.size });
          }
          return;
        }
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (err) {
          return state.cancel('unreadable control message');
        }
        if (msg.type === 'file:start') {
          meta = { name: msg.name || offer.name, size: Number(msg.size), mime: msg.mime || offer.mime || '' };
        } else if (msg.type === 'file:end') {
          const digest = hash.hex();
          if (!meta || received !== meta.size || msg.sha256 !== digest) {
            const why = received !== (meta && meta.size)
              ? 'size mismatch: ' + received + ' bytes of ' + (meta && meta.size)
              : 'SHA-256 mismatch';
            return refuse({ type: 'file:error', id, message: why }, why);
          }
          const blob = new Blob(chunks, { type: meta.mime });
          channel.send(JSON.stringify({ type: 'file:ack', id }));
          end();
          this.emit('file:complete', {
            id, from, name: meta.name, size: meta.size, mime: meta.mime, blob, sha256: digest,
          });
        } else if (msg.type === 'file:cancel') {
          state.fail('the sender cancelled: ' + (msg.reason || ''));
        }
      };
    }
  }

  const peer = new Peer();
  peer.Peer = Peer;
  peer.Sha256 = Sha256;
  global.peer = peer;
  if (typeof module === 'object' && module.exports) module.exports = peer;
})(typeof window !== 'undefined' ? window : globalThis);
