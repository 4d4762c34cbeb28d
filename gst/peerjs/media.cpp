#include "media.h"

#include "encoders.h"
#include "estimator.h"
#include "layers.h"

#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <sstream>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

/* The payload types are Chromium's for these codecs, so offers from either
 * side look alike; an answerer always takes the offerer's. */
const Codec CODECS[] = {
  { "VP8", Kind::Video, "video/x-vp8", 90000, 96,
    "vp8enc", nullptr, "rtpvp8pay", "rtpvp8depay", "vp8dec" },
  { "VP9", Kind::Video, "video/x-vp9", 90000, 98,
    "vp9enc", nullptr, "rtpvp9pay", "rtpvp9depay", "vp9dec" },
  { "H264", Kind::Video, "video/x-h264", 90000, 102,
    "x264enc", "h264parse", "rtph264pay", "rtph264depay", "avdec_h264" },
  { "AV1", Kind::Video, "video/x-av1", 90000, 45,
    "av1enc", "av1parse", "rtpav1pay", "rtpav1depay", "av1dec" },
  { "OPUS", Kind::Audio, "audio/x-opus", 48000, 111,
    "opusenc", nullptr, "rtpopuspay", "rtpopusdepay", "opusdec" },
};

/* Queue ahead of each member's payloader: a member whose connection is
 * slow or still negotiating drops its oldest data instead of holding up
 * the others. */
constexpr guint64 MEMBER_QUEUE_NS = 500 * GST_MSECOND;

GstElement *
make (const char *factory, const char *name = nullptr)
{
  GstElement *e = gst_element_factory_make (factory, name);
  if (!e)
    GST_ERROR ("no element '%s'", factory);
  return e;
}

/* Add `chain` to `bin` and link it in order; false if an element is null
 * or a link fails. The elements are owned by `bin` afterwards (or unreffed
 * when they could not be added). */
bool
add_chain (GstBin * bin, const std::vector<GstElement *> & chain)
{
  bool ok = true;
  for (GstElement *e : chain)
    ok = ok && e != nullptr;
  if (!ok) {
    for (GstElement *e : chain)
      if (e)
        gst_object_unref (gst_object_ref_sink (e));
    return false;
  }
  for (GstElement *e : chain)
    gst_bin_add (bin, e);
  for (size_t i = 1; i < chain.size (); i++)
    if (!gst_element_link (chain[i - 1], chain[i]))
      return false;
  return true;
}

GstElement *
bin_with_ghosts (const std::string & name, GstElement * first,
    GstElement * last, const std::vector<GstElement *> & chain)
{
  GstElement *bin = gst_bin_new (name.c_str ());
  if (!add_chain (GST_BIN (bin), chain)) {
    gst_object_unref (gst_object_ref_sink (bin));
    return nullptr;
  }
  g_autoptr (GstPad) sink = gst_element_get_static_pad (first, "sink");
  g_autoptr (GstPad) src = gst_element_get_static_pad (last, "src");
  gst_element_add_pad (bin, gst_ghost_pad_new ("sink", sink));
  gst_element_add_pad (bin, gst_ghost_pad_new ("src", src));
  return bin;
}

bool
has_factory (const char *name)
{
  g_autoptr (GstElementFactory) f = gst_element_factory_find (name);
  return f != nullptr;
}

/* How many layers raw video of `caps` gets, `wanted` at most: each half
 * the size of the one above, while at least the minimum size. */
int
layer_count (GstCaps * caps, int wanted)
{
  int width = 0, height = 0;
  const GstStructure *s = gst_caps_get_structure (caps, 0);
  if (!gst_structure_get_int (s, "width", &width)
      || !gst_structure_get_int (s, "height", &height))
    return 1;
  int n = 1;
  while (n < MIN (wanted, MAX_LAYERS) && (width >> n) >= LAYER_MIN_WIDTH
      && (height >> n) >= LAYER_MIN_HEIGHT)
    n++;
  return n;
}

}  // namespace

const char *
kind_name (Kind kind)
{
  return kind == Kind::Video ? "video" : "audio";
}

const Codec *
codec_by_name (const std::string & name)
{
  for (const Codec & c : CODECS)
    if (g_ascii_strcasecmp (c.name, name.c_str ()) == 0)
      return &c;
  return nullptr;
}

const Codec *
codec_for_encoded (const GstCaps * caps)
{
  if (!caps || gst_caps_is_empty (caps))
    return nullptr;
  const char *media = gst_structure_get_name (gst_caps_get_structure (caps,
          0));
  for (const Codec & c : CODECS)
    if (g_strcmp0 (media, c.encoded_caps) == 0)
      return &c;
  return nullptr;
}

