#include "websocket.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

namespace peerjs {

namespace {

constexpr guint8 OP_CONTINUATION = 0x0;
constexpr guint8 OP_TEXT = 0x1;
constexpr guint8 OP_BINARY = 0x2;
constexpr guint8 OP_CLOSE = 0x8;
constexpr guint8 OP_PING = 0x9;
constexpr guint8 OP_PONG = 0xa;

constexpr gushort CLOSE_PROTOCOL_ERROR = 1002;
constexpr gushort CLOSE_INVALID_DATA = 1007;

/* Codes a close frame may carry (RFC 6455 7.4, and the IANA registry):
 * never 1004-1006 or 1015, which mean things no frame can say. */
bool
valid_close_code (gushort code)
{
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014)
      || (code >= 3000 && code <= 4999);
}
constexpr std::size_t READ_CHUNK = 64 * 1024;
/* Where every read of the thread lands before it is parsed. */
thread_local guint8 read_chunk[READ_CHUNK];

}  // namespace

WebSocket::WebSocket (GIOStream * stream, std::uint64_t max_message,
    Listener & listener, Poller * poller, int fd)
  : poller_ (poller && fd >= 0 ? poller : nullptr),
    listener_ (listener), max_message_ (max_message),
    last_read_us_ (g_get_monotonic_time ())
{
  in_ = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (stream));
  if (poller_) {
    /* A descriptor of our own, and the stream goes with all its objects:
     * an idle connection is this object and a socket. First whatever the
     * HTTP layer read ahead, which the socket no longer shows. */
    gssize n = g_pollable_input_stream_read_nonblocking (in_, read_chunk,
        sizeof read_chunk, nullptr, nullptr);
    if (n > 0) {
      in_buf_.assign (reinterpret_cast<char *>(read_chunk), n);
      bytes_read_ += n;
    }
    in_ = nullptr;
    fd_ = dup (fd);
    if (fd_ >= 0 && poller_->add (fd_, EPOLLIN, this))
      return;
    if (fd_ >= 0)
      ::close (fd_);
    fd_ = -1;
    poller_ = nullptr;
  }
  /* On the stream, with one source for the connection's whole life, not
   * one per wait. */
  io_ = G_IO_STREAM (g_object_ref (stream));
  in_ = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (stream));
  out_stream_ = G_POLLABLE_OUTPUT_STREAM (g_io_stream_get_output_stream (stream));
  read_source_ = g_pollable_input_stream_create_source (in_, nullptr);
  g_source_set_callback (read_source_, G_SOURCE_FUNC (readable_cb), this, nullptr);
  g_source_attach (read_source_, g_main_context_get_thread_default ());
}

WebSocket::~WebSocket ()
{
  stop_polling ();
  if (closed_source_) {
    g_source_destroy (closed_source_);
    g_source_unref (closed_source_);
    closed_source_ = nullptr;
  }
  close_transport ();
}

/* Let go of the socket; unsent bytes still leave. */
void
WebSocket::close_transport ()
{
  if (fd_ >= 0) {
    ::close (fd_);
    fd_ = -1;
  }
  if (io_) {
    g_io_stream_close_async (io_, G_PRIORITY_DEFAULT, nullptr, nullptr, nullptr);
    g_clear_object (&io_);
  }
}

void
WebSocket::stop_polling ()
{
  if (poller_) {
    poller_->remove (fd_, this);
    poller_ = nullptr;
  }
  for (GSource **s : {&read_source_, &write_source_, &linger_source_}) {
    if (*s) {
      g_source_destroy (*s);
      g_source_unref (*s);
      *s = nullptr;
    }
  }
  want_write_ = false;
}

void
WebSocket::on_ready (std::uint32_t events)
{
  if (events & EPOLLOUT) {
    poller_->modify (fd_, EPOLLIN, this);
    want_write_ = false;
    flush ();
    if (state_ == State::Closed)
      return;
  }
  /* Errors and hang-ups are found by the read. */
  if (events & ~EPOLLOUT)
    read_some ();
}

