/* End to end: real WebSocket clients against the real server on port 0. */
#include "harness.h"
#include "ice-check.h"

#include <gst/check/gstcheck.h>

#include <glib/gstdio.h>

#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <vector>

using namespace peerjs;
using namespace peerjs::test;

namespace {

std::unique_ptr<Client>
connected (ServerThread & server, const std::string & query = "")
{
  auto c = std::make_unique<Client> ();
  fail_unless (c->connect (server.ws_url (), query), "client could not connect");
  fail_if (c->id.empty ());
  return c;
}

/* Join, and wait until the server has the member: two connections have no
 * order between them, and whoever joins next must be announced to this
 * one. */
void
join (ServerThread & server, Client & c, const std::string & thread,
    const std::string & constraints = "{'video':true}")
{
  c.send (J ("{'type':'thread:connect','thread':'" + thread +
          "','constraints':" + constraints + "}"));
  wait_member (server, c, thread);
}

Msg
expect (Client & c, const std::string & type, const char *why)
{
  auto m = c.next_of (type);
  fail_unless (m.has_value (), "%s: no '%s' arrived at %s", why, type.c_str (),
      c.id.c_str ());
  return *m;
}

void
expect_error (Client & c, const char *code)
{
  Msg e = expect (c, "error", code);
  assert_str (e.str ("code"), code);
  fail_if (e.str ("message").empty (), "an error says what went wrong");
}

/* After an error, the same connection still relays. */
void
still_relays (Client & from, Client & to)
{
  from.send (J ("{'type':'message','to':'" + to.id + "','data':'still here'}"));
  Msg m = expect (to, "message", "connection went on after an error");
  assert_str (m.str ("from"), from.id);
  assert_str (m.str ("data"), "still here");
}

}  // namespace

GST_START_TEST (test_greeting)
{
  ServerThread server;
  auto a = connected (server);
  auto b = connected (server);
  fail_unless_equals_int (a->id.size (), 15);
  fail_if (a->id == b->id);
  assert_str (a->greeting.str ("to"), a->id);
  assert_str (a->greeting.str ("from"), a->id);
  fail_unless (g_str_has_prefix (a->token.c_str (), (a->id + ".").c_str ()));
  fail_unless_equals_int (a->greeting.num ("max_message_size"), 65536);
}
GST_END_TEST;

/* --ice-server and --turn-secret: every greeting over the wire carries the
 * ICE servers, with a TURN credential that coturn would take, fresh on a
 * resume too. */
GST_START_TEST (test_greeting_ice_servers)
{
  ServerOptions o = ServerThread::default_options ();
  o.ice.stun_urls = {"stun:127.0.0.1:3478"};
  o.ice.turn_urls = {"turn:127.0.0.1:3478?transport=udp",
    "turn:127.0.0.1:3478?transport=tcp"};
  o.ice.turn_secret = "server-suite-turn-secret";
  o.ice.turn_ttl_s = 3600;
  ServerThread server (o);

  gint64 before = g_get_real_time () / G_USEC_PER_SEC;
  auto a = connected (server);
  gint64 after = g_get_real_time () / G_USEC_PER_SEC;
  check_ice_servers (a->greeting, a->id, o.ice.stun_urls, o.ice.turn_urls,
      o.ice.turn_secret, before + 3600, after + 3600);
  /* A credential under another secret does not verify. */
  JsonArray *servers = json_node_get_array (a->greeting.node ("ice_servers"));
  JsonObject *turn = json_array_get_object_element (servers, 1);
  std::string user = json_object_get_string_member (turn, "username");
  fail_if (coturn_password ("another-secret", user)
      == json_object_get_string_member (turn, "credential"));

  std::string id = a->id, token = a->token;
  a->abort ();
  bool away = false;
  for (int i = 0; i < 100 && !away; i++) {
    server.call ([&] (SignallingServer & s) {
          away = s.router ().has_session (id) && !s.router ().is_online (id);
        });
    if (!away)
      g_usleep (20000);
  }
  fail_unless (away);
  gint64 before2 = g_get_real_time () / G_USEC_PER_SEC;
  auto back = connected (server, "resume=" + token);
  assert_str (back->id, id);
  fail_unless (back->greeting.boolean ("resumed"));
  check_ice_servers (back->greeting, id, o.ice.stun_urls, o.ice.turn_urls,
      o.ice.turn_secret, before2 + 3600, g_get_real_time () / G_USEC_PER_SEC
      + 3600);

  /* Without --ice-server the greeting has no such field. */
  ServerThread plain;
  auto p = connected (plain);
  fail_if (p->greeting.has ("ice_servers"));
}
GST_END_TEST;

