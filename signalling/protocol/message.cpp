#include "message.h"

#include <glib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>

namespace peerjs {

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
    case ErrorCode::Forbidden: return "forbidden";
    case ErrorCode::RateLimited: return "rate-limited";
    case ErrorCode::NoSharedThread: return "no-shared-thread";
    case ErrorCode::InvalidToken: return "invalid-token";
  }
  return "unknown";
}

namespace {

/* Most frames are ASCII: check eight bytes at a time before asking for a
 * full UTF-8 validation. */
bool
valid_utf8 (std::string_view s)
{
  std::size_t i = 0;
  for (; i + 8 <= s.size (); i += 8) {
    std::uint64_t v;
    std::memcpy (&v, s.data () + i, 8);
    if (v & 0x8080808080808080ULL)
      return g_utf8_validate (s.data () + i, s.size () - i, nullptr);
  }
  for (; i < s.size (); i++)
    if (static_cast<unsigned char>(s[i]) & 0x80)
      return g_utf8_validate (s.data () + i, s.size () - i, nullptr);
  return true;
}

/* Bytes that stand for themselves inside a JSON string. */
struct PlainBytes
{
  bool plain[256];
  constexpr PlainBytes () : plain ()
  {
    for (int c = 0; c < 256; c++)
      plain[c] = c >= 0x20 && c != '"' && c != '\\';
  }
};
constexpr PlainBytes kPlain;

}  // namespace

bool
valid_name (std::string_view s, std::size_t max)
{
  if (s.empty () || s.size () > max)
    return false;
  if (!valid_utf8 (s))
    return false;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f)
      return false;
  return true;
}

/* A strict RFC 8259 reader over text already known to be UTF-8. It checks
 * the grammar with bounded nesting and reports where the top-level members
 * are; string contents are decoded only when asked for. */
class Scanner
{
public:
  Scanner (std::string_view text, unsigned max_depth)
    : s_ (text.data ()), n_ (text.size ()), max_depth_ (max_depth) { }

  const std::string & why () const { return why_; }

  bool top_object (std::vector<Message::Member> & members)
  {
    ws ();
    if (p_ == n_ || s_[p_] != '{')
      return fail ("a message must be a JSON object");
    p_++;
    ws ();
    if (p_ < n_ && s_[p_] == '}') {
      p_++;
    } else {
      for (;;) {
        if (p_ == n_ || s_[p_] != '"')
          return fail ("object member names must be strings");
        std::size_t kstart = p_;
        bool escaped = false;
        if (!string (&escaped))
          return false;
        std::string key;
        if (escaped)
          decode (std::string_view (s_ + kstart, p_ - kstart), key);
        else
          key.assign (s_ + kstart + 1, p_ - kstart - 2);
        ws ();
        if (p_ == n_ || s_[p_++] != ':')
          return fail ("':' expected in a JSON object");
        ws ();
        std::size_t vstart = p_;
        if (!value (1))
          return false;
        members.push_back (Message::Member {std::move (key), kstart, vstart, p_});
        ws ();
        if (p_ == n_)
          return fail ("truncated JSON");
        char c = s_[p_++];
        if (c == '}')
          break;
        if (c != ',')
          return fail ("',' or '}' expected");
        ws ();
      }
    }
    ws ();
    return p_ == n_ || fail ("text after the JSON value");
  }

