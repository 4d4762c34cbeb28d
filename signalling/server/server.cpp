#include "server.h"

#include "websocket.h"

#include <libsoup/soup.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>
#include <unordered_map>


namespace peerjs {

namespace {

/* Close codes the server uses besides the standard ones. */
constexpr gushort CLOSE_REPLACED = 4000;     /* the session resumed elsewhere */
constexpr gushort CLOSE_DEAD = 4001;         /* no traffic, not even pongs */
constexpr gushort CLOSE_SLOW = 4002;         /* send backlog over the bound */
constexpr gushort CLOSE_TRY_LATER = 1013;    /* RFC 6455 registry: try again later */
constexpr gushort CLOSE_RESUME = 4100;       /* from a client: keep my session */

struct Upgrade
{
  SignallingServer::Impl *impl;
  std::string resume;
  std::int64_t last_seq = -1;
};

}  // namespace

/* One WebSocket client. It is the WebSocket's listener and hands what it
 * hears to the server. */
struct Connection : WebSocket::Listener
{
  SignallingServer::Impl *impl = nullptr;
  std::unique_ptr<WebSocket> ws;
  std::string session;               /* empty once detached from the router */
  std::int64_t last_ping_us = 0;

  void on_text (WebSocket & ws, std::string_view text) override;
  void on_binary (WebSocket & ws) override;
  void on_oversize (WebSocket & ws, std::uint64_t size) override;
  void on_read_end (WebSocket & ws) override;
  void on_closed (WebSocket & ws) override;

  bool flush_pending = false;        /* in Impl::pending */
};

struct SignallingServer::Impl
{
  ServerOptions options;
  Router router;
  GMainContext *context = nullptr;
  SoupServer *server = nullptr;
  GSocket *socket = nullptr;
  GSource *timer = nullptr;
  guint port = 0;

  std::set<Connection *> connections;
  std::unordered_map<std::string, Connection *> by_session;
  /* Byte totals of connections already closed. */
  std::uint64_t closed_bytes_in = 0;
  std::uint64_t closed_bytes_out = 0;
  std::uint64_t dead_closed = 0;
  std::uint64_t slow_closed = 0;
  /* While a read is handed over, deliveries are queued and written once
   * at its end: a client's burst of messages to one partner becomes one
   * write instead of one per message. */
  bool reading = false;
  std::vector<Connection *> pending;

  Impl (ServerOptions o, std::string secret)
    : options (std::move (o)), router (options.limits, std::move (secret)) { }

  void dispatch (const std::vector<Delivery> & deliveries);
  void flush ();
  void unmap (Connection * c, bool leaving);
  void detach (Connection * c, gushort code, const char *reason);
  void accept (SoupServerMessage * msg, const Upgrade & up);
  void on_text (Connection * c, std::string_view text);
  void on_closed (Connection * c);
  void on_tick ();
  void serve_static (SoupServerMessage * msg, const char *path);
};

void
Connection::on_text (WebSocket &, std::string_view text)
{
  impl->reading = true;
  impl->on_text (this, text);
}

void
Connection::on_binary (WebSocket &)
{
  impl->reading = true;
  if (!session.empty ())
    impl->dispatch (impl->router.reject (session, ErrorCode::BadMessage,
            "binary frames are not part of the protocol; send JSON text"));
}

void
Connection::on_oversize (WebSocket &, std::uint64_t size)
{
  impl->reading = true;
  if (!session.empty ())
    impl->dispatch (impl->router.reject (session, ErrorCode::TooLarge,
            "message of at least " + std::to_string (size) + " bytes exceeds "
            "the limit of " + std::to_string (
                impl->options.limits.protocol.max_message_size) +
            "; it was dropped"));
}

void
Connection::on_read_end (WebSocket &)
{
  impl->reading = false;
  impl->flush ();
}

void
Connection::on_closed (WebSocket &)
{
  impl->on_closed (this);
}

bool
random_secret (std::string & out, GError ** error)
{
  guint8 raw[32];
  FILE *f = fopen ("/dev/urandom", "rb");
  bool ok = f && fread (raw, 1, sizeof raw, f) == sizeof raw;
  if (f)
    fclose (f);
  if (!ok) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_IO,
        "cannot read /dev/urandom to make a secret");
    return false;
  }
  g_autofree char *hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, raw,
      sizeof raw);
  out = hex;
  return true;
}

