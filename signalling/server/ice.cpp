/* ICE server URLs and TURN REST API credentials (ice.h). */
#include "ice.h"

#include "message.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cerrno>

namespace peerjs {

namespace {

bool
valid_host (std::string_view host)
{
  if (host.empty ())
    return false;
  if (host.front () == '[') {
    if (host.size () < 4 || host.back () != ']')
      return false;
    std::string inner (host.substr (1, host.size () - 2));
    return g_hostname_is_ip_address (inner.c_str ())
        && inner.find (':') != std::string::npos;
  }
  for (char c : host)
    if (!g_ascii_isalnum (c) && c != '-' && c != '.')
      return false;
  return true;
}

}  // namespace

bool
parse_ice_url (std::string_view url, bool & turn, std::string & why)
{
  std::string_view rest;
  bool secure = false;
  for (const char *scheme : {"stun:", "stuns:", "turn:", "turns:"}) {
    std::string_view s (scheme);
    if (url.substr (0, s.size ()) == s) {
      rest = url.substr (s.size ());
      turn = s[0] == 't';
      secure = s.size () == 6;
      break;
    }
  }
  std::string u (url);
  if (rest.data () == nullptr) {
    why = "'" + u + "' is not a stun:, stuns:, turn: or turns: URL";
    return false;
  }
  if (rest.substr (0, 2) == "//") {
    why = "'" + u + "': these URLs have no //, as in turn:HOST:PORT";
    return false;
  }
  std::string_view query;
  std::size_t q = rest.find ('?');
  if (q != std::string_view::npos) {
    query = rest.substr (q + 1);
    rest = rest.substr (0, q);
    if (!turn) {
      why = "'" + u + "': a STUN URL takes no ?query";
      return false;
    }
    if (query != "transport=udp" && query != "transport=tcp") {
      why = "'" + u + "': the only query is ?transport=udp or ?transport=tcp";
      return false;
    }
    if (secure && query == "transport=udp") {
      why = "'" + u + "': turns: runs over TLS, which needs transport=tcp";
      return false;
    }
  }
  if (rest.find ('@') != std::string_view::npos) {
    why = "'" + u + "': no user:password@ in the URL; TURN credentials come "
        "from --turn-secret";
    return false;
  }
  std::string_view host = rest, port;
  std::size_t colon = rest.rfind (':');
  if (colon != std::string_view::npos
      && (rest.front () != '[' || colon > rest.rfind (']'))) {
    host = rest.substr (0, colon);
    port = rest.substr (colon + 1);
  }
  if (!valid_host (host)) {
    why = "'" + u + "': '" + std::string (host) + "' is not a host name, "
        "IPv4 address or [IPv6] address";
    return false;
  }
  if (colon != std::string_view::npos && host.size () < rest.size ()) {
    guint64 n = 0;
    std::string p (port);
    if (p.empty () || !g_ascii_string_to_unsigned (p.c_str (), 10, 1, 65535,
            &n, nullptr)) {
      why = "'" + u + "': the port must be 1 to 65535";
      return false;
    }
  }
  return true;
}

bool
load_turn_secret (const char *path, std::string & secret, GError ** error)
{
  g_autofree char *contents = nullptr;
  gsize len = 0;
  if (!g_file_get_contents (path, &contents, &len, error))
    return false;
  secret.assign (contents, len);
  while (!secret.empty () && (secret.back () == '\n' || secret.back () == '\r'))
    secret.pop_back ();
  if (secret.empty ()) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "TURN secret file %s is empty", path);
    return false;
  }
  for (unsigned char c : secret)
    if (c <= ' ' || c == 0x7f) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "TURN secret "
          "file %s holds a space or control character; coturn's "
          "static-auth-secret cannot", path);
      return false;
    }
  return true;
}

std::string
turn_username (std::int64_t expiry, std::string_view session)
{
  return std::to_string (expiry) + ":" + std::string (session);
}

std::string
turn_credential (std::string_view secret, std::string_view username)
{
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC (EVP_sha1 (), secret.data (), static_cast<int>(secret.size ()),
      reinterpret_cast<const unsigned char *>(username.data ()),
      username.size (), mac, &len);
  g_autofree char *b64 = g_base64_encode (mac, len);
  return b64;
}

std::string
ice_servers_json (const IceConfig & ice, std::string_view session,
    std::int64_t now)
{
  if (ice.empty ())
    return {};
  auto urls = [] (const std::vector<std::string> & list) {
    std::string out = "\"urls\":[";
    for (std::size_t i = 0; i < list.size (); i++) {
      if (i)
        out += ',';
      append_json_string (out, list[i]);
    }
    return out + "]";
  };
  std::string out = "[";
  if (!ice.stun_urls.empty ())
    out += "{" + urls (ice.stun_urls) + "}";
  if (!ice.turn_urls.empty ()) {
    if (out.size () > 1)
      out += ',';
    std::string user = turn_username (now + ice.turn_ttl_s, session);
    out += "{" + urls (ice.turn_urls) + ",\"username\":";
    append_json_string (out, user);
    out += ",\"credential\":";
    append_json_string (out, turn_credential (ice.turn_secret, user));
    out += "}";
  }
  return out + "]";
}

}  // namespace peerjs
