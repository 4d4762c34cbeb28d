// peerjs-loadgen: a single-threaded epoll WebSocket load generator for
// signalling servers, used by bench/run to compare peerjs-signalling with
// PeerServer under the same load.
//
// It is deliberately dependency-free (libc + libstdc++ only) and cheap per
// message, so that on a 2-core machine it is never the bottleneck of a
// single-threaded server under test: it reports its own CPU share next to the
// server's so that claim is checked on every run.
//
// Modes:
//   relay  P pairs of clients; each pair keeps 2*W messages circulating, each
//          received message is answered with a new one to its sender (so on
//          average W messages are outstanding per direction). Messages carry
//          a CLOCK_MONOTONIC send time; the receiver computes the one-way
//          latency. After a warm-up, delivered messages and latencies are
//          counted for the measurement window. --background N keeps N more
//          connections open and idle meanwhile; --coalesce-us pauses after
//          each wakeup so messages are handled in batches (see relay_step).
//   idle   First --warm K connections are opened, used and closed, so the
//          server's one-time lazy initialisation is in the baseline, not in
//          the per-connection figure; "BASELINE" is printed. After a line on
//          stdin, N connections are opened (at most --batch handshakes in
//          flight) and greeted; "READY" is printed. They are held (pings
//          answered) until the next line on stdin, EOF or --hold seconds,
//          while the caller samples the server's memory, then closed.
//   storm  N clients connect as fast as --batch clients in flight allow; each
//          joins thread (index mod --threads) as soon as it is greeted, then
//          sends a message to itself. The server handles one connection's
//          messages in order, so that message coming back means the join was
//          handled (and relayed to the members already there): it is the
//          join's acknowledgement. Reports joins/s and, from the connect()
//          call, p50/p99 to the greeting and to the acknowledgement; counts
//          the thread:connect relays every client got against the expected
//          m(m-1)/2 per thread of m. PeerServer has no threads: its clients
//          are done at OPEN; with --no-join ours are done at the greeting.
//
// Connections come from 127.0.0.1, or with --sources K (default: enough for
// the count, a quarter of the ephemeral port range per address) from
// 127.0.0.1 .. 127.0.0.K in turn, each socket bound before connect(): every
// connection to one server address and port takes one local port of its
// source address (see plan_sources).
// --token T is sent as ?token=T on the WebSocket URL (peerjs protocol).
//
// Output: human-readable progress on stderr, and one machine-readable
// "RESULT key=value ..." line on stdout (plus "BASELINE"/"READY" lines in idle
// mode, which the caller waits for).

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
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

// ---------------------------------------------------------------- utilities

int64_t now_ns()
{
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t cpu_ns_self()
{
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// utime + stime of another process, in ns (-1 when unreadable).
int64_t cpu_ns_of(int pid)
{
  if (pid <= 0)
    return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char buf[2048];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // The command name may contain spaces; fields restart after the last ')'.
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  p += 2;
  // Field 3 is the state; utime and stime are fields 14 and 15.
  unsigned long long utime = 0, stime = 0;
  int field = 3;
  char *save = nullptr;
  for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(nullptr, " ", &save), field++) {
    if (field == 14)
      utime = strtoull(tok, nullptr, 10);
    else if (field == 15) {
      stime = strtoull(tok, nullptr, 10);
      break;
    }
  }
  long hz = sysconf(_SC_CLK_TCK);
  return int64_t((utime + stime) * (1000000000ULL / (unsigned long long)hz));
}

// VmRSS of another process in KiB (-1 when unreadable).
long rss_kib_of(int pid)
{
  if (pid <= 0)
    return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = atol(line + 6);
      break;
    }
  fclose(f);
  return kib;
}

// Machine-wide busy and steal time in ns, from the first line of /proc/stat:
// lets the report say when something besides the server and us used the CPU.
struct SysCpu {
  int64_t busy = -1;
  int64_t steal = -1;
};

SysCpu sys_cpu()
{
  SysCpu r;
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return r;
  unsigned long long v[10] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                 &v[5], &v[6], &v[7], &v[8], &v[9]);
  fclose(f);
  if (n < 8)
    return r;
  // user nice system idle iowait irq softirq steal (guest time is inside user)
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6];
  unsigned long long tick = 1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK);
  r.busy = int64_t(busy * tick);
  r.steal = int64_t(v[7] * tick);
  return r;
}

uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
uint64_t rng()
{
  // xorshift64*: masking keys and ids only need to be unpredictable-ish.
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

std::string base64(const unsigned char *data, size_t len)
{
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = uint32_t(data[i]) << 16;
    if (i + 1 < len)
      v |= uint32_t(data[i + 1]) << 8;
    if (i + 2 < len)
      v |= data[i + 2];
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < len ? tbl[(v >> 6) & 63] : '=';
    out += i + 2 < len ? tbl[v & 63] : '=';
  }
  return out;
}

// Minimal SHA-1, only to verify Sec-WebSocket-Accept during the handshake.
void sha1(const std::string &msg, unsigned char out[20])
{
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m = msg;
  uint64_t bitlen = uint64_t(msg.size()) * 8;
  m += char(0x80);
  while (m.size() % 64 != 56)
    m += char(0);
  for (int i = 7; i >= 0; i--)
    m += char((bitlen >> (i * 8)) & 0xff);
  auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = uint32_t((unsigned char)m[off + 4 * i]) << 24 | uint32_t((unsigned char)m[off + 4 * i + 1]) << 16 |
             uint32_t((unsigned char)m[off + 4 * i + 2]) << 8 | uint32_t((unsigned char)m[off + 4 * i + 3]);
    for (int i = 16; i < 80; i++)
      w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++)
      out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

