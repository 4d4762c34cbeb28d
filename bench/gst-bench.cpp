/* gst-bench: figures for the GStreamer elements, each next to a peer
 * measured in the same run.
 *
 *  1. Time from PLAYING to the first decoded frame, peerjssink -> server ->
 *     peerjssrc (two pipelines in this process), against a bare pair of
 *     webrtcbins negotiated in this process with no server.
 *  2. CPU of one peerjssink process serving 1, 2, 4, 8 receivers, against
 *     a gst-launch-1.0 pipeline with one vp8enc per receiver (what a
 *     per-viewer-encoder design such as webrtcsink costs).
 *  3. RSS and threads of one peerjssrc process per remote member.
 *  4. Glass-to-glass latency at 640x480@30 VP8: a frame counter painted
 *     into each picture before peerjssink, read back from the picture
 *     peerjssrc decoded when it reaches a sink and when that sink (synced
 *     to the clock, as a display) renders it; both pipelines on one clock
 *     with one base time; against the same through the bare webrtcbin
 *     pair of 1.
 *  5. A room of 6 peerjsbin members (one process each) at 320x240@15,
 *     every member receiving every other: time until all video pads flow,
 *     decoded frames per second per pad, CPU, RSS and threads per member,
 *     failures. No peer.
 *  6. Files (--only files; not in the default list): a file offered with
 *     offer-file from a peerjssink to a peerjssrc (accept-files=all,
 *     download-dir), against the same bytes over a bare pair of webrtcbins
 *     (data channel, 64 KiB messages, the same flow control) and over one
 *     TCP connection on 127.0.0.1; with Chromium (bench/file-transfer.mjs
 *     --driven), pipeline to page, page to pipeline, and page to page with
 *     peer.js and with a bare RTCDataChannel; chat round trips (send-event
 *     with a reply, answered from the receiver's bus watch) idle and during
 *     a transfer between the pipelines.
 *
 * It starts its own peerjs-signalling on a free port of 127.0.0.1 and must
 * run in a network namespace that has only loopback:
 *
 *   unshare --net sh -c 'ip link set lo up && build/bench/gst-bench'
 *
 * bench/run does that. `gst-bench --help` lists the knobs. The table goes
 * to stdout; --json FILE writes every raw figure.
 *
 * Internally it also runs itself as a helper (--role receivers): N
 * peerjssrc elements in one process, each member pad into a fakesink,
 * reporting on stdout what connected and how many frames came; and
 * (--role member) as one member of the room, printing the same and a
 * buffer count per member pad. */
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <gst/video/video.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <openssl/evp.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#ifndef PEERJS_PLUGIN_DIR
#define PEERJS_PLUGIN_DIR ""
#endif
#ifndef PEERJS_SIGNALLING
#define PEERJS_SIGNALLING ""
#endif
#ifndef PEERJS_SOURCE_ROOT
#define PEERJS_SOURCE_ROOT ""
#endif

namespace {

/* ------------------------------------------------------------------ */
/* Options */

struct Options
{
  std::string signalling = PEERJS_SIGNALLING;
  std::string log_dir;
  std::string json_path;
  std::string only = "first-frame,cpu,memory,latency,room";
  int runs = 5;
  int latency = -1;             /* the elements' default (resolved in main) */
  double window = 10.0;
  double settle = 2.0;
  std::vector<int> receivers = { 1, 2, 4, 8 };
  std::vector<int> members = { 1, 4 };
  int cpu_width = 640, cpu_height = 480;
  int mem_width = 320, mem_height = 240;
  bool allow_network = false;
  bool format_check = true;
  /* glass-to-glass latency */
  int g2g_frames = 300;
  int g2g_rounds = 1;
  int g2g_width = 640, g2g_height = 480;
  std::string g2g_latency_messages = "both";
  /* the room */
  int room_members = 6;
  double room_duration = 60.0;
  int room_width = 320, room_height = 240, room_fps = 15;
  /* files */
  guint64 files_bytes = 100 * 1000 * 1000;
  guint64 files_browser_bytes = 32 * 1000 * 1000;
  int files_rounds = 3;
  int files_pings = 20;
  bool files_browser = true;

