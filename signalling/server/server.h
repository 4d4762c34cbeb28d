/* The signalling server's libsoup 3 glue: one port for HTTP (static web root,
 * /healthz, /metrics) and the WebSocket endpoint /peerjs. Everything that is
 * not socket handling lives in Router.
 *
 * The server attaches to the thread-default GMainContext current when it is
 * constructed and must be used from that context's thread only.
 */
#pragma once

#include "ice.h"
#include "router.h"

#include <glib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace peerjs {

struct ServerOptions
{
  std::string host = "0.0.0.0";
  guint port = 5000;                 /* 0: any free port */
  std::string web_root;              /* empty: no static files */
  std::string tls_cert;              /* PEM files; both or neither */
  std::string tls_key;
  std::string secret;                /* signs resume tokens; empty: random */
  RouterLimits limits;
  guint ping_interval_s = 5;         /* libsoup's keepalive is whole seconds */
  guint dead_after_pings = 2;        /* silent this many intervals: dead */
  std::uint64_t max_send_backlog = 4 * 1024 * 1024;
  int listen_backlog = 4096;

  /* Auth tokens (docs/protocol.md "Tokens and grants"): one of the two
   * turns them on; neither leaves the server open. */
  std::string auth_secret_file;      /* HS256 key */
  std::string auth_public_key_file;  /* RS256 or ES256 PEM public key */
  /* Origins a WebSocket upgrade may come from ("*": any). Always allowed:
   * no Origin header, and the server's own origin. */
  std::vector<std::string> allow_origins;
  /* Per-connection token buckets; 0 turns a limit off. */
  double rate_messages = 200;        /* per second */
  double rate_burst = 400;           /* messages */
  double rate_bytes = 1024 * 1024;   /* per second; the burst is 4 s of it */
  guint max_per_address = 256;       /* open connections per IP; 0: no cap */
  double handshake_timeout_s = 10;   /* to send a whole request */
  std::size_t max_header_bytes = 16 * 1024;
  /* STUN/TURN servers for the greeting (--ice-server, --turn-secret). */
  IceConfig ice;
  /* Cluster mode (docs/scaling.md): redis://HOST[:PORT][/DB] or
   * unix:/PATH[?db=N]; empty: a single node, no Redis. */
  std::string redis;
  std::string node_id;               /* empty: default_node_id () */
  std::int64_t node_ttl_ms = 5000;   /* heartbeat key's TTL */
  /* Messages for other nodes kept while Redis cannot be reached; past
   * this their senders get queue-full. */
  std::size_t redis_outage_bytes = 8 * 1024 * 1024;
};

/* Close code for a session that kept flooding past its rate limit. */
constexpr gushort CLOSE_FLOODING = 4003;
/* The session's auth token expired unrenewed; the session has ended. */
constexpr gushort CLOSE_TOKEN_EXPIRED = 4004;

/* A key for resume tokens: 32 bytes from /dev/urandom, as a hex digest. */
bool random_secret (std::string & out, GError ** error);

class SignallingServer
{
public:
  explicit SignallingServer (ServerOptions options);
  ~SignallingServer ();
  SignallingServer (const SignallingServer &) = delete;
  SignallingServer & operator= (const SignallingServer &) = delete;

  /* Bind and listen. */
  bool start (GError ** error);
  /* Close every connection (sessions stay resumable by a new process that
   * shares the secret) and stop listening. */
  void stop ();

  guint port () const;
  std::string url () const;          /* ws://host:port/peerjs */
  std::string metrics () const;      /* Prometheus text format */
  const Router & router () const;
  /* Cluster mode: this node's id; empty without --redis. */
  std::string node_id () const;
  /* False while Redis is unreachable in cluster mode (/healthz). */
  bool healthy () const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace peerjs
