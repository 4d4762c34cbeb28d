#include "congestion.h"

#include "encoders.h"
#include "layers.h"
#include "session.h"

#include <gst/rtp/rtp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

/* How often the encoder's bitrate is reconsidered, and by how much it must
 * move to be changed (a new target costs the encoder nothing, but churn
 * helps no one). */
constexpr guint ADAPT_INTERVAL_MS = 500;
constexpr double ADAPT_STEP = 0.05;
/* The encoder gets this share of the estimate: the rest is room for what
 * goes on top of its average (retransmissions, key frames, packet
 * headers), which a slow link would otherwise drop. So the estimate may
 * go up to max-bitrate / ENCODER_SHARE. */
constexpr double ENCODER_SHARE = 0.85;
/* What published audio is taken to need when its encoder is not ours. */
constexpr guint64 PASSTHROUGH_AUDIO_BPS = 64000;
/* Probing a layer up (in reconsiderations, ADAPT_INTERVAL_MS each): after
 * 4 s below the top without congestion, for 3 s. */
constexpr int PROBE_WAIT_TICKS = 8;
constexpr int PROBE_TICKS = 6;
constexpr int START_HOLD_TICKS = 10;
/* A member's layer is tried above only while it gets less than this
 * share of what its layer's encoder is told and the audio, and padding
 * probes are sent only while it gets less than this share of its
 * estimate (Chromium probes while its sending is application-limited). */
constexpr double APP_LIMITED_SHARE = 0.7;


/* Retransmissions (Congestion::allow_retransmission): a packet is sent
 * again at most once per round trip, within [RTX_REPEAT_MIN_MS,
 * RTX_REPEAT_MS]. A pipeline asks again every 40 ms and gives a packet up
 * after retransmission-wait (200 ms): when the first retransmission was
 * lost, repeats refused for 100 ms made the second arrive past that, and
 * the frame cost a key frame (4 to 8 in 30 s at 10 % loss). All of them
 * take at most the member's estimate, with a bucket of RTX_BUCKET_MS of
 * it; a request is counted as a packet of RTX_PACKET_BYTES (our
 * payloaders' MTU). */
constexpr gint64 RTX_REPEAT_MS = 100;
constexpr gint64 RTX_REPEAT_MIN_MS = 10;
constexpr gint64 RTX_BUCKET_MS = 250;
constexpr double RTX_PACKET_BYTES = 1200;
/* An RTX packet is its original and the original sequence number. */
constexpr guint RTX_OVERHEAD_BYTES = 2;
/* Pacing (Congestion::pace), as Chromium's pacer: video packets leave at
 * 2.5 times the member's estimate, with a burst of 10 ms of that; a
 * packet is held at most PACING_MAX_HOLD_MS (a longer wait is the
 * estimate falling under what is queued: the member's leaky queue ahead
 * drops then), in steps that a flushing pad ends. */
constexpr double PACING_FACTOR = 2.5;
constexpr double PACING_BURST_MS = 10;
constexpr guint64 PACING_MAX_HOLD_MS = 200;
constexpr guint64 PACING_STEP_US = 5000;
/* Padding probes (Congestion::probe): PROBE_CLUSTER_MS at the target
 * (PROBE_FACTOR times the estimate; 1.5 times cost the same to a member
 * behind 600 kbit/s, and made the way back from a slow link slower: 4.5
 * to 9.5 s), at least PROBE_PACKETS packets sent again (Chromium's
 * clusters: 15 ms, 5 packets with the media; longer here, as a receiving
 * pipeline's arrival times are coarser), from the LATEST_PACKETS last
 * video packets, each several times where they are too few for the
 * cluster (at most PROBE_MAX_PACKETS); one at most every PROBE_EVERY_MS
 * (at twice what the member receives where lower, yet PROBE_ABOVE times
 * the estimate: probe_target ()) unless the last one calls for more
 * (Estimator::probe_calls_for_more ()), and only when no queue grew for
 * PROBE_CALM_MS. */
constexpr double PROBE_CLUSTER_MS = 60;
constexpr int PROBE_PACKETS = 4;
constexpr std::size_t LATEST_PACKETS = 32;
constexpr std::size_t PROBE_MAX_PACKETS = 64;
constexpr gint64 PROBE_EVERY_MS = 4000;
constexpr guint PROBE_CALM_MS = 2000;
constexpr double PROBE_FACTOR = 2.0;
constexpr double PROBE_ABOVE = 1.25;

guint64
now_ns ()
{
  return (guint64) g_get_monotonic_time () * 1000;
}

}  // namespace

int
extension_id (const GstSDPMedia * media, const char *uri)
{
  for (guint i = 0;; i++) {
    const char *v = gst_sdp_media_get_attribute_val_n (media, "extmap", i);
    if (!v)
      return 0;
    int id = 0;
    char mapped[256] = "";
    /* "ID[/direction] URI [attributes]" */
    if (sscanf (v, "%d%*[^ ] %255s", &id, mapped) == 2
        || sscanf (v, "%d %255s", &id, mapped) == 2)
      if (g_str_equal (mapped, uri))
        return id;
  }
}

int
extension_id (const GstCaps * caps, const char *uri)
{
  for (guint i = 0; caps && i < gst_caps_get_size (caps); i++) {
    const GstStructure *s = gst_caps_get_structure (caps, i);
    for (int f = 0; f < gst_structure_n_fields (s); f++) {
      const char *name = gst_structure_nth_field_name (s, f);
      if (!g_str_has_prefix (name, "extmap-"))
        continue;
      const char *mapped = gst_structure_get_string (s, name);
      if (mapped && g_str_equal (mapped, uri))
        return atoi (name + strlen ("extmap-"));
    }
  }
  return 0;
}

