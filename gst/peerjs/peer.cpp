#include "peer.h"

#include "messages.h"

#include <gst/sdp/sdp.h>

GST_DEBUG_CATEGORY_EXTERN (gst_peerjs_debug);
#define GST_CAT_DEFAULT gst_peerjs_debug

namespace peerjs {

namespace {

using Direction = GstWebRTCRTPTransceiverDirection;

/* Run an action signal that answers through a promise, and wait for it.
 * Only on the signalling thread, which no webrtcbin thread waits on. */
class Promise
{
public:
  Promise () : p_ (gst_promise_new ()) {}
  ~Promise () { gst_promise_unref (p_); }
  GstPromise *get () { return p_; }
  /* False with `error` set when it failed; `reply` may be null on
   * success (set-*-description replies with nothing). */
  bool wait (const GstStructure ** reply, std::string * error)
  {
    *reply = nullptr;
    if (gst_promise_wait (p_) != GST_PROMISE_RESULT_REPLIED) {
      *error = "interrupted";
      return false;
    }
    *reply = gst_promise_get_reply (p_);
    if (*reply && gst_structure_has_field (*reply, "error")) {
      GError *e = nullptr;
      gst_structure_get (*reply, "error", G_TYPE_ERROR, &e, NULL);
      *error = e ? e->message : "failed";
      g_clear_error (&e);
      return false;
    }
    return true;
  }

private:
  GstPromise *p_;
};

/* Payload types in `media` whose rtpmap names `codec`. */
std::vector<int>
payload_types (const GstSDPMedia * media, const Codec & codec)
{
  std::vector<int> pts;
  for (guint i = 0;; i++) {
    const char *rtpmap = gst_sdp_media_get_attribute_val_n (media, "rtpmap",
        i);
    if (!rtpmap)
      break;
    char name[32] = "";
    int pt = -1;
    if (sscanf (rtpmap, "%d %31[^/]", &pt, name) == 2
        && g_ascii_strcasecmp (name, codec.name) == 0)
      pts.push_back (pt);
  }
  return pts;
}

GstCaps *
caps_for_pts (const Codec & codec, const std::vector<int> & pts)
{
  GstCaps *caps = gst_caps_new_empty ();
  for (int pt : pts)
    gst_caps_append (caps, rtp_caps (codec, pt));
  return caps;
}

const char *
direction_name (Direction d)
{
  switch (d) {
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV: return "sendrecv";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY: return "sendonly";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY: return "recvonly";
    case GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE: return "inactive";
    default: return "none";
  }
}

Kind
kind_of_media (const GstSDPMessage * sdp, guint mline, bool * ok)
{
  *ok = false;
  if (!sdp || mline >= gst_sdp_message_medias_len (sdp))
    return Kind::Video;
  const char *media = gst_sdp_media_get_media (gst_sdp_message_get_media (sdp,
          mline));
  *ok = g_strcmp0 (media, "video") == 0 || g_strcmp0 (media, "audio") == 0;
  return g_strcmp0 (media, "audio") == 0 ? Kind::Audio : Kind::Video;
}

}  // namespace

Peer::Peer (PeerHost & host, std::string id, bool master)
  : host_ (host), id_ (std::move (id)), master_ (master)
{
  webrtc_ = gst_element_factory_make ("webrtcbin",
      ("webrtc-" + id_).c_str ());
  gst_util_set_object_arg (G_OBJECT (webrtc_), "bundle-policy", "max-bundle");
  host_.configure (webrtc_);
  gst_bin_add (host_.bin (), webrtc_);

  g_signal_connect (webrtc_, "on-ice-candidate", G_CALLBACK (+[] (GstElement *,
              guint mline, gchar * candidate, gpointer data) {
        auto *self = static_cast<Peer *> (data);
        JsonObject *msg = json_object_new ();
        json_object_set_string_member (msg, "type", "stream:candidate");
        json_object_set_string_member (msg, "to", self->id_.c_str ());
        JsonObject *c = json_object_new ();
        json_object_set_string_member (c, "candidate", candidate);
        json_object_set_int_member (c, "sdpMLineIndex", mline);
        json_object_set_object_member (msg, "data", c);
        PeerHost *host = &self->host_;
        host->invoke ([host, msg] {
          host->send (msg);
          json_object_unref (msg);
        });
      }), this);
  g_signal_connect (webrtc_, "pad-added", G_CALLBACK (+[] (GstElement *,
              GstPad * pad, gpointer data) {
        static_cast<Peer *> (data)->on_pad_added (pad);
      }), this);
  g_signal_connect (webrtc_, "notify::ice-connection-state",
      G_CALLBACK (+[] (GstElement * webrtc, GParamSpec *, gpointer data) {
        auto *self = static_cast<Peer *> (data);
        GstWebRTCICEConnectionState state;
        g_object_get (webrtc, "ice-connection-state", &state, NULL);
        GST_DEBUG ("%s: ice-connection-state %d", self->id_.c_str (), state);
        if (state == GST_WEBRTC_ICE_CONNECTION_STATE_FAILED) {
          PeerHost *host = &self->host_;
          std::string id = self->id_;
          host->invoke ([host, id] {
            host->peer_failed (id, "ICE failed");
          });
        }
      }), this);
  gst_element_sync_state_with_parent (webrtc_);

  if (master_) {
    /* peer.js expects the master's channel; it also gives the connection
     * an m-line when no media is allowed. */
    g_signal_emit_by_name (webrtc_, "create-data-channel", "data", nullptr,
        &channel_);
  }
}

Peer::~Peer ()
{
  close ();
}

/* ------------------------------------------------------------------ */

GstWebRTCRTPTransceiver *
Peer::transceiver (Kind kind)
{
  GArray *all = nullptr;
  g_signal_emit_by_name (webrtc_, "get-transceivers", &all);
  if (!all)
    return nullptr;
  GstWebRTCRTPTransceiver *found = nullptr;
  g_autoptr (GstSDPMessage) sdp = nullptr;
  if (!remote_sdp_.empty ())
    gst_sdp_message_new_from_text (remote_sdp_.c_str (), &sdp);
  for (guint i = 0; i < all->len && !found; i++) {
    auto *t = g_array_index (all, GstWebRTCRTPTransceiver *, i);
    GstWebRTCKind k = GST_WEBRTC_KIND_UNKNOWN;
    guint mline = G_MAXUINT;
    g_object_get (t, "kind", &k, "mlineindex", &mline, NULL);
    bool ok = false;
    Kind from_sdp = kind_of_media (sdp, mline, &ok);
    bool match = ok ? from_sdp == kind
        : (k == (kind == Kind::Video ? GST_WEBRTC_KIND_VIDEO
              : GST_WEBRTC_KIND_AUDIO));
    if (match)
      found = GST_WEBRTC_RTP_TRANSCEIVER (gst_object_ref (t));
  }
  g_array_unref (all);
  return found;
}

Direction
Peer::wanted_direction (Kind kind, bool * send, bool * recv)
{
  Outgoing *out = host_.outgoing (kind);
  *send = host_.wants_send (id_, kind) && out && out->codec ();
  *recv = host_.wants_recv (id_, kind);
  if (*send && *recv)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV;
  if (*send)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY;
  if (*recv)
    return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY;
  return GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
}

bool
Peer::link_send (Kind kind, GstWebRTCRTPTransceiver * trans, int pt)
{
  Send & s = send_[(int) kind];
  Outgoing *out = host_.outgoing (kind);
  const Codec *codec = out ? out->codec () : nullptr;
  if (!codec)
    return false;
  if (!s.payloader) {
    std::string name = std::string ("pay-") + kind_name (kind) + "-" + id_;
    s.payloader = make_payloader (*codec, pt, name);
    if (!s.payloader)
      return false;
    gst_bin_add (host_.bin (), s.payloader);
    GstPadTemplate *templ = gst_element_get_pad_template (webrtc_, "sink_%u");
    g_autofree char *pad_name = nullptr;
    if (trans) {
      guint mline = G_MAXUINT;
      g_object_get (trans, "mlineindex", &mline, NULL);
      if (mline != G_MAXUINT)
        pad_name = g_strdup_printf ("sink_%u", mline);
    }
    g_autoptr (GstCaps) caps = rtp_caps (*codec, pt);
    s.webrtc_pad = gst_element_request_pad (webrtc_, templ, pad_name, caps);
    g_autoptr (GstPad) pay_src = gst_element_get_static_pad (s.payloader,
        "src");
    if (!s.webrtc_pad || gst_pad_link (pay_src, s.webrtc_pad) != GST_PAD_LINK_OK) {
      GST_WARNING ("%s: cannot link the %s payloader to webrtcbin",
          id_.c_str (), kind_name (kind));
      return false;
    }
    s.codec = codec;
    s.pt = pt;
    gst_element_sync_state_with_parent (s.payloader);
  }
  if (!s.tee_pad) {
    s.tee_pad = gst_element_request_pad_simple (out->tee (), "src_%u");
    g_autoptr (GstPad) pay_sink = gst_element_get_static_pad (s.payloader,
        "sink");
    gst_pad_link (s.tee_pad, pay_sink);
  }
  return true;
}

void
Peer::unlink_send (Kind kind)
{
  Send & s = send_[(int) kind];
  if (!s.tee_pad)
    return;
  g_autoptr (GstPad) peer = gst_pad_get_peer (s.tee_pad);
  if (peer)
    gst_pad_unlink (s.tee_pad, peer);
  /* The stream may already be gone from the host: ask the pad. */
  g_autoptr (GstElement) tee = gst_pad_get_parent_element (s.tee_pad);
  if (tee)
    gst_element_release_request_pad (tee, s.tee_pad);
  gst_clear_object (&s.tee_pad);
}

/* ------------------------------------------------------------------ */

void
Peer::sync ()
{
  if (closed_)
    return;
  if (!master_) {
    if (!negotiated_once_)
      return;   /* the master offers as soon as it knows us */
    for (int k = 0; k < KIND_COUNT; k++) {
      bool send, recv;
      Direction want = wanted_direction ((Kind) k, &send, &recv);
      g_autoptr (GstWebRTCRTPTransceiver) trans = transceiver ((Kind) k);
      if ((trans || want != GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE)
          && want != direction_[k]) {
        JsonObject *msg = json_object_new ();
        json_object_set_string_member (msg, "type", "stream:makeoffer");
        json_object_set_string_member (msg, "to", id_.c_str ());
        host_.send (msg);
        json_object_unref (msg);
        return;
      }
    }
    return;
  }

  bool changed = !negotiated_once_;
  for (int k = 0; k < KIND_COUNT; k++) {
    Kind kind = (Kind) k;
    bool send, recv;
    Direction want = wanted_direction (kind, &send, &recv);
    g_autoptr (GstWebRTCRTPTransceiver) trans = transceiver (kind);
    if (!trans) {
      if (want == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE)
        continue;
      if (send) {
        const Codec *codec = host_.outgoing (kind)->codec ();
        if (!link_send (kind, nullptr, codec->default_pt))
          continue;
        g_object_get (send_[k].webrtc_pad, "transceiver", &trans, NULL);
        g_autoptr (GstCaps) prefs = rtp_caps (*codec, codec->default_pt);
        g_object_set (trans, "codec-preferences", prefs, NULL);
      } else {
        g_autoptr (GstCaps) prefs = receivable_caps (kind);
        g_signal_emit_by_name (webrtc_, "add-transceiver",
            GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY, prefs, &trans);
      }
      if (!trans)
        continue;
      changed = true;
    } else if (send && !send_[k].tee_pad) {
      const Codec *codec = host_.outgoing (kind)->codec ();
      int pt = send_[k].payloader ? send_[k].pt : codec->default_pt;
      g_autoptr (GstCaps) prefs = rtp_caps (*codec, pt);
      g_object_set (trans, "codec-preferences", prefs, "direction", want,
          NULL);
      link_send (kind, trans, pt);
    } else if (!send && send_[k].tee_pad) {
      unlink_send (kind);
    }
    Direction now;
    g_object_get (trans, "direction", &now, NULL);
    if (now != want) {
      g_object_set (trans, "direction", want, NULL);
      changed = true;
    }
    direction_[k] = want;
  }
  if (changed)
    offer ();
}

void
Peer::offer ()
{
  if (closed_ || !master_)
    return;
  GstWebRTCSignalingState state;
  g_object_get (webrtc_, "signaling-state", &state, NULL);
  if (state != GST_WEBRTC_SIGNALING_STATE_STABLE) {
    offer_again_ = true;
    return;
  }
  offer_again_ = false;

  Promise p;
  g_signal_emit_by_name (webrtc_, "create-offer", nullptr, p.get ());
  std::string error;
  const GstStructure *reply = nullptr;
  GstWebRTCSessionDescription *offer = nullptr;
  if (p.wait (&reply, &error) && reply)
    gst_structure_get (reply, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION,
        &offer, NULL);
  if (!offer) {
    GST_WARNING ("%s: creating an offer failed: %s", id_.c_str (),
        error.c_str ());
    return;
  }
  g_autofree char *sdp = gst_sdp_message_as_text (offer->sdp);
  gst_webrtc_session_description_free (offer);
  if (!set_description (GST_WEBRTC_SDP_TYPE_OFFER, sdp, true))
    return;

  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type", "stream:offer");
  json_object_set_string_member (msg, "to", id_.c_str ());
  JsonObject *data = json_object_new ();
  json_object_set_string_member (data, "type", "offer");
  json_object_set_string_member (data, "sdp", sdp);
  json_object_set_object_member (msg, "data", data);
  host_.send (msg);
  json_object_unref (msg);
}

bool
Peer::set_description (GstWebRTCSDPType type, const std::string & text,
    bool local, GstWebRTCSessionDescription ** out)
{
  GstSDPMessage *sdp = nullptr;
  if (gst_sdp_message_new_from_text (text.c_str (), &sdp) != GST_SDP_OK
      || gst_sdp_message_medias_len (sdp) == 0) {
    if (sdp)
      gst_sdp_message_free (sdp);
    host_.peer_failed (id_, std::string ("its ")
        + gst_webrtc_sdp_type_to_string (type) + " does not parse as SDP");
    return false;
  }
  GstWebRTCSessionDescription *desc =
      gst_webrtc_session_description_new (type, sdp);
  Promise p;
  g_signal_emit_by_name (webrtc_, local ? "set-local-description"
      : "set-remote-description", desc, p.get ());
  gst_webrtc_session_description_free (desc);
  std::string error;
  const GstStructure *reply = nullptr;
  if (!p.wait (&reply, &error)) {
    if (local) {
      GST_WARNING ("%s: setting our %s failed: %s", id_.c_str (),
          gst_webrtc_sdp_type_to_string (type), error.c_str ());
    } else {
      host_.peer_failed (id_, std::string ("its ")
          + gst_webrtc_sdp_type_to_string (type) + " was refused: " + error);
    }
    return false;
  }
  return true;
}

void
Peer::on_offer (const std::string & sdp)
{
  if (closed_)
    return;
  if (master_) {
    GST_WARNING ("%s sent an offer, but we make the offers (larger id)",
        id_.c_str ());
    return;
  }
  if (!set_description (GST_WEBRTC_SDP_TYPE_OFFER, sdp, false))
    return;
  remote_sdp_ = sdp;
  g_autoptr (GstSDPMessage) offer = nullptr;
  gst_sdp_message_new_from_text (sdp.c_str (), &offer);

  for (int k = 0; k < KIND_COUNT; k++) {
    Kind kind = (Kind) k;
    g_autoptr (GstWebRTCRTPTransceiver) trans = transceiver (kind);
    if (!trans)
      continue;
    guint mline = G_MAXUINT;
    g_object_get (trans, "mlineindex", &mline, NULL);
    const GstSDPMedia *media = gst_sdp_message_get_media (offer, mline);
    bool send, recv;
    wanted_direction (kind, &send, &recv);

    g_autoptr (GstCaps) prefs = gst_caps_new_empty ();
    int pt = -1;
    if (send) {
      const Codec *codec = host_.outgoing (kind)->codec ();
      std::vector<int> pts = payload_types (media, *codec);
      if (pts.empty ()) {
        GST_WARNING ("%s offers no %s: not sending it %s", id_.c_str (),
            codec->name, kind_name (kind));
        send = false;
      } else {
        pt = send_[k].payloader ? send_[k].pt : pts.front ();
        gst_caps_append (prefs, rtp_caps (*codec, pt));
      }
    }
    if (recv && !send) {
      g_autoptr (GstCaps) ours = receivable_caps (kind);
      for (guint i = 0; i < gst_caps_get_size (ours); i++) {
        const Codec *c = codec_by_name (gst_structure_get_string (
                gst_caps_get_structure (ours, i), "encoding-name"));
        gst_caps_append (prefs, caps_for_pts (*c, payload_types (media, *c)));
      }
      if (gst_caps_is_empty (prefs)) {
        GST_WARNING ("%s offers no %s codec we decode", id_.c_str (),
            kind_name (kind));
        recv = false;
      }
    }
    Direction dir = send && recv ? GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV
        : send ? GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY
        : recv ? GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY
        : GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    if (!gst_caps_is_empty (prefs))
      g_object_set (trans, "codec-preferences", prefs, NULL);
    g_object_set (trans, "direction", dir, NULL);
    if (send)
      link_send (kind, trans, pt);
    else
      unlink_send (kind);
    direction_[k] = dir;
    GST_DEBUG ("%s: %s m-line %u answered %s", id_.c_str (), kind_name (kind),
        mline, direction_name (dir));
  }

  Promise p;
  g_signal_emit_by_name (webrtc_, "create-answer", nullptr, p.get ());
  std::string error;
  const GstStructure *reply = nullptr;
  GstWebRTCSessionDescription *answer = nullptr;
  if (p.wait (&reply, &error) && reply)
    gst_structure_get (reply, "answer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION,
        &answer, NULL);
  if (!answer) {
    host_.peer_failed (id_, "no answer to its offer: " + error);
    return;
  }
  g_autofree char *text = gst_sdp_message_as_text (answer->sdp);
  gst_webrtc_session_description_free (answer);
  if (!set_description (GST_WEBRTC_SDP_TYPE_ANSWER, text, true))
    return;

  JsonObject *msg = json_object_new ();
  json_object_set_string_member (msg, "type", "stream:answer");
  json_object_set_string_member (msg, "to", id_.c_str ());
  JsonObject *data = json_object_new ();
  json_object_set_string_member (data, "type", "answer");
  json_object_set_string_member (data, "sdp", text);
  json_object_set_object_member (msg, "data", data);
  host_.send (msg);
  json_object_unref (msg);
  negotiated ();
}

void
Peer::on_answer (const std::string & sdp)
{
  if (closed_ || !master_)
    return;
  GstWebRTCSignalingState state;
  g_object_get (webrtc_, "signaling-state", &state, NULL);
  if (state != GST_WEBRTC_SIGNALING_STATE_HAVE_LOCAL_OFFER) {
    GST_DEBUG ("%s: answer without an offer, ignored", id_.c_str ());
    return;
  }
  if (!set_description (GST_WEBRTC_SDP_TYPE_ANSWER, sdp, false))
    return;
  remote_sdp_ = sdp;
  negotiated ();
}

void
Peer::on_candidate (guint mline, const std::string & candidate)
{
  if (closed_ || candidate.empty ())
    return;
  g_signal_emit_by_name (webrtc_, "add-ice-candidate", mline,
      candidate.c_str ());
}

void
Peer::negotiated ()
{
  negotiated_once_ = true;
  for (int k = 0; k < KIND_COUNT; k++) {
    g_autoptr (GstWebRTCRTPTransceiver) trans = transceiver ((Kind) k);
    Direction current = GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_NONE;
    if (trans)
      g_object_get (trans, "current-direction", &current, NULL);
    bool receiving = current == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY
        || current == GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDRECV;
    expose ((Kind) k, receiving);
    /* A member that starts receiving gets a key frame at once. */
    if (send_[k].tee_pad)
      host_.outgoing ((Kind) k)->force_key_unit ();
  }
  if (master_ && offer_again_)
    offer ();
}

/* ------------------------------------------------------------------ */

void
Peer::on_pad_added (GstPad * pad)
{
  if (GST_PAD_DIRECTION (pad) != GST_PAD_SRC)
    return;
  g_autoptr (GstCaps) caps = gst_pad_get_current_caps (pad);
  const GstStructure *s = caps ? gst_caps_get_structure (caps, 0) : nullptr;
  const char *media = s ? gst_structure_get_string (s, "media") : nullptr;
  const char *encoding = s ? gst_structure_get_string (s, "encoding-name")
      : nullptr;
  const Codec *codec = encoding ? codec_by_name (encoding) : nullptr;
  Kind kind = g_strcmp0 (media, "audio") == 0 ? Kind::Audio : Kind::Video;
  GstBin *bin = host_.bin ();

  std::unique_lock<std::mutex> guard (lock_);
  Recv & r = recv_[(int) kind];
  if (closing_)
    return;
  GstElement *decoder = nullptr;
  if (codec && !r.decoder) {
    std::string name = std::string ("dec-") + kind_name (kind) + "-" + id_;
    decoder = make_decoder (*codec, name);
  }
  if (!decoder) {
    /* Not ours to decode (or a second stream of the same kind): consume it
     * so webrtcbin never sees not-linked. */
    GST_WARNING ("%s: cannot decode %s (%s), discarding it", id_.c_str (),
        media ? media : "?", encoding ? encoding : "no caps");
    GstElement *sink = gst_element_factory_make ("fakesink", nullptr);
    g_object_set (sink, "async", FALSE, "sync", FALSE, NULL);
    gst_bin_add (bin, sink);
    g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (sink, "sink");
    gst_pad_link (pad, sinkpad);
    gst_element_sync_state_with_parent (sink);
    discards_.push_back (sink);
    return;
  }
  gst_bin_add (bin, decoder);
  g_autoptr (GstPad) sinkpad = gst_element_get_static_pad (decoder, "sink");
  gst_pad_link (pad, sinkpad);
  g_autoptr (GstPad) src = gst_element_get_static_pad (decoder, "src");
  std::string pad_name = std::string (kind_name (kind)) + "_" + id_;
  r.decoder = decoder;
  r.ghost = gst_ghost_pad_new (pad_name.c_str (), src);
  GstPad *ghost = GST_PAD (gst_object_ref (r.ghost));
  guard.unlock ();

  gst_element_sync_state_with_parent (decoder);
  host_.add_output (ghost, id_, kind);
  gst_object_unref (ghost);
}

void
Peer::expose (Kind kind, bool on)
{
  std::unique_lock<std::mutex> guard (lock_);
  Recv & r = recv_[(int) kind];
  if (!r.decoder)
    return;
  g_autoptr (GstPad) src = gst_element_get_static_pad (r.decoder, "src");
  if (on && !r.ghost) {
    if (r.parking) {
      g_autoptr (GstPad) park = gst_element_get_static_pad (r.parking, "sink");
      gst_pad_unlink (src, park);
    }
    std::string pad_name = std::string (kind_name (kind)) + "_" + id_;
    r.ghost = gst_ghost_pad_new (pad_name.c_str (), src);
    GstPad *ghost = GST_PAD (gst_object_ref (r.ghost));
    guard.unlock ();
    host_.add_output (ghost, id_, kind);
    gst_object_unref (ghost);
  } else if (!on && r.ghost) {
    GstPad *ghost = r.ghost;
    r.ghost = nullptr;
    if (!r.parking) {
      r.parking = gst_element_factory_make ("fakesink", nullptr);
      g_object_set (r.parking, "async", FALSE, "sync", FALSE, NULL);
      gst_bin_add (host_.bin (), r.parking);
      gst_element_sync_state_with_parent (r.parking);
    }
    guard.unlock ();
    host_.remove_output (ghost, id_, kind);
    gst_object_unref (ghost);
    g_autoptr (GstPad) park = gst_element_get_static_pad (r.parking, "sink");
    gst_pad_link (src, park);
  }
}

void
Peer::stats (std::function<void (GstStructure *)> post)
{
  if (closed_)
    return;
  struct Request
  {
    Peer *self;
    std::function<void (GstStructure *)> post;
  };
  GstPromise *p = gst_promise_new_with_change_func ([] (GstPromise * p,
          gpointer data) {
        auto *req = static_cast<Request *> (data);
        const GstStructure *reply = gst_promise_get_reply (p);
        if (reply && !gst_structure_has_field (reply, "error"))
          req->post (req->self->summarize (reply));
      }, new Request { this, std::move (post) },
      [] (gpointer data) { delete static_cast<Request *> (data); });
  g_signal_emit_by_name (webrtc_, "get-stats", nullptr, p);
  gst_promise_unref (p);
}

GstStructure *
Peer::summarize (const GstStructure * reply)
{
  struct Sum
  {
    guint64 bytes_in = 0, bytes_out = 0;
    gint64 lost = 0;
    double jitter = 0, rtt = 0;
  } sum;
  gst_structure_foreach (reply, [] (GQuark, const GValue * v,
          gpointer data) -> gboolean {
    auto *sum = static_cast<Sum *> (data);
    if (!GST_VALUE_HOLDS_STRUCTURE (v))
      return TRUE;
    const GstStructure *s = gst_value_get_structure (v);
    GstWebRTCStatsType type;
    if (!gst_structure_get (s, "type", GST_TYPE_WEBRTC_STATS_TYPE, &type,
            NULL))
      return TRUE;
    guint64 u = 0;
    gint64 i = 0;
    double d = 0;
    if (type == GST_WEBRTC_STATS_INBOUND_RTP) {
      if (gst_structure_get_uint64 (s, "bytes-received", &u))
        sum->bytes_in += u;
      if (gst_structure_get_int64 (s, "packets-lost", &i))
        sum->lost += i;
      if (gst_structure_get_double (s, "jitter", &d))
        sum->jitter = MAX (sum->jitter, d);
    } else if (type == GST_WEBRTC_STATS_OUTBOUND_RTP) {
      if (gst_structure_get_uint64 (s, "bytes-sent", &u))
        sum->bytes_out += u;
    } else if (type == GST_WEBRTC_STATS_REMOTE_INBOUND_RTP) {
      if (gst_structure_get_double (s, "round-trip-time", &d))
        sum->rtt = MAX (sum->rtt, d);
    }
    return TRUE;
  }, &sum);

  GstClockTime now = gst_util_get_timestamp ();
  guint64 rate_in = 0, rate_out = 0;
  {
    std::lock_guard<std::mutex> guard (lock_);
    if (GST_CLOCK_TIME_IS_VALID (last_stats_) && now > last_stats_) {
      double secs = (double) (now - last_stats_) / GST_SECOND;
      if (sum.bytes_in >= last_bytes_in_)
        rate_in = (guint64) ((sum.bytes_in - last_bytes_in_) * 8 / secs);
      if (sum.bytes_out >= last_bytes_out_)
        rate_out = (guint64) ((sum.bytes_out - last_bytes_out_) * 8 / secs);
    }
    last_stats_ = now;
    last_bytes_in_ = sum.bytes_in;
    last_bytes_out_ = sum.bytes_out;
  }
  return gst_structure_new (message::STATS,
      "member", G_TYPE_STRING, id_.c_str (),
      "bitrate-in", G_TYPE_UINT64, rate_in,
      "bitrate-out", G_TYPE_UINT64, rate_out,
      "bytes-received", G_TYPE_UINT64, sum.bytes_in,
      "bytes-sent", G_TYPE_UINT64, sum.bytes_out,
      "packets-lost", G_TYPE_INT64, sum.lost,
      "jitter", G_TYPE_DOUBLE, sum.jitter,
      "round-trip-time", G_TYPE_DOUBLE, sum.rtt, NULL);
}

void
Peer::close ()
{
  if (closed_)
    return;
  closed_ = true;
  {
    std::lock_guard<std::mutex> guard (lock_);
    closing_ = true;
  }
  GstBin *bin = host_.bin ();
  g_signal_handlers_disconnect_by_data (webrtc_, this);
  for (int k = 0; k < KIND_COUNT; k++)
    unlink_send ((Kind) k);
  g_clear_object (&channel_);
  gst_element_set_state (webrtc_, GST_STATE_NULL);

  for (int k = 0; k < KIND_COUNT; k++) {
    Recv & r = recv_[k];
    if (r.ghost) {
      host_.remove_output (r.ghost, id_, (Kind) k);
      gst_clear_object (&r.ghost);
    }
    for (GstElement *e : { r.decoder, r.parking, send_[k].payloader }) {
      if (e) {
        gst_element_set_state (e, GST_STATE_NULL);
        gst_bin_remove (bin, e);
      }
    }
    r.decoder = r.parking = nullptr;
    if (send_[k].webrtc_pad)
      gst_clear_object (&send_[k].webrtc_pad);
    send_[k].payloader = nullptr;
  }
  for (GstElement *e : discards_) {
    gst_element_set_state (e, GST_STATE_NULL);
    gst_bin_remove (bin, e);
  }
  discards_.clear ();
  gst_bin_remove (bin, webrtc_);
  webrtc_ = nullptr;
}

}  // namespace peerjs
