#!/usr/bin/env bash
# Shows and plays a thread (room): the video of the first member whose video
# connects, and the audio of the first member whose audio connects. Pads of
# members who connect later stay unlinked (gst-launch-1.0 links a sometimes
# pad once); peerjssrc's mix=true would show them all in a grid instead
# (docs/elements.md).
#
#   examples/pipelines/watch-room.sh
#   THREAD=standup SERVER=ws://host:5000/peerjs examples/pipelines/watch-room.sh -m
#
# Ctrl-C leaves the thread. Environment: SERVER, THREAD, VIDEO_SINK and
# AUDIO_SINK. Arguments go to gst-launch-1.0 (-m prints the bus messages,
# peerjs-media-connect among them; `-m | grep peerjs-` shows only the
# elements' own). GST_DEBUG=peerjs:5 logs what the elements do.
#
# Without a display (neither DISPLAY nor WAYLAND_DISPLAY set: a server, ssh,
# a container) the video goes to fakevideosink, and a line on stderr says
# so: autovideosink would fall back to a framebuffer sink there, and
# dfbvideosink crashes. Set VIDEO_SINK to show it somewhere else, e.g.
# VIDEO_SINK="jpegenc ! multifilesink location=frame-%05d.jpg max-files=30 async=false"
# keeps the last 30 pictures.
#
# A member may share video only, so one branch may never get a pad. Hence
# the sinks handle their state changes alone (async-handling=true, or
# async=false on a plain sink): a sink still waiting for its first buffer
# would hold the other one paused. And no -e: the branch without a pad would
# never see the end of its stream, so gst-launch-1.0 would wait forever.
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
if [ -z "${VIDEO_SINK:-}" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "watch-room.sh: no display (DISPLAY and WAYLAND_DISPLAY are unset): the video goes to fakevideosink; set VIDEO_SINK to show it elsewhere" >&2
  VIDEO_SINK="fakevideosink async=false"
fi
VIDEO_SINK="${VIDEO_SINK:-autovideosink async-handling=true}"
AUDIO_SINK="${AUDIO_SINK:-autoaudiosink async-handling=true}"
set -f  # the sinks are pipeline fragments: split them on spaces, never glob
# shellcheck disable=SC2086
exec gst-launch-1.0 "$@" \
  peerjssrc server="$SERVER" thread="$THREAD" name=r \
  r. ! video/x-raw ! queue ! videoconvert ! $VIDEO_SINK \
  r. ! audio/x-raw ! queue ! audioconvert ! audioresample ! $AUDIO_SINK
