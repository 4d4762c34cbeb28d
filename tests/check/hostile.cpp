/* Hostile input: what an attacker can send peerjs-signalling. The framing
 * cases follow the Autobahn|Testsuite families (reserved bits and opcodes,
 * masking, control frames, fragmentation, UTF-8, close codes, lengths); the
 * application cases abuse the envelope, the limits, resume tokens, HTTP, the
 * connection caps, the rate limit and auth tokens.
 *
 * Every attack ends in survived (): the attacker got the documented answer,
 * a new client still connects, a pair of sessions connected before the
 * attack still relays, and memory stayed within SLACK, at its peak and
 * after. The server runs in this process, so its memory is ours. */
#include "harness.h"

#include <gst/check/gstcheck.h>

#include <glib/gstdio.h>
#include <jwt.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <unistd.h>
#include <vector>

using namespace peerjs;
using namespace peerjs::test;

namespace {

/* Growth of the process's memory allowed during and after an attack. The
 * floods send twice this: a server that kept what they send would pass it. */
constexpr std::size_t SLACK = 64 * 1024 * 1024;
constexpr std::size_t FLOOD = 2 * SLACK;

constexpr std::uint64_t TWO_63 = 1ULL << 63;
constexpr std::uint64_t TWO_64_MINUS_1 = ~0ULL;

using Values = std::vector<std::string>;

std::unique_ptr<Client>
connected (ServerThread & server, const std::string & query = "")
{
  auto c = std::make_unique<Client> ();
  fail_unless (c->connect (server.ws_url (), query), "client could not connect");
  return c;
}

void
join (Client & c, const std::string & thread)
{
  c.send (J ("{'type':'thread:connect','thread':'" + thread +
          "','constraints':{}}"));
}

/* Join, and wait until the server has the member: whoever joins next is
 * announced to it. */
void
join_now (ServerThread & server, Client & c, const std::string & thread)
{
  join (c, thread);
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

/* The next error on a raw connection, skipping other messages. */
std::optional<Msg>
raw_error (RawClient & raw, int timeout_ms = 3000)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  while (g_get_monotonic_time () < deadline) {
    auto t = raw.read_text ((deadline - g_get_monotonic_time ()) / 1000 + 1);
    if (!t)
      return std::nullopt;
    Msg m (*t);
    if (m.type () == "error")
      return m;
  }
  return std::nullopt;
}

/* The session exists in the router. */
bool
has_session (ServerThread & server, const std::string & id)
{
  bool has = false;
  server.call ([&] (SignallingServer & s) {
        has = s.router ().has_session (id);
      });
  return has;
}

/* Wait until the server took the session as away, or ended it. */
bool
wait_offline (ServerThread & server, const std::string & id)
{
  for (int i = 0; i < 200; i++) {
    bool online = true;
    server.call ([&] (SignallingServer & s) {
          online = s.router ().is_online (id);
        });
    if (!online)
      return true;
    g_usleep (10000);
  }
  return false;
}

std::uint64_t
metric (ServerThread & server, const std::string & line_prefix)
{
  std::string text;
  server.call ([&] (SignallingServer & s) {
        text = s.metrics ();
      });
  auto at = text.find ("\n" + line_prefix + " ");
  return at == std::string::npos ? 0
      : g_ascii_strtoull (text.c_str () + at + line_prefix.size () + 2,
      nullptr, 10);
}

ServerOptions
hostile_options ()
{
  ServerOptions o = ServerThread::default_options ();
  /* The bystanders are iterated only while the checks wait on them, and
   * answer no pings meanwhile: with pings a minute apart, a long attack
   * does not make them dead. */
  o.ping_interval_s = 60;
  return o;
}

/* Where an attack happens: a server, and two sessions in a thread of
 * their own, connected before the attack and unrelated to it. */
struct Scene
{
  explicit Scene (ServerOptions o = hostile_options (),
      const std::string & bystander_query = "");

  ServerThread server;
  std::unique_ptr<Client> a, b;
  std::string query;          /* what a new client needs to connect */
  std::size_t rss_before = 0;
  int attacks = 0;
};

Scene::Scene (ServerOptions o, const std::string & bystander_query)
  : server (std::move (o)), query (bystander_query)
{
  a = connected (server, query);
  b = connected (server, query);
  join_now (server, *a, "bystanders");
  join (*b, "bystanders");
  expect (*a, "thread:connect", "the bystanders met");
  fail_unless (reset_peak_memory (), "cannot reset the peak of VmRSS");
  rss_before = memory ().rss;
}

/* The after-checks every attack ends with: (4) `attacker_got` asserts what
 * the attacker was answered, first, while it is fresh; (1) a new client
 * connects and is greeted; (2) the bystanders still relay, both ways;
 * (3) memory stayed within SLACK of what it was before the attacks, at its
 * peak and now. */
void
survived (Scene & s, const std::string & attack,
    const std::function<void ()> & attacker_got)
{
  const char *what = attack.c_str ();
  attacker_got ();

  Client fresh;
  fail_unless (fresh.connect (s.server.ws_url (), s.query),
      "after %s: a new client could not connect", what);
  fail_unless_equals_int (fresh.id.size (), 15);

  std::string n = std::to_string (++s.attacks);
  s.a->send (J ("{'type':'message','thread':'bystanders','data':'after " + n +
          "'}"));
  auto m = s.b->next_of ("message", 5000);
  fail_unless (m.has_value (), "after %s: the bystanders' thread relays no more",
      what);
  assert_str (m->str ("from"), s.a->id);
  assert_str (m->str ("data"), "after " + n);
  s.b->send (J ("{'type':'message','to':'" + s.a->id + "','data':'back " + n +
          "'}"));
  auto back = s.a->next_of ("message", 5000);
  fail_unless (back && back->str ("data") == "back " + n,
      "after %s: a bystander's direct message was not relayed", what);

  Memory mem = memory ();
  fail_unless (mem.peak < s.rss_before + SLACK, "%s: memory peaked at +%zu MiB "
      "(bound +%zu MiB)", what, (mem.peak - s.rss_before) >> 20, SLACK >> 20);
  fail_unless (mem.rss < s.rss_before + SLACK, "after %s: memory is at +%zu "
      "MiB (bound +%zu MiB)", what, (mem.rss - s.rss_before) >> 20, SLACK >> 20);
  reset_peak_memory ();
}

/* The attacker's connection was closed with `code` and `reason`. */
void
closed_with (RawClient & raw, gushort code, const std::string & reason,
    const std::string & what)
{
  std::string got_reason;
  auto got = raw.read_close (3000, &got_reason);
  fail_unless (got.has_value (), "%s: no close frame came back", what.c_str ());
  fail_unless (*got == code, "%s: closed with %u, not %u", what.c_str (),
      (unsigned) *got, (unsigned) code);
  assert_str (got_reason, reason);
  fail_unless (raw.read_to_eof (3000).has_value (),
      "%s: the connection stayed open after the close frame", what.c_str ());
}

void
got_error (RawClient & raw, const char *code, const std::string & what)
{
  auto e = raw_error (raw);
  fail_unless (e.has_value (), "%s: no error came back", what.c_str ());
  assert_str (e->str ("code"), code);
}

std::string
message_to (const std::string & to, const std::string & data)
{
  return J ("{'type':'message','to':'" + to + "','data':'" + data + "'}");
}

}  // namespace

/* Frames RFC 6455 forbids: the connection is failed with 1002 and the
 * reason websocket.cpp gives. */
GST_START_TEST (test_protocol_errors)
{
  Scene s;
  struct Case
  {
    std::string what;
    std::string bytes;
    const char *reason;
  };
  std::vector<Case> cases = {
    {"RSV1 on a text frame", ws_frame (0x80 | 0x40 | 0x1, "{}"),
        "reserved bits set"},
    {"RSV2 on a text frame", ws_frame (0x80 | 0x20 | 0x1, "{}"),
        "reserved bits set"},
    {"RSV3 on a text frame", ws_frame (0x80 | 0x10 | 0x1, "{}"),
        "reserved bits set"},
    {"RSV1 on a ping", ws_frame (0x80 | 0x40 | 0x9, "p"), "reserved bits set"},
    {"an unmasked text frame", ws_frame (0x81, "{}", false),
        "client frames must be masked"},
    {"a ping of 126 bytes", ws_frame (0x89, std::string (126, 'p')),
        "bad control frame"},
    {"a fragmented ping", ws_frame (0x09, "p"), "bad control frame"},
    {"a fragmented close", ws_frame (0x08, std::string ("\x03\xe8", 2)),
        "bad control frame"},
    {"a continuation without a message", ws_frame (0x80, "x"),
        "continuation without a message"},
    {"an unfinished continuation without a message", ws_frame (0x00, "x"),
        "continuation without a message"},
    {"a text frame between fragments", ws_frame (0x01, "{\"type\"") +
          ws_frame (0x81, "{}"), "a new message inside a fragmented one"},
    {"a binary frame between fragments", ws_frame (0x01, "{\"type\"") +
          ws_frame (0x82, "{}"), "a new message inside a fragmented one"},
  };
  for (guint8 op = 0x3; op <= 0x7; op++)
    cases.push_back ({"reserved opcode " + std::to_string (op),
          ws_frame (0x80 | op, "x"), "unknown opcode"});
  for (guint8 op = 0xb; op <= 0xf; op++)
    cases.push_back ({"reserved control opcode " + std::to_string (op),
          ws_frame (0x80 | op, "x"), "bad control frame"});

  for (const Case & c : cases) {
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    fail_unless (raw.send_raw (c.bytes));
    survived (s, c.what, [&] () {
          closed_with (raw, 1002, c.reason, c.what);
        });
  }
}
GST_END_TEST;

/* UTF-8 and fragments: a character split across fragments is whole at the
 * other end, pings may come between fragments, and text that is not UTF-8,
 * whole or split, is `bad-json` (docs/protocol.md), the connection staying. */
