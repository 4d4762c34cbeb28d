#include "session.h"

#include "message.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <memory>
#include <nice/interfaces.h>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

/* A constraint value is on when it is truthy, as in JavaScript. */
bool
truthy (JsonNode * node)
{
  if (!node || JSON_NODE_HOLDS_NULL (node))
    return false;
  if (JSON_NODE_HOLDS_OBJECT (node) || JSON_NODE_HOLDS_ARRAY (node))
    return true;
  GType t = json_node_get_value_type (node);
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean (node);
  if (t == G_TYPE_INT64)
    return json_node_get_int (node) != 0;
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (node) != 0;
  if (t == G_TYPE_STRING)
    return *json_node_get_string (node) != '\0';
  return false;
}

JsonObject *
new_message (const char *type)
{
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type", type);
  return msg;
}

/* What the application passes as data: a JSON object or array is sent as
 * JSON, anything else as a string. */
JsonNode *
data_node (const std::string & text)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root = json_parser_load_from_data (parser, text.c_str (), -1,
      nullptr) ? json_parser_get_root (parser) : nullptr;
  if (root && (JSON_NODE_HOLDS_OBJECT (root) || JSON_NODE_HOLDS_ARRAY (root)))
    return json_node_copy (root);
  JsonNode *node = json_node_new (JSON_NODE_VALUE);
  json_node_set_string (node, text.c_str ());
  return node;
}

JsonArray *
string_array (const std::vector<std::string> & items)
{
  JsonArray *a = json_array_new ();
  for (const std::string & i : items)
    json_array_add_string_element (a, i.c_str ());
  return a;
}

bool
contains (const std::vector<std::string> & v, const std::string & item)
{
  return std::find (v.begin (), v.end (), item) != v.end ();
}

/* Types whose meaning the protocol fixes: not for send-event. */
bool
reserved_type (const std::string & type)
{
  for (const char *prefix : { "thread:", "stream:", "socket:", "presence:",
          "file:" })
    if (g_str_has_prefix (type.c_str (), prefix))
      return true;
  return type == "message" || type == "error";
}

/* A message's fields but those the server routes by. */
std::string
payload_json (JsonObject * msg)
{
  static const char *const routing[] = { "type", "to", "from", "seq",
    "original_to", "callback_id", "callback_response" };
  JsonObject *copy = json_object_new ();
  JsonObjectIter it;
  const char *name;
  JsonNode *value;
  json_object_iter_init (&it, msg);
  while (json_object_iter_next (&it, &name, &value)) {
    if (std::none_of (std::begin (routing), std::end (routing),
            [name] (const char *r) { return g_str_equal (name, r); }))
      json_object_set_member (copy, name, json_node_copy (value));
  }
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (node, copy);
  g_autofree char *text = json_to_string (node, FALSE);
  json_node_unref (node);
  return text;
}

}  // namespace

Session::Session (GstElement * element)
  : element_ (element), files_ (std::make_unique<Files> (*this)) {}

bool
Session::parse_constraints (const std::string & text, bool * fixed,
    Media * media, std::string * error)
{
  *fixed = !text.empty ();
  *media = Media ();
  if (!*fixed)
    return true;
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, text.c_str (), -1, nullptr)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    *error = "constraints must be a JSON object such as "
        "{\"video\":true,\"audio\":false}, not '" + text + "'.";
    return false;
  }
  *media = media_of (json_node_get_object (json_parser_get_root (parser)));
  return true;
}

Session::Media
Session::media_of (JsonObject * constraints)
{
  /* As in the original, where the whole camera-and-microphone stream went
   * with video: audio that is not given follows video. */
  Media m;
  m.video = truthy (json_object_get_member (constraints, "video"));
  m.audio = json_object_has_member (constraints, "audio")
      ? truthy (json_object_get_member (constraints, "audio")) : m.video;
  return m;
}

bool
Session::set_constraints (const std::string & text)
{
  bool fixed;
  Media media;
  std::string error;
  if (!parse_constraints (text, &fixed, &media, &error)) {
    GST_ELEMENT_WARNING (element_, RESOURCE, SETTINGS, ("%s", error.c_str ()),
        (nullptr));
    return false;
  }
  invoke ([this, fixed, media] {
    fixed_ = fixed;
    fixed_media_ = media;
    constraints_changed (true);
  });
  return true;
}

Session::~Session ()
{
  stop ();
}

std::string
Session::id () const
{
  std::lock_guard<std::mutex> guard (lock_);
  return id_;
}

void
Session::set_auth_token (const std::string & token)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    auth_token_ = token;
    if (!client_ || token.empty ())
      return;
  }
  /* A renewal: the running session would otherwise end at the old
   * token's exp. Offline, it waits in the outbox like any message. */
  invoke ([this, token] {
    JsonObject *msg = new_message ("socket:token");
    json_object_set_string_member (msg, "token", token.c_str ());
    send (msg);
    json_object_unref (msg);
  });
}

/* ------------------------------------------------------------------ */
/* Element side */

