/* The network lab (netlab.h): its link conditions are what they say, it
 * leaves nothing behind, and media crosses it from a publisher in one
 * namespace to a receiver in another, through a server in a third, and
 * through a TURN relay between members with no route to each other. The
 * figures of each run are printed ("network: ..."), to be quoted. Needs
 * root; skipped (exit 77) where network namespaces cannot be made. */
#include "netlab.h"
#include "turn.h"

#include <gst/check/gstcheck.h>

#include <arpa/inet.h>
#include <csignal>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

using namespace peerjs::test;

namespace {

constexpr guint16 FLOW_PORT = 5001;
constexpr guint16 SERVER_PORT = 9000;

struct Flow
{
  int sent = 0;
  int received = 0;
  guint64 bytes = 0;          /* UDP payload */
  guint64 first_size = 0;
  gint64 first_us = 0;
  gint64 last_us = 0;

  /* Payload bit/s between the first and the last arrival. */
  double rate_bps () const
  {
    if (received < 2 || last_us <= first_us)
      return 0;
    return (bytes - first_size) * 8.0 * 1e6 / double (last_us - first_us);
  }
};

sockaddr_in
inet (const std::string & address, guint16 port)
{
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons (port);
  inet_pton (AF_INET, address.c_str (), &a.sin_addr);
  return a;
}

/* `count` datagrams of `size` bytes from host `from` to host `to`, one
 * every `interval_us`, received as they come. */
Flow
udp_flow (NetLab & lab, int from, int to, int count, int size,
    gint64 interval_us)
{
  Flow f;
  int rx = lab.socket_in (to, AF_INET, SOCK_DGRAM);
  int tx = lab.socket_in (from, AF_INET, SOCK_DGRAM);
  fail_unless (rx >= 0 && tx >= 0, "no sockets in the lab: %s",
      lab.error ().c_str ());
  int buf = 4 << 20;
  setsockopt (rx, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  timeval tv = {0, 100 * 1000};
  setsockopt (rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in any = inet ("0.0.0.0", FLOW_PORT);
  fail_unless (bind (rx, (sockaddr *) &any, sizeof any) == 0, "bind: %s",
      g_strerror (errno));
  sockaddr_in dest = inet (lab.address (to), FLOW_PORT);
  fail_unless (connect (tx, (sockaddr *) &dest, sizeof dest) == 0,
      "connect: %s", g_strerror (errno));

  std::atomic<bool> done{false};
  std::thread sender ([&] {
    std::string payload (size, 'x');
    gint64 t0 = g_get_monotonic_time ();
    for (int i = 0; i < count; i++) {
      gint64 wait = t0 + i * interval_us - g_get_monotonic_time ();
      if (wait > 0)
        g_usleep (wait);
      if (send (tx, payload.data (), payload.size (), 0) == size)
        f.sent++;
    }
    done = true;
  });
  std::vector<char> in (65536);
  gint64 quiet_since = 0;
  for (;;) {
    ssize_t n = recv (rx, in.data (), in.size (), 0);
    gint64 now = g_get_monotonic_time ();
    if (n > 0) {
      if (f.received == 0) {
        f.first_us = now;
        f.first_size = n;
      }
      f.received++;
      f.bytes += n;
      f.last_us = now;
      quiet_since = 0;
      continue;
    }
    if (!done)
      continue;
    /* What the queue still holds arrives within its latency. */
    if (!quiet_since)
      quiet_since = now;
    else if (now - quiet_since > 500 * 1000)
      break;
  }
  sender.join ();
  close (rx);
  close (tx);
  return f;
}

std::set<std::string>
root_links ()
{
  std::set<std::string> names;
  g_autofree char *out = nullptr;
  const char *argv[] = {"ip", "-o", "link", "show", nullptr};
  g_spawn_sync (nullptr, const_cast<char **>(argv), nullptr,
      G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out, nullptr, nullptr, nullptr);
  g_auto (GStrv) lines = g_strsplit (out ? out : "", "\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto (GStrv) parts = g_strsplit (*l, ": ", 3);
    if (g_strv_length (parts) >= 2)
      names.insert (parts[1]);
  }
  return names;
}

std::string
describe (const std::set<std::string> & names)
{
  std::string s;
  for (const auto & n : names)
    s += n + " ";
  return s;
}

/* A lab with two hosts, or the test fails with the lab's error. */
#define LAB_WITH_TWO_HOSTS(lab, a, b) \
  NetLab lab; \
  int a = lab.add_host ("a"); \
  int b = lab.add_host ("b"); \
  fail_unless (a && b, "lab: %s", lab.error ().c_str ())

}  // namespace

GST_START_TEST (test_rate)
{
  LAB_WITH_TWO_HOSTS (lab, a, b);
  LinkCondition slow;
  slow.rate_bps = 300000;
  fail_unless (lab.set_downlink (b, slow), "%s", lab.error ().c_str ());
  /* 1 Mbit/s for 3 s into a 300 kbit/s link. */
  Flow f = udp_flow (lab, a, b, 375, 1000, 8000);
  g_print ("network: downlink at 300 kbit/s: %.0f kbit/s of UDP payload "
      "(%d of %d datagrams of 1000 bytes)\n", f.rate_bps () / 1000,
      f.received, f.sent);
  fail_unless (f.rate_bps () > 210000 && f.rate_bps () < 390000,
      "300 kbit/s measured as %.0f bit/s", f.rate_bps ());

  /* Changed while the lab runs: 900 kbit/s, flooded at 2 Mbit/s. */
  slow.rate_bps = 900000;
  fail_unless (lab.set_downlink (b, slow), "%s", lab.error ().c_str ());
  f = udp_flow (lab, a, b, 750, 1000, 4000);
  g_print ("network: downlink changed to 900 kbit/s: %.0f kbit/s (%d of %d)"
      "\n", f.rate_bps () / 1000, f.received, f.sent);
  fail_unless (f.rate_bps () > 630000 && f.rate_bps () < 1170000,
      "900 kbit/s measured as %.0f bit/s", f.rate_bps ());

  /* Clean again: all of 2 Mbit/s passes. */
  fail_unless (lab.set_downlink (b, LinkCondition ()), "%s",
      lab.error ().c_str ());
  f = udp_flow (lab, a, b, 500, 1000, 4000);
  g_print ("network: downlink clean again: %.0f kbit/s (%d of %d)\n",
      f.rate_bps () / 1000, f.received, f.sent);
  fail_unless (f.received >= f.sent * 99 / 100 && f.rate_bps () > 1400000,
      "a clean link passed %d of %d datagrams at %.0f bit/s", f.received,
      f.sent, f.rate_bps ());

  /* The sender's uplink, shaped in its own namespace. */
  slow.rate_bps = 300000;
  fail_unless (lab.set_uplink (a, slow), "%s", lab.error ().c_str ());
  f = udp_flow (lab, a, b, 375, 1000, 8000);
  g_print ("network: a's uplink at 300 kbit/s: %.0f kbit/s (%d of %d)\n",
      f.rate_bps () / 1000, f.received, f.sent);
  fail_unless (f.rate_bps () > 210000 && f.rate_bps () < 390000,
      "a 300 kbit/s uplink measured as %.0f bit/s", f.rate_bps ());
}
GST_END_TEST;

GST_START_TEST (test_loss)
{
  LAB_WITH_TWO_HOSTS (lab, a, b);
  LinkCondition lossy;
  lossy.loss_percent = 10;
  fail_unless (lab.set_downlink (b, lossy), "%s", lab.error ().c_str ());
  Flow f = udp_flow (lab, a, b, 1000, 200, 1000);
  int lost = f.sent - f.received;
  g_print ("network: downlink at 10 %% loss: %d of %d datagrams lost\n",
      lost, f.sent);
  fail_unless (f.sent == 1000 && lost >= 50 && lost <= 150,
      "10 %% loss lost %d of %d datagrams", lost, f.sent);

  /* The other way, b to a, is b's uplink: untouched. */
  f = udp_flow (lab, b, a, 1000, 200, 1000);
  g_print ("network: b's uplink, clean: %d of %d lost\n",
      f.sent - f.received, f.sent);
  fail_unless (f.received == f.sent, "b's clean uplink lost %d of %d",
      f.sent - f.received, f.sent);

  LinkCondition worse;
  worse.loss_percent = 30;
  fail_unless (lab.set_uplink (b, worse), "%s", lab.error ().c_str ());
  f = udp_flow (lab, b, a, 1000, 200, 1000);
  lost = f.sent - f.received;
  g_print ("network: b's uplink at 30 %% loss: %d of %d lost\n", lost,
      f.sent);
  fail_unless (lost >= 230 && lost <= 370, "30 %% loss lost %d of %d", lost,
      f.sent);

  /* Changed while the lab runs: the downlink turns clean. */
  fail_unless (lab.set_downlink (b, LinkCondition ()), "%s",
      lab.error ().c_str ());
  f = udp_flow (lab, a, b, 1000, 200, 1000);
  g_print ("network: downlink clean again: %d of %d lost\n",
      f.sent - f.received, f.sent);
  fail_unless (f.received == f.sent, "a clean link lost %d of %d",
      f.sent - f.received, f.sent);
}
GST_END_TEST;

/* Builds a lab, starts `sleep` in one of its hosts, sets conditions, and
 * writes the lab's prefix and the pid of `sleep` to `fd`. */
static std::string
build_and_report (NetLab & lab, int fd)
{
  int a = lab.add_host ("a");
  int b = lab.add_host ("b");
  LinkCondition c;
  c.rate_bps = 500000;
  c.loss_percent = 5;
  if (!a || !b || !lab.set_downlink (b, c) || !lab.set_uplink (a, c))
    return lab.error ();
  auto sleeper = lab.spawn (a, {"sleep", "60"});
  if (!sleeper)
    return lab.error ();
  std::string report = lab.prefix () + " " + std::to_string (sleeper->pid ())
      + "\n";
  if (fd >= 0 && write (fd, report.data (), report.size ()) < 0)
    return "write failed";
  return "";
}

/* Forks a child that builds a lab and then ends by `how`; returns the lab's
 * prefix, read from the child. */
static std::string
lab_in_child (void (*how) ())
{
  int fds[2];
  fail_unless (pipe (fds) == 0);
  pid_t child = fork ();
  fail_unless (child >= 0);
  if (child == 0) {
    close (fds[0]);
    {
      NetLab lab;
      std::string error = build_and_report (lab, fds[1]);
      if (!error.empty ())
        _exit (3);
      how ();
    }
    _exit (4);
  }
  close (fds[1]);
  std::string report;
  char buf[256];
  ssize_t n;
  while ((n = read (fds[0], buf, sizeof buf)) > 0)
    report.append (buf, n);
  close (fds[0]);
  int status = 0;
  waitpid (child, &status, 0);
  fail_unless (!report.empty (), "the child made no lab (status %d)", status);
  return report.substr (0, report.find (' '));
}

static void
fail_like_an_assertion ()
{
  /* What a failed fail_unless does in a forked check test: exit (1), no
   * destructors. */
  exit (1);
}

static void
abort_outright ()
{
  abort ();
}

static void
die_by_sigkill ()
{
  raise (SIGKILL);
}

GST_START_TEST (test_cleanup)
{
  std::set<std::string> links_before = root_links ();
  std::string prefix;
  pid_t sleeper = 0;
  {
    NetLab lab;
    int fds[2];
    fail_unless (pipe (fds) == 0);
    std::string error = build_and_report (lab, fds[1]);
    close (fds[1]);
    fail_unless (error.empty (), "lab: %s", error.c_str ());
    char buf[256] = {};
    fail_unless (read (fds[0], buf, sizeof buf - 1) > 0);
    close (fds[0]);
    prefix = lab.prefix ();
    sleeper = std::atoi (std::strchr (buf, ' ') + 1);
    fail_unless (NetLab::namespaces_with_prefix (prefix).size () == 3,
        "a lab with two hosts has %zu namespaces, not 3",
        NetLab::namespaces_with_prefix (prefix).size ());
    fail_unless (root_links () == links_before,
        "the lab made links in the caller's namespace: %s",
        describe (root_links ()).c_str ());
  }
  fail_unless (NetLab::namespaces_with_prefix (prefix).empty (),
      "left after the lab was destroyed: %s",
      NetLab::namespaces_with_prefix (prefix)[0].c_str ());
  fail_unless (kill (sleeper, 0) != 0 && errno == ESRCH,
      "the lab's process %d outlived it", int (sleeper));

  prefix = lab_in_child (fail_like_an_assertion);
  fail_unless (NetLab::namespaces_with_prefix (prefix).empty (),
      "left after exit (1): %s",
      NetLab::namespaces_with_prefix (prefix)[0].c_str ());
  prefix = lab_in_child (abort_outright);
  fail_unless (NetLab::namespaces_with_prefix (prefix).empty (),
      "left after abort (): %s",
      NetLab::namespaces_with_prefix (prefix)[0].c_str ());

  /* Nothing runs on SIGKILL: the namespaces stay until a sweep. */
  prefix = lab_in_child (die_by_sigkill);
  fail_unless (NetLab::namespaces_with_prefix (prefix).size () == 3,
      "a lab killed by SIGKILL left %zu namespaces, not 3",
      NetLab::namespaces_with_prefix (prefix).size ());
  NetLab::sweep_stale ();
  fail_unless (NetLab::namespaces_with_prefix (prefix).empty (),
      "the sweep left %s", NetLab::namespaces_with_prefix (prefix)[0].c_str ());
  fail_unless (root_links () == links_before,
      "links left in the caller's namespace: %s",
      describe (root_links ()).c_str ());
}
GST_END_TEST;

/* A server, a publisher of a moving pattern and a receiver, each in a host
 * of the lab. */
struct Room
{
  NetLab lab;
  int server = 0;
  int publisher = 0;
  int receiver = 0;
  std::shared_ptr<LabProcess> signalling;
  std::shared_ptr<LabProcess> pub;
  std::shared_ptr<LabProcess> rx;
};

constexpr const char *FRAME = "video-out: last-message = chain";

/* Frames the receiver gave out in [from, to), and the time without a new
 * frame for more than 200 ms. */
struct Figures
{
  std::size_t frames = 0;
  double fps = 0;
  double frozen_s = 0;
  double kbps = 0;            /* what reached the receiver's host */
};

static Figures
figures (const LabProcess & rx, gint64 from, gint64 to)
{
  Figures f;
  gint64 previous = from;
  for (gint64 t : rx.line_times (FRAME)) {
    if (t < from || t >= to)
      continue;
    f.frames++;
    if (t - previous > 200 * 1000)
      f.frozen_s += (t - previous) / 1e6;
    previous = t;
  }
  if (to - previous > 200 * 1000)
    f.frozen_s += (to - previous) / 1e6;
  f.fps = f.frames * 1e6 / double (to - from);
  return f;
}

/* Measure for `seconds` from now. */
static Figures
measure (Room & room, const char *link, double seconds)
{
  guint64 bytes = room.lab.downlink_bytes (room.receiver);
  gint64 from = g_get_monotonic_time ();
  g_usleep (gulong (seconds * G_USEC_PER_SEC));
  gint64 to = g_get_monotonic_time ();
  Figures f = figures (*room.rx, from, to);
  bytes = room.lab.downlink_bytes (room.receiver) - bytes;
  fail_unless (room.lab.error ().empty (), "%s", room.lab.error ().c_str ());
  f.kbps = bytes * 8.0 / 1000 / ((to - from) / 1e6);
  g_print ("network: gst->gst, receiver's link %s: %.1f fps, %.1f s frozen "
      "of %.0f s (%zu frames), %.0f kbit/s received\n", link, f.fps,
      f.frozen_s, seconds, f.frames, f.kbps);
  return f;
}

/* The end of a text: check's failure messages must stay short (some
 * 4 kB in all). */
static std::string
tail (const std::string & text, std::size_t n = 2000)
{
  return text.size () > n ? text.substr (text.size () - n) : text;
}

static std::string
tail (const LabProcess & p, std::size_t n = 2000)
{
  return tail (p.output (), n);
}

/* `pattern`: videotestsrc's. The ball compresses to some 55 kbit/s at
 * 320x240; snow fills the encoder's 1 Mbit/s, as a camera does.
 * `publisher`: more properties for the peerjssink (its bus messages are
 * printed then, peerjs-stats among them). */
static void
start_room (Room & room, const char *pattern = "ball",
    const std::vector<std::string> & publisher = {},
    const std::vector<std::string> & receiver = {})
{
  NetLab & lab = room.lab;
  room.server = lab.add_host ("server");
  room.publisher = lab.add_host ("pub");
  room.receiver = lab.add_host ("rx");
  fail_unless (room.receiver != 0, "lab: %s", lab.error ().c_str ());

  std::string server_address = lab.address (room.server);
  room.signalling = lab.spawn (room.server, {g_getenv ("PEERJS_SIGNALLING"),
          "--port", std::to_string (SERVER_PORT), "--host", server_address});
  fail_unless (room.signalling != nullptr, "%s", lab.error ().c_str ());
  /* Up when the receiver's host reaches it through the router. */
  sockaddr_in to = inet (server_address, SERVER_PORT);
  bool up = false;
  for (int i = 0; i < 100 && !up; i++) {
    int fd = lab.socket_in (room.receiver, AF_INET, SOCK_STREAM);
    up = fd >= 0 && connect (fd, (sockaddr *) &to, sizeof to) == 0;
    if (fd >= 0)
      close (fd);
    if (!up)
      g_usleep (100 * 1000);
  }
  fail_unless (up, "the server in the lab did not answer within 10 s: %s",
      tail (*room.signalling).c_str ());

  std::string url = "server=ws://" + server_address + ":"
      + std::to_string (SERVER_PORT) + "/peerjs";
  std::vector<std::string> pub = {"gst-launch-1.0", "-e", "peerjssink", url,
    "thread=lab", "ice-addresses=" + lab.address (room.publisher), "name=s"};
  if (!publisher.empty ()) {
    pub.insert (pub.begin () + 1, "-m");
    pub.insert (pub.end (), publisher.begin (), publisher.end ());
  }
  for (std::string a : {"videotestsrc", "is-live=true"})
    pub.push_back (a);
  /* The pattern's name, and maybe more of videotestsrc's properties. */
  g_auto (GStrv) words = g_strsplit (pattern, " ", -1);
  for (char **w = words; *w; w++)
    pub.push_back (w == words ? std::string ("pattern=") + *w : *w);
  for (std::string a : {"!", "video/x-raw,width=320,height=240,framerate=15/1",
          "!", "s.video"})
    pub.push_back (a);
  room.pub = lab.spawn (room.publisher, pub);
  std::vector<std::string> rx = {"gst-launch-1.0", "-v", "peerjssrc", url,
    "thread=lab", "ice-addresses=" + lab.address (room.receiver), "name=r"};
  rx.insert (rx.end (), receiver.begin (), receiver.end ());
  for (std::string a : {"r.", "!", "video/x-raw", "!", "fakesink",
          "name=video-out", "silent=false", "sync=false", "async=false"})
    rx.push_back (a);
  room.rx = lab.spawn (room.receiver, rx);
  fail_unless (room.pub && room.rx, "%s", lab.error ().c_str ());
  fail_unless (room.rx->wait_for (FRAME, 20000),
      "no frame at the receiver within 20 s\npublisher:\n%s\nreceiver:\n%s",
      tail (*room.pub).c_str (), tail (*room.rx).c_str ());
}

static void
stop_members (LabProcess & pub, LabProcess & rx)
{
  /* Ended as Ctrl-C ends them: cleanly. */
  int status = rx.stop ();
  fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 0,
      "the receiver did not end cleanly (status %d):\n%s", status,
      tail (rx).c_str ());
  status = pub.stop ();
  fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 0,
      "the publisher did not end cleanly (status %d):\n%s", status,
      tail (pub).c_str ());
}

