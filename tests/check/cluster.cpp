/* Cluster mode: nodes sharing threads through a real redis-server, started
 * here on a free loopback port with no persistence. Clients are spread
 * over the nodes; the tests assert what they receive. Skipped (exit 77)
 * only when redis-server is not installed. */
#include "harness.h"

#include <gst/check/gstcheck.h>

#include <hiredis/hiredis.h>

#include <glib/gstdio.h>

#include <csignal>
#include <cstring>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

using namespace peerjs;
using namespace peerjs::test;

namespace {

GPid redis_pid = 0;
guint redis_port = 0;
const char SECRET[] = "cluster-test-secret-shared-by-all-nodes";

guint
free_port ()
{
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind (fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0
      || getsockname (fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
    g_error ("no free port: %s", g_strerror (errno));
  close (fd);
  return ntohs (a.sin_port);
}

/* A blocking connection to the test's Redis, for looking at what the
 * nodes stored. */
struct Redis
{
  redisContext *c = nullptr;
  Redis ()
  {
    struct timeval tv = {2, 0};
    c = redisConnectWithTimeout ("127.0.0.1", redis_port, tv);
    fail_unless (c && !c->err, "cannot reach the test's redis-server");
  }
  ~Redis () { redisFree (c); }
  /* The reply as a string ("" for nil), or the integer as text. */
  std::string query (const std::vector<std::string> & argv)
  {
    std::vector<const char *> a;
    std::vector<size_t> l;
    for (const auto &s : argv) {
      a.push_back (s.c_str ());
      l.push_back (s.size ());
    }
    auto *r = static_cast<redisReply *>(redisCommandArgv (c, a.size (),
            a.data (), l.data ()));
    fail_unless (r != nullptr, "redis: %s", c->errstr);
    std::string out;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
      out.assign (r->str, r->len);
    else if (r->type == REDIS_REPLY_INTEGER)
      out = std::to_string (r->integer);
    freeReplyObject (r);
    return out;
  }
};

/* A redis-server on `port` of 127.0.0.1, without persistence, killed
 * with this thread. */
GPid
spawn_redis (guint port_number, const std::string & unix_socket = "")
{
  GPid pid = 0;
  std::string port = std::to_string (port_number);
  std::vector<const char *> argv = {"redis-server", "--port", port.c_str (),
    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel",
    "warning"};
  if (!unix_socket.empty ()) {
    argv.push_back ("--unixsocket");
    argv.push_back (unix_socket.c_str ());
  }
  argv.push_back (nullptr);
  GError *error = nullptr;
  /* Not reaped by GLib: no intermediate child, so PR_SET_PDEATHSIG is
   * about this thread. */
  if (!g_spawn_async (nullptr, const_cast<char **>(argv.data ()), nullptr,
          GSpawnFlags (G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD),
          +[] (gpointer) { prctl (PR_SET_PDEATHSIG, SIGKILL); }, nullptr,
          &pid, &error))
    g_error ("cannot start redis-server: %s", error->message);
  for (int i = 0; i < 100; i++) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout ("127.0.0.1", port_number, tv);
    bool up = c && !c->err;
    if (up) {
      auto *r = static_cast<redisReply *>(redisCommand (c, "PING"));
      up = r && r->type == REDIS_REPLY_STATUS;
      if (r)
        freeReplyObject (r);
    }
    if (c)
      redisFree (c);
    if (up)
      return pid;
    g_usleep (50000);
  }
  g_error ("redis-server did not come up on port %u", port_number);
  return 0;
}

/* Ends a process of the test's (redis-server, a node of spawn_node) and
 * reaps it; 0 stays 0. */
void
kill_child (GPid & pid)
{
  if (pid) {
    kill (pid, SIGKILL);
    waitpid (pid, nullptr, 0);
    g_spawn_close_pid (pid);
    pid = 0;
  }
}

std::string
redis_url ()
{
  return "redis://127.0.0.1:" + std::to_string (redis_port);
}

std::unique_ptr<ServerThread>
node (const std::string & id, const std::string & url = redis_url (),
    gint64 grace_us = 0)
{
  ServerOptions o = ServerThread::default_options ();
  o.redis = url;
  o.node_id = id;
  /* Shared, as --secret-file makes it: resume tokens work on every node. */
  o.secret = SECRET;
  /* A client a test does not wait on answers no pings meanwhile. */
  o.ping_interval_s = 30;
  /* 0: the server's own. */
  if (grace_us)
    o.limits.grace_us = grace_us;
  return std::make_unique<ServerThread> (o);
}

/* Every test starts on an empty Redis: its keys are the test's alone. */
void
flush_redis ()
{
  Redis r;
  r.query ({"FLUSHALL"});
}

/* Wait until the node says it is `healthy` (or not). */
bool
node_ready (ServerThread & n, bool healthy = true, int timeout_ms = 3000)
{
  for (int i = 0; i < timeout_ms / 10; i++) {
    bool ok = false;
    n.call ([&] (SignallingServer & s) { ok = s.healthy (); });
    if (ok == healthy)
      return true;
    g_usleep (10000);
  }
  return false;
}

std::unique_ptr<Client>
connected (ServerThread & n)
{
  auto c = std::make_unique<Client> ();
  fail_unless (c->connect (n.ws_url ()), "client could not connect");
  return c;
}

/* Join `thread` on `n` and wait until Redis holds the membership: then
 * whoever joins next, on any node, is announced to `c`. */
void
join (ServerThread & n, Client & c, const std::string & thread,
    const std::string & node_id)
{
  c.send (J ("{'type':'thread:connect','thread':'" + thread +
          "','constraints':{'video':true,'audio':false}}"));
  wait_member (n, c, thread);
  Redis r;
  for (int i = 0; i < 300; i++) {
    if (r.query ({"HGET", "pj:thread:" + thread, c.id}) == node_id)
      return;
    c.pump (10);
  }
  fail ("Redis never held %s in thread '%s'", c.id.c_str (), thread.c_str ());
}

Msg
expect (Client & c, const std::string & type, const char *why,
    int timeout_ms = 3000)
{
  auto m = c.next_of (type, timeout_ms);
  fail_unless (m.has_value (), "%s: no '%s' arrived at %s", why, type.c_str (),
      c.id.c_str ());
  return *m;
}

/* `m` is a thread:connect from `from` with the constraints join () sends. */
void
check_join (const Msg & m, const std::string & from, const std::string & thread)
{
  assert_str (m.str ("from"), from);
  assert_str (m.str ("thread"), thread);
  JsonObject *c = json_object_get_object_member (m.obj (), "constraints");
  fail_unless (c && json_object_get_boolean_member (c, "video")
      && !json_object_get_boolean_member (c, "audio"),
      "the constraints travel with the join: %s", m.text ().c_str ());
}

/* Routers of several nodes wired together in this process, with what
 * Redis does for them played by a queue of operations and a map of
 * thread members: the stand-in logic, deterministic and without Redis. */
class Mesh
{
public:
  struct Node
  {
    std::string name;
    std::unique_ptr<Router> router;
  };
  std::map<std::string, Node> nodes;
  std::map<std::string, std::map<std::string, std::string>> threads;
  std::deque<std::function<void ()>> queue;
  std::map<std::string, std::vector<Msg>> inbox;   /* per session */
  std::map<std::string, std::int64_t> seq;
  std::map<std::string, std::string> directory;    /* session -> node */
  std::size_t forwards = 0;

  Router & add (const std::string & name, RouterLimits limits = {})
  {
    Node &n = nodes[name];
    n.name = name;
    n.router = std::make_unique<Router> (limits, "mesh-secret");
    ClusterHooks h;
    h.forward = [this, name] (const std::string & node,
        const std::string & session, const std::string & from,
        const std::string & body) {
      forwards++;
      queue.push_back ([=] () {
            take (r (node).remote_deliver ({session}, body, from, name));
          });
    };
    h.joined = [this, name] (const std::string & thread,
        const std::string & session, const std::string & body) {
      auto before = threads[thread];
      threads[thread][session] = name;
      std::map<std::string, std::vector<std::string>> others;
      for (const auto &[id, node] : before)
        if (id != session && node != name)
          others[node].push_back (id);
      for (const auto &[node, ids] : others)
        queue.push_back ([=] () {
              take (r (node).remote_join (thread, session, name, body, ids));
            });
      queue.push_back ([=] () {
            for (const auto &[id, node] : before)
              if (id != session && node != name)
                r (name).remote_member (thread, session, id, node);
          });
    };
    h.left = [this, name] (const std::string & thread,
        const std::string & session, bool) {
      threads[thread].erase (session);
      std::map<std::string, std::vector<std::string>> others;
      for (const auto &[id, node] : threads[thread])
        if (node != name)
          others[node].push_back (id);
      for (const auto &[node, ids] : others)
        queue.push_back ([=] () {
              take (r (node).remote_leave (thread, session, ids));
            });
    };
    h.ended = [this, name] (const std::string & session,
        const std::vector<std::pair<std::string, bool>> & ts,
        const std::set<std::string> & known) {
      std::set<std::string> others (known.begin (), known.end ());
      for (const auto &t : ts) {
        threads[t.first].erase (session);
        for (const auto &[id, node] : threads[t.first])
          others.insert (node);
      }
      others.erase (name);
      for (const auto &node : others)
        queue.push_back ([=] () { take (r (node).remote_end (session)); });
    };
    h.reply = [this, name] (const std::string & node, const std::string & origin,
        const std::string & from, const std::string & body) {
      forwards++;
      queue.push_back ([=] () {
            take (r (node).remote_reply (origin, from, name, body));
          });
    };
    h.lookup = [this, name] (const std::string & from,
        const std::vector<std::string> & ids, const std::vector<std::string> &,
        const std::string & body, bool answered,
        std::shared_ptr<const Message> message,
        const std::vector<std::string> &) {
      if (ids.empty ())
        return;
      queue.push_back ([=] () {
            std::vector<std::string> missing;
            bool found = false;
            for (const auto &id : ids) {
              auto it = directory.find (id);
              if (it == directory.end () || it->second == name
                  || !r (it->second).has_session (id)) {
                missing.push_back (id);
                continue;
              }
              found = true;
              r (name).remote_found (from, id, it->second);
              take (r (it->second).remote_deliver ({id}, body, from, name));
            }
            if (!missing.empty ())
              take (r (name).remote_unknown (from, missing, *message,
                      answered || found));
          });
    };
    n.router->set_cluster_hooks (std::move (h));
    return *n.router;
  }

  Router & r (const std::string & node) { return *nodes.at (node).router; }

  /* Everything "Redis" has to carry, carried. */
  void pump ()
  {
    while (!queue.empty ()) {
      auto f = std::move (queue.front ());
      queue.pop_front ();
      f ();
    }
  }

  /* Deliveries to sessions, checked for seq 1, 2, 3... per session. */
  void take (const std::vector<Delivery> & ds)
  {
    for (const auto &d : ds) {
      Msg m (*d.text);
      if (m.type () != "socket:connect" || m.has ("seq")) {
        fail_unless (m.has ("seq"), "no seq: %s", d.text->c_str ());
        fail_unless_equals_int (m.num ("seq"), ++seq[d.session]);
      }
      inbox[d.session].push_back (m);
    }
  }

  std::string open (const std::string & node)
  {
    OpenResult o = r (node).open ("", -1, 0);
    fail_unless (o.ok);
    take (o.deliveries);
    inbox[o.session].clear ();
    directory[o.session] = node;
    return o.session;
  }

  /* A session on node A and one on node B, both in thread `t`; what A's
   * was told of B's is taken. */
  std::pair<std::string, std::string> two_in_thread ()
  {
    std::string a = open ("A"), b = open ("B");
    send ("A", a, "{'type':'thread:connect','thread':'t'}");
    send ("B", b, "{'type':'thread:connect','thread':'t'}");
    got (a);
    return {a, b};
  }

  void send (const std::string & node, const std::string & session,
      const std::string & json)
  {
    take (r (node).receive (session, J (json), 0));
    pump ();
  }

  /* The messages `session` got since the last look. */
  std::vector<Msg> got (const std::string & session)
  {
    std::vector<Msg> out;
    out.swap (inbox[session]);
    return out;
  }

  Msg one (const std::string & session, const std::string & type)
  {
    auto ms = got (session);
    std::string all;
    for (const auto &m : ms)
      all += " " + m.text ();
    fail_unless (ms.size () == 1 && ms[0].type () == type, "%s: expected one "
        "%s, got%s", session.c_str (), type.c_str (), all.c_str ());
    return ms[0];
  }
};

}  // namespace

GST_START_TEST (test_stand_ins_threads)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  std::string a = m.open ("A"), b1 = m.open ("B"), b2 = m.open ("B");
  m.send ("A", a, "{'type':'thread:connect','thread':'t','constraints':{'video':true}}");
  m.send ("B", b1, "{'type':'thread:connect','thread':'t'}");
  assert_str (m.one (a, "thread:connect").str ("from"), b1);
  fail_unless (m.got (b1).empty (), "the joiner hears only answers");
  m.send ("B", b2, "{'type':'thread:connect','thread':'t'}");
  assert_str (m.one (a, "thread:connect").str ("from"), b2);
  assert_str (m.one (b1, "thread:connect").str ("from"), b2);
  fail_unless_equals_int (m.r ("A").remote_count (), 2);
  fail_unless_equals_int (m.r ("B").remote_count (), 1);
  fail_unless_equals_int (m.r ("A").session_count (), 1);
  fail_unless_equals_int (m.r ("A").online_count (), 1);
  fail_unless_equals_int (m.r ("B").session_count (), 2);

