#include "fec.h"

#include <cmath>

namespace peerjs {

void
LossMeter::report (guint8 fraction, gint32 lost, guint32 ext_highest_seq)
{
  /* The extended highest sequence number only grows; an older report
   * that overtook a newer one on the way tells nothing new. */
  if (have_ && ext_highest_seq < seq_)
    return;
  have_ = true;
  fraction_ = fraction / 256.0;
  lost_ = lost;
  seq_ = ext_highest_seq;
  fresh_ = true;
}

double
LossMeter::take ()
{
  if (!fresh_)
    return -1;
  fresh_ = false;
  double fraction = 0;
  if (have_base_ && seq_ > base_seq_) {
    gint64 lost = lost_ - base_lost_;
    fraction = CLAMP ((double) lost / (double) (seq_ - base_seq_), 0.0, 1.0);
  } else if (!have_base_) {
    /* The first report: the counts have no base yet (sequence numbers
     * start anywhere), its own fraction tells. */
    fraction = fraction_;
  }
  have_base_ = true;
  base_lost_ = lost_;
  base_seq_ = seq_;
  return fraction;
}

bool
LossMeter::latest (gint64 * lost, double * fraction) const
{
  *lost = lost_;
  *fraction = fraction_;
  return have_;
}

void
LossMeter::reset ()
{
  *this = LossMeter ();
}

int
FecLevel::update (double loss, GstClockTime now)
{
  if (loss > max_loss_) {
    percent_ = 0;
    last_loss_ = GST_CLOCK_TIME_NONE;
  } else if (loss > 0) {
    percent_ = CLAMP ((int) std::ceil (loss * 100 * per_loss_), 1, max_);
    last_loss_ = now;
  } else if (GST_CLOCK_TIME_IS_VALID (last_loss_)
      && now - last_loss_ >= FEC_HOLD) {
    percent_ = 0;
    last_loss_ = GST_CLOCK_TIME_NONE;
  }
  return percent_;
}

}  // namespace peerjs
