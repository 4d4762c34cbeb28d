#include "files.h"

#include "media.h"
#include "messages.h"
#include "signalling-client.h"

#include <gst/app/gstappsrc.h>
#include <openssl/evp.h>
#include <glib/gstdio.h>

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <thread>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

/* Flow control, as docs/protocol.md sets it. */
constexpr guint64 HIGH_WATER = 1024 * 1024;
constexpr guint64 LOW_WATER = 256 * 1024;
/* How long a sender waits for the channel to open, and for the ack. */
constexpr gint64 OPEN_TIMEOUT_US = 30 * G_USEC_PER_SEC;
constexpr gint64 ACK_TIMEOUT_US = 30 * G_USEC_PER_SEC;
constexpr gint64 PROGRESS_US = G_USEC_PER_SEC;
/* How long a transfer waits on the other end (a member that stops reading,
 * a pipeline that stops taking a file pad's data) before it gives up. */
constexpr gint64 STALL_TIMEOUT_US = 30 * G_USEC_PER_SEC;
/* How long a sender that was refused waits for its channel to drain. */
constexpr gint64 DRAIN_TIMEOUT_US = 2 * G_USEC_PER_SEC;
/* Bytes a file pad holds before its data waits for the pipeline. */
constexpr guint64 PAD_QUEUE_BYTES = 4 * 1024 * 1024;
/* Files::quiet_until */
constexpr gint64 CHANNEL_QUIET_US = 500 * 1000;

std::string
random_id ()
{
  static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string id;
  for (int i = 0; i < 12; i++)
    id += digits[g_random_int_range (0, 36)];
  return id;
}

std::string
json_text (JsonObject * obj)
{
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (node, obj);
  g_autofree char *text = json_to_string (node, FALSE);
  json_node_unref (node);
  return text;
}

/* A control message on a file channel: {"type", "id"[, key: value]}. */
void
send_control (GstWebRTCDataChannel * channel, const char *type,
    const std::string & id, const char *key = nullptr,
    const std::string & value = {})
{
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type", type);
  json_object_set_string_member (msg, "id", id.c_str ());
  if (key)
    json_object_set_string_member (msg, key, value.c_str ());
  gst_webrtc_data_channel_send_string_full (channel, json_text (msg).c_str (),
      nullptr);
  json_object_unref (msg);
}

guint64
json_uint (JsonObject * obj, const char *name, bool * ok)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : nullptr;
  *ok = n && JSON_NODE_HOLDS_VALUE (n)
      && (json_node_get_value_type (n) == G_TYPE_INT64
      || json_node_get_value_type (n) == G_TYPE_DOUBLE);
  if (!*ok)
    return 0;
  double v = json_node_get_double (n);
  *ok = v >= 0 && v < 9.0e15 && v == (double) (guint64) v;
  return *ok ? (guint64) v : 0;
}

/* SHA-256 of a transfer's bytes, with OpenSSL's libcrypto (webrtcbin's DTLS
 * loads it already): several times GLib's GChecksum, which held a transfer
 * between two pipelines to 0.73 of a bare pair of webrtcbins
 * (docs/performance.md, Files). */
class Sha256
{
public:
  Sha256 () : ctx_ (EVP_MD_CTX_new ())
  {
    EVP_DigestInit_ex (ctx_, EVP_sha256 (), nullptr);
  }
  ~Sha256 () { EVP_MD_CTX_free (ctx_); }
  Sha256 (const Sha256 &) = delete;
  Sha256 & operator= (const Sha256 &) = delete;

  void update (const void *data, gsize n)
  {
    EVP_DigestUpdate (ctx_, data, n);
  }
  /* The digest so far, in lower-case hex; more may be added after. */
  std::string hex () const
  {
    EVP_MD_CTX *copy = EVP_MD_CTX_new ();
    EVP_MD_CTX_copy_ex (copy, ctx_);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex (copy, md, &len);
    EVP_MD_CTX_free (copy);
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; i++) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }

private:
  EVP_MD_CTX *ctx_;
};

/* A file's id: a string, or a number taken as its decimal string, as the
 * original's pages send them (docs/protocol.md). */
std::string
file_id (JsonObject * msg)
{
  JsonNode *n = json_object_get_member (msg, "id");
  if (!n || !JSON_NODE_HOLDS_VALUE (n))
    return {};
  if (json_node_get_value_type (n) == G_TYPE_STRING)
    return json_node_get_string (n);
  if (json_node_get_value_type (n) == G_TYPE_INT64)
    return std::to_string (json_node_get_int (n));
  return {};
}

/* A name from a member, safe to put in our directory: no path, no dot
 * files, no control characters. */
std::string
safe_name (const std::string & name)
{
  std::string out;
  for (char c : name) {
    if (c == '/' || c == '\\')
      out.clear ();
    else if ((unsigned char) c >= 0x20 && c != 0x7f)
      out += c;
  }
  while (!out.empty () && (out[0] == '.' || out[0] == ' '))
    out.erase (0, 1);
  if (out.size () > 200)
    out = out.substr (out.size () - 200);
  if (!g_utf8_validate (out.c_str (), -1, nullptr) || out.empty ())
    out = "file";
  return out;
}

