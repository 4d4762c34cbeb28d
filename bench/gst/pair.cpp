/* A pair of pipelines for one run (harness.h): a peerjssink and a
 * peerjssrc through the server, or a bare pair of webrtcbins negotiated in
 * this process with no server; built, watched for errors and stopped here
 * for the first-frame, glass-to-glass and files parts. With Stamps (the
 * glass-to-glass part), a counter painted into every picture sent and read
 * back from every picture received. */
#include "harness.h"

namespace peerjs::bench {

namespace {

bool
code_frame (GstVideoFrame * f, GstVideoInfo * info, GstBuffer * buf,
    GstCaps * caps, GstMapFlags flags)
{
  if (!caps || !gst_video_info_from_caps (info, caps)
      || GST_VIDEO_INFO_FORMAT (info) != GST_VIDEO_FORMAT_I420
      || GST_VIDEO_INFO_WIDTH (info) < CODE_BITS * CODE_BLOCK
      || GST_VIDEO_INFO_HEIGHT (info) < 2 * CODE_BLOCK)
    return false;
  return gst_video_frame_map (f, info, buf, flags);
}

bool
paint_code (GstBuffer * buf, GstCaps * caps, unsigned code)
{
  GstVideoInfo info;
  GstVideoFrame f;
  if (!code_frame (&f, &info, buf, caps, GST_MAP_WRITE))
    return false;
  for (int row = 0; row < 2; row++)
    for (int i = 0; i < CODE_BITS; i++) {
      bool white = ((code >> i) & 1) ^ row;
      for (int c = 0; c < 3; c++) {
        /* I420: chroma at half the size, grey in the blocks. */
        int n = c ? CODE_BLOCK / 2 : CODE_BLOCK;
        guint8 *data = GST_VIDEO_FRAME_COMP_DATA (&f, c);
        int stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, c);
        for (int y = row * n; y < (row + 1) * n; y++)
          memset (data + y * stride + i * n, c ? 128 : white ? 235 : 16, n);
      }
    }
  gst_video_frame_unmap (&f);
  return true;
}

/* The counter in a decoded picture, or -1. Each block's luma is averaged
 * over its middle half. */
int
read_code (GstBuffer * buf, GstCaps * caps)
{
  GstVideoInfo info;
  GstVideoFrame f;
  if (!code_frame (&f, &info, buf, caps, GST_MAP_READ))
    return -1;
  const guint8 *data = (const guint8 *) GST_VIDEO_FRAME_COMP_DATA (&f, 0);
  int stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, 0);
  unsigned v[2] = { 0, 0 };
  for (int row = 0; row < 2; row++)
    for (int i = 0; i < CODE_BITS; i++) {
      unsigned sum = 0, n = 0;
      for (int y = row * CODE_BLOCK + CODE_BLOCK / 4;
          y < row * CODE_BLOCK + 3 * CODE_BLOCK / 4; y++)
        for (int x = i * CODE_BLOCK + CODE_BLOCK / 4;
            x < i * CODE_BLOCK + 3 * CODE_BLOCK / 4; x++, n++)
          sum += data[y * stride + x];
      if (sum / n > 128)
        v[row] |= 1u << i;
    }
  gst_video_frame_unmap (&f);
  if ((v[0] ^ v[1]) != (1u << CODE_BITS) - 1)
    return -1;
  return (int) v[0];
}

/* Sender: paint the next counter, note when. */
GstPadProbeReturn
stamp_frame (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *st = static_cast<Stamps *> (data);
  GstClockTime now = st->running_now ();
  GstBuffer *buf = gst_buffer_make_writable (GST_PAD_PROBE_INFO_BUFFER (info));
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  unsigned code = st->next++ & ((1u << CODE_BITS) - 1);
  bool ok = paint_code (buf, caps, code);
  std::lock_guard<std::mutex> guard (st->lock);
  if (ok)
    st->captured[code] = now;
  else
    st->unpainted++;
  if (GST_BUFFER_PTS_IS_VALID (buf) && st->source_lag_ms.size () < 100000)
    st->source_lag_ms.push_back (GST_CLOCK_DIFF (GST_BUFFER_PTS (buf), now)
        / 1e6);
  return GST_PAD_PROBE_OK;
}

/* Receiver: a decoded picture reaches the sink (`shown` false) or the sink
 * renders it, after waiting for its time on the clock (`shown` true). */