  /* --role receivers */
  std::string role;
  std::string server;
  std::string thread;
  int count = 1;
};

Options opt;

std::vector<int>
parse_int_list (const char *s)
{
  std::vector<int> out;
  std::stringstream in (s);
  std::string item;
  while (std::getline (in, item, ','))
    if (!item.empty ())
      out.push_back (atoi (item.c_str ()));
  return out;
}

bool
wants (const char *what)
{
  std::stringstream in (opt.only);
  std::string item;
  while (std::getline (in, item, ','))
    if (item == what)
      return true;
  return false;
}

void
note (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
void
note (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fprintf (stderr, "gst-bench: ");
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\n");
  va_end (ap);
}

gint64
now_us ()
{
  return g_get_monotonic_time ();
}

std::string
random_name (const char *prefix)
{
  return std::string (prefix) + "-" + std::to_string (getpid ()) + "-"
      + std::to_string (g_random_int_range (0, 1000000));
}

double
median (std::vector<double> v)
{
  if (v.empty ())
    return NAN;
  std::sort (v.begin (), v.end ());
  size_t n = v.size ();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------------ */
/* /proc */

/* utime + stime of a process (all its threads), in clock ticks. */
long long
cpu_ticks (pid_t pid)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  g_autofree char *text = nullptr;
  if (!g_file_get_contents (path, &text, nullptr, nullptr))
    return -1;
  const char *p = strrchr (text, ')');
  if (!p)
    return -1;
  /* Fields after the command: state is field 3; utime 14, stime 15. */
  std::stringstream in (p + 2);
  std::string tok;
  long long utime = 0, stime = 0;
  for (int field = 3; field <= 15 && (in >> tok); field++) {
    if (field == 14)
      utime = atoll (tok.c_str ());
    else if (field == 15)
      stime = atoll (tok.c_str ());
  }
  return utime + stime;
}

/* Busy ticks of the whole machine (user nice system irq softirq steal). */
long long
machine_ticks ()
{
  g_autofree char *text = nullptr;
  if (!g_file_get_contents ("/proc/stat", &text, nullptr, nullptr))
    return -1;
  long long v[8] = {};
  sscanf (text, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1],
      &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

/* A field of /proc/PID/status (VmRSS in KiB, Threads), or -1. */
long
status_field (pid_t pid, const char *key)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
  g_autofree char *text = nullptr;
  if (!g_file_get_contents (path, &text, nullptr, nullptr))
    return -1;
  std::string k = std::string ("\n") + key + ":";
  const char *p = strstr (text, k.c_str ());
  if (!p)
    return -1;
  return atol (p + k.size ());
}

/* Only loopback in this network namespace: nothing can leave the machine.
 * /proc/self/net is this namespace's (/sys/class/net may not be). */
bool
loopback_only (std::string * other)
{
  g_autofree char *text = nullptr;
  if (!g_file_get_contents ("/proc/self/net/dev", &text, nullptr, nullptr))
    return false;
  bool ok = true;
  std::stringstream in (text);
  std::string l;
  while (std::getline (in, l)) {
    size_t colon = l.find (':');
    if (colon == std::string::npos)
      continue;   /* the two header lines */
    g_autofree char *name = g_strstrip (g_strdup (l.substr (0, colon).c_str ()));
    if (g_strcmp0 (name, "lo") != 0) {
      ok = false;
      *other = name;
    }
  }
  return ok;
}

/* ------------------------------------------------------------------ */
/* Child processes */

struct Child
{
  std::string name;
  GPid pid = 0;
  int out = -1;                 /* stdout, when read; else -1 */
  int in = -1;                  /* stdin, when written; else -1 */
  std::string buf;              /* stdout not yet split into lines */
  std::vector<std::string> lines;
  bool exited = false;
  int status = 0;
};

std::vector<Child *> children;

void
child_setup (gpointer)
{
  /* Own process group (stopped with everything it runs), and gone when we
   * are, even if we are killed. */
  setpgid (0, 0);
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

int
open_log (const std::string & name)
{
  if (opt.log_dir.empty ())
    return open ("/dev/null", O_WRONLY | O_CLOEXEC);
  std::string path = opt.log_dir + "/gst-" + name + ".log";
  return open (path.c_str (), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* Start argv; its stdout is read when `read_stdout`, else goes to the log
 * with its stderr. Its stdin is /dev/null, or a pipe (Child::in) when
 * `write_stdin`. */
Child *
spawn (const std::string & name, const std::vector<std::string> & argv,
    bool read_stdout, bool write_stdin = false)
{
  std::vector<char *> args;
  for (const std::string & a : argv)
    args.push_back (const_cast<char *> (a.c_str ()));
  args.push_back (nullptr);
  int log = open_log (name);
  if (!opt.log_dir.empty ()) {
    std::string line = "$";
    for (const std::string & a : argv)
      line += " " + a;
    line += "\n";
    if (write (log, line.data (), line.size ()) < 0) {
      /* a log we cannot write is no reason to stop */
    }
  }
  auto *c = new Child ();
  c->name = name;
  GError *error = nullptr;
  gboolean ok = g_spawn_async_with_pipes_and_fds (nullptr, args.data (),
      nullptr, (GSpawnFlags) (G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD
          | (write_stdin ? 0 : G_SPAWN_STDIN_FROM_DEV_NULL)), child_setup,
      nullptr, -1, read_stdout ? -1 : log, log, nullptr, nullptr, 0, &c->pid,
      write_stdin ? &c->in : nullptr, read_stdout ? &c->out : nullptr,
      nullptr, &error);
  close (log);
  if (!ok) {
    note ("cannot start %s: %s", argv[0].c_str (), error->message);
    g_error_free (error);
    delete c;
    return nullptr;
  }
  if (c->out >= 0)
    fcntl (c->out, F_SETFL, fcntl (c->out, F_GETFL) | O_NONBLOCK);
  children.push_back (c);
  return c;
}

/* Members whose video reached a receiver process, by its MEDIA lines. */
int
videos_connected (const Child * recv)
{
  int n = 0;
  for (const std::string & l : recv->lines)
    if (g_str_has_prefix (l.c_str (), "MEDIA ")
        && g_str_has_suffix (l.c_str (), " video"))
      n++;
  return n;
}

bool
alive (Child * c)
{
  if (c->exited)
    return false;
  int status;
  pid_t r = waitpid (c->pid, &status, WNOHANG);
  if (r == c->pid) {
    c->exited = true;
    c->status = status;
    return false;
  }
  return true;
}

/* Read whatever the children wrote, waiting at most `ms`. */
void
pump (int ms)
{
  std::vector<pollfd> fds;
  std::vector<Child *> who;
  for (Child *c : children)
    if (c->out >= 0) {
      fds.push_back ({ c->out, POLLIN, 0 });
      who.push_back (c);
    }
  if (fds.empty ()) {
    if (ms > 0)
      g_usleep (ms * 1000);
    return;
  }
  if (poll (fds.data (), fds.size (), ms) <= 0)
    return;
  for (size_t i = 0; i < fds.size (); i++) {
    if (!(fds[i].revents & (POLLIN | POLLHUP)))
      continue;
    Child *c = who[i];
    char tmp[4096];
    for (;;) {
      ssize_t n = read (c->out, tmp, sizeof tmp);
      if (n > 0) {
        c->buf.append (tmp, n);
        continue;
      }
      if (n == 0) {
        close (c->out);
        c->out = -1;
      }
      break;
    }
    size_t nl;
    while ((nl = c->buf.find ('\n')) != std::string::npos) {
      c->lines.push_back (c->buf.substr (0, nl));
      c->buf.erase (0, nl + 1);
    }
  }
}

/* Keep reading the children's output for `seconds`. */
void
pump_for (double seconds)
{
  gint64 end = now_us () + (gint64) (seconds * G_USEC_PER_SEC);
  for (gint64 t = now_us (); t < end; t = now_us ())
    pump ((int) std::min<gint64> (100, (end - t) / 1000 + 1));
}

int
count_lines (Child * c, const char *prefix)
{
  int n = 0;
  for (const std::string & l : c->lines)
    if (g_str_has_prefix (l.c_str (), prefix))
      n++;
  return n;
}

/* The last "FRAMES n time" a receivers helper printed: frames so far and
 * when (monotonic us); false when there is none yet. */
bool
last_frames (Child * c, long long * frames, long long * when)
{
  for (auto it = c->lines.rbegin (); it != c->lines.rend (); ++it)
    if (sscanf (it->c_str (), "FRAMES %lld %lld", frames, when) == 2)
      return true;
  return false;
}

/* Frames per second between two FRAMES readings. */
double
frame_rate (long long f0, long long t0, long long f1, long long t1)
{
  return t1 > t0 ? (f1 - f0) / ((t1 - t0) / 1e6) : NAN;
}

void
stop_child (Child * c)
{
  if (!c)
    return;
  if (alive (c)) {
    kill (-c->pid, SIGTERM);
    gint64 end = now_us () + 3 * G_USEC_PER_SEC;
    while (alive (c) && now_us () < end)
      g_usleep (20000);
    if (alive (c)) {
      kill (-c->pid, SIGKILL);
      waitpid (c->pid, &c->status, 0);
      c->exited = true;
    }
  }
  if (c->in >= 0)
    close (c->in);
  if (c->out >= 0) {
    pump (0);
    close (c->out);
  }
  /* What a helper said goes to its log too. */
  if (!opt.log_dir.empty () && !c->lines.empty ()) {
    int log = open_log (c->name);
    for (const std::string & l : c->lines)
      if (write (log, (l + "\n").data (), l.size () + 1) < 0)
        break;
    close (log);
  }
  g_spawn_close_pid (c->pid);
  children.erase (std::remove (children.begin (), children.end (), c),
      children.end ());
  delete c;
}

void
stop_all ()
{
  while (!children.empty ())
    stop_child (children.back ());
}

/* The file part's big files, then its directories (emptied by then but
 * for a half-received file), removed also when we are stopped: set before
 * they are written, so the handler has nothing left to allocate. */
char files_to_remove[5][PATH_MAX];

void
on_fatal_signal (int sig)
{
  for (Child *c : children)
    kill (-c->pid, SIGKILL);
  for (const char *path : files_to_remove)
    if (*path && unlink (path) != 0)
      rmdir (path);
  signal (sig, SIG_DFL);
  raise (sig);
}

/* ------------------------------------------------------------------ */
/* The server */

struct Server
{
  Child *child = nullptr;
  std::string url;
};

bool
start_server (Server & s)
{
  std::vector<std::string> argv = { opt.signalling, "--host", "127.0.0.1",
    "--port", "0" };
  /* The web client, for the pages of the file part. */
  std::string web = std::string (PEERJS_SOURCE_ROOT) + "/signalling/web";
  if (*PEERJS_SOURCE_ROOT && g_file_test (web.c_str (), G_FILE_TEST_IS_DIR)) {
    argv.push_back ("--web-root");
    argv.push_back (web);
  }
  s.child = spawn ("signalling", argv, true);
  if (!s.child)
    return false;
  gint64 end = now_us () + 10 * G_USEC_PER_SEC;
  while (now_us () < end && alive (s.child)) {
    pump (100);
    for (const std::string & l : s.child->lines) {
      size_t at = l.find ("(WebSocket ");
      if (at != std::string::npos) {
        s.url = l.substr (at + 11);
        s.url = s.url.substr (0, s.url.find (')'));
        return true;
      }
    }
  }
  note ("peerjs-signalling did not start");
  return false;
}

/* ------------------------------------------------------------------ */
/* Helper role: N receivers in this process */

struct Receivers
{
  GstElement *pipeline = nullptr;
  GMainLoop *loop = nullptr;
  std::atomic<long long> frames { 0 };
  int exit_code = 0;
  bool recalc_latency = false;
};

GstPadProbeReturn
count_frame (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST)
    r->frames += gst_buffer_list_length (GST_PAD_PROBE_INFO_BUFFER_LIST (info));
  else
    r->frames++;
  return GST_PAD_PROBE_OK;
}

void
receivers_pad_added (GstElement *, GstPad * pad, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  gst_bin_add (GST_BIN (r->pipeline), sink);
  gst_element_sync_state_with_parent (sink);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  if (g_str_has_prefix (GST_PAD_NAME (pad), "video_"))
    gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST), count_frame, r, nullptr);
  if (gst_pad_link (pad, sinkpad) != GST_PAD_LINK_OK)
    printf ("WARNING cannot link %s\n", GST_PAD_NAME (pad));
}

gboolean
receivers_bus (GstBus *, GstMessage * msg, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:{
      g_autoptr (GError) e = nullptr;
      g_autofree char *dbg = nullptr;
      gst_message_parse_error (msg, &e, &dbg);
      printf ("ERROR %s: %s\n", GST_OBJECT_NAME (msg->src), e->message);
      r->exit_code = 1;
      g_main_loop_quit (r->loop);
      break;
    }
    case GST_MESSAGE_LATENCY:
      /* As gst-launch-1.0 does (the room's members). */
      if (r->recalc_latency)
        gst_bin_recalculate_latency (GST_BIN (r->pipeline));
      break;
    case GST_MESSAGE_WARNING:{
      g_autoptr (GError) e = nullptr;
      g_autofree char *dbg = nullptr;
      gst_message_parse_warning (msg, &e, &dbg);
      printf ("WARNING %s: %s (%s)\n", GST_OBJECT_NAME (msg->src), e->message,
          dbg ? dbg : "");
      break;
    }
    case GST_MESSAGE_ELEMENT:{
      const GstStructure *s = gst_message_get_structure (msg);
      const char *name = gst_structure_get_name (s);
      auto str = [s] (const char *f) {
        const char *v = gst_structure_get_string (s, f);
        return v ? v : "?";
      };
      long long t = g_get_monotonic_time ();
      if (g_str_equal (name, "peerjs-socket-connect"))
        printf ("SOCKET %s %s %lld\n", GST_OBJECT_NAME (msg->src), str ("id"),
            t);
      else if (g_str_equal (name, "peerjs-thread-connect"))
        printf ("JOIN %s %s %lld\n", GST_OBJECT_NAME (msg->src),
            str ("member"), t);
      else if (g_str_equal (name, "peerjs-media-connect"))
        printf ("MEDIA %s %s %s\n", GST_OBJECT_NAME (msg->src), str ("member"),
            str ("kind"));
      else if (g_str_equal (name, "peerjs-media-disconnect"))
        printf ("GONE %s %s %s\n", GST_OBJECT_NAME (msg->src), str ("member"),
            str ("kind"));
      else if (g_str_equal (name, "peerjs-peer-failed"))
        printf ("FAILED %s %s %s\n", GST_OBJECT_NAME (msg->src),
            str ("member"), str ("reason"));
      else if (g_str_equal (name, "peerjs-stats")) {
        gint64 lost = 0;
        guint64 in = 0;
        gst_structure_get_int64 (s, "packets-lost", &lost);
        gst_structure_get_uint64 (s, "bitrate-in", &in);
        printf ("STATS %s %lld %llu\n", str ("member"), (long long) lost,
            (unsigned long long) in);
      }
      break;
    }
    default:
      break;
  }
  return TRUE;
}

int
run_receivers ()
{
  setvbuf (stdout, nullptr, _IOLBF, 0);
  Receivers r;
  r.loop = g_main_loop_new (nullptr, FALSE);
  r.pipeline = gst_pipeline_new ("receivers");
  for (int i = 0; i < opt.count; i++) {
    std::string name = "r" + std::to_string (i);
    GstElement *src = gst_element_factory_make ("peerjssrc", name.c_str ());
    if (!src) {
      printf ("ERROR no peerjssrc (GST_PLUGIN_PATH?)\n");
      return 1;
    }
    g_object_set (src, "server", opt.server.c_str (), "thread",
        opt.thread.c_str (), "latency", (guint) opt.latency, NULL);
    g_signal_connect (src, "pad-added", G_CALLBACK (receivers_pad_added), &r);
    gst_bin_add (GST_BIN (r.pipeline), src);
  }
  g_autoptr (GstBus) bus = gst_element_get_bus (r.pipeline);
  gst_bus_add_watch (bus, receivers_bus, &r);
  auto quit = +[] (gpointer data) -> gboolean {
    g_main_loop_quit (static_cast<GMainLoop *> (data));
    return G_SOURCE_CONTINUE;
  };
  g_unix_signal_add (SIGTERM, quit, r.loop);
  g_unix_signal_add (SIGINT, quit, r.loop);
  g_timeout_add (1000, +[] (gpointer data) -> gboolean {
        printf ("FRAMES %lld %lld\n",
            static_cast<Receivers *> (data)->frames.load (),
            (long long) g_get_monotonic_time ());
        return G_SOURCE_CONTINUE;
      }, &r);
  if (gst_element_set_state (r.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    printf ("ERROR the receivers did not start\n");
    return 1;
  }
  printf ("STARTED %d\n", opt.count);
  g_main_loop_run (r.loop);
  gst_element_set_state (r.pipeline, GST_STATE_NULL);
  gst_object_unref (r.pipeline);
  return r.exit_code;
}

/* ------------------------------------------------------------------ */
/* Helper role: one member of a room (peerjsbin) */

struct MemberPad
{
  std::atomic<long long> buffers { 0 };
  std::atomic<bool> flowing { false };
  bool video = false;
};

struct Member
{
  GstElement *pipeline = nullptr;
  GMainLoop *loop = nullptr;
  std::mutex lock;
  std::map<std::string, MemberPad *> pads;   /* by pad name, never freed */
  int exit_code = 0;
};

GstPadProbeReturn
member_buffer (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *p = static_cast<MemberPad *> (data);
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST)
    p->buffers += gst_buffer_list_length (GST_PAD_PROBE_INFO_BUFFER_LIST (info));
  else
    p->buffers++;
  bool was = false;
  if (p->flowing.compare_exchange_strong (was, true)) {
    g_autoptr (GstPad) peer = gst_pad_get_peer (pad);
    printf ("FIRST %s %lld\n", peer ? GST_PAD_NAME (peer) : "?",
        (long long) g_get_monotonic_time ());
  }
  return GST_PAD_PROBE_OK;
}

void
member_pad_added (GstElement *, GstPad * pad, gpointer data)
{
  auto *m = static_cast<Member *> (data);
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  MemberPad *p;
  {
    /* A pad that comes back keeps its counter. */
    std::lock_guard<std::mutex> guard (m->lock);
    MemberPad *&slot = m->pads[GST_PAD_NAME (pad)];
    if (!slot) {
      slot = new MemberPad ();
      slot->video = g_str_has_prefix (GST_PAD_NAME (pad), "video_");
    }
    p = slot;
    p->flowing = false;
  }
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  gst_bin_add (GST_BIN (m->pipeline), sink);
  gst_element_sync_state_with_parent (sink);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), member_buffer, p, nullptr);
  if (gst_pad_link (pad, sinkpad) != GST_PAD_LINK_OK)
    printf ("WARNING cannot link %s\n", GST_PAD_NAME (pad));
}

/* Diagnosis of a pad that does not flow (SIGUSR1 from the main process):
 * the pipeline's graph into GST_DEBUG_DUMP_DOT_DIR, and for 2 s the
 * buffers through every src pad of every element, as "FLOW path n". */
struct FlowCount
{
  GstPad *pad;
  gulong probe;
  std::atomic<long long> n { 0 };
};

gboolean
member_diagnose (gpointer data)
{
  auto *m = static_cast<Member *> (data);
  std::string name = "member-" + std::to_string (getpid ());
  GST_DEBUG_BIN_TO_DOT_FILE (GST_BIN (m->pipeline), GST_DEBUG_GRAPH_SHOW_ALL,
      name.c_str ());
  auto *flows = new std::vector<FlowCount *> ();
  GstIterator *it = gst_bin_iterate_recurse (GST_BIN (m->pipeline));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    GstElement *e = GST_ELEMENT (g_value_get_object (&v));
    GstIterator *pit = gst_element_iterate_src_pads (e);
    GValue pv = G_VALUE_INIT;
    while (gst_iterator_next (pit, &pv) == GST_ITERATOR_OK) {
      auto *f = new FlowCount ();
      f->pad = GST_PAD (g_value_dup_object (&pv));
      f->probe = gst_pad_add_probe (f->pad, (GstPadProbeType)
          (GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
          +[] (GstPad *, GstPadProbeInfo *, gpointer d) -> GstPadProbeReturn {
            static_cast<FlowCount *> (d)->n++;
            return GST_PAD_PROBE_OK;
          }, f, nullptr);
      flows->push_back (f);
      g_value_reset (&pv);
    }
    gst_iterator_free (pit);
    g_value_reset (&v);
  }
  gst_iterator_free (it);
  g_timeout_add (2000, +[] (gpointer data) -> gboolean {
        auto *flows = static_cast<std::vector<FlowCount *> *> (data);
        for (FlowCount *f : *flows) {
          gst_pad_remove_probe (f->pad, f->probe);
          g_autofree char *path = gst_object_get_path_string (
              GST_OBJECT (f->pad));
          printf ("FLOW %s %lld\n", path, f->n.load ());
          gst_object_unref (f->pad);
          /* f itself stays: a probe call may still be under way. */
        }
        delete flows;
        return G_SOURCE_REMOVE;
      }, flows);
  return G_SOURCE_CONTINUE;
}

/* One peerjsbin publishing a test pattern and a tone, every member pad
 * into a fakesink. Prints the lines of receivers_bus, "FIRST pad time"
 * for the first buffer of each pad, and once a second "PADS time
 * name=buffers ...". */