  /* The first name that occurs twice among `members`, or null. Parsers
   * disagree on a repeated name (the first or the last counts, or both are
   * seen), so a message that has one could be read one way here and another
   * way by a client: it is refused instead. */
  static const std::string *repeated_name (
      const std::vector<Message::Member> & members)
  {
    std::size_t n = members.size ();
    if (n <= 16) {
      /* Envelopes are small: no allocation for them. */
      for (std::size_t i = 1; i < n; i++)
        for (std::size_t j = 0; j < i; j++)
          if (members[i].key == members[j].key)
            return &members[i].key;
      return nullptr;
    }
    /* Open addressing over the members' indices: one allocation. */
    std::size_t size = 64;
    while (size < 2 * n)
      size *= 2;
    std::vector<std::uint32_t> slots (size, 0);   /* index + 1; 0: empty */
    std::hash<std::string_view> hash;
    for (std::size_t i = 0; i < n; i++) {
      const std::string & key = members[i].key;
      for (std::size_t h = hash (key) & (size - 1);; h = (h + 1) & (size - 1)) {
        if (!slots[h]) {
          slots[h] = static_cast<std::uint32_t>(i + 1);
          break;
        }
        if (members[slots[h] - 1].key == key)
          return &key;
      }
    }
    return nullptr;
  }

  /* `lit` is a validated string literal, quotes included. */
  static void decode (std::string_view lit, std::string & out)
  {
    out.clear ();
    const char *p = lit.data () + 1;
    const char *end = lit.data () + lit.size () - 1;
    while (p < end) {
      const char *q = static_cast<const char *>(std::memchr (p, '\\', end - p));
      if (!q) {
        out.append (p, end - p);
        break;
      }
      out.append (p, q - p);
      p = q + 1;
      char e = *p++;
      switch (e) {
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          gunichar c = hex4 (p);
          p += 4;
          if (c >= 0xd800 && c <= 0xdbff) {
            gunichar low = hex4 (p + 2);
            p += 6;
            c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
          }
          char buf[6];
          out.append (buf, g_unichar_to_utf8 (c, buf));
          break;
        }
        default: out += e; break;   /* " \ / */
      }
    }
  }

  /* `json` is a validated value: true if it is an array of strings. */
  static bool string_array (std::string_view json, std::vector<std::string> & out)
  {
    Scanner sc (json, 1);
    if (json.empty () || json[0] != '[')
      return false;
    sc.p_ = 1;
    sc.ws ();
    if (sc.p_ < sc.n_ && json[sc.p_] == ']')
      return true;
    for (;;) {
      if (sc.p_ == sc.n_ || json[sc.p_] != '"')
        return false;
      std::size_t start = sc.p_;
      sc.string (nullptr);
      out.emplace_back ();
      decode (json.substr (start, sc.p_ - start), out.back ());
      sc.ws ();
      char c = json[sc.p_++];
      if (c == ']')
        return true;
      sc.ws ();
    }
  }