/* Queue every delivery; each connection is written once, at the end of
 * the read being handed over, or now when there is none. */
void
SignallingServer::Impl::dispatch (const std::vector<Delivery> & deliveries)
{
  for (const auto &d : deliveries) {
    auto it = by_session.find (d.session);
    if (it == by_session.end () || !it->second->ws->is_open ())
      continue;
    Connection *c = it->second;
    c->ws->send_text (*d.text, false);
    if (!c->flush_pending) {
      c->flush_pending = true;
      pending.push_back (c);
    }
  }
  if (!reading)
    flush ();
}

void
SignallingServer::Impl::flush ()
{
  std::vector<Connection *> now;
  now.swap (pending);
  for (Connection *c : now) {
    c->flush_pending = false;
    c->ws->flush ();
    std::uint64_t backlog = c->ws->backlog ();
    if (backlog > options.max_send_backlog && !c->session.empty ()) {
      g_info ("session %s reads too slowly (%" G_GUINT64_FORMAT " bytes "
          "waiting); closing its connection", c->session.c_str (), backlog);
      slow_closed++;
      detach (c, CLOSE_SLOW, "too slow: send backlog over the bound");
    }
  }
}

/* Part the connection from its session: the session ends now (`leaving`)
 * or starts its grace period. A connection replaced by a resume has
 * already been parted. */
void
SignallingServer::Impl::unmap (Connection * c, bool leaving)
{
  if (c->session.empty ())
    return;
  auto it = by_session.find (c->session);
  if (it != by_session.end () && it->second == c) {
    by_session.erase (it);
    dispatch (leaving ? router.leave (c->session)
        : router.drop (c->session, g_get_monotonic_time ()));
  }
  c->session.clear ();
}

/* Close the connection; its session waits to be resumed. */
void
SignallingServer::Impl::detach (Connection * c, gushort code,
    const char *reason)
{
  unmap (c, false);
  c->ws->close (code, reason ? reason : "");
}

void
SignallingServer::Impl::on_text (Connection * c, std::string_view text)
{
  if (c->session.empty ())
    return;
  std::string session = c->session;
  dispatch (router.receive (session, text, g_get_monotonic_time ()));
  if (!router.has_session (session) && c->session == session) {
    /* socket:disconnect: the session ended at the client's request. */
    by_session.erase (session);
    c->session.clear ();
    c->ws->close (1000, "session ended");
  }
}

void
SignallingServer::Impl::on_closed (Connection * c)
{
  /* A client that closes is not coming back, whatever its code (none
   * at all from ws.close () in a browser or in Node): end it now rather
   * than after the grace period. Only CLOSE_RESUME says otherwise. A close
   * frame that answers ours (4001, 4002), or a connection lost without
   * one, leaves the session away, to be resumed. */
  bool ended = c->ws->peer_closed_first ()
      && c->ws->peer_close_code () != CLOSE_RESUME;
  unmap (c, ended);
  closed_bytes_in += c->ws->bytes_read ();
  closed_bytes_out += c->ws->bytes_written ();
  connections.erase (c);
  if (c->flush_pending)
    pending.erase (std::find (pending.begin (), pending.end (), c));
  delete c;
}

void
SignallingServer::Impl::on_tick ()
{
  std::int64_t now = g_get_monotonic_time ();
  std::int64_t interval = static_cast<std::int64_t>(options.ping_interval_s)
      * G_USEC_PER_SEC;
  std::int64_t dead_after = interval * options.dead_after_pings;
  std::vector<Connection *> dead;
  for (Connection *c : connections) {
    c->ws->tick (now);
    if (c->session.empty ())
      continue;
    if (now - c->ws->last_read_us () > dead_after) {
      dead.push_back (c);
    } else if (now - c->last_ping_us >= interval) {
      c->last_ping_us = now;
      c->ws->ping ();
    }
  }
  for (Connection *c : dead) {
    g_info ("session %s silent for %.1f s; taking it as gone",
        c->session.c_str (), (now - c->ws->last_read_us ()) / 1e6);
    dead_closed++;
    detach (c, CLOSE_DEAD, "no answer to pings");
  }
  dispatch (router.tick (now));
}

