/* Browser scenarios (tests/browser/NAME.mjs): peer.js and the demo page in
 * headless Chromium against the real server. One test case per scenario:
 * each runs `node tests/browser/<scenario>.mjs` in a loopback-only network
 * namespace (and a PID namespace of its own, so that nothing it started
 * outlives it) and passes when it exits 0. The scenario's output is printed
 * when it fails.
 *
 * The suite is skipped (exit 77) only when something it needs is absent:
 * node, Chromium, playwright-core in tests/browser/node_modules, or the
 * right to make namespaces. tools/setup installs all of them. */
#include <gst/check/gstcheck.h>

#include <glib/gstdio.h>

#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

namespace {

/* Longest a scenario may run; each also has a deadline of its own (75 s,
 * tests/browser/lib.mjs) that ends it with its diagnostics first. */
constexpr int SCENARIO_TIMEOUT_S = 100;

std::string browser_dir;    /* tests/browser in the source tree */
std::string ip_path = "ip";

/* unshare: a network namespace with only loopback, a PID namespace (when
 * its first process ends, the kernel ends every other, browsers included),
 * and SIGKILL to that first process if unshare itself is killed. Not root:
 * a user namespace too, where we are root. */
std::vector<std::string>
namespace_argv (const std::string & shell_command)
{
  std::vector<std::string> argv = {"unshare"};
  if (geteuid () != 0)
    argv.push_back ("--map-root-user");
  for (const char *a : {"--net", "--pid", "--fork", "--kill-child",
          "--mount-proc", "sh", "-c"})
    argv.push_back (a);
  g_autofree char *ip = g_shell_quote (ip_path.c_str ());
  argv.push_back (std::string (ip) + " link set lo up && " + shell_command);
  return argv;
}

struct Run
{
  bool started = false;
  bool timed_out = false;
  int status = -1;
  double seconds = 0;
  std::string output;
  std::string error;
};

/* Runs argv with stdout and stderr to a file (not to a pipe that something
 * left behind could hold open), for at most timeout_s. */
Run
run (const std::vector<std::string> & args, int timeout_s)
{
  Run r;
  std::vector<char *> argv;
  for (const auto & a : args)
    argv.push_back (const_cast<char *>(a.c_str ()));
  argv.push_back (nullptr);

  g_autofree char *log_path = nullptr;
  int log_fd = g_file_open_tmp ("peerjs-browser-XXXXXX.log", &log_path, nullptr);
  if (log_fd < 0) {
    r.error = "cannot make a temporary file";
    return r;
  }
  gint64 t0 = g_get_monotonic_time ();
  pid_t pid = fork ();
  if (pid < 0) {
    r.error = "fork failed";
    close (log_fd);
    return r;
  }
  if (pid == 0) {
    dup2 (log_fd, STDOUT_FILENO);
    dup2 (log_fd, STDERR_FILENO);
    int null_fd = open ("/dev/null", O_RDONLY);
    if (null_fd >= 0)
      dup2 (null_fd, STDIN_FILENO);
    if (chdir (browser_dir.c_str ()) != 0)
      _exit (126);
    execvp (argv[0], argv.data ());
    _exit (127);
  }
  r.started = true;
  close (log_fd);
  for (;;) {
    pid_t done = waitpid (pid, &r.status, WNOHANG);
    if (done == pid)
      break;
    if (g_get_monotonic_time () - t0 > gint64 (timeout_s) * G_USEC_PER_SEC) {
      r.timed_out = true;
      kill (pid, SIGKILL);  /* --kill-child takes the namespace down */
      waitpid (pid, &r.status, 0);
      break;
    }
    g_usleep (50 * 1000);
  }
  r.seconds = (g_get_monotonic_time () - t0) / 1e6;
  g_autofree char *text = nullptr;
  gsize len = 0;
  if (g_file_get_contents (log_path, &text, &len, nullptr))
    r.output.assign (text, len);
  g_unlink (log_path);
  return r;
}

bool
exited_0 (const Run & r)
{
  return r.started && !r.timed_out && WIFEXITED (r.status)
      && WEXITSTATUS (r.status) == 0;
}

std::string
describe_status (const Run & r)
{
  if (!r.started)
    return "did not start: " + r.error;
  if (r.timed_out)
    return "was killed after " + std::to_string (SCENARIO_TIMEOUT_S) + " s";
  if (WIFEXITED (r.status))
    return "exited " + std::to_string (WEXITSTATUS (r.status));
  if (WIFSIGNALED (r.status))
    return "was killed by signal " + std::to_string (WTERMSIG (r.status));
  return "ended with status " + std::to_string (r.status);
}

void
run_scenario (const char *name)
{
  g_autofree char *script = g_build_filename (browser_dir.c_str (), name, nullptr);
  g_autofree char *quoted = g_shell_quote (script);
  Run r = run (namespace_argv (std::string ("exec node ") + quoted + ".mjs"),
      SCENARIO_TIMEOUT_S);
  if (exited_0 (r)) {
    g_print ("browser scenario %s passed in %.1f s\n", name, r.seconds);
    return;
  }
  /* The whole output on stderr (meson prints it for a failed test); the
   * failure message itself stays short. */
  g_printerr ("\n===== browser scenario %s %s after %.1f s; its output:\n%s"
      "===== end of %s\n", name, describe_status (r).c_str (), r.seconds,
      r.output.c_str (), name);
  std::string first_fail = "(no FAIL line; see the output above)";
  auto at = r.output.find ("\nFAIL ");
  if (at != std::string::npos)
    first_fail = r.output.substr (at + 1, r.output.find ('\n', at + 1) - at - 1);
  else if (r.output.rfind ("FAIL ", 0) == 0)
    first_fail = r.output.substr (0, r.output.find ('\n'));
  if (first_fail.size () > 1500)
    first_fail = first_fail.substr (0, 1500) + "...";
  ck_abort_msg ("browser scenario %s %s: %s", name, describe_status (r).c_str (),
      first_fail.c_str ());
}

/* Why the scenarios cannot run here, or "" when they can. */
std::string
missing_prerequisite ()
{
  const char *dir = g_getenv ("PEERJS_BROWSER_TESTS");
  if (!dir)
    return "PEERJS_BROWSER_TESTS is not set (run through meson test)";
  browser_dir = dir;
  g_autofree char *node = g_find_program_in_path ("node");
  if (!node)
    return "node is not on PATH (tools/setup installs nodejs)";
  const char *chromium = g_getenv ("PEERJS_CHROMIUM");
  if (!chromium)
    chromium = "/usr/bin/chromium";
  if (!g_file_test (chromium, G_FILE_TEST_IS_EXECUTABLE))
    return std::string (chromium) + " is missing (tools/setup installs chromium)";
  g_autofree char *pw = g_build_filename (dir, "node_modules", "playwright-core",
      "package.json", nullptr);
  if (!g_file_test (pw, G_FILE_TEST_EXISTS))
    return std::string ("playwright-core is not installed in ") + dir +
        " (tools/setup runs npm ci there)";
  g_autofree char *unshare = g_find_program_in_path ("unshare");
  g_autofree char *ip = g_find_program_in_path ("ip");
  if (!ip && g_file_test ("/usr/sbin/ip", G_FILE_TEST_IS_EXECUTABLE))
    ip = g_strdup ("/usr/sbin/ip");
  if (!unshare || !ip)
    return "unshare or ip is missing (util-linux, iproute2)";
  ip_path = ip;
  Run probe = run (namespace_argv ("true"), 20);
  if (!exited_0 (probe))
    return "cannot make a loopback-only network namespace (unshare " +
        describe_status (probe) + "): " + probe.output;
  return "";
}

}  // namespace