bool
Session::start (const Config & config)
{
  config_ = config;
  relay_warned_ = false;
  if (config_.servers.empty ()) {
    GST_ELEMENT_ERROR (element_, RESOURCE, SETTINGS,
        ("No server is set: set server to the peerjs-signalling server's "
            "ws:// or wss:// URL."), (nullptr));
    return false;
  }
  for (const std::string & server : config_.servers) {
    g_autoptr (GUri) uri = g_uri_parse (server.c_str (), G_URI_FLAGS_NONE,
        nullptr);
    const char *scheme = uri ? g_uri_get_scheme (uri) : nullptr;
    if (!scheme || (g_ascii_strcasecmp (scheme, "ws") != 0
            && g_ascii_strcasecmp (scheme, "wss") != 0)) {
      GST_ELEMENT_ERROR (element_, RESOURCE, SETTINGS,
          ("The server must be a ws:// or wss:// URL (or several, "
              "separated by commas), not '%s'.", server.c_str ()), (nullptr));
      return false;
    }
  }
  {
    std::lock_guard<std::mutex> guard (lock_);
    joined_ = config_.threads;
    auth_token_ = config_.auth_token;
    tags_ = config_.tags;
    watches_ = config_.watches;
  }
  if (!config_.watches.empty ()) {
    guint id = next_event_id_++;
    watch_batches_.push_back (Watch { config_.watches, id });
    callbacks_[id].event = false;
  }
  ProtocolLimits limits;
  for (const std::string & t : config_.threads) {
    if (!valid_name (t, limits.max_name_length)) {
      GST_ELEMENT_ERROR (element_, RESOURCE, SETTINGS,
          ("Thread name '%s' is not valid: 1 to %zu bytes of UTF-8 without "
              "control characters.", t.c_str (), limits.max_name_length),
          (nullptr));
      return false;
    }
  }
  std::string error;
  if (!parse_constraints (config_.constraints, &fixed_, &fixed_media_,
          &error)) {
    GST_ELEMENT_ERROR (element_, RESOURCE, SETTINGS, ("%s", error.c_str ()),
        (nullptr));
    return false;
  }
  std::string missing = missing_factory ("webrtcbin,nicesrc,dtlssrtpenc,"
      "sctpenc,rtpbin");
  if (!missing.empty ()) {
    GST_ELEMENT_ERROR (element_, CORE, MISSING_PLUGIN,
        ("The '%s' element is missing; it comes with GStreamer's "
            "plugins-bad (webrtc, dtls, sctp), libnice and plugins-good.",
            missing.c_str ()), (nullptr));
    return false;
  }

  Files::Settings files;
  files.download_dir = config_.download_dir;
  files.accept = config_.accept;
  files.pads = config_.receives;
  files_->configure (files);

  context_ = g_main_context_new ();
  loop_ = g_main_loop_new (context_, FALSE);
  watch_loss ();
  thread_ = std::thread ([this] {
    g_main_context_push_thread_default (context_);
    g_main_loop_run (loop_);
    g_main_context_pop_thread_default (context_);
  });

  /* From the WebSocket's thread to the mesh thread, in order. */
  SignallingClient::Handlers handlers;
  handlers.connected = [this] (const std::string & id, bool first, bool same,
      bool resumed, const std::string & server) {
    invoke ([=] { on_connected (id, first, same, resumed, server); });
  };
  handlers.message = [this] (JsonObject * msg) {
    std::shared_ptr<JsonObject> m (json_object_ref (msg), json_object_unref);
    invoke ([this, m] { on_message (m.get ()); });
  };
  handlers.lost = [this] (const std::string & reason, bool fatal,
      guint retry, const std::string & server, const std::string & next) {
    invoke ([=] { on_lost (reason, fatal, retry, server, next); });
  };
  handlers.refused = [this] (guint status, const std::string & reason,
      const std::string & server) {
    invoke ([=] { on_refused (status, reason, server); });
  };
  handlers.auth_token = [this] {
    std::lock_guard<std::mutex> guard (lock_);
    return auth_token_;
  };
  client_ = std::make_unique<SignallingClient> (config_.servers,
      config_.tls_ca, std::move (handlers));
  {
    JsonObject *self = json_object_new ();
    if (!config_.display_name.empty ())
      json_object_set_string_member (self, "display_name",
          config_.display_name.c_str ());
    json_object_set_string_member (self, "pipeline", config_.pipeline.c_str ());
    if (config_.records)
      json_object_set_boolean_member (self, "records", TRUE);
    if (!config_.tags.empty ()) {
      JsonArray *tags = json_array_new ();
      for (const std::string & t : config_.tags)
        json_array_add_string_element (tags, t.c_str ());
      json_object_set_array_member (self, "tags", tags);
    }
    client_->describe_self (self);
    json_object_unref (self);
  }
  client_->start ();
  return true;
}

void
Session::stop ()
{
  if (!client_)
    return;
  /* Transfers end first, telling the members, while connections last. */
  files_->stop ();
  client_->stop ();
  g_main_context_invoke (context_, [] (gpointer loop) {
    g_main_loop_quit (static_cast<GMainLoop *> (loop));
    return G_SOURCE_REMOVE;
  }, loop_);
  thread_.join ();
  /* The threads are gone: what the mesh thread owned is ours now. */
  unwatch_loss ();
  stop_adapting ();
  if (stats_source_) {
    g_source_destroy (stats_source_);
    g_source_unref (stats_source_);
    stats_source_ = nullptr;
  }
  std::vector<std::string> members;
  for (auto & p : peers_)
    members.push_back (p.first);
  for (const std::string & m : members)
    close_peer (m);
  threads_.clear ();
  std::vector<guint> waiting;
  for (auto & c : callbacks_)
    waiting.push_back (c.first);
  for (guint id : waiting)
    if (callbacks_[id].event)
      finish_callback (id, "", "null", "stopped",
          "the element stopped before a reply came");
  callbacks_.clear ();
  online_ = false;
  tags_sent_.clear ();
  watch_batches_.clear ();
  client_.reset ();
  /* Work still queued for the mesh thread is dropped with its context. */
  g_main_loop_unref (loop_);
  loop_ = nullptr;
  g_main_context_unref (context_);
  context_ = nullptr;
  warned_offline_ = false;
  std::lock_guard<std::mutex> guard (lock_);
  id_.clear ();
}

void
Session::stop_transfers ()
{
  files_->stop ();
  unblock_data_channels (bin ());
}

GstPad *
Session::add_outgoing (Kind kind, Outgoing::Settings settings)
{
  auto ready = [this] (Outgoing &) {
    /* A streaming thread: the signalling thread takes it from here. */
    if (client_)
      invoke ([this] { constraints_changed (false); });
  };
  auto failed = [this] (const std::string & plugin, const std::string & what) {
    if (!plugin.empty ()) {
      GST_ELEMENT_ERROR (element_, CORE, MISSING_PLUGIN,
          ("The '%s' element is missing: %s.", plugin.c_str (), what.c_str ()),
          (nullptr));
    } else {
      GST_ELEMENT_ERROR (element_, STREAM, FORMAT, ("%s.", what.c_str ()),
          (nullptr));
    }
  };
  auto out = std::make_unique<Outgoing> (bin (), kind, settings, ready,
      failed);
  GstPad *pad = out->sink_pad ();
  std::lock_guard<std::mutex> guard (lock_);
  outgoing_[(int) kind] = std::move (out);
  ended_[(int) kind] = false;
  return pad;
}

void
Session::remove_outgoing (Kind kind)
{
  auto unlink = [this, kind] {
    for (auto & p : peers_)
      p.second->sync ();
  };
  std::unique_ptr<Outgoing> gone;
  {
    std::lock_guard<std::mutex> guard (lock_);
    gone = std::move (outgoing_[(int) kind]);
  }
  /* Members stop being fed before the stream's elements go. */
  if (client_) {
    std::promise<void> done;
    invoke ([&] {
      unlink ();
      constraints_changed (false);
      done.set_value ();
    });
    done.get_future ().wait ();
  } else {
    unlink ();
  }
}

bool
Session::stream_ended (GstObject * sink, bool * all)
{
  std::lock_guard<std::mutex> guard (lock_);
  bool ours = false;
  *all = true;
  for (int k = 0; k < KIND_COUNT; k++) {
    if (!outgoing_[k])
      continue;
    if (GST_OBJECT (outgoing_[k]->clock ()) == sink) {
      ours = true;
      ended_[k] = true;
    }
    *all = *all && ended_[k];
  }
  return ours;
}

void
Session::reset_ended ()
{
  std::lock_guard<std::mutex> guard (lock_);
  for (bool & e : ended_)
    e = false;
}

/* ------------------------------------------------------------------ */
/* PeerHost */

void
Session::send (JsonObject * msg)
{
  if (client_)
    client_->send (msg);
}

namespace {
struct Invocation
{
  std::function<void ()> f;
};
}  // namespace

void
Session::invoke (std::function<void ()> f)
{
  if (!context_)
    return;
  g_main_context_invoke_full (context_, G_PRIORITY_DEFAULT, [] (gpointer d) {
    static_cast<Invocation *> (d)->f ();
    return G_SOURCE_REMOVE;
  }, new Invocation { std::move (f) }, [] (gpointer d) {
    delete static_cast<Invocation *> (d);
  });
}

