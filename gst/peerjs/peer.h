/* One remote member that media may flow with: one webrtcbin, the
 * payloaders that feed it from our published streams, and the decoders
 * behind its output pads. The session with the larger id offers (the
 * master); the other answers and asks for offers with stream:makeoffer.
 *
 * Threads: everything but `on_pad_added` runs on the signalling thread.
 * webrtcbin's callbacks hand their work over to it; `on_pad_added` runs on
 * a streaming thread and only touches `recv_`, under `lock_`; `on_rtcp` runs
 * on an RTCP thread and only touches the loss meters, under `loss_lock_`.
 */
#pragma once

#include "fec.h"
#include "congestion.h"
#include "media.h"

#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>
#include <json-glib/json-glib.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace peerjs {

/* FLUSH_START to every sctpenc sink pad in `bin` (webrtcbins within
 * included): a member that stopped reading leaves sctpenc waiting for room
 * in the association, for ever, with its pad's stream lock held, and a
 * state change below PAUSED would wait on that lock. */
void unblock_data_channels (GstBin * bin);

/* Packets a member's ULPFEC let us recover, the video FEC we send it now,
 * and what its latest receiver report blocks about our streams say
 * (`reports`: false when none came). */
struct FecCounts
{
  guint64 recovered = 0;
  guint percent = 0;
  bool reports = false;
  gint64 remote_lost = 0;
  double remote_fraction = 0;
};

/* What our video to a member says in the playout-delay RTP header
 * extension (peer.cpp, "Playout delay"): read by the payloader's
 * streaming thread, set by Peer::follow_loss. */
struct PlayoutDelay
{
  std::atomic<int> id { 0 };            /* the SDP's; 0: not negotiated */
  std::atomic<guint> min_ms { 0 };      /* wanted of the member; 0: none */
  std::atomic<guint> written_ms { 0 };  /* what its packets carry now */
  std::atomic<gint64> until_us { 0 };   /* written until then (monotonic) */
  /* The writing probe's own (streaming thread): the least written, rising
   * towards min_ms, and when. */
  double level_ms = 0;
  gint64 level_at_us = 0;
};

/* What a Peer needs from its session. */
class PeerHost
{
public:
  virtual ~PeerHost () = default;
  virtual GstBin *bin () = 0;
  virtual void send (JsonObject * msg) = 0;
  /* Run on the signalling thread. */
  virtual void invoke (std::function<void ()> f) = 0;
  /* What we want with `member` for `kind`, now. */
  virtual bool wants_send (const std::string & member, Kind kind) = 0;
  virtual bool wants_recv (const std::string & member, Kind kind) = 0;
  virtual Outgoing *outgoing (Kind kind) = 0;
  /* Whether the element receives at all. */
  virtual bool receives () = 0;
  /* NACKs answered by retransmission, and asked for, both ways. */
  virtual bool retransmits () = 0;
  /* The jitterbuffer latency the pipeline is told, and how long a missing
   * video packet is waited for (ms). */
  virtual guint latency_ms () = 0;
  virtual guint retransmission_wait_ms () = 0;
  /* Forward error correction (fec.h) both ways. */
  virtual bool fec () = 0;
  /* Congestion control, as the element's properties say. */
  virtual const CcSettings & congestion () = 0;
  /* Every published stream knows its codec (first negotiations wait). */
  virtual bool media_ready () = 0;
  /* Configure a new webrtcbin for `member` (ICE servers, transport
   * policy, addresses, latency). */
  virtual void configure (GstElement * webrtc, const std::string & member) = 0;
  /* A member's decoded stream starts or stops being output: `src` is the
   * decoder's src pad. add_output links it on (a member pad on the element,
   * or the mixer) and returns the handle remove_output takes. Any thread. */
  virtual GstPad *add_output (GstPad * src, const std::string & member,
      Kind kind) = 0;
  virtual void remove_output (GstPad * output, const std::string & member,
      Kind kind) = 0;
  /* The connection to `member` is beyond repair; on the signalling thread. */
  virtual void peer_failed (const std::string & member,
      const std::string & reason) = 0;
  /* The member opened a data channel for a file (webrtcbin's thread). */
  virtual void file_channel (const std::string & member,
      GstWebRTCDataChannel * channel) = 0;
};