GST_START_TEST (test_join_relay_leave)
{
  ServerThread server;
  auto a = connected (server);
  auto b = connected (server);
  auto c = connected (server);

  join (server, *a, "lobby");
  join (server, *b, "lobby", "{'video':false,'audio':true}");
  Msg joined = expect (*a, "thread:connect", "B joined");
  assert_str (joined.str ("from"), b->id);
  assert_str (joined.str ("thread"), "lobby");
  JsonObject *cons = json_object_get_object_member (joined.obj (), "constraints");
  fail_unless (cons && json_object_get_boolean_member (cons, "audio"));

  /* The member answers the joiner directly, as the original's clients did. */
  a->send (J ("{'type':'thread:connect','to':'" + b->id +
          "','thread':'lobby','constraints':{'video':true}}"));
  Msg answer = expect (*b, "thread:connect", "A answered B");
  assert_str (answer.str ("from"), a->id);

  join (server, *c, "lobby");
  expect (*a, "thread:connect", "C joined (A)");
  expect (*b, "thread:connect", "C joined (B)");

  a->send (J ("{'type':'message','thread':'lobby','data':'hello room'}"));
  for (Client *r : {b.get (), c.get ()}) {
    Msg m = expect (*r, "message", "chat to the thread");
    assert_str (m.str ("from"), a->id);
    assert_str (m.str ("thread"), "lobby");
    assert_str (m.str ("data"), "hello room");
  }
  fail_unless (a->quiet (), "the sender gets no echo");

  b->send (J ("{'type':'thread:disconnect','thread':'lobby'}"));
  for (Client *r : {a.get (), c.get ()}) {
    Msg m = expect (*r, "thread:disconnect", "B left");
    assert_str (m.str ("from"), b->id);
    assert_str (m.str ("thread"), "lobby");
  }
  b->send (J ("{'type':'message','thread':'lobby','data':'sneaky'}"));
  expect_error (*b, "not-member");
  fail_unless (a->quiet () && c->quiet (), "a non-member reaches nobody");

  /* Rejoining works. */
  join (server, *b, "lobby");
  expect (*a, "thread:connect", "B rejoined");
}
GST_END_TEST;

GST_START_TEST (test_presence_and_callbacks)
{
  ServerThread server;
  auto watcher = connected (server);
  auto early = connected (server);
  auto late = connected (server);

  early->send (J ("{'type':'presence:tag','data':['support']}"));
  early->pump (100);
  watcher->send (J ("{'type':'presence:watch','to':['support'],"
          "'callback_id':1}"));
  Msg w1 = expect (*early, "presence:watch", "present carrier");
  assert_str (w1.str ("from"), watcher->id);
  assert_str (w1.str ("original_to"), "support");

  late->send (J ("{'type':'presence:tag','data':'support'}"));
  Msg w2 = expect (*late, "presence:watch", "later carrier");
  assert_str (w2.str ("from"), watcher->id);

  /* The watched side answers the callback; one answer reaches the watcher. */
  late->send (J ("{'to':'" + watcher->id + "','callback_response':1,"
          "'data':{'online':true}}"));
  auto reply = watcher->next (3000);
  fail_unless (reply.has_value ());
  fail_unless_equals_int (reply->num ("callback_response"), 1);
  assert_str (reply->str ("from"), late->id);
  early->send (J ("{'to':'" + watcher->id + "','callback_response':1}"));
  expect_error (*early, "unknown-callback");
  fail_unless (watcher->quiet (), "at most one reply per callback");

  /* invite:* are app types: relayed as they are, with their callback. */
  watcher->send (J ("{'type':'invite:connect','to':'" + early->id +
          "','thread':null,'data':{'room':'x'},'callback_id':'inv-1'}"));
  expect_error (*watcher, "bad-message");   /* thread must be a string */
  watcher->send (J ("{'type':'invite:connect','to':'" + early->id +
          "','data':{'room':'x'},'callback_id':'inv-1'}"));
  Msg inv = expect (*early, "invite:connect", "invite relayed");
  assert_str (inv.str ("callback_id"), "inv-1");
  early->send (J ("{'to':'" + watcher->id + "','callback_response':'inv-1',"
          "'data':'accepted'}"));
  auto accepted = watcher->next (3000);
  fail_unless (accepted && accepted->str ("data") == "accepted");
}
GST_END_TEST;

