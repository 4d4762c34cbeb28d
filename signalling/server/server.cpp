#include "server.h"

#include "auth.h"
#include "cluster.h"
#include "head-stream.h"
#include "poller.h"
#include "websocket.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>


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
  std::shared_ptr<const Grants> grants;
};

/* A token bucket: `rate` a second, up to `burst`. */
struct Bucket
{
  double rate = 0, burst = 0, level = 0;
  std::int64_t last_us = 0;

  void setup (double r, double b, std::int64_t now)
  {
    rate = r;
    burst = level = b;
    last_us = now;
  }
  bool take (double n, std::int64_t now)
  {
    if (rate <= 0)
      return true;
    level = std::min (burst, level + (now - last_us) * rate / G_USEC_PER_SEC);
    last_us = now;
    if (level < n)
      return false;
    level -= n;
    return true;
  }
};

constexpr std::int64_t TICK_US = 250 * 1000;
constexpr std::int64_t FLOOD_WINDOW_US = 10 * G_USEC_PER_SEC;
constexpr std::int64_t REFUSED_LINGER_US = 2 * G_USEC_PER_SEC;

}  // namespace

struct Link;

/* A refusal to a TLS client, which reads it only after a handshake: the
 * answer is written once the handshake is done. The handshake runs on
 * GLib's threads: while it does, the socket is left to it. */
struct TlsRefusal
{
  Link *link = nullptr;          /* null once the link is gone */
  GIOStream *tls = nullptr;
  GCancellable *cancel = g_cancellable_new ();
  std::string response;
  bool handshaking = true;

  ~TlsRefusal ()
  {
    g_clear_object (&tls);      /* closes the socket, if still open */
    g_object_unref (cancel);
  }
};

/* One accepted TCP connection, from accept () until its socket is gone:
 * the per-address count and the handshake deadline. Until its request
 * head is complete it waits on the Poller (edge-triggered, peeking, so
 * that nothing is read); then libsoup has it. */
struct Link : Poller::Handler
{
  enum class State {
    Head,        /* waiting for the whole request head; ours */
    Soup,        /* libsoup reads the request */
    Requested,   /* a request was read: no deadline */
    Refused,     /* answered and shut; drained until the client closes */
  };

  SignallingServer::Impl *impl = nullptr;
  State state = State::Head;
  GSocket *socket = nullptr;         /* owned until handed to libsoup */
  GSocketConnection *conn = nullptr; /* weak: libsoup's, then the WebSocket's */
  GSocketAddress *remote = nullptr;  /* owned */
  std::string address;               /* the client's IP, for the cap */
  bool counted = false;
  std::int64_t deadline_us = 0;
  /* TLS: the watch on the request head (weak), and the TLS connection,
   * which the watch keeps. */
  GInputStream *head = nullptr;
  GIOStream *tls = nullptr;
  TlsRefusal *refusing = nullptr;    /* refused before libsoup had it */

  void on_ready (std::uint32_t events) override;
  int fd () const { return g_socket_get_fd (socket); }
};

/* One WebSocket client. It is the WebSocket's listener and hands what it
 * hears to the server. */
struct Connection : WebSocket::Listener
{
  SignallingServer::Impl *impl = nullptr;
  std::unique_ptr<WebSocket> ws;
  std::string session;               /* empty once detached from the router */
  std::int64_t last_ping_us = 0;
  Bucket messages, bytes;
  std::int64_t refused_since_us = 0; /* start of the flood window */
  std::size_t refused = 0;           /* refused within it */

  void on_text (WebSocket & ws, std::string_view text) override;
  void on_binary (WebSocket & ws) override;
  void on_oversize (WebSocket & ws, std::uint64_t size) override;
  void on_read_end (WebSocket & ws) override;
  void on_closed (WebSocket & ws) override;

  bool flush_pending = false;        /* in Impl::pending */
  std::size_t slot = 0;              /* index in Impl::connections */
  std::string address;               /* counted in Impl::per_address */
  bool counted = false;
  /* Cluster mode: its session is being brought from another node; what
   * the client sends meanwhile waits. */
  std::uint64_t claim = 0;
  std::unique_ptr<Upgrade> upgrade;
  std::vector<std::string> held;
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
  std::unique_ptr<Poller> poller;
  std::unique_ptr<Cluster> cluster;  /* --redis */
  GSource *accept_pause = nullptr;   /* out of descriptors: listen later */
  std::int64_t fd_warned_us = 0;
  std::shared_ptr<Auth> auth;
  GTlsCertificate *cert = nullptr;

  /* The listening socket's handler. */
  struct Listener : Poller::Handler
  {
    Impl *impl;
    void on_ready (std::uint32_t) override { impl->accept_connections (); }
  } listener;

  std::set<Link *> links;
  std::set<Link *> waiting;          /* links with a deadline */
  std::unordered_map<GSocketAddress *, Link *> link_by_remote;
  std::unordered_map<std::string, guint> per_address;
  std::map<std::string, std::uint64_t> refused_connections;   /* by reason */
  std::uint64_t rate_limited = 0;
  std::uint64_t flood_closed = 0;
  std::string rate_limited_text;     /* the error's message, made once */
  /* Sessions away, under the address of the connection they had, oldest
   * first: with the open connections they count against
   * --max-per-address, so that one address that connects and drops
   * cannot fill the server with sessions waiting out their grace. */
  struct AwayFrom
  {
    std::string address;
    std::list<std::string>::iterator pos;
  };
  std::unordered_map<std::string, AwayFrom> away_from;     /* by session */
  std::unordered_map<std::string, std::list<std::string>> away_by_address;
  std::uint64_t away_evicted = 0;
  std::string peek_buf;              /* head_ready's, reused */

