/* gst-bench, part 6 (--only files; not in the default list): a file
 * offered with offer-file from a peerjssink to a peerjssrc
 * (accept-files=all, download-dir), against the same bytes over a bare
 * pair of webrtcbins (data channel, 64 KiB messages, the same flow
 * control) and over one TCP connection on 127.0.0.1; with Chromium
 * (bench/file-transfer.mjs --driven), pipeline to page, page to pipeline,
 * and page to page with peer.js and with a bare RTCDataChannel; chat round
 * trips (send-event with a reply, answered from the receiver's bus watch)
 * idle and during a transfer between the pipelines. */
#include "benchmarks.h"

#include <openssl/evp.h>

#include <arpa/inet.h>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>

namespace peerjs::bench {

namespace {

/* Flow control of the elements and of peer.js (docs/protocol.md): at most
 * 1 MiB buffered in the channel, refilled from 256 KiB. */
constexpr guint64 FILE_HIGH_WATER = 1024 * 1024;
constexpr guint64 FILE_LOW_WATER = 256 * 1024;
/* What two pipelines agree on (the receiver asks for it). */
constexpr gsize FILE_CHUNK = 64 * 1024;

double
mb_per_s (guint64 bytes, double secs)
{
  return secs > 0 ? bytes / 1e6 / secs : NAN;
}

/* `size` random bytes at `path`; their SHA-256 in hex, or "" when the file
 * could not be written. */
std::string
random_file (const std::string & path, guint64 size)
{
  FILE *in = fopen ("/dev/urandom", "rb");
  FILE *out = fopen (path.c_str (), "wb");
  GChecksum *sha = g_checksum_new (G_CHECKSUM_SHA256);
  std::vector<guint8> buf (1 << 20);
  bool ok = in && out;
  for (guint64 left = size; ok && left > 0;) {
    size_t want = (size_t) MIN (left, (guint64) buf.size ());
    ok = fread (buf.data (), 1, want, in) == want
        && fwrite (buf.data (), 1, want, out) == want;
    g_checksum_update (sha, buf.data (), want);
    left -= want;
  }
  if (in)
    fclose (in);
  if (out && fclose (out) != 0)
    ok = false;
  std::string digest = ok ? g_checksum_get_string (sha) : "";
  g_checksum_free (sha);
  return digest;
}

/* SHA-256 over the file in memory in 64 KiB pieces, MB/s of one core:
 * both ends of a transfer between pipelines pay it on every byte. With
 * OpenSSL's libcrypto, as the elements hash (files.cpp), or with GLib's
 * GChecksum, as they did before. */
double
sha256_rate (const std::string & path, bool openssl)
{
  GMappedFile *m = g_mapped_file_new (path.c_str (), FALSE, nullptr);
  if (!m)
    return NAN;
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (m);
  gsize len = g_mapped_file_get_length (m);
  gint64 t0 = now_us ();
  if (openssl) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    EVP_DigestInit_ex (ctx, EVP_sha256 (), nullptr);
    for (gsize at = 0; at < len; at += FILE_CHUNK)
      EVP_DigestUpdate (ctx, data + at, MIN (FILE_CHUNK, len - at));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex (ctx, md, &n);
    EVP_MD_CTX_free (ctx);
  } else {
    GChecksum *sha = g_checksum_new (G_CHECKSUM_SHA256);
    for (gsize at = 0; at < len; at += FILE_CHUNK)
      g_checksum_update (sha, data + at, MIN (FILE_CHUNK, len - at));
    g_checksum_get_string (sha);
    g_checksum_free (sha);
  }
  double secs = (now_us () - t0) / 1e6;
  g_mapped_file_unref (m);
  return mb_per_s (len, secs);
}

/* utime + stime of this process and everything it started (the server,
 * node and Chromium), in clock ticks. */
long long
tree_ticks ()
{
  std::map<pid_t, std::vector<pid_t>> kids;
  GDir *proc = g_dir_open ("/proc", 0, nullptr);
  if (!proc)
    return -1;
  while (const char *name = g_dir_read_name (proc)) {
    if (!g_ascii_isdigit (name[0]))
      continue;
    g_autofree char *path = g_strdup_printf ("/proc/%s/stat", name);
    g_autofree char *text = nullptr;
    if (!g_file_get_contents (path, &text, nullptr, nullptr))
      continue;
    const char *p = strrchr (text, ')');
    int ppid = 0;
    if (p && sscanf (p + 2, "%*c %d", &ppid) == 1)
      kids[ppid].push_back (atoi (name));
  }
  g_dir_close (proc);
  long long sum = 0;
  std::vector<pid_t> todo = { getpid () };
  while (!todo.empty ()) {
    pid_t pid = todo.back ();
    todo.pop_back ();
    sum += std::max (0LL, cpu_ticks (pid));
    for (pid_t k : kids[pid])
      todo.push_back (k);
  }
  return sum;
}

/* UDP datagrams this network namespace dropped because a socket's receive
 * buffer was full (RcvbufErrors in /proc/net/snmp), or -1. Every one is a
 * packet SCTP has to send again. */
long long
udp_drops ()
{
  g_autofree char *text = nullptr;
  if (!g_file_get_contents ("/proc/self/net/snmp", &text, nullptr, nullptr))
    return -1;
  /* Two "Udp:" lines: the names, then the values. */
  const char *names = strstr (text, "\nUdp:");
  const char *values = names ? strstr (names + 1, "\nUdp:") : nullptr;
  if (!values)
    return -1;
  std::stringstream n (std::string (names + 5, strchr (names + 1, '\n')));
  std::stringstream v (values + 5);
  std::string name;
  long long value;
  while (n >> name && v >> value)
    if (name == "RcvbufErrors")
      return value;
  return -1;
}

/* CPU over one round, % of one core: this process ("self"), what it
 * started ("children": node and Chromium, and the signalling server), and
 * "other load", the machine's busy time spent by neither. */
struct CpuClock
{
  long long self0 = cpu_ticks (getpid ()), tree0 = tree_ticks (),
      machine0 = machine_ticks (), drops0 = udp_drops ();
  gint64 t0 = now_us ();
  double self = NAN, children = NAN, other = NAN;
  long long drops = -1;         /* UDP datagrams dropped meanwhile */

