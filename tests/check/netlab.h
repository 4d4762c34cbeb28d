/* A network lab for the suites: the server and each member in a network
 * namespace of its own, joined through a router namespace, with a link
 * condition per host (rate and queue with tc tbf, random loss of media
 * packets with nftables) that can be changed while media flows. Needs
 * root (ip, tc, nft). Nothing it makes is ever in the caller's namespace:
 * the veth pairs are created inside the lab's namespaces, and the router
 * has no other link, so no packet leaves the lab. Everything it made goes
 * away when the NetLab is destroyed, when the process exits (a failed
 * check assertion) or is ended by SIGABRT, SIGTERM, SIGINT, SIGHUP or
 * SIGSEGV, and, after a SIGKILL, at the next sweep_stale () (every NetLab
 * constructor runs one).
 * See docs/network-lab.md. */
#pragma once

#include <glib.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace peerjs::test {

/* What one direction of a host's link does to packets. All zero: clean. */
struct LinkCondition
{
  guint64 rate_bps = 0;      /* tbf rate in bit/s; 0: no limit */
  guint burst_bytes = 0;     /* tbf bucket; 0: 20 ms of rate, at least 3,200 */
  guint queue_ms = 100;      /* tbf latency: the longest a packet may wait */
  guint loss_percent = 0;    /* media packets dropped at random, 0-100: UDP,
                              * and TCP between ephemeral ports (ICE-TCP) */
};

/* A program running in a lab host. Its stdout and stderr, merged, are read
 * as they come; each line is kept with the monotonic time it was read. */
class LabProcess
{
public:
  ~LabProcess ();
  pid_t pid () const { return pid_; }
  bool running ();
  /* SIGINT, then SIGKILL if it has not ended within `timeout_ms`; reaps it
   * and returns its wait status. */
  int stop (int timeout_ms = 5000);
  std::string output () const;
  /* The times (g_get_monotonic_time) of the lines containing `needle`. */
  std::vector<gint64> line_times (const std::string & needle) const;
  std::size_t count (const std::string & needle) const;
  /* Wait until `n` lines contain `needle`; false after `timeout_ms`, or if
   * the process ended first. */
  bool wait_for (const std::string & needle, int timeout_ms,
      std::size_t n = 1);

private:
  friend class NetLab;
  void read_loop (int fd);
  void mark_reaped ();

  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  pid_t *slot_pid_ = nullptr;    /* its entry in the exit hooks' table */
  std::thread reader_;
  mutable std::mutex lock_;
  std::string text_;
  std::vector<std::pair<gint64, std::string>> lines_;
  bool eof_ = false;
};

class NetLab
{
public:
  /* "" when the lab can be made here; else why not. */
  static std::string prerequisite ();
  /* Delete the namespaces of labs whose process is gone. */
  static void sweep_stale ();
  /* The lab's namespaces still present (from /run/netns). */
  static std::vector<std::string> namespaces_with_prefix (
      const std::string & prefix);

  /* The router namespace. error () says whether it could be made. */
  NetLab ();
  ~NetLab ();
  NetLab (const NetLab &) = delete;
  NetLab & operator= (const NetLab &) = delete;

  /* "" while every step worked; else the first that failed. */
  const std::string & error () const { return error_; }
  /* Every namespace name of this lab starts with this. */
  const std::string & prefix () const { return prefix_; }

  /* A host joined to the router: its namespace `prefix-name`, a veth pair
   * (router side "hN" 198.18.N.1/24, host side "lab0" 198.18.N.2/24,
   * default route via the router). N counts from 1. Returns N, or 0 on
   * failure (see error ()). */
  int add_host (const std::string & name);
  std::string address (int host) const;          /* 198.18.N.2 */
  std::string netns (int host) const;
  const std::string & router_netns () const { return router_; }

  /* The router→host direction (what the host receives) and host→router
   * (what it sends). Applied at once, also while traffic flows. */
  bool set_downlink (int host, const LinkCondition & c);
  bool set_uplink (int host, const LinkCondition & c);

  /* The router drops all it would forward between hosts `a` and `b`, both
   * ways: they still reach every other host, never each other (members on
   * networks with no route to each other). Kept until the lab ends. */
  bool isolate (int a, int b);

  /* Bytes the router has sent to the host so far (what passed its
   * downlink), Ethernet headers included. */
  guint64 downlink_bytes (int host);

  /* A socket made in a host's namespace (it stays there); -1 on failure. */
  int socket_in (int host, int domain, int type);
  /* Whether host `from` reaches address:port over TCP within
   * `timeout_ms` (tried every 100 ms): a server started in the lab is up. */
  bool reachable (int from, const std::string & address, guint16 port,
      int timeout_ms);
  /* Run `f` on a thread that is in the host's namespace, and wait for it. */
  bool run_in (int host, const std::function<void ()> & f);

  /* Run `argv` in the host's namespace to its end; its output in `out`. */
  bool exec (int host, const std::vector<std::string> & argv,
      std::string * out = nullptr);
  /* Start `argv` in the host's namespace; nullptr on failure. The lab
   * kills it, if still running, when it is destroyed. */
  std::shared_ptr<LabProcess> spawn (int host,
      const std::vector<std::string> & argv);

private:
  struct Host
  {
    std::string name;
    std::string ns;
    LinkCondition down;
    LinkCondition up;
  };

  bool command_in (const std::string & ns,
      const std::vector<std::string> & argv, std::string * out = nullptr);
  bool apply_rate (const std::string & ns, const std::string & dev,
      const LinkCondition & c);
  bool apply_loss ();
  bool fail (const std::string & what);
  void destroy ();

  std::string prefix_;
  std::string router_;
  std::vector<Host> hosts_;    /* hosts_[N - 1] is host N */
  std::vector<std::pair<int, int>> isolated_;
  std::vector<std::shared_ptr<LabProcess>> processes_;
  std::string error_;
  int slot_ = -1;              /* in the exit/signal cleanup table */
};

}  // namespace peerjs::test
