#include "encoders.h"

#include <algorithm>

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

/* Where an encoder keeps its bitrate, and in what unit. */
struct BitrateProperty
{
  const char *factory;
  const char *property;
  guint unit;                  /* bit/s per unit of the property */
};

const BitrateProperty BITRATES[] = {
  { "vp8enc", "target-bitrate", 1 },
  { "vp9enc", "target-bitrate", 1 },
  { "x264enc", "bitrate", 1000 },
  { "openh264enc", "bitrate", 1 },
  { "av1enc", "target-bitrate", 1000 },
  { "vah264enc", "bitrate", 1000 },
  { "vavp9enc", "bitrate", 1000 },
  { "vaav1enc", "bitrate", 1000 },
  { "nvh264enc", "bitrate", 1000 },
  { "opusenc", "bitrate", 1 },
};

const BitrateProperty *
bitrate_property (GstElement * encoder)
{
  const char *name = factory_name (encoder);
  for (const BitrateProperty & b : BITRATES)
    if (g_str_equal (b.factory, name))
      return &b;
  return nullptr;
}

/* Set `property` from its string form where the element has it: settings
 * for elements we cannot run here must not fail on a version without one. */
void
set_if_present (GstElement * element, const char *property, const char *value)
{
  if (!g_object_class_find_property (G_OBJECT_GET_CLASS (element), property)) {
    GST_INFO ("%s has no property %s", factory_name (element), property);
    return;
  }
  gst_util_set_object_arg (G_OBJECT (element), property, value);
}

GstElement *
profile_filter (const char *caps)
{
  GstElement *filter = gst_element_factory_make ("capsfilter", nullptr);
  if (!filter)
    return nullptr;
  g_autoptr (GstCaps) profile = gst_caps_from_string (caps);
  g_object_set (filter, "caps", profile, NULL);
  return filter;
}

/* Realtime settings shared by libvpx's VP8 and VP9 encoders. */
void
set_libvpx_realtime (GstElement * encoder)
{
  /* Realtime: no lag frames, the fastest deadline, resilient to loss. */
  g_object_set (encoder, "deadline", (gint64) 1, "lag-in-frames", 0,
      "cpu-used", 8, "keyframe-max-dist", 60, NULL);
  gst_util_set_object_arg (G_OBJECT (encoder), "end-usage", "cbr");
  gst_util_set_object_arg (G_OBJECT (encoder), "error-resilient", "default");
  /* Chromium's rate-control buffer (libvpx's own is 6 s): with it the
   * encoder follows a new target-bitrate within a second or two, up as
   * well as down (congestion control); with 6 s it stays far below a
   * target raised after a low one. Key frames at most 3 average frames,
   * so that one passes a slow link's queue. */
  g_object_set (encoder, "buffer-size", 1000, "buffer-initial-size", 500,
      "buffer-optimal-size", 600, "undershoot", 100, "overshoot", 15,
      "max-intra-bitrate", 300, NULL);
  /* A frame is dropped rather than the bitrate overshot when the buffer
   * runs below 30 % (Chromium's threshold): without it, a 640x480 moving
   * picture told 300 kbit/s took 700 kbit/s whatever the target (the
   * quantizer at its worst), into the link the target was made for. */
  g_object_set (encoder, "dropframe-threshold", 30, NULL);
}

/* The encoder's sink pad answers caps queries with 8-bit 4:2:0 (I420)
 * alone, so that the converter ahead gives it that: vp9enc takes 4:4:4 at
 * 12 bits first (VP9 profile 3, which Chromium shows in false colours),
 * av1enc 4:4:4 too, where WebRTC's profiles are 4:2:0. The encoder stays
 * the first element of its chain. */
GstPadProbeReturn
only_i420 (GstPad *, GstPadProbeInfo * info, gpointer)
{
  GstQuery *query = GST_PAD_PROBE_INFO_QUERY (info);
  if (GST_QUERY_TYPE (query) != GST_QUERY_CAPS)
    return GST_PAD_PROBE_OK;
  GstCaps *caps = nullptr;
  gst_query_parse_caps_result (query, &caps);
  if (!caps)
    return GST_PAD_PROBE_OK;
  g_autoptr (GstCaps) i420 = gst_caps_from_string (
      "video/x-raw,format=I420");
  g_autoptr (GstCaps) only = gst_caps_intersect (caps, i420);
  gst_query_set_caps_result (query, only);
  return GST_PAD_PROBE_OK;
}

guint
rank_of (const char *factory)
{
  g_autoptr (GstElementFactory) f = gst_element_factory_find (factory);
  return f ? gst_plugin_feature_get_rank (GST_PLUGIN_FEATURE (f)) : 0;
}

bool
is_hardware (const char *factory)
{
  for (const CodecElement & e : known_elements (true))
    if (g_str_equal (e.factory, factory))
      return e.hardware;
  return false;
}

