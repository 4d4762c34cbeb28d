#include "netlab.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace peerjs::test {

namespace {

constexpr const char *NETNS_DIR = "/run/netns";
constexpr const char *PREFIX = "pjlab-";

/* What to undo when the process ends without destructors: a table that a
 * signal handler can read, filled before each thing is made. Only
 * async-signal-safe calls undo it (kill, umount2, unlink). */
constexpr int MAX_LABS = 8;
constexpr int MAX_NS = 16;
constexpr int MAX_PIDS = 32;
constexpr int NAME_MAX_LEN = 96;

struct Slot
{
  volatile sig_atomic_t used;
  pid_t owner;               /* a forked child must not undo its parent's */
  char ns[MAX_NS][NAME_MAX_LEN];
  volatile sig_atomic_t n_ns;
  pid_t pids[MAX_PIDS];
  volatile sig_atomic_t n_pids;
};

Slot slots[MAX_LABS];
std::once_flag hooks_once;
std::atomic<unsigned> lab_counter{0};

std::string ip_path, tc_path, nft_path;

void
remove_netns_path (const char *name)
{
  char path[NAME_MAX_LEN + 16];
  std::snprintf (path, sizeof path, "%s/%s", NETNS_DIR, name);
  /* What `ip netns del` does: the namespace ends with its last process. */
  umount2 (path, MNT_DETACH);
  unlink (path);
}

void
undo_slot (Slot & s)
{
  for (int i = 0; i < s.n_pids; i++)
    if (s.pids[i] > 0)
      kill (s.pids[i], SIGKILL);
  for (int i = s.n_ns - 1; i >= 0; i--)
    remove_netns_path (s.ns[i]);
  s.n_pids = 0;
  s.n_ns = 0;
  s.used = 0;
}

void
undo_all ()
{
  pid_t self = getpid ();
  for (auto & s : slots)
    if (s.used && s.owner == self)
      undo_slot (s);
}

void
on_fatal_signal (int sig)
{
  undo_all ();
  signal (sig, SIG_DFL);
  raise (sig);
}

void
install_hooks ()
{
  /* A failed check assertion exits the test's process: atexit. */
  std::atexit (undo_all);
  for (int sig : {SIGABRT, SIGTERM, SIGINT, SIGHUP, SIGSEGV}) {
    struct sigaction sa = {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset (&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction (sig, &sa, nullptr);
  }
}

std::string
find_tool (const char *name)
{
  g_autofree char *p = g_find_program_in_path (name);
  if (p)
    return p;
  for (const char *dir : {"/usr/sbin/", "/sbin/"}) {
    std::string path = std::string (dir) + name;
    if (g_file_test (path.c_str (), G_FILE_TEST_IS_EXECUTABLE))
      return path;
  }
  return "";
}

struct ChildSetup
{
  int netns_fd = -1;
  bool die_with_parent = false;
};

/* After fork, before exec: enter the namespace. */
void
child_setup (gpointer data)
{
  auto *setup = static_cast<ChildSetup *>(data);
  if (setup->netns_fd >= 0 && setns (setup->netns_fd, CLONE_NEWNET) != 0)
    _exit (125);
  if (setup->die_with_parent)
    prctl (PR_SET_PDEATHSIG, SIGKILL);
}

int
open_netns (const std::string & ns)
{
  std::string path = std::string (NETNS_DIR) + "/" + ns;
  return open (path.c_str (), O_RDONLY | O_CLOEXEC);
}

std::vector<char *>
c_argv (const std::vector<std::string> & argv)
{
  std::vector<char *> v;
  for (const auto & a : argv)
    v.push_back (const_cast<char *>(a.c_str ()));
  v.push_back (nullptr);
  return v;
}

std::string
join (const std::vector<std::string> & argv)
{
  std::string s;
  for (const auto & a : argv)
    s += (s.empty () ? "" : " ") + a;
  return s;
}

bool
pid_alive (pid_t pid)
{
  return kill (pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

/* LabProcess */

void
LabProcess::mark_reaped ()
{
  reaped_ = true;
  /* Its pid may be reused now: the exit hooks must not kill it. */
  if (slot_pid_)
    *slot_pid_ = 0;
  slot_pid_ = nullptr;
}

LabProcess::~LabProcess ()
{
  if (pid_ > 0 && !reaped_) {
    kill (pid_, SIGKILL);
    waitpid (pid_, &status_, 0);
    mark_reaped ();
  }
  if (reader_.joinable ())
    reader_.join ();
}

void
LabProcess::read_loop (int fd)
{
  std::string partial;
  char buf[4096];
  for (;;) {
    ssize_t n = read (fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    gint64 now = g_get_monotonic_time ();
    std::lock_guard<std::mutex> guard (lock_);
    text_.append (buf, n);
    partial.append (buf, n);
    std::size_t at;
    while ((at = partial.find ('\n')) != std::string::npos) {
      lines_.emplace_back (now, partial.substr (0, at));
      partial.erase (0, at + 1);
    }
  }
  close (fd);
  std::lock_guard<std::mutex> guard (lock_);
  if (!partial.empty ())
    lines_.emplace_back (g_get_monotonic_time (), partial);
  eof_ = true;
}

bool
LabProcess::running ()
{
  if (reaped_)
    return false;
  if (waitpid (pid_, &status_, WNOHANG) == pid_)
    mark_reaped ();
  return !reaped_;
}

int
LabProcess::stop (int timeout_ms)
{
  if (running ()) {
    kill (pid_, SIGINT);
    gint64 deadline = g_get_monotonic_time () + gint64 (timeout_ms) * 1000;
    while (running () && g_get_monotonic_time () < deadline)
      g_usleep (20 * 1000);
    if (!reaped_) {
      kill (pid_, SIGKILL);
      waitpid (pid_, &status_, 0);
      mark_reaped ();
    }
  }
  if (reader_.joinable ())
    reader_.join ();
  return status_;
}

std::string
LabProcess::output () const
{
  std::lock_guard<std::mutex> guard (lock_);
  return text_;
}

std::vector<gint64>
LabProcess::line_times (const std::string & needle) const
{
  std::lock_guard<std::mutex> guard (lock_);
  std::vector<gint64> times;
  for (const auto & [t, line] : lines_)
    if (line.find (needle) != std::string::npos)
      times.push_back (t);
  return times;
}

std::size_t
LabProcess::count (const std::string & needle) const
{
  return line_times (needle).size ();
}

bool
LabProcess::wait_for (const std::string & needle, int timeout_ms,
    std::size_t n)
{
  gint64 deadline = g_get_monotonic_time () + gint64 (timeout_ms) * 1000;
  for (;;) {
    if (count (needle) >= n)
      return true;
    {
      std::lock_guard<std::mutex> guard (lock_);
      if (eof_)
        return false;
    }
    if (g_get_monotonic_time () > deadline)
      return false;
    g_usleep (20 * 1000);
  }
}

/* NetLab */

std::string
NetLab::prerequisite ()
{
  if (geteuid () != 0)
    return "it makes network namespaces, veth pairs, tc qdiscs and nftables "
        "rules, which needs root";
  ip_path = find_tool ("ip");
  tc_path = find_tool ("tc");
  nft_path = find_tool ("nft");
  if (ip_path.empty ())
    return "ip (iproute2) is missing";
  std::string probe = std::string (PREFIX) + std::to_string (getpid ())
      + "-probe";
  g_autofree char *out = nullptr;
  g_autofree char *err = nullptr;
  int status = -1;
  const char *add[] = {ip_path.c_str (), "netns", "add", probe.c_str (),
    nullptr};
  if (!g_spawn_sync (nullptr, const_cast<char **>(add), nullptr,
          G_SPAWN_DEFAULT, nullptr, nullptr, &out, &err, &status, nullptr)
      || !g_spawn_check_wait_status (status, nullptr))
    return std::string ("`ip netns add` fails here: ") + (err ? err : "");
  remove_netns_path (probe.c_str ());
  return "";
}

std::vector<std::string>
NetLab::namespaces_with_prefix (const std::string & prefix)
{
  std::vector<std::string> found;
  DIR *dir = opendir (NETNS_DIR);
  if (!dir)
    return found;
  while (struct dirent *e = readdir (dir))
    if (g_str_has_prefix (e->d_name, prefix.c_str ()))
      found.emplace_back (e->d_name);
  closedir (dir);
  return found;
}

void
NetLab::sweep_stale ()
{
  for (const auto & name : namespaces_with_prefix (PREFIX)) {
    long pid = std::strtol (name.c_str () + std::strlen (PREFIX), nullptr, 10);
    if (pid > 0 && !pid_alive (pid_t (pid)))
      remove_netns_path (name.c_str ());
  }
}

NetLab::NetLab ()
{
  std::call_once (hooks_once, install_hooks);
  if (ip_path.empty ())
    prerequisite ();
  sweep_stale ();
  prefix_ = std::string (PREFIX) + std::to_string (getpid ()) + "-"
      + std::to_string (++lab_counter);
  for (int i = 0; i < MAX_LABS; i++)
    if (!slots[i].used) {
      slot_ = i;
      slots[i].owner = getpid ();
      slots[i].n_ns = 0;
      slots[i].n_pids = 0;
      slots[i].used = 1;
      break;
    }
  if (slot_ < 0) {
    fail ("more than " + std::to_string (MAX_LABS) + " labs at once");
    return;
  }
  router_ = prefix_ + "-router";
  Slot & s = slots[slot_];
  g_strlcpy (s.ns[s.n_ns], router_.c_str (), NAME_MAX_LEN);
  s.n_ns = s.n_ns + 1;
  if (!command_in ("", {ip_path, "netns", "add", router_})
      || !command_in (router_, {ip_path, "link", "set", "lo", "up"}))
    return;
  /* /proc/sys/net is the namespace of the task that opens it. */
  bool forwarding = false;
  std::thread t ([&] {
    int fd = open_netns (router_);
    if (fd < 0)
      return;
    bool entered = setns (fd, CLONE_NEWNET) == 0;
    close (fd);
    if (!entered)
      return;
    fd = open ("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
    forwarding = fd >= 0 && write (fd, "1", 1) == 1;
    if (fd >= 0)
      close (fd);
  });
  t.join ();
  if (!forwarding)
    fail ("cannot turn forwarding on in " + router_);
  else
    apply_loss ();
}

NetLab::~NetLab ()
{
  destroy ();
}

void
NetLab::destroy ()
{
  for (auto & p : processes_) {
    if (p->running ())
      p->stop (0);
    p->slot_pid_ = nullptr;
  }
  processes_.clear ();
  if (slot_ >= 0) {
    undo_slot (slots[slot_]);
    slot_ = -1;
  }
}

bool
NetLab::fail (const std::string & what)
{
  if (error_.empty ())
    error_ = what;
  return false;
}

bool
NetLab::command_in (const std::string & ns,
    const std::vector<std::string> & argv, std::string * out)
{
  if (!error_.empty ())
    return false;
  ChildSetup setup;
  if (!ns.empty ()) {
    setup.netns_fd = open_netns (ns);
    if (setup.netns_fd < 0)
      return fail ("no namespace " + ns + ": " + g_strerror (errno));
  }
  auto v = c_argv (argv);
  g_autofree char *o = nullptr;
  g_autofree char *e = nullptr;
  int status = -1;
  g_autoptr (GError) error = nullptr;
  bool ok = g_spawn_sync (nullptr, v.data (), nullptr, G_SPAWN_DEFAULT,
      child_setup, &setup, &o, &e, &status, &error);
  if (setup.netns_fd >= 0)
    close (setup.netns_fd);
  if (out)
    *out = o ? o : "";
  if (!ok)
    return fail (join (argv) + ": " + error->message);
  if (!g_spawn_check_wait_status (status, nullptr))
    return fail ((ns.empty () ? "" : "in " + ns + ": ") + join (argv)
        + " failed: " + (e ? e : "") + (o ? o : ""));
  return true;
}

int
NetLab::add_host (const std::string & name)
{
  if (!error_.empty ())
    return 0;
  int n = int (hosts_.size ()) + 1;
  Slot & s = slots[slot_];
  if (n > 254 || s.n_ns >= MAX_NS) {
    fail ("too many hosts");
    return 0;
  }
  Host h;
  h.name = name;
  h.ns = prefix_ + "-" + name;
  g_strlcpy (s.ns[s.n_ns], h.ns.c_str (), NAME_MAX_LEN);
  s.n_ns = s.n_ns + 1;
  std::string dev = "h" + std::to_string (n);
  std::string net = "198.18." + std::to_string (n);
  /* Both ends are made inside the lab: never in the caller's namespace.
   * No IPv6 link-local address on them: its duplicate address detection
   * ends a second or two after the link is up, and Chromium, started
   * meanwhile, takes that address change for a new network and fails the
   * requests under way (net::ERR_NETWORK_CHANGED). */
  bool ok = command_in ("", {ip_path, "netns", "add", h.ns})
      && command_in (router_, {ip_path, "link", "add", dev, "type", "veth",
          "peer", "name", "lab0", "netns", h.ns})
      && command_in (router_, {ip_path, "link", "set", dev, "addrgenmode",
          "none"})
      && command_in (h.ns, {ip_path, "link", "set", "lab0", "addrgenmode",
          "none"})
      && command_in (router_, {ip_path, "addr", "add", net + ".1/24", "dev",
          dev})
      && command_in (router_, {ip_path, "link", "set", dev, "up"})
      && command_in (h.ns, {ip_path, "link", "set", "lo", "up"})
      && command_in (h.ns, {ip_path, "addr", "add", net + ".2/24", "dev",
          "lab0"})
      && command_in (h.ns, {ip_path, "link", "set", "lab0", "up"})
      && command_in (h.ns, {ip_path, "route", "add", "default", "via",
          net + ".1"});
  if (!ok)
    return 0;
  hosts_.push_back (h);
  return n;
}

std::string
NetLab::address (int host) const
{
  return "198.18." + std::to_string (host) + ".2";
}

std::string
NetLab::netns (int host) const
{
  return host >= 1 && host <= int (hosts_.size ()) ? hosts_[host - 1].ns : "";
}

bool
NetLab::apply_rate (const std::string & ns, const std::string & dev,
    const LinkCondition & c)
{
  if (tc_path.empty ())
    return fail ("tc (iproute2) is missing");
  if (c.rate_bps == 0) {
    /* Nothing to delete is not an error. */
    std::string out;
    std::string saved = error_;
    command_in (ns, {tc_path, "qdisc", "del", "dev", dev, "root"}, &out);
    error_ = saved;
    return error_.empty ();
  }
  guint64 burst = c.burst_bytes ? c.burst_bytes
      : std::max<guint64> (3200, c.rate_bps / 8 / 50);
  return command_in (ns, {tc_path, "qdisc", "replace", "dev", dev, "root",
          "tbf", "rate", std::to_string (c.rate_bps) + "bit", "burst",
          std::to_string (burst), "latency",
          std::to_string (c.queue_ms) + "ms"});
}

bool
NetLab::apply_loss ()
{
  if (nft_path.empty ())
    return fail ("nft (nftables) is missing");
  /* One transaction that replaces the whole table: the isolated pairs
   * (isolate ()), then the loss. */
  std::string rules;
  for (const auto & pair : isolated_) {
    std::string a = "h" + std::to_string (pair.first);
    std::string b = "h" + std::to_string (pair.second);
    rules += "    iifname \"" + a + "\" oifname \"" + b + "\" drop\n"
        "    iifname \"" + b + "\" oifname \"" + a + "\" drop\n";
  }
  /* A share of 100 is every packet, without numgen (whose comparison
   * takes 0 to 99). */
  auto share = [] (guint percent) {
    return percent >= 100 ? std::string () : " numgen random mod 100 < "
        + std::to_string (percent);
  };
  /* Media: UDP, and TCP between two ephemeral ports (ICE-TCP, whose
   * passive side listens on one too), which a member whose UDP checks
   * were lost may fall back to. The signalling, TCP to a server's fixed
   * port, is spared. */
  const char *media[] = { "meta l4proto udp",
    "meta l4proto tcp th sport >= 32768 th dport >= 32768" };
  for (std::size_t i = 0; i < hosts_.size (); i++) {
    std::string dev = "h" + std::to_string (i + 1);
    for (const char *what : media) {
      if (hosts_[i].down.loss_percent)
        rules += "    oifname \"" + dev + "\" " + what
            + share (hosts_[i].down.loss_percent) + " drop\n";
      if (hosts_[i].up.loss_percent)
        rules += "    iifname \"" + dev + "\" " + what
            + share (hosts_[i].up.loss_percent) + " drop\n";
    }
  }
  std::string script = "table inet peerjs_lab\n"
      "delete table inet peerjs_lab\n"
      "table inet peerjs_lab {\n"
      "  chain forward {\n"
      "    type filter hook forward priority 0; policy accept;\n"
      + rules + "  }\n}\n";
  g_autofree char *path = nullptr;
  int fd = g_file_open_tmp ("peerjs-lab-XXXXXX.nft", &path, nullptr);
  if (fd < 0)
    return fail ("cannot make a temporary file");
  close (fd);
  if (!g_file_set_contents (path, script.c_str (), -1, nullptr)) {
    g_unlink (path);
    return fail ("cannot write the nftables rules");
  }
  bool ok = command_in (router_, {nft_path, "-f", path});
  g_unlink (path);
  return ok;
}

bool
NetLab::set_downlink (int host, const LinkCondition & c)
{
  if (host < 1 || host > int (hosts_.size ()))
    return fail ("no host " + std::to_string (host));
  if (c.loss_percent > 100)
    return fail ("loss above 100 %");
  hosts_[host - 1].down = c;
  return apply_rate (router_, "h" + std::to_string (host), c)
      && apply_loss ();
}

bool
NetLab::set_uplink (int host, const LinkCondition & c)
{
  if (host < 1 || host > int (hosts_.size ()))
    return fail ("no host " + std::to_string (host));
  if (c.loss_percent > 100)
    return fail ("loss above 100 %");
  hosts_[host - 1].up = c;
  return apply_rate (hosts_[host - 1].ns, "lab0", c) && apply_loss ();
}

bool
NetLab::isolate (int a, int b)
{
  if (a < 1 || a > int (hosts_.size ()) || b < 1
      || b > int (hosts_.size ()) || a == b)
    return fail ("cannot isolate hosts " + std::to_string (a) + " and "
        + std::to_string (b));
  isolated_.emplace_back (a, b);
  return apply_loss ();
}

guint64
NetLab::downlink_bytes (int host)
{
  if (host < 1 || host > int (hosts_.size ())) {
    fail ("no host " + std::to_string (host));
    return 0;
  }
  std::string out;
  if (!command_in (router_, {ip_path, "-s", "-j", "link", "show", "dev",
              "h" + std::to_string (host)}, &out))
    return 0;
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, out.c_str (), -1, nullptr)) {
    fail ("ip -j printed no JSON: " + out);
    return 0;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonArray *links = JSON_NODE_HOLDS_ARRAY (root)
      ? json_node_get_array (root) : nullptr;
  JsonObject *link = links && json_array_get_length (links) == 1
      ? json_array_get_object_element (links, 0) : nullptr;
  JsonObject *stats = link && json_object_has_member (link, "stats64")
      ? json_object_get_object_member (link, "stats64") : nullptr;
  JsonObject *tx = stats && json_object_has_member (stats, "tx")
      ? json_object_get_object_member (stats, "tx") : nullptr;
  if (!tx || !json_object_has_member (tx, "bytes")) {
    fail ("no tx bytes in: " + out);
    return 0;
  }
  return guint64 (json_object_get_int_member (tx, "bytes"));
}

bool
NetLab::run_in (int host, const std::function<void ()> & f)
{
  std::string ns = netns (host);
  if (ns.empty ())
    return fail ("no host " + std::to_string (host));
  bool entered = false;
  std::thread t ([&] {
    int fd = open_netns (ns);
    if (fd < 0)
      return;
    entered = setns (fd, CLONE_NEWNET) == 0;
    close (fd);
    if (entered)
      f ();
  });
  t.join ();
  return entered ? true : fail ("cannot enter " + ns);
}

bool
NetLab::reachable (int from, const std::string & address, guint16 port,
    int timeout_ms)
{
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons (port);
  if (inet_pton (AF_INET, address.c_str (), &to.sin_addr) != 1)
    return false;
  gint64 end = g_get_monotonic_time () + timeout_ms * G_GINT64_CONSTANT (1000);
  do {
    int fd = socket_in (from, AF_INET, SOCK_STREAM);
    bool up = fd >= 0 && connect (fd, (sockaddr *) &to, sizeof to) == 0;
    if (fd >= 0)
      close (fd);
    if (up)
      return true;
    g_usleep (100 * 1000);
  } while (g_get_monotonic_time () < end);
  return false;
}

int
NetLab::socket_in (int host, int domain, int type)
{
  int fd = -1;
  if (!run_in (host, [&] { fd = socket (domain, type | SOCK_CLOEXEC, 0); }))
    return -1;
  return fd;
}

bool
NetLab::exec (int host, const std::vector<std::string> & argv,
    std::string * out)
{
  std::string ns = netns (host);
  if (ns.empty ())
    return fail ("no host " + std::to_string (host));
  return command_in (ns, argv, out);
}

std::shared_ptr<LabProcess>
NetLab::spawn (int host, const std::vector<std::string> & argv)
{
  std::string ns = netns (host);
  if (ns.empty () || slot_ < 0) {
    fail ("no host " + std::to_string (host));
    return nullptr;
  }
  Slot & s = slots[slot_];
  if (s.n_pids >= MAX_PIDS) {
    fail ("too many processes");
    return nullptr;
  }
  int fds[2];
  if (pipe2 (fds, O_CLOEXEC) != 0) {
    fail ("pipe failed");
    return nullptr;
  }
  ChildSetup setup;
  setup.netns_fd = open_netns (ns);
  /* Should this process be killed outright (a check timeout), its children
   * go too, and the next sweep can delete the namespaces. */
  setup.die_with_parent = true;
  auto v = c_argv (argv);
  GPid pid = 0;
  g_autoptr (GError) error = nullptr;
  bool ok = setup.netns_fd >= 0 && g_spawn_async_with_fds (nullptr, v.data (),
      nullptr, GSpawnFlags (G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH),
      child_setup, &setup, &pid, -1, fds[1], fds[1], &error);
  if (setup.netns_fd >= 0)
    close (setup.netns_fd);
  close (fds[1]);
  if (!ok) {
    close (fds[0]);
    fail ("cannot start " + join (argv) + ": "
        + (error ? error->message : "no namespace " + ns));
    return nullptr;
  }
  s.pids[s.n_pids] = pid;
  auto p = std::make_shared<LabProcess> ();
  p->pid_ = pid;
  p->slot_pid_ = &s.pids[s.n_pids];
  s.n_pids = s.n_pids + 1;
  int read_fd = fds[0];
  LabProcess *raw = p.get ();
  p->reader_ = std::thread ([raw, read_fd] { raw->read_loop (read_fd); });
  processes_.push_back (p);
  return p;
}

}  // namespace peerjs::test
