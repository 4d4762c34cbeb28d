/* peerjssink, peerjssrc and peerjsbin end to end: real pipelines against the
 * real signalling server on its own thread, in a network namespace that has
 * only loopback (the whole test process enters it before anything starts).
 * Every case asserts what a user would check: decoded frames with the
 * expected caps and changing content, samples that are not silence, pads
 * that come and go, bus messages, errors that name what failed.
 *
 * The suite is skipped (exit 77) only when it cannot make the namespace
 * (not root and no user namespaces, or no `ip`). */
#include "harness.h"
#include "../../gst/peerjs/fec.h"
#include "ice-check.h"
#include "turn.h"

#include <glib/gstdio.h>

#include <gst/check/gstcheck.h>
#include <gst/video/video.h>
#include <gst/webrtc/webrtc.h>

#include <jwt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using peerjs::test::ServerThread;
using peerjs::test::Client;
using peerjs::test::J;

/* webrtcbin 1.22 leaves a paused task behind (its data channel's appsrc
 * and sctpenc) after a connection closes, and both GST_END_TEST and
 * gst-check's exit handler (gst_deinit) wait for every task thread to end.
 * So the cases end with END_TEST, and the process of each case, once it
 * passed, ends without exit handlers (end_case_process). */

namespace {

/* Waits in tests are generous: two cores may run another suite too. */
constexpr int WAIT_MS = 20000;
/* How often the elements read the loss members report (gst/peerjs/fec.h). */
constexpr gulong LOSS_POLL_US = 1000 * 1000;

gint64
now_ms ()
{
  return g_get_monotonic_time () / 1000;
}

bool
wait_until (const std::function<bool ()> & done, int timeout_ms = WAIT_MS)
{
  gint64 deadline = now_ms () + timeout_ms;
  while (!done ()) {
    if (now_ms () > deadline)
      return false;
    g_usleep (20 * 1000);
  }
  return true;
}

/* What reached one output branch of a member pad. */
/* A 320x240 picture's luma, every PICTURE_STEP-th pixel of every
 * PICTURE_STEP-th row: enough to tell pictures apart, cheap to compare. */
constexpr int PICTURE_STEP = 4;
constexpr int PICTURE_W = 320 / PICTURE_STEP, PICTURE_H = 240 / PICTURE_STEP;

std::vector<guint8>
picture_sample (const guint8 * luma, int stride)
{
  std::vector<guint8> out (PICTURE_W * PICTURE_H);
  for (int y = 0; y < PICTURE_H; y++)
    for (int x = 0; x < PICTURE_W; x++)
      out[y * PICTURE_W + x] = luma[y * PICTURE_STEP * stride
          + x * PICTURE_STEP];
  return out;
}

/* The luma of a 320x240 I420 buffer with `caps`, sampled; empty for
 * another size or format. */
std::vector<guint8>
picture_of (GstBuffer * buf, GstCaps * caps)
{
  GstVideoInfo info;
  if (!caps || !gst_video_info_from_caps (&info, caps)
      || GST_VIDEO_INFO_FORMAT (&info) != GST_VIDEO_FORMAT_I420
      || GST_VIDEO_INFO_WIDTH (&info) != 320
      || GST_VIDEO_INFO_HEIGHT (&info) != 240)
    return {};
  GstVideoFrame frame;
  if (!gst_video_frame_map (&frame, &info, buf, GST_MAP_READ))
    return {};
  std::vector<guint8> out = picture_sample (static_cast<const guint8 *> (
          GST_VIDEO_FRAME_PLANE_DATA (&frame, 0)),
      GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0));
  gst_video_frame_unmap (&frame);
  return out;
}

struct Output
{
  std::string pad;
  int buffers = 0;
  std::set<guint> contents;     /* checksums of video frames */
  std::vector<gint64> times;    /* when each video frame came, ms */
  std::vector<GstClockTime> pts;   /* each video frame's timestamp */
  /* Each 320x240 video frame's luma, sampled (picture_sample ()). */
  std::vector<std::vector<guint8>> pictures;
  gint64 added = 0;             /* when the pad came, ms */
  int peak = 0;                 /* largest |sample| of S16 audio */
  double yuv[3] = { 0, 0, 0 };  /* the last I420 frame's mean Y, U and V */
  std::string caps;
  bool removed = false;
  /* File pads: every byte, hashed. */
  guint64 bytes = 0;
  std::shared_ptr<GChecksum> sha;
  std::string digest;           /* set at EOS */
};

/* A pipeline around one peerjs element named "p". Member pads are linked
 * to `queue ! convert ! fakesink` branches that count what they get; bus
 * messages are kept in order. */
class Member
{
public:
  explicit Member (const std::string & description)
  {
    GError *error = nullptr;
    pipeline_ = gst_parse_launch (description.c_str (), &error);
    fail_unless (pipeline_ != nullptr, "cannot parse '%s': %s",
        description.c_str (), error ? error->message : "?");
    g_clear_error (&error);
    if (!GST_IS_PIPELINE (pipeline_)) {
      /* A lone element: parse_launch gives it back without a pipeline. */
      GstElement *lone = pipeline_;
      pipeline_ = gst_pipeline_new (nullptr);
      gst_bin_add (GST_BIN (pipeline_), lone);
    }
    element_ = gst_bin_get_by_name (GST_BIN (pipeline_), "p");
    fail_unless (element_ != nullptr, "no element named p in '%s'",
        description.c_str ());
    g_autoptr (GstBus) bus = gst_element_get_bus (pipeline_);
    gst_bus_set_sync_handler (bus, [] (GstBus *, GstMessage * m,
            gpointer self) -> GstBusSyncReply {
          static_cast<Member *> (self)->on_message (m);
          return GST_BUS_DROP;
        }, this, nullptr);
    if (g_signal_lookup ("pad-added", G_OBJECT_TYPE (element_))) {
      g_signal_connect (element_, "pad-added", G_CALLBACK (+[] (GstElement *,
                  GstPad * pad, gpointer self) {
            static_cast<Member *> (self)->on_pad_added (pad);
          }), this);
      g_signal_connect (element_, "pad-removed", G_CALLBACK (+[] (GstElement *,
                  GstPad * pad, gpointer self) {
            static_cast<Member *> (self)->on_pad_removed (pad);
          }), this);
    }
  }

  ~Member ()
  {
    stop ();
    gst_object_unref (element_);
    gst_object_unref (pipeline_);
  }

  GstStateChangeReturn play ()
  {
    return gst_element_set_state (pipeline_, GST_STATE_PLAYING);
  }

  /* To NULL; returns how long it took, in ms. */
  gint64 stop ()
  {
    gint64 t0 = now_ms ();
    gst_element_set_state (pipeline_, GST_STATE_NULL);
    return now_ms () - t0;
  }

  GstElement *element () const { return element_; }

  std::string id ()
  {
    std::string id;
    wait_until ([&] {
      g_autofree char *s = nullptr;
      g_object_get (element_, "session-id", &s, NULL);
      id = s ? s : "";
      return !id.empty ();
    });
    fail_if (id.empty (), "no session-id within %d ms", WAIT_MS);
    return id;
  }

  /* The latest element message named `name` whose fields match, as text. */
  std::string find (const std::string & name,
      const std::map<std::string, std::string> & fields = {})
  {
    std::lock_guard<std::mutex> guard (lock_);
    for (auto it = messages_.rbegin (); it != messages_.rend (); ++it) {
      GstStructure *s = *it;
      if (!gst_structure_has_name (s, name.c_str ()))
        continue;
      bool match = true;
      for (auto & f : fields) {
        const char *v = gst_structure_get_string (s, f.first.c_str ());
        match = match && v && f.second == v;
      }
      if (match) {
        g_autofree char *text = gst_structure_to_string (s);
        return text;
      }
    }
    return {};
  }

  std::string wait_message (const std::string & name,
      const std::map<std::string, std::string> & fields = {},
      int timeout_ms = WAIT_MS)
  {
    std::string found;
    wait_until ([&] { return !(found = find (name, fields)).empty (); },
        timeout_ms);
    fail_if (found.empty (), "no %s message within %d ms; messages:\n%s",
        name.c_str (), timeout_ms, describe ().c_str ());
    return found;
  }

  /* Every element message named `name` whose fields match, as text, in
   * the order they came. */
  std::vector<std::string> all (const std::string & name,
      const std::map<std::string, std::string> & fields = {})
  {
    std::lock_guard<std::mutex> guard (lock_);
    std::vector<std::string> out;
    for (GstStructure *s : messages_) {
      bool match = gst_structure_has_name (s, name.c_str ());
      for (auto & f : fields) {
        const char *v = gst_structure_get_string (s, f.first.c_str ());
        match = match && v && f.second == v;
      }
      if (match) {
        g_autofree char *text = gst_structure_to_string (s);
        out.push_back (text);
      }
    }
    return out;
  }

  int count (const std::string & name,
      const std::map<std::string, std::string> & fields = {})
  {
    std::lock_guard<std::mutex> guard (lock_);
    int n = 0;
    for (GstStructure *s : messages_) {
      bool match = gst_structure_has_name (s, name.c_str ());
      for (auto & f : fields) {
        const char *v = gst_structure_get_string (s, f.first.c_str ());
        match = match && v && f.second == v;
      }
      n += match;
    }
    return n;
  }

  Output output (const std::string & pad)
  {
    std::lock_guard<std::mutex> guard (lock_);
    auto it = outputs_.find (pad);
    return it == outputs_.end () ? Output () : it->second;
  }

  /* Waits until pad `pad` has had `n` more buffers than `from`. */
  void wait_buffers (const std::string & pad, int n, int from = -1,
      int timeout_ms = WAIT_MS)
  {
    if (from < 0)
      from = 0;
    bool ok = wait_until ([&] { return output (pad).buffers >= from + n; },
        timeout_ms);
    fail_unless (ok, "pad %s: %d buffers after %d ms, wanted %d; messages:\n%s",
        pad.c_str (), output (pad).buffers - from, timeout_ms, n,
        describe ().c_str ());
  }

  /* Send EOS into the pipeline and wait until it has gone through. */
  bool finish (int timeout_ms = 10000)
  {
    gst_element_send_event (pipeline_, gst_event_new_eos ());
    return wait_until ([&] {
      std::lock_guard<std::mutex> guard (lock_);
      return eos_;
    }, timeout_ms);
  }

  std::vector<std::string> errors ()
  {
    std::lock_guard<std::mutex> guard (lock_);
    return errors_;
  }

  std::string describe ()
  {
    std::lock_guard<std::mutex> guard (lock_);
    std::string out;
    for (GstStructure *s : messages_) {
      g_autofree char *text = gst_structure_to_string (s);
      out += std::string ("  ") + text + "\n";
    }
    for (auto & e : errors_)
      out += "  " + e + "\n";
    for (auto & o : outputs_)
      out += "  output " + o.first + ": " + std::to_string (o.second.buffers)
          + " buffers" + (o.second.removed ? " (removed)" : "") + "\n";
    return out;
  }

private:
  void on_message (GstMessage * m)
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS
        && GST_MESSAGE_SRC (m) == GST_OBJECT (pipeline_))
      eos_ = true;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && GST_MESSAGE_SRC (m) == GST_OBJECT (element_)) {
      messages_.push_back (gst_structure_copy (gst_message_get_structure (m)));
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR
        || GST_MESSAGE_TYPE (m) == GST_MESSAGE_WARNING) {
      GError *e = nullptr;
      char *debug = nullptr;
      if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
        gst_message_parse_error (m, &e, &debug);
      else
        gst_message_parse_warning (m, &e, &debug);
      errors_.push_back (std::string (GST_MESSAGE_TYPE_NAME (m)) + " "
          + g_quark_to_string (e->domain) + "/" + std::to_string (e->code)
          + ": " + e->message + " (" + (debug ? debug : "") + ")");
      g_clear_error (&e);
      g_free (debug);
    }
  }

  void on_pad_added (GstPad * pad)
  {
    if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
      return;
    std::string name = GST_PAD_NAME (pad);
    bool video = g_str_has_prefix (name.c_str (), "video");
    bool file = g_str_has_prefix (name.c_str (), "file_");
    std::string desc = file
        ? "queue ! fakesink signal-handoffs=true sync=false async=false"
        : video
        ? "queue ! videoconvert ! video/x-raw,format=I420 ! "
          "fakesink signal-handoffs=true sync=false async=false"
        : "queue ! audioconvert ! audio/x-raw,format=S16LE ! "
          "fakesink signal-handoffs=true sync=false async=false";
    GError *error = nullptr;
    GstElement *branch = gst_parse_bin_from_description (desc.c_str (), TRUE,
        &error);
    fail_unless (branch != nullptr);
    GstElement *sink = nullptr;
    {
      g_autoptr (GstIterator) it = gst_bin_iterate_sinks (GST_BIN (branch));
      GValue v = G_VALUE_INIT;
      if (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
        sink = GST_ELEMENT (g_value_get_object (&v));
        g_value_unset (&v);
      }
    }
    auto *ctx = new std::pair<Member *, std::string> (this, name);
    auto on_handoff = +[] (GstElement *, GstBuffer * buf, GstPad * sinkpad,
        gpointer data) {
      auto *c = static_cast<std::pair<Member *, std::string> *> (data);
      c->first->on_buffer (c->second, buf, sinkpad);
    };
    auto free_ctx = +[] (gpointer d, GClosure *) {
      delete static_cast<std::pair<Member *, std::string> *> (d);
    };
    g_signal_connect_data (sink, "handoff", G_CALLBACK (on_handoff), ctx,
        free_ctx, (GConnectFlags) 0);
    gst_bin_add (GST_BIN (pipeline_), branch);
    gst_element_sync_state_with_parent (branch);
    g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (branch, "sink");
    fail_unless_equals_int (gst_pad_link (pad, sinkpad), GST_PAD_LINK_OK);
    std::lock_guard<std::mutex> guard (lock_);
    Output & o = outputs_[name];
    o = Output ();
    o.pad = name;
    o.added = now_ms ();
    if (file) {
      o.sha.reset (g_checksum_new (G_CHECKSUM_SHA256), g_checksum_free);
      /* At the fakesink, behind the queue: the EOS comes after the last
       * buffer there. */
      g_autoptr (GstPad) end = gst_element_get_static_pad (sink, "sink");
      gst_pad_add_probe (end, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
          [] (GstPad *, GstPadProbeInfo * info, gpointer data) {
            auto *c = static_cast<std::pair<Member *, std::string> *> (data);
            if (GST_EVENT_TYPE (GST_PAD_PROBE_INFO_EVENT (info)) == GST_EVENT_EOS)
              c->first->on_file_eos (c->second);
            return GST_PAD_PROBE_OK;
          }, new std::pair<Member *, std::string> (this, name), [] (gpointer d) {
            delete static_cast<std::pair<Member *, std::string> *> (d);
          });
    }
    branches_[name] = branch;
  }

  void on_file_eos (const std::string & pad)
  {
    std::lock_guard<std::mutex> guard (lock_);
    Output & o = outputs_[pad];
    o.digest = g_checksum_get_string (o.sha.get ());
  }

  void on_pad_removed (GstPad * pad)
  {
    std::string name = GST_PAD_NAME (pad);
    GstElement *branch = nullptr;
    {
      std::lock_guard<std::mutex> guard (lock_);
      outputs_[name].removed = true;
      /* A file pad goes right after its EOS passed it: its branch is left
       * to take that EOS, as a pipeline's would. */
      if (!g_str_has_prefix (name.c_str (), "file_"))
        branch = branches_[name];
      branches_.erase (name);
    }
    if (branch) {
      /* Not from this thread: it may be a streaming thread of ours. */
      gst_object_ref (branch);
      GstElement *pipeline = GST_ELEMENT (gst_object_ref (pipeline_));
      std::thread ([branch, pipeline] {
        gst_element_set_state (branch, GST_STATE_NULL);
        gst_bin_remove (GST_BIN (pipeline), branch);
        gst_object_unref (branch);
        gst_object_unref (pipeline);
      }).detach ();
    }
  }

  void on_buffer (const std::string & pad, GstBuffer * buf, GstPad * sinkpad)
  {
    GstMapInfo map;
    guint sum = 0;
    int peak = 0;
    double yuv[3] = { 0, 0, 0 };
    bool video = g_str_has_prefix (pad.c_str (), "video");
    if (g_str_has_prefix (pad.c_str (), "file_")) {
      std::lock_guard<std::mutex> guard (lock_);
      Output & o = outputs_[pad];
      if (gst_buffer_map (buf, &map, GST_MAP_READ)) {
        g_checksum_update (o.sha.get (), map.data, map.size);
        o.bytes += map.size;
        gst_buffer_unmap (buf, &map);
      }
      o.buffers++;
      return;
    }
    g_autoptr (GstCaps) caps = gst_pad_get_current_caps (sinkpad);
    if (gst_buffer_map (buf, &map, GST_MAP_READ)) {
      if (video) {
        for (gsize i = 0; i < map.size; i += 7)
          sum = sum * 31 + map.data[i];
        mean_yuv (caps, map.data, map.size, yuv);
      } else {
        auto *s = reinterpret_cast<const gint16 *> (map.data);
        for (gsize i = 0; i < map.size / 2; i++)
          peak = std::max (peak, std::abs ((int) s[i]));
      }
      gst_buffer_unmap (buf, &map);
    }
    g_autofree char *caps_text = caps ? gst_caps_to_string (caps) : nullptr;
    std::vector<guint8> picture = video ? picture_of (buf, caps)
        : std::vector<guint8> ();
    std::lock_guard<std::mutex> guard (lock_);
    Output & o = outputs_[pad];
    o.buffers++;
    if (video) {
      if (!picture.empty () && o.pictures.size () < 3000)
        o.pictures.push_back (std::move (picture));
      std::copy (yuv, yuv + 3, o.yuv);
      o.contents.insert (sum);
      o.times.push_back (now_ms ());
      o.pts.push_back (GST_BUFFER_PTS (buf));
    }
    o.peak = std::max (o.peak, peak);
    if (caps_text)
      o.caps = caps_text;
  }

  /* The mean of each plane of an I420 frame (GStreamer's default strides:
   * rows of 4-byte multiples). */
  static void mean_yuv (GstCaps * caps, const guint8 * data, gsize size,
      double yuv[3])
  {
    int w = 0, h = 0;
    const GstStructure *s = caps ? gst_caps_get_structure (caps, 0) : nullptr;
    if (!s || !gst_structure_get_int (s, "width", &w)
        || !gst_structure_get_int (s, "height", &h) || w <= 0 || h <= 0)
      return;
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    gsize ystride = GST_ROUND_UP_4 (w), cstride = GST_ROUND_UP_4 (cw);
    gsize offsets[3] = { 0, ystride * GST_ROUND_UP_2 (h), 0 };
    offsets[2] = offsets[1] + cstride * ch;
    if (size < offsets[2] + cstride * ch)
      return;
    for (int p = 0; p < 3; p++) {
      int pw = p ? cw : w, ph = p ? ch : h;
      gsize stride = p ? cstride : ystride;
      guint64 total = 0;
      for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++)
          total += data[offsets[p] + y * stride + x];
      yuv[p] = (double) total / (pw * ph);
    }
  }

  GstElement *pipeline_ = nullptr;
  GstElement *element_ = nullptr;
  std::mutex lock_;
  bool eos_ = false;
  std::vector<GstStructure *> messages_;
  std::vector<std::string> errors_;
  std::map<std::string, Output> outputs_;
  std::map<std::string, GstElement *> branches_;
};

std::string
props (ServerThread & server, const std::string & thread)
{
  return "server=" + server.ws_url () + " thread=" + thread;
}

std::string
publisher (ServerThread & server, const std::string & thread,
    const std::string & pattern = "ball", bool audio = true,
    const std::string & element = "peerjssink")
{
  std::string d = element + " name=p " + props (server, thread)
      + " videotestsrc is-live=true pattern=" + pattern
      + " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video";
  if (audio)
    d += " audiotestsrc is-live=true wave=sine volume=0.5 ! p.audio";
  return d;
}

std::string
receiver (ServerThread & server, const std::string & thread)
{
  return "peerjssrc name=p stats-interval=500 " + props (server, thread);
}

/* Video frames of the expected size, and content that changes. A member
 * may get a smaller layer for a moment (congestion control on a loaded
 * machine: a CI run of three peerjsbin in one process saw 80x60 two
 * seconds in, and another still at 10 s); the full size must come within
 * 20 s, what docs/elements.md gives as the way back from the bottom layer
 * (6 to 15 s in the lab). */
void
check_video (Member & m, const std::string & pad, int frames)
{
  m.wait_buffers (pad, frames);
  auto full_size = [&m, &pad] {
    Output o = m.output (pad);
    return o.caps.find ("width=(int)320") != std::string::npos
        && o.caps.find ("height=(int)240") != std::string::npos;
  };
  if (!full_size ())
    wait_until (full_size, 20000);
  Output o = m.output (pad);
  fail_unless (full_size (), "pad %s: caps %s, wanted 320x240", pad.c_str (),
      o.caps.c_str ());
  fail_unless (o.contents.size () >= 3,
      "pad %s: %zu different frames in %d, the picture does not move",
      pad.c_str (), o.contents.size (), o.buffers);
}

