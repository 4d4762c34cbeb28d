/* End-to-end test harness: the real signalling server on its own thread and
 * GMainContext, real WebSocket clients on the test thread. */
#pragma once

#include "server.h"
#include "json-text.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace peerjs::test {

/* A received message. */
using Msg = JsonText;

class ServerThread
{
public:
  explicit ServerThread (ServerOptions options = default_options ());
  ~ServerThread ();

  static ServerOptions default_options ();

  guint port () const { return port_; }
  std::string ws_url () const;
  std::string http_url (const std::string & path) const;

  /* Run `f` on the server's thread and wait for it. */
  void call (const std::function<void (SignallingServer &)> & f);
  /* Stop the server; start() makes a new one with the same options (port
   * and secret included), as a restarted process would be. */
  void stop ();
  void start ();

private:
  void run ();

  ServerOptions options_;
  guint port_ = 0;
  GMainContext *context_ = nullptr;
  GMainLoop *loop_ = nullptr;
  std::thread thread_;
  std::unique_ptr<SignallingServer> server_;
};

/* A WebSocket client on a GMainContext of its own, iterated only while a
 * test waits on it: a client nobody waits on answers no pings, as a frozen
 * peer would. */
class Client
{
public:
  Client ();
  ~Client ();

  /* Connect and read the greeting. `query` is appended to the URL. */
  bool connect (const std::string & url, const std::string & query = "");
  void send (const std::string & json);
  /* Next message, waiting up to `timeout_ms`. */
  std::optional<Msg> next (int timeout_ms = 3000);
  /* Next message of this type; others in between are kept in order. */
  std::optional<Msg> next_of (const std::string & type, int timeout_ms = 3000);
  /* True if nothing arrives within `ms`. */
  bool quiet (int ms = 200);
  /* Close with a close frame, or drop the TCP connection without one. */
  void close (gushort code = SOUP_WEBSOCKET_CLOSE_NORMAL);
  void abort ();
  /* Wait until the server has closed this connection. */
  bool wait_closed (int timeout_ms = 5000);
  gushort close_code () const;
  void pump (int ms);

  std::string id;
  std::string token;
  Msg greeting;
  std::uint64_t last_seq = 0;

private:
  bool iterate_until (const std::function<bool ()> & done, int timeout_ms);

  GMainContext *context_ = nullptr;
  SoupSession *session_ = nullptr;
  SoupWebsocketConnection *ws_ = nullptr;
  std::deque<Msg> inbox_;
  bool closed_ = false;
};

/* A client on a bare socket, for frames libsoup's client cannot be asked to
 * send: fragmented and oversized messages. Blocking, with timeouts. */
class RawClient
{
public:
  bool connect (guint port);
  /* Send one frame: opcode 1 text, 0 continuation; masked as RFC 6455
   * requires of clients. */
  bool send_frame (guint8 opcode, bool fin, const std::string & payload);
  /* Read one text frame (answering pings); nullopt on timeout or close. */
  std::optional<std::string> read_text (int timeout_ms = 3000);
  ~RawClient ();

  std::string id;

private:
  bool read_exact (guint8 * buf, gsize n);
  GSocketConnection *conn_ = nullptr;
  GSocket *socket_ = nullptr;
  std::string pending_;
};

/* Build a JSON text from a json-ish literal with single quotes for
 * readability: J("{'type':'message'}"). */
std::string J (std::string s);

/* HTTP GET on the test thread; returns status, fills body. */
guint http_get (const std::string & url, std::string * body = nullptr);

}  // namespace peerjs::test
