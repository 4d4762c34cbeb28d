/* gst-bench, part 7 (--only codecs; not in the default list): per video
 * codec, the CPU of one peerjssink process encoding 640x480@30 for 1 and
 * for 8 receivers, and how long until the first receiver's video pad came;
 * then an H.264 camera over RTSP (tests/rtsp/rtsp-camera.c) published as it
 * is (rtph264depay ! h264parse ! peerjssink) next to decoding and encoding
 * it again (avdec_h264 ! peerjssink video-codec=h264), one receiver. */
#include "benchmarks.h"

#include <sys/wait.h>

namespace peerjs::bench {

namespace {

/* CPU of `pid` and the receivers' frame rate over a window. */
void
window (CodecSample & s, pid_t pid, Child * recv, int n)
{
  double hz = sysconf (_SC_CLK_TCK);
  long long c0 = cpu_ticks (pid), m0 = machine_ticks ();
  long long f0 = 0, ft0 = 0, f1 = 0, ft1 = 0;
  last_frames (recv, &f0, &ft0);
  gint64 t0 = now_us ();
  pump_for (opt.window);
  pump_for (1.05);              /* one more FRAMES line */
  double secs = (now_us () - t0) / 1e6;
  long long c1 = cpu_ticks (pid), m1 = machine_ticks ();
  if (c0 < 0 || c1 < 0) {
    s.why = "the publisher exited during the window";
    return;
  }
  last_frames (recv, &f1, &ft1);
  s.cpu = (c1 - c0) / hz / secs * 100;
  s.machine = (m1 - m0) / hz / secs * 100;
  s.fps = frame_rate (f0, ft0, f1, ft1) / n;
  s.ok = true;
}

/* A publisher made of `source` (pipeline words ending in "!") into
 * peerjssink with `props`, and n receivers. */
CodecSample
publish (const std::string & url, const std::string & label,
    const std::vector<std::string> & props,
    const std::vector<std::string> & source, int n)
{
  CodecSample s;
  std::string thread = random_name ("codec");
  std::vector<std::string> argv = { gst_launch, "peerjssink", "name=s",
    "server=" + url, "thread=" + thread,
    "latency=" + std::to_string (opt.latency) };
  argv.insert (argv.end (), props.begin (), props.end ());
  argv.insert (argv.end (), source.begin (), source.end ());
  argv.push_back ("s.video");
  Child *sink = spawn ("publisher-" + label + "-" + std::to_string (n), argv,
      false);
  gint64 t0 = now_us ();
  Child *recv = spawn ("receivers-" + label + "-" + std::to_string (n), {
        self_exe, "--role", "receivers", "--count", std::to_string (n),
        "--server", url, "--thread", thread, "--latency",
        std::to_string (opt.latency) }, true);
  if (sink && recv) {
    gint64 end = t0 + 40 * G_USEC_PER_SEC;
    int connected = 0;
    while (now_us () < end && alive (sink) && alive (recv)) {
      pump (20);
      int c = videos_connected (recv);
      if (c >= 1 && connected == 0)
        s.first_video_s = (now_us () - t0) / 1e6;
      connected = c;
      if (connected >= n)
        break;
    }
    if (connected < n) {
      s.why = std::to_string (connected) + " of " + std::to_string (n)
          + " receivers got video within 40 s";
    } else {
      pump_for (opt.settle);
      window (s, sink->pid, recv, n);
    }
  } else {
    s.why = "could not start the processes";
  }
  stop_child (recv);
  stop_child (sink);
  return s;
}

std::vector<std::string>
raw_source ()
{
  return { "videotestsrc", "is-live=true", "!",
    raw_caps (opt.cpu_width, opt.cpu_height), "!" };
}

bool
has (const char *factory)
{
  GstElementFactory *f = gst_element_factory_find (factory);
  if (f)
    gst_object_unref (f);
  return f != nullptr;
}

}  // namespace

CodecResult
bench_codecs (const std::string & url)
{
  CodecResult r;
  struct
  {
    const char *codec, *encoder, *payloader;
  } codecs[] = {
    { "vp8", "vp8enc", "rtpvp8pay" }, { "vp9", "vp9enc", "rtpvp9pay" },
    { "h264", "x264enc", "rtph264pay" }, { "av1", "av1enc", "rtpav1pay" },
  };
  for (auto & c : codecs) {
    for (int n : { 1, 8 }) {
      std::string key = std::string (c.codec) + "/" + std::to_string (n);
      if (!has (c.encoder) || !has (c.payloader)) {
        r.codecs[key].why = std::string ("no ") + (has (c.encoder)
            ? c.payloader : c.encoder);
        continue;
      }
      note ("codecs: %s, %d receiver(s)", c.codec, n);
      r.codecs[key] = publish (url, c.codec,
          { std::string ("video-codec=") + c.codec }, raw_source (), n);
      if (!r.codecs[key].ok)
        note ("codecs: %s: FAILED: %s", key.c_str (),
            r.codecs[key].why.c_str ());
    }
  }

  /* The camera: H.264 at the same size and rate, over RTSP (TCP). */
  std::string camera_bin = PEERJS_RTSP_CAMERA;
  if (camera_bin.empty () || !g_file_test (camera_bin.c_str (),
          G_FILE_TEST_IS_EXECUTABLE) || !has ("avdec_h264")) {
    r.camera_why = "no rtsp-camera (gst-rtsp-server) or no avdec_h264";
    return r;
  }
  char size[64];
  snprintf (size, sizeof size, "%dx%d@30", opt.cpu_width, opt.cpu_height);
  Child *camera = spawn ("rtsp-camera", { camera_bin, "0", size }, true);
  std::string url_cam;
  gint64 end = now_us () + 10 * G_USEC_PER_SEC;
  while (camera && url_cam.empty () && now_us () < end && alive (camera)) {
    pump (50);
    for (const std::string & l : camera->lines)
      if (g_str_has_prefix (l.c_str (), "rtsp-camera serving "))
        url_cam = l.substr (strlen ("rtsp-camera serving "));
  }
  if (url_cam.empty ()) {
    r.camera_why = "rtsp-camera did not start";
    stop_child (camera);
    return r;
  }
  std::vector<std::string> rtsp = { "rtspsrc", "location=" + url_cam,
    "protocols=tcp", "latency=100", "!", "rtph264depay", "!" };
  note ("codecs: RTSP H.264 passed through");
  std::vector<std::string> pass = rtsp;
  pass.insert (pass.end (), { "h264parse", "!", "queue", "!" });
  r.passthrough = publish (url, "passthrough", {}, pass, 1);
  note ("codecs: RTSP H.264 decoded and encoded again");
  std::vector<std::string> again = rtsp;
  again.insert (again.end (), { "avdec_h264", "!", "queue", "!" });
  r.reencoded = publish (url, "reencoded", { "video-codec=h264" }, again, 1);
  r.camera_cpu_note = "";
  stop_child (camera);
  return r;
}

void
table_codecs (CodecResult & r, std::string & out, int & problems, bool &)
{
  char line[512];
  out += "\n";
  snprintf (line, sizeof line, "video codecs, %dx%d@30, %g s",
      opt.cpu_width, opt.cpu_height, opt.window);
  out += pad (line, 34) + pad ("CPU 1 recv", 12) + pad ("CPU 8 recv", 12)
      + pad ("8 vs 1", 9) + pad ("fps/recv", 10) + "first video pad\n";
  out += pad ("(peerjssink, % of one core)", 34) + pad ("", 12) + pad ("", 12)
      + pad ("", 9) + pad ("1 / 8", 10) + "1 receiver, s\n";
  for (const char *c : { "vp8", "vp9", "h264", "av1" }) {
    CodecSample & one = r.codecs[std::string (c) + "/1"];
    CodecSample & eight = r.codecs[std::string (c) + "/8"];
    if (!one.ok && !eight.ok) {
      out += pad (c, 34) + "not run: " + (one.why.empty () ? eight.why
          : one.why) + "\n";
      if (one.why.rfind ("no ", 0) != 0)
        problems++;
      continue;
    }
    problems += !one.ok + !eight.ok;
    out += pad (c, 34) + pad (one.ok ? fmt (one.cpu, "%.0f %%") : "FAILED", 12)
        + pad (eight.ok ? fmt (eight.cpu, "%.0f %%") : "FAILED", 12)
        + pad (fmt (eight.cpu / one.cpu, "%.2f x"), 9)
        + pad (fmt (one.fps, "%.1f") + " / " + fmt (eight.fps, "%.1f"), 10)
        + fmt (one.first_video_s, "%.2f") + "\n";
  }
  out += "\n";
  out += pad ("RTSP camera, H.264, 1 receiver", 34) + pad ("CPU", 12)
      + pad ("fps", 9) + "first video pad, s\n";
  if (!r.camera_why.empty ()) {
    out += "  not run: " + r.camera_why + "\n";
    return;
  }
  for (auto & row : { std::make_pair ("passed through", &r.passthrough),
          std::make_pair ("decoded, encoded again", &r.reencoded) }) {
    CodecSample & s = *row.second;
    problems += !s.ok;
    out += pad (row.first, 34) + pad (s.ok ? fmt (s.cpu, "%.0f %%")
        : "FAILED: " + s.why, 12) + pad (fmt (s.fps, "%.1f"), 9)
        + fmt (s.first_video_s, "%.2f") + "\n";
  }
}

}  // namespace peerjs::bench
