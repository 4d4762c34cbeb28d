/* gst-bench, part 1 (--only first-frame): time from PLAYING to the first
 * decoded frame, peerjssink -> server -> peerjssrc (two pipelines in this
 * process), against a bare pair of webrtcbins negotiated in this process
 * with no server. */
#include "benchmarks.h"

namespace peerjs::bench {

namespace {

/* One run; the time to the first frame in ms, or a negative number. */
double
first_frame_run (bool ours, const std::string & url, std::string * why)
{
  auto *ff = new FirstFrame ();
  double result = -1;
  if (!(ours ? build_ours (ff, url) : build_bare (ff))) {
    *why = "could not build the pipelines";
  } else {
    /* The receiving side first: webrtcbin takes no description before it
     * runs. The clock starts before either. */
    gint64 t0 = now_us ();
    gst_element_set_state (ff->recv, GST_STATE_PLAYING);
    gst_element_set_state (ff->send, GST_STATE_PLAYING);
    gint64 end = t0 + 15 * G_USEC_PER_SEC;
    while (!ff->first && !ff->failed && now_us () < end) {
      g_usleep (2000);
      check_bus (ff, ff->send);
      check_bus (ff, ff->recv);
    }
    if (ff->first)
      result = (ff->first - t0) / 1000.0;
    else
      *why = ff->failed ? ff->why : "no frame within 15 s";
  }
  stop_pair (ff, ours);
  return result;
}

}  // namespace

FirstFrameResult
bench_first_frame (const std::string & url)
{
  FirstFrameResult r;
  for (int i = -1; i < opt.runs; i++) {
    /* Interleaved, alternating which goes first; run -1 warms up. */
    for (int j = 0; j < 2; j++) {
      bool ours = (i + j) % 2 == 0;
      std::string why;
      double ms = first_frame_run (ours, url, &why);
      const char *name = ours ? "peerjs elements" : "bare webrtcbin pair";
      if (ms < 0) {
        r.failures++;
        r.problems.push_back (std::string (name) + ": " + why);
        note ("first frame, %s, run %d: FAILED: %s", name, i + 1, why.c_str ());
        continue;
      }
      note ("first frame, %s, %s: %.0f ms", name,
          i < 0 ? "warm-up" : ("run " + std::to_string (i + 1)).c_str (), ms);
      if (i < 0)
        (ours ? r.ours_warm : r.bare_warm) = ms;
      else
        (ours ? r.ours : r.bare).push_back (ms);
    }
  }
  return r;
}

void
table_first_frame (FirstFrameResult & ff, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  double o_ms = median (ff.ours), b_ms = median (ff.bare);
  double ratio = o_ms / b_ms;
  bool met = o_ms < 500 && ratio <= 1.2;
  missed = missed || !met;
  out += "\n";
  out += pad ("first decoded frame after PLAYING", 44)
      + pad ("peerjs elements", 18) + pad ("bare webrtcbins", 18)
      + "ratio\n";
  std::string target = std::isnan (ratio) ? "n/a" : fmt (ratio, "%.2f")
      + std::string (" (target < 500 ms and <= 1.2: ")
      + (met ? "met" : "MISSED") + ")";
  snprintf (line, sizeof line, "median of %d, 320x240 VP8", opt.runs);
  out += pad (line, 44) + pad (fmt (o_ms, "%.0f ms"), 18)
      + pad (fmt (b_ms, "%.0f ms"), 18) + target + "\n";
  out += pad ("  runs, peerjs elements (ms)", 44) + join_ms (ff.ours) + "\n";
  out += pad ("  runs, bare webrtcbins (ms)", 44) + join_ms (ff.bare) + "\n";
  out += pad ("  warm-up run, not counted", 44)
      + pad (fmt (ff.ours_warm, "%.0f ms"), 18)
      + fmt (ff.bare_warm, "%.0f ms") + "\n";
  for (const std::string & p : ff.problems)
    out += "  FAILED: " + p + "\n";
}

void
json_first_frame (GString * j, FirstFrameResult & ff)
{
  double o_ms = median (ff.ours), b_ms = median (ff.bare);
  g_string_append (j, "\"first_frame\": {");
  json_num (j, "ours_median_ms", o_ms);
  json_num (j, "bare_median_ms", b_ms);
  g_string_append_printf (j, "\"ours_ms\": [%s], \"bare_ms\": [%s], ",
      join_ms (ff.ours).c_str (), join_ms (ff.bare).c_str ());
  json_num (j, "ours_warmup_ms", ff.ours_warm);
  json_num (j, "bare_warmup_ms", ff.bare_warm);
  g_string_append_printf (j, "\"failures\": %d}", ff.failures);
}

}  // namespace peerjs::bench
