/* gst-bench, part 5 (--only room): a room of 6 peerjsbin members (one
 * process each, gst-bench --role member) at 320x240@15, every member
 * receiving every other: time until all video pads flow, decoded frames
 * per second per pad, CPU, RSS and threads per member, failures. No
 * peer. */
#include "benchmarks.h"

namespace peerjs::bench {

namespace {

/* "PADS time name=buffers ...". */
bool
parse_pads (const std::string & l, long long *t,
    std::map<std::string, long long> *counts)
{
  if (!g_str_has_prefix (l.c_str (), "PADS "))
    return false;
  std::stringstream in (l.substr (5));
  if (!(in >> *t))
    return false;
  counts->clear ();
  std::string item;
  while (in >> item) {
    size_t eq = item.find ('=');
    if (eq != std::string::npos)
      (*counts)[item.substr (0, eq)] = atoll (item.c_str () + eq + 1);
  }
  return true;
}

/* Distinct pads of `kind` a member saw deliver a buffer, and when the last
 * of them did (monotonic us). */
int
flowing_pads (Child * c, const char *kind, long long *last)
{
  std::vector<std::string> seen;
  for (const std::string & l : c->lines) {
    char pad[256];
    long long t;
    if (sscanf (l.c_str (), "FIRST %255s %lld", pad, &t) != 2
        || !g_str_has_prefix (pad, kind))
      continue;
    if (std::find (seen.begin (), seen.end (), pad) == seen.end ()) {
      seen.push_back (pad);
      if (last)
        *last = std::max (*last, t);
    }
  }
  return (int) seen.size ();
}

}  // namespace

RoomResult
bench_room (Server & srv)
{
  RoomResult r;
  r.ran = true;
  int n = opt.room_members;
  r.expected = n * (n - 1);
  std::string thread = random_name ("room");
  std::vector<Child *> members;
  /* For the diagnosis below. */
  bool dot_dir = !opt.log_dir.empty () && !g_getenv ("GST_DEBUG_DUMP_DOT_DIR");
  if (dot_dir)
    g_setenv ("GST_DEBUG_DUMP_DOT_DIR", opt.log_dir.c_str (), TRUE);
  gint64 t0 = now_us ();
  for (int i = 0; i < n; i++) {
    Child *c = spawn ("room-member-" + std::to_string (i + 1), { self_exe,
            "--role", "member", "--server", srv.url, "--thread", thread,
            "--latency", std::to_string (opt.latency) }, true);
    if (!c) {
      r.why = "could not start the members";
      for (Child *m : members)
        stop_child (m);
      return r;
    }
    members.push_back (c);
  }
  if (dot_dir)
    g_unsetenv ("GST_DEBUG_DUMP_DOT_DIR");
  /* Until every member receives every other's video. */
  gint64 end = t0 + 60 * G_USEC_PER_SEC;
  bool all_alive = true;
  while (now_us () < end) {
    pump (100);
    int sockets = 0, video = 0;
    long long last = 0;
    all_alive = true;
    for (Child *c : members) {
      sockets += count_lines (c, "SOCKET ") > 0;
      video += flowing_pads (c, "video_", &last);
      all_alive = all_alive && alive (c);
    }
    if (sockets == n && std::isnan (r.sockets_s))
      r.sockets_s = (now_us () - t0) / 1e6;
    if (video >= r.expected) {
      r.flowing_s = (last - t0) / 1e6;
      break;
    }
    if (!all_alive)
      break;
  }
  r.video_flowing = 0;
  for (Child *c : members)
    r.video_flowing += flowing_pads (c, "video_", nullptr);
  if (r.video_flowing < r.expected)
    r.why = std::to_string (r.video_flowing) + " of "
        + std::to_string (r.expected) + " video pads flowing "
        + (all_alive ? "after 60 s" : "when a member exited");
  note ("room: %d of %d video pads flowing after %.1f s", r.video_flowing,
      r.expected, (now_us () - t0) / 1e6);
  if (r.video_flowing < r.expected) {
    /* Where the missing video stops: each member short of pads dumps its
     * graph and the buffers through every pad (FLOW lines in its log). */
    for (size_t i = 0; i < members.size (); i++)
      if (alive (members[i])
          && flowing_pads (members[i], "video_", nullptr) < n - 1) {
        note ("room: member %zu lacks video; diagnosis in its log",
            i + 1);
        kill (members[i]->pid, SIGUSR1);
      }
    pump_for (2.5);
  }

  /* The window: measured whatever happened, so a partial room still shows
   * its figures. */
  pump_for (opt.settle);
  double hz = sysconf (_SC_CLK_TCK);
  std::vector<long long> c0, c1;
  std::vector<size_t> from;
  for (Child *c : members) {
    c0.push_back (cpu_ticks (c->pid));
    from.push_back (c->lines.size ());
  }
  long long s0 = cpu_ticks (srv.child->pid), m0 = machine_ticks ();
  gint64 w0 = now_us ();
  note ("room: measuring for %g s", opt.room_duration);
  pump_for (opt.room_duration);
  double secs = (now_us () - w0) / 1e6;
  for (Child *c : members)
    c1.push_back (cpu_ticks (c->pid));
  long long s1 = cpu_ticks (srv.child->pid), m1 = machine_ticks ();
  pump_for (1.05);              /* one more PADS line from each */
  r.window_s = secs;
  r.machine = (m1 - m0) / hz / secs * 100;
  r.server_cpu = (s1 - s0) / hz / secs * 100;
  r.members_cpu = 0;
  r.worst_second = INFINITY;
  for (int i = 0; i < n; i++) {
    Child *c = members[i];
    RoomMember m;
    m.died = !alive (c);
    if (c0[i] >= 0 && c1[i] >= 0) {
      m.cpu = (c1[i] - c0[i]) / hz / secs * 100;
      r.members_cpu += m.cpu;
    }
    /* Each video pad's frames between the last PADS line before the
     * window and the last one after it; and its worst second. */
    std::map<std::string, long long> first, prev, counts;
    long long t_first = -1, t_prev = -1, t;
    size_t start = from[i];
    for (size_t k = start; k > 0; k--)
      if (parse_pads (c->lines[k - 1], &t, &counts)) {
        start = k - 1;
        break;
      }
    for (size_t k = start; k < c->lines.size (); k++) {
      if (!parse_pads (c->lines[k], &t, &counts))
        continue;
      if (t_first < 0) {
        first = counts;
        t_first = t;
      } else {
        for (auto & p : counts)
          if (g_str_has_prefix (p.first.c_str (), "video_")) {
            long long before = prev.count (p.first) ? prev[p.first] : 0;
            r.worst_second = std::min (r.worst_second,
                (p.second - before) / ((t - t_prev) / 1e6));
          }
      }
      prev = counts;
      t_prev = t;
    }
    if (t_first >= 0 && t_prev > t_first)
      for (auto & p : prev)
        if (g_str_has_prefix (p.first.c_str (), "video_")) {
          long long before = first.count (p.first) ? first[p.first] : 0;
          double fps = (p.second - before) / ((t_prev - t_first) / 1e6);
          r.pad_fps.push_back (fps);
          m.fps_min = std::isnan (m.fps_min) ? fps : std::min (m.fps_min, fps);
        }
    m.video_pads = flowing_pads (c, "video_", nullptr);
    m.audio_pads = flowing_pads (c, "audio_", nullptr);
    r.audio_flowing += m.audio_pads;
    std::map<std::string, long long> lost;
    for (const std::string & l : c->lines) {
      char who[256];
      long long x;
      if (g_str_has_prefix (l.c_str (), "FAILED "))
        m.failed++;
      else if (g_str_has_prefix (l.c_str (), "GONE "))
        m.gone++;
      else if (g_str_has_prefix (l.c_str (), "ERROR "))
        m.errors++;
      else if (sscanf (l.c_str (), "STATS %255s %lld", who, &x) == 2)
        lost[who] = x;
      if (g_str_has_prefix (l.c_str (), "FAILED ")
          || g_str_has_prefix (l.c_str (), "ERROR ")
          || g_str_has_prefix (l.c_str (), "GONE "))
        note ("room member %d: %s", i + 1, l.c_str ());
    }
    for (auto & p : lost)
      m.lost += p.second;
    if (!m.died)
      sample_memory (c->pid, &m.rss_kib, &m.threads);
    r.failed += m.failed;
    r.gone += m.gone;
    r.errors += m.errors + m.died;
    r.lost += m.lost;
    r.members.push_back (m);
  }
  if (std::isinf (r.worst_second))
    r.worst_second = NAN;
  /* All leave at once, as a room that closes. */
  for (Child *c : members)
    if (alive (c))
      kill (-c->pid, SIGTERM);
  for (Child *c : members)
    stop_child (c);
  return r;
}

void
table_room (RoomResult & room, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  problems += room.video_flowing < room.expected || room.errors
      || room.failed;
  out += "\n";
  snprintf (line, sizeof line, "room of %d peerjsbin members, one process "
      "each, %dx%d@%d VP8 + Opus, %.0f s", opt.room_members,
      opt.room_width, opt.room_height, opt.room_fps, room.window_s);
  out += std::string (line) + "\n";
  snprintf (line, sizeof line, "all %d video pads flowing", room.expected);
  out += pad (line, 44) + (room.video_flowing >= room.expected
      ? fmt (room.flowing_s, "%.1f s after start") : "NO: " + room.why)
      + fmt (room.sockets_s, " (all greeted by the server: %.1f s)") + "\n";
  snprintf (line, sizeof line, "decoded fps per video pad, %.0f s mean",
      room.window_s);
  out += pad (line, 44) + "min " + fmt (percentile (room.pad_fps, 0),
      "%.1f") + ", median " + fmt (median (room.pad_fps), "%.1f") + " ("
      + std::to_string (room.pad_fps.size ()) + " pads; worst second of "
      "a pad: " + fmt (room.worst_second, "%.0f") + ")\n";
  out += pad ("audio pads flowing", 44) + std::to_string (room.audio_flowing)
      + " of " + std::to_string (room.expected) + "\n";
  out += pad ("CPU: members / server / other load", 44)
      + fmt (room.members_cpu, "%.0f") + " / " + fmt (room.server_cpu,
      "%.0f") + " / " + fmt (std::max (0.0, room.machine - room.members_cpu
      - room.server_cpu), "%.0f %% of one core") + "\n";
  out += pad ("member", 44) + pad ("CPU", 10) + pad ("RSS", 12)
      + pad ("threads", 10) + pad ("pads v/a", 10) + pad ("min fps", 10)
      + "failed\n";
  for (size_t i = 0; i < room.members.size (); i++) {
    RoomMember & m = room.members[i];
    out += pad ("  " + std::to_string (i + 1), 44)
        + pad (fmt (m.cpu, "%.0f %%"), 10)
        + pad (fmt (m.rss_kib / 1024, "%.1f MiB"), 12)
        + pad (fmt (m.threads, "%.0f"), 10)
        + pad (std::to_string (m.video_pads) + "/"
        + std::to_string (m.audio_pads), 10) + pad (fmt (m.fps_min, "%.1f"),
        10) + std::to_string (m.failed) + (m.died ? " (EXITED)" : "")
        + "\n";
  }
  out += pad ("peer-failed / pads removed / errors", 44)
      + std::to_string (room.failed) + " / " + std::to_string (room.gone)
      + " / " + std::to_string (room.errors) + "\n";
  out += pad ("packets lost (members' last stats)", 44)
      + std::to_string (room.lost) + "\n";
}

void
json_room (GString * j, RoomResult & room)
{
  g_string_append (j, "\"room\": {");
  json_num (j, "members", opt.room_members);
  json_num (j, "window_s", room.window_s);
  json_num (j, "sockets_s", room.sockets_s);
  json_num (j, "flowing_s", room.flowing_s);
  json_num (j, "expected_pads", room.expected);
  json_num (j, "video_flowing", room.video_flowing);
  json_num (j, "audio_flowing", room.audio_flowing);
  json_num (j, "fps_min", percentile (room.pad_fps, 0));
  json_num (j, "fps_median", median (room.pad_fps));
  json_num (j, "worst_second", room.worst_second);
  json_num (j, "members_cpu", room.members_cpu);
  json_num (j, "server_cpu", room.server_cpu);
  json_num (j, "machine", room.machine);
  json_num (j, "peer_failed", room.failed);
  json_num (j, "pads_removed", room.gone);
  json_num (j, "errors", room.errors);
  json_num (j, "packets_lost", room.lost);
  g_string_append (j, "\"per_member\": [");
  for (size_t i = 0; i < room.members.size (); i++) {
    RoomMember & m = room.members[i];
    g_string_append (j, i ? ", {" : "{");
    json_num (j, "cpu", m.cpu);
    json_num (j, "rss_kib", m.rss_kib);
    json_num (j, "threads", m.threads);
    json_num (j, "video_pads", m.video_pads);
    json_num (j, "audio_pads", m.audio_pads);
    json_num (j, "fps_min", m.fps_min);
    json_num (j, "failed", m.failed, false);
    g_string_append (j, "}");
  }
  g_string_append (j, "]}");
}

}  // namespace peerjs::bench