GST_START_TEST (test_fragments_and_utf8)
{
  Scene s;
  auto target = connected (s.server);
  RawClient raw;
  fail_unless (raw.connect (s.server.port ()));
  const std::string head = "{\"type\":\"message\",\"to\":\"" + target->id +
      "\",\"data\":\"";

  /* "€" is E2 82 AC: the fragments split it, with a ping between them. */
  raw.send_frame (0x1, false, head + "\xe2\x82");
  raw.send_frame (0x9, true, "between");
  raw.send_frame (0x0, true, "\xac ok\"}");
  auto pong = raw.read_frame ();
  fail_unless (pong && pong->opcode () == 0xa && pong->payload == "between",
      "a ping between fragments is answered");
  Msg whole = expect (*target, "message", "split character");
  assert_str (whole.str ("data"), "\xe2\x82\xac ok");

  struct Case
  {
    const char *what;
    std::vector<std::string> fragments;
  };
  const Case cases[] = {
    {"a lone 0xff", {head + "\xff\"}"}},
    {"an overlong '.'", {head + "\xc0\xae\"}"}},
    {"a UTF-16 surrogate", {head + "\xed\xa0\x80\"}"}},
    {"a code point over U+10FFFF", {head + "\xf4\x90\x80\x80\"}"}},
    {"a truncated sequence at the end", {head + "\"}\xe2\x82"}},
    {"a bad continuation byte across fragments", {head + "\xe2\x82",
          "\x28\"}"}},
    {"a sequence cut short by the last fragment", {head + "ok\"}",
          "\xf0\x9f"}},
  };
  for (const Case & c : cases) {
    for (std::size_t i = 0; i < c.fragments.size (); i++)
      raw.send_frame (i == 0 ? 0x1 : 0x0, i + 1 == c.fragments.size (),
          c.fragments[i]);
    got_error (raw, "bad-json", c.what);
  }
  fail_unless (target->quiet (), "text that is not UTF-8 was relayed");

  survived (s, "invalid UTF-8", [&] () {
        raw.send_frame (0x1, true, message_to (target->id, "still here"));
        Msg m = expect (*target, "message", "the connection stays");
        assert_str (m.str ("data"), "still here");
      });
}
GST_END_TEST;

/* A frame that claims more than the bound is `too-large` before a byte of
 * it is read: nothing is allocated for the claim. */
GST_START_TEST (test_length_claims)
{
  Scene s;
  /* RFC 6455 5.2: a 64-bit length has its top bit clear. */
  for (std::uint64_t length : {TWO_63, TWO_64_MINUS_1}) {
    std::string what = "a frame claiming " + std::string (length == TWO_63
            ? "2^63" : "2^64-1") + " bytes";
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    fail_unless (raw.send_raw (ws_frame (0x81, "{\"type\"", true, length)));
    survived (s, what, [&] () {
          closed_with (raw, 1002, "64-bit length with its top bit set", what);
        });
  }
  /* Lengths the framing allows, over the bound: dropped as they come. */
  for (std::uint64_t length : {TWO_63 - 1, std::uint64_t (65537)}) {
    std::string what = "a frame claiming " + std::to_string (length) +
        " bytes";
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    fail_unless (raw.send_raw (ws_frame (0x81, "{\"type\"", true, length)));
    survived (s, what, [&] () {
          got_error (raw, "too-large", what);
        });
  }
}
GST_END_TEST;

/* A continuation frame whose length, added to what the message already
 * holds, passes 2^64 (or would, unchecked): the total must not wrap
 * around below the bound. */
GST_START_TEST (test_length_wraps_on_continuation)
{
  Scene s;
  struct Case
  {
    const char *what;
    std::uint64_t length;
  };
  for (const Case & c : {
          Case {"a continuation claiming 2^63-1 bytes", TWO_63 - 1},
          Case {"a continuation claiming 2^63-8 bytes", TWO_63 - 8}}) {
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    /* 15 bytes held, then a claim that only a wrapping sum would let in. */
    fail_unless (raw.send_frame (0x1, false, "{\"type\":\"messag"));
    fail_unless (raw.send_raw (ws_frame (0x00, "e\"}", true, c.length)));
    survived (s, c.what, [&] () {
          got_error (raw, "too-large", c.what);
        });
  }
  for (std::uint64_t length : {TWO_64_MINUS_1, TWO_64_MINUS_1 - 7}) {
    std::string what = "a continuation claiming 2^64-" +
        std::to_string (TWO_64_MINUS_1 - length + 1) + " bytes";
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    fail_unless (raw.send_frame (0x1, false, "{\"type\":\"messag"));
    fail_unless (raw.send_raw (ws_frame (0x00, "e\"}", true, length)));
    survived (s, what, [&] () {
          closed_with (raw, 1002, "64-bit length with its top bit set", what);
        });
  }
}
GST_END_TEST;

/* Endless continuation frames: FLOOD bytes in one message that never ends.
 * `too-large` comes while it is still open, the rest is dropped as it
 * comes, memory stays bounded, and the connection goes on. */
GST_START_TEST (test_continuation_flood)
{
  Scene s;
  auto target = connected (s.server);
  RawClient raw;
  fail_unless (raw.connect (s.server.port ()));
  fail_unless (raw.send_frame (0x1, false, "{\"type\":\"message\",\"data\":\""));
  const std::string chunk = ws_frame (0x00, std::string (16 * 1024, 'y'));
  for (std::size_t sent = 0; sent < FLOOD; sent += 16 * 1024)
    fail_unless (raw.send_raw (chunk), "the server stopped reading at %zu MiB",
        sent >> 20);
  fail_unless (raw.send_frame (0x0, true, "\"}"));

  survived (s, "endless continuation frames", [&] () {
        got_error (raw, "too-large", "continuation flood");
        raw.send_frame (0x1, true, message_to (target->id, "after the flood"));
        Msg m = expect (*target, "message", "the connection stays");
        assert_str (m.str ("data"), "after the flood");
        fail_unless (metric (s.server, "peerjs_bytes_received_total") > FLOOD,
            "the server did not read the whole flood");
      });
}
GST_END_TEST;

/* Pings: thousands read as they come are each answered; FLOOD bytes of
 * pings sent by a client that reads nothing must not pile up their pongs
 * in the server: they all come back, or the connection is closed 4002
 * (docs/protocol.md: send backlog over 4 MiB). */
GST_START_TEST (test_ping_flood)
{
  Scene s;
  auto target = connected (s.server);
  RawClient raw;
  fail_unless (raw.connect (s.server.port ()));

  const int pings = 5000;
  std::string burst;
  for (int i = 0; i < pings; i++)
    burst += ws_frame (0x89, std::to_string (i));
  fail_unless (raw.send_raw (burst));
  for (int i = 0; i < pings; i++) {
    auto f = raw.read_frame ();
    fail_unless (f && f->opcode () == 0xa, "pong %d of %d missing", i, pings);
    assert_str (f->payload, std::to_string (i));
  }
  raw.send_frame (0x1, true, message_to (target->id, "after pings"));
  expect (*target, "message", "after thousands of pings");

  /* Now without reading. */
  const std::string payload (125, 'p');
  std::string batch;
  for (int i = 0; i < 1024; i++)
    batch += ws_frame (0x89, payload);
  std::size_t sent = 0;
  while (sent < FLOOD && raw.send_raw (batch))
    sent += batch.size ();
  const std::size_t frames = sent / (batch.size () / 1024);

  survived (s, "a ping flood nobody reads", [&] () {
        std::size_t pongs = 0;
        std::optional<gushort> code;
        while (auto f = raw.read_frame (5000)) {
          if (f->opcode () == 0x8) {
            code = f->payload.size () >= 2 ? ((guint8) f->payload[0] << 8)
                | (guint8) f->payload[1] : 1005;
            break;
          }
          if (f->opcode () == 0xa && f->payload == payload && ++pongs == frames)
            break;
        }
        fail_unless (pongs == frames || code == 4002, "%zu pings sent, %zu "
            "pongs came back, then %s", frames, pongs, code
            ? ("close " + std::to_string (*code)).c_str () : "nothing");
      });
}
GST_END_TEST;

/* Close frames with codes nobody may send (RFC 6455 7.4: 0-999, 1004-1006,
 * 1015, 5000 and up) or a 1-byte payload are protocol errors: the answer is
 * 1002 (Autobahn 7.3.2, 7.9.x). Valid codes are echoed. Either way the
 * session ends (docs/protocol.md: whatever the close frame says), unless it
 * is 4100. Every case is tried; the mismatches are listed together. */
GST_START_TEST (test_close_codes)
{
  Scene s;
  auto mate = connected (s.server);
  join_now (s.server, *mate, "closers");
  struct Case
  {
    const char *what;
    std::string payload;
    gushort answer;
    bool ends;
  };
  auto code = [] (gushort c) {
    return std::string {static_cast<char>(c >> 8), static_cast<char>(c & 0xff)};
  };
  const Case cases[] = {
    {"code 0", code (0), 1002, true},
    {"code 999", code (999), 1002, true},
    {"code 1004", code (1004), 1002, true},
    {"code 1005", code (1005), 1002, true},
    {"code 1006", code (1006), 1002, true},
    {"code 1015", code (1015), 1002, true},
    {"code 5000", code (5000), 1002, true},
    {"code 65535", code (65535), 1002, true},
    {"a 1-byte payload", std::string ("\x03", 1), 1002, true},
    {"code 1000", code (1000), 1000, true},
    {"code 3000", code (3000), 3000, true},
    {"code 4100", code (4100), 4100, false},
  };
  std::string wrong;
  for (const Case & c : cases) {
    RawClient raw;
    fail_unless (raw.connect (s.server.port ()));
    raw.send_frame (0x1, true,
        J ("{'type':'thread:connect','thread':'closers'}"));
    expect (*mate, "thread:connect", c.what);
    raw.send_frame (0x8, true, c.payload);
    survived (s, std::string ("a close frame with ") + c.what, [&] () {
          auto f = raw.read_frame ();
          while (f && f->opcode () != 0x8)
            f = raw.read_frame ();
          std::string got = "no close frame";
          if (f && f->payload.size () >= 2)
            got = std::to_string (((guint8) f->payload[0] << 8)
                | (guint8) f->payload[1]);
          else if (f)
            got = "a close frame with " + std::to_string (f->payload.size ()) +
                " byte(s) of payload";
          if (got != std::to_string (c.answer))
            wrong += std::string ("\n  ") + c.what + ": answered " + got +
                ", not " + std::to_string (c.answer);
          bool ended = mate->next_of ("thread:disconnect", 2000).has_value ();
          if (ended != c.ends)
            wrong += std::string ("\n  ") + c.what + ": the session " +
                (ended ? "ended" : "was kept");
        });
  }
  fail_unless (wrong.empty (), "close frames answered wrongly:%s",
      wrong.c_str ());
}
GST_END_TEST;