void
check_audio (Member & m, const std::string & pad, int buffers)
{
  m.wait_buffers (pad, buffers);
  Output o = m.output (pad);
  fail_unless (o.caps.find ("audio/x-raw") != std::string::npos
      && o.caps.find ("rate=(int)48000") != std::string::npos,
      "pad %s: caps %s, wanted 48 kHz audio", pad.c_str (), o.caps.c_str ());
  fail_unless (o.peak > 1000, "pad %s: peak %d, the tone is not there",
      pad.c_str (), o.peak);
}

/* A directory of its own for a case, removed with what is in it. */
class TempDir
{
public:
  TempDir ()
  {
    char *d = g_dir_make_tmp ("peerjs-files-XXXXXX", nullptr);
    fail_unless (d != nullptr);
    path_ = d;
    g_free (d);
  }
  ~TempDir ()
  {
    std::string cmd = "rm -rf '" + path_ + "'";
    if (system (cmd.c_str ()) != 0)
      g_printerr ("could not remove %s\n", path_.c_str ());
  }
  std::string operator/ (const std::string & name) const
  {
    return path_ + "/" + name;
  }
  const std::string & path () const { return path_; }

private:
  std::string path_;
};

std::string
sha256_of_file (const std::string & path)
{
  FILE *f = fopen (path.c_str (), "rb");
  if (!f)
    return {};
  GChecksum *sha = g_checksum_new (G_CHECKSUM_SHA256);
  std::vector<guint8> buf (1 << 20);
  size_t n;
  while ((n = fread (buf.data (), 1, buf.size (), f)) > 0)
    g_checksum_update (sha, buf.data (), n);
  fclose (f);
  std::string out = g_checksum_get_string (sha);
  g_checksum_free (sha);
  return out;
}

/* `size` random bytes at `path`; returns their SHA-256. */
std::string
random_file (const std::string & path, gsize size)
{
  FILE *f = fopen (path.c_str (), "wb");
  fail_unless (f != nullptr);
  std::vector<guint32> buf (1 << 18);
  gsize left = size;
  GRand *r = g_rand_new ();
  while (left > 0) {
    for (auto & w : buf)
      w = g_rand_int (r);
    gsize n = MIN (left, buf.size () * 4);
    fail_unless (fwrite (buf.data (), 1, n, f) == n);
    left -= n;
  }
  g_rand_free (r);
  fclose (f);
  return sha256_of_file (path);
}

/* Files in `dir` whose name ends with `suffix`. */
int
count_files (const std::string & dir, const std::string & suffix)
{
  int n = 0;
  GDir *d = g_dir_open (dir.c_str (), 0, nullptr);
  if (!d)
    return 0;
  while (const char *name = g_dir_read_name (d))
    n += g_str_has_suffix (name, suffix.c_str ());
  g_dir_close (d);
  return n;
}

/* The value of `field` in a structure printed as text. */
std::string
field (const std::string & text, const std::string & name)
{
  g_autoptr (GstStructure) s = gst_structure_from_string (text.c_str (),
      nullptr);
  const char *v = s ? gst_structure_get_string (s, name.c_str ()) : nullptr;
  return v ? v : "";
}

/* A numeric field of a structure printed as text, as a double; -1 when it
 * is not there. */
double
number (const std::string & text, const std::string & name)
{
  g_autoptr (GstStructure) s = gst_structure_from_string (text.c_str (),
      nullptr);
  const GValue *v = s ? gst_structure_get_value (s, name.c_str ()) : nullptr;
  if (!v)
    return -1;
  GValue d = G_VALUE_INIT;
  g_value_init (&d, G_TYPE_DOUBLE);
  double out = g_value_transform (v, &d) ? g_value_get_double (&d) : -1;
  g_value_unset (&d);
  return out;
}

/* The largest `name` in any of `texts`; -1 when none has it. */
double
largest (const std::vector<std::string> & texts, const std::string & name)
{
  double out = -1;
  for (auto & t : texts)
    out = std::max (out, number (t, name));
  return out;
}

/* A loopback-only network namespace for this case alone, when it runs in
 * a process of its own (as it does unless CK_FORK=no): what the case sets
 * up in it, such as a loss rule, goes with the process however the case
 * ends. First thing in the case: a namespace is a thread's, and the
 * threads made later inherit it. */
void
own_loopback_namespace ()
{
  const char *fork = g_getenv ("CK_FORK");
  if (fork && g_str_equal (fork, "no"))
    return;
  fail_unless (unshare (CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s",
      g_strerror (errno));
  fail_unless (system ("ip link set lo up") == 0, "ip link set lo up failed");
}

/* `percent` % of UDP packets (media, RTCP, ICE; not the signalling's TCP)
 * dropped on their way out, which on loopback is every packet once, for
 * the life of the object. */
class UdpLoss
{
public:
  explicit UdpLoss (int percent)
  {
    remove ();
    std::string add = "nft add table inet peerjs_loss"
        " && nft add chain inet peerjs_loss out"
        " '{ type filter hook output priority 0 ; }'"
        " && nft add rule inet peerjs_loss out meta l4proto udp"
        " numgen random mod 100 '<' " + std::to_string (percent) + " drop";
    fail_unless (system (add.c_str ()) == 0, "could not add the loss rule "
        "with nftables (tools/setup installs nft): %s", add.c_str ());
  }
  ~UdpLoss () { remove (); }

private:
  static void remove ()
  {
    if (system ("nft list table inet peerjs_loss >/dev/null 2>&1") == 0
        && system ("nft delete table inet peerjs_loss") != 0)
      g_printerr ("could not remove the nftables table peerjs_loss\n");
  }
};

/* The longest time between two frames in `times` within [from, to], and
 * from `from` to the first and from the last to `to`, in ms. */
gint64
longest_gap (const std::vector<gint64> & times, gint64 from, gint64 to)
{
  gint64 last = from, gap = 0;
  for (gint64 t : times) {
    if (t < from || t > to)
      continue;
    gap = std::max (gap, t - last);
    last = t;
  }
  return std::max (gap, to - last);
}

/* A bare client (a page without its browser) in `thread`, once `m` has
 * seen it join. */
void
join_page (Client & page, ServerThread & server, Member & m,
    const std::string & thread)
{
  fail_unless (page.connect (server.ws_url ()));
  page.send ("{\"type\":\"thread:connect\",\"thread\":\"" + thread
      + "\",\"constraints\":{}}");
  m.wait_message ("peerjs-thread-connect", {{"member", page.id},
          {"thread", thread}});
}

}  // namespace

/* ------------------------------------------------------------------ */