  /* Every connection, in no order; the timer visits a slice of them per
   * tick, so that each is seen once per ping interval. */
  std::vector<Connection *> connections;
  std::size_t tick_cursor = 0;
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
    : options (std::move (o)), router (options.limits, std::move (secret))
  {
    listener.impl = this;
    router.set_ice (options.ice);
    std::ostringstream why;
    why << "over the rate limit (";
    if (options.rate_messages > 0)
      why << options.rate_messages << " messages";
    if (options.rate_messages > 0 && options.rate_bytes > 0)
      why << ", ";
    if (options.rate_bytes > 0)
      why << static_cast<std::uint64_t>(options.rate_bytes) << " bytes";
    why << " a second); the message was dropped";
    rate_limited_text = why.str ();
  }

  void dispatch (const std::vector<Delivery> & deliveries);
  void flush ();
  void unmap (Connection * c, bool leaving);
  void detach (Connection * c, gushort code, const char *reason);
  void accept (SoupServerMessage * msg, const Upgrade & up);
  void open_session (Connection * c, const Upgrade & up);
  void moved_away (const std::string & session);
  std::uint64_t claims = 0;
  std::map<std::uint64_t, Connection *> claiming;
  void accept_connections ();
  void head_ready (Link * l, std::uint32_t events = 0);
  void hand_to_soup (Link * l);
  void refuse_link (Link * l, const char *reason, const char *status,
      const std::string & text);
  static void head_over (gpointer data);
  void refuse_over_tls (Link * l, std::string response);
  void drop_link (Link * l);
  void release_address (const std::string & address, bool & counted);
  void away_add (const std::string & session, const std::string & address);
  void away_remove (const std::string & session);
  void away_sweep ();
  void make_room (const std::string & address);
  static void link_gone (gpointer data, GObject * conn);
  void expire_links (std::int64_t now);
  bool origin_allowed (SoupServerMessage * msg);
  bool upgrade (SoupServerMessage * msg, GHashTable * query);
  void check_token (SoupServerMessage * msg, GHashTable * query);
  void on_text (Connection * c, std::string_view text);
  bool within_rate (Connection * c, std::string_view text);
  void on_closed (Connection * c);
  void on_tick ();
  void serve_static (SoupServerMessage * msg, const char *path);
};

