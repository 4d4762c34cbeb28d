/* Media branches: the codecs the elements speak, and the chains that encode
 * and payload what a pipeline publishes, and depayload and decode what
 * members send. No signalling here. */
#pragma once

#include "layers.h"

#include <gst/gst.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace peerjs {

enum class Kind { Video = 0, Audio = 1 };
constexpr int KIND_COUNT = 2;
const char *kind_name (Kind kind);

struct Codec
{
  const char *name;            /* SDP encoding name: VP8, VP9, H264, AV1, OPUS */
  Kind kind;
  const char *encoded_caps;    /* what an encoder makes, e.g. video/x-vp8 */
  int clock_rate;
  int default_pt;
  const char *encoder;         /* the usual encoder; encoders.cpp chooses */
  const char *parser;          /* between encoder and payloader, or null */
  const char *payloader;
  const char *depayloader;
  const char *decoder;         /* the usual decoder; encoders.cpp chooses */
};

/* By SDP name, case-insensitive; null when unknown. */
const Codec *codec_by_name (const std::string & name);
/* The codec of already-encoded caps (video/x-vp8, ...); null for raw or
 * unknown caps. */
const Codec *codec_for_encoded (const GstCaps * caps);
/* RTP caps for a codec with a payload type, as webrtcbin wants them for
 * codec preferences and payloader output. */
GstCaps *rtp_caps (const Codec & codec, int pt);
/* RTP caps of every codec of `kind` this machine can depayload and decode,
 * with our default payload types. */
GstCaps *receivable_caps (Kind kind);

/* Buffers pushed on `pad` while it is not linked are dropped instead of
 * failing upstream as not-linked. */
void drop_unless_linked (GstPad * pad);

/* Every RTP session the rtpbin of `webrtc` (a webrtcbin) has made so far,
 * with its id: an m-line index, ours (KIND_COUNT) and the data channel's.
 * They exist once a description was set. */
void for_each_rtp_session (GstElement * webrtc,
    const std::function<void (guint id, GObject * session)> & f);

/* The first factory in `factories` (comma list) that is missing, or "". */
std::string missing_factory (const char *factories);

/* What feeds one member's payloader from an Outgoing: a pad of its tee,
 * or, with layers, a pad of every layer's tee into a layer switch of the
 * member's (layers.h). Undone (unlinked, pads given back, the switch
 * removed) when destroyed, whether the Outgoing is still there or not. */
class Feed
{
public:
  ~Feed ();
  /* The member's layer switch; null without layers. */
  GstElement *layer_switch () const { return switch_; }

private:
  friend class Outgoing;
  std::vector<GstPad *> tee_pads_;
  GstElement *switch_ = nullptr;
};

/* A pad's published stream: sink pad -> queue -> [convert ! encoder |
 * parser] -> tee. The chain after the queue is built when the first caps
 * arrive, since they decide whether to encode or pass through. The tee feeds
 * one payloader per member (Peer) and a clock branch that paces non-live
 * input.
 *
 * Raw video with layers: queue -> convert -> tee, and from that tee, per
 * layer, queue -> [scale] -> encoder -> tee: the top layer at the input's
 * size, each next one at half the width and height of the one above, made
 * while at least LAYER_MIN_WIDTH x LAYER_MIN_HEIGHT. A member is fed
 * through a layer switch over every layer's tee. */
constexpr int LAYER_MIN_WIDTH = 80;
constexpr int LAYER_MIN_HEIGHT = 60;
class Outgoing
{
public:
  struct Settings
  {
    const Codec *raw_codec;    /* what raw input is encoded to */
    guint video_bitrate;       /* bits per second: the top layer's */
    int layers = 1;            /* raw video: how many layers, at most */
  };
  using Ready = std::function<void (Outgoing &)>;
  /* `plugin`: the name of a missing element; else `what` cannot be
   * published. */
  using Failed = std::function<void (const std::string & plugin,
      const std::string & what)>;

  Outgoing (GstBin * bin, Kind kind, Settings settings, Ready ready,
      Failed failed);
  /* Stops and removes our elements; members must be unlinked first. */
  ~Outgoing ();