  void stop ()
  {
    long long s = cpu_ticks (getpid ()), t = tree_ticks (),
        m = machine_ticks (), d = udp_drops ();
    drops = d >= 0 && drops0 >= 0 ? d - drops0 : -1;
    double secs = (now_us () - t0) / 1e6;
    /* Clock ticks are 10 ms: over less than a second they say nothing. */
    if (secs < 1)
      return;
    auto pc = [secs] (long long ticks) {
      return ticks * 100.0 / sysconf (_SC_CLK_TCK) / secs;
    };
    self = pc (s - self0);
    children = std::max (0.0, pc ((t - s) - (tree0 - self0)));
    other = std::max (0.0, pc ((m - machine0) - (t - tree0)));
  }
};

/* 6a. The file over one TCP connection on 127.0.0.1, read in 64 KiB blocks
 * and written, the other end only counting what arrives: what this
 * machine's loopback gives one stream. Seconds from connect to the last
 * byte read, or NAN. */
double
tcp_round (const std::string & path, guint64 size, std::string * why)
{
  int ls = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (ls < 0 || bind (ls, (sockaddr *) & addr, sizeof addr) != 0
      || listen (ls, 1) != 0 || getsockname (ls, (sockaddr *) & addr,
          &len) != 0) {
    *why = std::string ("no listening socket: ") + g_strerror (errno);
    if (ls >= 0)
      close (ls);
    return NAN;
  }
  std::atomic<gint64> done { 0 };
  guint64 got = 0;
  std::thread reader ([&] {
        int s = accept (ls, nullptr, nullptr);
        std::vector<char> buf (256 * 1024);
        while (s >= 0 && got < size) {
          ssize_t n = read (s, buf.data (), buf.size ());
          if (n <= 0)
            break;
          got += n;
        }
        done = now_us ();
        if (s >= 0)
          close (s);
      });
  FILE *f = fopen (path.c_str (), "rb");
  gint64 t0 = now_us ();
  int s = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = f && s >= 0 && connect (s, (sockaddr *) & addr, sizeof addr) == 0;
  std::vector<char> buf (FILE_CHUNK);
  size_t n;
  while (ok && (n = fread (buf.data (), 1, buf.size (), f)) > 0)
    for (size_t at = 0; ok && at < n;) {
      ssize_t w = write (s, buf.data () + at, n - at);
      ok = w > 0;
      at += ok ? w : 0;
    }
  if (!ok)
    *why = std::string ("could not send: ") + g_strerror (errno);
  if (s >= 0)
    shutdown (s, SHUT_WR);
  reader.join ();
  if (s >= 0)
    close (s);
  close (ls);
  if (f)
    fclose (f);
  if (ok && got != size) {
    *why = std::to_string (got) + " bytes of " + std::to_string (size)
        + " arrived";
    ok = false;
  }
  return ok ? (done - t0) / 1e6 : NAN;
}

/* 6b. A bare pair of webrtcbins in this process, negotiated as for the
 * first frame (connect_bare), carrying the file over a data channel in
 * 64 KiB messages with the elements' flow control; the receiving end only
 * counts. The ceiling for the elements: webrtcbin's data channel path with
 * no peerjs code around it. */
struct BareFiles
{
  FirstFrame *ff = nullptr;
  std::mutex lock;
  std::condition_variable cv;
  bool open = false;            /* the channel being opened */
  guint64 received = 0, want = 0;
  gint64 done_us = 0;
};

/* A new channel from a to b, open; null (and `why`) when it did not open
 * within 15 s. As the elements do, every file gets a channel of its own. */
GstWebRTCDataChannel *
bare_channel (BareFiles & bf, const std::string & label, std::string * why)
{
  {
    std::lock_guard<std::mutex> guard (bf.lock);
    bf.open = false;
  }
  GstWebRTCDataChannel *c = nullptr;
  g_signal_emit_by_name (bf.ff->a, "create-data-channel", label.c_str (),
      nullptr, &c);
  if (!c) {
    *why = "webrtcbin made no data channel";
    return nullptr;
  }
  g_signal_connect (c, "on-open", G_CALLBACK (+[] (GstWebRTCDataChannel *,
              gpointer data) {
        auto *bf = static_cast<BareFiles *> (data);
        std::lock_guard<std::mutex> guard (bf->lock);
        bf->open = true;
        bf->cv.notify_all ();
      }), &bf);
  g_signal_connect (c, "on-buffered-amount-low", G_CALLBACK (+[] (
              GstWebRTCDataChannel *, gpointer data) {
        auto *bf = static_cast<BareFiles *> (data);
        std::lock_guard<std::mutex> guard (bf->lock);
        bf->cv.notify_all ();
      }), &bf);
  g_object_set (c, "buffered-amount-low-threshold", FILE_LOW_WATER, NULL);
  gint64 end = now_us () + 15 * G_USEC_PER_SEC;
  /* On an association already up it may have opened before the handler
   * was there. */
  GstWebRTCDataChannelState state;
  g_object_get (c, "ready-state", &state, NULL);
  std::unique_lock<std::mutex> guard (bf.lock);
  bf.open = bf.open || state == GST_WEBRTC_DATA_CHANNEL_STATE_OPEN;
  while (!bf.open && !bf.ff->failed && now_us () < end) {
    bf.cv.wait_for (guard, std::chrono::milliseconds (20));
    guard.unlock ();
    check_bus (bf.ff, bf.ff->send);
    check_bus (bf.ff, bf.ff->recv);
    guard.lock ();
  }
  if (!bf.open) {
    *why = bf.ff->failed ? bf.ff->why : "the data channel did not open "
        "within 15 s";
    g_object_unref (c);
    return nullptr;
  }
  return c;
}

bool
bare_files_start (BareFiles & bf, std::string * why)
{
  auto *ff = new FirstFrame ();
  bf.ff = ff;
  ff->send = parse ("webrtcbin name=a bundle-policy=max-bundle");
  ff->recv = parse ("webrtcbin name=b bundle-policy=max-bundle");
  if (!ff->send || !ff->recv) {
    *why = "could not build the pipelines";
    return false;
  }
  ff->a = gst_bin_get_by_name (GST_BIN (ff->send), "a");
  ff->b = gst_bin_get_by_name (GST_BIN (ff->recv), "b");
  connect_bare (ff);
  g_signal_connect (ff->b, "on-data-channel", G_CALLBACK (+[] (GstElement *,
              GstWebRTCDataChannel * c, gpointer data) {
        g_signal_connect (c, "on-message-data", G_CALLBACK (+[] (
                    GstWebRTCDataChannel *, GBytes * bytes, gpointer data) {
              auto *bf = static_cast<BareFiles *> (data);
              std::lock_guard<std::mutex> guard (bf->lock);
              bf->received += bytes ? g_bytes_get_size (bytes) : 0;
              if (bf->want && bf->received >= bf->want && !bf->done_us) {
                bf->done_us = now_us ();
                bf->cv.notify_all ();
              }
            }), data);
      }), &bf);
  gst_element_set_state (ff->recv, GST_STATE_PLAYING);
  gst_element_set_state (ff->send, GST_STATE_PLAYING);
  /* Like the elements' master channel: it gives the connection its m-line
   * and its SCTP association, which the files' channels then share. */
  GstWebRTCDataChannel *c = bare_channel (bf, "data", why);
  if (!c)
    return false;
  g_object_unref (c);
  return true;
}

void
bare_files_stop (BareFiles & bf)
{
  if (bf.ff)
    stop_pair (bf.ff, false);
}

/* One round: seconds from asking for a channel to the last byte at the
 * other end, or NAN. */
double
bare_round (BareFiles & bf, const std::string & path, guint64 size, int n,
    std::string * why)
{
  FILE *f = fopen (path.c_str (), "rb");
  if (!f) {
    *why = "cannot read " + path;
    return NAN;
  }
  {
    std::lock_guard<std::mutex> guard (bf.lock);
    bf.received = 0;
    bf.want = size;
    bf.done_us = 0;
  }
  gint64 t0 = now_us ();
  GstWebRTCDataChannel *c = bare_channel (bf, "file-" + std::to_string (n),
      why);
  if (!c) {
    fclose (f);
    return NAN;
  }
  /* As the elements' sender: one chunk read, copied into a GBytes and
   * sent whenever no more than 1 MiB waits in the channel; otherwise wait
   * for on-buffered-amount-low (bounded: it may come between the test and
   * the wait). */
  std::vector<guint8> buf (FILE_CHUNK);
  guint64 sent = 0;
  gint64 end = now_us () + (gint64) ((30 + size / 1e6) * G_USEC_PER_SEC);
  bool ok = true;
  while (ok && sent < size) {
    {
      std::unique_lock<std::mutex> guard (bf.lock);
      for (;;) {
        guint64 buffered = 0;
        g_object_get (c, "buffered-amount", &buffered, NULL);
        if (buffered <= FILE_HIGH_WATER)
          break;
        if (now_us () > end) {
          *why = "the channel did not drain";
          ok = false;
          break;
        }
        bf.cv.wait_for (guard, std::chrono::milliseconds (50));
      }
    }
    size_t got = ok ? fread (buf.data (), 1, FILE_CHUNK, f) : 0;
    if (ok && got == 0) {
      *why = "the file is shorter than it was";
      ok = false;
    }
    if (!ok)
      break;
    GBytes *bytes = g_bytes_new (buf.data (), got);
    GError *error = nullptr;
    ok = gst_webrtc_data_channel_send_data_full (c, bytes, &error);
    g_bytes_unref (bytes);
    if (!ok) {
      *why = std::string ("could not send: ") + error->message;
      g_clear_error (&error);
    }
    sent += got;
  }
  fclose (f);
  std::unique_lock<std::mutex> guard (bf.lock);
  while (ok && !bf.done_us && now_us () < end)
    bf.cv.wait_for (guard, std::chrono::milliseconds (20));
  if (ok && !bf.done_us) {
    *why = std::to_string (bf.received) + " bytes of " + std::to_string (size)
        + " arrived in time";
    ok = false;
  }
  bf.want = 0;
  /* Left open: closing a channel under data breaks webrtcbin 1.22's
   * stream, and nothing is sent on it any more. */
  g_object_unref (c);
  return ok ? (bf.done_us - t0) / 1e6 : NAN;
}

/* 6c. The elements. Each pipeline's bus is watched from one application
 * thread with its own main loop, as an application's main loop would
 * watch it; what matters here is when each peerjs-* message came. */
struct FilePeer
{
  std::string name;
  GstElement *pipeline = nullptr, *element = nullptr;
  GSource *watch = nullptr;
  std::string id;               /* session id */
  bool answer_events = false;   /* reply to every peerjs-event */
  std::mutex lock;
  std::condition_variable cv;
  std::vector<std::pair<gint64, GstStructure *>> messages;
  std::string error;
};

gboolean
file_peer_bus (GstBus *, GstMessage * msg, gpointer data)
{
  auto *p = static_cast<FilePeer *> (data);
  gint64 at = now_us ();
  g_autoptr (GError) e = nullptr;
  g_autofree char *dbg = nullptr;
  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:{
      gst_message_parse_error (msg, &e, &dbg);
      std::lock_guard<std::mutex> guard (p->lock);
      p->error = std::string (GST_OBJECT_NAME (msg->src)) + ": " + e->message;
      p->cv.notify_all ();
      break;
    }
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning (msg, &e, &dbg);
      note ("files, %s: warning from %s: %s", p->name.c_str (),
          GST_OBJECT_NAME (msg->src), e->message);
      break;
    case GST_MESSAGE_ELEMENT:{
      const GstStructure *s = gst_message_get_structure (msg);
      if (!s || !g_str_has_prefix (gst_structure_get_name (s), "peerjs-"))
        break;
      if (p->answer_events && gst_structure_has_name (s, "peerjs-event")) {
        /* The application answers every event at once. */
        gboolean ok = FALSE;
        g_signal_emit_by_name (p->element, "reply-event",
            gst_structure_get_string (s, "from"),
            gst_structure_get_string (s, "callback-id"), "{\"pong\":true}",
            &ok);
      }
      std::lock_guard<std::mutex> guard (p->lock);
      p->messages.emplace_back (at, gst_structure_copy (s));
      p->cv.notify_all ();
      break;
    }
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

bool
has_fields (const GstStructure * s, const char *name,
    const std::vector<std::pair<const char *, std::string>> & fields)
{
  if (!gst_structure_has_name (s, name))
    return false;
  for (auto & f : fields) {
    const char *v = gst_structure_get_string (s, f.first);
    if (!v || f.second != v)
      return false;
  }
  return true;
}

/* The first message `match` takes, waiting up to `secs` (0: only look); it
 * stays the peer's. Null on time-out or an error on the bus (`why`). */
const GstStructure *
wait_for (FilePeer & p, double secs,
    const std::function<bool (const GstStructure *)> & match,
    gint64 * at = nullptr, std::string * why = nullptr)
{
  gint64 end = now_us () + (gint64) (secs * G_USEC_PER_SEC);
  std::unique_lock<std::mutex> guard (p.lock);
  for (;;) {
    for (auto & m : p.messages)
      if (match (m.second)) {
        if (at)
          *at = m.first;
        return m.second;
      }
    if (!p.error.empty () || now_us () >= end)
      break;
    p.cv.wait_for (guard, std::chrono::milliseconds (50));
  }
  if (why)
    *why = !p.error.empty () ? p.error : "timed out";
  return nullptr;
}

const GstStructure *
wait_message (FilePeer & p, const char *name,
    const std::vector<std::pair<const char *, std::string>> & fields,
    double secs, gint64 * at = nullptr, std::string * why = nullptr)
{
  const GstStructure *s = wait_for (p, secs, [&] (const GstStructure * s) {
        return has_fields (s, name, fields);
      }, at, why);
  if (!s && why)
    *why = std::string ("no ") + name + " (" + *why + ")";
  return s;
}

bool
file_peer_start (FilePeer & p, const std::string & desc, GMainContext * ctx,
    std::string * why)
{
  p.pipeline = parse (desc);
  if (!p.pipeline) {
    *why = "cannot build " + desc;
    return false;
  }
  p.element = gst_bin_get_by_name (GST_BIN (p.pipeline), "p");
  g_autoptr (GstBus) bus = gst_element_get_bus (p.pipeline);
  p.watch = gst_bus_create_watch (bus);
  g_source_set_callback (p.watch, G_SOURCE_FUNC (file_peer_bus), &p, nullptr);
  g_source_attach (p.watch, ctx);
  if (gst_element_set_state (p.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    *why = p.name + " did not start";
    return false;
  }
  const GstStructure *s = wait_message (p, "peerjs-socket-connect", {}, 15,
      nullptr, why);
  if (!s)
    return false;
  p.id = gst_structure_get_string (s, "id");
  return true;
}

void
file_peer_stop (FilePeer & p)
{
  if (p.pipeline)
    gst_element_set_state (p.pipeline, GST_STATE_NULL);
  if (p.watch) {
    g_source_destroy (p.watch);
    g_source_unref (p.watch);
  }
  gst_clear_object (&p.element);
  gst_clear_object (&p.pipeline);
  for (auto & m : p.messages)
    gst_structure_free (m.second);
  p.messages.clear ();
}

/* The end of file `id` at `p` in `direction`: its peerjs-file-complete,
 * or null when peerjs-file-error or nothing came (`why`). */
const GstStructure *
file_end (FilePeer & p, const std::string & id, const char *direction,
    double secs, gint64 * at, std::string * why)
{
  const GstStructure *s = wait_for (p, secs, [&] (const GstStructure * s) {
        return has_fields (s, "peerjs-file-complete", {{"id", id},
                {"direction", direction}})
            || has_fields (s, "peerjs-file-error", {{"id", id}});
      }, at, why);
  if (s && gst_structure_has_name (s, "peerjs-file-error")) {
    *why = std::string (gst_structure_get_string (s, "message"));
    return nullptr;
  }
  if (!s)
    *why = std::string ("the ") + direction + " did not end (" + *why + ")";
  return s;
}

double
transfer_timeout (guint64 size)
{
  return 30 + size / 1e6;
}

/* File `id`, offered to receiving element `to`, received there: seconds
 * from the offer reaching it to the file verified (peerjs-file-complete),
 * or NAN. The saved file is removed again. */
double
gst_receive (FilePeer & to, const std::string & id, guint64 size,
    const std::string & sha, std::string * why)
{
  gint64 t_offer = 0, t_done = 0;
  if (!wait_message (to, "peerjs-file-offer", {{"id", id}}, 15, &t_offer,
          why))
    return NAN;
  const GstStructure *done = file_end (to, id, "receive",
      transfer_timeout (size), &t_done, why);
  if (!done)
    return NAN;
  guint64 got = 0;
  gst_structure_get_uint64 (done, "size", &got);
  const char *digest = gst_structure_get_string (done, "sha256");
  const char *path = gst_structure_get_string (done, "path");
  if (path && *path)
    g_unlink (path);
  if (got != size || !digest || sha != digest) {
    *why = "received " + std::to_string (got) + " bytes with SHA-256 "
        + (digest ? digest : "?") + ", not the file sent";
    return NAN;
  }
  return (t_done - t_offer) / 1e6;
}

/* One file from element `from` to element `to`. */
double
gst_round (FilePeer & from, FilePeer & to, const std::string & path,
    guint64 size, const std::string & sha, std::string * why)
{
  g_autofree char *id = nullptr;
  g_signal_emit_by_name (from.element, "offer-file", path.c_str (),
      to.id.c_str (), nullptr, &id);
  if (!id) {
    *why = "offer-file refused";
    return NAN;
  }
  double secs = gst_receive (to, id, size, sha, why);
  /* The sender is done once the receiver acknowledged it. */
  std::string ack_why;
  if (!std::isnan (secs) && !file_end (from, id, "send", 30, nullptr,
          &ack_why)) {
    *why = "sender: " + ack_why;
    return NAN;
  }
  return secs;
}

/* 6d. Chat: an event from `a` to `b` with a reply wanted; b's application
 * answers it from its bus watch. Round trip from the emission to the
 * promise replied, ms; NAN when no reply came within 5 s. `sent`, when
 * given, is when it was emitted. */
struct Ping
{
  std::atomic<gint64> replied { 0 };
  std::atomic<bool> ok { false };
};

double
ping (FilePeer & a, FilePeer & b, int n, gint64 * sent = nullptr)
{
  /* Freed once replied; a promise that never is keeps it. */
  auto *pg = new Ping ();
  GstPromise *promise = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *pg = static_cast<Ping *> (data);
        gint64 t = now_us ();
        bool ok = false;
        if (gst_promise_wait (p) == GST_PROMISE_RESULT_REPLIED) {
          const GstStructure *r = gst_promise_get_reply (p);
          const char *error = r ? gst_structure_get_string (r, "error") : "?";
          ok = !error || !*error;
        }
        pg->ok = ok;
        pg->replied = t;
      }, pg, nullptr);
  std::string data = "{\"n\":" + std::to_string (n) + "}";
  guint id = 0;
  gint64 t0 = now_us ();
  g_signal_emit_by_name (a.element, "send-event", "bench:ping", b.id.c_str (),
      nullptr, data.c_str (), TRUE, promise, &id);
  gst_promise_unref (promise);
  if (sent)
    *sent = t0;
  if (!id)
    return NAN;
  gint64 end = t0 + 5 * G_USEC_PER_SEC;
  while (!pg->replied && now_us () < end)
    g_usleep (200);
  if (!pg->replied)
    return NAN;
  double ms = pg->ok ? (pg->replied - t0) / 1000.0 : NAN;
  delete pg;
  return ms;
}

/* 6e. The browser legs: bench/file-transfer.mjs --driven, one Chromium
 * with page G in the elements' thread (and pages A and B for browser to
 * browser), commanded line by line. */
struct Browser
{
  Child *child = nullptr;
  size_t seen = 0;              /* lines of it read so far */
  std::string page;             /* G's session id */
  std::string sha;              /* G's file */
};

/* The value of `key` in one of the script's JSON lines (strings
 * unquoted; no escapes in what it prints but in error text). */
std::string
json_field (const std::string & line, const char *key)
{
  std::string k = std::string ("\"") + key + "\":";
  size_t at = line.find (k);
  if (at == std::string::npos)
    return "";
  at += k.size ();
  if (line[at] == '"') {
    size_t close = line.find ('"', at + 1);
    return line.substr (at + 1, close == std::string::npos ? std::string::npos
        : close - at - 1);
  }
  size_t stop = line.find_first_of (",}", at);
  return line.substr (at, stop == std::string::npos ? std::string::npos
      : stop - at);
}

/* The next line of the script with `key` (or an error), waiting up to
 * `secs`; "" on time-out or when it exited. */
std::string
browser_line (Browser & br, const char *key, double secs, std::string * why)
{
  gint64 end = now_us () + (gint64) (secs * G_USEC_PER_SEC);
  std::string k = std::string ("\"") + key + "\":";
  for (bool gone = false;;) {
    while (br.seen < br.child->lines.size ()) {
      const std::string & l = br.child->lines[br.seen++];
      if (l.find (k) != std::string::npos)
        return l;
      if (l.find ("\"error\":") != std::string::npos) {
        *why = "browser: " + json_field (l, "error");
        return "";
      }
    }
    /* Once more after it exited, for what it wrote last. */
    if (gone) {
      *why = "the browser script exited (see gst-files-browser.log)";
      return "";
    }
    gone = !alive (br.child);
    if (now_us () >= end) {
      *why = std::string ("the browser script did not answer with '") + key
          + "' in time";
      return "";
    }
    pump (50);
  }
}

bool
browser_say (Browser & br, const std::string & line)
{
  std::string l = line + "\n";
  return br.child->in >= 0 && write (br.child->in, l.data (), l.size ())
      == (ssize_t) l.size ();
}

void
browser_stop (Browser & br)
{
  if (!br.child)
    return;
  /* Let it close Chromium itself: killed, Chromium (a process group of its
   * own) would stay. */
  browser_say (br, "quit");
  gint64 end = now_us () + 10 * G_USEC_PER_SEC;
  while (alive (br.child) && now_us () < end)
    pump (50);
  stop_child (br.child);
  br.child = nullptr;
}

/* One measurement between pages A and B; seconds or NAN. */
double
bb_round (Browser & br, const char *impl, guint64 size, std::string * why)
{
  if (!browser_say (br, std::string ("bb ") + impl)) {
    *why = "cannot write to the browser script";
    return NAN;
  }
  std::string l = browser_line (br, "impl", transfer_timeout (size), why);
  if (l.empty ())
    return NAN;
  if (std::stoull (json_field (l, "bytes")) != size) {
    *why = "received " + json_field (l, "bytes") + " bytes";
    return NAN;
  }
  return atof (json_field (l, "ms").c_str ()) / 1000;
}

std::string
http_url (const std::string & ws)
{
  /* ws://127.0.0.1:PORT/peerjs -> http://127.0.0.1:PORT */
  std::string rest = ws.substr (ws.find ("://") + 3);
  return "http://" + rest.substr (0, rest.find ('/'));
}

bool
browser_start (Browser & br, const std::string & url,
    const std::string & thread, guint64 size, std::string * why)
{
  g_autofree char *node = g_find_program_in_path ("node");
  std::string root = PEERJS_SOURCE_ROOT;
  std::string script = root + "/bench/file-transfer.mjs";
  std::string pw = root + "/tests/browser/node_modules/playwright-core";
  std::string missing;
  if (!node)
    missing += ", node";
  if (!g_file_test ("/usr/bin/chromium", G_FILE_TEST_IS_EXECUTABLE))
    missing += ", /usr/bin/chromium";
  if (root.empty () || !g_file_test (script.c_str (), G_FILE_TEST_EXISTS))
    missing += ", bench/file-transfer.mjs";
  if (!g_file_test (pw.c_str (), G_FILE_TEST_IS_DIR))
    missing += ", playwright-core (tools/setup installs it)";
  if (!missing.empty ()) {
    *why = "not run, missing " + missing.substr (2);
    return false;
  }
  br.child = spawn ("files-browser", { node, script, "--driven",
          http_url (url), thread, std::to_string (size) }, true, true);
  if (!br.child) {
    *why = "could not start node";
    return false;
  }
  /* Chromium, three pages, two files of random bytes and a first small
   * file between A and B. */
  std::string l = browser_line (br, "ready", 90, why);
  if (l.empty ())
    return false;
  br.page = json_field (l, "page");
  br.sha = json_field (l, "sha256");
  return !br.page.empty ();
}

/* A pipeline's file to page G: seconds from the offer reaching G to
 * file:complete there (peer.js's own clock), or NAN. */
double
gst_browser_round (Browser & br, FilePeer & from, const std::string & path,
    guint64 size, const std::string & sha, std::string * why)
{
  if (!browser_say (br, "receive")
      || browser_line (br, "armed", 15, why).empty ())
    return NAN;
  g_autofree char *id = nullptr;
  g_signal_emit_by_name (from.element, "offer-file", path.c_str (),
      br.page.c_str (), nullptr, &id);
  if (!id) {
    *why = "offer-file refused";
    return NAN;
  }
  std::string l = browser_line (br, "impl", transfer_timeout (size), why);
  if (l.empty ())
    return NAN;
  if (json_field (l, "sha256") != sha
      || std::stoull (json_field (l, "bytes")) != size) {
    *why = "the page got " + json_field (l, "bytes") + " bytes with SHA-256 "
        + json_field (l, "sha256") + ", not the file sent";
    return NAN;
  }
  std::string ack_why;
  if (!file_end (from, id, "send", 30, nullptr, &ack_why)) {
    *why = "sender: " + ack_why;
    return NAN;
  }
  return atof (json_field (l, "ms").c_str ()) / 1000;
}

/* Page G's file, offered to the thread; element `to` takes it (its
 * accept-files=all; the peerjssink only posts the offer), timed there. */
double
browser_gst_round (Browser & br, FilePeer & to, guint64 size,
    std::string * why)
{
  if (!browser_say (br, "offer"))
    return NAN;
  std::string l = browser_line (br, "offered", 15, why);
  if (l.empty ())
    return NAN;
  return gst_receive (to, json_field (l, "offered"), size, br.sha, why);
}

/* Before a round: wait (up to 10 s, 60 s over the whole part) until other
 * work on the machine leaves both cores to us, so that a shared machine's
 * load lands in as few rounds as it can. The table shows what remained. */
void
wait_quiet_files ()
{
  static double budget = 60;
  gint64 start = now_us ();
  double other = 0;
  do {
    CpuClock c;
    pump_for (1.0);
    c.stop ();
    other = c.other;
  } while (other > 25 && (now_us () - start) / 1e6 < std::min (10.0, budget));
  budget -= (now_us () - start) / 1e6;
  if (other > 25)
    note ("files: other work keeps %.0f%% of a core busy; measuring anyway",
        other);
}

/* Pauses between transfers: a sender waits 0.5 s after a channel to the
 * same member closed before it opens the next (files.cpp, CHANNEL_QUIET),
 * which would otherwise land inside the next measurement. */
void
settle_files ()
{
  pump_for (1.0);
}

/* A round measured since `clock`. */
void
add_round (FileLeg & leg, const char *name, int round, double secs,
    guint64 size, const std::string & why, CpuClock & clock)
{
  clock.stop ();
  if (std::isnan (secs)) {
    leg.failed (name, round, why);
    return;
  }
  leg.rates.push_back (mb_per_s (size, secs));
  leg.drops += std::max (0LL, clock.drops);
  if (!std::isnan (clock.self)) {
    leg.cpu.push_back (clock.self);
    leg.children.push_back (clock.children);
    leg.other.push_back (clock.other);
  }
  g_autofree char *used = std::isnan (clock.self) ? g_strdup ("")
      : g_strdup_printf ("; CPU: gst-bench %.0f%%, node and Chromium %.0f%%, "
      "other load %.0f%%", clock.self, clock.children, clock.other);
  note ("files, %s, round %d: %.1f MB/s (%.2f s%s; UDP datagrams dropped: "
      "%lld)", name, round, leg.rates.back (), secs, used, clock.drops);
}

}  // namespace

