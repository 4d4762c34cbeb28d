#include "auth.h"

#include "message.h"

#include <json-glib/json-glib.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <cstring>

namespace peerjs {

namespace {

constexpr std::size_t MIN_SECRET_BYTES = 32;
constexpr unsigned MIN_RSA_BITS = 2048;

struct JwtFree
{
  void operator() (jwt_t * j) const { jwt_free (j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

struct PkeyFree
{
  void operator() (EVP_PKEY * k) const { EVP_PKEY_free (k); }
};

bool
set_error (GError ** error, const char *path, const std::string & what)
{
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: %s", path,
      what.c_str ());
  return false;
}

/* base64url without padding (RFC 7515), strictly: any other byte fails. */
bool
base64url_decode (std::string_view in, std::string & out)
{
  if (in.empty () || in.size () % 4 == 1)
    return false;
  std::string b64 (in);
  for (char &c : b64) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
    else if (!g_ascii_isalnum (c))
      return false;
  }
  b64.append ((4 - b64.size () % 4) % 4, '=');
  gsize len = 0;
  g_autofree guchar *bytes = g_base64_decode (b64.c_str (), &len);
  out.assign (reinterpret_cast<const char *>(bytes), len);
  return true;
}

/* The root object of a JSON text, or null. */
JsonParser *
parse_object (std::string_view json)
{
  JsonParser *parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, json.data (), json.size (), nullptr)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    g_object_unref (parser);
    return nullptr;
  }
  return parser;
}

bool
holds (JsonNode * node, GType type)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

/* Reads the claims into `g` and `nbf`; false with `why` at the first one
 * that is missing or of the wrong type. */
bool
read_claims (JsonObject * claims, Grants & g,
    std::optional<std::int64_t> & nbf, std::string & why)
{
  const std::string max = std::to_string (ProtocolLimits ().max_name_length);

  JsonNode *exp = json_object_get_member (claims, "exp");
  if (!exp || !holds (exp, G_TYPE_INT64)) {
    why = "claim 'exp' is required and must be an integer (seconds since "
        "the epoch)";
    return false;
  }
  g.expires = json_node_get_int (exp);

  if (JsonNode *n = json_object_get_member (claims, "nbf")) {
    if (!holds (n, G_TYPE_INT64)) {
      why = "claim 'nbf' must be an integer (seconds since the epoch)";
      return false;
    }
    nbf = json_node_get_int (n);
  }

  if (JsonNode *name = json_object_get_member (claims, "name")) {
    if (!holds (name, G_TYPE_STRING)
        || !valid_name (json_node_get_string (name),
            ProtocolLimits ().max_name_length)) {
      why = "claim 'name' must be a string of 1 to " + max + " bytes without "
          "control characters";
      return false;
    }
    g.name = json_node_get_string (name);
  }

  if (JsonNode *threads = json_object_get_member (claims, "threads")) {
    bool ok = JSON_NODE_HOLDS_ARRAY (threads);
    if (ok) {
      JsonArray *a = json_node_get_array (threads);
      for (guint i = 0; ok && i < json_array_get_length (a); i++) {
        JsonNode *e = json_array_get_element (a, i);
        ok = holds (e, G_TYPE_STRING) && valid_name (json_node_get_string (e),
            ProtocolLimits ().max_name_length);
        if (ok)
          g.threads.emplace_back (json_node_get_string (e));
      }
    }
    if (!ok) {
      why = "claim 'threads' must be an array of thread names (strings of 1 "
          "to " + max + " bytes; a name ending in '*' is a prefix)";
      return false;
    }
    g.any_thread = false;
  }

  struct Flag { const char *claim; bool *value; };
  for (const Flag & f : {Flag {"publish", &g.publish},
          Flag {"files", &g.files}, Flag {"presence", &g.presence}}) {
    JsonNode *n = json_object_get_member (claims, f.claim);
    if (!n)
      continue;
    if (!holds (n, G_TYPE_BOOLEAN)) {
      why = std::string ("claim '") + f.claim + "' must be true or false";
      return false;
    }
    *f.value = json_node_get_boolean (n);
  }
  return true;
}

}  // namespace

