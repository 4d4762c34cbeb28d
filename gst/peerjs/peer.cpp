#include "peer.h"

#include "congestion.h"
#include "encoders.h"
#include "layers.h"
#include "messages.h"

#include <gst/rtp/rtp.h>
#include <gst/sdp/sdp.h>
#include <nice/agent.h>

#include <algorithm>
#include <cmath>
#include <cstring>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

using Direction = GstWebRTCRTPTransceiverDirection;

/* How long an offer waits for its answer before it is sent again. */
constexpr guint OFFER_RESEND_MS = 3000;

/* The SDP attribute of our answer's m-line that says which codec we would
 * send there, where the offer had none of it. */
constexpr const char *SENDS_ATTRIBUTE = "x-peerjs-sends";

/* RTCP timing, as Chromium's: receiver reports about every second (rtpbin's
 * own is 5 s), and feedback (NACK, PLI) sent at once. rtpbin allows one
 * early feedback packet per RTCP interval, computed from the RTCP
 * bandwidth (RFC 4585), which a stream of a few hundred kbit/s puts at
 * several hundred ms: a NACK then goes out after the jitterbuffer has
 * given the packet up. A generous RTCP bandwidth keeps that interval at a
 * few ms; RTCP actually sent stays the reports plus what feedback there
 * is. */
constexpr guint64 RTCP_REPORT_INTERVAL = GST_SECOND;
constexpr double RTCP_BANDWIDTH = 500000;       /* bits per second */
/* Kept for ULPFEC beyond the longest a jitterbuffer waits (webrtcbin's). */
constexpr guint STORAGE_MARGIN_MS = 50;
/* A video jitterbuffer's wait for a missing packet follows how late the
 * member's packets come and the round trip of its retransmissions
 * (RetransmissionTimes): the first, and RTX_WAIT_RTTS of the second and
 * RTX_WAIT_MARGIN_MS, room for a retransmission lost once and asked
 * again, as Chromium's NACK module asks again every round trip; no less than
 * retransmission-wait and no more than RTX_WAIT_MAX_MS. Changed only by a
 * fifth or more (each change is a latency message on the bus). */
constexpr double RTX_WAIT_RTTS = 2;
constexpr guint RTX_WAIT_MARGIN_MS = 50;
constexpr guint RTX_WAIT_MAX_MS = 1000;
/* Marks the video jitterbuffers whose wait follows the round trip: their
 * RetransmissionTimes. */
constexpr const char *FOLLOWS_ROUND_TRIP = "peerjs-follows-round-trip";
/* Playout delay (below): the extension and the id our offers give it
 * (Chromium's). */
constexpr const char *PLAYOUT_DELAY_URI =
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
constexpr int PLAYOUT_DELAY_ID = 6;
/* A request unanswered for this long is forgotten (the packet came
 * otherwise, or never). */
constexpr gint64 RTX_ASKED_KEPT_US = 2 * RTX_WAIT_MAX_MS * 1000;

/* How late a packet may come (past the time its jitterbuffer expected it)
 * is followed as its peak, falling by LATE_FALL_MS_PER_S. */
constexpr double LATE_FALL_MS_PER_S = 100;
/* A packet given out within this of its arrival was not held. */
constexpr gint64 GIVEN_OUT_AT_ONCE_US = 5000;

/* How long a video jitterbuffer waits for a missing packet when packets
 * come up to `late_ms` after the time the jitterbuffer expected them and
 * retransmissions take `rtt_ms` (0: none came yet). */
guint
retransmission_wait (guint floor_ms, guint64 late_ms, guint64 rtt_ms)
{
  double follows = late_ms + (rtt_ms ? RTX_WAIT_RTTS * rtt_ms
      + RTX_WAIT_MARGIN_MS : floor_ms);
  return MAX (floor_ms, (guint) MIN (follows, (double) RTX_WAIT_MAX_MS));
}

/* What a video jitterbuffer's wait follows (Peer::on_new_jitterbuffer).
 *
 * How late packets come: a jitterbuffer expects a packet at the time of
 * the fastest packets before it (slave mode: the sender's clock, with the
 * least delay seen), and counts its wait from then. Behind a link whose
 * queue has grown since, or a sender whose pacer holds its packets (a
 * Chromium publisher on 300 kbit/s: 190 ms, then 400), a missing packet
 * is found missing that late, and the wait has to cover that before the
 * retransmission's round trip even begins: a packet found missing 186 ms
 * into a 200 ms wait was given up 14 ms later, its retransmission coming
 * 148 ms after the request, and cost a key frame. Each packet given out
 * as it came tells it: the running time less its PTS (the jitterbuffer
 * clears DTS before it pushes).
 *
 * The round trip of retransmissions: from the jitterbuffer's first
 * request for a packet (its GstRTPRetransmissionRequest going upstream)
 * to the packet's retransmission (a buffer rtprtxreceive marked), also
 * those that came after the packet was given up. rtpjitterbuffer's own
 * rtx-rtt counts only those that came within its wait, so a round trip
 * grown past the wait was never seen. Rises by a quarter of a longer one,
 * falls by a sixteenth of a shorter one. */
class RetransmissionTimes
{
public:
  /* The jitterbuffer starts at the floor, retransmission-wait. */
  explicit RetransmissionTimes (guint floor_ms)
      : floor_ms_ (floor_ms), wait_ms_ (floor_ms) {}

  void requested (guint seqnum, gint64 now_us)
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (auto it = asked_.begin (); it != asked_.end ();)
      it = now_us - it->second > RTX_ASKED_KEPT_US ? asked_.erase (it)
          : std::next (it);
    asked_.emplace ((guint16) seqnum, now_us);
  }

  /* True when the packet answered a request. */
  bool arrived (guint seqnum, gint64 now_us)
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = asked_.find ((guint16) seqnum);
    if (it == asked_.end ())
      return false;
    double sample = (now_us - it->second) / 1000.0;
    asked_.erase (it);
    if (rtt_ms_ <= 0)
      rtt_ms_ = sample;
    else
      rtt_ms_ += (sample - rtt_ms_) / (sample > rtt_ms_ ? 4 : 16);
    return true;
  }

  /* A packet came in (any: a retransmission too). */
  void came (guint seqnum, gint64 now_us)
  {
    came_us_[seqnum % came_us_.size ()].store (now_us,
        std::memory_order_relaxed);
  }

  /* A packet given out at `running_time`: true when it came later than
   * any lately. Only one given out as it came (not held behind a missing
   * one, which would count the wait itself). */
  bool given_out (guint seqnum, GstClockTime pts, GstClockTime running_time,
      gint64 now_us)
  {
    if (now_us - came_us_[seqnum % came_us_.size ()].load
        (std::memory_order_relaxed) > GIVEN_OUT_AT_ONCE_US
        || !GST_CLOCK_TIME_IS_VALID (pts)
        || !GST_CLOCK_TIME_IS_VALID (running_time))
      return false;
    double late = running_time > pts
        ? (double) (running_time - pts) / GST_MSECOND : 0;
    std::lock_guard<std::mutex> guard (lock_);
    if (late_at_us_)
      late_ms_ = MAX (0.0, late_ms_ - LATE_FALL_MS_PER_S
          * (now_us - late_at_us_) / 1e6);
    late_at_us_ = now_us;
    if (late <= late_ms_)
      return false;
    late_ms_ = late;
    return true;
  }

  /* Set the jitterbuffer's wait from them, when that differs from it by a
   * fifth or more (each change is a latency message on the bus); only
   * upwards unless `both_ways`. */
  void follow (GstElement * jitterbuffer, const char *member,
      bool both_ways)
  {
    guint64 late, rtt;
    {
      std::lock_guard<std::mutex> guard (lock_);
      late = (guint64) (late_ms_ + 0.5);
      rtt = rtt_ms_ > 0 ? (guint64) (rtt_ms_ + 0.5) : 0;
    }
    guint current = wait_ms_;
    guint wait = retransmission_wait (floor_ms_, late, rtt);
    if (wait < current && !both_ways)
      return;
    guint change = wait > current ? wait - current : current - wait;
    if (change * 5 < current)
      return;
    GST_DEBUG ("%s: packets up to %" G_GUINT64_FORMAT " ms late, "
        "retransmission round trip %" G_GUINT64_FORMAT " ms: video waits %u "
        "ms for a missing packet (was %u)", member, late, rtt, wait, current);
    wait_ms_ = wait;
    g_object_set (jitterbuffer, "latency", wait, NULL);
  }

  std::atomic<guint> floor_ms_;

private:
  std::atomic<guint> wait_ms_;
  std::mutex lock_;
  std::map<guint16, gint64> asked_;
  double rtt_ms_ = 0;
  double late_ms_ = 0;
  gint64 late_at_us_ = 0;
  /* When the packets came, by sequence number (streaming thread). */
  std::array<std::atomic<gint64>, 1024> came_us_ {};
};

/* A video jitterbuffer's pads: its requests going upstream and the
 * retransmissions coming in (sink), the packets it gives out (src). From
 * the streaming threads: a wait that has to grow grows at once, for the
 * packets still asked for. */
GstPadProbeReturn
follow_packets (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *member = static_cast<const char *> (data);
  g_autoptr (GstElement) jitterbuffer = gst_pad_get_parent_element (pad);
  auto *times = jitterbuffer ? static_cast<RetransmissionTimes *>
      (g_object_get_data (G_OBJECT (jitterbuffer), FOLLOWS_ROUND_TRIP))
      : nullptr;
  if (!times)
    return GST_PAD_PROBE_OK;
  gint64 now = g_get_monotonic_time ();
  if (info->type & GST_PAD_PROBE_TYPE_EVENT_UPSTREAM) {
    const GstStructure *s =
        gst_event_get_structure (GST_PAD_PROBE_INFO_EVENT (info));
    guint seqnum = 0, retry = 0;
    if (s && gst_structure_has_name (s, "GstRTPRetransmissionRequest")
        && gst_structure_get_uint (s, "seqnum", &seqnum)
        && gst_structure_get_uint (s, "retry", &retry) && retry == 0)
      times->requested (seqnum, now);
    return GST_PAD_PROBE_OK;
  }
  bool longer = false;
  bool given_out = GST_PAD_IS_SRC (pad);
  GstClockTime running_time = given_out
      ? gst_element_get_current_running_time (jitterbuffer)
      : GST_CLOCK_TIME_NONE;
  for_each_probed_buffer (info, [&] (GstBuffer * buffer) {
        GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
        if (!gst_rtp_buffer_map (buffer, GST_MAP_READ, &rtp))
          return;
        guint seqnum = gst_rtp_buffer_get_seq (&rtp);
        gst_rtp_buffer_unmap (&rtp);
        if (given_out) {
          longer |= times->given_out (seqnum, GST_BUFFER_PTS (buffer),
              running_time, now);
          return;
        }
        times->came (seqnum, now);
        if (GST_BUFFER_FLAG_IS_SET (buffer,
                GST_RTP_BUFFER_FLAG_RETRANSMISSION))
          longer |= times->arrived (seqnum, now);
      });
  if (longer)
    times->follow (jitterbuffer, member, false);
  return GST_PAD_PROBE_OK;
}

/* A latency query answered by a video jitterbuffer that waits for
 * retransmissions longer than `latency` (on_new_jitterbuffer): downstream
 * is told `latency`, the jitterbuffer's own latency less the extra wait. */
