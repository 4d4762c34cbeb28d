#include "harness.h"

#include <gst/check/gstcheck.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>

namespace peerjs::test {

std::string
J (std::string s)
{
  for (char &c : s)
    if (c == '\'')
      c = '"';
  return s;
}

/* ServerThread */

ServerOptions
ServerThread::default_options ()
{
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.ping_interval_s = 1;
  o.limits.grace_us = 5 * G_USEC_PER_SEC;
  return o;
}

ServerThread::ServerThread (ServerOptions options) : options_ (std::move (options))
{
  if (options_.secret.empty ())
    options_.secret = "test-secret-" + std::to_string (g_random_int ());
  start ();
}

ServerThread::~ServerThread ()
{
  stop ();
}

void
ServerThread::start ()
{
  context_ = g_main_context_new ();
  loop_ = g_main_loop_new (context_, FALSE);
  std::promise<void> started;
  auto ready = started.get_future ();
  thread_ = std::thread ([this, &started] () {
        g_main_context_push_thread_default (context_);
        server_ = std::make_unique<SignallingServer> (options_);
        g_autoptr (GError) error = nullptr;
        if (!server_->start (&error))
          g_error ("test server did not start: %s", error->message);
        port_ = server_->port ();
        options_.port = port_;
        started.set_value ();
        g_main_loop_run (loop_);
        server_->stop ();
        server_.reset ();
        /* Let closing connections finish their business. */
        while (g_main_context_iteration (context_, FALSE));
        g_main_context_pop_thread_default (context_);
      });
  ready.wait ();
}

void
ServerThread::stop ()
{
  if (!thread_.joinable ())
    return;
  g_main_loop_quit (loop_);
  thread_.join ();
  g_main_loop_unref (loop_);
  g_main_context_unref (context_);
  loop_ = nullptr;
  context_ = nullptr;
}

void
ServerThread::call (const std::function<void (SignallingServer &)> & f)
{
  struct Job
  {
    const std::function<void (SignallingServer &)> *f;
    SignallingServer *server;
    std::promise<void> done;
  } job {&f, server_.get (), {}};
  auto done = job.done.get_future ();
  g_main_context_invoke (context_, +[] (gpointer data) -> gboolean {
        auto *j = static_cast<Job *>(data);
        (*j->f) (*j->server);
        j->done.set_value ();
        return G_SOURCE_REMOVE;
      }, &job);
  done.wait ();
}

std::string
ServerThread::ws_url () const
{
  const char *scheme = options_.tls_cert.empty () ? "ws://" : "wss://";
  return scheme + std::string ("127.0.0.1:") + std::to_string (port_) + "/peerjs";
}

std::string
ServerThread::http_url (const std::string & path) const
{
  const char *scheme = options_.tls_cert.empty () ? "http://" : "https://";
  return scheme + std::string ("127.0.0.1:") + std::to_string (port_) + path;
}

/* The test certificate is self-signed. */
static void
trust_any_certificate (SoupMessage * msg)
{
  g_signal_connect (msg, "accept-certificate", G_CALLBACK (+[] (SoupMessage *,
              GTlsCertificate *, GTlsCertificateFlags, gpointer) -> gboolean {
            return TRUE;
          }), nullptr);
}

/* Client */

namespace {

struct ContextScope
{
  GMainContext *ctx;
  explicit ContextScope (GMainContext * c) : ctx (c)
  {
    g_main_context_push_thread_default (ctx);
  }
  ~ContextScope () { g_main_context_pop_thread_default (ctx); }
};

}  // namespace

Client::Client ()
{
  context_ = g_main_context_new ();
  ContextScope scope (context_);
  session_ = soup_session_new ();
}

Client::~Client ()
{
  {
    ContextScope scope (context_);
    if (ws_) {
      g_signal_handlers_disconnect_by_data (ws_, this);
      if (soup_websocket_connection_get_state (ws_) == SOUP_WEBSOCKET_STATE_OPEN)
        g_io_stream_close (soup_websocket_connection_get_io_stream (ws_),
            nullptr, nullptr);
      g_clear_object (&ws_);
    }
    g_clear_object (&session_);
    while (g_main_context_iteration (context_, FALSE));
  }
  g_main_context_unref (context_);
}

bool
Client::iterate_until (const std::function<bool ()> & done, int timeout_ms)
{
  ContextScope scope (context_);
  std::int64_t deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  GSource *wake = g_timeout_source_new (5);
  g_source_set_callback (wake, +[] (gpointer) -> gboolean {
        return G_SOURCE_CONTINUE;
      }, nullptr, nullptr);
  g_source_attach (wake, context_);
  bool ok;
  while (!(ok = done ()) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (context_, TRUE);
  g_source_destroy (wake);
  g_source_unref (wake);
  return ok;
}

void
Client::pump (int ms)
{
  iterate_until ([] () { return false; }, ms);
}

bool
Client::connect (const std::string & url, const std::string & query)
{
  struct State
  {
    bool done = false;
    SoupWebsocketConnection *ws = nullptr;
    GError *error = nullptr;
  } st;
  {
    ContextScope scope (context_);
    std::string full = url + (query.empty () ? "" : "?" + query);
    g_autoptr (SoupMessage) msg = soup_message_new ("GET", full.c_str ());
    trust_any_certificate (msg);
    soup_session_websocket_connect_async (session_, msg, nullptr, nullptr,
        G_PRIORITY_DEFAULT, nullptr, +[] (GObject * src, GAsyncResult * res,
            gpointer data) {
          auto *s = static_cast<State *>(data);
          s->ws = soup_session_websocket_connect_finish (SOUP_SESSION (src),
              res, &s->error);
          s->done = true;
        }, &st);
  }
  iterate_until ([&] () { return st.done; }, 5000);
  if (!st.ws) {
    if (st.error) {
      GST_WARNING ("connect failed: %s", st.error->message);
      g_error_free (st.error);
    }
    return false;
  }
  ws_ = st.ws;
  closed_ = false;
  g_signal_connect (ws_, "message", G_CALLBACK (+[] (SoupWebsocketConnection *,
              gint type, GBytes * bytes, gpointer data) {
            auto *self = static_cast<Client *>(data);
            gsize size = 0;
            const char *p = static_cast<const char *>(g_bytes_get_data (bytes,
                    &size));
            Msg m (std::string (p, size));
            if (m.has ("seq"))
              self->last_seq = m.num ("seq");
            self->inbox_.push_back (std::move (m));
          }), this);
  g_signal_connect (ws_, "closed", G_CALLBACK (+[] (SoupWebsocketConnection *,
              gpointer data) {
            static_cast<Client *>(data)->closed_ = true;
          }), this);

  auto g = next_of ("socket:connect");
  if (!g)
    return false;
  greeting = *g;
  id = g->str ("id");
  token = g->str ("token");
  return true;
}

void
Client::send (const std::string & json)
{
  fail_unless (ws_ != nullptr && !closed_, "send on a closed client");
  ContextScope scope (context_);
  soup_websocket_connection_send_text (ws_, json.c_str ());
}

std::optional<Msg>
Client::next (int timeout_ms)
{
  if (!iterate_until ([&] () { return !inbox_.empty (); }, timeout_ms))
    return std::nullopt;
  Msg m = inbox_.front ();
  inbox_.pop_front ();
  return m;
}

std::optional<Msg>
Client::next_of (const std::string & type, int timeout_ms)
{
  std::optional<Msg> found;
  iterate_until ([&] () {
        for (auto it = inbox_.begin (); it != inbox_.end (); ++it) {
          if (it->type () == type) {
            found = *it;
            inbox_.erase (it);
            return true;
          }
        }
        return false;
      }, timeout_ms);
  return found;
}

bool
Client::quiet (int ms)
{
  std::size_t before = inbox_.size ();
  pump (ms);
  return inbox_.size () == before;
}

void
Client::close (gushort code)
{
  ContextScope scope (context_);
  if (ws_ && soup_websocket_connection_get_state (ws_) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close (ws_, code, nullptr);
  /* Let the close frame go out. */
  pump (50);
}

void
Client::abort ()
{
  ContextScope scope (context_);
  if (!ws_)
    return;
  g_signal_handlers_disconnect_by_data (ws_, this);
  g_io_stream_close (soup_websocket_connection_get_io_stream (ws_), nullptr,
      nullptr);
  g_clear_object (&ws_);
  closed_ = true;
  inbox_.clear ();
}

bool
Client::wait_closed (int timeout_ms)
{
  return iterate_until ([&] () { return closed_; }, timeout_ms);
}

gushort
Client::close_code () const
{
  return ws_ ? soup_websocket_connection_get_close_code (ws_) : 0;
}

/* RawClient */

std::string
ws_frame (guint8 first, std::string_view payload, bool masked,
    std::optional<std::uint64_t> claimed)
{
  std::string f;
  f += static_cast<char>(first);
  std::uint64_t len = claimed.value_or (payload.size ());
  guint8 mask_bit = masked ? 0x80 : 0;
  if (len < 126) {
    f += static_cast<char>(mask_bit | len);
  } else if (len <= 0xffff) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(len >> 8);
    f += static_cast<char>(len & 0xff);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; i--)
      f += static_cast<char>((len >> (8 * i)) & 0xff);
  }
  if (!masked)
    return f.append (payload);
  guint8 mask[4];
  for (auto &m : mask)
    m = static_cast<guint8>(g_random_int_range (0, 256));
  f.append (reinterpret_cast<char *>(mask), 4);
  std::size_t start = f.size ();
  f.append (payload);
  for (std::size_t i = 0; i < payload.size (); i++)
    f[start + i] ^= mask[i % 4];
  return f;
}

RawClient::~RawClient ()
{
  if (conn_)
    g_io_stream_close (G_IO_STREAM (conn_), nullptr, nullptr);
  g_clear_object (&conn_);
}

bool
RawClient::open (guint port, const char *local_address)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  if (local_address) {
    g_autoptr (GInetAddress) ip = g_inet_address_new_from_string (
        local_address);
    g_autoptr (GSocketAddress) local = g_inet_socket_address_new (ip, 0);
    g_socket_client_set_local_address (client, local);
  }
  g_autoptr (GError) error = nullptr;
  conn_ = g_socket_client_connect_to_host (client, "127.0.0.1", port, nullptr,
      &error);
  if (!conn_) {
    GST_WARNING ("raw connect failed: %s", error->message);
    return false;
  }
  socket_ = g_socket_connection_get_socket (conn_);
  port_ = port;
  return true;
}