private:
  static gunichar hex4 (const char *p)
  {
    gunichar v = 0;
    for (int i = 0; i < 4; i++)
      v = (v << 4) | g_ascii_xdigit_value (p[i]);
    return v;
  }

  bool fail (const char *why)
  {
    if (why_.empty ())
      why_ = why;
    return false;
  }

  void ws ()
  {
    while (p_ < n_ && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n'
            || s_[p_] == '\r'))
      p_++;
  }

  bool lit (const char *word)
  {
    std::size_t len = std::strlen (word);
    if (n_ - p_ < len || std::memcmp (s_ + p_, word, len) != 0)
      return fail ("invalid JSON value");
    p_ += len;
    return true;
  }

  bool digits ()
  {
    std::size_t start = p_;
    while (p_ < n_ && g_ascii_isdigit (s_[p_]))
      p_++;
    return p_ > start || fail ("invalid JSON number");
  }

  bool number ()
  {
    if (p_ < n_ && s_[p_] == '-')
      p_++;
    if (p_ < n_ && s_[p_] == '0')
      p_++;
    else if (!(p_ < n_ && g_ascii_isdigit (s_[p_])) || !digits ())
      return fail ("invalid JSON value");
    if (p_ < n_ && s_[p_] == '.') {
      p_++;
      if (!digits ())
        return false;
    }
    if (p_ < n_ && (s_[p_] == 'e' || s_[p_] == 'E')) {
      p_++;
      if (p_ < n_ && (s_[p_] == '+' || s_[p_] == '-'))
        p_++;
      if (!digits ())
        return false;
    }
    return true;
  }

  bool escape_u (gunichar & c)
  {
    if (n_ - p_ < 4)
      return fail ("unterminated JSON string");
    for (int i = 0; i < 4; i++)
      if (!g_ascii_isxdigit (s_[p_ + i]))
        return fail ("invalid \\u escape");
    c = hex4 (s_ + p_);
    p_ += 4;
    return true;
  }

  bool string (bool *escaped)
  {
    p_++;   /* opening quote */
    while (p_ < n_) {
      while (p_ < n_ && kPlain.plain[static_cast<unsigned char>(s_[p_])])
        p_++;
      if (p_ == n_)
        break;
      unsigned char c = s_[p_++];
      if (c == '"')
        return true;
      if (c < 0x20)
        return fail ("control character inside a JSON string");
      if (c != '\\')
        continue;
      if (escaped)
        *escaped = true;
      if (p_ == n_)
        break;
      char e = s_[p_++];
      if (e == 'u') {
        gunichar u;
        if (!escape_u (u))
          return false;
        if (u >= 0xdc00 && u <= 0xdfff)
          return fail ("lone low surrogate in a \\u escape");
        if (u >= 0xd800 && u <= 0xdbff) {
          gunichar low;
          if (n_ - p_ < 2 || s_[p_] != '\\' || s_[p_ + 1] != 'u')
            return fail ("lone high surrogate in a \\u escape");
          p_ += 2;
          if (!escape_u (low))
            return false;
          if (low < 0xdc00 || low > 0xdfff)
            return fail ("lone high surrogate in a \\u escape");
        }
      } else if (!std::strchr ("\"\\/bfnrt", e) || e == '\0') {
        return fail ("invalid escape in a JSON string");
      }
    }
    return fail ("unterminated JSON string");
  }

  bool value (unsigned depth)
  {
    if (p_ == n_)
      return fail ("truncated JSON");
    switch (s_[p_]) {
      case '{':
      case '[':
        return container (depth + 1);
      case '"':
        return string (nullptr);
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
    bool object = s_[p_++] == '{';
    char close = object ? '}' : ']';
    ws ();
    if (p_ < n_ && s_[p_] == close) {
      p_++;
      return true;
    }
    for (;;) {
      if (object) {
        if (p_ == n_ || s_[p_] != '"')
          return fail ("object member names must be strings");
        if (!string (nullptr))
          return false;
        ws ();
        if (p_ == n_ || s_[p_++] != ':')
          return fail ("':' expected in a JSON object");
        ws ();
      }
      if (!value (depth))
        return false;
      ws ();
      if (p_ == n_)
        return fail ("truncated JSON");
      char c = s_[p_++];
      if (c == close)
        return true;
      if (c != ',')
        return fail (object ? "',' or '}' expected" : "',' or ']' expected");
      ws ();
    }
  }

  const char *s_;
  std::size_t n_;
  std::size_t p_ = 0;
  unsigned max_depth_;
  std::string why_;
};

namespace {

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
is_string (std::string_view json)
{
  return !json.empty () && json[0] == '"';
}

}  // namespace

const Message::Member *
Message::find (std::string_view name) const
{
  /* Names are unique: parse() refuses a repeated one. */
  for (const Member & m : members_)
    if (m.key == name)
      return &m;
  return nullptr;
}

std::optional<std::string_view>
Message::member (std::string_view name) const
{
  const Member *m = find (name);
  if (!m)
    return std::nullopt;
  return std::string_view (text_).substr (m->value, m->end - m->value);
}

std::optional<std::string>
Message::string_member (std::string_view name) const
{
  auto v = member (name);
  if (!v || !is_string (*v))
    return std::nullopt;
  std::string out;
  Scanner::decode (*v, out);
  return out;
}

