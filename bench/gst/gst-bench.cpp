/* gst-bench: figures for the GStreamer elements, each next to a peer
 * measured in the same run. One file per part, over one harness
 * (harness.h: options, child processes, the server, the pair of pipelines
 * of a run; benchmarks.h: what each part gives this file):
 *
 *  1. first-frame.cpp: time from PLAYING to the first decoded frame,
 *     peerjssink -> server -> peerjssrc (two pipelines in this process),
 *     against a bare pair of webrtcbins negotiated in this process with no
 *     server.
 *  2. publisher-cpu.cpp: CPU of one peerjssink process serving 1, 2, 4, 8
 *     receivers, against a gst-launch-1.0 pipeline with one vp8enc per
 *     receiver (what a per-viewer-encoder design such as webrtcsink costs).
 *  3. memory.cpp: RSS and threads of one peerjssrc process per remote
 *     member.
 *  4. glass-to-glass.cpp: glass-to-glass latency at 640x480@30 VP8: a
 *     frame counter painted into each picture before peerjssink, read back
 *     from the picture peerjssrc decoded when it reaches a sink and when
 *     that sink (synced to the clock, as a display) renders it; both
 *     pipelines on one clock with one base time; against the same through
 *     the bare webrtcbin pair of 1 (pair.cpp holds both pairs and the
 *     counter).
 *  5. room.cpp: a room of 6 peerjsbin members (one process each) at
 *     320x240@15, every member receiving every other: time until all video
 *     pads flow, decoded frames per second per pad, CPU, RSS and threads
 *     per member, failures. No peer.
 *  6. files.cpp (--only files; not in the default list): a file offered
 *     with offer-file from a peerjssink to a peerjssrc (accept-files=all,
 *     download-dir), against the same bytes over a bare pair of webrtcbins
 *     (data channel, 64 KiB messages, the same flow control) and over one
 *     TCP connection on 127.0.0.1; with Chromium (bench/file-transfer.mjs
 *     --driven), pipeline to page, page to pipeline, and page to page with
 *     peer.js and with a bare RTCDataChannel; chat round trips (send-event
 *     with a reply, answered from the receiver's bus watch) idle and during
 *     a transfer between the pipelines.
 *  7. codecs.cpp (--only codecs; not in the default list): peerjssink's
 *     CPU per video-codec at 640x480@30 for 1 and 8 receivers and the time
 *     until the first receiver's video pad; an RTSP H.264 camera passed
 *     through next to decoded and encoded again.
 *
 * It starts its own peerjs-signalling on a free port of 127.0.0.1 and must
 * run in a network namespace that has only loopback:
 *
 *   unshare --net sh -c 'ip link set lo up && build/bench/gst-bench'
 *
 * bench/run does that. `gst-bench --help` lists the knobs. The table goes
 * to stdout; --json FILE writes every raw figure.
 *
 * Internally it also runs itself as a helper (roles.cpp; --role
 * receivers): N peerjssrc elements in one process, each member pad into a
 * fakesink, reporting on stdout what connected and how many frames came;
 * and (--role member) as one member of the room, printing the same and a
 * buffer count per member pad. */
#include "benchmarks.h"

using namespace peerjs::bench;

