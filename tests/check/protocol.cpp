/* Unit tests for the peerjs wire codec (signalling/protocol/message.h):
 * Message::parse validation and the server-side message builders. */
#include "message.h"
#include "json-text.h"

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace peerjs;
using namespace peerjs::test;

namespace {

const ProtocolLimits kLimits;

/* Parse must succeed. */
Message
ok (const std::string & text, const ProtocolLimits & limits = kLimits)
{
  ProtocolError err {ErrorCode::Limit, ""};
  auto m = Message::parse (text, limits, &err);
  fail_unless (m.has_value (), "rejected (%s: %s): %.200s",
      error_code_name (err.code), err.message.c_str (), text.c_str ());
  return std::move (*m);
}

/* Parse must fail with `code` and a non-empty message. */
void
rejects (const std::string & text, ErrorCode code,
    const ProtocolLimits & limits = kLimits)
{
  ProtocolError err {ErrorCode::ServerFull, ""};
  auto m = Message::parse (text, limits, &err);
  fail_if (m.has_value (), "accepted: %.200s", text.c_str ());
  fail_unless (err.code == code, "expected %s, got %s for %.200s",
      error_code_name (code), error_code_name (err.code), text.c_str ());
  fail_if (err.message.empty (), "no error message for %.200s", text.c_str ());
}

std::string
repeat (char c, std::size_t n)
{
  return std::string (n, c);
}

/* {"type":"t","data":[[...]]} with `depth` levels of nesting in total. */
std::string
nested (unsigned depth)
{
  fail_unless (depth >= 1);
  return "{\"type\":\"t\",\"data\":" + repeat ('[', depth - 1) +
      repeat (']', depth - 1) + "}";
}

}  // namespace

/* ------------------------------------------------------------------ */
/* JSON validity                                                       */

GST_START_TEST (test_parse_minimal)
{
  Message m = ok ("{\"type\":\"message\",\"to\":\"abc\",\"data\":{\"x\":1}}");
  fail_unless (m.has_type ());
  assert_str (m.type ().c_str (), "message");
  fail_unless (m.has_to ());
  fail_unless_equals_int (m.to ().size (), 1);
  assert_str (m.to ()[0].c_str (), "abc");
  fail_if (m.thread ().has_value ());
  fail_if (m.from ().has_value ());
  fail_if (m.callback_id ().has_value ());
  fail_if (m.callback_response ().has_value ());
  fail_if (m.member ("constraints").has_value ());
  fail_unless (m.member ("data").has_value ());
  assert_str (std::string (*m.member ("data")), "{\"x\":1}");

  /* A NULL error pointer is allowed. */
  fail_unless (Message::parse ("{\"type\":\"x\",\"to\":\"a\"}", kLimits,
          nullptr).has_value ());
  fail_if (Message::parse ("nope", kLimits, nullptr).has_value ());
}
GST_END_TEST;

GST_START_TEST (test_parse_bad_json)
{
  for (const char *t : {"", "not json", "{", "{\"type\":", "{\"type\":\"x\",}",
          "{type:\"x\"}", "{\"type\":\"x\"} 1", "{\"type\":\"x\"};",
          "{\"type\":\"x\"}}"})
    rejects (t, ErrorCode::BadJson);
  /* Valid JSON that is not an object. */
  for (const char *t : {"[]", "[{\"type\":\"x\"}]", "\"message\"", "42",
          "null", "true", "1.5"})
    rejects (t, ErrorCode::BadJson);
}
GST_END_TEST;

/* json-glib is lenient: it accepts some texts that are not JSON. The codec
 * checks RFC 8259 itself first. */
GST_START_TEST (test_parse_strict_json)
{
  /* Two concatenated objects: json-glib keeps the first, drops the second. */
  rejects ("{\"type\":\"x\",\"to\":\"a\"} {\"type\":\"y\",\"to\":\"b\"}",
      ErrorCode::BadJson);
  /* Single-quoted strings. */
  rejects ("{'type':'x','to':'a'}", ErrorCode::BadJson);
  /* A JavaScript assignment (JSONP). */
  rejects ("var m = {\"type\":\"x\",\"to\":\"a\"};", ErrorCode::BadJson);
}
GST_END_TEST;

