#include "websocket-guard.h"

#include <cstring>
#include <string>

namespace peerjs {

namespace {

/* Client-to-server frame filter (RFC 6455 §5.2). Bytes go in as they come
 * off the socket; what libsoup may see comes out. */
class FrameFilter
{
public:
  explicit FrameFilter (std::uint64_t max) : max_ (max) { }

  std::shared_ptr<GuardCounters> counters;

  bool has_output () const { return out_pos_ < out_.size (); }

  gsize take (void *buf, gsize count)
  {
    gsize n = std::min<gsize>(count, out_.size () - out_pos_);
    std::memcpy (buf, out_.data () + out_pos_, n);
    out_pos_ += n;
    if (out_pos_ == out_.size ()) {
      out_.clear ();
      out_pos_ = 0;
    }
    return n;
  }

  void feed (const guint8 * p, gsize n)
  {
    counters->bytes_read += n;
    counters->last_read_us = g_get_monotonic_time ();
    while (n > 0) {
      if (payload_left_ == 0) {
        /* Collect a header. */
        header_[header_len_++] = *p++;
        n--;
        if (header_len_ < header_needed ())
          continue;
        start_frame ();
        continue;
      }
      gsize chunk = std::min<std::uint64_t>(n, payload_left_);
      emit (p, chunk);
      p += chunk;
      n -= chunk;
      payload_left_ -= chunk;
      if (payload_left_ == 0)
        end_frame ();
    }
  }

private:
  enum class Mode { Pass, Hold, Drop };

  gsize header_needed () const
  {
    if (header_len_ < 2)
      return 2;
    gsize need = 2;
    guint8 len7 = header_[1] & 0x7f;
    if (len7 == 126)
      need += 2;
    else if (len7 == 127)
      need += 8;
    if (header_[1] & 0x80)
      need += 4;
    return need;
  }

  std::uint64_t header_payload_len () const
  {
    guint8 len7 = header_[1] & 0x7f;
    if (len7 < 126)
      return len7;
    std::uint64_t v = 0;
    int bytes = len7 == 126 ? 2 : 8;
    for (int i = 0; i < bytes; i++)
      v = (v << 8) | header_[2 + i];
    return v;
  }

  void start_frame ()
  {
    bool fin = header_[0] & 0x80;
    guint8 opcode = header_[0] & 0x0f;
    std::uint64_t len = header_payload_len ();
    fin_ = fin;

    if (opcode >= 0x8) {
      mode_ = Mode::Pass;              /* control frames may interleave */
    } else if (opcode != 0x0) {
      /* First frame of a message. */
      if (len > max_) {
        mode_ = Mode::Drop;
        dropping_ = !fin;
        report (len);
      } else if (fin) {
        mode_ = Mode::Pass;
      } else {
        mode_ = Mode::Hold;
        holding_ = true;
        total_ = len;
      }
    } else if (dropping_) {
      mode_ = Mode::Drop;
      if (fin)
        dropping_ = false;
    } else if (holding_) {
      total_ += len;
      if (total_ > max_) {
        held_.clear ();
        holding_ = false;
        dropping_ = !fin;
        mode_ = Mode::Drop;
        report (total_);
      } else {
        mode_ = Mode::Hold;
      }
    } else {
      /* A continuation with nothing to continue: libsoup closes with a
       * protocol error, as it should. */
      mode_ = Mode::Pass;
    }

    emit (header_, header_len_);
    header_len_ = 0;
    payload_left_ = len;
    if (len == 0)
      end_frame ();
  }

  void end_frame ()
  {
    if (mode_ == Mode::Hold && fin_) {
      out_.append (held_);
      held_.clear ();
      holding_ = false;
    }
  }

  void emit (const guint8 * p, gsize n)
  {
    switch (mode_) {
      case Mode::Pass:
        out_.append (reinterpret_cast<const char *>(p), n);
        break;
      case Mode::Hold:
        held_.append (reinterpret_cast<const char *>(p), n);
        break;
      case Mode::Drop:
        break;
    }
  }

  void report (std::uint64_t size)
  {
    if (counters->on_oversize)
      counters->on_oversize (size);
  }

  std::uint64_t max_;
  guint8 header_[14] = { };
  gsize header_len_ = 0;
  std::uint64_t payload_left_ = 0;
  Mode mode_ = Mode::Pass;
  bool fin_ = false;
  bool holding_ = false;      /* a fragmented message is being held */
  bool dropping_ = false;     /* the rest of an oversized message goes */
  std::uint64_t total_ = 0;
  std::string held_;
  std::string out_;
  gsize out_pos_ = 0;
};

}  // namespace
}  // namespace peerjs

/* GObject side: a pollable input stream and a pollable output stream around
 * the base stream's, put together by a GSimpleIOStream. */

