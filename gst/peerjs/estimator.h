/* A bandwidth estimate for one member, from what it reports about the
 * packets we send it; GCC in spirit (draft-ietf-rmcat-gcc-02, and what
 * Chromium and gst-plugins-rs' rtpgccbwe do), small:
 *
 * - delay-based: packets are grouped by send time (bursts of 5 ms); the
 *   change of one-way delay between groups, accumulated and smoothed, gives
 *   a trendline over the last 20 groups; a trend above an adaptive
 *   threshold is overuse (a queue grows on the path), below its negative
 *   underuse. Overuse cuts the rate to 0.85 of what the member received in
 *   the last 500 ms; normal use raises it by 30 % a second while it is
 *   under 1.5 times what was received (plus 10 kbit/s); underuse holds it.
 * - loss-based: over the packets reported in the last second, more than
 *   10 % lost lowers the rate by half the loss fraction (and the next
 *   decision waits for a second of packets sent after the cut), less than
 *   2 % raises it by 12 %, at most every 500 ms. While no queue is seen
 *   (calm ()), the loss is the link's own: up to 10 % raises it by 6 %,
 *   up to 15 % holds it, and only more lowers it.
 * - near the capacity: what the member received at the last cut of the
 *   delay-based rate (loss says nothing of the link's rate). While it is
 *   known, both rates grow by 40 kbit/s a second instead (AIMD, as
 *   Chromium's), so that a steady link is not overshot by a
 *   multiplicative step; it is forgotten (the link got better) once the
 *   member receives 1.15 times it, or the delay-based rate is 1.5 times
 *   it, or a layer is tried above (Congestion), or a padding probe
 *   arrives 1.15 times as fast. Before the first cut (the start, a
 *   guess), the rates double a second. Transport-wide feedback reports
 *   loss per packet; without it, the fraction lost from receiver reports
 *   does.
 * - REMB, when the member sends it: the estimate never exceeds it (for 5 s
 *   after the last one).
 * - probes (probe_sent ()): the rate a padding probe's packets arrived at
 *   raises both rates at once when it is above them.
 *
 * The estimate is the lowest of the three, within [min, max]. No GStreamer
 * here, only numbers: the unit test drives it with synthetic feedback.
 * Not thread-safe: its owner locks. */
#pragma once

#include <glib.h>

#include <deque>
#include <vector>

namespace peerjs {

class Estimator
{
public:
  /* One packet a feedback report tells about: when we sent it and when it
   * arrived (the member's clock: only differences count), in ns; `lost`:
   * it never arrived (received_ns is then ignored). */
  struct Packet
  {
    guint64 sent_ns = 0;
    guint64 received_ns = 0;
    guint size = 0;             /* bytes */
    bool lost = false;
  };
  enum class Usage { Normal, Over, Under };

  /* Bits per second. */
  Estimator (guint64 start, guint64 min, guint64 max);

  /* A transport-wide feedback report, its packets in send order; `now_ns`
   * is our clock (monotonic). */
  void feedback (const std::vector<Packet> & packets, guint64 now_ns);
  /* The fraction lost (0..1) a receiver report gives for our stream; only
   * used while no transport-wide feedback comes. */
  void receiver_report (double fraction_lost, guint64 now_ns);
  /* A REMB from the member, bit/s. */
  void remb (guint64 bitrate, guint64 now_ns);

  /* The capacity near which the rates grow additively is forgotten: a
   * probe (a member moved up a layer while its own sends less than its
   * estimate allows) looks for more than the link last carried. */
  void forget_capacity () { capacity_ = 0; }