bool
RawClient::connect (guint port)
{
  return open (port) && upgrade ();
}

bool
RawClient::upgrade (const std::string & target, const std::string & headers,
    const std::string & after)
{
  std::string req = "GET " + target + " HTTP/1.1\r\n"
      "Host: 127.0.0.1:" + std::to_string (port_) + "\r\n"
      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n" + headers + "\r\n" + after;
  if (!send_raw (req))
    return false;
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  auto head = read_head (deadline);
  if (!head)
    return false;
  head_ = *head;
  status_ = 0;
  if (head_.rfind ("HTTP/1.1 ", 0) == 0)
    status_ = atoi (head_.c_str () + 9);
  if (status_ != 101) {
    /* The refusal's body, by its Content-Length. */
    g_autofree char *lower = g_ascii_strdown (head_.c_str (), -1);
    const char *cl = strstr (lower, "\r\ncontent-length:");
    std::size_t n = cl ? strtoul (cl + 17, nullptr, 10) : 0;
    body_.assign (n, '\0');
    if (n && !read_exact (reinterpret_cast<guint8 *>(&body_[0]), n, deadline))
      body_.clear ();
    return false;
  }
  auto greeting = read_text ();
  if (!greeting)
    return false;
  id = Msg (*greeting).str ("id");
  token = Msg (*greeting).str ("token");
  return !id.empty ();
}

