/* Congestion control: transport-wide congestion control (TWCC) in the SDP
 * and on our payloaders, and what feeds each member's bandwidth estimate
 * (estimator.h) from webrtcbin: the TWCC feedback rtpsession turns into
 * RTPTWCCPackets events (pushed upstream from its send_rtp_sink, through
 * rtpfunnel to every payloader of the connection), and the member's RTCP
 * (receiver reports' fraction lost, REMB) from the internal session's
 * on-receiving-rtcp. The session sets the video encoder's bitrate from the
 * estimates (Session::adapt_bitrate, here too). */
#pragma once

#include "estimator.h"

#include <gst/gst.h>
#include <gst/sdp/sdp.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

namespace peerjs {

enum class CongestionControl { Off = 0, Gcc = 1 };

/* What the element's properties say, resolved (max and start never 0). */
struct CcSettings
{
  CongestionControl mode = CongestionControl::Gcc;
  guint min = 100000;          /* bit/s */
  guint max = 1000000;
  guint start = 1000000;
};

constexpr const char *TWCC_URI =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/* The extmap id our offers give it (Chromium's too). */
constexpr int TWCC_ID = 3;

/* The id `media` maps the RTP header extension `uri` to; 0 for none. */
int extension_id (const GstSDPMedia * media, const char *uri);
/* The id caps map it to (extmap-N fields); 0 for none. */
int extension_id (const GstCaps * caps, const char *uri);
/* Every structure of `caps` maps the extension `uri` to `id` (an extmap-N
 * field, which webrtcbin puts in our SDP). Nothing when `id` is 0. */
void add_extension (GstCaps * caps, int id, const char *uri);

/* Each buffer a data probe sees: its buffer, or its list's. */
template <typename F>
void
for_each_probed_buffer (GstPadProbeInfo * info, F && f)
{
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    GstBufferList *list = GST_PAD_PROBE_INFO_BUFFER_LIST (info);
    for (guint i = 0; i < gst_buffer_list_length (list); i++)
      f (gst_buffer_list_get (list, i));
  } else {
    f (GST_PAD_PROBE_INFO_BUFFER (info));
  }
}
/* The same, each buffer made writable first: `f` may change it. */
template <typename F>
void
for_each_probed_buffer_writable (GstPadProbeInfo * info, F && f)
{
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    GstBufferList *list = gst_buffer_list_make_writable
        (GST_PAD_PROBE_INFO_BUFFER_LIST (info));
    for (guint i = 0; i < gst_buffer_list_length (list); i++)
      f (gst_buffer_list_get_writable (list, i));
    GST_PAD_PROBE_INFO_DATA (info) = list;
  } else {
    GstBuffer *buffer = gst_buffer_make_writable
        (GST_PAD_PROBE_INFO_BUFFER (info));
    f (buffer);
    GST_PAD_PROBE_INFO_DATA (info) = buffer;
  }
}
/* Every structure of `caps` maps the TWCC extension to `id` and asks for
 * transport-cc feedback (add_extension ()). Nothing when `id` is 0. */
void add_twcc (GstCaps * caps, int id);
/* The payloader in `payloader_bin` (make_payloader) writes the TWCC
 * extension with `id`; false when it cannot. */
bool write_twcc (GstElement * payloader_bin, int id);

/* One member's estimate, fed from webrtcbin's threads. */
class Congestion
{
public:
  explicit Congestion (const CcSettings & settings);
  ~Congestion ();