static void
stop_room (Room & room)
{
  stop_members (*room.pub, *room.rx);
}

GST_START_TEST (test_media_clean)
{
  Room room;
  start_room (room);
  Figures f = measure (room, "clean", 4);
  /* 60 frames are sent in 4 s; a loaded machine may delay some. */
  fail_unless (f.frames >= 30, "%zu frames in 4 s over a clean link",
      f.frames);
  stop_room (room);
}
GST_END_TEST;

GST_START_TEST (test_media_impaired)
{
  Room room;
  start_room (room, "snow");
  measure (room, "clean", 3);

  LinkCondition lossy;
  lossy.loss_percent = 10;
  fail_unless (room.lab.set_downlink (room.receiver, lossy), "%s",
      room.lab.error ().c_str ());
  Figures f = measure (room, "at 10 % loss", 5);
  fail_unless (f.frames > 0, "no frame in 5 s at 10 %% loss");

  fail_unless (room.lab.set_downlink (room.receiver, LinkCondition ()));
  measure (room, "clean again after loss", 3);

  LinkCondition slow;
  slow.rate_bps = 300000;
  fail_unless (room.lab.set_downlink (room.receiver, slow), "%s",
      room.lab.error ().c_str ());
  /* Not asserted: the publisher sends 1 Mbit/s whatever the link. */
  measure (room, "at 300 kbit/s", 5);

  fail_unless (room.lab.set_downlink (room.receiver, LinkCondition ()));
  measure (room, "clean again after 300 kbit/s", 5);
  stop_room (room);
}
GST_END_TEST;


