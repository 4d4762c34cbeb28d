/* peerjs-token: mints an auth token for peerjs-signalling (docs/protocol.md
 * "Tokens and grants"). tools/token runs it. */
#include "auth.h"
#include "message.h"

#include <jwt.h>
#include <openssl/crypto.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

using namespace peerjs;

namespace {

const char *DESCRIPTION =
    "Prints a JWT on stdout for ?token= on the server's WebSocket URL.\n"
    "\n"
    "The key: --secret FILE signs HS256 with the file's bytes (at least 32,\n"
    "one trailing newline dropped), as the server's --auth-secret takes them.\n"
    "--private-key FILE signs RS256 with an RSA key (2048 bits or more) or\n"
    "ES256 with an EC P-256 key, chosen by the key's type; the server takes\n"
    "the matching public key with --auth-public-key. --alg, if given, must\n"
    "name that algorithm.\n"
    "\n"
    "The grants, all allowed unless restricted:\n"
    "  --threads a,b,team-*   threads that may be joined; an entry ending in\n"
    "                         '*' is a prefix, '*' alone is any thread, and\n"
    "                         --threads '' grants none\n"
    "  --no-publish           constraints may not share video or audio\n"
    "  --no-files             no file:offer\n"
    "  --no-presence          no presence:tag or presence:watch\n"
    "  --name N               shown to others as from_name (1-128 bytes)\n"
    "\n"
    "The token expires --ttl seconds from now (3600 by default), or at the\n"
    "time --exp gives (seconds since the epoch). The server checks it when a\n"
    "connection opens.\n"
    "\n"
    "Example:\n"
    "  peerjs-token --secret secret.key --name alice --threads lobby,team-*\n";

bool
fail (GError ** error, const std::string & message)
{
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s",
      message.c_str ());
  return false;
}

/* A whole decimal number in [min, max]. */
bool
parse_int (const char *option, const char *text, gint64 min, gint64 max,
    gint64 & out, GError ** error)
{
  if (!g_ascii_string_to_signed (text, 10, min, max, &out, nullptr))
    return fail (error, std::string (option) + " takes a whole number from " +
        std::to_string (min) + " to " + std::to_string (max) + ", not '" +
        text + "'");
  return true;
}

/* What GOptionContext fills in. */
struct Options
{
  char *secret = nullptr;
  char *private_key = nullptr;
  char *alg = nullptr;
  char *name = nullptr;
  char *threads = nullptr;
  char *ttl = nullptr;
  char *exp = nullptr;
  gboolean no_publish = FALSE;
  gboolean no_files = FALSE;
  gboolean no_presence = FALSE;

  ~Options ()
  {
    for (char *s : {secret, private_key, alg, name, threads, ttl, exp})
      g_free (s);
  }
};

/* The claims as JSON: exp and iat, then what was restricted. */
bool
claims_json (const Options & o, gint64 now, std::string & json,
    GError ** error)
{
  const std::size_t max = ProtocolLimits ().max_name_length;
  gint64 exp;
  if (o.ttl && o.exp)
    return fail (error, "--ttl and --exp cannot both be given");
  if (o.exp) {
    if (!parse_int ("--exp", o.exp, 1, G_MAXINT64, exp, error))
      return false;
    if (exp <= now)
      return fail (error, "--exp " + std::string (o.exp) + " is not in the "
          "future (now is " + std::to_string (now) + ")");
  } else {
    gint64 ttl = 3600;
    if (o.ttl && !parse_int ("--ttl", o.ttl, 1, G_MAXINT32, ttl, error))
      return false;
    exp = now + ttl;
  }

  json = "{\"exp\":" + std::to_string (exp) + ",\"iat\":" +
      std::to_string (now);
  if (o.name) {
    if (!valid_name (o.name, max))
      return fail (error, "--name must be 1 to " + std::to_string (max) +
          " bytes of UTF-8 without control characters");
    json += ",\"name\":";
    append_json_string (json, o.name);
  }
  if (o.threads) {
    json += ",\"threads\":[";
    g_auto (GStrv) list = g_strsplit (o.threads, ",", -1);
    for (char **t = list; *t; t++) {
      if (!valid_name (*t, max))
        return fail (error, "--threads: '" + std::string (*t) + "' is not a "
            "thread name (1 to " + std::to_string (max) + " bytes of UTF-8 "
            "without control characters; names are separated by commas)");
      if (t != list)
        json += ',';
      append_json_string (json, *t);
    }
    json += ']';
  }
  if (o.no_publish)
    json += ",\"publish\":false";
  if (o.no_files)
    json += ",\"files\":false";
  if (o.no_presence)
    json += ",\"presence\":false";
  json += '}';
  return true;
}

