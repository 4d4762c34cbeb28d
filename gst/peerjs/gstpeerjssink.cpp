/**
 * SECTION:element-peerjssink
 * @title: peerjssink
 *
 * Publishes a pipeline's video and audio into a peerjs thread (room), as
 * one member next to browsers and other pipelines. Raw input is encoded
 * once (VP8 and Opus by default) and sent to every member that allows it;
 * VP8, H.264 and Opus input is sent as it is. A key-frame request from any
 * member, or a member joining, asks upstream for a key unit.
 *
 * Request pads: `video` and `audio`, one of each, and `file_%u`: the bytes
 * that come in are offered to the threads as a file at EOS.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=320,height=240 ! \
 *     peerjssink thread=lobby name=s \
 *     audiotestsrc is-live=true ! s.audio
 * ]| publishes a test pattern and a tone into the thread `lobby` on the
 * server at ws://127.0.0.1:5000/peerjs. Open the demo room at
 * http://127.0.0.1:5000/#lobby to see and hear it.
 * |[
 * gst-launch-1.0 filesrc location=report.pdf ! peerjssink thread=lobby
 * ]| offers report.pdf to everyone in `lobby`; members fetch it while the
 * pipeline runs.
 *
 * Action signals send chat (`send-message`), events with replies
 * (`send-event`), presence (`tag`, `watch`) and files (`offer-file`); they
 * and the properties for receiving files are described in
 * docs/elements.md.
 *
 * The bus messages are listed in docs/elements.md.
 */
#include "gstpeerjssink.h"

struct _GstPeerJSSink
{
  GstPeerJSBase parent;
};

G_DEFINE_TYPE (GstPeerJSSink, gst_peerjs_sink, GST_TYPE_PEERJS_BASE);
GST_ELEMENT_REGISTER_DEFINE (peerjssink, "peerjssink", GST_RANK_NONE,
    GST_TYPE_PEERJS_SINK);

static void
gst_peerjs_sink_class_init (GstPeerJSSinkClass * klass)
{
  gst_peerjs_base_class_setup (GST_PEERJS_BASE_CLASS (klass), TRUE, FALSE);
  gst_element_class_set_static_metadata (GST_ELEMENT_CLASS (klass),
      "peerjs publisher", "Sink/Network/WebRTC",
      "Publishes video and audio into a peerjs thread (WebRTC chat room)",
      "gst-peerjs developers");
}

static void
gst_peerjs_sink_init (GstPeerJSSink * self)
{
}
