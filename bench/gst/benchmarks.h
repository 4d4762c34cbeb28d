/* The benchmarks of gst-bench, one file each over the harness
 * (harness.h): what each measures, its table and its part of --json. The
 * parts run in the order of gst-bench.cpp's main; --only picks them. */
#pragma once

#include "harness.h"

namespace peerjs::bench {

/* ------------------------------------------------------------------ */
/* 1. First decoded frame (first-frame.cpp; --only first-frame) */

struct FirstFrameResult
{
  std::vector<double> ours, bare;
  double ours_warm = NAN, bare_warm = NAN;
  int failures = 0;
  std::vector<std::string> problems;
};

FirstFrameResult bench_first_frame (const std::string & url);
void table_first_frame (FirstFrameResult & ff, std::string & out,
    int & problems, bool & missed);
void json_first_frame (GString * j, FirstFrameResult & ff);

/* ------------------------------------------------------------------ */
/* 2. CPU of the publisher (publisher-cpu.cpp; --only cpu) */

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

struct CpuResult
{
  std::map<int, CpuSample> ours, encoders;
  CpuSample ours_any_format;    /* N=1, caps without format */
};

CpuResult bench_cpu (const std::string & url);
void table_cpu (CpuResult & cpu, std::string & out, int & problems,
    bool & missed);
void json_cpu (GString * j, CpuResult & cpu);

/* ------------------------------------------------------------------ */
/* 3. Memory and threads per remote member (memory.cpp; --only memory) */

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

struct MemResult
{
  std::map<int, MemSample> runs;
};

MemResult bench_memory (const std::string & url);
void table_memory (MemResult & mem, std::string & out, int & problems,
    bool & missed);
void json_memory (GString * j, MemResult & mem);

/* ------------------------------------------------------------------ */
/* 4. Glass-to-glass latency (glass-to-glass.cpp; --only latency) */

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

G2GResult bench_g2g (const std::string & url);
void table_g2g (G2GResult & g2g, std::string & out, int & problems,
    bool & missed);
void json_g2g (GString * j, G2GResult & g2g);

/* ------------------------------------------------------------------ */
/* 5. A room of peerjsbin members (room.cpp; --only room) */

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

RoomResult bench_room (Server & srv);
void table_room (RoomResult & room, std::string & out, int & problems,
    bool & missed);
void json_room (GString * j, RoomResult & room);

/* ------------------------------------------------------------------ */
/* 6. Files (files.cpp; --only files, not in the default list) */

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

FileResult bench_files (const std::string & url);
void table_files (FileResult & files, std::string & out, int & problems,
    bool & missed);
void json_files (GString * j, FileResult & files);

/* ------------------------------------------------------------------ */
/* 7. Video codecs (codecs.cpp; --only codecs, not in the default list) */

struct CodecSample
{
  bool ok = false;
  std::string why;
  double cpu = NAN;             /* the publisher, % of one core */
  double machine = NAN;
  double fps = NAN;             /* frames per second per receiver */
  double first_video_s = NAN;   /* receivers started -> first video pad */
};

struct CodecResult
{
  std::map<std::string, CodecSample> codecs;   /* "vp8/1", "vp8/8", ... */
  CodecSample passthrough, reencoded;
  std::string camera_why;       /* why the camera part did not run */
  std::string camera_cpu_note;
};

CodecResult bench_codecs (const std::string & url);
void table_codecs (CodecResult & r, std::string & out, int & problems,
    bool & missed);

}  // namespace peerjs::bench