void
Session::invoke_later (guint ms, std::function<void ()> f)
{
  if (!context_)
    return;
  GSource *source = g_timeout_source_new (ms);
  g_source_set_callback (source, [] (gpointer d) {
    static_cast<Invocation *> (d)->f ();
    return G_SOURCE_REMOVE;
  }, new Invocation { std::move (f) }, [] (gpointer d) {
    delete static_cast<Invocation *> (d);
  });
  g_source_attach (source, context_);
  g_source_unref (source);
}

Outgoing *
Session::outgoing (Kind kind)
{
  std::lock_guard<std::mutex> guard (lock_);
  return outgoing_[(int) kind].get ();
}

bool
Session::send_message (const std::string & thread, const std::string & text)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (!client_ || !contains (joined_, thread))
      return false;
  }
  JsonObject *msg = new_message ("message");
  json_object_set_string_member (msg, "thread", thread.c_str ());
  json_object_set_member (msg, "data", data_node (text));
  client_->send (msg);
  json_object_unref (msg);
  return true;
}

void
Session::set_mix (bool on, int width, int height)
{
  if (!on)
    mixer_.reset ();
  else if (mixer_)
    mixer_->resize (width, height);
  else
    mixer_ = std::make_unique<Mixer> (element_, width, height);
}

bool
Session::media_ready ()
{
  std::lock_guard<std::mutex> guard (lock_);
  for (auto & out : outgoing_)
    if (out && !out->codec ())
      return false;
  return true;
}

bool
Session::wants_send (const std::string & member, Kind kind)
{
  return outgoing (kind) && allowed (member, kind);
}

bool
Session::wants_recv (const std::string & member, Kind kind)
{
  return config_.receives && allowed (member, kind) && chosen (member);
}

bool
Session::chosen (const std::string & member) const
{
  const std::vector<std::string> & wanted = config_.members;
  if (wanted.empty ()
      || std::find (wanted.begin (), wanted.end (), member) != wanted.end ())
    return true;
  auto it = known_as_.find (member);
  if (it == known_as_.end ())
    return false;
  for (const std::string & name : it->second)
    if (std::find (wanted.begin (), wanted.end (), name) != wanted.end ())
      return true;
  return false;
}

namespace {

/* A URL of the greeting's ice_servers (stun:HOST[:PORT],
 * turn:HOST[:PORT][?transport=...], turns:...) as webrtcbin takes it:
 * stun://HOST:PORT, turn(s)://USER:PASS@HOST:PORT[?transport=...], the
 * username and credential URL-encoded (a REST API username holds a colon,
 * a base64 credential '/', '+' and '='). "" for what webrtcbin cannot use
 * (stuns:). */
std::string
webrtc_ice_uri (const std::string & url, const std::string & username,
    const std::string & credential, bool & turn)
{
  std::string scheme, rest;
  std::size_t colon = url.find (':');
  if (colon == std::string::npos)
    return {};
  scheme = url.substr (0, colon);
  rest = url.substr (colon + 1);
  if (scheme != "stun" && scheme != "turn" && scheme != "turns")
    return {};
  turn = scheme != "stun";
  std::string query;
  std::size_t q = rest.find ('?');
  if (q != std::string::npos) {
    query = rest.substr (q);
    rest = rest.substr (0, q);
  }
  std::size_t bracket = rest.rfind (']');
  std::size_t port = rest.rfind (':');
  if (port == std::string::npos
      || (bracket != std::string::npos && port < bracket))
    rest += scheme == "turns" ? ":5349" : ":3478";
  if (!turn)
    return "stun://" + rest;
  g_autofree char *user = g_uri_escape_string (username.c_str (), nullptr,
      FALSE);
  g_autofree char *pass = g_uri_escape_string (credential.c_str (), nullptr,
      FALSE);
  return scheme + "://" + user + ":" + pass + "@" + rest + query;
}

/* A TURN URI without its credentials, for messages. */
std::string
without_userinfo (const std::string & uri)
{
  std::size_t at = uri.find ('@');
  std::size_t scheme = uri.find ("://");
  if (at == std::string::npos || scheme == std::string::npos || at < scheme)
    return uri;
  return uri.substr (0, scheme + 3) + uri.substr (at + 1);
}

/* Watches one webrtcbin's gathering for relay candidates: TURN servers
 * that refuse the credentials (wrong secret, expired) or cannot be
 * reached give none, and webrtcbin says nothing of it. */
struct RelayWatch
{
  Session *session;
  GstBin *bin;
  std::string member;
  std::string servers;                 /* for the message */
  bool relay_only;
  std::atomic<int> relays {0};
  std::atomic<bool> reported {false};
};

}  // namespace

void
Session::configure (GstElement * webrtc, const std::string & member)
{
  /* The application's own servers first; the greeting's (the server's
   * --ice-server) for the kind it set none of. */
  std::string stun = config_.stun_server;
  std::vector<std::string> turn;
  if (!config_.turn_server.empty ())
    turn.push_back (config_.turn_server);
  turn.insert (turn.end (), config_.turn_servers.begin (),
      config_.turn_servers.end ());
  bool own_stun = !stun.empty (), own_turn = !turn.empty ();
  if (client_)
    for (const IceServer & s : client_->ice_servers ())
      for (const std::string & url : s.urls) {
        bool is_turn = false;
        std::string uri = webrtc_ice_uri (url, s.username, s.credential,
            is_turn);
        if (uri.empty ())
          GST_INFO_OBJECT (element_, "ICE server %s: not usable by webrtcbin",
              url.c_str ());
        else if (is_turn && !own_turn)
          turn.push_back (uri);
        else if (!is_turn && !own_stun && stun.empty ())
          stun = uri;
      }
  if (!stun.empty ())
    g_object_set (webrtc, "stun-server", stun.c_str (), NULL);
  std::string servers;
  for (const std::string & t : turn) {
    gboolean ok = FALSE;
    g_signal_emit_by_name (webrtc, "add-turn-server", t.c_str (), &ok);
    if (!ok) {
      GST_ELEMENT_WARNING (element_, RESOURCE, SETTINGS,
          ("TURN server %s is not a turn(s)://user:password@host:port URI.",
              without_userinfo (t).c_str ()), (nullptr));
      continue;
    }
    servers += (servers.empty () ? "" : ", ") + without_userinfo (t);
  }
  g_object_set (webrtc, "ice-transport-policy", config_.ice_transport_policy,
      NULL);
  bool relay_only = config_.ice_transport_policy
      == GST_WEBRTC_ICE_TRANSPORT_POLICY_RELAY;
  if (!servers.empty () || relay_only)
    watch_relay (webrtc, member, servers, relay_only);
  g_object_set (webrtc, "latency", config_.latency_ms, NULL);

  std::vector<std::string> addresses = config_.ice_addresses;
  if (addresses.empty ()) {
    /* libnice leaves loopback out; on a host with nothing else (a
     * loopback-only namespace) it would gather no candidate at all. */
    GList *ips = nice_interfaces_get_local_ips (FALSE);
    if (!ips)
      addresses.push_back ("127.0.0.1");
    g_list_free_full (ips, g_free);
  }
  g_autoptr (GObject) ice = nullptr;
  g_object_get (webrtc, "ice-agent", &ice, NULL);
  if (ice && g_object_class_find_property (G_OBJECT_GET_CLASS (ice),
          "ice-tcp"))
    g_object_set (ice, "ice-tcp", config_.ice_tcp, NULL);
  for (const std::string & a : addresses) {
    gboolean ok = FALSE;
    g_signal_emit_by_name (ice, "add-local-ip-address", a.c_str (), &ok);
    if (!ok)
      GST_WARNING_OBJECT (element_, "ICE cannot use address '%s'", a.c_str ());
  }
}