  /* TWCC feedback arrives as events on the payloader bin's src pad. With
   * congestion control on, the video packets leaving it are paced
   * (pace ()) too. */
  static void watch_payloader (const std::shared_ptr<Congestion> & self,
      GstElement * payloader_bin);
  /* How long a video packet of `bytes` is to be held before it leaves,
   * ns: the member's packets go out at PACING_FACTOR times its estimate,
   * with a burst of PACING_BURST_MS, so that a key frame does not reach
   * a slow link's queue all at once (it overflowed it). 0 while there is
   * no estimate. Counts the packet as sent then. */
  guint64 pace (gsize bytes);
  /* Receiver reports about `ssrc` (our video) and REMB from the member, in
   * the RTP session `session` (webrtcbin's rtpbin internal session); once
   * per session object. */
  static void watch_session (const std::shared_ptr<Congestion> & self,
      GObject * session);
  void set_video_ssrc (guint ssrc) { video_ssrc_ = ssrc; }
  /* watch_session () on each RTP session of `webrtc` not watched yet (they
   * exist once a description was set). */
  static void watch_sessions (const std::shared_ptr<Congestion> & self,
      GstElement * webrtc);
  /* Retransmission requests (the member's NACKs, as rtpsession hands them
   * to `rtxsend`, an rtprtxsend of the member's webrtcbin) go through
   * allow_retransmission (); once per element, more calls do nothing. The
   * member's video packets it is given are noted for padding probes
   * (probe ()). */
  static void bound_retransmissions (const std::shared_ptr<Congestion> & self,
      GstElement * rtxsend);
  /* Whether packet `seqnum` of `ssrc` is to be sent again now: not when it
   * was within a round trip (from the member's receiver reports; at least
   * RTX_REPEAT_MIN_MS, at most RTX_REPEAT_MS, which is also the interval
   * before any report: a member repeats its NACKs about every round trip,
   * or every 40 ms, for every packet still missing, and a retransmission
   * still on its way is not sent again, as Chromium does), nor when
   * retransmissions took the member's estimate already (a bucket of
   * RTX_BUCKET_MS of it), as Chromium bounds its own. */
  bool allow_retransmission (guint ssrc, guint seqnum);
  /* The bit/s sent again lately (smoothed), since the last call: what
   * the member's rtxsend gave out beyond what it was given, its
   * retransmissions at their real size; what the encoder is to leave
   * room for. Session::adapt_bitrate's. */
  guint64 retransmission_rate ();
  /* The member's peerjs-stats gain estimated-bitrate, target-bitrate,
   * bitrate-adapts, transport-cc-reports, the layer's fields and probes;
   * their rtx-packets-sent leaves the padding out. Returns `stats`. */
  GstStructure *add_stats (GstStructure * stats);
  /* The round trip the member's last receiver report gave, µs; 0
   * before. */
  gint64 reported_round_trip_us () const { return rtt_us_.load (); }

  /* A padding probe, as Chromium's: the member's latest video packets
   * sent again from its RTX stream (`rtxsend`, bound_retransmissions ()),
   * paced at `target` bit/s for PROBE_CLUSTER_MS (at least PROBE_PACKETS
   * of them), in a thread of its own; the estimator measures the rate
   * they and the media sent meanwhile arrive at
   * (Estimator::probe_sent) and takes it when it is above the estimate:
   * a faster link is proven at once, whatever the member's layer sends.
   * The receiver drops them as duplicates. False when none can be sent
   * (no RTX, no video packet yet, a probe under way). */
  static bool probe (const std::shared_ptr<Congestion> & self,
      guint64 target);
  /* A padding probe may start: none is under way, the estimate is under
   * what max-bitrate needs, and either the last one calls for more
   * (Estimator::probe_calls_for_more (): the link took about it, the next
   * one, from the estimate that gave, at once), or PROBE_EVERY_MS passed
   * since it. */
  bool probe_due ();
  /* The last probe's result calls for the next at once (as probe_due ()),
   * no queue grew lately, and the estimate is under the largest: a probe
   * that just ended is followed by the next without waiting for the next
   * reconsideration. */
  bool chain_due ();
  /* A probe was sent, and the last one ended without calling for another
   * (Estimator::probe_calls_for_more ()): the link takes about the
   * estimate, or the probe was at the largest. */
  bool probe_found_limit ();
  /* The target of the next probe: PROBE_FACTOR times the estimate (for a
   * probe neither the first nor called for by the last one's result,
   * times what the member receives where lower, but at least
   * PROBE_ABOVE times the estimate), at most what max-bitrate needs. */
  guint64 probe_target ();