GstCaps *
rtp_caps (const Codec & codec, int pt)
{
  GstCaps *caps = gst_caps_new_simple ("application/x-rtp",
      "media", G_TYPE_STRING, kind_name (codec.kind),
      "encoding-name", G_TYPE_STRING, codec.name,
      "clock-rate", G_TYPE_INT, codec.clock_rate,
      "payload", G_TYPE_INT, pt, NULL);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  if (codec.kind == Kind::Video) {
    gst_structure_set (s,
        "rtcp-fb-nack", G_TYPE_BOOLEAN, TRUE,
        "rtcp-fb-nack-pli", G_TYPE_BOOLEAN, TRUE,
        "rtcp-fb-ccm-fir", G_TYPE_BOOLEAN, TRUE, NULL);
  } else {
    gst_structure_set (s, "encoding-params", G_TYPE_STRING, "2", NULL);
  }
  /* As browsers offer Opus: 10 ms frames at least, and in-band FEC, which
   * we decode (Peer leaves it out with do-fec off). */
  if (g_str_equal (codec.name, "OPUS")) {
    gst_structure_set (s, "minptime", G_TYPE_STRING, "10",
        "useinbandfec", G_TYPE_STRING, "1", NULL);
  }
  if (g_str_equal (codec.name, "H264")) {
    gst_structure_set (s, "packetization-mode", G_TYPE_STRING, "1",
        "profile-level-id", G_TYPE_STRING, "42e01f", NULL);
  }
  return caps;
}

GstCaps *
receivable_caps (Kind kind)
{
  GstCaps *caps = gst_caps_new_empty ();
  for (const Codec & c : CODECS) {
    if (c.kind == kind && has_factory (c.depayloader)
        && !find_decoder (c).empty ())
      gst_caps_append (caps, rtp_caps (c, c.default_pt));
  }
  return caps;
}

void
drop_unless_linked (GstPad * pad)
{
  gst_pad_add_probe (pad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), [] (GstPad * p, GstPadProbeInfo *,
          gpointer) {
        return gst_pad_is_linked (p) ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
      }, nullptr, nullptr);
}

void
for_each_rtp_session (GstElement * webrtc,
    const std::function<void (guint id, GObject * session)> & f)
{
  g_autoptr (GstElement) rtpbin = gst_bin_get_by_name (GST_BIN (webrtc),
      "rtpbin");
  for (guint id = 0; rtpbin && id <= KIND_COUNT; id++) {
    GObject *session = nullptr;
    g_signal_emit_by_name (rtpbin, "get-internal-session", id, &session);
    if (!session)
      continue;
    f (id, session);
    g_object_unref (session);
  }
}

std::string
missing_factory (const char *factories)
{
  g_auto (GStrv) names = g_strsplit (factories, ",", -1);
  for (char **n = names; *n; n++)
    if (**n && !has_factory (*n))
      return *n;
  return {};
}

/* ------------------------------------------------------------------ */

Outgoing::Outgoing (GstBin * bin, Kind kind, Settings settings, Ready ready,
    Failed failed)
  : bin_ (bin), kind_ (kind), settings_ (settings), ready_ (std::move (ready)),
    failed_ (std::move (failed))
{
  std::string k = kind_name (kind);
  queue_ = make ("queue", (k + "-in").c_str ());
  tee_ = make ("tee", (k + "-tee").c_str ());
  g_object_set (tee_, "allow-not-linked", TRUE, NULL);
  /* The clock branch: members' branches never block, so without it
   * nothing would pace input that is not live. */
  GstElement *clock_queue = make ("queue", (k + "-clock-queue").c_str ());
  GstElement *clock = clock_ = make ("fakesink", (k + "-clock").c_str ());
  g_object_set (clock, "sync", TRUE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  gst_bin_add_many (bin_, queue_, tee_, clock_queue, clock, NULL);
  elements_ = { queue_, tee_, clock_queue, clock };
  gst_element_link_many (tee_, clock_queue, clock, NULL);
  for (GstElement *e : { clock, clock_queue, tee_, queue_ })
    gst_element_sync_state_with_parent (e);

  g_autoptr (GstPad) src = gst_element_get_static_pad (queue_, "src");
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, on_caps, this,
      nullptr);
}

Outgoing::~Outgoing ()
{
  for (GstElement *e : elements_) {
    gst_element_set_locked_state (e, TRUE);
    gst_element_set_state (e, GST_STATE_NULL);
    gst_bin_remove (bin_, e);
  }
}

GstPad *
Outgoing::sink_pad () const
{
  return gst_element_get_static_pad (queue_, "sink");
}