std::string
find_element (const Codec & codec, bool encoder)
{
  Installed installed;
  for (const CodecElement & e : known_elements (encoder)) {
    g_autoptr (GstElementFactory) f = gst_element_factory_find (e.factory);
    if (f && g_str_equal (e.codec, codec.name))
      installed.emplace_back (e.factory, rank_of (e.factory));
  }
  return choose_element (codec.name, encoder, installed);
}

std::string
hint (const Codec & codec, bool encoder)
{
  std::string names, package;
  for (const CodecElement & e : known_elements (encoder)) {
    if (e.hardware || !g_str_equal (e.codec, codec.name))
      continue;
    names += std::string (names.empty () ? "" : ", ") + e.factory;
    if (package.empty () && *e.package)
      package = e.package;
  }
  if (package.empty ())
    return names + " (not packaged in Debian 12)";
  return names + " (Debian package " + package + ")";
}

}  // namespace

const std::vector<CodecElement> &
known_elements (bool encoders)
{
  static const std::vector<CodecElement> ENCODERS = {
    { "VP8", "vp8enc", "gstreamer1.0-plugins-good", false },
    { "VP8", "v4l2vp8enc", "gstreamer1.0-plugins-good", true },
    { "VP9", "vp9enc", "gstreamer1.0-plugins-good", false },
    { "VP9", "vavp9enc", "gstreamer1.0-plugins-bad", true },
    { "VP9", "v4l2vp9enc", "gstreamer1.0-plugins-good", true },
    { "H264", "x264enc", "gstreamer1.0-plugins-ugly", false },
    { "H264", "openh264enc", "gstreamer1.0-plugins-bad", false },
    { "H264", "vah264enc", "gstreamer1.0-plugins-bad", true },
    { "H264", "nvh264enc", "gstreamer1.0-plugins-bad", true },
    { "H264", "v4l2h264enc", "gstreamer1.0-plugins-good", true },
    { "AV1", "av1enc", "gstreamer1.0-plugins-bad", false },
    { "AV1", "rav1enc", "", false },
    { "AV1", "svtav1enc", "", false },
    { "AV1", "vaav1enc", "gstreamer1.0-plugins-bad", true },
    { "OPUS", "opusenc", "gstreamer1.0-plugins-base", false },
  };
  static const std::vector<CodecElement> DECODERS = {
    { "VP8", "vp8dec", "gstreamer1.0-plugins-good", false },
    { "VP9", "vp9dec", "gstreamer1.0-plugins-good", false },
    { "H264", "avdec_h264", "gstreamer1.0-libav", false },
    { "H264", "openh264dec", "gstreamer1.0-plugins-bad", false },
    { "AV1", "av1dec", "gstreamer1.0-plugins-bad", false },
    { "AV1", "dav1ddec", "", false },
    { "OPUS", "opusdec", "gstreamer1.0-plugins-base", false },
  };
  return encoders ? ENCODERS : DECODERS;
}

std::string
choose_element (const std::string & codec, bool encoder,
    const Installed & installed)
{
  const std::vector<CodecElement> & known = known_elements (encoder);
  const CodecElement *best = nullptr;
  guint best_rank = 0;
  for (const CodecElement & e : known) {
    if (codec != e.codec)
      continue;
    auto it = std::find_if (installed.begin (), installed.end (),
        [&] (const std::pair<std::string, guint> & i) {
          return i.first == e.factory;
        });
    if (it == installed.end ())
      continue;
    /* Strictly higher rank wins; at equal rank, hardware over software;
     * else the earlier in our list stays. */
    if (!best || it->second > best_rank || (it->second == best_rank
            && e.hardware && !best->hardware)) {
      best = &e;
      best_rank = it->second;
    }
  }
  return best ? best->factory : "";
}

std::string
find_encoder (const Codec & codec)
{
  return find_element (codec, true);
}

std::string
find_decoder (const Codec & codec)
{
  return find_element (codec, false);
}

std::string
missing_encoder_hint (const Codec & codec)
{
  return hint (codec, true);
}

std::string
missing_decoder_hint (const Codec & codec)
{
  return hint (codec, false);
}

std::string
decoder_package (const Codec & codec)
{
  for (const CodecElement & e : known_elements (false))
    if (!e.hardware && g_str_equal (e.codec, codec.name) && *e.package)
      return e.package;
  return {};
}