void
Session::watch_relay (GstElement * webrtc, const std::string & member,
    const std::string & servers, bool relay_only)
{
  auto *w = new RelayWatch { this, bin (), member, servers, relay_only };
  auto free_watch = [] (gpointer d, GClosure *) {
    delete static_cast<RelayWatch *> (d);
  };
  g_signal_connect_data (webrtc, "on-ice-candidate", G_CALLBACK (+[] (
              GstElement *, guint, gchar * candidate, gpointer data) {
        if (candidate && strstr (candidate, " typ relay"))
          static_cast<RelayWatch *> (data)->relays++;
      }), w, nullptr, G_CONNECT_DEFAULT);
  /* The last handler owns the watch. */
  g_signal_connect_data (webrtc, "notify::ice-gathering-state",
      G_CALLBACK (+[] (GstElement * webrtc, GParamSpec *, gpointer data) {
        auto *w = static_cast<RelayWatch *> (data);
        GstWebRTCICEGatheringState state;
        g_object_get (webrtc, "ice-gathering-state", &state, NULL);
        if (state != GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE
            || w->relays > 0 || w->reported.exchange (true))
          return;
        Session *session = w->session;
        GstBin *bin = w->bin;
        std::string member = w->member;
        std::string why = w->servers.empty ()
            ? std::string ("no relay candidate: no TURN server is set "
                "(turn-server, turn-servers, or the signalling server's "
                "--ice-server)")
            : "no relay candidate was gathered from the TURN server(s) "
                + w->servers + ": they refused the credentials (a wrong or "
                "expired TURN secret) or could not be reached";
        bool relay_only = w->relay_only;
        GstElement *ref = GST_ELEMENT (gst_object_ref (webrtc));
        session->invoke ([session, bin, member, why, relay_only, ref] {
          /* The member's connection may have been closed meanwhile. */
          bool current = GST_OBJECT_PARENT (ref) == GST_OBJECT (bin);
          gst_object_unref (ref);
          if (!current)
            return;
          if (relay_only) {
            session->peer_failed (member, why + "; ice-transport-policy="
                "relay allows no other path");
            return;
          }
          if (session->relay_warned_)
            return;
          session->relay_warned_ = true;
          GST_ELEMENT_WARNING (session->element_, RESOURCE, OPEN_READ_WRITE,
              ("No TURN relay for member %s.", member.c_str ()),
              ("%s; only direct paths are tried", why.c_str ()));
        });
      }), w, free_watch, G_CONNECT_DEFAULT);
}

GstPad *
Session::add_output (GstPad * src, const std::string & member, Kind kind)
{
  GstPad *output = nullptr;
  std::string pad_name;
  if (mixer_) {
    output = mixer_->add (kind, src);
    pad_name = kind_name (kind);
  } else {
    pad_name = std::string (kind_name (kind)) + "_" + member;
    output = gst_ghost_pad_new (pad_name.c_str (), src);
    /* A member pad the pipeline left unlinked (more members than it has
     * branches for) drops its data instead of failing that member. */
    drop_unless_linked (output);
    gst_pad_set_active (output, TRUE);
    gst_element_add_pad (element_, GST_PAD (gst_object_ref (output)));
  }
  post (gst_structure_new (message::MEDIA_CONNECT,
          "member", G_TYPE_STRING, member.c_str (),
          "kind", G_TYPE_STRING, kind_name (kind),
          "pad", G_TYPE_STRING, pad_name.c_str (), NULL));
  return output;
}

void
Session::remove_output (GstPad * output, const std::string & member,
    Kind kind)
{
  std::string pad_name;
  if (mixer_) {
    pad_name = kind_name (kind);
    mixer_->remove (kind, output);
  } else {
    pad_name = GST_PAD_NAME (output);
    /* The member's stream ends: what is downstream (a muxer, say) is told
     * so. From here the decoder's data is dropped (Peer). */
    gst_ghost_pad_set_target (GST_GHOST_PAD (output), nullptr);
    gst_pad_push_event (output, gst_event_new_eos ());
    gst_pad_set_active (output, FALSE);
    gst_element_remove_pad (element_, output);
  }
  post (gst_structure_new (message::MEDIA_DISCONNECT,
          "member", G_TYPE_STRING, member.c_str (),
          "kind", G_TYPE_STRING, kind_name (kind),
          "pad", G_TYPE_STRING, pad_name.c_str (), NULL));
}

void
Session::peer_failed (const std::string & member, const std::string & reason)
{
  GST_ELEMENT_WARNING (element_, STREAM, FAILED,
      ("The connection to member %s failed.", member.c_str ()),
      ("%s", reason.c_str ()));
  post (gst_structure_new (message::PEER_FAILED,
          "member", G_TYPE_STRING, member.c_str (),
          "reason", G_TYPE_STRING, reason.c_str (), NULL));
  /* Not from inside the Peer's own call: it is still on the stack. */
  std::string m = member;
  invoke ([this, m] { close_peer (m); });
}

/* ------------------------------------------------------------------ */
/* Signalling */

void
Session::post (GstStructure * s)
{
  gst_element_post_message (element_,
      gst_message_new_element (GST_OBJECT (element_), s));
}

void
Session::on_connected (const std::string & id, bool first, bool same_id,
    bool resumed, const std::string & server)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    id_ = id;
  }
  warned_offline_ = false;
  if (first || !same_id) {
    if (!first) {
      /* A new identity: every connection was made as the old one. */
      std::vector<std::string> members;
      for (auto & p : peers_)
        members.push_back (p.first);
      for (const std::string & m : members)
        close_peer (m);
      for (auto & t : threads_)
        t.second.members.clear ();
    }
    GST_INFO_OBJECT (element_, "connected to %s as %s", server.c_str (),
        id.c_str ());
    post (gst_structure_new (message::SOCKET_CONNECT,
            "server", G_TYPE_STRING, server.c_str (),
            "id", G_TYPE_STRING, id.c_str (), NULL));
    g_object_notify (G_OBJECT (element_), "session-id");
    join_all ();
    /* What was sent while the first connection was made is for this id. */
    client_->release (first || same_id);
    send_presence (true);
    online_ = true;
  } else {
    GST_INFO_OBJECT (element_, "back on %s as %s (%s)", server.c_str (),
        id.c_str (),
        resumed ? "session kept" : "rejoining");
    post (gst_structure_new (message::SOCKET_RESUMED,
            "server", G_TYPE_STRING, server.c_str (),
            "id", G_TYPE_STRING, id.c_str (),
            "restored", G_TYPE_BOOLEAN, resumed, NULL));
    /* The server forgot us (restart, or the grace period passed): our
     * threads are to be joined again; the media connections never
     * needed the server and go on. */
    if (!resumed)
      join_all ();
    client_->release (true);
    send_presence (!resumed);
    online_ = true;
  }
  start_adapting ();
  if (config_.stats_interval_ms && !stats_source_) {
    stats_source_ = g_timeout_source_new (config_.stats_interval_ms);
    g_source_set_callback (stats_source_, [] (gpointer self) -> gboolean {
      static_cast<Session *> (self)->collect_stats ();
      return G_SOURCE_CONTINUE;
    }, this, nullptr);
    g_source_attach (stats_source_, context_);
  }
}

