/* End-to-end test harness: the real signalling server on its own thread and
 * GMainContext, real WebSocket clients on the test thread. */
#pragma once

#include "server.h"
#include "json-text.h"

#include <json-glib/json-glib.h>
#include <jwt.h>
#include <libsoup/soup.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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

/* A frame as it came off the wire. */
struct WsFrame
{
  guint8 first = 0;           /* FIN, RSV1-3 and the opcode */
  std::string payload;
  guint8 opcode () const { return first & 0x0f; }
  bool fin () const { return first & 0x80; }
};

/* One frame's bytes: `first` is the first byte as sent (FIN, RSV1-3,
 * opcode). Masked with a random key unless `masked` is false. `claimed`
 * replaces the payload length in the header, for frames that lie about it. */
std::string ws_frame (guint8 first, std::string_view payload,
    bool masked = true, std::optional<std::uint64_t> claimed = std::nullopt);

/* A client on a bare socket, for what libsoup's client cannot be asked to
 * send: fragmented, oversized and malformed frames, raw HTTP requests.
 * Blocking, with timeouts. */
class RawClient
{
public:
  /* Open, upgrade at /peerjs and read the greeting. */
  bool connect (guint port);
  /* The TCP connection alone, from `local_address` when given: any
   * 127.x.y.z reaches a server on 127.0.0.1 and is another client address
   * to it. */
  bool open (guint port, const char *local_address = nullptr);
  /* Ask for the WebSocket upgrade at `target`, with `headers` ("Name:
   * value\r\n" lines) added; true on 101 and a greeting. The answer's
   * status line and headers are in head (), a refusal's body in body ().
   * `after` goes in the same write, right behind the request. */
  bool upgrade (const std::string & target = "/peerjs",
      const std::string & headers = "", const std::string & after = "");
  /* Send one frame: opcode 1 text, 0 continuation; masked as RFC 6455
   * requires of clients. */
  bool send_frame (guint8 opcode, bool fin, const std::string & payload);
  /* Send bytes as they are; false if the server closed or took nothing
   * for 10 s. */
  bool send_raw (std::string_view bytes);
  /* Read one text frame (answering pings); nullopt on timeout or close. */
  std::optional<std::string> read_text (int timeout_ms = 3000);
  /* The next frame of any kind; pings are not answered. */
  std::optional<WsFrame> read_frame (int timeout_ms = 3000);
  /* Read up to the server's close frame, answering pings and passing over
   * messages: its code (1005 if it had none), with its reason. nullopt if
   * the connection ended without one or nothing came in time. */
  std::optional<gushort> read_close (int timeout_ms = 3000,
      std::string * reason = nullptr);
  /* What the server sends until it closes the connection; nullopt if it
   * is still open after `timeout_ms`. */
  std::optional<std::string> read_to_eof (int timeout_ms = 3000);
  guint status () const { return status_; }
  const std::string & head () const { return head_; }
  const std::string & body () const { return body_; }
  ~RawClient ();

  std::string id;
  std::string token;          /* the greeting's resume token */

private:
  bool fill (gint64 deadline);
  bool read_exact (guint8 * buf, gsize n, gint64 deadline);
  std::optional<std::string> read_head (gint64 deadline);
  GSocketConnection *conn_ = nullptr;
  GSocket *socket_ = nullptr;
  guint port_ = 0;
  std::string pending_;       /* read, not yet taken */
  std::size_t pending_pos_ = 0;
  guint status_ = 0;
  std::string head_;
  std::string body_;
};

/* Send `request` as it is on a fresh connection and read until the server
 * closes it (ask for "Connection: close"). The status, 0 if no answer came;
 * the whole answer in `response`. */
guint http_raw (guint port, const std::string & request,
    std::string * response = nullptr, int timeout_ms = 3000);

/* The server runs in this process (ServerThread): its memory is the test's.
 * VmRSS, and VmHWM, the peak since reset_peak_memory (), in bytes. */
struct Memory
{
  std::size_t rss = 0;
  std::size_t peak = 0;
};
Memory memory ();
/* Start the peak afresh (Linux: "5" into /proc/self/clear_refs). */
bool reset_peak_memory ();

/* Build a JSON text from a json-ish literal with single quotes for
 * readability: J("{'type':'message'}"). */
std::string J (std::string s);

/* HTTP GET on the test thread; returns status, fills body. */
guint http_get (const std::string & url, std::string * body = nullptr);

/* Wait until the server has `c` in `thread` (pumping `c` meanwhile): two
 * connections have no order between them, so whoever joins next is
 * announced to `c` only after this. Fails the test after 3 s. */
void wait_member (ServerThread & server, Client & c, const std::string & thread);

/* A JWT signed by libjwt with `alg` and `key`: the claims of the JSON
 * objects `claims`, then `more` (if not empty). */
std::string mint_jwt (jwt_alg_t alg, std::string_view key,
    const std::string & claims, const std::string & more = "");

}  // namespace peerjs::test
