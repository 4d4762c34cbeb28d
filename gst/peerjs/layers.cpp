#include "layers.h"

#include <gst/video/video.h>

#include <atomic>
#include <mutex>
#include <string>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

struct Switch
{
  GstPad *src = nullptr;
  GstPad *sinks[MAX_LAYERS] = {};
  int layers = 0;
  /* Held while a buffer or serialized event goes out, and while the layer
   * changes: what leaves is one layer's, in its order. */
  std::mutex lock;
  std::atomic<int> current { -1 };
  std::atomic<int> wanted { 0 };
  std::atomic<guint64> changes { 0 };
};

}  // namespace

}  // namespace peerjs

/* The GObject: an element with a Switch. */
typedef struct
{
  GstElement parent;
  peerjs::Switch *sw;
} GstPeerJSLayerSwitch;

typedef struct
{
  GstElementClass parent_class;
} GstPeerJSLayerSwitchClass;

G_DEFINE_TYPE (GstPeerJSLayerSwitch, gst_peerjs_layer_switch,
    GST_TYPE_ELEMENT);

static void
gst_peerjs_layer_switch_finalize (GObject * object)
{
  delete ((GstPeerJSLayerSwitch *) object)->sw;
  G_OBJECT_CLASS (gst_peerjs_layer_switch_parent_class)->finalize (object);
}

static void
gst_peerjs_layer_switch_class_init (GstPeerJSLayerSwitchClass * klass)
{
  G_OBJECT_CLASS (klass)->finalize = gst_peerjs_layer_switch_finalize;
  gst_element_class_set_static_metadata (GST_ELEMENT_CLASS (klass),
      "PeerJS layer switch", "Filter/Video",
      "Passes one of several encodings of a video on, changing at key frames",
      "peerjs for GStreamer");
}

static void
gst_peerjs_layer_switch_init (GstPeerJSLayerSwitch * self)
{
  self->sw = new peerjs::Switch;
}