  /* A padding probe (Congestion::probe) was sent: the packets sent within
   * [start_ns, end_ns] (the clock of Packet::sent_ns) went out at about
   * `target` bit/s, padding beside the media. Once feedback tells of a
   * packet sent after them (or PROBE_WAIT_MS passed), the rate they
   * arrived at is the probe's result, as Chromium's probe estimator finds
   * it: the lower of the rates they were sent and received at (0.95 of
   * the received one when that is under 0.9 of the sent one: a queue
   * grew); 0 when fewer than PROBE_MIN_PACKETS were sent or a fifth of
   * them was lost. The received rate is that of the later half of the
   * bytes: a shaper's bucket (tbf's burst) lets the first ones through at
   * once, and a probe on a 300 kbit/s link with a 3.2 kB burst measured
   * 380 to 430 kbit/s over all of them. A result above the estimate
   * raises both rates to it; one above NEAR_CAPACITY (1.15) times the
   * capacity forgets that too: the link carried more. A probe started
   * within PROBE_VERIFY_MS of such a raise verifies it: if it finds less
   * than the estimate (a result, not 0), the rates go back to it, no
   * lower than before the raise (a shaper's bucket lets a short probe
   * through at any rate: 430 to 570 kbit/s through 300 kbit/s). */
  void probe_sent (guint64 start_ns, guint64 end_ns, double target,
      guint64 now_ns);
  bool probing () const { return probe_.active; }
  /* The last probe's result (-1 before any) and what it aimed at (0
   * before any), bit/s. */
  double probe_result () const { return probe_result_; }
  double probe_target () const { return probe_.target; }
  /* How many times the last probe raised the estimate (1: not at all),
   * from the higher of the estimate when it was sent and when it ended:
   * a queue the probe itself grew cuts the delay-based rate while it is
   * under way, and a result that only takes that cut back raised nothing
   * (behind 600 kbit/s, such a "gain" of 1.2 had the next probe wait for
   * a calm that a link at its limit did not give, and a new member held
   * on the top layer for its whole start). */
  double probe_gain () const { return probe_gain_; }
  /* The last probe calls for another at once: it found 0.7 of its target
   * or raised the estimate 1.2 times, and it was not at max (). */
  bool probe_calls_for_more () const;

  /* The largest estimate, bit/s. */
  guint64 max () const { return max_; }
  /* The estimate, bit/s, within [min, max]. */
  guint64 estimate (guint64 now_ns) const;
  /* Transport-wide feedback came in the last 2 s. */
  bool has_feedback (guint64 now_ns) const;
  Usage usage () const { return usage_; }
  /* What the member received in the last 500 ms of reports, bit/s (0:
   * unknown). */
  guint64 received_rate () const { return acked_; }
  /* The delay-based and loss-based rates, the trend and its threshold,
   * for debug logs. */
  double delay_rate () const { return delay_rate_; }
  double loss_rate () const { return loss_rate_; }
  /* The fraction lost (0..1) the loss-based part last looked at, and
   * when (ms, on the clock of feedback () and receiver_report ()); -1
   * before any. */
  double loss () const { return loss_; }
  double loss_at () const { return loss_at_; }
  /* The loss of the last 2 s tells of congestion: over 2 %, and either a
   * queue grew lately (it overflowed) or it is more than a link loses by
   * itself (LINK_LOSS). Random loss with no queue growing (a radio's) is
   * neither cut for up to that share nor a reason to hold back. */
  bool loss_congests (guint64 now_ns) const;
  double trend () const { return trend_; }
  /* When the link was last seen overused (ms, the clock of feedback ());
   * -1 before that. */
  double last_overuse () const { return last_overuse_; }
  double threshold () const { return threshold_; }

private:
  struct Group
  {
    double first_sent = 0, last_sent = 0, last_received = 0;  /* ms */
    bool valid = false;
  };

  void on_group (const Group & g, double now_ms);
  void detect (double trend, double now_ms);
  void update_delay_rate (double now_ms);
  void update_loss_rate (double fraction, double now_ms);
  /* No queue grew for CALM_MS, and none stands: the delay is within
   * QUEUE_EMPTY_MS of the lowest of the last BASE_MS. */
  bool calm (double now_ms) const;
  /* What the member receives now is what the link carries (a queue grew:
   * the delay-based rate was cut): the capacity, averaged with the last
   * one known. */
  void learn_capacity ();
  void probe_packet (const Packet & p);
  void finish_probe ();
  /* `rate` raised for `dt` seconds: multiplicatively by `factor` a second,
   * or, near the capacity, by ADDITIVE bit/s a second. */
  double raise (double rate, double factor, double dt);
  guint64 clamp (double rate) const;