class Peer
{
public:
  Peer (PeerHost & host, std::string id, bool master);
  ~Peer ();

  const std::string & id () const { return id_; }

  /* Bring the connection in line with what the host wants: the master
   * renegotiates when something changed, the other side asks it to. */
  void sync ();
  /* The master was asked for an offer. */
  void offer ();

  void on_offer (const std::string & sdp);
  void on_answer (const std::string & sdp);
  void on_candidate (guint mline, const std::string & candidate);

  /* Ask webrtcbin for statistics and hand `post` one peerjs-stats
   * structure when they come (on a webrtcbin thread). */
  void stats (std::function<void (GstStructure *)> post);

  /* A data channel of ours labelled `label` (ordered, reliable), handed
   * to `ready` once the connection was negotiated (webrtcbin makes the
   * SCTP association then), or null when the connection closes first. */
  void open_channel (const std::string & label,
      std::function<void (GstWebRTCDataChannel *)> ready);

  /* Stop everything and take our elements out of the bin. */
  void close ();

  /* Every LOSS_POLL_MS: the loss the member reported for our streams since
   * the last call sizes the video FEC we send it (with do-fec); returns the
   * fraction of our audio it lost, -1 when it sent no report. */
  double follow_loss (GstClockTime now);
  /* Every LOSS_POLL_MS: how long our video jitterbuffers wait for a
   * missing packet follows how late the member's packets come and the
   * round trip of its retransmissions (RetransmissionTimes in peer.cpp;
   * a longer wait is set at once from the streaming threads, a shorter
   * one only here). */
  void follow_round_trip ();
  /* The member's bandwidth estimate (congestion.h). */
  std::shared_ptr<Congestion> congestion () const { return cc_; }
  /* Our video goes to the member now (signalling thread). */
  bool sends_video () const
  {
    return slots_[(int) Kind::Video].feed != nullptr;
  }
  /* The ULPFEC we send the member, in packets per 100 of video. */
  guint video_fec_percent () const { return video_fec_percent_; }
  /* The switch choosing the layer of our video the member gets; null
   * without layers or while we send it no video (signalling thread). */
  GstElement *layer_switch () const
  {
    const auto & feed = slots_[(int) Kind::Video].feed;
    return feed ? feed->layer_switch () : nullptr;
  }

private:
  using Direction = GstWebRTCRTPTransceiverDirection;

  /* Our one m-line of a kind. webrtcbin 1.22 refuses any change of a
   * negotiated direction but to inactive, so webrtcbin is told a `fixed`
   * direction for good, and the member is told the true one: the SDP is
   * rewritten both ways, and media is switched here (the tee feeds the
   * payloader or not; the member pad is exposed or not). */
  struct Slot
  {
    GstWebRTCRTPTransceiver *trans = nullptr;
    guint mline = G_MAXUINT;
    Direction fixed = GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    Direction local = GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    Direction remote = GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_INACTIVE;
    /* Sending: the payloader in front of webrtcbin's sink pad. */
    GstElement *payloader = nullptr;
    GstPad *webrtc_pad = nullptr;
    std::unique_ptr<Feed> feed;      /* while media go to the member */
    int pt = -1;
    guint ssrc = 0;
    /* Our RTX stream's SSRC. webrtcbin draws a new one for every offer
     * and answer, while rtprtxsend keeps the one it was given when media
     * first went through it: `described` is the one in our latest SDP,
     * `rtx_ssrc` the one rtprtxsend took (that SDP's when media started),
     * which every later SDP of ours is made to say. */
    guint described_rtx_ssrc = 0;
    guint rtx_ssrc = 0;
  };
  struct Recv
  {
    GstElement *decoder = nullptr;
    GstPad *output = nullptr;        /* from PeerHost::add_output */
    bool wanted = false;             /* the member sends it to us now */
  };

  Direction wanted (Kind kind);
  Direction ideal (Kind kind);
  bool make_slot (Kind kind, GstCaps * prefs, int pt);
  bool make_payloader (Kind kind, int pt, const char *pad_name);
  void send_twcc (Kind kind, int id);
  void feed (Kind kind, bool on);
  void negotiated ();
  void rewrite (GstSDPMessage * sdp, bool local);
  bool apply (GstWebRTCSDPType type, GstSDPMessage * sdp, bool local);
  void send_sdp (const char *type, GstSDPMessage * sdp);
  GstSDPMessage *create (const char *what);
  void watch_answer (GstSDPMessage * offer);
  void stop_watching_answer ();
  /* The member's SDP, or null (and the member failed) when it does not
   * parse or has no media section. */
  GstSDPMessage *parse (const std::string & text, const char *what);