  /* A thread message to two members of node B is handed over once per
   * member, and each gets one copy. */
  m.forwards = 0;
  m.send ("A", a, "{'type':'chat','thread':'t','data':'hi'}");
  fail_unless_equals_int (m.forwards, 2);
  assert_str (m.one (b1, "chat").str ("data"), "hi");
  assert_str (m.one (b2, "chat").str ("data"), "hi");
  fail_unless (m.got (a).empty ());

  /* stream:* by id between thread-mates on two nodes; none to a stranger
   * of another node the router does not know. */
  m.send ("B", b1, "{'type':'stream:offer','to':'" + a + "','thread':'t'}");
  assert_str (m.one (a, "stream:offer").str ("from"), b1);

  /* b1 leaves: a and b2 are told, each once. */
  m.send ("B", b1, "{'type':'thread:disconnect','thread':'t'}");
  assert_str (m.one (a, "thread:disconnect").str ("from"), b1);
  assert_str (m.one (b2, "thread:disconnect").str ("from"), b1);
  /* b1 stays known on A as a contact of a, until it ends. */
  fail_unless_equals_int (m.r ("A").remote_count (), 2);
  m.send ("B", b1, "{'type':'socket:disconnect'}");
  assert_str (m.one (a, "socket:disconnect").str ("from"), b1);
  assert_str (m.one (b2, "socket:disconnect").str ("from"), b1);
  fail_unless_equals_int (m.r ("A").remote_count (), 1);

  /* a leaves the thread: B forgets nothing it still shares (a contact),
   * A drops the thread it has no member of. */
  m.send ("A", a, "{'type':'thread:disconnect','thread':'t'}");
  assert_str (m.one (b2, "thread:disconnect").str ("from"), a);
  fail_unless_equals_int (m.r ("A").thread_count (), 0);
  m.send ("A", a, "{'type':'socket:disconnect'}");
  assert_str (m.one (b2, "socket:disconnect").str ("from"), a);
  fail_unless_equals_int (m.r ("A").remote_count (), 0);
  fail_unless_equals_int (m.r ("B").remote_count (), 0);
  fail_unless_equals_int (m.r ("A").session_count (), 0);
}
GST_END_TEST;

GST_START_TEST (test_stand_ins_callbacks)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  auto [a, b] = m.two_in_thread ();
  m.send ("A", a, "{'type':'invite:x','to':'" + b + "','callback_id':'c1'}");
  assert_str (m.one (b, "invite:x").str ("callback_id"), "c1");
  m.send ("B", b, "{'to':'" + a + "','callback_response':'c1','data':1}");
  Msg r = m.got (a).at (0);
  assert_str (r.str ("callback_response"), "c1");
  assert_str (r.str ("from"), b);
  /* The second answer is refused by A, and the error goes back to b. */
  m.send ("B", b, "{'to':'" + a + "','callback_response':'c1','data':2}");
  fail_unless (m.got (a).empty ());
  fail_unless (m.one (b, "error").is_error ("unknown-callback"));
  /* b waits for nothing from c, a session of A: B says so to c. */
  std::string c = m.open ("A");
  m.send ("A", c, "{'to':'" + b + "','callback_response':'c1'}");
  fail_unless (m.one (c, "error").is_error ("unknown-callback"));
}
GST_END_TEST;

GST_START_TEST (test_stand_ins_lookup)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  std::string a = m.open ("A"), c = m.open ("B");
  /* No shared thread: a finds c through the directory. */
  m.send ("A", a, "{'type':'chat','to':'" + c + "','data':'found you'}");
  Msg chat = m.one (c, "chat");
  assert_str (chat.str ("from"), a);
  assert_str (chat.str ("data"), "found you");
  fail_unless (m.got (a).empty ());
  fail_unless_equals_int (m.r ("A").remote_count (), 1);
  m.send ("B", c, "{'type':'chat','to':'" + a + "','data':'hello'}");
  assert_str (m.one (a, "chat").str ("data"), "hello");
  /* A callback both ways round. */
  m.send ("A", a, "{'type':'invite:x','to':'" + c + "','callback_id':3}");
  fail_unless_equals_int (m.one (c, "invite:x").num ("callback_id"), 3);
  m.send ("B", c, "{'to':'" + a + "','callback_response':3,'data':'yes'}");
  Msg yes = m.got (a).at (0);
  fail_unless_equals_int (yes.num ("callback_response"), 3);
  assert_str (yes.str ("data"), "yes");
  /* Nobody holds the id: unknown-recipient, answering the callback. */
  m.send ("A", a, "{'type':'chat','to':'nobody','callback_id':5}");
  Msg e = m.one (a, "error");
  fail_unless (e.is_error ("unknown-recipient"));
  fail_unless_equals_int (e.num ("callback_response"), 5);
  /* One reached, one not: the callback stays c's to answer. */
  m.send ("A", a, "{'type':'chat','to':['" + c + "','nobody'],"
      "'callback_id':6}");
  m.one (c, "chat");
  e = m.one (a, "error");
  fail_unless (e.is_error ("unknown-recipient"));
  fail_if (e.has ("callback_response"));
  m.send ("B", c, "{'to':'" + a + "','callback_response':6}");
  fail_unless_equals_int (m.got (a).at (0).num ("callback_response"), 6);
  /* stream:* needs a shared thread, across nodes too. */
  m.send ("A", a, "{'type':'stream:offer','to':'" + c + "'}");
  fail_unless (m.one (a, "error").is_error ("no-shared-thread"));
  /* c, a contact now, ends: a is told. */
  m.send ("B", c, "{'type':'socket:disconnect'}");
  assert_str (m.one (a, "socket:disconnect").str ("from"), c);
  fail_unless_equals_int (m.r ("A").remote_count (), 0);
}
GST_END_TEST;

GST_START_TEST (test_stand_ins_errors_back)
{
  Mesh m;
  m.add ("A");
  RouterLimits small;
  small.away_messages = 2;
  m.add ("B", small);
  std::string a = m.open ("A"), c = m.open ("B");
  m.send ("A", a, "{'type':'chat','to':'" + c + "','data':0}");
  m.one (c, "chat");
  /* c is away and its queue takes two: the third is refused by B, and
   * the error comes back to a. */
  m.take (m.r ("B").drop (c, 0));
  for (int i = 1; i <= 3; i++)
    m.send ("A", a, "{'type':'chat','to':'" + c + "','data':" +
        std::to_string (i) + ",'callback_id':" + std::to_string (i) + "}");
  Msg e = m.one (a, "error");
  fail_unless (e.is_error ("queue-full"), "%s", e.text ().c_str ());
  assert_str (e.str ("ref_type"), "chat");
  fail_if (e.has ("callback_response"), "B cannot tell if anyone else got it");
  fail_unless_equals_int (m.r ("B").queued (c), 2);
  /* c ends on B; a message already on its way when A hears of it gets
   * unknown-recipient back. */
  m.take (m.r ("A").receive (a, J ("{'type':'chat','to':'" + c + "'}"), 0));
  m.take (m.r ("B").leave (c));
  m.pump ();
  auto ms = m.got (a);
  fail_unless_equals_int (ms.size (), 2);
  assert_str (ms[0].type (), "socket:disconnect");
  fail_unless (ms[1].is_error ("unknown-recipient"), "%s",
      ms[1].text ().c_str ());
}
GST_END_TEST;

GST_START_TEST (test_stand_ins_move)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  m.add ("C");
  auto [a, b] = m.two_in_thread ();
  /* B dies; before A notices, b's client is back on C with its token and
   * joins again: A's stand-in of b moves to C... */
  OpenResult o = m.r ("C").open (m.r ("B").token_for (b), -1, 0);
  fail_unless (o.ok);
  assert_str (o.session, b);
  m.take (o.deliveries);
  m.got (b);
  m.seq[b] = 0;                   /* a new session: seq starts again */
  m.directory[b] = "C";
  m.send ("C", b, "{'type':'thread:connect','thread':'t'}");
  assert_str (m.one (a, "thread:connect").str ("from"), b);
  /* ...so B's end does not end it, and a still reaches b on C. */
  m.take (m.r ("A").remote_node_gone ("B"));
  fail_unless (m.got (a).empty (), "b lives on C");
  m.send ("A", a, "{'type':'chat','thread':'t','data':'still'}");
  assert_str (m.one (b, "chat").str ("data"), "still");
}
GST_END_TEST;