const Codec *
Outgoing::codec () const
{
  std::lock_guard<std::mutex> guard (lock_);
  return codec_;
}

GstPadProbeReturn
Outgoing::on_caps (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
  if (GST_EVENT_TYPE (event) != GST_EVENT_CAPS)
    return GST_PAD_PROBE_OK;
  auto *self = static_cast<Outgoing *> (data);
  GstCaps *caps;
  gst_event_parse_caps (event, &caps);
  /* Linking here, before the event goes on, makes the new chain its
   * receiver. */
  if (!self->build (caps)) {
    /* Told once: what comes after (caps again with every buffer, as the
     * event is sticky) is dropped without a word. */
    gst_pad_remove_probe (pad, GST_PAD_PROBE_INFO_ID (info));
    gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_DATA_DOWNSTREAM,
        [] (GstPad *, GstPadProbeInfo *, gpointer) {
          return GST_PAD_PROBE_DROP;
        }, nullptr, nullptr);
    return GST_PAD_PROBE_DROP;
  }
  self->ready_ (*self);
  return GST_PAD_PROBE_REMOVE;
}

bool
Outgoing::build (GstCaps * caps)
{
  const GstStructure *s = gst_caps_get_structure (caps, 0);
  bool raw = gst_structure_has_name (s, "video/x-raw")
      || gst_structure_has_name (s, "audio/x-raw");
  const Codec *codec = raw ? settings_.raw_codec : codec_for_encoded (caps);
  if (!codec || codec->kind != kind_) {
    g_autofree char *str = gst_caps_to_string (caps);
    failed_ ("", std::string ("cannot publish ") + str);
    return false;
  }

  if (raw && find_encoder (*codec).empty ()) {
    failed_ (codec->encoder, std::string ("no ") + codec->name
        + " encoder is installed, install one of "
        + missing_encoder_hint (*codec));
    return false;
  }
  std::string needed;
  if (codec->parser)
    needed += std::string (",") + codec->parser;
  needed += std::string (",") + codec->payloader;
  if (raw)
    needed += kind_ == Kind::Video ? ",videoconvert,videoscale"
        : ",audioconvert,audioresample";
  std::string missing = missing_factory (needed.c_str ());
  if (!missing.empty ()) {
    failed_ (missing, std::string ("cannot publish ") + codec->name);
    return false;
  }

  if (raw && kind_ == Kind::Video && layer_count (caps, settings_.layers) > 1)
    return build_layers (*codec, caps);

  std::vector<GstElement *> chain;
  GstElement *encoder = nullptr;
  if (raw) {
    if (kind_ == Kind::Video) {
      chain.push_back (make ("videoconvert"));
    } else {
      chain.push_back (make ("audioconvert"));
      chain.push_back (make ("audioresample"));
    }
    std::vector<GstElement *> encoding = make_encoder (*codec,
        kind_ == Kind::Video ? settings_.video_bitrate : 0);
    encoder = encoding.empty () ? nullptr : encoding.front ();
    if (!encoder)
      chain.push_back (nullptr);      /* add_chain fails on it */
    chain.insert (chain.end (), encoding.begin (), encoding.end ());
  }
  if (codec->parser)
    chain.push_back (make_parser (*codec));
  if (!add_chain (bin_, chain)) {
    failed_ ("", std::string ("could not build the ") + codec->name
        + " encoder");
    return false;
  }
  elements_.insert (elements_.end (), chain.begin (), chain.end ());
  if (chain.empty ()) {
    gst_element_link (queue_, tee_);
  } else {
    gst_element_link (queue_, chain.front ());
    gst_element_link (chain.back (), tee_);
  }
  for (auto it = chain.rbegin (); it != chain.rend (); ++it)
    gst_element_sync_state_with_parent (*it);

  std::lock_guard<std::mutex> guard (lock_);
  codec_ = codec;
  encoder_ = encoder;
  GST_INFO ("%s: publishing %s%s", kind_name (kind_), codec->name,
      raw ? " (encoded here)" : " (passed through)");
  return true;
}

