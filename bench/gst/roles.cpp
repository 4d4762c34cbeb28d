/* gst-bench's helper roles: what it runs as when it starts itself
 * (--role receivers for the CPU and memory parts, --role member for the
 * room). */
#include "harness.h"

#include <glib-unix.h>

namespace peerjs::bench {

/* ------------------------------------------------------------------ */
/* Helper role: N receivers in this process */

namespace {

struct Receivers
{
  GstElement *pipeline = nullptr;
  GMainLoop *loop = nullptr;
  std::atomic<long long> frames { 0 };
  int exit_code = 0;
  bool recalc_latency = false;
};

GstPadProbeReturn
count_frame (GstPad *, GstPadProbeInfo * info, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST)
    r->frames += gst_buffer_list_length (GST_PAD_PROBE_INFO_BUFFER_LIST (info));
  else
    r->frames++;
  return GST_PAD_PROBE_OK;
}

void
receivers_pad_added (GstElement *, GstPad * pad, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  gst_bin_add (GST_BIN (r->pipeline), sink);
  gst_element_sync_state_with_parent (sink);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  if (g_str_has_prefix (GST_PAD_NAME (pad), "video_"))
    gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
            | GST_PAD_PROBE_TYPE_BUFFER_LIST), count_frame, r, nullptr);
  if (gst_pad_link (pad, sinkpad) != GST_PAD_LINK_OK)
    printf ("WARNING cannot link %s\n", GST_PAD_NAME (pad));
}

gboolean
receivers_bus (GstBus *, GstMessage * msg, gpointer data)
{
  auto *r = static_cast<Receivers *> (data);
  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:{
      g_autoptr (GError) e = nullptr;
      g_autofree char *dbg = nullptr;
      gst_message_parse_error (msg, &e, &dbg);
      printf ("ERROR %s: %s\n", GST_OBJECT_NAME (msg->src), e->message);
      r->exit_code = 1;
      g_main_loop_quit (r->loop);
      break;
    }
    case GST_MESSAGE_LATENCY:
      /* As gst-launch-1.0 does (the room's members). */
      if (r->recalc_latency)
        gst_bin_recalculate_latency (GST_BIN (r->pipeline));
      break;
    case GST_MESSAGE_WARNING:{
      g_autoptr (GError) e = nullptr;
      g_autofree char *dbg = nullptr;
      gst_message_parse_warning (msg, &e, &dbg);
      printf ("WARNING %s: %s (%s)\n", GST_OBJECT_NAME (msg->src), e->message,
          dbg ? dbg : "");
      break;
    }
    case GST_MESSAGE_ELEMENT:{
      const GstStructure *s = gst_message_get_structure (msg);
      const char *name = gst_structure_get_name (s);
      auto str = [s] (const char *f) {
        const char *v = gst_structure_get_string (s, f);
        return v ? v : "?";
      };
      long long t = g_get_monotonic_time ();
      if (g_str_equal (name, "peerjs-socket-connect"))
        printf ("SOCKET %s %s %lld\n", GST_OBJECT_NAME (msg->src), str ("id"),
            t);
      else if (g_str_equal (name, "peerjs-thread-connect"))
        printf ("JOIN %s %s %lld\n", GST_OBJECT_NAME (msg->src),
            str ("member"), t);
      else if (g_str_equal (name, "peerjs-media-connect"))
        printf ("MEDIA %s %s %s\n", GST_OBJECT_NAME (msg->src), str ("member"),
            str ("kind"));
      else if (g_str_equal (name, "peerjs-media-disconnect"))
        printf ("GONE %s %s %s\n", GST_OBJECT_NAME (msg->src), str ("member"),
            str ("kind"));
      else if (g_str_equal (name, "peerjs-peer-failed"))
        printf ("FAILED %s %s %s\n", GST_OBJECT_NAME (msg->src),
            str ("member"), str ("reason"));
      else if (g_str_equal (name, "peerjs-stats")) {
        gint64 lost = 0;
        guint64 in = 0;
        gst_structure_get_int64 (s, "packets-lost", &lost);
        gst_structure_get_uint64 (s, "bitrate-in", &in);
        printf ("STATS %s %lld %llu\n", str ("member"), (long long) lost,
            (unsigned long long) in);
      }
      break;
    }
    default:
      break;
  }
  return TRUE;
}

}  // namespace