void
Session::on_lost (const std::string & reason, bool fatal, guint retry_ms,
    const std::string & server, const std::string & next)
{
  online_ = false;
  if (fatal) {
    if (config_.servers.size () > 1)
      GST_ELEMENT_ERROR (element_, RESOURCE, OPEN_READ_WRITE,
          ("Could not connect to any of the %zu signalling servers: %s.",
              config_.servers.size (), reason.c_str ()),
          ("%s", reason.c_str ()));
    else
      GST_ELEMENT_ERROR (element_, RESOURCE, OPEN_READ_WRITE,
          ("Could not connect to the signalling server %s: %s.",
              server.c_str (), reason.c_str ()),
          ("%s", reason.c_str ()));
    return;
  }
  if (!warned_offline_) {
    warned_offline_ = true;
    if (next != server)
      GST_ELEMENT_WARNING (element_, RESOURCE, OPEN_READ_WRITE,
          ("Lost the signalling server %s; connecting to %s. Media between "
              "members goes on.", server.c_str (), next.c_str ()),
          ("%s", reason.c_str ()));
    else
      GST_ELEMENT_WARNING (element_, RESOURCE, OPEN_READ_WRITE,
          ("Lost the signalling server %s; reconnecting. Media between "
              "members goes on.", server.c_str ()),
          ("%s", reason.c_str ()));
  }
  post (gst_structure_new (message::SOCKET_DISCONNECT,
          "server", G_TYPE_STRING, server.c_str (),
          "reason", G_TYPE_STRING, reason.c_str (),
          "retry-in", G_TYPE_UINT, retry_ms,
          "next-server", G_TYPE_STRING, next.c_str (), NULL));
}

void
Session::on_refused (guint status, const std::string & reason,
    const std::string & url)
{
  online_ = false;
  bool has_token;
  {
    std::lock_guard<std::mutex> guard (lock_);
    has_token = !auth_token_.empty ();
  }
  const char *server = url.c_str ();
  if (status == SOUP_STATUS_UNAUTHORIZED && has_token)
    GST_ELEMENT_ERROR (element_, RESOURCE, NOT_AUTHORIZED,
        ("The signalling server refused the auth token: %s from %s. It is "
            "not valid for this server, or it has expired.", reason.c_str (),
            server), ("nothing more is tried"));
  else if (status == SOUP_STATUS_UNAUTHORIZED)
    GST_ELEMENT_ERROR (element_, RESOURCE, NOT_AUTHORIZED,
        ("The signalling server wants an auth token: %s from %s. Set "
            "auth-token.", reason.c_str (), server),
        ("nothing more is tried"));
  else
    GST_ELEMENT_ERROR (element_, RESOURCE, NOT_AUTHORIZED,
        ("The signalling server refused the connection: %s from %s.",
            reason.c_str (), server), ("nothing more is tried"));
}

Session::Media
Session::our_media () const
{
  if (fixed_)
    return fixed_media_;
  /* Send what the pads carry, receive everything. */
  Media m;
  std::lock_guard<std::mutex> guard (lock_);
  m.video = config_.receives || outgoing_[(int) Kind::Video] != nullptr;
  m.audio = config_.receives || outgoing_[(int) Kind::Audio] != nullptr;
  return m;
}

/* The name and tags a member's thread:connect or thread:change carries
 * (from_name, else display_name; tags), for `members`. */
void
Session::learn_names (const std::string & member, JsonObject * msg)
{
  std::vector<std::string> names;
  std::string name = json_string (msg, "from_name");
  if (name.empty ())
    name = json_string (msg, "display_name");
  if (!name.empty ())
    names.push_back (name);
  JsonNode *tags = json_object_get_member (msg, "tags");
  if (tags && JSON_NODE_HOLDS_ARRAY (tags)) {
    JsonArray *a = json_node_get_array (tags);
    for (guint i = 0; i < json_array_get_length (a); i++) {
      JsonNode *n = json_array_get_element (a, i);
      if (JSON_NODE_HOLDS_VALUE (n)
          && json_node_get_value_type (n) == G_TYPE_STRING)
        names.emplace_back (json_node_get_string (n));
    }
  }
  known_as_[member] = names;
}

JsonObject *
Session::our_constraints () const
{
  Media m = our_media ();
  JsonObject *c = json_object_new ();
  json_object_set_boolean_member (c, "video", m.video);
  json_object_set_boolean_member (c, "audio", m.audio);
  return c;
}

void
Session::join_all ()
{
  std::vector<std::string> threads;
  {
    std::lock_guard<std::mutex> guard (lock_);
    threads = joined_;
  }
  for (const std::string & t : threads) {
    threads_[t];
    JsonObject *msg = new_message ("thread:connect");
    json_object_set_string_member (msg, "thread", t.c_str ());
    json_object_set_object_member (msg, "constraints", our_constraints ());
    /* Ahead of what waited while offline: it may be for these threads. */
    client_->send_first (msg);
    json_object_unref (msg);
  }
}

void
Session::constraints_changed (bool announce)
{
  if ((announce || !fixed_) && client_) {
    for (auto & t : threads_) {
      JsonObject *msg = new_message ("thread:change");
      json_object_set_string_member (msg, "thread", t.first.c_str ());
      json_object_set_object_member (msg, "constraints", our_constraints ());
      send (msg);
      json_object_unref (msg);
    }
  }
  sync_all ();
}

bool
Session::allowed (const std::string & member, Kind kind) const
{
  Media ours = our_media ();
  if (!ours.has (kind))
    return false;
  for (auto & t : threads_) {
    auto it = t.second.members.find (member);
    if (it != t.second.members.end () && it->second.has (kind))
      return true;
  }
  return false;
}

bool
Session::shares_thread (const std::string & member) const
{
  for (auto & t : threads_)
    if (t.second.members.count (member))
      return true;
  return false;
}

Peer *
Session::ensure_peer (const std::string & member)
{
  auto it = peers_.find (member);
  if (it != peers_.end ())
    return it->second.get ();
  if (!shares_thread (member))
    return nullptr;
  std::string me = id ();
  auto peer = std::make_unique<Peer> (*this, member, me > member);
  Peer *p = peer.get ();
  peers_[member] = std::move (peer);
  return p;
}

void
Session::close_peer (const std::string & member)
{
  auto it = peers_.find (member);
  if (it == peers_.end ())
    return;
  files_->member_gone (member);
  it = peers_.find (member);
  if (it == peers_.end ())
    return;
  std::unique_ptr<Peer> peer = std::move (it->second);
  peers_.erase (it);
  peer->close ();
}

void
Session::settle (const std::string & member)
{
  if (shares_thread (member)) {
    if (Peer *p = ensure_peer (member))
      p->sync ();
  } else if (!files_->busy (member)) {
    close_peer (member);
  }
}

void
Session::sync_all ()
{
  for (auto & p : peers_)
    p.second->sync ();
}