/* A NUL is a control character: not in a name. In data it is relayed
 * intact (json-glib, which ends strings at NUL, no longer decodes it). */
GST_START_TEST (test_parse_nul_in_names)
{
  rejects ("{\"type\":\"m\",\"to\":\"b\\u0000x\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"b\\u0000x\"]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"b\",\"thread\":\"t\\u0000u\"}",
      ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\\u0000n\",\"to\":\"b\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"b\",\"from\":\"a\\u0000z\"}",
      ErrorCode::BadMessage);
  Message m = ok ("{\"type\":\"m\",\"to\":\"b\",\"data\":\"x\\u0000y\"}");
  /* json-glib would cut the decoded string short: look at the text. */
  fail_unless (m.relay_text ("a").find ("\"data\":\"x\\u0000y\"")
      != std::string::npos, "%s", m.relay_text ("a").c_str ());
}
GST_END_TEST;

GST_START_TEST (test_parse_too_large)
{
  /* Exactly max_message_size bytes is fine, one more is too large. */
  std::string head = "{\"type\":\"t\",\"to\":\"a\",\"data\":\"";
  std::string tail = "\"}";
  std::string exact = head + repeat ('x', 65536 - head.size () - tail.size ())
      + tail;
  fail_unless_equals_int (exact.size (), 65536);
  ok (exact);
  std::string over = head + repeat ('x', 65537 - head.size () - tail.size ())
      + tail;
  rejects (over, ErrorCode::TooLarge);

  /* The size is checked before the JSON: garbage that is too big is
   * too-large, not bad-json. */
  rejects (repeat ('?', 70000), ErrorCode::TooLarge);

  /* The limit comes from the ProtocolLimits passed in. */
  ProtocolLimits small;
  small.max_message_size = 32;
  ok ("{\"type\":\"t\",\"to\":\"a\"}", small);
  rejects ("{\"type\":\"t\",\"to\":\"a\",\"data\":\"0123456789\"}",
      ErrorCode::TooLarge, small);
}
GST_END_TEST;

GST_START_TEST (test_parse_depth)
{
  /* 32 levels (the object itself is one) are allowed, 33 are not. */
  ok (nested (32));
  rejects (nested (33), ErrorCode::BadJson);
  /* Objects count as well as arrays. */
  auto objs = [] (unsigned depth) {
    std::string s = "{\"type\":\"t\",\"data\":";
    for (unsigned i = 1; i < depth; i++)
      s += "{\"a\":";
    s += "1";
    for (unsigned i = 0; i < depth; i++)
      s += "}";
    return s;
  };
  ok (objs (32));
  rejects (objs (33), ErrorCode::BadJson);

  /* Brackets inside strings are not nesting. */
  Message m = ok ("{\"type\":\"t\",\"data\":\"" + repeat ('[', 1000) +
      "\\\"" + repeat ('{', 1000) + "\"}");
  fail_unless (m.member ("data").has_value ());

  /* A frame of 64 KiB of '[' is rejected without recursing. */
  rejects (repeat ('[', 65536), ErrorCode::BadJson);
  rejects (repeat ('{', 65536), ErrorCode::BadJson);
  /* Even with a larger size limit: 4 MiB of nesting is refused quickly. */
  ProtocolLimits big;
  big.max_message_size = 4 * 1024 * 1024;
  rejects (repeat ('[', 4 * 1024 * 1024), ErrorCode::BadJson, big);
  /* And the depth limit is configurable. */
  ProtocolLimits shallow;
  shallow.max_depth = 2;
  ok (nested (2), shallow);
  rejects (nested (3), ErrorCode::BadJson, shallow);
}
GST_END_TEST;

/* ------------------------------------------------------------------ */
/* type                                                                */