/* Every envelope field with a value of the wrong type, length or form:
 * `bad-message` (or `bad-json` where docs/protocol.md says), nothing
 * relayed, the connection stays. `data` is any JSON, and relayed as sent. */
GST_START_TEST (test_envelope_types)
{
  Scene s;
  auto bad = connected (s.server);
  auto target = connected (s.server);
  const std::string T = "\"" + target->id + "\"";
  const std::string huge = "\"" + std::string (60000, 'h') + "\"";
  const std::string name129 = "\"" + std::string (129, 'n') + "\"";
  const std::string type65 = "\"" + std::string (65, 't') + "\"";
  std::string to65 = "[";
  for (int i = 0; i < 65; i++)
    to65 += (i ? "," : "") + T;
  to65 += "]";
  std::string to64 = to65.substr (0, to65.size () - T.size () - 2) + "]";

  struct Case
  {
    std::string text;
    const char *code;
  };
  std::vector<Case> cases;
  auto add = [&] (const std::string & members, const char *code =
      "bad-message") {
    cases.push_back ({"{" + members + "}", code});
  };
  for (const std::string & v : Values {"5", "[\"message\"]", "{}", "null",
          "true", "\"\"", type65, huge, "\"a\\u0001b\""})
    add ("\"type\":" + v + ",\"to\":" + T);
  for (const std::string & v : Values {"5", "{}", "null", "true", "[]", "[5]",
          "[null]", "[[" + T + "]]", "[" + T + ",5]", "\"\"", huge,
          name129, to65, "\"a\\nb\""})
    add ("\"type\":\"message\",\"to\":" + v);
  for (const std::string & v : Values {"5", "[]", "{}", "null", "true", "\"\"",
          huge, name129, "\"a\\u0007b\""})
    add ("\"type\":\"message\",\"to\":" + T + ",\"thread\":" + v);
  for (const std::string & v : Values {"5", "[]", "{}", "null", "\"\"", huge})
    add ("\"type\":\"message\",\"to\":" + T + ",\"from\":" + v);
  for (const std::string & v : Values {"5", "{}", "null", "true", "[]", "[5]",
          "[\"\"]", "\"\"", name129, "[\"ok\"," + name129 + "]"})
    add ("\"type\":\"presence:tag\",\"data\":" + v);
  for (const std::string & v : Values {"5", "\"video\"", "[]", "true", "0"})
    add ("\"type\":\"thread:connect\",\"thread\":\"t\",\"constraints\":" + v);
  for (const char *field : {"callback_id", "callback_response"})
    for (const std::string & v : Values {"1.5", "1e3", "-0.5", "[]", "{}",
            "null", "true", "18446744073709551616", "9223372036854775808",
            "\"" + std::string (65, 'c') + "\"", huge})
      add (std::string ("\"type\":\"message\",\"to\":") + T + ",\"" + field +
          "\":" + v);
  /* A repeated name, read one way here and another by some client. */
  add ("\"type\":\"message\",\"to\":" + T + ",\"type\":5");
  add ("\"type\":\"message\",\"type\":\"x:other\",\"to\":" + T);
  add ("\"type\":\"message\",\"to\":" + T + ",\"t\\u0079pe\":\"x:other\"");
  /* Negotiation with a session sharing no thread. */
  add ("\"type\":\"stream:offer\",\"to\":" + T, "no-shared-thread");
  add ("\"type\":\"file:request\",\"to\":" + T + ",\"id\":\"1\"",
      "no-shared-thread");
  add ("\"to\":" + T + ",\"data\":1");   /* no type, and not a reply */
  cases.push_back ({"[]", "bad-json"});
  cases.push_back ({"\"message\"", "bad-json"});
  cases.push_back ({"{\"type\":\"message\",\"to\":" + T + "} {}", "bad-json"});
  cases.push_back ({"{'type':'message','to':" + T + "}", "bad-json"});
  /* \u0000 is refused in names; in data it is relayed as it came. */
  cases.push_back ({"{\"type\":\"message\",\"to\":\"a\\u0000b\"}",
          "bad-message"});

  std::string wrong;
  for (const Case & c : cases) {
    bad->send (c.text);
    auto e = bad->next_of ("error", 2000);
    std::string got = e ? e->str ("code") : "no error";
    if (got != c.code)
      wrong += "\n  " + c.text.substr (0, 120) + ": " + got + ", not " + c.code;
  }
  fail_unless (wrong.empty (), "wrong answers:%s", wrong.c_str ());
  fail_unless (target->quiet (), "a refused message was relayed");

  /* `data` may be any JSON; 64 `to` entries naming one session reach it
   * once. */
  for (const std::string & v : Values {"5", "-1.5e300", "null", "true",
          "[1,[2]]", "{\"a\":{\"b\":[]}}", "\"\\u00e9\\ud83d\\ude00\""}) {
    bad->send ("{\"type\":\"message\",\"to\":" + T + ",\"data\":" + v + "}");
    Msg m = expect (*target, "message", v.c_str ());
    JsonNode *got = m.node ("data");
    g_autoptr (JsonNode) sent = json_from_string (v.c_str (), nullptr);
    fail_unless (json_node_equal (got, sent), "data %s came as %s", v.c_str (),
        m.text ().c_str ());
  }
  bad->send ("{\"type\":\"message\",\"to\":" + to64 + ",\"data\":\"once\"}");
  expect (*target, "message", "64 entries");
  fail_unless (target->quiet (), "one recipient named 64 times got it twice");

  survived (s, "envelope fields of the wrong type", [&] () {
        bad->send (message_to (target->id, "still here"));
        Msg m = expect (*target, "message", "the connection stays");
        assert_str (m.str ("data"), "still here");
      });
}
GST_END_TEST;

/* Each documented limit, at its bound and one past it. */
GST_START_TEST (test_limits)
{
  Scene s;
  auto c = connected (s.server);
  auto target = connected (s.server);
  const RouterLimits limits;
  auto sized = [&] (std::size_t total) {
    std::string head = "{\"type\":\"message\",\"to\":\"" + target->id +
        "\",\"data\":\"";
    return head + std::string (total - head.size () - 2, 'x') + "\"}";
  };
  auto nested = [&] (unsigned depth) {
    return "{\"type\":\"message\",\"to\":\"" + target->id + "\",\"data\":" +
        std::string (depth - 1, '[') + std::string (depth - 1, ']') + "}";
  };
  auto error = [&] (const char *code, const char *what) {
    Msg e = expect (*c, "error", what);
    assert_str (e.str ("code"), code);
  };

  c->send (sized (limits.protocol.max_message_size));
  expect (*target, "message", "a message of exactly the bound");
  c->send (sized (limits.protocol.max_message_size + 1));
  error ("too-large", "one byte over");
  c->send (nested (limits.protocol.max_depth));
  expect (*target, "message", "32 levels");
  c->send (nested (limits.protocol.max_depth + 1));
  error ("bad-json", "33 levels");

  std::string tags = "[";
  for (std::size_t i = 0; i < limits.max_tags_per_session; i++)
    tags += (i ? ",\"" : "\"") + std::to_string (i) + "-tag\"";
  c->send ("{\"type\":\"presence:tag\",\"data\":" + tags + "]}");
  c->send (J ("{'type':'presence:tag','data':'one-more-tag'}"));
  error ("limit", "a tag over the limit");

  std::string watches = "[";
  for (std::size_t i = 0; i < limits.max_watches_per_session; i++)
    watches += (i ? ",\"" : "\"") + std::to_string (i) + "-watch\"";
  c->send ("{\"type\":\"presence:watch\",\"to\":" + watches + "]}");
  c->send (J ("{'type':'presence:watch','to':['one-more-watch']}"));
  error ("limit", "a watch over the limit");

  for (std::size_t i = 0; i < limits.max_threads_per_session; i++)
    join (*c, "thread-" + std::to_string (i));
  join (*c, "one-thread-too-many");
  error ("limit", "a thread over the limit");
  fail_unless (c->quiet (300), "the bounds themselves were refused");

  survived (s, "limits", [&] () {
        c->send (message_to (target->id, "still here"));
        expect (*target, "message", "the connection stays");
      });
}
GST_END_TEST;

/* `from` naming another session is refused and not relayed; its callback
 * gets the error as its reply. Its own id is accepted. */
GST_START_TEST (test_spoofed_from)
{
  Scene s;
  auto liar = connected (s.server);
  auto target = connected (s.server);
  liar->send (J ("{'type':'message','to':'" + target->id + "','from':'" +
          s.a->id + "','data':'it was them','callback_id':9}"));
  survived (s, "a spoofed from", [&] () {
        Msg e = expect (*liar, "error", "spoofed from");
        assert_str (e.str ("code"), "spoofed-from");
        fail_unless_equals_int (e.num ("callback_response"), 9);
        fail_unless (target->quiet (), "a spoofed message was relayed");
        fail_unless (s.b->quiet (0), "a spoofed message reached the bystanders");
        liar->send (J ("{'type':'message','to':'" + target->id + "','from':'" +
                liar->id + "','data':'me'}"));
        Msg m = expect (*target, "message", "its own id");
        assert_str (m.str ("from"), liar->id);
      });
}
GST_END_TEST;

/* Forged resume tokens get a new id and `bad-token`, and leave the session
 * they name alone; the same good token on a second connection takes the
 * session over, the older connection closed with 4000. */
GST_START_TEST (test_resume_tokens)
{
  Scene s;
  auto victim = connected (s.server);
  auto mate = connected (s.server);
  const std::string token = victim->token;
  const std::string mac = token.substr (token.find ('.') + 1);
  const std::string zeros (64, '0');
  g_autofree char *upper = g_ascii_strup (mac.c_str (), -1);
  const std::string forged[] = {
    "zzzzzzzzzzzzzzz." + zeros,
    victim->id + "." + zeros,
    mate->id + "." + mac,
    victim->id + "." + upper,
    token.substr (0, token.size () - 1),
    token.substr (0, token.find ('.') + 1),
    victim->id,
    "." + mac,
    token + "0",
    std::string (4000, 'a') + "." + zeros,
    "%ff%fe." + zeros,
  };
  for (const std::string & f : forged) {
    Client forger;
    fail_unless (forger.connect (s.server.ws_url (), "resume=" + f));
    survived (s, "resume token " + f.substr (0, 40), [&] () {
          fail_if (forger.id == victim->id, "forged token %s took the session",
              f.c_str ());
          fail_unless (forger.greeting.boolean ("resumed") == false);
          Msg e = expect (forger, "error", "forged token");
          assert_str (e.str ("code"), "bad-token");
          mate->send (message_to (victim->id, "still yours"));
          Msg m = expect (*victim, "message", "the victim kept its session");
          assert_str (m.str ("data"), "still yours");
        });
  }

  auto twin = connected (s.server, "resume=" + token);
  survived (s, "a token used twice", [&] () {
        assert_str (twin->id, victim->id);
        fail_unless (twin->greeting.boolean ("resumed"));
        fail_unless (victim->wait_closed (), "the older connection stays open");
        fail_unless_equals_int (victim->close_code (), 4000);
        mate->send (message_to (twin->id, "to the twin"));
        expect (*twin, "message", "the newer connection has the session");
      });
}
GST_END_TEST;

