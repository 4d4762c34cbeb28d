/* Auth tokens: JWTs presented as ?token= on the WebSocket URL, verified with
 * Debian's libjwt. A token names what its holder may do (Grants); the
 * server refuses the upgrade (401) when a token is missing, malformed,
 * signed with another key or algorithm, or expired.
 *
 * Claims (docs/protocol.md "Tokens and grants"):
 *   exp      required, seconds since the epoch
 *   nbf      optional, not before
 *   name     optional string, 1-128 bytes: shown to others as `from_name`
 *   threads  optional array of strings: the threads that may be joined;
 *            an entry ending in '*' is a prefix. Absent: any thread.
 *   publish  optional bool (default true): may share media (constraints)
 *   files    optional bool (default true): may offer files
 *   presence optional bool (default true): may tag and watch
 */
#pragma once

#include <glib.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peerjs {

struct Grants
{
  std::string name;                  /* empty: none */
  bool any_thread = true;            /* no `threads` claim */
  std::vector<std::string> threads;  /* exact names; "pre*" is a prefix */
  bool publish = true;
  bool files = true;
  bool presence = true;
  std::int64_t expires = 0;          /* `exp`, seconds since the epoch */

  bool may_join (std::string_view thread) const;
};

class Auth
{
public:
  /* HS256 with the bytes of `path` (a trailing newline is not part of the
   * key); at least 32 bytes. */
  static std::unique_ptr<Auth> from_secret_file (const char *path,
      GError ** error);
  /* RS256 or ES256, by the type of the PEM public key in `path`. */
  static std::unique_ptr<Auth> from_public_key_file (const char *path,
      GError ** error);

  /* The grants of a valid token; nullopt with `why` (one line, for the 401
   * body and the log) otherwise. `now` is seconds since the epoch. */
  std::optional<Grants> verify (std::string_view token, std::int64_t now,
      std::string & why) const;

  /* "HS256", "RS256" or "ES256". */
  const char *algorithm () const;

  ~Auth ();

private:
  Auth () = default;
  std::string key_;
  int alg_ = 0;                       /* jwt_alg_t */
};

/* The HS256 secret in `path`: its bytes without one trailing newline, at
 * least 32 of them. The token tool reads its secret the same way. */
bool read_secret_file (const char *path, std::string & key, GError ** error);

/* "RS256" or "ES256" for the first PEM key in `pem` (a public key, or a
 * private one when `is_private`): RSA of 2048 bits or more, or EC P-256.
 * nullptr with `error` (naming `path`) for anything else. */
const char *pem_key_algorithm (std::string_view pem, bool is_private,
    const char *path, GError ** error);

/* Largest token accepted, in bytes. */
constexpr std::size_t MAX_TOKEN_BYTES = 4096;

}  // namespace peerjs
