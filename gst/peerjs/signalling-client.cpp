#include "signalling-client.h"

#include <gst/gst.h>
#include <libsoup/soup.h>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

/* How long the first connection may take before it counts as failed; a
 * reconnect waits the same. */
constexpr guint CONNECT_TIMEOUT_MS = 5000;
/* Reconnect backoff: 250 ms doubling up to 5 s. */
constexpr guint RETRY_FIRST_MS = 250;
constexpr guint RETRY_MAX_MS = 5000;
/* Relayed SDP stays under the server's 64 KiB bound; leave room for what
 * the server adds. */
constexpr guint64 MAX_INCOMING = 1024 * 1024;
/* Messages kept while disconnected; the oldest go first past this. */
constexpr std::size_t OUTBOX_LIMIT = 512;

struct Invocation
{
  std::function<void ()> f;
};

}  // namespace

std::string
json_string (JsonObject * obj, const char * name)
{
  if (!obj || !json_object_has_member (obj, name))
    return {};
  JsonNode *node = json_object_get_member (obj, name);
  if (!JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_STRING)
    return {};
  return json_node_get_string (node);
}

SignallingClient::SignallingClient (std::vector<std::string> urls,
    std::string tls_ca, Handlers handlers)
  : urls_ (std::move (urls)), tls_ca_ (std::move (tls_ca)),
    handlers_ (std::move (handlers))
{
  context_ = g_main_context_new ();
  loop_ = g_main_loop_new (context_, FALSE);
}

SignallingClient::~SignallingClient ()
{
  stop ();
  g_main_loop_unref (loop_);
  g_main_context_unref (context_);
  if (self_)
    json_object_unref (self_);
}

void
SignallingClient::start ()
{
  thread_ = std::thread ([this] { run (); });
}

void
SignallingClient::run ()
{
  g_main_context_push_thread_default (context_);
  session_ = soup_session_new_with_options ("user-agent", "gst-peerjs", NULL);
  if (!tls_ca_.empty ()) {
    g_autoptr (GError) error = nullptr;
    g_autoptr (GTlsDatabase) db = g_tls_file_database_new (tls_ca_.c_str (),
        &error);
    if (db)
      soup_session_set_tls_database (session_, db);
    else
      GST_WARNING ("tls-ca %s: %s", tls_ca_.c_str (), error->message);
  }
  connect ();
  g_main_loop_run (loop_);

  /* Stopped: drop what is left on this thread, where it was made. */
  if (retry_source_) {
    g_source_destroy (retry_source_);
    g_source_unref (retry_source_);
    retry_source_ = nullptr;
  }
  if (cancellable_) {
    g_cancellable_cancel (cancellable_);
    g_clear_object (&cancellable_);
  }
  if (ws_) {
    g_signal_handlers_disconnect_by_data (ws_, this);
    g_clear_object (&ws_);
  }
  soup_session_abort (session_);
  /* Let cancelled operations finish on this context before it goes. */
  while (g_main_context_iteration (context_, FALSE)) {
  }
  g_clear_object (&session_);
  g_main_context_pop_thread_default (context_);
}

void
SignallingClient::stop ()
{
  if (!thread_.joinable ())
    return;
  invoke ([this] {
    stopping_ = true;
    if (ws_ && soup_websocket_connection_get_state (ws_)
        == SOUP_WEBSOCKET_STATE_OPEN) {
      soup_websocket_connection_send_text (ws_,
          "{\"type\":\"socket:disconnect\"}");
      soup_websocket_connection_close (ws_, SOUP_WEBSOCKET_CLOSE_NORMAL,
          nullptr);
      /* Wait for the server's close frame, but not for long. */
      GSource *t = g_timeout_source_new (1000);
      g_source_set_callback (t, [] (gpointer loop) {
        g_main_loop_quit (static_cast<GMainLoop *> (loop));
        return G_SOURCE_REMOVE;
      }, loop_, nullptr);
      g_source_attach (t, context_);
      g_source_unref (t);
    } else {
      g_main_loop_quit (loop_);
    }
  });
  thread_.join ();
}