void
stamp_arrival (Stamps * st, GstBuffer * buf, GstPad * pad, bool shown)
{
  GstClockTime now = st->running_now ();
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  int code = read_code (buf, caps);
  std::lock_guard<std::mutex> guard (st->lock);
  if (!GST_CLOCK_TIME_IS_VALID (st->collect_from) || now < st->collect_from
      || st->shown_ms.size () >= st->want)
    return;
  if (code < 0 || !GST_CLOCK_TIME_IS_VALID (st->captured[code])) {
    if (!shown)
      st->unreadable++;
    return;
  }
  double ms = GST_CLOCK_DIFF (st->captured[code], now) / 1e6;
  if (shown) {
    st->shown_ms.push_back (ms);
  } else {
    st->decoded_ms.push_back (ms);
    st->decoded_codes.push_back (code);
  }
}

GstPadProbeReturn
first_buffer (GstPad *, GstPadProbeInfo *, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  gint64 zero = 0;
  ff->first.compare_exchange_strong (zero, now_us ());
  return GST_PAD_PROBE_REMOVE;
}

/* A fakesink in the receiving pipeline fed by `pad`, stamping the first
 * buffer that reaches it. `chain` (may be empty) goes in between. In a
 * glass-to-glass run the sink takes I420 and syncs on the clock, as a
 * display would, and reads the counter of every picture twice: when it
 * arrives (decoded) and when it is rendered (shown). */
void
sink_for (FirstFrame * ff, GstPad * pad, std::vector<const char *> chain)
{
  std::vector<GstElement *> elements;
  for (const char *f : chain)
    elements.push_back (gst_element_factory_make (f, nullptr));
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  if (ff->stamps) {
    GstElement *filter = gst_element_factory_make ("capsfilter", nullptr);
    g_autoptr (GstCaps) i420 = gst_caps_from_string (
        "video/x-raw,format=I420");
    g_object_set (filter, "caps", i420, NULL);
    elements.push_back (filter);
    g_object_set (sink, "sync", TRUE, "signal-handoffs", TRUE, NULL);
    g_signal_connect (sink, "handoff", G_CALLBACK (+[] (GstElement *,
                GstBuffer * buf, GstPad * pad, gpointer data) {
          stamp_arrival (static_cast<Stamps *> (data), buf, pad, true);
        }), ff->stamps);
    g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
    gst_pad_add_probe (sinkpad, GST_PAD_PROBE_TYPE_BUFFER, +[] (GstPad * pad,
            GstPadProbeInfo * info, gpointer data) -> GstPadProbeReturn {
          stamp_arrival (static_cast<Stamps *> (data),
              GST_PAD_PROBE_INFO_BUFFER (info), pad, false);
          return GST_PAD_PROBE_OK;
        }, ff->stamps, nullptr);
  }
  elements.push_back (sink);
  for (GstElement *e : elements)
    gst_bin_add (GST_BIN (ff->recv), e);
  for (size_t i = 1; i < elements.size (); i++)
    gst_element_link (elements[i - 1], elements[i]);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), first_buffer, ff, nullptr);
  for (auto it = elements.rbegin (); it != elements.rend (); ++it)
    gst_element_sync_state_with_parent (*it);
  g_autoptr (GstPad) first = gst_element_get_static_pad (elements.front (),
      "sink");
  if (gst_pad_link (pad, first) != GST_PAD_LINK_OK) {
    ff->why = "cannot link the received pad";
    ff->failed = true;
  }
}

void
add_loopback (GstElement * webrtc)
{
  g_autoptr (GObject) ice = nullptr;
  g_object_get (webrtc, "ice-agent", &ice, NULL);
  gboolean ok = FALSE;
  g_signal_emit_by_name (ice, "add-local-ip-address", "127.0.0.1", &ok);
  if (!ok)
    note ("ice-agent refused 127.0.0.1");
}

/* The offer or answer (`what`) a create-* promise replied with, the
 * promise released; null, with the run marked failed, when there is none. */
GstWebRTCSessionDescription *
take_description (GstPromise * p, const char *what, FirstFrame * ff)
{
  const GstStructure *reply = gst_promise_get_reply (p);
  GstWebRTCSessionDescription *desc = nullptr;
  if (reply)
    gst_structure_get (reply, what, GST_TYPE_WEBRTC_SESSION_DESCRIPTION,
        &desc, NULL);
  gst_promise_unref (p);
  if (!desc) {
    ff->why = std::string ("no ") + what;
    ff->failed = true;
  }
  return desc;
}

