#include "gstpeerjsbase.h"

#include "session.h"

#include <glib/gstdio.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <sstream>
#include <thread>

GST_DEBUG_CATEGORY (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

#define DEFAULT_SERVER "ws://127.0.0.1:5000/peerjs"
/* Under loss, libnice may nominate a TCP pair (docs/elements.md). */
#define DEFAULT_ICE_TCP FALSE
/* By measurement: docs/performance.md, glass-to-glass latency. */
#define DEFAULT_LATENCY 30
/* webrtcbin's own latency; longer while retransmissions take longer
 * (RetransmissionTimes in peer.cpp; docs/performance.md, weak links). */
#define DEFAULT_RETRANSMISSION_WAIT 200
#define DEFAULT_VIDEO_CODEC "VP8"
#define DEFAULT_AUDIO_CODEC "OPUS"
#define DEFAULT_VIDEO_BITRATE 1000000
#define DEFAULT_STATS_INTERVAL 0
#define DEFAULT_DO_RETRANSMISSION TRUE
#define DEFAULT_DO_FEC TRUE
#define DEFAULT_CONGESTION_CONTROL peerjs::CongestionControl::Gcc
#define DEFAULT_MIN_BITRATE 100000
#define DEFAULT_MAX_BITRATE 0           /* the video-bitrate */
#define DEFAULT_START_BITRATE 300000   /* where Chromium starts */
#define DEFAULT_VIDEO_LAYERS 3
#define DEFAULT_REPLY_TIMEOUT 30000

enum
{
  PROP_0,
  PROP_SERVER,
  PROP_THREAD,
  PROP_CONSTRAINTS,
  PROP_SESSION_ID,
  PROP_STUN_SERVER,
  PROP_TURN_SERVER,
  PROP_ICE_ADDRESSES,
  PROP_TURN_SERVERS,
  PROP_ICE_TRANSPORT_POLICY,
  PROP_ICE_TCP,
  PROP_TLS_CA,
  PROP_AUTH_TOKEN,
  PROP_LATENCY,
  PROP_VIDEO_CODEC,
  PROP_AUDIO_CODEC,
  PROP_VIDEO_BITRATE,
  PROP_STATS_INTERVAL,
  PROP_DO_RETRANSMISSION,
  PROP_RETRANSMISSION_WAIT,
  PROP_DO_FEC,
  PROP_TAGS,
  PROP_WATCH,
  PROP_REPLY_TIMEOUT,
  PROP_DOWNLOAD_DIR,
  PROP_ACCEPT_FILES,
  PROP_MIX,
  PROP_MIX_WIDTH,
  PROP_MIX_HEIGHT,
  PROP_CONGESTION_CONTROL,
  PROP_MIN_BITRATE,
  PROP_MAX_BITRATE,
  PROP_START_BITRATE,
  PROP_VIDEO_LAYERS,
  PROP_DISPLAY_NAME,
  PROP_MEMBERS,
};

#define DEFAULT_MIX_WIDTH 1280
#define DEFAULT_MIX_HEIGHT 720

static GstStaticPadTemplate video_sink_template =
GST_STATIC_PAD_TEMPLATE ("video", GST_PAD_SINK, GST_PAD_REQUEST,
    GST_STATIC_CAPS ("video/x-raw; video/x-vp8; video/x-vp9; "
        "video/x-h264, stream-format = (string) { avc, byte-stream }, "
        "alignment = (string) au"));
static GstStaticPadTemplate audio_sink_template =
GST_STATIC_PAD_TEMPLATE ("audio", GST_PAD_SINK, GST_PAD_REQUEST,
    GST_STATIC_CAPS ("audio/x-raw; audio/x-opus"));
static GstStaticPadTemplate video_src_template =
GST_STATIC_PAD_TEMPLATE ("video_%s", GST_PAD_SRC, GST_PAD_SOMETIMES,
    GST_STATIC_CAPS ("video/x-raw"));
static GstStaticPadTemplate video_mix_template =
GST_STATIC_PAD_TEMPLATE ("video", GST_PAD_SRC, GST_PAD_SOMETIMES,
    GST_STATIC_CAPS ("video/x-raw"));
static GstStaticPadTemplate audio_mix_template =
GST_STATIC_PAD_TEMPLATE ("audio", GST_PAD_SRC, GST_PAD_SOMETIMES,
    GST_STATIC_CAPS ("audio/x-raw, rate = (int) 48000, channels = (int) 2"));
/* Before "video" and "audio": a source with caps ANY (filesrc) links here,
 * while raw and encoded media, which application/octet-stream does not
 * take, go to their own pads. The pad itself takes any caps. */
static GstStaticPadTemplate file_sink_template =
GST_STATIC_PAD_TEMPLATE ("file_%u", GST_PAD_SINK, GST_PAD_REQUEST,
    GST_STATIC_CAPS ("application/octet-stream"));
static GstStaticPadTemplate file_src_template =
GST_STATIC_PAD_TEMPLATE ("file_%s_%s", GST_PAD_SRC, GST_PAD_SOMETIMES,
    GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate audio_src_template =
GST_STATIC_PAD_TEMPLATE ("audio_%s", GST_PAD_SRC, GST_PAD_SOMETIMES,
    GST_STATIC_CAPS ("audio/x-raw"));

#define GST_TYPE_PEERJS_ACCEPT_FILES (gst_peerjs_accept_files_get_type ())
static GType
gst_peerjs_accept_files_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {(gint) peerjs::Accept::None, "Receive no files", "none"},
    {(gint) peerjs::Accept::Signal,
        "Receive the files the application asks for with request-file",
        "signal"},
    {(gint) peerjs::Accept::All, "Receive every file offered", "all"},
    {0, nullptr, nullptr},
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstPeerJSAcceptFiles", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

#define GST_TYPE_PEERJS_CONGESTION_CONTROL \
  (gst_peerjs_congestion_control_get_type ())
static GType
gst_peerjs_congestion_control_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {(gint) peerjs::CongestionControl::Off,
        "The video encoder stays at video-bitrate", "off"},
    {(gint) peerjs::CongestionControl::Gcc,
        "The video encoder follows the members' bandwidth estimates "
          "(delay- and loss-based, from transport-wide feedback)", "gcc"},
    {0, nullptr, nullptr},
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstPeerJSCongestionControl", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* The values are indices of VIDEO_CODEC_NAMES; a value's name is the
 * codec's SDP name (VP8), its nick the same in lower case (vp8), so that
 * either is taken from a string (gst-launch-1.0, gst_util_set_object_arg). */
static const char *const VIDEO_CODEC_NAMES[] = { "VP8", "VP9", "H264", "AV1" };

#define GST_TYPE_PEERJS_VIDEO_CODEC (gst_peerjs_video_codec_get_type ())
static GType
gst_peerjs_video_codec_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {0, "VP8", "vp8"},
    {1, "VP9", "vp9"},
    {2, "H264", "h264"},
    {3, "AV1", "av1"},
    {0, nullptr, nullptr},
  };
  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstPeerJSVideoCodec", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

namespace {

struct Settings
{
  std::string server = DEFAULT_SERVER;
  std::string threads;
  std::string constraints;
  std::string stun_server;
  std::string turn_server;
  std::string ice_addresses;
  std::vector<std::string> turn_servers;
  GstWebRTCICETransportPolicy ice_transport_policy =
      GST_WEBRTC_ICE_TRANSPORT_POLICY_ALL;
  bool ice_tcp = DEFAULT_ICE_TCP;
  std::string tls_ca;
  std::string auth_token;
  guint latency = DEFAULT_LATENCY;
  std::string video_codec = DEFAULT_VIDEO_CODEC;
  std::string audio_codec = DEFAULT_AUDIO_CODEC;
  guint video_bitrate = DEFAULT_VIDEO_BITRATE;
  guint stats_interval = DEFAULT_STATS_INTERVAL;
  bool do_retransmission = DEFAULT_DO_RETRANSMISSION;
  guint retransmission_wait = DEFAULT_RETRANSMISSION_WAIT;
  bool do_fec = DEFAULT_DO_FEC;
  peerjs::CongestionControl congestion_control = DEFAULT_CONGESTION_CONTROL;
  guint min_bitrate = DEFAULT_MIN_BITRATE;
  guint max_bitrate = DEFAULT_MAX_BITRATE;
  guint start_bitrate = DEFAULT_START_BITRATE;
  guint video_layers = DEFAULT_VIDEO_LAYERS;
  std::string tags;
  std::string watch;
  std::string display_name;
  std::string members;
  guint reply_timeout = DEFAULT_REPLY_TIMEOUT;
  std::string download_dir;
  peerjs::Accept accept = peerjs::Accept::Signal;
  bool mix = false;
  int mix_width = DEFAULT_MIX_WIDTH;
  int mix_height = DEFAULT_MIX_HEIGHT;
};

/* Congestion control as the properties say: max and start 0 are the
 * video-bitrate; max is at least min, start within them. */
peerjs::CcSettings
congestion_settings (const Settings & s)
{
  peerjs::CcSettings cc;
  cc.mode = s.congestion_control;
  cc.min = s.min_bitrate;
  cc.max = MAX (s.max_bitrate ? s.max_bitrate : s.video_bitrate, cc.min);
  cc.start = CLAMP (s.start_bitrate ? s.start_bitrate : s.video_bitrate,
      cc.min, cc.max);
  return cc;
}

std::vector<std::string>
split_list (const std::string & s)
{
  std::vector<std::string> out;
  std::stringstream in (s);
  std::string item;
  while (std::getline (in, item, ',')) {
    g_autofree char *stripped = g_strstrip (g_strdup (item.c_str ()));
    if (*stripped)
      out.push_back (stripped);
  }
  return out;
}

std::string
join_list (const std::vector<std::string> & items)
{
  std::string out;
  for (const std::string & i : items)
    out += (out.empty () ? "" : ",") + i;
  return out;
}

/* `list` with `items` added that it lacks. */
std::string
merged (const std::string & list, const std::vector<std::string> & items)
{
  std::vector<std::string> all = split_list (list);
  for (const std::string & i : items)
    if (std::find (all.begin (), all.end (), i) == all.end ())
      all.push_back (i);
  return join_list (all);
}

}  // namespace

/* A file_%u pad: the bytes it gets are kept in a temporary file, offered
 * to the threads at EOS. */
#define GST_TYPE_PEERJS_FILE_PAD (gst_peerjs_file_pad_get_type ())
G_DECLARE_FINAL_TYPE (GstPeerJSFilePad, gst_peerjs_file_pad, GST,
    PEERJS_FILE_PAD, GstPad)

struct FileInput
{
  std::string file_name;        /* the property */
  std::string title;            /* from a tag */
  std::string temp;
  FILE *file = nullptr;
  guint64 size = 0;
  bool offered = false;
  ~FileInput ()
  {
    if (file)
      fclose (file);
    if (!temp.empty () && !offered)
      g_unlink (temp.c_str ());
  }
};

struct _GstPeerJSFilePad
{
  GstPad parent;
  FileInput *input;
};

enum
{
  PROP_PAD_0,
  PROP_PAD_FILE_NAME,
};

G_DEFINE_TYPE (GstPeerJSFilePad, gst_peerjs_file_pad, GST_TYPE_PAD);

static void
gst_peerjs_file_pad_finalize (GObject * object)
{
  delete GST_PEERJS_FILE_PAD (object)->input;
  G_OBJECT_CLASS (gst_peerjs_file_pad_parent_class)->finalize (object);
}

static void
gst_peerjs_file_pad_set_property (GObject * object, guint id,
    const GValue * value, GParamSpec * pspec)
{
  auto *pad = GST_PEERJS_FILE_PAD (object);
  if (id == PROP_PAD_FILE_NAME) {
    const char *v = g_value_get_string (value);
    GST_OBJECT_LOCK (pad);
    pad->input->file_name = v ? v : "";
    GST_OBJECT_UNLOCK (pad);
  } else {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
  }
}

static void
gst_peerjs_file_pad_get_property (GObject * object, guint id, GValue * value,
    GParamSpec * pspec)
{
  auto *pad = GST_PEERJS_FILE_PAD (object);
  if (id == PROP_PAD_FILE_NAME) {
    GST_OBJECT_LOCK (pad);
    g_value_set_string (value, pad->input->file_name.empty () ? nullptr
        : pad->input->file_name.c_str ());
    GST_OBJECT_UNLOCK (pad);
  } else {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
  }
}

static void
gst_peerjs_file_pad_class_init (GstPeerJSFilePadClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  gobject_class->finalize = gst_peerjs_file_pad_finalize;
  gobject_class->set_property = gst_peerjs_file_pad_set_property;
  gobject_class->get_property = gst_peerjs_file_pad_get_property;
  g_object_class_install_property (gobject_class, PROP_PAD_FILE_NAME,
      g_param_spec_string ("file-name", "File name",
          "The name the file is offered under. Unset: the stream's title "
          "tag, or the name of the file upstream (filesrc), or \"file\"",
          nullptr, (GParamFlags) (G_PARAM_READWRITE
              | G_PARAM_STATIC_STRINGS)));
}

static void
gst_peerjs_file_pad_init (GstPeerJSFilePad * pad)
{
  pad->input = new FileInput ();
}

struct GstPeerJSBasePrivateCpp
{
  std::mutex lock;        /* settings */
  Settings settings;
  std::unique_ptr<peerjs::Session> session;
  GstPad *pads[peerjs::KIND_COUNT] = {};
  /* EOS: webrtcbin never ends, so the element says when it has. */
  std::mutex eos_lock;
  bool eos_sent = false;        /* an EOS event ended the member pads */
  bool streams_ended = false;   /* every published stream reached EOS */
  bool eos_posted = false;
};


typedef struct
{
  GstPeerJSBasePrivateCpp *cpp;
} GstPeerJSBasePrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (GstPeerJSBase, gst_peerjs_base,
    GST_TYPE_BIN);

static GstPeerJSBasePrivateCpp *
priv_of (gpointer self)
{
  auto *p = static_cast<GstPeerJSBasePrivate *> (
      gst_peerjs_base_get_instance_private (GST_PEERJS_BASE (self)));
  return p->cpp;
}

/* Post the element's EOS once its parts have all ended: the member pads
 * (by an EOS event) on a receiving element, the published streams on a
 * publishing one. */
static void
maybe_post_eos (GstElement * element, guint32 seqnum)
{
  auto *priv = priv_of (element);
  GstPeerJSBaseClass *klass = GST_PEERJS_BASE_GET_CLASS (element);
  {
    std::lock_guard<std::mutex> guard (priv->eos_lock);
    bool done = (!klass->receives || priv->eos_sent)
        && (!klass->sends || priv->streams_ended);
    if (!done || priv->eos_posted)
      return;
    priv->eos_posted = true;
  }
  GstMessage *eos = gst_message_new_eos (GST_OBJECT (element));
  if (seqnum)
    gst_message_set_seqnum (eos, seqnum);
  gst_element_post_message (element, eos);
}

static void
set_string (std::string & field, const GValue * value)
{
  const char *s = g_value_get_string (value);
  field = s ? s : "";
}

static void
gst_peerjs_base_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  auto *priv = priv_of (object);
  if (prop_id == PROP_MIX || prop_id == PROP_MIX_WIDTH
      || prop_id == PROP_MIX_HEIGHT) {
    if (GST_STATE (object) != GST_STATE_NULL) {
      g_warning ("peerjs: %s can only be changed in the NULL state",
          pspec->name);
      return;
    }
    bool mix;
    int width, height;
    {
      std::lock_guard<std::mutex> guard (priv->lock);
      Settings & s = priv->settings;
      if (prop_id == PROP_MIX)
        s.mix = g_value_get_boolean (value);
      else if (prop_id == PROP_MIX_WIDTH)
        s.mix_width = g_value_get_int (value);
      else
        s.mix_height = g_value_get_int (value);
      mix = s.mix;
      width = s.mix_width;
      height = s.mix_height;
    }
    /* The mixed pads exist from now on, for gst-launch-1.0 to link. */
    priv->session->set_mix (mix, width, height);
    return;
  }
  if (prop_id == PROP_CONSTRAINTS) {
    std::string text;
    set_string (text, value);
    {
      std::lock_guard<std::mutex> guard (priv->lock);
      priv->settings.constraints = text;
    }
    /* Takes effect at once when the session runs. */
    priv->session->set_constraints (text);
    return;
  }
  if (prop_id == PROP_AUTH_TOKEN) {
    std::string token;
    set_string (token, value);
    {
      std::lock_guard<std::mutex> guard (priv->lock);
      priv->settings.auth_token = token;
    }
    /* A running session presents it from its next (re)connection on. */
    priv->session->set_auth_token (token);
    return;
  }
  if (prop_id == PROP_TAGS || prop_id == PROP_WATCH) {
    std::string text;
    set_string (text, value);
    std::vector<std::string> items = split_list (text);
    {
      std::lock_guard<std::mutex> guard (priv->lock);
      std::string & field = prop_id == PROP_TAGS ? priv->settings.tags
          : priv->settings.watch;
      /* A session keeps what it has: while it runs, new ones are added. */
      field = GST_STATE (object) == GST_STATE_NULL ? join_list (items)
          : merged (field, items);
    }
    if (GST_STATE (object) != GST_STATE_NULL) {
      if (prop_id == PROP_TAGS)
        priv->session->add_tags (items);
      else
        priv->session->add_watches (items);
    }
    return;
  }
  std::lock_guard<std::mutex> guard (priv->lock);
  Settings & s = priv->settings;
  switch (prop_id) {
    case PROP_SERVER:
      set_string (s.server, value);
      break;
    case PROP_THREAD:
      set_string (s.threads, value);
      break;
    case PROP_STUN_SERVER:
      set_string (s.stun_server, value);
      break;
    case PROP_TURN_SERVER:
      set_string (s.turn_server, value);
      break;
    case PROP_ICE_ADDRESSES:
      set_string (s.ice_addresses, value);
      break;
    case PROP_TURN_SERVERS:
      s.turn_servers.clear ();
      for (guint i = 0; i < gst_value_array_get_size (value); i++) {
        const GValue *v = gst_value_array_get_value (value, i);
        if (G_VALUE_HOLDS_STRING (v) && g_value_get_string (v)
            && *g_value_get_string (v))
          s.turn_servers.emplace_back (g_value_get_string (v));
      }
      break;
    case PROP_ICE_TRANSPORT_POLICY:
      s.ice_transport_policy =
          (GstWebRTCICETransportPolicy) g_value_get_enum (value);
      break;
    case PROP_ICE_TCP:
      s.ice_tcp = g_value_get_boolean (value);
      break;
    case PROP_TLS_CA:
      set_string (s.tls_ca, value);
      break;
    case PROP_LATENCY:
      s.latency = g_value_get_uint (value);
      break;
    case PROP_VIDEO_CODEC:
      s.video_codec = VIDEO_CODEC_NAMES[g_value_get_enum (value)];
      break;
    case PROP_AUDIO_CODEC:{
      const char *v = g_value_get_string (value);
      const peerjs::Codec *c = v ? peerjs::codec_by_name (v) : nullptr;
      if (c && c->kind == peerjs::Kind::Audio)
        s.audio_codec = c->name;
      else
        g_warning ("peerjs: audio-codec '%s' is not OPUS", v);
      break;
    }
    case PROP_VIDEO_BITRATE:
      s.video_bitrate = g_value_get_uint (value);
      break;
    case PROP_STATS_INTERVAL:
      s.stats_interval = g_value_get_uint (value);
      break;
    case PROP_DO_RETRANSMISSION:
      s.do_retransmission = g_value_get_boolean (value);
      break;
    case PROP_RETRANSMISSION_WAIT:
      s.retransmission_wait = g_value_get_uint (value);
      break;
    case PROP_DO_FEC:
      s.do_fec = g_value_get_boolean (value);
      break;
    case PROP_CONGESTION_CONTROL:
      s.congestion_control = (peerjs::CongestionControl) g_value_get_enum
          (value);
      break;
    case PROP_MIN_BITRATE:
      s.min_bitrate = g_value_get_uint (value);
      break;
    case PROP_MAX_BITRATE:
      s.max_bitrate = g_value_get_uint (value);
      break;
    case PROP_START_BITRATE:
      s.start_bitrate = g_value_get_uint (value);
      break;
    case PROP_VIDEO_LAYERS:
      s.video_layers = g_value_get_uint (value);
      break;
    case PROP_REPLY_TIMEOUT:
      s.reply_timeout = g_value_get_uint (value);
      break;
    case PROP_DOWNLOAD_DIR:
      set_string (s.download_dir, value);
      break;
    case PROP_MEMBERS:
      set_string (s.members, value);
      break;
    case PROP_DISPLAY_NAME:{
      /* As the server takes a token's name: 1-128 bytes of UTF-8 without
       * control characters (or unset). */
      const char *v = g_value_get_string (value);
      bool ok = !v || (strlen (v) <= 128 && g_utf8_validate (v, -1, nullptr));
      for (const char *c = v; ok && c && *c; c = g_utf8_next_char (c))
        ok = !g_unichar_iscntrl (g_utf8_get_char (c));
      if (ok)
        s.display_name = v ? v : "";
      else
        GST_ELEMENT_WARNING (object, RESOURCE, SETTINGS,
            ("display-name must be at most 128 bytes of text without "
                "control characters; it stays '%s'",
                s.display_name.c_str ()), (nullptr));
      break;
    }
    case PROP_ACCEPT_FILES:
      s.accept = (peerjs::Accept) g_value_get_enum (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_peerjs_base_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  auto *priv = priv_of (object);
  if (prop_id == PROP_SESSION_ID) {
    std::string id = priv->session->id ();
    g_value_set_string (value, id.empty () ? nullptr : id.c_str ());
    return;
  }
  std::lock_guard<std::mutex> guard (priv->lock);
  Settings & s = priv->settings;
  auto str = [value] (const std::string & v) {
    g_value_set_string (value, v.empty () ? nullptr : v.c_str ());
  };
  switch (prop_id) {
    case PROP_SERVER:
      str (s.server);
      break;
    case PROP_THREAD:
      str (s.threads);
      break;
    case PROP_CONSTRAINTS:
      str (s.constraints);
      break;
    case PROP_STUN_SERVER:
      str (s.stun_server);
      break;
    case PROP_TURN_SERVER:
      str (s.turn_server);
      break;
    case PROP_ICE_ADDRESSES:
      str (s.ice_addresses);
      break;
    case PROP_TURN_SERVERS:
      for (const std::string & t : s.turn_servers) {
        GValue v = G_VALUE_INIT;
        g_value_init (&v, G_TYPE_STRING);
        g_value_set_string (&v, t.c_str ());
        gst_value_array_append_and_take_value (value, &v);
      }
      break;
    case PROP_ICE_TRANSPORT_POLICY:
      g_value_set_enum (value, s.ice_transport_policy);
      break;
    case PROP_ICE_TCP:
      g_value_set_boolean (value, s.ice_tcp);
      break;
    case PROP_TLS_CA:
      str (s.tls_ca);
      break;
    case PROP_LATENCY:
      g_value_set_uint (value, s.latency);
      break;
    case PROP_VIDEO_CODEC:
      for (guint i = 0; i < G_N_ELEMENTS (VIDEO_CODEC_NAMES); i++)
        if (s.video_codec == VIDEO_CODEC_NAMES[i])
          g_value_set_enum (value, (gint) i);
      break;
    case PROP_AUDIO_CODEC:
      str (s.audio_codec);
      break;
    case PROP_VIDEO_BITRATE:
      g_value_set_uint (value, s.video_bitrate);
      break;
    case PROP_STATS_INTERVAL:
      g_value_set_uint (value, s.stats_interval);
      break;
    case PROP_DO_RETRANSMISSION:
      g_value_set_boolean (value, s.do_retransmission);
      break;
    case PROP_RETRANSMISSION_WAIT:
      g_value_set_uint (value, s.retransmission_wait);
      break;
    case PROP_DO_FEC:
      g_value_set_boolean (value, s.do_fec);
      break;
    case PROP_CONGESTION_CONTROL:
      g_value_set_enum (value, (gint) s.congestion_control);
      break;
    case PROP_MIN_BITRATE:
      g_value_set_uint (value, s.min_bitrate);
      break;
    case PROP_MAX_BITRATE:
      g_value_set_uint (value, s.max_bitrate);
      break;
    case PROP_START_BITRATE:
      g_value_set_uint (value, s.start_bitrate);
      break;
    case PROP_VIDEO_LAYERS:
      g_value_set_uint (value, s.video_layers);
      break;
    case PROP_TAGS:
      str (s.tags);
      break;
    case PROP_WATCH:
      str (s.watch);
      break;
    case PROP_REPLY_TIMEOUT:
      g_value_set_uint (value, s.reply_timeout);
      break;
    case PROP_DOWNLOAD_DIR:
      str (s.download_dir);
      break;
    case PROP_DISPLAY_NAME:
      str (s.display_name);
      break;
    case PROP_MEMBERS:
      str (s.members);
      break;
    case PROP_ACCEPT_FILES:
      g_value_set_enum (value, (gint) s.accept);
      break;
    case PROP_MIX:
      g_value_set_boolean (value, s.mix);
      break;
    case PROP_MIX_WIDTH:
      g_value_set_int (value, s.mix_width);
      break;
    case PROP_MIX_HEIGHT:
      g_value_set_int (value, s.mix_height);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static GstFlowReturn
gst_peerjs_file_pad_chain (GstPad * pad, GstObject * parent, GstBuffer * buf)
{
  FileInput *in = GST_PEERJS_FILE_PAD (pad)->input;
  GstMapInfo map;
  if (!in->file) {
    char *path = nullptr;
    int fd = g_file_open_tmp ("peerjs-file-XXXXXX", &path, nullptr);
    in->temp = path ? path : "";
    g_free (path);
    in->file = fd >= 0 ? fdopen (fd, "wb") : nullptr;
    if (!in->file) {
      GST_ELEMENT_ERROR (parent, RESOURCE, OPEN_WRITE,
          ("Cannot keep the stream of pad %s in a temporary file.",
              GST_PAD_NAME (pad)), ("%s", g_strerror (errno)));
      gst_buffer_unref (buf);
      return GST_FLOW_ERROR;
    }
  }
  bool ok = gst_buffer_map (buf, &map, GST_MAP_READ);
  if (ok) {
    ok = fwrite (map.data, 1, map.size, in->file) == map.size;
    in->size += map.size;
    gst_buffer_unmap (buf, &map);
  }
  gst_buffer_unref (buf);
  if (!ok) {
    GST_ELEMENT_ERROR (parent, RESOURCE, WRITE,
        ("Cannot keep the stream of pad %s in %s.", GST_PAD_NAME (pad),
            in->temp.c_str ()), ("%s", g_strerror (errno)));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

static gboolean
gst_peerjs_file_pad_event (GstPad * pad, GstObject * parent, GstEvent * event)
{
  FileInput *in = GST_PEERJS_FILE_PAD (pad)->input;
  if (GST_EVENT_TYPE (event) == GST_EVENT_TAG) {
    GstTagList *tags = nullptr;
    gst_event_parse_tag (event, &tags);
    g_autofree char *title = nullptr;
    if (gst_tag_list_get_string (tags, GST_TAG_TITLE, &title))
      in->title = title;
  } else if (GST_EVENT_TYPE (event) == GST_EVENT_EOS && !in->offered) {
    /* The name: the property, a title tag, or the file upstream's. */
    std::string name;
    GST_OBJECT_LOCK (pad);
    name = in->file_name;
    GST_OBJECT_UNLOCK (pad);
    if (name.empty ())
      name = in->title;
    if (name.empty ()) {
      GstQuery *q = gst_query_new_uri ();
      g_autofree char *uri = nullptr;
      if (gst_pad_peer_query (pad, q))
        gst_query_parse_uri (q, &uri);
      gst_query_unref (q);
      g_autofree char *file = uri ? g_filename_from_uri (uri, nullptr,
          nullptr) : nullptr;
      g_autofree char *base = file ? g_path_get_basename (file) : nullptr;
      if (base)
        name = base;
    }
    if (name.empty ())
      name = "file";
    if (!in->file) {
      /* Nothing came: an empty file is still a file. */
      char *path = nullptr;
      int fd = g_file_open_tmp ("peerjs-file-XXXXXX", &path, nullptr);
      in->temp = path ? path : "";
      g_free (path);
      if (fd >= 0)
        close (fd);
    } else {
      fclose (in->file);
      in->file = nullptr;
    }
    std::string id = priv_of (parent)->session->offer_stream (in->temp, name);
    in->offered = !id.empty ();
    if (in->offered) {
      gst_element_post_message (GST_ELEMENT (parent),
          gst_message_new_element (parent, gst_structure_new (
                  peerjs::message::FILE_OFFERED,
                  "id", G_TYPE_STRING, id.c_str (),
                  "pad", G_TYPE_STRING, GST_PAD_NAME (pad),
                  "name", G_TYPE_STRING, name.c_str (),
                  "size", G_TYPE_UINT64, in->size, NULL)));
    }
  } else if (GST_EVENT_TYPE (event) == GST_EVENT_CAPS) {
    gst_event_unref (event);
    return TRUE;
  }
  gst_event_unref (event);
  return TRUE;
}

static gboolean
gst_peerjs_file_pad_query (GstPad * pad, GstObject * parent, GstQuery * query)
{
  /* Any bytes at all: what the template says is only for linking. */
  if (GST_QUERY_TYPE (query) == GST_QUERY_CAPS) {
    GstCaps *filter = nullptr;
    gst_query_parse_caps (query, &filter);
    g_autoptr (GstCaps) any = gst_caps_new_any ();
    gst_query_set_caps_result (query, filter ? filter : any);
    return TRUE;
  }
  if (GST_QUERY_TYPE (query) == GST_QUERY_ACCEPT_CAPS) {
    gst_query_set_accept_caps_result (query, TRUE);
    return TRUE;
  }
  return gst_pad_query_default (pad, parent, query);
}

static GstPad *
gst_peerjs_base_new_file_pad (GstElement * element, GstPadTemplate * templ,
    const gchar * name)
{
  g_autofree char *own = nullptr;
  if (!name) {
    /* The first free file_%u. */
    for (guint i = 0;; i++) {
      own = g_strdup_printf ("file_%u", i);
      g_autoptr (GstPad) taken = gst_element_get_static_pad (element, own);
      if (!taken)
        break;
      g_clear_pointer (&own, g_free);
    }
    name = own;
  }
  GstPad *pad = GST_PAD (g_object_new (GST_TYPE_PEERJS_FILE_PAD, "name", name,
          "direction", GST_PAD_SINK, "template", templ, NULL));
  gst_pad_set_chain_function (pad, gst_peerjs_file_pad_chain);
  gst_pad_set_event_function (pad, gst_peerjs_file_pad_event);
  gst_pad_set_query_function (pad, gst_peerjs_file_pad_query);
  if (GST_STATE (element) > GST_STATE_NULL)
    gst_pad_set_active (pad, TRUE);
  gst_element_add_pad (element, pad);
  return pad;
}

static GstPad *
gst_peerjs_base_request_new_pad (GstElement * element, GstPadTemplate * templ,
    const gchar * name, const GstCaps * caps)
{
  auto *priv = priv_of (element);
  if (g_str_equal (GST_PAD_TEMPLATE_NAME_TEMPLATE (templ), "file_%u"))
    return gst_peerjs_base_new_file_pad (element, templ, name);
  peerjs::Kind kind = g_str_equal (GST_PAD_TEMPLATE_NAME_TEMPLATE (templ),
      "audio") ? peerjs::Kind::Audio : peerjs::Kind::Video;
  if (priv->pads[(int) kind]) {
    GST_WARNING_OBJECT (element, "there is already a %s pad: one stream of "
        "each kind is published", peerjs::kind_name (kind));
    return nullptr;
  }
  peerjs::Outgoing::Settings settings;
  {
    std::lock_guard<std::mutex> guard (priv->lock);
    settings.raw_codec = peerjs::codec_by_name (kind == peerjs::Kind::Video
        ? priv->settings.video_codec : priv->settings.audio_codec);
    settings.video_bitrate = priv->settings.video_bitrate;
    /* With congestion control the encoder starts at start-bitrate. */
    peerjs::CcSettings cc = congestion_settings (priv->settings);
    if (cc.mode != peerjs::CongestionControl::Off) {
      settings.video_bitrate = cc.start;
      settings.layers = (int) priv->settings.video_layers;
    }
  }
  g_autoptr (GstPad) target = priv->session->add_outgoing (kind, settings);
  GstPad *pad = gst_ghost_pad_new_from_template (peerjs::kind_name (kind),
      target, templ);
  priv->pads[(int) kind] = pad;
  if (GST_STATE (element) > GST_STATE_NULL)
    gst_pad_set_active (pad, TRUE);
  gst_element_add_pad (element, pad);
  return pad;
}

static void
gst_peerjs_base_release_pad (GstElement * element, GstPad * pad)
{
  auto *priv = priv_of (element);
  if (!priv) {
    /* Disposing: the session and its streams are gone already. */
    gst_element_remove_pad (element, pad);
    return;
  }
  if (GST_IS_PEERJS_FILE_PAD (pad)) {
    gst_element_remove_pad (element, pad);
    return;
  }
  for (int k = 0; k < peerjs::KIND_COUNT; k++) {
    if (priv->pads[k] == pad) {
      priv->pads[k] = nullptr;
      gst_element_remove_pad (element, pad);
      priv->session->remove_outgoing ((peerjs::Kind) k);
    }
  }
}

static peerjs::Config
make_config (GstPeerJSBase * self)
{
  auto *priv = priv_of (self);
  std::lock_guard<std::mutex> guard (priv->lock);
  const Settings & s = priv->settings;
  peerjs::Config c;
  c.servers = split_list (s.server);
  c.tls_ca = s.tls_ca;
  c.auth_token = s.auth_token;
  c.threads = split_list (s.threads);
  c.constraints = s.constraints;
  c.receives = GST_PEERJS_BASE_GET_CLASS (self)->receives;
  c.stun_server = s.stun_server;
  c.turn_server = s.turn_server;
  c.turn_servers = s.turn_servers;
  c.ice_transport_policy = s.ice_transport_policy;
  c.ice_tcp = s.ice_tcp;
  c.ice_addresses = split_list (s.ice_addresses);
  c.latency_ms = s.latency;
  c.retransmission = s.do_retransmission;
  c.retransmission_wait_ms = s.retransmission_wait;
  c.fec = s.do_fec;
  c.cc = congestion_settings (s);
  c.stats_interval_ms = s.stats_interval;
  c.tags = split_list (s.tags);
  c.watches = split_list (s.watch);
  c.reply_timeout_ms = s.reply_timeout;
  c.download_dir = s.download_dir;
  c.display_name = s.display_name;
  c.pipeline = GST_OBJECT_NAME (gst_element_get_factory (GST_ELEMENT (self)));
  c.records = s.mix;
  c.members = split_list (s.members);
  c.accept = s.accept;
  /* A thread the token does not grant leaves `thread` too, so that the
   * next start does not ask for it either. */
  c.thread_refused = [self] (const std::string & thread) {
    auto *p = priv_of (self);
    {
      std::lock_guard<std::mutex> lock (p->lock);
      std::vector<std::string> threads = split_list (p->settings.threads);
      auto it = std::find (threads.begin (), threads.end (), thread);
      if (it == threads.end ())
        return;
      threads.erase (it);
      p->settings.threads = join_list (threads);
    }
    g_object_notify (G_OBJECT (self), "thread");
  };
  return c;
}

static GstStateChangeReturn
gst_peerjs_base_change_state (GstElement * element, GstStateChange transition)
{
  auto *self = GST_PEERJS_BASE (element);
  auto *priv = priv_of (self);
  gboolean receives = GST_PEERJS_BASE_GET_CLASS (self)->receives;

  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!priv->session->start (make_config (self)))
        return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      /* Before the children: their deactivation waits on a data channel
       * push that sctpenc holds up while a member reads no more. */
      priv->session->stop_transfers ();
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      priv->session->stop ();
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:{
      priv->session->reset_ended ();
      std::lock_guard<std::mutex> guard (priv->eos_lock);
      priv->eos_sent = priv->streams_ended = priv->eos_posted = false;
      break;
    }
    default:
      break;
  }

  GstStateChangeReturn ret =
      GST_ELEMENT_CLASS (gst_peerjs_base_parent_class)->change_state (element,
      transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_NULL_TO_READY)
      priv->session->stop ();
    return ret;
  }
  /* Members come and go: a receiving element is live and has nothing to
   * preroll. */
  if (receives && (transition == GST_STATE_CHANGE_READY_TO_PAUSED
          || transition == GST_STATE_CHANGE_PLAYING_TO_PAUSED))
    ret = GST_STATE_CHANGE_NO_PREROLL;
  return ret;
}

static gboolean
gst_peerjs_base_send_event (GstElement * element, GstEvent * event)
{
  /* Members never end by themselves: an EOS sent to a receiving element
   * (gst-launch-1.0 -e on Ctrl-C) ends every member pad at once. */
  if (GST_EVENT_TYPE (event) == GST_EVENT_EOS
      && GST_PEERJS_BASE_GET_CLASS (element)->receives) {
    /* Not on the caller's thread: a sink still prerolling holds the EOS
     * until the pipeline plays, and the caller (gst-launch-1.0's main loop)
     * may be what would make it play. */
    gst_object_ref (element);
    std::thread ([element, event] {
      gst_element_foreach_src_pad (element, [] (GstElement *, GstPad * pad,
              gpointer eos) -> gboolean {
            gst_pad_push_event (pad, gst_event_ref (GST_EVENT (eos)));
            return TRUE;
          }, event);
      {
        auto *priv = priv_of (element);
        std::lock_guard<std::mutex> guard (priv->eos_lock);
        priv->eos_sent = true;
      }
      maybe_post_eos (element, gst_event_get_seqnum (event));
      gst_event_unref (event);
      gst_object_unref (element);
    }).detach ();
    return TRUE;
  }
  return GST_ELEMENT_CLASS (gst_peerjs_base_parent_class)->send_event (element,
      event);
}

/* The member an element inside us serves: webrtc-ID, dec-KIND-ID,
 * pay-KIND-ID. */
static std::string
member_of (GstObject * obj)
{
  for (GstObject *o = obj; o; o = GST_OBJECT_PARENT (o)) {
    const char *name = GST_OBJECT_NAME (o);
    if (!name)
      continue;
    if (g_str_has_prefix (name, "webrtc-"))
      return name + strlen ("webrtc-");
    if (g_str_has_prefix (name, "dec-") || g_str_has_prefix (name, "pay-")) {
      const char *dash = strchr (name + 4, '-');
      if (dash)
        return dash + 1;
    }
  }
  return {};
}

static void
gst_peerjs_base_handle_message (GstBin * bin, GstMessage * message)
{
  /* One member's broken connection is not the pipeline's end: it becomes
   * a warning and that member is dropped. */
  if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_ERROR) {
    std::string member = member_of (GST_MESSAGE_SRC (message));
    if (!member.empty ()) {
      g_autoptr (GError) error = nullptr;
      g_autofree char *debug = nullptr;
      gst_message_parse_error (message, &error, &debug);
      priv_of (bin)->session->invoke ([bin, member,
              text = std::string (error->message)] {
            priv_of (bin)->session->peer_failed (member, text);
          });
      gst_message_unref (message);
      return;
    }
  }
  /* The members' webrtcbins never end, so the bin's own EOS would never
   * come: the published streams' EOS is the element's. */
  if (GST_MESSAGE_TYPE (message) == GST_MESSAGE_EOS) {
    bool all = false;
    if (priv_of (bin)->session->stream_ended (GST_MESSAGE_SRC (message),
            &all)) {
      guint32 seqnum = gst_message_get_seqnum (message);
      gst_message_unref (message);
      if (all) {
        auto *priv = priv_of (bin);
        {
          std::lock_guard<std::mutex> guard (priv->eos_lock);
          priv->streams_ended = true;
        }
        maybe_post_eos (GST_ELEMENT (bin), seqnum);
      }
      return;
    }
  }
  GST_BIN_CLASS (gst_peerjs_base_parent_class)->handle_message (bin, message);
}

/* Before GstBin's dispose: the session's streams take their elements out
 * of the bin themselves. */
static void
gst_peerjs_base_dispose (GObject * object)
{
  auto *p = static_cast<GstPeerJSBasePrivate *> (
      gst_peerjs_base_get_instance_private (GST_PEERJS_BASE (object)));
  delete p->cpp;
  p->cpp = nullptr;
  G_OBJECT_CLASS (gst_peerjs_base_parent_class)->dispose (object);
}

/* GstPeerJSBase::send-message:
 * @thread: a thread this member has joined
 * @text: the message: a JSON object or array is sent as such, anything
 * else as a string
 *
 * Chat: sends @text to every other member of @thread, as the demo room's
 * message box does. Returns FALSE when the element is not started or has
 * not joined @thread. */
static gboolean
gst_peerjs_base_send_message (GstPeerJSBase * self, const gchar * thread,
    const gchar * text)
{
  return priv_of (self)->session->send_message (thread ? thread : "",
      text ? text : "");
}

static guint
gst_peerjs_base_send_event_signal (GstPeerJSBase * self, const gchar * type,
    const gchar * to, const gchar * thread, const gchar * data,
    gboolean reply, GstPromise * promise)
{
  return priv_of (self)->session->send_event (type ? type : "",
      split_list (to ? to : ""), thread ? thread : "", data ? data : "null",
      reply, promise);
}

static gboolean
gst_peerjs_base_reply_event (GstPeerJSBase * self, const gchar * to,
    const gchar * callback_id, const gchar * data)
{
  return priv_of (self)->session->reply_event (to ? to : "",
      callback_id ? callback_id : "", data ? data : "null");
}

static gboolean
gst_peerjs_base_join_thread (GstPeerJSBase * self, const gchar * thread)
{
  auto *priv = priv_of (self);
  std::string t = thread ? thread : "";
  if (!priv->session->join_thread (t))
    return FALSE;
  std::lock_guard<std::mutex> guard (priv->lock);
  priv->settings.threads = merged (priv->settings.threads, { t });
  return TRUE;
}

static gboolean
gst_peerjs_base_leave_thread (GstPeerJSBase * self, const gchar * thread)
{
  auto *priv = priv_of (self);
  std::string t = thread ? thread : "";
  std::lock_guard<std::mutex> guard (priv->lock);
  std::vector<std::string> threads = split_list (priv->settings.threads);
  auto it = std::find (threads.begin (), threads.end (), t);
  if (it == threads.end ())
    return FALSE;
  threads.erase (it);
  priv->settings.threads = join_list (threads);
  priv->session->leave_thread (t);
  return TRUE;
}

static gboolean
gst_peerjs_base_set_constraints (GstPeerJSBase * self,
    const gchar * constraints)
{
  auto *priv = priv_of (self);
  std::string text = constraints ? constraints : "";
  if (!priv->session->set_constraints (text))
    return FALSE;
  std::lock_guard<std::mutex> guard (priv->lock);
  priv->settings.constraints = text;
  return TRUE;
}

static gboolean
gst_peerjs_base_tag (GstPeerJSBase * self, const gchar * tags)
{
  auto *priv = priv_of (self);
  std::vector<std::string> items = split_list (tags ? tags : "");
  if (items.empty ())
    return FALSE;
  {
    std::lock_guard<std::mutex> guard (priv->lock);
    priv->settings.tags = merged (priv->settings.tags, items);
  }
  return priv->session->add_tags (items);
}

static guint
gst_peerjs_base_watch (GstPeerJSBase * self, const gchar * tags)
{
  auto *priv = priv_of (self);
  std::vector<std::string> items = split_list (tags ? tags : "");
  {
    std::lock_guard<std::mutex> guard (priv->lock);
    priv->settings.watch = merged (priv->settings.watch, items);
  }
  return priv->session->add_watches (items);
}

static gchar *
gst_peerjs_base_offer_file (GstPeerJSBase * self, const gchar * path,
    const gchar * to, const gchar * thread)
{
  std::string id = priv_of (self)->session->offer_file (path ? path : "",
      split_list (to ? to : ""), thread ? thread : "");
  return id.empty () ? nullptr : g_strdup (id.c_str ());
}

static gboolean
gst_peerjs_base_request_file (GstPeerJSBase * self, const gchar * member,
    const gchar * id)
{
  return priv_of (self)->session->request_file (member ? member : "",
      id ? id : "");
}

static gboolean
gst_peerjs_base_cancel_file (GstPeerJSBase * self, const gchar * id)
{
  return priv_of (self)->session->cancel_file (id ? id : "");
}

static void
gst_peerjs_base_class_init (GstPeerJSBaseClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBinClass *bin_class = GST_BIN_CLASS (klass);

  gobject_class->set_property = gst_peerjs_base_set_property;
  gobject_class->get_property = gst_peerjs_base_get_property;
  gobject_class->dispose = gst_peerjs_base_dispose;
  element_class->change_state =
      GST_DEBUG_FUNCPTR (gst_peerjs_base_change_state);
  element_class->send_event = GST_DEBUG_FUNCPTR (gst_peerjs_base_send_event);
  bin_class->handle_message =
      GST_DEBUG_FUNCPTR (gst_peerjs_base_handle_message);

  const GParamFlags rw = (GParamFlags) (G_PARAM_READWRITE
      | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);

  g_object_class_install_property (gobject_class, PROP_SERVER,
      g_param_spec_string ("server", "Server",
          "WebSocket URL of the peerjs-signalling server (ws:// or wss://), "
          "or several separated by commas (the nodes of one cluster): the "
          "first is used until its connection is lost or cannot be made, "
          "then the next, round the list, resuming the session there",
          DEFAULT_SERVER, rw));
  g_object_class_install_property (gobject_class, PROP_THREAD,
      g_param_spec_string ("thread", "Thread",
          "The thread (room) to join, or several as a comma-separated list",
          nullptr, rw));
  g_object_class_install_property (gobject_class, PROP_CONSTRAINTS,
      g_param_spec_string ("constraints", "Constraints",
          "The media this member shares in its threads, as a JSON object "
          "such as {\"video\":true,\"audio\":false}. Unset: share the kinds "
          "the sink pads carry, and receive both kinds on a receiving element. "
          "Changes take effect at once", nullptr,
          (GParamFlags) (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
              | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property (gobject_class, PROP_SESSION_ID,
      g_param_spec_string ("session-id", "Session id",
          "This member's id, given by the server (NULL until connected)",
          nullptr, (GParamFlags) (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property (gobject_class, PROP_STUN_SERVER,
      g_param_spec_string ("stun-server", "STUN server",
          "STUN server as stun://host:port. Unset: the first stun: URL the "
          "signalling server hands out (--ice-server), else none, so "
          "nothing waits on a public name", nullptr, rw));
  g_object_class_install_property (gobject_class, PROP_TURN_SERVER,
      g_param_spec_string ("turn-server", "TURN server",
          "TURN server as turn(s)://user:password@host:port (user and "
          "password URL-encoded). With it or turn-servers set, the TURN "
          "servers the signalling server hands out are not used", nullptr,
          rw));
  g_object_class_install_property (gobject_class, PROP_TURN_SERVERS,
      gst_param_spec_array ("turn-servers", "TURN servers",
          "More TURN servers, each as turn-server, as an array: "
          "turn-servers='<\"turn://u:p@a:3478\",\"turns://u:p@b:5349\">'. "
          "Unset (and turn-server unset): the signalling server's, with "
          "the short-lived credentials of its greeting",
          g_param_spec_string ("turn-server", "TURN server",
              "turn(s)://user:password@host:port", nullptr, rw), rw));
  g_object_class_install_property (gobject_class, PROP_ICE_TRANSPORT_POLICY,
      g_param_spec_enum ("ice-transport-policy", "ICE transport policy",
          "all: every candidate; relay: only through the TURN servers (the "
          "member's address is never revealed; a member for whom no relay "
          "candidate is gathered fails with peerjs-peer-failed)",
          GST_TYPE_WEBRTC_ICE_TRANSPORT_POLICY,
          GST_WEBRTC_ICE_TRANSPORT_POLICY_ALL, rw));
  g_object_class_install_property (gobject_class, PROP_ICE_TCP,
      g_param_spec_boolean ("ice-tcp", "ICE-TCP",
          "Also gather ICE-TCP candidates (direct TCP between members). "
          "Off: direct paths are UDP only, and a network that blocks UDP "
          "is crossed through a TURN server over TCP or TLS "
          "(turn://...?transport=tcp, turns://), which works either way. "
          "On, a member pair may settle on TCP while UDP checks are lost, "
          "and loss then comes as delay", DEFAULT_ICE_TCP, rw));
  g_object_class_install_property (gobject_class, PROP_ICE_ADDRESSES,
      g_param_spec_string ("ice-addresses", "ICE addresses",
          "Comma-separated local IP addresses ICE may use (only these). "
          "Unset: every non-loopback address, or 127.0.0.1 on a host that "
          "has no other", nullptr, rw));
  g_object_class_install_property (gobject_class, PROP_TLS_CA,
      g_param_spec_string ("tls-ca", "TLS CA file",
          "PEM file of the certificate authorities trusted for wss:// "
          "(unset: the system's)", nullptr, rw));
  /* Write-only and without notify: a secret is not read back or printed. */
  g_object_class_install_property (gobject_class, PROP_AUTH_TOKEN,
      g_param_spec_string ("auth-token", "Auth token",
          "Token (a JWT) for a signalling server that requires one, sent as "
          "?token= on every connection and reconnection; it is never "
          "printed in logs. Setting it while the element runs renews it: "
          "the server takes it at once, so the session outlives the old "
          "token's expiry, and later reconnections present it",
          nullptr, (GParamFlags) (G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS
              | G_PARAM_EXPLICIT_NOTIFY | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property (gobject_class, PROP_LATENCY,
      g_param_spec_uint ("latency", "Latency",
          "How long received media is held back to smooth out jitter, in "
          "milliseconds: the jitterbuffer latency the pipeline is told. "
          "Missing video packets are waited for longer: retransmission-wait",
          0, 10000, DEFAULT_LATENCY, rw));
  g_object_class_install_property (gobject_class, PROP_VIDEO_CODEC,
      g_param_spec_enum ("video-codec", "Video codec",
          "What raw video is encoded to, by the installed encoder of the "
          "highest rank (docs/elements.md lists them); encoded input is "
          "sent as it is", GST_TYPE_PEERJS_VIDEO_CODEC, 0, rw));
  g_object_class_install_property (gobject_class, PROP_AUDIO_CODEC,
      g_param_spec_string ("audio-codec", "Audio codec",
          "What raw audio is encoded to: OPUS", DEFAULT_AUDIO_CODEC, rw));
  g_object_class_install_property (gobject_class, PROP_VIDEO_BITRATE,
      g_param_spec_uint ("video-bitrate", "Video bitrate",
          "Target bitrate of encoded video, in bits per second",
          10000, 100000000, DEFAULT_VIDEO_BITRATE, rw));
  g_object_class_install_property (gobject_class, PROP_STATS_INTERVAL,
      g_param_spec_uint ("stats-interval", "Stats interval",
          "Post a peerjs-stats message per member this often, in "
          "milliseconds (0: never)", 0, G_MAXUINT, DEFAULT_STATS_INTERVAL,
          rw));
  g_object_class_install_property (gobject_class, PROP_DO_RETRANSMISSION,
      g_param_spec_boolean ("do-retransmission", "Do retransmission",
          "Retransmission (RFC 4588 RTX) both ways: video packets a member "
          "reports lost (RTCP NACK) are sent again, and packets lost on "
          "the way in are asked for again while the jitterbuffer latency "
          "allows; a member that reports loss of our video is asked to hold "
          "each frame long enough for a retransmission (the playout-delay "
          "RTP header extension, where its SDP takes it: Chromium does). "
          "Off: loss is only repaired by key frames (PLI)",
          DEFAULT_DO_RETRANSMISSION, rw));
  g_object_class_install_property (gobject_class, PROP_RETRANSMISSION_WAIT,
      g_param_spec_uint ("retransmission-wait", "Retransmission wait",
          "How long a missing received video packet is waited for at "
          "least (asked for again) before its frame is given up and a key "
          "frame asked for, in milliseconds; longer, up to 1000, while the "
          "member's packets come late or its retransmissions take long "
          "(how late its packets come, and twice the round trip of its "
          "retransmissions and 50 ms). The picture is still held back only by "
          "latency: the frames behind a retransmission that came after "
          "latency come out late, once, as a browser shows them. At or "
          "below latency (or with do-retransmission off): latency",
          0, 10000, DEFAULT_RETRANSMISSION_WAIT, rw));
  g_object_class_install_property (gobject_class, PROP_DO_FEC,
      g_param_spec_boolean ("do-fec", "Do FEC",
          "Forward error correction, sized for the loss members report: "
          "Opus in-band FEC (useinbandfec=1 in the SDP; our Opus encoder "
          "adds it while a member reports loss, and in-band FEC is "
          "decoded) and, for video, ULPFEC in RED (red and ulpfec in the "
          "SDP; FEC packets are sent to a member while it reports loss, "
          "and lost packets are recovered from the member's). Off: "
          "neither is offered, sent or decoded",
          DEFAULT_DO_FEC, rw));
  g_object_class_install_property (gobject_class, PROP_CONGESTION_CONTROL,
      g_param_spec_enum ("congestion-control", "Congestion control",
          "gcc: raw video's encoders follow a bandwidth estimate per member "
          "(from transport-wide congestion control feedback, receiver "
          "reports and REMB): each member is sent the layer its estimate "
          "allows (video-layers), and each layer's encoder is set to 85 % of "
          "the lowest estimate of the members it is sent to, less the "
          "audio, within min-bitrate and max-bitrate. off: one encoder at "
          "video-bitrate. Encoded input is never adapted",
          GST_TYPE_PEERJS_CONGESTION_CONTROL,
          (gint) DEFAULT_CONGESTION_CONTROL, rw));
  g_object_class_install_property (gobject_class, PROP_MIN_BITRATE,
      g_param_spec_uint ("min-bitrate", "Minimum bitrate",
          "Congestion control never sets the video encoder below this, in "
          "bits per second", 10000, 100000000, DEFAULT_MIN_BITRATE, rw));
  g_object_class_install_property (gobject_class, PROP_MAX_BITRATE,
      g_param_spec_uint ("max-bitrate", "Maximum bitrate",
          "Congestion control never sets the video encoder above this, in "
          "bits per second (0: video-bitrate)", 0, 100000000,
          DEFAULT_MAX_BITRATE, rw));
  g_object_class_install_property (gobject_class, PROP_START_BITRATE,
      g_param_spec_uint ("start-bitrate", "Start bitrate",
          "With congestion control, the video encoder's bitrate until the "
          "members report, in bits per second (0: video-bitrate)", 0,
          100000000,
          DEFAULT_START_BITRATE, rw));
  g_object_class_install_property (gobject_class, PROP_VIDEO_LAYERS,
      g_param_spec_uint ("video-layers", "Video layers",
          "With congestion-control=gcc, raw video is encoded once per "
          "layer: the picture as it comes, then half and a quarter of its "
          "width and height (a layer is made while at least 80x60), and "
          "each member is sent the best layer its bandwidth estimate "
          "allows, changing at key frames; each layer's encoder follows the "
          "members it is sent to. 1: one encoder, following the lowest "
          "member. Encoded input has one layer", 1, 3, DEFAULT_VIDEO_LAYERS,
          rw));

  g_object_class_install_property (gobject_class, PROP_TAGS,
      g_param_spec_string ("tags", "Tags",
          "Presence: tags this member carries, comma-separated. While the "
          "element runs, tags can be added, not taken away", nullptr,
          (GParamFlags) (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
              | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property (gobject_class, PROP_WATCH,
      g_param_spec_string ("watch", "Watch",
          "Presence: tags to watch, comma-separated. Every member carrying "
          "one, now or later, gets a presence:watch from this member. While "
          "the element runs, watches can be added, not taken away", nullptr,
          (GParamFlags) (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
              | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property (gobject_class, PROP_DISPLAY_NAME,
      g_param_spec_string ("display-name", "Display name",
          "The name other members show for this one (the demo room's "
          "tiles), sent as display_name with its thread:connect and "
          "thread:change; a name in the auth token is shown instead. At "
          "most 128 bytes, no control characters", nullptr, rw));
  g_object_class_install_property (gobject_class, PROP_REPLY_TIMEOUT,
      g_param_spec_uint ("reply-timeout", "Reply timeout",
          "How long send-event waits for a reply, in milliseconds, before it "
          "ends with the error \"timeout\" (0: for ever)", 0, G_MAXUINT,
          DEFAULT_REPLY_TIMEOUT, rw));

  g_object_class_install_property (gobject_class, PROP_DOWNLOAD_DIR,
      g_param_spec_string ("download-dir", "Download directory",
          "Where received files are saved: under a temporary name while they "
          "arrive, renamed to their own name once complete and verified "
          "(SHA-256). Unset: not saved (a receiving element still gives them "
          "out of its file pads)", nullptr, rw));
  g_object_class_install_property (gobject_class, PROP_ACCEPT_FILES,
      g_param_spec_enum ("accept-files", "Accept files",
          "Which files offered by members are received: none, those the "
          "application asks for with request-file (signal), or all",
          GST_TYPE_PEERJS_ACCEPT_FILES, (gint) peerjs::Accept::Signal, rw));

  const GSignalFlags action = (GSignalFlags) (G_SIGNAL_RUN_LAST
      | G_SIGNAL_ACTION);
  g_signal_new_class_handler ("offer-file", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_offer_file), nullptr, nullptr,
      nullptr, G_TYPE_STRING, 3, G_TYPE_STRING, G_TYPE_STRING,
      G_TYPE_STRING);
  g_signal_new_class_handler ("request-file", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_request_file), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 2, G_TYPE_STRING, G_TYPE_STRING);
  g_signal_new_class_handler ("cancel-file", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_cancel_file), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  g_signal_new_class_handler ("send-message", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_send_message), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 2, G_TYPE_STRING, G_TYPE_STRING);
  /* GstPeerJSBase::send-event:
   * @type: the event's type, the application's own (such as invite:connect)
   * @to: session ids or tags, comma-separated, or NULL
   * @thread: a thread this member has joined, or NULL
   * @data: the event's data: a JSON object or array, or else a string
   * @reply: whether a reply is wanted
   * @promise: (nullable): replied with the peerjs-event-reply structure
   *
   * Returns: the event's id, which its reply carries; 0 when it could not
   * be sent (a warning says why). */
  g_signal_new_class_handler ("send-event", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_send_event_signal), nullptr,
      nullptr, nullptr, G_TYPE_UINT, 6, G_TYPE_STRING, G_TYPE_STRING,
      G_TYPE_STRING, G_TYPE_STRING, G_TYPE_BOOLEAN, GST_TYPE_PROMISE);
  g_signal_new_class_handler ("reply-event", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_reply_event), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 3, G_TYPE_STRING, G_TYPE_STRING,
      G_TYPE_STRING);
  g_signal_new_class_handler ("join-thread", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_join_thread), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  g_signal_new_class_handler ("leave-thread", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_leave_thread), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  g_signal_new_class_handler ("set-constraints", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_set_constraints), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  g_signal_new_class_handler ("tag", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_tag), nullptr, nullptr,
      nullptr, G_TYPE_BOOLEAN, 1, G_TYPE_STRING);
  g_signal_new_class_handler ("watch", G_TYPE_FROM_CLASS (klass),
      action, G_CALLBACK (gst_peerjs_base_watch), nullptr, nullptr,
      nullptr, G_TYPE_UINT, 1, G_TYPE_STRING);

  gst_type_mark_as_plugin_api (GST_TYPE_PEERJS_BASE, (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEERJS_CONGESTION_CONTROL,
      (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEERJS_ACCEPT_FILES,
      (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEERJS_VIDEO_CODEC,
      (GstPluginAPIFlags) 0);
}

void
gst_peerjs_base_class_setup (GstPeerJSBaseClass * klass, gboolean sends,
    gboolean receives)
{
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  klass->sends = sends;
  klass->receives = receives;
  if (sends) {
    /* With the pad's type, so that gst-inspect-1.0 shows its file-name. */
    gst_element_class_add_pad_template (element_class,
        gst_pad_template_new_from_static_pad_template_with_gtype
        (&file_sink_template, GST_TYPE_PEERJS_FILE_PAD));
    gst_element_class_add_static_pad_template (element_class,
        &video_sink_template);
    gst_element_class_add_static_pad_template (element_class,
        &audio_sink_template);
    element_class->request_new_pad =
        GST_DEBUG_FUNCPTR (gst_peerjs_base_request_new_pad);
    element_class->release_pad =
        GST_DEBUG_FUNCPTR (gst_peerjs_base_release_pad);
  }
  if (receives) {
    GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
    /* GObject does not pass these on to subclasses. */
    gobject_class->set_property = gst_peerjs_base_set_property;
    gobject_class->get_property = gst_peerjs_base_get_property;
    g_object_class_install_property (gobject_class, PROP_MEMBERS,
        g_param_spec_string ("members", "Members",
            "Receive only these members, comma-separated: each entry is a "
            "session id, a name (the auth token's, else the member's "
            "display-name) or a tag the member announces with its "
            "thread:connect (a pipeline's tags). Unset: every member",
            nullptr, (GParamFlags) (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
                | GST_PARAM_MUTABLE_READY)));
    gst_element_class_add_static_pad_template (element_class,
        &video_src_template);
    gst_element_class_add_static_pad_template (element_class,
        &audio_src_template);
    gst_element_class_add_static_pad_template (element_class,
        &file_src_template);
  }
  if (receives && !sends) {
    /* Mixing is for the receiver alone: peerjsbin's "video" and "audio"
     * are its sink pads. */
    gst_element_class_add_static_pad_template (element_class,
        &video_mix_template);
    gst_element_class_add_static_pad_template (element_class,
        &audio_mix_template);
    GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
    /* GObject does not pass these on to subclasses. */
    gobject_class->set_property = gst_peerjs_base_set_property;
    gobject_class->get_property = gst_peerjs_base_get_property;
    const GParamFlags flags = (GParamFlags) (G_PARAM_READWRITE
        | G_PARAM_STATIC_STRINGS);
    g_object_class_install_property (gobject_class, PROP_MIX,
        g_param_spec_boolean ("mix", "Mix",
            "Mix every member into one video pad \"video\" (a grid that "
            "follows the member count, black while the room is empty) and "
            "one audio pad \"audio\" (silence while empty), instead of a "
            "pad per member; the two pads exist for the element's whole life. "
            "Set it in the NULL state", FALSE, flags));
    g_object_class_install_property (gobject_class, PROP_MIX_WIDTH,
        g_param_spec_int ("mix-width", "Mix width",
            "Width of the mixed video, in pixels (30 frames per second)",
            16, 7680, DEFAULT_MIX_WIDTH, flags));
    g_object_class_install_property (gobject_class, PROP_MIX_HEIGHT,
        g_param_spec_int ("mix-height", "Mix height",
            "Height of the mixed video, in pixels", 16, 4320,
            DEFAULT_MIX_HEIGHT, flags));
  }
}

static void
gst_peerjs_base_init (GstPeerJSBase * self)
{
  auto *p = static_cast<GstPeerJSBasePrivate *> (
      gst_peerjs_base_get_instance_private (self));
  p->cpp = new GstPeerJSBasePrivateCpp ();
  p->cpp->session = std::make_unique<peerjs::Session> (GST_ELEMENT (self));
  /* Member pads come and go; what the element is decides what the
   * pipeline waits for. */
  GstPeerJSBaseClass *klass = GST_PEERJS_BASE_GET_CLASS (self);
  if (klass->receives)
    GST_OBJECT_FLAG_SET (self, GST_ELEMENT_FLAG_SOURCE);
  if (klass->sends)
    GST_OBJECT_FLAG_SET (self, GST_ELEMENT_FLAG_SINK);
}