FileResult
bench_files (const std::string & url)
{
  FileResult r;
  r.ran = true;
  r.bytes = opt.files_bytes;
  r.browser_bytes = opt.files_browser_bytes;
  g_autofree char *dir = g_dir_make_tmp ("gst-bench-files-XXXXXX", nullptr);
  if (!dir) {
    r.problems.push_back ("no temporary directory");
    return r;
  }
  std::string path = std::string (dir) + "/bench.bin";
  std::string in = std::string (dir) + "/in";
  /* The legs with a browser move fewer bytes by default: browsers are
   * slower, and the whole part should stay within a few minutes. */
  std::string bpath = std::string (dir) + "/browser.bin";
  std::string small = std::string (dir) + "/warm-up.bin";
  int k = 0;
  for (const std::string & p : { path, bpath, small, in, std::string (dir) })
    g_strlcpy (files_to_remove[k++], p.c_str (), PATH_MAX);
  g_mkdir (in.c_str (), 0700);
  std::string sha = random_file (path, r.bytes);
  std::string small_sha = random_file (small, 1000 * 1000);
  std::string bsha = random_file (bpath, r.browser_bytes);
  if (sha.empty () || small_sha.empty () || bsha.empty ()) {
    r.problems.push_back ("cannot write the files in " + std::string (dir));
    return r;
  }
  r.sha_openssl = sha256_rate (path, true);
  r.sha_glib = sha256_rate (path, false);
  std::string thread = random_name ("files");

  /* The browser first: starting Chromium and making its files takes a few
   * seconds of both cores, which no measurement should overlap. */
  Browser br;
  bool browser = opt.files_browser
      && browser_start (br, url, thread, r.browser_bytes, &r.browser_why);
  if (!opt.files_browser) {
    r.browser_why = "not run (--files-no-browser)";
  } else if (!browser) {
    note ("files: browser legs: %s", r.browser_why.c_str ());
    /* Missing software is reported, not counted as a failure. */
    if (!g_str_has_prefix (r.browser_why.c_str (), "not run"))
      r.problems.push_back ("browser: " + r.browser_why);
  }

  GMainContext *ctx = g_main_context_new ();
  GMainLoop *loop = g_main_loop_new (ctx, FALSE);
  std::thread app ([ctx, loop] {
        g_main_context_push_thread_default (ctx);
        g_main_loop_run (loop);
        g_main_context_pop_thread_default (ctx);
      });
  FilePeer a, b;
  a.name = "peerjssink";
  b.name = "peerjssrc";
  b.answer_events = true;
  std::string props = " server=" + url + " thread=" + thread;
  std::string why;
  BareFiles bf;
  bool ok = file_peer_start (b, "peerjssrc name=p accept-files=all "
      "download-dir=" + in + props, ctx, &why)
      && file_peer_start (a, "peerjssink name=p" + props, ctx, &why)
      && wait_message (a, "peerjs-thread-connect", {{"member", b.id}}, 15,
      nullptr, &why)
      && (!browser || wait_message (a, "peerjs-thread-connect",
          {{"member", br.page}}, 15, nullptr, &why))
      && bare_files_start (bf, &why);
  /* Warm-up, not counted: each path once with a small file, so that no
   * measured round pays for negotiation, for libraries loaded on first
   * use or for a connection's first channel. */
  if (ok && !std::isnan (gst_round (a, b, small, 1000 * 1000, small_sha,
              &why)))
    settle_files ();
  else if (ok)
    ok = false;
  /* G's connections to both elements were negotiated when it joined; one
   * small file to G is enough. */
  if (ok && browser) {
    std::string bwhy;
    if (std::isnan (gst_browser_round (br, a, small, 1000 * 1000, small_sha,
                &bwhy))) {
      note ("files: browser warm-up: FAILED: %s", bwhy.c_str ());
      r.browser_why = "warm-up failed: " + bwhy;
      r.problems.push_back ("browser: " + r.browser_why);
      browser = false;
    }
    settle_files ();
  }
  if (!ok) {
    r.problems.push_back ("setup: " + why);
    note ("files: setup FAILED: %s", why.c_str ());
  }

  for (int i = 1; ok && i <= opt.files_rounds; i++) {
    note ("files, round %d of %d", i, opt.files_rounds);
    wait_quiet_files ();
    CpuClock c;
    double s = tcp_round (path, r.bytes, &why);
    add_round (r.tcp, "TCP", i, s, r.bytes, why, c);
    c = CpuClock ();
    double bare = bare_round (bf, path, r.bytes, i, &why);
    add_round (r.bare, "bare webrtcbin pair", i, bare, r.bytes, why, c);
    c = CpuClock ();
    s = gst_round (a, b, path, r.bytes, sha, &why);
    add_round (r.gst, "gst->gst", i, s, r.bytes, why, c);
    /* Next to each other in time, so less apart by other load. */
    if (!std::isnan (s) && !std::isnan (bare))
      r.pair_ratio.push_back (bare / s);
    settle_files ();
    if (!browser)
      continue;
    c = CpuClock ();
    s = gst_browser_round (br, a, bpath, r.browser_bytes, bsha, &why);
    add_round (r.gst_browser, "gst->browser", i, s, r.browser_bytes, why, c);
    settle_files ();
    c = CpuClock ();
    s = browser_gst_round (br, b, r.browser_bytes, &why);
    add_round (r.browser_gst, "browser->gst", i, s, r.browser_bytes, why, c);
    settle_files ();
    c = CpuClock ();
    s = bb_round (br, "peer.js", r.browser_bytes, &why);
    add_round (r.bb_peerjs, "browser->browser, peer.js", i, s,
        r.browser_bytes, why, c);
    c = CpuClock ();
    s = bb_round (br, "raw", r.browser_bytes, &why);
    add_round (r.bb_raw, "browser->browser, raw", i, s, r.browser_bytes, why,
        c);
  }

  /* Chat: idle, then during transfers gst->gst. A ping counts as during a
   * transfer when it was sent after the receiver had the offer and
   * answered before the file was complete there. */
  for (int i = 0; ok && i < opt.files_pings; i++) {
    double ms = ping (a, b, i);
    if (std::isnan (ms))
      r.pings_lost++;
    else
      r.rtt_idle.push_back (ms);
    g_usleep (50 * 1000);
  }
  settle_files ();
  while (ok && (int) r.rtt_busy.size () < opt.files_pings
      && r.busy_transfers < 5) {
    g_autofree char *id = nullptr;
    g_signal_emit_by_name (a.element, "offer-file", path.c_str (),
        b.id.c_str (), nullptr, &id);
    gint64 t_offer = 0, t_done = 0;
    if (!id || !wait_message (b, "peerjs-file-offer", {{"id", id}}, 15,
            &t_offer, &why)) {
      r.problems.push_back ("chat: " + (id ? why : "offer-file refused"));
      break;
    }
    r.busy_transfers++;
    std::vector<std::pair<gint64, double>> pings;
    auto ended = [&] {
      return wait_for (b, 0, [&] (const GstStructure * s) {
            return has_fields (s, "peerjs-file-complete", {{"id", id}})
                || has_fields (s, "peerjs-file-error", {{"id", id}});
          }) != nullptr;
    };
    for (int n = 0; !ended () && (int) (r.rtt_busy.size () + pings.size ())
        < opt.files_pings; n++) {
      gint64 sent = 0;
      double ms = ping (a, b, 1000 + n, &sent);
      if (std::isnan (ms))
        r.pings_lost++;
      else
        pings.emplace_back (sent, ms);
      g_usleep (50 * 1000);
    }
    if (!file_end (b, id, "receive", transfer_timeout (r.bytes), &t_done,
            &why)) {
      r.problems.push_back ("chat: the transfer failed: " + why);
      break;
    }
    /* The file_end above found it, so it is there. */
    const GstStructure *done = wait_for (b, 0, [&] (const GstStructure * s) {
          return has_fields (s, "peerjs-file-complete", {{"id", id}});
        });
    const char *saved = done ? gst_structure_get_string (done, "path") : "";
    if (saved && *saved)
      g_unlink (saved);
    for (auto & p : pings)
      if (p.first >= t_offer && p.first + (gint64) (p.second * 1000) <= t_done)
        r.rtt_busy.push_back (p.second);
    file_end (a, id, "send", 30, nullptr, &why);
    settle_files ();
  }

  browser_stop (br);
  bare_files_stop (bf);
  file_peer_stop (a);
  file_peer_stop (b);
  g_main_loop_quit (loop);
  g_main_context_wakeup (ctx);
  app.join ();
  g_main_loop_unref (loop);
  g_main_context_unref (ctx);
  /* What a failed round may have left in `in` too. */
  if (GDir *d = g_dir_open (in.c_str (), 0, nullptr)) {
    while (const char *name = g_dir_read_name (d))
      g_unlink ((in + "/" + name).c_str ());
    g_dir_close (d);
  }
  for (const std::string & p : { path, small, bpath, in })
    g_remove (p.c_str ());
  g_rmdir (dir);
  for (char *p : files_to_remove)
    *p = '\0';
  return r;
}