void
add_extension (GstCaps * caps, int id, const char *uri)
{
  if (!id)
    return;
  std::string field = "extmap-" + std::to_string (id);
  for (guint i = 0; i < gst_caps_get_size (caps); i++)
    gst_structure_set (gst_caps_get_structure (caps, i), field.c_str (),
        G_TYPE_STRING, uri, NULL);
}

void
add_twcc (GstCaps * caps, int id)
{
  if (!id)
    return;
  add_extension (caps, id, TWCC_URI);
  for (guint i = 0; i < gst_caps_get_size (caps); i++)
    gst_structure_set (gst_caps_get_structure (caps, i),
        "rtcp-fb-transport-cc", G_TYPE_BOOLEAN, TRUE, NULL);
}

bool
write_twcc (GstElement * payloader_bin, int id)
{
  if (!id)
    return false;
  GstElement *pay = nullptr;
  GstIterator *it = gst_bin_iterate_elements (GST_BIN (payloader_bin));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    GstElement *e = GST_ELEMENT (g_value_get_object (&v));
    if (!pay && GST_IS_RTP_BASE_PAYLOAD (e))
      pay = GST_ELEMENT (gst_object_ref (e));
    g_value_reset (&v);
  }
  g_value_unset (&v);
  gst_iterator_free (it);
  if (!pay)
    return false;
  GstRTPHeaderExtension *ext =
      gst_rtp_header_extension_create_from_uri (TWCC_URI);
  if (ext) {
    gst_rtp_header_extension_set_id (ext, id);
    g_signal_emit_by_name (pay, "add-extension", ext);
    gst_object_unref (ext);
  } else {
    GST_WARNING ("no RTP header extension for %s (rtphdrexttwcc)", TWCC_URI);
  }
  gst_object_unref (pay);
  return ext != nullptr;
}

/* ------------------------------------------------------------------ */

Congestion::Congestion (const CcSettings & settings)
  : paces_ (settings.mode == CongestionControl::Gcc),
    estimator_ (settings.start / ENCODER_SHARE, settings.min,
      settings.max / ENCODER_SHARE)
{
  g_weak_ref_init (&rtxsend_, nullptr);
}

Congestion::~Congestion ()
{
  g_weak_ref_clear (&rtxsend_);
}

guint64
Congestion::pace (gsize bytes)
{
  std::lock_guard<std::mutex> guard (lock_);
  if (!reported_)
    return 0;
  double rate = PACING_FACTOR * estimator_.estimate (now_ns ());
  if (rate <= 0)
    return 0;
  gint64 now = g_get_monotonic_time ();
  double burst = rate * PACING_BURST_MS / 1000;
  pace_bits_ = pace_filled_ ? MIN (burst, pace_bits_ + rate
      * (now - pace_filled_) / 1e6) : burst;
  pace_filled_ = now;
  pace_bits_ -= bytes * 8.0;
  if (pace_bits_ >= 0)
    return 0;
  /* What the bucket owes: the packet leaves once it is paid. */
  return (guint64) (-pace_bits_ / rate * GST_SECOND);
}

/* The bytes of the buffer or buffer list a data probe sees. */
static gsize
probe_bytes (GstPadProbeInfo * info)
{
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST)
    return gst_buffer_list_calculate_size (GST_PAD_PROBE_INFO_BUFFER_LIST
        (info));
  return gst_buffer_get_size (GST_PAD_PROBE_INFO_BUFFER (info));
}

GstPadProbeReturn
Congestion::on_packets (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto & self = *static_cast<std::shared_ptr<Congestion> *> (data);
  guint64 hold = MIN (self->pace (probe_bytes (info)),
      PACING_MAX_HOLD_MS * GST_MSECOND);
  /* The member's own streaming thread (its queue's): only its packets
   * wait. */
  gint64 until = g_get_monotonic_time () + (gint64) (hold / 1000);
  for (gint64 now = g_get_monotonic_time (); now < until
      && !GST_PAD_IS_FLUSHING (pad); now = g_get_monotonic_time ())
    g_usleep (MIN ((guint64) (until - now), PACING_STEP_US));
  return GST_PAD_PROBE_OK;
}

guint64
Congestion::estimate ()
{
  std::lock_guard<std::mutex> guard (lock_);
  return reported_ ? estimator_.estimate (now_ns ()) : 0;
}

bool
Congestion::congested ()
{
  std::lock_guard<std::mutex> guard (lock_);
  return estimator_.usage () == Estimator::Usage::Over
      || estimator_.loss_congests (now_ns ());
}

guint64
Congestion::received_rate ()
{
  std::lock_guard<std::mutex> guard (lock_);
  return estimator_.received_rate ();
}

bool
Congestion::overused_within (guint ms)
{
  std::lock_guard<std::mutex> guard (lock_);
  return overused_lately (ms);
}

bool
Congestion::overused_lately (guint ms)
{
  double last = estimator_.last_overuse ();
  return last >= 0 && now_ns () / 1e6 - last < ms;
}

void
Congestion::watch_payloader (const std::shared_ptr<Congestion> & self,
    GstElement * payloader_bin)
{
  g_autoptr (GstPad) src = gst_element_get_static_pad (payloader_bin, "src");
  auto free_self = [] (gpointer data) {
    delete static_cast<std::shared_ptr<Congestion> *> (data);
  };
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM, on_event,
      new std::shared_ptr<Congestion> (self), free_self);
  if (self->paces_)
    gst_pad_add_probe (src, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST), on_packets,
        new std::shared_ptr<Congestion> (self), free_self);
}