/* Every value of the publisher's peerjs-stats field `name` printed so
 * far, in order. */
static std::vector<double>
stat_values (const LabProcess & pub, const std::string & name)
{
  std::string text = pub.output ();
  std::string key = name + "=(guint64)";
  std::vector<double> values;
  for (std::size_t at = text.find (key); at != std::string::npos;
      at = text.find (key, at + 1))
    values.push_back (g_ascii_strtod (text.c_str () + at + key.size (),
            nullptr));
  return values;
}

/* The latest of them; -1 when none was printed yet. */
static double
last_stat (const LabProcess & pub, const std::string & name)
{
  std::vector<double> values = stat_values (pub, name);
  return values.empty () ? -1 : values.back ();
}

/* The median of the values from the `from`th on. */
static double
median_from (std::vector<double> values, std::size_t from)
{
  if (from >= values.size ())
    return -1;
  values.erase (values.begin (), values.begin () + from);
  std::sort (values.begin (), values.end ());
  return values[values.size () / 2];
}

/* A moving zone plate: detail that fills the encoder's 1 Mbit/s at
 * 320x240@15 and compresses to what it is told, down to 150 kbit/s and
 * less, steadily over time, as a camera's picture does (snow cannot go
 * below 1 Mbit/s whatever the encoder is told). */
