/* A JSON object text under test, parsed, with typed accessors that fail the
 * test when a member is missing or has another JSON type. Shared by every
 * suite. Include after the code under test: gstcheck.h defines `fail`. */
#pragma once

#include "message.h"

#include <gst/check/gstcheck.h>
#include <json-glib/json-glib.h>

#include <memory>
#include <string>

static inline std::string
str_of (const char *s)
{
  return s ? s : "(null)";
}

static inline std::string
str_of (const std::string & s)
{
  return s;
}

/* Like fail_unless_equals_string, but keeps std::string temporaries alive
 * for the comparison (the gst-check macro would keep dangling c_str()s). */
#define assert_str(a, b)                                                 \
  G_STMT_START {                                                         \
    const std::string _first = str_of (a);                               \
    const std::string _second = str_of (b);                              \
    fail_unless (_first == _second, "'" #a "' (%s) is not equal to '" #b \
        "' (%s)", _first.c_str (), _second.c_str ());                    \
  } G_STMT_END

namespace peerjs::test {

/* The tests read what the code under test wrote with another JSON parser:
 * json-glib. */
using JsonNodePtr = std::shared_ptr<JsonNode>;

inline JsonNodePtr
adopt_node (JsonNode * node)   /* takes the caller's reference */
{
  return JsonNodePtr (node, [] (JsonNode * n) {
        if (n)
          json_node_unref (n);
      });
}

inline JsonNodePtr
share_node (JsonNode * node)
{
  return adopt_node (node ? json_node_ref (node) : nullptr);
}

class JsonText
{
public:
  JsonText () : JsonText ("{}") { }
  explicit JsonText (std::string text) : text_ (std::move (text))
  {
    GError *err = nullptr;
    JsonNode *node = json_from_string (text_.c_str (), &err);
    fail_unless (node != nullptr, "not JSON: %s (%s)", text_.c_str (),
        err ? err->message : "empty");
    g_clear_error (&err);
    root_ = adopt_node (node);
    fail_unless (JSON_NODE_HOLDS_OBJECT (node), "not an object: %s",
        text_.c_str ());
  }

  JsonObject *obj () const { return json_node_get_object (root_.get ()); }
  bool has (const char *m) const { return json_object_has_member (obj (), m); }
  JsonNode *node (const char *m) const
  {
    JsonNode *n = json_object_get_member (obj (), m);
    fail_unless (n != nullptr, "no member '%s' in %s", m, text_.c_str ());
    return n;
  }
  GType vtype (const char *m) const
  {
    JsonNode *n = node (m);
    return JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  }
  std::string str (const char *m) const
  {
    fail_unless (vtype (m) == G_TYPE_STRING, "member '%s' is not a string in %s",
        m, text_.c_str ());
    return json_node_get_string (node (m));
  }
  gint64 num (const char *m) const
  {
    fail_unless (vtype (m) == G_TYPE_INT64, "member '%s' is not an integer in %s",
        m, text_.c_str ());
    return json_node_get_int (node (m));
  }
  double dbl (const char *m) const
  {
    GType t = vtype (m);
    fail_unless (t == G_TYPE_DOUBLE || t == G_TYPE_INT64,
        "member '%s' is not a number in %s", m, text_.c_str ());
    return json_node_get_double (node (m));
  }
  bool boolean (const char *m) const
  {
    fail_unless (vtype (m) == G_TYPE_BOOLEAN, "member '%s' is not a boolean in %s",
        m, text_.c_str ());
    return json_node_get_boolean (node (m));
  }
  std::string type () const { return has ("type") ? str ("type") : ""; }
  bool is_error (const char *code) const
  {
    return type () == "error" && has ("code") && str ("code") == code;
  }
  std::size_t size () const { return json_object_get_size (obj ()); }
  const std::string & text () const { return text_; }

private:
  std::string text_;
  JsonNodePtr root_;
};

}  // namespace peerjs::test
