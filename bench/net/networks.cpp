/* net-bench: what a receiver gets over a weak link, for every pair of a
 * publisher and a receiver the project connects, next to Chromium between
 * two pages on the same link and in the same run.
 *
 * Each leg runs in a network lab of its own (tests/check/netlab.h): the
 * server, the publisher and the receiver each in a namespace, joined
 * through a router namespace, the receiver's downlink conditioned (tbf
 * rate, nftables loss of media packets). A leg is a publisher and a
 * receiver:
 *
 *   gst-gst            peerjssink -> peerjssrc (gst-launch-1.0 each)
 *   gst-chromium       peerjssink -> the demo page in Chromium
 *   chromium-gst       the demo page sharing the fake camera -> peerjssrc
 *   chromium-chromium  page -> page: the anchor
 *   gst-gst/off, gst-chromium/off: the same with the publisher's
 *                      congestion-control=off (only where the property is
 *                      built)
 *   gst-room           (not in the default list) a room: one peerjssink and
 *                      four receivers, the first a peerjssrc behind the
 *                      link, the others on clean links (two peerjssrc and
 *                      the demo page); after the window the slow one's
 *                      link turns clean, and the time until it is given
 *                      the full picture size again is printed
 *
 * From the first decoded frame on, for --seconds: decoded frames per
 * second, the time without a new frame for more than 200 ms ("frozen"),
 * the picture sizes the receiver gave out, and the bit rate that crossed
 * the receiver's downlink. A gst receiver's frames are its fakesink's
 * buffers; a page's, the frames Chromium gives it to paint
 * (requestVideoFrameCallback; bench/net/lab-page.mjs). Each link's lines
 * end with each leg's fps as a share of Chromium -> Chromium's and its
 * frozen share in points over it.
 *
 * Needs root (network namespaces, tc, nft); the Chromium legs need node,
 * Debian's chromium and tests/browser/node_modules (tools/setup). Sends
 * nothing outside the namespaces it makes (198.18.0.0/15) and removes them
 * all, also on failure. */
#include "netlab.h"

#include <gst/gst.h>
#include <json-glib/json-glib.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
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

using peerjs::test::LabProcess;
using peerjs::test::LinkCondition;
using peerjs::test::NetLab;

namespace {

constexpr guint16 PORT = 9000;
constexpr const char *FRAME = "video-out: last-message = chain";
constexpr const char *CAPS = "video-out.GstPad:sink: caps = ";

struct Options
{
  std::string links = "clean,1.5M,600k,300k,loss5,loss10";
  std::string legs = "gst-gst,gst-gst/off,gst-chromium,gst-chromium/off,"
      "chromium-gst,chromium-chromium";
  double seconds = 30;
  int width = 640, height = 480, fps = 30;
  std::string pattern = "smpte";
  int first_ms = 30000;
  int latency = -1;             /* the gst receivers' jitterbuffer, ms */
  std::vector<std::string> receiver_props;  /* more of their properties */
  std::vector<std::string> publisher_props; /* the gst publishers' */
  std::string json_path;
  std::string logs;             /* where each leg's output is kept */
  std::string signalling = PEERJS_SIGNALLING;
} opt;

struct Link
{
  std::string name;
  LinkCondition c;
};

bool
parse_link (const std::string & name, Link & link)
{
  link.name = name;
  if (name == "clean")
    return true;
  if (name.rfind ("loss", 0) == 0) {
    link.c.loss_percent = std::stoi (name.substr (4));
    return link.c.loss_percent > 0 && link.c.loss_percent <= 100;
  }
  char *end = nullptr;
  double v = g_ascii_strtod (name.c_str (), &end);
  if (!end || v <= 0)
    return false;
  if (*end == 'M' && !end[1])
    link.c.rate_bps = guint64 (v * 1e6);
  else if (*end == 'k' && !end[1])
    link.c.rate_bps = guint64 (v * 1e3);
  else
    return false;
  return true;
}

struct Leg
{
  std::string name;
  bool gst_publisher = true;
  bool gst_receiver = true;
  bool room = false;            /* gst-room: four receivers, see run_room */
  std::string publisher_props;  /* extra properties of the peerjssink */
};

bool
parse_leg (const std::string & name, Leg & leg)
{
  leg.name = name;
  std::string base = name;
  std::size_t slash = name.find ('/');
  if (slash != std::string::npos) {
    base = name.substr (0, slash);
    if (name.substr (slash + 1) != "off" || base.rfind ("gst-", 0) != 0)
      return false;
    leg.publisher_props = "congestion-control=off";
  }
  std::size_t dash = base.find ('-');
  if (dash == std::string::npos)
    return false;
  std::string from = base.substr (0, dash), to = base.substr (dash + 1);
  if (from == "gst" && to == "room") {
    leg.room = true;
    return true;
  }
  if ((from != "gst" && from != "chromium") || (to != "gst" && to != "chromium"))
    return false;
  leg.gst_publisher = from == "gst";
  leg.gst_receiver = to == "gst";
  return true;
}

struct Result
{
  std::string why;              /* why it did not run, or failed */
  bool picture = false;
  double fps = 0, frozen_s = 0, kbps = 0;
  std::string sizes;            /* "640x480 320x240", as they came */
  std::string extra;            /* what the receiver counted, a few words */
  /* Its freezes: when each began (s after the publisher's first line of
   * output, about its debug log's times; a page's to within the 50 ms it
   * takes to see its first frame) and how long. */
  std::vector<std::pair<double, double>> freezes;
};

std::vector<std::string>
split (const std::string & s, char sep)
{
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size ()) {
    std::size_t end = s.find (sep, at);
    if (end == std::string::npos)
      end = s.size ();
    if (end > at)
      out.push_back (s.substr (at, end - at));
    at = end + 1;
  }
  return out;
}

