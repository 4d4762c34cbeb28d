/* gst-bench's shared harness: its options, notes to stderr, figures
 * from /proc, the child processes it starts and reads, its own
 * peerjs-signalling, the pair of pipelines a run moves media through
 * (pair.cpp) and the pieces of its table. Each benchmark sits in a file of
 * its own over it (benchmarks.h), as the suites of tests/check sit over
 * tests/check/harness.h; gst-bench.cpp parses the options and dispatches. */
#pragma once

#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <gst/video/video.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <sys/stat.h>
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

namespace peerjs::bench {

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

extern Options opt;

std::vector<int> parse_int_list (const char *s);
bool wants (const char *what);
void note (const char *fmt, ...) G_GNUC_PRINTF (1, 2);
gint64 now_us ();
std::string random_name (const char *prefix);
double median (std::vector<double> v);
double percentile (std::vector<double> v, double p);

/* ------------------------------------------------------------------ */
/* /proc */

long long cpu_ticks (pid_t pid);
long long machine_ticks ();
long status_field (pid_t pid, const char *key);
void sample_memory (pid_t pid, double * rss, double * threads);
bool loopback_only (std::string * other);

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

extern std::vector<Child *> children;
/* gst-launch-1.0, and this program for the helper roles (set by main). */
extern std::string gst_launch;
extern std::string self_exe;

Child *spawn (const std::string & name, const std::vector<std::string> & argv,
    bool read_stdout, bool write_stdin = false);
int videos_connected (const Child * recv);
bool alive (Child * c);
void pump (int ms);
void pump_for (double seconds);
int count_lines (Child * c, const char *prefix);
bool last_frames (Child * c, long long * frames, long long * when);
double frame_rate (long long f0, long long t0, long long f1, long long t1);
void stop_child (Child * c);
void stop_all ();

/* The file part's big files, then its directories (emptied by then but
 * for a half-received file), removed also when we are stopped: set before
 * they are written, so the handler has nothing left to allocate. */
extern char files_to_remove[5][PATH_MAX];

void on_fatal_signal (int sig);

/* ------------------------------------------------------------------ */
/* The server */

struct Server
{
  Child *child = nullptr;
  std::string url;
};

bool start_server (Server & s);

/* ------------------------------------------------------------------ */
/* Helper roles (roles.cpp): what gst-bench runs as with --role */

int run_receivers ();
int run_member ();

/* ------------------------------------------------------------------ */
/* A pair of pipelines (pair.cpp): a peerjssink and a peerjssrc through the
 * server, or a bare pair of webrtcbins negotiated in this process */

/* Glass-to-glass latency (part 4, glass-to-glass.cpp): a 16-bit frame
 * counter painted into the top of each picture as 16 white or black
 * blocks, and again inverted in a second row of blocks, so a picture that
 * does not read back is caught. The blocks sit on VP8's 16x16 macroblock
 * grid. */
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

/* Element settings of the elements' own VP8 encoder (gst/peerjs/media.cpp),
 * so both sides of each comparison encode alike. */
extern const char *VP8ENC;

GstElement *parse (const std::string & desc);
std::string raw_caps (int w, int h, bool pin_format = true);
bool build_ours (FirstFrame * ff, const std::string & url);
bool build_bare (FirstFrame * ff);
void connect_bare (FirstFrame * ff);
void check_bus (FirstFrame * ff, GstElement * pipeline);
void stop_pair (FirstFrame * ff, bool ours);

/* ------------------------------------------------------------------ */
/* The table */

std::string fmt (double v, const char *spec);
std::string pad (const std::string & s, size_t w);
std::string join_ms (const std::vector<double> & v);
void json_num (GString * j, const char *key, double v, bool comma = true);

}  // namespace peerjs::bench