/* `dir/name`, or `dir/stem (n).ext` when that is taken. */
std::string
free_path (const std::string & dir, const std::string & name)
{
  g_autofree char *first = g_build_filename (dir.c_str (), name.c_str (),
      nullptr);
  if (!g_file_test (first, G_FILE_TEST_EXISTS))
    return first;
  std::string stem = name, ext;
  size_t dot = name.rfind ('.');
  if (dot != std::string::npos && dot > 0) {
    stem = name.substr (0, dot);
    ext = name.substr (dot);
  }
  for (int n = 1;; n++) {
    std::string candidate = stem + " (" + std::to_string (n) + ")" + ext;
    g_autofree char *path = g_build_filename (dir.c_str (),
        candidate.c_str (), nullptr);
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      return path;
  }
}

/* Take a file pad off the element, with the appsrc behind it. */
void
drop_pad (GstElement * element, GstElement * appsrc, GstPad * pad)
{
  gst_element_set_locked_state (appsrc, TRUE);
  gst_element_set_state (appsrc, GST_STATE_NULL);
  gst_pad_set_active (pad, FALSE);
  gst_element_remove_pad (element, pad);
  gst_bin_remove (GST_BIN (element), appsrc);
}

std::string
guess_mime (const std::string & name)
{
  g_autofree char *type = g_content_type_guess (name.c_str (), nullptr, 0,
      nullptr);
  g_autofree char *mime = type ? g_content_type_get_mime_type (type)
      : nullptr;
  return mime ? mime : "application/octet-stream";
}

}  // namespace

/* ------------------------------------------------------------------ */
/* One transfer, either way. */

struct Files::Transfer : std::enable_shared_from_this<Transfer>
{
  Transfer (Files & f, bool s) : files (f), sending (s)
  {
    started_us = last_progress_us = g_get_monotonic_time ();
  }
  ~Transfer ()
  {
    gst_clear_object (&pad);
    if (reader)
      fclose (reader);
    if (file)
      fclose (file);
    g_clear_object (&channel);
  }

  Files & files;
  const bool sending;
  std::string id, member, name, mime, path, temp;
  guint64 size = 0;
  gsize chunk = FILE_CHUNK_DEFAULT;

  std::mutex lock;
  std::condition_variable cv;
  GstWebRTCDataChannel *channel = nullptr;
  std::vector<gulong> handlers;
  bool open = false;
  bool ended = false;
  bool acked = false;
  bool started = false;           /* receiving: file:start came */
  bool peer_done = false;         /* receiving: the sender stopped */
  std::string refusal;            /* sending: what the receiver said */
  guint64 bytes = 0;
  Sha256 sha;
  FILE *file = nullptr;
  std::thread thread;             /* sending: reads and sends */
  gint64 started_us, last_progress_us;
  guint64 last_progress_bytes = 0;
  /* Receiving into a pad: the appsrc reads back what was written to
   * `file`, at the pipeline's pace, so webrtcbin's thread never waits on
   * the pipeline and memory stays bounded. The bin owns the appsrc, whose
   * callbacks hold the transfer until the appsrc goes. */
  GstElement *appsrc = nullptr;
  GstPad *pad = nullptr;
  FILE *reader = nullptr;
  guint64 read_pos = 0;
  bool verified = false;          /* the whole file is in and checked */

  const char *direction () const { return sending ? "send" : "receive"; }
  FileHost & host () { return files.host_; }

  void attach (GstWebRTCDataChannel * c);
  void send_control (const char *type, const char *key = nullptr,
      const std::string & value = {});
  void progress (bool force);
  /* The end, once: `error` empty when it completed. */
  void finish (const std::string & error, bool tell_peer);

  /* Sending. */
  void run ();
  /* Receiving, on webrtcbin's thread. */
  void on_string (const char *text);
  void on_data (GBytes * data);
  void on_close ();
  bool begin (JsonObject * msg);
  void complete (JsonObject * msg);
  void make_pad ();
  /* The appsrc wants data (its own thread). */
  void feed_pad ();
};

void
Files::Transfer::attach (GstWebRTCDataChannel * c)
{
  std::lock_guard<std::mutex> guard (lock);
  channel = GST_WEBRTC_DATA_CHANNEL (g_object_ref (c));
  auto connect = [&] (const char *signal, GCallback cb) {
    handlers.push_back (g_signal_connect_data (c, signal, cb,
            new std::weak_ptr<Transfer> (shared_from_this ()),
            [] (gpointer d, GClosure *) {
              delete static_cast<std::weak_ptr<Transfer> *> (d);
            }, (GConnectFlags) 0));
  };
  connect ("on-open", G_CALLBACK (+[] (GstWebRTCDataChannel *, gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ()) {
          std::lock_guard<std::mutex> g (t->lock);
          t->open = true;
          t->cv.notify_all ();
        }
      }));
  connect ("on-close", G_CALLBACK (+[] (GstWebRTCDataChannel *, gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ())
          t->on_close ();
      }));
  connect ("on-error", G_CALLBACK (+[] (GstWebRTCDataChannel *, GError * e,
              gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ())
          t->finish (std::string ("the channel failed: ")
              + (e ? e->message : "?"), false);
      }));
  connect ("on-message-string", G_CALLBACK (+[] (GstWebRTCDataChannel *,
              const char *text, gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ())
          t->on_string (text);
      }));
  connect ("on-message-data", G_CALLBACK (+[] (GstWebRTCDataChannel *,
              GBytes * data, gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ())
          t->on_data (data);
      }));
  connect ("on-buffered-amount-low", G_CALLBACK (+[] (GstWebRTCDataChannel *,
              gpointer d) {
        if (auto t = static_cast<std::weak_ptr<Transfer> *> (d)->lock ()) {
          std::lock_guard<std::mutex> g (t->lock);
          t->cv.notify_all ();
        }
      }));
  g_object_set (c, "buffered-amount-low-threshold", LOW_WATER, NULL);
  GstWebRTCDataChannelState state;
  g_object_get (c, "ready-state", &state, NULL);
  open = state == GST_WEBRTC_DATA_CHANNEL_STATE_OPEN;
  cv.notify_all ();
}

