/* One epoll descriptor as the GMainContext's only source for the server's
 * sockets: GLib polls one descriptor whatever the number of connections,
 * and a wake-up visits only the sockets that are ready. An idle connection
 * costs nothing on the hot path.
 *
 * Level-triggered unless a registration asks for EPOLLET. Handlers run on
 * the context's thread; a handler may remove any registration, its own
 * included, from inside a dispatch.
 */
#pragma once

#include <glib.h>

#include <cstdint>
#include <sys/epoll.h>

namespace peerjs {

class Poller
{
public:
  class Handler
  {
  public:
    /* `events`: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, ... */
    virtual void on_ready (std::uint32_t events) = 0;
    virtual ~Handler () = default;
  };

  /* Attaches to `context`. */
  explicit Poller (GMainContext * context);
  ~Poller ();
  Poller (const Poller &) = delete;
  Poller & operator= (const Poller &) = delete;

  bool ok () const { return epfd_ >= 0; }

  bool add (int fd, std::uint32_t events, Handler * h);
  bool modify (int fd, std::uint32_t events, Handler * h);
  /* Before the descriptor is closed or `h` deleted. */
  void remove (int fd, Handler * h);

private:
  bool control (int op, int fd, std::uint32_t events, Handler * h);
  static gboolean ready_cb (gint fd, GIOCondition cond, gpointer self);
  void dispatch ();

  int epfd_ = -1;
  GSource *source_ = nullptr;
  /* The batch being dispatched, so a removal can cancel what is left of
   * it for that handler. */
  struct epoll_event *batch_ = nullptr;
  int batch_len_ = 0;
  int batch_pos_ = 0;
};

}  // namespace peerjs
