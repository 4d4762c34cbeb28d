#include "message.h"

#include <cstring>

namespace peerjs {

JsonNodePtr
adopt_node (JsonNode * node)
{
  return JsonNodePtr (node, [] (JsonNode * n) {
        if (n)
          json_node_unref (n);
      });
}

JsonNodePtr
share_node (JsonNode * node)
{
  return adopt_node (node ? json_node_ref (node) : nullptr);
}

const char *
error_code_name (ErrorCode code)
{
  switch (code) {
    case ErrorCode::BadJson: return "bad-json";
    case ErrorCode::TooLarge: return "too-large";
    case ErrorCode::BadMessage: return "bad-message";
    case ErrorCode::UnknownType: return "unknown-type";
    case ErrorCode::SpoofedFrom: return "spoofed-from";
    case ErrorCode::NotMember: return "not-member";
    case ErrorCode::UnknownRecipient: return "unknown-recipient";
    case ErrorCode::Limit: return "limit";
    case ErrorCode::QueueFull: return "queue-full";
    case ErrorCode::UnknownCallback: return "unknown-callback";
    case ErrorCode::CallbackExpired: return "callback-expired";
    case ErrorCode::BadToken: return "bad-token";
    case ErrorCode::ServerFull: return "server-full";
  }
  return "unknown";
}

bool
valid_name (std::string_view s, std::size_t max)
{
  if (s.empty () || s.size () > max)
    return false;
  if (!g_utf8_validate (s.data (), s.size (), nullptr))
    return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f)
      return false;
  return true;
}

namespace {

/* json-glib 1.6 is lenient (single quotes, trailing text, `var x = {}`)
 * and parses recursively, so a 64 KiB frame of '[' would recurse 64k deep.
 * Every text is first checked against RFC 8259, with nesting bounded.
 * json-glib also ends strings at U+0000, which would corrupt what is
 * relayed, so \u0000 is refused. */
class StrictJson
{
public:
  StrictJson (std::string_view text, unsigned max_depth)
    : p_ (text.data ()), end_ (text.data () + text.size ()), max_depth_ (max_depth) { }

  bool check (std::string & why)
  {
    ws ();
    bool ok = value (0) && (ws (), p_ == end_ || fail ("text after the JSON value"));
    why = why_;
    return ok;
  }

private:
  bool fail (const char *why)
  {
    if (why_.empty ())
      why_ = why;
    return false;
  }
  void ws ()
  {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      p_++;
  }
  bool lit (const char *word)
  {
    std::size_t n = std::strlen (word);
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp (p_, word, n) != 0)
      return fail ("invalid JSON value");
    p_ += n;
    return true;
  }
  bool digits ()
  {
    const char *start = p_;
    while (p_ < end_ && g_ascii_isdigit (*p_))
      p_++;
    return p_ > start || fail ("invalid JSON number");
  }
  bool number ()
  {
    if (p_ < end_ && *p_ == '-')
      p_++;
    if (p_ < end_ && *p_ == '0')
      p_++;
    else if (!(p_ < end_ && g_ascii_isdigit (*p_)) || !digits ())
      return fail ("invalid JSON number");
    if (p_ < end_ && *p_ == '.') {
      p_++;
      if (!digits ())
        return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      p_++;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-'))
        p_++;
      if (!digits ())
        return false;
    }
    return true;
  }
  bool string ()
  {
    p_++;   /* opening quote */
    while (p_ < end_) {
      unsigned char c = *p_++;
      if (c == '"')
        return true;
      if (c < 0x20)
        return fail ("control character inside a JSON string");
      if (c != '\\')
        continue;
      if (p_ == end_)
        break;
      char e = *p_++;
      if (e == 'u') {
        if (end_ - p_ < 4)
          break;
        for (int i = 0; i < 4; i++)
          if (!g_ascii_isxdigit (p_[i]))
            return fail ("invalid \\u escape");
        if (std::memcmp (p_, "0000", 4) == 0)
          return fail ("\\u0000 is not accepted in strings");
        p_ += 4;
      } else if (!std::strchr ("\"\\/bfnrt", e) || e == '\0') {
        return fail ("invalid escape in a JSON string");
      }
    }
    return fail ("unterminated JSON string");
  }
  bool value (unsigned depth)
  {
    if (p_ == end_)
      return fail ("truncated JSON");
    switch (*p_) {
      case '{':
      case '[':
        return container (depth + 1);
      case '"':
        return string ();
      case 't':
        return lit ("true");
      case 'f':
        return lit ("false");
      case 'n':
        return lit ("null");
      default:
        return number ();
    }
  }
  bool container (unsigned depth)
  {
    if (depth > max_depth_)
      return fail ("JSON nested too deeply");
    bool object = *p_++ == '{';
    char close = object ? '}' : ']';
    ws ();
    if (p_ < end_ && *p_ == close) {
      p_++;
      return true;
    }
    for (;;) {
      if (object) {
        if (p_ == end_ || *p_ != '"' || !string ())
          return fail ("object member names must be strings");
        ws ();
        if (p_ == end_ || *p_++ != ':')
          return fail ("':' expected in a JSON object");
        ws ();
      }
      if (!value (depth))
        return false;
      ws ();
      if (p_ == end_)
        return fail ("truncated JSON");
      char c = *p_++;
      if (c == close)
        return true;
      if (c != ',')
        return fail (object ? "',' or '}' expected" : "',' or ']' expected");
      ws ();
    }
  }