void
Files::Transfer::send_control (const char *type, const char *key,
    const std::string & value)
{
  GstWebRTCDataChannel *c;
  {
    std::lock_guard<std::mutex> guard (lock);
    c = channel ? GST_WEBRTC_DATA_CHANNEL (g_object_ref (channel)) : nullptr;
  }
  if (!c)
    return;
  peerjs::send_control (c, type, id, key, value);
  g_object_unref (c);
}

void
Files::Transfer::progress (bool force)
{
  gint64 now = g_get_monotonic_time ();
  guint64 done, rate;
  {
    std::lock_guard<std::mutex> guard (lock);
    if (!force && now - last_progress_us < PROGRESS_US)
      return;
    double secs = (now - last_progress_us) / (double) G_USEC_PER_SEC;
    rate = secs > 0 ? (guint64) ((bytes - last_progress_bytes) / secs) : 0;
    last_progress_us = now;
    last_progress_bytes = bytes;
    done = bytes;
  }
  host ().post (gst_structure_new (message::FILE_PROGRESS,
          "id", G_TYPE_STRING, id.c_str (),
          "member", G_TYPE_STRING, member.c_str (),
          "direction", G_TYPE_STRING, direction (),
          "name", G_TYPE_STRING, name.c_str (),
          "bytes", G_TYPE_UINT64, done,
          "size", G_TYPE_UINT64, size,
          "rate", G_TYPE_UINT64, rate, NULL));
}

void
Files::Transfer::finish (const std::string & error, bool tell_peer)
{
  GstWebRTCDataChannel *c;
  std::vector<gulong> ids;
  std::string digest;
  guint64 done;
  {
    std::lock_guard<std::mutex> guard (lock);
    if (ended)
      return;
    ended = true;
    cv.notify_all ();
    c = channel;
    channel = nullptr;
    ids.swap (handlers);
    digest = sha.hex ();
    done = bytes;
  }
  if (c && tell_peer && !error.empty ())
    peerjs::send_control (c, "file:cancel", id, "reason", error);
  if (c) {
    files.note_close (member);
    for (gulong h : ids)
      g_signal_handler_disconnect (c, h);
    /* A channel closes only once no data is coming on it any more: a
     * channel closed while data still comes breaks webrtcbin 1.22's stream
     * for good (it errors on that data and never opens that stream id
     * again). So the sender closes after the ack, or at once when the
     * receiver refused; the receiver closes once the sender cancelled,
     * and otherwise leaves it to the sender, told by its cancel or
     * error. */
    if (sending && tell_peer && !error.empty ()) {
      /* Our cancel goes after the data; the receiver closes once it read
       * it, or we do in a while. */
      std::shared_ptr<GstWebRTCDataChannel> later (c, g_object_unref);
      host ().invoke_later (2000, [later] {
        gst_webrtc_data_channel_close (later.get ());
      });
      c = nullptr;
    } else if (sending || peer_done) {
      gst_webrtc_data_channel_close (c);
    }
    if (c)
      g_object_unref (c);
  }
  FILE *f;
  {
    std::lock_guard<std::mutex> guard (lock);
    f = file;
    file = nullptr;
  }
  if (f)
    fclose (f);
  if (!temp.empty () && !error.empty ())
    g_unlink (temp.c_str ());
  if (appsrc && !error.empty ()) {
    drop_pad (host ().element (), appsrc, pad);
  }
  if (error.empty ()) {
    GST_INFO ("file %s %s %s: %" G_GUINT64_FORMAT " bytes", id.c_str (),
        sending ? "sent to" : "received from", member.c_str (), done);
    host ().post (gst_structure_new (message::FILE_COMPLETE,
            "id", G_TYPE_STRING, id.c_str (),
            "member", G_TYPE_STRING, member.c_str (),
            "direction", G_TYPE_STRING, direction (),
            "name", G_TYPE_STRING, name.c_str (),
            "path", G_TYPE_STRING, path.c_str (),
            "pad", G_TYPE_STRING, pad ? GST_PAD_NAME (pad) : "",
            "size", G_TYPE_UINT64, done,
            "sha256", G_TYPE_STRING, digest.c_str (), NULL));
  } else {
    GST_WARNING ("file %s %s %s: %s", id.c_str (),
        sending ? "to" : "from", member.c_str (), error.c_str ());
    host ().post (gst_structure_new (message::FILE_ERROR,
            "id", G_TYPE_STRING, id.c_str (),
            "member", G_TYPE_STRING, member.c_str (),
            "direction", G_TYPE_STRING, direction (),
            "name", G_TYPE_STRING, name.c_str (),
            "message", G_TYPE_STRING, error.c_str (), NULL));
  }
  files.remove (this);
}

/* Sending: on a thread of its own, so reading a file never holds up
 * webrtcbin or the session. */