void
Session::on_message (JsonObject * msg)
{
  std::string type = json_string (msg, "type");
  std::string from = json_string (msg, "from");
  std::string thread = json_string (msg, "thread");

  if (json_object_has_member (msg, "callback_response") && on_reply (msg))
    return;
  if (type == "thread:connect" || type == "thread:change") {
    auto t = threads_.find (thread);
    if (t == threads_.end () || from.empty ())
      return;
    JsonNode *c = json_object_get_member (msg, "constraints");
    Media m;
    if (c && JSON_NODE_HOLDS_OBJECT (c))
      m = media_of (json_node_get_object (c));
    bool joined = type == "thread:connect"
        && !json_object_has_member (msg, "to");
    t->second.members[from] = m;
    learn_names (from, msg);
    if (joined) {
      /* Answer a join directly, so both know each other's constraints. */
      JsonObject *answer = new_message ("thread:connect");
      json_object_set_string_member (answer, "to", from.c_str ());
      json_object_set_string_member (answer, "thread", thread.c_str ());
      json_object_set_object_member (answer, "constraints",
          our_constraints ());
      send (answer);
      json_object_unref (answer);
    }
    post (gst_structure_new (type == "thread:change" ? message::THREAD_CHANGE
            : message::THREAD_CONNECT,
            "thread", G_TYPE_STRING, thread.c_str (),
            "member", G_TYPE_STRING, from.c_str (),
            "video", G_TYPE_BOOLEAN, m.video,
            "audio", G_TYPE_BOOLEAN, m.audio, NULL));
    if (Peer *p = ensure_peer (from))
      p->sync ();
  } else if (type == "thread:disconnect") {
    auto t = threads_.find (thread);
    if (t == threads_.end () || !t->second.members.erase (from))
      return;
    post (gst_structure_new (message::THREAD_DISCONNECT,
            "thread", G_TYPE_STRING, thread.c_str (),
            "member", G_TYPE_STRING, from.c_str (), NULL));
    settle (from);
  } else if (type == "socket:disconnect") {
    for (auto & t : threads_) {
      if (t.second.members.erase (from)) {
        post (gst_structure_new (message::THREAD_DISCONNECT,
                "thread", G_TYPE_STRING, t.first.c_str (),
                "member", G_TYPE_STRING, from.c_str (), NULL));
      }
    }
    close_peer (from);
  } else if (type == "stream:offer" || type == "stream:answer"
      || type == "stream:candidate" || type == "stream:makeoffer") {
    JsonNode *data_node = json_object_get_member (msg, "data");
    JsonObject *data = data_node && JSON_NODE_HOLDS_OBJECT (data_node)
        ? json_node_get_object (data_node) : nullptr;
    Peer *p = type == "stream:offer" ? ensure_peer (from)
        : (peers_.count (from) ? peers_[from].get () : nullptr);
    if (!p) {
      GST_DEBUG_OBJECT (element_, "%s from %s, who shares no thread with us",
          type.c_str (), from.c_str ());
      return;
    }
    if (type == "stream:makeoffer") {
      p->offer ();
    } else if (type == "stream:candidate") {
      std::string candidate = json_string (data, "candidate");
      const char *index = data && json_object_has_member (data,
          "sdpMLineIndex") ? "sdpMLineIndex" : "label";
      JsonNode *n = data ? json_object_get_member (data, index) : nullptr;
      if (n && JSON_NODE_HOLDS_VALUE (n)
          && json_node_get_value_type (n) == G_TYPE_INT64)
        p->on_candidate ((guint) json_node_get_int (n), candidate);
    } else {
      std::string sdp = json_string (data, "sdp");
      if (type == "stream:offer")
        p->on_offer (sdp);
      else
        p->on_answer (sdp);
    }
  } else if (type == "message") {
    /* Chat: `text` when the data is a string, `data` as JSON always. */
    JsonNode *data = json_object_get_member (msg, "data");
    g_autofree char *json = data ? json_to_string (data, FALSE)
        : g_strdup ("null");
    std::string text = json_string (msg, "data");
    post (gst_structure_new (message::MESSAGE,
            "from", G_TYPE_STRING, from.c_str (),
            "thread", G_TYPE_STRING, thread.c_str (),
            "text", G_TYPE_STRING, text.c_str (),
            "data", G_TYPE_STRING, json, NULL));
  } else if (type == "file:offer") {
    files_->on_offer (msg);
  } else if (type == "file:request") {
    files_->on_request (msg);
  } else if (type == "file:cancel") {
    files_->on_cancel (msg);
  } else if (!type.empty () && type != "error"
      && !g_str_has_prefix (type.c_str (), "thread:")
      && !g_str_has_prefix (type.c_str (), "stream:")
      && !g_str_has_prefix (type.c_str (), "socket:")) {
    on_event (msg, type);
  } else if (type == "socket:token") {
    GST_INFO_OBJECT (element_, "the server took the renewed auth token; it "
        "expires at %" G_GINT64_FORMAT, json_object_get_int_member_with_default
        (msg, "expires", 0));
  } else if (type == "error") {
    std::string code = json_string (msg, "code");
    std::string text = json_string (msg, "message");
    std::string ref_type = json_string (msg, "ref_type");
    if (code == "no-shared-thread" && (ref_type == "file:cancel"
            || g_str_has_prefix (ref_type.c_str (), "stream:"))) {
      /* The member left the thread we shared the instant before our
       * negotiation got there: nothing for the application. */
      GST_DEBUG_OBJECT (element_, "not delivered: %s", text.c_str ());
      return;
    }
    GST_WARNING_OBJECT (element_, "server refused a message: %s: %s",
        code.c_str (), text.c_str ());
    /* Not allowed by the token: the application should hear of it even
     * without looking for peerjs-server-error. */
    if (code == "forbidden") {
      std::string what = ref_type.empty () ? "a message" : "'" + ref_type + "'";
      GST_ELEMENT_WARNING (element_, RESOURCE, NOT_AUTHORIZED,
          ("The signalling server refused %s: %s", what.c_str (),
              text.c_str ()), (nullptr));
      /* A thread the token does not grant is refused for as long as the
       * token stands: stop asking for it, rejoins included. */
      if (json_string (msg, "grant") == "threads"
          && ref_type == "thread:connect" && !thread.empty ())
        thread_refused (thread);
    } else if (code == "invalid-token") {
      GST_ELEMENT_WARNING (element_, RESOURCE, NOT_AUTHORIZED,
          ("The signalling server refused the renewed auth token: %s",
              text.c_str ()), ("the session goes on with the previous token "
              "until it expires"));
    }
    post (gst_structure_new (message::SERVER_ERROR,
            "code", G_TYPE_STRING, code.c_str (),
            "message", G_TYPE_STRING, text.c_str (),
            "ref-type", G_TYPE_STRING, ref_type.c_str (),
            "thread", G_TYPE_STRING, thread.c_str (),
            NULL));
  }
}

/* ------------------------------------------------------------------ */
/* Events, threads and presence */

bool
Session::warn_if (bool bad, const std::string & what)
{
  if (bad)
    GST_ELEMENT_WARNING (element_, RESOURCE, SETTINGS, ("%s", what.c_str ()),
        (nullptr));
  return bad;
}