GST_START_TEST (test_chat)
{
  run_scenario ("chat");
}
GST_END_TEST;

GST_START_TEST (test_media)
{
  run_scenario ("media");
}
GST_END_TEST;

GST_START_TEST (test_files)
{
  run_scenario ("files");
}
GST_END_TEST;

GST_START_TEST (test_restart)
{
  run_scenario ("restart");
}
GST_END_TEST;

GST_START_TEST (test_pipelines)
{
  run_scenario ("pipelines");
}
GST_END_TEST;

GST_START_TEST (test_screenshot)
{
  run_scenario ("screenshot");
}
GST_END_TEST;

static Suite *
browser_suite (void)
{
  Suite *s = suite_create ("browser");
  TCase *tc = tcase_create ("scenarios");
  tcase_set_timeout (tc, SCENARIO_TIMEOUT_S + 20);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_chat);
  tcase_add_test (tc, test_media);
  tcase_add_test (tc, test_files);
  tcase_add_test (tc, test_restart);
  tcase_add_test (tc, test_screenshot);
  tcase_add_test (tc, test_pipelines);
  return s;
}

int
main (int argc, char **argv)
{
  gst_check_init (&argc, &argv);
  std::string missing = missing_prerequisite ();
  if (!missing.empty ()) {
    g_print ("browser: SKIP: %s\n", missing.c_str ());
    return 77;   /* meson: skipped */
  }
  return gst_check_run_suite (browser_suite (), "browser", __FILE__);
}