std::string
tail (const std::string & text, std::size_t n = 1500)
{
  return text.size () > n ? text.substr (text.size () - n) : text;
}

/* The value after `key` in the line of `text` that starts at `at`, up to
 * the next , ; or newline. */
std::string
field_after (const std::string & text, std::size_t at, const std::string & key)
{
  std::size_t end_line = text.find ('\n', at);
  std::size_t k = text.find (key, at);
  if (k == std::string::npos || (end_line != std::string::npos && k > end_line))
    return "";
  k += key.size ();
  std::size_t end = text.find_first_of (",;\n", k);
  std::string v = text.substr (k, end - k);
  if (v.size () >= 2 && v.front () == '"')
    v = v.substr (1, v.size () - 2);
  return v;
}

std::string
gst_session_id (const LabProcess & p)
{
  std::string out = p.output ();
  std::size_t at = out.find ("peerjs-socket-connect");
  return at == std::string::npos ? "" : field_after (out, at, "id=(string)");
}

/* The value of `prefix` + word in a page's output ("net-page: session X"). */
std::string
page_word (const LabProcess & p, const std::string & prefix)
{
  std::string out = p.output ();
  std::size_t at = out.find (prefix);
  if (at == std::string::npos)
    return "";
  at += prefix.size ();
  return out.substr (at, out.find_first_of (" \n", at) - at);
}

std::string
browser_missing ()
{
  g_autofree char *node = g_find_program_in_path ("node");
  if (!node)
    return "node is not installed";
  if (!g_file_test ("/usr/bin/chromium", G_FILE_TEST_IS_EXECUTABLE))
    return "/usr/bin/chromium is not installed";
  g_autofree char *pw = g_build_filename (PEERJS_SOURCE_ROOT, "tests",
      "browser", "node_modules", "playwright-core", nullptr);
  if (!g_file_test (pw, G_FILE_TEST_IS_DIR))
    return "playwright-core is not in tests/browser/node_modules (tools/setup)";
  return "";
}

bool
has_property (const char *factory, const char *property)
{
  GstElement *e = gst_element_factory_make (factory, nullptr);
  if (!e)
    return false;
  bool has = g_object_class_find_property (G_OBJECT_GET_CLASS (e), property);
  gst_object_unref (e);
  return has;
}

/* A leg's temporary directory, removed with whatever is in it when the
 * leg ends, however it ends (its processes are gone by then). */
struct LegDir
{
  LegDir ()
  {
    g_autofree char *d = g_dir_make_tmp ("peerjs-net-leg-XXXXXX", nullptr);
    path = d ? d : "";
  }
  ~LegDir ()
  {
    std::error_code ignored;
    if (!path.empty ())
      std::filesystem::remove_all (path, ignored);
  }
  std::string path;
};

/* node running lab-page.mjs with `args`, its temporary files (and
 * Playwright's, which a page stopped before its end leaves) in `tmp`. */
std::vector<std::string>
page_argv (const LegDir & tmp, const std::vector<std::string> & args)
{
  g_autofree char *script = g_build_filename (PEERJS_SOURCE_ROOT, "bench",
      "net", "lab-page.mjs", nullptr);
  std::vector<std::string> argv = {"env", "TMPDIR=" + tmp.path, "node",
    script};
  argv.insert (argv.end (), args.begin (), args.end ());
  return argv;
}

/* The picture sizes a gst receiver's sink was given, in order ("640x480"). */
std::vector<std::string>
sizes_given (const LabProcess & rx)
{
  std::string out = rx.output ();
  std::vector<std::string> sizes;
  for (std::size_t at = out.find (CAPS); at != std::string::npos;
      at = out.find (CAPS, at + 1)) {
    std::string size = field_after (out, at, "width=(int)") + "x"
        + field_after (out, at, "height=(int)");
    if (sizes.empty () || sizes.back () != size)
      sizes.push_back (size);
  }
  return sizes;
}

