/* coturn's turnserver for the suites: a directory of its own with a
 * configuration (TURN REST API credentials under a shared secret, no TLS,
 * no CLI, a log file), the command line that runs it in the foreground,
 * and its log. Who starts it (the elements suite on loopback, the network
 * suite in a lab host) and where it listens is the caller's. Header only:
 * the suites that use it link no shared test code. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace peerjs::test {

/* A temporary file, or a directory of files, removed. */
inline void
remove_path (const std::string & path)
{
  if (g_file_test (path.c_str (), G_FILE_TEST_IS_DIR)) {
    g_autoptr (GDir) d = g_dir_open (path.c_str (), 0, nullptr);
    while (const char *name = d ? g_dir_read_name (d) : nullptr) {
      g_autofree char *file = g_build_filename (path.c_str (), name, nullptr);
      g_unlink (file);
    }
    g_rmdir (path.c_str ());
  } else {
    g_unlink (path.c_str ());
  }
}

/* Temporary paths a test made and has not removed yet: a failed check
 * assertion exits the test's process without running destructors, so
 * what is left is removed at exit. */
inline std::set<std::string> &
temporary_paths ()
{
  static std::set<std::string> paths;
  return paths;
}

inline void
remove_at_exit (const std::string & path)
{
  /* Made before the handler is registered, so destroyed after it ran. */
  std::set<std::string> & paths = temporary_paths ();
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit ([] {
      for (const std::string & p : temporary_paths ())
        remove_path (p);
    });
  }
  paths.insert (path);
}

/* `path` removed now (by its owner's destructor). */
inline void
remove_now (const std::string & path)
{
  remove_path (path);
  temporary_paths ().erase (path);
}

class TurnFiles
{
public:
  static bool installed ()
  {
    g_autofree char *path = g_find_program_in_path ("turnserver");
    return path != nullptr;
  }

  /* Listens on `address`:`port` (UDP and TCP) and relays on `address`,
   * ports 50000-50999; `extra` lines are added to the configuration. */
  TurnFiles (const std::string & secret, const std::string & address,
      guint port, const std::string & extra = "")
  {
    dir_ = g_dir_make_tmp ("peerjs-turn-XXXXXX", nullptr);
    if (!dir_)
      return;
    remove_at_exit (dir_);
    log = std::string (dir_) + "/turn.log";
    conf = std::string (dir_) + "/turnserver.conf";
    std::string text =
        "listening-ip=" + address + "\n"
        "relay-ip=" + address + "\n"
        "listening-port=" + std::to_string (port) + "\n"
        "min-port=50000\nmax-port=50999\n"
        "use-auth-secret\n"
        "static-auth-secret=" + secret + "\n"
        "realm=peerjs.test\n"
        "fingerprint\n"
        "no-tls\nno-dtls\nno-cli\nno-multicast-peers\n"
        "log-file=" + log + "\nsimple-log\nverbose\n"
        "pidfile=" + std::string (dir_) + "/turnserver.pid\n"
        "userdb=" + std::string (dir_) + "/turndb\n" + extra;
    written_ = g_file_set_contents (conf.c_str (), text.c_str (), -1,
        nullptr);
  }

  ~TurnFiles ()
  {
    if (!dir_)
      return;
    remove_now (dir_);
    g_free (dir_);
  }

  TurnFiles (const TurnFiles &) = delete;
  TurnFiles & operator= (const TurnFiles &) = delete;

  /* The configuration was written. */
  bool ok () const { return dir_ && written_; }

  /* turnserver in the foreground (no daemon) with this configuration. */
  std::vector<std::string> argv () const
  {
    return {"turnserver", "-c", conf};
  }

  std::string log_text () const
  {
    g_autofree char *text = nullptr;
    g_file_get_contents (log.c_str (), &text, nullptr, nullptr);
    return text ? text : "";
  }

  std::string conf;
  std::string log;

private:
  char *dir_ = nullptr;
  bool written_ = false;
};

}  // namespace peerjs::test
