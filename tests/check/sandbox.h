/* Running a command as the test suites' scenarios do: inside a network
 * namespace that has only loopback and a PID namespace of its own (when
 * its first process ends, the kernel ends every other), with its output
 * kept in a file, for a bounded time. browser.cpp and examples.cpp use it. */
#pragma once

#include <string>
#include <vector>

namespace peerjs::test {

struct Run
{
  bool started = false;
  bool timed_out = false;
  int status = -1;
  double seconds = 0;
  int timeout_s = 0;
  std::string output;
  std::string error;
};

/* "" when loopback-only namespaces can be made here (unshare and ip are
 * there, and a probe works); else what is missing. Call it first. */
std::string sandbox_prerequisite ();

/* unshare --net --pid ... sh -c 'ip link set lo up && shell_command'. Not
 * root: a user namespace too, where we are root. */
std::vector<std::string> namespace_argv (const std::string & shell_command);

/* Runs argv in `dir` with stdout and stderr to a file (not to a pipe that
 * something left behind could hold open), for at most timeout_s. */
Run run (const std::vector<std::string> & args, const std::string & dir,
    int timeout_s);

bool exited_0 (const Run & r);
std::string describe_status (const Run & r);

/* The first line of `output` that starts with "FAIL ", or a pointer to the
 * whole output, at most 1,500 bytes. */
std::string first_fail (const std::string & output);

}  // namespace peerjs::test
