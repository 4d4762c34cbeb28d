/* gst-bench, part 3 (--only memory): RSS and threads of one peerjssrc
 * process per remote member. */
#include "benchmarks.h"

namespace peerjs::bench {

namespace {

MemSample
memory_run (const std::string & url, int k)
{
  MemSample s;
  std::string thread = random_name ("mem");
  Child *recv = spawn ("member-receiver-" + std::to_string (k),
      { self_exe, "--role", "receivers", "--count", "1", "--server",
        url, "--thread", thread, "--latency", std::to_string (opt.latency) },
      true);
  std::vector<Child *> sinks;
  if (!recv) {
    s.why = "could not start the receiver";
    return s;
  }
  gint64 end = now_us () + 10 * G_USEC_PER_SEC;
  while (now_us () < end && alive (recv) && !count_lines (recv, "SOCKET "))
    pump (100);
  if (!count_lines (recv, "SOCKET ")) {
    s.why = "the receiver did not connect to the server";
    stop_child (recv);
    return s;
  }
  pump_for (opt.settle);
  sample_memory (recv->pid, &s.base_rss_kib, &s.base_threads);
  for (int i = 0; i < k; i++)
    sinks.push_back (spawn ("member-" + std::to_string (k) + "-"
            + std::to_string (i), { gst_launch, "peerjssink", "name=s",
              "server=" + url, "thread=" + thread, "latency="
              + std::to_string (opt.latency), "videotestsrc", "is-live=true",
              "!", raw_caps (opt.mem_width, opt.mem_height), "!", "s.video" },
            false));
  end = now_us () + 40 * G_USEC_PER_SEC;
  int connected = 0;
  while (now_us () < end && alive (recv)) {
    pump (100);
    connected = videos_connected (recv);
    if (connected >= k)
      break;
  }
  if (connected < k) {
    s.why = std::to_string (connected) + " of " + std::to_string (k)
        + " members' video reached the receiver within 40 s";
  } else {
    pump_for (opt.settle + 1.0);
    long long f0 = 0, t0 = 0, f1 = 0, t1 = 0;
    last_frames (recv, &f0, &t0);
    sample_memory (recv->pid, &s.rss_kib, &s.threads);
    pump_for (1.05);
    last_frames (recv, &f1, &t1);
    s.fps = frame_rate (f0, t0, f1, t1) / k;
    s.ok = true;
  }
  for (Child *c : sinks)
    stop_child (c);
  stop_child (recv);
  return s;
}

}  // namespace

MemResult
bench_memory (const std::string & url)
{
  MemResult r;
  for (int k : opt.members) {
    note ("memory: one peerjssrc receiving %d member(s)", k);
    r.runs[k] = memory_run (url, k);
    if (!r.runs[k].ok)
      note ("memory, %d: FAILED: %s", k, r.runs[k].why.c_str ());
  }
  return r;
}

void
table_memory (MemResult & mem, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  out += "\n";
  out += pad ("one peerjssrc process, per remote member", 44)
      + pad ("RSS", 12) + pad ("threads", 12) + "fps per member\n";
  bool first = true;
  for (int k : opt.members) {
    MemSample & s = mem.runs[k];
    problems += !s.ok;
    if (first && !std::isnan (s.base_rss_kib)) {
      out += pad ("0 members (connected to the server)", 44)
          + pad (fmt (s.base_rss_kib / 1024, "%.1f MiB"), 12)
          + fmt (s.base_threads, "%.0f") + "\n";
      first = false;
    }
    snprintf (line, sizeof line, "%d member%s, 320x240 VP8 each", k,
        k == 1 ? "" : "s");
    out += pad (line, 44) + pad (s.ok ? fmt (s.rss_kib / 1024, "%.1f MiB")
        : "FAILED", 12) + pad (fmt (s.threads, "%.0f"), 12)
        + fmt (s.fps, "%.1f") + "\n";
    if (!s.ok)
      out += "  FAILED: " + s.why + "\n";
  }
  if (opt.members.size () >= 2) {
    int k0 = opt.members.front (), k1 = opt.members.back ();
    MemSample & a = mem.runs[k0];
    MemSample & b = mem.runs[k1];
    snprintf (line, sizeof line, "per member (%d vs %d members)", k1, k0);
    out += pad (line, 44) + pad (fmt ((b.rss_kib - a.rss_kib) / 1024
            / (k1 - k0), "%.2f MiB"), 12)
        + fmt ((b.threads - a.threads) / (k1 - k0), "%.1f") + "\n";
    snprintf (line, sizeof line, "first member (%d vs 0)", k0);
    out += pad (line, 44) + pad (fmt ((a.rss_kib - a.base_rss_kib) / 1024
            / k0, "%.2f MiB"), 12)
        + fmt ((a.threads - a.base_threads) / k0, "%.1f") + "\n";
  }
}

void
json_memory (GString * j, MemResult & mem)
{
  g_string_append (j, "\"memory\": [");
  bool first = true;
  for (int k : opt.members) {
    if (!mem.runs.count (k))
      continue;
    MemSample & s = mem.runs[k];
    g_string_append_printf (j, "%s{\"members\": %d, ", first ? "" : ", ", k);
    first = false;
    json_num (j, "rss_kib", s.rss_kib);
    json_num (j, "threads", s.threads);
    json_num (j, "base_rss_kib", s.base_rss_kib);
    json_num (j, "base_threads", s.base_threads);
    json_num (j, "fps_per_member", s.fps, false);
    g_string_append (j, "}");
  }
  g_string_append (j, "]");
}

}  // namespace peerjs::bench
