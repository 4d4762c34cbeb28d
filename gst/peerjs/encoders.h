/* Encoders for raw input, and decoders for what members send: which element
 * does a codec on this machine, set for realtime sending, and an encoder's
 * bitrate read and set whatever the element calls it. */
#pragma once

#include "media.h"

#include <gst/gst.h>

#include <string>
#include <utility>
#include <vector>

namespace peerjs {

/* An element we know for a codec, and the Debian package it comes in
 * (empty: none in Debian's GStreamer 1.22). */
struct CodecElement
{
  const char *codec;           /* SDP name: VP8, VP9, H264, AV1, OPUS */
  const char *factory;
  const char *package;
  bool hardware;
};

/* The encoders (`encoders` true) or decoders we know, in our order. */
const std::vector<CodecElement> & known_elements (bool encoders);

/* A factory installed here with its GStreamer rank. */
using Installed = std::vector<std::pair<std::string, guint>>;

/* Among `installed`, the element for `codec`: the known one of the highest
 * rank, hardware before software at equal rank, then our order. "" when
 * none is installed. No registry involved: a list in, a name out. */
std::string choose_element (const std::string & codec, bool encoder,
    const Installed & installed);

/* choose_element over this machine's registry. */
std::string find_encoder (const Codec & codec);
std::string find_decoder (const Codec & codec);

/* What to tell a user who has no encoder (decoder) for `codec`: the known
 * software elements and the Debian package of the first one, as
 * "x264enc, openh264enc (Debian package gstreamer1.0-plugins-ugly)". */
std::string missing_encoder_hint (const Codec & codec);
std::string missing_decoder_hint (const Codec & codec);
/* The Debian package of the first known software decoder of `codec`
 * ("" when Debian has none). */
std::string decoder_package (const Codec & codec);

/* The elements that encode raw input to `codec` at `bps` bit/s with the
 * encoder find_encoder chose, in link order: the encoder first, then what
 * must follow it (a caps filter for a profile); the codec's parser is not
 * among them. The encoder is chain.front (). Empty when no encoder is
 * installed or it could not be made. */
std::vector<GstElement *> make_encoder (const Codec & codec, guint bps);

/* The codec's parser ahead of the payloaders, encoded here or passed
 * through: h264parse puts the parameter sets (SPS, PPS) it saw ahead of
 * every key frame, so that a member joining late, whose payloader never
 * saw the stream's first ones, decodes at the next key frame. Null when
 * the element is missing. */
GstElement *make_parser (const Codec & codec);

/* An encoder's bitrate in bit/s; 0 for an element we cannot read. */
guint encoder_bitrate (GstElement * encoder);
/* Set it; nothing for an element we cannot set. */
void set_encoder_bitrate (GstElement * encoder, guint bps);

}  // namespace peerjs