int
run_member ()
{
  setvbuf (stdout, nullptr, _IOLBF, 0);
  Member m;
  m.loop = g_main_loop_new (nullptr, FALSE);
  std::string desc = "peerjsbin name=b server=" + opt.server + " thread="
      + opt.thread + " latency=" + std::to_string (opt.latency)
      + " stats-interval=5000 videotestsrc is-live=true pattern=smpte "
      "horizontal-speed=2 ! video/x-raw,format=I420,width="
      + std::to_string (opt.room_width) + ",height="
      + std::to_string (opt.room_height) + ",framerate="
      + std::to_string (opt.room_fps) + "/1 ! b.video audiotestsrc "
      "is-live=true ! b.audio";
  GError *error = nullptr;
  m.pipeline = gst_parse_launch (desc.c_str (), &error);
  if (error) {
    printf ("ERROR cannot build the member: %s\n", error->message);
    return 1;
  }
  g_autoptr (GstElement) bin = gst_bin_get_by_name (GST_BIN (m.pipeline),
      "b");
  g_signal_connect (bin, "pad-added", G_CALLBACK (member_pad_added), &m);
  g_autoptr (GstBus) bus = gst_element_get_bus (m.pipeline);
  /* receivers_bus quits the loop on an error and reads nothing else. */
  Receivers r;
  r.loop = m.loop;
  r.pipeline = m.pipeline;
  r.recalc_latency = true;
  gst_bus_add_watch (bus, receivers_bus, &r);
  auto quit = +[] (gpointer data) -> gboolean {
    g_main_loop_quit (static_cast<GMainLoop *> (data));
    return G_SOURCE_CONTINUE;
  };
  g_unix_signal_add (SIGTERM, quit, m.loop);
  g_unix_signal_add (SIGINT, quit, m.loop);
  g_unix_signal_add (SIGUSR1, member_diagnose, &m);
  g_timeout_add (1000, +[] (gpointer data) -> gboolean {
        auto *m = static_cast<Member *> (data);
        std::string line = "PADS " + std::to_string (g_get_monotonic_time ());
        std::lock_guard<std::mutex> guard (m->lock);
        for (auto & p : m->pads)
          line += " " + p.first + "=" + std::to_string (p.second->buffers);
        printf ("%s\n", line.c_str ());
        return G_SOURCE_CONTINUE;
      }, &m);
  if (gst_element_set_state (m.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    printf ("ERROR the member did not start\n");
    return 1;
  }
  printf ("STARTED 1\n");
  g_main_loop_run (m.loop);
  gst_element_set_state (m.pipeline, GST_STATE_NULL);
  gst_object_unref (m.pipeline);
  return r.exit_code;
}

/* ------------------------------------------------------------------ */
/* 1. First decoded frame */

/* Glass-to-glass latency (4.): a 16-bit frame counter painted into the
 * top of each picture as 16 white or black blocks, and again inverted in a
 * second row of blocks, so a picture that does not read back is caught.
 * The blocks sit on VP8's 16x16 macroblock grid. */
constexpr int CODE_BITS = 16;
constexpr int CODE_BLOCK = 32;

struct Stamps
{
  GstClock *clock = nullptr;    /* both pipelines' */
  GstClockTime base = 0;        /* both pipelines' base time */
  std::mutex lock;
  /* Running time at which each counter was painted. */
  std::vector<GstClockTime> captured = std::vector<GstClockTime> (
      1 << CODE_BITS, GST_CLOCK_TIME_NONE);
  unsigned next = 0;            /* the sender's streaming thread only */
  GstClockTime collect_from = GST_CLOCK_TIME_NONE;   /* running time */
  size_t want = 0;              /* frames shown to collect */
  std::vector<double> decoded_ms, shown_ms;
  std::vector<int> decoded_codes;
  std::vector<double> source_lag_ms;     /* painted minus the frame's PTS */
  int unreadable = 0;           /* decoded pictures whose code did not read */
  int unpainted = 0;            /* frames the sender could not paint */

  GstClockTime running_now () const
  {
    return gst_clock_get_time (clock) - base;
  }
};

bool
code_frame (GstVideoFrame * f, GstVideoInfo * info, GstBuffer * buf,
    GstCaps * caps, GstMapFlags flags)
{
  if (!caps || !gst_video_info_from_caps (info, caps)
      || GST_VIDEO_INFO_FORMAT (info) != GST_VIDEO_FORMAT_I420
      || GST_VIDEO_INFO_WIDTH (info) < CODE_BITS * CODE_BLOCK
      || GST_VIDEO_INFO_HEIGHT (info) < 2 * CODE_BLOCK)
    return false;
  return gst_video_frame_map (f, info, buf, flags);
}

bool
paint_code (GstBuffer * buf, GstCaps * caps, unsigned code)
{
  GstVideoInfo info;
  GstVideoFrame f;
  if (!code_frame (&f, &info, buf, caps, GST_MAP_WRITE))
    return false;
  for (int row = 0; row < 2; row++)
    for (int i = 0; i < CODE_BITS; i++) {
      bool white = ((code >> i) & 1) ^ row;
      for (int c = 0; c < 3; c++) {
        /* I420: chroma at half the size, grey in the blocks. */
        int n = c ? CODE_BLOCK / 2 : CODE_BLOCK;
        guint8 *data = GST_VIDEO_FRAME_COMP_DATA (&f, c);
        int stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, c);
        for (int y = row * n; y < (row + 1) * n; y++)
          memset (data + y * stride + i * n, c ? 128 : white ? 235 : 16, n);
      }
    }
  gst_video_frame_unmap (&f);
  return true;
}

/* The counter in a decoded picture, or -1. Each block's luma is averaged
 * over its middle half. */
int
read_code (GstBuffer * buf, GstCaps * caps)
{
  GstVideoInfo info;
  GstVideoFrame f;
  if (!code_frame (&f, &info, buf, caps, GST_MAP_READ))
    return -1;
  const guint8 *data = (const guint8 *) GST_VIDEO_FRAME_COMP_DATA (&f, 0);
  int stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, 0);
  unsigned v[2] = { 0, 0 };
  for (int row = 0; row < 2; row++)
    for (int i = 0; i < CODE_BITS; i++) {
      unsigned sum = 0, n = 0;
      for (int y = row * CODE_BLOCK + CODE_BLOCK / 4;
          y < row * CODE_BLOCK + 3 * CODE_BLOCK / 4; y++)
        for (int x = i * CODE_BLOCK + CODE_BLOCK / 4;
            x < i * CODE_BLOCK + 3 * CODE_BLOCK / 4; x++, n++)
          sum += data[y * stride + x];
      if (sum / n > 128)
        v[row] |= 1u << i;
    }
  gst_video_frame_unmap (&f);
  if ((v[0] ^ v[1]) != (1u << CODE_BITS) - 1)
    return -1;
  return (int) v[0];
}

/* Sender: paint the next counter, note when. */
GstPadProbeReturn
stamp_frame (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *st = static_cast<Stamps *> (data);
  GstClockTime now = st->running_now ();
  GstBuffer *buf = gst_buffer_make_writable (GST_PAD_PROBE_INFO_BUFFER (info));
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  unsigned code = st->next++ & ((1u << CODE_BITS) - 1);
  bool ok = paint_code (buf, caps, code);
  std::lock_guard<std::mutex> guard (st->lock);
  if (ok)
    st->captured[code] = now;
  else
    st->unpainted++;
  if (GST_BUFFER_PTS_IS_VALID (buf) && st->source_lag_ms.size () < 100000)
    st->source_lag_ms.push_back (GST_CLOCK_DIFF (GST_BUFFER_PTS (buf), now)
        / 1e6);
  return GST_PAD_PROBE_OK;
}

/* Receiver: a decoded picture reaches the sink (`shown` false) or the sink
 * renders it, after waiting for its time on the clock (`shown` true). */
void
stamp_arrival (Stamps * st, GstBuffer * buf, GstPad * pad, bool shown)
{
  GstClockTime now = st->running_now ();
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  int code = read_code (buf, caps);
  std::lock_guard<std::mutex> guard (st->lock);
  if (!GST_CLOCK_TIME_IS_VALID (st->collect_from) || now < st->collect_from
      || st->shown_ms.size () >= st->want)
    return;
  if (code < 0 || !GST_CLOCK_TIME_IS_VALID (st->captured[code])) {
    if (!shown)
      st->unreadable++;
    return;
  }
  double ms = GST_CLOCK_DIFF (st->captured[code], now) / 1e6;
  if (shown) {
    st->shown_ms.push_back (ms);
  } else {
    st->decoded_ms.push_back (ms);
    st->decoded_codes.push_back (code);
  }
}

struct FirstFrame
{
  GstElement *send = nullptr;   /* the publishing pipeline */
  GstElement *recv = nullptr;   /* the receiving pipeline */
  GstElement *a = nullptr, *b = nullptr, *pay = nullptr;   /* bare pair */
  std::atomic<gint64> first { 0 };
  std::atomic<bool> failed { false };
  std::string why;
  Stamps *stamps = nullptr;     /* glass-to-glass runs only */
};

GstPadProbeReturn
first_buffer (GstPad *, GstPadProbeInfo *, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  gint64 zero = 0;
  ff->first.compare_exchange_strong (zero, now_us ());
  return GST_PAD_PROBE_REMOVE;
}

/* A fakesink in the receiving pipeline fed by `pad`, stamping the first
 * buffer that reaches it. `chain` (may be empty) goes in between. In a
 * glass-to-glass run the sink takes I420 and syncs on the clock, as a
 * display would, and reads the counter of every picture twice: when it
 * arrives (decoded) and when it is rendered (shown). */
void
sink_for (FirstFrame * ff, GstPad * pad, std::vector<const char *> chain)
{
  std::vector<GstElement *> elements;
  for (const char *f : chain)
    elements.push_back (gst_element_factory_make (f, nullptr));
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  if (ff->stamps) {
    GstElement *filter = gst_element_factory_make ("capsfilter", nullptr);
    g_autoptr (GstCaps) i420 = gst_caps_from_string (
        "video/x-raw,format=I420");
    g_object_set (filter, "caps", i420, NULL);
    elements.push_back (filter);
    g_object_set (sink, "sync", TRUE, "signal-handoffs", TRUE, NULL);
    g_signal_connect (sink, "handoff", G_CALLBACK (+[] (GstElement *,
                GstBuffer * buf, GstPad * pad, gpointer data) {
          stamp_arrival (static_cast<Stamps *> (data), buf, pad, true);
        }), ff->stamps);
    g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
    gst_pad_add_probe (sinkpad, GST_PAD_PROBE_TYPE_BUFFER, +[] (GstPad * pad,
            GstPadProbeInfo * info, gpointer data) -> GstPadProbeReturn {
          stamp_arrival (static_cast<Stamps *> (data),
              GST_PAD_PROBE_INFO_BUFFER (info), pad, false);
          return GST_PAD_PROBE_OK;
        }, ff->stamps, nullptr);
  }
  elements.push_back (sink);
  for (GstElement *e : elements)
    gst_bin_add (GST_BIN (ff->recv), e);
  for (size_t i = 1; i < elements.size (); i++)
    gst_element_link (elements[i - 1], elements[i]);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), first_buffer, ff, nullptr);
  for (auto it = elements.rbegin (); it != elements.rend (); ++it)
    gst_element_sync_state_with_parent (*it);
  g_autoptr (GstPad) first = gst_element_get_static_pad (elements.front (),
      "sink");
  if (gst_pad_link (pad, first) != GST_PAD_LINK_OK) {
    ff->why = "cannot link the received pad";
    ff->failed = true;
  }
}

void
add_loopback (GstElement * webrtc)
{
  g_autoptr (GObject) ice = nullptr;
  g_object_get (webrtc, "ice-agent", &ice, NULL);
  gboolean ok = FALSE;
  g_signal_emit_by_name (ice, "add-local-ip-address", "127.0.0.1", &ok);
  if (!ok)
    note ("ice-agent refused 127.0.0.1");
}

/* The offer or answer (`what`) a create-* promise replied with, the
 * promise released; null, with the run marked failed, when there is none. */
GstWebRTCSessionDescription *
take_description (GstPromise * p, const char *what, FirstFrame * ff)
{
  const GstStructure *reply = gst_promise_get_reply (p);
  GstWebRTCSessionDescription *desc = nullptr;
  if (reply)
    gst_structure_get (reply, what, GST_TYPE_WEBRTC_SESSION_DESCRIPTION,
        &desc, NULL);
  gst_promise_unref (p);
  if (!desc) {
    ff->why = std::string ("no ") + what;
    ff->failed = true;
  }
  return desc;
}

/* Offer/answer of the bare pair, passed directly. */
void
bare_answer_created (GstPromise * p, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  GstWebRTCSessionDescription *answer = take_description (p, "answer", ff);
  if (!answer)
    return;
  g_signal_emit_by_name (ff->b, "set-local-description", answer, nullptr);
  /* As the elements do once a member's answer is in: ask the encoder for a
   * key frame for the new receiver (a pair with media only). */
  GstPromise *set = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *ff = static_cast<FirstFrame *> (data);
        /* Not when webrtcbin interrupts it at teardown. */
        if (ff->pay && gst_promise_wait (p) == GST_PROMISE_RESULT_REPLIED) {
          g_autoptr (GstPad) src = gst_element_get_static_pad (ff->pay, "src");
          gst_pad_send_event (src,
              gst_video_event_new_upstream_force_key_unit (GST_CLOCK_TIME_NONE,
                  TRUE, 0));
        }
        gst_promise_unref (p);
      }, ff, nullptr);
  g_signal_emit_by_name (ff->a, "set-remote-description", answer, set);
  gst_webrtc_session_description_free (answer);
}

void
bare_offer_created (GstPromise * p, gpointer data)
{
  auto *ff = static_cast<FirstFrame *> (data);
  GstWebRTCSessionDescription *offer = take_description (p, "offer", ff);
  if (!offer)
    return;
  g_signal_emit_by_name (ff->a, "set-local-description", offer, nullptr);
  g_signal_emit_by_name (ff->b, "set-remote-description", offer, nullptr);
  GstPromise *answer = gst_promise_new_with_change_func (bare_answer_created,
      ff, nullptr);
  g_signal_emit_by_name (ff->b, "create-answer", nullptr, answer);
  gst_webrtc_session_description_free (offer);
}