void
SignallingClient::invoke (std::function<void ()> f)
{
  auto *inv = new Invocation { std::move (f) };
  g_main_context_invoke_full (context_, G_PRIORITY_DEFAULT, [] (gpointer d) {
    static_cast<Invocation *> (d)->f ();
    return G_SOURCE_REMOVE;
  }, inv, [] (gpointer d) { delete static_cast<Invocation *> (d); });
}

namespace {

std::string
to_text (JsonObject * msg)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (node, msg);
  g_autofree char *text = json_to_string (node, FALSE);
  return text;
}

/* The greeting's ice_servers; entries that are not of its shape are
 * skipped (and logged), not fatal: the room works without them. */
std::vector<IceServer>
parse_ice_servers (JsonObject * greeting)
{
  std::vector<IceServer> out;
  JsonNode *node = json_object_get_member (greeting, "ice_servers");
  if (!node)
    return out;
  if (!JSON_NODE_HOLDS_ARRAY (node)) {
    GST_WARNING ("greeting: ice_servers is not an array");
    return out;
  }
  JsonArray *list = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (list); i++) {
    JsonNode *e = json_array_get_element (list, i);
    if (!JSON_NODE_HOLDS_OBJECT (e)) {
      GST_WARNING ("greeting: ice_servers[%u] is not an object", i);
      continue;
    }
    JsonObject *o = json_node_get_object (e);
    IceServer s;
    s.username = json_string (o, "username");
    s.credential = json_string (o, "credential");
    JsonNode *urls = json_object_get_member (o, "urls");
    if (urls && JSON_NODE_HOLDS_ARRAY (urls)) {
      JsonArray *a = json_node_get_array (urls);
      for (guint j = 0; j < json_array_get_length (a); j++) {
        JsonNode *u = json_array_get_element (a, j);
        if (JSON_NODE_HOLDS_VALUE (u)
            && json_node_get_value_type (u) == G_TYPE_STRING)
          s.urls.emplace_back (json_node_get_string (u));
      }
    } else if (!json_string (o, "urls").empty ()) {
      s.urls.push_back (json_string (o, "urls"));
    }
    if (s.urls.empty ())
      GST_WARNING ("greeting: ice_servers[%u] has no urls", i);
    else
      out.push_back (std::move (s));
  }
  return out;
}

}  // namespace

void
SignallingClient::describe_self (JsonObject * fields)
{
  if (self_)
    json_object_unref (self_);
  self_ = fields ? json_object_ref (fields) : nullptr;
}

void
SignallingClient::add_self (JsonObject * msg)
{
  const char *type = json_object_get_string_member_with_default (msg, "type",
      "");
  if (!self_ || (!g_str_equal (type, "thread:connect")
          && !g_str_equal (type, "thread:change")))
    return;
  g_autoptr (GList) names = json_object_get_members (self_);
  for (GList *n = names; n; n = n->next) {
    const char *name = static_cast<const char *> (n->data);
    json_object_set_member (msg, name, json_node_copy (
            json_object_get_member (self_, name)));
  }
}

void
SignallingClient::send (JsonObject * msg)
{
  add_self (msg);
  invoke ([this, text = to_text (msg)] {
    if (greeted_ && !holding_ && outbox_.empty ()) {
      write (text);
      return;
    }
    if (outbox_.size () >= OUTBOX_LIMIT) {
      GST_WARNING ("outbox full, dropping %.200s", outbox_.front ().c_str ());
      outbox_.pop_front ();
    }
    GST_DEBUG ("held: %.200s", text.c_str ());
    outbox_.push_back (text);
  });
}

void
SignallingClient::send_first (JsonObject * msg)
{
  add_self (msg);
  invoke ([this, text = to_text (msg)] {
    if (greeted_)
      write (text);
    else
      outbox_.push_front (text);
  });
}