GST_START_TEST (test_bad_inputs)
{
  ServerThread server;
  auto bad = connected (server);
  auto good = connected (server);
  auto bystander = connected (server);
  join (server, *good, "room");
  join (server, *bystander, "room");
  expect (*good, "thread:connect", "bystander joined");

  bad->send ("{this is not json");
  expect_error (*bad, "bad-json");
  still_relays (*bad, *good);

  bad->send (J ("{'type':'message','to':5,'data':1}"));
  expect_error (*bad, "bad-message");
  bad->send (J ("{'type':42,'to':'" + good->id + "'}"));
  expect_error (*bad, "bad-message");
  still_relays (*bad, *good);

  bad->send (J ("{'type':'message','to':'nobody-by-that-name','data':1,"
          "'callback_id':3}"));
  Msg unknown = expect (*bad, "error", "unknown to");
  assert_str (unknown.str ("code"), "unknown-recipient");
  fail_unless_equals_int (unknown.num ("callback_response"), 3);

  bad->send (J ("{'type':'message','thread':'room','data':'let me in'}"));
  expect_error (*bad, "not-member");
  fail_unless (good->quiet () && bystander->quiet ());

  bad->send (J ("{'type':'message','to':'" + good->id + "','from':'" +
          bystander->id + "','data':'it was them'}"));
  expect_error (*bad, "spoofed-from");
  fail_unless (good->quiet (), "a spoofed message is not relayed");

  bad->send (J ("{'type':'socket:connect'}"));
  expect_error (*bad, "unknown-type");

  /* One oversized frame: answered, dropped, and the connection goes on. */
  std::string big = J ("{'type':'message','to':'" + good->id + "','data':'") +
      std::string (70000, 'x') + "\"}";
  bad->send (big);
  expect_error (*bad, "too-large");
  fail_unless (good->quiet (), "an oversized message is not relayed");
  still_relays (*bad, *good);

  /* The room never noticed. */
  good->send (J ("{'type':'message','thread':'room','data':'fine'}"));
  Msg fine = expect (*bystander, "message", "room still works");
  assert_str (fine.str ("data"), "fine");

  std::string metrics;
  fail_unless_equals_int (http_get (server.http_url ("/metrics"), &metrics), 200);
  fail_unless (metrics.find ("peerjs_errors_total{code=\"too-large\"} 1")
      != std::string::npos, "%s", metrics.c_str ());
  fail_unless (metrics.find ("peerjs_errors_total{code=\"bad-json\"} 1")
      != std::string::npos);
}
GST_END_TEST;

/* libsoup 3.2 bounds frames, not messages made of continuation frames:
 * the guard must. */
GST_START_TEST (test_fragmented_flood)
{
  ServerThread server;
  auto good = connected (server);
  RawClient raw;
  fail_unless (raw.connect (server.port ()));

  /* A message in fragments within the bound is whole at the other end. */
  std::string msg = J ("{'type':'message','to':'" + good->id +
      "','data':'in three parts'}");
  raw.send_frame (0x1, false, msg.substr (0, 10));
  raw.send_frame (0x0, false, msg.substr (10, 10));
  raw.send_frame (0x0, true, msg.substr (20));
  Msg parts = expect (*good, "message", "fragmented message");
  assert_str (parts.str ("data"), "in three parts");
  assert_str (parts.str ("from"), raw.id);

  /* Endless continuation frames, each small. The answer must come while
   * the message is still open: the server stopped collecting it at the
   * bound instead of waiting for its end. */
  raw.send_frame (0x1, false, "{\"type\":\"message\",\"data\":\"");
  std::string chunk (8000, 'y');
  for (int i = 0; i < 40; i++)   /* 320 kB in all, no final frame yet */
    fail_unless (raw.send_frame (0x0, false, chunk));
  auto err = raw.read_text ();
  fail_unless (err.has_value (), "an error came back before the message ended");
  assert_str (Msg (*err).str ("code"), "too-large");
  for (int i = 0; i < 40; i++)   /* the rest is dropped as it comes */
    fail_unless (raw.send_frame (0x0, false, chunk));
  raw.send_frame (0x0, true, "\"}");

  /* And the connection goes on. */
  raw.send_frame (0x1, true, J ("{'type':'message','to':'" + good->id +
          "','data':'after the flood'}"));
  Msg after = expect (*good, "message", "after the flood");
  assert_str (after.str ("data"), "after the flood");

  std::uint64_t held = 0;
  server.call ([&] (SignallingServer & s) {
        held = s.router ().session_count ();
      });
  fail_unless_equals_int (held, 2);
}
GST_END_TEST;

