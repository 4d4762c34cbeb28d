/* Encoders for raw input: which element encodes a codec, set for realtime
 * sending, and its bitrate read and set whatever the element calls it. */
#pragma once

#include "media.h"

#include <gst/gst.h>

#include <vector>

namespace peerjs {

/* The elements that encode raw input to `codec` at `bps` bit/s, in link
 * order: the encoder first, then what must follow it (a caps filter for a
 * profile); the codec's parser is not among them. The encoder is
 * chain.front (). Empty when an element could not be made. */
std::vector<GstElement *> make_encoder (const Codec & codec, guint bps);

/* An encoder's bitrate in bit/s; 0 for an element we cannot read. */
guint encoder_bitrate (GstElement * encoder);
/* Set it; nothing for an element we cannot set. */
void set_encoder_bitrate (GstElement * encoder, guint bps);

}  // namespace peerjs