void
SignallingClient::release (bool keep)
{
  invoke ([this, keep] {
    if (!keep)
      outbox_.clear ();
    holding_ = false;
    while (greeted_ && !outbox_.empty ()) {
      write (outbox_.front ());
      outbox_.pop_front ();
    }
  });
}

void
SignallingClient::write (const std::string & text)
{
  if (!ws_ || soup_websocket_connection_get_state (ws_)
      != SOUP_WEBSOCKET_STATE_OPEN) {
    /* Closing: what is sent meanwhile waits for the next connection,
     * unless we are leaving. */
    if (!stopping_)
      outbox_.push_back (text);
    return;
  }
  GST_LOG ("send %s", text.c_str ());
  soup_websocket_connection_send_text (ws_, text.c_str ());
}

void
SignallingClient::connect ()
{
  /* The query carries secrets: this URL is never logged. */
  const std::string & base = urls_[current_];
  std::string url = base;
  auto add = [&url] (const char *name, const std::string & value) {
    g_autofree char *escaped = g_uri_escape_string (value.c_str (), nullptr,
        FALSE);
    url += (url.find ('?') == std::string::npos ? "?" : "&");
    url += std::string (name) + "=" + escaped;
  };
  std::string auth = handlers_.auth_token ? handlers_.auth_token () : "";
  if (!auth.empty ())
    add ("token", auth);
  if (!token_.empty ()) {
    add ("resume", token_);
    add ("last", std::to_string (last_seq_));
  }
  SoupMessage *msg = soup_message_new ("GET", url.c_str ());
  if (!msg) {
    /* Checked when the element starts; a URL that still does not parse is
     * final. */
    handlers_.lost ("'" + base + "' is not a WebSocket URL", true, 0, base,
        "");
    return;
  }
  cancellable_ = g_cancellable_new ();
  /* Our own bound on the connection attempt: libsoup's I/O timeout would
   * also cut an idle WebSocket later. */
  GSource *t = g_timeout_source_new (CONNECT_TIMEOUT_MS);
  g_source_set_callback (t, [] (gpointer c) {
    g_cancellable_cancel (G_CANCELLABLE (c));
    return G_SOURCE_REMOVE;
  }, g_object_ref (cancellable_), g_object_unref);
  g_source_attach (t, context_);
  GSource *timeout = t;

  /* The message is kept for its status: a refused upgrade says why there;
   * its network events tell a TLS handshake that never ended. */
  struct Pending
  {
    SignallingClient *self;
    GSource *timeout;
    SoupMessage *msg;
    Tls tls;
  };
  auto *pending = new Pending { this, timeout, msg, TLS_NONE };
  g_signal_connect (msg, "network-event", G_CALLBACK (+[] (SoupMessage *,
              GSocketClientEvent event, GIOStream *, gpointer data) {
        auto *p = static_cast<Pending *> (data);
        if (event == G_SOCKET_CLIENT_TLS_HANDSHAKING)
          p->tls = TLS_STARTED;
        else if (event == G_SOCKET_CLIENT_TLS_HANDSHAKED)
          p->tls = TLS_DONE;
      }), pending);
  soup_session_websocket_connect_async (session_, msg, nullptr, nullptr,
      G_PRIORITY_DEFAULT, cancellable_,
      [] (GObject * source, GAsyncResult * result, gpointer data) {
        auto *p = static_cast<Pending *> (data);
        g_source_destroy (p->timeout);
        g_source_unref (p->timeout);
        g_signal_handlers_disconnect_by_data (p->msg, p);
        p->self->on_connected (source, result, p->msg, p->tls);
        g_object_unref (p->msg);
        delete p;
      }, pending);
}