GstPadProbeReturn
Congestion::on_event (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
  if (GST_EVENT_TYPE (event) != GST_EVENT_CUSTOM_UPSTREAM)
    return GST_PAD_PROBE_OK;
  const GstStructure *s = gst_event_get_structure (event);
  if (s && gst_structure_has_name (s, "RTPTWCCPackets")) {
    auto & self = *static_cast<std::shared_ptr<Congestion> *> (data);
    /* The next probe of a chain goes at once, not at the next
     * reconsideration: it verifies what the last one found before the
     * encoders are told of it. */
    if (self->on_twcc (s) && self->chain_due ())
      probe (self, self->probe_target ());
  }
  return GST_PAD_PROBE_OK;
}

bool
Congestion::on_twcc (const GstStructure * s)
{
  /* rtpsession 1.22 hands them as a GValueArray. */
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  const GValue *packets = gst_structure_get_value (s, "packets");
  if (!packets || !G_VALUE_HOLDS (packets, g_value_array_get_type ()))
    return false;
  auto *array = static_cast<GValueArray *> (g_value_get_boxed (packets));
  std::vector<Estimator::Packet> report;
  for (guint i = 0; array && i < array->n_values; i++) {
    const GValue *v = g_value_array_get_nth (array, i);
    if (!GST_VALUE_HOLDS_STRUCTURE (v))
      continue;
    const GstStructure *p = gst_value_get_structure (v);
    guint64 sent = GST_CLOCK_TIME_NONE, received = GST_CLOCK_TIME_NONE;
    guint size = 0;
    gboolean lost = FALSE;
    gst_structure_get (p, "local-ts", G_TYPE_UINT64, &sent,
        "remote-ts", G_TYPE_UINT64, &received, "size", G_TYPE_UINT, &size,
        "lost", G_TYPE_BOOLEAN, &lost, NULL);
    /* A packet of ours rtpsession no longer knows: no send time. */
    if (!GST_CLOCK_TIME_IS_VALID (sent))
      continue;
    Estimator::Packet packet;
    packet.sent_ns = sent;
    packet.size = size;
    packet.lost = lost || !GST_CLOCK_TIME_IS_VALID (received);
    packet.received_ns = packet.lost ? 0 : received;
    report.push_back (packet);
  }
  G_GNUC_END_IGNORE_DEPRECATIONS
  if (report.empty ())
    return false;
  std::lock_guard<std::mutex> guard (lock_);
  bool probing = estimator_.probing ();
  estimator_.feedback (report, now_ns ());
  if (probing && !estimator_.probing ())
    GST_DEBUG ("padding probe at %.0f bit/s: %.0f arrived, estimate %"
        G_GUINT64_FORMAT, estimator_.probe_target (),
        estimator_.probe_result (), estimator_.estimate (now_ns ()));
  reported_ = true;
  reports_++;
  GST_LOG ("feedback on %zu packets: delay-based %.0f, loss-based %.0f, "
      "received %" G_GUINT64_FORMAT ", trend %.2f (threshold %.2f), usage %d",
      report.size (), estimator_.delay_rate (), estimator_.loss_rate (),
      estimator_.received_rate (), estimator_.trend (),
      estimator_.threshold (), (int) estimator_.usage ());
  return probing && !estimator_.probing ();
}

void
Congestion::watch_session (const std::shared_ptr<Congestion> & self,
    GObject * session)
{
  g_signal_connect_data (session, "on-receiving-rtcp",
      G_CALLBACK (+[] (GObject *, GstBuffer * buffer, gpointer data) {
        (*static_cast<std::shared_ptr<Congestion> *> (data))->on_rtcp (buffer);
      }), new std::shared_ptr<Congestion> (self), [] (gpointer data,
          GClosure *) {
        delete static_cast<std::shared_ptr<Congestion> *> (data);
      }, (GConnectFlags) 0);
}

void
Congestion::watch_sessions (const std::shared_ptr<Congestion> & self,
    GstElement * webrtc)
{
  for_each_rtp_session (webrtc, [&self] (guint, GObject * session) {
        bool fresh;
        {
          std::lock_guard<std::mutex> guard (self->lock_);
          fresh = self->sessions_.insert (session).second;
        }
        if (fresh)
          watch_session (self, session);
      });
}

void
Congestion::bound_retransmissions (const std::shared_ptr<Congestion> & self,
    GstElement * rtxsend)
{
  if (g_object_get_data (G_OBJECT (rtxsend), "peerjs-rtx-bounded"))
    return;
  g_object_set_data (G_OBJECT (rtxsend), "peerjs-rtx-bounded",
      GINT_TO_POINTER (1));
  g_weak_ref_set (&self->rtxsend_, rtxsend);
  g_autoptr (GstPad) src = gst_element_get_static_pad (rtxsend, "src");
  g_autoptr (GstPad) sink = gst_element_get_static_pad (rtxsend, "sink");
  /* What rtxsend gives out beyond what it is given: its
   * retransmissions, whatever their size. */
  auto count = [&self] (GstPad * pad, bool out) {
    gst_pad_add_probe (pad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST), out ? on_rtx_out : on_rtx_in,
        new std::shared_ptr<Congestion> (self), [] (gpointer data) {
          delete static_cast<std::shared_ptr<Congestion> *> (data);
        });
  };
  count (sink, false);
  count (src, true);
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM,
      [] (GstPad *, GstPadProbeInfo * info, gpointer data) {
        GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
        const GstStructure *s = gst_event_get_structure (event);
        guint ssrc = 0, seqnum = 0;
        if (GST_EVENT_TYPE (event) != GST_EVENT_CUSTOM_UPSTREAM || !s
            || !gst_structure_has_name (s, "GstRTPRetransmissionRequest")
            || !gst_structure_get_uint (s, "ssrc", &ssrc)
            || !gst_structure_get_uint (s, "seqnum", &seqnum)
            || gst_structure_has_field (s, "peerjs-padding"))
          return GST_PAD_PROBE_OK;
        auto & self = *static_cast<std::shared_ptr<Congestion> *> (data);
        return self->allow_retransmission (ssrc, seqnum)
            ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
      }, new std::shared_ptr<Congestion> (self), [] (gpointer data) {
        delete static_cast<std::shared_ptr<Congestion> *> (data);
      });
}