bool
Grants::may_join (std::string_view thread) const
{
  if (any_thread)
    return true;
  for (const std::string & t : threads) {
    std::string_view entry (t);
    if (!entry.empty () && entry.back () == '*') {
      entry.remove_suffix (1);
      if (thread.substr (0, entry.size ()) == entry)
        return true;
    } else if (thread == entry) {
      return true;
    }
  }
  return false;
}

bool
read_secret_file (const char *path, std::string & key, GError ** error)
{
  g_autofree char *contents = nullptr;
  gsize len = 0;
  if (!g_file_get_contents (path, &contents, &len, error))
    return false;
  if (len > 0 && contents[len - 1] == '\n')
    len--;
  key.assign (contents, len);
  OPENSSL_cleanse (contents, len);
  if (key.size () < MIN_SECRET_BYTES)
    return set_error (error, path, "an HS256 secret must be at least " +
        std::to_string (MIN_SECRET_BYTES) + " bytes (not counting one "
        "trailing newline); this one has " + std::to_string (key.size ()));
  return true;
}

const char *
pem_key_algorithm (std::string_view pem, bool is_private, const char *path,
    GError ** error)
{
  /* No passphrase prompt: an encrypted key is refused. */
  pem_password_cb *no_passphrase = [] (char *, int, int, void *) { return 0; };
  BIO *bio = BIO_new_mem_buf (pem.data (), static_cast<int>(pem.size ()));
  std::unique_ptr<EVP_PKEY, PkeyFree> key (is_private
      ? PEM_read_bio_PrivateKey (bio, nullptr, no_passphrase, nullptr)
      : PEM_read_bio_PUBKEY (bio, nullptr, no_passphrase, nullptr));
  BIO_free (bio);
  if (!key) {
    set_error (error, path, is_private
        ? "not an unencrypted PEM private key (-----BEGIN PRIVATE KEY----- or "
        "-----BEGIN RSA/EC PRIVATE KEY-----)"
        : "not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    return nullptr;
  }
  int bits = EVP_PKEY_get_bits (key.get ());
  switch (EVP_PKEY_get_base_id (key.get ())) {
    case EVP_PKEY_RSA:
      if (bits < static_cast<int>(MIN_RSA_BITS)) {
        set_error (error, path, "an RSA key of " + std::to_string (bits) +
            " bits; RS256 needs at least " + std::to_string (MIN_RSA_BITS));
        return nullptr;
      }
      return "RS256";
    case EVP_PKEY_EC: {
      char group[64] = "";
      size_t len = 0;
      if (EVP_PKEY_get_group_name (key.get (), group, sizeof group, &len)
          && std::strcmp (group, SN_X9_62_prime256v1) == 0)
        return "ES256";
      set_error (error, path, std::string ("an EC key on curve ") +
          (*group ? group : "(unknown)") + "; ES256 needs P-256 (prime256v1)");
      return nullptr;
    }
    default:
      set_error (error, path, std::string ("a key of type ") +
          OBJ_nid2sn (EVP_PKEY_get_base_id (key.get ())) +
          "; only RSA (RS256) and EC P-256 (ES256) keys are supported");
      return nullptr;
  }
}

std::unique_ptr<Auth>
Auth::from_secret_file (const char *path, GError ** error)
{
  std::unique_ptr<Auth> auth (new Auth ());
  if (!read_secret_file (path, auth->key_, error))
    return nullptr;
  auth->alg_ = JWT_ALG_HS256;
  return auth;
}

std::unique_ptr<Auth>
Auth::from_public_key_file (const char *path, GError ** error)
{
  g_autofree char *contents = nullptr;
  gsize len = 0;
  if (!g_file_get_contents (path, &contents, &len, error))
    return nullptr;
  const char *alg = pem_key_algorithm (std::string_view (contents, len), false,
      path, error);
  if (!alg)
    return nullptr;
  std::unique_ptr<Auth> auth (new Auth ());
  auth->key_.assign (contents, len);
  auth->alg_ = jwt_str_alg (alg);
  return auth;
}

Auth::~Auth ()
{
  OPENSSL_cleanse (key_.data (), key_.size ());
}

const char *
Auth::algorithm () const
{
  return jwt_alg_str (static_cast<jwt_alg_t>(alg_));
}

std::optional<Grants>
Auth::verify (std::string_view token, std::int64_t now,
    std::string & why) const
{
  if (token.size () > MAX_TOKEN_BYTES) {
    why = "the token is " + std::to_string (token.size ()) + " bytes, over "
        "the limit of " + std::to_string (MAX_TOKEN_BYTES);
    return std::nullopt;
  }

  /* The algorithm is read before libjwt sees the token: libjwt 1.10 takes
   * `none` unverified, and an HS256 token "signed" with a public key's PEM
   * would pass its HMAC check. Only the configured algorithm is accepted. */
  std::size_t dot1 = token.find ('.');
  std::size_t dot2 = dot1 == std::string_view::npos ? dot1
      : token.find ('.', dot1 + 1);
  std::string header;
  if (dot2 == std::string_view::npos
      || token.find ('.', dot2 + 1) != std::string_view::npos
      || !base64url_decode (token.substr (0, dot1), header)) {
    why = "not a JWT (three base64url parts separated by dots)";
    return std::nullopt;
  }
  g_autoptr (JsonParser) head = parse_object (header);
  JsonNode *alg = head ? json_object_get_member (json_node_get_object
      (json_parser_get_root (head)), "alg") : nullptr;
  if (!alg || !holds (alg, G_TYPE_STRING)) {
    why = "not a JWT: the header is not a JSON object with a string 'alg'";
    return std::nullopt;
  }
  const char *name = json_node_get_string (alg);
  if (std::strcmp (name, algorithm ()) != 0) {
    /* `why` is one line: the client's text only when it is a short name. */
    why = std::string ("algorithm ") + (valid_name (name, 32)
        ? std::string ("'") + name + "'" : "(unprintable)") + " is not "
        "accepted; this server takes " + algorithm () + " only";
    return std::nullopt;
  }

  jwt_t *decoded = nullptr;
  std::string text (token);
  int rc = jwt_decode (&decoded, text.c_str (),
      reinterpret_cast<const unsigned char *>(key_.data ()),
      static_cast<int>(key_.size ()));
  JwtPtr jwt (decoded);
  if (rc != 0 || !jwt || jwt_get_alg (jwt.get ()) != alg_) {
    why = std::string ("the token's ") + algorithm () + " signature does not "
        "verify, or the token is malformed";
    return std::nullopt;
  }

  g_autofree char *json = jwt_get_grants_json (jwt.get (), nullptr);
  g_autoptr (JsonParser) parser = json ? parse_object (json) : nullptr;
  if (!parser) {
    why = "the token's claims are not a JSON object";
    return std::nullopt;
  }
  JsonObject *claims = json_node_get_object (json_parser_get_root (parser));

  Grants g;
  std::optional<std::int64_t> nbf;
  if (!read_claims (claims, g, nbf, why))
    return std::nullopt;
  /* exp is exact: no allowance for clock skew. */
  if (now >= g.expires) {
    why = "the token expired " + std::to_string (now - g.expires) +
        " s ago (exp " + std::to_string (g.expires) + ")";
    return std::nullopt;
  }
  if (nbf && now < *nbf) {
    why = "the token is not valid for another " + std::to_string (*nbf - now) +
        " s (nbf " + std::to_string (*nbf) + ")";
    return std::nullopt;
  }
  return g;
}

}  // namespace peerjs