G_BEGIN_DECLS
#define PEERJS_TYPE_GUARD_INPUT_STREAM (peerjs_guard_input_stream_get_type ())
G_DECLARE_FINAL_TYPE (PeerjsGuardInputStream, peerjs_guard_input_stream,
    PEERJS, GUARD_INPUT_STREAM, GInputStream)
#define PEERJS_TYPE_GUARD_OUTPUT_STREAM (peerjs_guard_output_stream_get_type ())
G_DECLARE_FINAL_TYPE (PeerjsGuardOutputStream, peerjs_guard_output_stream,
    PEERJS, GUARD_OUTPUT_STREAM, GOutputStream)
G_END_DECLS

struct _PeerjsGuardInputStream
{
  GInputStream parent;
  GIOStream *io;
  GInputStream *base;
  peerjs::FrameFilter *filter;
};

struct _PeerjsGuardOutputStream
{
  GOutputStream parent;
  GIOStream *io;
  GOutputStream *base;
  std::shared_ptr<peerjs::GuardCounters> *counters;
};

static void peerjs_guard_input_pollable_init (GPollableInputStreamInterface * iface);
static void peerjs_guard_output_pollable_init (GPollableOutputStreamInterface * iface);

G_DEFINE_TYPE_WITH_CODE (PeerjsGuardInputStream, peerjs_guard_input_stream,
    G_TYPE_INPUT_STREAM,
    G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
        peerjs_guard_input_pollable_init));
G_DEFINE_TYPE_WITH_CODE (PeerjsGuardOutputStream, peerjs_guard_output_stream,
    G_TYPE_OUTPUT_STREAM,
    G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
        peerjs_guard_output_pollable_init));

static constexpr gsize READ_CHUNK = 16 * 1024;

/* Read from the base until the filter has something to give, or the base
 * has nothing more now. */
static gssize
guard_read (PeerjsGuardInputStream * self, void *buffer, gsize count,
    gboolean blocking, GCancellable * cancellable, GError ** error)
{
  guint8 chunk[READ_CHUNK];
  while (!self->filter->has_output ()) {
    gssize n = blocking
        ? g_input_stream_read (self->base, chunk, sizeof chunk, cancellable, error)
        : g_pollable_input_stream_read_nonblocking (
            G_POLLABLE_INPUT_STREAM (self->base), chunk, sizeof chunk,
            cancellable, error);
    if (n <= 0)
      return n;
    self->filter->feed (chunk, n);
  }
  return self->filter->take (buffer, count);
}

static gssize
peerjs_guard_input_read (GInputStream * stream, void *buffer, gsize count,
    GCancellable * cancellable, GError ** error)
{
  return guard_read (PEERJS_GUARD_INPUT_STREAM (stream), buffer, count, TRUE,
      cancellable, error);
}

static gboolean
peerjs_guard_input_close (GInputStream * stream, GCancellable * cancellable,
    GError ** error)
{
  /* The output side closes the whole base stream. */
  return TRUE;
}

static void
peerjs_guard_input_finalize (GObject * object)
{
  auto *self = PEERJS_GUARD_INPUT_STREAM (object);
  delete self->filter;
  g_clear_object (&self->io);
  G_OBJECT_CLASS (peerjs_guard_input_stream_parent_class)->finalize (object);
}

static void
peerjs_guard_input_stream_class_init (PeerjsGuardInputStreamClass * klass)
{
  G_OBJECT_CLASS (klass)->finalize = peerjs_guard_input_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = peerjs_guard_input_read;
  G_INPUT_STREAM_CLASS (klass)->close_fn = peerjs_guard_input_close;
}

static void
peerjs_guard_input_stream_init (PeerjsGuardInputStream * self)
{
}

static gboolean
peerjs_guard_input_can_poll (GPollableInputStream * stream)
{
  auto *self = PEERJS_GUARD_INPUT_STREAM (stream);
  return g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (self->base));
}

static gboolean
peerjs_guard_input_is_readable (GPollableInputStream * stream)
{
  auto *self = PEERJS_GUARD_INPUT_STREAM (stream);
  return self->filter->has_output ()
      || g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (self->base));
}

static GSource *
peerjs_guard_input_create_source (GPollableInputStream * stream,
    GCancellable * cancellable)
{
  auto *self = PEERJS_GUARD_INPUT_STREAM (stream);
  GSource *child = self->filter->has_output ()
      ? g_timeout_source_new (0)
      : g_pollable_input_stream_create_source (
          G_POLLABLE_INPUT_STREAM (self->base), nullptr);
  GSource *source = g_pollable_source_new_full (stream, child, cancellable);
  g_source_unref (child);
  return source;
}

static gssize
peerjs_guard_input_read_nonblocking (GPollableInputStream * stream,
    void *buffer, gsize count, GError ** error)
{
  return guard_read (PEERJS_GUARD_INPUT_STREAM (stream), buffer, count, FALSE,
      nullptr, error);
}