constexpr const char *CAMERA = "zone-plate kx2=30 ky2=30 kt=3";

/* Congestion control over the lab: a 320x240@15 camera-like picture
 * at the publisher's default 1 Mbit/s, the receiver behind 300 kbit/s
 * (and its latency 200 ms, as docs/elements.md advises for a link with a
 * queue). With congestion-control=gcc the encoder comes down to what the
 * link carries, so pictures keep coming, and the publisher's estimate for
 * the receiver is about the link rate; once the link is clean again the
 * encoder climbs back above 600 kbit/s within 15 s. */
static const LinkCondition
slow_link ()
{
  LinkCondition slow;
  slow.rate_bps = 300000;
  return slow;
}

GST_START_TEST (test_congestion_gcc)
{
  Room room;
  start_room (room, CAMERA, {"congestion-control=gcc", "stats-interval=500"},
      {"latency=200"});
  fail_unless (room.lab.set_downlink (room.receiver, slow_link ()), "%s",
      room.lab.error ().c_str ());
  /* The first seconds drain what the 1 Mbit/s start queued. */
  g_usleep (6 * G_USEC_PER_SEC);
  std::size_t before = stat_values (*room.pub, "estimated-bitrate").size ();
  Figures f = measure (room, "at 300 kbit/s, congestion-control=gcc", 10);
  /* The estimate rises and falls about the link's rate (AIMD): its median
   * over the window is what it found. */
  double estimate = median_from (stat_values (*room.pub, "estimated-bitrate"),
      before);
  double target = median_from (stat_values (*room.pub, "target-bitrate"),
      before);
  g_print ("network: gcc at 300 kbit/s: median estimate %.0f, encoder %.0f "
      "bit/s\n", estimate, target);
  /* 15 frames a second are sent; a quiet machine decodes 10 to 15 of them
   * and is frozen 0 to 3 s of 10; two busy loops on its 2 cores cost a
   * few more. */
  fail_unless (f.fps >= 7 && f.frozen_s < 5, "at 300 kbit/s with "
      "congestion control: %.1f fps, %.1f s of 10 frozen", f.fps, f.frozen_s);
  fail_unless (estimate > 0 && estimate < 300000 * 1.2 && target < 300000,
      "median estimate %.0f, encoder %.0f bit/s behind a 300 kbit/s link",
      estimate, target);

  fail_unless (room.lab.set_downlink (room.receiver, LinkCondition ()));
  gint64 clean = g_get_monotonic_time ();
  double climbed = 0;
  while (g_get_monotonic_time () - clean < 15 * G_USEC_PER_SEC) {
    g_usleep (250 * 1000);
    climbed = last_stat (*room.pub, "target-bitrate");
    if (climbed > 600000)
      break;
  }
  double took = (g_get_monotonic_time () - clean) / 1e6;
  g_print ("network: gcc, clean again: encoder at %.0f bit/s after %.1f s\n",
      climbed, took);
  fail_unless (climbed > 600000, "the encoder at %.0f bit/s 15 s after the "
      "link was clean again", climbed);
  stop_room (room);
}
GST_END_TEST;