bool
Message::data_strings (std::vector<std::string> & out) const
{
  out.clear ();
  auto data = member ("data");
  if (!data)
    return false;
  if (is_string (*data)) {
    out.emplace_back ();
    Scanner::decode (*data, out.back ());
    return true;
  }
  return Scanner::string_array (*data, out) && !out.empty ();
}

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
  if (!valid_utf8 (text)) {
    fail (error, ErrorCode::BadJson, "the text is not valid UTF-8");
    return std::nullopt;
  }

  Message m;
  m.members_.reserve (8);
  Scanner sc (text, limits.max_depth);
  if (!sc.top_object (m.members_)) {
    std::string why = sc.why ();
    if (why == "JSON nested too deeply")
      why += " (more than " + std::to_string (limits.max_depth) + " levels)";
    fail (error, ErrorCode::BadJson, "invalid JSON: " + why);
    return std::nullopt;
  }
  m.text_.assign (text.data (), text.size ());

  if (const std::string *twice = Scanner::repeated_name (m.members_)) {
    fail (error, ErrorCode::BadMessage, "member '" + *twice + "' appears more "
        "than once; each name may occur once in a message");
    return std::nullopt;
  }

  /* One pass over the members finds the envelope fields. */
  enum { TYPE, TO, THREAD, FROM, CALLBACK_ID, CALLBACK_RESPONSE, CONSTRAINTS,
    FIELDS };
  static constexpr std::string_view names[FIELDS] = {"type", "to", "thread",
    "from", "callback_id", "callback_response", "constraints"};
  const Member *field[FIELDS] = { };
  for (Member & mem : m.members_) {
    std::string_view key = mem.key;
    for (int f = 0; f < FIELDS; f++)
      if (key == names[f])
        field[f] = &mem;
    mem.server_owned = key == "from" || key == "original_to" || key == "seq"
        || key == "from_name";
  }
  auto value_of = [&] (int f) -> std::optional<std::string_view> {
    if (!field[f])
      return std::nullopt;
    return std::string_view (m.text_).substr (field[f]->value,
        field[f]->end - field[f]->value);
  };

  auto name_field = [&] (int f, std::size_t max,
      std::optional<std::string> & out) {
    const char *field = names[f].data ();
    auto v = value_of (f);
    if (!v)
      return true;
    if (is_string (*v)) {
      std::string s;
      Scanner::decode (*v, s);
      if (valid_name (s, max)) {
        out = std::move (s);
        return true;
      }
    }
    return fail (error, ErrorCode::BadMessage, std::string ("field '") +
        field + "' must be a string of 1 to " + std::to_string (max) +
        " bytes without control characters");
  };
  auto callback_field = [&] (int f, std::optional<CallbackRef> & out) {
    const char *field = names[f].data ();
    auto v = value_of (f);
    if (!v)
      return true;
    if (is_string (*v)) {
      std::string s;
      Scanner::decode (*v, s);
      if (s.size () <= limits.max_callback_id_length) {
        out = CallbackRef {"s:" + s, std::string (*v)};
        return true;
      }
    } else if (v->find_first_of (".eE") == std::string_view::npos
        && (g_ascii_isdigit ((*v)[0]) || (*v)[0] == '-')) {
      std::string digits (*v);
      errno = 0;
      gint64 n = g_ascii_strtoll (digits.c_str (), nullptr, 10);
      if (errno == 0) {
        std::string canonical = std::to_string (n);
        out = CallbackRef {"i:" + canonical, canonical};
        return true;
      }
    }
    return fail (error, ErrorCode::BadMessage, std::string ("field '") + field +
        "' must be a 64-bit integer or a string of at most " +
        std::to_string (limits.max_callback_id_length) + " bytes");
  };

  std::optional<std::string> type;
  if (!name_field (TYPE, limits.max_type_length, type)
      || !name_field (THREAD, limits.max_name_length, m.thread_)
      || !name_field (FROM, limits.max_name_length, m.from_)
      || !callback_field (CALLBACK_ID, m.callback_id_)
      || !callback_field (CALLBACK_RESPONSE, m.callback_response_))
    return std::nullopt;
  if (type)
    m.type_ = std::move (*type);
  if (!type && !m.callback_response_) {
    fail (error, ErrorCode::BadMessage,
        "field 'type' is required (only a callback reply may omit it)");
    return std::nullopt;
  }

  if (auto to = value_of (TO)) {
    m.has_to_ = true;
    bool ok;
    if (is_string (*to)) {
      m.to_.emplace_back ();
      Scanner::decode (*to, m.to_.back ());
      ok = true;
    } else {
      ok = Scanner::string_array (*to, m.to_) && !m.to_.empty ()
          && m.to_.size () <= limits.max_to_entries;
    }
    for (const auto &e : m.to_)
      ok = ok && valid_name (e, limits.max_name_length);
    if (!ok) {
      fail (error, ErrorCode::BadMessage, "field 'to' must be a session id "
          "or tag, or an array of 1 to " + std::to_string (limits.max_to_entries)
          + " of them, each 1 to " + std::to_string (limits.max_name_length) +
          " bytes");
      return std::nullopt;
    }
  }

  if (auto c = value_of (CONSTRAINTS)) {
    if ((*c)[0] != '{' && *c != "null" && *c != "false") {
      fail (error, ErrorCode::BadMessage,
          "field 'constraints' must be an object, null or false");
      return std::nullopt;
    }
    /* The server reads `video` and `audio` in there (publish), as the
     * clients do: one reading for all. */
    if ((*c)[0] == '{') {
      std::vector<Member> inner;
      Scanner sc (*c, G_MAXUINT);
      sc.top_object (inner);
      if (const std::string *twice = Scanner::repeated_name (inner)) {
        fail (error, ErrorCode::BadMessage, "member '" + *twice + "' appears "
            "more than once in 'constraints'");
        return std::nullopt;
      }
    }
  }
  return m;
}