GST_START_TEST (test_resume_exactly_once)
{
  ServerThread server;
  auto a = connected (server);
  auto b = connected (server);
  join (server, *a, "t");
  join (server, *b, "t");
  expect (*a, "thread:connect", "B joined");

  a->send (J ("{'type':'message','to':'" + b->id + "','data':'before'}"));
  expect (*b, "message", "before the drop");
  std::string b_id = b->id, b_token = b->token;
  std::uint64_t seen = b->last_seq;

  b->abort ();
  /* The server notices the drop; the session waits for its owner. */
  bool away = false;
  for (int i = 0; i < 100 && !away; i++) {
    server.call ([&] (SignallingServer & s) {
          away = s.router ().has_session (b_id) && !s.router ().is_online (b_id);
        });
    if (!away)
      g_usleep (20000);
  }
  fail_unless (away, "the dropped session is kept for its grace period");

  for (int i = 1; i <= 3; i++)
    a->send (J ("{'type':'message','to':'" + b_id + "','data':'while away " +
            std::to_string (i) + "'}"));
  a->send (J ("{'type':'message','thread':'t','data':'to the thread'}"));
  fail_unless (a->quiet (300), "no error: the away session still exists");

  auto b2 = connected (server, "resume=" + b_token + "&last=" +
      std::to_string (seen));
  assert_str (b2->id, b_id);
  fail_unless (json_object_get_boolean_member (b2->greeting.obj (), "resumed"));
  fail_unless_equals_int (b2->greeting.num ("missed"), 0);

  std::vector<std::string> got;
  std::int64_t prev = (std::int64_t) seen;
  while (auto m = b2->next (500)) {
    assert_str (m->type (), "message");
    fail_unless_equals_int (m->num ("seq"), prev + 1);
    prev = m->num ("seq");
    got.push_back (m->str ("data"));
  }
  fail_unless_equals_int (got.size (), 4);
  assert_str (got[0], "while away 1");
  assert_str (got[2], "while away 3");
  assert_str (got[3], "to the thread");

  /* Still in the thread, and nobody was told it had left. */
  a->send (J ("{'type':'message','thread':'t','data':'welcome back'}"));
  Msg wb = expect (*b2, "message", "resumed session is still a member");
  assert_str (wb.str ("data"), "welcome back");
  fail_unless (a->quiet (200), "no thread:disconnect for a resumed session");
}
GST_END_TEST;

GST_START_TEST (test_dead_peer_and_grace)
{
  ServerOptions o = ServerThread::default_options ();
  o.limits.grace_us = 1 * G_USEC_PER_SEC;
  ServerThread server (o);
  auto a = connected (server);
  auto frozen = connected (server);
  join (server, *a, "t");
  join (server, *frozen, "t");
  expect (*a, "thread:connect", "frozen joined");
  a->send (J ("{'type':'message','to':'" + frozen->id + "','data':'hi'}"));
  std::string frozen_id = frozen->id;

  /* `frozen` is never iterated again: it answers no pings. Ping every 1 s,
   * dead after 2 s of silence, gone after 1 s more of grace. */
  gint64 start = g_get_monotonic_time ();
  auto noticed = a->next_of ("thread:disconnect", 8000);
  fail_unless (noticed.has_value (), "the frozen peer was not noticed");
  Msg left = *noticed;
  auto gone = a->next_of ("socket:disconnect", 6000);
  double took = (g_get_monotonic_time () - start) / 1e6;
  assert_str (left.str ("from"), frozen_id);
  fail_unless (gone && gone->str ("from") == frozen_id);
  fail_unless (took < 6.0, "noticed within seconds (%.1f s)", took);

  std::size_t sessions = 0, threads = 0;
  server.call ([&] (SignallingServer & s) {
        sessions = s.router ().session_count ();
        threads = s.router ().thread_count ();
      });
  fail_unless_equals_int (sessions, 1);
  fail_unless_equals_int (threads, 1);

  a->send (J ("{'type':'thread:disconnect','thread':'t'}"));
  a->pump (100);
  server.call ([&] (SignallingServer & s) {
        threads = s.router ().thread_count ();
      });
  fail_unless_equals_int (threads, 0);
}
GST_END_TEST;

GST_START_TEST (test_hundred_clients)
{
  ServerThread server;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 100; i++) {
    clients.push_back (connected (server));
    join (server, *clients.back (), "big");
  }
  /* Every member heard of every later joiner. */
  for (int i = 0; i < 100; i++) {
    int joins = 0;
    while (joins < 99 - i && clients[i]->next_of ("thread:connect", 3000))
      joins++;
    fail_unless_equals_int (joins, 99 - i);
  }
  for (int i = 0; i < 100; i++)
    clients[i]->send (J ("{'type':'message','thread':'big','data':'" +
            std::to_string (i) + "'}"));
  for (int i = 0; i < 100; i++) {
    std::vector<bool> from (100, false);
    for (int k = 0; k < 99; k++) {
      auto m = clients[i]->next_of ("message", 5000);
      fail_unless (m.has_value (), "client %d got %d of 99", i, k);
      int n = atoi (m->str ("data").c_str ());
      fail_if (from[n], "duplicate from %d", n);
      from[n] = true;
    }
    fail_if (from[i], "own message echoed");
  }
  std::string metrics;
  http_get (server.http_url ("/metrics"), &metrics);
  fail_unless (metrics.find ("peerjs_sessions_connected 100\n")
      != std::string::npos, "%s", metrics.c_str ());
}
GST_END_TEST;