GST_START_TEST (test_stand_ins_node_gone)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  auto [a, b] = m.two_in_thread ();
  fail_unless_equals_int (m.r ("A").remote_nodes ().size (), 1);
  m.take (m.r ("A").remote_node_gone ("B"));
  auto ms = m.got (a);
  fail_unless_equals_int (ms.size (), 2);
  assert_str (ms[0].type (), "thread:disconnect");
  assert_str (ms[0].str ("from"), b);
  assert_str (ms[1].type (), "socket:disconnect");
  assert_str (ms[1].str ("from"), b);
  fail_unless_equals_int (m.r ("A").remote_count (), 0);
  fail_unless (m.r ("A").remote_nodes ().empty ());
  /* Nothing more for a gone node, and a is alone in its thread. */
  fail_unless (m.r ("A").remote_node_gone ("B").empty ());
  std::vector<std::string> members = m.r ("A").thread_members ("t");
  fail_unless (members.size () == 1 && members[0] == a);

  /* b's client comes back on A with its token: a new session there with
   * b's id; a stand-in of b, were there one, would have ended first. */
  OpenResult o = m.r ("A").open (m.r ("B").token_for (b), -1, 0);
  fail_unless (o.ok);
  fail_if (o.resumed);
  assert_str (o.session, b);
  fail_unless (m.r ("A").has_session (b));
}
GST_END_TEST;

/* A membership announced again after an outage ('J'): a node that has
 * the session as a member still tells nobody; one that ended its
 * stand-in (the grace period was over) tells its members it joined, once.
 * Without constraints (join_text) when its node has none to give. */
GST_START_TEST (test_stand_ins_rejoin)
{
  Mesh m;
  m.add ("A");
  m.add ("B");
  auto [a, b] = m.two_in_thread ();
  std::string body = m.r ("B").join_text ("t", b);
  fail_unless (m.r ("A").remote_join ("t", b, "B", body, {a}, true).empty (),
      "a member still: nobody is told");
  m.take (m.r ("A").remote_node_gone ("B"));
  fail_unless_equals_int (m.got (a).size (), 2);
  m.take (m.r ("A").remote_join ("t", b, "B", body, {a}, true));
  auto ms = m.got (a);
  fail_unless_equals_int (ms.size (), 1);
  assert_str (ms[0].type (), "thread:connect");
  assert_str (ms[0].str ("from"), b);
  assert_str (ms[0].str ("thread"), "t");
  fail_if (ms[0].has ("constraints"));
  fail_unless_equals_int (m.r ("A").thread_members ("t").size (), 2);
  fail_unless (m.r ("A").remote_join ("t", b, "B", body, {a}, true).empty (),
      "announced once");
}
GST_END_TEST;

GST_START_TEST (test_join_and_leave_across_nodes)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2"), n3 = node ("n3");
  fail_unless (node_ready (*n1) && node_ready (*n2) && node_ready (*n3));
  auto a = connected (*n1), b = connected (*n2), c = connected (*n3);

  join (*n1, *a, "room", "n1");
  join (*n2, *b, "room", "n2");
  check_join (expect (*a, "thread:connect", "b joined on another node"),
      b->id, "room");
  fail_unless (b->quiet (300), "the joiner hears nobody's join but answers");
  /* A member answers the joiner, as on one node. */
  a->send (J ("{'type':'thread:connect','to':'" + b->id + "','thread':'room',"
          "'constraints':{'video':true,'audio':false}}"));
  check_join (expect (*b, "thread:connect", "a answered"), a->id, "room");

  join (*n3, *c, "room", "n3");
  check_join (expect (*a, "thread:connect", "c joined (a)"), c->id, "room");
  check_join (expect (*b, "thread:connect", "c joined (b)"), c->id, "room");

  /* A thread message reaches the members on every node, once. */
  a->send (J ("{'type':'chat','thread':'room','data':'to all'}"));
  for (Client *m : {b.get (), c.get ()}) {
    Msg chat = expect (*m, "chat", "thread chat");
    assert_str (chat.str ("from"), a->id);
    assert_str (chat.str ("data"), "to all");
  }
  fail_unless (b->quiet (200) && c->quiet (200), "one copy each");
  fail_unless (a->quiet (100), "the sender gets no copy");

  /* A leaves by thread:disconnect: told on both other nodes. */
  b->send (J ("{'type':'thread:disconnect','thread':'room'}"));
  for (Client *m : {a.get (), c.get ()}) {
    Msg left = expect (*m, "thread:disconnect", "b left");
    assert_str (left.str ("from"), b->id);
    assert_str (left.str ("thread"), "room");
  }
  /* c ends its session: a (thread-mate) is told it left and ended. */
  c->send (J ("{'type':'socket:disconnect'}"));
  Msg left = expect (*a, "thread:disconnect", "c ended");
  assert_str (left.str ("from"), c->id);
  Msg gone = expect (*a, "socket:disconnect", "c ended");
  assert_str (gone.str ("from"), c->id);
  /* b was c's thread-mate too until it left: it hears of the end. */
  gone = expect (*b, "socket:disconnect", "c ended (b, a contact)");
  assert_str (gone.str ("from"), c->id);

  Redis r;
  for (int i = 0; i < 100 && r.query ({"HLEN", "pj:thread:room"}) != "1"; i++)
    g_usleep (20000);
  assert_str (r.query ({"HLEN", "pj:thread:room"}), "1");
  assert_str (r.query ({"HGET", "pj:thread:room", a->id}), "n1");
  assert_str (r.query ({"GET", "pj:session:" + a->id}), "n1");
  assert_str (r.query ({"EXISTS", "pj:session:" + c->id}), "0");
}
GST_END_TEST;

GST_START_TEST (test_messages_by_id_across_nodes)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2");
  fail_unless (node_ready (*n1) && node_ready (*n2));
  auto a = connected (*n1), b = connected (*n2);
  join (*n1, *a, "call", "n1");
  join (*n2, *b, "call", "n2");
  expect (*a, "thread:connect", "b joined");

  /* Chat by id, both ways, with seq numbering of the receiving node. */
  a->send (J ("{'type':'chat','to':'" + b->id + "','data':'hello b'}"));
  Msg chat = expect (*b, "chat", "a to b");
  assert_str (chat.str ("from"), a->id);
  assert_str (chat.str ("data"), "hello b");
  fail_unless (chat.num ("seq") > 0);
  b->send (J ("{'type':'chat','to':'" + a->id + "','data':'hello a'}"));
  chat = expect (*a, "chat", "b to a");
  assert_str (chat.str ("from"), b->id);
  assert_str (chat.str ("data"), "hello a");

  /* Media signalling between thread-mates on different nodes. */
  a->send (J ("{'type':'stream:offer','to':'" + b->id + "','thread':'call',"
          "'data':{'sdp':'v=0'}}"));
  Msg offer = expect (*b, "stream:offer", "offer across nodes");
  assert_str (offer.str ("from"), a->id);
  b->send (J ("{'type':'stream:answer','to':'" + a->id + "','thread':'call',"
          "'data':{'sdp':'v=0 answer'}}"));
  expect (*a, "stream:answer", "answer across nodes");
  a->send (J ("{'type':'stream:candidate','to':'" + b->id + "','thread':'call',"
          "'data':{'candidate':'c1'}}"));
  expect (*b, "stream:candidate", "candidate across nodes");

  /* An event with a callback: b asks, a answers once, across nodes. */
  b->send (J ("{'type':'invite:ping','to':'" + a->id + "','data':'ping',"
          "'callback_id':7}"));
  Msg ask = expect (*a, "invite:ping", "the event");
  fail_unless_equals_int (ask.num ("callback_id"), 7);
  assert_str (ask.str ("from"), b->id);
  a->send (J ("{'to':'" + b->id + "','callback_response':7,'data':'pong'}"));
  auto answer = b->next (3000);
  fail_unless (answer.has_value (), "no answer to the callback");
  fail_unless_equals_int (answer->num ("callback_response"), 7);
  assert_str (answer->str ("data"), "pong");
  assert_str (answer->str ("from"), a->id);
  /* A second answer is refused by b's node and the error comes back. */
  a->send (J ("{'to':'" + b->id + "','callback_response':7,'data':'again'}"));
  Msg e = expect (*a, "error", "a second answer");
  assert_str (e.str ("code"), "unknown-callback");
  fail_unless (b->quiet (300), "at most one reply per callback");

  /* The cluster figures count what crossed. */
  std::string metrics;
  fail_unless_equals_int (http_get (n1->http_url ("/metrics"), &metrics), 200);
  fail_unless (metrics.find ("peerjs_cluster_node{node=\"n1\"} 1")
      != std::string::npos, "%s", metrics.c_str ());
  fail_unless (metrics.find ("peerjs_cluster_redis_connected 1")
      != std::string::npos);
  fail_unless (metrics.find ("peerjs_cluster_messages_sent_total 0")
      == std::string::npos, "messages went to n2");
  fail_unless (metrics.find ("peerjs_cluster_messages_received_total 0")
      == std::string::npos, "messages came from n2");
  fail_unless (metrics.find ("peerjs_cluster_remote_sessions 1")
      != std::string::npos, "%s", metrics.c_str ());
  fail_unless (metrics.find ("peerjs_cluster_latency_seconds_count 0")
      == std::string::npos && metrics.find ("peerjs_cluster_latency_seconds_"
          "bucket{le=\"1\"} 0") == std::string::npos,
      "batches from n2 were timed: %s", metrics.c_str ());

  /* A session of n2 that shares nothing with a: found through the
   * session directory, once n2 has written it there. */
  auto c = connected (*n2);
  Redis r;
  for (int i = 0; i < 100 && r.query ({"GET", "pj:session:" + c->id}) != "n2";
      i++)
    g_usleep (10000);
  a->send (J ("{'type':'chat','to':'" + c->id + "','data':'found you'}"));
  Msg found = expect (*c, "chat", "a to c through the directory");
  assert_str (found.str ("from"), a->id);
  assert_str (found.str ("data"), "found you");
  c->send (J ("{'type':'chat','to':'" + a->id + "','data':'back'}"));
  assert_str (expect (*a, "chat", "c to a").str ("data"), "back");
  /* An id no node holds: unknown-recipient, answering the callback. */
  a->send (J ("{'type':'chat','to':'nobody-here','callback_id':9}"));
  Msg miss = expect (*a, "error", "an id no node holds");
  assert_str (miss.str ("code"), "unknown-recipient");
  fail_unless_equals_int (miss.num ("callback_response"), 9);
  /* c ends: a, its contact now, is told. */
  c->send (J ("{'type':'socket:disconnect'}"));
  assert_str (expect (*a, "socket:disconnect", "c ended").str ("from"), c->id);
}
GST_END_TEST;

GST_START_TEST (test_health_without_redis)
{
  /* Nothing listens on this port: the node runs, and says it is unhealthy. */
  auto lost = node ("lost", "redis://127.0.0.1:" + std::to_string (free_port ()));
  std::string body;
  fail_unless_equals_int (http_get (lost->http_url ("/healthz"), &body), 503);
  assert_str (body, "redis unreachable\n");
  fail_unless_equals_int (http_get (lost->http_url ("/metrics"), &body), 200);
  fail_unless (body.find ("peerjs_cluster_redis_connected 0")
      != std::string::npos, "%s", body.c_str ());
  /* Its own clients are still served. */
  auto a = connected (*lost), b = connected (*lost);
  a->send (J ("{'type':'chat','to':'" + b->id + "','data':'local'}"));
  assert_str (expect (*b, "chat", "local relay").str ("data"), "local");

  flush_redis ();
  auto ok = node ("ok");
  fail_unless (node_ready (*ok));
  fail_unless_equals_int (http_get (ok->http_url ("/healthz"), &body), 200);
  /* Without --redis: healthy, no cluster figures. */
  ServerThread single;
  fail_unless_equals_int (http_get (single.http_url ("/healthz"), &body), 200);
  fail_unless_equals_int (http_get (single.http_url ("/metrics"), &body), 200);
  fail_unless (body.find ("peerjs_cluster") == std::string::npos);
}
GST_END_TEST;