std::vector<GstElement *>
make_encoder (const Codec & codec, guint bps)
{
  std::string name = find_encoder (codec);
  GstElement *encoder = name.empty () ? nullptr
      : gst_element_factory_make (name.c_str (), nullptr);
  if (!encoder) {
    GST_ERROR ("no %s encoder: %s", codec.name,
        missing_encoder_hint (codec).c_str ());
    return {};
  }
  GST_INFO ("%s encoded by %s", codec.name, name.c_str ());
  std::vector<GstElement *> chain { encoder };
  const char *n = name.c_str ();
  if (g_str_equal (n, "vp8enc")) {
    set_libvpx_realtime (encoder);
  } else if (g_str_equal (n, "vp9enc")) {
    set_libvpx_realtime (encoder);
    /* Rows in parallel, as Chromium encodes VP9 for WebRTC. */
    g_object_set (encoder, "row-mt", TRUE, NULL);
  } else if (g_str_equal (n, "x264enc")) {
    gst_util_set_object_arg (G_OBJECT (encoder), "tune", "zerolatency");
    gst_util_set_object_arg (G_OBJECT (encoder), "speed-preset",
        "ultrafast");
    g_object_set (encoder, "key-int-max", 60, NULL);
  } else if (g_str_equal (n, "openh264enc")) {
    /* The bitrate is held (not a quality), at the lowest complexity. */
    gst_util_set_object_arg (G_OBJECT (encoder), "rate-control", "bitrate");
    gst_util_set_object_arg (G_OBJECT (encoder), "complexity", "low");
    gst_util_set_object_arg (G_OBJECT (encoder), "usage-type", "camera");
    g_object_set (encoder, "gop-size", 60, NULL);
  } else if (g_str_equal (n, "av1enc")) {
    gst_util_set_object_arg (G_OBJECT (encoder), "usage-profile", "realtime");
    gst_util_set_object_arg (G_OBJECT (encoder), "end-usage", "cbr");
    g_object_set (encoder, "cpu-used", 10, "lag-in-frames", 0,
        "keyframe-max-dist", 60, "row-mt", TRUE, NULL);
  } else if (g_str_has_prefix (n, "va")) {
    /* VA-API (not run by our tests: no such device where they run). */
    set_if_present (encoder, "rate-control", "cbr");
    set_if_present (encoder, "key-int-max", "60");
    set_if_present (encoder, "b-frames", "0");
    set_if_present (encoder, "target-usage", "7");
  } else if (g_str_has_prefix (n, "nv")) {
    /* NVENC (not run by our tests either). */
    set_if_present (encoder, "preset", "low-latency-hq");
    set_if_present (encoder, "rc-mode", "cbr");
    set_if_present (encoder, "gop-size", "60");
    set_if_present (encoder, "bframes", "0");
    set_if_present (encoder, "zerolatency", "true");
  }
  if (codec.kind == Kind::Video && !is_hardware (n)) {
    g_autoptr (GstPad) sink = gst_element_get_static_pad (encoder, "sink");
    gst_pad_add_probe (sink, (GstPadProbeType)
        (GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM | GST_PAD_PROBE_TYPE_PULL),
        only_i420, nullptr, nullptr);
  }
  /* What every browser decodes: H.264's constrained baseline profile. */
  if (g_str_equal (codec.name, "H264"))
    chain.push_back (profile_filter (
            "video/x-h264,profile=constrained-baseline"));
  if (codec.kind == Kind::Video)
    set_encoder_bitrate (encoder, bps);
  return chain;
}

GstElement *
make_parser (const Codec & codec)
{
  GstElement *parser = codec.parser
      ? gst_element_factory_make (codec.parser, nullptr) : nullptr;
  if (!parser) {
    GST_ERROR ("no element '%s'", codec.parser ? codec.parser : "(none)");
    return nullptr;
  }
  if (g_str_equal (codec.parser, "h264parse"))
    g_object_set (parser, "config-interval", -1, NULL);
  return parser;
}

guint
encoder_bitrate (GstElement * encoder)
{
  const BitrateProperty *b = bitrate_property (encoder);
  if (!b)
    return 0;
  GParamSpec *spec = g_object_class_find_property (G_OBJECT_GET_CLASS
      (encoder), b->property);
  if (!spec)
    return 0;
  GValue v = G_VALUE_INIT;
  g_value_init (&v, spec->value_type);
  g_object_get_property (G_OBJECT (encoder), b->property, &v);
  guint64 value = 0;
  if (G_VALUE_HOLDS_INT (&v))
    value = (guint64) MAX (g_value_get_int (&v), 0);
  else if (G_VALUE_HOLDS_UINT (&v))
    value = g_value_get_uint (&v);
  g_value_unset (&v);
  return (guint) MIN (value * b->unit, (guint64) G_MAXUINT);
}

void
set_encoder_bitrate (GstElement * encoder, guint bps)
{
  const BitrateProperty *b = bitrate_property (encoder);
  GParamSpec *spec = b ? g_object_class_find_property (G_OBJECT_GET_CLASS
      (encoder), b->property) : nullptr;
  if (!spec)
    return;
  guint value = MAX (bps / b->unit, 1u);
  GValue v = G_VALUE_INIT;
  g_value_init (&v, spec->value_type);
  if (G_VALUE_HOLDS_INT (&v))
    g_value_set_int (&v, (gint) MIN (value, (guint) G_MAXINT));
  else if (G_VALUE_HOLDS_UINT (&v))
    g_value_set_uint (&v, value);
  else {
    g_value_unset (&v);
    return;
  }
  /* Within the element's own range. */
  g_param_value_validate (spec, &v);
  g_object_set_property (G_OBJECT (encoder), b->property, &v);
  g_value_unset (&v);
}

}  // namespace peerjs
