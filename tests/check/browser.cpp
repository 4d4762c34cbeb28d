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
#include "sandbox.h"

#include <gst/check/gstcheck.h>

#include <glib/gstdio.h>

#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

using namespace peerjs::test;

namespace {

/* Longest a scenario may run; each also has a deadline of its own (75 s,
 * tests/browser/lib.mjs) that ends it with its diagnostics first. */
constexpr int SCENARIO_TIMEOUT_S = 100;

std::string browser_dir;    /* tests/browser in the source tree */
void
run_scenario (const char *name)
{
  g_autofree char *script = g_build_filename (browser_dir.c_str (), name, nullptr);
  g_autofree char *quoted = g_shell_quote (script);
  Run r = run (namespace_argv (std::string ("exec node ") + quoted + ".mjs"),
      browser_dir, SCENARIO_TIMEOUT_S);
  if (exited_0 (r)) {
    g_print ("browser scenario %s passed in %.1f s\n", name, r.seconds);
    return;
  }
  /* The whole output on stderr (meson prints it for a failed test); the
   * failure message itself stays short. */
  g_printerr ("\n===== browser scenario %s %s after %.1f s; its output:\n%s"
      "===== end of %s\n", name, describe_status (r).c_str (), r.seconds,
      r.output.c_str (), name);
  ck_abort_msg ("browser scenario %s %s: %s", name, describe_status (r).c_str (),
      first_fail (r.output).c_str ());
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
  return sandbox_prerequisite ();
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

GST_START_TEST (test_original)
{
  run_scenario ("original");
}
GST_END_TEST;

GST_START_TEST (test_pipelines)
{
  run_scenario ("pipelines");
}
GST_END_TEST;

GST_START_TEST (test_codecs)
{
  run_scenario ("codecs");
}
GST_END_TEST;

GST_START_TEST (test_pipeline_files)
{
  run_scenario ("pipeline-files");
}
GST_END_TEST;

GST_START_TEST (test_screenshot)
{
  run_scenario ("screenshot");
}
GST_END_TEST;

GST_START_TEST (test_ice)
{
  run_scenario ("ice");
}
GST_END_TEST;

GST_START_TEST (test_auth)
{
  run_scenario ("auth");
}
GST_END_TEST;

GST_START_TEST (test_loss)
{
  run_scenario ("loss");
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
  tcase_add_test (tc, test_original);
  tcase_add_test (tc, test_pipelines);
  tcase_add_test (tc, test_pipeline_files);
  tcase_add_test (tc, test_codecs);
  tcase_add_test (tc, test_auth);
  tcase_add_test (tc, test_ice);
  tcase_add_test (tc, test_loss);
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