GstElement *
parse (const std::string & desc)
{
  GError *error = nullptr;
  GstElement *e = gst_parse_launch (desc.c_str (), &error);
  if (error) {
    note ("cannot build '%s': %s", desc.c_str (), error->message);
    g_error_free (error);
    if (e)
      gst_object_unref (e);
    return nullptr;
  }
  if (GST_IS_PIPELINE (e))
    return e;
  /* A single element: put it in a pipeline of its own. */
  GstElement *pipeline = gst_pipeline_new (nullptr);
  gst_bin_add (GST_BIN (pipeline), e);
  return pipeline;
}

/* Element settings of the elements' own VP8 encoder (gst/peerjs/media.cpp),
 * so both sides of each comparison encode alike. */
const char *VP8ENC = "vp8enc deadline=1 cpu-used=8 lag-in-frames=0 "
    "keyframe-max-dist=60 target-bitrate=1000000 end-usage=cbr "
    "error-resilient=default";

std::string
raw_caps (int w, int h, bool pin_format = true)
{
  return std::string ("video/x-raw,") + (pin_format ? "format=I420," : "")
      + "width=" + std::to_string (w) + ",height=" + std::to_string (h)
      + ",framerate=30/1";
}

/* The sending side's source: 320x240 for the first frame; for
 * glass-to-glass 640x480 moving bars (the whole picture changes every
 * frame, as from a camera) and the element that paints the counter. */
std::string
video_source (FirstFrame * ff)
{
  if (!ff->stamps)
    return "videotestsrc is-live=true ! " + raw_caps (320, 240);
  return "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
      + raw_caps (opt.g2g_width, opt.g2g_height)
      + " ! identity name=stamp silent=true";
}

bool
attach_stamps (FirstFrame * ff)
{
  if (!ff->stamps)
    return true;
  g_autoptr (GstElement) id = gst_bin_get_by_name (GST_BIN (ff->send),
      "stamp");
  if (!id)
    return false;
  g_autoptr (GstPad) src = gst_element_get_static_pad (id, "src");
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, stamp_frame, ff->stamps,
      nullptr);
  return true;
}

bool
build_ours (FirstFrame * ff, const std::string & url)
{
  std::string thread = random_name (ff->stamps ? "g2g" : "ff");
  std::string lat = std::to_string (opt.latency);
  ff->send = parse (video_source (ff) + " ! peerjssink server=" + url
      + " thread=" + thread + " latency=" + lat);
  ff->recv = parse ("peerjssrc name=r server=" + url + " thread=" + thread
      + " latency=" + lat);
  if (!ff->send || !ff->recv || !attach_stamps (ff))
    return false;
  g_autoptr (GstElement) r = gst_bin_get_by_name (GST_BIN (ff->recv), "r");
  g_signal_connect (r, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        if (g_str_has_prefix (GST_PAD_NAME (pad), "video_"))
          sink_for (static_cast<FirstFrame *> (data), pad, {});
      }), ff);
  return true;
}

/* Negotiation of a bare pair (ff->a offers to ff->b) in this process, no
 * server: both agents on 127.0.0.1, descriptions and ICE candidates handed
 * over directly. */
void
connect_bare (FirstFrame * ff)
{
  add_loopback (ff->a);
  add_loopback (ff->b);
  g_signal_connect (ff->a, "on-negotiation-needed", G_CALLBACK (+[] (
              GstElement * a, gpointer data) {
        GstPromise *p = gst_promise_new_with_change_func (bare_offer_created,
            data, nullptr);
        g_signal_emit_by_name (a, "create-offer", nullptr, p);
      }), ff);
  g_signal_connect (ff->a, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * cand, gpointer data) {
        g_signal_emit_by_name (static_cast<FirstFrame *> (data)->b,
            "add-ice-candidate", mline, cand);
      }), ff);
  g_signal_connect (ff->b, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * cand, gpointer data) {
        g_signal_emit_by_name (static_cast<FirstFrame *> (data)->a,
            "add-ice-candidate", mline, cand);
      }), ff);
}

bool
build_bare (FirstFrame * ff)
{
  std::string lat = std::to_string (opt.latency);
  ff->send = parse (video_source (ff) + " ! " + VP8ENC
      + " ! rtpvp8pay name=pay pt=96 mtu=1200 "
      "picture-id-mode=15-bit ! application/x-rtp,media=video,"
      "encoding-name=VP8,payload=96,clock-rate=90000 ! webrtcbin name=a "
      "bundle-policy=max-bundle latency=" + lat);
  ff->recv = parse ("webrtcbin name=b bundle-policy=max-bundle latency="
      + lat);
  if (!ff->send || !ff->recv || !attach_stamps (ff))
    return false;
  ff->a = gst_bin_get_by_name (GST_BIN (ff->send), "a");
  ff->pay = gst_bin_get_by_name (GST_BIN (ff->send), "pay");
  ff->b = gst_bin_get_by_name (GST_BIN (ff->recv), "b");
  GstWebRTCRTPTransceiver *trans = nullptr;
  g_signal_emit_by_name (ff->a, "get-transceiver", 0, &trans);
  if (trans) {
    g_object_set (trans, "direction",
        GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
    gst_object_unref (trans);
  }
  connect_bare (ff);
  g_signal_connect (ff->b, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        if (GST_PAD_DIRECTION (pad) == GST_PAD_SRC)
          sink_for (static_cast<FirstFrame *> (data), pad,
              { "rtpvp8depay", "vp8dec" });
      }), ff);
  return true;
}

/* Errors on either bus fail the run; warnings are logged. */
void
check_bus (FirstFrame * ff, GstElement * pipeline)
{
  g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
  /* Glass-to-glass runs distribute latency as gst-launch-1.0 does
   * (--g2g-latency-messages); the first-frame runs never did. */
  const std::string & mode = opt.g2g_latency_messages;
  bool recalc = ff->stamps && (mode == "both"
      || (mode == "receiver" && pipeline == ff->recv)
      || (mode == "sender" && pipeline == ff->send));
  GstMessageType types = (GstMessageType) (GST_MESSAGE_ERROR
      | GST_MESSAGE_WARNING | (recalc ? GST_MESSAGE_LATENCY : 0));
  while (GstMessage *m = gst_bus_pop_filtered (bus, types)) {
    g_autoptr (GError) e = nullptr;
    g_autofree char *dbg = nullptr;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_LATENCY) {
      gst_bin_recalculate_latency (GST_BIN (pipeline));
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      gst_message_parse_error (m, &e, &dbg);
      ff->why = std::string (GST_OBJECT_NAME (m->src)) + ": " + e->message;
      ff->failed = true;
    } else {
      gst_message_parse_warning (m, &e, &dbg);
      note ("warning from %s: %s", GST_OBJECT_NAME (m->src), e->message);
    }
    gst_message_unref (m);
  }
}

void stop_pair (FirstFrame * ff, bool ours);

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

/* Stops and frees a pair of pipelines. */
void
stop_pair (FirstFrame * ff, bool ours)
{
  /* The sender first. The peerjs receiver is stopped only once it has
   * seen the sender leave: stopping it while its session is still closing
   * that member disposes the member's webrtcbin and decoder in PAUSED
   * (GStreamer-CRITICALs; see docs/performance.md). */
  if (ff->send)
    gst_element_set_state (ff->send, GST_STATE_NULL);
  if (ours && ff->recv) {
    g_autoptr (GstBus) bus = gst_element_get_bus (ff->recv);
    gint64 end = now_us () + 3 * G_USEC_PER_SEC;
    bool gone = false;
    while (!gone && now_us () < end) {
      GstMessage *m = gst_bus_timed_pop_filtered (bus, 50 * GST_MSECOND,
          GST_MESSAGE_ELEMENT);
      if (!m)
        continue;
      gone = gst_message_has_name (m, "peerjs-media-disconnect")
          || gst_message_has_name (m, "peerjs-thread-disconnect");
      gst_message_unref (m);
    }
    g_usleep (200000);
  }
  if (ff->recv)
    gst_element_set_state (ff->recv, GST_STATE_NULL);
  for (GstElement *e : { ff->a, ff->b, ff->pay, ff->send, ff->recv })
    if (e)
      gst_object_unref (e);
  /* Not freed: a promise of a stopped webrtcbin may still call back with
   * it. A few bytes per run. */
}

struct FirstFrameResult
{
  std::vector<double> ours, bare;
  double ours_warm = NAN, bare_warm = NAN;
  int failures = 0;
  std::vector<std::string> problems;
};

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

/* ------------------------------------------------------------------ */
/* 2. CPU of the publisher */

std::string gst_launch;
std::string self_exe;   /* this program, for the helper role */

struct CpuSample
{
  bool ok = false;
  std::string why;
  double cpu = NAN;             /* the publisher, % of one core */
  double recv_cpu = NAN;        /* the receivers' process */
  double machine = NAN;         /* whole machine */
  double fps = NAN;             /* frames per second per receiver */
  double connect_s = NAN;       /* until every receiver had video */
  /* The machine's busy time not spent by what was measured. */
  double other () const
  {
    return machine - cpu - (std::isnan (recv_cpu) ? 0 : recv_cpu);
  }
};

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

struct CpuResult
{
  std::map<int, CpuSample> ours, encoders;
  CpuSample ours_any_format;    /* N=1, caps without format */
};

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

/* ------------------------------------------------------------------ */
/* 3. Memory and threads per remote member */

struct MemSample
{
  bool ok = false;
  std::string why;
  double rss_kib = NAN;
  double threads = NAN;
  double base_rss_kib = NAN;    /* connected, no member yet */
  double base_threads = NAN;
  double fps = NAN;             /* frames per second per member */
};

void
sample_memory (pid_t pid, double * rss, double * threads)
{
  std::vector<double> r, t;
  for (int i = 0; i < 5; i++) {
    if (i)
      pump_for (0.2);
    r.push_back (status_field (pid, "VmRSS"));
    t.push_back (status_field (pid, "Threads"));
  }
  *rss = median (r);
  *threads = median (t);
}

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

struct MemResult
{
  std::map<int, MemSample> runs;
};

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

/* ------------------------------------------------------------------ */
/* 4. Glass-to-glass latency */

/* Nearest rank. */
double
percentile (std::vector<double> v, double p)
{
  if (v.empty ())
    return NAN;
  std::sort (v.begin (), v.end ());
  size_t rank = (size_t) std::ceil (p * v.size ());
  return v[std::min (v.size (), std::max<size_t> (rank, 1)) - 1];
}

struct G2GSide
{
  std::vector<double> decoded, shown;    /* ms, all rounds */
  int unreadable = 0;           /* decoded pictures without a readable code */
  int unpainted = 0;
  int lost = 0;                 /* counters missing between the first and last decoded */
  int decoded_frames = 0;
  std::vector<double> latency_ms;        /* the receiving pipeline's, per round */
  std::vector<double> other;    /* machine busy time not ours, % of a core */
  std::vector<double> source_lag;        /* ms, painted minus PTS */
  int failures = 0;
  std::vector<std::string> problems;
};

struct G2GResult
{
  G2GSide ours, bare;
};

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

/* ------------------------------------------------------------------ */
/* 5. A room of peerjsbin members */

struct RoomMember
{
  double cpu = NAN;             /* % of one core over the window */
  double rss_kib = NAN, threads = NAN;   /* after the window */
  int video_pads = 0, audio_pads = 0;    /* pads that delivered a buffer */
  double fps_min = NAN;         /* its slowest video pad over the window */
  int failed = 0, gone = 0, errors = 0;
  long long lost = 0;           /* packets lost, last stats of each member */
  bool died = false;
};

struct RoomResult
{
  bool ran = false;
  std::string why;              /* why not all pads flowed */
  int expected = 0;             /* video pads: n (n - 1) */
  int video_flowing = 0, audio_flowing = 0;
  double sockets_s = NAN;       /* all members greeted by the server */
  double flowing_s = NAN;       /* all video pads delivered a frame */
  std::vector<double> pad_fps;  /* each video pad's mean over the window */
  double worst_second = NAN;    /* fewest frames of a video pad in one second */
  double members_cpu = NAN, server_cpu = NAN, machine = NAN;
  double window_s = NAN;
  std::vector<RoomMember> members;
  int failed = 0, gone = 0, errors = 0;
  long long lost = 0;
};

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

/* ------------------------------------------------------------------ */
/* 6. Files */

/* Flow control of the elements and of peer.js (docs/protocol.md): at most
 * 1 MiB buffered in the channel, refilled from 256 KiB. */
constexpr guint64 FILE_HIGH_WATER = 1024 * 1024;
constexpr guint64 FILE_LOW_WATER = 256 * 1024;
/* What two pipelines agree on (the receiver asks for it). */
constexpr gsize FILE_CHUNK = 64 * 1024;

double
mb_per_s (guint64 bytes, double secs)
{
  return secs > 0 ? bytes / 1e6 / secs : NAN;
}

/* `size` random bytes at `path`; their SHA-256 in hex, or "" when the file
 * could not be written. */
std::string
random_file (const std::string & path, guint64 size)
{
  FILE *in = fopen ("/dev/urandom", "rb");
  FILE *out = fopen (path.c_str (), "wb");
  GChecksum *sha = g_checksum_new (G_CHECKSUM_SHA256);
  std::vector<guint8> buf (1 << 20);
  bool ok = in && out;
  for (guint64 left = size; ok && left > 0;) {
    size_t want = (size_t) MIN (left, (guint64) buf.size ());
    ok = fread (buf.data (), 1, want, in) == want
        && fwrite (buf.data (), 1, want, out) == want;
    g_checksum_update (sha, buf.data (), want);
    left -= want;
  }
  if (in)
    fclose (in);
  if (out && fclose (out) != 0)
    ok = false;
  std::string digest = ok ? g_checksum_get_string (sha) : "";
  g_checksum_free (sha);
  return digest;
}