  const char *p_;
  const char *end_;
  unsigned max_depth_;
  std::string why_;
};

bool
fail (ProtocolError * error, ErrorCode code, std::string message)
{
  if (error) {
    error->code = code;
    error->message = std::move (message);
  }
  return false;
}

bool
read_callback_ref (JsonObject * obj, const char *field,
    const ProtocolLimits & limits, std::optional<CallbackRef> & out,
    ProtocolError * error)
{
  JsonNode *node = json_object_get_member (obj, field);
  if (!node)
    return true;
  if (JSON_NODE_HOLDS_VALUE (node)) {
    GType t = json_node_get_value_type (node);
    if (t == G_TYPE_INT64) {
      out = CallbackRef {"i:" + std::to_string (json_node_get_int (node)),
        share_node (node)};
      return true;
    }
    if (t == G_TYPE_STRING) {
      const char *s = json_node_get_string (node);
      if (std::strlen (s) <= limits.max_callback_id_length) {
        out = CallbackRef {std::string ("s:") + s, share_node (node)};
        return true;
      }
    }
  }
  return fail (error, ErrorCode::BadMessage, std::string ("field '") + field +
      "' must be an integer or a string of at most " +
      std::to_string (limits.max_callback_id_length) + " bytes");
}

bool
read_name (JsonObject * obj, const char *field, std::size_t max,
    std::optional<std::string> & out, ProtocolError * error)
{
  JsonNode *node = json_object_get_member (obj, field);
  if (!node)
    return true;
  if (JSON_NODE_HOLDS_VALUE (node)
      && json_node_get_value_type (node) == G_TYPE_STRING) {
    const char *s = json_node_get_string (node);
    if (valid_name (s, max)) {
      out = s;
      return true;
    }
  }
  return fail (error, ErrorCode::BadMessage, std::string ("field '") + field +
      "' must be a string of 1 to " + std::to_string (max) +
      " bytes without control characters");
}

}  // namespace