void
Connection::on_text (WebSocket &, std::string_view text)
{
  impl->reading = true;
  if (impl->within_rate (this, text))
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
Connection::on_read_end (WebSocket & w)
{
  impl->reading = false;
  impl->flush ();
  /* What this client's own frames queued (pongs) counts against its
   * backlog too: a client that pings and never reads is a slow reader. */
  if (w.backlog () > impl->options.max_send_backlog && !session.empty ()) {
    impl->slow_closed++;
    impl->detach (this, CLOSE_SLOW, "too slow: send backlog over the bound");
  }
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

/* The connection's token buckets. A message over either is refused with
 * `rate-limited`; more refusals than a burst within FLOOD_WINDOW_US end
 * the session and close the connection with CLOSE_FLOODING. */
bool
SignallingServer::Impl::within_rate (Connection * c, std::string_view text)
{
  if (c->session.empty ())
    return true;
  std::int64_t now = g_get_monotonic_time ();
  if (c->messages.take (1, now) && c->bytes.take (text.size (), now))
    return true;
  rate_limited++;
  if (now - c->refused_since_us > FLOOD_WINDOW_US) {
    c->refused_since_us = now;
    c->refused = 0;
  }
  std::size_t allowed = static_cast<std::size_t>(std::max (options.rate_burst,
          1.0));
  if (++c->refused > allowed) {
    g_info ("session %s keeps flooding (%zu messages refused within %d s); "
        "ending it", c->session.c_str (), c->refused,
        static_cast<int>(FLOOD_WINDOW_US / G_USEC_PER_SEC));
    flood_closed++;
    unmap (c, true);
    c->ws->close (CLOSE_FLOODING, "flooding: over the rate limit");
    return false;
  }
  dispatch (router.refuse_text (c->session, text, ErrorCode::RateLimited,
          rate_limited_text));
  return false;
}

void
Link::on_ready (std::uint32_t events)
{
  if (state == State::Refused) {
    /* Read and forget until the client closes. */
    char sink[4096];
    ssize_t n;
    while ((n = recv (fd (), sink, sizeof sink, MSG_DONTWAIT)) > 0) { }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
      impl->drop_link (this);
    return;
  }
  impl->head_ready (this, events);
}

/* Take every connection waiting, up to a bound per wake-up. */
void
SignallingServer::Impl::accept_connections ()
{
  std::int64_t now = g_get_monotonic_time ();
  for (int i = 0; i < 256; i++) {
    g_autoptr (GError) error = nullptr;
    GSocket *sock = g_socket_accept (socket, nullptr, &error);
    if (!sock) {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return;
      /* Out of descriptors: the waiting connection would wake us up again
       * at once, for ever. Stop listening for a moment instead. */
      if (accept_pause)
        return;
      std::int64_t t = g_get_monotonic_time ();
      if (t - fd_warned_us > 10 * G_USEC_PER_SEC) {
        fd_warned_us = t;
        g_warning ("cannot accept connections: %s; trying again every "
            "100 ms (see --max-sessions and ulimit -n)", error->message);
      }
      poller->remove (g_socket_get_fd (socket), &listener);
      accept_pause = g_timeout_source_new (100);
      g_source_set_callback (accept_pause, +[] (gpointer data) -> gboolean {
            auto *self = static_cast<Impl *>(data);
            g_clear_pointer (&self->accept_pause, g_source_unref);
            self->poller->add (g_socket_get_fd (self->socket), EPOLLIN,
                &self->listener);
            return G_SOURCE_REMOVE;
          }, this, nullptr);
      g_source_attach (accept_pause, context);
      return;
    }
    g_socket_set_blocking (sock, FALSE);
    auto *l = new Link ();
    l->impl = this;
    l->socket = sock;
    l->remote = g_socket_get_remote_address (sock, nullptr);
    if (l->remote && G_IS_INET_SOCKET_ADDRESS (l->remote)) {
      g_autofree char *ip = g_inet_address_to_string (
          g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (l->remote)));
      l->address = ip;
    }
    l->deadline_us = now + static_cast<std::int64_t>(
        options.handshake_timeout_s * G_USEC_PER_SEC);
    links.insert (l);
    waiting.insert (l);
    if (options.max_per_address > 0
        && per_address[l->address] >= options.max_per_address) {
      refuse_link (l, "address", "429 Too Many Requests",
          "too many connections from " + l->address + " (at most " +
          std::to_string (options.max_per_address) + ")");
      continue;
    }
    per_address[l->address]++;
    l->counted = true;
    if (cert) {
      /* TLS: its bytes cannot be peeked at; libsoup reads it at once. */
      hand_to_soup (l);
      continue;
    }
    poller->add (l->fd (), EPOLLIN | EPOLLRDHUP | EPOLLET, l);
    head_ready (l);
  }
}

/* Has the whole request head arrived? Peek, leaving it for libsoup.
 * `events` are the Poller's: a client that hung up, or whose socket
 * failed, before its head was whole will never finish it, and what it
 * sent would hide its end from the peek. */
void
SignallingServer::Impl::head_ready (Link * l, std::uint32_t events)
{
  std::string &buf = peek_buf;
  buf.resize (options.max_header_bytes + 1);
  ssize_t n = recv (l->fd (), &buf[0], buf.size (), MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    drop_link (l);
    return;
  }
  std::string_view head (buf.data (), n);
  if (head.find ("\r\n\r\n") != std::string_view::npos
      || head.find ("\n\n") != std::string_view::npos) {
    poller->remove (l->fd (), l);
    hand_to_soup (l);
    return;
  }
  if (static_cast<std::size_t>(n) > options.max_header_bytes) {
    refuse_link (l, "headers", "431 Request Header Fields Too Large",
        "request head over " + std::to_string (options.max_header_bytes) +
        " bytes");
    return;
  }
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    drop_link (l);
}

void
SignallingServer::Impl::hand_to_soup (Link * l)
{
  l->state = Link::State::Soup;
  GSocketConnection *conn = g_socket_connection_factory_create_connection (
      l->socket);
  l->conn = conn;
  g_object_unref (l->socket);   /* the connection holds it */
  l->socket = nullptr;
  g_object_weak_ref (G_OBJECT (conn), link_gone, l);
  GIOStream *stream = G_IO_STREAM (conn);
  g_autoptr (GIOStream) tls = nullptr;
  g_autoptr (GError) error = nullptr;
  g_autoptr (GIOStream) watched = nullptr;
  if (cert) {
    tls = G_IO_STREAM (g_tls_server_connection_new (stream, cert, &error));
    if (!tls) {
      g_info ("TLS: %s", error->message);
      g_object_unref (conn);
      return;
    }
    /* The decrypted head is bounded as libsoup reads it. A TLS
     * connection's streams do not hold it: the watch does. */
    GInputStream *head = head_stream_new (g_io_stream_get_input_stream (tls),
        options.max_header_bytes, head_over, l);
    g_object_set_data_full (G_OBJECT (head), "peerjs-tls", g_object_ref (tls),
        g_object_unref);
    l->tls = tls;
    l->head = head;
    g_object_add_weak_pointer (G_OBJECT (head),
        reinterpret_cast<gpointer *>(&l->head));
    watched = g_simple_io_stream_new (head, g_io_stream_get_output_stream (tls));
    g_object_unref (head);
    stream = watched;
  }
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (
      g_socket_connection_get_socket (conn), nullptr);
  if (l->remote)
    link_by_remote[l->remote] = l;
  /* libsoup may read and answer the request, and the upgrade be done, in
   * this call: `l` may be gone after it. */
  if (!soup_server_accept_iostream (server, stream, local, l->remote, &error))
    g_info ("libsoup refused a connection: %s", error->message);
  g_object_unref (conn);        /* libsoup's now; link_gone tells us */
}

/* An HTTP answer `status` with the body "peerjs: `text`". */
static std::string
refusal (const char *status, const std::string & text)
{
  std::string body = "peerjs: " + text + "\n";
  return std::string ("HTTP/1.1 ") + status + "\r\n"
      "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
      std::to_string (body.size ()) + "\r\n\r\n" + body;
}

/* Answer `status` with "peerjs: `text`" (best effort), stop sending, and
 * drain what the client sends until it closes, so that the answer is not
 * lost to a reset. */
void
SignallingServer::Impl::refuse_link (Link * l, const char *reason,
    const char *status, const std::string & text)
{
  std::string response = refusal (status, text);
  refused_connections[reason]++;
  g_info ("refused a connection from %s: %s", l->address.c_str (), reason);
  if (l->state == Link::State::Head)
    poller->remove (l->fd (), l);
  release_address (l->address, l->counted);
  l->state = Link::State::Refused;
  l->deadline_us = g_get_monotonic_time () + REFUSED_LINGER_US;
  if (cert) {
    refuse_over_tls (l, std::move (response));
    return;
  }
  ssize_t ignored = send (l->fd (), response.data (), response.size (),
      MSG_DONTWAIT | MSG_NOSIGNAL);
  (void) ignored;
  shutdown (l->fd (), SHUT_WR);
  poller->add (l->fd (), EPOLLIN | EPOLLRDHUP, l);
}

/* refuse_link for a TLS client: handshake, answer, then stop sending and
 * drain the raw bytes as for a plain one. The deadline bounds the
 * handshake too. */
void
SignallingServer::Impl::refuse_over_tls (Link * l, std::string response)
{
  g_autoptr (GSocketConnection) conn =
      g_socket_connection_factory_create_connection (l->socket);
  g_autoptr (GError) error = nullptr;
  GIOStream *tls = G_IO_STREAM (g_tls_server_connection_new (G_IO_STREAM (conn),
          cert, &error));
  if (!tls) {
    g_info ("TLS: %s", error->message);
    return;     /* the deadline closes it */
  }
  auto *r = new TlsRefusal ();
  r->link = l;
  r->tls = tls;
  r->response = std::move (response);
  l->refusing = r;
  g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
      r->cancel, +[] (GObject * src, GAsyncResult * res, gpointer data) {
        auto *r = static_cast<TlsRefusal *>(data);
        gboolean ok = g_tls_connection_handshake_finish (G_TLS_CONNECTION (src),
            res, nullptr);
        r->handshaking = false;
        Link *l = r->link;
        if (!l) {
          delete r;
          return;
        }
        if (ok)
          g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (
                  g_io_stream_get_output_stream (r->tls)), r->response.data (),
              r->response.size (), nullptr, nullptr);
        shutdown (l->fd (), SHUT_WR);
        l->impl->poller->add (l->fd (), EPOLLIN | EPOLLRDHUP, l);
      }, r);
}