// Finds the string value of "key" in a flat-enough JSON text: the first
// occurrence of "key" followed by optional blanks, ':', blanks and '"'.
// Values we look for (ids, types, our payloads) contain no escapes.
bool json_str(const char *s, size_t len, const char *key, const char **val, size_t *vlen)
{
  char pat[40];
  size_t klen = strlen(key);
  if (klen + 2 > sizeof pat)
    return false;
  pat[0] = '"';
  memcpy(pat + 1, key, klen);
  pat[klen + 1] = '"';
  size_t plen = klen + 2;
  const char *end = s + len;
  const char *p = s;
  while (p < end) {
    const char *q = (const char *)memmem(p, size_t(end - p), pat, plen);
    if (!q)
      return false;
    const char *r = q + plen;
    p = q + 1;
    while (r < end && (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r'))
      r++;
    if (r >= end || *r != ':')
      continue;
    r++;
    while (r < end && (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r'))
      r++;
    if (r >= end || *r != '"')
      continue;
    r++;
    const char *v = r;
    while (r < end && *r != '"') {
      if (*r == '\\')
        r++;
      r++;
    }
    if (r >= end)
      return false;
    *val = v;
    *vlen = size_t(r - v);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- options

enum class Proto { PeerJS, PeerServer };
enum class Mode { Relay, Idle, Storm };

struct Options {
  Proto proto = Proto::PeerJS;
  Mode mode = Mode::Relay;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/peerjs";
  std::string key = "peerjs";  // PeerServer API key
  int pairs = 50;
  int window = 8;
  double duration = 5.0;
  double warmup = 1.0;
  int payload = 100;
  int conns = 1000;
  int background = 0;  // relay: extra idle connections held during the run
  int warm_conns = 10;
  int batch = 100;
  double hold = 60.0;
  double timeout = 0;  // whole-run safety limit, 0 = derived from the mode
  double connect_timeout = 0;  // idle: stop waiting for connections after this long, 0 = --timeout
  int server_pid = 0;
  int coalesce_us = 0;  // pause after each busy wakeup so replies go out in batches
  int threads = 0;      // storm: threads the clients join (0: one per 10 clients)
  bool no_join = false;  // storm: done at the greeting, no thread
  int sources = 0;      // source addresses, 0 = as many as the count needs
  std::string token;    // ?token= (peerjs)
  bool verbose = false;
};

void usage()
{
  fprintf(stderr,
          "usage: peerjs-loadgen --port PORT [options]\n"
          "  --proto peerjs|peerserver   wire protocol (default peerjs)\n"
          "  --mode relay|idle|storm     benchmark (default relay)\n"
          "  --host ADDR                 IPv4 loopback address (default 127.0.0.1)\n"
          "  --path PATH                 WebSocket path (default /peerjs)\n"
          "  --key KEY                   PeerServer key (default peerjs)\n"
          "  relay: --pairs P (50) --window W (8) --duration S (5) --warmup S (1) --payload BYTES (100)\n"
          "         --background N (0): N more connections that stay idle during the run\n"
          "  idle:  --conns N (1000) --warm K (10) --hold S (60)\n"
          "         --connect-timeout S: stop waiting for connections after S, go on with those up\n"
          "  storm: --conns N --threads T (N/10): clients in flight limited by --batch\n"
          "         --no-join: done at the greeting (peerjs)\n"
          "  --batch B                   max handshakes in flight (default 100)\n"
          "  --sources K                 source addresses 127.0.0.1 .. 127.0.0.K (default: as needed)\n"
          "  --token T                   auth token, sent as ?token=T (peerjs)\n"
          "  --coalesce-us US            relay: pause US microseconds after each wakeup that had\n"
          "                              events, so messages are handled in batches (default 0)\n"
          "  --server-pid PID            report the server's CPU over the measurement\n"
          "  --timeout S                 hard limit for the whole run\n"
          "  -v                          verbose\n");
}

bool parse_args(int argc, char **argv, Options &o)
{
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&](const char *what) -> const char * {
      if (i + 1 >= argc) {
        fprintf(stderr, "missing value for %s\n", what);
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--proto") {
      std::string v = next("--proto");
      if (v == "peerjs")
        o.proto = Proto::PeerJS;
      else if (v == "peerserver")
        o.proto = Proto::PeerServer;
      else
        return false;
    } else if (a == "--mode") {
      std::string v = next("--mode");
      if (v == "relay")
        o.mode = Mode::Relay;
      else if (v == "idle")
        o.mode = Mode::Idle;
      else if (v == "storm")
        o.mode = Mode::Storm;
      else
        return false;
    } else if (a == "--host")
      o.host = next("--host");
    else if (a == "--port")
      o.port = atoi(next("--port"));
    else if (a == "--path")
      o.path = next("--path");
    else if (a == "--key")
      o.key = next("--key");
    else if (a == "--pairs")
      o.pairs = atoi(next("--pairs"));
    else if (a == "--window")
      o.window = atoi(next("--window"));
    else if (a == "--duration")
      o.duration = atof(next("--duration"));
    else if (a == "--warmup")
      o.warmup = atof(next("--warmup"));
    else if (a == "--payload")
      o.payload = atoi(next("--payload"));
    else if (a == "--conns")
      o.conns = atoi(next("--conns"));
    else if (a == "--background")
      o.background = atoi(next("--background"));
    else if (a == "--warm")
      o.warm_conns = atoi(next("--warm"));
    else if (a == "--batch")
      o.batch = atoi(next("--batch"));
    else if (a == "--hold")
      o.hold = atof(next("--hold"));
    else if (a == "--timeout")
      o.timeout = atof(next("--timeout"));
    else if (a == "--coalesce-us")
      o.coalesce_us = atoi(next("--coalesce-us"));
    else if (a == "--server-pid")
      o.server_pid = atoi(next("--server-pid"));
    else if (a == "--connect-timeout")
      o.connect_timeout = atof(next("--connect-timeout"));
    else if (a == "--no-join")
      o.no_join = true;
    else if (a == "--threads")
      o.threads = atoi(next("--threads"));
    else if (a == "--sources")
      o.sources = atoi(next("--sources"));
    else if (a == "--token")
      o.token = next("--token");
    else if (a == "-v")
      o.verbose = true;
    else if (a == "-h" || a == "--help") {
      usage();
      exit(0);
    } else {
      fprintf(stderr, "unknown argument %s\n", a.c_str());
      return false;
    }
  }
  if (o.port <= 0 || o.port > 65535 || o.pairs < 1 || o.window < 1 || o.conns < 1 || o.batch < 1 ||
      o.background < 0 || o.payload < 40 || o.duration <= 0 || o.threads < 0 || o.sources < 0 ||
      o.sources > 254)
    return false;
  o.background += o.background & 1;  // keeps partners (index ^ 1) inside the pairs
  // This tool only ever talks to this machine.
  in_addr addr;
  if (inet_pton(AF_INET, o.host.c_str(), &addr) != 1 || (ntohl(addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "--host must be an IPv4 loopback address (127.0.0.0/8)\n");
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- connections

enum class State { Connecting, Handshake, Greeting, Open, Closing, Closed };

struct Conn {
  int fd = -1;
  int index = 0;
  State state = State::Connecting;
  std::string id;     // session id (server-given for peerjs, ours for PeerServer)
  std::string token;  // PeerServer token
  std::string ws_key;
  std::string in;  // unparsed bytes
  size_t in_off = 0;
  std::string frag;  // fragmented message being assembled
  int frag_opcode = 0;
  std::string out;  // bytes not yet written
  size_t out_off = 0;
  bool want_out = false;   // EPOLLOUT armed
  bool dirty = false;      // on the flush list
  int peer = -1;           // relay partner index
  uint64_t send_seq = 0;   // next seq we send to the partner
  uint64_t recv_seq = 0;   // next seq we expect from the partner
  int64_t t_start = 0;     // storm: connect() called
  int64_t t_greet = 0;     // storm: greeting received
  int64_t t_join = 0;      // storm: join acknowledged
  bool finished = false;   // storm: acknowledged, or failed
};

struct Stats {
  uint64_t connect_failed = 0;
  uint64_t closed_early = 0;  // closed by the server before we asked
  uint64_t errors = 0;        // error frames / protocol trouble reported by the server
  uint64_t bad = 0;           // messages we could not parse or attribute
  uint64_t out_of_order = 0;  // sequence gaps or repeats on a direction
  uint64_t wrong_from = 0;    // sender field not the partner's id
  uint64_t other = 0;         // frames of other types after the greeting
  uint64_t pings = 0;
  uint64_t join_relays = 0;    // storm: thread:connect relays received
  uint64_t wakeups = 0;        // epoll_wait returns
  uint64_t events = 0;         // events they carried
  uint64_t delivered = 0;      // messages received in the measurement window
  uint64_t delivered_all = 0;  // messages received at any time
  uint64_t sent = 0;
  std::vector<uint32_t> lat_us;  // one-way latencies in the window, microseconds
  std::string first_error;
};

class LoadGen {
public:
  explicit LoadGen(const Options &o) : opt(o) {}
  int run();

private:
  const Options &opt;
  int ep = -1;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<Conn *> flush_list;
  Stats st;
  bool measuring = false;
  bool sending = true;
  bool go = false;  // stdin asked us to move on (idle mode)
  int greeted = 0;
  int settled = 0;  // connections greeted, or closed before their greeting
  int finished = 0;  // storm: clients acknowledged or failed
  int joined = 0;    // storm: clients whose join was acknowledged
  int n_sources = 1;
  int in_flight_handshakes = 0;
  int next_to_start = 0;
  int target_conns = 0;
  std::string padding;
  std::string scratch;  // message being built

  Conn *start_conn(int index);
  void close_conn(Conn *c, bool by_us);
  void on_event(Conn *c, uint32_t events);
  void on_readable(Conn *c);
  bool on_handshake(Conn *c);
  void parse_frames(Conn *c);
  void on_text(Conn *c, const char *s, size_t n);
  void on_greeted(Conn *c);
  void on_storm_text(Conn *c, std::string_view type, const char *s, size_t n);
  void finish(Conn *c);
  void plan_sources(int total);
  void on_relay_message(Conn *c, const char *s, size_t n);
  void send_frame(Conn *c, int opcode, const char *data, size_t len);
  void send_relay(Conn *c);
  void queue_flush(Conn *c);
  void flush(Conn *c);
  void flush_all();
  int poll_once(int timeout_ms);
  bool ramp_up(const char *prefix, int64_t deadline);
  void on_stdin();
  void relay_step();
  void wait_for_go(int64_t until);
  void note_error(const char *what, const char *s, size_t n);
  int run_relay();
  int run_idle();
  int run_storm();
  void close_all(int64_t deadline);
};

Conn *LoadGen::start_conn(int index)
{
  auto c = std::make_unique<Conn>();
  c->index = index;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("socket");
    exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (n_sources > 1) {
    // The local port is chosen at connect(), per destination, not at bind().
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + uint32_t(index % n_sources));
    if (bind(fd, (sockaddr *)&src, sizeof src) < 0) {
      fprintf(stderr, "loadgen: bind to 127.0.0.%d: %s\n", 1 + index % n_sources, strerror(errno));
      exit(1);
    }
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(opt.port));
  inet_pton(AF_INET, opt.host.c_str(), &sa.sin_addr);
  c->fd = fd;
  c->t_start = now_ns();
  int r = connect(fd, (sockaddr *)&sa, sizeof sa);
  if (r < 0 && errno != EINPROGRESS) {
    st.connect_failed++;
    if (st.first_error.empty())
      st.first_error = std::string("connect: ") + strerror(errno);
    ::close(fd);
    c->fd = -1;
    c->state = State::Closed;
    settled++;
    finish(c.get());
    conns[size_t(index)] = std::move(c);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.ptr = c.get();
  c->want_out = true;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  in_flight_handshakes++;
  Conn *raw = c.get();
  conns[size_t(index)] = std::move(c);
  return raw;
}

void LoadGen::note_error(const char *what, const char *s, size_t n)
{
  if (st.first_error.empty()) {
    st.first_error = what;
    if (s)
      st.first_error += ": " + std::string(s, std::min<size_t>(n, 300));
  }
  if (opt.verbose)
    fprintf(stderr, "loadgen: %s %.*s\n", what, int(std::min<size_t>(n, 300)), s ? s : "");
}

void LoadGen::close_conn(Conn *c, bool by_us)
{
  if (c->state == State::Closed)
    return;
  if (!by_us) {
    if (c->state == State::Open)
      st.closed_early++;
    else if (c->state != State::Closing) {
      st.connect_failed++;
      if (c->state != State::Connecting)  // a failed connect() was reported already
        note_error("connection closed before the greeting", nullptr, 0);
    }
  }
  if (c->state == State::Connecting || c->state == State::Handshake || c->state == State::Greeting) {
    in_flight_handshakes--;
    settled++;
  }
  finish(c);
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  c->fd = -1;
  c->state = State::Closed;
  c->out.clear();
  c->out_off = 0;
  std::string().swap(c->in);
  std::string().swap(c->frag);
}

void LoadGen::queue_flush(Conn *c)
{
  if (!c->dirty) {
    c->dirty = true;
    flush_list.push_back(c);
  }
}

void LoadGen::flush(Conn *c)
{
  c->dirty = false;
  if (c->state == State::Closed || c->state == State::Connecting)
    return;
  while (c->out_off < c->out.size()) {
    ssize_t w = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->out_off += size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c->want_out) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = true;
      }
      return;
    }
    close_conn(c, false);
    return;
  }
  c->out.clear();
  c->out_off = 0;
  if (c->want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = false;
  }
}

void LoadGen::flush_all()
{
  // Replies produced while handling one batch of events leave in one write
  // per connection.
  for (size_t i = 0; i < flush_list.size(); i++)
    flush(flush_list[i]);
  flush_list.clear();
}

void LoadGen::send_frame(Conn *c, int opcode, const char *data, size_t len)
{
  unsigned char hdr[14];
  size_t h = 0;
  hdr[h++] = (unsigned char)(0x80 | opcode);
  if (len < 126)
    hdr[h++] = (unsigned char)(0x80 | len);
  else if (len < 65536) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (unsigned char)(len >> 8);
    hdr[h++] = (unsigned char)len;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  uint32_t m = uint32_t(rng());
  unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8), (unsigned char)(m >> 16),
                           (unsigned char)(m >> 24)};
  memcpy(hdr + h, mask, 4);
  h += 4;
  size_t base = c->out.size();
  c->out.append((const char *)hdr, h);
  c->out.append(data, len);
  char *p = &c->out[base + h];
  for (size_t i = 0; i < len; i++)
    p[i] ^= (char)mask[i & 3];
  queue_flush(c);
}

void LoadGen::send_relay(Conn *c)
{
  if (!sending || c->state != State::Open)
    return;
  Conn *peer = conns[size_t(c->peer)].get();
  if (peer->state != State::Open)
    return;
  // Payload: "<send ns>.<seq>.<padding>", so the receiver can compute the
  // one-way latency and check per-direction ordering.
  char head[64];
  int hl = snprintf(head, sizeof head, "%" PRId64 ".%" PRIu64 ".", now_ns(), c->send_seq++);
  std::string &msg = scratch;
  msg.clear();
  if (opt.proto == Proto::PeerJS) {
    msg += "{\"type\":\"message\",\"to\":\"";
    msg += peer->id;
    msg += "\",\"data\":\"";
  } else {
    msg += "{\"type\":\"OFFER\",\"dst\":\"";
    msg += peer->id;
    msg += "\",\"payload\":{\"data\":\"";
  }
  msg.append(head, size_t(hl));
  if (hl < opt.payload)
    msg.append(padding, 0, size_t(opt.payload - hl));
  msg += opt.proto == Proto::PeerJS ? "\"}" : "\"}}";
  send_frame(c, 1, msg.data(), msg.size());
  st.sent++;
}

void LoadGen::on_greeted(Conn *c)
{
  c->state = State::Open;
  in_flight_handshakes--;
  greeted++;
  settled++;
  if (opt.mode != Mode::Storm)
    return;
  c->t_greet = now_ns();
  if (opt.proto == Proto::PeerServer || opt.no_join) {
    finish(c);
    return;
  }
  // The join, then the probe that acknowledges it (see the modes above).
  int threads = opt.threads > 0 ? opt.threads : std::max(1, opt.conns / 10);
  std::string &msg = scratch;
  msg = "{\"type\":\"thread:connect\",\"thread\":\"storm-" + std::to_string(c->index % threads) +
        "\",\"constraints\":null}";
  send_frame(c, 1, msg.data(), msg.size());
  msg = "{\"type\":\"message\",\"to\":\"" + c->id + "\",\"data\":\"joined\"}";
  send_frame(c, 1, msg.data(), msg.size());
}

// A storm client is done: acknowledged (t_join set), or failed.
void LoadGen::finish(Conn *c)
{
  if (opt.mode != Mode::Storm || c->finished)
    return;
  c->finished = true;
  finished++;
  if (c->t_join || ((opt.proto == Proto::PeerServer || opt.no_join) && c->t_greet))
    joined++;
}

void LoadGen::on_storm_text(Conn *c, std::string_view t, const char *s, size_t n)
{
  if (t == "thread:connect") {
    st.join_relays++;
    return;
  }
  const char *from;
  size_t fl;
  if (t == "message" && !c->t_join && json_str(s, n, "from", &from, &fl) && std::string_view(from, fl) == c->id) {
    c->t_join = now_ns();
    finish(c);
    return;
  }
  st.other++;
  note_error("unexpected frame in the storm", s, n);
}

void LoadGen::on_relay_message(Conn *c, const char *s, size_t n)
{
  const char *data;
  size_t dl;
  if (!json_str(s, n, "data", &data, &dl)) {
    st.bad++;
    note_error("relayed message without data", s, n);
    return;
  }
  // "<send ns>.<seq>.<padding>": digits end at the dots, inside the frame.
  auto number = [](const char *p, const char *end, uint64_t *out) {
    uint64_t v = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9')
      v = v * 10 + uint64_t(*q++ - '0');
    *out = v;
    return q > p && q < end && *q == '.' ? q + 1 : nullptr;
  };
  uint64_t sent_at_u = 0, seq = 0;
  const char *rest = number(data, data + dl, &sent_at_u);
  if (!rest || !number(rest, data + dl, &seq) || sent_at_u == 0) {
    st.bad++;
    note_error("unparsable payload", s, n);
    return;
  }
  int64_t sent_at = int64_t(sent_at_u);
  if (c->peer >= 0) {
    Conn *peer = conns[size_t(c->peer)].get();
    const char *from;
    size_t fl;
    const char *from_key = opt.proto == Proto::PeerJS ? "from" : "src";
    if (!json_str(s, n, from_key, &from, &fl) || fl != peer->id.size() ||
        memcmp(from, peer->id.data(), fl) != 0) {
      st.wrong_from++;
      note_error("message not from the partner", s, n);
    }
  }
  if (seq != c->recv_seq) {
    st.out_of_order++;
    if (opt.verbose)
      fprintf(stderr, "loadgen: conn %d expected seq %" PRIu64 " got %" PRIu64 "\n", c->index, c->recv_seq, seq);
  }
  c->recv_seq = seq + 1;
  st.delivered_all++;
  if (measuring) {
    int64_t lat = now_ns() - sent_at;
    st.delivered++;
    st.lat_us.push_back(uint32_t(std::min<int64_t>(lat / 1000, UINT32_MAX)));
  }
  // Closed loop: every delivered message is answered with a new one to its
  // sender, which keeps the number of messages in flight per pair constant.
  send_relay(c);
}

void LoadGen::on_text(Conn *c, const char *s, size_t n)
{
  const char *type;
  size_t tl;
  if (!json_str(s, n, "type", &type, &tl)) {
    st.bad++;
    note_error("frame without type", s, n);
    return;
  }
  std::string_view t(type, tl);
  if (opt.proto == Proto::PeerJS) {
    if (t == "error") {
      st.errors++;
      note_error("server error", s, n);
      return;
    }
    if (c->state == State::Greeting) {
      const char *id;
      size_t il;
      if (t == "socket:connect" && json_str(s, n, "id", &id, &il) && il > 0) {
        c->id.assign(id, il);
        on_greeted(c);
      } else {
        st.bad++;
        note_error("unexpected first frame", s, n);
      }
      return;
    }
    if (opt.mode == Mode::Storm) {
      on_storm_text(c, t, s, n);
      return;
    }
    if (t == "message") {
      on_relay_message(c, s, n);
      return;
    }
  } else {
    if (t == "ERROR" || t == "ID-TAKEN" || t == "EXPIRE" || t == "LEAVE") {
      st.errors++;
      note_error("server error", s, n);
      return;
    }
    if (c->state == State::Greeting) {
      if (t == "OPEN")
        on_greeted(c);
      else {
        st.bad++;
        note_error("unexpected first frame", s, n);
      }
      return;
    }
    if (t == "OFFER") {
      on_relay_message(c, s, n);
      return;
    }
  }
  st.other++;
  if (opt.verbose)
    fprintf(stderr, "loadgen: other frame %.*s\n", int(std::min<size_t>(n, 200)), s);
}

bool LoadGen::on_handshake(Conn *c)
{
  size_t end = c->in.find("\r\n\r\n", c->in_off);
  if (end == std::string::npos) {
    if (c->in.size() > 16384) {
      note_error("oversized handshake response", c->in.data(), c->in.size());
      close_conn(c, false);
    }
    return false;
  }
  std::string head = c->in.substr(c->in_off, end - c->in_off);
  c->in_off = end + 4;
  if (head.compare(0, 12, "HTTP/1.1 101") != 0) {
    note_error("handshake refused", head.data(), head.size());
    close_conn(c, false);
    return false;
  }
  // Verify Sec-WebSocket-Accept.
  unsigned char dig[20];
  sha1(c->ws_key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", dig);
  std::string expect = base64(dig, 20);
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return char(tolower(ch)); });
  size_t p = lower.find("\r\nsec-websocket-accept:");
  bool ok = false;
  if (p != std::string::npos) {
    p += strlen("\r\nsec-websocket-accept:");
    while (p < head.size() && head[p] == ' ')
      p++;
    size_t e = head.find("\r\n", p);
    std::string got = head.substr(p, e == std::string::npos ? std::string::npos : e - p);
    while (!got.empty() && (got.back() == ' ' || got.back() == '\t'))
      got.pop_back();
    ok = got == expect;
  }
  if (!ok) {
    note_error("bad Sec-WebSocket-Accept", head.data(), head.size());
    close_conn(c, false);
    return false;
  }
  c->state = State::Greeting;
  return true;
}

void LoadGen::parse_frames(Conn *c)
{
  for (;;) {
    if (c->state == State::Closed)
      return;
    const unsigned char *p = (const unsigned char *)c->in.data() + c->in_off;
    size_t avail = c->in.size() - c->in_off;
    if (avail < 2)
      break;
    bool fin = p[0] & 0x80;
    int opcode = p[0] & 0x0f;
    bool masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
      if (avail < 4)
        break;
      len = uint64_t(p[2]) << 8 | p[3];
      h = 4;
    } else if (len == 127) {
      if (avail < 10)
        break;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | p[2 + i];
      h = 10;
    }
    if (len > (64u << 20)) {
      note_error("oversized frame from server", nullptr, 0);
      close_conn(c, false);
      return;
    }
    unsigned char mask[4] = {0, 0, 0, 0};
    if (masked) {
      if (avail < h + 4)
        break;
      memcpy(mask, p + h, 4);
      h += 4;
    }
    if (avail < h + len)
      break;
    char *payload = (char *)c->in.data() + c->in_off + h;
    if (masked)
      for (uint64_t i = 0; i < len; i++)
        payload[i] ^= (char)mask[i & 3];
    c->in_off += h + size_t(len);

    switch (opcode) {
    case 0x0:  // continuation
      c->frag.append(payload, size_t(len));
      if (fin) {
        if (c->frag_opcode == 1)
          on_text(c, c->frag.data(), c->frag.size());
        c->frag.clear();
      }
      break;
    case 0x1:
    case 0x2:
      if (!fin) {
        c->frag.assign(payload, size_t(len));
        c->frag_opcode = opcode;
      } else if (opcode == 1) {
        on_text(c, payload, size_t(len));
      }
      break;
    case 0x8:  // close
      if (c->state != State::Closing) {
        // Echo the status code back as the close handshake requires.
        send_frame(c, 0x8, payload, std::min<size_t>(size_t(len), 2));
        flush(c);
        if (c->state != State::Closed && c->state != State::Closing) {
          char code[8] = "";
          if (len >= 2)
            snprintf(code, sizeof code, "%d", ((unsigned char)payload[0] << 8) | (unsigned char)payload[1]);
          note_error("server closed the connection, code", code, strlen(code));
        }
      }
      close_conn(c, false);
      return;
    case 0x9:  // ping
      st.pings++;
      send_frame(c, 0xA, payload, size_t(len));
      break;
    case 0xA:  // pong
      break;
    default:
      note_error("unknown opcode", nullptr, 0);
      close_conn(c, false);
      return;
    }
  }
  if (c->in_off > 0 && c->in_off == c->in.size()) {
    c->in.clear();
    c->in_off = 0;
  } else if (c->in_off > 65536) {
    c->in.erase(0, c->in_off);
    c->in_off = 0;
  }
}

void LoadGen::on_readable(Conn *c)
{
  static char buf[256 * 1024];
  for (;;) {
    ssize_t r = ::recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
      c->in.append(buf, size_t(r));
      if (size_t(r) < sizeof buf)
        break;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    // EOF or error: process what we have, then close.
    if (c->state == State::Handshake && !on_handshake(c)) {
      close_conn(c, false);
      return;
    }
    if (c->state != State::Closed)
      parse_frames(c);
    close_conn(c, c->state == State::Closing);
    return;
  }
  if (c->state == State::Handshake && !on_handshake(c))
    return;
  parse_frames(c);
}

void LoadGen::on_event(Conn *c, uint32_t events)
{
  if (c->state == State::Closed)
    return;
  if (c->state == State::Connecting) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t el = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
      note_error("connect failed", strerror(err), strlen(strerror(err)));
      close_conn(c, false);
      return;
    }
    if (events & EPOLLOUT) {
      int err = 0;
      socklen_t el = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
      if (err) {
        note_error("connect failed", strerror(err), strlen(strerror(err)));
        close_conn(c, false);
        return;
      }
      unsigned char k[16];
      for (int i = 0; i < 16; i += 8) {
        uint64_t v = rng();
        memcpy(k + i, &v, 8);
      }
      c->ws_key = base64(k, 16);
      std::string target = opt.path;
      if (opt.proto == Proto::PeerJS && !opt.token.empty())
        target += "?token=" + opt.token;
      if (opt.proto == Proto::PeerServer) {
        c->token = std::to_string(rng() % 1000000000ULL);
        target += "?key=" + opt.key + "&id=" + c->id + "&token=" + c->token;
      }
      c->out = "GET " + target + " HTTP/1.1\r\nHost: " + opt.host + ":" + std::to_string(opt.port) +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c->ws_key +
               "\r\nSec-WebSocket-Version: 13\r\n\r\n";
      c->out_off = 0;
      c->state = State::Handshake;
      flush(c);
      return;
    }
  }
  if (events & EPOLLIN)
    on_readable(c);
  else if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    on_readable(c);  // drains to EOF and closes
    return;
  }
  if (c->state != State::Closed && (events & EPOLLOUT) && c->out_off < c->out.size())
    flush(c);
}