std::optional<Message>
Message::parse (std::string_view text, const ProtocolLimits & limits,
    ProtocolError * error)
{
  if (text.size () > limits.max_message_size) {
    fail (error, ErrorCode::TooLarge, "message of " +
        std::to_string (text.size ()) + " bytes exceeds the limit of " +
        std::to_string (limits.max_message_size));
    return std::nullopt;
  }
  if (!g_utf8_validate (text.data (), text.size (), nullptr)) {
    fail (error, ErrorCode::BadJson, "the text is not valid UTF-8");
    return std::nullopt;
  }
  std::string why;
  if (!StrictJson (text, limits.max_depth).check (why)) {
    if (why == "JSON nested too deeply")
      why += " (more than " + std::to_string (limits.max_depth) + " levels)";
    fail (error, ErrorCode::BadJson, "invalid JSON: " + why);
    return std::nullopt;
  }

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) err = nullptr;
  if (!json_parser_load_from_data (parser, text.data (), text.size (), &err)) {
    fail (error, ErrorCode::BadJson, std::string ("invalid JSON: ") +
        err->message);
    return std::nullopt;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    fail (error, ErrorCode::BadJson, "a message must be a JSON object");
    return std::nullopt;
  }

  Message m;
  m.root_ = share_node (root);
  JsonObject *obj = json_node_get_object (root);

  std::optional<std::string> type;
  if (!read_name (obj, "type", limits.max_type_length, type, error)
      || !read_name (obj, "thread", limits.max_name_length, m.thread_, error)
      || !read_name (obj, "from", limits.max_name_length, m.from_, error)
      || !read_callback_ref (obj, "callback_id", limits, m.callback_id_, error)
      || !read_callback_ref (obj, "callback_response", limits,
          m.callback_response_, error))
    return std::nullopt;
  if (type)
    m.type_ = *type;
  if (!type && !m.callback_response_) {
    fail (error, ErrorCode::BadMessage,
        "field 'type' is required (only a callback reply may omit it)");
    return std::nullopt;
  }

  if (JsonNode *to = json_object_get_member (obj, "to")) {
    m.has_to_ = true;
    auto bad_to = [&] () {
      return fail (error, ErrorCode::BadMessage, "field 'to' must be a "
          "session id or tag, or an array of 1 to " +
          std::to_string (limits.max_to_entries) + " of them, each 1 to " +
          std::to_string (limits.max_name_length) + " bytes");
    };
    if (JSON_NODE_HOLDS_VALUE (to)
        && json_node_get_value_type (to) == G_TYPE_STRING) {
      const char *s = json_node_get_string (to);
      if (!valid_name (s, limits.max_name_length)) {
        bad_to ();
        return std::nullopt;
      }
      m.to_.emplace_back (s);
    } else if (JSON_NODE_HOLDS_ARRAY (to)) {
      JsonArray *arr = json_node_get_array (to);
      guint n = json_array_get_length (arr);
      if (n == 0 || n > limits.max_to_entries) {
        bad_to ();
        return std::nullopt;
      }
      for (guint i = 0; i < n; i++) {
        JsonNode *e = json_array_get_element (arr, i);
        if (!JSON_NODE_HOLDS_VALUE (e)
            || json_node_get_value_type (e) != G_TYPE_STRING
            || !valid_name (json_node_get_string (e), limits.max_name_length)) {
          bad_to ();
          return std::nullopt;
        }
        m.to_.emplace_back (json_node_get_string (e));
      }
    } else {
      bad_to ();
      return std::nullopt;
    }
  }

  if (JsonNode *c = json_object_get_member (obj, "constraints")) {
    bool ok = JSON_NODE_HOLDS_OBJECT (c) || JSON_NODE_HOLDS_NULL (c)
        || (JSON_NODE_HOLDS_VALUE (c)
        && json_node_get_value_type (c) == G_TYPE_BOOLEAN
        && !json_node_get_boolean (c));
    if (!ok) {
      fail (error, ErrorCode::BadMessage,
          "field 'constraints' must be an object, null or false");
      return std::nullopt;
    }
  }
  return m;
}

JsonNode *
Message::constraints () const
{
  return json_object_get_member (object (), "constraints");
}

JsonNode *
Message::data () const
{
  return json_object_get_member (object (), "data");
}