std::string
SignallingClient::connect_failure (SoupMessage * msg, const GError * error,
    bool timed_out, Tls tls)
{
  /* A wss:// URL on a plain server: the server takes the TLS greeting
   * for a request and never answers it, or answers in plain HTTP. */
  if (tls == TLS_STARTED || (tls == TLS_NONE && error
          && error->domain == G_TLS_ERROR)) {
    std::string why = timed_out ? "the server did not answer it within "
        + std::to_string (CONNECT_TIMEOUT_MS / 1000) + " s"
        : std::string (error ? error->message : "unknown error");
    bool certificate = error && error->domain == G_TLS_ERROR
        && error->code == G_TLS_ERROR_BAD_CERTIFICATE;
    return "TLS handshake failed: " + why + (certificate
        ? " (set tls-ca to the authority that signed the server's "
          "certificate)"
        : " (is the server plain, without TLS? then the URL is ws://)");
  }
  guint status = soup_message_get_status (msg);
  if (status >= 200 && status != SOUP_STATUS_SWITCHING_PROTOCOLS) {
    /* An HTTP answer other than the upgrade: a wrong path, most often. */
    const char *phrase = soup_message_get_reason_phrase (msg);
    GUri *uri = soup_message_get_uri (msg);
    std::string path = uri ? g_uri_get_path (uri) : "";
    if (path.empty ())
      path = "/";
    std::string reason = "the server answered " + std::to_string (status)
        + " " + (phrase ? phrase : soup_status_get_phrase (status))
        + " to " + path + " instead of a WebSocket upgrade";
    if (path != "/peerjs")
      reason += std::string ("; peerjs-signalling takes WebSockets at "
          "/peerjs (") + (uri ? g_uri_get_scheme (uri) : "ws")
          + "://host:port/peerjs)";
    return reason;
  }
  if (timed_out)
    return "no answer within " + std::to_string (CONNECT_TIMEOUT_MS / 1000)
        + " s";
  return error ? error->message : "unknown error";
}

void
SignallingClient::on_connected (GObject * source, GAsyncResult * result,
    SoupMessage * msg, Tls tls)
{
  g_autoptr (GError) error = nullptr;
  SoupWebsocketConnection *ws = soup_session_websocket_connect_finish (
      SOUP_SESSION (source), result, &error);
  bool timed_out = cancellable_ && g_cancellable_is_cancelled (cancellable_);
  g_clear_object (&cancellable_);
  if (stopping_) {
    g_clear_object (&ws);
    g_main_loop_quit (loop_);
    return;
  }
  if (!ws) {
    /* An HTTP answer other than the upgrade: its status, if any. */
    guint status = soup_message_get_status (msg);
    const char *phrase = soup_message_get_reason_phrase (msg);
    std::string answer = std::to_string (status) + " "
        + (phrase ? phrase : soup_status_get_phrase (status));
    if (status == SOUP_STATUS_UNAUTHORIZED || status == SOUP_STATUS_FORBIDDEN) {
      handlers_.refused (status, answer, urls_[current_]);
      return;
    }
    std::string reason = connect_failure (msg, error, timed_out, tls);
    if (!greeted_once_) {
      /* Before the first greeting, each URL is tried once, at once; when
       * none answers, that is final. */
      if (urls_.size () > 1)
        first_failures_ += (first_failures_.empty () ? "" : "; ")
            + urls_[current_] + ": " + reason;
      if (current_ + 1 < urls_.size ()) {
        GST_WARNING ("could not connect to %s: %s; trying %s",
            urls_[current_].c_str (), reason.c_str (),
            urls_[current_ + 1].c_str ());
        current_++;
        connect ();
      } else {
        handlers_.lost (urls_.size () > 1 ? first_failures_ : reason, true,
            0, urls_[current_], "");
      }
    } else {
      schedule_reconnect (reason);
    }
    return;
  }
  ws_ = ws;
  soup_websocket_connection_set_max_incoming_payload_size (ws_, MAX_INCOMING);
  g_signal_connect (ws_, "message", G_CALLBACK (+[] (SoupWebsocketConnection *,
              gint type, GBytes * bytes, gpointer self) {
        if (type == SOUP_WEBSOCKET_DATA_TEXT)
          static_cast<SignallingClient *> (self)->on_message (bytes);
      }), this);
  g_signal_connect (ws_, "closed", G_CALLBACK (+[] (SoupWebsocketConnection *,
              gpointer self) {
        static_cast<SignallingClient *> (self)->on_closed ();
      }), this);
}