int LoadGen::poll_once(int timeout_ms)
{
  epoll_event evs[512];
  int n = epoll_wait(ep, evs, 512, timeout_ms);
  st.wakeups++;
  if (n > 0)
    st.events += uint64_t(n);
  if (n < 0) {
    if (errno == EINTR)
      return 0;
    perror("epoll_wait");
    exit(1);
  }
  for (int i = 0; i < n; i++) {
    if (evs[i].data.ptr == nullptr) {
      on_stdin();
      continue;
    }
    on_event((Conn *)evs[i].data.ptr, evs[i].events);
  }
  flush_all();
  return n;
}

// Opens connections up to target_conns with at most opt.batch handshakes in
// flight, and waits until each is greeted or has failed. PeerServer clients
// choose their own ids ("<prefix><pid>x<index>"); partners are index ^ 1.
bool LoadGen::ramp_up(const char *prefix, int64_t deadline)
{
  int64_t next_report = now_ns() + 1000000000;
  while (now_ns() < deadline) {
    if (opt.verbose && now_ns() >= next_report) {
      fprintf(stderr, "loadgen: %d greeted, %d handshakes in flight\n", greeted, in_flight_handshakes);
      next_report += 1000000000;
    }
    while (next_to_start < target_conns && in_flight_handshakes < opt.batch) {
      int idx = next_to_start++;
      Conn *c = start_conn(idx);
      if (!c)
        continue;
      c->peer = idx ^ 1;
      if (opt.proto == Proto::PeerServer)
        c->id = prefix + std::to_string(getpid()) + "x" + std::to_string(idx);
    }
    if (next_to_start == target_conns && settled == target_conns)
      return true;
    poll_once(20);
  }
  return false;
}