void
Files::Transfer::run ()
{
  auto wait = [this] (std::unique_lock<std::mutex> & guard, gint64 until,
      const std::function<bool ()> & done) {
    while (!ended && !done ()) {
      if (until && g_get_monotonic_time () > until)
        return false;
      /* Bounded: a signal may come between the test and the wait. */
      cv.wait_for (guard, std::chrono::milliseconds (50));
    }
    return !ended;
  };
  {
    gint64 quiet = files.quiet_until (member);
    std::unique_lock<std::mutex> guard (lock);
    if (quiet > g_get_monotonic_time ())
      wait (guard, quiet, [] { return false; });
    if (ended)
      return;
  }
  std::weak_ptr<Transfer> weak = shared_from_this ();
  host ().open_channel (member, "file:" + id + ":" + random_id (),
      [weak] (GstWebRTCDataChannel * channel) {
        auto t = weak.lock ();
        if (!t)
          return;
        if (!channel) {
          t->finish ("no connection to " + t->member, false);
          return;
        }
        t->attach (channel);
      });
  GstWebRTCDataChannel *c;
  {
    std::unique_lock<std::mutex> guard (lock);
    if (!wait (guard, g_get_monotonic_time () + OPEN_TIMEOUT_US,
            [this] { return open; })) {
      bool over = ended;
      guard.unlock ();
      if (!over)
        finish ("the data channel did not open within 30 s", false);
      return;
    }
    c = GST_WEBRTC_DATA_CHANNEL (g_object_ref (channel));
  }
  auto fail = [&] (const std::string & why) {
    g_object_unref (c);
    finish (why, true);
  };

  JsonObject *start = json_object_new ();
  json_object_set_string_member (start, "type", "file:start");
  json_object_set_string_member (start, "id", id.c_str ());
  json_object_set_string_member (start, "name", name.c_str ());
  json_object_set_int_member (start, "size", size);
  json_object_set_string_member (start, "mime", mime.c_str ());
  json_object_set_int_member (start, "chunk", chunk);
  std::string text = json_text (start);
  json_object_unref (start);
  GError *error = nullptr;
  if (!gst_webrtc_data_channel_send_string_full (c, text.c_str (), &error)) {
    std::string why = std::string ("could not send: ") + error->message;
    g_clear_error (&error);
    return fail (why);
  }

  std::vector<guint8> buf (chunk);
  guint64 sent = 0;
  while (sent < size) {
    {
      std::unique_lock<std::mutex> guard (lock);
      /* A file:cancel or file:error from the receiver stops the loop before
       * the next chunk: nothing more of the file goes out. */
      if (!wait (guard, g_get_monotonic_time () + STALL_TIMEOUT_US, [this, c] {
                if (!refusal.empty ())
                  return true;
                guint64 buffered = 0;
                g_object_get (c, "buffered-amount", &buffered, NULL);
                return buffered <= HIGH_WATER;
              })) {
        bool over = ended;
        guard.unlock ();
        if (!over)
          return fail ("the receiver stopped reading: nothing went out for "
              "30 s");
        g_object_unref (c);
        return;
      }
      if (!refusal.empty ()) {
        std::string refused = refusal;
        /* The channel closes once what it buffered went out: webrtcbin
         * 1.22 breaks the whole connection when a channel closes with
         * data still queued in it. That is at most HIGH_WATER, which the
         * receiver reads and drops. */
        wait (guard, g_get_monotonic_time () + DRAIN_TIMEOUT_US, [c] {
              guint64 buffered = 0;
              g_object_get (c, "buffered-amount", &buffered, NULL);
              return buffered == 0;
            });
        guard.unlock ();
        g_object_unref (c);
        finish ("the receiver refused it: " + refused, false);
        return;
      }
    }
    gsize want = (gsize) MIN ((guint64) chunk, size - sent);
    gsize n = fread (buf.data (), 1, want, file);
    if (n == 0)
      return fail (std::string ("could not read ") + path + ": "
          + (ferror (file) ? g_strerror (errno) : "it is shorter than "
              "when it was offered"));
    sha.update (buf.data (), n);
    GBytes *bytes_out = g_bytes_new (buf.data (), n);
    bool ok = gst_webrtc_data_channel_send_data_full (c, bytes_out, &error);
    g_bytes_unref (bytes_out);
    if (!ok) {
      std::string why = std::string ("could not send: ") + error->message;
      g_clear_error (&error);
      return fail (why);
    }
    sent += n;
    {
      std::lock_guard<std::mutex> guard (lock);
      bytes = sent;
    }
    progress (false);
  }
  progress (true);

  JsonObject *end = json_object_new ();
  json_object_set_string_member (end, "type", "file:end");
  json_object_set_string_member (end, "id", id.c_str ());
  json_object_set_int_member (end, "size", sent);
  json_object_set_string_member (end, "sha256", sha.hex ().c_str ());
  text = json_text (end);
  json_object_unref (end);
  gst_webrtc_data_channel_send_string_full (c, text.c_str (), nullptr);
  g_object_unref (c);

  std::unique_lock<std::mutex> guard (lock);
  bool answered = wait (guard, g_get_monotonic_time () + ACK_TIMEOUT_US,
      [this] { return acked || !refusal.empty (); });
  bool over = ended;
  std::string refused = refusal;
  guard.unlock ();
  if (over)
    return;
  if (!answered)
    finish ("the receiver did not acknowledge the file", true);
  else if (!refused.empty ())
    finish ("the receiver refused it: " + refused, false);
  else
    finish ("", false);
}

void
Files::Transfer::on_close ()
{
  {
    std::lock_guard<std::mutex> guard (lock);
    peer_done = true;
  }
  finish (sending ? "the receiver went away"
      : "the sender went away before the file was complete", false);
}