GST_START_TEST (test_socket_disconnect_tells_contacts)
{
  ServerThread server;
  auto a = connected (server);
  auto b = connected (server);
  auto stranger = connected (server);
  join (server, *a, "t");
  join (server, *b, "t");
  expect (*a, "thread:connect", "B joined");
  b->send (J ("{'type':'socket:disconnect'}"));
  Msg left = expect (*a, "thread:disconnect", "B left the thread");
  Msg gone = expect (*a, "socket:disconnect", "B is gone");
  assert_str (left.str ("from"), b->id);
  assert_str (gone.str ("from"), b->id);
  fail_unless (b->wait_closed (), "the server closes an ended session");
  fail_unless (stranger->quiet (), "strangers are not told");
}
GST_END_TEST;

GST_START_TEST (test_restart_keeps_ids)
{
  ServerThread server;
  auto a = connected (server);
  std::string id = a->id, token = a->token;
  a->abort ();
  server.stop ();
  server.start ();
  auto again = connected (server, "resume=" + token);
  assert_str (again->id, id);
  fail_if (json_object_get_boolean_member (again->greeting.obj (), "resumed"),
      "a restarted server has no state to resume");

  auto forged = connected (server, "resume=" + id + ".00ff");
  fail_if (forged->id == id, "a forged token gets a new id");
  expect_error (*forged, "bad-token");
}
GST_END_TEST;

GST_START_TEST (test_http)
{
  g_autofree char *dir = g_dir_make_tmp ("peerjs-web-XXXXXX", nullptr);
  g_autofree char *index = g_build_filename (dir, "index.html", nullptr);
  g_file_set_contents (index, "<h1>room</h1>", -1, nullptr);
  g_autofree char *hidden = g_build_filename (dir, ".hidden", nullptr);
  g_file_set_contents (hidden, "private", -1, nullptr);
  g_autofree char *secret = g_build_filename (g_get_tmp_dir (), "peerjs-outside",
      nullptr);
  g_file_set_contents (secret, "outside", -1, nullptr);

  ServerOptions o = ServerThread::default_options ();
  o.web_root = dir;
  ServerThread server (o);
  std::string body;
  fail_unless_equals_int (http_get (server.http_url ("/healthz"), &body), 200);
  assert_str (body, "ok\n");
  fail_unless_equals_int (http_get (server.http_url ("/"), &body), 200);
  assert_str (body, "<h1>room</h1>");
  fail_unless_equals_int (http_get (server.http_url ("/index.html")), 200);
  fail_unless_equals_int (http_get (server.http_url ("/missing.js")), 404);
  /* libsoup refuses the encoded dot-dot itself (400); either way, no file. */
  guint status = http_get (server.http_url ("/%2e%2e/peerjs-outside"), &body);
  fail_if (status == 200 || body == "outside", "escaped the web root");
  status = http_get (server.http_url ("/../peerjs-outside"), &body);
  fail_if (status == 200 || body == "outside", "escaped the web root");
  /* Our own rule: no dot-files, even inside the root. */
  fail_unless_equals_int (http_get (server.http_url ("/.hidden")), 404);
  fail_unless_equals_int (http_get (server.http_url ("/peerjs")), 400);
  fail_unless_equals_int (http_get (server.http_url ("/metrics"), &body), 200);
  fail_unless (body.find ("# TYPE peerjs_messages_received_total counter")
      != std::string::npos);

  g_unlink (index);
  g_unlink (hidden);
  g_rmdir (dir);
  g_unlink (secret);
}
GST_END_TEST;

GST_START_TEST (test_tls)
{
  const char *data = g_getenv ("PEERJS_TEST_DATA");
  fail_unless (data != nullptr, "PEERJS_TEST_DATA is not set");
  ServerOptions o = ServerThread::default_options ();
  g_autofree char *cert = g_build_filename (data, "test-cert.pem", nullptr);
  g_autofree char *key = g_build_filename (data, "test-key.pem", nullptr);
  o.tls_cert = cert;
  o.tls_key = key;
  ServerThread server (o);
  fail_unless (g_str_has_prefix (server.ws_url ().c_str (), "wss://"));
  auto a = connected (server);
  auto b = connected (server);
  a->send (J ("{'type':'message','to':'" + b->id + "','data':'over tls'}"));
  Msg m = expect (*b, "message", "relayed over wss");
  assert_str (m.str ("data"), "over tls");
  std::string body;
  fail_unless_equals_int (http_get (server.http_url ("/healthz"), &body), 200);
}
GST_END_TEST;

/* Frames a client sends in the same write as its upgrade request reach the
 * server's HTTP layer first: they are read all the same, in order. */