/* SHA-256 over the file in memory in 64 KiB pieces, MB/s of one core:
 * both ends of a transfer between pipelines pay it on every byte. With
 * OpenSSL's libcrypto, as the elements hash (files.cpp), or with GLib's
 * GChecksum, as they did before. */
double
sha256_rate (const std::string & path, bool openssl)
{
  GMappedFile *m = g_mapped_file_new (path.c_str (), FALSE, nullptr);
  if (!m)
    return NAN;
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (m);
  gsize len = g_mapped_file_get_length (m);
  gint64 t0 = now_us ();
  if (openssl) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    EVP_DigestInit_ex (ctx, EVP_sha256 (), nullptr);
    for (gsize at = 0; at < len; at += FILE_CHUNK)
      EVP_DigestUpdate (ctx, data + at, MIN (FILE_CHUNK, len - at));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex (ctx, md, &n);
    EVP_MD_CTX_free (ctx);
  } else {
    GChecksum *sha = g_checksum_new (G_CHECKSUM_SHA256);
    for (gsize at = 0; at < len; at += FILE_CHUNK)
      g_checksum_update (sha, data + at, MIN (FILE_CHUNK, len - at));
    g_checksum_get_string (sha);
    g_checksum_free (sha);
  }
  double secs = (now_us () - t0) / 1e6;
  g_mapped_file_unref (m);
  return mb_per_s (len, secs);
}

/* One way of moving the file: MB/s of each round; for the rounds that
 * took a second or more the CPU of gst-bench, of its children and of other
 * work (CpuClock); UDP datagrams dropped over all rounds. */
struct FileLeg
{
  std::vector<double> rates, cpu, children, other;
  long long drops = 0;          /* UDP datagrams dropped, all rounds */
  std::vector<std::string> problems;

  double rate () const { return median (rates); }
  void failed (const char *name, int round, const std::string & why)
  {
    problems.push_back (std::string (name) + ", round " + std::to_string (round)
        + ": " + why);
    note ("files, %s, round %d: FAILED: %s", name, round, why.c_str ());
  }
};

struct FileResult
{
  bool ran = false;
  guint64 bytes = 0, browser_bytes = 0;
  FileLeg tcp, bare, gst, gst_browser, browser_gst, bb_peerjs, bb_raw;
  double sha_openssl = NAN, sha_glib = NAN;      /* MB/s */
  std::vector<double> pair_ratio;       /* gst->gst / bare pair, each round */
  std::vector<double> rtt_idle, rtt_busy;       /* ms */
  int pings_lost = 0;
  int busy_transfers = 0;       /* transfers the busy pings ran during */
  std::string browser_why;      /* why the browser legs did not run */
  std::vector<std::string> problems;
};

/* utime + stime of this process and everything it started (the server,
 * node and Chromium), in clock ticks. */
long long
tree_ticks ()
{
  std::map<pid_t, std::vector<pid_t>> kids;
  GDir *proc = g_dir_open ("/proc", 0, nullptr);
  if (!proc)
    return -1;
  while (const char *name = g_dir_read_name (proc)) {
    if (!g_ascii_isdigit (name[0]))
      continue;
    g_autofree char *path = g_strdup_printf ("/proc/%s/stat", name);
    g_autofree char *text = nullptr;
    if (!g_file_get_contents (path, &text, nullptr, nullptr))
      continue;
    const char *p = strrchr (text, ')');
    int ppid = 0;
    if (p && sscanf (p + 2, "%*c %d", &ppid) == 1)
      kids[ppid].push_back (atoi (name));
  }
  g_dir_close (proc);
  long long sum = 0;
  std::vector<pid_t> todo = { getpid () };
  while (!todo.empty ()) {
    pid_t pid = todo.back ();
    todo.pop_back ();
    sum += std::max (0LL, cpu_ticks (pid));
    for (pid_t k : kids[pid])
      todo.push_back (k);
  }
  return sum;
}

/* UDP datagrams this network namespace dropped because a socket's receive
 * buffer was full (RcvbufErrors in /proc/net/snmp), or -1. Every one is a
 * packet SCTP has to send again. */
long long
udp_drops ()
{
  g_autofree char *text = nullptr;
  if (!g_file_get_contents ("/proc/self/net/snmp", &text, nullptr, nullptr))
    return -1;
  /* Two "Udp:" lines: the names, then the values. */
  const char *names = strstr (text, "\nUdp:");
  const char *values = names ? strstr (names + 1, "\nUdp:") : nullptr;
  if (!values)
    return -1;
  std::stringstream n (std::string (names + 5, strchr (names + 1, '\n')));
  std::stringstream v (values + 5);
  std::string name;
  long long value;
  while (n >> name && v >> value)
    if (name == "RcvbufErrors")
      return value;
  return -1;
}

/* CPU over one round, % of one core: this process ("self"), what it
 * started ("children": node and Chromium, and the signalling server), and
 * "other load", the machine's busy time spent by neither. */
struct CpuClock
{
  long long self0 = cpu_ticks (getpid ()), tree0 = tree_ticks (),
      machine0 = machine_ticks (), drops0 = udp_drops ();
  gint64 t0 = now_us ();
  double self = NAN, children = NAN, other = NAN;
  long long drops = -1;         /* UDP datagrams dropped meanwhile */

  void stop ()
  {
    long long s = cpu_ticks (getpid ()), t = tree_ticks (),
        m = machine_ticks (), d = udp_drops ();
    drops = d >= 0 && drops0 >= 0 ? d - drops0 : -1;
    double secs = (now_us () - t0) / 1e6;
    /* Clock ticks are 10 ms: over less than a second they say nothing. */
    if (secs < 1)
      return;
    auto pc = [secs] (long long ticks) {
      return ticks * 100.0 / sysconf (_SC_CLK_TCK) / secs;
    };
    self = pc (s - self0);
    children = std::max (0.0, pc ((t - s) - (tree0 - self0)));
    other = std::max (0.0, pc ((m - machine0) - (t - tree0)));
  }
};

/* 6a. The file over one TCP connection on 127.0.0.1, read in 64 KiB blocks
 * and written, the other end only counting what arrives: what this
 * machine's loopback gives one stream. Seconds from connect to the last
 * byte read, or NAN. */
double
tcp_round (const std::string & path, guint64 size, std::string * why)
{
  int ls = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (ls < 0 || bind (ls, (sockaddr *) & addr, sizeof addr) != 0
      || listen (ls, 1) != 0 || getsockname (ls, (sockaddr *) & addr,
          &len) != 0) {
    *why = std::string ("no listening socket: ") + g_strerror (errno);
    if (ls >= 0)
      close (ls);
    return NAN;
  }
  std::atomic<gint64> done { 0 };
  guint64 got = 0;
  std::thread reader ([&] {
        int s = accept (ls, nullptr, nullptr);
        std::vector<char> buf (256 * 1024);
        while (s >= 0 && got < size) {
          ssize_t n = read (s, buf.data (), buf.size ());
          if (n <= 0)
            break;
          got += n;
        }
        done = now_us ();
        if (s >= 0)
          close (s);
      });
  FILE *f = fopen (path.c_str (), "rb");
  gint64 t0 = now_us ();
  int s = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = f && s >= 0 && connect (s, (sockaddr *) & addr, sizeof addr) == 0;
  std::vector<char> buf (FILE_CHUNK);
  size_t n;
  while (ok && (n = fread (buf.data (), 1, buf.size (), f)) > 0)
    for (size_t at = 0; ok && at < n;) {
      ssize_t w = write (s, buf.data () + at, n - at);
      ok = w > 0;
      at += ok ? w : 0;
    }
  if (!ok)
    *why = std::string ("could not send: ") + g_strerror (errno);
  if (s >= 0)
    shutdown (s, SHUT_WR);
  reader.join ();
  if (s >= 0)
    close (s);
  close (ls);
  if (f)
    fclose (f);
  if (ok && got != size) {
    *why = std::to_string (got) + " bytes of " + std::to_string (size)
        + " arrived";
    ok = false;
  }
  return ok ? (done - t0) / 1e6 : NAN;
}

/* 6b. A bare pair of webrtcbins in this process, negotiated as for the
 * first frame (connect_bare), carrying the file over a data channel in
 * 64 KiB messages with the elements' flow control; the receiving end only
 * counts. The ceiling for the elements: webrtcbin's data channel path with
 * no peerjs code around it. */
struct BareFiles
{
  FirstFrame *ff = nullptr;
  std::mutex lock;
  std::condition_variable cv;
  bool open = false;            /* the channel being opened */
  guint64 received = 0, want = 0;
  gint64 done_us = 0;
};

/* A new channel from a to b, open; null (and `why`) when it did not open
 * within 15 s. As the elements do, every file gets a channel of its own. */
GstWebRTCDataChannel *
bare_channel (BareFiles & bf, const std::string & label, std::string * why)
{
  {
    std::lock_guard<std::mutex> guard (bf.lock);
    bf.open = false;
  }
  GstWebRTCDataChannel *c = nullptr;
  g_signal_emit_by_name (bf.ff->a, "create-data-channel", label.c_str (),
      nullptr, &c);
  if (!c) {
    *why = "webrtcbin made no data channel";
    return nullptr;
  }
  g_signal_connect (c, "on-open", G_CALLBACK (+[] (GstWebRTCDataChannel *,
              gpointer data) {
        auto *bf = static_cast<BareFiles *> (data);
        std::lock_guard<std::mutex> guard (bf->lock);
        bf->open = true;
        bf->cv.notify_all ();
      }), &bf);
  g_signal_connect (c, "on-buffered-amount-low", G_CALLBACK (+[] (
              GstWebRTCDataChannel *, gpointer data) {
        auto *bf = static_cast<BareFiles *> (data);
        std::lock_guard<std::mutex> guard (bf->lock);
        bf->cv.notify_all ();
      }), &bf);
  g_object_set (c, "buffered-amount-low-threshold", FILE_LOW_WATER, NULL);
  gint64 end = now_us () + 15 * G_USEC_PER_SEC;
  /* On an association already up it may have opened before the handler
   * was there. */
  GstWebRTCDataChannelState state;
  g_object_get (c, "ready-state", &state, NULL);
  std::unique_lock<std::mutex> guard (bf.lock);
  bf.open = bf.open || state == GST_WEBRTC_DATA_CHANNEL_STATE_OPEN;
  while (!bf.open && !bf.ff->failed && now_us () < end) {
    bf.cv.wait_for (guard, std::chrono::milliseconds (20));
    guard.unlock ();
    check_bus (bf.ff, bf.ff->send);
    check_bus (bf.ff, bf.ff->recv);
    guard.lock ();
  }
  if (!bf.open) {
    *why = bf.ff->failed ? bf.ff->why : "the data channel did not open "
        "within 15 s";
    g_object_unref (c);
    return nullptr;
  }
  return c;
}

bool
bare_files_start (BareFiles & bf, std::string * why)
{
  auto *ff = new FirstFrame ();
  bf.ff = ff;
  ff->send = parse ("webrtcbin name=a bundle-policy=max-bundle");
  ff->recv = parse ("webrtcbin name=b bundle-policy=max-bundle");
  if (!ff->send || !ff->recv) {
    *why = "could not build the pipelines";
    return false;
  }
  ff->a = gst_bin_get_by_name (GST_BIN (ff->send), "a");
  ff->b = gst_bin_get_by_name (GST_BIN (ff->recv), "b");
  connect_bare (ff);
  g_signal_connect (ff->b, "on-data-channel", G_CALLBACK (+[] (GstElement *,
              GstWebRTCDataChannel * c, gpointer data) {
        g_signal_connect (c, "on-message-data", G_CALLBACK (+[] (
                    GstWebRTCDataChannel *, GBytes * bytes, gpointer data) {
              auto *bf = static_cast<BareFiles *> (data);
              std::lock_guard<std::mutex> guard (bf->lock);
              bf->received += bytes ? g_bytes_get_size (bytes) : 0;
              if (bf->want && bf->received >= bf->want && !bf->done_us) {
                bf->done_us = now_us ();
                bf->cv.notify_all ();
              }
            }), data);
      }), &bf);
  gst_element_set_state (ff->recv, GST_STATE_PLAYING);
  gst_element_set_state (ff->send, GST_STATE_PLAYING);
  /* Like the elements' master channel: it gives the connection its m-line
   * and its SCTP association, which the files' channels then share. */
  GstWebRTCDataChannel *c = bare_channel (bf, "data", why);
  if (!c)
    return false;
  g_object_unref (c);
  return true;
}

void
bare_files_stop (BareFiles & bf)
{
  if (bf.ff)
    stop_pair (bf.ff, false);
}

/* One round: seconds from asking for a channel to the last byte at the
 * other end, or NAN. */
