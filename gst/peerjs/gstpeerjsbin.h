#pragma once

#include "gstpeerjsbase.h"

G_BEGIN_DECLS

#define GST_TYPE_PEERJS_BIN (gst_peerjs_bin_get_type ())
G_DECLARE_FINAL_TYPE (GstPeerJSBin, gst_peerjs_bin, GST, PEERJS_BIN,
    GstPeerJSBase)

GST_ELEMENT_REGISTER_DECLARE (peerjsbin);

G_END_DECLS