bool
Files::Transfer::begin (JsonObject * msg)
{
  bool ok;
  guint64 announced = json_uint (msg, "size", &ok);
  if (!ok) {
    finish ("file:start without a size", true);
    return false;
  }
  std::string n = json_string (msg, "name");
  {
    std::lock_guard<std::mutex> guard (lock);
    started = true;
    size = announced;
    if (!n.empty ())
      name = n;
    std::string m = json_string (msg, "mime");
    if (!m.empty ())
      mime = m;
  }
  std::string dir = files.settings_.download_dir;
  std::string where;
  if (!dir.empty ()) {
    std::string base = safe_name (name);
    g_autofree char *t = g_build_filename (dir.c_str (),
        ("." + base + "." + id + ".part").c_str (), nullptr);
    where = t;
    file = fopen (where.c_str (), "wb");
  } else {
    /* The file pad alone: a file nobody else sees, gone once closed. */
    char *t = nullptr;
    int fd = g_file_open_tmp ("peerjs-in-XXXXXX", &t, nullptr);
    where = t ? t : "";
    g_free (t);
    file = fd >= 0 ? fdopen (fd, "wb") : nullptr;
  }
  if (file && files.settings_.pads)
    reader = fopen (where.c_str (), "rb");
  if (!file || (files.settings_.pads && !reader)) {
    std::string why = "cannot write " + where + ": " + g_strerror (errno);
    if (file)
      g_unlink (where.c_str ());
    finish (why, true);
    return false;
  }
  if (dir.empty ())
    g_unlink (where.c_str ());
  else
    temp = where;
  if (files.settings_.pads)
    make_pad ();
  return true;
}

void
Files::Transfer::make_pad ()
{
  GstElement *element = host ().element ();
  std::string pad_name = "file_" + member + "_" + id;
  appsrc = gst_element_factory_make ("appsrc", ("filesrc-" + member + "-"
          + id).c_str ());
  g_autoptr (GstCaps) caps = gst_caps_from_string (mime.c_str ());
  if (!caps || gst_caps_is_any (caps) || gst_caps_get_size (caps) != 1)
    gst_caps_replace (&caps, nullptr);
  if (!caps)
    caps = gst_caps_new_empty_simple ("application/octet-stream");
  g_object_set (appsrc, "format", GST_FORMAT_BYTES, "caps", caps,
      "max-bytes", (guint64) FILE_CHUNK_MAX * 4, NULL);
  GstAppSrcCallbacks callbacks = { };
  callbacks.need_data = [] (GstAppSrc *, guint, gpointer data) {
    (*static_cast<std::shared_ptr<Transfer> *> (data))->feed_pad ();
  };
  gst_app_src_set_callbacks (GST_APP_SRC (appsrc), &callbacks,
      new std::shared_ptr<Transfer> (shared_from_this ()), [] (gpointer data) {
        delete static_cast<std::shared_ptr<Transfer> *> (data);
      });
  gst_bin_add (GST_BIN (element), appsrc);
  gst_element_sync_state_with_parent (appsrc);
  g_autoptr (GstPad) src = gst_element_get_static_pad (appsrc, "src");
  GstPadTemplate *templ = gst_element_get_pad_template (element,
      "file_%s_%s");
  pad = gst_ghost_pad_new_from_template (pad_name.c_str (), src, templ);
  drop_unless_linked (pad);
  /* The pad goes once its EOS went through. */
  struct Drop
  {
    FileHost *host;
    GstElement *appsrc;
    GstPad *pad;
  };
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
      [] (GstPad *, GstPadProbeInfo * info, gpointer data) {
        if (GST_EVENT_TYPE (GST_PAD_PROBE_INFO_EVENT (info)) != GST_EVENT_EOS)
          return GST_PAD_PROBE_OK;
        auto *d = static_cast<Drop *> (data);
        GstElement *a = GST_ELEMENT (gst_object_ref (d->appsrc));
        GstPad *p = GST_PAD (gst_object_ref (d->pad));
        FileHost *host = d->host;
        host->invoke ([host, a, p] {
          drop_pad (host->element (), a, p);
          gst_object_unref (a);
          gst_object_unref (p);
        });
        return GST_PAD_PROBE_REMOVE;
      }, new Drop { &host (), appsrc, pad }, [] (gpointer data) {
        delete static_cast<Drop *> (data);
      });
  gst_pad_set_active (pad, TRUE);
  gst_element_add_pad (element, GST_PAD (gst_object_ref (pad)));
  /* The name as a tag, for whoever downstream wants it. */
  GstTagList *tags = gst_tag_list_new (GST_TAG_TITLE, name.c_str (), NULL);
  gst_pad_push_event (src, gst_event_new_tag (tags));
}

void
Files::Transfer::feed_pad ()
{
  std::vector<guint8> buf (FILE_CHUNK_MAX);
  gsize n = 0;
  bool eos = false;
  {
    std::unique_lock<std::mutex> guard (lock);
    /* Bounded waits: the appsrc may be going down meanwhile. */
    while (read_pos >= bytes && !verified && !(ended && !verified))
      cv.wait_for (guard, std::chrono::milliseconds (100));
    if (!reader || (ended && !verified))
      return;
    if (read_pos < bytes) {
      n = fread (buf.data (), 1, MIN ((guint64) buf.size (), bytes - read_pos),
          reader);
      read_pos += n;
    }
    eos = verified && read_pos >= bytes;
  }
  if (n > 0) {
    GstBuffer *out = gst_buffer_new_allocate (nullptr, n, nullptr);
    gst_buffer_fill (out, 0, buf.data (), n);
    GST_BUFFER_OFFSET (out) = read_pos - n;
    gst_app_src_push_buffer (GST_APP_SRC (appsrc), out);
  }
  if (eos)
    gst_app_src_end_of_stream (GST_APP_SRC (appsrc));
}