void
SignallingServer::Impl::accept (SoupServerMessage * msg, const Upgrade & up)
{
  g_autoptr (GIOStream) stream = soup_server_message_steal_connection (msg);
  auto *c = new Connection ();
  c->impl = this;
  c->last_ping_us = g_get_monotonic_time ();
  c->ws = std::make_unique<WebSocket> (stream,
      options.limits.protocol.max_message_size, *c);
  connections.insert (c);

  OpenResult r = router.open (up.resume, up.last_seq, g_get_monotonic_time ());
  if (!r.ok) {
    c->ws->send_text (r.refusal);
    c->ws->close (CLOSE_TRY_LATER, "server full");
    return;
  }
  if (r.replaced) {
    auto it = by_session.find (r.session);
    if (it != by_session.end ()) {
      Connection *old = it->second;
      by_session.erase (it);
      old->session.clear ();
      old->ws->close (CLOSE_REPLACED, "session resumed on another connection");
    }
  }
  c->session = r.session;
  by_session[r.session] = c;
  dispatch (r.deliveries);
}

void
SignallingServer::Impl::serve_static (SoupServerMessage * msg, const char *path)
{
  if (options.web_root.empty ()) {
    soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, nullptr);
    return;
  }
  std::string rel = path;
  if (rel.empty () || rel.back () == '/')
    rel += "index.html";
  /* No way out of the web root: refuse any ".." segment and hidden files. */
  g_auto (GStrv) parts = g_strsplit (rel.c_str (), "/", -1);
  for (char **p = parts; *p; p++) {
    if (**p == '.') {
      soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, nullptr);
      return;
    }
  }
  g_autofree char *file = g_build_filename (options.web_root.c_str (),
      rel.c_str (), nullptr);
  char *contents = nullptr;
  gsize len = 0;
  if (!g_file_test (file, G_FILE_TEST_IS_REGULAR)
      || !g_file_get_contents (file, &contents, &len, nullptr)) {
    soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, nullptr);
    return;
  }
  const char *type = "application/octet-stream";
  if (g_str_has_suffix (file, ".html"))
    type = "text/html; charset=utf-8";
  else if (g_str_has_suffix (file, ".js") || g_str_has_suffix (file, ".mjs"))
    type = "text/javascript; charset=utf-8";
  else if (g_str_has_suffix (file, ".css"))
    type = "text/css; charset=utf-8";
  else if (g_str_has_suffix (file, ".svg"))
    type = "image/svg+xml";
  else if (g_str_has_suffix (file, ".png"))
    type = "image/png";
  else if (g_str_has_suffix (file, ".json"))
    type = "application/json";
  soup_server_message_set_status (msg, SOUP_STATUS_OK, nullptr);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg),
      "Cache-Control", "no-cache");
  soup_server_message_set_response (msg, type, SOUP_MEMORY_TAKE, contents, len);
}

SignallingServer::SignallingServer (ServerOptions options)
{
  std::string secret = options.secret;
  g_autoptr (GError) error = nullptr;
  if (secret.empty () && !random_secret (secret, &error)) {
    /* g_random is seeded from /dev/urandom too, when it can be read. */
    g_warning ("%s; using GLib's generator", error->message);
    for (int i = 0; i < 8; i++)
      secret += std::to_string (g_random_int ());
  }
  options.limits.ping_interval_us = static_cast<std::int64_t>(
      options.ping_interval_s) * G_USEC_PER_SEC;
  impl_ = std::make_unique<Impl> (std::move (options), std::move (secret));
  impl_->context = g_main_context_ref_thread_default ();
}

SignallingServer::~SignallingServer ()
{
  stop ();
  g_main_context_unref (impl_->context);
}