/* Chats `texts` from `from` in this order (seq rising), each once, and
 * nothing else of type chat. */
void
expect_chats (Client & c, const std::vector<std::string> & texts,
    const std::string & from, const char *why)
{
  std::uint64_t seq = 0;
  for (const auto &t : texts) {
    Msg m = expect (c, "chat", why);
    if (!from.empty ())
      assert_str (m.str ("from"), from);
    assert_str (m.str ("data"), t);
    fail_unless (static_cast<std::uint64_t>(m.num ("seq")) > seq,
        "%s: seq %" G_GINT64_FORMAT " after %" G_GUINT64_FORMAT, why,
        m.num ("seq"), seq);
    seq = m.num ("seq");
  }
  auto extra = c.next_of ("chat", 300);
  fail_unless (!extra, "%s: a chat more: %s", why, extra ? extra->text ().c_str ()
      : "");
}

/* A node as a process of its own, to be stopped or killed: `id` on
 * `port`, grace 5 s, pings every 30 s, with `extra` options; its parent is
 * this thread (no intermediate child), so it dies with the test. Waits
 * until its /healthz answers 200. Its stderr goes to /dev/null when
 * `quiet`. */
static GPid
spawn_node (const std::string & id, guint port,
    const std::vector<std::string> & extra = {}, bool quiet = true)
{
  std::string port_s = std::to_string (port), url = redis_url ();
  const char *program = g_getenv ("PEERJS_SIGNALLING");
  fail_unless (program != nullptr, "PEERJS_SIGNALLING is not set");
  std::vector<const char *> argv = {program, "--host", "127.0.0.1",
    "--port", port_s.c_str (), "--redis", url.c_str (), "--node-id",
    id.c_str (), "--web-root", "/nonexistent", "--ping-interval", "30",
    "--grace", "5"};
  for (const std::string & e : extra)
    argv.push_back (e.c_str ());
  argv.push_back (nullptr);
  GPid pid = 0;
  int flags = G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_DO_NOT_REAP_CHILD
      | (quiet ? G_SPAWN_STDERR_TO_DEV_NULL : 0);
  fail_unless (g_spawn_async (nullptr, const_cast<char **>(argv.data ()),
          nullptr, GSpawnFlags (flags),
          +[] (gpointer) { prctl (PR_SET_PDEATHSIG, SIGKILL); }, nullptr, &pid,
          nullptr));
  bool up = false;
  for (int i = 0; i < 100 && !up; i++) {
    std::string body;
    up = http_get ("http://127.0.0.1:" + port_s + "/healthz", &body) == 200;
    if (!up)
      g_usleep (50000);
  }
  fail_unless (up, "node %s did not become healthy", id.c_str ());
  return pid;
}

/* The WebSocket URL of a node spawn_node started on `port`. */
static std::string
node_url (guint port)
{
  return "ws://127.0.0.1:" + std::to_string (port) + "/peerjs";
}

/* No thread:connect or thread:disconnect waits at `c`: nobody left or
 * joined. */
void
no_churn (Client & c, const char *why)
{
  for (const char *type : {"thread:connect", "thread:disconnect",
          "socket:disconnect"}) {
    auto m = c.next_of (type, 50);
    fail_unless (!m, "%s: %s", why, m ? m->text ().c_str () : "");
  }
}

GST_START_TEST (test_killed_node)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2");
  fail_unless (node_ready (*n1) && node_ready (*n2));
  /* The third node is a process of its own, to be SIGKILLed. Its parent
   * is this thread (no intermediate child): it dies with the test. It
   * shares the secret and the grace period (5 s) of the two others. */
  g_autofree char *dir = g_dir_make_tmp ("cluster-XXXXXX", nullptr);
  std::string secret_file = std::string (dir) + "/secret";
  fail_unless (g_file_set_contents (secret_file.c_str (), SECRET, -1,
          nullptr));
  guint port = free_port ();
  GPid pid = spawn_node ("n3", port, {"--secret-file", secret_file}, false);
  std::string ws = node_url (port);
  auto c = std::make_unique<Client> (), d = std::make_unique<Client> ();
  fail_unless (c->connect (ws) && d->connect (ws));

  auto a = connected (*n1), b = connected (*n2);
  join (*n1, *a, "room", "n1");
  join (*n2, *b, "room", "n2");
  expect (*a, "thread:connect", "b joined");
  for (Client *x : {c.get (), d.get ()}) {
    x->send (J ("{'type':'thread:connect','thread':'room',"
            "'constraints':{'video':true,'audio':false}}"));
    check_join (expect (*a, "thread:connect", "joined on n3 (a)"), x->id,
        "room");
    check_join (expect (*b, "thread:connect", "joined on n3 (b)"), x->id,
        "room");
  }
  /* A chat from the doomed node's session arrives as usual, and c hears
   * from the others; its state is in Redis by the end of the turn. */
  c->send (J ("{'type':'chat','thread':'room','data':'last words'}"));
  assert_str (expect (*a, "chat", "c's chat").str ("data"), "last words");
  assert_str (expect (*b, "chat", "c's chat").str ("data"), "last words");
  b->send (J ("{'type':'chat','thread':'room','data':'k0'}"));
  expect_chats (*c, {"k0"}, b->id, "c before the kill");
  std::string token = c->token, id = c->id, lost_id = d->id;
  std::uint64_t last = c->last_seq;
  g_usleep (100000);

  gint64 killed = g_get_monotonic_time ();
  kill_child (pid);
  c->abort ();
  d->abort ();
  /* Sent while n3 is dead and before c comes back: kept in Redis. From
   * two nodes, a beat apart so that their order is known. */
  a->send (J ("{'type':'chat','thread':'room','data':'k1'}"));
  a->send (J ("{'type':'chat','thread':'room','data':'k2'}"));
  g_usleep (100000);
  b->send (J ("{'type':'chat','to':'" + id + "','data':'k3'}"));
  g_usleep (100000);
  a->send (J ("{'type':'chat','thread':'room','data':'k4'}"));
  g_usleep (200000);

  /* c resumes on n2: same id, the messages sent meanwhile once each, in
   * order, seq going on from what it saw on n3. */
  auto c2 = std::make_unique<Client> ();
  fail_unless (c2->connect (n2->ws_url (), "resume=" + token + "&last=" +
          std::to_string (last)));
  assert_str (c2->id, id);
  fail_unless (c2->greeting.boolean ("resumed"), "resumed on n2: %s",
      c2->greeting.text ().c_str ());
  fail_unless (c2->greeting.num ("missed") == 0);
  std::vector<std::string> texts;
  std::uint64_t seq = last;
  for (int i = 0; i < 4; i++) {
    Msg m = expect (*c2, "chat", "what n3 never got");
    fail_unless (static_cast<std::uint64_t>(m.num ("seq")) == seq + 1,
        "seq %" G_GINT64_FORMAT " after %" G_GUINT64_FORMAT, m.num ("seq"), seq);
    seq = m.num ("seq");
    texts.push_back (m.str ("data"));
  }
  fail_unless (texts == std::vector<std::string> ({"k1", "k2", "k3", "k4"}),
      "got %s %s %s %s", texts[0].c_str (), texts[1].c_str (), texts[2].c_str (),
      texts[3].c_str ());
  fail_unless (!c2->next_of ("chat", 300), "none duplicated");
  /* It goes on from n2, both ways. */
  a->send (J ("{'type':'chat','thread':'room','data':'k5'}"));
  Msg k5 = expect (*c2, "chat", "after the resume");
  assert_str (k5.str ("data"), "k5");
  fail_unless (static_cast<std::uint64_t>(k5.num ("seq")) == seq + 1);
  c2->send (J ("{'type':'chat','thread':'room','data':'back'}"));
  expect_chats (*a, {"k0", "back"}, "", "a");
  expect_chats (*b, {"k1", "k2", "k4", "k5", "back"}, "", "b");

  /* d does not come back: its thread-mates hear it left and ended once
   * the grace period is over, not when n3 is found gone; c never leaves. */
  for (Client *m : {a.get (), b.get ()}) {
    Msg left = expect (*m, "thread:disconnect", "d's grace ended", 16000);
    assert_str (left.str ("from"), lost_id);
    assert_str (left.str ("thread"), "room");
    Msg gone = expect (*m, "socket:disconnect", "d's grace ended", 2000);
    assert_str (gone.str ("from"), lost_id);
  }
  gint64 noticed_ms = (g_get_monotonic_time () - killed) / 1000;
  g_print ("the killed node's session that did not resume was reported gone "
      "after %" G_GINT64_FORMAT " ms\n", noticed_ms);
  /* The heartbeat's TTL (5 s), then the grace period (5 s). */
  fail_unless (noticed_ms >= 9000 && noticed_ms < 16000, "took %"
      G_GINT64_FORMAT " ms", noticed_ms);
  no_churn (*a, "c stays");
  no_churn (*b, "c stays");
  a->send (J ("{'type':'chat','thread':'room','data':'still here'}"));
  expect_chats (*c2, {"still here"}, a->id, "after the grace");
  Redis r;
  for (int i = 0; i < 100 && r.query ({"HEXISTS", "pj:thread:room", lost_id})
      != "0"; i++)
    g_usleep (20000);
  assert_str (r.query ({"HEXISTS", "pj:thread:room", lost_id}), "0");
  assert_str (r.query ({"HGET", "pj:thread:room", id}), "n2");
  assert_str (r.query ({"GET", "pj:session:" + id}), "n2");
  assert_str (r.query ({"EXISTS", "pj:node:n3"}), "0");
  assert_str (r.query ({"EXISTS", "pj:node:n1"}), "1");
  g_unlink (secret_file.c_str ());
  g_rmdir (dir);
}
GST_END_TEST;

/* The messages waiting at `c` (seq rising), until it is
 * quiet for `quiet_ms`. */
std::vector<Msg>
drain (Client & c, int quiet_ms)
{
  std::vector<Msg> out;
  while (auto m = c.next (quiet_ms))
    out.push_back (*m);
  return out;
}

/* A node that stops answering (SIGSTOP) longer than its heartbeat's TTL
 * but less than the grace period is taken for gone, and found back when
 * the grace period is over: its session goes on for the others, with no
 * leave, and what they sent it meanwhile arrives. */
