#!/usr/bin/env bash
# Publishes the camera (scaled to 640x480) and the microphone into a thread
# (room), like a person who turns on camera and microphone in the demo room.
#
#   examples/pipelines/publish-camera.sh
#   THREAD=standup VIDEO_SOURCE="v4l2src device=/dev/video2" examples/pipelines/publish-camera.sh
#
# Ctrl-C ends the streams (-e) and leaves the thread. Environment: SERVER,
# THREAD, VIDEO_SOURCE (default v4l2src), AUDIO_SOURCE (default
# autoaudiosrc), WIDTH and HEIGHT (default 640 and 480). Arguments go to
# gst-launch-1.0 (-m prints the bus messages).
SERVER="${SERVER:-ws://127.0.0.1:5000/peerjs}"
THREAD="${THREAD:-lobby}"
VIDEO_SOURCE="${VIDEO_SOURCE:-v4l2src}"
AUDIO_SOURCE="${AUDIO_SOURCE:-autoaudiosrc}"
WIDTH="${WIDTH:-640}"
HEIGHT="${HEIGHT:-480}"
set -f  # the sources are pipeline fragments: split them on spaces, never glob
# shellcheck disable=SC2086
exec gst-launch-1.0 -e "$@" \
  peerjssink server="$SERVER" thread="$THREAD" name=s \
  $VIDEO_SOURCE ! videoconvert ! videoscale \
    ! video/x-raw,width="$WIDTH",height="$HEIGHT",pixel-aspect-ratio=1/1 ! queue ! s.video \
  $AUDIO_SOURCE ! audioconvert ! audioresample ! queue ! s.audio