GstPadProbeReturn
tell_latency (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  GstQuery *query = GST_PAD_PROBE_INFO_QUERY (info);
  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return GST_PAD_PROBE_OK;
  g_autoptr (GstElement) jitterbuffer = gst_pad_get_parent_element (pad);
  if (!jitterbuffer)
    return GST_PAD_PROBE_OK;
  guint waits = 0;
  g_object_get (jitterbuffer, "latency", &waits, NULL);
  guint told = GPOINTER_TO_UINT (data);
  if (waits <= told)
    return GST_PAD_PROBE_OK;
  GstClockTime extra = (GstClockTime) (waits - told) * GST_MSECOND;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (query, &live, &min, &max);
  min = min > extra ? min - extra : 0;
  if (GST_CLOCK_TIME_IS_VALID (max))
    max = max > extra ? max - extra : 0;
  gst_query_set_latency (query, live, min, max);
  return GST_PAD_PROBE_OK;
}

/* Run an action signal that answers through a promise, and wait for it.
 * Only on the signalling thread, which no webrtcbin thread waits on. */
class Promise
{
public:
  Promise () : p_ (gst_promise_new ()) {}
  ~Promise () { gst_promise_unref (p_); }
  GstPromise *get () { return p_; }
  /* False with `error` set when it failed; `reply` may be null on
   * success (set-*-description replies with nothing). */
  bool wait (const GstStructure ** reply, std::string * error)
  {
    *reply = nullptr;
    if (gst_promise_wait (p_) != GST_PROMISE_RESULT_REPLIED) {
      *error = "interrupted";
      return false;
    }
    *reply = gst_promise_get_reply (p_);
    if (*reply && gst_structure_has_field (*reply, "error")) {
      GError *e = nullptr;
      gst_structure_get (*reply, "error", G_TYPE_ERROR, &e, NULL);
      *error = e ? e->message : "failed";
      g_clear_error (&e);
      return false;
    }
    return true;
  }

private:
  GstPromise *p_;
};

/* Payload types in `media` whose rtpmap names `codec`. */
std::vector<int>
payload_types (const GstSDPMedia * media, const Codec & codec)
{
  std::vector<int> pts;
  for (guint i = 0;; i++) {
    const char *rtpmap = gst_sdp_media_get_attribute_val_n (media, "rtpmap",
        i);
    if (!rtpmap)
      break;
    char name[32] = "";
    int pt = -1;
    if (sscanf (rtpmap, "%d %31[^/]", &pt, name) == 2
        && g_ascii_strcasecmp (name, codec.name) == 0)
      pts.push_back (pt);
  }
  return pts;
}

GstCaps *
caps_for_pts (const Codec & codec, const std::vector<int> & pts)
{
  GstCaps *caps = gst_caps_new_empty ();
  for (int pt : pts)
    gst_caps_append (caps, rtp_caps (codec, pt));
  return caps;
}

const char *
direction_name (Direction d)
{
  switch (d) {
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV: return "sendrecv";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY: return "sendonly";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY: return "recvonly";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE: return "inactive";
    default: return "none";
  }
}

bool
sends (GstWebRTCRTPTransceiverDirection d)
{
  return d == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV
      || d == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY;
}

bool
recvs (GstWebRTCRTPTransceiverDirection d)
{
  return d == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV
      || d == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY;
}

GstWebRTCRTPTransceiverDirection
make_direction (bool send, bool recv)
{
  if (send && recv)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV;
  if (send)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY;
  if (recv)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY;
  return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
}

/* The other end's view of a direction. */
GstWebRTCRTPTransceiverDirection
reverse (GstWebRTCRTPTransceiverDirection d)
{
  return make_direction (recvs (d), sends (d));
}

GstWebRTCRTPTransceiverDirection
intersect (GstWebRTCRTPTransceiverDirection a,
    GstWebRTCRTPTransceiverDirection b)
{
  return make_direction (sends (a) && sends (b), recvs (a) && recvs (b));
}

const char *const DIRECTIONS[] = { "sendrecv", "sendonly", "recvonly",
  "inactive" };

GstWebRTCRTPTransceiverDirection
media_direction (const GstSDPMedia * media)
{
  /* Port 0 rejects an m-line, unless it is only to be bundled. */
  if (gst_sdp_media_get_port (media) == 0
      && !gst_sdp_media_get_attribute_val (media, "bundle-only"))
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
  for (guint i = 0; i < gst_sdp_media_attributes_len (media); i++) {
    const char *key = gst_sdp_media_get_attribute (media, i)->key;
    if (g_strcmp0 (key, "sendonly") == 0)
      return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY;
    if (g_strcmp0 (key, "recvonly") == 0)
      return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY;
    if (g_strcmp0 (key, "inactive") == 0)
      return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
  }
  return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV;
}

void
set_media_direction (GstSDPMedia * media, GstWebRTCRTPTransceiverDirection d)
{
  for (guint i = gst_sdp_media_attributes_len (media); i-- > 0;) {
    const char *key = gst_sdp_media_get_attribute (media, i)->key;
    for (const char *name : DIRECTIONS)
      if (g_strcmp0 (key, name) == 0) {
        gst_sdp_media_remove_attribute (media, i);
        break;
      }
  }
  /* An empty value, not null: webrtcbin reads every value as text. */
  gst_sdp_media_add_attribute (media, direction_name (d), "");
}

/* In `media`, the RTX stream paired with `ssrc` (a=ssrc-group:FID ssrc rtx,
 * and the rtx's a=ssrc lines) becomes `rtx`, unless `rtx` is 0. Returns
 * the RTX SSRC `media` says now, 0 for none. */
guint
set_rtx_ssrc (GstSDPMedia * media, guint ssrc, guint rtx)
{
  guint old = 0;
  for (guint i = 0; i < gst_sdp_media_attributes_len (media); i++) {
    const GstSDPAttribute *a = gst_sdp_media_get_attribute (media, i);
    guint first, second;
    if (g_strcmp0 (a->key, "ssrc-group") == 0 && a->value
        && sscanf (a->value, "FID %u %u", &first, &second) == 2
        && first == ssrc) {
      old = second;
      if (!rtx)
        return old;
      g_autofree char *value = g_strdup_printf ("FID %u %u", ssrc, rtx);
      GstSDPAttribute attr;
      gst_sdp_attribute_set (&attr, "ssrc-group", value);
      gst_sdp_media_replace_attribute (media, i, &attr);
    }
  }
  if (!old || old == rtx)
    return old;
  std::string prefix = std::to_string (old) + " ";
  for (guint i = 0; i < gst_sdp_media_attributes_len (media); i++) {
    const GstSDPAttribute *a = gst_sdp_media_get_attribute (media, i);
    if (g_strcmp0 (a->key, "ssrc") != 0 || !a->value
        || !g_str_has_prefix (a->value, prefix.c_str ()))
      continue;
    std::string value = std::to_string (rtx) + " "
        + (a->value + prefix.size ());
    GstSDPAttribute attr;
    gst_sdp_attribute_set (&attr, "ssrc", value.c_str ());
    gst_sdp_media_replace_attribute (media, i, &attr);
  }
  return rtx;
}

/* rtprtxsend draws the RTX SSRC of a stream from its ssrc-map when the
 * stream's first caps or packet come, once and for all. webrtcbin sets that
 * map now and then, and on that first packet may put a new random SSRC in
 * it, one no SDP mentions; a member drops RTX on an SSRC it was not told.
 * So the map is set again right in front of rtprtxsend, until the stream's
 * first caps or packet went in. */
struct RtxPin
{
  guint ssrc;
  GstStructure *map;
};

GstPadProbeReturn
pin_rtx_probe (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *pin = static_cast<RtxPin *> (data);
  g_autoptr (GstElement) rtx = gst_pad_get_parent_element (pad);
  if (rtx)
    g_object_set (rtx, "ssrc-map", pin->map, NULL);
  guint ssrc = 0;
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER) {
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    if (gst_rtp_buffer_map (GST_PAD_PROBE_INFO_BUFFER (info), GST_MAP_READ,
            &rtp)) {
      ssrc = gst_rtp_buffer_get_ssrc (&rtp);
      gst_rtp_buffer_unmap (&rtp);
    }
  } else if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    GstBuffer *first = gst_buffer_list_length (GST_PAD_PROBE_INFO_BUFFER_LIST
        (info)) ? gst_buffer_list_get (GST_PAD_PROBE_INFO_BUFFER_LIST (info),
        0) : nullptr;
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    if (first && gst_rtp_buffer_map (first, GST_MAP_READ, &rtp)) {
      ssrc = gst_rtp_buffer_get_ssrc (&rtp);
      gst_rtp_buffer_unmap (&rtp);
    }
  } else if (GST_EVENT_TYPE (GST_PAD_PROBE_INFO_EVENT (info)) == GST_EVENT_CAPS) {
    GstCaps *caps;
    gst_event_parse_caps (GST_PAD_PROBE_INFO_EVENT (info), &caps);
    gst_structure_get_uint (gst_caps_get_structure (caps, 0), "ssrc", &ssrc);
  }
  /* Only data comes after a buffer of the stream: its SSRC is taken. */
  return ssrc == pin->ssrc && !(GST_PAD_PROBE_INFO_TYPE (info)
      & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) ? GST_PAD_PROBE_REMOVE
      : GST_PAD_PROBE_OK;
}

/* Calls `fn` on every element inside `bin`, at any depth, that the factory
 * `factory` made. The elements are gathered first (from scratch when the
 * bin changes meanwhile), and `fn` runs with no iterator open. */
void
for_each_made_by (GstBin * bin, const char *factory,
    const std::function<void (GstElement *)> & fn)
{
  std::vector<GstElement *> found;
  GstIterator *it = gst_bin_iterate_recurse (bin);
  GValue v = G_VALUE_INIT;
  GstIteratorResult r;
  while ((r = gst_iterator_next (it, &v)) != GST_ITERATOR_DONE
      && r != GST_ITERATOR_ERROR) {
    if (r == GST_ITERATOR_RESYNC) {
      for (GstElement *e : found)
        gst_object_unref (e);
      found.clear ();
      gst_iterator_resync (it);
      continue;
    }
    GstElement *e = GST_ELEMENT (g_value_get_object (&v));
    GstElementFactory *f = gst_element_get_factory (e);
    if (f && g_str_equal (GST_OBJECT_NAME (f), factory))
      found.push_back (GST_ELEMENT (gst_object_ref (e)));
    g_value_reset (&v);
  }
  g_value_unset (&v);
  gst_iterator_free (it);
  for (GstElement *e : found) {
    fn (e);
    gst_object_unref (e);
  }
}

void
pin_rtx_ssrc (GstElement * webrtc, guint ssrc, guint rtx_ssrc)
{
  GstStructure *map = gst_structure_new_empty ("application/x-rtp-ssrc-map");
  gst_structure_set (map, std::to_string (ssrc).c_str (), G_TYPE_UINT,
      rtx_ssrc, NULL);
  for_each_made_by (GST_BIN (webrtc), "rtprtxsend", [ssrc, map] (GstElement * e) {
        g_object_set (e, "ssrc-map", map, NULL);
        g_autoptr (GstPad) sink = gst_element_get_static_pad (e, "sink");
        gst_pad_add_probe (sink, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
                | GST_PAD_PROBE_TYPE_BUFFER_LIST
                | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM), pin_rtx_probe,
            new RtxPin { ssrc, gst_structure_copy (map) }, [] (gpointer d) {
              auto *pin = static_cast<RtxPin *> (d);
              gst_structure_free (pin->map);
              delete pin;
            });
      });
  gst_structure_free (map);
}

