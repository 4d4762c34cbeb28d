/* The elements' signalling client: one WebSocket to peerjs-signalling,
 * owned by a thread of its own with its own GMainContext (libsoup is not
 * thread-safe). It greets, keeps the resume token and the last `seq`,
 * reconnects with backoff to the same id, and hands every message to its
 * owner on that thread. docs/protocol.md is the contract.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <deque>
#include <functional>
#include <string>
#include <thread>

namespace peerjs {

class SignallingClient
{
public:
  struct Handlers
  {
    /* The greeting arrived. `first` is the first greeting of this run;
     * `same_id` says whether the server gave back the id we had. */
    std::function<void (const std::string & id, bool first, bool same_id,
        bool resumed)> connected;
    /* A message for us, in order, duplicates dropped. */
    std::function<void (JsonObject * msg)> message;
    /* The connection is gone. `fatal`: the first connection never came up
     * and nothing will be retried; else a reconnect is due in `retry_ms`. */
    std::function<void (const std::string & reason, bool fatal,
        guint retry_ms)> lost;
  };

  SignallingClient (std::string url, std::string tls_ca, Handlers handlers);
  ~SignallingClient ();

  /* Start the thread and connect. */
  void start ();
  /* Say goodbye (socket:disconnect, close 1000), stop the thread, join. */
  void stop ();

  /* Run `f` on the signalling thread, soon; never blocks. */
  void invoke (std::function<void ()> f);
  /* Send one message; on the signalling thread only. While disconnected it
   * waits in a bounded outbox and goes out, in order, once the server
   * gives back the same id (after what the `connected` handler sends). */
  void send (JsonObject * msg);
  bool connected () const { return greeted_; }
  GMainContext *context () const { return context_; }

private:
  void run ();
  void connect ();
  void on_connected (GObject * source, GAsyncResult * result);
  void on_message (GBytes * bytes);
  void on_closed ();
  void schedule_reconnect (const std::string & reason);

  std::string url_;
  std::string tls_ca_;
  Handlers handlers_;

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
  bool stopping_ = false;
  guint retry_ = 0;
  GSource *retry_source_ = nullptr;
  std::deque<std::string> outbox_;
};

/* A JSON object's member as a string, or "" when absent or not a string. */
std::string json_string (JsonObject * obj, const char * name);

}  // namespace peerjs