/* A TLS request head passed the bound, inside libsoup's read: answer 431
 * as refuse_link does. The watch now drops what the client sends; libsoup
 * lets the connection go when the client closes, or when the deadline
 * shuts the socket. */
void
SignallingServer::Impl::head_over (gpointer data)
{
  auto *l = static_cast<Link *>(data);
  Impl *self = l->impl;
  std::string response = refusal ("431 Request Header Fields Too Large",
      "request head over " + std::to_string (self->options.max_header_bytes) +
      " bytes");
  self->refused_connections["headers"]++;
  g_info ("refused a connection from %s: headers", l->address.c_str ());
  g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (
          g_io_stream_get_output_stream (l->tls)), response.data (),
      response.size (), nullptr, nullptr);
  g_socket_shutdown (g_socket_connection_get_socket (l->conn), FALSE, TRUE,
      nullptr);
  self->release_address (l->address, l->counted);
  l->state = Link::State::Refused;
  l->deadline_us = g_get_monotonic_time () + REFUSED_LINGER_US;
  self->waiting.insert (l);
}

/* Close a connection that is still ours (Head or Refused). */
void
SignallingServer::Impl::drop_link (Link * l)
{
  poller->remove (l->fd (), l);
  bool handshaking = false;
  if (TlsRefusal *r = std::exchange (l->refusing, nullptr)) {
    r->link = nullptr;
    handshaking = r->handshaking;
    if (handshaking)    /* its end closes the socket */
      g_cancellable_cancel (r->cancel);
    else
      delete r;
  }
  if (!handshaking)
    g_socket_close (l->socket, nullptr);
  g_object_unref (l->socket);
  l->socket = nullptr;
  link_gone (l, nullptr);
}

/* A connection from `address` no longer counts against its cap. */
void
SignallingServer::Impl::release_address (const std::string & address,
    bool & counted)
{
  if (!counted)
    return;
  counted = false;
  auto it = per_address.find (address);
  if (it != per_address.end () && --it->second == 0)
    per_address.erase (it);
}

/* `session` went away; its connection came from `address`. */
void
SignallingServer::Impl::away_add (const std::string & session,
    const std::string & address)
{
  if (options.max_per_address == 0)
    return;
  away_remove (session);
  auto &list = away_by_address[address];
  list.push_back (session);
  away_from[session] = AwayFrom {address, std::prev (list.end ())};
}

/* `session` is back on a connection, or ended. */
void
SignallingServer::Impl::away_remove (const std::string & session)
{
  auto it = away_from.find (session);
  if (it == away_from.end ())
    return;
  auto at = away_by_address.find (it->second.address);
  at->second.erase (it->second.pos);
  if (at->second.empty ())
    away_by_address.erase (at);
  away_from.erase (it);
}

/* Forget the sessions away that the router ended (their grace passed). */
void
SignallingServer::Impl::away_sweep ()
{
  /* Every session away in the router went away through unmap (): when
   * the numbers match, none of ours ended. */
  if (away_from.size () <= router.session_count () - router.online_count ())
    return;
  std::vector<std::string> gone;
  for (const auto &[session, from] : away_from)
    if (!router.has_session (session))
      gone.push_back (session);
  for (const auto &session : gone)
    away_remove (session);
}

/* A session now has a connection from `address`: past --max-per-address,
 * counting its open connections and its sessions away, the address's
 * oldest sessions away end. An address holds at most that many sessions,
 * and whoever connects and drops only ever ends its own. */
