#pragma once

#include "gstpeerjsbase.h"

G_BEGIN_DECLS

#define GST_TYPE_PEERJS_SRC (gst_peerjs_src_get_type ())
G_DECLARE_FINAL_TYPE (GstPeerJSSrc, gst_peerjs_src, GST, PEERJS_SRC,
    GstPeerJSBase)

GST_ELEMENT_REGISTER_DECLARE (peerjssrc);

G_END_DECLS