void
table_files (FileResult & files, std::string & out, int & problems,
    bool & missed)
{
  char line[512];
  FileResult & f = files;
  auto rates = [] (const FileLeg & l) {
    std::string o;
    for (double x : l.rates)
      o += (o.empty () ? "" : ", ") + fmt (x, "%.1f");
    return o;
  };
  double worst_other = 0;
  auto row = [&] (const char *what, const FileLeg & l) {
    double other = l.other.empty () ? NAN : *std::max_element (
        l.other.begin (), l.other.end ());
    if (!std::isnan (other))
      worst_other = std::max (worst_other, other);
    auto pc = [] (double v) {
      return std::isnan (v) ? std::string () : fmt (v, "%.0f %%");
    };
    out += pad (std::string ("  ") + what, 50) + pad (fmt (l.rate (),
            "%.1f"), 9) + pad (l.rates.empty () ? "FAILED" : rates (l), 24)
        + pad (pc (median (l.cpu)), 11) + pad (pc (median (l.children)), 11)
        + pad (pc (other), 8) + std::to_string (l.drops) + "\n";
  };
  auto ratio = [&] (const char *what, double a, double b,
      const char *target = nullptr, double goal = 0) {
    double v = a / b;
    std::string t;
    if (target) {
      bool met = v >= goal;
      missed = missed || !met;
      t = std::string ("  (target ") + target + ": " + (std::isnan (v)
          ? "n/a" : met ? "met" : "MISSED") + ")";
    }
    out += pad (std::string ("  ") + what, 50) + fmt (v, "%.2f") + t + "\n";
  };
  for (const FileLeg *l : { &f.tcp, &f.bare, &f.gst, &f.gst_browser,
          &f.browser_gst, &f.bb_peerjs, &f.bb_raw })
    problems += (int) l->problems.size ();
  problems += (int) f.problems.size ();
  out += "\n";
  snprintf (line, sizeof line, "files, %.0f MB of random bytes, %d round%s "
      "(median)", f.bytes / 1e6, opt.files_rounds,
      opt.files_rounds == 1 ? "" : "s");
  out += pad (line, 50) + pad ("MB/s", 9) + pad ("rounds (MB/s)", 24)
      + pad ("CPU:", 11) + pad ("", 11) + pad ("other", 8) + "UDP\n";
  out += pad ("", 50) + pad ("", 9) + pad ("", 24) + pad ("gst-bench", 11)
      + pad ("Chromium", 11) + pad ("load", 8) + "drops\n";
  row ("gst->gst: peerjssink -> peerjssrc, 64 KiB", f.gst);
  row ("bare webrtcbin pair: data channel, 64 KiB", f.bare);
  row ("TCP on 127.0.0.1: one connection, 64 KiB", f.tcp);
  out += pad ("  SHA-256, one core: OpenSSL (the elements')", 50)
      + fmt (f.sha_openssl, "%.1f") + "\n";
  out += pad ("  SHA-256, one core: GLib's GChecksum", 50)
      + fmt (f.sha_glib, "%.1f") + "\n";
  if (!f.browser_why.empty ()) {
    out += "with Chromium: " + f.browser_why + "\n";
  } else {
    snprintf (line, sizeof line, "with Chromium, %.0f MB, 16 KiB chunks",
        f.browser_bytes / 1e6);
    out += std::string (line) + "\n";
    row ("gst->browser: peerjssink -> page (peer.js)", f.gst_browser);
    row ("browser->gst: page (peer.js) -> peerjssrc", f.browser_gst);
    row ("browser->browser: peer.js", f.bb_peerjs);
    row ("browser->browser: bare RTCDataChannel", f.bb_raw);
  }
  if (worst_other > 25)
    out += fmt (worst_other, "WARNING: other work used up to %.0f%% of a "
        "core during a round; the figures may be disturbed.\n");
  out += "ratios\n";
  ratio ("gst->gst / bare webrtcbin pair", f.gst.rate (), f.bare.rate (),
      ">= 0.90", 0.9);
  std::string each;
  for (double x : f.pair_ratio)
    each += (each.empty () ? "" : ", ") + fmt (x, "%.2f");
  out += pad ("    the same, round by round", 50) + each + "\n";
  if (f.browser_why.empty ())
    ratio ("gst->gst / browser->browser peer.js", f.gst.rate (),
        f.bb_peerjs.rate (), ">= 1", 1.0);
  ratio ("gst->gst / TCP", f.gst.rate (), f.tcp.rate ());
  ratio ("bare webrtcbin pair / TCP", f.bare.rate (), f.tcp.rate ());
  if (f.browser_why.empty ()) {
    ratio ("gst->browser / browser->browser peer.js", f.gst_browser.rate (),
        f.bb_peerjs.rate ());
    ratio ("browser->gst / browser->browser peer.js", f.browser_gst.rate (),
        f.bb_peerjs.rate ());
    ratio ("browser->browser peer.js / bare RTCDataChannel",
        f.bb_peerjs.rate (), f.bb_raw.rate ());
  }
  out += "\n";
  out += pad ("chat round trip, peerjssink -> server -> peerjssrc -> back",
      62) + pad ("p50", 10) + pad ("p95", 10) + "events\n";
  double i50 = percentile (f.rtt_idle, 0.5), i95 = percentile (f.rtt_idle,
      0.95);
  double b50 = percentile (f.rtt_busy, 0.5), b95 = percentile (f.rtt_busy,
      0.95);
  out += pad ("  idle", 62) + pad (fmt (i50, "%.1f ms"), 10)
      + pad (fmt (i95, "%.1f ms"), 10) + std::to_string (f.rtt_idle.size ())
      + "\n";
  bool met = b95 < 50;
  missed = missed || !met;
  snprintf (line, sizeof line, "  during gst->gst transfers (%d of %.0f MB)",
      f.busy_transfers, f.bytes / 1e6);
  out += pad (line, 62) + pad (fmt (b50, "%.1f ms"), 10)
      + pad (fmt (b95, "%.1f ms"), 10) + pad (std::to_string (
          f.rtt_busy.size ()), 8) + "(target p95 < 50 ms: "
      + (std::isnan (b95) ? "n/a" : met ? "met" : "MISSED") + ")\n";
  if (f.pings_lost)
    out += "  events without a reply within 5 s: "
        + std::to_string (f.pings_lost) + "\n";
  problems += f.pings_lost;
  for (const FileLeg *l : { &f.tcp, &f.bare, &f.gst, &f.gst_browser,
          &f.browser_gst, &f.bb_peerjs, &f.bb_raw })
    for (const std::string & p : l->problems)
      out += "  FAILED: " + p + "\n";
  for (const std::string & p : f.problems)
    out += "  FAILED: " + p + "\n";
}