bool
SignallingServer::start (GError ** error)
{
  Impl *impl = impl_.get ();
  const ServerOptions & o = impl->options;
  SoupServerListenOptions listen = (SoupServerListenOptions) 0;

  impl->server = soup_server_new ("server-header", "peerjs-signalling ",
      nullptr);
  if (!o.tls_cert.empty () || !o.tls_key.empty ()) {
    g_autoptr (GTlsCertificate) cert = g_tls_certificate_new_from_files (
        o.tls_cert.c_str (), o.tls_key.c_str (), error);
    if (!cert)
      return false;
    soup_server_set_tls_certificate (impl->server, cert);
    listen = SOUP_SERVER_LISTEN_HTTPS;
  }

  soup_server_add_handler (impl->server, "/peerjs", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable * query,
          gpointer data) {
        auto *self = static_cast<Impl *>(data);
        if (!soup_websocket_server_process_handshake (msg, nullptr, nullptr,
                nullptr, nullptr)) {
          soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_STATIC,
              "peerjs: this endpoint speaks WebSocket only\n", 45);
          return;
        }
        auto *up = new Upgrade ();
        up->impl = self;
        if (query) {
          if (auto *r = static_cast<const char *>(g_hash_table_lookup (query,
                      "resume")))
            up->resume = r;
          if (auto *l = static_cast<const char *>(g_hash_table_lookup (query,
                      "last"))) {
            guint64 v = 0;
            if (g_ascii_string_to_unsigned (l, 10, 0, G_MAXINT64, &v, nullptr))
              up->last_seq = static_cast<std::int64_t>(v);
          }
        }
        g_signal_connect_data (msg, "wrote-informational",
            G_CALLBACK (+[] (SoupServerMessage * m, gpointer d) {
                  auto *u = static_cast<Upgrade *>(d);
                  u->impl->accept (m, *u);
                }), up, +[] (gpointer d, GClosure *) {
              delete static_cast<Upgrade *>(d);
            }, (GConnectFlags) 0);
      }, impl, nullptr);

  soup_server_add_handler (impl->server, "/healthz", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable *, gpointer) {
        soup_server_message_set_status (msg, SOUP_STATUS_OK, nullptr);
        soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_STATIC,
            "ok\n", 3);
      }, nullptr, nullptr);

  soup_server_add_handler (impl->server, "/metrics", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable *, gpointer data) {
        auto *self = static_cast<SignallingServer *>(data);
        std::string text = self->metrics ();
        soup_server_message_set_status (msg, SOUP_STATUS_OK, nullptr);
        soup_server_message_set_response (msg, "text/plain; version=0.0.4",
            SOUP_MEMORY_COPY, text.data (), text.size ());
      }, this, nullptr);

  soup_server_add_handler (impl->server, nullptr, +[] (SoupServer *,
          SoupServerMessage * msg, const char *path, GHashTable *,
          gpointer data) {
        const char *method = soup_server_message_get_method (msg);
        if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0) {
          soup_server_message_set_status (msg,
              SOUP_STATUS_METHOD_NOT_ALLOWED, nullptr);
          return;
        }
        static_cast<Impl *>(data)->serve_static (msg, path);
      }, impl, nullptr);

  /* Our own listening socket: soup_server_listen_local () listens with a
   * backlog of 10, and bursts of connecting clients then wait on kernel
   * retries. */
  g_autoptr (GInetAddress) addr = g_inet_address_new_from_string (o.host.c_str ());
  if (!addr) {
    g_autoptr (GResolver) resolver = g_resolver_get_default ();
    GList *found = g_resolver_lookup_by_name (resolver, o.host.c_str (),
        nullptr, error);
    if (!found)
      return false;
    addr = G_INET_ADDRESS (g_object_ref (found->data));
    g_resolver_free_addresses (found);
  }
  g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (addr, o.port);
  impl->socket = g_socket_new (g_inet_address_get_family (addr),
      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
  if (!impl->socket)
    return false;
  g_socket_set_listen_backlog (impl->socket, o.listen_backlog);
  if (!g_socket_bind (impl->socket, sa, TRUE, error)
      || !g_socket_listen (impl->socket, error)
      || !soup_server_listen_socket (impl->server, impl->socket, listen, error))
    return false;
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (impl->socket,
      error);
  if (!local)
    return false;
  impl->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));

  impl->timer = g_timeout_source_new (250);
  g_source_set_callback (impl->timer, +[] (gpointer data) -> gboolean {
        static_cast<Impl *>(data)->on_tick ();
        return G_SOURCE_CONTINUE;
      }, impl, nullptr);
  g_source_attach (impl->timer, impl->context);
  return true;
}