void
Files::Transfer::complete (JsonObject * msg)
{
  bool ok;
  guint64 told = json_uint (msg, "size", &ok);
  std::string digest = sha.hex ();
  std::string theirs = json_string (msg, "sha256");
  std::string why;
  if (bytes != size || (ok && told != bytes))
    why = "size mismatch: " + std::to_string (bytes) + " bytes of "
        + std::to_string (size);
  else if (g_ascii_strcasecmp (theirs.c_str (), digest.c_str ()) != 0)
    why = "SHA-256 mismatch";
  if (!why.empty ()) {
    send_control ("file:error", "message", why);
    finish (why, false);
    return;
  }
  FILE *f;
  {
    std::lock_guard<std::mutex> guard (lock);
    if (ended)
      return;
    f = file;
    file = nullptr;
  }
  if (f && temp.empty ()) {
    /* The file pad's copy alone, unlinked already. */
    fclose (f);
  } else if (f) {
    bool flushed = fflush (f) == 0 && fsync (fileno (f)) == 0;
    fclose (f);
    std::string final_path = free_path (files.settings_.download_dir,
        safe_name (name));
    if (!flushed || g_rename (temp.c_str (), final_path.c_str ()) != 0) {
      std::string why = "cannot save " + final_path + ": "
          + g_strerror (errno);
      send_control ("file:error", "message", why);
      finish (why, false);
      return;
    }
    temp.clear ();
    path = final_path;
  }
  {
    /* Before finish (): the file pad may send its EOS from now on. */
    std::lock_guard<std::mutex> guard (lock);
    verified = true;
    cv.notify_all ();
  }
  send_control ("file:ack");
  progress (true);
  finish ("", false);
}

void
Files::Transfer::on_string (const char *text)
{
  {
    /* A message already on its way when the transfer ended. */
    std::lock_guard<std::mutex> guard (lock);
    if (ended)
      return;
  }
  g_autoptr (JsonParser) parser = json_parser_new ();
  bool readable = text && json_parser_load_from_data (parser, text, -1,
      nullptr) && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser));
  JsonObject *msg = readable
      ? json_node_get_object (json_parser_get_root (parser)) : nullptr;
  std::string type = readable ? json_string (msg, "type") : "";
  if (sending) {
    if (!readable)
      return;
    std::lock_guard<std::mutex> guard (lock);
    if (type == "file:ack") {
      acked = true;
    } else if (type == "file:error" || type == "file:cancel") {
      refusal = json_string (msg, type == "file:error" ? "message" : "reason");
      if (refusal.empty ())
        refusal = type;
    }
    cv.notify_all ();
    return;
  }
  if (!readable) {
    finish ("unreadable control message", true);
    return;
  }
  if (type == "file:start") {
    if (started)
      finish ("file:start came twice", true);
    else
      begin (msg);
  } else if (type == "file:end") {
    if (!started)
      finish ("file:end before file:start", true);
    else
      complete (msg);
  } else if (type == "file:cancel") {
    std::string reason = json_string (msg, "reason");
    {
      std::lock_guard<std::mutex> guard (lock);
      peer_done = true;
    }
    finish ("the sender cancelled" + (reason.empty () ? std::string ()
            : ": " + reason), false);
  } else {
    /* What a later version may add. */
    GST_DEBUG ("file %s: ignoring '%s'", id.c_str (), type.c_str ());
  }
}

void
Files::Transfer::on_data (GBytes * data)
{
  {
    std::lock_guard<std::mutex> guard (lock);
    if (sending || ended)
      return;
  }
  gsize n = 0;
  const guint8 *p = data ? static_cast<const guint8 *> (g_bytes_get_data (data,
          &n)) : nullptr;
  if (!started) {
    finish ("data before file:start", true);
    return;
  }
  if (n > FILE_CHUNK_MAX) {
    finish ("a chunk of " + std::to_string (n) + " bytes, more than the "
        + std::to_string (FILE_CHUNK_MAX) + " agreed", true);
    return;
  }
  if (bytes + n > size) {
    finish ("more bytes than announced", true);
    return;
  }
  if (n == 0)
    return;
  {
    std::unique_lock<std::mutex> guard (lock);
    if (ended)
      return;
    sha.update (p, n);
    if (fwrite (p, 1, n, file) != n || (reader && fflush (file) != 0)) {
      guard.unlock ();
      finish ("cannot write " + temp + ": " + g_strerror (errno), true);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> guard (lock);
    bytes += n;
    cv.notify_all ();
  }
  progress (false);
}

/* ------------------------------------------------------------------ */

Files::Files (FileHost & host) : host_ (host) {}

Files::~Files ()
{
  stop ();
}

void
Files::configure (const Settings & settings)
{
  std::lock_guard<std::mutex> guard (lock_);
  settings_ = settings;
}

void
Files::add (std::shared_ptr<Transfer> t)
{
  std::lock_guard<std::mutex> guard (lock_);
  transfers_.push_back (std::move (t));
}

void
Files::remove (Transfer * t)
{
  std::shared_ptr<Transfer> gone;
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = std::find_if (transfers_.begin (), transfers_.end (),
        [t] (const std::shared_ptr<Transfer> & x) { return x.get () == t; });
    if (it == transfers_.end ())
      return;
    gone = *it;
    transfers_.erase (it);
  }
  host_.transfer_ended (gone->member);
  /* A sending thread ends by itself; it holds the transfer till then. */
  if (gone->thread.joinable ()) {
    if (gone->thread.get_id () == std::this_thread::get_id ())
      gone->thread.detach ();
    else
      gone->thread.join ();
  }
}

