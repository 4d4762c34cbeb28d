/**
 * SECTION:element-peerjssrc
 * @title: peerjssrc
 *
 * Receives every member of a peerjs thread (room): each member's video and
 * audio come out decoded on sometimes pads named `video_<member>` and
 * `audio_<member>`. A pad is added when that member's media connects and
 * removed when it goes (the member leaves, turns that kind off, or its
 * connection fails); the other pads keep flowing. The element is live.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 peerjssrc thread=lobby ! videoconvert ! autovideosink
 * ]| shows the first member's video that connects in the thread `lobby`.
 * |[
 * gst-launch-1.0 -e peerjssrc thread=lobby mix=true name=s \
 *     s.video ! queue ! videoconvert ! vp8enc deadline=1 ! queue ! mux. \
 *     s.audio ! queue ! audioconvert ! opusenc ! queue ! mux. \
 *     webmmux name=mux ! filesink location=room.webm
 * ]| records the whole room into one file: with `mix=true` the element has
 * one `video` pad (members in a grid) and one `audio` pad (members mixed)
 * for its whole life, whoever comes and goes.
 * |[
 * gst-launch-1.0 -m peerjssrc thread=lobby accept-files=all \
 *     download-dir=/tmp/inbox ! fakesink
 * ]| keeps every file offered in `lobby` in /tmp/inbox, each checked
 * against its SHA-256; each also comes out of a `file_<member>_<id>` pad.
 *
 * The bus messages are listed in docs/elements.md.
 */
#include "gstpeerjssrc.h"

struct _GstPeerJSSrc
{
  GstPeerJSBase parent;
};

G_DEFINE_TYPE (GstPeerJSSrc, gst_peerjs_src, GST_TYPE_PEERJS_BASE);
GST_ELEMENT_REGISTER_DEFINE (peerjssrc, "peerjssrc", GST_RANK_NONE,
    GST_TYPE_PEERJS_SRC);

static void
gst_peerjs_src_class_init (GstPeerJSSrcClass * klass)
{
  gst_peerjs_base_class_setup (GST_PEERJS_BASE_CLASS (klass), FALSE, TRUE);
  gst_element_class_set_static_metadata (GST_ELEMENT_CLASS (klass),
      "peerjs receiver", "Source/Network/WebRTC",
      "Receives the video and audio of every member of a peerjs thread "
      "(WebRTC chat room)", "gst-peerjs developers");
}

static void
gst_peerjs_src_init (GstPeerJSSrc * self)
{
}