void
SignallingServer::Impl::make_room (const std::string & address)
{
  if (options.max_per_address == 0)
    return;
  auto at = away_by_address.find (address);
  if (at == away_by_address.end ())
    return;
  auto open = per_address.find (address);
  std::size_t held = open == per_address.end () ? 0 : open->second;
  while (at != away_by_address.end ()
      && held + at->second.size () > options.max_per_address) {
    std::string oldest = at->second.front ();
    g_info ("%s is at --max-per-address (%u) with its connections and "
        "sessions away; ending its oldest session away, %s", address.c_str (),
        options.max_per_address, oldest.c_str ());
    away_remove (oldest);
    away_evicted++;
    dispatch (router.leave (oldest));
    at = away_by_address.find (address);
  }
}

/* The connection's socket is gone (libsoup and the WebSocket let it go, or
 * we closed it). */
void
SignallingServer::Impl::link_gone (gpointer data, GObject *)
{
  auto *l = static_cast<Link *>(data);
  Impl *self = l->impl;
  if (l->head) {
    head_stream_disarm (l->head);
    g_object_remove_weak_pointer (G_OBJECT (l->head),
        reinterpret_cast<gpointer *>(&l->head));
  }
  self->release_address (l->address, l->counted);
  if (l->remote) {
    auto it = self->link_by_remote.find (l->remote);
    if (it != self->link_by_remote.end () && it->second == l)
      self->link_by_remote.erase (it);
    g_object_unref (l->remote);
  }
  self->links.erase (l);
  self->waiting.erase (l);
  delete l;
}

/* Handshakes that took too long (slowloris), and refused connections
 * whose client does not close. */
void
SignallingServer::Impl::expire_links (std::int64_t now)
{
  std::vector<Link *> late;
  for (Link *l : waiting)
    if (now > l->deadline_us)
      late.push_back (l);
  for (Link *l : late) {
    waiting.erase (l);
    switch (l->state) {
      case Link::State::Refused:
        if (l->socket)
          drop_link (l);
        else    /* TLS: libsoup sees the end of the stream. */
          g_socket_shutdown (g_socket_connection_get_socket (l->conn), TRUE,
              TRUE, nullptr);
        break;
      case Link::State::Head:
      case Link::State::Soup:
        refused_connections["handshake"]++;
        g_info ("no whole request from %s within %.0f s; closing",
            l->address.c_str (), options.handshake_timeout_s);
        if (l->state == Link::State::Head)
          drop_link (l);
        else    /* libsoup sees the end of the stream and lets it go. */
          g_socket_shutdown (g_socket_connection_get_socket (l->conn), TRUE,
              TRUE, nullptr);
        break;
      case Link::State::Requested:
        break;
    }
  }
}

bool
SignallingServer::Impl::origin_allowed (SoupServerMessage * msg)
{
  SoupMessageHeaders *h = soup_server_message_get_request_headers (msg);
  const char *origin = soup_message_headers_get_one (h, "Origin");
  if (!origin)
    return true;
  for (const auto &o : options.allow_origins)
    if (o == "*" || o == origin)
      return true;
  /* Either scheme: behind a TLS-terminating proxy the page is https while
   * the server speaks plain HTTP. */
  const char *host = soup_message_headers_get_one (h, "Host");
  if (!host)
    return false;
  for (const char *scheme : {"http://", "https://"})
    if (g_ascii_strcasecmp ((scheme + std::string (host)).c_str (), origin) == 0)
      return true;
  return false;
}

/* The /peerjs endpoint: check the origin and the token, then upgrade. */
bool
SignallingServer::Impl::upgrade (SoupServerMessage * msg, GHashTable * query)
{
  auto answer = [&] (guint status, const char *reason, const std::string & text) {
    refused_connections[reason]++;
    std::string body = "peerjs: " + text + "\n";
    soup_message_headers_replace (soup_server_message_get_response_headers
        (msg), "Connection", "close");
    soup_server_message_set_status (msg, status, nullptr);
    soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_COPY,
        body.data (), body.size ());
    return false;
  };
  /* libsoup's own refusal would be an HTML page: the check alone, and the
   * answer is ours, one text/plain line like every other refusal. */
  g_autoptr (GError) bad = nullptr;
  if (!soup_websocket_server_check_handshake (msg, nullptr, nullptr, nullptr,
          &bad)) {
    SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
    if (strcmp (soup_server_message_get_method (msg), "GET") != 0)
      return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", std::string ("a ") +
          soup_server_message_get_method (msg) + " request cannot upgrade; "
          "this endpoint speaks WebSocket only");
    if (soup_server_message_get_http_version (msg) < SOUP_HTTP_1_1)
      return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", "the upgrade needs "
          "HTTP/1.1; this endpoint speaks WebSocket only");
    if (!soup_message_headers_header_equals (req, "Upgrade", "websocket")
        || !soup_message_headers_header_contains (req, "Connection", "upgrade"))
      return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", "this endpoint "
          "speaks WebSocket only (Upgrade: websocket, Connection: Upgrade)");
    if (!soup_message_headers_header_equals (req, "Sec-WebSocket-Version",
            "13")) {
      /* RFC 6455 4.4: name the versions the server speaks. */
      soup_message_headers_replace (soup_server_message_get_response_headers
          (msg), "Sec-WebSocket-Version", "13");
      return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", "WebSocket version 13 "
          "only");
    }
    if (!soup_message_headers_get_one (req, "Sec-WebSocket-Key"))
      return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", "the upgrade has no "
          "Sec-WebSocket-Key");
    return answer (SOUP_STATUS_BAD_REQUEST, "upgrade", std::string ("not a "
            "valid WebSocket upgrade: ") + bad->message);
  }
  if (!origin_allowed (msg)) {
    const char *origin = soup_message_headers_get_one (
        soup_server_message_get_request_headers (msg), "Origin");
    return answer (SOUP_STATUS_FORBIDDEN, "origin", std::string ("origin ") +
        origin + " is not allowed (see --allow-origin)");
  }
  std::shared_ptr<const Grants> grants;
  if (auth) {
    const char *token = query ? static_cast<const char *>(g_hash_table_lookup (
            query, "token")) : nullptr;
    std::string why;
    std::optional<Grants> g;
    if (!token)
      why = "an auth token is required (?token=)";
    else
      g = auth->verify (token, g_get_real_time () / G_USEC_PER_SEC, why);
    if (!g) {
      soup_message_headers_replace (soup_server_message_get_response_headers
          (msg), "WWW-Authenticate", "Bearer error=\"invalid_token\"");
      return answer (SOUP_STATUS_UNAUTHORIZED, "token", why);
    }
    grants = std::make_shared<const Grants> (std::move (*g));
  }
  if (!soup_websocket_server_process_handshake (msg, nullptr, nullptr,
          nullptr, nullptr))
    return false;
  auto *up = new Upgrade ();
  up->impl = this;
  up->grants = std::move (grants);
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
  return true;
}