GST_START_TEST (test_frames_with_the_upgrade)
{
  ServerThread server;
  RawClient raw;
  fail_unless (raw.open (server.port ()));
  std::string early;
  for (const char *text : {"first", "second", "third"})
    early += ws_frame (0x81, text);
  fail_unless (raw.upgrade ("/peerjs", "", early), "no upgrade: %s",
      raw.head ().c_str ());
  for (int i = 0; i < 3; i++) {
    auto t = raw.read_text ();
    fail_unless (t.has_value (), "no answer to early frame %d", i + 1);
    Msg m (*t);
    assert_str (m.str ("type"), "error");
    assert_str (m.str ("code"), "bad-json");
  }
  /* And the connection goes on. */
  fail_unless (raw.send_frame (0x1, true, "{\"type\":\"m\",\"to\":\"" +
          raw.id + "\",\"data\":\"later\"}"));
  auto later = raw.read_text ();
  fail_unless (later && Msg (*later).str ("data") == "later");
}
GST_END_TEST;

/* The command line as an operator runs it: bad options, serving, SIGTERM. */
GST_START_TEST (test_cli)
{
  const char *bin = g_getenv ("PEERJS_SIGNALLING");
  fail_unless (bin != nullptr, "PEERJS_SIGNALLING is not set");

  g_autofree char *out = nullptr;
  g_autofree char *err = nullptr;
  int status = 0;
  const char *bad[] = {bin, "--port", "70000", nullptr};
  fail_unless (g_spawn_sync (nullptr, (char **) bad, nullptr, G_SPAWN_DEFAULT,
          nullptr, nullptr, &out, &err, &status, nullptr));
  fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 2);
  fail_unless (strstr (err, "--port") != nullptr, "%s", err);

  /* Bad ICE servers stop it at the start, saying which and why. */
  g_autofree char *turn_dir = g_dir_make_tmp ("peerjs-cli-XXXXXX", nullptr);
  g_autofree char *turn_secret = g_build_filename (turn_dir, "turn", nullptr);
  g_autofree char *empty_secret = g_build_filename (turn_dir, "empty", nullptr);
  fail_unless (g_file_set_contents (turn_secret, "abc\n", -1, nullptr));
  fail_unless (g_file_set_contents (empty_secret, "\n", -1, nullptr));
  struct Bad { std::vector<const char *> args; const char *says; };
  const Bad bads[] = {
    {{"--ice-server", "http://turn.example.org"}, "http://turn.example.org"},
    {{"--ice-server", "stun:ok.example.org", "--ice-server",
          "turn:x.example.org:99999"}, "port"},
    {{"--ice-server", "turn:127.0.0.1:3478"}, "--turn-secret"},
    {{"--turn-secret", turn_secret}, "--turn-secret"},
    {{"--ice-server", "turn:127.0.0.1", "--turn-secret", "/nonexistent/x"},
          "/nonexistent/x"},
    {{"--ice-server", "turn:127.0.0.1", "--turn-secret", empty_secret},
          "empty"},
    {{"--ice-server", "turn:127.0.0.1", "--turn-secret", turn_secret,
          "--turn-ttl", "5"}, "--turn-ttl"},
  };
  for (const Bad &b : bads) {
    std::vector<const char *> args {bin};
    args.insert (args.end (), b.args.begin (), b.args.end ());
    args.push_back (nullptr);
    g_autofree char *bout = nullptr;
    g_autofree char *berr = nullptr;
    fail_unless (g_spawn_sync (nullptr, (char **) args.data (), nullptr,
            G_SPAWN_DEFAULT, nullptr, nullptr, &bout, &berr, &status, nullptr));
    fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 2, "%s: %s",
        b.args[1], berr);
    fail_unless (strstr (berr, b.says) != nullptr, "%s", berr);
  }
  g_unlink (turn_secret);
  g_unlink (empty_secret);
  g_rmdir (turn_dir);

  g_autofree char *dir = g_dir_make_tmp ("peerjs-cli-XXXXXX", nullptr);
  g_autofree char *secret = g_build_filename (dir, "secret", nullptr);
  const char *argv[] = {bin, "--port", "0", "--host", "127.0.0.1",
    "--secret-file", secret, nullptr};
  GPid pid;
  int out_fd;
  fail_unless (g_spawn_async_with_pipes (nullptr, (char **) argv, nullptr,
          G_SPAWN_DO_NOT_REAP_CHILD, nullptr, nullptr, &pid, nullptr, &out_fd,
          nullptr, nullptr));
  FILE *f = fdopen (out_fd, "r");
  char line[512] = "";
  fail_unless (fgets (line, sizeof line, f) != nullptr, "no output");
  const char *colon = strstr (line, "127.0.0.1:");
  fail_unless (colon != nullptr, "%s", line);
  int port = atoi (colon + strlen ("127.0.0.1:"));
  fail_unless (port > 0, "%s", line);
  fail_unless_equals_int (http_get ("http://127.0.0.1:" + std::to_string (port)
          + "/healthz"), 200);

  /* The secret file was made, owner-only. */
  GStatBuf st;
  fail_unless (g_stat (secret, &st) == 0);
  fail_unless_equals_int (st.st_mode & 0777, 0600);

  kill (pid, SIGTERM);
  int wstatus = 0;
  fail_unless (waitpid (pid, &wstatus, 0) == pid);
  fail_unless (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0,
      "SIGTERM is a clean exit (status %d)", wstatus);
  fclose (f);
  g_spawn_close_pid (pid);
  g_unlink (secret);
  g_rmdir (dir);
}
GST_END_TEST;