/* `last=` that is not a sequence number the server gave counts as absent:
 * what was not handed out is replayed once. One beyond the newest is
 * taken as the newest: nothing to replay. */
GST_START_TEST (test_resume_last)
{
  Scene s;
  auto away = connected (s.server);
  auto mate = connected (s.server);
  mate->send (message_to (away->id, "seen"));
  expect (*away, "message", "before the drop");
  std::string id = away->id, token = away->token;

  struct Case
  {
    const char *last;
    bool replays;
  };
  const Case cases[] = {
    {"-1", true},
    {"abc", true},
    {"", true},
    {"1x", true},
    {"18446744073709551616", true},
    {"9223372036854775808", true},
    {"9223372036854775807", false},
    {"99999", false},
  };
  std::unique_ptr<Client> back = std::move (away);
  for (const Case & c : cases) {
    back->abort ();
    fail_unless (wait_offline (s.server, id));
    mate->send (message_to (id, std::string ("while away, last=") + c.last));
    fail_unless (mate->quiet (100));
    back = connected (s.server, "resume=" + token + "&last=" + c.last);
    survived (s, std::string ("last=") + c.last, [&] () {
          assert_str (back->id, id);
          fail_unless (back->greeting.boolean ("resumed"), "last=%s", c.last);
          fail_unless_equals_int (back->greeting.num ("missed"), 0);
          auto m = back->next (500);
          if (c.replays) {
            fail_unless (m && m->str ("data") == std::string ("while away, "
                    "last=") + c.last, "last=%s: the queued message was not "
                "replayed", c.last);
            m = back->next (300);
          }
          fail_if (m.has_value (), "last=%s: replayed %s", c.last,
              m ? m->text ().c_str () : "");
        });
  }
}
GST_END_TEST;

/* Paths that try to leave the web root, in every encoding: 404 or 400,
 * and never a byte of the file next to the root or of /etc/passwd. */
GST_START_TEST (test_path_traversal)
{
  g_autofree char *top = g_dir_make_tmp ("peerjs-hostile-XXXXXX", nullptr);
  g_autofree char *root = g_build_filename (top, "www", nullptr);
  g_autofree char *sub = g_build_filename (root, "sub", nullptr);
  g_mkdir_with_parents (sub, 0700);
  g_autofree char *index = g_build_filename (root, "index.html", nullptr);
  g_autofree char *inner = g_build_filename (sub, "file.txt", nullptr);
  g_autofree char *hidden = g_build_filename (root, ".hidden", nullptr);
  g_autofree char *canary = g_build_filename (top, "canary.txt", nullptr);
  const std::string secret = "CANARY-" + std::to_string (g_random_int ());
  fail_unless (g_file_set_contents (index, "<h1>room</h1>", -1, nullptr));
  fail_unless (g_file_set_contents (inner, "inner", -1, nullptr));
  fail_unless (g_file_set_contents (hidden, secret.c_str (), -1, nullptr));
  fail_unless (g_file_set_contents (canary, secret.c_str (), -1, nullptr));

  ServerOptions o = hostile_options ();
  o.web_root = root;
  Scene s (o);
  auto get = [&] (const std::string & target, std::string * response) {
    return http_raw (s.server.port (), "GET " + target + " HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\nConnection: close\r\n\r\n", response);
  };
  std::string response;
  fail_unless_equals_int (get ("/index.html", &response), 200);
  fail_unless_equals_int (get ("/sub/file.txt", &response), 200);

  const std::string abs_root = root;
  const std::string targets[] = {
    "/../canary.txt", "/sub/../../canary.txt", "/%2e%2e/canary.txt",
    "/%2E%2E/canary.txt", "/.%2e/canary.txt", "/%2e./canary.txt",
    "/%2e%2e%2fcanary.txt", "/sub/%2e%2e/%2e%2e/canary.txt",
    "/%252e%252e/canary.txt", "/%252e%252e%252fcanary.txt",
    "/..%2fcanary.txt", "/sub/..%2f..%2fcanary.txt",
    "/sub%2f..%2f..%2fcanary.txt",
    "/..%5ccanary.txt", "/..\\canary.txt", "/%c0%ae%c0%ae/canary.txt",
    "/%c0%ae%c0%ae%c0%afcanary.txt", "/..;/canary.txt", "/.hidden",
    "/%2ehidden", "/sub/../.hidden", "//etc/passwd", "///etc/passwd",
    "/%2fetc%2fpasswd", "/../../../../../../etc/passwd",
    "/index.html%00/../../canary.txt", "/%00", abs_root + "/../canary.txt",
    "http://127.0.0.1/../canary.txt", "http://127.0.0.1/%2e%2e/canary.txt",
    "../canary.txt", "*",
  };
  std::string wrong;
  for (const std::string & t : targets) {
    guint status = get (t, &response);
    if ((status != 404 && status != 400)
        || response.find (secret) != std::string::npos
        || response.find ("root:") != std::string::npos)
      wrong += "\n  GET " + t + ": " + std::to_string (status) +
          (response.find (secret) != std::string::npos ? " with the canary"
          : "");
  }
  survived (s, "path traversal", [&] () {
        fail_unless (wrong.empty (), "escaped or answered wrongly:%s",
            wrong.c_str ());
      });

  for (const char *f : {index, inner, hidden, canary})
    g_unlink (f);
  g_rmdir (sub);
  g_rmdir (root);
  g_rmdir (top);
}
GST_END_TEST;

/* Request headers over 16 KiB: 431 and the connection closes, before the
 * headers end if they never do. */
GST_START_TEST (test_oversized_headers)
{
  Scene s;
  const std::string port = std::to_string (s.server.port ());
  auto request = [&] (const char *target, const std::string & headers,
      bool end = true) {
    return std::string ("GET ") + target + " HTTP/1.1\r\nHost: 127.0.0.1:" +
        port + "\r\n" + headers + (end ? "Connection: close\r\n\r\n" : "");
  };
  std::string many;
  for (int i = 0; i < 400; i++)
    many += "X-Filler-" + std::to_string (i) + ": " + std::string (40, 'f') +
        "\r\n";
  std::string endless;
  while (endless.size () < 20 * 1024)
    endless += "X-More: " + std::string (100, 'm') + "\r\n";
  const std::string upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n";

  std::string response;
  guint ok = http_raw (s.server.port (), request ("/healthz",
          "X-Big: " + std::string (15 * 1024, 'b') + "\r\n"), &response);
  fail_unless_equals_int (ok, 200);

  struct Case
  {
    const char *what;
    std::string request;
  };
  const Case cases[] = {
    {"one header of 17 KiB", request ("/healthz", "X-Big: " +
              std::string (17 * 1024, 'b') + "\r\n")},
    {"400 headers, 20 KiB", request ("/healthz", many)},
    {"an upgrade with a 17 KiB header", request ("/peerjs", upgrade +
              "X-Big: " + std::string (17 * 1024, 'b') + "\r\n")},
    {"20 KiB of headers that never end", request ("/healthz", endless, false)},
    {"a request line of 17 KiB", request (("/" + std::string (17 * 1024, 'p'))
              .c_str (), "")},
  };
  for (const Case & c : cases) {
    std::string got;
    guint status = http_raw (s.server.port (), c.request, &got);
    survived (s, c.what, [&] () {
          fail_unless_equals_int (status, 431);
        });
  }
  fail_unless (metric (s.server,
          "peerjs_connections_refused_total{reason=\"headers\"}") >= 5);
}
GST_END_TEST;

/* Upgrades refused before libsoup's handshake: a missing key, a POST,
 * HTTP/1.0, another WebSocket version, no Upgrade at all. Each answer is
 * 400 with one Connection: close and one text/plain line starting with
 * "peerjs: " (a bad version names 13, RFC 6455 4.4), compared byte for
 * byte but for the Server and Date lines. */