GST_START_TEST (test_sink_to_src)
{
  ServerThread server;
  Member sink (publisher (server, "room"));
  Member src (receiver (server, "room"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();

  src.wait_message ("peerjs-media-connect", {{"member", id}, {"kind", "video"},
          {"pad", "video_" + id}});
  src.wait_message ("peerjs-media-connect", {{"member", id}, {"kind", "audio"},
          {"pad", "audio_" + id}});
  check_video (src, "video_" + id, 30);
  check_audio (src, "audio_" + id, 30);
  sink.wait_message ("peerjs-thread-connect", {{"thread", "room"},
          {"member", src.id ()}});
  fail_unless (src.errors ().empty (), "%s", src.describe ().c_str ());

  /* stats-interval: per-member statistics, with media coming in. */
  fail_unless (wait_until ([&] {
            std::string s = src.find ("peerjs-stats", {{"member", id}});
            return !s.empty () && s.find ("bitrate-in=(guint64)0,") == std::string::npos
                && s.find ("bytes-received=(guint64)0,") == std::string::npos;
          }), "no peerjs-stats with media for %s: %s", id.c_str (),
      src.describe ().c_str ());
  /* On one machine, from host to host: the member's candidate may be
   * learnt from its checks (prflx) before its own arrives. */
  std::string s = src.find ("peerjs-stats", {{"member", id}});
  fail_unless (s.find ("local-candidate-type=(string)host,")
      != std::string::npos && (s.find ("remote-candidate-type=(string)host")
          != std::string::npos || s.find ("remote-candidate-type=(string)prflx")
          != std::string::npos), "the selected pair in %s", s.c_str ());
}
END_TEST;

/* The SDP webrtcbin holds for `member` in `m` (its local description when
 * `local`), as text; "" before there is one. */
std::string
description (Member & m, const std::string & member, bool local)
{
  g_autoptr (GstElement) webrtc = gst_bin_get_by_name (GST_BIN (m.element ()),
      ("webrtc-" + member).c_str ());
  if (!webrtc)
    return {};
  GstWebRTCSessionDescription *desc = nullptr;
  g_object_get (webrtc, local ? "local-description" : "remote-description",
      &desc, NULL);
  if (!desc)
    return {};
  g_autofree char *text = gst_sdp_message_as_text (desc->sdp);
  gst_webrtc_session_description_free (desc);
  return text;
}

/* Whether `sdp` has an RTX payload type for payload type `apt`. */
bool
has_rtx_for (const std::string & sdp, int apt)
{
  return sdp.find (" rtx/90000") != std::string::npos
      && sdp.find (" apt=" + std::to_string (apt)) != std::string::npos;
}

/* Frames that came within [from, to], and the longest time without one. */
struct Flow
{
  int frames;
  gint64 gap;
};

Flow
flow (const Output & o, gint64 from, gint64 to)
{
  int frames = std::count_if (o.times.begin (), o.times.end (),
      [&] (gint64 t) { return t >= from && t <= to; });
  return { frames, longest_gap (o.times, from, to) };
}

/* With 10 % of UDP lost both ways, a pipeline's video to a pipeline keeps
 * coming: the receiver asks for lost packets again (NACK) and the
 * publisher sends them again from an RTX stream; what does not come back
 * in time is dropped with the frames after it, and a key frame asked for.
 * The publisher's peerjs-stats show what the receiver reports: its loss,
 * its NACKs, the packets sent again; the receiver's, what it asked for.
 * A moving zone plate: every frame is several packets, as a camera's at
 * hundreds of kbit/s are (a ball on black is one packet a frame), and it
 * compresses to what the encoder is told, as a camera's picture does
 * (snow, which cannot go below 1 Mbit/s at this size, made the encoder
 * drop frames once the estimate went under that under loss). */
GST_START_TEST (test_loss_retransmitted)
{
  own_loopback_namespace ();
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 "
      + props (server, "lossy") + " videotestsrc is-live=true "
      "pattern=zone-plate kx2=30 ky2=30 kt=3"
      " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (server, "lossy"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  std::string pad = "video_" + ids;
  check_video (src, pad, 15);
  /* RTX for VP8 (our payload type 96) on both sides. */
  for (bool local : { true, false }) {
    std::string sdp = description (sink, idr, local);
    fail_unless (has_rtx_for (sdp, 96), "no RTX for VP8 in the %s SDP:\n%s",
        local ? "publisher's" : "receiver's", sdp.c_str ());
  }

  constexpr gint64 LOSSY_MS = 6000;
  gint64 t0 = now_ms (), t1;
  size_t before = sink.all ("peerjs-stats", {{"member", idr}}).size ();
  {
    UdpLoss loss (10);
    g_usleep (LOSSY_MS * 1000);
    t1 = now_ms ();
  }
  /* 90 frames were sent: 67-79 came here (less under the load of other
   * suites); with snow and without retransmission 13-24, frozen for up to
   * a second at a time, since key frames are hit too. */
  Flow f = flow (src.output (pad), t0, t1);
  fail_unless (f.frames >= 35 && f.gap < 1500, "under 10 %% loss: %d frames "
      "in %" G_GINT64_FORMAT " ms, none for %" G_GINT64_FORMAT " ms",
      f.frames, t1 - t0, f.gap);

  auto lossy = sink.all ("peerjs-stats", {{"member", idr}});
  lossy.erase (lossy.begin (), lossy.begin () + before);
  fail_unless (largest (lossy, "remote-fraction-lost") > 0,
      "the receiver reported no loss during the loss:\n%s",
      sink.describe ().c_str ());
  std::string pub = sink.find ("peerjs-stats", {{"member", idr}});
  std::string sub = src.find ("peerjs-stats", {{"member", ids}});
  for (const char *name : { "nacks-received", "rtx-packets-sent",
          "remote-packets-lost" })
    fail_unless (number (pub, name) > 0, "publisher: %s not > 0: %s", name,
        pub.c_str ());
  for (const char *name : { "nacks-sent", "rtx-packets-received" })
    fail_unless (number (sub, name) > 0, "receiver: %s not > 0: %s", name,
        sub.c_str ());
  /* A receiving element waits for retransmissions on its own: its SDP
   * (offer or answer) leaves out the playout-delay extension, and it is
   * asked for no delay. */
  fail_unless (description (src, ids, true).find ("/playout-delay")
      == std::string::npos && largest (lossy, "playout-delay") == 0,
      "playout delay asked of a receiving element: %s\n%s", pub.c_str (),
      description (src, ids, true).c_str ());
  /* Frames given out are counted; each freeze lasted more than 200 ms. */
  double frames = number (sub, "frames-received");
  int given = src.output (pad).buffers;
  fail_unless (frames > 0 && frames <= given + 3, "receiver: "
      "frames-received %.0f, the pad gave out %d: %s", frames, given,
      sub.c_str ());
  fail_unless (number (sub, "frozen-ms") >= 200 * number (sub, "freezes")
      && number (sub, "freezes") >= 0, "receiver: freezes: %s", sub.c_str ());
  g_printerr ("loss, retransmission: %d frames in %" G_GINT64_FORMAT " ms, "
      "longest gap %" G_GINT64_FORMAT " ms\n  publisher: %s\n  receiver: "
      "%s\n", f.frames, t1 - t0, f.gap, pub.c_str (), sub.c_str ());
}
END_TEST;

/* The pictures videotestsrc gives for `pattern` (more of its properties
 * may follow the name), frames 0 to n - 1 at 320x240@15, sampled: what a
 * live videotestsrc with the same settings sends, frame by frame. */
static std::vector<std::vector<guint8>>
sent_pictures (const std::string & pattern, int n)
{
  std::string desc = "videotestsrc pattern=" + pattern + " num-buffers="
      + std::to_string (n) + " ! video/x-raw,format=I420,width=320,"
      "height=240,framerate=15/1 ! fakesink name=out signal-handoffs=true "
      "sync=false";
  g_autoptr (GError) error = nullptr;
  g_autoptr (GstElement) pipeline = gst_parse_launch (desc.c_str (), &error);
  fail_unless (pipeline != nullptr, "%s", error ? error->message : "");
  std::vector<std::vector<guint8>> out;
  g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (pipeline),
      "out");
  g_signal_connect (sink, "handoff", G_CALLBACK (+[] (GstElement *,
              GstBuffer * buf, GstPad * pad, gpointer data) {
            g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
            static_cast<std::vector<std::vector<guint8>> *> (data)->push_back (
                picture_of (buf, caps));
          }), &out);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
  g_autoptr (GstMessage) msg = gst_bus_timed_pop_filtered (bus,
      30 * GST_SECOND, (GstMessageType) (GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  gst_element_set_state (pipeline, GST_STATE_NULL);
  fail_unless (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS
      && (int) out.size () == n, "%d of %d reference pictures", (int)
      out.size (), n);
  return out;
}

/* How far picture `a` is from `b`: the largest mean absolute luma
 * difference of any 16x16 block (4x4 samples). */
static double
block_error (const std::vector<guint8> & a, const std::vector<guint8> & b)
{
  constexpr int B = 16 / PICTURE_STEP;
  double worst = 0;
  for (int by = 0; by < PICTURE_H; by += B)
    for (int bx = 0; bx < PICTURE_W; bx += B) {
      int sum = 0;
      for (int y = by; y < by + B; y++)
        for (int x = bx; x < bx + B; x++)
          sum += std::abs ((int) a[y * PICTURE_W + x]
              - (int) b[y * PICTURE_W + x]);
      worst = std::max (worst, sum / double (B * B));
    }
  return worst;
}

/* The first element in `bin`, at any depth, made by `factory`, or null;
 * a new reference. */
GstElement *
made_by (GstBin * bin, const char *factory)
{
  GstElement *found = nullptr;
  g_autoptr (GstIterator) it = gst_bin_iterate_recurse (bin);
  GValue v = G_VALUE_INIT;
  while (!found && gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    auto *e = GST_ELEMENT (g_value_get_object (&v));
    GstElementFactory *f = gst_element_get_factory (e);
    if (f && g_str_equal (GST_OBJECT_NAME (f), factory))
      found = GST_ELEMENT (gst_object_ref (e));
    g_value_reset (&v);
  }
  g_value_unset (&v);
  return found;
}

/* The block error (block_error ()) of `picture` from the closest of
 * `among`; *which: that one's index. */
static double
closest (const std::vector<guint8> & picture,
    const std::vector<std::vector<guint8>> & among, std::size_t * which)
{
  double best = 1e9;
  for (std::size_t k = 0; k < among.size (); k++) {
    double e = block_error (picture, among[k]);
    if (e < best) {
      best = e;
      *which = k;
    }
  }
  return best;
}

/* The VP8 frames the encoders inside a bin give out, in order (a probe
 * on each one's source pad, from the moment the bin makes it), decoded
 * again here by vp8dec: the pictures a receiver that lost nothing
 * decodes, bit for bit. */
class EncodedFrames
{
public:
  explicit EncodedFrames (GstElement * bin)
  {
    g_signal_connect (bin, "deep-element-added", G_CALLBACK (+[] (GstBin *,
                GstBin *, GstElement * e, gpointer self) {
              static_cast<EncodedFrames *> (self)->on_element (e);
            }), this);
  }

  ~EncodedFrames ()
  {
    for (GstBuffer *b : frames_)
      gst_buffer_unref (b);
    if (caps_)
      gst_caps_unref (caps_);
  }

  int encoders () const { return encoders_; }

  std::size_t size ()
  {
    std::lock_guard<std::mutex> guard (lock_);
    return frames_.size ();
  }

  /* Every frame kept, decoded: 320x240 pictures, sampled (picture_of). */
  std::vector<std::vector<guint8>> decode ()
  {
    std::lock_guard<std::mutex> guard (lock_);
    std::vector<std::vector<guint8>> out;
    if (!caps_ || frames_.empty ())
      return out;
    g_autoptr (GError) error = nullptr;
    g_autoptr (GstElement) pipeline = gst_parse_launch ("appsrc name=in "
        "format=time ! vp8dec ! video/x-raw,format=I420 ! fakesink name=out "
        "signal-handoffs=true sync=false", &error);
    fail_unless (pipeline != nullptr, "%s", error ? error->message : "");
    g_autoptr (GstElement) in = gst_bin_get_by_name (GST_BIN (pipeline), "in");
    g_autoptr (GstElement) sink = gst_bin_get_by_name (GST_BIN (pipeline),
        "out");
    g_object_set (in, "caps", caps_, NULL);
    g_signal_connect (sink, "handoff", G_CALLBACK (+[] (GstElement *,
                GstBuffer * buf, GstPad * pad, gpointer data) {
              g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
              static_cast<std::vector<std::vector<guint8>> *> (data)->
                  push_back (picture_of (buf, caps));
            }), &out);
    gst_element_set_state (pipeline, GST_STATE_PLAYING);
    GstClockTime pts = 0;
    for (GstBuffer *b : frames_) {
      GstBuffer *copy = gst_buffer_copy (b);
      GST_BUFFER_PTS (copy) = GST_BUFFER_DTS (copy) = pts;
      pts += GST_SECOND / 15;
      GstFlowReturn ret;
      g_signal_emit_by_name (in, "push-buffer", copy, &ret);
      gst_buffer_unref (copy);
    }
    GstFlowReturn ret;
    g_signal_emit_by_name (in, "end-of-stream", &ret);
    g_autoptr (GstBus) bus = gst_element_get_bus (pipeline);
    g_autoptr (GstMessage) msg = gst_bus_timed_pop_filtered (bus,
        30 * GST_SECOND, (GstMessageType) (GST_MESSAGE_EOS
            | GST_MESSAGE_ERROR));
    gst_element_set_state (pipeline, GST_STATE_NULL);
    fail_unless (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS,
        "the encoded frames did not decode again");
    return out;
  }

private:
  void on_element (GstElement * e)
  {
    GstElementFactory *f = gst_element_get_factory (e);
    if (!f || !g_str_equal (GST_OBJECT_NAME (f), "vp8enc"))
      return;
    encoders_++;
    g_autoptr (GstPad) src = gst_element_get_static_pad (e, "src");
    gst_pad_add_probe (src, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
        [] (GstPad *, GstPadProbeInfo * info, gpointer self) {
          auto *me = static_cast<EncodedFrames *> (self);
          std::lock_guard<std::mutex> guard (me->lock_);
          if (GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER (info)) {
            if (GST_IS_BUFFER (b))
              me->frames_.push_back (gst_buffer_ref (b));
          }
          GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);
          if (ev && GST_IS_EVENT (ev) && GST_EVENT_TYPE (ev) == GST_EVENT_CAPS
              && !me->caps_) {
            GstCaps *caps;
            gst_event_parse_caps (ev, &caps);
            me->caps_ = gst_caps_ref (caps);
          }
          return GST_PAD_PROBE_OK;
        }, this, nullptr);
  }

  std::mutex lock_;
  std::vector<GstBuffer *> frames_;
  GstCaps *caps_ = nullptr;
  int encoders_ = 0;
};

/* Frames a receiving pipeline gives out are whole: under 10 % loss both
 * ways, every picture decoded is one of those sent, bit for bit. A frame
 * that lost a packet for good is dropped with those after it until a key
 * frame, never decoded against references the decoder does not have.
 * What was sent is taken where it leaves the publisher's encoder
 * (EncodedFrames) and decoded again: each received picture must equal one
 * of those exactly, so that coding (coarser under the load of other
 * suites: a CI run saw one picture 7.5 off the pattern where quiet runs
 * see 1.4) is told from damage, which begins as a slight difference (a
 * picture decoded against a reference it did not have was 2 to 3 off the
 * pattern, and grew to 10 and more over the next ones). The picture is a
 * moving zone plate (every frame differs, several packets each), compared
 * also with what a videotestsrc of the same settings makes: the right
 * picture, not only a whole one. One layer, so that every picture is
 * 320x240, from one encoder; starting at 1 Mbit/s and never below
 * 600 kbit/s, so that the zone plate is coded finely enough to be told
 * from the pictures next to it. */
GST_START_TEST (test_frames_whole_under_loss)
{
  own_loopback_namespace ();
  ServerThread server;
  const std::string pattern = "zone-plate kx2=20 ky2=20 kt=1";
  Member sink ("peerjssink name=p video-layers=1 do-fec=false "
      "start-bitrate=1000000 min-bitrate=600000 "
      + props (server, "whole") + " videotestsrc is-live=true pattern="
      + pattern + " ! video/x-raw,format=I420,width=320,height=240,"
      "framerate=15/1 ! p.video");
  EncodedFrames encoded (sink.element ());
  Member src (receiver (server, "whole"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string pad = "video_" + sink.id ();
  check_video (src, pad, 15);
  {
    UdpLoss loss (10);
    g_usleep (8 * G_USEC_PER_SEC);
  }
  g_usleep (G_USEC_PER_SEC);
  sink.stop ();
  Output out = src.output (pad);
  fail_unless_equals_int (encoded.encoders (), 1);
  auto sent = encoded.decode ();
  fail_unless (sent.size () >= out.pictures.size (), "%zu pictures "
      "encoded, %zu decoded by the receiver", sent.size (),
      out.pictures.size ());
  auto pattern_pictures = sent_pictures (pattern, 15 * 40);
  /* A picture decoded whole equals one sent: no block differs at all. */
  constexpr double WRONG = 0.5;
  int wrong = 0;
  double worst = 0, off_pattern = 0;
  std::vector<double> from_pattern;
  /* The wrong ones, for the failure message: which picture (in the order
   * they came), when (ms after the first), its timestamp, how far off,
   * and the sent picture closest to it. */
  std::string listed;
  for (std::size_t i = 0; i < out.pictures.size (); i++) {
    std::size_t k = 0, p = 0;
    double best = closest (out.pictures[i], sent, &k);
    from_pattern.push_back (closest (out.pictures[i], pattern_pictures, &p));
    worst = std::max (worst, best);
    if (best > WRONG && ++wrong <= 12) {
      gint64 at = i < out.times.size () && !out.times.empty ()
          ? out.times[i] - out.times[0] : -1;
      GstClockTime pts = i < out.pts.size () ? out.pts[i]
          : GST_CLOCK_TIME_NONE;
      listed += "\n  picture " + std::to_string (i) + " at "
          + std::to_string (at) + " ms, pts " + std::to_string (
              GST_CLOCK_TIME_IS_VALID (pts) ? (gint64) (pts / GST_MSECOND)
              : -1) + " ms: block error " + std::to_string (best)
          + ", closest to encoded frame " + std::to_string (k)
          + " (pattern frame " + std::to_string (p) + ")";
    }
  }
  std::sort (from_pattern.begin (), from_pattern.end ());
  if (!from_pattern.empty ())
    off_pattern = from_pattern[from_pattern.size () / 2];
  g_printerr ("whole frames under loss: %zu pictures of %zu encoded, %d not "
      "one of them (block error up to %.1f); from the pattern: median %.1f\n",
      out.pictures.size (), sent.size (), wrong, worst, off_pattern);
  fail_unless (out.pictures.size () >= 30, "only %zu pictures decoded",
      out.pictures.size ());
  fail_unless (wrong == 0, "%d of %zu pictures decoded are none of those "
      "sent (block error up to %.1f):%s", wrong, out.pictures.size (), worst,
      listed.c_str ());
  /* The zone plate, coded: 1.4 typically, 2.1 under load. */
  fail_unless (off_pattern < 4, "the pictures are not the pattern sent: "
      "median block error %.1f", off_pattern);
}
END_TEST;

/* A member's queue that drops encoded video (its connection or the
 * machine fell more than 500 ms behind) drops the frames after it too, up
 * to a key frame: the member decodes no picture against one it never had,
 * though the packets that follow are numbered on without a gap. The
 * member's queue is held for 1.5 s (a blocking probe on its source pad),
 * so that it overruns; every picture the receiver gives out, before and
 * after, must be one the publisher's encoder gave out, bit for bit, and
 * pictures must come again after it. */
GST_START_TEST (test_frames_whole_after_overrun)
{
  ServerThread server;
  const std::string pattern = "zone-plate kx2=20 ky2=20 kt=1";
  Member sink ("peerjssink name=p video-layers=1 "
      + props (server, "overrun") + " videotestsrc is-live=true pattern="
      + pattern + " ! video/x-raw,format=I420,width=320,height=240,"
      "framerate=15/1 ! p.video");
  EncodedFrames encoded (sink.element ());
  Member src (receiver (server, "overrun"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string pad = "video_" + sink.id ();
  check_video (src, pad, 15);

  std::string name = "pay-video-" + src.id ();
  g_autoptr (GstElement) pay = gst_bin_get_by_name (GST_BIN (sink.element ()),
      name.c_str ());
  fail_unless (pay != nullptr, "no %s in the publisher", name.c_str ());
  g_autoptr (GstElement) queue = made_by (GST_BIN (pay), "queue");
  fail_unless (queue != nullptr, "no queue in %s", name.c_str ());
  g_autoptr (GstPad) held = gst_element_get_static_pad (queue, "src");
  int before = src.output (pad).buffers;
  gulong block = gst_pad_add_probe (held, GST_PAD_PROBE_TYPE_BLOCK_DOWNSTREAM,
      [] (GstPad *, GstPadProbeInfo *, gpointer) {
        return GST_PAD_PROBE_OK;
      }, nullptr, nullptr);
  g_usleep (1500 * 1000);
  gst_pad_remove_probe (held, block);
  int during = src.output (pad).buffers;
  src.wait_buffers (pad, 15, during);
  g_usleep (G_USEC_PER_SEC);
  sink.stop ();
  Output out = src.output (pad);
  auto sent = encoded.decode ();
  int wrong = 0;
  double worst = 0;
  for (auto & picture : out.pictures) {
    std::size_t k = 0;
    double best = closest (picture, sent, &k);
    worst = std::max (worst, best);
    wrong += best > 0.5;
  }
  g_printerr ("overrun: %zu pictures (%d before the hold, %d after it), %d "
      "not one the encoder gave out (block error up to %.1f)\n",
      out.pictures.size (), before, out.buffers - during, wrong, worst);
  fail_unless (wrong == 0, "%d of %zu pictures decoded after the member's "
      "queue overran are none of those sent (block error up to %.1f)", wrong,
      out.pictures.size (), worst);
}
END_TEST;

/* do-retransmission=false: no RTX in the SDP and no NACK; a frame that a
 * lost packet broke is dropped with the frames after it, and a key frame
 * is asked for with PLI (not FIR): the pictures come again. */
GST_START_TEST (test_loss_key_frames)
{
  own_loopback_namespace ();
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 do-retransmission=false "
      + props (server, "lossy") + " videotestsrc is-live=true pattern=ball"
      " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (server, "lossy") + " do-retransmission=false");
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  std::string pad = "video_" + ids;
  check_video (src, pad, 15);
  std::string sdp = description (sink, idr, true);
  fail_unless (!sdp.empty () && sdp.find (" rtx/") == std::string::npos
      && sdp.find (" nack\r\n") == std::string::npos
      && sdp.find (" nack pli\r\n") != std::string::npos,
      "RTX or NACK (or no PLI) in the SDP with do-retransmission=false:\n%s",
      sdp.c_str ());

  gint64 t0 = now_ms (), t1;
  {
    UdpLoss loss (10);
    /* Until the receiver has asked for a key frame and the publisher
     * heard it, and no longer than 6 s. */
    wait_until ([&] {
          return number (sink.find ("peerjs-stats", {{"member", idr}}),
              "plis-received") > 0 && now_ms () - t0 >= 3000;
        }, 6000);
    t1 = now_ms ();
  }
  std::string pub = sink.find ("peerjs-stats", {{"member", idr}});
  std::string sub = src.find ("peerjs-stats", {{"member", ids}});
  fail_unless (number (sub, "plis-sent") > 0 && number (pub,
          "plis-received") > 0, "no key-frame request under loss:\n  "
      "publisher: %s\n  receiver: %s", pub.c_str (), sub.c_str ());
  fail_unless (number (sub, "firs-sent") == 0 && number (sub, "nacks-sent")
      == 0 && number (pub, "rtx-packets-sent") == 0, "FIR, NACK or RTX "
      "without retransmission:\n  publisher: %s\n  receiver: %s",
      pub.c_str (), sub.c_str ());
  /* After the loss, the picture comes back at full rate. */
  int n = src.output (pad).buffers;
  src.wait_buffers (pad, 15, n, 3000);
  Flow f = flow (src.output (pad), t0, t1);
  g_printerr ("loss, key frames only: %d frames in %" G_GINT64_FORMAT
      " ms, longest gap %" G_GINT64_FORMAT " ms\n  publisher: %s\n  "
      "receiver: %s\n", f.frames, t1 - t0, f.gap, pub.c_str (), sub.c_str ());
}
END_TEST;

/* The video m-line of `sdp` maps the transport-wide congestion control
 * extension to an id and asks for transport-cc feedback. */
bool
has_twcc (const std::string & sdp)
{
  std::size_t video = sdp.find ("m=video");
  if (video == std::string::npos)
    return false;
  std::size_t end = sdp.find ("m=", video + 1);
  std::string m = sdp.substr (video, end == std::string::npos ? end
      : end - video);
  return m.find (" http://www.ietf.org/id/"
      "draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n")
      != std::string::npos && m.find ("a=extmap:") != std::string::npos
      && m.find (" transport-cc\r\n") != std::string::npos;
}

/* Transport-wide congestion control, negotiated both ways: offer and
 * answer carry the extension, the publisher's payloader writes it, the
 * receiver's rtpsession answers with feedback, and the publisher's
 * estimate for the receiver is made of it (peerjs-stats). With do-fec on,
 * as here, the video goes in RED, whose packets must keep the extension
 * (rtpredenc 1.22.0 gives it the wrong id). */
GST_START_TEST (test_transport_cc)
{
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 "
      + props (server, "cc")
      + " videotestsrc is-live=true pattern=snow"
      " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (server, "cc"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  check_video (src, "video_" + ids, 15);
  for (bool local : { true, false }) {
    std::string sdp = description (sink, idr, local);
    fail_unless (has_twcc (sdp), "no transport-wide congestion control in "
        "the %s SDP:\n%s", local ? "publisher's" : "receiver's", sdp.c_str ());
  }
  std::string stats;
  fail_unless (wait_until ([&] {
            stats = sink.find ("peerjs-stats", {{"member", idr}});
            return number (stats, "transport-cc-reports") >= 20;
          }), "no transport-wide feedback from the receiver: %s",
      stats.c_str ());
  /* The estimate is known, and the encoder within its bounds (at most
   * the video-bitrate; a loaded machine may delay packets enough to be
   * taken for a queue now and then). */
  fail_unless (number (stats, "estimated-bitrate") > 0
      && number (stats, "target-bitrate") >= 100000
      && number (stats, "target-bitrate") <= 1000000, "%s", stats.c_str ());
  fail_unless (stats.find ("bitrate-adapts=(boolean)true") != std::string::npos,
      "%s", stats.c_str ());
  g_printerr ("transport-cc: %s\n", stats.c_str ());
}
END_TEST;

/* The encoder follows the estimate: 30 % of UDP lost for 8 s brings the
 * publisher's estimate for the receiver, and the encoder's target with it,
 * well below video-bitrate, never below min-bitrate, and the member to a
 * smaller layer; with congestion-control=off the encoder stays at
 * video-bitrate, and there are no layers. */
static void
check_encoder_follows (bool on)
{
  own_loopback_namespace ();
  ServerThread server;
  Member sink (std::string ("peerjssink name=p stats-interval=500 ")
      + "congestion-control=" + (on ? "gcc" : "off")
      + " min-bitrate=150000 " + props (server, "cc")
      + " videotestsrc is-live=true pattern=snow"
      " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (server, "cc"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  check_video (src, "video_" + ids, 15);
  std::string stats;
  {
    UdpLoss loss (30);
    g_usleep (8 * G_USEC_PER_SEC);
    stats = sink.find ("peerjs-stats", {{"member", idr}});
  }
  auto all = sink.all ("peerjs-stats", {{"member", idr}});
  double lowest = 1e12;
  for (auto & t : all)
    if (number (t, "target-bitrate") > 0)
      lowest = std::min (lowest, number (t, "target-bitrate"));
  g_printerr ("congestion-control=%s, 30 %% loss: lowest target %.0f, last "
      "%s\n", on ? "gcc" : "off", lowest, stats.c_str ());
  if (on) {
    /* Each cut takes half the loss off, and waits a second for packets
     * sent after it: 8 s of 30 % bring the target to 350-600 kbit/s. */
    fail_unless (number (stats, "estimated-bitrate") < 900000
        && lowest < 800000 && lowest >= 150000, "lowest target %.0f: %s",
        lowest, stats.c_str ());
    /* 320x240 has three layers; the estimate fell below the top layer's
     * floor (600 kbit/s with 85 %), so the member was moved down, to a
     * smaller picture. */
    double width = 1e9;
    for (auto & t : all)
      if (number (t, "layer") >= 1)
        width = std::min (width, number (t, "layer-width"));
    fail_unless (number (stats, "layers") == 3 && width <= 160
        && largest (all, "layer-changes") >= 1, "no layer below the top "
        "sent, or not 3 layers: %s", stats.c_str ());
  } else {
    fail_unless (lowest == 1000000 && stats.find ("bitrate-adapts=(boolean)"
            "false") != std::string::npos, "lowest target %.0f: %s", lowest,
        stats.c_str ());
    /* No layers without congestion control. */
    fail_unless (number (stats, "layers") == 1 && largest (all, "layer") == 0,
        "%s", stats.c_str ());
  }
}

GST_START_TEST (test_encoder_follows)
{
  check_encoder_follows (true);
}
END_TEST;

GST_START_TEST (test_encoder_fixed)
{
  check_encoder_follows (false);
}
END_TEST;

/* A receiver's peerjs-stats count the frames its decoder gave out for a
 * member, as many as the member's pad gave out (the message is up to
 * stats-interval older than the pad's count), and its freezes are the
 * gaps of over 200 ms between the timestamps of those frames. */
GST_START_TEST (test_receiver_frames)
{
  ServerThread server;
  Member sink (publisher (server, "room", "ball", false));
  Member src (receiver (server, "room"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id ();
  std::string pad = "video_" + ids;
  check_video (src, pad, 15);
  fail_unless (wait_until ([&] {
            return number (src.find ("peerjs-stats", {{"member", ids}}),
                "frames-received") >= 60;
          }), "frames-received not 60 in time: %s", src.describe ().c_str ());
  std::string stats = src.find ("peerjs-stats", {{"member", ids}});
  int given = src.output (pad).buffers;
  double frames = number (stats, "frames-received");
  /* 15 frames a second: the message is at most 500 ms and a few frames in
   * flight behind the pad. */
  fail_unless (frames <= given + 3 && frames >= given - 15,
      "frames-received %.0f, the pad gave out %d: %s", frames, given,
      stats.c_str ());
  /* Freezes are gaps of more than 200 ms between frame timestamps: the
   * pad's frames show the same gaps (loopback under load may delay a
   * packet past the jitterbuffer's latency, and the picture then waits
   * for a key frame; a clean run usually has none). The message is up to
   * 500 ms old: the pad may show one gap more. */
  Output out = src.output (pad);
  guint64 gaps = 0, gap_ms = 0;
  for (std::size_t i = 1; i < out.pts.size (); i++) {
    if (!GST_CLOCK_TIME_IS_VALID (out.pts[i])
        || !GST_CLOCK_TIME_IS_VALID (out.pts[i - 1]))
      continue;
    GstClockTime d = out.pts[i] - out.pts[i - 1];
    if (out.pts[i] > out.pts[i - 1] && d > 200 * GST_MSECOND) {
      gaps++;
      gap_ms += d / GST_MSECOND;
    }
  }
  double freezes = number (stats, "freezes");
  fail_unless (freezes <= gaps && gaps <= freezes + 1,
      "freezes %.0f, the pad's frames show %" G_GUINT64_FORMAT " gaps of over "
      "200 ms (%" G_GUINT64_FORMAT " ms): %s", freezes, gaps, gap_ms,
      stats.c_str ());
  if (gaps == freezes)
    fail_unless (std::abs (number (stats, "frozen-ms") - double (gap_ms))
        <= 2 * gaps, "frozen-ms %.0f, the pad's gaps %" G_GUINT64_FORMAT
        " ms: %s", number (stats, "frozen-ms"), gap_ms, stats.c_str ());
  g_printerr ("receiver frames: pad %d, stats %s\n", given, stats.c_str ());
}
END_TEST;

/* The first element in `m`'s bin (webrtcbins within included) made by
 * `factory`, or null; a new reference. */
GstElement *
made_by (Member & m, const char *factory)
{
  return made_by (GST_BIN (m.element ()), factory);
}

/* The FEC sizing alone (gst/peerjs/fec.h): the loss of an interval from
 * cumulative report counts, whatever reports were lost on the way; FEC on
 * at the first loss, sized for it and capped, held through clean reports
 * for FEC_HOLD, and off at once beyond the loss it cannot repair. */
GST_START_TEST (test_fec_sizing)
{
  using peerjs::FecLevel;
  using peerjs::LossMeter;
  LossMeter m;
  fail_unless (m.take () == -1, "a loss with no report");
  /* The first report: its own fraction (26/256). */
  m.report (26, 5, 1000);
  fail_unless (std::abs (m.take () - 26 / 256.0) < 1e-9);
  fail_unless (m.take () == -1, "the same report taken twice");
  /* Two reports in an interval, one lost on the way between: cumulative
   * counts, 10 more lost of 100 more expected. */
  m.report (0, 10, 1050);
  m.report (0, 15, 1100);
  fail_unless (std::abs (m.take () - 0.1) < 1e-9);
  /* An older report that overtook the newest one changes nothing. */
  m.report (0, 12, 1080);
  fail_unless (m.take () == -1);
  m.report (0, 15, 1200);
  fail_unless (m.take () == 0, "a clean interval");

  const GstClockTime s = GST_SECOND;
  FecLevel video (peerjs::VIDEO_FEC_PER_LOSS, peerjs::MAX_VIDEO_FEC_PERCENT,
      peerjs::MAX_VIDEO_FEC_LOSS);
  fail_unless (video.update (-1, 1 * s) == 0, "FEC without loss");
  fail_unless (video.update (0.1, 2 * s) == 20, "10 %% loss: %d %%",
      video.percent ());
  fail_unless (video.update (0.001, 3 * s) == 1, "the least loss: %d %%",
      video.percent ());
  fail_unless (video.update (0.28, 4 * s) == 50, "over the cap: %d %%",
      video.percent ());
  /* Clean (or no report) for less than FEC_HOLD: held. */
  fail_unless (video.update (0, 5 * s) == 50);
  fail_unless (video.update (-1, 4 * s + peerjs::FEC_HOLD - 1) == 50);
  fail_unless (video.update (0, 4 * s + peerjs::FEC_HOLD) == 0,
      "still on after FEC_HOLD without loss");
  video.update (0.1, 20 * s);
  fail_unless (video.update (0.5, 21 * s) == 0, "ULPFEC at 50 %% loss");

  FecLevel audio (1, peerjs::MAX_AUDIO_FEC_PERCENT);
  fail_unless (audio.update (0.123, 1 * s) == 13, "audio at 12.3 %% loss: "
      "%d %%", audio.percent ());
  fail_unless (audio.update (0.5, 2 * s) == 25, "audio over the cap: %d %%",
      audio.percent ());
}
END_TEST;

/* Opus in-band FEC, with do-fec (the default): both SDPs say
 * useinbandfec=1; under 10 % loss the receiver's decoder learns of every
 * lost packet (a gap, which in-band FEC or concealment fills), and the
 * publisher's one Opus encoder turns FEC on, sized for the loss the
 * receiver reports; with the loss gone it goes off again after
 * FEC_HOLD (10 s). The loss lasts until FEC is on (at most 15 s: a
 * report comes about every second, and its counts are cumulative, so a
 * lost report delays nothing but itself). */
GST_START_TEST (test_audio_fec)
{
  own_loopback_namespace ();
  ServerThread server;
  Member sink (publisher (server, "lossy"));
  Member src (receiver (server, "lossy"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  std::string pad = "audio_" + ids;
  check_audio (src, pad, 30);
  for (bool local : { true, false }) {
    std::string sdp = description (sink, idr, local);
    fail_unless (sdp.find ("useinbandfec=1") != std::string::npos,
        "no useinbandfec=1 in the %s SDP:\n%s",
        local ? "publisher's" : "receiver's", sdp.c_str ());
  }
  g_autoptr (GstElement) enc = made_by (sink, "opusenc");
  g_autoptr (GstElement) dec = made_by (src, "opusdec");
  fail_unless (enc && dec, "no opusenc in the publisher or opusdec in the "
      "receiver");
  gboolean decodes_fec = FALSE;
  g_object_get (dec, "use-inband-fec", &decodes_fec, NULL);
  fail_unless (decodes_fec, "the receiver's opusdec does not decode FEC");

  auto gaps = [&dec] {
    g_autoptr (GstStructure) stats = nullptr;
    g_object_get (dec, "stats", &stats, NULL);
    guint64 n = 0;
    if (stats)
      gst_structure_get_uint64 (stats, "num-gap", &n);
    return n;
  };
  gboolean fec = FALSE;
  int percent = -1;
  auto encoder = [&] {
    g_object_get (enc, "inband-fec", &fec, "packet-loss-percentage",
        &percent, NULL);
  };
  guint64 gaps_before = gaps ();
  int buffers_before = src.output (pad).buffers;
  gint64 t0 = now_ms (), on_ms;
  {
    UdpLoss loss (10);
    fail_unless (wait_until ([&] {
              encoder ();
              return fec && percent > 0;
            }, 15000), "no Opus FEC after 15 s of 10 %% loss: inband-fec %d, "
        "packet-loss-percentage %d", fec, percent);
    on_ms = now_ms () - t0;
    /* Sound keeps coming meanwhile: 50 buffers a second of 20 ms. */
    src.wait_buffers (pad, 50, src.output (pad).buffers, 3000);
  }
  guint64 lost = gaps () - gaps_before;
  fail_unless (percent <= 25, "packet-loss-percentage %d over the cap",
      percent);
  fail_unless (lost > 0, "10 %% loss for %" G_GINT64_FORMAT " ms, and no gap "
      "reached the receiver's opusdec", on_ms);
  g_printerr ("audio FEC: on at %d %% after %" G_GINT64_FORMAT " ms of loss; "
      "%" G_GUINT64_FORMAT " gaps decoded, %d buffers meanwhile\n", percent,
      on_ms, lost, src.output (pad).buffers - buffers_before);

  /* Clean again: off after FEC_HOLD without loss. */
  gint64 t1 = now_ms ();
  fail_unless (wait_until ([&] {
            encoder ();
            return !fec && percent == 0;
          }, 20000), "Opus FEC still on 20 s after the loss ended: "
      "inband-fec %d, packet-loss-percentage %d", fec, percent);
  gint64 off_ms = now_ms () - t1;
  fail_unless (off_ms >= 5000, "Opus FEC off %" G_GINT64_FORMAT " ms after "
      "the loss ended, before FEC_HOLD", off_ms);
  g_printerr ("audio FEC: off %" G_GINT64_FORMAT " ms after the loss\n",
      off_ms);
}
END_TEST;

/* do-fec=false: no useinbandfec, red or ulpfec in either SDP, no FEC
 * decoded, and the Opus encoder stays without FEC under loss that the
 * receiver reports. */
GST_START_TEST (test_no_fec)
{
  own_loopback_namespace ();
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 do-fec=false "
      + props (server, "lossy") + " videotestsrc is-live=true pattern=ball"
      " ! video/x-raw,width=320,height=240,framerate=15/1 ! p.video"
      " audiotestsrc is-live=true wave=sine volume=0.5 ! p.audio");
  Member src (receiver (server, "lossy") + " do-fec=false");
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  check_audio (src, "audio_" + ids, 30);
  for (bool local : { true, false }) {
    std::string sdp = description (sink, idr, local);
    fail_unless (!sdp.empty () && sdp.find ("useinbandfec") == std::string::npos
        && sdp.find (" red/") == std::string::npos
        && sdp.find (" ulpfec/") == std::string::npos,
        "FEC in the %s SDP with do-fec=false:\n%s",
        local ? "publisher's" : "receiver's", sdp.c_str ());
  }
  g_autoptr (GstElement) enc = made_by (sink, "opusenc");
  g_autoptr (GstElement) dec = made_by (src, "opusdec");
  fail_unless (enc && dec, "no opusenc in the publisher or opusdec in the "
      "receiver");
  gboolean decodes_fec = TRUE;
  g_object_get (dec, "use-inband-fec", &decodes_fec, NULL);
  fail_unless (!decodes_fec, "opusdec decodes FEC with do-fec=false");
  std::string stats;
  {
    UdpLoss loss (10);
    fail_unless (wait_until ([&] {
              stats = sink.find ("peerjs-stats", {{"member", idr}});
              return number (stats, "remote-packets-lost") > 0;
            }, 15000), "the receiver reported no loss in 15 s: %s",
        stats.c_str ());
    /* Two more polls of the loss. */
    g_usleep (2 * LOSS_POLL_US);
  }
  gboolean fec = TRUE;
  int percent = -1;
  g_object_get (enc, "inband-fec", &fec, "packet-loss-percentage", &percent,
      NULL);
  fail_unless (!fec && percent == 0, "Opus FEC with do-fec=false: "
      "inband-fec %d, packet-loss-percentage %d", fec, percent);
  fail_unless (number (stats, "fec-percentage") == 0, "video FEC with "
      "do-fec=false: %s", stats.c_str ());
}
END_TEST;

/* Hide an element from this case's process (each case runs in a process
 * of its own), as if its plugin were not installed. */
void
hide_factory (const char *name)
{
  GstRegistry *registry = gst_registry_get ();
  GstPluginFeature *f = gst_registry_lookup_feature (registry, name);
  if (f) {
    gst_registry_remove_feature (registry, f);
    gst_object_unref (f);
  }
}

bool
has_factory (const char *name)
{
  g_autoptr (GstElementFactory) f = gst_element_factory_find (name);
  return f != nullptr;
}

/* A codec published from raw video by one encoder (the others of the
 * codec hidden), and what a receiver needs for it. */
struct CodecCase
{
  const char *codec;
  const char *encoder;
  std::vector<const char *> hidden;
  std::vector<const char *> needed;   /* payloader, depayloader, a decoder */
};

const CodecCase CODEC_CASES[] = {
  { "VP8", "vp8enc", {}, { "rtpvp8pay", "rtpvp8depay", "vp8dec" } },
  { "VP9", "vp9enc", {}, { "rtpvp9pay", "rtpvp9depay", "vp9dec" } },
  { "H264", "x264enc", {}, { "rtph264pay", "rtph264depay", "avdec_h264" } },
  { "H264", "openh264enc", { "x264enc", "avdec_h264" },
    { "rtph264pay", "rtph264depay", "openh264dec" } },
  { "AV1", "av1enc", {}, { "rtpav1pay", "rtpav1depay", "av1dec" } },
};

/* video-codec: each codec whose encoder and decoder are installed here is
 * encoded by the element chosen for it and decoded by a receiving pipeline
 * as it was sent: 320x240, a red picture (with a white ball moving over
 * it: the frames differ). */
GST_START_TEST (test_video_codecs)
{
  const CodecCase & c = CODEC_CASES[__i__];
  for (const char *h : c.hidden)
    hide_factory (h);
  std::vector<const char *> needed = c.needed;
  needed.push_back (c.encoder);
  for (const char *n : needed) {
    if (!has_factory (n)) {
      g_print ("SKIP: %s by %s: no %s on this machine\n", c.codec, c.encoder,
          n);
      return;
    }
  }
  ServerThread server;
  std::string thread = std::string ("codec-") + c.encoder;
  Member sink (std::string ("peerjssink name=p video-codec=") + c.codec + " "
      + props (server, thread) + " videotestsrc is-live=true pattern=ball "
      "background-color=0xffff0000 ! "
      "video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (server, thread));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  check_video (src, "video_" + id, 20);
  g_autoptr (GstElement) enc = made_by (sink, c.encoder);
  fail_unless (enc != nullptr, "%s was not encoded by %s", c.codec, c.encoder);
  g_autoptr (GstElement) dec = made_by (src, c.needed.back ());
  fail_unless (dec != nullptr, "%s was not decoded by %s", c.codec,
      c.needed.back ());
  /* Red in BT.601: Y 81, U 90, V 240; the ball is a small part. */
  Output o = src.output ("video_" + id);
  fail_unless (std::abs (o.yuv[0] - 81) < 25 && std::abs (o.yuv[1] - 90) < 25
      && std::abs (o.yuv[2] - 240) < 25, "%s: mean Y %.0f U %.0f V %.0f, "
      "wanted red (81 90 240)", c.codec, o.yuv[0], o.yuv[1], o.yuv[2]);
  fail_unless (sink.errors ().empty () && src.errors ().empty (),
      "errors:\n%s%s", sink.describe ().c_str (), src.describe ().c_str ());
}
END_TEST;

/* No encoder for video-codec: one CORE/MISSING_PLUGIN error naming the
 * Debian package to install, not one per caps event. */
GST_START_TEST (test_missing_encoder)
{
  for (const char *h : { "x264enc", "openh264enc", "vah264enc", "nvh264enc",
          "v4l2h264enc" })
    hide_factory (h);
  ServerThread server;
  Member sink ("peerjssink name=p video-codec=h264 " + props (server, "noenc")
      + " videotestsrc is-live=true ! "
      "video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (wait_until ([&] { return !sink.errors ().empty (); }),
      "no error without an H.264 encoder");
  /* A second would come with the next caps event or buffer: 2 s is 30 of
   * them. */
  fail_if (wait_until ([&] { return sink.errors ().size () > 1; }, 2000),
      "more than one error:\n%s", sink.describe ().c_str ());
  std::string e = sink.errors ().front ();
  std::string want = "error gst-core-error-quark/"
      + std::to_string (GST_CORE_ERROR_MISSING_PLUGIN);
  fail_unless (e.find (want) == 0
      && e.find ("gstreamer1.0-plugins-ugly") != std::string::npos
      && e.find ("openh264enc") != std::string::npos,
      "wanted CORE/MISSING_PLUGIN naming the package, got %s", e.c_str ());
}
END_TEST;

/* Elements inside `m`'s peerjs element whose class says they encode or
 * decode video. */
std::vector<std::string>
coders_in (Member & m)
{
  std::vector<std::string> found;
  g_autoptr (GstIterator) it = gst_bin_iterate_recurse (GST_BIN (m.element ()));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    auto *e = GST_ELEMENT (g_value_get_object (&v));
    GstElementFactory *f = gst_element_get_factory (e);
    const char *klass = f ? gst_element_factory_get_metadata (f,
        GST_ELEMENT_METADATA_KLASS) : nullptr;
    if (klass && strstr (klass, "Video") && (strstr (klass, "Encoder")
            || strstr (klass, "Decoder")))
      found.push_back (GST_OBJECT_NAME (f));
    g_value_reset (&v);
  }
  g_value_unset (&v);
  return found;
}

/* A camera's H.264 as it comes off RTP (depayloaded and parsed, its
 * parameter sets once at the start of the byte-stream, a key frame every
 * 60 s) is sent as it is: no
 * encoder or decoder in the element; a member joining late asks for a key
 * frame, which reaches the encoder upstream, and it decodes a picture
 * within 2 s of its stream's arrival. */
GST_START_TEST (test_h264_passthrough)
{
  for (const char *n : { "x264enc", "avdec_h264" }) {
    if (!has_factory (n)) {
      g_print ("SKIP: no %s on this machine\n", n);
      return;
    }
  }
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 "
      + props (server, "pass") + " videotestsrc is-live=true pattern=ball"
      " ! video/x-raw,width=320,height=240,framerate=15/1"
      " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=900"
      " ! video/x-h264,stream-format=avc,profile=constrained-baseline"
      " ! rtph264pay config-interval=0 ! rtph264depay ! h264parse"
      " ! video/x-h264,stream-format=byte-stream ! p.video");
  Member first (receiver (server, "pass"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (first.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  check_video (first, "video_" + id, 20);
  std::vector<std::string> coders = coders_in (sink);
  fail_unless (coders.empty (), "the publishing element encodes or decodes: "
      "%s", coders.front ().c_str ());

  gint64 joined = now_ms ();
  Member late (receiver (server, "pass"));
  fail_unless (late.play () != GST_STATE_CHANGE_FAILURE);
  late.wait_buffers ("video_" + id, 1);
  Output o = late.output ("video_" + id);
  gint64 picture = o.times.front () - o.added;
  g_print ("late joiner: stream %" G_GINT64_FORMAT " ms after it started, "
      "first picture %" G_GINT64_FORMAT " ms after its stream\n",
      o.added - joined, picture);
  fail_unless (picture < 2000, "the late joiner's first picture came %"
      G_GINT64_FORMAT " ms after its stream", picture);
  check_video (late, "video_" + id, 20);

  /* Passed through, the video cannot follow the members' estimates: the
   * statistics say so. */
  std::string stats;
  fail_unless (wait_until ([&] {
            stats = sink.find ("peerjs-stats", {{"member", late.id ()}});
            return !stats.empty ();
          }), "no statistics about the late joiner");
  fail_unless (stats.find ("bitrate-adapts=(boolean)false") != std::string::npos
      && number (stats, "target-bitrate") == 0, "%s", stats.c_str ());
}
END_TEST;

/* A buffer probe making an H.264 byte-stream's parameter sets (SPS, PPS)
 * come once, at its start, as some cameras send them: later ones are cut
 * out of the access units. */
GstPadProbeReturn
parameter_sets_once (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *seen = static_cast<std::array<bool, 2> *> (data);
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  GstMapInfo map;
  if (!gst_buffer_map (buffer, &map, GST_MAP_READ))
    return GST_PAD_PROBE_OK;
  const guint8 *d = map.data;
  gsize size = map.size;
  /* NAL units start at 00 00 01 (a 4-byte start code's leading zero
   * belongs to the unit before: harmless). SPS is type 7, PPS 8. */
  std::vector<gsize> starts;
  for (gsize i = 0; i + 3 < size; i++)
    if (d[i] == 0 && d[i + 1] == 0 && d[i + 2] == 1)
      starts.push_back (i);
  std::string out (reinterpret_cast<const char *> (d),
      starts.empty () ? size : starts.front ());
  bool cut = false;
  bool first[2] = { !(*seen)[0], !(*seen)[1] };
  for (size_t n = 0; n < starts.size (); n++) {
    gsize from = starts[n], to = n + 1 < starts.size () ? starts[n + 1] : size;
    int type = d[from + 3] & 0x1f;
    if ((type == 7 || type == 8) && !first[type - 7]) {
      cut = true;
      continue;
    }
    if (type == 7 || type == 8)
      (*seen)[type - 7] = true;
    out.append (reinterpret_cast<const char *> (d + from), to - from);
  }
  gst_buffer_unmap (buffer, &map);
  if (!cut)
    return GST_PAD_PROBE_OK;
  GstBuffer *copy = gst_buffer_new_memdup (out.data (), out.size ());
  gst_buffer_copy_into (copy, buffer, (GstBufferCopyFlags)
      (GST_BUFFER_COPY_FLAGS | GST_BUFFER_COPY_TIMESTAMPS
          | GST_BUFFER_COPY_META), 0, -1);
  gst_buffer_unref (buffer);
  GST_PAD_PROBE_INFO_DATA (info) = copy;
  return GST_PAD_PROBE_OK;
}

GST_START_TEST (test_h264_parameter_sets)
{
  for (const char *n : { "x264enc", "avdec_h264" }) {
    if (!has_factory (n)) {
      g_print ("SKIP: no %s on this machine\n", n);
      return;
    }
  }
  ServerThread server;
  Member sink ("peerjssink name=p " + props (server, "sets")
      + " videotestsrc is-live=true pattern=ball"
      " ! video/x-raw,width=320,height=240,framerate=15/1"
      " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15"
      " ! video/x-h264,stream-format=byte-stream,profile=constrained-baseline"
      " ! identity name=camera ! h264parse"
      " ! video/x-h264,stream-format=byte-stream,alignment=au ! p.video");
  std::array<bool, 2> seen = { false, false };
  {
    g_autoptr (GstObject) pipeline = gst_object_get_parent (
        GST_OBJECT (sink.element ()));
    g_autoptr (GstElement) camera = gst_bin_get_by_name (GST_BIN (pipeline),
        "camera");
    g_autoptr (GstPad) src = gst_element_get_static_pad (camera, "src");
    gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, parameter_sets_once,
        &seen, nullptr);
  }
  Member first (receiver (server, "sets"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (first.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  check_video (first, "video_" + id, 20);
  Member late (receiver (server, "sets"));
  fail_unless (late.play () != GST_STATE_CHANGE_FAILURE);
  late.wait_buffers ("video_" + id, 1);
  Output o = late.output ("video_" + id);
  gint64 picture = o.times.front () - o.added;
  fail_unless (picture < 2000, "the late joiner's first picture came %"
      G_GINT64_FORMAT " ms after its stream", picture);
  check_video (late, "video_" + id, 20);
}
END_TEST;

/* A receiver that cannot decode the publisher's codec: the publisher
 * warns once that the member cannot receive it, naming both; the receiver
 * once that it cannot decode it, naming the Debian package. Either makes
 * the offer (the larger id does: members are started again until the ids
 * are in the order wanted): the publisher's offer names its codec; the
 * receiver's has only what it decodes, and the publisher's answer says
 * what it would have sent (x-peerjs-sends). */
static void
check_codec_refused (bool publisher_offers)
{
  if (!has_factory ("x264enc")) {
    g_print ("SKIP: no x264enc on this machine\n");
    return;
  }
  for (const char *h : { "avdec_h264", "openh264dec" })
    hide_factory (h);
  ServerThread server;
  /* Neither joins the thread until the ids are in the order wanted: a
   * publisher whose id is on the wrong side of the middle is started
   * again, else the receiver. */
  std::unique_ptr<Member> pub, src;
  std::string ids, idr;
  auto ordered = [&] {
    return !idr.empty () && (publisher_offers ? idr < ids : idr > ids);
  };
  for (int i = 0; i < 30 && !ordered (); i++) {
    if (!pub || (publisher_offers ? ids < "i" : ids > "q")) {
      pub.reset (new Member ("peerjssink name=p video-codec=h264 server="
              + server.ws_url () + " videotestsrc is-live=true ! "
              "video/x-raw,width=320,height=240,framerate=15/1 ! p.video"));
      fail_unless (pub->play () != GST_STATE_CHANGE_FAILURE);
      ids = pub->id ();
    }
    if (!src || !ordered ()) {
      src.reset (new Member ("peerjssrc name=p server=" + server.ws_url ()));
      fail_unless (src->play () != GST_STATE_CHANGE_FAILURE);
      idr = src->id ();
    }
  }
  fail_unless (ordered (), "the ids not in the order wanted in 30 starts");
  Member & sink = *pub;
  gboolean joined = FALSE;
  g_signal_emit_by_name (sink.element (), "join-thread", "refused", &joined);
  fail_unless (joined);
  gboolean ok = FALSE;
  g_signal_emit_by_name (src->element (), "join-thread", "refused", &ok);
  fail_unless (ok);

  auto refused = [&] {
    std::vector<std::string> found;
    for (const std::string & e : sink.errors ())
      if (e.find ("warning gst-stream-error-quark/"
              + std::to_string (GST_STREAM_ERROR_CODEC_NOT_FOUND)) == 0)
        found.push_back (e);
    return found;
  };
  auto undecodable = [&] {
    std::vector<std::string> found;
    for (const std::string & e : src->errors ())
      if (e.find ("warning gst-stream-error-quark/"
              + std::to_string (GST_STREAM_ERROR_CODEC_NOT_FOUND)) == 0)
        found.push_back (e);
    return found;
  };
  fail_unless (wait_until ([&] { return !refused ().empty ()
              && !undecodable ().empty (); }), "no warnings; publisher:\n%s"
      "receiver:\n%s", sink.describe ().c_str (), src->describe ().c_str ());
  std::string r = refused ().front (), u = undecodable ().front ();
  fail_unless (r.find ("Member " + idr + " cannot receive H264")
      != std::string::npos, "publisher: %s", r.c_str ());
  fail_unless (u.find ("Member " + ids + " sends H264") != std::string::npos
      && u.find ("gstreamer1.0-libav") != std::string::npos, "receiver: %s",
      u.c_str ());
  /* Once each, through a renegotiation too (the receiver turns audio off
   * and on). */
  g_object_set (src->element (), "constraints",
      "{\"video\":true,\"audio\":false}", NULL);
  g_usleep (1000 * 1000);
  g_object_set (src->element (), "constraints",
      "{\"video\":true,\"audio\":true}", NULL);
  fail_if (wait_until ([&] { return refused ().size () > 1
              || undecodable ().size () > 1; }, 2000),
      "more than one warning each; publisher:\n%s receiver:\n%s",
      sink.describe ().c_str (), src->describe ().c_str ());
  fail_unless (src->output ("video_" + ids).buffers == 0);
}

GST_START_TEST (test_codec_refused)
{
  check_codec_refused (true);
}
END_TEST;

GST_START_TEST (test_codec_refused_receiver_offers)
{
  check_codec_refused (false);
}
END_TEST;

/* display-name and what a pipeline says of itself: a page in the thread
 * gets them with the element's thread:connect (and its direct answer to the
 * page's join), as display_name, pipeline (the element) and records
 * (mix=true); a bad name is refused with a warning, the old one kept. */
GST_START_TEST (test_display_name)
{
  own_loopback_namespace ();
  ServerThread server;
  Member rec ("peerjssrc name=p mix=true display-name=\"recorder 1\" "
      + props (server, "named"));
  g_object_set (rec.element (), "display-name", "bad\x01name", NULL);
  fail_unless (rec.errors ().size () == 1 && rec.errors ().front ().find (
          "display-name must be") != std::string::npos, "%s",
      rec.describe ().c_str ());
  fail_unless (rec.play () != GST_STATE_CHANGE_FAILURE);
  Client page;
  fail_unless (page.connect (server.ws_url ()));
  page.send ("{\"type\":\"thread:connect\",\"thread\":\"named\","
      "\"constraints\":{}}");
  auto answer = page.next_of ("thread:connect", 5000);
  fail_unless (answer.has_value (), "no answer to the page's join");
  fail_unless_equals_string (answer->str ("from").c_str (), rec.id ().c_str ());
  fail_unless_equals_string (answer->str ("display_name").c_str (),
      "recorder 1");
  fail_unless_equals_string (answer->str ("pipeline").c_str (), "peerjssrc");
  fail_unless (answer->has ("records") && json_node_get_boolean (
          answer->node ("records")), "%s", answer->text ().c_str ());

  /* A sink joining later announces itself to the page, and records
   * nothing. */
  Member sink (publisher (server, "named"));
  g_object_set (sink.element (), "display-name", "camera \xc3\xa9", NULL);
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id ();
  std::optional<peerjs::test::Msg> joined;
  while (!joined || joined->str ("from") != ids) {
    joined = page.next_of ("thread:connect", 5000);
    fail_unless (joined.has_value (), "the page did not see the sink join");
  }
  fail_unless_equals_string (joined->str ("display_name").c_str (),
      "camera \xc3\xa9");
  fail_unless_equals_string (joined->str ("pipeline").c_str (), "peerjssink");
  fail_if (joined->has ("records"), "%s", joined->text ().c_str ());
  g_autofree char *name = nullptr;
  g_object_get (sink.element (), "display-name", &name, NULL);
  fail_unless_equals_string (name, "camera \xc3\xa9");
}
END_TEST;

/* members= on a receiver: only the chosen member's pads appear, chosen by
 * name (display-name), by a tag it announces, or by id. */
GST_START_TEST (test_members_filter)
{
  ServerThread server;
  Member a (publisher (server, "cams", "ball", true,
          "peerjssink display-name=cam-a"));
  Member b (publisher (server, "cams", "smpte", true,
          "peerjssink tags=front,door"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id (), idb = b.id ();
  struct Choice
  {
    std::string members, chosen, other;
  };
  for (const Choice & c : { Choice { "cam-a", ida, idb },
          Choice { "nobody, door", idb, ida }, Choice { ida, ida, idb } }) {
    Member src (receiver (server, "cams") + " members=\"" + c.members + "\"");
    fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
    check_video (src, "video_" + c.chosen, 10);
    check_audio (src, "audio_" + c.chosen, 10);
    /* The other's media would have come with the chosen one's. */
    fail_if (wait_until ([&] {
              return !src.output ("video_" + c.other).pad.empty ()
                  || !src.output ("audio_" + c.other).pad.empty ();
            }, 1500), "members=%s: a pad of %s appeared:\n%s",
        c.members.c_str (), c.other.c_str (), src.describe ().c_str ());
    /* Both still share the thread with it. */
    src.wait_message ("peerjs-thread-connect", {{"member", c.other}});
  }
}
END_TEST;

GST_START_TEST (test_encoded_input)
{
  ServerThread server;
  Member sink ("peerjssink name=p stats-interval=500 " + props (server, "enc")
      + " videotestsrc is-live=true pattern=ball"
      " ! video/x-raw,width=320,height=240,framerate=15/1"
      " ! vp8enc deadline=1 keyframe-max-dist=30 ! p.video"
      " audiotestsrc is-live=true wave=sine ! opusenc ! p.audio");
  Member src (receiver (server, "enc"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  check_video (src, "video_" + id, 30);
  check_audio (src, "audio_" + id, 30);
  /* Encoded input cannot adapt, and the publisher's statistics say so:
   * no encoder of ours, while the member's feedback still makes an
   * estimate. */
  std::string stats;
  fail_unless (wait_until ([&] {
            stats = sink.find ("peerjs-stats", {{"member", src.id ()}});
            return number (stats, "estimated-bitrate") > 0;
          }), "no estimate: %s", stats.c_str ());
  fail_unless (stats.find ("bitrate-adapts=(boolean)false") != std::string::npos
      && number (stats, "target-bitrate") == 0, "%s", stats.c_str ());
}
END_TEST;

GST_START_TEST (test_three_bins)
{
  ServerThread server;
  std::vector<std::unique_ptr<Member>> m;
  const char *patterns[] = { "ball", "smpte", "snow" };
  for (const char *pattern : patterns) {
    m.push_back (std::make_unique<Member> (publisher (server, "trio", pattern,
                true, "peerjsbin")));
    fail_unless (m.back ()->play () != GST_STATE_CHANGE_FAILURE);
  }
  std::vector<std::string> ids;
  for (auto & x : m)
    ids.push_back (x->id ());
  fail_unless (std::set<std::string> (ids.begin (), ids.end ()).size () == 3);
  for (size_t i = 0; i < m.size (); i++) {
    for (size_t j = 0; j < m.size (); j++) {
      if (i == j)
        continue;
      check_video (*m[i], "video_" + ids[j], 20);
      check_audio (*m[i], "audio_" + ids[j], 20);
    }
    fail_unless (m[i]->output ("video_" + ids[i]).buffers == 0,
        "a member receives itself");
  }
}
END_TEST;

GST_START_TEST (test_constraints_toggle)
{
  ServerThread server;
  Member sink (publisher (server, "toggle"));
  Member src (receiver (server, "toggle"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  std::string vpad = "video_" + id, apad = "audio_" + id;
  check_video (src, vpad, 15);

  g_object_set (sink.element (), "constraints",
      "{\"video\":false,\"audio\":true}", NULL);
  src.wait_message ("peerjs-thread-change", {{"member", id}});
  src.wait_message ("peerjs-media-disconnect", {{"member", id},
          {"kind", "video"}});
  fail_unless (wait_until ([&] { return src.output (vpad).removed; }),
      "the video pad of %s was not removed", id.c_str ());
  /* Audio goes on meanwhile. */
  int audio = src.output (apad).buffers;
  src.wait_buffers (apad, 20, audio);

  g_object_set (sink.element (), "constraints",
      "{\"video\":true,\"audio\":true}", NULL);
  fail_unless (wait_until ([&] {
            return src.count ("peerjs-media-connect", {{"member", id},
                    {"kind", "video"}}) == 2; }),
      "video did not come back: %s", src.describe ().c_str ());
  check_video (src, vpad, 15);
}
END_TEST;

GST_START_TEST (test_member_leaves)
{
  ServerThread server;
  Member a (publisher (server, "leave", "ball", false));
  Member c (publisher (server, "leave", "smpte", false));
  Member b (receiver (server, "leave"));
  for (Member *m : { &a, &c, &b })
    fail_unless (m->play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id (), idc = c.id ();
  check_video (b, "video_" + ida, 10);
  check_video (b, "video_" + idc, 10);

  gint64 took = a.stop ();
  fail_unless (took < 3000, "leaving took %" G_GINT64_FORMAT " ms", took);
  b.wait_message ("peerjs-thread-disconnect", {{"member", ida}});
  b.wait_message ("peerjs-media-disconnect", {{"member", ida}});
  fail_unless (wait_until ([&] { return b.output ("video_" + ida).removed; }));
  int before = b.output ("video_" + idc).buffers;
  b.wait_buffers ("video_" + idc, 15, before);
}
END_TEST;

GST_START_TEST (test_member_killed)
{
  ServerThread server;
  Member b (receiver (server, "killed"));
  Member c (publisher (server, "killed", "smpte", false));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (c.play () != GST_STATE_CHANGE_FAILURE);
  std::string idc = c.id ();

  /* A member in a process of its own, killed without a word. */
  std::string cmd = "exec gst-launch-1.0 -q peerjssink name=p "
      + props (server, "killed") + " videotestsrc is-live=true ! "
      "video/x-raw,width=320,height=240,framerate=15/1 ! p.video";
  GPid pid = 0;
  const char *argv[] = { "sh", "-c", cmd.c_str (), nullptr };
  fail_unless (g_spawn_async (nullptr, (char **) argv, nullptr,
          G_SPAWN_SEARCH_PATH, nullptr, nullptr, &pid, nullptr));
  /* Which member is the process: not c. */
  std::string killed;
  fail_unless (wait_until ([&] {
            std::string d = b.describe ();
            size_t at = d.find ("peerjs-media-connect");
            while (at != std::string::npos) {
              size_t m = d.find ("member=(string)", at);
              std::string id = d.substr (m + 15, 15);
              if (id != idc) {
                killed = id;
                return b.output ("video_" + id).buffers >= 10;
              }
              at = d.find ("peerjs-media-connect", at + 1);
            }
            return false;
          }), "the process's video did not arrive: %s", b.describe ().c_str ());
  kill (pid, SIGKILL);
  waitpid (pid, nullptr, 0);
  g_spawn_close_pid (pid);

  /* Dropped once the server gives up on it (grace 5 s here), or on ICE
   * failure, whichever comes first; the others go on. */
  fail_unless (wait_until ([&] { return b.output ("video_" + killed).removed; },
          30000), "the killed member's pad stayed: %s", b.describe ().c_str ());
  int before = b.output ("video_" + idc).buffers;
  b.wait_buffers ("video_" + idc, 15, before);
}
END_TEST;

GST_START_TEST (test_server_restart)
{
  ServerThread server;
  Member sink (publisher (server, "restart", "ball", false));
  Member src (receiver (server, "restart"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  std::string pad = "video_" + ids;
  check_video (src, pad, 10);

  server.stop ();
  src.wait_message ("peerjs-socket-disconnect");
  /* Media does not need the server. */
  int during = src.output (pad).buffers;
  src.wait_buffers (pad, 15, during);
  server.start ();

  sink.wait_message ("peerjs-socket-resumed", {{"id", ids}});
  src.wait_message ("peerjs-socket-resumed", {{"id", idr}});
  fail_unless (sink.id () == ids && src.id () == idr,
      "the ids changed over the restart");
  int after = src.output (pad).buffers;
  src.wait_buffers (pad, 15, after);
  /* A member that joins after the restart meets both. */
  Member late (receiver (server, "restart"));
  fail_unless (late.play () != GST_STATE_CHANGE_FAILURE);
  check_video (late, pad, 10);
}
END_TEST;

/* `server` as a list (the nodes of one cluster, here two servers sharing a
 * secret): an unreachable first URL is passed over at start; when the
 * server in use goes away the element moves to the next one, keeps its id
 * and meets the members there; when no URL answers, one error names each. */
GST_START_TEST (test_server_list)
{
  auto options = ServerThread::default_options ();
  options.secret = "server-list-secret";
  ServerThread a (options), b (options);
  std::string dead = "ws://127.0.0.1:1/peerjs";
  std::string list = dead + "," + a.ws_url () + ", " + b.ws_url ();
  Member sink ("peerjssink name=p server=\"" + list + "\" thread=list "
      "videotestsrc is-live=true pattern=ball ! "
      "video/x-raw,width=320,height=240,framerate=15/1 ! p.video");
  Member src (receiver (b, "list"));
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  sink.wait_message ("peerjs-socket-connect", {{"server", a.ws_url ()}});
  std::string ids = sink.id ();
  fail_unless (sink.errors ().empty (), "an error: %s",
      sink.errors ().front ().c_str ());

  a.stop ();
  sink.wait_message ("peerjs-socket-disconnect", {{"server", a.ws_url ()},
          {"next-server", b.ws_url ()}});
  sink.wait_message ("peerjs-socket-resumed", {{"server", b.ws_url ()},
          {"id", ids}});
  /* On b it joined its thread again, where the receiver is. */
  check_video (src, "video_" + ids, 10);
  for (const std::string & e : sink.errors ())
    fail_unless (e.find ("warning") == 0, "an error: %s", e.c_str ());

  std::string other = "ws://127.0.0.1:2/peerjs";
  Member none ("peerjssrc name=p server=\"" + dead + "," + other
      + "\" thread=x");
  none.play ();
  fail_unless (wait_until ([&] { return !none.errors ().empty (); }, 15000),
      "no error when no server answers");
  std::string e = none.errors ().front ();
  fail_unless (e.find (dead) != std::string::npos
      && e.find (other) != std::string::npos,
      "the error does not name every URL: %s", e.c_str ());
}
END_TEST;

GST_START_TEST (test_unreachable_server)
{
  /* Nothing listens on port 1 of this namespace. */
  Member m ("peerjssrc name=p server=ws://127.0.0.1:1/peerjs thread=x");
  gint64 t0 = now_ms ();
  m.play ();
  bool failed = wait_until ([&] { return !m.errors ().empty (); }, 10000);
  fail_unless (failed, "no error for an unreachable server");
  std::string e = m.errors ().front ();
  std::string want = "error gst-resource-error-quark/"
      + std::to_string (GST_RESOURCE_ERROR_OPEN_READ_WRITE);
  fail_unless (e.find (want) == 0
      && e.find ("ws://127.0.0.1:1/peerjs") != std::string::npos,
      "wanted RESOURCE/OPEN_READ_WRITE naming the URL, got %s", e.c_str ());
  fail_unless (now_ms () - t0 < 6000, "the error took %" G_GINT64_FORMAT " ms",
      now_ms () - t0);
  fail_unless (m.stop () < 2000);
}
END_TEST;

/* Errors that say what went wrong: wss:// to a server without TLS names
 * the TLS handshake (not a silent server), and a path other than /peerjs
 * gives the server's HTTP answer and the path to use. All three are
 * RESOURCE/OPEN_READ_WRITE and are not tried again. */
GST_START_TEST (test_connect_errors)
{
  ServerThread server;
  std::string port = std::to_string (server.port ());
  struct Case
  {
    std::string url;
    std::vector<std::string> says;
  };
  std::vector<Case> cases = {
    {"wss://127.0.0.1:" + port + "/peerjs", {"TLS handshake failed",
            "ws://"}},
    /* The test server serves no page at /. */
    {"ws://127.0.0.1:" + port + "/", {"answered 404 Not Found to /",
            "/peerjs"}},
    {"ws://127.0.0.1:" + port + "/foo", {"answered 404 Not Found to /foo",
            "/peerjs"}},
  };
  std::vector<std::unique_ptr<Member>> members;
  for (auto & c : cases) {
    members.push_back (std::make_unique<Member> ("peerjssrc name=p server="
            + c.url + " thread=x"));
    members.back ()->play ();
  }
  std::string want = "error gst-resource-error-quark/"
      + std::to_string (GST_RESOURCE_ERROR_OPEN_READ_WRITE) + ": ";
  for (size_t i = 0; i < cases.size (); i++) {
    Member & m = *members[i];
    fail_unless (wait_until ([&] { return !m.errors ().empty (); }, 10000),
        "no error for %s", cases[i].url.c_str ());
    std::string e = m.errors ().front ();
    fail_unless (e.find (want) == 0 && e.find (cases[i].url) != std::string::npos,
        "wanted RESOURCE/OPEN_READ_WRITE naming %s, got %s",
        cases[i].url.c_str (), e.c_str ());
    /* In the message itself, before the debug text. */
    std::string message = e.substr (0, e.find (". ("));
    for (auto & words : cases[i].says)
      fail_unless (message.find (words) != std::string::npos,
          "the error for %s does not say '%s': %s", cases[i].url.c_str (),
          words.c_str (), e.c_str ());
    fail_unless (e.find ("no answer within") == std::string::npos, "%s",
        e.c_str ());
  }
  for (auto & m : members) {
    fail_unless_equals_int ((int) m->errors ().size (), 1);
    fail_unless (m->stop () < 2000);
  }
}
END_TEST;

/* wss:// with the authority in tls-ca; without it the certificate is
 * refused with an error that says so. */
GST_START_TEST (test_wss)
{
  std::string data = g_getenv ("PEERJS_TEST_DATA");
  auto options = ServerThread::default_options ();
  options.tls_cert = data + "/test-cert.pem";
  options.tls_key = data + "/test-key.pem";
  ServerThread server (options);
  std::string url = "wss://127.0.0.1:" + std::to_string (server.port ())
      + "/peerjs";
  {
    Member m ("peerjssrc name=p server=" + url + " thread=x tls-ca="
        + options.tls_cert);
    fail_unless (m.play () != GST_STATE_CHANGE_FAILURE);
    m.wait_message ("peerjs-socket-connect", {{"server", url}});
  }
  {
    Member m ("peerjssrc name=p server=" + url + " thread=x");
    m.play ();
    fail_unless (wait_until ([&] { return !m.errors ().empty (); }, 10000));
    std::string e = m.errors ().front ();
    fail_unless (e.find (url) != std::string::npos
        && e.find ("certificate") != std::string::npos,
        "wanted an error naming the URL and the certificate, got %s",
        e.c_str ());
  }
}
END_TEST;

GST_START_TEST (test_bad_settings)
{
  ServerThread server;
  {
    Member m ("peerjssrc name=p server=http://127.0.0.1:5000/ thread=x");
    fail_unless (m.play () == GST_STATE_CHANGE_FAILURE);
    fail_unless (!m.errors ().empty ()
        && m.errors ().front ().find ("ws:// or wss://") != std::string::npos,
        "%s", m.describe ().c_str ());
  }
  {
    std::string longname (129, 'a');
    Member m ("peerjssrc name=p server=" + server.ws_url () + " thread="
        + longname);
    fail_unless (m.play () == GST_STATE_CHANGE_FAILURE);
    fail_unless (!m.errors ().empty ()
        && m.errors ().front ().find ("not valid") != std::string::npos,
        "%s", m.describe ().c_str ());
  }
  {
    Member m ("peerjssrc name=p server=" + server.ws_url ()
        + " thread=x constraints=video");
    fail_unless (m.play () == GST_STATE_CHANGE_FAILURE);
    fail_unless (!m.errors ().empty ()
        && m.errors ().back ().find ("JSON object") != std::string::npos,
        "%s", m.describe ().c_str ());
  }
}
END_TEST;

/* A member whose SDP does not parse is dropped with a warning; the element
 * and the others go on. */
GST_START_TEST (test_bad_sdp)
{
  ServerThread server;
  Member src (receiver (server, "sdp"));
  Member sink (publisher (server, "sdp", "ball", false));
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  std::string ids = sink.id (), idr = src.id ();
  check_video (src, "video_" + ids, 10);

  Client bad;
  fail_unless (bad.connect (server.ws_url ()));
  bad.send (J ("{'type':'thread:connect','thread':'sdp','constraints':{'video':true}}"));
  const char *garbage = "this is not SDP at all";
  if (bad.id > idr) {
    bad.send (J ("{'type':'stream:offer','to':'" + idr
            + "','data':{'type':'offer','sdp':'" + garbage + "'}}"));
  } else {
    /* The element offers; answer it with garbage. */
    fail_unless (bad.next_of ("stream:offer", 10000).has_value (),
        "no offer from the element");
    bad.send (J ("{'type':'stream:answer','to':'" + idr
            + "','data':{'type':'answer','sdp':'" + garbage + "'}}"));
  }
  src.wait_message ("peerjs-peer-failed", {{"member", bad.id}});
  int before = src.output ("video_" + ids).buffers;
  src.wait_buffers ("video_" + ids, 15, before);
}
END_TEST;

/* mix=true records a room whose members come and go into one file. */
GST_START_TEST (test_mix_record)
{
  ServerThread server;
  g_autofree char *dir = g_dir_make_tmp ("peerjs-mix-XXXXXX", nullptr);
  std::string file = std::string (dir) + "/room.webm";
  Member rec ("peerjssrc name=p mix=true mix-width=320 mix-height=240 "
      + props (server, "mix") + " p.video ! queue ! videoconvert"
      " ! vp8enc deadline=1 ! queue ! mux. p.audio ! queue ! audioconvert"
      " ! opusenc ! queue ! mux. webmmux name=mux ! filesink location="
      + file);
  g_autoptr (GstPad) video = gst_element_get_static_pad (rec.element (),
      "video");
  g_autoptr (GstPad) audio = gst_element_get_static_pad (rec.element (),
      "audio");
  fail_unless (video && audio, "mix=true: no video and audio pads");
  fail_unless (rec.play () != GST_STATE_CHANGE_FAILURE);
  gint64 started = now_ms ();
  g_usleep (G_USEC_PER_SEC);   /* an empty room first: black and silence */
  auto a = std::make_unique<Member> (publisher (server, "mix", "ball"));
  fail_unless (a->play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a->id ();
  rec.wait_message ("peerjs-media-connect", {{"member", ida},
          {"kind", "video"}, {"pad", "video"}});
  Member b (publisher (server, "mix", "smpte", false));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  rec.wait_message ("peerjs-media-connect", {{"member", b.id ()},
          {"kind", "video"}});
  g_usleep (1500 * 1000);
  a.reset ();   /* a leaves */
  rec.wait_message ("peerjs-media-disconnect", {{"member", ida},
          {"kind", "video"}});
  g_usleep (1000 * 1000);
  fail_unless (rec.finish (), "no EOS through the recording: %s",
      rec.describe ().c_str ());
  double elapsed = (now_ms () - started) / 1000.0;
  rec.stop ();
  fail_unless (rec.errors ().empty (), "%s", rec.describe ().c_str ());

  const char *argv[] = { "gst-discoverer-1.0", file.c_str (), nullptr };
  g_autofree char *out = nullptr;
  int status = -1;
  fail_unless (g_spawn_sync (nullptr, (char **) argv, nullptr,
          G_SPAWN_SEARCH_PATH, nullptr, nullptr, &out, nullptr, &status,
          nullptr), "cannot run gst-discoverer-1.0");
  std::string text = out ? out : "";
  fail_unless (text.find ("VP8") != std::string::npos
      && text.find ("Width: 320") != std::string::npos
      && text.find ("Opus") != std::string::npos,
      "the recording lacks VP8 320x240 video or Opus audio:\n%s",
      text.c_str ());
  size_t at = text.find ("Duration: ");
  fail_unless (at != std::string::npos, "no duration:\n%s", text.c_str ());
  int h = 0, m = 0;
  double s = 0;
  sscanf (text.c_str () + at + 10, "%d:%d:%lf", &h, &m, &s);
  double seconds = h * 3600 + m * 60 + s;
  /* As long as the pipeline ran, give or take its start. */
  fail_unless (seconds > elapsed - 1.5 && seconds < elapsed + 0.5,
      "the recording lasts %.2f s, the pipeline ran %.2f s", seconds, elapsed);
  g_unlink (file.c_str ());
  g_rmdir (dir);
}
END_TEST;

/* A member of two threads meets the members of both; members of different
 * threads do not meet. */
GST_START_TEST (test_two_threads)
{
  ServerThread server;
  Member x (publisher (server, "t1", "ball", false));
  Member y (receiver (server, "t2"));
  Member z (publisher (server, "t1,t2", "smpte", false, "peerjsbin"));
  for (Member *m : { &x, &y, &z })
    fail_unless (m->play () != GST_STATE_CHANGE_FAILURE);
  std::string idx = x.id (), idz = z.id ();
  check_video (y, "video_" + idz, 10);
  check_video (z, "video_" + idx, 10);
  z.wait_message ("peerjs-thread-connect", {{"thread", "t2"},
          {"member", y.id ()}});
  fail_unless (y.find ("peerjs-thread-connect", {{"member", idx}}).empty ()
      && y.output ("video_" + idx).buffers == 0,
      "a member of t2 alone met a member of t1: %s", y.describe ().c_str ());
}
END_TEST;

/* Chat: send-message from a pipeline reaches the thread as the demo room's
 * messages do, and messages from the thread come out as peerjs-message. */
GST_START_TEST (test_chat)
{
  ServerThread server;
  Member a ("peerjssrc name=p " + props (server, "chat"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();
  Client page;
  join_page (page, server, a, "chat");

  gboolean sent = FALSE;
  g_signal_emit_by_name (a.element (), "send-message", "chat", "hello room",
      &sent);
  fail_unless (sent, "send-message refused");
  auto got = page.next_of ("message", 5000);
  fail_unless (got.has_value (), "the page got no message");
  fail_unless_equals_string (got->str ("from").c_str (), ida.c_str ());
  fail_unless_equals_string (got->str ("thread").c_str (), "chat");
  fail_unless_equals_string (got->str ("data").c_str (), "hello room");

  g_signal_emit_by_name (a.element (), "send-message", "chat",
      "{\"kind\":\"poll\",\"n\":2}", &sent);
  got = page.next_of ("message", 5000);
  fail_unless (got.has_value () && got->has ("data"));
  fail_unless (got->text ().find ("\"data\":{\"kind\":\"poll\",\"n\":2}")
      != std::string::npos, "JSON data not sent as JSON: %s",
      got->text ().c_str ());

  g_signal_emit_by_name (a.element (), "send-message", "elsewhere", "x", &sent);
  fail_if (sent, "send-message to a thread not joined was accepted");

  page.send (J ("{'type':'message','thread':'chat','data':'hi pipeline'}"));
  a.wait_message ("peerjs-message", {{"from", page.id}, {"thread", "chat"},
          {"text", "hi pipeline"}, {"data", "\"hi pipeline\""}});
}
END_TEST;

/* Events with callbacks: answered (through the promise and the bus),
 * refused by the server, and timed out; and events from members, answered
 * with reply-event. */
GST_START_TEST (test_events)
{
  ServerThread server;
  Member a ("peerjssrc name=p reply-timeout=1500 " + props (server, "ev"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();
  Client page;
  join_page (page, server, a, "ev");

  /* Answered. */
  GstPromise *promise = gst_promise_new ();
  guint id = 0;
  g_signal_emit_by_name (a.element (), "send-event", "invite:connect",
      page.id.c_str (), nullptr, "{\"room\":\"x\"}", TRUE, promise, &id);
  fail_unless (id > 0, "send-event refused");
  auto got = page.next_of ("invite:connect", 5000);
  fail_unless (got.has_value (), "the page got no event");
  fail_unless_equals_string (got->str ("from").c_str (), ida.c_str ());
  fail_unless (got->text ().find ("\"data\":{\"room\":\"x\"}")
      != std::string::npos, "data: %s", got->text ().c_str ());
  fail_unless_equals_int (got->num ("callback_id"), id);
  page.send ("{\"to\":\"" + ida + "\",\"callback_response\":"
      + std::to_string (id) + ",\"data\":\"accepted\"}");
  fail_unless_equals_int (gst_promise_wait (promise),
      GST_PROMISE_RESULT_REPLIED);
  const GstStructure *reply = gst_promise_get_reply (promise);
  fail_unless (gst_structure_has_name (reply, "peerjs-event-reply"));
  fail_unless_equals_string (gst_structure_get_string (reply, "from"),
      page.id.c_str ());
  fail_unless_equals_string (gst_structure_get_string (reply, "error"), "");
  fail_unless_equals_string (gst_structure_get_string (reply, "data"),
      "{\"data\":\"accepted\"}");
  gst_promise_unref (promise);
  a.wait_message ("peerjs-event-reply", {{"from", page.id}});

  /* Refused: nobody by that name. */
  promise = gst_promise_new ();
  g_signal_emit_by_name (a.element (), "send-event", "invite:connect",
      "nobody-here", nullptr, "1", TRUE, promise, &id);
  fail_unless (id > 0);
  fail_unless_equals_int (gst_promise_wait (promise),
      GST_PROMISE_RESULT_REPLIED);
  reply = gst_promise_get_reply (promise);
  fail_unless_equals_string (gst_structure_get_string (reply, "error"),
      "unknown-recipient");
  gst_promise_unref (promise);

  /* Nobody answers: a timeout after reply-timeout. */
  promise = gst_promise_new ();
  gint64 t0 = now_ms ();
  g_signal_emit_by_name (a.element (), "send-event", "invite:connect",
      nullptr, "ev", "{}", TRUE, promise, &id);
  fail_unless (page.next_of ("invite:connect", 5000).has_value (),
      "the thread event did not reach the page");
  fail_unless_equals_int (gst_promise_wait (promise),
      GST_PROMISE_RESULT_REPLIED);
  gint64 waited = now_ms () - t0;
  reply = gst_promise_get_reply (promise);
  fail_unless_equals_string (gst_structure_get_string (reply, "error"),
      "timeout");
  fail_unless (waited >= 1400 && waited < 5000, "timed out after %"
      G_GINT64_FORMAT " ms, reply-timeout is 1500", waited);
  gst_promise_unref (promise);

  /* The protocol's own types are not events; a thread not joined. */
  g_signal_emit_by_name (a.element (), "send-event", "stream:offer",
      page.id.c_str (), nullptr, "{}", FALSE, nullptr, &id);
  fail_unless_equals_int (id, 0);
  g_signal_emit_by_name (a.element (), "send-event", "invite:x", nullptr,
      "elsewhere", "{}", FALSE, nullptr, &id);
  fail_unless_equals_int (id, 0);

  /* From a member, with a callback, answered by the pipeline. */
  page.send ("{\"type\":\"invite:ring\",\"to\":[\"" + ida
      + "\"],\"data\":{\"n\":1},\"callback_id\":5}");
  std::string event = a.wait_message ("peerjs-event", {{"type",
              "invite:ring"}, {"from", page.id}, {"callback-id", "5"}});
  fail_unless (event.find ("data=(string)\"\\{\\\"n\\\":1\\}\"")
      != std::string::npos, "event: %s", event.c_str ());
  gboolean ok = FALSE;
  g_signal_emit_by_name (a.element (), "reply-event", page.id.c_str (), "5",
      "{\"ok\":true}", &ok);
  fail_unless (ok);
  got = page.next (5000);
  while (got && !got->has ("callback_response"))
    got = page.next (5000);
  fail_unless (got.has_value (), "no reply reached the page");
  fail_unless_equals_int (got->num ("callback_response"), 5);
  fail_unless (got->boolean ("ok"), "reply: %s", got->text ().c_str ());

  /* Pipeline to pipeline: an event by tag, answered by reply-event. */
  Member b ("peerjssink name=p tags=speaker " + props (server, "ev"));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  std::string idb = b.id ();
  a.wait_message ("peerjs-thread-connect", {{"member", idb}});
  promise = gst_promise_new ();
  g_signal_emit_by_name (a.element (), "send-event", "invite:volume",
      "speaker", nullptr, "{\"level\":3}", TRUE, promise, &id);
  std::string at_b = b.wait_message ("peerjs-event", {{"type",
              "invite:volume"}, {"from", ida}, {"to", "speaker"},
          {"callback-id", std::to_string (id)}});
  g_signal_emit_by_name (b.element (), "reply-event", ida.c_str (),
      std::to_string (id).c_str (), "done", &ok);
  fail_unless (ok);
  fail_unless_equals_int (gst_promise_wait (promise),
      GST_PROMISE_RESULT_REPLIED);
  reply = gst_promise_get_reply (promise);
  fail_unless_equals_string (gst_structure_get_string (reply, "from"),
      idb.c_str ());
  fail_unless_equals_string (gst_structure_get_string (reply, "data"),
      "{\"data\":\"done\"}");
  gst_promise_unref (promise);
}
END_TEST;

/* Presence and threads at run time: tags, watches both ways, join-thread
 * and leave-thread. */
GST_START_TEST (test_presence_threads)
{
  ServerThread server;
  Member a ("peerjssrc name=p tags=camera " + props (server, "pr"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();
  Client page;
  fail_unless (page.connect (server.ws_url ()));

  /* The page watches the element's tag. */
  page.send (J ("{'type':'presence:watch','to':['camera'],'callback_id':3}"));
  a.wait_message ("peerjs-watch", {{"from", page.id}, {"tag", "camera"},
          {"callback-id", "3"}});

  /* The element watches a tag the page takes later; the page answers. */
  guint wid = 0;
  g_signal_emit_by_name (a.element (), "watch", "printer", &wid);
  fail_unless (wid > 0, "watch refused");
  g_usleep (200 * 1000);
  page.send (J ("{'type':'presence:tag','data':['printer']}"));
  auto w = page.next_of ("presence:watch", 5000);
  fail_unless (w.has_value (), "the held watch did not reach the page");
  fail_unless_equals_string (w->str ("from").c_str (), ida.c_str ());
  fail_unless_equals_string (w->str ("original_to").c_str (), "printer");
  page.send ("{\"to\":\"" + ida + "\",\"callback_response\":"
      + std::to_string (w->num ("callback_id")) + ",\"status\":\"idle\"}");
  std::string r = a.wait_message ("peerjs-event-reply", {{"from", page.id}});
  fail_unless (r.find ("id=(uint)" + std::to_string (wid))
      != std::string::npos, "reply: %s", r.c_str ());
  g_autofree char *watch = nullptr;
  g_object_get (a.element (), "watch", &watch, NULL);
  fail_unless_equals_string (watch, "printer");

  /* Pipeline to pipeline: a watch set as a property reaches the element
   * carrying the tag, which answers it. */
  Member c ("peerjssink name=p watch=camera " + props (server, "pr2"));
  fail_unless (c.play () != GST_STATE_CHANGE_FAILURE);
  std::string idc = c.id ();
  std::string seen = a.wait_message ("peerjs-watch", {{"from", idc},
          {"tag", "camera"}});
  std::string cb = field (seen, "callback-id");
  fail_if (cb.empty (), "the property's watch asks no reply: %s",
      seen.c_str ());
  gboolean answered = FALSE;
  g_signal_emit_by_name (a.element (), "reply-event", idc.c_str (),
      cb.c_str (), "{\"here\":true}", &answered);
  fail_unless (answered);
  std::string back = c.wait_message ("peerjs-event-reply", {{"from", ida}});
  fail_unless (field (back, "data") == "{\"here\":true}", "%s",
      back.c_str ());

  /* Threads at run time. */
  page.send (J ("{'type':'thread:connect','thread':'second','constraints':{}}"));
  gboolean ok = FALSE;
  g_signal_emit_by_name (a.element (), "join-thread", "second", &ok);
  fail_unless (ok);
  auto joined = page.next_of ("thread:connect", 5000);
  fail_unless (joined.has_value (), "the page did not see the join");
  fail_unless_equals_string (joined->str ("from").c_str (), ida.c_str ());
  fail_unless_equals_string (joined->str ("thread").c_str (), "second");
  page.send ("{\"type\":\"thread:connect\",\"to\":\"" + ida
      + "\",\"thread\":\"second\",\"constraints\":{}}");
  a.wait_message ("peerjs-thread-connect", {{"thread", "second"},
          {"member", page.id}});
  g_autofree char *threads = nullptr;
  g_object_get (a.element (), "thread", &threads, NULL);
  fail_unless_equals_string (threads, "pr,second");

  g_signal_emit_by_name (a.element (), "leave-thread", "second", &ok);
  fail_unless (ok);
  auto left = page.next_of ("thread:disconnect", 5000);
  fail_unless (left.has_value (), "the page did not see the element leave");
  fail_unless_equals_string (left->str ("from").c_str (), ida.c_str ());
  g_signal_emit_by_name (a.element (), "leave-thread", "second", &ok);
  fail_if (ok, "left a thread twice");
  g_signal_emit_by_name (a.element (), "join-thread", "", &ok);
  fail_if (ok, "joined a thread without a name");
}
END_TEST;

/* A 50 MB file from one pipeline to another: offered to the thread,
 * accepted by policy, saved under its own name with the same SHA-256, and
 * given out of a file pad byte for byte; chat meanwhile arrives before the
 * file does. */
GST_START_TEST (test_file_gst_to_gst)
{
  ServerThread server;
  TempDir dir;
  std::string path = dir / "big.bin";
  std::string want = random_file (path, 50 * 1000 * 1000);
  g_mkdir ((dir / "in").c_str (), 0700);
  Member b ("peerjssrc name=p accept-files=all download-dir=" + (dir / "in")
      + " " + props (server, "files"));
  Member a ("peerjssink name=p " + props (server, "files"));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id (), idb = b.id ();
  a.wait_message ("peerjs-thread-connect", {{"member", idb}});

  g_autofree char *id = nullptr;
  gint64 t0 = now_ms ();
  g_signal_emit_by_name (a.element (), "offer-file", path.c_str (), nullptr,
      "files", &id);
  fail_unless (id != nullptr, "offer-file refused");
  b.wait_message ("peerjs-file-offer", {{"id", id}, {"from", ida},
          {"name", "big.bin"}});
  /* Chat is not held up behind the transfer: it arrives while the file
   * is still coming. Sent once the transfer is under way (its .part file
   * is there): the first progress message comes after a second, when a
   * fast machine has nearly all of the 50 MB in. */
  fail_unless (wait_until ([&] {
            return count_files (dir / "in", ".part") > 0;
          }, 60000), "the transfer did not start");
  gboolean sent = FALSE;
  g_signal_emit_by_name (a.element (), "send-message", "files", "still here",
      &sent);
  fail_unless (sent);
  b.wait_message ("peerjs-message", {{"from", ida}, {"text", "still here"}});
  fail_unless (b.count ("peerjs-file-complete", {{"id", id}}) == 0,
      "the chat came only after the file");
  std::string done = b.wait_message ("peerjs-file-complete", {{"id", id},
          {"direction", "receive"}}, 120000);
  gint64 ms = now_ms () - t0;
  g_print ("50 MB gst to gst in %" G_GINT64_FORMAT " ms: %.1f MB/s\n", ms,
      50000.0 / MAX (ms, 1));
  std::string got_sha = field (done, "sha256"), got_path = field (done, "path");
  std::string saved = dir / "in/big.bin";
  std::string saved_sha = sha256_of_file (saved);
  fail_unless_equals_string (got_sha.c_str (), want.c_str ());
  fail_unless_equals_string (got_path.c_str (), saved.c_str ());
  fail_unless_equals_string (saved_sha.c_str (), want.c_str ());
  fail_unless_equals_int (count_files (dir / "in", ".part"), 0);
  a.wait_message ("peerjs-file-complete", {{"id", id}, {"direction",
              "send"}});
  fail_unless (b.count ("peerjs-file-progress", {{"id", id}}) >= 1);

  std::string pad = "file_" + ida + "_" + id;
  fail_unless (wait_until ([&] { return !b.output (pad).digest.empty (); }),
      "the file pad %s did not end: %s", pad.c_str (), b.describe ().c_str ());
  std::string pad_sha = b.output (pad).digest;
  fail_unless_equals_string (pad_sha.c_str (), want.c_str ());
  fail_unless (b.errors ().empty (), "%s", b.describe ().c_str ());
}
END_TEST;

/* The file_%u pad: a source without caps (filesrc) links to it, media to
 * their own pads; what goes in is offered under the upstream file's name at
 * EOS and comes out of the receiver's file pad (no download-dir: the pad
 * alone). */
GST_START_TEST (test_file_pads)
{
  for (auto & c : std::vector<std::pair<std::string, std::string>> {
          {"videotestsrc ! peerjssink name=p", "video"},
          {"audiotestsrc ! peerjsbin name=p", "audio"},
          {"videotestsrc ! vp8enc ! peerjssink name=p", "video"},
          {"filesrc location=/dev/null ! peerjssink name=p", "file_0"}}) {
    GError *error = nullptr;
    g_autoptr (GstElement) pipeline = gst_parse_launch (c.first.c_str (),
        &error);
    fail_unless (pipeline != nullptr, "%s", error ? error->message : "?");
    g_autoptr (GstElement) p = gst_bin_get_by_name (GST_BIN (pipeline), "p");
    g_autoptr (GstPad) pad = gst_element_get_static_pad (p,
        c.second.c_str ());
    fail_unless (pad != nullptr, "'%s' did not link to %s", c.first.c_str (),
        c.second.c_str ());
  }

  ServerThread server;
  TempDir dir;
  std::string path = dir / "notes.bin";
  std::string want = random_file (path, 3 * 1000 * 1000);
  Member b ("peerjssrc name=p accept-files=all " + props (server, "fp"));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  std::string idb = b.id ();
  Member a ("filesrc location=" + path + " ! peerjssink name=p "
      + props (server, "fp"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();
  std::string offered = a.wait_message ("peerjs-file-offered",
      {{"pad", "file_0"}, {"name", "notes.bin"}});
  std::string id = field (offered, "id");
  std::string done = b.wait_message ("peerjs-file-complete", {{"id", id},
          {"name", "notes.bin"}}, 60000);
  std::string got_path = field (done, "path");
  fail_unless_equals_string (got_path.c_str (), "");
  std::string pad = "file_" + ida + "_" + id;
  fail_unless (wait_until ([&] { return !b.output (pad).digest.empty (); }),
      "the file pad %s did not end: %s", pad.c_str (), b.describe ().c_str ());
  std::string pad_sha = b.output (pad).digest;
  fail_unless_equals_string (pad_sha.c_str (), want.c_str ());
  /* A member who comes later fetches it too. */
  Member c ("peerjssrc name=p " + props (server, "fp"));
  fail_unless (c.play () != GST_STATE_CHANGE_FAILURE);
  c.wait_message ("peerjs-thread-connect", {{"member", ida}});
  gboolean ok = FALSE;
  g_signal_emit_by_name (c.element (), "request-file", ida.c_str (),
      id.c_str (), &ok);
  fail_if (ok, "requested a file never offered to it");
}
END_TEST;

/* Cancel from either side, mid-transfer: both ends get peerjs-file-error,
 * and nothing is left at the final name or under the temporary one. */
GST_START_TEST (test_file_cancel)
{
  ServerThread server;
  TempDir dir;
  std::string path = dir / "big.bin";
  const guint64 size = 200 * 1000 * 1000;
  random_file (path, size);
  g_mkdir ((dir / "in").c_str (), 0700);
  Member b ("peerjssrc name=p download-dir=" + (dir / "in") + " "
      + props (server, "cancel"));
  Member a ("peerjssink name=p " + props (server, "cancel"));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id (), idb = b.id ();
  a.wait_message ("peerjs-thread-connect", {{"member", idb}});

  for (bool receiver_cancels : { true, false }) {
    g_autofree char *id = nullptr;
    g_signal_emit_by_name (a.element (), "offer-file", path.c_str (),
        idb.c_str (), nullptr, &id);
    fail_unless (id != nullptr);
    b.wait_message ("peerjs-file-offer", {{"id", id}});
    gboolean ok = FALSE;
    g_signal_emit_by_name (b.element (), "request-file", ida.c_str (), id,
        &ok);
    fail_unless (ok, "request-file refused");
    b.wait_message ("peerjs-file-progress", {{"id", id}}, 30000);
    Member & who = receiver_cancels ? b : a;
    gint64 t0 = now_ms ();
    g_signal_emit_by_name (who.element (), "cancel-file", id, &ok);
    fail_unless (ok);
    std::string at_b = b.wait_message ("peerjs-file-error", {{"id", id}});
    std::string at_a = a.wait_message ("peerjs-file-error", {{"id", id}});
    gint64 ms = now_ms () - t0;
    g_print ("cancelled by the %s: both sides ended in %" G_GINT64_FORMAT
        " ms\n", receiver_cancels ? "receiver" : "sender", ms);
    /* The other side stops at once: the sender does not go on sending
     * the rest of the file to a receiver that cancelled. */
    fail_unless (ms < 1500, "the %s heard of the cancel after %"
        G_GINT64_FORMAT " ms", receiver_cancels ? "sender" : "receiver", ms);
    for (Member * m : { &a, &b }) {
      std::string last = m->find ("peerjs-file-progress", {{"id", id}});
      if (last.empty ())
        continue;
      g_autoptr (GstStructure) s = gst_structure_from_string (last.c_str (),
          nullptr);
      guint64 bytes = 0;
      fail_unless (s && gst_structure_get_uint64 (s, "bytes", &bytes));
      fail_unless (bytes < size, "%s: the whole file went after the cancel: "
          "%s", m == &a ? "sender" : "receiver", last.c_str ());
    }
    if (receiver_cancels) {
      std::string why = field (at_a, "message");
      fail_unless (why.find ("refused") != std::string::npos, "%s",
          at_a.c_str ());
    }
    fail_unless (b.count ("peerjs-file-complete", {{"id", id}}) == 0);
    fail_unless (!g_file_test ((dir / "in/big.bin").c_str (),
            G_FILE_TEST_EXISTS), "a cancelled file is at its final name");
    fail_unless (wait_until ([&] {
              return count_files (dir / "in", ".part") == 0; }),
        "the temporary file stayed");
    if (!receiver_cancels) {
      std::string why = field (at_b, "message");
      fail_unless (why.find ("cancelled") != std::string::npos, "%s",
          at_b.c_str ());
    }
  }
}
END_TEST;

/* The sender's process is killed mid-transfer: the receiver posts an error
 * for that file, keeps nothing, and goes on. */
GST_START_TEST (test_file_sender_gone)
{
  ServerThread server;
  TempDir dir;
  std::string path = dir / "big.bin";
  random_file (path, 200 * 1000 * 1000);
  g_mkdir ((dir / "in").c_str (), 0700);
  Member b ("peerjssrc name=p accept-files=all download-dir=" + (dir / "in")
      + " " + props (server, "gone"));
  fail_unless (b.play () != GST_STATE_CHANGE_FAILURE);
  /* The sender keeps the stream in a temporary file, which its killed
   * process cannot remove: it goes in the case's directory. */
  std::string cmd = "exec env TMPDIR=" + dir.path () + " gst-launch-1.0 -q "
      "filesrc location=" + path + " ! peerjssink " + props (server, "gone");
  GPid pid = 0;
  const char *argv[] = { "sh", "-c", cmd.c_str (), nullptr };
  fail_unless (g_spawn_async (nullptr, (char **) argv, nullptr,
          G_SPAWN_SEARCH_PATH, nullptr, nullptr, &pid, nullptr));
  std::string progress = b.wait_message ("peerjs-file-progress", {}, 30000);
  std::string id = field (progress, "id");
  kill (pid, SIGKILL);
  waitpid (pid, nullptr, 0);
  g_spawn_close_pid (pid);
  std::string error = b.wait_message ("peerjs-file-error", {{"id", id}},
      30000);
  fail_unless (b.count ("peerjs-file-complete", {{"id", id}}) == 0);
  fail_unless (!g_file_test ((dir / "in/big.bin").c_str (),
          G_FILE_TEST_EXISTS), "a broken file is at its final name");
  fail_unless_equals_int (count_files (dir / "in", ".part"), 0);
}
END_TEST;

/* A receiver that stops reading (its process stopped): the sender gives
 * the transfer up with an error, and goes on. A request for a file never
 * offered is answered with file:cancel and an error at the offerer. */
GST_START_TEST (test_file_stalled_and_unknown)
{
  ServerThread server;
  TempDir dir;
  std::string path = dir / "big.bin";
  random_file (path, 300 * 1000 * 1000);
  Member a ("peerjssink name=p " + props (server, "stall"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();

  Client page;
  join_page (page, server, a, "stall");
  page.send ("{\"type\":\"file:request\",\"to\":\"" + ida
      + "\",\"id\":\"nosuch\"}");
  auto refused = page.next_of ("file:cancel", 5000);
  fail_unless (refused.has_value (), "no file:cancel for a file not on offer");
  fail_unless_equals_string (refused->str ("id").c_str (), "nosuch");
  a.wait_message ("peerjs-file-error", {{"id", "nosuch"}, {"member", page.id},
          {"direction", "send"}});

  std::string cmd = "exec gst-launch-1.0 -q peerjssrc accept-files=all "
      "download-dir=" + dir.path () + " " + props (server, "stall")
      + " ! fakesink async=false";
  GPid pid = 0;
  const char *argv[] = { "sh", "-c", cmd.c_str (), nullptr };
  fail_unless (g_spawn_async (nullptr, (char **) argv, nullptr,
          G_SPAWN_SEARCH_PATH, nullptr, nullptr, &pid, nullptr));
  fail_unless (wait_until ([&] {
            return a.count ("peerjs-thread-connect", {{"thread", "stall"}}) >= 2;
          }), "the receiving process did not join: %s", a.describe ().c_str ());
  g_autofree char *id = nullptr;
  g_signal_emit_by_name (a.element (), "offer-file", path.c_str (), nullptr,
      "stall", &id);
  fail_unless (id != nullptr);
  a.wait_message ("peerjs-file-progress", {{"id", id}}, 30000);
  kill (pid, SIGSTOP);
  gint64 t0 = now_ms ();
  std::string error = a.wait_message ("peerjs-file-error", {{"id", id}},
      60000);
  g_print ("the sender gave up %" G_GINT64_FORMAT " ms after the receiver "
      "stopped: %s\n", now_ms () - t0, field (error, "message").c_str ());
  kill (pid, SIGKILL);
  waitpid (pid, nullptr, 0);
  g_spawn_close_pid (pid);
  fail_unless (a.count ("peerjs-file-complete", {{"id", id}}) == 0);
  /* The element goes on: a newcomer gets its chat. */
  Client late;
  join_page (late, server, a, "stall");
  gboolean sent = FALSE;
  g_signal_emit_by_name (a.element (), "send-message", "stall", "after",
      &sent);
  fail_unless (sent);
  auto chat = late.next_of ("message", 5000);
  fail_unless (chat.has_value () && chat->str ("data") == "after");
}
END_TEST;

/* An offer whose answer never comes (lost when a connection dropped) is
 * sent again. */
GST_START_TEST (test_offer_resent)
{
  ServerThread server;
  /* A member with a smaller id than the element's, so that the element
   * makes the offers: ids are random, so new ones are drawn, the member's
   * and the element's in turn, until they fit. */
  auto quiet = std::make_unique<Client> ();
  fail_unless (quiet->connect (server.ws_url ()));
  auto src = std::make_unique<Member> (receiver (server, "resend"));
  fail_unless (src->play () != GST_STATE_CHANGE_FAILURE);
  for (int i = 0; i < 40 && !(quiet->id < src->id ()); i++) {
    if (i % 2) {
      src = std::make_unique<Member> (receiver (server, "resend"));
      fail_unless (src->play () != GST_STATE_CHANGE_FAILURE);
    } else {
      quiet = std::make_unique<Client> ();
      fail_unless (quiet->connect (server.ws_url ()));
    }
  }
  fail_unless (quiet->id < src->id (), "no fitting ids in 40 tries");
  quiet->send (J ("{'type':'thread:connect','thread':'resend',"
          "'constraints':{'video':true}}"));
  auto first = quiet->next_of ("stream:offer", 10000);
  fail_unless (first.has_value (), "no offer from the element");
  gint64 t0 = now_ms ();
  auto again = quiet->next_of ("stream:offer", 10000);
  fail_unless (again.has_value (), "the unanswered offer was not sent again");
  fail_unless (now_ms () - t0 >= 2000, "offered again after only %"
      G_GINT64_FORMAT " ms", now_ms () - t0);
}
END_TEST;

/* NULL at any moment, negotiation included, returns promptly. */
GST_START_TEST (test_stop_anytime)
{
  ServerThread server;
  for (int delay : { 0, 30, 120, 300, 700 }) {
    Member sink (publisher (server, "stop"));
    Member src (receiver (server, "stop"));
    sink.play ();
    src.play ();
    g_usleep (delay * 1000);
    gint64 a = src.stop ();
    gint64 b = sink.stop ();
    fail_unless (a < 3000 && b < 3000, "stopping after %d ms took %"
        G_GINT64_FORMAT " and %" G_GINT64_FORMAT " ms", delay, a, b);
  }
}
END_TEST;

/* Sets `m` to NULL on a thread of its own and returns how long that took,
 * in ms; a state change still going after `limit_ms` fails the case at
 * once rather than hold up the suite. */
gint64
stop_within (Member & m, int limit_ms)
{
  struct Done
  {
    std::mutex lock;
    std::condition_variable cv;
    bool over = false;
  };
  auto done = std::make_shared<Done> ();
  gint64 t0 = now_ms ();
  std::thread stopper ([&m, done] {
    m.stop ();
    std::lock_guard<std::mutex> guard (done->lock);
    done->over = true;
    done->cv.notify_all ();
  });
  bool over;
  {
    std::unique_lock<std::mutex> guard (done->lock);
    over = done->cv.wait_for (guard, std::chrono::milliseconds (limit_ms),
        [&] { return done->over; });
  }
  if (!over)
    stopper.detach ();
  fail_unless (over, "set_state (NULL) still waits after %d ms", limit_ms);
  stopper.join ();
  return now_ms () - t0;
}

/* NULL while a file is being sent (or just after it was cancelled)
 * returns promptly, to a receiver that reads and to one that stopped (its
 * process stopped): the transfer ends and sctpenc's wait for room in the
 * association gives up before the state change waits on it. */
GST_START_TEST (test_stop_while_sending)
{
  ServerThread server;
  TempDir dir;
  std::string path = dir / "big.bin";
  random_file (path, 100 * 1000 * 1000);
  g_mkdir ((dir / "in").c_str (), 0700);
  std::string cmd = "exec gst-launch-1.0 -q peerjssrc accept-files=all "
      "download-dir=" + (dir / "in") + " " + props (server, "stopfiles")
      + " ! fakesink async=false";
  GPid pid = 0;
  const char *argv[] = { "sh", "-c", cmd.c_str (), nullptr };
  fail_unless (g_spawn_async (nullptr, (char **) argv, nullptr,
          G_SPAWN_SEARCH_PATH, nullptr, nullptr, &pid, nullptr));
  std::shared_ptr<void> reap (nullptr, [pid] (void *) {
    kill (pid, SIGKILL);
    waitpid (pid, nullptr, 0);
    g_spawn_close_pid (pid);
  });
  /* Whether the receiver is stopped, and whether the sender cancelled the
   * transfer just before (its channel then still has data to push). */
  for (auto stop : std::vector<std::pair<bool, bool>> { {true, false},
          {false, false}, {true, true}, {false, true}, {true, false}}) {
    bool stall = stop.first, cancel = stop.second;
    Member a ("peerjssink name=p " + props (server, "stopfiles"));
    fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
    a.wait_message ("peerjs-thread-connect", {{"thread", "stopfiles"}});
    g_autofree char *id = nullptr;
    g_signal_emit_by_name (a.element (), "offer-file", path.c_str (), nullptr,
        "stopfiles", &id);
    fail_unless (id != nullptr);
    a.wait_message ("peerjs-file-progress", {{"id", id}}, 30000);
    if (stall) {
      kill (pid, SIGSTOP);
      /* Until the association's buffer is full and sctpenc waits. */
      g_usleep (1000 * 1000);
    }
    if (cancel) {
      gboolean ok = FALSE;
      g_signal_emit_by_name (a.element (), "cancel-file", id, &ok);
      fail_unless (ok);
    }
    gint64 ms = stop_within (a, 5000);
    g_print ("NULL while sending%s%s: %" G_GINT64_FORMAT " ms\n",
        stall ? " to a stopped receiver" : "", cancel ? ", cancelled" : "",
        ms);
    /* It was stopped mid-transfer, and says so. */
    std::string error = a.find ("peerjs-file-error", {{"id", id},
            {"message", cancel ? "cancelled" : "the element stopped"}});
    fail_unless (!error.empty () && a.count ("peerjs-file-complete") == 0,
        "the transfer did not end as the element stopped: %s",
        a.describe ().c_str ());
    if (stall)
      kill (pid, SIGCONT);
  }
}
END_TEST;

/* An HS256 token as an operator would mint it: `name`, expiring `ttl_s`
 * from now (negative: expired), with extra claims as a JSON object. */
static std::string
mint_token (const std::string & key, const std::string & name, long ttl_s,
    const std::string & claims = "")
{
  g_autofree char *quoted = g_strescape (name.c_str (), nullptr);
  return peerjs::test::mint_jwt (JWT_ALG_HS256, key, "{\"name\":\"" +
      std::string (quoted) + "\",\"exp\":" + std::to_string (
          g_get_real_time () / G_USEC_PER_SEC + ttl_s) + "}", claims);
}

/* The server's count of upgrades refused for their token (/metrics). */
static int
refused_for_token (ServerThread & server)
{
  std::string body;
  fail_unless_equals_int (peerjs::test::http_get (server.http_url ("/metrics"),
          &body), 200);
  const std::string key = "peerjs_connections_refused_total{reason=\"token\"} ";
  std::size_t at = body.find (key);
  fail_unless (at != std::string::npos, "no %s in /metrics", key.c_str ());
  return std::atoi (body.c_str () + at + key.size ());
}

/* Auth tokens: a pipeline presents auth-token and joins its thread, where
 * a page with a token of its own sees it under its token's name; a thread
 * its token does not grant is refused with a warning. A bad, expired or
 * missing token gets RESOURCE/NOT_AUTHORIZED at once, without the token in
 * the message, and is not tried again. */
GST_START_TEST (test_auth_token)
{
  const std::string key = "peerjs element test key, 32 bytes or more";
  g_autofree char *dir = g_dir_make_tmp ("peerjs-auth-XXXXXX", nullptr);
  fail_unless (dir != nullptr);
  std::string secret = std::string (dir) + "/secret";
  fail_unless (g_file_set_contents (secret.c_str (), key.c_str (), -1,
          nullptr));
  auto options = ServerThread::default_options ();
  options.auth_secret_file = secret;
  ServerThread server (options);

  std::string token = mint_token (key, "camera 1", 600,
      "{\"threads\":[\"auth\"]}");
  Member a ("peerjssrc name=p auth-token=\"" + token + "\" "
      + props (server, "auth"));
  fail_unless (a.play () != GST_STATE_CHANGE_FAILURE);
  std::string ida = a.id ();
  Client page;
  fail_unless (page.connect (server.ws_url (), "token="
          + mint_token (key, "Alice", 600)), "a page with a good token");
  page.send (J ("{'type':'thread:connect','thread':'auth','constraints':{}}"));
  a.wait_message ("peerjs-thread-connect", {{"member", page.id},
          {"thread", "auth"}});
  auto answer = page.next_of ("thread:connect", 5000);
  fail_unless (answer.has_value (), "the page did not see the pipeline");
  fail_unless_equals_string (answer->str ("from").c_str (), ida.c_str ());
  fail_unless_equals_string (answer->str ("from_name").c_str (), "camera 1");

  gboolean joined = FALSE;
  g_signal_emit_by_name (a.element (), "join-thread", "elsewhere", &joined);
  fail_unless (joined);
  bool warned = wait_until ([&] {
    for (auto & e : a.errors ())
      if (e.find ("warning gst-resource-error-quark/" + std::to_string
              (GST_RESOURCE_ERROR_NOT_AUTHORIZED)) == 0)
        return true;
    return false;
  }, 5000);
  fail_unless (warned, "no NOT_AUTHORIZED warning for a thread the token "
      "does not grant; messages:\n%s", a.describe ().c_str ());
  fail_unless (a.find ("peerjs-server-error", {{"code", "forbidden"},
          {"ref-type", "thread:connect"}, {"thread", "elsewhere"}}) != "");
  /* A thread refused for the token is dropped, from `thread` too. */
  auto thread_prop = [&a] {
    g_autofree char *t = nullptr;
    g_object_get (a.element (), "thread", &t, NULL);
    return std::string (t ? t : "");
  };
  fail_unless (wait_until ([&] { return thread_prop () == "auth"; }, 5000),
      "'thread' is '%s', not 'auth'", thread_prop ().c_str ());

  /* Every reconnection presents the token set now: a renewed one resumes
   * the session, one the server does not take ends it. */
  auto errors = [&a] {
    int n = 0;
    for (auto & e : a.errors ())
      n += e.find ("error ") == 0;
    return n;
  };
  g_object_set (a.element (), "auth-token", mint_token (key, "camera 1", 600,
          "{\"threads\":[\"auth\"]}").c_str (), NULL);
  server.stop ();
  server.start ();
  a.wait_message ("peerjs-socket-resumed", {{"id", ida}});
  fail_unless (errors () == 0, "errors with a renewed token:\n%s",
      a.describe ().c_str ());
  /* Rejoining after the restart did not ask for the refused thread again:
   * a thread refused after the rejoin is the next one refused. */
  g_signal_emit_by_name (a.element (), "join-thread", "later", &joined);
  a.wait_message ("peerjs-server-error", {{"code", "forbidden"},
          {"thread", "later"}});
  fail_unless_equals_int (a.count ("peerjs-server-error", {{"code",
                  "forbidden"}, {"thread", "elsewhere"}}), 1);
  g_object_set (a.element (), "auth-token", mint_token (key, "camera 1", -1)
      .c_str (), NULL);
  server.stop ();
  server.start ();
  fail_unless (wait_until ([&] { return errors () == 1; }, 5000),
      "no error for an expired token on reconnection:\n%s",
      a.describe ().c_str ());
  fail_unless (a.errors ().back ().find ("error gst-resource-error-quark/"
          + std::to_string (GST_RESOURCE_ERROR_NOT_AUTHORIZED)) == 0,
      "wanted NOT_AUTHORIZED, got %s", a.errors ().back ().c_str ());

  struct Bad
  {
    const char *what;
    std::string token;
  };
  Bad bad[] = {
    {"signed with another key", mint_token ("another key, also 32 bytes long",
            "Mallory", 600)},
    {"expired", mint_token (key, "Bob", -60)},
    {"missing", ""},
  };
  int refused = refused_for_token (server);
  for (const Bad & b : bad) {
    Member m ("peerjssink name=p " + props (server, "auth"));
    if (!b.token.empty ())
      g_object_set (m.element (), "auth-token", b.token.c_str (), NULL);
    gint64 t0 = now_ms ();
    m.play ();
    fail_unless (wait_until ([&] { return !m.errors ().empty (); }, 5000),
        "no error for a token %s", b.what);
    std::string e = m.errors ().front ();
    std::string want = "error gst-resource-error-quark/"
        + std::to_string (GST_RESOURCE_ERROR_NOT_AUTHORIZED);
    fail_unless (e.find (want) == 0 && e.find ("auth token") != std::string::npos
        && e.find (server.ws_url ()) != std::string::npos,
        "token %s: wanted RESOURCE/NOT_AUTHORIZED about the auth token, "
        "naming the URL, got %s", b.what, e.c_str ());
    fail_unless (b.token.empty () || e.find (b.token) == std::string::npos,
        "the error shows the token: %s", e.c_str ());
    fail_unless (now_ms () - t0 < 3000, "the error took %" G_GINT64_FORMAT
        " ms", now_ms () - t0);
    refused++;
    /* A retry would come after 250 ms: give it more than that. */
    g_usleep (1000 * 1000);
    fail_unless_equals_int (refused_for_token (server), refused);
    fail_unless_equals_int ((int) m.errors ().size (), 1);
  }
  g_unlink (secret.c_str ());
  g_rmdir (dir);
}
END_TEST;

/* Setting auth-token while the element runs renews the token on the open
 * connection: the session outlives the first token's exp, under the new
 * token's name. An element that does not renew is ended at exp (close
 * 4004) and, reconnecting with the expired token, refused. */
GST_START_TEST (test_auth_renewal)
{
  const std::string key = "peerjs element test key, 32 bytes or more";
  g_autofree char *dir = g_dir_make_tmp ("peerjs-renew-XXXXXX", nullptr);
  fail_unless (dir != nullptr);
  std::string secret = std::string (dir) + "/secret";
  fail_unless (g_file_set_contents (secret.c_str (), key.c_str (), -1,
          nullptr));
  auto options = ServerThread::default_options ();
  options.auth_secret_file = secret;
  ServerThread server (options);

  Member renewing ("peerjssrc name=p auth-token=\"" + mint_token (key, "cam",
          3) + "\" " + props (server, "renew"));
  Member lapsing ("peerjssrc name=p auth-token=\"" + mint_token (key, "old",
          3) + "\" " + props (server, "renew"));
  fail_unless (renewing.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (lapsing.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = renewing.id ();
  lapsing.id ();
  g_object_set (renewing.element (), "auth-token", mint_token (key,
          "cam renewed", 600).c_str (), NULL);

  /* Both first tokens expire within the same second. */
  std::string lost = lapsing.wait_message ("peerjs-socket-disconnect");
  fail_unless (lost.find ("4004") != std::string::npos, "%s", lost.c_str ());
  const std::string refused = "error gst-resource-error-quark/"
      + std::to_string (GST_RESOURCE_ERROR_NOT_AUTHORIZED);
  fail_unless (wait_until ([&] {
        for (auto & e : lapsing.errors ())
          if (e.find (refused) == 0)
            return true;
        return false;
      }, 5000), "no NOT_AUTHORIZED error for the expired token on "
      "reconnection:\n%s", lapsing.describe ().c_str ());
  fail_unless_equals_int (renewing.count ("peerjs-socket-disconnect"), 0);
  fail_unless (renewing.errors ().empty (), "%s",
      renewing.describe ().c_str ());

  /* The renewed session goes on, under its new name. */
  Client page;
  fail_unless (page.connect (server.ws_url (), "token="
          + mint_token (key, "page", 600)));
  page.send (J ("{'type':'thread:connect','thread':'renew','constraints':{}}"));
  auto answer = page.next_of ("thread:connect", 5000);
  fail_unless (answer.has_value (), "the renewed element did not answer");
  fail_unless_equals_string (answer->str ("from").c_str (), id.c_str ());
  fail_unless_equals_string (answer->str ("from_name").c_str (),
      "cam renewed");
  g_unlink (secret.c_str ());
  g_rmdir (dir);
}
END_TEST;

/* gst-inspect-1.0 tells the whole story: every property documented. */
GST_START_TEST (test_inspect)
{
  for (const char *name : { "peerjssink", "peerjssrc", "peerjsbin" }) {
    g_autoptr (GstElement) e = gst_element_factory_make (name, nullptr);
    fail_unless (e != nullptr, "no %s", name);
    guint n = 0;
    g_autofree GParamSpec **specs = g_object_class_list_properties (
        G_OBJECT_GET_CLASS (e), &n);
    for (guint i = 0; i < n; i++) {
      const char *blurb = g_param_spec_get_blurb (specs[i]);
      fail_unless (blurb && strlen (blurb) > 10, "%s::%s is not documented",
          name, specs[i]->name);
    }
    g_autofree char *server = nullptr;
    g_object_get (e, "server", &server, NULL);
    fail_unless_equals_string (server, "ws://127.0.0.1:5000/peerjs");
  }
}
END_TEST;

/* ------------------------------------------------------------------ */
/* TURN: a real coturn on loopback, credentials from the greeting. */

namespace {

/* A free port on 127.0.0.1, for UDP and TCP both (coturn listens on
 * both). */
guint
free_port ()
{
  for (int tries = 0; tries < 20; tries++) {
    g_autoptr (GSocket) udp = g_socket_new (G_SOCKET_FAMILY_IPV4,
        G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, nullptr);
    g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (
        G_SOCKET_FAMILY_IPV4);
    g_autoptr (GSocketAddress) any = g_inet_socket_address_new (lo, 0);
    if (!g_socket_bind (udp, any, FALSE, nullptr))
      continue;
    g_autoptr (GSocketAddress) bound = g_socket_get_local_address (udp,
        nullptr);
    guint port = g_inet_socket_address_get_port (
        G_INET_SOCKET_ADDRESS (bound));
    g_autoptr (GSocket) tcp = g_socket_new (G_SOCKET_FAMILY_IPV4,
        G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, nullptr);
    g_autoptr (GSocketAddress) same = g_inet_socket_address_new (lo, port);
    if (g_socket_bind (tcp, same, FALSE, nullptr))
      return port;
  }
  fail ("no free port on 127.0.0.1");
  return 0;
}

/* coturn's turnserver (turn.h), run by the test in the foreground, on
 * 127.0.0.1, with loopback peers allowed. */
class TurnServer
{
public:
  static bool installed ()
  {
    return peerjs::test::TurnFiles::installed ();
  }

  explicit TurnServer (const std::string & secret)
    : port (free_port ()),
      files_ (secret, "127.0.0.1", port, "allow-loopback-peers\n")
  {
    fail_unless (files_.ok ());
    std::vector<std::string> args = files_.argv ();
    const char *argv[] = {args[0].c_str (), args[1].c_str (),
      args[2].c_str (), nullptr};
    g_autoptr (GError) error = nullptr;
    fail_unless (g_spawn_async (nullptr, (char **) argv, nullptr,
            (GSpawnFlags) (G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD
                | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL),
            nullptr, nullptr, &pid_, &error), "turnserver: %s",
        error ? error->message : "?");
    /* Ready when it takes TCP connections on its port. */
    bool up = wait_until ([&] {
      g_autoptr (GSocketClient) c = g_socket_client_new ();
      g_autoptr (GSocketConnection) conn = g_socket_client_connect_to_host (
          c, ("127.0.0.1:" + std::to_string (port)).c_str (), 0, nullptr,
          nullptr);
      if (!conn)
        g_usleep (50000);
      return conn != nullptr;
    }, 10000);
    fail_unless (up, "turnserver did not listen on 127.0.0.1:%u; log:\n%s",
        port, log_text ().c_str ());
  }

  ~TurnServer ()
  {
    kill (pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && waitpid (pid_, &status, WNOHANG) == 0; i++)
      g_usleep (20000);
    if (waitpid (pid_, &status, WNOHANG) == 0) {
      kill (pid_, SIGKILL);
      waitpid (pid_, &status, 0);
    }
    g_spawn_close_pid (pid_);
  }

  std::string log_text () const
  {
    return files_.log_text ();
  }

  guint port = 0;

private:
  peerjs::test::TurnFiles files_;
  GPid pid_ = 0;
};

peerjs::ServerOptions
turn_options (const TurnServer & turn, const std::string & secret)
{
  peerjs::ServerOptions o = ServerThread::default_options ();
  o.ice.turn_urls = {"turn:127.0.0.1:" + std::to_string (turn.port)};
  o.ice.turn_secret = secret;
  return o;
}

/* The candidate types webrtcbin's get-stats reports for `member`'s
 * connection: "local-candidate" and "remote-candidate" entries. */
std::set<std::string>
candidate_types (Member & m, const std::string & member, const char *which)
{
  std::set<std::string> types;
  g_autoptr (GstElement) webrtc = gst_bin_get_by_name (GST_BIN (m.element ()),
      ("webrtc-" + member).c_str ());
  if (!webrtc)
    return types;
  GstPromise *promise = gst_promise_new ();
  g_signal_emit_by_name (webrtc, "get-stats", nullptr, promise);
  if (gst_promise_wait (promise) == GST_PROMISE_RESULT_REPLIED) {
    const GstStructure *reply = gst_promise_get_reply (promise);
    std::pair<std::set<std::string> *, const char *> want (&types, which);
    gst_structure_foreach (reply, [] (GQuark, const GValue * v,
            gpointer data) -> gboolean {
          auto *t = static_cast<std::pair<std::set<std::string> *,
              const char *> *> (data);
          if (!GST_VALUE_HOLDS_STRUCTURE (v))
            return TRUE;
          const GstStructure *s = gst_value_get_structure (v);
          bool local = gst_structure_has_name (s, "local-candidate");
          bool remote = gst_structure_has_name (s, "remote-candidate");
          if ((local && g_str_equal (t->second, "local"))
              || (remote && g_str_equal (t->second, "remote"))) {
            const char *ct = gst_structure_get_string (s, "candidate-type");
            if (ct)
              t->first->insert (ct);
          }
          return TRUE;
        }, &want);
  }
  gst_promise_unref (promise);
  return types;
}

std::string
joined (const std::set<std::string> & s)
{
  std::string out;
  for (auto & e : s)
    out += (out.empty () ? "" : ",") + e;
  return out;
}

}  // namespace

/* Credentials minted by the server from --turn-secret reach the elements
 * in the greeting, coturn accepts them, and with ice-transport-policy=relay
 * the media goes through the relay although a direct path exists. */
GST_START_TEST (test_turn_relay)
{
  if (!TurnServer::installed ()) {
    g_print ("test_turn_relay: SKIP: turnserver (Debian's coturn) is not "
        "installed\n");
    return;
  }
  const std::string secret = "elements-turn-secret";
  TurnServer turn (secret);
  peerjs::ServerOptions o = turn_options (turn, secret);
  o.ice.stun_urls = {"stun:127.0.0.1:" + std::to_string (turn.port)};
  ServerThread server (o);
  Member sink (publisher (server, "relayed", "ball", false,
          "peerjssink ice-transport-policy=relay"));
  Member src (receiver (server, "relayed") + " ice-transport-policy=relay");
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id (), rid = src.id ();
  check_video (src, "video_" + id, 30);
  fail_unless (src.errors ().empty (), "%s", src.describe ().c_str ());

  /* Only relay candidates, on both ends of both sides. */
  for (auto side : {std::make_pair (&src, id), std::make_pair (&sink, rid)})
    for (const char *which : {"local", "remote"}) {
      std::set<std::string> types;
      wait_until ([&] {
        types = candidate_types (*side.first, side.second, which);
        return !types.empty ();
      });
      fail_unless (types == std::set<std::string> {"relay"},
          "%s candidates of %s: %s", which, side.second.c_str (),
          joined (types).c_str ());
    }
  /* The greeting's STUN server too, as webrtcbin takes it. */
  g_autoptr (GstElement) webrtc = gst_bin_get_by_name (GST_BIN (src.element ()),
      ("webrtc-" + id).c_str ());
  fail_unless (webrtc != nullptr);
  g_autofree char *stun = nullptr;
  g_object_get (webrtc, "stun-server", &stun, NULL);
  assert_str (stun, "stun://127.0.0.1:" + std::to_string (turn.port));
  /* coturn allocated for both sessions, with usernames from greetings. */
  std::string log = turn.log_text ();
  for (const std::string &who : {id, rid})
    fail_unless (log.find (":" + who + ">") != std::string::npos,
        "coturn never saw a username of session %s:\n%s", who.c_str (),
        log.c_str ());
}
END_TEST;

/* The server and coturn disagree on the secret: the member that allows
 * only relays fails its connection with a reason naming TURN, the one
 * that allows all warns and goes on directly, and the rest of the room
 * does not notice. */
GST_START_TEST (test_turn_wrong_secret)
{
  if (!TurnServer::installed ()) {
    g_print ("test_turn_wrong_secret: SKIP: turnserver (Debian's coturn) is "
        "not installed\n");
    return;
  }
  TurnServer turn ("the-right-secret");
  ServerThread server (turn_options (turn, "a-wrong-secret"));
  Member sink (publisher (server, "misconfigured", "ball", false));
  Member direct (receiver (server, "misconfigured"));
  Member relayed (receiver (server, "misconfigured")
      + " ice-transport-policy=relay");
  for (Member *m : {&sink, &direct, &relayed})
    fail_unless (m->play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();

  gint64 t0 = now_ms ();
  std::string failed = relayed.wait_message ("peerjs-peer-failed",
      {{"member", id}}, 20000);
  g_print ("test_turn_wrong_secret: after %" G_GINT64_FORMAT " ms: %s\n",
      now_ms () - t0, failed.c_str ());
  fail_unless (failed.find ("TURN") != std::string::npos
      && failed.find ("relay") != std::string::npos
      && failed.find ("127.0.0.1:" + std::to_string (turn.port))
      != std::string::npos, "%s", failed.c_str ());
  fail_unless (failed.find ("a-wrong-secret") == std::string::npos);
  bool warned = false;
  for (const std::string &e : relayed.errors ())
    warned = warned || (e.find ("warning") == 0 && e.find ("TURN")
        != std::string::npos);
  fail_unless (warned, "no bus warning naming TURN:\n%s",
      relayed.describe ().c_str ());
  fail_if (relayed.output ("video_" + id).buffers > 0);

  /* The others: media flows directly, with a warning that no relay came. */
  check_video (direct, "video_" + id, 30);
  int before = direct.output ("video_" + id).buffers;
  direct.wait_buffers ("video_" + id, 15, before);
  fail_unless (direct.count ("peerjs-peer-failed") == 0, "%s",
      direct.describe ().c_str ());
  bool direct_warned = false;
  for (const std::string &e : direct.errors ())
    direct_warned = direct_warned || e.find ("No TURN relay") != std::string::npos;
  fail_unless (direct_warned, "%s", direct.describe ().c_str ());
  /* coturn refused the credentials. */
  fail_unless (turn.log_text ().find ("401") != std::string::npos, "%s",
      turn.log_text ().c_str ());
}
END_TEST;

/* The application's own TURN servers (turn-servers, as gst-launch takes an
 * array) take the place of the greeting's, here wrong ones. */
GST_START_TEST (test_turn_servers_property)
{
  if (!TurnServer::installed ()) {
    g_print ("test_turn_servers_property: SKIP: turnserver (Debian's "
        "coturn) is not installed\n");
    return;
  }
  const std::string secret = "the-application-knows";
  TurnServer turn (secret);
  peerjs::ServerOptions o = turn_options (turn, "the-server-is-wrong");
  o.ice.stun_urls = {"stun:127.0.0.1:" + std::to_string (turn.port)};
  ServerThread server (o);
  /* Credentials as a TURN REST API service would mint them for the
   * application, escaped for the URI. */
  std::string user = std::to_string (g_get_real_time () / G_USEC_PER_SEC
      + 3600) + ":application";
  g_autofree char *u = g_uri_escape_string (user.c_str (), nullptr, FALSE);
  g_autofree char *pw = g_uri_escape_string (peerjs::test::coturn_password (secret,
          user).c_str (), nullptr, FALSE);
  std::string hostport = "127.0.0.1:" + std::to_string (turn.port);
  std::string list = "turn-servers=<\"turn://nobody:nothing@127.0.0.1:9\","
      "\"turn://" + std::string (u) + ":" + pw + "@" + hostport + "\"> "
      "ice-transport-policy=relay";
  Member sink (publisher (server, "own-turn", "ball", false,
          "peerjssink " + list));
  Member src (receiver (server, "own-turn") + " " + list
      + " stun-server=stun://127.0.0.1:9");
  /* The property reads back as it was set. */
  GValue v = G_VALUE_INIT;
  g_value_init (&v, GST_TYPE_ARRAY);
  g_object_get_property (G_OBJECT (src.element ()), "turn-servers", &v);
  fail_unless_equals_int (gst_value_array_get_size (&v), 2);
  g_value_unset (&v);
  fail_unless (sink.play () != GST_STATE_CHANGE_FAILURE);
  fail_unless (src.play () != GST_STATE_CHANGE_FAILURE);
  std::string id = sink.id ();
  check_video (src, "video_" + id, 30);
  std::set<std::string> types;
  wait_until ([&] {
    types = candidate_types (src, id, "local");
    return !types.empty ();
  });
  fail_unless (types == std::set<std::string> {"relay"}, "%s",
      joined (types).c_str ());
  g_autoptr (GstElement) webrtc = gst_bin_get_by_name (GST_BIN (src.element ()),
      ("webrtc-" + id).c_str ());
  fail_unless (webrtc != nullptr);
  g_autofree char *stun = nullptr;
  g_object_get (webrtc, "stun-server", &stun, NULL);
  assert_str (stun, "stun://127.0.0.1:9");
  fail_unless (turn.log_text ().find (":application>") != std::string::npos,
      "%s", turn.log_text ().c_str ());
}
END_TEST;

/* ------------------------------------------------------------------ */

namespace {

/* Enter a network namespace with only loopback, before any thread runs. */
std::string
enter_loopback_namespace ()
{
  if (unshare (CLONE_NEWNET) != 0)
    return std::string ("unshare(CLONE_NEWNET): ") + g_strerror (errno)
        + " (run as root)";
  if (system ("ip link set lo up") != 0)
    return "ip link set lo up failed (iproute2)";
  return {};
}

void
end_case_process ()
{
  const char *fork = g_getenv ("CK_FORK");
  if (fork && g_str_equal (fork, "no"))
    return;
  fflush (stdout);
  fflush (stderr);
  _exit (0);
}

Suite *
elements_suite ()
{
  Suite *s = suite_create ("elements");
  TCase *tc = tcase_create ("pipelines");
  tcase_set_timeout (tc, 90);
  tcase_add_checked_fixture (tc, nullptr, end_case_process);
  tcase_add_test (tc, test_inspect);
  tcase_add_test (tc, test_sink_to_src);
  tcase_add_test (tc, test_encoded_input);
  tcase_add_loop_test (tc, test_video_codecs, 0, G_N_ELEMENTS (CODEC_CASES));
  tcase_add_test (tc, test_missing_encoder);
  tcase_add_test (tc, test_h264_passthrough);
  tcase_add_test (tc, test_h264_parameter_sets);
  tcase_add_test (tc, test_codec_refused);
  tcase_add_test (tc, test_codec_refused_receiver_offers);
  tcase_add_test (tc, test_display_name);
  tcase_add_test (tc, test_members_filter);
  tcase_add_test (tc, test_loss_retransmitted);
  tcase_add_test (tc, test_loss_key_frames);
  tcase_add_test (tc, test_frames_whole_under_loss);
  tcase_add_test (tc, test_frames_whole_after_overrun);
  tcase_add_test (tc, test_transport_cc);
  tcase_add_test (tc, test_encoder_follows);
  tcase_add_test (tc, test_encoder_fixed);
  tcase_add_test (tc, test_receiver_frames);
  tcase_add_test (tc, test_three_bins);
  tcase_add_test (tc, test_two_threads);
  tcase_add_test (tc, test_constraints_toggle);
  tcase_add_test (tc, test_member_leaves);
  tcase_add_test (tc, test_member_killed);
  tcase_add_test (tc, test_server_restart);
  tcase_add_test (tc, test_server_list);
  tcase_add_test (tc, test_unreachable_server);
  tcase_add_test (tc, test_bad_settings);
  tcase_add_test (tc, test_wss);
  tcase_add_test (tc, test_connect_errors);
  tcase_add_test (tc, test_bad_sdp);
  tcase_add_test (tc, test_mix_record);
  tcase_add_test (tc, test_chat);
  tcase_add_test (tc, test_events);
  tcase_add_test (tc, test_presence_threads);
  tcase_add_test (tc, test_file_gst_to_gst);
  tcase_add_test (tc, test_file_pads);
  tcase_add_test (tc, test_file_cancel);
  tcase_add_test (tc, test_file_sender_gone);
  tcase_add_test (tc, test_file_stalled_and_unknown);
  tcase_add_test (tc, test_offer_resent);
  tcase_add_test (tc, test_stop_anytime);
  tcase_add_test (tc, test_stop_while_sending);
  tcase_add_test (tc, test_auth_token);
  tcase_add_test (tc, test_auth_renewal);
  tcase_add_test (tc, test_turn_relay);
  tcase_add_test (tc, test_turn_wrong_secret);
  tcase_add_test (tc, test_turn_servers_property);
  suite_add_tcase (s, tc);
  /* Forward error correction under loss: runs of up to half a minute. */
  TCase *fec = tcase_create ("fec");
  tcase_set_timeout (fec, 90);
  tcase_add_test (fec, test_fec_sizing);
  tcase_add_test (fec, test_audio_fec);
  tcase_add_test (fec, test_no_fec);
  suite_add_tcase (s, fec);
  return s;
}

/* GStreamer 1.22.0's rtpsession (Debian bookworm's) has a race of its own:
 * its RTCP thread walks the session's sources while a callback has let go
 * of the session's lock, and an RTCP packet coming in meanwhile adds a
 * source ("g_hash_table_foreach: assertion 'version ==
 * hash_table->version' failed"; that round's reports are cut short).
 * Fixed upstream in 1.22.5 (commit b9f7ab6). Seen about once a run in
 * test_three_bins (six webrtcbins in one process). That one critical, from
 * an rtpsession-rtcp thread, is printed and not fatal; every other stays
 * fatal (G_DEBUG=fatal-criticals). */
gboolean
fatal_unless_rtpsession_race (const gchar * domain, GLogLevelFlags level,
    const gchar * message, gpointer)
{
  char thread[16] = "";
  pthread_getname_np (pthread_self (), thread, sizeof thread);
  if ((level & G_LOG_LEVEL_CRITICAL) && g_strcmp0 (domain, "GLib") == 0
      && g_str_has_prefix (thread, "rtpsession-rtcp")
      && g_strcmp0 (message, "g_hash_table_foreach: assertion "
          "'version == hash_table->version' failed") == 0) {
    g_printerr ("GStreamer 1.22.0 rtpsession race (not fatal here, fixed in "
        "1.22.5): %s\n", message);
    return FALSE;
  }
  return TRUE;
}

}  // namespace

int
main (int argc, char **argv)
{
  std::string why = enter_loopback_namespace ();
  if (!why.empty ()) {
    g_print ("SKIP: the elements suite needs a loopback-only network "
        "namespace: %s\n", why.c_str ());
    return 77;
  }
  gst_check_init (&argc, &argv);
  g_test_log_set_fatal_handler (fatal_unless_rtpsession_race, nullptr);
  return gst_check_run_suite (elements_suite (), "elements", __FILE__);
}