GstPadProbeReturn
Congestion::on_rtx_in (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto & self = *static_cast<std::shared_ptr<Congestion> *> (data);
  self->rtx_in_bytes_ += probe_bytes (info);
  /* The member's latest video packets, for padding probes. */
  guint video = self->video_ssrc_;
  if (!video)
    return GST_PAD_PROBE_OK;
  auto note = [&self, video] (GstBuffer * buffer) {
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    if (!gst_rtp_buffer_map (buffer, GST_MAP_READ, &rtp))
      return;
    guint ssrc = gst_rtp_buffer_get_ssrc (&rtp);
    guint seqnum = gst_rtp_buffer_get_seq (&rtp);
    gst_rtp_buffer_unmap (&rtp);
    if (ssrc != video)
      return;
    std::lock_guard<std::mutex> guard (self->lock_);
    self->latest_.push_back ({ ssrc, seqnum,
            (guint) gst_buffer_get_size (buffer) });
    if (self->latest_.size () > LATEST_PACKETS)
      self->latest_.pop_front ();
  };
  for_each_probed_buffer (info, note);
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn
Congestion::on_rtx_out (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  (*static_cast<std::shared_ptr<Congestion> *> (data))->rtx_out_bytes_ +=
      probe_bytes (info);
  return GST_PAD_PROBE_OK;
}

bool
Congestion::allow_retransmission (guint ssrc, guint seqnum)
{
  std::lock_guard<std::mutex> guard (lock_);
  gint64 now = g_get_monotonic_time ();
  guint64 key = ((guint64) ssrc << 16) | (seqnum & 0xffff);
  gint64 rtt = rtt_us_.load ();
  gint64 repeat = rtt ? CLAMP (rtt, RTX_REPEAT_MIN_MS * 1000,
      RTX_REPEAT_MS * 1000) : RTX_REPEAT_MS * 1000;
  auto it = resent_.find (key);
  if (it != resent_.end () && now - it->second < repeat) {
    rtx_refused_++;
    return false;
  }
  if (reported_) {
    double rate = estimator_.estimate (now * 1000);
    double cap = rate * RTX_BUCKET_MS / 1000;
    rtx_bits_ = MIN (cap, rtx_bits_ + rate * (now - rtx_filled_) / 1e6);
    rtx_filled_ = now;
    if (rtx_bits_ < RTX_PACKET_BYTES * 8) {
      rtx_refused_++;
      return false;
    }
    rtx_bits_ -= RTX_PACKET_BYTES * 8;
  }
  if (resent_.size () > 4096) {
    for (auto i = resent_.begin (); i != resent_.end ();)
      i = now - i->second > RTX_REPEAT_MS * 1000 ? resent_.erase (i) : ++i;
  }
  resent_[key] = now;
  return true;
}

guint64
Congestion::retransmission_rate ()
{
  std::lock_guard<std::mutex> guard (lock_);
  gint64 now = g_get_monotonic_time ();
  gint64 extra = (gint64) (rtx_out_bytes_.load () - rtx_in_bytes_.load ()
      - padding_bytes_.load ());
  if (rtx_rate_at_ && now > rtx_rate_at_) {
    double rate = MAX (extra - rtx_extra_, 0) * 8 * 1e6 / (now - rtx_rate_at_);
    rtx_rate_ = (rtx_rate_ + rate) / 2;
  }
  rtx_extra_ = extra;
  rtx_rate_at_ = now;
  return (guint64) rtx_rate_;
}

bool
Congestion::may_probe ()
{
  /* At the largest estimate there is nothing to look for. */
  return !sending_probe_ && !estimator_.probing () && reported_
      && estimator_.estimate (now_ns ()) < estimator_.max ();
}

bool
Congestion::probe_due ()
{
  std::lock_guard<std::mutex> guard (lock_);
  if (!may_probe ())
    return false;
  if (!probed_at_ || chains ())
    return true;
  return g_get_monotonic_time () - probed_at_ >= PROBE_EVERY_MS * 1000;
}

bool
Congestion::chains ()
{
  return estimator_.probe_calls_for_more ();
}

bool
Congestion::chain_due ()
{
  std::lock_guard<std::mutex> guard (lock_);
  return may_probe () && chains () && !overused_lately (PROBE_CALM_MS);
}

bool
Congestion::probe_found_limit ()
{
  std::lock_guard<std::mutex> guard (lock_);
  return probed_at_ && !sending_probe_ && !estimator_.probing ()
      && estimator_.probe_result () >= 0 && !chains ();
}

guint64
Congestion::probe_target ()
{
  std::lock_guard<std::mutex> guard (lock_);
  double estimate = estimator_.estimate (now_ns ());
  double target = PROBE_FACTOR * estimate;
  /* Neither the first nor one a result called for: from what the member
   * receives, which is proven, where it is lower, yet above the estimate
   * (PROBE_ABOVE times it at least), or it could not raise it. While a
   * member gets less than its estimate allows, the estimate grows up to
   * 1.5 times that without proof (800 kbit/s behind 600 kbit/s), and a
   * probe at twice it overflowed the link's queue. */
  if (probed_at_ && !chains () && estimator_.received_rate ())
    target = MIN (target, MAX (PROBE_FACTOR * estimator_.received_rate (),
            PROBE_ABOVE * estimate));
  return (guint64) MIN (target, (double) estimator_.max ());
}

bool
Congestion::probe (const std::shared_ptr<Congestion> & self, guint64 target)
{
  g_autoptr (GstElement) rtxsend =
      GST_ELEMENT (g_weak_ref_get (&self->rtxsend_));
  if (!rtxsend || !target)
    return false;
  {
    std::lock_guard<std::mutex> guard (self->lock_);
    if (self->latest_.size () < (std::size_t) PROBE_PACKETS
        || self->estimator_.probing ())
      return false;
  }
  bool idle = false;
  if (!self->sending_probe_.compare_exchange_strong (idle, true))
    return false;
  GThread *thread = g_thread_try_new ("peerjs-probe", [] (gpointer data)
      -> gpointer {
        auto *args = static_cast<std::pair<std::shared_ptr<Congestion>,
            guint64> *> (data);
        send_probe (args->first, args->second);
        delete args;
        return nullptr;
      }, new std::pair<std::shared_ptr<Congestion>, guint64> (self, target),
      nullptr);
  if (!thread) {
    self->sending_probe_ = false;
    return false;
  }
  g_thread_unref (thread);
  return true;
}

/* The probe's own thread: the padding requests, paced. */
void
Congestion::send_probe (std::shared_ptr<Congestion> self, guint64 target)
{
  g_autoptr (GstElement) rtxsend =
      GST_ELEMENT (g_weak_ref_get (&self->rtxsend_));
  g_autoptr (GstPad) src = rtxsend
      ? gst_element_get_static_pad (rtxsend, "src") : nullptr;
  std::vector<Sent> padding;
  {
    std::lock_guard<std::mutex> guard (self->lock_);
    /* The padding alone goes at the target: the media, a frame every
     * 33 to 66 ms, may send nothing meanwhile. */
    double bits = target * PROBE_CLUSTER_MS / 1000;
    /* The latest packets, newest first, and again from the newest where
     * they are too few for the cluster's bytes: a small layer's packets
     * (80x60: 100 to 200 bytes) made probes of a kilobyte, whose arrival
     * times said 260 kbit/s of a clean link. The receiver drops the
     * copies like the rest. */
    std::size_t n = self->latest_.size ();
    for (std::size_t i = 0; n && padding.size () < PROBE_MAX_PACKETS
        && (bits > 0 || (int) padding.size () < PROBE_PACKETS); i++) {
      const Sent & sent = self->latest_[n - 1 - i % n];
      padding.push_back (sent);
      bits -= sent.bytes * 8.0;
    }
    self->probed_at_ = g_get_monotonic_time ();
    double bytes = 0;
    for (auto & p : padding)
      bytes += p.bytes;
    double span_ms = bytes * 8 * 1000 / target;
    guint64 start = now_ns ();
    /* Its last packet leaves some time after the last request. */
    self->estimator_.probe_sent (start, start + (guint64) ((span_ms + 5)
            * GST_MSECOND), (double) target, start);
  }
  self->probes_++;
  GST_DEBUG ("padding probe at %" G_GUINT64_FORMAT " bit/s: %zu packets",
      target, padding.size ());
  gint64 next = g_get_monotonic_time ();
  for (auto & p : padding) {
    gint64 now = g_get_monotonic_time ();
    if (next > now)
      g_usleep (next - now);
    if (!src)
      break;
    GstEvent *event = gst_event_new_custom (GST_EVENT_CUSTOM_UPSTREAM,
        gst_structure_new ("GstRTPRetransmissionRequest",
            "seqnum", G_TYPE_UINT, p.seqnum, "ssrc", G_TYPE_UINT, p.ssrc,
            "peerjs-padding", G_TYPE_BOOLEAN, TRUE, NULL));
    if (gst_pad_send_event (src, event)) {
      self->padding_bytes_ += p.bytes + RTX_OVERHEAD_BYTES;
      self->padding_packets_++;
    }
    next += (gint64) (p.bytes * 8 * 1e6 / target);
  }
  self->sending_probe_ = false;
}

void
Congestion::forget_capacity ()
{
  std::lock_guard<std::mutex> guard (lock_);
  estimator_.forget_capacity ();
}

GstStructure *
Congestion::add_stats (GstStructure * stats)
{
  guint64 rtx_sent = 0;
  if (gst_structure_get_uint64 (stats, "rtx-packets-sent", &rtx_sent))
    gst_structure_set (stats, "rtx-packets-sent", G_TYPE_UINT64,
        rtx_sent - MIN (rtx_sent, padding_packets_.load ()), NULL);
  gst_structure_set (stats,
      "estimated-bitrate", G_TYPE_UINT64, estimate (),
      "target-bitrate", G_TYPE_UINT64, target.load (),
      "bitrate-adapts", G_TYPE_BOOLEAN, (gboolean) adapts.load (),
      "transport-cc-reports", G_TYPE_UINT64, reports_.load (),
      "rtx-requests-refused", G_TYPE_UINT64, rtx_refused_.load (),
      "layer", G_TYPE_INT, layer.load (),
      "layers", G_TYPE_INT, layers.load (),
      "layer-width", G_TYPE_INT, layer_width.load (),
      "layer-height", G_TYPE_INT, layer_height.load (),
      "layer-changes", G_TYPE_UINT64, layer_changes.load (),
      "probes", G_TYPE_UINT64, probes_.load (), NULL);
  return stats;
}

namespace {

/* The round trip a report block gives (RFC 3550 6.4.1), us: now less the
 * sender report it answers (LSR) and the time the member held it (DLSR),
 * in the middle 32 bits of NTP time, as rtpsession's sender reports
 * carry the real time (its default ntp-time-source). 0 when the member
 * had no sender report of ours yet, or the result makes no sense. */
gint64
round_trip_us (guint32 lsr, guint32 dlsr)
{
  if (!lsr)
    return 0;
  gint64 real = g_get_real_time ();
  guint64 seconds = (guint64) (real / G_USEC_PER_SEC) + 2208988800ULL;
  guint64 fraction = (guint64) (real % G_USEC_PER_SEC) * 65536
      / G_USEC_PER_SEC;
  guint32 now = (guint32) (((seconds & 0xffff) << 16) | fraction);
  guint32 units = now - lsr - dlsr;
  gint64 us = (gint64) units * G_USEC_PER_SEC / 65536;
  return us > 0 && us < 10 * G_USEC_PER_SEC ? us : 0;
}

}  // namespace

/* The member's RTCP (a streaming thread): the fraction lost its receiver
 * reports give for our video, the round trip, and REMB (RFC
 * draft-alvestrand-rmcat-remb: PSFB, FMT 15, "REMB", exponent and
 * mantissa). */
void
Congestion::on_rtcp (GstBuffer * buffer)
{
  guint ssrc = video_ssrc_;
  double fraction = -1;
  gint64 rtt = 0;
  guint64 remb = 0;
  GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
  if (!gst_rtcp_buffer_map (buffer, GST_MAP_READ, &rtcp))
    return;
  GstRTCPPacket packet;
  for (gboolean more = gst_rtcp_buffer_get_first_packet (&rtcp, &packet);
      more; more = gst_rtcp_packet_move_to_next (&packet)) {
    GstRTCPType type = gst_rtcp_packet_get_type (&packet);
    if (type == GST_RTCP_TYPE_RR || type == GST_RTCP_TYPE_SR) {
      for (guint i = 0; i < gst_rtcp_packet_get_rb_count (&packet); i++) {
        guint32 about, exthighestseq, jitter, lsr, dlsr;
        guint8 fractionlost;
        gint32 packetslost;
        gst_rtcp_packet_get_rb (&packet, i, &about, &fractionlost,
            &packetslost, &exthighestseq, &jitter, &lsr, &dlsr);
        if (ssrc && about == ssrc) {
          fraction = fractionlost / 256.0;
          rtt = round_trip_us (lsr, dlsr);
        }
      }
    } else if (type == GST_RTCP_TYPE_PSFB && gst_rtcp_packet_fb_get_type
        (&packet) == GST_RTCP_PSFB_TYPE_AFB) {
      guint len = gst_rtcp_packet_fb_get_fci_length (&packet) * 4;
      const guint8 *fci = gst_rtcp_packet_fb_get_fci (&packet);
      if (fci && len >= 8 && memcmp (fci, "REMB", 4) == 0) {
        guint exp = fci[5] >> 2;
        guint64 mantissa = ((guint64) (fci[5] & 0x3) << 16) | (fci[6] << 8)
            | fci[7];
        remb = exp < 40 ? mantissa << exp : G_MAXUINT32;
      }
    }
  }
  gst_rtcp_buffer_unmap (&rtcp);
  if (rtt > 0) {
    rtt_us_ = rtt;
    GST_LOG ("round trip %.1f ms", rtt / 1000.0);
  }
  if (fraction < 0 && !remb)
    return;
  std::lock_guard<std::mutex> guard (lock_);
  guint64 now = now_ns ();
  if (fraction >= 0)
    estimator_.receiver_report (fraction, now);
  if (remb)
    estimator_.remb (remb, now);
  reported_ = true;
}

/* ------------------------------------------------------------------ */
/* The video encoder */

bool
Outgoing::adapts () const
{
  std::lock_guard<std::mutex> guard (lock_);
  return encoder_ != nullptr && kind_ == Kind::Video;
}

/* The encoder, with a reference, taken under the lock; its properties
 * are read and set without it. Null for input passed through. */
static GstElement *
encoder_of (GstElement * encoder)
{
  return encoder ? GST_ELEMENT (gst_object_ref (encoder)) : nullptr;
}

guint
Outgoing::bitrate (int layer) const
{
  GstElement *encoder;
  {
    std::lock_guard<std::mutex> guard (lock_);
    encoder = encoder_of (layer > 0 && layer < (int) layers_.size ()
        ? layers_[layer].encoder : encoder_);
  }
  if (!encoder)
    return 0;
  guint bps = encoder_bitrate (encoder);
  gst_object_unref (encoder);
  return bps;
}

void
Outgoing::set_bitrate (guint bps, int layer)
{
  GstElement *encoder;
  {
    std::lock_guard<std::mutex> guard (lock_);
    encoder = kind_ != Kind::Video ? nullptr : encoder_of (layer > 0
        && layer < (int) layers_.size () ? layers_[layer].encoder : encoder_);
  }
  if (!encoder)
    return;
  set_encoder_bitrate (encoder, bps);
  gst_object_unref (encoder);
}

/* ------------------------------------------------------------------ */
/* The session's part. Without layers, one encoder for every member, set
 * to the lowest estimate of the members it is sent to, less what audio
 * takes, within [min, max]. With layers, each member is moved to the layer
 * its own budget allows, and each layer's encoder follows the lowest
 * budget of its members within the layer's range. With congestion control
 * off it only tells the members' statistics what the encoder is set to.
 * Mesh thread. */

namespace {

/* Set `layer`'s encoder to `want` if that is a change worth making. */
guint64
retarget (Outgoing & video, int layer, guint64 want, const CcSettings & cc)
{
  guint64 target = video.bitrate (layer);
  double change = target ? std::abs ((double) want - (double) target)
      / target : 1;
  if (change >= ADAPT_STEP || (want != target && (want == cc.min
              || want == cc.max))) {
    GST_DEBUG ("video layer %d bitrate %" G_GUINT64_FORMAT " -> %"
        G_GUINT64_FORMAT, layer, target, want);
    video.set_bitrate ((guint) want, layer);
    return want;
  }
  return target;
}

}  // namespace

void
Session::adapt_bitrate ()
{
  const CcSettings & cc = config_.cc;
  Outgoing *video = outgoing (Kind::Video);
  Outgoing *audio = outgoing (Kind::Audio);
  bool adapts = cc.mode == CongestionControl::Gcc && video && video->codec ()
      && video->adapts ();
  int layers = video ? video->layers () : 1;
  guint64 audio_bps = 0;
  if (audio && audio->codec ()) {
    audio_bps = audio->bitrate ();
    if (!audio_bps)
      audio_bps = PASSTHROUGH_AUDIO_BPS;
  }
  /* What a member's estimate leaves for our video, less the ULPFEC sent
   * on top of it (`fec`, percent) and `rtx` bit/s of retransmissions (at
   * most half of it, as Chromium counts its protection); 0: not known
   * yet. */
  auto budget = [audio_bps] (Congestion & c, guint fec,
      guint64 rtx) -> guint64 {
    guint64 e = c.estimate ();
    guint64 usable = (guint64) (e * ENCODER_SHARE);
    usable -= MIN (rtx, usable / 2);
    guint64 video = usable > audio_bps ? MAX (usable - audio_bps, 1u) : 1;
    return e == 0 ? 0 : MAX (video * 100 / (100 + fec), 1u);
  };

  std::vector<LayerRange> ranges = layer_ranges (layers, cc.min, cc.max);
  /* Per layer, the lowest budget of its members (0: none known), and
   * whether one of them is probing it or in its start (its encoder then
   * follows that budget even below the layer's floor). */
  std::vector<guint64> lowest (layers, 0);
  std::vector<bool> probed (layers, false);
  /* Layers members past their start (START_HOLD_TICKS) get: a member
   * joining a room where others get the top layer is not held there (its
   * budget would set the room's encoder). */
  std::vector<bool> settled (layers, false);
  for (auto & p : peers_) {
    auto c = p.second->congestion ();
    GstElement *sw = p.second->layer_switch ();
    if (c && sw && c->start_left == 0)
      settled[CLAMP (layer_switch_wanted (sw), 0, layers - 1)] = true;
  }
  /* Layers a member gets now or asked for; and those asked for by a
   * member with no estimate yet (its first feedback not in). */
  std::vector<bool> used (layers, false), waiting (layers, false);
  for (auto & p : peers_) {
    auto c = p.second->congestion ();
    if (!c || !p.second->sends_video ())
      continue;
    guint64 rtx = c->retransmission_rate ();
    guint64 b = budget (*c, p.second->video_fec_percent (), rtx);
    GstElement *sw = p.second->layer_switch ();
    int layer = 0;
    /* Probing the layer it gets, this reconsideration included (the
     * probe's last one too: its layer's encoder stays at the budget). */
    bool probing = false, starting = false;
    if (sw && adapts) {
      int wanted = layer_switch_wanted (sw);
      layer = b ? c->choice.next (ranges, wanted, b) : wanted;
      bool congested = c->congested ();
      /* A new member on the top layer stays there for its first
       * START_HOLD_TICKS with an estimate, unless congested, its layer's
       * encoder at its budget, even below the floor (as a probe's): it
       * starts at start-bitrate, a guess, and its estimate grows from
       * there; moving it down at its first budget would give it a smaller
       * picture for its first seconds on any link. Not where members past
       * their start get the top layer. */
      if (c->start_left < 0 && b)
        c->start_left = wanted == 0 && !settled[0] ? START_HOLD_TICKS : 0;
      /* Its start probes found what the link takes: nothing to wait for
       * (held on the top layer below its floor, the encoder drops frames;
       * behind 300 kbit/s the picture froze for 2 s). */
      if (c->start_left > 0 && c->probe_found_limit ())
        c->start_left = 0;
      starting = c->start_left > 0;
      probing = c->probe_left > 0;
      if (starting) {
        c->start_left--;
        if (layer > wanted && !congested)
          layer = wanted;
        else if (layer > wanted)
          c->start_left = 0;
      } else if (c->probe_left > 0) {
        /* A probe under way: only congestion ends it early. */
        c->probe_left--;
        if (layer > wanted && !congested)
          layer = wanted;
      } else if (layer == wanted && wanted > 0 && b && !congested
          && !c->overused_within (ADAPT_INTERVAL_MS)
          && c->received_rate () < APP_LIMITED_SHARE * (c->target
              + audio_bps)
          && layer_switch_current (sw) == wanted) {
        /* Below the top with no sign of congestion, not even a queue
         * growing for a moment since the last reconsideration, and the
         * member getting well under what its layer's encoder is told (the
         * picture needs no more: a small layer of a plain scene): then
         * the layer may send too little for the estimate to grow past the
         * next floor (it stays under 1.5 times what gets through), so the
         * layer above is tried for a while, and kept if the estimate
         * follows. A layer that sends what it is told lets the estimate
         * grow by itself, up to the layer's ceiling, above the next floor
         * up; and a probe, a larger picture at fewer frames a second for
         * a while, costs the picture something. */
        if (++c->calm_ticks >= PROBE_WAIT_TICKS) {
          layer = wanted - 1;
          c->calm_ticks = 0;
          c->probe_left = PROBE_TICKS;
          c->forget_capacity ();
          probing = true;
          GST_DEBUG_OBJECT (element_, "%s: probing video layer %d",
              p.first.c_str (), layer);
        }
      } else {
        c->calm_ticks = 0;
      }
      /* Below the top, on its layer, no queue grown lately, and
       * receiving well under its estimate (the layer is at its ceiling,
       * or its picture needs little: Chromium probes while its sending is
       * application-limited): a padding probe proves whether the link
       * carries more (every PROBE_EVERY_MS, or at once after one that
       * reached its target; at twice what the member receives, see
       * probe_target ()). A member whose layer sends about its estimate
       * needs none: the estimate grows by itself. And in its start, as
       * Chromium probes at once: the estimate begins at start-bitrate, a
       * guess, and the top layer's encoder, told that, drops frames until
       * the estimate has grown to what the picture needs (40 to 60 frames
       * in the first 4 s of a 640x480 picture on a clean link, without). */
      bool limited = c->received_rate () < APP_LIMITED_SHARE * c->estimate ();
      if (layer == wanted && (starting || (wanted > 0 && !probing && limited))
          && !congested && !c->overused_within (PROBE_CALM_MS)
          && c->probe_due ())
        Congestion::probe (c, c->probe_target ());
      if (layer != wanted) {
        GST_DEBUG_OBJECT (element_, "%s: video layer %d -> %d (budget %"
            G_GUINT64_FORMAT ", estimate %" G_GUINT64_FORMAT
            ", retransmitted %" G_GUINT64_FORMAT ")", p.first.c_str (),
            wanted, layer, b, c->estimate (), rtx);
        layer_switch_want (sw, layer);
        video->force_key_unit (layer);
        c->waiting_ticks = 0;
      } else if (layer_switch_current (sw) != layer
          && ++c->waiting_ticks % 2 == 0) {
        /* The key frame asked for did not come (or did not reach the
         * switch yet): ask again, once a second. */
        video->force_key_unit (layer);
      }
    }
    if (b)
      lowest[layer] = lowest[layer] ? MIN (lowest[layer], b) : b;
    else
      waiting[CLAMP (layer, 0, layers - 1)] = true;
    used[CLAMP (layer, 0, layers - 1)] = true;
    if (sw && layer_switch_current (sw) >= 0)
      used[MIN (layer_switch_current (sw), layers - 1)] = true;
    if (probing || starting)
      probed[layer] = true;
  }

  /* Off, or encoded input: what the encoder is set to, if ours. */
  std::vector<guint64> targets (layers, 0);
  bool anyone = std::find (used.begin (), used.end (), true) != used.end ();
  for (int i = 0; i < layers; i++) {
    targets[i] = video ? video->bitrate (i) : 0;
    /* A layer whose members have no estimate yet, and the top layer while
     * no member gets our video: at its start rate (layer_start_bitrate
     * (), as when the layers were made), where a new member's first
     * frames come from until its first feedback; not at the min-bitrate
     * of a layer no one gets (640x480 at 100 kbit/s, those frames were
     * dropped: half a second frozen after the first frame on a clean
     * link). */
    if (adapts && layers > 1 && !lowest[i] && (waiting[i]
            || (i == 0 && !anyone))) {
      targets[i] = retarget (*video, i, CLAMP (layer_start_bitrate (cc.start,
              i), (guint64) cc.min, (guint64) cc.max), cc);
      continue;
    }
    if (adapts && layers > 1 && !used[i]) {
      /* A layer no member gets runs at min-bitrate: the member moved or
       * probing up to it starts from there, not from a rate its link may
       * not take (a key frame of a layer left at start-bitrate overflowed
       * a 600 kbit/s link at every probe). */
      targets[i] = retarget (*video, i, cc.min, cc);
      continue;
    }
    if (!adapts || !lowest[i])
      continue;
    /* A layer probed (or a member's start on it) is sent at the
     * member's budget, even below its floor: the probe is its larger
     * picture, not more bits than the estimate allows. */
    guint64 floor = layers > 1 && i + 1 < layers && !probed[i]
        ? ranges[i].floor : cc.min;
    guint64 ceiling = layers > 1 ? ranges[i].ceiling : cc.max;
    targets[i] = retarget (*video, i, CLAMP (lowest[i], floor, ceiling), cc);
  }
  for (auto & p : peers_) {
    auto c = p.second->congestion ();
    if (!c)
      continue;
    GstElement *sw = p.second->layer_switch ();
    int layer = sw ? MAX (layer_switch_current (sw), 0) : 0;
    int width = 0, height = 0;
    if (video)
      video->layer_size (layer, &width, &height);
    c->target = targets[CLAMP (layer, 0, layers - 1)];
    c->adapts = adapts;
    c->layer = layer;
    c->layers = layers;
    c->layer_width = width;
    c->layer_height = height;
    c->layer_changes = sw ? layer_switch_changes (sw) : 0;
  }
}

void
Session::start_adapting ()
{
  if (adapt_source_)
    return;
  adapt_source_ = g_timeout_source_new (ADAPT_INTERVAL_MS);
  g_source_set_callback (adapt_source_, [] (gpointer self) -> gboolean {
    static_cast<Session *> (self)->adapt_bitrate ();
    return G_SOURCE_CONTINUE;
  }, this, nullptr);
  g_source_attach (adapt_source_, context_);
}

void
Session::stop_adapting ()
{
  if (adapt_source_) {
    g_source_destroy (adapt_source_);
    g_source_unref (adapt_source_);
    adapt_source_ = nullptr;
  }
}

}  // namespace peerjs