void LoadGen::close_all(int64_t deadline)
{
  sending = false;
  for (auto &cp : conns) {
    Conn *c = cp.get();
    if (c && c->state != State::Closed && c->state != State::Connecting) {
      static const char code[2] = {char(1000 >> 8), char(1000 & 0xff)};
      c->state = State::Closing;
      send_frame(c, 0x8, code, 2);
    } else if (c && c->state == State::Connecting) {
      close_conn(c, true);
    }
  }
  flush_all();
  // Wait for the servers' close frames or EOF, then drop whatever is left.
  while (now_ns() < deadline) {
    bool any = false;
    for (auto &cp : conns)
      if (cp && cp->state != State::Closed) {
        any = true;
        break;
      }
    if (!any)
      break;
    poll_once(20);
  }
  for (auto &cp : conns)
    if (cp && cp->state != State::Closed)
      close_conn(cp.get(), true);
}

// One turn of the relay loop. A server that answers each message on its own
// would otherwise wake this process once per message, and on a VM a wakeup
// costs more than handling the message; a short pause lets a batch build up,
// so the generator stays much cheaper than the server under test.
void LoadGen::relay_step()
{
  int n = poll_once(10);
  if (n > 0 && opt.coalesce_us > 0) {
    timespec ts{0, long(opt.coalesce_us) * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
  }
}

int LoadGen::run_relay()
{
  // Background connections first (idle, never written to), then the pairs:
  // pairs are at indexes background .. background + 2P - 1.
  int n = opt.pairs * 2 + opt.background;
  target_conns = n;
  conns.resize(size_t(n));
  plan_sources(n);
  int64_t t0 = now_ns();
  int64_t limit = t0 + int64_t((opt.timeout > 0 ? opt.timeout : opt.warmup + opt.duration + 120) * 1e9);
  ramp_up("b", limit);
  double connect_s = double(now_ns() - t0) / 1e9;
  fprintf(stderr, "loadgen: %d/%d connections greeted in %.2f s\n", greeted, n, connect_s);
  if (greeted < n) {
    fprintf(stderr, "loadgen: not all connections came up (%s)\n", st.first_error.c_str());
  }

  // Start the circulation: each side of each pair sends W messages.
  for (int i = opt.background; i < n; i++) {
    Conn *c = conns[size_t(i)].get();
    if (c->state == State::Open && conns[size_t(c->peer)]->state == State::Open)
      for (int k = 0; k < opt.window; k++)
        send_relay(c);
  }
  flush_all();

  int64_t warm_end = now_ns() + int64_t(opt.warmup * 1e9);
  while (now_ns() < warm_end && now_ns() < limit)
    relay_step();

  st.delivered = 0;
  st.lat_us.clear();
  st.lat_us.reserve(1 << 20);
  measuring = true;
  int64_t m0 = now_ns();
  int64_t self0 = cpu_ns_self();
  int64_t srv0 = cpu_ns_of(opt.server_pid);
  SysCpu sys0 = sys_cpu();
  int64_t m_end = m0 + int64_t(opt.duration * 1e9);
  while (now_ns() < m_end && now_ns() < limit)
    relay_step();
  int64_t m1 = now_ns();
  int64_t self1 = cpu_ns_self();
  int64_t srv1 = cpu_ns_of(opt.server_pid);
  SysCpu sys1 = sys_cpu();
  measuring = false;
  double secs = double(m1 - m0) / 1e9;

  close_all(now_ns() + int64_t(2e9));

  std::vector<uint32_t> &v = st.lat_us;
  auto pct = [&](double q) -> double {
    if (v.empty())
      return -1;
    size_t k = std::min(v.size() - 1, size_t(q * double(v.size())));
    std::nth_element(v.begin(), v.begin() + long(k), v.end());
    return double(v[k]);
  };
  double p50 = pct(0.50), p99 = pct(0.99), p999 = pct(0.999);
  double mx = v.empty() ? -1 : double(*std::max_element(v.begin(), v.end()));
  double rate = double(st.delivered) / secs;
  double gen_cpu = double(self1 - self0) / double(m1 - m0) * 100.0;
  double srv_cpu = (srv0 >= 0 && srv1 >= 0) ? double(srv1 - srv0) / double(m1 - m0) * 100.0 : -1;
  // Everything else that ran meanwhile (other processes, and softirq work
  // the kernel did not charge to either of us), in % of one core.
  double other_cpu = -1, steal = -1;
  if (sys0.busy >= 0 && sys1.busy >= 0 && srv_cpu >= 0) {
    other_cpu = std::max(0.0, double(sys1.busy - sys0.busy) / double(m1 - m0) * 100.0 - gen_cpu - srv_cpu);
    steal = double(sys1.steal - sys0.steal) / double(m1 - m0) * 100.0;
  }
  uint64_t problems = st.errors + st.bad + st.wrong_from + st.out_of_order + st.closed_early + st.connect_failed;
  fprintf(stderr,
          "loadgen: relay %s pairs=%d window=%d: %.0f msg/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms; "
          "gen cpu %.0f%%, server cpu %.0f%%, other %.0f%%; problems=%" PRIu64 "\n",
          opt.proto == Proto::PeerJS ? "peerjs" : "peerserver", opt.pairs, opt.window, rate, p50 / 1000, p99 / 1000,
          p999 / 1000, mx / 1000, gen_cpu, srv_cpu, other_cpu, problems);
  if (!st.first_error.empty())
    fprintf(stderr, "loadgen: first problem: %s\n", st.first_error.c_str());
  if (opt.verbose)
    fprintf(stderr, "loadgen: %" PRIu64 " wakeups, %.1f events and %.1f messages per wakeup\n", st.wakeups,
            double(st.events) / double(std::max<uint64_t>(st.wakeups, 1)),
            double(st.delivered_all) / double(std::max<uint64_t>(st.wakeups, 1)));
  printf("RESULT mode=relay proto=%s pairs=%d window=%d background=%d conns=%d sources=%d greeted=%d connect_s=%.3f "
         "seconds=%.3f "
         "delivered=%" PRIu64 " sent=%" PRIu64 " rate=%.1f p50_ms=%.4f p99_ms=%.4f p999_ms=%.4f max_ms=%.4f "
         "gen_cpu=%.1f server_cpu=%.1f other_cpu=%.1f steal=%.1f errors=%" PRIu64 " bad=%" PRIu64 " wrong_from=%" PRIu64
         " out_of_order=%" PRIu64 " closed_early=%" PRIu64 " connect_failed=%" PRIu64 " other=%" PRIu64
         " pings=%" PRIu64 " problems=%" PRIu64 "\n",
         opt.proto == Proto::PeerJS ? "peerjs" : "peerserver", opt.pairs, opt.window, opt.background, n, n_sources,
         greeted, connect_s, secs,
         st.delivered, st.sent, rate, p50 / 1000, p99 / 1000, p999 / 1000, mx / 1000, gen_cpu, srv_cpu, other_cpu,
         steal, st.errors,
         st.bad, st.wrong_from, st.out_of_order, st.closed_early, st.connect_failed, st.other, st.pings, problems);
  fflush(stdout);
  return greeted == n && st.delivered > 0 ? 0 : 1;
}

// Each connection to the server's one address and port takes a local port
// of its source address, and the kernel's search for a free one in connect()
// (__inet_hash_connect) grows with the ports in use: with 20,000 from one
// address it took 70% of this process's CPU and made the generator, not the
// server, the limit of the join storm. So past a quarter of the ephemeral
// range the connections take turns over 127.0.0.1, 127.0.0.2, ... (all of
// 127/8 is loopback).
void LoadGen::plan_sources(int total)
{
  n_sources = opt.sources;
  if (n_sources > 0)
    return;
  int lo = 32768, hi = 60999;
  if (FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (fscanf(f, "%d %d", &lo, &hi) != 2)
      lo = 32768, hi = 60999;
    fclose(f);
  }
  int per_source = std::max(1000, (hi - lo + 1) / 4);
  n_sources = std::min(254, (total + per_source - 1) / per_source);
  n_sources = std::max(1, n_sources);
  if (n_sources > 1)
    fprintf(stderr, "loadgen: %d connections over %d source addresses (ports %d-%d each)\n", total, n_sources, lo,
            hi);
}

void LoadGen::on_stdin()
{
  char buf[256];
  ssize_t r = read(0, buf, sizeof buf);
  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (r <= 0) {
    // EOF: stop watching stdin; --hold alone bounds the wait from now on.
    epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
    go = true;
    return;
  }
  if (memchr(buf, '\n', size_t(r)))
    go = true;
}

// Keeps the connections serviced (pings answered) until stdin says go or
// `until` passes.
void LoadGen::wait_for_go(int64_t until)
{
  go = false;
  while (!go && now_ns() < until)
    poll_once(50);
}

int LoadGen::run_idle()
{
  int64_t limit = now_ns() + int64_t((opt.timeout > 0 ? opt.timeout : opt.hold * 2 + 120) * 1e9);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  epoll_event sev{};
  sev.events = EPOLLIN;
  sev.data.ptr = nullptr;
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
  plan_sources(opt.conns);

  // Warm-up: a few pairs connect, exchange one message each way and close,
  // so the server's one-time lazy allocations land in the baseline.
  if (opt.warm_conns > 0) {
    int w = std::max(2, opt.warm_conns & ~1);
    target_conns = w;
    conns.resize(size_t(w));
    ramp_up("w", limit);
    for (int i = 0; i < w; i++)
      send_relay(conns[size_t(i)].get());
    flush_all();
    sending = false;  // one message each way is enough
    int64_t until = now_ns() + int64_t(0.3e9);
    while (now_ns() < until)
      poll_once(10);
    close_all(now_ns() + int64_t(2e9));
    sending = true;
    conns.clear();
    greeted = 0;
    settled = 0;
    next_to_start = 0;
    in_flight_handshakes = 0;
  }
  printf("BASELINE\n");
  fflush(stdout);
  wait_for_go(std::min(limit, now_ns() + int64_t(opt.hold * 1e9)));

  target_conns = opt.conns;
  conns.resize(size_t(opt.conns));
  int64_t c0 = now_ns();
  ramp_up("i", opt.connect_timeout > 0 ? std::min(limit, c0 + int64_t(opt.connect_timeout * 1e9)) : limit);
  double connect_s = double(now_ns() - c0) / 1e9;
  fprintf(stderr, "loadgen: %d/%d idle connections greeted in %.2f s\n", greeted, opt.conns, connect_s);
  printf("READY greeted=%d conns=%d connect_s=%.3f\n", greeted, opt.conns, connect_s);
  fflush(stdout);
  wait_for_go(std::min(limit, now_ns() + int64_t(opt.hold * 1e9)));
  int still_open = 0;
  for (auto &cp : conns)
    if (cp && cp->state == State::Open)
      still_open++;
  close_all(now_ns() + int64_t(3e9));
  uint64_t problems = st.errors + st.bad + st.closed_early + st.connect_failed;
  if (!st.first_error.empty())
    fprintf(stderr, "loadgen: first problem: %s\n", st.first_error.c_str());
  printf("RESULT mode=idle proto=%s conns=%d sources=%d greeted=%d still_open=%d connect_s=%.3f errors=%" PRIu64
         " bad=%" PRIu64 " closed_early=%" PRIu64 " connect_failed=%" PRIu64 " pings=%" PRIu64 " problems=%" PRIu64
         "\n",
         opt.proto == Proto::PeerJS ? "peerjs" : "peerserver", opt.conns, n_sources, greeted, still_open, connect_s,
         st.errors,
         st.bad, st.closed_early, st.connect_failed, st.pings, problems);
  fflush(stdout);
  return greeted == opt.conns && problems == 0 ? 0 : 1;
}

int LoadGen::run_storm()
{
  int n = opt.conns;
  bool joins = opt.proto == Proto::PeerJS && !opt.no_join;
  int threads = opt.threads > 0 ? opt.threads : std::max(1, n / 10);
  target_conns = n;
  conns.resize(size_t(n));
  plan_sources(n);
  int64_t t0 = now_ns();
  int64_t limit = t0 + int64_t((opt.timeout > 0 ? opt.timeout : 300) * 1e9);
  int64_t self0 = cpu_ns_self();
  int64_t srv0 = cpu_ns_of(opt.server_pid);
  int64_t next_report = t0 + 1000000000;
  while (finished < n && now_ns() < limit) {
    // --batch clients between connect() and their acknowledgement at most.
    while (next_to_start < n && next_to_start - finished < opt.batch) {
      int idx = next_to_start++;
      Conn *c = start_conn(idx);
      if (c && opt.proto == Proto::PeerServer)
        c->id = "s" + std::to_string(getpid()) + "x" + std::to_string(idx);
    }
    poll_once(20);
    if (opt.verbose && now_ns() >= next_report) {
      fprintf(stderr, "loadgen: storm: %d started, %d greeted, %d done\n", next_to_start, greeted, finished);
      next_report += 1000000000;
    }
  }
  int64_t t1 = now_ns();
  int64_t self1 = cpu_ns_self();
  int64_t srv1 = cpu_ns_of(opt.server_pid);
  double secs = double(t1 - t0) / 1e9;

  // Every acknowledged join was relayed to the members before it; those
  // relays may still be on their way.
  std::vector<uint64_t> members(size_t(threads), 0);
  for (auto &cp : conns)
    if (cp && cp->t_join)
      members[size_t(cp->index % threads)]++;
  uint64_t expected = 0;
  if (joins)
    for (uint64_t m : members)
      expected += m * (m ? m - 1 : 0) / 2;
  int64_t settle = now_ns() + int64_t(5e9);
  while (st.join_relays < expected && now_ns() < settle && now_ns() < limit)
    poll_once(20);
  long rss = rss_kib_of(opt.server_pid);

  std::vector<uint32_t> greet_us, join_us;
  for (auto &cp : conns) {
    if (!cp)
      continue;
    if (cp->t_greet)
      greet_us.push_back(uint32_t((cp->t_greet - cp->t_start) / 1000));
    if (cp->t_join)
      join_us.push_back(uint32_t((cp->t_join - cp->t_start) / 1000));
  }
  auto pct = [](std::vector<uint32_t> &v, double q) -> double {
    if (v.empty())
      return -1;
    size_t k = std::min(v.size() - 1, size_t(q * double(v.size())));
    std::nth_element(v.begin(), v.begin() + long(k), v.end());
    return double(v[k]) / 1000;
  };
  double g50 = pct(greet_us, 0.5), g99 = pct(greet_us, 0.99);
  double j50 = pct(join_us, 0.5), j99 = pct(join_us, 0.99);
  int failed = n - joined;
  uint64_t missing = expected > st.join_relays ? expected - st.join_relays : st.join_relays - expected;
  uint64_t problems =
      uint64_t(failed) + st.errors + st.bad + st.other + st.closed_early + missing;
  double gen_cpu = double(self1 - self0) / double(t1 - t0) * 100.0;
  double srv_cpu = (srv0 >= 0 && srv1 >= 0) ? double(srv1 - srv0) / double(t1 - t0) * 100.0 : -1;
  fprintf(stderr,
          "loadgen: storm %s: %d/%d done in %.2f s (%.0f/s), greeting p50 %.1f ms p99 %.1f ms, join p50 %.1f ms "
          "p99 %.1f ms, %" PRIu64 "/%" PRIu64 " join relays, %d failures; gen cpu %.0f%%, server cpu %.0f%%\n",
          opt.proto == Proto::PeerJS ? "peerjs" : "peerserver", joined, n, secs, double(joined) / secs, g50, g99, j50,
          j99, st.join_relays, expected, failed, gen_cpu, srv_cpu);
  if (!st.first_error.empty())
    fprintf(stderr, "loadgen: first problem: %s\n", st.first_error.c_str());
  printf("RESULT mode=storm proto=%s conns=%d threads=%d inflight=%d sources=%d greeted=%d joined=%d failures=%d "
         "seconds=%.3f rate=%.1f greet_p50_ms=%.3f greet_p99_ms=%.3f join_p50_ms=%.3f join_p99_ms=%.3f "
         "join_relays=%" PRIu64 " join_relays_expected=%" PRIu64 " server_rss_kib=%ld gen_cpu=%.1f server_cpu=%.1f "
         "errors=%" PRIu64 " bad=%" PRIu64 " other=%" PRIu64 " closed_early=%" PRIu64 " connect_failed=%" PRIu64
         " problems=%" PRIu64 "\n",
         opt.proto == Proto::PeerJS ? "peerjs" : "peerserver", n, joins ? threads : 0, opt.batch,
         n_sources, greeted, joined, failed, secs, double(joined) / secs, g50, g99, j50, j99, st.join_relays,
         expected, rss, gen_cpu, srv_cpu, st.errors, st.bad, st.other, st.closed_early, st.connect_failed, problems);
  fflush(stdout);
  close_all(now_ns() + int64_t(3e9));
  return problems == 0 ? 0 : 1;
}

int LoadGen::run()
{
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("epoll_create1");
    return 1;
  }
  rng_state ^= uint64_t(now_ns()) ^ (uint64_t(getpid()) << 32);
  padding.assign(size_t(std::max(opt.payload, 0)), 'x');
  for (size_t i = 0; i < padding.size(); i++)
    padding[i] = "abcdefghijklmnopqrstuvwxyz"[i % 26];
  switch (opt.mode) {
  case Mode::Relay:
    return run_relay();
  case Mode::Idle:
    return run_idle();
  case Mode::Storm:
    break;
  }
  return run_storm();
}

}  // namespace

int main(int argc, char **argv)
{
  Options o;
  if (!parse_args(argc, argv, o)) {
    usage();
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  // Sleep as long as asked in --coalesce-us, not up to 50 us longer.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  // Enough descriptors for the idle benchmark.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  LoadGen g(o);
  return g.run();
}