GST_START_TEST (test_parse_type)
{
  rejects ("{}", ErrorCode::BadMessage);
  rejects ("{\"to\":\"a\",\"data\":1}", ErrorCode::BadMessage);
  rejects ("{\"type\":1,\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":null,\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":true,\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":[\"message\"],\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":{},\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"\",\"to\":\"a\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"a\\u0001b\",\"to\":\"a\"}", ErrorCode::BadMessage);

  /* Up to 64 bytes. */
  Message m = ok ("{\"type\":\"" + repeat ('t', 64) + "\"}");
  fail_unless_equals_int (m.type ().size (), 64);
  rejects ("{\"type\":\"" + repeat ('t', 65) + "\"}", ErrorCode::BadMessage);

  /* A callback reply may omit type; without it has_type() is false. */
  Message reply = ok ("{\"to\":\"a\",\"callback_response\":3,\"data\":\"ok\"}");
  fail_if (reply.has_type ());
  fail_unless (reply.type ().empty ());
  fail_unless (reply.callback_response ().has_value ());
  assert_str (reply.callback_response ()->key.c_str (), "i:3");
  /* ...but a type it does carry is still validated. */
  rejects ("{\"type\":5,\"to\":\"a\",\"callback_response\":3}",
      ErrorCode::BadMessage);
  /* callback_id alone does not make type optional. */
  rejects ("{\"to\":\"a\",\"callback_id\":3}", ErrorCode::BadMessage);
}
GST_END_TEST;

/* A name given twice, however it is spelled, at the top level or in
 * `constraints`: parsers disagree on which counts. */
GST_START_TEST (test_parse_repeated_names)
{
  rejects ("{\"type\":\"message\",\"type\":\"x:other\",\"to\":\"a\"}",
      ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"a\",\"\\u0074ype\":\"x\"}",
      ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"a\",\"x\":1,\"x\":1}",
      ErrorCode::BadMessage);
  rejects ("{\"type\":\"thread:connect\",\"thread\":\"t\",\"constraints\":"
      "{\"audio\":false,\"audio\":true}}", ErrorCode::BadMessage);
  std::string many = "{\"type\":\"m\",\"to\":\"a\"";
  for (int i = 0; i < 40; i++)
    many += ",\"k" + std::to_string (i) + "\":0";
  ok (many + "}");
  rejects (many + ",\"k0\":0}", ErrorCode::BadMessage);
  /* Deeper, in what the server does not read, the clients decide. */
  Message m = ok ("{\"type\":\"m\",\"to\":\"a\",\"data\":{\"x\":1,\"x\":2},"
      "\"constraints\":{\"video\":{\"w\":1,\"w\":2}}}");
  fail_unless (m.shares_media ());
}
GST_END_TEST;

/* ------------------------------------------------------------------ */
/* to                                                                  */

GST_START_TEST (test_parse_to)
{
  Message one = ok ("{\"type\":\"m\",\"to\":\"peer\"}");
  fail_unless (one.has_to ());
  fail_unless (one.to () == std::vector<std::string> {"peer"});

  Message many = ok ("{\"type\":\"m\",\"to\":[\"a\",\"b\",\"a\"]}");
  fail_unless (many.has_to ());
  fail_unless (many.to () == (std::vector<std::string> {"a", "b", "a"}));

  Message none = ok ("{\"type\":\"m\",\"thread\":\"t\"}");
  fail_if (none.has_to ());
  fail_unless (none.to ().empty ());

  rejects ("{\"type\":\"m\",\"to\":1}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":1.5}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":true}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":null}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":{\"id\":\"a\"}}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"\"}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"a\",2]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"a\",null]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"a\",[\"b\"]]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"a\",\"\"]}", ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":\"a\\nb\"}", ErrorCode::BadMessage);

  /* 64 entries are fine, 65 are not. */
  auto list = [] (int n) {
    std::string s = "{\"type\":\"m\",\"to\":[";
    for (int i = 0; i < n; i++)
      s += (i ? ",\"p" : "\"p") + std::to_string (i) + "\"";
    return s + "]}";
  };
  fail_unless_equals_int (ok (list (64)).to ().size (), 64);
  rejects (list (65), ErrorCode::BadMessage);

  /* Entries up to 128 bytes. */
  fail_unless_equals_int (ok ("{\"type\":\"m\",\"to\":\"" + repeat ('n', 128)
          + "\"}").to ()[0].size (), 128);
  rejects ("{\"type\":\"m\",\"to\":\"" + repeat ('n', 129) + "\"}",
      ErrorCode::BadMessage);
  rejects ("{\"type\":\"m\",\"to\":[\"a\",\"" + repeat ('n', 129) + "\"]}",
      ErrorCode::BadMessage);
  /* Multi-byte UTF-8 is counted in bytes: 64 x "é" = 128 bytes ok, 65 not. */
  std::string e64, e65;
  for (int i = 0; i < 64; i++)
    e64 += "\xc3\xa9";
  e65 = e64 + "\xc3\xa9";
  ok ("{\"type\":\"m\",\"to\":\"" + e64 + "\"}");
  rejects ("{\"type\":\"m\",\"to\":\"" + e65 + "\"}", ErrorCode::BadMessage);
}
GST_END_TEST;