bool
Outgoing::build_layers (const Codec & codec, GstCaps * caps)
{
  int n = layer_count (caps, settings_.layers);
  const GstStructure *s = gst_caps_get_structure (caps, 0);
  int width = 0, height = 0;
  gst_structure_get_int (s, "width", &width);
  gst_structure_get_int (s, "height", &height);

  GstElement *raw_tee = make ("tee", "video-raw-tee");
  std::vector<GstElement *> head = { make ("videoconvert"), raw_tee };
  if (!add_chain (bin_, head)) {
    failed_ ("", "could not build the video layers");
    return false;
  }
  elements_.insert (elements_.end (), head.begin (), head.end ());
  std::vector<Layer> layers;
  for (int i = 0; i < n; i++) {
    Layer layer;
    layer.width = (width >> i) & ~1;
    layer.height = (height >> i) & ~1;
    std::string name = "video-layer" + std::to_string (i);
    GstElement *queue = make ("queue", (name + "-queue").c_str ());
    /* Each encoder in a thread of its own; a few frames at most. */
    g_object_set (queue, "max-size-buffers", 3, "max-size-bytes", 0,
        "max-size-time", (guint64) 0, NULL);
    std::vector<GstElement *> chain = { queue };
    if (i > 0) {
      GstElement *filter = make ("capsfilter");
      g_autoptr (GstCaps) size = gst_caps_new_simple ("video/x-raw",
          "width", G_TYPE_INT, layer.width, "height", G_TYPE_INT,
          layer.height, NULL);
      g_object_set (filter, "caps", size, NULL);
      chain.push_back (make ("videoscale"));
      chain.push_back (filter);
    }
    std::vector<GstElement *> encoding = make_encoder (codec,
        (guint) layer_start_bitrate (settings_.video_bitrate, i));
    layer.encoder = encoding.empty () ? nullptr : encoding.front ();
    if (!layer.encoder)
      chain.push_back (nullptr);      /* add_chain fails on it */
    chain.insert (chain.end (), encoding.begin (), encoding.end ());
    if (codec.parser)
      chain.push_back (make_parser (codec));
    layer.tee = i == 0 ? tee_ : make ("tee", (name + "-tee").c_str ());
    if (i > 0) {
      if (layer.tee)
        g_object_set (layer.tee, "allow-not-linked", TRUE, NULL);
      chain.push_back (layer.tee);
    }
    if (!add_chain (bin_, chain)) {
      failed_ ("", std::string ("could not build the ") + codec.name
          + " encoder of video layer " + std::to_string (i));
      return false;
    }
    elements_.insert (elements_.end (), chain.begin (), chain.end ());
    if (i == 0)
      gst_element_link (chain.back (), tee_);
    for (auto it = chain.rbegin (); it != chain.rend (); ++it)
      gst_element_sync_state_with_parent (*it);
    gst_element_link (raw_tee, queue);
    layers.push_back (layer);
  }
  gst_element_link (queue_, head.front ());
  for (auto it = head.rbegin (); it != head.rend (); ++it)
    gst_element_sync_state_with_parent (*it);

  std::lock_guard<std::mutex> guard (lock_);
  codec_ = &codec;
  encoder_ = layers[0].encoder;
  layers_ = layers;
  GST_INFO ("video: publishing %s (encoded here) in %d layers, %dx%d at the "
      "top", codec.name, n, width, height);
  return true;
}

int
Outgoing::layers () const
{
  std::lock_guard<std::mutex> guard (lock_);
  return MAX ((int) layers_.size (), 1);
}

void
Outgoing::layer_size (int layer, int *width, int *height) const
{
  std::lock_guard<std::mutex> guard (lock_);
  bool known = layer >= 0 && layer < (int) layers_.size ();
  *width = known ? layers_[layer].width : 0;
  *height = known ? layers_[layer].height : 0;
}

std::unique_ptr<Feed>
Outgoing::feed (GstPad * sink, const std::string & member)
{
  std::vector<GstElement *> tees;
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (const Layer & l : layers_)
      tees.push_back (l.tee);
  }
  auto feed = std::make_unique<Feed> ();
  if (tees.size () < 2) {
    GstPad *pad = gst_element_request_pad_simple (tee_, "src_%u");
    feed->tee_pads_.push_back (pad);
    gst_pad_link (pad, sink);
    return feed;
  }
  GstElement *sw = layer_switch_new ((int) tees.size (),
      ("layers-" + member).c_str ());
  feed->switch_ = GST_ELEMENT (gst_object_ref (sw));
  gst_bin_add (bin_, sw);
  g_autoptr (GstPad) src = gst_element_get_static_pad (sw, "src");
  gst_pad_link (src, sink);
  gst_element_sync_state_with_parent (sw);
  for (size_t i = 0; i < tees.size (); i++) {
    GstPad *pad = gst_element_request_pad_simple (tees[i], "src_%u");
    feed->tee_pads_.push_back (pad);
    std::string name = "sink_" + std::to_string (i);
    g_autoptr (GstPad) layer_sink = gst_element_get_static_pad (sw,
        name.c_str ());
    gst_pad_link (pad, layer_sink);
  }
  return feed;
}