static void
peerjs_guard_input_pollable_init (GPollableInputStreamInterface * iface)
{
  iface->can_poll = peerjs_guard_input_can_poll;
  iface->is_readable = peerjs_guard_input_is_readable;
  iface->create_source = peerjs_guard_input_create_source;
  iface->read_nonblocking = peerjs_guard_input_read_nonblocking;
}

static gssize
peerjs_guard_output_write (GOutputStream * stream, const void *buffer,
    gsize count, GCancellable * cancellable, GError ** error)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  gssize n = g_output_stream_write (self->base, buffer, count, cancellable, error);
  if (n > 0)
    (*self->counters)->bytes_written += n;
  return n;
}

static gboolean
peerjs_guard_output_flush (GOutputStream * stream, GCancellable * cancellable,
    GError ** error)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  return g_output_stream_flush (self->base, cancellable, error);
}

static gboolean
peerjs_guard_output_close (GOutputStream * stream, GCancellable * cancellable,
    GError ** error)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  return g_io_stream_close (self->io, cancellable, error);
}

static void
peerjs_guard_output_finalize (GObject * object)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (object);
  delete self->counters;
  g_clear_object (&self->io);
  G_OBJECT_CLASS (peerjs_guard_output_stream_parent_class)->finalize (object);
}

static void
peerjs_guard_output_stream_class_init (PeerjsGuardOutputStreamClass * klass)
{
  G_OBJECT_CLASS (klass)->finalize = peerjs_guard_output_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = peerjs_guard_output_write;
  G_OUTPUT_STREAM_CLASS (klass)->flush = peerjs_guard_output_flush;
  G_OUTPUT_STREAM_CLASS (klass)->close_fn = peerjs_guard_output_close;
}

static void
peerjs_guard_output_stream_init (PeerjsGuardOutputStream * self)
{
}

static gboolean
peerjs_guard_output_can_poll (GPollableOutputStream * stream)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  return g_pollable_output_stream_can_poll (G_POLLABLE_OUTPUT_STREAM (self->base));
}

static gboolean
peerjs_guard_output_is_writable (GPollableOutputStream * stream)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  return g_pollable_output_stream_is_writable (G_POLLABLE_OUTPUT_STREAM (self->base));
}

static GSource *
peerjs_guard_output_create_source (GPollableOutputStream * stream,
    GCancellable * cancellable)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  GSource *child = g_pollable_output_stream_create_source (
      G_POLLABLE_OUTPUT_STREAM (self->base), nullptr);
  GSource *source = g_pollable_source_new_full (stream, child, cancellable);
  g_source_unref (child);
  return source;
}

static gssize
peerjs_guard_output_write_nonblocking (GPollableOutputStream * stream,
    const void *buffer, gsize count, GError ** error)
{
  auto *self = PEERJS_GUARD_OUTPUT_STREAM (stream);
  gssize n = g_pollable_output_stream_write_nonblocking (
      G_POLLABLE_OUTPUT_STREAM (self->base), buffer, count, nullptr, error);
  if (n > 0)
    (*self->counters)->bytes_written += n;
  return n;
}

static void
peerjs_guard_output_pollable_init (GPollableOutputStreamInterface * iface)
{
  iface->can_poll = peerjs_guard_output_can_poll;
  iface->is_writable = peerjs_guard_output_is_writable;
  iface->create_source = peerjs_guard_output_create_source;
  iface->write_nonblocking = peerjs_guard_output_write_nonblocking;
}

namespace peerjs {

GIOStream *
guard_websocket_stream (GIOStream * base, std::uint64_t max_message_size,
    std::shared_ptr<GuardCounters> counters)
{
  auto *in = static_cast<PeerjsGuardInputStream *>(
      g_object_new (PEERJS_TYPE_GUARD_INPUT_STREAM, nullptr));
  in->io = G_IO_STREAM (g_object_ref (base));
  in->base = g_io_stream_get_input_stream (base);
  in->filter = new FrameFilter (max_message_size);
  in->filter->counters = counters;

  auto *out = static_cast<PeerjsGuardOutputStream *>(
      g_object_new (PEERJS_TYPE_GUARD_OUTPUT_STREAM, nullptr));
  out->io = G_IO_STREAM (g_object_ref (base));
  out->base = g_io_stream_get_output_stream (base);
  out->counters = new std::shared_ptr<GuardCounters> (std::move (counters));

  GIOStream *io = g_simple_io_stream_new (G_INPUT_STREAM (in),
      G_OUTPUT_STREAM (out));
  g_object_unref (in);
  g_object_unref (out);
  return io;
}

std::uint64_t
websocket_frame_size (std::uint64_t payload)
{
  if (payload < 126)
    return payload + 2;
  if (payload <= 0xffff)
    return payload + 4;
  return payload + 10;
}

}  // namespace peerjs