double
bare_round (BareFiles & bf, const std::string & path, guint64 size, int n,
    std::string * why)
{
  FILE *f = fopen (path.c_str (), "rb");
  if (!f) {
    *why = "cannot read " + path;
    return NAN;
  }
  {
    std::lock_guard<std::mutex> guard (bf.lock);
    bf.received = 0;
    bf.want = size;
    bf.done_us = 0;
  }
  gint64 t0 = now_us ();
  GstWebRTCDataChannel *c = bare_channel (bf, "file-" + std::to_string (n),
      why);
  if (!c) {
    fclose (f);
    return NAN;
  }
  /* As the elements' sender: one chunk read, copied into a GBytes and
   * sent whenever no more than 1 MiB waits in the channel; otherwise wait
   * for on-buffered-amount-low (bounded: it may come between the test and
   * the wait). */
  std::vector<guint8> buf (FILE_CHUNK);
  guint64 sent = 0;
  gint64 end = now_us () + (gint64) ((30 + size / 1e6) * G_USEC_PER_SEC);
  bool ok = true;
  while (ok && sent < size) {
    {
      std::unique_lock<std::mutex> guard (bf.lock);
      for (;;) {
        guint64 buffered = 0;
        g_object_get (c, "buffered-amount", &buffered, NULL);
        if (buffered <= FILE_HIGH_WATER)
          break;
        if (now_us () > end) {
          *why = "the channel did not drain";
          ok = false;
          break;
        }
        bf.cv.wait_for (guard, std::chrono::milliseconds (50));
      }
    }
    size_t got = ok ? fread (buf.data (), 1, FILE_CHUNK, f) : 0;
    if (ok && got == 0) {
      *why = "the file is shorter than it was";
      ok = false;
    }
    if (!ok)
      break;
    GBytes *bytes = g_bytes_new (buf.data (), got);
    GError *error = nullptr;
    ok = gst_webrtc_data_channel_send_data_full (c, bytes, &error);
    g_bytes_unref (bytes);
    if (!ok) {
      *why = std::string ("could not send: ") + error->message;
      g_clear_error (&error);
    }
    sent += got;
  }
  fclose (f);
  std::unique_lock<std::mutex> guard (bf.lock);
  while (ok && !bf.done_us && now_us () < end)
    bf.cv.wait_for (guard, std::chrono::milliseconds (20));
  if (ok && !bf.done_us) {
    *why = std::to_string (bf.received) + " bytes of " + std::to_string (size)
        + " arrived in time";
    ok = false;
  }
  bf.want = 0;
  /* Left open: closing a channel under data breaks webrtcbin 1.22's
   * stream, and nothing is sent on it any more. */
  g_object_unref (c);
  return ok ? (bf.done_us - t0) / 1e6 : NAN;
}

/* 6c. The elements. Each pipeline's bus is watched from one application
 * thread with its own main loop, as an application's main loop would
 * watch it; what matters here is when each peerjs-* message came. */
struct FilePeer
{
  std::string name;
  GstElement *pipeline = nullptr, *element = nullptr;
  GSource *watch = nullptr;
  std::string id;               /* session id */
  bool answer_events = false;   /* reply to every peerjs-event */
  std::mutex lock;
  std::condition_variable cv;
  std::vector<std::pair<gint64, GstStructure *>> messages;
  std::string error;
};

gboolean
file_peer_bus (GstBus *, GstMessage * msg, gpointer data)
{
  auto *p = static_cast<FilePeer *> (data);
  gint64 at = now_us ();
  g_autoptr (GError) e = nullptr;
  g_autofree char *dbg = nullptr;
  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:{
      gst_message_parse_error (msg, &e, &dbg);
      std::lock_guard<std::mutex> guard (p->lock);
      p->error = std::string (GST_OBJECT_NAME (msg->src)) + ": " + e->message;
      p->cv.notify_all ();
      break;
    }
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning (msg, &e, &dbg);
      note ("files, %s: warning from %s: %s", p->name.c_str (),
          GST_OBJECT_NAME (msg->src), e->message);
      break;
    case GST_MESSAGE_ELEMENT:{
      const GstStructure *s = gst_message_get_structure (msg);
      if (!s || !g_str_has_prefix (gst_structure_get_name (s), "peerjs-"))
        break;
      if (p->answer_events && gst_structure_has_name (s, "peerjs-event")) {
        /* The application answers every event at once. */
        gboolean ok = FALSE;
        g_signal_emit_by_name (p->element, "reply-event",
            gst_structure_get_string (s, "from"),
            gst_structure_get_string (s, "callback-id"), "{\"pong\":true}",
            &ok);
      }
      std::lock_guard<std::mutex> guard (p->lock);
      p->messages.emplace_back (at, gst_structure_copy (s));
      p->cv.notify_all ();
      break;
    }
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

bool
has_fields (const GstStructure * s, const char *name,
    const std::vector<std::pair<const char *, std::string>> & fields)
{
  if (!gst_structure_has_name (s, name))
    return false;
  for (auto & f : fields) {
    const char *v = gst_structure_get_string (s, f.first);
    if (!v || f.second != v)
      return false;
  }
  return true;
}

/* The first message `match` takes, waiting up to `secs` (0: only look); it
 * stays the peer's. Null on time-out or an error on the bus (`why`). */
const GstStructure *
wait_for (FilePeer & p, double secs,
    const std::function<bool (const GstStructure *)> & match,
    gint64 * at = nullptr, std::string * why = nullptr)
{
  gint64 end = now_us () + (gint64) (secs * G_USEC_PER_SEC);
  std::unique_lock<std::mutex> guard (p.lock);
  for (;;) {
    for (auto & m : p.messages)
      if (match (m.second)) {
        if (at)
          *at = m.first;
        return m.second;
      }
    if (!p.error.empty () || now_us () >= end)
      break;
    p.cv.wait_for (guard, std::chrono::milliseconds (50));
  }
  if (why)
    *why = !p.error.empty () ? p.error : "timed out";
  return nullptr;
}

const GstStructure *
wait_message (FilePeer & p, const char *name,
    const std::vector<std::pair<const char *, std::string>> & fields,
    double secs, gint64 * at = nullptr, std::string * why = nullptr)
{
  const GstStructure *s = wait_for (p, secs, [&] (const GstStructure * s) {
        return has_fields (s, name, fields);
      }, at, why);
  if (!s && why)
    *why = std::string ("no ") + name + " (" + *why + ")";
  return s;
}

bool
file_peer_start (FilePeer & p, const std::string & desc, GMainContext * ctx,
    std::string * why)
{
  p.pipeline = parse (desc);
  if (!p.pipeline) {
    *why = "cannot build " + desc;
    return false;
  }
  p.element = gst_bin_get_by_name (GST_BIN (p.pipeline), "p");
  g_autoptr (GstBus) bus = gst_element_get_bus (p.pipeline);
  p.watch = gst_bus_create_watch (bus);
  g_source_set_callback (p.watch, G_SOURCE_FUNC (file_peer_bus), &p, nullptr);
  g_source_attach (p.watch, ctx);
  if (gst_element_set_state (p.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    *why = p.name + " did not start";
    return false;
  }
  const GstStructure *s = wait_message (p, "peerjs-socket-connect", {}, 15,
      nullptr, why);
  if (!s)
    return false;
  p.id = gst_structure_get_string (s, "id");
  return true;
}

void
file_peer_stop (FilePeer & p)
{
  if (p.pipeline)
    gst_element_set_state (p.pipeline, GST_STATE_NULL);
  if (p.watch) {
    g_source_destroy (p.watch);
    g_source_unref (p.watch);
  }
  gst_clear_object (&p.element);
  gst_clear_object (&p.pipeline);
  for (auto & m : p.messages)
    gst_structure_free (m.second);
  p.messages.clear ();
}

/* The end of file `id` at `p` in `direction`: its peerjs-file-complete,
 * or null when peerjs-file-error or nothing came (`why`). */
const GstStructure *
file_end (FilePeer & p, const std::string & id, const char *direction,
    double secs, gint64 * at, std::string * why)
{
  const GstStructure *s = wait_for (p, secs, [&] (const GstStructure * s) {
        return has_fields (s, "peerjs-file-complete", {{"id", id},
                {"direction", direction}})
            || has_fields (s, "peerjs-file-error", {{"id", id}});
      }, at, why);
  if (s && gst_structure_has_name (s, "peerjs-file-error")) {
    *why = std::string (gst_structure_get_string (s, "message"));
    return nullptr;
  }
  if (!s)
    *why = std::string ("the ") + direction + " did not end (" + *why + ")";
  return s;
}

double
transfer_timeout (guint64 size)
{
  return 30 + size / 1e6;
}

/* File `id`, offered to receiving element `to`, received there: seconds
 * from the offer reaching it to the file verified (peerjs-file-complete),
 * or NAN. The saved file is removed again. */
double
gst_receive (FilePeer & to, const std::string & id, guint64 size,
    const std::string & sha, std::string * why)
{
  gint64 t_offer = 0, t_done = 0;
  if (!wait_message (to, "peerjs-file-offer", {{"id", id}}, 15, &t_offer,
          why))
    return NAN;
  const GstStructure *done = file_end (to, id, "receive",
      transfer_timeout (size), &t_done, why);
  if (!done)
    return NAN;
  guint64 got = 0;
  gst_structure_get_uint64 (done, "size", &got);
  const char *digest = gst_structure_get_string (done, "sha256");
  const char *path = gst_structure_get_string (done, "path");
  if (path && *path)
    g_unlink (path);
  if (got != size || !digest || sha != digest) {
    *why = "received " + std::to_string (got) + " bytes with SHA-256 "
        + (digest ? digest : "?") + ", not the file sent";
    return NAN;
  }
  return (t_done - t_offer) / 1e6;
}

/* One file from element `from` to element `to`. */
double
gst_round (FilePeer & from, FilePeer & to, const std::string & path,
    guint64 size, const std::string & sha, std::string * why)
{
  g_autofree char *id = nullptr;
  g_signal_emit_by_name (from.element, "offer-file", path.c_str (),
      to.id.c_str (), nullptr, &id);
  if (!id) {
    *why = "offer-file refused";
    return NAN;
  }
  double secs = gst_receive (to, id, size, sha, why);
  /* The sender is done once the receiver acknowledged it. */
  std::string ack_why;
  if (!std::isnan (secs) && !file_end (from, id, "send", 30, nullptr,
          &ack_why)) {
    *why = "sender: " + ack_why;
    return NAN;
  }
  return secs;
}

/* 6d. Chat: an event from `a` to `b` with a reply wanted; b's application
 * answers it from its bus watch. Round trip from the emission to the
 * promise replied, ms; NAN when no reply came within 5 s. `sent`, when
 * given, is when it was emitted. */
struct Ping
{
  std::atomic<gint64> replied { 0 };
  std::atomic<bool> ok { false };
};

double
ping (FilePeer & a, FilePeer & b, int n, gint64 * sent = nullptr)
{
  /* Freed once replied; a promise that never is keeps it. */
  auto *pg = new Ping ();
  GstPromise *promise = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *pg = static_cast<Ping *> (data);
        gint64 t = now_us ();
        bool ok = false;
        if (gst_promise_wait (p) == GST_PROMISE_RESULT_REPLIED) {
          const GstStructure *r = gst_promise_get_reply (p);
          const char *error = r ? gst_structure_get_string (r, "error") : "?";
          ok = !error || !*error;
        }
        pg->ok = ok;
        pg->replied = t;
      }, pg, nullptr);
  std::string data = "{\"n\":" + std::to_string (n) + "}";
  guint id = 0;
  gint64 t0 = now_us ();
  g_signal_emit_by_name (a.element, "send-event", "bench:ping", b.id.c_str (),
      nullptr, data.c_str (), TRUE, promise, &id);
  gst_promise_unref (promise);
  if (sent)
    *sent = t0;
  if (!id)
    return NAN;
  gint64 end = t0 + 5 * G_USEC_PER_SEC;
  while (!pg->replied && now_us () < end)
    g_usleep (200);
  if (!pg->replied)
    return NAN;
  double ms = pg->ok ? (pg->replied - t0) / 1000.0 : NAN;
  delete pg;
  return ms;
}

/* 6e. The browser legs: bench/file-transfer.mjs --driven, one Chromium
 * with page G in the elements' thread (and pages A and B for browser to
 * browser), commanded line by line. */
struct Browser
{
  Child *child = nullptr;
  size_t seen = 0;              /* lines of it read so far */
  std::string page;             /* G's session id */
  std::string sha;              /* G's file */
};

/* The value of `key` in one of the script's JSON lines (strings
 * unquoted; no escapes in what it prints but in error text). */
std::string
json_field (const std::string & line, const char *key)
{
  std::string k = std::string ("\"") + key + "\":";
  size_t at = line.find (k);
  if (at == std::string::npos)
    return "";
  at += k.size ();
  if (line[at] == '"') {
    size_t close = line.find ('"', at + 1);
    return line.substr (at + 1, close == std::string::npos ? std::string::npos
        : close - at - 1);
  }
  size_t stop = line.find_first_of (",}", at);
  return line.substr (at, stop == std::string::npos ? std::string::npos
      : stop - at);
}

/* The next line of the script with `key` (or an error), waiting up to
 * `secs`; "" on time-out or when it exited. */
std::string
browser_line (Browser & br, const char *key, double secs, std::string * why)
{
  gint64 end = now_us () + (gint64) (secs * G_USEC_PER_SEC);
  std::string k = std::string ("\"") + key + "\":";
  for (bool gone = false;;) {
    while (br.seen < br.child->lines.size ()) {
      const std::string & l = br.child->lines[br.seen++];
      if (l.find (k) != std::string::npos)
        return l;
      if (l.find ("\"error\":") != std::string::npos) {
        *why = "browser: " + json_field (l, "error");
        return "";
      }
    }
    /* Once more after it exited, for what it wrote last. */
    if (gone) {
      *why = "the browser script exited (see gst-files-browser.log)";
      return "";
    }
    gone = !alive (br.child);
    if (now_us () >= end) {
      *why = std::string ("the browser script did not answer with '") + key
          + "' in time";
      return "";
    }
    pump (50);
  }
}

