#pragma once

#include "gstpeerjsbase.h"

G_BEGIN_DECLS

#define GST_TYPE_PEERJS_SINK (gst_peerjs_sink_get_type ())
G_DECLARE_FINAL_TYPE (GstPeerJSSink, gst_peerjs_sink, GST, PEERJS_SINK,
    GstPeerJSBase)

GST_ELEMENT_REGISTER_DECLARE (peerjssink);

G_END_DECLS
