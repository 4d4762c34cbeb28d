/* The elements' signalling client: one WebSocket to peerjs-signalling,
 * owned by a thread of its own with its own GMainContext (libsoup is not
 * thread-safe). It presents the auth token (?token=), greets, keeps the
 * resume token and the last `seq`, reconnects with backoff to the same
 * id, and hands every message to its owner. Given several URLs (the nodes
 * of one cluster), it moves to the next one whenever a connection is lost
 * or cannot be made, round the list. That thread only does I/O and
 * never waits on anything else, so the server's pings are always answered.
 * docs/protocol.md is the contract.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace peerjs {

/* One entry of the greeting's ice_servers (RTCConfiguration.iceServers). */
struct IceServer
{
  std::vector<std::string> urls;
  std::string username;
  std::string credential;
};

class SignallingClient
{
public:
  /* Called on the client's thread; they must not block. */
  struct Handlers
  {
    /* The greeting arrived from `url`. `first` is the first greeting of
     * this run; `same_id` says whether the server gave back the id we had.
     * Until release() is called, send() holds what it is given. */
    std::function<void (const std::string & id, bool first, bool same_id,
        bool resumed, const std::string & url)> connected;
    /* A message for us, in order, duplicates dropped. */
    std::function<void (JsonObject * msg)> message;
    /* The connection to `url` is gone, or could not be made. `fatal`: no
     * URL gave a first connection and nothing will be retried (`reason`
     * then names each URL's failure when there are several); else a
     * connection to `next` is due in `retry_ms`. */
    std::function<void (const std::string & reason, bool fatal,
        guint retry_ms, const std::string & url,
        const std::string & next)> lost;
    /* The server at `url` answered the upgrade with 401 or 403 (a token or
     * an origin it does not accept): trying again would get the same, so
     * nothing more is tried. `reason` is the status and its phrase. */
    std::function<void (guint status, const std::string & reason,
        const std::string & url)> refused;
    /* The auth token to present on the next connection attempt, "" for
     * none. Asked before every connect and reconnect, so a token the
     * application renews is the one used. */
    std::function<std::string ()> auth_token;
  };

  /* `urls`: one or more ws:// or wss:// URLs, tried in this order. */
  SignallingClient (std::vector<std::string> urls, std::string tls_ca,
      Handlers handlers);
  ~SignallingClient ();

  /* Start the thread and connect. */
  void start ();
  /* Say goodbye (socket:disconnect, close 1000), stop the thread, join. */
  void stop ();

  /* Send one message, from any thread, in order. While disconnected, and
   * after a greeting until release(), it waits in a bounded outbox. */
  void send (JsonObject * msg);
  /* Fields added to every thread:connect and thread:change we send (how
   * this member describes itself: display_name, pipeline, records). Set
   * before start (). */
  void describe_self (JsonObject * fields);
  /* Send at once, ahead of what waits (joining threads after a greeting). */
  void send_first (JsonObject * msg);
  /* After a greeting: send what waited (keep) or drop it (it was written
   * as another member), and send directly again. Any thread. */
  void release (bool keep);
  /* The ICE servers of the latest greeting (empty: none). Any thread. */
  std::vector<IceServer> ice_servers () const;

private:
  void invoke (std::function<void ()> f);
  void write (const std::string & text);
  void run ();
  void connect ();
  /* `tls`: how far the TLS handshake went (TLS_NONE without one). */
  enum Tls { TLS_NONE, TLS_STARTED, TLS_DONE };
  void on_connected (GObject * source, GAsyncResult * result,
      SoupMessage * msg, Tls tls);
  /* Why a connection attempt that got no WebSocket failed, in words. */
  std::string connect_failure (SoupMessage * msg, const GError * error,
      bool timed_out, Tls tls);
  void on_message (GBytes * bytes);
  void on_closed ();
  void schedule_reconnect (const std::string & reason);

  const std::vector<std::string> urls_;
  std::string tls_ca_;
  Handlers handlers_;
  JsonObject *self_ = nullptr;     /* describe_self's fields */
  void add_self (JsonObject * msg);

  GMainContext *context_ = nullptr;
  GMainLoop *loop_ = nullptr;
  std::thread thread_;

  /* Signalling thread only. */
  SoupSession *session_ = nullptr;
  SoupWebsocketConnection *ws_ = nullptr;
  GCancellable *cancellable_ = nullptr;
  std::string id_;
  std::string token_;
  gint64 last_seq_ = 0;
  bool greeted_once_ = false;
  bool greeted_ = false;           /* on the current connection */
  bool holding_ = true;            /* until release () */
  bool stopping_ = false;
  guint retry_ = 0;
  std::size_t current_ = 0;        /* index in urls_ */
  std::string first_failures_;     /* why each URL failed, before a greeting */
  GSource *retry_source_ = nullptr;
  std::deque<std::string> outbox_;

  mutable std::mutex ice_lock_;
  std::vector<IceServer> ice_servers_;
};

/* A JSON object's member as a string, or "" when absent or not a string. */
std::string json_string (JsonObject * obj, const char * name);

}  // namespace peerjs