GST_START_TEST (test_node_back_within_grace)
{
  flush_redis ();
  /* n1 gives the sessions of a node it finds gone 4 s. */
  auto n1 = node ("n1", redis_url (), 4 * G_USEC_PER_SEC);
  fail_unless (node_ready (*n1));
  guint port = free_port ();
  GPid pid = spawn_node ("n3", port);
  auto c = std::make_unique<Client> ();
  fail_unless (c->connect (node_url (port)));
  auto a = connected (*n1);
  join (*n1, *a, "room", "n1");
  c->send (J ("{'type':'thread:connect','thread':'room',"
          "'constraints':{'video':true,'audio':false}}"));
  check_join (expect (*a, "thread:connect", "c joined"), c->id, "room");

  kill (pid, SIGSTOP);
  /* Past the heartbeat's TTL (5 s) and the look that finds it gone. */
  fail_unless (!a->next_of ("thread:disconnect", 7000),
      "no leave within the grace period");
  a->send (J ("{'type':'chat','thread':'room','data':'while stopped'}"));
  kill (pid, SIGCONT);
  /* Past the end of the grace period: the node is back, nothing ends. */
  fail_unless (!a->next_of ("thread:disconnect", 4000),
      "no leave once the node is back");
  assert_str (expect (*c, "chat", "sent while stopped").str ("data"),
      "while stopped");
  c->send (J ("{'type':'chat','thread':'room','data':'still here'}"));
  assert_str (expect (*a, "chat", "c goes on").str ("data"), "still here");
  /* Its node announced its membership again: a member already, nobody is
   * told. */
  fail_unless (!a->next_of ("thread:connect", 300), "c is not announced twice");
  kill_child (pid);
}
GST_END_TEST;

/* A node stopped (SIGSTOP) past its heartbeat's TTL and past the grace
 * period its sessions get on another node: that node tells its members
 * the session left and ended, as for a dead node. Let go on (SIGCONT),
 * the stopped node finds its heartbeat expired and announces its
 * sessions' memberships again: the members hear the session join again,
 * once, with its constraints, and the thread carries messages both ways
 * again. The session itself hears only of a member that left while its
 * node was taken for gone (once). */
GST_START_TEST (test_node_back_after_grace)
{
  flush_redis ();
  auto n1 = node ("n1", redis_url (), 2 * G_USEC_PER_SEC);
  fail_unless (node_ready (*n1));
  guint port = free_port ();
  GPid pid = spawn_node ("n3", port);
  auto c = std::make_unique<Client> ();
  fail_unless (c->connect (node_url (port)));
  auto a = connected (*n1), a2 = connected (*n1);
  join (*n1, *a, "room", "n1");
  join (*n1, *a2, "room", "n1");
  check_join (expect (*a, "thread:connect", "a2 joined"), a2->id, "room");
  c->send (J ("{'type':'thread:connect','thread':'room',"
          "'constraints':{'video':true,'audio':false}}"));
  check_join (expect (*a, "thread:connect", "c joined"), c->id, "room");
  check_join (expect (*a2, "thread:connect", "c joined (a2)"), c->id, "room");
  drain (*c, 100);

  kill (pid, SIGSTOP);
  /* The TTL (5 s), the look that finds it gone (1 s), the grace (2 s). */
  gint64 stopped = g_get_monotonic_time ();
  Msg left = expect (*a, "thread:disconnect", "c taken for gone", 15000);
  assert_str (left.str ("from"), c->id);
  assert_str (expect (*a, "socket:disconnect", "c taken for gone")
      .str ("from"), c->id);
  fail_unless (g_get_monotonic_time () - stopped > 6 * G_USEC_PER_SEC,
      "not before the TTL and the grace period");
  a->send (J ("{'type':'chat','thread':'room','data':'alone'}"));
  /* a2 leaves while c's node is taken for gone: its node is not told. */
  a2->send (J ("{'type':'thread:disconnect','thread':'room'}"));
  assert_str (expect (*a, "thread:disconnect", "a2 left").str ("from"),
      a2->id);
  kill (pid, SIGCONT);
  check_join (expect (*a, "thread:connect", "c announced again", 5000),
      c->id, "room");
  fail_unless (!a->next_of ("thread:connect", 1000), "announced once");
  /* The thread carries messages both ways again. */
  a->send (J ("{'type':'chat','thread':'room','data':'welcome back'}"));
  assert_str (expect (*c, "chat", "a's thread message").str ("data"),
      "welcome back");
  c->send (J ("{'type':'chat','thread':'room','data':'never left'}"));
  assert_str (expect (*a, "chat", "c's thread message").str ("data"),
      "never left");
  /* c hears a2 left, once, and nothing of its own leave and join, nor
   * the message sent while it was not a member for n1. */
  Msg a2_left = expect (*c, "thread:disconnect", "a2 left, told late",
      6000);
  assert_str (a2_left.str ("from"), a2->id);
  no_churn (*c, "c saw nothing else change");
  fail_unless (!c->next_of ("chat", 200), "nothing more for c");
  fail_unless (!a2->next_of ("thread:connect", 100), "a2 is no member");
  Redis r;
  assert_str (r.query ({"HGET", "pj:thread:room", c->id}), "n3");
  assert_str (r.query ({"EXISTS", "pj:down:n3"}), "0");
  kill_child (pid);
}
GST_END_TEST;

GST_START_TEST (test_resume_on_live_node)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2"), n3 = node ("n3");
  fail_unless (node_ready (*n1) && node_ready (*n2) && node_ready (*n3));
  auto a = connected (*n1), b = connected (*n2), c = connected (*n3);
  join (*n1, *a, "room", "n1");
  join (*n2, *b, "room", "n2");
  join (*n3, *c, "room", "n3");
  expect (*a, "thread:connect", "b joined");
  expect (*a, "thread:connect", "c joined");
  expect (*b, "thread:connect", "c joined");
  a->send (J ("{'type':'presence:tag','data':'alice'}"));
  b->send (J ("{'type':'chat','thread':'room','data':'one'}"));
  expect_chats (*a, {"one"}, b->id, "before the move");
  /* A callback a waits for when it moves. */
  a->send (J ("{'type':'ask','to':'" + c->id + "','callback_id':'q'}"));
  expect (*c, "ask", "a's question");

  /* a is away on n1 (its connection lost); b and c write to it there. */
  std::string id = a->id, token = a->token;
  std::uint64_t last = a->last_seq;
  a->abort ();
  n1->call ([&] (SignallingServer &) {});
  for (int i = 0; i < 100; i++) {
    bool online = true;
    n1->call ([&] (SignallingServer & s) { online = s.router ().is_online (id); });
    if (!online)
      break;
    g_usleep (10000);
  }
  /* From two nodes, a beat apart so that their order is known. */
  b->send (J ("{'type':'chat','thread':'room','data':'two'}"));
  g_usleep (100000);
  c->send (J ("{'type':'chat','to':'" + id + "','data':'three'}"));
  g_usleep (200000);

  /* It comes back on n2: same id, resumed, the queue replayed with seq
   * continuing, and thread-mates see no churn. */
  auto a2 = std::make_unique<Client> ();
  fail_unless (a2->connect (n2->ws_url (), "resume=" + token + "&last=" +
          std::to_string (last)));
  assert_str (a2->id, id);
  fail_unless (a2->greeting.boolean ("resumed"), "resumed on n2: %s",
      a2->greeting.text ().c_str ());
  Msg two = expect (*a2, "chat", "queued on n1");
  assert_str (two.str ("data"), "two");
  fail_unless (static_cast<std::uint64_t>(two.num ("seq")) == last + 1,
      "seq continues: %" G_GINT64_FORMAT " after %" G_GUINT64_FORMAT,
      two.num ("seq"), last);
  Msg three = expect (*a2, "chat", "queued on n1");
  assert_str (three.str ("data"), "three");
  fail_unless (three.num ("seq") == two.num ("seq") + 1);
  fail_unless (!a2->next_of ("chat", 300), "each once");

  /* Everybody reaches it on n2 now, and it reaches them; its tag came
   * with it. */
  b->send (J ("{'type':'chat','thread':'room','data':'four'}"));
  c->send (J ("{'type':'chat','to':'" + id + "','data':'five'}"));
  Msg four = expect (*a2, "chat", "after the move");
  fail_unless (four.num ("seq") == three.num ("seq") + 1);
  std::set<std::string> got = {four.str ("data")};
  got.insert (expect (*a2, "chat", "after the move").str ("data"));
  fail_unless (got == std::set<std::string> ({"four", "five"}));
  auto d = connected (*n2);
  d->send (J ("{'type':'chat','to':'alice','data':'by tag'}"));
  Msg tagged = expect (*a2, "chat", "its tag came along");
  assert_str (tagged.str ("original_to"), "alice");
  /* The answer to the callback it asked on n1 reaches it on n2, once. */
  c->send (J ("{'to':'" + id + "','callback_response':'q','data':'yes'}"));
  auto answer = a2->next (3000);
  fail_unless (answer && answer->has ("callback_response")
      && answer->str ("callback_response") == "q"
      && answer->str ("data") == "yes", "the answer reached a on n2: %s",
      answer ? answer->text ().c_str () : "nothing");
  c->send (J ("{'to':'" + id + "','callback_response':'q','data':'again'}"));
  assert_str (expect (*c, "error", "a second answer").str ("code"),
      "unknown-callback");
  a2->send (J ("{'type':'chat','thread':'room','data':'back'}"));
  expect_chats (*b, {"back"}, id, "b hears a on n2");
  expect_chats (*c, {"one", "two", "four", "back"}, "", "c's view");
  no_churn (*b, "b");
  no_churn (*c, "c");

  /* A connection still open on n1 is closed (4000) when its session
   * resumes elsewhere: a2 moves back to n1 from a third connection. */
  std::uint64_t last2 = a2->last_seq;
  auto a3 = std::make_unique<Client> ();
  fail_unless (a3->connect (n1->ws_url (), "resume=" + token + "&last=" +
          std::to_string (last2)));
  fail_unless (a3->greeting.boolean ("resumed"));
  fail_unless (a2->wait_closed (3000), "n2 closed the old connection");
  fail_unless (a2->close_code () == 4000, "close code %u", a2->close_code ());
  c->send (J ("{'type':'chat','thread':'room','data':'six'}"));
  Msg six = expect (*a3, "chat", "back on n1");
  assert_str (six.str ("data"), "six");
  fail_unless (static_cast<std::uint64_t>(six.num ("seq")) == last2 + 1);
  no_churn (*b, "b after the second move");

  Redis r;
  assert_str (r.query ({"GET", "pj:session:" + id}), "n1");
  assert_str (r.query ({"HGET", "pj:thread:room", id}), "n1");
}
GST_END_TEST;

/* The data of the next chat-like message of `type` at `c`, checking it
 * came from `from` through `tag`. */
std::string
via_tag (Client & c, const std::string & type, const std::string & from,
    const std::string & tag, const char *why)
{
  Msg m = expect (c, type, why);
  assert_str (m.str ("from"), from);
  assert_str (m.str ("original_to"), tag);
  return m.has ("data") ? m.str ("data") : "";
}

