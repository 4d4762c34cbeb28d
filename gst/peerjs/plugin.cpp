/* The peerjs plugin: peerjssink, peerjssrc and peerjsbin. */
#include "gstpeerjsbin.h"
#include "gstpeerjssink.h"
#include "gstpeerjssrc.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  GST_DEBUG_CATEGORY_INIT (gst_peerjs_debug, "peerjs", 0,
      "peerjs WebRTC chat-room elements");
  gboolean ok = FALSE;
  ok |= GST_ELEMENT_REGISTER (peerjssink, plugin);
  ok |= GST_ELEMENT_REGISTER (peerjssrc, plugin);
  ok |= GST_ELEMENT_REGISTER (peerjsbin, plugin);
  return ok;
}

#define PACKAGE "gst-peerjs"
GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, peerjs,
    "WebRTC chat rooms (threads) with peerjs-signalling, as pipeline members",
    plugin_init, PEERJS_VERSION, "LGPL", "gst-peerjs",
    "Unknown package origin")