/* Frames of a gst receiver in [from, to): fps and frozen time. `zero`:
 * the time the freezes are given from. */
void
gst_figures (const LabProcess & rx, gint64 from, gint64 to, gint64 zero,
    Result & r)
{
  std::size_t frames = 0;
  gint64 previous = from;
  auto gap = [&] (gint64 t) {
    if (t - previous <= 200 * 1000)
      return;
    r.frozen_s += (t - previous) / 1e6;
    r.freezes.emplace_back ((previous - zero) / 1e6, (t - previous) / 1e6);
  };
  for (gint64 t : rx.line_times (FRAME)) {
    if (t < from || t >= to)
      continue;
    frames++;
    gap (t);
    previous = t;
  }
  gap (to);
  r.fps = frames * 1e6 / double (to - from);
  for (auto & s : sizes_given (rx))
    r.sizes += (r.sizes.empty () ? "" : " ") + s;
  /* The receiver's own counts, from its last peerjs-stats. */
  std::string out = rx.output ();
  std::size_t at = out.rfind ("peerjs-stats");
  if (at != std::string::npos)
    r.extra = "lost " + field_after (out, at, "packets-lost=(gint64)")
        + ", nacks " + field_after (out, at, "nacks-sent=(guint64)")
        + ", plis " + field_after (out, at, "plis-sent=(guint64)");
}

void
page_figures (const std::string & json, Result & r)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, json.c_str (), -1, nullptr)) {
    r.why = "the page's result is not JSON: " + json;
    return;
  }
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  r.fps = json_object_get_double_member (o, "frames") / opt.seconds;
  r.frozen_s = json_object_get_double_member (o, "frozen_s");
  /* Its freezes, from its first frame on (shifted by the caller). */
  JsonArray *freezes = json_object_has_member (o, "freezes")
      ? json_object_get_array_member (o, "freezes") : nullptr;
  for (guint i = 0; freezes && i < json_array_get_length (freezes); i++) {
    JsonArray *f = json_array_get_array_element (freezes, i);
    r.freezes.emplace_back (json_array_get_double_element (f, 0),
        json_array_get_double_element (f, 1));
  }
  JsonObject *sizes = json_object_get_object_member (o, "sizes");
  g_autoptr (GList) names = json_object_get_members (sizes);
  for (GList * l = names; l; l = l->next)
    r.sizes += (r.sizes.empty () ? "" : " ") + std::string ((char *) l->data);
  JsonObject *c = json_object_get_object_member (o, "counted");
  r.extra = "lost " + std::to_string (json_object_get_int_member (c,
          "packetsLost")) + ", nacks " + std::to_string (
      json_object_get_int_member (c, "nackCount")) + ", plis "
      + std::to_string (json_object_get_int_member (c, "pliCount"));
  /* Frames Chromium decoded, and of them the ones its compositor took
   * (the rest came within one refresh of the next), with the time they
   * spent in its jitter buffer: a short one shows late frames late. */
  gint64 decoded = json_object_get_int_member (c, "framesDecoded");
  gint64 emitted = json_object_get_int_member (c, "jitterBufferEmittedCount");
  char held[32] = "";
  if (emitted > 0)
    g_snprintf (held, sizeof held, ", held %.0f ms", 1000
        * json_object_get_double_member (c, "jitterBufferDelay") / emitted);
  r.extra += ", decoded " + std::to_string (decoded) + ", shown "
      + std::to_string (json_object_get_int_member_with_default (o,
              "presented", 0)) + held;
}

/* A lab's server, and the addresses members use to reach it. */
struct Server
{
  std::shared_ptr<LabProcess> process;
  std::string ws;               /* server=ws://.../peerjs */
  std::string page_url;         /* the demo page */
};

/* Starts peerjs-signalling in `host`, reachable from `from`; "" or why
 * not. */
std::string
start_server (NetLab & lab, int host, int from, Server & server)
{
  std::string address = lab.address (host);
  server.process = lab.spawn (host, {opt.signalling, "--port",
          std::to_string (PORT), "--host", address});
  if (!server.process || !lab.reachable (from, address, PORT, 10000))
    return "the server did not come up: "
        + (server.process ? tail (server.process->output ()) : lab.error ());
  server.ws = "server=ws://" + address + ":" + std::to_string (PORT)
      + "/peerjs";
  server.page_url = "http://" + address + ":" + std::to_string (PORT) + "/";
  return "";
}

/* The publisher of a leg in `host`; `member` is set to its session id once
 * it is in the room. */