GST_START_TEST (test_tags_across_nodes)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2"), n3 = node ("n3");
  fail_unless (node_ready (*n1) && node_ready (*n2) && node_ready (*n3));
  auto a = connected (*n1), w = connected (*n1), b = connected (*n2),
      x = connected (*n2), c = connected (*n3), w2 = connected (*n3);
  Redis r;
  auto wait_hash = [&] (const std::string & key, const std::string & field,
      const std::string & value) {
    for (int i = 0; i < 200 && r.query ({"HGET", key, field}) != value; i++)
      g_usleep (10000);
    assert_str (r.query ({"HGET", key, field}), value);
  };

  /* A watch held on n1 for a tag nobody carries yet reaches the carriers
   * that appear later on the other nodes, and on its own. */
  w->send (J ("{'type':'presence:watch','to':['helper'],'data':'w1'}"));
  wait_hash ("pj:watch:helper", w->id, "n1");
  b->send (J ("{'type':'presence:tag','data':'helper'}"));
  assert_str (via_tag (*b, "presence:watch", w->id, "helper", "b tagged"),
      "w1");
  c->send (J ("{'type':'presence:tag','data':['helper','other']}"));
  assert_str (via_tag (*c, "presence:watch", w->id, "helper", "c tagged"),
      "w1");
  a->send (J ("{'type':'presence:tag','data':'helper'}"));
  assert_str (via_tag (*a, "presence:watch", w->id, "helper", "a tagged"),
      "w1");
  wait_hash ("pj:tag:helper", a->id, "n1");
  wait_hash ("pj:tag:helper", b->id, "n2");
  wait_hash ("pj:tag:helper", c->id, "n3");

  /* A watch sent now reaches the carriers present on every node. */
  w2->send (J ("{'type':'presence:watch','to':['helper'],'data':'w2'}"));
  for (Client *m : {a.get (), b.get (), c.get ()})
    assert_str (via_tag (*m, "presence:watch", w2->id, "helper",
            "a watch for present carriers"), "w2");

  /* A message to the tag reaches each carrier on every node once, the
   * sender's node's too; naming a carrier by id as well changes nothing. */
  x->send (J ("{'type':'chat','to':['helper','" + b->id + "'],"
          "'data':'to helpers'}"));
  for (Client *m : {a.get (), c.get ()})
    assert_str (via_tag (*m, "chat", x->id, "helper", "to the tag"),
        "to helpers");
  Msg bm = expect (*b, "chat", "to the tag and by id");
  assert_str (bm.str ("data"), "to helpers");
  for (Client *m : {a.get (), b.get (), c.get ()})
    fail_unless (!m->next_of ("chat", 200), "once each");
  fail_unless (!x->next_of ("chat", 100) && !x->next_of ("error", 100));

  /* A tag carried only on another node is found there. */
  a->send (J ("{'type':'chat','to':'other','data':'to other'}"));
  assert_str (via_tag (*c, "chat", a->id, "other", "a tag of n3 only"),
      "to other");
  /* A callback through the tag: answered once across nodes. */
  a->send (J ("{'type':'ask','to':'other','callback_id':5}"));
  Msg ask = expect (*c, "ask", "the callback's question");
  assert_str (ask.str ("original_to"), "other");
  c->send (J ("{'to':'" + a->id + "','callback_response':5,'data':'yes'}"));
  auto answer = a->next (3000);
  fail_unless (answer && answer->num ("callback_response") == 5
      && answer->str ("data") == "yes", "the answer came back");
  c->send (J ("{'to':'" + a->id + "','callback_response':5,'data':'again'}"));
  Msg again = expect (*c, "error", "a second answer");
  assert_str (again.str ("code"), "unknown-callback");
  /* No tag and no session: unknown-recipient. */
  a->send (J ("{'type':'chat','to':'nobody-carries-this','data':'?'}"));
  Msg err = expect (*a, "error", "a tag nobody carries");
  assert_str (err.str ("code"), "unknown-recipient");

  /* b ends: its tag is gone from Redis, and the tag reaches the others. */
  b->send (J ("{'type':'socket:disconnect'}"));
  for (int i = 0; i < 200 && r.query ({"HEXISTS", "pj:tag:helper", b->id})
      != "0"; i++)
    g_usleep (10000);
  assert_str (r.query ({"HEXISTS", "pj:tag:helper", b->id}), "0");
  x->send (J ("{'type':'chat','to':'helper','data':'after b'}"));
  for (Client *m : {a.get (), c.get ()})
    assert_str (via_tag (*m, "chat", x->id, "helper", "after b left"),
        "after b");
}
GST_END_TEST;

/* The protocol's cross-session rules (docs/protocol.md, as the protocol
 * and server suites check them on one node) with the clients spread over
 * three nodes: a and d on n1, b on n2, c on n3. Each step asserts what
 * every client received, and that nothing else came. */
GST_START_TEST (test_protocol_rules_over_nodes)
{
  flush_redis ();
  auto n1 = node ("n1"), n2 = node ("n2"), n3 = node ("n3");
  fail_unless (node_ready (*n1) && node_ready (*n2) && node_ready (*n3));
  auto a = connected (*n1), d = connected (*n1), b = connected (*n2),
      c = connected (*n3);
  std::vector<Client *> all = {a.get (), b.get (), c.get (), d.get ()};
  auto nothing_else = [&] (const char *why) {
    for (Client *x : all) {
      auto m = x->next (100);
      fail_unless (!m, "%s: %s got %s", why, x->id.c_str (),
          m ? m->text ().c_str () : "");
    }
  };
  auto error = [&] (Client & x, const std::string & code, const char *why) {
    Msg e = expect (x, "error", why);
    assert_str (e.str ("code"), code);
    return e;
  };
  auto one = [&] (Client & x, const std::string & type, const std::string & from,
      const char *why) {
    Msg m = expect (x, type, why);
    assert_str (m.str ("from"), from);
    fail_unless (m.has ("seq"), "%s: no seq", why);
    return m;
  };

  join (*n1, *a, "room", "n1");
  join (*n2, *b, "room", "n2");
  join (*n3, *c, "room", "n3");
  expect (*a, "thread:connect", "b joined");
  expect (*a, "thread:connect", "c joined");
  expect (*b, "thread:connect", "c joined");
  nothing_else ("joins");

  /* By id, each recipient once however often named, the sender too when
   * it names itself. */
  a->send (J ("{'type':'chat','to':['" + b->id + "','" + c->id + "','" +
          b->id + "','" + a->id + "'],'data':'by id'}"));
  for (Client *x : {b.get (), c.get (), a.get ()})
    assert_str (one (*x, "chat", a->id, "by id").str ("data"), "by id");
  nothing_else ("by id, once each");

  /* Entries that resolve to nobody: one unknown-recipient listing them;
   * the others still delivered; no callback_response when someone got
   * it. */
  b->send (J ("{'type':'chat','to':['" + c->id + "','nobody-1','nobody-2'],"
          "'callback_id':1}"));
  one (*c, "chat", b->id, "the known one");
  Msg e = error (*b, "unknown-recipient", "two unknown");
  fail_unless (e.str ("message").find ("nobody-1") != std::string::npos
      && e.str ("message").find ("nobody-2") != std::string::npos,
      "one error lists both: %s", e.text ().c_str ());
  fail_unless (!e.has ("callback_response"), "c got it: its callback stays");
  nothing_else ("unknown entries");
  /* Nobody at all: the error answers the callback. */
  c->send (J ("{'type':'chat','to':'nobody-3','callback_id':'x'}"));
  assert_str (error (*c, "unknown-recipient", "nobody").str
      ("callback_response"), "x");

  /* By thread: every other member, on every node; a non-member is
   * refused and nobody gets anything. */
  b->send (J ("{'type':'chat','thread':'room','data':'to room'}"));
  one (*a, "chat", b->id, "thread message");
  one (*c, "chat", b->id, "thread message");
  d->send (J ("{'type':'chat','thread':'room','data':'outsider'}"));
  error (*d, "not-member", "not in room");
  nothing_else ("by thread");
  /* thread and to together: the sender must be a member, and the
   * recipient gets it. */
  a->send (J ("{'type':'chat','thread':'room','to':'" + c->id + "'}"));
  one (*c, "chat", a->id, "thread and to");
  d->send (J ("{'type':'chat','thread':'room','to':'" + b->id + "'}"));
  error (*d, "not-member", "thread and to from a non-member");
  nothing_else ("thread and to");
  /* thread:* answers go only between members. */
  d->send (J ("{'type':'thread:connect','thread':'room','to':'" + a->id +
          "'}"));
  error (*d, "not-member", "an answer from a non-member");
  a->send (J ("{'type':'thread:connect','thread':'room','to':'" + d->id +
          "'}"));
  error (*a, "not-member", "an answer to a non-member");
  b->send (J ("{'type':'thread:change','thread':'room',"
          "'constraints':{'video':false}}"));
  one (*a, "thread:change", b->id, "thread:change");
  one (*c, "thread:change", b->id, "thread:change");
  d->send (J ("{'type':'thread:disconnect','thread':'room'}"));
  error (*d, "not-member", "leaving a thread not joined");
  nothing_else ("thread:* rules");

  /* stream:* between thread-mates across nodes; a message with neither
   * to nor thread; a spoofed from. */
  a->send (J ("{'type':'stream:offer','to':'" + c->id + "','data':'sdp'}"));
  one (*c, "stream:offer", a->id, "stream:offer to a thread-mate");
  c->send (J ("{'type':'stream:answer','to':'" + a->id + "','data':'sdp'}"));
  one (*a, "stream:answer", c->id, "stream:answer back");
  b->send (J ("{'type':'chat','data':'nowhere'}"));
  error (*b, "bad-message", "neither to nor thread");
  b->send (J ("{'type':'chat','from':'" + a->id + "','to':'" + c->id + "'}"));
  error (*b, "spoofed-from", "from names another session");
  nothing_else ("stream, bad-message, spoofed-from");

  /* Callbacks: one reply reaches the asker; a second reply, another
   * recipient's, or a stranger's, gets unknown-callback. */
  a->send (J ("{'type':'ask','to':['" + b->id + "','" + c->id + "'],"
          "'callback_id':9}"));
  one (*b, "ask", a->id, "the question (b)");
  one (*c, "ask", a->id, "the question (c)");
  b->send (J ("{'to':'" + a->id + "','callback_response':9,'data':'b'}"));
  auto reply = a->next (3000);
  fail_unless (reply && reply->num ("callback_response") == 9
      && reply->str ("from") == b->id, "b's answer reached a");
  c->send (J ("{'to':'" + a->id + "','callback_response':9,'data':'c'}"));
  error (*c, "unknown-callback", "answered already");
  d->send (J ("{'to':'" + b->id + "','callback_response':9}"));
  error (*d, "unknown-callback", "a stranger's answer");
  nothing_else ("callbacks");

  /* Tags: every carrier but the sender, on every node, with
   * original_to. */
  for (Client *x : {b.get (), c.get (), d.get ()})
    x->send (J ("{'type':'presence:tag','data':'crew'}"));
  Redis r;
  for (Client *x : {b.get (), c.get (), d.get ()})
    for (int i = 0; i < 200 && r.query ({"HEXISTS", "pj:tag:crew", x->id})
        != "1"; i++)
      g_usleep (10000);
  b->send (J ("{'type':'chat','to':'crew','data':'to the crew'}"));
  for (Client *x : {c.get (), d.get ()})
    assert_str (one (*x, "chat", b->id, "to a tag").str ("original_to"),
        "crew");
  nothing_else ("tag");
}
GST_END_TEST;

/* peer.js given two nodes' URLs moves to the next one when its node is
 * killed, and resumes there: tests/browser/failover.mjs, in headless
 * Chromium. Passed over (with a note) where the browser suite could not
 * run either. */