std::string
Files::offer (const std::string & path, const std::string & name,
    const std::vector<std::string> & to,
    const std::vector<std::string> & threads, bool temporary,
    std::string * error)
{
  GStatBuf st;
  if (g_stat (path.c_str (), &st) != 0 || !S_ISREG (st.st_mode)) {
    *error = "cannot offer '" + path + "': not a readable file";
    return {};
  }
  FILE *f = fopen (path.c_str (), "rb");
  if (!f) {
    *error = "cannot offer '" + path + "': " + g_strerror (errno);
    return {};
  }
  fclose (f);
  if (to.empty () && threads.empty ()) {
    *error = "offer-file: give a thread or members to offer it to";
    return {};
  }
  Offer o;
  o.path = path;
  g_autofree char *base = g_path_get_basename (path.c_str ());
  o.name = name.empty () ? base : name;
  o.temporary = temporary;
  o.mime = guess_mime (o.name);
  o.size = (guint64) st.st_size;
  std::string id = random_id ();
  {
    std::lock_guard<std::mutex> guard (lock_);
    offers_[id] = o;
  }
  /* One offer per thread, and one to the members named: each reaches
   * whom it names, all with the same id. */
  std::vector<std::string> targets = threads;
  if (!to.empty ())
    targets.push_back ("");
  for (const std::string & thread : targets) {
    JsonObject *msg = json_object_new ();
    json_object_set_string_member (msg, "type", "file:offer");
    if (!thread.empty ()) {
      json_object_set_string_member (msg, "thread", thread.c_str ());
    } else {
      JsonArray *a = json_array_new ();
      for (const std::string & m : to)
        json_array_add_string_element (a, m.c_str ());
      json_object_set_array_member (msg, "to", a);
    }
    json_object_set_string_member (msg, "id", id.c_str ());
    json_object_set_string_member (msg, "name", o.name.c_str ());
    json_object_set_int_member (msg, "size", o.size);
    json_object_set_string_member (msg, "mime", o.mime.c_str ());
    host_.send (msg);
    json_object_unref (msg);
  }
  return id;
}

bool
Files::request (const std::string & member, const std::string & id,
    std::string * error)
{
  auto t = std::make_shared<Transfer> (*this, false);
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (settings_.accept == Accept::None) {
      *error = "accept-files is none: this element receives no files";
      return false;
    }
    if (settings_.download_dir.empty () && !settings_.pads) {
      *error = "set download-dir: this element has no file pads to give "
          "the file out of";
      return false;
    }
    auto o = offered_.find (member + "/" + id);
    if (o == offered_.end ()) {
      *error = "member " + member + " offered no file " + id;
      return false;
    }
    for (auto & x : transfers_)
      if (!x->sending && x->member == member && x->id == id) {
        *error = "file " + id + " from " + member + " is being received "
            "already";
        return false;
      }
    t->id = id;
    t->member = member;
    t->name = o->second.name;
    t->mime = o->second.mime;
    t->size = o->second.size;
    transfers_.push_back (t);
  }
  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type", "file:request");
  json_object_set_string_member (msg, "to", member.c_str ());
  json_object_set_string_member (msg, "id", id.c_str ());
  /* Between pipelines, chunks up to webrtcbin's limit (docs/protocol.md). */
  json_object_set_int_member (msg, "chunk", FILE_CHUNK_MAX);
  host_.send (msg);
  json_object_unref (msg);
  return true;
}

bool
Files::cancel (const std::string & id)
{
  std::vector<std::shared_ptr<Transfer>> hit;
  bool withdrawn;
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto o = offers_.find (id);
    withdrawn = o != offers_.end ();
    if (withdrawn) {
      /* A transfer going on reads from its own open file. */
      if (o->second.temporary)
        g_unlink (o->second.path.c_str ());
      offers_.erase (o);
    }
    for (auto & t : transfers_)
      if (t->id == id)
        hit.push_back (t);
  }
  for (auto & t : hit)
    t->finish ("cancelled", true);
  return withdrawn || !hit.empty ();
}

void
Files::on_offer (JsonObject * msg)
{
  std::string from = json_string (msg, "from");
  std::string id = file_id (msg);
  bool ok;
  /* The original's pages offer without a size; file:start gives it. */
  guint64 size = json_uint (msg, "size", &ok);
  if (from.empty () || id.empty ()) {
    GST_WARNING ("a file:offer without from or id, ignored");
    return;
  }
  Offered o;
  o.name = json_string (msg, "name");
  o.mime = json_string (msg, "mime");
  o.size = size;
  Accept accept;
  {
    std::lock_guard<std::mutex> guard (lock_);
    offered_[from + "/" + id] = o;
    accept = settings_.accept;
  }
  host_.post (gst_structure_new (message::FILE_OFFER,
          "id", G_TYPE_STRING, id.c_str (),
          "from", G_TYPE_STRING, from.c_str (),
          "thread", G_TYPE_STRING, json_string (msg, "thread").c_str (),
          "name", G_TYPE_STRING, o.name.c_str (),
          "size", G_TYPE_UINT64, o.size,
          "mime", G_TYPE_STRING, o.mime.c_str (), NULL));
  if (accept == Accept::All) {
    std::string error;
    if (!request (from, id, &error))
      GST_ELEMENT_WARNING (host_.element (), RESOURCE, WRITE,
          ("Not receiving file '%s' from %s: %s", o.name.c_str (),
              from.c_str (), error.c_str ()), (nullptr));
  }
}