namespace {

/* A validated JSON value, judged as JavaScript would: false, null, 0 and ""
 * are falsy. */
bool
truthy (std::string_view json)
{
  switch (json[0]) {
    case 'f':
    case 'n':
      return false;
    case '"':
      return json.size () > 2;
    case 't':
    case '{':
    case '[':
      return true;
    default:
      /* A number is zero when every digit before the exponent is 0. */
      for (char c : json) {
        if (c == 'e' || c == 'E')
          break;
        if (c >= '1' && c <= '9')
          return true;
      }
      return false;
  }
}

}  // namespace

bool
Message::shares_media () const
{
  auto c = member ("constraints");
  if (!c || (*c)[0] != '{')
    return false;
  /* Validated with the message, so it scans, and no name repeats. */
  std::vector<Member> members;
  Scanner sc (*c, G_MAXUINT);
  sc.top_object (members);
  std::optional<std::string_view> video, audio;
  for (const Member & m : members) {
    std::string_view value = c->substr (m.value, m.end - m.value);
    if (m.key == "video")
      video = value;
    else if (m.key == "audio")
      audio = value;
  }
  bool v = video && truthy (*video);
  bool a = audio ? truthy (*audio) : v;
  return v || a;
}

std::string
Message::relay_text (const std::string & from,
    const std::string * original_to, const std::string * from_name) const
{
  std::string out;
  out.reserve (text_.size () + from.size () + 32 +
      (original_to ? original_to->size () + 16 : 0) +
      (from_name ? from_name->size () + 16 : 0));
  out += "{\"from\":";
  append_json_string (out, from);
  if (from_name) {
    out += ",\"from_name\":";
    append_json_string (out, *from_name);
  }
  if (original_to) {
    out += ",\"original_to\":";
    append_json_string (out, *original_to);
  }
  for (const Member & m : members_) {
    if (m.server_owned)
      continue;
    out += ',';
    out.append (text_, m.start, m.end - m.start);
  }
  out += '}';
  return out;
}