std::shared_ptr<LabProcess>
spawn_publisher (NetLab & lab, int host, const Server & server,
    const LegDir & tmp, const Leg & leg, std::string & member)
{
  std::shared_ptr<LabProcess> publisher;
  if (leg.gst_publisher) {
    std::vector<std::string> argv = {"gst-launch-1.0", "-e", "-m",
      "peerjssink", server.ws, "thread=net",
      "ice-addresses=" + lab.address (host), "name=s", "stats-interval=1000"};
    for (auto & p : split (leg.publisher_props, ' '))
      argv.push_back (p);
    argv.insert (argv.end (), opt.publisher_props.begin (),
        opt.publisher_props.end ());
    for (const char *a : {"videotestsrc", "is-live=true"})
      argv.push_back (a);
    argv.push_back ("pattern=" + opt.pattern);
    if (opt.pattern == "smpte" || opt.pattern == "ball")
      argv.push_back ("horizontal-speed=4");
    argv.push_back ("!");
    argv.push_back ("video/x-raw,width=" + std::to_string (opt.width)
        + ",height=" + std::to_string (opt.height) + ",framerate="
        + std::to_string (opt.fps) + "/1");
    for (const char *a : {"!", "s.video", "audiotestsrc", "is-live=true",
            "wave=ticks", "!", "s.audio"})
      argv.push_back (a);
    publisher = lab.spawn (host, argv);
    if (publisher && publisher->wait_for ("peerjs-socket-connect", 10000))
      member = gst_session_id (*publisher);
  } else {
    publisher = lab.spawn (host, page_argv (tmp, {"publish", server.page_url,
                "net", std::to_string (opt.width), std::to_string (opt.height),
                std::to_string (opt.fps)}));
    if (publisher && publisher->wait_for ("net-page: camera", 40000))
      member = page_word (*publisher, "net-page: session ");
  }
  return publisher;
}

/* The server in `server_host` (reachable from `from`) and the publisher in
 * `pub` in the room: "" or why not. */
std::string
start_publishing (NetLab & lab, int server_host, int pub, int from,
    const LegDir & tmp, const Leg & leg, Server & server,
    std::shared_ptr<LabProcess> & publisher, std::string & member)
{
  std::string why = start_server (lab, server_host, from, server);
  if (!why.empty ())
    return why;
  publisher = spawn_publisher (lab, pub, server, tmp, leg, member);
  if (member.empty ())
    return "the publisher did not start: "
        + (publisher ? tail (publisher->output ()) : lab.error ());
  return "";
}

/* A receiving pipeline in `host`: a peerjssrc whose video goes to a
 * fakesink printing each frame. */
std::shared_ptr<LabProcess>
spawn_gst_receiver (NetLab & lab, int host, const Server & server)
{
  std::vector<std::string> argv = {"gst-launch-1.0", "-v", "-m",
    "peerjssrc", server.ws, "thread=net",
    "ice-addresses=" + lab.address (host), "name=r", "stats-interval=1000"};
  if (opt.latency >= 0)
    argv.push_back ("latency=" + std::to_string (opt.latency));
  argv.insert (argv.end (), opt.receiver_props.begin (),
      opt.receiver_props.end ());
  for (std::string a : {"r.", "!", "video/x-raw", "!", "fakesink",
          "name=video-out", "silent=false", "sync=false", "async=false"})
    argv.push_back (a);
  return lab.spawn (host, argv);
}

/* The demo page in `host`, watching `member`'s video for opt.seconds
 * from its first frame. */
std::shared_ptr<LabProcess>
spawn_page_receiver (NetLab & lab, int host, const Server & server,
    const LegDir & tmp, const std::string & member)
{
  return lab.spawn (host, page_argv (tmp, {"watch", server.page_url, "net",
              member, std::to_string (int (std::ceil (opt.seconds))),
              std::to_string (opt.first_ms)}));
}

/* A receiver measured from its first frame on, by its kind. */
struct Receiver
{
  std::string name;
  bool gst = true;
  int host = 0;
  std::shared_ptr<LabProcess> p;
  gint64 first = 0;             /* its first frame; 0: none yet */
  gint64 counted_from = 0;      /* when `bytes` was read */
  guint64 bytes = 0;            /* its downlink's count then */
  bool ended = false;           /* its Result is in */
  Result r;
};

/* Before its first frame: sets rx.first when it comes, or ends rx (with
 * r.why) when it will not. A page takes a while to start (`deadline` is
 * later for it) and says itself when no frame came in opt.first_ms. */