/* The signing key and its algorithm. */
bool
signing_key (const Options & o, std::string & key, jwt_alg_t & alg,
    GError ** error)
{
  if (!o.secret == !o.private_key)
    return fail (error, "give one key: --secret FILE or --private-key FILE");
  if (o.secret) {
    if (o.alg && std::strcmp (o.alg, "HS256") != 0)
      return fail (error, "--alg is for --private-key; --secret signs HS256");
    alg = JWT_ALG_HS256;
    return read_secret_file (o.secret, key, error);
  }
  if (o.alg && std::strcmp (o.alg, "RS256") != 0
      && std::strcmp (o.alg, "ES256") != 0)
    return fail (error, "--alg must be RS256 or ES256, not '" +
        std::string (o.alg) + "'");
  g_autofree char *contents = nullptr;
  gsize len = 0;
  if (!g_file_get_contents (o.private_key, &contents, &len, error))
    return false;
  key.assign (contents, len);
  OPENSSL_cleanse (contents, len);
  const char *kind = pem_key_algorithm (key, true, o.private_key, error);
  if (!kind)
    return false;
  if (o.alg && std::strcmp (o.alg, kind) != 0)
    return fail (error, "--alg " + std::string (o.alg) + " does not fit the "
        "key in " + o.private_key + ", which signs " + kind);
  alg = jwt_str_alg (kind);
  return true;
}

bool
mint (const Options & o, std::string & token, GError ** error)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  std::string claims, key;
  jwt_alg_t alg;
  if (!claims_json (o, now, claims, error) || !signing_key (o, key, alg, error))
    return false;

  jwt_t *jwt = nullptr;
  bool ok = jwt_new (&jwt) == 0 && jwt_add_grants_json (jwt, claims.c_str ()) == 0
      && jwt_set_alg (jwt, alg, reinterpret_cast<const unsigned char *>(
              key.data ()), static_cast<int>(key.size ())) == 0;
  char *text = ok ? jwt_encode_str (jwt) : nullptr;
  OPENSSL_cleanse (key.data (), key.size ());
  jwt_free (jwt);
  if (!text)
    return fail (error, std::string ("libjwt could not sign the token with ") +
        jwt_alg_str (alg));
  token = text;
  std::free (text);
  return true;
}

}  // namespace

int
main (int argc, char **argv)
{
  Options o;
  GOptionEntry entries[] = {
    {"secret", 0, 0, G_OPTION_ARG_FILENAME, &o.secret,
        "Sign HS256 with the secret in FILE", "FILE"},
    {"private-key", 0, 0, G_OPTION_ARG_FILENAME, &o.private_key,
        "Sign RS256 or ES256 with the PEM private key in FILE", "FILE"},
    {"alg", 0, 0, G_OPTION_ARG_STRING, &o.alg,
        "RS256 or ES256: must fit the private key", "ALG"},
    /* Names are taken as bytes (checked as UTF-8), whatever the locale. */
    {"name", 0, 0, G_OPTION_ARG_FILENAME, &o.name,
        "The holder's name, relayed as from_name", "N"},
    {"threads", 0, 0, G_OPTION_ARG_FILENAME, &o.threads,
        "Threads that may be joined (comma-separated; 'pre*' is a prefix)",
        "a,b,team-*"},
    {"no-publish", 0, 0, G_OPTION_ARG_NONE, &o.no_publish,
        "May not share media", nullptr},
    {"no-files", 0, 0, G_OPTION_ARG_NONE, &o.no_files,
        "May not offer files", nullptr},
    {"no-presence", 0, 0, G_OPTION_ARG_NONE, &o.no_presence,
        "May not tag or watch", nullptr},
    {"ttl", 0, 0, G_OPTION_ARG_STRING, &o.ttl,
        "Valid for SECONDS from now (default 3600)", "SECONDS"},
    {"exp", 0, 0, G_OPTION_ARG_STRING, &o.exp,
        "Valid until UNIX (seconds since the epoch)", "UNIX"},
    {nullptr}
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new (
      "- mint a peerjs auth token");
  g_option_context_add_main_entries (ctx, entries, nullptr);
  g_option_context_set_description (ctx, DESCRIPTION);

  g_autoptr (GError) error = nullptr;
  std::string token;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)
      || (argc > 1 && !fail (&error, std::string ("unexpected argument '") +
              argv[1] + "'"))
      || !mint (o, token, &error)) {
    g_printerr ("peerjs-token: %s (see --help)\n", error->message);
    return 1;
  }
  std::printf ("%s\n", token.c_str ());
  return 0;
}