guint
Session::send_event (const std::string & type,
    const std::vector<std::string> & to, const std::string & thread,
    const std::string & data, bool reply, GstPromise * promise)
{
  if (warn_if (type.empty () || reserved_type (type), "send-event: '" + type
          + "' is not an event type of the application (thread:*, stream:*, "
          "socket:*, presence:*, file:*, message and error are the "
          "protocol's)")
      || warn_if (to.empty () && thread.empty (),
          "send-event: give 'to' (session ids or tags) or a 'thread'"))
    return 0;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (warn_if (!client_, "send-event: the element is not started")
        || warn_if (!thread.empty () && !contains (joined_, thread),
            "send-event: not a member of thread '" + thread + "'"))
      return 0;
  }
  guint id = next_event_id_++;
  JsonObject *msg = new_message (type.c_str ());
  if (!to.empty ())
    json_object_set_array_member (msg, "to", string_array (to));
  if (!thread.empty ())
    json_object_set_string_member (msg, "thread", thread.c_str ());
  json_object_set_member (msg, "data", data_node (data));
  reply = reply || promise;
  if (reply)
    json_object_set_int_member (msg, "callback_id", id);
  if (promise)
    gst_promise_ref (promise);
  /* Registered on the mesh thread before it goes: the reply comes there. */
  invoke ([this, msg, id, reply, promise] {
    if (reply) {
      Pending & p = callbacks_[id];
      p.promise = promise;
      if (config_.reply_timeout_ms) {
        p.timeout = g_timeout_source_new (config_.reply_timeout_ms);
        struct Timeout
        {
          Session *self;
          guint id;
        };
        g_source_set_callback (p.timeout, [] (gpointer data) -> gboolean {
          auto *t = static_cast<Timeout *> (data);
          t->self->finish_callback (t->id, "", "null", "timeout",
              "no reply within reply-timeout");
          return G_SOURCE_REMOVE;
        }, new Timeout { this, id }, [] (gpointer data) {
          delete static_cast<Timeout *> (data);
        });
        g_source_attach (p.timeout, context_);
      }
    }
    send (msg);
    json_object_unref (msg);
  });
  return id;
}

void
Session::finish_callback (guint id, const std::string & from,
    const std::string & data, const std::string & error,
    const std::string & text)
{
  auto it = callbacks_.find (id);
  if (it == callbacks_.end ())
    return;
  GstStructure *reply = gst_structure_new (message::EVENT_REPLY,
      "id", G_TYPE_UINT, id,
      "from", G_TYPE_STRING, from.c_str (),
      "data", G_TYPE_STRING, data.c_str (),
      "error", G_TYPE_STRING, error.c_str (),
      "message", G_TYPE_STRING, text.c_str (), NULL);
  Pending p = it->second;
  callbacks_.erase (it);
  if (p.timeout) {
    g_source_destroy (p.timeout);
    g_source_unref (p.timeout);
  }
  if (p.promise) {
    gst_promise_reply (p.promise, gst_structure_copy (reply));
    gst_promise_unref (p.promise);
  }
  post (reply);
}

bool
Session::on_reply (JsonObject * msg)
{
  std::string type = json_string (msg, "type");
  bool refused = type == "error";
  JsonNode *n = json_object_get_member (msg, "callback_response");
  guint id = JSON_NODE_HOLDS_VALUE (n)
      && json_node_get_value_type (n) == G_TYPE_INT64
      && json_node_get_int (n) > 0 && json_node_get_int (n) <= G_MAXUINT
      ? (guint) json_node_get_int (n) : 0;
  if (!callbacks_.count (id)) {
    /* Timed out, or never ours: a refusal is still worth telling. */
    GST_DEBUG_OBJECT (element_, "reply to a callback not waited for");
    return !refused;
  }
  if (refused)
    finish_callback (id, json_string (msg, "from"), "null",
        json_string (msg, "code"), json_string (msg, "message"));
  else
    finish_callback (id, json_string (msg, "from"), payload_json (msg), "",
        "");
  return true;
}

void
Session::on_event (JsonObject * msg, const std::string & type)
{
  JsonNode *id = json_object_get_member (msg, "callback_id");
  g_autofree char *callback = id && JSON_NODE_HOLDS_VALUE (id)
      ? json_to_string (id, FALSE) : g_strdup ("");
  std::string from = json_string (msg, "from");
  std::string via = json_string (msg, "original_to");
  if (type == "presence:watch") {
    post (gst_structure_new (message::WATCH,
            "from", G_TYPE_STRING, from.c_str (),
            "tag", G_TYPE_STRING, via.c_str (),
            "callback-id", G_TYPE_STRING, callback, NULL));
    return;
  }
  JsonNode *data = json_object_get_member (msg, "data");
  g_autofree char *data_json = data ? json_to_string (data, FALSE)
      : g_strdup ("null");
  JsonNode *whole = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (whole, msg);
  g_autofree char *whole_json = json_to_string (whole, FALSE);
  json_node_unref (whole);
  post (gst_structure_new (message::EVENT,
          "type", G_TYPE_STRING, type.c_str (),
          "from", G_TYPE_STRING, from.c_str (),
          "thread", G_TYPE_STRING, json_string (msg, "thread").c_str (),
          "to", G_TYPE_STRING, via.c_str (),
          "data", G_TYPE_STRING, data_json,
          "message", G_TYPE_STRING, whole_json,
          "callback-id", G_TYPE_STRING, callback, NULL));
}

bool
Session::reply_event (const std::string & to, const std::string & callback_id,
    const std::string & data)
{
  if (warn_if (to.empty () || callback_id.empty (),
          "reply-event: give the member and the callback-id the event came "
          "with"))
    return false;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (warn_if (!client_, "reply-event: the element is not started"))
      return false;
  }
  JsonObject *msg = json_object_new ();
  JsonNode *reply = data_node (data);
  if (JSON_NODE_HOLDS_OBJECT (reply)) {
    /* The fields go as they are, as peer.js's callback(obj) sends them. */
    JsonObjectIter it;
    const char *name;
    JsonNode *value;
    json_object_iter_init (&it, json_node_get_object (reply));
    while (json_object_iter_next (&it, &name, &value))
      json_object_set_member (msg, name, json_node_copy (value));
    json_node_unref (reply);
  } else {
    json_object_set_member (msg, "data", reply);
  }
  json_object_remove_member (msg, "type");
  json_object_set_string_member (msg, "to", to.c_str ());
  /* The id as it came: a number from peer.js, or a string. */
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root = json_parser_load_from_data (parser, callback_id.c_str (),
      -1, nullptr) ? json_parser_get_root (parser) : nullptr;
  if (root && JSON_NODE_HOLDS_VALUE (root))
    json_object_set_member (msg, "callback_response", json_node_copy (root));
  else
    json_object_set_string_member (msg, "callback_response",
        callback_id.c_str ());
  send (msg);
  json_object_unref (msg);
  return true;
}

