/* gst-bench's shared harness (harness.h). */
#include "harness.h"

#include <cstdarg>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

namespace peerjs::bench {

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

/* ------------------------------------------------------------------ */
/* Child processes */

std::vector<Child *> children;

namespace {

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

}  // namespace

/* Start argv; its stdout is read when `read_stdout`, else goes to the log
 * with its stderr. Its stdin is /dev/null, or a pipe (Child::in) when
 * `write_stdin`. */
Child *
spawn (const std::string & name, const std::vector<std::string> & argv,
    bool read_stdout, bool write_stdin)
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
std::string gst_launch;
std::string self_exe;   /* this program, for the helper role */

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
json_num (GString * j, const char *key, double v, bool comma)
{
  if (std::isnan (v))
    g_string_append_printf (j, "\"%s\": null", key);
  else
    g_string_append_printf (j, "\"%s\": %.3f", key, v);
  if (comma)
    g_string_append (j, ", ");
}

}  // namespace peerjs::bench