/* Applies the RTCP timing above to every RTP session of `webrtc`; they
 * exist once a description was set. */
void
tune_rtcp (GstElement * webrtc)
{
  for_each_rtp_session (webrtc, [] (guint, GObject * session) {
        g_object_set (session, "rtcp-min-interval", RTCP_REPORT_INTERVAL,
            "rtcp-fraction", RTCP_BANDWIDTH, NULL);
      });
}

}  // namespace

Peer::Peer (PeerHost & host, std::string id, bool master)
  : host_ (host), id_ (std::move (id)), master_ (master),
    cc_ (std::make_shared<Congestion> (host.congestion ()))
{
  webrtc_ = gst_element_factory_make ("webrtcbin",
      ("webrtc-" + id_).c_str ());
  gst_util_set_object_arg (G_OBJECT (webrtc_), "bundle-policy", "max-bundle");
  host_.configure (webrtc_, id_);
  gst_bin_add (host_.bin (), webrtc_);

  g_signal_connect (webrtc_, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * candidate, gpointer data) {
        auto *self = static_cast<Peer *> (data);
        JsonObject *msg = json_object_new ();
        json_object_set_string_member (msg, "type", "stream:candidate");
        json_object_set_string_member (msg, "to", self->id_.c_str ());
        JsonObject *c = json_object_new ();
        json_object_set_string_member (c, "candidate", candidate);
        json_object_set_int_member (c, "sdpMLineIndex", mline);
        json_object_set_object_member (msg, "data", c);
        PeerHost *host = &self->host_;
        host->invoke ([host, msg] {
          host->send (msg);
          json_object_unref (msg);
        });
      }), this);
  g_signal_connect (webrtc_, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        static_cast<Peer *> (data)->on_pad_added (pad);
      }), this);
  g_signal_connect (webrtc_, "notify::ice-connection-state",
      G_CALLBACK (+[] (GstElement * webrtc, GParamSpec *, gpointer data) {
        auto *self = static_cast<Peer *> (data);
        GstWebRTCICEConnectionState state;
        g_object_get (webrtc, "ice-connection-state", &state, NULL);
        GST_DEBUG ("%s: ice-connection-state %d", self->id_.c_str (), state);
        if (state == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED) {
          PeerHost *host = &self->host_;
          std::string id = self->id_;
          host->invoke ([host, id] {
            host->peer_failed (id, "ICE failed");
          });
        }
      }), this);
  {
    g_autoptr (GstElement) rtpbin = gst_bin_get_by_name (GST_BIN (webrtc_),
        "rtpbin");
    if (rtpbin)
      g_signal_connect (rtpbin, "new-jitterbuffer", G_CALLBACK (+[] (GstElement
                  *, GstElement * jitterbuffer, guint, guint ssrc,
                  gpointer data) {
            static_cast<Peer *> (data)->on_new_jitterbuffer (jitterbuffer,
                ssrc);
          }), this);
    if (rtpbin)
      g_signal_connect (rtpbin, "new-storage", G_CALLBACK (+[] (GstElement
                  *, GstElement * storage, guint, gpointer data) {
            static_cast<Peer *> (data)->on_new_storage (storage);
          }), this);
  }
  g_signal_connect (webrtc_, "on-data-channel", G_CALLBACK (+[] (GstElement *,
              GstWebRTCDataChannel * channel, gpointer data) {
        auto *self = static_cast<Peer *> (data);
        g_autofree char *label = nullptr;
        g_object_get (channel, "label", &label, NULL);
        /* The master's "data" channel carries nothing we read. */
        if (label && g_str_has_prefix (label, "file:"))
          self->host_.file_channel (self->id_, channel);
      }), this);
  gst_element_sync_state_with_parent (webrtc_);

  /* peer.js expects the master's channel; it also gives the connection an
   * m-line when no media is allowed. Not while the element is going down:
   * a closed webrtcbin makes none. */
  if (master_ && GST_STATE_TARGET (webrtc_) >= GST_STATE_READY) {
    g_signal_emit_by_name (webrtc_, "create-data-channel", "data", nullptr,
        &channel_);
  }
}

Peer::~Peer ()
{
  close ();
}

/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* What we want, and what webrtcbin is told */

Peer::Direction
Peer::ideal (Kind kind)
{
  return make_direction (host_.outgoing (kind) != nullptr, host_.receives ());
}

Peer::Direction
Peer::wanted (Kind kind)
{
  Outgoing *out = host_.outgoing (kind);
  return make_direction (host_.wants_send (id_, kind) && out && out->codec (),
      host_.wants_recv (id_, kind));
}

bool
Peer::make_payloader (Kind kind, int pt, const char *pad_name)
{
  Slot & s = slots_[(int) kind];
  const Codec *codec = host_.outgoing (kind)->codec ();
  std::string name = std::string ("pay-") + kind_name (kind) + "-" + id_;
  s.ssrc = g_random_int ();
  s.payloader = peerjs::make_payloader (*codec, pt, s.ssrc, name);
  if (!s.payloader)
    return false;
  gst_bin_add (host_.bin (), s.payloader);
  GstPadTemplate *templ = gst_element_get_pad_template (webrtc_, "sink_%u");
  g_autoptr (GstCaps) caps = rtp_caps (*codec, pt);
  gst_caps_set_simple (caps, "ssrc", G_TYPE_UINT, s.ssrc, NULL);
  s.webrtc_pad = gst_element_request_pad (webrtc_, templ, pad_name, caps);
  g_autoptr (GstPad) src = gst_element_get_static_pad (s.payloader, "src");
  if (!s.webrtc_pad || gst_pad_link (src, s.webrtc_pad) != GST_PAD_LINK_OK) {
    GST_WARNING ("%s: cannot link the %s payloader to webrtcbin",
        id_.c_str (), kind_name (kind));
    return false;
  }
  s.pt = pt;
  gst_element_sync_state_with_parent (s.payloader);
  return true;
}

/* Our payloader of `kind` writes the transport-wide sequence number the
 * SDP maps to `id` (0: none), and the member's feedback about it feeds
 * our estimate (video's payloader only: rtpfunnel hands the same feedback
 * to every stream of the connection). */
void
Peer::send_twcc (Kind kind, int id)
{
  Slot & s = slots_[(int) kind];
  if (!id || !write_twcc (s.payloader, id))
    return;
  if (kind == Kind::Video) {
    cc_->set_video_ssrc (s.ssrc);
    Congestion::watch_payloader (cc_, s.payloader);
  }
}

bool
Peer::make_slot (Kind kind, GstCaps * prefs, int pt)
{
  Slot & s = slots_[(int) kind];
  Direction fixed = ideal (kind);
  if (fixed == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE || !prefs
      || gst_caps_is_empty (prefs))
    return false;
  g_autoptr (GstCaps) caps = gst_caps_copy (prefs);
  /* Without retransmission, no member is invited to send NACKs. */
  for (guint i = 0; !host_.retransmits () && i < gst_caps_get_size (caps); i++)
    gst_structure_remove_field (gst_caps_get_structure (caps, i),
        "rtcp-fb-nack");
  /* Nor, without FEC, to send Opus FEC. */
  for (guint i = 0; !host_.fec () && i < gst_caps_get_size (caps); i++)
    gst_structure_remove_field (gst_caps_get_structure (caps, i),
        "useinbandfec");
  if (sends (fixed)) {
    if (!make_payloader (kind, pt, nullptr))
      return false;
    send_twcc (kind, extension_id (prefs, TWCC_URI));
    if (kind == Kind::Video && host_.retransmits ())
      write_playout_delay (extension_id (prefs, PLAYOUT_DELAY_URI));
    g_object_get (s.webrtc_pad, "transceiver", &s.trans, NULL);
    /* The SSRC in the SDP from the start: without it the member cannot
     * tell which stream the track belongs to until a renegotiation. */
    gst_caps_set_simple (caps, "ssrc", G_TYPE_UINT, s.ssrc, NULL);
  } else {
    g_signal_emit_by_name (webrtc_, "add-transceiver", fixed, prefs, &s.trans);
  }
  if (!s.trans)
    return false;
  /* do-nack puts RTX (with its apt) in our offers and answers and answers
   * NACKs from it. Video only, as browsers do: Chromium refuses an audio
   * m-line that pairs an RTX SSRC with its stream. */
  g_object_set (s.trans, "codec-preferences", caps, "direction", fixed,
      "do-nack", (gboolean) (host_.retransmits () && kind == Kind::Video),
      NULL);
  use_fec (kind);
  s.fixed = fixed;
  GST_DEBUG ("%s: %s m-line, %s for webrtcbin", id_.c_str (), kind_name (kind),
      direction_name (fixed));
  return true;
}

void
Peer::feed (Kind kind, bool on)
{
  Slot & s = slots_[(int) kind];
  Outgoing *out = host_.outgoing (kind);
  if (on && !s.feed && s.payloader && out) {
    /* Media go through rtprtxsend from now on: it is to take the RTX SSRC
     * of the description just made, for good. */
    if (!s.rtx_ssrc && s.described_rtx_ssrc) {
      s.rtx_ssrc = s.described_rtx_ssrc;
      pin_rtx_ssrc (webrtc_, s.ssrc, s.rtx_ssrc);
    }
    /* Retransmissions within the member's estimate. */
    if (kind == Kind::Video && host_.congestion ().mode
        == CongestionControl::Gcc) {
      auto cc = cc_;
      for_each_made_by (GST_BIN (webrtc_), "rtprtxsend", [&cc] (GstElement
              * e) {
            Congestion::bound_retransmissions (cc, e);
          });
    }
    g_autoptr (GstPad) sink = gst_element_get_static_pad (s.payloader, "sink");
    s.feed = out->feed (sink, id_);
    /* A member that starts receiving gets a key frame at once, of the
     * layer it starts on (the top one). */
    GstElement *sw = s.feed->layer_switch ();
    out->force_key_unit (sw ? layer_switch_wanted (sw) : 0);
  } else if (!on && s.feed) {
    s.feed.reset ();
  }
}

/* Remote SDP (local = false): note what the member says for each of our
 * m-lines, and tell webrtcbin the mirror of its fixed direction. Local SDP
 * (local = true): tell the member our true directions. Other audio and
 * video m-lines are inactive both ways, so they never change either. */
void
Peer::rewrite (GstSDPMessage * sdp, bool local)
{
  for (guint i = 0; i < gst_sdp_message_medias_len (sdp); i++) {
    auto *media = const_cast<GstSDPMedia *> (gst_sdp_message_get_media (sdp,
            i));
    const char *type = gst_sdp_media_get_media (media);
    if (g_strcmp0 (type, "audio") != 0 && g_strcmp0 (type, "video") != 0)
      continue;
    Slot *slot = nullptr;
    for (Slot & s : slots_)
      if (s.trans && s.mline == i)
        slot = &s;
    if (!local) {
      Kind kind = g_strcmp0 (type, "audio") == 0 ? Kind::Audio : Kind::Video;
      std::lock_guard<std::mutex> guard (lock_);
      for (guint j = 0;; j++) {
        const char *v = gst_sdp_media_get_attribute_val_n (media, "ssrc", j);
        if (!v)
          break;
        guint ssrc;
        if (sscanf (v, "%u", &ssrc) == 1)
          remote_ssrcs_[ssrc] = kind;
      }
    }
    if (slot && local && slot->ssrc)
      slot->described_rtx_ssrc = set_rtx_ssrc (media, slot->ssrc,
          slot->rtx_ssrc);
    Direction d = GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    if (slot && local) {
      d = slot->local;
    } else if (slot) {
      slot->remote = media_direction (media);
      d = reverse (slot->fixed);
    }
    set_media_direction (media, d);
  }
}