void
Files::on_request (JsonObject * msg)
{
  std::string from = json_string (msg, "from");
  std::string id = file_id (msg);
  if (from.empty ())
    return;
  Offer offer;
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = offers_.find (id);
    if (it != offers_.end ())
      offer = it->second;
  }
  if (offer.path.empty ()) {
    JsonObject *cancel = json_object_new ();
    json_object_set_string_member (cancel, "type", "file:cancel");
    json_object_set_string_member (cancel, "to", from.c_str ());
    json_object_set_string_member (cancel, "id", id.c_str ());
    json_object_set_string_member (cancel, "reason", "not offered");
    host_.send (cancel);
    json_object_unref (cancel);
    host_.post (gst_structure_new (message::FILE_ERROR,
            "id", G_TYPE_STRING, id.c_str (),
            "member", G_TYPE_STRING, from.c_str (),
            "direction", G_TYPE_STRING, "send",
            "name", G_TYPE_STRING, "",
            "message", G_TYPE_STRING, "requested, but not on offer", NULL));
    return;
  }
  /* The receiver says how large a chunk it takes; peer.js says nothing
   * and gets the 16 KiB every browser takes. */
  bool ok;
  guint64 chunk = json_uint (msg, "chunk", &ok);
  if (!ok || chunk < 1024)
    chunk = FILE_CHUNK_DEFAULT;
  start_sending (from, id, offer, (gsize) MIN (chunk, FILE_CHUNK_MAX));
}

void
Files::start_sending (const std::string & member, const std::string & id,
    const Offer & offer, gsize chunk)
{
  auto t = std::make_shared<Transfer> (*this, true);
  t->id = id;
  t->member = member;
  t->name = offer.name;
  t->mime = offer.mime;
  t->path = offer.path;
  t->size = offer.size;
  t->chunk = chunk;
  t->file = fopen (offer.path.c_str (), "rb");
  add (t);
  if (!t->file) {
    t->finish ("cannot read " + offer.path + ": " + g_strerror (errno),
        false);
    return;
  }
  t->thread = std::thread ([t] { t->run (); });
}

void
Files::on_cancel (JsonObject * msg)
{
  std::string from = json_string (msg, "from");
  std::string id = file_id (msg);
  std::string reason = json_string (msg, "reason");
  std::shared_ptr<Transfer> t = find_wanted (from, id);
  if (t)
    t->finish ("the sender refused: " + (reason.empty () ? "cancelled"
            : reason), false);
}

std::shared_ptr<Files::Transfer>
Files::find_wanted (const std::string & member, const std::string & id)
{
  std::lock_guard<std::mutex> guard (lock_);
  for (auto & t : transfers_) {
    if (t->sending || t->member != member || t->id != id)
      continue;
    std::lock_guard<std::mutex> g (t->lock);
    if (!t->channel && !t->ended)
      return t;
  }
  return nullptr;
}

void
Files::incoming (const std::string & member, GstWebRTCDataChannel * channel)
{
  g_autofree char *label = nullptr;
  g_object_get (channel, "label", &label, NULL);
  /* file:<id>:<nonce> */
  g_auto (GStrv) parts = g_strsplit (label ? label : "", ":", 3);
  std::string id = g_strv_length (parts) >= 2 ? parts[1] : "";
  std::shared_ptr<Transfer> t = find_wanted (member, id);
  if (!t) {
    GST_INFO ("%s opened channel '%s' for a file we did not ask for",
        member.c_str (), label);
    /* The sender closes it (docs/protocol.md): it may be sending already. */
    send_control (channel, "file:cancel", id, "reason", "not requested");
    return;
  }
  t->attach (channel);
}

void
Files::member_gone (const std::string & member)
{
  std::vector<std::shared_ptr<Transfer>> hit;
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (auto & t : transfers_)
      if (t->member == member)
        hit.push_back (t);
  }
  for (auto & t : hit)
    t->finish ("the connection to " + member + " closed", false);
}

gint64
Files::quiet_until (const std::string & member)
{
  std::lock_guard<std::mutex> guard (lock_);
  auto it = last_close_.find (member);
  return it == last_close_.end () ? 0 : it->second + CHANNEL_QUIET_US;
}

void
Files::note_close (const std::string & member)
{
  std::lock_guard<std::mutex> guard (lock_);
  last_close_[member] = g_get_monotonic_time ();
}

bool
Files::busy (const std::string & member)
{
  std::lock_guard<std::mutex> guard (lock_);
  for (auto & t : transfers_)
    if (t->member == member)
      return true;
  return false;
}

void
Files::stop ()
{
  std::vector<std::shared_ptr<Transfer>> all;
  {
    std::lock_guard<std::mutex> guard (lock_);
    all = transfers_;
  }
  for (auto & t : all)
    t->finish ("the element stopped", true);
  std::lock_guard<std::mutex> guard (lock_);
  for (auto & o : offers_)
    if (o.second.temporary)
      g_unlink (o.second.path.c_str ());
  offers_.clear ();
  offered_.clear ();
}

}  // namespace peerjs