namespace peerjs {

namespace {

Switch *
switch_of (GstObject * element)
{
  return ((GstPeerJSLayerSwitch *) element)->sw;
}

int
layer_of (GstPad * pad)
{
  return GPOINTER_TO_INT (gst_pad_get_element_private (pad));
}

gboolean
forward_sticky (GstPad *, GstEvent ** event, gpointer src)
{
  if (GST_EVENT_TYPE (*event) != GST_EVENT_EOS)
    gst_pad_push_event (GST_PAD (src), gst_event_ref (*event));
  return TRUE;
}

GstFlowReturn
on_buffer (GstPad * pad, GstObject * parent, GstBuffer * buffer)
{
  Switch *sw = switch_of (parent);
  int layer = layer_of (pad);
  std::lock_guard<std::mutex> guard (sw->lock);
  int current = sw->current;
  if (layer != current && layer == sw->wanted
      && !GST_BUFFER_FLAG_IS_SET (buffer, GST_BUFFER_FLAG_DELTA_UNIT)) {
    GST_DEBUG_OBJECT (parent, "layer %d -> %d", current, layer);
    if (current >= 0)
      sw->changes++;
    sw->current = current = layer;
    /* Its caps and segment before its first frame. */
    gst_pad_sticky_events_foreach (pad, forward_sticky, sw->src);
  }
  if (layer != current) {
    gst_buffer_unref (buffer);
    return GST_FLOW_OK;
  }
  return gst_pad_push (sw->src, buffer);
}

gboolean
on_sink_event (GstPad * pad, GstObject * parent, GstEvent * event)
{
  Switch *sw = switch_of (parent);
  int layer = layer_of (pad);
  /* Sticky events of a layer not passed are kept on its pad (the event
   * function says yes) and sent when the switch moves to it. */
  if (!GST_EVENT_IS_SERIALIZED (event) || GST_EVENT_TYPE (event)
      == GST_EVENT_FLUSH_STOP) {
    if (layer == sw->current)
      return gst_pad_push_event (sw->src, event);
    gst_event_unref (event);
    return TRUE;
  }
  std::lock_guard<std::mutex> guard (sw->lock);
  /* EOS ends the member's stream from whichever layer it is on; before
   * the first key frame, from the layer asked for. */
  bool passes = layer == sw->current || (sw->current < 0
      && layer == sw->wanted && GST_EVENT_TYPE (event) == GST_EVENT_EOS);
  if (passes)
    return gst_pad_push_event (sw->src, event);
  gst_event_unref (event);
  return TRUE;
}

/* Upstream events and queries go to the layer passed now (before the
 * first key frame, the one asked for): a key-unit request reaches that
 * layer's encoder only. */
GstPad *
source_layer (Switch * sw)
{
  int layer = sw->current;
  if (layer < 0)
    layer = sw->wanted;
  return sw->sinks[CLAMP (layer, 0, sw->layers - 1)];
}

gboolean
on_src_event (GstPad *, GstObject * parent, GstEvent * event)
{
  return gst_pad_push_event (source_layer (switch_of (parent)), event);
}

gboolean
on_src_query (GstPad * pad, GstObject * parent, GstQuery * query)
{
  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_LATENCY:
    case GST_QUERY_CAPS:
    case GST_QUERY_ACCEPT_CAPS:
      return gst_pad_peer_query (source_layer (switch_of (parent)), query);
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

gboolean
on_sink_query (GstPad * pad, GstObject * parent, GstQuery * query)
{
  switch (GST_QUERY_TYPE (query)) {
    case GST_QUERY_CAPS:
    case GST_QUERY_ACCEPT_CAPS:
      /* Every layer has the codec the payloader takes, at its own size:
       * what the payloader accepts, for any of them. */
      return gst_pad_peer_query (switch_of (parent)->src, query);
    case GST_QUERY_ALLOCATION:
      return FALSE;
    default:
      return gst_pad_query_default (pad, parent, query);
  }
}

}  // namespace

GstElement *
layer_switch_new (int layers, const char *name)
{
  layers = CLAMP (layers, 1, MAX_LAYERS);
  auto *element = GST_ELEMENT (g_object_new (gst_peerjs_layer_switch_get_type
          (), "name", name, NULL));
  Switch *sw = switch_of (GST_OBJECT (element));
  sw->layers = layers;
  sw->src = gst_pad_new ("src", GST_PAD_SRC);
  gst_pad_set_event_function (sw->src, on_src_event);
  gst_pad_set_query_function (sw->src, on_src_query);
  gst_element_add_pad (element, sw->src);
  for (int i = 0; i < layers; i++) {
    std::string pad_name = "sink_" + std::to_string (i);
    GstPad *pad = gst_pad_new (pad_name.c_str (), GST_PAD_SINK);
    gst_pad_set_element_private (pad, GINT_TO_POINTER (i));
    gst_pad_set_chain_function (pad, on_buffer);
    gst_pad_set_event_function (pad, on_sink_event);
    gst_pad_set_query_function (pad, on_sink_query);
    sw->sinks[i] = pad;
    gst_element_add_pad (element, pad);
  }
  return element;
}

void
layer_switch_want (GstElement * layer_switch, int layer)
{
  Switch *sw = switch_of (GST_OBJECT (layer_switch));
  sw->wanted = CLAMP (layer, 0, sw->layers - 1);
}

int
layer_switch_current (GstElement * layer_switch)
{
  return switch_of (GST_OBJECT (layer_switch))->current;
}

int
layer_switch_wanted (GstElement * layer_switch)
{
  return switch_of (GST_OBJECT (layer_switch))->wanted;
}

guint64
layer_switch_changes (GstElement * layer_switch)
{
  return switch_of (GST_OBJECT (layer_switch))->changes;
}

}  // namespace peerjs