/* The same with congestion-control=off, for comparison: printed, not
 * asserted (the encoder stays at 1 Mbit/s). */
GST_START_TEST (test_congestion_off)
{
  Room room;
  start_room (room, CAMERA, {"congestion-control=off", "stats-interval=500"},
      {"latency=200"});
  fail_unless (room.lab.set_downlink (room.receiver, slow_link ()), "%s",
      room.lab.error ().c_str ());
  g_usleep (6 * G_USEC_PER_SEC);
  measure (room, "at 300 kbit/s, congestion-control=off", 10);
  g_print ("network: off at 300 kbit/s: estimate %.0f, encoder %.0f bit/s\n",
      last_stat (*room.pub, "estimated-bitrate"),
      last_stat (*room.pub, "target-bitrate"));
  stop_room (room);
}
GST_END_TEST;

/* Whether host `from` reaches address:port over TCP within `timeout_ms`. */
static bool
reachable (NetLab & lab, int from, const std::string & address, guint16 port,
    int timeout_ms)
{
  sockaddr_in to = inet (address, port);
  gint64 end = g_get_monotonic_time () + timeout_ms * 1000;
  do {
    int fd = lab.socket_in (from, AF_INET, SOCK_STREAM);
    bool up = fd >= 0 && connect (fd, (sockaddr *) &to, sizeof to) == 0;
    if (fd >= 0)
      close (fd);
    if (up)
      return true;
    g_usleep (100 * 1000);
  } while (g_get_monotonic_time () < end);
  return false;
}