std::string
Message::relay_text (const std::string & from,
    const std::string * original_to) const
{
  /* Copy the members into a fresh object rather than mutate the parsed one:
   * the same Message may be relayed under several `original_to` values. */
  g_autoptr (JsonObject) out = json_object_new ();
  JsonObject *in = object ();
  g_autoptr (GList) members = json_object_get_members (in);
  for (GList * l = members; l; l = l->next) {
    const char *name = static_cast<const char *>(l->data);
    if (!strcmp (name, "from") || !strcmp (name, "original_to")
        || !strcmp (name, "seq"))
      continue;
    json_object_set_member (out, name,
        json_node_ref (json_object_get_member (in, name)));
  }
  json_object_set_string_member (out, "from", from.c_str ());
  if (original_to)
    json_object_set_string_member (out, "original_to", original_to->c_str ());
  g_autoptr (JsonNode) node = json_node_init_object (json_node_alloc (), out);
  return to_json (node);
}

std::string
to_json (JsonNode * node)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, node);
  gsize len = 0;
  g_autofree char *s = json_generator_to_data (gen, &len);
  return std::string (s, len);
}

namespace {

std::string
builder_text (JsonBuilder * b)
{
  g_autoptr (JsonNode) node = json_builder_get_root (b);
  return to_json (node);
}

}  // namespace

std::string
error_text (ErrorCode code, std::string_view message,
    const CallbackRef * callback_response, std::string_view ref_type)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "error");
  json_builder_set_member_name (b, "code");
  json_builder_add_string_value (b, error_code_name (code));
  json_builder_set_member_name (b, "message");
  json_builder_add_string_value (b, std::string (message).c_str ());
  if (!ref_type.empty ()) {
    json_builder_set_member_name (b, "ref_type");
    json_builder_add_string_value (b, std::string (ref_type).c_str ());
  }
  if (callback_response && callback_response->node) {
    json_builder_set_member_name (b, "callback_response");
    json_builder_add_value (b, json_node_copy (callback_response->node.get ()));
  }
  json_builder_end_object (b);
  return builder_text (b);
}

/* An object of string members, in the order given. */
std::string
strings_text (std::initializer_list<std::pair<const char *, std::string>> members)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  for (const auto &[name, value] : members) {
    json_builder_set_member_name (b, name);
    json_builder_add_string_value (b, value.c_str ());
  }
  json_builder_end_object (b);
  return builder_text (b);
}

std::string
thread_disconnect_text (const std::string & thread, const std::string & from)
{
  return strings_text ({{"type", "thread:disconnect"}, {"thread", thread},
      {"from", from}});
}

std::string
socket_disconnect_text (const std::string & from)
{
  return strings_text ({{"type", "socket:disconnect"}, {"from", from}});
}

std::string
greeting_text (const Greeting & g)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, "socket:connect");
  /* id, to and from all carry the session id, as the original's did. */
  for (const char *field : {"id", "to", "from"}) {
    json_builder_set_member_name (b, field);
    json_builder_add_string_value (b, g.id.c_str ());
  }
  json_builder_set_member_name (b, "token");
  json_builder_add_string_value (b, g.token.c_str ());
  json_builder_set_member_name (b, "resumed");
  json_builder_add_boolean_value (b, g.resumed);
  json_builder_set_member_name (b, "missed");
  json_builder_add_int_value (b, (gint64) g.missed);
  json_builder_set_member_name (b, "grace");
  json_builder_add_double_value (b, g.grace_seconds);
  json_builder_set_member_name (b, "ping_interval");
  json_builder_add_double_value (b, g.ping_interval_seconds);
  json_builder_set_member_name (b, "max_message_size");
  json_builder_add_int_value (b, (gint64) g.max_message_size);
  json_builder_end_object (b);
  return builder_text (b);
}

std::string
with_seq (std::uint64_t seq, std::string_view text)
{
  std::string out = "{\"seq\":" + std::to_string (seq);
  /* text is "{...}" or "{}" */
  std::string_view rest = text.substr (1);
  if (rest != "}")
    out += ',';
  out.append (rest);
  return out;
}

}  // namespace peerjs
