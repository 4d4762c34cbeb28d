/* Forward error correction that follows the loss members report: how a
 * receiver report's cumulative counts become the loss of an interval, and
 * how that loss sizes the redundancy we send (Opus in-band FEC for audio,
 * ULPFEC in RED for video). No GStreamer elements here: Peer and Session
 * apply what these say. */
#pragma once

#include <gst/gst.h>

namespace peerjs {

/* How often the loss members report is read and FEC resized. Receiver
 * reports come about once a second (peer.cpp, RTCP timing). */
constexpr guint LOSS_POLL_MS = 1000;
/* How long FEC stays on after the last report of loss: a clean report
 * between lossy ones does not turn it off. */
constexpr GstClockTime FEC_HOLD = 10 * GST_SECOND;
/* Opus in-band FEC: packet-loss-percentage is the loss reported, at most
 * this; beyond it the redundancy takes the bitrate from the speech. */
constexpr int MAX_AUDIO_FEC_PERCENT = 25;
/* ULPFEC: FEC packets per 100 media packets, twice the loss reported (one
 * FEC packet then covers groups small enough that most hold one loss at
 * most), at most this. */
constexpr int VIDEO_FEC_PER_LOSS = 2;
constexpr int MAX_VIDEO_FEC_PERCENT = 50;
/* Above this loss, no ULPFEC: one FEC packet repairs one loss in its group,
 * so at such loss it mostly goes down with what it protects, and where the
 * loss is a link's queue overflowing it only adds to the load. */
constexpr double MAX_VIDEO_FEC_LOSS = 0.3;
/* Video loss reported within this long of the member's estimator seeing
 * its link overused (a queue growing) is that queue's overflow, not
 * random loss: it does not turn ULPFEC on (Peer::follow_loss). Receiver
 * reports come once a second and cover the second before. */
constexpr guint FEC_CONGESTION_MS = 2000;

/* The loss of one of our streams as a member's receiver reports tell it:
 * each report block carries cumulative numbers (packets lost, the highest
 * sequence number received), so an interval's loss is exact however many
 * reports came in it, and a report lost on the way costs nothing. Not
 * thread-safe: the caller locks. */
class LossMeter
{
public:
  /* A report block about the stream: its fraction lost (of 256) since
   * the member's previous report, cumulative packets lost, and extended
   * highest sequence number received. */
  void report (guint8 fraction, gint32 lost, guint32 ext_highest_seq);
  /* The fraction of packets lost since the previous take (0 to 1), or -1
   * when no report came since. */
  double take ();
  /* Forget the stream (its SSRC changed). */
  void reset ();
  /* The latest report's cumulative packets lost and fraction lost (0 to
   * 1); false before any report. */
  bool latest (gint64 * lost, double * fraction) const;

private:
  bool have_ = false;        /* a report came */
  bool have_base_ = false;   /* a previous take saw one */
  gint64 lost_ = 0, base_lost_ = 0;
  guint64 seq_ = 0, base_seq_ = 0;
  double fraction_ = 0;      /* the latest report's own */
  bool fresh_ = false;       /* a report since the last take */
};

/* The redundancy to send, in percent, following the loss reported: on at
 * the first loss, sized for the latest loss seen, and off again only after
 * FEC_HOLD without any, or at once when the loss exceeds `max_loss`. */
class FecLevel
{
public:
  FecLevel (int per_loss, int max_percent, double max_loss = 1.0)
    : per_loss_ (per_loss), max_ (max_percent), max_loss_ (max_loss) {}
  /* `loss`: the fraction lost in the last interval (0 or less: none, or no
   * report). Returns the percentage to send from now on. */
  int update (double loss, GstClockTime now);
  int percent () const { return percent_; }

private:
  int per_loss_;
  int max_;
  double max_loss_;
  int percent_ = 0;
  GstClockTime last_loss_ = GST_CLOCK_TIME_NONE;
};

}  // namespace peerjs