/* GET /auth[?token=T]: whether /peerjs would let this token in, in plain
 * HTTP, for pages: a browser's WebSocket does not learn the status of a
 * refused upgrade, so a page cannot tell "needs a token" from "down". */
void
SignallingServer::Impl::check_token (SoupServerMessage * msg,
    GHashTable * query)
{
  SoupMessageHeaders *out = soup_server_message_get_response_headers (msg);
  const char *method = soup_server_message_get_method (msg);
  if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0) {
    soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
        nullptr);
    return;
  }
  /* Pages of the origins the WebSocket takes may read the answer. */
  const char *origin = soup_message_headers_get_one (
      soup_server_message_get_request_headers (msg), "Origin");
  if (origin && origin_allowed (msg)) {
    soup_message_headers_replace (out, "Access-Control-Allow-Origin", origin);
    soup_message_headers_append (out, "Vary", "Origin");
  }
  soup_message_headers_replace (out, "Cache-Control", "no-store");
  const char *token = query ? static_cast<const char *>(g_hash_table_lookup (
          query, "token")) : nullptr;
  std::string why;
  bool ok = !auth;
  if (auth && !token)
    why = "an auth token is required (?token=)";
  else if (auth)
    ok = auth->verify (token, g_get_real_time () / G_USEC_PER_SEC, why)
        .has_value ();
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "required");
  json_builder_add_boolean_value (b, auth != nullptr);
  json_builder_set_member_name (b, "valid");
  json_builder_add_boolean_value (b, auth && ok);
  if (!ok) {
    json_builder_set_member_name (b, "error");
    json_builder_add_string_value (b, why.c_str ());
  }
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *json = json_to_string (root, FALSE);
  std::string body = std::string (json) + "\n";
  if (!ok)
    soup_message_headers_replace (out, "WWW-Authenticate",
        "Bearer error=\"invalid_token\"");
  soup_server_message_set_status (msg, ok ? SOUP_STATUS_OK
      : SOUP_STATUS_UNAUTHORIZED, nullptr);
  soup_server_message_set_response (msg, "application/json",
      SOUP_MEMORY_COPY, body.data (), body.size ());
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
    if (!leaving)
      away_add (c->session, c->address);
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
  if (c->claim) {
    c->held.emplace_back (text);
    return;
  }
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
  if (c->claim)
    claiming.erase (c->claim);
  unmap (c, ended);
  closed_bytes_in += c->ws->bytes_read ();
  closed_bytes_out += c->ws->bytes_written ();
  release_address (c->address, c->counted);
  Connection *last = connections.back ();
  connections[c->slot] = last;
  last->slot = c->slot;
  connections.pop_back ();
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
  /* The slice of connections due this tick: all of them once per
   * interval. A connection that read something within the interval needs
   * no ping; one silent for `dead_after` is gone. */
  std::size_t n = connections.size ();
  std::size_t visits = n == 0 ? 0 : std::min<std::size_t>(n,
      (n * TICK_US + interval - 1) / interval);
  std::vector<Connection *> dead;
  for (std::size_t k = 0; k < visits; k++) {
    if (tick_cursor >= n)
      tick_cursor = 0;
    Connection *c = connections[tick_cursor++];
    if (c->session.empty ())
      continue;
    /* Gone only once a ping sent after its last read went unanswered for
     * an interval: a connection that missed a turn (the slices shift as
     * connections leave) is pinged first, never judged unasked. */
    std::int64_t last_read = c->ws->last_read_us ();
    std::int64_t silent = now - last_read;
    bool ping_due = now - c->last_ping_us >= interval - TICK_US;
    if (silent > dead_after && c->last_ping_us > last_read && ping_due) {
      dead.push_back (c);
    } else if (silent >= interval - TICK_US && ping_due) {
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
  expire_links (now);
  std::vector<std::string> token_expired;
  dispatch (router.tick (now, &token_expired));
  for (const std::string & id : token_expired) {
    auto it = by_session.find (id);
    if (it == by_session.end ())
      continue;
    Connection *c = it->second;
    by_session.erase (it);
    c->session.clear ();
    c->ws->close (CLOSE_TOKEN_EXPIRED, "the auth token expired");
  }
  away_sweep ();
}

void
SignallingServer::Impl::accept (SoupServerMessage * msg, const Upgrade & up)
{
  /* A plain connection becomes a descriptor on the Poller, and its GIO
   * objects go: the Link's bookkeeping passes to the Connection. TLS
   * connections keep their stream, GLib sources and Link. */
  int fd = -1;
  auto *c = new Connection ();
  c->impl = this;
  auto lit = link_by_remote.find (soup_server_message_get_remote_address (msg));
  if (lit != link_by_remote.end ()) {
    Link *l = lit->second;
    c->address = l->address;
    if (!cert) {
      fd = g_socket_get_fd (g_socket_connection_get_socket (l->conn));
      c->counted = l->counted;
      l->counted = false;
      g_object_weak_unref (G_OBJECT (l->conn), link_gone, l);
      link_gone (l, nullptr);
    }
  }
  g_autoptr (GIOStream) stream = soup_server_message_steal_connection (msg);
  std::int64_t now = g_get_monotonic_time ();
  c->last_ping_us = now;
  c->messages.setup (options.rate_messages, options.rate_burst, now);
  c->bytes.setup (options.rate_bytes, std::max (4 * options.rate_bytes,
          static_cast<double>(options.limits.protocol.max_message_size)), now);
  c->ws = std::make_unique<WebSocket> (stream,
      options.limits.protocol.max_message_size, *c, poller.get (), fd);
  c->slot = connections.size ();
  connections.push_back (c);

  if (cluster && !up.resume.empty ()) {
    std::string id = router.token_id (up.resume);
    if (!id.empty () && !router.has_session (id)) {
      /* Maybe a session of another node: bring it here first. */
      std::uint64_t claim = ++claims;
      c->claim = claim;
      c->upgrade = std::make_unique<Upgrade> (up);
      claiming[claim] = c;
      cluster->claim (id, [this, claim] () {
            auto it = claiming.find (claim);
            if (it == claiming.end ())
              return;
            Connection *waiting = it->second;
            claiming.erase (it);
            waiting->claim = 0;
            open_session (waiting, *waiting->upgrade);
          });
      return;
    }
  }
  open_session (c, up);
}

/* A session of this node resumed on another: its connection here closes
 * as when a resume replaces it on one node. */
void
SignallingServer::Impl::moved_away (const std::string & session)
{
  away_remove (session);
  auto it = by_session.find (session);
  if (it == by_session.end ())
    return;
  Connection *c = it->second;
  by_session.erase (it);
  c->session.clear ();
  c->ws->close (CLOSE_REPLACED, "session resumed on another node");
}

void
SignallingServer::Impl::open_session (Connection * c, const Upgrade & up)
{
  std::int64_t now = g_get_monotonic_time ();
  OpenResult r = router.open (up.resume, up.last_seq, now, up.grants);
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
  if (cluster)
    cluster->session_opened (r.session);
  away_remove (r.session);
  dispatch (r.deliveries);
  make_room (c->address);
  c->upgrade.reset ();
  std::vector<std::string> held;
  held.swap (c->held);
  for (const auto &text : held) {
    if (c->session.empty ())
      break;
    on_text (c, text);
  }
  /* Whatever the client sent right after its request. */
  c->ws->read_now ();
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

  impl->server = soup_server_new ("server-header", "peerjs-signalling ",
      nullptr);
  if (!o.tls_cert.empty () || !o.tls_key.empty ()) {
    impl->cert = g_tls_certificate_new_from_files (o.tls_cert.c_str (),
        o.tls_key.c_str (), error);
    if (!impl->cert)
      return false;
  }
  if (!o.auth_secret_file.empty ()) {
    impl->auth = Auth::from_secret_file (o.auth_secret_file.c_str (), error);
    if (!impl->auth)
      return false;
  } else if (!o.auth_public_key_file.empty ()) {
    impl->auth = Auth::from_public_key_file (o.auth_public_key_file.c_str (),
        error);
    if (!impl->auth)
      return false;
  }
  if (impl->auth) {
    /* A renewal is verified as the upgrade's token is. */
    impl->router.set_token_verifier ([auth = impl->auth] (
            std::string_view token, std::string & why) {
          return auth->verify (token, g_get_real_time () / G_USEC_PER_SEC, why);
        });
  }
  impl->poller = std::make_unique<Poller> (impl->context);
  if (!impl->poller->ok ()) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "epoll_create1: %s",
        g_strerror (errno));
    return false;
  }

  /* A request is read: its connection is past the handshake deadline.
   * Plain HTTP answers close their connection, so that a connection is
   * one request, or one WebSocket. */
  g_signal_connect (impl->server, "request-read", G_CALLBACK (+[] (SoupServer *,
              SoupServerMessage * msg, gpointer data) {
            auto *self = static_cast<Impl *>(data);
            auto it = self->link_by_remote.find (
                soup_server_message_get_remote_address (msg));
            if (it != self->link_by_remote.end ()) {
              it->second->state = Link::State::Requested;
              self->waiting.erase (it->second);
            }
            /* An upgrade's 101 says "Connection: Upgrade" itself. */
            SoupMessageHeaders *req = soup_server_message_get_request_headers
                (msg);
            if (!soup_message_headers_header_contains (req, "Upgrade",
                    "websocket"))
              soup_message_headers_replace (
                  soup_server_message_get_response_headers (msg), "Connection",
                  "close");
          }), impl);

  soup_server_add_handler (impl->server, "/peerjs", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable * query,
          gpointer data) {
        static_cast<Impl *>(data)->upgrade (msg, query);
      }, impl, nullptr);

  soup_server_add_handler (impl->server, "/auth", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable * query,
          gpointer data) {
        static_cast<Impl *>(data)->check_token (msg, query);
      }, impl, nullptr);

  soup_server_add_handler (impl->server, "/healthz", +[] (SoupServer *,
          SoupServerMessage * msg, const char *, GHashTable *, gpointer data) {
        /* In cluster mode a node that cannot reach Redis cannot reach
         * the other nodes: the load balancer should send no one here. */
        if (!static_cast<SignallingServer *>(data)->healthy ()) {
          soup_server_message_set_status (msg,
              SOUP_STATUS_SERVICE_UNAVAILABLE, nullptr);
          soup_server_message_set_response (msg, "text/plain",
              SOUP_MEMORY_STATIC, "redis unreachable\n", 18);
          return;
        }
        soup_server_message_set_status (msg, SOUP_STATUS_OK, nullptr);
        soup_server_message_set_response (msg, "text/plain", SOUP_MEMORY_STATIC,
            "ok\n", 3);
      }, this, nullptr);

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

  /* Our own listening socket, accepted from the Poller: soup_server_listen
   * () listens with a backlog of 10, and a connection must pass the
   * per-address cap and send its whole request head before libsoup gets
   * it. */
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
  g_socket_set_blocking (impl->socket, FALSE);
  if (!g_socket_bind (impl->socket, sa, TRUE, error)
      || !g_socket_listen (impl->socket, error))
    return false;
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (impl->socket,
      error);
  if (!local)
    return false;
  impl->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));
  impl->poller->add (g_socket_get_fd (impl->socket), EPOLLIN, &impl->listener);

  if (!o.redis.empty ()) {
    ClusterOptions co;
    std::string why;
    if (!parse_redis_url (o.redis, co.redis, why)) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
          "--redis %s: %s", o.redis.c_str (), why.c_str ());
      return false;
    }
    co.node_id = o.node_id.empty () ? default_node_id () : o.node_id;
    if (!valid_node_id (co.node_id)) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
          "--node-id takes 1 to 64 letters, digits, '.', '_' or '-'");
      return false;
    }
    co.node_ttl_ms = o.node_ttl_ms;
    co.outage_bytes = o.redis_outage_bytes;
    co.grace_ms = o.limits.grace_us / 1000;
    impl->cluster = std::make_unique<Cluster> (std::move (co), impl->router,
        *impl->poller, impl->context,
        [impl] (const std::vector<Delivery> & d) { impl->dispatch (d); });
    impl->cluster->set_moved_away ([impl] (const std::string & session) {
          impl->moved_away (session);
        });
    impl->cluster->start ();
  }

  impl->timer = g_timeout_source_new (TICK_US / 1000);
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
  for (Connection *c : std::vector<Connection *> (impl->connections)) {
    impl->by_session.erase (c->session);
    c->session.clear ();
    c->ws->close (SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "server shutting down");
  }
  /* The close frames are written; the connections go now. */
  impl->pending.clear ();
  for (Connection *c : std::vector<Connection *> (impl->connections))
    delete c;
  impl->connections.clear ();
  impl->by_session.clear ();
  if (impl->server) {
    soup_server_disconnect (impl->server);
    g_clear_object (&impl->server);
  }
  /* What is left of the links: sockets still ours, and the bookkeeping of
   * connections libsoup may let go later. */
  for (Link *l : std::set<Link *> (impl->links)) {
    if (l->socket) {
      impl->drop_link (l);
    } else {
      g_object_weak_unref (G_OBJECT (l->conn), Impl::link_gone, l);
      Impl::link_gone (l, nullptr);
    }
  }
  impl->per_address.clear ();
  impl->away_from.clear ();
  impl->away_by_address.clear ();
  if (impl->accept_pause) {
    g_source_destroy (impl->accept_pause);
    g_clear_pointer (&impl->accept_pause, g_source_unref);
  }
  if (impl->socket) {
    if (impl->poller)
      impl->poller->remove (g_socket_get_fd (impl->socket), &impl->listener);
    g_socket_close (impl->socket, nullptr);
    g_clear_object (&impl->socket);
  }
  /* Its connections to Redis are on the poller. Its sessions' heartbeat
   * key expires: the other nodes end them then. */
  impl->cluster.reset ();
  impl->poller.reset ();
  g_clear_object (&impl->cert);
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
SignallingServer::node_id () const
{
  return impl_->cluster ? impl_->cluster->node_id () : std::string ();
}