bool
browser_say (Browser & br, const std::string & line)
{
  std::string l = line + "\n";
  return br.child->in >= 0 && write (br.child->in, l.data (), l.size ())
      == (ssize_t) l.size ();
}

void
browser_stop (Browser & br)
{
  if (!br.child)
    return;
  /* Let it close Chromium itself: killed, Chromium (a process group of its
   * own) would stay. */
  browser_say (br, "quit");
  gint64 end = now_us () + 10 * G_USEC_PER_SEC;
  while (alive (br.child) && now_us () < end)
    pump (50);
  stop_child (br.child);
  br.child = nullptr;
}

/* One measurement between pages A and B; seconds or NAN. */
double
bb_round (Browser & br, const char *impl, guint64 size, std::string * why)
{
  if (!browser_say (br, std::string ("bb ") + impl)) {
    *why = "cannot write to the browser script";
    return NAN;
  }
  std::string l = browser_line (br, "impl", transfer_timeout (size), why);
  if (l.empty ())
    return NAN;
  if (std::stoull (json_field (l, "bytes")) != size) {
    *why = "received " + json_field (l, "bytes") + " bytes";
    return NAN;
  }
  return atof (json_field (l, "ms").c_str ()) / 1000;
}

std::string
http_url (const std::string & ws)
{
  /* ws://127.0.0.1:PORT/peerjs -> http://127.0.0.1:PORT */
  std::string rest = ws.substr (ws.find ("://") + 3);
  return "http://" + rest.substr (0, rest.find ('/'));
}

bool
browser_start (Browser & br, const std::string & url,
    const std::string & thread, guint64 size, std::string * why)
{
  g_autofree char *node = g_find_program_in_path ("node");
  std::string root = PEERJS_SOURCE_ROOT;
  std::string script = root + "/bench/file-transfer.mjs";
  std::string pw = root + "/tests/browser/node_modules/playwright-core";
  std::string missing;
  if (!node)
    missing += ", node";
  if (!g_file_test ("/usr/bin/chromium", G_FILE_TEST_IS_EXECUTABLE))
    missing += ", /usr/bin/chromium";
  if (root.empty () || !g_file_test (script.c_str (), G_FILE_TEST_EXISTS))
    missing += ", bench/file-transfer.mjs";
  if (!g_file_test (pw.c_str (), G_FILE_TEST_IS_DIR))
    missing += ", playwright-core (tools/setup installs it)";
  if (!missing.empty ()) {
    *why = "not run, missing " + missing.substr (2);
    return false;
  }
  br.child = spawn ("files-browser", { node, script, "--driven",
          http_url (url), thread, std::to_string (size) }, true, true);
  if (!br.child) {
    *why = "could not start node";
    return false;
  }
  /* Chromium, three pages, two files of random bytes and a first small
   * file between A and B. */
  std::string l = browser_line (br, "ready", 90, why);
  if (l.empty ())
    return false;
  br.page = json_field (l, "page");
  br.sha = json_field (l, "sha256");
  return !br.page.empty ();
}

/* A pipeline's file to page G: seconds from the offer reaching G to
 * file:complete there (peer.js's own clock), or NAN. */
double
gst_browser_round (Browser & br, FilePeer & from, const std::string & path,
    guint64 size, const std::string & sha, std::string * why)
{
  if (!browser_say (br, "receive")
      || browser_line (br, "armed", 15, why).empty ())
    return NAN;
  g_autofree char *id = nullptr;
  g_signal_emit_by_name (from.element, "offer-file", path.c_str (),
      br.page.c_str (), nullptr, &id);
  if (!id) {
    *why = "offer-file refused";
    return NAN;
  }
  std::string l = browser_line (br, "impl", transfer_timeout (size), why);
  if (l.empty ())
    return NAN;
  if (json_field (l, "sha256") != sha
      || std::stoull (json_field (l, "bytes")) != size) {
    *why = "the page got " + json_field (l, "bytes") + " bytes with SHA-256 "
        + json_field (l, "sha256") + ", not the file sent";
    return NAN;
  }
  std::string ack_why;
  if (!file_end (from, id, "send", 30, nullptr, &ack_why)) {
    *why = "sender: " + ack_why;
    return NAN;
  }
  return atof (json_field (l, "ms").c_str ()) / 1000;
}

/* Page G's file, offered to the thread; element `to` takes it (its
 * accept-files=all; the peerjssink only posts the offer), timed there. */
double
browser_gst_round (Browser & br, FilePeer & to, guint64 size,
    std::string * why)
{
  if (!browser_say (br, "offer"))
    return NAN;
  std::string l = browser_line (br, "offered", 15, why);
  if (l.empty ())
    return NAN;
  return gst_receive (to, json_field (l, "offered"), size, br.sha, why);
}

/* Before a round: wait (up to 10 s, 60 s over the whole part) until other
 * work on the machine leaves both cores to us, so that a shared machine's
 * load lands in as few rounds as it can. The table shows what remained. */
void
wait_quiet_files ()
{
  static double budget = 60;
  gint64 start = now_us ();
  double other = 0;
  do {
    CpuClock c;
    pump_for (1.0);
    c.stop ();
    other = c.other;
  } while (other > 25 && (now_us () - start) / 1e6 < std::min (10.0, budget));
  budget -= (now_us () - start) / 1e6;
  if (other > 25)
    note ("files: other work keeps %.0f%% of a core busy; measuring anyway",
        other);
}

/* Pauses between transfers: a sender waits 0.5 s after a channel to the
 * same member closed before it opens the next (files.cpp, CHANNEL_QUIET),
 * which would otherwise land inside the next measurement. */
void
settle_files ()
{
  pump_for (1.0);
}

/* A round measured since `clock`. */
void
add_round (FileLeg & leg, const char *name, int round, double secs,
    guint64 size, const std::string & why, CpuClock & clock)
{
  clock.stop ();
  if (std::isnan (secs)) {
    leg.failed (name, round, why);
    return;
  }
  leg.rates.push_back (mb_per_s (size, secs));
  leg.drops += std::max (0LL, clock.drops);
  if (!std::isnan (clock.self)) {
    leg.cpu.push_back (clock.self);
    leg.children.push_back (clock.children);
    leg.other.push_back (clock.other);
  }
  g_autofree char *used = std::isnan (clock.self) ? g_strdup ("")
      : g_strdup_printf ("; CPU: gst-bench %.0f%%, node and Chromium %.0f%%, "
      "other load %.0f%%", clock.self, clock.children, clock.other);
  note ("files, %s, round %d: %.1f MB/s (%.2f s%s; UDP datagrams dropped: "
      "%lld)", name, round, leg.rates.back (), secs, used, clock.drops);
}

FileResult
bench_files (const std::string & url)
{
  FileResult r;
  r.ran = true;
  r.bytes = opt.files_bytes;
  r.browser_bytes = opt.files_browser_bytes;
  g_autofree char *dir = g_dir_make_tmp ("gst-bench-files-XXXXXX", nullptr);
  if (!dir) {
    r.problems.push_back ("no temporary directory");
    return r;
  }
  std::string path = std::string (dir) + "/bench.bin";
  std::string in = std::string (dir) + "/in";
  /* The legs with a browser move fewer bytes by default: browsers are
   * slower, and the whole part should stay within a few minutes. */
  std::string bpath = std::string (dir) + "/browser.bin";
  std::string small = std::string (dir) + "/warm-up.bin";
  int k = 0;
  for (const std::string & p : { path, bpath, small, in, std::string (dir) })
    g_strlcpy (files_to_remove[k++], p.c_str (), PATH_MAX);
  g_mkdir (in.c_str (), 0700);
  std::string sha = random_file (path, r.bytes);
  std::string small_sha = random_file (small, 1000 * 1000);
  std::string bsha = random_file (bpath, r.browser_bytes);
  if (sha.empty () || small_sha.empty () || bsha.empty ()) {
    r.problems.push_back ("cannot write the files in " + std::string (dir));
    return r;
  }
  r.sha_openssl = sha256_rate (path, true);
  r.sha_glib = sha256_rate (path, false);
  std::string thread = random_name ("files");

  /* The browser first: starting Chromium and making its files takes a few
   * seconds of both cores, which no measurement should overlap. */
  Browser br;
  bool browser = opt.files_browser
      && browser_start (br, url, thread, r.browser_bytes, &r.browser_why);
  if (!opt.files_browser) {
    r.browser_why = "not run (--files-no-browser)";
  } else if (!browser) {
    note ("files: browser legs: %s", r.browser_why.c_str ());
    /* Missing software is reported, not counted as a failure. */
    if (!g_str_has_prefix (r.browser_why.c_str (), "not run"))
      r.problems.push_back ("browser: " + r.browser_why);
  }

  GMainContext *ctx = g_main_context_new ();
  GMainLoop *loop = g_main_loop_new (ctx, FALSE);
  std::thread app ([ctx, loop] {
        g_main_context_push_thread_default (ctx);
        g_main_loop_run (loop);
        g_main_context_pop_thread_default (ctx);
      });
  FilePeer a, b;
  a.name = "peerjssink";
  b.name = "peerjssrc";
  b.answer_events = true;
  std::string props = " server=" + url + " thread=" + thread;
  std::string why;
  BareFiles bf;
  bool ok = file_peer_start (b, "peerjssrc name=p accept-files=all "
      "download-dir=" + in + props, ctx, &why)
      && file_peer_start (a, "peerjssink name=p" + props, ctx, &why)
      && wait_message (a, "peerjs-thread-connect", {{"member", b.id}}, 15,
      nullptr, &why)
      && (!browser || wait_message (a, "peerjs-thread-connect",
          {{"member", br.page}}, 15, nullptr, &why))
      && bare_files_start (bf, &why);
  /* Warm-up, not counted: each path once with a small file, so that no
   * measured round pays for negotiation, for libraries loaded on first
   * use or for a connection's first channel. */
  if (ok && !std::isnan (gst_round (a, b, small, 1000 * 1000, small_sha,
              &why)))
    settle_files ();
  else if (ok)
    ok = false;
  /* G's connections to both elements were negotiated when it joined; one
   * small file to G is enough. */
  if (ok && browser) {
    std::string bwhy;
    if (std::isnan (gst_browser_round (br, a, small, 1000 * 1000, small_sha,
                &bwhy))) {
      note ("files: browser warm-up: FAILED: %s", bwhy.c_str ());
      r.browser_why = "warm-up failed: " + bwhy;
      r.problems.push_back ("browser: " + r.browser_why);
      browser = false;
    }
    settle_files ();
  }
  if (!ok) {
    r.problems.push_back ("setup: " + why);
    note ("files: setup FAILED: %s", why.c_str ());
  }

  for (int i = 1; ok && i <= opt.files_rounds; i++) {
    note ("files, round %d of %d", i, opt.files_rounds);
    wait_quiet_files ();
    CpuClock c;
    double s = tcp_round (path, r.bytes, &why);
    add_round (r.tcp, "TCP", i, s, r.bytes, why, c);
    c = CpuClock ();
    double bare = bare_round (bf, path, r.bytes, i, &why);
    add_round (r.bare, "bare webrtcbin pair", i, bare, r.bytes, why, c);
    c = CpuClock ();
    s = gst_round (a, b, path, r.bytes, sha, &why);
    add_round (r.gst, "gst->gst", i, s, r.bytes, why, c);
    /* Next to each other in time, so less apart by other load. */
    if (!std::isnan (s) && !std::isnan (bare))
      r.pair_ratio.push_back (bare / s);
    settle_files ();
    if (!browser)
      continue;
    c = CpuClock ();
    s = gst_browser_round (br, a, bpath, r.browser_bytes, bsha, &why);
    add_round (r.gst_browser, "gst->browser", i, s, r.browser_bytes, why, c);
    settle_files ();
    c = CpuClock ();
    s = browser_gst_round (br, b, r.browser_bytes, &why);
    add_round (r.browser_gst, "browser->gst", i, s, r.browser_bytes, why, c);
    settle_files ();
    c = CpuClock ();
    s = bb_round (br, "peer.js", r.browser_bytes, &why);
    add_round (r.bb_peerjs, "browser->browser, peer.js", i, s,
        r.browser_bytes, why, c);
    c = CpuClock ();
    s = bb_round (br, "raw", r.browser_bytes, &why);
    add_round (r.bb_raw, "browser->browser, raw", i, s, r.browser_bytes, why,
        c);
  }

  /* Chat: idle, then during transfers gst->gst. A ping counts as during a
   * transfer when it was sent after the receiver had the offer and
   * answered before the file was complete there. */
  for (int i = 0; ok && i < opt.files_pings; i++) {
    double ms = ping (a, b, i);
    if (std::isnan (ms))
      r.pings_lost++;
    else
      r.rtt_idle.push_back (ms);
    g_usleep (50 * 1000);
  }
  settle_files ();
  while (ok && (int) r.rtt_busy.size () < opt.files_pings
      && r.busy_transfers < 5) {
    g_autofree char *id = nullptr;
    g_signal_emit_by_name (a.element, "offer-file", path.c_str (),
        b.id.c_str (), nullptr, &id);
    gint64 t_offer = 0, t_done = 0;
    if (!id || !wait_message (b, "peerjs-file-offer", {{"id", id}}, 15,
            &t_offer, &why)) {
      r.problems.push_back ("chat: " + (id ? why : "offer-file refused"));
      break;
    }
    r.busy_transfers++;
    std::vector<std::pair<gint64, double>> pings;
    auto ended = [&] {
      return wait_for (b, 0, [&] (const GstStructure * s) {
            return has_fields (s, "peerjs-file-complete", {{"id", id}})
                || has_fields (s, "peerjs-file-error", {{"id", id}});
          }) != nullptr;
    };
    for (int n = 0; !ended () && (int) (r.rtt_busy.size () + pings.size ())
        < opt.files_pings; n++) {
      gint64 sent = 0;
      double ms = ping (a, b, 1000 + n, &sent);
      if (std::isnan (ms))
        r.pings_lost++;
      else
        pings.emplace_back (sent, ms);
      g_usleep (50 * 1000);
    }
    if (!file_end (b, id, "receive", transfer_timeout (r.bytes), &t_done,
            &why)) {
      r.problems.push_back ("chat: the transfer failed: " + why);
      break;
    }
    /* The file_end above found it, so it is there. */
    const GstStructure *done = wait_for (b, 0, [&] (const GstStructure * s) {
          return has_fields (s, "peerjs-file-complete", {{"id", id}});
        });
    const char *saved = done ? gst_structure_get_string (done, "path") : "";
    if (saved && *saved)
      g_unlink (saved);
    for (auto & p : pings)
      if (p.first >= t_offer && p.first + (gint64) (p.second * 1000) <= t_done)
        r.rtt_busy.push_back (p.second);
    file_end (a, id, "send", 30, nullptr, &why);
    settle_files ();
  }

  browser_stop (br);
  bare_files_stop (bf);
  file_peer_stop (a);
  file_peer_stop (b);
  g_main_loop_quit (loop);
  g_main_context_wakeup (ctx);
  app.join ();
  g_main_loop_unref (loop);
  g_main_context_unref (ctx);
  /* What a failed round may have left in `in` too. */
  if (GDir *d = g_dir_open (in.c_str (), 0, nullptr)) {
    while (const char *name = g_dir_read_name (d))
      g_unlink ((in + "/" + name).c_str ());
    g_dir_close (d);
  }
  for (const std::string & p : { path, small, bpath, in })
    g_remove (p.c_str ());
  g_rmdir (dir);
  for (char *p : files_to_remove)
    *p = '\0';
  return r;
}