Feed::~Feed ()
{
  for (GstPad *pad : tee_pads_) {
    g_autoptr (GstPad) peer = gst_pad_get_peer (pad);
    if (peer)
      gst_pad_unlink (pad, peer);
    /* The stream may be gone already: ask the pad for its tee. */
    g_autoptr (GstElement) tee = gst_pad_get_parent_element (pad);
    if (tee)
      gst_element_release_request_pad (tee, pad);
    gst_object_unref (pad);
  }
  if (switch_) {
    gst_element_set_locked_state (switch_, TRUE);
    gst_element_set_state (switch_, GST_STATE_NULL);
    g_autoptr (GstObject) parent = gst_object_get_parent (GST_OBJECT (switch_));
    if (parent)
      gst_bin_remove (GST_BIN (parent), switch_);
    gst_object_unref (switch_);
  }
}

void
Outgoing::force_key_unit (int layer)
{
  GstElement *tee = tee_;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (layer > 0 && layer < (int) layers_.size ())
      tee = layers_[layer].tee;
  }
  g_autoptr (GstPad) pad = gst_element_get_static_pad (tee, "sink");
  gst_pad_push_event (pad, gst_video_event_new_upstream_force_key_unit (
          GST_CLOCK_TIME_NONE, TRUE, 0));
}

void
Outgoing::set_audio_fec (int percent)
{
  /* Our encoder, when we encode, feeds the tee (Opus has no parser). */
  g_autoptr (GstPad) sink = gst_element_get_static_pad (tee_, "sink");
  g_autoptr (GstPad) peer = gst_pad_get_peer (sink);
  g_autoptr (GstElement) encoder = peer ? gst_pad_get_parent_element (peer)
      : nullptr;
  GstElementFactory *f = encoder ? gst_element_get_factory (encoder) : nullptr;
  if (!f || !g_str_equal (GST_OBJECT_NAME (f), "opusenc"))
    return;
  gboolean on = FALSE;
  int was = 0;
  g_object_get (encoder, "inband-fec", &on, "packet-loss-percentage", &was,
      NULL);
  if (was == percent && on == (percent > 0))
    return;
  GST_INFO ("audio: Opus in-band FEC %s, sized for %d %% loss",
      percent ? "on" : "off", percent);
  g_object_set (encoder, "inband-fec", (gboolean) (percent > 0),
      "packet-loss-percentage", percent, NULL);
}

/* ------------------------------------------------------------------ */

Mixer::Mixer (GstElement * element, int width, int height)
  : element_ (element), width_ (width), height_ (height)
{
  GstBin *bin = GST_BIN (element);
  GstElement *vsrc = make ("videotestsrc", "mix-background");
  g_object_set (vsrc, "is-live", TRUE, NULL);
  gst_util_set_object_arg (G_OBJECT (vsrc), "pattern", "black");
  background_caps_ = make ("capsfilter", "mix-background-caps");
  GstElement *compositor = make ("compositor", "mix-video");
  gst_util_set_object_arg (G_OBJECT (compositor), "background", "black");
  output_caps_ = make ("capsfilter", "mix-video-caps");
  GstElement *asrc = make ("audiotestsrc", "mix-silence");
  g_object_set (asrc, "is-live", TRUE, NULL);
  gst_util_set_object_arg (G_OBJECT (asrc), "wave", "silence");
  GstElement *acaps = make ("capsfilter", "mix-silence-caps");
  g_autoptr (GstCaps) audio = gst_caps_from_string (
      "audio/x-raw,rate=48000,channels=2");
  g_object_set (acaps, "caps", audio, NULL);
  GstElement *audiomixer = make ("audiomixer", "mix-audio");
  GstElement *aout = make ("capsfilter", "mix-audio-caps");
  g_object_set (aout, "caps", audio, NULL);
  elements_ = { vsrc, background_caps_, compositor, output_caps_, asrc, acaps,
    audiomixer, aout };
  for (GstElement *e : elements_)
    gst_bin_add (bin, e);
  gst_element_link_many (vsrc, background_caps_, compositor, output_caps_,
      NULL);
  gst_element_link_many (asrc, acaps, audiomixer, aout, NULL);
  mixers_[(int) Kind::Video] = compositor;
  mixers_[(int) Kind::Audio] = audiomixer;
  resize (width, height);

  GstElement *last[] = { output_caps_, aout };
  for (int k = 0; k < KIND_COUNT; k++) {
    const char *name = kind_name ((Kind) k);
    g_autoptr (GstPad) target = gst_element_get_static_pad (last[k], "src");
    GstPadTemplate *templ = gst_element_get_pad_template (element, name);
    outputs_[k] = templ ? gst_ghost_pad_new_from_template (name, target, templ)
        : gst_ghost_pad_new (name, target);
    gst_object_ref (outputs_[k]);
    gst_element_add_pad (element, outputs_[k]);
  }
}