/* The session id a gst-launch -m pipeline was greeted with, from its
 * peerjs-socket-connect message; "" before the greeting. */
static std::string
session_id (const LabProcess & p)
{
  std::string out = p.output ();
  std::size_t at = out.find ("peerjs-socket-connect");
  if (at == std::string::npos)
    return "";
  at = out.find ("id=(string)", at);
  if (at == std::string::npos)
    return "";
  at += strlen ("id=(string)");
  std::size_t end = out.find_first_of (",;\n", at);
  std::string id = out.substr (at, end - at);
  if (id.size () >= 2 && id.front () == '"')
    id = id.substr (1, id.size () - 2);
  return id;
}

constexpr guint16 TURN_PORT = 3478;

/* Why the demo page cannot be run in Chromium here, or "". */
static std::string
browser_missing ()
{
  const char *dir = g_getenv ("PEERJS_BROWSER_TESTS");
  if (!dir)
    return "PEERJS_BROWSER_TESTS is not set";
  g_autofree char *node = g_find_program_in_path ("node");
  if (!node)
    return "node is not installed";
  if (!g_file_test ("/usr/bin/chromium", G_FILE_TEST_IS_EXECUTABLE))
    return "/usr/bin/chromium is not installed";
  g_autofree char *pw = g_build_filename (dir, "node_modules",
      "playwright-core", nullptr);
  if (!g_file_test (pw, G_FILE_TEST_IS_DIR))
    return "playwright-core is not in tests/browser/node_modules (tools/setup)";
  return "";
}

/* The lines of a gst-launch -m pipeline's output that tell what its
 * element did: its bus messages, warnings and errors. */
static std::string
events (const LabProcess & p)
{
  std::string out;
  g_auto (GStrv) lines = g_strsplit (p.output ().c_str (), "\n", -1);
  for (char **l = lines; *l; l++)
    if (strstr (*l, "peerjs-") || strstr (*l, "WARNING")
        || strstr (*l, "ERROR"))
      out += std::string (*l) + "\n";
  return out;
}

/* A publisher and a receiver, each in its host, on the server at `url`. */
static std::pair<std::shared_ptr<LabProcess>, std::shared_ptr<LabProcess>>
members (NetLab & lab, int publisher, int receiver, const std::string & url)
{
  auto pub = lab.spawn (publisher, {"gst-launch-1.0", "-e", "-m",
          "peerjssink", url, "thread=lab",
          "ice-addresses=" + lab.address (publisher), "name=s",
          "videotestsrc", "is-live=true", "pattern=ball", "!",
          "video/x-raw,width=320,height=240,framerate=15/1", "!", "s.video"});
  auto rx = lab.spawn (receiver, {"gst-launch-1.0", "-v", "-m", "peerjssrc",
          url, "thread=lab", "ice-addresses=" + lab.address (receiver),
          "name=r", "r.", "!", "video/x-raw", "!", "fakesink",
          "name=video-out", "silent=false", "sync=false", "async=false"});
  fail_unless (pub && rx, "%s", lab.error ().c_str ());
  fail_unless (pub->wait_for ("peerjs-socket-connect", 10000)
      && rx->wait_for ("peerjs-socket-connect", 10000),
      "the members were not greeted within 10 s\npublisher:\n%s\n"
      "receiver:\n%s", tail (events (*pub), 1500).c_str (),
      tail (events (*rx), 1500).c_str ());
  return {pub, rx};
}