bool
RawClient::fill (gint64 deadline)
{
  gint64 left = deadline - g_get_monotonic_time ();
  if (left <= 0 || !g_socket_condition_timed_wait (socket_, G_IO_IN, left,
          nullptr, nullptr))
    return false;
  if (pending_pos_ > 0 && pending_pos_ == pending_.size ()) {
    pending_.clear ();
    pending_pos_ = 0;
  }
  char buf[64 * 1024];
  gssize n = g_socket_receive (socket_, buf, sizeof buf, nullptr, nullptr);
  if (n <= 0)
    return false;
  pending_.append (buf, n);
  return true;
}

bool
RawClient::read_exact (guint8 * buf, gsize n, gint64 deadline)
{
  while (pending_.size () - pending_pos_ < n)
    if (!fill (deadline))
      return false;
  memcpy (buf, pending_.data () + pending_pos_, n);
  pending_pos_ += n;
  if (pending_pos_ > 1024 * 1024) {
    pending_.erase (0, pending_pos_);
    pending_pos_ = 0;
  }
  return true;
}

std::optional<std::string>
RawClient::read_head (gint64 deadline)
{
  for (;;) {
    auto end = pending_.find ("\r\n\r\n", pending_pos_);
    if (end != std::string::npos) {
      std::string head = pending_.substr (pending_pos_, end + 4 - pending_pos_);
      pending_pos_ = end + 4;
      return head;
    }
    if (!fill (deadline))
      return std::nullopt;
  }
}