int
main (int argc, char **argv)
{
  gchar *signalling = nullptr, *log_dir = nullptr, *json = nullptr,
      *only = nullptr, *receivers = nullptr, *members = nullptr,
      *role = nullptr, *server = nullptr, *thread = nullptr,
      *g2g_latency = nullptr;
  gboolean allow_network = FALSE, no_format_check = FALSE,
      files_no_browser = FALSE;
  double files_mb = opt.files_bytes / 1e6,
      files_browser_mb = opt.files_browser_bytes / 1e6;
  GOptionEntry entries[] = {
    { "signalling", 0, 0, G_OPTION_ARG_FILENAME, &signalling,
        "peerjs-signalling binary (default: the build tree's)", "BIN" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &only,
        "comma list of first-frame, cpu, memory, latency, room, files, codecs "
        "(default: all but files and codecs)", "LIST" },
    { "runs", 0, 0, G_OPTION_ARG_INT, &opt.runs,
        "first-frame runs of each side, after one warm-up (5)", "N" },
    { "window", 0, 0, G_OPTION_ARG_DOUBLE, &opt.window,
        "CPU window in seconds (10)", "S" },
    { "settle", 0, 0, G_OPTION_ARG_DOUBLE, &opt.settle,
        "seconds between 'connected' and a measurement (2)", "S" },
    { "receivers", 0, 0, G_OPTION_ARG_STRING, &receivers,
        "receiver counts for the CPU figure (1,2,4,8)", "LIST" },
    { "members", 0, 0, G_OPTION_ARG_STRING, &members,
        "member counts for the memory figure (1,4)", "LIST" },
    { "latency", 0, 0, G_OPTION_ARG_INT, &opt.latency,
        "jitterbuffer latency in ms, both sides (the elements' default, "
        "peerjssrc's latency property)", "MS" },
    { "g2g-frames", 0, 0, G_OPTION_ARG_INT, &opt.g2g_frames,
        "glass-to-glass: frames shown per round and side (300)", "N" },
    { "g2g-rounds", 0, 0, G_OPTION_ARG_INT, &opt.g2g_rounds,
        "glass-to-glass: rounds of each side (1)", "N" },
    { "g2g-latency-messages", 0, 0, G_OPTION_ARG_STRING, &g2g_latency,
        "glass-to-glass: which pipelines recalculate their latency on a "
        "LATENCY message, as gst-launch-1.0 does: both, receiver, sender, "
        "none (both)", "WHICH" },
    { "room-members", 0, 0, G_OPTION_ARG_INT, &opt.room_members,
        "members of the room (6)", "N" },
    { "room-duration", 0, 0, G_OPTION_ARG_DOUBLE, &opt.room_duration,
        "seconds the room is measured for (60)", "S" },
    { "files-mb", 0, 0, G_OPTION_ARG_DOUBLE, &files_mb,
        "files: size of the file between pipelines, TCP and the bare pair, "
        "MB of 10^6 bytes (100)", "MB" },
    { "files-browser-mb", 0, 0, G_OPTION_ARG_DOUBLE, &files_browser_mb,
        "files: size of the file in the legs with a browser (32)", "MB" },
    { "files-rounds", 0, 0, G_OPTION_ARG_INT, &opt.files_rounds,
        "files: rounds of each leg, median reported (3)", "N" },
    { "files-pings", 0, 0, G_OPTION_ARG_INT, &opt.files_pings,
        "files: chat round trips measured idle and during a transfer (20)",
        "N" },
    { "files-no-browser", 0, 0, G_OPTION_ARG_NONE, &files_no_browser,
        "files: leave out the legs with Chromium", nullptr },
    { "no-format-check", 0, 0, G_OPTION_ARG_NONE, &no_format_check,
        "skip the extra CPU run with caps that name no format", nullptr },
    { "log-dir", 0, 0, G_OPTION_ARG_FILENAME, &log_dir,
        "keep every child's output here", "DIR" },
    { "json", 0, 0, G_OPTION_ARG_FILENAME, &json,
        "write the raw figures here", "FILE" },
    { "allow-network", 0, 0, G_OPTION_ARG_NONE, &allow_network,
        "run even if this namespace has more than loopback", nullptr },
    { "role", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &role, "", "" },
    { "server", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &server, "", "" },
    { "thread", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &thread, "", "" },
    { "count", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &opt.count, "", "" },
    { nullptr }
  };
  if (!g_getenv ("GST_PLUGIN_PATH") && *PEERJS_PLUGIN_DIR)
    g_setenv ("GST_PLUGIN_PATH", PEERJS_PLUGIN_DIR, TRUE);
  GOptionContext *ctx = g_option_context_new ("- figures for the peerjs "
      "GStreamer elements");
  g_option_context_add_main_entries (ctx, entries, nullptr);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  GError *error = nullptr;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "gst-bench: %s\n", error->message);
    return 2;
  }
  g_option_context_free (ctx);
  if (signalling)
    opt.signalling = signalling;
  if (log_dir)
    opt.log_dir = log_dir;
  if (json)
    opt.json_path = json;
  if (only)
    opt.only = only;
  if (receivers)
    opt.receivers = parse_int_list (receivers);
  if (members)
    opt.members = parse_int_list (members);
  if (role)
    opt.role = role;
  if (g2g_latency)
    opt.g2g_latency_messages = g2g_latency;
  if (opt.g2g_latency_messages != "both"
      && opt.g2g_latency_messages != "receiver"
      && opt.g2g_latency_messages != "sender"
      && opt.g2g_latency_messages != "none") {
    fprintf (stderr, "gst-bench: --g2g-latency-messages takes both, "
        "receiver, sender or none\n");
    return 2;
  }
  if (server)
    opt.server = server;
  if (thread)
    opt.thread = thread;
  opt.allow_network = allow_network;
  opt.format_check = !no_format_check;
  opt.files_bytes = (guint64) (files_mb * 1e6);
  opt.files_browser_bytes = (guint64) (files_browser_mb * 1e6);
  opt.files_browser = !files_no_browser;
  if (opt.files_bytes < 1000 * 1000 || opt.files_browser_bytes < 1000 * 1000
      || opt.files_rounds < 1 || opt.files_pings < 1) {
    fprintf (stderr, "gst-bench: --files-mb and --files-browser-mb take 1 "
        "or more, --files-rounds and --files-pings 1 or more\n");
    return 2;
  }

  if (opt.room_members < 2 || opt.g2g_frames < 1) {
    fprintf (stderr, "gst-bench: --room-members takes 2 or more, "
        "--g2g-frames 1 or more\n");
    return 2;
  }
  if (opt.latency < 0) {
    /* What a user gets without setting latency: the figures are about the
     * default, whatever it is now. */
    g_autoptr (GstElement) probe = gst_element_factory_make ("peerjssrc",
        nullptr);
    GParamSpec *ps = probe ? g_object_class_find_property (
        G_OBJECT_GET_CLASS (probe), "latency") : nullptr;
    if (!ps) {
      fprintf (stderr, "gst-bench: no peerjssrc with a latency property "
          "(GST_PLUGIN_PATH=%s)\n", g_getenv ("GST_PLUGIN_PATH"));
      return 2;
    }
    opt.latency = (int) G_PARAM_SPEC_UINT (ps)->default_value;
  }
  if (opt.role == "receivers")
    return run_receivers ();
  if (opt.role == "member")
    return run_member ();

  std::string other;
  if (!opt.allow_network && !loopback_only (&other)) {
    fprintf (stderr, "gst-bench: this network namespace has '%s' besides "
        "loopback; run it as\n  unshare --net sh -c 'ip link set lo up && "
        "%s'\n(bench/run does), or pass --allow-network\n", other.c_str (),
        argv[0]);
    return 2;
  }
  for (const char *f : { "peerjssink", "peerjssrc", "webrtcbin", "vp8enc",
          "vp8dec", "rtpvp8pay", "rtpvp8depay", "videotestsrc" }) {
    g_autoptr (GstElementFactory) fac = gst_element_factory_find (f);
    if (!fac) {
      fprintf (stderr, "gst-bench: no element '%s' (GST_PLUGIN_PATH=%s)\n", f,
          g_getenv ("GST_PLUGIN_PATH"));
      return 2;
    }
  }
  g_autofree char *launch = g_find_program_in_path ("gst-launch-1.0");
  if (!launch) {
    fprintf (stderr, "gst-bench: gst-launch-1.0 is not on the PATH\n");
    return 2;
  }
  gst_launch = launch;
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", nullptr);
  self_exe = exe ? exe : argv[0];
  if (!opt.log_dir.empty ())
    g_mkdir_with_parents (opt.log_dir.c_str (), 0755);
  for (int sig : { SIGINT, SIGTERM, SIGHUP })
    signal (sig, on_fatal_signal);

  gint64 started = now_us ();
  Server srv;
  if (!start_server (srv)) {
    stop_all ();
    return 1;
  }
  note ("server at %s", srv.url.c_str ());

  FirstFrameResult ff;
  CpuResult cpu;
  MemResult mem;
  G2GResult g2g;
  RoomResult room;
  FileResult files;
  CodecResult codecs;
  bool ran_codecs = wants ("codecs");
  bool ran_ff = wants ("first-frame"), ran_cpu = wants ("cpu"),
      ran_mem = wants ("memory"), ran_g2g = wants ("latency"),
      ran_room = wants ("room"), ran_files = wants ("files");
  if (ran_ff)
    ff = bench_first_frame (srv.url);
  if (ran_g2g)
    g2g = bench_g2g (srv.url);
  if (ran_cpu)
    cpu = bench_cpu (srv.url);
  if (ran_mem)
    mem = bench_memory (srv.url);
  if (ran_room)
    room = bench_room (srv);
  if (ran_files)
    files = bench_files (srv.url);
  if (ran_codecs)
    codecs = bench_codecs (srv.url);
  bool server_alive = alive (srv.child);
  stop_all ();

  /* ---- table ---- */
  int problems = ff.failures + (server_alive ? 0 : 1);
  bool missed = false;
  std::string out;
  char line[512];
  bool files_alone = ran_files && !ran_ff && !ran_cpu && !ran_mem && !ran_g2g
      && !ran_room;
  snprintf (line, sizeof line, "GStreamer elements%s, %ld cores, "
      "loopback-only network namespace, %.0f s\n", files_alone ? ", files"
      : "", sysconf (_SC_NPROCESSORS_ONLN), (now_us () - started) / 1e6);
  out += line;

  if (ran_ff)
    table_first_frame (ff, out, problems, missed);
  if (ran_g2g)
    table_g2g (g2g, out, problems, missed);
  if (ran_cpu)
    table_cpu (cpu, out, problems, missed);
  if (ran_mem)
    table_memory (mem, out, problems, missed);
  if (ran_room)
    table_room (room, out, problems, missed);
  if (ran_files)
    table_files (files, out, problems, missed);
  if (ran_codecs)
    table_codecs (codecs, out, problems, missed);
  if (!server_alive)
    out += "\nFAILED: peerjs-signalling died during the benchmark\n";
  /* No trailing blanks. */
  std::string trimmed;
  std::stringstream lines_in (out);
  for (std::string l; std::getline (lines_in, l);)
    trimmed += l.substr (0, l.find_last_not_of (' ') + 1) + "\n";
  fputs (trimmed.c_str (), stdout);
  fflush (stdout);

  if (!opt.json_path.empty ()) {
    GString *j = g_string_new ("{");
    json_first_frame (j, ff);
    g_string_append (j, ", ");
    json_cpu (j, cpu);
    g_string_append (j, ", ");
    json_memory (j, mem);
    g_string_append (j, ", ");
    json_g2g (j, g2g);
    g_string_append (j, ", ");
    json_room (j, room);
    if (ran_files) {
      g_string_append (j, ", ");
      json_files (j, files);
    }
    g_string_append_printf (j, ", \"problems\": %d, \"targets_missed\": %s}\n",
        problems, missed ? "true" : "false");
    g_file_set_contents (opt.json_path.c_str (), j->str, -1, nullptr);
    g_string_free (j, TRUE);
  }
  if (problems)
    return 1;
  return missed ? 3 : 0;
}
