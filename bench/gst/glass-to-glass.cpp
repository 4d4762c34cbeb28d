/* gst-bench, part 4 (--only latency): glass-to-glass latency at
 * 640x480@30 VP8: a frame counter painted into each picture before
 * peerjssink, read back from the picture peerjssrc decoded when it reaches
 * a sink and when that sink (synced to the clock, as a display) renders
 * it; both pipelines on one clock with one base time; against the same
 * through the bare webrtcbin pair of the first-frame part. */
#include "benchmarks.h"

namespace peerjs::bench {

namespace {

/* One round of one side: both pipelines on the system clock with one base
 * time, so the receiver's running time is the sender's. Collects
 * opt.g2g_frames pictures shown, from 1 s after the first. */
void
g2g_run (bool ours, const std::string & url, G2GSide & side)
{
  auto *ff = new FirstFrame ();
  auto *st = new Stamps ();
  ff->stamps = st;
  st->want = opt.g2g_frames;
  st->clock = gst_system_clock_obtain ();
  std::string why;
  if (!(ours ? build_ours (ff, url) : build_bare (ff))) {
    why = "could not build the pipelines";
  } else {
    for (GstElement *p : { ff->send, ff->recv }) {
      gst_pipeline_use_clock (GST_PIPELINE (p), st->clock);
      gst_element_set_start_time (p, GST_CLOCK_TIME_NONE);
    }
    st->base = gst_clock_get_time (st->clock);
    gst_element_set_base_time (ff->send, st->base);
    gst_element_set_base_time (ff->recv, st->base);
    gst_element_set_state (ff->recv, GST_STATE_PLAYING);
    gst_element_set_state (ff->send, GST_STATE_PLAYING);
    gint64 end = now_us () + 15 * G_USEC_PER_SEC;
    while (!ff->first && !ff->failed && now_us () < end) {
      g_usleep (2000);
      check_bus (ff, ff->send);
      check_bus (ff, ff->recv);
    }
    if (ff->first && !ff->failed) {
      /* The member's branch came after PLAYING: make sure the sink has
       * the pipeline's latency before counting. */
      gst_bin_recalculate_latency (GST_BIN (ff->recv));
      {
        std::lock_guard<std::mutex> guard (st->lock);
        st->collect_from = st->running_now () + GST_SECOND;
      }
      end = now_us () + (gint64) ((6.0 + 2.0 * opt.g2g_frames / 30)
          * G_USEC_PER_SEC);
      long long m0 = machine_ticks (), p0 = cpu_ticks (getpid ());
      gint64 w0 = now_us ();
      for (;;) {
        g_usleep (20000);
        check_bus (ff, ff->send);
        check_bus (ff, ff->recv);
        std::lock_guard<std::mutex> guard (st->lock);
        if (st->shown_ms.size () >= st->want || ff->failed || now_us () > end)
          break;
      }
      /* Includes the signalling server (a few ticks at most). */
      double hz = sysconf (_SC_CLK_TCK), secs = (now_us () - w0) / 1e6;
      side.other.push_back (std::max (0.0, ((machine_ticks () - m0)
                  - (cpu_ticks (getpid ()) - p0)) / hz / secs * 100));
      GstQuery *q = gst_query_new_latency ();
      if (gst_element_query (ff->recv, q)) {
        GstClockTime min = 0, max = 0;
        gboolean live = FALSE;
        gst_query_parse_latency (q, &live, &min, &max);
        side.latency_ms.push_back (min / 1e6);
      }
      gst_query_unref (q);
      std::lock_guard<std::mutex> guard (st->lock);
      if (ff->failed)
        why = ff->why;
      else if (st->shown_ms.size () < st->want)
        why = std::to_string (st->shown_ms.size ()) + " of "
            + std::to_string (st->want) + " frames shown in time";
    } else {
      why = ff->failed ? ff->why : "no frame within 15 s";
    }
  }
  stop_pair (ff, ours);
  /* Both pipelines are stopped: nothing calls back into st any more. It
   * is kept all the same, like ff (a few hundred KiB per round). */
  std::lock_guard<std::mutex> guard (st->lock);
  side.decoded.insert (side.decoded.end (), st->decoded_ms.begin (),
      st->decoded_ms.end ());
  side.shown.insert (side.shown.end (), st->shown_ms.begin (),
      st->shown_ms.end ());
  side.unreadable += st->unreadable;
  side.source_lag.insert (side.source_lag.end (), st->source_lag_ms.begin (),
      st->source_lag_ms.end ());
  side.unpainted += st->unpainted;
  std::vector<int> codes = st->decoded_codes;
  std::sort (codes.begin (), codes.end ());
  codes.erase (std::unique (codes.begin (), codes.end ()), codes.end ());
  if (!codes.empty ()) {
    side.lost += (codes.back () - codes.front () + 1) - (int) codes.size ();
    side.decoded_frames += (int) codes.size ();
  }
  const char *name = ours ? "peerjs elements" : "bare webrtcbin pair";
  if (!why.empty ()) {
    side.failures++;
    side.problems.push_back (std::string (name) + ": " + why);
    note ("glass-to-glass, %s: FAILED: %s", name, why.c_str ());
  }
  note ("glass-to-glass, %s: %zu shown, p50 %.1f ms (decoded p50 %.1f ms)",
      name, st->shown_ms.size (), percentile (st->shown_ms, 0.5),
      percentile (st->decoded_ms, 0.5));
}

}  // namespace

G2GResult
bench_g2g (const std::string & url)
{
  G2GResult r;
  for (int i = 0; i < opt.g2g_rounds; i++)
    for (int j = 0; j < 2; j++) {
      bool ours = (i + j) % 2 == 0;
      note ("glass-to-glass, %s, round %d", ours ? "peerjs elements"
          : "bare webrtcbin pair", i + 1);
      g2g_run (ours, url, ours ? r.ours : r.bare);
    }
  return r;
}

void
table_g2g (G2GResult & g2g, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  G2GSide & o = g2g.ours;
  G2GSide & b = g2g.bare;
  double o50 = percentile (o.shown, 0.5), o95 = percentile (o.shown, 0.95);
  double b50 = percentile (b.shown, 0.5), b95 = percentile (b.shown, 0.95);
  bool met = o50 < 100;
  missed = missed || !met;
  problems += o.failures + b.failures;
  auto pair = [] (double a, double b, const char *unit) {
    return fmt (a, "%.1f") + " / " + fmt (b, "%.1f") + unit;
  };
  out += "\n";
  snprintf (line, sizeof line, "glass-to-glass, %dx%d@30 VP8, latency=%d%s",
      opt.g2g_width, opt.g2g_height, opt.latency,
      opt.g2g_latency_messages == "both"
      ? "" : (", latency messages: " + opt.g2g_latency_messages).c_str ());
  out += pad (line, 44) + pad ("peerjs elements", 18)
      + pad ("bare webrtcbins", 18) + "ratio\n";
  out += pad ("shown (sink on the clock), p50 / p95", 44)
      + pad (pair (o50, o95, " ms"), 18) + pad (pair (b50, b95, " ms"), 18)
      + fmt (o50 / b50, "%.2f") + " / " + fmt (o95 / b95, "%.2f")
      + " (target p50 < 100 ms: " + (std::isnan (o50) ? "n/a" : met
          ? "met" : "MISSED") + ")\n";
  double od50 = percentile (o.decoded, 0.5), od95 =
      percentile (o.decoded, 0.95);
  double bd50 = percentile (b.decoded, 0.5), bd95 =
      percentile (b.decoded, 0.95);
  out += pad ("decoded (reaches the sink), p50 / p95", 44)
      + pad (pair (od50, od95, " ms"), 18) + pad (pair (bd50, bd95, " ms"),
      18) + fmt (od50 / bd50, "%.2f") + " / " + fmt (od95 / bd95, "%.2f")
      + "\n";
  out += pad ("  shown min / max (ms)", 44)
      + pad (pair (percentile (o.shown, 0), percentile (o.shown, 1), ""), 18)
      + pair (percentile (b.shown, 0), percentile (b.shown, 1), "") + "\n";
  out += pad ("  receiving pipeline latency (ms)", 44)
      + pad (join_ms (o.latency_ms), 18) + join_ms (b.latency_ms) + "\n";
  out += pad ("  frame painted after its PTS, p50 (ms)", 44)
      + pad (fmt (percentile (o.source_lag, 0.5), "%.1f"), 18)
      + fmt (percentile (b.source_lag, 0.5), "%.1f") + "\n";
  out += pad ("  other load (% of one core)", 44)
      + pad (join_ms (o.other), 18) + join_ms (b.other) + "\n";
  snprintf (line, sizeof line, "  frames shown, %d round%s of %d",
      opt.g2g_rounds, opt.g2g_rounds == 1 ? "" : "s", opt.g2g_frames);
  out += pad (line, 44) + pad (std::to_string (o.shown.size ()), 18)
      + std::to_string (b.shown.size ()) + "\n";
  out += pad ("  missing / unreadable decoded frames", 44)
      + pad (std::to_string (o.lost) + " / "
      + std::to_string (o.unreadable), 18) + std::to_string (b.lost)
      + " / " + std::to_string (b.unreadable) + "\n";
  for (const std::string & p : o.problems)
    out += "  FAILED: " + p + "\n";
  for (const std::string & p : b.problems)
    out += "  FAILED: " + p + "\n";
}

void
json_g2g (GString * j, G2GResult & g2g)
{
  g_string_append_printf (j, "\"g2g\": {\"latency_messages\": \"%s\", ",
      opt.g2g_latency_messages.c_str ());
  const char *sep = "";
  for (auto side : { std::make_pair ("ours", &g2g.ours),
          std::make_pair ("bare", &g2g.bare) }) {
    G2GSide & x = *side.second;
    g_string_append_printf (j, "%s\"%s\": {", sep, side.first);
    sep = ", ";
    json_num (j, "source_lag_p50_ms", percentile (x.source_lag, 0.5));
    json_num (j, "shown_p50_ms", percentile (x.shown, 0.5));
    json_num (j, "shown_p95_ms", percentile (x.shown, 0.95));
    json_num (j, "decoded_p50_ms", percentile (x.decoded, 0.5));
    json_num (j, "decoded_p95_ms", percentile (x.decoded, 0.95));
    g_string_append_printf (j, "\"shown\": %zu, \"missing\": %d, "
        "\"unreadable\": %d, \"failures\": %d, \"pipeline_latency_ms\": "
        "[%s], \"other_load\": [%s]}", x.shown.size (), x.lost,
        x.unreadable, x.failures, join_ms (x.latency_ms).c_str (),
        join_ms (x.other).c_str ());
  }
  g_string_append (j, "}");
}

}  // namespace peerjs::bench
