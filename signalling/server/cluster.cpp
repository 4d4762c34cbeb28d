#include "cluster.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <unistd.h>

namespace peerjs {

namespace {

const char NODE_KEY[] = "pj:node:";           /* heartbeat, with a TTL */
const char SESSION_KEY[] = "pj:session:";     /* directory: session -> node */
const char THREAD_KEY[] = "pj:thread:";       /* hash: member -> node */
const char NODE_THREADS_KEY[] = "pj:node-threads:";   /* threads a node joined */
const char CHANNEL[] = "pj:to:";              /* a node's pub/sub channel */
const char NODES_KEY[] = "pj:nodes";          /* set: every node id seen */
const char STATE_KEY[] = "pj:state:";         /* hash: a session's state */
const char BOX_KEY[] = "pj:box:";             /* list: a session's outbox */
const char LOST_KEY[] = "pj:undelivered:";    /* list: batches for a node not listening */
const char DOWN_KEY[] = "pj:down:";           /* when a node was found gone (ms) */
/* How long pj:down:ID outlives the grace period. */
const std::int64_t DOWN_KEEP_MS = 600000;

/* What every script that publishes starts with. Its first ARGV (taken
 * off here) is how long a node's list of undelivered batches stays (ms).
 * send () publishes, and keeps for a node that is not listening what it
 * would have got, in pj:undelivered:NODE: the node reads it when it
 * listens again (recover ()), and a session of a dead node that resumes
 * elsewhere finds its messages there. */
const char SEND_LUA[] = R"lua(
local lostttl = table.remove(ARGV, 1)
local function send(chan, env)
  local n = redis.call('PUBLISH', chan, env)
  if n == 0 then
    local lost = 'pj:undelivered:' .. string.sub(chan, 7)
    redis.call('RPUSH', lost, env)
    redis.call('PEXPIRE', lost, lostttl)
  end
  return n
end
-- One envelope per node, naming the sessions there it is for: name ()
-- adds a session of `node` to `nodes` (each starting with `env`), and
-- send_named () ends each and sends it on chan .. node.
local function name(nodes, env, node, id)
  local parts = nodes[node]
  if not parts then
    parts = {env}
    nodes[node] = parts
  end
  parts[#parts + 1] = #id .. ':' .. id .. ','
end
local function send_named(chan, nodes)
  for node, parts in pairs(nodes) do
    parts[#parts + 1] = ';'
    send(chan .. node, table.concat(parts))
  end
end
)lua";

/* A join: the live members before it (session, node pairs of other nodes)
 * are the answer; the notice goes to each of their nodes, naming the
 * members there it is for, and members of nodes whose heartbeat expired
 * are removed on the way. `env` is the envelope up to the op's last
 * field; the names and the op's end are added per node. */
const std::string JOIN_SCRIPT = SEND_LUA + std::string (R"lua(
local me, session, thread, nodekey, chan, env, tkey, ntkey =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local downkey, grace, keep = ARGV[9], tonumber(ARGV[10]), ARGV[11]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local members = redis.call('HGETALL', tkey)
local out, nodes, alive = {}, {}, {}
for i = 1, #members, 2 do
  local id, node = members[i], members[i + 1]
  if id ~= session then
    local live = alive[node]
    if live == nil then
      live = node == me or redis.call('EXISTS', nodekey .. node) == 1
      if not live then
        -- A gone node's members stay for its grace period: they may
        -- resume elsewhere.
        local down = redis.call('GET', downkey .. node)
        if not down then
          redis.call('SET', downkey .. node, now, 'PX', keep)
          down = now
        end
        live = now - tonumber(down) <= grace
      end
      alive[node] = live
    end
    if not live then
      redis.call('HDEL', tkey, id)
    elseif node ~= me then
      out[#out + 1] = id
      out[#out + 1] = node
      name(nodes, env, node, id)
    end
  end
end
redis.call('HSET', tkey, session, me)
redis.call('SADD', ntkey, thread)
send_named(chan, nodes)
return out
)lua");

/* A leave: out of the hash, the notice to the other nodes with members,
 * naming them as a join does. */
const std::string LEAVE_SCRIPT = SEND_LUA + std::string (R"lua(
local me, session, thread, chan, env, tkey, ntkey, last =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
redis.call('HDEL', tkey, session)
if last == '1' then redis.call('SREM', ntkey, thread) end
local members = redis.call('HGETALL', tkey)
local nodes = {}
for i = 1, #members, 2 do
  local id, node = members[i], members[i + 1]
  if node ~= me then
    name(nodes, env, node, id)
  end
end
send_named(chan, nodes)
return 0
)lua");

/* A session ended: out of its threads and the directory; the notice to
 * the nodes of the members left and of the nodes the router named.
 * ARGV: me, session, chan, env, thread key prefix, node-threads key,
 * session key, N, then N thread names each followed by "1" if this node
 * has no member left in it, then node ids. */
const std::string END_SCRIPT = SEND_LUA + std::string (R"lua(
local me, session, chan, env, tprefix, ntkey, skey =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local n = tonumber(ARGV[8])
local nodes = {}
for i = 0, n - 1 do
  local thread, last = ARGV[9 + 2 * i], ARGV[10 + 2 * i]
  local tkey = tprefix .. thread
  redis.call('HDEL', tkey, session)
  if last == '1' then redis.call('SREM', ntkey, thread) end
  for _, node in ipairs(redis.call('HVALS', tkey)) do nodes[node] = true end
end
for i = 9 + 2 * n, #ARGV do nodes[ARGV[i]] = true end
redis.call('DEL', skey)
nodes[me] = nil
for node in pairs(nodes) do send(chan .. node, env) end
return 0
)lua");

/* Where sessions are: for each id, its node if the directory has it and
 * that node's heartbeat key exists, else ''; for an id that is no session,
 * and for each tag, the carriers of that tag on other nodes (session,
 * node, ...). ARGV: this node, N, N ids, then the tags. */
const char LOOKUP_SCRIPT[] = R"lua(
local me, n = ARGV[1], tonumber(ARGV[2])
local nodes, idc, tagc = {}, {}, {}
local function carriers(tag)
  local out = {}
  local h = redis.call('HGETALL', 'pj:tag:' .. tag)
  for i = 1, #h, 2 do
    if h[i + 1] ~= me then
      out[#out + 1] = h[i]
      out[#out + 1] = h[i + 1]
    end
  end
  return out
end
for i = 3, 2 + n do
  local node = redis.call('GET', 'pj:session:' .. ARGV[i])
  if node and redis.call('EXISTS', 'pj:node:' .. node) == 1 then
    nodes[#nodes + 1] = node
    idc[#idc + 1] = {}
  else
    nodes[#nodes + 1] = ''
    idc[#idc + 1] = carriers(ARGV[i])
  end
end
for i = 3 + n, #ARGV do tagc[#tagc + 1] = carriers(ARGV[i]) end
return {nodes, idc, tagc}
)lua";

/* A session carries a tag: into its hash (session -> node); the nodes of
 * sessions holding a watch on it are asked to send it theirs ('w', naming
 * the watchers), unless `quiet`. ARGV: me, session, tag, quiet, the 'w'
 * envelope up to the watchers. */
const std::string TAG_SCRIPT = SEND_LUA + std::string (R"lua(
local me, session, tag, quiet, env = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('HSET', 'pj:tag:' .. tag, session, me)
redis.call('SADD', 'pj:node-tags:' .. me, tag)
if quiet == '1' then return 0 end
local w = redis.call('HGETALL', 'pj:watch:' .. tag)
local nodes = {}
for i = 1, #w, 2 do
  local id, node = w[i], w[i + 1]
  if node ~= me and id ~= session then
    name(nodes, env, node, id)
  end
end
send_named('pj:to:', nodes)
return 0
)lua");

/* A session holds a watch on a tag: into its hash (watcher -> node); the
 * answer is the tag's carriers on other nodes (session, node, ...), none
 * if `quiet`. ARGV: me, watcher, tag, quiet. */
const char WATCH_SCRIPT[] = R"lua(
local me, watcher, tag, quiet = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', 'pj:watch:' .. tag, watcher, me)
redis.call('SADD', 'pj:node-watches:' .. me, tag)
local out = {}
if quiet == '1' then return out end
local h = redis.call('HGETALL', 'pj:tag:' .. tag)
for i = 1, #h, 2 do
  if h[i + 1] ~= me and h[i] ~= watcher then
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
  end
end
return out
)lua";

/* A node is gone: its members leave every thread it had joined. Nothing
 * happens if its heartbeat came back meanwhile. */
const char CLEAN_SCRIPT[] = R"lua(
local dead, nodekey, ntkey, tprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', nodekey) == 1 then return -1 end
redis.call('SREM', ARGV[5], dead)
local threads = redis.call('SMEMBERS', ntkey)
for _, t in ipairs(threads) do
  local tkey = tprefix .. t
  local m = redis.call('HGETALL', tkey)
  for i = 1, #m, 2 do
    if m[i + 1] == dead then redis.call('HDEL', tkey, m[i]) end
  end
end
redis.call('DEL', ntkey)
-- Its tags and held watches, unless they moved with their session.
for _, kind in ipairs({'tag', 'watch'}) do
  local set = 'pj:node-' .. kind .. (kind == 'tag' and 's:' or 'es:') .. dead
  for _, t in ipairs(redis.call('SMEMBERS', set)) do
    local key = 'pj:' .. kind .. ':' .. t
    local m = redis.call('HGETALL', key)
    for i = 1, #m, 2 do
      if m[i + 1] == dead then redis.call('HDEL', key, m[i]) end
    end
  end
  redis.call('DEL', set)
end
return #threads
)lua";

/* A batch for a node. Nobody listening on its channel (the node died):
 * the batch is kept for its sessions to find when they resume elsewhere,
 * and sent on, marked 'R', to the nodes that the directory names for its
 * recipients now (those that resumed already). ARGV: channel, envelope,
 * the list to keep it in, its TTL (ms), the directory's key prefix, the
 * channel prefix, then the recipients. */
const std::string PUBLISH_SCRIPT = SEND_LUA + std::string (R"lua(
local chan, env, lost, ttl, skey, chanp =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if send(chan, env) > 0 then return 1 end
local sent = {}
for i = 7, #ARGV do
  local node = redis.call('GET', skey .. ARGV[i])
  if node and chanp .. node ~= chan and not sent[node] then
    sent[node] = true
    redis.call('PUBLISH', chanp .. node, 'R' .. env)
  end
end
return 0
)lua");

/* The state of sessions, written once per loop turn: per session its id,
 * its meta ('-' for unchanged), its thread names (newline-separated), its
 * "NEXT LAST" sequence numbers, "1" if the stored outbox is to be
 * written anew, the outbox's length, the count of new entries and the
 * entries ("SEQ TEXT"). */
const char STORE_SCRIPT[] = R"lua(
local ttl, statep, boxp = ARGV[1], ARGV[2], ARGV[3]
local i = 4
while i <= #ARGV do
  local id, meta, threads, seqs = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local fresh, keep, n = ARGV[i + 4], tonumber(ARGV[i + 5]),
    tonumber(ARGV[i + 6])
  i = i + 7
  local sk, bk = statep .. id, boxp .. id
  if fresh == '1' then redis.call('DEL', bk) end
  if meta ~= '-' then
    redis.call('HSET', sk, 'meta', meta, 'threads', threads)
  end
  redis.call('HSET', sk, 'seq', seqs)
  redis.call('PEXPIRE', sk, ttl)
  if n > 0 then redis.call('RPUSH', bk, unpack(ARGV, i, i + n - 1)) end
  i = i + n
  if keep == 0 then
    redis.call('DEL', bk)
  else
    redis.call('LTRIM', bk, -keep, -1)
    redis.call('PEXPIRE', bk, ttl)
  end
end
return 0
)lua";

/* A client resumes a session this node does not hold. Its node alive:
 * ask it to hand the session over ('h' on its channel). Gone, within its
 * grace period: take the state Redis keeps, move the session's
 * memberships and directory entry here, tell every node it moved ('m'),
 * and answer the state, the outbox, the batches its node never got and
 * the members of its threads. ARGV: me, session, heartbeat key prefix,
 * channel prefix, the 'h' envelope, the 'm' envelope, grace (ms), how
 * long pj:down:ID stays (ms), the directory's TTL (s). */
const char CLAIM_SCRIPT[] = R"lua(
local me, session, nodekey, chanp, henv, menv, grace, keep, dirttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]),
  ARGV[8], ARGV[9]
local skey = 'pj:session:' .. session
local node = redis.call('GET', skey)
if not node or node == me then return {'none'} end
if redis.call('EXISTS', nodekey .. node) == 1
    and redis.call('PUBLISH', chanp .. node, henv) > 0 then
  return {'asked', node}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local down = redis.call('GET', 'pj:down:' .. node)
if not down then
  redis.call('SET', 'pj:down:' .. node, now, 'PX', keep)
  down = now
end
if now - tonumber(down) > grace then return {'over', node} end
local sk, bk = 'pj:state:' .. session, 'pj:box:' .. session
local seq = redis.call('HGET', sk, 'seq')
if not seq then return {'none'} end
local meta = redis.call('HGET', sk, 'meta') or ''
local threads = redis.call('HGET', sk, 'threads') or ''
local box = redis.call('LRANGE', bk, 0, -1)
local lost = redis.call('LRANGE', 'pj:undelivered:' .. node, 0, -1)
redis.call('SET', skey, me, 'EX', dirttl)
local members = {}
for thread in string.gmatch(threads, '[^\n]+') do
  local tkey = 'pj:thread:' .. thread
  redis.call('HSET', tkey, session, me)
  redis.call('SADD', 'pj:node-threads:' .. me, thread)
  members[#members + 1] = thread
  members[#members + 1] = redis.call('HGETALL', tkey)
end
redis.call('DEL', sk, bk)
for _, n in ipairs(redis.call('SMEMBERS', 'pj:nodes')) do
  if n ~= me and n ~= node then redis.call('PUBLISH', chanp .. n, menv) end
end
return {'state', node, seq, meta, box, lost, members}
)lua";

/* This node hands a session over to node `to`: the directory and its
 * memberships name `to`, its stored state goes, `to` gets the state
 * ('H') and every other node hears it moved ('m'). ARGV: me, session,
 * to, the 'H' envelope, the 'm' envelope, the directory's TTL (s), then
 * thread names each followed by "1" if this node has no member left in
 * it. */
const char HANDOVER_SCRIPT[] = R"lua(
local me, session, to, henv, menv, dirttl =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
redis.call('SET', 'pj:session:' .. session, to, 'EX', dirttl)
redis.call('DEL', 'pj:state:' .. session, 'pj:box:' .. session)
for i = 7, #ARGV, 2 do
  local thread, last = ARGV[i], ARGV[i + 1]
  redis.call('HSET', 'pj:thread:' .. thread, session, to)
  redis.call('SADD', 'pj:node-threads:' .. to, thread)
  if last == '1' then redis.call('SREM', 'pj:node-threads:' .. me, thread) end
end
redis.call('PUBLISH', 'pj:to:' .. to, henv)
for _, n in ipairs(redis.call('SMEMBERS', 'pj:nodes')) do
  if n ~= me and n ~= to then redis.call('PUBLISH', 'pj:to:' .. n, menv) end
end
return 0
)lua";

/* A node found gone: when, in Redis's clock, unless another node said so
 * first, or its heartbeat key is back (ARGV[3]): it was late, not gone. */
const char DOWN_SCRIPT[] = R"lua(
if redis.call('EXISTS', ARGV[3]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('SET', ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000), 'NX',
  'PX', ARGV[2])
return 0
)lua";

/* This node is back after an outage: what was published to it while it
 * did not listen, taken out of Redis. */
const char RECOVER_SCRIPT[] = R"lua(
local l = redis.call('LRANGE', ARGV[1], 0, -1)
redis.call('DEL', ARGV[1])
return l
)lua";

/* Envelope framing: "P1", then netstrings (LEN:BYTES,), then ops, each a
 * letter, its fields as netstrings, and ';'. */
void
ns (std::string & out, std::string_view s)
{
  out += std::to_string (s.size ());
  out += ':';
  out.append (s.data (), s.size ());
  out += ',';
}

class Reader
{
public:
  explicit Reader (std::string_view s) : s_ (s) {}
  bool at_end () const { return pos_ >= s_.size (); }
  bool peek (char c) const { return pos_ < s_.size () && s_[pos_] == c; }
  bool take (char & c)
  {
    if (at_end ())
      return false;
    c = s_[pos_++];
    return true;
  }
  bool field (std::string & out)
  {
    std::size_t len = 0, start = pos_;
    while (pos_ < s_.size () && s_[pos_] >= '0' && s_[pos_] <= '9'
        && pos_ - start < 10)
      len = len * 10 + (s_[pos_++] - '0');
    if (pos_ == start || pos_ >= s_.size () || s_[pos_] != ':')
      return false;
    pos_++;
    if (s_.size () - pos_ < len + 1 || s_[pos_ + len] != ',')
      return false;
    out.assign (s_.data () + pos_, len);
    pos_ += len + 1;
    return true;
  }
  /* An envelope's head: its version ("P1"), the node that published it
   * and that node's process number of it. */
  bool header (std::string & node, std::string & sent)
  {
    char c1 = 0, c2 = 0;
    return take (c1) && take (c2) && c1 == 'P' && c2 == '1' && field (node)
        && field (sent);
  }
  /* The next op: its letter and fields, up to its ';'. False at the end,
   * and with `bad` set when what follows is not a whole op. */
  bool op (char & letter, std::vector<std::string> & fields, bool & bad)
  {
    bad = false;
    if (!take (letter))
      return false;
    fields.clear ();
    std::string f;
    while (!peek (';') && field (f))
      fields.push_back (std::move (f));
    char end = 0;
    bad = !take (end) || end != ';';
    return !bad;
  }

private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

/* One connection to Redis on the server's Poller: hiredis's event hooks
 * land here. */
struct Cluster::Link : Poller::Handler
{
  Cluster *cluster = nullptr;
  const char *name = "";
  redisAsyncContext *ac = nullptr;
  int fd = -1;
  std::uint32_t events = 0;
  bool registered = false;
  bool ready = false;              /* connected and set up */
  std::int64_t since_us = 0;       /* the attempt's start */

  void want (std::uint32_t bit, bool on)
  {
    std::uint32_t ev = on ? (events | bit) : (events & ~bit);
    if (registered && ev == events)
      return;
    events = ev;
    if (!registered)
      registered = cluster->poller_.add (fd, events, this);
    else
      cluster->poller_.modify (fd, events, this);
  }

  void on_ready (std::uint32_t ev) override
  {
    redisAsyncContext *c = ac;
    if (!c)
      return;
    if (ev & EPOLLOUT)
      redisAsyncHandleWrite (c);
    /* A callback may have freed the context. */
    if (ac == c && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
      redisAsyncHandleRead (c);
  }
};

struct Cluster::Lookup
{
  std::string from, body;
  std::vector<std::string> ids;
  std::vector<std::string> tags;
  std::set<std::string> already;   /* sessions that got the message */
  std::vector<std::list<Cluster::Waiting>::iterator> at;   /* per id */
  bool answered = false;
  std::shared_ptr<const Message> message;
};

/* hiredis's C callbacks. */
struct ClusterCallbacks
{
  static void looked_up (redisAsyncContext * ac, void *r, void *data)
  {
    std::unique_ptr<Cluster::Lookup> l (static_cast<Cluster::Lookup *>(data));
    auto *reply = static_cast<redisReply *>(r);
    Cluster *c = link_of (ac)->cluster;
    if (c->closing_)
      return;
    std::vector<std::string> nodes (l->ids.size ());
    std::vector<Cluster::Carriers> idc (l->ids.size ()), tagc (l->tags.size ());
    auto carriers = [] (const redisReply * a, std::vector<Cluster::Carriers> & out) {
      for (std::size_t i = 0; a && a->type == REDIS_REPLY_ARRAY
          && i < a->elements && i < out.size (); i++) {
        const redisReply *h = a->element[i];
        for (std::size_t k = 0; h->type == REDIS_REPLY_ARRAY
            && k + 1 < h->elements; k += 2)
          out[i].emplace_back (std::string (h->element[k]->str,
                  h->element[k]->len), std::string (h->element[k + 1]->str,
                  h->element[k + 1]->len));
      }
    };
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) {
      const redisReply *n = reply->element[0];
      for (std::size_t i = 0; n->type == REDIS_REPLY_ARRAY && i < nodes.size ()
          && i < n->elements; i++)
        if (n->element[i]->type == REDIS_REPLY_STRING)
          nodes[i].assign (n->element[i]->str, n->element[i]->len);
      carriers (reply->element[1], idc);
      carriers (reply->element[2], tagc);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
      g_warning ("cluster: a lookup failed: %s", reply->str);
    }
    c->resolve (*l, nodes, idc, tagc);
  }

  static void add_read (void *d) { static_cast<Cluster::Link *>(d)->want (EPOLLIN, true); }
  static void del_read (void *d) { static_cast<Cluster::Link *>(d)->want (EPOLLIN, false); }
  static void add_write (void *d) { static_cast<Cluster::Link *>(d)->want (EPOLLOUT, true); }
  static void del_write (void *d) { static_cast<Cluster::Link *>(d)->want (EPOLLOUT, false); }
  static void cleanup (void *d)
  {
    auto *l = static_cast<Cluster::Link *>(d);
    if (l->registered)
      l->cluster->poller_.remove (l->fd, l);
    l->registered = false;
    l->events = 0;
    l->fd = -1;
    l->ac = nullptr;
  }

  static Cluster::Link * link_of (const redisAsyncContext * ac)
  {
    return static_cast<Cluster::Link *>(ac->data);
  }

  static void connected (const redisAsyncContext * ac, int status)
  {
    Cluster::Link *l = link_of (ac);
    if (status != REDIS_OK) {
      g_info ("cluster: Redis connection (%s) failed: %s", l->name,
          ac->errstr ? ac->errstr : "unknown error");
      l->cluster->link_down (*l);
    }
  }

  static void disconnected (const redisAsyncContext * ac, int)
  {
    Cluster::Link *l = link_of (ac);
    g_warning ("cluster: Redis connection (%s) lost: %s", l->name,
        ac->err && ac->errstr ? ac->errstr : "closed");
    l->cluster->link_down (*l);
  }

  /* The command link's first answer (PING or SELECT). */
  static void setup_done (redisAsyncContext * ac, void *r, void *)
  {
    auto *reply = static_cast<redisReply *>(r);
    if (!reply)
      return;
    Cluster::Link *l = link_of (ac);
    if (reply->type == REDIS_REPLY_ERROR) {
      g_warning ("cluster: Redis refused the setup: %s", reply->str);
      redisAsyncDisconnect (ac);
      return;
    }
    l->cluster->link_up (*l);
  }

  static void subscribed (redisAsyncContext * ac, void *r, void *)
  {
    auto *reply = static_cast<redisReply *>(r);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
      return;
    Cluster::Link *l = link_of (ac);
    const redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
      return;
    if (strcmp (kind->str, "subscribe") == 0) {
      l->cluster->link_up (*l);
    } else if (strcmp (kind->str, "message") == 0) {
      const redisReply *payload = reply->element[2];
      if (payload->type == REDIS_REPLY_STRING)
        l->cluster->on_message (std::string_view (payload->str, payload->len));
    }
  }

  static void heartbeat_done (redisAsyncContext * ac, void *r, void *)
  {
    auto *reply = static_cast<redisReply *>(r);
    if (!reply)
      return;
    Cluster *c = link_of (ac)->cluster;
    if (reply->type == REDIS_REPLY_ERROR) {
      g_warning ("cluster: heartbeat refused: %s", reply->str);
      return;
    }
    c->hb_sent_us_ = 0;
    c->hb_ok_us_ = g_get_monotonic_time ();
    /* SET ... GET answers the old value: none means the key had expired,
     * and the other nodes may have taken this one for gone. */
    if (reply->type == REDIS_REPLY_NIL && !c->hb_first_) {
      c->stats_.heartbeats_missed++;
      g_warning ("cluster: this node's heartbeat key had expired; other "
          "nodes may have taken it for gone: its sessions are announced "
          "again");
      /* After a reconnect that was done already. */
      if (!c->relinked_) {
        c->restarted_ = false;
        c->republish ();
      }
    }
    c->relinked_ = false;
    /* The old value names the process that wrote it: another one means a
     * second node runs with this node id. (The first heartbeat may find
     * the key of this node's previous process.) */
    if (reply->type == REDIS_REPLY_STRING && !c->hb_first_) {
      std::string_view old (reply->str, reply->len);
      if (old.substr (0, old.find (' ')) != c->instance_) {
        if (c->stats_.id_clashes++ == 0)
          g_warning ("cluster: another node runs with node id %s: every "
              "node needs an id of its own (--node-id)",
              c->options_.node_id.c_str ());
      }
    }
    c->hb_first_ = false;
  }

  /* An ordered command's answer; none: its connection was lost, and it
   * is sent again after the reconnect. */
  static void ordered_done (redisAsyncContext * ac, void *r, void *)
  {
    Cluster *c = link_of (ac)->cluster;
    if (c->closing_)
      return;
    if (!r) {
      c->cmd_lost_ = true;
      return;
    }
    if (c->inflight_.empty ())
      return;
    Cluster::Ordered o = std::move (c->inflight_.front ());
    c->inflight_.pop_front ();
    c->held_bytes_ -= o.bytes;
    c->answered (o, r);
  }

  static void suspect (redisAsyncContext * ac, void *r, void *data)
  {
    std::unique_ptr<std::pair<std::string, std::string>> s (
        static_cast<std::pair<std::string, std::string> *>(data));
    auto *reply = static_cast<redisReply *>(r);
    Cluster *c = link_of (ac)->cluster;
    if (c->closing_ || !reply || reply->type != REDIS_REPLY_INTEGER)
      return;
    c->suspect_checked (s->first, s->second, reply->integer != 0);
  }

  /* INFO server: Redis's run_id, which a restart changes. */
  static void info (redisAsyncContext * ac, void *r, void *)
  {
    auto *reply = static_cast<redisReply *>(r);
    Cluster *c = link_of (ac)->cluster;
    if (c->closing_ || !reply || reply->type != REDIS_REPLY_STRING)
      return;
    std::string_view text (reply->str, reply->len);
    auto at = text.find ("run_id:");
    if (at == std::string_view::npos)
      return;
    std::string id (text.substr (at + 7, text.find_first_of ("\r\n", at)
            - at - 7));
    c->restarted_ = !c->run_id_.empty () && id != c->run_id_;
    c->run_id_ = id;
  }

  static void recovered (redisAsyncContext * ac, void *r, void *)
  {
    Cluster *c = link_of (ac)->cluster;
    if (!c->closing_)
      c->recovered (r);
  }

  static void claimed (redisAsyncContext * ac, void *r, void *data)
  {
    std::unique_ptr<std::string> session (static_cast<std::string *>(data));
    Cluster *c = link_of (ac)->cluster;
    if (!c->closing_)
      c->claimed (*session, r);
  }

  static void grace_over (redisAsyncContext * ac, void *r, void *data)
  {
    std::unique_ptr<std::string> node (static_cast<std::string *>(data));
    auto *reply = static_cast<redisReply *>(r);
    Cluster *c = link_of (ac)->cluster;
    if (c->closing_)
      return;
    /* The clean-up script answers -1, and does nothing, when the node's
     * heartbeat key is back. */
    c->grace_over (*node, reply && reply->type == REDIS_REPLY_INTEGER
        && reply->integer == -1);
  }

  static void exists (redisAsyncContext * ac, void *r, void *data)
  {
    std::unique_ptr<std::string> node (static_cast<std::string *>(data));
    auto *reply = static_cast<redisReply *>(r);
    if (!reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 0)
      return;
    link_of (ac)->cluster->node_gone (*node);
  }
};

bool
parse_redis_url (std::string_view url, RedisAddress & out, std::string & why)
{
  out = RedisAddress ();
  auto number = [] (std::string_view s, int max, int & v) {
    if (s.empty () || s.size () > 9)
      return false;
    v = 0;
    for (char c : s) {
      if (c < '0' || c > '9')
        return false;
      v = v * 10 + (c - '0');
    }
    return v <= max;
  };
  if (url.substr (0, 5) == "unix:") {
    std::string_view rest = url.substr (5);
    auto q = rest.find ('?');
    if (q != std::string_view::npos) {
      std::string_view query = rest.substr (q + 1);
      rest = rest.substr (0, q);
      if (query.substr (0, 3) != "db=" || !number (query.substr (3), 1 << 20,
              out.db)) {
        why = "a unix: URL takes only ?db=N";
        return false;
      }
    }
    if (rest.empty () || rest[0] != '/') {
      why = "unix: needs an absolute path: unix:/run/redis/redis.sock";
      return false;
    }
    out.path = std::string (rest);
    return true;
  }
  if (url.substr (0, 8) != "redis://") {
    why = "expected redis://HOST[:PORT][/DB] or unix:/PATH";
    return false;
  }
  std::string_view rest = url.substr (8);
  auto slash = rest.find ('/');
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr (slash + 1);
    rest = rest.substr (0, slash);
    if (!db.empty () && !number (db, 1 << 20, out.db)) {
      why = "the database after '/' must be a number";
      return false;
    }
  }
  if (rest.find ('@') != std::string_view::npos) {
    why = "passwords in the URL are not supported";
    return false;
  }
  std::string_view host = rest;
  if (!rest.empty () && rest[0] == '[') {
    auto close = rest.find (']');
    if (close == std::string_view::npos) {
      why = "an IPv6 address needs its closing ']'";
      return false;
    }
    host = rest.substr (1, close - 1);
    rest = rest.substr (close + 1);
    if (!rest.empty () && rest[0] != ':') {
      why = "expected ':' after the IPv6 address";
      return false;
    }
    if (!rest.empty () && !number (rest.substr (1), 65535, out.port)) {
      why = "the port must be 1 to 65535";
      return false;
    }
  } else {
    auto colon = rest.rfind (':');
    if (colon != std::string_view::npos) {
      host = rest.substr (0, colon);
      if (!number (rest.substr (colon + 1), 65535, out.port)) {
        why = "the port must be 1 to 65535";
        return false;
      }
    }
  }
  if (host.empty () || out.port == 0) {
    why = host.empty () ? "no host" : "the port must be 1 to 65535";
    return false;
  }
  out.host = std::string (host);
  return true;
}

bool
valid_node_id (std::string_view id)
{
  if (id.empty () || id.size () > 64)
    return false;
  for (char c : id)
    if (!g_ascii_isalnum (c) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

std::string
default_node_id ()
{
  std::string host;
  for (const char *p = g_get_host_name (); *p && host.size () < 40; p++)
    if (g_ascii_isalnum (*p) || *p == '.' || *p == '_' || *p == '-')
      host += *p;
  if (host.empty ())
    host = "node";
  char tail[32];
  g_snprintf (tail, sizeof tail, "-%d-%06x", static_cast<int>(getpid ()),
      g_random_int () & 0xffffff);
  return host + tail;
}

Cluster::Cluster (ClusterOptions options, Router & router, Poller & poller,
    GMainContext * context, Dispatch dispatch)
  : options_ (std::move (options)), router_ (router), poller_ (poller),
    context_ (context), dispatch_ (std::move (dispatch)),
    cmd_ (std::make_unique<Link> ()), sub_ (std::make_unique<Link> ())
{
  cmd_->cluster = sub_->cluster = this;
  char instance[17];
  g_snprintf (instance, sizeof instance, "%08x%08x", g_random_int (),
      g_random_int ());
  instance_ = instance;
  cmd_->name = "commands";
  sub_->name = "subscription";
  /* A gone node's sessions are found through the directory during their
   * grace period. */
  options_.session_ttl_s = std::max<std::int64_t>(options_.session_ttl_s,
      options_.grace_ms / 1000 + 20);
  cancel_ = g_cancellable_new ();
}

Cluster::~Cluster ()
{
  closing_ = true;
  g_cancellable_cancel (cancel_);
  g_object_unref (cancel_);
  for (GSource **s : {&timer_, &flush_source_})
    if (*s) {
      g_source_destroy (*s);
      g_source_unref (*s);
      *s = nullptr;
    }
  router_.set_cluster_hooks (ClusterHooks ());
  /* Freeing calls the pending callbacks with no reply, and cleanup. */
  for (Link *l : {cmd_.get (), sub_.get ()}) {
    if (l->ac) {
      redisAsyncContext *ac = l->ac;
      ac->onDisconnect = nullptr;
      redisAsyncFree (ac);
    }
  }
}

void
Cluster::start ()
{
  ClusterHooks h;
  h.forward = [this] (const std::string & node, const std::string & session,
      const std::string & from, const std::string & body) {
    forward (node, session, from, body);
  };
  h.joined = [this] (const std::string & thread, const std::string & session,
      const std::string & body) {
    joined (thread, session, body);
  };
  h.left = [this] (const std::string & thread, const std::string & session,
      bool last) {
    left (thread, session, last);
  };
  h.ended = [this] (const std::string & session,
      const std::vector<std::pair<std::string, bool>> & threads,
      const std::set<std::string> & nodes) {
    ended (session, threads, nodes);
  };
  h.reply = [this] (const std::string & node, const std::string & origin,
      const std::string & from, const std::string & body) {
    reply (node, origin, from, body);
  };
  h.lookup = [this] (const std::string & from,
      const std::vector<std::string> & ids,
      const std::vector<std::string> & tags, const std::string & body,
      bool answered, std::shared_ptr<const Message> message,
      const std::vector<std::string> & already) {
    lookup (from, ids, tags, body, answered, std::move (message), already);
  };
  h.tagged = [this] (const std::string & session, const std::string & tag,
      bool quiet) {
    tagged (session, tag, quiet);
  };
  h.watching = [this] (const std::string & session, const std::string & tag,
      bool quiet) {
    watching (session, tag, quiet);
  };
  h.unpresence = [this] (const std::string & session,
      const std::set<std::string> & tags,
      const std::set<std::string> & watched) {
    unpresence (session, tags, watched);
  };
  h.changed = [this] (const std::string & session, bool meta) {
    /* Written at the end of the loop turn. */
    auto [it, fresh] = dirty_.emplace (session, meta);
    if (!fresh)
      it->second = it->second || meta;
    schedule_flush ();
  };
  router_.set_cluster_hooks (std::move (h));

  timer_ = g_timeout_source_new (options_.heartbeat_ms);
  g_source_set_callback (timer_, +[] (gpointer self) -> gboolean {
        static_cast<Cluster *>(self)->tick ();
        return G_SOURCE_CONTINUE;
      }, this, nullptr);
  g_source_attach (timer_, context_);
  connect ();
}

void
Cluster::connect ()
{
  const RedisAddress & a = options_.redis;
  if (a.path.empty () && !g_hostname_is_ip_address (a.host.c_str ())
      && next_address_ < addresses_.size ()) {
    /* Each attempt takes the next address (localhost: ::1, then
     * 127.0.0.1); past the last one the name is resolved again. */
    resolved_host_ = addresses_[next_address_++];
  } else if (a.path.empty () && !g_hostname_is_ip_address (a.host.c_str ())) {
    /* hiredis resolves names with a blocking getaddrinfo (): resolve
     * here, asynchronously, and hand it the addresses. */
    if (resolving_)
      return;
    resolving_ = true;
    g_autoptr (GResolver) resolver = g_resolver_get_default ();
    g_main_context_push_thread_default (context_);
    g_resolver_lookup_by_name_async (resolver, a.host.c_str (), cancel_,
        +[] (GObject * source, GAsyncResult * res, gpointer self) {
          static_cast<Cluster *>(self)->resolved (source, res);
        }, this);
    g_main_context_pop_thread_default (context_);
    return;
  } else {
    resolved_host_ = a.host;
  }
  for (Link *l : {cmd_.get (), sub_.get ()})
    if (!l->ac)
      connect_link (*l);
}

void
Cluster::resolved (GObject * source, GAsyncResult * res)
{
  g_autoptr (GError) error = nullptr;
  GList *found = g_resolver_lookup_by_name_finish (G_RESOLVER (source), res,
      &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  resolving_ = false;
  if (!found) {
    g_warning ("cluster: cannot resolve %s: %s", options_.redis.host.c_str (),
        error ? error->message : "no address");
    return;
  }
  addresses_.clear ();
  next_address_ = 0;
  for (GList *a = found; a; a = a->next) {
    g_autofree char *ip = g_inet_address_to_string (G_INET_ADDRESS (a->data));
    addresses_.emplace_back (ip);
  }
  g_resolver_free_addresses (found);
  connect ();
}

void
Cluster::connect_link (Link & l)
{
  const RedisAddress & a = options_.redis;
  redisAsyncContext *ac = a.path.empty ()
      ? redisAsyncConnect (resolved_host_.c_str (), a.port)
      : redisAsyncConnectUnix (a.path.c_str ());
  l.since_us = g_get_monotonic_time ();
  if (!ac)
    return;
  if (ac->err) {
    g_info ("cluster: cannot connect to Redis: %s", ac->errstr);
    redisAsyncFree (ac);
    return;
  }
  l.ac = ac;
  l.fd = ac->c.fd;
  l.ready = false;
  ac->data = &l;
  ac->ev.data = &l;
  ac->ev.addRead = ClusterCallbacks::add_read;
  ac->ev.delRead = ClusterCallbacks::del_read;
  ac->ev.addWrite = ClusterCallbacks::add_write;
  ac->ev.delWrite = ClusterCallbacks::del_write;
  ac->ev.cleanup = ClusterCallbacks::cleanup;
  redisAsyncSetConnectCallback (ac, ClusterCallbacks::connected);
  redisAsyncSetDisconnectCallback (ac, ClusterCallbacks::disconnected);
  /* hiredis completes the connect on the first write: queue one. */
  if (a.db != 0)
    redisAsyncCommand (ac, &l == cmd_.get () ? ClusterCallbacks::setup_done
        : nullptr, nullptr, "SELECT %d", a.db);
  else if (&l == cmd_.get ())
    redisAsyncCommand (ac, ClusterCallbacks::setup_done, nullptr, "PING");
  if (&l == sub_.get ()) {
    std::string channel = CHANNEL + options_.node_id;
    redisAsyncCommand (ac, ClusterCallbacks::subscribed, nullptr,
        "SUBSCRIBE %b", channel.data (), channel.size ());
  }
}

void
Cluster::link_up (Link & l)
{
  if (l.ready)
    return;
  l.ready = true;
  if (!cmd_->ready || !sub_->ready)
    return;
  if (ever_up_)
    stats_.reconnects++;
  g_message ("cluster: node %s connected to Redis%s", options_.node_id.c_str (),
      ever_up_ ? " again" : "");
  bool again = ever_up_;
  ever_up_ = true;
  /* The heartbeat first: what follows shows the others this node is
   * alive, and finds its key there. Then whether Redis restarted (a
   * rejoin's answer then tells nothing of who left). */
  heartbeat ();
  command ({"INFO", "server"}, ClusterCallbacks::info);
  refresh_directory ();
  /* What waited for Redis goes out in order, then what was published to
   * this node while it did not listen is read, then its memberships are
   * written and announced again. */
  resume_ordered ();
  if (again) {
    recover ();
    relinked_ = true;
    republish ();
  }
}

/* The meta part of a session's state: tags, held watches, contacts (with
 * their nodes: this one's id for its own sessions), the callbacks it
 * waits for. */
std::string
Cluster::encode_meta (const SessionState & st) const
{
  std::string out;
  ns (out, std::to_string (st.tags.size ()));
  for (const auto &t : st.tags)
    ns (out, t);
  ns (out, std::to_string (st.watches.size ()));
  for (const auto &[tag, text] : st.watches) {
    ns (out, tag);
    ns (out, text);
  }
  ns (out, std::to_string (st.contacts.size ()));
  for (const auto &[id, node] : st.contacts) {
    ns (out, id);
    ns (out, node.empty () ? options_.node_id : node);
  }
  ns (out, std::to_string (st.pending.size ()));
  for (const auto &p : st.pending) {
    ns (out, p.key);
    ns (out, p.json);
    ns (out, std::to_string (p.recipients.size ()));
    for (const auto &r : p.recipients)
      ns (out, r);
  }
  return out;
}

/* `node` as this node's router names it: "" for this node. */
std::string
Cluster::local_node (const std::string & node) const
{
  return node == options_.node_id ? std::string () : node;
}

bool
Cluster::decode_meta (std::string_view blob, SessionState & st) const
{
  Reader r (blob);
  auto count = [&] (std::size_t & n) {
    std::string f;
    if (!r.field (f))
      return false;
    n = g_ascii_strtoull (f.c_str (), nullptr, 10);
    return true;
  };
  std::size_t n = 0;
  std::string a, b;
  if (!count (n))
    return blob.empty ();
  for (std::size_t i = 0; i < n; i++) {
    if (!r.field (a))
      return false;
    st.tags.push_back (a);
  }
  if (!count (n))
    return false;
  for (std::size_t i = 0; i < n; i++) {
    if (!r.field (a) || !r.field (b))
      return false;
    st.watches.emplace_back (a, b);
  }
  if (!count (n))
    return false;
  for (std::size_t i = 0; i < n; i++) {
    if (!r.field (a) || !r.field (b))
      return false;
    st.contacts.emplace_back (a, local_node (b));
  }
  if (!count (n))
    return false;
  for (std::size_t i = 0; i < n; i++) {
    SessionState::Callback cb;
    std::size_t k = 0;
    if (!r.field (cb.key) || !r.field (cb.json) || !count (k))
      return false;
    for (std::size_t j = 0; j < k; j++) {
      if (!r.field (a))
        return false;
      cb.recipients.push_back (a);
    }
    st.pending.push_back (std::move (cb));
  }
  return true;
}

/* The state of the sessions that changed this turn goes to Redis in one
 * script call: enough for another node to resume them if this one dies
 * (docs/scaling.md). */
void
Cluster::persist ()
{
  if (dirty_.empty () || !cmd_->ready)
    return;
  std::vector<std::string> argv = {"EVAL", STORE_SCRIPT, "0",
    std::to_string (options_.grace_ms + 20000), STATE_KEY, BOX_KEY};
  std::size_t header = argv.size ();
  for (const auto &[id, meta] : dirty_) {
    std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>>
        entries;
    std::uint64_t next = 0, last = 0;
    auto stored = stored_.find (id);
    bool fresh = stored == stored_.end ();
    std::size_t keep = router_.box_since (id, fresh ? 0 : stored->second,
        entries, next, last);
    if (!router_.has_session (id)) {
      if (!fresh)
        stored_.erase (stored);
      continue;
    }
    argv.push_back (id);
    if (meta || fresh) {
      SessionState st;
      router_.export_session (id, st);
      argv.push_back (encode_meta (st));
      std::string names;
      for (const auto &t : st.threads)
        names += t.first + '\n';
      argv.push_back (names);
    } else {
      argv.push_back ("-");
      argv.push_back ("");
    }
    argv.push_back (std::to_string (next) + ' ' + std::to_string (last));
    argv.push_back (fresh ? "1" : "0");
    argv.push_back (std::to_string (keep));
    argv.push_back (std::to_string (entries.size ()));
    std::uint64_t top = fresh ? 0 : stored->second;
    for (const auto &[seq, text] : entries) {
      argv.push_back (std::to_string (seq) + ' ' + *text);
      top = std::max (top, seq);
    }
    stored_[id] = top;
  }
  dirty_.clear ();
  if (argv.size () > header && command (argv))
    stats_.state_writes++;
}

/* Redis may have lost what this node wrote (a restart without
 * persistence, a failover), and the other nodes may have taken it for
 * gone (its heartbeat key expired): write its memberships again, and
 * announce them again (rejoin ()). What its sessions did meanwhile was
 * kept in order (backlog_) and has been sent already. */
void
Cluster::republish ()
{
  /* It is not gone: a later lapse starts a grace period of its own. */
  command ({"DEL", DOWN_KEY + options_.node_id});
  std::set<std::string> threads;
  for (const auto &[thread, session] : router_.local_memberships ()) {
    command ({"HSET", THREAD_KEY + thread, session, options_.node_id});
    threads.insert (thread);
  }
  for (const auto &thread : threads)
    command ({"SADD", NODE_THREADS_KEY + options_.node_id, thread});
  /* And the sessions' state, outboxes written anew, tags and watches. */
  stored_.clear ();
  for (const auto &id : router_.local_sessions ()) {
    dirty_[id] = true;
    SessionState st;
    router_.export_session (id, st);
    for (const auto &t : st.tags)
      tagged (id, t, true);
    for (const auto &w : st.watches)
      watching (id, w.first, true);
  }
  rejoin ();
  schedule_flush ();
}

/* Every membership of this node's sessions, announced again as a
 * thread:connect ('J'): a node that had ended the member's stand-in (its
 * grace period was over) tells its members it is there again; one that
 * still has it as a member tells nobody. */
void
Cluster::rejoin ()
{
  for (const auto &[thread, session] : router_.local_memberships ()) {
    std::string body;
    auto s = joins_.find (session);
    if (s != joins_.end ()) {
      auto t = s->second.find (thread);
      if (t != s->second.end ())
        body = t->second;
    }
    if (body.empty ())
      body = router_.join_text (thread, session);
    announce (thread, session, body, 'J');
    stats_.rejoins++;
  }
}

/* Ordered commands go out now, or wait (in order) for Redis. `sends`:
 * a script that starts with SEND_LUA, which is given its argument. */
void
Cluster::ordered (Ordered o, bool sends)
{
  if (sends)
    o.argv.insert (o.argv.begin () + 3,
        std::to_string (options_.grace_ms + 60000));
  held_bytes_ += o.bytes;
  if (flowing_ && backlog_.empty ()) {
    if (command (o.argv, ClusterCallbacks::ordered_done)) {
      inflight_.push_back (std::move (o));
      return;
    }
    flowing_ = false;
  }
  backlog_.push_back (std::move (o));
}

/* Both connections are up: what was in flight on a connection that was
 * lost, then what waited, goes out in its order. */
void
Cluster::resume_ordered ()
{
  if (cmd_lost_) {
    backlog_.insert (backlog_.begin (),
        std::make_move_iterator (inflight_.begin ()),
        std::make_move_iterator (inflight_.end ()));
    inflight_.clear ();
    cmd_lost_ = false;
  }
  if (!backlog_.empty ())
    g_message ("cluster: %zu changes and batches kept while Redis was "
        "unreachable go out now", backlog_.size ());
  flowing_ = true;
  while (!backlog_.empty ()) {
    if (!command (backlog_.front ().argv, ClusterCallbacks::ordered_done)) {
      flowing_ = false;
      return;
    }
    stats_.replayed++;
    inflight_.push_back (std::move (backlog_.front ()));
    backlog_.pop_front ();
  }
}

void
Cluster::answered (Ordered & o, void *r)
{
  auto *reply = static_cast<redisReply *>(r);
  if (reply->type == REDIS_REPLY_ERROR) {
    g_warning ("cluster: Redis refused a command: %s", reply->str);
    return;
  }
  if (o.answer == Answer::Publish) {
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
      stats_.undelivered++;
  } else if ((o.answer == Answer::Join || o.answer == Answer::Rejoin)
      && reply->type == REDIS_REPLY_ARRAY) {
    /* The members of other nodes already there. */
    std::set<std::string> there;
    for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
      const redisReply *id = reply->element[i], *node = reply->element[i + 1];
      if (id->type != REDIS_REPLY_STRING || node->type != REDIS_REPLY_STRING)
        continue;
      there.emplace (id->str, id->len);
      router_.remote_member (o.a, o.b, std::string (id->str, id->len),
          std::string (node->str, node->len));
    }
    /* Announced again after an outage: members of other nodes known here
     * that the thread no longer has left it meanwhile, unheard (their
     * nodes did not count this one's members while it was taken for
     * gone). The local members hear it now (once: a leave told already
     * made it no member here). */
    if (o.answer == Answer::Rejoin && !restarted_) {
      /* Only those known before it ran: one that joined since is in the
       * thread, though not in the answer. Its leave, if it was told to
       * this node, may still be on its way: looked at again two
       * seconds later (tick ()). */
      std::int64_t due = g_get_monotonic_time ()
          + 2 * options_.heartbeat_ms * 1000;
      for (const auto &m : o.known)
        if (!there.count (m))
          suspects_.push_back (Suspect {o.a, m, due});
    }
  } else if (o.answer == Answer::Watch && reply->type == REDIS_REPLY_ARRAY
      && reply->elements > 0) {
    Carriers carriers;
    for (std::size_t k = 0; k + 1 < reply->elements; k += 2)
      carriers.emplace_back (std::string (reply->element[k]->str,
              reply->element[k]->len), std::string (reply->element[k + 1]->str,
              reply->element[k + 1]->len));
    dispatch_ (router_.remote_watch_carriers (o.a, o.b, carriers));
  }
}

/* Back after an outage: what other nodes published to this one while it
 * did not listen (PUBLISH found no subscriber, SEND_LUA kept it) is
 * read and applied, before what arrives live from now on. */
void
Cluster::recover ()
{
  recovering_ = true;
  if (!command ({"EVAL", RECOVER_SCRIPT, "0", LOST_KEY + options_.node_id},
          ClusterCallbacks::recovered))
    recovered (nullptr);
}

void
Cluster::recovered (void *r)
{
  auto *reply = static_cast<redisReply *>(r);
  recovering_ = false;
  std::vector<Delivery> out;
  std::set<std::string> redirect;
  for (std::size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY
      && i < reply->elements; i++) {
    const redisReply *e = reply->element[i];
    if (e->type != REDIS_REPLY_STRING)
      continue;
    stats_.recovered++;
    Reader rd (std::string_view (e->str, e->len));
    std::string node, sent;
    if (!rd.header (node, sent))
      continue;
    Op op;
    bool bad = false;
    while (rd.op (op.op, op.f, bad)) {
      if (op.op == 'n' && op.f.size () == 2 && !fresh (op.f[0], op.f[1]))
        break;
      /* Messages for the sessions still here; a claim asked meanwhile
       * has long been answered by its timeout. */
      if (op.op == 'd' && op.f.size () >= 3) {
        std::vector<std::string> f = {op.f[0], op.f[1]};
        for (std::size_t k = 2; k < op.f.size (); k++)
          if (router_.has_session (op.f[k]))
            f.push_back (op.f[k]);
        if (f.size () == 2)
          continue;
        op.f = std::move (f);
      } else if (op.op == 'r' && (op.f.size () != 3
              || !router_.has_session (op.f[0]))) {
        continue;
      } else if (op.op == 'h' || op.op == 'H') {
        continue;
      }
      apply (node, op, false, out, redirect);
    }
  }
  if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
    g_message ("cluster: read back %zu batches published to this node while "
        "it did not listen", reply->elements);
  dispatch_ (out);
  std::vector<std::string> held;
  held.swap (held_live_);
  for (const auto &p : held)
    on_message (p);
}

void
Cluster::link_down (Link & l)
{
  l.ready = false;
  /* Ordered commands wait for both connections, and what the lost one
   * had in flight is sent again. */
  flowing_ = false;
  if (&l == cmd_.get ())
    cmd_lost_ = true;
  /* What is published here from the moment the subscription is back
   * waits for what was published while it was not (recover ()). */
  if (ever_up_)
    recovering_ = true;
  /* Its heartbeat, if one was waiting, is answered no more. */
  if (&l == cmd_.get ())
    hb_sent_us_ = 0;
  /* hiredis frees the context after this callback; the next tick
   * connects again. */
}

bool
Cluster::command (const std::vector<std::string> & argv,
    void (*fn) (redisAsyncContext *, void *, void *), void *privdata)
{
  if (!cmd_->ac || !cmd_->ready)
    return false;
  std::vector<const char *> args;
  std::vector<std::size_t> lens;
  for (const auto &a : argv) {
    args.push_back (a.data ());
    lens.push_back (a.size ());
  }
  return redisAsyncCommandArgv (cmd_->ac, fn, privdata,
      static_cast<int>(args.size ()), args.data (), lens.data ()) == REDIS_OK;
}

void
Cluster::tick ()
{
  std::int64_t now = g_get_monotonic_time ();
  /* A connect that hangs, or Redis that stopped answering: start over. */
  bool stalled = hb_sent_us_ && now - hb_sent_us_ > options_.node_ttl_ms * 1000;
  for (Link *l : {cmd_.get (), sub_.get ()}) {
    bool hung = l->ac && !l->ready
        && now - l->since_us > options_.connect_timeout_ms * 1000;
    if (l->ac && (hung || stalled)) {
      g_warning ("cluster: Redis connection (%s) %s; connecting again",
          l->name, hung ? "did not come up" : "stopped answering");
      redisAsyncContext *ac = l->ac;
      l->ready = false;
      redisAsyncFree (ac);
    }
  }
  if (stalled) {
    hb_sent_us_ = 0;
    flowing_ = false;
    cmd_lost_ = true;
    recovering_ = true;
  }
  /* Claims unanswered: the client gets a new session. */
  std::vector<std::string> late;
  for (const auto &[id, c] : claims_)
    if (now - c.since_us > options_.claim_timeout_ms * 1000)
      late.push_back (id);
  for (const auto &id : late) {
    g_warning ("cluster: session %s could not be brought here in time; it "
        "starts afresh", id.c_str ());
    finish_claim (id, nullptr, {}, {});
  }
  /* Gone nodes whose sessions did not resume elsewhere in their grace
   * period: they end here now. */
  std::vector<std::string> over;
  for (const auto &[node, since] : dead_)
    if (since >= 0 && now - since >= options_.grace_ms * 1000)
      over.push_back (node);
  for (const auto &node : over) {
    /* Unless its heartbeat came back meanwhile (it was only cut off): the
     * script cleans up only if not, in one step. */
    auto data = std::make_unique<std::string> (node);
    if (command ({"EVAL", CLEAN_SCRIPT, "0", node, NODE_KEY + node,
            NODE_THREADS_KEY + node, THREAD_KEY, NODES_KEY},
            ClusterCallbacks::grace_over, data.get ())) {
      data.release ();
      dead_[node] = -1;
    } else {
      grace_over (node, false);
    }
  }
  /* Members a rejoin's answer did not name, still members here: does the
   * thread still lack them? */
  for (auto it = suspects_.begin (); it != suspects_.end ();) {
    if (it->due_us > now) {
      ++it;
      continue;
    }
    auto members = router_.thread_members (it->thread);
    if (std::find (members.begin (), members.end (), it->member)
        != members.end () && !router_.has_session (it->member)) {
      auto data = std::make_unique<std::pair<std::string, std::string>> (
          it->thread, it->member);
      if (command ({"HEXISTS", THREAD_KEY + it->thread, it->member},
              ClusterCallbacks::suspect, data.get ()))
        data.release ();
    }
    it = suspects_.erase (it);
  }
  for (auto it = moved_.begin (); it != moved_.end ();)
    it = now > it->second.second ? moved_.erase (it) : std::next (it);
  if (!cmd_->ac || !sub_->ac)
    connect ();
  if (!cmd_->ready || !sub_->ready)
    return;
  /* Ordered commands held back though both connections are up (a
   * command refused on its way out): they go now. */
  if (!flowing_)
    resume_ordered ();
  ticks_++;
  heartbeat ();
  if (ticks_ % std::max<std::int64_t>(1, 10000 / options_.heartbeat_ms) == 0) {
    refresh_directory ();
    /* The stored state's TTL is renewed with it. */
    for (const auto &id : router_.local_sessions ())
      dirty_.emplace (id, false);
    schedule_flush ();
  }
  check_nodes ();
}

void
Cluster::heartbeat ()
{
  if (hb_sent_us_)
    return;   /* the last one is unanswered */
  std::string now = instance_ + " " +
      std::to_string (g_get_real_time () / 1000);
  if (command ({"SET", NODE_KEY + options_.node_id, now, "PX",
          std::to_string (options_.node_ttl_ms), "GET"},
          ClusterCallbacks::heartbeat_done))
    hb_sent_us_ = g_get_monotonic_time ();
  /* Where a session that moves tells every node. */
  command ({"SADD", NODES_KEY, options_.node_id});
}

void
Cluster::session_opened (const std::string & session)
{
  command ({"SET", SESSION_KEY + session, options_.node_id, "EX",
        std::to_string (options_.session_ttl_s)});
}

void
Cluster::refresh_directory ()
{
  std::string ttl = std::to_string (options_.session_ttl_s);
  for (const auto &id : router_.local_sessions ())
    command ({"SET", SESSION_KEY + id, options_.node_id, "EX", ttl});
}

void
Cluster::check_nodes ()
{
  for (const auto &node : router_.remote_nodes ())
    if (!dead_.count (node)) {
      auto data = std::make_unique<std::string> (node);
      if (command ({"EXISTS", NODE_KEY + node}, ClusterCallbacks::exists,
              data.get ()))
        data.release ();
    }
}

/* The grace period of a gone node's sessions is over: those that did not
 * resume elsewhere end here, unless the node is `back`. */
void
Cluster::grace_over (const std::string & node, bool back)
{
  /* Something came from it meanwhile (revive ()): it is alive. */
  if (!dead_.count (node))
    return;
  dead_.erase (node);
  if (back) {
    stats_.nodes_back++;
    g_message ("cluster: node %s is back; its sessions go on", node.c_str ());
    return;
  }
  std::vector<Delivery> d = router_.remote_node_gone (node);
  g_message ("cluster: the grace period of node %s's sessions is over; "
      "those that did not resume elsewhere ended", node.c_str ());
  dispatch_ (d);
}

/* A member of another node that a rejoin's answer did not name: if the
 * thread still lacks it, it left while its node did not count this one's
 * members, and the local members hear it now (once: a leave told already
 * made it no member here). */
void
Cluster::suspect_checked (const std::string & thread,
    const std::string & member, bool there)
{
  if (there || restarted_)
    return;
  std::vector<std::string> local;
  for (const auto &m : router_.thread_members (thread))
    if (router_.has_session (m))
      local.push_back (m);
  dispatch_ (router_.remote_leave (thread, member, local));
}

/* A message came from `node` (not sent on by another): it is alive,
 * whatever its heartbeat key said. Its sessions' grace period stops. */
void
Cluster::revive (const std::string & node)
{
  auto it = dead_.find (node);
  if (it == dead_.end ())
    return;
  dead_.erase (it);
  stats_.nodes_back++;
  g_message ("cluster: node %s is back (a message came from it); its "
      "sessions go on", node.c_str ());
}

/* Its sessions get the grace period to resume on another node: their
 * stand-ins stay, and what is sent to them is kept in Redis
 * (PUBLISH_SCRIPT). tick () ends them when it is over. */
void
Cluster::node_gone (const std::string & node)
{
  if (dead_.count (node))
    return;
  stats_.nodes_lost++;
  dead_[node] = g_get_monotonic_time ();
  g_message ("cluster: node %s is gone (its heartbeat expired); its "
      "sessions have %.1f s to resume elsewhere", node.c_str (),
      options_.grace_ms / 1000.0);
  command ({"EVAL", DOWN_SCRIPT, "0", DOWN_KEY + node,
        std::to_string (options_.grace_ms + DOWN_KEEP_MS), NODE_KEY + node});
}

bool
Cluster::healthy () const
{
  if (!cmd_->ready || !sub_->ready)
    return false;
  /* A heartbeat unanswered for two periods: Redis is not answering. */
  return !hb_sent_us_ || g_get_monotonic_time () - hb_sent_us_
      <= 2 * options_.heartbeat_ms * 1000;
}

/* The head of an envelope an ordered command publishes: its number
 * ('n': this process, a number that rises with every ordered command).
 * A command sent again after a reconnect may have run once already; the
 * nodes that got it then drop the second copy (fresh ()). */
std::string
Cluster::ordered_head ()
{
  std::string out = envelope_head () + 'n';
  ns (out, instance_);
  ns (out, std::to_string (++op_seq_));
  out += ';';
  return out;
}

/* Whether an envelope numbered `seq` by process `instance` is new here:
 * one process's ordered commands reach this node in their order, so one
 * not above the last one seen is a second copy. */
bool
Cluster::fresh (const std::string & instance, const std::string & seq)
{
  std::uint64_t n = g_ascii_strtoull (seq.c_str (), nullptr, 10);
  std::uint64_t &last = seen_[instance];
  if (n <= last)
    return false;
  last = n;
  return true;
}

std::string
Cluster::envelope_head () const
{
  std::string out = "P1";
  ns (out, options_.node_id);
  ns (out, std::to_string (g_get_real_time ()));
  return out;
}

Cluster::Outbox &
Cluster::outbox (const std::string & node)
{
  schedule_flush ();
  return outboxes_[node];
}

void
Cluster::close_op (Outbox & box)
{
  if (!box.open)
    return;
  box.ops += 'd';
  ns (box.ops, box.from);
  ns (box.ops, box.body);
  for (const auto &t : box.to)
    ns (box.ops, t);
  box.ops += ';';
  box.open = false;
  box.to.clear ();
}

void
Cluster::forward (const std::string & node, const std::string & session,
    const std::string & from, const std::string & body)
{
  auto w = waiting_.find (session);
  if (w != waiting_.end ()) {
    w->second.push_back (Waiting {false, false, node, from, body});
    return;
  }
  put (node, session, from, body);
}

/* Whether a message of `size` bytes can be kept for other nodes now:
 * false while Redis has not taken outage_bytes of them (it is unreachable,
 * or stopped answering); the sender is told at the flush. */
bool
Cluster::keep (const std::string & from, const std::string & body)
{
  if (held_bytes_ + body.size () <= options_.outage_bytes)
    return true;
  stats_.dropped++;
  refused_.emplace_back (from, body);
  schedule_flush ();
  return false;
}

void
Cluster::put (const std::string & node, const std::string & session,
    const std::string & from, const std::string & body)
{
  if (!keep (from, body))
    return;
  stats_.sent++;
  Outbox &box = outbox (node);
  box.ids.insert (session);
  /* One op for a message to several sessions of the node. */
  if (box.open && box.from == from && box.body == body) {
    box.to.push_back (session);
    return;
  }
  close_op (box);
  box.open = true;
  box.from = from;
  box.body = body;
  box.to.push_back (session);
}

void
Cluster::reply (const std::string & node, const std::string & origin,
    const std::string & from, const std::string & body)
{
  if (!keep (from, body))
    return;
  stats_.sent++;
  Outbox &box = outbox (node);
  box.ids.insert (origin);
  close_op (box);
  box.ops += 'r';
  ns (box.ops, origin);
  ns (box.ops, from);
  ns (box.ops, body);
  box.ops += ';';
}

void
Cluster::lookup (const std::string & from, const std::vector<std::string> & ids,
    const std::vector<std::string> & tags, const std::string & body,
    bool answered, std::shared_ptr<const Message> message,
    const std::vector<std::string> & already)
{
  auto l = std::make_unique<Lookup> ();
  l->from = from;
  l->body = body;
  l->ids = ids;
  l->tags = tags;
  l->already.insert (already.begin (), already.end ());
  l->answered = answered;
  l->message = std::move (message);
  for (const auto &id : ids) {
    auto &q = waiting_[id];
    l->at.push_back (q.insert (q.end (), Waiting {true, false, {}, {}, {}}));
  }
  stats_.lookups += ids.size ();
  std::vector<std::string> argv = {"EVAL", LOOKUP_SCRIPT, "0",
    options_.node_id, std::to_string (ids.size ())};
  argv.insert (argv.end (), ids.begin (), ids.end ());
  argv.insert (argv.end (), tags.begin (), tags.end ());
  if (command (argv, ClusterCallbacks::looked_up, l.get ())) {
    l.release ();
    return;
  }
  /* Redis is unreachable: nobody can be found. Answered at the flush,
   * out of the router's call. */
  failed_.push_back (std::move (l));
  schedule_flush ();
}

/* A lookup's answer: `nodes[i]` holds ids[i], or '' for none; an id no
 * session has may be a tag carried on other nodes (`id_carriers[i]`), and
 * the tags carried here may have carriers there too (`tag_carriers`). */
void
Cluster::resolve (Lookup & l, const std::vector<std::string> & nodes,
    const std::vector<Carriers> & id_carriers,
    const std::vector<Carriers> & tag_carriers)
{
  std::vector<std::string> missing;
  std::vector<std::pair<std::string, const Carriers *>> tags;
  bool found = false;
  for (std::size_t i = 0; i < l.ids.size (); i++) {
    Waiting &w = *l.at[i];
    w.pending = false;
    if (!id_carriers[i].empty ()) {
      /* A tag: its carriers get it below. */
      w.drop = true;
      tags.emplace_back (l.ids[i], &id_carriers[i]);
      found = true;
    } else if (nodes[i].empty () || nodes[i] == options_.node_id) {
      /* None, or ours, ended since: it would be known here. */
      w.drop = true;
      missing.push_back (l.ids[i]);
    } else {
      w.node = nodes[i];
      w.from = l.from;
      w.body = l.body;
      found = true;
      l.already.insert (l.ids[i]);
      router_.remote_found (l.from, l.ids[i], nodes[i]);
    }
    drain (l.ids[i]);
  }
  for (std::size_t i = 0; i < l.tags.size (); i++)
    if (!tag_carriers[i].empty ())
      tags.emplace_back (l.tags[i], &tag_carriers[i]);
  std::vector<Delivery> out;
  for (const auto &[tag, carriers] : tags) {
    std::vector<Delivery> d = router_.remote_tag_carriers (l.from, tag,
        *carriers, *l.message, l.already);
    out.insert (out.end (), d.begin (), d.end ());
    for (const auto &c : *carriers)
      l.already.insert (c.first);
  }
  dispatch_ (out);
  stats_.lookups_missed += missing.size ();
  if (!missing.empty ())
    dispatch_ (router_.remote_unknown (l.from, missing, *l.message,
            l.answered || found));
}

/* A session of this node took a tag, or holds a watch on one: Redis
 * knows it, and the other nodes' sessions get what they are owed. */
void
Cluster::tagged (const std::string & session, const std::string & tag,
    bool quiet)
{
  std::string env = ordered_head () + "w";
  ns (env, tag);
  ns (env, session);
  ordered (Ordered {{"EVAL", TAG_SCRIPT, "0", options_.node_id, session, tag,
          quiet ? "1" : "0", env}}, true);
}

void
Cluster::watching (const std::string & session, const std::string & tag,
    bool quiet)
{
  Ordered o;
  o.argv = {"EVAL", WATCH_SCRIPT, "0", options_.node_id, session, tag,
    quiet ? "1" : "0"};
  o.answer = Answer::Watch;
  o.a = session;
  o.b = tag;
  ordered (std::move (o), false);
}

void
Cluster::unpresence (const std::string & session,
    const std::set<std::string> & tags, const std::set<std::string> & watched)
{
  for (const auto &t : tags)
    ordered (Ordered {{"HDEL", std::string ("pj:tag:") + t, session}}, false);
  for (const auto &t : watched)
    ordered (Ordered {{"HDEL", std::string ("pj:watch:") + t, session}}, false);
}

void
Cluster::drain (const std::string & session)
{
  auto it = waiting_.find (session);
  if (it == waiting_.end ())
    return;
  auto &q = it->second;
  while (!q.empty () && !q.front ().pending) {
    Waiting &w = q.front ();
    if (!w.drop)
      put (w.node, session, w.from, w.body);
    q.pop_front ();
  }
  if (q.empty ())
    waiting_.erase (it);
}

void
Cluster::schedule_flush ()
{
  if (flush_source_)
    return;
  /* Everything one turn of the loop forwards goes out together. */
  flush_source_ = g_idle_source_new ();
  g_source_set_priority (flush_source_, G_PRIORITY_HIGH);
  g_source_set_callback (flush_source_, +[] (gpointer self) -> gboolean {
        auto *c = static_cast<Cluster *>(self);
        g_source_unref (c->flush_source_);
        c->flush_source_ = nullptr;
        c->flush ();
        return G_SOURCE_REMOVE;
      }, this, nullptr);
  g_source_attach (flush_source_, context_);
}

/* The end of a loop turn: lookups Redis could not take are answered,
 * and what was forwarded goes out. */
void
Cluster::flush ()
{
  std::vector<std::unique_ptr<Lookup>> failed;
  failed.swap (failed_);
  for (auto &l : failed)
    resolve (*l, std::vector<std::string> (l->ids.size ()),
        std::vector<Carriers> (l->ids.size ()),
        std::vector<Carriers> (l->tags.size ()));
  persist ();
  publish ();
  refuse_all ();
}

/* Messages not kept for other nodes (outage_bytes): each sender gets one
 * queue-full per message, out of the router's call. */
void
Cluster::refuse_all ()
{
  if (refused_.empty ())
    return;
  std::vector<std::pair<std::string, std::string>> refused;
  refused.swap (refused_);
  std::vector<Delivery> out;
  const std::pair<std::string, std::string> *last = nullptr;
  for (const auto &r : refused) {
    /* A message to several recipients is refused once. */
    if (last && *last == r)
      continue;
    last = &r;
    /* The server's own notices (from "") have nobody to tell. */
    if (r.first.empty () || !router_.has_session (r.first))
      continue;
    auto m = Message::parse (r.second, router_.limits ().protocol, nullptr);
    std::string type = m ? m->type () : std::string ();
    std::string thread = m && m->thread () ? *m->thread () : std::string ();
    std::string text = error_text (ErrorCode::QueueFull, "this server cannot "
        "reach the other servers now and holds as much for them as it may: "
        "not delivered to the sessions of other servers; try again later",
        nullptr, type, thread);
    std::vector<Delivery> d = router_.remote_deliver ({r.first}, text, "", "");
    out.insert (out.end (), d.begin (), d.end ());
  }
  dispatch_ (out);
}

/* Safe inside a router call: it only writes to Redis. */
void
Cluster::publish ()
{
  std::map<std::string, Outbox> boxes;
  boxes.swap (outboxes_);
  for (auto &[node, box] : boxes) {
    close_op (box);
    if (box.ops.empty ())
      continue;
    /* A node that is not listening (it died) has its batch kept for its
     * sessions, which may resume elsewhere. */
    Ordered o;
    o.argv = {"EVAL", PUBLISH_SCRIPT, "0", CHANNEL + node,
      ordered_head () + box.ops, LOST_KEY + node,
      std::to_string (options_.grace_ms + 60000), SESSION_KEY, CHANNEL};
    o.argv.insert (o.argv.end (), box.ids.begin (), box.ids.end ());
    o.answer = Answer::Publish;
    o.bytes = o.argv[4].size ();
    ordered (std::move (o), true);
    stats_.publishes++;
  }
}

void
Cluster::joined (const std::string & thread, const std::string & session,
    const std::string & body)
{
  joins_[session][thread] = body;
  announce (thread, session, body, 'j');
}

/* A join ('j'), or a membership announced again ('J'). */
void
Cluster::announce (const std::string & thread, const std::string & session,
    const std::string & body, char op)
{
  /* What this node forwarded before goes first. */
  publish ();
  std::string env = ordered_head () + op;
  ns (env, thread);
  ns (env, session);
  ns (env, body);
  Ordered o;
  o.argv = {"EVAL", JOIN_SCRIPT, "0", options_.node_id, session, thread,
    NODE_KEY, CHANNEL, env, THREAD_KEY + thread,
    NODE_THREADS_KEY + options_.node_id, DOWN_KEY,
    std::to_string (options_.grace_ms),
    std::to_string (options_.grace_ms + DOWN_KEEP_MS)};
  o.answer = op == 'J' ? Answer::Rejoin : Answer::Join;
  o.a = thread;
  o.b = session;
  if (op == 'J')
    for (const auto &m : router_.thread_members (thread))
      if (!router_.has_session (m))
        o.known.push_back (m);
  ordered (std::move (o), true);
}

void
Cluster::left (const std::string & thread, const std::string & session,
    bool last)
{
  publish ();
  if (auto j = joins_.find (session); j != joins_.end ()) {
    j->second.erase (thread);
    if (j->second.empty ())
      joins_.erase (j);
  }
  std::string env = ordered_head () + "l";
  ns (env, thread);
  ns (env, session);
  Ordered o;
  o.argv = {"EVAL", LEAVE_SCRIPT, "0", options_.node_id, session, thread,
    CHANNEL, env, THREAD_KEY + thread, NODE_THREADS_KEY + options_.node_id,
    last ? "1" : "0"};
  ordered (std::move (o), true);
}

void
Cluster::ended (const std::string & session,
    const std::vector<std::pair<std::string, bool>> & threads,
    const std::set<std::string> & nodes)
{
  publish ();
  std::string env = ordered_head () + "g";
  ns (env, session);
  env += ';';
  std::vector<std::string> argv = {"EVAL", END_SCRIPT, "0", options_.node_id,
    session, CHANNEL, env, THREAD_KEY, NODE_THREADS_KEY + options_.node_id,
    SESSION_KEY + session, std::to_string (threads.size ())};
  for (const auto &[name, last] : threads) {
    argv.push_back (name);
    argv.push_back (last ? "1" : "0");
  }
  argv.insert (argv.end (), nodes.begin (), nodes.end ());
  ordered (Ordered {std::move (argv)}, true);
  ordered (Ordered {{"DEL", STATE_KEY + session, BOX_KEY + session}}, false);
  dirty_.erase (session);
  stored_.erase (session);
  joins_.erase (session);
}

void
Cluster::on_message (std::string_view payload)
{
  /* 'R': a batch sent on by Redis or by another node, for those of its
   * recipients that resumed here; the others are not ours to answer for. */
  bool redirected = !payload.empty () && payload[0] == 'R';
  std::string_view body = redirected ? payload.substr (1) : payload;
  Reader r (body);
  std::string node, sent;
  if (!r.header (node, sent)) {
    g_warning ("cluster: a message on this node's channel is not ours; "
        "ignored");
    return;
  }
  if (node == options_.node_id && !redirected) {
    /* Only another process with this node id publishes such a thing. */
    g_warning ("cluster: a message from a node with this node's id (%s); "
        "ignored", node.c_str ());
    return;
  }
  if (recovering_) {
    /* After what was published here while this node did not listen. */
    held_live_.emplace_back (payload);
    return;
  }
  if (!redirected)
    revive (node);
  std::int64_t sent_us = g_ascii_strtoll (sent.c_str (), nullptr, 10);
  std::int64_t lag = g_get_real_time () - sent_us;
  if (sent_us > 0 && lag >= 0 && !redirected) {
    double s = lag / 1e6;
    std::size_t b = 0;
    while (b < std::size (ClusterStats::LATENCY_BOUNDS)
        && s > ClusterStats::LATENCY_BOUNDS[b])
      b++;
    stats_.latency_buckets[b]++;
    stats_.latency_count++;
    stats_.latency_sum_s += s;
  }
  std::vector<Delivery> out;
  std::set<std::string> redirect;
  Op op;
  bool bad = false;
  while (r.op (op.op, op.f, bad)) {
    /* A second copy (sent again after a reconnect): dropped whole. */
    if (op.op == 'n' && op.f.size () == 2 && !redirected
        && !fresh (op.f[0], op.f[1]))
      break;
    apply (node, op, redirected, out, redirect);
  }
  if (bad)
    g_warning ("cluster: a malformed message from node %s; the rest of it "
        "is ignored", node.c_str ());
  /* Sessions that resumed on another node: their part goes on there. */
  for (const auto &to : redirect)
    command ({"PUBLISH", CHANNEL + to, "R" + std::string (body)});
  dispatch_ (out);
}

/* One op from `node`. A recipient being claimed gets it once it is here;
 * one that moved on gets the whole batch sent on (`redirect`). */
void
Cluster::apply (const std::string & node, Op & op, bool redirected,
    std::vector<Delivery> & out, std::set<std::string> & redirect)
{
  auto take = [&] (std::vector<Delivery> && d) {
    stats_.received += d.size ();
    if (out.empty ())
      out = std::move (d);
    else
      out.insert (out.end (), std::make_move_iterator (d.begin ()),
          std::make_move_iterator (d.end ()));
  };
  /* Whether `id` is handled here now; false: held or sent on. */
  auto here = [&] (const std::string & id, const Op & copy) {
    if (auto c = claims_.find (id); c != claims_.end ()) {
      c->second.held.emplace_back (node, copy);
      return false;
    }
    if (auto m = moved_.find (id); m != moved_.end ()) {
      redirect.insert (m->second.first);
      return false;
    }
    return !redirected || router_.has_session (id);
  };
  const auto &f = op.f;
  if (op.op == 'd' && f.size () >= 3) {
    std::vector<std::string> to;
    for (std::size_t i = 2; i < f.size (); i++)
      if (here (f[i], Op {'d', {f[0], f[1], f[i]}}))
        to.push_back (f[i]);
    if (!to.empty ())
      take (router_.remote_deliver (to, f[1], f[0], node));
  } else if (op.op == 'r' && f.size () == 3) {
    if (here (f[0], op))
      take (router_.remote_reply (f[0], f[1], node, f[2]));
  } else if (op.op == 'n') {
    /* The envelope's number: looked at by the caller. */
  } else if (redirected) {
    /* Only messages are sent on. */
  } else if ((op.op == 'j' || op.op == 'J') && f.size () >= 3) {
    take (router_.remote_join (f[0], f[1], node, f[2],
            std::vector<std::string> (f.begin () + 3, f.end ()),
            op.op == 'J'));
  } else if (op.op == 'l' && f.size () >= 2) {
    take (router_.remote_leave (f[0], f[1],
            std::vector<std::string> (f.begin () + 2, f.end ())));
  } else if (op.op == 'g' && f.size () == 1) {
    take (router_.remote_end (f[0]));
  } else if (op.op == 'h' && f.size () == 1) {
    hand_over (node, f[0]);
  } else if (op.op == 'H' && f.size () >= 2) {
    take_over (node, op);
  } else if (op.op == 'w' && f.size () >= 3) {
    take (router_.remote_tagged (f[0], f[1], node,
            std::vector<std::string> (f.begin () + 2, f.end ())));
  } else if (op.op == 'm' && f.size () == 2) {
    router_.remote_moved (f[0], f[1]);
  } else {
    g_warning ("cluster: unknown op '%c' from node %s; ignored", op.op,
        node.c_str ());
  }
}

void
Cluster::claim (const std::string & session, std::function<void ()> done)
{
  auto it = claims_.find (session);
  if (it != claims_.end ()) {
    /* A second connection for it meanwhile: both go on when it is here. */
    it->second.done = [first = std::move (it->second.done),
        then = std::move (done)] () { first (); then (); };
    return;
  }
  if (!healthy ()) {
    done ();
    return;
  }
  Claim &c = claims_[session];
  c.done = std::move (done);
  c.since_us = g_get_monotonic_time ();
  std::string henv = envelope_head () + "h";
  ns (henv, session);
  henv += ';';
  std::string menv = envelope_head () + "m";
  ns (menv, session);
  ns (menv, options_.node_id);
  menv += ';';
  auto data = std::make_unique<std::string> (session);
  if (command ({"EVAL", CLAIM_SCRIPT, "0", options_.node_id, session,
          NODE_KEY, CHANNEL, henv, menv, std::to_string (options_.grace_ms),
          std::to_string (options_.grace_ms + DOWN_KEEP_MS),
          std::to_string (options_.session_ttl_s)}, ClusterCallbacks::claimed,
          data.get ()))
    data.release ();
  else
    finish_claim (session, nullptr, {}, {});
}

/* The claim script's answer: asked (the node will answer with 'H'), or
 * the state of a session of a node gone, or nothing to be had. */
void
Cluster::claimed (const std::string & session, void *r)
{
  auto *reply = static_cast<redisReply *>(r);
  auto str = [] (const redisReply * e) {
    return e && e->type == REDIS_REPLY_STRING ? std::string (e->str, e->len)
        : std::string ();
  };
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
    if (reply && reply->type == REDIS_REPLY_ERROR)
      g_warning ("cluster: claiming session %s: %s", session.c_str (),
          reply->str);
    finish_claim (session, nullptr, {}, {});
    return;
  }
  std::string kind = str (reply->element[0]);
  if (kind == "asked")
    return;
  if (kind != "state" || reply->elements != 7) {
    finish_claim (session, nullptr, {}, {});
    return;
  }
  std::string from = str (reply->element[1]);
  SessionState st;
  st.id = session;
  std::string seqs = str (reply->element[2]);
  char *rest = nullptr;
  st.next_seq = g_ascii_strtoull (seqs.c_str (), &rest, 10);
  st.last_sent = g_ascii_strtoull (rest, nullptr, 10);
  bool ok = st.next_seq > 0 && decode_meta (str (reply->element[3]), st);
  /* Sessions of the gone node that are named in the state stay named
   * with it: they may resume too. */
  const redisReply *box = reply->element[4];
  for (std::size_t i = 0; ok && box->type == REDIS_REPLY_ARRAY
      && i < box->elements; i++) {
    std::string e = str (box->element[i]);
    auto sp = e.find (' ');
    if (sp == std::string::npos)
      continue;
    st.box.emplace_back (g_ascii_strtoull (e.c_str (), nullptr, 10),
        std::make_shared<const std::string> (e.substr (sp + 1)));
  }
  std::vector<std::string> lost;
  const redisReply *l = reply->element[5];
  for (std::size_t i = 0; l->type == REDIS_REPLY_ARRAY && i < l->elements; i++)
    lost.push_back (str (l->element[i]));
  const redisReply *m = reply->element[6];
  for (std::size_t i = 0; m->type == REDIS_REPLY_ARRAY && i + 1 < m->elements;
      i += 2) {
    std::vector<std::pair<std::string, std::string>> members;
    const redisReply *h = m->element[i + 1];
    for (std::size_t k = 0; h->type == REDIS_REPLY_ARRAY && k + 1 < h->elements;
        k += 2)
      members.emplace_back (str (h->element[k]),
          local_node (str (h->element[k + 1])));
    st.threads.emplace_back (str (m->element[i]), std::move (members));
  }
  if (!ok)
    g_warning ("cluster: the stored state of session %s does not read; it "
        "starts afresh", session.c_str ());
  finish_claim (session, ok ? &st : nullptr, from, lost);
}

/* The session is here (`state`), or cannot be had (null): what waited for
 * it is delivered, and the connection goes on. */
void
Cluster::finish_claim (const std::string & session, const SessionState * state,
    const std::string & from_node, const std::vector<std::string> & lost)
{
  auto it = claims_.find (session);
  if (it == claims_.end ())
    return;
  Claim c = std::move (it->second);
  claims_.erase (it);
  std::vector<Delivery> out;
  std::set<std::string> redirect;
  if (state && router_.adopt (*state, g_get_monotonic_time ())) {
    stats_.taken_over++;
    /* Back here after it had left: nothing for it is sent on now. */
    moved_.erase (session);
    g_message ("cluster: session %s resumes here, from node %s",
        session.c_str (), from_node.c_str ());
    /* What was sent to it while no node held it, then what came here
     * while it was on its way: in that order. */
    for (const auto &env : lost) {
      Reader r (env);
      std::string node, sent;
      if (!r.header (node, sent))
        continue;
      Op op;
      bool bad = false;
      while (r.op (op.op, op.f, bad)) {
        bool mine = (op.op == 'd' && op.f.size () >= 3 && std::find (
                op.f.begin () + 2, op.f.end (), session) != op.f.end ())
            || (op.op == 'r' && op.f.size () == 3 && op.f[0] == session);
        if (!mine)
          continue;
        if (op.op == 'd')
          op.f = {op.f[0], op.f[1], session};
        apply (node, op, true, out, redirect);
      }
    }
  }
  for (auto &[node, op] : c.held)
    apply (node, op, true, out, redirect);
  dispatch_ (out);
  c.done ();
}

/* Another node asks for a session of this node: hand it over. */
void
Cluster::hand_over (const std::string & node, const std::string & session)
{
  /* What this node forwarded before goes first. */
  publish ();
  SessionState st;
  std::optional<bool> online = router_.hand_over (session, node, st);
  std::string henv = envelope_head () + "H";
  ns (henv, session);
  if (!online) {
    ns (henv, "0");
    henv += ';';
    command ({"PUBLISH", CHANNEL + node, henv});
    return;
  }
  ns (henv, "1");
  ns (henv, std::to_string (st.next_seq) + ' ' + std::to_string (st.last_sent));
  ns (henv, encode_meta (st));
  std::string box, threads;
  for (const auto &[seq, text] : st.box) {
    ns (box, std::to_string (seq));
    ns (box, *text);
  }
  for (const auto &[name, members] : st.threads) {
    ns (threads, name);
    ns (threads, std::to_string (members.size ()));
    for (const auto &[id, n] : members) {
      ns (threads, id);
      ns (threads, n.empty () ? options_.node_id : n);
    }
  }
  ns (henv, box);
  ns (henv, threads);
  henv += ';';
  std::string menv = envelope_head () + "m";
  ns (menv, session);
  ns (menv, node);
  menv += ';';
  std::vector<std::string> argv = {"EVAL", HANDOVER_SCRIPT, "0",
    options_.node_id, session, node, henv, menv,
    std::to_string (options_.session_ttl_s)};
  for (const auto &[name, members] : st.threads) {
    bool last = true;
    for (const auto &m : router_.thread_members (name))
      last = last && !router_.has_session (m);
    argv.push_back (name);
    argv.push_back (last ? "1" : "0");
  }
  if (!command (argv))
    g_warning ("cluster: handing session %s over: Redis is unreachable",
        session.c_str ());
  moved_[session] = {node, g_get_monotonic_time () +
    options_.grace_ms * 1000};
  joins_.erase (session);
  dirty_.erase (session);
  stored_.erase (session);
  stats_.handed_over++;
  g_message ("cluster: session %s resumes on node %s", session.c_str (),
      node.c_str ());
  if (*online && moved_away_)
    moved_away_ (session);
}

/* A node answered a claim ('H'): the session's state, or "0" if it holds
 * it no more. */
void
Cluster::take_over (const std::string & node, const Op & op)
{
  const auto &f = op.f;
  if (!claims_.count (f[0]))
    return;
  if (f[1] != "1" || f.size () != 6) {
    finish_claim (f[0], nullptr, {}, {});
    return;
  }
  SessionState st;
  st.id = f[0];
  char *rest = nullptr;
  st.next_seq = g_ascii_strtoull (f[2].c_str (), &rest, 10);
  st.last_sent = g_ascii_strtoull (rest, nullptr, 10);
  bool ok = st.next_seq > 0 && decode_meta (f[3], st);
  Reader box (f[4]);
  std::string a, b;
  while (ok && !box.at_end ()) {
    ok = box.field (a) && box.field (b);
    if (ok)
      st.box.emplace_back (g_ascii_strtoull (a.c_str (), nullptr, 10),
          std::make_shared<const std::string> (b));
  }
  Reader threads (f[5]);
  while (ok && !threads.at_end ()) {
    std::string name, count;
    ok = threads.field (name) && threads.field (count);
    std::vector<std::pair<std::string, std::string>> members;
    std::size_t n = ok ? g_ascii_strtoull (count.c_str (), nullptr, 10) : 0;
    for (std::size_t i = 0; ok && i < n; i++) {
      ok = threads.field (a) && threads.field (b);
      members.emplace_back (a, local_node (b));
    }
    st.threads.emplace_back (name, std::move (members));
  }
  if (!ok)
    g_warning ("cluster: node %s handed session %s over unreadable; it "
        "starts afresh", node.c_str (), f[0].c_str ());
  finish_claim (f[0], ok ? &st : nullptr, node, {});
}

std::string
Cluster::metrics () const
{
  const ClusterStats & st = stats_;
  std::ostringstream o;
  auto metric = [&] (const char *name, const char *type, const char *help,
      auto value) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' '
        << type << '\n' << name << ' ' << value << '\n';
  };
  o << "# HELP peerjs_cluster_node This node's id (--node-id).\n"
      "# TYPE peerjs_cluster_node gauge\n"
      "peerjs_cluster_node{node=\"" << options_.node_id << "\"} 1\n";
  metric ("peerjs_cluster_redis_connected", "gauge",
      "1 while both connections to Redis are up and answering.",
      healthy () ? 1 : 0);
  metric ("peerjs_cluster_remote_sessions", "gauge",
      "Sessions of other nodes known here (thread-mates and contacts).",
      router_.remote_count ());
  metric ("peerjs_cluster_messages_sent_total", "counter",
      "Messages handed to other nodes, counted per recipient.", st.sent);
  metric ("peerjs_cluster_messages_received_total", "counter",
      "Messages from other nodes delivered here, counted per recipient.",
      st.received);
  metric ("peerjs_cluster_publishes_total", "counter",
      "Batches published to other nodes' channels.", st.publishes);
  metric ("peerjs_cluster_dropped_total", "counter",
      "Messages for other nodes refused with queue-full: Redis had not "
      "taken the outage buffer's worth (--redis unreachable).",
      st.dropped);
  metric ("peerjs_cluster_backlog", "gauge",
      "Changes and batches waiting for Redis, or for its answer.",
      backlog_.size () + inflight_.size ());
  metric ("peerjs_cluster_replayed_total", "counter",
      "Changes and batches kept while Redis was unreachable, sent after.",
      st.replayed);
  metric ("peerjs_cluster_recovered_total", "counter",
      "Batches published to this node while it did not listen, read back "
      "from Redis when it listened again.", st.recovered);
  metric ("peerjs_cluster_rejoins_total", "counter",
      "Memberships of this node's sessions announced again after a "
      "reconnect or an expired heartbeat.", st.rejoins);
  metric ("peerjs_cluster_nodes_back_total", "counter",
      "Nodes taken for gone that turned out alive before their sessions "
      "ended here.", st.nodes_back);
  metric ("peerjs_cluster_nodes_lost_total", "counter",
      "Nodes taken for gone: their heartbeat key expired.", st.nodes_lost);
  metric ("peerjs_cluster_redis_reconnects_total", "counter",
      "Times the connections to Redis came up again after a loss.",
      st.reconnects);
  metric ("peerjs_cluster_heartbeats_missed_total", "counter",
      "Heartbeats that found this node's key expired.", st.heartbeats_missed);
  metric ("peerjs_cluster_node_id_clashes_total", "counter",
      "Heartbeats that found this node's key written by another process: "
      "two nodes share this node id.", st.id_clashes);
  metric ("peerjs_cluster_lookups_total", "counter",
      "Session ids looked up in the directory (messages by id to sessions "
      "not known here).", st.lookups);
  metric ("peerjs_cluster_lookups_missed_total", "counter",
      "Looked-up ids no live node holds (answered with unknown-recipient).",
      st.lookups_missed);
  metric ("peerjs_cluster_sessions_handed_over_total", "counter",
      "Sessions of this node that resumed on another node.", st.handed_over);
  metric ("peerjs_cluster_sessions_taken_over_total", "counter",
      "Sessions of other nodes (alive or gone) that resumed here.",
      st.taken_over);
  metric ("peerjs_cluster_state_writes_total", "counter",
      "Batches of session state written to Redis (one per loop turn with "
      "changes).", st.state_writes);
  metric ("peerjs_cluster_undelivered_total", "counter",
      "Batches for a node that was not listening (gone), kept in Redis for "
      "its sessions.", st.undelivered);
  o << "# HELP peerjs_cluster_latency_seconds From a batch's publication on "
      "another node to its receipt here (wall clocks of both nodes).\n"
      "# TYPE peerjs_cluster_latency_seconds histogram\n";
  std::uint64_t below = 0;
  for (std::size_t b = 0; b < std::size (ClusterStats::LATENCY_BOUNDS); b++) {
    below += st.latency_buckets[b];
    o << "peerjs_cluster_latency_seconds_bucket{le=\""
        << ClusterStats::LATENCY_BOUNDS[b] << "\"} " << below << '\n';
  }
  o << "peerjs_cluster_latency_seconds_bucket{le=\"+Inf\"} " << st.latency_count
      << "\npeerjs_cluster_latency_seconds_sum " << st.latency_sum_s
      << "\npeerjs_cluster_latency_seconds_count " << st.latency_count << '\n';
  return o.str ();
}

}  // namespace peerjs
