/* A guard between a WebSocket connection's socket and libsoup.
 *
 * libsoup 3.2 bounds a frame but not a message assembled from continuation
 * frames, and it answers an oversized frame by closing the connection. The
 * guard reads the client's frames itself: whole frames within the bound pass
 * straight through, fragments are held until the message is complete, and a
 * message over the bound is dropped whole and reported, so the server can
 * answer it with an error and keep the connection. It also counts bytes both
 * ways: when the client was last heard from, and how much of what the server
 * queued has reached the socket.
 */
#pragma once

#include <gio/gio.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace peerjs {

struct GuardCounters
{
  std::int64_t last_read_us = 0;      /* g_get_monotonic_time () */
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  /* Called from inside a read, with the size seen so far: schedule the
   * reply, do not send from here. */
  std::function<void (std::uint64_t size)> on_oversize;
};

/* Wraps `base` (the stream taken from the HTTP connection after the upgrade).
 * The result owns a reference to `base`; closing it closes `base`. */
GIOStream *guard_websocket_stream (GIOStream * base,
    std::uint64_t max_message_size, std::shared_ptr<GuardCounters> counters);

/* Bytes on the wire for one server frame (unmasked) of `payload` bytes. */
std::uint64_t websocket_frame_size (std::uint64_t payload);

}  // namespace peerjs
