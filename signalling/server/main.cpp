/* peerjs-signalling: the relay server's command line. */
#include "cluster.h"
#include "server.h"

#include <glib-unix.h>
#include <glib/gstdio.h>

#include <cstdio>
#include <cstdlib>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/resource.h>


namespace {

/* The web root next to an installed binary, else the source tree's. */
std::string
default_web_root ()
{
  for (const char *dir : {PEERJS_INSTALLED_WEB_ROOT, PEERJS_SOURCE_WEB_ROOT})
    if (g_file_test (dir, G_FILE_TEST_IS_DIR))
      return dir;
  return {};
}

/* Resume tokens survive a restart only if the secret does: keep it in a
 * file, created on first use and readable by its owner only. */
bool
load_secret (const char *path, std::string & secret, GError ** error)
{
  char *contents = nullptr;
  gsize len = 0;
  if (g_file_test (path, G_FILE_TEST_EXISTS)) {
    if (!g_file_get_contents (path, &contents, &len, error))
      return false;
    secret.assign (contents, len);
    g_free (contents);
    if (secret.size () < 16) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
          "secret file %s holds %zu bytes; at least 16 are needed", path,
          secret.size ());
      return false;
    }
    return true;
  }
  if (!peerjs::random_secret (secret, error))
    return false;
  int fd = g_open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0 || write (fd, secret.data (), secret.size ())
      != static_cast<ssize_t>(secret.size ())) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno),
        "cannot write secret file %s: %s", path, g_strerror (errno));
    if (fd >= 0)
      close (fd);
    return false;
  }
  close (fd);
  return true;
}

/* Every connection is a descriptor: take the hard limit. Returns the
 * limit now, 0 for none. */
std::uint64_t
raise_fd_limit ()
{
  struct rlimit rl;
  if (getrlimit (RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit (RLIMIT_NOFILE, &rl);
    getrlimit (RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur == RLIM_INFINITY ? 0 : rl.rlim_cur;
}

/* "a, b,c" -> {"a", "b", "c"} */
std::vector<std::string>
split_list (const char *list)
{
  std::vector<std::string> out;
  g_auto (GStrv) parts = g_strsplit (list, ",", -1);
  for (char **p = parts; *p; p++) {
    g_strstrip (*p);
    if (**p)
      out.emplace_back (*p);
  }
  return out;
}

/* The addresses a person can open the server at: `host` itself, or, for
 * the wildcards, loopback and every address of this machine's interfaces
 * that are up (IPv4 for 0.0.0.0; IPv6 too for ::, link-local ones left
 * out: they need the interface in the URL). Each with whether it is
 * loopback (this machine only). */
std::vector<std::pair<std::string, bool>>
open_addresses (const std::string & host)
{
  std::vector<std::pair<std::string, bool>> out;
  bool any4 = host == "0.0.0.0", any6 = host == "::";
  if (!any4 && !any6) {
    in_addr a4;
    in6_addr a6;
    bool loopback = host == "localhost"
        || (inet_pton (AF_INET, host.c_str (), &a4) == 1
            && (ntohl (a4.s_addr) >> 24) == 127)
        || (inet_pton (AF_INET6, host.c_str (), &a6) == 1
            && IN6_IS_ADDR_LOOPBACK (&a6));
    out.emplace_back (host, loopback);
    return out;
  }
  out.emplace_back ("127.0.0.1", true);
  if (any6)
    out.emplace_back ("::1", true);
  struct ifaddrs *list = nullptr;
  if (getifaddrs (&list) != 0)
    return out;
  for (struct ifaddrs *i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP)
        || (i->ifa_flags & IFF_LOOPBACK))
      continue;
    char text[INET6_ADDRSTRLEN] = "";
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop (AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr,
          text, sizeof text);
    } else if (i->ifa_addr->sa_family == AF_INET6 && any6) {
      auto *a6 = &((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL (a6))
        continue;
      inet_ntop (AF_INET6, a6, text, sizeof text);
    }
    if (*text)
      out.emplace_back (text, false);
  }
  freeifaddrs (list);
  return out;
}

}  // namespace