/* ------------------------------------------------------------------ */
/* thread, from, constraints                                           */

GST_START_TEST (test_parse_thread_from)
{
  Message m = ok ("{\"type\":\"m\",\"thread\":\"room\",\"from\":\"me\"}");
  fail_unless (m.thread ().has_value ());
  assert_str (m.thread ()->c_str (), "room");
  fail_unless (m.from ().has_value ());
  assert_str (m.from ()->c_str (), "me");

  for (const char *field : {"thread", "from"}) {
    std::string f = field;
    ok ("{\"type\":\"m\",\"" + f + "\":\"" + repeat ('x', 128) + "\"}");
    rejects ("{\"type\":\"m\",\"" + f + "\":\"" + repeat ('x', 129) + "\"}",
        ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":\"\"}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":1}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":null}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":[\"x\"]}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":{}}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":\"a\\tb\"}", ErrorCode::BadMessage);
    rejects ("{\"type\":\"m\",\"" + f + "\":\"a\\u007fb\"}",
        ErrorCode::BadMessage);
  }
}
GST_END_TEST;

GST_START_TEST (test_parse_constraints)
{
  Message obj = ok ("{\"type\":\"thread:connect\",\"thread\":\"t\","
      "\"constraints\":{\"video\":true,\"audio\":false}}");
  assert_str (std::string (*obj.member ("constraints")),
      "{\"video\":true,\"audio\":false}");

  Message null = ok ("{\"type\":\"thread:connect\",\"thread\":\"t\","
      "\"constraints\":null}");
  assert_str (std::string (*null.member ("constraints")), "null");

  Message no = ok ("{\"type\":\"thread:connect\",\"thread\":\"t\","
      "\"constraints\":false}");
  assert_str (std::string (*no.member ("constraints")), "false");

  Message absent = ok ("{\"type\":\"thread:connect\",\"thread\":\"t\"}");
  fail_if (absent.member ("constraints").has_value ());

  for (const char *c : {"true", "0", "1", "1.5", "\"video\"", "\"\"",
          "[]", "[true]"})
    rejects (std::string ("{\"type\":\"thread:connect\",\"thread\":\"t\","
            "\"constraints\":") + c + "}", ErrorCode::BadMessage);
}
GST_END_TEST;

/* ------------------------------------------------------------------ */
/* callback ids                                                        */

