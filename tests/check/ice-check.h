/* Checks of the greeting's `ice_servers` (docs/protocol.md), shared by the
 * router and server suites. The TURN credential is recomputed here with
 * OpenSSL, as coturn's use-auth-secret does, not with the server's code.
 * Include after json-text.h. */
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>
#include <vector>

namespace peerjs::test {

inline std::string
coturn_password (const std::string & secret, const std::string & username)
{
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC (EVP_sha1 (), secret.data (), static_cast<int>(secret.size ()),
      reinterpret_cast<const unsigned char *>(username.data ()),
      username.size (), mac, &len);
  g_autofree char *b64 = g_base64_encode (mac, len);
  return b64;
}

inline std::vector<std::string>
urls_of (JsonObject * server)
{
  fail_unless (json_object_has_member (server, "urls"));
  JsonArray *a = json_object_get_array_member (server, "urls");
  fail_unless (a != nullptr, "urls is not an array");
  std::vector<std::string> out;
  for (guint i = 0; i < json_array_get_length (a); i++)
    out.emplace_back (json_array_get_string_element (a, i));
  return out;
}

/* The greeting `g` of `session` hands out `stun` without credentials and
 * `turn` with a username "<expiry>:<session>" whose expiry lies in
 * [earliest, latest] and a credential that verifies under `secret`.
 * Returns the expiry. */
inline gint64
check_ice_servers (const JsonText & g, const std::string & session,
    const std::vector<std::string> & stun,
    const std::vector<std::string> & turn, const std::string & secret,
    gint64 earliest, gint64 latest)
{
  JsonNode *n = g.node ("ice_servers");
  fail_unless (JSON_NODE_HOLDS_ARRAY (n), "ice_servers is not an array: %s",
      g.text ().c_str ());
  JsonArray *servers = json_node_get_array (n);
  guint want = (stun.empty () ? 0 : 1) + (turn.empty () ? 0 : 1);
  fail_unless_equals_int (json_array_get_length (servers), want);
  gint64 expiry = 0;
  for (guint i = 0; i < want; i++) {
    JsonObject *s = json_array_get_object_element (servers, i);
    fail_unless (s != nullptr);
    std::vector<std::string> urls = urls_of (s);
    bool is_turn = urls.size () && urls[0].rfind ("turn", 0) == 0;
    if (!is_turn) {
      fail_unless (urls == stun, "%s", g.text ().c_str ());
      fail_if (json_object_has_member (s, "username"));
      fail_if (json_object_has_member (s, "credential"));
      continue;
    }
    fail_unless (urls == turn, "%s", g.text ().c_str ());
    std::string user = json_object_get_string_member (s, "username");
    std::string cred = json_object_get_string_member (s, "credential");
    std::size_t colon = user.find (':');
    fail_unless (colon != std::string::npos, "username %s", user.c_str ());
    assert_str (user.substr (colon + 1), session);
    expiry = g_ascii_strtoll (user.c_str (), nullptr, 10);
    fail_unless (expiry >= earliest && expiry <= latest, "expiry %"
        G_GINT64_FORMAT " outside [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
        "]", expiry, earliest, latest);
    assert_str (cred, coturn_password (secret, user));
  }
  return expiry;
}

}  // namespace peerjs::test
