/* ICE servers handed to every session in its greeting (docs/protocol.md
 * `ice_servers`): STUN and TURN URLs from the command line, and for TURN
 * short-lived credentials in the TURN REST API scheme that coturn checks
 * with `use-auth-secret` / `static-auth-secret`:
 *
 *   username   = "<expiry, seconds since the epoch>:<session id>"
 *   credential = base64 (HMAC-SHA1 (secret, username))
 *
 * so the TURN server needs no user list and a credential that leaks from a
 * page stops working at its expiry.
 */
#pragma once

#include <glib.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peerjs {

struct IceConfig
{
  std::vector<std::string> stun_urls;   /* stun:, stuns: */
  std::vector<std::string> turn_urls;   /* turn:, turns: */
  std::string turn_secret;              /* coturn's static-auth-secret */
  /* Lifetime of a minted credential. The TURN REST API draft recommends a
   * day: a TURN allocation is refreshed with the credential it was made
   * with, so a call outlives its credential's expiry only by breaking. */
  std::int64_t turn_ttl_s = 86400;
  /* Seconds since the epoch; null: the real clock (tests set their own). */
  std::int64_t (*clock) () = nullptr;

  bool empty () const { return stun_urls.empty () && turn_urls.empty (); }
};

/* Checks an ICE server URL as browsers take it (RFC 7064, 7065):
 * stun:HOST[:PORT], stuns:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp],
 * turns:... HOST is a name, an IPv4 address or [IPv6]. Sets `turn` for
 * turn: and turns:; false with `why` (one line) otherwise. */
bool parse_ice_url (std::string_view url, bool & turn, std::string & why);

/* The secret of --turn-secret: the file's bytes without a trailing
 * newline; not empty, no control characters or spaces (coturn reads it
 * from a line of its configuration). */
bool load_turn_secret (const char *path, std::string & secret,
    GError ** error);

/* "<expiry>:<session>", and its credential under `secret`. */
std::string turn_username (std::int64_t expiry, std::string_view session);
std::string turn_credential (std::string_view secret,
    std::string_view username);

/* The greeting's `ice_servers`: a JSON array in the shape of
 * RTCConfiguration.iceServers, [{"urls":[...]}, {"urls":[...],
 * "username":..., "credential":...}], the TURN entry with credentials for
 * `session` that expire turn_ttl_s after `now` (seconds since the epoch).
 * Empty when there are no servers. */
std::string ice_servers_json (const IceConfig & ice, std::string_view session,
    std::int64_t now);

}  // namespace peerjs
