#include "estimator.h"

#include <algorithm>
#include <cmath>

namespace peerjs {

namespace {

constexpr double GROUP_MS = 5;             /* a burst: sent within 5 ms */
constexpr std::size_t WINDOW = 20;         /* groups in the trendline */
constexpr double SMOOTHING = 0.9;
constexpr double TREND_GAIN = 4;
constexpr double OVERUSE_MS = 10;          /* over the threshold this long */
constexpr double K_UP = 0.0087, K_DOWN = 0.039;
constexpr double DECREASE = 0.85;          /* of what was received */
constexpr double INCREASE_PER_S = 1.30;
constexpr double START_INCREASE_PER_S = 2.0;
constexpr double ACKED_WINDOW_MS = 500;
constexpr double LOSS_WINDOW_MS = 1000;
constexpr double LOSS_UPDATE_MS = 500;
constexpr double LOSS_INCREASE = 1.12;     /* per update */
constexpr double LOSS_HOLD_INCREASE = 1.06;     /* per update, 2-10 % */
constexpr double CALM_MS = 2000;
constexpr double LOSS_LOW = 0.02;          /* under it, the rate grows */
constexpr double LOSS_CUT = 0.10;          /* above it, a queue overflowing */
/* With no queue growing, loss up to this share is the link's own (a
 * radio's): at 10 % random loss, windows of a second measured 0.05 to
 * 0.21, and a cut at each one over 0.10 held a member at 400 kbit/s of a
 * clean link. Above it, loss is congestion even with no queue (a policer
 * drops without one). */
constexpr double LINK_LOSS = 0.15;
constexpr double LOSS_RECENT_MS = 2000;
constexpr double BASE_MS = 30000;
constexpr double QUEUE_EMPTY_MS = 20;
constexpr double REMB_VALID_MS = 5000;
constexpr double FEEDBACK_VALID_MS = 2000;
constexpr double ADDITIVE = 40000;         /* bit/s a second */
constexpr double NEAR_CAPACITY = 1.15;
constexpr double PAST_CAPACITY = 1.5;
/* Probes (Estimator::probe_sent): as Chromium's probe estimator. */
constexpr int PROBE_MIN_PACKETS = 5;
constexpr double PROBE_MIN_RECEIVED = 0.8;
constexpr double PROBE_UNSATURATED = 0.9;
constexpr double PROBE_UTILIZATION = 0.95;
constexpr double PROBE_WAIT_MS = 1000;
/* A probe started within this of a raise verifies it. */
constexpr double PROBE_VERIFY_MS = 1000;
/* A probe calls for the next at once (probe_calls_for_more ()) when its
 * result was PROBE_REACHED of its target (Chromium's further probing) or
 * it raised the estimate PROBE_GAIN times (a receiving pipeline's arrival
 * times, under load, make a clean link's results 0.6 to 0.7 of the
 * target). */
constexpr double PROBE_REACHED = 0.7;
constexpr double PROBE_GAIN = 1.2;

double
ms (guint64 ns)
{
  return ns / 1e6;
}

}  // namespace

Estimator::Estimator (guint64 start, guint64 min, guint64 max)
  : min_ (min), max_ (MAX (min, max))
{
  delay_rate_ = loss_rate_ = (double) clamp ((double) start);
}

guint64
Estimator::clamp (double rate) const
{
  if (rate < min_)
    return min_;
  if (rate > max_)
    return max_;
  return (guint64) rate;
}

void
Estimator::feedback (const std::vector<Packet> & packets, guint64 now_ns)
{
  double now = ms (now_ns);
  last_feedback_ = now;
  for (const Packet & p : packets) {
    if (probe_.active)
      probe_packet (p);
    reported_.emplace_back (now, p.lost);
    if (p.lost)
      continue;
    double sent = ms (p.sent_ns), received = ms (p.received_ns);
    received_.emplace_back (received, p.size);
    if (!current_.valid) {
      current_ = { sent, sent, received, true };
    } else if (sent - current_.first_sent > GROUP_MS) {
      on_group (current_, now);
      current_ = { sent, sent, received, true };
    } else if (sent >= current_.last_sent) {
      current_.last_sent = sent;
      current_.last_received = MAX (current_.last_received, received);
    }
  }
  /* What the member received lately. */
  if (!received_.empty ()) {
    double latest = received_.back ().first;
    while (!received_.empty ()
        && received_.front ().first < latest - ACKED_WINDOW_MS)
      received_.pop_front ();
    double span = latest - received_.front ().first;
    guint64 bytes = 0;
    for (auto & r : received_)
      bytes += r.second;
    if (span >= ACKED_WINDOW_MS / 2)
      acked_ = (guint64) (bytes * 8 * 1000.0 / span);
  }
  while (!reported_.empty ()
      && reported_.front ().first < now - LOSS_WINDOW_MS)
    reported_.pop_front ();
  if (reported_.size () >= 20) {
    guint lost = 0;
    for (auto & r : reported_)
      lost += r.second;
    update_loss_rate ((double) lost / reported_.size (), now);
  }
  update_delay_rate (now);
  if (probe_.active && (probe_.after || now > probe_.expires))
    finish_probe ();
}

void
Estimator::probe_sent (guint64 start_ns, guint64 end_ns, double target,
    guint64 now_ns)
{
  probe_ = Probe ();
  probe_.active = true;
  probe_.start = ms (start_ns);
  probe_.end = ms (end_ns);
  probe_.target = target;
  probe_.from = MIN (delay_rate_, loss_rate_);
  probe_.expires = ms (now_ns) + (probe_.end - probe_.start) + PROBE_WAIT_MS;
}

void
Estimator::probe_packet (const Packet & p)
{
  double sent = ms (p.sent_ns);
  if (sent > probe_.end) {
    probe_.after = true;
    return;
  }
  if (sent < probe_.start)
    return;
  probe_.packets++;
  probe_.sent_bytes += p.size;
  if (probe_.first_sent < 0 || sent < probe_.first_sent)
    probe_.first_sent = sent;
  if (sent >= probe_.last_sent) {
    probe_.last_sent = sent;
    probe_.last_sent_size = p.size;
  }
  if (!p.lost)
    probe_.arrivals.emplace_back (ms (p.received_ns), p.size);
}

void
Estimator::finish_probe ()
{
  Probe & p = probe_;
  p.active = false;
  double result = 0;
  double send_span = p.last_sent - p.first_sent;
  if (p.packets >= PROBE_MIN_PACKETS && send_span > 0
      && p.arrivals.size () >= PROBE_MIN_RECEIVED * p.packets) {
    /* The last packet sent ends the span: its bytes do not count. */
    double sent = (p.sent_bytes - p.last_sent_size) * 8 * 1000 / send_span;
    /* From the arrival of the packet that completes the first half of
     * the bytes (not counted) to the last. */
    std::sort (p.arrivals.begin (), p.arrivals.end ());
    guint64 total = 0, before = 0;
    for (auto & a : p.arrivals)
      total += a.second;
    std::size_t mid = 0;
    while (mid + 2 < p.arrivals.size () && (before + p.arrivals[mid].second)
        * 2 < total)
      before += p.arrivals[mid++].second;
    double span = p.arrivals.back ().first - p.arrivals[mid].first;
    double received = span > 0 ? (total - before - p.arrivals[mid].second)
        * 8 * 1000 / span : sent;
    result = MIN (sent, received);
    if (received < PROBE_UNSATURATED * sent)
      result = PROBE_UTILIZATION * received;
  }
  probe_result_ = result;
  double before = MIN (delay_rate_, loss_rate_);
  probe_gain_ = 1;
  bool verifies = raised_from_ >= 0 && p.start - raised_at_ < PROBE_VERIFY_MS;
  if (result > 0 && result <= before && verifies) {
    /* The probe that followed a raise found less: the raise was a
     * shaper's bucket letting a short probe through faster than the
     * link, and is taken back, down to no less than before it (Chromium
     * lowers its estimate to a lower probe result too). One that gave no
     * result (a fifth of it lost) proves nothing: at 10 % loss that is
     * bad luck, and undoing there halved the bitrate; a queue it
     * overflowed is the delay-based part's to see. */
    delay_rate_ = MIN (delay_rate_, MAX (result, raised_from_));
    loss_rate_ = MIN (loss_rate_, MAX (result, raised_from_));
  }
  if (result <= before || !verifies)
    raised_from_ = -1;
  if (result > before) {
    probe_gain_ = MAX (result / MAX (before, p.from), 1.0);
    if (raised_from_ < 0)
      raised_from_ = before;
    raised_at_ = p.end;
    delay_rate_ = (double) clamp (MAX (delay_rate_, result));
    loss_rate_ = (double) clamp (MAX (loss_rate_, result));
    /* Only a result past the capacity proves the link better (as what
     * gets through, in raise ()): one just above an estimate that had
     * been cut below the capacity is the same link, and forgetting it
     * there let the rates grow multiplicatively past it again, a cut and
     * lost packets every few seconds behind 600 kbit/s. */
    if (result > NEAR_CAPACITY * capacity_)
      capacity_ = 0;
  }
}

void
Estimator::on_group (const Group & g, double now)
{
  if (!previous_.valid) {
    previous_ = g;
    return;
  }
  double send_delta = g.last_sent - previous_.last_sent;
  double recv_delta = g.last_received - previous_.last_received;
  previous_ = g;
  /* Reordered across groups: nothing to learn. */
  if (send_delta < 0 || recv_delta < 0)
    return;
  double delta = recv_delta - send_delta;
  last_delta_ms_ = send_delta;
  if (first_arrival_ < 0)
    first_arrival_ = g.last_received;
  accumulated_ += delta;
  smoothed_ = SMOOTHING * smoothed_ + (1 - SMOOTHING) * accumulated_;
  while (!base_.empty () && base_.back ().second >= smoothed_)
    base_.pop_back ();
  base_.emplace_back (g.last_received, smoothed_);
  while (base_.front ().first < g.last_received - BASE_MS)
    base_.pop_front ();
  window_.emplace_back (g.last_received - first_arrival_, smoothed_);
  deltas_++;
  if (window_.size () > WINDOW)
    window_.pop_front ();
  if (window_.size () == WINDOW) {
    double mx = 0, my = 0;
    for (auto & p : window_) {
      mx += p.first;
      my += p.second;
    }
    mx /= window_.size ();
    my /= window_.size ();
    double num = 0, den = 0;
    for (auto & p : window_) {
      num += (p.first - mx) * (p.second - my);
      den += (p.first - mx) * (p.first - mx);
    }
    double slope = den > 0 ? num / den : 0;
    trend_ = slope * MIN (deltas_, 60u) * TREND_GAIN;
  }
  detect (trend_, now);
}

void
Estimator::detect (double trend, double now)
{
  if (trend > threshold_) {
    overusing_ms_ = overusing_ms_ < 0 ? last_delta_ms_ / 2
        : overusing_ms_ + last_delta_ms_;
    overuse_count_++;
    if (overusing_ms_ > OVERUSE_MS && overuse_count_ > 1
        && trend >= previous_trend_) {
      overusing_ms_ = 0;
      overuse_count_ = 0;
      usage_ = Usage::Over;
    }
  } else if (trend < -threshold_) {
    overusing_ms_ = -1;
    overuse_count_ = 0;
    usage_ = Usage::Under;
  } else {
    overusing_ms_ = -1;
    overuse_count_ = 0;
    usage_ = Usage::Normal;
  }
  previous_trend_ = trend;
  if (usage_ == Usage::Over)
    last_overuse_ = now;

  /* The threshold follows the trend, slowly up and faster down, so that
   * a path's own jitter is not taken for a queue. */
  if (last_threshold_update_ < 0)
    last_threshold_update_ = now;
  double magnitude = std::fabs (trend);
  if (magnitude - threshold_ <= 15) {
    double k = magnitude < threshold_ ? K_DOWN : K_UP;
    double dt = MIN (now - last_threshold_update_, 100.0);
    threshold_ += k * (magnitude - threshold_) * dt;
    threshold_ = CLAMP (threshold_, 6.0, 600.0);
  }
  last_threshold_update_ = now;
}

void
Estimator::update_delay_rate (double now)
{
  if (last_rate_update_ < 0)
    last_rate_update_ = now;
  double dt = MIN (now - last_rate_update_, 1000.0) / 1000;
  last_rate_update_ = now;
  switch (usage_) {
    case Usage::Over:
      /* At most one cut per 300 ms: the reports that follow a cut still
       * tell of the queue it was meant to drain. */
      if (last_decrease_ < 0 || now - last_decrease_ > 300) {
        double base = acked_ ? (double) acked_ : delay_rate_;
        delay_rate_ = MIN (delay_rate_, DECREASE * base);
        last_decrease_ = now;
        cut_ = true;
        learn_capacity ();
      }
      break;
    case Usage::Under:
      break;
    case Usage::Normal:{
      /* Never above 1.5 times what gets through: an encoder that sends
       * less than it may (a still picture) gives no proof that more would
       * pass. That bound only stops the increase: what was received
       * varies from one report to the next, and is no reason to cut. */
      double bound = acked_ ? 1.5 * acked_ + 10000 : G_MAXDOUBLE;
      /* The delay-based rate climbing past the capacity (by ADDITIVE)
       * proves little, until it is PAST_CAPACITY times it. Not the
       * loss-based rate's level: with nothing lost it sits at the
       * largest, far above any capacity, and forgot it at every raise,
       * so the rates grew by 30 % a second past a 600 kbit/s link
       * right after each cut. */
      if (capacity_ > 0 && delay_rate_ > PAST_CAPACITY * capacity_)
        capacity_ = 0;
      if (delay_rate_ < bound)
        delay_rate_ = MIN (raise (delay_rate_, INCREASE_PER_S, dt), bound);
      break;
    }
  }
  delay_rate_ = (double) clamp (delay_rate_);
}

void
Estimator::update_loss_rate (double fraction, double now)
{
  if (last_loss_update_ >= 0 && now - last_loss_update_ < LOSS_UPDATE_MS)
    return;
  last_loss_update_ = now;
  loss_ = fraction;
  loss_at_ = now;
  if (fraction > (calm (now) ? LINK_LOSS : LOSS_CUT)) {
    loss_rate_ = MIN (loss_rate_, delay_rate_) * (1 - 0.5 * fraction);
    /* What was sent before this cut is no reason for another: the next
     * decision waits for a window of packets sent after it. */
    reported_.clear ();
    last_loss_update_ = now + LOSS_WINDOW_MS - LOSS_UPDATE_MS;
    /* Loss is no measure of the link's capacity (a radio loses at any
     * rate): only a queue growing is, as Chromium's link capacity is
     * learnt from delay-based overuse alone. */
    cut_ = true;
  } else if (fraction < LOSS_LOW) {
    /* LOSS_INCREASE per update: as a rate a second. */
    loss_rate_ = raise (loss_rate_, LOSS_INCREASE * LOSS_INCREASE,
        LOSS_UPDATE_MS / 1000);
  } else if (fraction <= LOSS_CUT && calm (now)) {
    /* Some loss and no queue growing for a while: loss of the link
     * itself (a radio), not of a queue overflowing. Holding the rate
     * there, as GCC's loss-based part does, kept a member that started
     * low (start-bitrate) there for good at 5 % loss; it grows slowly.
     * Between LOSS_CUT and LINK_LOSS it is held. */
    loss_rate_ = raise (loss_rate_, LOSS_HOLD_INCREASE * LOSS_HOLD_INCREASE,
        LOSS_UPDATE_MS / 1000);
  }
  loss_rate_ = (double) clamp (loss_rate_);
}

bool
Estimator::calm (double now) const
{
  /* A queue that filled and stands full grows no more, and tells of
   * itself only by its delay. */
  if (!base_.empty () && smoothed_ - base_.front ().second > QUEUE_EMPTY_MS)
    return false;
  return last_overuse_ < 0 || now - last_overuse_ > CALM_MS;
}

bool
Estimator::loss_congests (guint64 now_ns) const
{
  double now = ms (now_ns);
  if (loss_at_ < 0 || now - loss_at_ >= LOSS_RECENT_MS || loss_ <= LOSS_LOW)
    return false;
  return loss_ > LINK_LOSS || !calm (now);
}

void
Estimator::learn_capacity ()
{
  if (acked_)
    capacity_ = capacity_ > 0 ? 0.5 * capacity_ + 0.5 * acked_ : acked_;
}

double
Estimator::raise (double rate, double factor, double dt)
{
  /* What gets through proves the link better than it was. */
  if (capacity_ > 0 && acked_ > NEAR_CAPACITY * capacity_)
    capacity_ = 0;
  if (capacity_ > 0)
    return rate + ADDITIVE * dt;
  /* Before the first cut, the start (a guess) is left fast: Chromium
   * probes at several times its start at once. */
  if (!cut_)
    factor = MAX (factor, START_INCREASE_PER_S);
  return rate * std::pow (factor, dt);
}

void
Estimator::receiver_report (double fraction_lost, guint64 now_ns)
{
  double now = ms (now_ns);
  if (has_feedback (now_ns))
    return;
  last_loss_update_ = -1;     /* one report a second: each counts */
  update_loss_rate (fraction_lost, now);
}

void
Estimator::remb (guint64 bitrate, guint64 now_ns)
{
  remb_ = bitrate;
  last_remb_ = ms (now_ns);
}

bool
Estimator::has_feedback (guint64 now_ns) const
{
  return last_feedback_ >= 0 && ms (now_ns) - last_feedback_ < FEEDBACK_VALID_MS;
}

guint64
Estimator::estimate (guint64 now_ns) const
{
  double rate = MIN (delay_rate_, loss_rate_);
  if (last_remb_ >= 0 && ms (now_ns) - last_remb_ < REMB_VALID_MS)
    rate = MIN (rate, (double) remb_);
  return clamp (rate);
}

/* ------------------------------------------------------------------ */
/* Layers */

bool
Estimator::probe_calls_for_more () const
{
  /* A probe at the most we look for (the largest estimate) ends the
   * chain, as Chromium's does: its result may stay under that however
   * good the link (through a TURN relay, 1.18 Mbit/s probes arrived at
   * about 1.0 and chained on: a probe every 130 ms, as much again as the
   * member's video). */
  double target = probe_.target;
  return target > 0 && target < (double) max_
      && (probe_result_ >= PROBE_REACHED * target
          || probe_gain_ >= PROBE_GAIN);
}

std::vector<LayerRange>
layer_ranges (int layers, guint64 min, guint64 max)
{
  std::vector<LayerRange> ranges (MAX (layers, 1));
  double nominal = max;
  for (size_t i = 0; i < ranges.size (); i++, nominal /= 3) {
    bool bottom = i + 1 == ranges.size ();
    guint64 floor = bottom ? min : (guint64) llround (0.6 * nominal);
    guint64 ceiling = i == 0 ? max
        : (guint64) llround (1.3 * ranges[i - 1].floor);
    ranges[i].floor = CLAMP (floor, min, max);
    ranges[i].ceiling = CLAMP (ceiling, ranges[i].floor, max);
  }
  return ranges;
}

guint64
layer_start_bitrate (guint64 start, int layer)
{
  for (int i = 0; i < layer; i++)
    start /= 3;
  return start;
}

int
LayerChoice::next (const std::vector<LayerRange> & ranges, int current,
    guint64 budget)
{
  int bottom = (int) ranges.size () - 1;
  current = CLAMP (current, 0, bottom);
  if (since_up_ >= 0 && ++since_up_ >= LAYER_TRIAL_TICKS) {
    since_up_ = -1;
    needed_ = LAYER_UP_TICKS;
    failed_to_ = -1;
  }
  int fits = bottom;
  while (fits > 0 && budget >= ranges[fits - 1].floor)
    fits--;
  if (fits >= current) {
    if (fits > current && since_up_ >= 0) {
      if (failed_to_ != current)
        needed_ = LAYER_UP_TICKS;
      needed_ = MIN (needed_ * 2, LAYER_UP_MAX_TICKS);
      failed_to_ = current;
      since_up_ = -1;
    }
    up_ticks_ = 0;
    return fits;
  }
  double floor = (double) ranges[current - 1].floor;
  if (budget >= LAYER_UP_MARGIN * floor) {
    int needed = budget >= LAYER_CLEAR_MARGIN * floor
        || current - 1 != failed_to_ ? LAYER_UP_TICKS : needed_;
    if (++up_ticks_ >= needed) {
      up_ticks_ = 0;
      since_up_ = 0;
      return current - 1;
    }
  } else {
    up_ticks_ = 0;
  }
  return current;
}

}  // namespace peerjs
