/* The server side of one WebSocket connection (RFC 6455), after libsoup has
 * done the HTTP upgrade and handed over the stream.
 *
 * libsoup 3.2's own WebSocket connection bounds frames but not messages
 * made of continuation frames, closes the connection on an oversized frame,
 * keeps a timer and a fresh poll source per connection, and gives no way to
 * see how much is waiting to be sent. This one reads frames straight off
 * the stream: a message over the bound is dropped whole as it arrives and
 * reported, the connection stays; pings are sent by the server's one timer;
 * what waits to be written is counted exactly; frames queued during one
 * dispatch go out in one write.
 *
 * A plain TCP connection waits on the server's epoll Poller, by its socket
 * descriptor; a TLS one (whose stream may hold decrypted bytes the socket
 * no longer shows) on a GLib source of its own.
 */
#pragma once

#include "poller.h"

#include <gio/gio.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace peerjs {

class WebSocket : private Poller::Handler
{
public:
  class Listener
  {
  public:
    virtual void on_text (WebSocket & ws, std::string_view text) = 0;
    virtual void on_binary (WebSocket & ws) = 0;
    /* A message over the bound was dropped; `size` is what was seen. */
    virtual void on_oversize (WebSocket & ws, std::uint64_t size) = 0;
    /* Everything read in one wake-up has been handed over: frames queued
     * meanwhile can go out together. */
    virtual void on_read_end (WebSocket & ws) = 0;
    /* The connection is gone; the WebSocket may be deleted from here. */
    virtual void on_closed (WebSocket & ws) = 0;
    virtual ~Listener () = default;
  };

  /* `stream` must have pollable streams. With a `poller`, the WebSocket
   * takes a descriptor of its own for `fd`, the socket under `stream`,
   * reads and writes it directly with readiness from the poller, and keeps
   * no reference to `stream` (nor to the objects behind it): what the HTTP
   * layer read ahead is taken first. Without, it keeps a reference and
   * works on the stream with GLib sources. */
  WebSocket (GIOStream * stream, std::uint64_t max_message, Listener & listener,
      Poller * poller = nullptr, int fd = -1);
  ~WebSocket ();
  WebSocket (const WebSocket &) = delete;
  WebSocket & operator= (const WebSocket &) = delete;

  bool is_open () const { return state_ == State::Open; }

  /* Read what is there now. A Poller tells only of bytes in the socket,
   * not of those the HTTP layer read ahead into the stream's buffer: the
   * owner calls this once it is ready to hear messages. */
  void read_now ();

  /* Queue a frame; it is written at the next flush (), or at once when
   * the queue was empty. */
  void send_text (std::string_view text, bool flush_now = true);
  void ping ();
  /* Write what is queued, as far as the socket takes it. */
  void flush ();
  /* Start the closing handshake; the stream closes when the client
   * answers or after `linger_us`, whichever comes first. */
  void close (gushort code, std::string_view reason);

  std::uint64_t backlog () const { return out_.size () - out_pos_; }
  /* The code of the client's close frame; 0 if it sent none. */
  gushort peer_close_code () const { return peer_close_code_; }
  /* The client closed first: its close frame was not the answer to ours. */
  bool peer_closed_first () const { return peer_closed_first_; }
  std::int64_t last_read_us () const { return last_read_us_; }
  std::uint64_t bytes_read () const { return bytes_read_; }
  std::uint64_t bytes_written () const { return bytes_written_; }

  static constexpr std::int64_t linger_us = 2 * G_USEC_PER_SEC;

private:
  enum class State { Open, Closing, Closed };

  void on_ready (std::uint32_t events) override;
  gssize receive (guint8 * buf, std::size_t len);
  gssize transmit (const char *buf, std::size_t len);
  void close_transport ();
  void wait_writable ();
  void stop_polling ();
  static gboolean readable_cb (GObject * stream, gpointer self);
  static gboolean writable_cb (GObject * stream, gpointer self);

  bool read_some ();
  /* Parse what is buffered; false once the connection is closed. */
  bool parse (const guint8 * data, std::size_t len, std::size_t & used);
  bool frame (guint8 opcode, bool fin, const guint8 * mask,
      const guint8 * payload, std::size_t len);
  void queue_frame (guint8 opcode, std::string_view payload);
  bool fail (gushort code, const char *why);
  void finish ();

  GIOStream *io_ = nullptr;         /* stream mode */
  GPollableInputStream *in_ = nullptr;
  GPollableOutputStream *out_stream_ = nullptr;
  Poller *poller_;
  int fd_ = -1;                     /* descriptor mode: our own */
  bool want_write_ = false;   /* registered for EPOLLOUT */
  GSource *read_source_ = nullptr;
  GSource *write_source_ = nullptr;
  GSource *closed_source_ = nullptr;  /* tells the listener, from idle */
  GSource *linger_source_ = nullptr;  /* ends a closing handshake */
  Listener & listener_;
  std::uint64_t max_message_;
  State state_ = State::Open;
  gushort peer_close_code_ = 0;
  bool peer_closed_first_ = false;

  std::string in_buf_;        /* bytes of an incomplete frame */
  std::uint64_t skip_ = 0;    /* payload bytes of a dropped frame to come */
  std::string message_;       /* fragments of an incomplete message */
  bool in_message_ = false;   /* continuation frames expected */
  bool message_text_ = true;
  bool dropping_ = false;     /* the rest of an oversized message goes */
  std::uint64_t message_size_ = 0;

  std::string out_;           /* frames not yet written */
  std::size_t out_pos_ = 0;

  std::int64_t last_read_us_;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace peerjs
