/* Layers: raw video encoded once at a few resolutions, and per member a
 * switch that passes one of them on, changing at a key frame.
 *
 * The switch is an element of ours inside the published element's bin (not
 * registered, never seen in a pipeline description): one sink pad per
 * layer, each linked to that layer's tee, and one src pad to the member's
 * payloader. It passes the buffers and events of the layer it is on and
 * drops the others'. Asked for another layer, it goes on passing the old
 * one until the new one gives a key frame, and passes that layer from that
 * frame on, its caps and segment first: the member's decoder sees a key
 * frame at every change of size, and the payloader keeps its SSRC and
 * sequence numbers. A key-unit request from downstream (the member's PLI)
 * goes to the encoder of the layer the switch is on, not to every layer. */
#pragma once

#include <gst/gst.h>

namespace peerjs {

/* At most this many layers: full, half and quarter size. */
constexpr int MAX_LAYERS = 3;

/* A switch over `layers` sink pads, "sink_0" (the top layer) to
 * "sink_{layers-1}", and a "src" pad; on no layer until asked. */
GstElement *layer_switch_new (int layers, const char *name);
/* Ask for `layer`: from its next key frame on, the switch passes it. */
void layer_switch_want (GstElement * layer_switch, int layer);
/* The layer it passes now, -1 before its first key frame; the one asked
 * for; how many times it changed layer. Any thread. */
int layer_switch_current (GstElement * layer_switch);
int layer_switch_wanted (GstElement * layer_switch);
guint64 layer_switch_changes (GstElement * layer_switch);

}  // namespace peerjs