void
wait_first (NetLab & lab, Receiver & rx, gint64 deadline, gint64 now)
{
  std::string no_picture = "no picture in "
      + std::to_string (opt.first_ms / 1000) + " s";
  if (!rx.p) {
    rx.r.why = "lab: " + lab.error ();
  } else if (rx.gst) {
    if (rx.p->count (FRAME))
      rx.first = rx.p->line_times (FRAME).front ();
    else if (!rx.p->running () || now > deadline)
      rx.r.why = no_picture;
  } else {
    if (rx.p->count ("net-page: first-frame"))
      rx.first = now;
    else if (rx.p->count ("net-page: no-picture"))
      rx.r.why = no_picture;
    else if (rx.p->count ("net-page: failed") || !rx.p->running ()
        || now > deadline)
      rx.r.why = "the page failed: " + tail (rx.p->output ());
  }
  if (rx.first) {
    rx.counted_from = now;
    rx.bytes = lab.downlink_bytes (rx.host);
  } else if (!rx.r.why.empty ()) {
    rx.r.frozen_s = opt.seconds;
    rx.ended = true;
  }
}

/* After its first frame: once opt.seconds have gone by from it (a page
 * prints its result then), fills rx.r and ends rx. `zero`: the time a gst
 * receiver's freezes are given from. */
void
wait_window (NetLab & lab, Receiver & rx, gint64 zero, gint64 now)
{
  if (rx.gst) {
    gint64 to = rx.first + gint64 (opt.seconds * G_USEC_PER_SEC);
    if (now < to)
      return;
    gst_figures (*rx.p, rx.first, to, zero, rx.r);
  } else if (rx.p->count ("net-page: result ")) {
    std::string out = rx.p->output ();
    std::size_t at = out.find ("net-page: result ")
        + strlen ("net-page: result ");
    page_figures (out.substr (at, out.find ('\n', at) - at), rx.r);
    for (auto & f : rx.r.freezes)
      f.first += (rx.first - zero) / 1e6;
  } else if (now < rx.first + gint64 ((opt.seconds + 20) * G_USEC_PER_SEC)) {
    return;
  } else {
    rx.r.why = "the page gave no result: " + tail (rx.p->output ());
  }
  rx.r.kbps = (lab.downlink_bytes (rx.host) - rx.bytes) * 8.0 / 1000
      / ((now - rx.counted_from) / 1e6);
  rx.r.picture = rx.r.why.empty ();
  rx.ended = true;
}

/* Measures every receiver at once, each from its own first frame, until
 * all have ended. */
void
measure (NetLab & lab, const std::vector<Receiver *> & receivers, gint64 zero)
{
  gint64 started = g_get_monotonic_time ();
  for (;;) {
    gint64 now = g_get_monotonic_time ();
    bool all_ended = true;
    for (Receiver * rx : receivers) {
      if (!rx->ended && !rx->first)
        wait_first (lab, *rx, started + (opt.first_ms
                + (rx->gst ? 0 : 40000)) * 1000LL, now);
      if (!rx->ended && rx->first)
        wait_window (lab, *rx, zero, now);
      all_ended = all_ended && rx->ended;
    }
    if (all_ended)
      return;
    g_usleep (50 * 1000);
  }
}

/* With --logs: a leg's receiver output, its freezes, and its publisher's
 * output (null: kept with another receiver's). */
void
keep_logs (const std::string & link, const std::string & leg,
    const LabProcess * publisher, const LabProcess & receiver,
    const Result & r)
{
  if (opt.logs.empty ())
    return;
  std::string name = leg;
  std::replace (name.begin (), name.end (), '/', '_');
  std::string base = opt.logs + "/" + link + "-" + name;
  /* A link named again in --links: its legs' logs numbered. */
  for (int n = 2; g_file_test ((base + "-receiver.log").c_str (),
          G_FILE_TEST_EXISTS); n++)
    base = opt.logs + "/" + link + "-" + name + "-" + std::to_string (n);
  if (publisher)
    g_file_set_contents ((base + "-publisher.log").c_str (),
        publisher->output ().c_str (), -1, nullptr);
  g_file_set_contents ((base + "-receiver.log").c_str (),
      receiver.output ().c_str (), -1, nullptr);
  if (!r.freezes.empty ()) {
    std::string text;
    for (auto & f : r.freezes)
      text += "frozen at " + std::to_string (f.first) + " s for "
          + std::to_string (f.second) + " s\n";
    g_file_set_contents ((base + "-freezes.txt").c_str (), text.c_str (),
        -1, nullptr);
  }
}

Result
run_leg (const Link & link, const Leg & leg)
{
  Result r;
  /* Before the lab: removed after it, once its processes are gone. */
  LegDir tmp;
  NetLab lab;
  int server_host = lab.add_host ("server");
  int pub = lab.add_host ("pub");
  int rx_host = lab.add_host ("rx");
  if (!rx_host || !lab.set_downlink (rx_host, link.c)) {
    r.why = "lab: " + lab.error ();
    return r;
  }
  Server server;
  std::shared_ptr<LabProcess> publisher;
  std::string member;
  r.why = start_publishing (lab, server_host, pub, rx_host, tmp, leg, server,
      publisher, member);
  if (!r.why.empty ())
    return r;
  Receiver rx;
  rx.gst = leg.gst_receiver;
  rx.host = rx_host;
  rx.p = rx.gst ? spawn_gst_receiver (lab, rx_host, server)
      : spawn_page_receiver (lab, rx_host, server, tmp, member);
  std::vector<gint64> lines = publisher->line_times ("");
  measure (lab, {&rx}, lines.empty () ? g_get_monotonic_time ()
      : lines.front ());
  if (!rx.r.picture || !rx.p)
    return rx.r;
  rx.p->stop ();
  publisher->stop ();
  keep_logs (link.name, leg.name, publisher.get (), *rx.p, rx.r);
  return rx.r;
}

