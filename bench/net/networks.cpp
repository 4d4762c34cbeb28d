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
  if ((from != "gst" && from != "chromium") || (to != "gst" && to != "chromium"))
    return false;
  leg.gst_publisher = from == "gst";
  leg.gst_receiver = to == "gst";
  return true;
}

struct Result
{
  bool ran = false;
  std::string why;              /* why it did not run, or failed */
  bool picture = false;
  double fps = 0, frozen_s = 0, kbps = 0;
  std::string sizes;            /* "640x480 320x240", as they came */
  std::string extra;            /* what the receiver counted, a few words */
  /* A gst receiver's freezes: when each began (s after the publisher's
   * first line of output, as its debug log's times) and how long. */
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
  /* The sizes its sink was given, in order. */
  std::string out = rx.output ();
  std::vector<std::string> sizes;
  for (std::size_t at = out.find (CAPS); at != std::string::npos;
      at = out.find (CAPS, at + 1)) {
    std::string size = field_after (out, at, "width=(int)") + "x"
        + field_after (out, at, "height=(int)");
    if (sizes.empty () || sizes.back () != size)
      sizes.push_back (size);
  }
  for (auto & s : sizes)
    r.sizes += (r.sizes.empty () ? "" : " ") + s;
  /* The receiver's own counts, from its last peerjs-stats. */
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

Result
run_leg (const Link & link, const Leg & leg)
{
  Result r;
  /* Before the lab: removed after it, once its processes are gone. */
  LegDir tmp;
  NetLab lab;
  int server = lab.add_host ("server");
  int pub = lab.add_host ("pub");
  int rx = lab.add_host ("rx");
  if (!rx || !lab.set_downlink (rx, link.c)) {
    r.why = "lab: " + lab.error ();
    return r;
  }
  std::string address = lab.address (server);
  auto signalling = lab.spawn (server, {opt.signalling, "--port",
          std::to_string (PORT), "--host", address});
  if (!signalling || !lab.reachable (rx, address, PORT, 10000)) {
    r.why = "the server did not come up: "
        + (signalling ? tail (signalling->output ()) : lab.error ());
    return r;
  }
  std::string ws = "server=ws://" + address + ":" + std::to_string (PORT)
      + "/peerjs";
  std::string page_url = "http://" + address + ":" + std::to_string (PORT)
      + "/";
  std::string caps = "video/x-raw,width=" + std::to_string (opt.width)
      + ",height=" + std::to_string (opt.height) + ",framerate="
      + std::to_string (opt.fps) + "/1";

  /* The publisher. */
  std::shared_ptr<LabProcess> publisher;
  std::string member;
  if (leg.gst_publisher) {
    std::vector<std::string> argv = {"gst-launch-1.0", "-e", "-m",
      "peerjssink", ws, "thread=net", "ice-addresses=" + lab.address (pub),
      "name=s", "stats-interval=1000"};
    for (auto & p : split (leg.publisher_props, ' '))
      argv.push_back (p);
    argv.insert (argv.end (), opt.publisher_props.begin (),
        opt.publisher_props.end ());
    for (const char *a : {"videotestsrc", "is-live=true"})
      argv.push_back (a);
    argv.push_back ("pattern=" + opt.pattern);
    if (opt.pattern == "smpte" || opt.pattern == "ball")
      argv.push_back ("horizontal-speed=4");
    for (const char *a : {"!"})
      argv.push_back (a);
    argv.push_back (caps);
    for (const char *a : {"!", "s.video", "audiotestsrc", "is-live=true",
            "wave=ticks", "!", "s.audio"})
      argv.push_back (a);
    publisher = lab.spawn (pub, argv);
    if (publisher && publisher->wait_for ("peerjs-socket-connect", 10000))
      member = gst_session_id (*publisher);
  } else {
    publisher = lab.spawn (pub, page_argv (tmp, {"publish", page_url, "net",
                std::to_string (opt.width), std::to_string (opt.height),
                std::to_string (opt.fps)}));
    if (publisher && publisher->wait_for ("net-page: camera", 40000))
      member = page_word (*publisher, "net-page: session ");
  }
  if (member.empty ()) {
    r.why = "the publisher did not start: "
        + (publisher ? tail (publisher->output ()) : lab.error ());
    return r;
  }

  /* The receiver, measured from its first frame on. */
  std::shared_ptr<LabProcess> receiver;
  r.ran = true;
  if (leg.gst_receiver) {
    std::vector<std::string> argv = {"gst-launch-1.0", "-v", "-m",
      "peerjssrc", ws, "thread=net", "ice-addresses=" + lab.address (rx),
      "name=r", "stats-interval=1000"};
    if (opt.latency >= 0)
      argv.push_back ("latency=" + std::to_string (opt.latency));
    argv.insert (argv.end (), opt.receiver_props.begin (),
        opt.receiver_props.end ());
    for (std::string a : {"r.", "!", "video/x-raw", "!", "fakesink",
            "name=video-out", "silent=false", "sync=false", "async=false"})
      argv.push_back (a);
    receiver = lab.spawn (rx, argv);
    if (!receiver || !receiver->wait_for (FRAME, opt.first_ms)) {
      r.why = "no picture in " + std::to_string (opt.first_ms / 1000) + " s";
      r.frozen_s = opt.seconds;
      return r;
    }
    gint64 from = receiver->line_times (FRAME).front ();
    guint64 bytes = lab.downlink_bytes (rx);
    gint64 counted_from = g_get_monotonic_time ();
    gint64 to = from + gint64 (opt.seconds * G_USEC_PER_SEC);
    while (g_get_monotonic_time () < to)
      g_usleep (100 * 1000);
    bytes = lab.downlink_bytes (rx) - bytes;
    r.kbps = bytes * 8.0 / 1000 / ((g_get_monotonic_time () - counted_from)
        / 1e6);
    std::vector<gint64> started = publisher->line_times ("");
    gst_figures (*receiver, from, to, started.empty () ? from
        : started.front (), r);
  } else {
    receiver = lab.spawn (rx, page_argv (tmp, {"watch", page_url, "net",
                member, std::to_string (int (std::ceil (opt.seconds))),
                std::to_string (opt.first_ms)}));
    gint64 give_up = g_get_monotonic_time () + (opt.first_ms + 40000) * 1000LL;
    while (receiver && receiver->running ()
        && g_get_monotonic_time () < give_up
        && !receiver->count ("net-page: first-frame")
        && !receiver->count ("net-page: no-picture")
        && !receiver->count ("net-page: failed"))
      g_usleep (50 * 1000);
    if (!receiver || receiver->count ("net-page: first-frame") == 0) {
      if (!receiver || receiver->count ("net-page: no-picture") == 0)
        r.why = "the page failed: " + (receiver ? tail (receiver->output ())
            : lab.error ());
      else
        r.why = "no picture in " + std::to_string (opt.first_ms / 1000) + " s";
      r.frozen_s = opt.seconds;
      return r;
    }
    guint64 bytes = lab.downlink_bytes (rx);
    gint64 from = g_get_monotonic_time ();
    if (!receiver->wait_for ("net-page: result ",
            int (opt.seconds * 1000) + 20000)) {
      r.why = "the page gave no result: " + tail (receiver->output ());
      return r;
    }
    bytes = lab.downlink_bytes (rx) - bytes;
    r.kbps = bytes * 8.0 / 1000 / ((g_get_monotonic_time () - from) / 1e6);
    std::string out = receiver->output ();
    std::size_t at = out.find ("net-page: result ") + strlen ("net-page: result ");
    page_figures (out.substr (at, out.find ('\n', at) - at), r);
  }
  r.picture = true;
  receiver->stop ();
  publisher->stop ();
  if (!opt.logs.empty ()) {
    std::string name = leg.name;
    std::replace (name.begin (), name.end (), '/', '_');
    std::string base = opt.logs + "/" + link.name + "-" + name;
    /* A link named again in --links: its legs' logs numbered. */
    for (int n = 2; g_file_test ((base + "-receiver.log").c_str (),
            G_FILE_TEST_EXISTS); n++)
      base = opt.logs + "/" + link.name + "-" + name + "-" + std::to_string (n);
    g_file_set_contents ((base + "-publisher.log").c_str (),
        publisher->output ().c_str (), -1, nullptr);
    g_file_set_contents ((base + "-receiver.log").c_str (),
        receiver->output ().c_str (), -1, nullptr);
    if (!r.freezes.empty ()) {
      std::string text;
      for (auto & f : r.freezes)
        text += "frozen at " + std::to_string (f.first) + " s for "
            + std::to_string (f.second) + " s\n";
      g_file_set_contents ((base + "-freezes.txt").c_str (), text.c_str (),
          -1, nullptr);
    }
  }
  return r;
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
        "gst-gst/off, gst-chromium/off (all)", "LIST" },
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
      Result r;
      if (!leg.publisher_props.empty () && !cc)
        r.why = "not built: peerjssink has no congestion-control";
      else if ((!leg.gst_publisher || !leg.gst_receiver) && !no_browser.empty ())
        r.why = "skipped: " + no_browser;
      else
        r = run_leg (link, leg);
      /* What the link did is a figure; a leg that could not run is not. */
      if (!r.picture && r.why.rfind ("no picture", 0) != 0
          && r.why.rfind ("not built", 0) != 0
          && r.why.rfind ("skipped", 0) != 0)
        failures++;
      results[leg.name] = r;
      if (r.picture)
        printf ("%-7s %-20s %5.1f fps %5.1f s frozen  %-16s %6.0f kbit/s  (%s)\n",
            link.name.c_str (), display (leg.name).c_str (), r.fps, r.frozen_s,
            r.sizes.c_str (), r.kbps, r.extra.c_str ());
      else
        printf ("%-7s %-20s %s\n", link.name.c_str (),
            display (leg.name).c_str (), r.why.c_str ());
      fflush (stdout);
      g_autofree char *why_json = g_strescape (r.why.c_str (), nullptr);
      g_string_append_printf (j, "%s\"%s\": {\"picture\": %s, \"fps\": %.2f, "
          "\"frozen_s\": %.2f, \"kbps\": %.0f, \"sizes\": \"%s\", "
          "\"why\": \"%s\"}", gi ? ", " : "", leg.name.c_str (),
          r.picture ? "true" : "false", r.fps, r.frozen_s, r.kbps,
          r.sizes.c_str (), why_json);
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