void
json_files (GString * j, FileResult & files)
{
  FileResult & f = files;
  g_string_append (j, "\"files\": {");
  json_num (j, "bytes", f.bytes);
  json_num (j, "browser_bytes", f.browser_bytes);
  json_num (j, "sha256_openssl_mb_per_s", f.sha_openssl);
  json_num (j, "sha256_glib_mb_per_s", f.sha_glib);
  std::string each;
  for (double x : f.pair_ratio)
    each += (each.empty () ? "" : ", ") + fmt (x, "%.3f");
  g_string_append_printf (j, "\"gst_to_bare_by_round\": [%s], ",
      each.c_str ());
  for (auto leg : { std::make_pair ("tcp", &f.tcp),
          std::make_pair ("bare_webrtcbin", &f.bare),
          std::make_pair ("gst_to_gst", &f.gst),
          std::make_pair ("gst_to_browser", &f.gst_browser),
          std::make_pair ("browser_to_gst", &f.browser_gst),
          std::make_pair ("browser_peerjs", &f.bb_peerjs),
          std::make_pair ("browser_raw", &f.bb_raw) }) {
    auto list = [] (const std::vector<double> & v) {
      std::string o;
      for (double x : v)
        o += (o.empty () ? "" : ", ") + (std::isnan (x)
            ? std::string ("null") : fmt (x, "%.2f"));
      return o;
    };
    g_string_append_printf (j, "\"%s\": {\"mb_per_s\": [%s], "
        "\"cpu_gst_bench\": [%s], \"cpu_children\": [%s], "
        "\"other_load\": [%s], \"udp_drops\": %lld, \"failures\": %zu}, ",
        leg.first, list (leg.second->rates).c_str (),
        list (leg.second->cpu).c_str (),
        list (leg.second->children).c_str (),
        list (leg.second->other).c_str (), leg.second->drops,
        leg.second->problems.size ());
  }
  auto list = [] (const std::vector<double> & v) {
    std::string o;
    for (double x : v)
      o += (o.empty () ? "" : ", ") + fmt (x, "%.2f");
    return o;
  };
  g_string_append_printf (j, "\"rtt_idle_ms\": [%s], \"rtt_busy_ms\": "
      "[%s], ", list (f.rtt_idle).c_str (), list (f.rtt_busy).c_str ());
  json_num (j, "busy_transfers", f.busy_transfers);
  json_num (j, "pings_lost", f.pings_lost, false);
  g_string_append (j, "}");
}

}  // namespace peerjs::bench