void
SignallingServer::stop ()
{
  Impl *impl = impl_.get ();
  if (impl->timer) {
    g_source_destroy (impl->timer);
    g_source_unref (impl->timer);
    impl->timer = nullptr;
  }
  for (Connection *c : std::set<Connection *> (impl->connections)) {
    impl->by_session.erase (c->session);
    c->session.clear ();
    c->ws->close (SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "server shutting down");
  }
  /* The close frames are written; the connections go now. */
  impl->pending.clear ();
  for (Connection *c : std::set<Connection *> (impl->connections))
    delete c;
  impl->connections.clear ();
  impl->by_session.clear ();
  if (impl->server) {
    soup_server_disconnect (impl->server);
    g_clear_object (&impl->server);
  }
  g_clear_object (&impl->socket);
}

guint
SignallingServer::port () const
{
  return impl_->port;
}

std::string
SignallingServer::url () const
{
  const ServerOptions & o = impl_->options;
  bool tls = !o.tls_cert.empty ();
  std::string host = o.host == "0.0.0.0" || o.host == "::" ? "127.0.0.1" : o.host;
  if (host.find (':') != std::string::npos)
    host = "[" + host + "]";
  return std::string (tls ? "wss://" : "ws://") + host + ":" +
      std::to_string (impl_->port) + "/peerjs";
}

const Router &
SignallingServer::router () const
{
  return impl_->router;
}

std::string
SignallingServer::metrics () const
{
  const Impl & i = *impl_;
  const Router & r = i.router;
  const RouterStats & st = r.stats ();
  std::uint64_t bytes_in = i.closed_bytes_in, bytes_out = i.closed_bytes_out;
  for (const Connection *c : i.connections) {
    bytes_in += c->ws->bytes_read ();
    bytes_out += c->ws->bytes_written ();
  }
  std::ostringstream o;
  auto metric = [&] (const char *name, const char *type, const char *help,
      std::uint64_t value) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' '
        << type << '\n' << name << ' ' << value << '\n';
  };
  metric ("peerjs_sessions", "gauge",
      "Sessions, connected or within their grace period.", r.session_count ());
  metric ("peerjs_sessions_connected", "gauge",
      "Sessions with an open connection.", r.online_count ());
  metric ("peerjs_connections", "gauge", "Open WebSocket connections.",
      i.connections.size ());
  metric ("peerjs_threads", "gauge", "Threads with at least one member.",
      r.thread_count ());
  metric ("peerjs_tags", "gauge", "Distinct presence tags carried.",
      r.tag_count ());
  metric ("peerjs_watches", "gauge", "Presence watches held.", r.watch_count ());
  metric ("peerjs_sessions_opened_total", "counter", "Sessions created.",
      st.sessions_opened);
  metric ("peerjs_sessions_resumed_total", "counter",
      "Sessions taken over by a new connection.", st.sessions_resumed);
  metric ("peerjs_sessions_expired_total", "counter",
      "Sessions ended because their grace period passed.", st.sessions_expired);
  metric ("peerjs_messages_received_total", "counter",
      "Messages received from clients.", st.messages_in);
  metric ("peerjs_messages_sent_total", "counter",
      "Messages queued to clients, counted per recipient.", st.messages_out);
  metric ("peerjs_bytes_received_total", "counter",
      "WebSocket bytes read from clients.", bytes_in);
  metric ("peerjs_bytes_sent_total", "counter",
      "WebSocket bytes written to clients.", bytes_out);
  metric ("peerjs_connections_dead_total", "counter",
      "Connections closed for not answering pings.", i.dead_closed);
  metric ("peerjs_connections_slow_total", "counter",
      "Connections closed for a send backlog over the bound.", i.slow_closed);
  o << "# HELP peerjs_errors_total Error replies sent, by code.\n"
      "# TYPE peerjs_errors_total counter\n";
  for (const auto &[code, n] : st.errors)
    o << "peerjs_errors_total{code=\"" << code << "\"} " << n << '\n';
  return o.str ();
}

}  // namespace peerjs
