/* The element all three share: a GstBin that is one peerjs session. The
 * subclasses only say whether it publishes (request sink pads), receives
 * (sometimes src pads per member), or both, and carry their docs. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_PEERJS_BASE (gst_peerjs_base_get_type ())
G_DECLARE_DERIVABLE_TYPE (GstPeerJSBase, gst_peerjs_base, GST, PEERJS_BASE,
    GstBin)

struct _GstPeerJSBaseClass
{
  GstBinClass parent_class;

  /* Set by the subclass in class_init. */
  gboolean sends;
  gboolean receives;
};

/* Add the pad templates and properties of a publishing and/or receiving
 * element to `klass`. */
void gst_peerjs_base_class_setup (GstPeerJSBaseClass * klass, gboolean sends,
    gboolean receives);

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);

G_END_DECLS