/* gst-room: a room of a publisher and four receivers. The first receiver,
 * a pipeline, is behind `link`; the three others are on clean links: two
 * pipelines and the demo page (a third pipeline where Chromium is not
 * there). Each is measured for opt.seconds from its own first frame. Then
 * the first one's link turns clean, and the time is taken until it gives
 * out the publisher's full picture size again. */
struct RoomResult
{
  std::string why;              /* why the room could not be made */
  std::vector<std::pair<std::string, Result>> members;
  double back_s = -1;           /* -1: not back within 30 s */
};

RoomResult
run_room (const Link & link, const Leg & leg, bool browser)
{
  RoomResult room;
  LegDir tmp;
  NetLab lab;
  int server_host = lab.add_host ("server");
  int pub = lab.add_host ("pub");
  std::vector<Receiver> rx (4);
  const char *names[] = {"slow", "clean-gst-1", "clean-gst-2",
    browser ? "clean-chromium" : "clean-gst-3"};
  for (std::size_t i = 0; i < rx.size (); i++) {
    rx[i].name = names[i];
    rx[i].gst = i < 3 || !browser;
    rx[i].host = lab.add_host ("rx" + std::to_string (i + 1));
  }
  if (!rx.back ().host || !lab.set_downlink (rx[0].host, link.c)) {
    room.why = "lab: " + lab.error ();
    return room;
  }
  Server server;
  std::shared_ptr<LabProcess> publisher;
  std::string member;
  room.why = start_publishing (lab, server_host, pub, rx[0].host, tmp, leg,
      server, publisher, member);
  if (!room.why.empty ())
    return room;
  /* The page first, the pipelines once it is in the room: Chromium's
   * start takes both of this machine's cores for a few seconds, and
   * receivers starved of CPU then time packets late; the publisher took
   * that for a queue growing on their links, and moved two members on
   * clean links to 320x240 for 4 s. */
  std::vector<Receiver *> all;
  for (auto & r : rx) {
    if (!r.gst) {
      r.p = spawn_page_receiver (lab, r.host, server, tmp, member);
      if (r.p)
        r.p->wait_for ("net-page: session", 40000);
    }
  }
  for (auto & r : rx) {
    if (r.gst)
      r.p = spawn_gst_receiver (lab, r.host, server);
    all.push_back (&r);
  }
  std::vector<gint64> lines = publisher->line_times ("");
  measure (lab, all, lines.empty () ? g_get_monotonic_time ()
      : lines.front ());

  /* The way back to the full size, once the link is clean. */
  std::string full = std::to_string (opt.width) + "x"
      + std::to_string (opt.height);
  if (rx[0].r.picture && lab.set_downlink (rx[0].host, LinkCondition ())) {
    gint64 clean = g_get_monotonic_time ();
    while (g_get_monotonic_time () - clean < 30 * G_USEC_PER_SEC) {
      std::vector<std::string> sizes = sizes_given (*rx[0].p);
      if (!sizes.empty () && sizes.back () == full) {
        room.back_s = (g_get_monotonic_time () - clean) / 1e6;
        break;
      }
      g_usleep (100 * 1000);
    }
  }
  for (auto & r : rx) {
    if (r.p)
      r.p->stop ();
  }
  publisher->stop ();
  for (auto & r : rx) {
    if (r.p)
      keep_logs (link.name, leg.name + "-" + r.name,
          &r == &rx[0] ? publisher.get () : nullptr, *r.p, r.r);
    room.members.emplace_back (r.name, r.r);
  }
  return room;
}

std::string
display (const std::string & leg)
{
  std::string s = leg;
  std::size_t dash = s.find ('-');
  if (dash != std::string::npos)
    s.replace (dash, 1, "->");
  return s;
}

/* A leg's line; 1 if it failed to run (what a link does to it is a
 * figure, a leg that could not run is not). */
int
report (const std::string & link, const std::string & leg, const Result & r)
{
  if (r.picture)
    printf ("%-7s %-20s %5.1f fps %5.1f s frozen  %-16s %6.0f kbit/s  (%s)\n",
        link.c_str (), leg.c_str (), r.fps, r.frozen_s, r.sizes.c_str (),
        r.kbps, r.extra.c_str ());
  else
    printf ("%-7s %-20s %s\n", link.c_str (), leg.c_str (), r.why.c_str ());
  fflush (stdout);
  return !r.picture && r.why.rfind ("no picture", 0) != 0
      && r.why.rfind ("not built", 0) != 0 && r.why.rfind ("skipped", 0) != 0;
}