bool
Peer::apply (GstWebRTCSDPType type, GstSDPMessage * sdp, bool local)
{
  GstSDPMessage *copy = nullptr;
  gst_sdp_message_copy (sdp, &copy);
  GstWebRTCSessionDescription *desc =
      gst_webrtc_session_description_new (type, copy);
  Promise p;
  g_signal_emit_by_name (webrtc_, local ? "set-local-description"
      : "set-remote-description", desc, p.get ());
  gst_webrtc_session_description_free (desc);
  std::string error;
  const GstStructure *reply = nullptr;
  if (p.wait (&reply, &error))
    return true;
  std::string what = std::string (local ? "our " : "its ")
      + gst_webrtc_sdp_type_to_string (type);
  if (local)
    GST_WARNING ("%s: setting %s failed: %s", id_.c_str (), what.c_str (),
        error.c_str ());
  else
    host_.peer_failed (id_, what + " was refused: " + error);
  return false;
}

GstSDPMessage *
Peer::parse (const std::string & text, const char *what)
{
  GstSDPMessage *sdp = nullptr;
  if (gst_sdp_message_new_from_text (text.c_str (), &sdp) == GST_SDP_OK
      && gst_sdp_message_medias_len (sdp) > 0)
    return sdp;
  if (sdp)
    gst_sdp_message_free (sdp);
  host_.peer_failed (id_, std::string ("its ") + what
      + " does not parse as SDP");
  return nullptr;
}

GstSDPMessage *
Peer::create (const char *what)
{
  Promise p;
  g_signal_emit_by_name (webrtc_, (std::string ("create-") + what).c_str (),
      nullptr, p.get ());
  std::string error;
  const GstStructure *reply = nullptr;
  GstWebRTCSessionDescription *desc = nullptr;
  if (p.wait (&reply, &error) && reply)
    gst_structure_get (reply, what, GST_TYPE_WEBRTC_SESSION_DESCRIPTION,
        &desc, NULL);
  if (!desc) {
    host_.peer_failed (id_, std::string ("creating an ") + what + " failed: "
        + error);
    return nullptr;
  }
  GstSDPMessage *sdp = nullptr;
  gst_sdp_message_copy (desc->sdp, &sdp);
  gst_webrtc_session_description_free (desc);
  return sdp;
}

void
Peer::send_sdp (const char *type, GstSDPMessage * sdp)
{
  g_autofree char *text = gst_sdp_message_as_text (sdp);
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type",
      (std::string ("stream:") + type).c_str ());
  json_object_set_string_member (msg, "to", id_.c_str ());
  JsonObject *data = json_object_new ();
  json_object_set_string_member (data, "type", type);
  json_object_set_string_member (data, "sdp", text);
  json_object_set_object_member (msg, "data", data);
  host_.send (msg);
  json_object_unref (msg);
}

/* ------------------------------------------------------------------ */
/* Negotiation */

void
Peer::sync ()
{
  if (closed_ || !host_.media_ready ())
    return;
  if (!master_) {
    if (!pending_offer_.empty ()) {
      std::string sdp = std::move (pending_offer_);
      pending_offer_.clear ();
      on_offer (sdp);
      return;
    }
    if (!negotiated_once_)
      return;   /* the master offers as soon as it knows us */
    for (int k = 0; k < KIND_COUNT; k++) {
      Slot & s = slots_[k];
      Direction w = wanted ((Kind) k);
      bool differs = s.trans ? intersect (w, reverse (s.remote)) != s.local
          : w != GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
      if (differs) {
        JsonObject *msg = json_object_new ();
        json_object_set_string_member (msg, "type", "stream:makeoffer");
        json_object_set_string_member (msg, "to", id_.c_str ());
        host_.send (msg);
        json_object_unref (msg);
        return;
      }
    }
    return;
  }

  bool changed = !negotiated_once_;
  for (int k = 0; k < KIND_COUNT; k++) {
    Kind kind = (Kind) k;
    Slot & s = slots_[k];
    Direction w = wanted (kind);
    if (!s.trans && w != GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE) {
      Outgoing *out = host_.outgoing (kind);
      const Codec *codec = out ? out->codec () : nullptr;
      g_autoptr (GstCaps) prefs = codec
          ? rtp_caps (*codec, codec->default_pt) : receivable_caps (kind);
      add_twcc (prefs, TWCC_ID);
      if (codec)
        offer_playout_delay (kind, prefs, PLAYOUT_DELAY_ID);
      if (make_slot (kind, prefs, codec ? codec->default_pt : -1))
        changed = true;
    }
    if (s.trans && w != s.local)
      changed = true;
  }
  if (changed)
    offer ();
}

void
Peer::offer ()
{
  if (closed_ || !master_ || !host_.media_ready ())
    return;
  GstWebRTCSignalingState state;
  g_object_get (webrtc_, "signaling-state", &state, NULL);
  if (state != GST_WEBRTC_SIGNALING_STATE_STABLE) {
    offer_again_ = true;
    return;
  }
  offer_again_ = false;

  GstSDPMessage *sdp = create ("offer");
  if (!sdp)
    return;
  /* Only the master makes m-lines, one per kind: the m-line of a kind is
   * that kind's slot (webrtcbin numbers its transceivers only later). */
  for (guint i = gst_sdp_message_medias_len (sdp); i-- > 0;) {
    const char *type = gst_sdp_media_get_media (gst_sdp_message_get_media (sdp,
            i));
    if (g_strcmp0 (type, "video") == 0)
      slots_[(int) Kind::Video].mline = i;
    else if (g_strcmp0 (type, "audio") == 0)
      slots_[(int) Kind::Audio].mline = i;
  }
  for (int k = 0; k < KIND_COUNT; k++) {
    Slot & s = slots_[k];
    s.local = s.trans ? wanted ((Kind) k)
        : GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
  }
  if (apply (GST_WEBRTC_SDP_TYPE_OFFER, sdp, true)) {
    rewrite (sdp, true);
    send_sdp ("offer", sdp);
    watch_answer (sdp);
  }
  gst_sdp_message_free (sdp);
}

/* An offer or its answer can be lost when a connection to the server drops
 * in that instant: while no answer has come, the offer goes again, now and
 * then. An answer to the first copy makes the later ones moot: a member
 * that answered already answers the same offer again, and answers that
 * find no offer waiting are ignored. */
void
Peer::watch_answer (GstSDPMessage * offer)
{
  if (resend_) {
    g_source_destroy (resend_);
    g_source_unref (resend_);
  }
  struct Resend
  {
    Peer *self;
    GstSDPMessage *offer;
  };
  GstSDPMessage *copy = nullptr;
  gst_sdp_message_copy (offer, &copy);
  resend_ = g_timeout_source_new (OFFER_RESEND_MS);
  g_source_set_callback (resend_, [] (gpointer data) -> gboolean {
    auto *r = static_cast<Resend *> (data);
    GstWebRTCSignalingState state;
    g_object_get (r->self->webrtc_, "signaling-state", &state, NULL);
    if (state != GST_WEBRTC_SIGNALING_STATE_HAVE_LOCAL_OFFER)
      return G_SOURCE_REMOVE;
    GST_INFO ("%s: no answer yet, offering again", r->self->id_.c_str ());
    r->self->send_sdp ("offer", r->offer);
    return G_SOURCE_CONTINUE;
  }, new Resend { this, copy }, [] (gpointer data) {
    auto *r = static_cast<Resend *> (data);
    gst_sdp_message_free (r->offer);
    delete r;
  });
  /* The mesh thread's context: the thread we run on. */
  g_source_attach (resend_, g_main_context_get_thread_default ());
}

void
Peer::stop_watching_answer ()
{
  if (resend_) {
    g_source_destroy (resend_);
    g_source_unref (resend_);
    resend_ = nullptr;
  }
}

void
Peer::on_offer (const std::string & text)
{
  if (closed_)
    return;
  if (master_) {
    GST_WARNING ("%s sent an offer, but we make the offers (larger id)",
        id_.c_str ());
    return;
  }
  if (!host_.media_ready ()) {
    pending_offer_ = text;
    return;
  }
  GstSDPMessage *offer = parse (text, "offer");
  if (!offer)
    return;

  /* The first offered m-line of a kind we have no m-line for becomes ours:
   * a transceiver made now is the one webrtcbin's answer picks. */
  std::vector<guint> refused;      /* m-lines of codecs we cannot decode */
  /* m-lines where we would send a codec the offer does not have */
  std::vector<std::pair<guint, const Codec *>> unsent;
  for (guint i = 0; i < gst_sdp_message_medias_len (offer); i++) {
    const GstSDPMedia *media = gst_sdp_message_get_media (offer, i);
    const char *type = gst_sdp_media_get_media (media);
    Kind kind = g_strcmp0 (type, "audio") == 0 ? Kind::Audio : Kind::Video;
    bool taken = false;
    for (Slot & s : slots_)
      taken = taken || (s.trans && s.mline == i);
    if (taken || slots_[(int) kind].trans || (g_strcmp0 (type, "audio") != 0
            && g_strcmp0 (type, "video") != 0))
      continue;
    g_autoptr (GstCaps) prefs = gst_caps_new_empty ();
    int pt = -1;
    if (sends (ideal (kind))) {
      const Codec *codec = host_.outgoing (kind)->codec ();
      std::vector<int> pts = payload_types (media, *codec);
      if (pts.empty ()) {
        GST_WARNING ("%s offers no %s for our %s", id_.c_str (), codec->name,
            kind_name (kind));
        cannot_receive (*codec);
        unsent.emplace_back (i, codec);
        continue;
      }
      pt = pts.front ();
      gst_caps_append (prefs, rtp_caps (*codec, pt));
      offer_playout_delay (kind, prefs,
          extension_id (media, PLAYOUT_DELAY_URI));
    } else {
      g_autoptr (GstCaps) ours = receivable_caps (kind);
      for (guint j = 0; j < gst_caps_get_size (ours); j++) {
        const Codec *c = codec_by_name (gst_structure_get_string (
                gst_caps_get_structure (ours, j), "encoding-name"));
        gst_caps_append (prefs, caps_for_pts (*c, payload_types (media, *c)));
      }
      if (gst_caps_is_empty (prefs) && host_.receives ()
          && host_.wants_recv (id_, kind) && cannot_decode (media))
        refused.push_back (i);
    }
    /* Transport-wide congestion control when the offer has it, with its
     * id. */
    add_twcc (prefs, extension_id (media, TWCC_URI));
    if (make_slot (kind, prefs, pt))
      slots_[(int) kind].mline = i;
  }

  rewrite (offer, false);
  bool ok = apply (GST_WEBRTC_SDP_TYPE_OFFER, offer, false);
  gst_sdp_message_free (offer);
  if (!ok)
    return;
  GstSDPMessage *answer = create ("answer");
  if (!answer)
    return;
  if (apply (GST_WEBRTC_SDP_TYPE_ANSWER, answer, true)) {
    for (int k = 0; k < KIND_COUNT; k++) {
      Slot & s = slots_[k];
      s.local = s.trans ? intersect (wanted ((Kind) k), reverse (s.remote))
          : GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    }
    rewrite (answer, true);
    /* An m-line whose codecs we cannot decode is refused as JSEP does,
     * with a port of 0, so that the member knows why it is not received
     * (webrtcbin answers it inactive, as one we do not want). */
    for (guint i : refused) {
      auto *media = const_cast<GstSDPMedia *> (gst_sdp_message_get_media (
              answer, i));
      if (media)
        gst_sdp_media_set_port_info (media, 0, 1);
    }
    /* And one where we would send what the member did not offer says
     * what that is, so that the member can tell that it has no decoder
     * for it (its offer has only codecs it decodes). */
    for (auto & u : unsent) {
      auto *media = const_cast<GstSDPMedia *> (gst_sdp_message_get_media (
              answer, u.first));
      if (media)
        gst_sdp_media_add_attribute (media, SENDS_ATTRIBUTE, u.second->name);
    }
    send_sdp ("answer", answer);
    negotiated ();
  }
  gst_sdp_message_free (answer);
}