/* The socket took less than was queued: wait until it takes more. */
void
WebSocket::wait_writable ()
{
  if (poller_) {
    if (!want_write_ && poller_->modify (fd_, EPOLLIN | EPOLLOUT, this))
      want_write_ = true;
    return;
  }
  write_source_ = g_pollable_output_stream_create_source (out_stream_, nullptr);
  g_source_set_callback (write_source_, G_SOURCE_FUNC (writable_cb), this, nullptr);
  g_source_attach (write_source_, g_main_context_get_thread_default ());
}

gboolean
WebSocket::readable_cb (GObject *, gpointer data)
{
  auto *self = static_cast<WebSocket *>(data);
  return self->read_some () ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

gboolean
WebSocket::writable_cb (GObject *, gpointer data)
{
  auto *self = static_cast<WebSocket *>(data);
  g_source_unref (self->write_source_);
  self->write_source_ = nullptr;
  self->flush ();
  return G_SOURCE_REMOVE;
}

void
WebSocket::read_now ()
{
  if (state_ == State::Closed)
    return;
  if (!in_buf_.empty ()) {
    /* What the constructor found read ahead. */
    std::size_t used = 0;
    last_read_us_ = g_get_monotonic_time ();
    if (parse (reinterpret_cast<const guint8 *>(in_buf_.data ()),
            in_buf_.size (), used))
      in_buf_.erase (0, used);
  }
  if (state_ != State::Closed)
    read_some ();
}

/* Up to `len` bytes: > 0 read, 0 nothing now, -1 the connection ended. */
gssize
WebSocket::receive (guint8 * buf, std::size_t len)
{
  if (fd_ >= 0) {
    for (;;) {
      ssize_t n = recv (fd_, buf, len, 0);
      if (n > 0)
        return n;
      if (n < 0 && errno == EINTR)
        continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
  }
  g_autoptr (GError) error = nullptr;
  gssize n = g_pollable_input_stream_read_nonblocking (in_, buf, len, nullptr,
      &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return 0;
  return n > 0 ? n : -1;
}

/* Bytes the socket took: > 0, 0 if it takes none now, -1 the connection
 * ended. */
gssize
WebSocket::transmit (const char *buf, std::size_t len)
{
  if (fd_ >= 0) {
    for (;;) {
      ssize_t n = send (fd_, buf, len, MSG_NOSIGNAL);
      if (n > 0)
        return n;
      if (n < 0 && errno == EINTR)
        continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
  }
  g_autoptr (GError) error = nullptr;
  gssize n = g_pollable_output_stream_write_nonblocking (out_stream_, buf, len,
      nullptr, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return 0;
  return n > 0 ? n : -1;
}

bool
WebSocket::read_some ()
{
  guint8 *chunk = read_chunk;
  for (int round = 0; round < 4 && state_ != State::Closed; round++) {
    gssize n = receive (chunk, READ_CHUNK);
    if (n == 0)
      break;
    if (n < 0) {
      finish ();
      break;
    }
    bytes_read_ += n;
    last_read_us_ = g_get_monotonic_time ();
    std::size_t used = 0;
    if (in_buf_.empty ()) {
      bool open = parse (chunk, n, used);
      if (open && used < static_cast<std::size_t>(n))
        in_buf_.append (reinterpret_cast<char *>(chunk) + used, n - used);
    } else {
      in_buf_.append (reinterpret_cast<char *>(chunk), n);
      if (parse (reinterpret_cast<const guint8 *>(in_buf_.data ()),
              in_buf_.size (), used))
        in_buf_.erase (0, used);
    }
    if (static_cast<std::size_t>(n) < READ_CHUNK)
      break;
  }
  listener_.on_read_end (*this);
  if (state_ != State::Closed)
    flush ();   /* pongs */
  return state_ != State::Closed;
}

bool
WebSocket::parse (const guint8 * d, std::size_t n, std::size_t & used)
{
  used = 0;
  while (state_ != State::Closed) {
    if (skip_ > 0) {
      std::size_t k = std::min<std::uint64_t>(skip_, n - used);
      skip_ -= k;
      used += k;
      if (skip_ > 0)
        return true;
      continue;
    }
    const guint8 *p = d + used;
    std::size_t avail = n - used;
    if (avail < 2)
      return true;
    bool fin = p[0] & 0x80;
    guint8 opcode = p[0] & 0x0f;
    bool masked = p[1] & 0x80;
    std::uint64_t len = p[1] & 0x7f;
    std::size_t hdr = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < hdr)
      return true;
    if (len >= 126) {
      int bytes = len == 126 ? 2 : 8;
      len = 0;
      for (int i = 0; i < bytes; i++)
        len = (len << 8) | p[2 + i];
      /* RFC 6455 5.2: the most significant bit must be 0. */
      if (len >> 63)
        return fail (CLOSE_PROTOCOL_ERROR, "64-bit length with its top bit set"), false;
    }

    if (p[0] & 0x70)
      return fail (CLOSE_PROTOCOL_ERROR, "reserved bits set"), false;
    if (!masked)
      return fail (CLOSE_PROTOCOL_ERROR, "client frames must be masked"), false;
    if (opcode >= 0x8) {
      if (!fin || len > 125 || (opcode != OP_CLOSE && opcode != OP_PING
              && opcode != OP_PONG))
        return fail (CLOSE_PROTOCOL_ERROR, "bad control frame"), false;
    } else if (opcode == OP_CONTINUATION) {
      if (!in_message_)
        return fail (CLOSE_PROTOCOL_ERROR, "continuation without a message"), false;
      in_message_ = !fin;
    } else if (opcode == OP_TEXT || opcode == OP_BINARY) {
      if (in_message_)
        return fail (CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one"), false;
      in_message_ = !fin;
      message_text_ = opcode == OP_TEXT;
      message_size_ = 0;
      dropping_ = false;
      message_.clear ();
    } else {
      return fail (CLOSE_PROTOCOL_ERROR, "unknown opcode"), false;
    }

    if (opcode < 0x8) {
      /* Decide on the size before taking in a byte of the payload. */
      /* Saturating: continuation frames may claim any length. */
      message_size_ = len > UINT64_MAX - message_size_ ? UINT64_MAX
          : message_size_ + len;
      if (!dropping_ && message_size_ > max_message_) {
        dropping_ = true;
        message_.clear ();
        message_.shrink_to_fit ();
        listener_.on_oversize (*this, message_size_);
        if (state_ == State::Closed)
          return false;
      }
      if (dropping_) {
        used += hdr;
        skip_ = len;
        if (fin)
          dropping_ = false;
        continue;
      }
    }
    if (avail < hdr + len)
      return true;   /* wait for the rest; it is within the bound */

    const guint8 *mask = p + hdr - 4;
    const guint8 *payload = p + hdr;
    used += hdr + len;
    if (!frame (opcode, fin, mask, payload, len))
      return false;
  }
  return false;
}

bool
WebSocket::frame (guint8 opcode, bool fin, const guint8 * mask,
    const guint8 * payload, std::size_t len)
{
  std::size_t start = opcode < 0x8 ? message_.size () : 0;
  std::string control;
  std::string &dst = opcode < 0x8 ? message_ : control;
  dst.resize (start + len);
  /* Unmask eight bytes at a time; the mask repeats every four. */
  char *out = &dst[start];
  std::uint32_t m4;
  std::memcpy (&m4, mask, 4);
  const std::uint64_t m8 = (static_cast<std::uint64_t>(m4) << 32) | m4;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t v;
    std::memcpy (&v, payload + i, 8);
    v ^= m8;
    std::memcpy (out + i, &v, 8);
  }
  for (; i < len; i++)
    out[i] = static_cast<char>(payload[i] ^ mask[i & 3]);

  switch (opcode) {
    case OP_PING:
      /* Nothing follows our close frame, pongs included. */
      if (state_ == State::Open)
        queue_frame (OP_PONG, control);
      return true;
    case OP_PONG:
      return true;
    case OP_CLOSE:
      peer_close_code_ = control.size () >= 2
          ? static_cast<gushort>((static_cast<guint8>(control[0]) << 8)
              | static_cast<guint8>(control[1]))
          : 1005;   /* RFC 6455: no status code present */
      /* A bad close frame is still the client closing first. */
      peer_closed_first_ = state_ == State::Open;
      if (control.size () == 1 || (control.size () >= 2
              && !valid_close_code (peer_close_code_)))
        return fail (CLOSE_PROTOCOL_ERROR, "invalid close code"), false;
      if (control.size () > 2 && !g_utf8_validate (control.data () + 2,
              control.size () - 2, nullptr))
        return fail (CLOSE_INVALID_DATA, "close reason is not UTF-8"), false;
      if (state_ == State::Open) {
        /* Answer with the client's code, then go. */
        queue_frame (OP_CLOSE, control.substr (0, std::min<std::size_t>(2, control.size ())));
        flush ();
      }
      finish ();
      return false;
    default:
      break;
  }
  if (!fin)
    return true;
  if (message_text_)
    listener_.on_text (*this, message_);
  else
    listener_.on_binary (*this);
  message_.clear ();
  if (message_.capacity () > 64 * 1024)
    message_.shrink_to_fit ();
  return state_ != State::Closed;
}

void
WebSocket::queue_frame (guint8 opcode, std::string_view payload)
{
  char hdr[10];
  std::size_t n = 2;
  std::uint64_t len = payload.size ();
  hdr[0] = static_cast<char>(0x80 | opcode);
  if (len < 126) {
    hdr[1] = static_cast<char>(len);
  } else if (len <= 0xffff) {
    hdr[1] = 126;
    hdr[2] = static_cast<char>(len >> 8);
    hdr[3] = static_cast<char>(len);
    n = 4;
  } else {
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
      hdr[2 + i] = static_cast<char>(len >> (56 - 8 * i));
    n = 10;
  }
  out_.append (hdr, n);
  out_.append (payload);
}

void
WebSocket::send_text (std::string_view text, bool flush_now)
{
  if (state_ != State::Open)
    return;
  queue_frame (OP_TEXT, text);
  if (flush_now)
    flush ();
}

void
WebSocket::ping ()
{
  if (state_ != State::Open)
    return;
  queue_frame (OP_PING, {});
  flush ();
}

void
WebSocket::flush ()
{
  if (state_ == State::Closed || write_source_ || want_write_)
    return;
  while (out_pos_ < out_.size ()) {
    gssize n = transmit (out_.data () + out_pos_, out_.size () - out_pos_);
    if (n == 0) {
      wait_writable ();
      /* Keep the queue from growing behind a long written prefix. */
      if (out_pos_ > out_.size () / 2) {
        out_.erase (0, out_pos_);
        out_pos_ = 0;
      }
      return;
    }
    if (n < 0) {
      finish ();
      return;
    }
    out_pos_ += n;
    bytes_written_ += n;
  }
  /* Drained: give the buffer back, so an idle connection holds none. */
  std::string ().swap (out_);
  out_pos_ = 0;
}

void
WebSocket::close (gushort code, std::string_view reason)
{
  if (state_ != State::Open)
    return;
  std::string payload;
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xff);
  payload += reason.substr (0, 123);
  queue_frame (OP_CLOSE, payload);
  state_ = State::Closing;
  linger_source_ = g_timeout_source_new (linger_us / 1000);
  g_source_set_callback (linger_source_, [] (gpointer data) -> gboolean {
        static_cast<WebSocket *>(data)->finish ();
        return G_SOURCE_REMOVE;
      }, this, nullptr);
  g_source_attach (linger_source_, g_main_context_get_thread_default ());
  flush ();
}

bool
WebSocket::fail (gushort code, const char *why)
{
  if (state_ == State::Open) {
    close (code, why);
    finish ();
  }
  return false;
}

void
WebSocket::finish ()
{
  if (state_ == State::Closed)
    return;
  state_ = State::Closed;
  stop_polling ();
  close_transport ();
  /* Tell the owner from the main loop, not from inside a read: it will
   * delete this object. */
  closed_source_ = g_idle_source_new ();
  g_source_set_callback (closed_source_, [] (gpointer data) -> gboolean {
        auto *self = static_cast<WebSocket *>(data);
        g_source_unref (self->closed_source_);
        self->closed_source_ = nullptr;
        self->listener_.on_closed (*self);
        return G_SOURCE_REMOVE;
      }, this, nullptr);
  g_source_attach (closed_source_, g_main_context_get_thread_default ());
}

}  // namespace peerjs
