#include "encoders.h"

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

const char *
factory_name (GstElement * element)
{
  GstElementFactory *f = element ? gst_element_get_factory (element) : nullptr;
  return f ? GST_OBJECT_NAME (f) : "";
}

}  // namespace

std::vector<GstElement *>
make_encoder (const Codec & codec, guint bps)
{
  GstElement *encoder = gst_element_factory_make (codec.encoder, nullptr);
  if (!encoder) {
    GST_ERROR ("no element '%s'", codec.encoder);
    return {};
  }
  std::vector<GstElement *> chain { encoder };
  if (g_str_equal (codec.encoder, "vp8enc")) {
    /* Realtime: no lag frames, the fastest deadline, resilient to loss. */
    g_object_set (encoder, "deadline", (gint64) 1, "lag-in-frames", 0,
        "cpu-used", 8, "keyframe-max-dist", 60, NULL);
    gst_util_set_object_arg (G_OBJECT (encoder), "end-usage", "cbr");
    gst_util_set_object_arg (G_OBJECT (encoder), "error-resilient",
        "default");
    /* Chromium's rate-control buffer (libvpx's own is 6 s): with it the
     * encoder follows a new target-bitrate within a second or two, up
     * as well as down (congestion control); with 6 s it stays far
     * below a target raised after a low one. Key frames at most 3
     * average frames, so that one passes a slow link's queue. */
    g_object_set (encoder, "buffer-size", 1000, "buffer-initial-size", 500,
        "buffer-optimal-size", 600, "undershoot", 100, "overshoot", 15,
        "max-intra-bitrate", 300, NULL);
  } else if (g_str_equal (codec.encoder, "x264enc")) {
    gst_util_set_object_arg (G_OBJECT (encoder), "tune", "zerolatency");
    gst_util_set_object_arg (G_OBJECT (encoder), "speed-preset",
        "ultrafast");
    g_object_set (encoder, "key-int-max", 60, NULL);
    GstElement *filter = gst_element_factory_make ("capsfilter", nullptr);
    g_autoptr (GstCaps) profile = gst_caps_from_string (
        "video/x-h264,profile=constrained-baseline");
    g_object_set (filter, "caps", profile, NULL);
    chain.push_back (filter);
  }
  if (codec.kind == Kind::Video)
    set_encoder_bitrate (encoder, bps);
  return chain;
}

guint
encoder_bitrate (GstElement * encoder)
{
  const char *name = factory_name (encoder);
  if (g_str_equal (name, "vp8enc") || g_str_equal (name, "opusenc")) {
    gint value = 0;
    g_object_get (encoder, g_str_equal (name, "vp8enc") ? "target-bitrate"
        : "bitrate", &value, NULL);
    return (guint) MAX (value, 0);
  }
  if (g_str_equal (name, "x264enc")) {
    guint kbps = 0;
    g_object_get (encoder, "bitrate", &kbps, NULL);
    return kbps * 1000;
  }
  return 0;
}

void
set_encoder_bitrate (GstElement * encoder, guint bps)
{
  const char *name = factory_name (encoder);
  if (g_str_equal (name, "vp8enc"))
    g_object_set (encoder, "target-bitrate", (gint) bps, NULL);
  else if (g_str_equal (name, "x264enc"))
    g_object_set (encoder, "bitrate", MAX (bps / 1000, 1u), NULL);
}

}  // namespace peerjs
