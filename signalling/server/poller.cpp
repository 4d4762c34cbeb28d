#include "poller.h"

#include <glib-unix.h>

#include <cerrno>
#include <unistd.h>

namespace peerjs {

namespace {

constexpr int BATCH = 256;

}  // namespace

Poller::Poller (GMainContext * context)
{
  epfd_ = epoll_create1 (EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    g_warning ("epoll_create1: %s", g_strerror (errno));
    return;
  }
  source_ = g_unix_fd_source_new (epfd_, G_IO_IN);
  g_source_set_callback (source_, G_SOURCE_FUNC (ready_cb), this, nullptr);
  g_source_attach (source_, context);
}

Poller::~Poller ()
{
  if (source_) {
    g_source_destroy (source_);
    g_source_unref (source_);
  }
  if (epfd_ >= 0)
    ::close (epfd_);
}

bool
Poller::control (int op, int fd, std::uint32_t events, Handler * h)
{
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.ptr = h;
  return epoll_ctl (epfd_, op, fd, &ev) == 0;
}

bool
Poller::add (int fd, std::uint32_t events, Handler * h)
{
  return control (EPOLL_CTL_ADD, fd, events, h);
}

bool
Poller::modify (int fd, std::uint32_t events, Handler * h)
{
  return control (EPOLL_CTL_MOD, fd, events, h);
}

void
Poller::remove (int fd, Handler * h)
{
  epoll_ctl (epfd_, EPOLL_CTL_DEL, fd, nullptr);
  for (int i = batch_pos_; i < batch_len_; i++)
    if (batch_[i].data.ptr == h)
      batch_[i].data.ptr = nullptr;
}

gboolean
Poller::ready_cb (gint, GIOCondition, gpointer self)
{
  static_cast<Poller *>(self)->dispatch ();
  return G_SOURCE_CONTINUE;
}

void
Poller::dispatch ()
{
  struct epoll_event events[BATCH];
  int n = epoll_wait (epfd_, events, BATCH, 0);
  if (n <= 0)
    return;
  /* Nested dispatch cannot happen: handlers do not iterate the context. */
  batch_ = events;
  batch_len_ = n;
  for (batch_pos_ = 0; batch_pos_ < n; ) {
    struct epoll_event &e = events[batch_pos_++];
    if (auto *h = static_cast<Handler *>(e.data.ptr))
      h->on_ready (e.events);
  }
  batch_ = nullptr;
  batch_len_ = batch_pos_ = 0;
}

}  // namespace peerjs
