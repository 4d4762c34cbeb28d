// cluster-bench: relay through peerjs-signalling nodes sharing one Redis
// (docs/scaling.md), against one node without Redis, with one generator.
//
// It starts its own redis-server (loopback, no persistence) and the nodes
// (--rate-messages 0 --rate-bytes 0), then runs, for each setup, P pairs
// of WebSocket clients; each pair keeps 2*W messages circulating (every
// message received is answered with a new one to its sender, which
// carries the send time). After a warm-up it counts delivered messages
// and their one-way latency for the measurement window, and reads the CPU
// of the nodes and of Redis from /proc/PID/stat over that window.
//
// Setups: one node without --redis; one node with it (what cluster mode
// costs on one node); three nodes with both ends of every pair on one node;
// three nodes with the two ends of every pair on different nodes.
//
// Output: a table on stdout, and one "RESULT setup=... key=value ..." line
// per setup. Dependency-free (libc and libstdc++), like peerjs-loadgen.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef PEERJS_SIGNALLING
#define PEERJS_SIGNALLING "peerjs-signalling"
#endif

namespace {

struct Options
{
  int pairs = 50;
  int window = 8;
  double duration = 4;
  double warmup = 1;
  int payload = 100;
  std::string server = PEERJS_SIGNALLING;
};

double
now_s ()
{
  timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

std::int64_t
now_ns ()
{
  timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

[[noreturn]] void
die (const std::string & why)
{
  fprintf (stderr, "cluster-bench: %s\n", why.c_str ());
  exit (1);
}

int
free_port ()
{
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind (fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0
      || getsockname (fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
    die ("no free port");
  close (fd);
  return ntohs (a.sin_port);
}

int
connect_to (int port)
{
  int fd = socket (AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons (port);
  a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (connect (fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    close (fd);
    return -1;
  }
  int one = 1;
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* A child process, killed with us. */
pid_t
spawn (const std::vector<std::string> & argv)
{
  pid_t pid = fork ();
  if (pid == 0) {
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open ("/dev/null", O_RDWR);
    dup2 (devnull, 1);
    dup2 (devnull, 2);
    std::vector<char *> a;
    for (const auto &s : argv)
      a.push_back (const_cast<char *>(s.c_str ()));
    a.push_back (nullptr);
    execvp (a[0], a.data ());
    _exit (127);
  }
  return pid;
}

void
stop (pid_t pid)
{
  kill (pid, SIGKILL);
  waitpid (pid, nullptr, 0);
}

/* utime + stime of `pid`, in seconds. */
double
cpu_s (pid_t pid)
{
  std::ifstream f ("/proc/" + std::to_string (pid) + "/stat");
  std::string s ((std::istreambuf_iterator<char>(f)),
      std::istreambuf_iterator<char>());
  auto close = s.rfind (')');
  if (close == std::string::npos)
    return 0;
  std::istringstream in (s.substr (close + 2));
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; i++) {
    if (i == 14)
      ut = atof (field.c_str ());
    if (i == 15)
      st = atof (field.c_str ());
  }
  return (ut + st) / sysconf (_SC_CLK_TCK);
}

/* Waits for the port to answer GET /healthz with 200. */
bool
healthy (int port, double timeout_s)
{
  double until = now_s () + timeout_s;
  while (now_s () < until) {
    int fd = connect_to (port);
    if (fd >= 0) {
      const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          "Connection: close\r\n\r\n";
      char buf[256] = {};
      if (write (fd, req, sizeof req - 1) > 0 && read (fd, buf, sizeof buf - 1) > 0
          && strncmp (buf, "HTTP/1.1 200", 12) == 0) {
        close (fd);
        return true;
      }
      close (fd);
    }
    usleep (50000);
  }
  return false;
}

struct Conn
{
  int fd = -1;
  std::string id;
  std::string in, out;
  Conn *partner = nullptr;
  std::string prefix;        /* the message up to the time stamp */
};

/* A text frame, masked with a zero key (RFC 6455 allows any key). */
void
frame (std::string & out, const std::string & text)
{
  out += static_cast<char>(0x81);
  std::size_t n = text.size ();
  if (n < 126) {
    out += static_cast<char>(0x80 | n);
  } else {
    out += static_cast<char>(0x80 | 126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  }
  out.append (4, '\0');
  out += text;
}

/* The next whole frame in `in` (server frames are not masked): its opcode
 * and payload, or false. */
bool
next_frame (std::string & in, std::size_t & pos, int & op, std::string & payload)
{
  if (in.size () - pos < 2)
    return false;
  const auto *p = reinterpret_cast<const unsigned char *>(in.data () + pos);
  op = p[0] & 0x0f;
  std::uint64_t len = p[1] & 0x7f;
  std::size_t head = 2;
  if (len == 126) {
    if (in.size () - pos < 4)
      return false;
    len = (p[2] << 8) | p[3];
    head = 4;
  } else if (len == 127) {
    if (in.size () - pos < 10)
      return false;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | p[2 + i];
    head = 10;
  }
  if (in.size () - pos < head + len)
    return false;
  payload.assign (in, pos + head, len);
  pos += head + len;
  return true;
}

/* Connects, upgrades and reads the greeting (blocking); then the socket
 * is made non-blocking. */
Conn *
open_client (int port)
{
  auto *c = new Conn ();
  c->fd = connect_to (port);
  if (c->fd < 0)
    die ("cannot connect to port " + std::to_string (port));
  std::string req = "GET /peerjs HTTP/1.1\r\nHost: 127.0.0.1:" +
      std::to_string (port) + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  if (write (c->fd, req.data (), req.size ()) != static_cast<ssize_t>(req.size ()))
    die ("upgrade request not sent");
  char buf[4096];
  std::size_t end = std::string::npos;
  while (end == std::string::npos) {
    ssize_t n = read (c->fd, buf, sizeof buf);
    if (n <= 0)
      die ("no upgrade answer");
    c->in.append (buf, n);
    end = c->in.find ("\r\n\r\n");
  }
  if (c->in.compare (0, 12, "HTTP/1.1 101") != 0)
    die ("upgrade refused: " + c->in.substr (0, c->in.find ('\r')));
  c->in.erase (0, end + 4);
  for (;;) {
    std::size_t pos = 0;
    int op = 0;
    std::string text;
    if (next_frame (c->in, pos, op, text)) {
      c->in.erase (0, pos);
      auto at = text.find ("\"id\":\"");
      if (op != 1 || at == std::string::npos)
        die ("no greeting: " + text);
      c->id = text.substr (at + 6, text.find ('"', at + 6) - at - 6);
      break;
    }
    ssize_t n = read (c->fd, buf, sizeof buf);
    if (n <= 0)
      die ("no greeting");
    c->in.append (buf, n);
  }
  fcntl (c->fd, F_SETFL, fcntl (c->fd, F_GETFL) | O_NONBLOCK);
  return c;
}

struct Result
{
  std::string setup;
  int nodes = 0;
  double rate = 0, p50 = 0, p99 = 0;
  double node_cpu = 0, redis_cpu = 0, gen_cpu = 0;
  std::uint64_t delivered = 0;
};

void
send_one (Conn & c)
{
  std::string text = c.prefix + std::to_string (now_ns ()) + "\"}";
  frame (c.out, text);
}

/* P pairs; pair i's ends on ports[a (i)] and ports[b (i)]. */
Result
relay (const Options & o, const std::vector<int> & ports, bool cross,
    const std::vector<pid_t> & nodes, pid_t redis)
{
  std::vector<Conn *> conns;
  std::string pad (o.payload, 'x');
  for (int i = 0; i < o.pairs; i++) {
    int n = ports.size ();
    Conn *x = open_client (ports[i % n]);
    Conn *y = open_client (ports[cross ? (i + 1) % n : i % n]);
    x->partner = y;
    y->partner = x;
    conns.push_back (x);
    conns.push_back (y);
  }
  for (Conn *c : conns)
    c->prefix = "{\"type\":\"m\",\"to\":\"" + c->partner->id + "\",\"pad\":\"" +
        pad + "\",\"data\":\"";
  int ep = epoll_create1 (0);
  for (Conn *c : conns) {
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl (ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  for (Conn *c : conns)
    for (int k = 0; k < o.window; k++)
      send_one (*c);

  std::vector<float> lat;
  lat.reserve (8 << 20);
  std::uint64_t delivered = 0;
  double start = now_s (), measure = start + o.warmup,
      finish = measure + o.duration;
  bool counting = false;
  std::vector<double> node0 (nodes.size ());
  double redis0 = 0;
  rusage ru0 = {};
  std::vector<Conn *> dirty = conns;
  epoll_event evs[256];
  char buf[65536];
  for (;;) {
    for (Conn *c : dirty) {
      while (!c->out.empty ()) {
        ssize_t n = write (c->fd, c->out.data (), c->out.size ());
        if (n <= 0)
          break;
        c->out.erase (0, n);
      }
      epoll_event ev = {};
      ev.events = EPOLLIN | (c->out.empty () ? 0u : static_cast<std::uint32_t>(EPOLLOUT));
      ev.data.ptr = c;
      epoll_ctl (ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    dirty.clear ();
    double t = now_s ();
    if (!counting && t >= measure) {
      counting = true;
      for (std::size_t i = 0; i < nodes.size (); i++)
        node0[i] = cpu_s (nodes[i]);
      redis0 = redis ? cpu_s (redis) : 0;
      getrusage (RUSAGE_SELF, &ru0);
    }
    if (t >= finish)
      break;
    int n = epoll_wait (ep, evs, 256, 100);
    std::int64_t now = now_ns ();
    for (int i = 0; i < n; i++) {
      Conn *c = static_cast<Conn *>(evs[i].data.ptr);
      if (evs[i].events & EPOLLOUT)
        dirty.push_back (c);
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        continue;
      ssize_t r;
      while ((r = read (c->fd, buf, sizeof buf)) > 0)
        c->in.append (buf, r);
      if (r == 0)
        die ("a node closed a connection");
      std::size_t pos = 0;
      int op = 0;
      std::string text;
      while (next_frame (c->in, pos, op, text)) {
        if (op == 9) {
          std::string pong;
          pong += static_cast<char>(0x8a);
          pong += static_cast<char>(0x80 | text.size ());
          pong.append (4, '\0');
          pong += text;
          c->out += pong;
          dirty.push_back (c);
          continue;
        }
        if (op != 1)
          continue;
        auto at = text.find ("\"data\":\"");
        if (at == std::string::npos) {
          if (text.find ("\"error\"") != std::string::npos)
            die ("the node answered an error: " + text);
          continue;
        }
        std::int64_t sent = strtoll (text.c_str () + at + 8, nullptr, 10);
        if (counting) {
          delivered++;
          lat.push_back ((now - sent) / 1e6);
        }
        send_one (*c);
        dirty.push_back (c);
      }
      c->in.erase (0, pos);
    }
    std::sort (dirty.begin (), dirty.end ());
    dirty.erase (std::unique (dirty.begin (), dirty.end ()), dirty.end ());
  }
  double window = now_s () - measure;
  Result res;
  res.delivered = delivered;
  res.rate = delivered / window;
  for (std::size_t i = 0; i < nodes.size (); i++)
    res.node_cpu += (cpu_s (nodes[i]) - node0[i]) / window * 100;
  res.redis_cpu = redis ? (cpu_s (redis) - redis0) / window * 100 : 0;
  rusage ru1 = {};
  getrusage (RUSAGE_SELF, &ru1);
  auto sec = [] (const timeval & tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  res.gen_cpu = (sec (ru1.ru_utime) + sec (ru1.ru_stime) - sec (ru0.ru_utime)
      - sec (ru0.ru_stime)) / window * 100;
  if (!lat.empty ()) {
    std::sort (lat.begin (), lat.end ());
    res.p50 = lat[lat.size () / 2];
    res.p99 = lat[std::min (lat.size () - 1, lat.size () * 99 / 100)];
  }
  for (Conn *c : conns) {
    close (c->fd);
    delete c;
  }
  close (ep);
  return res;
}

void
usage ()
{
  printf ("usage: cluster-bench [--pairs P (50)] [--window W (8)] "
      "[--duration S (4)] [--warmup S (1)] [--payload BYTES (100)] "
      "[--server PATH]\n");
}

}  // namespace

int
main (int argc, char **argv)
{
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&] () -> const char * {
      if (i + 1 >= argc)
        die (a + " needs a value");
      return argv[++i];
    };
    if (a == "--pairs")
      o.pairs = atoi (value ());
    else if (a == "--window")
      o.window = atoi (value ());
    else if (a == "--duration")
      o.duration = atof (value ());
    else if (a == "--warmup")
      o.warmup = atof (value ());
    else if (a == "--payload")
      o.payload = atoi (value ());
    else if (a == "--server")
      o.server = value ();
    else {
      usage ();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  signal (SIGPIPE, SIG_IGN);
  int redis_port = free_port ();
  pid_t redis = spawn ({"redis-server", "--port", std::to_string (redis_port),
        "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"});
  usleep (300000);
  int probe = connect_to (redis_port);
  if (probe < 0)
    die ("redis-server did not start (is it installed?)");
  close (probe);
  std::string url = "redis://127.0.0.1:" + std::to_string (redis_port);

  struct Setup
  {
    const char *name;
    int nodes;
    bool redis, cross;
  };
  const Setup setups[] = {
    {"1 node, no Redis", 1, false, false},
    {"1 node, Redis", 1, true, false},
    {"3 nodes, pairs on one node", 3, true, false},
    {"3 nodes, pairs across nodes", 3, true, true},
  };
  std::vector<Result> results;
  for (const Setup & s : setups) {
    std::vector<int> ports;
    std::vector<pid_t> nodes;
    for (int k = 0; k < s.nodes; k++) {
      int port = free_port ();
      std::vector<std::string> args = {o.server, "--host", "127.0.0.1",
        "--port", std::to_string (port), "--web-root", "",
        "--rate-messages", "0", "--rate-bytes", "0"};
      if (s.redis) {
        args.insert (args.end (), {"--redis", url, "--node-id",
              "bench" + std::to_string (k + 1)});
      }
      nodes.push_back (spawn (args));
      ports.push_back (port);
    }
    for (int port : ports)
      if (!healthy (port, 10))
        die ("a node did not come up on port " + std::to_string (port));
    fprintf (stderr, "cluster-bench: %s ...\n", s.name);
    Result r = relay (o, ports, s.cross, nodes, s.redis ? redis : 0);
    r.setup = s.name;
    r.nodes = s.nodes;
    results.push_back (r);
    for (pid_t p : nodes)
      stop (p);
  }
  stop (redis);

  printf ("\n%d pairs, window %d, %d-byte payload, %.0f s measured "
      "(after %.0f s warm-up), %ld cores\n\n", o.pairs, o.window, o.payload,
      o.duration, o.warmup, sysconf (_SC_NPROCESSORS_ONLN));
  printf ("| setup | relayed msg/s | p50 ms | p99 ms | nodes' CPU %% | "
      "Redis CPU %% | generator CPU %% |\n|---|---|---|---|---|---|---|\n");
  for (const Result & r : results)
    printf ("| %s | %.0f | %.2f | %.2f | %.0f | %.0f | %.0f |\n",
        r.setup.c_str (), r.rate, r.p50, r.p99, r.node_cpu, r.redis_cpu,
        r.gen_cpu);
  printf ("\n");
  for (const Result & r : results)
    printf ("RESULT setup=\"%s\" nodes=%d delivered=%llu rate=%.0f p50_ms=%.3f "
        "p99_ms=%.3f node_cpu=%.1f redis_cpu=%.1f gen_cpu=%.1f\n",
        r.setup.c_str (), r.nodes, static_cast<unsigned long long>(r.delivered),
        r.rate, r.p50, r.p99, r.node_cpu, r.redis_cpu, r.gen_cpu);
  return 0;
}