bool
Session::join_thread (const std::string & thread)
{
  ProtocolLimits limits;
  if (warn_if (!valid_name (thread, limits.max_name_length),
          "join-thread: '" + thread + "' is not a valid thread name (1 to "
          + std::to_string (limits.max_name_length) + " bytes of UTF-8 "
          "without control characters)"))
    return false;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (contains (joined_, thread))
      return true;
    joined_.push_back (thread);
    if (!client_)
      return true;
  }
  invoke ([this, thread] {
    threads_[thread];
    JsonObject *msg = new_message ("thread:connect");
    json_object_set_string_member (msg, "thread", thread.c_str ());
    json_object_set_object_member (msg, "constraints", our_constraints ());
    send (msg);
    json_object_unref (msg);
  });
  return true;
}

/* Mesh thread. */
void
Session::thread_refused (const std::string & thread)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = std::find (joined_.begin (), joined_.end (), thread);
    if (it == joined_.end ())
      return;
    joined_.erase (it);
  }
  threads_.erase (thread);
  GST_INFO_OBJECT (element_, "thread '%s' is not granted by the auth token; "
      "not asking for it again", thread.c_str ());
  if (config_.thread_refused)
    config_.thread_refused (thread);
}

bool
Session::leave_thread (const std::string & thread)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = std::find (joined_.begin (), joined_.end (), thread);
    if (it == joined_.end ())
      return false;
    joined_.erase (it);
    if (!client_)
      return true;
  }
  invoke ([this, thread] {
    JsonObject *msg = new_message ("thread:disconnect");
    json_object_set_string_member (msg, "thread", thread.c_str ());
    send (msg);
    json_object_unref (msg);
    auto t = threads_.find (thread);
    if (t == threads_.end ())
      return;
    std::map<std::string, Media> members = std::move (t->second.members);
    threads_.erase (t);
    for (auto & m : members) {
      post (gst_structure_new (message::THREAD_DISCONNECT,
              "thread", G_TYPE_STRING, thread.c_str (),
              "member", G_TYPE_STRING, m.first.c_str (), NULL));
      settle (m.first);
    }
  });
  return true;
}

bool
Session::add_tags (const std::vector<std::string> & tags)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (const std::string & t : tags)
      if (!contains (tags_, t))
        tags_.push_back (t);
    if (!client_)
      return true;
  }
  invoke ([this] {
    if (online_)
      send_presence (false);
  });
  return true;
}

guint
Session::add_watches (const std::vector<std::string> & tags)
{
  std::vector<std::string> fresh;
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (const std::string & t : tags)
      if (!contains (watches_, t)) {
        watches_.push_back (t);
        fresh.push_back (t);
      }
    if (!client_ || fresh.empty ())
      return 0;
  }
  guint id = next_event_id_++;
  invoke ([this, fresh, id] {
    watch_batches_.push_back (Watch { fresh, id });
    callbacks_[id].event = false;
    if (online_)
      send_presence (false);
  });
  return id;
}

void
Session::send_presence (bool all)
{
  if (all) {
    tags_sent_.clear ();
    for (Watch & w : watch_batches_)
      w.sent = false;
  }
  std::vector<std::string> tags;
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (const std::string & t : tags_)
      if (!tags_sent_.count (t))
        tags.push_back (t);
  }
  if (!tags.empty ()) {
    JsonObject *msg = new_message ("presence:tag");
    json_object_set_array_member (msg, "data", string_array (tags));
    send (msg);
    json_object_unref (msg);
    tags_sent_.insert (tags.begin (), tags.end ());
  }
  for (Watch & w : watch_batches_) {
    if (w.sent)
      continue;
    JsonObject *msg = new_message ("presence:watch");
    json_object_set_array_member (msg, "to", string_array (w.tags));
    /* Whoever answers first, now or when taking the tag later: one reply,
     * as the protocol allows. */
    if (callbacks_.count (w.id))
      json_object_set_int_member (msg, "callback_id", w.id);
    send (msg);
    json_object_unref (msg);
    w.sent = true;
  }
}

/* ------------------------------------------------------------------ */
/* Files */

std::string
Session::offer_file (const std::string & path,
    const std::vector<std::string> & to, const std::string & thread)
{
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (warn_if (!client_, "offer-file: the element is not started")
        || warn_if (!thread.empty () && !contains (joined_, thread),
            "offer-file: not a member of thread '" + thread + "'"))
      return {};
  }
  std::string error;
  std::vector<std::string> threads;
  if (!thread.empty ())
    threads.push_back (thread);
  std::string id = files_->offer (path, "", to, threads, false, &error);
  warn_if (id.empty (), error);
  return id;
}

std::string
Session::offer_stream (const std::string & path, const std::string & name)
{
  std::vector<std::string> threads;
  {
    std::lock_guard<std::mutex> guard (lock_);
    threads = joined_;
  }
  std::string error;
  std::string id = files_->offer (path, name, {}, threads, true, &error);
  warn_if (id.empty (), error);
  return id;
}

bool
Session::request_file (const std::string & member, const std::string & id)
{
  std::string error;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (warn_if (!client_, "request-file: the element is not started"))
      return false;
  }
  return !warn_if (!files_->request (member, id, &error), error);
}

bool
Session::cancel_file (const std::string & id)
{
  return files_->cancel (id);
}

void
Session::file_channel (const std::string & member,
    GstWebRTCDataChannel * channel)
{
  files_->incoming (member, channel);
}

void
Session::open_channel (const std::string & member, const std::string & label,
    std::function<void (GstWebRTCDataChannel *)> ready)
{
  invoke ([this, member, label, ready] {
    auto it = peers_.find (member);
    Peer *p = it != peers_.end () ? it->second.get () : ensure_peer (member);
    if (!p) {
      ready (nullptr);
      return;
    }
    p->open_channel (label, ready);
  });
}

void
Session::transfer_ended (const std::string & member)
{
  invoke ([this, member] {
    if (peers_.count (member) && !shares_thread (member))
      settle (member);
  });
}

void
Session::watch_loss ()
{
  audio_fec_ = FecLevel (1, MAX_AUDIO_FEC_PERCENT);
  loss_source_ = g_timeout_source_new (LOSS_POLL_MS);
  g_source_set_callback (loss_source_, [] (gpointer self) -> gboolean {
    static_cast<Session *> (self)->follow_loss ();
    return G_SOURCE_CONTINUE;
  }, this, nullptr);
  g_source_attach (loss_source_, context_);
}

void
Session::unwatch_loss ()
{
  if (loss_source_) {
    g_source_destroy (loss_source_);
    g_source_unref (loss_source_);
    loss_source_ = nullptr;
  }
}

/* Each member's video FEC follows its own loss; our one Opus encoder
 * serves every member, so its FEC is sized for the worst. */
void
Session::follow_loss ()
{
  GstClockTime now = gst_util_get_timestamp ();
  double worst = 0;
  for (auto & p : peers_) {
    worst = std::max (worst, p.second->follow_loss (now));
    p.second->follow_round_trip ();
  }
  if (!config_.fec)
    return;
  int percent = audio_fec_.update (worst, now);
  /* Under lock_: remove_outgoing takes the stream away under it. */
  std::lock_guard<std::mutex> guard (lock_);
  if (outgoing_[(int) Kind::Audio])
    outgoing_[(int) Kind::Audio]->set_audio_fec (percent);
}

void
Session::collect_stats ()
{
  for (auto & p : peers_)
    p.second->stats ([this] (GstStructure * s) { post (s); });
}

}  // namespace peerjs