void
append_json (GString * j, const Result & r)
{
  g_autofree char *why = g_strescape (r.why.c_str (), nullptr);
  g_string_append_printf (j, "{\"picture\": %s, \"fps\": %.2f, "
      "\"frozen_s\": %.2f, \"kbps\": %.0f, \"sizes\": \"%s\", "
      "\"why\": \"%s\"}", r.picture ? "true" : "false", r.fps, r.frozen_s,
      r.kbps, r.sizes.c_str (), why);
}

}  // namespace

int
main (int argc, char **argv)
{
  gchar *links = nullptr, *legs = nullptr, *pattern = nullptr,
      *json = nullptr, *size = nullptr, *signalling = nullptr,
      *logs = nullptr, *receiver_props = nullptr, *publisher_props = nullptr;
  GOptionEntry entries[] = {
    { "links", 0, 0, G_OPTION_ARG_STRING, &links,
        "comma list of the receiver's links: clean, a rate (1.5M, 600k), "
        "lossN (N % of media packets dropped) "
        "(clean,1.5M,600k,300k,loss5,loss10)",
        "LIST" },
    { "legs", 0, 0, G_OPTION_ARG_STRING, &legs,
        "comma list of gst-gst, gst-chromium, chromium-gst, chromium-chromium, "
        "gst-gst/off, gst-chromium/off (all of these); gst-room, "
        "gst-room/off: a publisher and four receivers, one of them behind "
        "the link", "LIST" },
    { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt.seconds,
        "measured from the first frame (30)", "S" },
    { "size", 0, 0, G_OPTION_ARG_STRING, &size,
        "picture size and rate the publishers send (640x480@30)", "WxH@FPS" },
    { "pattern", 0, 0, G_OPTION_ARG_STRING, &pattern,
        "videotestsrc pattern of the gst publisher, moving (smpte)", "NAME" },
    { "latency", 0, 0, G_OPTION_ARG_INT, &opt.latency,
        "the gst receivers' latency property, ms (the element's default)",
        "MS" },
    { "receiver-props", 0, 0, G_OPTION_ARG_STRING, &receiver_props,
        "comma list of more properties of the gst receivers "
        "(retransmission-wait=0,do-fec=false)", "LIST" },
    { "publisher-props", 0, 0, G_OPTION_ARG_STRING, &publisher_props,
        "comma list of more properties of the gst publishers "
        "(start-bitrate=1000000)", "LIST" },
    { "signalling", 0, 0, G_OPTION_ARG_FILENAME, &signalling,
        "peerjs-signalling binary (default: the build tree's)", "BIN" },
    { "json", 0, 0, G_OPTION_ARG_FILENAME, &json,
        "write every figure to FILE", "FILE" },
    { "logs", 0, 0, G_OPTION_ARG_FILENAME, &logs,
        "keep each leg's publisher and receiver output in DIR "
        "(LINK-LEG-publisher.log, -receiver.log)", "DIR" },
    { nullptr }
  };
  g_autoptr (GOptionContext) context =
      g_option_context_new ("- media over weak links, per leg");
  g_option_context_add_main_entries (context, entries, nullptr);
  g_autoptr (GError) error = nullptr;
  if (!g_option_context_parse (context, &argc, &argv, &error)) {
    fprintf (stderr, "net-bench: %s\n", error->message);
    return 2;
  }
  if (links)
    opt.links = links;
  if (legs)
    opt.legs = legs;
  if (pattern)
    opt.pattern = pattern;
  if (json)
    opt.json_path = json;
  if (signalling)
    opt.signalling = signalling;
  if (logs) {
    opt.logs = logs;
    if (g_mkdir_with_parents (logs, 0755) != 0) {
      fprintf (stderr, "net-bench: cannot make %s: %s\n", logs,
          g_strerror (errno));
      return 2;
    }
  }
  if (receiver_props)
    opt.receiver_props = split (receiver_props, ',');
  if (publisher_props)
    opt.publisher_props = split (publisher_props, ',');
  if (size && sscanf (size, "%dx%d@%d", &opt.width, &opt.height, &opt.fps) != 3) {
    fprintf (stderr, "net-bench: --size wants WxH@FPS, e.g. 640x480@30\n");
    return 2;
  }
  std::vector<Link> link_list;
  for (auto & name : split (opt.links, ',')) {
    Link l;
    if (!parse_link (name, l)) {
      fprintf (stderr, "net-bench: unknown link '%s'\n", name.c_str ());
      return 2;
    }
    link_list.push_back (l);
  }
  std::vector<Leg> leg_list;
  for (auto & name : split (opt.legs, ',')) {
    Leg l;
    if (!parse_leg (name, l)) {
      fprintf (stderr, "net-bench: unknown leg '%s'\n", name.c_str ());
      return 2;
    }
    leg_list.push_back (l);
  }

  std::string why = NetLab::prerequisite ();
  if (!why.empty ()) {
    fprintf (stderr, "net-bench: the network lab cannot be made here: %s\n",
        why.c_str ());
    return 77;
  }
  if (!g_getenv ("GST_PLUGIN_PATH") && *PEERJS_PLUGIN_DIR)
    g_setenv ("GST_PLUGIN_PATH", PEERJS_PLUGIN_DIR, TRUE);
  gst_init (nullptr, nullptr);
  if (!has_property ("peerjssink", "server")) {
    fprintf (stderr, "net-bench: no peerjssink (GST_PLUGIN_PATH=%s)\n",
        g_getenv ("GST_PLUGIN_PATH"));
    return 1;
  }
  bool cc = has_property ("peerjssink", "congestion-control");
  std::string no_browser = browser_missing ();

  printf ("net-bench: %dx%d@%d, %g s from the first frame per leg, the "
      "receiver's downlink conditioned; fps, frozen (no new frame for "
      "> 200 ms), sizes given out, kbit/s over the downlink\n", opt.width,
      opt.height, opt.fps, opt.seconds);
  fflush (stdout);
  g_autoptr (GString) j = g_string_new ("{\"links\": {");
  int failures = 0;
  for (std::size_t li = 0; li < link_list.size (); li++) {
    const Link & link = link_list[li];
    std::map<std::string, Result> results;
    g_string_append_printf (j, "%s\"%s\": {", li ? ", " : "",
        link.name.c_str ());
    for (std::size_t gi = 0; gi < leg_list.size (); gi++) {
      const Leg & leg = leg_list[gi];
      g_string_append_printf (j, "%s\"%s\": ", gi ? ", " : "",
          leg.name.c_str ());
      std::string skip;
      if (!leg.publisher_props.empty () && !cc)
        skip = "not built: peerjssink has no congestion-control";
      else if ((!leg.gst_publisher || !leg.gst_receiver) && !no_browser.empty ())
        skip = "skipped: " + no_browser;
      if (leg.room && skip.empty ()) {
        RoomResult room = run_room (link, leg, no_browser.empty ());
        if (!room.why.empty ()) {
          failures++;
          printf ("%-7s %-20s %s\n", link.name.c_str (),
              display (leg.name).c_str (), room.why.c_str ());
        }
        g_string_append (j, "{");
        for (std::size_t mi = 0; mi < room.members.size (); mi++) {
          auto & [name, r] = room.members[mi];
          failures += report (link.name, display (leg.name) + " " + name, r);
          g_string_append_printf (j, "%s\"%s\": ", mi ? ", " : "",
              name.c_str ());
          append_json (j, r);
        }
        if (room.why.empty ()) {
          if (room.back_s >= 0)
            printf ("%-7s %-20s the slow member back on %dx%d %.1f s after "
                "its link turned clean\n", link.name.c_str (),
                display (leg.name).c_str (), opt.width, opt.height,
                room.back_s);
          else
            printf ("%-7s %-20s the slow member not back on %dx%d within "
                "30 s after its link turned clean\n", link.name.c_str (),
                display (leg.name).c_str (), opt.width, opt.height);
        }
        g_string_append_printf (j, "%s\"back_s\": %.1f}",
            room.members.empty () ? "" : ", ", room.back_s);
        fflush (stdout);
        continue;
      }
      Result r;
      if (!skip.empty ())
        r.why = skip;
      else
        r = run_leg (link, leg);
      failures += report (link.name, display (leg.name), r);
      results[leg.name] = r;
      append_json (j, r);
    }
    g_string_append (j, "}");
    /* Next to the anchor. */
    auto anchor = results.find ("chromium-chromium");
    if (anchor != results.end () && anchor->second.picture) {
      const Result & a = anchor->second;
      std::string line;
      for (auto & [name, r] : results) {
        if (name == "chromium-chromium")
          continue;
        char buf[160];
        snprintf (buf, sizeof buf, "%s%s %.2fx fps, %+.1f pts frozen",
            line.empty () ? "" : "; ", display (name).c_str (),
            a.fps > 0 ? r.fps / a.fps : 0,
            100.0 * (r.frozen_s - a.frozen_s) / opt.seconds);
        line += buf;
      }
      printf ("%-7s next to chromium->chromium: %s\n", link.name.c_str (),
          line.c_str ());
    }
  }
  g_string_append (j, "}}\n");
  if (!opt.json_path.empty ())
    g_file_set_contents (opt.json_path.c_str (), j->str, -1, nullptr);
  return failures ? 1 : 0;
}