GST_START_TEST (test_parse_callbacks)
{
  Message i = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":12}");
  fail_unless (i.callback_id ().has_value ());
  assert_str (i.callback_id ()->key.c_str (), "i:12");
  assert_str (i.callback_id ()->json, "12");

  Message neg = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":-7}");
  assert_str (neg.callback_id ()->key.c_str (), "i:-7");

  Message s = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":\"ab\"}");
  assert_str (s.callback_id ()->key.c_str (), "s:ab");
  assert_str (s.callback_id ()->json, "\"ab\"");
  /* 12 and "12" are different callbacks. */
  Message s12 = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":\"12\"}");
  assert_str (s12.callback_id ()->key.c_str (), "s:12");

  Message r = ok ("{\"to\":\"a\",\"callback_response\":\"" + repeat ('c', 64)
      + "\"}");
  fail_unless (r.callback_response ().has_value ());
  assert_str (r.callback_response ()->key.c_str (),
      ("s:" + repeat ('c', 64)).c_str ());
  Message ri = ok ("{\"to\":\"a\",\"callback_response\":0}");
  assert_str (ri.callback_response ()->key.c_str (), "i:0");

  for (const char *field : {"callback_id", "callback_response"}) {
    std::string pre = std::string ("{\"type\":\"m\",\"to\":\"a\",\"") + field
        + "\":";
    for (const char *v : {"1.5", "1e3", "{}", "{\"id\":1}", "[1]", "true",
            "null"})
      rejects (pre + v + "}", ErrorCode::BadMessage);
    rejects (pre + "\"" + repeat ('c', 65) + "\"}", ErrorCode::BadMessage);
    ok (pre + "\"" + repeat ('c', 64) + "\"}");
  }
}
GST_END_TEST;

/* ------------------------------------------------------------------ */
/* builders                                                            */

GST_START_TEST (test_relay_text)
{
  Message m = ok ("{\"type\":\"offer\",\"to\":[\"b\",\"tag\"],\"thread\":\"t\","
      "\"from\":\"liar\",\"original_to\":\"fake\",\"seq\":99,"
      "\"data\":{\"sdp\":\"v=0\",\"n\":[1,2,3]},\"callback_id\":4,"
      "\"constraints\":{\"video\":true}}");

  JsonText plain (m.relay_text ("real"));
  assert_str (plain.str ("from").c_str (), "real");
  fail_if (plain.has ("original_to"));
  fail_if (plain.has ("seq"));
  assert_str (plain.str ("type").c_str (), "offer");
  assert_str (plain.str ("thread").c_str (), "t");
  fail_unless_equals_int (plain.num ("callback_id"), 4);
  JsonArray *to = json_node_get_array (plain.node ("to"));
  fail_unless_equals_int (json_array_get_length (to), 2);
  assert_str (json_array_get_string_element (to, 0), "b");
  assert_str (json_array_get_string_element (to, 1), "tag");
  JsonObject *data = json_node_get_object (plain.node ("data"));
  assert_str (json_object_get_string_member (data, "sdp"), "v=0");
  fail_unless_equals_int (json_array_get_length (
          json_object_get_array_member (data, "n")), 3);
  fail_unless (json_object_get_boolean_member (json_node_get_object (
              plain.node ("constraints")), "video"));
  /* type, to, thread, data, callback_id, constraints, from */
  fail_unless_equals_int (plain.size (), 7);

  std::string tag = "tag";
  JsonText tagged (m.relay_text ("real", &tag));
  assert_str (tagged.str ("from").c_str (), "real");
  assert_str (tagged.str ("original_to").c_str (), "tag");
  fail_if (tagged.has ("seq"));
  fail_unless_equals_int (tagged.size (), 8);

  /* The same message relays again with other values, unchanged by the
   * first relay. */
  std::string other = "other";
  JsonText again (m.relay_text ("second", &other));
  assert_str (again.str ("from").c_str (), "second");
  assert_str (again.str ("original_to").c_str (), "other");
  JsonText plain2 (m.relay_text ("third"));
  fail_if (plain2.has ("original_to"));
  assert_str (plain2.str ("from").c_str (), "third");

  /* A message without from gets one. */
  Message bare = ok ("{\"type\":\"m\",\"to\":\"b\"}");
  JsonText b (bare.relay_text ("x"));
  assert_str (b.str ("from").c_str (), "x");
  fail_unless_equals_int (b.size (), 3);
}
GST_END_TEST;

