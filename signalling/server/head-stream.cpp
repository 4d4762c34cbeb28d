#include "head-stream.h"

namespace peerjs {

namespace {

struct PeerjsHeadStream
{
  GFilterInputStream parent;
  std::size_t limit;
  std::size_t seen;
  guint32 tail;               /* the last four bytes */
  bool done;                  /* the head ended: transparent */
  bool over;                  /* past the limit: dropping */
  void (*on_over) (gpointer);
  gpointer data;
};

struct PeerjsHeadStreamClass
{
  GFilterInputStreamClass parent_class;
};

void peerjs_head_stream_pollable_init (GPollableInputStreamInterface * iface);

G_DEFINE_TYPE_WITH_CODE (PeerjsHeadStream, peerjs_head_stream,
    G_TYPE_FILTER_INPUT_STREAM, G_IMPLEMENT_INTERFACE (
        G_TYPE_POLLABLE_INPUT_STREAM, peerjs_head_stream_pollable_init))

PeerjsHeadStream *
self_of (gpointer stream)
{
  return G_TYPE_CHECK_INSTANCE_CAST (stream, peerjs_head_stream_get_type (),
      PeerjsHeadStream);
}

GInputStream *
base_of (gpointer stream)
{
  return G_FILTER_INPUT_STREAM (stream)->base_stream;
}

/* Watch `n` bytes just read; true if they are to be dropped. */
bool
watch (PeerjsHeadStream * self, const void *buffer, gssize n)
{
  if (self->done)
    return false;
  if (self->over)
    return true;
  const guint8 *p = static_cast<const guint8 *>(buffer);
  for (gssize i = 0; i < n; i++) {
    self->tail = (self->tail << 8) | p[i];
    self->seen++;
    if ((self->tail & 0xffff) == 0x0a0a || self->tail == 0x0d0a0d0a) {
      self->done = true;
      return false;
    }
    if (self->seen > self->limit) {
      self->over = true;
      if (self->on_over)
        self->on_over (self->data);
      return true;
    }
  }
  return false;
}

gssize
read_fn (GInputStream * stream, void *buffer, gsize count,
    GCancellable * cancellable, GError ** error)
{
  for (;;) {
    gssize n = g_input_stream_read (base_of (stream), buffer, count,
        cancellable, error);
    if (n <= 0 || !watch (self_of (stream), buffer, n))
      return n;
  }
}

gboolean
can_poll (GPollableInputStream * stream)
{
  GInputStream *base = base_of (stream);
  return G_IS_POLLABLE_INPUT_STREAM (base)
      && g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (base));
}

gboolean
is_readable (GPollableInputStream * stream)
{
  return g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (
          base_of (stream)));
}

GSource *
create_source (GPollableInputStream * stream, GCancellable * cancellable)
{
  GSource *base = g_pollable_input_stream_create_source (
      G_POLLABLE_INPUT_STREAM (base_of (stream)), nullptr);
  GSource *source = g_pollable_source_new_full (stream, base, cancellable);
  g_source_unref (base);
  return source;
}

gssize
read_nonblocking (GPollableInputStream * stream, void *buffer, gsize count,
    GError ** error)
{
  for (;;) {
    gssize n = g_pollable_input_stream_read_nonblocking (
        G_POLLABLE_INPUT_STREAM (base_of (stream)), buffer, count, nullptr,
        error);
    if (n <= 0 || !watch (self_of (stream), buffer, n))
      return n;
  }
}

void
peerjs_head_stream_pollable_init (GPollableInputStreamInterface * iface)
{
  iface->can_poll = can_poll;
  iface->is_readable = is_readable;
  iface->create_source = create_source;
  iface->read_nonblocking = read_nonblocking;
}

void
peerjs_head_stream_class_init (PeerjsHeadStreamClass * klass)
{
  G_INPUT_STREAM_CLASS (klass)->read_fn = read_fn;
}

void
peerjs_head_stream_init (PeerjsHeadStream *)
{
}

}  // namespace

GInputStream *
head_stream_new (GInputStream * base, std::size_t limit,
    void (*over) (gpointer data), gpointer data)
{
  auto *self = self_of (g_object_new (peerjs_head_stream_get_type (),
          "base-stream", base, nullptr));
  self->limit = limit;
  self->on_over = over;
  self->data = data;
  return G_INPUT_STREAM (self);
}

void
head_stream_disarm (GInputStream * stream)
{
  self_of (stream)->on_over = nullptr;
}

}  // namespace peerjs