GST_START_TEST (test_peerjs_failover)
{
  const char *dir = g_getenv ("PEERJS_BROWSER_TESTS");
  const char *chromium = g_getenv ("PEERJS_CHROMIUM");
  g_autofree char *node_bin = g_find_program_in_path ("node");
  g_autofree char *pw = dir ? g_build_filename (dir, "node_modules",
      "playwright-core", nullptr) : nullptr;
  if (!dir || !node_bin || !pw || !g_file_test (pw, G_FILE_TEST_IS_DIR)
      || !g_file_test (chromium ? chromium : "/usr/bin/chromium",
          G_FILE_TEST_IS_EXECUTABLE)) {
    g_print ("test_peerjs_failover: passed over: node, Chromium or "
        "playwright-core is missing (tools/setup installs them)\n");
    return;
  }
  const char *argv[] = {node_bin, "failover.mjs", nullptr};
  g_autofree char *out = nullptr;
  gint status = 0;
  g_autoptr (GError) error = nullptr;
  fail_unless (g_spawn_sync (dir, const_cast<char **>(argv), nullptr,
          G_SPAWN_STDERR_TO_DEV_NULL, nullptr, nullptr, &out, nullptr, &status,
          &error), "cannot run node: %s", error ? error->message : "");
  if (!g_spawn_check_wait_status (status, nullptr))
    g_printerr ("===== tests/browser/failover.mjs:\n%s=====\n", out);
  fail_unless (g_spawn_check_wait_status (status, nullptr),
      "tests/browser/failover.mjs failed (its output is above)");
}
GST_END_TEST;

GST_START_TEST (test_redis_restart)
{
  /* A Redis of this test's own, restarted empty mid-conversation. */
  guint port = free_port ();
  GPid pid = spawn_redis (port);
  std::string url = "redis://127.0.0.1:" + std::to_string (port);
  auto n1 = node ("r1", url), n2 = node ("r2", url);
  fail_unless (node_ready (*n1) && node_ready (*n2));
  auto a = connected (*n1), a2 = connected (*n1), b = connected (*n2);
  redis_port = port;              /* what join () and Redis look at */
  join (*n1, *a, "room", "r1");
  join (*n2, *b, "room", "r2");
  expect (*a, "thread:connect", "b joined");

  kill_child (pid);
  fail_unless (node_ready (*n1, false) && node_ready (*n2, false),
      "the nodes say they are unhealthy while Redis is down");
  std::string body;
  fail_unless_equals_int (http_get (n1->http_url ("/healthz"), &body), 503);
  /* Local relay goes on meanwhile. */
  a->send (J ("{'type':'chat','to':'" + a2->id + "','data':'local'}"));
  assert_str (expect (*a2, "chat", "local relay without Redis").str ("data"),
      "local");

  pid = spawn_redis (port);
  fail_unless (node_ready (*n1, true, 8000) && node_ready (*n2, true, 8000),
      "the nodes connect again");
  fail_unless_equals_int (http_get (n1->http_url ("/healthz"), &body), 200);
  /* What they knew of each other they still know... */
  a->send (J ("{'type':'chat','to':'" + b->id + "','data':'after'}"));
  assert_str (expect (*b, "chat", "across nodes after the restart")
      .str ("data"), "after");
  /* ...and the new Redis holds their memberships again: a newcomer meets
   * the members of both nodes. */
  auto d = connected (*n2);
  join (*n2, *d, "room", "r2");
  check_join (expect (*a, "thread:connect", "d joined (a)"), d->id, "room");
  check_join (expect (*b, "thread:connect", "d joined (b)"), d->id, "room");
  fail_unless_equals_int (http_get (n1->http_url ("/metrics"), &body), 200);
  fail_unless (body.find ("peerjs_cluster_redis_reconnects_total 1")
      != std::string::npos, "%s", body.c_str ());
  kill_child (pid);
}
GST_END_TEST;

/* Redis stops answering (SIGSTOP) for longer than the nodes wait for an
 * answer: they give up the connection and keep relaying locally. What the
 * sessions of one node do meanwhile reaches the other node once Redis
 * answers again, once each and in order: a leave sent just as Redis
 * stopped (in flight on the connection given up), then an end, a join
 * with its constraints, a message by id and a thread message, after; a
 * tag taken meanwhile gets the watch held for it on another node. A node
 * whose outage buffer is full refuses with queue-full. */
GST_START_TEST (test_redis_outage)
{
  guint port = free_port ();
  GPid pid = spawn_redis (port);
  redis_port = port;              /* what join () and Redis look at */
  std::string url = "redis://127.0.0.1:" + std::to_string (port);
  ServerOptions o = ServerThread::default_options ();
  o.redis = url;
  o.secret = SECRET;
  o.ping_interval_s = 30;
  /* Given up on after 2 s without an answer, not 5. */
  o.node_ttl_ms = 2000;
  o.node_id = "o1";
  auto n1 = std::make_unique<ServerThread> (o);
  o.node_id = "o2";
  auto n2 = std::make_unique<ServerThread> (o);
  o.node_id = "o3";
  o.redis_outage_bytes = 50;
  auto n3 = std::make_unique<ServerThread> (o);
  fail_unless (node_ready (*n1) && node_ready (*n2) && node_ready (*n3));
  auto a1 = connected (*n1), a2 = connected (*n1), a3 = connected (*n1);
  auto b = connected (*n2), c = connected (*n3), w = connected (*n2);
  w->send (J ("{'type':'presence:watch','to':['helper'],'data':'w1'}"));
  {
    Redis r;
    for (int i = 0; i < 200 && r.query ({"HGET", "pj:watch:helper", w->id})
        != "o2"; i++)
      g_usleep (10000);
    assert_str (r.query ({"HGET", "pj:watch:helper", w->id}), "o2");
  }
  join (*n1, *a1, "room", "o1");
  join (*n1, *a2, "room", "o1");
  join (*n1, *a3, "room", "o1");
  join (*n3, *c, "room", "o3");
  join (*n2, *b, "room", "o2");
  for (Client *m : {a1.get (), a2.get (), a3.get (), c.get ()})
    expect (*m, "thread:connect", "b joined");
  drain (*a1, 100);
  drain (*a2, 100);
  drain (*a3, 100);
  drain (*c, 100);

  kill (pid, SIGSTOP);
  a1->send (J ("{'type':'thread:disconnect','thread':'room'}"));
  fail_unless (b->quiet (3500), "nothing reaches the other node while Redis "
      "is stopped");
  fail_unless (node_ready (*n1, false), "unhealthy without Redis");
  a2->send (J ("{'type':'socket:disconnect'}"));
  auto a4 = connected (*n1);
  a4->send (J ("{'type':'thread:connect','thread':'room',"
          "'constraints':{'video':true,'audio':false}}"));
  wait_member (*n1, *a4, "room");
  a3->send (J ("{'type':'chat','to':'" + b->id + "','data':'by id'}"));
  a3->send (J ("{'type':'chat','thread':'room','data':'to the room'}"));
  a3->send (J ("{'type':'presence:tag','data':'helper'}"));
  /* Local relay goes on. */
  check_join (expect (*a3, "thread:connect", "a4 joined, same node"), a4->id,
      "room");
  assert_str (expect (*a4, "chat", "a thread message, same node")
      .str ("data"), "to the room");
  /* The node that may keep 100 bytes for the others refuses. */
  c->send (J ("{'type':'chat','to':'" + b->id + "','data':'too much',"
          "'callback_id':'k1'}"));
  Msg full = expect (*c, "error", "the outage buffer is full");
  assert_str (full.str ("code"), "queue-full");
  assert_str (full.str ("ref_type"), "chat");
  fail_unless (b->quiet (500), "still nothing at the other node");

  kill (pid, SIGCONT);
  /* Everything, once, in the order it happened. */
  std::vector<Msg> got;
  for (int i = 0; i < 60 && got.size () < 6; i++) {
    auto more = drain (*b, 100);
    got.insert (got.end (), more.begin (), more.end ());
  }
  auto more = drain (*b, 1000);
  got.insert (got.end (), more.begin (), more.end ());
  std::string seen;
  for (const auto &m : got)
    seen += m.text () + " | ";
  fail_unless (got.size () == 6, "%s", seen.c_str ());
  std::string ids = "a1 " + a1->id + " a2 " + a2->id + " a3 " + a3->id
      + " a4 " + a4->id + ": ";
  fail_unless (got[0].str ("type") == "thread:disconnect"
      && got[0].str ("from") == a1->id, "%s%s", ids.c_str (), seen.c_str ());
  assert_str (got[1].str ("type"), "thread:disconnect");
  assert_str (got[1].str ("from"), a2->id);
  assert_str (got[2].str ("type"), "socket:disconnect");
  assert_str (got[2].str ("from"), a2->id);
  check_join (got[3], a4->id, "room");
  assert_str (got[4].str ("type"), "chat");
  assert_str (got[4].str ("data"), "by id");
  assert_str (got[5].str ("type"), "chat");
  assert_str (got[5].str ("data"), "to the room");
  for (std::size_t i = 1; i < got.size (); i++)
    fail_unless (got[i].num ("seq") > got[i - 1].num ("seq"), "%s",
        seen.c_str ());
  /* c, on a third node, heard the same, nothing of its own refused
   * message. */
  auto at_c = drain (*c, 300);
  std::string kinds;
  for (const auto &m : at_c)
    kinds += m.str ("type") + " " + m.str ("from") + "\n";
  assert_str (kinds, "thread:disconnect " + a1->id + "\nthread:disconnect "
      + a2->id + "\nsocket:disconnect " + a2->id + "\nthread:connect "
      + a4->id + "\nchat " + a3->id + "\n");

  /* The watch held on o2 reached the carrier that took the tag on o1
   * during the outage, once. */
  assert_str (via_tag (*a3, "presence:watch", w->id, "helper",
          "a3 took the tag"), "w1");
  fail_unless (!a3->next_of ("presence:watch", 300), "one watch");

  /* The thread is right on every node: b's thread message reaches a3, a4
   * and c, not a1. */
  fail_unless (node_ready (*n2, true, 8000));
  b->send (J ("{'type':'chat','thread':'room','data':'after'}"));
  for (Client *m : {a3.get (), a4.get (), c.get ()})
    assert_str (expect (*m, "chat", "b's thread message").str ("data"),
        "after");
  fail_unless (!a1->next_of ("chat", 300), "a1 left the thread");
  Redis r;
  assert_str (r.query ({"HGET", "pj:thread:room", a4->id}), "o1");
  assert_str (r.query ({"HEXISTS", "pj:thread:room", a1->id}), "0");
  assert_str (r.query ({"HEXISTS", "pj:thread:room", a2->id}), "0");
  assert_str (r.query ({"EXISTS", "pj:session:" + a2->id}), "0");
  std::string body;
  fail_unless_equals_int (http_get (n1->http_url ("/metrics"), &body), 200);
  fail_unless (body.find ("peerjs_cluster_replayed_total 0") == std::string::npos,
      "%s", body.c_str ());
  kill_child (pid);
}
GST_END_TEST;