GST_START_TEST (test_with_seq)
{
  assert_str (with_seq (7, "{\"a\":1}").c_str (),
      "{\"seq\":7,\"a\":1}");
  assert_str (with_seq (7, "{}").c_str (), "{\"seq\":7}");
  assert_str (with_seq (1, "{\"type\":\"x\",\"b\":[1]}").c_str (),
      "{\"seq\":1,\"type\":\"x\",\"b\":[1]}");
  assert_str (with_seq (G_GUINT64_CONSTANT (18446744073709551615),
          "{}").c_str (), "{\"seq\":18446744073709551615}");

  /* The result of a builder stays valid JSON with seq first. */
  JsonText o (with_seq (42, socket_disconnect_text ("abc")));
  fail_unless_equals_int (o.num ("seq"), 42);
  assert_str (o.str ("type").c_str (), "socket:disconnect");
  GList *members = json_object_get_members (o.obj ());
  assert_str ((const char *) members->data, "seq");
  g_list_free (members);
}
GST_END_TEST;

GST_START_TEST (test_error_code_names)
{
  const std::vector<std::pair<ErrorCode, const char *>> names = {
    {ErrorCode::BadJson, "bad-json"},
    {ErrorCode::TooLarge, "too-large"},
    {ErrorCode::BadMessage, "bad-message"},
    {ErrorCode::UnknownType, "unknown-type"},
    {ErrorCode::SpoofedFrom, "spoofed-from"},
    {ErrorCode::NotMember, "not-member"},
    {ErrorCode::UnknownRecipient, "unknown-recipient"},
    {ErrorCode::Limit, "limit"},
    {ErrorCode::QueueFull, "queue-full"},
    {ErrorCode::UnknownCallback, "unknown-callback"},
    {ErrorCode::CallbackExpired, "callback-expired"},
    {ErrorCode::BadToken, "bad-token"},
    {ErrorCode::ServerFull, "server-full"},
  };
  for (const auto &[code, name] : names)
    assert_str (error_code_name (code), name);
}
GST_END_TEST;

GST_START_TEST (test_error_text)
{
  JsonText plain (error_text (ErrorCode::NotMember, "not in thread 't'"));
  assert_str (plain.str ("type").c_str (), "error");
  assert_str (plain.str ("code").c_str (), "not-member");
  assert_str (plain.str ("message").c_str (), "not in thread 't'");
  fail_if (plain.has ("callback_response"));
  fail_if (plain.has ("seq"));
  fail_if (plain.has ("ref_type"));

  /* The callback id comes back with its JSON type. */
  Message mi = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":17}");
  JsonText ei (error_text (ErrorCode::UnknownRecipient, "x", &*mi.callback_id ()));
  assert_str (ei.str ("code").c_str (), "unknown-recipient");
  fail_unless_equals_int (ei.vtype ("callback_response"), G_TYPE_INT64);
  fail_unless_equals_int (ei.num ("callback_response"), 17);

  Message ms = ok ("{\"type\":\"m\",\"to\":\"a\",\"callback_id\":\"17\"}");
  JsonText es (error_text (ErrorCode::Limit, "y", &*ms.callback_id (), "m"));
  assert_str (es.str ("code").c_str (), "limit");
  assert_str (es.str ("callback_response").c_str (), "17");
  assert_str (es.str ("ref_type").c_str (), "m");
  fail_if (es.has ("thread"));

  /* The refused message's thread, when it had one. */
  JsonText et (error_text (ErrorCode::Forbidden, "z", nullptr,
          "thread:connect", "lobby"));
  assert_str (et.str ("thread"), "lobby");
  assert_str (et.str ("ref_type"), "thread:connect");
  assert_str (et.str ("code"), "forbidden");

  /* Characters that need escaping survive. */
  JsonText esc (error_text (ErrorCode::BadJson, "quote \" backslash \\ newline \n"));
  assert_str (esc.str ("message").c_str (),
      "quote \" backslash \\ newline \n");
  assert_str (esc.str ("code").c_str (), "bad-json");
}
GST_END_TEST;

GST_START_TEST (test_disconnect_texts)
{
  JsonText t (thread_disconnect_text ("room", "abc"));
  assert_str (t.str ("type").c_str (), "thread:disconnect");
  assert_str (t.str ("thread").c_str (), "room");
  assert_str (t.str ("from").c_str (), "abc");
  fail_unless_equals_int (t.size (), 3);

  JsonText s (socket_disconnect_text ("abc"));
  assert_str (s.str ("type").c_str (), "socket:disconnect");
  assert_str (s.str ("from").c_str (), "abc");
  fail_unless_equals_int (s.size (), 2);

  /* Names are escaped, not pasted. */
  JsonText q (thread_disconnect_text ("a\"b", "c\\d"));
  assert_str (q.str ("thread").c_str (), "a\"b");
  assert_str (q.str ("from").c_str (), "c\\d");
}
GST_END_TEST;