GST_START_TEST (test_refused_upgrades)
{
  Scene s;
  const std::string key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  const std::string up = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
  const std::string v13 = "Sec-WebSocket-Version: 13\r\n";
  auto answer = [] (const char *version, const std::string & headers,
      const std::string & text) {
    std::string body = "peerjs: " + text + "\n";
    return std::string ("HTTP/") + version + " 400 Bad Request\r\n" + headers +
        "Connection: close\r\nContent-Type: text/plain\r\nContent-Length: " +
        std::to_string (body.size ()) + "\r\n\r\n" + body;
  };
  struct Case
  {
    const char *what;
    std::string request;
    std::string expected;
  };
  const Case cases[] = {
    {"no Sec-WebSocket-Key", "GET /peerjs HTTP/1.1\r\nHost: x\r\n" + up +
          v13 + "\r\n", answer ("1.1", "",
          "the upgrade has no Sec-WebSocket-Key")},
    {"a key of 3 bytes", "GET /peerjs HTTP/1.1\r\nHost: x\r\n" + up + v13 +
          "Sec-WebSocket-Key: abc\r\n\r\n", answer ("1.1", "",
          "not a valid WebSocket upgrade: Invalid WebSocket key")},
    {"a POST", "POST /peerjs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" +
          up + key + v13 + "\r\n", answer ("1.1", "", "a POST request cannot "
          "upgrade; this endpoint speaks WebSocket only")},
    {"HTTP/1.0", "GET /peerjs HTTP/1.0\r\nHost: x\r\n" + up + key + v13 +
          "\r\n", answer ("1.0", "", "the upgrade needs HTTP/1.1; this "
          "endpoint speaks WebSocket only")},
    {"version 8", "GET /peerjs HTTP/1.1\r\nHost: x\r\n" + up + key +
          "Sec-WebSocket-Version: 8\r\n\r\n", answer ("1.1",
          "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only")},
    {"no version", "GET /peerjs HTTP/1.1\r\nHost: x\r\n" + up + key +
          "\r\n", answer ("1.1", "Sec-WebSocket-Version: 13\r\n",
          "WebSocket version 13 only")},
    {"no Upgrade", "GET /peerjs HTTP/1.1\r\nHost: x\r\n\r\n",
          answer ("1.1", "", "this endpoint speaks WebSocket only (Upgrade: "
          "websocket, Connection: Upgrade)")},
  };
  std::uint64_t refused = 0;
  for (const Case & c : cases) {
    RawClient raw;
    fail_unless (raw.open (s.server.port ()));
    fail_unless (raw.send_raw (c.request));
    auto got = raw.read_to_eof (3000);
    survived (s, c.what, [&] () {
          fail_unless (got.has_value (), "%s: the connection stayed open",
              c.what);
          /* The Server and Date lines vary with libsoup and the clock. */
          std::string kept;
          std::size_t at = 0;
          while (at < got->size ()) {
            std::size_t eol = got->find ("\r\n", at);
            std::size_t end = eol == std::string::npos ? got->size () : eol + 2;
            std::string line = got->substr (at, end - at);
            if (line.rfind ("Server: ", 0) != 0 && line.rfind ("Date: ", 0) != 0)
              kept += line;
            at = end;
            if (line == "\r\n")
              break;
          }
          kept += got->substr (at);
          fail_unless (kept == c.expected, "%s: the answer was\n%s\nnot\n%s",
              c.what, kept.c_str (), c.expected.c_str ());
          fail_unless_equals_uint64 (metric (s.server,
                  "peerjs_connections_refused_total{reason=\"upgrade\"}"),
              ++refused);
        });
  }
}
GST_END_TEST;

/* `request` over TLS on a fresh connection from `local` (any 127.x): what
 * the server answers until it closes, nullopt if it stayed open for 5 s.
 * With `hang_up`, the client closes right after sending instead. */
std::optional<std::string>
tls_raw (guint port, const std::string & request, const char *local,
    bool hang_up = false)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_socket_client_set_timeout (client, 5);
  g_autoptr (GInetAddress) from = g_inet_address_new_from_string (local);
  g_autoptr (GSocketAddress) bind_to = g_inet_socket_address_new (from, 0);
  g_socket_client_set_local_address (client, bind_to);
  g_autoptr (GSocketConnection) conn = g_socket_client_connect_to_host (client,
      "127.0.0.1", port, nullptr, nullptr);
  fail_unless (conn != nullptr, "no TCP connection from %s", local);
  g_autoptr (GIOStream) tls = g_tls_client_connection_new (G_IO_STREAM (conn),
      nullptr, nullptr);
  fail_unless (tls != nullptr);
  g_signal_connect (tls, "accept-certificate", G_CALLBACK (+[] (
              GTlsConnection *, GTlsCertificate *, GTlsCertificateFlags,
              gpointer) -> gboolean {
            return TRUE;
          }), nullptr);
  g_tls_connection_set_require_close_notify (G_TLS_CONNECTION (tls), FALSE);
  fail_unless (g_output_stream_write_all (g_io_stream_get_output_stream (tls),
          request.data (), request.size (), nullptr, nullptr, nullptr));
  if (hang_up) {
    g_io_stream_close (tls, nullptr, nullptr);
    return std::string ();
  }
  std::string got;
  char buf[4096];
  for (;;) {
    g_autoptr (GError) error = nullptr;
    gssize n = g_input_stream_read (g_io_stream_get_input_stream (tls), buf,
        sizeof buf, nullptr, &error);
    if (n > 0) {
      got.append (buf, n);
      continue;
    }
    if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
      return std::nullopt;
    return got;
  }
}

/* TLS connections get what plain ones get before libsoup has their
 * request: a head over 16 KiB is answered 431 (ended or not) and its
 * place under --max-per-address freed; a client that hangs up halfway
 * through its request frees its place at once. */
GST_START_TEST (test_tls_requests)
{
  const char *data = g_getenv ("PEERJS_TEST_DATA");
  fail_unless (data != nullptr, "PEERJS_TEST_DATA is not set");
  ServerOptions o = hostile_options ();
  g_autofree char *cert = g_build_filename (data, "test-cert.pem", nullptr);
  g_autofree char *key = g_build_filename (data, "test-key.pem", nullptr);
  o.tls_cert = cert;
  o.tls_key = key;
  o.max_per_address = 3;
  Scene s (o);
  const guint port = s.server.port ();
  auto get = [] (const std::string & headers, bool end = true) {
    return "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
        (end ? "Connection: close\r\n\r\n" : "");
  };
  const std::string refused = "HTTP/1.1 431 Request Header Fields Too Large"
      "\r\nContent-Type: text/plain\r\nConnection: close\r\n"
      "Content-Length: 38\r\n\r\npeerjs: request head over 16384 bytes\n";
  std::string endless;
  while (endless.size () < 20 * 1024)
    endless += "X-More: " + std::string (100, 'm') + "\r\n";

  auto ok = tls_raw (port, get ("X-Big: " + std::string (15 * 1024, 'b') +
          "\r\n"), "127.0.0.6");
  fail_unless (ok && ok->rfind ("HTTP/1.1 200 OK\r\n", 0) == 0,
      "15 KiB of headers over TLS: %s", ok ? ok->c_str () : "still open");

  struct Case
  {
    const char *what;
    std::string request;
  };
  const Case cases[] = {
    {"TLS: one header of 17 KiB", get ("X-Big: " + std::string (17 * 1024, 'b')
              + "\r\n")},
    {"TLS: 20 KiB of headers that never end", get (endless, false)},
    {"TLS: a request line of 17 KiB", "GET /" + std::string (17 * 1024, 'p') +
          " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
  };
  std::uint64_t headers = 0;
  for (int round = 0; round < 2; round++) {
    for (const Case & c : cases) {
      auto got = tls_raw (port, c.request, "127.0.0.6");
      survived (s, c.what, [&] () {
            fail_unless (got.has_value (), "%s: the connection stayed open",
                c.what);
            fail_unless (*got == refused, "%s: answered\n%s", c.what,
                got->c_str ());
            fail_unless_equals_uint64 (metric (s.server,
                    "peerjs_connections_refused_total{reason=\"headers\"}"),
                ++headers);
          });
    }
  }

  /* Three clients hang up halfway through their request; their places
   * are free at once. */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 3; i++)
      tls_raw (port, "GET /healthz HTTP/1.1\r\nHost: x\r\n", "127.0.0.6",
          true);
    gint64 start = g_get_monotonic_time ();
    bool served = false;
    while (!served && g_get_monotonic_time () - start < 2 * G_USEC_PER_SEC) {
      auto got = tls_raw (port, get (""), "127.0.0.6");
      served = got && got->rfind ("HTTP/1.1 200 OK\r\n", 0) == 0;
      if (!served)
        g_usleep (20000);
    }
    fail_unless (served, "round %d: the places of TLS clients that hung up "
        "mid-request were still taken after 2 s", round);
  }

  /* Over --max-per-address, a TLS client gets its 429 over TLS. */
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 3; i++) {
    held.push_back (std::make_unique<RawClient> ());
    fail_unless (held.back ()->open (port, "127.0.0.7"));
  }
  const std::string body = "peerjs: too many connections from 127.0.0.7 (at "
      "most 3)\n";
  const std::string too_many = "HTTP/1.1 429 Too Many Requests\r\n"
      "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
      std::to_string (body.size ()) + "\r\n\r\n" + body;
  for (int i = 0; i < 3; i++) {
    auto got = tls_raw (port, get (""), "127.0.0.7");
    survived (s, "TLS over the per-address cap", [&] () {
          fail_unless (got.has_value (), "the fourth TLS connection stayed open");
          fail_unless (*got == too_many, "answered\n%s", got->c_str ());
        });
  }
  held.clear ();
  gint64 start = g_get_monotonic_time ();
  bool served = false;
  while (!served && g_get_monotonic_time () - start < 2 * G_USEC_PER_SEC) {
    auto got = tls_raw (port, get (""), "127.0.0.7");
    served = got && got->rfind ("HTTP/1.1 200 OK\r\n", 0) == 0;
  }
  fail_unless (served, "the places of closed connections were not freed");
}
GST_END_TEST;

/* Slowloris: connections that send their request a byte at a time, or
 * nothing at all, are closed without an answer once --handshake-timeout
 * passed; meanwhile clients keep connecting and relaying. */
GST_START_TEST (test_slowloris)
{
  ServerOptions o = hostile_options ();
  o.handshake_timeout_s = 1;
  Scene s (o);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "X-Slow: " + std::string (64, 's') + "\r\n\r\n";
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < 50; i++) {
    slow.push_back (std::make_unique<RawClient> ());
    fail_unless (slow.back ()->open (s.server.port (), "127.0.0.2"));
  }
  RawClient silent;
  fail_unless (silent.open (s.server.port ()));

  gint64 start = g_get_monotonic_time ();
  std::size_t sent = 0;
  int relayed = 0;
  while (g_get_monotonic_time () - start < 2500000) {
    for (auto &c : slow)
      c->send_raw (request.substr (sent, 1));
    sent++;
    /* Others are served meanwhile. */
    auto fresh = connected (s.server);
    auto other = connected (s.server);
    fresh->send (message_to (other->id, "meanwhile"));
    expect (*other, "message", "a client during the slowloris");
    relayed++;
    g_usleep (200000);
  }
  fail_unless (sent < request.size (), "the slow requests were finished");

  survived (s, "slowloris", [&] () {
        int still_open = 0, answered = 0;
        for (auto &c : slow) {
          auto got = c->read_to_eof (500);
          still_open += got ? 0 : 1;
          answered += got && !got->empty () ? 1 : 0;
        }
        fail_unless_equals_int (still_open, 0);
        fail_unless_equals_int (answered, 0);
        auto quiet = silent.read_to_eof (500);
        fail_unless (quiet && quiet->empty (),
            "the silent connection was not closed without an answer");
        fail_unless (relayed >= 5);
        fail_unless (metric (s.server,
                "peerjs_connections_refused_total{reason=\"handshake\"}") >= 51);
      });
}
GST_END_TEST;