GST_START_TEST (test_two_thousand_sessions)
{
  /* 2,000 sessions on three nodes, in 200 threads of 10 members that are
   * spread over the three. */
  flush_redis ();
  std::vector<std::unique_ptr<ServerThread>> nodes;
  for (const char *name : {"s0", "s1", "s2"}) {
    ServerOptions o = ServerThread::default_options ();
    o.redis = redis_url ();
    o.node_id = name;
    o.ping_interval_s = 30;
    o.max_per_address = 0;
    nodes.push_back (std::make_unique<ServerThread> (o));
    fail_unless (node_ready (*nodes.back ()));
  }
  const int N = 2000, M = 10;
  gint64 start = g_get_monotonic_time ();
  std::vector<std::unique_ptr<RawClient>> cs;
  for (int i = 0; i < N; i++) {
    cs.push_back (std::make_unique<RawClient> ());
    fail_unless (cs.back ()->connect (nodes[i % 3]->port ()),
        "client %d could not connect", i);
  }
  gint64 connected_us = g_get_monotonic_time () - start;

  /* One join at a time, each once Redis holds the one before: member k of
   * a thread hears the joins of the members after it. */
  Redis r;
  for (int i = 0; i < N; i++) {
    std::string thread = "t" + std::to_string (i / M);
    cs[i]->send_frame (1, true, J ("{'type':'thread:connect','thread':'" +
            thread + "'}"));
    std::string node = "s" + std::to_string (i % 3);
    int tries = 0;
    while (r.query ({"HGET", "pj:thread:" + thread, cs[i]->id}) != node) {
      fail_unless (++tries < 2000, "Redis never held member %d", i);
      g_usleep (200);
    }
  }
  gint64 joined_us = g_get_monotonic_time () - start - connected_us;
  for (int i = 0; i < N; i++) {
    int k = i % M, first = i - k;
    std::set<std::string> want, got;
    for (int j = i + 1; j < first + M; j++)
      want.insert (cs[j]->id);
    while (got.size () < want.size ()) {
      auto text = cs[i]->read_text (5000);
      fail_unless (text.has_value (), "member %d heard %u of %u joins", i,
          (unsigned) got.size (), (unsigned) want.size ());
      Msg m (*text);
      assert_str (m.type (), "thread:connect");
      std::string from = m.str ("from");
      fail_unless (want.count (from) && !got.count (from),
          "member %d: a join from %s (%s), not from a later member", i,
          from.c_str (), text->c_str ());
      got.insert (from);
    }
  }
  /* One thread message from each thread's first member reaches the nine
   * others, on whichever node. */
  for (int t = 0; t < N / M; t++)
    cs[t * M]->send_frame (1, true, J ("{'type':'chat','thread':'t" +
            std::to_string (t) + "','data':" + std::to_string (t) + "}"));
  for (int i = 0; i < N; i++) {
    if (i % M == 0)
      continue;
    auto text = cs[i]->read_text (5000);
    fail_unless (text.has_value (), "member %d got no chat", i);
    Msg m (*text);
    assert_str (m.type (), "chat");
    fail_unless_equals_int (m.num ("data"), i / M);
    assert_str (m.str ("from"), cs[i - i % M]->id);
  }
  gint64 total_us = g_get_monotonic_time () - start;

  std::string body;
  fail_unless_equals_int (http_get (nodes[0]->http_url ("/metrics"), &body),
      200);
  fail_unless (body.find ("peerjs_sessions 667\n") != std::string::npos,
      "%s", body.c_str ());
  g_print ("2000 sessions on 3 nodes: connected in %.1f s, 2000 joins one "
      "at a time in %.1f s, all in %.1f s\n", connected_us / 1e6,
      joined_us / 1e6, total_us / 1e6);
  for (auto &c : cs)
    c.reset ();
}
GST_END_TEST;

GST_START_TEST (test_redis_url_forms)
{
  /* One Redis on a TCP port and a unix socket; nodes on database 3 through
   * either meet, and what they store is in database 3. The TCP one names
   * the host: resolved without blocking, its addresses tried in turn
   * (localhost may be ::1 first, where this Redis does not listen). */
  g_autofree char *dir = g_dir_make_tmp ("peerjs-cluster-XXXXXX", nullptr);
  std::string sock = std::string (dir) + "/redis.sock";
  guint port = free_port ();
  GPid pid = spawn_redis (port, sock);
  auto n1 = node ("u1", "redis://localhost:" + std::to_string (port) + "/3");
  auto n2 = node ("u2", "unix:" + sock + "?db=3");
  fail_unless (node_ready (*n1, true, 8000) && node_ready (*n2));
  auto a = connected (*n1), b = connected (*n2);
  a->send (J ("{'type':'thread:connect','thread':'x'}"));
  wait_member (*n1, *a, "x");
  struct timeval tv = {2, 0};
  redisContext *c = redisConnectWithTimeout ("127.0.0.1", port, tv);
  fail_unless (c && !c->err);
  auto get = [&] (const char *fmt, const std::string & arg) {
    auto *r = static_cast<redisReply *>(redisCommand (c, fmt, arg.c_str ()));
    fail_unless (r != nullptr);
    std::string out = r->type == REDIS_REPLY_STRING ? r->str : "";
    freeReplyObject (r);
    return out;
  };
  get ("SELECT %s", "3");
  for (int i = 0; i < 100 && get ("HGET pj:thread:x %s", a->id) != "u1"; i++)
    g_usleep (10000);
  assert_str (get ("HGET pj:thread:x %s", a->id), "u1");
  b->send (J ("{'type':'thread:connect','thread':'x'}"));
  assert_str (expect (*a, "thread:connect", "b joined through the unix "
          "socket").str ("from"), b->id);
  get ("SELECT %s", "0");
  auto *r = static_cast<redisReply *>(redisCommand (c, "EXISTS pj:thread:x"));
  fail_unless_equals_int (r->integer, 0);
  freeReplyObject (r);
  redisFree (c);
  kill_child (pid);
  g_unlink (sock.c_str ());
  g_rmdir (dir);
}
GST_END_TEST;

GST_START_TEST (test_node_id_clash)
{
  flush_redis ();
  auto d1 = node ("dup"), d2 = node ("dup");
  fail_unless (node_ready (*d1) && node_ready (*d2));
  bool seen = false;
  for (int i = 0; i < 80 && !seen; i++) {
    for (ServerThread *n : {d1.get (), d2.get ()}) {
      std::string body;
      http_get (n->http_url ("/metrics"), &body);
      seen = seen || (body.find ("peerjs_cluster_node_id_clashes_total 0")
          == std::string::npos && body.find ("peerjs_cluster_node_id_clashes"
              "_total") != std::string::npos);
    }
    if (!seen)
      g_usleep (50000);
  }
  fail_unless (seen, "two nodes with one id were not noticed");
  /* A node alone with its id counts none. */
  flush_redis ();
  d2.reset ();
  auto solo = node ("solo");
  fail_unless (node_ready (*solo));
  g_usleep (2500000);
  std::string body;
  http_get (solo->http_url ("/metrics"), &body);
  fail_unless (body.find ("peerjs_cluster_node_id_clashes_total 0")
      != std::string::npos, "%s", body.c_str ());
}
GST_END_TEST;

/* The command line refuses what --redis and --node-id cannot take, with
 * exit 2 and a line that says why. */
GST_START_TEST (test_options)
{
  struct Case
  {
    std::vector<const char *> args;
    const char *says;
  } cases[] = {
    {{"--redis", "http://127.0.0.1:6379"}, "expected redis://HOST[:PORT][/DB]"},
    {{"--redis", "redis://127.0.0.1:99999"}, "the port must be 1 to 65535"},
    {{"--redis", "redis://h/x"}, "the database after '/' must be a number"},
    {{"--redis", "redis://user:pw@h"}, "passwords in the URL"},
    {{"--redis", "unix:relative.sock"}, "unix: needs an absolute path"},
    {{"--redis", "unix:/tmp/r.sock?timeout=1"}, "takes only ?db=N"},
    {{"--node-id", "n1"}, "--node-id needs --redis"},
    {{"--redis", "redis://127.0.0.1", "--node-id", "a b"}, "--node-id takes"},
  };
  for (const auto &c : cases) {
    std::vector<const char *> argv = {g_getenv ("PEERJS_SIGNALLING"),
      "--port", "0", "--host", "127.0.0.1"};
    argv.insert (argv.end (), c.args.begin (), c.args.end ());
    argv.push_back (nullptr);
    g_autofree char *out = nullptr;
    g_autofree char *err = nullptr;
    int status = 0;
    fail_unless (g_spawn_sync (nullptr, const_cast<char **>(argv.data ()),
            nullptr, G_SPAWN_DEFAULT, nullptr, nullptr, &out, &err, &status,
            nullptr));
    fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 2,
        "%s %s: exit %d", c.args[0], c.args[1], WEXITSTATUS (status));
    fail_unless (strstr (err, c.says) != nullptr, "%s %s: %s", c.args[0],
        c.args[1], err);
  }
}
GST_END_TEST;

static Suite *
cluster_suite (bool redis)
{
  Suite *s = suite_create ("cluster");
  /* The routers of several nodes wired together without Redis. */
  TCase *units = tcase_create ("stand-ins");
  suite_add_tcase (s, units);
  tcase_add_test (units, test_stand_ins_threads);
  tcase_add_test (units, test_stand_ins_callbacks);
  tcase_add_test (units, test_stand_ins_lookup);
  tcase_add_test (units, test_stand_ins_move);
  tcase_add_test (units, test_stand_ins_errors_back);
  tcase_add_test (units, test_options);
  tcase_add_test (units, test_stand_ins_node_gone);
  tcase_add_test (units, test_stand_ins_rejoin);
  if (!redis)
    return s;
  TCase *tc = tcase_create ("redis");
  tcase_set_timeout (tc, 60);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_join_and_leave_across_nodes);
  tcase_add_test (tc, test_messages_by_id_across_nodes);
  tcase_add_test (tc, test_health_without_redis);
  tcase_add_test (tc, test_killed_node);
  tcase_add_test (tc, test_resume_on_live_node);
  tcase_add_test (tc, test_node_back_within_grace);
  tcase_add_test (tc, test_node_back_after_grace);
  tcase_add_test (tc, test_tags_across_nodes);
  tcase_add_test (tc, test_peerjs_failover);
  tcase_add_test (tc, test_protocol_rules_over_nodes);
  tcase_add_test (tc, test_redis_restart);
  tcase_add_test (tc, test_redis_outage);
  tcase_add_test (tc, test_two_thousand_sessions);
  tcase_add_test (tc, test_redis_url_forms);
  tcase_add_test (tc, test_node_id_clash);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  g_autofree char *redis = g_find_program_in_path ("redis-server");
  if (redis) {
    redis_port = free_port ();
    redis_pid = spawn_redis (redis_port);
  }
  Suite *s = cluster_suite (redis != nullptr);
  SRunner *sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  kill_child (redis_pid);
  if (failed == 0 && !redis) {
    g_print ("cluster: SKIP: redis-server is not installed (Debian package "
        "redis-server; tools/setup installs it): only the stand-in tests "
        "ran\n");
    return 77;
  }
  return failed == 0 ? 0 : 1;
}