void
Peer::on_answer (const std::string & text)
{
  if (closed_ || !master_)
    return;
  GstWebRTCSignalingState state;
  g_object_get (webrtc_, "signaling-state", &state, NULL);
  if (state != GST_WEBRTC_SIGNALING_STATE_HAVE_LOCAL_OFFER) {
    GST_DEBUG ("%s: answer without an offer, ignored", id_.c_str ());
    return;
  }
  GstSDPMessage *answer = parse (text, "answer");
  if (!answer)
    return;
  stop_watching_answer ();
  /* What we send and the member's answer refuses (a port of 0, or none of
   * our codec's payload types): the first m-line of each kind is ours. */
  bool seen[KIND_COUNT] = { false, false };
  for (guint i = 0; i < gst_sdp_message_medias_len (answer); i++) {
    const GstSDPMedia *media = gst_sdp_message_get_media (answer, i);
    Kind kind = g_strcmp0 (gst_sdp_media_get_media (media), "audio") == 0
        ? Kind::Audio : Kind::Video;
    Slot & s = slots_[(int) kind];
    Outgoing *out = host_.outgoing (kind);
    const Codec *codec = out ? out->codec () : nullptr;
    if (seen[(int) kind] || g_strcmp0 (gst_sdp_media_get_media (media),
            kind_name (kind)) != 0)
      continue;
    seen[(int) kind] = true;
    /* The member would send us a codec our offer lacked: we have no
     * decoder for it. */
    const Codec *sent = codec_by_name (gst_sdp_media_get_attribute_val (media,
            SENDS_ATTRIBUTE) ? gst_sdp_media_get_attribute_val (media,
            SENDS_ATTRIBUTE) : "");
    if (sent && sent->kind == kind && host_.receives ()
        && host_.wants_recv (id_, kind) && find_decoder (*sent).empty ())
      no_decoder (*sent);
    if (!codec || !s.trans || !sends (s.fixed))
      continue;
    /* Written only where the member's answer took it. */
    if (kind == Kind::Video)
      playout_->id = extension_id (media, PLAYOUT_DELAY_URI);
    GST_DEBUG ("%s: answer m-line %u (%s): port %u", id_.c_str (), i,
        kind_name (kind), gst_sdp_media_get_port (media));
    if (gst_sdp_media_get_port (media) == 0
        || payload_types (media, *codec).empty ())
      cannot_receive (*codec);
  }
  rewrite (answer, false);
  bool ok = apply (GST_WEBRTC_SDP_TYPE_ANSWER, answer, false);
  gst_sdp_message_free (answer);
  if (ok)
    negotiated ();
}

void
Peer::on_candidate (guint mline, const std::string & candidate)
{
  if (closed_ || candidate.empty ())
    return;
  g_signal_emit_by_name (webrtc_, "add-ice-candidate", mline,
      candidate.c_str ());
}

void
Peer::open_channel (const std::string & label,
    std::function<void (GstWebRTCDataChannel *)> ready)
{
  if (closed_) {
    ready (nullptr);
    return;
  }
  if (!negotiated_once_) {
    pending_channels_.emplace_back (label, std::move (ready));
    return;
  }
  GstWebRTCDataChannel *channel = nullptr;
  g_signal_emit_by_name (webrtc_, "create-data-channel", label.c_str (),
      nullptr, &channel);
  ready (channel);
  g_clear_object (&channel);
}

void
Peer::negotiated ()
{
  negotiated_once_ = true;
  tune_rtcp (webrtc_);
  Congestion::watch_sessions (cc_, webrtc_);
  auto waiting = std::move (pending_channels_);
  pending_channels_.clear ();
  for (auto & c : waiting)
    open_channel (c.first, std::move (c.second));
  for (int k = 0; k < KIND_COUNT; k++) {
    Slot & s = slots_[k];
    bool sending = s.trans && sends (s.local) && recvs (s.remote);
    bool receiving = s.trans && recvs (s.local) && sends (s.remote);
    GST_DEBUG ("%s: %s: sending %d, receiving %d", id_.c_str (),
        kind_name ((Kind) k), sending, receiving);
    feed ((Kind) k, sending);
    {
      std::lock_guard<std::mutex> guard (lock_);
      recv_[k].wanted = receiving;
    }
    expose ((Kind) k, receiving);
  }
  if (master_ && offer_again_)
    offer ();
}

void
Peer::cannot_receive (const Codec & codec)
{
  if (std::find (told_cannot_receive_.begin (), told_cannot_receive_.end (),
          codec.name) != told_cannot_receive_.end ())
    return;
  told_cannot_receive_.push_back (codec.name);
  GST_ELEMENT_WARNING (host_.bin (), STREAM, CODEC_NOT_FOUND,
      ("Member %s cannot receive %s: it gets no %s from this element.",
          id_.c_str (), codec.name, kind_name (codec.kind)), (nullptr));
}

bool
Peer::cannot_decode (const GstSDPMedia * media)
{
  /* Only what the member sends: a recvonly or inactive m-line is not. */
  if (gst_sdp_media_get_attribute_val (media, "recvonly")
      || gst_sdp_media_get_attribute_val (media, "inactive"))
    return false;
  bool found = false;
  for (guint i = 0; i < gst_sdp_media_attributes_len (media); i++) {
    const GstSDPAttribute *a = gst_sdp_media_get_attribute (media, i);
    if (g_strcmp0 (a->key, "rtpmap") != 0 || !a->value)
      continue;
    /* "96 H264/90000": the encoding name between the space and the slash. */
    const char *space = strchr (a->value, ' ');
    if (!space)
      continue;
    std::string name (space + 1);
    name = name.substr (0, name.find ('/'));
    const Codec *codec = codec_by_name (name);
    if (!codec || !find_decoder (*codec).empty ())
      continue;
    found = true;
    no_decoder (*codec);
  }
  return found;
}

void
Peer::no_decoder (const Codec & codec)
{
  /* Once per element and codec: every member sending it would say the
   * same. */
  std::string key = std::string ("peerjs-told-no-decoder-") + codec.name;
  GObject *element = G_OBJECT (host_.bin ());
  if (g_object_get_data (element, key.c_str ()))
    return;
  g_object_set_data (element, key.c_str (), GINT_TO_POINTER (1));
  GST_ELEMENT_WARNING (host_.bin (), STREAM, CODEC_NOT_FOUND,
      ("Member %s sends %s, which cannot be decoded here: install %s.",
          id_.c_str (), codec.name, missing_decoder_hint (codec).c_str ()),
      (nullptr));
}

/* ------------------------------------------------------------------ */

void
Peer::on_pad_added (GstPad * pad)
{
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  const GstStructure *s = caps ? gst_caps_get_structure (caps, 0) : nullptr;
  const char *media = s ? gst_structure_get_string (s, "media") : nullptr;
  const char *encoding = s ? gst_structure_get_string (s, "encoding-name")
      : nullptr;
  const Codec *codec = encoding ? codec_by_name (encoding) : nullptr;
  Kind kind = g_strcmp0 (media, "audio") == 0 ? Kind::Audio : Kind::Video;
  GstBin *bin = host_.bin ();

  std::unique_lock<std::mutex> guard (lock_);
  Recv & r = recv_[(int) kind];
  if (closing_)
    return;
  GstElement *decoder = nullptr;
  if (codec && !r.decoder && host_.receives ()) {
    std::string name = std::string ("dec-") + kind_name (kind) + "-" + id_;
    decoder = make_decoder (*codec, name,
        kind == Kind::Video ? video_frames_ : nullptr, host_.fec ());
  }
  GstElement *sink = decoder;
  if (decoder) {
    /* While the member's stream is not output (not yet, or no longer: it
     * stopped sending, or the pad was just removed), its data is dropped
     * here instead of failing the member as not-linked. */
    g_autoptr (GstPad) src = gst_element_get_static_pad (decoder, "src");
    drop_unless_linked (src);
  }
  if (!decoder) {
    /* Not ours to decode (or a second stream of the same kind): consume it
     * so webrtcbin never sees not-linked. */
    GST_INFO ("%s: not decoding %s (%s)", id_.c_str (), media ? media : "?",
        encoding ? encoding : "no caps");
    sink = gst_element_factory_make ("fakesink", nullptr);
    g_object_set (sink, "async", FALSE, "sync", FALSE, NULL);
    discards_.push_back (sink);
  } else {
    r.decoder = decoder;
  }
  bool on = r.wanted;
  guard.unlock ();

  /* Running and linked downstream before the first buffer comes. */
  gst_bin_add (bin, sink);
  gst_element_sync_state_with_parent (sink);
  if (decoder)
    expose (kind, on);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_link (pad, sinkpad);
}

/* rtpbin made a jitterbuffer for a stream of the member's (a streaming
 * thread; after webrtcbin's own handler). webrtcbin 1.22 gives it the
 * do-nack of whichever of our transceivers it looks at last, audio's
 * included; it is the stream's own kind that decides: video asks for lost
 * packets again, audio (never retransmitted) does not.
 *
 * A video jitterbuffer waits for a missing packet up to
 * retransmission-wait, while the pipeline is told only `latency`
 * (tell_latency): a retransmission over a slow link's queue takes longer
 * than the 30 ms that keeps the picture prompt, and a frame given up
 * costs a key frame, which on such a link is the next loss. Packets in
 * order are pushed as they come whatever the latency; only the frames
 * behind a late retransmission come out late, once, as Chromium shows
 * them. Audio is concealed instead, at `latency`. */