/* Offer/answer of the bare pair, passed directly. */
void
bare_answer_created (GstPromise * p, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  GstWebRTCSessionDescription *answer = take_description (p, "answer", ff);
  if (!answer)
    return;
  g_signal_emit_by_name (ff->b, "set-local-description", answer, nullptr);
  /* As the elements do once a member's answer is in: ask the encoder for a
   * key frame for the new receiver (a pair with media only). */
  GstPromise *set = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *ff = static_cast<FirstFrame *> (data);
        /* Not when webrtcbin interrupts it at teardown. */
        if (ff->pay && gst_promise_wait (p) == GST_PROMISE_RESULT_REPLIED) {
          g_autoptr (GstPad) src = gst_element_get_static_pad (ff->pay, "src");
          gst_pad_send_event (src,
              gst_video_event_new_upstream_force_key_unit (GST_CLOCK_TIME_NONE,
                  TRUE, 0));
        }
        gst_promise_unref (p);
      }, ff, nullptr);
  g_signal_emit_by_name (ff->a, "set-remote-description", answer, set);
  gst_webrtc_session_description_free (answer);
}

void
bare_offer_created (GstPromise * p, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  GstWebRTCSessionDescription *offer = take_description (p, "offer", ff);
  if (!offer)
    return;
  g_signal_emit_by_name (ff->a, "set-local-description", offer, nullptr);
  g_signal_emit_by_name (ff->b, "set-remote-description", offer, nullptr);
  GstPromise *answer = gst_promise_new_with_change_func (bare_answer_created,
      ff, nullptr);
  g_signal_emit_by_name (ff->b, "create-answer", nullptr, answer);
  gst_webrtc_session_description_free (offer);
}

}  // namespace

GstElement *
parse (const std::string & desc)
{
  GError *error = nullptr;
  GstElement *e = gst_parse_launch (desc.c_str (), &error);
  if (error) {
    note ("cannot build '%s': %s", desc.c_str (), error->message);
    g_error_free (error);
    if (e)
      gst_object_unref (e);
    return nullptr;
  }
  if (GST_IS_PIPELINE (e))
    return e;
  /* A single element: put it in a pipeline of its own. */
  GstElement *pipeline = gst_pipeline_new (nullptr);
  gst_bin_add (GST_BIN (pipeline), e);
  return pipeline;
}

const char *VP8ENC = "vp8enc deadline=1 cpu-used=8 lag-in-frames=0 "
    "keyframe-max-dist=60 target-bitrate=1000000 end-usage=cbr "
    "error-resilient=default";

std::string
raw_caps (int w, int h, bool pin_format)
{
  return std::string ("video/x-raw,") + (pin_format ? "format=I420," : "")
      + "width=" + std::to_string (w) + ",height=" + std::to_string (h)
      + ",framerate=30/1";
}

namespace {

/* The sending side's source: 320x240 for the first frame; for
 * glass-to-glass 640x480 moving bars (the whole picture changes every
 * frame, as from a camera) and the element that paints the counter. */
std::string
video_source (FirstFrame * ff)
{
  if (!ff->stamps)
    return "videotestsrc is-live=true ! " + raw_caps (320, 240);
  return "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
      + raw_caps (opt.g2g_width, opt.g2g_height)
      + " ! identity name=stamp silent=true";
}

bool
attach_stamps (FirstFrame * ff)
{
  if (!ff->stamps)
    return true;
  g_autoptr (GstElement) id = gst_bin_get_by_name (GST_BIN (ff->send),
      "stamp");
  if (!id)
    return false;
  g_autoptr (GstPad) src = gst_element_get_static_pad (id, "src");
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, stamp_frame, ff->stamps,
      nullptr);
  return true;
}

}  // namespace

bool
build_ours (FirstFrame * ff, const std::string & url)
{
  std::string thread = random_name (ff->stamps ? "g2g" : "ff");
  std::string lat = std::to_string (opt.latency);
  ff->send = parse (video_source (ff) + " ! peerjssink server=" + url
      + " thread=" + thread + " latency=" + lat);
  ff->recv = parse ("peerjssrc name=r server=" + url + " thread=" + thread
      + " latency=" + lat);
  if (!ff->send || !ff->recv || !attach_stamps (ff))
    return false;
  g_autoptr (GstElement) r = gst_bin_get_by_name (GST_BIN (ff->recv), "r");
  g_signal_connect (r, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        if (g_str_has_prefix (GST_PAD_NAME (pad), "video_"))
          sink_for (static_cast<FirstFrame *> (data), pad, {});
      }), ff);
  return true;
}

/* Negotiation of a bare pair (ff->a offers to ff->b) in this process, no
 * server: both agents on 127.0.0.1, descriptions and ICE candidates handed
 * over directly. */
void
connect_bare (FirstFrame * ff)
{
  add_loopback (ff->a);
  add_loopback (ff->b);
  g_signal_connect (ff->a, "on-negotiation-needed", G_CALLBACK (+[] (
              GstElement * a, gpointer data) {
        GstPromise *p = gst_promise_new_with_change_func (bare_offer_created,
            data, nullptr);
        g_signal_emit_by_name (a, "create-offer", nullptr, p);
      }), ff);
  g_signal_connect (ff->a, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * cand, gpointer data) {
        g_signal_emit_by_name (static_cast<FirstFrame *> (data)->b,
            "add-ice-candidate", mline, cand);
      }), ff);
  g_signal_connect (ff->b, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * cand, gpointer data) {
        g_signal_emit_by_name (static_cast<FirstFrame *> (data)->a,
            "add-ice-candidate", mline, cand);
      }), ff);
}

