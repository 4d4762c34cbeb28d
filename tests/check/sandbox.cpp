#include "sandbox.h"

#include <glib.h>
#include <glib/gstdio.h>

#include <csignal>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace peerjs::test {

namespace {
std::string ip_path = "ip";
}

std::vector<std::string>
namespace_argv (const std::string & shell_command)
{
  std::vector<std::string> argv = {"unshare"};
  if (geteuid () != 0)
    argv.push_back ("--map-root-user");
  /* SIGKILL to the first process if unshare itself is killed. */
  for (const char *a : {"--net", "--pid", "--fork", "--kill-child",
          "--mount-proc", "sh", "-c"})
    argv.push_back (a);
  g_autofree char *ip = g_shell_quote (ip_path.c_str ());
  argv.push_back (std::string (ip) + " link set lo up && " + shell_command);
  return argv;
}

Run
run (const std::vector<std::string> & args, const std::string & dir,
    int timeout_s)
{
  Run r;
  r.timeout_s = timeout_s;
  std::vector<char *> argv;
  for (const auto & a : args)
    argv.push_back (const_cast<char *>(a.c_str ()));
  argv.push_back (nullptr);

  g_autofree char *log_path = nullptr;
  int log_fd = g_file_open_tmp ("peerjs-scenario-XXXXXX.log", &log_path,
      nullptr);
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
    if (chdir (dir.c_str ()) != 0)
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
    return "was killed after " + std::to_string (r.timeout_s) + " s";
  if (WIFEXITED (r.status))
    return "exited " + std::to_string (WEXITSTATUS (r.status));
  if (WIFSIGNALED (r.status))
    return "was killed by signal " + std::to_string (WTERMSIG (r.status));
  return "ended with status " + std::to_string (r.status);
}

std::string
first_fail (const std::string & output)
{
  std::string line = "(no FAIL line; see the output above)";
  auto at = output.rfind ("FAIL ", 0) == 0 ? 0 : output.find ("\nFAIL ");
  if (at != std::string::npos) {
    if (at > 0)
      at++;
    line = output.substr (at, output.find ('\n', at) - at);
  }
  if (line.size () > 1500)
    line = line.substr (0, 1500) + "...";
  return line;
}

std::string
sandbox_prerequisite ()
{
  g_autofree char *unshare = g_find_program_in_path ("unshare");
  g_autofree char *ip = g_find_program_in_path ("ip");
  if (!ip && g_file_test ("/usr/sbin/ip", G_FILE_TEST_IS_EXECUTABLE))
    ip = g_strdup ("/usr/sbin/ip");
  if (!unshare || !ip)
    return "unshare or ip is missing (util-linux, iproute2)";
  ip_path = ip;
  g_autofree char *cwd = g_get_current_dir ();
  Run probe = run (namespace_argv ("true"), cwd, 20);
  if (!exited_0 (probe))
    return "cannot make a loopback-only network namespace (unshare "
        + describe_status (probe) + "): " + probe.output;
  return "";
}

}  // namespace peerjs::test