bool
SignallingServer::healthy () const
{
  return !impl_->cluster || impl_->cluster->healthy ();
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
  metric ("peerjs_tokens_expired_total", "counter",
      "Sessions ended because their auth token expired unrenewed.",
      st.tokens_expired);
  metric ("peerjs_sessions_evicted_total", "counter",
      "Sessions away ended early for a new session from their address "
      "(--max-per-address).", i.away_evicted);
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
  metric ("peerjs_rate_limited_total", "counter",
      "Messages refused for a session's rate limit.", i.rate_limited);
  metric ("peerjs_connections_flooding_total", "counter",
      "Sessions ended for flooding past their rate limit.", i.flood_closed);
  o << "# HELP peerjs_connections_refused_total Connections refused before "
      "a session, by reason.\n"
      "# TYPE peerjs_connections_refused_total counter\n";
  for (const char *reason : {"address", "origin", "token", "handshake",
          "headers", "upgrade"}) {
    auto it = i.refused_connections.find (reason);
    o << "peerjs_connections_refused_total{reason=\"" << reason << "\"} "
        << (it == i.refused_connections.end () ? 0 : it->second) << '\n';
  }
  o << "# HELP peerjs_errors_total Error replies sent, by code.\n"
      "# TYPE peerjs_errors_total counter\n";
  for (const auto &[code, n] : st.errors)
    o << "peerjs_errors_total{code=\"" << code << "\"} " << n << '\n';
  if (i.cluster)
    o << i.cluster->metrics ();
  return o.str ();
}

}  // namespace peerjs