  /* The estimate in bit/s, 0 while the member reported nothing. */
  guint64 estimate ();
  /* The estimator sees the link overused now (a queue growing), or the
   * member reported more than 2 % loss within the last 2 s. */
  bool congested ();
  /* The estimator saw the link overused (a queue growing) within the
   * last `ms`: loss reported meanwhile is the queue's overflow. */
  bool overused_within (guint ms);
  /* A probe starts: Estimator::forget_capacity (). */
  void forget_capacity ();
  /* What the member received of everything we sent it in the last 500 ms
   * of its feedback, bit/s (0: unknown). */
  guint64 received_rate ();
  /* Feedback packets (TWCC reports) taken so far. */
  guint64 reports () const { return reports_; }
  /* What the session set the encoder to, for the member's statistics. */
  std::atomic<guint64> target { 0 };
  std::atomic<bool> adapts { false };
  /* The layer of our video the member gets (0, the top, without layers),
   * its size, how many layers there are, how often it changed. */
  std::atomic<int> layer { 0 };
  std::atomic<int> layer_width { 0 };
  std::atomic<int> layer_height { 0 };
  std::atomic<int> layers { 1 };
  std::atomic<guint64> layer_changes { 0 };
  /* Session::adapt_bitrate's own (mesh thread): the member's way
   * through the layers, and reconsiderations since the layer asked for
   * was not reached. */
  LayerChoice choice;
  int waiting_ticks = 0;
  /* Probing a layer up (Session::adapt_bitrate): reconsiderations in a
   * row the member spent below the top without congestion, and those left
   * of the probe under way, during which only congestion moves the member
   * down. */
  int calm_ticks = 0;
  int probe_left = 0;
  /* Reconsiderations left of the member's start on the top layer
   * (Session::adapt_bitrate); -1 before its first estimate. */
  int start_left = -1;

private:
  static GstPadProbeReturn on_event (GstPad * pad, GstPadProbeInfo * info,
      gpointer self);
  /* True when the report ended a probe. */
  bool on_twcc (const GstStructure * s);
  /* probe_due ()'s chain rule; under lock_. */
  bool chains ();
  /* No probe under way, feedback came, and the estimate is under the
   * largest; under lock_. */
  bool may_probe ();
  /* overused_within (), under lock_. */
  bool overused_lately (guint ms);
  void on_rtcp (GstBuffer * buffer);

  static GstPadProbeReturn on_rtx_in (GstPad * pad, GstPadProbeInfo * info,
      gpointer self);
  static GstPadProbeReturn on_rtx_out (GstPad * pad, GstPadProbeInfo * info,
      gpointer self);
  static GstPadProbeReturn on_packets (GstPad * pad, GstPadProbeInfo * info,
      gpointer self);

  static void send_probe (std::shared_ptr<Congestion> self, guint64 target);

  bool paces_ = false;
  /* Probes: the member's rtprtxsend, its latest video packets (ssrc,
   * seqnum, bytes; under lock_), when the last probe started (monotonic
   * µs, 0: never), whether one is being sent, and how many were. */
  GWeakRef rtxsend_;
  struct Sent
  {
    guint ssrc, seqnum, bytes;
  };
  std::deque<Sent> latest_;
  gint64 probed_at_ = 0;
  std::atomic<bool> sending_probe_ { false };
  std::atomic<guint64> probes_ { 0 };
  /* Bytes of padding sent: what rtxsend gives out beyond what it is
   * given, less these, is what it sent again. */
  std::atomic<guint64> padding_bytes_ { 0 };
  std::atomic<guint64> padding_packets_ { 0 };
  std::mutex lock_;
  Estimator estimator_;
  /* Pacing: the bucket in bits and when it was last filled; under
   * lock_. */
  double pace_bits_ = 0;
  gint64 pace_filled_ = 0;
  bool reported_ = false;
  std::atomic<guint64> reports_ { 0 };
  std::atomic<guint> video_ssrc_ { 0 };
  std::set<GObject *> sessions_;         /* watched; under lock_ */
  /* Retransmissions: when each packet was last sent again (ssrc << 16 |
   * seqnum, monotonic µs), the bucket in bits and when it was filled;
   * under lock_. */
  std::unordered_map<guint64, gint64> resent_;
  /* The round trip the member's last receiver report gave, us; 0 before. */
  std::atomic<gint64> rtt_us_ { 0 };
  double rtx_bits_ = 0;
  gint64 rtx_filled_ = 0;
  std::atomic<guint64> rtx_refused_ { 0 };
  /* Bytes into and out of the member's rtxsend (the difference: what
   * it sent again); at the last retransmission_rate (), that difference,
   * the rate it found and when; under lock_. */
  std::atomic<guint64> rtx_in_bytes_ { 0 };
  std::atomic<guint64> rtx_out_bytes_ { 0 };
  gint64 rtx_extra_ = 0;
  double rtx_rate_ = 0;
  gint64 rtx_rate_at_ = 0;
};

}  // namespace peerjs