int
main (int argc, char **argv)
{
  peerjs::ServerOptions o;
  peerjs::RouterLimits &l = o.limits;
  int port = 5000;
  g_autofree char *host = nullptr;
  g_autofree char *web_root = nullptr;
  g_autofree char *tls_cert = nullptr;
  g_autofree char *tls_key = nullptr;
  g_autofree char *secret_file = nullptr;
  double grace = l.grace_us / 1e6;
  int ping = o.ping_interval_s;
  int max_message = l.protocol.max_message_size;
  int max_sessions = l.max_sessions;
  int max_members = l.max_members_per_thread;
  int max_threads = l.max_threads_per_session;
  int max_tags = l.max_tags_per_session;
  int max_watches = l.max_watches_per_session;
  int max_queue = l.away_messages;
  g_autofree char *auth_secret = nullptr;
  g_autofree char *auth_public_key = nullptr;
  g_autofree char *allow_origin = nullptr;
  double rate_messages = o.rate_messages;
  double rate_burst = o.rate_burst;
  double rate_bytes = o.rate_bytes;
  int max_per_address = o.max_per_address;
  double handshake_timeout = o.handshake_timeout_s;
  g_auto (GStrv) ice_servers = nullptr;
  g_autofree char *turn_secret = nullptr;
  double turn_ttl = o.ice.turn_ttl_s;
  g_autofree char *redis = nullptr;
  g_autofree char *node_id = nullptr;
  gboolean verbose = FALSE;

  GOptionEntry entries[] = {
    {"port", 'p', 0, G_OPTION_ARG_INT, &port, "TCP port for HTTP and "
          "WebSocket (default 5000; 0 picks a free one)", "N"},
    {"host", 0, 0, G_OPTION_ARG_STRING, &host, "Address to listen on "
          "(default 0.0.0.0)", "ADDR"},
    {"web-root", 0, 0, G_OPTION_ARG_FILENAME, &web_root, "Folder served "
          "over HTTP (default: the installed web client)", "DIR"},
    {"tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &tls_cert, "PEM certificate: "
          "serve https and wss", "FILE"},
    {"tls-key", 0, 0, G_OPTION_ARG_FILENAME, &tls_key, "PEM private key "
          "for --tls-cert", "FILE"},
    {"secret-file", 0, 0, G_OPTION_ARG_FILENAME, &secret_file, "Key that "
          "signs resume tokens, created if missing; with it, sessions "
          "resume across restarts", "FILE"},
    {"grace", 0, 0, G_OPTION_ARG_DOUBLE, &grace, "Seconds a dropped session "
          "is kept for resumption (default 30)", "S"},
    {"ping-interval", 0, 0, G_OPTION_ARG_INT, &ping, "Seconds between pings; "
          "a connection silent for two intervals is dropped (default 5)", "S"},
    {"max-message-size", 0, 0, G_OPTION_ARG_INT, &max_message, "Largest "
          "message in bytes (default 65536)", "BYTES"},
    {"max-sessions", 0, 0, G_OPTION_ARG_INT, &max_sessions, "Most sessions "
          "at once (default 50000)", "N"},
    {"max-thread-members", 0, 0, G_OPTION_ARG_INT, &max_members, "Most "
          "members in one thread (default 1024)", "N"},
    {"max-threads", 0, 0, G_OPTION_ARG_INT, &max_threads, "Most threads one "
          "session may be in (default 64)", "N"},
    {"max-tags", 0, 0, G_OPTION_ARG_INT, &max_tags, "Most tags one session "
          "may carry (default 32)", "N"},
    {"max-watches", 0, 0, G_OPTION_ARG_INT, &max_watches, "Most tags one "
          "session may watch (default 64)", "N"},
    {"max-queue", 0, 0, G_OPTION_ARG_INT, &max_queue, "Most messages held "
          "for a session while it is away (default 512)", "N"},
    {"auth-secret", 0, 0, G_OPTION_ARG_FILENAME, &auth_secret, "Require "
          "auth tokens (JWT, HS256) signed with the key in FILE, at least 32 "
          "bytes; clients present them as ?token=", "FILE"},
    {"auth-public-key", 0, 0, G_OPTION_ARG_FILENAME, &auth_public_key,
          "Require auth tokens (JWT, RS256 or ES256) that verify with the PEM "
          "public key in FILE", "FILE"},
    {"allow-origin", 0, 0, G_OPTION_ARG_STRING, &allow_origin, "Comma list "
          "of origins (scheme://host[:port]) whose pages may connect, or *; "
          "always allowed: clients that send no Origin, and pages of this "
          "server (default: only those)", "LIST"},
    {"rate-messages", 0, 0, G_OPTION_ARG_DOUBLE, &rate_messages, "Messages "
          "a second one session may send (default 200; 0: no limit)", "N"},
    {"rate-burst", 0, 0, G_OPTION_ARG_DOUBLE, &rate_burst, "Messages a "
          "session may send at once above its rate (default 400)", "N"},
    {"rate-bytes", 0, 0, G_OPTION_ARG_DOUBLE, &rate_bytes, "Bytes a second "
          "one session may send, with a burst of four seconds' worth "
          "(default 1048576; 0: no limit)", "N"},
    {"max-per-address", 0, 0, G_OPTION_ARG_INT, &max_per_address, "Open "
          "connections from one IP address, and sessions it holds with them "
          "and away (default 256; 0: no cap)", "N"},
    {"handshake-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &handshake_timeout,
          "Seconds a connection has to send its whole request (default 10)",
          "S"},
    {"ice-server", 0, 0, G_OPTION_ARG_STRING_ARRAY, &ice_servers, "STUN or "
          "TURN server handed to every session in its greeting: stun:HOST"
          "[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:...; "
          "repeat for several", "URL"},
    {"turn-secret", 0, 0, G_OPTION_ARG_FILENAME, &turn_secret, "Shared "
          "secret of the TURN server (coturn's static-auth-secret with "
          "use-auth-secret): each session gets credentials of its own, "
          "minted from it; needed with turn: URLs", "FILE"},
    {"turn-ttl", 0, 0, G_OPTION_ARG_DOUBLE, &turn_ttl, "Seconds a minted "
          "TURN credential is valid (default 86400)", "S"},
    {"redis", 0, 0, G_OPTION_ARG_STRING, &redis, "Cluster mode: share "
          "threads with the other nodes on this Redis, redis://HOST[:PORT]"
          "[/DB] or unix:/PATH[?db=N] (see docs/scaling.md)", "URL"},
    {"node-id", 0, 0, G_OPTION_ARG_STRING, &node_id, "This node's name in "
          "the cluster: 1 to 64 letters, digits, '.', '_', '-' (default: "
          "HOSTNAME-PID-RANDOM)", "ID"},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log connections and "
          "dropped sessions", nullptr},
    {nullptr}
  };

  g_autoptr (GOptionContext) ctx = g_option_context_new (
      "- the peerjs signalling server");
  g_option_context_set_summary (ctx, "Relays threads, presence, chat and "
      "WebRTC negotiation between browsers and GStreamer pipelines.\n"
      "WebSocket endpoint: /peerjs; health: /healthz; metrics: /metrics; "
      "everything else: files from the web root.");
  g_option_context_add_main_entries (ctx, entries, nullptr);
  g_autoptr (GError) error = nullptr;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    g_printerr ("peerjs-signalling: %s (see --help)\n", error->message);
    return 2;
  }

  auto positive = [] (int v, const char *name) {
    if (v > 0)
      return true;
    g_printerr ("peerjs-signalling: --%s must be positive\n", name);
    return false;
  };
  if (port < 0 || port > 65535) {
    g_printerr ("peerjs-signalling: --port must be 0 to 65535\n");
    return 2;
  }
  if (!positive (ping, "ping-interval") || !positive (max_message,
          "max-message-size") || !positive (max_sessions, "max-sessions")
      || !positive (max_members, "max-thread-members")
      || !positive (max_threads, "max-threads") || !positive (max_tags,
          "max-tags") || !positive (max_watches, "max-watches")
      || !positive (max_queue, "max-queue") || grace < 0)
    return 2;
  if (rate_messages < 0 || rate_burst < 0 || rate_bytes < 0
      || max_per_address < 0 || handshake_timeout <= 0) {
    g_printerr ("peerjs-signalling: --rate-*, --max-per-address must not be "
        "negative and --handshake-timeout must be positive\n");
    return 2;
  }
  if (auth_secret && auth_public_key) {
    g_printerr ("peerjs-signalling: --auth-secret and --auth-public-key "
        "exclude each other\n");
    return 2;
  }
  if ((tls_cert == nullptr) != (tls_key == nullptr)) {
    g_printerr ("peerjs-signalling: --tls-cert and --tls-key go together\n");
    return 2;
  }
  for (char **u = ice_servers; u && *u; u++) {
    bool turn = false;
    std::string why;
    if (!peerjs::parse_ice_url (*u, turn, why)) {
      g_printerr ("peerjs-signalling: --ice-server %s\n", why.c_str ());
      return 2;
    }
    (turn ? o.ice.turn_urls : o.ice.stun_urls).emplace_back (*u);
  }
  if (!o.ice.turn_urls.empty () && !turn_secret) {
    g_printerr ("peerjs-signalling: --ice-server %s needs --turn-secret: "
        "TURN servers take only credentials minted from their secret\n",
        o.ice.turn_urls[0].c_str ());
    return 2;
  }
  if (turn_secret && o.ice.turn_urls.empty ()) {
    g_printerr ("peerjs-signalling: --turn-secret without a turn: or "
        "turns: --ice-server has no use\n");
    return 2;
  }
  if (turn_ttl < 60 || turn_ttl > 7 * 86400.0) {
    g_printerr ("peerjs-signalling: --turn-ttl must be 60 to 604800 "
        "seconds\n");
    return 2;
  }
  o.ice.turn_ttl_s = static_cast<std::int64_t>(turn_ttl);
  if (turn_secret && !peerjs::load_turn_secret (turn_secret,
          o.ice.turn_secret, &error)) {
    g_printerr ("peerjs-signalling: --turn-secret: %s\n", error->message);
    return 2;
  }
  if (redis) {
    peerjs::RedisAddress address;
    std::string why;
    if (!peerjs::parse_redis_url (redis, address, why)) {
      g_printerr ("peerjs-signalling: --redis %s: %s\n", redis, why.c_str ());
      return 2;
    }
    o.redis = redis;
    o.node_id = node_id ? node_id : peerjs::default_node_id ();
    if (!peerjs::valid_node_id (o.node_id)) {
      g_printerr ("peerjs-signalling: --node-id takes 1 to 64 letters, "
          "digits, '.', '_' or '-'\n");
      return 2;
    }
  } else if (node_id) {
    g_printerr ("peerjs-signalling: --node-id needs --redis\n");
    return 2;
  }
  if (verbose)
    g_setenv ("G_MESSAGES_DEBUG", G_LOG_DOMAIN, TRUE);

  o.port = port;
  if (host)
    o.host = host;
  o.web_root = web_root ? web_root : default_web_root ();
  if (tls_cert) {
    o.tls_cert = tls_cert;
    o.tls_key = tls_key;
  }
  if (secret_file && !load_secret (secret_file, o.secret, &error)) {
    g_printerr ("peerjs-signalling: %s\n", error->message);
    return 1;
  }
  l.grace_us = static_cast<std::int64_t>(grace * G_USEC_PER_SEC);
  o.ping_interval_s = ping;
  l.protocol.max_message_size = max_message;
  l.max_sessions = max_sessions;
  l.max_members_per_thread = max_members;
  l.max_threads_per_session = max_threads;
  l.max_tags_per_session = max_tags;
  l.max_watches_per_session = max_watches;
  l.away_messages = max_queue;
  if (auth_secret)
    o.auth_secret_file = auth_secret;
  if (auth_public_key)
    o.auth_public_key_file = auth_public_key;
  if (allow_origin)
    o.allow_origins = split_list (allow_origin);
  o.rate_messages = rate_messages;
  o.rate_burst = rate_burst;
  o.rate_bytes = rate_bytes;
  o.max_per_address = max_per_address;
  o.handshake_timeout_s = handshake_timeout;
  std::uint64_t files = raise_fd_limit ();

  g_autoptr (GMainLoop) loop = g_main_loop_new (nullptr, FALSE);
  peerjs::SignallingServer server (o);
  if (!server.start (&error)) {
    g_printerr ("peerjs-signalling: cannot start on %s:%d: %s\n",
        o.host.c_str (), port, error->message);
    return 1;
  }
  auto quit = +[] (gpointer data) -> gboolean {
    g_main_loop_quit (static_cast<GMainLoop *>(data));
    return G_SOURCE_REMOVE;
  };
  g_unix_signal_add (SIGINT, quit, loop);
  g_unix_signal_add (SIGTERM, quit, loop);

  std::string shown = o.host == "0.0.0.0" || o.host == "::" ? "localhost"
      : o.host.find (':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::string http = (o.tls_cert.empty () ? "http://" : "https://") + shown
      + ":" + std::to_string (server.port ()) + "/";
  g_print ("peerjs-signalling listening on %s (WebSocket %s)\n", http.c_str (),
      server.url ().c_str ());
  /* Where to open it, from this machine and from others. */
  for (const auto & [address, loopback] : open_addresses (o.host)) {
    std::string name = address.find (':') == std::string::npos ? address
        : "[" + address + "]";
    std::string base = std::string (o.tls_cert.empty () ? "" : "s") + "://"
        + name + ":" + std::to_string (server.port ()) + "/";
    std::string what = o.web_root.empty () ? "WebSocket ws" + base + "peerjs"
        : "demo page";
    g_print ("listening on http%s (%s%s)\n", base.c_str (), what.c_str (),
        loopback ? ", this machine only" : "");
  }
  if (o.web_root.empty ())
    g_print ("no web root: only /peerjs, /healthz and /metrics are served\n");
  else
    g_print ("serving %s\n", o.web_root.c_str ());
  if (!secret_file)
    g_print ("resume tokens last until this process exits "
        "(--secret-file keeps them across restarts)\n");
  if (files > 0 && files < l.max_sessions + 64)
    g_print ("open files are limited to %" G_GUINT64_FORMAT " (ulimit -n): "
        "about %" G_GUINT64_FORMAT " connections at once, fewer than "
        "--max-sessions %zu\n", files, files > 64 ? files - 64 : 0,
        l.max_sessions);
  if (auth_secret || auth_public_key)
    g_print ("auth tokens required (%s, %s)\n", auth_secret ? "HS256"
        : "RS256/ES256", auth_secret ? auth_secret : auth_public_key);
  else
    g_print ("open: no auth tokens required (--auth-secret or "
        "--auth-public-key turns them on)\n");

  if (!o.ice.empty ())
    g_print ("ICE servers for every session: %zu STUN, %zu TURN URLs%s\n",
        o.ice.stun_urls.size (), o.ice.turn_urls.size (),
        o.ice.turn_urls.empty () ? "" : ", credentials minted per session");
  else
    g_print ("no ICE servers handed out: members reach each other only "
        "directly (--ice-server adds STUN/TURN)\n");

  if (!o.redis.empty ())
    g_print ("cluster node %s, Redis at %s\n", o.node_id.c_str (),
        o.redis.c_str ());

  g_main_loop_run (loop);
  g_print ("peerjs-signalling: shutting down\n");
  server.stop ();
  return 0;
}