void
SignallingClient::on_message (GBytes * bytes)
{
  gsize size = 0;
  const char *text = static_cast<const char *> (g_bytes_get_data (bytes,
          &size));
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = nullptr;
  if (!json_parser_load_from_data (parser, text, size, &error)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    GST_WARNING ("server sent a frame that is not a JSON object: %s",
        error ? error->message : "not an object");
    return;
  }
  JsonObject *msg = json_node_get_object (json_parser_get_root (parser));
  GST_LOG ("recv %.*s", (int) size, text);

  std::string type = json_string (msg, "type");
  if (type == "socket:connect" && !json_object_has_member (msg, "seq")) {
    std::string id = json_string (msg, "id");
    bool resumed = json_object_has_member (msg, "resumed")
        && json_object_get_boolean_member (msg, "resumed");
    bool first = !greeted_once_;
    bool same = id == id_;
    /* A session the server does not have (a new id, or ours after a
     * restart) numbers its messages from 1 again. */
    if (!same || !resumed)
      last_seq_ = 0;
    id_ = id;
    token_ = json_string (msg, "token");
    {
      std::vector<IceServer> servers = parse_ice_servers (msg);
      std::lock_guard<std::mutex> guard (ice_lock_);
      ice_servers_ = std::move (servers);
    }
    greeted_once_ = true;
    greeted_ = true;
    holding_ = true;
    retry_ = 0;
    handlers_.connected (id, first, same, resumed, urls_[current_]);
    return;
  }
  if (json_object_has_member (msg, "seq")) {
    gint64 seq = json_object_get_int_member (msg, "seq");
    if (seq <= last_seq_) {
      GST_DEBUG ("dropping replayed seq %" G_GINT64_FORMAT, seq);
      return;
    }
    last_seq_ = seq;
  }
  handlers_.message (msg);
}

std::vector<IceServer>
SignallingClient::ice_servers () const
{
  std::lock_guard<std::mutex> guard (ice_lock_);
  return ice_servers_;
}

void
SignallingClient::on_closed ()
{
  gushort code = soup_websocket_connection_get_close_code (ws_);
  greeted_ = false;
  g_signal_handlers_disconnect_by_data (ws_, this);
  g_clear_object (&ws_);
  if (stopping_) {
    g_main_loop_quit (loop_);
    return;
  }
  schedule_reconnect ("the connection closed (code " + std::to_string (code)
      + ")");
}

void
SignallingClient::schedule_reconnect (const std::string & reason)
{
  /* The next URL, if there are several (resuming there works on any node
   * of a cluster); the pause grows only once every URL has been tried. */
  std::size_t lost = current_;
  current_ = (current_ + 1) % urls_.size ();
  guint round = retry_ / urls_.size ();
  guint delay = RETRY_FIRST_MS << MIN (round, 5u);
  delay = MIN (delay, RETRY_MAX_MS);
  retry_++;
  handlers_.lost (reason, false, delay, urls_[lost], urls_[current_]);
  retry_source_ = g_timeout_source_new (delay);
  g_source_set_callback (retry_source_, [] (gpointer d) {
    auto *self = static_cast<SignallingClient *> (d);
    g_source_unref (self->retry_source_);
    self->retry_source_ = nullptr;
    self->connect ();
    return G_SOURCE_REMOVE;
  }, this, nullptr);
  g_source_attach (retry_source_, context_);
}

}  // namespace peerjs
