/* gst-bench, part 2 (--only cpu): CPU of one peerjssink process serving
 * 1, 2, 4, 8 receivers, against a gst-launch-1.0 pipeline with one vp8enc
 * per receiver (what a per-viewer-encoder design such as webrtcsink
 * costs). */
#include "benchmarks.h"

namespace peerjs::bench {

namespace {

/* CPU of `pid` (and the others) over the window. */
void
measure_window (CpuSample & s, pid_t pid, Child * receivers)
{
  double hz = sysconf (_SC_CLK_TCK);
  long long c0 = cpu_ticks (pid), m0 = machine_ticks ();
  long long r0 = receivers ? cpu_ticks (receivers->pid) : 0;
  long long f0 = 0, ft0 = 0, f1 = 0, ft1 = 0;
  if (receivers)
    last_frames (receivers, &f0, &ft0);
  gint64 t0 = now_us ();
  pump_for (opt.window);
  if (receivers)
    pump_for (1.05);    /* one more FRAMES line */
  double secs = (now_us () - t0) / 1e6;
  long long c1 = cpu_ticks (pid), m1 = machine_ticks ();
  if (c0 < 0 || c1 < 0) {
    s.why = "the publisher exited during the window";
    return;
  }
  s.cpu = (c1 - c0) / hz / secs * 100;
  s.machine = (m1 - m0) / hz / secs * 100;
  if (receivers) {
    long long r1 = cpu_ticks (receivers->pid);
    last_frames (receivers, &f1, &ft1);
    s.recv_cpu = (r1 - r0) / hz / secs * 100;
    s.fps = frame_rate (f0, ft0, f1, ft1);
  }
  s.ok = true;
}

CpuSample
cpu_ours (const std::string & url, int n, bool pin_format)
{
  CpuSample s;
  std::string thread = random_name ("cpu");
  Child *sink = spawn ("publisher-" + std::to_string (n), { gst_launch,
          "peerjssink", "name=s", "server=" + url, "thread=" + thread,
          "latency=" + std::to_string (opt.latency), "videotestsrc",
          "is-live=true", "!", raw_caps (opt.cpu_width, opt.cpu_height,
              pin_format), "!", "s.video" }, false);
  Child *recv = spawn ("receivers-" + std::to_string (n), { self_exe,
          "--role", "receivers", "--count", std::to_string (n), "--server",
          url, "--thread", thread, "--latency",
          std::to_string (opt.latency) }, true);
  if (sink && recv) {
    gint64 t0 = now_us (), end = t0 + 40 * G_USEC_PER_SEC;
    int connected = 0;
    while (now_us () < end && alive (sink) && alive (recv)) {
      pump (100);
      connected = videos_connected (recv);
      if (connected >= n)
        break;
    }
    if (connected < n) {
      s.why = std::to_string (connected) + " of " + std::to_string (n)
          + " receivers got video within 40 s";
    } else {
      s.connect_s = (now_us () - t0) / 1e6;
      pump_for (opt.settle);
      measure_window (s, sink->pid, recv);
      s.fps /= n;
    }
    for (const std::string & l : recv->lines)
      if (g_str_has_prefix (l.c_str (), "FAILED ")
          || g_str_has_prefix (l.c_str (), "ERROR ")
          || g_str_has_prefix (l.c_str (), "GONE "))
        note ("receivers: %s", l.c_str ());
  } else {
    s.why = "could not start the processes";
  }
  stop_child (recv);
  stop_child (sink);
  return s;
}

CpuSample
cpu_encoders (int n)
{
  CpuSample s;
  std::vector<std::string> argv = { gst_launch, "videotestsrc",
    "is-live=true", "!", raw_caps (opt.cpu_width, opt.cpu_height), "!", "tee",
    "name=t" };
  for (int i = 0; i < n; i++) {
    argv.insert (argv.end (), { "t.", "!", "queue", "!" });
    gchar **enc = g_strsplit (VP8ENC, " ", -1);
    for (gchar **e = enc; *e; e++)
      argv.push_back (*e);
    g_strfreev (enc);
    argv.insert (argv.end (), { "!", "fakesink" });
  }
  Child *c = spawn ("encoders-" + std::to_string (n), argv, false);
  if (!c) {
    s.why = "could not start gst-launch-1.0";
    return s;
  }
  pump_for (opt.settle);
  if (alive (c))
    measure_window (s, c->pid, nullptr);
  else
    s.why = "gst-launch-1.0 exited";
  stop_child (c);
  return s;
}

}  // namespace

CpuResult
bench_cpu (const std::string & url)
{
  CpuResult r;
  for (int n : opt.receivers) {
    note ("CPU: peerjssink with %d receiver(s)", n);
    r.ours[n] = cpu_ours (url, n, true);
    if (!r.ours[n].ok)
      note ("CPU: peerjssink, %d: FAILED: %s", n, r.ours[n].why.c_str ());
    note ("CPU: %d per-receiver encoder(s)", n);
    r.encoders[n] = cpu_encoders (n);
    if (!r.encoders[n].ok)
      note ("CPU: encoders, %d: FAILED: %s", n, r.encoders[n].why.c_str ());
  }
  if (opt.format_check) {
    note ("CPU: peerjssink with 1 receiver, caps without a format");
    r.ours_any_format = cpu_ours (url, 1, false);
  }
  return r;
}

void
table_cpu (CpuResult & cpu, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  out += "\n";
  snprintf (line, sizeof line, "publisher CPU, %dx%d@30 VP8, %g s",
      opt.cpu_width, opt.cpu_height, opt.window);
  out += pad (line, 44) + pad ("peerjssink", 12) + pad ("N encoders", 12)
      + pad ("ours/theirs", 13) + pad ("recv fps", 10)
      + pad ("recv CPU", 10) + "other load\n";
  out += pad ("(CPU in % of one core)", 44) + pad ("", 12) + pad ("", 12)
      + pad ("", 13) + pad ("per recv", 10) + pad ("", 10)
      + "ours / enc.\n";
  double worst_other = 0;
  double o1 = cpu.ours.count (1) ? cpu.ours[1].cpu : NAN;
  double e1 = cpu.encoders.count (1) ? cpu.encoders[1].cpu : NAN;
  for (int n : opt.receivers) {
    CpuSample & o = cpu.ours[n];
    CpuSample & e = cpu.encoders[n];
    problems += !o.ok + !e.ok;
    snprintf (line, sizeof line, "%d receiver%s", n, n == 1 ? "" : "s");
    out += pad (line, 44) + pad (o.ok ? fmt (o.cpu, "%.0f %%") : "FAILED", 12)
        + pad (e.ok ? fmt (e.cpu, "%.0f %%") : "FAILED", 12)
        + pad (fmt (o.cpu / e.cpu, "%.2f"), 13) + pad (fmt (o.fps, "%.1f"), 10)
        + pad (fmt (o.recv_cpu, "%.0f %%"), 10)
        + fmt (o.other (), "%.0f") + " / " + fmt (e.other (), "%.0f %%")
        + "\n";
  for (double x : { o.other (), e.other () })
      if (!std::isnan (x))
        worst_other = std::max (worst_other, x);
  }
  if (worst_other > 25)
    out += fmt (worst_other, "WARNING: other work used up to %.0f%% of a "
        "core during a window; the figures may be disturbed.\n");
  for (int n : opt.receivers) {
    if (n == 1)
      continue;
    double ro = cpu.ours[n].cpu / o1, re = cpu.encoders[n].cpu / e1;
    snprintf (line, sizeof line, "%d vs 1 receiver", n);
    std::string target;
    if (n == 8) {
      bool met = ro < 2.0;
      missed = missed || !met;
      target = std::string ("(target for peerjssink < 2: ")
          + (std::isnan (ro) ? "n/a" : met ? "met" : "MISSED") + ")";
    }
    out += pad (line, 44) + pad (fmt (ro, "%.2f x"), 12)
        + pad (fmt (re, "%.2f x"), 12) + target + "\n";
  }
  if (opt.format_check) {
    CpuSample & a = cpu.ours_any_format;
    out += pad ("1 receiver, caps without format=I420", 44)
        + pad (a.ok ? fmt (a.cpu, "%.0f %%") : "FAILED", 12) + pad ("", 12)
        + pad (fmt (a.cpu / o1, "%.2f"), 13) + "(vs format=I420)\n";
  }
  for (int n : opt.receivers)
    for (CpuSample *s : { &cpu.ours[n], &cpu.encoders[n] })
      if (!s->ok)
        out += "  FAILED (" + std::to_string (n) + "): " + s->why + "\n";
}

void
json_cpu (GString * j, CpuResult & cpu)
{
  g_string_append (j, "\"cpu\": [");
  bool first = true;
  for (int n : opt.receivers) {
    if (!cpu.ours.count (n))
      continue;
    g_string_append_printf (j, "%s{\"receivers\": %d, ", first ? "" : ", ",
        n);
    first = false;
    CpuSample & o = cpu.ours[n];
    CpuSample & e = cpu.encoders[n];
    json_num (j, "ours_cpu", o.cpu);
    json_num (j, "encoders_cpu", e.cpu);
    json_num (j, "receivers_cpu", o.recv_cpu);
    json_num (j, "fps_per_receiver", o.fps);
    json_num (j, "connect_s", o.connect_s);
    json_num (j, "machine_ours", o.machine);
    json_num (j, "machine_encoders", e.machine);
    json_num (j, "other_ours", o.other ());
    json_num (j, "other_encoders", e.other (), false);
    g_string_append (j, "}");
  }
  g_string_append (j, "], ");
  json_num (j, "cpu_any_format_1", cpu.ours_any_format.cpu, false);
}

}  // namespace peerjs::bench