/* --max-per-address: an address over the cap gets 429 and is closed;
 * other addresses are not affected; a closed connection frees its place. */
GST_START_TEST (test_per_address_cap)
{
  ServerOptions o = hostile_options ();
  o.max_per_address = 4;
  Scene s (o);   /* a and b come from 127.0.0.1 */
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 4; i++) {
    held.push_back (std::make_unique<RawClient> ());
    fail_unless (held.back ()->open (s.server.port (), "127.0.0.2"));
    if (i < 2)
      fail_unless (held.back ()->upgrade (), "WebSocket %d of 4", i);
  }
  RawClient over;
  fail_unless (over.open (s.server.port (), "127.0.0.2"));
  survived (s, "the per-address cap", [&] () {
        auto got = over.read_to_eof (3000);
        fail_unless (got.has_value (), "the fifth connection was kept open");
        fail_unless (got->rfind ("HTTP/1.1 429 Too Many Requests\r\n", 0) == 0,
            "%s", got->c_str ());
        fail_unless (metric (s.server,
                "peerjs_connections_refused_total{reason=\"address\"}") >= 1);
      });

  held.erase (held.begin ());   /* a WebSocket goes */
  bool again = false;
  for (int i = 0; i < 50 && !again; i++) {
    RawClient next;
    fail_unless (next.open (s.server.port (), "127.0.0.2"));
    again = next.upgrade ();
    if (!again)
      g_usleep (20000);
  }
  fail_unless (again, "a closed connection did not free its place");
}
GST_END_TEST;

/* A client that hangs up halfway through its request frees its place
 * under --max-per-address at once, not at --handshake-timeout (10 s):
 * what it sent stays in the socket and must not hide the hang-up. */
GST_START_TEST (test_dropped_mid_handshake)
{
  ServerOptions o = hostile_options ();
  o.max_per_address = 3;
  Scene s (o);   /* a, b and survived ()'s new client: 3 from 127.0.0.1 */
  for (int round = 0; round < 3; round++) {
    {
      RawClient half[3];
      for (RawClient & h : half) {
        fail_unless (h.open (s.server.port (), "127.0.0.3"));
        fail_unless (h.send_raw ("GET /peerjs HTTP/1.1\r\nHost: x\r\n"));
      }
    }   /* all three hang up here */
    gint64 start = g_get_monotonic_time ();
    bool in = false;
    while (!in && g_get_monotonic_time () - start < 2 * G_USEC_PER_SEC) {
      RawClient next;
      fail_unless (next.open (s.server.port (), "127.0.0.3"));
      in = next.upgrade ();
      if (!in) {
        fail_unless_equals_int (next.status (), 429);
        g_usleep (20000);
      }
    }
    survived (s, "clients that hung up mid-request", [&] () {
          fail_unless (in, "round %d: the places of clients that hung up "
              "mid-request were still taken after 2 s", round);
        });
  }
  fail_unless_equals_uint64 (metric (s.server,
          "peerjs_connections_refused_total{reason=\"handshake\"}"), 0);
}
GST_END_TEST;

/* One address that connects and drops, again and again, leaves sessions
 * waiting out their grace: they count against --max-per-address with its
 * open connections, so the address holds at most that many sessions (its
 * oldest away ones end) and the server does not fill up for others. A
 * resumed session is counted once, and the count goes with the grace. */
GST_START_TEST (test_away_per_address)
{
  ServerOptions o = hostile_options ();
  o.max_per_address = 3;     /* a, b and survived ()'s client: 127.0.0.1 */
  o.limits.max_sessions = 8;
  o.limits.grace_us = 4 * G_USEC_PER_SEC;
  Scene s (o);
  auto evicted = [&] () {
    return metric (s.server, "peerjs_sessions_evicted_total");
  };
  std::uint64_t evicted_before = evicted ();
  std::vector<std::string> ids, tokens;
  for (int i = 0; i < 20; i++) {
    RawClient hit;
    fail_unless (hit.open (s.server.port (), "127.0.0.4"));
    fail_unless (hit.upgrade (), "connection %d from the attacker was refused",
        i);
    ids.push_back (hit.id);
    tokens.push_back (hit.token);
  }   /* each drops without a close frame: its session is away */
  for (const auto &id : ids)
    wait_offline (s.server, id);
  survived (s, "one address connecting and dropping", [&] () {
        for (std::size_t i = 0; i < ids.size (); i++)
          fail_unless (has_session (s.server, ids[i]) == (i >= ids.size () - 3),
              "attacker's session %zu of %zu: %s", i + 1, ids.size (),
              i >= ids.size () - 3 ? "ended" : "kept");
        fail_unless_equals_uint64 (evicted () - evicted_before, 17);
        RawClient other;
        fail_unless (other.open (s.server.port (), "127.0.0.5"));
        fail_unless (other.upgrade (), "another address was refused: %s",
            other.body ().c_str ());
      });

  /* Resuming one of the three from the same address ends none of the
   * others: the session counts once, as its connection. */
  evicted_before = evicted ();
  {
    RawClient back;
    fail_unless (back.open (s.server.port (), "127.0.0.4"));
    fail_unless (back.upgrade ("/peerjs?resume=" + tokens.back ()));
    assert_str (back.id, ids.back ());
    for (std::size_t i = ids.size () - 3; i < ids.size (); i++)
      fail_unless (has_session (s.server, ids[i]));
    fail_unless_equals_uint64 (evicted (), evicted_before);
  }
  wait_offline (s.server, ids.back ());

  /* Once their grace passed, the address's places are free again. */
  gint64 start = g_get_monotonic_time ();
  while (has_session (s.server, ids.back ())
      && g_get_monotonic_time () - start < 10 * G_USEC_PER_SEC)
    g_usleep (50000);
  fail_if (has_session (s.server, ids.back ()), "the grace did not end");
  std::vector<std::unique_ptr<RawClient>> fresh;
  for (int i = 0; i < 3; i++) {
    fresh.push_back (std::make_unique<RawClient> ());
    fail_unless (fresh.back ()->open (s.server.port (), "127.0.0.4"));
    fail_unless (fresh.back ()->upgrade ());
  }
  fail_unless_equals_uint64 (evicted (), evicted_before);
}
GST_END_TEST;

/* Origin: none and the server's own are accepted, any other is 403
 * unless --allow-origin lists it. */
GST_START_TEST (test_origin)
{
  struct Case
  {
    std::string origin;       /* "": no Origin header */
    guint status;
  };
  auto run = [] (Scene & s, const std::vector<Case> & cases) {
    const std::string own = "127.0.0.1:" + std::to_string (s.server.port ());
    std::string wrong;
    for (const Case & c : cases) {
      std::string origin = c.origin;
      std::size_t at = origin.find ("OWN");
      if (at != std::string::npos)
        origin.replace (at, 3, own);
      RawClient raw;
      fail_unless (raw.open (s.server.port ()));
      raw.upgrade ("/peerjs", origin.empty () ? "" : "Origin: " + origin +
          "\r\n");
      if (raw.status () != c.status)
        wrong += "\n  Origin '" + origin + "': " + std::to_string (raw.status ())
            + ", not " + std::to_string (c.status);
    }
    survived (s, "origins", [&] () {
          fail_unless (wrong.empty (), "origins answered wrongly:%s",
              wrong.c_str ());
        });
  };

  Scene open;
  run (open, {
        {"", 101},
        {"http://OWN", 101},
        {"https://OWN", 101},
        {"http://evil.example", 403},
        {"null", 403},
        {"http://127.0.0.1", 403},
        {"http://OWN.evil.example", 403},
        {"http://evil.example/http://OWN", 403},
        {"http://localhost:" + std::to_string (open.server.port ()), 403},
        {"ws://OWN", 403},
      });
  fail_unless (metric (open.server,
          "peerjs_connections_refused_total{reason=\"origin\"}") >= 7);

  ServerOptions o = hostile_options ();
  o.allow_origins = {"https://app.example", "http://other.example:8080"};
  Scene listed (o);
  run (listed, {
        {"https://app.example", 101},
        {"http://other.example:8080", 101},
        {"http://OWN", 101},
        {"", 101},
        {"http://app.example", 403},
        {"https://app.example.evil.example", 403},
        {"https://app.example:444", 403},
        {"http://other.example", 403},
        {"https://evil.example", 403},
      });

  o.allow_origins = {"*"};
  Scene any (o);
  run (any, {{"https://evil.example", 101}, {"null", 101}, {"", 101}});
}
GST_END_TEST;

/* The rate limit: a flood is refused with `rate-limited` (its callback
 * answered), then the session is closed 4003 and ends; its thread-mates are
 * told. Bytes are limited too. */
GST_START_TEST (test_rate_limit)
{
  Scene s;
  auto flooder = connected (s.server);
  auto mate = connected (s.server);
  join_now (s.server, *flooder, "flood");
  join (*mate, "flood");
  expect (*flooder, "thread:connect", "mate joined");
  const std::string id = flooder->id;
  for (int i = 0; i < 1500; i++)
    flooder->send (J ("{'type':'message','thread':'flood','data':" +
            std::to_string (i) + ",'callback_id':" + std::to_string (i) + "}"));

  survived (s, "a message flood", [&] () {
        int limited = 0;
        while (auto e = flooder->next_of ("error", 1000)) {
          if (e->str ("code") != "rate-limited")
            continue;
          limited++;
          assert_str (e->str ("ref_type"), "message");
          fail_unless (e->num ("callback_response") >= 0);
        }
        /* Refusals up to the burst are answered; the next ends it. */
        fail_unless (limited == 400 || limited == 401, "%d rate-limited "
            "errors", limited);
        fail_unless (flooder->wait_closed (), "the flooder stays connected");
        fail_unless_equals_int (flooder->close_code (), 4003);
        int relayed = 0;
        while (mate->next_of ("message", 300))
          relayed++;
        /* The burst is 400 messages, the flooder's join among them: when
         * the whole flood is read within the 5 ms a token takes to come
         * back, 399 go through. */
        fail_unless (relayed >= 399 && relayed < 1000, "%d relayed", relayed);
        Msg left = expect (*mate, "thread:disconnect",
            "the flooder's session ended");
        assert_str (left.str ("from"), id);
        fail_if (has_session (s.server, id), "the flooder's session was kept");
        fail_unless (metric (s.server, "peerjs_rate_limited_total") > 400);
      });

  /* 64 KiB messages: 1 MiB/s, with a burst of 4 MiB. */
  auto heavy = connected (s.server);
  auto sink = connected (s.server);
  const std::string big (60000, 'b');
  for (int i = 0; i < 100; i++) {
    heavy->send (message_to (sink->id, big));
    /* The sink reads as it goes: its backlog stays under the 4 MiB bound. */
    if (i % 10 == 9) {
      heavy->pump (5);
      sink->pump (5);
    }
  }
  survived (s, "a byte flood", [&] () {
        Msg e = expect (*heavy, "error", "bytes over the limit");
        assert_str (e.str ("code"), "rate-limited");
        assert_str (e.str ("ref_type"), "message");
        int relayed = 0;
        while (sink->next_of ("message", 300))
          relayed++;
        fail_unless (relayed >= 60 && relayed < 100, "%d relayed", relayed);
        heavy->pump (200);
        heavy->send (message_to (sink->id, "small"));
        Msg m = expect (*sink, "message", "a small message after the refill");
        assert_str (m.str ("data"), "small");
      });
}
GST_END_TEST;