/* Members on networks with no route to each other, only to the server's
 * and to coturn's: no media without TURN, and media through the relay
 * with the credentials the server mints from --turn-secret, to a pipeline
 * and to the demo page in Chromium. */
GST_START_TEST (test_turn_isolated)
{
  if (!TurnFiles::installed ()) {
    g_print ("network: SKIP test_turn_isolated: turnserver (Debian's "
        "coturn) is not installed\n");
    return;
  }
  NetLab lab;
  int server = lab.add_host ("server");
  int turn = lab.add_host ("turn");
  int pub = lab.add_host ("pub");
  int rx = lab.add_host ("rx");
  int web = lab.add_host ("web");
  fail_unless (web != 0, "lab: %s", lab.error ().c_str ());
  fail_unless (lab.isolate (pub, rx) && lab.isolate (pub, web)
      && lab.isolate (rx, web), "%s", lab.error ().c_str ());
  /* The isolation as UDP sees it: nothing between the members, all to the
   * TURN server's host. */
  Flow f = udp_flow (lab, pub, rx, 20, 200, 10000);
  fail_unless (f.sent == 20 && f.received == 0,
      "%d of %d datagrams crossed between isolated hosts", f.received,
      f.sent);
  for (auto pair : {std::make_pair (pub, web), std::make_pair (web, rx)}) {
    f = udp_flow (lab, pair.first, pair.second, 20, 200, 10000);
    fail_unless (f.received == 0, "%d of %d datagrams crossed between "
        "isolated hosts %d and %d", f.received, f.sent, pair.first,
        pair.second);
  }
  f = udp_flow (lab, rx, turn, 20, 200, 10000);
  fail_unless (f.received == 20, "%d of 20 datagrams reached coturn's host",
      f.received);

  const std::string secret = "network-lab-turn-secret";
  /* coturn denies no part of 198.18.0.0/15 by default; said here so that
   * a later default cannot turn the test into a silent failure. */
  TurnFiles files (secret, lab.address (turn), TURN_PORT,
      "allowed-peer-ip=198.18.0.0-198.19.255.255\n");
  fail_unless (files.ok (), "cannot write coturn's configuration");
  auto coturn = lab.spawn (turn, files.argv ());
  fail_unless (coturn != nullptr, "%s", lab.error ().c_str ());
  fail_unless (reachable (lab, pub, lab.address (turn), TURN_PORT, 10000),
      "coturn did not listen on %s:%u within 10 s:\n%s",
      lab.address (turn).c_str (), TURN_PORT,
      tail (files.log_text ()).c_str ());
  g_autofree char *secret_file = nullptr;
  int fd = g_file_open_tmp ("peerjs-turn-secret-XXXXXX", &secret_file,
      nullptr);
  fail_unless (fd >= 0);
  close (fd);
  fail_unless (g_file_set_contents (secret_file, secret.c_str (), -1,
          nullptr));
  std::string server_address = lab.address (server);

  /* 1. A server with no ICE servers: the members never connect. */
  auto plain = lab.spawn (server, {g_getenv ("PEERJS_SIGNALLING"), "--port",
          std::to_string (SERVER_PORT), "--host", server_address});
  fail_unless (plain != nullptr, "%s", lab.error ().c_str ());
  fail_unless (reachable (lab, rx, server_address, SERVER_PORT, 10000),
      "the server did not answer within 10 s: %s", tail (*plain).c_str ());
  auto direct = members (lab, pub, rx, "server=ws://" + server_address
      + ":" + std::to_string (SERVER_PORT) + "/peerjs");
  fail_if (direct.second->wait_for (FRAME, 8000),
      "a frame crossed between isolated hosts without TURN:\n%s",
      tail (*direct.second).c_str ());
  g_print ("network: isolated members, no TURN: no frame in 8 s\n");
  direct.second->stop ();
  direct.first->stop ();
  plain->stop ();

  /* 2. The server hands out coturn with credentials minted per session. */
  guint16 port = SERVER_PORT + 1;
  g_autofree char *web_root = g_build_filename (
      g_getenv ("PEERJS_BROWSER_TESTS"), "..", "..", "signalling", "web",
      nullptr);
  auto relaying = lab.spawn (server, {g_getenv ("PEERJS_SIGNALLING"),
          "--port", std::to_string (port), "--host", server_address,
          "--web-root", web_root,
          "--ice-server", "turn:" + lab.address (turn) + ":"
          + std::to_string (TURN_PORT), "--turn-secret", secret_file});
  fail_unless (relaying != nullptr, "%s", lab.error ().c_str ());
  fail_unless (reachable (lab, rx, server_address, port, 10000),
      "the server did not answer within 10 s: %s", tail (*relaying).c_str ());
  gint64 t0 = g_get_monotonic_time ();
  auto relayed = members (lab, pub, rx, "server=ws://" + server_address
      + ":" + std::to_string (port) + "/peerjs");
  fail_unless (relayed.second->wait_for (FRAME, 15000),
      "no frame through the relay within 15 s\npublisher:\n%s\n"
      "receiver:\n%s\ncoturn:\n%s",
      tail (events (*relayed.first), 1000).c_str (),
      tail (events (*relayed.second), 1000).c_str (),
      tail (files.log_text (), 1000).c_str ());
  gint64 first = g_get_monotonic_time ();
  std::size_t before = relayed.second->count (FRAME);
  /* 45 frames are sent in 3 s; a loaded machine may delay some. */
  bool flowing = relayed.second->wait_for (FRAME, 3000, before + 20);
  Figures fig = figures (*relayed.second, first, g_get_monotonic_time ());
  g_print ("network: isolated members through TURN: first frame %.1f s "
      "after the members started, then %.1f fps (%zu frames)\n",
      (first - t0) / 1e6, fig.fps, fig.frames);
  fail_unless (flowing, "the relayed video stalled: %zu frames",
      relayed.second->count (FRAME));

  /* 3. The demo page in Chromium, on a third network, plays the same
   * publisher through the relay (tests/browser/lab-turn.mjs). */
  std::string web_id;
  std::string why_not = browser_missing ();
  if (!why_not.empty ()) {
    g_print ("network: SKIP gst->Chromium through TURN: %s\n",
        why_not.c_str ());
  } else {
    g_autofree char *script = g_build_filename (
        g_getenv ("PEERJS_BROWSER_TESTS"), "lab-turn.mjs", nullptr);
    auto page = lab.spawn (web, {"env", "PEERJS_LAB_URL=http://"
            + server_address + ":" + std::to_string (port) + "/",
            "PEERJS_LAB_ROOM=lab", "PEERJS_LAB_MEMBER="
            + session_id (*relayed.first), "node", script});
    fail_unless (page != nullptr, "%s", lab.error ().c_str ());
    bool passed = page->wait_for ("PASS lab-turn", 60000);
    page->stop ();
    std::string out = page->output ();
    if (!passed) {
      /* All of it on stderr (meson prints it); the message stays short. */
      g_printerr ("===== tests/browser/lab-turn.mjs:\n%s=====\n",
          out.c_str ());
      std::size_t f = out.find ("\nFAIL ");
      fail ("the page did not play the relayed video: %s", f
          == std::string::npos ? tail (out, 1000).c_str ()
          : out.substr (f + 1, 1000).c_str ());
    }
    std::size_t at = out.find ("lab-turn: web session ");
    fail_unless (at != std::string::npos);
    std::string line = out.substr (at, out.find ('\n', at) - at);
    g_print ("network: gst->Chromium through TURN: %s\n", line.c_str ());
    at += strlen ("lab-turn: web session ");
    web_id = out.substr (at, out.find (',', at) - at);
  }

  /* coturn allocated for every session, with the greeting's usernames
   * (expiry:session). */
  std::string log = files.log_text ();
  std::vector<std::string> ids = {session_id (*relayed.first),
    session_id (*relayed.second)};
  if (!web_id.empty ())
    ids.push_back (web_id);
  for (const std::string & id : ids) {
    fail_unless (!id.empty (), "no session id of a member");
    bool allocated = false;
    g_auto (GStrv) lines = g_strsplit (log.c_str (), "\n", -1);
    for (char **l = lines; *l && !allocated; l++)
      allocated = strstr (*l, (":" + id + ">").c_str ())
          && strstr (*l, "ALLOCATE processed, success");
    fail_unless (allocated, "coturn allocated nothing for session %s:\n%s",
        id.c_str (), tail (log).c_str ());
  }
  stop_members (*relayed.first, *relayed.second);
  relaying->stop ();
  coturn->stop ();
  g_unlink (secret_file);
}
GST_END_TEST;