/* ------------------------------------------------------------------ */
/* The table */

std::string
fmt (double v, const char *spec)
{
  if (std::isnan (v))
    return "n/a";
  char buf[256];
  snprintf (buf, sizeof buf, spec, v);
  return buf;
}

std::string
pad (const std::string & s, size_t w)
{
  return s.size () >= w ? s + " " : s + std::string (w - s.size (), ' ');
}

std::string
join_ms (const std::vector<double> & v)
{
  std::string out;
  for (double x : v)
    out += (out.empty () ? "" : ", ") + fmt (x, "%.0f");
  return out;
}

void
json_num (GString * j, const char *key, double v, bool comma = true)
{
  if (std::isnan (v))
    g_string_append_printf (j, "\"%s\": null", key);
  else
    g_string_append_printf (j, "\"%s\": %.3f", key, v);
  if (comma)
    g_string_append (j, ", ");
}

}  // namespace

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
        "comma list of first-frame, cpu, memory, latency, room, files "
        "(default: all but files)", "LIST" },
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

  double o_ms = median (ff.ours), b_ms = median (ff.bare);
  if (ran_ff) {
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

  if (ran_g2g) {
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

  if (ran_cpu) {
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

  if (ran_mem) {
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
  if (ran_room) {
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
  if (ran_files) {
    FileResult & f = files;
    auto rates = [] (const FileLeg & l) {
      std::string o;
      for (double x : l.rates)
        o += (o.empty () ? "" : ", ") + fmt (x, "%.1f");
      return o;
    };
    double worst_other = 0;
    auto row = [&] (const char *what, const FileLeg & l) {
      double other = l.other.empty () ? NAN : *std::max_element (
          l.other.begin (), l.other.end ());
      if (!std::isnan (other))
        worst_other = std::max (worst_other, other);
      auto pc = [] (double v) {
        return std::isnan (v) ? std::string () : fmt (v, "%.0f %%");
      };
      out += pad (std::string ("  ") + what, 50) + pad (fmt (l.rate (),
              "%.1f"), 9) + pad (l.rates.empty () ? "FAILED" : rates (l), 24)
          + pad (pc (median (l.cpu)), 11) + pad (pc (median (l.children)), 11)
          + pad (pc (other), 8) + std::to_string (l.drops) + "\n";
    };
    auto ratio = [&] (const char *what, double a, double b,
        const char *target = nullptr, double goal = 0) {
      double v = a / b;
      std::string t;
      if (target) {
        bool met = v >= goal;
        missed = missed || !met;
        t = std::string ("  (target ") + target + ": " + (std::isnan (v)
            ? "n/a" : met ? "met" : "MISSED") + ")";
      }
      out += pad (std::string ("  ") + what, 50) + fmt (v, "%.2f") + t + "\n";
    };
    for (const FileLeg *l : { &f.tcp, &f.bare, &f.gst, &f.gst_browser,
            &f.browser_gst, &f.bb_peerjs, &f.bb_raw })
      problems += (int) l->problems.size ();
    problems += (int) f.problems.size ();
    out += "\n";
    snprintf (line, sizeof line, "files, %.0f MB of random bytes, %d round%s "
        "(median)", f.bytes / 1e6, opt.files_rounds,
        opt.files_rounds == 1 ? "" : "s");
    out += pad (line, 50) + pad ("MB/s", 9) + pad ("rounds (MB/s)", 24)
        + pad ("CPU:", 11) + pad ("", 11) + pad ("other", 8) + "UDP\n";
    out += pad ("", 50) + pad ("", 9) + pad ("", 24) + pad ("gst-bench", 11)
        + pad ("Chromium", 11) + pad ("load", 8) + "drops\n";
    row ("gst->gst: peerjssink -> peerjssrc, 64 KiB", f.gst);
    row ("bare webrtcbin pair: data channel, 64 KiB", f.bare);
    row ("TCP on 127.0.0.1: one connection, 64 KiB", f.tcp);
    out += pad ("  SHA-256, one core: OpenSSL (the elements')", 50)
        + fmt (f.sha_openssl, "%.1f") + "\n";
    out += pad ("  SHA-256, one core: GLib's GChecksum", 50)
        + fmt (f.sha_glib, "%.1f") + "\n";
    if (!f.browser_why.empty ()) {
      out += "with Chromium: " + f.browser_why + "\n";
    } else {
      snprintf (line, sizeof line, "with Chromium, %.0f MB, 16 KiB chunks",
          f.browser_bytes / 1e6);
      out += std::string (line) + "\n";
      row ("gst->browser: peerjssink -> page (peer.js)", f.gst_browser);
      row ("browser->gst: page (peer.js) -> peerjssrc", f.browser_gst);
      row ("browser->browser: peer.js", f.bb_peerjs);
      row ("browser->browser: bare RTCDataChannel", f.bb_raw);
    }
    if (worst_other > 25)
      out += fmt (worst_other, "WARNING: other work used up to %.0f%% of a "
          "core during a round; the figures may be disturbed.\n");
    out += "ratios\n";
    ratio ("gst->gst / bare webrtcbin pair", f.gst.rate (), f.bare.rate (),
        ">= 0.90", 0.9);
    std::string each;
    for (double x : f.pair_ratio)
      each += (each.empty () ? "" : ", ") + fmt (x, "%.2f");
    out += pad ("    the same, round by round", 50) + each + "\n";
    if (f.browser_why.empty ())
      ratio ("gst->gst / browser->browser peer.js", f.gst.rate (),
          f.bb_peerjs.rate (), ">= 1", 1.0);
    ratio ("gst->gst / TCP", f.gst.rate (), f.tcp.rate ());
    ratio ("bare webrtcbin pair / TCP", f.bare.rate (), f.tcp.rate ());
    if (f.browser_why.empty ()) {
      ratio ("gst->browser / browser->browser peer.js", f.gst_browser.rate (),
          f.bb_peerjs.rate ());
      ratio ("browser->gst / browser->browser peer.js", f.browser_gst.rate (),
          f.bb_peerjs.rate ());
      ratio ("browser->browser peer.js / bare RTCDataChannel",
          f.bb_peerjs.rate (), f.bb_raw.rate ());
    }
    out += "\n";
    out += pad ("chat round trip, peerjssink -> server -> peerjssrc -> back",
        62) + pad ("p50", 10) + pad ("p95", 10) + "events\n";
    double i50 = percentile (f.rtt_idle, 0.5), i95 = percentile (f.rtt_idle,
        0.95);
    double b50 = percentile (f.rtt_busy, 0.5), b95 = percentile (f.rtt_busy,
        0.95);
    out += pad ("  idle", 62) + pad (fmt (i50, "%.1f ms"), 10)
        + pad (fmt (i95, "%.1f ms"), 10) + std::to_string (f.rtt_idle.size ())
        + "\n";
    bool met = b95 < 50;
    missed = missed || !met;
    snprintf (line, sizeof line, "  during gst->gst transfers (%d of %.0f MB)",
        f.busy_transfers, f.bytes / 1e6);
    out += pad (line, 62) + pad (fmt (b50, "%.1f ms"), 10)
        + pad (fmt (b95, "%.1f ms"), 10) + pad (std::to_string (
            f.rtt_busy.size ()), 8) + "(target p95 < 50 ms: "
        + (std::isnan (b95) ? "n/a" : met ? "met" : "MISSED") + ")\n";
    if (f.pings_lost)
      out += "  events without a reply within 5 s: "
          + std::to_string (f.pings_lost) + "\n";
    problems += f.pings_lost;
    for (const FileLeg *l : { &f.tcp, &f.bare, &f.gst, &f.gst_browser,
            &f.browser_gst, &f.bb_peerjs, &f.bb_raw })
      for (const std::string & p : l->problems)
        out += "  FAILED: " + p + "\n";
    for (const std::string & p : f.problems)
      out += "  FAILED: " + p + "\n";
  }
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
    g_string_append (j, "\"first_frame\": {");
    json_num (j, "ours_median_ms", o_ms);
    json_num (j, "bare_median_ms", b_ms);
    g_string_append_printf (j, "\"ours_ms\": [%s], \"bare_ms\": [%s], ",
        join_ms (ff.ours).c_str (), join_ms (ff.bare).c_str ());
    json_num (j, "ours_warmup_ms", ff.ours_warm);
    json_num (j, "bare_warmup_ms", ff.bare_warm);
    g_string_append_printf (j, "\"failures\": %d}, \"cpu\": [", ff.failures);
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
    json_num (j, "cpu_any_format_1", cpu.ours_any_format.cpu);
    g_string_append (j, "\"memory\": [");
    first = true;
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
    g_string_append_printf (j, "], \"g2g\": {\"latency_messages\": \"%s\", ",
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
    g_string_append (j, "}, \"room\": {");
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
    if (ran_files) {
      FileResult & f = files;
      g_string_append (j, ", \"files\": {");
      json_num (j, "bytes", f.bytes);
      json_num (j, "browser_bytes", f.browser_bytes);
      json_num (j, "sha256_openssl_mb_per_s", f.sha_openssl);
      json_num (j, "sha256_glib_mb_per_s", f.sha_glib);
      std::string each;
      for (double x : f.pair_ratio)
        each += (each.empty () ? "" : ", ") + fmt (x, "%.3f");
      g_string_append_printf (j, "\"gst_to_bare_by_round\": [%s], ",
          each.c_str ());
      for (auto leg : { std::make_pair ("tcp", &f.tcp),
              std::make_pair ("bare_webrtcbin", &f.bare),
              std::make_pair ("gst_to_gst", &f.gst),
              std::make_pair ("gst_to_browser", &f.gst_browser),
              std::make_pair ("browser_to_gst", &f.browser_gst),
              std::make_pair ("browser_peerjs", &f.bb_peerjs),
              std::make_pair ("browser_raw", &f.bb_raw) }) {
        auto list = [] (const std::vector<double> & v) {
          std::string o;
          for (double x : v)
            o += (o.empty () ? "" : ", ") + (std::isnan (x)
                ? std::string ("null") : fmt (x, "%.2f"));
          return o;
        };
        g_string_append_printf (j, "\"%s\": {\"mb_per_s\": [%s], "
            "\"cpu_gst_bench\": [%s], \"cpu_children\": [%s], "
            "\"other_load\": [%s], \"udp_drops\": %lld, \"failures\": %zu}, ",
            leg.first, list (leg.second->rates).c_str (),
            list (leg.second->cpu).c_str (),
            list (leg.second->children).c_str (),
            list (leg.second->other).c_str (), leg.second->drops,
            leg.second->problems.size ());
      }
      auto list = [] (const std::vector<double> & v) {
        std::string o;
        for (double x : v)
          o += (o.empty () ? "" : ", ") + fmt (x, "%.2f");
        return o;
      };
      g_string_append_printf (j, "\"rtt_idle_ms\": [%s], \"rtt_busy_ms\": "
          "[%s], ", list (f.rtt_idle).c_str (), list (f.rtt_busy).c_str ());
      json_num (j, "busy_transfers", f.busy_transfers);
      json_num (j, "pings_lost", f.pings_lost, false);
      g_string_append (j, "}");
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