  guint64 min_, max_;
  double delay_rate_, loss_rate_;
  /* Delay-based */
  Group current_, previous_;
  double first_arrival_ = -1;
  double accumulated_ = 0, smoothed_ = 0;
  /* The smoothed delay of the last BASE_MS (arrival ms, delay ms),
   * increasing from front to back: the front is the lowest, the delay
   * with no queue. */
  std::deque<std::pair<double, double>> base_;
  std::deque<std::pair<double, double>> window_;   /* arrival ms, smoothed */
  guint deltas_ = 0;
  double trend_ = 0, previous_trend_ = 0;
  double threshold_ = 12.5;
  double last_threshold_update_ = -1;
  double overusing_ms_ = -1;
  /* ms, the last group seen overusing; -1: never */
  double last_overuse_ = -1;
  int overuse_count_ = 0;
  double last_delta_ms_ = 0;
  Usage usage_ = Usage::Normal;
  double last_rate_update_ = -1;
  double last_decrease_ = -1;
  /* What the member received when the delay-based rate was last cut (0:
   * unknown, or left behind since): near it the rates grow additively. */
  double capacity_ = 0;
  bool cut_ = false;            /* either rate was ever cut */
  /* What was received: (arrival ms, bytes), the last 500 ms of it. */
  std::deque<std::pair<double, guint>> received_;
  guint64 acked_ = 0;
  /* Loss-based: (our ms, lost?) of packets reported in the last second. */
  std::deque<std::pair<double, bool>> reported_;
  double last_loss_update_ = -1;
  double loss_ = 0, loss_at_ = -1;
  double last_feedback_ = -1;
  /* The probe under way: its window and deadline (ms), and what feedback
   * told of the packets sent within the window. */
  struct Probe
  {
    bool active = false, after = false;
    double start = 0, end = 0, expires = 0, target = 0;
    double from = 0;                  /* the estimate when it was sent */
    double first_sent = -1, last_sent = -1;
    guint64 sent_bytes = 0;
    guint last_sent_size = 0;
    int packets = 0;
    std::vector<std::pair<double, guint>> arrivals;   /* ms, bytes */
  } probe_;
  double probe_result_ = -1, probe_gain_ = 1;
  /* The estimate before the probes that raised it lately (-1: none since
   * one that did not), and when the last of them ended (ms). */
  double raised_from_ = -1, raised_at_ = 0;
  /* REMB */
  guint64 remb_ = 0;
  double last_remb_ = -1;
};

/* Layers (layers.h): each layer's bitrate range, and which layer a member
 * is sent from its budget (what its estimate leaves for video). Layer 0 is
 * the top. A layer's nominal bitrate is max-bitrate / 3^i; a member is on
 * the highest layer whose `floor` (0.6 of its nominal; min-bitrate for the
 * bottom layer) its budget reaches; a layer's encoder follows the lowest
 * budget of its members up to its `ceiling` (max-bitrate for the top, 1.3
 * times the floor of the layer above for the others, so that a member
 * below that floor sends enough for its estimate to grow past it). In
 * bit/s; numbers only, as the estimator. */
struct LayerRange
{
  guint64 floor, ceiling;
};
std::vector<LayerRange> layer_ranges (int layers, guint64 min, guint64 max);
/* Layer `layer`'s bitrate before its members report: `start` (the top
 * layer's, start-bitrate) / 3^layer. */
guint64 layer_start_bitrate (guint64 start, int layer);
/* Up takes a budget of LAYER_UP_MARGIN times the floor above, for
 * LAYER_UP_TICKS reconsiderations in a row; down is at once. A member
 * that comes down again within LAYER_TRIAL_TICKS of going up waits twice
 * as many reconsiderations (up to LAYER_UP_MAX_TICKS) for its next step up
 * to that layer (a step to another goes as ever), unless its budget
 * reaches LAYER_CLEAR_MARGIN times that floor: a link
 * that only just carries the layer above does not switch back and forth
 * (each switch a key frame, and a queue overflowing), and one that got
 * better is still followed at once. Staying up LAYER_TRIAL_TICKS forgets
 * the failures. */
constexpr double LAYER_UP_MARGIN = 1.15;
constexpr double LAYER_CLEAR_MARGIN = 1.5;
constexpr int LAYER_UP_TICKS = 2;
constexpr int LAYER_UP_MAX_TICKS = 64;
constexpr int LAYER_TRIAL_TICKS = 40;

/* One member's way through the layers. */
class LayerChoice
{
public:
  /* The layer a member on `current` goes to with `budget` bit/s: down at
   * once to the highest whose floor the budget reaches, up one layer when
   * the margin held long enough; called once per reconsideration. */
  int next (const std::vector<LayerRange> & ranges, int current,
      guint64 budget);
  /* Reconsiderations the next step up waits for, at a budget under the
   * clear margin. */
  int up_needed () const { return needed_; }

private:
  int up_ticks_ = 0;
  int needed_ = LAYER_UP_TICKS;
  int since_up_ = -1;           /* reconsiderations since going up; -1 */
  int failed_to_ = -1;          /* the layer a step up failed to; -1 */
};

}  // namespace peerjs
