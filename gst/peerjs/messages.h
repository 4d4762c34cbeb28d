/* The names of the elements' bus messages, one per event. Their fields are
 * documented in docs/elements.md and in each element's gst-inspect text. */
#pragma once

namespace peerjs::message {

constexpr const char *SOCKET_CONNECT = "peerjs-socket-connect";
constexpr const char *SOCKET_DISCONNECT = "peerjs-socket-disconnect";
constexpr const char *SOCKET_RESUMED = "peerjs-socket-resumed";
constexpr const char *THREAD_CONNECT = "peerjs-thread-connect";
constexpr const char *THREAD_CHANGE = "peerjs-thread-change";
constexpr const char *THREAD_DISCONNECT = "peerjs-thread-disconnect";
constexpr const char *MEDIA_CONNECT = "peerjs-media-connect";
constexpr const char *MEDIA_DISCONNECT = "peerjs-media-disconnect";
constexpr const char *PEER_FAILED = "peerjs-peer-failed";
constexpr const char *SERVER_ERROR = "peerjs-server-error";
constexpr const char *MESSAGE = "peerjs-message";
constexpr const char *STATS = "peerjs-stats";
constexpr const char *EVENT = "peerjs-event";
constexpr const char *EVENT_REPLY = "peerjs-event-reply";
constexpr const char *WATCH = "peerjs-watch";
constexpr const char *FILE_OFFER = "peerjs-file-offer";
constexpr const char *FILE_OFFERED = "peerjs-file-offered";
constexpr const char *FILE_PROGRESS = "peerjs-file-progress";
constexpr const char *FILE_COMPLETE = "peerjs-file-complete";
constexpr const char *FILE_ERROR = "peerjs-file-error";

}  // namespace peerjs::message
