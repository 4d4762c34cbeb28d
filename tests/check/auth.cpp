/* Unit tests for peerjs::Auth (signalling/server/auth.h): which tokens
 * verify and what they grant, against HS256, RS256 and ES256 keys made at
 * test time; and the token tool (peerjs-token) minting tokens that verify. */
#include "auth.h"

#include <glib/gstdio.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "json-text.h"

#include <cstring>
#include <string>
#include <vector>

using namespace peerjs;

namespace {

const std::int64_t NOW = 1700000000;
const std::string EXP = std::to_string (NOW + 600);
const std::string SECRET = "0123456789abcdef0123456789abcdef";   /* 32 bytes */

/* Made once, before the cases fork (an unchecked fixture). */
struct Keys
{
  std::string dir;
  std::string rsa_private, rsa_public, ec_private, ec_public;
  std::string secret_file, rsa_file, ec_file, ec_private_file;
};
Keys keys;

std::string
pem_of (EVP_PKEY * key, bool is_private)
{
  BIO *bio = BIO_new (BIO_s_mem ());
  int ok = is_private
      ? PEM_write_bio_PrivateKey (bio, key, nullptr, nullptr, 0, nullptr, nullptr)
      : PEM_write_bio_PUBKEY (bio, key);
  fail_unless (ok == 1);
  char *data = nullptr;
  long len = BIO_get_mem_data (bio, &data);
  std::string pem (data, len);
  BIO_free (bio);
  return pem;
}

/* A fresh key pair's private and public PEM. */
void
make_key (const char *type, bool rsa, std::string & priv, std::string & pub,
    std::size_t rsa_bits = 2048, const char *curve = "P-256")
{
  EVP_PKEY *key = rsa ? EVP_PKEY_Q_keygen (nullptr, nullptr, type, rsa_bits)
      : EVP_PKEY_Q_keygen (nullptr, nullptr, type, curve);
  fail_unless (key != nullptr, "cannot make a %s key", type);
  priv = pem_of (key, true);
  pub = pem_of (key, false);
  EVP_PKEY_free (key);
}

std::string
write_file (const char *name, const std::string & contents)
{
  g_autofree char *path = g_build_filename (keys.dir.c_str (), name, nullptr);
  fail_unless (g_file_set_contents (path, contents.data (), contents.size (),
          nullptr));
  return path;
}

void
setup_keys (void)
{
  g_autofree char *dir = g_dir_make_tmp ("peerjs-auth-XXXXXX", nullptr);
  fail_unless (dir != nullptr);
  keys.dir = dir;
  make_key ("RSA", true, keys.rsa_private, keys.rsa_public);
  make_key ("EC", false, keys.ec_private, keys.ec_public);
  keys.secret_file = write_file ("secret", SECRET + "\n");
  keys.rsa_file = write_file ("rsa.pub", keys.rsa_public);
  keys.ec_file = write_file ("ec.pub", keys.ec_public);
  keys.ec_private_file = write_file ("ec.pem", keys.ec_private);
}

void
teardown_keys (void)
{
  GDir *d = g_dir_open (keys.dir.c_str (), 0, nullptr);
  while (const char *name = d ? g_dir_read_name (d) : nullptr) {
    g_autofree char *path = g_build_filename (keys.dir.c_str (), name, nullptr);
    g_unlink (path);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (keys.dir.c_str ());
}

/* A token with these claims (a JSON object text), signed by libjwt. */
std::string
mint (jwt_alg_t alg, const std::string & key, const std::string & claims)
{
  jwt_t *jwt = nullptr;
  fail_unless (jwt_new (&jwt) == 0);
  fail_unless (jwt_add_grants_json (jwt, claims.c_str ()) == 0, "claims %s",
      claims.c_str ());
  fail_unless (jwt_set_alg (jwt, alg, alg == JWT_ALG_NONE ? nullptr :
          reinterpret_cast<const unsigned char *>(key.data ()),
          alg == JWT_ALG_NONE ? 0 : static_cast<int>(key.size ())) == 0);
  char *text = jwt_encode_str (jwt);
  fail_unless (text != nullptr);
  std::string token (text);
  free (text);
  jwt_free (jwt);
  return token;
}

std::string
hs256 (const std::string & claims)
{
  return mint (JWT_ALG_HS256, SECRET, claims);
}

std::unique_ptr<Auth>
secret_auth ()
{
  g_autoptr (GError) error = nullptr;
  auto auth = Auth::from_secret_file (keys.secret_file.c_str (), &error);
  fail_unless (auth != nullptr, "%s", error ? error->message : "");
  return auth;
}

std::unique_ptr<Auth>
key_auth (const std::string & file)
{
  g_autoptr (GError) error = nullptr;
  auto auth = Auth::from_public_key_file (file.c_str (), &error);
  fail_unless (auth != nullptr, "%s", error ? error->message : "");
  return auth;
}

Grants
accepts (const Auth & auth, const std::string & token, std::int64_t now = NOW)
{
  std::string why;
  auto g = auth.verify (token, now, why);
  fail_unless (g.has_value (), "refused (%s): %.300s", why.c_str (),
      token.c_str ());
  return *g;
}

/* Refused, with a reason that contains `words`. */
void
refuses (const Auth & auth, const std::string & token, const char *words,
    std::int64_t now = NOW)
{
  std::string why;
  auto g = auth.verify (token, now, why);
  fail_if (g.has_value (), "accepted: %.300s", token.c_str ());
  fail_unless (why.find (words) != std::string::npos,
      "reason '%s' does not say '%s' for %.300s", why.c_str (), words,
      token.c_str ());
  fail_unless (why.find ('\n') == std::string::npos);
}

/* base64url without padding, for hand-made tokens. */
std::string
b64url (const std::string & bytes)
{
  g_autofree char *b64 = g_base64_encode (
      reinterpret_cast<const guchar *>(bytes.data ()), bytes.size ());
  std::string s (b64);
  while (!s.empty () && s.back () == '=')
    s.pop_back ();
  for (char &c : s)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

std::vector<std::string>
parts (const std::string & token)
{
  std::vector<std::string> out;
  g_auto (GStrv) p = g_strsplit (token.c_str (), ".", -1);
  for (char **e = p; *e; e++)
    out.emplace_back (*e);
  return out;
}

}  // namespace

GST_START_TEST (test_secret_file)
{
  g_autoptr (GError) error = nullptr;
  /* 32 bytes count, one trailing newline does not. */
  std::string path = write_file ("s32", SECRET);
  auto auth = Auth::from_secret_file (path.c_str (), &error);
  fail_unless (auth != nullptr);
  assert_str (auth->algorithm (), "HS256");
  accepts (*auth, hs256 ("{\"exp\":" + EXP + "}"));
  /* The newline is not part of the key. */
  accepts (*secret_auth (), hs256 ("{\"exp\":" + EXP + "}"));

  path = write_file ("s31", SECRET.substr (1) + "\n");
  fail_if (Auth::from_secret_file (path.c_str (), &error));
  fail_unless (error && strstr (error->message, "at least 32 bytes")
      && strstr (error->message, "has 31"), "%s", error->message);
  g_clear_error (&error);

  fail_if (Auth::from_secret_file ((keys.dir + "/missing").c_str (), &error));
  fail_unless (error != nullptr);
}
GST_END_TEST;

GST_START_TEST (test_public_key_file)
{
  assert_str (key_auth (keys.rsa_file)->algorithm (), "RS256");
  assert_str (key_auth (keys.ec_file)->algorithm (), "ES256");

  std::string priv, pub;
  make_key ("EC", false, priv, pub, 0, "P-384");
  std::string p384 = write_file ("p384.pub", pub);
  make_key ("RSA", true, priv, pub, 1024);
  std::string rsa1024 = write_file ("rsa1024.pub", pub);
  std::string garbage = write_file ("garbage.pub", "not a key\n");

  struct { std::string file; const char *words; } bad[] = {
    {p384, "P-256"},
    {rsa1024, "2048"},
    {keys.ec_private_file, "not a PEM public key"},
    {garbage, "not a PEM public key"},
  };
  for (const auto &b : bad) {
    g_autoptr (GError) error = nullptr;
    fail_if (Auth::from_public_key_file (b.file.c_str (), &error), "%s",
        b.file.c_str ());
    fail_unless (error && strstr (error->message, b.words)
        && strstr (error->message, b.file.c_str ()), "%s: %s", b.file.c_str (),
        error ? error->message : "");
  }
}
GST_END_TEST;

GST_START_TEST (test_valid_tokens)
{
  std::string claims = "{\"exp\":" + EXP + ",\"nbf\":" + std::to_string (NOW) +
      ",\"name\":\"Ada\",\"threads\":[\"lobby\",\"team-*\"],\"publish\":false,"
      "\"files\":false,\"presence\":false,\"iat\":1,\"sub\":\"x\"}";
  auto hs = secret_auth ();
  auto rs = key_auth (keys.rsa_file);
  auto es = key_auth (keys.ec_file);
  for (const Grants & g : {accepts (*hs, hs256 (claims)),
          accepts (*rs, mint (JWT_ALG_RS256, keys.rsa_private, claims)),
          accepts (*es, mint (JWT_ALG_ES256, keys.ec_private, claims))}) {
    assert_str (g.name, "Ada");
    fail_if (g.any_thread);
    fail_unless_equals_int (g.threads.size (), 2);
    assert_str (g.threads[1], "team-*");
    fail_if (g.publish);
    fail_if (g.files);
    fail_if (g.presence);
    fail_unless (g.expires == NOW + 600);
  }

  /* Only exp: everything is granted. */
  Grants g = accepts (*hs, hs256 ("{\"exp\":" + EXP + "}"));
  fail_unless (g.name.empty ());
  fail_unless (g.any_thread && g.publish && g.files && g.presence);
  fail_unless (g.may_join ("anything"));
  /* An empty list grants no thread. */
  g = accepts (*hs, hs256 ("{\"exp\":" + EXP + ",\"threads\":[]}"));
  fail_if (g.any_thread);
  fail_if (g.may_join ("lobby"));
}
GST_END_TEST;

GST_START_TEST (test_times)
{
  auto hs = secret_auth ();
  std::string t = hs256 ("{\"exp\":" + EXP + "}");
  /* exp is exact: valid until the second before it. */
  accepts (*hs, t, NOW + 599);
  refuses (*hs, t, "expired", NOW + 600);
  refuses (*hs, t, "expired 5 s ago", NOW + 605);

  t = hs256 ("{\"exp\":" + EXP + ",\"nbf\":" + std::to_string (NOW + 10) + "}");
  refuses (*hs, t, "not valid for another 10 s", NOW);
  accepts (*hs, t, NOW + 10);

  refuses (*hs, hs256 ("{\"name\":\"a\"}"), "'exp' is required");
  refuses (*hs, hs256 ("{}"), "'exp' is required");
}
GST_END_TEST;

GST_START_TEST (test_wrong_key)
{
  std::string claims = "{\"exp\":" + EXP + "}";
  auto hs = secret_auth ();
  auto rs = key_auth (keys.rsa_file);
  auto es = key_auth (keys.ec_file);

  refuses (*hs, mint (JWT_ALG_HS256, "another secret that is 32 bytes long",
          claims), "signature does not verify");
  std::string rs_token = mint (JWT_ALG_RS256, keys.rsa_private, claims);
  std::string es_token = mint (JWT_ALG_ES256, keys.ec_private, claims);
  refuses (*es, rs_token, "algorithm 'RS256' is not accepted");
  refuses (*rs, es_token, "algorithm 'ES256' is not accepted");
  refuses (*hs, rs_token, "algorithm 'RS256' is not accepted");
  /* The right algorithm, another key pair. */
  std::string priv, pub;
  make_key ("EC", false, priv, pub);
  refuses (*es, mint (JWT_ALG_ES256, priv, claims), "signature does not verify");
  /* Other algorithms libjwt knows are refused too. */
  refuses (*hs, mint (JWT_ALG_HS512, SECRET, claims),
      "algorithm 'HS512' is not accepted");
}
GST_END_TEST;

/* The public key's PEM used as an HMAC secret: libjwt's HS256 check would
 * pass with the same PEM as the key. */
GST_START_TEST (test_algorithm_confusion)
{
  std::string claims = "{\"exp\":" + EXP + "}";
  refuses (*key_auth (keys.rsa_file), mint (JWT_ALG_HS256, keys.rsa_public,
          claims), "algorithm 'HS256' is not accepted");
  refuses (*key_auth (keys.ec_file), mint (JWT_ALG_HS256, keys.ec_public,
          claims), "algorithm 'HS256' is not accepted");
}
GST_END_TEST;

GST_START_TEST (test_alg_none)
{
  std::string claims = "{\"exp\":" + EXP + "}";
  std::string none = mint (JWT_ALG_NONE, "", claims);
  auto hs = secret_auth ();
  refuses (*hs, none, "algorithm 'none' is not accepted");
  refuses (*key_auth (keys.rsa_file), none, "algorithm 'none' is not accepted");
  refuses (*key_auth (keys.ec_file), none, "algorithm 'none' is not accepted");
  /* A none header in front of a real token's payload and signature. */
  auto p = parts (hs256 (claims));
  refuses (*hs, b64url ("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + p[1] +
      "." + p[2], "algorithm 'none' is not accepted");
  /* Spelled otherwise, or missing. */
  refuses (*hs, b64url ("{\"alg\":\"NONE\"}") + "." + p[1] + ".",
      "algorithm 'NONE' is not accepted");
  refuses (*hs, b64url ("{\"typ\":\"JWT\"}") + "." + p[1] + "." + p[2],
      "string 'alg'");
  /* The reason stays one line whatever the header says. */
  refuses (*hs, b64url ("{\"alg\":\"HS256\\nX\"}") + "." + p[1] + "." + p[2],
      "algorithm (unprintable) is not accepted");
}
GST_END_TEST;

GST_START_TEST (test_tampered)
{
  std::string claims = "{\"exp\":" + EXP + ",\"publish\":false}";
  std::string forged = b64url ("{\"exp\":" + EXP + ",\"publish\":true}");
  auto p = parts (hs256 (claims));
  refuses (*secret_auth (), p[0] + "." + forged + "." + p[2],
      "signature does not verify");
  p = parts (mint (JWT_ALG_RS256, keys.rsa_private, claims));
  refuses (*key_auth (keys.rsa_file), p[0] + "." + forged + "." + p[2],
      "signature does not verify");
  p = parts (mint (JWT_ALG_ES256, keys.ec_private, claims));
  refuses (*key_auth (keys.ec_file), p[0] + "." + forged + "." + p[2],
      "signature does not verify");
  /* A signature cut short. */
  refuses (*key_auth (keys.ec_file), p[0] + "." + p[1] + "." +
      p[2].substr (0, 40), "signature does not verify");
}
GST_END_TEST;

GST_START_TEST (test_claim_types)
{
  auto hs = secret_auth ();
  const std::string e = "\"exp\":" + EXP + ",";
  struct { std::string claims; const char *words; } bad[] = {
    {"{\"exp\":\"" + EXP + "\"}", "'exp' is required and must be an integer"},
    {"{\"exp\":1700000600.5}", "'exp' is required and must be an integer"},
    {"{" + e + "\"nbf\":\"soon\"}", "'nbf' must be an integer"},
    {"{" + e + "\"publish\":\"yes\"}", "'publish' must be true or false"},
    {"{" + e + "\"files\":1}", "'files' must be true or false"},
    {"{" + e + "\"presence\":null}", "'presence' must be true or false"},
    {"{" + e + "\"threads\":\"lobby\"}", "'threads' must be an array"},
    {"{" + e + "\"threads\":[\"lobby\",7]}", "'threads' must be an array"},
    {"{" + e + "\"threads\":[\"\"]}", "'threads' must be an array"},
    {"{" + e + "\"threads\":[\"a\\tb\"]}", "'threads' must be an array"},
    {"{" + e + "\"name\":5}", "'name' must be a string of 1 to 128 bytes"},
    {"{" + e + "\"name\":\"\"}", "'name' must be a string of 1 to 128 bytes"},
    {"{" + e + "\"name\":\"" + std::string (129, 'n') + "\"}",
        "'name' must be a string of 1 to 128 bytes"},
  };
  for (const auto &b : bad)
    refuses (*hs, hs256 (b.claims), b.words);
  /* 128 bytes is fine. */
  Grants g = accepts (*hs, hs256 ("{" + e + "\"name\":\"" +
          std::string (128, 'n') + "\"}"));
  fail_unless_equals_int (g.name.size (), 128);
}
GST_END_TEST;

GST_START_TEST (test_oversized)
{
  auto hs = secret_auth ();
  /* A pad claim sets the size; unknown claims are ignored. */
  auto sized = [&] (std::size_t pad) {
    return hs256 ("{\"exp\":" + EXP + ",\"pad\":\"" + std::string (pad, 'x') +
        "\"}");
  };
  std::string under = sized (2900);
  fail_unless (under.size () > 3900 && under.size () <= MAX_TOKEN_BYTES,
      "%zu", under.size ());
  accepts (*hs, under);
  std::string over = sized (3100);
  fail_unless (over.size () > MAX_TOKEN_BYTES);
  refuses (*hs, over, "over the limit of 4096");
  refuses (*hs, std::string (1 << 20, 'a'), "over the limit of 4096");
}
GST_END_TEST;

GST_START_TEST (test_garbage)
{
  auto hs = secret_auth ();
  auto p = parts (hs256 ("{\"exp\":" + EXP + "}"));
  for (const std::string & t : {std::string (), std::string ("abc"),
          std::string ("a.b"), p[0] + "." + p[1] + "." + p[2] + ".x",
          std::string ("!!!!.") + p[1] + "." + p[2],
          std::string ("a+b/.") + p[1] + "." + p[2],
          std::string (".") + p[1] + "." + p[2]})
    refuses (*hs, t, "not a JWT");
  refuses (*hs, b64url ("[1,2]") + "." + p[1] + "." + p[2], "not a JWT");
  refuses (*hs, b64url ("{\"alg\":") + "." + p[1] + "." + p[2], "not a JWT");
  /* A right header over a payload that is not JSON. */
  refuses (*hs, p[0] + "." + b64url ("not json") + "." + p[2],
      "does not verify");
  refuses (*hs, p[0] + ".." + p[2], "does not verify");
}
GST_END_TEST;

GST_START_TEST (test_may_join)
{
  Grants g;
  fail_unless (g.may_join ("x"));
  g.any_thread = false;
  fail_if (g.may_join ("x"));
  g.threads = {"lobby", "team-*"};
  fail_unless (g.may_join ("lobby"));
  fail_if (g.may_join ("lobby2"));
  fail_if (g.may_join ("lobb"));
  fail_unless (g.may_join ("team-a"));
  fail_unless (g.may_join ("team-"));
  fail_if (g.may_join ("team"));
  fail_if (g.may_join ("Team-a"));
  g.threads = {"*"};
  fail_unless (g.may_join ("anything"));
}
GST_END_TEST;

namespace {

/* Runs peerjs-token; returns its exit status, stdout and stderr. */
int
run_token_tool (std::vector<std::string> args, std::string & out,
    std::string & err)
{
  std::vector<char *> argv {const_cast<char *>(PEERJS_TOKEN_BIN)};
  fail_unless (g_file_test (PEERJS_TOKEN_BIN, G_FILE_TEST_IS_EXECUTABLE),
      "%s is not built (ninja signalling/server/peerjs-token)",
      PEERJS_TOKEN_BIN);
  for (auto &a : args)
    argv.push_back (a.data ());
  argv.push_back (nullptr);
  g_autofree char *o = nullptr;
  g_autofree char *e = nullptr;
  int status = 0;
  g_autoptr (GError) error = nullptr;
  fail_unless (g_spawn_sync (nullptr, argv.data (), nullptr, G_SPAWN_DEFAULT,
          nullptr, nullptr, &o, &e, &status, &error), "%s",
      error ? error->message : "");
  out = o;
  err = e;
  return g_spawn_check_wait_status (status, nullptr) ? 0 : 1;
}

}  // namespace

GST_START_TEST (test_token_tool)
{
  std::string out, err;
  fail_unless_equals_int (run_token_tool ({"--secret", keys.secret_file,
              "--name", "Ada", "--threads", "lobby,team-*", "--no-publish",
              "--no-presence", "--ttl", "120"}, out, err), 0);
  fail_unless (out.size () > 1 && out.back () == '\n', "%s", out.c_str ());
  out.pop_back ();
  std::int64_t now = g_get_real_time () / G_USEC_PER_SEC;
  Grants g = accepts (*secret_auth (), out, now);
  assert_str (g.name, "Ada");
  fail_if (g.any_thread);
  fail_unless (g.may_join ("lobby") && g.may_join ("team-b"));
  fail_if (g.may_join ("other"));
  fail_if (g.publish);
  fail_unless (g.files);
  fail_if (g.presence);
  fail_unless (g.expires >= now + 115 && g.expires <= now + 120);
  /* Expired once the ttl has passed. */
  refuses (*secret_auth (), out, "expired", g.expires);

  /* ES256 by the key's type; the default ttl is an hour. */
  fail_unless_equals_int (run_token_tool ({"--private-key",
              keys.ec_private_file}, out, err), 0);
  out.pop_back ();
  g = accepts (*key_auth (keys.ec_file), out, now);
  fail_unless (g.any_thread && g.publish && g.files && g.presence);
  fail_unless (g.expires >= now + 3595 && g.expires <= now + 3600 + 5);

  /* Bad input: a non-zero exit, nothing on stdout, the reason on stderr. */
  struct { std::vector<std::string> args; const char *words; } bad[] = {
    {{"--private-key", keys.ec_private_file, "--alg", "RS256"}, "does not fit"},
    {{"--private-key", keys.ec_file}, "not an unencrypted PEM private key"},
    {{"--secret", write_file ("short", "short\n")}, "at least 32 bytes"},
    {{"--secret", keys.secret_file, "--threads", "a,,b"}, "not a thread name"},
    {{"--secret", keys.secret_file, "--ttl", "soon"}, "--ttl takes a whole"},
    {{"--secret", keys.secret_file, "--exp", "100"}, "not in the future"},
    {{"--secret", keys.secret_file, "--private-key", keys.ec_private_file},
        "give one key"},
    {{}, "give one key"},
  };
  for (auto &b : bad) {
    fail_unless_equals_int (run_token_tool (b.args, out, err), 1);
    fail_unless (out.empty (), "%s", out.c_str ());
    fail_unless (err.find (b.words) != std::string::npos, "'%s' not in: %s",
        b.words, err.c_str ());
  }
}
GST_END_TEST;

static Suite *
auth_suite (void)
{
  Suite *s = suite_create ("auth");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_unchecked_fixture (tc, setup_keys, teardown_keys);
  tcase_add_test (tc, test_secret_file);
  tcase_add_test (tc, test_public_key_file);
  tcase_add_test (tc, test_valid_tokens);
  tcase_add_test (tc, test_times);
  tcase_add_test (tc, test_wrong_key);
  tcase_add_test (tc, test_algorithm_confusion);
  tcase_add_test (tc, test_alg_none);
  tcase_add_test (tc, test_tampered);
  tcase_add_test (tc, test_claim_types);
  tcase_add_test (tc, test_oversized);
  tcase_add_test (tc, test_garbage);
  tcase_add_test (tc, test_may_join);
  tcase_add_test (tc, test_token_tool);
  return s;
}

GST_CHECK_MAIN (auth);