void
append_json_string (std::string & out, std::string_view s)
{
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    unsigned char c = ch;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

namespace {

/* Small objects the server writes itself: members appended in order. */
class ObjectWriter
{
public:
  ObjectWriter & str (const char *name, std::string_view value)
  {
    key (name);
    append_json_string (out_, value);
    return *this;
  }
  ObjectWriter & raw (const char *name, std::string_view json)
  {
    key (name);
    out_ += json;
    return *this;
  }
  ObjectWriter & num (const char *name, double value)
  {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return raw (name, g_ascii_formatd (buf, sizeof buf, "%.6g", value));
  }
  ObjectWriter & boolean (const char *name, bool value)
  {
    return raw (name, value ? "true" : "false");
  }
  std::string done () { return out_ + '}'; }

private:
  void key (const char *name)
  {
    out_ += out_.size () > 1 ? ",\"" : "\"";
    out_ += name;
    out_ += "\":";
  }
  std::string out_ = "{";
};

}  // namespace

std::string
error_text (ErrorCode code, std::string_view message,
    const CallbackRef * callback_response, std::string_view ref_type,
    std::string_view thread, std::string_view grant)
{
  ObjectWriter w;
  w.str ("type", "error").str ("code", error_code_name (code))
      .str ("message", message);
  if (!ref_type.empty ())
    w.str ("ref_type", ref_type);
  if (!thread.empty ())
    w.str ("thread", thread);
  if (!grant.empty ())
    w.str ("grant", grant);
  if (callback_response)
    w.raw ("callback_response", callback_response->json);
  return w.done ();
}

std::string
token_renewed_text (std::int64_t expires, std::string_view name,
    const CallbackRef * callback_response)
{
  ObjectWriter w;
  w.str ("type", "socket:token");
  if (expires)
    w.raw ("expires", std::to_string (expires));
  if (!name.empty ())
    w.str ("name", name);
  if (callback_response)
    w.raw ("callback_response", callback_response->json);
  return w.done ();
}

std::string
thread_disconnect_text (const std::string & thread, const std::string & from)
{
  return ObjectWriter ().str ("type", "thread:disconnect").str ("thread", thread)
      .str ("from", from).done ();
}

std::string
thread_connect_text (const std::string & thread, const std::string & from,
    const std::string & from_name)
{
  ObjectWriter w;
  w.str ("type", "thread:connect").str ("thread", thread).str ("from", from);
  if (!from_name.empty ())
    w.str ("from_name", from_name);
  return w.done ();
}

std::string
socket_disconnect_text (const std::string & from)
{
  return ObjectWriter ().str ("type", "socket:disconnect").str ("from", from)
      .done ();
}

std::string
greeting_text (const Greeting & g)
{
  /* id, to and from all carry the session id, as the original's did. */
  ObjectWriter w;
  w.str ("type", "socket:connect").str ("id", g.id)
      .str ("to", g.id).str ("from", g.id).str ("token", g.token)
      .boolean ("resumed", g.resumed).num ("missed", g.missed)
      .num ("grace", g.grace_seconds).num ("ping_interval", g.ping_interval_seconds)
      .num ("max_message_size", g.max_message_size);
  if (!g.name.empty ())
    w.str ("name", g.name);
  if (g.expires)
    w.raw ("expires", std::to_string (g.expires));
  if (!g.ice_servers.empty ())
    w.raw ("ice_servers", g.ice_servers);
  return w.done ();
}

std::string
with_seq (std::uint64_t seq, std::string_view text)
{
  std::string out;
  out.reserve (text.size () + 24);
  out += "{\"seq\":";
  out += std::to_string (seq);
  /* text is "{...}" or "{}" */
  std::string_view rest = text.substr (1);
  if (rest != "}")
    out += ',';
  out.append (rest);
  return out;
}

}  // namespace peerjs