Mixer::~Mixer ()
{
  for (GstPad *&p : outputs_) {
    gst_element_remove_pad (element_, p);
    gst_clear_object (&p);
  }
  for (GstElement *e : elements_) {
    gst_element_set_locked_state (e, TRUE);
    gst_element_set_state (e, GST_STATE_NULL);
    gst_bin_remove (GST_BIN (element_), e);
  }
}

void
Mixer::resize (int width, int height)
{
  std::lock_guard<std::mutex> guard (lock_);
  width_ = width;
  height_ = height;
  g_autoptr (GstCaps) caps = gst_caps_new_simple ("video/x-raw",
      "width", G_TYPE_INT, width, "height", G_TYPE_INT, height,
      "framerate", GST_TYPE_FRACTION, 30, 1, NULL);
  g_object_set (background_caps_, "caps", caps, NULL);
  g_object_set (output_caps_, "caps", caps, NULL);
  layout ();
}

GstPad *
Mixer::add (Kind kind, GstPad * src)
{
  GstElement *mixer = mixers_[(int) kind];
  GstPad *pad = gst_element_request_pad_simple (mixer, "sink_%u");
  if (kind == Kind::Video) {
    gst_util_set_object_arg (G_OBJECT (pad), "sizing-policy",
        "keep-aspect-ratio");
    g_object_set (pad, "zorder", 1u, NULL);
    std::lock_guard<std::mutex> guard (lock_);
    tiles_.push_back (pad);
    layout ();
  }
  gst_pad_link (src, pad);
  return pad;
}

void
Mixer::remove (Kind kind, GstPad * pad)
{
  g_autoptr (GstPad) peer = gst_pad_get_peer (pad);
  if (peer)
    gst_pad_unlink (peer, pad);
  if (kind == Kind::Video) {
    std::lock_guard<std::mutex> guard (lock_);
    tiles_.erase (std::remove (tiles_.begin (), tiles_.end (), pad),
        tiles_.end ());
    layout ();
  }
  gst_element_release_request_pad (mixers_[(int) kind], pad);
}

/* A grid as square as the count allows; under lock_. */
void
Mixer::layout ()
{
  int n = (int) tiles_.size ();
  if (!n)
    return;
  int cols = (int) std::ceil (std::sqrt ((double) n));
  int rows = (n + cols - 1) / cols;
  int w = width_ / cols, h = height_ / rows;
  for (int i = 0; i < n; i++) {
    g_object_set (tiles_[i], "xpos", (i % cols) * w, "ypos", (i / cols) * h,
        "width", w, "height", h, NULL);
  }
}

/* ------------------------------------------------------------------ */

