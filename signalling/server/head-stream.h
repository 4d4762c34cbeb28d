/* The request head of a TLS connection, bounded as the Poller's peek bounds
 * that of a plain one: the decrypted bytes cannot be peeked at, so they
 * are watched as libsoup reads them. */
#pragma once

#include <gio/gio.h>

#include <cstddef>

namespace peerjs {

/* An input stream over `base` (pollable) that passes everything through
 * until the head ends ("\r\n\r\n" or "\n\n") within `limit` + 1 bytes, and
 * then is transparent. If `limit` bytes pass without the end, `over` is
 * called once, with `data`, and from then on what arrives is read and
 * dropped: the reader sees nothing more until the end of the stream. */
GInputStream *head_stream_new (GInputStream * base, std::size_t limit,
    void (*over) (gpointer data), gpointer data);

/* `over` is not called any more. */
void head_stream_disarm (GInputStream * stream);

}  // namespace peerjs