/* The lines after the first of a server started with `args` (--port 0
 * added), up to the one that says what it serves, the port in the
 * first line; the server is ended with SIGTERM. */
static std::vector<std::string>
startup_lines (std::vector<const char *> args, int * port)
{
  const char *bin = g_getenv ("PEERJS_SIGNALLING");
  fail_unless (bin != nullptr, "PEERJS_SIGNALLING is not set");
  std::vector<const char *> argv {bin, "--port", "0"};
  argv.insert (argv.end (), args.begin (), args.end ());
  argv.push_back (nullptr);
  GPid pid;
  int out_fd;
  fail_unless (g_spawn_async_with_pipes (nullptr, (char **) argv.data (),
          nullptr, G_SPAWN_DO_NOT_REAP_CHILD, nullptr, nullptr, &pid,
          nullptr, &out_fd, nullptr, nullptr));
  FILE *f = fdopen (out_fd, "r");
  char line[512] = "";
  fail_unless (fgets (line, sizeof line, f) != nullptr, "no output");
  const char *colon = strstr (line, "127.0.0.1:");
  fail_unless (colon != nullptr, "%s", line);
  *port = atoi (colon + strlen ("127.0.0.1:"));
  std::vector<std::string> lines;
  while (fgets (line, sizeof line, f) && g_str_has_prefix (line,
          "listening on "))
    lines.emplace_back (line);
  kill (pid, SIGTERM);
  int wstatus = 0;
  fail_unless (waitpid (pid, &wstatus, 0) == pid);
  fclose (f);
  g_spawn_close_pid (pid);
  return lines;
}

/* At start the server names the addresses to open it at, each with its
 * port, as docs/signalling-server.md shows them. */
GST_START_TEST (test_cli_open_addresses)
{
  g_autofree char *dir = g_dir_make_tmp ("peerjs-cli-XXXXXX", nullptr);
  int port = 0;
  std::vector<std::string> lines = startup_lines ({"--host", "127.0.0.1",
          "--web-root", dir}, &port);
  std::string p = std::to_string (port);
  fail_unless_equals_int (lines.size (), 1);
  assert_str (lines[0], "listening on http://127.0.0.1:" + p
      + "/ (demo page, this machine only)\n");

  /* Without a web root, the WebSocket's address. */
  lines = startup_lines ({"--host", "127.0.0.1", "--web-root", ""}, &port);
  p = std::to_string (port);
  fail_unless_equals_int (lines.size (), 1);
  assert_str (lines[0], "listening on http://127.0.0.1:" + p
      + "/ (WebSocket ws://127.0.0.1:" + p + "/peerjs, this machine only)\n");
  g_rmdir (dir);
}
GST_END_TEST;

/* A browser closing its page sends close 1001: the session ends at once,
 * without waiting out the grace period. */
GST_START_TEST (test_goodbye_close_ends_session)
{
  ServerThread server;   /* grace 5 s */
  auto a = connected (server);
  auto b = connected (server);
  join (server, *a, "t");
  join (server, *b, "t");
  expect (*a, "thread:connect", "B joined");
  std::string b_id = b->id;
  b->close (SOUP_WEBSOCKET_CLOSE_GOING_AWAY);
  gint64 start = g_get_monotonic_time ();
  auto left = a->next_of ("thread:disconnect", 2000);
  auto gone = a->next_of ("socket:disconnect", 2000);
  fail_unless (left && gone, "no notice within 2 s of the goodbye");
  assert_str (left->str ("from"), b_id);
  assert_str (gone->str ("from"), b_id);
  fail_unless (g_get_monotonic_time () - start < 2 * G_USEC_PER_SEC);
  bool exists = true;
  server.call ([&] (SignallingServer & s) {
        exists = s.router ().has_session (b_id);
      });
  fail_if (exists, "the session was kept after a goodbye");
}
GST_END_TEST;

/* Any close frame a client sends first ends its session at once: no code
 * at all (ws.close () in a browser or Node), 1000, or a code of its own;
 * 4100 keeps it for the grace period, as does a connection lost without a
 * close frame. */