namespace {

/* A receiving pipeline's key-frame requests (PLI), one at a time. The
 * depayloader asks for a key frame for every frame it drops while it
 * waits for one: some 20 a second on a slow link, each a key frame from
 * the publisher that the link's queue drops part of, which makes the next
 * requests (the publisher's RTCP rules let them all through where the
 * round trip is short). So a request goes out only when a key frame came
 * out of the depayloader since the previous one, or KEY_FRAME_RETRY_MS
 * after it (the key frame asked for was lost, or is still on its way). */
constexpr gint64 KEY_FRAME_RETRY_MS = 250;

struct KeyFrameRequests
{
  std::mutex lock;
  gint64 last_us = 0;           /* monotonic; 0: none asked for */
  bool key_frame_since = true;
};

/* The depayloader's key-frame requests carry all-headers, which rtpsession
 * sends as FIR where the sender allows it; FIR is for a decoder that starts
 * afresh (RFC 5104), and a picture broken by loss is what PLI is for (RFC
 * 4585), so they go upstream as requests for a key frame alone; one at a
 * time (KeyFrameRequests). */
GstPadProbeReturn
key_frame_request_as_pli (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
  if (!gst_video_event_is_force_key_unit (event))
    return GST_PAD_PROBE_OK;
  auto *requests = static_cast<KeyFrameRequests *> (data);
  {
    std::lock_guard<std::mutex> guard (requests->lock);
    gint64 now = g_get_monotonic_time ();
    if (!requests->key_frame_since && requests->last_us
        && now - requests->last_us < KEY_FRAME_RETRY_MS * 1000) {
      GST_LOG ("a key frame was asked for %" G_GINT64_FORMAT " ms ago: "
          "not again yet", (now - requests->last_us) / 1000);
      return GST_PAD_PROBE_DROP;
    }
    requests->last_us = now;
    requests->key_frame_since = false;
  }
  gboolean all_headers = FALSE;
  if (!gst_video_event_parse_upstream_force_key_unit (event, nullptr,
          &all_headers, nullptr) || !all_headers)
    return GST_PAD_PROBE_OK;
  gst_event_unref (event);
  GST_PAD_PROBE_INFO_DATA (info) =
      gst_video_event_new_upstream_force_key_unit (GST_CLOCK_TIME_NONE,
      FALSE, 0);
  return GST_PAD_PROBE_OK;
}

/* A key frame left the depayloader: the next request goes out at once. */
GstPadProbeReturn
key_frame_out (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  if (buffer && !GST_BUFFER_FLAG_IS_SET (buffer, GST_BUFFER_FLAG_DELTA_UNIT)) {
    auto *requests = static_cast<KeyFrameRequests *> (data);
    std::lock_guard<std::mutex> guard (requests->lock);
    requests->key_frame_since = true;
  }
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn
count_frame (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *counter = static_cast<std::shared_ptr<FrameCounter> *> (data)->get ();
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  counter->frames.fetch_add (1, std::memory_order_relaxed);
  GstClockTime ts = GST_BUFFER_PTS (buffer);
  if (!GST_CLOCK_TIME_IS_VALID (ts))
    return GST_PAD_PROBE_OK;
  GstClockTime last = counter->last.exchange (ts, std::memory_order_relaxed);
  if (GST_CLOCK_TIME_IS_VALID (last) && ts > last + FREEZE_GAP) {
    counter->freezes.fetch_add (1, std::memory_order_relaxed);
    counter->frozen_ns.fetch_add (ts - last, std::memory_order_relaxed);
  }
  return GST_PAD_PROBE_OK;
}

}  // namespace

GstElement *
make_decoder (const Codec & codec, const std::string & name,
    std::shared_ptr<FrameCounter> counter, bool fec)
{
  GstElement *depay = make (codec.depayloader);
  GstElement *dec = make (find_decoder (codec).c_str ());
  std::vector<GstElement *> chain = { depay, dec };
  /* What a decoder takes (openh264dec: byte-stream alone) is the parser's
   * to convert to. */
  if (codec.parser && codec.kind == Kind::Video)
    chain.insert (chain.begin () + 1, make (codec.parser));
  if (codec.kind == Kind::Video) {
    /* A frame with a packet missing (lost for good: the jitterbuffer gave
     * up on it) is dropped, and so is every frame after it until a key
     * frame, which is asked for at once (one request at a time:
     * KeyFrameRequests): the decoder never decodes against references it
     * does not have. */
    if (depay) {
      g_object_set (depay, "request-keyframe", TRUE, "wait-for-keyframe",
          TRUE, NULL);
      auto requests = std::make_shared<KeyFrameRequests> ();
      auto free_requests = [] (gpointer data) {
        delete static_cast<std::shared_ptr<KeyFrameRequests> *> (data);
      };
      g_autoptr (GstPad) sink = gst_element_get_static_pad (depay, "sink");
      gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM,
          [] (GstPad * pad, GstPadProbeInfo * info, gpointer data) {
            return key_frame_request_as_pli (pad, info, static_cast<
                std::shared_ptr<KeyFrameRequests> *> (data)->get ());
          }, new std::shared_ptr<KeyFrameRequests> (requests), free_requests);
      g_autoptr (GstPad) src = gst_element_get_static_pad (depay, "src");
      gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER,
          [] (GstPad * pad, GstPadProbeInfo * info, gpointer data) {
            return key_frame_out (pad, info, static_cast<
                std::shared_ptr<KeyFrameRequests> *> (data)->get ());
          }, new std::shared_ptr<KeyFrameRequests> (requests), free_requests);
    }
    if (dec && counter) {
      g_autoptr (GstPad) src = gst_element_get_static_pad (dec, "src");
      gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, count_frame,
          new std::shared_ptr<FrameCounter> (std::move (counter)),
          [] (gpointer data) {
            delete static_cast<std::shared_ptr<FrameCounter> *> (data);
          });
    }
    chain.push_back (make ("videoconvert"));
  } else {
    /* A lost packet is concealed; with FEC, it is rebuilt from the
     * redundancy the next packet carries where the member sends it (one
     * packet's more delay). The jitterbuffer's lost packets reach the
     * decoder as gap events. */
    if (dec)
      g_object_set (dec, "plc", TRUE, "use-inband-fec", (gboolean) fec, NULL);
    chain.push_back (make ("audioconvert"));
    chain.push_back (make ("audioresample"));
  }
  return bin_with_ghosts (name, chain.front (), chain.back (), chain);
}