static Suite *
network_suite ()
{
  Suite *s = suite_create ("network");
  TCase *lab = tcase_create ("lab");
  tcase_set_timeout (lab, 30);
  tcase_add_test (lab, test_rate);
  tcase_add_test (lab, test_loss);
  tcase_add_test (lab, test_cleanup);
  suite_add_tcase (s, lab);
  TCase *media = tcase_create ("media");
  tcase_set_timeout (media, 60);
  tcase_add_test (media, test_media_clean);
  tcase_add_test (media, test_media_impaired);
  suite_add_tcase (s, media);
  TCase *congestion = tcase_create ("congestion");
  tcase_set_timeout (congestion, 60);
  tcase_add_test (congestion, test_congestion_gcc);
  tcase_add_test (congestion, test_congestion_off);
  suite_add_tcase (s, congestion);
  TCase *turn = tcase_create ("turn");
  tcase_set_timeout (turn, 60);
  tcase_add_test (turn, test_turn_isolated);
  suite_add_tcase (s, turn);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  std::string why = NetLab::prerequisite ();
  if (!why.empty ()) {
    g_print ("network: SKIP: the network lab cannot be made here: %s\n",
        why.c_str ());
    return 77;   /* meson: skipped */
  }
  if (!g_getenv ("PEERJS_SIGNALLING")) {
    g_printerr ("network: PEERJS_SIGNALLING is not set (run through meson "
        "test)\n");
    return 1;
  }
  NetLab::sweep_stale ();
  int failed = gst_check_run_suite (network_suite (), "network", __FILE__);
  /* What a test killed at its timeout (SIGKILL) left behind. */
  NetLab::sweep_stale ();
  return failed;
}