  /* `wait_ms`: how long our video jitterbuffers wait for a missing
   * packet of the member's now (the longest; 0: none does). */
  GstStructure *summarize (const GstStructure * reply, guint rtx_sent,
      guint rtx_received, guint wait_ms);
  void on_new_jitterbuffer (GstElement * jitterbuffer, guint ssrc);
  void on_new_storage (GstElement * storage);
  void use_fec (Kind kind);
  void offer_playout_delay (Kind kind, GstCaps * prefs, int id);
  void write_playout_delay (int id);
  void follow_playout_delay (double video_loss, GstClockTime now);
  void watch_reports ();
  void unwatch_reports ();
  void on_rtcp (GstBuffer * buffer);
  FecCounts count_reports ();
  void on_pad_added (GstPad * pad);
  void expose (Kind kind, bool on);
  /* Codec negotiation with the member failed for `kind`: a bus warning,
   * once per member and codec (what we send), once per element and codec
   * (what we cannot decode). Signalling thread. */
  void cannot_receive (const Codec & codec);
  /* True when the member sends a codec we know and cannot decode. */
  /* A member sends `codec`, which we cannot decode: a warning, once per
   * element and codec. */
  void no_decoder (const Codec & codec);
  bool cannot_decode (const GstSDPMedia * media);

  PeerHost & host_;
  std::string id_;
  bool master_;
  GstElement *webrtc_ = nullptr;
  GstWebRTCDataChannel *channel_ = nullptr;
  std::shared_ptr<Congestion> cc_;

  /* Signalling thread. */
  std::array<Slot, KIND_COUNT> slots_;
  bool negotiated_once_ = false;
  bool offer_again_ = false;
  bool closed_ = false;
  bool red_watched_ = false;    /* use_fec watches for the RED encoder */
  std::string pending_offer_;      /* held until our streams know codecs */
  std::vector<std::string> told_cannot_receive_;   /* codecs warned about */
  std::vector<std::pair<std::string,
      std::function<void (GstWebRTCDataChannel *)>>> pending_channels_;
  GSource *resend_ = nullptr;      /* sends the offer again (watch_answer) */

  std::mutex expose_lock_;         /* one expose () at a time */
  std::mutex lock_;                /* recv_, discards_, stats, closing_ and
                                    * remote_ssrcs_ */
  /* The kind of each SSRC the member's SDP announces. */
  std::map<guint, Kind> remote_ssrcs_;
  std::array<Recv, KIND_COUNT> recv_;
  /* What the member's video decoder gave out, since it connected. */
  std::shared_ptr<FrameCounter> video_frames_ =
      std::make_shared<FrameCounter> ();
  std::vector<GstElement *> discards_;   /* sinks for streams not decoded */
  guint64 last_bytes_in_ = 0, last_bytes_out_ = 0;
  GstClockTime last_stats_ = GST_CLOCK_TIME_NONE;
  bool closing_ = false;

  /* Forward error correction: the member's receiver reports about our
   * streams (an RTCP thread writes, follow_loss reads, under loss_lock_),
   * and the video FEC we send it. */
  std::mutex loss_lock_;
  std::array<guint, KIND_COUNT> reported_ssrcs_ {};
  std::array<LossMeter, KIND_COUNT> loss_;
  std::array<GObject *, KIND_COUNT + 1> report_sessions_ {};
  FecLevel video_fec_ { VIDEO_FEC_PER_LOSS, MAX_VIDEO_FEC_PERCENT,
      MAX_VIDEO_FEC_LOSS };
  std::atomic<guint> video_fec_percent_ { 0 };
  /* The playout delay asked of the member while it loses our video, and
   * when it last reported loss of it (follow_loss). */
  std::shared_ptr<PlayoutDelay> playout_ = std::make_shared<PlayoutDelay> ();
  GstClockTime video_lossy_at_ = GST_CLOCK_TIME_NONE;
};

}  // namespace peerjs