namespace {

/* A member's queue dropped encoded video (it overran: the member's
 * connection or this machine fell more than MEMBER_QUEUE_NS behind). The
 * frames after a dropped one refer to it, and the member cannot tell it
 * is missing (the packets that follow are numbered on without a gap): so
 * the frames after it are dropped too, up to a key frame, asked for at
 * once (of the member's layer: the request goes up as a member's PLI
 * does). A CI run under load gave out 15 pictures decoded against a
 * reference dropped here. */
void
drop_until_key_frame (GstElement * queue)
{
  /* 0: whole; 1: broken, the key frame not asked for yet; 2: asked. An
   * overrun while waiting asks again: the key frame may be what the queue
   * dropped. */
  using State = std::shared_ptr<std::atomic<int>>;
  auto state = std::make_shared<std::atomic<int>> (0);
  auto free_state = [] (gpointer data) {
    delete static_cast<State *> (data);
  };
  g_signal_connect_data (queue, "overrun", G_CALLBACK (+[] (GstElement *,
              gpointer data) {
            static_cast<State *> (data)->get ()->store (1);
          }), new State (state), [] (gpointer data, GClosure *) {
        delete static_cast<State *> (data);
      }, (GConnectFlags) 0);
  g_autoptr (GstPad) src = gst_element_get_static_pad (queue, "src");
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER,
      [] (GstPad * pad, GstPadProbeInfo * info, gpointer data) {
        std::atomic<int> *s = static_cast<State *> (data)->get ();
        GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
        if (s->load () == 0 || !buffer)
          return GST_PAD_PROBE_OK;
        if (!GST_BUFFER_FLAG_IS_SET (buffer, GST_BUFFER_FLAG_DELTA_UNIT)) {
          s->store (0);
          return GST_PAD_PROBE_OK;
        }
        int ask = 1;
        if (s->compare_exchange_strong (ask, 2)) {
          GST_DEBUG_OBJECT (pad, "the queue dropped video: dropping frames "
              "up to a key frame, asked for");
          gst_pad_send_event (pad, gst_video_event_new_upstream_force_key_unit
              (GST_CLOCK_TIME_NONE, TRUE, 0));
        }
        return GST_PAD_PROBE_DROP;
      }, new State (state), free_state);
}

}  // namespace

GstElement *
make_payloader (const Codec & codec, int pt, guint ssrc,
    const std::string & name)
{
  GstElement *queue = make ("queue");
  if (queue) {
    g_object_set (queue, "max-size-buffers", 0, "max-size-bytes", 0,
        "max-size-time", MEMBER_QUEUE_NS, NULL);
    gst_util_set_object_arg (G_OBJECT (queue), "leaky", "downstream");
    if (codec.kind == Kind::Video)
      drop_until_key_frame (queue);
  }
  GstElement *pay = make (codec.payloader);
  if (pay) {
    g_object_set (pay, "pt", (guint) pt, "mtu", (guint) 1200,
        "ssrc", ssrc, NULL);
    if (g_str_equal (codec.payloader, "rtpvp8pay"))
      gst_util_set_object_arg (G_OBJECT (pay), "picture-id-mode", "15-bit");
    else if (g_str_equal (codec.payloader, "rtph264pay")) {
      g_object_set (pay, "config-interval", -1, NULL);
      gst_util_set_object_arg (G_OBJECT (pay), "aggregate-mode",
          "zero-latency");
    }
  }
  std::vector<GstElement *> chain = { queue, pay };
  if (g_str_equal (codec.payloader, "rtph264pay")) {
    /* rtph264pay writes the profile-level-id of the stream's SPS (x264enc's
     * constrained baseline is 42c0xx: constraint_set2 unset, the level the
     * picture size needs); what the SDP says (42e01f, the same profile at
     * a level above) is what webrtcbin's pad takes. */
    GstElement *setter = make ("capssetter");
    if (setter) {
      g_autoptr (GstCaps) caps = rtp_caps (codec, pt);
      g_autoptr (GstCaps) level = gst_caps_new_simple ("application/x-rtp",
          "profile-level-id", G_TYPE_STRING, gst_structure_get_string (
              gst_caps_get_structure (caps, 0), "profile-level-id"), NULL);
      g_object_set (setter, "caps", level, NULL);
    }
    chain.push_back (setter);
  }
  if (codec.kind == Kind::Video) {
    /* Payloaders push a frame's packets as one list; what follows sees
     * each packet alone, to pace it (Congestion::watch_payloader). */
    GstElement *single = make ("identity");
    if (single)
      g_object_set (single, "silent", TRUE, NULL);
    chain.push_back (single);
  }
  return bin_with_ghosts (name, chain.front (), chain.back (), chain);
}

}  // namespace peerjs