bool
RawClient::send_raw (std::string_view bytes)
{
  std::size_t done = 0;
  while (done < bytes.size ()) {
    if (!g_socket_condition_timed_wait (socket_, G_IO_OUT, 10 * G_USEC_PER_SEC,
            nullptr, nullptr))
      return false;
    gssize n = g_socket_send (socket_, bytes.data () + done,
        bytes.size () - done, nullptr, nullptr);
    if (n <= 0)
      return false;
    done += n;
  }
  return true;
}

bool
RawClient::send_frame (guint8 opcode, bool fin, const std::string & payload)
{
  return send_raw (ws_frame ((fin ? 0x80 : 0) | opcode, payload));
}

std::optional<WsFrame>
RawClient::read_frame (int timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  guint8 h[2];
  if (!read_exact (h, 2, deadline))
    return std::nullopt;
  std::uint64_t len = h[1] & 0x7f;
  if (len == 126 || len == 127) {
    guint8 ext[8];
    int n = len == 126 ? 2 : 8;
    if (!read_exact (ext, n, deadline))
      return std::nullopt;
    len = 0;
    for (int i = 0; i < n; i++)
      len = (len << 8) | ext[i];
  }
  WsFrame f;
  f.first = h[0];
  f.payload.assign (len, '\0');
  if (len && !read_exact (reinterpret_cast<guint8 *>(&f.payload[0]), len,
          deadline))
    return std::nullopt;
  return f;
}

std::optional<std::string>
RawClient::read_text (int timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  for (;;) {
    int left = (deadline - g_get_monotonic_time ()) / 1000;
    auto f = read_frame (std::max (left, 1));
    if (!f || f->opcode () == 0x8)
      return std::nullopt;
    if (f->opcode () == 0x9)
      send_frame (0xA, true, f->payload);
    else if (f->opcode () == 0x1)
      return f->payload;
  }
}

std::optional<gushort>
RawClient::read_close (int timeout_ms, std::string * reason)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  for (;;) {
    int left = (deadline - g_get_monotonic_time ()) / 1000;
    auto f = read_frame (std::max (left, 1));
    if (!f)
      return std::nullopt;
    if (f->opcode () == 0x9) {
      send_frame (0xA, true, f->payload);
    } else if (f->opcode () == 0x8) {
      const std::string & p = f->payload;
      if (reason)
        *reason = p.size () > 2 ? p.substr (2) : "";
      if (p.size () < 2)
        return 1005;
      return static_cast<gushort>((static_cast<guint8>(p[0]) << 8)
          | static_cast<guint8>(p[1]));
    }
  }
}