void
Peer::on_new_jitterbuffer (GstElement * jitterbuffer, guint ssrc)
{
  std::unique_lock<std::mutex> guard (lock_);
  auto it = remote_ssrcs_.find (ssrc);
  if (it == remote_ssrcs_.end ())
    return;
  bool video = it->second == Kind::Video;
  guard.unlock ();
  bool retransmits = video && host_.retransmits ();
  /* A packet is asked for again once a later one shows it missing, as
   * Chromium does; not also when the next one is later than the
   * jitterbuffer expected (rtx-next-seqnum): behind a slow link's queue
   * most are, and a pipeline behind 300 kbit/s asked for 300 to 430
   * packets in 30 s of which 30 to 60 were lost, the retransmissions
   * filling the queue further (Chromium behind it: 4 to 19). */
  g_object_set (jitterbuffer, "do-retransmission", (gboolean) retransmits,
      "rtx-next-seqnum", FALSE, NULL);
  guint latency = host_.latency_ms ();
  guint wait = host_.retransmission_wait_ms ();
  if (!retransmits || wait <= latency)
    return;
  /* Started by the first two packets in a row rather than held for the
   * whole wait. */
  g_object_set (jitterbuffer, "latency", wait, "faststart-min-packets", 2,
      NULL);
  g_object_set_data_full (G_OBJECT (jitterbuffer), FOLLOWS_ROUND_TRIP,
      new RetransmissionTimes (wait), [] (gpointer times) {
        delete static_cast<RetransmissionTimes *> (times);
      });
  g_autoptr (GstPad) sink = gst_element_get_static_pad (jitterbuffer, "sink");
  if (sink)
    gst_pad_add_probe (sink, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST
            | GST_PAD_PROBE_TYPE_EVENT_UPSTREAM), follow_packets,
        g_strdup (id_.c_str ()), g_free);
  g_autoptr (GstPad) src = gst_element_get_static_pad (jitterbuffer, "src");
  if (src) {
    gst_pad_add_probe (src, (GstPadProbeType)
        (GST_PAD_PROBE_TYPE_QUERY_UPSTREAM | GST_PAD_PROBE_TYPE_PULL),
        tell_latency, GUINT_TO_POINTER (latency), nullptr);
    gst_pad_add_probe (src, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST), follow_packets,
        g_strdup (id_.c_str ()), g_free);
  }
}

/* The packets ULPFEC recovers from are kept (rtpstorage) for webrtcbin's
 * latency and 50 ms (after webrtcbin's own handler); a lost packet is
 * only given up, and FEC asked to rebuild it, once the jitterbuffer's
 * retransmission wait is over: they are kept that long. */
void
Peer::on_new_storage (GstElement * storage)
{
  guint wait = MAX (host_.latency_ms (), host_.retransmits ()
      ? MAX (host_.retransmission_wait_ms (), RTX_WAIT_MAX_MS) : 0);
  g_object_set (storage, "size-time", (guint64) (wait + STORAGE_MARGIN_MS)
      * GST_MSECOND, NULL);
}

void
Peer::expose (Kind kind, bool on)
{
  std::lock_guard<std::mutex> serial (expose_lock_);
  std::unique_lock<std::mutex> guard (lock_);
  Recv & r = recv_[(int) kind];
  if (!r.decoder || closing_ || on == (r.output != nullptr))
    return;
  if (on) {
    g_autoptr (GstPad) src = gst_element_get_static_pad (r.decoder, "src");
    guard.unlock ();
    GstPad *output = host_.add_output (src, id_, kind);
    guard.lock ();
    r.output = output;
    return;
  }
  GstPad *output = r.output;
  r.output = nullptr;
  /* The member stopped sending: the wait for its next frame is no freeze. */
  if (kind == Kind::Video)
    video_frames_->last = GST_CLOCK_TIME_NONE;
  guard.unlock ();
  host_.remove_output (output, id_, kind);
  gst_object_unref (output);
}

namespace {

/* Packets rtprtxsend sent again and rtprtxreceive got back, in the RTP
 * session webrtcbin made for the aux streams: with max-bundle, one of each
 * per connection. */
struct RtxCounts
{
  guint sent = 0;
  guint received = 0;
  guint wait_ms = 0;            /* the longest video jitterbuffer's wait */
};

RtxCounts
count_rtx (GstElement * webrtc)
{
  RtxCounts counts;
  for_each_made_by (GST_BIN (webrtc), "rtprtxsend", [&counts] (GstElement * e) {
        guint n = 0;
        g_object_get (e, "num-rtx-packets", &n, NULL);
        counts.sent += n;
      });
  for_each_made_by (GST_BIN (webrtc), "rtprtxreceive", [&counts] (GstElement * e) {
        guint n = 0;
        g_object_get (e, "num-rtx-assoc-packets", &n, NULL);
        counts.received += n;
      });
  for_each_made_by (GST_BIN (webrtc), "rtpjitterbuffer", [&counts] (GstElement
          * e) {
        guint latency = 0;
        if (g_object_get_data (G_OBJECT (e), FOLLOWS_ROUND_TRIP))
          g_object_get (e, "latency", &latency, NULL);
        counts.wait_ms = MAX (counts.wait_ms, latency);
      });
  return counts;
}

FecCounts
count_fec (GstElement * webrtc, guint percent)
{
  FecCounts counts;
  counts.percent = percent;
  for_each_made_by (GST_BIN (webrtc), "rtpulpfecdec", [&counts] (GstElement * e) {
        guint n = 0;
        g_object_get (e, "recovered", &n, NULL);
        counts.recovered += n;
      });
  return counts;
}

void
add_fec_counts (GstStructure * s, const FecCounts & counts)
{
  gst_structure_set (s,
      "fec-packets-recovered", G_TYPE_UINT64, counts.recovered,
      "fec-percentage", G_TYPE_UINT, counts.percent, NULL);
  /* webrtcbin's remote-inbound statistics know only the last report block
   * of a report, about one of our streams (Peer::on_rtcp). */
  if (counts.reports)
    gst_structure_set (s,
        "remote-packets-lost", G_TYPE_INT64, counts.remote_lost,
        "remote-fraction-lost", G_TYPE_DOUBLE, counts.remote_fraction, NULL);
}

const char *
candidate_type (NiceCandidateType type)
{
  switch (type) {
    case NICE_CANDIDATE_TYPE_HOST:
      return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
      return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
      return "prflx";
    case NICE_CANDIDATE_TYPE_RELAYED:
      return "relay";
  }
  return "";
}

/* The candidate types of the pair ICE selected, ours and the member's;
 * empty before there is one. From libnice itself: webrtcbin 1.22's
 * get-stats gives them the wrong way round (its local-candidate entry
 * carries the member's address). */
struct SelectedPair
{
  std::string local, remote;
};

SelectedPair
selected_pair (GstElement * webrtc)
{
  SelectedPair pair;
  g_autoptr (GObject) ice = nullptr;
  g_object_get (webrtc, "ice-agent", &ice, NULL);
  if (!ice || !g_object_class_find_property (G_OBJECT_GET_CLASS (ice),
          "agent"))
    return pair;
  g_autoptr (GObject) agent = nullptr;
  g_object_get (ice, "agent", &agent, NULL);
  if (!agent || !NICE_IS_AGENT (agent))
    return pair;
  /* One stream with max-bundle; its id grows with renegotiations that
   * replace it. */
  for (guint stream = 1; stream <= 16; stream++) {
    NiceCandidate *local = nullptr, *remote = nullptr;
    if (nice_agent_get_selected_pair (NICE_AGENT (agent), stream,
            NICE_COMPONENT_TYPE_RTP, &local, &remote) && local && remote) {
      pair.local = candidate_type (local->type);
      pair.remote = candidate_type (remote->type);
    }
  }
  return pair;
}

}  // namespace

void
Peer::stats (std::function<void (GstStructure *)> post)
{
  if (closed_)
    return;
  struct Request
  {
    Peer *self;
    RtxCounts rtx;
    FecCounts fec;
    SelectedPair pair;
    std::function<void (GstStructure *)> post;
  };
  GstPromise *p = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *req = static_cast<Request *> (data);
        const GstStructure *reply = gst_promise_get_reply (p);
        if (reply && !gst_structure_has_field (reply, "error")) {
          GstStructure *s = req->self->summarize (reply, req->rtx.sent,
              req->rtx.received, req->rtx.wait_ms);
          s = req->self->cc_->add_stats (s);
          add_fec_counts (s, req->fec);
          gst_structure_set (s,
              "playout-delay", G_TYPE_UINT,
              req->self->playout_->written_ms.load (),
              "local-candidate-type", G_TYPE_STRING, req->pair.local.c_str (),
              "remote-candidate-type", G_TYPE_STRING,
              req->pair.remote.c_str (), NULL);
          req->post (s);
        }
      }, new Request { this, count_rtx (webrtc_), count_reports (),
              selected_pair (webrtc_), std::move (post) },
      [] (gpointer data) { delete static_cast<Request *> (data); });
  g_signal_emit_by_name (webrtc_, "get-stats", nullptr, p);
  gst_promise_unref (p);
}

GstStructure *
Peer::summarize (const GstStructure * reply, guint rtx_sent,
    guint rtx_received, guint wait_ms)
{
  struct Sum
  {
    guint64 bytes_in = 0, bytes_out = 0;
    gint64 lost = 0, remote_lost = 0;
    double jitter = 0, rtt = 0, remote_fraction_lost = 0;
    /* Feedback the member sent us (about what we send), and we sent it. */
    guint64 nacks_in = 0, plis_in = 0, firs_in = 0;
    guint64 nacks_out = 0, plis_out = 0, firs_out = 0;
  } sum;
  gst_structure_foreach (reply, [] (GQuark, const GValue * v,
          gpointer data) -> gboolean {
    auto *sum = static_cast<Sum *> (data);
    if (!GST_VALUE_HOLDS_STRUCTURE (v))
      return TRUE;
    const GstStructure *s = gst_value_get_structure (v);
    GstWebRTCStatsType type;
    if (!gst_structure_get (s, "type", GST_TYPE_WEBRTC_STATS_TYPE, &type,
            NULL))
      return TRUE;
    guint64 u = 0;
    gint64 i = 0;
    guint n = 0;
    double d = 0;
    if (type == GST_WEBRTC_STATS_INBOUND_RTP) {
      if (gst_structure_get_uint64 (s, "bytes-received", &u))
        sum->bytes_in += u;
      /* The RTP source's count (RFC 3550: expected less received): the
       * inbound-rtp field is the jitterbuffer's, and webrtcbin 1.22 does
       * not always find the right jitterbuffer. */
      const GstStructure *source = nullptr;
      int lost = 0;
      if (gst_structure_get (s, "gst-rtpsource-stats", GST_TYPE_STRUCTURE,
              &source, NULL) && source) {
        if (gst_structure_get_int (source, "packets-lost", &lost))
          sum->lost += lost;
        gst_structure_free (const_cast<GstStructure *> (source));
      } else if (gst_structure_get_int64 (s, "packets-lost", &i)) {
        sum->lost += i;
      }
      if (gst_structure_get_double (s, "jitter", &d))
        sum->jitter = MAX (sum->jitter, d);
      if (gst_structure_get_uint (s, "nack-count", &n))
        sum->nacks_out += n;
      if (gst_structure_get_uint (s, "pli-count", &n))
        sum->plis_out += n;
      if (gst_structure_get_uint (s, "fir-count", &n))
        sum->firs_out += n;
    } else if (type == GST_WEBRTC_STATS_OUTBOUND_RTP) {
      if (gst_structure_get_uint64 (s, "bytes-sent", &u))
        sum->bytes_out += u;
      if (gst_structure_get_uint (s, "nack-count", &n))
        sum->nacks_in += n;
      if (gst_structure_get_uint (s, "pli-count", &n))
        sum->plis_in += n;
      if (gst_structure_get_uint (s, "fir-count", &n))
        sum->firs_in += n;
    } else if (type == GST_WEBRTC_STATS_REMOTE_INBOUND_RTP) {
      if (gst_structure_get_double (s, "round-trip-time", &d))
        sum->rtt = MAX (sum->rtt, d);
      if (gst_structure_get_int64 (s, "packets-lost", &i))
        sum->remote_lost += i;
      if (gst_structure_get_double (s, "fraction-lost", &d))
        sum->remote_fraction_lost = MAX (sum->remote_fraction_lost, d);
    }
    return TRUE;
  }, &sum);

  GstClockTime now = gst_util_get_timestamp ();
  guint64 rate_in = 0, rate_out = 0;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (GST_CLOCK_TIME_IS_VALID (last_stats_) && now > last_stats_) {
      double secs = (double) (now - last_stats_) / GST_SECOND;
      if (sum.bytes_in >= last_bytes_in_)
        rate_in = (guint64) ((sum.bytes_in - last_bytes_in_) * 8 / secs);
      if (sum.bytes_out >= last_bytes_out_)
        rate_out = (guint64) ((sum.bytes_out - last_bytes_out_) * 8 / secs);
    }
    last_stats_ = now;
    last_bytes_in_ = sum.bytes_in;
    last_bytes_out_ = sum.bytes_out;
  }
  return gst_structure_new (message::STATS,
      "member", G_TYPE_STRING, id_.c_str (),
      "bitrate-in", G_TYPE_UINT64, rate_in,
      "bitrate-out", G_TYPE_UINT64, rate_out,
      "bytes-received", G_TYPE_UINT64, sum.bytes_in,
      "bytes-sent", G_TYPE_UINT64, sum.bytes_out,
      "packets-lost", G_TYPE_INT64, sum.lost,
      "jitter", G_TYPE_DOUBLE, sum.jitter,
      "round-trip-time", G_TYPE_DOUBLE, sum.rtt,
      "remote-packets-lost", G_TYPE_INT64, sum.remote_lost,
      "remote-fraction-lost", G_TYPE_DOUBLE, sum.remote_fraction_lost,
      "nacks-received", G_TYPE_UINT64, sum.nacks_in,
      "plis-received", G_TYPE_UINT64, sum.plis_in,
      "firs-received", G_TYPE_UINT64, sum.firs_in,
      "rtx-packets-sent", G_TYPE_UINT64, (guint64) rtx_sent,
      "nacks-sent", G_TYPE_UINT64, sum.nacks_out,
      "plis-sent", G_TYPE_UINT64, sum.plis_out,
      "firs-sent", G_TYPE_UINT64, sum.firs_out,
      "rtx-packets-received", G_TYPE_UINT64, (guint64) rtx_received,
      "retransmission-wait", G_TYPE_UINT, wait_ms,
      "frames-received", G_TYPE_UINT64, video_frames_->frames.load (),
      "freezes", G_TYPE_UINT64, video_frames_->freezes.load (),
      "frozen-ms", G_TYPE_UINT64,
      (guint64) (video_frames_->frozen_ns.load () / GST_MSECOND), NULL);
}