  Kind kind () const { return kind_; }
  /* The pad a ghost pad targets. */
  GstPad *sink_pad () const;
  /* The codec, once caps are known; null before. Any thread. */
  const Codec *codec () const;
  GstElement *tee () const { return tee_; }
  /* A new feed for a member's payloader, linked to `sink`; `member` names
   * its switch. */
  std::unique_ptr<Feed> feed (GstPad * sink, const std::string & member);
  /* How many layers there are: 1 without layers (or before caps). */
  int layers () const;
  /* Layer `layer`'s picture size (0 x 0 unknown). */
  void layer_size (int layer, int *width, int *height) const;
  /* The sink at the end of the clock branch: its EOS is the stream's. */
  GstElement *clock () const { return clock_; }
  /* Ask the encoder for a key frame now (a member joined); with layers,
   * `layer`'s encoder. */
  void force_key_unit (int layer = 0);
  /* Opus in-band FEC sized for `percent` % loss, 0: off. Only where we
   * encode Opus; encoded input is sent as it comes. Any thread. */
  void set_audio_fec (int percent);
  /* Congestion control (congestion.cpp): whether the stream is video
   * encoded here, whose bitrate can follow the members' estimates; the
   * encoder's bitrate in bit/s (0: input passed through); set it. With
   * layers, `layer`'s encoder. */
  bool adapts () const;
  guint bitrate (int layer = 0) const;
  void set_bitrate (guint bps, int layer = 0);

private:
  static GstPadProbeReturn on_caps (GstPad * pad, GstPadProbeInfo * info,
      gpointer self);
  bool build (GstCaps * caps);
  bool build_layers (const Codec & codec, GstCaps * caps);
  struct Layer
  {
    GstElement *tee = nullptr;
    GstElement *encoder = nullptr;
    int width = 0, height = 0;
  };

  GstBin *bin_;
  Kind kind_;
  Settings settings_;
  Ready ready_;
  Failed failed_;
  GstElement *queue_ = nullptr;
  GstElement *tee_ = nullptr;
  GstElement *clock_ = nullptr;
  std::vector<GstElement *> elements_;   /* all we added to bin_ */
  mutable std::mutex lock_;
  const Codec *codec_ = nullptr;
  GstElement *encoder_ = nullptr;        /* raw input only */
  std::vector<Layer> layers_;            /* with layers only; [0] = tee_ */
};

/* Every member in one picture and one sound, for recording a room: a
 * compositor and an audiomixer behind a black, silent live background, their
 * outputs the element's "video" and "audio" pads for its whole life. Members
 * are tiled in a grid that follows their count, whole pictures kept. */
class Mixer
{
public:
  Mixer (GstElement * element, int width, int height);
  ~Mixer ();
  void resize (int width, int height);
  /* Link a member's decoded `src` in; returns the mixer's pad for it. */
  GstPad *add (Kind kind, GstPad * src);
  void remove (Kind kind, GstPad * pad);

private:
  void layout ();

  GstElement *element_;
  int width_, height_;
  GstElement *mixers_[KIND_COUNT] = {};
  GstElement *background_caps_ = nullptr;
  GstElement *output_caps_ = nullptr;
  GstPad *outputs_[KIND_COUNT] = {};
  std::vector<GstElement *> elements_;
  std::mutex lock_;
  std::vector<GstPad *> tiles_;          /* compositor pads, in order */
};

/* depayloader ! decoder ! converter, in a bin with a sink and a src pad. */
/* What a member's video decoder gave out: frames, and freezes, gaps of
 * more than FREEZE_GAP between the timestamps of two frames in a row.
 * Written by the decoder's streaming thread, read by statistics: atomics
 * only. */
constexpr GstClockTime FREEZE_GAP = 200 * GST_MSECOND;
struct FrameCounter
{
  std::atomic<guint64> frames { 0 };
  std::atomic<guint64> freezes { 0 };
  std::atomic<guint64> frozen_ns { 0 };
  /* The last frame's timestamp; NONE: the next frame starts afresh (the
   * member stopped sending, so what comes next is no freeze). */
  std::atomic<GstClockTime> last { GST_CLOCK_TIME_NONE };
};

/* A member's decoding bin; `counter`, when given, counts what its decoder
 * gives out; `fec`: Opus in-band FEC is decoded. */
GstElement *make_decoder (const Codec & codec, const std::string & name,
    std::shared_ptr<FrameCounter> counter = nullptr, bool fec = false);
/* queue ! payloader, in a bin with a sink and a src pad. */
GstElement *make_payloader (const Codec & codec, int pt, guint ssrc,
    const std::string & name);

}  // namespace peerjs
