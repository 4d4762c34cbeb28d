/**
 * SECTION:element-peerjsbin
 * @title: peerjsbin
 *
 * One member of a peerjs thread (room) that both publishes and receives,
 * as one session with one id: the request pads `video` and `audio` of
 * peerjssink and the sometimes pads `video_<member>` and `audio_<member>`
 * of peerjssrc, over one connection per remote member.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 peerjsbin thread=lobby name=b \
 *     videotestsrc is-live=true ! video/x-raw,width=320,height=240 ! b.video \
 *     b. ! videoconvert ! autovideosink
 * ]| publishes a test pattern and shows the first member's video.
 *
 * The bus messages are listed in docs/elements.md.
 */
#include "gstpeerjsbin.h"

struct _GstPeerJSBin
{
  GstPeerJSBase parent;
};

G_DEFINE_TYPE (GstPeerJSBin, gst_peerjs_bin, GST_TYPE_PEERJS_BASE);
GST_ELEMENT_REGISTER_DEFINE (peerjsbin, "peerjsbin", GST_RANK_NONE,
    GST_TYPE_PEERJS_BIN);

static void
gst_peerjs_bin_class_init (GstPeerJSBinClass * klass)
{
  gst_peerjs_base_class_setup (GST_PEERJS_BASE_CLASS (klass), TRUE, TRUE);
  gst_element_class_set_static_metadata (GST_ELEMENT_CLASS (klass),
      "peerjs member", "Source/Sink/Network/WebRTC",
      "Publishes into and receives from a peerjs thread (WebRTC chat room) "
      "as one member", "gst-peerjs developers");
}

static void
gst_peerjs_bin_init (GstPeerJSBin * self)
{
}