void
unblock_data_channels (GstBin * bin)
{
  /* FLUSH_START is what ends sctpenc's wait for room. */
  for_each_made_by (bin, "sctpenc", [] (GstElement * e) {
        gst_element_foreach_sink_pad (e, [] (GstElement *, GstPad * pad,
                gpointer) -> gboolean {
              gst_pad_send_event (pad, gst_event_new_flush_start ());
              return TRUE;
            }, nullptr);
      });
}

void
Peer::close ()
{
  if (closed_)
    return;
  closed_ = true;
  GST_DEBUG ("%s: closing", id_.c_str ());
  stop_watching_answer ();
  auto waiting = std::move (pending_channels_);
  pending_channels_.clear ();
  for (auto & c : waiting)
    c.second (nullptr);
  {
    std::lock_guard<std::mutex> guard (lock_);
    closing_ = true;
  }
  GstBin *bin = host_.bin ();
  unwatch_reports ();
  g_signal_handlers_disconnect_by_data (webrtc_, this);
  {
    g_autoptr (GstElement) rtpbin = gst_bin_get_by_name (GST_BIN (webrtc_),
        "rtpbin");
    if (rtpbin)
      g_signal_handlers_disconnect_by_data (rtpbin, this);
  }
  for (int k = 0; k < KIND_COUNT; k++)
    feed ((Kind) k, false);
  g_clear_object (&channel_);
  /* Going to NULL would wait on sctpenc if the member stopped reading. */
  unblock_data_channels (GST_BIN (webrtc_));
  /* Locked first: the application thread may be changing the bin's state
   * meanwhile, and would set it back up before it is out of the bin. */
  gst_element_set_locked_state (webrtc_, TRUE);
  gst_element_set_state (webrtc_, GST_STATE_NULL);

  std::vector<GstElement *> gone = discards_;
  discards_.clear ();
  for (int k = 0; k < KIND_COUNT; k++) {
    Recv & r = recv_[k];
    if (r.output) {
      host_.remove_output (r.output, id_, (Kind) k);
      gst_clear_object (&r.output);
    }
    Slot & s = slots_[k];
    for (GstElement *e : { r.decoder, s.payloader })
      if (e)
        gone.push_back (e);
    r.decoder = s.payloader = nullptr;
    gst_clear_object (&s.webrtc_pad);
    gst_clear_object (&s.trans);
  }
  for (GstElement *e : gone) {
    gst_element_set_locked_state (e, TRUE);
    gst_element_set_state (e, GST_STATE_NULL);
    gst_bin_remove (bin, e);
  }
  gst_bin_remove (bin, webrtc_);
  webrtc_ = nullptr;
  GST_DEBUG ("%s: closed", id_.c_str ());
}

/* ------------------------------------------------------------------ */
/* Forward error correction */

/* Video: ULPFEC in RED (webrtcbin puts red and ulpfec, and RTX for red, in
 * our offers and answers, wraps what we send in RED, and recovers packets
 * from the member's FEC). Nothing extra is sent until the member reports
 * loss: follow_loss sizes it. Audio FEC is Opus' own (media.cpp). */
namespace {

/* rtpredenc 1.22.0 (Debian bookworm's) makes each RED packet without the
 * RTP header extensions of the packet it wraps, but for a placeholder of
 * the transport-wide sequence number that it gives the extension id 1
 * whatever the SDP said (mended in later 1.22 releases). The member's
 * rtpsession then sees no transport-wide sequence number in our video and
 * sends no feedback for it, and congestion control is left with receiver
 * reports. Each RED packet gets its wrapped packet's extensions instead
 * (rtpsession numbers it afterwards): rtpredenc pushes it from within the
 * chain of the packet it wraps, so the last packet in is the one a packet
 * out wraps (same sequence number). */
struct RedExtensions
{
  std::mutex lock;
  bool valid = false;
  guint16 seq = 0;
  guint16 bits = 0;
  std::vector<guint8> data;
};

GstPadProbeReturn
red_packet_in (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *x = static_cast<RedExtensions *> (data);
  GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
  std::lock_guard<std::mutex> guard (x->lock);
  x->valid = false;
  if (!gst_rtp_buffer_map (GST_PAD_PROBE_INFO_BUFFER (info), GST_MAP_READ,
          &rtp))
    return GST_PAD_PROBE_OK;
  gpointer ext = nullptr;
  guint words = 0;
  if (gst_rtp_buffer_get_extension_data (&rtp, &x->bits, &ext, &words)
      && ext && words) {
    x->valid = true;
    x->seq = gst_rtp_buffer_get_seq (&rtp);
    x->data.assign (static_cast<guint8 *> (ext),
        static_cast<guint8 *> (ext) + words * 4);
  }
  gst_rtp_buffer_unmap (&rtp);
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn
red_packet_out (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *x = static_cast<RedExtensions *> (data);
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
  std::lock_guard<std::mutex> guard (x->lock);
  if (!x->valid || !gst_rtp_buffer_map (buf, GST_MAP_READ, &rtp))
    return GST_PAD_PROBE_OK;
  bool wraps = gst_rtp_buffer_get_seq (&rtp) == x->seq;
  gst_rtp_buffer_unmap (&rtp);
  if (!wraps)
    return GST_PAD_PROBE_OK;
  buf = gst_buffer_make_writable (buf);
  if (gst_rtp_buffer_map (buf, GST_MAP_READWRITE, &rtp)) {
    gpointer ext = nullptr;
    guint16 bits = 0;
    guint words = 0;
    if (gst_rtp_buffer_set_extension_data (&rtp, x->bits,
            x->data.size () / 4)
        && gst_rtp_buffer_get_extension_data (&rtp, &bits, &ext, &words)
        && words * 4 == x->data.size ())
      memcpy (ext, x->data.data (), x->data.size ());
    gst_rtp_buffer_unmap (&rtp);
  }
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  return GST_PAD_PROBE_OK;
}

void
keep_red_extensions (GstElement * red)
{
  g_autoptr (GstPad) sink = gst_element_get_static_pad (red, "sink");
  g_autoptr (GstPad) src = gst_element_get_static_pad (red, "src");
  if (!sink || !src)
    return;
  auto *x = new RedExtensions;
  gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_BUFFER, red_packet_in, x,
      nullptr);
  /* The src pad's probe owns it: both pads go with the element. */
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, red_packet_out, x,
      [] (gpointer data) { delete static_cast<RedExtensions *> (data); });
}

}  // namespace

void
Peer::use_fec (Kind kind)
{
  Slot & s = slots_[(int) kind];
  if (!host_.fec () || kind != Kind::Video || !s.trans)
    return;
  g_object_set (s.trans, "fec-type", GST_WEBRTC_FEC_TYPE_ULP_RED,
      "fec-percentage", 0u, NULL);
  if (red_watched_)
    return;
  /* webrtcbin makes its RED encoder when the session starts sending. */
  red_watched_ = true;
  g_signal_connect (webrtc_, "deep-element-added", G_CALLBACK (+[] (GstBin *,
              GstBin *, GstElement * e, gpointer) {
        GstElementFactory *f = gst_element_get_factory (e);
        if (f && g_str_equal (GST_OBJECT_NAME (f), "rtpredenc"))
          keep_red_extensions (e);
      }), nullptr);
  for_each_made_by (GST_BIN (webrtc_), "rtpredenc", keep_red_extensions);
}

/* rtpsession keeps only the last report block a member sent, whichever of
 * our streams it was about: every block is read here as it comes (a
 * streaming thread) instead. */
void
Peer::on_rtcp (GstBuffer * buffer)
{
  GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
  if (!gst_rtcp_buffer_map (buffer, GST_MAP_READ, &rtcp))
    return;
  std::lock_guard<std::mutex> guard (loss_lock_);
  GstRTCPPacket packet;
  for (gboolean more = gst_rtcp_buffer_get_first_packet (&rtcp, &packet);
      more; more = gst_rtcp_packet_move_to_next (&packet)) {
    GstRTCPType type = gst_rtcp_packet_get_type (&packet);
    if (type != GST_RTCP_TYPE_RR && type != GST_RTCP_TYPE_SR)
      continue;
    for (guint i = 0; i < gst_rtcp_packet_get_rb_count (&packet); i++) {
      guint32 ssrc, ext_highest, jitter, lsr, dlsr;
      guint8 fraction;
      gint32 lost;
      gst_rtcp_packet_get_rb (&packet, i, &ssrc, &fraction, &lost,
          &ext_highest, &jitter, &lsr, &dlsr);
      for (int k = 0; k < KIND_COUNT; k++)
        if (ssrc && ssrc == reported_ssrcs_[k])
          loss_[k].report (fraction, lost, ext_highest);
    }
  }
  gst_rtcp_buffer_unmap (&rtcp);
}