GST_START_TEST (test_close_rules)
{
  ServerThread server;   /* grace 5 s */
  struct Case
  {
    const char *what;
    gushort code;            /* 0: drop the connection, no close frame */
    bool ends;
  };
  for (const Case & c : {
          Case { "no status code", SOUP_WEBSOCKET_CLOSE_NO_STATUS, true },
          Case { "1000", SOUP_WEBSOCKET_CLOSE_NORMAL, true },
          Case { "an application's 4321", 4321, true },
          Case { "4100, to resume", 4100, false },
          Case { "no close frame", 0, false }}) {
    auto a = connected (server);
    auto b = connected (server);
    join (server, *a, "rules");
    join (server, *b, "rules");
    expect (*a, "thread:connect", "B joined");
    std::string b_id = b->id;
    if (c.code)
      b->close (c.code);
    else
      b->abort ();
    auto left = a->next_of ("thread:disconnect", 2000);
    bool exists = true;
    server.call ([&] (SignallingServer & s) {
          exists = s.router ().has_session (b_id);
        });
    if (c.ends) {
      fail_unless (left.has_value (), "%s: no thread:disconnect within 2 s",
          c.what);
      fail_if (exists, "%s: the session was kept", c.what);
    } else {
      fail_if (left.has_value (), "%s: the session ended at once", c.what);
      fail_unless (exists, "%s: the session is gone", c.what);
    }
    a->close ();
  }
}
GST_END_TEST;

/* GET /auth: what a page can learn over HTTP that its WebSocket does not
 * tell it, whether its token would be let in. */
GST_START_TEST (test_auth_endpoint)
{
  std::string body;
  {
    ServerThread open;
    fail_unless_equals_int (http_get (open.http_url ("/auth?token=x"), &body),
        200);
    fail_unless_equals_string (body.c_str (),
        "{\"required\":false,\"valid\":false}\n");
  }
  const char key[] = "auth-endpoint-secret-0123456789abcdef";
  g_autofree char *path = nullptr;
  int fd = g_file_open_tmp ("peerjs-auth-XXXXXX", &path, nullptr);
  fail_unless (fd >= 0);
  close (fd);
  fail_unless (g_file_set_contents (path, key, -1, nullptr));
  ServerOptions o = ServerThread::default_options ();
  o.auth_secret_file = path;
  ServerThread server (o);
  fail_unless_equals_int (http_get (server.http_url ("/auth"), &body), 401);
  fail_unless_equals_string (body.c_str (), "{\"required\":true,\"valid\":"
      "false,\"error\":\"an auth token is required (?token=)\"}\n");
  const std::string good = mint_jwt (JWT_ALG_HS256, key,
      "{\"exp\":" + std::to_string (g_get_real_time () / G_USEC_PER_SEC + 300)
      + "}");
  fail_unless_equals_int (http_get (server.http_url ("/auth?token=" + good),
          &body), 200);
  fail_unless_equals_string (body.c_str (),
      "{\"required\":true,\"valid\":true}\n");
  const std::string expired = mint_jwt (JWT_ALG_HS256, key,
      "{\"exp\":" + std::to_string (g_get_real_time () / G_USEC_PER_SEC - 60)
      + "}");
  fail_unless_equals_int (http_get (server.http_url ("/auth?token=" + expired),
          &body), 401);
  fail_unless (body.find ("\"error\":\"the token expired") != std::string::npos,
      "%s", body.c_str ());
  /* The same token is what the WebSocket upgrade refuses and takes. */
  fail_unless_equals_int (http_get (server.http_url ("/auth?token=" + good
              + "x"), &body), 401);
  g_unlink (path);
}
GST_END_TEST;

static Suite *
server_suite (void)
{
  Suite *s = suite_create ("server");
  TCase *tc = tcase_create ("end-to-end");
  tcase_set_timeout (tc, 60);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_greeting);
  tcase_add_test (tc, test_greeting_ice_servers);
  tcase_add_test (tc, test_join_relay_leave);
  tcase_add_test (tc, test_presence_and_callbacks);
  tcase_add_test (tc, test_bad_inputs);
  tcase_add_test (tc, test_fragmented_flood);
  tcase_add_test (tc, test_resume_exactly_once);
  tcase_add_test (tc, test_dead_peer_and_grace);
  tcase_add_test (tc, test_hundred_clients);
  tcase_add_test (tc, test_socket_disconnect_tells_contacts);
  tcase_add_test (tc, test_goodbye_close_ends_session);
  tcase_add_test (tc, test_close_rules);
  tcase_add_test (tc, test_restart_keeps_ids);
  tcase_add_test (tc, test_http);
  tcase_add_test (tc, test_tls);
  tcase_add_test (tc, test_frames_with_the_upgrade);
  tcase_add_test (tc, test_cli);
  tcase_add_test (tc, test_cli_open_addresses);
  tcase_add_test (tc, test_auth_endpoint);
  return s;
}

GST_CHECK_MAIN (server);