GST_START_TEST (test_greeting_text)
{
  Greeting g;
  g.id = "0123456789abcdef";
  g.token = "0123456789abcdef.sig";
  g.resumed = true;
  g.missed = 3;
  g.grace_seconds = 30;
  g.ping_interval_seconds = 2.5;
  g.max_message_size = 65536;
  JsonText o (greeting_text (g));
  assert_str (o.str ("type").c_str (), "socket:connect");
  assert_str (o.str ("id").c_str (), "0123456789abcdef");
  assert_str (o.str ("to").c_str (), "0123456789abcdef");
  assert_str (o.str ("from").c_str (), "0123456789abcdef");
  assert_str (o.str ("token").c_str (), "0123456789abcdef.sig");
  fail_unless (o.boolean ("resumed"));
  fail_unless_equals_int (o.num ("missed"), 3);
  fail_unless_equals_float (o.dbl ("grace"), 30.0);
  fail_unless_equals_float (o.dbl ("ping_interval"), 2.5);
  fail_unless_equals_int (o.num ("max_message_size"), 65536);
  fail_if (o.has ("seq"));

  Greeting fresh;
  fresh.id = "x";
  JsonText f (greeting_text (fresh));
  fail_if (f.boolean ("resumed"));
  fail_unless_equals_int (f.num ("missed"), 0);
  assert_str (f.str ("token").c_str (), "");
  fail_if (f.has ("expires"));
  fresh.expires = 1900000000;
  fail_unless_equals_int (JsonText (greeting_text (fresh)).num ("expires"),
      1900000000);

  JsonText r (token_renewed_text (1900000000, "al\"ice"));
  assert_str (r.str ("type"), "socket:token");
  fail_unless_equals_int (r.num ("expires"), 1900000000);
  assert_str (r.str ("name"), "al\"ice");
  JsonText open (token_renewed_text (0, ""));
  fail_unless_equals_int (open.size (), 1);
}
GST_END_TEST;

GST_START_TEST (test_valid_name)
{
  fail_unless (valid_name ("a", 128));
  fail_unless (valid_name (repeat ('a', 128), 128));
  fail_if (valid_name (repeat ('a', 129), 128));
  fail_if (valid_name ("", 128));
  fail_if (valid_name ("a\x01", 128));
  fail_if (valid_name ("a\x7f", 128));
  fail_if (valid_name (std::string ("a\0b", 3), 128));
  fail_if (valid_name ("\xff\xfe", 128));      /* not UTF-8 */
  fail_unless (valid_name ("caf\xc3\xa9 bar", 128));
}
GST_END_TEST;

static Suite *
protocol_suite (void)
{
  Suite *s = suite_create ("protocol");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_parse_minimal);
  tcase_add_test (tc, test_parse_bad_json);
  tcase_add_test (tc, test_parse_strict_json);
  tcase_add_test (tc, test_parse_nul_in_names);
  tcase_add_test (tc, test_parse_too_large);
  tcase_add_test (tc, test_parse_depth);
  tcase_add_test (tc, test_parse_type);
  tcase_add_test (tc, test_parse_to);
  tcase_add_test (tc, test_parse_thread_from);
  tcase_add_test (tc, test_parse_constraints);
  tcase_add_test (tc, test_parse_callbacks);
  tcase_add_test (tc, test_relay_text);
  tcase_add_test (tc, test_with_seq);
  tcase_add_test (tc, test_error_code_names);
  tcase_add_test (tc, test_error_text);
  tcase_add_test (tc, test_parse_repeated_names);
  tcase_add_test (tc, test_disconnect_texts);
  tcase_add_test (tc, test_greeting_text);
  tcase_add_test (tc, test_valid_name);
  return s;
}

GST_CHECK_MAIN (protocol);