std::optional<std::string>
RawClient::read_to_eof (int timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + timeout_ms * 1000LL;
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time ();
    if (left <= 0 || !g_socket_condition_timed_wait (socket_, G_IO_IN, left,
            nullptr, nullptr))
      return std::nullopt;
    char buf[64 * 1024];
    gssize n = g_socket_receive (socket_, buf, sizeof buf, nullptr, nullptr);
    if (n <= 0) {
      /* A reset after the answer counts as the end too. */
      std::string all = pending_.substr (pending_pos_);
      pending_.clear ();
      pending_pos_ = 0;
      return all;
    }
    pending_.append (buf, n);
  }
}

guint
http_raw (guint port, const std::string & request, std::string * response,
    int timeout_ms)
{
  RawClient c;
  if (!c.open (port) || !c.send_raw (request))
    return 0;
  auto all = c.read_to_eof (timeout_ms);
  if (response)
    *response = all.value_or ("");
  if (!all || all->rfind ("HTTP/1.1 ", 0) != 0)
    return 0;
  return atoi (all->c_str () + 9);
}

Memory
memory ()
{
  Memory m;
  g_autofree char *status = nullptr;
  if (!g_file_get_contents ("/proc/self/status", &status, nullptr, nullptr))
    return m;
  g_auto (GStrv) lines = g_strsplit (status, "\n", -1);
  for (char **l = lines; *l; l++) {
    if (g_str_has_prefix (*l, "VmRSS:"))
      m.rss = g_ascii_strtoull (*l + 6, nullptr, 10) * 1024;
    else if (g_str_has_prefix (*l, "VmHWM:"))
      m.peak = g_ascii_strtoull (*l + 6, nullptr, 10) * 1024;
  }
  return m;
}

bool
reset_peak_memory ()
{
  FILE *f = fopen ("/proc/self/clear_refs", "w");
  if (!f)
    return false;
  bool ok = fputs ("5", f) >= 0;
  return fclose (f) == 0 && ok;
}

guint
http_get (const std::string & url, std::string * body)
{
  g_autoptr (SoupSession) session = soup_session_new ();
  g_autoptr (SoupMessage) msg = soup_message_new ("GET", url.c_str ());
  trust_any_certificate (msg);
  g_autoptr (GError) error = nullptr;
  g_autoptr (GBytes) bytes = soup_session_send_and_read (session, msg, nullptr,
      &error);
  if (!bytes)
    return 0;
  if (body) {
    gsize n = 0;
    const char *p = static_cast<const char *>(g_bytes_get_data (bytes, &n));
    body->assign (p, n);
  }
  return soup_message_get_status (msg);
}

void
wait_member (ServerThread & server, Client & c, const std::string & thread)
{
  for (int i = 0; i < 300; i++) {
    std::vector<std::string> members;
    server.call ([&] (SignallingServer & s) {
          members = s.router ().thread_members (thread);
        });
    if (std::find (members.begin (), members.end (), c.id) != members.end ())
      return;
    c.pump (10);
  }
  fail ("%s did not get into thread '%s'", c.id.c_str (), thread.c_str ());
}

std::string
mint_jwt (jwt_alg_t alg, std::string_view key, const std::string & claims,
    const std::string & more)
{
  jwt_t *jwt = nullptr;
  fail_unless (jwt_new (&jwt) == 0);
  for (const std::string *c : {&claims, &more})
    if (!c->empty ())
      fail_unless (jwt_add_grants_json (jwt, c->c_str ()) == 0, "claims %s",
          c->c_str ());
  fail_unless (jwt_set_alg (jwt, alg, reinterpret_cast<const unsigned char *>(
              key.data ()), static_cast<int>(key.size ())) == 0);
  char *text = jwt_encode_str (jwt);
  fail_unless (text != nullptr);
  std::string token = text;
  free (text);
  jwt_free (jwt);
  return token;
}

}  // namespace peerjs::test