/* The RTP sessions exist once a description was set: each is watched
 * from the first poll that finds it. */
void
Peer::watch_reports ()
{
  for_each_rtp_session (webrtc_, [this] (guint id, GObject * session) {
        if (id >= report_sessions_.size () || report_sessions_[id])
          return;
        g_signal_connect (session, "on-receiving-rtcp", G_CALLBACK (+[]
                (GObject *, GstBuffer * buffer, gpointer data) {
              static_cast<Peer *> (data)->on_rtcp (buffer);
            }), this);
        report_sessions_[id] = G_OBJECT (g_object_ref (session));
      });
}

void
Peer::unwatch_reports ()
{
  for (GObject *&session : report_sessions_) {
    if (!session)
      continue;
    g_signal_handlers_disconnect_by_data (session, this);
    g_clear_object (&session);
  }
}

/* ------------------------------------------------------------------ */
/* Playout delay */

/* A member that loses our video is asked to hold each frame long enough
 * for a retransmission to come in time, with the playout-delay RTP header
 * extension (http://www.webrtc.org/experiments/rtp-hdrext/playout-delay:
 * the least and the most a receiver is to delay a frame, in 10 ms units),
 * which Chromium takes as a floor for its own delay. A frame whose last
 * packet was lost is found incomplete only when a later packet comes, a
 * frame interval later or more, and its retransmission takes a round trip
 * from there; Chromium holds frames 10 to 30 ms on a link without jitter,
 * and showed a frame that came later than that at once, or not at all when
 * the next came within the same display refresh: at 10 % loss it showed
 * 813 and 816 of 869 and 871 frames decoded in 30 s, against 871 of 883
 * held 101 ms (docs/performance.md, "Frames held for a retransmission").
 * Our receiving elements wait for retransmissions on their own
 * (RetransmissionTimes) and ignore the extension; only an element that
 * publishes video puts it in its SDP (offer_playout_delay). */
namespace {

/* The most: Chromium's own (10 s). A smaller one would be a limit, and
 * one of 500 ms or less with a least of 0 ("none" below) makes it show
 * frames as soon as they are decoded. */
constexpr guint PLAYOUT_DELAY_MAX_MS = 10000;
/* After the last loss reported, the delay is held for FEC_HOLD, and
 * then "none" is written for this long, so that the member hears of it. */
constexpr gint64 PLAYOUT_DELAY_END_US = 3 * G_USEC_PER_SEC;
/* A frame whose last packet was lost is found incomplete when a later
 * packet comes: the next frame's first, or when that is lost too, the
 * one after it. */
constexpr double PLAYOUT_FRAMES = 2;
/* The frame interval when the caps give no frame rate. */
constexpr double PLAYOUT_FRAME_MS = 50;
/* How fast the least written rises (ms per second), Chromium's own pace
 * for its delay: Chromium holds frames at once for at least a new least,
 * so a rise written in one step stops the picture for that long. A round
 * trip that grew from 1 to 150 ms behind a full queue raised the least
 * from 120 to 330-440 ms, and a page froze 250 ms each time. It falls at
 * once: Chromium then comes down at that pace of its own. */
constexpr double PLAYOUT_DELAY_RISE_MS_PER_S = 100;

/* The least to write now: `d.min_ms`, reached at PLAYOUT_DELAY_RISE_MS_PER_S
 * from below. A pause between packets (none written meanwhile) counts as
 * 100 ms at most. */
guint
playout_delay_level (PlayoutDelay & d, gint64 now)
{
  double want = d.min_ms.load ();
  gint64 since = d.level_at_us ? MIN (now - d.level_at_us,
      G_USEC_PER_SEC / 10) : 0;
  d.level_ms = MIN (want, d.level_ms + PLAYOUT_DELAY_RISE_MS_PER_S * since
      / G_USEC_PER_SEC);
  d.level_at_us = now;
  d.written_ms = 10 * (guint) (d.level_ms / 10);
  return d.written_ms;
}

GstPadProbeReturn
write_playout_delay_probe (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  PlayoutDelay & d = **static_cast<std::shared_ptr<PlayoutDelay> *> (data);
  int id = d.id.load ();
  gint64 now = g_get_monotonic_time ();
  if (!id || now > d.until_us.load ())
    return GST_PAD_PROBE_OK;
  guint least = playout_delay_level (d, now) / 10,
      most = PLAYOUT_DELAY_MAX_MS / 10;
  const guint8 bytes[3] = { (guint8) (least >> 4),
    (guint8) (((least & 0xf) << 4) | (most >> 8)), (guint8) (most & 0xff) };
  for_each_probed_buffer_writable (info, [id, &bytes] (GstBuffer * buffer) {
        GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
        if (!gst_rtp_buffer_map (buffer, GST_MAP_READWRITE, &rtp))
          return;
        gst_rtp_buffer_add_extension_onebyte_header (&rtp, id, bytes,
            sizeof (bytes));
        gst_rtp_buffer_unmap (&rtp);
      });
  return GST_PAD_PROBE_OK;
}

/* A frame interval, from the payloader's caps. */
double
frame_interval_ms (GstElement * payloader_bin)
{
  g_autoptr (GstPad) sink = gst_element_get_static_pad (payloader_bin,
      "sink");
  g_autoptr (GstCaps) caps = sink ? gst_pad_get_current_caps (sink)
      : nullptr;
  gint n = 0, d = 0;
  if (!caps || gst_caps_is_empty (caps)
      || !gst_structure_get_fraction (gst_caps_get_structure (caps, 0),
          "framerate", &n, &d) || n <= 0 || d <= 0)
    return PLAYOUT_FRAME_MS;
  return 1000.0 * d / n;
}

/* How long a member that loses our video is asked to hold each frame:
 * frames `frame_ms` apart, retransmissions that take `rtt_ms`; room for a
 * retransmission lost once and asked again, as the receiving side's wait
 * has (retransmission_wait). */
guint
playout_delay_ms (double frame_ms, double rtt_ms)
{
  double hold = PLAYOUT_FRAMES * frame_ms + RTX_WAIT_RTTS * rtt_ms
      + RTX_WAIT_MARGIN_MS;
  return 10 * (guint) std::ceil (MIN (hold, (double) RTX_WAIT_MAX_MS) / 10);
}

}  // namespace

/* Video we send, where we retransmit: the extension in our offer (`id`)
 * or answer (the offer's `id`; 0: it has none). */
void
Peer::offer_playout_delay (Kind kind, GstCaps * prefs, int id)
{
  if (kind == Kind::Video && host_.retransmits ())
    add_extension (prefs, id, PLAYOUT_DELAY_URI);
}

/* Our video payloader writes the extension with `id` (0: not negotiated;
 * on_answer takes the member's) while follow_loss asks for a delay. */
void
Peer::write_playout_delay (int id)
{
  Slot & s = slots_[(int) Kind::Video];
  playout_->id = id;
  if (!s.payloader)
    return;
  g_autoptr (GstPad) src = gst_element_get_static_pad (s.payloader, "src");
  gst_pad_add_probe (src, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), write_playout_delay_probe,
      new std::shared_ptr<PlayoutDelay> (playout_), [] (gpointer data) {
        delete static_cast<std::shared_ptr<PlayoutDelay> *> (data);
      });
}

/* The delay follows the member's reports: asked from the first loss of
 * video, held FEC_HOLD after the last, following the round trip; the
 * probe rises to it (playout_delay_level). */
void
Peer::follow_playout_delay (double video_loss, GstClockTime now)
{
  Slot & video = slots_[(int) Kind::Video];
  if (!playout_->id || !video.payloader)
    return;
  if (video_loss > 0)
    video_lossy_at_ = now;
  bool lossy = GST_CLOCK_TIME_IS_VALID (video_lossy_at_)
      && now - video_lossy_at_ < FEC_HOLD;
  guint was = playout_->min_ms;
  guint delay = lossy ? playout_delay_ms (frame_interval_ms (video.payloader),
      cc_->reported_round_trip_us () / 1000.0) : 0;
  if (delay == was)
    return;
  if (!delay || !was)
    GST_INFO ("%s: %s: asks the member to hold video %u ms (rising to it "
        "at %.0f ms a second)", id_.c_str (), lossy ? "video lost"
        : "no loss lately", delay, PLAYOUT_DELAY_RISE_MS_PER_S);
  else
    GST_DEBUG ("%s: asks the member to hold video %u ms (was %u)",
        id_.c_str (), delay, was);
  playout_->min_ms = delay;
  playout_->until_us = delay ? G_MAXINT64
      : g_get_monotonic_time () + PLAYOUT_DELAY_END_US;
}

FecCounts
Peer::count_reports ()
{
  FecCounts counts = count_fec (webrtc_, video_fec_percent_.load ());
  std::lock_guard<std::mutex> guard (loss_lock_);
  for (const LossMeter & m : loss_) {
    gint64 lost;
    double fraction;
    if (!m.latest (&lost, &fraction))
      continue;
    counts.reports = true;
    counts.remote_lost += lost;
    counts.remote_fraction = std::max (counts.remote_fraction, fraction);
  }
  return counts;
}

void
Peer::follow_round_trip ()
{
  if (closed_)
    return;
  guint floor = host_.retransmission_wait_ms ();
  for_each_made_by (GST_BIN (webrtc_), "rtpjitterbuffer",
      [this, floor] (GstElement * jitterbuffer) {
        auto *times = static_cast<RetransmissionTimes *> (g_object_get_data
            (G_OBJECT (jitterbuffer), FOLLOWS_ROUND_TRIP));
        if (!times)
          return;
        times->floor_ms_ = floor;
        times->follow (jitterbuffer, id_.c_str (), true);
      });
}

double
Peer::follow_loss (GstClockTime now)
{
  if (closed_)
    return -1;
  watch_reports ();
  double loss[KIND_COUNT];
  {
    std::lock_guard<std::mutex> guard (loss_lock_);
    for (int k = 0; k < KIND_COUNT; k++) {
      guint ssrc = slots_[k].payloader ? slots_[k].ssrc : 0;
      if (reported_ssrcs_[k] != ssrc) {
        reported_ssrcs_[k] = ssrc;
        loss_[k].reset ();
      }
      loss[k] = loss_[k].take ();
    }
  }
  Slot & video = slots_[(int) Kind::Video];
  if (host_.fec () && video.trans && video.payloader) {
    int was = video_fec_.percent ();
    /* Loss while the link's queue grew is the queue overflowing: FEC
     * would add to the load (ours to this member is set from the
     * estimate, which falls); it is for random loss. */
    double video_loss = loss[(int) Kind::Video];
    if (video_loss > 0 && cc_->overused_within (FEC_CONGESTION_MS)) {
      GST_DEBUG ("%s: %.1f %% of video lost while the link was overused: "
          "no FEC for it", id_.c_str (), video_loss * 100);
      video_loss = 0;
    }
    int percent = video_fec_.update (video_loss, now);
    if (percent != was) {
      GST_INFO ("%s: %.1f %% of video lost, ULPFEC at %d %%", id_.c_str (),
          MAX (loss[(int) Kind::Video], 0.0) * 100, percent);
      g_object_set (video.trans, "fec-percentage", (guint) percent, NULL);
      video_fec_percent_ = percent;
    }
  }
  if (host_.retransmits ())
    follow_playout_delay (loss[(int) Kind::Video], now);
  return loss[(int) Kind::Audio];
}

}  // namespace peerjs