int
run_receivers ()
{
  setvbuf (stdout, nullptr, _IOLBF, 0);
  Receivers r;
  r.loop = g_main_loop_new (nullptr, FALSE);
  r.pipeline = gst_pipeline_new ("receivers");
  for (int i = 0; i < opt.count; i++) {
    std::string name = "r" + std::to_string (i);
    GstElement *src = gst_element_factory_make ("peerjssrc", name.c_str ());
    if (!src) {
      printf ("ERROR no peerjssrc (GST_PLUGIN_PATH?)\n");
      return 1;
    }
    g_object_set (src, "server", opt.server.c_str (), "thread",
        opt.thread.c_str (), "latency", (guint) opt.latency, NULL);
    g_signal_connect (src, "pad-added", G_CALLBACK (receivers_pad_added), &r);
    gst_bin_add (GST_BIN (r.pipeline), src);
  }
  g_autoptr (GstBus) bus = gst_element_get_bus (r.pipeline);
  gst_bus_add_watch (bus, receivers_bus, &r);
  auto quit = +[] (gpointer data) -> gboolean {
    g_main_loop_quit (static_cast<GMainLoop *> (data));
    return G_SOURCE_CONTINUE;
  };
  g_unix_signal_add (SIGTERM, quit, r.loop);
  g_unix_signal_add (SIGINT, quit, r.loop);
  g_timeout_add (1000, +[] (gpointer data) -> gboolean {
        printf ("FRAMES %lld %lld\n",
            static_cast<Receivers *> (data)->frames.load (),
            (long long) g_get_monotonic_time ());
        return G_SOURCE_CONTINUE;
      }, &r);
  if (gst_element_set_state (r.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    printf ("ERROR the receivers did not start\n");
    return 1;
  }
  printf ("STARTED %d\n", opt.count);
  g_main_loop_run (r.loop);
  gst_element_set_state (r.pipeline, GST_STATE_NULL);
  gst_object_unref (r.pipeline);
  return r.exit_code;
}

/* ------------------------------------------------------------------ */
/* Helper role: one member of a room (peerjsbin) */

namespace {

struct MemberPad
{
  std::atomic<long long> buffers { 0 };
  std::atomic<bool> flowing { false };
  bool video = false;
};

struct Member
{
  GstElement *pipeline = nullptr;
  GMainLoop *loop = nullptr;
  std::mutex lock;
  std::map<std::string, MemberPad *> pads;   /* by pad name, never freed */
  int exit_code = 0;
};

GstPadProbeReturn
member_buffer (GstPad * pad, GstPadProbeInfo * info, gpointer data)
{
  auto *p = static_cast<MemberPad *> (data);
  if (GST_PAD_PROBE_INFO_TYPE (info) & GST_PAD_PROBE_TYPE_BUFFER_LIST)
    p->buffers += gst_buffer_list_length (GST_PAD_PROBE_INFO_BUFFER_LIST (info));
  else
    p->buffers++;
  bool was = false;
  if (p->flowing.compare_exchange_strong (was, true)) {
    g_autoptr (GstPad) peer = gst_pad_get_peer (pad);
    printf ("FIRST %s %lld\n", peer ? GST_PAD_NAME (peer) : "?",
        (long long) g_get_monotonic_time ());
  }
  return GST_PAD_PROBE_OK;
}

void
member_pad_added (GstElement *, GstPad * pad, gpointer data)
{
  auto *m = static_cast<Member *> (data);
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  MemberPad *p;
  {
    /* A pad that comes back keeps its counter. */
    std::lock_guard<std::mutex> guard (m->lock);
    MemberPad *&slot = m->pads[GST_PAD_NAME (pad)];
    if (!slot) {
      slot = new MemberPad ();
      slot->video = g_str_has_prefix (GST_PAD_NAME (pad), "video_");
    }
    p = slot;
    p->flowing = false;
  }
  GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
  g_object_set (sink, "sync", FALSE, "async", FALSE, "enable-last-sample",
      FALSE, NULL);
  gst_bin_add (GST_BIN (m->pipeline), sink);
  gst_element_sync_state_with_parent (sink);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (sinkpad, (GstPadProbeType) (GST_PAD_PROBE_TYPE_BUFFER
          | GST_PAD_PROBE_TYPE_BUFFER_LIST), member_buffer, p, nullptr);
  if (gst_pad_link (pad, sinkpad) != GST_PAD_LINK_OK)
    printf ("WARNING cannot link %s\n", GST_PAD_NAME (pad));
}

/* Diagnosis of a pad that does not flow (SIGUSR1 from the main process):
 * the pipeline's graph into GST_DEBUG_DUMP_DOT_DIR, and for 2 s the
 * buffers through every src pad of every element, as "FLOW path n". */
struct FlowCount
{
  GstPad *pad;
  gulong probe;
  std::atomic<long long> n { 0 };
};

gboolean
member_diagnose (gpointer data)
{
  auto *m = static_cast<Member *> (data);
  std::string name = "member-" + std::to_string (getpid ());
  GST_DEBUG_BIN_TO_DOT_FILE (GST_BIN (m->pipeline), GST_DEBUG_GRAPH_SHOW_ALL,
      name.c_str ());
  auto *flows = new std::vector<FlowCount *> ();
  GstIterator *it = gst_bin_iterate_recurse (GST_BIN (m->pipeline));
  GValue v = G_VALUE_INIT;
  while (gst_iterator_next (it, &v) == GST_ITERATOR_OK) {
    GstElement *e = GST_ELEMENT (g_value_get_object (&v));
    GstIterator *pit = gst_element_iterate_src_pads (e);
    GValue pv = G_VALUE_INIT;
    while (gst_iterator_next (pit, &pv) == GST_ITERATOR_OK) {
      auto *f = new FlowCount ();
      f->pad = GST_PAD (g_value_dup_object (&pv));
      f->probe = gst_pad_add_probe (f->pad, (GstPadProbeType)
          (GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
          +[] (GstPad *, GstPadProbeInfo *, gpointer d) -> GstPadProbeReturn {
            static_cast<FlowCount *> (d)->n++;
            return GST_PAD_PROBE_OK;
          }, f, nullptr);
      flows->push_back (f);
      g_value_reset (&pv);
    }
    gst_iterator_free (pit);
    g_value_reset (&v);
  }
  gst_iterator_free (it);
  g_timeout_add (2000, +[] (gpointer data) -> gboolean {
        auto *flows = static_cast<std::vector<FlowCount *> *> (data);
        for (FlowCount *f : *flows) {
          gst_pad_remove_probe (f->pad, f->probe);
          g_autofree char *path = gst_object_get_path_string (
              GST_OBJECT (f->pad));
          printf ("FLOW %s %lld\n", path, f->n.load ());
          gst_object_unref (f->pad);
          /* f itself stays: a probe call may still be under way. */
        }
        delete flows;
        return G_SOURCE_REMOVE;
      }, flows);
  return G_SOURCE_CONTINUE;
}

}  // namespace

/* One peerjsbin publishing a test pattern and a tone, every member pad
 * into a fakesink. Prints the lines of receivers_bus, "FIRST pad time"
 * for the first buffer of each pad, and once a second "PADS time
 * name=buffers ...". */
int
run_member ()
{
  setvbuf (stdout, nullptr, _IOLBF, 0);
  Member m;
  m.loop = g_main_loop_new (nullptr, FALSE);
  std::string desc = "peerjsbin name=b server=" + opt.server + " thread="
      + opt.thread + " latency=" + std::to_string (opt.latency)
      + " stats-interval=5000 videotestsrc is-live=true pattern=smpte "
      "horizontal-speed=2 ! video/x-raw,format=I420,width="
      + std::to_string (opt.room_width) + ",height="
      + std::to_string (opt.room_height) + ",framerate="
      + std::to_string (opt.room_fps) + "/1 ! b.video audiotestsrc "
      "is-live=true ! b.audio";
  GError *error = nullptr;
  m.pipeline = gst_parse_launch (desc.c_str (), &error);
  if (error) {
    printf ("ERROR cannot build the member: %s\n", error->message);
    return 1;
  }
  g_autoptr (GstElement) bin = gst_bin_get_by_name (GST_BIN (m.pipeline),
      "b");
  g_signal_connect (bin, "pad-added", G_CALLBACK (member_pad_added), &m);
  g_autoptr (GstBus) bus = gst_element_get_bus (m.pipeline);
  /* receivers_bus quits the loop on an error and reads nothing else. */
  Receivers r;
  r.loop = m.loop;
  r.pipeline = m.pipeline;
  r.recalc_latency = true;
  gst_bus_add_watch (bus, receivers_bus, &r);
  auto quit = +[] (gpointer data) -> gboolean {
    g_main_loop_quit (static_cast<GMainLoop *> (data));
    return G_SOURCE_CONTINUE;
  };
  g_unix_signal_add (SIGTERM, quit, m.loop);
  g_unix_signal_add (SIGINT, quit, m.loop);
  g_unix_signal_add (SIGUSR1, member_diagnose, &m);
  g_timeout_add (1000, +[] (gpointer data) -> gboolean {
        auto *m = static_cast<Member *> (data);
        std::string line = "PADS " + std::to_string (g_get_monotonic_time ());
        std::lock_guard<std::mutex> guard (m->lock);
        for (auto & p : m->pads)
          line += " " + p.first + "=" + std::to_string (p.second->buffers);
        printf ("%s\n", line.c_str ());
        return G_SOURCE_CONTINUE;
      }, &m);
  if (gst_element_set_state (m.pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    printf ("ERROR the member did not start\n");
    return 1;
  }
  printf ("STARTED 1\n");
  g_main_loop_run (m.loop);
  gst_element_set_state (m.pipeline, GST_STATE_NULL);
  gst_object_unref (m.pipeline);
  return r.exit_code;
}

}  // namespace peerjs::bench