namespace {

/* A test key pair for RS256, made for this suite only. */
const char RSA_PRIVATE[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCyLpzGakc71ga9\n"
    "2w20LKeyeuomMq4kV6ZFhspRGW6UCr5wgXNA8VmSr39ome63bxzioHVkCdktQSAM\n"
    "PmRWKEVYJuPH7Xwqdj/AdSnEnhg6HHSbP0XGOxeoLuJaxgNi1fMb2s42vI2flerL\n"
    "yiEEPgpFk8lJgw8GCrJjMEYp1+GQgXnc/0b+gKa+cy3WFcyAMkWMhyjS5KvjgcSS\n"
    "6mB8LqUqzjMlZKkWVfFPI06zijUwjTYCKicUb4gILLGGsTQIDUqJO01QeRQCAVBY\n"
    "M9nTJgWa8ZIzFKGMWuCPU+PypXuClYnJjI8ymbjScRTZWZWPQ32D4U4G3BEVUgv+\n"
    "moqHGpbrAgMBAAECggEADqVOhUVCvKmEyAHjjaM8Ait15+ozg9DhMwbMxhS+kOmU\n"
    "f1/h5CfSZ9WytcYtUnjjbsH8qYU2YNthByXxDl86BUW7uaO3bdq8C8A1oi/SfaL4\n"
    "IgigiMDeWsMbyj/2EvTTX5SWbaEFomVACucphpU+N+YuszL+vvg4cyG1KrGlcetR\n"
    "8AwhoLWW9pq1W8cmm55NUmgX1YT6RRZ4Tsw6qvOHX7hbYe1DkMCL6jgW3PcQYoV4\n"
    "7SWorob8Cc0SrcAWUUWnwqp2+ek8pnOsaefTeyNKsUgdIryJgI8g/q5Te4QI6R1X\n"
    "Zb8Sx/vCYIt/SAnbHo/ndd9WFaRNpuposIdHhcCHNQKBgQDr/2lOU7/UdtTxVN06\n"
    "OvyOTcQgvXdjMi9NDN/BtQ9S4/+wZX6uoTZnqp5MYBsooKegfAnixJj4a3ZpCD6C\n"
    "USceeA7DyMNvx7ON21eKK+KRHvifTI9fnHRXNXz9tKf1jU6/gW8XkYYdtaMs6a5r\n"
    "4VAvUxtY95aSksYG6eubInlORQKBgQDBSL1YD80XDXURLhYjZMcJc1WlMr/x42Z4\n"
    "orZMumyeT1eMEw6ggMryOpDzCWNXen6OW6r4v7lKnFGTCugClwUr7tn5gDjwAKiR\n"
    "N9pygWf6D5Cx0QgkJLNZ9JuG8RS75dnl3WMaexqC5pohNT58Q1Sv/wKdZ2yv2juA\n"
    "ouoBD/T7bwKBgGyP/h1uIVzXnXW3GF3lLLE5zPNStU0IlQHY3kX5yKbVA5Zd2jzz\n"
    "JFfkARYZT+UMopAM/282CTieFsaSaE8CjgBSMliWTnFpaIvlTwvczEj9+lktmvbc\n"
    "vhgwHuOG64zmCEfIfxZUd2HLYNkUVoyCBaT/kiEHJFkg87/Sc/PVlAARAoGACMVi\n"
    "QkLFTcyAiX0L6CNEnPss4chByZpGJidMGoNDNpPnJyYePc5aZ0+dEEpWxbt7Tr5+\n"
    "LbeVkvsxAHk4OhXcWDgIkDfvXYTKIXzlXtjcfQ6DxG317p3zvZtKC3+ZL0Wo87Nu\n"
    "Md9wPox0ZhlicoUjrLDnz3jIB9rhZF8AO3gb5+UCgYAK9dTPlMKOu6SAu5HVKyHP\n"
    "seQLqA2x6Hxzx4o69Ixzkt3yQscRiraXOXRUGtSAqlEZ8wYFie+Ok3IochrQ/xwO\n"
    "OPlsLOJxbn2TCPPrc7A8IHGQW1EVcL/NkYMpMIVAtrMyEbwGOWXqnPunJ2DlfmQY\n"
    "fcbpUvvAO5iZ6ismU0wp2w==\n"
    "-----END PRIVATE KEY-----\n";

const char RSA_PUBLIC[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsi6cxmpHO9YGvdsNtCyn\n"
    "snrqJjKuJFemRYbKURlulAq+cIFzQPFZkq9/aJnut28c4qB1ZAnZLUEgDD5kVihF\n"
    "WCbjx+18KnY/wHUpxJ4YOhx0mz9FxjsXqC7iWsYDYtXzG9rONryNn5Xqy8ohBD4K\n"
    "RZPJSYMPBgqyYzBGKdfhkIF53P9G/oCmvnMt1hXMgDJFjIco0uSr44HEkupgfC6l\n"
    "Ks4zJWSpFlXxTyNOs4o1MI02AionFG+ICCyxhrE0CA1KiTtNUHkUAgFQWDPZ0yYF\n"
    "mvGSMxShjFrgj1Pj8qV7gpWJyYyPMpm40nEU2VmVj0N9g+FOBtwRFVIL/pqKhxqW\n"
    "6wIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

const char HS_SECRET[] = "hostile-suite-secret-0123456789abcdef";

std::string
b64url (std::string_view s)
{
  g_autofree char *b = g_base64_encode (reinterpret_cast<const guchar *>(
          s.data ()), s.size ());
  std::string out;
  for (const char *p = b; *p && *p != '='; p++)
    out += *p == '+' ? '-' : *p == '/' ? '_' : *p;
  return out;
}

std::string
from_now (int seconds)
{
  return std::to_string (g_get_real_time () / G_USEC_PER_SEC + seconds);
}

/* A file holding `contents`, removed with the object. */
struct TempFile
{
  explicit TempFile (const std::string & contents)
  {
    GError *error = nullptr;
    int fd = g_file_open_tmp ("peerjs-hostile-XXXXXX", &path, &error);
    fail_unless (fd >= 0, "%s", error ? error->message : "");
    close (fd);
    fail_unless (g_file_set_contents (path, contents.c_str (), -1, nullptr));
  }
  ~TempFile ()
  {
    g_unlink (path);
    g_free (path);
  }
  char *path = nullptr;
};

/* Upgrades refused with 401, each with the documented header and body:
 * without a token, with an empty one, and with each of `tokens`. The
 * mismatches are listed together. */
void
refused_tokens (Scene & s,
    std::vector<std::pair<const char *, std::string>> tokens)
{
  std::vector<std::pair<const char *, std::string>> targets = {
    {"no token", "/peerjs"}, {"an empty token", "/peerjs?token="}};
  for (const auto &[what, token] : tokens)
    targets.emplace_back (what, "/peerjs?token=" + token);
  std::string wrong;
  for (const auto &[what, target] : targets) {
    RawClient raw;
    fail_unless (raw.open (s.server.port ()));
    raw.upgrade (target);
    g_autofree char *head = g_ascii_strdown (raw.head ().c_str (), -1);
    if (raw.status () != 401)
      wrong += std::string ("\n  ") + what + ": " +
          std::to_string (raw.status ());
    else if (!strstr (head, "\r\nwww-authenticate: bearer "
            "error=\"invalid_token\"")
        || !g_str_has_prefix (raw.body ().c_str (), "peerjs: ")
        || !g_str_has_suffix (raw.body ().c_str (), "\n"))
      wrong += std::string ("\n  ") + what + ": 401 without the documented "
          "header and body: " + raw.head () + raw.body ();
  }
  survived (s, "refused tokens", [&] () {
        fail_unless (wrong.empty (), "tokens not refused as documented:%s",
            wrong.c_str ());
        fail_unless (metric (s.server,
                "peerjs_connections_refused_total{reason=\"token\"}")
            >= targets.size ());
      });
}

}  // namespace

/* HS256: a valid token joins; missing, expired, not yet valid, signed with
 * another key or algorithm, `alg: none`, tampered or malformed tokens get
 * 401. Each grant refused is `forbidden`; `from_name` is the server's. */
GST_START_TEST (test_auth_hs256)
{
  TempFile secret (std::string (HS_SECRET) + "\n");
  ServerOptions o = hostile_options ();
  o.auth_secret_file = secret.path;
  const std::string full = mint_jwt (JWT_ALG_HS256, HS_SECRET,
      "{\"exp\":" + from_now (300) + "}");
  Scene s (o, "token=" + full);

  const std::string claims = "{\"exp\":" + from_now (300) +
      ",\"name\":\"alice\",\"threads\":[\"lobby\",\"pub-*\"],"
      "\"publish\":false,\"files\":false,\"presence\":false}";
  const std::string alice = mint_jwt (JWT_ALG_HS256, HS_SECRET, claims);
  const std::string body = alice.substr (alice.find ('.') + 1,
      alice.rfind ('.') - alice.find ('.') - 1);
  const std::string signature = alice.substr (alice.rfind ('.') + 1);
  const std::string wider = b64url ("{\"exp\":" + from_now (300) + ",\"name\":"
      "\"alice\",\"threads\":[\"*\"]}");
  const std::string none = b64url ("{\"alg\":\"none\",\"typ\":\"JWT\"}");
  const std::string hs = b64url ("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");

  refused_tokens (s, {
        {"expired", mint_jwt (JWT_ALG_HS256, HS_SECRET, "{\"exp\":" +
                  from_now (-60) + "}")},
        {"no exp", mint_jwt (JWT_ALG_HS256, HS_SECRET, "{\"name\":\"x\"}")},
        {"nbf in the future", mint_jwt (JWT_ALG_HS256, HS_SECRET, "{\"exp\":" +
                  from_now (600) + ",\"nbf\":" + from_now (300) + "}")},
        {"another key", mint_jwt (JWT_ALG_HS256,
                  "another-secret-of-32-bytes-or-more", claims)},
        {"HS512 with the right key", mint_jwt (JWT_ALG_HS512, HS_SECRET, claims)},
        {"RS256", mint_jwt (JWT_ALG_RS256, RSA_PRIVATE, claims)},
        {"alg none", none + "." + body + "."},
        {"alg none with the signature kept", none + "." + body + "." +
                  signature},
        {"alg None", b64url ("{\"alg\":\"None\"}") + "." + body + "."},
        {"claims widened, signature kept", hs + "." + wider + "." + signature},
        {"signature cut", alice.substr (0, alice.size () - 2)},
        {"signature of another token", full.substr (0, full.rfind ('.')) + "." +
                  signature},
        {"two parts", hs + "." + body},
        {"four parts", alice + ".x"},
        {"not base64", "!!!.@@@.$$$"},
        {"4 KiB of token", alice + std::string (5000, 'A')},
      });

  auto member = connected (s.server, "token=" + full);
  join_now (s.server, *member, "lobby");
  auto a = connected (s.server, "token=" + alice);
  auto forbidden = [&] (const std::string & json, const char *ref_type) {
    a->send (J (json));
    Msg e = expect (*a, "error", ref_type);
    assert_str (e.str ("code"), "forbidden");
    assert_str (e.str ("ref_type"), ref_type);
  };
  a->send (J ("{'type':'thread:connect','thread':'lobby','constraints':null}"));
  Msg joined = expect (*member, "thread:connect", "a granted thread");
  assert_str (joined.str ("from"), a->id);
  assert_str (joined.str ("from_name"), "alice");
  a->send (J ("{'type':'thread:connect','thread':'pub-1','constraints':{}}"));
  fail_unless (a->quiet (300), "a thread granted by prefix was refused");

  forbidden ("{'type':'thread:connect','thread':'secret','constraints':{}}",
      "thread:connect");
  forbidden ("{'type':'thread:connect','thread':'pub','constraints':{}}",
      "thread:connect");
  forbidden ("{'type':'thread:connect','thread':'lobby',"
      "'constraints':{'video':true}}", "thread:connect");
  forbidden ("{'type':'thread:change','thread':'lobby',"
      "'constraints':{'audio':true}}", "thread:change");
  forbidden ("{'type':'file:offer','thread':'lobby','id':'1','name':'a.txt',"
      "'size':1}", "file:offer");
  forbidden ("{'type':'presence:tag','data':'me'}", "presence:tag");
  forbidden ("{'type':'presence:watch','to':['them']}", "presence:watch");
  fail_unless (member->quiet (200), "a forbidden action reached the thread");

  /* `from_name` comes from the token only. */
  a->send (J ("{'type':'message','thread':'lobby','from_name':'mallory',"
          "'data':1}"));
  Msg named = expect (*member, "message", "alice's message");
  assert_str (named.str ("from_name"), "alice");
  member->send (J ("{'type':'message','to':'" + a->id + "','from_name':'admin',"
          "'data':2}"));
  survived (s, "forbidden actions", [&] () {
        auto m = a->next_of ("message", 1000);
        auto e = member->next_of ("error", 300);
        fail_unless (m || e, "the message with from_name was neither relayed "
            "nor refused");
        fail_unless (!m || !m->has ("from_name"), "a session without a name "
            "set from_name: %s", m->text ().c_str ());
      });
}
GST_END_TEST;

/* RS256 with a public key: a valid token joins; HS256 signed with the
 * public key as its secret (algorithm confusion), `alg: none`, expired and
 * tampered tokens get 401. */
GST_START_TEST (test_auth_public_key)
{
  TempFile key (RSA_PUBLIC);
  ServerOptions o = hostile_options ();
  o.auth_public_key_file = key.path;
  const std::string claims = "{\"exp\":" + from_now (300) + ",\"name\":\"bob\"}";
  const std::string good = mint_jwt (JWT_ALG_RS256, RSA_PRIVATE, claims);
  Scene s (o, "token=" + good);

  const std::string body = good.substr (good.find ('.') + 1,
      good.rfind ('.') - good.find ('.') - 1);
  const std::string signature = good.substr (good.rfind ('.') + 1);
  const std::string rs = b64url ("{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
  refused_tokens (s, {
        {"HS256 signed with the public key", mint_jwt (JWT_ALG_HS256, RSA_PUBLIC,
                  claims)},
        {"HS256 signed with the public key, no newline", mint_jwt (JWT_ALG_HS256,
                  std::string (RSA_PUBLIC, strlen (RSA_PUBLIC) - 1), claims)},
        {"alg none", b64url ("{\"alg\":\"none\"}") + "." + body + "."},
        {"expired", mint_jwt (JWT_ALG_RS256, RSA_PRIVATE, "{\"exp\":" +
                  from_now (-60) + "}")},
        {"claims changed, signature kept", rs + "." + b64url ("{\"exp\":" +
                  from_now (300) + ",\"name\":\"admin\"}") + "." + signature},
        {"signature cut", good.substr (0, good.size () - 4)},
      });

  auto c = connected (s.server, "token=" + good);
  survived (s, "a valid RS256 token", [&] () {
        c->send (message_to (s.a->id, "from bob"));
        Msg m = expect (*s.a, "message", "bob's message");
        assert_str (m.str ("from_name"), "bob");
      });
}
GST_END_TEST;

/* A token that expires ends its session with close 4004 unless the client
 * renewed it with socket:token, verified as at the upgrade. */
GST_START_TEST (test_auth_expiry)
{
  TempFile secret (std::string (HS_SECRET) + "\n");
  ServerOptions o = hostile_options ();
  o.auth_secret_file = secret.path;
  const std::string full = mint_jwt (JWT_ALG_HS256, HS_SECRET,
      "{\"exp\":" + from_now (300) + "}");
  Scene s (o, "token=" + full);

  const std::string soon = from_now (2);
  const std::string short_lived = mint_jwt (JWT_ALG_HS256, HS_SECRET,
      "{\"exp\":" + soon + "}");
  auto member = connected (s.server, "token=" + full);
  join_now (s.server, *member, "lobby");
  auto renewer = connected (s.server, "token=" + short_lived);
  auto lapsing = connected (s.server, "token=" + short_lived);
  assert_str (std::to_string (lapsing->greeting.num ("expires")), soon);
  join_now (s.server, *renewer, "lobby");
  join_now (s.server, *lapsing, "lobby");

  /* A renewal that does not verify changes nothing. */
  renewer->send (J ("{'type':'socket:token','token':'" +
          mint_jwt (JWT_ALG_HS256, "another-secret-of-32-bytes-or-more",
              "{\"exp\":" + from_now (300) + "}") + "'}"));
  Msg e = expect (*renewer, "error", "a renewal with another key");
  assert_str (e.str ("code"), "invalid-token");
  assert_str (e.str ("ref_type"), "socket:token");
  fail_unless (e.str ("message").find ("signature") != std::string::npos,
      "%s", e.text ().c_str ());
  const std::string later = from_now (300);
  renewer->send (J ("{'type':'socket:token','token':'" +
          mint_jwt (JWT_ALG_HS256, HS_SECRET, "{\"exp\":" + later +
              ",\"name\":\"renewed\"}") + "'}"));
  Msg ack = expect (*renewer, "socket:token", "a renewal");
  assert_str (std::to_string (ack.num ("expires")), later);
  assert_str (ack.str ("name"), "renewed");

  /* The unrenewed session ends at its exp, within a tick. */
  gint64 start = g_get_monotonic_time ();
  fail_unless (lapsing->wait_closed (5000), "not closed at its token's exp");
  fail_unless_equals_int (lapsing->close_code (), 4004);
  fail_unless (g_get_monotonic_time () - start < 3500 * 1000);
  Msg gone = expect (*member, "thread:disconnect", "the session ended");
  assert_str (gone.str ("from"), lapsing->id);
  fail_unless_equals_int (metric (s.server, "peerjs_tokens_expired_total"), 1);

  survived (s, "an expiring token", [&] () {
        renewer->send (J ("{'type':'message','thread':'lobby','data':1}"));
        Msg m = expect (*member, "message", "the renewed session");
        assert_str (m.str ("from_name"), "renewed");
      });
}
GST_END_TEST;

static Suite *
hostile_suite (void)
{
  Suite *s = suite_create ("hostile");
  TCase *tc = tcase_create ("hostile");
  tcase_set_timeout (tc, 60);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_protocol_errors);
  tcase_add_test (tc, test_fragments_and_utf8);
  tcase_add_test (tc, test_length_claims);
  tcase_add_test (tc, test_length_wraps_on_continuation);
  tcase_add_test (tc, test_continuation_flood);
  tcase_add_test (tc, test_ping_flood);
  tcase_add_test (tc, test_close_codes);
  tcase_add_test (tc, test_envelope_types);
  tcase_add_test (tc, test_limits);
  tcase_add_test (tc, test_spoofed_from);
  tcase_add_test (tc, test_resume_tokens);
  tcase_add_test (tc, test_resume_last);
  tcase_add_test (tc, test_path_traversal);
  tcase_add_test (tc, test_oversized_headers);
  tcase_add_test (tc, test_refused_upgrades);
  tcase_add_test (tc, test_tls_requests);
  tcase_add_test (tc, test_slowloris);
  tcase_add_test (tc, test_per_address_cap);
  tcase_add_test (tc, test_dropped_mid_handshake);
  tcase_add_test (tc, test_away_per_address);
  tcase_add_test (tc, test_origin);
  tcase_add_test (tc, test_rate_limit);
  tcase_add_test (tc, test_auth_hs256);
  tcase_add_test (tc, test_auth_public_key);
  tcase_add_test (tc, test_auth_expiry);
  return s;
}

GST_CHECK_MAIN (hostile);