bool
build_bare (FirstFrame * ff)
{
  std::string lat = std::to_string (opt.latency);
  ff->send = parse (video_source (ff) + " ! " + VP8ENC
      + " ! rtpvp8pay name=pay pt=96 mtu=1200 "
      "picture-id-mode=15-bit ! application/x-rtp,media=video,"
      "encoding-name=VP8,payload=96,clock-rate=90000 ! webrtcbin name=a "
      "bundle-policy=max-bundle latency=" + lat);
  ff->recv = parse ("webrtcbin name=b bundle-policy=max-bundle latency="
      + lat);
  if (!ff->send || !ff->recv || !attach_stamps (ff))
    return false;
  ff->a = gst_bin_get_by_name (GST_BIN (ff->send), "a");
  ff->pay = gst_bin_get_by_name (GST_BIN (ff->send), "pay");
  ff->b = gst_bin_get_by_name (GST_BIN (ff->recv), "b");
  GstWebRTCRTPTransceiver *trans = nullptr;
  g_signal_emit_by_name (ff->a, "get-transceiver", 0, &trans);
  if (trans) {
    g_object_set (trans, "direction",
        GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
    gst_object_unref (trans);
  }
  connect_bare (ff);
  g_signal_connect (ff->b, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        if (GST_PAD_DIRECTION (pad) == GST_PAD_SRC)
          sink_for (static_cast<FirstFrame *> (data), pad,
              { "rtpvp8depay", "vp8dec" });
      }), ff);
  return true;
}

/* Errors on either bus fail the run; warnings are logged. */
void
check_bus (FirstFrame * ff, GstElement * pipeline)
{
  g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
  /* Glass-to-glass runs distribute latency as gst-launch-1.0 does
   * (--g2g-latency-messages); the first-frame runs never did. */
  const std::string & mode = opt.g2g_latency_messages;
  bool recalc = ff->stamps && (mode == "both"
      || (mode == "receiver" && pipeline == ff->recv)
      || (mode == "sender" && pipeline == ff->send));
  GstMessageType types = (GstMessageType) (GST_MESSAGE_ERROR
      | GST_MESSAGE_WARNING | (recalc ? GST_MESSAGE_LATENCY : 0));
  while (GstMessage *m = gst_bus_pop_filtered (bus, types)) {
    g_autoptr (GError) e = nullptr;
    g_autofree char *dbg = nullptr;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_LATENCY) {
      gst_bin_recalculate_latency (GST_BIN (pipeline));
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      gst_message_parse_error (m, &e, &dbg);
      ff->why = std::string (GST_OBJECT_NAME (m->src)) + ": " + e->message;
      ff->failed = true;
    } else {
      gst_message_parse_warning (m, &e, &dbg);
      note ("warning from %s: %s", GST_OBJECT_NAME (m->src), e->message);
    }
    gst_message_unref (m);
  }
}

/* Stops and frees a pair of pipelines. */
void
stop_pair (FirstFrame * ff, bool ours)
{
  /* The sender first. The peerjs receiver is stopped only once it has
   * seen the sender leave: stopping it while its session is still closing
   * that member disposes the member's webrtcbin and decoder in PAUSED
   * (GStreamer-CRITICALs; see docs/performance.md). */
  if (ff->send)
    gst_element_set_state (ff->send, GST_STATE_NULL);
  if (ours && ff->recv) {
    g_autoptr (GstBus) bus = gst_element_get_bus (ff->recv);
    gint64 end = now_us () + 3 * G_USEC_PER_SEC;
    bool gone = false;
    while (!gone && now_us () < end) {
      GstMessage *m = gst_bus_timed_pop_filtered (bus, 50 * GST_MSECOND,
          GST_MESSAGE_ELEMENT);
      if (!m)
        continue;
      gone = gst_message_has_name (m, "peerjs-media-disconnect")
          || gst_message_has_name (m, "peerjs-thread-disconnect");
      gst_message_unref (m);
    }
    g_usleep (200000);
  }
  if (ff->recv)
    gst_element_set_state (ff->recv, GST_STATE_NULL);
  for (GstElement *e : { ff->a, ff->b, ff->pay, ff->send, ff->recv })
    if (e)
      gst_object_unref (e);
  /* Not freed: a promise of a stopped webrtcbin may still call back with
   * it. A few bytes per run. */
}

}  // namespace peerjs::bench
